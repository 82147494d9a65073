"""workflows.py, fast: the real ReleaseWorkflow and DeployWorkflow with mocked steps
(tests/mocked.py), one branch of the plan per test. Approval gates are in test_gates.py, locks in
test_locks.py; releases end to end, with real steps and files, in test_releases.py."""

import asyncio
from collections import Counter
from datetime import datetime

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError

from handles import refused_update, timers, wait_for_status
from mocked import (
    DEV,
    KEY,
    QC,
    TEST,
    Mocked,
    ReleaseHandle,
    Steps,
    Where,
    answer_to_cancel,
    failure_of,
    make_release,
    mocked_worker,
    unhealthy,
)
from shared import (
    CellState,
    Environment,
    Outcome,
    RecordReleaseInput,
    ReleaseResult,
    SkipSoakInput,
    VerifyRollbackInput,
    deploy_workflow_id,
)
from workflows import ReleaseWorkflow

COMPONENTS = ("frontend", "sbstore")
DEPLOY_STEPS = (
    "fetch_config",
    "fetch_artifact",
    "deploy_artifact",
    "update_config",
    "verify_deploy",
)
DONE, FAILED = CellState.DONE, CellState.FAILED
NOT_REACHED = CellState.NOT_REACHED


def every(*envs: Environment) -> Counter[Where]:
    """Each component in each of envs, once."""
    return Counter((component, env) for env in envs for component in COMPONENTS)


def row(**states: CellState) -> dict[str, CellState]:
    return dict(states)


def assert_recorded(mocked: Mocked, outcome: Outcome, detail: str = "") -> RecordReleaseInput:
    """The release was recorded once, last, with this ending; returns the record."""
    record = mocked.steps.record()
    assert record.result == ReleaseResult(release_key=KEY, outcome=outcome, detail=detail)
    assert mocked.steps.names()[-1] == "record_release"
    return record


async def test_a_release_runs_each_step_of_each_deploy_once_wave_by_wave(mocked: Mocked) -> None:
    result = await mocked.run()

    assert str(result) == f"Release {KEY}: SUCCESS"
    steps = mocked.steps
    assert steps.names()[:2] == ["gather_release", "check_promotion"]
    assert Counter(steps.ran("build_artifact")) == every(DEV)  # a build only where it starts
    for step in DEPLOY_STEPS:
        assert Counter(steps.ran(step)) == every(DEV, TEST), step
    assert steps.ran("rollback_deploy") == steps.ran("find_lock_holder") == []
    # A wave starts once the one before it is verified, every component of it.
    wheres = [call.where for call in steps.calls]
    last_dev = max(i for i, where in enumerate(wheres) if where and where[1] is DEV)
    assert min(i for i, where in enumerate(wheres) if where and where[1] is TEST) > last_dev
    record = assert_recorded(mocked, Outcome.SUCCESS)
    deploy = next(call.request for call in steps.calls if call.where)  # whose deploy it serves
    assert (deploy.release_key, deploy.release_run_id) == (KEY, record.release_run_id)
    assert record.states == {env: row(frontend=DONE, sbstore=DONE) for env in (DEV, TEST)}
    assert (record.unlocked_after_use, record.decisions) == ([DEV], [])


@pytest.mark.parametrize(("previous", "shown"), [("1.0", "1.0"), (None, "none")])
async def test_an_unhealthy_deploy_is_rolled_back_and_the_release_goes_no_further(
    mocked: Mocked, previous: str | None, shown: str
) -> None:
    steps = mocked.steps
    steps.release = make_release((DEV, TEST, QC))
    steps.previous = previous
    steps.fail("verify_deploy", unhealthy(), ("frontend", TEST))

    result = await mocked.run()

    assert str(result) == f"Release {KEY}: ROLLED BACK frontend in TEST (1.1 -> {shown})"
    assert steps.ran("rollback_deploy") == steps.ran("verify_rollback") == [("frontend", TEST)]
    (check,) = [call.request for call in steps.calls if call.step == "verify_rollback"]
    assert check == VerifyRollbackInput(deployment=check.deployment, previous=previous)
    assert steps.ran_in(QC) == []
    record = assert_recorded(mocked, Outcome.ROLLED_BACK, f"frontend in TEST (1.1 -> {shown})")
    assert record.states[TEST] == row(frontend=CellState.ROLLED_BACK, sbstore=DONE)
    assert record.states[QC] == row(frontend=NOT_REACHED, sbstore=NOT_REACHED)


