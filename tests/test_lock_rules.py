"""Issue 20, the doors around environment locks: a lock holds its environment while any change to
it can still run, only its own release lets it go (a terminated lock fails the release at once),
and what a release is (its key, its lock scope) is not up to whoever starts it.

Real dev server, real workflows, mocked steps (tests/mocked.py). The doors a user opens without
the project's code (a signal, a terminate) are opened with the `temporal` CLI, as they would be.
These tests fail on the code the issue was filed against; each says what the issue expects."""

import asyncio
import json
import shlex
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)

from handles import wait_for_status
from lookups import find_lock_holder
from mocked import (
    DEV,
    KEY,
    QC,
    TEST,
    WAIT_SECONDS,
    Mocked,
    ReleaseHandle,
    Steps,
    answer_to,
    answer_to_cancel,
    failure_of,
    make_release,
    mocked_worker,
)
from processes import (
    PROJECT_DIR,
    Finished,
    assert_one_line_without_traceback,
    finish_release,
    run_command,
    run_starter,
    temporal_cli,
    terminal_env,
)
from shared import (
    ApproveInput,
    Deployment,
    EndingInput,
    Environment,
    ErrorType,
    Outcome,
    Release,
    ReleaseResult,
    deploy_workflow_id,
)
from test_endings import reset
from test_locks import hold, lock_statuses
from test_releases import _start
from workflows import ReleaseWorkflow

RUNNING = WorkflowExecutionStatus.RUNNING
COMPLETED = WorkflowExecutionStatus.COMPLETED
FRONTEND_IN_DEV = ("frontend", DEV)


@pytest.fixture
async def lookup(client: Client) -> AsyncIterator[Mocked]:
    """The mocked harness with the real find_lock_holder: who holds a lock is asked of the
    server, as in production (a mock would name whoever the test says)."""
    async with mocked_worker(client, Steps(), "", find_lock_holder) as harness:
        yield harness


async def cli(client: Client, *args: str) -> Finished:
    """`temporal ARGS` against the session's dev server, as a user types it; it must succeed."""
    address = client.service_client.config.target_host
    done = await run_command(temporal_cli(), *args, "--address", address)
    assert done.code == 0, f"temporal {' '.join(args)}: {done.stderr}"
    return done


async def signal_unlock(client: Client, lock_id: str, *cli_input: str) -> None:
    """`temporal workflow signal --name unlock` to lock_id (its latest run), then wait until
    the lock has handled it: a workflow task completed after the signal."""
    signal = ("workflow", "signal", "--workflow-id", lock_id, "--name", "unlock", *cli_input)
    await cli(client, *signal)
    await answer_to(client, lock_id, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)


async def closed(handle: WorkflowHandle[Any, Any], what: str) -> WorkflowExecutionStatus:
    """How the workflow of handle (its latest run, unless handle names one) closed, once it has,
    within WAIT_SECONDS; what names it in the failure."""
    deadline = time.monotonic() + WAIT_SECONDS
    while (status := (await handle.describe()).status) == RUNNING:
        assert time.monotonic() < deadline, f"{what} is still running after {WAIT_SECONDS:g} s"
        await asyncio.sleep(0.05)
    assert status is not None
    return status


def deploy_steps(steps: Steps, release: ReleaseHandle, env: Environment) -> list[str]:
    """The deploy steps that this run of the release ran in env (other releases' left out)."""
    ran = []
    for call in steps.calls:
        if call.where and call.where[1] is env:
            request = call.request
            deployment = request if isinstance(request, Deployment) else request.deployment
            if deployment.release_run_id == release.result_run_id:
                ran.append(call.step)
    return ran


async def at_gate(mocked: Mocked) -> ReleaseHandle:
    """A release from TEST to QC waiting at its gate before QC: it holds TEST and QC."""
    mocked.steps.release = make_release((TEST, QC), approval_before=(QC,))
    release = await mocked.start()
    await wait_for_status(release, "waiting for approval before QC")
    return release


# --- 1. A terminate frees the lock while deploys still change the environment ----------------


