"""release_management on its own: plain Python on a temp demo root, no Temporal."""

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import pytest

import artifacts
import files
import records
import release_management as rm
import rollback
from catalog import load_catalog, load_release
from deployments import RUN, artifact, at, deploy_all_steps, recorded
from ledger import commit as commit_change
from ledger import read_ledger
from shared import (
    CellState,
    ChangeMadeTwice,
    CheckPromotionInput,
    DeployArtifactInput,
    Environment,
    InjectedFailure,
    Outcome,
    RecordReleaseInput,
    ReleaseError,
    ReleaseResult,
    SkippedSoak,
    SourceMissing,
    VerificationError,
    VerifyInput,
)

DEV, TEST = Environment.DEV, Environment.TEST


def snapshot(root: Path) -> dict[str, str]:
    """Every file under the demo root, by relative path, with its content."""
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def write_catalog(root: Path, mutate: Callable[[dict[str, Any]], object]) -> Path:
    """Copy the project's catalog into the demo root, changed by mutate(data)."""
    data = json.loads((files.PROJECT_DIR / "database" / "catalog.json").read_text())
    mutate(data)
    path = root / "database" / "catalog.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_every_step_run_twice_changes_once(demo_root: Path) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    first = snapshot(demo_root)
    deploy_all_steps("frontend", "1.0", DEV)
    assert snapshot(demo_root) == first
    steps = [(line["step"], line["env"]) for line in read_ledger()]
    assert steps == [("build", None), ("deploy", "DEV"), ("configure", "DEV")]
    assert not list(demo_root.rglob("*.tmp"))


def test_deploy_replaces_the_older_version(demo_root: Path) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    deploy_all_steps("frontend", "1.1", DEV)
    assert artifacts.held_versions(DEV, "frontend") == ["1.1"]
    config = json.loads(files.config_path(DEV, "frontend").read_text())
    assert (config["version"], config["environment"]) == ("1.1", "DEV")


def test_a_rebuild_gives_the_same_bytes(demo_root: Path) -> None:
    rm.build_artifact(at("sbstore", "1.7", run=RUN))
    built = files.artifact_path("sbstore", "1.7").read_text()
    files.artifact_path("sbstore", "1.7").unlink()
    assert rm.build_artifact(at("sbstore", "1.7", run="run-2")) is True
    assert files.artifact_path("sbstore", "1.7").read_text() == built
    assert "version: 1.7" in built and "source: https://" in built


