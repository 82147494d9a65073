"""Approval gates, fast: ReleaseWorkflow's approve and reject Updates and their validators, with
mocked steps (tests/mocked.py); the gate logic is in gates.py."""

from collections.abc import Awaitable

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.service import RPCError

from handles import refused_update, timers, wait_for_status
from mocked import DEV, KEY, QC, TEST, Mocked, ReleaseHandle, make_release
from shared import ApproveInput, CellState, Decision, Environment, Outcome, RejectInput
from workflows import ReleaseWorkflow


async def waiting_at(mocked: Mocked, gate: Environment) -> ReleaseHandle:
    """Start a release that waits for a person before gate; return it once it waits there."""
    release = await mocked.start()
    await wait_for_status(release, f"waiting for approval before {gate.value}")
    return release


def decide(release: ReleaseHandle, request: ApproveInput | RejectInput) -> Awaitable[str]:
    if isinstance(request, ApproveInput):
        return release.execute_update(ReleaseWorkflow.approve, request)
    return release.execute_update(ReleaseWorkflow.reject, request)


def decisions(mocked: Mocked) -> list[tuple[Environment, bool, str, str]]:
    """The decisions the release recorded: (environment, approved, by, reason)."""
    record = mocked.steps.record()
    return [(d.environment, d.approved, d.by, d.reason) for d in record.decisions]


async def test_an_unapproved_release_waits_before_any_change_until_a_person_approves(
    mocked: Mocked,
) -> None:
    mocked.steps.release = make_release(approved=False)
    release = await waiting_at(mocked, DEV)

    progress = await release.query(ReleaseWorkflow.progress)
    assert progress.gate is DEV
    assert {cell.state for cell in progress.cells[DEV].values()} == {CellState.WAITING_FOR_APPROVAL}
    assert mocked.steps.names() == ["gather_release", "check_promotion"]

    approve = ApproveInput(gate=DEV, by=" Ada ")
    answer = await release.execute_update(ReleaseWorkflow.approve, approve)

    assert answer == f"Release {KEY}: DEV approved by Ada"
    assert str(await release.result()) == f"Release {KEY}: SUCCESS"
    assert decisions(mocked) == [(DEV, True, "Ada", "")]
    assert mocked.steps.record().states[DEV] == {"frontend": "done", "sbstore": "done"}


async def test_a_rejection_ends_the_release_rejected_with_no_deploy_started(
    mocked: Mocked,
) -> None:
    mocked.steps.release = make_release(approved=False)
    release = await waiting_at(mocked, DEV)

    reject = RejectInput(gate=DEV, by="Grace", reason=" code freeze ")
    answer = await release.execute_update(ReleaseWorkflow.reject, reject)

    assert answer == f"Release {KEY}: DEV rejected by Grace"
    result = await release.result()
    assert str(result) == f"Release {KEY}: REJECTED by Grace: code freeze"
    assert mocked.steps.names() == ["gather_release", "check_promotion", "record_release"]
    record = mocked.steps.record()
    assert (record.result.outcome, record.result.detail) == (
        Outcome.REJECTED,
        "by Grace: code freeze",
    )
    assert decisions(mocked) == [(DEV, False, "Grace", "code freeze")]
    assert record.states == {
        DEV: {"frontend": CellState.REJECTED, "sbstore": CellState.REJECTED},
        TEST: {"frontend": CellState.NOT_REACHED, "sbstore": CellState.NOT_REACHED},
    }


