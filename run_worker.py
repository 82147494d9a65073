"""Terminal 2: the worker (`python run_worker.py`). It runs the release workflows and their steps
until Ctrl+C; kill it mid-release and start it again, and the release carries on where it was."""

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

import files
import utils
from activities import ALL_ACTIVITIES, ENVIRONMENT_STEPS, MAX_CONCURRENT_ACTIVITIES
from catalog import load_catalog
from connection import TemporalUnreachable, connect, exit_now, web_ui_url
from display import OneLineParser, TerminalLog, fitted
from locks import EnvironmentLockWorkflow
from search_attributes import SearchAttributesUnusable, register_missing
from shared import TASK_QUEUE, Environment, ErrorType, ReleaseError, steps_queue
from versioning import build_id, deployment_config, make_first_current
from workflows import DeployWorkflow, ReleaseWorkflow

_log = logging.getLogger("run_worker")
# The worker's last line on start-up: once printed, it polls (scripts and tests wait for it).
READY_LINE = "Press Ctrl+C to stop."
# Why each value (measured): README.md, "Tuning".
# On Ctrl+C, activities in flight get this long to finish before they are cancelled (and retried).
GRACEFUL_SHUTDOWN = timedelta(seconds=3)
STOPPING = (
    f"Stopping the worker: steps in flight get {GRACEFUL_SHUTDOWN.total_seconds():g} s to finish; "
    "releases in flight wait for the next worker."
)
# A dead worker's sticky queue hands its workflows' tasks back to the shared queue after this.
STICKY_QUEUE_TIMEOUT = timedelta(milliseconds=200)
# How often the worker checks that the server has the search attributes it sets.
ATTRIBUTES_CHECK_SECONDS = 5.0
# The SDK sends an activity's heartbeats at most this often: half of the heartbeat timeout.
HEARTBEAT_THROTTLE = timedelta(milliseconds=500)
# How every worker runs steps, the orchestrator's and an environment's.
STEP_SETTINGS: dict[str, Any] = {
    "graceful_shutdown_timeout": GRACEFUL_SHUTDOWN,
    "max_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
    # More at once would let their heartbeats lapse before they start; the rest wait, Scheduled.
    "max_concurrent_activities": MAX_CONCURRENT_ACTIVITIES,
}


def create_worker(client: Client, task_queue: str = TASK_QUEUE) -> Worker:
    """The worker of the release workflows and all their activities (the tests' too), for this
    code's version of the plan (versioning.py)."""
    return Worker(
        client,
        task_queue=task_queue,
        deployment_config=deployment_config(task_queue),
        workflows=[ReleaseWorkflow, DeployWorkflow, EnvironmentLockWorkflow],
        activities=ALL_ACTIVITIES,
        interceptors=[OneInputEach()],
        sticky_queue_schedule_to_start_timeout=STICKY_QUEUE_TIMEOUT,
        **STEP_SETTINGS,
    )


def create_environment_worker(client: Client, env: Environment) -> Worker:
    """An environment's own worker: its steps only, on QUEUE.ENV, with its own demo root's files.
    Unversioned: a step's code is not replayed, so it serves every version of the plan."""
    queue = steps_queue(TASK_QUEUE, env)
    return Worker(client, task_queue=queue, activities=ENVIRONMENT_STEPS, **STEP_SETTINGS)


def workers_of(client: Client, args: argparse.Namespace) -> list[Worker]:
    """--env ENV's worker; else the orchestrator, with (unless --orchestrator) a worker for each
    environment DEMO_OWN_WORKERS names."""
    if args.env is not None:
        return [create_environment_worker(client, args.env)]
    envs = [] if args.orchestrator else utils.own_workers()
    return [create_worker(client), *(create_environment_worker(client, env) for env in envs)]


@contextlib.asynccontextmanager
async def serving(client: Client, worker: Worker) -> AsyncIterator[Worker]:
    """Run a create_worker worker (async with), its version made current first if its deployment
    has none: how the tests, scripts/ and benchmarks/ run one in their own process."""
    if versioned := worker.config().get("deployment_config"):
        await make_first_current(client, versioned.version)
    async with worker:
        yield worker


