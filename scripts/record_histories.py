"""Record the release histories that tests/test_replay.py replays.

    .venv/bin/python scripts/record_histories.py        (or: make record-histories)
    .venv/bin/python scripts/record_histories.py --in-flight    (only the release in flight)

Starts a throwaway dev server and, with the demo's state in a temp folder, runs:
- the catalog releases, in catalog order, unpaced and without injected failures;
- RELEASE-NOV-23-INITIAL again on fresh state with DEMO_FAILURES=sometimes (steps retried);
- RELEASE-NOV-23-INITIAL again on fresh state with run_worker.py as a process that is killed
  (SIGKILL) in the middle of the release and started again;
- one run per other ending, each on fresh state:
  RELEASE-FEB-24-BETA-rejected: rejected at its PROD gate;
  RELEASE-NOV-23-HOTFIX-STAGE-rolled-back: after RELEASE-NOV-23-INITIAL, frontend unhealthy in
  TEST (DEMO_UNHEALTHY), so that deploy is rolled back;
  RELEASE-JAN-24-ALPHA-DEV-refused: refused (EnvironmentBusy) while RELEASE-NOV-23-INITIAL,
  unapproved in a copy of the catalog, holds DEV waiting for approval (then rejected there);
  RELEASE-NOV-23-INITIAL-cancelled: cancelled once its DEV deploys change DEV (they finish);
  RELEASE-NOV-23-INITIAL-cancelled-while-building: cancelled while they build (they stop);
  RELEASE-FEB-24-BETA-cancelled-at-gate: cancelled while it waits for approval before PROD;
  RELEASE-NOV-23-INITIAL-failed-wave: sbstore leaves the catalog once deployed to DEV, so its
  TEST deploy fails, the rest of the TEST wave finishes and the release fails;
  RELEASE-FEB-24-BETA-expired: nobody decides at its PROD gate, which expires (REJECTED);
  RELEASE-FEB-24-BETA-soak-skipped: its QC soak (600 s here) is ended early with skip_soak.
  RELEASE-GONE-not-in-catalog: started for a key the catalog does not hold (a train whose
  release left it): FAILED at gather, with a record.
(RELEASE-FEB-24-BETA itself soaks QC for the catalog's 3 s before its PROD gate.)
Each run is written to tests/histories/<workflow ID>.json as {workflow ID: history} for the
release and every child workflow it started. And one release in flight: RELEASE-FEB-24-BETA as
a worker with the code from before the announcements runs it (patches/before-notifications.patch
applied to a copy of the project), recorded while it waits at its PROD gate, in
tests/histories/before-notifications/RELEASE-FEB-24-BETA-at-PROD-gate.json.
Re-recording accepts the workflows' current shape as the reference: do it after a deliberate
change to workflows.py, once no release of the old shape is in flight (if one may be, version
the change with workflow.patched() instead).
"""

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, this file sees scripts/ on sys.path, not the project it records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowQueryFailedError,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

import files
import search_attributes
from catalog import load_catalog, load_release
from connection import exit_now
from run_worker import READY_LINE, create_worker, serving
from scripts import code_states
from scripts.dev_server import PRECISE_TIMERS, temporal_cli_or_exit
from shared import (
    WORKFLOW_TASK_TIMEOUT,
    ApproveInput,
    Environment,
    RejectInput,
    ReleaseInput,
    ReleaseResult,
    SkipSoakInput,
    deploy_workflow_id,
)
from workflows import ReleaseWorkflow

