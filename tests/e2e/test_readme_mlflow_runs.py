"""Every `mlflow run` command the README (and docs/promotion.md) shows runs for real, on small data.

The commands are read from the documents (the same extraction as tests/*/test_readme_commands.py)
and executed as written, with ``--env-manager local``, in a copy of the project (so the documents'
relative paths, e.g. data/history.parquet, stay inside the test), against the local stack, with
the variables of .stack/stack.env (as the README says: ``set -a; . .stack/stack.env``). For small
data and isolation a few parameters are added after the README's own: main gets 10 days x 300
customers with 3 % fraud, train reads the history main wrote, and drift/retrain/promote read and write a
PostgreSQL schema of their own; MODEL_NAME is a registered model of this test only.

Order, so that each command finds what it needs: generate -> main (version 1, Production; then
with tune_evals, version 2) -> train (versions 3 and 4) -> drift (against version 1's reference, on planted scored rows) ->
retrain (a candidate, on planted scored rows and chargebacks) -> promote version 3 (dry run,
then for real).
Each run must succeed and land in the project's experiment (MLFLOW_EXPERIMENT_NAME,
fraud-detection), never in "Default".
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from fraudops.settings import PROJECT_ROOT, read_env_file
from tests.monitoring_support import (
    create_schema,
    drop_schema,
    history_since,
    insert_rows,
    insert_scored,
    scored_rows,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

PROJECT_EXPERIMENT = "fraud-detection"
ORDER = ("generate", "main", "train", "drift", "retrain", "promote")
RUN_ID = re.compile(r"=== Run \(ID '([0-9a-f]+)'\) succeeded ===")
COMMAND_TIMEOUT = 1500


def document_commands():
    """The commands of the documents, extracted by test_readme_commands.py (loaded by path)."""
    import importlib.util

    [path] = sorted((PROJECT_ROOT / "tests").rglob("test_readme_commands.py"))
    spec = importlib.util.spec_from_file_location("readme_commands_checker", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.COMMANDS


def documented_runs() -> list[tuple[str, ...]]:
    """The distinct `mlflow run` commands of the documents, in ORDER (a dry run before a real one)."""
    seen: dict[tuple[str, ...], None] = {}
    for command in document_commands():
        if command.argv[:3] == ("mlflow", "run", ".") and "<" not in " ".join(command.argv):
            seen.setdefault(command.argv, None)
    runs = list(seen)
    return sorted(runs, key=lambda argv: (ORDER.index(entry_point(argv)), "dry_run=false" in argv, len(argv)))


def entry_point(argv: tuple[str, ...]) -> str:
    return argv[argv.index("-e") + 1] if "-e" in argv else "main"


RUNS = documented_runs()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project's files (tracked and new, not ignored), where `mlflow run .` runs."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    copy = tmp_path_factory.mktemp("project")
    for name in listed:
        source = PROJECT_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


@pytest.fixture(scope="module")
def names():
    import uuid

    suffix = uuid.uuid4().hex[:8]
    return {"model": f"fraud-detector-readme-{suffix}", "schema": f"readme_{suffix}"}


@pytest.fixture(scope="module")
def schema(names, settings):
    """A PostgreSQL schema with 14 days of scored traffic ending 2 hours ago and its chargebacks."""
    from fraudops.db import connect

    conn = connect(settings)
    name = create_schema(conn, names["schema"])
    recent = history_since(days=14, customers=300, seed=5, fraud_ratio=0.03,
                           end=datetime.now(UTC) - timedelta(hours=2))
    insert_scored(conn, name, scored_rows(recent, model_version="1"))
    frauds = recent[recent["is_fraud"] == 1]
    insert_rows(conn, name, "labels", pd.DataFrame({
        "transaction_id": frauds["transaction_id"], "is_fraud": True, "source": "chargeback",
        "labeled_at": pd.to_datetime(frauds["transaction_time"], utc=True) + pd.Timedelta(minutes=30)}))
    yield name
    drop_schema(conn, name)
    conn.close()


@pytest.fixture(scope="module")
def run_env(names) -> dict[str, str]:
    """The README's environment: .stack/stack.env exported, the venv first on PATH; this test's model."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    env.update(read_env_file(PROJECT_ROOT / ".stack" / "stack.env"))
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "MODEL_NAME": names["model"], "MODEL_URI": f"models:/{names['model']}/Production",
                "PYSPARK_PYTHON": sys.executable})
    return env


