"""Names, orders and data shapes shared by the worker, the starter and the workflows: what
crosses Temporal is a pydantic model, carried by the pydantic data converter."""

import json
import os
import re
import unicodedata
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

# DEMO_TASK_QUEUE lets a test (or a second person on one server) run a worker of its own.
DEFAULT_TASK_QUEUE = "release-orchestration"
TASK_QUEUE = os.environ.get("DEMO_TASK_QUEUE", DEFAULT_TASK_QUEUE)
# A workflow task handed to a worker that died goes to another after this (README.md, "Tuning").
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=2)


class Environment(StrEnum):
    """The environments a release is promoted through, in promotion order."""

    DEV = "DEV"
    TEST = "TEST"
    QC = "QC"
    PROD = "PROD"

    def previous(self) -> "Environment | None":
        """The environment this one is promoted from (None for DEV, which is fed by builds)."""
        index = ENVIRONMENT_ORDER.index(self)
        return ENVIRONMENT_ORDER[index - 1] if index else None


ENVIRONMENT_ORDER: list[Environment] = list(Environment)

# Names that end up in file names: no path separators, no "..", nothing hidden. A component's
# words start with a letter and a version with a digit, so "frontend-admin-1.0-rc1.txt" splits
# one way only.
RELEASE_KEY_PATTERN = r"[A-Z0-9][A-Z0-9-]*"
COMPONENT_PATTERN = r"[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*"
VERSION_PATTERN = r"[0-9][0-9A-Za-z]*(?:[.-][0-9A-Za-z]+)*"
MAX_KEY_LENGTH = 80
ReleaseKey = Annotated[
    str, StringConstraints(pattern=f"^{RELEASE_KEY_PATTERN}$", max_length=MAX_KEY_LENGTH)
]
ComponentName = Annotated[str, StringConstraints(pattern=f"^{COMPONENT_PATTERN}$", max_length=60)]
Version = Annotated[str, StringConstraints(pattern=f"^{VERSION_PATTERN}$", max_length=40)]
# Catalog text ends up in configs, terminals and Temporal payloads: one printable line, bounded.
MAX_TEXT_LENGTH = 200
# Names and reasons people give (--by, --reason): one printable line each, bounded.
MAX_NAME_LENGTH = 100
MAX_REASON_LENGTH = 500
# A durable wait (a soak, an approval's time limit): a typo cannot park a release for years.
MAX_WAIT_SECONDS = 24 * 60 * 60
# What a terminal or the Web UI draws as nothing: these Unicode categories (controls, formats,
# unassigned, spaces, marks), and letters and symbols drawn blank (Hangul fillers, Braille blank).
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"}
BLANK_LOOKING = set("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\U0001d159")


def _one_printable_line(text: str) -> str:
    for position, char in enumerate(text):
        if not char.isprintable():
            raise ValueError(
                f"unprintable character {char!r} at position {position}; allowed: printable "
                f"text on one line, at most {MAX_TEXT_LENGTH} characters"
            )
    return text


def _written_date(value: object) -> object:
    """Refuse a date that is not written "YYYY-MM-DD" (lax parsing reads a number as a time)."""
    if isinstance(value, date) or (
        isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)
    ):
        return value
    raise ValueError('must be a date written "YYYY-MM-DD", e.g. "2023-11-15"')


CatalogText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH),
    AfterValidator(_one_printable_line),
]
CatalogDate = Annotated[date, BeforeValidator(_written_date)]
WaitSeconds = Annotated[StrictInt, Field(ge=0, le=MAX_WAIT_SECONDS)]


def is_release_key(text: str) -> bool:
    return len(text) <= MAX_KEY_LENGTH and re.fullmatch(RELEASE_KEY_PATTERN, text) is not None


def root_message(err: BaseException) -> str:
    """The message of the error at the root of err (a step's, through its deploy and release)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "message", None) or str(err)


def visible(text: str) -> bool:
    """Whether a person can see text: a name of two Hangul fillers looks empty."""
    return any(
        unicodedata.category(char) not in INVISIBLE_CATEGORIES and char not in BLANK_LOOKING
        for char in text
    )


def person_text(text: str) -> str:
    """A name or reason as stored: stripped, and NFC, so two spellings of one name are one."""
    return unicodedata.normalize("NFC", text.strip())


def shown(text: str) -> str:
    """text with anything unprintable escaped, so it cannot redraw a terminal or forge a line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def steps_queue(release_queue: str, env: Environment) -> str:
    """The task queue of env's steps when env has a worker of its own (run_worker.py --env)."""
    return f"{release_queue}.{env.value}"


