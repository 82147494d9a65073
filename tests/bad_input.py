"""What the bad-input tests (issue 11) of several modules share: a release key of the catalog's,
and the check that a text holds nothing a terminal would obey."""

KEY = "RELEASE-FEB-24-BETA"


def tampered(text: str) -> bool:
    """Whether a line of text holds a character a terminal would obey (escape code, bell, ...)."""
    return any(not line.isprintable() for line in text.splitlines())
