"""JSON: the result document of DESIGN.md, deterministic (sorted nothing, stable order)."""

from __future__ import annotations

import json
from typing import Any


def render(result: Any) -> str:
    """``result.to_dict()`` as indented JSON; the same inputs give byte-identical output."""
    return json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