def test_a_crash_before_the_rename_is_finished_by_the_retry_and_recorded_once(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def crash(src: str, dst: str) -> None:
        raise OSError("worker died here")

    monkeypatch.setattr(rm.os, "replace", crash)
    with pytest.raises(OSError):
        rm.build_artifact(at("frontend", "1.0", run=RUN))
    assert not files.artifact_path("frontend", "1.0").exists()
    monkeypatch.setattr(rm.os, "replace", real_replace)
    assert rm.build_artifact(at("frontend", "1.0", run=RUN)) is True
    assert [line["step"] for line in read_ledger()] == ["build"]
    assert not list(demo_root.rglob("*.tmp"))


def test_a_record_keeps_the_soaks_a_person_skipped(demo_root: Path) -> None:
    release = load_release("RELEASE-FEB-24-BETA")
    skipped = SkippedSoak(environment=Environment.QC, by="Ada", at="t1")
    name = records.record_release(recorded(release, skipped_soaks=[skipped]))
    record = json.loads((files.records_dir() / name).read_text())
    assert record["skipped_soaks"] == [{"environment": "QC", "by": "Ada", "at": "t1"}]


def test_a_change_already_made_is_refused_not_made_again(demo_root: Path) -> None:
    """A step that skipped its check would reach ledger.commit with a change already made:
    refused, so a missing check fails loudly instead of changing (and being recorded) twice."""
    path = files.artifact_path("frontend", "1.0")
    line = {"release_key": "R", "run_id": RUN, "env": None, "component": "frontend"}
    commit_change(path, "built\n", line | {"version": "1.0", "step": "build"})
    with pytest.raises(ChangeMadeTwice, match="already holds this change"):
        commit_change(path, "built\n", line | {"version": "1.0", "step": "build"})
    assert len(read_ledger()) == 1


def test_a_deploy_cut_short_before_it_moved_the_old_version_aside_finishes_on_retry(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    rm.build_artifact(at("frontend", "1.1"))
    request = DeployArtifactInput(
        deployment=at("frontend", "1.1", DEV), artifact=rm.fetch_artifact(at("frontend", "1.1"))
    )
    keep_previous = rm._keep_previous

    def crash(*_: object) -> None:
        raise OSError("the worker died here")

    monkeypatch.setattr(rm, "_keep_previous", crash)
    with pytest.raises(OSError):
        rm.deploy_artifact(request)
    assert artifacts.held_versions(DEV, "frontend") == ["1.0", "1.1"]
    monkeypatch.setattr(rm, "_keep_previous", keep_previous)
    assert rm.deploy_artifact(request) is True  # the old version is moved aside, nothing more
    assert artifacts.held_versions(DEV, "frontend") == ["1.1"]
    assert artifacts.previous_version(DEV, "frontend") == "1.0"
    deploys = [line for line in read_ledger() if line["step"] == "deploy"]
    assert [line["version"] for line in deploys] == ["1.0", "1.1"]


def test_failure_after_the_change_is_retried_without_repeating_it(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rm.build_artifact(at("frontend", "1.0", run=RUN))
    sha = rm.fetch_artifact(at("frontend", "1.0", DEV)).sha256
    calls = iter([False, True])  # before the change: pass; after it: fail
    monkeypatch.setattr(rm, "isErrorSometimes", lambda: next(calls, False))
    with pytest.raises(InjectedFailure, match="after deploying frontend 1.0 to DEV"):
        rm.deploy_artifact(
            DeployArtifactInput(
                deployment=at("frontend", "1.0", DEV, run=RUN), artifact=artifact(sha)
            )
        )
    assert (
        rm.deploy_artifact(
            DeployArtifactInput(
                deployment=at("frontend", "1.0", DEV, run=RUN), artifact=artifact(sha)
            )
        )
        is False
    )
    assert [line["step"] for line in read_ledger()] == ["build", "deploy"]


def test_unknown_key_lists_the_valid_keys(demo_root: Path) -> None:
    with pytest.raises(ReleaseError) as caught:
        load_release("RELEASE-NOPE")
    assert "'RELEASE-NOPE'" in str(caught.value)
    assert "RELEASE-NOV-23-INITIAL" in str(caught.value)
    assert "RELEASE-JAN-24-ALPHA-PROD" in str(caught.value)


def write_large_catalog(root: Path, count: int) -> None:
    """A catalog of count releases, RELEASE-GEN-0000 and on, each a copy of the first one."""

    def mutate(data: dict) -> None:
        first = data["releases"][0]
        data["releases"] = [dict(first, key=f"RELEASE-GEN-{n:04d}") for n in range(count)]

    write_catalog(root, mutate)


def test_an_unknown_key_names_a_few_valid_keys_however_large_the_catalog(demo_root: Path) -> None:
    write_large_catalog(demo_root, 2000)
    with pytest.raises(ReleaseError) as caught:
        load_release("RELEASE-NOPE" * 100_000)
    message = str(caught.value)
    assert "RELEASE-GEN-0000, RELEASE-GEN-0001" in message
    assert "RELEASE-GEN-0019 and 1980 more" in message
    assert len(message) < 1000  # it crosses Temporal when a release names an unknown key


def test_loading_every_release_of_a_large_catalog_reads_it_once(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_large_catalog(demo_root, 2000)
    reads: list[Path] = []
    read_text = Path.read_text

    def counted(path: Path, *args: Any, **kwargs: Any) -> str:
        if path.name == files.CATALOG_NAME:
            reads.append(path)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    catalog = load_catalog()
    releases = [load_release(key, catalog=catalog) for key in catalog.release_keys()]
    assert len(releases) == 2000 and len(reads) == 1
    load_release("RELEASE-GEN-0007")  # without a catalog, it reads one
    assert len(reads) == 2
    # A refused promotion names releases that would feed it: one read for all 2,000 candidates.
    to_test = releases[0].model_copy(update={"environments": [TEST]})
    with pytest.raises(ReleaseError, match=r"Run RELEASE-GEN-0000 or .* \(or one of 1997 more\)"):
        rm.check_promotion(CheckPromotionInput(release=to_test))
    assert len(reads) == 3


def _release(data: dict, key: str) -> dict:
    return next(entry for entry in data["releases"] if entry["key"] == key)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(environments=["DEV", "QC"]),
            r"release RELEASE-NOV-23-INITIAL: releases\.0\.environments.*\[DEV, QC\].*skip",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(environments=["TEST", "DEV"]),
            r"\[TEST, DEV\] is not a contiguous run",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(environments=["DEV", "STAGING"]),
            r"release RELEASE-NOV-23-INITIAL: releases\.0\.environments\.1",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL")["versions"].update(frontend="../1.0"),
            r"release RELEASE-NOV-23-INITIAL: releases\.0\.versions\.frontend",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL")["versions"].update(frontend="1/0"),
            r"releases\.0\.versions\.frontend: String should match pattern",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL")["versions"].update({"../etc": "1.0"}),
            r"releases\.0\.versions\.\.\./etc",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL")["versions"].update(payments="1.0"),
            r"versions: unknown component\(s\) payments",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(approved_by=None),
            r"must name who approved it",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(approved_by="A" * 10_000_000),
            r"releases\.0\.approved_by: String should have at most 200 characters",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(approved_by="Ada\u202eecalevoL"),
            r"releases\.0\.approved_by: unprintable character '\\u202e' at position 3; "
            r"allowed: printable text on one line",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(approved="yes"),
            r"releases\.0\.approved: Input should be a valid boolean",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(approved=1),
            r"releases\.0\.approved: Input should be a valid boolean",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(release_date=1700006400),
            r'releases\.0\.release_date: must be a date written "YYYY-MM-DD"',
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(environments=["DEV"] * 100_000),
            r"releases\.0\.environments: List should have at most 4 items",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL").update(approval_before=["PROD"] * 9),
            r"releases\.0\.approval_before: List should have at most 4 items",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL")["versions"].update(
                {f"c{n}": "1.0" for n in range(1000)}
            ),
            r"releases\.0\.versions: Dictionary should have at most 1000 items",
        ),
        (
            lambda d: _release(d, "RELEASE-NOV-23-INITIAL")["versions"].update({"x" * 10**7: "1"}),
            r"releases\.0\.versions\.x{60}\.\.\.\.\[key\]: String should",
        ),
    ],
    ids=[
        "skips-an-env",
        "out-of-order",
        "unknown-env",
        "dotdot-version",
        "slash-version",
        "bad-component",
        "unknown-component",
        "no-approver",
        "huge-approver",
        "approver-with-control",
        "approved-yes",
        "approved-1",
        "date-as-timestamp",
        "huge-environments",
        "huge-approval-before",
        "too-many-components",
        "huge-component-name",
    ],
)
def test_invalid_release_is_refused_naming_file_release_and_field(
    demo_root: Path, mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    path = write_catalog(demo_root, mutate)
    with pytest.raises(ReleaseError, match=message) as caught:
        load_release("RELEASE-NOV-23-INITIAL")
    assert str(path) in str(caught.value)
    assert len(str(caught.value)) < 500  # a message crosses Temporal: it never quotes a huge value
    assert load_release("RELEASE-JAN-24-ALPHA-DEV").key == "RELEASE-JAN-24-ALPHA-DEV"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["components"]["frontend"].update(team="W" * 10_000_000),
            r"components\.frontend\.team: String should have at most 200 characters",
        ),
        (
            lambda d: d["components"]["frontend"].update(team=""),
            r"components\.frontend\.team: String should have at least 1 character",
        ),
        (
            lambda d: d["components"]["sbstore"].update(repository="https://x.example/a\n.git"),
            r"components\.sbstore\.repository: unprintable character '\\n' at position 19",
        ),
        (
            lambda d: d["environments"]["PROD"].update(log_level="\x1b[31mwarning"),
            r"environments\.PROD\.log_level: unprintable character '\\x1b' at position 0",
        ),
        (
            lambda d: d["environments"]["DEV"].update(replicas=True),
            r"environments\.DEV\.replicas: Input should be a valid integer",
        ),
        (
            lambda d: d["environments"]["DEV"].update(replicas="2"),
            r"environments\.DEV\.replicas: Input should be a valid integer",
        ),
        (
            lambda d: d["components"].update({"x" * 10_000_000: {"repository": "r", "team": "t"}}),
            r"components\.x{60}\.\.\.\.\[key\]: String should",
        ),
    ],
    ids=[
        "huge-team",
        "empty-team",
        "newline-in-repository",
        "escape-in-log-level",
        "replicas-true",
        "replicas-string",
        "huge-component-name",
    ],
)
def test_invalid_catalog_field_is_refused_naming_file_and_field(
    demo_root: Path, mutate: Callable[[dict[str, Any]], object], message: str
) -> None:
    path = write_catalog(demo_root, mutate)
    with pytest.raises(ReleaseError, match=message) as caught:
        load_catalog()
    assert str(path) in str(caught.value) and "fix the catalog" in str(caught.value)
    assert len(str(caught.value)) < 500


