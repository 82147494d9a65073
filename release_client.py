"""What the starter asks Temporal about one release: start it or attach to it and follow it to its
result, read its progress grid, and send it a query, an Update or a cancel. run_workflow.py is the
command line around these; display.py draws what they return."""

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeAlias, TypeVar

from temporalio.api.enums.v1 import PendingActivityState, VersioningBehavior
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import CancelledError, TerminatedError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

import files
import trains
import versioning
from connection import web_ui_url
from display import LiveGrid, ProgressLog, fitted, format_progress
from outages import DETAIL_CHARACTERS, NONDETERMINISM
from shared import (
    TASK_QUEUE,
    WORKFLOW_TASK_TIMEOUT,
    ApproveInput,
    Cell,
    CellState,
    Environment,
    Outcome,
    RejectInput,
    Release,
    ReleaseInput,
    ReleaseProgress,
    ReleaseResult,
    deploy_workflow_id,
    root_message,
    shown,
)
from workflows import ReleaseWorkflow

RECONNECT_SECONDS = 120  # how long the starter keeps trying a server that went away (a restart)
STATUS_SECONDS = 1.0  # how often it asks the release what it is doing
ANSWER_SECONDS = 3.0  # how long a command (--status, --approve, ...) waits for an answer
UNCLAIMED_SECONDS = 3.0  # a step nobody has taken for this long waits for a worker
# What says no worker answered a query in time: the call timed out, or no worker polls the queue.
NO_WORKER_STATUSES = (
    RPCStatusCode.CANCELLED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.FAILED_PRECONDITION,
)
# The status the starter shows while the worker's code cannot replay the release it follows.
CANNOT_REPLAY = (
    "stuck, not lost: the worker's code cannot replay this release (a non-determinism error; "
    "the worker's terminal says more)"
)

# A handle on a release run: its queries, updates and result keep their types.
ReleaseHandle: TypeAlias = WorkflowHandle[ReleaseWorkflow, ReleaseResult]
T = TypeVar("T")
ArgT = TypeVar("ArgT")  # an Update's input
ReleaseUpdate: TypeAlias = UpdateMethodMultiParam[[ReleaseWorkflow, ArgT], str]


class StarterError(Exception):
    """A reason to stop that the user can act on: printed as one line, exit status 1. waiting: what
    the release's progress says meanwhile, when no worker answers for it."""

    def __init__(self, message: str, waiting: str = "") -> None:
        super().__init__(message)
        self.waiting = waiting


class ReleaseFailed(StarterError):
    def __init__(self, release_key: str, reason: str) -> None:
        super().__init__(f"Release {release_key} failed: {reason}")
        self.reason = reason


class ReleaseCannotRun(StarterError):
    """A worker runs, but cannot run the release: its code does not replay the release's history,
    or (failing) the release's workflow task keeps failing."""

    def __init__(self, message: str, waiting: str, failing: bool = False) -> None:
        super().__init__(message, waiting)
        self.failing = failing


class RunReset(Exception):
    """The release run being followed was reset: handle follows its new run."""

    def __init__(self, handle: ReleaseHandle) -> None:
        super().__init__(handle.result_run_id)
        self.handle = handle


# --- Run a release: start it or attach to it, and follow it to its result ------------------------


async def run_release(
    client: Client, release: Release, task_queue: str = TASK_QUEUE
) -> ReleaseResult:
    """Start the release, or attach to it (or to its train's run) if it runs, and wait for its
    result. The workflow ID is the release key, so one release never runs twice at once."""
    if train_run := await _train_run_to_attach(client, release):  # its ID is the train's
        handle = client.get_workflow_handle_for(ReleaseWorkflow.run, train_run)
    else:
        handle = await _start_or_attach(client, release, task_queue)
    # The link on a line of its own: it fits an 80-column terminal and is whole to copy.
    print(f"Watch it in the Web UI:\n  {web_ui_url(client, handle.id)}", flush=True)
    return await _wait_for_result(client, handle, release.key)


async def _train_run_to_attach(client: Client, release: Release) -> str | None:
    """The run of the release's train to attach to, if one runs and no run KEY does."""
    if workflow_id := await trains.train_run_to_attach(client, release.key):
        said = f"Release {release.key} is running on its train, as {workflow_id}."
        print(fitted(said), flush=True)
    return workflow_id


