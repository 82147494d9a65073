"""search_attributes.py: every release, deploy and lock is found by its search attributes. Fast,
with mocked steps, on the session's server (which registers them, as `make demo` does); and end
to end on a dev server started plainly, where the worker registers them."""

import asyncio
import re
import signal
import time
from pathlib import Path

from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from handles import wait_for_status
from lookups import find_deploys_in_flight
from mocked import DEV, KEY, TEST, Mocked, make_release
from processes import (
    QUICK_TIMEOUT,
    assert_one_line_without_traceback,
    free_port,
    run_command,
    run_script,
    run_starter,
    running_worker,
    start_dev_server,
    stop,
    temporal_cli,
    terminal_env,
    wait_for_output,
    workflow_count,
)
from run_worker import ATTRIBUTES_CHECK_SECONDS
from search_attributes import ALL, deploys_query, server_flags
from shared import DeploysInFlightInput, Environment, Outcome, RejectInput
from workflows import ReleaseWorkflow

# Visibility (the list the Web UI shows) follows a workflow's history within moments.
VISIBLE_SECONDS = 10.0


async def until_counted(client: Client, query: str, count: int) -> None:
    """Wait until query finds count workflows."""
    deadline = time.monotonic() + VISIBLE_SECONDS
    while (found := (await client.count_workflows(query)).count) != count:
        assert time.monotonic() < deadline, f"{query!r} finds {found} workflows, not {count}"
        await asyncio.sleep(0.1)


async def test_a_release_is_listed_running_with_its_locks_then_by_how_it_ended(
    mocked: Mocked,
) -> None:
    mocked.steps.release = make_release(environments=(DEV, TEST), approval_before=(TEST,))
    release = await mocked.start()
    await wait_for_status(release, "waiting for approval before TEST")
    client, this = mocked.client, f"WorkflowId='{release.id}' AND ReleaseKey='{KEY}'"

    await until_counted(client, f"{this} AND ReleaseOutcome='RUNNING'", 1)
    for env in (DEV, TEST):
        lock = f"WorkflowId='{mocked.lock_id(env)}' AND ExecutionStatus='Running'"
        await until_counted(client, f"{lock} AND ReleaseKey='{KEY}'", 1)
        await until_counted(client, f"{lock} AND DeployEnvironment='{env.value}'", 1)

    reject = RejectInput(gate=TEST, by="Ada", reason="not this week")
    await release.execute_update(ReleaseWorkflow.reject, reject)
    assert (await release.result()).outcome is Outcome.REJECTED
    await until_counted(client, f"{this} AND ReleaseOutcome='{Outcome.REJECTED}'", 1)
    await until_counted(client, f"{this} AND ReleaseOutcome='RUNNING'", 0)


async def test_each_deploy_is_found_by_its_release_environment_and_component(
    mocked: Mocked,
) -> None:
    release = await mocked.start()
    assert (await release.result()).outcome is Outcome.SUCCESS
    client, mine = mocked.client, f"ParentWorkflowId='{release.id}' AND ReleaseKey='{KEY}'"

    await until_counted(client, f"{mine} AND {deploys_query(TEST, None)}", 2)
    await until_counted(client, f"{mine} AND {deploys_query(None, 'sbstore')}", 2)
    await until_counted(client, f"{mine} AND {deploys_query(TEST, 'sbstore')}", 1)
    await until_counted(client, f"{mine} AND ReleaseOutcome='{Outcome.SUCCESS}'", 0)  # a release's


def test_a_query_quotes_what_it_is_given() -> None:
    assert deploys_query(Environment.QC, "it's") == (
        "WorkflowType='DeployWorkflow' AND DeployEnvironment='QC' AND DeployComponent='it\\'s'"
    )


def test_a_server_started_by_the_project_registers_each_attribute_as_a_keyword() -> None:
    assert server_flags() == [
        *("--search-attribute", "ReleaseKey=Keyword"),
        *("--search-attribute", "ReleaseOutcome=Keyword"),
        *("--search-attribute", "DeployEnvironment=Keyword"),
        *("--search-attribute", "DeployComponent=Keyword"),
    ]
    demo = (Path(__file__).parents[1] / "scripts" / "demo.sh").read_text()
    for value in server_flags()[1::2]:
        assert f"--search-attribute {value}" in demo, f"make demo does not register {value}"


