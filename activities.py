"""Activities: each runs one release_management step for Temporal, through _run: paced, while it
heartbeats, on a thread, its errors sorted once (_as_temporal_error) so no workflow lists them."""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from temporalio import activity
from temporalio.client import WorkflowHistoryEventFilterType
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

import files
import lookups
import records
import release_management
import rollback
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
    InjectedFailure,
    NotifyInput,
    RecordReleaseInput,
    Release,
    ReleaseError,
    ReleaseInput,
    SourceMissing,
    Unhealthy,
    UpdateConfigInput,
    VerificationError,
    VerifyInput,
    VerifyRollbackInput,
    shown,
)
from utils import step_seconds

# The attempt of verify_deploy from which a failed health check is final: the deploy rolls back.
HEALTH_CHECK_ATTEMPTS = 3
# More often than the SDK sends heartbeats, so that one is always waiting to go (README, Tuning).
HEARTBEAT_SECONDS = 0.25
# A worker runs at most this many activities at once, each step on a thread of its own.
MAX_CONCURRENT_ACTIVITIES = 20
_STEP_THREADS = ThreadPoolExecutor(MAX_CONCURRENT_ACTIVITIES, thread_name_prefix="step")
# Temporal refuses a payload (a step's input or result) over 2 MB: the server's default limit.
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024

T = TypeVar("T")


class StepInput(Protocol):
    """A step's input: the demo root its release was started for ("": any), and its log name."""

    @property
    def demo_root(self) -> str: ...

    def log_name(self, step: str) -> str: ...


Input = TypeVar("Input", bound=StepInput)


async def _run(step: Callable[[Input], T], request: Input, label: str, paced: bool = True) -> T:
    """Run a step as this activity: paced (DEMO_STEP_SECONDS) while it heartbeats, on a thread."""
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
    """The error Temporal sees for a step's error, logged in one line: bad input fails the release
    at once, a deploy still unhealthy at HEALTH_CHECK_ATTEMPTS rolls back, the rest is retried."""
    if isinstance(err, ReleaseError):
        activity.logger.error(f"{name}: refused: {err}")
        return _expected_error(str(err), ErrorType.RELEASE_ERROR, final=True)
    if isinstance(err, Unhealthy):  # before VerificationError, of which it is a kind
        final = attempt >= HEALTH_CHECK_ATTEMPTS
        then = "the deploy will be rolled back" if final else "Temporal will retry"
        activity.logger.warning(f"{name}: unhealthy (attempt {attempt}): {err}; {then}")
        return _expected_error(str(err), ErrorType.UNHEALTHY, final)
    # OSError: the machine's trouble (a full disk, say), retried until it is put right.
    if isinstance(err, InjectedFailure | SourceMissing | VerificationError | OSError):
        activity.logger.warning(f"{name}: failed (attempt {attempt}): {err}; Temporal will retry")
        return _expected_error(str(err), type(err).__name__, final=False)
    return err  # a bug (or a planted one): Temporal retries it, with its traceback


def _expected_error(message: str, type: str, final: bool) -> ApplicationError:
    # BENIGN: an error expected, not a bug, which the SDK logs without a traceback.
    category = ApplicationErrorCategory.BENIGN
    return ApplicationError(message, type=type, non_retryable=final, category=category)


async def _heartbeat_forever() -> None:
    while True:  # the first after one interval: a step done by then costs the server no call
        await asyncio.sleep(HEARTBEAT_SECONDS)
        activity.heartbeat()


def _check_demo_root(for_root: str) -> None:
    """Two workers with different DEMO_ROOTs on one task queue would split a release's files."""
    here = files.demo_root().resolve()
    if for_root and Path(for_root) != here:
        raise _expected_error(
            f"this worker serves demo root {here}, but the release was started for {for_root}: "
            f"workers with different DEMO_ROOTs poll task queue {activity.info().task_queue}. Run "
            "one worker per demo root, or give each its own DEMO_TASK_QUEUE",
            ErrorType.WRONG_DEMO_ROOT,
            final=True,
        )


def _fits_in_a_payload(name: str, result: T) -> T:
    """result, unless the server would refuse it: then a final error (no retry makes it smaller)."""
    size = sum(payload.ByteSize() for payload in activity.payload_converter().to_payloads([result]))
    if size <= MAX_PAYLOAD_BYTES:
        return result
    message = (
        f"{name}: its result is {size / 1024 / 1024:.1f} MB, over Temporal's payload limit of "
        f"{MAX_PAYLOAD_BYTES // 1024 // 1024} MB; shorten what the catalog gives it"
    )
    activity.logger.error(message)
    raise _expected_error(message, ErrorType.PAYLOAD_TOO_LARGE, final=True)


async def _to_thread(step: Callable[[Input], T], request: Input) -> T:
    """Run a step on a step thread. A thread cannot be stopped: a cancelled activity waits for it
    to end before it reports the cancel, so no file changes after the workflow hears it stopped."""
    thread = asyncio.get_running_loop().run_in_executor(_STEP_THREADS, step, request)
    try:
        return await asyncio.shield(thread)
    except asyncio.CancelledError:
        await asyncio.wait([thread])
        raise


# The activities of a release: each runs the step of its name, paced unless it changes nothing
# the release is about (an announcement, a look at an environment, a record of no release).


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
    return await _run(rollback.rollback_deploy, request, "rollback")


@activity.defn
async def verify_rollback(request: VerifyRollbackInput) -> None:
    return await _run(rollback.verify_rollback, request, "verify rollback")


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
    """Record how a release run that wrote no record ended (terminated, timed out), as the server
    tells it: its lock runs this once the release's deploys have closed."""
    client = activity.client()
    handle = client.get_workflow_handle(request.release_workflow_id, run_id=request.release_run_id)
    described = await handle.describe()
    detail = ""
    closing = WorkflowHistoryEventFilterType.CLOSE_EVENT
    async for event in handle.fetch_history_events(event_filter_type=closing):
        if event.HasField("workflow_execution_terminated_event_attributes"):
            terminated = event.workflow_execution_terminated_event_attributes
            reason = shown(terminated.reason)[:MAX_REASON_LENGTH] or "no reason given"
            detail = f"{reason} (by {shown(terminated.identity)[:MAX_NAME_LENGTH] or '?'})"
    ending = Ending(
        release_key=request.release_key,
        release_run_id=request.release_run_id,
        how=described.status.name.replace("_", " ") if described.status else "CLOSED",
        detail=detail,
        started=described.start_time.isoformat(),
        finished=(described.close_time or described.start_time).isoformat(),
    )
    return await _run(records.record_ending, ending, "record its ending", False)


# The steps on one environment's files: what its own worker runs (run_worker.py --env ENV), on
# its own task queue (builds go with DEV's).
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
    lookups.find_lock_holder,
    lookups.find_deploys_in_flight,
    record_ending,
    lookups.release_run_now,
    lookups.is_run_of_release,
    lookups.wait_until_closed,
]
