#!/usr/bin/env bash
# `make demo`: one release, end to end, with nothing else running.
# Uses the Temporal server at TEMPORAL_ADDRESS (default localhost:7233) if one answers; else, for
# an address on this machine (localhost:PORT), starts a dev server there, its Web UI on PORT+1000
# (http://localhost:8233 by default). Then starts a worker, runs RELEASE-NOV-23-INITIAL and prints
# the result. On a terminal, what it started (the server and its Web UI, the worker) stays up
# until Ctrl+C; otherwise (CI, a pipe) it is stopped at once.
# Settings, all optional: TEMPORAL_ADDRESS, as above; DEMO_ROOT, the demo root (README, "The files
# contract"), whose .temporal/ folder also holds the server's history (dev.sqlite) and the logs
# (server.log, worker.log); without it, the project folder's. A test runs the demo on a free port
# and a temp DEMO_ROOT, apart from a `make demo` of yours.
set -uo pipefail
if [ -n "${DEMO_ROOT:-}" ]; then
  # Made absolute before the cd below; the worker would refuse a folder that does not exist.
  wanted=$DEMO_ROOT
  DEMO_ROOT=$(cd "$wanted" 2>/dev/null && pwd) || {
    echo "DEMO_ROOT=$wanted is not a folder: create it (mkdir -p $wanted) or unset DEMO_ROOT" >&2
    exit 2
  }
  export DEMO_ROOT
fi
cd "$(dirname "$0")/.."
BIN=.venv/bin
STATE=${DEMO_ROOT:+$DEMO_ROOT/}.temporal
mkdir -p "$STATE"
started=()

stop_started() {
  for pid in "${started[@]}"; do kill -INT "$pid" 2>/dev/null; done
  for pid in "${started[@]}"; do wait "$pid" 2>/dev/null; done
}
trap stop_started EXIT
# Ctrl+C while the release runs: the starter stops waiting (the release stays in Temporal), and
# everything started here stops.
trap 'exit 130' INT TERM HUP

ADDRESS=${TEMPORAL_ADDRESS:-localhost:7233}
HOST=${ADDRESS%:*}
PORT=${ADDRESS##*:}
server_answers() {
  "$BIN/temporal" operator cluster health --address "$ADDRESS" >/dev/null 2>&1
}

if server_answers; then
  echo "Using the Temporal server already answering on $ADDRESS."
elif [[ ! ($HOST == localhost || $HOST == 127.0.0.1) || ! $PORT =~ ^[0-9]+$ ]]; then
  echo "No Temporal server answers on TEMPORAL_ADDRESS=$ADDRESS; see setup.md." >&2
  exit 1
else
  UI="http://$HOST:$((PORT + 1000))"
  echo "Starting a Temporal dev server (its history: $STATE/dev.sqlite)."
  echo "Its Web UI: $UI"
  # Precise timers: retries wait as long as the retry policy says, not at least a second. The
  # search attributes (search_attributes.py) let the Web UI find releases by key and outcome.
  "$BIN/temporal" server start-dev --db-filename "$STATE/dev.sqlite" --log-level error \
    --ip "$HOST" --port "$PORT" --ui-port $((PORT + 1000)) \
    --dynamic-config-value 'history.timerProcessorMaxTimeShift="10ms"' \
    --search-attribute ReleaseKey=Keyword --search-attribute ReleaseOutcome=Keyword \
    --search-attribute DeployEnvironment=Keyword --search-attribute DeployComponent=Keyword \
    >"$STATE/server.log" 2>&1 &
  started+=($!)
  for _ in $(seq 1 120); do server_answers && break; sleep 0.5; done
  if ! server_answers; then
    echo "The dev server did not start; see $STATE/server.log" >&2
    exit 1
  fi
fi

"$BIN/python" run_worker.py >"$STATE/worker.log" 2>&1 &
started=($! "${started[@]}") # the worker stops before the server
echo "Worker started (its story: $STATE/worker.log)."
"$BIN/python" run_workflow.py RELEASE-NOV-23-INITIAL
status=$?

[ -t 1 ] || exit "$status"
# On a terminal: leave the release to look at, and the worker to run more, until Ctrl+C.
if [ -n "${UI:-}" ]; then
  # The link on a line of its own: it fits 80 columns and is whole to copy.
  echo "The Web UI stays up; press Ctrl+C to stop the server and the worker:"
  echo "  $UI/namespaces/${TEMPORAL_NAMESPACE:-default}/workflows/RELEASE-NOV-23-INITIAL"
else
  echo "The worker stays up to run more releases; press Ctrl+C to stop it."
fi
trap 'echo " Stopping what make demo started."; exit "$status"' INT TERM HUP
wait
