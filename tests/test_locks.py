"""Environment locks, fast: the real EnvironmentLockWorkflow taken and let go by the real
ReleaseWorkflow, with mocked steps (tests/mocked.py); find_lock_holder is mocked. The lock
logic is to move from workflows.py to locks.py."""

import asyncio
import uuid

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from handles import wait_for_status
from locks import UNLOCK, EnvironmentLockWorkflow
from mocked import DEV, KEY, QC, TEST, Mocked, failure_of, make_release
from shared import (
    Environment,
    EnvironmentLock,
    ErrorType,
    LockHolderInput,
    Outcome,
    RejectInput,
    UnlockInput,
)
from workflows import ReleaseWorkflow

RUNNING = WorkflowExecutionStatus.RUNNING
COMPLETED = WorkflowExecutionStatus.COMPLETED


async def hold(
    mocked: Mocked, env: Environment, holder: str = "RELEASE-OTHER"
) -> WorkflowHandle[EnvironmentLockWorkflow, None]:
    """Hold env's lock in this test's scope, as release holder would (started by hand, the lock
    is held for the release its input names)."""
    return await mocked.client.start_workflow(
        EnvironmentLockWorkflow.run,
        EnvironmentLock(release_key=holder, environment=env),
        id=mocked.lock_id(env),
        task_queue=mocked.task_queue,
    )


async def lock_statuses(mocked: Mocked, *envs: Environment) -> list[WorkflowExecutionStatus | None]:
    """The status of each environment's lock (the latest run of its workflow ID)."""
    handles = [mocked.client.get_workflow_handle(mocked.lock_id(env)) for env in envs]
    return [(await handle.describe()).status for handle in handles]


@pytest.mark.parametrize(
    ("holder", "in_use"),
    [
        (
            "RELEASE-OTHER-1234",
            "in use by release RELEASE-OTHER-1234, which has not let it go yet. "
            f"Run {KEY} again once RELEASE-OTHER-1234 has finished.",
        ),
        ("", f"in use a moment ago. Run {KEY} again."),
    ],
    ids=["held by a running release", "free a moment ago, then held again"],
)
async def test_a_release_finding_an_environment_held_is_refused_naming_the_holder(
    mocked: Mocked, holder: str, in_use: str
) -> None:
    other = await hold(mocked, TEST)
    mocked.steps.lock_holder = holder

    error = await failure_of(await mocked.start())

    assert (error.type, error.non_retryable) == (ErrorType.ENVIRONMENT_BUSY, True)
    assert error.message == f"Release {KEY} was refused: TEST {in_use}"
    # Refused before any check or deploy; the refusal is recorded.
    assert mocked.steps.names() == ["gather_release", "find_lock_holder", "record_release"]
    (asked,) = [call.request for call in mocked.steps.calls if call.step == "find_lock_holder"]
    assert asked == LockHolderInput(lock_workflow_id=mocked.lock_id(TEST))
    record = mocked.steps.record()
    assert (record.result.outcome, record.result.detail) == (Outcome.FAILED, error.message)
    # The lock it had taken is let go; the other release's is not touched.
    assert await lock_statuses(mocked, DEV, TEST) == [COMPLETED, RUNNING]
    await other.signal(UNLOCK, UnlockInput(release_workflow_id="RELEASE-OTHER"))


async def test_a_lock_an_ended_run_of_the_same_release_still_holds_is_not_taken_over(
    mocked: Mocked,
) -> None:
    """Started again under its ID, a release is another release: a lock that its terminated run
    still holds (its deploys finish their change) is not its to adopt, as a reset's run would
    (test_endings, test_lock_rules): it is refused, told to run again in a moment."""
    workflow_id = f"{KEY}-{uuid.uuid4().hex[:8].upper()}"
    orphan = await hold(mocked, DEV, holder=workflow_id)
    mocked.steps.lock_holder = workflow_id

    error = await failure_of(await mocked.start(workflow_id))

    assert (error.type, error.non_retryable) == (ErrorType.ENVIRONMENT_BUSY, True)
    assert error.message == (
        f"Release {KEY} was refused: DEV in use by an earlier run of {KEY}, which ended while "
        f"its deploys were changing them: they finish that change first. Run {KEY} again in a "
        "moment."
    )
    assert await lock_statuses(mocked, DEV) == [RUNNING]
    await orphan.signal(UNLOCK, UnlockInput(release_workflow_id=workflow_id))


async def test_a_release_holds_the_environment_it_is_fed_from_and_lets_go_once_deployed(
    mocked: Mocked,
) -> None:
    # From TEST to QC, waiting before QC: DEV (TEST's source) is let go once TEST is deployed.
    mocked.steps.release = make_release((TEST, QC), approval_before=(QC,))
    release = await mocked.start()
    await wait_for_status(release, "waiting for approval before QC")

    # DEV's lock closes beside the plan (issue 26): give it a moment.
    for _ in range(50):
        if await lock_statuses(mocked, DEV) == [COMPLETED]:
            break
        await asyncio.sleep(0.1)
    assert await lock_statuses(mocked, DEV, TEST, QC) == [COMPLETED, RUNNING, RUNNING]
    reject = RejectInput(gate=QC, by="Grace", reason="not now")
    await release.execute_update(ReleaseWorkflow.reject, reject)

    await release.result()
    assert await lock_statuses(mocked, DEV, TEST, QC) == [COMPLETED] * 3
    assert mocked.steps.record().unlocked_after_use == [DEV]


async def test_a_lock_let_go_after_use_does_not_hold_the_plan_back(mocked: Mocked) -> None:
    # Issue 26: the unlock of DEV, once TEST is deployed, goes out in the same workflow task as
    # the step after it (the announcement); the lock closes beside the plan, not on its path.
    mocked.steps.release = make_release((TEST, QC))
    release = await mocked.start()
    await release.result()

    events = [event async for event in release.fetch_history_events()]
    signals = [e.signal_external_workflow_execution_initiated_event_attributes for e in events]
    (unlock,) = [s for s in signals if s.workflow_execution.workflow_id == mocked.lock_id(DEV)]
    steps = [e.activity_task_scheduled_event_attributes for e in events]
    announcement = next(step for step in steps if step.activity_type.name == "notify")
    assert unlock.workflow_task_completed_event_id == announcement.workflow_task_completed_event_id
    assert await lock_statuses(mocked, DEV, TEST, QC) == [COMPLETED] * 3
    assert mocked.steps.record().unlocked_after_use == [DEV, TEST]
