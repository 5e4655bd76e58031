"""The Python of ``gaudit compat --engine spark``'s tasks, without Spark: the row layout,
the shards a task counts, and the kernel's results from scattered shards merged as the
driver merges them, against the in-memory search (no pyspark needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graceful_audit.compat_spark import _blocks
from graceful_audit.retrieval import evaluate_case
from graceful_audit.spark_tasks import Layout, shards


def test_layout_split_and_sample():
    # positions 0..9; queries at 1, 4, 5, 9; the gallery is the rest, numbered in order
    lay = Layout(np.array([1, 4, 5, 9]), np.array([4, 9]))
    pos = np.arange(10)
    assert lay.gidx(pos).tolist() == [0, -1, 1, 2, -1, -1, 3, 4, 5, -1]
    assert lay.qrow(pos).tolist() == [-1, -1, -1, -1, 0, -1, -1, -1, -1, 1]
    loo = Layout(None, None)
    assert loo.gidx(pos).tolist() == loo.qrow(pos).tolist() == pos.tolist()


def _batch(pos, x):
    return pa.RecordBatch.from_arrays([pa.array(pos, pa.int64()),
                                       pa.array(list(x), pa.list_(pa.float32()))],
                                      names=["pos", "e_0"])


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=1, max_size=12), rows=st.integers(2, 15))
def test_shards_hold_every_row_once_and_never_one_row_alone(sizes, rows):
    rng = np.random.default_rng(len(sizes) * 31 + rows)
    total = sum(sizes)
    order = rng.permutation(total)
    x = rng.normal(size=(total, 3)).astype(np.float32)
    batches, at = [], 0
    for n in sizes:
        batches.append(_batch(order[at:at + n], x[order[at:at + n]]))
        at += n
    got = list(shards(iter(batches), Layout(None, None), {0}, "ip", rows))
    seen = np.concatenate([g for g, _ in got]) if got else np.zeros(0, dtype=np.int64)
    assert sorted(seen.tolist()) == list(range(total))
    if total > 1:
        assert all(g.size >= 2 for g, _ in got)
    for g, gal in got:  # the rows travel with their gallery index
        np.testing.assert_array_equal(gal[0], x[g])


def test_blocks_cover_the_rows_within_the_cap():
    w = np.array([5, 5, 5, 5, 20, 1, 1])
    assert _blocks(w, 10) == [(0, 2), (2, 4), (4, 5), (5, 7)]
    assert _blocks(np.array([3, 3, 3, 3]), 100) == [(0, 4)]


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_tasks_merged_equal_the_in_memory_search(metric):
    """The three task functions run on scattered batches in two 'partitions', merged like
    the driver merges them: the in-memory search's ranks, top-1 and mAP (with ties)."""
    from graceful_audit import compat_spark, spark_tasks
    from graceful_audit.retrieval import (
        Positives,
        StreamState,
        _Work,
        finish_stream,
        positive_pairs,
        prepare_queries,
    )

    rng = np.random.default_rng(5)
    n = 90
    x = rng.integers(1, 4, (n, 4)).astype(np.float32)
    labels = rng.integers(0, 7, n)
    want = evaluate_case(x, labels, x, labels, metric=metric, exclude_self=np.arange(n))
    excl = np.arange(n, dtype=np.int64)
    indptr, indices = positive_pairs(_Work.create(labels, labels, excl))
    qs = {0: prepare_queries(x, metric)}
    lay = Layout(None, None)
    order = rng.permutation(n)
    parts = [[_batch(order[a:b], x[order[a:b]]) for a, b in ((0, 20), (20, 21), (21, 50))],
             [_batch(order[a:b], x[order[a:b]]) for a, b in ((50, 51), (51, 90))]]
    case = spark_tasks.Case(0, 0, positives=Positives.create(indptr, indices))
    score = np.zeros(indices.size, dtype=np.float32)
    for part in parts:
        for out in spark_tasks.positive_scores(iter(part), lay, [case], qs, metric):
            for i, v in zip(out.column("idx").to_pylist(), out.column("val").to_pylist(),
                            strict=True):
                score[np.frombuffer(i, dtype=np.int64)] = np.frombuffer(v, dtype=np.float32)
    state = StreamState.create(indptr, indices, score)
    case = spark_tasks.Case(0, 0, state=state, excl=excl)
    rows = []
    for part in parts:
        for out in spark_tasks.counts(iter(part), lay, [case], qs, metric, 4096, 7):
            rows += list(zip(*(out.column(c).to_pylist() for c in ("c", "kind", "idx", "val")),
                             strict=True))
    merged = compat_spark._merge_counts([state], rows)[0]
    got = finish_stream(merged, (1, 5, 10))
    np.testing.assert_array_equal(got.first_positive_rank, want.first_positive_rank)
    np.testing.assert_array_equal(got.top1_index, want.top1_index)
    assert got.mean_average_precision == want.mean_average_precision


def test_saved_spark_compat_json_renders_again(tmp_path):
    """``gaudit render`` of a compat result saved from ``--engine spark``: the same JSON back
    (``engine`` kept), and the reports name the engine."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from graceful_audit import audit_compat
    from graceful_audit.cli import app

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    doc = audit_compat(sample / "emb_old.parquet", sample / "emb_new_compatible.parquet",
                       gates={"require-compatible": 1}).to_dict()
    assert doc.pop("engine") == "duckdb"
    doc = {"schema_version": doc.pop("schema_version"), "kind": doc.pop("kind"),
           "engine": "spark", **doc}
    saved = tmp_path / "spark.json"
    saved.write_text(json.dumps(doc))
    r = CliRunner().invoke(app, ["render", str(saved), "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == doc
    md = CliRunner().invoke(app, ["render", str(saved), "-f", "markdown"])
    assert "engine spark" in md.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "engine": "postgres"}))
    r = CliRunner().invoke(app, ["render", str(bad)])
    assert r.exit_code == 2 and "engine" in r.stderr


def test_task_code_pickles_after_a_threaded_search_in_the_same_process():
    """Spark ships retrieval.py by value; once an in-memory search has run with threads, the
    module holds a ThreadpoolController (ctypes pointers): it must not travel with the task
    (before, every Spark compat after an in-memory one in the same process failed)."""
    pytest.importorskip("pyspark")
    from pyspark import cloudpickle

    from graceful_audit import compat_spark, retrieval, spark_tasks

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 8)).astype(np.float32)  # more than one tile of 2048
    y = rng.integers(0, 50, 5000)
    retrieval.evaluate_case(x[:10], y[:10], x, y, n_threads=2)
    with retrieval._single_threaded_blas():  # the per-process controller exists now
        pass
    compat_spark._ship()
    for fn in (retrieval.count_shard, spark_tasks.validate, spark_tasks.counts):
        back = cloudpickle.loads(cloudpickle.dumps(fn))
        assert callable(back)
