"""The release system the demo orchestrates: plain, synchronous, file-based, no Temporal.

What it reads and writes under the demo root is README's "The files contract". Every step is
idempotent by validation: it first checks whether its end state already holds and, if so,
changes nothing and writes no ledger line. A step that changes something asks a failure
injector (utils.py) just before its change and just after it (the retry then finds the change
made); a step that only reads asks once. An injector's InjectedFailure is transient: retried.
"""

import json
import logging
import os
from datetime import UTC, datetime

from pydantic import ValidationError

import utils
from artifacts import (
    artifact_content,
    built_digest,
    check_holds,
    check_provenance,
    file_digest,
    held_versions,
)
from catalog import component_info, load_catalog, load_release
from files import (
    artifact_path,
    atomic_write,
    config_path,
    demo_root,
    deployed_path,
    kept_config_path,
    no_links,
    notifications_path,
    previous_dir,
    read_json,
    read_text,
    sha256,
    where,
)
from ledger import (
    append_once,
    commit,
    exclusive,
    ledger_line,
)
from shared import (
    ArtifactRef,
    CheckPromotionInput,
    DeployArtifactInput,
    Deployment,
    Environment,
    EnvironmentVersions,
    HeldIn,
    Holdings,
    HoldingsInput,
    NotifyInput,
    Release,
    ReleaseError,
    ReleaseInput,
    SourceMissing,
    Unhealthy,
    UpdateConfigInput,
    VerificationError,
    VerifyInput,
    version_per_component,
)
from utils import (
    isErrorNever,
    isErrorRarely,
    isErrorSometimes,
    maybe_fail,
    raise_planted_bug,
    unhealthy,
)

_log = logging.getLogger(__name__)


# --- The steps of a release: each checks whether its end state holds before it changes anything ---


def gather_release(request: ReleaseInput) -> Release:
    """The first step of every release: load it from the catalog (ReleaseError if it is bad)."""
    raise_planted_bug("gather")
    maybe_fail(isErrorRarely, f"while opening the catalog for {request.release_key}")
    release = load_release(request.release_key).model_copy(
        update={"own_workers": utils.own_workers()}
    )
    _log.info("%s: gathered: %s", release.key, release.plan())
    return release


def check_promotion(request: CheckPromotionInput) -> EnvironmentVersions:
    """Refuse (ReleaseError), before any change, a release whose first environment cannot be fed
    (DEV builds what it lacks); return what its environments hold: {env: {component: version}}."""
    release = request.release
    raise_planted_bug("check")
    maybe_fail(isErrorNever, f"while checking what {release.key} promotes")
    source = release.environments[0].previous()
    # As an environment's own worker told (request.held), else as its folder says; an own
    # worker's environment that was not asked is left out: the release asks it before it deploys.
    holdings = {
        env: request.held[env] if env in request.held else _holdings(env, list(release.versions))
        for env in [*release.environments, *([source] if source else [])]
        if env in request.held or env not in release.own_workers
    }
    before = {
        env: version_per_component(holdings[env], release.versions)
        for env in release.environments
        if env in holdings
    }
    if source is not None:
        _check_sources(release, source, holdings[source])
    _log.info("%s: promotion %s checked", release.key, release.route())
    return before


def held_in(request: HoldingsInput) -> HeldIn:
    """What one environment holds (each copy's version and SHA-256), asked of its own worker,
    which alone has its files; with that worker's demo root, so a worker of another is refused."""
    held = _holdings(request.environment, request.components)
    return HeldIn(root=str(demo_root().resolve()), held=held)


def _holdings(env: Environment, components: list[str]) -> Holdings:
    return {
        component: {
            version: sha256(read_text(deployed_path(env, component, version)) or "")
            for version in held_versions(env, component)
        }
        for component in components
    }


def _check_sources(release: Release, source: Environment, held: Holdings) -> None:
    """Refuse the release unless source (held: what it holds) and the artifact store, which
    every deploy fetches from, hold the genuine build of every version it promotes."""
    refused = f"Release {release.key} cannot be promoted to {release.environments[0].value}"
    holds = "; ".join(
        f"{source.value} holds {c} {'+'.join(sorted(held.get(c, {}))) or 'nothing'}, not {v}"
        for c, v in release.versions.items()
        if list(held.get(c, {})) != [v]
    )
    if holds:
        raise ReleaseError(f"{refused}: {holds}. {_feeder_hint(release, source)}")
    for component, version in release.versions.items():
        path = deployed_path(source, component, version)
        check_provenance(path, held[component][version], component, version)
    for component, version in release.versions.items():
        path = artifact_path(component, version)
        digest = file_digest(path)
        if digest != built_digest(component, version):
            raise ReleaseError(
                f"{refused}: {where(path)} is "
                f"{'missing' if digest is None else 'not what its build makes'} in the artifact "
                f"store, which every deploy fetches from. Run a release that starts in DEV with "
                f"{component} {version} (it builds it again)."
            )


