"""`make health`: one line per service (the product's readiness checks, fraudops.health), and a
non-zero exit naming what is down.

Run: ``python -m devstack.health`` (or ``make health``).
"""

from __future__ import annotations

import sys

from fraudops.health import OPTIONAL_CHECKS, check_all
from fraudops.settings import load_settings


def main() -> int:
    settings = load_settings()
    statuses = check_all(settings) + [check(settings) for check in OPTIONAL_CHECKS.values()]
    for status in statuses:
        print(status.line())
    down = [s.name for s in statuses if not s.up]
    if down:
        print(f"down: {', '.join(down)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
