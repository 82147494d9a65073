"""Workers with what benchmarks/run.py changes in run_worker.create_worker's, in this process or
as run_worker.py with the same changes, set by environment variables:

    BENCH_HEARTBEAT_TIMEOUT=2 .venv/bin/python benchmarks/worker.py   (recovery, as it was)
    BENCH_SKELETON=1 .venv/bin/python benchmarks/worker.py            (the skeleton at scale)

BENCH_HEARTBEAT_TIMEOUT gives every step that heartbeat timeout (benchmarks/skeleton.StepChanges)
and the activities a heartbeat interval of a quarter of it. BENCH_SKELETON registers the no-op
activities of benchmarks/skeleton.py instead of the real ones. Everything else is run_worker.py's
main(), unchanged.
"""

import asyncio
import os
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

import activities  # noqa: E402
import run_worker  # noqa: E402
from benchmarks.skeleton import SKELETON_ACTIVITIES, SKELETON_WORKFLOWS, StepChanges  # noqa: E402
from connection import exit_now  # noqa: E402
from shared import TASK_QUEUE  # noqa: E402
from versioning import deployment_config  # noqa: E402

_create_worker = run_worker.create_worker
_settings: list[dict[str, Any]] = []


def changed_worker(
    client: Client,
    task_queue: str,
    *,
    skeleton: bool = False,
    changes: StepChanges | None = None,
    **settings: Any,
) -> Worker:
    """run_worker.create_worker's worker on task_queue, serving the skeleton's activities (and
    SequentialStepsWorkflow) if skeleton, its steps changed by changes, and settings (Worker
    arguments) overriding any of its own."""
    if not _settings:  # read from a worker that never runs, on a queue of its own
        _settings.append(dict(_create_worker(client, f"bench-{uuid.uuid4()}").config()))
    config = {**_settings[0], "client": client, "task_queue": task_queue, **settings}
    config["deployment_config"] = deployment_config(task_queue)
    if skeleton:
        config |= {"workflows": SKELETON_WORKFLOWS, "activities": SKELETON_ACTIVITIES}
    if changes:
        config["interceptors"] = [*config.get("interceptors", []), changes]
    return Worker(**config)


def worker_from_environment(client: Client, task_queue: str = TASK_QUEUE) -> Worker:
    """What run_worker.py's main() builds, with the changes BENCH_* variables ask for."""
    changes = None
    if timeout := os.environ.get("BENCH_HEARTBEAT_TIMEOUT"):
        changes = StepChanges(heartbeat_timeout=timedelta(seconds=float(timeout)))
        activities.HEARTBEAT_SECONDS = float(timeout) / 4
    skeleton = bool(os.environ.get("BENCH_SKELETON"))
    return changed_worker(client, task_queue, skeleton=skeleton, changes=changes)


if __name__ == "__main__":
    run_worker.create_worker = worker_from_environment
    exit_now(asyncio.run(run_worker.main(run_worker.parse_args(sys.argv[1:]))))
