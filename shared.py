"""Names, orders and data shapes shared by the worker, the starter and the workflows.

Everything that crosses Temporal (workflow and activity inputs, the release loaded from the
catalog) is a pydantic model, carried by the pydantic data converter.
"""

import json
import os
import re
import unicodedata
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

# The task queue the worker polls and the starter sends to. DEMO_TASK_QUEUE overrides it, so a
# test (or a second person on the same server) can run its own worker without stealing tasks.
DEFAULT_TASK_QUEUE = "release-orchestration"
TASK_QUEUE = os.environ.get("DEMO_TASK_QUEUE", DEFAULT_TASK_QUEUE)

# A workflow task handed to a worker that died goes to another one after this long (the
# server's default is 10 s); the release's workflow tasks take milliseconds.
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
# words start with a letter and a version starts with a digit, so "<component>-<version>.txt"
# always splits one way ("frontend-admin-1.0-rc1.txt" is frontend-admin at 1.0-rc1).
RELEASE_KEY_PATTERN = r"[A-Z0-9][A-Z0-9-]*"
COMPONENT_PATTERN = r"[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*"
VERSION_PATTERN = r"[0-9][0-9A-Za-z]*(?:[.-][0-9A-Za-z]+)*"

MAX_KEY_LENGTH = 80
ReleaseKey = Annotated[
    str, StringConstraints(pattern=f"^{RELEASE_KEY_PATTERN}$", max_length=MAX_KEY_LENGTH)
]
ComponentName = Annotated[str, StringConstraints(pattern=f"^{COMPONENT_PATTERN}$", max_length=60)]
Version = Annotated[str, StringConstraints(pattern=f"^{VERSION_PATTERN}$", max_length=40)]

# Free text in the catalog (a repository, a team, a name) ends up in configs, artifacts,
# terminals and Temporal payloads (2 MB at most): one printable line, bounded.
MAX_TEXT_LENGTH = 200


def _one_printable_line(text: str) -> str:
    """text, if it is one line of printable characters.

    Raises:
        ValueError: it holds an unprintable character (a line break, an escape code, ...);
            the message says which, where, and what is allowed.
    """
    for position, char in enumerate(text):
        if not char.isprintable():
            raise ValueError(
                f"unprintable character {char!r} at position {position}; allowed: printable "
                f"text on one line, at most {MAX_TEXT_LENGTH} characters"
            )
    return text


CatalogText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH),
    AfterValidator(_one_printable_line),
]


def _written_date(value: object) -> object:
    """value, if it is a date or a date written "YYYY-MM-DD" (JSON has no date type).

    Raises:
        ValueError: it is anything else, such as a number, which lax parsing would have read
            as a Unix timestamp.
    """
    if isinstance(value, date) or (
        isinstance(value, str) and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value)
    ):
        return value
    raise ValueError('must be a date written "YYYY-MM-DD", e.g. "2023-11-15"')


CatalogDate = Annotated[date, BeforeValidator(_written_date)]

# A release of more components would outgrow what Temporal keeps of one workflow: its history
# gets 12 to 24 events per component (a child per environment) of 51,200 at most.
MAX_COMPONENTS_PER_RELEASE = 1000


# Names and reasons people give (--by, --reason) end up in records, terminals and the Web UI:
# one printable line each, bounded.
MAX_NAME_LENGTH = 100
MAX_REASON_LENGTH = 500


def is_release_key(text: str) -> bool:
    """Whether text has the form of a release key (ReleaseKey), in the catalog or not."""
    return len(text) <= MAX_KEY_LENGTH and re.fullmatch(RELEASE_KEY_PATTERN, text) is not None


def root_message(err: BaseException) -> str:
    """The message of the error at the root of err (a step's, through its deploy's and its
    release's)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return getattr(err, "message", None) or str(err)


# Characters a terminal or the Web UI draws as nothing, by Unicode category: controls, formats
# (zero-width space, joiners, bidi marks), separators, marks with nothing to mark, unassigned;
# and letters and symbols drawn blank (Hangul fillers, the blank Braille pattern, the null
# notehead).
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"}
BLANK_LOOKING = set("\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\U0001d159")


def visible(text: str) -> bool:
    """Whether text holds something a person can see: a name "by" two Hangul fillers, or a
    reason of one blank Braille pattern, looks empty."""
    return any(
        unicodedata.category(char) not in INVISIBLE_CATEGORIES and char not in BLANK_LOOKING
        for char in text
    )


def person_text(text: str) -> str:
    """A name or reason a person gave, as it is stored: stripped, and in one Unicode form (NFC),
    so that two spellings of one name are one name."""
    return unicodedata.normalize("NFC", text.strip())


def shown(text: str) -> str:
    """text as a terminal should show it: anything unprintable (an escape code, a line break) as
    its Python escape, so text from a person, the server or a file cannot redraw the screen or
    forge a line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorType(StrEnum):
    """The type of each ApplicationError that the workflows or the starter act on, defined once."""

    RELEASE_ERROR = "ReleaseError"  # bad input: the release fails at once, with the message
    UNHEALTHY = "Unhealthy"  # a failed health check: retried a few times, then rolled back
    ENVIRONMENT_BUSY = "EnvironmentBusy"  # another release holds an environment: refused
    WRONG_DEMO_ROOT = "WrongDemoRoot"  # the worker serves another demo root than the release's
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"  # a result over Temporal's payload limit
    LOCK_LOST = "LockLost"  # a lock the release held was ended by someone else: it stopped
    WRONG_WORKFLOW_ID = "WrongWorkflowId"  # a release started under an ID that is not its key


