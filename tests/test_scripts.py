"""What a user runs: run_worker.py and run_workflow.py as real processes, against the session's
dev server. Each test has its own DEMO_ROOT and task queue; the release key is the workflow ID,
so a test that starts a release makes sure no run of it is left open on the shared server."""

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

PROJECT_DIR = Path(__file__).resolve().parents[1]
RELEASE_KEYS = (
    "RELEASE-NOV-23-INITIAL",
    "RELEASE-NOV-23-HOTFIX-STAGE",
    "RELEASE-DEC-2023-BUGFIXES-PROD",
    "RELEASE-JAN-24-ALPHA-DEV",
    "RELEASE-JAN-24-ALPHA-QC",
    "RELEASE-JAN-24-ALPHA-PROD",
)
COMPONENTS = ("frontend", "sbstore", "backendforfrontend")
ALL_ENVS = ("DEV", "TEST", "QC", "PROD")
READY_LINE = "Press Ctrl+C to stop."
READY_TIMEOUT = 30.0
RELEASE_TIMEOUT = 60.0
QUICK_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


@dataclass
class Finished:
    """How one run of a script ended."""

    code: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Running:
    """A script still running; output holds what it has printed so far, stderr included."""

    process: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.output)


@pytest.fixture
def script_env(env: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    """The environment of a user's terminal: this session's server, a fresh demo root, a task
    queue of this test's own, no pacing and no injected failures."""
    demo_root = tmp_path / "demo"
    demo_root.mkdir()
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "DEMO_ROOT": str(demo_root),
        "DEMO_TASK_QUEUE": f"scripts-{uuid.uuid4()}",
        "DEMO_STEP_SECONDS": "0",
        "DEMO_FAILURES": "off",
    }


@pytest.fixture
def refused_address() -> Iterator[str]:
    """An address where nothing listens: a port bound (so no one else takes it) but not
    listening, so connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _like_a_terminal() -> None:
    # Ctrl+C reaches a foreground process; undo a SIGINT ignored by whoever started pytest.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def spawn(
    script: str, script_env: dict[str, str], *args: str, merge_stderr: bool = False
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        script,
        *args,
        cwd=PROJECT_DIR,
        env=script_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        preexec_fn=_like_a_terminal,
    )


async def run_script(
    script: str, script_env: dict[str, str], *args: str, timeout: float = RELEASE_TIMEOUT
) -> Finished:
    """Run `python SCRIPT ARGS` to its end (or fail the test after timeout seconds)."""
    started = time.monotonic()
    process = await spawn(script, script_env, *args)
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{script} {' '.join(args)} did not end within {timeout} s")
    return Finished(
        process.returncode, stdout.decode(), stderr.decode(), time.monotonic() - started
    )


async def run_starter(
    script_env: dict[str, str], *args: str, timeout: float = RELEASE_TIMEOUT
) -> Finished:
    return await run_script("run_workflow.py", script_env, *args, timeout=timeout)


async def stop(process: asyncio.subprocess.Process) -> int:
    """Ctrl+C the process; kill it if it has not stopped after STOP_TIMEOUT."""
    if process.returncode is None:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
    return process.returncode


async def wait_for_output(proc: Running, text: str, timeout: float) -> None:
    """Wait until the process has printed text; fail the test if it exits or times out first."""
    deadline = time.monotonic() + timeout
    while text not in proc.text:
        if proc.process.returncode is not None or time.monotonic() > deadline:
            await asyncio.sleep(0.1)  # let the reader catch the last lines
            pytest.fail(
                f"no {text!r} within {timeout} s (exit status {proc.process.returncode}):\n"
                f"{proc.text}"
            )
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(
    script: str, script_env: dict[str, str], *args: str, ready: str
) -> AsyncIterator[Running]:
    """`python SCRIPT ARGS`, once it has printed ready; Ctrl+C'ed (or killed) on the way out.
    Its output is read as it comes, so a chatty process never blocks on a full pipe."""
    process = await spawn(script, script_env, *args, merge_stderr=True)
    proc = Running(process)

    async def read() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            proc.output.append(line.decode())

    reader = asyncio.create_task(read())
    try:
        await wait_for_output(proc, ready, READY_TIMEOUT)
        yield proc
    finally:
        await stop(process)
        with suppress(TimeoutError):
            await asyncio.wait_for(reader, STOP_TIMEOUT)
        reader.cancel()


def running_worker(script_env: dict[str, str]) -> AbstractAsyncContextManager[Running]:
    return running("run_worker.py", script_env, ready=READY_LINE)


async def finish_release(client: Client, key: str) -> None:
    """Terminate a run of release `key` left open, so no later starter attaches to it."""
    with suppress(Exception):
        await client.get_workflow_handle(key).terminate(reason="test cleanup")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def environments_table(stdout: str) -> dict[str, dict[str, str]]:
    """The starter's "Environments now hold" table, as {env: {component: version}}."""
    lines = stdout.split("Environments now hold:\n", 1)[1].splitlines()
    header, *rows = (line.split() for line in lines if line.strip())
    assert header[0] == "ENV"
    return {
        row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows if row[0] in ALL_ENVS
    }


