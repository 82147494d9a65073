"""run_worker.py: its check of its DEMO_* settings at start (it accepts a DEMO_UNHEALTHY
component the catalog knows; one the catalog does not know is refused: tests/test_utils.py, with
the other DEMO_* settings), its --help, and its log on a terminal of 80 columns."""

import logging
from pathlib import Path

import pytest

import run_worker
from display import LOG_INDENT, TerminalLog
from processes import QUICK_TIMEOUT, run_script

KEY = "RELEASE-NOV-23-HOTFIX-STAGE"


def test_an_unhealthy_component_the_catalog_knows_is_accepted(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_UNHEALTHY", "frontend@QC")
    run_worker.check_settings()


async def test_help_says_what_the_worker_does_and_starts_none(script_env: dict[str, str]) -> None:
    shown = await run_script("run_worker.py", script_env, "--help", timeout=QUICK_TIMEOUT)
    assert shown.code == 0 and shown.stderr == ""
    assert shown.stdout.startswith("usage: run_worker.py")
    assert "runs the release workflows and their steps" in shown.stdout
    refused = await run_script("run_worker.py", script_env, "--nope", timeout=QUICK_TIMEOUT)
    assert refused.code == 2 and "unrecognized arguments: --nope" in refused.stderr


def _logged(formatter: logging.Formatter, message: str) -> list[str]:
    record = logging.LogRecord("release_management", logging.INFO, "", 0, message, None, None)
    record.created = 1764934876.0  # 11:41:16 UTC
    return formatter.format(record).splitlines()


def test_on_a_terminal_the_log_keeps_to_its_width_and_names_a_release_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    log = TerminalLog(lambda: 80)
    lines = [
        *_logged(
            log, f"{KEY} QC backendforfrontend: fetch artifact 1.7: found in environments/TEST"
        ),
        *_logged(log, f"{KEY} QC sbstore: deploy 1.7: deployed"),
        *_logged(log, "Lost the connection to Temporal"),
        *_logged(log, f"{KEY}: recorded in {KEY}-01a24b84-0ad8-7d50-b787-a7c5ac48896b.json"),
        *_logged(log, f"Release {KEY}: SUCCESS"),
    ]
    assert [line[8:] if line[:2].isdigit() else line for line in lines] == [
        KEY,
        " QC backendforfrontend: fetch artifact 1.7: found in environments/TEST",
        " QC sbstore: deploy 1.7: deployed",
        " Lost the connection to Temporal",
        KEY,  # again: a line about something else came between
        " recorded in",
        f"{LOG_INDENT}{KEY}-01a24b84-0ad8-7d50-b787-a7c5ac48896b.json",  # a name stays whole
        f" Release {KEY}: SUCCESS",
    ]
    assert all(len(line) <= 80 for line in lines)
