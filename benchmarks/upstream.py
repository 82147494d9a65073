"""This project's release against the upstream demo it re-imagines, side by side (issue 26).

    git clone https://github.com/joshmsmith/temporal-release-orchestrator-demo-python ../upstream
    .venv/bin/python benchmarks/upstream.py ../upstream [--pairs N]

The upstream demo is extracted from a clone of it (its HEAD) into a temp folder at run time and
imported from there, never copied into this project. One plain dev server (default dynamic
config: queues read 20 times a second) holds two namespaces: this project's worker serves
"default", a worker of upstream's workflows and activities (as its run_worker.py lists them)
serves "upstream", both in this process. Each side
runs RELEASE-NOV-23-INITIAL unpaced and without injected failures: one warm-up each, then N
pairs, each pair's order swapped from the last. A release's time is the server's: its last
history event minus its first. Prints each pair's times and ratio (ours/upstream), the medians,
and each side's workflows and history events per release.
"""

import argparse
import asyncio
import importlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
# Run as a script, this file sees benchmarks/ on sys.path, not the project it measures.
sys.path.insert(0, str(PROJECT_DIR))

from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

import search_attributes  # noqa: E402
from benchmarks.histories import RunStats, median, run_stats  # noqa: E402
from benchmarks.run import RELEASE, RUN_TIMEOUT, finished, new_id, start_release  # noqa: E402
from connection import exit_now  # noqa: E402
from run_worker import create_worker, serving  # noqa: E402
from scripts.dev_server import temporal_cli_or_exit  # noqa: E402
from scripts.record_histories import demo_settings, fetch_run  # noqa: E402

NAMESPACE = "upstream"
QUEUE = "release-task-queue"  # upstream's own
# Upstream's modules that share a name with one of this project's: in one process, each needs a
# name of its own, so the temp copy's files are renamed upstream_<name> and their imports too.
CLASHING = ("workflows", "activities", "utils", "release_management")
# Upstream's modules call coloredlogs.install(); coloredlogs is not installed here, and only
# colours log lines, so the temp folder gets a module of that name that does nothing.
COLOREDLOGS_SHIM = "def install(*args, **kwargs):\n    pass\n"
# Its utils.py injects failures at random (isErrorRarely and the like): the temp copy's is
# rewritten so that none ever does.
NO_FAILURES = "".join(
    f"def {name}():\n    return False\n\n\n"
    for name in ("isErrorRarely", "isErrorSometimes", "isErrorALot")
)
COUNTED = ("workflows", "events", "retries")  # of RunStats: retries shows none were injected
Side = Callable[[], Awaitable[RunStats]]  # one release of one side
Row = tuple[str, RunStats, RunStats]  # which side ran first, ours, upstream's


