"""The release management system that the demo orchestrates: plain, synchronous, file-based.

This module knows nothing of Temporal. It is the kind of system a release engineer would
otherwise drive by hand: a catalog of releases, an artifact repository, environments that hold
deployed artifacts and their configs, and a ledger of every change made.

Layout under the demo root (DEMO_ROOT if set, else this project's folder):

    database/catalog.json                     the release catalog (optional: else the project's)
    database/ledger.jsonl                     one JSON line per change actually made
    database/releases/<KEY>-<run id>.json     one record per finished release run
    artifactory/<component>-<version>.txt     built artifacts
    environments/<ENV>/<component>-<version>.txt       the deployed artifact
    environments/<ENV>/<component>.config.json         its configuration

Every step is idempotent by validation: it first checks whether its end state already holds
and, if so, changes nothing and writes no ledger line. Every file write is atomic (a temp file
in the same folder, then a rename). Each step asks a failure injector from utils.py whether to
fail: a step that changes something asks once just before its change and once just after it
(that second failure is the interesting one: the retry finds the change made and moves on); a
step that only reads asks once, before it reads. A person edits which injector a step calls to
make that step flakier or steadier.

Read top-down: the steps; how a change is made once and recorded once (_commit); reading what
the files hold. The catalog (catalog.py), where the files live and how they are read and
written (files.py), and the release records (records.py) are modules of their own.
"""

import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import utils
from catalog import component_info, listed, load_catalog, load_release
from files import (
    artifact_path,
    atomic_write,
    config_path,
    demo_root,
    deployed_path,
    environment_dir,
    json_or_none,
    ledger_path,
    lock_path,
    no_links,
    notifications_path,
    previous_dir,
    read_bytes,
    read_json,
    read_text,
    sha256,
    where,
    write_temp,
)
from shared import (
    COMPONENT_PATTERN,
    ENVIRONMENT_ORDER,
    VERSION_PATTERN,
    ArtifactRef,
    ChangeMadeTwice,
    CheckPromotionInput,
    DeployArtifactInput,
    Deployment,
    Environment,
    EnvironmentVersions,
    HeldIn,
    Holdings,
    HoldingsInput,
    InjectedFailure,
    NotifyInput,
    Release,
    ReleaseError,
    ReleaseInput,
    SourceMissing,
    Unhealthy,
    UpdateConfigInput,
    VerificationError,
    VerifyInput,
    VerifyRollbackInput,
)
from utils import isErrorNever, isErrorRarely, isErrorSometimes, raise_planted_bug, unhealthy

_log = logging.getLogger(__name__)

_ARTIFACT_FILE = re.compile(
    rf"^(?P<component>{COMPONENT_PATTERN})-(?P<version>{VERSION_PATTERN})\.txt$"
)


# --- The steps of a release: each checks whether its end state holds before it changes anything ---


def gather_release(request: ReleaseInput) -> Release:
    """The first step of every release: load it from the catalog.

    Raises:
        ReleaseError: see load_release.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("gather")
    _inject(isErrorRarely, f"while opening the catalog for {request.release_key}")
    release = load_release(request.release_key).model_copy(
        update={"own_workers": utils.own_workers()}
    )
    _log.info("%s: gathered: %s", release.key, release.plan())
    return release


def check_promotion(request: CheckPromotionInput) -> EnvironmentVersions:
    """Validate, before any change, that the release's first environment can be fed.

    DEV is fed by builds, so anything missing there is simply built. Any other environment is
    fed by the one before it, which must already hold every version the release promotes, each
    copy byte for byte what its build made.

    Returns:
        What each of the release's environments holds now, before the release:
        {env: {component: version, or None if the environment does not hold it}}.

    Raises:
        ReleaseError: the environment before the first one does not hold a needed version (the
            message names what it holds and a release to run first), or holds a copy that is
            not what its build made (the message names the file).
        InjectedFailure: a failure injector fired (transient; retry).
    """
    release = request.release
    raise_planted_bug("check")
    _inject(isErrorNever, f"while checking what {release.key} promotes")
    source = release.environments[0].previous()
    # What each environment holds: as its own worker told (request.held), or as its folder says.
    # (Of an environment with a worker of its own that was not asked, nothing: the release asks
    # it before it deploys there.)
    holdings = {
        env: request.held[env] if env in request.held else _holdings(env, list(release.versions))
        for env in [*release.environments, *([source] if source else [])]
        if env in request.held or env not in release.own_workers
    }
    before = {
        env: {c: "+".join(sorted(holdings[env].get(c, {}))) or None for c in release.versions}
        for env in release.environments
        if env in holdings
    }
    if source is not None:
        _check_feeder(release, source, holdings[source])
        _check_store(release)
    _log.info("%s: promotion %s checked", release.key, release.route())
    return before


def held_in(request: HoldingsInput) -> HeldIn:
    """What one environment holds of some components, for the check of a release that promotes
    them, asked of that environment's own worker (which alone has its files): each copy's
    version and SHA-256; and that worker's demo root, so its steps refuse a worker of another."""
    root = str(demo_root().resolve())
    return HeldIn(root=root, held=_holdings(request.environment, request.components))


