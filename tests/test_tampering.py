"""Files under the demo root that a crash, a person or an intruder changed: a torn ledger line,
planted symbolic links, hand-edited release records. Plain Python on a temp demo root."""

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

import files
import records
import release_management as rm
import rollback
import run_workflow
from catalog import load_release
from deployments import RUN, at, deploy_all_steps, recorded
from ledger import read_ledger
from shared import Decision, Environment, ReleaseError
from test_release_management import snapshot

DEV = Environment.DEV


@pytest.fixture
def outside(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder outside the demo root, holding one file that nothing may change."""
    folder = tmp_path_factory.mktemp("outside")
    (folder / "precious.txt").write_text("precious\n")
    return folder


def plant(link: Path, target: Path) -> Path:
    """A symbolic link at link, pointing at target."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


# --- The ledger ----------------------------------------------------------------------------


def test_a_torn_ledger_tail_leaves_the_next_change_on_a_line_of_its_own(
    demo_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rm.build_artifact(at("frontend", "1.0", run=RUN))
    ledger = files.ledger_path()
    ledger.write_bytes(ledger.read_bytes()[:-9])  # a crash cut the write short
    rm.build_artifact(at("sbstore", "1.0", run=RUN))
    lines = ledger.read_bytes().split(b"\n")
    assert json.loads(lines[1])["component"] == "sbstore" and lines[2:] == [b""]
    with caplog.at_level(logging.WARNING):
        assert [line["component"] for line in read_ledger()] == ["sbstore"]
    assert "ledger.jsonl: skipped line(s) 1:" in caplog.text
    # The torn line records no change: the rebuilt frontend gets a line; sbstore is not twice.
    files.artifact_path("frontend", "1.0").unlink()
    files.artifact_path("sbstore", "1.0").unlink()
    rm.build_artifact(at("frontend", "1.0", run=RUN))
    rm.build_artifact(at("sbstore", "1.0", run=RUN))
    assert [line["component"] for line in read_ledger()] == ["sbstore", "frontend"]


def test_ledger_lines_that_are_not_changes_are_skipped(demo_root: Path) -> None:
    ledger = files.ledger_path()
    ledger.parent.mkdir(parents=True)
    # Hand edits that mention the run and component: the duplicate check must not trip on them.
    ledger.write_bytes(b'["run-1", "frontend"]\nrun-1 frontend \xff\xfe\n' + b"[" * 100_000 + b"\n")
    rm.build_artifact(at("frontend", "1.0", run=RUN))
    assert [line["step"] for line in read_ledger()] == ["build"]


# --- Symbolic links ------------------------------------------------------------------------


def test_links_planted_at_temp_names_are_removed_not_written_through(
    demo_root: Path, outside: Path
) -> None:
    before = snapshot(outside)
    plant(
        files.artifact_path("frontend", "1.0").with_name(".frontend-1.0.txt.tmp"),
        outside / "precious.txt",
    )
    plant(files.environment_dir(DEV) / ".frontend-1.0.txt.tmp", outside / "precious.txt")
    plant(files.environment_dir(DEV) / ".frontend.config.json.tmp", outside / "created.json")
    deploy_all_steps("frontend", "1.0", DEV)
    assert snapshot(outside) == before
    for path in (
        files.artifact_path("frontend", "1.0"),
        files.deployed_path(DEV, "frontend", "1.0"),
    ):
        assert not path.is_symlink() and "component: frontend" in path.read_text()
    assert not list(demo_root.rglob("*.tmp"))


def deploy(version: str) -> Callable[[], None]:
    return lambda: deploy_all_steps("frontend", version, DEV)


def nothing() -> None:
    pass


def deploy_and_replace() -> None:
    deploy_all_steps("frontend", "1.0", DEV)
    deploy_all_steps("frontend", "1.1", DEV)


def roll_back() -> None:
    rollback.rollback_deploy(at("frontend", "1.1", DEV, run=RUN))


def roll_back_the_first_deploy() -> None:
    rollback.rollback_deploy(at("frontend", "1.0", DEV, run=RUN))  # nothing to put back: remove it


def record() -> None:
    release = load_release("RELEASE-NOV-23-INITIAL")
    records.record_release(recorded(release))


@pytest.mark.parametrize(
    ("target", "prepare", "step"),
    [
        (lambda: files.artifact_path("frontend", "1.0"), nothing, deploy("1.0")),
        (lambda: files.deployed_path(DEV, "frontend", "1.0"), nothing, deploy("1.0")),
        (lambda: files.config_path(DEV, "frontend"), nothing, deploy("1.0")),
        (files.ledger_path, nothing, deploy("1.0")),
        (lambda: files.lock_path("DEV.frontend"), nothing, deploy("1.0")),
        (lambda: files.previous_dir(DEV) / "frontend.config.json", deploy("1.0"), deploy("1.1")),
        (lambda: files.previous_dir(DEV) / "frontend-1.0.txt", deploy_and_replace, roll_back),
        (lambda: files.records_dir() / f"RELEASE-NOV-23-INITIAL-{RUN}.json", nothing, record),
    ],
    ids=[
        "artifact",
        "deployed",
        "config",
        "ledger",
        "lock",
        "previous-config",
        "previous",
        "record",
    ],
)
def test_a_link_at_a_target_is_refused_and_nothing_outside_changes(
    demo_root: Path,
    outside: Path,
    target: Callable[[], Path],
    prepare: Callable[[], None],
    step: Callable[[], None],
) -> None:
    prepare()
    before = snapshot(outside)
    target().unlink(missing_ok=True)
    planted = plant(target(), outside / "precious.txt")
    with pytest.raises(ReleaseError, match="is a symbolic link") as caught:
        step()
    assert str(planted) in str(caught.value)
    assert snapshot(outside) == before


@pytest.mark.parametrize(
    ("folder", "prepare", "step"),
    [
        (lambda: files.environment_dir(DEV), nothing, deploy("1.0")),
        (lambda: files.previous_dir(DEV).parent, deploy("1.0"), deploy("1.1")),
        (lambda: files.environment_dir(DEV), deploy("1.0"), roll_back_the_first_deploy),
    ],
    ids=["deploy", "previous", "rollback"],
)
def test_a_linked_folder_is_refused_and_nothing_outside_changes(
    demo_root: Path,
    outside: Path,
    folder: Callable[[], Path],
    prepare: Callable[[], None],
    step: Callable[[], None],
) -> None:
    prepare()
    # Files a deploy or a rollback would replace or remove, were the folder followed.
    for name in ("frontend-0.9.txt", "frontend.config.json", "DEV/frontend-0.9.txt"):
        (outside / name).parent.mkdir(exist_ok=True)
        (outside / name).write_text("precious\n")
    before = snapshot(outside)
    if folder().exists():
        folder().rename(demo_root / "moved-away")
    plant(folder(), outside)
    with pytest.raises(ReleaseError, match="lies in a linked folder") as caught:
        step()
    assert str(folder()) in str(caught.value)
    assert snapshot(outside) == before


# --- Release records -----------------------------------------------------------------------


def test_release_history_skips_files_that_are_not_release_records(
    demo_root: Path, outside: Path
) -> None:
    release = load_release("RELEASE-NOV-23-INITIAL")
    decision = Decision(environment=DEV, approved=True, by="Ada", at="t")
    good = files.records_dir() / records.record_release(recorded(release, [decision]))
    record = json.loads(good.read_text())
    folder = files.records_dir()
    (folder / "text.json").write_text("not json\n")
    (folder / "latin-1.json").write_bytes('{"by": "Andr\u00e9"}'.encode("latin-1"))
    (folder / "list.json").write_text("[1, 2]\n")
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "dir.json").mkdir()
    for field, value in [("started", 5), ("decisions", "DEV"), ("result", None)]:
        (folder / f"bad-{field}.json").write_text(json.dumps(dict(record, **{field: value})))
    wrong_decision = dict(record, decisions=[dict(decision, by=["Ada"])])
    (folder / "bad-decision.json").write_text(json.dumps(wrong_decision))
    (outside / "foreign.json").write_text(json.dumps(dict(record, release_key="FOREIGN")))
    plant(folder / "link.json", outside / "foreign.json")

    assert records.release_history() == [record]
    history = run_workflow.format_history()
    assert "RELEASE-NOV-23-INITIAL" in history and "DEV approved by Ada" in history
