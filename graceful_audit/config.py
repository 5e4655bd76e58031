"""Options from configuration files: ``[tool.gaudit.flips]`` in pyproject.toml, ``gaudit.toml``.

One declarative table (:data:`OPTIONS`) says which keys each command accepts and their
types; command-line flags and file values fill the same parameters, and a flag given on
the command line always wins. Keys are the long flag names (``max-nfr``); ``max_nfr`` is
accepted too. Files are parsed with :mod:`tomllib` only (no eval, no code).

Search order without ``--config``: from the working directory upward, the first folder that
holds a ``gaudit.toml`` (tables ``[flips]`` / ``[compat]``) or a ``pyproject.toml`` with a
``[tool.gaudit]`` table.
"""

from __future__ import annotations

import io
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .io import check_column_names, read_bytes

GATE_KEYS_FLIPS = ("max-nfr", "max-nfi", "max-error-delta", "min-btc", "max-churn",
                   "max-class-nfr", "max-slice-nfr", "max-mae-delta", "max-rmse-delta",
                   "min-score-delta", "max-auc-drop", "max-f1-drop")
GATE_KEYS_COMPAT = ("require-compatible", "min-update-gain", "max-retrieval-nfr",
                    "min-cross-top1", "max-cross-drop")

#: Keys that name columns: an empty name is an error naming the file and key.
COLUMN_KEYS = ("id-col", "label-col", "pred-col", "score-cols", "slice-by", "embedding-col",
               "split-col", "outcome-col")

#: Accepted keys per command and their types.
OPTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "flips": {
        **{k: float for k in GATE_KEYS_FLIPS},
        "labels": str, "id-col": list, "label-col": str, "pred-col": str, "score-cols": str,
        "outcome-col": str, "pass-threshold": float, "threshold": float, "slice-by": list,
        "top": int, "confidence": float,
        "allow-unmatched": bool, "memory-limit": str, "task": str, "atol": float,
        "rtol": float, "engine": str, "spark-remote": str, "spark-conf": list,
        "log-to": str, "mlflow-experiment": str,
        "what-if": bool, "what-if-steps": int,
    },
    "compat": {
        **{k: float for k in GATE_KEYS_COMPAT},
        "require-compatible": bool,
        "id-col": str, "label-col": str, "embedding-col": str, "split-col": str,
        "metric": str, "criterion": str, "top": int, "confidence": float,
        "allow-unmatched": bool, "qrels": str, "log-to": str, "mlflow-experiment": str,
        "memory-limit": str, "sample-queries": int, "seed": int,
        "engine": str, "spark-remote": str, "spark-conf": list,
    },
}


@dataclass(frozen=True)
class FileConfig:
    """The options one file gives one command, and where they came from."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The file, relative to the working directory when that is shorter."""
        if self.path is None:
            return "defaults"
        import os

        try:
            rel = os.path.relpath(self.path)
        except ValueError:  # another drive on Windows
            return str(self.path)
        return rel if len(rel) < len(str(self.path)) else str(self.path)


def _name(path: Path) -> str:
    """A config file as messages name it (relative to the working directory if shorter)."""
    return FileConfig(path).source


def _load(path: Path) -> dict[str, Any]:
    if path.is_socket():
        raise UsageError(f"{_name(path)}: is a socket, not a config file.")
    try:
        # Not path.open(): a pipe (--config /dev/stdin) without a writer would block forever.
        return tomllib.load(io.BytesIO(read_bytes(path, f"--config {path}")))
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file.") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{_name(path)}: is not valid TOML ({exc}).") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{_name(path)}: is not UTF-8 text (byte "
                         f"{exc.object[exc.start]:#04x} at offset {exc.start}); save it as "
                         "UTF-8.") from None
    except OSError as exc:
        raise UsageError(f"{_name(path)}: cannot be read ({exc.strerror}).") from None


def _table(value: Any, path: Path, name: str) -> dict[str, Any]:
    """``value`` when it is a TOML table; UsageError naming ``[name]`` otherwise."""
    if not isinstance(value, dict):
        holds = ("the tables [tool.gaudit.flips] and [tool.gaudit.compat]"
                 if name in ("tool", "tool.gaudit") else "options such as max-nfr = 0.01")
        raise UsageError(f"{_name(path)}: '{name}' must be a table holding {holds}, "
                         f"got {value!r}.")
    return value


