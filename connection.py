"""Connecting to Temporal, as the worker and the starter do: settings from the environment or a
temporal.toml profile (setup.md), each mistake refused in one line, and the Web UI's address.
"""

import os
import re
import signal
import sys
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig, ClientConnectConfig
from temporalio.service import RPCError, RPCStatusCode

from outages import OUTAGES, sdk_runtime

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
CLOUD_WEB_UI = "https://cloud.temporal.io"


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
            **config, data_converter=pydantic_data_converter, runtime=sdk_runtime()
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
    OUTAGES.watch(client)
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


def exit_now(status: int) -> None:
    """Exit a script with status, skipping interpreter teardown.

    The SDK's native runtime can crash while Python tears down a short-lived client process
    (sdk-python issue 300, "PyGILState_Release"), turning a success into exit status 134 or
    139. Everything worth keeping is printed by now, so flush and leave at once.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = output_closed()
    sys.stderr.flush()
    os._exit(status)


# The status of a command whose reader went away (`... | head -1`): 128 + SIGPIPE, as a tool
# the closed pipe killed would end.
CLOSED_PIPE_STATUS = 128 + signal.SIGPIPE


def output_closed() -> int:
    """Stop writing to a standard output whose reader went away: point it at /dev/null, so that
    nothing more fails (and no traceback is printed), and return the status to exit with."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return CLOSED_PIPE_STATUS
