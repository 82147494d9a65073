"""Durability, proven with real processes: a release finishes, with every change made exactly
once, when its worker is killed (kill -9) at any point, when one of two workers dies for good,
and when the Temporal server itself restarts.

Ctrl+C on a worker mid-release (it stops within a few seconds with exit status 0, and the next
worker finishes the release) is proven in test_scripts.py by
test_ctrl_c_mid_release_and_the_next_worker_finishes_it.

Each test runs RELEASE-NOV-23-INITIAL (every component at 1.0 through DEV, TEST, QC and PROD)
from a fresh demo root, paced so that there is time to kill things in the middle.
"""

import asyncio
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Awaitable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from handles import timers
from processes import (
    ALL_ENVS,
    COMPONENTS,
    PROJECT_DIR,
    RAW_CORE_LOG,
    RELEASE_TIMEOUT,
    Finished,
    Running,
    environments_table,
    finish_release,
    free_port,
    holding,
    in_background,
    kill,
    run_starter,
    running_worker,
    start_dev_server,
    stop,
    terminal_env,
    wait_for_output,
)

KEY = "RELEASE-NOV-23-INITIAL"
VERSION = "1.0"
# Slow enough to kill a worker in the middle of a step, fast enough for a ~10 s release.
PACED = {"DEMO_STEP_SECONDS": "0.3", "DEMO_FAILURES": "off"}
# The goal is 3 s or less per kill (heartbeat and workflow task timeouts of 2 s, a sticky queue
# timeout of 1 s). Timing goals belong in benchmarks; this bound only catches a regression to
# timeouts of 10 s, the server's defaults.
SANITY_SECONDS_PER_KILL = 15.0
# A soak TEST gets in the soak test, long enough to kill and restart the worker during it.
SOAK_SECONDS = 3
# How long the server stays away when it restarts: long enough for the SDK core to log its
# retries (from the fifth on), which the scripts must tell in one line each way.
AWAY_SECONDS = 5.0

T = TypeVar("T")


@dataclass(frozen=True)
class KillPoint:
    """Where in the release to kill the worker: once the step named `step` of the frontend's
    deployment to `env` runs on the worker (started, not finished), or else once the worker has
    logged `after`."""

    where: str
    env: str = ""
    step: str = ""
    after: str = ""


KILL_POINTS = (
    KillPoint("while the DEV builds run", env="DEV", step="build_artifact"),
    KillPoint("while the TEST deploys run", env="TEST", step="deploy_artifact"),
    KillPoint("as QC is done and PROD begins", after=f"{KEY}: QC done"),
)

# A step's retry, as the worker logs it: "KEY TEST frontend: deploy 1.0: retrying (attempt 2)".
RETRIED = re.compile(rf"{KEY} (\w+ [\w-]+: [\w ]+) {re.escape(VERSION)}: retrying")


async def reach(point: KillPoint, worker: Running, client: Client) -> None:
    """Wait until the release is where point says (fail the test if it never gets there)."""
    if point.after:
        await wait_for_output(worker, point.after, RELEASE_TIMEOUT)
        return
    deployment = client.get_workflow_handle(f"{KEY}.{point.env}.frontend")
    deadline = time.monotonic() + RELEASE_TIMEOUT
    while time.monotonic() < deadline:
        with suppress(RPCError):  # the deployment has not started yet
            pending = (await deployment.describe()).raw_description.pending_activities
            if any(
                step.activity_type.name == point.step
                and step.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                for step in pending
            ):
                return
        await asyncio.sleep(0.02)
    pytest.fail(f"{point.step} never ran in {point.env}:\n{worker.text}")


async def first_to_print(workers: tuple[Running, ...], text: str) -> Running:
    """The first of the workers to print text (fails the test if none does in time)."""
    waits = {asyncio.ensure_future(wait_for_output(w, text, RELEASE_TIMEOUT)): w for w in workers}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finished = done.pop()
        finished.result()  # a failure to print it fails the test here
        return waits[finished]
    finally:
        for wait in waits:
            wait.cancel()


async def before_the_starter_ends(starter: asyncio.Task[Finished], waiting: Awaitable[T]) -> T:
    """Await waiting; should the release end first, fail at once with what the starter said."""
    wait = asyncio.ensure_future(waiting)
    try:
        await asyncio.wait({wait, starter}, return_when=asyncio.FIRST_COMPLETED)
        if wait.done():
            return wait.result()
    finally:
        wait.cancel()
    ended = starter.result()
    pytest.fail(f"the starter ended first, exit status {ended.code}:\n{ended.stdout}{ended.stderr}")


