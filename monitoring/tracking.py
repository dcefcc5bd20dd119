"""MLflow helpers of the monitoring steps (no tracking URI is set at import)."""

from __future__ import annotations

import os


def entry_point_experiment(default: str, client=None) -> str:
    """The experiment to log to: the one `mlflow run` chose (MLFLOW_RUN_ID set), else ``default``.

    ``mlflow.set_experiment(other)`` followed by ``start_run()`` inside `mlflow run` raises
    "active experiment ID does not match environment run ID"; code that always sets an
    experiment (pipelines.train.train_model) gets this name instead.
    """
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id:
        return default
    if client is None:
        from fraudops.modeling.registry import registry_client

        client = registry_client()
    experiment_id = client.get_run(run_id).info.experiment_id
    return client.get_experiment(experiment_id).name


def set_experiment_unless_entry_point(name: str) -> None:
    """``mlflow.set_experiment(name)`` unless `mlflow run` already chose the experiment and run."""
    import mlflow

    if "MLFLOW_RUN_ID" not in os.environ:
        mlflow.set_experiment(name)