async def test_a_verify_that_fails_for_another_reason_fails_the_release_with_no_rollback(
    mocked: Mocked,
) -> None:
    steps = mocked.steps
    refused = ApplicationError("config unreadable", type="ReleaseError", non_retryable=True)
    steps.fail("verify_deploy", refused, ("sbstore", DEV))

    error = await failure_of(await mocked.start())

    assert (error.type, error.message) == ("ReleaseError", "config unreadable")
    assert steps.ran("rollback_deploy") == []
    record = assert_recorded(mocked, Outcome.FAILED, "config unreadable")
    assert record.states == {
        DEV: row(frontend=DONE, sbstore=FAILED),
        TEST: row(frontend=NOT_REACHED, sbstore=NOT_REACHED),
    }


async def test_a_refused_promotion_fails_the_release_before_any_deploy(mocked: Mocked) -> None:
    message = "QC holds frontend 1.0, not 1.1"
    refused = ApplicationError(message, type="ReleaseError", non_retryable=True)
    mocked.steps.fail("check_promotion", refused)
    release = await mocked.start()

    error = await failure_of(release)

    assert error.message == message and error.non_retryable
    assert mocked.steps.names() == ["gather_release", "check_promotion", "record_release"]
    record = assert_recorded(mocked, Outcome.FAILED, message)
    assert record.before == {}
    assert {state for states in record.states.values() for state in states.values()} == {
        NOT_REACHED
    }
    assert await release.query(ReleaseWorkflow.status) == f"FAILED: {message}"


async def test_a_failed_deploy_lets_the_rest_of_its_wave_finish_before_the_release_fails(
    mocked: Mocked,
) -> None:
    steps = mocked.steps
    steps.fail(
        "deploy_artifact", ApplicationError("disk full", non_retryable=True), ("sbstore", DEV)
    )
    frontend = steps.hold("deploy_artifact", ("frontend", DEV))
    release = await mocked.start()
    await steps.called("deploy_artifact", ("frontend", DEV))
    await cell_state(release, DEV, "sbstore", FAILED)  # the release knows the deploy failed
    await asyncio.sleep(0.3)  # time enough to end the release, were it not waiting

    assert "record_release" not in steps.names()
    frontend.set()
    error = await failure_of(release)

    assert error.message == "disk full"
    names = steps.names()
    assert names.index("verify_deploy") < names.index("record_release")
    assert steps.ran("verify_deploy") == [("frontend", DEV)]
    record = assert_recorded(mocked, Outcome.FAILED, "disk full")
    assert record.states[DEV] == row(frontend=DONE, sbstore=FAILED)
    assert steps.ran_in(TEST) == []


async def cell_state(release: ReleaseHandle, env: Environment, component: str, state: str) -> None:
    """Wait until the release's grid shows component in env in state."""
    for _ in range(200):
        progress = await release.query(ReleaseWorkflow.progress)
        if progress.cells[env][component].state == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{component} in {env} never became {state}")


async def cancelled_during(
    mocked: Mocked, step: str, reason: str
) -> tuple[RecordReleaseInput, bool]:
    """Cancel the release while step of frontend's DEV deploy runs. Returns its record, and
    whether the deploy asked the step to stop."""
    steps = mocked.steps
    held = steps.hold(step, ("frontend", DEV))
    release = await mocked.start()
    await steps.called(step, ("frontend", DEV))
    await release.cancel(reason=reason)
    deploy = deploy_workflow_id(release.id, DEV, "frontend")
    answer = await answer_to_cancel(mocked.client, deploy)
    held.set()
    with pytest.raises(WorkflowFailureError) as ended:
        await release.result()
    assert isinstance(ended.value.cause, CancelledError)
    assert await release.query(ReleaseWorkflow.status) == f"CANCELLED: {reason}"
    assert steps.ran_in(TEST) == []
    stopped = EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in answer
    return assert_recorded(mocked, Outcome.CANCELLED, reason), stopped


async def test_a_cancel_while_a_deploy_changes_its_environment_lets_the_change_finish(
    mocked: Mocked,
) -> None:
    record, stopped = await cancelled_during(mocked, "deploy_artifact", "stop")

    assert not stopped  # the deploy step in flight was never asked to stop
    for step in ("update_config", "verify_deploy"):
        assert ("frontend", DEV) in mocked.steps.ran(step), step
    assert record.states[DEV]["frontend"] == DONE
    assert record.states[TEST] == row(frontend=NOT_REACHED, sbstore=NOT_REACHED)


