"""Security properties checked on the code: no credentials in the repository, the local stack
binds to 127.0.0.1 and requires passwords, SQL takes values only as parameters (or COPY data),
and the scoring job loads models only from the MLflow registry.

The running stack's sockets and authentication are checked in
tests/reliability/test_stack_security.py (integration).
"""

from __future__ import annotations

import ast
import re
import socket
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
SCANNED_PACKAGES = ("streaming", "monitoring", "fraudops", "simulator", "devstack", "portal", "pipelines", "features", "expectations", "bench")


# ---------------------------------------------------------------- credentials

def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def tracked_texts() -> dict[Path, str]:
    texts = {}
    for path in tracked_files():
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        data = path.read_bytes()
        if b"\0" not in data[:4096]:
            texts[path] = data.decode("utf-8", errors="replace")
    return texts


PRIVATE_KEY = re.compile(r"-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY( BLOCK)?-----")
CLOUD_KEYS = re.compile(r"\b(AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}|xox[bap]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9]{32,})\b")
# NAME = value / NAME: value / name="value" where NAME says it is a secret
SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b[\w.-]*(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)[\w-]*\b['\"]?\s*[:=]\s*['\"]?"
    r"(?P<value>[A-Za-z0-9+/_\-]{12,})"
)
PLACEHOLDERS = {"change-me", "changeme", "placeholder", "your-password-here"}


def looks_like_a_secret(value: str) -> bool:
    """A literal with letters and digits (generated secrets), not a placeholder or a code name."""
    if value.lower() in PLACEHOLDERS or re.fullmatch(r"[a-z_]+|[A-Z_]+", value):
        return False
    return bool(re.search(r"[0-9]", value) and re.search(r"[A-Za-z]", value))


def test_no_private_keys_or_cloud_tokens_are_tracked():
    found = [f"{p.relative_to(ROOT)}: {m.group(0)[:20]}..." for p, text in tracked_texts().items()
             for m in [*PRIVATE_KEY.finditer(text), *CLOUD_KEYS.finditer(text)]]
    assert not found, found


def test_no_password_looking_literals_are_tracked():
    found = []
    for path, text in tracked_texts().items():
        for match in SECRET_ASSIGNMENT.finditer(text):
            if looks_like_a_secret(match["value"]):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)[:60]}")
    assert not found, "credentials belong in .stack/stack.env or .env (git-ignored): " + "; ".join(found)


def test_the_local_stacks_generated_secrets_appear_in_no_tracked_file():
    from devstack.config import SECRETS
    from devstack.paths import stack_paths
    from fraudops.settings import read_env_file

    values = read_env_file(stack_paths().env_file)
    secrets = [values[k] for k in SECRETS if len(values.get(k, "")) >= 8]
    leaked = [str(p.relative_to(ROOT)) for p, text in tracked_texts().items() if any(s in text for s in secrets)]
    assert not leaked, f"a generated password of the local stack is committed in {leaked}"


