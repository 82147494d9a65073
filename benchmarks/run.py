"""make bench: measure the release demo on this machine and fill benchmarks/RESULTS.md's tables.

    .venv/bin/python benchmarks/run.py            (or: make bench; about ten minutes)
    .venv/bin/python benchmarks/run.py --quick    (a smoke run: fewer repetitions, prints only)
    .venv/bin/python benchmarks/run.py --only storm,scale    (some measurements; prints only)

Starts its own dev servers (as `make demo` and the tests do: precise timers, in memory) and its
own workers, with all demo state in temp folders, and measures:
1. the happy path: RELEASE-NOV-23-INITIAL unpaced and without failures, against its skeleton
   (benchmarks/skeleton.py: the same workflows with activities that do nothing);
2. the critical path: what one hop costs and where its time goes, with small experiments
   (server queues, sandbox, eager and local activities, cache);
3. an error storm: the six releases in turn with DEMO_FAILURES=alot, and another retry policy;
4. recovery: run_worker.py killed (SIGKILL) at random points of a paced release, then the same
   with the heartbeat timeout the demo had before (benchmarks/worker.py);
5. scale: a release of 100 generated components, on one worker and on two, and its skeleton.
Times are the server's (a workflow's close time minus its start time); figures are medians of
several runs. It writes tables only (benchmarks/report.py), between the markers in RESULTS.md;
what the figures mean is written there by hand. Nothing here is asserted: `make test` checks
behaviour, this reports performance.
"""

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import signal
import string
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
# Run as a script, this file sees benchmarks/ on sys.path, not the project it measures.
sys.path.insert(0, str(PROJECT_DIR))

from temporalio.client import Client, WorkflowHandle  # noqa: E402
from temporalio.common import RetryPolicy  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.runtime import (  # noqa: E402
    BufferedMetricUpdate,
    LoggingConfig,
    MetricBuffer,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner  # noqa: E402
from temporalio.worker.workflow_sandbox import (  # noqa: E402
    SandboxedWorkflowRunner,
    SandboxRestrictions,
)

import search_attributes  # noqa: E402
from benchmarks.histories import (  # noqa: E402
    HappyPath,
    Histories,
    RunStats,
    Series,
    median,
    run_stats,
    shape,
    task_latencies,
    workflow_task_timeouts,
)
from benchmarks.report import HOP_COLUMNS, fill, render  # noqa: E402
from benchmarks.skeleton import ReleaseWorkflow, SequentialStepsWorkflow, StepChanges  # noqa: E402
from benchmarks.worker import changed_worker  # noqa: E402
from catalog import load_catalog, load_release  # noqa: E402
from connection import exit_now  # noqa: E402
from run_worker import create_worker, serving  # noqa: E402
from scripts.dev_server import FAST_QUEUES, PRECISE_TIMERS, temporal_cli_or_exit  # noqa: E402
from scripts.record_histories import WorkerProcess, demo_settings, fetch_run  # noqa: E402
from shared import (  # noqa: E402
    WORKFLOW_TASK_TIMEOUT,  # noqa: E402
    Outcome,
    ReleaseInput,
    ReleaseResult,
)

RESULTS = PROJECT_DIR / "benchmarks" / "RESULTS.md"
RELEASE = "RELEASE-NOV-23-INITIAL"
RUN_TIMEOUT = 300.0
# The alternative retry policy the error storm measures: retry every 0.1 s, with no backoff.
# (Slower policies are priced in RESULTS.md from the failure rate: measuring them would take
# many minutes.)
ALTERNATIVE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0, maximum_attempts=0
)
RECOVERY_STEP_SECONDS = "0.2"
# The heartbeat timeout of workflows.py before the first run of this benchmark, compared with.
EARLIER_HEARTBEAT_TIMEOUT = 2.0
METRICS = MetricBuffer(500_000)
# The SDK's own warnings (a completion racing an eviction, say) would drown the progress lines.
RUNTIME = Runtime(
    telemetry=TelemetryConfig(
        logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")),
        metrics=METRICS,
    )
)


