"""Workflows: the release plan, made durable.

ReleaseWorkflow gathers a release, validates it, and promotes it environment by environment,
starting one DeployWorkflow child per component and waiting for the whole wave before the next
environment. DeployWorkflow runs the steps of one component in one environment. Both only
orchestrate: every read or write of the world happens in an activity.
"""

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError

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
    )
    from shared import (
        ApproveInput,
        Cell,
        CheckPromotionInput,
        Decision,
        DeployArtifactInput,
        Deployment,
        DeployOutcome,
        Environment,
        EnvironmentLock,
        GatherReleaseInput,
        LockHolderInput,
        RecordReleaseInput,
        RejectInput,
        Release,
        ReleaseInput,
        ReleaseProgress,
        UpdateConfigInput,
        VerifyInput,
        VerifyRollbackInput,
        deploy_workflow_id,
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
# (run_worker.MAX_CONCURRENT_STEPS), so a busy worker has half a second to spare before it is
# taken for dead; were it, the retry would find the step's work done (idempotence).
STEP_HEARTBEAT_TIMEOUT = timedelta(seconds=1)
# Workflow task timeout: a workflow task handed to a worker that died is given to another one
# after this long (the server's default is 10 s). Our workflow tasks take milliseconds.
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=2)
# Start-to-close timeout: the longest a step may take, pace included (DEMO_STEP_SECONDS <= 60).
STEP_TIMEOUT = timedelta(minutes=2)


def _step(activity: Any, argument: Any) -> Any:
    """Start one step now, with the project's timeouts and retry policy; await it for its
    result."""
    return workflow.start_activity(
        activity,
        argument,
        start_to_close_timeout=STEP_TIMEOUT,
        heartbeat_timeout=STEP_HEARTBEAT_TIMEOUT,
        retry_policy=STEP_RETRY,
    )


@workflow.defn
class DeployWorkflow:
    """Deploy one component version to one environment: build (DEV only), gather the artifact
    and the config, deploy, configure, verify; roll back if it proves unhealthy."""

    @workflow.run
    async def run(self, deployment: Deployment) -> DeployOutcome:
        # The config does not depend on the build: gather it while the artifact is prepared.
        config_gathered = _step(fetch_config, deployment)
        if deployment.environment is Environment.DEV:
            await _step(build_artifact, deployment)
        artifact, config = await asyncio.gather(_step(fetch_artifact, deployment), config_gathered)
        await _step(deploy_artifact, DeployArtifactInput(deployment=deployment, artifact=artifact))
        await _step(update_config, UpdateConfigInput(deployment=deployment, config=config))
        try:
            await _step(verify_deploy, VerifyInput(deployment=deployment, artifact=artifact))
        except ActivityError as err:
            if not (isinstance(err.cause, ApplicationError) and err.cause.type == "Unhealthy"):
                raise
            # Compensate: the deploy is unhealthy, so put back what the environment held.
            previous = await _step(rollback_deploy, deployment)
            await _step(
                verify_rollback, VerifyRollbackInput(deployment=deployment, previous=previous)
            )
            return DeployOutcome(rolled_back=True, previous=previous)
        return DeployOutcome()


@workflow.defn
class EnvironmentLockWorkflow:
    """Holds one environment for one release, so two releases never deploy into it at once.

    Its workflow ID names the environment, and Temporal runs one workflow per ID at a time:
    starting it is taking the lock. It ends when its release signals that it is done, or is
    terminated together with its release (the parent close policy), so a lock never outlives
    the release that holds it, whatever happens to workers.
    """

    def __init__(self) -> None:
        self._released = False

    @workflow.run
    async def run(self, lock: EnvironmentLock) -> None:
        await workflow.wait_condition(lambda: self._released)

    @workflow.signal
    def release(self) -> None:
        self._released = True


async def _release(locks: list[workflow.ChildWorkflowHandle]) -> None:
    """Let go of environment locks, and see them end. (Were the release cancelled or terminated
    instead, its locks would be terminated with it.)"""
    await asyncio.gather(*(lock.signal(EnvironmentLockWorkflow.release) for lock in locks))
    await asyncio.gather(*locks)


