"""The release catalog, database/catalog.json, validated by pydantic: a bad one is refused with
a ReleaseError naming the file, the place in it and what to do, before any step changes anything.
"""

import json
from typing import Any

from pydantic import Field, StrictInt, ValidationError, model_validator

from files import catalog_path
from shared import (
    ENVIRONMENT_ORDER,
    CatalogText,
    ComponentName,
    Environment,
    FrozenModel,
    Release,
    ReleaseError,
    WaitSeconds,
)


class ComponentInfo(FrozenModel):
    """A deployable component: where its source lives and who owns it."""

    repository: CatalogText
    team: CatalogText


class EnvironmentSettings(FrozenModel):
    """Settings that go into the config of every component deployed to one environment."""

    # Strict: "replicas": true or "2" is refused, not read as 1 or 2.
    replicas: StrictInt = Field(ge=1)
    log_level: CatalogText
    # How long a release waits once it has deployed here, before it promotes further.
    soak_seconds: WaitSeconds = 0


class Catalog(FrozenModel):
    """The whole catalog file. Releases stay raw here and are validated one at a time, so a
    mistake in one release refuses that release and leaves the others usable."""

    components: dict[ComponentName, ComponentInfo] = Field(min_length=1)
    environments: dict[Environment, EnvironmentSettings]
    releases: list[dict[str, Any]]

    @model_validator(mode="after")
    def _every_environment_has_settings(self) -> "Catalog":
        if missing := [env.value for env in ENVIRONMENT_ORDER if env not in self.environments]:
            raise ValueError(f"no settings for environment(s) {', '.join(missing)}")
        return self

    def release_keys(self) -> list[str]:
        return [str(entry.get("key")) for entry in self.releases]


class _ListedTwice(str):
    """Read in place of a JSON object that lists this key twice (json.loads would keep the last)."""


def _keep_duplicates(pairs: list[tuple[str, Any]]) -> dict | _ListedTwice:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:  # the first key given twice
            return _ListedTwice(key)
        seen.add(key)
    return dict(pairs)


# How much of a name, and how many names, a message quotes: a ReleaseError's message crosses
# Temporal, whose payloads are 2 MB at most, and a catalog key can be any size before it is read.
_QUOTED_LENGTH = 60
_LISTED = 20


def _short(text: str) -> str:
    return text if len(text) <= _QUOTED_LENGTH else f"{text[:_QUOTED_LENGTH]}..."


def listed(names: list[str]) -> str:
    """names joined with commas, at most _LISTED of them, each cut short."""
    shown = ", ".join(_short(name) for name in names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} and {len(names) - _LISTED} more"


def _find_duplicate(value: Any, where: str) -> str | None:
    """The first key listed twice in one JSON object, as "<where>: '<key>' is listed twice"."""
    if isinstance(value, _ListedTwice):
        return f"{where}: {_short(value)!r} is listed twice"
    if isinstance(value, list):
        value = dict(enumerate(value))
    for key, child in value.items() if isinstance(value, dict) else []:
        if found := _find_duplicate(child, f"{where}.{_short(str(key))}" if where else str(key)):
            return found
    return None


def _describe(err: ValidationError, where: str = "") -> str:
    """The first problem pydantic found, as "<field path>: <what is wrong>"."""
    first = err.errors()[0]
    parts = [_short(str(part)) for part in first["loc"]]
    field = ".".join([where, *parts] if where else parts)
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
    return f"{field}: {message}{more}" if field else f"{message}{more}"


def load_catalog() -> Catalog:
    """Read and validate the catalog in use; its releases stay raw."""
    path = catalog_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_keep_duplicates)
        duplicate = _find_duplicate(data, "")
    except FileNotFoundError:
        raise ReleaseError(f"{path}: catalog file not found; restore it from git") from None
    except OSError as err:
        raise ReleaseError(f"{path}: cannot be read ({err.strerror}); check the file") from None
    except UnicodeDecodeError as err:
        raise ReleaseError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None
    except ValueError as err:  # not JSON, or a number too long to convert
        raise ReleaseError(f"{path}: not valid JSON: {err}; fix the file") from None
    except RecursionError:
        raise ReleaseError(
            f"{path}: nested too deeply to read (a catalog is a few levels deep); fix the file"
        ) from None
    if duplicate:
        raise ReleaseError(f"{path}: {duplicate}; keep one entry")
    try:
        return Catalog.model_validate(data)
    except ValidationError as err:
        raise ReleaseError(f"{path}: {_describe(err)}; fix the catalog") from None


def load_release(release_key: str, *, catalog: Catalog | None = None) -> Release:
    """Find one release in the catalog (given, to load many: it is read whole) and validate it."""
    catalog = catalog or load_catalog()
    keys = catalog.release_keys()
    if keys.count(release_key) > 1:
        raise ReleaseError(f"{catalog_path()}: release {release_key} is listed twice; keep one")
    if release_key not in keys:
        raise ReleaseError(
            f"Unknown release key {_short(release_key)!r}. Valid keys: {listed(keys)}"
        )
    index, where = keys.index(release_key), f"{catalog_path()}: release {release_key}"
    try:
        release = Release.model_validate(catalog.releases[index])
    except ValidationError as err:
        raise ReleaseError(f"{where}: {_describe(err, f'releases.{index}')}") from None
    if release.own_workers:  # which environments have a worker of their own: the workers' setting
        raise ReleaseError(
            f"{where}: own_workers is not the catalog's to say: "
            "the worker's DEMO_OWN_WORKERS sets it"
        )
    if unknown := [name for name in release.versions if name not in catalog.components]:
        raise ReleaseError(
            f"{where}: versions: unknown component(s) {listed(unknown)}; "
            f"known components: {listed(list(catalog.components))}"
        )
    # Each environment's soak, unless the release sets its own.
    settings = catalog.environments
    soaks = {env: soak for env in release.environments if (soak := settings[env].soak_seconds)}
    return release.model_copy(update={"soak_seconds": soaks | release.soak_seconds})


def component_info(catalog: Catalog, component: str) -> ComponentInfo:
    if component not in catalog.components:
        raise ReleaseError(f"{catalog_path()}: components: {component!r} is not in the catalog")
    return catalog.components[component]
