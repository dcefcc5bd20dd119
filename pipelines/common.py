"""Helpers every pipeline step shares: its CLI parsing, its MLflow run, its defaults.

Nothing here reads data or trains: the steps (train, tune, evaluate, promote, drift, retrain,
main) import these so that each habit (how MLflow's "30.0" becomes 30, which experiment a step
logs to, how a step nests under `mlflow run`) is written once.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_EXPERIMENT = "fraud-detection"
DEFAULT_DATA = "data/history.parquet"
DEFAULT_MODEL_TYPE = "hist_gradient_boosting"
DEFAULT_LABEL_DELAY = "1h"  # = features.definition.DEFAULT_LABEL_DELAY_SECONDS (a unit test checks it)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# --- CLI ----------------------------------------------------------------------------------------
def configure_logging() -> None:
    """INFO logging in the steps' one format (called by each step's ``main``)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


def parse_bool(value: str, argument: str) -> bool:
    """'true'/'false' (any case, also 1/0/yes/no) -> bool; ValueError naming the argument."""
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "1.0"):
        return True
    if text in ("false", "0", "no", "0.0"):
        return False
    raise ValueError(f"{argument}={value!r} must be true or false")


def whole_number(value: str) -> int:
    """MLflow passes numbers as '30.0': parse as float, then int (argparse type)."""
    number = float(value)
    if not number.is_integer():
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number")
    return int(number)


def label_delay_seconds(value: Any, argument: str = "label_delay") -> float:
    """A label delay given as a duration (``30m``, ``1h``, ``7d``) or seconds, in seconds.

    Raises:
        ValueError: naming ``argument`` when the value is neither.
    """
    from fraudops.modeling.registry import parse_label_delay

    return parse_label_delay(value, argument)


def defaults_of(function: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``function``, so a CLI takes its defaults from the function it calls.

    Example:
        ``parser.add_argument("--gap", default=defaults_of(retrain)["gap"])``
    """
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty}


def cli_text(value: Any) -> str:
    """A function default as the CLI's text default (None becomes ``""``, meaning "not given")."""
    return "" if value is None else str(value)


# --- MLflow -------------------------------------------------------------------------------------
def use_experiment(name: str) -> None:
    """Select the experiment, unless `mlflow run` already created the run (MLFLOW_RUN_ID is set)."""
    import mlflow

    if "MLFLOW_RUN_ID" not in os.environ:
        mlflow.set_experiment(name)


def start_step_run(run_name: str):
    """Start this step's run: nested under an active run (pipelines.main, tune), else a new/`mlflow run` one."""
    import mlflow

    return mlflow.start_run(run_name=run_name, nested=mlflow.active_run() is not None)


def log_finite_metrics(metrics: Mapping[str, float]) -> None:
    """Log the metrics that are finite numbers (MLflow rejects NaN in some stores)."""
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(float(v))})