@workflow.defn
class ReleaseWorkflow:
    """Promote one release from the catalog through its environments, as a set."""

    def __init__(self) -> None:
        self._lock_scope = ""
        self._key = ""
        self._status = "starting"
        self._gate: Environment | None = None  # the environment waiting for a person, if any
        self._decisions: list[Decision] = []
        self._release: Release | None = None
        self._cells: dict[Environment, dict[str, Cell]] = {}

    @workflow.run
    async def run(self, request: ReleaseInput) -> str:
        started = workflow.now()
        self._lock_scope = request.lock_scope
        self._key = request.release_key
        release: Release = await _step(
            gather_release, GatherReleaseInput(release_key=request.release_key)
        )
        self._release = release
        self._cells = {env: {c: Cell() for c in release.versions} for env in release.environments}
        locks = await self._hold_environments(release)
        try:
            result = await self._promote_all(release, started)
        except Exception:
            await _release(locks)
            raise
        await _release(locks)
        self._status = result.split(": ", 1)[1]  # "SUCCESS", "REJECTED by ...": the outcome
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _promote_all(self, release: Release, started: datetime) -> str:
        # Validate before any change: a promotion out of order fails here, non-retryably. The
        # environments are held by now, so what is checked cannot change under the release.
        self._status = "checking the promotion"
        before = await _step(check_promotion, CheckPromotionInput(release=release))
        reached: list[Environment] = []
        result = f"Release {release.key}: SUCCESS"
        for env in release.environments:
            decision = await self._approval(release, env) if env in release.gates() else None
            if decision and not decision.approved:
                result = f"Release {release.key}: REJECTED by {decision.by}: {decision.reason}"
                break
            rolled_back = await self._promote(release, env)
            reached.append(env)
            if rolled_back:
                result = f"Release {release.key}: ROLLED BACK {'; '.join(rolled_back)}"
                break
        self._status = "recording"
        await _step(
            record_release,
            RecordReleaseInput(
                release=release,
                release_run_id=workflow.info().run_id,
                result=result,
                started=started.isoformat(),
                finished=workflow.now().isoformat(),
                before=before,
                reached=reached,
                decisions=self._decisions,
            ),
        )
        workflow.logger.info(result)
        return result

    async def _approval(self, release: Release, env: Environment) -> Decision:
        """Wait, durably and for as long as it takes, for a person to approve or reject env."""
        self._gate = env
        how = f"python run_workflow.py --approve {release.key} --by NAME (or --reject)"
        self._status = f"waiting for approval before {env.value}"
        self._mark(env, Cell(state="waiting for approval"))
        # Current details: the Web UI shows this on the release's page while it waits.
        workflow.set_current_details(f"Waiting for approval before {env.value}: {how}")
        workflow.logger.info(f"{release.key}: waiting for approval before {env.value}: {how}")
        await workflow.wait_condition(lambda: self._gate is None)
        workflow.set_current_details("")
        decision = self._decisions[-1]
        self._mark(env, Cell(state="pending" if decision.approved else "rejected"))
        verdict = "approved" if decision.approved else f"rejected ({decision.reason})"
        workflow.logger.info(f"{release.key}: {env.value} {verdict} by {decision.by}")
        return decision

    @workflow.update
    def approve(self, request: ApproveInput) -> str:
        """A person approves the environment the release is waiting for."""
        return self._decide(approved=True, by=request.by.strip(), reason="")

    @approve.validator
    def _validate_approve(self, request: ApproveInput) -> None:
        self._validate_decision(request.by, reason="-")

    @workflow.update
    def reject(self, request: RejectInput) -> str:
        """A person rejects the environment the release is waiting for: the release stops."""
        return self._decide(approved=False, by=request.by.strip(), reason=request.reason.strip())

    @reject.validator
    def _validate_reject(self, request: RejectInput) -> None:
        self._validate_decision(request.by, request.reason)

    def _validate_decision(self, by: str, reason: str) -> None:
        # Validators refuse a bad request before it enters the history.
        if self._gate is None:
            raise ValueError(f"Release {self._key} is not waiting for approval ({self._status})")
        if not by.strip():
            raise ValueError("say who decides: --by NAME")
        if not reason.strip():
            raise ValueError("say why: --reason TEXT")

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
            environments=release.environments if release else [],
            components=list(release.versions) if release else [],
            cells=self._cells,
        )

    def _mark(self, env: Environment, cell: Cell, component: str | None = None) -> None:
        for name in [component] if component else list(self._cells.get(env, {})):
            self._cells[env][name] = cell

    async def _hold_environments(self, release: Release) -> list[workflow.ChildWorkflowHandle]:
        """Lock every environment the release deploys to or is fed from, or refuse the release.

        A release that finds an environment in use by another release is refused at once,
        naming that release, rather than queued: the person starting it decides when to run it
        again, and the environment's state is checked afresh when it does.
        """
        needed = [*release.environments]
        source = release.environments[0].previous()
        if source is not None:
            needed.insert(0, source)
        locks = await asyncio.gather(*(self._lock(release, env) for env in needed))
        held = [lock for lock in locks if lock is not None]
        busy = [env for env, lock in zip(needed, locks, strict=True) if lock is None]
        if not busy:
            return held
        await _release(held)
        holder = await _step(
            find_lock_holder, LockHolderInput(lock_workflow_id=self._lock_id(busy[0]))
        )
        names = ", ".join(env.value for env in busy)
        workflow.logger.warning(f"{release.key}: refused: {names} in use by {holder}")
        raise ApplicationError(
            f"Release {release.key} was refused: {names} in use by release {holder}, which is "
            f"still running. Run {release.key} again once {holder} has finished.",
            type="EnvironmentBusy",
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
                task_timeout=WORKFLOW_TASK_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            return None

    def _lock_id(self, env: Environment) -> str:
        return f"lock.{env.value}{'.' + self._lock_scope if self._lock_scope else ''}"

    async def _promote(self, release: Release, env: Environment) -> list[str]:
        """Deploy every component to env at once and wait for all of them (one wave).

        Returns how each rolled-back deploy went, e.g. "frontend in QC (1.1 -> 1.0)"; the other
        components of the wave stay deployed (see demos.md, "An unhealthy deploy")."""
        plan = ", ".join(f"{c} {v}" for c, v in release.versions.items())
        workflow.logger.info(f"{release.key}: promoting to {env.value}: {plan}")
        self._status = f"deploying to {env.value}"
        info = workflow.info()
        self._mark(env, Cell(state="running"))
        outcomes = await asyncio.gather(
            *(
                self._deploy(
                    Deployment(
                        release_key=release.key,
                        release_run_id=info.run_id,
                        component=component,
                        version=version,
                        environment=env,
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
        """One DeployWorkflow child; marks its cell in the grid done (or rolled back) and
        returns "" (or how it was rolled back)."""
        outcome = await workflow.execute_child_workflow(
            DeployWorkflow.run, deployment, id=id, task_timeout=WORKFLOW_TASK_TIMEOUT
        )
        env, component = deployment.environment, deployment.component
        if not outcome.rolled_back:
            self._mark(env, Cell(state="done"), component)
            return ""
        self._mark(env, Cell(state="rolled back", step=outcome.previous or "removed"), component)
        return f"{component} in {env.value} ({deployment.version} -> {outcome.previous or 'none'})"