PROJECT_DIR = Path(__file__).resolve().parents[1]
HISTORIES_DIR = PROJECT_DIR / "tests" / "histories"
TASK_QUEUE = "record-histories"
# One build ID for every worker here, the in-flight run's older code included: each release is
# pinned to the version it starts on (Worker Versioning), and the deployment's current version is
# the first one, so a worker with a build ID of its own would never be given the in-flight run.
BUILD_ID = "record-histories"
# The release the two eventful runs repeat, and the suffixes of their workflow IDs.
EVENTFUL_RELEASE = "RELEASE-NOV-23-INITIAL"
FAILURES_RUN = f"{EVENTFUL_RELEASE}-failures"
WORKER_KILL_RUN = f"{EVENTFUL_RELEASE}-worker-kill"
# Where the worker is killed: once this appears in its log, and this long after, so steps of
# the TEST wave are in flight.
KILL_AFTER_LINE = f"{EVENTFUL_RELEASE}: promoting to TEST"
KILL_DELAY_SECONDS = 0.5
KILL_RUN_STEP_SECONDS = "0.3"
# The runs that end otherwise than SUCCESS (see ENDINGS), and the releases two of them need
# first, which are not recorded.
REJECTED_RUN = "RELEASE-FEB-24-BETA-rejected"
ROLLED_BACK_RUN = "RELEASE-NOV-23-HOTFIX-STAGE-rolled-back"
ROLLED_BACK_SETUP = f"{EVENTFUL_RELEASE}-before-rollback"
REFUSED_RUN = "RELEASE-JAN-24-ALPHA-DEV-refused"
REFUSED_HOLDER = f"{EVENTFUL_RELEASE}-holding-DEV"
CANCELLED_RUN = f"{EVENTFUL_RELEASE}-cancelled"
CANCELLED_EARLY_RUN = f"{EVENTFUL_RELEASE}-cancelled-while-building"
CANCELLED_AT_GATE_RUN = "RELEASE-FEB-24-BETA-cancelled-at-gate"
FAILED_WAVE_RUN = f"{EVENTFUL_RELEASE}-failed-wave"
EXPIRED_RUN = "RELEASE-FEB-24-BETA-expired"
EXPIRY_SECONDS = 2
SOAK_SKIPPED_RUN = "RELEASE-FEB-24-BETA-soak-skipped"
LOCK_LOST_RUN = "RELEASE-FEB-24-BETA-lock-lost"
TERMINATED_RUN = f"{EVENTFUL_RELEASE}-terminated"
CANCELLED_CLOSING_RUN = "RELEASE-JAN-24-ALPHA-DEV-cancelled-while-recording"
# Started under this ID with another release's key (BETA's): refused before anything runs.
WRONG_KEY_RUN = "RELEASE-JAN-24-ALPHA-DEV-wrong-key"
# Started for a key the catalog does not hold (as a train whose release left the catalog):
# fails at gather, with a FAILED record.
UNKNOWN_KEY_RUN = "RELEASE-GONE-not-in-catalog"
# Long enough per step for the cancel or the catalog edit to land mid-wave.
MID_WAVE_STEP_SECONDS = "0.3"
# A release recorded in flight, at its PROD gate, with the code from before the announcements
# (patches/before-notifications.patch): where demos.md's "Change the plan while releases are in
# flight" changes the code under it. Not replaced with the runs above: kept beside the release
# recorded before the announcements (tests/test_versioning.py replays both).
IN_FLIGHT_RUN = "RELEASE-FEB-24-BETA"
IN_FLIGHT_FILE = HISTORIES_DIR / "before-notifications" / f"{IN_FLIGHT_RUN}-at-PROD-gate.json"
# The option that records only that release, leaving the other histories as they are.
IN_FLIGHT_ONLY = "--in-flight"
# Stands for the temp folder of the demo roots in recorded failure messages.
STATE_PLACEHOLDER = "<demo state>"
RUN_TIMEOUT = 90.0


def recorded_names() -> list[str]:
    """The workflow IDs of the recorded runs, which name their files (tests/histories/)."""
    catalog_runs = load_catalog().release_keys()
    return [*catalog_runs, FAILURES_RUN, WORKER_KILL_RUN, *ENDINGS]


