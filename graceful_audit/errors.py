"""The one exception family for expected failures.

Every problem with the user's input or command line is raised as a :class:`GauditError`
subclass carrying a message that says which file, which column, which ids and what to do.
The command line prints the message and exits with code 2, never a traceback.
"""

from __future__ import annotations


class GauditError(Exception):
    """An expected failure: wrong input or wrong usage (exit code 2)."""

    exit_code = 2


class InputError(GauditError):
    """An input file or table cannot be audited as it is."""


class UsageError(GauditError):
    """Options that contradict each other, or a threshold out of range."""


def examples(values: object, limit: int = 5) -> str:
    """Format up to ``limit`` example values for an error message: ``'a', 'b', ... (+3 more)``."""
    items = list(values)  # type: ignore[call-overload]
    shown = ", ".join(repr(v) for v in items[:limit])
    more = len(items) - limit
    return f"{shown}, ... (+{more} more)" if more > 0 else shown
