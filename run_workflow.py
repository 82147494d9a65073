"""Terminal 3: the starter. `python run_workflow.py [KEY]` starts a release (or attaches to it if
it runs already) and waits for its result; `--help` lists its other commands (setup.md shows each).

This is the command line and what each command prints; release_client.py talks to the release.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from temporalio.service import RPCError, RPCStatusCode

import search_attributes
import trains
from catalog import load_catalog, load_release
from connection import TemporalUnreachable, connect, exit_now, output_closed, web_ui_url
from display import (
    OneLineParser,
    fitted,
    format_catalog,
    format_deploys,
    format_environments,
    format_history,
    format_trains,
    table_time,
    terminal_width,
    when_words,
)
from release_client import StarterError, cancel, decide, run_release, send_update, status_of
from shared import (
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    Environment,
    Outcome,
    ReleaseError,
    SkipSoakInput,
    shown,
    visible,
)
from utils import check_demo_root, check_task_queue, environment_argument, own_workers
from workflows import ReleaseWorkflow

# Pick the release to run: uncomment one line (demos.md runs all six, in this order). The name
# is the original demo's, as its docs use it.
releasekey = "RELEASE-NOV-23-INITIAL"
# releasekey = "RELEASE-NOV-23-HOTFIX-STAGE"
# releasekey = "RELEASE-DEC-2023-BUGFIXES-PROD"
# releasekey = "RELEASE-JAN-24-ALPHA-DEV"
# releasekey = "RELEASE-JAN-24-ALPHA-QC"
# releasekey = "RELEASE-JAN-24-ALPHA-PROD"

# The commands that ask a release through Temporal, each naming the release KEY it is about.
RELEASE_COMMANDS = ("status", "approve", "reject", "cancel", "skip_soak")
# How many rows --history shows unless --limit says otherwise, and the most it may ask for.
HISTORY_ROWS, MAX_HISTORY_ROWS = 20, 1000
T = TypeVar("T")


async def main(argv: list[str]) -> int:
    """Do what the command line argv asks; return the exit status."""
    args = parse_args(argv)
    try:
        check_demo_root()
        own_workers()
        if not (args.list or args.envs or args.history):  # the others talk to Temporal
            check_task_queue()
    except ValueError as err:
        return _refuse(err, 2)
    try:
        if args.list or args.envs:
            print(format_catalog() if args.list else format_environments())
            return 0
        if args.history and (args.env or args.component):
            print(await deploy_history(args.env, args.component, args.limit or HISTORY_ROWS))
            return 0
        if args.history:
            print(format_history(args.limit or HISTORY_ROWS))
            return 0
        if (key := _command_key(args)) is not None:
            return await release_command(args, key)
        if args.schedules or args.schedule or args.unschedule:
            return await train_command(args)
        release = load_release(args.key or releasekey)  # an unknown key is refused before a start
        result = await run_release(await connect(), release)
    except (ReleaseError, StarterError, TemporalUnreachable, trains.TrainError) as err:
        return _refuse(err, 1)
    print(fitted(f"Result: {shown(str(result))}"))
    print(format_environments())
    return 0 if result.outcome is Outcome.SUCCESS else 1


def _command_key(args: argparse.Namespace) -> str | None:
    """The release key a command about one release names (None: not such a command)."""
    return next((k for c in RELEASE_COMMANDS if (k := getattr(args, c)) is not None), None)


def _release_keys(key: str | None) -> list[str]:
    """The catalog's release keys, once key (if any) is found among them."""
    keys = load_catalog().release_keys()
    if key is not None and key not in keys:
        raise StarterError(f"Unknown release key {key!r}. Valid keys: {', '.join(keys)}")
    return keys


