"""The local stack's configuration: the env file it writes, with defaults from the one settings
table (fraudops.settings_table) and passwords it generates once."""

from __future__ import annotations

import os
import secrets

from devstack.paths import StackError, StackPaths
from fraudops.settings import Settings, load_settings, read_env_file
from fraudops.settings_table import local_stack_settings

# the passwords the stack generates at its first start (every one kept in the env file)
SECRETS = tuple(row.name for row in local_stack_settings() if row.secret)
# defaults an env file written by an earlier version holds: they follow the table's new default
# (MODEL_URI served the Production stage before the champion alias became the default)
FORMER_DEFAULTS = {"MODEL_URI": "models:/fraud-detector/Production"}


def stack_config(paths: StackPaths) -> dict[str, str]:
    """The stack's variables: the environment's (passwords excepted), else the env file's, else
    generated (passwords) or the table's defaults. MLFLOW_TRACKING_URI follows MLFLOW_PORT."""
    rows = local_stack_settings()
    current = {key: value for key, value in read_env_file(paths.env_file).items()
               if FORMER_DEFAULTS.get(key) != value}
    env = {**current, **{row.name: os.environ[row.name] for row in rows
                         if os.environ.get(row.name) and not row.secret}}
    cfg = {row.name: env.get(row.name) or row.default for row in rows if not row.secret}
    cfg.update({name: env.get(name) or secrets.token_urlsafe(24) for name in SECRETS})
    cfg["MLFLOW_TRACKING_URI"] = env.get("MLFLOW_TRACKING_URI") or f"http://127.0.0.1:{cfg['MLFLOW_PORT']}"
    return cfg


def write_env_file(paths: StackPaths, cfg: dict[str, str]) -> None:
    """Write ``cfg`` to the env file, readable by its owner only (it holds the passwords)."""
    paths.env_file.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `make stack-up` (devstack.stack). Local secrets: never commit this file."]
    lines += [f"{key}={cfg[key]}" for key in sorted(cfg) if not key.startswith("_")]
    tmp = paths.env_file.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.chmod(0o600)
    tmp.replace(paths.env_file)


def stack_settings(paths: StackPaths, cfg: dict[str, str]) -> Settings:
    """The settings a command of this stack would load (for the readiness checks of fraudops.health)."""
    return load_settings({**cfg, "FRAUDOPS_STATE_DIR": str(paths.state), "FRAUDOPS_ENV_FILE": str(paths.env_file)})


def port_of(address: str, default: int) -> int:
    """The port of ``host:port`` (``default`` when there is none)."""
    try:
        return int(address.rsplit(":", 1)[1]) if ":" in address else default
    except ValueError as exc:
        raise StackError(f"cannot read a port from {address!r}") from exc
