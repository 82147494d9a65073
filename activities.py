"""Activities: thin wrappers that let Temporal drive release_management.

Each activity paces itself (DEMO_STEP_SECONDS) while heartbeating, runs its blocking
release_management step on a thread, and logs one line of the release's story. Errors are
sorted here, once, so no workflow has to list them:
- bad input (ReleaseError) is non-retryable: the release fails at once with its message;
- injected failures, missing sources and failed verifications are retried by Temporal;
- anything else is a bug: Temporal retries it until a fixed worker takes over.
"""

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

import release_management
from release_management import (
    InjectedFailure,
    ReleaseError,
    SourceMissing,
    Unhealthy,
    VerificationError,
)
from shared import (
    ArtifactRef,
    CheckPromotionInput,
    DeployArtifactInput,
    Deployment,
    EnvironmentVersions,
    ErrorType,
    GatherReleaseInput,
    LockHolderInput,
    RecordReleaseInput,
    Release,
    UpdateConfigInput,
    VerifyInput,
    VerifyRollbackInput,
    WorkflowRef,
)
from utils import step_seconds

# How many times verification may find a deploy unhealthy before it is rolled back.
HEALTH_CHECK_ATTEMPTS = 3

# Heartbeat more often than the SDK sends heartbeats (run_worker.HEARTBEAT_THROTTLE), so one is
# always waiting to go: the workflows' heartbeat timeout (1 s) then notices a dead worker quickly.
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


async def _step(story: str, for_root: str, step: Callable[..., T], *args: Any) -> T:
    """Run one release_management step: pace, heartbeat, run it on a thread, sort its errors.
    for_root: the demo root its release was started for ("": any)."""
    _check_demo_root(for_root)
    attempt = activity.info().attempt
    if attempt > 1:
        activity.logger.info(f"{story}: retrying (attempt {attempt})")
    heartbeat = asyncio.create_task(_heartbeat_forever())
    try:
        await asyncio.sleep(step_seconds())
        return _fits_in_a_payload(story, await _to_thread(step, *args))
    except ReleaseError as err:
        activity.logger.error(f"{story}: refused: {err}")
        # BENIGN keeps the SDK from logging a traceback: this is the user's input, not a bug.
        raise ApplicationError(
            str(err),
            type=ErrorType.RELEASE_ERROR,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        ) from None
    except Unhealthy as err:
        # A failed health check is retried a few times, then final: the deploy rolls back.
        final = attempt >= HEALTH_CHECK_ATTEMPTS
        then = "the deploy will be rolled back" if final else "Temporal will retry"
        activity.logger.warning(f"{story}: unhealthy (attempt {attempt}): {err}; {then}")
        raise ApplicationError(
            str(err),
            type=ErrorType.UNHEALTHY,
            non_retryable=final,
            category=ApplicationErrorCategory.BENIGN,
        ) from None
    except (InjectedFailure, SourceMissing, VerificationError, OSError) as err:
        # OSError: the machine's trouble (a full disk, a read-only folder), retried until it is
        # put right, with one line per attempt rather than a traceback.
        activity.logger.warning(f"{story}: failed (attempt {attempt}): {err}; Temporal will retry")
        raise ApplicationError(
            str(err), type=type(err).__name__, category=ApplicationErrorCategory.BENIGN
        ) from None
    finally:
        heartbeat.cancel()


def _check_demo_root(for_root: str) -> None:
    """Refuse a step of a release started for another demo root than this worker's: two workers
    with different DEMO_ROOTs on one task queue would split a release's files between them."""
    here = release_management.demo_root().resolve()
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