def test_the_shipped_catalog_loads_strictly(demo_root: Path) -> None:
    catalog = load_catalog()
    releases = [load_release(key, catalog=catalog) for key in catalog.release_keys()]
    assert len(releases) == 7
    assert releases[0].release_date == date(2023, 11, 15) and releases[0].approved is True
    assert catalog.environments[Environment.PROD].replicas == 3


def test_component_listed_twice_is_refused(demo_root: Path) -> None:
    path = demo_root / "database" / "catalog.json"
    write_catalog(demo_root, lambda d: None)
    text = path.read_text().replace(
        '"frontend": "1.0",', '"frontend": "1.0", "frontend": "1.1",', 1
    )
    path.write_text(text)
    with pytest.raises(ReleaseError, match=r"releases\.0\.versions: 'frontend' is listed twice"):
        load_release("RELEASE-NOV-23-INITIAL")


def test_malformed_or_missing_catalog_is_refused(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_catalog(demo_root, lambda d: None)
    path.write_text('{"components": ')
    with pytest.raises(ReleaseError, match="catalog.json: not valid JSON"):
        load_release("RELEASE-NOV-23-INITIAL")
    path.write_bytes('{"components": {"frontend": {"team": "Caf\u00e9"}}}'.encode("latin-1"))
    with pytest.raises(ReleaseError, match=r"catalog.json: not UTF-8 text .*save it as UTF-8"):
        load_release("RELEASE-NOV-23-INITIAL")
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ReleaseError, match=r"catalog.json: nested too deeply.*fix the file"):
        load_release("RELEASE-NOV-23-INITIAL")
    path.write_text('{"components": ' + "9" * 5000 + "}")
    with pytest.raises(ReleaseError, match="catalog.json: not valid JSON"):
        load_release("RELEASE-NOV-23-INITIAL")
    monkeypatch.setattr("catalog.catalog_path", lambda: demo_root / "nowhere.json")
    with pytest.raises(ReleaseError, match="nowhere.json: catalog file not found"):
        load_release("RELEASE-NOV-23-INITIAL")


