"""Knobs a person turns while playing with the demo: failure rates, a bug, pace, DEMO_* settings.

Failure injectors
    Each release_management step asks an injector, before and after its change, whether to
    fail now. Edit the rates below, or edit which injector a step calls in
    release_management.py, to make the release system flakier or steadier. The worker reads
    DEMO_FAILURES=off|rarely|sometimes|alot to put every injector on one rate at once.

A bug
    DEMO_BUG=<step> plants a bug in one step: it raises an unexpected error every time, the way
    a real defect would, until the worker is restarted without it (see demos.md).

An unhealthy deploy
    DEMO_UNHEALTHY=<component>@<ENV> makes that component's health check fail in that
    environment: its deploy is rolled back (see demos.md).

Pace
    DEMO_STEP_SECONDS (default 1) is how long each step takes, so a person can follow the
    release in the Web UI and kill the worker in the middle of it.

The injectors keep the original demo's names (isErrorRarely, ...): its docs use them.
"""

import argparse
import os
import random
from pathlib import Path

from shared import TASK_QUEUE, Environment

# How often each injector fails, as a probability per call. Edit these.
RARELY_RATE = 0.10
SOMETIMES_RATE = 0.30
A_LOT_RATE = 0.60

# DEMO_FAILURES overrides every injector with one of these rates.
FAILURE_MODES = {"off": 0.0, "rarely": RARELY_RATE, "sometimes": SOMETIMES_RATE, "alot": A_LOT_RATE}

DEFAULT_STEP_SECONDS = 1.0
MAX_STEP_SECONDS = 60.0  # activities time out after two minutes (workflows.py)


def failure_mode() -> str | None:
    """The DEMO_FAILURES override, or None when each injector keeps its own rate.

    Raises:
        ValueError: DEMO_FAILURES holds something other than one of FAILURE_MODES.
    """
    mode = os.environ.get("DEMO_FAILURES", "").strip().lower()
    if not mode:
        return None
    if mode not in FAILURE_MODES:
        raise ValueError(
            f"DEMO_FAILURES={mode!r} is not a failure mode; use one of: {', '.join(FAILURE_MODES)}"
        )
    return mode


def _fails(rate: float) -> bool:
    mode = failure_mode()
    if mode is not None:
        rate = FAILURE_MODES[mode]
    return random.random() < rate


def isErrorNever() -> bool:
    """Never fails (unless DEMO_FAILURES says otherwise)."""
    return _fails(0.0)


def isErrorRarely() -> bool:
    """Fails about one call in ten (RARELY_RATE)."""
    return _fails(RARELY_RATE)


def isErrorSometimes() -> bool:
    """Fails about three calls in ten (SOMETIMES_RATE)."""
    return _fails(SOMETIMES_RATE)


def isErrorALot() -> bool:
    """Fails about six calls in ten (A_LOT_RATE)."""
    return _fails(A_LOT_RATE)


# The steps of release_management.py, by the names DEMO_BUG takes.
STEPS = (
    "gather",
    "check",
    "build",
    "fetch_artifact",
    "fetch_config",
    "deploy",
    "configure",
    "verify",
    "rollback",
    "notify",
    "record",
)


class PlantedBug(Exception):
    """The error a step planted with DEMO_BUG raises: it stands for a defect in its code."""


def planted_bug() -> str | None:
    """The step DEMO_BUG names, or None.

    Raises:
        ValueError: DEMO_BUG names no step.
    """
    step = os.environ.get("DEMO_BUG", "").strip()
    if step and step not in STEPS:
        raise ValueError(f"DEMO_BUG={step!r} is not a step; use one of: {', '.join(STEPS)}")
    return step or None


def raise_planted_bug(step: str) -> None:
    """Fail like a defect in step's code would, if DEMO_BUG names step."""
    if planted_bug() == step:
        raise PlantedBug(
            f"bug in the {step} step (planted by DEMO_BUG={step}): "
            "restart the worker without DEMO_BUG to ship the fix"
        )


def unhealthy() -> tuple[str, str] | None:
    """The (component, ENV) that DEMO_UNHEALTHY=<component>@<ENV> says fails its health check.

    Raises:
        ValueError: DEMO_UNHEALTHY is not of the form component@ENV.
    """
    raw = os.environ.get("DEMO_UNHEALTHY", "").strip()
    if not raw:
        return None
    component, _, env = raw.partition("@")
    names = [env.value for env in Environment]
    if not component or env not in names:
        raise ValueError(
            f"DEMO_UNHEALTHY={raw!r} is not <component>@<ENV>, e.g. frontend@QC "
            f"(ENV is one of {', '.join(names)})"
        )
    return component, env


