"""The seed's registry verbs against the real MLflow registry."""

import subprocess
import sys
import uuid

import pytest

from tests import streaming_support as support

pytestmark = pytest.mark.integration


def _run(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.registry", *args], capture_output=True, text=True)


def test_list_active_activate(settings):
    name = f"fraud-detector-cli-{uuid.uuid4().hex[:8]}"
    history = support.small_history(days=3, customers=60, seed=5)
    support.train_and_register(settings, name, history)             # v1 Production
    support.train_and_register(settings, name, history, seed=1)     # v2 Production, v1 archived
    listed = _run("--action", "list", "--model-name", name)
    assert listed.returncode == 0 and "v1" in listed.stdout and "v2" in listed.stdout
    activated = _run("--action", "activate", "--version", "1", "--model-name", name)
    assert activated.returncode == 0, activated.stderr
    active = _run("--action", "active", "--model-name", name)
    assert "v1" in active.stdout and "stage=Production" in active.stdout and "champion" in active.stdout


def test_bad_arguments_name_the_argument():
    result = _run("--action", "activate", "--version", "x")
    assert result.returncode == 2 and "--version" in result.stderr
    result = _run("--action", "register")
    assert result.returncode == 2 and "--model-uri" in result.stderr
