"""Worker Versioning, as demos.md's "Ship a new version of the plan while releases wait" shows
it, with real workers of two versions side by side: a release pinned to version 1 finishes on
version 1, without the step version 2 added and without a non-determinism error, while a
release started after the switch runs on version 2 with it: no patch needed. Version 1 stopped
too early leaves its release waiting, said so, until a worker of it is back. Versions are read
from the server (describe, histories, the CLI), not from logs.

Also what makes a version: the build ID comes from the plan's code only.
"""

import ast
import asyncio
import json
import subprocess
import sys
import uuid
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import versioning
from processes import (
    PROJECT_DIR,
    QUICK_TIMEOUT,
    RELEASE_TIMEOUT,
    Finished,
    Running,
    run_command,
    run_starter,
    running,
    temporal_cli,
    terminal_env,
    wait_for_output,
)
from run_worker import READY_LINE
from scripts.code_states import BEFORE_NOTIFICATIONS, UNPATCHED, core_copy
from shared import WORKFLOW_TASK_TIMEOUT, ReleaseInput
from test_versioning import BETA, beta_at_its_gate, beta_left_closed, catalog_without_soak
from workflows import ReleaseWorkflow

ALPHA = "RELEASE-JAN-24-ALPHA-DEV"
PINNED = "VERSIONING_BEHAVIOR_PINNED"


def build_id_of(folder: Path, **settings: str) -> str:
    """The build ID the code in folder gives its workers."""
    return subprocess.run(
        [sys.executable, "-c", "import versioning; print(versioning.build_id())"],
        cwd=folder,
        env={"PATH": "", **settings},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_version_is_made_by_the_plan_s_code_only(tmp_path: Path) -> None:
    """A change to the plan (workflows.py) is a new build ID; a change to a step's knobs
    (utils.py) is not, so a release in flight keeps its workers across such a restart."""
    today = build_id_of(PROJECT_DIR)
    assert today.startswith("plan-")
    before = core_copy(BEFORE_NOTIFICATIONS, tmp_path / "before")
    assert build_id_of(before) != today
    (before / "workflows.py").write_text((PROJECT_DIR / "workflows.py").read_text())
    (before / "utils.py").write_text((before / "utils.py").read_text() + "\n# tweaked\n")
    assert build_id_of(before) == today
    assert build_id_of(PROJECT_DIR, DEMO_BUILD_ID="v2") == "v2"


async def pinned_to(handle: WorkflowHandle) -> tuple[str, str]:
    """The versioning behavior and build ID the server has for the workflow of handle."""
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return VersioningBehavior.Name(info.behavior), info.deployment_version.build_id


async def steps_of(handle: WorkflowHandle) -> list[str]:
    """The activities the workflow scheduled, and its failed workflow tasks, in order."""
    found = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            found.append(event.activity_task_scheduled_event_attributes.activity_type.name)
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            found.append("WORKFLOW TASK FAILED")
    return found


async def temporal(script_env: dict[str, str], *args: str) -> Finished:
    """`temporal ARGS` as the scenario types it, against the test's server; it must succeed."""
    done = await run_command(temporal_cli(), *args, "--address", script_env["TEMPORAL_ADDRESS"])
    assert done.code == 0, done.stderr
    return done


async def version_row(script_env: dict[str, str], build: str, status: str = "") -> str:
    """The line of `temporal worker deployment describe` about build, once there is one that
    says status (the session's server says drained within seconds: conftest.py). A worker's
    version is there once the worker has polled, a moment after it says it is ready."""
    deployment = script_env["DEMO_TASK_QUEUE"]
    row = ""
    for _ in range(int(RELEASE_TIMEOUT * 4)):
        described = await temporal(
            script_env, "worker", "deployment", "describe", "--name", deployment
        )
        row = next((line for line in described.stdout.splitlines() if f" {build} " in line), "")
        if row and status in row:
            return row
        await asyncio.sleep(0.25)
    return row


def worker_of(
    build: Path, script_env: dict[str, str], build_id: str
) -> AbstractAsyncContextManager[Running]:
    """`DEMO_BUILD_ID=BUILD_ID python BUILD/run_worker.py`, as the scenario starts each version."""
    settings = {**script_env, "DEMO_BUILD_ID": build_id}
    return running(str(build / "run_worker.py"), settings, ready=READY_LINE)


async def alpha_on_the_current_version(
    client: Client, script_env: dict[str, str], root: Path
) -> WorkflowHandle:
    """ALPHA run to its end (it deploys DEV only, which BETA no longer holds)."""
    handle = await client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=ALPHA, demo_root=str(root.resolve())),
        id=f"{ALPHA}-{uuid.uuid4()}",
        task_queue=script_env["DEMO_TASK_QUEUE"],
        task_timeout=WORKFLOW_TASK_TIMEOUT,
    )
    assert (
        str(await asyncio.wait_for(handle.result(), RELEASE_TIMEOUT)) == f"Release {ALPHA}: SUCCESS"
    )
    return handle


