"""Artifacts: what the build of a component version makes, byte for byte, and which versions the
environments hold. A copy that is not its build's bytes is refused wherever it is found
(provenance): nothing is deployed that was not built.
"""

import hashlib
import re
from pathlib import Path

from catalog import component_info, load_catalog
from files import environment_dir, previous_dir, read_text, sha256, where
from shared import (
    COMPONENT_PATTERN,
    ENVIRONMENT_ORDER,
    VERSION_PATTERN,
    Environment,
    ReleaseError,
    VerificationError,
)

_ARTIFACT_FILE = re.compile(
    rf"^(?P<component>{COMPONENT_PATTERN})-(?P<version>{VERSION_PATTERN})\.txt$"
)


def _artifacts_in(folder: Path) -> list[tuple[str, str]]:
    """The (component, version) of each artifact file in folder, in file name order."""
    names = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    return [(m["component"], m["version"]) for m in map(_ARTIFACT_FILE.match, names) if m]


def held_versions(env: Environment, component: str) -> list[str]:
    """The versions of one component that an environment holds (normally zero or one)."""
    return sorted(v for c, v in _artifacts_in(environment_dir(env)) if c == component)


def environment_state() -> dict[Environment, dict[str, str]]:
    """What every environment holds, {env: {component: version}}; versions joined with "+" if
    it holds several (a finished release never leaves that)."""
    state: dict[Environment, dict[str, str]] = {}
    for env in ENVIRONMENT_ORDER:
        held: dict[str, list[str]] = {}
        for component, version in _artifacts_in(environment_dir(env)):
            held.setdefault(component, []).append(version)
        state[env] = {component: "+".join(versions) for component, versions in held.items()}
    return state


def previous_version(env: Environment, component: str) -> str | None:
    """The version of component that the last deploy to env replaced (the last by file name)."""
    kept = [v for c, v in _artifacts_in(previous_dir(env)) if c == component]
    return kept[-1] if kept else None


def artifact_content(component: str, version: str) -> str:
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
    """The SHA-256 of what the build of a component version makes: every genuine copy's."""
    return sha256(artifact_content(component, version))


def file_digest(path: Path) -> str | None:
    content = read_text(path)
    return None if content is None else sha256(content)


def check_provenance(path: Path, digest: str | None, component: str, version: str) -> None:
    """Refuse (ReleaseError) a copy of an artifact that is not byte for byte what its build
    makes; digest: the copy's SHA-256 (None: no copy, nothing to refuse)."""
    if digest is None or digest == built_digest(component, version):
        return
    raise ReleaseError(
        f"{where(path)} is not what the build of {component} {version} makes: "
        f"it was changed after it was built (or the catalog's entry for {component} changed "
        f"since), so it is not promoted. Run a release that starts in DEV with {component} "
        f"{version} to deploy the genuine build again."
    )


def check_holds(env: Environment, component: str, wanted: list[str], when: str) -> None:
    held = held_versions(env, component)
    if held != wanted:
        raise VerificationError(
            f"{when}{env.value} holds {component} {'+'.join(held) or 'nothing'}, "
            f"expected {'+'.join(wanted) or 'nothing'}"
        )
