#!/usr/bin/env bash
# `make agents`: the orchestrator and a worker for each environment, as real release systems run
# an agent per environment (demos.md, "One worker per environment"). Each has a demo root of its
# own under .agents/ (in DEMO_ROOT if set, else in the project folder): the orchestrator keeps the
# release records (and reads the project's catalog, or its root's own), each environment worker
# only its environment's files and its own ledger; the artifact store, .agents/artifactory, is
# the one folder they share. Needs a Temporal server at TEMPORAL_ADDRESS (localhost:7233).
# In tmux (installed, and not --print): one window, five panes, each a shell running one worker
# (Ctrl+C stops it; the up arrow and Enter start it again). Else, or with --print: the five
# commands, one per terminal.
set -uo pipefail
cd "$(dirname "$0")/.."
AGENTS=.agents # from the project folder, where every command below runs
[[ -n ${DEMO_ROOT:-} ]] && AGENTS=$(cd "$DEMO_ROOT" && pwd)/.agents
mkdir -p "$AGENTS"/{orchestrator,DEV,TEST,QC,PROD,artifactory}
STORE="DEMO_ARTIFACTORY=$AGENTS/artifactory"
PYTHON=.venv/bin/python

commands=("env DEMO_ROOT=$AGENTS/orchestrator DEMO_OWN_WORKERS=all $STORE $PYTHON run_worker.py --orchestrator")
for env in DEV TEST QC PROD; do
  commands+=("env DEMO_ROOT=$AGENTS/$env $STORE $PYTHON run_worker.py --env $env")
done
starter="DEMO_ROOT=$AGENTS/orchestrator DEMO_OWN_WORKERS=all python run_workflow.py"

if [[ ${1:-} == --print ]] || ! command -v tmux >/dev/null; then
  echo "Run each in a terminal of its own, in the project folder, orchestrator first:"
  for command in "${commands[@]}"; do
    command=${command/#env /}
    echo "  ${command/$PYTHON /python }"
  done
  echo "Then start a release from another one:"
  echo "  $starter"
  exit 0
fi
# A pane starts with tmux's environment, not this one's: pass on the settings of this terminal.
settings=""
for name in $(compgen -e | grep -E '^(TEMPORAL_|DEMO_)' | grep -vE '^DEMO_(ROOT|ARTIFACTORY|OWN_WORKERS)$'); do
  settings+=" $name=$(printf %q "${!name}")"
done
tmux kill-session -t agents 2>/dev/null
tmux new-session -d -s agents -x 200 -y 50 -n workers
for pane in 1 2 3 4; do
  tmux split-window -t agents:workers
  tmux select-layout -t agents:workers tiled >/dev/null
done
# Typed into each pane's shell, as a person would: Ctrl+C stops the worker, not the pane.
for pane in 0 1 2 3 4; do
  tmux send-keys -t "agents:workers.$pane" "${commands[$pane]/#env /env$settings }" Enter
done
echo "Five workers run in the tmux session 'agents': tmux attach -t agents"
echo "(Ctrl+B D detaches)."
echo "Start a release from here:"
echo "  $starter"
echo "Stop them all: tmux kill-session -t agents"
