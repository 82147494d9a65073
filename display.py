"""What the starter shows (no Temporal here): a release's progress, the catalog, the environments,
the history and the trains; and text fitted to a terminal. Every text goes through shared.shown,
so nothing said can redraw the screen or forge a line; rich.text.Text keeps rich's markup out."""

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
from functools import partial
from typing import Any, NoReturn, TextIO, TypeAlias

from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

import artifacts
import files
import records
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
STATUS_WIDTH = 100  # the width of --status's grid when its output is not a terminal
UNBOUNDED = 10_000  # wider than any row of a table: a row is not wrapped
INDENT = 2  # how far the grid and the lines under a title are indented
# The states of a deploy at work, whose cells say what it does (and may be long).
AT_WORK = (CellState.RUNNING, CellState.RETRYING, CellState.FAILED)


# --- A release's progress -----------------------------------------------------------------------


def progress_view(progress: ReleaseProgress, width: int) -> Group:
    """The release's status; its grid, at most width columns; the error of each step being
    retried, in full; and the command that approves an open gate, or ends a soak."""
    key = progress.release_key
    below: list[RenderableType] = [_grid(progress, width - INDENT)] if progress.components else []
    below += [
        Text(shown(f"{env.value} {component}: {_cell_summary(cell, full=True)}"), style="yellow")
        for env, row in progress.cells.items()
        for component, cell in row.items()
        if cell.state is CellState.RETRYING
    ]
    if progress.gate is not None:
        below.append(Text("To approve, type this (or --reject it, with --reason TEXT):"))
        below.append(Text(shown(approve_command(key, progress.gate)), style="bold"))
        if progress.gate_expires:
            left = _seconds_left(progress.gate_expires)
            below.append(Text(f"The gate expires in {left} s: then REJECTED."))
    if progress.soak is not None:
        env, left = progress.soak.environment.value, _seconds_left(progress.soak.ends)
        below.append(Text(f"{env} soaks for {left} s more. To end the soak now, type:"))
        below.append(Text(shown(skip_soak_command(key)), style="bold"))
    return Group(Text(shown(f"{key}: {progress.status}")), *map(_indented, below))


def _seconds_left(until: str) -> int:
    return max(0, math.ceil((datetime.fromisoformat(until) - datetime.now(UTC)).total_seconds()))


def format_progress(progress: ReleaseProgress, width: int | None = None) -> list[str]:
    """The progress view as plain lines, at most width columns (by default the terminal's)."""
    width = width or terminal_width() or STATUS_WIDTH
    return _plain(progress_view(progress, width), width)


class LiveGrid:
    """The progress view redrawn in place; lines printed meanwhile go above it."""

    def __init__(self) -> None:
        self._live = Live(console=Console(), auto_refresh=False)

    def show(self, progress: ReleaseProgress) -> None:
        view = progress_view(progress, self._live.console.width)
        self._live.update(view, refresh=self._live.is_started)
        self._live.start(refresh=True)  # draws the first grid; does nothing after that

    def close(self, last: ReleaseProgress | None) -> None:
        """Draw the grid a last time (as last says, if known) and leave it on screen."""
        if last is not None:
            self._live.update(progress_view(last, self._live.console.width))
            self._live.start()
        self._live.stop()


