"""Reading: turn a path, a DataFrame or an Arrow table into a DuckDB view.

Inputs are CSV (with or without a UTF-8 byte-order mark), Parquet, a directory of Parquet
(or CSV) files, or a glob. Nothing is loaded into Python here: each input becomes a view
in an in-process DuckDB connection, so later steps read only the columns they use
(projection pushdown) and join out of core. Every problem becomes one :class:`InputError`
that names the file and says what to do.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import GauditError, InputError, UsageError

if TYPE_CHECKING:
    import duckdb

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
GLOB_CHARS = set("*?[")

INTEGER_TYPES = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
    "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
}  # fmt: skip
FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}


def is_integer_type(t: str) -> bool:
    return t in INTEGER_TYPES


def is_float_type(t: str) -> bool:
    return t in FLOAT_TYPES or t.startswith("DECIMAL")


def is_numeric_type(t: str) -> bool:
    return is_integer_type(t) or is_float_type(t)


def is_list_type(t: str) -> bool:
    return t.endswith("]")


def quote(name: str) -> str:
    """Quote an identifier for DuckDB SQL."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """Quote a string literal for DuckDB SQL."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Table:
    """One input, registered as a DuckDB view.

    Attributes
    ----------
    role : str
        What the input is for, used in messages: ``"OLD"``, ``"NEW"`` or ``"LABELS"``.
    display : str
        The path as the user gave it, or ``<DataFrame>`` / ``<Arrow table>``.
    view : str
        Name of the DuckDB view holding the rows.
    columns : dict
        Column name -> DuckDB type, in file order.
    rows : int
        Number of rows read.
    """

    role: str
    display: str
    view: str
    columns: dict[str, str]
    rows: int

    @property
    def label(self) -> str:
        return f"{self.role} file {self.display}"

    def has(self, column: str) -> bool:
        return column in self.columns

    def type_of(self, column: str) -> str:
        return self.columns[column]

    def missing_column(self, column: str, option: str | None = None, hint: str = "") -> InputError:
        """The error for a column that is not there: lists the columns and the closest."""
        present = ", ".join(self.columns) or "(none)"
        close = difflib.get_close_matches(column, list(self.columns), n=1, cutoff=0.5)
        if not close:
            lowered = {c.lower(): c for c in self.columns}
            close = [lowered[column.lower()]] if column.lower() in lowered else []
        msg = f"{self.label}: no column {column!r}. Columns present: {present}."
        if close:
            msg += f" Closest match: {close[0]!r}"
            msg += f" (use {option} {close[0]})." if option else "."
        if hint:
            msg += " " + hint
        return InputError(msg)


def check_column_names(flags: dict[str, str | Sequence[str] | None]) -> None:
    """Raise :class:`UsageError` for a column option given as an empty or blank name.

    ``flags`` maps the option (``--id-col``, or a config file and key) to its value.
    """
    for flag, value in flags.items():
        values = [value] if isinstance(value, str) or value is None else list(value)
        for v in values:
            if v is not None and not v.strip():
                blank = " (only whitespace)" if v else ""
                raise UsageError(f"{flag}: the column name is empty{blank}; give a column "
                                 "name, or leave the option out for the default.")


def resolve_column(
    table: Table,
    requested: str | None,
    default: str,
    synonyms: Sequence[str] = (),
) -> str | None:
    """Find a column: the one the user named, else ``default`` or a known synonym.

    An explicitly requested column must exist exactly; the default is also matched
    case-insensitively and through ``synonyms``. Returns ``None`` when nothing fits.
    """
    if requested is not None:
        return requested if table.has(requested) else None
    lowered = {c.lower(): c for c in table.columns}
    for name in (default, *synonyms):
        if table.has(name):
            return name
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


#: How long a named pipe without a writer is waited for before it is refused.
PIPE_WAIT = 1.0


def special_kind(path: str) -> str | None:
    """What ``path`` is when it is not a regular file or a directory, else ``None``.

    ``stat`` never blocks, so this is safe on a pipe nobody writes to.
    """
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISCHR(mode):
        return "terminal" if _is_tty(path) else "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISBLK(mode):
        return "device"
    return None


