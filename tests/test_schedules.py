"""Release trains (issue 14, item 3): a Temporal Schedule that starts a release by itself. On the
real dev server of conftest.py, a train's run ends SUCCESS, a run due while the previous one
still runs is skipped, the commands about a release find the run its train started,
--schedules lists the trains and --unschedule deletes them; a bad INTERVAL or TIME is refused
in one line with exit status 2. Each test deletes the trains it made and ends their runs."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleHandle,
    ScheduleIntervalSpec,
    ScheduleSpec,
    WorkflowFailureError,
)
from temporalio.service import RPCError

import artifacts
import records
import release_client
import run_workflow
import trains
from catalog import load_catalog, load_release
from display import Train, format_trains
from handles import wait_for_status
from processes import QUICK_TIMEOUT, assert_one_line_without_traceback, run_starter
from shared import Environment, Outcome, ReleaseInput, root_message
from workflows import ReleaseWorkflow

PROJECT_DIR = Path(__file__).resolve().parents[1]
FAST = "RELEASE-JAN-24-ALPHA-DEV"  # DEV only: the quickest release
GATED = "RELEASE-FEB-24-BETA"  # waits for a person before PROD
PROD_ONLY = "RELEASE-JAN-24-ALPHA-PROD"
KEYS = [FAST, GATED, PROD_ONLY]
WAIT_SECONDS = 10.0
T = TypeVar("T")


@pytest.fixture(autouse=True)
async def no_train_left(client: Client) -> AsyncIterator[None]:
    """Delete the trains a test made (and schedules named like one), and end the runs they
    started. (The trains of KEYS are asked for by name: the list may lag a moment behind.)"""
    yield
    listed = [s.id async for s in await client.list_schedules() if s.id.startswith("train.")]
    for schedule_id in {*map(trains.train_id, KEYS), *listed}:
        train = client.get_schedule_handle(schedule_id)
        try:
            running = (await train.describe()).info.running_actions
        except RPCError:
            continue  # no train
        for run in running:
            assert isinstance(run, ScheduleActionExecutionStartWorkflow)
            with contextlib.suppress(RPCError):  # it may have ended meanwhile
                await client.get_workflow_handle(run.workflow_id).terminate()
        await train.delete()


@pytest.fixture
def starter_here(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_workflow.main talks to the session's server: its connect gives the tests' client."""

    async def connected() -> Client:
        return client

    monkeypatch.setattr(run_workflow, "connect", connected)


async def eventually(ask: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """ask's answer once done says it is what we wait for (within WAIT_SECONDS)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not done(answer := await ask()):
        assert time.monotonic() < deadline, f"still {answer!r} after {WAIT_SECONDS} s"
        await asyncio.sleep(0.1)
    return answer


async def train_of(client: Client, key: str, task_queue: str) -> ScheduleHandle:
    """A train of release key that starts its runs on this test's task queue (so with this
    test's locks), and would run next in an hour at the earliest."""
    release = load_release(key)
    train = await trains.schedule_release(client, release, timedelta(hours=1), task_queue)
    assert train.schedule_id == f"train.{key}" and train.last_run is None
    assert train.next_runs and train.next_runs[0] > datetime.now(UTC)
    return client.get_schedule_handle(train.schedule_id)


async def triggered(client: Client, key: str, task_queue: str) -> tuple[ScheduleHandle, str]:
    """A train of release key, triggered now; and the workflow ID of the run it started."""
    train = await train_of(client, key, task_queue)
    await train.trigger()
    return train, await first_run(train)


async def gated_run_waiting(client: Client, task_queue: str) -> tuple[ScheduleHandle, str]:
    """A train of GATED, and its run, once the run waits for approval before PROD."""
    train, run = await triggered(client, GATED, task_queue)
    handle = client.get_workflow_handle_for(ReleaseWorkflow.run, run)
    await wait_for_status(handle, "waiting for approval before PROD")
    return train, run


async def first_run(train: ScheduleHandle) -> str:
    """The workflow ID of the first run the train started (once it has)."""
    described = await eventually(train.describe, lambda d: bool(d.info.recent_actions))
    run = described.info.recent_actions[0].action
    assert isinstance(run, ScheduleActionExecutionStartWorkflow)
    return run.workflow_id


def never_run_copy_of(key: str, demo_root: Path) -> str:
    """A copy of release key under a key of its own, in the demo root's catalog: no other test
    has run it on the session's server, by hand or by a train."""
    catalog = json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())
    copy = dict(next(r for r in catalog["releases"] if r["key"] == key))
    copy["key"] = f"RELEASE-TRAIN-{uuid.uuid4().hex[:8].upper()}"
    catalog["releases"].append(copy)
    (demo_root / "database").mkdir(exist_ok=True)
    (demo_root / "database" / "catalog.json").write_text(json.dumps(catalog))
    return str(copy["key"])


