"""Terminal 3: the starter. It starts a release and waits for its result.

    python run_workflow.py              runs the release selected below
    python run_workflow.py KEY          runs release KEY instead
    python run_workflow.py --list       prints the catalog
    python run_workflow.py --envs       prints what each environment holds
    python run_workflow.py --history    prints the latest release runs (from the records)
    python run_workflow.py --history --env ENV | --component NAME
                                        prints the latest deploys to ENV and/or of NAME (from
                                        the server, by their search attributes)
    python run_workflow.py --status KEY prints the progress grid of release KEY
    python run_workflow.py --approve KEY --gate ENV --by NAME
    python run_workflow.py --reject KEY --gate ENV --by NAME --reason TEXT
                                        decide at the approval gate before ENV
    python run_workflow.py --cancel KEY [--reason TEXT]
                                        cancel release KEY: it stops cleanly and says so
    python run_workflow.py --skip-soak KEY --by NAME
                                        end the soak release KEY is in: it promotes at once
    python run_workflow.py --schedule KEY --every INTERVAL | --at TIME
                                        a release train: start KEY every INTERVAL (30s, 10m,
                                        1h, 1d) or once at TIME (2026-12-01T09:00:00Z)
    python run_workflow.py --schedules  prints the release trains
    python run_workflow.py --unschedule KEY
                                        deletes the train of release KEY

If that release is already running, it attaches to the running release and waits for it.
This file holds the command line and the calls to Temporal; display.py draws what it shows.
"""

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeAlias, TypeVar

from temporalio.api.enums.v1 import PendingActivityState, VersioningBehavior
from temporalio.api.workflow.v1 import PendingActivityInfo
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
import search_attributes
import trains
import versioning
from catalog import load_catalog, load_release
from connection import TemporalUnreachable, connect, exit_now, output_closed, web_ui_url
from display import (
    LiveGrid,
    OneLineParser,
    ProgressLog,
    Train,
    fitted,
    format_catalog,
    format_deploys,
    format_environments,
    format_history,
    format_progress,
    format_trains,
    table_time,
    terminal_width,
    when_words,
)
from outages import DETAIL_CHARACTERS, NONDETERMINISM
from shared import (
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    TASK_QUEUE,
    WORKFLOW_TASK_TIMEOUT,
    ApproveInput,
    Cell,
    CellState,
    Environment,
    Outcome,
    RejectInput,
    Release,
    ReleaseError,
    ReleaseInput,
    ReleaseProgress,
    ReleaseResult,
    SkipSoakInput,
    deploy_workflow_id,
    root_message,
    shown,
    visible,
)
from utils import check_demo_root, check_task_queue, environment_argument, own_workers
from workflows import ReleaseWorkflow

# Pick the release to run: uncomment one line (demos.md runs all six, in this order). The name
# is the original demo's, as its docs use it.
releasekey = "RELEASE-NOV-23-INITIAL"
# releasekey = "RELEASE-NOV-23-HOTFIX-STAGE"
# releasekey = "RELEASE-DEC-2023-BUGFIXES-PROD"
# releasekey = "RELEASE-JAN-24-ALPHA-DEV"
# releasekey = "RELEASE-JAN-24-ALPHA-QC"
# releasekey = "RELEASE-JAN-24-ALPHA-PROD"


# How long the starter keeps trying to reach a server that went away (say, for a restart).
RECONNECT_SECONDS = 120
# How often the starter asks the release what it is doing.
STATUS_SECONDS = 1.0
# How long a command (--status, --approve, --reject, --cancel) waits for an answer.
ANSWER_SECONDS = 3.0
# The commands that ask a release through Temporal, each naming the release KEY it is about.
RELEASE_COMMANDS = ("status", "approve", "reject", "cancel", "skip_soak")

# A handle on a release run: its queries, updates and result keep their types.
ReleaseHandle: TypeAlias = WorkflowHandle[ReleaseWorkflow, ReleaseResult]
T = TypeVar("T")
ArgT = TypeVar("ArgT")  # an Update's input


class StarterError(Exception):
    """A reason to stop that the user can act on: printed as one line, exit status 1."""


class NoWorker(StarterError):
    """No worker answered for the release, whose workflows run on task_queue; pinned_to, the
    version of the plan it is pinned to when that is not the current one ("" otherwise)."""

    def __init__(self, message: str, task_queue: str, pinned_to: str = "") -> None:
        super().__init__(message)
        self.task_queue = task_queue
        self.pinned_to = pinned_to


class ReleaseFailed(StarterError):
    """The release failed, for reason."""

    def __init__(self, release_key: str, reason: str) -> None:
        super().__init__(f"Release {release_key} failed: {reason}")
        self.release_key, self.reason = release_key, reason

    def shorter(self) -> StarterError:
        """The failure, said where its reason is shown already."""
        return StarterError(f"Release {self.release_key} failed (why: above).")


class ReleaseCannotRun(StarterError):
    """A worker runs, but cannot run the release: its code does not replay the release's history
    (a non-determinism error), or the release's workflow task fails already (failing), for the
    reason why says."""

    def __init__(self, message: str, failing: bool, why: str = "") -> None:
        super().__init__(message)
        self.failing = failing
        self.why = why


async def main(argv: list[str]) -> int:
    """Do what the command line argv asks; return the exit status."""
    args = parse_args(argv)
    try:
        _check_settings(args)
    except ValueError as err:
        return _refuse(err, 2)
    try:
        if args.list:
            print(format_catalog())
            return 0
        if args.envs:
            print(format_environments())
            return 0
        if args.history and (args.env or args.component):
            print(await deploy_history(args.env, args.component, args.limit or HISTORY_ROWS))
            return 0
        if args.history:
            print(format_history(args.limit or HISTORY_ROWS))
            return 0
        if (key := _command_key(args)) is not None:
            return await release_command(args, key)
        if args.schedules or args.schedule or args.unschedule:
            return await train_command(args)
        # Refuse an unknown key here, at once, before anything is started.
        release = load_release(args.key or releasekey)
        client = await connect()
        result = await run_release(client, release)
    except (ReleaseError, StarterError, TemporalUnreachable) as err:
        return _refuse(err, 1)
    print(fitted(f"Result: {shown(str(result))}"))
    print(format_environments())
    return 0 if result.outcome is Outcome.SUCCESS else 1


# --- Run a release: start it or attach to it, and follow it to its result ------------------------


async def run_release(
    client: Client, release: Release, task_queue: str = TASK_QUEUE, workflow_id: str | None = None
) -> ReleaseResult:
    """Start the release (or attach to it if it is already running) and wait for its result.

    The workflow ID is the release key, so one release never runs twice at once; a run that
    the release's train started (trains.py) is attached to as well.
    """
    release_key = release.key
    train_run = None if workflow_id else await _train_run_to_attach(client, release)
    workflow_id = workflow_id or train_run or release_key
    if train_run:  # attached to, never started: its ID is the train's
        handle = client.get_workflow_handle_for(ReleaseWorkflow.run, train_run)
    else:
        handle = await _start_or_attach(client, release, task_queue, workflow_id)
    # The link on a line of its own: it fits an 80-column terminal and is whole to copy.
    print(f"Watch it in the Web UI:\n  {web_ui_url(client, workflow_id)}", flush=True)
    return await _wait_for_result(client, handle, release_key)


async def _start_or_attach(
    client: Client, release: Release, task_queue: str, workflow_id: str
) -> ReleaseHandle:
    """Start the release as workflow_id, or attach to it if it runs already."""
    release_key = release.key
    try:
        handle = await client.start_workflow(
            ReleaseWorkflow.run,
            # Steps refuse to run on a worker that serves another demo root than this one.
            ReleaseInput(release_key=release_key, demo_root=str(files.demo_root().resolve())),
            id=workflow_id,
            task_queue=task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            # The Web UI shows it with the release: what it promotes, and where.
            static_summary=release.summary(),
        )
        print(f"Started release {release_key}.", flush=True)
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(ReleaseWorkflow.run, workflow_id)
        await _refuse_another_release(client, handle, release_key)
        print(f"Release {release_key} is already running: waiting for it.", flush=True)
    return handle


class RunReset(Exception):
    """The release run being followed was reset: handle follows its new run."""

    def __init__(self, handle: ReleaseHandle) -> None:
        super().__init__(handle.result_run_id)
        self.handle = handle


