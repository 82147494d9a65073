"""What a user sees of the SDK core's own log lines (issue 12, item 2): a server that goes away
is one line when the connection is lost and one when it is back; any other warning or error of
the core is one plain line, never the core's raw format. With real processes and a real server
restart: test_durability.py, test_release_rides_out_a_restart_of_the_server."""

import asyncio
import logging
import time
import uuid
from types import SimpleNamespace

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import connection
from outages import CANNOT_ANSWER, CONNECTION_LOG, STUCK, OutageReporter
from processes import QUICK_TIMEOUT, RAW_CORE_LOG

UNAVAILABLE = (
    'Status { code: Unavailable, message: "tcp connect error", source: Some(tonic::transport::'
    'Error(Transport, ConnectError("tcp connect error", Os { code: 111, kind: ConnectionRefused '
    "})) }"
)


def core_record(message: str, level: int = logging.WARNING, **fields: str) -> logging.LogRecord:
    """A record as the SDK forwards a core log line: the core's entry in temporal_log."""
    record = logging.LogRecord(CONNECTION_LOG.name, level, "(sdk-core)", 0, message, (), None)
    record.temporal_log = SimpleNamespace(message=message, fields=fields)
    return record


def told(reporter: OutageReporter, *records: logging.LogRecord) -> list[str]:
    """The lines a user sees of records."""
    return [record.getMessage() for record in records if reporter.filter(record)]


async def until_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    deadline = time.monotonic() + QUICK_TIMEOUT
    while not any(text in record.getMessage() for record in caplog.records):
        assert time.monotonic() < deadline, f"no {text!r} logged: {caplog.text}"
        await asyncio.sleep(0.05)


async def test_an_outage_is_one_line_when_lost_and_one_when_back(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=CONNECTION_LOG.name)
    reporter = OutageReporter()
    reporter.watch(client)  # the session's server answers: the connection is back at once
    address = client.service_client.config.target_host
    retries = [
        core_record(f"gRPC call {call} retried {attempt} times", error=UNAVAILABLE)
        for attempt in range(5, 17)
        for call in ("poll_workflow_task_queue", "query_workflow")
    ]
    assert told(reporter, *retries) == [f"Lost the connection to Temporal at {address}; retrying."]
    # While it is lost, the core's other warnings are the outage's tail; its errors are news.
    assert told(reporter, core_record("Network error while completing activity")) == []
    assert told(reporter, core_record("Worker panicked", logging.ERROR)) == [
        "Temporal SDK: Worker panicked"
    ]

    await until_logged(caplog, f"Connection to Temporal at {address} is back.")
    # Just after, the last retries that failed and the tail of what the server no longer expects.
    late = core_record("gRPC call query_workflow retried 7 times", error=UNAVAILABLE)
    assert told(reporter, late, core_record("Task not found when completing")) == []


def test_a_core_warning_outside_an_outage_is_one_plain_line() -> None:
    # A stack trace that mentions a transport does not make an outage.
    stack = "".join(f'  File "asyncio/transports.py", line {n}\n' for n in range(100))
    lines = told(
        OutageReporter(),
        core_record("Failing workflow task", run_id="01a2", failure=f"Failure {{ {stack} }}"),
    )
    assert len(lines) == 1
    assert lines[0].startswith("Temporal SDK: Failing workflow task (run_id=01a2 failure=Failure")
    assert "\n" not in lines[0] and len(lines[0]) < 300


# Outside the sandbox, which would re-import this module and the test helpers it imports.
@workflow.defn(name="BrokenWorkflow", sandboxed=False)
class BrokenWorkflow:
    @workflow.run
    async def run(self) -> None:
        # Not an ApplicationError: the workflow task fails, and the core warns that it does.
        raise RuntimeError("a bug in the workflow")


async def test_a_real_core_warning_reaches_python_logging_not_the_terminal(
    env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    client = await connection.connect()
    queue = f"test-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[BrokenWorkflow]):
        handle = await client.start_workflow(BrokenWorkflow.run, id=queue, task_queue=queue)
        try:
            await until_logged(caplog, "Temporal SDK: Failing workflow task")
        finally:
            await handle.terminate(reason="test cleanup")
    core_lines = [r.getMessage() for r in caplog.records if r.name == CONNECTION_LOG.name]
    assert core_lines and all("\n" not in line for line in core_lines), core_lines
    assert not any(mark in line for line in core_lines for mark in RAW_CORE_LOG), core_lines
    terminal = capfd.readouterr()
    assert not any(mark in terminal.out + terminal.err for mark in RAW_CORE_LOG), terminal


# How the core records a non-determinism error (tests/test_versioning.py sees the real ones).
NONDETERMINISM_FAILURE = (
    'Failure { failure: Some(Failure { message: "[TMPRL1100] Nondeterminism error: Activity '
    "machine does not handle this event: HistoryEvent(id: 49, StartChildWorkflowExecutionInitiated)"
    '", source: "", stack_trace: "", encoded_attributes: None, cause: None, failure_info: Some(App'
)
NONDETERMINISM_ERROR = NONDETERMINISM_FAILURE.split('"')[1]


def test_a_non_determinism_error_is_told_once_in_words() -> None:
    """Once per run for a failed workflow task, once for the queries, whatever the core repeats:
    what happened, that nothing is lost, what to do; never the core's record of it."""
    reporter = OutageReporter()  # watches no client: the run is not named
    query = "Failing legacy query request"
    queries = [
        core_record(query, failure=NONDETERMINISM_FAILURE),
        core_record(query, failure=NONDETERMINISM_FAILURE, run_id="01a2"),
        core_record(query, failure=NONDETERMINISM_FAILURE),
    ]
    tasks = [core_record("Failing workflow task", run_id="01a2", failure=NONDETERMINISM_FAILURE)]
    lines = told(reporter, *queries, *tasks, *tasks)
    assert lines == [
        CANNOT_ANSWER % NONDETERMINISM_ERROR,
        STUCK % ("The workflow of run 01a2", NONDETERMINISM_ERROR),
    ]
    assert "is stuck, not lost" in lines[1] and "Stop this worker" in lines[1]
    assert not any("Failure {" in line for line in lines)
    another = core_record("Failing workflow task", run_id="01b3", failure=NONDETERMINISM_FAILURE)
    assert told(reporter, another) == [STUCK % ("The workflow of run 01b3", NONDETERMINISM_ERROR)]


async def until_listed(client: Client, query: str) -> None:
    """Wait (within QUICK_TIMEOUT) until the server's visibility lists a workflow for query."""
    deadline = time.monotonic() + QUICK_TIMEOUT
    while not [found async for found in client.list_workflows(query, limit=1)]:
        assert time.monotonic() < deadline, f"nothing listed for {query}"
        await asyncio.sleep(0.1)


async def test_a_stuck_workflow_is_named_by_its_workflow_id(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=CONNECTION_LOG.name)
    reporter = OutageReporter()
    reporter.watch(client)
    queue = f"test-{uuid.uuid4()}"  # no worker: the workflow only needs a run ID
    handle = await client.start_workflow("RELEASE-STUCK", id=queue, task_queue=queue)
    try:
        run_id = handle.result_run_id or ""
        # As a workflow whose task keeps failing has been: listed by the server's visibility,
        # which on a busy server follows a start by a moment.
        await until_listed(client, f"RunId = '{run_id}'")
        failed = core_record("Failing workflow task", run_id=run_id, failure=NONDETERMINISM_FAILURE)
        assert told(reporter, failed) == []  # told once the server has named it
        await until_logged(caplog, f"{queue} is stuck, not lost")
    finally:
        await handle.terminate(reason="test cleanup")