class Outcome(StrEnum):
    """How a release ended."""

    SUCCESS = "SUCCESS"
    REJECTED = "REJECTED"
    ROLLED_BACK = "ROLLED BACK"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class ReleaseResult(FrozenModel):
    """Result of ReleaseWorkflow: how it ended, and the detail a person needs (who rejected it
    and why, what was rolled back, why it failed or was cancelled)."""

    release_key: str
    outcome: Outcome
    detail: str = ""

    def ending(self) -> str:
        """ "SUCCESS", "REJECTED by Grace: not today", "FAILED: <why>", ..."""
        # "REJECTED by Grace: ..." and "ROLLED BACK frontend in QC ..." read as one phrase.
        by_a_person = self.outcome is Outcome.REJECTED and self.detail.startswith("by ")
        joined = self.outcome is Outcome.ROLLED_BACK or by_a_person
        joiner = " " if joined else ": "
        return f"{self.outcome}{joiner}{self.detail}" if self.detail else str(self.outcome)

    def __str__(self) -> str:
        return f"Release {self.release_key}: {self.ending()}"


class CellState(StrEnum):
    """The state of one component in one environment, as the progress grid shows it."""

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


# --- A release, as the catalog (database/catalog.json) describes it ------------------------

# A durable wait (a soak, an approval's time limit) is at most a day: a typo cannot park a
# release for years.
MAX_WAIT_SECONDS = 24 * 60 * 60
WaitSeconds = Annotated[StrictInt, Field(ge=0, le=MAX_WAIT_SECONDS)]


def steps_queue(release_queue: str, env: Environment) -> str:
    """The task queue of the steps of an environment that has a worker of its own: the only
    queue its worker (run_worker.py --env ENV) polls."""
    return f"{release_queue}.{env.value}"


class Release(FrozenModel):
    """One release: which version of each component goes to which environments.

    Types are strict: "approved": "yes" or 1 is refused, not read as true.
    """

    key: ReleaseKey
    release_date: CatalogDate
    versions: dict[ComponentName, Version] = Field(
        min_length=1, max_length=MAX_COMPONENTS_PER_RELEASE
    )
    environments: list[Environment] = Field(min_length=1, max_length=len(ENVIRONMENT_ORDER))
    # A release not approved in the catalog waits for a person's approval before its first
    # environment; approval_before names environments that wait for one even so.
    approved: StrictBool
    approved_by: CatalogText | None = None
    approval_before: list[Environment] = Field(default=[], max_length=len(ENVIRONMENT_ORDER))
    # How long an open gate waits for a person before it expires (the release ends REJECTED);
    # None: for as long as it takes.
    approval_timeout_seconds: Annotated[StrictInt, Field(gt=0, le=MAX_WAIT_SECONDS)] | None = None
    # How long to soak each environment (wait, once deployed, before promoting past it). The
    # catalog's environments give the defaults (load_release fills them in); a release may set
    # its own.
    soak_seconds: dict[Environment, WaitSeconds] = {}
    # Not the catalog's to say: the environments whose steps run on a worker of their own, as
    # the worker that gathered the release is set up (DEMO_OWN_WORKERS, utils.own_workers).
    own_workers: list[Environment] = []

    @field_validator("environments")
    @classmethod
    def _promotion_order(cls, environments: list[Environment]) -> list[Environment]:
        first = ENVIRONMENT_ORDER.index(environments[0])
        if environments != ENVIRONMENT_ORDER[first : first + len(environments)]:
            names = ", ".join(env.value for env in environments)
            raise ValueError(
                f"[{names}] is not a contiguous run of "
                f"{' -> '.join(env.value for env in ENVIRONMENT_ORDER)} in that order; "
                "a release cannot skip an environment"
            )
        return environments

    @model_validator(mode="after")
    def _approvals_make_sense(self) -> "Release":
        if self.approved and not self.approved_by:
            raise ValueError("approved_by: an approved release must name who approved it")
        for field in ("approval_before", "soak_seconds"):
            stray = [env.value for env in getattr(self, field) if env not in self.environments]
            if stray:
                raise ValueError(f"{field}: {', '.join(stray)} is not among environments")
        return self

    def plan(self) -> str:
        """What it promotes, in one line: "frontend 1.0, sbstore 1.0"."""
        return ", ".join(f"{c} {v}" for c, v in self.versions.items())

    def route(self) -> str:
        """Its environments in promotion order: "DEV -> TEST -> QC"."""
        return " -> ".join(env.value for env in self.environments)

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


