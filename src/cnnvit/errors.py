"""User-facing errors.

Anything the user can cause (a bad path, an unknown model, no network, too few images) raises
`CnnvitError` with one line saying what is wrong and what to do. The CLI prints that line and
exits non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class CnnvitError(Exception):
    """An error caused by the user's input or environment, shown as one line without traceback."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty:
    what a one-line CnnvitError quotes from a library's error."""
    text = str(err)
    return text.splitlines()[0] if text.strip() else type(err).__name__