REFUSED: list[tuple[ApproveInput | RejectInput, str]] = [
    (ApproveInput(gate=TEST, by="Ada"), "waits for approval before DEV, not TEST: say --gate DEV"),
    (ApproveInput(gate=DEV, by="  "), "say who decides: --by NAME"),
    (RejectInput(gate=DEV, by="Grace", reason=" "), "say why: --reason TEXT"),
    # Issue 21, item 2: two Hangul fillers, a zero-width space, a blank Braille pattern.
    (ApproveInput(gate=DEV, by="\u3164\u3164"), "say who decides: --by NAME"),
    (ApproveInput(gate=DEV, by="\u200b"), "say who decides: --by NAME"),
    (RejectInput(gate=DEV, by="Grace", reason="\u2800"), "say why: --reason TEXT"),
    (ApproveInput(gate=DEV, by="\x1b[2JAda"), "--by must be one line of printable text"),
    (ApproveInput(gate=DEV, by="Ada\nRelease X: SUCCESS"), "--by must be one line"),
    (ApproveInput(gate=DEV, by="A" * 101), "--by must be one line of printable text, at most 100"),
    (RejectInput(gate=DEV, by="Grace", reason="x" * 501), "--reason must be one line"),
]


async def test_a_decision_for_another_gate_or_without_a_clean_name_or_reason_is_refused(
    mocked: Mocked,
) -> None:
    mocked.steps.release = make_release(approved=False)
    release = await waiting_at(mocked, DEV)

    for request, why in REFUSED:
        assert why in await refused_update(decide(release, request)), request
    assert await release.query(ReleaseWorkflow.status) == "waiting for approval before DEV"

    # Stored in one Unicode form (NFC): "e" and a combining acute accent is one "é".
    approve = ApproveInput(gate=DEV, by=" Ade\u0301le ")
    await release.execute_update(ReleaseWorkflow.approve, approve)
    await release.result()
    # Validators refuse before the history: only the one good decision entered it.
    history = await release.fetch_history()
    accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    assert sum(event.event_type == accepted for event in history.events) == 1
    assert decisions(mocked) == [(DEV, True, "Ad\u00e9le", "")]


async def test_a_gate_before_a_later_environment_waits_once_the_earlier_ones_are_deployed(
    mocked: Mocked,
) -> None:
    steps = mocked.steps
    steps.release = make_release((DEV, TEST, QC), approval_before=(QC,))
    deploy = steps.hold("deploy_artifact", ("frontend", QC))
    release = await waiting_at(mocked, QC)
    progress = await release.query(ReleaseWorkflow.progress)
    assert {env: {c.state for c in row.values()} for env, row in progress.cells.items()} == {
        DEV: {CellState.DONE},
        TEST: {CellState.DONE},
        QC: {CellState.WAITING_FOR_APPROVAL},
    }

    await release.execute_update(ReleaseWorkflow.approve, ApproveInput(gate=QC, by="Ada"))
    await steps.called("deploy_artifact", ("frontend", QC))
    again = release.execute_update(ReleaseWorkflow.approve, ApproveInput(gate=QC, by="Ada"))
    assert "is not waiting for approval (deploying to QC)" in await refused_update(again)
    deploy.set()

    assert str(await release.result()) == f"Release {KEY}: SUCCESS"
    (decision,) = steps.record().decisions
    assert isinstance(decision, Decision) and (decision.environment, decision.by) == (QC, "Ada")


async def test_a_gate_nobody_decides_expires_and_the_release_ends_rejected(mocked: Mocked) -> None:
    mocked.steps.release = make_release(approval_before=(TEST,), approval_timeout_seconds=3)
    release = await waiting_at(mocked, TEST)
    progress = await release.query(ReleaseWorkflow.progress)
    assert progress.gate is TEST and progress.gate_expires is not None

    result = await release.result()

    assert result.outcome is Outcome.REJECTED
    assert str(result) == f"Release {KEY}: REJECTED: approval expired after 3 s"
    assert mocked.steps.ran_in(TEST) == []  # the environment untouched
    assert decisions(mocked) == [(TEST, False, "", "approval expired after 3 s")]
    (expiry,) = await timers(mocked.client, release.id)
    assert expiry.summary == "approval before TEST expires after 3 s"
    late = release.execute_update(ReleaseWorkflow.approve, ApproveInput(gate=TEST, by="Ada"))
    with pytest.raises(RPCError):  # the release has ended: nothing is left to approve
        await late
