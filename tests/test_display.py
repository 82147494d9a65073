"""What a person sees in a terminal (display.py): the starter's live progress grid, run for
real inside tmux at 80, 120 and 200 columns, against the session's dev server and a real worker;
the grid's layout at 80 columns, from display.format_progress; and the catalog, environments and
history tables at 80 columns. The tables and the grid escape what the files and the server say
(a tampered record or catalog, a status or an error with escape codes), and the catalog listing
reads the catalog once."""

import asyncio
import json
import logging
import shlex
import shutil
import sys
import time
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

import display
import release_client
from bad_input import KEY, tampered
from catalog import Catalog, load_catalog
from processes import (
    PROJECT_DIR,
    QUICK_TIMEOUT,
    RELEASE_TIMEOUT,
    finish_release,
    running_worker,
    terminal_env,
)
from shared import Cell, CellState, Environment, ReleaseProgress, Soak

COMPONENTS = ("frontend", "sbstore", "backendforfrontend")
TMUX = shutil.which("tmux")
DONE_LINE = "starter exit status"

needs_tmux = pytest.mark.skipif(
    TMUX is None, reason="tmux is not installed (apt-get install tmux): the grid is not tested"
)


async def _tmux(socket: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a tmux command against the tmux server on socket (one of this test's own)."""
    assert TMUX is not None
    process = await asyncio.create_subprocess_exec(
        TMUX,
        "-S",
        str(socket),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), QUICK_TIMEOUT)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


def _release_of_its_own(demo_root: Path) -> str:
    """A release like RELEASE-JAN-24-ALPHA-DEV (one environment, three components: a few
    seconds) under a key of its own, added to a copy of the catalog in demo_root: its runs are
    no other test's business (the workflow ID is the release key)."""
    catalog = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    alpha = next(r for r in catalog["releases"] if r["key"] == "RELEASE-JAN-24-ALPHA-DEV")
    key = f"RELEASE-GRID-{uuid.uuid4().hex[:8].upper()}"
    catalog["releases"].append({**alpha, "key": key})
    (demo_root / "database").mkdir()
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))
    return key


async def _starter_in_tmux(
    tmp_path: Path, script_env: dict[str, str], key: str, width: int, height: int
) -> tuple[str, str, str]:
    """Run the starter with key (a release key, or options) in a tmux terminal of width x height
    until it exits; return the screen (plain, then with its colours) and all the terminal
    printed, wrapped lines joined."""
    socket = tmp_path / "tmux.sock"
    config = tmp_path / "tmux.conf"
    config.write_text("set -g status off\nset -g default-shell /bin/sh\n")
    # A terminal's environment: no COLUMNS or LINES to hide its real size.
    terminal = {k: v for k, v in script_env.items() if k not in ("COLUMNS", "LINES")}
    starter = f"{shlex.quote(sys.executable)} run_workflow.py {key}"
    session = f"grid-{width}x{height}-{uuid.uuid4().hex[:8]}"
    try:
        await _tmux(
            socket,
            *("-f", str(config), "new-session", "-d", "-s", session),
            *("-x", str(width), "-y", str(height), "-c", str(PROJECT_DIR)),
            f"{starter}; echo {DONE_LINE} $?; sleep 600",
            *(";", "pipe-pane", "-t", session, f"cat > {shlex.quote(str(tmp_path / 'raw'))}"),
            env=terminal,
        )
        deadline = time.monotonic() + RELEASE_TIMEOUT
        while DONE_LINE not in (screen := await _tmux(socket, "capture-pane", "-p", "-J")):
            if time.monotonic() > deadline:
                pytest.fail(f"the starter did not end within {RELEASE_TIMEOUT} s:\n{screen}")
            await asyncio.sleep(0.2)
        coloured = await _tmux(socket, "capture-pane", "-p", "-J", "-e")
        everything = await _tmux(socket, "capture-pane", "-p", "-J", "-S", "-")
    finally:
        with suppress(AssertionError):  # no server to kill if it did not start
            await _tmux(socket, "kill-server")
    return screen, coloured, everything


def _grid_lines(text: str, key: str) -> list[str]:
    """The lines of text that belong to a progress grid: its status line, header and rows."""
    return [
        line
        for line in text.splitlines()
        if line.startswith(f"{key}: ")
        or line.split()[:1] == ["COMPONENT"]
        or line.split()[:1] in [[c] for c in COMPONENTS]
    ]