def approve_command(release_key: str, env: Environment) -> str:
    return f"python run_workflow.py --approve {release_key} --gate {env.value} --by NAME"


def skip_soak_command(release_key: str) -> str:
    return f"python run_workflow.py --skip-soak {release_key} --by NAME"


def deploy_workflow_id(release_workflow_id: str, env: Environment, component: str) -> str:
    """The ID of a DeployWorkflow child, read like the plan: RELEASE-NOV-23-INITIAL.DEV.frontend."""
    return f"{release_workflow_id}.{env.value}.{component}"


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# The type of each ApplicationError that the workflows or the starter act on.
class ErrorType(StrEnum):
    RELEASE_ERROR = "ReleaseError"  # bad input: the release fails at once, with the message
    UNHEALTHY = "Unhealthy"  # a failed health check: retried a few times, then rolled back
    ENVIRONMENT_BUSY = "EnvironmentBusy"  # another release holds an environment: refused
    WRONG_DEMO_ROOT = "WrongDemoRoot"  # the worker serves another demo root than the release's
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"  # a result over Temporal's payload limit
    LOCK_LOST = "LockLost"  # a lock the release held was ended by someone else: it stopped
    WRONG_WORKFLOW_ID = "WrongWorkflowId"  # a release started under an ID that is not its key


class Outcome(StrEnum):
    SUCCESS = "SUCCESS"
    REJECTED = "REJECTED"
    ROLLED_BACK = "ROLLED BACK"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ReleaseResult(FrozenModel):
    release_key: str
    outcome: Outcome
    detail: str = ""  # who rejected it and why, what was rolled back, why it failed...

    def ending(self) -> str:
        """ "SUCCESS", "REJECTED by Grace: not today", "FAILED: <why>", ..."""
        if not self.detail:
            return str(self.outcome)
        # "REJECTED by Grace: ..." and "ROLLED BACK frontend in QC ..." read as one phrase.
        by_a_person = self.outcome is Outcome.REJECTED and self.detail.startswith("by ")
        joiner = " " if by_a_person or self.outcome is Outcome.ROLLED_BACK else ": "
        return f"{self.outcome}{joiner}{self.detail}"

    def __str__(self) -> str:
        return f"Release {self.release_key}: {self.ending()}"


class CellState(StrEnum):
    PENDING = "pending"
    WAITING_FOR_APPROVAL = "waiting for approval"
    RUNNING = "running"
    RETRYING = "retrying"  # running, its current activity being retried (from the server)
    DONE = "done"
    SOAKING = "soaking"  # deployed; the release waits before it promotes further
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    NOT_REACHED = "not reached"


# --- A release, as the catalog describes it; the workflows' inputs, Queries and Updates --------
class Release(FrozenModel):
    """Which version of each component goes where. Strict: "approved": "yes" or 1 is refused."""

    key: ReleaseKey
    release_date: CatalogDate
    # More would outgrow a workflow's history (51,200 events): it gets 12 to 24 per component.
    versions: dict[ComponentName, Version] = Field(min_length=1, max_length=1000)
    environments: list[Environment] = Field(min_length=1, max_length=len(ENVIRONMENT_ORDER))
    # Unless approved, a person approves its first environment; approval_before names more.
    approved: StrictBool
    approved_by: CatalogText | None = None
    approval_before: list[Environment] = Field(default=[], max_length=len(ENVIRONMENT_ORDER))
    # How long an open gate waits before it expires (REJECTED); None: for as long as it takes.
    approval_timeout_seconds: Annotated[StrictInt, Field(gt=0, le=MAX_WAIT_SECONDS)] | None = None
    # The wait after deploying an environment before promoting past it (default: the catalog's).
    soak_seconds: dict[Environment, WaitSeconds] = {}
    # Not the catalog's to say: the gathering worker's DEMO_OWN_WORKERS (utils.own_workers).
    own_workers: list[Environment] = []

    @field_validator("environments")
    @classmethod
    def _promotion_order(cls, environments: list[Environment]) -> list[Environment]:
        first = ENVIRONMENT_ORDER.index(environments[0])
        if environments != ENVIRONMENT_ORDER[first : first + len(environments)]:
            raise ValueError(
                f"[{', '.join(environments)}] is not a contiguous run of "
                f"{' -> '.join(ENVIRONMENT_ORDER)} in that order; a release cannot skip an "
                "environment"
            )
        return environments

    @model_validator(mode="after")
    def _approvals_make_sense(self) -> "Release":
        if self.approved and not self.approved_by:
            raise ValueError("approved_by: an approved release must name who approved it")
        for field in ("approval_before", "soak_seconds"):
            if stray := [env for env in getattr(self, field) if env not in self.environments]:
                raise ValueError(f"{field}: {', '.join(stray)} is not among environments")
        return self

    def plan(self) -> str:
        """What it promotes: "frontend 1.0, sbstore 1.0"."""
        return ", ".join(f"{c} {v}" for c, v in self.versions.items())

    def route(self) -> str:
        return " -> ".join(self.environments)

    def summary(self) -> str:
        """The Web UI's summary of a run of it: "promote frontend 1.0, ... to DEV -> ... PROD"."""
        return f"promote {self.plan()} to {self.route()}"

    def soak(self, env: Environment) -> int:
        """How long to wait after env is deployed before promoting past it (0 for the last)."""
        return 0 if env is self.environments[-1] else self.soak_seconds.get(env, 0)

    def gates(self) -> list[Environment]:
        """The environments that wait for a person's approval before they are deployed."""
        first = [] if self.approved else [self.environments[0]]
        return [env for env in self.environments if env in first or env in self.approval_before]


