"""What runs inside Spark tasks for ``gaudit compat --engine spark`` (:mod:`.compat_spark`).

Each task gets Arrow batches of gallery rows (``pos``: the row's position in the aligned
items, ``e_0 .. e_{n-1}``: every version's embedding) and returns small Arrow rows of the
schema :data:`SCHEMA`: validation counts with the first offending positions, the queries'
embeddings, pass 1's positive scores, pass 2's counts and top-1. Only numpy, pyarrow and
:mod:`graceful_audit.retrieval` (numpy only) are used here, and both modules are pickled by
value (:func:`graceful_audit.compat_spark._ship`), so a cluster needs numpy, pyarrow (which
PySpark's Arrow functions need anyway) and threadpoolctl, not graceful-audit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .retrieval import (
    Positives,
    StreamState,
    count_shard,
    prepare_gallery,
    shard_positive_scores,
)

#: Every task's output: case or file ``c``, what the row is (``kind``), two numbers and two
#: numpy arrays as bytes.
SCHEMA = "c INT, kind STRING, a BIGINT, b BIGINT, idx BINARY, val BINARY"
#: How many offending positions a task returns per check (messages show five).
FIRST = 5
#: The checks of a model's embeddings, in the order the default engine raises them.
CHECKS = ("null", "nonfinite", "fill", "huge", "zero", "big")

_TYPES = pa.schema([("c", pa.int32()), ("kind", pa.string()), ("a", pa.int64()),
                    ("b", pa.int64()), ("idx", pa.binary()), ("val", pa.binary())])


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where an aligned row goes: its gallery index (-1: not in the gallery) and its query
    row (-1: not an audited query).

    ``queries``: every query's position, ascending (split mode; ``None``: leave-one-out,
    where every item is in the gallery at its own position); ``kept``: the audited queries'
    positions, ascending (``None``: every item, leave-one-out without a sample)."""

    queries: np.ndarray | None
    kept: np.ndarray | None

    def gidx(self, pos: np.ndarray) -> np.ndarray:
        if self.queries is None:
            return pos
        if self.queries.size == 0:
            return pos
        at = np.searchsorted(self.queries, pos)
        is_q = self.queries[np.minimum(at, self.queries.size - 1)] == pos
        return np.where(is_q, -1, pos - at)

    def qrow(self, pos: np.ndarray) -> np.ndarray:
        if self.kept is None:
            return pos
        if self.kept.size == 0:
            return np.full(pos.size, -1, dtype=np.int64)
        at = np.searchsorted(self.kept, pos)
        found = self.kept[np.minimum(at, self.kept.size - 1)] == pos
        return np.where(found, at, -1)


def _rows(rows: list[tuple[int, str, int, int, np.ndarray | None, np.ndarray | None]]
          ) -> pa.RecordBatch:
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), (), ()]
    return pa.RecordBatch.from_arrays([
        pa.array(cols[0], pa.int32()), pa.array(cols[1], pa.string()),
        pa.array(cols[2], pa.int64()), pa.array(cols[3], pa.int64()),
        pa.array([None if x is None else x.tobytes() for x in cols[4]], pa.binary()),
        pa.array([None if x is None else x.tobytes() for x in cols[5]], pa.binary()),
    ], schema=_TYPES)


def _first(pos: np.ndarray) -> np.ndarray:
    """The :data:`FIRST` smallest positions, ascending."""
    if pos.size > FIRST:
        pos = np.partition(pos, FIRST - 1)[:FIRST]
    return np.sort(pos).astype(np.int64)


def matrix(arr: Any, n: int, d: int) -> np.ndarray:
    """A list column of rows of length ``d`` as the default engine reads it (integers and
    floats as they are, anything else float64)."""
    x = np.asarray(arr.flatten().to_numpy(zero_copy_only=False)).reshape(n, d)
    if x.dtype.kind not in "fiu":
        x = x.astype(np.float64)
    return x


