"""run_worker.py with what benchmarks/run.py changes in it, set by environment variables.

    BENCH_HEARTBEAT_TIMEOUT=2 .venv/bin/python benchmarks/worker.py   (recovery, as it was)
    BENCH_SKELETON=1 .venv/bin/python benchmarks/worker.py            (the skeleton at scale)

BENCH_HEARTBEAT_TIMEOUT sets workflows.STEP_HEARTBEAT_TIMEOUT to that many seconds and the
activities' heartbeat interval to a quarter of it; the workflows then run unsandboxed, since
the sandbox would re-import workflows.py and take its timeout from the file (every worker of a
measured release must be this one). BENCH_SKELETON serves benchmarks/skeleton.py's workflows
and steps instead of the release's. Everything else is run_worker.py's main(), unchanged.
"""

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

import activities  # noqa: E402
import run_worker  # noqa: E402
import workflows  # noqa: E402
from benchmarks.skeleton import SKELETON_ACTIVITIES, SKELETON_WORKFLOWS  # noqa: E402
from connection import exit_now  # noqa: E402


def changed_worker(*args: Any, **settings: Any) -> Worker:
    """What run_worker.create_worker builds, with the benchmark's changes."""
    if "BENCH_HEARTBEAT_TIMEOUT" in os.environ:
        settings["workflow_runner"] = UnsandboxedWorkflowRunner()
    if os.environ.get("BENCH_SKELETON"):
        settings |= {"workflows": SKELETON_WORKFLOWS, "activities": SKELETON_ACTIVITIES}
    return Worker(*args, **settings)


if __name__ == "__main__":
    if "BENCH_HEARTBEAT_TIMEOUT" in os.environ:
        timeout = float(os.environ["BENCH_HEARTBEAT_TIMEOUT"])
        workflows.STEP_HEARTBEAT_TIMEOUT = timedelta(seconds=timeout)
        activities.HEARTBEAT_SECONDS = timeout / 4
    run_worker.Worker = changed_worker
    exit_now(asyncio.run(run_worker.main()))