def _feeder_hint(release: Release, source: Environment) -> str:
    """Name a few releases in the catalog that would put the needed versions into source."""
    feeders = []
    for entry in load_catalog().releases:  # read once: a catalog can hold thousands of releases
        try:
            candidate = Release.model_validate(entry)
        except ValidationError:
            continue
        if source in candidate.environments and candidate.versions == release.versions:
            feeders.append(candidate.key)
    if not feeders:
        return f"Promote these versions to {source.value} first."
    more = f" (or one of {len(feeders) - 3} more)" if len(feeders) > 3 else ""
    return f"Run {' or '.join(feeders[:3])}{more} first."


def build_artifact(deployment: Deployment) -> bool:
    """Build the component version into artifactory unless it holds it; return whether it built.
    Builds are reproducible (same component, version and source, same bytes)."""
    raise_planted_bug("build")
    component, version = deployment.component, deployment.version
    with exclusive("artifactory", f"{component}-{version}"):
        path = artifact_path(component, version)
        content = artifact_content(component, version)
        if read_text(path) == content:
            return _report(deployment, "build", changed=False)
        maybe_fail(isErrorSometimes, f"before building {component} {version}")
        commit(path, content, ledger_line(deployment, "build") | {"env": None})
        maybe_fail(isErrorRarely, f"after building {component} {version}")
        return _report(deployment, "build", "built into artifactory")


def fetch_artifact(deployment: Deployment) -> ArtifactRef:
    """Gather the version's build from the artifact store: SourceMissing (transient) if it is not
    there, ReleaseError if it is not the build (tampered with)."""
    raise_planted_bug("fetch_artifact")
    component, version, env = deployment.component, deployment.version, deployment.environment
    maybe_fail(isErrorRarely, f"while fetching {component} {version} for {env.value}")
    path = artifact_path(component, version)
    digest = file_digest(path)
    if digest is None:
        raise SourceMissing(
            f"{where(path)} is missing from the artifact store: restore it, or run a release "
            f"that starts in DEV with {component} {version} (it builds it again)."
        )
    check_provenance(path, digest, component, version)
    source = where(path.parent)
    _log.info("%s: found in %s", deployment.log_name("fetch artifact"), source)
    return ArtifactRef(source=source, sha256=digest)


def fetch_config(deployment: Deployment) -> dict[str, str | int]:
    """The config a component version should have in its environment, from the catalog."""
    raise_planted_bug("fetch_config")
    component, env = deployment.component, deployment.environment
    maybe_fail(isErrorNever, f"while fetching the {env.value} config of {component}")
    catalog = load_catalog()
    info = component_info(catalog, component)
    settings = catalog.environments[env]
    _log.info("%s: gathered", deployment.log_name("fetch config"))
    return {
        "component": component,
        "version": deployment.version,
        "environment": env.value,
        "repository": info.repository,
        "team": info.team,
        "replicas": settings.replicas,
        "log_level": settings.log_level,
    }


def deploy_artifact(request: DeployArtifactInput) -> bool:
    """Deploy the gathered artifact, moving aside the version it replaces (for a rollback).
    Returns False, changing nothing, if the environment already holds exactly this artifact."""
    raise_planted_bug("deploy")
    d = request.deployment
    with exclusive(d.environment.value, d.component):
        others = [v for v in held_versions(d.environment, d.component) if v != d.version]
        current = read_text(deployed_path(d.environment, d.component, d.version))
        if current is not None and sha256(current) == request.artifact.sha256 and not others:
            return _report(d, "deploy", changed=False)
        where = f"{d.component} {d.version} to {d.environment.value}"
        maybe_fail(isErrorSometimes, f"before deploying {where}")
        content = _gathered_content(request)
        if current != content:  # else only the replaced version is left to move aside
            target = deployed_path(d.environment, d.component, d.version)
            commit(target, content, ledger_line(d, "deploy") | _replacing(d, others))
        _keep_previous(d.environment, d.component, others)
        maybe_fail(isErrorSometimes, f"after deploying {where}")
        return _report(d, "deploy", "deployed")


