"""The floor: workflows of the release's shape whose activities do nothing.

SkeletonReleaseWorkflow, SkeletonDeployWorkflow and SkeletonEnvironmentLockWorkflow mirror the
happy path of ReleaseWorkflow, DeployWorkflow and EnvironmentLockWorkflow in workflows.py: the
same children (environment locks included, released and awaited), the same chain of steps, the
same concurrency, the same timeouts and retry policy (imported from workflows.py), the same
inputs and results. Only the activities differ: each returns at once, with no pacing,
heartbeats, threads or files. What a skeleton release
costs is what Temporal itself costs for a release of that shape; benchmarks/run.py compares the
real release with it, and checks from both histories that they schedule the same steps and
children (a drifted skeleton is reported in benchmarks/RESULTS.md).

Left out, as the benchmarked release never takes them: approval gates (they wait for a person),
the rollback of an unhealthy deploy, and the refusal of a release whose environments are held.

One knob the real workflows lack, for benchmarks/run.py's experiments: local_activities, every
step run as a local activity (in the worker that runs the workflow task, with no trip through
the server's task queues), to measure what that would save.
"""

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio import activity, workflow
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from shared import (
        ArtifactRef,
        CellState,
        CheckPromotionInput,
        DeployArtifactInput,
        Deployment,
        DeployResult,
        Environment,
        EnvironmentLock,
        EnvironmentVersions,
        Outcome,
        RecordReleaseInput,
        Release,
        ReleaseResult,
        UpdateConfigInput,
        VerifyInput,
        deploy_workflow_id,
    )
    from workflows import (
        STEP_HEARTBEAT_TIMEOUT,
        STEP_RETRY,
        STEP_TIMEOUT,
        WORKFLOW_TASK_TIMEOUT,
    )


