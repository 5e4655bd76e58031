"""``gaudit compat --engine spark``: the gallery stays on the cluster.

Spark (Spark Connect, as for ``flips``: :mod:`.engine_spark`) reads and joins the files by
id; this process (the driver) collects only the ids, labels and splits of the aligned items
(about 8-16 bytes per item) and the audited queries' embeddings. The embeddings of the
gallery never leave the cluster: the streamed kernel of :mod:`.retrieval` runs in Spark
tasks (``mapInArrow`` over the joined rows), with the queries and the positives shipped in
the tasks' closure, and only per-query and per-positive partial results come back:

1. validation: every check of :func:`graceful_audit.compat._matrix`, per row, counted with
   the first offending positions (the same messages as the default engine), and the
   audited queries' embeddings;
2. pass 1: every positive's score (:func:`~graceful_audit.retrieval.shard_positive_scores`);
3. pass 2: per positive the count of items ranking above it, per query its top-1
   (:func:`~graceful_audit.retrieval.count_shard`), merged here
   (:func:`~graceful_audit.retrieval.merge_states`) and finished
   (:func:`~graceful_audit.retrieval.finish_stream`).

A row's gallery index is its position in the id order of the joined items (the order of
the default engine), numbered on the cluster by ``row_number() OVER (ORDER BY id)`` over
the ids alone (one partition of ids, no embeddings), then joined back to the embeddings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InputError, examples

#: Scores held at once by one task's :func:`~graceful_audit.retrieval.count_shard`.
TASK_BLOCK_BYTES = 32 * 1024 * 1024
#: Bytes of one gallery model's rows in a task's shard (batches are joined up to it).
SHARD_BYTES = 16 * 1024 * 1024
#: About the most bytes of queries and positives shipped in one job's closure (more
#: queries are searched in blocks, two passes over the gallery each).
CLOSURE_BYTES = 48 * 1024 * 1024


class _Con:
    """The two DuckDB connection calls :func:`graceful_audit.compat._join_counts` makes,
    answered by Spark."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def execute(self, sql: str) -> _Con._Rows:
        return _Con._Rows(self.engine.rows(sql))

    @dataclasses.dataclass
    class _Rows:
        rows: list[tuple]

        def fetchall(self) -> list[tuple]:
            return self.rows


def _ship() -> None:
    """Pickle the task code by value: a cluster needs numpy, pyarrow and threadpoolctl, not
    graceful-audit."""
    from pyspark import cloudpickle

    from . import retrieval, spark_tasks

    for module in (retrieval, spark_tasks):
        cloudpickle.register_pickle_by_value(module)


def align_spark(sources: Sequence[Any], id_col: str | None, label_col: str | None,
                embedding_col: str | None, split_col: str | None, metric: str,
                allow_unmatched: bool, judged: bool, sample_queries: int | None,
                seed: int | None, spark_remote: str | None,
                spark_conf: Mapping[str, str] | None, verbose: bool) -> Any:
    """:func:`graceful_audit.compat._align` on Spark: the same checks and messages, the
    aligned items without the gallery's embeddings (``spark``: a :class:`SparkGallery`)."""
    from .align import ID_SYNONYMS, check_ids
    from .compat import (
        _Aligned,
        _display,
        _items,
        _join_counts,
        _labelled_sides,
        _resolve,
        _roles,
        _sample,
        _with_sql,
    )
    from .engine import SparkDialect
    from .engine_spark import SparkEngine

    roles = _roles(len(sources))
    id_names = [id_col] if id_col else ["id", *ID_SYNONYMS]
    engine = SparkEngine(spark_remote, spark_conf, verbose)
    done = False
    try:
        tables = [engine.open(src, role, text_columns=id_names)
                  for src, role in zip(sources, roles, strict=True)]
        sides = [_spark_side(_resolve(t, id_col, label_col, embedding_col, split_col))
                 for t in tables]
        for s in sides:
            check_ids(engine, s.table, s.id)
        sides, joined = _labelled_sides(tables, sides, judged, label_col, split_col)
        d = SparkDialect()
        n = len(sides)
        with_sql = _with_sql(sides, d)
        joins = " ".join(f"JOIN s{k} ON s0.id = s{k}.id" for k in range(1, n))
        with engine.errors(f"while joining {joined}"):
            matched, unmatched = _join_counts(_Con(engine), sides, allow_unmatched, d)
            cols = "".join((f", s{k}.y AS y_{k}" if s.label else "")
                           + (f", s{k}.sp AS sp_{k}" if s.split else "")
                           for k, s in enumerate(sides))
            data = engine.spark.sql(f"{with_sql} SELECT s0.id AS id{cols} FROM s0 {joins} "
                                    "ORDER BY s0.id").toArrow()
        ids, labels, mode, codes, all_queries, g_idx, exclude = _items(data, sides, judged)
        del data
        pick, sample = _sample(all_queries.size, sample_queries, seed)
        q_idx = all_queries
        if pick is not None:
            q_idx = all_queries[pick]
            exclude = None if exclude is None else exclude[pick]
        from .spark_tasks import Layout

        layout = Layout(None if mode != "split" else all_queries.astype(np.int64),
                        None if (mode != "split" and pick is None) else q_idx.astype(np.int64))
        ecols = ", ".join(f"s{k}.e AS e_{k}" for k in range(n))
        rjoins = " ".join(f"JOIN s{k} ON r.id = s{k}.id" for k in range(n))
        items_sql = (f"{with_sql}, j AS (SELECT s0.id AS id FROM s0 {joins}), "
                     "r AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS pos FROM j) "
                     f"SELECT r.pos AS pos, {ecols} FROM r {rjoins}")
        gallery = SparkGallery(engine, items_sql, joined, tuple(t.label for t in tables),
                               metric, layout, int(q_idx.size))
        with engine.errors(f"while reading {joined}"):
            gallery.validate(ids)
        dims = tuple(gallery.dims[k] for k in range(n))
        done = True
    finally:
        if not done:
            engine.close()
    return _Aligned(roles, tuple(_display(s) for s in sources), tuple(t.rows for t in tables),
                    matched, tuple(unmatched), ids, labels, codes, dims, None, mode, q_idx,
                    g_idx, exclude, all_queries, pick, sample, None, gallery)