async def release_command(args: argparse.Namespace, key: str) -> int:
    """A command about one release (RELEASE_COMMANDS): it answers within seconds or says why."""
    _release_keys(key)
    client = await connect()
    try:
        if args.status is not None:
            print("\n".join(await status_of(client, key)))
        elif args.cancel is not None:
            result = await cancel(client, key, args.reason or "")
            print(fitted(f"Result: {shown(str(result))}"))
            return 0 if result.outcome is Outcome.CANCELLED else 1
        elif args.skip_soak is not None:
            request = SkipSoakInput(by=args.by or "")
            print(fitted(shown(await send_update(client, key, ReleaseWorkflow.skip_soak, request))))
        elif args.gate is None:
            raise StarterError(f"say which gate you decide: --gate ENV (see --status {key})")
        else:
            reason = None if args.approve is not None else args.reason or ""
            print(fitted(shown(await decide(client, key, args.gate, args.by or "", reason))))
    except RPCError as err:
        raise StarterError(f"Temporal did not answer as expected: {err.message}") from None
    return 0


async def train_command(args: argparse.Namespace) -> int:
    """Create, list or delete release trains (Temporal Schedules that start a release)."""
    # A train is removed whatever the catalog says now: its release may have left it since.
    keys = _release_keys(args.schedule)
    client = await connect()
    try:
        if args.schedules:
            print(format_trains(await trains.trains(client, keys)))
            return 0
        if args.unschedule:
            print(fitted(shown(await trains.unschedule(client, args.unschedule))))
            return 0
        release, when = load_release(args.schedule), args.every or args.at
        train = await trains.schedule_release(client, release, when)
    except RPCError as err:
        raise StarterError(f"Temporal did not answer as expected: {err.message}") from None
    print(fitted(f"Created train {train.schedule_id}: {when_words(train.when)}."))
    short = terminal_width() is not None
    coming = ", ".join(table_time(moment, short) for moment in train.next_runs[:3])
    print(fitted(f"Next runs{' (UTC)' if short else ''}: {coming or 'none'}"))
    schedules = web_ui_url(client).removesuffix("/workflows") + "/schedules"
    print(f"See it on the Web UI's Schedules page:\n  {schedules}")
    return 0


async def deploy_history(env: Environment | None, component: str | None, limit: int) -> str:
    """The latest deploys to env and/or of component, found by their search attributes: what the
    Web UI's list gives, filtered by DeployEnvironment and DeployComponent."""
    components = list(load_catalog().components)
    if component is not None and component not in components:
        raise StarterError(f"No component {component!r} in the catalog: use one of {components}")
    client = await connect()
    try:
        found = await search_attributes.find_deploys(client, env, component, limit + 1)
    except RPCError as err:
        if err.status == RPCStatusCode.INVALID_ARGUMENT and "search attribute" in err.message:
            raise StarterError(
                f"{err.message}: this server has not registered the demo's search attributes "
                "yet; start the worker (python run_worker.py) once, and it will"
            ) from None
        raise StarterError(f"Temporal did not answer as expected: {err.message}") from None
    return format_deploys(found[:limit], env, component, more=len(found) > limit)


# --- The command line ---------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The starter's command line, or exit 2 with one line saying what is wrong."""
    parser = _parser()
    args = parser.parse_args(argv)
    for option, commands in QUALIFIES.items():
        if getattr(args, option) is not None and not any(getattr(args, c) for c in commands):
            parser.error(f"--{option} goes with {' or '.join(f'--{c}' for c in commands)}")
    if args.schedule is not None and (args.every is None) == (args.at is None):
        parser.error("--schedule takes one of --every INTERVAL or --at TIME")
    return args


# The commands each option qualifies; with none of them, it would be silently ignored.
QUALIFIES = {
    "gate": ("approve", "reject"),
    "by": ("approve", "reject", "skip_soak"),
    "reason": ("reject", "cancel"),
    "every": ("schedule",),
    "at": ("schedule",),
    "env": ("history",),
    "component": ("history",),
    "limit": ("history",),
}
# What to do, one at a time: a command that prints, or one about the release KEY it names.
COMMANDS = (
    ("--list", "print the releases in the catalog"),
    ("--envs", "print what each environment holds"),
    ("--history", "print the latest release runs"),
    ("--status KEY", "print the progress grid of release KEY"),
    ("--approve KEY", "approve the gate KEY is waiting at"),
    ("--reject KEY", "reject the gate KEY is waiting at"),
    ("--cancel KEY", "cancel release KEY"),
    ("--skip-soak KEY", "end the soak release KEY is in, now"),
    ("--schedule KEY", "make a train: start KEY on a schedule"),
    ("--schedules", "print the release trains"),
    ("--unschedule KEY", "delete the train of KEY"),
)


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="run_workflow.py", description="Start a release and wait for its result."
    )
    one = parser.add_mutually_exclusive_group()  # one thing at a time
    one.add_argument("key", nargs="?", type=_key, help=f"release key (default {releasekey})")
    for command, help in COMMANDS:
        flag, _, metavar = command.partition(" ")
        if metavar:
            one.add_argument(flag, metavar=metavar, type=_key, help=help)
        else:
            one.add_argument(flag, action="store_true", help=help)
    _add_options(parser)
    _add_history_options(parser)
    return parser


