"""Engines: where reading, joining and counting run.

The flips audit is written once as SQL (:mod:`graceful_audit.align`,
:mod:`graceful_audit.count`) and run by an :class:`Engine`: DuckDB in-process by default, or
Apache Spark through Spark Connect (:mod:`graceful_audit.engine_spark`). The few functions
whose spelling differs between the two SQL dialects (arrays, finiteness, anti joins) come
from :class:`Dialect`; everything else is the same text. Only counts and a few example rows
ever come back to Python.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from .errors import InputError, UsageError
from .io import Reader, Table, engine_message, out_of_memory, quote

#: Text that is an integer in the natural id order (see :func:`graceful_audit.count.id_key`).
INTEGER_TEXT = "[+-]?[0-9]{1,18}"
#: A label, prediction or score this large is a fill value, not data: float32's
#: +-3.4028235e38 (often written -3.4e38), float64's +-1.8e308 and the like. No real class,
#: target or score is near it, and squared errors of such values overflow.
FILL_VALUE = 1e30
FILL_TEXT = "1e30"  # as written in messages


#: ``--memory-limit``: a decimal number and a unit (or a percentage of the machine's memory).
MEMORY_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB|%)\s*",
                         re.IGNORECASE)
_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
#: Less than this and DuckDB cannot even start an audit of a few rows.
MIN_MEMORY = 64 * 10**6


def check_memory_limit(value: str, flag: str = "--memory-limit") -> str:
    """``value`` if it is a memory size DuckDB should get, else a :class:`UsageError`.

    ``4GB``, ``512MB``, ``1.5GiB`` or ``50%`` (of the machine's memory), at least 64MB.
    DuckDB itself reads ``-1GB`` as "no limit", ``1e3GB`` as 1,000 GB and fails on ``1KB``
    with an allocation error: each gets a message about the flag here instead.
    """
    m = MEMORY_SIZE.fullmatch(value)
    if m is None:
        raise UsageError(f"{flag}: {value!r} is not a memory size; write a number and a unit, "
                         "e.g. 4GB, 512MB or 50% (of the machine's memory).")
    number, unit = float(m.group(1)), m.group(2).upper()
    if unit == "%":
        if not 0 < number <= 100:
            raise UsageError(f"{flag}: {value!r} must be a percentage above 0 and at most 100.")
        return value
    if number * _UNITS[unit] < MIN_MEMORY:
        raise UsageError(f"{flag}: {value!r} is too small to run an audit; give at least 64MB "
                         "(e.g. 4GB), or leave it out for 80% of the machine's memory.")
    return value


class Dialect:
    """DuckDB's spelling of the non-portable SQL; :class:`SparkDialect` overrides it."""

    name = "duckdb"

    def literal(self, value: str) -> str:
        """A string literal."""
        return "'" + value.replace("'", "''") + "'"

    def is_finite(self, x: str) -> str:
        return f"isfinite({x})"

    def is_value(self, x: str) -> str:
        """``x`` is a number: finite and below :data:`FILL_VALUE` in magnitude."""
        return f"({self.is_finite(x)} AND abs({x}) < {FILL_VALUE!r})"

    def array(self, items: Sequence[str]) -> str:
        return "[" + ", ".join(items) + "]"

    def array_max(self, a: str) -> str:
        return f"list_max({a})"

    def array_position(self, a: str, x: str) -> str:
        """1-based position of ``x`` in ``a``; NULL (or 0 on Spark) when absent."""
        return f"list_position({a}, {x})"

    def element_at(self, a: str, i: str) -> str:
        """1-based element ``i`` of ``a``; NULL when out of range."""
        return f"list_extract({a}, {i})"

    def array_length(self, a: str) -> str:
        return f"len({a})"

    def same(self, a: str, b: str) -> str:
        """``a`` equals ``b``, where NULL equals NULL (never NULL itself)."""
        return f"({a} IS NOT DISTINCT FROM {b})"

    def any_missing(self, a: str) -> str:
        """True when an element of ``a`` is NULL, NaN, infinite or a fill value."""
        return (f"(len(list_filter({a}, lambda x: x IS NULL OR "
                f"NOT {self.is_value('CAST(x AS DOUBLE)')})) > 0)")

    def integer_text(self, x: str) -> str:
        """``x`` (text) as a BIGINT when it is an integer of at most 18 digits with an
        optional sign, else NULL. No rounding ("1.5"), exponents or hex ("0x10"): the same
        rule as Python's ``re.fullmatch("[+-]?[0-9]{1,18}", x)``."""
        return f"CASE WHEN regexp_full_match({x}, '{INTEGER_TEXT}') THEN CAST({x} AS BIGINT) END"

    def exact_sum(self, x: str) -> str:
        """A sum of doubles, compensated where the engine offers it."""
        return f"fsum({x})"

    def field(self, x: str, name: str) -> str:
        """The field ``name`` of the struct ``x`` (a nested JSON object)."""
        return f"struct_extract({x}, {self.literal(name)})"

    def top_n(self, key: str, n: int, where: str, arg: str | None = None) -> list[str] | None:
        """Aggregates: [the ``arg`` of the ``n`` smallest ``key`` values,] those values.

        None when the engine has no bounded top-n aggregate.
        """
        found = f"FILTER (WHERE {where})"
        values = [f"min({key}, {int(n)}) {found}"]
        return values if arg is None else [f"arg_min({arg}, {key}, {int(n)}) {found}", *values]


class SparkDialect(Dialect):
    name = "spark"

    def literal(self, value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    def is_finite(self, x: str) -> str:
        return (f"(NOT isnan(CAST({x} AS DOUBLE)) AND "
                f"abs(CAST({x} AS DOUBLE)) <> CAST('Infinity' AS DOUBLE))")

    def array(self, items: Sequence[str]) -> str:
        return "array(" + ", ".join(items) + ")"

    def array_max(self, a: str) -> str:
        return f"array_max({a})"

    def array_position(self, a: str, x: str) -> str:
        return f"nullif(array_position({a}, {x}), 0)"

    def element_at(self, a: str, i: str) -> str:
        return f"try_element_at({a}, CAST({i} AS INT))"

    def array_length(self, a: str) -> str:
        return f"size({a})"

    def same(self, a: str, b: str) -> str:
        return f"({a} <=> {b})"

    def any_missing(self, a: str) -> str:
        return f"exists({a}, x -> x IS NULL OR NOT {self.is_value('x')})"

    def integer_text(self, x: str) -> str:
        return f"CASE WHEN {x} RLIKE '^{INTEGER_TEXT}$' THEN CAST({x} AS BIGINT) END"

    def exact_sum(self, x: str) -> str:
        return f"sum({x})"

    def field(self, x: str, name: str) -> str:
        return f"{x}.`{name.replace('`', '``')}`"

    def top_n(self, key: str, n: int, where: str, arg: str | None = None) -> list[str] | None:
        return None  # no bounded top-n aggregate: the worst flips take one more query


class Engine:
    """What the audit needs of an engine: open inputs, run SQL, map its errors."""

    name = "engine"
    dialect: Dialect = Dialect()

    def open(self, source: Any, role: str, *, text_columns: Sequence[str] = ()) -> Table:
        raise NotImplementedError

    def rows(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def first(self, sql: str) -> tuple:
        return self.rows(sql)[0]

    def describe(self, sql: str) -> list[tuple[str, str]]:
        """The column names and types of a query."""
        raise NotImplementedError

    def derive(self, table: Table, columns: dict[str, str]) -> Table:
        """``table`` as a new view with ``columns`` (name -> SQL over its columns) added:
        nested fields and composite ids, named as the user named them."""
        self._views = getattr(self, "_views", 0) + 1
        view = f"{table.view}_x{self._views}"
        extra = ", ".join(f"{sql} AS {quote(name)}" for name, sql in columns.items())
        self.create_view(view, f"SELECT *, {extra} FROM {quote(table.view)}")
        described = dict(self.describe(f"SELECT * FROM {quote(view)}"))
        return Table(table.role, table.display, view, described, table.rows)

    def create_view(self, view: str, sql: str) -> None:
        raise NotImplementedError

    def record_batches(self, sql: str, rows: int) -> Any:
        """The result of ``sql`` streamed as a ``pyarrow.RecordBatchReader`` of batches of
        at most ``rows`` rows (close it when done), or None when the engine keeps rows away
        from the client (Spark: the work stays in the cluster, written in SQL)."""
        return None

    @contextlib.contextmanager
    def errors(self, context: str) -> Iterator[None]:
        """Turn an engine error raised while scanning the data into an :class:`InputError`."""
        yield

    def close(self) -> None:
        pass


class DuckDBEngine(Engine):
    """In-process DuckDB, spilling to a private temporary folder (removed on close)."""

    name = "duckdb"
    dialect = Dialect()

    def __init__(self, memory_limit: str | None = None, threads: int | None = None) -> None:
        import duckdb

        if memory_limit is not None:
            check_memory_limit(memory_limit)
        self._spill = tempfile.mkdtemp(prefix="gaudit-")
        config: dict[str, Any] = {"temp_directory": self._spill}
        if memory_limit:
            config["memory_limit"] = memory_limit
        if threads:
            config["threads"] = threads
        try:
            self.con = duckdb.connect(":memory:", config=config)
            self.con.execute("SET enable_progress_bar = false")
        except BaseException as exc:  # Ctrl-C / SIGTERM included: never leave the folder
            shutil.rmtree(self._spill, ignore_errors=True)
            if not isinstance(exc, duckdb.Error):
                raise
            if memory_limit:
                raise UsageError(
                    f"--memory-limit {memory_limit!r}: not a memory size DuckDB understands "
                    f"({engine_message(exc)}); write e.g. 4GB or 512MB."
                ) from None
            raise UsageError(f"invalid engine setting: {engine_message(exc)}") from None
        self.reader = Reader(self.con, self._spill)

    def open(self, source: Any, role: str, *, text_columns: Sequence[str] = ()) -> Table:
        return self.reader.open(source, role, text_columns=text_columns)

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def describe(self, sql: str) -> list[tuple[str, str]]:
        return [(r[0], str(r[1])) for r in self.con.execute(f"DESCRIBE {sql}").fetchall()]

    def create_view(self, view: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS {sql}")

    def record_batches(self, sql: str, rows: int) -> Any:
        return self.con.sql(sql).to_arrow_reader(rows)

    @contextlib.contextmanager
    def errors(self, context: str) -> Iterator[None]:
        import duckdb

        try:
            yield
        except duckdb.OutOfMemoryException as exc:
            raise out_of_memory(exc) from None
        except duckdb.Error as exc:
            raise InputError(
                f"{context}: {engine_message(exc)}. A column may hold values of mixed types: "
                "fix the value, or convert the file to Parquet with explicit types."
            ) from None

    def close(self) -> None:
        from .interrupt import shielded

        with shielded():  # a signal now must not leave the spill folder half removed
            try:
                self.con.close()
            finally:
                shutil.rmtree(self._spill, ignore_errors=True)


def check_engine_options(engine: Any, spark_remote: Any, spark_conf: Any,
                         memory_limit: Any) -> None:
    """``engine`` is duckdb or spark; the Spark options need ``--engine spark`` and
    ``--memory-limit`` the default engine (they would be ignored otherwise)."""
    if engine not in ("duckdb", "spark"):
        raise UsageError(f"--engine: {engine!r} is not one of duckdb, spark.")
    if engine != "spark":
        given = [f for f, v in (("--spark-remote", spark_remote), ("--spark-conf", spark_conf))
                 if v]
        if given:
            raise UsageError(f"{' and '.join(given)}: only used with --engine spark; add "
                             f"--engine spark or drop {'them' if len(given) > 1 else 'it'}.")
    elif memory_limit is not None:
        raise UsageError("--memory-limit: bounds the default engine; with --engine spark the "
                         "cluster's settings bound its memory (e.g. --spark-conf "
                         "spark.executor.memory=4g). Drop --memory-limit.")


@contextlib.contextmanager
def open_engine(name: str = "duckdb", **settings: Any) -> Iterator[Engine]:
    """The engine ``name`` (``duckdb`` or ``spark``), closed afterwards."""
    check_engine_options(name, settings.get("spark_remote"), settings.get("spark_conf"),
                         settings.get("memory_limit"))
    if name == "duckdb":
        engine: Engine = DuckDBEngine(settings.get("memory_limit"), settings.get("threads"))
    elif name == "spark":
        from .engine_spark import SparkEngine

        engine = SparkEngine(remote=settings.get("spark_remote"),
                             conf=settings.get("spark_conf") or {},
                             verbose=bool(settings.get("verbose")))
    try:
        yield engine
    finally:
        engine.close()