def _spark_side(side: Any) -> Any:
    """An embedding side in Spark's SQL (``emb_0 .. emb_{d-1}`` columns: ``array(...)``)."""
    sql = side.embedding_sql
    if sql.startswith("list_value("):
        sql = "array(" + sql[len("list_value("):]
    return dataclasses.replace(side, embedding_sql=sql)


@dataclasses.dataclass
class SparkGallery:
    """The joined embeddings on the cluster (``sql``: ``pos, e_0 .. e_{n-1}``) and the
    audited queries' embeddings, read by :meth:`validate`."""

    engine: Any
    sql: str
    joined: str
    where: tuple[str, ...]
    metric: str
    layout: Any
    n_queries: int
    dims: dict[int, int] = dataclasses.field(default_factory=dict)
    queries: list[np.ndarray] = dataclasses.field(default_factory=list)

    def _run(self, fn: Any) -> Any:
        """``fn`` over the joined rows in Spark tasks; every task's rows, as one Arrow
        table."""
        from .spark_tasks import SCHEMA

        _ship()
        return self.engine.spark.sql(self.sql).mapInArrow(fn, SCHEMA).toArrow()

    def validate(self, ids: np.ndarray) -> None:
        """Every version's embeddings checked as the default engine checks them (the first
        failing check of the first failing version raises, with the same message), and the
        audited queries' float32 embeddings kept."""
        from .compat import MAX_NORM, MIN_NORM
        from .engine import FILL_VALUE
        from .spark_tasks import validate

        n = len(self.where)
        fn = functools.partial(validate, n_files=n, layout=self.layout, metric=self.metric,
                               limits=(FILL_VALUE, MIN_NORM, MAX_NORM))
        t = self._run(fn)
        c = np.asarray(t.column("c").to_numpy(zero_copy_only=False))
        kind = np.asarray(t.column("kind").to_pylist(), dtype=object)
        a = np.asarray(t.column("a").to_numpy(zero_copy_only=False))
        b = np.asarray(t.column("b").to_numpy(zero_copy_only=False))
        idx = t.column("idx").to_pylist()
        val = t.column("val").to_pylist()
        for k, where in enumerate(self.where):
            rows = np.flatnonzero(c == k)

            def found(check: str, rows: np.ndarray = rows) -> tuple[int, np.ndarray]:
                sel = [i for i in rows.tolist() if kind[i] == check]
                count = int(sum(int(a[i]) for i in sel))
                first = np.sort(np.concatenate(
                    [np.frombuffer(idx[i], dtype=np.int64) for i in sel] or
                    [np.zeros(0, dtype=np.int64)]))[:5]
                return count, first

            count, first = found("null")
            if count:
                raise InputError(f"{where}: {count} item(s) have no embedding (ids "
                                 f"{_shown(ids, first, count)}). Every item needs an "
                                 "embedding.")
            lengths: dict[int, tuple[int, list[np.ndarray]]] = {}
            for i in rows.tolist():
                if kind[i] == "len":
                    cnt, firsts = lengths.get(int(a[i]), (0, []))
                    lengths[int(a[i])] = (cnt + int(b[i]),
                                          [*firsts, np.frombuffer(idx[i], dtype=np.int64)])
            dims = sorted(lengths)
            if len(dims) > 1:
                common = max(dims, key=lambda m: (lengths[m][0], -m))
                odd = sum(lengths[m][0] for m in dims if m != common)
                first = np.sort(np.concatenate([x for m in dims if m != common
                                                for x in lengths[m][1]]))[:5]
                raise InputError(
                    f"{where}: ragged embeddings: lengths {', '.join(map(str, dims[:5]))} "
                    f"(most are {common}; ids {_shown(ids, first, odd)} differ). All "
                    "embeddings of a model must have the same dimension."
                )
            d = dims[0] if dims else 0
            if d == 0:
                raise InputError(f"{where}: the embeddings are empty (dimension 0).")
            _raise_checks(where, found, ids, self.metric)
            self.dims[k] = d
            q = np.zeros((self.n_queries, d), dtype=np.float32)
            for i in rows.tolist():
                if kind[i] == "q":
                    at = np.frombuffer(idx[i], dtype=np.int64)
                    q[at] = np.frombuffer(val[i], dtype=np.float32).reshape(at.size, d)
            self.queries.append(q)

    def evaluate(self, run: Any, cells: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Any]:
        """Every case ``(query version, gallery version)`` of ``cells`` whose dimensions
        agree, in two passes of Spark tasks over the joined rows per block of queries (one
        block unless the queries and their positives exceed :data:`CLOSURE_BYTES`):
        ``(q, g) -> CaseResult``."""
        from .compat import KS
        from .retrieval import StreamState, _csr, _Work, finish_stream, positive_pairs

        al, judged, metric = run.al, run.judged, run.metric
        todo = [(q, g) for q, g in dict.fromkeys(cells) if al.dims[q] == al.dims[g]]
        if not todo:
            return {}
        nq, ng = int(al.q_idx.size), int(al.g_idx.size)
        excl = (np.full(nq, -1, dtype=np.int64) if al.exclude is None
                else np.asarray(al.exclude, dtype=np.int64))
        if judged is None:
            indptr, indices = positive_pairs(_Work.create(al.codes[al.q_idx],
                                                          al.codes[al.g_idx], excl))
        else:
            indptr, indices = _csr((judged.indptr, judged.indices), nq, ng)
        versions = sorted({q for q, _ in todo})
        per_query = 4 * sum(al.dims[q] for q in versions) + 24 * len(todo) + 16
        per_positive = 20 * len(todo) + 16
        weight = per_query + per_positive * np.diff(indptr)
        full = [StreamState.create(indptr, indices, np.zeros(indices.size, dtype=np.float32))
                for _ in todo]
        blocks = _blocks(weight, CLOSURE_BYTES)
        for b, (r0, r1) in enumerate(blocks):
            p0, p1 = int(indptr[r0]), int(indptr[r1])
            states = self._block(todo, versions, r0, r1, indptr[r0 : r1 + 1] - p0,
                                 indices[p0:p1], excl[r0:r1], metric)
            if run.progress is not None:  # "searching all cases on Spark": blocks done
                run.progress("all cases on Spark", b + 1, len(blocks))
            for whole, part in zip(full, states, strict=True):
                whole.score[p0:p1] = part.score
                whole.above[p0:p1] = part.above
                whole.best[r0:r1] = part.best
                whole.best_index[r0:r1] = part.best_index
        explicit = judged is not None
        out = {}
        for cell, whole in zip(todo, full, strict=True):  # thresh, row: from the scores
            state = StreamState.create(whole.indptr, whole.indices, whole.score)
            out[cell] = finish_stream(dataclasses.replace(
                state, above=whole.above, best=whole.best, best_index=whole.best_index),
                KS, explicit)
        return out

    def _block(self, todo: list[tuple[int, int]], versions: list[int], r0: int, r1: int,
               indptr: np.ndarray, indices: np.ndarray, excl: np.ndarray,
               metric: str) -> list[Any]:
        """Queries ``r0 .. r1`` (their positives: ``indptr``, ``indices``) of every case:
        pass 1 (the positives' scores), pass 2 (the counts, merged over the tasks)."""
        from .retrieval import Positives, StreamState, prepare_queries
        from .spark_tasks import Case, counts, positive_scores

        queries = {q: prepare_queries(self.queries[q][r0:r1], metric) for q in versions}
        positives = Positives.create(indptr, indices)
        cases = [Case(g, q, positives=positives) for q, g in todo]
        t = self._run(functools.partial(positive_scores, layout=self.layout, cases=cases,
                                        queries=queries, metric=metric))
        scores = [np.zeros(indices.size, dtype=np.float32) for _ in todo]
        for c, i, v in zip(t.column("c").to_pylist(), t.column("idx").to_pylist(),
                           t.column("val").to_pylist(), strict=True):
            scores[c][np.frombuffer(i, dtype=np.int64)] = np.frombuffer(v, dtype=np.float32)
        del t
        states = [StreamState.create(indptr, indices, s) for s in scores]
        cases = [Case(g, q, state=s, excl=excl) for (q, g), s in zip(todo, states, strict=True)]
        dim = max(int(x.shape[1]) for x in queries.values())
        t = self._run(functools.partial(counts, layout=self.layout, cases=cases,
                                        queries=queries, metric=metric,
                                        block_bytes=TASK_BLOCK_BYTES,
                                        shard_rows=max(2, SHARD_BYTES // (4 * dim))))
        return _merge_counts(states, zip(t.column("c").to_pylist(), t.column("kind").to_pylist(),
                                         t.column("idx").to_pylist(), t.column("val").to_pylist(),
                                         strict=True))

    def close(self) -> None:
        self.engine.close()


def _merge_counts(states: list[Any], rows: Any) -> list[Any]:
    """The states of pass 2 from every task's rows ``(case, kind, idx, val)``
    (:func:`graceful_audit.spark_tasks.counts`): the counts add up, the top-1s merge
    (:func:`~graceful_audit.retrieval.merge_states`)."""
    from .retrieval import merge_states

    merged = list(states)
    for c, kind, i, v in rows:
        at = np.frombuffer(i, dtype=np.int64)
        if kind == "above":
            merged[c].above[at] += np.frombuffer(v, dtype=np.int64)
            continue
        # one task's top-1 of case c
        best = np.full_like(merged[c].best, -np.inf)
        best_index = np.full_like(merged[c].best_index, -1)
        best[at] = np.frombuffer(v, dtype=np.float32, count=at.size)
        best_index[at] = np.frombuffer(v, dtype=np.int64, offset=4 * at.size)
        merged[c] = merge_states([merged[c], dataclasses.replace(
            merged[c], above=np.zeros_like(merged[c].above), best=best,
            best_index=best_index)])
    return merged


def _blocks(weight: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """Consecutive ranges of rows whose ``weight`` sums stay within ``cap`` (a row heavier
    than ``cap`` alone is a block)."""
    out, r0, n = [], 0, weight.size
    total = np.concatenate([[0], np.cumsum(weight)])
    while r0 < n:
        r1 = int(np.searchsorted(total, total[r0] + cap, side="right")) - 1
        r1 = min(n, max(r0 + 1, r1))
        out.append((r0, r1))
        r0 = r1
    return out or [(0, 0)]


def _shown(ids: np.ndarray, first: np.ndarray, count: int) -> str:
    """The examples of a message (as :func:`~graceful_audit.errors.examples` shows ``count``
    ids, of which ``first`` are the first)."""
    shown = examples(ids[first])
    return shown if count <= first.size else f"{shown}, ... (+{count - first.size} more)"


def _raise_checks(where: str, found: Any, ids: np.ndarray, metric: str) -> None:
    """The value checks of :func:`graceful_audit.compat._matrix`, in its order."""
    from .compat import MAX_NORM
    from .engine import FILL_TEXT

    count, first = found("nonfinite")
    if count:
        raise InputError(
            f"{where}: {count} embedding(s) contain NaN, inf or null values (ids "
            f"{_shown(ids, first, count)}). Fix or drop those items."
        )
    count, first = found("fill")
    if count:
        raise InputError(
            f"{where}: {count} embedding(s) hold a fill value for a missing number "
            f"(magnitude {FILL_TEXT} or more, such as float32's -3.4e38; ids "
            f"{_shown(ids, first, count)}). Fix or drop those items."
        )
    count, first = found("huge")
    if count:
        raise InputError(
            f"{where}: {count} embedding(s) hold values beyond the float32 range "
            f"(ids {_shown(ids, first, count)}). Rescale the embeddings."
        )
    if metric == "cosine":
        count, first = found("zero")
        if count:
            raise InputError(
                f"{where}: {count} embedding(s) are all zeros, or too close to zero "
                f"to normalise (ids {_shown(ids, first, count)}); cosine similarity is "
                "undefined for them. Drop them, or use --metric ip or l2."
            )
    else:
        count, first = found("big")
        if count:
            raise InputError(
                f"{where}: {count} embedding(s) have norms above {MAX_NORM:g} (ids "
                f"{_shown(ids, first, count)}); their {metric} scores overflow float32. "
                "Rescale the embeddings, or use --metric cosine."
            )
