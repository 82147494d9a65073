"""Connecting to Temporal, as the worker and the starter do: settings from the environment or a
temporal.toml profile (setup.md), each mistake refused in one line, and the Web UI's address."""

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
# Where the SDK found a TOML error; the rest of its message quotes the line, API key and all.
_TOML_ERROR = re.compile(r"TOML parse error at (line \d+, column \d+)")


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
    """Connect as the TEMPORAL_* settings or a temporal.toml profile say (setup.md); without
    them, the dev server on localhost:7233, namespace "default". Pydantic models cross as JSON.
    Raises TemporalUnreachable, saying what is wrong and never quoting the config file."""
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
    named = os.environ.get("TEMPORAL_CONFIG_FILE")
    if named is not None and not Path(named).is_file():  # else the SDK quietly skips it
        raise TemporalUnreachable(
            f"TEMPORAL_CONFIG_FILE={named!r} is not a file: name your temporal.toml, or unset "
            "it (setup.md)"
        )
    try:
        config = ClientConfig.load_client_connect_config()
    except Exception as err:  # the SDK raises several types for a bad profile, file or path
        raise TemporalUnreachable(
            f"invalid Temporal connection settings: {_config_problem(err)}"
        ) from None
    address = config.setdefault("target_host", DEFAULT_TEMPORAL_ADDRESS)
    if not os.environ.get("TEMPORAL_ADDRESS", "unset").strip():  # the SDK takes "" for unset
        raise TemporalUnreachable(
            f"TEMPORAL_ADDRESS is empty: unset it to use {DEFAULT_TEMPORAL_ADDRESS}, or give "
            "host:port"
        )
    if "://" in address:  # a gRPC address has no scheme
        raise TemporalUnreachable(
            f"the Temporal address {address!r} has a scheme: give host:port, e.g. "
            f"{DEFAULT_TEMPORAL_ADDRESS} (TEMPORAL_ADDRESS, or the profile's address)"
        )
    return config


def _config_problem(err: Exception) -> str:
    """What is wrong with the connection settings, never quoting the config file."""
    text = str(err)
    if found := _TOML_ERROR.search(text):
        return (
            f"{_temporal_config_file()}, {found[1]}: not a valid profile; fix it there (the "
            "line is not shown: it may hold a key)"
        )
    return text.splitlines()[0] if text else type(err).__name__


def _temporal_config_file() -> Path:
    """The temporal.toml the SDK reads: TEMPORAL_CONFIG_FILE, else the platform's default."""
    if named := os.environ.get("TEMPORAL_CONFIG_FILE"):
        return Path(named)
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home())
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "temporalio" / "temporal.toml"


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
    """Exit with status, skipping interpreter teardown, in which the SDK's native runtime can
    crash (sdk-python issue 300), turning a success into 134 or 139. All is printed by now."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        status = output_closed()
    sys.stderr.flush()
    os._exit(status)


def output_closed() -> int:
    """Point a standard output whose reader went away (`... | head -1`) at /dev/null, so nothing
    more fails (nor prints a traceback), and return the status of a process the pipe killed."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE
