"""The tables of benchmarks/RESULTS.md, from what benchmarks/run.py measured.

Each table is a block of RESULTS.md between `<!-- measured: ID -->` and `<!-- /measured -->`,
found by its ID; fill() replaces the blocks' contents and leaves everything else in the file,
the findings written by hand, as it is. Figures only: what they mean is said in RESULTS.md.
"""

import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from benchmarks.histories import HappyPath, RunStats, TaskLatencies, median, task_latencies
from steps import HEARTBEAT_TIMEOUT, RETRY_POLICY
from utils import A_LOT_RATE

GOAL_RATIO = 1.2
GOAL_LOST_SECONDS = 3.0
GOAL_SCALE_RATIO = 5.0
GOAL_WORKER_MB = 200.0

BLOCK = re.compile(r"(<!-- measured: ([\w-]+) -->\n).*?(<!-- /measured -->)", re.DOTALL)


def fill(text: str, tables: dict[str, str]) -> str:
    """text with each measured block's contents replaced by its table; every block must have
    one, and every table a block."""
    found = [match.group(2) for match in BLOCK.finditer(text)]
    if unknown := set(found) - set(tables):
        raise SystemExit(f"RESULTS.md has blocks nothing measures: {', '.join(sorted(unknown))}")
    if missing := set(tables) - set(found):
        raise SystemExit(f"RESULTS.md has no block for: {', '.join(sorted(missing))}")
    return BLOCK.sub(lambda m: f"{m.group(1)}{tables[m.group(2)]}\n{m.group(3)}", text)


def render(results: dict[str, Any]) -> dict[str, str]:
    """The tables of the measurements in results, by block ID."""
    tables = {"run": run_lines(results), "goals": goals(results)}
    sections: dict[str, Callable[[dict[str, Any]], dict[str, list[str]]]] = {
        "happy": happy_tables,
        "critical": critical_tables,
        "storm": storm_tables,
        "recovery": recovery_tables,
        "scale": scale_tables,
    }
    for name, section in sections.items():
        if name in results:
            tables |= section(results)
    return {key: "\n".join(lines) for key, lines in tables.items()}


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(" --- " for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def spread(values: Sequence[float], unit: str = " s") -> str:
    """Median and range: "3.01 s (2.80-3.40, 7 runs)"."""
    return f"{median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f}, {len(values)} runs)"


def ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.0f}"


def shown(value: float, goal: float) -> str:
    """Two decimals, or three where two would hide which side of the goal the value is on."""
    return f"{value:.3f}" if abs(value - goal) < 0.005 else f"{value:.2f}"


# --- The run and the goals -------------------------------------------------------------------


