"""The critical path of one release, from its recorded histories (issue 26).

    .venv/bin/python benchmarks/critical_path.py

Runs RELEASE-NOV-23-INITIAL once (unpaced, no injected failures, its own demo root and task
queue) on a plain dev server (default dynamic config: queues read 20 times a second) and an
in-process worker, and walks back through the histories of the release and its children from
the release's last event to its first, from each event to the one it waited for: a command to
its workflow task, a task to the latest event that woke it, a step's end to its scheduling, a
child's end through the child's history to its start, a lock's end through the unlock signal to
the release that sent it. Prints the path as hops (a wave's longest deploy, and an unlocked
lock, with their own hops nested), totals per kind and the costliest hops; server times.
"""

import asyncio
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
# Run as a script, this file sees benchmarks/ on sys.path, not the project it measures.
sys.path.insert(0, str(PROJECT_DIR))

from temporalio.api.enums.v1 import EventType as E  # noqa: E402
from temporalio.api.history.v1 import HistoryEvent  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

import search_attributes  # noqa: E402
from benchmarks.histories import Histories  # noqa: E402
from benchmarks.run import RELEASE, finished, new_id, start_release  # noqa: E402
from connection import exit_now  # noqa: E402
from run_worker import create_worker, serving  # noqa: E402
from scripts.dev_server import temporal_cli_or_exit  # noqa: E402
from scripts.record_histories import demo_settings  # noqa: E402

KINDS = ("workflow tasks", "activities", "children", "signals/unlocks", "announcements", "timers")
TASK_ENDS = {E.Value(f"EVENT_TYPE_WORKFLOW_TASK_{x}") for x in ("COMPLETED", "FAILED", "TIMED_OUT")}
# Events that wake no workflow task: the tasks' own, and a step's start (written at its end).
NOT_WAKING = {E.Value(f"EVENT_TYPE_{name}_STARTED") for name in ("WORKFLOW_TASK", "ACTIVITY_TASK")}
NOT_WAKING.add(E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED)


@dataclass
class Hop:
    kind: str
    what: str
    start: float  # ms, server time
    end: float
    queued: float | None = None  # of that, the task's wait for a worker to take it
    inner: list["Hop"] = field(default_factory=list)  # a child's (or a lock's) own hops

    @property
    def ms(self) -> float:
        return self.end - self.start