def test_secret_files_are_ignored_and_not_tracked():
    names = [str(p.relative_to(ROOT)) for p in tracked_files()]
    assert not [n for n in names if re.search(r"(^|/)(\.env|stack\.env|id_rsa|id_ed25519)$|\.(pem|key|p12)$", n)], names
    ignored = subprocess.run(["git", "check-ignore", ".env", ".stack/stack.env"], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert ignored == [".env", ".stack/stack.env"]


def test_the_scanner_finds_what_it_should():
    # built at run time, so that this file itself holds nothing the scanner would report
    first, second = "Xk3vQ9tLm" + "2Zp8rWs", "q8Yt5Lp0Z" + "r7Mn3Vb"
    planted = f'POSTGRES_PASSWORD={first}\nredis_password = "{second}"\n'
    assert [m["value"] for m in SECRET_ASSIGNMENT.finditer(planted) if looks_like_a_secret(m["value"])] == [
        first, second]
    harmless = "POSTGRES_PASSWORD=change-me\npassword=targets.redis_password\nREDIS_PASSWORD: ${REDIS_PASSWORD:?x}\n"
    assert not [m for m in SECRET_ASSIGNMENT.finditer(harmless) if looks_like_a_secret(m["value"])]
    assert PRIVATE_KEY.search("-----BEGIN OPENSSH " + "PRIVATE KEY-----")


# ---------------------------------------------------------------- the local stack's configuration

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Spawned(Exception):
    """Raised instead of starting a process: the test only wants its configuration."""


def _captured_start(monkeypatch, tmp_path, service: str) -> list[str]:
    from devstack import config, processes, stack
    from devstack import paths as stack_paths

    calls: list[list[str]] = []

    def capture(argv):
        calls.append([str(a) for a in argv])
        raise _Spawned

    monkeypatch.setattr(processes, "spawn", lambda _paths, _service, argv, env=None: capture(argv))
    monkeypatch.setattr(processes.subprocess, "run", lambda argv, **kw: capture(argv))
    paths = stack_paths.StackPaths(state=tmp_path, env_file=tmp_path / "stack.env")
    cfg = config.stack_config(paths)
    cfg.update({"POSTGRES_PORT": str(free_port()), "REDIS_PORT": str(free_port()), "MLFLOW_PORT": str(free_port()),
                "KAFKA_BROKERS": f"127.0.0.1:{free_port()}", "KAFKA_CONTROLLER_PORT": str(free_port())})
    if service == "postgres":  # an existing data folder: no initdb, straight to pg_ctl start
        (tmp_path / "postgres" / "data").mkdir(parents=True)
        (tmp_path / "postgres" / "data" / "PG_VERSION").write_text("15\n")
    with pytest.raises(_Spawned):
        stack.STARTERS[service](paths, cfg)
    return calls[-1]


def test_postgres_listens_on_loopback_only(monkeypatch, tmp_path):
    argv = " ".join(_captured_start(monkeypatch, tmp_path, "postgres"))
    assert "listen_addresses=127.0.0.1 " in argv + " "


def test_postgres_is_initialised_with_password_authentication_for_every_connection():
    from devstack import postgres

    source = Path(postgres.__file__).read_text()
    assert "--auth=scram-sha-256" in source and "--auth=trust" not in source


def test_redis_binds_loopback_and_requires_a_password(monkeypatch, tmp_path):
    _captured_start(monkeypatch, tmp_path, "redis")
    conf = (tmp_path / "redis" / "redis.conf").read_text().splitlines()
    assert "bind 127.0.0.1" in conf and "protected-mode yes" in conf
    requirepass = [line.split(" ", 1)[1] for line in conf if line.startswith("requirepass ")]
    assert requirepass and len(requirepass[0]) >= 16
    assert (tmp_path / "redis" / "redis.conf").stat().st_mode & 0o077 == 0, "redis.conf holds the password"


def test_kafka_listeners_are_loopback_only(monkeypatch, tmp_path):
    from devstack import kafka

    monkeypatch.setattr(kafka, "java_classpath", lambda name: "unused")
    _captured_start(monkeypatch, tmp_path, "kafka")
    props = dict(line.split("=", 1) for line in (tmp_path / "kafka" / "server.properties").read_text().splitlines()
                 if "=" in line)
    for key in ("listeners", "advertised.listeners"):
        hosts = {address.split("//", 1)[1].rsplit(":", 1)[0] for address in props[key].split(",")}
        assert hosts == {"127.0.0.1"}, (key, props[key])


def test_mlflow_listens_on_loopback_only(monkeypatch, tmp_path):
    argv = _captured_start(monkeypatch, tmp_path, "mlflow")
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


def test_the_env_file_with_the_passwords_is_private(tmp_path):
    from devstack import config
    from devstack.paths import StackPaths

    paths = StackPaths(state=tmp_path, env_file=tmp_path / "stack.env")
    cfg = config.stack_config(paths)
    config.write_env_file(paths, cfg)
    assert paths.env_file.stat().st_mode & 0o077 == 0
    assert all(len(cfg[key]) >= 16 for key in config.SECRETS)


# ---------------------------------------------------------------- SQL: parameters or COPY only

# text that starts like an SQL statement (prose that merely mentions SELECT is not SQL)
SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|COPY|CREATE|ALTER|DROP|SET|TRUNCATE|WITH)\b")
# Names that may be interpolated into SQL text: identifiers or fragments built from constants
# in code (table/column lists of fraudops.contract.tables, schema names checked by a pattern). A value
# that comes from data must be a query parameter (%s / %(name)s) or COPY input instead.
SQL_IDENTIFIER_NAMES = {"table", "temp", "cols", "columns", "conflict", "schema", "pg_schema", "since",
                        "LATEST_LABELS_SQL", "where_sql", "order_sql", "view", "index_name"}


