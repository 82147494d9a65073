"""Replay: recorded histories of real releases, replayed against today's workflow code.

tests/histories/ holds, per release run, the history of its ReleaseWorkflow and of every child
workflow it started, as recorded by scripts/record_histories.py (`make record-histories`): the
catalog releases, one run with injected failures, one whose worker was killed, and one per other
ending (rejected, rolled back, refused, cancelled, failed). Replaying needs no server. A change
to workflows.py that would break releases in flight (a step added, removed or reordered, a child
started differently) makes the replay non-deterministic and fails here, not in production.
"""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from locks import EnvironmentLockWorkflow
from scripts.record_histories import HISTORIES_DIR, REFUSED_RUN, recorded_names
from workflows import DeployWorkflow, ReleaseWorkflow

RECORDED = recorded_names()


# A release recorded before the notify step was added to the plan (behind workflow.patched), kept
# as it was: releases of that time must still replay. tests/test_versioning.py shows that the same
# step without the patch would not (demos.md, "Change the plan while releases are in flight").
BEFORE_NOTIFICATIONS = HISTORIES_DIR / "before-notifications" / "RELEASE-FEB-24-BETA.json"


def load_run(name: str) -> list[WorkflowHistory]:
    """The histories of one recorded release run: the release first, then its children."""
    return load(HISTORIES_DIR / f"{name}.json")


def load(path: Path) -> list[WorkflowHistory]:
    assert path.is_file(), f"{path} is missing: run `make record-histories`"
    recorded = json.loads(path.read_text())
    return [WorkflowHistory.from_json(workflow_id, h) for workflow_id, h in recorded.items()]


async def each(histories: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


def test_every_recorded_run_is_there_and_nothing_else() -> None:
    assert sorted(path.stem for path in HISTORIES_DIR.glob("*.json")) == sorted(RECORDED)


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_run_replays(name: str) -> None:
    histories = load_run(name)
    workflow_ids = [history.workflow_id for history in histories]
    assert workflow_ids[0] == name
    # A refused release stops before its first wave: it starts no deploy.
    if name != REFUSED_RUN:
        assert any(wid.startswith(f"{name}.") for wid in workflow_ids), "no deploy was recorded"
    assert await replay_failures(histories) == {}


async def replay_failures(histories: list[WorkflowHistory]) -> dict[str, str]:
    """Replay histories through today's workflows: the failure of each that failed."""
    replayer = Replayer(
        workflows=[ReleaseWorkflow, DeployWorkflow, EnvironmentLockWorkflow],
        data_converter=pydantic_data_converter,
    )
    results = await replayer.replay_workflows(each(histories), raise_on_replay_failure=False)
    failed = {h.workflow_id: results.replay_failures.get(h.run_id) for h in histories}
    return {wid: str(err) for wid, err in failed.items() if err}


async def test_a_release_recorded_before_announcements_replays_without_them() -> None:
    assert await replay_failures(load(BEFORE_NOTIFICATIONS)) == {}
