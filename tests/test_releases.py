"""Releases end to end: real dev server, real worker, real files under a temp DEMO_ROOT."""

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import temporalio.api.sdk.v1
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.service import RPCError

import files
import records
from handles import wait_for_status
from ledger import read_ledger
from release_client import read_progress
from run_worker import create_worker, serving
from shared import ApproveInput, Environment, RejectInput, ReleaseInput
from workflows import ReleaseWorkflow

COMPONENTS = ("frontend", "sbstore", "backendforfrontend")
ALL_ENVS = ("DEV", "TEST", "QC", "PROD")

# The catalog's six releases, as the issue states them: versions of frontend, sbstore,
# backendforfrontend, and the environments each release is promoted to.
SIX_RELEASES = [
    ("RELEASE-NOV-23-INITIAL", ("1.0", "1.0", "1.0"), ("DEV", "TEST", "QC", "PROD")),
    ("RELEASE-NOV-23-HOTFIX-STAGE", ("1.1", "1.7", "1.7"), ("DEV", "TEST", "QC")),
    ("RELEASE-DEC-2023-BUGFIXES-PROD", ("1.1", "1.7", "1.7"), ("PROD",)),
    ("RELEASE-JAN-24-ALPHA-DEV", ("1.2", "1.8", "1.8"), ("DEV",)),
    ("RELEASE-JAN-24-ALPHA-QC", ("1.2", "1.8", "1.8"), ("TEST", "QC")),
    ("RELEASE-JAN-24-ALPHA-PROD", ("1.2", "1.8", "1.8"), ("PROD",)),
]


async def run(client: Client, task_queue: str, key: str) -> tuple[str, str]:
    """Run one release to its end; return (its workflow ID, its result)."""
    workflow_id = f"{key}-{uuid.uuid4().hex[:8]}"
    result = await client.execute_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=key),
        id=workflow_id,
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=5),
    )
    return workflow_id, str(result)


def env_files(root: Path) -> dict[str, set[str]]:
    """The file names in each environment folder."""
    return {
        env: {p.name for p in (root / "environments" / env).glob("*")}
        if (root / "environments" / env).is_dir()
        else set()
        for env in ALL_ENVS
    }


def expected_files(state: dict[str, tuple[str, ...]]) -> dict[str, set[str]]:
    return {
        env: {
            name
            for component, version in zip(COMPONENTS, state.get(env, ()), strict=False)
            for name in (f"{component}-{version}.txt", f"{component}.config.json")
        }
        for env in ALL_ENVS
    }


def assert_environments_hold(root: Path, state: dict[str, tuple[str, ...]]) -> None:
    """Each environment holds exactly these files, and each config names its version."""
    assert env_files(root) == expected_files(state)
    for env, versions in state.items():
        for component, version in zip(COMPONENTS, versions, strict=True):
            config = json.loads(
                (root / "environments" / env / f"{component}.config.json").read_text()
            )
            assert (config["version"], config["environment"]) == (version, env)
            deployed = (root / "environments" / env / f"{component}-{version}.txt").read_text()
            assert deployed == (root / "artifactory" / f"{component}-{version}.txt").read_text()


def assert_no_change_twice(ledger: list[dict[str, Any]]) -> None:
    identities = Counter(
        (line["run_id"], line["step"], line["env"], line["component"], line["version"])
        for line in ledger
    )
    assert [identity for identity, count in identities.items() if count > 1] == []


async def run_six_in_order(client: Client, task_queue: str, root: Path) -> None:
    state: dict[str, tuple[str, ...]] = {}
    for key, versions, envs in SIX_RELEASES:
        _, result = await run(client, task_queue, key)
        assert str(result) == f"Release {key}: SUCCESS"
        state.update({env: versions for env in envs})
        assert_environments_hold(root, state)
    assert not list(root.rglob("*.tmp"))


