"""The running local stack is reachable from this machine only and asks for passwords.

Checks the live services that `make stack-up` started (their generated configuration is checked
without services in tests/unit/test_security.py): every listening socket of PostgreSQL, Redis,
Kafka and MLflow is bound to 127.0.0.1, and PostgreSQL and Redis refuse clients without the
generated password.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.reliability


def listening_sockets() -> list[tuple[str, int, str]]:
    """(address, port, inode) of every TCP socket in LISTEN state (IPv4 and IPv6)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A":  # LISTEN
                found.append((_decode_address(address, width), int(hex_port, 16), fields[9]))
    return found


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port``."""
    return {address for address, p, _ in listening_sockets() if p == port}


def process_socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _decode_address(hex_address: str, width: int) -> str:
    if width == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hex_address)))
    words = [hex_address[i:i + 8] for i in range(0, 32, 8)]
    address = ipaddress.IPv6Address(b"".join(bytes(reversed(bytes.fromhex(w))) for w in words))
    return str(address.ipv4_mapped or address)  # a JVM listens on ::ffff:127.0.0.1


def stack_ports(settings) -> dict[str, int]:
    return {"postgres": settings.postgres_port, "redis": settings.redis_port,
            "kafka": int(settings.kafka_brokers.split(",")[0].rsplit(":", 1)[1]),
            "mlflow": urlparse(settings.mlflow_tracking_uri).port}


def test_every_service_listens_on_loopback_only(settings):
    for service, port in stack_ports(settings).items():
        addresses = listening_addresses(port)
        assert addresses, f"{service} is not listening on {port}: start the stack with `make stack-up`"
        assert addresses == {"127.0.0.1"}, f"{service} listens on {addresses}"


def test_postgres_listen_addresses_setting(pg_conn):
    with pg_conn.cursor() as cur:
        cur.execute("SHOW listen_addresses")
        assert cur.fetchone()[0] == "127.0.0.1"
    pg_conn.rollback()


@pytest.mark.parametrize("password", ["", "wrong-password"])
def test_postgres_refuses_a_client_without_the_password(settings, password):
    import psycopg2

    with pytest.raises(psycopg2.OperationalError, match="password"):
        psycopg2.connect(host=settings.postgres_host, port=settings.postgres_port, dbname=settings.postgres_db,
                         user=settings.postgres_user, password=password, connect_timeout=5)


def test_redis_refuses_a_client_without_the_password(settings, redis_client):
    import redis

    anonymous = redis.Redis(host=settings.redis_host, port=settings.redis_port, socket_timeout=5)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()
    assert redis_client.config_get("bind")["bind"] == "127.0.0.1"
    assert redis_client.config_get("protected-mode")["protected-mode"] == "yes"


def test_the_spark_driver_listens_on_loopback_only(spark):
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    inodes = process_socket_inodes(int(pid))
    addresses = {(address, port) for address, port, inode in listening_sockets() if inode in inodes}
    assert addresses, "the driver listens on nothing: the check is broken"
    assert {address for address, _ in addresses} == {"127.0.0.1"}, sorted(addresses)
