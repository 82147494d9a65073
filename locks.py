"""Environment locks: two releases never deploy into one environment at once.

A lock is a workflow (EnvironmentLockWorkflow) whose ID names the environment. Temporal runs one
workflow per ID at a time, so starting it is taking the lock, and it ends when its release
unlocks it. It is the release's child, terminated with it (the parent close policy), so a lock
never outlives the release that holds it, whatever happens to workers. (A reset is the one
exception, as Temporal applies no parent close policy then: find_lock_holder ends such a lock.)
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities import find_lock_holder
    from search_attributes import for_lock
    from shared import (
        WORKFLOW_TASK_TIMEOUT,
        Environment,
        EnvironmentLock,
        ErrorType,
        LockHolderInput,
        Release,
    )

# Asking the server who holds a lock is one quick call.
LOOKUP_TIMEOUT = timedelta(seconds=30)


@workflow.defn
class EnvironmentLockWorkflow:
    """Holds one environment for one release until the release unlocks it."""

    def __init__(self) -> None:
        self._unlocked = False

    @workflow.run
    async def run(self, lock: EnvironmentLock) -> None:
        await workflow.wait_condition(lambda: self._unlocked)

    @workflow.signal
    def unlock(self) -> None:
        self._unlocked = True


class EnvironmentLocks:
    """The locks one release holds.

    scope: which set of environments the locks guard ("" for the demo's own; tests and
    benchmarks give each demo root its own, so they never lock one another out)."""

    def __init__(self, scope: str) -> None:
        self._scope = scope
        # Each lock held (None: one the run that a reset replaced started, adopted by this run).
        self._held: dict[Environment, workflow.ChildWorkflowHandle | None] = {}
        self.unlocked_after_use: list[Environment] = []

    async def take_all(self, release: Release) -> None:
        """Lock every environment the release deploys to or is fed from, or refuse the release.

        A release that finds an environment in use by another release is refused at once,
        naming that release, rather than queued: the person starting it decides when to run it
        again, and the environment's state is checked afresh when it does.

        Raises:
            ApplicationError: EnvironmentBusy, non-retryable; the release holds nothing then.
        """
        source = release.environments[0].previous()
        needed = [source, *release.environments] if source else [*release.environments]
        locks = await asyncio.gather(*(self._lock(release, env) for env in needed))
        self._held = {env: lock for env, lock in zip(needed, locks, strict=True) if lock}
        held_by_others = await self._take_busy(
            release, [env for env in needed if env not in self._held]
        )
        if held_by_others:
            await self.unlock(*self._held)
            raise _refusal(release, held_by_others)

    async def _take_busy(
        self, release: Release, busy: list[Environment]
    ) -> list[tuple[Environment, str]]:
        """Take what is free by now, adopt what this release's replaced run holds; return the
        environments another release holds, with its ID ("" if it just let go)."""
        holders = await asyncio.gather(
            *(
                workflow.execute_activity(
                    find_lock_holder,
                    LockHolderInput(lock_workflow_id=self.lock_id(env)),
                    summary=f"find which release holds {env.value}",
                    start_to_close_timeout=LOOKUP_TIMEOUT,
                )
                for env in busy
            )
        )
        held_by_others = []
        for env, holder in zip(busy, holders, strict=True):
            if holder == workflow.info().workflow_id:
                self._held[env] = None  # held by the run of this release that a reset replaced
            elif not holder and (lock := await self._lock(release, env)):
                self._held[env] = lock  # free again by now
            else:
                held_by_others.append((env, holder))
        return held_by_others

    async def _lock(
        self, release: Release, env: Environment
    ) -> workflow.ChildWorkflowHandle | None:
        """Take the environment's lock; None if another release holds it."""
        try:
            return await workflow.start_child_workflow(
                EnvironmentLockWorkflow.run,
                EnvironmentLock(release_key=release.key, environment=env),
                id=self.lock_id(env),
                static_summary=f"hold {env.value} for {release.key}",
                search_attributes=for_lock(release.key, env),
                task_timeout=WORKFLOW_TASK_TIMEOUT,
                # A lock is free again once its holder closed it, and dies with its release.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                parent_close_policy=ParentClosePolicy.TERMINATE,
            )
        except WorkflowAlreadyStartedError:
            return None

    def lock_id(self, env: Environment) -> str:
        """The lock's workflow ID: lock.QC, or lock.QC.<scope>."""
        return f"lock.{env.value}{'.' + self._scope if self._scope else ''}"

    async def unlock_after_use(self, env: Environment | None) -> None:
        """Unlock env, which the release no longer needs, if it holds it."""
        if env in self._held:
            await self.unlock(env)
            self.unlocked_after_use.append(env)

    async def unlock_all(self) -> None:
        await self.unlock(*self._held)

    async def unlock(self, *envs: Environment) -> None:
        """Unlock environments, and see the locks this run started end. (The signal goes by
        workflow ID, so it also reaches a lock that a run replaced by a reset started.)"""
        locks = {env: self._held.pop(env) for env in list(envs)}
        await asyncio.gather(
            *(
                workflow.get_external_workflow_handle(self.lock_id(env)).signal(
                    EnvironmentLockWorkflow.unlock
                )
                for env in locks
            )
        )
        await asyncio.gather(*(lock for lock in locks.values() if lock))


def _refusal(release: Release, held: list[tuple[Environment, str]]) -> ApplicationError:
    """The error that refuses release, naming the environments in use and their holder."""
    names = ", ".join(env.value for env, _ in held)
    holder = held[0][1]
    in_use = (
        f"in use by release {holder}, which is still running. Run {release.key} again "
        f"once {holder} has finished."
        if holder
        else f"in use a moment ago. Run {release.key} again."
    )
    workflow.logger.warning(f"{release.key}: refused: {names} {in_use}")
    return ApplicationError(
        f"Release {release.key} was refused: {names} {in_use}",
        type=ErrorType.ENVIRONMENT_BUSY,
        non_retryable=True,
    )
