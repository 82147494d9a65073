"""Versioning, as demos.md's "Change the plan while releases are in flight" shows it: a step
added to the plan (the announcements) behind workflow.patched, checked against releases
recorded with the code from before it, through the three code states the scenario switches
between (patches/, applied as a user applies them; scripts/code_states.py).

The patch files still apply to today's workflows.py; today's code replays a release that was in
flight when the step came (and a complete one from before it); the code without the patch fails
to replay both with a non-determinism error. And the scenario itself, end to end with real
workers: the unpatched worker's workflow task fails while the release stays Running, and
today's code finishes it, announcing only from the point it had not yet reached.
"""

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import ModuleType

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from handles import wait_for_status
from locks import EnvironmentLockWorkflow
from processes import (
    PROJECT_DIR,
    QUICK_TIMEOUT,
    RAW_CORE_LOG,
    RELEASE_TIMEOUT,
    Finished,
    Running,
    finish_release,
    run_starter,
    running,
    running_worker,
    terminal_env,
    wait_for_output,
)
from release_client import CANNOT_REPLAY, STATUS_SECONDS
from run_worker import READY_LINE
from scripts.code_states import (
    BEFORE_NOTIFICATIONS,
    CODE_STATES,
    UNPATCHED,
    core_copy,
    git_apply,
    patch_of,
    workflows_of,
)
from scripts.record_histories import IN_FLIGHT_FILE, IN_FLIGHT_RUN
from shared import WORKFLOW_TASK_TIMEOUT, ReleaseInput, ReleaseResult
from test_replay import BEFORE_NOTIFICATIONS as COMPLETE_BEFORE
from test_replay import each, load, queue_of, replay_failures, replayer_of
from workflows import ReleaseWorkflow

BETA = IN_FLIGHT_RUN
# The releases recorded with the code from before the announcements: one complete, one waiting
# at its PROD gate.
RECORDED_BEFORE = {"complete": COMPLETE_BEFORE, "in flight": IN_FLIGHT_FILE}


@pytest.mark.parametrize("state", CODE_STATES)
def test_each_patch_applies_to_today_s_workflows_py(state: str, tmp_path: Path) -> None:
    """What `git apply patches/STATE.patch` does on a clean checkout (with or without .git):
    fails here first if workflows.py has moved on under the patch."""
    shutil.copy2(PROJECT_DIR / "workflows.py", tmp_path)
    checked = git_apply(state, tmp_path, "--check")
    assert checked.returncode == 0, (
        f"{patch_of(state).name} no longer applies to workflows.py; make it again as its header "
        f"says:\n{checked.stderr}"
    )


@pytest.fixture(scope="module")
def code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModuleType]:
    """The workflows of each code state the patches make, by state."""
    return {state: workflows_of(state, tmp_path_factory.mktemp(state)) for state in CODE_STATES}


async def replay_through(code: ModuleType, path: Path) -> dict[str, str]:
    """Replay the histories in path through the workflows of code: the failure of each that
    failed."""
    histories = load(path)
    replayer = replayer_of(
        histories,
        code.ReleaseWorkflow,
        code.DeployWorkflow,
        EnvironmentLockWorkflow,
        queue=queue_of(path),
        workflow_runner=UnsandboxedWorkflowRunner(),  # see scripts/code_states.workflows_of
    )
    results = await replayer.replay_workflows(each(histories), raise_on_replay_failure=False)
    failed = {h.workflow_id: results.replay_failures.get(h.run_id) for h in histories}
    return {wid: str(err) for wid, err in failed.items() if err}


async def test_today_s_code_replays_the_release_in_flight() -> None:
    histories = load(IN_FLIGHT_FILE)
    assert histories[0].workflow_id == BETA
    # Recorded at the PROD gate: DEV, TEST and QC deployed, PROD not started, nothing announced.
    deploys = [h.workflow_id for h in histories if h.workflow_id.startswith(f"{BETA}.")]
    assert sorted({wid.split(".")[1] for wid in deploys}) == ["DEV", "QC", "TEST"]
    steps = {
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in histories[0].events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    assert "check_promotion" in steps and "notify" not in steps
    assert await replay_failures(histories) == {}


async def test_the_code_it_was_recorded_with_replays_it(code: dict[str, ModuleType]) -> None:
    assert await replay_through(code[BEFORE_NOTIFICATIONS], IN_FLIGHT_FILE) == {}


@pytest.mark.parametrize("recorded", RECORDED_BEFORE)
async def test_the_announcements_without_the_patch_fail_to_replay_a_release_from_before(
    recorded: str, code: dict[str, ModuleType]
) -> None:
    """The scenario's failure is real: the release itself meets a notify step its history does
    not have; its deploys and locks, which the change did not touch, replay."""
    failures = await replay_through(code[UNPATCHED], RECORDED_BEFORE[recorded])
    assert list(failures) == [BETA]
    assert "[TMPRL1100] Nondeterminism error" in failures[BETA]


# --- The scenario with real workers ----------------------------------------------------------


def catalog_without_soak(demo_root: Path) -> None:
    """The demo root's own catalog, in which BETA does not soak QC: the fastest way to its gate."""
    catalog = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    for release in catalog["releases"]:
        if release["key"] == BETA:
            release["soak_seconds"] = {}
    (demo_root / "database").mkdir()
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))