async def _start_or_attach(client: Client, release: Release, task_queue: str) -> ReleaseHandle:
    try:
        handle = await client.start_workflow(
            ReleaseWorkflow.run,
            # Steps refuse to run on a worker that serves another demo root than this one.
            ReleaseInput(release_key=release.key, demo_root=str(files.demo_root().resolve())),
            id=release.key,
            task_queue=task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            static_summary=release.summary(),  # the Web UI shows what it promotes, and where
        )
        print(f"Started release {release.key}.", flush=True)
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(ReleaseWorkflow.run, release.key)
        await _refuse_another_release(client, handle, release.key)
        print(f"Release {release.key} is already running: waiting for it.", flush=True)
    return handle


async def _wait_for_result(
    client: Client, handle: ReleaseHandle, release_key: str
) -> ReleaseResult:
    """Wait for the result, riding out a server restart and following a reset; show progress."""
    while True:
        drawn: list[ReleaseProgress] = []  # what the progress showed, the last last
        reporter = asyncio.create_task(_report_progress(client, handle, drawn))
        failed = None
        try:
            return await _result(client, handle, release_key)
        except RunReset as reset:
            handle = reset.handle
        except ReleaseFailed as failure:
            failed = failure
        finally:
            reporter.cancel()
            await asyncio.wait([reporter])
        if failed is not None:  # said once: where the progress shows why, not again below it
            if drawn and failed.reason in drawn[-1].status:
                raise StarterError(f"Release {release_key} failed (why: above).")
            raise failed
        # Below the grid of the replaced run; the new run's grid is drawn afresh under it.
        reset_to = handle.result_run_id
        print(fitted(f"Release {release_key} was reset: following its new run {reset_to}."))


async def _result(client: Client, handle: ReleaseHandle, release_key: str) -> ReleaseResult:
    """The release's result, once it closes: a cancel is a result; a reset raises RunReset."""
    lost_since: float | None = None
    while True:
        try:
            return await handle.result()
        except WorkflowFailureError as err:
            if isinstance(err.cause, CancelledError):
                return ReleaseResult(release_key=release_key, outcome=Outcome.CANCELLED)
            if isinstance(err.cause, TerminatedError):
                raise RunReset(await _after_termination(client, handle, release_key)) from None
            raise ReleaseFailed(release_key, root_message(err)) from None
        except RPCError:
            # The connection is lost: outages.OutageReporter says so once, and once it is back.
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > RECONNECT_SECONDS:
                raise StarterError(
                    f"Temporal has not answered for {RECONNECT_SECONDS} s. The release goes on "
                    "in Temporal: run this again to attach to it."
                ) from None
            await asyncio.sleep(1)


async def _after_termination(
    client: Client, handle: ReleaseHandle, release_key: str
) -> ReleaseHandle:
    """The new run a reset made, to follow; a plain terminate ends the release (locks record it)."""
    latest = await client.get_workflow_handle(handle.id).describe()
    if latest.run_id != handle.result_run_id and latest.status == WorkflowExecutionStatus.RUNNING:
        return client.get_workflow_handle_for(ReleaseWorkflow.run, handle.id, run_id=latest.run_id)
    raise StarterError(
        f"Release {release_key} was terminated: Temporal ran none of its code after that. Its "
        "steps in flight finish the change they started, then its environment locks record "
        "how it ended (--history). Run it again to finish it; see --envs for what the "
        "environments hold."
    )


# --- Its progress: the release's grid, and what the server says each running deploy does --------


async def _report_progress(
    client: Client, handle: ReleaseHandle, drawn: list[ReleaseProgress]
) -> None:
    """Show the progress while the release runs, each in drawn too: on a terminal, a grid redrawn
    in place, drawn a last time as it ended; else one plain line per change."""
    view: LiveGrid | ProgressLog = LiveGrid() if sys.stdout.isatty() else ProgressLog()
    try:
        async for progress in _progress_updates(client, handle):
            view.show(progress)
            drawn.append(progress)
    finally:
        if isinstance(view, LiveGrid):
            last = await _progress_as_it_ended(client, handle)
            view.close(last)
            drawn.extend([last] if last else [])


async def _progress_updates(
    client: Client, handle: ReleaseHandle
) -> AsyncIterator[ReleaseProgress]:
    """The progress every STATUS_SECONDS; when it cannot be known, the last one, saying why and
    as of when, with nothing to act on: nothing happens until that changes."""
    last, as_of = ReleaseProgress(release_key=handle.id, status="starting"), datetime.now(UTC)
    while True:
        await asyncio.sleep(STATUS_SECONDS)
        try:
            last, as_of = await read_progress(client, handle), datetime.now(UTC)
            yield last
        except StarterError as err:
            why = err.waiting or _none_answers(TASK_QUEUE)
            yield _stale(last, why, f"at {as_of:%H:%M:%S} UTC")
        except RPCError:
            yield _stale(last, "Temporal does not answer (see above)", f"at {as_of:%H:%M:%S} UTC")