class ProgressLog:
    """The progress as plain lines, one per change, each error in full: for a log."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def show(self, progress: ReleaseProgress) -> None:
        now = {"status": progress.status} | {
            f"{env.value} {component}": _cell_summary(cell, full=True)
            for env, row in progress.cells.items()
            for component, cell in row.items()
        }
        for what, text in now.items():
            if self._seen.get(what) != text:
                line = f"  ... {text}" if what == "status" else f"  ... {what}: {text}"
                print(shown(line), flush=True)
        self._seen = now


def _grid(progress: ReleaseProgress, width: int) -> Table:
    """A row per component, a column per environment. Wider than width, the columns at work share
    what the others leave, equally, so they do not jump between refreshes; their cells are cut,
    never wrapped (rich shrinks only columns it may wrap, so no_wrap is set on each cell)."""
    envs = progress.environments
    cells = {c: [progress.cells[env][c] for env in envs] for c in progress.components}
    header = ["COMPONENT", *(env.value for env in envs)]
    rows = [[component, *map(_cell_summary, row)] for component, row in cells.items()]
    shared = _natural_width(header, rows) > width
    table = Table(box=None, pad_edge=False, header_style="bold", expand=shared)
    table.add_column(_cut("COMPONENT"), no_wrap=True)
    for env in envs:
        if shared and any(progress.cells[env][c].state in AT_WORK for c in cells):
            table.add_column(_cut(env.value), ratio=1)
        else:  # as wide as its cells: at most "waiting for approval"
            table.add_column(_cut(env.value), no_wrap=shared)
    for component, row in cells.items():
        states = [_cut(_cell_summary(cell), STATE_STYLES.get(cell.state, "")) for cell in row]
        table.add_row(_cut(component), *states)
    return table


def _cut(text: str, style: str = "") -> Text:
    return Text(shown(text), style=style, no_wrap=True, overflow="ellipsis")


def _cell_summary(cell: Cell, full: bool = False) -> str:
    """What a deploy is doing; full: with a retried step's error (in the grid, it goes below)."""
    if cell.state is CellState.RUNNING:
        return f"{cell.activity or 'deploying'}..."
    if cell.state is CellState.RETRYING:
        failed = f"{cell.activity}, attempt {cell.attempt} failed"
        return f"{failed}: {cell.error}" if full else failed
    if cell.state is CellState.FAILED:
        return f"failed: {cell.error}"
    return cell.state.value


# --- The catalog, the environments and the history ----------------------------------------------


def format_catalog(width: int | None = None) -> str:
    """The catalog's releases, each with the version of each component it promotes; an invalid
    one is named below the table."""
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
        first, last = release.environments[0].value, release.environments[-1].value
        route = first if first == last else f"{first} to {last}"  # it cannot skip one between
        rows.append([key, *versions, route, str(release.release_date)])
    header = ["RELEASE", *components, "ENVIRONMENTS", "DATE"]
    return _table_text(header, rows, width or terminal_width(), give_way=["DATE"], notes=invalid)


def format_environments(width: int | None = None) -> str:
    """Which version of each component each environment holds, as a small table."""
    state = artifacts.environment_state()
    components = list(load_catalog().components)
    # Environments whose files are in their own worker's root: as the records here say ("?": none).
    own = [e for e in own_workers() if not files.environment_dir(e).is_dir()]
    recorded = records.recorded_state(own)
    rows = []
    for env in ENVIRONMENT_ORDER:
        held, placeholder = (recorded[env], "?") if env in own else (state[env], "-")
        rows.append([env.value, *(held.get(component, placeholder) for component in components)])
    view = Group(Text("Environments now hold:"), _indented(_table(["ENV", *components], rows)))
    lines = _plain(view, width or terminal_width() or UNBOUNDED)
    away = ", ".join(env.value for env in own)
    note = [f"({away}: as the release records say; their own workers hold the files.)"]
    return "\n".join(lines + (note if own else []))