async def test_a_cancel_while_a_deploy_gathers_stops_it_before_any_change(mocked: Mocked) -> None:
    record, stopped = await cancelled_during(mocked, "fetch_config", "not this week")

    assert stopped  # the step gathering was asked to stop
    assert ("frontend", DEV) not in mocked.steps.ran("deploy_artifact")
    assert record.states[DEV]["frontend"] == CellState.CANCELLED


async def test_a_cancel_at_a_gate_ends_the_release_cancelled_with_its_reason_shown(
    mocked: Mocked,
) -> None:
    mocked.steps.release = make_release(approved=False)
    release = await mocked.start()
    await wait_for_status(release, "waiting for approval before DEV")

    await release.cancel(reason="not this week\x1b[2J")

    with pytest.raises(WorkflowFailureError) as ended:
        await release.result()
    assert isinstance(ended.value.cause, CancelledError)
    # The reason is kept as given, with the escape code spelled out rather than obeyed.
    shown = "not this week\\x1b[2J"
    assert await release.query(ReleaseWorkflow.status) == f"CANCELLED: {shown}"
    record = assert_recorded(mocked, Outcome.CANCELLED, shown)
    assert mocked.steps.names() == ["gather_release", "check_promotion", "record_release"]
    assert record.states[DEV] == row(frontend=NOT_REACHED, sbstore=NOT_REACHED)


# --- Soaks: a durable wait before the release promotes past an environment -------------------


async def test_a_soak_holds_the_next_environment_back_for_its_time(mocked: Mocked) -> None:
    mocked.steps.release = make_release(soak_seconds={DEV: 3})
    release = await mocked.start()
    await wait_for_status(release, "soaking DEV for 3 s")

    progress = await release.query(ReleaseWorkflow.progress)
    assert progress.soak is not None and progress.soak.environment is DEV
    assert {cell.state for cell in progress.cells[DEV].values()} == {CellState.SOAKING}
    assert mocked.steps.ran_in(TEST) == []
    assert str(await release.result()) == f"Release {KEY}: SUCCESS"

    # Read from the server's history: a timer, with its summary, that fired after 3 s, and
    # TEST's deploys started only once it had.
    (soak,) = await timers(mocked.client, release.id)
    assert soak.summary == "soak DEV for 3 s" and soak.fired is not None
    assert (soak.fired - soak.started).total_seconds() >= 3
    first_test_deploy = await started_at(mocked, deploy_workflow_id(release.id, TEST, "frontend"))
    assert first_test_deploy >= soak.fired
    assert mocked.steps.record().states[DEV] == {"frontend": "done", "sbstore": "done"}


async def test_a_person_can_end_a_soak_early_and_it_is_recorded(mocked: Mocked) -> None:
    mocked.steps.release = make_release(soak_seconds={DEV: 600})
    verifying = mocked.steps.hold("verify_deploy", ("frontend", DEV))
    release = await mocked.start()
    await mocked.steps.called("verify_deploy", ("frontend", DEV))
    early = release.execute_update(ReleaseWorkflow.skip_soak, SkipSoakInput(by="Ada"))
    assert "not soaking" in await refused_update(early)
    verifying.set()
    await wait_for_status(release, "soaking DEV for 600 s")
    no_name = release.execute_update(ReleaseWorkflow.skip_soak, SkipSoakInput(by=" "))
    assert "--by NAME" in await refused_update(no_name)

    answer = await release.execute_update(ReleaseWorkflow.skip_soak, SkipSoakInput(by="Ada"))

    assert answer == f"Release {KEY}: soak of DEV skipped by Ada"
    assert str(await release.result()) == f"Release {KEY}: SUCCESS"
    (skipped,) = mocked.steps.record().skipped_soaks
    assert (skipped.environment, skipped.by) == (DEV, "Ada")


async def test_a_cancel_during_a_soak_ends_it_cleanly(mocked: Mocked) -> None:
    mocked.steps.release = make_release(soak_seconds={DEV: 600})
    release = await mocked.start()
    await wait_for_status(release, "soaking DEV for 600 s")
    await release.cancel(reason="not today")
    with pytest.raises(WorkflowFailureError):
        await release.result()
    progress = await release.query(ReleaseWorkflow.progress)
    assert progress.soak is None  # nothing left to show, or to skip
    assert mocked.steps.record().states[DEV] == {"frontend": "done", "sbstore": "done"}
    assert mocked.steps.ran_in(TEST) == []
    late = release.execute_update(ReleaseWorkflow.skip_soak, SkipSoakInput(by="Ada"))
    with pytest.raises(RPCError):  # the release has ended
        await late


