"""Announcements: a release tells who follows it what it reached (activities.notify: a line in
database/notifications.jsonl, a webhook's stand-in), in order, and without holding up its plan.
The plan decides when (ReleaseWorkflow._announce); this is how.
"""

from collections.abc import Callable

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityHandle

from steps import start_activity

with workflow.unsafe.imports_passed_through():
    import activities
    from shared import NotifyInput, Release, root_message

# The patch that made announcements go on beside the plan (a shorter critical path, measured in
# benchmarks/RESULTS.md), and announcing best-effort: a release's outcome never hangs on a message.
ANNOUNCE_BESIDE_PATCH = "announce-beside"


class Announcements:
    """The announcements of one release run; at most one goes on beside the plan at a time."""

    def __init__(self, stop_if_cancelled_or_lost: Callable[[], None]) -> None:
        # The release's check, so that an announcement starts nothing after a cancel.
        self._stop_if_cancelled_or_lost = stop_if_cancelled_or_lost
        self._going_on: tuple[str, ActivityHandle[bool]] | None = None  # release key, step

    async def announce(
        self, release: Release, point: str, event: str, message: str, demo_root: str
    ) -> None:
        """Announce an event, in order. Behind ANNOUNCE_BESIDE_PATCH, one after a wave (point: its
        environment) goes on beside the plan, and the next announcement, or the record, waits for
        it; the one at the end (point "end") is waited for."""
        announcement = NotifyInput(
            release=release,
            # Keyed by the release's first run, which a reset's new run shares: the new run
            # does not announce again what the run it replaced had announced.
            release_run_id=workflow.info().first_execution_run_id,
            event=event,
            message=message,
            demo_root=demo_root,
        )
        await self.finished()
        if point != "end":
            self._stop_if_cancelled_or_lost()  # that wait may have swallowed a cancel
        step = start_activity(
            activities.notify, announcement, f"announce that {release.key} {event}"
        )
        if not workflow.patched(ANNOUNCE_BESIDE_PATCH):
            await step  # as before the patch: an announcement that fails for good fails the release
        elif point == "end":
            await _best_effort(release.key, step)
        else:
            self._going_on = (release.key, step)

    async def finished(self) -> None:
        """Wait for the announcement going on beside the plan, if any."""
        going_on, self._going_on = self._going_on, None
        if going_on:
            await _best_effort(*going_on)


async def _best_effort(key: str, announcement: ActivityHandle[bool]) -> None:
    """Await an announcement. One that fails for good (its retries are for what passes) is
    logged, and the release goes on: what a release does and how it ends never hang on it."""
    try:
        await announcement
    except ActivityError as err:
        workflow.logger.warning(
            f"{key}: announcement failed, the release goes on: {root_message(err)}"
        )
