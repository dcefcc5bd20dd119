"""Container healthchecks of docker-compose.yml, one small check per kind of service.

Reads: the service's environment through ``fraudops.settings`` (KAFKA_BROKERS, POSTGRES_*,
REDIS_*, MLFLOW_TRACKING_URI) or the HTTP endpoint named on the command line.
Writes: nothing; exits 0 when healthy, 1 with the reason on stderr otherwise.
Commands (inside the application image, as docker-compose.yml runs them):
    python /app/docker/healthcheck.py service kafka|postgres|redis|mlflow
    python /app/docker/healthcheck.py http http://localhost:5000/health
    python /app/docker/healthcheck.py spark-master http://localhost:8080/json/
    python /app/docker/healthcheck.py spark-worker http://localhost:8081/json/
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from typing import Any

HTTP_TIMEOUT_SECONDS = 5.0


def fetch(url: str, timeout: float = HTTP_TIMEOUT_SECONDS) -> bytes:
    """GET ``url`` and return the body; raises on a connection error or a non-2xx status."""
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - in-container URL
        return response.read()


def spark_master_problem(state: dict[str, Any]) -> str | None:
    """Why a Spark master's /json/ state is not healthy, or None when it is ALIVE."""
    status = state.get("status")
    return None if status == "ALIVE" else f"Spark master status is {status!r}, not 'ALIVE'"


def spark_worker_problem(state: dict[str, Any]) -> str | None:
    """Why a Spark worker's /json/ state is not healthy, or None once it registered with a master."""
    master = state.get("masterurl") or ""
    return None if master.startswith("spark://") else "Spark worker has not registered with a master yet"


def check_service(name: str) -> str | None:
    """Run the project's own health check of a stack service (fraudops.health)."""
    from fraudops.health import SERVICE_CHECKS
    from fraudops.settings import load_settings

    status = SERVICE_CHECKS[name](load_settings())
    print(status.line())
    return None if status.up else f"{name} is down: {status.detail}"


def check_json(url: str, problem_of) -> str | None:
    """Fetch a JSON status page and judge it with ``problem_of``."""
    return problem_of(json.loads(fetch(url)))


def main(argv: list[str] | None = None) -> int:
    from fraudops.health import SERVICE_CHECKS

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="kind", required=True)
    service = sub.add_parser("service", help="a stack service, checked by fraudops.health")
    service.add_argument("name", choices=sorted(SERVICE_CHECKS))
    for kind in ("http", "spark-master", "spark-worker"):
        sub.add_parser(kind).add_argument("url")
    args = parser.parse_args(argv)
    try:
        if args.kind == "service":
            problem = check_service(args.name)
        elif args.kind == "http":
            fetch(args.url)
            problem = None
        elif args.kind == "spark-master":
            problem = check_json(args.url, spark_master_problem)
        else:
            problem = check_json(args.url, spark_worker_problem)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, with its reason
        problem = f"{args.kind} check failed: {type(exc).__name__}: {exc}"
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
