"""Make sure the registry has the model that the streaming job serves; train one when it has not.

The containerized system starts from empty volumes, and the scoring job cannot start without a
model behind MODEL_URI. This one-shot step (compose service "model-bootstrap") checks the
registry and, only when nothing matches, runs the command given after ``--`` (the project's
whole batch loop: generate, validate, train, evaluate, register, promote). A second
``docker compose up`` finds the model and trains nothing.

Reads: MLFLOW_TRACKING_URI and MODEL_URI (fraudops.settings), the MLflow model registry.
Writes: nothing itself; the command it runs writes data/, MLflow runs and registry versions.
Command (inside the application image, as docker-compose.yml runs it):
    python /app/docker/ensure_model.py -- python -m pipelines.main --days 30 --customers 2000
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def is_missing_model_error(exc: Exception) -> bool:
    """True when the registry answered "no such model, version, stage or alias" (not an outage)."""
    if isinstance(exc, LookupError):
        return True
    code = str(getattr(exc, "error_code", ""))
    return "RESOURCE_DOES_NOT_EXIST" in code or ("INVALID_PARAMETER_VALUE" in code and "alias" in str(exc))


def served_version(model_uri: str) -> str | None:
    """The registry version behind ``model_uri`` now, or None when there is none yet.

    Raises:
        MlflowException: when the registry cannot be asked (server down, bad URI...).
    """
    from fraudops.modeling.registry import registry_client, resolve_model_version

    try:
        return str(resolve_model_version(model_uri, registry_client()).version)
    except Exception as exc:
        if is_missing_model_error(exc):
            return None
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="the command that trains, registers and promotes a model (after --)",
    )
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the training command after --, e.g. -- python -m pipelines.main")

    from fraudops.settings import load_settings

    model_uri = load_settings().model_uri
    version = served_version(model_uri)
    if version is not None:
        print(f"model-bootstrap: {model_uri} is version {version}; nothing to train")
        return 0
    print(f"model-bootstrap: no model behind {model_uri} yet; running: {' '.join(command)}", flush=True)
    status = subprocess.call(command)
    if status != 0:
        print(f"model-bootstrap: the training command failed with exit status {status}", file=sys.stderr)
        return status
    version = served_version(model_uri)
    if version is None:
        print(
            f"model-bootstrap: the training command finished but {model_uri} still resolves to "
            "nothing (was the model promoted?)",
            file=sys.stderr,
        )
        return 1
    print(f"model-bootstrap: {model_uri} is now version {version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
