"""One settings object, built from the environment.

Reads: environment variables, falling back to the env file that `make stack-up` writes
(``.stack/stack.env`` by default, or the file named by FRAUDOPS_ENV_FILE), then to defaults.
Importing this module has no side effects; call :func:`load_settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import field, make_dataclass
from pathlib import Path

from fraudops.settings_table import BY_NAME, Setting, application_settings

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
    """FRAUDOPS_STATE_DIR (relative: to the repository), default ``.stack``."""
    return PROJECT_ROOT / env.get("FRAUDOPS_STATE_DIR", BY_NAME["FRAUDOPS_STATE_DIR"].default)


def default_env_file(env: Mapping[str, str]) -> Path:
    if env.get("FRAUDOPS_ENV_FILE"):
        return Path(env["FRAUDOPS_ENV_FILE"])
    return default_state_dir(env) / "stack.env"


class _SettingsMethods:
    """What Settings derives from its fields."""

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


def _typed_default(row: Setting):
    if row.kind is Path:
        return field(default_factory=lambda: PROJECT_ROOT / row.default)
    return field(default=row.kind(row.default))


# The settings object: one frozen dataclass field per row of fraudops.settings_table that names a
# ``field`` (kafka_brokers, postgres_port, ..., model_uri, portal_port, state_dir), with the row's
# type and default. Add a setting by adding a row there.
Settings = make_dataclass(
    "Settings",
    [(row.field, row.kind, _typed_default(row)) for row in application_settings()],
    bases=(_SettingsMethods,),
    frozen=True,
    namespace={"__module__": __name__,
               "__doc__": "Connection and naming settings shared by every command (fields: fraudops.settings_table)."},
)


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
    for row in application_settings():
        value = merged.get(row.name, "")
        if value != "" and row.kind is not Path:
            try:
                kwargs[row.field] = row.kind(value)
            except ValueError as exc:
                raise ValueError(f"{row.name}={value!r} is not a valid {row.kind.__name__}") from exc
    if "MODEL_URI" not in merged and "model_name" in kwargs:
        kwargs["model_uri"] = f"models:/{kwargs['model_name']}@champion"
    return Settings(**kwargs)  # type: ignore[arg-type]
