#!/usr/bin/env bash
# `make agents`: the orchestrator and a worker for each environment, as real release systems run
# an agent per environment (demos.md, "One worker per environment"). Each has a demo root of its
# own under .agents/ (in DEMO_ROOT if set, else in the project folder): the orchestrator keeps the
# catalog's copy it reads and the release records, each environment worker only its
# environment's files and its own ledger; the artifact store, .agents/artifactory, is the one
# folder they share. Needs a Temporal server at TEMPORAL_ADDRESS (default localhost:7233).
# In tmux (installed, and not --print): one window, five panes. Else, or with --print: the five
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
  echo "Run each in a terminal of its own, in the project folder (the orchestrator first):"
  printf '  %s\n' "${commands[@]/#env /}"
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
tmux new-session -d -s agents -x 200 -y 50 -n workers "${commands[0]/#env /env$settings }"
for command in "${commands[@]:1}"; do
  tmux split-window -t agents:workers "${command/#env /env$settings }"
  tmux select-layout -t agents:workers tiled >/dev/null
done
echo "Five workers run in the tmux session 'agents' (tmux attach -t agents; Ctrl+B D detaches)."
echo "Start a release from here:"
echo "  $starter"
echo "Stop them all: tmux kill-session -t agents"
