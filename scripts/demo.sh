#!/usr/bin/env bash
# `make demo`: one release, end to end, with nothing else running.
# Uses the Temporal server at TEMPORAL_ADDRESS (default localhost:7233) if one answers; else, for
# the default address, starts a dev server (history kept in .temporal/dev.sqlite, Web UI on
# http://localhost:8233). Then starts a worker, runs RELEASE-NOV-23-INITIAL, prints the result,
# and stops whatever it started.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p .temporal
started=()

stop_started() {
  for pid in "${started[@]}"; do kill -INT "$pid" 2>/dev/null; done
  for pid in "${started[@]}"; do wait "$pid" 2>/dev/null; done
}
trap stop_started EXIT

ADDRESS=${TEMPORAL_ADDRESS:-localhost:7233}
server_answers() {
  "$BIN/temporal" operator cluster health --address "$ADDRESS" >/dev/null 2>&1
}

if server_answers; then
  echo "Using the Temporal server already answering on $ADDRESS."
elif [ "$ADDRESS" != "localhost:7233" ]; then
  echo "No Temporal server answers on TEMPORAL_ADDRESS=$ADDRESS; see setup.md." >&2
  exit 1
else
  echo "Starting a Temporal dev server (history in .temporal/dev.sqlite, Web UI http://localhost:8233)."
  # Precise timers: retries wait as long as the retry policy says, not at least a second.
  "$BIN/temporal" server start-dev --db-filename .temporal/dev.sqlite --log-level error \
    --dynamic-config-value 'history.timerProcessorMaxTimeShift="10ms"' \
    >.temporal/server.log 2>&1 &
  started+=($!)
  for _ in $(seq 1 120); do server_answers && break; sleep 0.5; done
  if ! server_answers; then
    echo "The dev server did not start; see .temporal/server.log" >&2
    exit 1
  fi
fi

"$BIN/python" run_worker.py >.temporal/worker.log 2>&1 &
started=($! "${started[@]}") # the worker stops before the server
echo "Worker started (its story: .temporal/worker.log)."
"$BIN/python" run_workflow.py RELEASE-NOV-23-INITIAL
