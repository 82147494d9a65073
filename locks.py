"""Environment locks: two releases never change one environment at once.

The idea: a lock is a child workflow of the release (EnvironmentLockWorkflow) whose ID names the
environment, `lock.PROD`. Temporal runs one workflow per ID at a time, so starting it is taking
the lock, and a second release that tries is refused, naming the holder (take_all). The release
lets it go with an `unlock` signal that names the release (unlock).

The rule: an environment is held from the moment a release takes it until every deploy of that
release into it has closed, however the release ends, and only that release lets it go. At the
other doors Temporal opens (the rarer cases; read them later):
- an unlock naming anyone else is ignored; a cancel of the lock while its release runs, refused;
- the release is terminated: its locks are asked to cancel (the parent close policy), end once
  its deploys there have closed, and write the release's record, as the release cannot;
- a person terminates the lock, or forges its release's unlock: the release notices at once,
  starts nothing more, and fails (LockLost);
- a reset leaves the replaced run's locks: the new run adopts them, and before each wave
  confirms they are still its own (confirm_after_reset).
The locks' scope is the release's task queue, which the worker decides: a caller cannot name
another. Below: the release's side (EnvironmentLocks), then the lock itself.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from enum import Enum

from temporalio import workflow
from temporalio.common import RawValue, VersioningBehavior, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from steps import quick_activity

with workflow.unsafe.imports_passed_through():
    import lookups
    from activities import record_ending
    from search_attributes import for_lock
    from shared import (
        DEFAULT_TASK_QUEUE,
        WORKFLOW_TASK_TIMEOUT,
        DeploysInFlightInput,
        EndingInput,
        Environment,
        EnvironmentLock,
        ErrorType,
        LockHolderInput,
        Release,
        RunsInput,
        UnlockInput,
        WorkflowRef,
        deploy_workflow_id,
        root_message,
        shown,
    )

# Waiting for a release's deploys to close: they finish at most a few paced steps.
CLOSE_TIMEOUT = timedelta(minutes=10)
# The signal a release lets its lock go with.
UNLOCK = "unlock"
# The patch that brought the rules above: a lock started before it let anyone unlock it.
LOCK_RULES_PATCH = "lock-rules"
# The patch that made an unlock after use go on beside the plan (benchmarks/RESULTS.md).
UNLOCK_BESIDE_PATCH = "unlock-beside"
# The patches (one per environment: lock-check-DEV, ...) of EnvironmentLocks.confirm_after_reset.
RESET_CHECK_PATCH = "lock-check"


# --- The release's side: take every lock it needs, or none; let each go when done with it ------
class EnvironmentLocks:
    """The locks one release holds, and whether it lost one (lost: why, else None)."""

    def __init__(self) -> None:
        # Each lock held (None: one the run that a reset replaced started, adopted by this run).
        self._held: dict[Environment, workflow.ChildWorkflowHandle | None] = {}
        self.unlocked_after_use: list[Environment] = []
        self._unlocking: list[asyncio.Future[list[None]]] = []  # unlocks after use, closing
        self.lost: str | None = None
        # Called once when a lock is lost: the release stops what it is doing.
        self.on_lost: Callable[[], object] = lambda: None

    async def take_all(self, release: Release) -> None:
        """Lock every environment the release deploys to or is fed from, or refuse the release
        (EnvironmentBusy, non-retryable, holding nothing), naming the holder: refused, not queued,
        so the person decides when to run it again, and its state is checked afresh then."""
        needed = _needed(release)
        locks = await asyncio.gather(*(self._lock(release, env) for env in needed))
        self._held = {env: lock for env, lock in zip(needed, locks, strict=True) if lock}
        held_by_others = await self._take_busy(
            release, [env for env in needed if env not in self._held]
        )
        if held_by_others:
            await self.unlock(*self._held)
            raise _refusal(release, held_by_others)

    async def _lock(
        self, release: Release, env: Environment
    ) -> workflow.ChildWorkflowHandle | None:
        """Take the environment's lock, and watch it; None if another release holds it."""
        release_id = workflow.info().workflow_id
        deploys = [deploy_workflow_id(release_id, env, c) for c in release.versions]
        try:
            lock = await workflow.start_child_workflow(
                EnvironmentLockWorkflow.run,
                EnvironmentLock(
                    release_key=release.key,
                    environment=env,
                    deploys=deploys if env in release.environments else [],
                ),
                id=self.lock_id(env),
                static_summary=f"hold {env.value} for {release.key}",
                search_attributes=for_lock(release.key, env),
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                # A lock is free again once its holder closed it.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                # Were the release terminated, the lock would hold on until its deploys closed.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            )
        except WorkflowAlreadyStartedError:
            return None
        asyncio.create_task(self._watch(env, lock))
        return lock

    async def _take_busy(
        self, release: Release, busy: list[Environment]
    ) -> list[tuple[Environment, str]]:
        """Take what is free by now, adopt what this release's replaced run holds; return the
        environments another release holds, with its ID ("" if it just let go)."""
        holders = await asyncio.gather(
            *(self._holder(env, "find which release holds") for env in busy)
        )
        held_by_others = []
        for env, holder in zip(busy, holders, strict=True):
            if holder == workflow.info().workflow_id and _is_reset_run():
                self._held[env] = None  # held by the run of this release that a reset replaced
            elif not holder and (lock := await self._lock(release, env)):
                self._held[env] = lock  # free again by now
            else:
                held_by_others.append((env, holder))
        return held_by_others

    def _holder(self, env: Environment, asking: str) -> Awaitable[str]:
        """The ID of the release that holds env's lock ("": none), asked of the server."""
        lock = LockHolderInput(lock_workflow_id=self.lock_id(env))
        return quick_activity(lookups.find_lock_holder, lock, f"{asking} {env.value}")

    def lock_id(self, env: Environment) -> str:
        """The lock's workflow ID: lock.QC on the demo's task queue, lock.QC.<queue> on another
        (as tests give each demo root its own queue, so they never lock one another out)."""
        queue = workflow.info().task_queue
        return f"lock.{env.value}{'' if queue == DEFAULT_TASK_QUEUE else '.' + queue}"

    async def unlock_after_use(self, env: Environment | None) -> None:
        """Unlock env, which the release no longer needs, if it holds it. Behind a patch, the plan
        goes on meanwhile (nothing on it waits for the lock to close; unlock_all does)."""
        if env not in self._held:
            return
        if workflow.patched(UNLOCK_BESIDE_PATCH):
            self.unlocked_after_use.append(env)
            self._unlocking.append(self.unlock(env))
            return
        await self.unlock(env)
        self.unlocked_after_use.append(env)

    async def unlock_all(self) -> None:
        await asyncio.gather(*self._unlocking, self.unlock(*self._held))

    def unlock(self, *envs: Environment) -> "asyncio.Future[list[None]]":
        """Unlock environments: no longer held from now on (so _watch takes no lock's end for a
        loss); await the future returned to see the locks this run started end."""
        locks = {env: self._held.pop(env) for env in envs}
        return asyncio.gather(*(self._unlock(env, lock) for env, lock in locks.items()))

    async def _unlock(self, env: Environment, lock: workflow.ChildWorkflowHandle | None) -> None:
        info = workflow.info()
        unlock = UnlockInput(release_workflow_id=info.workflow_id, release_run_id=info.run_id)
        # By run ID where this run knows it: the unlock reaches that lock, not a later holder's.
        run_id = lock.first_execution_run_id if lock else None
        target = workflow.get_external_workflow_handle(self.lock_id(env), run_id=run_id)
        try:
            await target.signal(UNLOCK, unlock)
            if lock:
                await lock
        except Exception as err:  # ended already: by someone else, noticed by _watch
            workflow.logger.warning(f"{info.workflow_id}: {self.lock_id(env)} had ended: {err}")

    # --- The other doors (read later): a deploy a lock no longer covers, a lock ended by
    # someone else, and a reset's new run, which adopts the locks of the run it replaced.

    async def refuse_if_others_deploy(self, release: Release) -> None:
        """Refuse the release (EnvironmentBusy) if another release's deploy still changes one of
        the environments it holds (a deploy whose lock a person terminated finishes its change)."""
        if not workflow.patched(LOCK_RULES_PATCH):
            return  # a release started before the rules: it replays without the lookup
        info = workflow.info()
        others = DeploysInFlightInput(
            environments=_needed(release),
            task_queue=info.task_queue,
            release_workflow_id=info.workflow_id,
        )
        summary = f"find deploys of other releases into what {release.key} holds"
        in_flight = await quick_activity(lookups.find_deploys_in_flight, others, summary)
        if in_flight:
            message = (
                f"Release {release.key} was refused: {', '.join(in_flight)} still "
                f"{'changes' if len(in_flight) == 1 else 'change'} its environments, though "
                f"no release holds them (a lock was ended by hand). Run {release.key} again "
                "once they have closed."
            )
            workflow.logger.warning(message)
            raise ApplicationError(message, type=ErrorType.ENVIRONMENT_BUSY, non_retryable=True)

    async def confirm_after_reset(self, env: Environment) -> None:
        """In a run that a reset made, before the wave into env: confirm that the locks it needs
        (env's, and its source's) are still this release's (the replaced run may have let them
        go). Behind a patch per environment: the history the reset copied replays without it."""
        if not _is_reset_run():
            return  # the release has held its locks throughout
        if not workflow.patched(f"{RESET_CHECK_PATCH}-{env.value}"):
            return  # replaying what the run that the reset replaced did
        release_id = workflow.info().workflow_id
        for needed in [env, env.previous()]:
            if needed in self._held and not self.lost:
                holder = await self._holder(needed, f"confirm that {release_id} still holds")
                if holder != release_id:
                    now = f"is held by {holder} now" if holder else "is free now"
                    how = f"was let go by the run that a reset replaced, and {now}"
                    self._lose(needed, how)

    async def _watch(self, env: Environment, lock: workflow.ChildWorkflowHandle) -> None:
        """Notice the lock ending while the release still holds it: someone else ended it."""
        how = (
            "was let go by the run that a reset replaced"  # the server told this run of it
            if _is_reset_run()
            else "was unlocked by someone else while the release held it"
        )
        try:
            await lock
        except Exception as err:  # the lock was terminated (or failed): the cause says which
            how = f"was ended by someone else while the release held it ({root_message(err)})"
        else:
            if _is_reset_run() and self._held.get(env) is lock:
                # A reset run redoes the workflow task that let a lock it held go, and may hear
                # of the close in that same task: let the task's own work (the unlock) run first.
                # (A condition is checked once all else ready has run; no command, no timer.)
                await workflow.wait_condition(lambda: True)
        if self._held.get(env) is lock and not self.lost:
            self._lose(env, how)
            self.on_lost()

    def _lose(self, env: Environment, how: str) -> None:
        """Say that the release lost env's lock (how: what happened to it), and let it be."""
        del self._held[env]
        self.lost = (
            f"{env.value} was lost: its lock {self.lock_id(env)} {how}. The release started "
            "nothing more; run it again to finish it"
        )
        workflow.logger.error(f"{workflow.info().workflow_id}: {self.lost}")


def _needed(release: Release) -> list[Environment]:
    """The environments a release holds: those it deploys to, and the one it is fed from."""
    source = release.environments[0].previous()
    return [source, *release.environments] if source else [*release.environments]


def _refusal(release: Release, held: list[tuple[Environment, str]]) -> ApplicationError:
    """The error that refuses release, naming the environments in use and their holder."""
    names = ", ".join(env.value for env, _ in held)
    holder = held[0][1]
    if holder == workflow.info().workflow_id:  # a run of it that ended, not the run a reset left
        in_use = (
            f"in use by an earlier run of {release.key}, which ended while its deploys were "
            f"changing them: they finish that change first. Run {release.key} again in a moment."
        )
    elif holder:
        in_use = (
            f"in use by release {holder}, which has not let it go yet. Run {release.key} again "
            f"once {holder} has finished."
        )
    else:
        in_use = f"in use a moment ago. Run {release.key} again."
    workflow.logger.warning(f"{release.key}: refused: {names} {in_use}")
    return ApplicationError(
        f"Release {release.key} was refused: {names} {in_use}",
        type=ErrorType.ENVIRONMENT_BUSY,
        non_retryable=True,
    )


def _is_reset_run() -> bool:
    """Whether this run of the release is one a reset made (a reset keeps the first run)."""
    info = workflow.info()
    return info.run_id != info.first_execution_run_id


# --- The lock: it holds its environment until its release lets go ----------------------------
class _Verdict(Enum):
    """What an unlock or a cancel means to a lock."""

    NOW = "its release let go, its deploys there closed: the lock ends now"
    AFTER_ITS_DEPLOYS = "the lock ends once its release's deploys there have closed"
    ITS_RELEASE_ENDED = "terminated or timed out: the same, then the lock records the ending"
    HOLD = "refused: the lock goes on holding"


# Pinned: a child of its release, it runs the release's version; it lives no longer than the
# release's deploys, so it never outlives the version it started on by long.
@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class EnvironmentLockWorkflow:
    """Holds one environment for one release (its parent) until the release unlocks it, or has
    ended and its deploys into the environment have closed."""

    @workflow.init
    def __init__(self, lock: EnvironmentLock) -> None:
        parent = workflow.info().parent
        # The release that holds it; a lock started by hand, not by a release (as tests hold
        # one), is held for its release key.
        self._holder = parent.workflow_id if parent else lock.release_key
        self._unlocks: list[UnlockInput] = []  # received, in order, not yet judged

    @workflow.run
    async def run(self, lock: EnvironmentLock) -> None:
        if not workflow.patched(LOCK_RULES_PATCH):
            await workflow.wait_condition(lambda: bool(self._unlocks))
            return
        verdict = await self._asked_to_let_go()
        while verdict is _Verdict.HOLD:
            verdict = await self._asked_to_let_go()
        if verdict is not _Verdict.NOW:
            await _all_closed(lock.deploys)
        if verdict is _Verdict.ITS_RELEASE_ENDED:
            await _record_ending(lock)  # its release ran no code of its own to record it

    @workflow.signal(dynamic=True)
    def signalled(self, name: str, args: Sequence[RawValue]) -> None:
        """Any signal: anyone can send one to a lock, so it reads the input itself rather than
        have the SDK log a traceback for one it cannot decode. Only UNLOCK from the holder counts
        (a lock from before the rules takes any UNLOCK, as it did then)."""
        request = _unlock_in(args) if name == UNLOCK else None
        if name == UNLOCK and not workflow.patched(LOCK_RULES_PATCH):
            self._unlocks.append(request or UnlockInput())
        elif request is not None and request.release_workflow_id == self._holder:
            self._unlocks.append(request)
        else:
            workflow.logger.warning(
                f"{workflow.info().workflow_id}: {shown(name)[:40]} ignored: it is held by "
                f"{self._holder}, and only that release lets it go"
            )

    async def _asked_to_let_go(self) -> "_Verdict":
        """Wait for the next unlock or a cancel, and judge it."""
        parent = workflow.info().parent
        if await self._unlocked_or_cancelled():
            run_id = self._unlocks.pop(0).release_run_id
            if parent is None or run_id == parent.run_id:
                return _Verdict.NOW
            # Another run of its release (a reset makes one), or a forged unlock.
            runs = RunsInput(workflow_id=self._holder, run_id=run_id, of_run_id=parent.run_id)
            if await quick_activity(
                lookups.is_run_of_release, runs, f"ask whether run {run_id} is its release's"
            ):
                return _Verdict.AFTER_ITS_DEPLOYS
            refusal = f"unlock ignored: {run_id or '(no run)'} is no run of {self._holder}"
        elif parent is None or not await self._release_still_runs(parent.run_id):
            return _Verdict.ITS_RELEASE_ENDED  # cancelled once its release had ended
        else:
            refusal = f"cancel refused: release {self._holder} holds it, and only it lets go"
        workflow.logger.warning(f"{workflow.info().workflow_id}: {refusal}")
        return _Verdict.HOLD

    async def _unlocked_or_cancelled(self) -> bool:
        """Wait for an unlock that names the holder (True) or a cancel request (False)."""
        try:
            await workflow.wait_condition(lambda: bool(self._unlocks))
        except asyncio.CancelledError:
            return False
        return True

    async def _release_still_runs(self, run_id: str) -> bool:
        release = WorkflowRef(workflow_id=self._holder, run_id=run_id)
        summary = f"ask whether {self._holder} still runs"
        return bool(await quick_activity(lookups.release_run_now, release, summary))


def _unlock_in(args: Sequence[RawValue]) -> UnlockInput | None:
    """The unlock a signal's input asks for; None if it is not an unlock of the right shape."""
    if len(args) != 1:
        return None
    try:
        return workflow.payload_converter().from_payload(args[0].payload, UnlockInput)
    except Exception:  # any input at all: a string, a number, a forged object
        return None


async def _record_ending(lock: EnvironmentLock) -> None:
    parent = workflow.info().parent
    if parent is None:
        return  # a lock started by hand: no release to record
    ending = EndingInput(
        release_key=lock.release_key,
        release_workflow_id=parent.workflow_id,
        release_run_id=parent.run_id,
    )
    await quick_activity(record_ending, ending, f"record how {lock.release_key} ended")


async def _all_closed(workflow_ids: list[str]) -> None:
    """Wait until each workflow (the latest run of each ID) has closed."""
    await asyncio.gather(
        *(
            workflow.execute_activity(
                lookups.wait_until_closed,
                WorkflowRef(workflow_id=workflow_id),
                summary=f"wait for {workflow_id} to close",
                start_to_close_timeout=CLOSE_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=5),
            )
            for workflow_id in workflow_ids
        )
    )
