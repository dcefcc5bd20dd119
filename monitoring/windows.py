"""Durations and windows given on the command line: ``24h``, ``30m``, ``7d``, ``90s``, ``2w`` or a row count.

MLflow passes numbers as ``"5000.0"``; a whole number (with or without ``.0``) is a row count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhdw])\s*$", re.IGNORECASE)
_ROWS = re.compile(r"^\s*(?P<number>\d+)(?:\.0+)?\s*$")


def parse_duration(text: str, argument: str = "duration") -> timedelta:
    """``"24h"`` -> timedelta(hours=24). Units: s, m, h, d, w.

    Raises:
        ValueError: naming ``argument`` when the text is not a positive duration.
    """
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{argument}={text!r} is not a duration like 30m, 24h or 7d")
    value = timedelta(**{_UNITS[match["unit"].lower()]: float(match["number"])})
    if value <= timedelta(0):
        raise ValueError(f"{argument}={text!r} must be longer than zero")
    return value


@dataclass(frozen=True)
class Window:
    """The recent rows to look at: those scored in the last ``duration``, or the last ``rows`` rows."""

    text: str
    duration: timedelta | None = None
    rows: int | None = None

    def describe(self) -> str:
        return f"last {self.rows} scored rows" if self.rows is not None else f"rows scored in the last {self.text}"


def parse_window(text: str, argument: str = "window") -> Window:
    """``"24h"`` (a duration) or ``"5000"`` / ``"5000.0"`` (a row count).

    Raises:
        ValueError: naming ``argument`` when the text is neither, or the count is zero.
    """
    rows = _ROWS.match(str(text))
    if rows:
        count = int(rows["number"])
        if count < 1:
            raise ValueError(f"{argument}={text!r}: a row count must be at least 1")
        return Window(str(text).strip(), rows=count)
    try:
        return Window(str(text).strip(), duration=parse_duration(text, argument))
    except ValueError:
        raise ValueError(f"{argument}={text!r} is neither a duration (30m, 24h, 7d) nor a row count (5000)") from None
