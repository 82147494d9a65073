"""The floor: the real workflows, with activities that do nothing.

The skeleton is workflows.py's own ReleaseWorkflow, DeployWorkflow and EnvironmentLockWorkflow,
run by a worker that registers the no-op activities below under the real activities' names (the
samples-python way to mock activities). Each returns a valid result of the right type at once,
with no pacing, heartbeats, threads or files, so what a skeleton release costs is what Temporal
itself costs for a release of that shape, and a change to the workflows is measured as made.

Also here, for benchmarks/run.py's experiments: SequentialStepsWorkflow (one hop on a release's
critical path, alone), and StepChanges, a worker interceptor that changes every step the
workflows start (retry policy, heartbeat timeout, or run as a local activity) without a change
to workflows.py.

Every module of the benchmarks imports the workflow classes and settings from here, once.
"""

import dataclasses
import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity, workflow
from temporalio.common import RetryPolicy, VersioningBehavior
from temporalio.worker import (
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

with workflow.unsafe.imports_passed_through():
    import files
    from activities import ALL_ACTIVITIES
    from catalog import load_release
    from locks import EnvironmentLockWorkflow
    from shared import (
        ArtifactRef,
        CheckPromotionInput,
        DeployArtifactInput,
        Deployment,
        DeploysInFlightInput,
        Ending,
        EndingInput,
        EnvironmentVersions,
        HeldIn,
        HoldingsInput,
        LockHolderInput,
        NotifyInput,
        RecordReleaseInput,
        Release,
        ReleaseInput,
        RunsInput,
        UpdateConfigInput,
        VerifyInput,
        VerifyRollbackInput,
        WorkflowRef,
    )
    from steps import ACTIVITY_TIMEOUT, HEARTBEAT_TIMEOUT, RETRY_POLICY
    from workflows import DeployWorkflow, ReleaseWorkflow

RELEASE_WORKFLOWS = [ReleaseWorkflow, DeployWorkflow, EnvironmentLockWorkflow]


NOOP_ACTIVITIES: list[Callable[..., Any]] = []
F = TypeVar("F", bound=Callable[..., Any])


def _noop(name: str) -> Callable[[F], F]:
    """@activity.defn(name=name), and listed in NOOP_ACTIVITIES."""

    def register(fn: F) -> F:
        NOOP_ACTIVITIES.append(activity.defn(name=name)(fn))
        return fn

    return register


@functools.cache
def _catalog_release(release_key: str, demo_root: str) -> Release:
    """The release as gather_release finds it in the demo root's catalog, read once per process
    and root (demo_root is part of the cache key)."""
    return load_release(release_key)


@_noop("gather_release")
async def gather_release(request: ReleaseInput) -> Release:
    return _catalog_release(request.release_key, str(files.demo_root()))


@_noop("check_promotion")
async def check_promotion(request: CheckPromotionInput) -> EnvironmentVersions:
    return {env: dict.fromkeys(request.release.versions) for env in request.release.environments}


@_noop("build_artifact")
async def build_artifact(deployment: Deployment) -> bool:
    return True


@_noop("fetch_artifact")
async def fetch_artifact(deployment: Deployment) -> ArtifactRef:
    return ArtifactRef(source="artifactory", sha256="0" * 64)


@_noop("fetch_config")
async def fetch_config(deployment: Deployment) -> dict[str, str | int]:
    return {"version": deployment.version, "environment": deployment.environment.value}


@_noop("deploy_artifact")
async def deploy_artifact(request: DeployArtifactInput) -> bool:
    return True


@_noop("update_config")
async def update_config(request: UpdateConfigInput) -> bool:
    return True


@_noop("verify_deploy")
async def verify_deploy(request: VerifyInput) -> None:
    return None


@_noop("rollback_deploy")
async def rollback_deploy(deployment: Deployment) -> str | None:
    return None


@_noop("verify_rollback")
async def verify_rollback(request: VerifyRollbackInput) -> None:
    return None


@_noop("notify")
async def notify(request: NotifyInput) -> bool:
    return True


@_noop("record_release")
async def record_release(request: RecordReleaseInput) -> str:
    return "record.json"


@_noop("find_lock_holder")
async def find_lock_holder(request: LockHolderInput) -> str:
    return ""


@_noop("wait_until_closed")
async def wait_until_closed(request: WorkflowRef) -> None:
    return None


@_noop("release_run_now")
async def release_run_now(request: WorkflowRef) -> str:
    return ""


@_noop("record_ending")
async def record_ending(request: EndingInput) -> str:
    return "record.json"


@_noop("record_unstarted")
async def record_unstarted(request: Ending) -> str:
    return "record.json"


@_noop("held_in")
async def held_in(request: HoldingsInput) -> HeldIn:
    return HeldIn(root="", held={})


@_noop("is_run_of_release")
async def is_run_of_release(request: RunsInput) -> bool:
    return False


@_noop("find_deploys_in_flight")
async def find_deploys_in_flight(request: DeploysInFlightInput) -> list[str]:
    return []


@activity.defn(name="bench_noop")
async def noop(step: int) -> int:
    """The step SequentialStepsWorkflow repeats."""
    return step


def _name(activity_fn: Any) -> str:
    return activity._Definition.must_from_callable(activity_fn).name or ""


# A new activity in activities.py without a no-op here would leave the skeleton's release stuck.
if _missing := {_name(a) for a in ALL_ACTIVITIES} - {_name(a) for a in NOOP_ACTIVITIES}:
    raise ImportError(f"benchmarks/skeleton.py has no no-op for: {', '.join(sorted(_missing))}")
SKELETON_ACTIVITIES = [*NOOP_ACTIVITIES, noop]


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)  # as the release's workflows
class SequentialStepsWorkflow:
    """count no-op steps, each started when the one before has finished, with the release's
    timeouts and retry policy: one hop on a release's critical path, with nothing else going on."""

    @workflow.run
    async def run(self, count: int) -> int:
        for step in range(count):
            await workflow.execute_activity(
                noop,
                step,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RETRY_POLICY,
            )
        return count


SKELETON_WORKFLOWS = [*RELEASE_WORKFLOWS, SequentialStepsWorkflow]


@dataclasses.dataclass(frozen=True)
class StepChanges(Interceptor):
    """A worker interceptor that changes every step its workflows start: another retry policy
    or heartbeat timeout, or run as a local activity (in the worker that runs the workflow
    task, with no trip through the server's task queues)."""

    retry_policy: RetryPolicy | None = None
    heartbeat_timeout: timedelta | None = None
    local: bool = False

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        changes = self

        class ChangedSteps(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(_ChangedOutbound(outbound, changes))

        return ChangedSteps


class _ChangedOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor, changes: StepChanges) -> None:
        super().__init__(next)
        self._changes = changes

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        input = dataclasses.replace(
            input,
            retry_policy=self._changes.retry_policy or input.retry_policy,
            heartbeat_timeout=self._changes.heartbeat_timeout or input.heartbeat_timeout,
        )
        if not self._changes.local:
            return self.next.start_activity(input)
        return self.next.start_local_activity(
            StartLocalActivityInput(
                activity=input.activity,
                args=input.args,
                activity_id=input.activity_id,
                schedule_to_close_timeout=input.schedule_to_close_timeout,
                schedule_to_start_timeout=input.schedule_to_start_timeout,
                start_to_close_timeout=input.start_to_close_timeout,
                retry_policy=input.retry_policy,
                local_retry_threshold=None,
                cancellation_type=input.cancellation_type,
                headers=input.headers,
                summary=input.summary,
                arg_types=input.arg_types,
                ret_type=input.ret_type,
            )
        )