def run_lines(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    load = [", ".join(f"{x:.1f}" for x in m[key]) for key in ("load_before", "load_after")]
    return [
        f"- Run: {results['date']}, {results['minutes']:.1f} minutes",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']:.1f} GB memory, {m['os']}",
        f"- Software: Python {m['python']}, temporalio {m['temporalio']}, pydantic "
        f"{m['pydantic']}, Temporal CLI {m['cli']}",
        f"- Load average (1, 5, 15 minutes): {load[0]} before, {load[1]} after",
    ]


def paired_ratio(happy: HappyPath) -> float:
    """The median over run pairs of release / skeleton: each release run is paired with the
    skeleton run right after it, so a pair shares the machine's load of the moment."""
    pairs = zip(happy.release.runs, happy.skeleton.runs, strict=True)
    return median([ours.seconds / floor.seconds for ours, floor in pairs])


def goals(results: dict[str, Any]) -> list[str]:
    rows = []
    if "happy" in results:
        happy = results["happy"]
        ours, floor = happy.release.seconds, happy.skeleton.seconds
        rows.append(
            [
                "1. Happy path against the floor",
                f"release / skeleton <= {GOAL_RATIO}",
                f"{shown(paired_ratio(happy), GOAL_RATIO)} (median of {len(happy.release.runs)} "
                f"run pairs; medians {ours:.2f} s / {floor:.2f} s)",
            ]
        )
    if "recovery" in results:
        rec = results["recovery"]
        lost, earlier = (median([k["lost"] for k in rec[key]["kills"]]) for key in RECOVERY_KEYS)
        rows.append(
            [
                "4. Recovery from a worker SIGKILL",
                f"<= {GOAL_LOST_SECONDS:g} s lost per kill",
                f"{lost:.1f} s (median of {len(rec['current']['kills'])} kills; {earlier:.1f} s "
                f"with the heartbeat timeout at {rec['earlier_timeout']:g} s, as before)",
            ]
        )
    if "scale" in results:
        rows += scale_goals(results["scale"])
    return table(["Measurement", "Goal", "Measured"], rows)


def scale_goals(sc: dict[str, Any]) -> list[list[str]]:
    one, count = sc["one-worker"], sc["components"]
    large, small = one["large"]["stats"].seconds, one["small_seconds"]
    floor = sc["skeleton"]["stats"].seconds / small
    return [
        [
            f"5. Scale: {count} components, one worker",
            f"<= {GOAL_SCALE_RATIO:g}x the 3-component release",
            f"{large / small:.1f}x ({large:.1f} s / {small:.1f} s); "
            f"its skeleton alone {floor:.1f}x",
        ],
        [
            f"5. Worker memory, {count} components",
            f"< {GOAL_WORKER_MB:g} MB peak RSS",
            f"{max(one['large']['peak_mb']):.0f} MB",
        ],
    ]


# --- 1. Happy path and 2. critical path ------------------------------------------------------


def happy_tables(results: dict[str, Any]) -> dict[str, list[str]]:
    happy = results["happy"]
    ours, floor = happy.release, happy.skeleton
    one, base = ours.runs[0], floor.runs[0]

    def row(name: str, get: Callable[[RunStats], object]) -> list[str]:
        return [name, str(get(one)), str(get(base))]

    rows = [
        ["Execution time, median", *(spread([r.seconds for r in s.runs]) for s in (ours, floor))],
        row("Workflows per release", lambda r: r.workflows),
        row("History events per release (release and children)", lambda r: r.events),
        row("Steps (activities) scheduled", lambda r: r.activities),
        row("Signals received (lock releases)", lambda r: r.signals),
        ["Heartbeat calls per release (from the SDK's metrics)", f"{happy.heartbeats:.0f}", "0"],
        ["Release / skeleton, median over run pairs", f"**{paired_ratio(happy):.2f}**", ""],
        ["Release / skeleton, ratio of the medians", f"{ours.seconds / floor.seconds:.2f}", ""],
        [
            "Same steps in the same workflows (from the histories)",
            "",
            "yes" if happy.same_shape else "**no**",
        ],
    ]
    return {"happy-path": table(["", "Release", "Skeleton"], rows)}


HOP_LABELS = {
    "default": "dev server as `make demo` starts it",
    "sandbox-off": "the same, workflow sandbox off",
    "eager-off": "the same, eager activities off",
    "local-activities": "the same, local activities",
    "fast-queues": "dev server with its queues read at up to 1000/s",
}
# Core SDK metrics that split a hop (the server's dispatch, the worker's share, its replies), by
# metric name or request operation, with their columns.
HOP_COLUMNS = {
    "temporal_workflow_task_schedule_to_start_latency": "Workflow task queued",
    "temporal_workflow_task_execution_latency": "Workflow task in worker",
    "RespondWorkflowTaskCompleted": "Its completion call",
    "temporal_activity_schedule_to_start_latency": "Activity queued",
    "temporal_activity_execution_latency": "Activity in worker",
    "RespondActivityTaskCompleted": "Its completion call",
}
VARIANT_LABELS = {
    "release-fast-queues": "release: queues read at up to 1000/s",
    "skeleton-fast-queues": "skeleton: queues read at up to 1000/s",
    "release-sandbox-off": "release: workflow sandbox off",
    "release-passthrough": "release: sandbox passes every module through",
    "skeleton-eager-off": "skeleton: eager activities off",
    "skeleton-no-cache": "skeleton: no workflow cache",
    "skeleton-local-activities": "skeleton: local activities",
}
LATENCY_HEADER = [
    "Workflow task queued (ms)",
    "First workflow task of a run (ms)",
    "Later workflow tasks (ms)",
    "Activity queued (ms)",
    "Activity run (ms)",
]


def latencies(of: TaskLatencies) -> list[str]:
    return [
        ms(value)
        for value in (
            of.wft_dispatch,
            of.wft_first,
            of.wft_later,
            of.activity_dispatch,
            of.activity_run,
        )
    ]


def critical_tables(results: dict[str, Any]) -> dict[str, list[str]]:
    hops, variants = results["critical"]["hops"], results["critical"]["variants"]
    ours, floor = results["happy"].release, results["happy"].skeleton
    count = ours.runs[0].critical_hops
    hop = hops["default"]["hop"]
    per_step = [f"{s.seconds / count * 1000:.0f}" for s in (ours, floor)]
    return {
        "critical-path": table(
            ["", "Release", "Skeleton"],
            [
                ["Steps one after another on the longest path", str(count), str(count)],
                ["Time per step on that path (ms)", *per_step],
                ["A hop alone (below) times those steps (s)", "", f"{count * hop / 1000:.1f}"],
            ],
        ),
        "hops": table(
            ["Setup", "Per hop (ms)", *HOP_COLUMNS.values()],
            [
                [HOP_LABELS[key], f"**{f['hop']:.0f}**", *(ms(f.get(m)) for m in HOP_COLUMNS)]
                for key, f in hops.items()
            ],
        ),
        "release-latencies": table(
            ["", *LATENCY_HEADER],
            [
                ["Release", *latencies(task_latencies(ours.histories))],
                ["Skeleton", *latencies(task_latencies(floor.histories))],
            ],
        ),
        "variants": table(
            ["Variant", "Time (median)", "Ratio", *LATENCY_HEADER],
            [
                [VARIANT_LABELS[key], f"{v['seconds']:.2f} s", f"{v['ratio']:.2f}"]
                + latencies(v["latencies"])
                for key, v in variants.items()
            ],
        ),
    }


# --- 3. Error storm --------------------------------------------------------------------------


def expected_wait(policy: RetryPolicy, rate: float) -> tuple[float, float]:
    """Expected total backoff (s) before a step that fails each attempt with probability rate
    succeeds, and the interval between attempts once the policy has settled."""
    interval = policy.initial_interval.total_seconds()
    cap = (
        policy.maximum_interval.total_seconds()
        if policy.maximum_interval
        else 100 * interval  # Temporal's default cap
    )
    settled = min(cap, interval) if policy.backoff_coefficient == 1 else cap
    waited, expected, chance = 0.0, 0.0, 1.0
    for _ in range(1000):
        expected += chance * (1 - rate) * waited
        chance *= rate
        waited += min(interval, cap)
        interval *= policy.backoff_coefficient
    return expected, settled


def _policy(initial_ms: int, backoff: float, cap_s: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=initial_ms),
        backoff_coefficient=backoff,
        maximum_interval=timedelta(seconds=cap_s),
    )


