"""run_worker.py with a shorter heartbeat timeout, for benchmarks/run.py's recovery experiment.

    BENCH_HEARTBEAT_TIMEOUT=1 .venv/bin/python benchmarks/tuned_worker.py

Sets workflows.STEP_HEARTBEAT_TIMEOUT to BENCH_HEARTBEAT_TIMEOUT seconds and activities'
heartbeat interval to a quarter of it, then runs run_worker.py's main() unchanged otherwise.
The workflows run unsandboxed here, since the sandbox would re-import workflows.py and its
timeout from the file; every worker of a measured release must be this one.
"""

import asyncio
import functools
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

import activities  # noqa: E402
import run_worker  # noqa: E402
import workflows  # noqa: E402
from utils import exit_now  # noqa: E402

if __name__ == "__main__":
    timeout = float(os.environ["BENCH_HEARTBEAT_TIMEOUT"])
    workflows.STEP_HEARTBEAT_TIMEOUT = timedelta(seconds=timeout)
    activities.HEARTBEAT_SECONDS = timeout / 4
    run_worker.Worker = functools.partial(Worker, workflow_runner=UnsandboxedWorkflowRunner())
    exit_now(asyncio.run(run_worker.main()))
