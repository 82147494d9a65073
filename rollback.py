"""The compensation of an unhealthy deploy (release_management.py): put back what the environment
held before it, with its config, as the deploy's ledger line says, and check it is back. Idempotent
by validation, as every step: a rollback that finds the environment as it should be changes nothing.
"""

import logging

from artifacts import (
    built_digest,
    check_holds,
    check_provenance,
    file_digest,
    held_versions,
    previous_version,
)
from files import (
    atomic_write,
    config_path,
    deployed_path,
    json_or_none,
    kept_config_path,
    no_links,
    previous_dir,
    read_json,
    read_text,
    sha256,
    where,
)
from ledger import SAME_CHANGE, append_ledger, commit, exclusive, ledger_line, read_ledger
from shared import Deployment, ReleaseError, VerificationError, VerifyRollbackInput
from utils import isErrorRarely, maybe_fail, raise_planted_bug

_log = logging.getLogger("release_management")


def rollback_deploy(deployment: Deployment) -> str | None:
    """Put back the version the deploy replaced, with its config, or remove the component if it
    replaced none; return the version held again (None: removed)."""
    raise_planted_bug("rollback")
    d = deployment
    with exclusive(d.environment.value, d.component):
        previous, config_sha256 = _replaced_by(d)
        kept = _kept_for_rollback(d, previous, config_sha256) if previous else None
        if held_versions(d.environment, d.component) != ([previous] if previous else []) or (
            read_text(config_path(d.environment, d.component)) != (kept[1] if kept else None)
        ):
            where = f"{d.component} {d.version} in {d.environment.value}"
            maybe_fail(isErrorRarely, f"before rolling back {where}")
            _put_back(d, previous, kept)
            maybe_fail(isErrorRarely, f"after rolling back {where}")
    _log.warning("%s: rolled back to %s", d.log_name("rollback"), previous or "nothing (removed)")
    return previous


def _replaced_by(d: Deployment) -> tuple[str | None, str | None]:
    """What the deploy replaced, as its ledger line says: the version to put back and its
    config's SHA-256. Without that line (the deploy changed nothing): what .previous keeps."""
    ours = (d.release_key, d.release_run_id, d.environment.value, d.component, d.version, "deploy")
    for line in reversed(read_ledger()):
        if tuple(line.get(field) for field in SAME_CHANGE) == ours and "replaced" in line:
            replaced, config = line["replaced"], line.get("replaced_config")
            return (
                replaced if isinstance(replaced, str) else None,
                config if isinstance(config, str) else None,
            )
    return previous_version(d.environment, d.component), None


def _kept_for_rollback(d: Deployment, previous: str, config_sha256: str | None) -> tuple[str, str]:
    """The artifact and config kept aside to put previous back, checked to be its build and the
    config the environment had with it; else ReleaseError: a tampered copy is never put back."""
    env, component, what = d.environment, d.component, f"{d.component} {previous}"
    artifact = previous_dir(env) / f"{component}-{previous}.txt"
    config = kept_config_path(env, component)
    content, text = read_text(artifact), read_text(config) or ""
    fields = json_or_none(text)
    wanted = {"component": component, "version": previous, "environment": env.value}
    if content is None or sha256(content) != built_digest(component, previous):
        wrong = f"{where(artifact)} is not what the build of {what} makes"
    elif (
        not isinstance(fields, dict)
        or not wanted.items() <= fields.items()
        or (config_sha256 is not None and sha256(text) != config_sha256)
    ):
        wrong = f"{where(config)} is not the {env.value} config of {what}"
    else:
        return content, text
    held = "+".join(held_versions(env, component)) or "nothing"
    raise ReleaseError(
        f"{wrong} (it was changed or removed after it was kept for a rollback), so it is not put "
        f"back: {env.value} still holds {component} {held}. Put {component} {previous} back with "
        f"a release of it that starts in DEV."
    )


def _put_back(d: Deployment, previous: str | None, kept: tuple[str, str] | None) -> None:
    """Make the environment hold previous (kept: its checked content and config) and no other
    version, or nothing of the component if previous is None."""
    env, component = d.environment, d.component
    # A rollback's line names the version it puts back (None: removed) and the one it replaced.
    line = ledger_line(d, "rollback") | {"version": previous, "replaced": d.version}
    if previous and kept:
        content, config = kept
        target = deployed_path(env, component, previous)
        if read_text(target) != content:
            commit(target, content, line)
        else:  # put back by an attempt that crashed before it wrote the config
            append_ledger(line)
        atomic_write(config_path(env, component), config)
    else:
        config_file = no_links(config_path(env, component))
        append_ledger(line)
        config_file.unlink(missing_ok=True)
    for other in held_versions(env, component):
        if other != previous:
            deployed_path(env, component, other).unlink()


def verify_rollback(request: VerifyRollbackInput) -> None:
    """Check that the environment holds exactly the previous version, with its config, or nothing
    of the component if it had none."""
    raise_planted_bug("verify")
    d, previous = request.deployment, request.previous
    maybe_fail(
        isErrorRarely, f"while verifying the rollback of {d.component} in {d.environment.value}"
    )
    check_holds(d.environment, d.component, [previous] if previous else [], "after the rollback ")
    if previous:
        path = deployed_path(d.environment, d.component, previous)
        check_provenance(path, file_digest(path), d.component, previous)
    config = read_json(config_path(d.environment, d.component)) or {}
    if (config.get("version"), config.get("environment")) != (
        (previous, d.environment.value) if previous else (None, None)
    ):
        raise VerificationError(
            f"after the rollback the {d.environment.value} config of {d.component} is wrong"
        )
    _log.info("%s: verified", d.log_name("verify rollback"))
