"""Workflows: the release plan, made durable.

ReleaseWorkflow gathers a release, validates it, and promotes it environment by environment,
starting one DeployWorkflow child per component and waiting for the whole wave before the next
environment. DeployWorkflow runs the steps of one component in one environment. Both only
orchestrate: every read or write of the world happens in an activity.
"""

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType, ParentClosePolicy

# Determinism: the sandbox re-imports workflow code on every run; project modules and their
# dependencies are passed through instead, since nothing in them runs inside a workflow.
with workflow.unsafe.imports_passed_through():
    from activities import (
        build_artifact,
        check_promotion,
        deploy_artifact,
        fetch_artifact,
        fetch_config,
        find_lock_holder,
        gather_release,
        record_release,
        rollback_deploy,
        update_config,
        verify_deploy,
        verify_rollback,
        wait_until_closed,
    )
    from shared import (
        MAX_NAME_LENGTH,
        MAX_REASON_LENGTH,
        ApproveInput,
        ArtifactRef,
        Cell,
        CellState,
        CheckPromotionInput,
        Decision,
        DeployArtifactInput,
        Deployment,
        DeployOutcome,
        Environment,
        EnvironmentLock,
        EnvironmentVersions,
        ErrorType,
        GatherReleaseInput,
        LockHolderInput,
        Outcome,
        RecordReleaseInput,
        RejectInput,
        Release,
        ReleaseInput,
        ReleaseProgress,
        ReleaseResult,
        UpdateConfigInput,
        VerifyInput,
        VerifyRollbackInput,
        WorkflowRef,
        deploy_workflow_id,
        root_message,
        shown,
    )

# Retry policy: transient failures (injected, or a bug being fixed) are retried without limit.
# Retries start quick (0.1 s, then 1.5x longer each time: seven tries within 3 s), since most
# injected failures pass on the next try, and settle at one try every 2 s: a failing system is
# not hammered, and a fixed worker picks a stuck release up within 2 s. Doubling from 0.2 s up
# to 3 s made six releases at DEMO_FAILURES=alot take about three times longer.
# Note: a dev server started plainly fires timers up to a second late, so every retry waits at
# least a second; `make demo` and the tests start it with timerProcessorMaxTimeShift=10ms.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=2),
    maximum_attempts=0,
)
# Heartbeat timeout: a step whose worker died is retried 1 s after its last heartbeat instead of
# after the start-to-close timeout; it is most of what a worker crash costs a release (see
# benchmarks/RESULTS.md, recovery). A live worker's heartbeats reach the server every half
# second (run_worker.HEARTBEAT_THROTTLE), and it takes no more steps than it can start
# (activities.MAX_CONCURRENT_ACTIVITIES), so a busy worker has half a second to spare before it is
# taken for dead; were it, the retry would find the step's work done (idempotence).
STEP_HEARTBEAT_TIMEOUT = timedelta(seconds=1)
# Workflow task timeout: a workflow task handed to a worker that died is given to another one
# after this long (the server's default is 10 s). Our workflow tasks take milliseconds.
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=2)
# Start-to-close timeout: the longest a step may take, pace included (DEMO_STEP_SECONDS <= 60).
STEP_TIMEOUT = timedelta(minutes=2)


T = TypeVar("T")


def _step(activity: Any, argument: Any, summary: str) -> Any:
    """Start one step now, with the project's timeouts and retry policy; await it for its
    result. Cancelled, a step is waited for until its worker says it has stopped. The summary
    names the step in the Web UI's timeline, so the release reads as a plan there."""
    return workflow.start_activity(
        activity,
        argument,
        summary=summary,
        start_to_close_timeout=STEP_TIMEOUT,
        heartbeat_timeout=STEP_HEARTBEAT_TIMEOUT,
        retry_policy=STEP_RETRY,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )


def _what(deployment: Deployment, where: str = "in") -> str:
    """What a deploy's steps work on, for their summaries: "frontend 1.1 in QC" (where "to": "...
    to QC"; where "": "frontend 1.1")."""
    what = f"{deployment.component} {deployment.version}"
    return f"{what} {where} {deployment.environment.value}" if where else what


def _stop_if_cancelled() -> None:
    """Start nothing new once the workflow is cancelled. (A step that finished its work just as
    the cancel came returns its result rather than raising, so the plan checks here.)"""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError()


