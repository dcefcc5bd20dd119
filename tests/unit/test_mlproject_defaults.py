"""MLproject keeps literal defaults (MLflow reads YAML, not Python); they must equal the code's.

Each entry point's command is formatted with MLproject's defaults and parsed by the step's own
argparse parser: every option it sets must come out equal to that parser's default, which the
step takes from its function's signature (pipelines.common.defaults_of).
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path

import pytest
import yaml

from simulator.generator import DEFAULT_FRAUD_RATIO

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
# MLproject may spell out what the code leaves to the settings: "" there means "MODEL_URI".
SPELLED_OUT = {("evaluate", "model_uri"): "models:/fraud-detector@champion"}


def test_mlproject_fraud_ratio_is_the_simulator_default():
    for name in ("generate", "train"):
        assert ENTRY_POINTS[name]["parameters"]["fraud_ratio"]["default"] == DEFAULT_FRAUD_RATIO, name


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_mlproject_defaults_equal_the_step_defaults(entry_point):
    spec = ENTRY_POINTS[entry_point]
    defaults = {name: param.get("default", "") for name, param in spec.get("parameters", {}).items()}
    argv = shlex.split(spec["command"].format(**defaults))
    assert argv[:2] == ["python", "-m"], spec["command"]
    parser = importlib.import_module(argv[2]).build_parser()
    parsed = vars(parser.parse_args(argv[3:]))
    differences = {}
    for name in defaults:
        expected = SPELLED_OUT.get((entry_point, name))
        code_default = parser.get_default(name)
        if expected is not None:
            assert parsed[name] == expected and code_default == "", (entry_point, name)
            continue
        if parsed[name] != code_default:
            differences[name] = {"MLproject": parsed[name], "code": code_default}
    assert not differences, f"entry point {entry_point}: {differences}"