async def _wait_for_result(
    client: Client, handle: ReleaseHandle, release_key: str
) -> ReleaseResult:
    """Wait for the release's result, riding out a server restart and following a reset, and
    say what it is doing."""
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
            raise failed.shorter() if drawn and failed.reason in drawn[-1].status else failed
        # Below the grid of the replaced run; the new run's grid is drawn afresh under it.
        print(
            fitted(
                f"Release {release_key} was reset: following its new run {handle.result_run_id}."
            )
        )


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
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
            if now - lost_since > RECONNECT_SECONDS:
                raise StarterError(
                    f"Temporal has not answered for {RECONNECT_SECONDS} s. The release goes on "
                    "in Temporal: run this again to attach to it."
                ) from None
            await asyncio.sleep(1)


async def _after_termination(
    client: Client, handle: ReleaseHandle, release_key: str
) -> ReleaseHandle:
    """The run to wait for after the one followed was terminated: the new run a reset made, or
    none (a terminate ends a release where it stands; its locks record it)."""
    latest = await client.get_workflow_handle(handle.id).describe()
    if latest.run_id != handle.result_run_id and latest.status == WorkflowExecutionStatus.RUNNING:
        return client.get_workflow_handle_for(ReleaseWorkflow.run, handle.id, run_id=latest.run_id)
    raise StarterError(
        f"Release {release_key} was terminated: Temporal ran none of its code after that. Its "
        "steps in flight finish the change they started, then its environment locks record "
        "how it ended (--history). Run it again to finish it; see --envs for what the "
        "environments hold."
    )


async def _report_progress(
    client: Client, handle: ReleaseHandle, drawn: list[ReleaseProgress]
) -> None:
    """Show the release's progress while it runs, each in drawn too: on a terminal, the grid
    redrawn in place (once the release ends and this task is cancelled, drawn a last time as it
    ended and left on screen); else one plain line per change."""
    if not sys.stdout.isatty():
        log = ProgressLog()
        async for progress in _progress_updates(client, handle):
            log.show(progress)
            drawn.append(progress)
        return
    grid = LiveGrid()
    try:
        async for progress in _progress_updates(client, handle):
            grid.show(progress)
            drawn.append(progress)
    finally:
        last = await _progress_as_it_ended(client, handle)
        grid.close(last)
        drawn.extend([last] if last else [])


async def _progress_updates(
    client: Client, handle: ReleaseHandle
) -> AsyncIterator[ReleaseProgress]:
    """The release's progress every STATUS_SECONDS. When it cannot be known (no worker answers,
    the worker cannot run the release, Temporal does not answer), the last progress, saying
    why and as of when, and offering nothing to do: nothing happens until that changes."""
    last, as_of = ReleaseProgress(release_key=handle.id, status="starting"), _clock()
    while True:
        await asyncio.sleep(STATUS_SECONDS)
        try:
            progress = await _ask(client, handle, ReleaseWorkflow.progress)
            last, as_of = await read_progress(client, handle, progress), _clock()
            yield last
        except (StarterError, RPCError) as err:
            yield _stale(last, _why_unknown(err), as_of)


def _why_unknown(err: Exception) -> str:
    """Why the progress of a release cannot be known now, from what asking for it raised."""
    if isinstance(err, ReleaseCannotRun):
        return CANNOT_REPLAY if not err.failing else f"stuck, not lost: {err.why}"
    if isinstance(err, RPCError):
        return "Temporal does not answer (see above)"
    if isinstance(err, NoWorker) and err.pinned_to:
        return (
            f"waiting for a worker of version {err.pinned_to}, which it is pinned to: none "
            f"answers on task queue {err.task_queue!r}"
        )
    queue = err.task_queue if isinstance(err, NoWorker) else TASK_QUEUE
    return f"waiting for a worker: none answers on task queue {queue!r} (python run_worker.py)"


def _stale(progress: ReleaseProgress, why: str, as_of: str) -> ReleaseProgress:
    """progress as it was (as_of: "at 09:00:00 UTC"), with why it is not newer; without the
    gate or soak to act on."""
    grid = f" The grid is as it was {as_of}." if progress.components else ""
    return progress.model_copy(
        update={
            "status": f"{why}.{grid}",
            "gate": None,
            "gate_expires": None,
            "soak": None,
        }
    )


