"""Terminal 3: the starter. It starts a release and waits for its result.

    python run_workflow.py              runs the release selected below
    python run_workflow.py KEY          runs release KEY instead
    python run_workflow.py --list       prints the catalog
    python run_workflow.py --envs       prints what each environment holds
    python run_workflow.py --history    prints the latest release runs
    python run_workflow.py --status KEY prints the progress grid of release KEY
    python run_workflow.py --approve KEY --gate ENV --by NAME
    python run_workflow.py --reject KEY --gate ENV --by NAME --reason TEXT
                                        decide at the approval gate before ENV
    python run_workflow.py --cancel KEY [--reason TEXT]
                                        cancel release KEY: it stops cleanly and says so

If that release is already running, it attaches to the running release and waits for it.
"""

import argparse
import asyncio
import io
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from datetime import timedelta
from typing import Any, NoReturn

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import CancelledError, TerminatedError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import release_management
from connection import TemporalUnreachable, connect, exit_now, web_ui_url
from release_management import ReleaseError
from shared import (
    ENVIRONMENT_ORDER,
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    TASK_QUEUE,
    WORKFLOW_TASK_TIMEOUT,
    ApproveInput,
    Cell,
    CellState,
    Environment,
    Outcome,
    RejectInput,
    Release,
    ReleaseInput,
    ReleaseProgress,
    ReleaseResult,
    deploy_workflow_id,
    root_message,
    shown,
)
from utils import check_demo_root, check_task_queue
from workflows import ReleaseWorkflow

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
    client: Client, release: Release, task_queue: str = TASK_QUEUE, workflow_id: str | None = None
) -> ReleaseResult:
    """Start the release (or attach to it if it is already running) and wait for its result.

    The workflow ID is the release key, so one release never runs twice at once.
    """
    release_key = release.key
    workflow_id = workflow_id or release_key
    try:
        handle = await client.start_workflow(
            ReleaseWorkflow.run,
            # Steps refuse to run on a worker that serves another demo root than this one.
            ReleaseInput(
                release_key=release_key, demo_root=str(release_management.demo_root().resolve())
            ),
            id=workflow_id,
            task_queue=task_queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            # The Web UI shows it with the release: what it promotes, and where.
            static_summary=f"promote {release.plan()} to {release.route()}",
        )
        print(f"Started release {release_key}.", flush=True)
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(ReleaseWorkflow.run, workflow_id)
        print(f"Release {release_key} is already running: waiting for it.", flush=True)
    # The link on a line of its own: it fits an 80-column terminal and is whole to copy.
    print(f"Watch it in the Web UI:\n  {web_ui_url(client, workflow_id)}", flush=True)
    return await _wait_for_result(client, handle, release_key)


# How long the starter keeps trying to reach a server that went away (say, for a restart).
RECONNECT_SECONDS = 120
# How often the starter asks the release what it is doing.
STATUS_SECONDS = 1.0


class RunReset(Exception):
    """The release run being followed was reset: handle follows its new run."""

    def __init__(self, handle: WorkflowHandle) -> None:
        super().__init__(handle.result_run_id)
        self.handle = handle


async def _wait_for_result(
    client: Client, handle: WorkflowHandle, release_key: str
) -> ReleaseResult:
    """Wait for the release's result, riding out a server restart and following a reset, and
    say what it is doing."""
    while True:
        reporter = asyncio.create_task(_report_status(client, handle))
        try:
            return await _result(client, handle, release_key)
        except RunReset as reset:
            handle = reset.handle
        finally:
            reporter.cancel()
            await asyncio.wait([reporter])
        # Below the grid of the replaced run; the new run's grid is drawn afresh under it.
        print(f"Release {release_key} was reset: following its new run {handle.result_run_id}.")


async def _report_status(client: Client, handle: WorkflowHandle) -> None:
    """Show the release's progress while it runs: on a terminal, the grid redrawn in place;
    else one plain line per change."""
    if sys.stdout.isatty():
        await _report_grid(client, handle)
    else:
        await _report_changes(client, handle)


async def _progress_updates(
    client: Client, handle: WorkflowHandle
) -> AsyncIterator[ReleaseProgress]:
    """The release's progress every STATUS_SECONDS."""
    while True:
        await asyncio.sleep(STATUS_SECONDS)
        try:
            yield await read_progress(client, handle)
        except (RPCError, WorkflowQueryFailedError):
            continue  # not started by a worker yet, or the server is away: try again later


