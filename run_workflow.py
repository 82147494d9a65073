"""Terminal 3: the starter. It starts a release and waits for its result.

    python run_workflow.py              runs the release selected below
    python run_workflow.py KEY          runs release KEY instead
    python run_workflow.py --list       prints the catalog
    python run_workflow.py --envs       prints what each environment holds
    python run_workflow.py --history    prints the latest release runs
    python run_workflow.py --status KEY prints the progress grid of release KEY
    python run_workflow.py --approve KEY --by NAME
    python run_workflow.py --reject KEY --by NAME --reason TEXT
                                        decide at the approval gate release KEY waits at

If that release is already running, it attaches to the running release and waits for it.
"""

import argparse
import asyncio
import sys
import time

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import release_management
from release_management import ReleaseError
from shared import (
    ENVIRONMENT_ORDER,
    TASK_QUEUE,
    ApproveInput,
    Cell,
    RejectInput,
    ReleaseInput,
    ReleaseProgress,
    deploy_workflow_id,
)
from utils import TemporalUnreachable, connect, exit_now, web_ui_url
from workflows import WORKFLOW_TASK_TIMEOUT, ReleaseWorkflow

# Pick the release to run: uncomment one line (demos.md runs all six, in this order).
releasekey = "RELEASE-NOV-23-INITIAL"
# releasekey = "RELEASE-NOV-23-HOTFIX-STAGE"
# releasekey = "RELEASE-DEC-2023-BUGFIXES-PROD"
# releasekey = "RELEASE-JAN-24-ALPHA-DEV"
# releasekey = "RELEASE-JAN-24-ALPHA-QC"
# releasekey = "RELEASE-JAN-24-ALPHA-PROD"


class StarterError(Exception):
    """A reason to stop that the user can act on: printed as one line, exit status 1."""


async def run_release(
    client: Client, release_key: str, task_queue: str = TASK_QUEUE, workflow_id: str | None = None
) -> str:
    """Start the release (or attach to it if it is already running) and wait for its result.

    The workflow ID is the release key, so one release never runs twice at once.
    """
    workflow_id = workflow_id or release_key
    try:
        handle = await client.start_workflow(
            ReleaseWorkflow.run,
            ReleaseInput(release_key=release_key),
            id=workflow_id,
            task_queue=task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
        )
        print(f"Started release {release_key}.", flush=True)
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(ReleaseWorkflow.run, workflow_id)
        print(f"Release {release_key} is already running: waiting for it.", flush=True)
    print(f"Watch it in the Web UI: {web_ui_url(client, workflow_id)}", flush=True)
    return await _wait_for_result(client, handle, release_key)


# How long the starter keeps trying to reach a server that went away (say, for a restart).
RECONNECT_SECONDS = 120
# How often the starter asks the release what it is doing.
STATUS_SECONDS = 1.0


async def _wait_for_result(client: Client, handle: WorkflowHandle, release_key: str) -> str:
    """Wait for the release's result, riding out a server restart, and say what it is doing."""
    reporter = asyncio.create_task(_report_status(client, handle))
    try:
        return await _result(handle, release_key)
    finally:
        reporter.cancel()


async def _report_status(client: Client, handle: WorkflowHandle) -> None:
    """Show the release's progress while it runs: the grid redrawn in place on a terminal, else
    one plain line per change."""
    redraw = sys.stdout.isatty()
    drawn: list[str] = []
    seen: dict[str, str] = {}
    while True:
        await asyncio.sleep(STATUS_SECONDS)
        try:
            progress = await read_progress(client, handle)
        except (RPCError, WorkflowQueryFailedError):
            continue  # not started by a worker yet, or the server is away: try again later
        if redraw:
            lines = format_progress(progress)
            up = f"\x1b[{len(drawn)}F" if drawn else ""
            print(up + "".join(f"\x1b[2K{line}\n" for line in lines), end="", flush=True)
            drawn = lines
            continue
        now = {"status": progress.status} | {
            f"{env.value} {component}": _cell_text(cell)
            for env, row in progress.cells.items()
            for component, cell in row.items()
        }
        for what, text in now.items():
            if seen.get(what) != text:
                print(f"  ... {text}" if what == "status" else f"  ... {what}: {text}", flush=True)
        seen = now


