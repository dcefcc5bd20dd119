"""train / tune / evaluate / promote against the real MLflow server, PostgreSQL and Spark.

Small simulated history (14 days, 250 customers, 2% fraud); every test uses its own experiment
and its own registered model name, so tests never touch fraud-detector itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from features.definition import FEATURE_SET_VERSION
from fraudops.modeling import registry
from fraudops.settings import PROJECT_ROOT
from pipelines.evaluate import evaluate_model
from pipelines.promote import promote_version
from pipelines.promotion_policy import MetricThreshold, PromotionPolicy
from pipelines.train import prepare_data, train_model
from pipelines.tune import tune_model

pytestmark = pytest.mark.integration

SMALL_HGB = {"max_iter": 40, "min_samples_leaf": 10}
LENIENT = PromotionPolicy(thresholds=(MetricThreshold("auc_roc", 0.5),))


@pytest.fixture(scope="module")
def history_path(tmp_path_factory) -> Path:
    from simulator.generator import generate_history

    path = tmp_path_factory.mktemp("history") / "history.parquet"
    generate_history(days=14, customers=250, fraud_ratio=0.02, seed=11).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def prepared(history_path):
    return prepare_data(str(history_path))


def _names(unique_name: str) -> dict:
    return {"model_name": f"fraud-detector-{unique_name}", "experiment_name": f"test-train-{unique_name}"}


def test_train_logs_metrics_plots_reference_and_registers_a_tagged_version(settings, unique_name, history_path):
    result = train_model("hist_gradient_boosting", data=str(history_path), params=SMALL_HGB, **_names(unique_name))
    client = registry.registry_client(settings)
    version = client.get_model_version(f"fraud-detector-{unique_name}", result.version)
    assert registry.version_threshold(version) == pytest.approx(result.threshold)
    assert registry.version_feature_set(version) == FEATURE_SET_VERSION and version.run_id == result.run_id
    assert float(version.tags["label_delay_seconds"]) == 3600.0
    for key in ("test_auc_roc", "test_average_precision", "test_precision", "test_recall", "test_f1",
                "test_card_precision_at_100", "test_fraud_amount_caught", "val_f1", "training_seconds"):
        assert key in result.metrics
    assert result.metrics["test_auc_roc"] > 0.8
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {f"plots/{n}.png" for n in ("roc_curve", "precision_recall_curve", "confusion_matrix", "calibration",
                                       "feature_importance")} <= artifacts
    reference = registry.download_reference_features(version, Path(os.environ.get("TMPDIR", "/tmp")) / unique_name)
    import pandas as pd

    sample = pd.read_parquet(reference)
    assert {"score", "label", "user_amount_ratio_30d", "cat_country"} <= set(sample.columns) and len(sample) > 100
    run = client.get_run(result.run_id)
    assert run.data.params["split_train_end"] <= run.data.params["split_test_start"]  # out of time, with its gap


@pytest.mark.parametrize("model_type", ["random_forest", "gradient_boosting", "logistic"])
def test_every_model_type_trains_without_registering(unique_name, prepared, model_type):
    small = {"random_forest": {"n_estimators": 30}, "gradient_boosting": {"n_estimators": 30}, "logistic": {}}
    result = train_model(model_type, params=small[model_type], register=False, prepared=prepared, **_names(unique_name))
    assert result.version is None and result.metrics["test_auc_roc"] > 0.7
    scores = mlflow.pyfunc.load_model(result.model_uri).predict(prepared.frames.test.head(50))
    assert scores.dtype == "float64" and ((scores >= 0) & (scores <= 1)).all()


def test_bad_model_type_is_named(unique_name, prepared):
    with pytest.raises(ValueError, match="xgboost"):
        train_model("xgboost", prepared=prepared, register=False, **_names(unique_name))


def test_evaluate_writes_report_and_scored_rows(settings, unique_name, history_path, prepared, tmp_path):
    trained = train_model("hist_gradient_boosting", params=SMALL_HGB, prepared=prepared, **_names(unique_name))
    uri = f"models:/fraud-detector-{unique_name}/{trained.version}"
    result = evaluate_model(uri, str(history_path), experiment_name=f"test-eval-{unique_name}", output_dir=tmp_path)
    assert result.version == trained.version and result.threshold == pytest.approx(trained.threshold)
    # the default period is training's test period: same rows, same model -> same numbers
    assert result.metrics["average_precision"] == pytest.approx(trained.metrics["test_average_precision"])
    assert result.metrics["rows"] == trained.metrics["test_rows"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["model_version"] == trained.version and "card_testing" in report["per_scenario"]
    assert list(result.scored.columns[:6]) == ["transaction_id", "user_id", "transaction_time", "amount", "score", "label"]
    client = registry.registry_client(settings)
    logged = {a.path for a in client.list_artifacts(result.run_id, "evaluation")}
    assert {"evaluation/report.json", "evaluation/report.md", "evaluation/scored_rows.parquet"} <= logged


def test_promotion_gate_takes_a_better_model_and_refuses_a_worse_one(settings, unique_name, history_path,
                                                                    prepared, pg_conn):
    names = _names(unique_name)
    name = names["model_name"]
    weak = train_model("logistic", params={"C": 1e-4}, feature_set="stateless", prepared=prepared, **names)
    strong = train_model("hist_gradient_boosting", params=SMALL_HGB, prepared=prepared, **names)
    assert strong.metrics["test_average_precision"] > weak.metrics["test_average_precision"]
    client = registry.registry_client(settings)

    dry = promote_version(weak.version, str(history_path), dry_run=True, model_name=name, policy=LENIENT)
    assert dry.decision.stage == "Production" and dry.applied_stage is None
    assert registry.production_version(name, client) is None  # dry run changed nothing

    first = promote_version(weak.version, str(history_path), model_name=name, policy=LENIENT)
    assert first.applied_stage == "Production" and first.champion_version is None

    better = promote_version(strong.version, str(history_path), model_name=name, policy=LENIENT)
    assert better.applied_stage == "Production" and better.decision.beats_champion is True
    assert better.champion_version == weak.version
    assert client.get_model_version(name, weak.version).current_stage == "Archived"
    assert client.get_model_version_by_alias(name, "champion").version == strong.version

    again = registry.register_model_version(weak.model_uri, name, {registry.TAG_THRESHOLD: weak.threshold,
                                            registry.TAG_FEATURE_SET_VERSION: "fs-v1"}, run_id=weak.run_id)
    worse = promote_version(again.version, str(history_path), model_name=name, policy=LENIENT)
    assert worse.decision.stage == "Staging" and worse.decision.beats_champion is False
    assert registry.production_version(name, client).version == strong.version
    assert client.get_model_version(name, again.version).current_stage == "Staging"
    assert client.get_model_version(name, again.version).tags["validation_status"] == "passed"

    with pg_conn.cursor() as cur:
        cur.execute("SELECT details FROM audit_log WHERE event_type = 'model_promotion' AND details->>'model' = %s"
                    " ORDER BY audit_id", (name,))
        rows = [r[0] for r in cur.fetchall()]
    assert [r["applied_stage"] for r in rows] == ["Production", "Production", "Staging"]


def test_promotion_refuses_a_candidate_failing_validation(settings, unique_name, history_path, prepared):
    names = _names(unique_name)
    weak = train_model("logistic", params={"C": 1e-4}, feature_set="stateless", prepared=prepared, **names)
    strict = PromotionPolicy(thresholds=(MetricThreshold("average_precision", 0.99),))
    outcome = promote_version(weak.version, str(history_path), model_name=names["model_name"], policy=strict)
    assert outcome.decision.stage is None and outcome.applied_stage is None
    assert any("average_precision" in r and "below the minimum" in r for r in outcome.decision.reasons)
    client = registry.registry_client(settings)
    assert client.get_model_version(names["model_name"], weak.version).current_stage == "None"


def test_tune_runs_nested_trials_and_registers_the_best(settings, unique_name, prepared):
    names = _names(unique_name)
    result = tune_model("logistic", max_evals=3, parallelism=1, prepared=prepared, **names)
    client = registry.registry_client(settings)
    parent = client.get_run(result.run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == 3 and all("val_average_precision" in c.data.metrics for c in children)
    assert result.best_val_average_precision == pytest.approx(max(c.data.metrics["val_average_precision"] for c in children))
    assert set(result.best_params) == {"C", "class_weight"} and result.model_type == "logistic"
    assert result.version is not None


def test_tune_with_spark_trials(settings, unique_name, prepared):
    names = _names(unique_name)
    result = tune_model("logistic", max_evals=2, parallelism=2, register=False, prepared=prepared, **names)
    client = registry.registry_client(settings)
    children = client.search_runs([client.get_run(result.run_id).info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'")
    assert len(children) == 2


# --- the MLproject entry points, through `mlflow run` ------------------------------------------
def _run_env(settings, name: str, experiment: str) -> dict:
    """The environment a user has after sourcing .stack/stack.env, with this test's model name."""
    venv_bin = str(Path(sys.executable).parent)
    # mlflow.set_experiment() in this process exports MLFLOW_EXPERIMENT_ID; the child chooses its own
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")}
    return {**inherited, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "MODEL_NAME": name,
            "MODEL_URI": f"models:/{name}/Production", "TEST_EXPERIMENT": experiment}


