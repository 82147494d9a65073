"""What the server recorded about one release run: its time, size, retries and critical path.

Everything here reads workflow histories (the release's and every child's, as
scripts/record_histories.py's fetch_run gathers them), so the figures are the server's own,
not a client's stopwatch.
"""

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from temporalio.api.enums.v1 import EventType, TimeoutType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

Histories = dict[str, WorkflowHistory]

_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
_STARTED = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
_COMPLETED = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
_CHILD_INITIATED = EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
_CHILD_STARTED = EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED
_CHILD_COMPLETED = EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED
_SIGNALED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
_WFT_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
_WFT_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
_WFT_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


@dataclass
class RunStats:
    """One release run (the release workflow and all its children), as the server saw it."""

    seconds: float  # the release workflow's close time minus its start time
    workflows: int
    events: int
    activities: int  # steps scheduled (each once, however many attempts it took)
    retries: int  # attempts beyond the first, summed over steps
    signals: int  # signals received (the environment locks' releases)
    critical_hops: int  # activities one after another on the longest path


def _millis(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1000


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Series:
    """Repeated runs of one thing."""

    runs: list[RunStats] = field(default_factory=list)
    histories: list[Histories] = field(default_factory=list)

    def add(self, outcome: tuple[RunStats, Histories]) -> None:
        self.runs.append(outcome[0])
        self.histories.append(outcome[1])

    @property
    def seconds(self) -> float:
        return median([run.seconds for run in self.runs])


@dataclass
class HappyPath:
    release: Series
    skeleton: Series
    heartbeats: float  # heartbeat calls per release
    same_shape: bool  # the skeleton took the release's path (steps, workflows, children)


def run_stats(root_id: str, histories: Histories) -> RunStats:
    root = histories[root_id].events
    return RunStats(
        seconds=(_millis(root[-1]) - _millis(root[0])) / 1000,
        workflows=len(histories),
        events=sum(len(h.events) for h in histories.values()),
        activities=_count(histories, _SCHEDULED),
        retries=sum(
            e.activity_task_started_event_attributes.attempt - 1
            for h in histories.values()
            for e in h.events
            if e.event_type == _STARTED
        ),
        signals=_count(histories, _SIGNALED),
        critical_hops=critical_hops(root_id, histories),
    )


def _count(histories: Histories, event_type: int) -> int:
    return sum(e.event_type == event_type for h in histories.values() for e in h.events)


def critical_hops(workflow_id: str, histories: Histories, start_depth: int = 0) -> int:
    """The most activities that run one after another on any path through the run.

    Each step's depth is one more than the deepest step or child finished before it was
    scheduled; a child starts at its parent's depth when it was started. Parallel branches that
    end before a step is scheduled count as its predecessors, which is exact for the release's
    shape (every wave waits for all of its children).
    """
    depth = start_depth
    scheduled: dict[int, int] = {}
    child_start: dict[int, int] = {}
    child_end: dict[int, int] = {}
    for event in histories[workflow_id].events:
        if event.event_type == _SCHEDULED:
            scheduled[event.event_id] = depth + 1
        elif event.event_type == _COMPLETED:
            finished = event.activity_task_completed_event_attributes.scheduled_event_id
            depth = max(depth, scheduled[finished])
        elif event.event_type == _CHILD_INITIATED:
            child_start[event.event_id] = depth
        elif event.event_type == _CHILD_STARTED:
            attributes = event.child_workflow_execution_started_event_attributes
            child_id = attributes.workflow_execution.workflow_id
            initiated = attributes.initiated_event_id
            if child_id in histories:
                child_end[initiated] = critical_hops(child_id, histories, child_start[initiated])
        elif event.event_type == _CHILD_COMPLETED:
            initiated = event.child_workflow_execution_completed_event_attributes.initiated_event_id
            depth = max(depth, child_end.get(initiated, depth))
    return depth


def shape(histories: Histories) -> Counter[tuple[str, tuple[str, ...], int]]:
    """The run's shape, to check that the skeleton took the release's path: how many workflows
    of each kind scheduled which steps in which order and started how many children."""
    kinds: Counter[tuple[str, tuple[str, ...], int]] = Counter()
    for history in histories.values():
        events = history.events
        kind = events[0].workflow_execution_started_event_attributes.workflow_type.name
        steps = tuple(
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events
            if e.event_type == _SCHEDULED
        )
        kinds[(kind, steps, sum(e.event_type == _CHILD_INITIATED for e in events))] += 1
    return kinds


@dataclass
class TaskLatencies:
    """Medians over a run's workflow tasks and steps, in milliseconds, from event times."""

    wft_dispatch: float  # workflow task scheduled -> started (server queue and matching)
    wft_first: float  # started -> completed, for a run's first workflow task
    wft_later: float  # started -> completed, for later ones
    activity_dispatch: float  # activity scheduled -> started (0 when dispatched eagerly)
    activity_run: float  # activity started -> completed (the worker's share of a step)


def task_latencies(runs: list[Histories]) -> TaskLatencies:
    samples: tuple[list[float], ...] = ([], [], [], [], [])
    for histories in runs:
        for history in histories.values():
            _sample_latencies(history, *samples)
    return TaskLatencies(*(statistics.median(v) if v else 0.0 for v in samples))


def _sample_latencies(
    history: WorkflowHistory,
    dispatch: list[float],
    first: list[float],
    later: list[float],
    act_dispatch: list[float],
    act_run: list[float],
) -> None:
    """Add one workflow's task and step latencies to the lists, in the order of TaskLatencies."""
    wft_scheduled = wft_started = 0.0
    seen_first = False
    scheduled: dict[int, float] = {}
    started: dict[int, float] = {}
    for event in history.events:
        at = _millis(event)
        if event.event_type == _WFT_SCHEDULED:
            wft_scheduled = at
        elif event.event_type == _WFT_STARTED:
            wft_started = at
            dispatch.append(at - wft_scheduled)
        elif event.event_type == _WFT_COMPLETED:
            (later if seen_first else first).append(at - wft_started)
            seen_first = True
        elif event.event_type == _SCHEDULED:
            scheduled[event.event_id] = at
        elif event.event_type == _STARTED:
            begun = event.activity_task_started_event_attributes.scheduled_event_id
            started[begun] = at
            act_dispatch.append(at - scheduled[begun])
        elif event.event_type == _COMPLETED:
            done = event.activity_task_completed_event_attributes.scheduled_event_id
            act_run.append(at - started[done])


def workflow_task_timeouts(histories: Histories) -> dict[str, int]:
    """Workflow tasks that timed out: left on a dead worker's sticky queue ("sticky"), or
    started by a worker that then died ("started")."""
    counts = {"sticky": 0, "started": 0}
    for history in histories.values():
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
                kind = event.workflow_task_timed_out_event_attributes.timeout_type
                counts[
                    "sticky" if kind == TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_START else "started"
                ] += 1
    return counts