async def read_progress(client: Client, handle: WorkflowHandle) -> ReleaseProgress:
    """The release's progress grid. The release workflow knows the state of each deploy (a
    query); for each running deploy, the server knows the step it is at, its attempt and the
    last error (its pending activities, as the Web UI shows them), so no step has to report."""
    progress = await handle.query(ReleaseWorkflow.progress)
    running = [
        (env, component)
        for env, row in progress.cells.items()
        for component, cell in row.items()
        if cell.state == "running"
    ]
    steps = await asyncio.gather(
        *(_current_step(client, deploy_workflow_id(handle.id, env, c)) for env, c in running)
    )
    cells = {env: dict(row) for env, row in progress.cells.items()}
    for (env, component), cell in zip(running, steps, strict=True):
        cells[env][component] = cell
    return progress.model_copy(update={"cells": cells})


async def _current_step(client: Client, deploy_id: str) -> Cell:
    """What one running deploy is doing: its steps in flight, or the one being retried."""
    try:
        description = await client.get_workflow_handle(deploy_id).describe()
    except RPCError:
        return Cell(state="running")  # the release has not started it yet
    pending = description.raw_description.pending_activities
    failing = [step for step in pending if step.HasField("last_failure")]
    if failing:
        step = max(failing, key=lambda step: step.attempt)
        return Cell(
            state="retrying",
            step=step.activity_type.name,
            attempt=step.attempt - 1,  # the attempt that failed; the next one is pending
            error=step.last_failure.message,
        )
    return Cell(state="running", step=" + ".join(sorted(s.activity_type.name for s in pending)))


def format_progress(progress: ReleaseProgress) -> list[str]:
    """The release's status and its component x environment grid, as lines."""
    header = ["COMPONENT", *(env.value for env in progress.environments)]
    rows = [
        [component, *(_cell_text(progress.cells[env][component]) for env in progress.environments)]
        for component in progress.components
    ]
    grid = _table(header, rows).splitlines() if rows else []
    return [f"{progress.release_key}: {progress.status}", *(f"  {line}" for line in grid)]


def _cell_text(cell: Cell) -> str:
    if cell.state == "running":
        return f"{cell.step or 'deploying'}..."
    if cell.state == "retrying":
        return f"{cell.step}, attempt {cell.attempt} failed: {cell.error[:60]}"
    return cell.state


async def _result(handle: WorkflowHandle, release_key: str) -> str:
    lost_since: float | None = None
    while True:
        try:
            return await handle.result()
        except WorkflowFailureError as err:
            raise StarterError(f"Release {release_key} failed: {_root_cause(err)}") from None
        except RPCError as err:
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
                print(f"Lost the connection to Temporal ({err}); trying again.", flush=True)
            if now - lost_since > RECONNECT_SECONDS:
                raise StarterError(
                    f"Temporal has not answered for {RECONNECT_SECONDS} s. The release goes on "
                    "in Temporal: run this again to attach to it."
                ) from None
            await asyncio.sleep(1)


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "message", None) or str(err)


def format_environments() -> str:
    """Which version of each component each environment holds, as a small table."""
    state = release_management.environment_state()
    components = list(release_management.load_catalog().components)
    rows = [[env.value, *(state[env].get(c, "-") for c in components)] for env in ENVIRONMENT_ORDER]
    table = _table(["ENV", *components], rows)
    return "Environments now hold:\n" + "\n".join(f"  {line}" for line in table.splitlines())


