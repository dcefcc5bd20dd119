"""Model registry helpers shared by the pipelines and the streaming job.

Reads/writes: the MLflow tracking server and model registry named by
``load_settings().mlflow_tracking_uri``. Nothing happens at import: call
:func:`configure_tracking` (or pass a client) first.

Conventions of a `fraud-detector` version (written once, here):

* tags ``decision_threshold`` and ``feature_set_version`` (also inside the model's metadata);
* stage ``Production`` plus the alias ``champion`` for the served version (moved together by
  :func:`promote_to_production`, which archives the previous Production version);
* run artifact ``reference/features.parquet``: a sample of the validation period's features with
  the model's out-of-sample score and the label (the drift monitor's reference data).

The streaming job: ``served = resolve_served_model(settings.model_uri)`` gives the pinned URI
(``models:/<name>/<version>``), the version and the threshold; between micro-batches
``production_version(name)`` tells whether a newer version was promoted.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRODUCTION = "Production"
STAGING = "Staging"
ARCHIVED = "Archived"
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
TAG_THRESHOLD = "decision_threshold"
TAG_FEATURE_SET_VERSION = "feature_set_version"
TAG_MODEL_TYPE = "model_type"
TAG_LABEL_DELAY = "label_delay_seconds"
# the score at or above which the decision service declines (chosen on validation at training
# time, pipelines.evaluation_metrics.choose_decline_threshold); review starts at TAG_THRESHOLD
TAG_DECLINE_THRESHOLD = "decline_threshold"
REFERENCE_ARTIFACT = "reference/features.parquet"

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<ref>[^/]+)|@(?P<alias>[^/]+))/?$")


@dataclass(frozen=True)
class ServedModel:
    """A registry version resolved for serving.

    Attributes:
        name: registered model name.
        version: version number as a string (what every scored row records).
        model_uri: URI pinned to that version (``models:/<name>/<version>``), safe to cache.
        threshold: the version's decision threshold.
        feature_set_version: the feature set the version was trained on.
        run_id: the training run (its artifacts hold ``reference/features.parquet``).
        label_delay_seconds: the label delay the version was trained with (None: not recorded).
        decline_threshold: the score at or above which a decision declines (None: the version
            predates the tag; the decision service then declines at its fallback).
    """

    name: str
    version: str
    model_uri: str
    threshold: float
    feature_set_version: str
    run_id: str | None
    label_delay_seconds: float | None = None
    decline_threshold: float | None = None


def configure_tracking(settings=None) -> str:
    """Point mlflow (tracking and registry) at the settings' server; returns the URI."""
    import mlflow

    if settings is None:
        from fraudops.settings import load_settings

        settings = load_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return settings.mlflow_tracking_uri


def registry_client(settings=None):
    """An MlflowClient on the settings' server (configures the tracking URI first)."""
    from mlflow import MlflowClient

    uri = configure_tracking(settings)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _client(client):
    return client if client is not None else registry_client()


def parse_models_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """Split ``models:/name/<version|stage|latest>`` or ``models:/name@alias``.

    Returns:
        (name, version_or_stage, alias): exactly one of the last two is set.

    Raises:
        ValueError: naming the URI when it is not a ``models:/`` URI.
    """
    match = _MODELS_URI.match(model_uri or "")
    if not match:
        raise ValueError(
            f"model_uri={model_uri!r} is not a registry URI (models:/<name>/<version|stage> or models:/<name>@<alias>)"
        )
    return match["name"], match["ref"], match["alias"]


def wait_for_version_ready(name: str, version: str | int, client=None, timeout: float = 300.0,
                           interval: float = 0.5):
    """Poll until the version's status is READY; returns the ModelVersion.

    Raises:
        RuntimeError: if registration failed; TimeoutError after ``timeout`` seconds.
    """
    client = _client(client)
    deadline = time.monotonic() + timeout
    while True:
        model_version = client.get_model_version(name, str(version))
        if model_version.status == "READY":
            return model_version
        if model_version.status == "FAILED_REGISTRATION":
            raise RuntimeError(f"{name} version {version} failed to register: {model_version.status_message}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} version {version} not READY after {timeout}s (status {model_version.status})")
        time.sleep(interval)


