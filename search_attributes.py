"""Search attributes: what the Web UI, and `temporal workflow list --query`, find any release,
deploy or lock by (demos.md, "Find any release"). A namespace indexes only those it has
registered: the demo's servers start with them (server_flags), and the worker registers those a
server lacks (register_missing).
"""

import asyncio

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from shared import Deployment, DeployResult, Environment, FoundDeploy

RELEASE_KEY = SearchAttributeKey.for_keyword("ReleaseKey")  # releases, deploys and locks
RELEASE_OUTCOME = SearchAttributeKey.for_keyword("ReleaseOutcome")  # RUNNING, then an Outcome
DEPLOY_ENVIRONMENT = SearchAttributeKey.for_keyword("DeployEnvironment")  # deploys and locks
DEPLOY_COMPONENT = SearchAttributeKey.for_keyword("DeployComponent")  # deploys
ALL = (RELEASE_KEY, RELEASE_OUTCOME, DEPLOY_ENVIRONMENT, DEPLOY_COMPONENT)
RUNNING = "RUNNING"


def for_lock(release_key: str, env: Environment) -> TypedSearchAttributes:
    key = SearchAttributePair(RELEASE_KEY, release_key)
    return TypedSearchAttributes([key, SearchAttributePair(DEPLOY_ENVIRONMENT, env.value)])


def for_deploy(deployment: Deployment) -> TypedSearchAttributes:
    found_by = for_lock(deployment.release_key, deployment.environment)
    return found_by.updated(SearchAttributePair(DEPLOY_COMPONENT, deployment.component))


def deploys_query(env: Environment | None, component: str | None) -> str:
    """The visibility query for the deploys to env and/or of component."""
    clauses = ["WorkflowType='DeployWorkflow'"]
    if env is not None:
        clauses.append(f"{DEPLOY_ENVIRONMENT.name}='{env.value}'")
    if component is not None:
        clauses.append(f"{DEPLOY_COMPONENT.name}='{_quoted(component)}'")
    return " AND ".join(clauses)


def running_deploys_query(environments: list[Environment], task_queue: str) -> str:
    """The visibility query for the deploys still running into any of environments on task_queue."""
    names = ", ".join(f"'{env.value}'" for env in environments)
    return (
        f"{deploys_query(None, None)} AND ExecutionStatus='Running' AND "
        f"TaskQueue='{_quoted(task_queue)}' AND {DEPLOY_ENVIRONMENT.name} IN ({names})"
    )


def _quoted(value: str) -> str:
    """value inside a query's single quotes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def server_flags() -> list[str]:
    """`temporal server start-dev` flags that register every attribute."""
    return [flag for key in ALL for flag in ("--search-attribute", f"{key.name}=Keyword")]


class SearchAttributesUnusable(Exception):
    """The namespace lacks attributes and they could not be added, or has one of another type
    than Keyword: the message says why, and what to run instead."""


async def register_missing(client: Client) -> list[str]:
    """Register the attributes the client's namespace lacks; return their names.

    Raises SearchAttributesUnusable if the server refuses to add them (Temporal Cloud adds them
    only through its own tools), or has one of another type (every workflow task setting it would
    fail); RPCError if Temporal does not answer (UNAVAILABLE).
    """
    namespace, names = client.namespace, [key.name for key in ALL]
    keyword = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        registered = {**listed.custom_attributes, **listed.system_attributes}
        if wrong := {n: registered[n] for n in names if registered.get(n, keyword) != keyword}:
            raise SearchAttributesUnusable(_wrong_types(namespace, wrong))
        if missing := [name for name in names if name not in registered]:
            added = {name: keyword for name in missing}
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=added)
            )
    except RPCError as err:
        if err.status == RPCStatusCode.UNAVAILABLE:
            raise  # Temporal is away: outages.py says so
        if err.status in (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED):
            raise SearchAttributesUnusable(_what_to_run(namespace, names)) from None
        raise SearchAttributesUnusable(
            f"could not register the search attributes in namespace {namespace!r}: {err.message}"
        ) from None
    return missing


def _wrong_types(namespace: str, wrong: dict[str, IndexedValueType.ValueType]) -> str:
    kinds = ", ".join(f"{name} is {_type_name(value)}" for name, value in wrong.items())
    names = " ".join(f"--name {name}" for name in wrong)
    return (
        f"the demo needs its search attributes to be of type Keyword, and in namespace "
        f"{namespace!r} {kinds}: remove them (`temporal operator search-attribute remove "
        f"{names}`), then start the worker again: it registers them as Keywords"
    )


def _type_name(value: IndexedValueType.ValueType) -> str:
    """A search attribute type as the CLI spells it: Int, Text, KeywordList..."""
    return IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")


def _what_to_run(namespace: str, names: list[str]) -> str:
    flags = " ".join(f"--name {name}" for name in names)
    cloud = " ".join(f"--sa {name}=Keyword" for name in names)
    return (
        f"this server does not let the worker register the search attributes {', '.join(names)} "
        f"in namespace {namespace!r}: have its admin run `temporal operator search-attribute "
        f"create {flags} --type Keyword` (Temporal Cloud: `tcld namespace search-attributes add "
        f"-n {namespace} {cloud}`), then start the worker again"
    )


async def find_deploys(
    client: Client, env: Environment | None, component: str | None, limit: int
) -> list[FoundDeploy]:
    """The latest deploys to env and/or of component, newest first, each with how it ended and
    how its release ended."""
    runs = [run async for run in client.list_workflows(deploys_query(env, component), limit=limit)]
    outcomes = await _release_outcomes(client, [run.parent_run_id for run in runs])
    endings = await asyncio.gather(*(_deploy_ending(client, run) for run in runs))
    return [
        FoundDeploy(
            started=run.start_time,
            release_key=run.typed_search_attributes.get(RELEASE_KEY) or "?",
            environment=run.typed_search_attributes.get(DEPLOY_ENVIRONMENT) or "?",
            component=run.typed_search_attributes.get(DEPLOY_COMPONENT) or "?",
            ending=ending,
            release_outcome=outcomes.get(run.parent_run_id or "", "?"),
        )
        for run, ending in zip(runs, endings, strict=True)
    ]


async def _release_outcomes(client: Client, run_ids: list[str | None]) -> dict[str, str]:
    """Each release run's ReleaseOutcome, by run ID."""
    wanted = sorted({run_id for run_id in run_ids if run_id})
    if not wanted:
        return {}
    listed = ", ".join(f"'{_quoted(run_id)}'" for run_id in wanted)
    return {
        run.run_id: run.typed_search_attributes.get(RELEASE_OUTCOME) or "?"
        async for run in client.list_workflows(f"RunId IN ({listed})")
    }


async def _deploy_ending(client: Client, run: WorkflowExecution) -> str:
    """How a deploy ended, in a word or two: deployed, rolled back to 1.0, failed, running..."""
    if run.status != WorkflowExecutionStatus.COMPLETED:
        return (run.status.name if run.status else "?").lower().replace("_", " ")
    handle = client.get_workflow_handle(run.id, run_id=run.run_id, result_type=DeployResult)
    result = await handle.result()
    return f"rolled back to {result.previous or 'none'}" if result.rolled_back else "deployed"
