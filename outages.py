"""What a user sees of the SDK core's log lines: a lost connection to Temporal is one line when it
is lost and one when it is back (not a few raw lines a second), a workflow this worker's code
cannot replay is told once in words, and any other core warning or error is one plain line."""

import asyncio
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from datetime import timedelta
from functools import cache
from typing import Any

from temporalio import runtime
from temporalio.client import Client
from temporalio.service import RPCError

from shared import shown

# The core's log lines come to this logger (sdk_runtime), filtered by OutageReporter.
CONNECTION_LOG = logging.getLogger("temporal.connection")
# A lost connection in a core line's message or error (a stack trace elsewhere may say anything).
_OUTAGE = re.compile(
    r"code: Unavailable|tonic::transport|transport error|connect error|connection (refused|reset)",
    re.IGNORECASE,
)
# Once the server is back, the core's warnings about work it forgot are the outage's tail this long.
SETTLE_SECONDS = 5.0
# While the connection is lost, the reporter asks the server whether it serves this often.
PROBE_SECONDS = 0.5
# Any other core line's details are cut to this many characters (a stack trace, say).
DETAIL_CHARACTERS = 200
# The SDK's code for a non-determinism error: the worker's code does not replay a history.
NONDETERMINISM = "[TMPRL1100]"
_NONDETERMINISM = re.compile(r'message: "(' + re.escape(NONDETERMINISM) + r'[^"]*)"')
# What a user reads instead, once per workflow run (and once per query failure).
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


def _say(record: logging.LogRecord, message: str, *args: object) -> bool:
    record.msg, record.args = message, args
    return True


class OutageReporter(logging.Filter):
    """Turns the core's log records into what a user reads (the module docstring). Records come
    on the core's own thread; what asks the server runs on the watched client's loop."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._lost = False
        self._settled_at = 0.0  # time.time() from which core warnings are news again
        self._client: Client | None = None
        self._at = "?"  # the watched client's server
        self.loop: asyncio.AbstractEventLoop | None = None
        self._told: set[str] = set()  # the runs (or query failures) told stuck already
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, client: Client) -> None:
        """Tell outages of this client's connection (a script has one); call on its loop."""
        self._client, self.loop = client, asyncio.get_running_loop()
        self._at = client.service_client.config.target_host

    def filter(self, record: logging.LogRecord) -> bool:
        entry = getattr(record, "temporal_log", None)
        if entry is None:
            return True  # not the core's: the reporter's own lines
        if found := _NONDETERMINISM.search(str(entry.fields.get("failure", ""))):
            return self._first_of_stuck(record, entry, found[1])
        if _OUTAGE.search(f"{entry.message} {entry.fields.get('error', '')}"):
            return self._first_of_outage(record)
        if record.levelno < logging.ERROR and (self._lost or time.time() < self._settled_at):
            return False
        detail = " ".join(f"{name}={value}" for name, value in entry.fields.items())
        if len(detail) > DETAIL_CHARACTERS:
            detail = f"{detail[:DETAIL_CHARACTERS]}..."
        told = f"Temporal SDK: {entry.message}" + (f" ({detail})" if detail else "")
        return _say(record, shown(told))

    def _first_of_outage(self, record: logging.LogRecord) -> bool:
        with self._lock:
            if self._lost or record.created < self._settled_at:
                return False
            self._lost = True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._soon(self._until_back)
        return _say(record, "Lost the connection to Temporal at %s; retrying.", self._at)

    def _first_of_stuck(self, record: logging.LogRecord, entry: Any, error: str) -> bool:
        """Once per workflow run, or per query failure; a run is told by its workflow ID once
        the server has said it (_tell_stuck)."""
        task = entry.message.startswith("Failing workflow task")
        run_id = entry.fields.get("run_id")
        key = f"run {run_id}" if task and run_id else error
        with self._lock:
            if key in self._told:
                return False
            self._told.add(key)
        if not task:
            return _say(record, CANNOT_ANSWER, shown(error))
        if run_id and self._soon(lambda: self._tell_stuck(str(run_id), error)):
            return False
        return _say(record, STUCK, f"The workflow of run {run_id}", shown(error))

    async def _tell_stuck(self, run_id: str, error: str) -> None:
        assert self._client is not None
        name = f"The workflow of run {run_id}"
        with suppress(RPCError):
            query = f"RunId = '{run_id}'"
            timeout = timedelta(seconds=2)
            async for found in self._client.list_workflows(query, limit=1, rpc_timeout=timeout):
                name = found.id
        CONNECTION_LOG.warning(STUCK, shown(name), shown(error))

    async def _until_back(self) -> None:
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

    def _soon(self, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Start work on the watched client's loop, from the core's thread; False if it cannot."""
        if self.loop is None:
            return False

        def start() -> None:
            task = asyncio.ensure_future(work())
            self._tasks.add(task)  # a task only the loop holds may be garbage collected
            task.add_done_callback(self._tasks.discard)

        with suppress(RuntimeError):  # the loop has closed: the process is ending
            self.loop.call_soon_threadsafe(start)
            return True
        return False


OUTAGES = OutageReporter()


class _ToStderr(logging.StreamHandler):
    """Writes each line to sys.stderr as it is then (while the starter's live grid is drawn, the
    grid's, which prints it above the grid), on the loop's thread, where the grid is drawn."""

    def emit(self, record: logging.LogRecord) -> None:
        loop = OUTAGES.loop
        if loop is not None and threading.current_thread() is not threading.main_thread():
            with suppress(RuntimeError):  # the loop has closed: written here
                loop.call_soon_threadsafe(self._write, record)
                return
        self._write(record)

    def _write(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


@cache
def sdk_runtime() -> runtime.Runtime:
    """The process's one SDK runtime, its core's log lines sent to CONNECTION_LOG. A script that
    set up no logging (the starter) gets them on stderr, as plain lines."""
    CONNECTION_LOG.addFilter(OUTAGES)
    CONNECTION_LOG.setLevel(logging.INFO)
    if not CONNECTION_LOG.hasHandlers():
        CONNECTION_LOG.addHandler(_ToStderr())  # its lines as they are: "%(message)s"
        CONNECTION_LOG.propagate = False
    forwarding = runtime.LogForwardingConfig(
        logger=CONNECTION_LOG,
        append_target_to_name=False,
        prepend_target_on_message=False,
        append_log_fields_to_message=False,
    )
    core_warnings = runtime.TelemetryFilter(core_level="WARN", other_level="ERROR")
    logging_config = runtime.LoggingConfig(filter=core_warnings, forwarding=forwarding)
    return runtime.Runtime(telemetry=runtime.TelemetryConfig(logging=logging_config))
