"""Ctrl-C and SIGTERM: stop at any moment, clean up, and say so with the right exit code.

The command line installs :func:`install` first thing. The first SIGINT or SIGTERM is
recorded and raised as :class:`KeyboardInterrupt`, so every ``finally`` on the way out runs:
the engine removes its private spill folder, :func:`graceful_audit.report.write_report`
removes its temporary file. Whatever exception reaches the error boundary afterwards (DuckDB
turns the interrupt into its own "Query interrupted" error, which the readers then report as
an unreadable file), :func:`received` tells the boundary that the run was interrupted.

Exit codes follow the shells: ``128 + signal``, so 130 for SIGINT ("gaudit: interrupted")
and 143 for SIGTERM ("gaudit: terminated", what a cancelled CI job sends).
A signal that was ignored when gaudit started (``nohup``, a background job) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

_received: int | None = None
_announced = False

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        return  # a second signal must not break off the clean-up of the first
    _received = signum
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT and SIGTERM as described above (main thread only)."""
    for sig in SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _handler)


def uninstall() -> None:
    """Ignore SIGINT and SIGTERM from now on (the process is exiting with its code)."""
    for sig in SIGNALS:
        if signal.getsignal(sig) is _handler:
            signal.signal(sig, signal.SIG_IGN)


def received() -> int | None:
    """The first signal received since :func:`install` (``None``: none)."""
    return _received


def exit_code(signum: int | None = None) -> int:
    """130 for SIGINT (and a KeyboardInterrupt without a signal), 143 for SIGTERM."""
    return 128 + int(signum or _received or signal.SIGINT)


def message(signum: int | None = None) -> str:
    sig = signum or _received or signal.SIGINT
    return "gaudit: terminated" if sig == signal.SIGTERM else "gaudit: interrupted"


def announce() -> bool:
    """True the first time it is called: print the interruption message only once."""
    global _announced
    first, _announced = not _announced, True
    return first


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a clean-up runs; one that arrived meanwhile is
    delivered (and raised) right after it."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:  # pragma: no cover - Windows
        yield
        return
    previous = block(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        block(signal.SIG_SETMASK, previous)
