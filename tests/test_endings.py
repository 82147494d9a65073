"""How a release ends, at the edges a user reaches by clicking around: a cancel at a gate or
mid-wave, a reset, and environments let go of as soon as they are no longer needed. Real dev
server, real worker, real files under a temp DEMO_ROOT. (Each branch of the plan, a failed wave
among them, is tested fast with mocked steps in test_workflows.py.)"""

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

import artifacts
import files
import records
import release_client
from handles import wait_for_status
from ledger import read_ledger
from locks import EnvironmentLockWorkflow
from shared import Environment, EnvironmentLock, ReleaseInput, ReleaseResult
from test_releases import (
    ALL_ENVS,
    COMPONENTS,
    _failure_of,
    _pending_step,
    _start,
    assert_environments_hold,
    run,
)
from workflows import ReleaseWorkflow

BETA = ("1.3", "1.9", "1.9")
INITIAL = ("1.0", "1.0", "1.0")


async def statuses(client: Client, workflow_id: str) -> dict[str, WorkflowExecutionStatus]:
    """Every workflow of one release run (its deploys by ID prefix) and the demo's locks, by
    workflow ID: the latest run of each."""
    found: dict[str, WorkflowExecutionStatus] = {}
    query = f'WorkflowId STARTS_WITH "{workflow_id}" OR WorkflowType = "EnvironmentLockWorkflow"'
    async for execution in client.list_workflows(query):
        if execution.status is not None:  # listed workflows always have one
            found.setdefault(execution.id, execution.status)
    return found


async def assert_nothing_left_running(client: Client, workflow_id: str, scope: str) -> None:
    """No deploy of the release, and no lock of this test's scope, is running or terminated.
    (The list is eventually consistent: give it a moment.)"""
    deadline = time.monotonic() + 10
    while True:
        found = {
            wid: status
            for wid, status in (await statuses(client, workflow_id)).items()
            if not wid.startswith("lock.") or wid.endswith(scope)
        }
        left = {
            wid: status.name
            for wid, status in found.items()
            if status in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.TERMINATED)
            and wid != workflow_id
        }
        if not left or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert left == {}
    assert any(wid.startswith(f"{workflow_id}.") for wid in found), "no deploy was listed"


def assert_each_component_consistent(root: Path) -> dict[str, dict[str, str]]:
    """Every component in every environment is whole: no files, or exactly one version with a
    config that names it. Returns {env: {component: version}}."""
    held: dict[str, dict[str, str]] = {}
    for env in ALL_ENVS:
        folder = root / "environments" / env
        for component in COMPONENTS:
            versions = artifacts.held_versions(Environment(env), component)
            config_file = folder / f"{component}.config.json"
            if not versions:
                assert not config_file.exists(), f"{env} {component}: a config with no artifact"
                continue
            assert len(versions) == 1, f"{env} {component}: {versions}"
            config = json.loads(config_file.read_text())
            assert config["version"] == versions[0], f"{env} {component}: config {config}"
            held.setdefault(env, {})[component] = versions[0]
    return held


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts}


def record_of(key: str) -> dict[str, Any]:
    (record,) = [r for r in records.release_history(100) if r["release_key"] == key]
    return record