def _fits_in_a_payload(story: str, result: T) -> T:
    """result, if Temporal will take it; else a non-retryable error that says why (the server
    refuses a payload over its limit, and no retry would make it smaller)."""
    size = sum(payload.ByteSize() for payload in activity.payload_converter().to_payloads([result]))
    if size <= MAX_PAYLOAD_BYTES:
        return result
    message = (
        f"{story}: its result is {size / 1024 / 1024:.1f} MB, over Temporal's payload limit of "
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


def _story(deployment: Deployment, step: str) -> str:
    return (
        f"{deployment.release_key} {deployment.environment.value} {deployment.component}: "
        f"{step} {deployment.version}"
    )


def _outcome(changed: bool, done: str) -> str:
    return done if changed else "already done, nothing to change"


@activity.defn
async def gather_release(request: GatherReleaseInput) -> Release:
    """Load the release from the catalog and validate it."""
    release = await _step(
        f"{request.release_key}: gather",
        request.demo_root,
        release_management.gather_release,
        request.release_key,
    )
    activity.logger.info(f"{release.key}: gathered: {release.plan()}")
    return release


@activity.defn
async def find_lock_holder(request: LockHolderInput) -> str:
    """Name the release that holds an environment lock (the lock workflow's parent), or "" if
    the lock is free by now. A lock whose release has ended is terminated first: a reset leaves
    the replaced run's locks running, since Temporal applies no parent close policy then."""
    client = activity.client()
    lock = await client.get_workflow_handle(request.lock_workflow_id).describe()
    if lock.status != WorkflowExecutionStatus.RUNNING:
        return ""
    holder = lock.parent_id or ""
    if holder and await _is_running(holder):
        return holder
    await client.get_workflow_handle(lock.id, run_id=lock.run_id).terminate(
        reason=f"its release {holder or '?'} has ended"
    )
    return ""


@activity.defn
async def wait_until_closed(request: WorkflowRef) -> None:
    """Wait until a workflow has closed (a deploy the run that a reset replaced left running)."""
    while await _is_running(request.workflow_id):
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _is_running(workflow_id: str) -> bool:
    description = await activity.client().get_workflow_handle(workflow_id).describe()
    return description.status == WorkflowExecutionStatus.RUNNING


@activity.defn
async def check_promotion(request: CheckPromotionInput) -> EnvironmentVersions:
    """Refuse the release, before any change, if its first environment cannot be fed; return
    what its environments hold before it."""
    release = request.release
    before = await _step(
        f"{release.key}: check promotion",
        request.demo_root,
        release_management.check_promotion,
        release,
    )
    activity.logger.info(f"{release.key}: promotion {release.route()} checked")
    return before


@activity.defn
async def build_artifact(deployment: Deployment) -> bool:
    """Build the component version into artifactory unless it is already there."""
    story = _story(deployment, "build")
    changed = await _step(
        story,
        deployment.demo_root,
        release_management.build_artifact,
        deployment.release_key,
        deployment.release_run_id,
        deployment.component,
        deployment.version,
    )
    activity.logger.info(f"{story}: {_outcome(changed, 'built into artifactory')}")
    return changed


@activity.defn
async def fetch_artifact(deployment: Deployment) -> ArtifactRef:
    """Gather the artifact to deploy from the environment's source."""
    story = _story(deployment, "fetch artifact")
    source, sha256 = await _step(
        story,
        deployment.demo_root,
        release_management.fetch_artifact,
        deployment.component,
        deployment.version,
        deployment.environment,
    )
    activity.logger.info(f"{story}: found in {source}")
    return ArtifactRef(source=source, sha256=sha256)


@activity.defn
async def fetch_config(deployment: Deployment) -> dict[str, str | int]:
    """Gather the configuration the component version should have in the environment."""
    story = _story(deployment, "fetch config")
    config = await _step(
        story,
        deployment.demo_root,
        release_management.fetch_config,
        deployment.component,
        deployment.version,
        deployment.environment,
    )
    activity.logger.info(f"{story}: gathered")
    return config


@activity.defn
async def deploy_artifact(request: DeployArtifactInput) -> bool:
    """Deploy the gathered artifact, replacing the version the environment held."""
    deployment = request.deployment
    story = _story(deployment, "deploy")
    changed = await _step(
        story,
        deployment.demo_root,
        release_management.deploy_artifact,
        deployment.release_key,
        deployment.release_run_id,
        deployment.component,
        deployment.version,
        deployment.environment,
        request.artifact.sha256,
    )
    activity.logger.info(f"{story}: {_outcome(changed, 'deployed')}")
    return changed


@activity.defn
async def update_config(request: UpdateConfigInput) -> bool:
    """Write the component's configuration in the environment."""
    deployment = request.deployment
    story = _story(deployment, "configure")
    changed = await _step(
        story,
        deployment.demo_root,
        release_management.update_config,
        deployment.release_key,
        deployment.release_run_id,
        deployment.component,
        deployment.version,
        deployment.environment,
        request.config,
    )
    activity.logger.info(f"{story}: {_outcome(changed, 'config updated')}")
    return changed


@activity.defn
async def verify_deploy(request: VerifyInput) -> None:
    """Check the environment holds exactly this version, as built, with its config."""
    deployment = request.deployment
    story = _story(deployment, "verify")
    await _step(
        story,
        deployment.demo_root,
        release_management.verify_deploy,
        deployment.component,
        deployment.version,
        deployment.environment,
        request.artifact.sha256,
    )
    activity.logger.info(f"{story}: verified")


@activity.defn
async def rollback_deploy(deployment: Deployment) -> str | None:
    """Put back the version the deploy replaced (or remove the component if there was none)."""
    story = _story(deployment, "rollback")
    previous = await _step(
        story,
        deployment.demo_root,
        release_management.rollback_deploy,
        deployment.release_key,
        deployment.release_run_id,
        deployment.component,
        deployment.version,
        deployment.environment,
    )
    activity.logger.warning(f"{story}: rolled back to {previous or 'nothing (removed)'}")
    return previous


@activity.defn
async def verify_rollback(request: VerifyRollbackInput) -> None:
    """Check the environment holds the previous version again (or nothing of the component)."""
    deployment = request.deployment
    story = _story(deployment, "verify rollback")
    await _step(
        story,
        deployment.demo_root,
        release_management.verify_rollback,
        deployment.component,
        request.previous,
        deployment.environment,
    )
    activity.logger.info(f"{story}: verified")


@activity.defn
async def record_release(request: RecordReleaseInput) -> str:
    """Write the record of the finished release run under database/releases/."""
    key = request.release.key
    path = await _step(
        f"{key}: record",
        request.demo_root,
        release_management.record_release,
        request.release,
        request.release_run_id,
        request.result,
        (request.started, request.finished),
        request.before,
        request.states,
        request.unlocked_after_use,
        [decision.model_dump(mode="json") for decision in request.decisions],
    )
    activity.logger.info(f"{key}: recorded in {path.name}")
    return path.name


ALL_ACTIVITIES = [
    gather_release,
    find_lock_holder,
    wait_until_closed,
    check_promotion,
    build_artifact,
    fetch_artifact,
    fetch_config,
    deploy_artifact,
    update_config,
    verify_deploy,
    rollback_deploy,
    verify_rollback,
    record_release,
]