async def terminated_mid_deploy(
    mocked: Mocked, environments: tuple[Environment, ...] = (DEV,)
) -> tuple[ReleaseHandle, str]:
    """A release of environments terminated (with the CLI) while its frontend deploy to DEV is
    held in deploy_artifact, once that deploy has answered the cancel its parent's end asked
    for: the release's handle and that deploy's workflow ID."""
    mocked.steps.release = make_release(environments)
    mocked.steps.hold("deploy_artifact", FRONTEND_IN_DEV)
    release = await mocked.start()
    await mocked.steps.called("deploy_artifact", FRONTEND_IN_DEV)
    await cli(mocked.client, "workflow", "terminate", "--workflow-id", release.id)
    deploy = deploy_workflow_id(release.id, DEV, "frontend")
    # The server applies the parent close policies (the deploys', the lock's) together.
    await answer_to_cancel(mocked.client, deploy)
    return release, deploy


async def test_a_terminated_release_s_lock_holds_until_its_deploys_close_then_ends(
    lookup: Mocked,
) -> None:
    """The lock of a terminated release holds DEV until its deploys there close, then ends."""
    release, deploy = await terminated_mid_deploy(lookup)

    assert await lock_statuses(lookup, DEV) == [RUNNING], (
        f"{lookup.lock_id(DEV)} ended with its release while {deploy} still changes DEV"
    )
    lookup.steps.hold("deploy_artifact", FRONTEND_IN_DEV).set()
    for component in ("frontend", "sbstore"):
        deploy_id = deploy_workflow_id(release.id, DEV, component)
        await closed(lookup.client.get_workflow_handle(deploy_id), deploy_id)
    assert "verify_deploy" in deploy_steps(lookup.steps, release, DEV)  # finished its change
    lock = lookup.client.get_workflow_handle(lookup.lock_id(DEV))
    assert await closed(lock, f"{lock.id}, once every deploy of DEV closed,") == COMPLETED
    # Then it recorded how the release ended, which the release, terminated, could not.
    ending = EndingInput(
        release_key=KEY, release_workflow_id=release.id, release_run_id=release.result_run_id
    )
    steps = [call.step for call in lookup.steps.calls]
    assert [call.request for call in lookup.steps.calls[-1:]] == [ending]
    assert steps.count("record_ending") == 1 and steps.index("verify_deploy") < len(steps) - 1


async def test_a_terminated_release_s_lock_of_an_environment_it_never_reached_ends(
    mocked: Mocked,
) -> None:
    """A release of DEV and TEST terminated in its DEV wave: its lock of TEST, where no deploy
    ever started, ends too once the DEV wave has closed (it does not wait for them forever)."""
    await terminated_mid_deploy(mocked, (DEV, TEST))
    mocked.steps.hold("deploy_artifact", FRONTEND_IN_DEV).set()
    for env in (DEV, TEST):
        lock = mocked.client.get_workflow_handle(mocked.lock_id(env))
        assert await closed(lock, f"{lock.id} of a terminated release") == COMPLETED


async def test_a_release_is_refused_an_environment_a_terminated_release_still_deploys_to(
    lookup: Mocked,
) -> None:
    """While a terminated release's deploy still changes DEV, another release is refused DEV."""
    first, deploy = await terminated_mid_deploy(lookup)
    try:
        second = await lookup.start()
        deadline = time.monotonic() + WAIT_SECONDS
        while (await second.describe()).status == RUNNING:
            ran = deploy_steps(lookup.steps, second, DEV)
            assert not ran, f"{second.id} ran {ran} in DEV while {deploy} was still open"
            assert time.monotonic() < deadline, f"{second.id} is still running"
            await asyncio.sleep(0.05)
        error = await failure_of(second)
        assert (error.type, error.non_retryable) == (ErrorType.ENVIRONMENT_BUSY, True)
        assert first.id in error.message, error.message
    finally:
        lookup.steps.hold("deploy_artifact", FRONTEND_IN_DEV).set()


