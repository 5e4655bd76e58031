"""The Spark engine: the same audit SQL, run by Apache Spark through Spark Connect.

For data that lives in a data lake (``s3a://``, ``abfss://``, ``hdfs://``): paths are handed
to the cluster unchanged and never opened by the client; the cluster reads, joins and
counts, and only the counts and a few example rows travel back.

Connecting: ``--spark-remote sc://host:15002`` or the standard ``SPARK_REMOTE`` variable;
without either a local Spark Connect session is started (it needs Java 17), bound to the
loopback interface, with its log lines kept off the terminal. One session serves every
audit of a process, and stops when the process ends.

Install with ``pip install 'graceful-audit[spark]'``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .engine import Engine, SparkDialect
from .errors import InputError, UsageError
from .io import CSV_SUFFIXES, JSON_SUFFIXES, Table, check_unique_names, special_kind

#: Spark settings every session gets: double-quoted identifiers (the SQL is shared with
#: DuckDB), no web UI, UTC.
BASE_CONF = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
}
LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "8",  # a few cores: 200 tiny tasks cost more than they do
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.connect.grpc.binding.address": "127.0.0.1",
}

_SESSIONS: dict[str, Any] = {}

_TYPES = {
    "tinyint": "TINYINT", "smallint": "SMALLINT", "int": "INTEGER", "bigint": "BIGINT",
    "float": "FLOAT", "double": "DOUBLE", "string": "VARCHAR", "boolean": "BOOLEAN",
}


def duck_type(spark_type: str) -> str:
    """A Spark type name in the spelling the rest of gaudit uses (DuckDB's)."""
    t = spark_type.strip()
    if t.startswith("array<") and t.endswith(">"):
        return duck_type(t[6:-1]) + "[]"
    if t.startswith(("decimal", "varchar", "char")):
        return t.upper() if t.startswith("decimal") else "VARCHAR"
    return _TYPES.get(t, t.upper())


def spark_message(exc: BaseException) -> str:
    """The first line of a Spark error, without the JVM stack trace."""
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


@contextlib.contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[None]:
    """Send this process's stderr (and so a JVM started now) to a log file."""
    if not enabled:
        yield
        return
    fd, _path = tempfile.mkstemp(prefix="gaudit-spark-", suffix=".log")
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _session(remote: str, conf: Mapping[str, str], verbose: bool) -> Any:
    key = remote + repr(sorted(conf.items()))
    if key in _SESSIONS:
        return _SESSIONS[key]
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError(
            "--engine spark needs pyspark with Spark Connect: "
            "pip install 'graceful-audit[spark]'."
        ) from None
    local = remote.startswith("local")
    if local:
        if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
            raise UsageError(
                "a local Spark session needs Java 17 (no 'java' on PATH and no JAVA_HOME); "
                "install a JDK, or point --spark-remote / SPARK_REMOTE at a Spark Connect server."
            )
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python tasks (compat's search) run in this interpreter, with its numpy and pyarrow.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if remote.startswith("sc://"):
        _check_reachable(remote)
    builder = SparkSession.builder.remote(remote)
    for k, v in {**BASE_CONF, **(LOCAL_CONF if local else {}), **conf}.items():
        builder = builder.config(k, v)
    try:
        with _quiet_stderr(local and not verbose), warnings.catch_warnings():
            if not verbose:  # "cannot modify static config" chatter from the client
                warnings.simplefilter("ignore")
            spark = builder.getOrCreate()
            for k, v in {**BASE_CONF, **conf}.items():
                with contextlib.suppress(Exception):  # static settings cannot change later
                    spark.conf.set(k, v)
            spark.sql("SELECT 1").collect()
    except UsageError:
        raise
    except Exception as exc:
        where = "a local Spark session" if local else f"the Spark Connect server {remote}"
        raise UsageError(f"cannot start or reach {where}: {spark_message(exc)}") from None
    _SESSIONS[key] = spark
    return spark


def _check_reachable(remote: str, timeout: float = 10.0) -> None:
    """Fail fast, with one message, when nothing listens at a Spark Connect URL.

    (The client itself retries with back-off for minutes before it gives up.)
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(remote.split(";", 1)[0])
    host, port = parts.hostname or "localhost", parts.port or 15002
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"cannot reach the Spark Connect server {remote} ({host}:{port}: {reason}). "
            "Check --spark-remote / SPARK_REMOTE and that the server is running."
        ) from None


@atexit.register
def _stop_sessions() -> None:
    for spark in _SESSIONS.values():
        with contextlib.suppress(Exception):
            spark.stop()
    _SESSIONS.clear()


class SparkEngine(Engine):
    """Runs the audit SQL on Spark (Spark Connect); reads paths where the cluster sees them."""

    name = "spark"
    dialect = SparkDialect()

    def __init__(self, remote: str | None = None, conf: Mapping[str, str] | None = None,
                 verbose: bool = False) -> None:
        self.remote = remote or os.environ.get("SPARK_REMOTE") or "local[*]"
        self.spark = _session(self.remote, dict(conf or {}), verbose)
        self._count = 0
        self._derived: list[str] = []

    def open(self, source: Any, role: str, *, text_columns: Sequence[str] = ()) -> Table:
        if not isinstance(source, (str, os.PathLike)):
            raise UsageError(
                f"{role}: the spark engine reads paths (local, s3a://, abfss://, hdfs://), "
                "not in-memory tables; use the default engine for DataFrames."
            )
        path = os.fspath(source)
        kind = special_kind(path)
        if kind is not None or not path.strip():
            raise InputError(
                f"{role} file {path}: " + (f"is a {kind}, not a file; the spark engine reads "
                                           "files. Write the data to a file first."
                                           if kind else "the path is empty.")
            )
        self._count += 1
        view = f"gaudit_{role.lower()}_{self._count}"
        is_csv = path.lower().rstrip("/").endswith(CSV_SUFFIXES)
        is_json = path.lower().rstrip("/").endswith(JSON_SUFFIXES)
        try:
            if is_json:  # every line read for the schema; a malformed line fails the read
                df = self.spark.read.option("mode", "FAILFAST").json(path)
            else:
                df = (self._read_csv(path, text_columns, role) if is_csv
                      else self.spark.read.parquet(path))
            df.createOrReplaceTempView(view)
            columns = {f.name: duck_type(f.dataType.simpleString()) for f in df.schema.fields}
            rows = int(df.count())
        except InputError:
            raise
        except Exception as exc:
            if is_json:
                from .io import json_lines_error

                files = [path] if os.path.isfile(path) else []
                raise json_lines_error(path, files, spark_message(exc)) from None
            raise self._read_error(path, is_csv, exc) from None
        table = Table(role, path, view, columns, rows)
        if rows == 0:
            raise InputError(
                f"{table.label}: has no rows (columns: {', '.join(columns) or 'none'}). "
                "An audit needs at least one prediction."
            )
        return table

    def _read_csv(self, path: str, text_columns: Sequence[str], role: str) -> Any:
        reader = self.spark.read.option("header", True).option("inferSchema", True)
        if path.lower().endswith((".tsv", ".tsv.gz")):
            reader = reader.option("sep", "\t")
        df = reader.csv(path)
        if any(f.name.endswith(str(i)) for i, f in enumerate(df.schema.fields)):
            # Spark renames repeated header names to NAME + position: read the header as is.
            first = self.spark.read.option("header", False).csv(path).first()
            if first is not None:
                check_unique_names([str(v) for v in first], f"{role} file {path}", True)
        # Ids are text in CSV, as on the default engine: 007 stays 007; so are booleans,
        # as written (a slice value True, not true; labels compare them as 1 and 0).
        wanted = [f.name for f in df.schema.fields if f.dataType.simpleString() != "string"
                  and (f.name in text_columns or f.dataType.simpleString() == "boolean")]
        if wanted:
            from pyspark.sql.types import StringType, StructField, StructType

            schema = StructType([
                StructField(f.name, StringType(), True) if f.name in wanted else f
                for f in df.schema.fields
            ])
            df = reader.schema(schema).csv(path)
        return df

    @staticmethod
    def _read_error(path: str, is_csv: bool, exc: BaseException) -> InputError:
        text = str(exc)
        if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
            return InputError(f"{path}: no such file or directory (as the Spark engine sees it).")
        if "UNABLE_TO_INFER_SCHEMA" in text:
            return InputError(f"{path}: holds no readable data files (empty, or no "
                              f"{'CSV' if is_csv else 'Parquet'} files).")
        kind = "CSV" if is_csv else "Parquet"
        return InputError(f"{path}: cannot be read as {kind} by Spark ({spark_message(exc)}).")

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]

    def describe(self, sql: str) -> list[tuple[str, str]]:
        return [(f.name, duck_type(f.dataType.simpleString()))
                for f in self.spark.sql(sql).schema.fields]

    def create_view(self, view: str, sql: str) -> None:
        self.spark.sql(sql).createOrReplaceTempView(view)
        self._derived.append(view)

    @contextlib.contextmanager
    def errors(self, context: str) -> Iterator[None]:
        try:
            yield
        except (InputError, UsageError):
            raise
        except Exception as exc:
            module = type(exc).__module__ or ""
            if not module.startswith(("pyspark", "grpc", "py4j")):
                raise
            raise InputError(f"{context}: the Spark engine failed: {spark_message(exc)}") from None

    def close(self) -> None:
        """Drop this audit's views; the session itself lives until the process ends."""
        for i in range(1, self._count + 1):
            for role in ("old", "new", "labels"):
                with contextlib.suppress(Exception):
                    self.spark.catalog.dropTempView(f"gaudit_{role}_{i}")
        for view in self._derived:
            with contextlib.suppress(Exception):
                self.spark.catalog.dropTempView(view)
