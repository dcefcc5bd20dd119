#!/usr/bin/env bash
# The seed's retraining script, as a real command: retrain on the recent scored traffic in
# PostgreSQL (+ labelled history) and promote only through the champion/challenger gate.
# All arguments go to `python -m pipelines.retrain` (see its docstring); data/history.parquet is
# added as --history when it exists and no --history is given.
#
# Usage:
#   scripts/retrain_model.sh                                   # retrain now
#   scripts/retrain_model.sh --promote false                   # decide and report only
#   RETRAIN_DRIFT_WINDOW=24h scripts/retrain_model.sh          # drift check first; retrain only on drift
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
args=("$@")
schema=public
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ "${args[$i]}" == "--pg-schema" && $((i + 1)) -lt ${#args[@]} ]] && schema="${args[$((i + 1))]}"
done
if [[ " ${args[*]-} " != *" --history "* && -f data/history.parquet ]]; then
  args+=(--history data/history.parquet)
fi
if [[ -n "${RETRAIN_DRIFT_WINDOW:-}" ]]; then
  "$PY" -m pipelines.drift --window "$RETRAIN_DRIFT_WINDOW" --pg-schema "$schema"
  args+=(--if-drift true)
fi
exec "$PY" -m pipelines.retrain "${args[@]}"
