"""Activities on their own, under ActivityEnvironment: heartbeats, cancellation, error sorting."""

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

import activities
import files
import ledger
import release_management as rm
import utils
from catalog import ComponentInfo
from ledger import commit as commit_change
from ledger import read_ledger
from shared import Deployment, Environment, ErrorType, ReleaseInput


def activity_env() -> ActivityEnvironment:
    """An activity's surroundings as the worker gives them, pydantic payloads included."""
    env = ActivityEnvironment()
    env.payload_converter = pydantic_data_converter.payload_converter
    return env


DEV_FRONTEND = Deployment(
    release_key="RELEASE-NOV-23-INITIAL",
    release_run_id="run-1",
    component="frontend",
    version="1.0",
    environment=Environment.DEV,
)


async def test_build_changes_once_and_heartbeats_while_it_paces(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_STEP_SECONDS", "1.2")
    env = activity_env()
    beats: list[tuple] = []
    env.on_heartbeat = lambda *details: beats.append(details)

    assert await env.run(activities.build_artifact, DEV_FRONTEND) is True
    assert len(beats) >= 2  # every half second while the step paces itself
    assert await env.run(activities.build_artifact, DEV_FRONTEND) is False
    assert [line["step"] for line in read_ledger()] == ["build"]


async def test_cancelling_a_step_stops_it_before_its_change(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_STEP_SECONDS", "30")
    env = activity_env()
    running = asyncio.create_task(env.run(activities.build_artifact, DEV_FRONTEND))
    await asyncio.sleep(0.3)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not files.artifact_path("frontend", "1.0").exists()


async def test_bad_input_is_non_retryable(demo_root: Path) -> None:
    with pytest.raises(ApplicationError) as caught:
        await activity_env().run(
            activities.gather_release, ReleaseInput(release_key="RELEASE-NOPE")
        )
    error = caught.value
    assert error.non_retryable
    assert error.type == ErrorType.RELEASE_ERROR
    assert "RELEASE-NOPE" in error.message and "RELEASE-NOV-23-INITIAL" in error.message
    # Benign: the worker logs one line for it, not a traceback.
    assert error.category == ApplicationErrorCategory.BENIGN


async def test_injected_failure_is_retryable(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_FAILURES", "alot")
    monkeypatch.setattr(utils.random, "random", lambda: 0.0)
    with pytest.raises(ApplicationError) as caught:
        await activity_env().run(activities.build_artifact, DEV_FRONTEND)
    assert not caught.value.non_retryable
    assert caught.value.type == "InjectedFailure"
    assert "before building frontend 1.0" in caught.value.message
    assert not files.artifact_path("frontend", "1.0").exists()


async def test_gather_returns_the_validated_release(demo_root: Path) -> None:
    release = await activity_env().run(
        activities.gather_release, ReleaseInput(release_key="RELEASE-JAN-24-ALPHA-QC")
    )
    assert release.environments == [Environment.TEST, Environment.QC]
    assert release.versions == {"frontend": "1.2", "sbstore": "1.8", "backendforfrontend": "1.8"}


async def test_a_cancelled_step_reports_the_cancel_only_once_its_change_is_done(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A thread cannot be stopped: the activity waits for it, so no file changes after the
    # workflow hears that the step stopped.
    commit = commit_change

    def slow_commit(*args: Any, **kwargs: Any) -> None:
        time.sleep(1)
        commit(*args, **kwargs)

    monkeypatch.setattr(rm, "commit", slow_commit)
    env = activity_env()
    running = asyncio.create_task(env.run(activities.build_artifact, DEV_FRONTEND))
    await asyncio.sleep(0.3)  # the step's thread is in its change
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert files.artifact_path("frontend", "1.0").exists()
    assert [line["step"] for line in read_ledger()] == ["build"]


async def test_a_result_temporal_would_refuse_fails_at_once_saying_why(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A team name over the server's 2 MB payload limit (the catalog would refuse it: bypassed).
    huge = ComponentInfo.model_construct(repository="r", team="x" * (3 * 1024 * 1024))
    monkeypatch.setattr(rm, "component_info", lambda *_: huge)
    with pytest.raises(ApplicationError) as caught:
        await activity_env().run(activities.fetch_config, DEV_FRONTEND)
    assert caught.value.non_retryable and caught.value.type == ErrorType.PAYLOAD_TOO_LARGE
    assert "3.0 MB, over Temporal's payload limit of 2 MB" in caught.value.message


async def test_a_full_disk_is_retried_with_one_line_not_a_traceback(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger, "write_temp", full)  # the disk is full when the build writes
    with pytest.raises(ApplicationError) as caught:
        await activity_env().run(activities.build_artifact, DEV_FRONTEND)
    assert not caught.value.non_retryable
    assert caught.value.category == ApplicationErrorCategory.BENIGN  # no traceback logged
    assert "No space left on device" in caught.value.message
    (line,) = [r for r in caplog.records if "No space left" in r.getMessage()]
    assert line.exc_info is None
