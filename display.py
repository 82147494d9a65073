"""What the starter shows: a release's progress (a grid redrawn in place on a terminal, plain
lines in a log), the catalog, what the environments hold and the latest release runs.

No Temporal here: run_workflow.py asks the server and hands its answers to these. Every text
goes through shared.shown, so what a person, the server or a file says cannot redraw the screen
or forge a line; rich draws the tables, and rich.text.Text keeps its markup out of them.
"""

import argparse
import io
import logging
import math
import re
import shutil
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TextIO, TypeAlias

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

import files
import records
import release_management
from catalog import load_catalog, load_release
from shared import (
    ENVIRONMENT_ORDER,
    RELEASE_KEY_PATTERN,
    Cell,
    CellState,
    Environment,
    FoundDeploy,
    ReleaseError,
    ReleaseProgress,
    approve_command,
    shown,
    skip_soak_command,
)
from utils import own_workers

# How each state is coloured in the grid; the others (pending) are left plain.
STATE_STYLES = {
    CellState.DONE: "green",
    CellState.SOAKING: "blue",
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


# --- A release's progress -----------------------------------------------------------------------


def progress_view(progress: ReleaseProgress, width: int) -> Group:
    """The release's status; its component x environment grid, width columns at most; the latest
    error of each step being retried, in full; and while a gate is open, the command that
    approves it."""
    parts: list[RenderableType] = [Text(shown(f"{progress.release_key}: {progress.status}"))]
    if progress.components:
        parts.append(_indented(_grid(progress, width - INDENT)))
    parts += [
        _indented(Text(shown(f"{env.value} {component}: {_cell_text(cell)}"), style="yellow"))
        for env, row in progress.cells.items()
        for component, cell in row.items()
        if cell.state is CellState.RETRYING
    ]
    if progress.gate is not None:
        approve = approve_command(progress.release_key, progress.gate)
        parts += [
            _indented(Text("To approve, type this (or --reject it, with --reason TEXT):")),
            _indented(Text(shown(approve), style="bold")),
        ]
        if progress.gate_expires:
            left = _seconds_left(progress.gate_expires)
            parts.append(_indented(Text(f"The gate expires in {left} s: then REJECTED.")))
    if progress.soak is not None:
        left = _seconds_left(progress.soak.ends)
        env, skip = progress.soak.environment.value, skip_soak_command(progress.release_key)
        parts += [
            _indented(Text(f"{env} soaks for {left} s more. To end the soak now, type:")),
            _indented(Text(shown(skip), style="bold")),
        ]
    return Group(*parts)


def _seconds_left(until: str) -> int:
    """Whole seconds from now until an ISO 8601 time (0 once it has passed)."""
    return max(0, math.ceil((datetime.fromisoformat(until) - datetime.now(UTC)).total_seconds()))


def format_progress(progress: ReleaseProgress, width: int | None = None) -> list[str]:
    """The progress view as plain lines of at most width columns (by default the terminal's,
    or STATUS_WIDTH when the output is not a terminal)."""
    width = width or terminal_width() or STATUS_WIDTH
    return _plain(progress_view(progress, width), width)


class LiveGrid:
    """The progress view redrawn in place at the terminal's width; lines printed meanwhile go
    above it."""

    def __init__(self) -> None:
        self._live = Live(console=Console(), auto_refresh=False)

    def show(self, progress: ReleaseProgress) -> None:
        view = progress_view(progress, self._live.console.width)
        self._live.update(view, refresh=self._live.is_started)
        self._live.start(refresh=True)  # draws the first grid; does nothing after that

    def close(self, last: ReleaseProgress | None) -> None:
        """Draw the grid a last time (as last says, when known) and leave it on screen, above
        what is printed next."""
        if last is not None:
            self._live.update(progress_view(last, self._live.console.width))
            self._live.start()
        self._live.stop()


class ProgressLog:
    """The progress as plain lines, one per change, each error in full: for a log, not a
    screen."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def show(self, progress: ReleaseProgress) -> None:
        now = {"status": progress.status} | {
            f"{env.value} {component}": _cell_text(cell)
            for env, row in progress.cells.items()
            for component, cell in row.items()
        }
        for what, text in now.items():
            if self._seen.get(what) != text:
                line = f"  ... {text}" if what == "status" else f"  ... {what}: {text}"
                print(shown(line), flush=True)
        self._seen = now


def _grid(progress: ReleaseProgress, width: int) -> Table:
    """One row per component, one column per environment. The components' names are kept
    whole. Wider than width, the columns of the environments at work (a cell running, retried
    or failed) share what the others leave, equally, whatever their cells say, so they do not
    jump from one refresh to the next; their cells are cut with an ellipsis, never wrapped
    (rich shrinks only the columns it may wrap, so no_wrap is set on each cell instead)."""
    envs = progress.environments
    cells = {c: [progress.cells[env][c] for env in envs] for c in progress.components}
    header = ["COMPONENT", *(env.value for env in envs)]
    rows = [[component, *map(_cell_summary, row)] for component, row in cells.items()]
    shared = _natural_width(header, rows) > width
    table = Table(box=None, pad_edge=False, header_style="bold", expand=shared)
    table.add_column(_cut("COMPONENT"), no_wrap=True)
    for index, title in enumerate(header[1:]):
        column = [row[index] for row in cells.values()]
        if shared and any(cell.state in AT_WORK for cell in column):
            table.add_column(_cut(title), ratio=1)
        else:  # as wide as its cells: at most "waiting for approval"
            table.add_column(_cut(title), no_wrap=shared)
    for component, row in cells.items():
        table.add_row(
            _cut(component),
            *(_cut(_cell_summary(cell), STATE_STYLES.get(cell.state, "")) for cell in row),
        )
    return table


# The states of a deploy at work, whose cells say what it does (and may be long).
AT_WORK = (CellState.RUNNING, CellState.RETRYING, CellState.FAILED)


def _cut(text: str, style: str = "") -> Text:
    return Text(shown(text), style=style, no_wrap=True, overflow="ellipsis")


def _cell_summary(cell: Cell) -> str:
    """What a deploy is doing, in a grid cell (the error of a retried step goes below it)."""
    if cell.state is CellState.RUNNING:
        return f"{cell.activity or 'deploying'}..."
    if cell.state is CellState.RETRYING:
        return f"{cell.activity}, attempt {cell.attempt} failed"
    if cell.state is CellState.FAILED:
        return f"failed: {cell.error}"
    return cell.state.value


def _cell_text(cell: Cell) -> str:
    """What a deploy is doing, with the error of a retried step in full."""
    if cell.state is CellState.RETRYING:
        return f"{_cell_summary(cell)}: {cell.error}"
    return _cell_summary(cell)


# --- The catalog, the environments and the history ----------------------------------------------


def format_catalog(width: int | None = None) -> str:
    """The catalog's releases, one row each, in catalog order, with the version of each component
    they promote (width: as _table_text's); an invalid release is named below the table."""
    catalog = load_catalog()  # read and validated once, not once a release
    components = list(catalog.components)
    rows, invalid = [], []
    for key in catalog.release_keys():
        try:
            release = load_release(key, catalog=catalog)
        except ReleaseError as err:
            rows.append([key, *("-" for _ in components), "INVALID", "-"])
            invalid.append(f"{key} is invalid: {err}")
            continue
        versions = [release.versions.get(component, "-") for component in components]
        rows.append([key, *versions, _route(release.environments), str(release.release_date)])
    header = ["RELEASE", *components, "ENVIRONMENTS", "DATE"]
    return _table_text(header, rows, width, give_way=["DATE"], notes=invalid)


def _route(environments: list[Environment]) -> str:
    """A release's environments, first to last ("DEV to PROD"): it cannot skip one between."""
    first, last = environments[0].value, environments[-1].value
    return first if first == last else f"{first} to {last}"


def format_environments(width: int | None = None) -> str:
    """Which version of each component each environment holds, as a small table (width: as
    format_table's)."""
    state = release_management.environment_state()
    components = list(load_catalog().components)
    # Environments with a worker of their own whose files are not here, but in that worker's
    # root: as the latest release records here say they were left ("?": none says).
    own = [e for e in own_workers() if not files.environment_dir(e).is_dir()]
    recorded = records.recorded_state(own)
    rows = [
        [
            env.value,
            *(
                recorded[env].get(c, "?") if env in own else state[env].get(c, "-")
                for c in components
            ),
        ]
        for env in ENVIRONMENT_ORDER
    ]
    view = Group(Text("Environments now hold:"), _indented(_table(["ENV", *components], rows)))
    away = ", ".join(env.value for env in own)
    note = [f"({away}: as the release records say; their own workers hold the files.)"]
    return "\n".join(_plain(view, _table_width(width)) + (note if own else []))


def format_history(limit: int = 20, width: int | None = None) -> str:
    """The latest limit release runs, newest first (width: as _table_text's)."""
    latest = records.release_history(limit + 1)
    if not latest:
        return "No release has finished yet."
    short = _fits_a_terminal(width)
    rows = [_history_row(record, short) for record in latest[:limit]]
    header = ["RELEASE", "FINISHED", "RESULT", "DECISIONS", "STARTED"]
    older = [f"Older runs: --limit {2 * limit} shows more."] if len(latest) > limit else []
    return _table_text(header, rows, width, give_way=["STARTED", "DECISIONS"], notes=older)


def _history_row(record: dict[str, Any], short: bool) -> list[str]:
    """A release record as the history shows it: how it ended, who decided at its gates."""
    decisions = ", ".join(
        f"{d['environment']} {'approved' if d['approved'] else 'rejected'} by {d['by']}"
        if d["by"]
        else f"{d['environment']} expired"
        for d in record["decisions"]
    )
    return [
        record["release_key"],
        _recorded_time(record["finished"], short),
        # The record keeps the outcome but not its detail (who rejected, why it failed) apart.
        record["result"].removeprefix(f"Release {record['release_key']}: "),
        decisions or "-",
        _recorded_time(record["started"], short),
    ]


def _recorded_time(text: str, short: bool) -> str:
    """A time a record holds (ISO 8601; UTC if it names no zone), as a table shows it."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text  # a hand-edited record: shown as it is
    return table_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC), short)


def table_time(moment: datetime, short: bool) -> str:
    """A time in a table: in full, or (short, for a terminal) the time of day if it is today in
    UTC, else the day and the minute."""
    moment = moment.astimezone(UTC)
    if not short:
        return time_words(moment)
    if moment.date() == datetime.now(UTC).date():
        return f"{moment:%H:%M:%S}"
    return f"{moment:%Y-%m-%d %H:%M}"


def _table_text(
    header: list[str],
    rows: list[list[str]],
    width: int | None = None,
    give_way: list[str] | None = None,
    notes: list[str] | None = None,
) -> str:
    """A table with a header, a row to a line, and notes below it. Fitted to width (by default
    the terminal's): while it is too wide, the columns named in give_way are left out, in that
    order; then the widest cells but the first column's (a key, to be read and copied) are cut
    with an ellipsis, and a last line says how to see them whole. When the output is not a
    terminal, every column in full, for a log or grep."""
    fit = width or terminal_width()
    if fit is None:
        return "\n".join([*_plain(_table(header, rows), UNBOUNDED), *map(shown, notes or [])])
    for title in give_way or []:
        if _natural_width(header, rows) <= fit:
            break
        drop = header.index(title)
        header = header[:drop] + header[drop + 1 :]
        rows = [row[:drop] + row[drop + 1 :] for row in rows]
    lines = _plain(_table(header, rows, cut=True), fit)
    if _natural_width(header, rows, with_header=False) > fit:  # not only a title is cut
        lines.append("(Cut to fit the terminal: add | cat to the command to see every cell whole.)")
    return "\n".join(lines + [_cut_line(note, fit) for note in notes or []])


def _natural_width(header: list[str], rows: list[list[str]], with_header: bool = True) -> int:
    """How wide the table is with no cell cut (with_header: no title cut either)."""
    columns = zip(*([header] if with_header else []), *rows, strict=True)
    return sum(max(cell_len(shown(cell)) for cell in column) for column in columns) + 2 * (
        len(header) - 1
    )


def _cut_line(text: str, width: int) -> str:
    return _plain(_cut(text), width)[0]


def _fits_a_terminal(width: int | None) -> bool:
    """Whether a table is fitted to a width (given, or the terminal's): its times are short."""
    return (width or terminal_width()) is not None


def _table(header: list[str], rows: list[list[str]], cut: bool = False) -> Table:
    """rows under header. The first column names the row (a release key, an environment): it
    is kept whole. cut: the other columns may be cut with an ellipsis, else folded."""
    table = Table(box=None, pad_edge=False)
    table.add_column(Text(shown(header[0])), no_wrap=True)
    for title in header[1:]:
        table.add_column(_cut(title) if cut else Text(shown(title)), overflow="fold")
    for first, *others in rows:
        table.add_row(Text(shown(first)), *(_cut(c) if cut else Text(shown(c)) for c in others))
    return table


def format_deploys(
    deploys: list[FoundDeploy],
    env: Environment | None,
    component: str | None,
    width: int | None = None,
    more: bool = False,
) -> str:
    """The deploys the server found to env and/or of component, newest first (width: as
    _table_text's); more: there are older ones too."""
    asked = " ".join(
        ([f"of {component}"] if component else []) + ([f"to {env.value}"] if env else [])
    )
    if not deploys:
        return f"No deploy {asked} on this server."
    short = _fits_a_terminal(width)
    rows = [
        [
            d.release_key,
            table_time(d.started, short) if d.started else "?",
            d.environment,
            d.component,
            d.ending,
            d.release_outcome,
        ]
        for d in deploys
    ]
    header = ["RELEASE", "STARTED", "ENV", "COMPONENT", "DEPLOY", "RELEASE ENDED"]
    # The column every row has the same value in, as asked, goes first when it does not fit.
    same = [title for title, wanted in (("ENV", env), ("COMPONENT", component)) if wanted]
    table = _table_text(header, rows, width, give_way=[*same, "RELEASE ENDED"])
    older = [f"Older deploys {asked}: --limit {2 * len(deploys)} shows more."] if more else []
    return "\n".join([f"Deploys {asked}, newest first:", table, *older])


# --- Release trains ------------------------------------------------------------------------------

# When a train runs: every interval, or once at a time.
When: TypeAlias = timedelta | datetime


# How long after its time a one-shot train without a run is missed: its run would have started
# by then (trains.CATCHUP, the most a run may start late, is as long).
MISSED_AFTER = timedelta(minutes=1)


@dataclass(frozen=True)
class Train:
    """A release train as --schedules shows it (trains.py asks Temporal)."""

    schedule_id: str
    release_key: str
    when: When | None  # None: a spec not made by --schedule
    next_runs: list[datetime]
    last_run: tuple[datetime, str] | None  # when the latest run started and how it ended
    skipped: int  # runs skipped because the previous one still ran
    in_catalog: bool = True  # False: its release was removed from the catalog since

    def missed(self) -> bool:
        """A one-shot train whose time went by, a minute ago or more, without a run: the server
        was down then, for longer than the catch-up window (trains.CATCHUP), and will not run it
        late (though it may still list that time among its next runs)."""
        if not isinstance(self.when, datetime) or self.last_run is not None:
            return False
        return self.when + MISSED_AFTER < datetime.now(UTC)


def format_trains(trains: list[Train], width: int | None = None) -> str:
    """The release trains, one row each (width: as _table_text's), and a line for each train
    that will not run its release as it stands."""
    if not trains:
        return "No release train: python run_workflow.py --schedule KEY --every 1d makes one."
    short = _fits_a_terminal(width)
    rows = [
        [
            train.schedule_id,
            train.release_key,
            # A terminal has the time of a one-shot train under NEXT RUN (or LAST RUN).
            "once" if short and isinstance(train.when, datetime) else when_words(train.when),
            _next_run_words(train, short),
            _last_run_words(train, short),
        ]
        for train in trains
    ]
    header = ["SCHEDULE", "RELEASE", "RUNS", "NEXT RUN", "LAST RUN"]
    notes = [note for note in map(_train_warning, trains) if note]
    return _table_text(header, rows, width, give_way=["SCHEDULE"], notes=notes)


def _train_warning(train: Train) -> str:
    """Why a train will not run its release as it stands ("": it will)."""
    removes = f"--unschedule {train.release_key} removes it."
    if not train.in_catalog:
        return f"{train.release_key} is not in the catalog: its train's runs fail. {removes}"
    if train.missed():
        return (
            f"{train.schedule_id} missed its time (the server was down then) and will not run: "
            f"{removes}"
        )
    return ""


def _next_run_words(train: Train, short: bool) -> str:
    if train.missed():
        return "missed"
    coming = [moment for moment in train.next_runs if moment > datetime.now(UTC)]
    return table_time(coming[0], short) if coming else "-"


def _last_run_words(train: Train, short: bool) -> str:
    """When the train's latest run started and how it ended, and how many runs it skipped."""
    skipped = f" ({train.skipped} skipped)" if train.skipped else ""
    if train.last_run is None:
        return f"-{skipped}"
    started, ending = train.last_run
    return f"{table_time(started, short)} {ending}{skipped}"


def when_words(when: When | None) -> str:
    """When a train runs, in words: "every 10 minutes", "once, at 2026-12-01 09:00:00 UTC"."""
    if isinstance(when, datetime):
        return f"once, at {time_words(when)}"
    if when is None:
        return "?"
    seconds = int(when.total_seconds())
    unit, size = next((unit, size) for unit, size in TIME_UNITS if seconds % size == 0)
    count = seconds // size
    return f"every {count} {unit}{'s' if count != 1 else ''}"


# The units an interval is worded in, largest first, with their length in seconds.
TIME_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def time_words(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


# --- The worker's log on a terminal -------------------------------------------------------------

# A line of the worker's log about a release starts with its key: "KEY DEV frontend: ..." (a
# step's), "KEY: ..." (the release's). Only a key has a dash; an environment's name has none.
ABOUT_A_RELEASE = re.compile(rf"(?P<key>{RELEASE_KEY_PATTERN})(?::? )(?P<rest>.*)", re.DOTALL)
# Under the time: where a wrapped line's next lines start.
LOG_INDENT = " " * len("13:21:16 ")


class TerminalLog(logging.Formatter):
    """The worker's log on a terminal as wide as width() says: the key of the release a line is
    about (long, and the same for most lines in a row) on a line of its own when it changes,
    then the lines without it; a line still too wide wrapped between words, under its text. (In
    a file or a pipe the worker logs a line as it is, key and all, for grep.)"""

    def __init__(self, width: Callable[[], int]) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")
        self._width = width
        self._release: str | None = None  # the release of the lines above, if any

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.stack_info:  # a traceback: as it is
            self._release = None
            return super().format(record)
        message = record.getMessage()
        found = ABOUT_A_RELEASE.fullmatch(message)
        key = found["key"] if found and "-" in found["key"] else None
        lines = [key] if key and key != self._release else []
        self._release = key
        said = found["rest"] if found and key else message
        text = f"{self.formatTime(record, self.datefmt)} {said}"
        lines += textwrap.wrap(
            kept_whole(text),
            max(self._width(), 40),
            subsequent_indent=LOG_INDENT,
            break_long_words=False,  # a file name or a link stays whole
            break_on_hyphens=False,  # so does a release key
        ) or [text]
        return "\n".join(lines).replace("\u00a0", " ")


# --- Drawing ------------------------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """argparse, saying a mistake in one line (wrapped between words on a terminal) instead of
    the usage followed by the mistake."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: {message} (see {self.prog} --help)"
        self.exit(2, fitted(line, sys.stderr) + "\n")


def fitted(text: str, stream: TextIO | None = None) -> str:
    """text, each line wrapped between words to the width of the terminal that stream (stdout
    by default) is, if it is one; a line for a log or grep otherwise. A word longer than the
    line (a link, a path) is kept whole."""
    if not (stream or sys.stdout).isatty():
        return text
    return wrapped(text, shutil.get_terminal_size().columns)


# What wrapping keeps on one line (textwrap breaks at ASCII whitespace only, so no-break spaces
# hold it together): a version change, "(1.1 -> 1.0)", and a command a person copies and pastes
# (a command broken over lines would run as several), which may then overflow the line.
KEPT_TOGETHER = (" -> ", "\u00a0->\u00a0")
COMMAND = re.compile(
    r"\b(?:python3? [\w./-]+\.py(?: [A-Z0-9][A-Z0-9-]*)*"  # a script, and release keys or ENVs
    r"|temporal(?: [a-z][a-z-]*){1,3}(?= -))"  # the CLI, its subcommands (then a flag)
    r"(?: --?[a-z][\w-]*(?: (?!-)[^\s,;()`]*[^\s,;()`.:])?)*"  # flags, each with its value
)


def kept_whole(text: str) -> str:
    """text with the spaces of what must stay on one line made no-break (see KEPT_TOGETHER)."""
    text = text.replace(*KEPT_TOGETHER)
    return COMMAND.sub(lambda found: found[0].replace(" ", "\u00a0"), text)


def wrapped(text: str, width: int) -> str:
    """text, each line wrapped between words to width columns, under its own indentation (see
    fitted)."""
    lines = [_wrapped_line(line, width) for line in kept_whole(text).splitlines()]
    return "\n".join(lines).replace("\u00a0", " ")


def _wrapped_line(line: str, width: int) -> str:
    if len(line) <= width:
        return line
    indent = line[: len(line) - len(line.lstrip(" "))]
    return textwrap.fill(
        line.strip(),
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def terminal_width() -> int | None:
    """The terminal's width in columns, or None when the output is not a terminal."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _table_width(width: int | None) -> int:
    """The width to draw a table at: width, the terminal's, or else one that holds any row."""
    return width or terminal_width() or UNBOUNDED


# Wider than any row of the catalog, the environments or the history: a row is not wrapped.
UNBOUNDED = 10_000


# How far the grid and the lines under a table's title are indented.
INDENT = 2


def _indented(renderable: RenderableType) -> Padding:
    return Padding(renderable, (0, 0, 0, INDENT), expand=False)


def _plain(renderable: RenderableType, width: int) -> list[str]:
    """renderable as plain lines (no colours) of at most width columns."""
    text = io.StringIO()
    Console(file=text, width=width, color_system=None).print(renderable)
    return [line.rstrip() for line in text.getvalue().splitlines()]
