"""One deploy, made durable: DeployWorkflow runs the steps of one component version going to one
environment, a child of its release (workflows.py). Like the release, it only decides; each step
is an activity (activities.py), run on its environment's task queue.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityHandle

from steps import all_of, finish_even_if_cancelled, start_activity, stop_if_cancelled

with workflow.unsafe.imports_passed_through():
    import activities
    from shared import (
        ArtifactRef,
        DeployArtifactInput,
        Deployment,
        DeployResult,
        Environment,
        ErrorType,
        UpdateConfigInput,
        VerifyInput,
        VerifyRollbackInput,
    )

ArgT = TypeVar("ArgT")  # an activity's input
ResultT = TypeVar("ResultT")  # its result


# Pinned: started by its release on the release's task queue, it runs the release's version, the
# deploy that release's plan expects.
@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class DeployWorkflow:
    """Deploy one component version to one environment: build (DEV only), gather the artifact
    and the config, deploy, configure, verify; roll back if it proves unhealthy. Cancelled while
    it gathers, it stops; once it changes the environment, it finishes that change first."""

    @workflow.run
    async def run(self, deployment: Deployment) -> DeployResult:
        self._queue = deployment.task_queue or None  # its environment's worker's, if it has one
        artifact, config = await self._gather(deployment)
        stop_if_cancelled()
        return await finish_even_if_cancelled(
            self._change(deployment, artifact, config),
            cancel_log=f"{deployment.release_key} {deployment.environment.value} "
            f"{deployment.component}: cancel requested; finishing the change in flight first",
        )

    def _step(
        self, activity: Callable[[ArgT], Awaitable[ResultT]], argument: ArgT, summary: str
    ) -> ActivityHandle[ResultT]:
        """One of the deploy's steps, on its environment's task queue."""
        return start_activity(activity, argument, summary, task_queue=self._queue)

    async def _gather(self, deployment: Deployment) -> tuple[ArtifactRef, dict[str, str | int]]:
        # The config does not depend on the build: gather it while the artifact is prepared.
        summary = f"fetch the config of {summary_of(deployment)}"
        config = self._step(activities.fetch_config, deployment, summary)
        artifact, config = await all_of(self._artifact(deployment), config)
        return artifact, config

    async def _artifact(self, deployment: Deployment) -> ArtifactRef:
        if deployment.environment is Environment.DEV:
            await self._step(
                activities.build_artifact, deployment, f"build {summary_of(deployment, '')}"
            )
            stop_if_cancelled()
        summary = f"fetch the artifact of {summary_of(deployment)}"
        return await self._step(activities.fetch_artifact, deployment, summary)

    async def _change(
        self, deployment: Deployment, artifact: ArtifactRef, config: dict[str, str | int]
    ) -> DeployResult:
        what = summary_of(deployment)
        deploy = DeployArtifactInput(deployment=deployment, artifact=artifact)
        await self._step(
            activities.deploy_artifact, deploy, f"deploy {summary_of(deployment, 'to')}"
        )
        configure = UpdateConfigInput(deployment=deployment, config=config)
        await self._step(activities.update_config, configure, f"configure {what}")
        try:
            verify = VerifyInput(deployment=deployment, artifact=artifact)
            await self._step(activities.verify_deploy, verify, f"verify {what}")
        except ActivityError as err:
            if not _is_unhealthy(err):
                raise
            # Compensate: the deploy is unhealthy, so put back what the environment held.
            previous = await self._step(activities.rollback_deploy, deployment, f"roll back {what}")
            check = VerifyRollbackInput(deployment=deployment, previous=previous)
            await self._step(activities.verify_rollback, check, f"verify the rollback of {what}")
            return DeployResult(rolled_back=True, previous=previous)
        return DeployResult()


def _is_unhealthy(err: ActivityError) -> bool:
    return isinstance(err.cause, ApplicationError) and err.cause.type == ErrorType.UNHEALTHY


def summary_of(deployment: Deployment, where: str = "in") -> str:
    """What a deploy's activities work on: "frontend 1.1 in QC" ("to QC"; "": no place)."""
    what = f"{deployment.component} {deployment.version}"
    return f"{what} {where} {deployment.environment.value}" if where else what
