"""Explicit positives (``evaluate_case(..., positives=(indptr, indices))``) against a
brute-force numpy oracle: every positive's 1-based rank, the first positive's rank, the top-1
and AP, on small integer vectors (exact float32 scores, so ties are common and the tie rule,
score descending then gallery index ascending, is tested hard), through every ranking path.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graceful_audit.retrieval as retrieval
from graceful_audit.retrieval import (
    StreamCase,
    evaluate_case,
    evaluate_streamed,
    evaluate_streamed_cases,
)


def oracle(q, g, indptr, indices, metric):
    """Rank the whole gallery per query with one lexsort; read the positives' ranks off it."""
    q64, g64 = q.astype(np.float64), g.astype(np.float64)
    sim = -((q64[:, None, :] - g64[None]) ** 2).sum(-1) if metric == "l2" else q64 @ g64.T
    nq, ng = sim.shape
    prank = np.zeros(indices.size, dtype=np.int64)
    first = np.zeros(nq, dtype=np.int64)
    top1 = np.full(nq, -1, dtype=np.int64)
    ap = np.zeros(nq)
    for i in range(nq):
        ranked = np.lexsort((np.arange(ng), -sim[i]))
        rank_of = np.empty(ng, dtype=np.int64)
        rank_of[ranked] = np.arange(1, ng + 1)
        if ng:
            top1[i] = ranked[0]
        pos = indices[indptr[i]:indptr[i + 1]]
        prank[indptr[i]:indptr[i + 1]] = rank_of[pos]
        if pos.size:
            r = np.sort(rank_of[pos])
            first[i] = r[0]
            ap[i] = np.mean(np.arange(1, r.size + 1) / r)
    return prank, first, top1, ap


@st.composite
def csr_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nq, ng, d = draw(st.integers(1, 12)), draw(st.integers(1, 40)), draw(st.integers(1, 3))
    q = rng.integers(-2, 3, (nq, d)).astype(np.float32)
    g = rng.integers(-2, 3, (ng, d)).astype(np.float32)
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    rows = [np.flatnonzero(rng.random(ng) < density) for _ in range(nq)]
    indptr = np.r_[0, np.cumsum([r.size for r in rows])].astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    return q, g, indptr, indices, draw(st.sampled_from(["ip", "l2"]))


@settings(max_examples=80, deadline=None)
@given(case=csr_cases(), bs=st.integers(1, 15), tile=st.sampled_from([1, 4, 2048]),
       buckets=st.sampled_from([1, 2, 3, 2048]), batch=st.sampled_from([1, 30, 10**6]),
       threads=st.sampled_from([1, 3]))
def test_positive_ranks_match_brute_force(case, bs, tile, buckets, batch, threads):
    q, g, indptr, indices, metric = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(retrieval, "_TILE", tile)
        mp.setattr(retrieval, "_BUCKETS", buckets)
        mp.setattr(retrieval, "_KEY_BATCH", batch)
        res = evaluate_case(q, None, g, None, positives=(indptr, indices), metric=metric,
                            ks=(1, 3), block_size=bs, n_threads=threads)
    prank, first, top1, ap = oracle(q, g, indptr, indices, metric)
    np.testing.assert_array_equal(res.positive_rank, prank)
    np.testing.assert_array_equal(res.first_positive_rank, first)
    np.testing.assert_array_equal(res.top1_index, top1)
    np.testing.assert_allclose(res.average_precision, ap, rtol=1e-12)
    evaluated = first > 0
    assert res.n_without_positive == int((~evaluated).sum())
    for k in (1, 3):
        want = float(np.mean(first[evaluated] <= k)) if evaluated.any() else None
        assert res.topk[k] == want


def shards_of(g, sizes):
    """A ``shards`` callable cutting ``g`` into consecutive blocks of ``sizes`` (the last
    block takes the rest)."""
    def gen():
        start = 0
        for n in sizes:
            yield g[start : start + n]
            start += n
        if start < g.shape[0]:
            yield g[start:]
    return gen


@settings(max_examples=60, deadline=None)
@given(case=csr_cases(), cuts=st.lists(st.integers(0, 9), min_size=0, max_size=6),
       block_bytes=st.sampled_from([1, 64, 10**9]), buckets=st.sampled_from([1, 3, 2048]))
def test_streamed_positive_ranks_match_brute_force_and_in_memory(case, cuts, block_bytes,
                                                                  buckets):
    """The streamed kernel with explicit positives: shards of uneven sizes (empty ones too),
    any query block: every positive's rank, the top-1 and AP as the oracle, and the very
    bits of the in-memory kernel."""
    q, g, indptr, indices, metric = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(retrieval, "_BUCKETS", buckets)
        res = evaluate_streamed(q, None, None, shards_of(g, cuts), positives=(indptr, indices),
                                n_gallery=g.shape[0], metric=metric, ks=(1, 3),
                                block_bytes=block_bytes)
    prank, first, top1, ap = oracle(q, g, indptr, indices, metric)
    np.testing.assert_array_equal(res.positive_rank, prank)
    np.testing.assert_array_equal(res.first_positive_rank, first)
    np.testing.assert_array_equal(res.top1_index, top1)
    np.testing.assert_allclose(res.average_precision, ap, rtol=1e-12)
    mem = evaluate_case(q, None, g, None, positives=(indptr, indices), metric=metric,
                        ks=(1, 3))
    assert res.topk == mem.topk and res.mean_average_precision == mem.mean_average_precision
    assert res.n_without_positive == mem.n_without_positive
    for name in ("positive_rank", "first_positive_rank", "top1_index", "average_precision"):
        np.testing.assert_array_equal(getattr(res, name), getattr(mem, name))


