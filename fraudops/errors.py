"""The project's own exceptions, in one place (each subclasses the builtin a caller would expect)."""

from __future__ import annotations


class DataValidationError(ValueError):
    """Data failed a Great Expectations suite; the message is the suite's report."""


class InsufficientDataError(ValueError):
    """Too few rows for a meaningful result (e.g. a drift check on an almost empty window)."""


class DegenerateModelError(ValueError):
    """A trained model that must never be a candidate (threshold >= 0.99, or no fraud in validation)."""