async def test_a_release_waiting_before_prod_holds_only_qc_and_prod_and_cancels_cleanly(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beta = await _start(client, task_queue, "RELEASE-FEB-24-BETA")
    await wait_for_status(beta, "waiting for approval before PROD")

    # DEV and TEST are free again: a DEV-only release runs while BETA waits.
    _, result = await run(client, task_queue, "RELEASE-JAN-24-ALPHA-DEV")
    assert str(result) == "Release RELEASE-JAN-24-ALPHA-DEV: SUCCESS"
    # QC and PROD are not: a release that needs them is refused, naming BETA, and changes nothing.
    refused, _ = await _failure_of(client, task_queue, "RELEASE-DEC-2023-BUGFIXES-PROD")
    assert refused.type == "EnvironmentBusy" and refused.non_retryable
    assert f"QC, PROD in use by release {beta.id}, which has not let it go yet" in refused.message
    assert not [line for line in read_ledger() if line["release_key"].endswith("BUGFIXES-PROD")]

    await beta.cancel(reason="not this week\x1b[2J")
    with pytest.raises(WorkflowFailureError) as ended:
        await beta.result()
    assert isinstance(ended.value.cause, CancelledError)
    # The reason is shown as given, with the escape code spelled out rather than obeyed.
    assert await beta.query(ReleaseWorkflow.status) == "CANCELLED: not this week\\x1b[2J"
    assert_environments_hold(demo_root, {"DEV": ("1.2", "1.8", "1.8"), "TEST": BETA, "QC": BETA})
    await assert_nothing_left_running(client, beta.id, task_queue)
    record = record_of("RELEASE-FEB-24-BETA")
    assert record["result"] == "Release RELEASE-FEB-24-BETA: CANCELLED: not this week\\x1b[2J"
    # DEV was deployed and let go of before ALPHA-DEV changed it: the record keeps BETA's DEV.
    assert record["environments"]["DEV"]["frontend"] == {
        "before": None,
        "after": "1.3",
        "outcome": "deployed",
    }
    assert record["environments"]["PROD"]["frontend"]["outcome"] == "not reached"

    # Nothing is left held: the first release of all runs straight after.
    _, result = await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    assert str(result) == "Release RELEASE-NOV-23-INITIAL: SUCCESS"


async def deploying_dev(
    client: Client, task_queue: str, monkeypatch: pytest.MonkeyPatch
) -> WorkflowHandle[Any, Any]:
    """RELEASE-NOV-23-INITIAL, paced, once its DEV deploy of frontend is at deploy_artifact."""
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.3")
    release = await _start(client, task_queue, "RELEASE-NOV-23-INITIAL")
    await _pending_step(client, f"{release.id}.DEV.frontend", "deploy_artifact", 1)
    return release


async def test_cancel_mid_wave_leaves_every_component_whole_and_the_files_quiet(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = await deploying_dev(client, task_queue, monkeypatch)

    await release.cancel()
    with pytest.raises(WorkflowFailureError) as ended:
        await release.result()
    assert isinstance(ended.value.cause, CancelledError)
    closed = snapshot(demo_root)
    held = assert_each_component_consistent(demo_root)
    # A deploy that had started changing DEV finished; the release went no further.
    assert held["DEV"]["frontend"] == "1.0"
    assert set(held) == {"DEV"}
    await asyncio.sleep(1.5)  # longer than any step's pace: a step still running would show
    assert snapshot(demo_root) == closed
    await assert_nothing_left_running(client, release.id, task_queue)
    record = record_of("RELEASE-NOV-23-INITIAL")
    assert record["result"] == "Release RELEASE-NOV-23-INITIAL: CANCELLED"
    assert record["environments"]["DEV"]["frontend"]["outcome"] == "deployed"
    assert record["environments"]["TEST"]["frontend"]["outcome"] == "not reached"
    progress = await release.query(ReleaseWorkflow.progress)
    assert progress.status == "CANCELLED"

    monkeypatch.setenv("DEMO_STEP_SECONDS", "0")
    _, result = await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    assert str(result) == "Release RELEASE-NOV-23-INITIAL: SUCCESS"
    assert_environments_hold(demo_root, {env: INITIAL for env in ALL_ENVS})


async def reset(client: Client, handle: WorkflowHandle, to: str) -> str:
    """Reset the release's current run to its first or last completed workflow task, as
    `temporal workflow reset --type FirstWorkflowTask|LastWorkflowTask` does; the new run's ID."""
    description = await handle.describe()
    history = await client.get_workflow_handle(handle.id, run_id=description.run_id).fetch_history()
    completed = [
        event.event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    ]
    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=description.run_id),
            reason=f"test: reset to the {to} workflow task",
            workflow_task_finish_event_id=completed[0] if to == "first" else completed[-1],
            request_id=str(uuid.uuid4()),
        )
    )
    return response.run_id


