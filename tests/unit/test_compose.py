"""docker-compose.yml, docker/Dockerfile and .env.example: valid, complete and consistent with the repo.

There is no Docker engine here, so the checks are static: the compose file is validated against the
Compose Specification schema (tests/schemas/compose-spec.json, vendored), then
checked for what an engine would only reveal at run time: a counterpart for every service of the
local stack, healthchecks, start conditions, loopback-only ports, no password in the file, and that
every module, script and file the containers run or copy exists in the repository.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from devstack.config import SECRETS
from devstack.kafka import DEFAULT_TOPICS as LOCAL_STACK_TOPICS
from devstack.stack import SERVICE_ORDER as LOCAL_STACK_SERVICES
from fraudops.settings_table import container_settings

# what the containers must get: the application's settings that .env.example lists, and the
# local stack's passwords that the containers use too
APP_SETTINGS_VARIABLES = [row.name for row in container_settings() if row.field is not None]
STACK_SECRETS = [name for name in SECRETS if any(row.name == name for row in container_settings())]

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = REPO_ROOT / "tests" / "schemas" / "compose-spec.json"
DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / "docker" / "Dockerfile.dockerignore"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
APP_DIR_IN_IMAGE = "/app"
PLACEHOLDER = "change-me"

# What stands for each local-stack service in the compose file (architecture.md, Services).
COUNTERPART_IMAGES = {"kafka": "apache/kafka:", "postgres": "postgres:", "redis": "redis:", "feature-store": "redis:"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
# ${NAME}, ${NAME:-default}, ${NAME:?message}; "$${...}" is an escaped dollar (left to the container's shell)
VARIABLE_REFERENCE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>[^}]*)\}")
ONLY_REFERENCES = re.compile(r"^(\$\{[^}]+\})+$")
URL_CREDENTIALS = re.compile(r"://[^:/@\s]+:(?P<password>[^@\s]+)@")


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return load_compose()["services"]


def is_one_shot(service: dict) -> bool:
    """A step that runs to completion (restart "no"); every other service is long-running."""
    return service.get("restart") == "no"


def uses_app_image(service: dict) -> bool:
    """Services built from docker/Dockerfile run the repository's code."""
    build = service.get("build")
    return isinstance(build, dict) and build.get("dockerfile") == "docker/Dockerfile"


def as_argv(value) -> list[str]:
    """A command/entrypoint/healthcheck test as an argument list (shell strings are split)."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    argv = [str(v) for v in value]
    if argv[:1] in (["CMD"], ["CMD-SHELL"]):
        return shlex.split(argv[1]) if argv[0] == "CMD-SHELL" else argv[1:]
    return argv


def service_commands(service: dict) -> list[list[str]]:
    healthcheck = service.get("healthcheck") or {}
    return [
        as_argv(service.get("entrypoint")) + as_argv(service.get("command")),
        as_argv(healthcheck.get("test")),
    ]


def repo_path_of(path_in_container: str) -> Path | None:
    """The repository file a path in the app image refers to (relative paths are under WORKDIR /app)."""
    if path_in_container.startswith(APP_DIR_IN_IMAGE + "/"):
        return REPO_ROOT / path_in_container[len(APP_DIR_IN_IMAGE) + 1 :]
    if path_in_container.startswith("/"):
        return None  # a path of the image itself (e.g. /opt/jars), not of the repository
    return REPO_ROOT / path_in_container


def module_exists(module: str) -> bool:
    base = REPO_ROOT.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def repository_targets() -> list[tuple[str, str, str]]:
    """(service, kind, target) for every module, script and mounted file the compose file uses."""
    targets: list[tuple[str, str, str]] = []
    for name, service in services().items():
        if uses_app_image(service):
            for argv in service_commands(service):
                for i, arg in enumerate(argv):
                    if arg == "-m" and i + 1 < len(argv):
                        targets.append((name, "module", argv[i + 1]))
                    elif arg.endswith((".py", ".sh")) and repo_path_of(arg) is not None:
                        targets.append((name, "script", arg))
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                targets.append((name, "bind mount", source))
    return targets


def compose_variables() -> list[re.Match]:
    """Every ${VAR...} interpolation of the compose file (its values, not its comments)."""
    return [m for _, _, value in walk_strings(load_compose()) for m in VARIABLE_REFERENCE.finditer(value)]


def walk_strings(node, path: str = ""):
    """Yield (path, key, string) for every string in the loaded YAML (keys of mappings included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield f"{path}.{key}", str(key), value
            else:
                yield from walk_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, str):
                yield f"{path}[{index}]", "", value
            else:
                yield from walk_strings(value, f"{path}[{index}]")


