#!/usr/bin/env bash
# `make demo`: one release, end to end, with nothing else running.
# Uses the Temporal server on localhost:7233 if one answers, else starts a dev server (history
# kept in .temporal/dev.sqlite, Web UI on http://localhost:8233); starts a worker; runs
# RELEASE-NOV-23-INITIAL; prints the result; stops whatever it started.
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

server_answers() {
  "$BIN/temporal" operator cluster health --address localhost:7233 >/dev/null 2>&1
}

if server_answers; then
  echo "Using the Temporal server already answering on localhost:7233."
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
echo "Watch it in the Web UI: http://localhost:8233/namespaces/default/workflows"
"$BIN/python" run_workflow.py RELEASE-NOV-23-INITIAL