POLICIES = {
    "Current: 0.1 s, x1.5, at most 2 s": RETRY_POLICY,
    "No backoff: every 0.1 s (measured above)": RetryPolicy(
        initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0
    ),
    "0.1 s, x2, at most 2 s": _policy(100, 2.0, 2),
    "0.2 s, x2, at most 3 s (the demo's earlier policy)": _policy(200, 2.0, 3),
    "Temporal's default: 1 s, x2, at most 100 s": RetryPolicy(),
}


def policy_rows() -> list[list[str]]:
    rows = []
    for name, policy in POLICIES.items():
        expected, settled = expected_wait(policy, A_LOT_RATE)
        rows.append([name, f"{expected:.2f} s", f"{60 / settled:.0f}", f"{settled:g} s"])
    return rows


RETRY_ATTRS = ("seconds", "retries")


def storm_tables(results: dict[str, Any]) -> dict[str, list[str]]:
    storm = results["storm"]
    keys, current, alternative = storm["keys"], storm["current"], storm["alternative"]

    def per(rounds: list[dict[str, RunStats]], attr: str, of: list[str]) -> str:
        value = median([sum(getattr(r[key], attr) for key in of) for r in rounds])
        return "-" if not rounds else f"{value:.1f} s" if attr == "seconds" else f"{value:.0f}"

    def row(name: str, of: list[str]) -> list[str]:
        steps = str(sum(current[0][key].activities for key in of))
        figures = [per(rounds, a, of) for rounds in (current, alternative) for a in RETRY_ATTRS]
        return [name, steps, *figures]

    header = ["Release", "Steps", "Time, current policy", "Retries", "Time, no backoff", "Retries"]
    rows = [*(row(key, [key]) for key in keys), row(f"All {len(keys)}, in turn", keys)]
    wait_header = ["Policy", "Expected wait per step", "Attempts per minute, settled"]
    return {
        "storm": table(header, rows),
        "retry-policies": table(
            [*wait_header, "A fixed worker picks up a stuck step within"], policy_rows()
        ),
    }


# --- 4. Recovery -----------------------------------------------------------------------------

RECOVERY_KEYS = ("current", "earlier")
KILL_HEADER = [
    "Killed at",
    "Release time",
    "Lost",
    "New worker ready after",
    "Steps retried",
    "Workflow tasks timed out (sticky / started)",
]


