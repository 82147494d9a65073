"""The ledger: every change the release system makes, made once and recorded once.

A step that has checked its change is not made yet calls commit: the change is written aside,
recorded in the ledger (database/ledger.jsonl), then renamed into place, so that whatever the
moment of a crash, the retried step neither makes it twice nor records it twice. A step holds its
target's lock (exclusive) while it checks and changes it. Plain Python, no Temporal.
"""

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from catalog import listed
from files import (
    json_or_none,
    ledger_path,
    lock_path,
    no_links,
    read_bytes,
    read_text,
    where,
    write_temp,
)
from shared import ChangeMadeTwice, Deployment

_log = logging.getLogger("release_management")


def commit(path: Path, text: str, ledger_line: dict[str, Any]) -> None:
    """Make one change: write it aside, record it in the ledger, then rename it into place.

    A crash before the rename leaves the change undone: the retried step makes it, and its
    ledger line, the same change, is not written twice (append_ledger). A crash after the
    rename leaves it done and recorded: the retry finds it done. A step calls this only once it
    has checked that the change is not made, so a target already holding text is refused.
    """
    if read_text(path) == text:
        raise ChangeMadeTwice(
            f"{where(path)} already holds this change: the step must check "
            "its end state before it changes anything"
        )
    temp = write_temp(path, text)
    append_ledger(ledger_line)
    os.replace(temp, path)


def ledger_line(deployment: Deployment, step: str) -> dict[str, Any]:
    return {
        "release_key": deployment.release_key,
        "run_id": deployment.release_run_id,
        "env": deployment.environment.value,
        "component": deployment.component,
        "version": deployment.version,
        "step": step,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


# What makes two ledger lines one change: a step of one release run. (A reset's new run that finds
# a change made changes nothing and writes nothing; one that must make it again records it again.)
SAME_CHANGE = ("release_key", "run_id", "env", "component", "version", "step")


def append_ledger(line: dict[str, Any]) -> None:
    """Append one change to the ledger, unless this release run already recorded it."""
    append_once(ledger_path(), line, SAME_CHANGE)


def append_once(path: Path, line: dict[str, Any], same: tuple[str, ...]) -> bool:
    """Append line to a JSON-lines file unless a line with the same values of the fields same
    is there; return whether it appended. Append-only, so no temp file: one write under an
    exclusive lock, which no other thread or process interleaves; a torn last line stays."""
    path = no_links(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
    with open(os.open(path, flags, 0o666), "r+b") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        last = b"\n"
        for existing in file:
            last = existing
            if _same_line(existing, line, same):
                return False
        # After a torn last line, this one starts a line of its own instead of joining it.
        start = b"" if last.endswith(b"\n") else b"\n"
        file.write(start + json.dumps(line).encode() + b"\n")
        file.flush()
        os.fsync(file.fileno())
        return True


def _same_line(existing: bytes, line: dict[str, Any], same: tuple[str, ...]) -> bool:
    # A line lacking one of the values is not the same: skipped without parsing it.
    if any(isinstance(line[f], str) and line[f].encode() not in existing for f in same):
        return False
    recorded = json_or_none(existing)
    return isinstance(recorded, dict) and all(recorded.get(f) == line[f] for f in same)


@contextmanager
def exclusive(*target: str) -> Iterator[None]:
    """Hold a target's lock (a file's, so across threads and processes) while a step checks and
    changes it: a retry can start while a lapsed attempt's thread still runs; it waits here."""
    path = no_links(lock_path(".".join(target)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666), "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_ledger() -> list[dict[str, Any]]:
    """Every change in the ledger, oldest first. A line that is not a JSON object (a write torn
    by a crash, which stands for no change, or a hand edit) is skipped with a warning."""
    changes, skipped = [], []
    lines = (read_bytes(ledger_path()) or b"").split(b"\n")
    for number, line in enumerate(lines, start=1):
        change = json_or_none(line)
        if isinstance(change, dict):
            changes.append(change)
        elif line.strip():
            skipped.append(str(number))
    if skipped:
        _log.warning(
            "%s: skipped line(s) %s: not a JSON object (a write torn by a crash, or a hand edit)",
            ledger_path(),
            listed(skipped),
        )
    return changes