class Upstream:
    """The upstream demo, extracted into folder and imported from there."""

    def __init__(self, mirror: Path, folder: Path) -> None:
        archive = subprocess.run(
            ["git", "-C", str(mirror), "archive", "HEAD"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        (folder / "coloredlogs.py").write_text(COLOREDLOGS_SHIM)
        (folder / "utils.py").write_text(NO_FAILURES)
        # What its worker serves: the names its run_worker.py imports, before they are renamed.
        listed = re.findall(
            r"^from (\w+) import (\w+)$", (folder / "run_worker.py").read_text(), re.M
        )
        clashing = "|".join(CLASHING)
        for path in folder.glob("*.py"):
            text = path.read_text()
            text = re.sub(
                rf"(?m)^(\s*)from ({clashing}) import", r"\1from upstream_\2 import", text
            )
            text = re.sub(rf"(?m)^(\s*)import ({clashing})$", r"\1import upstream_\2 as \2", text)
            path.unlink()
            (folder / f"{'upstream_' * (path.stem in CLASHING)}{path.stem}.py").write_text(text)
        sys.path.append(str(folder))
        modules = {name: importlib.import_module(f"upstream_{name}") for name in CLASHING}
        for module in modules.values():  # none of this project's modules may have crept in
            for value in vars(module).values():
                if isinstance(value, ModuleType) and value.__name__ in CLASHING:
                    raise SystemExit(f"{module.__name__} imported this project's {value}")
        # Its build and deploys write ./environments/<place>/, which it does not ship: made here,
        # and the benchmark runs in this folder (upstream's releases then run as its README says).
        for place in ("artifactory", "DEV", "TEST", "QC", "PROD"):  # its release_management's
            (folder / "environments" / place).mkdir(parents=True)
        self.workflows = [getattr(modules[m], n) for m, n in listed if m == "workflows"]
        self.activities = [getattr(modules[m], n) for m, n in listed if m == "activities"]
        self.release_class = importlib.import_module("release_dataclasses").ReleaseInfo
        self.release_workflow: Any = modules["workflows"].ReleaseWorkflow

    async def release(self, client: Client) -> RunStats:
        """RELEASE as upstream's run_workflow.py starts it, under a workflow ID of its own."""
        info = self.release_class(
            release_key=RELEASE,
            release_date="2023-11-15",
            approved=True,
            approved_by="benchmarks/upstream.py",
            deploys=[],
        )
        handle = await client.start_workflow(
            self.release_workflow.run,
            info,
            id=f"release-workflow:{RELEASE}:{new_id('upstream')}",
            task_queue=QUEUE,
        )
        result = await asyncio.wait_for(handle.result(), RUN_TIMEOUT)
        if not str(result).endswith("SUCCESS"):
            raise SystemExit(f"{handle.id}: {result}")
        return run_stats(handle.id, await fetch_run(client, handle.id))


async def release(client: Client, queue: str, state: Path) -> RunStats:
    """RELEASE on this project's worker, on a fresh demo root."""
    with demo_settings(DEMO_ROOT=tempfile.mkdtemp(prefix="ours-", dir=state)):
        handle = await start_release(client, queue, RELEASE, f"{RELEASE}-{new_id('ours')}")
        stats, _ = await finished(client, handle)
    return stats


async def alternately(ours: Side, theirs: Side, pairs: int) -> list[Row]:
    """A warm-up of each side (not counted), then pairs, which side runs first swapped each time."""
    await ours()
    await theirs()
    rows = []
    for pair in range(pairs):
        order = [ours, theirs] if pair % 2 == 0 else [theirs, ours]
        runs = {side: await side() for side in order}
        rows.append(("ours" if pair % 2 == 0 else "upstream", runs[ours], runs[theirs]))
        print(f"pair {pair + 1}: ours {ms(runs[ours]):.0f} ms, upstream {ms(runs[theirs]):.0f} ms")
    return rows


async def measure(pairs: int, mirror: Path) -> list[Row]:
    """Both sides' workers on one dev server, in this process, and their releases alternately."""
    for name in [name for name in os.environ if name.startswith("DEMO_")]:
        os.environ.pop(name)
    queue = new_id("upstream-pairs")
    with tempfile.TemporaryDirectory(prefix="upstream-bench-") as temp:
        state, code = Path(temp), Path(temp) / "upstream"
        code.mkdir()
        upstream = Upstream(mirror, code)
        os.chdir(code)
        async with await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli_or_exit("benchmarks/upstream.py"),
            data_converter=pydantic_data_converter,
            dev_server_extra_args=["--namespace", NAMESPACE],
            dev_server_log_level="error",
            search_attributes=search_attributes.ALL,
        ) as server:
            client = server.client
            theirs = Client(client.service_client, namespace=NAMESPACE)  # dataclasses: default
            worker = Worker(
                theirs,
                task_queue=QUEUE,
                workflows=upstream.workflows,
                activities=upstream.activities,
            )
            with demo_settings(DEMO_TASK_QUEUE=queue, DEMO_STEP_SECONDS="0", DEMO_FAILURES="off"):
                async with serving(client, create_worker(client, queue)), worker:
                    rows = await alternately(
                        lambda: release(client, queue, state),
                        lambda: upstream.release(theirs),
                        pairs,
                    )
        os.chdir(PROJECT_DIR)
    return rows


def ms(run: RunStats) -> float:
    return run.seconds * 1000


def report(rows: list[Row]) -> None:
    print(f"\n{'pair':<5} {'first':<9} {'ours ms':>8} {'upstream ms':>12} {'ratio':>6}")
    for pair, (first, mine, up) in enumerate(rows, 1):
        print(f"{pair:<5} {first:<9} {ms(mine):8.0f} {ms(up):12.0f} {ms(mine) / ms(up):6.2f}")
    ratio = median([ms(mine) / ms(up) for _, mine, up in rows])
    ours, theirs = [row[1] for row in rows], [row[2] for row in rows]
    print(f"{'median':<15} {median([ms(r) for r in ours]):8.0f} ", end="")
    print(f"{median([ms(r) for r in theirs]):12.0f} {ratio:6.2f}")
    print(f"\nMedian ratio ours/upstream: {ratio:.2f} (server times, {len(rows)} pairs)")
    for side, runs in (("ours", ours), ("upstream", theirs)):
        counts = {what: sorted({getattr(run, what) for run in runs}) for what in COUNTED}
        print(f"{side}: per release, " + ", ".join(f"{n} {v}" for n, v in counts.items()))


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="pairs of runs (default 5)")
    parser.add_argument("clone", type=Path, help="a git clone of the upstream demo")
    return parser.parse_args()


if __name__ == "__main__":
    args = arguments()
    report(asyncio.run(measure(args.pairs, args.clone.resolve())))
    exit_now(0)
