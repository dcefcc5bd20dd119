"""`make health`: one line per service (the product's readiness checks, fraudops.health), and a
non-zero exit naming what is down.

Run: ``python -m devstack.health`` (or ``make health``).
"""

from __future__ import annotations

from fraudops import health


def main() -> int:
    """Every stack service and the jobs (`python -m fraudops.health --jobs`): 1 naming what is down."""
    return health.main(["--jobs"])


if __name__ == "__main__":
    raise SystemExit(main())
