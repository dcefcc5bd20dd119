"""State of the platform's services, through fraudops.health's checks (one place for both the
metrics collector and the alert rules)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger("monitoring.services")


@dataclass(frozen=True)
class ServiceState:
    """One service.

    Attributes:
        name: kafka, postgres, redis, mlflow, streaming.
        up: not failing (an optional job that was never started is up: nothing is wrong).
        running: actually running (a never-started streaming job is not).
        detail: the check's detail or error.
    """

    name: str
    up: bool
    running: bool
    detail: str


def service_checks() -> dict[str, Callable]:
    """fraudops.health's checks, the optional ones (the streaming job) included."""
    from fraudops.health import OPTIONAL_CHECKS, SERVICE_CHECKS

    return {**SERVICE_CHECKS, **OPTIONAL_CHECKS}


def service_states(settings, checks: Mapping[str, Callable] | None = None) -> list[ServiceState]:
    """Run each check; a check that raises counts as the service being down."""
    states = []
    for name, check in (checks if checks is not None else service_checks()).items():
        try:
            status = check(settings)
            states.append(ServiceState(name, bool(status.up), bool(status.up and status.state is None), status.detail))
        except Exception as exc:  # noqa: BLE001 - a broken check reports the service as down
            log.warning("health check of %s failed: %s", name, exc)
            states.append(ServiceState(name, False, False, f"check failed: {type(exc).__name__}: {exc}"[:200]))
    return states