class ReleaseInput(FrozenModel):
    # A release started with a field it no longer has (lock_scope) still decodes and runs.
    model_config = ConfigDict(frozen=True, extra="ignore")
    # Not a ReleaseKey: the catalog refuses a malformed key saying which are valid.
    release_key: str = ""
    # The starter's DEMO_ROOT: no step runs on a worker of another root. Empty: not checked.
    demo_root: str = ""

    @model_validator(mode="before")
    @classmethod
    def _read_anything(cls, given: Any) -> Any:
        """Any input decodes, so that the release refuses a wrong one saying why, where its
        workflow task would fail again and again: a string is the key, other values their JSON."""
        if isinstance(given, str):
            return {"release_key": given}
        if not isinstance(given, dict):
            return {}
        return {name: v if isinstance(v, str) else json.dumps(v) for name, v in given.items()}

    def log_name(self, step: str) -> str:
        return f"{self.release_key}: {step}"


class Deployment(FrozenModel):
    """One component version going to one environment in a release run: DeployWorkflow's input."""

    release_key: ReleaseKey
    release_run_id: str
    component: ComponentName
    version: Version
    environment: Environment
    demo_root: str = ""  # see ReleaseInput.demo_root; "": the root of the worker that runs it
    task_queue: str = ""  # where its steps run: its environment's own queue, or "": the release's

    def log_name(self, step: str) -> str:
        """How the worker's log names a step of it: "KEY QC frontend: deploy 1.1"."""
        return f"{self.release_key} {self.environment} {self.component}: {step} {self.version}"


class EnvironmentLock(FrozenModel):
    release_key: ReleaseKey
    environment: Environment
    deploys: list[str] = []  # the workflow IDs of its deploys into it, which the lock outlives


# Signal "unlock" to an EnvironmentLockWorkflow (locks.UNLOCK): the release run that lets it go.
class UnlockInput(FrozenModel):
    release_workflow_id: str = ""
    release_run_id: str = ""


class Cell(FrozenModel):
    """One deploy in the progress grid: its state is the release's; the rest is read from the
    server by the starter (release_client.read_progress), so no activity reports to the release."""

    state: CellState = CellState.PENDING
    activity: str = ""  # the activities a running deploy is at, or the one being retried
    attempt: int = 0
    error: str = ""


class Soak(FrozenModel):
    environment: Environment
    ends: str  # ISO 8601, the workflow's time


class ReleaseProgress(FrozenModel):
    release_key: str
    status: str
    gate: Environment | None = None  # the environment waiting for approval, if any
    gate_expires: str | None = None  # when that gate expires (ISO 8601), if it does
    soak: Soak | None = None
    environments: list[Environment] = []
    components: list[str] = []
    cells: dict[Environment, dict[str, Cell]] = {}


class ApproveInput(FrozenModel):
    gate: Environment  # the environment the person means to approve, checked against the wait
    by: str


class RejectInput(FrozenModel):
    gate: Environment
    by: str
    reason: str


class SkipSoakInput(FrozenModel):
    by: str


class Decision(FrozenModel):
    """A decision at an approval gate in the release record: by "" when the gate expired."""

    environment: Environment
    approved: bool
    by: str
    reason: str = ""
    at: str


class SkippedSoak(FrozenModel):
    environment: Environment
    by: str
    at: str


# --- Activity inputs and results ---------------------------------------------------------------
class EndingInput(FrozenModel):
    """Activity record_ending: the release run that closed without writing its record."""

    release_key: ReleaseKey
    release_workflow_id: str
    release_run_id: str