# The status the starter shows while the worker's code cannot replay the release it follows.
CANNOT_REPLAY = (
    "stuck, not lost: the worker's code cannot replay this release (a non-determinism error; "
    "the worker's terminal says more)"
)


def _clock() -> str:
    return f"at {datetime.now(UTC):%H:%M:%S} UTC"


async def _progress_as_it_ended(client: Client, handle: ReleaseHandle) -> ReleaseProgress | None:
    """The progress of the run followed, as it ended (after a reset, of the run replaced, not
    its new run); None if it does not answer in time."""
    ended = client.get_workflow_handle_for(
        ReleaseWorkflow.run, handle.id, run_id=handle.result_run_id
    )
    try:
        return await asyncio.wait_for(read_progress(client, ended), ANSWER_SECONDS)
    except (RPCError, WorkflowQueryFailedError, TimeoutError):
        return None


async def read_progress(
    client: Client, handle: ReleaseHandle, progress: ReleaseProgress | None = None
) -> ReleaseProgress:
    """The release's progress grid. The release workflow knows the state of each deploy (a
    query, unless progress is its answer already); for each running deploy, the server knows
    the step it is at, its attempt and the last error (its pending activities, as the Web UI
    shows them), so no step has to report."""
    if progress is None:
        progress = await handle.query(ReleaseWorkflow.progress)
    running = [
        (env, component)
        for env, row in progress.cells.items()
        for component, cell in row.items()
        if cell.state is CellState.RUNNING
    ]
    found, own = await asyncio.gather(
        asyncio.gather(
            *(_running_cell(client, deploy_workflow_id(handle.id, env, c)) for env, c in running)
        ),
        _release_steps_waiting(handle),
    )
    grid = {env: dict(row) for env, row in progress.cells.items()}
    for (env, component), (cell, _) in zip(running, found, strict=True):
        grid[env][component] = cell
    status = progress.status
    if waiting := sorted({queue for _, queue in found if queue} | ({own} - {""})):
        queues = ", ".join(repr(queue) for queue in waiting)
        status += f"; its steps wait for a worker on task queue {queues}"
    return progress.model_copy(update={"cells": grid, "status": status})


# A step nobody has taken for this long waits for a worker: none polls its task queue.
UNCLAIMED_SECONDS = 3.0


async def _running_cell(client: Client, deploy_id: str) -> tuple[Cell, str]:
    """What one running deploy is doing: the steps in flight (its pending activities), or the
    one being retried, or that its step waits for a worker (and on which task queue)."""
    try:
        description = await client.get_workflow_handle(deploy_id).describe()
    except RPCError:
        return Cell(state=CellState.RUNNING), ""  # the release has not started it yet
    if queue := _unclaimed(description):
        return Cell(state=CellState.RUNNING, activity="waiting for a worker"), queue
    return _step_cell(description.raw_description.pending_activities), ""


async def _release_steps_waiting(handle: ReleaseHandle) -> str:
    """The task queue on which a step of the release itself waits for a worker ("": none)."""
    try:
        return _unclaimed(await handle.describe())
    except RPCError:
        return ""


def _unclaimed(description: WorkflowExecutionDescription) -> str:
    """The task queue of a step of the workflow that no worker has taken for UNCLAIMED_SECONDS
    ("": none): no worker polls that queue."""
    now = datetime.now(UTC)
    for activity in description.raw_description.pending_activities:
        scheduled = activity.scheduled_time.ToDatetime(tzinfo=UTC)
        if activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED and (
            (now - scheduled).total_seconds() > UNCLAIMED_SECONDS
        ):
            return activity.activity_options.task_queue.name or description.task_queue
    return ""


def _step_cell(pending: Sequence[PendingActivityInfo]) -> Cell:
    """A running deploy's cell: the steps in flight, or the one being retried."""
    failing = [activity for activity in pending if activity.HasField("last_failure")]
    if failing:
        retried = max(failing, key=lambda activity: activity.attempt)
        return Cell(
            state=CellState.RETRYING,
            activity=retried.activity_type.name,
            attempt=retried.attempt - 1,  # the attempt that failed; the next one is pending
            error=retried.last_failure.message,
        )
    steps = sorted(activity.activity_type.name for activity in pending)
    return Cell(state=CellState.RUNNING, activity=" + ".join(steps))