@dataclass
class Plan:
    """How many times each measurement is repeated (--quick makes a smoke run)."""

    happy_runs: int = 9
    variant_runs: int = 5
    chain_steps: int = 20
    chain_runs: int = 3
    storm_rounds: int = 3
    storm_alternative_rounds: int = 1
    recovery_baselines: int = 3
    recovery_kills: int = 6
    scale_components: int = 100
    scale_small_runs: int = 3
    scale_large_runs: int = 3  # on one worker, the goal's setup; once on each of the others


QUICK_PLAN = Plan(
    happy_runs=2,
    variant_runs=1,
    chain_steps=10,
    chain_runs=1,
    recovery_baselines=1,
    recovery_kills=1,
    scale_components=20,
    scale_small_runs=1,
    scale_large_runs=1,
    storm_rounds=1,
)


# Calls the workers and clients of this process made to the server, by operation, counted from
# the SDK's metrics.
REQUESTS: Counter[str] = Counter()


def drain_metrics() -> Sequence[BufferedMetricUpdate]:
    """Empty the metric buffer (it must not fill up), counting the calls to the server."""
    updates = METRICS.retrieve_updates()
    for update in updates:
        if update.metric.name == "temporal_request":
            REQUESTS[str(update.attributes.get("operation"))] += int(update.value)
    return updates


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# --- The machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What this ran on: the figures only mean something next to it."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total_kb = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if "MemTotal" in line), 0
    )
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor() or platform.machine(),
    )
    cli = subprocess.run(
        [temporal_cli_or_exit("benchmarks/run.py"), "--version"], capture_output=True, text=True
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": total_kb / 1024 / 1024,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "pydantic": version("pydantic"),
        "cli": cli.stdout.strip().removeprefix("temporal version "),
        "load_before": os.getloadavg(),
    }


# --- Servers, workers, processes -------------------------------------------------------------


@asynccontextmanager
async def dev_server(*extra_args: str) -> AsyncIterator[WorkflowEnvironment]:
    """A throwaway dev server as `make demo` and the tests start it (precise timers), in
    memory, plus extra_args."""
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_or_exit("benchmarks/run.py"),
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[*PRECISE_TIMERS, *extra_args],
        dev_server_log_level="error",
        search_attributes=search_attributes.ALL,
        runtime=RUNTIME,
    ) as env:
        yield env


def address(client: Client) -> str:
    return client.service_client.config.target_host


def server_pid(client: Client) -> int | None:
    """The dev server process listening on the client's port (a child of this process)."""
    port = address(client).rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start-dev" in argv and port.encode() in argv:
            return int(proc.name)
    return None


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time a process has used so far."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) so far, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fresh_root() -> str:
    """An empty demo root (no catalog: the project's is used)."""
    return tempfile.mkdtemp(prefix="demo-", dir=STATE_DIR)


STATE_DIR = ""  # set by main: everything the releases write goes under it


