"""Reports: one module per format, each a function of the result object.

Every renderer is ``render(result) -> str``; none recomputes a metric. Where the text
goes (stdout, a file written atomically) is decided by :func:`write_report`.
"""

from __future__ import annotations

import contextlib
import enum
import glob
import io
import os
import stat
import tempfile
from collections.abc import Sequence
from typing import Any, assert_never

from ..errors import UsageError


class Format(str, enum.Enum):
    """Output formats. A test loops over every member, so none can be half-wired."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"
    JUNIT = "junit"


def render(result: Any, fmt: Format) -> str:
    """Render ``result`` (a flips or compat result) in ``fmt``."""
    if fmt is Format.TEXT:
        from .text import render_plain

        return render_plain(result)
    if fmt is Format.JSON:
        from .json import render as render_json

        return render_json(result)
    if fmt is Format.MARKDOWN:
        from .markdown import render as render_markdown

        return render_markdown(result)
    if fmt is Format.HTML:
        from .html import render as render_html

        return render_html(result)
    if fmt is Format.JUNIT:
        from .junit import render as render_junit

        return render_junit(result)
    assert_never(fmt)


Destination = tuple[str, str]  # (how the user named it, e.g. "--output", the path)


def _identity(path: str) -> tuple[object, ...] | None:
    """What two destinations must not share: standard output, a regular file (compared by
    device and inode, so another spelling, a symlink or a hard link of it is the same), a
    FIFO, or a path that does not exist yet (compared by its real path). None for a device
    such as ``/dev/null`` or a terminal, which any number of reports may share."""
    if path == "-":
        return ("stdout",)
    try:
        st = os.stat(path)
    except OSError:
        return ("new", os.path.realpath(path))
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return None
    with contextlib.suppress(OSError, ValueError):
        if os.path.samestat(st, os.fstat(1)):
            return ("stdout",)
    return ("file", st.st_dev, st.st_ino)


def _input_files(path: str) -> list[str]:
    """The local files an input names: itself, the files of a folder, a glob's matches;
    ``-`` is standard input (a file when the shell redirects one into it)."""
    if path == "-":
        return ["/dev/stdin"]
    if "://" in path:
        return []
    if os.path.isdir(path):
        return [os.path.join(root, f) for root, _, files in os.walk(path) for f in files]
    if os.path.exists(path) or not glob.has_magic(path):
        return [path]
    return glob.glob(path, recursive=True)


def check_destinations(destinations: Sequence[Destination],
                       inputs: Sequence[tuple[str, str | None]] = (),
                       summary: str | None = None) -> str | None:
    """Refuse, before any work is done, a report that would destroy a file.

    ``destinations``: every report of the run, as ``(how the user named it, path)``, e.g.
    ``("--report html:r.html", "r.html")``; ``inputs``: ``(role, path)`` of every file the
    run reads. A report may not be written onto an input (in any spelling, through a
    symlink or a hard link), onto the destination of another report of the same run, onto
    a folder, or to a path ending in a slash. :class:`UsageError` otherwise.

    Returns why the CI job summary file ``summary`` (``$GITHUB_STEP_SUMMARY``) must not be
    appended to, or None: it is standard output (the report there would stop being one
    document), an input of the run, or the destination of one of its reports.
    """
    inputs_at: dict[tuple[object, ...], str] = {}
    for role, path in inputs:
        if path is None or not isinstance(path, str):
            continue
        for name in _input_files(path):
            ident = _identity(name)
            if ident is not None and ident[0] in ("file", "new"):
                inputs_at.setdefault(ident, f"the {role} input {name}")
    reports_at: dict[tuple[object, ...], str] = {}
    for label, path in destinations:
        if not path:
            raise UsageError(f"{label.rstrip()} '': an empty path; give a file name, or '-' "
                             "for standard output.")
        if path != "-":
            if (path.endswith(("/", os.sep)) or os.path.isdir(path)
                    or os.path.basename(path) in (".", "..")):
                raise UsageError(f"{label}: is a folder; give a file name, e.g. "
                                 f"{os.path.join(path, 'report')}.")
            parent = os.path.dirname(os.path.abspath(path))
            while not os.path.exists(parent):
                parent = os.path.dirname(parent)
            if not os.path.isdir(parent):
                raise UsageError(f"{label}: cannot write there ({parent} is a file, not a "
                                 "folder).")
        ident = _identity(path)
        if ident is None:
            continue
        if ident in inputs_at:
            raise UsageError(f"{label}: that is {inputs_at[ident]}; writing the report there "
                             "would destroy it. Choose another file.")
        if ident in reports_at:
            raise UsageError(f"{label}: {reports_at[ident]} already writes there; give each "
                             "report a file of its own.")
        reports_at[ident] = label
    ident = _identity(summary) if summary else None
    if ident == ("stdout",):
        return "it is standard output"
    if ident in inputs_at:
        return f"it is {inputs_at[ident]}"
    if ident in reports_at:
        return f"{reports_at[ident]} writes there"
    return None


def _write_through(path: str) -> bool:
    """Whether ``path`` is to be opened and written rather than replaced by a rename:
    standard output, a device (``/dev/null``, a terminal), a FIFO, anything under ``/dev``
    or ``/proc`` (``/dev/stdout``, ``/dev/fd/3``), and a symlink leading to one of those."""
    seen = 0
    current = path
    while True:
        if os.path.abspath(current).startswith(("/dev/", "/proc/")):
            return True
        if not os.path.islink(current) or seen > 40:
            break
        current = os.path.join(os.path.dirname(current), os.readlink(current))
        seen += 1
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _stream_for(path: str) -> Any:
    """``sys.stdout`` or ``sys.stderr`` when ``path`` is that very stream (``/dev/stdout``
    redirected to a file must be appended to through the stream, not reopened), else None."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError,
                                 io.UnsupportedOperation):
            if os.path.samestat(os.stat(path), os.fstat(stream.fileno())):
                return stream
    return None


def write_report(text: str, path: str, what: str | None = None) -> None:
    """Write ``text`` to ``path``; a failed or interrupted run never leaves half a report
    nor a temporary file.

    ``-`` means standard output. Standard output, devices (``/dev/null``), FIFOs and
    anything under ``/dev`` or ``/proc`` are opened and written through, never replaced.
    A regular file or a new path is written to a temporary file beside it and renamed over
    it (atomic). A symlink to a regular file keeps the link: its target is replaced.
    Missing parent folders are created. ``what`` names the option in error messages
    (``--output PATH``).
    """
    import sys

    where = what or f"--output {path}"
    if not text.endswith("\n"):
        text += "\n"
    if path == "-" or _write_through(path):
        stream = sys.stdout if path == "-" else _stream_for(path)
        if stream is not None:
            stream.write(text)
            stream.flush()
            return
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        except OSError as exc:
            raise UsageError(f"{where}: cannot write there ({exc.strerror}).") from None
        return
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gaudit-", dir=folder)
    except OSError as exc:
        raise UsageError(f"{where}: cannot write there ({exc.strerror}).") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is an ordinary file
        os.replace(tmp, target)
    except BaseException as exc:
        from ..interrupt import shielded

        with shielded(), contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UsageError(f"{where}: cannot write there ({exc.strerror}).") from None
        raise
