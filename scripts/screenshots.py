"""Regenerate the pictures of a real run in resources/: the Web UI and the worker's log.

    make screenshots
    (or: .venv/bin/pip install selenium && .venv/bin/python scripts/screenshots.py)

Needs Chromium and its driver (Debian or Ubuntu: apt-get install chromium chromium-driver) and
selenium, which `make screenshots` installs into .venv (it is not in requirements.txt: only
this script uses it). Starts its own dev server with the Web UI on free ports, a worker
(run_worker.py with DEMO_STEP_SECONDS=0.5 and DEMO_FAILURES=sometimes, so steps fail and are
retried) and one release (run_workflow.py RELEASE-NOV-23-INITIAL), all on a temp DEMO_ROOT;
then RELEASE-FEB-24-BETA, which soaks QC and waits at its PROD gate until this approves it, and
a train of RELEASE-JAN-24-ALPHA-DEV (--schedule, one run triggered, --unschedule). Headless
Chromium photographs the Web UI while the releases run and after they have finished, each page
once it shows what it is meant to; everything started here is stopped on the way out. A little
over a minute. Writes:

    resources/release-running.png   the workflow list filtered to the release, mid-release
    resources/retry-pending.png     a deploy child mid-release: a step on attempt N, and the
                                    failure attempt N-1 ended with
    resources/release-timeline.png  the finished release: its lock children, then one wave of
                                    deploy children per environment
    resources/deploy-timeline.png   the deploy child with the most retried step: its steps in
                                    time, retried ones marked "N • step"
    resources/retry-event.png       that step's Activity Task Started event: attempt and last
                                    failure
    resources/worker-log.png        the worker's log: the DEV wave with its failures and
                                    retries, then the end of the release
    resources/soak-timeline.png     RELEASE-FEB-24-BETA's timeline at its PROD gate: the timer
                                    "soak QC for 3 s" done, "approval before PROD expires after
                                    1800 s" running
    resources/train-schedules.png   the Schedules page: train.RELEASE-JAN-24-ALPHA-DEV, every
                                    hour, with its one run so far and its next runs
    resources/search-prod.png       the workflow list filtered by a search attribute,
                                    DeployEnvironment = "PROD": every deploy to PROD and every
                                    PROD lock, of both releases
    resources/nondeterminism.png    demos.md's versioning scenario: RELEASE-FEB-24-BETA taken to
                                    its PROD gate by the code before the announcements, then
                                    approved on the code with them unpatched: Running, its
                                    workflow task failed with a non-determinism error. Today's
                                    worker then finishes it.
    resources/agents-waiting.png    demos.md's "One worker per environment": a release on five
                                    workers with roots of their own, PROD's away: its step that
                                    asks PROD's worker what it holds is Scheduled, attempt 1,
                                    taken by nobody. PROD's worker then finishes it.
"""

import asyncio
import html
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

PROJECT_DIR = Path(__file__).resolve().parents[1]
RESOURCES_DIR = PROJECT_DIR / "resources"
sys.path.insert(0, str(PROJECT_DIR))  # run as a script, this file sees scripts/ on sys.path

import search_attributes  # noqa: E402
from connection import exit_now  # noqa: E402
from run_worker import READY_LINE  # noqa: E402
from scripts.code_states import BEFORE_NOTIFICATIONS, UNPATCHED, core_copy  # noqa: E402
from scripts.dev_server import PRECISE_TIMERS, temporal_cli_or_exit  # noqa: E402
from trains import train_id  # noqa: E402