def format_catalog() -> str:
    """The catalog's releases, one line each, in catalog order."""
    rows = []
    for key in release_management.load_catalog().release_keys():
        try:
            release = release_management.load_release(key)
        except ReleaseError as err:
            rows.append([key, "INVALID", str(err), ""])
            continue
        versions = ", ".join(f"{c} {v}" for c, v in release.versions.items())
        route = " -> ".join(env.value for env in release.environments)
        rows.append([key, str(release.release_date), versions, route])
    return _table(["RELEASE", "DATE", "VERSIONS", "ENVIRONMENTS"], rows)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) + 2 for i in range(len(header))]
    return "\n".join(
        "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


async def decide(client: Client, key: str, by: str, reason: str | None) -> str:
    """Approve (reason None) or reject the gate release key is waiting at, through an Update."""
    handle = client.get_workflow_handle_for(ReleaseWorkflow.run, key)
    try:
        if reason is None:
            return await handle.execute_update(ReleaseWorkflow.approve, ApproveInput(by=by))
        return await handle.execute_update(
            ReleaseWorkflow.reject, RejectInput(by=by, reason=reason)
        )
    except WorkflowUpdateFailedError as err:
        raise StarterError(_root_cause(err)) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise StarterError(f"Release {key} is not running") from None
        raise


async def status_of(client: Client, key: str) -> list[str]:
    """The progress grid of release key, running or finished (a worker answers the query)."""
    handle = client.get_workflow_handle_for(ReleaseWorkflow.run, key)
    try:
        return format_progress(await read_progress(client, handle))
    except WorkflowQueryFailedError as err:
        raise StarterError(f"Release {key} cannot say: {err}") from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise StarterError(f"Release {key} has never run on this server") from None
        raise


def format_history(limit: int = 10) -> str:
    """The latest release runs, newest first."""
    rows = [
        [
            record.get("release_key", "?"),
            record.get("started", "")[:19],
            record.get("finished", "")[:19],
            ", ".join(
                f"{d['environment']} {'approved' if d['approved'] else 'rejected'} by {d['by']}"
                for d in record.get("decisions", [])
            )
            or "-",
            record.get("result", "?").split(": ", 1)[-1],
        ]
        for record in release_management.release_history(limit)
    ]
    if not rows:
        return "No release has finished yet."
    return _table(["RELEASE", "STARTED", "FINISHED", "DECISIONS", "RESULT"], rows)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Start a release and wait for its result.")
    parser.add_argument(
        "key", nargs="?", default=releasekey, help=f"release key (default {releasekey})"
    )
    parser.add_argument("--list", action="store_true", help="print the releases in the catalog")
    parser.add_argument("--envs", action="store_true", help="print what each environment holds")
    parser.add_argument("--history", action="store_true", help="print the latest release runs")
    parser.add_argument("--status", metavar="KEY", help="print the progress grid of release KEY")
    parser.add_argument("--approve", metavar="KEY", help="approve the gate KEY is waiting at")
    parser.add_argument("--reject", metavar="KEY", help="reject the gate KEY is waiting at")
    parser.add_argument("--by", default="", help="who approves or rejects")
    parser.add_argument("--reason", default="", help="why, when rejecting")
    args = parser.parse_args(argv)
    try:
        if args.list:
            print(format_catalog())
            return 0
        if args.envs:
            print(format_environments())
            return 0
        if args.history:
            print(format_history())
            return 0
        if args.status:
            client = await connect()
            print("\n".join(await status_of(client, args.status)))
            return 0
        if args.approve or args.reject:
            client = await connect()
            reason = None if args.approve else args.reason
            print(await decide(client, args.approve or args.reject, args.by, reason))
            return 0
        # Refuse an unknown key here, at once, before anything is started.
        release_management.load_release(args.key)
        client = await connect()
        result = await run_release(client, args.key)
    except (ReleaseError, StarterError, TemporalUnreachable) as err:
        print(f"run_workflow.py: {err}", file=sys.stderr)
        return 1
    print(f"Result: {result}")
    print(format_environments())
    return 0 if result == f"Release {args.key}: SUCCESS" else 1


if __name__ == "__main__":
    try:
        code = asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print(
            "\nStopped waiting. The release goes on in Temporal; run again to attach.",
            file=sys.stderr,
        )
        code = 130
    exit_now(code)
