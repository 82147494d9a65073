"""Outages in one line: the SDK core's log lines, told once when the connection to Temporal is
lost and once when it is back, instead of a few raw lines a second; and a workflow that this
worker's code cannot replay, told once in words.
"""

import asyncio
import logging
import re
import sys
import threading
import time
from contextlib import suppress
from datetime import timedelta
from functools import cache
from typing import Any

from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError

from shared import shown

# The SDK core (Rust) logs every call it keeps retrying to a server that went away (a restart,
# say), a few lines a second, in its own raw format. Its log lines come to this logger instead,
# through OutageReporter: one line when the connection is lost, one when it is back.
CONNECTION_LOG = logging.getLogger("temporal.connection")
# What a lost connection looks like in a core log line's message or error: the gRPC code, or
# the transport's error (a stack trace in other fields may mention anything).
_OUTAGE = re.compile(
    r"code: Unavailable|tonic::transport|transport error|connect error|connection (refused|reset)",
    re.IGNORECASE,
)
# Once the server is back, the core warns about work the restarted server no longer expects (a
# task completed that it has rescheduled, say): the outage's tail, not news, for this long.
SETTLE_SECONDS = 5.0
# While the connection is lost, the reporter asks the server whether it serves this often.
PROBE_SECONDS = 0.5
# Any other core warning or error is shown in one line, its details cut to this many characters
# (a failed workflow task's carry a stack trace, which the SDK's Python logger shows in full).
DETAIL_CHARACTERS = 200
# The SDK's code for a non-determinism error: the worker's workflow code does not replay the
# history a workflow already has (a step added without workflow.patched, say). The core fails
# the workflow's task, or a query, with it; the failure's message, in its record's fields:
NONDETERMINISM = "[TMPRL1100]"
_NONDETERMINISM = re.compile(r'message: "(' + re.escape(NONDETERMINISM) + r'[^"]*)"')
# What a user reads instead, once per workflow run (and once per query failure): what happened,
# that nothing is lost, and what to do.
STUCK = (
    "%s is stuck, not lost: its workflow task failed with a non-determinism error, because this "
    "worker's workflow code does not replay what the workflow did before (%s). It stays Running. "
    "Stop this worker and start one whose code replays it: the code from before the change, or "
    'the change behind workflow.patched (demos.md, "Change the plan while releases are in '
    'flight").'
)
CANNOT_ANSWER = (
    "A query failed with a non-determinism error: this worker's workflow code does not replay "
    "what a workflow did before (%s). That workflow is stuck, not lost, until a worker runs code "
    'that replays it (demos.md, "Change the plan while releases are in flight").'
)