def _holdings(env: Environment, components: list[str]) -> Holdings:
    held = {}
    for component in components:
        paths = {v: deployed_path(env, component, v) for v in held_versions(env, component)}
        held[component] = {v: sha256(read_text(path) or "") for v, path in paths.items()}
    return held


def _check_feeder(release: Release, source: Environment, held: Holdings) -> None:
    """Refuse the release unless source holds the genuine build of every version it promotes
    (held: what it holds, each copy's version and SHA-256)."""
    wrong = {
        component: sorted(held.get(component, {}))
        for component, version in release.versions.items()
        if sorted(held.get(component, {})) != [version]
    }
    if wrong:
        holds = "; ".join(
            f"{source.value} holds {component} {'+'.join(held) or 'nothing'}, "
            f"not {release.versions[component]}"
            for component, held in wrong.items()
        )
        raise ReleaseError(
            f"Release {release.key} cannot be promoted to {release.environments[0].value}: "
            f"{holds}. {_feeder_hint(release, source)}"
        )
    for component, version in release.versions.items():
        if held[component][version] != built_digest(component, version):
            raise ReleaseError(
                _not_built(deployed_path(source, component, version), component, version)
            )


def _check_store(release: Release) -> None:
    """Refuse the release unless the artifact store, which every deploy fetches from, holds
    the genuine build of every version it promotes (a release that starts in DEV builds it)."""
    for component, version in release.versions.items():
        path = artifact_path(component, version)
        content = read_text(path)
        if content is None or sha256(content) != built_digest(component, version):
            raise ReleaseError(
                f"Release {release.key} cannot be promoted to {release.environments[0].value}: "
                f"{where(path)} is {'missing' if content is None else 'not what its build makes'}"
                f" in the artifact store, which every deploy fetches from. Run a release that "
                f"starts in DEV with {component} {version} (it builds it again)."
            )


def _feeder_hint(release: Release, source: Environment) -> str:
    """Name a few releases in the catalog that would put the needed versions into source."""
    feeders = []
    # One read of the catalog for every candidate (a catalog can hold thousands of releases).
    for entry in load_catalog().releases:
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
    """Build the component version into artifactory unless artifactory already holds it.

    A build is reproducible: the same component, version and source give the same bytes, so a
    rebuilt artifact matches what environments already hold.

    Returns:
        True if it built the artifact, False if artifactory already held it.

    Raises:
        ReleaseError: the component is not in the catalog.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("build")
    component, version = deployment.component, deployment.version
    with _exclusive("artifactory", f"{component}-{version}"):
        path = artifact_path(component, version)
        content = _artifact_content(component, version)
        if read_text(path) == content:
            return _report(deployment, "build", changed=False)
        _inject(isErrorSometimes, f"before building {component} {version}")
        _commit(path, content, _ledger_line(deployment, "build", in_environment=False))
        _inject(isErrorRarely, f"after building {component} {version}")
        return _report(deployment, "build", "built into artifactory")


def fetch_artifact(deployment: Deployment) -> ArtifactRef:
    """Gather the artifact to deploy from the artifact store: the build of its version, which
    DEV was deployed from and (the check before the release made sure) the environment before
    holds.

    Returns:
        Where it was found, relative to the demo root, and the SHA-256 of its content.

    Raises:
        SourceMissing: the source does not hold the artifact (transient: it may be restored).
        ReleaseError: the source's copy is not what the build made (tampered with).
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("fetch_artifact")
    component, version, env = deployment.component, deployment.version, deployment.environment
    _inject(isErrorRarely, f"while fetching {component} {version} for {env.value}")
    path = artifact_path(deployment.component, deployment.version)
    content = read_text(path)
    if content is None:
        raise SourceMissing(
            f"{where(path)} is missing from the artifact store: restore it, or run a release "
            f"that starts in DEV with {component} {version} (it builds it again)."
        )
    _check_provenance(path, content, component, version)
    source = where(path.parent)
    _log.info("%s: found in %s", deployment.log_name("fetch artifact"), source)
    return ArtifactRef(source=source, sha256=sha256(content))