def worker_env(client: Client, queue: str, root: str, **settings: str) -> dict[str, str]:
    """run_worker.py's environment: this server and queue, nothing of the caller's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DEMO_"))}
    return env | {
        "TEMPORAL_ADDRESS": address(client),
        "TEMPORAL_NAMESPACE": client.namespace,
        "DEMO_ROOT": root,
        "DEMO_TASK_QUEUE": queue,
        "DEMO_STEP_SECONDS": "0",
        "DEMO_FAILURES": "off",
        **settings,
    }


async def start_worker(env: dict[str, str], started: list[WorkerProcess]) -> WorkerProcess:
    """A worker process as scripts/record_histories.py starts one (listed in started at once,
    ready once it polls); its script is run_worker.py unless env names another."""
    return await WorkerProcess.start(env, started, env.get("BENCH_WORKER_SCRIPT", "run_worker.py"))


@asynccontextmanager
async def worker_processes(env: dict[str, str], count: int) -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    try:
        for _ in range(count):
            await start_worker(env, started)
        yield started
    finally:
        for process in started:
            await process.stop()


# --- Running releases ------------------------------------------------------------------------


def new_id(label: str) -> str:
    return f"bench-{label}-{uuid.uuid4().hex[:8]}"


async def start_release(
    client: Client, queue: str, key: str, workflow_id: str
) -> WorkflowHandle[Any, ReleaseResult]:
    # As run_workflow.py starts it, under an ID that begins with its key (a release refuses
    # any other); each queue is a lock scope of its own (locks.py).
    return await client.start_workflow(
        ReleaseWorkflow.run,
        ReleaseInput(release_key=key),
        id=workflow_id,
        task_queue=queue,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
    )


async def finished(
    client: Client, handle: WorkflowHandle[Any, ReleaseResult]
) -> tuple[RunStats, Histories]:
    result = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
    if result.outcome is not Outcome.SUCCESS:
        raise SystemExit(f"{handle.id}: {result}")
    histories = await fetch_run(client, handle.id)
    drain_metrics()
    return run_stats(handle.id, histories), histories


async def release(client: Client, queue: str, key: str = RELEASE) -> tuple[RunStats, Histories]:
    """Run a release of the catalog to its end: the real one, or its skeleton if the queue's
    worker serves the skeleton's activities."""
    handle = await start_release(client, queue, key, f"{key}-{new_id('run')}")
    return await finished(client, handle)


async def fresh_release(client: Client, queue: str) -> tuple[RunStats, Histories]:
    """RELEASE on a fresh demo root, for an in-process worker."""
    with demo_settings(DEMO_ROOT=fresh_root()):
        return await release(client, queue)


# --- 1. The happy path against the skeleton --------------------------------------------------


async def happy_path(client: Client, plan: Plan) -> HappyPath:
    say(f"1. happy path: {RELEASE} and its skeleton, {plan.happy_runs} runs each, alternating")
    ours, skeleton = Series(), Series()
    queue, skeleton_queue = new_id("release"), new_id("skeleton")
    drain_metrics()
    REQUESTS.clear()
    release_worker = serving(client, create_worker(client, queue))
    skeleton_worker = serving(client, changed_worker(client, skeleton_queue, skeleton=True))
    async with release_worker, skeleton_worker:
        for _ in range(plan.happy_runs):
            ours.add(await fresh_release(client, queue))
            skeleton.add(await release(client, skeleton_queue))
    say(f"   release {ours.seconds:.2f} s, skeleton {skeleton.seconds:.2f} s")
    return HappyPath(
        release=ours,
        skeleton=skeleton,
        # Only the release's steps heartbeat; the skeleton's do not.
        heartbeats=REQUESTS["RecordActivityTaskHeartbeat"] / plan.happy_runs,
        same_shape=shape(ours.histories[0]) == shape(skeleton.histories[0]),
    )


# --- 2. The critical path: what a hop costs, and experiments ---------------------------------


SANDBOX_OFF = {"workflow_runner": UnsandboxedWorkflowRunner()}
PASSTHROUGH = {
    "workflow_runner": SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
    )
}
NO_EAGER = {"disable_eager_activity_execution": True}
LOCAL = {"changes": StepChanges(local=True)}
# One hop's setups: (id, on the server with its queues read at up to 1000/s, worker settings).
HOP_SETUPS: list[tuple[str, bool, dict[str, Any]]] = [
    ("default", False, {}),
    ("sandbox-off", False, SANDBOX_OFF),
    ("eager-off", False, NO_EAGER),
    ("local-activities", False, LOCAL),
    ("fast-queues", True, {}),
]
# The whole release's variants: (id, skeleton or not, fast queues, worker settings).
VARIANTS: list[tuple[str, bool, bool, dict[str, Any]]] = [
    ("release-fast-queues", False, True, {}),
    ("skeleton-fast-queues", True, True, {}),
    ("release-sandbox-off", False, False, SANDBOX_OFF),
    ("release-passthrough", False, False, PASSTHROUGH),
    ("skeleton-eager-off", True, False, NO_EAGER),
    ("skeleton-no-cache", True, False, {"max_cached_workflows": 0}),
    ("skeleton-local-activities", True, False, LOCAL),
]


