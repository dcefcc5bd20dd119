"""The decision policy as code: score -> approve / review / decline, and the degraded answers.

Thresholds travel with the model version (fraudops.modeling.registry.ServedModel):
- review at or above the version's ``decision_threshold`` tag: the threshold the stream alerts
  at, chosen on validation at training time (max F1, pipelines.evaluation_metrics.choose_threshold);
- decline at or above its ``decline_threshold`` tag: the lowest threshold, not below review,
  whose validation precision reaches 0.9 (pipelines.evaluation_metrics.choose_decline_threshold).
  A version registered before that tag declines at ``max(review, FALLBACK_DECLINE_THRESHOLD)``.

Degraded mode (DECISION_DEGRADED_MODE): when the feature store or the model is unavailable, or
the request's budget was spent waiting, the answer is ``review`` (default) or
``approve-and-flag`` (approve; the transaction is flagged degraded and the streaming job scores
it as soon as it can, alerting like any other). Never a 500 without a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudops.contract.decisions import DEGRADED_MODES

FALLBACK_DECLINE_THRESHOLD = 0.9

# why a decision is degraded (the response's degraded_reason)
FEATURE_STORE_UNAVAILABLE = "feature_store_unavailable"
MODEL_UNAVAILABLE = "model_unavailable"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Thresholds:
    """Review and decline thresholds of one model version (review <= decline)."""

    review: float
    decline: float

    @classmethod
    def of(cls, served) -> Thresholds:
        """The thresholds of a ServedModel (decline falls back for versions without the tag)."""
        review = float(served.threshold)
        decline = served.decline_threshold
        decline = max(review, FALLBACK_DECLINE_THRESHOLD) if decline is None else max(review, float(decline))
        return cls(review, decline)


def decide(scores: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """approve / review / decline of each score (object array)."""
    scores = np.asarray(scores, dtype="float64")
    return np.where(scores >= thresholds.decline, "decline",
                    np.where(scores >= thresholds.review, "review", "approve")).astype(object)


def degraded_decision(mode: str) -> str:
    """The decision a degraded answer gives under ``mode`` (one of DEGRADED_MODES)."""
    check_degraded_mode(mode)
    return "review" if mode == "review" else "approve"


def check_degraded_mode(mode: str, argument: str = "DECISION_DEGRADED_MODE") -> str:
    if mode not in DEGRADED_MODES:
        raise ValueError(f"{argument}={mode!r} is not one of {', '.join(DEGRADED_MODES)}")
    return mode
