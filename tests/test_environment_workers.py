"""One worker per environment (issue 23), on the session's dev server, with real processes: an
orchestrator (run_worker.py --orchestrator, DEMO_OWN_WORKERS=all) and a worker per environment
(run_worker.py --env ENV), each with a demo root of its own and one artifact store they share.
A release waits, visibly, for a missing environment worker and finishes once it is there; each
environment's files are only under its own worker's root, and each worker's ledger holds only
its environment's changes."""

import asyncio
import json
import os
import subprocess
import uuid
from contextlib import AsyncExitStack
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from processes import (
    PROJECT_DIR,
    QUICK_TIMEOUT,
    environments_table,
    finish_release,
    holding,
    in_background,
    kill,
    run_starter,
    running,
    status_saying,
    terminal_env,
)
from run_worker import READY_LINE
from test_schedules import never_run_copy_of

ENVIRONMENTS = ["DEV", "TEST", "QC", "PROD"]


def _files(root: Path, folder: str) -> list[str]:
    """The names in folder, but for hidden ones (locks)."""
    path = root / folder
    return sorted(p.name for p in path.iterdir() if p.name[0] != ".") if path.is_dir() else []


async def test_a_release_waits_for_a_missing_environment_worker_and_each_keeps_its_own_files(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = env.client.service_client.config.target_host
    roots = {name: tmp_path / name for name in ["orchestrator", *ENVIRONMENTS, "store"]}
    for root in roots.values():
        root.mkdir()
    key = never_run_copy_of("RELEASE-NOV-23-INITIAL", roots["orchestrator"])
    shared = {"DEMO_ARTIFACTORY": str(roots["store"]), "DEMO_TASK_QUEUE": f"agents-{uuid.uuid4()}"}
    orchestrator = terminal_env(address, roots["orchestrator"], DEMO_OWN_WORKERS="all", **shared)
    of = {name: terminal_env(address, roots[name], **shared) for name in ENVIRONMENTS}
    of["QC"]["DEMO_STEP_SECONDS"] = "1"  # time to kill its worker mid-deploy
    queue = shared["DEMO_TASK_QUEUE"]
    try:
        async with AsyncExitStack() as workers:
            for args, script_env in [(["--orchestrator"], orchestrator)] + [
                (["--env", name], of[name]) for name in ["DEV", "TEST"]
            ]:
                worker = running("run_worker.py", script_env, *args, ready=READY_LINE)
                await workers.enter_async_context(worker)
            async with in_background(run_starter(orchestrator, key)) as starter:
                # QC's worker dies mid-deploy (kill -9), and another takes its steps up.
                qc = await workers.enter_async_context(
                    running("run_worker.py", of["QC"], "--env", "QC", ready=READY_LINE)
                )
                await status_saying(orchestrator, key, "deploying to QC")
                await asyncio.sleep(1.5)  # its steps take a second each: it is in the middle
                await kill(qc.process)
                again = running("run_worker.py", of["QC"], "--env", "QC", ready=READY_LINE)
                await workers.enter_async_context(again)
                # PROD's worker is away: the release deploys DEV to QC and waits, saying so.
                waiting = await status_saying(orchestrator, key, "wait for a worker")
                assert f"its steps wait for a worker on task queue '{queue}.PROD'" in (
                    " ".join(waiting.stdout.split())
                ), waiting.stdout
                prod = running("run_worker.py", of["PROD"], "--env", "PROD", ready=READY_LINE)
                await workers.enter_async_context(prod)
                done = await starter
    finally:
        await finish_release(env.client, key)
    assert done.code == 0 and f"Release {key}: SUCCESS" in done.stdout, done.stdout + done.stderr

    # Each environment's files are its own worker's, and only its changes are in its ledger.
    assert _files(roots["orchestrator"], "environments") == []
    for name in ENVIRONMENTS:
        assert _files(roots[name], "environments") == [name], name
        ledger = (roots[name] / "database" / "ledger.jsonl").read_text().splitlines()
        changes = [json.loads(line) for line in ledger]
        assert {change["env"] for change in changes} <= {name, None}, name
        assert all(change["env"] is None for change in changes if change["step"] == "build")
        made = [(c["env"], c["component"], c["version"], c["step"]) for c in changes]
        assert len(made) == len(set(made)), f"{name}: a change made twice"
    assert sorted(_files(roots["store"], ".")) == [
        "backendforfrontend-1.0.txt",
        "frontend-1.0.txt",
        "sbstore-1.0.txt",
    ]
    # --envs, from the orchestrator's root: as the release recorded them.
    envs = await run_starter(orchestrator, "--envs", timeout=QUICK_TIMEOUT)
    assert environments_table(envs.stdout) == holding(("1.0", "1.0", "1.0"), *ENVIRONMENTS)
    assert "their own workers hold the files" in envs.stdout
    (record_file,) = (roots["orchestrator"] / "database" / "releases").iterdir()
    record = json.loads(record_file.read_text())
    assert record["outcome"] == "SUCCESS"
    assert record["environments"]["PROD"]["frontend"]["after"] == "1.0"


def test_make_agents_without_tmux_prints_the_five_workers_to_start(tmp_path: Path) -> None:
    printed = subprocess.run(
        ["bash", "scripts/agents.sh", "--print"],
        cwd=PROJECT_DIR,
        env={**os.environ, "DEMO_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    workers = [line.split() for line in printed.splitlines() if "run_worker.py" in line]
    agents = tmp_path / ".agents"
    assert [words[-2:] for words in workers] == [
        ["run_worker.py", "--orchestrator"],
        *(["--env", name] for name in ENVIRONMENTS),
    ]
    roots = [next(w for w in words if w.startswith("DEMO_ROOT=")) for words in workers]
    assert roots == [f"DEMO_ROOT={agents / name}" for name in ["orchestrator", *ENVIRONMENTS]]
    assert all(f"DEMO_ARTIFACTORY={agents / 'artifactory'}" in words for words in workers)
    assert "DEMO_OWN_WORKERS=all" in workers[0]
    assert sorted(p.name for p in agents.iterdir()) == sorted(
        ["artifactory", "orchestrator", *ENVIRONMENTS]
    )
