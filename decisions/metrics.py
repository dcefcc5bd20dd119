"""The decision service's Prometheus metrics, counted by decisions.app from each answer it sends.

The engine never imports this module: the endpoint counts what it answered (``fraudops_decision``):

  decisions_total{decision,degraded}     answers with a decision (approve / review / decline;
                                         degraded "true" when the degraded mode answered)
  degraded_total{reason}                 degraded answers by degraded_reason
  requests_total{status}                 POST /v1/decisions by HTTP status (401, 409, 413, 422, 429 ...)
  invalid_total{reason}                  422 answers by the kind of the quarantine reason
  request_seconds                        histogram: request received to answer ready, per request
  model_version                          version number of the model of the latest decision

:func:`exposition` is the body of ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "fraudops_decision_"
REQUEST_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0)

REGISTRY = CollectorRegistry(auto_describe=True)
DECISIONS = Counter(PREFIX + "decisions", "answers with a decision, by decision and degraded mode",
                    ["decision", "degraded"], registry=REGISTRY)
DEGRADED = Counter(PREFIX + "degraded", "degraded answers by reason", ["reason"], registry=REGISTRY)
REQUESTS = Counter(PREFIX + "requests", "POST /v1/decisions requests by HTTP status", ["status"], registry=REGISTRY)
INVALID = Counter(PREFIX + "invalid", "transactions refused as invalid (422), by reason kind", ["reason"],
                  registry=REGISTRY)
REQUEST_SECONDS = Histogram(PREFIX + "request_seconds", "request received to answer ready", buckets=REQUEST_BUCKETS,
                            registry=REGISTRY)
MODEL_VERSION = Gauge(PREFIX + "model_version", "version number of the model of the latest decision",
                      registry=REGISTRY)
CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_answer(status: int, body: Mapping | None, seconds: float) -> None:
    """Count one answer of POST /v1/decisions: its status, its decision (when it has one) and
    the time from the request's arrival."""
    REQUESTS.labels(status=str(status)).inc()
    REQUEST_SECONDS.observe(seconds)
    if not body:
        return
    if status == 422 and body.get("reason"):
        INVALID.labels(reason=str(body["reason"]).split(":", 1)[0]).inc()
    decision = body.get("decision")
    if decision is None:
        return
    degraded = bool(body.get("degraded"))
    DECISIONS.labels(decision=str(decision), degraded=str(degraded).lower()).inc()
    if degraded:
        DEGRADED.labels(reason=str(body.get("degraded_reason") or "unknown")).inc()
    version = str(body.get("model_version") or "")
    if version.isdigit():
        MODEL_VERSION.set(float(version))


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