def _mlflow_run(entry_point: str, params: dict, project: Path, env: dict) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "mlflow"), "run", str(project), "-e", entry_point,
               "--env-manager", "local", "--experiment-name", env["TEST_EXPERIMENT"]]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """MLproject (and conda.yaml) in a scratch folder: relative outputs (data/...) land there."""
    for name in ("MLproject", "conda.yaml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    return tmp_path


def test_mlflow_run_evaluate_and_tune(settings, unique_name, prepared, project_copy, history_path):
    """The entry points that no documented command runs through `mlflow run` (train, main, promote,
    drift and retrain are: tests/e2e/test_readme_mlflow_runs.py); version 1 is trained in-process."""
    name = f"fraud-detector-{unique_name}"
    env = _run_env(settings, name, f"test-mlflow-run-{unique_name}")
    trained = train_model("logistic", prepared=prepared, model_name=name, experiment_name=env["TEST_EXPERIMENT"])
    registry.promote_to_production(name, trained.version)
    steps = [
        ("evaluate", {"model_uri": f"models:/{name}/Production", "data": history_path}),
        ("tune", {"model_type": "hist_gradient_boosting", "data": history_path, "max_evals": 2, "parallelism": 1}),
    ]
    for entry_point, params in steps:
        done = _mlflow_run(entry_point, params, project_copy, env)
        assert done.returncode == 0, f"{entry_point}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    client = registry.registry_client(settings)
    assert registry.production_version(name, client).version == "1"
    assert registry.latest_version(name, client).version == "2"