@contextmanager
def demo_settings(**settings: str) -> Iterator[None]:
    """Set DEMO_* variables for the in-process worker (it reads them at every step)."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def fresh_root(parent: Path, name: str) -> str:
    """An empty demo root: nothing built, nothing deployed."""
    root = parent / name
    root.mkdir()
    return str(root)


async def start_release(
    client: Client, key: str, workflow_id: str
) -> WorkflowHandle[ReleaseWorkflow, ReleaseResult]:
    # As run_workflow.py starts it, under a readable, stable workflow ID.
    return await client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=key),
        id=workflow_id,
        task_queue=TASK_QUEUE,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
    )


async def run_release(client: Client, key: str, workflow_id: str, ending: str = "SUCCESS") -> None:
    handle = await start_release(client, key, workflow_id)
    await approve_each_gate(handle, key)
    await finish(handle, ending)


async def reach_gate(
    handle: WorkflowHandle[ReleaseWorkflow, ReleaseResult], env: Environment
) -> None:
    """Wait until the release waits for approval before env."""
    await reach_status(handle, f"waiting for approval before {env.value}")


async def reach_status(
    handle: WorkflowHandle[ReleaseWorkflow, ReleaseResult], waiting: str
) -> None:
    """Wait until the release's status query answers waiting."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        with suppress(WorkflowQueryFailedError):
            if await handle.query(ReleaseWorkflow.status) == waiting:
                return
        await asyncio.sleep(0.05)


async def approve_each_gate(
    handle: WorkflowHandle[ReleaseWorkflow, ReleaseResult], key: str
) -> None:
    """Approve each gate of the release as it reaches it, through the real Update."""
    for env in load_release(key).gates():
        await reach_gate(handle, env)
        await handle.execute_update(
            ReleaseWorkflow.approve, ApproveInput(gate=env, by="record_histories")
        )


async def reject_at(
    handle: WorkflowHandle[ReleaseWorkflow, ReleaseResult], env: Environment, reason: str
) -> None:
    """Reject the release once it reaches its gate before env, through the real Update."""
    await reach_gate(handle, env)
    await handle.execute_update(
        ReleaseWorkflow.reject, RejectInput(gate=env, by="record_histories", reason=reason)
    )


async def finish(
    handle: WorkflowHandle[ReleaseWorkflow, ReleaseResult], ending: str = "SUCCESS"
) -> None:
    """Wait for the release to return, and check how it ended."""
    result = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
    if result.outcome != ending:
        raise SystemExit(f"{handle.id}: {result}, expected {ending}")


async def finish_raising(
    handle: WorkflowHandle[ReleaseWorkflow, ReleaseResult], cause: str
) -> None:
    """Wait for the release to fail or be cancelled: its result raises, with cause the name of
    the error's class (CancelledError, ChildWorkflowError) or of its type (EnvironmentBusy)."""
    try:
        ended = str(await asyncio.wait_for(handle.result(), RUN_TIMEOUT))
    except WorkflowFailureError as err:
        if cause in (type(err.cause).__name__, getattr(err.cause, "type", None)):
            return
        ended = repr(err.cause)
    raise SystemExit(f"{handle.id}: {ended}, expected {cause}")


async def fetch_run(
    client: Client, workflow_id: str, in_flight: bool = False
) -> dict[str, WorkflowHistory]:
    """The release's history and those of every child it started, once each has closed (or as
    they are now, in_flight)."""
    histories: dict[str, WorkflowHistory] = {}
    pending: list[tuple[str, str | None]] = [(workflow_id, None)]
    while pending:
        child_id, run_id = pending.pop(0)
        handle = client.get_workflow_handle(child_id, run_id=run_id)
        # A deploy may end failed or cancelled, a lock terminated with its release (the parent
        # close policy): result() raises for those, and the history is what is recorded.
        with suppress(WorkflowFailureError):
            if not in_flight:
                await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
        history = await handle.fetch_history()
        histories[child_id] = history
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
                started = event.child_workflow_execution_started_event_attributes
                execution = started.workflow_execution
                pending.append((execution.workflow_id, execution.run_id))
    return histories


def retried_steps(histories: dict[str, WorkflowHistory]) -> int:
    """How many steps needed more than one attempt (a history keeps each step's last one)."""
    return sum(
        event.activity_task_started_event_attributes.attempt > 1
        for history in histories.values()
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    )


def how_closed(history: WorkflowHistory) -> str:
    """How a workflow closed, from its last event: Completed, Failed, Canceled, Terminated; or
    Running, if it was recorded in flight."""
    name = EventType.Name(history.events[-1].event_type)
    if not name.startswith("EVENT_TYPE_WORKFLOW_EXECUTION_"):
        return "Running"
    return name.removeprefix("EVENT_TYPE_WORKFLOW_EXECUTION_").title()