def _add_options(parser: argparse.ArgumentParser) -> None:
    """The options of --schedule, --approve, --reject, --skip-soak and --cancel (QUALIFIES)."""
    parser.add_argument(
        "--every",
        metavar="INTERVAL",
        type=partial(_typed, trains.interval),
        help="with --schedule: how often, as 30s, 10m, 1h or 1d",
    )
    parser.add_argument(
        "--at",
        metavar="TIME",
        type=partial(_typed, trains.moment),
        help="with --schedule: once, at an ISO 8601 time such as 2026-12-01T09:00:00Z",
    )
    parser.add_argument(
        "--gate",
        type=environment_argument,
        choices=list(Environment),
        help="the environment whose approval gate you decide",
    )
    parser.add_argument(
        "--by",
        metavar="NAME",
        type=partial(_text, MAX_NAME_LENGTH),
        help="who approves, rejects or skips a soak",
    )
    parser.add_argument(
        "--reason",
        metavar="TEXT",
        type=partial(_text, MAX_REASON_LENGTH),
        help="why, when rejecting or cancelling",
    )


def _add_history_options(parser: argparse.ArgumentParser) -> None:
    """--history's options: with one, it asks the server instead of reading the records."""
    parser.add_argument(
        "--env",
        type=environment_argument,
        choices=list(Environment),
        help="with --history: the deploys to this environment, from the server",
    )
    parser.add_argument(
        "--limit",
        metavar="N",
        type=partial(_typed, _limit),
        help=f"with --history: how many rows, newest first (default {HISTORY_ROWS})",
    )
    parser.add_argument(
        "--component",
        metavar="NAME",
        type=partial(_text, MAX_NAME_LENGTH),
        help="with --history: the deploys of this component, from the server",
    )


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_HISTORY_ROWS:
        raise ValueError(f"a whole number from 1 to {MAX_HISTORY_ROWS}, not {text!r}")
    return int(text)


def _key(text: str) -> str:
    """A release key argument: a blank one is refused, not taken for the default release."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a release key cannot be empty; --list shows the keys")
    return text


def _typed(parse: Callable[[str], T], text: str) -> T:
    """An argument parsed by parse, which says what is wrong in a ValueError."""
    try:
        return parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _text(limit: int, value: str) -> str:
    """A name or a reason: not blank, at most limit characters, printable only (an escape code or
    a line break would redraw a terminal or forge a line)."""
    if not visible(value):
        raise argparse.ArgumentTypeError("empty or invisible")
    if not value.isprintable():
        raise argparse.ArgumentTypeError(
            "printable characters only: no escape codes, tabs or line breaks"
        )
    if len(value) > limit:
        raise argparse.ArgumentTypeError(f"at most {limit} characters, not {len(value)}")
    return value


def _refuse(err: Exception, status: int) -> int:
    """Say why in one line on stderr (wrapped to a terminal's width); return status."""
    print(fitted(f"run_workflow.py: {shown(str(err))}", sys.stderr), file=sys.stderr)
    return status


if __name__ == "__main__":
    try:
        code = asyncio.run(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print(
            "\nStopped waiting. The release goes on in Temporal; run again to attach.",
            file=sys.stderr,
        )
        code = 130
    except BrokenPipeError:  # what it printed goes into a pipe nobody reads any more
        code = output_closed()
    exit_now(code)
