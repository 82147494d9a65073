"""What the docs promise, checked without a person: the diffs and patches they show apply to
today's code, the flags and settings they name exist, the numbers and keys they quote match the
catalog, the pictures they show are there and are taken by scripts/screenshots.py; and `make
demo` (scripts/demo.sh) ends as README's "Try it: two commands" says, in CI and on a terminal.

The doc checks only read files (a few seconds); each demo run takes its own free port and a temp
DEMO_ROOT, so it never meets a `make demo` of yours (about ten seconds each)."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import temporalio.bridge
from temporalio.client import Client

import utils
from processes import free_port, workflow_count
from scripts import code_states

PROJECT_DIR = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "setup.md", "demos.md", "todo.md")
FENCED = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NUMBERS = {word: n for n, word in enumerate("zero one two three four five six seven eight".split())}
DEMO_TIMEOUT = 60.0
DEMO_SETTINGS = ("TEMPORAL_ADDRESS", "DEMO_ROOT", "DEMO_STEP_SECONDS", "DEMO_FAILURES")
RESULT_LINE = "Result: Release RELEASE-NOV-23-INITIAL: SUCCESS"
STAYS_UP = "stays up; press Ctrl+C to stop the server and the worker:"


def read(doc: str) -> str:
    return (PROJECT_DIR / doc).read_text()


def catalog() -> dict:
    return json.loads((PROJECT_DIR / "database" / "catalog.json").read_text())


def as_patch(target: str, diff: str) -> str:
    """A diff block as the docs show it (no file names, no line numbers) as a patch of target."""
    lines = diff.splitlines()
    old = sum(1 for line in lines if line[:1] in " -")
    new = sum(1 for line in lines if line[:1] in " +")
    # Line 2: a hunk said to start at line 1 must match there; from 2 on, git looks everywhere.
    return f"--- a/{target}\n+++ b/{target}\n@@ -2,{old} +2,{new} @@\n{diff}"


def test_every_diff_in_the_docs_applies_to_today_s_code() -> None:
    checked = 0
    for doc in DOCS:
        text = read(doc)
        for block in FENCED.finditer(text):
            if block[1] != "diff":
                continue
            # The file a diff changes is the last one the text before it names.
            target = re.findall(r"`([\w/]+\.py)`", text[: block.start()])[-1]
            applied = subprocess.run(
                # --unidiff-zero: the docs' diffs carry no context lines.
                ["git", "apply", "--check", "--unidiff-zero", "-"],
                input=as_patch(target, block[2]),
                cwd=PROJECT_DIR,
                capture_output=True,
                text=True,
            )
            assert applied.returncode == 0, f"{doc}: a diff of {target}: {applied.stderr}"
            checked += 1
    assert checked, "no diff block found: has the fence changed?"


def test_the_code_states_the_docs_switch_between_are_one_command_each() -> None:
    """demos.md's versioning scenario: each `git apply patches/...` it shows names a patch of
    patches/ (tests/test_versioning.py checks that each applies to today's workflows.py), after
    `git checkout workflows.py`, so that it applies whatever state the file is in."""
    shown = re.findall(r"^(.*)git apply (patches/[\w.-]+\.patch)$", read("demos.md"), re.M)
    assert sorted(path for _, path in shown) == sorted(
        str(code_states.patch_of(state).relative_to(PROJECT_DIR))
        for state in code_states.CODE_STATES
    )
    assert {before for before, _ in shown} == {"git checkout workflows.py && "}


def test_every_starter_flag_the_docs_use_exists() -> None:
    helped = subprocess.run(
        [sys.executable, "run_workflow.py", "--help"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    known = set(re.findall(r"--[a-z][a-z-]*", helped))
    used = {
        (doc, flag)
        for doc in ("README.md", "setup.md", "demos.md")
        for command in re.findall(r"python run_workflow\.py[^`#\n]*", read(doc))
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", command)
    }
    assert {flag for _, flag in used} >= {"--list", "--approve", "--cancel"}
    assert sorted((doc, flag) for doc, flag in used if flag not in known) == []


def code_and_sdk_text() -> tuple[str, bytes]:
    """The project's Python, and the SDK's core library: TEMPORAL_* settings such as the TLS
    paths are read by the SDK's envconfig (connection.connect), which lives there."""
    ours = "\n".join(
        path.read_text()
        for pattern in ("*.py", "scripts/*.py")
        for path in PROJECT_DIR.glob(pattern)
    )
    core = next(Path(temporalio.bridge.__file__).parent.glob("temporal_sdk_bridge*"))
    return ours, core.read_bytes()


def test_every_setting_the_docs_name_is_read_by_the_code() -> None:
    docs = "\n".join(read(doc) for doc in DOCS)
    named = set(re.findall(r"\b(?:DEMO|TEMPORAL)_[A-Z0-9_]*", docs))
    # TEMPORAL_GRPC_META_<NAME>: any name after a placeholder is an example of it.
    placeholders = set(re.findall(r"\b((?:DEMO|TEMPORAL)_[A-Z0-9_]*_)<", docs))
    ours, core = code_and_sdk_text()

    def read_by_code(name: str) -> bool:
        if name.endswith("_"):  # a family, written DEMO_* or TEMPORAL_TLS_*
            return bool(re.search(rf"\b{name}[A-Z]", ours)) or name.encode() in core
        return bool(re.search(rf"\b{name}\b", ours)) or name.encode() in core

    unread = [
        name
        for name in sorted(named)
        if not read_by_code(name) and not any(name.startswith(p) for p in placeholders - {name})
    ]
    assert {"DEMO_ROOT", "DEMO_BUG", "TEMPORAL_ADDRESS"} <= named
    assert unread == []


def test_the_steps_demo_bug_takes_are_the_steps_of_the_code() -> None:
    listed = re.search(r"the names it takes: (.*?)\)", read("demos.md"), re.DOTALL)
    assert listed, "demos.md no longer lists the names DEMO_BUG takes"
    assert tuple(re.findall(r"`(\w+)`", listed[1])) == utils.STEPS


def test_the_releases_the_docs_name_and_count_are_the_catalog_s() -> None:
    releases = {release["key"]: release for release in catalog()["releases"]}
    docs = "\n".join(read(doc) for doc in DOCS)
    named = set(re.findall(r"\bRELEASE-[A-Z0-9-]*[A-Z0-9]\b", docs))
    assert named and sorted(named - set(releases)) == []
    counts = re.findall(r"holds (\w+) releases", docs)
    assert counts and {NUMBERS.get(count) for count in counts} == {len(releases)}


def test_the_releases_in_turn_table_says_what_the_catalog_does() -> None:
    releases = {release["key"]: release for release in catalog()["releases"]}
    components = list(catalog()["components"])
    rows = re.findall(r"^\| (RELEASE-\S+) \| ([A-Z, ]+) \| (.*) \|$", read("demos.md"), re.M)
    assert len(rows) == 6
    for key, goes_to, held in rows:
        release = releases[key]
        assert goes_to.split(", ") == release["environments"], key
        versions = "/".join(release["versions"][component] for component in components)
        cells = dict(zip(("DEV", "TEST", "QC", "PROD"), held.split(" | "), strict=True))
        assert {cells[env] for env in release["environments"]} == {versions}, key


def test_the_ledger_count_the_docs_quote_is_the_initial_release_s() -> None:
    initial = next(r for r in catalog()["releases"] if r["key"] == "RELEASE-NOV-23-INITIAL")
    components, envs = len(initial["versions"]), len(initial["environments"])
    # A build per component, then a deploy and a configure per component and environment.
    changes = components + 2 * components * envs
    quoted = re.findall(r"\b(\d+) (?:lines|changes)\b", read("demos.md"))
    assert quoted and set(quoted) == {str(changes)}


def test_every_picture_the_docs_show_is_there_and_is_made_by_the_project() -> None:
    shown = {name for doc in DOCS for name in re.findall(r"[\w-]+\.(?:png|svg)", read(doc))}
    screenshots = set(re.findall(r'"([\w-]+\.png)"', read("scripts/screenshots.py")))
    resources = PROJECT_DIR / "resources"
    assert sorted(name for name in shown if not (resources / name).is_file()) == []
    assert shown and screenshots
    assert sorted(n for n in shown if n.endswith(".png") and n not in screenshots) == []
    # The one drawing is written by hand (README says so): an SVG with its own description.
    for name in (name for name in shown if name.endswith(".svg")):
        drawing = (resources / name).read_text()
        assert drawing.startswith("<svg") and "<title>" in drawing, name


def demo_env(demo_root: Path) -> tuple[dict[str, str], int]:
    """The environment for scripts/demo.sh on a port of its own (its Web UI 1000 above it, as
    the dev server puts it), in demo_root, unpaced and without injected failures."""
    port = free_port()
    while port + 1000 > 65535 or not port_is_free(port + 1000):
        port = free_port()
    demo_root.mkdir()
    settings = (f"localhost:{port}", str(demo_root), "0", "off")
    return {**os.environ, **dict(zip(DEMO_SETTINGS, settings, strict=True))}, port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def processes_of(demo_root: Path) -> list[int]:
    """The processes running with this DEMO_ROOT: what demo.sh started, while it runs."""
    marker = f"DEMO_ROOT={demo_root}\0".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def gone(demo_root: Path, timeout: float = 5.0) -> bool:
    """Whether every process with this DEMO_ROOT has ended (the pane's shell takes a moment)."""
    deadline = time.monotonic() + timeout
    while processes_of(demo_root):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def kill_left_over(demo_root: Path) -> None:
    for pid in processes_of(demo_root):
        try:
            os.kill(pid, 9)
        except OSError:
            pass


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes in /proc")
def test_make_demo_in_ci_prints_the_result_and_stops_what_it_started(tmp_path: Path) -> None:
    demo_root = tmp_path / "demo"
    env, port = demo_env(demo_root)
    try:
        demo = subprocess.run(
            ["bash", "scripts/demo.sh"],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT,
        )
        stopped = gone(demo_root)
    finally:
        kill_left_over(demo_root)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert RESULT_LINE in demo.stdout
    assert STAYS_UP not in demo.stdout
    assert stopped, "a process demo.sh started outlived it"
    assert port_is_free(port) and port_is_free(port + 1000)
    assert (demo_root / ".temporal" / "worker.log").is_file()


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux")
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds processes in /proc")
def test_make_demo_on_a_terminal_keeps_the_web_ui_up_until_ctrl_c(tmp_path: Path) -> None:
    demo_root = tmp_path / "demo"
    env, port = demo_env(demo_root)
    status = tmp_path / "status"
    tmux = ["tmux", "-S", str(tmp_path / "tmux")]  # a tmux server of this test's own
    # The settings go to the pane's command, not to tmux: only the demo's processes carry them.
    settings = [f"{name}={env[name]}" for name in DEMO_SETTINGS]
    # The pane's shell writes demo.sh's exit status (tmux may be slow to report a dead pane's).
    run_demo = f"bash scripts/demo.sh; echo $? > {status}"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", "80", "-y", "50", "env", *settings, "bash", "-c"]
        + [run_demo],
        cwd=PROJECT_DIR,
        check=True,
    )
    try:
        wait_for_screen(tmux, STAYS_UP)
        screen = wait_for_screen(tmux, f"{STAYS_UP}\n  http")
        # Each line fits 80 columns, but for a path of the test's temp folder.
        wide = [line for line in screen.splitlines() if len(line) > 80]
        assert all(str(demo_root) in line for line in wide), screen
        url = re.search(rf"{re.escape(STAYS_UP)}\n  (\S+)", screen)
        assert url and url[1].startswith(f"http://localhost:{port + 1000}/"), screen
        with urllib.request.urlopen(url[1], timeout=10) as page:
            assert page.status == 200
        # demos.md, "Find any release": the queries answer on the server make demo started.
        assert (
            workflow_count(f"localhost:{port}", "DeployEnvironment='PROD'") == "Total: 4"
        )  # 3 deploys and a lock
        assert workflow_count(f"localhost:{port}", "ReleaseOutcome='SUCCESS'") == "Total: 1"
        subprocess.run([*tmux, "send-keys", "C-c"], check=True)
        deadline = time.monotonic() + DEMO_TIMEOUT
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status.exists() and status.read_text().strip() == "0", pane(tmux)
        assert gone(demo_root), "a process demo.sh started outlived it"
        assert port_is_free(port) and port_is_free(port + 1000)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        kill_left_over(demo_root)


async def test_every_query_the_docs_show_is_one_the_server_accepts(client: Client) -> None:
    queries = re.findall(r'--query "([^"]+)"', "".join(read(doc) for doc in DOCS))
    assert len(queries) >= 6, queries
    for query in queries:
        await client.count_workflows(
            query
        )  # a query it cannot parse, or an unknown attribute, raises


def pane(tmux: list[str]) -> str:
    """What the terminal shows, wrapped lines joined."""
    return subprocess.run(
        [*tmux, "capture-pane", "-p", "-J", "-S", "-200"], capture_output=True, text=True
    ).stdout


def wait_for_screen(tmux: list[str], text: str) -> str:
    deadline = time.monotonic() + DEMO_TIMEOUT
    while text not in (screen := pane(tmux)):
        assert time.monotonic() < deadline, f"no {text!r} within {DEMO_TIMEOUT} s:\n{screen}"
        time.sleep(0.2)
    return screen