class Ending(FrozenModel):
    """How a release run that wrote no record ended, as the server tells it."""

    release_key: ReleaseKey
    release_run_id: str
    how: str  # "TERMINATED", "TIMED OUT"
    detail: str  # a terminate's reason, and who asked for it
    started: str
    finished: str
    demo_root: str = ""  # "": this worker's (see ReleaseInput.demo_root)

    def log_name(self, step: str) -> str:
        return f"{self.release_key}: {step}"


class LockHolderInput(FrozenModel):
    lock_workflow_id: str


class DeploysInFlightInput(FrozenModel):
    """The deploys into environments on task_queue, of any release but release_workflow_id."""

    environments: list[Environment]
    task_queue: str
    release_workflow_id: str


class RunsInput(FrozenModel):
    """Activity is_run_of_release: are run_id and of_run_id runs of one release (workflow_id)?"""

    workflow_id: str
    run_id: str
    of_run_id: str


class WorkflowRef(FrozenModel):
    workflow_id: str
    run_id: str = ""  # "": the latest run


class ReleaseStepInput(FrozenModel):
    release: Release
    demo_root: str = ""

    def log_name(self, step: str) -> str:
        return f"{self.release.key}: {step}"


# What an environment holds, as its own worker tells: {component: {version: SHA-256 of the copy}}.
Holdings = dict[str, dict[str, str]]


def version_per_component(held: Holdings, components: Iterable[str]) -> dict[str, str | None]:
    """What held says of each component: its versions joined with "+" (normally one), or None."""
    return {c: "+".join(sorted(held.get(c, {}))) or None for c in components}


class CheckPromotionInput(ReleaseStepInput):
    # What the environments with a worker of their own hold (the check reads the others itself).
    held: dict[Environment, Holdings] = {}


class HeldIn(FrozenModel):
    """What one environment holds, and the root of the worker that told (its steps run there)."""

    root: str
    held: Holdings


class HoldingsInput(FrozenModel):
    environment: Environment
    components: list[ComponentName]
    demo_root: str = ""

    def log_name(self, step: str) -> str:
        return f"{self.environment.value}: {step}"


class ArtifactRef(FrozenModel):
    source: str  # the folder it was gathered from
    sha256: str


class DeploymentStepInput(FrozenModel):
    deployment: Deployment

    @property
    def demo_root(self) -> str:
        return self.deployment.demo_root

    def log_name(self, step: str) -> str:
        return self.deployment.log_name(step)


class DeployArtifactInput(DeploymentStepInput):
    artifact: ArtifactRef


class UpdateConfigInput(DeploymentStepInput):
    config: dict[str, str | int]


class VerifyInput(DeploymentStepInput):
    artifact: ArtifactRef


# What each environment held before the release: {env: {component: version or None}}.
EnvironmentVersions = dict[Environment, dict[str, str | None]]


class VerifyRollbackInput(DeploymentStepInput):
    previous: str | None


class DeployResult(FrozenModel):
    """Result of DeployWorkflow: verified, or rolled back to previous (None: removed)."""

    rolled_back: bool = False
    previous: str | None = None


class NotifyInput(ReleaseStepInput):
    release_run_id: str  # its first run: a reset's runs share it
    event: str  # "promoted to QC", "ended SUCCESS"
    message: str


class RecordReleaseInput(ReleaseStepInput):
    release_run_id: str
    result: ReleaseResult
    started: str
    finished: str
    before: EnvironmentVersions  # empty if the release ended before it checked them
    states: dict[Environment, dict[str, CellState]]  # how each deploy ended
    # Unlocked once deployed and no longer needed: another release may have changed them since.
    unlocked_after_use: list[Environment] = []
    decisions: list[Decision] = []
    skipped_soaks: list[SkippedSoak] = []


class FoundDeploy(FrozenModel):
    """A deploy as --history --env/--component shows it (search_attributes.find_deploys)."""

    started: datetime | None
    release_key: str
    environment: str
    component: str
    ending: str  # deployed, rolled back to 1.0, running, failed, ...
    release_outcome: str  # how its release ended: RUNNING, SUCCESS, ROLLED BACK, ...


# --- The errors of the release system (release_management.py) ---------------------------------
class ReleaseError(Exception):
    """Bad input (an unknown release, a promotion out of order): retrying cannot help."""


class InjectedFailure(Exception):
    """A simulated transient failure, raised when a failure injector from utils.py fires."""


class VerificationError(Exception):
    """A deployed component is not in the state its deploy was meant to leave it in."""


class Unhealthy(VerificationError):
    """A deployed component failed its health check."""


class SourceMissing(Exception):
    """An artifact that a step needs is not where it should be (yet)."""


class ChangeMadeTwice(Exception):
    """A step went to make a change its target already holds: a bug, so Temporal retries it
    until a fixed worker takes over, rather than change it again."""
