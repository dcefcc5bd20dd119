"""One settings object, built from the environment.

Reads: environment variables, falling back to the env file that `make stack-up` writes
(``.stack/stack.env`` by default, or the file named by FRAUDOPS_ENV_FILE), then to defaults.
Importing this module has no side effects; call :func:`load_settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a KEY=VALUE file (blank lines and # comments ignored)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def default_state_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get("FRAUDOPS_STATE_DIR", PROJECT_ROOT / ".stack"))


def default_env_file(env: Mapping[str, str]) -> Path:
    if env.get("FRAUDOPS_ENV_FILE"):
        return Path(env["FRAUDOPS_ENV_FILE"])
    return default_state_dir(env) / "stack.env"


@dataclass(frozen=True)
class Settings:
    """Connection and naming settings shared by every command of the project."""

    kafka_brokers: str = "127.0.0.1:9092"
    kafka_topic: str = "banking-transactions"
    kafka_alerts_topic: str = "fraud-alerts"
    kafka_labels_topic: str = "transaction-labels"
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "fraud"
    postgres_password: str = ""
    postgres_db: str = "frauddb"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_password: str = ""
    mlflow_tracking_uri: str = "http://127.0.0.1:5000"
    model_name: str = "fraud-detector"
    model_uri: str = "models:/fraud-detector/Production"
    portal_port: int = 8050  # the analyst portal (portal/, 127.0.0.1 only)
    state_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".stack")

    @property
    def postgres_dsn(self) -> str:
        """libpq key/value DSN (the password is never logged by psycopg2)."""
        return (
            f"host={self.postgres_host} port={self.postgres_port} dbname={self.postgres_db} "
            f"user={self.postgres_user} password={self.postgres_password}"
        )

    @property
    def checkpoint_dir(self) -> Path:
        return self.state_dir / "checkpoints"


_VARS = {
    "KAFKA_BROKERS": ("kafka_brokers", str),
    "KAFKA_TOPIC": ("kafka_topic", str),
    "KAFKA_ALERTS_TOPIC": ("kafka_alerts_topic", str),
    "KAFKA_LABELS_TOPIC": ("kafka_labels_topic", str),
    "POSTGRES_HOST": ("postgres_host", str),
    "POSTGRES_PORT": ("postgres_port", int),
    "POSTGRES_USER": ("postgres_user", str),
    "POSTGRES_PASSWORD": ("postgres_password", str),
    "POSTGRES_DB": ("postgres_db", str),
    "REDIS_HOST": ("redis_host", str),
    "REDIS_PORT": ("redis_port", int),
    "REDIS_PASSWORD": ("redis_password", str),
    "MLFLOW_TRACKING_URI": ("mlflow_tracking_uri", str),
    "MODEL_NAME": ("model_name", str),
    "MODEL_URI": ("model_uri", str),
    "PORTAL_PORT": ("portal_port", int),
}


def merged_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The env file's values overlaid by the real environment (the environment wins)."""
    env = dict(os.environ if env is None else env)
    merged = read_env_file(default_env_file(env))
    merged.update(env)
    return merged


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: os.environ plus the stack's env file).

    Raises:
        ValueError: naming the variable when a value cannot be converted (e.g. a port).
    """
    merged = merged_environment(env)
    kwargs: dict[str, object] = {"state_dir": default_state_dir(merged)}
    for var, (attr, cast) in _VARS.items():
        if var in merged and merged[var] != "":
            try:
                kwargs[attr] = cast(merged[var])
            except ValueError as exc:
                raise ValueError(f"{var}={merged[var]!r} is not a valid {cast.__name__}") from exc
    if "MODEL_URI" not in merged and "model_name" in kwargs:
        kwargs["model_uri"] = f"models:/{kwargs['model_name']}/Production"
    return Settings(**kwargs)  # type: ignore[arg-type]