# --- The commands about a running or finished release: --status, --approve, ... --skip-soak ---


def _command_key(args: argparse.Namespace) -> str | None:
    """The release key a command names, or None when the command line runs a release or prints
    a table."""
    return next((k for c in RELEASE_COMMANDS if (k := getattr(args, c)) is not None), None)


async def release_command(args: argparse.Namespace, key: str) -> int:
    """A command about one release (RELEASE_COMMANDS): it answers within seconds or says why."""
    keys = load_catalog().release_keys()
    if key not in keys:
        raise StarterError(f"Unknown release key {key!r}. Valid keys: {', '.join(keys)}")
    client = await connect()
    try:
        return await _answer(client, args, key)
    except RPCError as err:
        raise StarterError(f"Temporal did not answer as expected: {err.message}") from None


async def _answer(client: Client, args: argparse.Namespace, key: str) -> int:
    """Run the command args names about release key; print its answer; return the exit status."""
    if args.status is not None:
        print("\n".join(await status_of(client, key)))
        return 0
    if args.cancel is not None:
        result = await cancel(client, key, args.reason or "")
        print(fitted(f"Result: {shown(str(result))}"))
        return 0 if result.outcome is Outcome.CANCELLED else 1
    if args.skip_soak is not None:
        request = SkipSoakInput(by=args.by or "")
        print(fitted(shown(await send_update(client, key, ReleaseWorkflow.skip_soak, request))))
        return 0
    if args.gate is None:
        raise StarterError(f"say which gate you decide: --gate ENV (see --status {key})")
    reason = None if args.approve is not None else args.reason or ""
    print(fitted(shown(await decide(client, key, args.gate, args.by or "", reason))))
    return 0


async def status_of(client: Client, key: str) -> list[str]:
    """The progress grid of release key, running or finished (a worker answers the query)."""
    return await status_lines(client, await _release_handle(client, key, must_run=False))


async def status_lines(client: Client, handle: ReleaseHandle) -> list[str]:
    """The progress grid of the release of handle, as --status prints it."""
    progress = await read_progress(
        client, handle, await _ask(client, handle, ReleaseWorkflow.progress)
    )
    closed = (await handle.describe()).status
    if closed in (WorkflowExecutionStatus.TERMINATED, WorkflowExecutionStatus.TIMED_OUT):
        # It ran none of its code after that: its own status is of before, and it takes nothing.
        ended = await _how_it_ended(handle)
        progress = _stale(progress, ended[0].upper() + ended[1:], "when it ended")
    return format_progress(progress)


async def decide(client: Client, key: str, gate: Environment, by: str, reason: str | None) -> str:
    """Approve (reason None) or reject the gate before the environment gate that release key
    waits at, through an Update, once a worker has answered (an Update that no worker takes
    would wait unseen)."""
    if reason is None:
        return await send_update(
            client, key, ReleaseWorkflow.approve, ApproveInput(gate=gate, by=by)
        )
    request = RejectInput(gate=gate, by=by, reason=reason)
    return await send_update(client, key, ReleaseWorkflow.reject, request)


async def send_update(
    client: Client,
    key: str,
    update: UpdateMethodMultiParam[[ReleaseWorkflow, ArgT], str],
    request: ArgT,
) -> str:
    """Send release key an Update and return its answer, once a worker has answered a query
    (an Update that no worker takes would wait unseen). A worker that cannot run the release's
    code (a non-determinism error) is sent it all the same: the release's workflow task fails,
    where the Web UI shows it, and the server holds the Update for a worker that can run the
    code. Once that workflow task keeps failing, nothing is sent: the server would refuse it."""
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
    """The release's handle, once the server has said it knows the release (and, with must_run,
    that it is still running); else a StarterError that says why not."""
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
    """Raise a StarterError unless the release workflow of handle was started for key: one
    started by hand under an ID that names another release is no release to act on or wait for
    (workflows.py refuses it at its start, but its key may be one that ID begins with)."""
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
    """The release key a release workflow was started with (its input, as the server recorded
    it); "" if its input is not a release's; None if the workflow is no release at all."""
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


# --- Release trains: --schedule, --schedules, --unschedule ---------------------------------------


