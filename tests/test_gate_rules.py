"""Issue 20's rules for closing, cancelling and deciding in time, with the real workflows on the
dev server and mocked steps (tests/mocked.py). Reproductions: each fails on the code the issue
was filed against, and encodes the rule the fix is to keep.

- A release that is recording its ending cannot be cancelled out of it: the record, the end
  announcement, the unlocks and the workflow's result all say how the release ended.
- A cancel that a step finishes through still ends the release before its soak.
- A gate or a soak is decided by what was accepted before it ended: an approval or a skip that
  reaches the workflow only after its deadline (no worker ran in between) is refused.
"""

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import UpdateMethodMultiParam

from handles import refused_update, wait_for_status
from mocked import (
    DEV,
    QC,
    TEST,
    WAIT_SECONDS,
    Mocked,
    ReleaseHandle,
    Steps,
    make_release,
    mocked_worker,
)
from shared import (
    ApproveInput,
    NotifyInput,
    Outcome,
    RejectInput,
    ReleaseProgress,
    ReleaseResult,
    SkipSoakInput,
)
from test_locks import COMPLETED, lock_statuses
from workflows import ReleaseWorkflow

# How each way an activity closes reads in the history, and where its event says which it was.
ACTIVITY_CLOSES = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("completed", "activity_task_completed"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("failed", "activity_task_failed"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("timed out", "activity_task_timed_out"),
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("cancelled", "activity_task_canceled"),
}
# A held step hears of a cancel only in a heartbeat's answer (the worker sends one at least every
# 0.5 s): held this long, a step that is to be asked to stop has been.
CANCEL_REACHES_A_STEP_SECONDS = 2.0
UNLOCK_SENT = EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
REFUSED = "QC holds frontend 1.0, not 1.1"


async def activity_closes(client: Client, workflow_id: str, name: str) -> list[str]:
    """How each run of activity name in workflow_id closed so far, from its history."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, str] = {}
    closes = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.event_type in ACTIVITY_CLOSES:
            close, kind = ACTIVITY_CLOSES[event.event_type]
            attributes = getattr(event, f"{kind}_event_attributes")
            if scheduled[attributes.scheduled_event_id] == name:
                closes.append(close)
    return closes


async def ending(release: ReleaseHandle) -> ReleaseResult | BaseException | None:
    """How the release workflow closed: its result, or the error under its failure (a step's,
    through its deploy's); within WAIT_SECONDS."""
    try:
        return await asyncio.wait_for(release.result(), WAIT_SECONDS)
    except WorkflowFailureError as failed:
        cause: BaseException | None = failed.cause
        while isinstance(cause, ActivityError | ChildWorkflowError):
            cause = cause.cause
        return cause
    except TimeoutError:
        status = await release.query(ReleaseWorkflow.status)
        raise AssertionError(
            f"the release had not ended after {WAIT_SECONDS} s: {status}"
        ) from None


def told(ended: ReleaseResult | BaseException | None) -> tuple[str, str]:
    """The outcome and detail the release's caller was told: a result, the error that failed
    it, or a cancel."""
    if isinstance(ended, ReleaseResult):
        return ended.outcome, ended.detail
    if isinstance(ended, ApplicationError):
        return Outcome.FAILED, ended.message
    return Outcome.CANCELLED, repr(ended)


# --- Closing: a cancel while the release records its ending ----------------------------------


async def recording(mocked: Mocked, outcome: Outcome) -> ReleaseHandle:
    """Start a release that ends with outcome; return it once it is recording that (the
    record_release step held)."""
    steps = mocked.steps
    if outcome is Outcome.REJECTED:
        steps.release = make_release(approved=False)
    if outcome is Outcome.FAILED:
        steps.fail("check_promotion", ApplicationError(REFUSED, non_retryable=True))
    release = await mocked.start()
    if outcome is Outcome.REJECTED:
        await wait_for_status(release, "waiting for approval before DEV")
        reject = RejectInput(gate=DEV, by="Grace", reason="code freeze")
        await release.execute_update(ReleaseWorkflow.reject, reject)
    await steps.called("record_release")
    await wait_for_status(release, "recording")
    return release


async def held_until_cancelled(mocked: Mocked, release: ReleaseHandle, step: str) -> None:
    """Keep step held until it has been cancelled, or long enough that it would have been."""
    deadline = time.monotonic() + CANCEL_REACHES_A_STEP_SECONDS
    while time.monotonic() < deadline:
        if await activity_closes(mocked.client, release.id, step):
            return
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("outcome", "detail"),
    [(Outcome.SUCCESS, ""), (Outcome.REJECTED, "by Grace: code freeze"), (Outcome.FAILED, REFUSED)],
    ids=["success", "rejected", "failed"],
)
async def test_a_cancel_while_a_release_records_its_ending_changes_neither_record_nor_result(
    mocked: Mocked, outcome: Outcome, detail: str
) -> None:
    """Closing cannot be interrupted: the record is written, the end announced, the locks let
    go, and the workflow ends as the record says, not cancelled."""
    held = mocked.steps.hold("record_release")
    release = await recording(mocked, outcome)
    await release.cancel(reason="too late")
    await held_until_cancelled(mocked, release, "record_release")
    held.set()
    ended = await ending(release)

    assert await activity_closes(mocked.client, release.id, "record_release") == ["completed"]
    record = mocked.steps.record()
    assert (record.result.outcome, record.result.detail) == (outcome, detail)
    assert told(ended) == (outcome, detail)
    assert mocked.steps.announced()[-1] == f"ended {outcome}"
    assert await lock_statuses(mocked, DEV, TEST) == [COMPLETED, COMPLETED]


# --- A cancel that a step finishes through ---------------------------------------------------


class FinishingSteps(Steps):
    """The mocked steps, but an announcement, once started, finishes even if asked to stop: as
    one that had done its work when the cancel came."""

    @activity.defn(name="notify")
    async def notify(self, request: NotifyInput) -> bool:
        work = asyncio.ensure_future(super().notify(request))
        while not work.done():
            with suppress(asyncio.CancelledError):  # the cancel is heard, and not obeyed
                await asyncio.shield(work)
        return work.result()


async def cancelled_while_announcing(client: Client, steps: FinishingSteps) -> None:
    """Run the release (DEV, TEST, QC) until, TEST deployed, it waits for its announcement of
    DEV (held) before announcing TEST; cancel it then, let the announcement finish, and see the
    release end CANCELLED within WAIT_SECONDS, having announced nothing more."""
    announcing = steps.hold("notify")
    async with mocked_worker(client, steps) as mocked:
        release = await mocked.start()
        await wait_for_event(
            release, EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
        )
        await release.cancel(reason="not this week")
        await held_until_cancelled(mocked, release, "notify")
        announcing.set()
        ended = await ending(release)
    assert await activity_closes(client, release.id, "notify") == ["completed", "completed"]
    assert told(ended)[0] == Outcome.CANCELLED, told(ended)
    assert steps.announced() == ["promoted to DEV", "ended CANCELLED"]


async def test_a_cancel_a_step_finishes_through_ends_the_release_before_its_soak(
    client: Client,
) -> None:
    """The DEV announcement finishes despite the cancel; the release does not then soak TEST for
    an hour: it ends CANCELLED at once, recorded so."""
    steps = FinishingSteps(release=make_release((DEV, TEST, QC), soak_seconds={TEST: 3600}))
    await cancelled_while_announcing(client, steps)

    record = steps.record()
    assert (record.result.outcome, record.result.detail) == (Outcome.CANCELLED, "not this week")
    assert steps.ran_in(QC) == []


async def test_a_cancel_a_step_finishes_through_ends_the_release_before_its_gate(
    client: Client,
) -> None:
    """The DEV announcement finishes despite the cancel; the release does not open the gate
    before QC: it ends CANCELLED at once, with no decision."""
    steps = FinishingSteps(release=make_release((DEV, TEST, QC), approval_before=(QC,)))
    await cancelled_while_announcing(client, steps)

    record = steps.record()
    assert (record.result.outcome, record.result.detail) == (Outcome.CANCELLED, "not this week")
    assert (record.decisions, steps.ran_in(QC)) == ([], [])


async def wait_for_event(handle: WorkflowHandle[Any, Any], kind: EventType.ValueType) -> None:
    """Wait until the workflow's history holds an event of kind, within WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while kind not in [event.event_type for event in (await handle.fetch_history()).events]:
        assert time.monotonic() < deadline, f"{handle.id}: no {EventType.Name(kind)}"
        await asyncio.sleep(0.05)


# --- Deciding in time: an Update that reaches the release after its deadline -----------------


async def sent_while_no_worker(
    release: ReleaseHandle, update: UpdateMethodMultiParam[..., str], request: object
) -> "asyncio.Task[str]":
    """Send an Update to the release while no worker runs; return it, awaiting its answer, once
    the server holds it. (It is sent twice under one ID: the first send waits for a worker and
    times out, which proves the server has it; the second waits for the answer.)"""
    update_id = str(uuid.uuid4())
    with pytest.raises(WorkflowUpdateRPCTimeoutOrCancelledError):
        await release.start_update(
            update,
            request,
            id=update_id,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            rpc_timeout=timedelta(seconds=1),
        )
    return asyncio.create_task(release.execute_update(update, request, id=update_id))


async def past(deadline: str | None) -> None:
    """Wait until a second after deadline (ISO 8601, the workflow's clock: the server's)."""
    assert deadline is not None
    until = datetime.fromisoformat(deadline) + timedelta(seconds=1)
    while (left := (until - datetime.now(until.tzinfo)).total_seconds()) > 0:
        await asyncio.sleep(min(left, 0.1))


async def sent_late(
    client: Client,
    steps: Steps,
    waiting: str,
    deadline: Callable[[ReleaseProgress], str | None],
    update: UpdateMethodMultiParam[..., str],
    request: object,
) -> tuple[str, ReleaseResult | BaseException | None]:
    """Run the release until its status says waiting; with no worker, wait past the deadline
    its progress gives, send the Update, then start a worker again: why the Update was refused,
    and how the release ended."""
    async with mocked_worker(client, steps) as mocked:
        release = await mocked.start()
        await wait_for_status(release, waiting)
        until = deadline(await release.query(ReleaseWorkflow.progress))
    await past(until)
    late = await sent_while_no_worker(release, update, request)
    async with mocked_worker(client, steps, mocked.task_queue):
        return await refused_update(late), await ending(release)


async def test_an_approval_that_reaches_the_release_after_its_gate_expired_is_refused(
    client: Client,
) -> None:
    """The gate passes only on an approval accepted before it expired: one that comes later,
    while no worker ran, is refused, and the release ends REJECTED by the expiry."""
    steps = Steps(release=make_release(approval_before=(TEST,), approval_timeout_seconds=2))
    approve = ApproveInput(gate=TEST, by="Ada")
    why, ended = await sent_late(
        client,
        steps,
        "waiting for approval before TEST",
        lambda progress: progress.gate_expires,
        ReleaseWorkflow.approve,
        approve,
    )

    # Refused by the gate's clock, or, had the worker seen the timer first, by the closed gate.
    assert "the approval before TEST expired at" in why or "not waiting for approval" in why, why
    assert told(ended) == (Outcome.REJECTED, "approval expired after 2 s")
    record = steps.record()
    expired = (TEST, False, "", "approval expired after 2 s")
    assert [(d.environment, d.approved, d.by, d.reason) for d in record.decisions] == [expired]
    assert steps.ran_in(TEST) == []


async def test_a_skip_that_reaches_the_release_after_its_soak_ended_is_refused(
    client: Client,
) -> None:
    """A soak is skipped only by a skip accepted before it ended: one that comes later, while no
    worker ran, is refused, and the record shows no skipped soak."""
    steps = Steps(release=make_release(soak_seconds={DEV: 2}))
    why, ended = await sent_late(
        client,
        steps,
        "soaking DEV for 2 s",
        lambda progress: progress.soak.ends if progress.soak else None,
        ReleaseWorkflow.skip_soak,
        SkipSoakInput(by="Ada"),
    )

    assert "the soak of DEV has ended already" in why or "not soaking" in why, why
    assert told(ended) == (Outcome.SUCCESS, "")
    assert steps.record().skipped_soaks == []