def holding(versions: tuple[str, str, str], *envs: str) -> dict[str, dict[str, str]]:
    """The table when envs hold these versions of the components and the others hold none
    ("-")."""
    return {
        env: dict(zip(COMPONENTS, versions if env in envs else ("-",) * 3, strict=True))
        for env in ALL_ENVS
    }


def assert_one_line_without_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


async def test_worker_then_starter_runs_the_release_and_exits_0_every_time(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-NOV-23-INITIAL"
    try:
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
    finally:
        await finish_release(env.client, key)


async def test_unknown_key_exits_1_at_once_and_touches_nothing(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    demo_root = Path(script_env["DEMO_ROOT"])
    try:
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
    finally:
        await finish_release(env.client, "RELEASE-NOPE")


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
    try:
        async with running_worker(script_env) as worker:
            starter = await run_starter(script_env, key)
    finally:
        await finish_release(env.client, key)
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


async def test_ctrl_c_stops_an_idle_worker_cleanly(script_env: dict[str, str]) -> None:
    async with running_worker(script_env) as worker:
        started = time.monotonic()
        worker.process.send_signal(signal.SIGINT)
        await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT)
        seconds = time.monotonic() - started
    print(f"worker stopped in {seconds:.1f} s")
    assert worker.process.returncode == 0
    assert seconds < 5
    assert "Worker stopped." in worker.text
    assert "Traceback" not in worker.text


async def test_ctrl_c_mid_release_and_the_next_worker_finishes_it(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-NOV-23-HOTFIX-STAGE"
    paced = {**script_env, "DEMO_STEP_SECONDS": "0.2"}
    try:
        async with running_worker(paced) as first:
            starter = asyncio.create_task(run_starter(paced, key))
            await wait_for_output(first, f"{key}: promoting to TEST", RELEASE_TIMEOUT)
            first.process.send_signal(signal.SIGINT)
            await asyncio.wait_for(first.process.wait(), STOP_TIMEOUT)
        assert first.process.returncode == 0
        assert "Worker stopped." in first.text
        assert not starter.done()

        async with running_worker(paced) as second:
            done = await asyncio.wait_for(starter, RELEASE_TIMEOUT)
    finally:
        await finish_release(env.client, key)
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
    try:
        # No worker: the release waits in Temporal, and so does the starter.
        async with running("run_workflow.py", script_env, key, ready="Started release") as starter:
            starter.process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(starter.process.wait(), STOP_TIMEOUT)
        description = await env.client.get_workflow_handle(key).describe()
    finally:
        await finish_release(env.client, key)
    assert code == 130
    assert "Stopped waiting" in starter.text
    assert "Traceback" not in starter.text
    assert description.status == WorkflowExecutionStatus.RUNNING


async def test_second_starter_attaches_to_the_running_release(
    env: WorkflowEnvironment, script_env: dict[str, str]
) -> None:
    key = "RELEASE-JAN-24-ALPHA-DEV"
    paced = {**script_env, "DEMO_STEP_SECONDS": "0.5"}
    try:
        async with running_worker(paced):
            first, second = await asyncio.gather(run_starter(paced, key), run_starter(paced, key))
    finally:
        await finish_release(env.client, key)
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