def _is_tty(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    try:
        return os.isatty(fd)
    finally:
        os.close(fd)


def read_pipe(path: str, sink: Any, what: str, wait: float = PIPE_WAIT) -> int:
    """Copy a named pipe (``/dev/stdin``, ``<(cmd)``, a FIFO) into ``sink``; bytes copied.

    A pipe can be read once only, and ``open()`` of a FIFO without a writer blocks
    forever: the pipe is opened without blocking, waited for at most ``wait`` seconds
    while nobody writes to it, then read to its end. ``what`` names it in messages.
    """
    import errno
    import select
    import time

    refuse = InputError(
        f"{what}: is a pipe that gave no data within {wait:g} s (nobody writes to it, or it "
        "was read already: a pipe can be read once). Write the data to a file first and "
        "pass its path."
    )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"{what}: cannot be read ({exc.strerror}).") from None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + wait
    total, writer_seen = 0, False
    try:
        while True:
            try:
                chunk = os.read(fd, 1 << 20)
            except BlockingIOError:  # a writer is connected, no data yet: wait for it
                writer_seen = True
                poller.poll()
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise InputError(f"{what}: cannot be read ({exc.strerror}).") from None
            if chunk:
                writer_seen = True
                sink.write(chunk)
                total += len(chunk)
                continue
            # End of file: the writer closed it, or none has connected yet.
            if writer_seen or total:
                return total
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise refuse
            time.sleep(min(remaining, 0.02))
    finally:
        os.close(fd)


def read_bytes(path: str | os.PathLike[str], what: str | None = None) -> bytes:
    """The bytes of a small file (a config file), never blocking on a pipe or terminal."""
    import io as _io

    name = os.fspath(path)
    kind = special_kind(name)
    if kind == "pipe":
        buf = _io.BytesIO()
        read_pipe(name, buf, what or name)
        return buf.getvalue()
    if kind is not None:
        raise InputError(f"{what or name}: is a {kind}, not a file. Write it to a file first.")
    with open(name, "rb") as fh:
        return fh.read()


def _files_for(path: str) -> tuple[list[str], str]:
    """Expand a path, directory or glob into data files and their format."""
    if any(ch in GLOB_CHARS for ch in path) and not os.path.exists(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise InputError(f"{path}: no file matches this pattern. Check the path and quoting.")
    elif os.path.isdir(path):
        files = sorted(
            str(p)
            for p in Path(path).rglob("*")
            if p.is_file()
            and p.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES)
            and not p.name.startswith((".", "_"))
        )
        if not files:
            raise InputError(
                f"{path}: the directory holds no .parquet, .csv or .jsonl files. "
                "Point at the data files or at a directory that contains them."
            )
    elif os.path.exists(path):
        files = [path]
    else:
        raise InputError(f"{path}: no such file or directory.")
    formats = {_format_of(f) for f in files}
    if len(formats) > 1:
        raise InputError(
            f"{path}: mixes {' and '.join(FORMAT_NAMES[f] for f in FORMAT_NAMES if f in formats)}"
            " files; "
            "give one format per input."
        )
    return files, formats.pop()


FORMAT_NAMES = {"parquet": "Parquet", "csv": "CSV", "json": "JSON Lines"}