async def test_a_release_started_again_after_a_terminate_does_not_adopt_its_ended_run_s_lock(
    lookup: Mocked,
) -> None:
    """Terminated mid-deploy and started again at once under the same ID, a release is another
    release: it is refused, not handed the lock its ended run holds while that run's deploy
    finishes; that lock then records the ended run, ends, and the release runs."""
    release, _ = await terminated_mid_deploy(lookup)

    error = await failure_of(await lookup.start(release.id))

    assert (error.type, error.non_retryable) == (ErrorType.ENVIRONMENT_BUSY, True)
    assert f"in use by an earlier run of {KEY}" in error.message, error.message
    lookup.steps.hold("deploy_artifact", FRONTEND_IN_DEV).set()
    lock = lookup.client.get_workflow_handle(lookup.lock_id(DEV))
    assert await closed(lock, f"{lock.id} of the terminated run") == COMPLETED
    (ending,) = [call.request for call in lookup.steps.calls if call.step == "record_ending"]
    assert ending.release_run_id == release.result_run_id
    again = await lookup.start(release.id)
    assert str(await asyncio.wait_for(again.result(), WAIT_SECONDS)) == f"Release {KEY}: SUCCESS"


# The first release deploys frontend to where, and a person terminates its lock mid-deploy; the
# second release needs where: to deploy to it, or to be fed from it.
TERMINATED_MID_DEPLOY = {
    "to deploy to": (make_release((DEV,)), DEV, make_release((DEV,))),
    "to be fed from": (make_release((DEV, TEST)), TEST, make_release((QC,))),
}


@pytest.mark.parametrize(
    ("first_release", "where", "second_release"),
    list(TERMINATED_MID_DEPLOY.values()),
    ids=list(TERMINATED_MID_DEPLOY),
)
async def test_a_release_is_refused_an_environment_whose_lock_was_terminated_mid_deploy(
    lookup: Mocked, first_release: Release, where: Environment, second_release: Release
) -> None:
    """A lock terminated by hand while its release deploys frees nothing: the next release that
    needs the environment is refused while that deploy runs, and the first fails LockLost once
    its change is done."""
    lookup.steps.release = first_release
    held = lookup.steps.hold("deploy_artifact", ("frontend", where))
    first = await lookup.start()
    await lookup.steps.called("deploy_artifact", ("frontend", where))
    await cli(lookup.client, "workflow", "terminate", "--workflow-id", lookup.lock_id(where))
    try:
        lookup.steps.release = second_release
        error = await failure_of(await lookup.start())
        assert (error.type, error.non_retryable) == (ErrorType.ENVIRONMENT_BUSY, True)
        assert deploy_workflow_id(first.id, where, "frontend") in error.message, error.message
    finally:
        held.set()
    lost = await failure_of(first)
    assert (lost.type, lost.non_retryable) == (ErrorType.LOCK_LOST, True)
    assert "verify_deploy" in deploy_steps(lookup.steps, first, where)  # its change finished


# --- 2. An unlock meant for one release's lock frees another's --------------------------------


async def one_release_after_another(mocked: Mocked) -> tuple[ReleaseHandle, ReleaseHandle]:
    """Release X ran DEV and TEST and let go; release Y now holds DEV and TEST, waiting at its
    gate before TEST: X's handle, Y's handle."""
    first = await mocked.start()
    assert str(await first.result()) == f"Release {KEY}: SUCCESS"
    mocked.steps.release = make_release((DEV, TEST), approval_before=(TEST,))
    second = await mocked.start()
    await wait_for_status(second, "waiting for approval before TEST")
    return first, second


async def assert_finishes(release: ReleaseHandle) -> None:
    """The release, waiting at its gate before TEST, is approved and ends SUCCESS."""
    await release.execute_update(ReleaseWorkflow.approve, ApproveInput(gate=TEST, by="Grace"))
    assert str(await asyncio.wait_for(release.result(), WAIT_SECONDS)) == f"Release {KEY}: SUCCESS"


async def test_an_unlock_naming_an_earlier_holder_leaves_the_holder_s_lock_held(
    mocked: Mocked,
) -> None:
    """An unlock naming X, which held DEV before Y, does not free Y's lock of DEV."""
    first, second = await one_release_after_another(mocked)

    unlock = f'{{"release_workflow_id": "{first.id}"}}'
    await signal_unlock(mocked.client, mocked.lock_id(DEV), "--input", unlock)

    assert await lock_statuses(mocked, DEV) == [RUNNING], (
        f"an unlock naming X ({first.id}), which held DEV before, freed Y's lock of DEV"
    )
    await assert_finishes(second)