async def _report_grid(client: Client, handle: WorkflowHandle) -> None:
    """The grid redrawn in place at the terminal's width (lines printed meanwhile go above it).
    Once the release ends (this task is cancelled), the grid is drawn one last time as it ended
    and left on screen, above what is printed next."""
    live = Live(console=Console(), auto_refresh=False)
    try:
        async for progress in _progress_updates(client, handle):
            live.update(progress_view(progress), refresh=live.is_started)
            live.start(refresh=True)  # draws the first grid; does nothing after that
    finally:
        # The run followed as it ended, even if that was before the first redraw; after a reset,
        # the run replaced, not its new run.
        ended = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        with suppress(RPCError, WorkflowQueryFailedError, TimeoutError):
            last = await asyncio.wait_for(read_progress(client, ended), ANSWER_SECONDS)
            live.update(progress_view(last))
            live.start()
        live.stop()  # draws the grid a last time and leaves it on screen


async def _report_changes(client: Client, handle: WorkflowHandle) -> None:
    """One plain line per change, its error in full: for a log, not a screen."""
    seen: dict[str, str] = {}
    async for progress in _progress_updates(client, handle):
        now = {"status": progress.status} | {
            f"{env.value} {component}": _cell_text(cell)
            for env, row in progress.cells.items()
            for component, cell in row.items()
        }
        for what, text in now.items():
            if seen.get(what) != text:
                line = f"  ... {text}" if what == "status" else f"  ... {what}: {text}"
                print(shown(line), flush=True)
        seen = now


