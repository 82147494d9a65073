"""The demo's knobs (utils.py): DEMO_FAILURES overrides every failure injector's own rate; an
unknown failure mode or pace is refused, naming the setting and the values it takes; and DEMO_*
settings that cannot be right stop either script at start, with exit status 2, nothing on stdout
and one line on stderr."""

import pytest

import utils
from bad_input import KEY
from processes import QUICK_TIMEOUT, assert_one_line_without_traceback, run_script


@pytest.mark.parametrize("mode", ["off", "alot", "rarely", ""])
def test_demo_failures_overrides_every_injector(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("DEMO_FAILURES", mode)
    monkeypatch.setattr(utils.random, "random", lambda: 0.2)
    expected = {
        "off": [False] * 4,
        "alot": [True] * 4,
        "rarely": [False] * 4,
        "": [False, False, True, True],  # each injector's own rate: 0, 10%, 30%, 60%
    }[mode]
    injectors = [utils.isErrorNever, utils.isErrorRarely, utils.isErrorSometimes, utils.isErrorALot]
    assert [injector() for injector in injectors] == expected


def test_unknown_failure_mode_and_pace_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_FAILURES", "often")
    with pytest.raises(ValueError, match="DEMO_FAILURES='often'.*off, rarely, sometimes, alot"):
        utils.check_demo_settings()
    monkeypatch.setenv("DEMO_FAILURES", "off")
    monkeypatch.setenv("DEMO_STEP_SECONDS", "soon")
    with pytest.raises(ValueError, match="DEMO_STEP_SECONDS='soon'"):
        utils.check_demo_settings()


@pytest.mark.parametrize(
    ("script", "args", "settings", "says"),
    [
        ("run_worker.py", (), {"DEMO_TASK_QUEUE": ""}, "DEMO_TASK_QUEUE"),
        ("run_workflow.py", (KEY,), {"DEMO_TASK_QUEUE": " "}, "DEMO_TASK_QUEUE"),
        ("run_worker.py", (), {"DEMO_UNHEALTHY": "nosuch@DEV"}, "'nosuch'"),
        ("run_worker.py", (), {"DEMO_ROOT": "/nonexistent/demo"}, "DEMO_ROOT"),
        ("run_workflow.py", ("--envs",), {"DEMO_ROOT": "/nonexistent/demo"}, "DEMO_ROOT"),
        ("run_workflow.py", ("--history",), {"DEMO_ROOT": "/nonexistent/demo"}, "DEMO_ROOT"),
        # Issue 23: where environments have workers of their own, and the store they share.
        ("run_worker.py", (), {"DEMO_OWN_WORKERS": "PROD,STAGING"}, "STAGING"),
        ("run_workflow.py", ("--envs",), {"DEMO_OWN_WORKERS": "prod;qc"}, "DEMO_OWN_WORKERS"),
        ("run_worker.py", (), {"DEMO_ARTIFACTORY": "/nonexistent/store"}, "is not a folder"),
        ("run_worker.py", (), {"DEMO_ARTIFACTORY": "/"}, "holds the demo root"),
        ("run_worker.py", ("--env", "nope"), {}, "one of DEV, TEST, QC, PROD, not 'nope'"),
        # Issue 24: a version's build ID, and a queue that names a Worker Deployment.
        ("run_worker.py", (), {"DEMO_BUILD_ID": "v 2"}, "DEMO_BUILD_ID='v 2' is not a build ID"),
        ("run_worker.py", (), {"DEMO_TASK_QUEUE": "team.releases"}, "holds '.' or ':'"),
    ],
)
async def test_demo_settings_that_cannot_be_right_are_refused_at_start(
    script_env: dict[str, str],
    script: str,
    args: tuple[str, ...],
    settings: dict[str, str],
    says: str,
) -> None:
    finished = await run_script(script, {**script_env, **settings}, *args, timeout=QUICK_TIMEOUT)
    assert finished.code == 2
    assert finished.stdout == ""
    assert_one_line_without_traceback(finished.stderr)
    assert says in finished.stderr