async def test_a_train_runs_its_release_to_success_and_unschedule_deletes_it(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    fast = never_run_copy_of(FAST, demo_root)
    _, run = await triggered(client, fast, task_queue)
    assert run.startswith(f"{fast}-")  # the action's workflow ID, and the time it was due
    result = await client.get_workflow_handle_for(ReleaseWorkflow.run, run).result()
    assert result.outcome is Outcome.SUCCESS
    # fast never ran by hand: --status KEY shows the train's latest run, but a release started
    # by hand is KEY itself, not the train's finished run started again.
    await eventually(lambda: trains.release_workflow_id(client, fast), lambda i: i == run)
    assert await release_client._train_run_to_attach(client, load_release(fast)) is None
    assert artifacts.environment_state()[Environment.DEV] == {
        "frontend": "1.2",
        "sbstore": "1.8",
        "backendforfrontend": "1.8",
    }

    listed = format_trains(await trains.trains(client, load_catalog().release_keys()), 200)
    assert listed.splitlines()[0].split() == ["SCHEDULE", "RELEASE", "RUNS", "NEXT", "RUN"] + [
        "LAST",
        "RUN",
    ]
    row = listed.splitlines()[1]
    assert row.startswith(f"train.{fast}  {fast}  every 1 hour ") and row.endswith(" SUCCESS")
    assert len(listed.splitlines()) == 2

    said = await trains.unschedule(client, fast)
    assert said == f"Deleted train train.{fast}: it starts no more runs of {fast}."
    assert await trains.trains(client, [fast]) == []
    assert await trains.train_run(client, fast, running=True) is None
    with pytest.raises(trains.TrainError, match="has no train"):
        await trains.unschedule(client, fast)


async def test_a_run_due_while_the_last_one_runs_is_skipped_and_commands_find_the_run(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    train, run = await gated_run_waiting(client, task_queue)

    await train.trigger()  # due while the first run waits: skipped (the overlap policy)
    skipped = await eventually(train.describe, lambda d: d.info.num_actions_skipped_overlap > 0)
    assert (skipped.info.num_actions, skipped.info.num_actions_skipped_overlap) == (1, 1)
    running = skipped.info.running_actions
    assert [getattr(action, "workflow_id", None) for action in running] == [run]

    # No run has the ID GATED: the commands about GATED find its train's run.
    found = await eventually(lambda: trains.release_workflow_id(client, GATED), lambda i: i == run)
    assert found == run
    status = await run_workflow.status_of(client, GATED)
    assert status[0] == f"{GATED}: waiting for approval before PROD"
    release = load_release(GATED)
    assert await release_client._train_run_to_attach(client, release) == run
    attached = asyncio.create_task(run_workflow.run_release(client, release, task_queue))
    answer = await run_workflow.decide(client, GATED, Environment.PROD, "Ada", None)
    assert answer == f"Release {GATED}: PROD approved by Ada"
    assert (await attached).outcome is Outcome.SUCCESS
    handle = client.get_workflow_handle_for(ReleaseWorkflow.run, run)
    assert (await handle.result()).outcome is Outcome.SUCCESS
    listed = format_trains(await trains.trains(client, [GATED]), 200)
    assert listed.splitlines()[1].endswith(" SUCCESS (1 skipped)")


async def test_the_command_line_makes_lists_and_deletes_a_train(
    client: Client,
    demo_root: Path,
    starter_here: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    schedule = ["--schedule", GATED, "--at", at.isoformat()]
    assert await run_workflow.main(schedule) == 0
    when = f"{at:%Y-%m-%d %H:%M:%S} UTC"
    assert capsys.readouterr().out.splitlines() == [
        f"Created train train.{GATED}: once, at {when}.",
        f"Next runs: {when}",
        "See it on the Web UI's Schedules page:",
        f"  {run_workflow.web_ui_url(client).removesuffix('/workflows')}/schedules",
    ]
    assert await run_workflow.main(schedule) == 1
    refusal = capsys.readouterr().err
    assert_one_line_without_traceback(refusal)
    assert f"release {GATED} has a train already, train.{GATED}" in refusal

    assert await run_workflow.main(["--schedules"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[1].split()[:3] == [f"train.{GATED}", GATED, "once,"]

    assert await run_workflow.main(["--unschedule", GATED]) == 0
    assert capsys.readouterr().out.startswith(f"Deleted train train.{GATED}")
    assert await run_workflow.main(["--unschedule", GATED]) == 1
    assert_one_line_without_traceback(capsys.readouterr().err)
    assert await run_workflow.main(["--schedules"]) == 0
    assert capsys.readouterr().out.startswith("No release train")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--every", "10"], "a whole number and a unit"),
        (["--every", "0s"], "a whole number and a unit"),
        (["--every", "1w"], "a whole number and a unit"),
        (["--at", "tomorrow"], "an ISO 8601 time"),
        (["--at", "2020-01-01T09:00:00Z"], "is in the past"),
        (["--at", "2099-01-01T09:00:00"], "has no time zone"),
        ([], "--schedule takes one of --every INTERVAL or --at TIME"),
        (["--every", "1d", "--at", "2099-01-01T09:00:00Z"], "takes one of"),
        # Issue 21, item 7: a train too far out, refused rather than an OverflowError.
        (["--every", "1000000000d"], "at most 366d"),
        (["--every", "99999999999999h"], "at most 366d"),
        (["--every", "367d"], "at most 366d"),
        (["--at", "9999-12-31T23:59:59-01:00"], "Temporal runs schedules until 2100"),
        (["--at", "2101-01-01T00:00:00Z"], "Temporal runs schedules until 2100"),
    ],
)
def test_a_bad_interval_or_time_is_refused_in_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_workflow.parse_args(["--schedule", GATED, *argv])
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    assert_one_line_without_traceback(stderr)
    assert says in stderr


async def test_a_bad_time_exits_2_before_anything_is_made(script_env: dict[str, str]) -> None:
    starter = await run_starter(
        script_env, "--schedule", GATED, "--at", "2020-01-01T09:00:00Z", timeout=QUICK_TIMEOUT
    )
    assert starter.code == 2
    assert_one_line_without_traceback(starter.stderr)
    assert "in the past" in starter.stderr and "cannot reach" not in starter.stderr
    assert starter.stdout == ""


async def test_an_unknown_release_gets_no_train(script_env: dict[str, str]) -> None:
    starter = await run_starter(
        script_env, "--schedule", "NOPE", "--every", "1d", timeout=QUICK_TIMEOUT
    )
    assert starter.code == 1
    assert_one_line_without_traceback(starter.stderr)
    assert "Unknown release key 'NOPE'" in starter.stderr and "cannot reach" not in starter.stderr


async def test_a_train_run_that_finds_an_environment_held_is_refused_naming_the_holder(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    _, holding = await gated_run_waiting(client, task_queue)
    _, refused_run = await triggered(client, PROD_ONLY, task_queue)
    refused = client.get_workflow_handle_for(ReleaseWorkflow.run, refused_run)
    with pytest.raises(WorkflowFailureError) as failure:
        await refused.result()
    assert f"PROD in use by release {holding}, which has not let it go yet" in root_message(
        failure.value
    )
    assert records.release_history(1)[0]["result"].startswith(f"Release {PROD_ONLY}: FAILED")
    listed = format_trains(await trains.trains(client, [PROD_ONLY]), 200)
    assert listed.splitlines()[1].endswith(" failed")


def drop_from_catalog(key: str, demo_root: Path) -> None:
    """Remove release key from the demo root's catalog, as a person editing it would."""
    path = demo_root / "database" / "catalog.json"
    catalog = json.loads(path.read_text())
    catalog["releases"] = [r for r in catalog["releases"] if r["key"] != key]
    path.write_text(json.dumps(catalog))


async def test_a_train_that_outlives_its_release_is_listed_recorded_and_removable(
    client: Client,
    task_queue: str,
    demo_root: Path,
    starter_here: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gone = never_run_copy_of(FAST, demo_root)
    train = await train_of(client, gone, task_queue)
    drop_from_catalog(gone, demo_root)
    await train.trigger()
    run = client.get_workflow_handle(await first_run(train))
    with pytest.raises(WorkflowFailureError) as failure:
        await run.result()
    assert f"Unknown release key {gone!r}" in root_message(failure.value)
    (record,) = [r for r in records.release_history() if r["release_key"] == gone]
    assert record["outcome"] == "FAILED" and f"Unknown release key {gone!r}" in record["result"]

    assert await run_workflow.main(["--schedules"]) == 0
    listed = capsys.readouterr().out
    assert f"train.{gone}" in listed and f"{gone} is not in the catalog" in listed
    assert await run_workflow.main(["--unschedule", gone]) == 0
    assert capsys.readouterr().out.startswith(f"Deleted train train.{gone}")
    assert train.id not in [t.schedule_id for t in await trains.trains(client, [])]


@pytest.mark.parametrize("starts", ["another workflow type", "a release of another key"])
async def test_a_schedule_named_like_a_train_is_not_taken_for_one(
    client: Client,
    task_queue: str,
    demo_root: Path,
    starts: str,
    starter_here: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = never_run_copy_of(FAST, demo_root)
    if starts == "another workflow type":  # on a queue no worker polls: its run waits for ever
        action = ScheduleActionStartWorkflow(
            "EnvironmentLockWorkflow", id="lock.DEV", task_queue=f"{task_queue}-nobody"
        )
    else:
        action = ScheduleActionStartWorkflow(
            ReleaseWorkflow.run, ReleaseInput(release_key=FAST), id=key, task_queue=task_queue
        )
    schedule = Schedule(
        action=action, spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))])
    )
    handle = await client.create_schedule(trains.train_id(key), schedule)
    await handle.trigger()
    await first_run(handle)
    assert handle.id not in [train.schedule_id for train in await trains.trains(client, [key])]
    assert await release_client._train_run_to_attach(client, load_release(key)) is None
    assert await trains.release_workflow_id(client, key) == key

    for argv in (["--unschedule", key], ["--schedule", key, "--every", "1d"]):
        assert await run_workflow.main(argv) == 1
        refusal = capsys.readouterr().err
        assert_one_line_without_traceback(refusal)
        assert f"schedule train.{key} is not a train of {key}" in refusal
    assert (await handle.describe()).id == trains.train_id(key)  # left alone


@pytest.mark.parametrize(
    "when",
    [timedelta(days=999999), datetime.now(UTC) - timedelta(minutes=1)],
    ids=["every-999999d", "at-a-time-gone-by"],
)
async def test_a_train_that_would_never_run_is_not_made(
    client: Client, task_queue: str, demo_root: Path, when: timedelta | datetime
) -> None:
    key = never_run_copy_of(FAST, demo_root)
    with pytest.raises(trains.TrainError, match="would never run"):
        await trains.schedule_release(client, load_release(key), when, task_queue)
    with pytest.raises(RPCError):
        await client.get_schedule_handle(trains.train_id(key)).describe()


def test_a_time_too_soon_to_make_a_train_for_is_refused() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=2)
    with pytest.raises(ValueError, match="at least 10 seconds ahead"):
        trains.moment(soon.isoformat())


@pytest.mark.parametrize("listed", [False, True], ids=["no-next-run", "its-time-still-listed"])
def test_a_one_shot_train_missed_while_the_server_was_down_says_so(listed: bool) -> None:
    # The server may still list the missed time as its next run (it does after a restart).
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    missed = Train(
        schedule_id="train.R",
        release_key="R",
        when=at,
        next_runs=[at] if listed else [],
        last_run=None,
        skipped=0,
    )
    lines = format_trains([missed], 200).splitlines()
    assert lines[1].split()[-2:] == ["missed", "-"]  # NEXT RUN, LAST RUN
    assert lines[-1] == (
        "train.R missed its time (the server was down then) and will not run: "
        "--unschedule R removes it."
    )
    due = Train(
        schedule_id="train.R",
        release_key="R",
        when=datetime.now(UTC) - timedelta(seconds=5),  # due, and about to start
        next_runs=[],
        last_run=None,
        skipped=0,
    )
    assert not due.missed() and len(format_trains([due], 200).splitlines()) == 2