@pytest.mark.parametrize("to", ["first", "last"])
async def test_a_reset_release_ends_right_with_nothing_done_twice(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch, to: str
) -> None:
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.2")
    release = await _start(client, task_queue, "RELEASE-NOV-23-INITIAL")
    await _pending_step(client, f"{release.id}.TEST.frontend", "deploy_artifact", 1)

    new_run = await reset(client, release, to)

    new = client.get_workflow_handle(release.id, run_id=new_run, result_type=ReleaseResult)
    result = await new.result()
    assert str(result) == "Release RELEASE-NOV-23-INITIAL: SUCCESS"
    assert_environments_hold(demo_root, {env: INITIAL for env in ALL_ENVS})
    # Each change was made once, whichever run made it: the new run found DEV done.
    changes = [
        (line["step"], line["env"], line["component"], line["version"]) for line in read_ledger()
    ]
    assert len(changes) == len(set(changes)) == 3 + 4 * 3 * 2
    await assert_nothing_left_running(client, release.id, task_queue)
    succeeded = [r for r in records.release_history(100) if r["result"].endswith("SUCCESS")]
    assert [r["run_id"] for r in succeeded] == [new_run]
    # Nor announced twice: the new run's announcements are the release's, not a new run's.
    lines = files.notifications_path().read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert sorted(events) == sorted({*events}), events


async def test_a_lock_whose_release_has_ended_does_not_hold_its_environment(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    # A reset leaves the replaced run's locks running (Temporal applies no parent close policy
    # then); here, a lock of DEV with no release at all stands for one.
    orphan = await client.start_workflow(
        EnvironmentLockWorkflow.run,
        EnvironmentLock(release_key="RELEASE-GONE", environment=Environment.DEV),
        id=f"lock.DEV.{task_queue}",
        task_queue=task_queue,
    )
    _, result = await run(client, task_queue, "RELEASE-JAN-24-ALPHA-DEV")
    assert str(result) == "Release RELEASE-JAN-24-ALPHA-DEV: SUCCESS"
    # Asked to cancel, it closed itself: its release has ended and had no deploy running.
    ended = await client.get_workflow_handle(orphan.id, run_id=orphan.result_run_id).describe()
    assert ended.status == WorkflowExecutionStatus.COMPLETED


async def test_a_terminated_release_is_recorded_by_its_locks_once_its_deploys_have_closed(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = await deploying_dev(client, task_queue, monkeypatch)

    await release.terminate(reason="wrong day")

    # The deploys finish the change in flight, the locks hold DEV..PROD until then, then end.
    await assert_nothing_left_running(client, release.id, task_queue)
    assert_each_component_consistent(demo_root)
    (record,) = records.release_history(10)
    by = f"by {client.identity}"
    assert (record["run_id"], record["outcome"]) == (release.result_run_id, "TERMINATED")
    assert record["result"] == f"Release RELEASE-NOV-23-INITIAL: TERMINATED: wrong day ({by})"
    # --status says so, rather than what the release was doing when it was stopped.
    status = " ".join(await release_client.status_lines(client, release))
    assert "RELEASE-NOV-23-INITIAL: It was terminated. The grid is as it was when it ended." in (
        status
    )


async def test_a_worker_serving_another_demo_root_refuses_the_release_s_steps(
    client: Client, task_queue: str, demo_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Started for another demo root than the worker's (two workers with different DEMO_ROOTs on
    # one task queue would split its files between two folders).
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    release = await client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key="RELEASE-JAN-24-ALPHA-DEV", demo_root=str(elsewhere)),
        id=f"RELEASE-JAN-24-ALPHA-DEV-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failed:
        await release.result()
    assert isinstance(failed.value.cause, ActivityError)
    error = failed.value.cause.cause
    assert isinstance(error, ApplicationError)
    assert error.type == "WrongDemoRoot" and error.non_retryable
    assert f"this worker serves demo root {demo_root.resolve()}" in error.message
    assert f"started for {elsewhere}" in error.message
    assert list(demo_root.rglob("*.txt")) == [] and list(elsewhere.iterdir()) == []