async def train_command(args: argparse.Namespace) -> int:
    """Create, list or delete release trains (Temporal Schedules that start a release)."""
    keys = load_catalog().release_keys()
    key = args.schedule or args.unschedule
    # A train is removed whatever the catalog says now: its release may have left it since.
    if args.schedule is not None and key not in keys:
        raise StarterError(f"Unknown release key {key!r}. Valid keys: {', '.join(keys)}")
    client = await connect()
    try:
        if args.schedules:
            print(format_trains(await trains.trains(client, keys)))
        elif args.unschedule:
            print(fitted(shown(await trains.unschedule(client, key))))
        else:
            release = load_release(key)
            _say_scheduled(
                client, await trains.schedule_release(client, release, args.every or args.at)
            )
    except trains.TrainError as err:
        return _refuse(err, 1)
    except RPCError as err:
        raise StarterError(f"Temporal did not answer as expected: {err.message}") from None
    return 0


def _say_scheduled(client: Client, train: Train) -> None:
    """What a new train does, when it runs next, and where the Web UI shows it."""
    print(fitted(f"Created train {train.schedule_id}: {when_words(train.when)}."))
    short = terminal_width() is not None
    coming = ", ".join(table_time(moment, short) for moment in train.next_runs[:3])
    print(fitted(f"Next runs{' (UTC)' if short else ''}: {coming or 'none'}"))
    schedules = web_ui_url(client).removesuffix("/workflows") + "/schedules"
    print(f"See it on the Web UI's Schedules page:\n  {schedules}")


async def _train_run_to_attach(client: Client, release: Release) -> str | None:
    """The run of the release's train to attach to, if one runs and no run KEY does (never a
    train's finished run: a release started by hand is KEY)."""
    workflow_id = await trains.train_run_to_attach(client, release.key)
    if workflow_id:
        print(
            fitted(f"Release {release.key} is running on its train, as {workflow_id}."), flush=True
        )
    return workflow_id


# What the client or the server says when no worker answers a query in time: the call timed out
# (CANCELLED or DEADLINE_EXCEEDED), or no worker has polled the task queue lately
# (FAILED_PRECONDITION).
NO_WORKER_STATUSES = (
    RPCStatusCode.CANCELLED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.FAILED_PRECONDITION,
)


async def _ask(client: Client, handle: ReleaseHandle, query: Callable[[ReleaseWorkflow], T]) -> T:
    """Query the release through a worker, or say in one line that no worker answers, or that
    the worker cannot run the release (ReleaseCannotRun)."""
    try:
        return await asyncio.wait_for(
            handle.query(query, rpc_timeout=timedelta(seconds=ANSWER_SECONDS)),
            ANSWER_SECONDS + 1,
        )
    except TimeoutError:
        raise await _no_answer(client, handle) from None
    except RPCError as err:
        if err.status in NO_WORKER_STATUSES:
            raise await _no_answer(client, handle) from None
        raise
    except WorkflowQueryFailedError as err:
        if NONDETERMINISM in str(err):  # to answer, the worker replays the release, and cannot
            cannot = f"Release {handle.id} cannot run on the worker's code: {err}"
            raise ReleaseCannotRun(cannot, failing=False) from None
        raise StarterError(f"Release {handle.id} cannot say: {err}") from None


async def _no_answer(client: Client, handle: ReleaseHandle) -> StarterError:
    """Why a query got no answer: no worker (of the version the release is pinned to), or a
    workflow task that keeps failing (a query waits for it). Raises RPCError (UNAVAILABLE) when
    Temporal itself does not answer."""
    queue, pinned_to = TASK_QUEUE, ""
    try:
        description = await handle.describe(rpc_timeout=timedelta(seconds=ANSWER_SECONDS))
        queue = description.task_queue
        failed = description.raw_description.pending_workflow_task.attempt - 1
        if failed > 0:
            why = (
                f"its workflow task has failed {failed} time{'s' if failed > 1 else ''}"
                f"{await _why_its_task_fails(handle)}"
            )
            return ReleaseCannotRun(
                f"Release {handle.id} cannot run: {why}. It stays Running, nothing lost, until a "
                "worker can run it",
                failing=True,
                why=why,
            )
        pinned_to = await _pinned_to_an_old_version(client, description)
    except RPCError as err:
        if err.status == RPCStatusCode.UNAVAILABLE:
            raise
    if pinned_to:
        return NoWorker(
            f"no worker of version {pinned_to} answered for release {handle.id}, which is pinned "
            f"to that version of the plan: it waits, nothing lost, for a worker of it (task queue "
            f"{queue}), or to be moved on purpose (demos.md, 'Ship a new version of the plan "
            "while releases wait')",
            queue,
            pinned_to,
        )
    return NoWorker(
        f"no worker answered for release {handle.id}: is `python run_worker.py` running (task "
        f"queue {queue})? Start it and try again",
        queue,
    )