class OutageReporter(logging.Filter):
    """Filters the SDK core's log records into what a user needs: one line when the connection
    to Temporal is lost, one when it is back, and any other warning or error as one plain line.
    Records come from the core's own thread; the probe runs on the watched client's loop."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._lost = False
        self._settled_at = 0.0  # time.time() from which core warnings are news again
        self._client: Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe: asyncio.Task[None] | None = None
        self._told: set[str] = set()  # the runs (or query failures) told stuck already
        self._naming: set[asyncio.Task[None]] = set()

    def watch(self, client: Client) -> None:
        """Tell outages of this client's connection (a script has one); call on its loop."""
        self._client = client
        self._loop = asyncio.get_running_loop()

    def filter(self, record: logging.LogRecord) -> bool:
        entry = getattr(record, "temporal_log", None)
        if entry is None:
            return True  # not the core's: the reporter's own lines
        detail = " ".join(f"{name}={value}" for name, value in entry.fields.items())
        if found := _NONDETERMINISM.search(str(entry.fields.get("failure", ""))):
            return self._first_of_stuck(record, entry.message, entry.fields.get("run_id"), found[1])
        if _OUTAGE.search(f"{entry.message} {entry.fields.get('error', '')}"):
            return self._first_of_outage(record)
        if record.levelno < logging.ERROR and (self._lost or time.time() < self._settled_at):
            return False
        if len(detail) > DETAIL_CHARACTERS:
            detail = f"{detail[:DETAIL_CHARACTERS]}..."
        record.msg = shown(f"Temporal SDK: {entry.message}" + (f" ({detail})" if detail else ""))
        record.args = ()
        return True

    def _first_of_outage(self, record: logging.LogRecord) -> bool:
        """Turn the outage's first record into its one line; drop the rest."""
        with self._lock:
            if self._lost or record.created < self._settled_at:
                return False
            self._lost = True
        record.msg, record.args = "Lost the connection to Temporal at %s; retrying.", (self._at,)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        if self._loop is not None:
            with suppress(RuntimeError):  # the loop has closed: the process is ending
                self._loop.call_soon_threadsafe(self._start_probe)
        return True

    def _first_of_stuck(
        self, record: logging.LogRecord, failing: str, run_id: object, error: str
    ) -> bool:
        """Tell a non-determinism error once per workflow run, or per query failure: a failed
        workflow task names its workflow once the server has said which it is."""
        task = failing.startswith("Failing workflow task")
        key = f"run {run_id}" if task and run_id else error
        with self._lock:
            if key in self._told:
                return False
            self._told.add(key)
        if not task:
            record.msg, record.args = CANNOT_ANSWER, (shown(error),)
            return True
        if run_id and self._loop is not None:
            with suppress(RuntimeError):  # the loop has closed: tell it here, unnamed
                self._loop.call_soon_threadsafe(self._start_naming, str(run_id), error)
                return False
        record.msg, record.args = STUCK, (f"The workflow of run {run_id}", shown(error))
        return True

    def _start_naming(self, run_id: str, error: str) -> None:
        naming = asyncio.ensure_future(self._tell_stuck(run_id, error))
        self._naming.add(naming)
        naming.add_done_callback(self._naming.discard)

    async def _tell_stuck(self, run_id: str, error: str) -> None:
        """Say that the workflow of run_id is stuck, by its workflow ID (a release key) if the
        server says it in time."""
        assert self._client is not None
        name = f"The workflow of run {run_id}"
        with suppress(RPCError):
            query = f"RunId = '{run_id}'"
            timeout = timedelta(seconds=2)
            async for found in self._client.list_workflows(query, limit=1, rpc_timeout=timeout):
                name = found.id
        CONNECTION_LOG.warning(STUCK, shown(name), shown(error))

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop of the client watched, once there is one."""
        return self._loop

    @property
    def _at(self) -> str:
        return self._client.service_client.config.target_host if self._client else "?"

    def _start_probe(self) -> None:
        self._probe = asyncio.ensure_future(self._until_back())

    async def _until_back(self) -> None:
        """Ask the server whether it serves until it does; then say so, once."""
        assert self._client is not None
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            with suppress(RPCError):
                if await self._client.service_client.check_health(timeout=timedelta(seconds=1)):
                    break
        with self._lock:
            self._lost = False
            self._settled_at = time.time() + SETTLE_SECONDS
        CONNECTION_LOG.info("Connection to Temporal at %s is back.", self._at)


OUTAGES = OutageReporter()


class _ToStderr(logging.StreamHandler):
    """Writes each line to sys.stderr as it is then: while the starter's live grid is drawn,
    that is the grid's, which prints the line above the grid (a stream kept from before would
    write over the grid, and the grid over the line). A line logged on the core's thread is
    written on the event loop's (the main thread), where the grid is drawn, not in between."""

    def emit(self, record: logging.LogRecord) -> None:
        loop = OUTAGES.loop
        if loop is not None and threading.current_thread() is not threading.main_thread():
            with suppress(RuntimeError):  # the loop has closed: written here
                loop.call_soon_threadsafe(super().emit, record)
                return
        super().emit(record)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass  # (StreamHandler sets it; it is always sys.stderr)


@cache
def sdk_runtime() -> Runtime:
    """The process's one SDK runtime, its core's log lines sent to CONNECTION_LOG. A script that
    set up no logging (the starter) gets them on stderr, as plain lines."""
    CONNECTION_LOG.addFilter(OUTAGES)
    CONNECTION_LOG.setLevel(logging.INFO)
    if not CONNECTION_LOG.hasHandlers():
        handler = _ToStderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        CONNECTION_LOG.addHandler(handler)
        CONNECTION_LOG.propagate = False
    forwarding = LogForwardingConfig(
        logger=CONNECTION_LOG,
        append_target_to_name=False,
        prepend_target_on_message=False,
        append_log_fields_to_message=False,
    )
    core_warnings = TelemetryFilter(core_level="WARN", other_level="ERROR")
    logging_config = LoggingConfig(filter=core_warnings, forwarding=forwarding)
    return Runtime(telemetry=TelemetryConfig(logging=logging_config))


# How the project starts a dev server (make demo, the tests, the recorders, the benchmarks): with
