"""What connection.py refuses, and how it says so (issue 11): a temporal.toml profile that does
not parse is named (file, line, column) and never quoted, so neither script prints the API key on
the broken line; TEMPORAL_* settings that cannot be right are refused in one line; and a
namespace the server does not know is one line on stderr, before the worker says it is ready."""

from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

import connection
import run_worker
from bad_input import KEY
from connection import TemporalUnreachable
from processes import QUICK_TIMEOUT, assert_one_line_without_traceback, run_script

SECRET = "sk-test-DO-NOT-PRINT-4242"
# Each breaks the toml on a line that holds the API key, where a parse error quotes the line.
BROKEN_PROFILES = {
    "syntax": f'[profile.default]\naddress = "localhost:7233"\napi_key = "{SECRET}" oops\n',
    "unterminated": f'[profile.default]\napi_key = "{SECRET}\nnamespace = "default"\n',
    "wrong type": f'[profile.default]\napi_key = "x"\ntls = "{SECRET}"\n',
}


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