async def _starter_against_a_worker(
    env: WorkflowEnvironment, tmp_path: Path, width: int, height: int
) -> tuple[str, str, str, str]:
    """Run a release of its own (its key first) with a real worker, its starter in a tmux
    terminal of width x height; the rest as _starter_in_tmux returns it."""
    demo_root = tmp_path / "demo"
    demo_root.mkdir()
    key = _release_of_its_own(demo_root)
    script_env = terminal_env(
        env.client.service_client.config.target_host,
        demo_root,
        DEMO_FAILURES="sometimes",
        DEMO_STEP_SECONDS="0.2",
    )
    try:
        async with running_worker(script_env):
            screen, coloured, everything = await _starter_in_tmux(
                tmp_path, script_env, key, width, height
            )
    finally:
        await finish_release(env.client, key)
    return key, screen, coloured, everything


@needs_tmux
@pytest.mark.parametrize(("width", "height"), [(80, 24), (120, 40), (200, 50)])
async def test_the_live_grid_fits_the_terminal_and_stays_on_screen_with_the_result(
    env: WorkflowEnvironment, tmp_path: Path, width: int, height: int
) -> None:
    key, screen, coloured, everything = await _starter_against_a_worker(
        env, tmp_path, width, height
    )
    print(everything)

    # Nothing the terminal had to wrap, but the Web UI's link (a link is kept whole; it has a
    # line of its own, which fits 80 columns for the catalog's keys).
    too_long = [
        line
        for line in everything.splitlines()
        if len(line.rstrip()) > width and not line.startswith("  http")
    ]
    assert too_long == []
    # The grid was redrawn in place: one grid in all the terminal printed, no line of one glued
    # to a line of another, one row per component.
    grid = _grid_lines(everything, key)
    assert [line.split()[0] for line in grid] == [f"{key}:", "COMPONENT", *COMPONENTS], grid
    assert all(line.count("COMPONENT") + line.count(f"{key}:") <= 1 for line in grid), grid
    # The final grid, then the result, left on screen.
    assert _grid_lines(screen, key) == grid
    assert grid[0] == f"{key}: SUCCESS"
    assert grid[1].split() == ["COMPONENT", "DEV"]
    assert [line.split() for line in grid[2:]] == [[c, "done"] for c in COMPONENTS]
    lines = screen.splitlines()
    result = lines.index(f"Result: Release {key}: SUCCESS")
    assert lines.index(grid[-1]) < result < lines.index(f"{DONE_LINE} 0")
    assert "\x1b[32mdone" in coloured  # done is green
    # It was a live grid: drawn more than once, each time over the one before.
    assert (tmp_path / "raw").read_text(errors="replace").count("COMPONENT") >= 2


def _progress(**cells: Cell) -> ReleaseProgress:
    """RELEASE-NOV-23-INITIAL's four environments, with the DEV cells given, the rest pending."""
    environments = list(Environment)
    grid = {env: {c: Cell() for c in COMPONENTS} for env in environments}
    grid[Environment.DEV] |= cells
    return ReleaseProgress(
        release_key="RELEASE-NOV-23-INITIAL",
        status="deploying to DEV",
        environments=environments,
        components=list(COMPONENTS),
        cells=grid,
    )


def test_at_60_columns_the_grid_keeps_its_columns_from_one_refresh_to_the_next() -> None:
    running = Cell(state=CellState.RUNNING, activity="deploy_artifact")
    retried = Cell(state=CellState.RETRYING, activity="verify_deploy", attempt=1, error="flaky")
    refreshes = [
        _progress(frontend=running, sbstore=running, backendforfrontend=running),
        _progress(frontend=retried, sbstore=Cell(state=CellState.DONE)),
        _progress(backendforfrontend=Cell(state=CellState.FAILED, error="x" * 50)),
    ]
    grids = [display.format_progress(progress, width=60)[1:5] for progress in refreshes]
    assert all(len(line) <= 60 for grid in grids for line in grid), grids
    headers = {grid[0] for grid in grids}
    assert headers == {"  COMPONENT           DEV          TEST     QC       PROD"}, headers
    assert [grid[3].split()[0] for grid in grids] == ["backendforfrontend"] * 3  # whole