def test_promotion_from_an_environment_without_the_versions_is_refused(demo_root: Path) -> None:
    for component in ("frontend", "sbstore", "backendforfrontend"):
        for env in Environment:
            deploy_all_steps(component, "1.0", env)
    before = snapshot(demo_root)
    release = load_release("RELEASE-DEC-2023-BUGFIXES-PROD")
    with pytest.raises(ReleaseError) as caught:
        rm.check_promotion(CheckPromotionInput(release=release))
    message = str(caught.value)
    assert "cannot be promoted to PROD" in message
    assert "QC holds frontend 1.0, not 1.1" in message
    assert "Run RELEASE-NOV-23-HOTFIX-STAGE first" in message
    assert snapshot(demo_root) == before
    rm.check_promotion(CheckPromotionInput(release=load_release("RELEASE-NOV-23-INITIAL")))


def test_verify_catches_a_deploy_that_is_not_what_was_gathered(demo_root: Path) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    sha = rm.fetch_artifact(at("frontend", "1.0", DEV)).sha256
    # A genuine build, but not the artifact this deploy gathered: retried.
    with pytest.raises(VerificationError, match="does not match its artifact"):
        rm.verify_deploy(
            VerifyInput(deployment=at("frontend", "1.0", DEV), artifact=artifact("0" * 64))
        )
    # Not what the build made (tampered with): refused, no retry can make it genuine.
    genuine = files.deployed_path(DEV, "frontend", "1.0").read_text()
    files.deployed_path(DEV, "frontend", "1.0").write_text("tampered\n")
    with pytest.raises(ReleaseError, match="is not what the build of frontend 1.0 makes"):
        rm.verify_deploy(VerifyInput(deployment=at("frontend", "1.0", DEV), artifact=artifact(sha)))
    files.deployed_path(DEV, "frontend", "1.0").write_text(genuine)
    files.deployed_path(DEV, "frontend", "1.1").write_text("stray\n")
    with pytest.raises(VerificationError, match="DEV holds frontend 1.0\\+1.1, expected 1.0"):
        rm.verify_deploy(VerifyInput(deployment=at("frontend", "1.0", DEV), artifact=artifact(sha)))


