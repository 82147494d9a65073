"""The release plan, made durable.

ReleaseWorkflow promotes a release environment by environment, one DeployWorkflow child
(deploy.py) per component in a wave. It only decides: every touch of the world is an activity
(activities.py, started as steps.py says), so when a worker dies, another one replays this code
from the release's history and carries on where it stopped. Read it top-down: the plan, then
what it calls. Locks are in locks.py, gates and soaks in gates.py.
"""

import asyncio
from collections.abc import Awaitable

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ParentClosePolicy

import own_workers
from announcements import ANNOUNCE_BESIDE_PATCH, Announcements
from deploy import DeployWorkflow, summary_of
from gates import ApprovalGates, Soaks
from locks import EnvironmentLocks
from steps import (
    all_of,
    finish_even_if_cancelled,
    start_activity,
    start_after_any_leftover,
    stop_if_cancelled,
)

# Determinism: the sandbox re-imports workflow code (the modules above) on every run and checks
# it. The modules below are passed through as they are: data shapes, activities, and helpers
# that read nothing a replay could see differently (no clock, no file).
with workflow.unsafe.imports_passed_through():
    import activities
    import search_attributes
    from grid import Grid
    from search_attributes import RELEASE_KEY, RELEASE_OUTCOME, RUNNING
    from shared import (
        MAX_NAME_LENGTH,
        MAX_REASON_LENGTH,
        WORKFLOW_TASK_TIMEOUT,
        ApproveInput,
        CellState,
        CheckPromotionInput,
        Decision,
        Deployment,
        DeployResult,
        Ending,
        Environment,
        EnvironmentVersions,
        ErrorType,
        Outcome,
        RecordReleaseInput,
        RejectInput,
        Release,
        ReleaseInput,
        ReleaseProgress,
        ReleaseResult,
        SkipSoakInput,
        deploy_workflow_id,
        is_release_key,
        person_text,
        root_message,
        shown,
    )


