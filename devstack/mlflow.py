"""The local MLflow tracking server: backend store in PostgreSQL (database ``mlflow``), artifacts
in ``.stack/mlflow/artifacts``, on 127.0.0.1:MLFLOW_PORT."""

from __future__ import annotations

import sys
from pathlib import Path

from devstack import processes
from devstack.config import stack_settings
from devstack.paths import StackPaths
from fraudops.health import check_mlflow

READY_TIMEOUT_S = 120


def start_mlflow(paths: StackPaths, cfg: dict[str, str]) -> None:
    """Start ``mlflow server`` (2 workers) and wait until /health answers."""
    if processes.is_ours(paths, "mlflow"):
        return
    port = int(cfg["MLFLOW_PORT"])
    processes.ensure_port_free(port, "MLflow")
    artifacts = paths.mlflow / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    backend = (f"postgresql+psycopg2://mlflow:{cfg['MLFLOW_DB_PASSWORD']}@127.0.0.1:"
               f"{cfg['POSTGRES_PORT']}/mlflow")
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    argv = [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--artifacts-destination", str(artifacts)]
    pid = processes.spawn(paths, "mlflow", argv, env={"MLFLOW_BACKEND_STORE_URI": backend})
    settings = stack_settings(paths, {**cfg, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"})
    processes.wait_until_ready(lambda: check_mlflow(settings), "mlflow", READY_TIMEOUT_S, paths, pid)