RELEASE = "RELEASE-NOV-23-INITIAL"
WORKER_SETTINGS = {"DEMO_STEP_SECONDS": "0.5", "DEMO_FAILURES": "sometimes"}
# The list is photographed once the DEV wave is done, so it shows every kind of status.
MID_RELEASE_LINE = f"{RELEASE}: promoting to TEST"
# The workflow's last line in the worker's log.
RELEASE_END_LINE = f"Release {RELEASE}: "
# The release that soaks and waits at a gate (database/catalog.json: "soak_seconds": {"QC": 3},
# "approval_timeout_seconds": 1800), and the timers its timeline names by their summaries.
SOAK_RELEASE = "RELEASE-FEB-24-BETA"
SOAK_TIMER = "soak QC for 3 s"
GATE_TIMER = "approval before PROD expires after 1800 s"
GATE_LINE = f"{SOAK_RELEASE}: waiting for approval before PROD"
# The release whose train the Schedules page shows (DEV only: its run is short).
TRAIN_RELEASE = "RELEASE-JAN-24-ALPHA-DEV"
TIMEOUT = 120.0
PAGE_TIMEOUT = 20.0
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
]
# Browser sizes (width, height): each page at a size that holds it without much blank.
LIST_SIZE = (1600, 780)
DETAIL_SIZE = (1600, 1000)
EVENT_SIZE = (1600, 1100)
RELEASE_TIMELINE_SIZE = (1600, 1120)
SOAK_TIMELINE_SIZE = (1600, 1200)
SCHEDULES_SIZE = (1800, 520)
LOG_SIZE = (1460, 1400)
# The worker-log picture shows at most this many lines from the log's start (the PNG stays small).
LOG_HEAD_LINES = 48


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def required(*names: str) -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    raise SystemExit(
        f"screenshots.py: no {names[0]} found: apt-get install chromium chromium-driver"
    )


def open_browser(profile: Path) -> webdriver.Chrome:
    """Headless Chromium with a profile of its own, driven by the system's chromedriver."""
    options = webdriver.ChromeOptions()
    options.binary_location = required("chromium", "chromium-browser", "google-chrome")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(required("chromedriver")))


def visible_text(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.TAG_NAME, "body").text.lower()


def set_viewport(browser: webdriver.Chrome, size: tuple[int, int]) -> None:
    """Make the page exactly this size (a window's size would include its frame)."""
    width, height = size
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )


def wait_for(
    browser: webdriver.Chrome, wanted: list[str], unwanted: str | None, timeout: float
) -> bool:
    """Wait until the page shows every wanted text. False if it does not within timeout, or
    if, once it shows the first wanted text (what the page is about), it shows unwanted."""
    wanted = [text.lower() for text in wanted]

    def outcome(b: webdriver.Chrome) -> str | None:
        text = visible_text(b)
        if all(want in text for want in wanted):
            return "shown"
        gone = unwanted and wanted[0] in text and unwanted.lower() in text
        return "gone" if gone else None

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.05).until(outcome) == "shown"
    except TimeoutException:
        return False


def load(browser: webdriver.Chrome, url: str, size: tuple[int, int], wanted: list[str]) -> bool:
    """Open url at size and wait until the page shows every wanted text."""
    set_viewport(browser, size)
    browser.get(url)
    return wait_for(browser, wanted, None, PAGE_TIMEOUT)


def follow_link(browser: webdriver.Chrome, url: str, wanted: list[str], unwanted: str) -> bool:
    """Move the open Web UI to url as a click on a link in it does: the app only fetches the
    new page's data, instead of starting again."""
    browser.execute_script(
        "const link = document.createElement('a');"
        "link.href = arguments[0];"
        "document.body.firstElementChild.appendChild(link);"  # inside the app, which routes it
        "link.click();"
        "link.remove();",
        url,
    )
    return wait_for(browser, wanted, unwanted, 3)


def save(browser: webdriver.Chrome, name: str) -> None:
    time.sleep(0.5)  # let the last rows and charts finish drawing
    browser.execute_script("document.activeElement?.blur()")  # no focus ring in the picture
    out = RESOURCES_DIR / name
    browser.save_screenshot(str(out))
    print(f"resources/{name}: {out.stat().st_size // 1024} KB", flush=True)


def shoot(
    browser: webdriver.Chrome, url: str, name: str, size: tuple[int, int], wanted: list[str]
) -> None:
    if not load(browser, url, size, wanted):
        raise SystemExit(
            f"screenshots.py: {url} never showed {wanted}; it showed:\n"
            f"{visible_text(browser)[:3000]}"
        )
    save(browser, name)