async def hop_cost(client: Client, plan: Plan, **settings: Any) -> dict[str, float]:
    """Per-hop milliseconds of SequentialStepsWorkflow ("hop"), and the SDK's split of a hop
    (by metric name)."""
    queue = new_id("hops")
    per_hop = []
    drain_metrics()
    async with serving(client, changed_worker(client, queue, skeleton=True, **settings)):
        for _ in range(plan.chain_runs):
            handle = await client.start_workflow(
                SequentialStepsWorkflow.run, plan.chain_steps, id=new_id("hops"), task_queue=queue
            )
            await handle.result()
            described = await handle.describe()
            assert described.close_time and described.start_time
            elapsed = (described.close_time - described.start_time).total_seconds()
            per_hop.append(elapsed * 1000 / plan.chain_steps)
    values: dict[str, list[float]] = {}
    for update in drain_metrics():
        name = update.metric.name
        if name == "temporal_request_latency":
            name = str(update.attributes.get("operation"))
        if name in HOP_COLUMNS and update.attributes.get("task_queue", queue) == queue:
            values.setdefault(name, []).append(float(update.value))
    return {"hop": median(per_hop), **{name: median(v) for name, v in values.items()}}


async def variant(
    client: Client, plan: Plan, skeleton: bool, settings: dict[str, Any]
) -> dict[str, Any]:
    """One variant of the whole release, run plan.variant_runs times."""
    series, queue = Series(), new_id("variant")
    async with serving(client, changed_worker(client, queue, skeleton=skeleton, **settings)):
        for _ in range(plan.variant_runs):
            series.add(await (release if skeleton else fresh_release)(client, queue))
    return {"seconds": series.seconds, "latencies": task_latencies(series.histories)}


async def critical_path(
    baseline: Client, quick: Client, plan: Plan, happy: HappyPath
) -> dict[str, Any]:
    say(f"2. critical path: {plan.chain_steps} sequential no-op steps, then release variants")
    hops = {}
    for key, faster, settings in HOP_SETUPS:
        hops[key] = await hop_cost(quick if faster else baseline, plan, **settings)
        say(f"   {hops[key]['hop']:6.1f} ms per hop: {key}")
    variants = {}
    for key, skeleton, faster, settings in VARIANTS:
        figures = await variant(quick if faster else baseline, plan, skeleton, settings)
        reference = (happy.skeleton if skeleton else happy.release).seconds
        variants[key] = figures | {"ratio": figures["seconds"] / reference}
        say(f"   {figures['seconds']:5.2f} s ({variants[key]['ratio']:.2f} x): {key}")
    return {"hops": hops, "variants": variants}


# --- 3. The error storm ----------------------------------------------------------------------


def storm_keys() -> list[str]:
    """The catalog's releases that run without a person: the six of the issue."""
    catalog = load_catalog()
    keys = catalog.release_keys()
    return [
        key
        for key in keys
        if (found := load_release(key, catalog=catalog)).approved and not found.gates()
    ]


async def storm_on_process(client: Client, keys: list[str]) -> dict[str, RunStats]:
    """The releases in turn, at DEMO_FAILURES=alot, on a run_worker.py of their own."""
    queue = new_id("storm")
    env = worker_env(client, queue, fresh_root(), DEMO_FAILURES="alot")
    async with worker_processes(env, 1):
        return {key: (await release(client, queue, key))[0] for key in keys}


