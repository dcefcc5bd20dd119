"""Strict JSON for everything the project writes to PostgreSQL (json/jsonb columns), Redis and Kafka.

``json.dumps`` writes ``NaN``, ``Infinity`` and ``-Infinity`` by default: that is not JSON, and
PostgreSQL refuses it (``invalid input syntax for type json``). :func:`strict_dumps` maps every
non-finite float (Python, numpy or pandas) to ``null`` and then dumps with ``allow_nan=False``,
so a non-finite value can never slip through. Numpy scalars and arrays, pandas timestamps,
datetimes, dates, Decimals, sets and tuples become their plain JSON equivalents; anything else
falls back to ``str``.

Usage:
    cur.execute("INSERT INTO audit_log (event_type, actor, details) VALUES (%s, %s, %s)",
                (event, actor, strict_dumps(details)))

Importing this module has no side effects.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def strict_value(value: Any) -> Any:
    """``value`` with every NaN/infinity replaced by None, recursively, as plain JSON types.

    Mappings keep their keys (turned into strings as json.dumps would); lists, tuples, sets and
    numpy arrays become lists; numpy/pandas scalars become Python numbers; missing values
    (None, NaN, NaT, pandas.NA) become None.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, decimal.Decimal):
        return strict_value(float(value))
    if isinstance(value, Mapping):
        return {_key(k): strict_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [strict_value(v) for v in (sorted(value, key=str) if isinstance(value, set | frozenset) else value)]
    return _scalar(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(strict_value(key)).strip('"')


def _scalar(value: Any) -> Any:
    """Timestamps, NaT/NA and other scalars (pandas is optional here)."""
    try:
        import pandas as pd

        if value is pd.NaT or value is pd.NA:
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if isinstance(value, pd.Timedelta):
            return value.total_seconds()
    except ImportError:  # pragma: no cover - pandas is a dependency of the project
        pass
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    return str(value)


def strict_dumps(value: Any, **kwargs: Any) -> str:
    """JSON text of ``value`` with NaN and infinities as null (``allow_nan=False`` enforces it).

    Args:
        value: anything :func:`strict_value` accepts.
        **kwargs: passed to ``json.dumps`` (e.g. ``sort_keys=True``, ``separators=(",", ":")``);
            ``allow_nan`` and ``default`` are fixed.
    """
    kwargs.pop("allow_nan", None)
    kwargs.pop("default", None)
    return json.dumps(strict_value(value), allow_nan=False, **kwargs)