def worker_identities(histories: dict[str, WorkflowHistory]) -> set[str]:
    return {
        event.workflow_task_started_event_attributes.identity
        for history in histories.values()
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    }


async def record_catalog_and_failures(
    client: Client, state: Path
) -> dict[str, dict[str, WorkflowHistory]]:
    runs = {}
    async with serving(client, create_worker(client, TASK_QUEUE)):
        with demo_settings(DEMO_ROOT=fresh_root(state, "catalog"), DEMO_FAILURES="off"):
            for key in load_catalog().release_keys():
                await run_release(client, key, key)
                runs[key] = await fetch_run(client, key)
        with demo_settings(DEMO_ROOT=fresh_root(state, "failures"), DEMO_FAILURES="sometimes"):
            await run_release(client, EVENTFUL_RELEASE, FAILURES_RUN)
            runs[FAILURES_RUN] = await fetch_run(client, FAILURES_RUN)
    if not retried_steps(runs[FAILURES_RUN]):
        raise SystemExit(f"{FAILURES_RUN}: no step was retried; run this again")
    return runs


@dataclass
class WorkerProcess:
    """run_worker.py as a process; its log lines collect as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, env: dict[str, str], started: list["WorkerProcess"], script: str = "run_worker.py"
    ) -> "WorkerProcess":
        """Start one (listed in started at once, to be stopped), and wait until it polls.
        script: run_worker.py, or a script that runs its main() (benchmarks/worker.py)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            script,
            cwd=PROJECT_DIR,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        worker = cls(process)
        worker.reader = asyncio.create_task(worker._read())
        started.append(worker)
        await worker.wait_for(READY_LINE)
        return worker

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode())

    async def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not any(text in line for line in self.lines):
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker never logged {text!r}:\n{''.join(self.lines)}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """Ctrl+C, as a person stops it; killed if it has not stopped after 10 s."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def worker_env(client: Client, demo_root: str, step_seconds: str) -> dict[str, str]:
    """A worker's terminal: this server, and nothing of the caller's Temporal or DEMO_ settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TEMPORAL_", "DEMO_"))
    }
    return env | {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        "DEMO_ROOT": demo_root,
        "DEMO_TASK_QUEUE": TASK_QUEUE,
        "DEMO_BUILD_ID": BUILD_ID,
        "DEMO_STEP_SECONDS": step_seconds,
        "DEMO_FAILURES": "off",
    }


async def record_worker_kill(client: Client, state: Path) -> dict[str, dict[str, WorkflowHistory]]:
    """A release whose worker process is killed mid-release and started again."""
    env = worker_env(client, fresh_root(state, "worker-kill"), KILL_RUN_STEP_SECONDS)
    workers: list[WorkerProcess] = []
    try:
        first = await WorkerProcess.start(env, workers)
        handle = await start_release(client, EVENTFUL_RELEASE, WORKER_KILL_RUN)
        await first.wait_for(KILL_AFTER_LINE)
        await asyncio.sleep(KILL_DELAY_SECONDS)
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
        await WorkerProcess.start(env, workers)
        await finish(handle)
        run = await fetch_run(client, WORKER_KILL_RUN)
    finally:
        for worker in workers:
            await worker.stop()
    if len(worker_identities(run)) < 2:
        raise SystemExit(f"{WORKER_KILL_RUN}: one worker ran it all; the kill came too late")
    return {WORKER_KILL_RUN: run}


def project_catalog() -> dict:
    return json.loads((PROJECT_DIR / "database" / files.CATALOG_NAME).read_text())


def write_catalog(catalog: dict) -> None:
    """Give the demo root its own catalog, which the worker reads instead of the project's."""
    path = files.demo_root() / "database" / files.CATALOG_NAME
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(catalog))


async def wait_until_closed(client: Client, workflow_id: str) -> None:
    """Wait until the workflow (a deploy, maybe not started yet) has closed."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        with suppress(RPCError):
            description = await client.get_workflow_handle(workflow_id).describe()
            if description.status != WorkflowExecutionStatus.RUNNING:
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"{workflow_id} never closed")


async def wait_for_step(client: Client, workflow_id: str, activity: str) -> None:
    """Wait until the workflow (a deploy, maybe not started yet) has this step in flight."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        with suppress(RPCError):
            description = await client.get_workflow_handle(workflow_id).describe()
            pending = description.raw_description.pending_activities
            if any(step.activity_type.name == activity for step in pending):
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"{workflow_id} never ran {activity}")