# Pinned (Worker Versioning, versioning.py): a release may wait days at a gate, and it runs to its
# end on the code it started with, so it never replays a newer plan. (The *_PATCH guards, at the
# bottom and in locks.py and announcements.py, keep histories from before each change replaying.)
@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class ReleaseWorkflow:
    """Promote one release from the catalog through its environments, as a set. However it ends,
    it waits for every deploy it started to close, records how it ended and unlocks (after a
    terminate, which runs no workflow code, its locks record it)."""

    def __init__(self) -> None:
        self._request = ReleaseInput(release_key="")
        self._release: Release | None = None
        self._status = "starting"
        self._grid = Grid()  # what the starter shows (grid.py)
        self._before: EnvironmentVersions = {}  # what the environments held before the release
        self._locks = EnvironmentLocks()
        self._gates = ApprovalGates()
        self._soaks = Soaks()
        self._announcements = Announcements(self._stop_if_cancelled_or_lost)

    @workflow.run
    async def run(self, request: ReleaseInput | None = None) -> ReleaseResult:
        request = request or ReleaseInput()  # started with no input, or null: no key
        _refuse_a_workflow_id_of_another_key(request.release_key)
        started = workflow.now().isoformat()
        self._request = request
        self._show_outcome(RUNNING)
        release = await self._gather(request, started)
        try:
            result = await self._promote_all_unless_a_lock_is_lost(release)
        except (Exception, asyncio.CancelledError) as err:
            ending = self._outcome_of_error(release.key, err)
            await self._close(release, started, ending)
            if ending.outcome is Outcome.FAILED and self._locks.lost:
                raise ApplicationError(
                    ending.detail, type=ErrorType.LOCK_LOST, non_retryable=True
                ) from None
            raise
        await self._close(release, started, result)
        return result

    async def _promote_all(self, release: Release) -> ReleaseResult:
        """The plan: hold the environments (locks.py) and check before any change; then, for each
        environment in order, a person's approval if it is gated (gates.py), the wave of deploys,
        the environment it was fed from let go, an announcement, and a soak if it has one."""
        self._status = "locking its environments"
        await self._locks.take_all(release)
        await self._check_promotion(release)
        for env in release.environments:
            self._stop_if_cancelled_or_lost()
            if env in release.gates() and not (decision := await self._approval(env)).approved:
                who = f"by {decision.by}: " if decision.by else ""  # "": the gate expired
                return _outcome(release, Outcome.REJECTED, f"{who}{decision.reason}")
            await self._locks.confirm_after_reset(env)
            self._stop_if_cancelled_or_lost()  # a cancel that came with the approval, say
            rollbacks = await self._promote(release, env)
            if rollbacks:
                return _outcome(release, Outcome.ROLLED_BACK, "; ".join(rollbacks))
            # env is deployed, so the environment it was fed from is no longer needed.
            await self._locks.unlock_after_use(env.previous())
            await self._announce(release, env.value, f"promoted to {env.value}", release.plan())
            await self._soak_for(env, release.soak(env))
        return _outcome(release, Outcome.SUCCESS)

    async def _gather(self, request: ReleaseInput, started: str) -> Release:
        """The release, from the catalog (a step). A run that gets none (an unknown key, a bad
        catalog, a cancel) records how it ended, then fails."""
        summary = f"gather {request.release_key} from the catalog"
        try:
            release = await start_activity(activities.gather_release, request, summary)
        except (ActivityError, asyncio.CancelledError) as err:
            await self._record_unstarted(started, err)
            raise
        self._release = release
        self._grid.lay_out(release)
        return release

    async def _promote_all_unless_a_lock_is_lost(self, release: Release) -> ReleaseResult:
        """_promote_all as a task of its own, so that a lock taken from the release stops it
        where it stands, as a cancel would (locks.py)."""
        plan = asyncio.create_task(self._promote_all(release))
        self._locks.on_lost = plan.cancel
        result = await plan
        if self._locks.lost:  # lost as the plan ended: its last steps ran without the lock
            raise asyncio.CancelledError()
        return result

    async def _check_promotion(self, release: Release) -> None:
        """Validate before any change: a promotion out of order fails here, non-retryably. The
        environments are held by now, so what is checked cannot change under the release; and
        no deploy of another release may still be running into them."""
        self._status = "checking the promotion"
        feeder = [env] if (env := release.environments[0].previous()) else []
        check = CheckPromotionInput(
            release=release,
            demo_root=self._request.demo_root,
            held=await own_workers.holdings(release, feeder),
        )
        self._before, _ = await all_of(
            start_activity(
                activities.check_promotion, check, f"check that {release.key} can be promoted"
            ),
            self._locks.refuse_if_others_deploy(release),
        )

    async def _promote(self, release: Release, env: Environment) -> list[str]:
        """Deploy every component to env at once, and wait for the whole wave (one failed deploy
        lets the others end first). Returns how each rolled-back deploy went, e.g. "frontend in
        QC (1.1 -> 1.0)"; the rest of the wave stays deployed (demos.md, "An unhealthy deploy")."""
        workflow.logger.info(f"{release.key}: promoting to {env.value}: {release.plan()}")
        self._status = f"deploying to {env.value}"
        self._grid.mark(env, CellState.RUNNING)
        queue, root, before = await own_workers.where_steps_run(
            release, env, self._request.demo_root
        )
        self._before |= before
        run_id = workflow.info().run_id
        ends = await all_of(
            *(
                self._deploy(
                    Deployment(
                        release_key=release.key,
                        release_run_id=run_id,
                        component=component,
                        version=version,
                        environment=env,
                        demo_root=root,
                        task_queue=queue,
                    )
                )
                for component, version in release.versions.items()
            )
        )
        rollbacks = [end for end in ends if end]
        workflow.logger.info(f"{release.key}: {env.value} {'rolled back' if rollbacks else 'done'}")
        return rollbacks

    async def _deploy(self, deployment: Deployment) -> str:
        """One DeployWorkflow child: "", or how it was rolled back."""
        deployed = await self._grid.follow(deployment, self._start_deploy(deployment))
        if not deployed.rolled_back:
            return ""
        where = f"{deployment.component} in {deployment.environment.value}"
        return f"{where} ({deployment.version} -> {deployed.previous or 'none'})"

    async def _start_deploy(self, deployment: Deployment) -> DeployResult:
        # A deterministic ID that reads like the release plan in the Web UI.
        deploy_id = deploy_workflow_id(
            workflow.info().workflow_id, deployment.environment, deployment.component
        )

        def start() -> Awaitable[DeployResult]:
            return workflow.execute_child_workflow(
                DeployWorkflow.run,
                deployment,
                id=deploy_id,
                static_summary=f"deploy {summary_of(deployment, 'to')}",
                search_attributes=search_attributes.for_deploy(deployment),
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                # Were the release terminated, its deploys would still end clean, not mid-step.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            )

        return await start_after_any_leftover(start, deploy_id)

    async def _announce(self, release: Release, point: str, event: str, message: str) -> None:
        """Announce an event of the release (announcements.py: in order, beside the plan). A step
        added after releases had run, so behind a patch per point (after DEV, ..., at the end). A
        release from before replays without it; one in flight announces from the next point it
        reaches (patched() answers once per ID for the whole run: demos.md, "Change the plan")."""
        if not workflow.patched(f"{NOTIFICATIONS_PATCH}-{point}"):
            return
        await self._announcements.announce(release, point, event, message, self._request.demo_root)

    async def _soak_for(self, env: Environment, seconds: int) -> None:
        """Wait before promoting past env, on a *durable timer*: the server keeps it, so no worker
        has to be up meanwhile (a person may end it early: skip_soak)."""
        if not seconds:
            return
        self._stop_if_cancelled_or_lost()  # a step before it may have finished despite a cancel
        self._status = f"soaking {env.value} for {seconds} s"
        workflow.logger.info(f"{self._request.release_key}: {self._status}")
        self._grid.mark(env, CellState.SOAKING)
        try:
            await self._soaks.wait(env, seconds)
        finally:
            self._grid.mark(env, CellState.DONE)

    async def _approval(self, env: Environment) -> Decision:
        """Wait, durably, for a person to approve or reject env, or for the gate to expire."""
        assert self._release is not None
        self._status = f"waiting for approval before {env.value}"
        self._grid.mark(env, CellState.WAITING_FOR_APPROVAL)
        decision = await self._gates.wait(self._release, env)
        self._grid.mark(env, CellState.PENDING if decision.approved else CellState.REJECTED)
        return decision

    def _outcome_of_error(self, release_key: str, err: BaseException) -> ReleaseResult:
        """How a release that raised err ended."""
        cancelled = workflow.cancellation_reason() is not None
        if self._locks.lost and not cancelled:
            outcome, detail = Outcome.FAILED, self._locks.lost
        elif is_cancelled_exception(err) and cancelled:
            # The reason comes from whoever cancelled, unchecked: keep it one printable line.
            outcome = Outcome.CANCELLED
            detail = shown(workflow.cancellation_reason() or "")[:MAX_REASON_LENGTH]
        else:
            outcome, detail = Outcome.FAILED, root_message(err)
        return ReleaseResult(release_key=release_key, outcome=outcome, detail=detail)

    async def _close(self, release: Release, started: str, result: ReleaseResult) -> None:
        """Record how the release ended, then unlock what it still holds. Once begun, it runs to
        its end: a cancel that arrives meanwhile changes neither the record nor the result."""
        await finish_even_if_cancelled(
            self._record_and_unlock(release, started, result),
            cancel_log=f"{release.key}: cancel requested while it closes; it closes as {result}",
        )

    async def _record_and_unlock(
        self, release: Release, started: str, result: ReleaseResult
    ) -> None:
        self._status = "recording"
        workflow.set_current_details("")
        self._gates.open = None
        record = RecordReleaseInput(
            demo_root=self._request.demo_root,
            release=release,
            release_run_id=workflow.info().run_id,
            result=result,
            started=started,
            finished=workflow.now().isoformat(),
            before=self._before,
            states=self._grid.final_states(),
            unlocked_after_use=self._locks.unlocked_after_use,
            decisions=self._gates.decisions,
            skipped_soaks=self._soaks.skipped,
        )
        summary = f"record how {release.key} ended"
        # The last announcement, if still going on, goes on beside the record.
        await all_of(
            start_activity(activities.record_release, record, summary),
            self._announcements.finished(),
        )
        self._show_outcome(result.outcome)
        end = self._announce(release, "end", f"ended {result.outcome}", str(result))
        if workflow.patched(ANNOUNCE_BESIDE_PATCH):
            await all_of(end, self._locks.unlock_all())
        else:
            await end
            await self._locks.unlock_all()
        self._status = result.ending()
        workflow.logger.info(str(result))
        await workflow.wait_condition(workflow.all_handlers_finished)  # an Update answers first

    async def _record_unstarted(self, started: str, err: BaseException) -> None:
        """Record a run that ended with no release to run (a key no longer in the catalog, a
        cancel meanwhile); a run with no key of a release's form records nothing. Behind a patch:
        a run from before it replays without the record."""
        key = self._request.release_key
        if not is_release_key(key) or not workflow.patched(UNSTARTED_RECORD_PATCH):
            return
        result = self._outcome_of_error(key, err)
        ending = Ending(
            release_key=key,
            release_run_id=workflow.info().run_id,
            how=result.outcome.value,
            detail=result.detail,
            started=started,
            finished=workflow.now().isoformat(),
            demo_root=self._request.demo_root,
        )
        await finish_even_if_cancelled(
            start_activity(activities.record_unstarted, ending, f"record how {key} ended"),
            cancel_log=f"{key}: cancel requested while it records; it records first",
        )
        self._show_outcome(result.outcome)

    def _show_outcome(self, outcome: str) -> None:
        """Set the search attributes the Web UI lists and filters releases by. Behind a patch: a
        release started before it set none, and replays without them."""
        if workflow.patched(SEARCH_ATTRIBUTES_PATCH):
            key = self._request.release_key
            workflow.upsert_search_attributes(
                [RELEASE_KEY.value_set(key), RELEASE_OUTCOME.value_set(outcome)]
            )

    def _stop_if_cancelled_or_lost(self) -> None:
        """Start nothing new once the release is cancelled or has lost a lock (see
        stop_if_cancelled: a step that finished despite the cancel absorbed it)."""
        stop_if_cancelled()
        if self._locks.lost:
            raise asyncio.CancelledError()

    @workflow.update
    def approve(self, request: ApproveInput) -> str:
        """A person approves the environment the release is waiting for."""
        return self._gates.decide(self._request.release_key, True, person_text(request.by), "")

    @approve.validator
    def _validate_approve(self, request: ApproveInput) -> None:
        # Validators refuse a bad request before it enters the history.
        key, status = self._request.release_key, self._status
        self._gates.check(key, status, request.gate, request.by, reason=None)  # an approval

    @workflow.update
    def reject(self, request: RejectInput) -> str:
        """A person rejects the environment the release is waiting for: the release stops."""
        by, reason = person_text(request.by), person_text(request.reason)
        return self._gates.decide(self._request.release_key, False, by, reason)

    @reject.validator
    def _validate_reject(self, request: RejectInput) -> None:
        key, status = self._request.release_key, self._status
        self._gates.check(key, status, request.gate, request.by, request.reason)

    @workflow.update
    def skip_soak(self, request: SkipSoakInput) -> str:
        """A person ends the soak now: the release promotes to the next environment at once."""
        return self._soaks.skip(self._request.release_key, person_text(request.by))

    @skip_soak.validator
    def _validate_skip_soak(self, request: SkipSoakInput) -> None:
        self._soaks.check_skip(self._request.release_key, self._status, request.by)

    @workflow.query
    def status(self) -> str:
        """What the release is doing now, in a few words."""
        return self._status

    @workflow.query
    def progress(self) -> ReleaseProgress:
        """The component x environment grid: the state of each deploy (grid.py)."""
        release = self._release
        return ReleaseProgress(
            release_key=self._request.release_key,
            status=self._status,
            gate=self._gates.open,
            gate_expires=self._gates.expires,
            soak=self._soaks.now,
            environments=release.environments if release else [],
            components=list(release.versions) if release else [],
            cells=self._grid.cells,
        )


# The patches that added announcements (notify) to the plan: notifications-DEV, ..., -end.
NOTIFICATIONS_PATCH = "notifications"
# The patch that made releases set their search attributes: see _show_outcome.
SEARCH_ATTRIBUTES_PATCH = "search-attributes"
# The patch that made a run with no release to run record how it ended: see _record_unstarted.
UNSTARTED_RECORD_PATCH = "record-unstarted"


def _refuse_a_workflow_id_of_another_key(release_key: str) -> None:
    """A release runs under its key as workflow ID (a train's run: KEY-<time>), so that
    `--status KEY` reaches the release it names: any other ID is refused before anything runs."""
    workflow_id = workflow.info().workflow_id
    if workflow_id == release_key or workflow_id.startswith(f"{release_key}-"):
        return
    if not is_release_key(release_key):
        return  # no key at all, or none of a key's form: the catalog refuses it, listing the keys
    key, given = shown(release_key)[:MAX_NAME_LENGTH], shown(workflow_id)[:MAX_NAME_LENGTH]
    raise ApplicationError(
        f"Workflow ID {given!r} does not name release {key!r}: a release runs under its key as "
        f"workflow ID (or its key followed by a dash and a suffix). Start it again with "
        f"workflow ID {key!r}",
        type=ErrorType.WRONG_WORKFLOW_ID,
        non_retryable=True,
    )


def _outcome(release: Release, outcome: Outcome, detail: str = "") -> ReleaseResult:
    return ReleaseResult(release_key=release.key, outcome=outcome, detail=detail)
