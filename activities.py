"""Activities: thin wrappers that let Temporal drive release_management.

Each activity paces itself (DEMO_STEP_SECONDS) while heartbeating, runs its blocking
release_management step on a thread, and logs one line of the release's story. Errors are
sorted here, once, so no workflow has to list them:
- bad input (ReleaseError) is non-retryable: the release fails at once with its message;
- injected failures, missing sources and failed verifications are retried by Temporal;
- anything else is a bug: Temporal retries it until a fixed worker takes over.
"""

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError

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
    GatherReleaseInput,
    LockHolderInput,
    RecordReleaseInput,
    Release,
    StepReport,
    UpdateConfigInput,
    VerifyInput,
    VerifyRollbackInput,
)
from utils import step_seconds

# How many times verification may find a deploy unhealthy before it is rolled back.
HEALTH_CHECK_ATTEMPTS = 3

# Heartbeat often enough that the workflows' heartbeat timeout (a few seconds) notices a dead
# worker quickly; the SDK batches heartbeats, so this costs little.
HEARTBEAT_SECONDS = 0.5

T = TypeVar("T")


async def _heartbeat_forever() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def _step(story: str, step: Callable[..., T], *args: Any) -> T:
    """Run one release_management step: pace, heartbeat, run it on a thread, sort its errors."""
    attempt = activity.info().attempt
    if attempt > 1:
        activity.logger.info(f"{story}: retrying (attempt {attempt})")
    heartbeat = asyncio.create_task(_heartbeat_forever())
    try:
        await asyncio.sleep(step_seconds())
        return await asyncio.to_thread(step, *args)
    except ReleaseError as err:
        activity.logger.error(f"{story}: refused: {err}")
        # BENIGN keeps the SDK from logging a traceback: this is the user's input, not a bug.
        raise ApplicationError(
            str(err),
            type="ReleaseError",
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
            type="Unhealthy",
            non_retryable=final,
            category=ApplicationErrorCategory.BENIGN,
        ) from None
    except (InjectedFailure, SourceMissing, VerificationError) as err:
        activity.logger.warning(f"{story}: failed (attempt {attempt}): {err}; Temporal will retry")
        raise ApplicationError(
            str(err), type=type(err).__name__, category=ApplicationErrorCategory.BENIGN
        ) from None
    finally:
        heartbeat.cancel()


def _story(deployment: Deployment, step: str) -> str:
    return (
        f"{deployment.release_key} {deployment.environment.value} {deployment.component}: "
        f"{step} {deployment.version}"
    )


async def _deploy_step(deployment: Deployment, name: str, step: Callable[..., T], *args: Any) -> T:
    """Run one step of a deploy, reporting its start and each failed attempt to the release.
    (A retry's start is not reported: the cell already says the step is retrying. That halves
    the signals of a failure storm, each an event in the release's history.)"""
    attempt = activity.info().attempt
    if attempt == 1:
        await _report(deployment, StepReport(**_cell_of(deployment), step=name, attempt=attempt))
    try:
        return await _step(_story(deployment, name), step, *args)
    except Exception as err:
        error = err.message if isinstance(err, ApplicationError) else f"{type(err).__name__}: {err}"
        report = StepReport(**_cell_of(deployment), step=name, attempt=attempt, error=error)
        await _report(deployment, report)
        raise


def _cell_of(deployment: Deployment) -> dict[str, Any]:
    return {"environment": deployment.environment, "component": deployment.component}


async def _report(deployment: Deployment, report: StepReport) -> None:
    """Tell the release workflow, for its progress grid. Best effort: never fails a step."""
    if not deployment.release_workflow_id:
        return
    release = activity.client().get_workflow_handle(deployment.release_workflow_id)
    try:
        await release.signal("report", report)
    except RPCError as err:
        activity.logger.debug(f"progress report not delivered: {err}")


def _outcome(changed: bool, done: str) -> str:
    return done if changed else "already done, nothing to change"


@activity.defn
async def gather_release(request: GatherReleaseInput) -> Release:
    """Load the release from the catalog and validate it."""
    release = await _step(
        f"{request.release_key}: gather", release_management.gather_release, request.release_key
    )
    plan = ", ".join(f"{c} {v}" for c, v in release.versions.items())
    activity.logger.info(f"{release.key}: gathered: {plan}")
    return release


@activity.defn
async def find_lock_holder(request: LockHolderInput) -> str:
    """Name the release that holds an environment lock (the lock workflow's parent)."""
    lock = await activity.client().get_workflow_handle(request.lock_workflow_id).describe()
    return lock.parent_id or "another release"


@activity.defn
async def check_promotion(request: CheckPromotionInput) -> EnvironmentVersions:
    """Refuse the release, before any change, if its first environment cannot be fed; return
    what its environments hold before it."""
    release = request.release
    before = await _step(
        f"{release.key}: check promotion", release_management.check_promotion, release
    )
    route = " -> ".join(env.value for env in release.environments)
    activity.logger.info(f"{release.key}: promotion {route} checked")
    return before


@activity.defn
async def build_artifact(deployment: Deployment) -> bool:
    """Build the component version into artifactory unless it is already there."""
    story = _story(deployment, "build")
    changed = await _deploy_step(
        deployment,
        "build",
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
    source, sha256 = await _deploy_step(
        deployment,
        "fetch artifact",
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
    config = await _deploy_step(
        deployment,
        "fetch config",
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
    changed = await _deploy_step(
        deployment,
        "deploy",
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
    changed = await _deploy_step(
        deployment,
        "configure",
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
    await _deploy_step(
        deployment,
        "verify",
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
    previous = await _deploy_step(
        deployment,
        "rollback",
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
    await _deploy_step(
        deployment,
        "verify rollback",
        release_management.verify_rollback,
        deployment.component,
        request.previous,
        deployment.environment,
    )
    activity.logger.info(f"{_story(deployment, 'verify rollback')}: verified")


@activity.defn
async def record_release(request: RecordReleaseInput) -> str:
    """Write the record of the finished release run under database/releases/."""
    key = request.release.key
    path = await _step(
        f"{key}: record",
        release_management.record_release,
        request.release,
        request.release_run_id,
        request.result,
        (request.started, request.finished),
        request.before,
        request.reached,
        [decision.model_dump(mode="json") for decision in request.decisions],
    )
    activity.logger.info(f"{key}: recorded in {path.name}")
    return path.name


ALL_ACTIVITIES = [
    gather_release,
    find_lock_holder,
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
