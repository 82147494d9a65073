"""What a user runs: run_worker.py and run_workflow.py as real processes, against the session's
dev server. Each test has its own DEMO_ROOT and task queue; the release key is the workflow ID,
so a test that starts a release makes sure no run of it is left open on the shared server."""

import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from processes import (
    ALL_ENVS,
    QUICK_TIMEOUT,
    RELEASE_TIMEOUT,
    STOP_TIMEOUT,
    Finished,
    Running,
    assert_one_line_without_traceback,
    environments_table,
    files_under,
    finish_release,
    holding,
    run_command,
    run_script,
    run_starter,
    running,
    running_worker,
    starter_at,
    temporal_cli,
    terminal_env,
    wait_for_output,
)
from release_client import STATUS_SECONDS
from shared import ReleaseInput
from workflows import ReleaseWorkflow

RELEASE_KEYS = (
    "RELEASE-NOV-23-INITIAL",
    "RELEASE-NOV-23-HOTFIX-STAGE",
    "RELEASE-DEC-2023-BUGFIXES-PROD",
    "RELEASE-JAN-24-ALPHA-DEV",
    "RELEASE-JAN-24-ALPHA-QC",
    "RELEASE-JAN-24-ALPHA-PROD",
    "RELEASE-FEB-24-BETA",
)
# The one release with an approval gate (before PROD).
BETA = "RELEASE-FEB-24-BETA"


