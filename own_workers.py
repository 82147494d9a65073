"""Environments with a worker of their own (run_worker.py --env; README, DEMO_OWN_WORKERS): only
that worker has the environment's files, so the release asks it what the environment holds, and
runs the environment's steps on its task queue, with its demo root.
"""

from temporalio import workflow

from steps import all_of, start_activity

with workflow.unsafe.imports_passed_through():
    import activities
    from shared import (
        Environment,
        EnvironmentVersions,
        HeldIn,
        Holdings,
        HoldingsInput,
        Release,
        steps_queue,
        version_per_component,
    )


async def holdings(release: Release, envs: list[Environment]) -> dict[Environment, Holdings]:
    """What those of envs that have a worker of their own hold, asked of that worker (the
    others' folders are read where the check runs)."""
    return {env: told.held for env, told in (await _ask(release, envs)).items()}


async def where_steps_run(
    release: Release, env: Environment, demo_root: str
) -> tuple[str, str, EnvironmentVersions]:
    """The task queue ("": the release's) and demo root (by default demo_root) env's steps run
    with, and what env held before the release deploys there ({}: the check read it). For an
    environment with a worker of its own, that worker's, asked: its worker alone can tell."""
    if env not in release.own_workers:
        return "", demo_root, {}
    told = (await _ask(release, [env]))[env]
    before = version_per_component(told.held, release.versions)
    return steps_queue(workflow.info().task_queue, env), told.root, {env: before}


async def _ask(release: Release, envs: list[Environment]) -> dict[Environment, HeldIn]:
    """What each of envs with a worker of its own holds, and that worker's root."""
    asked = [env for env in envs if env in release.own_workers]
    queue = workflow.info().task_queue
    held = await all_of(
        *(
            start_activity(
                activities.held_in,
                HoldingsInput(environment=env, components=list(release.versions)),
                f"ask {env.value}'s worker what it holds",
                task_queue=steps_queue(queue, env),
            )
            for env in asked
        )
    )
    return dict(zip(asked, held, strict=True))
