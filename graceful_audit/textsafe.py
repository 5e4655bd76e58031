"""Text from the data, made safe for a terminal and a CI log.

Ids, labels, class and slice values, column names and paths may hold anything: ESC (colour
and OSC sequences that retitle or hyperlink a terminal), carriage returns that overwrite a
line, bidi overrides that reorder what is read, and lines that a GitHub Actions runner
executes as workflow commands (``::add-mask::``, ``::stop-commands::``). Every report and
every message goes through :func:`shown` (one value) or :func:`ci_safe` (whole text).
"""

from __future__ import annotations

import re
from typing import Any

# Characters that must never reach a terminal or a CI log as they are: C0 and C1 controls
# (ESC starts colour and OSC sequences), DEL, line and paragraph separators, the bidi
# embeddings, overrides, isolates and marks, the byte-order mark, and lone surrogates
# (which cannot even be encoded). :func:`shown` writes them as ``\n``, ``\x1b``, ``\u202e``.
#: The format characters among them, for a regular-expression class: what changes how the
#: text around them is shown (bidi marks, embeddings, overrides, isolates; line and
#: paragraph separators; the byte-order mark).
FORMAT_CHARS = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{FORMAT_CHARS}\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A line a GitHub Actions runner would execute as a workflow command: ``::name::value``
# after leading white space (and colour codes), or the legacy ``##[name]value`` anywhere.
_COMMAND_START = re.compile(r"^((?:[^\S\r\n]|\x1b\[[0-9;]*m)*)::", re.MULTILINE)
_LEGACY_COMMAND = re.compile(r"##\[")


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    named = _NAMED.get(c)
    if named:
        return named
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def shown(value: Any) -> str:
    r"""A value from the data (id, label, class, slice value, column name, path) as text
    that is safe in a terminal, a CI log or one table cell.

    Control characters, line breaks, ESC, bidi overrides and the like are written as
    escapes; everything else is kept. ``None`` gives ``""``.

    >>> print(shown("a\nb\x1b[31m\u202e"))
    a\nb\x1b[31m\u202e
    """
    if value is None:
        return ""
    return _UNSAFE.sub(_escape_char, str(value))


def ci_safe(text: str) -> str:
    r"""``text`` (a whole report or message) with no line a CI runner executes as a
    workflow command: a line starting with ``::`` gets a backslash before it (in place of a
    space of its indentation, so tables stay aligned), ``##[`` becomes ``#\#[``.
    """
    def defuse(m: re.Match[str]) -> str:
        pad = m.group(1)
        return (pad[:-1] if pad.endswith(" ") else pad) + "\\::"

    return _LEGACY_COMMAND.sub("#\\#[", _COMMAND_START.sub(defuse, text))



_UNSAFE_IN_MESSAGE = re.compile(  # as _UNSAFE, but for "\n"
    f"[\x00-\x09\x0b-\x1f\x7f-\x9f{FORMAT_CHARS}\ud800-\udfff]")


def message(text: str) -> str:
    """A message for stderr: like :func:`shown`, but its own line breaks are kept; and
    no line of it can be taken for a workflow command (:func:`ci_safe`)."""
    return ci_safe(_UNSAFE_IN_MESSAGE.sub(_escape_char, text))