async def read_progress(
    client: Client, handle: WorkflowHandle, progress: ReleaseProgress | None = None
) -> ReleaseProgress:
    """The release's progress grid. The release workflow knows the state of each deploy (a
    query); for each running deploy, the server knows the step it is at, its attempt and the
    last error (its pending activities, as the Web UI shows them), so no step has to report."""
    progress = progress or await handle.query(ReleaseWorkflow.progress)
    running = [
        (env, component)
        for env, row in progress.cells.items()
        for component, cell in row.items()
        if cell.state is CellState.RUNNING
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
        return Cell(state=CellState.RUNNING)  # the release has not started it yet
    pending = description.raw_description.pending_activities
    failing = [step for step in pending if step.HasField("last_failure")]
    if failing:
        step = max(failing, key=lambda step: step.attempt)
        return Cell(
            state=CellState.RETRYING,
            step=step.activity_type.name,
            attempt=step.attempt - 1,  # the attempt that failed; the next one is pending
            error=step.last_failure.message,
        )
    return Cell(
        state=CellState.RUNNING, step=" + ".join(sorted(s.activity_type.name for s in pending))
    )


# How each state is coloured in the grid; the others (pending) are left plain.
STATE_STYLES = {
    CellState.DONE: "green",
    CellState.RUNNING: "cyan",
    CellState.RETRYING: "yellow",
    CellState.WAITING_FOR_APPROVAL: "magenta",
    CellState.FAILED: "red",
    CellState.ROLLED_BACK: "red",
    CellState.REJECTED: "red",
    CellState.CANCELLED: "dim",
    CellState.NOT_REACHED: "dim",
}
# The width --status prints the grid at when its output is not a terminal.
STATUS_WIDTH = 100


def progress_view(progress: ReleaseProgress) -> Group:
    """The release's status; its component x environment grid; the latest error of each step
    being retried, in full; and while a gate is open, the command that approves it."""
    parts: list[RenderableType] = [Text(shown(f"{progress.release_key}: {progress.status}"))]
    if progress.components:
        parts.append(_indented(_grid(progress)))
    parts += [
        _indented(Text(shown(f"{env.value} {component}: {_cell_text(cell)}"), style="yellow"))
        for env, row in progress.cells.items()
        for component, cell in row.items()
        if cell.state is CellState.RETRYING
    ]
    if progress.gate is not None:
        approve = f"python run_workflow.py --approve {progress.release_key} --gate "
        parts += [
            _indented(Text("To approve, type this (or --reject it, with --reason TEXT):")),
            _indented(Text(shown(f"{approve}{progress.gate.value} --by NAME"), style="bold")),
        ]
    return Group(*parts)


def _grid(progress: ReleaseProgress) -> Table:
    """One row per component, one column per environment. Too wide, the widest columns shrink
    first and their cells are cut with an ellipsis, never wrapped: rich shrinks only the
    columns it may wrap, so no_wrap is set on each cell rather than on the columns."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in ["COMPONENT", *(env.value for env in progress.environments)]:
        table.add_column(_cut(header))
    for component in progress.components:
        cells = [progress.cells[env][component] for env in progress.environments]
        table.add_row(
            _cut(component),
            *(_cut(_cell_summary(cell), STATE_STYLES.get(cell.state, "")) for cell in cells),
        )
    return table


def _cut(text: str, style: str = "") -> Text:
    return Text(shown(text), style=style, no_wrap=True, overflow="ellipsis")


def _indented(renderable: RenderableType) -> Padding:
    return Padding(renderable, (0, 0, 0, 2), expand=False)


def format_progress(progress: ReleaseProgress, width: int | None = None) -> list[str]:
    """The progress view as plain lines of at most width columns (by default the terminal's,
    or STATUS_WIDTH when the output is not a terminal)."""
    if width is None:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else STATUS_WIDTH
    text = io.StringIO()
    Console(file=text, width=width, color_system=None).print(progress_view(progress))
    return [line.rstrip() for line in text.getvalue().splitlines()]


def _cell_summary(cell: Cell) -> str:
    """What a deploy is doing, in a grid cell (the error of a retried step goes below it)."""
    if cell.state is CellState.RUNNING:
        return f"{cell.step or 'deploying'}..."
    if cell.state is CellState.RETRYING:
        return f"{cell.step}, attempt {cell.attempt} failed"
    if cell.state is CellState.FAILED:
        return f"failed: {cell.error}"
    return cell.state.value


def _cell_text(cell: Cell) -> str:
    """What a deploy is doing, with the error of a retried step in full."""
    if cell.state is CellState.RETRYING:
        return f"{_cell_summary(cell)}: {cell.error}"
    return _cell_summary(cell)


async def _result(client: Client, handle: WorkflowHandle, release_key: str) -> ReleaseResult:
    lost_since: float | None = None
    while True:
        try:
            return await handle.result()
        except WorkflowFailureError as err:
            if isinstance(err.cause, CancelledError):
                return ReleaseResult(release_key=release_key, outcome=Outcome.CANCELLED)
            if isinstance(err.cause, TerminatedError):
                raise RunReset(await _after_termination(client, handle, release_key)) from None
            raise StarterError(f"Release {release_key} failed: {root_message(err)}") from None
        except RPCError:
            # The connection is lost: outages.OutageReporter says so once, and once it is back.
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
            if now - lost_since > RECONNECT_SECONDS:
                raise StarterError(
                    f"Temporal has not answered for {RECONNECT_SECONDS} s. The release goes on "
                    "in Temporal: run this again to attach to it."
                ) from None
            await asyncio.sleep(1)


async def _after_termination(
    client: Client, handle: WorkflowHandle, release_key: str
) -> WorkflowHandle:
    """The run to wait for after the one followed was terminated: the new run a reset made, or
    none (a terminate ends a release where it stands, with no record)."""
    latest = await client.get_workflow_handle(handle.id).describe()
    if latest.run_id != handle.result_run_id and latest.status == WorkflowExecutionStatus.RUNNING:
        return client.get_workflow_handle_for(ReleaseWorkflow.run, handle.id, run_id=latest.run_id)
    raise StarterError(
        f"Release {release_key} was terminated: Temporal ran none of its code after that, so it "
        "wrote no record and its steps in flight were asked to cancel. Run it again to finish "
        "it; see --envs for what the environments hold."
    )


def format_environments() -> str:
    """Which version of each component each environment holds, as a small table."""
    state = release_management.environment_state()
    components = list(release_management.load_catalog().components)
    rows = [[env.value, *(state[env].get(c, "-") for c in components)] for env in ENVIRONMENT_ORDER]
    table = _table(["ENV", *components], rows)
    return "Environments now hold:\n" + "\n".join(f"  {line}" for line in table.splitlines())


def format_catalog() -> str:
    """The catalog's releases, one line each, in catalog order."""
    catalog = release_management.load_catalog()  # read and validated once, not once a release
    rows = []
    for key in catalog.release_keys():
        try:
            release = release_management.load_release(key, catalog=catalog)
        except ReleaseError as err:
            rows.append([key, "INVALID", str(err), ""])
            continue
        rows.append([key, str(release.release_date), release.plan(), release.route()])
    return _table(["RELEASE", "DATE", "VERSIONS", "ENVIRONMENTS"], rows)


def _table(header: list[str], rows: list[list[str]]) -> str:
    table = [[shown(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in table) + 2 for i in range(len(header))]
    return "\n".join(
        "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


# How long a command (--status, --approve, --reject, --cancel) waits for an answer.
ANSWER_SECONDS = 3.0


async def _running_release(client: Client, key: str, running: bool = True) -> WorkflowHandle:
    """The release's handle, once the server has said it knows the release (and, with running,
    that it is still running); else a StarterError that says why not."""
    handle = client.get_workflow_handle_for(ReleaseWorkflow.run, key)
    try:
        description = await handle.describe(rpc_timeout=timedelta(seconds=ANSWER_SECONDS))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise StarterError(f"Release {key} has never run on this server") from None
        raise
    if running and description.status != WorkflowExecutionStatus.RUNNING:
        raise StarterError(f"Release {key} is not running: {await _how_it_ended(handle)}")
    return handle


async def _how_it_ended(handle: WorkflowHandle) -> str:
    """How a closed release ended, from the server (no worker needed)."""
    try:
        return f"it ended {(await handle.result()).ending()}"
    except WorkflowFailureError as err:
        if isinstance(err.cause, CancelledError):
            return "it was cancelled"
        if isinstance(err.cause, TerminatedError):
            return "it was terminated"
        return f"it failed: {root_message(err)}"


NO_WORKER_STATUSES = (
    RPCStatusCode.CANCELLED,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.FAILED_PRECONDITION,
)


async def _ask(handle: WorkflowHandle, query: Any) -> Any:
    """Query the release through a worker, or say in one line that no worker answers."""
    no_worker = StarterError(
        f"no worker answered for release {handle.id}: is `python run_worker.py` running (task "
        f"queue {TASK_QUEUE})? Start it and try again"
    )
    try:
        return await asyncio.wait_for(
            handle.query(query, rpc_timeout=timedelta(seconds=ANSWER_SECONDS)),
            ANSWER_SECONDS + 1,
        )
    except TimeoutError:
        raise no_worker from None
    except RPCError as err:
        # The call timed out (the client says CANCELLED or DEADLINE_EXCEEDED), or the server says
        # no worker has polled the task queue lately (FAILED_PRECONDITION).
        if err.status in NO_WORKER_STATUSES:
            raise no_worker from None
        raise
    except WorkflowQueryFailedError as err:
        raise StarterError(f"Release {handle.id} cannot say: {err}") from None


async def decide(client: Client, key: str, gate: Environment, by: str, reason: str | None) -> str:
    """Approve (reason None) or reject the gate before the environment gate that release key
    waits at, through an Update, once a worker has answered (an Update that no worker takes
    would wait unseen)."""
    handle = await _running_release(client, key)
    await _ask(handle, ReleaseWorkflow.status)
    try:
        if reason is None:
            update = handle.execute_update(ReleaseWorkflow.approve, ApproveInput(gate=gate, by=by))
        else:
            update = handle.execute_update(
                ReleaseWorkflow.reject, RejectInput(gate=gate, by=by, reason=reason)
            )
        return await asyncio.wait_for(update, ANSWER_SECONDS)
    except WorkflowUpdateFailedError as err:
        raise StarterError(root_message(err)) from None
    except TimeoutError:
        raise StarterError(f"Release {key} did not answer within {ANSWER_SECONDS:g} s") from None


async def cancel(client: Client, key: str, reason: str) -> ReleaseResult:
    """Ask release key to cancel, then wait for it to close: it finishes the changes in flight,
    records CANCELLED and unlocks its environments."""
    handle = await _running_release(client, key)
    await handle.cancel(reason=reason)
    try:
        await _ask(handle, ReleaseWorkflow.status)
    except StarterError:
        raise StarterError(
            f"cancel of release {key} requested, but no worker answered: it takes effect once "
            f"`python run_worker.py` runs (task queue {TASK_QUEUE})"
        ) from None
    print(f"Cancelling release {key}: the changes in flight finish first.", flush=True)
    try:
        return await _result(client, handle, key)
    except RunReset:
        raise StarterError(
            f"Release {key} was reset while it cancelled: its new run goes on (--status {key})"
        ) from None


async def status_of(client: Client, key: str) -> list[str]:
    """The progress grid of release key, running or finished (a worker answers the query)."""
    handle = await _running_release(client, key, running=False)
    progress = await _ask(handle, ReleaseWorkflow.progress)
    return format_progress(await read_progress(client, handle, progress))


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
            record["result"].removeprefix(f"Release {record['release_key']}: "),
        ]
        for record in release_management.release_history(limit)
    ]
    if not rows:
        return "No release has finished yet."
    return _table(["RELEASE", "STARTED", "FINISHED", "DECISIONS", "RESULT"], rows)


class _Parser(argparse.ArgumentParser):
    """argparse, saying a mistake in one line instead of the usage followed by the mistake."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _key(text: str) -> str:
    """A release key argument: a blank one is refused, not taken for the default release."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a release key cannot be empty; --list shows the keys")
    return text