async def reject_at_prod(client: Client, name: str) -> None:
    handle = await start_release(client, "RELEASE-FEB-24-BETA", name)
    await reject_at(handle, Environment.PROD, "recorded rejection")
    await finish(handle, "REJECTED")


async def roll_back_in_test(client: Client, name: str) -> None:
    # The hotfix goes to DEV, TEST and QC once the first release has put 1.0 everywhere.
    await run_release(client, EVENTFUL_RELEASE, ROLLED_BACK_SETUP)
    with demo_settings(DEMO_UNHEALTHY="frontend@TEST"):
        await run_release(client, "RELEASE-NOV-23-HOTFIX-STAGE", name, "ROLLED BACK")


async def refuse_while_dev_is_held(client: Client, name: str) -> None:
    # Unapproved in the catalog, the first release holds DEV..PROD while it waits before DEV.
    catalog = project_catalog()
    catalog["releases"][0].update(approved=False, approved_by=None)
    write_catalog(catalog)
    holder = await start_release(client, EVENTFUL_RELEASE, REFUSED_HOLDER)
    await reach_gate(holder, Environment.DEV)
    refused = await start_release(client, "RELEASE-JAN-24-ALPHA-DEV", name)
    await finish_raising(refused, "EnvironmentBusy")
    await reject_at(holder, Environment.DEV, "the refusal is recorded")
    await finish(holder, "REJECTED")


async def cancel_at_step(client: Client, name: str, step: str) -> None:
    """Cancel the release once its DEV deploy of frontend has step in flight."""
    with demo_settings(DEMO_STEP_SECONDS=MID_WAVE_STEP_SECONDS):
        handle = await start_release(client, EVENTFUL_RELEASE, name)
        frontend = deploy_workflow_id(name, Environment.DEV, "frontend")
        await wait_for_step(client, frontend, step)
        await handle.cancel()
        await finish_raising(handle, "CancelledError")


async def cancel_mid_wave(client: Client, name: str) -> None:
    # The deploys have started changing DEV: they finish their change, then the release stops.
    await cancel_at_step(client, name, "deploy_artifact")


async def cancel_while_building(client: Client, name: str) -> None:
    # The deploys are still gathering: they stop, and DEV is untouched.
    await cancel_at_step(client, name, "build_artifact")


async def cancel_at_gate(client: Client, name: str) -> None:
    handle = await start_release(client, "RELEASE-FEB-24-BETA", name)
    await reach_gate(handle, Environment.PROD)
    await handle.cancel(reason="recorded cancel")
    await finish_raising(handle, "CancelledError")


def beta_in_catalog(**settings: object) -> None:
    """Give the demo root a catalog in which RELEASE-FEB-24-BETA has these settings too."""
    catalog = project_catalog()
    (beta,) = [entry for entry in catalog["releases"] if entry["key"] == "RELEASE-FEB-24-BETA"]
    beta.update(settings)
    write_catalog(catalog)


async def let_the_gate_expire(client: Client, name: str) -> None:
    beta_in_catalog(approval_timeout_seconds=EXPIRY_SECONDS)
    handle = await start_release(client, "RELEASE-FEB-24-BETA", name)
    await finish(handle, "REJECTED")


async def skip_the_soak(client: Client, name: str) -> None:
    beta_in_catalog(soak_seconds={"QC": 600})
    handle = await start_release(client, "RELEASE-FEB-24-BETA", name)
    await reach_status(handle, "soaking QC for 600 s")
    await handle.execute_update(ReleaseWorkflow.skip_soak, SkipSoakInput(by="record_histories"))
    await approve_each_gate(handle, "RELEASE-FEB-24-BETA")
    await finish(handle)


async def lose_a_lock_at_the_gate(client: Client, name: str) -> None:
    # A person terminates the PROD lock while the release waits before PROD: it fails at once.
    handle = await start_release(client, "RELEASE-FEB-24-BETA", name)
    await reach_gate(handle, Environment.PROD)
    await client.get_workflow_handle(f"lock.PROD.{TASK_QUEUE}").terminate(reason="recorded")
    await finish_raising(handle, "LockLost")