def fetch_config(deployment: Deployment) -> dict[str, str | int]:
    """Gather the configuration a component version should have in its environment, from the
    catalog: component, version, environment, repository, team and the environment's settings.

    Raises:
        ReleaseError: the catalog no longer knows the component.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("fetch_config")
    component, env = deployment.component, deployment.environment
    _inject(isErrorNever, f"while fetching the {env.value} config of {component}")
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
    """Deploy the gathered artifact, replacing whatever version the environment held before
    (kept aside for a rollback).

    Returns:
        True if it deployed, False if the environment already held exactly this artifact and
        no other version of the component.

    Raises:
        SourceMissing: the artifact disappeared from its source since it was gathered.
        ReleaseError: the artifact changed since it was gathered.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("deploy")
    d = request.deployment
    with _exclusive(d.environment.value, d.component):
        others = [v for v in held_versions(d.environment, d.component) if v != d.version]
        current = read_text(deployed_path(d.environment, d.component, d.version))
        if current is not None and sha256(current) == request.artifact.sha256 and not others:
            return _report(d, "deploy", changed=False)
        where = f"{d.component} {d.version} to {d.environment.value}"
        _inject(isErrorSometimes, f"before deploying {where}")
        content = _gathered_content(request)
        if current != content:  # else only the replaced version is left to move aside
            target = deployed_path(d.environment, d.component, d.version)
            _commit(target, content, _ledger_line(d, "deploy") | _replacing(d, others))
        _keep_previous(d.environment, d.component, others)
        _inject(isErrorSometimes, f"after deploying {where}")
        return _report(d, "deploy", "deployed")


def _gathered_content(request: DeployArtifactInput) -> str:
    """The artifact's content at its source, checked to be what was gathered.

    Raises:
        SourceMissing: it disappeared since it was gathered.
        ReleaseError: it changed since it was gathered.
    """
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


def _replacing(deployment: Deployment, others: list[str]) -> dict[str, str | None]:
    """What a deploy replaces, for its ledger line: the version a rollback would put back (the
    one previous_version will find kept) and the SHA-256 of the config the environment has now.
    A rollback checks what it puts back against them (see _kept_for_rollback)."""
    component = deployment.component
    config = read_text(config_path(deployment.environment, component))
    return {
        "replaced": _last_kept(component, others),
        "replaced_config": sha256(config) if config is not None else None,
    }


def _keep_previous(env: Environment, component: str, replaced: list[str]) -> None:
    """Move the versions a deploy replaced (normally one) aside, with the config that named
    them, so that a failed verification can roll back to them.

    Raises:
        ReleaseError: the folder they go to is a symbolic link or lies in a linked folder.
    """
    if not replaced:
        return
    keep = no_links(previous_dir(env))
    keep.mkdir(parents=True, exist_ok=True)
    for stale in keep.glob(f"{component}-*.txt"):
        stale.unlink()
    config = read_text(config_path(env, component))
    if config is not None:
        atomic_write(_kept_config(env, component), config)
    for old in replaced:
        os.replace(deployed_path(env, component, old), keep / f"{component}-{old}.txt")


