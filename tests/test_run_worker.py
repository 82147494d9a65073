"""run_worker.check_settings, the worker's check of its DEMO_* settings at start: it accepts a
DEMO_UNHEALTHY component the catalog knows. (A component the catalog does not know is refused by
the worker at start: tests/test_utils.py, with the other DEMO_* settings.)"""

from pathlib import Path

import pytest

import run_worker


def test_an_unhealthy_component_the_catalog_knows_is_accepted(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_UNHEALTHY", "frontend@QC")
    run_worker.check_settings()