class OneInputEach(Interceptor):
    """A workflow started with more than one input (the CLI's --input twice) fails at once, saying
    so: else Python's TypeError fails its workflow task again and again, a traceback each time."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _RefuseMoreThanOneInput


class _RefuseMoreThanOneInput(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if len(input.args) > 1:
            kind = workflow.info().workflow_type
            raise ApplicationError(
                f"{kind} takes one input, not {len(input.args)}: start it again with one "
                '(a release\'s is {"release_key": "KEY"})',
                type=ErrorType.RELEASE_ERROR,
                non_retryable=True,
            )
        return await super().execute_workflow(input)


def check_settings() -> None:
    """Refuse a bad DEMO_* setting at start, not mid-release: ValueError, or ReleaseError if
    DEMO_UNHEALTHY needs the catalog and it is unreadable."""
    utils.check_demo_settings()
    build_id()  # DEMO_BUILD_ID: checked here, as utils.py is the plain release system's too
    target = utils.unhealthy()
    components = list(load_catalog().components) if target else []
    if target and target[0] not in components:  # its health check would never fail
        raise ValueError(
            f"DEMO_UNHEALTHY={'@'.join(target)!r}: the catalog has no component {target[0]!r}; "
            f"use one of: {', '.join(components)}"
        )


def configure_logging() -> None:
    """One plain line per message (ours say which release, environment and component), set up
    before connect() so that outages.py's lines come in the same format."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if sys.stderr.isatty():  # lines that fit the terminal (a log file keeps them whole)
        terminal = TerminalLog(lambda: shutil.get_terminal_size().columns)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(terminal)
    # The SDK's line on shutdown ("Beginning worker shutdown, ..."): STOPPING says it in ours.
    logging.getLogger("temporalio.worker._worker").setLevel(logging.WARNING)
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The worker's command line: its role, if not every one (settings are DEMO_* variables)."""
    parser = OneLineParser(
        prog="run_worker.py",  # also benchmarks/worker.py's
        description="Terminal 2: runs the release workflows and their steps until Ctrl+C. "
        "Settings (DEMO_FAILURES, DEMO_STEP_SECONDS, ...) are environment variables: see "
        "README.md, 'Settings'.",
    )
    role = parser.add_mutually_exclusive_group()
    role.add_argument(
        "--env",
        type=utils.environment_argument,
        choices=list(Environment),
        help="serve only this environment's steps, on its own task queue (QUEUE.ENV), with the "
        "files of this worker's DEMO_ROOT (see DEMO_OWN_WORKERS)",
    )
    role.add_argument(
        "--orchestrator",
        action="store_true",
        help="serve only the workflows and the steps on the release's own task queue",
    )
    return parser.parse_args(argv)


async def keep_search_attributes(client: Client) -> None:
    """Register the search attributes again whenever the server lacks them (one started afresh
    under a running worker: demos.md, "Start over"), or every release fails. A problem is said
    once."""
    said = ""
    while True:
        await asyncio.sleep(ATTRIBUTES_CHECK_SECONDS)
        try:
            if registered := await register_missing(client):
                _log.info(
                    "The server had none of the search attributes %s (started afresh?): "
                    "registered them again.",
                    ", ".join(registered),
                )
            said = ""
        except RPCError:
            pass  # Temporal is away: outages.py says so, and when it is back
        except SearchAttributesUnusable as err:
            if str(err) != said:
                _log.error("%s", err)
            said = str(err)


def _say_ready(client: Client, queues: list[str], version: str) -> None:
    """Where the worker polls, its version of the plan, how it behaves; READY_LINE last."""
    failures = utils.failure_mode() or "each step's own injector (utils.py)"
    bug = utils.planted_bug()
    lines = [
        f"Worker connected to {client.service_client.config.target_host}, "
        f"namespace {client.namespace!r},",
        f"polling task queue {', '.join(repr(queue) for queue in queues)}.",
        fitted(version),
        f"Failures: {failures}. Step pace: {utils.step_seconds():g} s.",
        f"Planted bug (DEMO_BUG): the {bug} step fails every time." if bug else "",
        f"Artifact store: {files.artifactory_dir()}",
        f"Web UI: {web_ui_url(client)}",
        READY_LINE,
    ]
    print("\n".join(line for line in lines if line), flush=True)


async def main(args: argparse.Namespace) -> int:
    try:
        check_settings()
    except (ValueError, ReleaseError) as err:
        print(f"run_worker.py: {err}", file=sys.stderr)
        return 2
    configure_logging()
    orchestrates = args.env is None  # an environment's worker sets no search attribute
    try:
        client = await connect()
        registered = await register_missing(client) if orchestrates else []
        version = (
            await make_first_current(client, deployment_config().version) if orchestrates else ""
        )
    except (TemporalUnreachable, SearchAttributesUnusable) as err:
        print(f"run_worker.py: {err}", file=sys.stderr)
        return 1
    except RPCError as err:  # it went away since it answered
        print(f"run_worker.py: Temporal stopped answering: {err.message}", file=sys.stderr)
        return 1
    if registered:
        names = ", ".join(registered)
        print(fitted(f"Registered the search attributes {names} (search_attributes.py)."))
    await _serve(client, workers_of(client, args), orchestrates, version)
    print("Worker stopped.", flush=True)
    return 0


async def _serve(client: Client, workers: list[Worker], orchestrates: bool, version: str) -> None:
    """Run the workers until Ctrl+C, SIGTERM or SIGHUP (its terminal closed); the orchestrator
    keeps the search attributes registered meanwhile."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    _say_ready(client, [worker.task_queue for worker in workers], version)
    async with contextlib.AsyncExitStack() as running:
        for worker in workers:
            await running.enter_async_context(worker)
        if orchestrates:  # cancelled first on the way out, before the workers stop
            running.callback(asyncio.create_task(keep_search_attributes(client)).cancel)
        await stop.wait()
        newline = "\n" if sys.stdout.isatty() else ""  # on a terminal, below the ^C it echoed
        print(newline + fitted(STOPPING), flush=True)


if __name__ == "__main__":
    exit_now(asyncio.run(main(parse_args(sys.argv[1:]))))  # --help, or a mistake, exits here
