"""Promotion the way the MLflow UI does it, seen by the running stream (docs/promotion.md).

The MLflow 3.17 UI changes the registry through the tracking server's REST API, with these
requests (from its bundled JavaScript; /ajax-api/2.0 and /api/2.0 reach the same handlers):

* version page, Stage menu, "Transition to -> Production" with "Transition existing Production
  model version to Archived" ticked:
  ``POST ajax-api/2.0/mlflow/model-versions/transition-stage``
  ``{"name", "version", "stage": "Production", "archive_existing_versions": true}``
* version page, Aliases, "Add/Edit alias": ``POST ajax-api/2.0/mlflow/registered-models/alias``
  ``{"name", "alias": "champion", "version"}``

These tests send exactly those requests with plain HTTP (urllib, no MLflow client) while the
in-process scoring job runs on its own topic, schema and model name, then check that the next
micro-batches are scored by the promoted version, that audit_log records the switch, and that the
job's registry poll mirrored the other half (a stage transition moves the alias `champion`, an
alias move transitions the stage: fraudops/modeling/champion.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from fraudops.contract.messages import serialize_message
from streaming.scoring_job import JobOptions, start_queries
from tests import streaming_support as support
from tests.polling import assert_eventually

pytestmark = pytest.mark.e2e

UI_API = "ajax-api/2.0"  # the prefix the UI's requests use
PUBLIC_API = "api/2.0"  # the documented REST API (same handlers)


# --- the REST calls -----------------------------------------------------------------------------
def rest(settings, method: str, endpoint: str, payload: dict, prefix: str = UI_API) -> dict:
    """One MLflow REST call with plain HTTP; AssertionError with the server's answer on failure."""
    url = f"{settings.mlflow_tracking_uri.rstrip('/')}/{prefix}/mlflow/{endpoint}"
    data = None
    if method == "GET":
        url += "?" + urllib.parse.urlencode(payload)
    else:
        data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - the http(s) tracking URI
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - http(s) tracking URI
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url} -> {exc.code}: {exc.read().decode(errors='replace')}") from None


def transition_to_production(settings, name: str, version: str) -> dict:
    """The Stage menu: Transition to Production, archiving the current Production version."""
    return rest(settings, "POST", "model-versions/transition-stage",
                {"name": name, "version": version, "stage": "Production", "archive_existing_versions": True})


def set_champion_alias(settings, name: str, version: str) -> None:
    """The alias editor: put `champion` on ``version`` (an alias names one version, so it moves)."""
    rest(settings, "POST", "registered-models/alias", {"name": name, "alias": "champion", "version": version})