def kill_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            f"{k['kill_at']:.2f} s",
            f"{k['seconds']:.2f} s",
            f"{k['lost']:.2f} s",
            f"{k['restart']:.2f} s",
            str(k["retried"]),
            f"{k['sticky']} / {k['started']}",
        ]
        for k in sorted(runs, key=lambda k: k["kill_at"])
    ]


def recovery_tables(results: dict[str, Any]) -> dict[str, list[str]]:
    rec = results["recovery"]
    timeouts = [HEARTBEAT_TIMEOUT.total_seconds(), rec["earlier_timeout"]]
    rows = [
        [
            f"{timeout:g} s",
            spread([b["seconds"] for b in rec[key]["baselines"]]),
            f"**{median([k['lost'] for k in rec[key]['kills']]):.1f} s**",
            f"{median([k['restart'] for k in rec[key]['kills']]):.1f} s",
            str(sum(b["retried"] for b in rec[key]["baselines"])),
        ]
        for key, timeout in zip(RECOVERY_KEYS, timeouts, strict=True)
    ]
    header = ["Heartbeat timeout", "Without kills", "Lost per kill, median"]
    header += ["New worker ready after, median", "Steps retried in the runs without kills"]
    return {
        "recovery": table(header, rows),
        "recovery-kills": table(KILL_HEADER, kill_rows(rec["current"]["kills"])),
        "recovery-kills-earlier": table(KILL_HEADER, kill_rows(rec["earlier"]["kills"])),
    }


# --- 5. Scale --------------------------------------------------------------------------------

SCALE_ROWS = [
    "Time",
    "Against the 3-component release",
    "Against the large release on one worker",
    "Workflows",
    "Steps (activities) scheduled",
    "Steps retried (no failures are injected: a retry is a live worker taken for dead)",
    "History events (release and children)",
    "Events in the release workflow's own history",
    "Peak worker RSS (VmHWM)",
    "Worker CPU time",
    "Dev server CPU time",
    "Worker and server CPU-seconds per second",
]


def scale_column(outcome: dict[str, Any], small: float, large: float) -> list[str]:
    """One run at scale, as a column of the scale table; small and large: the one-worker
    3-component and 100-component times."""
    stats: RunStats = outcome["stats"]
    peaks, times = outcome["peak_mb"], outcome.get("all_seconds", [])
    each = f" ({', '.join(f'{m:.0f}' for m in peaks)})" if len(peaks) > 1 else ""
    runs = f" (median of {len(times)}: {min(times):.1f}-{max(times):.1f})" if len(times) > 1 else ""
    busy = (outcome["worker_cpu"] + outcome["server_cpu"]) / stats.seconds
    return [
        f"{stats.seconds:.1f} s{runs}",
        f"{stats.seconds / small:.1f}x",
        f"{stats.seconds / large:.2f}x",
        str(stats.workflows),
        str(stats.activities),
        str(stats.retries),
        str(stats.events),
        str(outcome["release_events"]),
        f"{max(peaks):.0f} MB{each}",
        f"{outcome['worker_cpu']:.1f} s",
        f"{outcome['server_cpu']:.1f} s",
        f"{busy:.1f}",
    ]


def scale_tables(results: dict[str, Any]) -> dict[str, list[str]]:
    sc = results["scale"]
    count, one = sc["components"], sc["one-worker"]
    large = one["large"]["stats"].seconds
    columns = [scale_column(one["small"], one["small"]["stats"].seconds, large)]
    columns[0][0] = f"{one['small_seconds']:.1f} s (median)"
    columns[0][2] = ""
    columns[0][SCALE_ROWS.index("Peak worker RSS (VmHWM)")] = f"{one['small_peak_mb']:.0f} MB"
    for key in ("one-worker", "two-workers", "fast-queues"):
        columns.append(scale_column(sc[key]["large"], sc[key]["small_seconds"], large))
    columns.append(scale_column(sc["skeleton"], one["small_seconds"], large))
    header = ["", "3 components", *(f"{count}, {name}" for name in SCALE_COLUMNS)]
    rows = [[name, *cells] for name, *cells in zip(SCALE_ROWS, *columns, strict=True)]
    small = [
        f"{sc[key]['small_seconds']:.1f} s" for key in ("one-worker", "two-workers", "fast-queues")
    ]
    rows.append(["The 3-component release on the same setup", "", *small, ""])
    return {"scale": table(header, rows)}


SCALE_COLUMNS = ("one worker", "two workers", "queues read faster", "skeleton")
