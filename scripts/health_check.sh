#!/usr/bin/env bash
# The seed's health check, as a real command: one line per service, non-zero when one is down.
# Usage: scripts/health_check.sh   (same as `make health`)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m devstack.health "$@"