async def storm_in_process(client: Client, keys: list[str]) -> dict[str, RunStats]:
    """The same with ALTERNATIVE_RETRY on every step (benchmarks/skeleton.StepChanges)."""
    queue = new_id("storm-policy")
    with demo_settings(DEMO_ROOT=fresh_root(), DEMO_FAILURES="alot"):
        async with serving(
            client, changed_worker(client, queue, changes=StepChanges(ALTERNATIVE_RETRY))
        ):
            return {key: (await release(client, queue, key))[0] for key in keys}


async def error_storm(client: Client, plan: Plan) -> dict[str, Any]:
    """Rounds run side by side, each on its own worker and demo root: they mostly wait for
    retries, so they barely slow one another down, and they share the machine's noise."""
    keys = storm_keys()
    say(
        f"3. error storm: {len(keys)} releases in turn at DEMO_FAILURES=alot, "
        f"{plan.storm_rounds} rounds with the current retry policy and "
        f"{plan.storm_alternative_rounds} with no backoff, side by side"
    )
    rounds = await asyncio.gather(
        *(storm_on_process(client, keys) for _ in range(plan.storm_rounds)),
        *(storm_in_process(client, keys) for _ in range(plan.storm_alternative_rounds)),
    )
    current, alternative = rounds[: plan.storm_rounds], rounds[plan.storm_rounds :]
    for name, group in (("current policy", current), ("no backoff", alternative)):
        totals = [sum(run.seconds for run in r.values()) for r in group]
        say(f"   {name}: {', '.join(f'{t:.1f}' for t in totals)} s for the {len(keys)} releases")
    return {"keys": keys, "current": current, "alternative": alternative}


# --- 4. Recovery from a killed worker --------------------------------------------------------


async def paced_release(client: Client, env: dict[str, str], kill_at: float | None) -> dict:
    """One paced release on a worker process; with kill_at, the worker is killed that many
    seconds after the start and a new one started at once."""
    queue = env["DEMO_TASK_QUEUE"]
    async with worker_processes(env, 1) as started:
        handle = await start_release(client, queue, RELEASE, f"{RELEASE}-{new_id('recovery')}")
        restart = None
        if kill_at is not None:
            await asyncio.sleep(kill_at)
            started[0].process.send_signal(signal.SIGKILL)
            await started[0].process.wait()
            began = time.monotonic()
            await start_worker(env, started)
            restart = time.monotonic() - began
        stats, histories = await finished(client, handle)
    return {
        "seconds": stats.seconds,
        "kill_at": kill_at,
        "restart": restart,
        "retried": stats.retries,
        **workflow_task_timeouts(histories),
    }


async def kills(
    client: Client, plan: Plan, fractions: list[float], **settings: str
) -> dict[str, Any]:
    """Paced releases without kills, then one kill in each at these fractions of their time."""

    def env() -> dict[str, str]:
        queue, paced = new_id("recovery"), RECOVERY_STEP_SECONDS
        return worker_env(client, queue, fresh_root(), DEMO_STEP_SECONDS=paced, **settings)

    baselines = [await paced_release(client, env(), None) for _ in range(plan.recovery_baselines)]
    baseline = median([run["seconds"] for run in baselines])
    say(f"   without kills: {baseline:.2f} s")
    killed = []
    for fraction in fractions:
        run = await paced_release(client, env(), round(fraction * baseline, 2))
        run["lost"] = run["seconds"] - baseline
        killed.append(run)
        say(
            f"   killed at {run['kill_at']:.2f} s: {run['seconds']:.2f} s, {run['lost']:.2f} s "
            f"lost (the new worker was ready after {run['restart']:.2f} s)"
        )
    return {"baselines": baselines, "baseline": baseline, "kills": killed}