async def test_a_soak_runs_on_while_no_worker_does(client: Client) -> None:
    """The soak is the server's timer: stopping the only worker for a while does not make it
    longer than its time or the worker's absence, whichever ends later."""
    steps = Steps(release=make_release(soak_seconds={DEV: 3}))
    async with mocked_worker(client, steps) as mocked:
        release = await mocked.start()
        await wait_for_status(release, "soaking DEV for 3 s")
    await asyncio.sleep(1)  # no worker at all for a second
    async with mocked_worker(client, steps, mocked.task_queue):
        assert str(await release.result()) == f"Release {KEY}: SUCCESS"
    (soak,) = await timers(client, release.id)
    assert soak.fired is not None and 3 <= (soak.fired - soak.started).total_seconds() < 4


async def started_at(mocked: Mocked, workflow_id: str) -> datetime:
    """When the server started workflow_id."""
    description = await mocked.client.get_workflow_handle(workflow_id).describe()
    return description.start_time


# --- Announcements: a step added behind workflow.patched ---------------------------------------


async def test_a_release_announces_each_promotion_and_its_ending_after_recording_it(
    mocked: Mocked,
) -> None:
    mocked.steps.release = make_release(environments=(DEV, TEST, QC))
    assert str(await mocked.run()) == f"Release {KEY}: SUCCESS"
    assert mocked.steps.announced() == [
        "promoted to DEV",
        "promoted to TEST",
        "promoted to QC",
        "ended SUCCESS",
    ]
    steps = [call.step for call in mocked.steps.calls]
    assert steps.index("record_release") < len(steps) - 1  # the ending is announced once recorded


async def test_an_announcement_goes_on_beside_the_next_wave(mocked: Mocked) -> None:
    # Issue 26: "promoted to DEV" is sent in the workflow task that starts TEST's deploys, "to
    # TEST" in the one that records, the ending in the one that lets the locks go; in order.
    mocked.steps.release = make_release(environments=(DEV, TEST))
    release = await mocked.start()
    await release.result()

    sent_by_task = await commands_by_workflow_task(release)
    dev_announced, test_announced, _ = [t for t, sent in sent_by_task.items() if "notify" in sent]
    assert f"{release.id}.TEST.frontend" in sent_by_task[dev_announced]
    assert "record_release" in sent_by_task[test_announced]  # the last goes on beside the record
    last = sent_by_task[max(sent_by_task)]
    assert "notify" in last and mocked.lock_id(TEST) in last
    assert mocked.steps.announced() == ["promoted to DEV", "promoted to TEST", "ended SUCCESS"]


async def test_an_announcement_that_fails_for_good_is_logged_and_the_release_goes_on(
    mocked: Mocked, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 26: announcing is best-effort; a release's outcome never hangs on a message.
    mocked.steps.release = make_release(environments=(DEV, TEST))
    mocked.steps.fail("notify", ApplicationError("webhook refused", non_retryable=True))
    assert str(await mocked.run()) == f"Release {KEY}: SUCCESS"
    assert mocked.steps.record().result.outcome is Outcome.SUCCESS
    assert mocked.steps.announced() == ["promoted to DEV", "promoted to TEST", "ended SUCCESS"]
    failed = [r.getMessage() for r in caplog.records if "announcement failed" in r.getMessage()]
    assert len(failed) == 3 and all("webhook refused" in message for message in failed)


async def commands_by_workflow_task(release: ReleaseHandle) -> dict[int, list[str]]:
    """What each workflow task of release sent: steps by name, children and signals by the ID
    of the workflow they go to; keyed by the task's completed event."""
    sent: dict[int, list[str]] = {}
    async for e in release.fetch_history_events():
        step = e.activity_task_scheduled_event_attributes
        child = e.start_child_workflow_execution_initiated_event_attributes
        signal = e.signal_external_workflow_execution_initiated_event_attributes
        for task, name in (
            (step.workflow_task_completed_event_id, step.activity_type.name),
            (child.workflow_task_completed_event_id, child.workflow_id),
            (signal.workflow_task_completed_event_id, signal.workflow_execution.workflow_id),
        ):
            if name:
                sent.setdefault(task, []).append(name)
    return sent


async def test_a_rejected_release_announces_its_ending(mocked: Mocked) -> None:
    mocked.steps.release = make_release(approved=False, approval_timeout_seconds=1)
    result = await mocked.run()
    assert result.outcome is Outcome.REJECTED
    assert mocked.steps.announced() == ["ended REJECTED"]
