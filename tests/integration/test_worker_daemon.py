"""The scoring job's Python daemon (streaming.worker_daemon) loads the served registry pyfunc
before it forks workers: a forked worker finds it in the per-worker model cache, and it is the
registry's model (P(fraud) = predict_proba[:, 1] of the logged pipeline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from streaming.worker_daemon import PRELOAD_MODEL_ENV, PRELOAD_TRACKING_ENV
from tests import streaming_support as support

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# what a worker forked from the daemon sees: the model already in scoring_pass's cache
PROBE = """
import json, os
import numpy as np
from streaming import scoring_pass, worker_daemon
from features.definition import FEATURE_COLUMNS
from tests import streaming_support as support
from features.batch import compute_features

worker_daemon.preload()
uri = os.environ[worker_daemon.PRELOAD_MODEL_ENV]
preloaded = uri in scoring_pass._MODELS
model = scoring_pass._MODELS[uri]
featured = compute_features(support.small_history(days=2, customers=20, seed=3)).head(50)
served = np.asarray(model.predict(featured[FEATURE_COLUMNS]), dtype="float64")
pipeline = model.unwrap_python_model().pipeline
from fraudops.modeling.model import prepare_model_input
meta = model.unwrap_python_model().metadata
raw = pipeline.predict_proba(prepare_model_input(featured, meta.numeric_features, meta.categorical_features))[:, 1]
print("RESULT " + json.dumps({"preloaded": preloaded, "max_diff": float(np.abs(served - raw).max())}))
"""


def test_the_daemon_preloads_the_served_registry_pyfunc(settings, unique_name):
    name = f"fraud-detector-daemon-{unique_name}"
    version = support.train_and_register(settings, name, support.small_history())
    env = {**os.environ, PRELOAD_MODEL_ENV: f"models:/{name}/{version}",
           PRELOAD_TRACKING_ENV: settings.mlflow_tracking_uri}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
                          cwd=support.ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["preloaded"] is True
    assert result["max_diff"] == 0.0
    assert "alert explainer ready" in done.stderr


def test_without_a_named_model_the_daemon_only_imports():
    env = {k: v for k, v in os.environ.items() if k not in (PRELOAD_MODEL_ENV, PRELOAD_TRACKING_ENV)}
    code = "from streaming import scoring_pass, worker_daemon; worker_daemon.preload(); print(len(scoring_pass._MODELS))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=support.ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "0"
    assert "model -" in done.stderr
