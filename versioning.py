"""Worker Versioning: each worker of the release workflows runs one version of the plan.

A worker joins a Worker Deployment, named after its task queue, with a build ID: DEMO_BUILD_ID,
or by default one made from the plan's code (PLAN_FILES). Releases are pinned (workflows.py): a
release runs to its end on the version it started on, and new releases start on the
deployment's current version, which a person (or a pipeline) sets. The worker makes the first
version current itself, so that a new server needs no extra step; it never switches versions.
demos.md, "Ship a new version of the plan while releases wait".
"""

import hashlib
import os
import re
from pathlib import Path

from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import WorkerDeploymentConfig

from shared import TASK_QUEUE

# The files the workflows' code is made of: what a worker replays. A change to them is a new
# version; a change to a step's body (activities.py, release_management.py) or to the knobs in
# utils.py is not, as the history holds each step's result, not its code.
PLAN_FILES = (
    "workflows.py",
    "locks.py",
    "gates.py",
    "grid.py",
    "shared.py",
    "search_attributes.py",
)
BUILD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def build_id() -> str:
    """DEMO_BUILD_ID, or plan-<the first 10 hex digits of the SHA-256 of PLAN_FILES>.

    Raises:
        ValueError: DEMO_BUILD_ID is not a build ID; the message says what one is.
    """
    chosen = os.environ.get("DEMO_BUILD_ID", "").strip()
    if chosen and not BUILD_ID_PATTERN.fullmatch(chosen):
        raise ValueError(
            f"DEMO_BUILD_ID={chosen!r} is not a build ID: use up to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. v2), or unset it to use one made "
            "from the plan's code"
        )
    if chosen:
        return chosen
    plan = hashlib.sha256()
    for name in PLAN_FILES:
        plan.update((Path(__file__).parent / name).read_bytes())
    return f"plan-{plan.hexdigest()[:10]}"


def version_of(task_queue: str = TASK_QUEUE) -> WorkerDeploymentVersion:
    """The version of the plan this code's workers of task_queue run: Worker Deployment
    task_queue, build build_id()."""
    return WorkerDeploymentVersion(deployment_name=task_queue, build_id=build_id())


def deployment_config(task_queue: str = TASK_QUEUE) -> WorkerDeploymentConfig:
    """Versioning on, as version_of(task_queue): the server sends this worker only the tasks of
    that version (and of new workflows, once it is current)."""
    return WorkerDeploymentConfig(version=version_of(task_queue), use_worker_versioning=True)


async def current_build(client: Client, deployment: str) -> tuple[str | None, bytes]:
    """The build ID of the deployment's current version (None if it has none yet), and the
    token that changes whenever that does."""
    try:
        described = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=deployment)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # no worker of it has ever polled
            return None, b""
        raise
    current = described.worker_deployment_info.routing_config.current_deployment_version
    return current.build_id or None, described.conflict_token


async def make_first_current(client: Client, version: WorkerDeploymentVersion) -> str:
    """Make version current if its deployment has no current version (a new server, or a new
    task queue); never replace one. Returns a line that says where new releases start."""
    name, build = version.deployment_name, version.build_id
    current, token = await current_build(client, name)
    made = current is None
    if made:
        try:
            await _set_current(client, version, token)
        except RPCError as err:
            if err.status not in (RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED):
                raise
        # Read back: another worker, starting at the same moment, may have been first (a new
        # deployment has no token to refuse it with, so the last one to set it wins).
        current, _ = await current_build(client, name)
    if current == build:
        how = "made current (the first)" if made else "current"
        return f"Version {build} of Worker Deployment {name!r}: {how}: new releases start on it."
    return (
        f"Version {build} of Worker Deployment {name!r} is not current: new releases start on "
        f"{current}; this worker runs the releases pinned to {build}. To start new ones on it: "
        f"temporal worker deployment set-current-version --deployment-name {name} "
        f"--build-id {build} --yes"
    )


async def _set_current(client: Client, version: WorkerDeploymentVersion, token: bytes) -> None:
    await client.workflow_service.set_worker_deployment_current_version(
        SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=version.deployment_name,
            build_id=version.build_id,
            conflict_token=token,  # refused if another worker made one current meanwhile
            identity=client.identity,
            allow_no_pollers=True,  # this worker polls in a moment
        )
    )
