"""Activities: each one step of release_management, driven by Temporal.

One generic wrapper (_run) makes every step an activity: it paces the step (DEMO_STEP_SECONDS)
while heartbeating, runs it on a thread, and sorts its errors, once, so no workflow has to list
them (the steps log what they did; the wrapper logs retries and refusals):
- bad input (ReleaseError) is non-retryable: the release fails at once with its message;
- injected failures, missing sources and failed verifications are retried by Temporal;
- anything else is a bug: Temporal retries it until a fixed worker takes over.
"""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from temporalio import activity
from temporalio.client import (
    WorkflowHistoryEventFilterType,
)
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

import files
import records
import release_management
from lookups import (
    find_deploys_in_flight,
    find_lock_holder,
    is_run_of_release,
    release_run_now,
    wait_until_closed,
)
from release_management import (
    InjectedFailure,
    ReleaseError,
    SourceMissing,
    Unhealthy,
    VerificationError,
)
from shared import (
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    ArtifactRef,
    CheckPromotionInput,
    DeployArtifactInput,
    Deployment,
    Ending,
    EndingInput,
    EnvironmentVersions,
    ErrorType,
    HeldIn,
    HoldingsInput,
    NotifyInput,
    RecordReleaseInput,
    Release,
    ReleaseInput,
    UpdateConfigInput,
    VerifyInput,
    VerifyRollbackInput,
    shown,
)
from utils import step_seconds

# The attempt of verify_deploy from which a failed health check is final: the deploy rolls back.
HEALTH_CHECK_ATTEMPTS = 3

# Heartbeat more often than the SDK sends heartbeats (every 0.5 s), so one is always waiting to
# go: the workflows' heartbeat timeout (1 s) then notices a dead worker quickly.
HEARTBEAT_SECONDS = 0.25

# A worker runs at most this many activities at once (run_worker passes it to the Worker), and
# each runs its blocking step on a thread of its own: a step never waits for a free thread.
MAX_CONCURRENT_ACTIVITIES = 20
_STEP_THREADS = ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES, thread_name_prefix="step")

# Temporal refuses a payload (a step's input or result) over 2 MB: the server's default limit.
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024

T = TypeVar("T")


async def _heartbeat_forever() -> None:
    # The first heartbeat waits one interval: a step done by then (most are, unpaced) never
    # heartbeats, which saves the server a call per step.
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        activity.heartbeat()


class StepInput(Protocol):
    """What every release_management step's input says: the demo root its release was started
    for ("": any), and how the log names the step."""

    @property
    def demo_root(self) -> str: ...

    def log_name(self, step: str) -> str: ...


Input = TypeVar("Input", bound=StepInput)


async def _run(step: Callable[[Input], T], request: Input, label: str, paced: bool = True) -> T:
    """Run one release_management step as this activity: pace it (if paced), heartbeat, run it
    on a thread, and sort its errors (module docstring). label: the step's name in the log."""
    name = request.log_name(label)
    _check_demo_root(request.demo_root)
    attempt = activity.info().attempt
    if attempt > 1:
        activity.logger.info(f"{name}: retrying (attempt {attempt})")
    heartbeat = asyncio.create_task(_heartbeat_forever())
    try:
        await asyncio.sleep(step_seconds() if paced else 0)
        result = await _to_thread(step, request)
    except Exception as err:
        raise _as_temporal_error(err, name, attempt) from None
    finally:
        heartbeat.cancel()
    return _fits_in_a_payload(name, result)


def _as_temporal_error(err: Exception, name: str, attempt: int) -> Exception:
    """The error Temporal should see for a step's error, logged in one line."""
    if isinstance(err, ReleaseError):
        activity.logger.error(f"{name}: refused: {err}")
        return _application_error(err, ErrorType.RELEASE_ERROR, non_retryable=True)
    if isinstance(err, Unhealthy):  # before VerificationError, of which it is a kind
        # A failed health check is retried a few times, then final: the deploy rolls back.
        final = attempt >= HEALTH_CHECK_ATTEMPTS
        then = "the deploy will be rolled back" if final else "Temporal will retry"
        activity.logger.warning(f"{name}: unhealthy (attempt {attempt}): {err}; {then}")
        return _application_error(err, ErrorType.UNHEALTHY, non_retryable=final)
    if isinstance(err, InjectedFailure | SourceMissing | VerificationError | OSError):
        # OSError: the machine's trouble (a full disk, a read-only folder), retried until it is
        # put right, with one line per attempt rather than a traceback.
        activity.logger.warning(f"{name}: failed (attempt {attempt}): {err}; Temporal will retry")
        return _application_error(err, type(err).__name__, non_retryable=False)
    return err  # a bug (or a planted one): Temporal retries it, with its traceback


def _application_error(err: Exception, type: str, non_retryable: bool) -> ApplicationError:
    # BENIGN keeps the SDK from logging a traceback: the error is expected, not a bug.
    return ApplicationError(
        str(err), type=type, non_retryable=non_retryable, category=ApplicationErrorCategory.BENIGN
    )


