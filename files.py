"""Where the release system's files live under the demo root (README, "The files contract"), read
and written never through a symbolic link, and written whole (a temp file, then a rename).
"""

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from shared import Environment, ReleaseError

PROJECT_DIR = Path(__file__).resolve().parent
CATALOG_NAME = "catalog.json"


def demo_root() -> Path:
    """The folder that holds all the demo's state: DEMO_ROOT if set, else the project folder."""
    return Path(os.environ.get("DEMO_ROOT") or PROJECT_DIR)


def catalog_path() -> Path:
    """The demo root's own database/catalog.json, else the project's."""
    own = demo_root() / "database" / CATALOG_NAME
    return own if own.exists() else PROJECT_DIR / "database" / CATALOG_NAME


def artifactory_dir() -> Path:
    """The artifact store, shared by every worker as a registry would be: DEMO_ARTIFACTORY if
    set, else the demo root's artifactory/."""
    return Path(os.environ.get("DEMO_ARTIFACTORY") or demo_root() / "artifactory")


def artifact_path(component: str, version: str) -> Path:
    return artifactory_dir() / f"{component}-{version}.txt"


def where(path: Path) -> str:
    """path as messages name it: from the demo root (or the artifact store, if it is apart)."""
    root = root_of(path)
    shown = path.relative_to(root)
    return str(shown if root == demo_root() else root.name / shown)


def root_of(path: Path) -> Path:
    """The folder path lies in that the release system writes under: the artifact store (if it
    is outside the demo root and holds path), else the demo root."""
    store = artifactory_dir()
    apart = path.is_relative_to(store) and not store.is_relative_to(demo_root())
    return store if apart else demo_root()


def environment_dir(env: Environment) -> Path:
    return demo_root() / "environments" / env.value


def deployed_path(env: Environment, component: str, version: str) -> Path:
    return environment_dir(env) / f"{component}-{version}.txt"


def previous_dir(env: Environment) -> Path:
    """Where an environment keeps the version a deploy replaced, for a rollback."""
    return demo_root() / "environments" / ".previous" / env.value


def kept_config_path(env: Environment, component: str) -> Path:
    return previous_dir(env) / f"{component}.config.json"


def config_path(env: Environment, component: str) -> Path:
    return environment_dir(env) / f"{component}.config.json"


def lock_path(target: str) -> Path:
    """The lock file of a target a step changes: an artifact (in the artifact store, which
    workers of different roots share) or a component in an environment."""
    root = root_of(artifactory_dir()) if target.startswith("artifactory.") else demo_root()
    return root / ".locks" / f"{target}.lock"


def notifications_path() -> Path:
    return demo_root() / "database" / "notifications.jsonl"


def ledger_path() -> Path:
    return demo_root() / "database" / "ledger.jsonl"


def records_dir() -> Path:
    return demo_root() / "database" / "releases"


def record_path(release_key: str, run_id: str) -> Path:
    return records_dir() / f"{release_key}-{run_id}.json"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def no_links(path: Path) -> Path:
    """path, once it is known that neither it nor a folder between the demo root and it is a
    symbolic link (else ReleaseError), so that nothing leads out of the root."""
    root = root_of(path)
    if path.is_symlink():
        problem = "is a symbolic link"
    elif path.parent.resolve() != root.resolve() / path.parent.relative_to(root):
        problem = "lies in a linked folder (a folder on its way is a symbolic link)"
    else:
        return path
    raise ReleaseError(
        f"{path} {problem}: the release system follows no links, so that nothing it writes "
        "lands outside the demo root. Replace the link with a real file or folder and retry."
    )


def read_bytes(path: Path) -> bytes | None:
    """The content of path, or None if there is no such file."""
    try:
        # O_NOFOLLOW: a link planted after the check is refused (OSError), not read through.
        fd = os.open(no_links(path), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with open(fd, "rb") as file:
        return file.read()


def read_text(path: Path) -> str | None:
    content = read_bytes(path)
    return None if content is None else content.decode("utf-8")


def json_or_none(text: str | bytes) -> Any:
    """text parsed as JSON, or None if it is not JSON (or not UTF-8, or nested too deeply)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def read_json(path: Path) -> Any:
    content = read_bytes(path)
    return None if content is None else json_or_none(content)


def write_temp(path: Path, text: str) -> Path:
    """Write text beside path under a temp name, for the caller to rename into place. The name
    is fixed per target, so a retry removes a crashed attempt's half-written temp file."""
    no_links(path).parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    # Removed, not written through: unlink removes a planted link itself, and O_EXCL |
    # O_NOFOLLOW create a fresh file only.
    temp.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with open(os.open(temp, flags, 0o666), "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    return temp


def atomic_write(path: Path, text: str) -> None:
    os.replace(write_temp(path, text), path)