async def _pinned_to_an_old_version(
    client: Client, description: WorkflowExecutionDescription
) -> str:
    """The build ID of the version of the plan the release is pinned to (Worker Versioning),
    if that is not its deployment's current version; "" otherwise."""
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
    """A colon and why the release's workflow task failed, as its history says (the first failure
    of a run of them; the others are not written down); "" if it does not say."""
    why = ""
    async for event in handle.fetch_history_events(rpc_timeout=timedelta(seconds=ANSWER_SECONDS)):
        if event.HasField("workflow_task_failed_event_attributes"):
            failure = event.workflow_task_failed_event_attributes.failure
            why = shown(failure.message)[:DETAIL_CHARACTERS]
    return f": {why}" if why else ""


# --- The history, from the server ---------------------------------------------------------------


async def deploy_history(env: Environment | None, component: str | None, limit: int) -> str:
    """The latest deploys to env and/or of component, found by their search attributes: the
    same answer the Web UI's list gives, filtered by DeployEnvironment and DeployComponent."""
    components = list(load_catalog().components)
    if component is not None and component not in components:
        raise StarterError(f"No component {component!r} in the catalog: use one of {components}")
    client = await connect()
    try:
        found = await search_attributes.find_deploys(client, env, component, limit + 1)
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message:
            raise StarterError(
                f"{err.message}: this server has not registered the demo's search attributes "
                "yet; start the worker (python run_worker.py) once, and it will"
            ) from None
        raise StarterError(f"Temporal did not answer as expected: {err.message}") from None
    return format_deploys(found[:limit], env, component, more=len(found) > limit)


# --- The command line ---------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The starter's command line, or exit 2 with one line saying what is wrong."""
    parser = _parser()
    args = parser.parse_args(argv)
    for option, commands in QUALIFIES.items():
        if getattr(args, option) is not None and not any(getattr(args, c) for c in commands):
            parser.error(f"--{option} goes with {' or '.join(f'--{c}' for c in commands)}")
    if args.schedule is not None and (args.every is None) == (args.at is None):
        parser.error("--schedule takes one of --every INTERVAL or --at TIME")
    return args


# The commands each option qualifies; with none of them, it would be silently ignored.
QUALIFIES = {
    "gate": ("approve", "reject"),
    "by": ("approve", "reject", "skip_soak"),
    "reason": ("reject", "cancel"),
    "every": ("schedule",),
    "at": ("schedule",),
    "env": ("history",),
    "component": ("history",),
    "limit": ("history",),
}


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="run_workflow.py", description="Start a release and wait for its result."
    )
    # One thing at a time: run a release, or one of the commands.
    one = parser.add_mutually_exclusive_group()
    one.add_argument("key", nargs="?", type=_key, help=f"release key (default {releasekey})")
    one.add_argument("--list", action="store_true", help="print the releases in the catalog")
    one.add_argument("--envs", action="store_true", help="print what each environment holds")
    one.add_argument("--history", action="store_true", help="print the latest release runs")
    one.add_argument(
        "--status", metavar="KEY", type=_key, help="print the progress grid of release KEY"
    )
    one.add_argument(
        "--approve", metavar="KEY", type=_key, help="approve the gate KEY is waiting at"
    )
    one.add_argument("--reject", metavar="KEY", type=_key, help="reject the gate KEY is waiting at")
    one.add_argument("--cancel", metavar="KEY", type=_key, help="cancel release KEY")
    one.add_argument(
        "--skip-soak", metavar="KEY", type=_key, help="end the soak release KEY is in, now"
    )
    _add_train_arguments(parser, one)
    _add_decision_arguments(parser)
    _add_history_arguments(parser)
    return parser