def _none_answers(queue: str) -> str:
    return f"waiting for a worker: none answers on task queue {queue!r} (python run_worker.py)"


def _stale(progress: ReleaseProgress, why: str, as_of: str) -> ReleaseProgress:
    """progress as it was as_of, saying why it is not newer, without a gate or soak to act on."""
    grid = f" The grid is as it was {as_of}." if progress.components else ""
    update = {"status": f"{why}.{grid}", "gate": None, "gate_expires": None, "soak": None}
    return progress.model_copy(update=update)


async def _progress_as_it_ended(client: Client, handle: ReleaseHandle) -> ReleaseProgress | None:
    """The progress of the run followed (not a reset's new run) as it ended; None if no answer."""
    ended = client.get_workflow_handle_for(
        ReleaseWorkflow.run, handle.id, run_id=handle.result_run_id
    )
    try:
        return await asyncio.wait_for(read_progress(client, ended), ANSWER_SECONDS)
    except (StarterError, RPCError, TimeoutError):
        return None


async def read_progress(client: Client, handle: ReleaseHandle) -> ReleaseProgress:
    """The release's grid: the release knows each deploy's state (a query); the server knows each
    running deploy's steps, attempt and last error (its pending activities, as the Web UI shows
    them), so no step has to report."""
    progress = await _ask(client, handle, ReleaseWorkflow.progress)
    running = [
        (env, component)
        for env, row in progress.cells.items()
        for component, cell in row.items()
        if cell.state is CellState.RUNNING
    ]
    deploys = [client.get_workflow_handle(deploy_workflow_id(handle.id, *at)) for at in running]
    own, *described = await asyncio.gather(*map(_described, [handle, *deploys]))
    grid = {env: dict(row) for env, row in progress.cells.items()}
    for (env, component), description in zip(running, described, strict=True):
        grid[env][component] = _running_cell(description)
    status = progress.status
    if waiting := sorted({_unclaimed(each) for each in [own, *described] if each} - {""}):
        queues = ", ".join(repr(queue) for queue in waiting)
        status += f"; its steps wait for a worker on task queue {queues}"
    return progress.model_copy(update={"cells": grid, "status": status})


async def _described(handle: WorkflowHandle) -> WorkflowExecutionDescription | None:
    """What the server says of a workflow; None if it cannot (a deploy not started yet)."""
    try:
        return await handle.describe()
    except RPCError:
        return None


def _running_cell(description: WorkflowExecutionDescription | None) -> Cell:
    """What a running deploy's steps are doing (its pending activities): the steps in flight, or
    the one being retried."""
    if description is None:
        return Cell(state=CellState.RUNNING)  # the release has not started it yet
    if _unclaimed(description):
        return Cell(state=CellState.RUNNING, activity="waiting for a worker")
    pending = description.raw_description.pending_activities
    if failing := [activity for activity in pending if activity.HasField("last_failure")]:
        retried = max(failing, key=lambda activity: activity.attempt)
        return Cell(
            state=CellState.RETRYING,
            activity=retried.activity_type.name,
            attempt=retried.attempt - 1,  # the attempt that failed; the next one is pending
            error=retried.last_failure.message,
        )
    steps = " + ".join(sorted(activity.activity_type.name for activity in pending))
    return Cell(state=CellState.RUNNING, activity=steps)


def _unclaimed(description: WorkflowExecutionDescription) -> str:
    """The task queue of a step no worker has taken for UNCLAIMED_SECONDS ("": none)."""
    now = datetime.now(UTC)
    for activity in description.raw_description.pending_activities:
        waited = (now - activity.scheduled_time.ToDatetime(tzinfo=UTC)).total_seconds()
        scheduled = activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
        if scheduled and waited > UNCLAIMED_SECONDS:
            return activity.activity_options.task_queue.name or description.task_queue
    return ""


# --- The commands about a running or finished release: --status, --approve, ... --cancel -------


async def status_of(client: Client, key: str) -> list[str]:
    """The progress grid of release key, running or finished (a worker answers the query)."""
    return await status_lines(client, await _release_handle(client, key, must_run=False))


async def status_lines(client: Client, handle: ReleaseHandle) -> list[str]:
    """The progress grid of the release of handle, as --status prints it."""
    progress = await read_progress(client, handle)
    closed = (await handle.describe()).status
    if closed in (WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT):
        # It ran none of its code after that: its own status is of before, and it takes nothing.
        ended = await _how_it_ended(handle)
        progress = _stale(progress, ended[0].upper() + ended[1:], "when it ended")
    return format_progress(progress)


