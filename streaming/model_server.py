"""The registry's Production model as a Spark pandas UDF, swapped between micro-batches.

At start, MODEL_URI (default models:/fraud-detector/Production) must resolve, or the job stops
with a clear error. Between micro-batches, at most every ``refresh_seconds``, the registry is
asked again; a new version is loaded (pinned as models:/<name>/<version>), the switch is logged
and written to audit_log. If the registry cannot be reached during a run, the current model
keeps scoring and the next refresh retries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from features.definition import CATEGORICAL_FEATURES, FEATURE_COLUMNS, NUMERIC_FEATURES
from fraudops.modeling.registry import ServedModel, configure_tracking, resolve_served_model

log = logging.getLogger("streaming.model_server")


class ModelUnavailableError(RuntimeError):
    """The model named by MODEL_URI cannot be resolved or loaded."""


@dataclass
class LoadedModel:
    served: ServedModel
    udf: object


class ModelServer:
    """Holds the served model and its UDF; :meth:`refresh` swaps to a newly promoted version."""

    def __init__(self, spark, model_uri: str, settings, refresh_seconds: float = 10.0, audit=None):
        self.spark = spark
        self.model_uri = model_uri
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self.audit = audit  # callable(event_type, details) writing audit_log, or None
        self.current: LoadedModel | None = None
        self._last_check = 0.0

    def start(self) -> ServedModel:
        """Resolve and load the model; raises ModelUnavailableError naming the URI and registry."""
        configure_tracking(self.settings)
        try:
            served = resolve_served_model(self.model_uri)
        except Exception as exc:  # noqa: BLE001 - registry down or no such version
            raise ModelUnavailableError(
                f"cannot resolve {self.model_uri} at the MLflow registry {self.settings.mlflow_tracking_uri}: "
                f"{exc}. Start MLflow with `make stack-up` and promote a model (`mlflow run . -e promote`)."
            ) from exc
        self._load(served)
        self._last_check = time.monotonic()
        return served

    def _load(self, served: ServedModel) -> None:
        import mlflow.pyfunc

        if served.feature_set_version and self.current is None:
            log.info("serving %s (feature set %s)", served.model_uri, served.feature_set_version)
        udf = mlflow.pyfunc.spark_udf(self.spark, served.model_uri, result_type="double", env_manager="local")
        previous = self.current.served if self.current else None
        self.current = LoadedModel(served, udf)
        if previous is not None:
            log.warning("model switched: version %s -> %s", previous.version, served.version)
            if self.audit:
                self.audit("model_switch", {"model": served.name, "from_version": previous.version,
                                            "to_version": served.version, "model_uri": self.model_uri})

    def refresh(self, force: bool = False) -> bool:
        """Between micro-batches: load a newly promoted version. Returns True when it switched."""
        if not force and time.monotonic() - self._last_check < self.refresh_seconds:
            return False
        self._last_check = time.monotonic()
        try:
            served = resolve_served_model(self.model_uri)
        except Exception as exc:  # noqa: BLE001 - keep scoring with the current model
            log.warning("registry not reachable (%s); keeping version %s", exc, self.current.served.version)
            return False
        if served.version == self.current.served.version:
            return False
        try:
            self._load(served)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not load version %s (%s); keeping %s", served.version, exc,
                        self.current.served.version)
            return False
        return True

    def score(self, features_df):
        """Add fraud_score, is_fraud, decision_threshold, model_version, feature_set_version."""
        from pyspark.sql import functions as F

        loaded = self.current
        served = loaded.served
        inputs = [F.col(c).cast("double").alias(c) for c in NUMERIC_FEATURES]
        inputs += [F.col(c).cast("string").alias(c) for c in CATEGORICAL_FEATURES]
        return (
            features_df.withColumn("fraud_score", loaded.udf(F.struct(*inputs)))
            .withColumn("decision_threshold", F.lit(served.threshold))
            .withColumn("is_fraud", F.col("fraud_score") >= F.lit(served.threshold))
            .withColumn("model_version", F.lit(served.version))
            .withColumn("feature_set_version", F.lit(served.feature_set_version))
            .withColumn("features", F.to_json(F.struct(*[F.col(c) for c in FEATURE_COLUMNS])))
        )

