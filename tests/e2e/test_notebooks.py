"""The analysis notebooks, executed against the live stack with small parameters.

Each notebook runs in a fresh kernel of this venv's interpreter (a kernelspec written to a temp
folder, so no other installed "python3" kernel can be picked up), with notebooks/ as its working
folder, and its "parameters" cell overridden as papermill does (a cell injected right after it).
Any cell error fails the test.

Data made here, unique to this module: two train runs (pipelines.train) in their own
experiment, the second registered under its own model name and promoted to Production; a
challenger (a small model trained on the streamed period, registered as version 2 of that name
and staged); a PostgreSQL schema filled by the real scoring job (Kafka -> Spark -> sinks) with
that champion and, in shadow, the challenger, then the labels of the streamed transactions through
the job's labels query in two halves, with a recorded comparison (monitoring.challenger) after
each; and an empty, migrated schema (the monitoring notebooks must cope with empty tables).
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from tests import streaming_support as support
from tests.notebook_support import NOTEBOOKS_DIR, parameter_names, parameters_cell_index

KERNEL_NAME = "fraudops-test-venv"
CELL_TIMEOUT_SECONDS = 1200


# --- running a notebook -------------------------------------------------------------------------
def inject_parameters(nb, params: dict) -> None:
    """Insert a cell assigning ``params`` right after the parameters cell (names must exist there)."""
    unknown = set(params) - parameter_names(nb)
    assert not unknown, f"not parameters of this notebook: {sorted(unknown)}"
    source = "\n".join(f"{name} = {value!r}" for name, value in params.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(parameters_cell_index(nb) + 1, cell)


def venv_kernel_manager(tmp_path: Path):
    """An async KernelManager whose only kernelspec runs this interpreter (the venv's python)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec_dir = tmp_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fraudops test venv", "language": "python",
    }))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def execute_notebook(name: str, params: dict, tmp_path: Path):
    """Run notebooks/<name>.ipynb with ``params``; returns the executed notebook (raises on any cell error)."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    inject_parameters(nb, params)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('kernel-interpreter', sys.prefix)"))
    client = NotebookClient(nb, km=venv_kernel_manager(tmp_path), timeout=CELL_TIMEOUT_SECONDS,
                            startup_timeout=180, resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()
    assert f"kernel-interpreter {sys.prefix}" in output_text(nb), "the kernel did not run the venv's python"
    return nb


def output_text(nb) -> str:
    """Everything the cells printed (streams and plain-text results)."""
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output and "text/plain" in output.data:
                parts.append(output.data["text/plain"])
    return "\n".join(parts)


def figures(nb) -> int:
    """Number of PNG images the notebook displayed."""
    return sum("image/png" in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", []))


# --- data the notebooks look at ----------------------------------------------------------------
@dataclass(frozen=True)
class AnalysisData:
    experiment: str
    model_name: str  # v1 Production (champion), v2 Staging (challenger)
    scored_schema: str
    scored_rows: int
    empty_schema: str
    challenger_source: str  # a model with a Production version and no challenger
    recorded_labels: tuple[int, ...]  # labels behind each recorded comparison, oldest first


def streamed_rows():
    return support.small_history(days=4, customers=80, seed=5).head(300)


def label_messages(rows) -> list[tuple[bytes, bytes]]:
    return [(r["transaction_id"].encode(), json.dumps({"transaction_id": r["transaction_id"], "source": "chargeback",
                                                       "is_fraud": bool(r["is_fraud"])}).encode())
            for r in rows.to_dict("records")]


def fill_schema_with_the_job(spark, settings, conn, model_name: str, suffix: str, tmp_path: Path):
    """Score a small history (plus two unparseable messages) with the real job (champion and, in
    shadow, the challenger), then feed its labels in two halves, recording the live comparison
    after each; returns (namespace, rows, labels behind each recorded comparison)."""
    from fraudops.contract.messages import serialize_message
    from monitoring.challenger import compare_live
    from streaming.scoring_job import JobOptions, start_queries

    ns = support.make_namespace(conn, settings, f"nb{suffix}", tmp_path)
    rows = streamed_rows()
    messages = [(r["user_id"].encode(), serialize_message(r)) for r in rows.to_dict("records")]
    support.produce(settings, ns.topic, messages + [(b"USER_X", b"not json"), (b"USER_X", b"[1, 2]")])
    options = JobOptions(checkpoint_dir=ns.checkpoint_dir, trigger_seconds=0.5, pg_schema=ns.pg_schema,
                         redis_prefix=ns.redis_prefix, topic=ns.topic, labels_topic=ns.labels_topic,
                         alerts_topic=ns.alerts_topic, model_uri=f"models:/{model_name}/Production",
                         query_prefix=ns.pg_schema + "_")
    job = start_queries(spark, settings, options)
    recorded = []
    try:
        job.process_all_available()
        for half in (rows.iloc[:150], rows.iloc[150:]):
            support.produce(settings, ns.labels_topic, label_messages(half))
            job.process_all_available()
            recorded.append(compare_live(settings, model_name, ns.pg_schema).labels)
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]
    return ns, support.count(conn, ns, "transactions"), tuple(recorded)


@pytest.fixture(scope="module")
def analysis_data(settings, spark, tmp_path_factory):
    from fraudops.db import apply_migrations, connect
    from fraudops.modeling.registry import (
        get_version,
        promote_to_production,
        promote_to_staging,
        register_model_version,
        registry_client,
    )
    from pipelines.train import prepare_data, train_model

    suffix = uuid.uuid4().hex[:10]
    experiment, model_name = f"tests-notebooks-{suffix}", f"fraud-detector-nb-{suffix}"
    prepared = prepare_data(samples=6000, fraud_ratio=0.03, seed=3)
    train_model("logistic", register=False, experiment_name=experiment, prepared=prepared, settings=settings)
    trained = train_model("hist_gradient_boosting", params={"max_iter": 25}, register=True, model_name=model_name,
                          experiment_name=experiment, prepared=prepared, settings=settings)
    promote_to_production(model_name, trained.version, registry_client(settings))
    # the challenger: trained on the streamed period (its own model name), staged as version 2
    challenger_source = f"fraud-detector-nb-challenger-{suffix}"
    support.train_and_register(settings, challenger_source, streamed_rows(), seed=1)
    built = get_version(challenger_source, "1", registry_client(settings))
    staged = register_model_version(built.source, model_name, built.tags, run_id=built.run_id)
    promote_to_staging(model_name, staged.version, registry_client(settings))

    conn = connect(settings)
    empty_schema = f"s_nbempty{suffix}"
    apply_migrations(conn, empty_schema)
    ns, scored, recorded = fill_schema_with_the_job(spark, settings, conn, model_name, suffix,
                                                    tmp_path_factory.mktemp("notebook-stream"))
    try:
        yield AnalysisData(experiment, model_name, ns.pg_schema, scored, empty_schema, challenger_source, recorded)
    finally:
        support.drop_namespace(conn, ns)
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{empty_schema}" CASCADE')
        conn.close()


# --- the notebooks ------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("source", ["simulated", "parquet"])
def test_01_explore_history(source, tmp_path):
    params = {"days": 5, "customers": 80, "fraud_ratio": 0.03, "seed": 3}
    if source == "parquet":
        from pipelines.generate import generate

        path = tmp_path / "history.parquet"
        generate(days=5, customers=80, fraud_ratio=0.03, seed=4, output=path)
        params = {"history_path": str(path)}
    nb = execute_notebook("01_explore_history", params, tmp_path)
    assert "transactions of" in output_text(nb) and figures(nb) >= 5


@pytest.mark.e2e
def test_02_compare_models(analysis_data, tmp_path):
    nb = execute_notebook("02_compare_models", {
        "experiment_name": analysis_data.experiment, "model_name": analysis_data.model_name,
        "days": 10, "customers": 150, "fraud_ratio": 0.03, "seed": 5}, tmp_path)
    text = output_text(nb)
    assert "2 finished train run(s)" in text and "scored 2 model(s)" in text and "skipped" not in text
    assert figures(nb) >= 3


@pytest.mark.e2e
def test_03_drift_analysis_of_the_scored_stream(analysis_data, tmp_path):
    report = tmp_path / "drift.html"
    nb = execute_notebook("03_drift_analysis", {
        "model_uri": f"models:/{analysis_data.model_name}/Production", "pg_schema": analysis_data.scored_schema,
        "min_rows": 50, "shift_days": 8, "shift_customers": 100, "report_path": str(report)}, tmp_path)
    text = output_text(nb)
    assert f"{analysis_data.scored_rows:,} scored rows" in text and "no live comparison" not in text
    assert report.stat().st_size > 0 and figures(nb) >= 4


@pytest.mark.e2e
def test_03_drift_analysis_without_live_rows(analysis_data, tmp_path):
    nb = execute_notebook("03_drift_analysis", {
        "model_uri": f"models:/{analysis_data.model_name}/Production", "pg_schema": analysis_data.empty_schema,
        "shift_days": 8, "shift_customers": 100}, tmp_path)
    assert "no live comparison" in output_text(nb) and figures(nb) >= 2


@pytest.mark.e2e
def test_04_live_monitoring_of_the_scored_stream(analysis_data, tmp_path):
    nb = execute_notebook("04_live_monitoring", {"pg_schema": analysis_data.scored_schema, "lookback": "1h"},
                          tmp_path)
    assert "bucket(s) of 1 minute" in output_text(nb) and figures(nb) >= 3


@pytest.mark.e2e
def test_04_live_monitoring_on_empty_tables(analysis_data, tmp_path):
    nb = execute_notebook("04_live_monitoring", {"pg_schema": analysis_data.empty_schema}, tmp_path)
    text = output_text(nb)
    assert "0 bucket(s)" in text and "no transactions scored" in text


@pytest.mark.e2e
def test_05_champion_challenger_of_the_scored_stream(settings, analysis_data, tmp_path):
    from monitoring.challenger import figure_table, live_comparison
    from monitoring.storage import connect_schema

    data = analysis_data
    conn = connect_schema(settings, data.scored_schema)
    try:  # what the product function says about the same rows
        expected = live_comparison(conn, data.model_name, "1", "2")
    finally:
        conn.close()
    assert expected.labels == data.scored_rows == data.recorded_labels[-1] and expected.positives > 0
    nb = execute_notebook("05_champion_challenger", {"pg_schema": data.scored_schema, "model_name": data.model_name,
                                                     "min_labels": 100}, tmp_path)
    text = output_text(nb)
    assert f"model {data.model_name}: champion (Production) v1, challenger v2" in text
    assert (f"champion v1 vs challenger v2 on {expected.labels:,} labelled transaction(s) "
            f"({expected.positives:,} fraud); the champion alerted on {expected.alert_volume:,} of them") in text
    assert "enough labels to decide" in text and "not enough labels" not in text
    table = text.split("enough labels to decide", 1)[1]
    for row in figure_table(expected):  # every figure of both models, with the labels behind it
        line = next(line for line in table.splitlines() if line.startswith(row["figure"]))
        for value in (row["champion"], row["challenger"], row["difference"]):
            assert (f"{value:,.4f}" if value is not None else "NaN") in line, (row, line)
        assert row["behind"] in line
    # the history: the two comparisons recorded as the labels arrived
    assert f"{len(data.recorded_labels)} recorded comparison(s) of {data.model_name}" in text
    assert figures(nb) >= 2


@pytest.mark.e2e
def test_05_champion_challenger_without_a_challenger(analysis_data, tmp_path):
    nb = execute_notebook("05_champion_challenger", {"pg_schema": analysis_data.empty_schema,
                                                     "model_name": analysis_data.challenger_source}, tmp_path)
    text = output_text(nb)
    assert "challenger none" in text and "no challenger to compare" in text
    assert "0 recorded comparison(s)" in text and "no comparison recorded yet" in text
