"""Helpers on a release's workflow handle, for mocked and end-to-end tests alike."""

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError

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


async def refused_update(update: Awaitable[Any]) -> str:
    """Why a validator refused the update."""
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await update
    return str(caught.value.cause)