async def terminate_mid_wave(client: Client, name: str) -> None:
    # The deploys finish the change in flight; the locks hold until then, record it, and end.
    with demo_settings(DEMO_STEP_SECONDS=MID_WAVE_STEP_SECONDS):
        handle = await start_release(client, EVENTFUL_RELEASE, name)
        await wait_for_step(
            client, deploy_workflow_id(name, Environment.DEV, "frontend"), "deploy_artifact"
        )
        await handle.terminate(reason="recorded terminate")
        await finish_raising(handle, "TerminatedError")
        # Its deploys and locks go on, in this demo root and at this pace: see them closed here.
        await fetch_run(client, name)


async def cancel_while_recording(client: Client, name: str) -> None:
    # The plan has succeeded; a cancel while the record is written changes nothing.
    with demo_settings(DEMO_STEP_SECONDS=MID_WAVE_STEP_SECONDS):
        handle = await start_release(client, "RELEASE-JAN-24-ALPHA-DEV", name)
        await reach_status(handle, "recording")
        await handle.cancel(reason="recorded cancel, too late")
        await finish(handle)


async def refuse_another_key(client: Client, name: str) -> None:
    handle = await start_release(client, "RELEASE-FEB-24-BETA", name)
    await finish_raising(handle, "WrongWorkflowId")


async def fail_on_a_key_not_in_the_catalog(client: Client, name: str) -> None:
    handle = await start_release(client, "RELEASE-GONE", name)
    await finish_raising(handle, "ActivityError")


async def fail_one_deploy_of_a_wave(client: Client, name: str) -> None:
    catalog = project_catalog()
    write_catalog(catalog)
    with demo_settings(DEMO_STEP_SECONDS=MID_WAVE_STEP_SECONDS):
        handle = await start_release(client, EVENTFUL_RELEASE, name)
        sbstore = deploy_workflow_id(name, Environment.DEV, "sbstore")
        await wait_until_closed(client, sbstore)
        # TEST's sbstore deploy then finds no config for it, which no retry fixes.
        del catalog["components"]["sbstore"]
        write_catalog(catalog)
        await finish_raising(handle, "ChildWorkflowError")


# The runs that end otherwise than SUCCESS, by workflow ID: how each is brought about.
ENDINGS: dict[str, Callable[[Client, str], Awaitable[None]]] = {
    REJECTED_RUN: reject_at_prod,
    ROLLED_BACK_RUN: roll_back_in_test,
    REFUSED_RUN: refuse_while_dev_is_held,
    CANCELLED_RUN: cancel_mid_wave,
    CANCELLED_EARLY_RUN: cancel_while_building,
    CANCELLED_AT_GATE_RUN: cancel_at_gate,
    FAILED_WAVE_RUN: fail_one_deploy_of_a_wave,
    EXPIRED_RUN: let_the_gate_expire,
    SOAK_SKIPPED_RUN: skip_the_soak,
    LOCK_LOST_RUN: lose_a_lock_at_the_gate,
    TERMINATED_RUN: terminate_mid_wave,
    CANCELLED_CLOSING_RUN: cancel_while_recording,
    WRONG_KEY_RUN: refuse_another_key,
    UNKNOWN_KEY_RUN: fail_on_a_key_not_in_the_catalog,
}


async def record_endings(client: Client, state: Path) -> dict[str, dict[str, WorkflowHistory]]:
    """One run per ending in ENDINGS, each on fresh state and recorded under its name."""
    runs = {}
    async with serving(client, create_worker(client, TASK_QUEUE)):
        for name, bring_about in ENDINGS.items():
            with demo_settings(DEMO_ROOT=fresh_root(state, name), DEMO_FAILURES="off"):
                await bring_about(client, name)
            runs[name] = await fetch_run(client, name)
    return runs