async def decide(client: Client, key: str, gate: Environment, by: str, reason: str | None) -> str:
    """Approve (reason None) or reject the gate before environment gate that release key is at."""
    if reason is None:
        approve = ApproveInput(gate=gate, by=by)
        return await send_update(client, key, ReleaseWorkflow.approve, approve)
    reject = RejectInput(gate=gate, by=by, reason=reason)
    return await send_update(client, key, ReleaseWorkflow.reject, reject)


async def send_update(client: Client, key: str, update: ReleaseUpdate[ArgT], request: ArgT) -> str:
    """Send release key an Update and return its answer, once a worker has answered a query (an
    Update no worker takes would wait unseen). A worker that cannot replay the release gets it all
    the same: the server holds it for one that can, unless the workflow task keeps failing."""
    handle = await _release_handle(client, key)
    cannot_run = None
    try:
        await _ask(client, handle, ReleaseWorkflow.status)
    except ReleaseCannotRun as err:
        if err.failing:  # the server refuses an Update now, and drops the one it holds
            raise
        cannot_run = err
    try:
        return await asyncio.wait_for(handle.execute_update(update, request), ANSWER_SECONDS)
    except WorkflowUpdateFailedError as err:
        raise StarterError(root_message(err)) from None
    # The SDK says a cancelled wait (wait_for's) in its own words.
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        if cannot_run:
            raise StarterError(
                f"{cannot_run}. The server holds your request (in memory: a restart loses it) "
                f"for a worker that can run the release: see --status {key}"
            ) from None
        raise StarterError(f"Release {key} did not answer within {ANSWER_SECONDS:g} s") from None


async def cancel(client: Client, key: str, reason: str) -> ReleaseResult:
    """Ask release key to cancel, then wait for it to close: it finishes the changes in flight,
    records CANCELLED and unlocks its environments."""
    handle = await _release_handle(client, key)
    await handle.cancel(reason=reason)
    try:
        await _ask(client, handle, ReleaseWorkflow.status)
    except ReleaseCannotRun as err:
        raise StarterError(f"cancel of release {key} requested, but {err}") from None
    except StarterError:
        raise StarterError(
            f"cancel of release {key} requested, but no worker answered: it takes effect once "
            f"`python run_worker.py` runs (task queue {TASK_QUEUE})"
        ) from None
    print(fitted(f"Cancelling release {key}: the changes in flight finish first."), flush=True)
    try:
        return await _result(client, handle, key)
    except RunReset:
        raise StarterError(
            f"Release {key} was reset while it cancelled: its new run goes on (--status {key})"
        ) from None


async def _release_handle(client: Client, key: str, must_run: bool = True) -> ReleaseHandle:
    """The release's handle, once the server knows it (and, with must_run, that it runs)."""
    workflow_id = await trains.release_workflow_id(client, key)
    handle = client.get_workflow_handle_for(ReleaseWorkflow.run, workflow_id)
    try:
        description = await handle.describe(rpc_timeout=timedelta(seconds=ANSWER_SECONDS))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise StarterError(f"Release {key} has never run on this server") from None
        raise
    await _refuse_another_release(client, handle, key)
    if must_run and description.status != WorkflowExecutionStatus.RUNNING:
        raise StarterError(f"Release {key} is not running: {await _how_it_ended(handle)}")
    return handle


async def _refuse_another_release(client: Client, handle: ReleaseHandle, key: str) -> None:
    """Refuse a workflow started by hand under key's ID that is no release of key (workflows.py
    refuses it at its start, but its key may be one that ID begins with)."""
    started_for = await _release_key_of(client, handle)
    if started_for is None:
        raise StarterError(
            f"Workflow {handle.id} is no release: it runs another workflow type under release "
            f"{key}'s ID, so nothing was sent to it, and {key} cannot start until it has ended "
            f"(temporal workflow describe --workflow-id {handle.id} says what it is)"
        )
    if started_for != key:
        raise StarterError(
            f"Workflow {handle.id} runs release {shown(started_for)!r}, not {key}: it was "
            f"started by hand under another release's key, so nothing was sent to it. Start "
            f"{key} with `python run_workflow.py {key}` once it has ended"
        )


async def _release_key_of(client: Client, handle: ReleaseHandle) -> str | None:
    """The release key a workflow was started with, as the server recorded its input ("": its
    input is not a release's; None: it is no release workflow)."""
    async for event in handle.fetch_history_events(page_size=1):
        started = event.workflow_execution_started_event_attributes
        if started.workflow_type.name != trains.RELEASE_WORKFLOW:
            return None
        if len(started.input.payloads) != 1:
            return ""
        try:
            (request,) = await client.data_converter.decode(started.input.payloads, [ReleaseInput])
        except Exception:  # an input the converter cannot read, whatever it raises, is no key
            return ""
        return str(request.release_key)
    return ""