def register_model_version(model_uri: str, name: str, tags: Mapping[str, Any], run_id: str | None = None,
                           client=None, description: str | None = None, timeout: float = 300.0):
    """Register ``model_uri`` (e.g. ``runs:/<id>/model`` or ``models:/m-<id>``) as a new version.

    Args:
        model_uri: the logged model.
        name: registered model name (created when absent).
        tags: version tags; must hold ``decision_threshold`` and ``feature_set_version``.
        run_id: the training run (recorded on the version; parsed from ``runs:/`` URIs).
        client: MlflowClient (default: one from the settings).
        description: version description.
        timeout: seconds to wait for READY.

    Returns:
        The READY ModelVersion.
    """
    from mlflow.exceptions import MlflowException

    missing = [t for t in (TAG_THRESHOLD, TAG_FEATURE_SET_VERSION) if t not in tags]
    if missing:
        raise ValueError(f"tags lack {missing}: every {name} version carries its threshold and feature set")
    client = _client(client)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
            raise
    created = client.create_model_version(
        name,
        model_uri,
        run_id=run_id or _run_id_of(model_uri),
        tags={k: str(v) for k, v in tags.items()},
        description=description,
        model_id=_model_id_of(model_uri),
    )
    return wait_for_version_ready(name, created.version, client, timeout=timeout)


def _run_id_of(model_uri: str) -> str | None:
    match = re.match(r"^runs:/([^/]+)/", model_uri)
    return match.group(1) if match else None


def _model_id_of(model_uri: str) -> str | None:
    match = re.match(r"^models:/(m-[0-9a-f]+)$", model_uri)
    return match.group(1) if match else None


def latest_version(name: str, client=None):
    """The highest-numbered version of ``name`` (None when it has no version)."""
    client = _client(client)
    versions = client.search_model_versions(f"name='{name}'")
    return max(versions, key=lambda v: int(v.version), default=None)