def _format_of(file: str) -> str:
    name = file.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSON_SUFFIXES):
        return "json"
    try:
        with open(file, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InputError(f"{file}: cannot be read ({exc.strerror}).") from None
    if magic[:2] == b"\x1f\x8b" and not name.endswith((".csv.gz", ".tsv.gz")) \
            and _gzip_json(file):
        return "json"  # gzip-compressed JSON Lines under another name
    return "parquet" if magic == b"PAR1" else "csv"  # a Parquet file named .csv is Parquet


def _check_readable(files: list[str], display: str) -> None:
    for f in files:
        try:
            size = os.path.getsize(f)
            with open(f, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"{f}: cannot be read ({exc.strerror}).") from None
        if size == 0:
            where = f if f == display else f"{f} (in {display})"
            raise InputError(f"{where}: the file is empty. Write the predictions first.")


def _gzip_json(file: str) -> bool:
    """Whether a gzip file holds JSON Lines (its first character is ``{``)."""
    import gzip

    try:
        with gzip.open(file, "rb") as fh:
            return fh.read(64).lstrip()[:1] == b"{"
    except (OSError, EOFError):
        return False


def engine_message(exc: BaseException) -> str:
    """A DuckDB error in one line: its first line, or for a CSV value that does not fit
    its column, which file, line, column and value."""
    full = str(exc).strip()
    csv_error = re.search(r"CSV Error on Line: (\d+)", full)
    convert = re.search(r'converting column "([^"]*)"\. Could not convert string "([^"]*)" '
                        r"to '([^']*)'", full)
    file = re.search(r"^\s*file = (.+)$", full, flags=re.M)
    if csv_error and convert:
        where = f"{file.group(1).strip()}, line {csv_error.group(1)}" if file else \
            f"line {csv_error.group(1)}"
        col, value, dtype = convert.groups()
        return (f"{where}: column {col!r} holds {value!r}, which is not a {dtype} like the "
                "rows before it")
    text = full.splitlines()[0] if full else type(exc).__name__
    for prefix in ("Invalid Input Error: ", "IO Error: ", "Conversion Error: ",
                   "Binder Error: ", "Parser Error: ", "Invalid Error: "):
        text = text.removeprefix(prefix)
    return text


def _ragged_csv(file: str, limit: int = 200_000) -> str | None:
    """The first line whose field count differs from the header's, described; else None."""
    import csv

    try:
        with open(file, encoding="utf-8-sig", newline="") as fh:
            rows = csv.reader(fh)
            header = next(rows, None)
            if not header:
                return None
            for number, row in enumerate(rows, start=2):
                if row and len(row) != len(header):
                    return (f"line {number} has {len(row)} fields where the header has "
                            f"{len(header)} ({', '.join(header)})")
                if number > limit:
                    break
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _renamed_duplicate(column: str, columns: dict[str, str]) -> bool:
    """Whether ``column`` may be DuckDB's rename of a repeated name (``pred`` -> ``pred_1``)."""
    m = re.fullmatch(r"(.+)_\d+", column)
    return bool(m) and m.group(1).lower() in {c.lower() for c in columns}


def _header_fields(file: str) -> list[str]:
    """The names in a CSV file's header line, split at the delimiter that splits it most."""
    import csv

    try:
        with open(file, encoding="utf-8-sig", newline="") as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError):
        return []
    splits = [next(csv.reader([line], delimiter=d), []) for d in (",", "\t", ";", "|")]
    return [f.strip() for f in max(splits, key=len)]


def _raw_names(source: Any, files: list[str], fmt: str) -> list[tuple[str, list[str]]]:
    """The column names each input holds as written, before DuckDB renames repeats."""
    if fmt == "csv":
        return [(f, _header_fields(f)) for f in files]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        out = []
        for f in files:
            try:
                out.append((f, list(pq.read_schema(f).names)))
            except Exception:  # unreadable here: DuckDB read it, keep its names
                continue
        return out
    if hasattr(source, "iloc"):
        return [("", [str(c) for c in source.columns])]
    return [("", list(getattr(source, "column_names", [])))]


def check_unique_names(names: Sequence[str], where: str, header: bool) -> None:
    """Raise :class:`InputError` when a column name occurs twice (ignoring case, as SQL
    does): the engine would silently read one of them under another name (``NAME_1``)."""
    seen: dict[str, str] = {}
    for name in names:
        if name.lower() in seen:
            first = seen[name.lower()]
            same = (f"the column name {name!r} occurs twice" if first == name else
                    f"columns {first!r} and {name!r} have the same name (ignoring case)")
            raise InputError(
                f"{where}: {same}{' in the header' if header else ''}, so one of them would "
                "be read under another name. Rename or drop one of them."
            )
        seen[name.lower()] = name


def _check_unique_names(source: Any, files: list[str], fmt: str, label: str) -> None:
    for file, names in _raw_names(source, files, fmt):
        where = label if not file or file in label else f"{label} ({file})"
        check_unique_names(names, where, fmt == "csv")


def out_of_memory(exc: BaseException) -> UsageError:
    """DuckDB ran out of the memory it was given: the fix is the flag, not the data."""
    return UsageError(f"the engine ran out of memory ({engine_message(exc)}). Raise "
                      "--memory-limit (e.g. 4GB), or leave it out for 80% of the machine's "
                      "memory.")


