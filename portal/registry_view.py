"""What the MLflow registry says about the served model, for the models page and the dashboard.

Reads: the MLflow tracking server (settings.mlflow_tracking_uri): the versions of
settings.model_name with stage, aliases, tags, and their training runs' metrics. Writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from fraudops.modeling.registry import PRODUCTION, TAG_THRESHOLD, registry_client

SHOWN_METRICS = ("auc_roc", "average_precision", "precision", "recall", "f1", "card_precision_at_100")


@dataclass(frozen=True)
class VersionView:
    version: str
    stage: str
    aliases: tuple[str, ...]
    created_at: datetime
    run_id: str | None
    threshold: str | None
    tags: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryView:
    model_name: str
    versions: tuple[VersionView, ...]
    production: str | None
    ui_url: str
    error: str | None = None

    def version_url(self, version: str) -> str:
        return f"{self.ui_url}/#/models/{self.model_name}/versions/{version}"


def _ms(value) -> datetime:
    return datetime.fromtimestamp((value or 0) / 1000, tz=UTC)


def read_registry(settings, with_metrics: bool = True, max_versions: int = 30) -> RegistryView:
    """Versions of settings.model_name, newest first; ``error`` set (never raised) when MLflow is unreachable."""
    ui_url = settings.mlflow_tracking_uri.rstrip("/")
    try:
        client = registry_client(settings)
        found = client.search_model_versions(f"name='{settings.model_name}'", max_results=200)
        found = sorted(found, key=lambda v: int(v.version), reverse=True)[:max_versions]
        versions = tuple(_version_view(client, v, with_metrics) for v in found)
    except Exception as exc:  # noqa: BLE001 - the page shows MLflow as unreachable instead of failing
        message = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return RegistryView(settings.model_name, (), None, ui_url, error=message)
    production = next((v.version for v in versions if v.stage == PRODUCTION), None)
    return RegistryView(settings.model_name, versions, production, ui_url)


def _version_view(client, version, with_metrics: bool) -> VersionView:
    metrics: dict[str, float] = {}
    if with_metrics and version.run_id:
        try:
            run_metrics = client.get_run(version.run_id).data.metrics
            metrics = {k: v for k, v in sorted(run_metrics.items())
                       if k.removeprefix("test_").removeprefix("val_") in SHOWN_METRICS}
        except Exception:  # noqa: BLE001 - a deleted run leaves the version without metrics
            metrics = {}
    tags = dict(version.tags or {})
    return VersionView(str(version.version), version.current_stage or "None", tuple(version.aliases or ()),
                       _ms(version.creation_timestamp), version.run_id, tags.get(TAG_THRESHOLD), tags, metrics)