def _add_decision_arguments(parser: argparse.ArgumentParser) -> None:
    """What a person says with --approve, --reject, --skip-soak or --cancel."""
    parser.add_argument(
        "--gate",
        type=environment_argument,
        choices=list(Environment),
        help="the environment whose approval gate you decide",
    )
    parser.add_argument(
        "--by",
        metavar="NAME",
        type=_text(MAX_NAME_LENGTH),
        help="who approves, rejects or skips a soak",
    )
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        type=_text(MAX_REASON_LENGTH),
        help="why, when rejecting or cancelling",
    )


def _add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """--history's options: with one, it asks the server instead of reading the records."""
    parser.add_argument(
        "--env",
        type=environment_argument,
        choices=list(Environment),
        help="with --history: the deploys to this environment, from the server",
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=_typed(_limit),
        help=f"with --history: how many rows, newest first (default {HISTORY_ROWS})",
    )
    parser.add_argument(
        "--component",
        metavar="NAME",
        type=_text(MAX_NAME_LENGTH),
        help="with --history: the deploys of this component, from the server",
    )


def _add_train_arguments(parser: argparse.ArgumentParser, one: argparse._ActionsContainer) -> None:
    """The release trains' commands (in the group one, one thing at a time) and their options."""
    one.add_argument(
        "--schedule", metavar="KEY", type=_key, help="make a train: start KEY on a schedule"
    )
    one.add_argument("--schedules", action="store_true", help="print the release trains")
    one.add_argument("--unschedule", metavar="KEY", type=_key, help="delete the train of KEY")
    parser.add_argument(
        "--every",
        metavar="INTERVAL",
        type=_typed(trains.interval),
        help="with --schedule: how often, as 30s, 10m, 1h or 1d",
    )
    parser.add_argument(
        "--at",
        metavar="TIME",
        type=_typed(trains.moment),
        help="with --schedule: once, at an ISO 8601 time such as 2026-12-01T09:00:00Z",
    )


# How many rows --history shows unless --limit says otherwise, and the most it may ask for.
HISTORY_ROWS, MAX_HISTORY_ROWS = 20, 1000


def _limit(text: str) -> int:
    """--limit's N: a whole number of rows, 1 to MAX_HISTORY_ROWS."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_HISTORY_ROWS:
        raise ValueError(f"a whole number from 1 to {MAX_HISTORY_ROWS}, not {text!r}")
    return int(text)


def _key(text: str) -> str:
    """A release key argument: a blank one is refused, not taken for the default release."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a release key cannot be empty; --list shows the keys")
    return text


def _typed(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argument type from a parser that says what is wrong in a ValueError."""

    def typed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return typed


def _text(limit: int) -> Callable[[str], str]:
    """The type of a name or a reason: not blank, at most limit characters, and printable only
    (an escape code or a line break in it would redraw a terminal or forge a line)."""

    def text(value: str) -> str:
        if not visible(value):
            raise argparse.ArgumentTypeError("empty or invisible")
        if not value.isprintable():
            raise argparse.ArgumentTypeError(
                "printable characters only: no escape codes, tabs or line breaks"
            )
        if len(value) > limit:
            raise argparse.ArgumentTypeError(f"at most {limit} characters, not {len(value)}")
        return value

    return text


def _check_settings(args: argparse.Namespace) -> None:
    """The settings this run reads: the demo root always, the task queue to talk to Temporal.

    Raises:
        ValueError: a setting is invalid; the message names it and what to do.
    """
    check_demo_root()
    own_workers()
    if not (args.list or args.envs or args.history):
        check_task_queue()


def _refuse(err: Exception, status: int) -> int:
    """Say why in one line on stderr, whatever the message holds (on a terminal, wrapped
    between words to its width); return status."""
    print(fitted(f"run_workflow.py: {shown(str(err))}", sys.stderr), file=sys.stderr)
    return status


if __name__ == "__main__":
    try:
        code = asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print(
            "\nStopped waiting. The release goes on in Temporal; run again to attach.",
            file=sys.stderr,
        )
        code = 130
    except BrokenPipeError:  # what it printed goes into a pipe nobody reads any more
        code = output_closed()
    exit_now(code)
