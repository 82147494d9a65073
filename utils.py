"""Knobs a person turns while playing with the demo: failure rates, a bug, pace, DEMO_* settings.

Each release_management step asks a failure injector, before and after its change, whether to
fail now: edit the rates below, or which injector a step calls (demos.md, section 3). The DEMO_*
settings are in README.md, "Settings"; the worker checks them all when it starts.
"""

import argparse
import os
import random
from collections.abc import Callable
from functools import partial
from pathlib import Path

from shared import TASK_QUEUE, Environment, InjectedFailure

# How often each injector fails, as a probability per call. Edit these.
RARELY_RATE = 0.10
SOMETIMES_RATE = 0.30
A_LOT_RATE = 0.60

# DEMO_FAILURES puts every injector on one of these rates.
FAILURE_MODES = {"off": 0.0, "rarely": RARELY_RATE, "sometimes": SOMETIMES_RATE, "alot": A_LOT_RATE}

DEFAULT_STEP_SECONDS = 1.0
MAX_STEP_SECONDS = 60.0  # activities time out after two minutes (steps.py)

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


def failure_mode() -> str | None:
    """The DEMO_FAILURES override, or None when each injector keeps its own rate."""
    mode = os.environ.get("DEMO_FAILURES", "").strip().lower()
    if mode and mode not in FAILURE_MODES:
        raise ValueError(
            f"DEMO_FAILURES={mode!r} is not a failure mode; use one of: {', '.join(FAILURE_MODES)}"
        )
    return mode or None


def _fails(rate: float) -> bool:
    mode = failure_mode()
    return random.random() < (FAILURE_MODES[mode] if mode else rate)


def maybe_fail(injector: Callable[[], bool], when: str) -> None:
    """Fail now (InjectedFailure: transient, retried) if the injector says so."""
    if injector():
        raise InjectedFailure(f"Simulated failure {when}")


# The injectors keep the original demo's names (its docs use them); each fails at its rate.
isErrorNever = partial(_fails, 0.0)
isErrorRarely = partial(_fails, RARELY_RATE)
isErrorSometimes = partial(_fails, SOMETIMES_RATE)
isErrorALot = partial(_fails, A_LOT_RATE)


class PlantedBug(Exception):
    """The error a step planted with DEMO_BUG raises: it stands for a defect in its code."""


def planted_bug() -> str | None:
    """The step DEMO_BUG names, or None."""
    step = os.environ.get("DEMO_BUG", "").strip()
    if step and step not in STEPS:
        raise ValueError(f"DEMO_BUG={step!r} is not a step; use one of: {', '.join(STEPS)}")
    return step or None


def raise_planted_bug(step: str) -> None:
    if planted_bug() == step:
        raise PlantedBug(
            f"bug in the {step} step (planted by DEMO_BUG={step}): "
            "restart the worker without DEMO_BUG to ship the fix"
        )


def unhealthy() -> tuple[str, str] | None:
    """The (component, ENV) whose health check DEMO_UNHEALTHY=<component>@<ENV> makes fail."""
    raw = os.environ.get("DEMO_UNHEALTHY", "").strip()
    if not raw:
        return None
    component, _, env = raw.partition("@")
    if not component or env not in list(Environment):
        raise ValueError(
            f"DEMO_UNHEALTHY={raw!r} is not <component>@<ENV>, e.g. frontend@QC "
            f"(ENV is one of {', '.join(Environment)})"
        )
    return component, env


def step_seconds() -> float:
    """How long each step takes on purpose (DEMO_STEP_SECONDS), so a person can follow it."""
    raw = os.environ.get("DEMO_STEP_SECONDS", "").strip()
    try:
        seconds = float(raw or DEFAULT_STEP_SECONDS)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_STEP_SECONDS:
        raise ValueError(
            f"DEMO_STEP_SECONDS={raw!r} is not a number of seconds from 0 to {MAX_STEP_SECONDS:g}"
        )
    return seconds


def check_demo_root() -> None:
    """Refuse a DEMO_ROOT that is not a folder: a worker would scatter files nobody looks at."""
    root = os.environ.get("DEMO_ROOT")
    if root and not Path(root).is_dir():
        raise ValueError(
            f"DEMO_ROOT={root!r} is not a folder: create it (mkdir -p {root}) or unset DEMO_ROOT "
            "to use the project folder"
        )


def check_artifactory() -> None:
    """Refuse a DEMO_ARTIFACTORY that is not a folder of its own, apart from the demo root."""
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
    """A command line's environment, in any case: prod is PROD."""
    try:
        return Environment(text.upper())
    except ValueError:
        names = ", ".join(Environment)
        raise argparse.ArgumentTypeError(f"one of {names}, not {text!r}") from None


def own_workers() -> list[Environment]:
    """The environments whose steps run on a worker of their own (DEMO_OWN_WORKERS: "PROD",
    "QC,PROD" or "all"; none by default), on its queue (shared.steps_queue)."""
    raw = os.environ.get("DEMO_OWN_WORKERS", "").strip()
    if raw.lower() == "all":
        return list(Environment)
    names = [name.strip().upper() for name in raw.split(",") if name.strip()]
    if unknown := [name for name in names if name not in list(Environment)]:
        raise ValueError(
            f"DEMO_OWN_WORKERS={raw!r} names {', '.join(unknown)}: use environments from "
            f"{', '.join(Environment)}, separated by commas, or all"
        )
    return [env for env in Environment if env in names]


def check_task_queue() -> None:
    """Refuse a blank DEMO_TASK_QUEUE, and one with '.' or ':', which separate an environment's
    queue (QUEUE.ENV) and a Worker Deployment's name from the rest."""
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
    """Check every DEMO_* setting the worker reads, so a typo fails at start, not mid-release."""
    for check in (failure_mode, planted_bug, unhealthy, step_seconds, own_workers):
        check()
    check_demo_root()
    check_artifactory()
    check_task_queue()