async def recovery(client: Client, plan: Plan) -> dict[str, Any]:
    say(
        f"4. recovery: {RELEASE} at DEMO_STEP_SECONDS={RECOVERY_STEP_SECONDS} on run_worker.py, "
        f"{plan.recovery_baselines} runs without kills, {plan.recovery_kills} with one kill each"
    )
    fractions = [random.uniform(0.1, 0.9) for _ in range(plan.recovery_kills)]
    current = await kills(client, plan, fractions)
    # The same kills with the heartbeat timeout the demo had before (benchmarks/worker.py).
    earlier = EARLIER_HEARTBEAT_TIMEOUT
    say(f"   again with a {earlier:g} s heartbeat timeout (benchmarks/worker.py)")
    before = await kills(
        client,
        plan,
        fractions,
        BENCH_WORKER_SCRIPT="benchmarks/worker.py",
        BENCH_HEARTBEAT_TIMEOUT=f"{earlier:g}",
    )
    return {"current": current, "earlier": before, "earlier_timeout": earlier}


# --- 5. Scale --------------------------------------------------------------------------------


def scale_root(count: int) -> str:
    """A demo root whose catalog has count generated components (comp-aa, comp-ab, ...) and two
    releases through all four environments: SCALE-3 of the first three, SCALE-<count> of all."""
    project = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    names = [f"comp-{a}{b}" for a in string.ascii_lowercase for b in string.ascii_lowercase]
    names = names[:count]
    catalog = {
        "components": {
            name: {"repository": f"https://git.example.com/scale/{name}.git", "team": "Scale"}
            for name in names
        },
        "environments": project["environments"],
        "releases": [
            {
                "key": f"SCALE-{size}",
                "release_date": "2024-03-01",
                "versions": dict.fromkeys(names[:size], "1.0"),
                "environments": ["DEV", "TEST", "QC", "PROD"],
                "approved": True,
                "approved_by": "make bench",
            }
            for size in (3, count)
        ],
    }
    root = Path(fresh_root())
    (root / "database").mkdir()
    (root / "database" / "catalog.json").write_text(json.dumps(catalog, indent=1))
    return str(root)


async def on_processes(
    client: Client, workers: list[WorkerProcess], run: Awaitable[tuple[RunStats, Histories]]
) -> dict[str, Any]:
    """One release (or skeleton) on worker processes: its figures, and the CPU time the
    workers and the server used meanwhile."""
    pids = [w.process.pid for w in workers]
    server = server_pid(client)
    before = [cpu_seconds(pid) for pid in pids], cpu_seconds(server)
    stats, histories = await run
    return {
        "stats": stats,
        "release_events": len(next(iter(histories.values())).events),
        "worker_cpu": sum(cpu_seconds(pid) for pid in pids) - sum(before[0]),
        "server_cpu": cpu_seconds(server) - before[1],
        "peak_mb": [peak_rss_mb(pid) for pid in pids],
    }