@pytest.fixture
def script_env(env: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    """The environment of a user's terminal: this session's server, a fresh demo root, a task
    queue of this test's own, no pacing and no injected failures."""
    demo_root = tmp_path / "demo"
    demo_root.mkdir()
    return terminal_env(env.client.service_client.config.target_host, demo_root)


@pytest.fixture
def refused_address() -> Iterator[str]:
    """An address where nothing listens: a port bound (so no one else takes it) but not
    listening, so connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@asynccontextmanager
async def no_run_left_open(env: WorkflowEnvironment, key: str) -> AsyncIterator[None]:
    """On the way out, whatever happened, no run of release key is left open on the session's
    server (the release key is the workflow ID, and the server is shared)."""
    try:
        yield
    finally:
        await finish_release(env.client, key)


async def test_worker_then_starter_runs_the_release_and_exits_0_every_time(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-NOV-23-INITIAL"
    async with no_run_left_open(env, key):
        async with running_worker(script_env) as worker:
            assert f"Worker connected to {script_env['TEMPORAL_ADDRESS']}" in worker.text
            assert f"task queue {script_env['DEMO_TASK_QUEUE']!r}" in worker.text
            assert "Web UI: http" in worker.text

            # A full release per run; the exit status must survive interpreter exit each time
            # (sdk-python issue 300 turns a success into 134 or 139 now and then).
            for attempt in range(6):
                starter = await run_starter(script_env, key)
                print(f"run {attempt + 1}: exit {starter.code} in {starter.seconds:.1f} s")
                assert starter.code == 0, starter.stderr
                assert f"Result: Release {key}: SUCCESS" in starter.stdout
                assert "Traceback" not in starter.stderr
                assert environments_table(starter.stdout) == holding(("1.0",) * 3, *ALL_ENVS)
            assert "Traceback" not in worker.text
        # The Web UI shows what the release promotes, and where, with the release itself.
        started = await env.client.get_workflow_handle(key).describe()
        assert await started.static_summary() == (
            "promote frontend 1.0, sbstore 1.0, backendforfrontend 1.0 to DEV -> TEST -> QC -> PROD"
        )


async def test_unknown_key_exits_1_at_once_and_touches_nothing(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    demo_root = Path(script_env["DEMO_ROOT"])
    async with no_run_left_open(env, "RELEASE-NOPE"):
        for _ in range(5):
            starter = await run_starter(script_env, "RELEASE-NOPE", timeout=QUICK_TIMEOUT)
            print(f"unknown key: exit {starter.code} in {starter.seconds:.2f} s")
            assert starter.code == 1
            assert starter.seconds < 5
            assert_one_line_without_traceback(starter.stderr)
            assert "'RELEASE-NOPE'" in starter.stderr
            assert "RELEASE-NOV-23-INITIAL" in starter.stderr
            assert starter.stdout == ""
            assert files_under(demo_root) == []


async def test_list_prints_every_release(script_env: dict[str, str]) -> None:
    starter = await run_starter(script_env, "--list", timeout=QUICK_TIMEOUT)
    assert starter.code == 0, starter.stderr
    first_words = [line.split()[0] for line in starter.stdout.splitlines() if line.strip()]
    assert [word for word in first_words if word.startswith("RELEASE-")] == list(RELEASE_KEYS)
    assert starter.stderr == ""


async def test_out_of_order_promotion_exits_1_with_its_reason(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-DEC-2023-BUGFIXES-PROD"
    demo_root = Path(script_env["DEMO_ROOT"])
    async with no_run_left_open(env, key):
        async with running_worker(script_env) as worker:
            starter = await run_starter(script_env, key)
    assert starter.code == 1
    assert_one_line_without_traceback(starter.stderr)
    assert f"Release {key} failed" in starter.stderr
    assert "QC holds frontend nothing, not 1.1" in starter.stderr
    assert "RELEASE-NOV-23-HOTFIX-STAGE" in starter.stderr
    assert "Traceback" not in worker.text, worker.text
    assert files_under(demo_root / "environments") == []
    assert files_under(demo_root / "artifactory") == []


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("DEMO_FAILURES", "often", "off, rarely, sometimes, alot"),
        ("DEMO_STEP_SECONDS", "soon", "from 0 to 60"),
    ],
)
async def test_worker_refuses_a_bad_setting_at_start(
    script_env: dict[str, str], name: str, value: str, valid: str
) -> None:
    worker = await run_script("run_worker.py", {**script_env, name: value}, timeout=QUICK_TIMEOUT)
    assert worker.code == 2
    assert worker.seconds < 5
    assert worker.stdout == ""
    assert_one_line_without_traceback(worker.stderr)
    assert f"{name}={value!r}" in worker.stderr
    assert valid in worker.stderr


@pytest.mark.parametrize(
    ("script", "args"), [("run_worker.py", ()), ("run_workflow.py", ("RELEASE-NOV-23-INITIAL",))]
)
async def test_scripts_without_a_server_exit_1_with_a_hint(
    script_env: dict[str, str], refused_address: str, script: str, args: tuple[str, ...]
) -> None:
    finished = await run_script(
        script, {**script_env, "TEMPORAL_ADDRESS": refused_address}, *args, timeout=QUICK_TIMEOUT
    )
    assert finished.code == 1
    assert_one_line_without_traceback(finished.stderr)
    assert refused_address in finished.stderr
    assert "temporal server start-dev" in finished.stderr
    assert files_under(Path(script_env["DEMO_ROOT"])) == []


async def ctrl_c(worker: Running) -> float:
    """Ctrl+C the worker and wait for it to exit; return how long it took."""
    interrupted = time.monotonic()
    worker.process.send_signal(signal.SIGINT)
    await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT)
    return time.monotonic() - interrupted


def assert_stopped_cleanly(worker: Running, seconds: float, when: str) -> None:
    """The worker, Ctrl+C'ed, exited 0 within 5 s without a traceback (check it once its
    running block has ended: its output is read to the end then)."""
    print(f"worker stopped {when} in {seconds:.1f} s")
    assert worker.process.returncode == 0
    # Steps in flight get GRACEFUL_SHUTDOWN (3 s) to finish; then the worker is gone.
    assert seconds < 5
    assert "Worker stopped." in worker.text
    assert "Traceback" not in worker.text
    # Said once, in the project's words, not also in the SDK's ("Beginning worker shutdown").
    assert [line for line in worker.text.splitlines() if "shutdown" in line.lower()] == []
    assert worker.text.count("Stopping the worker: steps in flight get 3 s to finish") == 1


async def test_ctrl_c_stops_an_idle_worker_cleanly(script_env: dict[str, str]) -> None:
    async with running_worker(script_env) as worker:
        seconds = await ctrl_c(worker)
    assert_stopped_cleanly(worker, seconds, "idle")


async def test_ctrl_c_mid_release_and_the_next_worker_finishes_it(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-NOV-23-HOTFIX-STAGE"
    paced = {**script_env, "DEMO_STEP_SECONDS": "0.2"}
    async with no_run_left_open(env, key):
        async with running_worker(paced) as first:
            starter = asyncio.create_task(run_starter(paced, key))
            await wait_for_output(first, f"{key}: promoting to TEST", RELEASE_TIMEOUT)
            seconds = await ctrl_c(first)
        assert_stopped_cleanly(first, seconds, "mid-release")
        assert not starter.done()

        async with running_worker(paced) as second:
            done = await asyncio.wait_for(starter, RELEASE_TIMEOUT)
    assert done.code == 0, done.stderr
    assert f"Result: Release {key}: SUCCESS" in done.stdout
    assert environments_table(done.stdout) == holding(("1.1", "1.7", "1.7"), "DEV", "TEST", "QC")
    assert f"{key}: SUCCESS" not in first.text
    assert f"{key}: SUCCESS" in second.text
    assert "Traceback" not in first.text + second.text


async def test_ctrl_c_on_the_starter_leaves_the_release_running(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-JAN-24-ALPHA-QC"
    async with no_run_left_open(env, key):
        # No worker: the release waits in Temporal, and so does the starter.
        async with running("run_workflow.py", script_env, key, ready="Started release") as starter:
            starter.process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(starter.process.wait(), STOP_TIMEOUT)
        description = await env.client.get_workflow_handle(key).describe()
    assert code == 130
    assert "Stopped waiting" in starter.text
    assert "Traceback" not in starter.text
    assert description.status == WorkflowExecutionStatus.RUNNING


async def test_second_starter_attaches_to_the_running_release(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-JAN-24-ALPHA-DEV"
    paced = {**script_env, "DEMO_STEP_SECONDS": "0.5"}
    async with no_run_left_open(env, key), running_worker(paced):
        first, second = await asyncio.gather(run_starter(paced, key), run_starter(paced, key))
    for starter in (first, second):
        assert starter.code == 0, starter.stderr
        assert f"Result: Release {key}: SUCCESS" in starter.stdout
        assert "Traceback" not in starter.stderr
    said = sorted(
        "started" if "Started release" in s.stdout else "attached" for s in (first, second)
    )
    assert said == ["attached", "started"]
    attached = first if "already running" in first.stdout else second
    assert f"Release {key} is already running: waiting for it." in attached.stdout
    runs = [
        execution.run_id
        async for execution in env.client.list_workflows(
            f'WorkflowId = "{key}" AND WorkflowType = "ReleaseWorkflow"'
        )
    ]
    assert runs == [(await env.client.get_workflow_handle(key).describe()).run_id]


@asynccontextmanager
async def beta_waiting_before_prod(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> AsyncIterator[tuple[asyncio.Task[Finished], Finished]]:
    """RELEASE-FEB-24-BETA run by a starter in the background, once `--status` says it waits for
    approval before PROD: yields the starter and that status. No run of it is left open."""
    async with (
        no_run_left_open(env, BETA),
        starter_at(script_env, BETA, "waiting for approval before PROD") as waiting,
    ):
        yield waiting


async def test_a_person_approves_or_rejects_a_waiting_release_from_the_command_line(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = BETA
    async with beta_waiting_before_prod(env, script_env) as (starter, status):
        assert "frontend            done  done  done  waiting for approval" in status.stdout
        # The watching starter asks every STATUS_SECONDS: let it see the gate before it closes.
        await asyncio.sleep(2 * STATUS_SECONDS)

        nameless = await run_starter(
            script_env, "--approve", key, "--gate", "PROD", timeout=QUICK_TIMEOUT
        )
        assert nameless.code == 1
        assert_one_line_without_traceback(nameless.stderr)
        assert "--by NAME" in nameless.stderr

        reject = ("--reject", key, "--gate", "PROD", "--by", "Grace", "--reason", "load test first")
        rejected = await run_starter(script_env, *reject)
        assert rejected.code == 0, rejected.stderr
        assert rejected.stdout.strip() == f"Release {key}: PROD rejected by Grace"
        finished = await starter

        late = await run_starter(script_env, "--approve", key, "--gate", "PROD", "--by", "Ada")

    # The starter followed the release as plain lines (its output is not a terminal).
    assert "  ... waiting for approval before PROD" in finished.stdout
    assert "  ... PROD frontend: waiting for approval" in finished.stdout
    assert f"Result: Release {key}: REJECTED by Grace: load test first" in finished.stdout
    assert finished.code == 1
    assert late.code == 1
    assert_one_line_without_traceback(late.stderr)
    assert (
        f"Release {key} is not running: it ended REJECTED by Grace: load test first" in late.stderr
    )
    await history_and_envs_say_prod_was_rejected(script_env, key)


async def history_and_envs_say_prod_was_rejected(script_env: dict[str, str], key: str) -> None:
    """--history names who rejected release key at PROD; --envs shows PROD holds nothing."""
    history = await run_starter(script_env, "--history", timeout=QUICK_TIMEOUT)
    assert history.code == 0
    assert key in history.stdout and "PROD rejected by Grace" in history.stdout
    envs = await run_starter(script_env, "--envs", timeout=QUICK_TIMEOUT)
    assert environments_table(envs.stdout)["PROD"] == {
        "frontend": "-",
        "sbstore": "-",
        "backendforfrontend": "-",
    }


async def test_commands_answer_within_seconds_when_no_worker_runs(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-JAN-24-ALPHA-QC"
    # The release exists on the server, but no worker polls its task queue.
    await env.client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=key),
        id=key,
        task_queue=script_env["DEMO_TASK_QUEUE"],
    )
    commands = {
        "status": ("--status", key),
        "approve": ("--approve", key, "--gate", "TEST", "--by", "Ada"),
        "reject": ("--reject", key, "--gate", "TEST", "--by", "Ada", "--reason", "no"),
        "cancel": ("--cancel", key),
    }
    async with no_run_left_open(env, key):
        answers = await asyncio.gather(
            *(run_starter(script_env, *args, timeout=QUICK_TIMEOUT) for args in commands.values())
        )
    for name, answer in zip(commands, answers, strict=True):
        print(f"--{name} with no worker: exit {answer.code} in {answer.seconds:.1f} s")
        assert answer.code == 1, name
        assert answer.seconds < 8, name  # a hang detector: the answer takes about 4 s
        assert_one_line_without_traceback(answer.stderr)
        assert "python run_worker.py" in answer.stderr, name
    assert "cancel of release RELEASE-JAN-24-ALPHA-QC requested" in answers[-1].stderr


async def test_the_starter_says_while_no_worker_runs_and_goes_on_once_one_does(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-JAN-24-ALPHA-DEV"
    waiting = f"waiting for a worker: none answers on task queue '{script_env['DEMO_TASK_QUEUE']}'"
    async with no_run_left_open(env, key):
        async with running("run_workflow.py", script_env, key, ready=waiting) as starter:
            async with running_worker(script_env):
                code = await asyncio.wait_for(starter.process.wait(), RELEASE_TIMEOUT)
    assert code == 0, starter.text
    assert f"Result: Release {key}: SUCCESS" in starter.text
    assert "To approve" not in starter.text


async def test_a_workflow_of_another_type_under_a_release_s_id_is_not_taken_for_it(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-JAN-24-ALPHA-PROD"
    # Started by hand with no input, on a queue nobody polls: it stays Running.
    await env.client.start_workflow("SomethingElse", id=key, task_queue="nobody")
    async with no_run_left_open(env, key):
        answers = await asyncio.gather(
            run_starter(script_env, key, timeout=QUICK_TIMEOUT),
            run_starter(script_env, "--status", key, timeout=QUICK_TIMEOUT),
            run_starter(script_env, "--cancel", key, timeout=QUICK_TIMEOUT),
        )
    for answer in answers:
        assert answer.code == 1, answer.stderr
        assert_one_line_without_traceback(answer.stderr)
        assert f"Workflow {key} is no release" in answer.stderr


async def test_cancel_from_the_command_line_ends_the_release_cancelled(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = BETA
    async with beta_waiting_before_prod(env, script_env) as (starter, status):
        assert f"--approve {key} --gate PROD --by NAME" in status.stdout
        cancel = await run_starter(
            script_env, "--cancel", key, "--reason", "freeze", timeout=QUICK_TIMEOUT
        )
        waiting = await starter
        status = await run_starter(script_env, "--status", key, timeout=QUICK_TIMEOUT)
    assert cancel.code == 0, cancel.stderr
    assert f"Result: Release {key}: CANCELLED" in cancel.stdout
    assert waiting.code == 1
    assert f"Result: Release {key}: CANCELLED" in waiting.stdout
    assert "Traceback" not in waiting.stderr + cancel.stderr
    assert status.stdout.startswith(f"{key}: CANCELLED: freeze")
    assert environments_table(waiting.stdout) == holding(("1.3", "1.9", "1.9"), "DEV", "TEST", "QC")


async def test_the_starter_follows_a_release_reset_from_the_command_line(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-NOV-23-INITIAL"
    paced = {**script_env, "DEMO_STEP_SECONDS": "0.3"}
    address = env.client.service_client.config.target_host
    async with no_run_left_open(env, key):
        async with starter_at(paced, key, "deploying to TEST") as (starter, _):
            # As demos.md, "Reset a release", tells a person to.
            reset = await run_command(
                temporal_cli(),
                "workflow",
                "reset",
                "--workflow-id",
                key,
                "--type",
                "FirstWorkflowTask",
                "--reason",
                "replay the release",
                "--address",
                address,
            )
            assert reset.code == 0, reset.stderr
            finished = await starter
    assert finished.code == 0, finished.stderr
    assert f"Release {key} was reset: following its new run" in finished.stdout
    assert f"Result: Release {key}: SUCCESS" in finished.stdout
    assert environments_table(finished.stdout) == holding(("1.0", "1.0", "1.0"), *ALL_ENVS)