async def test_on_a_plain_dev_server_the_worker_registers_them_and_every_query_answers(
    tmp_path: Path,
) -> None:
    """The three-terminal walkthrough on `temporal server start-dev` with no flags: the worker
    registers the attributes; a release rolled back in QC is then found by the CLI's queries and
    by --history --env/--component."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    (demo_root := tmp_path / "demo").mkdir()
    script_env = terminal_env(address, demo_root, DEMO_UNHEALTHY="sbstore@QC")
    server = await start_dev_server(tmp_path / "dev.sqlite", port, tmp_path / "server.log")
    try:
        early = await run_starter(script_env, "--history", "--env", "PROD")
        assert early.code == 1 and "start the worker (python run_worker.py) once" in early.stderr
        # Without the attributes, a release's check for other releases' deploys in flight is
        # skipped, with a warning, rather than retried for ever.
        unregistered = ActivityEnvironment(client=await Client.connect(address))
        in_flight = DeploysInFlightInput(
            environments=[Environment.DEV], task_queue="q", release_workflow_id="R"
        )
        assert await unregistered.run(find_deploys_in_flight, in_flight) == []
        await _a_worker_refuses_attributes_of_another_type(address, script_env)
        async with running_worker(script_env) as worker:
            assert "Registered the search attributes ReleaseKey, ReleaseOutcome, Deploy" in (
                worker.text
            )
            # Gone under the running worker (a server started afresh: demos.md, "Start over"),
            # they are registered again before a release needs them.
            names = [flag for key in ALL for flag in ("--name", key.name)]
            cli = [temporal_cli(), "operator", "search-attribute", "remove", "--yes"]
            removed = await run_command(*cli, *names, "--address", address)
            assert removed.code == 0, removed.stderr
            await wait_for_output(worker, "registered them again", 2 * ATTRIBUTES_CHECK_SECONDS)
            ran = await run_starter(script_env, "RELEASE-NOV-23-INITIAL")
            assert "ROLLED BACK sbstore in QC" in ran.stdout, ran.stdout + ran.stderr
            await _answers_from_the_server(address, script_env)
    finally:
        await stop(server, signal.SIGTERM)


async def _a_worker_refuses_attributes_of_another_type(
    address: str, script_env: dict[str, str]
) -> None:
    """Registered as Int and Text by someone else, the attributes would fail every workflow task
    that sets them: the worker refuses to start, in one line saying what to run; once they are
    removed, it registers them as it should."""
    cli = [temporal_cli(), "operator", "search-attribute"]
    for name, kind in [("ReleaseKey", "Int"), ("ReleaseOutcome", "Text")]:
        made = await run_command(
            *cli, "create", "--name", name, "--type", kind, "--address", address
        )
        assert made.code == 0, made.stderr
    refused = await run_script("run_worker.py", script_env, timeout=QUICK_TIMEOUT)
    assert refused.code == 1 and refused.stdout == ""
    assert_one_line_without_traceback(refused.stderr)
    assert "in namespace 'default' ReleaseKey is Int, ReleaseOutcome is Text" in refused.stderr
    assert "search-attribute remove --name ReleaseKey --name ReleaseOutcome`" in refused.stderr
    names = ["--name", "ReleaseKey", "--name", "ReleaseOutcome"]
    removed = await run_command(*cli, "remove", *names, "--yes", "--address", address)
    assert removed.code == 0, removed.stderr


async def _answers_from_the_server(address: str, script_env: dict[str, str]) -> None:
    deploys = "WorkflowType='DeployWorkflow'"
    assert workflow_count(address, "ReleaseOutcome='ROLLED BACK'") == "Total: 1"
    assert workflow_count(address, f"DeployEnvironment='QC' AND {deploys}") == "Total: 3"
    assert workflow_count(address, f"DeployEnvironment='PROD' AND {deploys}") == "Total: 0"
    # Its PROD lock: taken with the others when the release started, never used.
    assert workflow_count(address, "DeployEnvironment='PROD'") == "Total: 1"
    history = await run_starter(script_env, "--history", "--component", "sbstore")
    assert history.code == 0, history.stderr
    rows = [re.split(r"\s{2,}", line) for line in history.stdout.splitlines()[2:]]
    assert sorted(
        (env, component, deploy, outcome) for _, _, env, component, deploy, outcome in rows
    ) == [
        ("DEV", "sbstore", "deployed", "ROLLED BACK"),
        ("QC", "sbstore", "rolled back to none", "ROLLED BACK"),
        ("TEST", "sbstore", "deployed", "ROLLED BACK"),
    ]