def format_history(limit: int = 20, width: int | None = None) -> str:
    """The latest limit release runs, newest first."""
    latest = records.release_history(limit + 1)
    if not latest:
        return "No release has finished yet."
    fit = width or terminal_width()
    rows = [_history_row(record, short=fit is not None) for record in latest[:limit]]
    header = ["RELEASE", "FINISHED", "RESULT", "DECISIONS", "STARTED"]
    older = [f"Older runs: --limit {2 * limit} shows more."] if len(latest) > limit else []
    return _table_text(header, rows, fit, give_way=["STARTED", "DECISIONS"], notes=older)


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
    """A time a record holds (ISO 8601; UTC if it names no zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text  # a hand-edited record: shown as it is
    return table_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC), short)


def table_time(moment: datetime, short: bool) -> str:
    """A time in full, or (short, for a terminal) the time of day if today, else to the minute."""
    moment = moment.astimezone(UTC)
    if not short:
        return time_words(moment)
    if moment.date() == datetime.now(UTC).date():
        return f"{moment:%H:%M:%S}"
    return f"{moment:%Y-%m-%d %H:%M}"


def _table_text(
    header: list[str], rows: list[list[str]], fit: int | None, give_way: list[str], notes: list[str]
) -> str:
    """A table and notes below it, fitted to fit columns (a terminal's): the columns in give_way
    are left out, in turn, while it is too wide; then cells but the first column's (a key to copy)
    are cut, and a line says so. fit None (not a terminal): every column in full, for grep."""
    if fit is None:
        return "\n".join([*_plain(_table(header, rows), UNBOUNDED), *map(shown, notes)])
    for title in give_way:
        if _natural_width(header, rows) <= fit:
            break
        drop = header.index(title)
        header = header[:drop] + header[drop + 1 :]
        rows = [row[:drop] + row[drop + 1 :] for row in rows]
    lines = _plain(_table(header, rows, cut=True), fit)
    if _natural_width(header, rows, with_header=False) > fit:  # not only a title is cut
        lines.append("(Cut to fit the terminal: add | cat to the command to see every cell whole.)")
    return "\n".join(lines + [_plain(_cut(note), fit)[0] for note in notes])


def _natural_width(header: list[str], rows: list[list[str]], with_header: bool = True) -> int:
    """How wide the table is with no cell cut (with_header: no title cut either)."""
    columns = zip(*([header] if with_header else []), *rows, strict=True)
    widths = [max(cell_len(shown(cell)) for cell in column) for column in columns]
    return sum(widths) + 2 * (len(header) - 1)


def _table(header: list[str], rows: list[list[str]], cut: bool = False) -> Table:
    """rows under header; the first column (a key) whole, the others cut (if cut) or folded."""
    table = Table(box=None, pad_edge=False)
    table.add_column(Text(shown(header[0])), no_wrap=True)
    for title in header[1:]:
        table.add_column(_cut(title) if cut else Text(shown(title)), overflow="fold")
    for first, *others in rows:
        table.add_row(Text(shown(first)), *(_cut(c) if cut else Text(shown(c)) for c in others))
    return table


def format_deploys(
    deploys: list[FoundDeploy], env: Environment | None, component: str | None, more: bool = False
) -> str:
    """The deploys the server found to env and/or of component, newest first; more: older too."""
    asked = " ".join(
        ([f"of {component}"] if component else []) + ([f"to {env.value}"] if env else [])
    )
    if not deploys:
        return f"No deploy {asked} on this server."
    fit = terminal_width()
    rows = [
        [
            d.release_key,
            table_time(d.started, fit is not None) if d.started else "?",
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
    table = _table_text(header, rows, fit, give_way=[*same, "RELEASE ENDED"], notes=[])
    older = [f"Older deploys {asked}: --limit {2 * len(deploys)} shows more."] if more else []
    return "\n".join([f"Deploys {asked}, newest first:", table, *older])


# --- Release trains ------------------------------------------------------------------------------

When: TypeAlias = timedelta | datetime  # when a train runs: every interval, or once at a time
# A one-shot train with no run this long after its time missed it (trains.CATCHUP is as long).
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
        """A one-shot train with no run, its time long gone: the server was down then, longer than
        trains.CATCHUP, and will not run it (though it may list that time among its next runs)."""
        if not isinstance(self.when, datetime) or self.last_run is not None:
            return False
        return self.when + MISSED_AFTER < datetime.now(UTC)


def format_trains(trains: list[Train], width: int | None = None) -> str:
    """The release trains, and a line for each that will not run its release as it stands."""
    if not trains:
        return "No release train: python run_workflow.py --schedule KEY --every 1d makes one."
    fit = width or terminal_width()
    rows = [_train_row(train, short=fit is not None) for train in trains]
    header = ["SCHEDULE", "RELEASE", "RUNS", "NEXT RUN", "LAST RUN"]
    notes = [note for note in map(_train_warning, trains) if note]
    return _table_text(header, rows, fit, give_way=["SCHEDULE"], notes=notes)


def _train_row(train: Train, short: bool) -> list[str]:
    """A train's row; short (a terminal): a one-shot train's time is under NEXT RUN or LAST RUN."""
    runs = "once" if short and isinstance(train.when, datetime) else when_words(train.when)
    coming = [moment for moment in train.next_runs if moment > datetime.now(UTC)]
    next_run = "missed" if train.missed() else table_time(coming[0], short) if coming else "-"
    last_run = (
        f"{table_time(train.last_run[0], short)} {train.last_run[1]}" if train.last_run else "-"
    )
    skipped = f" ({train.skipped} skipped)" if train.skipped else ""
    return [train.schedule_id, train.release_key, runs, next_run, last_run + skipped]


def _train_warning(train: Train) -> str:
    """Why a train will not run its release as it stands ("": it will)."""
    if not train.in_catalog:
        why = f"{train.release_key} is not in the catalog: its train's runs fail."
    elif train.missed():
        why = f"{train.schedule_id} missed its time (the server was down then) and will not run:"
    else:
        return ""
    return f"{why} --unschedule {train.release_key} removes it."


def when_words(when: When | None) -> str:
    """When a train runs, in words: "every 10 minutes", "once, at 2026-12-01 09:00:00 UTC"."""
    if isinstance(when, datetime):
        return f"once, at {time_words(when)}"
    if when is None:
        return "?"
    seconds = int(when.total_seconds())
    units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
    unit, size = next((unit, size) for unit, size in units if seconds % size == 0)
    count = seconds // size
    return f"every {count} {unit}{'s' if count != 1 else ''}"


def time_words(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


# --- The worker's log on a terminal -------------------------------------------------------------

# A log line about a release starts with its key: "KEY DEV frontend: ..." (a step's), "KEY: ..."
# (the release's). Only a key has a dash; an environment's name has none.
ABOUT_A_RELEASE = re.compile(rf"(?P<key>{RELEASE_KEY_PATTERN})(?::? )(?P<rest>.*)", re.DOTALL)
LOG_INDENT = " " * len("13:21:16 ")  # under the time: where a wrapped line's next lines start


class TerminalLog(logging.Formatter):
    """The worker's log on a terminal width() wide: the release key a line is about (long, and the
    same for many lines) on a line of its own when it changes, then the lines without it, wrapped
    between words. (In a file or a pipe the worker logs each line whole, key and all, for grep.)"""

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
        width = max(self._width(), 40)
        lines += wrap_between_words(kept_whole(text), width, subsequent_indent=LOG_INDENT) or [text]
        return "\n".join(lines).replace("\u00a0", " ")


# --- Text fitted to a terminal -------------------------------------------------------------------


class OneLineParser(argparse.ArgumentParser):
    """argparse, saying a mistake in one line instead of the usage and the mistake."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: {message} (see {self.prog} --help)"
        self.exit(2, fitted(line, sys.stderr) + "\n")


