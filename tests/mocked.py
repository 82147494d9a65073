"""Fast workflow tests: the real workflows on the session's dev server, with every activity
replaced by a mock registered under the real activity's name (the samples-python pattern).

Each mock records the input it was given, so a test asserts which steps ran with what. A test
makes a step fail with an error of its choice, or hold until the test lets it go.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.worker import Worker

from locks import EnvironmentLockWorkflow
from lookups import (
    find_deploys_in_flight,
    is_run_of_release,
    release_run_now,
    wait_until_closed,
)
from run_worker import HEARTBEAT_THROTTLE, serving
from shared import (
    ArtifactRef,
    CheckPromotionInput,
    DeployArtifactInput,
    Deployment,
    Ending,
    EndingInput,
    Environment,
    EnvironmentVersions,
    LockHolderInput,
    NotifyInput,
    RecordReleaseInput,
    Release,
    ReleaseInput,
    ReleaseResult,
    UpdateConfigInput,
    VerifyInput,
    VerifyRollbackInput,
)
from versioning import deployment_config
from workflows import DeployWorkflow, ReleaseWorkflow

KEY = "RELEASE-MOCKED"
WORKFLOWS = [ReleaseWorkflow, DeployWorkflow, EnvironmentLockWorkflow]
# A held step heartbeats this often: the workflows give a step 1 s between heartbeats.
HOLD_HEARTBEAT_SECONDS = 0.2
WAIT_SECONDS = 10.0

# Where a deploy step runs: (component, environment); None for a step of the release itself.
Where = tuple[str, Environment] | None

DEV, TEST, QC, PROD = Environment.DEV, Environment.TEST, Environment.QC, Environment.PROD


def make_release(
    environments: tuple[Environment, ...] = (DEV, TEST),
    approved: bool = True,
    approval_before: tuple[Environment, ...] = (),
    soak_seconds: dict[Environment, int] | None = None,
    approval_timeout_seconds: int | None = None,
) -> Release:
    """A release of frontend 1.1 and sbstore 1.7, as the mocked gather_release returns it."""
    return Release(
        key=KEY,
        release_date=date(2024, 1, 1),
        versions={"frontend": "1.1", "sbstore": "1.7"},
        environments=list(environments),
        approved=approved,
        approved_by="Ada Lovelace" if approved else None,
        approval_before=list(approval_before),
        soak_seconds=soak_seconds or {},
        approval_timeout_seconds=approval_timeout_seconds,
    )


def unhealthy(message: str = "health check failed") -> ApplicationError:
    """The error verify_deploy raises once its retries are spent: the deploy rolls back."""
    return ApplicationError(message, type="Unhealthy", non_retryable=True)


@dataclass
class Call:
    step: str  # the activity's name
    where: Where
    request: Any


@dataclass
class Steps:
    """The mocked activities, and what they were given."""

    release: Release = field(default_factory=make_release)
    previous: str | None = "1.0"  # the version rollback_deploy puts back
    lock_holder: str = ""  # the release find_lock_holder names
    calls: list[Call] = field(default_factory=list)
    failures: dict[tuple[str, Where], ApplicationError] = field(default_factory=dict)
    holds: dict[tuple[str, Where], asyncio.Event] = field(default_factory=dict)

    def fail(self, step: str, error: ApplicationError, where: Where = None) -> None:
        """Make step (at where) raise error."""
        self.failures[(step, where)] = error

    def hold(self, step: str, where: Where = None) -> asyncio.Event:
        """Make step (at where) wait, heartbeating, until the event returned is set."""
        return self.holds.setdefault((step, where), asyncio.Event())

    def ran(self, step: str) -> list[Where]:
        """Where step ran, in the order the calls came."""
        return [call.where for call in self.calls if call.step == step]

    def ran_in(self, env: Environment) -> list[str]:
        """The deploy steps that ran in env."""
        return [call.step for call in self.calls if call.where and call.where[1] is env]

    def names(self) -> list[str]:
        """The steps that ran, in order; announcements aside (see announced)."""
        return [call.step for call in self.calls if call.step != "notify"]

    def announced(self) -> list[str]:
        """The events the release announced, in order."""
        return [call.request.event for call in self.calls if call.step == "notify"]

    def record(self) -> RecordReleaseInput:
        """What record_release received: exactly one call."""
        (record,) = [call.request for call in self.calls if call.step == "record_release"]
        assert isinstance(record, RecordReleaseInput)
        return record

    async def called(self, step: str, where: Where = None) -> None:
        """Wait until step has been called at where."""
        deadline = time.monotonic() + WAIT_SECONDS
        while (step, where) not in {(call.step, call.where) for call in self.calls}:
            assert time.monotonic() < deadline, f"{step} at {where} was never called"
            await asyncio.sleep(0.02)

    async def _run(self, step: str, request: Any, deployment: Deployment | None = None) -> None:
        where = (deployment.component, deployment.environment) if deployment else None
        self.calls.append(Call(step, where, request))
        if event := self.holds.get((step, where)):
            while not event.is_set():
                activity.heartbeat()
                with suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), HOLD_HEARTBEAT_SECONDS)
        if error := self.failures.get((step, where)):
            raise error

    @activity.defn(name="gather_release")
    async def gather_release(self, request: ReleaseInput) -> Release:
        await self._run("gather_release", request)
        return self.release

    @activity.defn(name="find_lock_holder")
    async def find_lock_holder(self, request: LockHolderInput) -> str:
        await self._run("find_lock_holder", request)
        return self.lock_holder

    @activity.defn(name="record_ending")
    async def record_ending(self, request: EndingInput) -> str:
        await self._run("record_ending", request)
        return "record.json"

    @activity.defn(name="record_unstarted")
    async def record_unstarted(self, request: Ending) -> str:
        await self._run("record_unstarted", request)
        return "record.json"

    @activity.defn(name="check_promotion")
    async def check_promotion(self, request: CheckPromotionInput) -> EnvironmentVersions:
        await self._run("check_promotion", request)
        return {env: {c: None for c in request.release.versions} for env in Environment}

    @activity.defn(name="build_artifact")
    async def build_artifact(self, deployment: Deployment) -> bool:
        await self._run("build_artifact", deployment, deployment)
        return True

    @activity.defn(name="fetch_artifact")
    async def fetch_artifact(self, deployment: Deployment) -> ArtifactRef:
        await self._run("fetch_artifact", deployment, deployment)
        return ArtifactRef(source=f"{deployment.component}-{deployment.version}", sha256="0" * 64)

    @activity.defn(name="fetch_config")
    async def fetch_config(self, deployment: Deployment) -> dict[str, str | int]:
        await self._run("fetch_config", deployment, deployment)
        return {"version": deployment.version}

    @activity.defn(name="deploy_artifact")
    async def deploy_artifact(self, request: DeployArtifactInput) -> bool:
        await self._run("deploy_artifact", request, request.deployment)
        return True

    @activity.defn(name="update_config")
    async def update_config(self, request: UpdateConfigInput) -> bool:
        await self._run("update_config", request, request.deployment)
        return True

    @activity.defn(name="verify_deploy")
    async def verify_deploy(self, request: VerifyInput) -> None:
        await self._run("verify_deploy", request, request.deployment)

    @activity.defn(name="rollback_deploy")
    async def rollback_deploy(self, deployment: Deployment) -> str | None:
        await self._run("rollback_deploy", deployment, deployment)
        return self.previous

    @activity.defn(name="verify_rollback")
    async def verify_rollback(self, request: VerifyRollbackInput) -> None:
        await self._run("verify_rollback", request, request.deployment)

    @activity.defn(name="notify")
    async def notify(self, request: NotifyInput) -> bool:
        await self._run("notify", request)
        return True

    @activity.defn(name="record_release")
    async def record_release(self, request: RecordReleaseInput) -> str:
        await self._run("record_release", request)
        return "record.json"

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.gather_release,
            self.find_lock_holder,
            self.record_ending,
            self.record_unstarted,
            # The real ones: they ask the server about workflows.
            find_deploys_in_flight,
            is_run_of_release,
            release_run_now,
            wait_until_closed,
            self.check_promotion,
            self.build_artifact,
            self.fetch_artifact,
            self.fetch_config,
            self.deploy_artifact,
            self.update_config,
            self.verify_deploy,
            self.rollback_deploy,
            self.verify_rollback,
            self.notify,
            self.record_release,
        ]


ReleaseHandle = WorkflowHandle[ReleaseWorkflow, ReleaseResult]


@dataclass
class Mocked:
    """A worker of the real workflows and the mocked steps, on a task queue of its own."""

    client: Client
    task_queue: str
    steps: Steps

    async def start(self, workflow_id: str = "") -> ReleaseHandle:
        return await self.client.start_workflow(
            ReleaseWorkflow.run,
            # The queue is the lock scope too (locks.py): no other test's release holds these locks.
            ReleaseInput(release_key=KEY),
            id=workflow_id or f"{KEY}-{uuid.uuid4().hex[:8]}",
            task_queue=self.task_queue,
            execution_timeout=timedelta(minutes=1),
        )

    def lock_id(self, env: Environment) -> str:
        """The workflow ID of env's lock, in this test's lock scope."""
        return f"lock.{env.value}.{self.task_queue}"

    async def run(self) -> ReleaseResult:
        return await (await self.start()).result()


async def failure_of(release: ReleaseHandle) -> ApplicationError:
    """The error that failed the release (a step's, through its deploy's, if it came from one)."""
    with pytest.raises(WorkflowFailureError) as failed:
        await release.result()
    cause: BaseException | None = failed.value.cause
    while isinstance(cause, ActivityError | ChildWorkflowError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def answer_to(
    client: Client, workflow_id: str, asked: "EventType.ValueType"
) -> list["EventType.ValueType"]:
    """The event types of workflow_id's history from its last event of type asked (a cancel
    request, a signal) to the end of the workflow task that answered it (waits for that task):
    what it did about it."""
    answered = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        types = [event.event_type for event in history.events]
        last = max((i for i, kind in enumerate(types) if kind == asked), default=len(types))
        if answered in types[last:]:
            return types[last:]
        assert time.monotonic() < deadline, f"{workflow_id} never answered {EventType.Name(asked)}"
        await asyncio.sleep(0.05)


async def answer_to_cancel(client: Client, workflow_id: str) -> list["EventType.ValueType"]:
    """What workflow_id did about its cancel request (see answer_to)."""
    requested = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    return await answer_to(client, workflow_id, requested)


@asynccontextmanager
async def mocked_worker(
    client: Client, steps: Steps | None = None, queue: str = "", *real: Callable[..., Any]
) -> AsyncIterator[Mocked]:
    """A worker of the real workflows and mocked steps (new ones, unless given), on a task
    queue of its own (unless given: a second worker for the same releases), versioned as
    run_worker's; the real activities given take the place of their mocks."""
    steps = steps or Steps()
    queue = queue or f"mocked-{uuid.uuid4()}"
    names = {step.__name__ for step in real}
    worker = Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=[*(s for s in steps.activities() if s.__name__ not in names), *real],
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        deployment_config=deployment_config(queue),
    )
    async with serving(client, worker):
        yield Mocked(client, queue, steps)