def _check_demo_root(for_root: str) -> None:
    """Refuse a step of a release started for another demo root than this worker's: two workers
    with different DEMO_ROOTs on one task queue would split a release's files between them."""
    here = files.demo_root().resolve()
    if not for_root or Path(for_root) == here:
        return
    raise ApplicationError(
        f"this worker serves demo root {here}, but the release was started for {for_root}: "
        f"workers with different DEMO_ROOTs poll task queue {activity.info().task_queue}. Run "
        "one worker per demo root, or give each its own DEMO_TASK_QUEUE",
        type=ErrorType.WRONG_DEMO_ROOT,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


def _fits_in_a_payload(name: str, result: T) -> T:
    """result, if Temporal will take it; else a non-retryable error that says why (the server
    refuses a payload over its limit, and no retry would make it smaller)."""
    size = sum(payload.ByteSize() for payload in activity.payload_converter().to_payloads([result]))
    if size <= MAX_PAYLOAD_BYTES:
        return result
    message = (
        f"{name}: its result is {size / 1024 / 1024:.1f} MB, over Temporal's payload limit of "
        f"{MAX_PAYLOAD_BYTES // 1024 // 1024} MB; shorten what the catalog gives it"
    )
    activity.logger.error(message)
    raise ApplicationError(
        message,
        type=ErrorType.PAYLOAD_TOO_LARGE,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


async def _to_thread(step: Callable[..., T], *args: Any) -> T:
    """Run a blocking step on a step thread. A thread cannot be stopped: when the activity is
    cancelled (its release was cancelled, its heartbeat lapsed, or the worker is shutting down),
    it waits for the step's thread to end before it reports the cancel, so nothing changes files
    after the workflow is told the step stopped."""
    thread = asyncio.get_running_loop().run_in_executor(
        _STEP_THREADS, functools.partial(step, *args)
    )
    try:
        return await asyncio.shield(thread)
    except asyncio.CancelledError:
        await asyncio.wait([thread])
        raise


# The activities of a release: each runs the release_management step of its name (whose
# docstring says what it does), paced unless it changes nothing the release is about (an
# announcement, a look at what an environment holds, the record of a run with no release).


@activity.defn
async def gather_release(request: ReleaseInput) -> Release:
    return await _run(release_management.gather_release, request, "gather")


@activity.defn
async def check_promotion(request: CheckPromotionInput) -> EnvironmentVersions:
    return await _run(release_management.check_promotion, request, "check promotion")


@activity.defn
async def held_in(request: HoldingsInput) -> HeldIn:
    return await _run(release_management.held_in, request, "held", paced=False)


@activity.defn
async def build_artifact(request: Deployment) -> bool:
    return await _run(release_management.build_artifact, request, "build")


@activity.defn
async def fetch_artifact(request: Deployment) -> ArtifactRef:
    return await _run(release_management.fetch_artifact, request, "fetch artifact")


@activity.defn
async def fetch_config(request: Deployment) -> dict[str, str | int]:
    return await _run(release_management.fetch_config, request, "fetch config")


@activity.defn
async def deploy_artifact(request: DeployArtifactInput) -> bool:
    return await _run(release_management.deploy_artifact, request, "deploy")


@activity.defn
async def update_config(request: UpdateConfigInput) -> bool:
    return await _run(release_management.update_config, request, "configure")


@activity.defn
async def verify_deploy(request: VerifyInput) -> None:
    return await _run(release_management.verify_deploy, request, "verify")


@activity.defn
async def rollback_deploy(request: Deployment) -> str | None:
    return await _run(release_management.rollback_deploy, request, "rollback")


@activity.defn
async def verify_rollback(request: VerifyRollbackInput) -> None:
    return await _run(release_management.verify_rollback, request, "verify rollback")


@activity.defn
async def notify(request: NotifyInput) -> bool:
    return await _run(release_management.notify, request, "notify", paced=False)


@activity.defn
async def record_unstarted(request: Ending) -> str:
    return await _run(records.record_unstarted, request, "record", paced=False)


@activity.defn
async def record_release(request: RecordReleaseInput) -> str:
    return await _run(records.record_release, request, "record")


@activity.defn
async def record_ending(request: EndingInput) -> str:
    """Record how a release run that wrote no record ended (terminated, timed out), as the
    server tells it: its lock runs this once the release's deploys have closed."""
    handle = activity.client().get_workflow_handle(
        request.release_workflow_id, run_id=request.release_run_id
    )
    described = await handle.describe()
    detail = ""
    async for event in handle.fetch_history_events(
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
    ):
        if event.HasField("workflow_execution_terminated_event_attributes"):
            terminated = event.workflow_execution_terminated_event_attributes
            reason = shown(terminated.reason)[:MAX_REASON_LENGTH] or "no reason given"
            detail = f"{reason} (by {shown(terminated.identity)[:MAX_NAME_LENGTH] or '?'})"
    status = described.status.name.replace("_", " ") if described.status else "CLOSED"
    ending = Ending(
        release_key=request.release_key,
        release_run_id=request.release_run_id,
        how=status,
        detail=detail,
        started=described.start_time.isoformat(),
        finished=(described.close_time or described.start_time).isoformat(),
    )
    return await _run(records.record_ending, ending, "record its ending", False)


# The steps that work on one environment's files: what a worker of that environment's own runs
# (run_worker.py --env ENV), on its own task queue (builds go with DEV's).
ENVIRONMENT_STEPS: list[Callable[..., Any]] = [
    held_in,
    build_artifact,
    fetch_artifact,
    fetch_config,
    deploy_artifact,
    update_config,
    verify_deploy,
    rollback_deploy,
    verify_rollback,
]

ALL_ACTIVITIES: list[Callable[..., Any]] = [
    gather_release,
    check_promotion,
    *ENVIRONMENT_STEPS,
    notify,
    record_release,
    record_unstarted,
    find_lock_holder,
    find_deploys_in_flight,
    record_ending,
    release_run_now,
    is_run_of_release,
    wait_until_closed,
]