def with_small_data(argv: tuple[str, ...], schema: str) -> list[str]:
    """The README's command plus the parameters that keep it small and isolated."""
    extra = {"generate": ["days=14", "customers=300"], "main": ["days=10", "customers=300", "fraud_ratio=0.03"],
             "train": ["data=data/history.parquet"],
             "drift": [f"pg_schema={schema}"], "retrain": [f"pg_schema={schema}"],
             "promote": [f"pg_schema={schema}"]}[entry_point(argv)]
    return [*argv, *[token for param in extra for token in ("-P", param)]]


def run_documented(argv: tuple[str, ...], project: Path, env: dict[str, str], schema: str):
    done = subprocess.run(with_small_data(argv, schema), cwd=project, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{output[-6000:]}"
    found = RUN_ID.findall(output)
    assert found, f"{' '.join(argv)}: no succeeded run in its output:\n{output[-3000:]}"
    return found[-1], output


def test_the_documents_show_every_entry_point_this_test_runs():
    assert {entry_point(argv) for argv in RUNS} == set(ORDER), RUNS


@pytest.mark.parametrize("argv", RUNS, ids=[" ".join(a[2:]) for a in RUNS])
def test_documented_mlflow_run(argv, project, run_env, schema, names, settings):
    from fraudops.modeling import registry

    run_id, output = run_documented(argv, project, run_env, schema)
    client = registry.registry_client(settings)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == PROJECT_EXPERIMENT
    assert run.data.tags.get("mlflow.project.entryPoint") == entry_point(argv)
    check_outputs(entry_point(argv), argv, run, client, names, schema, output, settings, project)


def check_outputs(step: str, argv, run, client, names, schema, output, settings, project) -> None:
    """What each step must have produced besides a successful run."""
    from fraudops.modeling import registry

    model, tags = names["model"], run.data.tags
    if step == "generate":
        assert (project / "data" / "history.parquet").is_file()
    elif step == "main":  # the plain one registers version 1 (Production); with tune_evals, tune's best
        version = client.get_model_version(model, tags["registered_version"].rsplit("/", 1)[1])
        assert registry.production_version(model, client) is not None
        trained_by = client.get_run(tags["train_run_id"]).data.tags.get("step")
        assert (trained_by, version.version) == (("tune", version.version) if "tune_evals" in " ".join(argv)
                                                 else ("train", "1"))
    elif step == "train":
        version = client.get_model_version(model, tags["registered_version"].rsplit("/", 1)[1])
        assert version.tags[registry.TAG_MODEL_TYPE] == dict(p.split("=") for p in argv if "=" in p).get(
            "model_type", "hist_gradient_boosting")
        assert float(version.tags["label_delay_seconds"]) == 3600.0 and version.current_stage == "None"
    elif step == "drift":
        assert "drift_share" in run.data.metrics and run.data.params["reference_model_uri"].endswith("/Production")
        assert client.list_artifacts(run.info.run_id, "drift")
    elif step == "retrain":
        version = client.get_model_version(model, tags["candidate_version"])
        assert version.run_id and float(version.tags["label_delay_seconds"]) == 3600.0
        assert "model_retrained" in audit_events(settings, schema)
    elif step == "promote":
        assert f"{model} v3 ->" in output, output[-2000:]
        if "dry_run=true" in argv:
            assert client.get_model_version(model, "3").current_stage == "None"  # a dry run changes nothing
        else:
            assert "model_promotion" in audit_events(settings, schema)


def audit_events(settings, schema: str) -> set[str]:
    from monitoring.storage import connect_schema

    conn = connect_schema(settings, schema)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT event_type FROM audit_log")
            return {row[0] for row in cur.fetchall()}
    finally:
        conn.close()
