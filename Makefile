# The two commands: `make demo` (see a release run) and `make test` (prove it works).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo agents test lint format clean-state record-histories screenshots bench

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

# Starts a dev server (unless one answers on localhost:7233) and a worker, runs
# RELEASE-NOV-23-INITIAL and prints the result. In a terminal, what it started stays up (the Web UI
# on http://localhost:8233) until Ctrl+C; otherwise (CI) it is stopped at once.
demo: install
	bash scripts/demo.sh

# The orchestrator and a worker per environment, each with a demo root of its own under .agents/,
# in five tmux panes (or the five commands to run, without tmux): demos.md, "One worker per
# environment". Needs a Temporal server (make demo, or temporal server start-dev).
agents: install
	bash scripts/agents.sh

# Measure the demo on this machine and fill the tables of benchmarks/RESULTS.md (about ten
# minutes); the findings around them are written by hand. Starts its own dev servers and
# workers, with all state in temp folders. Not part of `make test`.
bench: install
	$(BIN)/python benchmarks/run.py

# Three pytest workers (pytest-xdist), each with its own dev server, a test file at a time: most
# tests wait on Temporal rather than compute, so on 2 cores three at once are still faster than
# two (measured back to back: 240 s against 310 s for the suite).
test: install lint
	$(BIN)/python -m pytest -n 3 --dist loadfile

# Re-record tests/histories/ (replayed by tests/test_replay.py) after a deliberate change to
# workflows.py: runs twenty-two releases on a throwaway dev server, and one in flight with the code
# from before the announcements (patches/; tests/test_versioning.py), a little over a minute.
record-histories: install
	$(BIN)/python scripts/record_histories.py

# Re-take the pictures in resources/ from a real run on a throwaway dev server, about a minute.
# Needs Chromium and its driver (apt-get install chromium chromium-driver); installs selenium,
# which only this uses, into .venv.
screenshots: install
	$(BIN)/python -m pip install --quiet selenium
	$(BIN)/python scripts/screenshots.py

# Style, format and types (mypy, configured in pyproject.toml), on the demo, tests, scripts, benchmarks.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Forget every release: remove artifacts, deployed files, the ledger and release records (in
# DEMO_ROOT if it is set, else in this folder).
clean-state:
	@cd "$${DEMO_ROOT:-.}" && { \
		find artifactory environments -type f ! -name .gitkeep -delete 2>/dev/null; \
		rm -rf database/ledger.jsonl database/notifications.jsonl database/releases .locks .agents \
		&& echo "Forgot every release in $${DEMO_ROOT:-this folder}."; }