async def record_in_flight(client: Client, state: Path) -> dict[str, WorkflowHistory]:
    """IN_FLIGHT_RUN as a worker with the code from before the announcements runs it (a copy of
    the project with patches/before-notifications.patch applied), once it waits at its PROD gate;
    then terminated, on this throwaway server."""
    code = code_states.core_copy(code_states.BEFORE_NOTIFICATIONS, state / "code-before")
    env = worker_env(client, fresh_root(state, "in-flight"), "0")
    workers: list[WorkerProcess] = []
    try:
        await WorkerProcess.start(env, workers, str(code / "run_worker.py"))
        handle = await start_release(client, IN_FLIGHT_RUN, IN_FLIGHT_RUN)
        await reach_gate(handle, Environment.PROD)
        run = await fetch_run(client, IN_FLIGHT_RUN, in_flight=True)
        await handle.terminate(reason="recorded in flight")
    finally:
        for worker in workers:
            await worker.stop()
    if how_closed(run[IN_FLIGHT_RUN]) != "Running":
        raise SystemExit(f"{IN_FLIGHT_RUN} in flight: it closed before it was recorded")
    return run


def write_histories(runs: dict[str, dict[str, WorkflowHistory]], state: Path) -> None:
    """One file per run, replacing every history recorded before."""
    HISTORIES_DIR.mkdir(parents=True, exist_ok=True)
    for stale in HISTORIES_DIR.glob("*.json"):
        stale.unlink()
    for name, histories in runs.items():
        write_run(HISTORIES_DIR / f"{name}.json", histories, state)


def write_run(path: Path, histories: dict[str, WorkflowHistory], state: Path) -> None:
    """One run's histories (the release's first) in one file, and a line saying what it holds."""
    name = next(iter(histories))
    recorded = {wid: history.to_json_dict() for wid, history in histories.items()}
    text = json.dumps(recorded, separators=(",", ":")) + "\n"
    # Stack traces of failed attempts name files on this machine: keep them relative. Failure
    # messages name files of the temp demo roots (a catalog): keep them machine-free too.
    text = text.replace(str(PROJECT_DIR), ".").replace(str(state), STATE_PLACEHOLDER)
    path.write_text(text)
    children = [how_closed(h) for wid, h in histories.items() if wid != name]
    closed = ", ".join(f"{children.count(e)} {e}" for e in sorted(set(children)))
    print(
        f"{path.relative_to(PROJECT_DIR)}: {how_closed(histories[name])}, "
        f"children {closed or 'none'}; {len(histories)} workflows, "
        f"{sum(len(h.events) for h in histories.values())} events, "
        f"{retried_steps(histories)} steps retried, "
        f"{len(worker_identities(histories))} worker(s), {path.stat().st_size // 1024} KB"
    )


async def record_runs(client: Client, state: Path) -> dict[str, dict[str, WorkflowHistory]]:
    """The runs that recorded_names() names, each recorded under its name."""
    runs = await record_catalog_and_failures(client, state)
    runs |= await record_worker_kill(client, state)
    runs |= await record_endings(client, state)
    if list(runs) != recorded_names():
        raise SystemExit(f"recorded {list(runs)}, expected {recorded_names()}")
    return runs


async def main(argv: list[str]) -> int:
    if argv not in ([], [IN_FLIGHT_ONLY]):
        raise SystemExit(f"usage: record_histories.py [{IN_FLIGHT_ONLY}]")
    started = time.monotonic()
    # The in-process worker's steps log each injected failure as a warning: expected here.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    os.environ.pop("DEMO_BUG", None)
    os.environ.pop("DEMO_UNHEALTHY", None)
    os.environ["DEMO_STEP_SECONDS"] = "0"
    os.environ["DEMO_BUILD_ID"] = BUILD_ID
    cli = temporal_cli_or_exit("record_histories.py")
    with tempfile.TemporaryDirectory(prefix="record-histories-") as state:
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=cli,
            data_converter=pydantic_data_converter,
            dev_server_extra_args=PRECISE_TIMERS,
            dev_server_log_level="error",
            search_attributes=search_attributes.ALL,
        ) as server:
            runs = {} if argv else await record_runs(server.client, Path(state))
            in_flight = await record_in_flight(server.client, Path(state))
        if runs:
            write_histories(runs, Path(state))
        write_run(IN_FLIGHT_FILE, in_flight, Path(state))
    print(f"Recorded {len(runs) + 1} release runs in {time.monotonic() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main(sys.argv[1:])))
