"""One real Temporal dev server for the whole test session (for each pytest-xdist worker, under
`make test`); each test gets its own demo root (DEMO_ROOT in a temp folder) and its own task
queue and worker."""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from mocked import Mocked, mocked_worker
from processes import temporal_cli
from run_worker import create_worker, serving
from scripts.dev_server import FAST_QUEUES, PRECISE_TIMERS, QUICK_DRAINAGE
from search_attributes import ALL as SEARCH_ATTRIBUTES

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        data_converter=pydantic_data_converter,
        # Faster queue reads dispatch each step and each retry sooner: they keep `make test`
        # within its time, and nothing tested here depends on them; a drained version is said
        # so in seconds (test_worker_versioning.py). (The servers that
        # tests/processes.py starts are left as `make demo` starts one.)
        dev_server_extra_args=[*PRECISE_TIMERS, *FAST_QUEUES, *QUICK_DRAINAGE],
        search_attributes=SEARCH_ATTRIBUTES,  # as `make demo` registers them
    ) as environment:
        yield environment


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture
def demo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty demo root; no pacing and no injected failures unless a test asks."""
    monkeypatch.setenv("DEMO_ROOT", str(tmp_path))
    monkeypatch.setenv("DEMO_STEP_SECONDS", "0")
    monkeypatch.setenv("DEMO_FAILURES", "off")
    return tmp_path


@pytest.fixture
async def task_queue(client: Client, demo_root: Path) -> AsyncIterator[str]:
    """A task queue of this test's own, with a real worker polling it."""
    queue = f"test-{uuid.uuid4()}"
    async with serving(client, create_worker(client, queue)):
        yield queue


@pytest.fixture
async def mocked(client: Client) -> AsyncIterator[Mocked]:
    """The real workflows with mocked steps (tests/mocked.py), on a task queue of its own."""
    async with mocked_worker(client) as harness:
        yield harness


# The scripts' bad-input tests (issue 11), in test_run_workflow, test_connection and test_utils.


@pytest.fixture
def script_env(tmp_path: Path) -> dict[str, str]:
    """A user's terminal pointed at an address where no server answers: every refusal here must
    come before the scripts connect (else they would say they cannot reach Temporal)."""
    from processes import terminal_env  # imported here: this block stands apart from the above

    demo_root = tmp_path / "demo"
    demo_root.mkdir()
    return terminal_env("127.0.0.1:1", demo_root)
