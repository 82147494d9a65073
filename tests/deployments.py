"""Inputs for the release_management tests: its steps take the models that cross Temporal."""

import release_management as rm
from shared import (
    ArtifactRef,
    Decision,
    Deployment,
    Environment,
    Outcome,
    RecordReleaseInput,
    Release,
    ReleaseResult,
    SkippedSoak,
    UpdateConfigInput,
    VerifyInput,
)

RUN = "run-1"


def at(
    component: str, version: str, env: Environment = Environment.DEV, run: str = RUN
) -> Deployment:
    """One component version going to env, as part of release "R"'s run."""
    return Deployment(
        release_key="R", release_run_id=run, component=component, version=version, environment=env
    )


def artifact(sha256: str) -> ArtifactRef:
    """A gathered artifact with this checksum (where it was found does not matter here)."""
    return ArtifactRef(source="", sha256=sha256)


def recorded(
    release: Release,
    decisions: list[Decision] | None = None,
    skipped_soaks: list[SkippedSoak] | None = None,
) -> RecordReleaseInput:
    """The record of a run of release that succeeded at once."""
    return RecordReleaseInput(
        release=release,
        release_run_id=RUN,
        result=ReleaseResult(release_key=release.key, outcome=Outcome.SUCCESS),
        started="t0",
        finished="t1",
        before={},
        states={},
        decisions=decisions or [],
        skipped_soaks=skipped_soaks or [],
    )


def deploy_all_steps(component: str, version: str, env: Environment) -> None:
    """Every step of one deploy, in the order DeployWorkflow runs them."""
    deployment = at(component, version, env)
    if env is Environment.DEV:
        rm.build_artifact(deployment)
    gathered = rm.fetch_artifact(deployment)
    config = rm.fetch_config(deployment)
    rm.deploy_artifact(rm.DeployArtifactInput(deployment=deployment, artifact=gathered))
    rm.update_config(UpdateConfigInput(deployment=deployment, config=config))
    rm.verify_deploy(VerifyInput(deployment=deployment, artifact=gathered))