def test_at_80_columns_long_cells_are_cut_and_a_retried_step_s_error_is_shown_in_full() -> None:
    error = "Simulated failure while verifying frontend 1.0 in DEV: " + "the checksum differs " * 5
    progress = _progress(
        frontend=Cell(state=CellState.RETRYING, activity="verify_deploy", attempt=3, error=error),
        sbstore=Cell(
            state=CellState.RUNNING, activity="build_artifact + fetch_artifact + fetch_config"
        ),
        backendforfrontend=Cell(state=CellState.FAILED, error="x" * 200),
    )
    lines = display.format_progress(progress, width=80)
    assert all(len(line) <= 80 for line in lines), lines
    header, frontend, sbstore, backendforfrontend = lines[1:5]
    assert header.split() == ["COMPONENT", "DEV", "TEST", "QC", "PROD"]
    # The widest column gives way; the others keep their words.
    assert frontend.split() == [
        "frontend",
        "verify_deploy,",
        "attempt",
        "3",
        "failed",
        *3 * ["pending"],
    ]
    assert sbstore.split()[-4].endswith("…") and sbstore.split()[-3:] == 3 * ["pending"]
    assert backendforfrontend.split()[-4].endswith("x…")
    below = " ".join(line.strip() for line in lines[5:])
    assert below == f"DEV frontend: verify_deploy, attempt 3 failed: {error.strip()}"


def test_an_open_gate_shows_the_command_that_approves_it() -> None:
    progress = _progress().model_copy(
        update={"status": "waiting for approval before TEST", "gate": Environment.TEST}
    )
    lines = display.format_progress(progress, width=80)
    assert (
        "  python run_workflow.py --approve RELEASE-NOV-23-INITIAL --gate TEST --by NAME" in lines
    )


def test_a_gate_that_expires_and_a_soak_count_down_their_seconds() -> None:
    in_10_s = (datetime.now(UTC) + timedelta(seconds=10)).isoformat()
    gate = _progress().model_copy(
        update={"gate": Environment.PROD, "gate_expires": in_10_s, "status": "waiting"}
    )
    assert "  The gate expires in 10 s: then REJECTED." in display.format_progress(gate, 80)

    base = _progress()
    cells = {env: dict(row) for env, row in base.cells.items()}
    cells[Environment.QC] = dict.fromkeys(base.components, Cell(state=CellState.SOAKING))
    soak = Soak(environment=Environment.QC, ends=in_10_s)
    soaking = base.model_copy(update={"soak": soak, "cells": cells})
    lines = display.format_progress(soaking, width=100)
    skip = "python run_workflow.py --skip-soak RELEASE-NOV-23-INITIAL --by NAME"
    assert lines[-2:] == ["  QC soaks for 10 s more. To end the soak now, type:", f"  {skip}"]


def test_a_line_wraps_between_words_and_keeps_a_version_change_whole() -> None:
    result = (
        "Result: Release RELEASE-NOV-23-HOTFIX-STAGE: ROLLED BACK frontend in TEST (1.1 -> 1.0)"
    )
    lines = display.wrapped(result, 80).splitlines()
    assert lines == [
        "Result: Release RELEASE-NOV-23-HOTFIX-STAGE: ROLLED BACK frontend in TEST",
        "(1.1 -> 1.0)",
    ]
    link = "  http://localhost:8233/namespaces/default/workflows/RELEASE-DEC-2023-BUGFIXES-PROD"
    assert display.wrapped(link, 80) == link  # a word longer than the line stays whole


def test_a_command_to_copy_stays_on_one_line_in_a_terminal_and_in_the_worker_s_log() -> None:
    """A command broken over lines would run as several when pasted: it keeps a line of its own
    (the terminal folds it if it must, and copies it whole)."""
    switch = (
        "temporal worker deployment set-current-version --deployment-name release-orchestration "
        "--build-id in-place --yes"
    )
    said = f"Version in-place is not current: new releases start on v1. To switch: {switch}"
    assert switch in display.wrapped(said, 80).splitlines()
    approve = "python run_workflow.py --approve RELEASE-FEB-24-BETA --gate PROD --by NAME"
    said = f"RELEASE-FEB-24-BETA: waiting for approval before PROD: {approve}"
    record = logging.LogRecord("worker", logging.INFO, "", 0, said, (), None)
    logged = display.TerminalLog(lambda: 60).format(record).splitlines()
    assert approve in [line.strip() for line in logged], logged


