"""Bad input to the scripts (issue 11): blank keys, options that do not go together, names with
escape codes, tampered files, leaked secrets, quiet misconfiguration. Argument handling is
tested by calling it; what a user sees (exit status, one line on stderr) by running the
scripts."""

import json
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import connection
import run_worker
from bad_input import KEY
from connection import TemporalUnreachable
from processes import (
    QUICK_TIMEOUT,
    assert_one_line_without_traceback,
    run_script,
)
from shared import (
    ReleaseInput,
    shown,
)

SECRET = "sk-test-DO-NOT-PRINT-4242"
# Each breaks the toml on a line that holds the API key, where a parse error quotes the line.
BROKEN_PROFILES = {
    "syntax": f'[profile.default]\naddress = "localhost:7233"\napi_key = "{SECRET}" oops\n',
    "unterminated": f'[profile.default]\napi_key = "{SECRET}\nnamespace = "default"\n',
    "wrong type": f'[profile.default]\napi_key = "x"\ntls = "{SECRET}"\n',
}


# --- Item 8: names and reasons, and text from the server or files ------------------------------


def test_shown_escapes_what_a_terminal_would_obey() -> None:
    assert shown("é ok\x1b[2J\nnext\tx\x07\u200b") == ("é ok\\x1b[2J\\nnext\\tx\\x07\\u200b")


# --- Item 3: no secret in an error message -----------------------------------------------------


@pytest.mark.parametrize("profile", BROKEN_PROFILES.values(), ids=BROKEN_PROFILES.keys())
async def test_a_broken_profile_is_named_not_quoted(
    profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "temporal.toml"
    toml.write_text(profile)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(toml))
    with pytest.raises(TemporalUnreachable) as err:
        await connection.connect()
    message = str(err.value)
    assert SECRET not in message
    assert str(toml) in message and "line " in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize("script", ["run_worker.py", "run_workflow.py"])
async def test_neither_script_prints_the_api_key_of_a_broken_profile(
    script: str, script_env: dict[str, str], tmp_path: Path
) -> None:
    toml = tmp_path / "temporal.toml"
    toml.write_text(BROKEN_PROFILES["syntax"])
    environment = {**script_env, "TEMPORAL_CONFIG_FILE": str(toml)}
    del environment["TEMPORAL_ADDRESS"]  # the profile's address is the one in use
    finished = await run_script(script, environment, timeout=QUICK_TIMEOUT)
    assert finished.code == 1
    assert SECRET not in finished.stdout + finished.stderr
    assert_one_line_without_traceback(finished.stderr)
    assert f"{toml}, line 3, column" in finished.stderr


# --- Items 7 and 10: quiet misconfiguration ----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TEMPORAL_CONFIG_FILE", "/nonexistent/temporal.toml", "TEMPORAL_CONFIG_FILE"),
        ("TEMPORAL_ADDRESS", "", "unset it"),
        ("TEMPORAL_ADDRESS", " ", "unset it"),
        ("TEMPORAL_ADDRESS", "http://localhost:7233", "host:port"),
    ],
)
async def test_connection_settings_that_cannot_be_right_are_refused(
    name: str, value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(TemporalUnreachable) as err:
        await connection.connect()
    assert says in str(err.value)
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize(("script", "args"), [("run_worker.py", ()), ("run_workflow.py", (KEY,))])
async def test_an_unknown_namespace_is_one_line_before_the_worker_is_ready(
    env: WorkflowEnvironment, script_env: dict[str, str], script: str, args: tuple[str, ...]
) -> None:
    address = env.client.service_client.config.target_host
    environment = {**script_env, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "nope"}
    finished = await run_script(script, environment, *args, timeout=QUICK_TIMEOUT)
    assert finished.code == 1
    assert run_worker.READY_LINE not in finished.stdout
    assert_one_line_without_traceback(finished.stderr)
    assert "namespace 'nope'" in finished.stderr
    assert "TEMPORAL_NAMESPACE" in finished.stderr


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
