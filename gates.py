"""The waits between environments, both durable: a release's gate waits for a person to approve
or reject the environment it is about to deploy to; a soak waits a while after a deploy.

A person answers with an Update (ReleaseWorkflow.approve, reject or skip_soak); its validator
(check, check_skip) refuses a wrong or malformed answer before it enters the release's history.
"""

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from shared import (
        MAX_NAME_LENGTH,
        MAX_REASON_LENGTH,
        Decision,
        Environment,
        Release,
        SkippedSoak,
        Soak,
        approve_command,
        visible,
    )


class ApprovalGates:
    """The gates of one release: the one open now, if any, and every decision taken at them."""

    def __init__(self) -> None:
        self.open: Environment | None = None
        self.decisions: list[Decision] = []
        self._expires_at: datetime | None = None  # when the open gate expires, if it does

    @property
    def expires(self) -> str | None:
        return self._expires_at.isoformat() if self._expires_at else None

    async def wait(self, release: Release, env: Environment) -> Decision:
        """Open the gate before env and wait until a person decides, or until the release's
        approval_timeout_seconds have passed (a durable timer; None: no timer, it waits for as
        long as it takes): then the gate rejects itself."""
        self.open = env
        how = approve_command(release.key, env)
        limit = release.approval_timeout_seconds
        # Current details: the Web UI shows them (as Markdown) on the release's page.
        workflow.set_current_details(
            f"Waiting for approval before {env.value}. To approve: `{how}` (or `--reject` "
            "with `--reason TEXT`)"
        )
        workflow.logger.info(f"{release.key}: waiting for approval before {env.value}: {how}")
        if limit:
            self._expires_at = workflow.now() + timedelta(seconds=limit)
        expiry = f"approval before {env.value} expires after {limit} s" if limit else None
        try:
            await workflow.wait_condition(
                lambda: self.open is None, timeout=limit, timeout_summary=expiry
            )
        except TimeoutError:
            self._decided(env, approved=False, by="", reason=f"approval expired after {limit} s")
        finally:  # decided, expired or cancelled: no countdown is shown any more
            self._expires_at = None
        workflow.set_current_details("")
        decision = self.decisions[-1]
        verdict = "approved" if decision.approved else f"rejected ({decision.reason})"
        workflow.logger.info(f"{release.key}: {env.value} {verdict} by {decision.by or 'nobody'}")
        return decision

    def check(
        self, release_key: str, status: str, gate: Environment, by: str, reason: str | None
    ) -> None:
        """Refuse (ValueError, saying what to type instead) a decision that does not fit the gate
        open now. reason: None for an approval, which needs none."""
        if self.open is None:
            raise ValueError(f"Release {release_key} is not waiting for approval ({status})")
        if self._expires_at and workflow.now() >= self._expires_at:
            # Decided by the workflow's clock: the worker may see the expiry timer and a late
            # decision in either order, and the gate must say the same either way.
            raise ValueError(
                f"Release {release_key}: the approval before {self.open.value} expired at "
                f"{self._expires_at:%H:%M:%S} UTC, before this decision reached it; the release "
                "ends REJECTED. Run it again to deploy it"
            )
        if gate is not self.open:
            raise ValueError(
                f"Release {release_key} waits for approval before {self.open.value}, "
                f"not {gate.value}: say --gate {self.open.value} to decide that gate"
            )
        check_shown_text("--by", by, MAX_NAME_LENGTH, blank="say who decides: --by NAME")
        if reason is not None:
            check_shown_text("--reason", reason, MAX_REASON_LENGTH, blank="say why: --reason TEXT")

    def decide(self, release_key: str, approved: bool, by: str, reason: str) -> str:
        """Close the open gate with a person's decision (checked by check); say what was done."""
        assert self.open is not None  # the validator checked, at this same workflow time
        gate = self.open
        self._decided(gate, approved, by, reason)
        return (
            f"Release {release_key}: {gate.value} {'approved' if approved else 'rejected'} by {by}"
        )

    def _decided(self, gate: Environment, approved: bool, by: str, reason: str) -> None:
        self.open = None
        at = workflow.now().isoformat()
        self.decisions.append(
            Decision(environment=gate, approved=approved, by=by, reason=reason, at=at)
        )


class Soaks:
    """The soaks of one release: the one running now, if any, and those a person ended early."""

    def __init__(self) -> None:
        self.now: Soak | None = None
        self.skipped: list[SkippedSoak] = []

    async def wait(self, env: Environment, seconds: int) -> None:
        """Wait seconds on a durable timer, unless a person ends the soak first (skip)."""
        ends = workflow.now() + timedelta(seconds=seconds)
        self.now = Soak(environment=env, ends=ends.isoformat())
        try:
            summary = f"soak {env.value} for {seconds} s"
            await workflow.wait_condition(
                lambda: self.now is None, timeout=seconds, timeout_summary=summary
            )
        except TimeoutError:
            pass
        finally:  # ended, skipped or cancelled: no soak is shown or skippable any more
            self.now = None

    def check_skip(self, release_key: str, status: str, by: str) -> None:
        """Refuse (ValueError) to skip a soak that is not running, or has ended by the workflow's
        clock (as at a gate, whatever order the worker sees the timer and the Update in)."""
        if self.now is None:
            raise ValueError(f"Release {release_key} is not soaking an environment ({status})")
        if workflow.now() >= datetime.fromisoformat(self.now.ends):
            env = self.now.environment.value
            raise ValueError(
                f"Release {release_key}: the soak of {env} has ended already; nothing to skip"
            )
        check_shown_text("--by", by, MAX_NAME_LENGTH, blank="say who: --by NAME")

    def skip(self, release_key: str, by: str) -> str:
        """End the soak now (checked by check_skip), kept for the record; say what was done."""
        assert self.now is not None  # the validator checked
        env, self.now = self.now.environment, None
        self.skipped.append(SkippedSoak(environment=env, by=by, at=workflow.now().isoformat()))
        return f"Release {release_key}: soak of {env.value} skipped by {by}"


def check_shown_text(flag: str, text: str, limit: int, blank: str) -> None:
    """Refuse text a person gave with flag that is blank (saying blank) or that a terminal or the
    Web UI would not show as one plain line."""
    if not visible(text):  # blank, or drawn as nothing (fillers, zero-width characters)
        raise ValueError(blank)
    if len(text) > limit or not text.isprintable():
        raise ValueError(
            f"{flag} must be one line of printable text, at most {limit} characters "
            "(no control characters or escape codes)"
        )