def update_config(request: UpdateConfigInput) -> bool:
    """Write the component's configuration in its environment, unless it reads exactly that.

    Returns:
        True if it wrote the config, False if the environment already had it.

    Raises:
        ReleaseError: the config or the ledger is a symbolic link or lies in a linked folder.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("configure")
    d = request.deployment
    with _exclusive(d.environment.value, d.component):
        path = config_path(d.environment, d.component)
        if read_json(path) == request.config:
            return _report(d, "configure", changed=False)
        where = f"{d.component} {d.version} in {d.environment.value}"
        _inject(isErrorRarely, f"before configuring {where}")
        text = json.dumps(request.config, indent=2, sort_keys=True) + "\n"
        _commit(path, text, _ledger_line(d, "configure"))
        _inject(isErrorRarely, f"after configuring {where}")
        return _report(d, "configure", "config updated")


def verify_deploy(request: VerifyInput) -> None:
    """Check that the environment runs the deploy as intended: it holds exactly this version of
    the component, the deployed content is what its build made (and was gathered), and the
    config names it.

    Raises:
        ReleaseError: the deployed copy is not what its build made (tampered with).
        Unhealthy: it failed its health check (DEMO_UNHEALTHY).
        VerificationError: another of those does not hold; the message says which.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("verify")
    d = request.deployment
    component, version, env = d.component, d.version, d.environment
    _inject(isErrorRarely, f"while verifying {component} {version} in {env.value}")
    _check_holds(env, component, [version], "")
    path = deployed_path(env, component, version)
    content = read_text(path)
    # A copy changed since it was deployed is tampered with: no retry can make it genuine.
    _check_provenance(path, content, component, version)
    if content is None or sha256(content) != request.artifact.sha256:
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


def _check_holds(env: Environment, component: str, wanted: list[str], when: str) -> None:
    """Raise VerificationError unless env holds exactly the wanted versions of component."""
    held = held_versions(env, component)
    if held != wanted:
        raise VerificationError(
            f"{when}{env.value} holds {component} {'+'.join(held) or 'nothing'}, "
            f"expected {'+'.join(wanted) or 'nothing'}"
        )