# --- Workflow inputs ----------------------------------------------------------------------


class ReleaseInput(FrozenModel):
    """Input of ReleaseWorkflow, and of its first activity, gather_release."""

    # Fields it no longer has are ignored rather than refused: a release started with an older
    # input (lock_scope, which the worker now decides: locks.py) still decodes and runs.
    model_config = ConfigDict(frozen=True, extra="ignore")

    # A plain string, not a ReleaseKey: a malformed key must reach the catalog, which refuses
    # it with a message listing the valid keys, rather than fail to decode in the workflow.
    release_key: str = ""
    # The demo root the release was started for (the starter's DEMO_ROOT, resolved). Every step
    # refuses to run on a worker that serves another one. Empty: not checked.
    demo_root: str = ""

    @model_validator(mode="before")
    @classmethod
    def _read_anything(cls, given: Any) -> Any:
        """Any input decodes, so that the release refuses a wrong one at once, saying why, where
        its workflow task would fail to decode it again and again: a string is taken for the
        key, a field that is not text is read as its JSON text, anything else names no key."""
        if isinstance(given, str):
            return {"release_key": given}
        if not isinstance(given, dict):
            return {}
        return {name: v if isinstance(v, str) else json.dumps(v) for name, v in given.items()}

    def log_name(self, step: str) -> str:
        """How the worker's log names a step of the release before it is gathered."""
        return f"{self.release_key}: {step}"


class Deployment(FrozenModel):
    """One component version going to one environment, as part of one release run.

    Input of DeployWorkflow and of its simple steps; the ledger records changes under these
    names.
    """

    release_key: ReleaseKey
    release_run_id: str
    component: ComponentName
    version: Version
    environment: Environment
    demo_root: str = ""  # see ReleaseInput.demo_root; "": the root of the worker that runs it
    # Where its steps run: the environment's own worker's queue, or "" for the release's.
    task_queue: str = ""

    def log_name(self, step: str) -> str:
        """How the worker's log names one step of it: "KEY QC frontend: deploy 1.1"."""
        return (
            f"{self.release_key} {self.environment.value} {self.component}: {step} {self.version}"
        )


class EnvironmentLock(FrozenModel):
    """Input of EnvironmentLockWorkflow: which release holds which environment, and the deploys
    (workflow IDs) it runs into it, which the lock outlives."""

    release_key: ReleaseKey
    environment: Environment
    deploys: list[str] = []


class UnlockInput(FrozenModel):
    """Signal "unlock" to an EnvironmentLockWorkflow (locks.UNLOCK): the release run that lets
    the lock go."""

    release_workflow_id: str = ""
    release_run_id: str = ""


def approve_command(release_key: str, env: Environment) -> str:
    """The command a person types to approve release_key's gate before env."""
    return f"python run_workflow.py --approve {release_key} --gate {env.value} --by NAME"


def skip_soak_command(release_key: str) -> str:
    """The command a person types to end the soak release_key is in."""
    return f"python run_workflow.py --skip-soak {release_key} --by NAME"


def deploy_workflow_id(release_workflow_id: str, env: Environment, component: str) -> str:
    """The ID of the DeployWorkflow child that deploys component to env for a release: it
    reads like the release plan in the Web UI, e.g. RELEASE-NOV-23-INITIAL.DEV.frontend."""
    return f"{release_workflow_id}.{env.value}.{component}"


class Cell(FrozenModel):
    """One component in one environment, as the progress grid shows it.

    The release workflow knows the state of each of its deploys (pending, running, done, rolled
    back, waiting for approval, rejected). Which activity a running deploy is at, which attempt and
    its last error are the server's to tell: the starter reads them from the deploy's pending
    activities when it draws the grid (run_workflow.read_progress), so no activity has to
    report to the release.
    """

    state: CellState = CellState.PENDING
    activity: str = ""  # the activities a running deploy is at, or the one being retried
    attempt: int = 0
    error: str = ""


class Soak(FrozenModel):
    """An environment soaking: deployed, and waited on before the release promotes past it."""

    environment: Environment
    ends: str  # when the soak ends (ISO 8601, the workflow's time)


class ReleaseProgress(FrozenModel):
    """Query ReleaseWorkflow.progress: the release's component x environment grid."""

    release_key: str
    status: str
    gate: Environment | None = None  # the environment waiting for approval, if any
    gate_expires: str | None = None  # when that gate expires (ISO 8601), if it does
    soak: Soak | None = None
    environments: list[Environment] = []
    components: list[str] = []
    cells: dict[Environment, dict[str, Cell]] = {}