class SkeletonReleaseInput(BaseModel):
    """The release to mirror (what gather_release would load: handed in, since nothing is
    read), the scope of its environment locks, and the experiments' knobs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    release: Release
    lock_scope: str
    local_activities: bool = False


class SkeletonDeployment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    deployment: Deployment
    local_activities: bool = False


# --- No-op activities: the inputs and results of activities.py, and no work -----------------


@activity.defn(name="skeleton_gather_release")
async def gather_release(request: SkeletonReleaseInput) -> Release:
    return request.release


@activity.defn(name="skeleton_check_promotion")
async def check_promotion(request: CheckPromotionInput) -> EnvironmentVersions:
    release = request.release
    return {env: dict.fromkeys(release.versions) for env in release.environments}


@activity.defn(name="skeleton_build_artifact")
async def build_artifact(deployment: Deployment) -> bool:
    return True


@activity.defn(name="skeleton_fetch_artifact")
async def fetch_artifact(deployment: Deployment) -> ArtifactRef:
    return ArtifactRef(source="artifactory", sha256="0" * 64)


@activity.defn(name="skeleton_fetch_config")
async def fetch_config(deployment: Deployment) -> dict[str, str | int]:
    return {"version": deployment.version, "environment": deployment.environment.value}


@activity.defn(name="skeleton_deploy_artifact")
async def deploy_artifact(request: DeployArtifactInput) -> bool:
    return True


@activity.defn(name="skeleton_update_config")
async def update_config(request: UpdateConfigInput) -> bool:
    return True


@activity.defn(name="skeleton_verify_deploy")
async def verify_deploy(request: VerifyInput) -> None:
    return None


@activity.defn(name="skeleton_record_release")
async def record_release(request: RecordReleaseInput) -> str:
    return "record.json"


@activity.defn(name="skeleton_noop")
async def noop(step: int) -> int:
    """The step SequentialStepsWorkflow repeats."""
    return step


SKELETON_ACTIVITIES = [
    gather_release,
    check_promotion,
    build_artifact,
    fetch_artifact,
    fetch_config,
    deploy_artifact,
    update_config,
    verify_deploy,
    record_release,
    noop,
]


def _step(activity_fn: Any, argument: Any, local: bool) -> Any:
    """workflows._step, with the same timeouts and retry policy; or as a local activity."""
    if local:
        return workflow.start_local_activity(
            activity_fn, argument, start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY
        )
    return workflow.start_activity(
        activity_fn,
        argument,
        start_to_close_timeout=STEP_TIMEOUT,
        heartbeat_timeout=STEP_HEARTBEAT_TIMEOUT,
        retry_policy=STEP_RETRY,
    )


# --- Workflows: the shape of workflows.py ---------------------------------------------------


@workflow.defn
class SkeletonDeployWorkflow:
    @workflow.run
    async def run(self, request: SkeletonDeployment) -> DeployResult:
        deployment, local = request.deployment, request.local_activities
        config_gathered = _step(fetch_config, deployment, local)
        if deployment.environment is Environment.DEV:
            await _step(build_artifact, deployment, local)
        artifact, config = await asyncio.gather(
            _step(fetch_artifact, deployment, local), config_gathered
        )
        deploy = DeployArtifactInput(deployment=deployment, artifact=artifact)
        await _step(deploy_artifact, deploy, local)
        await _step(update_config, UpdateConfigInput(deployment=deployment, config=config), local)
        await _step(verify_deploy, VerifyInput(deployment=deployment, artifact=artifact), local)
        return DeployResult()


@workflow.defn
class SkeletonEnvironmentLockWorkflow:
    def __init__(self) -> None:
        self._released = False

    @workflow.run
    async def run(self, lock: EnvironmentLock) -> None:
        await workflow.wait_condition(lambda: self._released)

    @workflow.signal
    def release(self) -> None:
        self._released = True


async def _release(locks: list[workflow.ChildWorkflowHandle]) -> None:
    await asyncio.gather(*(lock.signal(SkeletonEnvironmentLockWorkflow.release) for lock in locks))
    await asyncio.gather(*locks)


@workflow.defn
class SkeletonReleaseWorkflow:
    @workflow.run
    async def run(self, request: SkeletonReleaseInput) -> str:
        started = workflow.now()
        local = request.local_activities
        release: Release = await _step(gather_release, request, local)
        locks = await self._hold_environments(release, request.lock_scope)
        try:
            before = await _step(check_promotion, CheckPromotionInput(release=release), local)
            for env in release.environments:
                await self._promote(release, env, request)
            record = RecordReleaseInput(
                release=release,
                release_run_id=workflow.info().run_id,
                result=ReleaseResult(release_key=release.key, outcome=Outcome.SUCCESS),
                started=started.isoformat(),
                finished=workflow.now().isoformat(),
                before=before,
                states={
                    env: dict.fromkeys(release.versions, CellState.DONE)
                    for env in release.environments
                },
            )
            await _step(record_release, record, local)
        except Exception:
            await _release(locks)
            raise
        await _release(locks)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return record.result

    async def _hold_environments(
        self, release: Release, scope: str
    ) -> list[workflow.ChildWorkflowHandle]:
        needed = [*release.environments]
        source = release.environments[0].previous()
        if source is not None:
            needed.insert(0, source)
        locks = await asyncio.gather(*(self._lock(release, env, scope) for env in needed))
        held = [lock for lock in locks if lock is not None]
        if len(held) < len(locks):
            await _release(held)
            raise ApplicationError(f"{release.key}: an environment is held", non_retryable=True)
        return held

    async def _lock(
        self, release: Release, env: Environment, scope: str
    ) -> workflow.ChildWorkflowHandle | None:
        try:
            return await workflow.start_child_workflow(
                SkeletonEnvironmentLockWorkflow.run,
                EnvironmentLock(release_key=release.key, environment=env),
                id=f"lock.{env.value}.{scope}",
                task_timeout=WORKFLOW_TASK_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return None

    async def _promote(
        self, release: Release, env: Environment, request: SkeletonReleaseInput
    ) -> None:
        info = workflow.info()
        await asyncio.gather(
            *(
                workflow.execute_child_workflow(
                    SkeletonDeployWorkflow.run,
                    SkeletonDeployment(
                        deployment=Deployment(
                            release_key=release.key,
                            release_run_id=info.run_id,
                            component=component,
                            version=version,
                            environment=env,
                        ),
                        local_activities=request.local_activities,
                    ),
                    id=deploy_workflow_id(info.workflow_id, env, component),
                    task_timeout=WORKFLOW_TASK_TIMEOUT,
                )
                for component, version in release.versions.items()
            )
        )


# --- The smallest unit: steps one after another ---------------------------------------------


@workflow.defn
class SequentialStepsWorkflow:
    """count no-op steps, each started when the one before has finished: the time per step is
    what one hop on a release's critical path costs, with nothing else going on."""

    @workflow.run
    async def run(self, count: int, local_activities: bool) -> int:
        for step in range(count):
            await _step(noop, step, local_activities)
        return count


SKELETON_WORKFLOWS = [
    SkeletonReleaseWorkflow,
    SkeletonDeployWorkflow,
    SkeletonEnvironmentLockWorkflow,
    SequentialStepsWorkflow,
]
