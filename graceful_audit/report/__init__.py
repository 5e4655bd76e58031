"""Reports: one module per format, each a function of the result object.

Every renderer is ``render(result) -> str``; none recomputes a metric. Where the text
goes (stdout, a file written atomically) is decided by :func:`write_report`.
"""

from __future__ import annotations

import enum
import os
import tempfile
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


def write_report(text: str, path: str) -> None:
    """Write ``text`` to ``path`` atomically: a failed run never leaves half a report.

    ``-`` means standard output. Missing parent folders are created.
    """
    if path == "-":
        import sys

        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gaudit-", dir=folder)
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write there ({exc.strerror}).") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
