"""Release trains (run_workflow.py --schedule, --schedules, --unschedule): the train of release KEY
is the Temporal Schedule train.KEY, which starts an ordinary release run, KEY-<time it was due>,
every INTERVAL or once at a time (demos.md, "Release trains")."""

import asyncio
import re
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

import files
from display import Train, When, when_words
from shared import TASK_QUEUE, WORKFLOW_TASK_TIMEOUT, Release, ReleaseInput
from workflows import ReleaseWorkflow

# How late a missed run may still start (Temporal's default is a year): later, it never runs.
CATCHUP = timedelta(minutes=1)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # the units --every takes, in seconds
LONGEST_INTERVAL = timedelta(days=366)  # the longest --every: a train runs at least once a year
# The last year Temporal's calendar schedules run in, and how soon an --at time may be.
LAST_YEAR, SOONEST = 2100, timedelta(seconds=10)
RELEASE_WORKFLOW = "ReleaseWorkflow"  # the workflow type a train starts

T = TypeVar("T")


class TrainError(Exception):
    """A train that cannot be made or found: printed as one line, exit status 1."""


def train_id(key: str) -> str:
    return f"train.{key}"


def interval(text: str) -> timedelta:
    """--every's INTERVAL: a whole number and a unit, as in 30s, 10m, 1h or 1d."""
    found = re.fullmatch(r"([1-9][0-9]*)([smhd])", text)
    if not found:
        raise ValueError(f"a whole number and a unit, like 30s, 10m, 1h or 1d, not {text!r}")
    seconds = int(found[1]) * UNITS[found[2]]
    if seconds > LONGEST_INTERVAL.total_seconds():
        raise ValueError(
            f"at most {LONGEST_INTERVAL.days}d, not {text!r}: a train runs at least "
            "once a year (--at TIME makes a single run)"
        )
    return timedelta(seconds=seconds)


def moment(text: str) -> datetime:
    """--at's TIME: an ISO 8601 time to come, with its zone (2026-12-01T09:00:00Z), in UTC."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"an ISO 8601 time like 2026-12-01T09:00:00Z, not {text!r}") from None
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add one, e.g. Z for UTC")
    try:
        at = at.astimezone(UTC)
    except OverflowError:  # past the year 9999 in UTC
        at = datetime.max.replace(tzinfo=UTC)
    if at.year > LAST_YEAR:
        raise ValueError(f"{text!r} is too far ahead: Temporal runs schedules until {LAST_YEAR}")
    if at <= datetime.now(UTC):
        raise ValueError(f"{text!r} is in the past: a train runs at a time to come")
    if at < datetime.now(UTC) + SOONEST:
        raise ValueError(
            f"{text!r} is too soon: give a time at least {SOONEST.seconds} seconds ahead, so "
            "that the train is made before it is due"
        )
    return at.replace(microsecond=0)


async def schedule_release(
    client: Client, release: Release, when: When, task_queue: str = TASK_QUEUE
) -> Train:
    """Create release's train; TrainError if the release has one already, or it would never run."""
    action = ScheduleActionStartWorkflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=release.key, demo_root=str(files.demo_root().resolve())),
        id=release.key,  # each run's ID is this and the time it was due
        task_queue=task_queue,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
        static_summary=release.summary(),
    )
    # SKIP: a run due while the train's previous run still runs is not started.
    policy = SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP)
    once = isinstance(when, datetime)  # --at: one run, then the train starts no more
    state = ScheduleState(limited_actions=True, remaining_actions=1) if once else ScheduleState()
    schedule = Schedule(action=action, spec=_spec(when), policy=policy, state=state)
    try:
        handle = await client.create_schedule(train_id(release.key), schedule)
    except ScheduleAlreadyRunningError:
        await _train_of(client, release.key)  # raises TrainError if it is no train
        raise TrainError(
            f"release {release.key} has a train already, {train_id(release.key)}: "
            f"--schedules shows it, --unschedule {release.key} removes it"
        ) from None
    # Temporal finds no time to run it if its time went by while it was made, or is after LAST_YEAR.
    described = await handle.describe()
    info = described.info
    if info.next_action_times or info.recent_actions or info.running_actions:
        return await _train(client, described, in_catalog=True)
    await handle.delete()
    raise TrainError(
        f"the train {handle.id} would never run, {when_words(when)}: Temporal finds no time to "
        "run it, so it was not made"
    )


async def trains(client: Client, keys: list[str]) -> list[Train]:
    """Every release train on the server: the catalog's releases' (keys) first, in their order,
    each asked for by ID (a schedule just made may be missing from the list for a moment)."""
    listed = [s.id async for s in await client.list_schedules() if s.id.startswith(train_id(""))]
    ids = dict.fromkeys([*map(train_id, keys), *sorted(listed)])
    described = await asyncio.gather(*(_describe(client, schedule_id) for schedule_id in ids))
    return [
        await _train(client, d, in_catalog=d.id in map(train_id, keys))
        for d in described
        if d is not None and await _is_train(client, d)
    ]


async def unschedule(client: Client, key: str) -> str:
    """Delete release key's train, in the catalog or not; say so, and that its running run goes
    on. A schedule named like its train that is none is left alone (TrainError)."""
    if await _train_of(client, key) is None:
        raise TrainError(f"release {key} has no train: --schedules lists the trains")
    await client.get_schedule_handle(train_id(key)).delete()
    deleted = f"Deleted train {train_id(key)}: it starts no more runs of {key}."
    if running := await train_run(client, key, running=True):
        return f"{deleted} Its run {running} goes on (--cancel {key} stops it)."
    return deleted


