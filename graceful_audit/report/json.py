"""JSON: the result document of DESIGN.md, deterministic (sorted nothing, stable order).

Objects are indented by two spaces per level; a list holding objects or lists puts each
item on one line of its own (the per-class rows, the flip matrix, the worst flips), which
reads and diffs well, and is smaller and faster to write than indenting every item: the
flip matrix of a 100-class model has up to 9,900 entries.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..textsafe import FORMAT_CHARS

#: Characters that change how a terminal or an editor shows the text around them (the
#: format characters of :mod:`..textsafe`, and the zero-width space and joiners): written as
#: ``\uXXXX`` escapes, the same JSON string (ASCII control characters are escaped by
#: :mod:`json` itself).
_INVISIBLE = re.compile(f"[{FORMAT_CHARS}\u200b-\u200d]")

_compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _encode(value: Any, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict) and value:
        items = (f"{inner}{_compact(k)}: {_encode(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _compact(v) for v in value) + f"\n{pad}]"
    return _compact(value)


def render(result: Any) -> str:
    """``result.to_dict()`` as JSON; the same inputs give byte-identical output.

    Bidi overrides and other invisible format characters are written as ``\\uXXXX``
    escapes, so a terminal shows the document as it is. ``##[`` in a string is written
    ``##\\u005b`` (the same JSON value): anywhere in a line
    of a CI log, it starts a legacy GitHub Actions workflow command. No line can start with
    ``::``, the other kind: every line starts with a brace, a bracket, a quote or a space.
    """
    text = _encode(result.to_dict(), "").replace("##[", "##\\u005b")
    return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text) + "\n"
