"""The code states of demos.md's "Change the plan while releases are in flight", made from the
patches in patches/ as a user makes them: workflows.py as it was before the announcements
(before-notifications), and with them added without workflow.patched (notifications-unpatched).
Today's code is the third.

scripts/record_histories.py records a release in flight with the code before; the tests replay
it through each state and run each state as a real worker.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

PROJECT_DIR = Path(__file__).resolve().parents[1]
PATCHES_DIR = PROJECT_DIR / "patches"
BEFORE_NOTIFICATIONS = "before-notifications"
UNPATCHED = "notifications-unpatched"
CODE_STATES = (BEFORE_NOTIFICATIONS, UNPATCHED)
# The files of the core that a worker runs from, besides its modules: the catalog it falls back to.
CATALOG = Path("database") / "catalog.json"


def patch_of(state: str) -> Path:
    return PATCHES_DIR / f"{state}.patch"


def git_apply(state: str, folder: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`git apply [OPTIONS] patches/STATE.patch` on the files in folder, which needs no git
    checkout. Git looks for none above folder: inside one, it would take the patch's paths as
    the checkout's and skip them."""
    return subprocess.run(
        ["git", "apply", *options, str(patch_of(state))],
        cwd=folder,
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(folder.resolve().parent)},
        capture_output=True,
        text=True,
    )


def apply_to(state: str, folder: Path) -> None:
    """Apply patches/STATE.patch to the copy of workflows.py in folder, or raise saying why not."""
    before = (folder / "workflows.py").read_text()
    applied = git_apply(state, folder)
    if applied.returncode != 0 or (folder / "workflows.py").read_text() == before:
        raise RuntimeError(f"patches/{state}.patch does not apply: {applied.stderr.strip()}")


def core_copy(state: str, folder: Path) -> Path:
    """The project's core (its modules and catalog) copied into folder, with patches/STATE.patch
    applied: `python FOLDER/run_worker.py` is a worker that runs that code. Returns folder."""
    (folder / CATALOG.parent).mkdir(parents=True, exist_ok=True)
    for module in PROJECT_DIR.glob("*.py"):
        shutil.copy2(module, folder)
    shutil.copy2(PROJECT_DIR / CATALOG, folder / CATALOG)
    apply_to(state, folder)
    return folder


def workflows_of(state: str, folder: Path) -> ModuleType:
    """workflows.py with patches/STATE.patch applied (in folder), imported as a module of its
    own, workflows_STATE; it imports the project's other modules. Run or replay its workflows
    unsandboxed: the sandbox would import the module again, by a name it cannot find."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_DIR / "workflows.py", folder)
    apply_to(state, folder)
    name = f"workflows_{state.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, folder / "workflows.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    """`python scripts/code_states.py STATE FOLDER`: a build of the plan in one of the code
    states, as demos.md's "Ship a new version of the plan while releases wait" makes them."""
    if len(argv) != 2 or argv[0] not in CODE_STATES:
        print(
            f"usage: python scripts/code_states.py {{{','.join(CODE_STATES)}}} FOLDER",
            file=sys.stderr,
        )
        return 2
    state, folder = argv[0], Path(argv[1])
    if folder.exists():
        print(
            f"code_states.py: {folder} exists: remove it, or name another folder", file=sys.stderr
        )
        return 1
    try:
        core_copy(state, folder)
    except RuntimeError as err:
        print(
            f"code_states.py: {err} (is workflows.py today's? git checkout workflows.py)",
            file=sys.stderr,
        )
        return 1
    print(f"{folder}: the project's code with patches/{state}.patch applied.")
    print(f"Its worker, as version {folder.name} of the plan, with this folder's files:")
    print(f"DEMO_BUILD_ID={folder.name} DEMO_ROOT=$PWD python {folder / 'run_worker.py'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