def bad_json_line(file: str) -> tuple[int, str] | None:
    """The first line of a JSON Lines file (gzip or not) that is not one JSON object, and
    why; None when every line is one. Blank lines are allowed (as DuckDB and Spark skip
    them). Read only after the engine has refused the file, to name the line."""
    import gzip
    import json

    opener: Any = gzip.open if _is_gzip(file) else open
    try:
        with opener(file, "rt", encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    return number, f"not valid JSON ({exc.msg} at column {exc.colno})"
                if not isinstance(value, dict):
                    return number, f"a JSON {type(value).__name__}, not an object"
    except UnicodeDecodeError:
        return None
    except (OSError, EOFError):
        return None
    return None


def _is_gzip(file: str) -> bool:
    try:
        with open(file, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def json_lines_error(display: str, files: Sequence[str], detail: str) -> InputError:
    """The error for a JSON Lines input the engine could not read: which file and line."""
    for f in files:
        found = bad_json_line(f) if os.path.exists(f) else None
        if found is not None:
            number, why = found
            where = f if f == display else f"{f} (in {display})"
            return InputError(
                f"{where}, line {number}: is {why}. Each line of a JSON Lines file must be "
                "one JSON object (one example); fix or remove that line."
            )
    return InputError(f"{display}: cannot be read as JSON Lines ({detail}). Each line must be "
                      "one JSON object, in UTF-8.")


def _read_error(display: str, fmt: str, exc: BaseException,
                files: Sequence[str] | None = None) -> GauditError:
    if type(exc).__name__ == "OutOfMemoryException":
        return out_of_memory(exc)
    detail = engine_message(exc)
    full = str(exc)
    if fmt == "csv" and ("unicode" in full.lower() or "utf-8" in full.lower()):
        return InputError(
            f"{display}: is not UTF-8 encoded text ({detail}). "
            "Save the CSV as UTF-8, or convert it to Parquet."
        )
    if fmt == "parquet":
        return InputError(
            f"{display}: is not a readable Parquet file ({detail}). "
            "The file may be truncated or corrupt; write it again."
        )
    if fmt == "json":
        return json_lines_error(display, files or [], detail)
    return InputError(f"{display}: cannot be read as CSV ({detail}).")


#: The first bytes of files that are often saved under a .csv name but are not text.
BINARY_MAGIC = {
    b"PK\x03\x04": "a zip archive (an Excel .xlsx workbook?)",
    b"\xd0\xcf\x11\xe0": "an Excel .xls workbook (or another OLE file)",
}


def _csv_options(file: str, display: str) -> str:
    """The ``read_csv`` options a CSV file needs: its encoding (UTF-16 with a byte-order
    mark: Excel's "Unicode text") or compression (gzip not named .gz); refuses a binary,
    JSON or HTML file named like a CSV."""
    if file.lower().endswith((".gz", ".zst")):
        return ""
    try:
        with open(file, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return ""
    for magic, what in BINARY_MAGIC.items():
        if head.startswith(magic):
            raise InputError(f"{display}: is {what}, not CSV text. Save it as CSV (UTF-8) or "
                             "Parquet, or name a Parquet file .parquet.")
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    json_like = text[:1] == b"{" or re.match(rb"\[\s*[\[{]", text) is not None
    markup = re.match(rb"<(!doctype|\?xml|html)", text, flags=re.I) is not None
    kind = ("JSON" if json_like else
            "HTML or XML (an error page saved instead of the data?)" if markup else None)
    if kind:
        fix = ("Name a JSON Lines file (one object per line) .jsonl, which gaudit reads, or "
               "convert it to CSV or Parquet." if json_like else "Convert it to CSV or Parquet.")
        raise InputError(f"{display}: is {kind}, not CSV with a header row. {fix}")
    if head.startswith(b"\x1f\x8b"):  # gzip without a .gz name
        return ", compression = 'gzip'"
    if head.startswith(b"\xff\xfe"):
        return ", encoding = 'utf-16'"
    if head.startswith(b"\xfe\xff"):
        raise InputError(f"{display}: is UTF-16 big-endian text. Save the CSV as UTF-8.")
    return ""


class Reader:
    """Registers inputs as views in one DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, spill: str | None = None) -> None:
        self.con = con
        self.spill = spill  # a private folder for copies of pipes
        self._count = 0

    def _next_view(self, role: str) -> str:
        self._count += 1
        return f"gaudit_{role.lower()}_{self._count}"

    def open(self, source: Any, role: str, *, text_columns: Sequence[str] = ()) -> Table:
        """Register ``source`` (path, DataFrame or Arrow table) as a view and describe it.

        ``text_columns`` are read as text from CSV files (ids: ``007`` stays ``007``).
        """
        view = self._next_view(role)
        if isinstance(source, (str, os.PathLike)):
            display = os.fspath(source)
            if not display.strip():
                raise InputError(f"{role} file: the path is empty; give the file's path.")
            files, fmt = _files_for(self._regular(display, role))
            _check_readable(files, display)
            scan = self._scan_sql(files, fmt, display, text_columns)
        else:
            display = "<DataFrame>" if hasattr(source, "iloc") else "<Arrow table>"
            if not (hasattr(source, "iloc") or hasattr(source, "schema")):
                raise InputError(
                    f"{role}: expected a path, a pandas DataFrame or an Arrow table, "
                    f"got {type(source).__name__}."
                )
            data_name = view + "_data"
            try:
                self.con.register(data_name, source)  # zero-copy for DataFrames and Arrow
            except Exception:
                # DuckDB cannot scan some pandas memory layouts in place (a reversed view,
                # df[::-1], raises std::bad_cast): hand it a contiguous copy instead.
                if not hasattr(source, "copy"):
                    raise
                self.con.register(data_name, source.copy())
            scan, fmt = quote(data_name), "table"
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS SELECT * FROM {scan}")
            described = self.con.execute(f"DESCRIBE {quote(view)}").fetchall()
            rows = self.con.execute(f"SELECT count(*) FROM {quote(view)}").fetchall()[0][0]
        except InputError:
            raise
        except Exception as exc:  # duckdb.Error and friends: a file DuckDB cannot read
            raise _read_error(display, fmt, exc, files if fmt == "json" else None) from None
        columns = {name: str(dtype) for name, dtype, *_ in described}
        if fmt == "csv" and len(columns) == 1 and "," in next(iter(columns)):
            # DuckDB's sniffer reads a file whose rows disagree on their field count as one
            # column named after the whole header line: say which row is wrong instead.
            problem = _ragged_csv(files[0]) or "its rows could not be split into columns"
            raise InputError(
                f"{display}: {problem}. Quote fields that contain commas, or fix the row."
            )
        if any(_renamed_duplicate(c, columns) for c in columns):
            _check_unique_names(source, files if fmt in ("csv", "parquet") else [], fmt,
                                f"{role} file {display}")
        table = Table(role, display, view, columns, int(rows))
        if fmt == "csv" and list(columns) == ["column0"] and rows <= 1:
            raise InputError(f"{display}: has no header row with column names.")
        if table.rows == 0:
            raise InputError(
                f"{table.label}: has no rows (columns: {', '.join(columns) or 'none'}). "
                "An audit needs at least one prediction."
            )
        return table

    def _regular(self, path: str, role: str) -> str:
        """``path``, or for a pipe (``/dev/stdin``, ``<(cmd)``, a FIFO) a private copy of
        what it gave, since a pipe can be read only once and the file is read several
        times; terminals and devices are refused. ``-`` is standard input."""
        what = f"{role} file {path}"
        if path == "-" and not os.path.exists(path):
            path = "/dev/stdin"
        kind = special_kind(path)
        if kind is None:
            return path
        if kind != "pipe" or self.spill is None:
            raise InputError(
                f"{what}: is a {kind}, not a file. Write the data to a file and pass its path"
                + (" (or pipe it in: gaudit reads /dev/stdin when it is a pipe)."
                   if kind == "terminal" else ".")
            )
        copy = os.path.join(self.spill, f"{role.lower()}-{self._count}")
        with open(copy, "wb") as sink:
            size = read_pipe(path, sink, what)
        if size == 0:
            raise InputError(f"{what}: the pipe gave no data. Write the predictions first.")
        with open(copy, "rb") as fh:
            magic = fh.read(4)
        suffix = next((s for s in PARQUET_SUFFIXES + CSV_SUFFIXES + JSON_SUFFIXES
                       if path.lower().endswith(s)), None)
        if suffix is None:
            suffix = (".parquet" if magic == b"PAR1" else
                      ".jsonl" if magic.lstrip()[:1] == b"{" else
                      (".jsonl.gz" if _gzip_json(copy) else ".csv.gz")
                      if magic[:2] == b"\x1f\x8b" else ".csv")
        os.replace(copy, copy + suffix)
        return copy + suffix

    def _scan_sql(self, files: list[str], fmt: str, display: str, text_cols: Sequence[str]) -> str:
        file_list = "[" + ", ".join(sql_string(f) for f in files) + "]"
        if fmt == "parquet":
            return f"read_parquet({file_list}, union_by_name = true)"
        if fmt == "json":
            return self._json_scan(files, file_list, display)
        scans = [self._csv_scan(f, display, text_cols) for f in files]
        if len(set(scans)) == 1:
            return scans[0]
        # Files whose dialect or columns differ: each read as sniffed, matched by name.
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {scan}" for scan in scans)
        return f"({union})"

    def _json_scan(self, files: list[str], file_list: str, display: str) -> str:
        """``read_json`` of JSON Lines files (gzip by name or content) with the columns
        and types found once over every line (``sample_size = -1``: a key that first
        appears, or changes type, late in the file is not missed), spelled out so that
        the view does not detect them again for each query. Nested objects are STRUCT
        columns, reached by dotted paths (:mod:`graceful_audit.outcomes`)."""
        gz = ", compression = 'gzip'" if any(_is_gzip(f) and not f.lower().endswith(".gz")
                                             for f in files) else ""
        base = (f"read_json({file_list}, format = 'newline_delimited', records = true, "
                f"union_by_name = true{gz}")
        try:
            described = self.con.execute(
                f"DESCRIBE SELECT * FROM {base}, sample_size = -1)").fetchall()
        except Exception as exc:
            raise _read_error(display, "json", exc, files) from None
        columns = ", ".join(f"{sql_string(name)}: {sql_string(str(dtype))}"
                            for name, dtype, *_ in described)
        return f"{base}, auto_detect = false, columns = {{{columns}}})"

    def _csv_scan(self, file: str, display: str, text_cols: Sequence[str]) -> str:
        """``read_csv`` of one file with its dialect and column types spelled out.

        DuckDB's sniffer samples the file for its dialect and the type of every column;
        in a view over ``read_csv(...)`` it would run again for every query (8 times in an
        audit, each as slow as a full scan of a 2,000-column file). It runs once here, and
        the view reads with ``auto_detect = false`` and explicit columns: the same types,
        except ``text_cols`` (ids: ``007`` stays ``007``) and columns sniffed as booleans
        are text, so that ``yes``/``no`` or ``T``/``F`` stay as written (``true`` and
        ``false`` are compared as 1 and 0 later, see :func:`graceful_audit.align._value_expr`).
        """
        extra = _csv_options(file, display)
        try:
            row = self.con.execute(
                f"SELECT Delimiter, Quote, Escape, NewLineDelimiter, Comment, SkipRows, "
                f"Columns, DateFormat, TimestampFormat FROM sniff_csv({sql_string(file)}, "
                f"header = true{extra})"
            ).fetchone()
        except Exception as exc:
            raise _read_error(display, "csv", exc) from None
        assert row is not None
        delim, quote_char, escape, new_line, comment, skip, sniffed, date_fmt, ts_fmt = row
        text = set(text_cols)
        types = {}
        for col in sniffed:
            name, dtype = col["name"], col["type"]
            types[name] = "VARCHAR" if name in text or dtype == "BOOLEAN" else dtype
        columns = ", ".join(f"{sql_string(n)}: {sql_string(t)}" for n, t in types.items())
        options = [f"delim = {sql_string(delim)}", f"skip = {int(skip)}", "header = true",
                   "auto_detect = false", f"columns = {{{columns}}}"]
        for name, value in (("quote", quote_char), ("escape", escape),
                            ("new_line", new_line), ("comment", comment)):
            options.append(f"{name} = {sql_string('' if value == '(empty)' else value)}")
        if date_fmt:
            options.append(f"dateformat = {sql_string(date_fmt)}")
        if ts_fmt:
            options.append(f"timestampformat = {sql_string(ts_fmt)}")
        return f"read_csv({sql_string(file)}, {', '.join(options)}{extra})"