def _text(limit: int) -> Callable[[str], str]:
    """The type of a name or a reason: not blank, at most limit characters, and printable only
    (an escape code or a line break in it would redraw a terminal or forge a line)."""

    def text(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError("cannot be empty")
        if not value.isprintable():
            raise argparse.ArgumentTypeError(
                "printable characters only: no escape codes, tabs or line breaks"
            )
        if len(value) > limit:
            raise argparse.ArgumentTypeError(f"at most {limit} characters, not {len(value)}")
        return value

    return text


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="run_workflow.py", description="Start a release and wait for its result.")
    # One thing at a time: run a release, or one of the commands.
    one = parser.add_mutually_exclusive_group()
    one.add_argument("key", nargs="?", type=_key, help=f"release key (default {releasekey})")
    one.add_argument("--list", action="store_true", help="print the releases in the catalog")
    one.add_argument("--envs", action="store_true", help="print what each environment holds")
    one.add_argument("--history", action="store_true", help="print the latest release runs")
    one.add_argument(
        "--status", metavar="KEY", type=_key, help="print the progress grid of release KEY"
    )
    one.add_argument(
        "--approve", metavar="KEY", type=_key, help="approve the gate KEY is waiting at"
    )
    one.add_argument("--reject", metavar="KEY", type=_key, help="reject the gate KEY is waiting at")
    one.add_argument("--cancel", metavar="KEY", type=_key, help="cancel release KEY")
    parser.add_argument(
        "--gate",
        type=Environment,
        choices=list(Environment),
        help="the environment whose approval gate you decide",
    )
    parser.add_argument(
        "--by", metavar="NAME", type=_text(MAX_NAME_LENGTH), help="who approves or rejects"
    )
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        type=_text(MAX_REASON_LENGTH),
        help="why, when rejecting or cancelling",
    )
    return parser


