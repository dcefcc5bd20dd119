"""Where the local stack keeps its state: one folder (``.stack/`` or FRAUDOPS_STATE_DIR) with a
sub-folder per service, ``logs/``, ``pids/`` and the env file every command reads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fraudops.settings import PROJECT_ROOT, default_env_file, default_state_dir

JARS_DIR = PROJECT_ROOT / ".cache" / "jars"


class StackError(RuntimeError):
    """A stack operation failed; the message says which service and what to do."""


@dataclass(frozen=True)
class StackPaths:
    """The state folder of one stack (the shared one, or a test's private one)."""

    state: Path
    env_file: Path

    def __getattr__(self, name: str) -> Path:  # logs, pids, postgres, redis, feature_store, kafka, mlflow
        if name in {"logs", "pids", "postgres", "redis", "kafka", "mlflow", "feature_store"}:
            return self.state / name.replace("_", "-")
        raise AttributeError(name)

    def pid_file(self, service: str) -> Path:
        return self.state / "pids" / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.state / "logs" / f"{service}.log"


def stack_paths(env: dict[str, str] | None = None) -> StackPaths:
    """The paths of the stack the environment names (default: the repository's ``.stack/``)."""
    env = dict(os.environ if env is None else env)
    return StackPaths(state=default_state_dir(env).resolve(), env_file=default_env_file(env))
