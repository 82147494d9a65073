"""Activities that ask the Temporal server, not the release system: who holds an environment lock,
which deploys of other releases still run, which runs are of one release, waiting for a close.
The locks (locks.py) and the recovery after a reset use them."""

import asyncio

from temporalio import activity
from temporalio.client import (
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.service import RPCError, RPCStatusCode

from search_attributes import running_deploys_query
from shared import DeploysInFlightInput, LockHolderInput, RunsInput, WorkflowRef

# How often wait_until_closed asks, heartbeating each time (as often as a step heartbeats).
POLL_SECONDS = 0.25
# How long a lock whose release has ended may take to close: at once, unless that release's
# deploys are still finishing their change.
ORPHAN_CLOSE_SECONDS = 3.0


@activity.defn
async def find_lock_holder(request: LockHolderInput) -> str:
    """Name the release that holds an environment lock (its parent), or "" if it is free by now.
    A lock whose release no longer runs (terminated, or reset: no parent close policy applies) is
    asked to cancel: it closes once that release's deploys there have closed, and until then the
    environment is still that release's. (A release started again under its ID is another.)"""
    client = activity.client()
    lock = await client.get_workflow_handle(request.lock_workflow_id).describe()
    if lock.status != WorkflowExecutionStatus.RUNNING:
        return ""
    holder = lock.parent_id or ""
    held_by = WorkflowRef(workflow_id=holder, run_id=lock.parent_run_id or "")
    if holder and await release_run_now(held_by):
        return holder
    orphan = client.get_workflow_handle(lock.id, run_id=lock.run_id)
    await orphan.cancel()
    try:
        await asyncio.wait_for(orphan.result(), ORPHAN_CLOSE_SECONDS)
    except TimeoutError:
        return holder  # its release's deploys are still finishing
    except WorkflowFailureError:
        pass  # ended some other way: free all the same
    return ""


@activity.defn
async def find_deploys_in_flight(request: DeploysInFlightInput) -> list[str]:
    """The workflow IDs of other releases' deploys still running into the environments (by their
    search attributes): a release whose lock a person ended finishes its change in flight."""
    query = running_deploys_query(request.environments, request.task_queue)
    try:
        found = [execution.id async for execution in activity.client().list_workflows(query)]
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        # The namespace lacks the search attributes (the worker said so): no retry would help.
        activity.logger.warning(f"deploys in flight not checked: {err.message}")
        return []
    own = f"{request.release_workflow_id}."
    return sorted(workflow_id for workflow_id in found if not workflow_id.startswith(own))


@activity.defn
async def release_run_now(request: WorkflowRef) -> str:
    """The run of request's release that runs now: that run, or a later one a reset made of it;
    "" if none runs (it ended, or another release runs under its ID)."""
    latest = await _described(request.workflow_id, "")
    if latest is None or latest.status != WorkflowExecutionStatus.RUNNING:
        return ""
    if latest.run_id == request.run_id:
        return latest.run_id
    same = _first_run_of(latest) == await _first_run(request.workflow_id, request.run_id)
    return latest.run_id if same else ""


@activity.defn
async def is_run_of_release(request: RunsInput) -> bool:
    """Whether run_id is a run of the same release as of_run_id (a reset keeps the first run of
    the chain), not a made-up run ID or a run of another release under the same workflow ID."""
    first = await _first_run(request.workflow_id, request.run_id) if request.run_id else None
    return first is not None and first == await _first_run(request.workflow_id, request.of_run_id)


@activity.defn
async def wait_until_closed(request: WorkflowRef) -> None:
    """Wait until a workflow has closed (a deploy the run that a reset replaced left running); one
    never started (a deploy its release never reached) counts as closed."""
    while True:
        described = await _described(request.workflow_id, request.run_id)
        if described is None or described.status != WorkflowExecutionStatus.RUNNING:
            return
        activity.heartbeat()
        await asyncio.sleep(POLL_SECONDS)


async def _first_run(workflow_id: str, run_id: str) -> str | None:
    """The first run of run_id's chain (a reset's new run keeps it); None if there is none."""
    described = await _described(workflow_id, run_id)
    return _first_run_of(described) if described else None


def _first_run_of(described: WorkflowExecutionDescription) -> str:
    return described.raw_info.first_run_id or described.run_id


async def _described(workflow_id: str, run_id: str) -> WorkflowExecutionDescription | None:
    """The workflow's run run_id ("": its latest), as the server describes it; None if there is
    no such run (or run_id is no run ID at all: a forged unlock's)."""
    handle = activity.client().get_workflow_handle(workflow_id, run_id=run_id or None)
    try:
        return await handle.describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return None
        raise