def fitted(text: str, stream: TextIO | None = None) -> str:
    """text wrapped between words to the terminal's width if stream (stdout) is one, else as it
    is (a line for grep). A word longer than the line (a link, a path) is kept whole."""
    tty = (stream or sys.stdout).isatty()
    return wrapped(text, shutil.get_terminal_size().columns) if tty else text


# What wrapping keeps on a line (no-break spaces hold it, as textwrap breaks at ASCII whitespace):
# a version change, "(1.1 -> 1.0)", and a command to copy (broken, it would run as several).
COMMAND = re.compile(
    r"\b(?:python3? [\w./-]+\.py(?: [A-Z0-9][A-Z0-9-]*)*"  # a script, and release keys or ENVs
    r"|temporal(?: [a-z][a-z-]*){1,3}(?= -))"  # the CLI, its subcommands (then a flag)
    r"(?: --?[a-z][\w-]*(?: (?!-)[^\s,;()`]*[^\s,;()`.:])?)*"  # flags, each with its value
)
# Lines broken between words only: a word longer than the line (a link, a path, a key) stays whole.
wrap_between_words = partial(textwrap.wrap, break_long_words=False, break_on_hyphens=False)


def kept_whole(text: str) -> str:
    """text with the spaces of what stays on one line made no-break."""
    text = text.replace(" -> ", "\u00a0->\u00a0")
    return COMMAND.sub(lambda found: found[0].replace(" ", "\u00a0"), text)


def wrapped(text: str, width: int) -> str:
    """text, each line wrapped between words to width columns, under its own indentation."""
    lines = kept_whole(text).splitlines()
    for number, line in enumerate(lines):
        if len(line) > width:
            indent = line[: len(line) - len(line.lstrip(" "))]
            folded = wrap_between_words(
                line.strip(), width, initial_indent=indent, subsequent_indent=indent
            )
            lines[number] = "\n".join(folded)
    return "\n".join(lines).replace("\u00a0", " ")


def terminal_width() -> int | None:
    """The terminal's width in columns, or None when the output is not a terminal."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _indented(renderable: RenderableType) -> Padding:
    return Padding(renderable, (0, 0, 0, INDENT), expand=False)


def _plain(renderable: RenderableType, width: int) -> list[str]:
    text = io.StringIO()
    Console(file=text, width=width, color_system=None).print(renderable)
    return [line.rstrip() for line in text.getvalue().splitlines()]