def float32(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(x, dtype=np.float32)


def validate(batches: Iterator[pa.RecordBatch], n_files: int, layout: Layout, metric: str,
             limits: tuple[float, float, float]) -> Iterator[pa.RecordBatch]:
    """Every check of every version's embeddings, per row, counted with the first offending
    positions (``kind`` a check of :data:`CHECKS`, ``a`` the count, ``idx`` the positions);
    the lengths (``"len"``: ``a`` the length, ``b`` the count, ``idx`` the first
    positions); the audited queries' float32 embeddings (``"q"``: ``idx`` their query rows,
    ``val`` the rows, ``b`` the dimension)."""
    fill, min_norm, max_norm = limits
    for batch in batches:
        pos = np.asarray(batch.column("pos").to_numpy(zero_copy_only=False), dtype=np.int64)
        qrow = layout.qrow(pos)
        out: list[Any] = []
        for k in range(n_files):
            arr = batch.column(f"e_{k}")
            null = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            if null.any():
                out.append((k, "null", int(null.sum()), 0, _first(pos[null]), None))
            lengths = np.asarray(pc.fill_null(pc.list_value_length(arr), -1)
                                 .to_numpy(zero_copy_only=False), dtype=np.int64)
            for d in np.unique(lengths[lengths >= 0]).tolist():
                sel = lengths == d
                out.append((k, "len", int(d), int(sel.sum()), _first(pos[sel]), None))
                if d == 0:
                    continue
                x = matrix(arr.filter(pa.array(sel)), int(sel.sum()), int(d))
                p = pos[sel]
                bad = {"nonfinite": ~np.isfinite(x).all(axis=1),
                       "fill": (np.abs(x) >= fill).any(axis=1)}
                x32 = float32(x)
                bad["huge"] = ~np.isfinite(x32).all(axis=1)
                norms = np.sqrt(np.einsum("ij,ij->i", x32, x32, dtype=np.float64))
                if metric == "cosine":
                    bad["zero"] = ~(x32 != 0).any(axis=1) | (norms < min_norm)
                else:
                    bad["big"] = norms > max_norm
                for check, mask in bad.items():
                    if mask.any():
                        out.append((k, check, int(mask.sum()), 0, _first(p[mask]), None))
                q = qrow[sel]
                keep = q >= 0
                if keep.any():
                    out.append((k, "q", int(keep.sum()), int(d), q[keep].astype(np.int64),
                                x32[keep]))
        yield _rows(out)


def _gallery(batch: pa.RecordBatch, layout: Layout, keys: set[int], metric: str
             ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The gallery rows of a batch: their gallery indices and, per version in ``keys``, the
    prepared float32 rows (:func:`~graceful_audit.retrieval.prepare_gallery`)."""
    pos = np.asarray(batch.column("pos").to_numpy(zero_copy_only=False), dtype=np.int64)
    gidx = layout.gidx(pos)
    sel = gidx >= 0
    n = int(sel.sum())
    mask = pa.array(sel)
    out = {}
    for k in keys:
        arr = batch.column(f"e_{k}").filter(mask)
        d = int(pc.list_value_length(arr)[0].as_py()) if n else 0
        out[k] = prepare_gallery(float32(matrix(arr, n, d)), metric)
    return gidx[sel], out


@dataclasses.dataclass(frozen=True)
class Case:
    """One case as shipped to the tasks: gallery version ``key``, the prepared queries of
    its query version (``version``), the positives and (pass 2) the state to count into."""

    key: int
    version: int
    positives: Positives | None = None
    state: StreamState | None = None
    excl: np.ndarray | None = None


def positive_scores(batches: Iterator[pa.RecordBatch], layout: Layout, cases: list[Case],
                    queries: dict[int, np.ndarray], metric: str
                    ) -> Iterator[pa.RecordBatch]:
    """Pass 1: per case ``c`` the positives found in each batch (``idx``: their positions in
    the case's positives) and their scores (``val``, float32)."""
    keys = {c.key for c in cases}
    for batch in batches:
        gidx, gal = _gallery(batch, layout, keys, metric)
        out: list[Any] = []
        if gidx.size:
            for i, c in enumerate(cases):
                assert c.positives is not None
                at, vals = shard_positive_scores(c.positives, queries[c.version], gal[c.key],
                                                 gidx)
                if at.size:
                    out.append((i, "s", int(at.size), 0, at.astype(np.int64), vals))
        yield _rows(out)


def shards(batches: Iterator[pa.RecordBatch], layout: Layout, keys: set[int], metric: str,
           rows: int) -> Iterator[tuple[np.ndarray, dict[int, np.ndarray]]]:
    """The gallery rows of a task's batches joined into shards of about ``rows`` rows or
    more, never one row alone unless the task holds only one: a one-row product is a
    matrix-vector product, which BLAS may round differently from the matrix product the
    other rows' scores come from (and ties are decided by exact equality)."""
    buf: list[tuple[np.ndarray, dict[int, np.ndarray]]] = []
    ready: list[tuple[np.ndarray, dict[int, np.ndarray]]] = []

    def join(parts: list[tuple[np.ndarray, dict[int, np.ndarray]]]
             ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        if len(parts) == 1:
            return parts[0]
        return (np.concatenate([g for g, _ in parts]),
                {k: np.concatenate([x[k] for _, x in parts]) for k in keys})

    n = 0
    for batch in batches:
        gidx, gal = _gallery(batch, layout, keys, metric)
        if not gidx.size:
            continue
        buf.append((gidx, gal))
        n += gidx.size
        if n >= rows:
            if ready:
                yield join(ready)
            ready, buf, n = buf, [], 0
    if ready and 0 < n < 2:  # a one-row tail joins the shard before it
        ready, buf = ready + buf, []
    for parts in (ready, buf):
        if parts:
            yield join(parts)


def counts(batches: Iterator[pa.RecordBatch], layout: Layout, cases: list[Case],
           queries: dict[int, np.ndarray], metric: str, block_bytes: int, shard_rows: int
           ) -> Iterator[pa.RecordBatch]:
    """Pass 2: the partition's gallery rows counted, in shards of about ``shard_rows``
    (:func:`shards`), into a copy of each case's state
    (:func:`~graceful_audit.retrieval.count_shard`); at the end, per case ``c``, the
    positives with items above them (``"above"``: ``idx`` positions, ``val`` counts) and
    the top-1 of the queries that have one (``"best"``: ``idx`` query rows, ``val`` their
    scores, float32, then their gallery indices, int64)."""
    states = []
    for c in cases:
        s = c.state
        assert s is not None
        states.append(dataclasses.replace(s, above=np.zeros_like(s.above),
                                          best=np.full_like(s.best, -np.inf),
                                          best_index=np.full_like(s.best_index, -1)))
    seen = False
    for gidx, gal in shards(batches, layout, {c.key for c in cases}, metric, shard_rows):
        seen = True
        for c, state in zip(cases, states, strict=True):
            assert c.excl is not None
            count_shard(state, queries[c.version], gal[c.key], gidx, c.excl,
                        block_bytes=block_bytes, n_threads=1)  # Spark runs tasks side by side
    out: list[Any] = []
    if seen:
        for i, state in enumerate(states):
            nz = np.flatnonzero(state.above)
            if nz.size:
                out.append((i, "above", int(nz.size), 0, nz.astype(np.int64),
                            state.above[nz].astype(np.int64)))
            has = np.flatnonzero(state.best_index >= 0)
            if has.size:
                out.append((i, "best", int(has.size), 0, has.astype(np.int64), np.concatenate(
                    [state.best[has].astype(np.float32).view(np.uint8),
                     state.best_index[has].astype(np.int64).view(np.uint8)])))
    yield _rows(out)