async def reset_after_locking(client: Client, release: ReleaseHandle, lock_id: str) -> str:
    """Reset the release to the workflow task after its lock lock_id started; the new run's ID."""
    history = await release.fetch_history()
    started = EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
    (lock_started,) = [
        event.event_id
        for event in history.events
        if event.event_type == started
        and event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
        == lock_id
    ]
    completed = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    after = [e.event_id for e in history.events if e.event_type == completed]
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(
                workflow_id=release.id, run_id=(await release.describe()).run_id
            ),
            reason="test: reset to just after the lock started",
            workflow_task_finish_event_id=min(i for i in after if i > lock_started),
            request_id=str(uuid.uuid4()),
        )
    )
    return response.run_id


async def test_a_reset_release_does_not_end_the_lock_another_release_now_holds(
    lookup: Mocked,
) -> None:
    """X reset to just after it locked DEV, while Y holds DEV: X's new run leaves Y's lock be,
    deploys nothing and fails LockLost."""
    first, second = await one_release_after_another(lookup)

    new_run = await reset_after_locking(lookup.client, first, lookup.lock_id(DEV))
    replayed = lookup.client.get_workflow_handle(first.id, run_id=new_run)
    await closed(replayed, f"{first.id}'s run after the reset")

    assert await lock_statuses(lookup, DEV, TEST) == [RUNNING, RUNNING], (
        "X's run after the reset ended Y's locks"
    )
    # X's new run noticed that its lock of DEV is Y's now: it deployed nothing and says why.
    assert deploy_steps(lookup.steps, replayed, DEV) == []
    lost = await failure_of(replayed)
    assert (lost.type, lost.non_retryable) == (ErrorType.LOCK_LOST, True)
    assert f"held by {second.id} now" in lost.message, lost.message
    await assert_finishes(second)


# --- 3. Anyone can free a lock -----------------------------------------------------------------

STRAY_UNLOCKS = {
    "no input": [],
    "an empty object": ["--input", "{}"],
    "a string": ["--input", '"x"'],
}


