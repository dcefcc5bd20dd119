"""The decision service's parts, wired and kept current: model, merchant snapshot, keys.

:class:`DecisionService` owns the feature-store client, the decision records, the Kafka
publisher, the engine and its batcher, the API keys, and three background threads:
- the registry poll (streaming.model_server.ModelServer, the job's own: MODEL_URI resolved every
  ``model_refresh_seconds``, each switch in audit_log); a new version's pyfunc is loaded in the
  background and swapped in whole, so a promotion never stalls a request nor needs a restart;
  while no version can be resolved or loaded, decisions are degraded (model_unavailable);
- the merchant snapshot (streaming.merchant_risk.read_snapshot, the job's), every
  ``merchant_refresh_seconds``;
- the API keys (decisions.auth.ClientRegistry).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass

import pandas as pd

log = logging.getLogger("decisions.service")


@dataclass
class ServiceOptions:
    pg_schema: str = "public"
    redis_prefix: str = ""
    topic: str | None = None
    model_uri: str | None = None
    model_refresh_seconds: float = 10.0
    merchant_refresh_seconds: float = 60.0
    label_delay_seconds: float = 3600.0
    timeout_ms: float | None = None
    degraded_mode: str | None = None
    max_batch: int = 256
    require_keys: bool = True
    rules_reload_seconds: float | None = None  # None: RULES_RELOAD_SECONDS
    review_budget_per_day: int | None = None  # None: REVIEW_BUDGET_PER_DAY (0: no budget)


class DecisionService:
    def __init__(self, settings, options: ServiceOptions):
        from decisions.policy import check_degraded_mode

        self.settings, self.options = settings, options
        self.timeout_s = float(options.timeout_ms if options.timeout_ms is not None
                               else settings.decision_timeout_ms) / 1000.0
        if not self.timeout_s > 0:
            raise ValueError(f"--timeout-ms must be > 0 (got {self.timeout_s * 1000:g})")
        self.degraded_mode = check_degraded_mode(options.degraded_mode or settings.decision_degraded_mode,
                                                 "--degraded-mode" if options.degraded_mode else "DECISION_DEGRADED_MODE")
        self._stop = threading.Event()
        self.model_server = None
        self.snapshot_at: float | None = None

    # ------------------------------------------------------------------ wiring
    def targets(self):
        from streaming.sinks import SinkTargets

        s = self.settings
        return SinkTargets(postgres_dsn=s.postgres_dsn, pg_schema=self.options.pg_schema, redis_host=s.redis_host,
                           redis_port=s.redis_port, redis_password=s.redis_password,
                           redis_prefix=self.options.redis_prefix, kafka_brokers=s.kafka_brokers,
                           alerts_topic=s.kafka_alerts_topic)

    def pg_connect(self):
        from streaming.sinks import pg_connect

        return pg_connect(self.targets())

    def start(self) -> DecisionService:
        from decisions.auth import ClientRegistry, RefusalLog
        from decisions.batcher import Batcher
        from decisions.engine import DecisionEngine
        from decisions.publisher import DecisionPublisher
        from decisions.records import DecisionRecords
        from features.online import FeatureStore, FeatureStoreTarget
        from rules.policy import ReviewBudget
        from rules.ruleset import RuleSetCache

        s, o = self.settings, self.options
        target = FeatureStoreTarget(host=s.feature_store_host, port=s.feature_store_port,
                                    password=s.feature_store_password, prefix=o.redis_prefix)
        client = target.connect(timeout=1.0)
        self.store = FeatureStore(client, o.redis_prefix)
        self.records = DecisionRecords(client, o.redis_prefix)
        self.publisher = DecisionPublisher(s.kafka_brokers, o.topic or s.kafka_decisions_topic, self.records).start()
        self.rules = RuleSetCache(self.pg_connect, o.rules_reload_seconds if o.rules_reload_seconds is not None
                                  else s.rules_reload_seconds).start()
        per_day = o.review_budget_per_day if o.review_budget_per_day is not None else s.review_budget_per_day
        self.budget = ReviewBudget(client, per_day, f"{o.redis_prefix}review_budget:")
        self.engine = DecisionEngine(self.store, self.records, self.publisher, self.degraded_mode,
                                     rules=self.rules, budget=self.budget)
        self.batcher = Batcher(self.engine, o.max_batch).start()
        self.clients = ClientRegistry(self.pg_connect)
        if o.require_keys:
            self.clients.start()
        self.refusals = RefusalLog(self.pg_connect)
        threading.Thread(target=self._keep_model, name="decisions-model", daemon=True).start()
        threading.Thread(target=self._keep_snapshot, name="decisions-merchant-snapshot", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.batcher.stop()
        self.publisher.stop()
        self.clients.stop()
        self.rules.stop()
        if self.model_server is not None:
            self.model_server.stop()

    # ------------------------------------------------------------------ the served model
    def _audit(self, event_type: str, details: dict) -> None:
        from fraudops.records import insert_audit

        conn = self.pg_connect()
        try:
            insert_audit(conn, event_type, "decision-service", details)
            conn.commit()
        finally:
            conn.close()

    def _keep_model(self) -> None:
        from decisions.engine import ServedVersion
        from fraudops.modeling.compiled import compiled_scorer
        from streaming.model_server import ModelServer
        from streaming.scoring_pass import worker_model

        uri = self.options.model_uri or self.settings.model_uri
        while not self._stop.is_set():
            try:
                if self.model_server is None:
                    server = ModelServer(uri, self.settings, self.options.model_refresh_seconds, audit=self._audit)
                    server.start()
                    self.model_server = server
                served = self.model_server.served
                current = self.engine.version
                if current is None or current.served.model_uri != served.model_uri:
                    model = worker_model(served, self.settings.mlflow_tracking_uri)
                    self._warm(model)
                    scorer = compiled_scorer(model)  # checked equal to the pyfunc; None: the pyfunc scores
                    self.engine.version = ServedVersion(served, model, scorer)
                    # what is loaded now (libraries, the model) lives as long as the process: out
                    # of the collector's sight, a full collection scans only what requests made
                    # since (~0.2M objects here: 130 ms a full pass, a p99 spike each time)
                    gc.freeze()
                    log.info("deciding with %s version %s (review >= %.4f, decline >= %.4f; %s)", served.name,
                             served.version, self.engine.version.thresholds.review,
                             self.engine.version.thresholds.decline,
                             "compiled scorer" if scorer is not None else "pyfunc scorer")
            except Exception as exc:  # noqa: BLE001 - degraded until the registry answers
                log.warning("model not available (%s): decisions are degraded (model_unavailable)", exc)
            self._stop.wait(1.0)

    @staticmethod
    def _warm(model) -> None:
        """Score and explain one made-up row, so that the first real request pays for nothing."""
        from streaming.scoring_pass import _warm_explainer

        _warm_explainer(model)

    # ------------------------------------------------------------------ the merchant snapshot
    def _keep_snapshot(self) -> None:
        from streaming.merchant_risk import read_snapshot

        every = self.options.merchant_refresh_seconds
        while not self._stop.is_set():
            try:
                self.engine.merchant_snapshot = read_snapshot(
                    self.targets(), pd.Timestamp.now(tz="UTC"), self.options.label_delay_seconds,
                    pd.Timedelta(seconds=2 * every))
                self.snapshot_at = time.time()
            except Exception as exc:  # noqa: BLE001 - keep the previous one
                log.warning("merchant snapshot not refreshed (%s)", exc)
                if self.snapshot_at is None:
                    self._stop.wait(2.0)
                    continue
            self._stop.wait(every)

    # ------------------------------------------------------------------ health
    def health(self) -> dict:
        version = self.engine.version
        try:
            self.store.client.ping()
            store_up = True
        except Exception:  # noqa: BLE001
            store_up = False
        return {"status": "ok" if version is not None and store_up else "degraded",
                "model_version": version.served.version if version else None,
                "feature_store": "up" if store_up else "down",
                "merchant_snapshot_age_s": None if self.snapshot_at is None else round(time.time() - self.snapshot_at, 1),
                "queued": self.batcher.queued(), "degraded_mode": self.degraded_mode,
                "timeout_ms": self.timeout_s * 1000.0, **self.engine.stats,
                "rules": {"revision": self.rules.ruleset.revision, "live": len(self.rules.ruleset.rules),
                          "lists": len(self.rules.ruleset.lists), "errors": sum(self.rules.ruleset.errors.values()),
                          "reload_error": self.rules.last_error},
                "review_budget": ({"per_day": self.budget.per_day, "used_today": self.budget.used()}
                                  if self.budget.enabled else None)}