def _gathered_content(request: DeployArtifactInput) -> str:
    """The artifact at its source, unchanged since it was gathered."""
    source = artifact_path(request.deployment.component, request.deployment.version)
    content = read_text(source)
    if content is None:
        raise SourceMissing(f"{where(source)} disappeared before the deploy")
    if sha256(content) != request.artifact.sha256:
        raise ReleaseError(
            f"{where(source)} changed after it was gathered for "
            f"{request.deployment.environment.value}; run the release again"
        )
    return content


def _replacing(d: Deployment, others: list[str]) -> dict[str, str | None]:
    """What a deploy replaces, for its ledger line, which a rollback checks what it puts back
    against: the version previous_version will find kept (the last by file name), and the
    SHA-256 of the config the environment has now."""
    return {
        "replaced": max(others, key=lambda v: f"{d.component}-{v}.txt", default=None),
        "replaced_config": file_digest(config_path(d.environment, d.component)),
    }


def _keep_previous(env: Environment, component: str, replaced: list[str]) -> None:
    """Move the versions a deploy replaced (normally one) aside, with their config: a rollback's."""
    if not replaced:
        return
    keep = no_links(previous_dir(env))
    keep.mkdir(parents=True, exist_ok=True)
    for stale in keep.glob(f"{component}-*.txt"):
        stale.unlink()
    config = read_text(config_path(env, component))
    if config is not None:
        atomic_write(kept_config_path(env, component), config)
    for old in replaced:
        os.replace(deployed_path(env, component, old), keep / f"{component}-{old}.txt")


def update_config(request: UpdateConfigInput) -> bool:
    """Write the component's config unless it reads exactly that; return whether it wrote it."""
    raise_planted_bug("configure")
    d = request.deployment
    with exclusive(d.environment.value, d.component):
        path = config_path(d.environment, d.component)
        if read_json(path) == request.config:
            return _report(d, "configure", changed=False)
        where = f"{d.component} {d.version} in {d.environment.value}"
        maybe_fail(isErrorRarely, f"before configuring {where}")
        text = json.dumps(request.config, indent=2, sort_keys=True) + "\n"
        commit(path, text, ledger_line(d, "configure"))
        maybe_fail(isErrorRarely, f"after configuring {where}")
        return _report(d, "configure", "config updated")


def verify_deploy(request: VerifyInput) -> None:
    """Check that the environment holds exactly this version, byte for byte its build (else
    ReleaseError: tampered with, no retry makes it genuine) and what was gathered, with a config
    that names it (else VerificationError), and that it is healthy (else Unhealthy)."""
    raise_planted_bug("verify")
    d = request.deployment
    component, version, env = d.component, d.version, d.environment
    maybe_fail(isErrorRarely, f"while verifying {component} {version} in {env.value}")
    check_holds(env, component, [version], "")
    path = deployed_path(env, component, version)
    digest = file_digest(path)
    check_provenance(path, digest, component, version)
    if digest != request.artifact.sha256:
        raise VerificationError(f"{component} {version} in {env.value} does not match its artifact")
    config = read_json(config_path(env, component)) or {}
    if config.get("version") != version or config.get("environment") != env.value:
        raise VerificationError(
            f"the {env.value} config of {component} names version {config.get('version')!r}, "
            f"expected {version!r}"
        )
    if unhealthy() == (component, env.value):
        raise Unhealthy(f"{component} {version} in {env.value} failed its health check")
    _log.info("%s: verified", d.log_name("verify"))


def notify(request: NotifyInput) -> bool:
    """Announce an event of a release run in database/notifications.jsonl, once per first run
    and event (a webhook's idempotency key: neither a retry nor a reset announces twice)."""
    raise_planted_bug("notify")
    maybe_fail(isErrorRarely, f"while announcing that {request.release.key} {request.event}")
    line = {
        "release_key": request.release.key,
        "run_id": request.release_run_id,
        "event": request.event,
        "message": request.message,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    announced = append_once(notifications_path(), line, ("run_id", "event"))
    _log.info(
        "%s: %s", request.log_name("notify"), "announced" if announced else "already announced"
    )
    return announced


def _report(deployment: Deployment, step: str, done: str = "", changed: bool = True) -> bool:
    """Say what a step did, or that it found its work done; return whether it changed anything."""
    _log.info(
        "%s: %s", deployment.log_name(step), done if changed else "already done, nothing to change"
    )
    return changed
