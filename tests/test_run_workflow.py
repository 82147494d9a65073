"""What run_workflow.py, the starter, does with what it is given (issue 11): its argument parsing
refuses a blank key, a lone --by, options that do not go together, and names or reasons that a
terminal would obey or that run too long, and still parses every command that makes sense; a
refusal is exit status 2 and one line on stderr, before anything is started; and what the server
answers, a result or a failure, is printed escaped. Argument handling is tested by calling it,
what a user sees by running the script."""

import asyncio
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

import run_workflow
from bad_input import KEY, tampered
from processes import (
    PROJECT_DIR,
    QUICK_TIMEOUT,
    assert_one_line_without_traceback,
    run_starter,
    terminal_env,
)
from shared import Outcome, ReleaseResult


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line on stderr with which the starter's argument parsing refuses argv."""
    with pytest.raises(SystemExit) as exit_:
        run_workflow.parse_args(argv)
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert_one_line_without_traceback(stderr)
    return stderr


# --- Issue 11, item 1: blank keys, and options that do not go together -------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--approve", "", "--by", "me"],
        ["--status", ""],
        ["--reject", " ", "--by", "x", "--reason", "y"],
        ["--cancel", ""],
        [""],
        ["--by", "me"],
    ],
)
def test_a_blank_key_or_a_lone_by_is_refused_not_taken_for_the_default_release(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    stderr = refused(argv, capsys)
    assert stderr.startswith("run_workflow.py: ")
    assert "--help" in stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([KEY, "--list"], "not allowed with"),
        ([KEY, "--status", KEY], "not allowed with"),
        (["--list", "--envs"], "not allowed with"),
        (["--history", "--cancel", KEY], "not allowed with"),
        (["--status", KEY, "--approve", KEY, "--by", "me"], "not allowed with"),
        (["--approve", KEY, "--reject", KEY, "--by", "me"], "not allowed with"),
        (["--gate", "PROD"], "--gate goes with --approve or --reject"),
        (["--cancel", KEY, "--gate", "PROD"], "--gate goes with --approve or --reject"),
        (["--status", KEY, "--by", "me"], "--by goes with --approve or --reject"),
        ([KEY, "--reason", "why"], "--reason goes with --reject or --cancel"),
        (["--approve", KEY, "--by", "me", "--reason", "why"], "--reason goes with"),
    ],
)
def test_options_that_do_not_go_together_are_refused(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert says in refused(argv, capsys)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        [KEY],
        ["--list"],
        ["--status", KEY],
        ["--approve", KEY, "--gate", "PROD", "--by", "Ada Lovelace"],
        ["--reject", KEY, "--gate", "PROD", "--by", "Grace", "--reason", "load test first"],
        ["--cancel", KEY],
        ["--cancel", KEY, "--reason", "freeze"],
    ],
)
def test_commands_that_make_sense_still_parse(argv: list[str]) -> None:
    run_workflow.parse_args(argv)


async def test_a_blank_key_exits_2_before_anything_is_started(script_env: dict[str, str]) -> None:
    starter = await run_starter(script_env, "--approve", "", "--by", "me", timeout=QUICK_TIMEOUT)
    assert starter.code == 2
    assert_one_line_without_traceback(starter.stderr)
    assert "--approve" in starter.stderr
    assert "cannot reach" not in starter.stderr
    assert starter.stdout == ""


# --- Item 8: names and reasons, and text from the server or files ------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--by", "\x1b[31mEve"], "printable"),
        (["--by", "Eve\nApproved by: Ada"], "printable"),
        (["--by", "x" * 101], "at most 100"),
        (["--by", " "], "empty"),
        # Issue 21, item 2: names and reasons drawn as nothing.
        (["--by", "\u3164\u3164"], "invisible"),
        (["--by", "\u200b"], "invisible"),
        (["--reason", "\u2800"], "invisible"),
        (["--by", "\U0001d159\U0001d159"], "invisible"),
        (["--reason", "ok\rforged"], "printable"),
        (["--reason", "x" * 501], "at most 500"),
    ],
)
def test_names_and_reasons_are_printable_and_bounded(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stderr = refused(
        ["--reject", KEY, "--gate", "PROD", "--by", "Eve", "--reason", "r", *argv], capsys
    )
    assert says in stderr
    assert "\x1b" not in stderr and "\r" not in stderr


@pytest.mark.parametrize(
    ("argv", "replaced", "answer"),
    [
        (
            [KEY],
            "run_release",
            ReleaseResult(
                release_key=KEY, outcome=Outcome.REJECTED, detail="by \x1b[2JEve\nforged"
            ),
        ),
        (["--approve", KEY, "--gate", "PROD", "--by", "Ada"], "decide", "approved \x1b[31mby"),
        (
            ["--cancel", KEY],
            "cancel",
            ReleaseResult(release_key=KEY, outcome=Outcome.CANCELLED, detail="\x1b]0;title\x07"),
        ),
    ],
)
async def test_what_the_server_answers_is_printed_escaped(
    argv: list[str],
    replaced: str,
    answer: object,
    demo_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def answers(*_: Any) -> object:
        return answer

    async def connected() -> object:
        return object()

    monkeypatch.setattr(run_workflow, "connect", connected)
    monkeypatch.setattr(run_workflow, replaced, answers)
    await run_workflow.main(argv)
    assert not tampered(capsys.readouterr().out)


async def test_a_failure_from_the_server_is_one_escaped_line(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fails(*_: Any) -> str:
        raise run_workflow.StarterError(f"Release {KEY} failed: boom\n\x1b[31mforged line")

    async def connected() -> object:
        return object()

    monkeypatch.setattr(run_workflow, "connect", connected)
    monkeypatch.setattr(run_workflow, "run_release", fails)
    assert await run_workflow.main([KEY]) == 1
    stderr = capsys.readouterr().err
    assert_one_line_without_traceback(stderr)
    assert not tampered(stderr)


@pytest.mark.parametrize("command", ["--list", "--envs", "--history", "--schedules"])
async def test_output_into_a_pipe_closed_early_ends_quietly(
    command: str, env: WorkflowEnvironment, tmp_path: Path
) -> None:
    script_env = terminal_env(env.client.service_client.config.target_host, tmp_path)
    # `| head -0` closes the pipe before the starter writes: its next write fails (EPIPE).
    pipeline = f"{shlex.quote(sys.executable)} run_workflow.py {command} | head -0"
    shell = await asyncio.create_subprocess_exec(
        "bash",
        "-o",
        "pipefail",
        "-c",
        pipeline,
        cwd=PROJECT_DIR,
        env=script_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(shell.communicate(), QUICK_TIMEOUT)
    assert stderr.decode() == ""  # no BrokenPipeError traceback
    assert shell.returncode == 141  # 128 + SIGPIPE: as a tool killed by the closed pipe
