"""Replay: recorded histories of real releases, replayed against today's workflow code.

tests/histories/ holds, per release run, the history of its ReleaseWorkflow and of every child
workflow it started, as recorded by scripts/record_histories.py (`make record-histories`): the
catalog releases, one run with injected failures, one whose worker was killed, and one per other
ending (rejected, rolled back, refused, cancelled, failed, terminated, a lock lost, a cancel while
closing). Replaying needs no server. A change to workflows.py that would break releases in flight
(a step added, removed or reordered, a child started differently) makes the replay
non-deterministic and fails here, not in production.
"""

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import (
    Interceptor,
    Replayer,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from locks import EnvironmentLockWorkflow
from scripts.record_histories import (
    HISTORIES_DIR,
    REFUSED_RUN,
    UNKNOWN_KEY_RUN,
    WRONG_KEY_RUN,
    recorded_names,
)
from shared import DEFAULT_TASK_QUEUE
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


def replayer_of(
    histories: list[WorkflowHistory], *workflows: type, queue: str = "", **config: Any
) -> Replayer:
    """A Replayer of workflows for histories recorded on one task queue, which it replays them
    on (or on queue): the Replayer names a queue of its own, and a release's locks are named by
    its queue (locks.py), as they are when a worker of that queue replays it."""
    started = histories[0].events[0].workflow_execution_started_event_attributes
    return Replayer(
        workflows=list(workflows),
        data_converter=pydantic_data_converter,
        interceptors=[_OnTaskQueue(queue or started.task_queue.name)],
        **config,
    )


class _OnTaskQueue(Interceptor):
    def __init__(self, queue: str) -> None:
        self.queue = queue

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        queue = self.queue

        class Outbound(WorkflowOutboundInterceptor):
            def info(self) -> workflow.Info:
                return dataclasses.replace(super().info(), task_queue=queue)

        class Inbound(WorkflowInboundInterceptor):
            def init(self, outbound: WorkflowOutboundInterceptor) -> None:
                super().init(Outbound(outbound))

        return Inbound


def test_every_recorded_run_is_there_and_nothing_else() -> None:
    assert sorted(path.stem for path in HISTORIES_DIR.glob("*.json")) == sorted(RECORDED)


@pytest.mark.parametrize("name", RECORDED)
async def test_recorded_run_replays(name: str) -> None:
    histories = load_run(name)
    workflow_ids = [history.workflow_id for history in histories]
    assert workflow_ids[0] == name
    # A refused release stops before its first wave: it starts no deploy.
    if name not in (REFUSED_RUN, WRONG_KEY_RUN, UNKNOWN_KEY_RUN):
        assert any(wid.startswith(f"{name}.") for wid in workflow_ids), "no deploy was recorded"
    assert await replay_failures(histories) == {}


async def replay_failures(histories: list[WorkflowHistory], queue: str = "") -> dict[str, str]:
    """Replay histories through today's workflows (on queue, if given): the failure of each that
    failed."""
    workflows = (ReleaseWorkflow, DeployWorkflow, EnvironmentLockWorkflow)
    replayer = replayer_of(histories, *workflows, queue=queue)
    results = await replayer.replay_workflows(each(histories), raise_on_replay_failure=False)
    failed = {h.workflow_id: results.replay_failures.get(h.run_id) for h in histories}
    return {wid: str(err) for wid, err in failed.items() if err}


async def test_a_release_recorded_before_announcements_replays_without_them() -> None:
    histories = load(BEFORE_NOTIFICATIONS)
    assert await replay_failures(histories, queue=queue_of(BEFORE_NOTIFICATIONS)) == {}


# Releases recorded before unlocks and announcements went on beside the plan (issue 26, behind
# workflow.patched), kept as they were: a success, a cancel while DEV deploys, a skipped soak.
BEFORE_BESIDE = sorted((HISTORIES_DIR / "before-beside").glob("*.json"))


@pytest.mark.parametrize("path", BEFORE_BESIDE, ids=[path.stem for path in BEFORE_BESIDE])
async def test_a_release_recorded_before_the_plan_went_on_beside_its_unlocks_replays(
    path: Path,
) -> None:
    assert await replay_failures(load(path), queue=queue_of(path)) == {}


def queue_of(path: Path) -> str:
    """The queue to replay the histories in path on: the one recorded, but for the release kept
    from before the announcements, recorded when a release named its locks lock.QC whatever its
    queue, as one on the demo's own queue still does: replayed as a release of that queue."""
    return DEFAULT_TASK_QUEUE if path == BEFORE_NOTIFICATIONS else ""