def env_example_values() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def dockerfile_instructions() -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        joined.append(current + line)
        current = ""
    instructions = []
    for text in joined:
        words = shlex.split(text, comments=False)
        instructions.append((words[0].upper(), words[1:]))
    return instructions


def load_docker_script(name: str):
    """Import docker/<name>.py by path (docker/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"docker_{name}", REPO_ROOT / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- schema and services


def test_compose_file_validates_against_the_compose_specification():
    import jsonschema

    if not COMPOSE_SCHEMA.is_file():
        pytest.fail(
            f"the Compose Specification schema is missing at {COMPOSE_SCHEMA} "
            "(vendored from compose-spec/compose-spec, see tests/schemas/README.md)"
        )
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(load_compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "docker-compose.yml violates the Compose Specification:\n" + "\n".join(
        f"  at {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


@pytest.mark.parametrize("local_service", LOCAL_STACK_SERVICES)
def test_every_local_stack_service_has_a_counterpart(local_service):
    compose_services = services()
    assert local_service in compose_services, f"the local stack's {local_service} has no compose service"
    service = compose_services[local_service]
    if local_service in COUNTERPART_IMAGES:
        assert COUNTERPART_IMAGES[local_service] in service.get("image", ""), (
            f"{local_service} should run the {COUNTERPART_IMAGES[local_service]} image, not {service.get('image')!r}"
        )
    else:  # mlflow: the tracking server from the app image
        assert as_argv(service.get("command"))[:2] == ["mlflow", "server"]


def test_the_containerized_system_has_the_spark_cluster_the_job_the_producer_and_jupyter():
    names = set(services())
    expected = {
        "kafka-init",
        "migrate",
        "spark-master",
        "spark-worker",
        "streaming",
        "producer",
        "metrics",
        "jupyter",
    }
    assert expected <= names, f"missing services: {sorted(expected - names)}"
    submit = as_argv(services()["streaming"]["command"])
    assert submit[0] == "spark-submit"
    assert submit[submit.index("--master") + 1] == "spark://spark-master:7077"


def test_kafka_init_creates_the_local_stack_topics_with_their_partitions():
    init = services()["kafka-init"]
    script = "\n".join(as_argv(init["command"]))
    defaults = {
        name: VARIABLE_REFERENCE.search(value)["modifier"].removeprefix(":-")
        for name, value in init["environment"].items()
    }
    created = {defaults[var]: int(n) for var, n in re.findall(r"\$\$\{(\w+)\}:(\d+)", script)}
    assert created == LOCAL_STACK_TOPICS, (
        f"kafka-init creates {created}, the local stack {LOCAL_STACK_TOPICS}"
    )


def test_kafka_runs_in_kraft_mode_as_a_single_node():
    env = services()["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert env["CLUSTER_ID"]


# ---------------------------------------------------------------- health and start order


def test_every_service_says_whether_it_is_a_one_shot_step_or_long_running():
    unclear = [name for name, service in services().items() if "restart" not in service]
    assert not unclear, f'set restart ("no" for one-shot steps, unless-stopped otherwise) on: {unclear}'


def test_every_long_running_service_has_a_healthcheck():
    missing = [
        name
        for name, service in services().items()
        if not is_one_shot(service)
        and (not service.get("healthcheck", {}).get("test") or service["healthcheck"].get("disable"))
    ]
    assert not missing, f"long-running services without a healthcheck: {missing}"


def test_depends_on_uses_conditions_that_match_the_dependency():
    compose_services = services()
    problems = []
    for name, service in compose_services.items():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, list):
            problems.append(f"{name}: depends_on is a plain list (no condition)")
            continue
        for dependency, spec in depends_on.items():
            condition = (spec or {}).get("condition")
            target = compose_services.get(dependency)
            if target is None:
                problems.append(f"{name}: depends on unknown service {dependency}")
            elif condition == "service_healthy" and not target.get("healthcheck"):
                problems.append(f"{name}: waits for {dependency} to be healthy but it has no healthcheck")
            elif condition == "service_completed_successfully" and not is_one_shot(target):
                problems.append(f"{name}: waits for {dependency} to complete but it is long-running")
            elif condition not in {"service_healthy", "service_completed_successfully"}:
                problems.append(f"{name}: depends on {dependency} with condition {condition!r}")
    assert not problems, "\n".join(problems)


def test_one_shot_steps_run_before_the_services_that_need_them():
    compose_services = services()
    for name, step in {"streaming": "kafka-init", "producer": "kafka-init", "metrics": "migrate"}.items():
        assert compose_services[name]["depends_on"][step]["condition"] == "service_completed_successfully"
    assert compose_services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_volumes_are_named_and_declared():
    compose = load_compose()
    declared = set(compose.get("volumes") or {})
    used = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if isinstance(volume, str) and not volume.startswith((".", "/"))
    }
    assert used, "no named volumes"
    assert used <= declared, f"volumes used but not declared: {sorted(used - declared)}"
    for stateful in ("kafka", "postgres", "redis", "mlflow"):
        assert any(not v.startswith((".", "/")) for v in compose["services"][stateful].get("volumes", [])), (
            f"{stateful} keeps its data in the container instead of a named volume"
        )


def test_the_streaming_driver_and_the_spark_worker_share_the_checkpoint_volume():
    compose_services = services()
    driver = set(compose_services["streaming"]["volumes"])
    worker = set(compose_services["spark-worker"]["volumes"])
    assert any(v.endswith(":/var/lib/fraudops") for v in driver & worker)


# ---------------------------------------------------------------- ports and secrets


def test_every_host_port_binds_loopback_only():
    problems = []
    for name, service in services().items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                if port.get("host_ip") != "127.0.0.1":
                    problems.append(f"{name}: {port}")
            elif not str(port).startswith("127.0.0.1:"):
                problems.append(f"{name}: {port}")
    assert not problems, "ports published beyond 127.0.0.1: " + ", ".join(problems)


def test_no_literal_password_in_the_compose_file():
    problems = []
    for path, key, value in walk_strings(load_compose()):
        if SECRET_NAME.search(key) and not ONLY_REFERENCES.match(value):
            problems.append(f"{path}={value!r} is not a ${{...}} reference")
        for match in URL_CREDENTIALS.finditer(value):
            if not ONLY_REFERENCES.match(match["password"]):
                problems.append(f"{path}: URL password {match['password']!r} is not a ${{...}} reference")
    for name, service in services().items():
        argv = as_argv(service.get("command"))
        for i, arg in enumerate(argv[:-1]):
            if arg == "--requirepass" and not ONLY_REFERENCES.match(argv[i + 1]):
                problems.append(f"{name}: --requirepass {argv[i + 1]!r} is not a ${{...}} reference")
    assert not problems, "\n".join(problems)


def test_secrets_are_required_variables_without_defaults():
    references = [m for m in compose_variables() if SECRET_NAME.search(m["name"])]
    assert {m["name"] for m in references} >= set(STACK_SECRETS), "every local-stack secret is used"
    lax = sorted({m.group(0) for m in references if not m["modifier"].startswith(":?")})
    assert not lax, f"secrets must be ${{VAR:?message}} (no default, fail when unset): {lax}"


@pytest.mark.parametrize(
    "service", ["migrate", "model-bootstrap", "spark-worker", "streaming", "producer", "metrics", "jupyter",
                "decisions", "portal", "alerts"]
)
def test_application_services_get_every_setting_from_the_env_file(service):
    definition = services()[service]
    assert definition.get("env_file") == ".env", f"{service} does not read .env"
    missing = set(APP_SETTINGS_VARIABLES) - set(definition.get("environment", {}))
    assert not missing, f"{service} lacks the settings {sorted(missing)}"


# ---------------------------------------------------------------- .env.example


def test_env_example_documents_every_variable_with_placeholder_secrets():
    documented = env_example_values()
    used = {m["name"] for m in compose_variables()}
    needed = used | set(APP_SETTINGS_VARIABLES)
    assert not needed - set(documented), f".env.example lacks: {sorted(needed - set(documented))}"
    secrets = {name: value for name, value in documented.items() if SECRET_NAME.search(name)}
    assert secrets and all(value == PLACEHOLDER for value in secrets.values()), (
        f"secrets in .env.example must be the placeholder {PLACEHOLDER!r}: {secrets}"
    )


def test_env_example_points_the_application_at_the_compose_services():
    documented = env_example_values()
    assert documented["KAFKA_BROKERS"] == "kafka:9092"
    assert documented["POSTGRES_HOST"] == "postgres"
    assert documented["REDIS_HOST"] == "redis"
    assert documented["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


# ---------------------------------------------------------------- what the containers run


@pytest.mark.parametrize(("service", "kind", "target"), repository_targets())
def test_every_module_script_and_mount_the_compose_file_uses_exists(service, kind, target):
    if kind == "module":
        assert module_exists(target), (
            f"{service} runs `python -m {target}` but {target} is not in the repository"
        )
    elif kind == "script":
        assert repo_path_of(target).is_file(), f"{service} runs {target}, which is not in the repository"
    else:
        assert (REPO_ROOT / target).exists(), f"{service} mounts {target}, which is not in the repository"


def test_the_compose_file_runs_the_expected_modules():
    targets = {target for _, kind, target in repository_targets() if kind != "bind mount"}
    expected = {
        "fraudops.db",
        "streaming.producer",
        "monitoring.metrics_collector",
        "pipelines.main",
        "streaming/scoring_job.py",
    }
    assert expected <= targets, f"not run by any service: {sorted(expected - targets)}"


def test_jar_folders_passed_to_spark_submit_are_filled_by_the_dockerfile():
    dockerfile = DOCKERFILE.read_text()
    submit = as_argv(services()["streaming"]["command"])
    jars = submit[submit.index("--jars") + 1].split(",")
    for pattern in jars:
        folder = str(Path(pattern).parent)
        assert f"-DoutputDirectory={folder}" in dockerfile, f"nothing in the Dockerfile fills {folder}"


# ---------------------------------------------------------------- docker/Dockerfile


def test_dockerfile_copy_sources_exist_and_are_in_the_build_context():
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    problems = []
    for instruction, args in dockerfile_instructions():
        if instruction not in {"COPY", "ADD"} or any(a.startswith("--from") for a in args):
            continue
        sources = [a for a in args if not a.startswith("--")][:-1]
        for source in sources:
            if source != "." and not list(REPO_ROOT.glob(source)):
                problems.append(f"{instruction} {source}: not in the repository")
            if source.split("/")[0] in ignored:
                problems.append(f"{instruction} {source}: excluded by {DOCKERIGNORE.name}")
    assert not problems, "\n".join(problems)


def test_dockerfile_maven_poms_exist():
    poms = re.findall(r"mvn\b[^\n]*?-f\s+(\S+)", DOCKERFILE.read_text())
    assert poms, "the Dockerfile fetches no jars with Maven"
    for pom in poms:
        assert (REPO_ROOT / pom).is_file(), f"{pom} is not in the repository"


def test_dockerfile_builds_the_application_image_as_specified():
    instructions = dockerfile_instructions()
    text = DOCKERFILE.read_text()
    bases = [args for name, args in instructions if name == "FROM"]
    assert bases and all("${PYTHON_IMAGE}" in args[0] for args in bases)
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert "openjdk-17-jre-headless" in text
    assert "pip install -r requirements.txt" in text
    assert any(
        name == "ENV" and any(a.startswith("PYSPARK_PYTHON=") for a in args) for name, args in instructions
    )
    assert ("WORKDIR", ["/app"]) in instructions
    users = [args[0] for name, args in instructions if name == "USER"]
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image():
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".env", ".venv", ".stack", ".cache", "data", "mlruns", ".git"} <= ignored


# ---------------------------------------------------------------- docker/ helpers


def test_spark_health_judges_master_and_worker_states():
    health = load_docker_script("healthcheck")
    assert health.spark_master_problem({"status": "ALIVE"}) is None
    assert "STANDBY" in health.spark_master_problem({"status": "STANDBY"})
    assert health.spark_worker_problem({"masterurl": "spark://spark-master:7077"}) is None
    assert health.spark_worker_problem({"masterurl": ""}) is not None


def test_model_bootstrap_tells_a_missing_model_from_an_outage():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import (
        INVALID_PARAMETER_VALUE,
        RESOURCE_DOES_NOT_EXIST,
        TEMPORARILY_UNAVAILABLE,
    )

    ensure = load_docker_script("ensure_model")
    assert ensure.is_missing_model_error(LookupError("no Production version"))
    assert ensure.is_missing_model_error(MlflowException("model not found", RESOURCE_DOES_NOT_EXIST))
    assert ensure.is_missing_model_error(MlflowException("alias champion not found", INVALID_PARAMETER_VALUE))
    assert not ensure.is_missing_model_error(MlflowException("server down", TEMPORARILY_UNAVAILABLE))
    assert not ensure.is_missing_model_error(ConnectionError("refused"))


# ---------------------------------------------------------------- observability (issue 25)
OBSERVABILITY_SERVICES = {"decisions", "portal", "alerts", "prometheus", "alertmanager", "grafana"}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - inside a container, for the prometheus service


def option(argv: list[str], name: str, default: str | None = None) -> str | None:
    """The value after ``name`` in an argument list (``default`` when absent)."""
    return argv[argv.index(name) + 1] if name in argv else default


def listening_port(service_name: str) -> int:
    """The port a compose service's process serves its metrics on, from its own command line
    (the defaults of its CLI where the command does not say), checking it binds beyond loopback."""
    from fraudops.settings import Settings
    from monitoring.metrics_collector import DEFAULT_PORT

    argv = as_argv(services()[service_name]["command"])
    if service_name == "streaming":
        assert option(argv, "--metrics-host") == ALL_INTERFACES, "the driver's metrics must be reachable"
        return int(option(argv, "--metrics-port", str(Settings().streaming_metrics_port)))
    if service_name == "metrics":
        assert option(argv, "--host") == ALL_INTERFACES, "the collector's metrics must be reachable"
        return int(option(argv, "--port", str(DEFAULT_PORT)))
    if service_name in ("decisions", "portal"):
        assert option(argv, "--host") == ALL_INTERFACES, f"{service_name} must be reachable from prometheus"
        return int(option(argv, "--port"))
    published = [str(p).rsplit(":", 1)[1] for p in services()[service_name].get("ports", [])]
    assert len(published) == 1, service_name
    return int(published[0])


def test_the_containerized_system_has_the_portal_the_alert_rules_prometheus_and_grafana():
    names = set(services())
    assert names >= OBSERVABILITY_SERVICES, f"missing services: {sorted(OBSERVABILITY_SERVICES - names)}"
    assert as_argv(services()["portal"]["command"])[:4] == ["python", "-m", "portal", "serve"]
    assert as_argv(services()["alerts"]["command"])[:3] == ["python", "-m", "monitoring.alerts"]


def test_prometheus_scrapes_each_service_where_it_listens():
    config = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    targets = [target for job in config["scrape_configs"] for sc in job["static_configs"] for target in sc["targets"]]
    targets += config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    for target in targets:
        host, port = target.rsplit(":", 1)
        if host == "localhost":
            continue  # Prometheus itself
        assert host in services(), f"prometheus.yml scrapes {target}: no compose service {host}"
        assert listening_port(host) == int(port), f"{host} does not listen on {port}"


def test_prometheus_alertmanager_and_grafana_run_the_repositorys_configuration():
    compose = services()
    mounts = {name: {v.split(":")[1]: v.split(":")[0] for v in compose[name]["volumes"] if v.startswith("./")}
              for name in ("prometheus", "alertmanager", "grafana")}
    prometheus_argv = as_argv(compose["prometheus"]["command"])
    config_file = next(a.split("=", 1)[1] for a in prometheus_argv if a.startswith("--config.file="))
    assert (REPO_ROOT / mounts["prometheus"]["/etc/prometheus"] / Path(config_file).name).is_file()
    assert config_file == "/etc/prometheus/prometheus.yml"
    alertmanager_argv = as_argv(compose["alertmanager"]["command"])
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager_argv
    assert (REPO_ROOT / mounts["alertmanager"]["/etc/alertmanager"] / "alertmanager.yml").is_file()
    provider = yaml.safe_load((REPO_ROOT / "monitoring/grafana/provisioning/dashboards/fraudops.yml").read_text())
    dashboards_in_container = provider["providers"][0]["options"]["path"]
    assert mounts["grafana"][dashboards_in_container] == "./monitoring/grafana/dashboards"
    assert mounts["grafana"]["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    assert compose["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