def test_a_promotion_whose_build_is_not_in_the_artifact_store_is_refused_before_any_change(
    demo_root: Path,
) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    files.artifact_path("frontend", "1.0").unlink()  # what every deploy fetches from
    release = load_release("RELEASE-NOV-23-INITIAL").model_copy(
        update={"versions": {"frontend": "1.0"}, "environments": [TEST]}
    )
    with pytest.raises(ReleaseError, match="artifactory/frontend-1.0.txt is missing in the"):
        rm.check_promotion(CheckPromotionInput(release=release))


def test_the_record_of_an_environment_with_a_worker_of_its_own_says_what_it_cannot_know(
    demo_root: Path,
) -> None:
    release = load_release("RELEASE-NOV-23-INITIAL").model_copy(
        update={"own_workers": [Environment.QC, Environment.PROD]}
    )
    states = {
        Environment.QC: dict.fromkeys(release.versions, CellState.FAILED),
        Environment.PROD: dict.fromkeys(release.versions, CellState.NOT_REACHED),
    }
    record = records._recorded_environments(
        RecordReleaseInput(
            release=release,
            release_run_id="run-1",
            result=ReleaseResult(release_key=release.key, outcome=Outcome.FAILED),
            started="",
            finished="",
            before={Environment.QC: {"frontend": "0.9"}},  # PROD was never asked
            states=states,
        )
    )
    assert record["QC"]["frontend"] | {"outcome": ""} == {
        "before": "0.9",
        "after": "?",
        "outcome": "",
    }
    assert record["PROD"]["frontend"] | {"outcome": ""} == {
        "before": "?",
        "after": "?",
        "outcome": "",
    }


def test_fetch_from_an_empty_artifact_store_is_a_transient_error(demo_root: Path) -> None:
    with pytest.raises(SourceMissing, match="artifactory/frontend-1.0.txt is missing from"):
        rm.fetch_artifact(at("frontend", "1.0", TEST))


def test_a_promotion_fetches_from_the_artifact_store_not_the_environment_before(
    demo_root: Path,
) -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    files.deployed_path(DEV, "frontend", "1.0").unlink()  # no worker reads another's folder
    gathered = rm.fetch_artifact(at("frontend", "1.0", TEST))
    assert (gathered.source, gathered.sha256) == (
        "artifactory",
        artifacts.built_digest("frontend", "1.0"),
    )


def test_two_overlapping_attempts_of_a_deploy_change_once_and_keep_the_replaced_version(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A retry can start while the attempt it replaces still runs on its thread (a lapsed
    # heartbeat). Slow each change down so that both attempts pass their "already done?" check
    # before either has made it, as they would without the per-component lock.
    deploy_all_steps("frontend", "1.0", DEV)
    rm.build_artifact(at("frontend", "1.1", run=RUN))
    sha = rm.fetch_artifact(at("frontend", "1.1", DEV)).sha256
    commit = commit_change

    def slow_commit(*args: Any, **kwargs: Any) -> None:
        time.sleep(0.3)
        commit(*args, **kwargs)

    monkeypatch.setattr(rm, "commit", slow_commit)
    with ThreadPoolExecutor(2) as threads:
        attempts = [
            threads.submit(
                rm.deploy_artifact,
                DeployArtifactInput(
                    deployment=at("frontend", "1.1", DEV, run="run-2"), artifact=artifact(sha)
                ),
            )
            for _ in range(2)
        ]
        changed = sorted(attempt.result() for attempt in attempts)

    assert changed == [False, True]  # one attempt deployed, the other found it done
    assert artifacts.held_versions(DEV, "frontend") == ["1.1"]
    assert artifacts.previous_version(DEV, "frontend") == "1.0"
    kept = files.previous_dir(DEV)
    assert json.loads((kept / "frontend.config.json").read_text())["version"] == "1.0"
    deploys = [line for line in read_ledger() if line["run_id"] == "run-2"]
    assert [(line["step"], line["version"]) for line in deploys] == [("deploy", "1.1")]
    # The rollback that .previous is kept for puts 1.0 back.
    assert rollback.rollback_deploy(at("frontend", "1.1", DEV, run="run-2")) == "1.0"
    assert artifacts.held_versions(DEV, "frontend") == ["1.0"]