def worker_of(code: Path, script_env: dict[str, str]) -> AbstractAsyncContextManager[Running]:
    """run_worker.py of a copy of the project (scripts/code_states.core_copy): that code runs."""
    return running(str(code / "run_worker.py"), script_env, ready=READY_LINE)


def workflow_task_failures(history: WorkflowHistory) -> list[str]:
    """The cause and message of each failed workflow task the history records."""
    return [
        f"{WorkflowTaskFailedCause.Name(failed.cause)}: {failed.failure.message}"
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        for failed in [event.workflow_task_failed_event_attributes]
    ]


@asynccontextmanager
async def beta_left_closed(client: Client) -> AsyncIterator[None]:
    """No run of BETA is left open on the session's shared server, whatever happens."""
    try:
        yield
    finally:
        await finish_release(client, BETA)


async def beta_at_its_gate(
    client: Client, script_env: dict[str, str], demo_root: Path
) -> WorkflowHandle[ReleaseWorkflow, ReleaseResult]:
    """BETA started (by ID BETA, as the starter does) and waiting at its PROD gate."""
    handle = await client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=BETA, demo_root=str(demo_root.resolve())),
        id=BETA,
        task_queue=script_env["DEMO_TASK_QUEUE"],
        task_timeout=WORKFLOW_TASK_TIMEOUT,
    )
    await wait_for_status(handle, "waiting for approval before PROD")
    return handle


def assert_told_in_words(approved: Finished, status: Finished, worker_said: str) -> None:
    """--approve and --status said in one line that the release cannot run on the worker's
    code, and nobody showed a traceback or a raw line of the SDK's core."""
    assert approved.code == 1 and status.code == 1
    assert f"Release {BETA} cannot run on the worker's code: [TMPRL1100]" in approved.stderr
    assert "The server holds your request" in approved.stderr
    assert "its workflow task has failed" in status.stderr
    for said in (approved.stderr, status.stderr, worker_said):
        assert "Traceback" not in said and not any(raw in said for raw in RAW_CORE_LOG), said
        assert "Failure {" not in said, said


async def test_the_scenario_with_real_workers(env: WorkflowEnvironment, tmp_path: Path) -> None:
    """demos.md's steps, unpaced: BETA to its PROD gate on the code before; the worker swapped
    for the announcements without the patch, and --approve: the release's workflow task fails
    with a non-determinism error, and it stays Running; swapped for today's code: the approval
    the server held goes through, and the release ends SUCCESS, announcing PROD and its end."""
    code = {state: core_copy(state, tmp_path / state) for state in CODE_STATES}
    demo_root = tmp_path / "demo"
    demo_root.mkdir()
    catalog_without_soak(demo_root)
    # Every code state under one build ID, as demos.md has it: to Temporal one version, whose
    # code changes under the release (else the release, pinned, would never meet the new code).
    address = env.client.service_client.config.target_host
    script_env = terminal_env(address, demo_root, DEMO_BUILD_ID="in-place")
    async with beta_left_closed(env.client):
        async with worker_of(code[BEFORE_NOTIFICATIONS], script_env):
            handle = await beta_at_its_gate(env.client, script_env, demo_root)
            # A starter watching the release, as in terminal 3, through every swap.
            watching = asyncio.ensure_future(run_starter(script_env, BETA))
            await asyncio.sleep(STATUS_SECONDS * 2)  # it has seen the release at its gate
        async with worker_of(code[UNPATCHED], script_env) as unpatched:
            approve = ("--approve", BETA, "--gate", "PROD", "--by", "Ada")
            approved = await run_starter(script_env, *approve, timeout=QUICK_TIMEOUT)
            await wait_for_output(unpatched, f"{BETA} is stuck, not lost", QUICK_TIMEOUT)
            status = await run_starter(script_env, "--status", BETA, timeout=QUICK_TIMEOUT)
        stuck = await handle.describe()
        failures = workflow_task_failures(await handle.fetch_history())
        async with running_worker(script_env):
            result = await asyncio.wait_for(handle.result(), RELEASE_TIMEOUT)
            watched = await asyncio.wait_for(watching, RELEASE_TIMEOUT)
    assert f"  ... {CANNOT_REPLAY}" in watched.stdout, watched.stdout
    assert f"Result: Release {BETA}: SUCCESS" in watched.stdout
    assert_told_in_words(approved, status, unpatched.text)
    assert stuck.status == WorkflowExecutionStatus.RUNNING
    assert failures and all(
        failure.startswith("WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR: [TMPRL1100]")
        for failure in failures
    )
    assert str(result) == f"Release {BETA}: SUCCESS"
    announced = (demo_root / "database" / "notifications.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in announced] == [
        "promoted to PROD",
        "ended SUCCESS",
    ]