def production_version(name: str, client=None):
    """The version in stage Production (None when there is none)."""
    client = _client(client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            versions = client.get_latest_versions(name, stages=[PRODUCTION])
        except Exception as exc:  # a model that does not exist yet has no Production version
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")):
                return None
            raise
    return versions[0] if versions else None


def get_version(name: str, version: str | int, client=None):
    """The ModelVersion ``version`` of ``name``; ``"latest"`` means the highest number.

    Raises:
        LookupError: naming the model when it has no such version.
    """
    client = _client(client)
    if str(version) == "latest":
        found = latest_version(name, client)
        if found is None:
            raise LookupError(f"registered model {name!r} has no versions")
        return found
    if not str(version).isdigit():
        raise ValueError(f"version={version!r} must be 'latest' or a version number")
    return client.get_model_version(name, str(version))


def resolve_model_version(model_uri: str, client=None):
    """The ModelVersion a ``models:/`` URI points at now (stage, alias, number or latest).

    Raises:
        LookupError: naming the URI when nothing matches (e.g. no Production version yet).
    """
    from mlflow.exceptions import MlflowException

    client = _client(client)
    name, ref, alias = parse_models_uri(model_uri)
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if ref.isdigit() or ref == "latest":
            return get_version(name, ref, client)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            versions = client.get_latest_versions(name, stages=[ref])
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise LookupError(f"{model_uri}: {exc.message}") from exc
        raise
    if not versions:
        raise LookupError(f"{model_uri}: registered model {name!r} has no version in stage {ref!r}")
    return versions[0]


def version_threshold(model_version) -> float:
    """The decision threshold tag of a ModelVersion (KeyError naming the version if absent)."""
    try:
        return float(model_version.tags[TAG_THRESHOLD])
    except KeyError:
        raise KeyError(
            f"{model_version.name} version {model_version.version} has no {TAG_THRESHOLD!r} tag"
        ) from None


def version_feature_set(model_version) -> str:
    """The feature_set_version tag of a ModelVersion (KeyError naming the version if absent)."""
    try:
        return str(model_version.tags[TAG_FEATURE_SET_VERSION])
    except KeyError:
        raise KeyError(
            f"{model_version.name} version {model_version.version} has no {TAG_FEATURE_SET_VERSION!r} tag"
        ) from None


def version_label_delay(model_version) -> float | None:
    """The label delay (seconds) a version was trained with; None for versions that predate the tag."""
    value = (model_version.tags or {}).get(TAG_LABEL_DELAY)
    return float(value) if value not in (None, "") else None


def version_decline_threshold(model_version) -> float | None:
    """The decline threshold a version was registered with; None for versions without the tag."""
    value = (model_version.tags or {}).get(TAG_DECLINE_THRESHOLD)
    return float(value) if value not in (None, "") else None


def parse_label_delay(value, argument: str = "label_delay") -> float:
    """``1h``, ``30m``, ``7d``, ``90s`` or a number of seconds -> seconds (>= 0).

    Raises:
        ValueError: naming ``argument``.
    """
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    try:
        seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{argument}={value!r} is not a delay like 30m, 1h, 7d or a number of seconds")
    return seconds


def label_delay_mismatch(job_seconds: float, served: ServedModel) -> str | None:
    """A warning when the job's label delay differs from the one the served version was trained with."""
    trained = served.label_delay_seconds
    if trained is None or abs(trained - float(job_seconds)) < 1e-6:
        return None
    return (f"the job's label delay ({job_seconds:g} s) differs from the one {served.name} version "
            f"{served.version} was trained with ({trained:g} s): its merchant features use labels "
            f"{'earlier' if job_seconds < trained else 'later'} than in training; start the job with "
            f"--label-delay {trained:g} or retrain with label_delay={job_seconds:g}")


def served_model(model_version) -> ServedModel:
    """A :class:`ServedModel` of a ModelVersion (URI pinned to its number)."""
    return ServedModel(
        name=model_version.name,
        version=str(model_version.version),
        model_uri=f"models:/{model_version.name}/{model_version.version}",
        threshold=version_threshold(model_version),
        feature_set_version=version_feature_set(model_version),
        run_id=model_version.run_id,
        label_delay_seconds=version_label_delay(model_version),
        decline_threshold=version_decline_threshold(model_version),
    )


def resolve_served_model(model_uri: str, client=None) -> ServedModel:
    """Resolve MODEL_URI (e.g. ``models:/fraud-detector/Production``) to a pinned :class:`ServedModel`."""
    return served_model(resolve_model_version(model_uri, client))


def resolve_challenger(name: str, champion_version: str | None = None, client=None) -> ServedModel | None:
    """The challenger of ``name`` scored in shadow: the ``challenger`` alias, else the newest
    version in stage Staging; None when there is none (or it is the champion itself)."""
    from mlflow.exceptions import MlflowException

    client = _client(client)
    found = None
    try:
        found = client.get_model_version_by_alias(name, CHALLENGER_ALIAS)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            raise
    if found is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                staged = client.get_latest_versions(name, stages=[STAGING])
            except MlflowException as exc:
                if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                    return None
                raise
        found = max(staged, key=lambda v: int(v.version), default=None)
    if found is None or str(found.version) == str(champion_version):
        return None
    return served_model(found)


def promote_to_staging(name: str, version: str | int, client=None):
    """Move a version to stage Staging (others in Staging stay); returns the ModelVersion."""
    client = _client(client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return client.transition_model_version_stage(name, str(version), STAGING)


def promote_to_production(name: str, version: str | int, client=None):
    """Make ``version`` the Production version and the ``champion`` alias.

    The previous Production version is archived. Returns (new ModelVersion, previous
    Production version number or None).
    """
    client = _client(client)
    previous = production_version(name, client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        promoted = client.transition_model_version_stage(
            name, str(version), PRODUCTION, archive_existing_versions=True
        )
    client.set_registered_model_alias(name, CHAMPION_ALIAS, str(version))
    previous_number = previous.version if previous is not None and previous.version != str(version) else None
    return promoted, previous_number


def download_reference_features(model_version, destination: str | Path) -> Path:
    """Download the version's training reference sample (``reference/features.parquet``)."""
    import mlflow

    if not model_version.run_id:
        raise LookupError(f"{model_version.name} version {model_version.version} has no training run")
    local = mlflow.artifacts.download_artifacts(
        run_id=model_version.run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=str(destination)
    )
    return Path(local)