@pytest.mark.parametrize("stray", list(STRAY_UNLOCKS.values()), ids=list(STRAY_UNLOCKS))
async def test_an_unlock_that_does_not_name_the_lock_s_own_run_is_ignored(
    mocked: Mocked, stray: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """An unlock from the CLI that does not name the release holding the lock leaves it held,
    and the worker says so in one line (no traceback for an input it cannot decode)."""
    await at_gate(mocked)

    await signal_unlock(mocked.client, mocked.lock_id(QC), *stray)

    command = shlex.join(["temporal", "workflow", "signal", "--name", "unlock", *stray])
    assert await lock_statuses(mocked, QC) == [RUNNING], f"`{command}` freed QC"
    told = [r.getMessage() for r in caplog.records if mocked.lock_id(QC) in r.getMessage()]
    assert any("unlock ignored: it is held by" in line for line in told), told
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


# No run ID; one that is not a run ID at all; one that is, but of no run of the release.
NOT_A_LATER_RUN = ["", "not-a-run-id", "0193e4b2-8a51-7c3e-9b7d-2f6a1c0d4e58"]


@pytest.mark.parametrize("run_id", NOT_A_LATER_RUN, ids=["none", "no run ID", "no run of it"])
async def test_an_unlock_naming_the_holder_but_none_of_its_later_runs_is_ignored(
    mocked: Mocked, run_id: str
) -> None:
    """An unlock that names the release holding the lock, but with no run ID, or one that is no
    run of it, leaves the lock held: the release is approved and ends SUCCESS."""
    release = await at_gate(mocked)
    unlock = json.dumps({"release_workflow_id": release.id, "release_run_id": run_id})

    await signal_unlock(mocked.client, mocked.lock_id(QC), "--input", unlock)
    # The lock asks the server about the run named, then judges it.
    completed = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    await answer_to(mocked.client, mocked.lock_id(QC), completed)

    assert await lock_statuses(mocked, QC) == [RUNNING], f"{unlock} freed QC"
    await release.execute_update(ReleaseWorkflow.approve, ApproveInput(gate=QC, by="Grace"))
    assert str(await asyncio.wait_for(release.result(), WAIT_SECONDS)) == f"Release {KEY}: SUCCESS"


async def test_a_cancel_of_a_lock_is_refused_while_its_reset_release_runs(lookup: Mocked) -> None:
    """After a reset, the lock's release runs on in a new run: a cancel of the lock is still
    refused, and the new run, approved, lets it go and ends SUCCESS."""
    release = await at_gate(lookup)
    new_run = await reset(lookup.client, release, "last")
    new = lookup.client.get_workflow_handle(release.id, run_id=new_run, result_type=ReleaseResult)
    await wait_for_status(new, "waiting for approval before QC")

    await cli(lookup.client, "workflow", "cancel", "--workflow-id", lookup.lock_id(QC))
    await answer_to_cancel(lookup.client, lookup.lock_id(QC))
    completed = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED  # it asked whether its release runs
    await answer_to(lookup.client, lookup.lock_id(QC), completed)

    assert await lock_statuses(lookup, QC) == [RUNNING]
    history = await lookup.client.get_workflow_handle(lookup.lock_id(QC)).fetch_history()
    scheduled = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    asked = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == scheduled
    ]
    assert asked == ["release_run_now"], f"{lookup.lock_id(QC)} took the cancel: it ran {asked}"
    await new.execute_update(ReleaseWorkflow.approve, ApproveInput(gate=QC, by="Grace"))
    assert str(await asyncio.wait_for(new.result(), WAIT_SECONDS)) == f"Release {KEY}: SUCCESS"
    assert await lock_statuses(lookup, TEST, QC) == [COMPLETED, COMPLETED]


async def test_a_release_whose_lock_is_terminated_fails_at_once_saying_so(mocked: Mocked) -> None:
    """A release at its gate whose QC lock someone terminates fails LockLost at once."""
    release = await at_gate(mocked)
    before = len(mocked.steps.calls)

    await cli(mocked.client, "workflow", "terminate", "--workflow-id", mocked.lock_id(QC))

    await closed(release, "a release whose lock of QC was terminated")
    error = await failure_of(release)
    assert (error.type, error.non_retryable) == (ErrorType.LOCK_LOST, True)
    assert QC.value in error.message and "someone else" in error.message, error.message
    record = mocked.steps.record()
    assert (record.result.outcome, record.result.detail) == (Outcome.FAILED, error.message)
    assert mocked.steps.ran_in(QC) == []
    # It started nothing more: it recorded how it ended, and announced it.
    assert {call.step for call in mocked.steps.calls[before:]} <= {"record_release", "notify"}


# --- 4. A forged input skips the locks ---------------------------------------------------------

FORGED_SCOPES = {
    "a scope of its own": "x",
    "a path": "../../lock.DEV",
    "spaces": "two words\tand a tab",
    "escape codes": "\x1b[31mred\x1b[0m\r\n",
}


@pytest.mark.parametrize("scope", list(FORGED_SCOPES.values()), ids=list(FORGED_SCOPES))
async def test_a_lock_scope_in_the_input_is_ignored(mocked: Mocked, scope: str) -> None:
    """A start whose input names a lock scope is refused an environment held on its queue."""
    other = await hold(mocked, DEV)
    release: ReleaseHandle = await mocked.client.start_workflow(
        "ReleaseWorkflow",
        {"release_key": KEY, "lock_scope": scope},
        id=f"{KEY}-{uuid.uuid4().hex[:8]}",
        task_queue=mocked.task_queue,
        execution_timeout=timedelta(minutes=1),
        result_type=ReleaseResult,
    )

    await closed(release, f"a release started with lock_scope {scope!r}")
    assert mocked.steps.ran_in(DEV) == [], (
        f"lock_scope {scope!r} let the release deploy to DEV while {other.id} held it"
    )
    error = await failure_of(release)
    assert (error.type, error.non_retryable) == (ErrorType.ENVIRONMENT_BUSY, True)
    assert await lock_statuses(mocked, DEV) == [RUNNING]
    await other.terminate()