def step_seconds() -> float:
    """How long each step takes on purpose (DEMO_STEP_SECONDS, default 1 second).

    Raises:
        ValueError: DEMO_STEP_SECONDS is not a number of seconds from 0 to MAX_STEP_SECONDS.
    """
    raw = os.environ.get("DEMO_STEP_SECONDS", "").strip()
    if not raw:
        return DEFAULT_STEP_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_STEP_SECONDS:
        raise ValueError(
            f"DEMO_STEP_SECONDS={raw!r} is not a number of seconds from 0 to {MAX_STEP_SECONDS:g}"
        )
    return seconds


def check_demo_root() -> None:
    """Refuse a DEMO_ROOT that is not a folder: the scripts would show empty environments, and a
    worker would scatter a release's files into a folder nobody looks at.

    Raises:
        ValueError: DEMO_ROOT is set and names no folder.
    """
    root = os.environ.get("DEMO_ROOT")
    if root and not Path(root).is_dir():
        raise ValueError(
            f"DEMO_ROOT={root!r} is not a folder: create it (mkdir -p {root}) or unset DEMO_ROOT "
            "to use the project folder"
        )


def check_artifactory() -> None:
    """Refuse a DEMO_ARTIFACTORY that is not a folder of its own: not one (builds would fail),
    one that holds the demo root, or one in the demo root's environments.

    Raises:
        ValueError: DEMO_ARTIFACTORY is set and is none of those; the message says which.
    """
    store = os.environ.get("DEMO_ARTIFACTORY")
    if not store:
        return
    if not Path(store).is_dir():
        raise ValueError(
            f"DEMO_ARTIFACTORY={store!r} is not a folder: create it (mkdir -p {store}), or unset "
            "it to use the demo root's artifactory/"
        )
    root = Path(os.environ.get("DEMO_ROOT") or Path(__file__).parent).resolve()
    shared = Path(store).resolve()
    if root.is_relative_to(shared) or shared.is_relative_to(root / "environments"):
        raise ValueError(
            f"DEMO_ARTIFACTORY={store!r} holds the demo root, or lies in its environments: "
            "give the artifact store a folder of its own"
        )


def environment_argument(text: str) -> Environment:
    """A command line's environment, in any case: prod is PROD.

    Raises:
        argparse.ArgumentTypeError: text names no environment; the message lists them.
    """
    try:
        return Environment(text.upper())
    except ValueError:
        names = ", ".join(env.value for env in Environment)
        raise argparse.ArgumentTypeError(f"one of {names}, not {text!r}") from None


def own_workers() -> list[Environment]:
    """The environments whose steps run on a worker of their own (DEMO_OWN_WORKERS, read by the
    worker that gathers a release: "PROD", "DEV,TEST,QC,PROD" or "all"; none by default). Each
    such environment's steps go to its own task queue (shared.steps_queue), which only a worker
    started with --env ENV serves.

    Raises:
        ValueError: DEMO_OWN_WORKERS names something other than environments.
    """
    raw = os.environ.get("DEMO_OWN_WORKERS", "").strip()
    if raw.lower() == "all":
        return list(Environment)
    names = [name.strip().upper() for name in raw.split(",") if name.strip()]
    known = [env.value for env in Environment]
    if unknown := [name for name in names if name not in known]:
        raise ValueError(
            f"DEMO_OWN_WORKERS={raw!r} names {', '.join(unknown)}: use environments from "
            f"{', '.join(known)}, separated by commas, or all"
        )
    return [env for env in Environment if env.value in names]


def check_task_queue() -> None:
    """Refuse a blank DEMO_TASK_QUEUE (a worker on queue '' would never meet the starter), and one
    with '.' or ':', which separate an environment's queue (QUEUE.ENV) and a Worker Deployment's
    name from the rest.

    Raises:
        ValueError: DEMO_TASK_QUEUE is set but blank, or holds '.' or ':'.
    """
    if not TASK_QUEUE.strip():
        raise ValueError(
            "DEMO_TASK_QUEUE is empty: unset it to use release-orchestration, or name a queue"
        )
    if "." in TASK_QUEUE or ":" in TASK_QUEUE:
        raise ValueError(
            f"DEMO_TASK_QUEUE={TASK_QUEUE!r} holds '.' or ':': name a queue without them "
            "(they separate an environment's queue, QUEUE.ENV, and a Worker Deployment's version)"
        )


def check_demo_settings() -> None:
    """Validate every DEMO_* setting the worker reads, so a typo fails at start, not mid-release.

    Raises:
        ValueError: a setting is invalid; the message names it and the accepted values.
    """
    failure_mode()
    planted_bug()
    unhealthy()
    step_seconds()
    own_workers()
    check_demo_root()
    check_artifactory()
    check_task_queue()