async def _train_of(client: Client, key: str) -> ScheduleDescription | None:
    """Release key's train, if it has one; TrainError if a schedule with its ID is none."""
    described = await _describe(client, train_id(key))
    if described is None or await _is_train(client, described):
        return described
    raise TrainError(
        f"schedule {described.id} is not a train of {key}: it does not start release {key}, "
        f"so it is left alone (temporal schedule delete --schedule-id {described.id} removes it)"
    )


async def _is_train(client: Client, described: ScheduleDescription) -> bool:
    """Whether schedule train.KEY is release KEY's train: it starts ReleaseWorkflow, under the
    workflow ID KEY, with an input that names KEY (as --schedule makes it)."""
    key = described.id.removeprefix(train_id(""))
    action = described.schedule.action
    if not isinstance(action, ScheduleActionStartWorkflow) or len(action.args) != 1:
        return False
    if (action.workflow, action.id) != (RELEASE_WORKFLOW, key):
        return False
    try:
        (request,) = await client.data_converter.decode(list(action.args), [ReleaseInput])
    except Exception:  # an input that decodes as none (ReleaseInput takes any JSON) is no train's
        return False
    return isinstance(request, ReleaseInput) and request.release_key == key


async def _unless_not_found(call: Awaitable[T]) -> T | None:
    try:
        return await call
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _describe(client: Client, schedule_id: str) -> ScheduleDescription | None:
    return await _unless_not_found(client.get_schedule_handle(schedule_id).describe())


async def _train(client: Client, described: ScheduleDescription, in_catalog: bool) -> Train:
    return Train(
        schedule_id=described.id,
        release_key=described.id.removeprefix(train_id("")),
        when=_when(described.schedule.spec),
        next_runs=list(described.info.next_action_times),
        last_run=await _last_run(client, described),
        skipped=described.info.num_actions_skipped_overlap,
        in_catalog=in_catalog,
    )


async def _last_run(client: Client, described: ScheduleDescription) -> tuple[datetime, str] | None:
    """When the train's latest run started and how it ended, or "running" (None: none yet)."""
    if not described.info.recent_actions:
        return None
    latest = described.info.recent_actions[-1]
    run = latest.action
    assert isinstance(run, ScheduleActionExecutionStartWorkflow)
    handle = client.get_workflow_handle_for(
        ReleaseWorkflow.run, run.workflow_id, run_id=run.first_execution_run_id
    )
    status = (await handle.describe()).status
    if status == WorkflowExecutionStatus.COMPLETED:
        ending = (await handle.result()).outcome.value
    else:  # running, or failed (--history has why), cancelled, terminated
        ending = status.name.lower() if status else "?"
    return latest.started_at, ending


async def release_workflow_id(client: Client, key: str) -> str:
    """The workflow ID of the run of release key that a command means: KEY (the run started by
    hand) if it runs, else the running run of the release's train, else KEY if it ever ran,
    else the train's latest run, else KEY."""
    by_hand = await _runs_by_hand(client, key)
    if by_hand:
        return key
    if running := await train_run(client, key, running=True):
        return running
    return (by_hand is None and await train_run(client, key, running=False)) or key


async def train_run_to_attach(client: Client, key: str) -> str | None:
    """The train's running run, if no run KEY runs: what a starter of release key attaches to
    (never a finished run: a release started by hand is KEY)."""
    if await _runs_by_hand(client, key):
        return None
    return await train_run(client, key, running=True)


async def _runs_by_hand(client: Client, key: str) -> bool | None:
    """Whether the run with ID KEY (started by hand) runs; None if it never ran."""
    described = await _unless_not_found(client.get_workflow_handle(key).describe())
    return None if described is None else described.status == WorkflowExecutionStatus.RUNNING


async def train_run(client: Client, key: str, *, running: bool) -> str | None:
    """The latest (or running) run of release key's train, even once the train is deleted:
    Temporal marks each run a schedule starts with its ID, latest first. Only a release run
    KEY-<time> is one: a schedule named like the train may start anything."""
    schedule = await _describe(client, train_id(key))
    if schedule is not None and not await _is_train(client, schedule):
        return None  # (a deleted train's runs are still found)
    query = f"TemporalScheduledById = '{train_id(key)}' AND WorkflowType = '{RELEASE_WORKFLOW}'"
    if running:
        query += " AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query, limit=1):
        return execution.id if execution.id.startswith(f"{key}-") else None
    return None


def _spec(when: When) -> ScheduleSpec:
    if isinstance(when, timedelta):
        return ScheduleSpec(intervals=[ScheduleIntervalSpec(every=when)])
    at = when.astimezone(UTC)
    once = ScheduleCalendarSpec(
        second=[ScheduleRange(at.second)],
        minute=[ScheduleRange(at.minute)],
        hour=[ScheduleRange(at.hour)],
        day_of_month=[ScheduleRange(at.day)],
        month=[ScheduleRange(at.month)],
        year=[ScheduleRange(at.year)],
    )
    return ScheduleSpec(calendars=[once])


def _when(spec: ScheduleSpec) -> When | None:
    """What a train's spec says (None: something else, made by hand)."""
    if spec.intervals:
        return spec.intervals[0].every
    if len(spec.calendars) != 1:
        return None
    once = spec.calendars[0]
    fields = (once.year, once.month, once.day_of_month, once.hour, once.minute, once.second)
    if any(len(field) != 1 or field[0].end > field[0].start for field in fields):
        return None
    year, month, day, hour, minute, second = (field[0].start for field in fields)
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