async def test_six_releases_in_order_give_the_catalog_table(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    await run_six_in_order(client, task_queue, demo_root)
    assert env_files(demo_root) == expected_files({env: ("1.2", "1.8", "1.8") for env in ALL_ENVS})
    built = sorted(p.name for p in (demo_root / "artifactory").iterdir())
    assert built == sorted(
        f"{c}-{v}.txt"
        for versions in [("1.0", "1.0", "1.0"), ("1.1", "1.7", "1.7"), ("1.2", "1.8", "1.8")]
        for c, v in zip(COMPONENTS, versions, strict=True)
    )
    ledger = read_ledger()
    assert_no_change_twice(ledger)
    # Each run's changes: 3 builds per release that starts in DEV, 3 deploys and 3 configs
    # per environment. Releases promoted from an environment build nothing.
    per_release = Counter((line["release_key"], line["step"]) for line in ledger)
    assert per_release[("RELEASE-NOV-23-INITIAL", "build")] == 3
    assert per_release[("RELEASE-NOV-23-INITIAL", "deploy")] == 12
    assert per_release[("RELEASE-JAN-24-ALPHA-QC", "build")] == 0
    assert per_release[("RELEASE-JAN-24-ALPHA-QC", "configure")] == 6
    names = sorted(p.name for p in (demo_root / "database" / "releases").iterdir())
    assert [name.rsplit("-", 5)[0] for name in names] == sorted(k for k, _, _ in SIX_RELEASES)

    # Running INITIAL again resets every environment to 1.0 and builds nothing.
    before = len(ledger)
    _, result = await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    assert str(result) == "Release RELEASE-NOV-23-INITIAL: SUCCESS"
    assert_environments_hold(demo_root, {env: ("1.0", "1.0", "1.0") for env in ALL_ENVS})
    rerun = [(line["step"], line["env"]) for line in read_ledger()[before:]]
    assert Counter(step for step, _ in rerun) == {"deploy": 12, "configure": 12}


async def test_deleted_files_come_back_and_nothing_else_changes(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    (demo_root / "artifactory" / "sbstore-1.0.txt").unlink()
    (demo_root / "environments" / "QC" / "frontend-1.0.txt").unlink()
    (demo_root / "environments" / "PROD" / "backendforfrontend.config.json").unlink()
    before = len(read_ledger())

    _, result = await run(client, task_queue, "RELEASE-NOV-23-INITIAL")

    assert str(result) == "Release RELEASE-NOV-23-INITIAL: SUCCESS"
    assert_environments_hold(demo_root, {env: ("1.0", "1.0", "1.0") for env in ALL_ENVS})
    changes = {(line["step"], line["env"], line["component"]) for line in read_ledger()[before:]}
    assert changes == {
        ("build", None, "sbstore"),
        ("deploy", "QC", "frontend"),
        ("configure", "PROD", "backendforfrontend"),
    }


async def test_a_release_succeeds_changing_nothing_twice_when_steps_fail_a_lot(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # INITIAL calmly, so that the storm finds a version to replace in every environment.
    await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    monkeypatch.setenv("DEMO_FAILURES", "alot")  # six steps in ten fail, before or after a change
    started = time.monotonic()

    workflow_id, result = await run(client, task_queue, "RELEASE-NOV-23-HOTFIX-STAGE")

    print(f"HOTFIX-STAGE at DEMO_FAILURES=alot: {time.monotonic() - started:.1f} s")
    assert result == "Release RELEASE-NOV-23-HOTFIX-STAGE: SUCCESS"
    hotfix, initial = ("1.1", "1.7", "1.7"), ("1.0", "1.0", "1.0")
    state: dict[str, tuple[str, ...]] = {
        "DEV": hotfix,
        "TEST": hotfix,
        "QC": hotfix,
        "PROD": initial,
    }
    assert_environments_hold(demo_root, state)
    assert not list(demo_root.rglob("*.tmp"))
    ledger = read_ledger()
    assert_no_change_twice(ledger)
    # Each change made once: a build per component, a deploy and a config per environment.
    made = Counter(line["step"] for line in ledger if line["release_key"].endswith("HOTFIX-STAGE"))
    assert made == {"build": 3, "deploy": 9, "configure": 9}
    # The failures were real: steps of the release needed more than one attempt.
    assert await retried_attempts(client, workflow_id, ("DEV", "TEST", "QC")) > 0


async def retried_attempts(client: Client, workflow_id: str, envs: tuple[str, ...]) -> int:
    """How many steps of the release's deploys ended on an attempt after the first."""
    retried = 0
    for env in envs:
        for component in COMPONENTS:
            deploy = client.get_workflow_handle(f"{workflow_id}.{env}.{component}")
            retried += sum(
                1
                for event in (await deploy.fetch_history()).events
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
                and event.activity_task_started_event_attributes.attempt > 1
            )
    return retried


async def _failure_of(client: Client, task_queue: str, key: str) -> tuple[ApplicationError, float]:
    started = time.monotonic()
    with pytest.raises(WorkflowFailureError) as caught:
        await run(client, task_queue, key)
    elapsed = time.monotonic() - started
    cause: BaseException | None = caught.value.cause
    if isinstance(cause, ActivityError):  # refused by a step, rather than by the workflow
        cause = cause.cause
    assert isinstance(cause, ApplicationError)
    return cause, elapsed


def files_but_records(demo_root: Path) -> list[Path]:
    """The files under the demo root, but for the release records (database/releases)."""
    kept = files.records_dir()
    return [p for p in demo_root.rglob("*") if p.is_file() and p.parent != kept]


async def test_unknown_key_fails_fast_and_changes_nothing_but_its_record(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    error, elapsed = await _failure_of(client, task_queue, "RELEASE-NOPE")
    assert error.non_retryable and error.type == "ReleaseError"
    assert "'RELEASE-NOPE'" in error.message
    assert "RELEASE-NOV-23-INITIAL" in error.message
    assert elapsed < 2
    assert files_but_records(demo_root) == []
    # A run whose key is not in the catalog (a train's, whose release left it) is on record.
    (record,) = records.release_history()
    assert record["release_key"] == "RELEASE-NOPE" and record["outcome"] == "FAILED"
    assert record["result"] == f"Release RELEASE-NOPE: FAILED: {error.message}"


# Issue 21, item 5: inputs a person can start ReleaseWorkflow with (the CLI's --input, the Web
# UI's form) that are no release's, and what the release says of each.
NOT_A_RELEASE_INPUT = {
    "a number for the key": ([{"release_key": 123}], "does not name release '123'"),
    "null": ([None], "Unknown release key ''"),
    "a list": ([[1, 2]], "Unknown release key ''"),
    "no input at all": ([], "Unknown release key ''"),
    "a bare string, taken for the key": (["RELEASE-NOPE"], "does not name release"),
    "a key that is no key's form": ([{"release_key": "../x"}], "Unknown release key '../x'"),
    "two inputs": ([{"release_key": "RELEASE-NOPE"}, {"x": 1}], "takes one input, not 2"),
}


@pytest.mark.parametrize(
    ("args", "says"), list(NOT_A_RELEASE_INPUT.values()), ids=list(NOT_A_RELEASE_INPUT)
)
async def test_a_release_started_with_an_input_that_is_no_release_s_fails_at_once(
    client: Client, task_queue: str, demo_root: Path, args: list[Any], says: str
) -> None:
    """Its workflow task failed to decode such an input every 10 s, for ever, with a traceback
    in the worker's log each time; now it fails at once, non-retryably, saying why."""
    release = await client.start_workflow(
        "ReleaseWorkflow",
        args=args,
        id=f"RELEASE-ODD-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await asyncio.wait_for(release.result(), 10)
    cause: BaseException | None = caught.value.cause
    if isinstance(cause, ActivityError):  # refused by gather_release, rather than the workflow
        cause = cause.cause
    assert isinstance(cause, ApplicationError) and cause.non_retryable
    assert says in cause.message, cause.message
    assert [p for p in demo_root.rglob("*") if p.is_file()] == []


async def test_out_of_order_promotion_fails_fast_and_changes_nothing(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    before = {p: p.read_bytes() for p in demo_root.rglob("*") if p.is_file()}
    error, elapsed = await _failure_of(client, task_queue, "RELEASE-DEC-2023-BUGFIXES-PROD")
    assert error.non_retryable
    assert "cannot be promoted to PROD" in error.message
    assert "QC holds frontend 1.0, not 1.1" in error.message
    assert elapsed < 2

    # Nothing changed but what tells of the refusal: a record of it, and its announcement.
    def untold(held: dict[Path, bytes]) -> dict[Path, bytes]:
        told = (files.notifications_path(), *files.records_dir().glob("*"))
        return {p: b for p, b in held.items() if p not in told}

    after = {p: p.read_bytes() for p in demo_root.rglob("*") if p.is_file()}
    assert untold(after) == untold(before)
    announced = files.notifications_path().read_text().splitlines()
    assert json.loads(announced[-1])["event"] == "ended FAILED"
    # The refusal is a FAILED ending, recorded with its reason.
    (refused,) = [
        r for r in records.release_history() if r["release_key"].endswith("BUGFIXES-PROD")
    ]
    assert refused["result"].startswith("Release RELEASE-DEC-2023-BUGFIXES-PROD: FAILED: ")
    assert "QC holds frontend 1.0, not 1.1" in refused["result"]
    assert refused["environments"]["PROD"]["frontend"]["outcome"] == "not reached"


async def _start(
    client: Client, task_queue: str, key: str, workflow_id: str = ""
) -> WorkflowHandle:
    """Start release key (as workflow_id, by default its key and a suffix of its own)."""
    return await client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=key),
        id=workflow_id or f"{key}-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=5),
    )


async def test_an_unapproved_release_waits_and_a_rejection_stops_it_before_any_change(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    catalog = json.loads((files.PROJECT_DIR / "database" / "catalog.json").read_text())
    catalog["releases"][0].update(approved=False, approved_by=None)
    (demo_root / "database").mkdir()
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))

    release = await _start(client, task_queue, "RELEASE-NOV-23-INITIAL")
    await wait_for_status(release, "waiting for approval before DEV")
    # The Web UI shows the wait as the workflow's current details.
    metadata = await release.query(
        "__temporal_workflow_metadata", result_type=temporalio.api.sdk.v1.WorkflowMetadata
    )
    # In a Markdown code span, so the Web UI shows it as typed and it survives copy and paste.
    command = "`python run_workflow.py --approve RELEASE-NOV-23-INITIAL --gate DEV --by NAME`"
    assert command in metadata.current_details
    assert env_files(demo_root) == expected_files({})

    answer = await release.execute_update(
        ReleaseWorkflow.reject, RejectInput(gate=Environment.DEV, by="Grace", reason="code freeze")
    )
    assert answer == "Release RELEASE-NOV-23-INITIAL: DEV rejected by Grace"
    result = await release.result()
    assert str(result) == "Release RELEASE-NOV-23-INITIAL: REJECTED by Grace: code freeze"
    assert env_files(demo_root) == expected_files({})
    assert not (demo_root / "artifactory").exists()
    (record,) = records.release_history()
    assert record["result"] == str(result)
    assert [(d["environment"], d["approved"], d["by"]) for d in record["decisions"]] == [
        ("DEV", False, "Grace")
    ]
    assert record["environments"]["DEV"]["frontend"]["outcome"] == "not reached"


async def test_a_release_waits_before_prod_until_a_person_approves(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    release = await _start(client, task_queue, "RELEASE-FEB-24-BETA")
    await wait_for_status(release, "waiting for approval before PROD")
    beta = ("1.3", "1.9", "1.9")
    assert_environments_hold(demo_root, {"DEV": beta, "TEST": beta, "QC": beta})

    answer = await release.execute_update(
        ReleaseWorkflow.approve, ApproveInput(gate=Environment.PROD, by="Ada")
    )
    assert answer == "Release RELEASE-FEB-24-BETA: PROD approved by Ada"
    assert str(await release.result()) == "Release RELEASE-FEB-24-BETA: SUCCESS"

    assert_environments_hold(demo_root, {env: beta for env in ALL_ENVS})
    (record,) = records.release_history()
    (decision,) = record["decisions"]
    assert (decision["environment"], decision["approved"], decision["by"]) == ("PROD", True, "Ada")
    assert record["environments"]["PROD"]["frontend"] == {
        "before": None,
        "after": "1.3",
        "outcome": "deployed",
    }


async def test_a_gate_nobody_decides_expires_with_prod_untouched_and_is_recorded(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    catalog = json.loads((files.PROJECT_DIR / "database" / "catalog.json").read_text())
    (beta,) = [entry for entry in catalog["releases"] if entry["key"] == "RELEASE-FEB-24-BETA"]
    beta.update(approval_timeout_seconds=1, soak_seconds={})
    (demo_root / "database").mkdir(exist_ok=True)
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))

    _, result = await run(client, task_queue, "RELEASE-FEB-24-BETA")

    assert result == "Release RELEASE-FEB-24-BETA: REJECTED: approval expired after 1 s"
    beta_versions = ("1.3", "1.9", "1.9")
    assert_environments_hold(demo_root, {env: beta_versions for env in ("DEV", "TEST", "QC")})
    assert env_files(demo_root)["PROD"] == set()
    (record,) = records.release_history()
    assert record["outcome"] == "REJECTED"
    assert record["decisions"][0]["by"] == "" and record["decisions"][0]["approved"] is False


async def test_children_are_named_after_release_environment_and_component(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    workflow_id, _ = await run(client, task_queue, "RELEASE-JAN-24-ALPHA-DEV")
    for component, version in zip(COMPONENTS, ("1.2", "1.8", "1.8"), strict=True):
        child = await client.get_workflow_handle(f"{workflow_id}.DEV.{component}").describe()
        assert child.workflow_type == "DeployWorkflow"
        assert child.parent_id == workflow_id
        # The Web UI reads the plan from summaries: the child's, and each of its steps'.
        assert await child.static_summary() == f"deploy {component} {version} to DEV"
    history = await client.get_workflow_handle(f"{workflow_id}.DEV.frontend").fetch_history()
    summaries = [
        json.loads(event.user_metadata.summary.data)
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert summaries == [
        "fetch the config of frontend 1.2 in DEV",
        "build frontend 1.2",
        "fetch the artifact of frontend 1.2 in DEV",
        "deploy frontend 1.2 to DEV",
        "configure frontend 1.2 in DEV",
        "verify frontend 1.2 in DEV",
    ]
    # Steps do not signal the release: its history holds its own decisions, not one event per
    # step (the starter reads a deploy's step from the server, see release_client.read_progress).
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    signals = [
        e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert signals == []


async def test_the_starter_grid_shows_the_steps_each_running_deploy_is_at(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0.3")  # long enough to be seen in flight
    release = await client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key="RELEASE-JAN-24-ALPHA-DEV"),
        id=f"RELEASE-JAN-24-ALPHA-DEV-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
    )
    seen: set[str] = set()
    while (await release.describe()).status == WorkflowExecutionStatus.RUNNING:
        progress = await read_progress(client, release)
        seen |= {c.activity for c in progress.cells.get(Environment.DEV, {}).values() if c.activity}
        await asyncio.sleep(0.1)
    # What the server says each deploy has in flight: build beside fetch config, then one by one.
    assert {"build_artifact + fetch_config", "deploy_artifact", "verify_deploy"} <= seen
    progress = await read_progress(client, release)
    assert {cell.state for cell in progress.cells[Environment.DEV].values()} == {"done"}


async def test_a_bug_keeps_the_release_running_until_a_fixed_worker_finishes_it(
    client: Client, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"test-{uuid.uuid4()}"
    workflow_id = f"RELEASE-JAN-24-ALPHA-DEV-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DEMO_BUG", "deploy")
    async with serving(client, create_worker(client, queue)):
        release = await client.start_workflow(
            ReleaseWorkflow.run,
            ReleaseInput(release_key="RELEASE-JAN-24-ALPHA-DEV"),
            id=workflow_id,
            task_queue=queue,
        )
        deploy = await _pending_step(client, f"{workflow_id}.DEV.frontend", "deploy_artifact", 3)
        assert "bug in the deploy step" in deploy.last_failure.message
        assert (await release.describe()).status == WorkflowExecutionStatus.RUNNING
        assert not (demo_root / "environments" / "DEV").exists()
        # The starter's grid shows each deploy retrying, with its attempt and last error.
        progress = await read_progress(client, release)
        assert progress.status == "deploying to DEV"
        cell = progress.cells[Environment.DEV]["frontend"]
        assert (cell.state, cell.activity) == ("retrying", "deploy_artifact")
        assert cell.attempt >= 2 and "bug in the deploy step" in cell.error

    monkeypatch.delenv("DEMO_BUG")  # the fix, shipped by restarting the worker
    async with serving(client, create_worker(client, queue)):
        assert str(await release.result()) == "Release RELEASE-JAN-24-ALPHA-DEV: SUCCESS"
        progress = await release.query(ReleaseWorkflow.progress)
    assert progress.status == "SUCCESS"
    assert {cell.state for cell in progress.cells[Environment.DEV].values()} == {"done"}
    assert_environments_hold(demo_root, {"DEV": ("1.2", "1.8", "1.8")})
    assert_no_change_twice(read_ledger())


async def _pending_step(
    client: Client, workflow_id: str, activity: str, attempt: int
) -> PendingActivityInfo:
    """Wait until workflow_id has activity pending at this attempt or later; return it."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            description = await client.get_workflow_handle(workflow_id).describe()
        except RPCError:  # the child is not started yet
            description = None
        for pending in description.raw_description.pending_activities if description else []:
            if pending.activity_type.name == activity and pending.attempt >= attempt:
                return pending
        await asyncio.sleep(0.2)
    raise AssertionError(f"{activity} never reached attempt {attempt} in {workflow_id}")


def _initial(data: dict[str, Any]) -> dict[str, Any]:
    return next(entry for entry in data["releases"] if entry["key"] == "RELEASE-NOV-23-INITIAL")


BAD_CATALOGS = {
    "component with a path separator": (
        lambda d: _initial(d)["versions"].update({"../frontend": "1.0"}),
        "release RELEASE-NOV-23-INITIAL: releases.0.versions.../frontend",
    ),
    "version with ..": (
        lambda d: _initial(d)["versions"].update(sbstore="1..0"),
        "release RELEASE-NOV-23-INITIAL: releases.0.versions.sbstore",
    ),
    "version with a slash": (
        lambda d: _initial(d)["versions"].update(sbstore="1.0/../../x"),
        "release RELEASE-NOV-23-INITIAL: releases.0.versions.sbstore",
    ),
    "unknown environment": (
        lambda d: _initial(d).update(environments=["DEV", "STAGING"]),
        "release RELEASE-NOV-23-INITIAL: releases.0.environments.1",
    ),
}


async def test_a_bad_catalog_is_refused_before_any_change_and_the_worker_keeps_serving(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    catalog_file = demo_root / "database" / "catalog.json"
    catalog_file.parent.mkdir()
    project_catalog = (files.PROJECT_DIR / "database" / "catalog.json").read_text()
    texts = {}
    for name, (mutate, _) in BAD_CATALOGS.items():
        data = json.loads(project_catalog)
        mutate(data)
        texts[name] = json.dumps(data, indent=2)
    texts["component listed twice"] = project_catalog.replace(
        '"frontend": "1.0",', '"frontend": "1.0", "frontend": "1.1",', 1
    )
    texts["malformed JSON"] = project_catalog[:200]
    expected = {name: field for name, (_, field) in BAD_CATALOGS.items()}
    expected["component listed twice"] = "releases.0.versions: 'frontend' is listed twice"
    expected["malformed JSON"] = "not valid JSON"

    for name, text in texts.items():
        catalog_file.write_text(text)
        error, elapsed = await _failure_of(client, task_queue, "RELEASE-NOV-23-INITIAL")
        assert error.non_retryable, name
        assert str(catalog_file) in error.message, name
        assert expected[name] in error.message, name
        assert elapsed < 2, name
        assert files_but_records(demo_root) == [catalog_file], name
        assert records.release_history(1)[0]["result"].endswith(error.message), name

    # The same worker serves the next release as soon as the catalog is put right.
    catalog_file.unlink()
    _, result = await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    assert str(result) == "Release RELEASE-NOV-23-INITIAL: SUCCESS"


async def test_an_unhealthy_deploy_is_rolled_back_and_the_release_stops(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await run(client, task_queue, "RELEASE-NOV-23-INITIAL")
    monkeypatch.setenv("DEMO_UNHEALTHY", "frontend@TEST")
    before = len(read_ledger())

    _, result = await run(client, task_queue, "RELEASE-NOV-23-HOTFIX-STAGE")

    assert (
        str(result)
        == "Release RELEASE-NOV-23-HOTFIX-STAGE: ROLLED BACK frontend in TEST (1.1 -> 1.0)"
    )
    # frontend is back at 1.0 in TEST, its healthy neighbours stay, and QC is never reached.
    hotfix, initial = ("1.1", "1.7", "1.7"), ("1.0", "1.0", "1.0")
    assert_environments_hold(
        demo_root,
        {"DEV": hotfix, "TEST": ("1.0", "1.7", "1.7"), "QC": initial, "PROD": initial},
    )
    rollbacks = [line for line in read_ledger()[before:] if line["step"] == "rollback"]
    assert [(r["env"], r["component"], r["version"], r["replaced"]) for r in rollbacks] == [
        ("TEST", "frontend", "1.0", "1.1")
    ]
    (record,) = [r for r in records.release_history() if r["release_key"].endswith("HOTFIX-STAGE")]
    assert record["environments"]["TEST"]["frontend"]["outcome"] == "rolled back"
    assert record["environments"]["QC"]["frontend"]["outcome"] == "not reached"


async def test_a_rollback_with_no_previous_version_removes_the_component(
    client: Client, task_queue: str, demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_UNHEALTHY", "sbstore@DEV")
    _, result = await run(client, task_queue, "RELEASE-JAN-24-ALPHA-DEV")
    assert (
        str(result) == "Release RELEASE-JAN-24-ALPHA-DEV: ROLLED BACK sbstore in DEV (1.8 -> none)"
    )
    assert env_files(demo_root)["DEV"] == {
        "frontend-1.2.txt",
        "frontend.config.json",
        "backendforfrontend-1.8.txt",
        "backendforfrontend.config.json",
    }