async def _how_it_ended(handle: ReleaseHandle) -> str:
    """How a closed release ended, from the server (no worker needed)."""
    try:
        return f"it ended {(await handle.result()).ending()}"
    except WorkflowFailureError as err:
        if isinstance(err.cause, CancelledError):
            return "it was cancelled"
        if isinstance(err.cause, TerminatedError):
            return "it was terminated"
        return f"it failed: {root_message(err)}"


# --- Asking a release through a worker: a query, or why none answers -----------------------------


async def _ask(client: Client, handle: ReleaseHandle, query: Callable[[ReleaseWorkflow], T]) -> T:
    """Query the release through a worker, or say in one line why no worker answers, or that the
    worker cannot run the release (ReleaseCannotRun)."""
    try:
        return await asyncio.wait_for(
            handle.query(query, rpc_timeout=timedelta(seconds=ANSWER_SECONDS)),
            ANSWER_SECONDS + 1,
        )
    except (TimeoutError, RPCError) as err:
        if isinstance(err, RPCError) and err.status not in NO_WORKER_STATUSES:
            raise
        raise await _no_answer(client, handle) from None
    except WorkflowQueryFailedError as err:
        if NONDETERMINISM in str(err):  # to answer, the worker replays the release, and cannot
            cannot = f"Release {handle.id} cannot run on the worker's code: {err}"
            raise ReleaseCannotRun(cannot, CANNOT_REPLAY) from None
        raise StarterError(f"Release {handle.id} cannot say: {err}") from None


async def _no_answer(client: Client, handle: ReleaseHandle) -> StarterError:
    """Why a query got no answer: no worker (of the version the release is pinned to), or a
    workflow task that keeps failing. Raises RPCError (UNAVAILABLE) if Temporal does not answer."""
    queue, pinned_to = TASK_QUEUE, ""
    try:
        description = await handle.describe(rpc_timeout=timedelta(seconds=ANSWER_SECONDS))
        queue = description.task_queue
        if (failed := description.raw_description.pending_workflow_task.attempt - 1) > 0:
            why = f"its workflow task has failed {failed} time{'s' if failed > 1 else ''}"
            why += await _why_its_task_fails(handle)
            return ReleaseCannotRun(
                f"Release {handle.id} cannot run: {why}. It stays Running, nothing lost, until a "
                "worker can run it",
                f"stuck, not lost: {why}",
                failing=True,
            )
        pinned_to = await _pinned_to_an_old_version(client, description)
    except RPCError as err:
        if err.status == RPCStatusCode.UNAVAILABLE:
            raise
    if pinned_to:
        return StarterError(
            f"no worker of version {pinned_to} answered for release {handle.id}, which is pinned "
            f"to that version of the plan: it waits, nothing lost, for a worker of it (task queue "
            f"{queue}), or to be moved on purpose (demos.md, 'Ship a new version of the plan "
            "while releases wait')",
            f"waiting for a worker of version {pinned_to}, which it is pinned to: none answers on "
            f"task queue {queue!r}",
        )
    return StarterError(
        f"no worker answered for release {handle.id}: is `python run_worker.py` running (task "
        f"queue {queue})? Start it and try again",
        _none_answers(queue),
    )


async def _pinned_to_an_old_version(
    client: Client, description: WorkflowExecutionDescription
) -> str:
    """The build ID of the version the release is pinned to (Worker Versioning), if that is not
    its deployment's current version; "" otherwise."""
    info = description.raw_description.workflow_execution_info.versioning_info
    if info.versioning_override.auto_upgrade:  # told to follow the current version
        return ""
    if info.versioning_override.HasField("pinned"):  # moved on purpose (demos.md)
        pinned = info.versioning_override.pinned.version
    elif info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED:
        pinned = info.deployment_version
    else:
        return ""
    current, _ = await versioning.current_build(client, pinned.deployment_name)
    return pinned.build_id if pinned.build_id and pinned.build_id != current else ""


async def _why_its_task_fails(handle: ReleaseHandle) -> str:
    """A colon and why the workflow task failed, as the history says (the first of a run of
    failures; the others are not written down); "" if it does not say."""
    why = ""
    async for event in handle.fetch_history_events(rpc_timeout=timedelta(seconds=ANSWER_SECONDS)):
        if event.HasField("workflow_task_failed_event_attributes"):
            why = shown(event.workflow_task_failed_event_attributes.failure.message)
    return f": {why[:DETAIL_CHARACTERS]}" if why else ""