async def scale_setup(
    client: Client, env: dict[str, str], workers: int, count: int, plan: Plan, repeats: int
) -> dict[str, Any]:
    """The small release, then the large one (repeats times), on worker processes started
    with env; the median run (by time) of the large one stands for the setup."""
    queue = env["DEMO_TASK_QUEUE"]
    async with worker_processes(env, workers) as started:
        small = [
            await on_processes(client, started, release(client, queue, "SCALE-3"))
            for _ in range(plan.scale_small_runs)
        ]
        runs = [
            await on_processes(client, started, release(client, queue, f"SCALE-{count}"))
            for _ in range(repeats)
        ]
    large = sorted(runs, key=lambda run: run["stats"].seconds)[len(runs) // 2]
    return {
        "small": small[0],
        "small_seconds": median([run["stats"].seconds for run in small]),
        "small_peak_mb": max(max(run["peak_mb"]) for run in small),
        "large": large | {"all_seconds": [run["stats"].seconds for run in runs]},
    }


# The scale setups: (id, workers, on the server with its queues read at up to 1000/s).
SCALE_SETUPS = [("one-worker", 1, False), ("two-workers", 2, False), ("fast-queues", 1, True)]


async def scale(client: Client, quick: Client, plan: Plan) -> dict[str, Any]:
    count = plan.scale_components
    say(
        f"5. scale: a release of {count} generated components on run_worker.py, 1 then 2 "
        "workers, then 1 on the server with its queues read faster; then its skeleton"
    )
    results: dict[str, Any] = {"components": count}
    for key, workers, faster in SCALE_SETUPS:
        on = quick if faster else client
        env = worker_env(on, new_id("scale"), scale_root(count))
        repeats = plan.scale_large_runs if key == "one-worker" else 1
        results[key] = found = await scale_setup(on, env, workers, count, plan, repeats)
        large = found["large"]
        say(
            f"   {key}: 3 components {found['small_seconds']:.1f} s, {count} components "
            f"{large['stats'].seconds:.1f} s, peak RSS {max(large['peak_mb']):.0f} MB"
        )
    # The floor at this size, on a worker process too: Temporal's own cost for the shape.
    queue = new_id("scale-skeleton")
    env = worker_env(client, queue, scale_root(count), BENCH_SKELETON="1")
    async with worker_processes(env | {"BENCH_WORKER_SCRIPT": "benchmarks/worker.py"}, 1) as ws:
        results["skeleton"] = await on_processes(
            client, ws, release(client, queue, f"SCALE-{count}")
        )
    say(f"   skeleton: {results['skeleton']['stats'].seconds:.1f} s")
    return results


# --- Main ------------------------------------------------------------------------------------


PHASES = ("happy", "critical", "storm", "recovery", "scale")


async def measure(plan: Plan, phases: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "plan": plan}
    async with dev_server() as baseline, dev_server(*FAST_QUEUES) as quick:
        if "happy" in phases or "critical" in phases:
            results["happy"] = await happy_path(baseline.client, plan)
        if "critical" in phases:
            results["critical"] = await critical_path(
                baseline.client, quick.client, plan, results["happy"]
            )
        if "storm" in phases:
            results["storm"] = await error_storm(baseline.client, plan)
        if "recovery" in phases:
            results["recovery"] = await recovery(baseline.client, plan)
    if "scale" in phases:
        # Fresh servers: at this size the server's CPU is what runs out, so nothing that came
        # before may weigh on it.
        async with dev_server() as baseline, dev_server(*FAST_QUEUES) as quick:
            results["scale"] = await scale(baseline.client, quick.client, plan)
    results["machine"]["load_after"] = os.getloadavg()
    return results


def arguments() -> tuple[Plan, list[str]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: fewer repetitions; prints only"
    )
    parser.add_argument(
        "--only",
        default=",".join(PHASES),
        help=f"some of {','.join(PHASES)} (prints only, unless all are run)",
    )
    args = parser.parse_args()
    phases = args.only.split(",")
    if unknown := set(phases) - set(PHASES):
        parser.error(f"no such measurement: {', '.join(sorted(unknown))}")
    return QUICK_PLAN if args.quick else Plan(), phases


async def main() -> int:
    plan, phases = arguments()
    # The in-process workers' steps log each injected failure: expected here, and many.
    for name in ("temporalio.activity", "temporalio.workflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in [name for name in os.environ if name.startswith("DEMO_")]:
        os.environ.pop(name)
    os.environ.update(DEMO_STEP_SECONDS="0", DEMO_FAILURES="off")
    global STATE_DIR
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as state:
        STATE_DIR = state
        results = await measure(plan, phases)
    results["minutes"] = (time.monotonic() - started) / 60
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tables = render(results)
    if plan != Plan() or set(phases) != set(PHASES):
        print("\n\n".join(f"<!-- measured: {key} -->\n{text}" for key, text in tables.items()))
        return 0
    RESULTS.write_text(fill(RESULTS.read_text(), tables))
    say(f"filled the tables of {RESULTS.relative_to(PROJECT_DIR)} ({results['minutes']:.1f} min)")
    return 0


if __name__ == "__main__":
    exit_now(asyncio.run(main()))
