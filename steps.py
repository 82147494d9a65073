"""How the workflows run their steps (activities) and children: the timeouts and the retry
policy of every step, waiting for several at once, and finishing a step through a cancel.
Why each value (measured): README.md, "Tuning", and benchmarks/RESULTS.md.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ActivityCancellationType, ActivityHandle

with workflow.unsafe.imports_passed_through():
    from lookups import wait_until_closed
    from shared import WorkflowRef

ArgT = TypeVar("ArgT")  # an activity's input
ResultT = TypeVar("ResultT")  # its result
T = TypeVar("T")

# Failures are retried without limit, quickly at first, then every 2 s at most. Which errors are
# final (bad input; a deploy still unhealthy after a few checks) is decided in activities.py.
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=0,
)
# An activity whose worker died is retried 1 s after its last heartbeat.
HEARTBEAT_TIMEOUT = timedelta(seconds=1)
# The longest an activity may take, pace included (DEMO_STEP_SECONDS <= 60).
ACTIVITY_TIMEOUT = timedelta(minutes=2)
# Asking the server about a workflow is one quick call.
LOOKUP_TIMEOUT = timedelta(seconds=30)


def start_activity(
    activity: Callable[[ArgT], Awaitable[ResultT]],
    argument: ArgT,
    summary: str,
    task_queue: str | None = None,
) -> ActivityHandle[ResultT]:
    """Start one activity with the project's timeouts and retry policy; await it for its result.
    Cancelled, it is waited for until its worker says it stopped. The summary names it in the Web
    UI's timeline; task_queue: where it runs (by default the workflow's own)."""
    return workflow.start_activity(
        activity,
        argument,
        summary=summary,
        task_queue=task_queue,
        start_to_close_timeout=ACTIVITY_TIMEOUT,
        heartbeat_timeout=HEARTBEAT_TIMEOUT,
        retry_policy=RETRY_POLICY,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )


def quick_activity(
    activity: Callable[[ArgT], Awaitable[ResultT]], argument: ArgT, summary: str
) -> Awaitable[ResultT]:
    """One quick activity that asks the server (or records), with Temporal's default retries
    (without limit, from 1 s apart doubling up to 100 s)."""
    return workflow.execute_activity(
        activity, argument, summary=summary, start_to_close_timeout=LOOKUP_TIMEOUT
    )


async def all_of(*work: Awaitable[Any]) -> list[Any]:
    """Await every piece of work, and only once all have ended raise the first error, if any:
    nothing is left running behind a failure or a cancel."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def stop_if_cancelled() -> None:
    """Start nothing new once the workflow is cancelled (its cancellation_reason is then a string,
    "" if none was given): an activity that finished as the cancel came returns its result rather
    than raising, so the plan checks here."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError()


async def finish_even_if_cancelled(work: Awaitable[T], cancel_log: str) -> T:
    """Run work to its end: a cancel that arrives meanwhile waits for it (and is logged)."""
    task = asyncio.ensure_future(work)
    try:
        # shield: the cancel (a CancelledError here) stops this await, not the work under it.
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        workflow.logger.info(cancel_log)
        return await task


async def start_after_any_leftover(start: Callable[[], Awaitable[T]], child_id: str) -> T:
    """start() a child; if the run of this release that a reset replaced started it and it
    still runs (WorkflowAlreadyStartedError), let it finish first, then start it again: it finds
    its work done. A rare recovery, kept out of the plan's way."""
    try:
        return await start()
    except WorkflowAlreadyStartedError:
        await start_activity(
            wait_until_closed,
            WorkflowRef(workflow_id=child_id),
            f"wait for {child_id}, started before a reset, to close",
        )
        return await start()