async def _finish_even_if_cancelled(work: Awaitable[T], on_cancel: str) -> T:
    """Run work to its end: a cancel that arrives meanwhile waits for it (and is logged)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        workflow.logger.info(on_cancel)
        return await task


async def _all(*work: Awaitable[Any]) -> list[Any]:
    """Await every piece of work, and only once all have ended raise the first error, if any:
    nothing is left running behind a failure. (Cancelled, it waits for all of them too.)"""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def _check_shown_text(flag: str, text: str, limit: int) -> None:
    if len(text) > limit or not text.isprintable():
        raise ValueError(
            f"{flag} must be one line of printable text, at most {limit} characters "
            "(no control characters or escape codes)"
        )


@workflow.defn
class DeployWorkflow:
    """Deploy one component version to one environment: build (DEV only), gather the artifact
    and the config, deploy, configure, verify; roll back if it proves unhealthy.

    Cancelled while it gathers, it stops: the environment is untouched. Cancelled once it has
    started changing the environment, it finishes that change first (deploy, configure, verify,
    or the rollback), so a component is never left half deployed (demos.md, "Cancel a release")."""

    @workflow.run
    async def run(self, deployment: Deployment) -> DeployOutcome:
        artifact, config = await self._gather(deployment)
        _stop_if_cancelled()
        return await _finish_even_if_cancelled(
            self._change(deployment, artifact, config),
            on_cancel=f"{deployment.release_key} {deployment.environment.value} "
            f"{deployment.component}: cancel requested; finishing the change in flight first",
        )

    async def _gather(self, deployment: Deployment) -> tuple[ArtifactRef, dict[str, str | int]]:
        # The config does not depend on the build: gather it while the artifact is prepared.
        config = _step(fetch_config, deployment, f"fetch the config of {_what(deployment)}")
        artifact, config = await _all(self._artifact(deployment), config)
        return artifact, config

    async def _artifact(self, deployment: Deployment) -> ArtifactRef:
        if deployment.environment is Environment.DEV:
            await _step(build_artifact, deployment, f"build {_what(deployment, '')}")
            _stop_if_cancelled()
        return await _step(fetch_artifact, deployment, f"fetch the artifact of {_what(deployment)}")

    async def _change(
        self, deployment: Deployment, artifact: ArtifactRef, config: dict[str, str | int]
    ) -> DeployOutcome:
        what = _what(deployment)
        deploy = DeployArtifactInput(deployment=deployment, artifact=artifact)
        await _step(deploy_artifact, deploy, f"deploy {_what(deployment, 'to')}")
        configure = UpdateConfigInput(deployment=deployment, config=config)
        await _step(update_config, configure, f"configure {what}")
        try:
            verify = VerifyInput(deployment=deployment, artifact=artifact)
            await _step(verify_deploy, verify, f"verify {what}")
        except ActivityError as err:
            if not (
                isinstance(err.cause, ApplicationError) and err.cause.type == ErrorType.UNHEALTHY
            ):
                raise
            # Compensate: the deploy is unhealthy, so put back what the environment held.
            previous = await _step(rollback_deploy, deployment, f"roll back {what}")
            check = VerifyRollbackInput(deployment=deployment, previous=previous)
            await _step(verify_rollback, check, f"verify the rollback of {what}")
            return DeployOutcome(rolled_back=True, previous=previous)
        return DeployOutcome()


@workflow.defn
class EnvironmentLockWorkflow:
    """Holds one environment for one release, so two releases never deploy into it at once.

    Its workflow ID names the environment, and Temporal runs one workflow per ID at a time:
    starting it is taking the lock. It ends when its release unlocks it, or is terminated
    together with its release (the parent close policy), so a lock never outlives the release
    that holds it, whatever happens to workers.
    """

    def __init__(self) -> None:
        self._unlocked = False

    @workflow.run
    async def run(self, lock: EnvironmentLock) -> None:
        await workflow.wait_condition(lambda: self._unlocked)

    @workflow.signal
    def unlock(self) -> None:
        self._unlocked = True


@workflow.defn
class ReleaseWorkflow:
    """Promote one release from the catalog through its environments, as a set.

    However it ends (SUCCESS, REJECTED, ROLLED BACK, FAILED or CANCELLED), it waits for every
    deploy it started to close, writes the release record and unlocks its environments. Only a
    terminate skips that: Temporal runs no workflow code then."""

    def __init__(self) -> None:
        self._lock_scope = ""
        self._demo_root = ""
        self._key = ""
        self._status = "starting"
        self._gate: Environment | None = None  # the environment waiting for a person, if any
        self._decisions: list[Decision] = []
        self._release: Release | None = None
        self._cells: dict[Environment, dict[str, Cell]] = {}
        # The environments held, with their locks (None: a lock taken by the run a reset replaced)
        self._locks: dict[Environment, workflow.ChildWorkflowHandle | None] = {}
        self._before: EnvironmentVersions = {}
        self._unlocked_after_use: list[Environment] = []

    @workflow.run
    async def run(self, request: ReleaseInput) -> ReleaseResult:
        started = workflow.now().isoformat()
        self._lock_scope = request.lock_scope
        self._demo_root = request.demo_root
        self._key = request.release_key
        release: Release = await _step(
            gather_release,
            GatherReleaseInput(release_key=request.release_key, demo_root=request.demo_root),
            f"gather {request.release_key} from the catalog",
        )
        self._release = release
        self._cells = {env: {c: Cell() for c in release.versions} for env in release.environments}
        try:
            result = await self._promote_all(release)
        except (Exception, asyncio.CancelledError) as err:
            await self._close(release, started, self._ending(release, err))
            raise
        await self._close(release, started, result)
        return result

    async def _promote_all(self, release: Release) -> ReleaseResult:
        await self._hold_environments(release)
        # Validate before any change: a promotion out of order fails here, non-retryably. The
        # environments are held by now, so what is checked cannot change under the release.
        self._status = "checking the promotion"
        self._before = await _step(
            check_promotion,
            CheckPromotionInput(release=release, demo_root=self._demo_root),
            f"check that {release.key} can be promoted",
        )
        for env in release.environments:
            _stop_if_cancelled()
            decision = await self._approval(release, env) if env in release.gates() else None
            if decision and not decision.approved:
                rejected = f"by {decision.by}: {decision.reason}"
                return ReleaseResult(
                    release_key=release.key, outcome=Outcome.REJECTED, detail=rejected
                )
            rolled_back = await self._promote(release, env)
            if rolled_back:
                return ReleaseResult(
                    release_key=release.key,
                    outcome=Outcome.ROLLED_BACK,
                    detail="; ".join(rolled_back),
                )
            # env is deployed, so the environment it was fed from is no longer needed.
            source = env.previous()
            if source in self._locks:
                await self._unlock(source)
                self._unlocked_after_use.append(source)
        return ReleaseResult(release_key=release.key, outcome=Outcome.SUCCESS)

    def _ending(self, release: Release, err: BaseException) -> ReleaseResult:
        """How a release that raised err ended, in the words of its result."""
        if is_cancelled_exception(err) and workflow.cancellation_reason() is not None:
            # The reason comes from whoever cancelled, unchecked: keep it one printable line.
            reason = shown(workflow.cancellation_reason() or "")[:MAX_REASON_LENGTH]
            return ReleaseResult(release_key=release.key, outcome=Outcome.CANCELLED, detail=reason)
        return ReleaseResult(
            release_key=release.key, outcome=Outcome.FAILED, detail=root_message(err)
        )

    async def _close(self, release: Release, started: str, result: ReleaseResult) -> None:
        """Record how the release ended, then unlock what it still holds."""
        self._status = "recording"
        workflow.set_current_details("")
        self._gate = None
        for row in self._cells.values():
            for component, cell in row.items():
                if cell.state in (
                    CellState.PENDING,
                    CellState.WAITING_FOR_APPROVAL,
                    CellState.RUNNING,
                ):
                    row[component] = Cell(state=CellState.NOT_REACHED)
        states = {
            env: {c: cell.state for c, cell in row.items()} for env, row in self._cells.items()
        }
        await _step(
            record_release,
            RecordReleaseInput(
                demo_root=self._demo_root,
                release=release,
                release_run_id=workflow.info().run_id,
                result=result,
                started=started,
                finished=workflow.now().isoformat(),
                before=self._before,
                states=states,
                unlocked_after_use=self._unlocked_after_use,
                decisions=self._decisions,
            ),
            f"record how {release.key} ended",
        )
        await self._unlock(*self._locks)
        self._status = result.ending()
        workflow.logger.info(str(result))
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _approval(self, release: Release, env: Environment) -> Decision:
        """Wait, durably and for as long as it takes, for a person to approve or reject env."""
        self._gate = env
        how = f"python run_workflow.py --approve {release.key} --gate {env.value} --by NAME"
        self._status = f"waiting for approval before {env.value}"
        self._mark(env, Cell(state=CellState.WAITING_FOR_APPROVAL))
        # Current details: the Web UI shows them (as Markdown) on the release's page while it
        # waits; in a code span, the command survives copy and paste.
        workflow.set_current_details(
            f"Waiting for approval before {env.value}. To approve: `{how}` (or `--reject` "
            "with `--reason TEXT`)"
        )
        workflow.logger.info(f"{release.key}: waiting for approval before {env.value}: {how}")
        await workflow.wait_condition(lambda: self._gate is None)
        workflow.set_current_details("")
        decision = self._decisions[-1]
        self._mark(env, Cell(state=CellState.PENDING if decision.approved else CellState.REJECTED))
        verdict = "approved" if decision.approved else f"rejected ({decision.reason})"
        workflow.logger.info(f"{release.key}: {env.value} {verdict} by {decision.by}")
        return decision

    @workflow.update
    def approve(self, request: ApproveInput) -> str:
        """A person approves the environment the release is waiting for."""
        return self._decide(approved=True, by=request.by.strip(), reason="")

    @approve.validator
    def _validate_approve(self, request: ApproveInput) -> None:
        self._validate_decision(request.gate, request.by, reason="-")

    @workflow.update
    def reject(self, request: RejectInput) -> str:
        """A person rejects the environment the release is waiting for: the release stops."""
        return self._decide(approved=False, by=request.by.strip(), reason=request.reason.strip())

    @reject.validator
    def _validate_reject(self, request: RejectInput) -> None:
        self._validate_decision(request.gate, request.by, request.reason)

    def _validate_decision(self, gate: Environment, by: str, reason: str) -> None:
        # Validators refuse a bad request before it enters the history.
        if self._gate is None:
            raise ValueError(f"Release {self._key} is not waiting for approval ({self._status})")
        if gate is not self._gate:
            raise ValueError(
                f"Release {self._key} waits for approval before {self._gate.value}, "
                f"not {gate.value}: say --gate {self._gate.value} to decide that gate"
            )
        if not by.strip():
            raise ValueError("say who decides: --by NAME")
        if not reason.strip():
            raise ValueError("say why: --reason TEXT")
        _check_shown_text("--by", by, MAX_NAME_LENGTH)
        _check_shown_text("--reason", reason, MAX_REASON_LENGTH)

    def _decide(self, approved: bool, by: str, reason: str) -> str:
        assert self._gate is not None  # the validator checked
        gate, self._gate = self._gate, None
        at = workflow.now().isoformat()
        self._decisions.append(
            Decision(environment=gate, approved=approved, by=by, reason=reason, at=at)
        )
        verdict = "approved" if approved else "rejected"
        return f"Release {self._key}: {gate.value} {verdict} by {by}"

    @workflow.query
    def status(self) -> str:
        """What the release is doing now, in a few words."""
        return self._status

    @workflow.query
    def progress(self) -> ReleaseProgress:
        """The component x environment grid: the state of each deploy. (The step a running
        deploy is at is not tracked here: the starter asks the server, see Cell.)"""
        release = self._release
        return ReleaseProgress(
            release_key=self._key,
            status=self._status,
            gate=self._gate,
            environments=release.environments if release else [],
            components=list(release.versions) if release else [],
            cells=self._cells,
        )

    def _mark(self, env: Environment, cell: Cell, component: str | None = None) -> None:
        for name in [component] if component else list(self._cells.get(env, {})):
            self._cells[env][name] = cell

    async def _hold_environments(self, release: Release) -> None:
        """Lock every environment the release deploys to or is fed from, or refuse the release.

        A release that finds an environment in use by another release is refused at once,
        naming that release, rather than queued: the person starting it decides when to run it
        again, and the environment's state is checked afresh when it does.
        """
        self._status = "locking its environments"
        needed = [*release.environments]
        source = release.environments[0].previous()
        if source is not None:
            needed.insert(0, source)
        locks = await asyncio.gather(*(self._lock(release, env) for env in needed))
        self._locks = {env: lock for env, lock in zip(needed, locks, strict=True) if lock}
        busy = [env for env, lock in zip(needed, locks, strict=True) if lock is None]
        holders = await asyncio.gather(
            *(
                _step(
                    find_lock_holder,
                    LockHolderInput(lock_workflow_id=self._lock_id(env)),
                    f"find which release holds {env.value}",
                )
                for env in busy
            )
        )
        taken = []
        for env, holder in zip(busy, holders, strict=True):
            if holder == workflow.info().workflow_id:
                self._locks[env] = None  # held by the run of this release that a reset replaced
            elif not holder and (lock := await self._lock(release, env)):
                self._locks[env] = lock  # free again by now
            else:
                taken.append((env, holder))
        if not taken:
            return
        await self._unlock(*self._locks)
        names = ", ".join(env.value for env, _ in taken)
        holder = taken[0][1]
        in_use = (
            f"in use by release {holder}, which is still running. Run {release.key} again "
            f"once {holder} has finished."
            if holder
            else f"in use a moment ago. Run {release.key} again."
        )
        workflow.logger.warning(f"{release.key}: refused: {names} {in_use}")
        raise ApplicationError(
            f"Release {release.key} was refused: {names} {in_use}",
            type=ErrorType.ENVIRONMENT_BUSY,
            non_retryable=True,
        )

    async def _lock(
        self, release: Release, env: Environment
    ) -> workflow.ChildWorkflowHandle | None:
        """Take the environment's lock; None if another release holds it."""
        try:
            return await workflow.start_child_workflow(
                EnvironmentLockWorkflow.run,
                EnvironmentLock(release_key=release.key, environment=env),
                id=self._lock_id(env),
                static_summary=f"hold {env.value} for {release.key}",
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                # A lock is free again once its holder closed it, and dies with its release.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                parent_close_policy=ParentClosePolicy.TERMINATE,
            )
        except WorkflowAlreadyStartedError:
            return None

    def _lock_id(self, env: Environment) -> str:
        return f"lock.{env.value}{'.' + self._lock_scope if self._lock_scope else ''}"

    async def _unlock(self, *envs: Environment) -> None:
        """Unlock environments, and see the locks this run started end. (The signal goes by
        workflow ID, so it also reaches a lock that a run replaced by a reset started.)"""
        locks = {env: self._locks.pop(env) for env in list(envs)}
        await asyncio.gather(
            *(
                workflow.get_external_workflow_handle(self._lock_id(env)).signal(
                    EnvironmentLockWorkflow.unlock
                )
                for env in locks
            )
        )
        await asyncio.gather(*(lock for lock in locks.values() if lock))

    async def _promote(self, release: Release, env: Environment) -> list[str]:
        """Deploy every component to env at once and wait for all of them (one wave).

        A wave closes as a whole: when one deploy fails, the others still run to their end
        before the release goes on to fail. Returns how each rolled-back deploy went, e.g.
        "frontend in QC (1.1 -> 1.0)"; the other components of the wave stay deployed (see
        demos.md, "An unhealthy deploy")."""
        workflow.logger.info(f"{release.key}: promoting to {env.value}: {release.plan()}")
        self._status = f"deploying to {env.value}"
        info = workflow.info()
        self._mark(env, Cell(state=CellState.RUNNING))
        outcomes = await _all(
            *(
                self._deploy(
                    Deployment(
                        release_key=release.key,
                        release_run_id=info.run_id,
                        component=component,
                        version=version,
                        environment=env,
                        demo_root=self._demo_root,
                    ),
                    # Deterministic IDs that read like the release plan in the Web UI.
                    id=deploy_workflow_id(info.workflow_id, env, component),
                )
                for component, version in release.versions.items()
            )
        )
        rolled_back = [outcome for outcome in outcomes if outcome]
        workflow.logger.info(
            f"{release.key}: {env.value} {'rolled back' if rolled_back else 'done'}"
        )
        return rolled_back

    async def _deploy(self, deployment: Deployment, id: str) -> str:
        """One DeployWorkflow child; marks its cell in the grid done, rolled back, failed or
        cancelled, and returns "" (or how it was rolled back)."""
        env, component = deployment.environment, deployment.component
        try:
            outcome = await self._start_deploy(deployment, id)
        except (Exception, asyncio.CancelledError) as err:
            ended = (
                Cell(state=CellState.CANCELLED)
                if is_cancelled_exception(err)
                else Cell(state=CellState.FAILED, error=root_message(err))
            )
            self._mark(env, ended, component)
            raise
        if not outcome.rolled_back:
            self._mark(env, Cell(state=CellState.DONE), component)
            return ""
        self._mark(
            env, Cell(state=CellState.ROLLED_BACK, step=outcome.previous or "removed"), component
        )
        return f"{component} in {env.value} ({deployment.version} -> {outcome.previous or 'none'})"

    async def _start_deploy(self, deployment: Deployment, id: str) -> DeployOutcome:
        def start() -> Awaitable[DeployOutcome]:
            return workflow.execute_child_workflow(
                DeployWorkflow.run,
                deployment,
                id=id,
                static_summary=f"deploy {_what(deployment, 'to')}",
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                # Were the release terminated, its deploys would still end clean, not mid-step.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            )

        try:
            return await start()
        except WorkflowAlreadyStartedError:
            # Started by the run of this release that a reset replaced, and still running: let
            # it finish, then deploy again, which finds its work done.
            await _step(
                wait_until_closed,
                WorkflowRef(workflow_id=id),
                f"wait for {id}, started before a reset, to close",
            )
            return await start()
