"""The streaming job's own Prometheus metrics, counted on the driver from each micro-batch's results.

The scoring handler (streaming.batch_handlers) calls :func:`observe_scoring_batch` with the
statistics its pass returned, the labels handler :func:`observe_labels_batch`; the driver serves
:data:`REGISTRY` with :func:`serve` (STREAMING_METRICS_PORT, 9109). Names (``fraudops_stream_``):

  transactions_total                 scored transactions (decided ones recorded included)
  alerts_total                       fraud alerts written
  quarantined_total{reason}          messages sent to quarantine, by reason kind (the part of the
                                     contract's reason before ':', e.g. duplicate_key, missing_field)
  redis_alerts_missed_total          alerts Redis did not take (kept in PostgreSQL, resynced later)
  labels_total                       labels written from the labels topic
  batches_total{query}               micro-batches handled
  end_to_end_latency_seconds         histogram, one observation per scored transaction: Kafka
                                     timestamp to the PostgreSQL commit
  batch_duration_seconds{query}      histogram of the handler's time per micro-batch
  model_version                      version number of the served model
  last_batch_timestamp_seconds       when the last scoring micro-batch finished (epoch seconds)

The end-to-end histogram takes a batch's latencies in one numpy call (:class:`BulkHistogram`):
up to --max-offsets-per-trigger observations a batch, which one observe() each would cost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

log = logging.getLogger("streaming.prometheus")

PREFIX = "fraudops_stream_"
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class BulkHistogram:
    """A Prometheus histogram fed a whole array at a time (a custom collector of the registry)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry):
        self.name, self.documentation = name, documentation
        self._bounds = np.asarray(buckets, dtype="float64")
        self._counts = np.zeros(len(buckets) + 1, dtype="int64")  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        """Add every value (seconds) to the histogram."""
        values = np.asarray(values, dtype="float64")
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation)]

    def collect(self):
        with self._lock:
            cumulative, total = np.cumsum(self._counts), self._sum
        buckets = [(floatToGoString(bound), int(count)) for bound, count in zip(self._bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", int(cumulative[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


REGISTRY = CollectorRegistry(auto_describe=True)
TRANSACTIONS = Counter(PREFIX + "transactions", "transactions scored by the streaming job", registry=REGISTRY)
ALERTS = Counter(PREFIX + "alerts", "fraud alerts the streaming job wrote", registry=REGISTRY)
QUARANTINED = Counter(PREFIX + "quarantined", "messages sent to the quarantine table, by reason kind",
                      ["reason"], registry=REGISTRY)
REDIS_MISSED = Counter(PREFIX + "redis_alerts_missed", "alerts the Redis cache did not take (resynced later)",
                       registry=REGISTRY)
LABELS = Counter(PREFIX + "labels", "labels written from the labels topic", registry=REGISTRY)
BATCHES = Counter(PREFIX + "batches", "micro-batches handled", ["query"], registry=REGISTRY)
END_TO_END = BulkHistogram(PREFIX + "end_to_end_latency_seconds",
                           "Kafka timestamp to PostgreSQL commit, per scored transaction", LATENCY_BUCKETS, REGISTRY)
BATCH_DURATION = Histogram(PREFIX + "batch_duration_seconds", "the handler's time per micro-batch", ["query"],
                           buckets=BATCH_BUCKETS, registry=REGISTRY)
MODEL_VERSION = Gauge(PREFIX + "model_version", "version number of the model the job serves", registry=REGISTRY)
LAST_BATCH = Gauge(PREFIX + "last_batch_timestamp_seconds", "when the last scoring micro-batch finished",
                   registry=REGISTRY)


def reason_kind(reason: str) -> str:
    """The bounded part of a quarantine reason: ``duplicate_key:amount`` -> ``duplicate_key``."""
    return (reason or "unknown").split(":", 1)[0] or "unknown"


def observe_scoring_batch(stats: Mapping, duration_seconds: float, model_version: str | int | None) -> None:
    """Count one scoring micro-batch from the totals of its pass (streaming.scoring_pass.stats_summary)."""
    TRANSACTIONS.inc(stats["rows"])
    ALERTS.inc(stats["alerts"])
    REDIS_MISSED.inc(stats["redis_missed"])
    for reason, count in (stats.get("quarantine_reasons") or {}).items():
        QUARANTINED.labels(reason=reason_kind(reason)).inc(count)
    END_TO_END.observe_many(stats["latencies"])
    BATCHES.labels(query="scoring").inc()
    BATCH_DURATION.labels(query="scoring").observe(duration_seconds)
    if model_version is not None and str(model_version).isdigit():
        MODEL_VERSION.set(float(model_version))
    LAST_BATCH.set(time.time())


def observe_labels_batch(labels: int, rejected_reasons: list[str], duration_seconds: float) -> None:
    """Count one labels micro-batch: labels written, rejected messages by reason."""
    LABELS.inc(labels)
    for reason in rejected_reasons:
        QUARANTINED.labels(reason=reason_kind(reason)).inc()
    BATCHES.labels(query="labels").inc()
    BATCH_DURATION.labels(query="labels").observe(duration_seconds)


def serve(port: int, host: str = "127.0.0.1"):
    """Serve :data:`REGISTRY` on ``http://host:port/metrics`` in a daemon thread; returns the server,
    or None when ``port`` is 0 or taken (the job scores on without its metrics, and says so)."""
    from prometheus_client import start_http_server

    if not port:
        return None
    try:
        server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        log.warning("no Prometheus metrics on %s:%d: %s", host, port, exc)
        return None
    log.info("Prometheus metrics on http://%s:%d/metrics", host, server.server_port)
    return server