def test_a_grid_that_cannot_be_known_says_why_and_since_when_and_offers_nothing() -> None:
    in_10_s = (datetime.now(UTC) + timedelta(seconds=10)).isoformat()
    soak = Soak(environment=Environment.QC, ends=in_10_s)
    waiting = _progress().model_copy(
        update={"gate": Environment.PROD, "gate_expires": in_10_s, "soak": soak}
    )
    why = "waiting for a worker: none answers on task queue 'q' (python run_worker.py)"
    lines = display.format_progress(release_client._stale(waiting, why, "at 09:00:00 UTC"), 80)
    assert " ".join(lines[:3]).startswith(f"RELEASE-NOV-23-INITIAL: {why}. The grid is as it")
    assert "09:00:00 UTC." in " ".join(lines[:3])
    offered = ("--approve", "--skip-soak", "expires", "soaks")  # nothing can act on it now
    assert not [line for line in lines if any(word in line for word in offered)]


def _catalog_and_a_record(demo_root: Path) -> list[str]:
    """The project's catalog in demo_root, and the record of a rejected release run; the keys of
    the catalog's releases."""
    catalog = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    records = demo_root / "database" / "releases"
    records.mkdir(parents=True)
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))
    record = {
        "release_key": "RELEASE-FEB-24-BETA",
        "started": "2026-11-29T10:00:00.123456",
        "finished": "2026-11-29T10:01:00.123456",
        "decisions": [
            {"environment": "TEST", "approved": True, "by": "Ada Lovelace"},
            {"environment": "PROD", "approved": False, "by": "Grace"},
        ],
        "result": "Release RELEASE-FEB-24-BETA: REJECTED by Grace: load test first",
    }
    (records / "RELEASE-FEB-24-BETA-run.json").write_text(json.dumps(record))
    return [release["key"] for release in catalog["releases"]]


def test_the_catalog_environments_and_history_fit_80_columns(demo_root: Path) -> None:
    keys = _catalog_and_a_record(demo_root)
    tables = {
        "catalog": display.format_catalog(width=80),
        "environments": display.format_environments(width=80),
        "history": display.format_history(width=80),
    }
    for name, table in tables.items():
        assert all(len(line) <= 80 for line in table.splitlines()), f"{name}:\n{table}"
    # A release key stays whole, to be read and copied; the other cells wrap under their own.
    starts = [line.split()[0] for line in tables["catalog"].splitlines() if line[:1].strip()]
    assert starts == ["RELEASE", *keys]
    assert tables["history"].splitlines()[1].startswith("RELEASE-FEB-24-BETA  2026-11-29")


@needs_tmux
async def test_in_a_terminal_of_80_columns_each_table_keeps_a_row_to_a_line(
    tmp_path: Path, script_env: dict[str, str]
) -> None:
    demo_root = Path(script_env["DEMO_ROOT"])
    keys = _catalog_and_a_record(demo_root)
    refused = {
        "release_key": "RELEASE-JAN-24-ALPHA-QC",
        "started": "2026-11-30T10:00:00+00:00",
        "finished": "2026-11-30T10:00:01+00:00",
        "decisions": [],
        "result": "Release RELEASE-JAN-24-ALPHA-QC: FAILED: TEST is fed by DEV, which does not "
        "hold frontend 1.2, sbstore 1.8 (it holds nothing): run RELEASE-JAN-24-ALPHA-DEV first",
    }
    (demo_root / "database" / "releases" / "refused.json").write_text(json.dumps(refused))
    commands = f"--list; {shlex.quote(sys.executable)} run_workflow.py --history"
    _, _, printed = await _starter_in_tmux(tmp_path, script_env, commands, 80, 24)
    lines = printed.splitlines()
    assert all(len(line) <= 80 for line in lines), printed  # nothing the terminal wrapped
    listing = lines[: 1 + len(keys)]
    assert [line.split()[0] for line in listing] == ["RELEASE", *keys]
    beta = listing[-1].split()
    assert beta == ["RELEASE-FEB-24-BETA", "1.3", "1.9", "1.9", "DEV", "to", "PROD"], printed
    # The history's least needed columns give way, and a long result is cut, not folded.
    history = lines[1 + len(keys) : 1 + len(keys) + 4]
    assert history[0].split() == ["RELEASE", "FINISHED", "RESULT"]
    assert history[1].startswith("RELEASE-JAN-24-ALPHA-QC  2026-11-30 10:00  FAILED: TEST is fed")
    assert history[1].endswith("…") and len(history[1]) == 80
    assert history[2].endswith("2026-11-29 10:01  REJECTED by Grace: load test first")
    assert history[3].startswith("(Cut to fit the terminal: add | cat")