async def test_two_versions_side_by_side(env: WorkflowEnvironment, tmp_path: Path) -> None:
    """demos.md's steps, unpaced. Version 1 (before the announcements) takes BETA to its PROD
    gate; version 2 (the announcements, unpatched) joins and is made current with the CLI; ALPHA
    runs on version 2 and announces; version 1 stopped too early: BETA waits for it, and the
    starter says so; version 1 back: BETA, approved, finishes on version 1, announcing nothing,
    with no failed workflow task; then version 1 is drained."""
    v1, v2 = core_copy(BEFORE_NOTIFICATIONS, tmp_path / "v1"), core_copy(UNPATCHED, tmp_path / "v2")
    root = tmp_path / "demo"
    root.mkdir()
    catalog_without_soak(root)
    script_env = terminal_env(env.client.service_client.config.target_host, root)
    deployment = script_env["DEMO_TASK_QUEUE"]
    async with beta_left_closed(env.client), AsyncExitStack() as first, AsyncExitStack() as second:
        one = await first.enter_async_context(worker_of(v1, script_env, "v1"))
        assert f"Version v1 of Worker Deployment {deployment!r}: made current" in one.text
        beta = await beta_at_its_gate(env.client, script_env, root)
        # A starter following BETA, as terminal 3 does, read as it prints.
        watcher = await second.enter_async_context(
            running("run_workflow.py", script_env, BETA, ready=BETA)
        )
        two = await second.enter_async_context(worker_of(v2, script_env, "v2"))
        assert "is not current: new releases start on v1" in two.text, two.text
        await version_row(script_env, "v2")  # the server knows it once its worker has polled
        await temporal(
            script_env,
            "worker",
            "deployment",
            "set-current-version",
            "--deployment-name",
            deployment,
            "--build-id",
            "v2",
            "--yes",
        )
        alpha = await alpha_on_the_current_version(env.client, script_env, root)

        await first.aclose()  # too early: BETA is pinned to version 1
        said = "waiting for a worker of version v1, which it is pinned to"
        await wait_for_output(watcher, said, RELEASE_TIMEOUT)
        waiting = await run_starter(script_env, "--status", BETA, timeout=QUICK_TIMEOUT)
        one = await first.enter_async_context(worker_of(v1, script_env, "v1"))
        approve = ("--approve", BETA, "--gate", "PROD", "--by", "Ada")
        approved = await run_starter(script_env, *approve, timeout=QUICK_TIMEOUT)
        await wait_for_output(watcher, f"Result: Release {BETA}: SUCCESS", RELEASE_TIMEOUT)
        drained = await version_row(script_env, "v1", "drained")

    assert "no worker of version v1 answered" in waiting.stderr, waiting.stderr
    assert approved.code == 0, approved.stderr
    assert await pinned_to(beta) == (PINNED, "v1")
    assert await pinned_to(alpha) == (PINNED, "v2")
    assert "notify" not in await steps_of(beta) and "WORKFLOW TASK FAILED" not in await steps_of(
        beta
    )
    assert "notify" in await steps_of(alpha)
    announced = (root / "database" / "notifications.jsonl").read_text().splitlines()
    assert [(n["release_key"], n["event"]) for n in map(json.loads, announced)] == [
        (ALPHA, "promoted to DEV"),
        (ALPHA, "ended SUCCESS"),
    ]
    assert "drained" in drained, drained


async def test_a_pinned_release_moved_on_purpose_to_a_version_that_replays_it(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """demos.md's versioning override, with the release's children (its locks): BETA, at its
    gate on version 1, moved to today's code (the announcements behind workflow.patched, which
    replays it) as version v3, with no worker of version 1 left, finishes there, announcing only
    what it reaches on the new code, as in section 11."""
    v1 = core_copy(BEFORE_NOTIFICATIONS, tmp_path / "v1")
    root = tmp_path / "demo"
    root.mkdir()
    catalog_without_soak(root)
    script_env = terminal_env(env.client.service_client.config.target_host, root)
    deployment = script_env["DEMO_TASK_QUEUE"]
    async with beta_left_closed(env.client):
        async with worker_of(v1, script_env, "v1"):
            beta = await beta_at_its_gate(env.client, script_env, root)
        async with worker_of(PROJECT_DIR, script_env, "v3"):
            await version_row(script_env, "v3")  # the server has it: it can be pinned to
            await temporal(
                script_env,
                *("workflow", "update-options", "--query"),
                f'RootWorkflowId="{BETA}" AND ExecutionStatus="Running"',
                *("--versioning-override-behavior", "pinned"),
                *("--versioning-override-deployment-name", deployment),
                *("--versioning-override-build-id", "v3", "--yes"),
            )
            approve = ("--approve", BETA, "--gate", "PROD", "--by", "Ada")
            approved = await run_starter(script_env, *approve, timeout=RELEASE_TIMEOUT)
            result = await asyncio.wait_for(beta.result(), RELEASE_TIMEOUT)
    assert approved.code == 0, approved.stderr
    assert str(result) == f"Release {BETA}: SUCCESS"
    assert await pinned_to(beta) == (PINNED, "v3")
    assert "WORKFLOW TASK FAILED" not in await steps_of(beta)
    announced = (root / "database" / "notifications.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in announced] == [
        "promoted to PROD",
        "ended SUCCESS",
    ]


def test_the_build_id_covers_every_module_the_workflows_run() -> None:
    """PLAN_FILES is the project modules the workflows import, and what those import, but for
    the activities (a workflow names them; their bodies run outside it, and are not replayed):
    a module added to the workflows' code is part of their version."""
    not_replayed = {"activities.py", "lookups.py"}
    found, todo = set(), ["workflows.py"]
    while todo:
        name = todo.pop()
        found.add(name)
        for node in ast.walk(ast.parse((PROJECT_DIR / name).read_text())):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for module in modules:
                path = f"{module.split('.')[0]}.py"
                if (PROJECT_DIR / path).exists() and path not in found | not_replayed:
                    todo.append(path)
    assert found == set(versioning.PLAN_FILES)