def _section(path: Path, data: dict[str, Any], command: str) -> dict[str, Any] | None:
    """The command's table of a pyproject.toml (``tool.gaudit.CMD``) or gaudit.toml (``CMD``);
    None when the file has no such table."""
    if path.name == "pyproject.toml":
        tool = data.get("tool")
        if tool is None:
            return None
        tool = _table(tool, path, "tool").get("gaudit")
        if tool is None:
            return None
        tool = _table(tool, path, "tool.gaudit")
        unknown = set(tool) - set(OPTIONS)
        if unknown:
            raise UsageError(f"{_name(path)}: unknown table "
                             f"[tool.gaudit.{sorted(unknown)[0]}]; "
                             f"known: {', '.join(f'[tool.gaudit.{c}]' for c in OPTIONS)}.")
        for name, table in tool.items():
            _table(table, path, f"tool.gaudit.{name}")
        return tool.get(command)
    unknown = set(data) - set(OPTIONS)
    if unknown:
        raise UsageError(f"{_name(path)}: unknown table [{sorted(unknown)[0]}]; "
                         f"known: {', '.join(f'[{c}]' for c in OPTIONS)}.")
    for name, table in data.items():
        _table(table, path, name)
    return data.get(command)


def find_config(explicit: str | None, command: str, cwd: Path | None = None) -> FileConfig:
    """Load the options for ``command`` from ``explicit`` or the nearest config file.

    Without ``explicit``: the nearest folder, from ``cwd`` upward, whose ``gaudit.toml`` has
    a ``[CMD]`` table or whose ``pyproject.toml`` has ``[tool.gaudit.CMD]``; a file with
    settings for the other command only does not hide a farther file's. Both files of one
    folder holding the command's table is a :class:`UsageError` (which would win is not
    obvious), and so is an ``explicit`` file without the command's table: its settings,
    gates included, would silently not apply.
    """
    if explicit is not None:
        if not explicit.strip():
            raise UsageError("--config: the path is empty; give the config file's path.")
        path = Path(explicit)
        section = _section(path, _load(path), command)
        if section is None:
            table = (f"[tool.gaudit.{command}]" if path.name == "pyproject.toml"
                     else f"[{command}]")
            raise UsageError(
                f"--config {_name(path)}: has no {table} table, so none of its settings "
                f"would apply to gaudit {command}. Add the table, or check the file's name."
            )
        return FileConfig(path, validate(section, command, path))
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        found = []
        for name in ("gaudit.toml", "pyproject.toml"):
            path = folder / name
            if path.is_file():
                section = _section(path, _load(path), command)
                if section is not None:
                    found.append((path, section))
        if len(found) > 1:
            raise UsageError(
                f"{_name(found[0][0])} and {_name(found[1][0])} both hold gaudit {command} "
                "settings; keep them in one file, so that it is clear which ones apply."
            )
        if found:
            path, section = found[0]
            return FileConfig(path, validate(section, command, path))
    return FileConfig()


def validate(section: dict[str, Any], command: str, path: Path) -> dict[str, Any]:
    """Normalise keys (``_`` -> ``-``) and check every key and type; UsageError otherwise."""
    allowed = OPTIONS[command]
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}  # normalised key -> the key as written
    for raw_key, value in section.items():
        key = raw_key.replace("_", "-")
        if key in spelled:  # ``max_nfr`` and ``max-nfr`` in one table: which one is meant?
            raise UsageError(
                f"{_name(path)}: {spelled[key]!r} and {raw_key!r} in the {command} settings "
                "are the same option spelled two ways; keep one of them."
            )
        spelled[key] = raw_key
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"{_name(path)}: unknown key {raw_key!r} in the {command} "
                             f"settings.{hint}")
        want = allowed[key]
        if key == "require-compatible":
            want = bool
        out[key] = _typed(value, want, raw_key, path)
        if key in COLUMN_KEYS:
            check_column_names({f"{path}: {raw_key!r}": out[key]})
        elif key == "memory-limit":
            from .engine import check_memory_limit

            check_memory_limit(out[key], f"{path}: {raw_key!r}")
    return out


def _typed(value: Any, want: Any, key: str, path: Path) -> Any:
    bad = UsageError(f"{_name(path)}: {key!r} must be {_type_name(want)}, "
                     f"got {value!r}.")
    if want is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if want is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        if not math.isfinite(value):
            raise bad
        return float(value)
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if want is list:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad
        return list(value)
    if not isinstance(value, str):
        raise bad
    return value


def _type_name(want: Any) -> str:
    return {bool: "true or false", float: "a number", int: "an integer",
            list: "a list of strings", str: "a string"}.get(want, str(want))