def python_files() -> list[Path]:
    return [p for package in SCANNED_PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]


def _terminal_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
        return _terminal_name(node.args[0]) if node.args else None  # ", ".join(columns)
    return None


def sql_interpolations(source: str) -> list[tuple[int, str]]:
    """(line, expression) of every value put into SQL text by an f-string, % or .format()."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            if SQL_TEXT.search(text):
                found += [(node.lineno, ast.unparse(v.value)) for v in node.values if isinstance(v, ast.FormattedValue)
                          and _terminal_name(v.value) not in SQL_IDENTIFIER_NAMES]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
            left = node.left
            if isinstance(left, ast.Constant) and isinstance(left.value, str) and SQL_TEXT.search(left.value):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            target = node.func.value
            if isinstance(target, ast.Constant) and isinstance(target.value, str) and SQL_TEXT.search(target.value):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_sql_text_interpolates_only_identifiers():
    offenders = [f"{path.relative_to(ROOT)}:{line}: {expr}" for path in python_files()
                 for line, expr in sql_interpolations(path.read_text())]
    assert not offenders, "pass values as query parameters, not inside the SQL text: " + "; ".join(offenders)


def test_the_sql_check_catches_interpolated_values():
    bad = '''
cur.execute(f"SELECT * FROM t WHERE id = '{row['id']}'")
cur.execute("DELETE FROM t WHERE id = %s" % tid)
cur.execute("UPDATE t SET a = {}".format(value))
cur.execute("INSERT INTO t VALUES ('" + name + "')")
'''
    assert len(sql_interpolations(bad)) == 4
    good = '''
cur.execute("SELECT * FROM t WHERE id = %s", (tid,))
cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {temp} ON CONFLICT {conflict}")
cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
'''
    assert sql_interpolations(good) == []


# ---------------------------------------------------------------- models from the registry only

FORBIDDEN_LOADERS = {("pickle", "load"), ("pickle", "loads"), ("cloudpickle", "load"), ("cloudpickle", "loads"),
                     ("joblib", "load"), ("dill", "load"), ("dill", "loads"), ("torch", "load")}
MODEL_LOADERS = {"load_model", "spark_udf", "load_fraud_model", "load_pipeline"}


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            yield node, (owner.id if isinstance(owner, ast.Name) else ast.unparse(owner)), node.func.attr


def test_no_pickle_style_loading_in_the_serving_path():
    found = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in python_files() if p.parts[-2] in ("streaming", "monitoring")
             for n, owner, attr in _calls(p) if (owner.split(".")[-1], attr) in FORBIDDEN_LOADERS]
    assert not found, found


def test_the_streaming_job_loads_models_only_through_the_registry_resolver():
    loads = [(p.name, ast.unparse(n)) for p in sorted((ROOT / "streaming").glob("*.py")) for n, _, attr in _calls(p)
             if attr in MODEL_LOADERS]
    assert loads, "the job must load its model somewhere"
    for filename, call in loads:
        assert filename in ("model_server.py", "scoring_pass.py"), call  # the poll, the per-worker cache
        assert "served.model_uri" in call, f"{call}: the URI must come from resolve_served_model (models:/name/N)"


@pytest.mark.parametrize("uri", ["runs:/0123456789abcdef/model", "file:///tmp/model", "/tmp/model", "s3://bucket/m",
                                 "models:", "http://evil.example/model.pkl", ""])
def test_only_registry_uris_are_accepted(uri):
    from fraudops.modeling.registry import parse_models_uri

    with pytest.raises(ValueError, match="not a registry URI"):
        parse_models_uri(uri)


def test_the_pipeline_artifact_is_loaded_with_an_allowlist_not_pickle():
    from fraudops.modeling import model

    source = Path(model.__file__).read_text()
    assert "sio.load(" in source and "trusted=SKOPS_TRUSTED_TYPES" in source
    assert not [attr for _, owner, attr in _calls(Path(model.__file__)) if (owner, attr) in FORBIDDEN_LOADERS]
