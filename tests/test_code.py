"""The core's own house rules, checked (the core: the demo's modules, outside tests/, scripts/
and benchmarks/)."""

import ast
import importlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from versioning import deployment_config

PROJECT_DIR = Path(__file__).resolve().parents[1]
CORE = sorted(PROJECT_DIR.glob("*.py"))
MAX_FUNCTION_LINES = 40


def test_the_core_is_the_modules_the_readme_lays_out() -> None:
    layout = (PROJECT_DIR / "README.md").read_text().split("## Layout", 1)[1]
    assert CORE and all(f"\n{path.name} " in layout for path in CORE)


def test_no_function_in_the_core_is_over_40_lines() -> None:
    """A function reads in one screen: docstring included, at most MAX_FUNCTION_LINES lines."""
    long = [
        f"{path.name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in CORE
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"split these: {', '.join(long)}"


@pytest.mark.parametrize(
    "module",
    [
        "release_management.py",
        "rollback.py",
        "artifacts.py",
        "catalog.py",
        "files.py",
        "ledger.py",
        "records.py",
    ],
)
def test_the_release_system_knows_nothing_of_temporal(module: str) -> None:
    """The release system is plain Python: the demo wraps it, it does not depend on the demo."""
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse((PROJECT_DIR / module).read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert "temporalio" not in imported
    assert not imported & {
        "activities",
        "workflows",
        "locks",
        "gates",
        "run_worker",
        "run_workflow",
    }
    # Nor through what it imports: imported alone, it loads no module of the SDK.
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module[:-3]}; print('temporalio' in sys.modules)"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "False", f"importing {module} loads the Temporal SDK"


def test_the_benchmarks_skeleton_has_a_no_op_for_every_activity() -> None:
    """benchmarks/skeleton.py refuses to import while an activity of activities.py has no no-op
    there (the skeleton's release would wait for it forever): `make bench` would fail at once."""
    importlib.import_module("benchmarks.skeleton")


async def test_the_benchmarks_skeleton_s_workflows_pass_the_sandbox(client: Client) -> None:
    """A worker of the skeleton validates its workflows in the sandbox when it is built: a module
    they import outside imports_passed_through that is not deterministic fails it (`make bench`
    would fail at its first step)."""
    from benchmarks.skeleton import SKELETON_ACTIVITIES, SKELETON_WORKFLOWS

    queue = f"skeleton-{uuid.uuid4()}"
    Worker(
        client,
        task_queue=queue,
        workflows=SKELETON_WORKFLOWS,
        activities=SKELETON_ACTIVITIES,
        deployment_config=deployment_config(queue),
    )
