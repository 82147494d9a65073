"""What shared.py defines for the terminal and for Temporal, as a user meets it: shown escapes
what a terminal would obey, and a release's input (ReleaseInput, what the Web UI shows) carries
the release key and the demo root, no test-only field."""

import json

from temporalio.contrib.pydantic import pydantic_data_converter

from shared import ReleaseInput, shown


def test_shown_escapes_what_a_terminal_would_obey() -> None:
    assert shown("é ok\x1b[2J\nnext\tx\x07\u200b") == ("é ok\\x1b[2J\\nnext\\tx\\x07\\u200b")


def test_a_user_s_release_input_carries_no_test_only_field() -> None:
    # What the Web UI shows as the release's input: the key and the demo root, nothing empty.
    started = ReleaseInput(release_key="RELEASE-NOV-23-INITIAL", demo_root="/srv/demo")
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([started])
    assert json.loads(payload.data) == {
        "release_key": "RELEASE-NOV-23-INITIAL",
        "demo_root": "/srv/demo",
    }