# --- 8. A workflow ID that names another release -----------------------------------------------


# Another release's key (one no other test runs: IDs of the catalog's are test_scripts'), such a
# key and a suffix, and KEY with more letters (KEY and a dash would be KEY's own).
@pytest.mark.parametrize(
    "workflow_id", ["RELEASE-RULES-OTHER", "RELEASE-RULES-OTHER-1a2b3c4d", f"{KEY}X"]
)
async def test_a_release_under_a_workflow_id_that_is_not_its_key_fails_at_once(
    mocked: Mocked, workflow_id: str
) -> None:
    """A release whose workflow ID is not its key (nor KEY-...) fails before any step runs."""
    release = await mocked.start(workflow_id)

    await closed(release, f"release {KEY} started as {workflow_id}")
    ran = mocked.steps.names()
    assert not ran, f"release {KEY} ran {len(ran)} steps ({ran[0]} first) as {workflow_id}"
    error = await failure_of(release)
    assert (error.type, error.non_retryable) == (ErrorType.WRONG_WORKFLOW_ID, True)
    assert workflow_id in error.message and KEY in error.message, error.message


async def at_gate_or_ended(release: WorkflowHandle[Any, Any], gate: Environment) -> None:
    """Wait until the release waits at its gate before gate, or has ended."""
    deadline = time.monotonic() + 3 * WAIT_SECONDS
    while (await release.describe()).status == RUNNING:
        try:
            if await release.query(ReleaseWorkflow.status) == f"waiting for approval before {gate}":
                return
        except WorkflowQueryFailedError:
            pass  # not started by the worker yet
        assert time.monotonic() < deadline, f"{release.id} neither reached its gate nor ended"
        await asyncio.sleep(0.1)


# Two releases of the demo root's own catalog, one's key the other's and a dash (no test elsewhere
# runs them, so their workflow IDs are this file's): RUNS's workflow ID may be NAMED (its key, a
# dash and a suffix), which names the other release.
NAMED, RUNS = "RELEASE-RULES-DEV", "RELEASE-RULES"
ASKED = {
    "run": [NAMED],
    "status": ["--status", NAMED],
    "approve": ["--approve", NAMED, "--gate", "PROD", "--by", "Grace"],
}


def catalog_with_runs(demo_root: Path) -> None:
    """The demo root's own catalog, with NAMED and RUNS: BETA's plan (it waits before PROD)."""
    catalog = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    (beta,) = [entry for entry in catalog["releases"] if entry["key"] == "RELEASE-FEB-24-BETA"]
    catalog["releases"] += [{**beta, "key": key, "soak_seconds": {}} for key in (NAMED, RUNS)]
    (demo_root / "database").mkdir()
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))


@pytest.mark.parametrize("args", list(ASKED.values()), ids=list(ASKED))
async def test_the_starter_refuses_a_release_whose_workflow_id_names_another(
    client: Client, task_queue: str, demo_root: Path, args: list[str]
) -> None:
    """The starter refuses, naming both keys, to wait for or act on workflow NAMED while it runs
    release RUNS (which the workflow accepts: NAMED begins with RUNS and a dash)."""
    catalog_with_runs(demo_root)
    release = await _start(client, task_queue, RUNS, workflow_id=NAMED)
    try:
        await at_gate_or_ended(release, Environment.PROD)
        assert (await release.describe()).status == RUNNING
        user = terminal_env(client.service_client.config.target_host, demo_root)

        told = await run_starter(user, *args)

        assert told.code != 0, f"run_workflow.py {shlex.join(args)} answered:\n{told.stdout}"
        assert_one_line_without_traceback(told.stderr)
        assert f"{NAMED} runs release '{RUNS}'" in told.stderr, told.stderr
        history = await release.fetch_history()
        accepted = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        assert accepted not in [event.event_type for event in history.events]
    finally:
        await finish_release(client, NAMED)