def registry_state(settings, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """({version: stage}, {alias: version}) read back through the public REST API."""
    versions = rest(settings, "GET", "model-versions/search", {"filter": f"name='{name}'"}, PUBLIC_API)
    model = rest(settings, "GET", "registered-models/get", {"name": name}, PUBLIC_API)["registered_model"]
    stages = {v["version"]: v["current_stage"] for v in versions["model_versions"]}
    aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
    return stages, aliases


# --- models and the stream ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def built_models(settings, history):
    """Two fitted and logged models (seeds 0 and 1), trained once for the module: each test
    registers copies of them under its own model name (registering is what the tests are about)."""
    from fraudops.modeling.registry import get_version, registry_client

    scratch = f"fraud-detector-rest-build-{uuid.uuid4().hex[:8]}"
    built = []
    for seed in (0, 1):
        support.train_and_register(settings, f"{scratch}-{seed}", history, seed=seed)
        built.append(get_version(f"{scratch}-{seed}", "1", registry_client(settings)))
    return built


def register_copy(settings, model_name: str, built) -> str:
    """A new version of ``model_name`` from an already logged model, with its tags, NOT promoted
    (stage None): the way `pipelines.train` leaves a candidate."""
    from fraudops.modeling.registry import register_model_version

    return str(register_model_version(built.source, model_name, built.tags, run_id=built.run_id).version)


def register_production(settings, model_name: str, built) -> str:
    """Version 1 of ``model_name``, Production with the alias champion (what a first `main` leaves)."""
    from fraudops.modeling.registry import promote_to_production

    version = register_copy(settings, model_name, built)
    promote_to_production(model_name, version)
    return version


def job_options(ns, model_uri: str) -> JobOptions:
    return JobOptions(checkpoint_dir=ns.checkpoint_dir, trigger_seconds=0.5, pg_schema=ns.pg_schema,
                      redis_prefix=ns.redis_prefix, topic=ns.topic, labels_topic=ns.labels_topic,
                      alerts_topic=ns.alerts_topic, model_uri=model_uri, model_refresh_seconds=0.1,
                      merchant_refresh_seconds=0.1, query_prefix=ns.pg_schema + "_")


def messages_of(history, start: int, stop: int):
    rows = history.iloc[start:stop]
    return [(r["user_id"].encode(), serialize_message(r)) for r in rows.to_dict("records")]


def version_counts(pg_conn, ns) -> dict[str, int]:
    with pg_conn.cursor() as cur:
        cur.execute(f'SELECT model_version, count(*) FROM "{ns.pg_schema}".transactions GROUP BY 1')
        counts = dict(cur.fetchall())
    pg_conn.rollback()
    return counts


def switched_to(pg_conn, ns, switches: list[tuple[str, str]]) -> None:
    """Wait until the job's registry poll (a thread beside the batches) has made ``switches``."""
    assert_eventually(lambda: model_switches(pg_conn, ns) == switches, timeout=60, interval=0.1,
                      message=f"the job switched {switches}")


def model_switches(pg_conn, ns) -> list[tuple[str, str]]:
    with pg_conn.cursor() as cur:
        cur.execute(f"""SELECT details->>'from_version', details->>'to_version' FROM "{ns.pg_schema}".audit_log
                        WHERE event_type = 'model_switch' ORDER BY audit_id""")
        switches = [tuple(r) for r in cur.fetchall()]
    pg_conn.rollback()
    return switches


# --- the tests ---------------------------------------------------------------------------------
def eventually_registry(settings, name: str, expected) -> None:
    """Wait until the job's registry poll has mirrored the alias and the stage to ``expected``."""
    assert_eventually(lambda: registry_state(settings, name) == expected, timeout=60, interval=0.1,
                      message=f"the registry of {name} is {expected}")


def test_ui_promotion_and_rollback_switch_the_stream(spark, settings, pg_conn, namespace, history, built_models):
    """MODEL_URI = models:/<name>@champion (the default form): the UI's stage transition alone
    promotes (the job's registry poll moves the alias after the stage), and rolls back."""
    name = f"fraud-detector-rest-{uuid.uuid4().hex[:8]}"
    assert register_production(settings, name, built_models[0]) == "1"
    job = start_queries(spark, settings, job_options(namespace, f"models:/{name}@champion"))
    try:
        support.produce(settings, namespace.topic, messages_of(history, 0, 30))
        job.process_all_available()
        candidate = register_copy(settings, name, built_models[1])
        assert candidate == "2"
        assert registry_state(settings, name) == ({"1": "Production", "2": "None"}, {"champion": "1"})

        promoted = transition_to_production(settings, name, candidate)
        assert promoted["model_version"]["current_stage"] == "Production"
        switched_to(pg_conn, namespace, [("1", "2")])
        eventually_registry(settings, name, ({"1": "Archived", "2": "Production"}, {"champion": "2"}))
        support.produce(settings, namespace.topic, messages_of(history, 30, 60))
        job.process_all_available()
        assert version_counts(pg_conn, namespace) == {"1": 30, "2": 30}

        # rollback, as docs/promotion.md describes it: the previous version back to Production
        transition_to_production(settings, name, "1")
        switched_to(pg_conn, namespace, [("1", "2"), ("2", "1")])
        eventually_registry(settings, name, ({"1": "Production", "2": "Archived"}, {"champion": "1"}))
        support.produce(settings, namespace.topic, messages_of(history, 60, 90))
        job.process_all_available()
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]
    assert version_counts(pg_conn, namespace) == {"1": 60, "2": 30}
    assert model_switches(pg_conn, namespace) == [("1", "2"), ("2", "1")]


def test_alias_alone_switches_a_stream_that_serves_the_stage(spark, settings, pg_conn, namespace, history,
                                                             built_models):
    """MODEL_URI = models:/<name>/Production (the former default): the new UI's alias editor alone
    promotes; the stage follows the alias."""
    name = f"fraud-detector-alias-{uuid.uuid4().hex[:8]}"
    register_production(settings, name, built_models[0])
    job = start_queries(spark, settings, job_options(namespace, f"models:/{name}/Production"))
    try:
        support.produce(settings, namespace.topic, messages_of(history, 0, 30))
        job.process_all_available()
        candidate = register_copy(settings, name, built_models[1])
        set_champion_alias(settings, name, candidate)
        switched_to(pg_conn, namespace, [("1", "2")])
        eventually_registry(settings, name, ({"1": "Archived", "2": "Production"}, {"champion": "2"}))
        support.produce(settings, namespace.topic, messages_of(history, 30, 60))
        job.process_all_available()
    finally:
        job.stop()
    assert not job.failures(), [q.exception() for q in job.failures()]
    assert version_counts(pg_conn, namespace) == {"1": 30, "2": 30}
    assert model_switches(pg_conn, namespace) == [("1", "2")]
