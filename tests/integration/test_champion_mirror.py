"""Alias-first serving with the stage as a mirror, against the real MLflow registry.

The served URI is the settings' default for the test's own model name (models:/<name>@champion).
A stage transition as the MLflow UI's Stage menu makes it (transition-stage with "archive
existing"), an alias move as the alias editor makes it, and an archive without a replacement:
the registry poll of the streaming job and the decision service (streaming.model_server) mirrors
the alias and the stage and serves what the promotion named.
"""

from __future__ import annotations

import uuid
import warnings

import pytest

from fraudops.modeling import registry
from fraudops.modeling.champion import MIRROR_TAG, champion_version, mirror_champion
from fraudops.settings import load_settings
from streaming.model_server import ModelServer
from tests.integration.test_registry import _log_toy_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def logged(settings):
    version, _, _ = _log_toy_model(settings, f"mirror-build-{uuid.uuid4().hex[:8]}")
    return version


@pytest.fixture
def model(settings, logged, unique_name):
    """(name, client): versions 1 (Production and champion, as a first `main` leaves it) and 2 (a
    candidate with no stage) of a model of this test."""
    name = f"fraud-detector-mirror-{unique_name}"
    client = registry.registry_client(settings)
    for _ in range(2):
        registry.register_model_version(logged.source, name, logged.tags, run_id=logged.run_id, client=client)
    registry.promote_to_production(name, "1", client)
    return name, client


@pytest.fixture
def server(settings, model):
    """The registry poll serving the default MODEL_URI for this model name (no background checks:
    the test calls check())."""
    name, _ = model
    default_uri = load_settings({"MODEL_NAME": name, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
                                 "FRAUDOPS_ENV_FILE": "/nonexistent"}).model_uri
    assert default_uri == f"models:/{name}@champion"
    poll = ModelServer(default_uri, settings, refresh_seconds=3600)
    assert poll.start().version == "1"
    yield poll
    poll.stop()


def ui_transition(client, name: str, version: str) -> None:
    """The UI's Stage menu: Transition to -> Production, archiving the current Production version."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, version, "Production", archive_existing_versions=True)


def state(client, name: str) -> tuple[dict[str, str], str | None]:
    """({version: stage}, version of the champion alias)."""
    stages = {v.version: v.current_stage for v in client.search_model_versions(f"name='{name}'")}
    aliases = client.get_registered_model(name).aliases
    return stages, aliases.get(registry.CHAMPION_ALIAS)


def test_a_ui_stage_transition_moves_the_alias_and_what_is_served(model, server):
    name, client = model
    ui_transition(client, name, "2")
    assert state(client, name) == ({"1": "Archived", "2": "Production"}, "1")  # the UI moved the stage only
    assert server.check() is True
    assert server.served.version == "2"
    assert state(client, name) == ({"1": "Archived", "2": "Production"}, "2")

    ui_transition(client, name, "1")  # rollback, the same way
    assert server.check() is True
    assert (server.served.version, state(client, name)) == ("1", ({"1": "Production", "2": "Archived"}, "1"))
    assert server.check() is False  # in agreement: nothing moves


def test_moving_the_alias_serves_it_and_the_stage_follows(model, server):
    name, client = model
    client.set_registered_model_alias(name, registry.CHAMPION_ALIAS, "2")
    assert server.check() is True
    assert server.served.version == "2"
    assert state(client, name) == ({"1": "Archived", "2": "Production"}, "2")
    assert client.get_registered_model(name).tags[MIRROR_TAG] == "2:2"


def test_archiving_the_production_version_alone_changes_nothing_served(model, server):
    name, client = model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, "1", "Archived")
    assert server.check() is False
    assert server.served.version == "1"
    assert state(client, name) == ({"1": "Archived", "2": "None"}, "1")


def test_the_promote_pipelines_helper_leaves_nothing_to_mirror(model):
    name, client = model
    registry.promote_to_production(name, "2", client)
    result = mirror_champion(name, client)
    assert (result.champion, result.action) == ("2", None)
    assert state(client, name) == ({"1": "Archived", "2": "Production"}, "2")


def test_a_registry_without_the_alias_gets_it_from_the_stage(settings, logged, unique_name):
    name = f"fraud-detector-mirror-{unique_name}"
    client = registry.registry_client(settings)
    registry.register_model_version(logged.source, name, logged.tags, run_id=logged.run_id, client=client)
    ui_transition(client, name, "1")  # stage only, as a registry used before the alias
    result = mirror_champion(name, client)
    assert (result.champion, result.action) == ("1", "alias_follows_stage")
    assert registry.resolve_served_model(f"models:/{name}@champion", client).version == "1"


def test_readers_take_the_alias_before_any_mirror_ran(model):
    from monitoring.challenger import current_versions

    name, client = model
    client.set_registered_model_alias(name, registry.CHAMPION_ALIAS, "2")  # no poll yet: the stage says 1
    assert champion_version(name, client).version == "2"
    assert current_versions(name, client) == ("2", None)
    assert state(client, name) == ({"1": "Production", "2": "None"}, "2")  # reading changed nothing