def server_address(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def fresh_root(path: Path) -> Path:
    path.mkdir()
    return path


# A change as the ledger names it: (step, env or None for a build, component, version).
Change = tuple[str, str | None, str, str]


def expected_changes() -> Counter[Change]:
    """(step, env, component, version) of every change the release makes, once each: a build
    per component, and a deploy and a configure per component and environment (27 in all)."""
    builds: list[Change] = [("build", None, component, VERSION) for component in COMPONENTS]
    per_env: list[Change] = [
        (step, env, component, VERSION)
        for step in ("deploy", "configure")
        for env in ALL_ENVS
        for component in COMPONENTS
    ]
    return Counter(builds + per_env)


def assert_released_once(done: Finished, demo_root: Path) -> None:
    """The starter reported SUCCESS; every environment holds 1.0 of every component, with a
    config naming it; the ledger holds each of the release's changes exactly once, from one
    run; no temp file is left behind."""
    assert done.code == 0, done.stdout + done.stderr
    assert f"Result: Release {KEY}: SUCCESS" in done.stdout
    assert environments_table(done.stdout) == holding((VERSION,) * 3, *ALL_ENVS)

    assert sorted(demo_root.rglob("*.tmp")) == []
    assert sorted(p.name for p in (demo_root / "artifactory").iterdir()) == sorted(
        f"{component}-{VERSION}.txt" for component in COMPONENTS
    )
    for env in ALL_ENVS:
        folder = demo_root / "environments" / env
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"{component}-{VERSION}.txt" for component in COMPONENTS]
            + [f"{component}.config.json" for component in COMPONENTS]
        )
        for component in COMPONENTS:
            config = json.loads((folder / f"{component}.config.json").read_text())
            assert (config["component"], config["version"], config["environment"]) == (
                component,
                VERSION,
                env,
            )

    ledger = [
        json.loads(line)
        for line in (demo_root / "database" / "ledger.jsonl").read_text().splitlines()
    ]
    assert {line["release_key"] for line in ledger} == {KEY}
    assert len({line["run_id"] for line in ledger}) == 1, "one release run made every change"
    changes = Counter(
        (line["run_id"], line["step"], line["env"], line["component"], line["version"])
        for line in ledger
    )
    assert {change: n for change, n in changes.items() if n > 1} == {}, "a change made twice"
    made = Counter((step, env, component, version) for _, step, env, component, version in changes)
    assert made == expected_changes()


def assert_outage_told_once(output: str) -> None:
    """A script's output over a server restart: one line when the connection was lost, one when
    it is back, no other line from the SDK, and none of the SDK core's raw log lines."""
    assert not any(mark in output for mark in RAW_CORE_LOG), output
    assert output.count("Lost the connection to Temporal") == 1, output
    assert output.count("is back.") == 1, output
    assert "Temporal SDK:" not in output, output


def assert_no_traceback(*workers: Running) -> None:
    for worker in workers:
        assert "Traceback" not in worker.text, worker.text


