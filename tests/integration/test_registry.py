"""Registry helpers and the served score against the real MLflow server and a real Spark session.

Each test registers its own model name (fraud-detector-<unique>) in its own experiment.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from fraudops.modeling import registry
from fraudops.modeling.model import (
    ModelMetadata,
    build_pipeline,
    log_fraud_model,
    prepare_model_input,
    read_model_metadata,
    spark_model_input,
)
from tests.unit.test_model import CATEGORICAL, NUMERIC, toy_frame

pytestmark = pytest.mark.integration


def _log_toy_model(settings, unique_name: str, threshold: float = 0.3):
    """Fit a small HistGradientBoosting pipeline, log it, register it; returns (version, pipeline, frame)."""
    registry.configure_tracking(settings)
    mlflow.set_experiment(f"test-registry-{unique_name}")
    frame, labels = toy_frame(1200)
    pipeline = build_pipeline("hist_gradient_boosting", NUMERIC, CATEGORICAL, params={"max_iter": 30})
    pipeline.fit(prepare_model_input(frame, NUMERIC, CATEGORICAL), labels)
    metadata = ModelMetadata(threshold, "max_f1_on_validation", "fs-test", tuple(NUMERIC), tuple(CATEGORICAL),
                             "hist_gradient_boosting")
    with mlflow.start_run() as run:
        info = log_fraud_model(pipeline, metadata, frame.head(5))
    tags = {registry.TAG_THRESHOLD: threshold, registry.TAG_FEATURE_SET_VERSION: "fs-test"}
    version = registry.register_model_version(info.model_uri, f"fraud-detector-{unique_name}", tags,
                                              run_id=run.info.run_id)
    return version, pipeline, frame


def test_registered_version_is_ready_and_carries_threshold_and_feature_set(settings, unique_name):
    version, _, _ = _log_toy_model(settings, unique_name, threshold=0.42)
    assert version.status == "READY" and version.run_id
    assert registry.version_threshold(version) == 0.42
    assert registry.version_feature_set(version) == "fs-test"
    model = mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
    assert read_model_metadata(model).decision_threshold == 0.42


def test_register_refuses_a_version_without_threshold_tag(settings, unique_name):
    registry.configure_tracking(settings)
    with pytest.raises(ValueError, match="decision_threshold"):
        registry.register_model_version("runs:/x/model", f"fraud-detector-{unique_name}", {"feature_set_version": "x"})


def test_promotion_moves_stage_and_champion_alias_and_archives_the_previous(settings, unique_name):
    first, _, _ = _log_toy_model(settings, unique_name)
    second, _, _ = _log_toy_model(settings, unique_name)
    name = first.name
    client = registry.registry_client(settings)
    assert registry.production_version(name, client) is None
    with pytest.raises(LookupError, match="no version in stage 'Production'"):
        registry.resolve_served_model(f"models:/{name}/Production", client)

    registry.promote_to_production(name, first.version, client)
    served = registry.resolve_served_model(f"models:/{name}/Production", client)
    assert (served.version, served.model_uri) == (first.version, f"models:/{name}/{first.version}")

    registry.promote_to_staging(name, second.version, client)
    assert client.get_model_version(name, second.version).current_stage == "Staging"
    _, previous = registry.promote_to_production(name, second.version, client)
    assert previous == first.version
    assert registry.production_version(name, client).version == second.version
    assert client.get_model_version(name, first.version).current_stage == "Archived"
    assert client.get_model_version_by_alias(name, registry.CHAMPION_ALIAS).version == second.version
    assert registry.resolve_served_model(f"models:/{name}@champion", client).version == second.version
    assert registry.get_version(name, "latest", client).version == second.version


def test_reference_artifact_download(settings, unique_name, tmp_path):
    version, _, frame = _log_toy_model(settings, unique_name)
    with mlflow.start_run(run_id=version.run_id):
        path = tmp_path / "features.parquet"
        frame.to_parquet(path)
        mlflow.log_artifact(str(path), artifact_path="reference")
    local = registry.download_reference_features(version, tmp_path / "download")
    assert local.name == "features.parquet" and local.stat().st_size > 0


def test_parse_models_uri_names_a_bad_uri():
    assert registry.parse_models_uri("models:/fraud-detector/Production") == ("fraud-detector", "Production", None)
    assert registry.parse_models_uri("models:/fraud-detector@champion") == ("fraud-detector", None, "champion")
    with pytest.raises(ValueError, match="runs:/abc/model"):
        registry.parse_models_uri("runs:/abc/model")


def test_spark_udf_serves_exactly_predict_proba_fraud_column(settings, unique_name, spark):
    version, pipeline, frame = _log_toy_model(settings, unique_name)
    served = registry.resolve_served_model(f"models:/{version.name}/{version.version}")
    udf = mlflow.pyfunc.spark_udf(spark, served.model_uri, result_type="double", env_manager="local")
    rows = frame.head(300).reset_index(drop=True).assign(row_id=range(300))
    # Spark columns in their natural types (long counts, nullable strings), in a shuffled order
    sdf = spark.createDataFrame(rows[["row_id", *reversed(NUMERIC + CATEGORICAL)]].astype({"count_1h": "int64"}))
    served_scores = (
        sdf.withColumn("score", udf(spark_model_input(NUMERIC, CATEGORICAL))).orderBy("row_id").toPandas()["score"]
    )
    expected = pipeline.predict_proba(prepare_model_input(rows, NUMERIC, CATEGORICAL))[:, 1]
    np.testing.assert_allclose(served_scores.to_numpy(), expected, rtol=0, atol=1e-12)
    assert not np.allclose(expected, 1 - expected)  # P(fraud), not P(class 0)


def test_resolving_an_unknown_model_raises_lookup_error_naming_it(settings, unique_name):
    client = registry.registry_client(settings)
    for uri in (f"models:/nothing-{unique_name}/Production", f"models:/nothing-{unique_name}@champion",
                f"models:/nothing-{unique_name}/3"):
        with pytest.raises(LookupError, match=f"nothing-{unique_name}"):
            registry.resolve_served_model(uri, client)
    assert registry.production_version(f"nothing-{unique_name}", client) is None
