"""Champion against challenger, for the portal's page /challenger: the versions the registry names,
the comparison computed now on the live labels, and the comparisons recorded so far.

Every figure comes from monitoring.challenger (the comparison, the table of figures with the
labels behind each, the recorded history, the label shortfall); this module only gathers them.

Reads: the MLflow registry (settings.model_name: Production and the challenger, Staging stage or
alias ``challenger``); PostgreSQL transactions, shadow_scores, labels, monitoring_metrics of the
portal's schema. Writes nothing (``python -m monitoring.challenger compare`` records).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from monitoring import challenger as live

# states of the page
REGISTRY_DOWN, NO_CHAMPION, NO_CHALLENGER, NOT_ENOUGH_LABELS, READY = (
    "registry_unreachable", "no_champion", "no_challenger", "not_enough_labels", "ready")
HISTORY_ROWS = 50


@dataclass(frozen=True)
class ChallengerPanel:
    model_name: str
    state: str
    message: str
    champion_version: str | None = None
    challenger_version: str | None = None
    comparison: live.LiveComparison | None = None  # computed now, on the live labels
    figures: list[dict[str, Any]] = field(default_factory=list)  # live.figure_table of it
    history: list[dict[str, Any]] = field(default_factory=list)  # recorded comparisons, newest first
    min_labels: int = live.MIN_LIVE_LABELS

    @property
    def latest(self) -> dict[str, Any] | None:
        return self.history[0] if self.history else None

    def as_json(self) -> dict[str, Any]:
        return {"model": self.model_name, "state": self.state, "message": self.message,
                "champion_version": self.champion_version, "challenger_version": self.challenger_version,
                "min_labels": self.min_labels,
                "comparison": self.comparison.summary() if self.comparison else None,
                "figures": self.figures, "history": self.history}


def _plain(value: Any) -> Any:
    """A history cell as a plain value (NaN -> None, numpy -> Python, times as they are)."""
    if hasattr(value, "to_pydatetime"):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def recorded_history(conn, model_name: str, limit: int = HISTORY_ROWS) -> list[dict[str, Any]]:
    """The recorded comparisons of ``model_name``, newest first, as plain dicts."""
    frame = live.comparison_history(conn, model_name, limit)
    rows = [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    return rows[::-1]


def challenger_panel(settings, conn, min_labels: int = live.MIN_LIVE_LABELS, client=None) -> ChallengerPanel:
    """Everything the page shows; the registry being unreachable is a state, never an error."""
    from fraudops.modeling.registry import registry_client

    name = settings.model_name
    history = recorded_history(conn, name)
    try:
        champion, challenger = live.current_versions(name, client or registry_client(settings))
    except Exception as exc:  # noqa: BLE001 - the page says MLflow is unreachable instead of failing
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        return ChallengerPanel(name, REGISTRY_DOWN, f"MLflow is unreachable: {text}", history=history,
                               min_labels=min_labels)
    if champion is None:
        return ChallengerPanel(name, NO_CHAMPION, f"{name} has no Production version: nothing to compare",
                               history=history, min_labels=min_labels)
    if challenger is None:
        return ChallengerPanel(name, NO_CHALLENGER,
                               f"no challenger: stage a version of {name} (stage Staging or alias 'challenger') "
                               "and the scoring job scores it in shadow beside the champion",
                               champion_version=champion, history=history, min_labels=min_labels)
    comparison = live.live_comparison(conn, name, champion, challenger)
    shortfall = live.label_shortfall(comparison, min_labels)
    state, message = ((NOT_ENOUGH_LABELS, f"not enough labels yet: {shortfall}") if shortfall else
                      (READY, f"{comparison.labels} live labels ({comparison.positives} fraud): enough to decide"))
    return ChallengerPanel(name, state, message, champion, challenger, comparison, live.figure_table(comparison),
                           history, min_labels)