def at(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1000


def attrs(event: HistoryEvent) -> Any:
    return getattr(event, event.WhichOneof("attributes") or "")


def command_of(event: HistoryEvent) -> int:
    """The workflow task completion a command came with (0: the event is no command)."""
    return int(getattr(attrs(event), "workflow_task_completed_event_id", 0))


def env_of(workflow_id: str) -> tuple[str, str]:
    """(DEV, "") from lock.DEV.<queue>; (DEV, frontend) from <release>.DEV.frontend."""
    parts = workflow_id.split(".")
    return (parts[1], "") if parts[0] == "lock" else (parts[-2], parts[-1])


def command_name(event: HistoryEvent) -> str | None:
    """What a command asks for, in a few words (None: a patch's marker or version)."""
    kind, a = event.event_type, attrs(event)
    if kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return str(a.activity_type.name)
    if kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        env, component = env_of(a.workflow_id)
        return f"start deploys {env}" if component else f"lock {env}"
    if kind == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
        return f"unlock {env_of(a.workflow_execution.workflow_id)[0]}"
    if kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        # workflow.patched() upserts TemporalChangeVersion beside its marker: both left out.
        keys = set(a.search_attributes.indexed_fields) - {"TemporalChangeVersion"}
        return "upsert search attributes" if keys else None
    if kind == E.EVENT_TYPE_MARKER_RECORDED:
        return None
    return E.Name(kind).removeprefix("EVENT_TYPE_").lower().replace("_", " ")


class Walk:
    """A release's histories (as fetch_run gathers them), and the walk back through them."""

    def __init__(self, histories: Histories) -> None:
        self.histories = {wid: history.events for wid, history in histories.items()}
        self.by_id = {wid: {e.event_id: e for e in evs} for wid, evs in self.histories.items()}

    def path(self, wid: str, event: HistoryEvent) -> tuple[list[Hop], HistoryEvent]:
        """The hops in wid's history that lead to event, earliest first, and the event the path
        came in from (the parent's, or the unlock's sender's; the release's start for it)."""
        hops: list[Hop] = []
        until = 0.0  # when the command being traced back was written
        while True:
            if command_of(event):
                until, event = at(event), self.by_id[wid][command_of(event)]
            if (found := self.step(wid, event)) is None:
                return hops[::-1], event
            earlier, hop = found
            hop.start, hop.end = at(earlier), max(hop.end, until)  # a command: <= 1 ms later
            hops.append(hop)
            until = 0.0
            if self.by_id[wid].get(earlier.event_id) is not earlier:
                return hops[::-1], earlier  # from another history
            event = earlier

    def step(self, wid: str, event: HistoryEvent) -> tuple[HistoryEvent, Hop] | None:
        """The event the hop ending at event started from, and the hop (None: at the start)."""
        events, kind, a = self.by_id[wid], event.event_type, attrs(event)

        def hop(kind: str, what: str, queued: float | None = None) -> Hop:
            return Hop(kind, what, 0.0, at(event), queued)

        if kind in TASK_ENDS:
            return self.task(wid, event)
        if kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sent = events[a.scheduled_event_id]
            queued, name = at(events[a.started_event_id]) - at(sent), str(command_name(sent))
            if name == "notify":  # its summary: "announce that <key> promoted to DEV"
                said = json.loads(sent.user_metadata.summary.data or b'""').split(" ", 3)[-1]
                return sent, hop("announcements", f"notify ({said})", queued)
            return sent, hop("activities", name, queued)
        if kind == E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            sent = events[a.initiated_event_id]
            return sent, hop("children", str(command_name(sent)))
        if kind == E.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED:
            child = a.workflow_execution.workflow_id
            inner, sent = self.path(child, self.histories[child][-1])
            closed = at(self.histories[child][-1])
            inner.append(Hop("children", "its end reaches the parent", closed, at(event)))
            if sent.event_type == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
                what = f"unlock {env_of(child)[0]}: signal, lock closes"
                return sent, replace(hop("signals/unlocks", what), inner=inner)
            wave = sum(command_name(e) == command_name(sent) for e in self.histories[wid])
            env, component = env_of(child)
            what = f"wave {env}: deploy {component} (longest of {wave})"
            return sent, replace(hop("children", what), inner=inner)
        if kind == E.EVENT_TYPE_EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
            sent = events[a.initiated_event_id]
            return sent, hop("signals/unlocks", f"{command_name(sent)}: signal delivered")
        if kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:  # a lock, unlocked by its release
            sender, unlock = a.external_workflow_execution.workflow_id, f"unlock {env_of(wid)[0]}"
            *_, sent = (e for e in self.histories[sender] if command_name(e) == unlock)
            return sent, hop("signals/unlocks", f"signal {a.signal_name}")
        if kind == E.EVENT_TYPE_TIMER_FIRED:
            return events[a.started_event_id], hop("timers", f"timer {a.timer_id}")
        if kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            if not (parent := a.parent_workflow_execution.workflow_id):
                return None  # the release's start
            sent = self.by_id[parent][a.parent_initiated_event_id]
            return sent, hop("children", "child starts")
        raise SystemExit(f"{wid}: no rule for {E.Name(kind)} (event {event.event_id})")

    def task(self, wid: str, completed: HistoryEvent) -> tuple[HistoryEvent, Hop]:
        """A workflow task, from the latest event that woke it (or the previous task's end)."""
        events, a = self.by_id[wid], attrs(completed)
        woke = next(
            events[i]
            for i in range(a.started_event_id - 1, 0, -1)
            if events[i].event_type in TASK_ENDS
            or not (events[i].event_type in NOT_WAKING or command_of(events[i]))
        )
        issued = Counter(
            name
            for e in self.histories[wid]
            if command_of(e) == completed.event_id and (name := command_name(e))
        )
        said = ", ".join(f"{n} x{c}" if c > 1 else n for n, c in issued.items()) or "nothing"
        queued = at(events[a.started_event_id]) - max(at(woke), at(events[a.scheduled_event_id]))
        return woke, Hop("workflow tasks", f"task: {said}", at(woke), at(completed), queued)


def numbered(hops: list[Hop], prefix: str = "") -> list[tuple[str, Hop]]:
    """Every hop, each followed by its own (a child's), numbered 8, 8.1, 8.2, ..."""
    return [
        row
        for number, hop in enumerate(hops, 1)
        for row in [(f"{prefix}{number}", hop), *numbered(hop.inner, f"{prefix}{number}.")]
    ]


def totals(hops: list[Hop]) -> dict[str, float]:
    return {kind: sum(hop.ms for hop in hops if hop.kind == kind) for kind in KINDS}


def report(release_id: str, histories: Histories) -> None:
    events = histories[release_id].events
    hops, _ = Walk(histories).path(release_id, events[-1])
    origin, total = at(events[0]), at(events[-1]) - at(events[0])
    print(f"\n{release_id}: {total:.0f} ms from start to result, {len(hops)} hops on its path")
    print("(queued: of a hop, the wait for a worker to take its task; ms, server times)\n")
    print(f"{'hop':<6} {'start':>6} {'ms':>5} {'queued':>6}  {'kind':<15} what for")
    for label, hop in numbered(hops):
        queued, indent = "" if hop.queued is None else f"{hop.queued:.0f}", "  " * label.count(".")
        print(
            f"{label:<6} {hop.start - origin:6.0f} {hop.ms:5.0f} {queued:>6}  "
            f"{hop.kind:<15} {indent}{hop.what}"
        )
    leaves = [(label, hop) for label, hop in numbered(hops) if not hop.inner]
    top, inside = totals(hops), totals([hop for _, hop in leaves])
    print(f"\n{'ms per kind':<16} {'on the path':>11} {'as leaves':>10}")
    for kind in KINDS:
        print(f"{kind:<16} {top[kind]:11.0f} {inside[kind]:10.0f}")
    print(f"{'total':<16} {sum(top.values()):11.0f} {sum(inside.values()):10.0f}")
    print("(as leaves: each hop through a child counted as the child's own hops)")
    waited = sum(hop.queued or 0 for _, hop in leaves)
    print(f"Tasks on the path waited {waited:.0f} ms in queues for a worker.")
    print("\nThe 10 costliest hops on the path (as leaves):")
    for label, hop in sorted(leaves, key=lambda row: -row[1].ms)[:10]:
        print(f"{label:<6} {hop.ms:5.0f} ms at {hop.start - origin:5.0f}  {hop.what}")


async def record() -> tuple[str, Histories]:
    """RELEASE, once, on a plain dev server and a worker of its own."""
    for name in [name for name in os.environ if name.startswith("DEMO_")]:
        os.environ.pop(name)
    queue = new_id("critical-path")
    with tempfile.TemporaryDirectory(prefix="critical-path-") as root:
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli_or_exit("benchmarks/critical_path.py"),
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
            search_attributes=search_attributes.ALL,
        ) as server:
            client = server.client
            with demo_settings(
                DEMO_ROOT=root, DEMO_TASK_QUEUE=queue, DEMO_STEP_SECONDS="0", DEMO_FAILURES="off"
            ):
                async with serving(client, create_worker(client, queue)):
                    handle = await start_release(client, queue, RELEASE, f"{RELEASE}-{queue}")
                    _, histories = await finished(client, handle)
    return handle.id, histories


if __name__ == "__main__":
    report(*asyncio.run(record()))
    exit_now(0)
