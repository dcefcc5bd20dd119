"""The registered model loads where this project is not importable (another service, another host).

A model version is logged, registered and made champion on the real MLflow server; a fresh Python
(`-I -S`: no environment variables, no user site, no .pth files, so no editable-install finder;
cwd outside the repository) that sees only the venv's third-party packages loads it by alias and
scores the same rows as the fitted pipeline's predict_proba[:, 1].
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import mlflow
import numpy as np
import pytest

import fraudops
from fraudops.modeling import registry
from fraudops.modeling.model import prepare_model_input
from tests.integration.test_registry import _log_toy_model
from tests.unit.test_model import CATEGORICAL, NUMERIC, toy_frame

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("fraudops", "features", "pipelines", "streaming", "decisions", "rules", "portal",
                    "monitoring", "expectations", "simulator", "devstack")

# runs in the isolated interpreter: argv = site-packages, tracking URI, model URI, rows, output
LOADER = r"""
import importlib.util, json, sys
site_packages, tracking_uri, model_uri, rows_path, out_path = sys.argv[1:6]
sys.path.append(site_packages)  # a plain folder: its .pth files (the editable finder) are not run
importable = {name: importlib.util.find_spec(name) is not None for name in json.loads(sys.argv[6])}
import mlflow, pandas as pd
mlflow.set_tracking_uri(tracking_uri)
model = mlflow.pyfunc.load_model(model_uri)
scores = model.predict(pd.read_parquet(rows_path))
import fraudops.modeling.model as loaded
json.dump({"importable_before": importable, "scores": [float(s) for s in scores],
           "fraudops_file": loaded.__file__, "dtype": str(scores.dtype),
           "project_modules": sorted(m for m in sys.modules if m.split(".")[0] in json.loads(sys.argv[6])
                                     and not m.startswith("fraudops"))},
          open(out_path, "w"))
"""


def _isolated_load(settings, model_uri: str, rows_path: Path, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    site_packages = sysconfig.get_paths()["purelib"]
    command = [sys.executable, "-I", "-S", "-c", LOADER, site_packages, settings.mlflow_tracking_uri,
               model_uri, str(rows_path), str(out), json.dumps(PROJECT_PACKAGES)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def test_registered_model_loads_and_scores_where_the_project_is_not_importable(settings, unique_name, tmp_path):
    version, pipeline, _ = _log_toy_model(settings, unique_name)
    client = registry.registry_client(settings)
    registry.promote_to_production(version.name, version.version, client)
    frame, _ = toy_frame(300, seed=7)
    rows = prepare_model_input(frame, NUMERIC, CATEGORICAL)
    rows_path = tmp_path / "rows.parquet"
    rows.to_parquet(rows_path)
    expected = pipeline.predict_proba(rows)[:, list(pipeline.classes_).index(1)]

    result = _isolated_load(settings, f"models:/{version.name}@{registry.CHAMPION_ALIAS}", rows_path, tmp_path)

    assert not any(result["importable_before"].values()), result["importable_before"]  # fraudops included
    assert not Path(result["fraudops_file"]).is_relative_to(REPO)  # the model's own copy of the code
    assert result["project_modules"] == []  # loading and scoring need no other project package
    assert result["dtype"] == "float64"
    np.testing.assert_allclose(result["scores"], expected, rtol=0, atol=1e-12)
    assert 0.0 < float(np.mean(result["scores"])) < 1.0


def test_loading_a_model_in_the_project_keeps_the_projects_own_fraudops(settings, unique_name):
    version, _, frame = _log_toy_model(settings, unique_name)
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")

    assert model.predict(frame.head(3)).shape == (3,)
    # the model's code/ folder is now first on sys.path, but fraudops was imported before: its
    # modules, even those imported after the load, still come from the project
    assert Path(fraudops.__file__).is_relative_to(REPO)
    assert Path(importlib.util.find_spec("fraudops.records").origin).is_relative_to(REPO)
