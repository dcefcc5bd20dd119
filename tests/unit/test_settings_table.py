"""The one settings table (fraudops.settings_table) agrees with everything built from it: the
settings object, the local stack's env file, .env.example, the README's table, and the code that
reads environment variables (a variable read without a row fails here)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from devstack import settings_docs
from devstack.config import SECRETS, stack_config
from devstack.paths import StackPaths
from fraudops.settings import PROJECT_ROOT, Settings, load_settings
from fraudops.settings_table import SETTINGS, application_settings, local_stack_settings

pytestmark = pytest.mark.unit

PRODUCT_PACKAGES = ("fraudops", "features", "pipelines", "streaming", "expectations", "monitoring", "portal",
                    "simulator")
# variables of the tools the project runs on, not settings of the project
TOOL_VARIABLES = {"MLFLOW_RUN_ID", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_LOCAL_IP", "SPARK_HOME",
                  "GX_ANALYTICS_ENABLED", "JAVA_HOME", "PATH", "HOME"}
# Set by the scoring job itself for its Python workers (SparkContext.environment), never by a user: no row.
# the job's own process plumbing (driver -> daemon -> workers), not user settings; FRAUDOPS_WORKER_PREWARM=0
# turns the local-mode warm daemon off (a benchmarking switch, documented in bench/STARTUP.md)
JOB_INTERNAL_VARIABLES = {"FRAUDOPS_PRELOAD_MODEL_URI", "FRAUDOPS_PRELOAD_TRACKING_URI", "FRAUDOPS_WORKER_ZYGOTE",
                          "FRAUDOPS_WORKER_PREWARM"}
ENV_READ = re.compile(r"""(?:environ\.get\(|environ\[|getenv\(|environ\.setdefault\(|environ\.pop\()\s*["']([A-Z][A-Z0-9_]+)["']""")
ENV_NAME_CONSTANT = re.compile(r"""^\w*_ENV\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", re.MULTILINE)


def test_every_name_appears_once():
    names = [row.name for row in SETTINGS]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_the_settings_object_has_one_field_per_application_row_with_its_default(tmp_path):
    rows = application_settings()
    assert [f.name for f in dataclasses.fields(Settings)] == [row.field for row in rows]
    loaded = load_settings({"FRAUDOPS_ENV_FILE": str(tmp_path / "none.env")})
    for row in rows:
        expected = PROJECT_ROOT / row.default if row.kind is Path else row.kind(row.default)
        assert getattr(loaded, row.field) == expected, row.name


def test_every_application_row_is_read_from_the_environment(tmp_path):
    values = {row.name: ("4242" if row.kind is int else "/tmp/x" if row.kind is Path else "x-value")
              for row in application_settings()}
    loaded = load_settings({**values, "FRAUDOPS_ENV_FILE": str(tmp_path / "none.env")})
    for row in application_settings():
        assert str(getattr(loaded, row.field)) == values[row.name], row.name


def test_the_local_stack_writes_every_local_stack_row_with_the_table_default(tmp_path, monkeypatch):
    for row in SETTINGS:
        monkeypatch.delenv(row.name, raising=False)
    cfg = stack_config(StackPaths(state=tmp_path, env_file=tmp_path / "stack.env"))
    assert set(cfg) == {row.name for row in local_stack_settings()}
    for row in local_stack_settings():
        if row.secret:
            assert len(cfg[row.name]) >= 16 and row.name in SECRETS, row.name
        else:
            assert cfg[row.name] == row.default, row.name


def test_env_example_and_the_readme_table_are_rendered_from_the_table():
    stale = [path.name for path in settings_docs.out_of_date()]
    assert not stale, f"{stale} differ from fraudops/settings_table.py: run python -m devstack.settings_docs"


def test_the_readme_lists_every_variable_the_application_or_the_local_stack_reads():
    table = settings_docs.render_readme_table()
    for row in SETTINGS:
        if row.field is not None or row.local_stack:
            assert f"| `{row.name}` |" in table, row.name


def test_every_variable_of_the_containers_only_is_used_by_the_compose_file():
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    yaml.safe_load(compose)
    unused = [row.name for row in SETTINGS if row.containers and row.field is None and not row.local_stack
              and f"${{{row.name}" not in compose]
    assert not unused, f"rows of the settings table that docker-compose.yml never uses: {unused}"


def test_every_environment_variable_the_product_reads_has_a_row():
    names = {row.name for row in SETTINGS}
    missing = {}
    for package in PRODUCT_PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            text = path.read_text()
            for name in {*ENV_READ.findall(text), *ENV_NAME_CONSTANT.findall(text)}:
                if name not in names and name not in TOOL_VARIABLES | JOB_INTERNAL_VARIABLES:
                    missing.setdefault(name, str(path.relative_to(PROJECT_ROOT)))
    assert not missing, f"environment variables read without a row in fraudops/settings_table.py: {missing}"


def test_the_compose_files_fallback_values_are_the_tables():
    """``${NAME:-value}`` in docker-compose.yml: NAME has a row and value is its .env.example value."""
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    rows = {row.name: row for row in SETTINGS}
    differ = {name: (value, rows[name].example_value if name in rows else "no row")
              for name, value in re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*):-([^}]*)\}", compose)
              if name not in rows or value != rows[name].example_value}
    assert not differ, f"docker-compose.yml fallbacks that differ from fraudops/settings_table.py: {differ}"


def test_an_env_file_with_the_former_model_uri_default_follows_the_new_one(tmp_path, monkeypatch):
    for row in SETTINGS:
        monkeypatch.delenv(row.name, raising=False)
    env_file = tmp_path / "stack.env"
    env_file.write_text("MODEL_URI=models:/fraud-detector/Production\nKAFKA_TOPIC=mine\n")
    cfg = stack_config(StackPaths(state=tmp_path, env_file=env_file))
    assert cfg["MODEL_URI"] == "models:/fraud-detector@champion"
    assert cfg["KAFKA_TOPIC"] == "mine"  # other values the file holds stay
    env_file.write_text("MODEL_URI=models:/fraud-detector/Staging\n")  # a choice, not the former default
    assert stack_config(StackPaths(state=tmp_path, env_file=env_file))["MODEL_URI"] == "models:/fraud-detector/Staging"