async def test_kill_9_of_the_worker_at_any_point_costs_seconds_and_changes_nothing_twice(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    workers: list[Running] = []
    try:
        # The same release without kills, on its own demo root and task queue: the yardstick.
        calm_root = fresh_root(tmp_path / "calm")
        calm_env = terminal_env(server_address(env), calm_root, **PACED)
        async with running_worker(calm_env) as calm_worker:
            calm = await run_starter(calm_env, KEY)
        assert_released_once(calm, calm_root)

        killed_root = fresh_root(tmp_path / "killed")
        killed_env = terminal_env(server_address(env), killed_root, **PACED)
        async with AsyncExitStack() as stack:
            worker = await stack.enter_async_context(running_worker(killed_env))
            workers.append(worker)
            async with in_background(run_starter(killed_env, KEY)) as starter:
                for point in KILL_POINTS:
                    await before_the_starter_ends(starter, reach(point, worker, env.client))
                    await kill(worker.process)
                    # A new worker, right away, as a supervisor (systemd, Kubernetes) would.
                    worker = await stack.enter_async_context(running_worker(killed_env))
                    workers.append(worker)
                killed = await asyncio.wait_for(starter, RELEASE_TIMEOUT)
    finally:
        await finish_release(env.client, KEY)

    assert_released_once(killed, killed_root)
    assert f"{KEY}: SUCCESS" in workers[-1].text
    assert_no_traceback(calm_worker, *workers)
    for point, successor in zip(KILL_POINTS, workers[1:], strict=True):
        retried = RETRIED.findall(successor.text)
        print(f"killed the worker {point.where}; the next one retried: {', '.join(retried) or '-'}")
    lost = (killed.seconds - calm.seconds) / len(KILL_POINTS)
    print(
        f"time lost per worker kill: {lost:.1f} s ({len(KILL_POINTS)} kills; the release took "
        f"{calm.seconds:.1f} s without kills, {killed.seconds:.1f} s with them)"
    )
    assert lost < SANITY_SECONDS_PER_KILL


async def test_a_soak_outlasts_a_killed_worker_and_holds_the_next_environment_back(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A soak is a timer the server keeps: the worker killed during it, and back a second later,
    the release goes on when the soak ends, not later, and not sooner."""
    demo_root = fresh_root(tmp_path / "demo")
    catalog = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    catalog["environments"]["TEST"]["soak_seconds"] = SOAK_SECONDS
    (demo_root / "database").mkdir()
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))
    script_env = terminal_env(server_address(env), demo_root, DEMO_STEP_SECONDS="0")
    try:
        async with AsyncExitStack() as stack:
            worker = await stack.enter_async_context(running_worker(script_env))
            async with in_background(run_starter(script_env, KEY)) as starter:
                soaking = f"{KEY}: soaking TEST for {SOAK_SECONDS} s"
                await before_the_starter_ends(
                    starter, wait_for_output(worker, soaking, RELEASE_TIMEOUT)
                )
                await kill(worker.process)
                await asyncio.sleep(1)
                await stack.enter_async_context(running_worker(script_env))
                done = await asyncio.wait_for(starter, RELEASE_TIMEOUT)
    finally:
        await finish_release(env.client, KEY)

    assert_released_once(done, demo_root)
    # The files: QC was deployed a soak after TEST was.
    deployed = {
        e: [p.stat().st_mtime for p in (demo_root / "environments" / e).glob("*.txt")]
        for e in ("TEST", "QC")
    }
    # Not sooner than the soak, and not later than the soak and the worker's restart allow.
    assert SOAK_SECONDS <= min(deployed["QC"]) - max(deployed["TEST"]) < SOAK_SECONDS + 10
    # The history: one timer, named for the soak, that ran its time and no longer.
    (soak,) = await timers(env.client, KEY)
    assert soak.summary == f"soak TEST for {SOAK_SECONDS} s" and soak.fired is not None
    assert SOAK_SECONDS <= (soak.fired - soak.started).total_seconds() < SOAK_SECONDS + 1


async def test_when_one_of_two_workers_dies_the_other_finishes_the_release(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    demo_root = fresh_root(tmp_path / "demo")
    script_env = terminal_env(server_address(env), demo_root, **PACED)
    try:
        async with running_worker(script_env) as one, running_worker(script_env) as two:
            async with in_background(run_starter(script_env, KEY)) as starter:
                # Kill the worker running the release workflow itself, mid-release.
                victim = await before_the_starter_ends(
                    starter, first_to_print((one, two), f"{KEY}: promoting to TEST")
                )
                await kill(victim.process)
                done = await asyncio.wait_for(starter, RELEASE_TIMEOUT)
            survivor = two if victim is one else one
            assert survivor.process.returncode is None
    finally:
        await finish_release(env.client, KEY)

    print(f"release with one of two workers killed: {done.seconds:.1f} s")
    assert_released_once(done, demo_root)
    assert f"{KEY}: SUCCESS" in survivor.text
    assert f"{KEY}: SUCCESS" not in victim.text
    assert_no_traceback(one, two)


async def test_release_rides_out_a_restart_of_the_server(tmp_path: Path) -> None:
    """The dev server as `make demo` runs it, history in a SQLite file: stopped mid-release and
    started again on the same file and port, seconds later. The worker and the starter wait for
    it, and each tells the outage in one line when it begins and one when it ends."""
    port = free_port()
    db_file = tmp_path / "dev.sqlite"
    server_log = tmp_path / "server.log"
    demo_root = fresh_root(tmp_path / "demo")
    script_env = terminal_env(f"127.0.0.1:{port}", demo_root, **PACED)
    server = await start_dev_server(db_file, port, server_log)
    try:
        async with running_worker(script_env) as worker:
            async with in_background(run_starter(script_env, KEY)) as starter:
                await before_the_starter_ends(
                    starter, wait_for_output(worker, f"{KEY}: promoting to TEST", RELEASE_TIMEOUT)
                )
                stopped = time.monotonic()
                code = await stop(server, signal.SIGTERM)
                await asyncio.sleep(AWAY_SECONDS)
                server = await start_dev_server(db_file, port, server_log)
                away = time.monotonic() - stopped
                print(f"server stopped (exit status {code}) and back after {away:.1f} s")
                done = await asyncio.wait_for(starter, RELEASE_TIMEOUT)
            assert worker.process.returncode is None, "the worker died while the server was away"
            assert await stop(worker.process) == 0
    finally:
        await stop(server, signal.SIGTERM)

    print(f"release with a server restart: {done.seconds:.1f} s")
    assert_released_once(done, demo_root)
    assert f"{KEY}: SUCCESS" in worker.text
    assert_no_traceback(worker)
    assert_outage_told_once(worker.text)
    assert_outage_told_once(done.stdout + done.stderr)