def rollback_deploy(deployment: Deployment) -> str | None:
    """Put back the version of the component that the deploy replaced, with its config; if
    there was none, remove the component from the environment.

    Returns:
        The version the environment holds again, or None if the component was removed.
        Rolling back twice changes nothing the second time.

    Raises:
        ReleaseError: a file it reads or writes is a symbolic link or lies in a linked folder.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("rollback")
    d = deployment
    with _exclusive(d.environment.value, d.component):
        previous, config_sha256 = _replaced_by(d)
        kept = _kept_for_rollback(d, previous, config_sha256) if previous else None
        if held_versions(d.environment, d.component) != ([previous] if previous else []) or (
            read_text(config_path(d.environment, d.component)) != (kept[1] if kept else None)
        ):
            where = f"{d.component} {d.version} in {d.environment.value}"
            _inject(isErrorRarely, f"before rolling back {where}")
            _put_back(d, previous, kept)
            _inject(isErrorRarely, f"after rolling back {where}")
    _log.warning("%s: rolled back to %s", d.log_name("rollback"), previous or "nothing (removed)")
    return previous


def _replaced_by(deployment: Deployment) -> tuple[str | None, str | None]:
    """What the deploy replaced, as its ledger line says: the version to put back (None: none)
    and the SHA-256 of its config then. A deploy that changed nothing (or was made before its
    line said so) has none: then the version kept in .previous, and no digest."""
    d = deployment
    ours = (d.release_key, d.release_run_id, d.environment.value, d.component, d.version, "deploy")
    for line in reversed(read_ledger()):
        if tuple(line.get(field) for field in _SAME_CHANGE) == ours and "replaced" in line:
            replaced, config = line["replaced"], line.get("replaced_config")
            return (
                replaced if isinstance(replaced, str) else None,
                config if isinstance(config, str) else None,
            )
    return previous_version(d.environment, d.component), None


def _kept_for_rollback(
    deployment: Deployment, previous: str, config_sha256: str | None
) -> tuple[str, str]:
    """The artifact and the config kept aside for putting previous back, once checked to be
    exactly what the build of previous made and the config the environment had with it (its
    SHA-256, if the deploy's ledger line gives it; else a config of previous in this
    environment).

    Raises:
        ReleaseError: either is missing or is not that; the message names the file, and the
            environment is left as it is (a tampered copy is never put back).
    """
    env, component = deployment.environment, deployment.component
    artifact, config = (
        previous_dir(env) / f"{component}-{previous}.txt",
        _kept_config(env, component),
    )
    content, text = read_text(artifact), read_text(config)
    fields = json_or_none(text) if text else None
    wanted = {"component": component, "version": previous, "environment": env.value}
    what = f"{component} {previous}"
    if content is None or sha256(content) != built_digest(component, previous):
        wrong = f"{where(artifact)} is not what the build of {what} makes"
    elif (
        not isinstance(fields, dict)
        or {k: fields.get(k) for k in wanted} != wanted
        or (config_sha256 is not None and sha256(text or "") != config_sha256)
    ):
        wrong = f"{where(config)} is not the {env.value} config of {what}"
    else:
        return content, text or ""
    held = "+".join(held_versions(env, component)) or "nothing"
    raise ReleaseError(
        f"{wrong} (it was changed or removed after it was kept for a rollback), so it is not put "
        f"back: {env.value} still holds {component} {held}. Put {component} {previous} back with "
        f"a release of it that starts in DEV."
    )


def _kept_config(env: Environment, component: str) -> Path:
    """Where a deploy keeps the config of the version it replaced, for a rollback."""
    return previous_dir(env) / f"{component}.config.json"


def _put_back(deployment: Deployment, previous: str | None, kept: tuple[str, str] | None) -> None:
    """Make the environment hold previous (kept: its checked content and config) and no other
    version of the component, or nothing of it if previous is None; record it in the ledger."""
    env, component = deployment.environment, deployment.component
    # A rollback's line names the version it puts back (None: removed) and the one it replaced.
    line = _ledger_line(deployment, "rollback") | {
        "version": previous,
        "replaced": deployment.version,
    }
    if previous and kept:
        content, config = kept
        target = deployed_path(env, component, previous)
        if read_text(target) != content:
            _commit(target, content, line)
        else:  # put back by an attempt that crashed before it wrote the config
            _append_ledger(line)
        atomic_write(config_path(env, component), config)
    else:
        config_file = no_links(config_path(env, component))
        _append_ledger(line)
        config_file.unlink(missing_ok=True)
    for other in held_versions(env, component):
        if other != previous:
            deployed_path(env, component, other).unlink()


def verify_rollback(request: VerifyRollbackInput) -> None:
    """Check a rollback: the environment holds exactly the previous version (with its config),
    or nothing of the component if it had none before.

    Raises:
        VerificationError: it does not; the message says what the environment holds.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("verify")
    d, previous = request.deployment, request.previous
    _inject(
        isErrorRarely, f"while verifying the rollback of {d.component} in {d.environment.value}"
    )
    _check_holds(d.environment, d.component, [previous] if previous else [], "after the rollback ")
    if previous:
        path = deployed_path(d.environment, d.component, previous)
        _check_provenance(path, read_text(path), d.component, previous)
    config = read_json(config_path(d.environment, d.component)) or {}
    if (config.get("version"), config.get("environment")) != (
        (previous, d.environment.value) if previous else (None, None)
    ):
        raise VerificationError(
            f"after the rollback the {d.environment.value} config of {d.component} is wrong"
        )
    _log.info("%s: verified", d.log_name("verify rollback"))