# The commands each option qualifies; with none of them, it would be silently ignored.
QUALIFIES = {
    "gate": ("approve", "reject"),
    "by": ("approve", "reject"),
    "reason": ("reject", "cancel"),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The starter's command line, or exit 2 with one line saying what is wrong."""
    parser = _parser()
    args = parser.parse_args(argv)
    for option, commands in QUALIFIES.items():
        if getattr(args, option) is not None and all(getattr(args, c) is None for c in commands):
            parser.error(f"--{option} goes with {' or '.join(f'--{c}' for c in commands)}")
    return args


def _check_settings(args: argparse.Namespace) -> None:
    """The settings this run reads: the demo root always, the task queue to talk to Temporal.

    Raises:
        ValueError: a setting is invalid; the message names it and what to do.
    """
    check_demo_root()
    if not (args.list or args.envs or args.history):
        check_task_queue()


def _refuse(err: Exception, status: int) -> int:
    """Say why in one line on stderr, whatever the message holds; return status."""
    print(f"run_workflow.py: {shown(str(err))}", file=sys.stderr)
    return status


async def command(args: argparse.Namespace) -> int:
    """--status, --approve, --reject and --cancel: each answers within seconds or says why."""
    key = next(k for k in (args.status, args.cancel, args.approve, args.reject) if k is not None)
    keys = release_management.load_catalog().release_keys()
    if key not in keys:
        raise StarterError(f"Unknown release key {key!r}. Valid keys: {', '.join(keys)}")
    client = await connect()
    try:
        return await _command(client, args, key)
    except RPCError as err:
        raise StarterError(f"Temporal did not answer as expected: {err.message}") from None


async def _command(client: Client, args: argparse.Namespace, key: str) -> int:
    if args.status is not None:
        print("\n".join(await status_of(client, key)))
        return 0
    if args.cancel is not None:
        result = await cancel(client, key, args.reason or "")
        print(f"Result: {shown(str(result))}")
        return 0 if result.outcome is Outcome.CANCELLED else 1
    if args.gate is None:
        raise StarterError(f"say which gate you decide: --gate ENV (see --status {key})")
    reason = None if args.approve is not None else args.reason or ""
    print(shown(await decide(client, key, args.gate, args.by or "", reason)))
    return 0


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    key = args.key or releasekey
    try:
        _check_settings(args)
    except ValueError as err:
        return _refuse(err, 2)
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
        if any(
            getattr(args, name) is not None for name in ("status", "approve", "reject", "cancel")
        ):
            return await command(args)
        # Refuse an unknown key here, at once, before anything is started.
        release = release_management.load_release(key)
        client = await connect()
        result = await run_release(client, release)
    except (ReleaseError, StarterError, TemporalUnreachable) as err:
        return _refuse(err, 1)
    print(f"Result: {shown(str(result))}")
    print(format_environments())
    return 0 if result.outcome is Outcome.SUCCESS else 1


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
