"""Helpers on a release's workflow handle, for mocked and end-to-end tests alike."""

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)

from workflows import ReleaseWorkflow

STATUS_TIMEOUT = 30.0


async def wait_for_status(release: WorkflowHandle[Any, Any], status: str) -> None:
    """Wait until the release's status query answers status."""
    deadline = time.monotonic() + STATUS_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if await release.query(ReleaseWorkflow.status) == status:
                return
        except WorkflowQueryFailedError:
            pass  # not started by the worker yet
        await asyncio.sleep(0.05)
    raise AssertionError(f"the release never reported {status!r}")


@dataclass
class Timer:
    """A durable timer of a workflow, from its history (the server's times)."""

    summary: str
    started: datetime
    fired: datetime | None


async def timers(client: Client, workflow_id: str) -> list[Timer]:
    """The timers workflow_id started, in order, with their summaries."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started: dict[int, Timer] = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            summary = json.loads(event.user_metadata.summary.data or b'""')
            started[event.event_id] = Timer(summary, event.event_time.ToDatetime(UTC), None)
        elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            timer = started[event.timer_fired_event_attributes.started_event_id]
            timer.fired = event.event_time.ToDatetime(UTC)
    return list(started.values())


async def refused_update(update: Awaitable[Any]) -> str:
    """Why a validator refused the update."""
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await update
    return str(caught.value.cause)
