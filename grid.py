"""The progress grid: the state of each deploy of a release (component x environment), as the
release knows it, for the starter's screen (ReleaseWorkflow.progress) and the release record.
It serves the screen, not the plan: workflows.py marks it in one call where a state changes."""

import asyncio
from collections.abc import Awaitable

from temporalio.exceptions import is_cancelled_exception

from shared import Cell, CellState, Deployment, DeployResult, Environment, Release, root_message


class Grid:
    """The cells of a release: one per component and environment, PENDING until marked."""

    def __init__(self) -> None:
        self.cells: dict[Environment, dict[str, Cell]] = {}

    def lay_out(self, release: Release) -> None:
        self.cells = {env: {c: Cell() for c in release.versions} for env in release.environments}

    def mark(self, env: Environment, state: CellState, component: str | None = None) -> None:
        """Mark one cell of env (or the whole row)."""
        for name in [component] if component else list(self.cells.get(env, {})):
            self.cells[env][name] = Cell(state=state)

    async def follow(self, deployment: Deployment, deploy: Awaitable[DeployResult]) -> DeployResult:
        """Await a deploy; mark how it ends: done, rolled back, failed (with why) or cancelled."""
        env, component = deployment.environment, deployment.component
        try:
            deployed = await deploy
        except (Exception, asyncio.CancelledError) as err:
            if is_cancelled_exception(err):
                self.mark(env, CellState.CANCELLED, component)
            else:
                self.cells[env][component] = Cell(state=CellState.FAILED, error=root_message(err))
            raise
        self.mark(env, CellState.ROLLED_BACK if deployed.rolled_back else CellState.DONE, component)
        return deployed

    def final_states(self) -> dict[Environment, dict[str, CellState]]:
        """How each deploy ended; one that never ended was not reached."""
        unfinished = (CellState.PENDING, CellState.WAITING_FOR_APPROVAL, CellState.RUNNING)
        for row in self.cells.values():
            for component, cell in row.items():
                if cell.state in unfinished:
                    row[component] = Cell(state=CellState.NOT_REACHED)
        return {env: {c: cell.state for c, cell in row.items()} for env, row in self.cells.items()}