def test_the_tables_keep_a_row_to_a_line_when_the_output_is_not_a_terminal(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(display, "terminal_width", lambda: None)
    keys = _catalog_and_a_record(demo_root)
    assert len(display.format_catalog().splitlines()) == 1 + len(keys)
    history = display.format_history().splitlines()
    assert history[0].split() == ["RELEASE", "FINISHED", "RESULT", "DECISIONS", "STARTED"]
    assert history[1].split("  ")[0] == "RELEASE-FEB-24-BETA"
    # Every column in full, times too.
    assert history[1].endswith(
        "  2026-11-29 10:01:00 UTC  REJECTED by Grace: load test first  "
        "TEST approved by Ada Lovelace, PROD rejected by Grace  2026-11-29 10:00:00 UTC"
    )


@pytest.fixture
def tampered_record(demo_root: Path) -> None:
    """A release record whose name and result carry escape codes and a line break."""
    records = demo_root / "database" / "releases"
    records.mkdir(parents=True)
    record = {
        "release_key": KEY,
        "started": "2026-11-29T10:00:00",
        "finished": "2026-11-29T10:01:00",
        "decisions": [{"environment": "PROD", "approved": False, "by": "\x1b[2JEve\nforged"}],
        "result": f"Release {KEY}: REJECTED by Eve: \x1b]0;pwned\x07",
    }
    (records / f"{KEY}-run.json").write_text(json.dumps(record))


@pytest.fixture
def tampered_catalog(demo_root: Path) -> None:
    """The catalog, with a release whose key carries an escape code and a line break."""
    catalog = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    catalog["releases"].append({"key": "EVIL\x1b[2J\nforged"})
    (demo_root / "database").mkdir(exist_ok=True)
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))


@pytest.mark.usefixtures("tampered_record")
def test_history_escapes_what_the_records_say() -> None:
    history = display.format_history()
    assert not tampered(history)
    assert len(history.splitlines()) == 2
    assert "\\x1b[2JEve\\nforged" in history


@pytest.mark.usefixtures("tampered_catalog")
def test_the_catalog_listing_escapes_a_tampered_key() -> None:
    listing = display.format_catalog()
    assert not tampered(listing)
    assert "EVIL\\x1b[2J\\nforged" in listing


@pytest.mark.usefixtures("tampered_record", "tampered_catalog")
def test_at_80_columns_the_tables_fit_and_still_escape_what_the_files_say() -> None:
    for table in (display.format_history(width=80), display.format_catalog(width=80)):
        assert not tampered(table)
        assert all(len(line) <= 80 for line in table.splitlines()), table
    assert "EVIL\\x1b[2J\\nforged" in display.format_catalog(width=80)


def test_the_catalog_listing_reads_the_catalog_once(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []

    def counted() -> Catalog:
        reads.append(1)
        return load_catalog()

    monkeypatch.setattr(display, "load_catalog", counted)
    display.format_catalog()
    assert len(reads) == 1


def test_the_grid_escapes_what_the_server_says() -> None:
    progress = ReleaseProgress(
        release_key=KEY,
        status="REJECTED by \x1b[31mEve\nforged",
        environments=[Environment.DEV],
        components=["frontend"],
        cells={
            Environment.DEV: {"frontend": Cell(state=CellState.FAILED, error="boom\x1b[2J\nline")}
        },
    )
    lines = display.format_progress(progress)
    assert not tampered("\n".join(lines))
    assert len(lines) == 3