# --- Activity inputs and results ----------------------------------------------------------


class EndingInput(FrozenModel):
    """Activity record_ending: the release run that closed without writing its record."""

    release_key: ReleaseKey
    release_workflow_id: str
    release_run_id: str


class Ending(FrozenModel):
    """How a release run that wrote no record ended, as the server tells it (release_management's
    record_ending writes it down)."""

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
    """Which deploys find_deploys_in_flight looks for: those into environments, on task_queue,
    of any release but release_workflow_id."""

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


class ApproveInput(FrozenModel):
    """Update ReleaseWorkflow.approve: a person lets the release go on into gate."""

    gate: Environment  # the environment the person means to approve, checked against the wait
    by: str


class RejectInput(FrozenModel):
    """Update ReleaseWorkflow.reject: a person stops the release before the gated environment."""

    gate: Environment
    by: str
    reason: str


class Decision(FrozenModel):
    """A decision at an approval gate, as the release record keeps it: a person's, or the
    gate's own when it expired (by "")."""

    environment: Environment
    approved: bool
    by: str
    reason: str = ""
    at: str


class ReleaseStepInput(FrozenModel):
    """The input of a step about a whole release."""

    release: Release
    demo_root: str = ""

    def log_name(self, step: str) -> str:
        return f"{self.release.key}: {step}"


class SkipSoakInput(FrozenModel):
    """Update ReleaseWorkflow.skip_soak: a person ends the soak of the environment now soaking."""

    by: str


class SkippedSoak(FrozenModel):
    """A soak a person ended early, as the release record keeps it."""

    environment: Environment
    by: str
    at: str


# What an environment holds, as its own worker tells: {component: {version: SHA-256 of the copy}}.
Holdings = dict[str, dict[str, str]]


class CheckPromotionInput(ReleaseStepInput):
    # What the environments with a worker of their own hold, as their workers told (the check
    # reads the others' folders itself).
    held: dict[Environment, Holdings] = {}


class HeldIn(FrozenModel):
    """Activity held_in's answer: what one environment holds, and the demo root of the worker
    that told (the environment's steps then run only on a worker of that root)."""

    root: str
    held: Holdings


class HoldingsInput(FrozenModel):
    """Activity held_in: what one environment holds of these components."""

    environment: Environment
    components: list[ComponentName]
    demo_root: str = ""

    def log_name(self, step: str) -> str:
        return f"{self.environment.value}: {step}"


class ArtifactRef(FrozenModel):
    """A gathered artifact: the folder it was taken from and a checksum of its content."""

    source: str
    sha256: str


class DeploymentStepInput(FrozenModel):
    """The input of a deploy's step that needs more than its Deployment."""

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
    """An event of a release run to announce: "promoted to QC", "ended SUCCESS"."""

    release_run_id: str  # its first run: a reset's runs share it
    event: str
    message: str


class RecordReleaseInput(ReleaseStepInput):
    release_run_id: str
    result: ReleaseResult
    started: str
    finished: str
    before: EnvironmentVersions  # empty if the release ended before it checked them
    states: dict[Environment, dict[str, CellState]]  # how each deploy ended
    # Environments unlocked before the end, once deployed and no longer needed: they hold the
    # release's versions (another release may have changed them since).
    unlocked_after_use: list[Environment] = []
    decisions: list[Decision] = []
    skipped_soaks: list[SkippedSoak] = []


# --- What the server finds (search_attributes.py) -----------------------------------------


class FoundDeploy(FrozenModel):
    """A deploy as --history --env/--component shows it (search_attributes.py asks Temporal)."""

    started: datetime | None
    release_key: str
    environment: str
    component: str
    ending: str  # deployed, rolled back to 1.0, running, failed, ...
    release_outcome: str  # how its release ended: RUNNING, SUCCESS, ROLLED BACK, ...


# --- The errors of the release system (release_management.py) ----------------------------


class ReleaseError(Exception):
    """Bad input: an unknown release, an invalid catalog, a promotion out of order.

    Retrying cannot help; the message says what is wrong and what to do about it.
    """


class InjectedFailure(Exception):
    """A simulated transient failure, raised when a failure injector from utils.py fires."""


class VerificationError(Exception):
    """A deployed component is not in the state its deploy was meant to leave it in."""


class Unhealthy(VerificationError):
    """A deployed component failed its health check."""


class SourceMissing(Exception):
    """An artifact that a step needs is not where it should be (yet)."""


class ChangeMadeTwice(Exception):
    """A step went to make a change that its target already holds: it did not check first. A
    bug, so Temporal retries it until a fixed worker takes over, rather than change it again."""