@dataclass
class Run:
    """The demo run being photographed: its server, its worker, and a browser on its Web UI."""

    browser: webdriver.Chrome
    client: Client
    ui: str
    worker: subprocess.Popen[bytes]
    worker_log: Path
    env: dict[str, str]  # a person's terminal: this server, a demo root of their own
    started: list[subprocess.Popen[bytes]]
    # Each starter's command, as typed, and the log of what it printed.
    starters: dict[subprocess.Popen[bytes], tuple[str, Path]] = field(default_factory=dict)

    def page(self, workflow_id: str, run_id: str, tab: str) -> str:
        return f"{self.ui}/namespaces/default/workflows/{quote(workflow_id)}/{run_id}/{tab}"

    def log_text(self) -> str:
        return self.worker_log.read_text(errors="replace")

    async def wait_for_log(self, text: str) -> None:
        await wait_in_log(self.worker_log, text, self.worker)

    def starter(self, *args: str) -> subprocess.Popen[bytes]:
        """run_workflow.py with args, as typed in a terminal; its output goes to a log."""
        log = self.worker_log.with_name(f"starter-{len(self.started)}.log")
        process = start([sys.executable, "run_workflow.py", *args], log, self.env, self.started)
        self.starters[process] = (" ".join(["python run_workflow.py", *args]), log)
        return process

    async def succeeded(self, starter: subprocess.Popen[bytes]) -> None:
        """Wait until a starter ends; exit with what it printed if it does not end well."""
        try:
            code = await asyncio.to_thread(starter.wait, TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            command, log = self.starters[starter]
            said = log.read_text(errors="replace")[-2000:]
            raise SystemExit(
                f"screenshots.py: {command} ended with exit status {code}:\n{said}\n"
                f"The worker's log ends:\n{self.log_text()[-3000:]}"
            )


async def shoot_release_running(run: Run) -> None:
    """The workflow list filtered to the release: the release, its locks and its children."""
    await run.wait_for_log(MID_RELEASE_LINE)
    query = quote(f'RootWorkflowId = "{RELEASE}"')
    url = f"{run.ui}/namespaces/default/workflows?query={query}"
    wanted = [f"{RELEASE}.DEV.frontend", f"{RELEASE}.TEST.frontend", "Running", "Completed"]
    shoot(run.browser, url, "release-running.png", LIST_SIZE, wanted)


async def shoot_retry_pending(run: Run) -> None:
    """A deploy child whose pending step is on a retry, photographed while it lasts.

    A retry stays pending for a second or so here (0.1 s or more of backoff, then a 0.5 s
    step), and a fresh load of the Web UI takes about two seconds. So this watches the running
    deploy children through the API and, when a step is on attempt 2 or more, moves the open Web UI
    to that child's Pending Activities tab the way a click on a link would (well under a
    second); if the step is done by then, it waits for the next retry.
    """
    query = f'RootWorkflowId = "{RELEASE}" AND WorkflowType = "DeployWorkflow" AND '
    query += 'ExecutionStatus = "Running"'
    set_viewport(run.browser, DETAIL_SIZE)
    tries = 0
    while RELEASE_END_LINE not in run.log_text():
        async for execution in run.client.list_workflows(query):
            description = await run.client.get_workflow_handle(execution.id).describe()
            pending = description.raw_description.pending_activities
            if not any(step.attempt > 1 and step.last_failure.message for step in pending):
                continue
            tries += 1
            url = run.page(execution.id, execution.run_id, "pending-activities")
            wanted = [execution.id, "Attempt", "Last Failure", "Simulated failure"]
            if follow_link(run.browser, url, wanted, "No Pending Activities"):
                save(run.browser, "retry-pending.png")
                return
        await asyncio.sleep(0.05)
    raise SystemExit(f"screenshots.py: {tries} retries ended before their page showed; run again")


@dataclass
class Retry:
    workflow_id: str
    run_id: str
    event_id: int
    attempt: int
    step: str


async def most_retried_step(client: Client) -> Retry:
    """The step with the most attempts among the deploy children."""
    best: Retry | None = None
    query = f'RootWorkflowId = "{RELEASE}" AND WorkflowType = "DeployWorkflow"'
    async for execution in client.list_workflows(query):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        steps = {
            event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
            for event in history.events
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        }
        for event in history.events:
            if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                continue
            started = event.activity_task_started_event_attributes
            if best is None or started.attempt > best.attempt:
                step = steps[started.scheduled_event_id]
                best = Retry(execution.id, execution.run_id, event.event_id, started.attempt, step)
    if best is None or best.attempt < 2:
        raise SystemExit("screenshots.py: no step was retried; run again")
    return best


async def shoot_finished(run: Run) -> None:
    release_run = (await run.client.get_workflow_handle(RELEASE).describe()).run_id
    url = run.page(RELEASE, release_run, "timeline")
    # The timeline names children and steps by their summaries (workflows.py).
    if not load(run.browser, url, RELEASE_TIMELINE_SIZE, ["Completed", "deploy frontend"]):
        raise SystemExit(
            f"screenshots.py: {url} never showed the release's children; it showed:\n"
            f"{visible_text(run.browser)[:3000]}"
        )
    steps = [f"gather {RELEASE} from the catalog", f"record how {RELEASE} ended"]
    if not wait_for(run.browser, steps, None, PAGE_TIMEOUT):
        raise SystemExit(
            "screenshots.py: the release's timeline did not show its steps; it showed:\n"
            f"{visible_text(run.browser)[:3000]}"
        )
    save(run.browser, "release-timeline.png")
    retry = await most_retried_step(run.client)
    url = run.page(retry.workflow_id, retry.run_id, "timeline")
    wanted = [retry.workflow_id, f"{retry.attempt} • {retry.step}"]
    shoot(run.browser, url, "deploy-timeline.png", DETAIL_SIZE, wanted)
    url = run.page(retry.workflow_id, retry.run_id, f"history/events/{retry.event_id}")
    wanted = ["Activity Task Started", "Last Failure", "Simulated failure"]
    shoot(run.browser, url, "retry-event.png", EVENT_SIZE, wanted)


async def shoot_soak_timeline(run: Run) -> None:
    """The soaking release's timeline at its PROD gate: the soak's timer over, the gate's
    running. Then the gate is approved, as a person would, so the release finishes."""
    await run.wait_for_log(GATE_LINE)
    release_run = (await run.client.get_workflow_handle(SOAK_RELEASE).describe()).run_id
    url = run.page(SOAK_RELEASE, release_run, "timeline")
    shoot(run.browser, url, "soak-timeline.png", SOAK_TIMELINE_SIZE, [SOAK_TIMER, GATE_TIMER])
    await run.succeeded(run.starter("--approve", SOAK_RELEASE, "--gate", "PROD", "--by", "Ada"))


async def shoot_train_schedules(run: Run) -> None:
    """The Schedules page with a release train on it, once one run it started has finished;
    then the train is removed."""
    await run.succeeded(run.starter("--schedule", TRAIN_RELEASE, "--every", "1h"))
    schedule = run.client.get_schedule_handle(train_id(TRAIN_RELEASE))
    await schedule.trigger()  # a run now, instead of in an hour
    await run.wait_for_log(f"Release {TRAIN_RELEASE}: SUCCESS")
    url = f"{run.ui}/namespaces/default/schedules"
    wanted = [train_id(TRAIN_RELEASE), "ReleaseWorkflow"]
    shoot(run.browser, url, "train-schedules.png", SCHEDULES_SIZE, wanted)
    await run.succeeded(run.starter("--unschedule", TRAIN_RELEASE))


async def shoot_search_prod(run: Run) -> None:
    """The workflow list filtered by a search attribute: what touched PROD (demos.md, "Find any
    release"), once visibility lists all of it."""
    query = 'DeployEnvironment = "PROD"'
    deadline = time.monotonic() + TIMEOUT
    while (await run.client.count_workflows(query)).count < 8:  # 3 deploys and a lock, twice
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots.py: {query} never listed 8 workflows")
        await asyncio.sleep(0.2)
    url = f"{run.ui}/namespaces/default/workflows?query={quote(query)}"
    wanted = [f"{RELEASE}.PROD.sbstore", f"{SOAK_RELEASE}.PROD.sbstore", "lock.PROD"]
    shoot(run.browser, url, "search-prod.png", LIST_SIZE, wanted)


async def shoot_nondeterminism(run: Run, scratch: Path) -> None:
    """demos.md, "Change the plan while releases are in flight", on a task queue and a demo root
    of its own: the release waits at its gate on the code before the announcements; approved on
    the code with them unpatched, its workflow task fails; today's code then finishes it."""
    (scratch / "root-versioning").mkdir()
    env = run.env | {"DEMO_TASK_QUEUE": "versioning", "DEMO_ROOT": str(scratch / "root-versioning")}
    env |= {"DEMO_BUILD_ID": "in-place"}  # one version whose code changes, as demos.md has it
    before = await code_worker(run, core_copy(BEFORE_NOTIFICATIONS, scratch / "before"), env)
    starter = [sys.executable, "run_workflow.py", SOAK_RELEASE]
    release = start(starter, scratch / "versioning-starter.log", env, run.started)
    await wait_in_log(scratch / "before" / "worker.log", GATE_LINE, before)
    await stopped(before)
    unpatched_code = core_copy(UNPATCHED, scratch / "unpatched")
    unpatched = await code_worker(run, unpatched_code, env)
    approve = ["--approve", SOAK_RELEASE, "--gate", "PROD", "--by", "Ada"]
    start([sys.executable, "run_workflow.py", *approve], scratch / "a.log", env, run.started)
    await wait_in_log(
        unpatched_code / "worker.log", f"{SOAK_RELEASE} is stuck, not lost", unpatched
    )
    release_run = (await run.client.get_workflow_handle(SOAK_RELEASE).describe()).run_id
    url = run.page(SOAK_RELEASE, release_run, "history")
    shoot(run.browser, url, "nondeterminism.png", DETAIL_SIZE, ["TMPRL1100", "Running"])
    await stopped(unpatched)
    await code_worker(run, PROJECT_DIR, env)
    if await asyncio.to_thread(release.wait, TIMEOUT) != 0:
        raise SystemExit(f"screenshots.py: {SOAK_RELEASE} on today's code did not succeed")


async def shoot_worker_versions(run: Run, scratch: Path) -> None:
    """demos.md, "Ship a new version of the plan while releases wait", on a task queue (so a
    Worker Deployment) and a demo root of its own: the release waits at its gate on version 1,
    version 2 is made current and runs a release; the deployment's page (version 1 draining)
    and the waiting release's versioning (Pinned to v1). Then the release is approved."""
    root = scratch / "root-versions"
    root.mkdir()
    env = run.env | {"DEMO_TASK_QUEUE": VERSIONS_QUEUE, "DEMO_ROOT": str(root)}
    builds = {name: core_copy(state, scratch / name) for name, state in BUILDS.items()}
    v1 = await code_worker(run, builds["v1"], env | {"DEMO_BUILD_ID": "v1"})
    release = start(
        [sys.executable, "run_workflow.py", SOAK_RELEASE], root / "s.log", env, run.started
    )
    await wait_in_log(builds["v1"] / "worker.log", GATE_LINE, v1)
    await code_worker(run, builds["v2"], env | {"DEMO_BUILD_ID": "v2"})
    switch = ["worker", "deployment", "set-current-version", "--deployment-name", VERSIONS_QUEUE]
    switch += ["--build-id", "v2", "--yes", "--address", env["TEMPORAL_ADDRESS"]]
    subprocess.run(
        [temporal_cli_or_exit("screenshots.py"), *switch], check=True, capture_output=True
    )
    alpha = start(
        [sys.executable, "run_workflow.py", VERSIONS_RELEASE], root / "a.log", env, run.started
    )
    if await asyncio.to_thread(alpha.wait, TIMEOUT) != 0:
        raise SystemExit(f"screenshots.py: {VERSIONS_RELEASE} on version 2 did not succeed")
    url = f"{run.ui}/namespaces/default/worker-deployments/{VERSIONS_QUEUE}"
    shoot(run.browser, url, "worker-deployment.png", LIST_SIZE, ["v1", "v2", "draining"])
    waiting = (await run.client.get_workflow_handle(SOAK_RELEASE).describe()).run_id
    url = run.page(SOAK_RELEASE, waiting, "history")
    shoot(run.browser, url, "release-pinned.png", DETAIL_SIZE, ["pinned", "v1"])
    approve = ["--approve", SOAK_RELEASE, "--gate", "PROD", "--by", "Ada"]
    start([sys.executable, "run_workflow.py", *approve], root / "ok.log", env, run.started)
    if await asyncio.to_thread(release.wait, TIMEOUT) != 0:
        raise SystemExit(f"screenshots.py: {SOAK_RELEASE} on version 1 did not succeed")


# shoot_worker_versions: its task queue and Worker Deployment, its builds (by build ID), and the
# release that starts on version 2 (DEV only: its run is short).
VERSIONS_QUEUE = "plan-versions"
BUILDS = {"v1": BEFORE_NOTIFICATIONS, "v2": UNPATCHED}
VERSIONS_RELEASE = "RELEASE-JAN-24-ALPHA-DEV"


async def shoot_agents_waiting(run: Run, scratch: Path) -> None:
    """demos.md, "One worker per environment", on a task queue of its own: the orchestrator and
    the workers of DEV, TEST and QC, each with a root of its own; the release waits at PROD for
    PROD's worker, its step Scheduled on that queue; PROD's worker then finishes it."""
    roots = {name: scratch / f"agents-{name}" for name in ["orchestrator", *AGENT_ENVS, "store"]}
    for root in roots.values():
        root.mkdir()
    base = run.env | {"DEMO_TASK_QUEUE": "agents", "DEMO_ARTIFACTORY": str(roots["store"])}
    orchestrator = base | {"DEMO_ROOT": str(roots["orchestrator"]), "DEMO_OWN_WORKERS": "all"}
    await agent(run, orchestrator, "orchestrator", "--orchestrator")
    for name in AGENT_ENVS[:-1]:
        await agent(run, base | {"DEMO_ROOT": str(roots[name])}, name, "--env", name)
    starter = [sys.executable, "run_workflow.py", RELEASE]
    release = start(starter, scratch / "agents-starter.log", orchestrator, run.started)
    handle = run.client.get_workflow_handle(RELEASE)
    deadline = time.monotonic() + TIMEOUT
    while not await waits_for_prod(handle) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    described = await handle.describe()
    url = run.page(RELEASE, described.run_id, "pending-activities")
    shoot(run.browser, url, "agents-waiting.png", DETAIL_SIZE, ["held_in", "Scheduled", "Attempt"])
    await agent(run, base | {"DEMO_ROOT": str(roots["PROD"])}, "PROD", "--env", "PROD")
    if await asyncio.to_thread(release.wait, TIMEOUT) != 0:
        raise SystemExit(f"screenshots.py: {RELEASE} on five workers did not succeed")


# The environments that get a worker of their own in shoot_agents_waiting, PROD's last.
AGENT_ENVS = ["DEV", "TEST", "QC", "PROD"]


async def agent(run: Run, env: dict[str, str], name: str, *args: str) -> None:
    """run_worker.py with args (a role), once it polls; its log is agents-NAME.log."""
    log = run.worker_log.with_name(f"agents-{name}.log")
    worker = start([sys.executable, "run_worker.py", *args], log, env, run.started)
    await wait_in_log(log, READY_LINE, worker)


async def waits_for_prod(handle: WorkflowHandle[Any, Any]) -> bool:
    """Whether the release has asked PROD's worker what it holds, 3 s ago or more, unanswered."""
    pending = (await handle.describe()).raw_description.pending_activities
    return any(
        step.activity_type.name == "held_in" and time.time() - step.scheduled_time.ToSeconds() > 3
        for step in pending
    )


async def code_worker(run: Run, code: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """run_worker.py of the code in folder code (a copy made by code_states), once it polls;
    its log is code/worker.log (scratch/today-worker.log for the project's own)."""
    log = code / "worker.log" if code != PROJECT_DIR else run.worker_log.with_name("today.log")
    worker = start([sys.executable, str(code / "run_worker.py")], log, env, run.started)
    await wait_in_log(log, READY_LINE, worker)
    return worker


async def wait_in_log(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    """Wait until log holds text; exit if process ends first, or TIMEOUT passes."""
    deadline = time.monotonic() + TIMEOUT
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"screenshots.py: {log} never said {text!r}")
        await asyncio.sleep(0.1)


async def stopped(process: subprocess.Popen[bytes]) -> None:
    """Ctrl+C process and wait for it to end."""
    process.send_signal(signal.SIGINT)
    await asyncio.to_thread(process.wait, TIMEOUT)


def log_excerpt(log: str) -> list[str]:
    """The worker's log from its start into the DEV wave, then the last lines of the release."""
    lines = log.splitlines()
    wave_end = next(i for i, line in enumerate(lines) if MID_RELEASE_LINE in line)
    head = lines[: min(wave_end + 1, LOG_HEAD_LINES)]
    release_end = next(i for i, line in enumerate(lines) if RELEASE_END_LINE in line)
    tail_start = release_end - 3
    rest = "the TEST, QC and PROD waves" if len(head) > wave_end else "the rest of the release"
    skipped = f"  ⋮  {tail_start - len(head)} more lines: {rest}"
    return [*head, skipped, *lines[tail_start : release_end + 1]]


def shoot_worker_log(browser: webdriver.Chrome, log: str, scratch: Path) -> None:
    """The worker's log in a terminal-like box, cropped to the text, as plain as it is."""
    page = scratch / "worker-log.html"
    page.write_text(
        "<!doctype html><meta charset='utf-8'><style>"
        "body{margin:0;background:#1e1e1e}"
        "pre{display:inline-block;margin:0;padding:14px 18px;color:#d4d4d4;"
        "font:12px/17px 'DejaVu Sans Mono',monospace;white-space:pre-wrap;max-width:1420px}"
        # Plain, as the worker prints it: no colours the real log does not have.
        "</style><pre>" + "\n".join(html.escape(line) for line in log_excerpt(log)) + "</pre>"
    )
    set_viewport(browser, LOG_SIZE)
    browser.get(page.as_uri())
    out = RESOURCES_DIR / "worker-log.png"
    browser.find_element(By.TAG_NAME, "pre").screenshot(str(out))
    print(f"resources/worker-log.png: {out.stat().st_size // 1024} KB", flush=True)


def start(
    command: list[str], log: Path, env: dict[str, str], started: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=PROJECT_DIR, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    started.append(process)
    return process


def stop(started: list[subprocess.Popen[bytes]]) -> None:
    """Ctrl+C, newest first (starter, worker, server); killed if still there after 10 s."""
    for process in reversed(started):
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


async def start_server(scratch: Path, started: list[subprocess.Popen[bytes]]) -> tuple[Client, str]:
    """A dev server with its Web UI on free ports; its client and the UI's address."""
    port, ui_port = free_port(), free_port()
    cli = temporal_cli_or_exit("screenshots.py")
    command = [cli, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port)]
    command += ["--ui-port", str(ui_port), "--db-filename", str(scratch / "dev.sqlite")]
    command += ["--log-level", "error", *PRECISE_TIMERS, *search_attributes.server_flags()]
    server = start(command, scratch / "server.log", dict(os.environ), started)
    ui = f"http://127.0.0.1:{ui_port}"
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and server.poll() is None:
        try:
            client = await Client.connect(f"127.0.0.1:{port}")
        except RuntimeError:
            await asyncio.sleep(0.5)
            continue
        while not await asyncio.to_thread(answers, ui) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        return client, ui
    log = (scratch / "server.log").read_text(errors="replace")
    raise SystemExit(f"screenshots.py: the dev server did not start:\n{log[-2000:]}")


async def photograph(
    scratch: Path, browser: webdriver.Chrome, started: list[subprocess.Popen[bytes]]
) -> None:
    client, ui = await start_server(scratch, started)
    browser.get(ui)  # load the Web UI's code once, so later pages open quickly
    # The terminals of a person trying the demo: this server, a demo root of their own.
    address = client.service_client.config.target_host
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DEMO_"))}
    env |= {"TEMPORAL_ADDRESS": address, "DEMO_ROOT": str(scratch / "root"), **WORKER_SETTINGS}
    (scratch / "root").mkdir()
    worker_log = scratch / "worker.log"
    worker = start([sys.executable, "run_worker.py"], worker_log, env, started)
    run = Run(browser, client, ui, worker, worker_log, env, started)
    await run.wait_for_log(READY_LINE)
    release = run.starter(RELEASE)

    await shoot_release_running(run)
    await shoot_retry_pending(run)
    await run.succeeded(release)
    soaking = run.starter(SOAK_RELEASE)  # runs while the finished release is photographed
    await shoot_finished(run)
    shoot_worker_log(browser, run.log_text(), scratch)
    await shoot_soak_timeline(run)
    await run.succeeded(soaking)
    await shoot_train_schedules(run)
    await shoot_search_prod(run)
    await shoot_nondeterminism(run, scratch)
    await shoot_worker_versions(run, scratch)
    await shoot_agents_waiting(run, scratch)


def main() -> int:
    began = time.monotonic()
    RESOURCES_DIR.mkdir(exist_ok=True)
    started: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="screenshots-") as scratch:
        browser = open_browser(Path(scratch) / "chromium-profile")
        try:
            asyncio.run(photograph(Path(scratch), browser, started))
        finally:
            browser.quit()
            stop(started)
    print(f"Pictures of a real run written to resources/ in {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    exit_now(main())
