"""Polling helper for tests: wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def assert_eventually(check: Callable[[], T], timeout: float = 60.0, interval: float = 0.5, message: str = "") -> T:
    """Call ``check`` until it returns a truthy value (returned) or ``timeout`` seconds pass.

    Exceptions raised by ``check`` count as "not yet"; the last one is chained on failure.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: T | None = None
    while time.monotonic() < deadline:
        try:
            last_value = check()
            if last_value:
                return last_value
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"condition not met within {timeout}s: {message or check!r}; last value {last_value!r}"
    ) from last_error
