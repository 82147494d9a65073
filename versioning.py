"""Worker Versioning: each worker of the release workflows runs one version of the plan.

A worker joins the Worker Deployment named after its task queue with a build ID made from the
plan's code (or DEMO_BUILD_ID). Releases are pinned to the version they start on; new ones start
on the current version, which the worker sets only where there is none (demos.md, section 14).
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

# What a worker replays: a change to these is a new version; a change to a step's body or to
# utils.py is not, as the history holds each step's result, not its code.
PLAN_FILES = (
    "workflows.py",
    "deploy.py",
    "steps.py",
    "announcements.py",
    "own_workers.py",
    "locks.py",
    "gates.py",
    "grid.py",
    "shared.py",
    "search_attributes.py",
)
BUILD_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def build_id() -> str:
    """DEMO_BUILD_ID, or plan-<the first 10 hex digits of the SHA-256 of PLAN_FILES>."""
    chosen = os.environ.get("DEMO_BUILD_ID", "").strip()
    if chosen and not BUILD_ID_PATTERN.fullmatch(chosen):
        raise ValueError(
            f"DEMO_BUILD_ID={chosen!r} is not a build ID: use up to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (e.g. v2), or unset it to use one made "
            "from the plan's code"
        )
    if chosen:
        return chosen
    plan = b"".join((Path(__file__).parent / name).read_bytes() for name in PLAN_FILES)
    return f"plan-{hashlib.sha256(plan).hexdigest()[:10]}"


def deployment_config(task_queue: str = TASK_QUEUE) -> WorkerDeploymentConfig:
    """The server sends this worker only its version's tasks (and new workflows', once current)."""
    version = WorkerDeploymentVersion(deployment_name=task_queue, build_id=build_id())
    return WorkerDeploymentConfig(version=version, use_worker_versioning=True)


async def current_build(client: Client, deployment: str) -> tuple[str | None, bytes]:
    """The build ID of the deployment's current version (None: none yet), and the token that
    changes whenever that does."""
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
    """Make version current if its deployment has none; never replace one. Returns a line that
    says where new releases start."""
    name, build = version.deployment_name, version.build_id
    current, token = await current_build(client, name)
    made = current is None
    if made:
        request = SetWorkerDeploymentCurrentVersionRequest(
            namespace=client.namespace,
            deployment_name=name,
            build_id=build,
            conflict_token=token,  # refused if another worker made one current meanwhile
            identity=client.identity,
            allow_no_pollers=True,  # this worker polls in a moment
        )
        try:
            await client.workflow_service.set_worker_deployment_current_version(request)
        except RPCError as err:
            if err.status not in (RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED):
                raise
        # Read back: with no token yet to refuse it, the last of two new workers to set it wins.
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
