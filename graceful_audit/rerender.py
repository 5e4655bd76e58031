"""Re-rendering: read a saved JSON result back into its result object, re-apply gates."""

from __future__ import annotations

import json
from typing import Any

from .errors import InputError, UsageError
from .gates import GATES, GateSpec, evaluate_gates
from .io import read_bytes


def load_result(path: str) -> Any:
    """A :class:`FlipsResult` or :class:`CompatResult` from a ``--format json`` document."""
    try:
        doc = json.loads(read_bytes(path, path).decode("utf-8"))  # never blocks on a pipe
    except FileNotFoundError:
        raise InputError(f"{path}: no such file.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: is not a JSON result of gaudit ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("schema_version") != 1:
        raise InputError(f"{path}: not a gaudit result (schema_version 1); save one with "
                         "--format json.")
    try:
        if doc.get("kind") == "flips":
            from .result import FlipsResult

            return FlipsResult.from_dict(doc)
        if doc.get("kind") == "compat":
            from .compat import CompatResult

            return CompatResult.from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: the result document is incomplete ({exc!r}).") from None
    raise InputError(f"{path}: unknown result kind {doc.get('kind')!r}.")


def regate(result: Any, specs: list[GateSpec]) -> Any:
    """``result`` with ``specs`` evaluated in place of its saved gates."""
    if result.kind == "compat":
        from .compat import COMPAT_GATES as registry
    else:
        registry = GATES
    wrong = [s.name for s in specs if s.name not in registry]
    if wrong:
        raise UsageError(f"--{wrong[0]} does not apply to a {result.kind} result; gates for it: "
                         f"{', '.join('--' + g for g in registry)}.")
    return result.with_gates(evaluate_gates(result, specs, registry))