def test_streamed_cases_mix_labels_and_explicit_positives():
    """One streamed pass may hold label cases and explicit-positive cases (n_gallery from
    the labels); only the explicit ones return positive_rank."""
    rng = np.random.default_rng(5)
    q = rng.integers(-3, 4, (20, 3)).astype(np.float32)
    g = rng.integers(-3, 4, (90, 3)).astype(np.float32)
    ql, gl = rng.integers(0, 5, 20), rng.integers(0, 5, 90)
    rows = [np.flatnonzero(gl == label) for label in ql]
    indptr = np.r_[0, np.cumsum([r.size for r in rows])]
    indices = np.concatenate(rows)
    a, b = evaluate_streamed_cases(
        [StreamCase(q, ql, None, "x"), StreamCase(q, None, None, "x", (indptr, indices))],
        gl, lambda: ({"x": s} for s in shards_of(g, [13, 40])()), metric="ip")
    assert a.positive_rank is None
    prank, first, top1, ap = oracle(q, g, indptr, indices, "ip")
    np.testing.assert_array_equal(b.positive_rank, prank)
    for name in ("first_positive_rank", "top1_index", "average_precision"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "n_gallery"),
    ({"n_gallery": 3, "exclude_self": np.array([0, 0])}, "must be None"),
    ({"n_gallery": 2}, r"in \[0, 2\)"),
])
def test_bad_streamed_positives(kwargs, match):
    q, g = np.ones((2, 2), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match=match):
        evaluate_streamed(q, None, None, shards_of(g, []),
                          positives=(np.array([0, 1, 2]), np.array([0, 2])), **kwargs)


def test_positives_from_labels_give_the_label_mode_bits():
    """The same positives given as labels or as CSR: identical results, to the bit."""
    rng = np.random.default_rng(3)
    q = rng.integers(-3, 4, (50, 3)).astype(np.float32)
    g = rng.integers(-3, 4, (300, 3)).astype(np.float32)
    ql, gl = rng.integers(0, 7, 50), rng.integers(0, 7, 300)
    rows = [np.flatnonzero(gl == label) for label in ql]
    indptr = np.r_[0, np.cumsum([r.size for r in rows])]
    indices = np.concatenate(rows)
    for metric in ("ip", "l2", "cosine"):
        a = evaluate_case(q, ql, g, gl, metric=metric, block_size=7)
        b = evaluate_case(q, None, g, None, positives=(indptr, indices), metric=metric,
                          block_size=7)
        assert a.positive_rank is None
        assert a.topk == b.topk and a.mean_average_precision == b.mean_average_precision
        for name in ("first_positive_rank", "top1_index", "top1_correct", "average_precision"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_hand_worked_ties():
    # Scores [2, 3, 3, 1, 3]: ranking by score desc, then index asc: [1, 2, 4, 0, 3].
    g = np.array([[2], [3], [3], [1], [3]], dtype=np.float32)
    q = np.array([[1], [1]], dtype=np.float32)
    indptr, indices = np.array([0, 3, 3]), np.array([0, 2, 4])
    res = evaluate_case(q, None, g, None, positives=(indptr, indices), metric="ip")
    np.testing.assert_array_equal(res.positive_rank, [4, 2, 3])
    np.testing.assert_array_equal(res.first_positive_rank, [2, 0])
    assert res.average_precision[0] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    assert res.n_without_positive == 1


@pytest.mark.parametrize(("positives", "kwargs", "match"), [
    ((np.array([0, 1]), np.array([0])), {}, "indptr must have shape"),
    ((np.array([0, 2, 1]), np.array([0, 1])), {}, "never falling"),
    ((np.array([0, 1, 3]), np.array([0, 1])), {}, "never falling"),
    ((np.array([0, 1, 2]), np.array([0, 9])), {}, r"in \[0, 3\)"),
    ((np.array([0, 2, 2]), np.array([1, 1])), {}, "strictly ascending"),
    ((np.array([0, 2, 2]), np.array([2, 1])), {}, "strictly ascending"),
    ((np.array([0, 1, 2]), np.array([0.0, 1.0])), {}, "must be integers"),
    ((np.array([0, 1, 2]), np.array([0, 1])), {"exclude_self": np.array([0, 0])}, "be None"),
])
def test_bad_positives(positives, kwargs, match):
    q, g = np.ones((2, 2), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match=match):
        evaluate_case(q, None, g, None, positives=positives, **kwargs)


def test_a_new_row_may_start_lower():
    q, g = np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)
    res = evaluate_case(q, None, g, None, positives=(np.array([0, 1, 2]), np.array([1, 0])))
    np.testing.assert_array_equal(res.positive_rank, [2, 2])
