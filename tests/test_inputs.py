"""Bad input to the scripts (issue 11): blank keys, options that do not go together, names with
escape codes, tampered files, leaked secrets, quiet misconfiguration. Argument handling is
tested by calling it; what a user sees (exit status, one line on stderr) by running the
scripts."""

import json
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

import run_worker
from bad_input import KEY
from processes import (
    QUICK_TIMEOUT,
    assert_one_line_without_traceback,
    run_script,
)
from shared import (
    ReleaseInput,
    shown,
)

# --- Item 8: names and reasons, and text from the server or files ------------------------------


def test_shown_escapes_what_a_terminal_would_obey() -> None:
    assert shown("é ok\x1b[2J\nnext\tx\x07\u200b") == ("é ok\\x1b[2J\\nnext\\tx\\x07\\u200b")


# --- Items 7 and 10: quiet misconfiguration ----------------------------------------------------


@pytest.mark.parametrize(
    ("script", "args", "settings", "says"),
    [
        ("run_worker.py", (), {"DEMO_TASK_QUEUE": ""}, "DEMO_TASK_QUEUE"),
        ("run_workflow.py", (KEY,), {"DEMO_TASK_QUEUE": " "}, "DEMO_TASK_QUEUE"),
        ("run_worker.py", (), {"DEMO_UNHEALTHY": "nosuch@DEV"}, "'nosuch'"),
        ("run_worker.py", (), {"DEMO_ROOT": "/nonexistent/demo"}, "DEMO_ROOT"),
        ("run_workflow.py", ("--envs",), {"DEMO_ROOT": "/nonexistent/demo"}, "DEMO_ROOT"),
        ("run_workflow.py", ("--history",), {"DEMO_ROOT": "/nonexistent/demo"}, "DEMO_ROOT"),
    ],
)
async def test_demo_settings_that_cannot_be_right_are_refused_at_start(
    script_env: dict[str, str],
    script: str,
    args: tuple[str, ...],
    settings: dict[str, str],
    says: str,
) -> None:
    finished = await run_script(script, {**script_env, **settings}, *args, timeout=QUICK_TIMEOUT)
    assert finished.code == 2
    assert finished.stdout == ""
    assert_one_line_without_traceback(finished.stderr)
    assert says in finished.stderr


def test_an_unhealthy_component_the_catalog_knows_is_accepted(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_UNHEALTHY", "frontend@QC")
    run_worker.check_settings()


def test_a_user_s_release_input_carries_no_test_only_field() -> None:
    # What the Web UI shows as the release's input: the key and the demo root, nothing empty.
    started = ReleaseInput(release_key="RELEASE-NOV-23-INITIAL", demo_root="/srv/demo")
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([started])
    assert json.loads(payload.data) == {
        "release_key": "RELEASE-NOV-23-INITIAL",
        "demo_root": "/srv/demo",
    }