def notify(request: NotifyInput) -> bool:
    """Announce an event of a release run: append it to database/notifications.jsonl, once.

    A real system would post it to a chat or a webhook, with the same key (the release's first
    run, which a reset's runs share, and the event) as an idempotency key, so that neither a
    retried announcement nor a reset announces twice.

    Returns:
        True if it announced the event, False if this run had announced it already.

    Raises:
        ReleaseError: the file is a symbolic link or lies in a linked folder.
        InjectedFailure: a failure injector fired (transient; retry).
    """
    raise_planted_bug("notify")
    _inject(isErrorRarely, f"while announcing that {request.release.key} {request.event}")
    line = {
        "release_key": request.release.key,
        "run_id": request.release_run_id,
        "event": request.event,
        "message": request.message,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    announced = _append_once(notifications_path(), line, ("run_id", "event"))
    _log.info(
        "%s: %s", request.log_name("notify"), "announced" if announced else "already announced"
    )
    return announced


# --- How a change is made once and recorded once ----------------------------------------------


def _commit(path: Path, text: str, ledger_line: dict[str, Any]) -> None:
    """Make one change: write it aside, record it in the ledger, then rename it into place.

    A crash before the rename leaves the change undone, so the retried step makes it; the
    ledger line it then writes again is the same change and is skipped (see _append_ledger).
    A crash after the rename leaves the change done and recorded, so the retry finds it done.
    Either way the change is made once and recorded once. A step calls it only once it has
    checked that the change is not made; a target that already holds text is refused.

    Raises:
        ChangeMadeTwice: path already holds text (the calling step did not check first).
    """
    if read_text(path) == text:
        raise ChangeMadeTwice(
            f"{where(path)} already holds this change: the step must check "
            "its end state before it changes anything"
        )
    temp = write_temp(path, text)
    _append_ledger(ledger_line)
    os.replace(temp, path)


def _ledger_line(deployment: Deployment, step: str, in_environment: bool = True) -> dict[str, Any]:
    """The ledger line of one change a deployment's step makes (a build is in no environment)."""
    return {
        "release_key": deployment.release_key,
        "run_id": deployment.release_run_id,
        "env": deployment.environment.value if in_environment else None,
        "component": deployment.component,
        "version": deployment.version,
        "step": step,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }


def _report(deployment: Deployment, step: str, done: str = "", changed: bool = True) -> bool:
    """Say what a step did, or that it found its work done; return whether it changed anything."""
    _log.info(
        "%s: %s", deployment.log_name(step), done if changed else "already done, nothing to change"
    )
    return changed


_SAME_CHANGE = ("release_key", "run_id", "env", "component", "version", "step")


def _append_ledger(line: dict[str, Any]) -> None:
    """Append one change to the ledger, unless this release run already recorded it.

    Raises:
        ReleaseError: the ledger is a symbolic link or lies in a linked folder.
    """
    _append_once(ledger_path(), line, _SAME_CHANGE)


def _append_once(path: Path, line: dict[str, Any], same: tuple[str, ...]) -> bool:
    """Append line to the JSON-lines file path unless a line with the same values of the fields
    same is there already; return whether it appended.

    The file is append-only, so it is not rewritten through a temp file: each line goes in with
    a single write under an exclusive lock, which concurrent steps (threads or worker processes)
    cannot interleave. A last line that a crash cut short (a torn write) stays, and readers skip
    it.

    Raises:
        ReleaseError: path is a symbolic link or lies in a linked folder.
    """
    path = no_links(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
    with open(os.open(path, flags, 0o666), "r+b") as ledger:
        fcntl.flock(ledger, fcntl.LOCK_EX)
        last = b"\n"
        for existing in ledger:
            last = existing
            if _same_line(existing, line, same):
                return False
        # After a torn last line, this one starts a line of its own instead of joining it.
        start = b"" if last.endswith(b"\n") else b"\n"
        ledger.write(start + json.dumps(line).encode() + b"\n")
        ledger.flush()
        os.fsync(ledger.fileno())
        return True


def _same_line(existing: bytes, line: dict[str, Any], same: tuple[str, ...]) -> bool:
    """Whether the line existing has the same values as line in the fields same."""
    # A line without those values is not the same: skip it without parsing it (a release of
    # many components makes many lines).
    if any(isinstance(line[f], str) and line[f].encode() not in existing for f in same):
        return False
    recorded = json_or_none(existing)
    return isinstance(recorded, dict) and all(recorded.get(field) == line[field] for field in same)


@contextmanager
def _exclusive(*target: str) -> Iterator[None]:
    """Hold a target's lock while a step checks it and changes it.

    Two attempts of the same step can overlap: a retry starts when the first attempt's heartbeat
    lapses, while the first one's thread may still be running. The second waits here, then finds
    the change made. The lock is the file's, so it holds across threads and worker processes.

    Raises:
        ReleaseError: the lock file is a symbolic link or lies in a linked folder.
    """
    path = no_links(lock_path(".".join(target)))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666), "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _inject(injector: Callable[[], bool], when: str) -> None:
    if injector():
        raise InjectedFailure(f"Simulated failure {when}")


# --- Reading what the files hold --------------------------------------------------------------


def held_versions(env: Environment, component: str) -> list[str]:
    """The versions of one component that an environment holds (normally zero or one)."""
    folder = environment_dir(env)
    if not folder.is_dir():
        return []
    found = (_ARTIFACT_FILE.match(path.name) for path in folder.iterdir())
    return sorted(m["version"] for m in found if m and m["component"] == component)


def environment_state() -> dict[Environment, dict[str, str]]:
    """What every environment holds: {env: {component: version}}, read from the files.

    A component held at more than one version (which a finished release never leaves) shows
    its versions joined with "+".
    """
    state: dict[Environment, dict[str, str]] = {}
    for env in ENVIRONMENT_ORDER:
        folder = environment_dir(env)
        names = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
        held: dict[str, list[str]] = {}
        for match in filter(None, map(_ARTIFACT_FILE.match, names)):
            held.setdefault(match["component"], []).append(match["version"])
        state[env] = {component: "+".join(versions) for component, versions in held.items()}
    return state


def previous_version(env: Environment, component: str) -> str | None:
    """The version of component that the last deploy to env replaced, if any."""
    folder = previous_dir(env)
    names = [path.name for path in folder.iterdir()] if folder.is_dir() else []
    matches = filter(None, map(_ARTIFACT_FILE.match, names))
    return _last_kept(component, [m["version"] for m in matches if m["component"] == component])


def _last_kept(component: str, versions: list[str]) -> str | None:
    """Of the versions a deploy moved aside (normally one), the one a rollback puts back: the
    last by file name."""
    return max(versions, key=lambda version: f"{component}-{version}.txt", default=None)


def read_ledger() -> list[dict[str, Any]]:
    """Every change in the ledger, oldest first.

    A line that is not a JSON object is skipped, with a logged warning naming it: a write torn
    by a crash (it stands for no change: a change's line is written before the change is made,
    see _commit) or a hand edit. A warning, not an error: the other lines are still the changes.

    Raises:
        ReleaseError: the ledger is a symbolic link or lies in a linked folder.
    """
    changes, skipped = [], []
    lines = (read_bytes(ledger_path()) or b"").split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        change = json_or_none(line)
        if isinstance(change, dict):
            changes.append(change)
        else:
            skipped.append(str(number))
    if skipped:
        _log.warning(
            "%s: skipped line(s) %s: not a JSON object (a write torn by a crash, or a hand edit)",
            ledger_path(),
            listed(skipped),
        )
    return changes


def _artifact_content(component: str, version: str) -> str:
    info = component_info(load_catalog(), component)
    build_id = hashlib.sha256(f"{component}\0{version}\0{info.repository}".encode()).hexdigest()
    return (
        f"component: {component}\n"
        f"version: {version}\n"
        f"source: {info.repository}\n"
        f"team: {info.team}\n"
        f"build: {build_id[:12]} (reproducible: same source and version, same bytes)\n"
    )


def built_digest(component: str, version: str) -> str:
    """The SHA-256 of what the build makes of a component version. Builds are reproducible, so
    every genuine copy of it, in artifactory or in any environment, has this digest."""
    return sha256(_artifact_content(component, version))


def _check_provenance(path: Path, content: str | None, component: str, version: str) -> None:
    """Refuse a copy of an artifact that is not byte for byte what its build makes.

    Raises:
        ReleaseError: the copy differs (it was changed after it was built, or the catalog's
            repository or team of the component changed since); the message names the file.
    """
    if content is None or sha256(content) == built_digest(component, version):
        return
    raise ReleaseError(_not_built(path, component, version))


def _not_built(path: Path, component: str, version: str) -> str:
    """Why a copy that is not what its build made is not promoted."""
    return (
        f"{where(path)} is not what the build of {component} {version} makes: "
        f"it was changed after it was built (or the catalog's entry for {component} changed "
        f"since), so it is not promoted. Run a release that starts in DEV with {component} "
        f"{version} to deploy the genuine build again."
    )
