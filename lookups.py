"""Activities that ask the Temporal server, not the release system: who holds an environment
lock, which deploys of other releases still run, whether a run belongs to a release, and waiting
for a workflow to close. The locks (locks.py) and the recovery after a reset use them.
"""

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


# How long a release that finds a lock whose holder has ended waits for it to close: a lock
# closes at once unless its release's deploys are still finishing their change.
ORPHAN_CLOSE_SECONDS = 3.0


@activity.defn
async def find_lock_holder(request: LockHolderInput) -> str:
    """Name the release that holds an environment lock (the lock workflow's parent), or "" if
    the lock is free by now. A lock whose release no longer runs (terminated, or reset: Temporal
    applies no parent close policy then) is asked to cancel: it closes once that release's
    deploys into its environment have closed, and until then the environment is still that
    release's. (A release started again under the same ID is another release.)"""
    client = activity.client()
    lock = await client.get_workflow_handle(request.lock_workflow_id).describe()
    if lock.status != WorkflowExecutionStatus.RUNNING:
        return ""
    holder = lock.parent_id or ""
    if holder and await _release_run_now(holder, lock.parent_run_id or ""):
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
    """The workflow IDs of other releases' deploys still running into the environments (the
    server's visibility, by the deploys' search attributes): a release whose lock a person ended
    while it deployed finishes the change in flight, with no lock to say so."""
    query = running_deploys_query(request.environments, request.task_queue)
    own = f"{request.release_workflow_id}."
    try:
        found = [execution.id async for execution in activity.client().list_workflows(query)]
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        # The namespace lacks the deploys' search attributes, which the worker said at its
        # start: without them this check cannot be made, and retrying would not help.
        activity.logger.warning(f"deploys in flight not checked: {err.message}")
        return []
    return sorted(workflow_id for workflow_id in found if not workflow_id.startswith(own))


@activity.defn
async def release_run_now(request: WorkflowRef) -> str:
    """The run of the release that request's run is a run of that runs now: that run, or a later
    one a reset made of it; "" if none runs (it ended, or another release runs under its ID)."""
    return await _release_run_now(request.workflow_id, request.run_id)


@activity.defn
async def is_run_of_release(request: RunsInput) -> bool:
    """Whether run_id is a run of the same release as of_run_id (a reset keeps the first run of
    the chain), not a made-up run ID or a run of another release under the same workflow ID."""
    first = await _first_run(request.workflow_id, request.run_id) if request.run_id else None
    return first is not None and first == await _first_run(request.workflow_id, request.of_run_id)


async def _release_run_now(workflow_id: str, run_id: str) -> str:
    latest = await _described(workflow_id, "")
    if latest is None or latest.status != WorkflowExecutionStatus.RUNNING:
        return ""
    if latest.run_id == run_id or _first_run_of(latest) == await _first_run(workflow_id, run_id):
        return latest.run_id
    return ""


async def _first_run(workflow_id: str, run_id: str) -> str | None:
    """The first run of the chain that run belongs to (a reset's new run keeps its chain's);
    None if there is no such run."""
    described = await _described(workflow_id, run_id)
    return _first_run_of(described) if described else None


def _first_run_of(described: WorkflowExecutionDescription) -> str:
    return described.raw_description.workflow_execution_info.first_run_id or described.run_id


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


@activity.defn
async def wait_until_closed(request: WorkflowRef) -> None:
    """Wait until a workflow has closed (a deploy the run that a reset replaced left running)."""
    while await _is_running(request.workflow_id, request.run_id):
        activity.heartbeat()
        await asyncio.sleep(POLL_SECONDS)


async def _is_running(workflow_id: str, run_id: str = "") -> bool:
    """Whether the workflow (that run, or its latest) runs; one never started (a deploy its
    release never reached) does not."""
    described = await _described(workflow_id, run_id)
    return described is not None and described.status == WorkflowExecutionStatus.RUNNING
