"""The release records, database/releases/<KEY>-<run id>.json: one per release run, written as
its last step (or by one of its locks, for a run terminated before it could), and read back for
the starter's --history and --envs.
"""

import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from artifacts import environment_state
from files import atomic_write, read_json, record_path, records_dir
from shared import CellState, Ending, Environment, RecordReleaseInput, ReleaseError
from utils import isErrorNever, maybe_fail, raise_planted_bug

_log = logging.getLogger("release_management")

# What a record says of a version it cannot know: an environment with a worker of its own that
# the release never asked, or whose deploy ended halfway (failed, cancelled).
UNKNOWN = "?"


def record_release(request: RecordReleaseInput) -> str:
    """Write the record of a finished release run: how and when it ended, its gates' decisions,
    and per environment and component the version before and after and how its deploy ended.
    Writing the same record twice changes nothing. Returns the record's file name."""
    raise_planted_bug("record")
    release = request.release
    path = record_path(release.key, request.release_run_id)
    record = {
        "release_key": release.key,
        "run_id": request.release_run_id,
        "result": str(request.result),
        "outcome": request.result.outcome.value,
        "started": request.started,
        "finished": request.finished,
        "approved_in_catalog_by": release.approved_by,
        "decisions": [decision.model_dump(mode="json") for decision in request.decisions],
        "skipped_soaks": [skip.model_dump(mode="json") for skip in request.skipped_soaks],
        "environments": _recorded_environments(request),
    }
    if read_json(path) != record:
        maybe_fail(isErrorNever, f"before recording {release.key}")
        atomic_write(path, json.dumps(record, indent=2) + "\n")
        maybe_fail(isErrorNever, f"after recording {release.key}")
    _log.info("%s: recorded in %s", release.key, path.name)
    return path.name


def record_ending(ending: Ending) -> str:
    """Write the record of a release run that closed without writing one (terminated or timed
    out: one of its locks writes it once its deploys have closed; or a run that never got a
    release to run: the release itself, as record_unstarted): how, when and why it ended. A
    record already there is left as it is. Returns the record's file name."""
    path = record_path(ending.release_key, ending.release_run_id)
    if read_json(path) is None:
        detail = f": {ending.detail}" if ending.detail else ""
        record = {
            "release_key": ending.release_key,
            "run_id": ending.release_run_id,
            "result": f"Release {ending.release_key}: {ending.how}{detail}",
            "outcome": ending.how,
            "started": ending.started,
            "finished": ending.finished,
            "decisions": [],
            "skipped_soaks": [],
        }
        atomic_write(path, json.dumps(record, indent=2) + "\n")
    _log.info("%s: recorded in %s", ending.release_key, path.name)
    return path.name


# A run that ended before it had a release to run (its key is not in the catalog, the catalog is
# invalid, or it was cancelled while it gathered it) is recorded the same way.
record_unstarted = record_ending


def _recorded_environments(request: RecordReleaseInput) -> dict[str, dict[str, dict]]:
    """Per environment and component: the version before (as check_promotion saw, else now) and
    after (now, or the release's for an environment it let go of before its end, which another
    release may have changed since), and how its deploy ended."""
    release, state = request.release, environment_state()
    versions, recorded = release.versions, {}
    for env in release.environments:
        states = request.states.get(env, {})
        before: Mapping[str, str | None]
        after: Mapping[str, str | None]
        if env in release.own_workers:  # its files are its own worker's: this root has none
            before = request.before.get(env, dict.fromkeys(versions, UNKNOWN))
            after = {c: _after(v, before.get(c), states.get(c)) for c, v in versions.items()}
        else:
            before = request.before.get(env, state[env])
            after = versions if env in request.unlocked_after_use else state[env]
        recorded[env.value] = {
            c: _deploy_record(v, before.get(c), after.get(c), states.get(c))
            for c, v in versions.items()
        }
    return recorded


def _after(version: str, before: str | None, state: CellState | None) -> str | None:
    """What an environment with a worker of its own holds once its deploy ended in state."""
    if state is CellState.DONE:
        return version
    return before if state in (None, CellState.ROLLED_BACK, CellState.NOT_REACHED) else UNKNOWN


def _deploy_record(
    version: str, before: str | None, after: str | None, state: CellState | None
) -> dict:
    # Done is "deployed" or "already there"; rolled back, failed and cancelled are named as they
    # are, and any other state (pending, rejected, ...) is "not reached".
    if state is CellState.DONE:
        outcome = "already there" if before == version else "deployed"
    else:
        ended = (CellState.ROLLED_BACK, CellState.FAILED, CellState.CANCELLED)
        outcome = state.value if state in ended else CellState.NOT_REACHED.value
    return {"before": before, "after": after, "outcome": outcome}


def recorded_state(envs: list[Environment]) -> dict[Environment, dict[str, str]]:
    """What envs hold as the latest 100 records say they were left, {env: {component: version, or
    "-" for none}}: for environments whose files are their own workers', not in this root."""
    state: dict[Environment, dict[str, str]] = {env: {} for env in envs}
    for record in release_history(100):
        recorded = record.get("environments")
        for env in envs:
            deploys = recorded.get(env.value) if isinstance(recorded, dict) else None
            for component, deploy in deploys.items() if isinstance(deploys, dict) else []:
                after = deploy.get("after", UNKNOWN) if isinstance(deploy, dict) else UNKNOWN
                if after != UNKNOWN and (after is None or isinstance(after, str)):
                    state[env].setdefault(component, after or "-")
    return state


class _ShownDecision(BaseModel):
    """What the history shows of a decision at a gate (a record keeps more)."""

    model_config = ConfigDict(strict=True)
    environment: str
    approved: bool
    by: str


class _ShownRecord(BaseModel):
    """What the history shows of a release record (record_release writes more)."""

    model_config = ConfigDict(strict=True)
    release_key: str
    started: str
    finished: str
    result: str
    decisions: list[_ShownDecision]


def release_history(limit: int = 10) -> list[dict[str, Any]]:
    """The records of the latest release runs, newest first. A file that is not one (a hand edit
    or a foreign file) is skipped, so the history of the others can always be shown."""
    records = []
    for path in sorted(records_dir().glob("*.json")):
        try:
            record = read_json(path)
            _ShownRecord.model_validate(record)
        except (ReleaseError, OSError, ValidationError):
            continue
        records.append(record)
    return sorted(records, key=lambda record: record["finished"], reverse=True)[:limit]
