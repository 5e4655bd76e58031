"""Tests for graceful_audit.retrieval against independent oracles.

Oracles:

* ``brute_force``: a deliberately simple second implementation (float64 similarity matrix,
  one ``np.lexsort`` by (-score, index) per query, top-k and AP read off the sorted list);
* ``sklearn.metrics.average_precision_score`` on tie-free galleries;
* hand-made galleries whose expected numbers are worked out in the comments.

Exactness: ``ip`` and ``l2`` tests use small integer vectors, for which every float32 score
(including the ``q.g - |g|^2/2`` form used for ``l2``) is exact, so exact ties are common and
the tie rule is tested hard.  ``cosine`` tests use Gaussian vectors and require a margin
between any two scores of a query, so float32 rounding cannot reorder them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

import graceful_audit.retrieval as retrieval
from graceful_audit.retrieval import CaseResult, evaluate_case, evaluate_streamed, normalize

KS = (1, 2, 5, 10)


# --------------------------------------------------------------------------- oracle


def similarity64(q: np.ndarray, g: np.ndarray, metric: str) -> np.ndarray:
    """Full (nq, ng) float64 similarity matrix, higher is closer."""
    q = np.asarray(q, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    if metric == "l2":
        return -((q[:, None, :] - g[None, :, :]) ** 2).sum(axis=-1)
    return q @ g.T


def brute_force(q, ql, g, gl, metric="cosine", ks=KS, exclude_self=None) -> dict:
    sim = similarity64(q, g, metric)
    nq, ng = sim.shape
    first_rank = np.zeros(nq, dtype=np.int64)
    top1 = np.full(nq, -1, dtype=np.int64)
    aps = []
    for i in range(nq):
        idx = np.arange(ng)
        if exclude_self is not None and exclude_self[i] >= 0:
            idx = idx[idx != exclude_self[i]]
        ranked = idx[np.lexsort((idx, -sim[i, idx]))]  # primary -score, then index
        if ranked.size:
            top1[i] = ranked[0]
        ranks = np.flatnonzero(gl[ranked] == ql[i]) + 1
        if ranks.size:
            first_rank[i] = ranks[0]
            aps.append(np.mean(np.arange(1, ranks.size + 1) / ranks))
    evaluated = first_rank > 0
    n_eval = int(evaluated.sum())
    return {
        "topk": {k: (float(np.mean(first_rank[evaluated] <= k)) if n_eval else None) for k in ks},
        "map": float(np.mean(aps)) if aps else None,
        "first_rank": first_rank,
        "top1": top1,
        "n_without": nq - n_eval,
    }


def assert_matches(res: CaseResult, expected: dict) -> None:
    np.testing.assert_array_equal(res.first_positive_rank, expected["first_rank"])
    np.testing.assert_array_equal(res.top1_index, expected["top1"])
    np.testing.assert_array_equal(res.top1_correct, expected["first_rank"] == 1)
    assert res.n_without_positive == expected["n_without"]
    assert res.topk.keys() == expected["topk"].keys()
    for k, v in expected["topk"].items():
        assert res.topk[k] == pytest.approx(v) if v is not None else res.topk[k] is None
    if expected["map"] is None:
        assert res.mean_average_precision is None
    else:
        assert res.mean_average_precision == pytest.approx(expected["map"], rel=1e-12)


def assert_same(a: CaseResult, b: CaseResult) -> None:
    assert a.topk == b.topk
    assert a.mean_average_precision == b.mean_average_precision
    assert (a.n_queries, a.n_without_positive) == (b.n_queries, b.n_without_positive)
    np.testing.assert_array_equal(a.first_positive_rank, b.first_positive_rank)
    np.testing.assert_array_equal(a.top1_index, b.top1_index)
    np.testing.assert_array_equal(a.top1_correct, b.top1_correct)


@pytest.fixture(params=["default", "tiny_tiles", "one_bucket", "few_buckets"])
def code_path(request, monkeypatch) -> Iterator[str]:
    """Run a test through each internal path of the tiled kernel.

    ``tiny_tiles``: tiles of 3 gallery items, query blocks of 2 and a ``bincount`` per key
    (ties and positives across tile borders); ``one_bucket``: every candidate in one bucket,
    so all are kept and sorted exactly; ``few_buckets``: 3 buckets per query (most
    candidates share a bucket with a positive) in tiles of 7 items.
    """
    if request.param == "tiny_tiles":
        monkeypatch.setattr(retrieval, "_TILE", 3)
        monkeypatch.setattr(retrieval, "_QUERY_BLOCK", 2)
        monkeypatch.setattr(retrieval, "_KEY_BATCH", 1)
    elif request.param == "one_bucket":
        monkeypatch.setattr(retrieval, "_BUCKETS", 1)
    elif request.param == "few_buckets":
        monkeypatch.setattr(retrieval, "_BUCKETS", 3)
        monkeypatch.setattr(retrieval, "_TILE", 7)
    yield request.param


def int_data(rng, nq, ng, d, n_labels, lo=-3, hi=3):
    q = rng.integers(lo, hi + 1, (nq, d)).astype(np.float32)
    g = rng.integers(lo, hi + 1, (ng, d)).astype(np.float32)
    return q, rng.integers(0, n_labels, nq), g, rng.integers(0, n_labels, ng)


def min_score_gap(sim: np.ndarray) -> float:
    """Smallest difference between two scores of the same query (inf if < 2 items)."""
    if sim.shape[1] < 2:
        return np.inf
    s = np.sort(sim, axis=1)
    return float(np.diff(s, axis=1).min())


# --------------------------------------------------------------------------- hand-made


def test_ties_are_broken_by_gallery_index():
    # ip, d = 1, query [1]: scores equal the gallery values.
    #   gallery values  [2, 3, 3, 1, 3]   labels [1, 1, 0, 0, 0]
    # Sorted by score descending, ties by index ascending: indices [1, 2, 4, 0, 3]
    #   with labels [1, 0, 0, 1, 0].
    # Query A (label 0): positives at ranks 2, 3, 5 -> AP = (1/2 + 2/3 + 3/5) / 3 = 53/90.
    #   (Ties by index descending would give [4, 2, 1, 0, 3] and ranks 1, 2, 5 instead.)
    # Query B (label 1): positives at ranks 1, 4 -> AP = (1/1 + 2/4) / 2 = 3/4.
    # Both queries' top-1 is index 1, the lowest index among the three scores of 3.
    g = np.array([[2], [3], [3], [1], [3]], dtype=np.float32)
    gl = np.array([1, 1, 0, 0, 0])
    q = np.array([[1], [1]], dtype=np.float32)
    ql = np.array([0, 1])
    res = evaluate_case(q, ql, g, gl, metric="ip", ks=(1, 2, 5))
    np.testing.assert_array_equal(res.first_positive_rank, [2, 1])
    np.testing.assert_array_equal(res.top1_index, [1, 1])
    np.testing.assert_array_equal(res.top1_correct, [False, True])
    assert res.topk == {1: 0.5, 2: 1.0, 5: 1.0}
    assert res.mean_average_precision == pytest.approx((53 / 90 + 3 / 4) / 2)
    assert_matches(res, brute_force(q, ql, g, gl, "ip", ks=(1, 2, 5)))


def test_cosine_exact_tie_uses_lower_index():
    # Query [1, 1, 0] normalised is [s, s, 0] with s = float32(1/sqrt(2)); its cosine with the
    # unit axes e0 and e1 is exactly s for both: a float32 tie.  Gallery [e1, e2, e0]
    # (labels [0, 2, 1]): e1 (index 0) and e0 (index 2) tie at s, e2 scores 0.
    # Ranking: [0, 2, 1].  Query label 1 -> positive index 2 at rank 2, AP 1/2, top-1 = 0.
    g = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float32)
    q = np.array([[1, 1, 0]], dtype=np.float32)
    res = evaluate_case(q, np.array([1]), g, np.array([0, 2, 1]), ks=(1, 2))
    np.testing.assert_array_equal(res.first_positive_rank, [2])
    np.testing.assert_array_equal(res.top1_index, [0])
    assert res.topk == {1: 0.0, 2: 1.0}
    assert res.mean_average_precision == pytest.approx(0.5)


def test_signed_zero_scores_tie():
    # ip scores of query [-1, 0]: gallery [0, 1] -> -0.0 + 0.0 = +0.0; gallery [0, -1] ->
    # -0.0 + -0.0 = -0.0.  -0.0 == +0.0, so the lower index (0) must rank first.
    q = np.array([[-1, 0]], dtype=np.float32)
    g = np.array([[0, 1], [0, -1]], dtype=np.float32)
    for ql in ([0], [1]):
        res = evaluate_case(q, np.array(ql), g, np.array([0, 1]), metric="ip", ks=(1,))
        np.testing.assert_array_equal(res.top1_index, [0])
        np.testing.assert_array_equal(res.first_positive_rank, [1 + ql[0]])


def test_metrics_give_different_rankings():
    # Unnormalised 2-d vectors; gallery g0 = [4, 3], g1 = [0.5, 0.5], g2 = [3, 0.25],
    # labels [0, 1, 2].
    # Query A = [1, 0], label 1 (positive g1):
    #   ip     4, 0.5, 3                  -> order [0, 2, 1], rank 3, AP 1/3, top-1 0
    #   cosine 0.8, 0.707, 0.9965         -> order [2, 0, 1], rank 3, AP 1/3, top-1 2
    #   l2     dist^2 18, 0.5, 4.0625     -> order [1, 2, 0], rank 1, AP 1,   top-1 1
    # Query B = [0, 1], label 0 (positive g0):
    #   ip     3, 0.5, 0.25               -> order [0, 1, 2], rank 1, AP 1,   top-1 0
    #   cosine 0.6, 0.707, 0.083          -> order [1, 0, 2], rank 2, AP 1/2, top-1 1
    #   l2     dist^2 20, 0.5, 9.5625     -> order [1, 2, 0], rank 3, AP 1/3, top-1 1
    g = np.array([[4, 3], [0.5, 0.5], [3, 0.25]], dtype=np.float32)
    gl = np.array([0, 1, 2])
    q = np.array([[1, 0], [0, 1]], dtype=np.float32)
    ql = np.array([1, 0])
    expected = {
        "ip": ([3, 1], [0, 0], 2 / 3, 0.5),
        "cosine": ([3, 2], [2, 1], 5 / 12, 0.0),
        "l2": ([1, 3], [1, 1], 2 / 3, 0.5),
    }
    for metric, (ranks, top1, m_ap, acc1) in expected.items():
        res = evaluate_case(q, ql, g, gl, metric=metric, ks=(1, 3))
        np.testing.assert_array_equal(res.first_positive_rank, ranks, err_msg=metric)
        np.testing.assert_array_equal(res.top1_index, top1, err_msg=metric)
        assert res.mean_average_precision == pytest.approx(m_ap), metric
        assert res.topk == {1: acc1, 3: 1.0}, metric
        assert_matches(res, brute_force(q, ql, g, gl, metric, ks=(1, 3)))


def test_leave_one_out_and_query_without_positive():
    # Queries = gallery = 1-d points x = [0, 2, 3, 10, 20], labels [0, 1, 0, 1, 2], l2,
    # each query excluding itself.
    #   q0 (x=0,  L0): others 1:4, 2:9, 3:100, 4:400 -> [1, 2, 3, 4]; positive 2 at rank 2
    #   q1 (x=2,  L1): 0:4, 2:1, 3:64, 4:324         -> [2, 0, 3, 4]; positive 3 at rank 3
    #   q2 (x=3,  L0): 0:9, 1:1, 3:49, 4:289         -> [1, 0, 3, 4]; positive 0 at rank 2
    #   q3 (x=10, L1): 0:100, 1:64, 2:49, 4:100      -> [2, 1, 0, 4]; positive 1 at rank 2
    #   q4 (x=20, L2): the only label-2 item is itself -> no positive; top-1 is 3 (x=10).
    # mAP over the 4 evaluated queries = (1/2 + 1/3 + 1/2 + 1/2) / 4 = 11/24.
    x = np.array([[0], [2], [3], [10], [20]], dtype=np.float32)
    labels = np.array([0, 1, 0, 1, 2])
    excl = np.arange(5)
    res = evaluate_case(x, labels, x, labels, metric="l2", ks=(1, 3, 10), exclude_self=excl)
    np.testing.assert_array_equal(res.first_positive_rank, [2, 3, 2, 2, 0])
    np.testing.assert_array_equal(res.top1_index, [1, 2, 1, 2, 3])
    np.testing.assert_array_equal(res.top1_correct, [False] * 5)
    assert res.n_queries == 5
    assert res.n_without_positive == 1
    assert res.n_evaluated == 4
    # k = 10 exceeds the 4-item gallery of each query: every evaluated query is a hit.
    assert res.topk == {1: 0.0, 3: 1.0, 10: 1.0}
    assert res.mean_average_precision == pytest.approx(11 / 24)
    assert_matches(res, brute_force(x, labels, x, labels, "l2", (1, 3, 10), excl))
    # Without the exclusion every query finds itself first.
    res_self = evaluate_case(x, labels, x, labels, metric="l2")
    assert res_self.topk[1] == 1.0
    np.testing.assert_array_equal(res_self.top1_index, np.arange(5))


def test_block_size_one_and_larger_than_queries_agree(code_path):
    rng = np.random.default_rng(7)
    q, ql, g, gl = int_data(rng, 9, 30, 3, 4)
    excl = rng.integers(-1, 30, 9)
    for metric in ("ip", "l2"):
        ref = evaluate_case(q, ql, g, gl, metric=metric, ks=KS, exclude_self=excl,
                            block_size=1)
        for bs in (2, 9, 100, None):
            assert_same(ref, evaluate_case(q, ql, g, gl, metric=metric, ks=KS,
                                           exclude_self=excl, block_size=bs))
        assert_matches(ref, brute_force(q, ql, g, gl, metric, KS, excl))


def test_progress_reports_cumulative_queries():
    rng = np.random.default_rng(0)
    q, ql, g, gl = int_data(rng, 10, 5, 2, 2)
    seen: list[int] = []
    evaluate_case(q, ql, g, gl, block_size=4, progress=seen.append)
    assert seen == [4, 8, 10]


def test_empty_gallery_and_no_queries():
    q = np.ones((3, 2), dtype=np.float32)
    res = evaluate_case(q, np.array([0, 1, 2]), np.zeros((0, 2), np.float32),
                        np.zeros(0, np.int64))
    assert res.n_without_positive == 3
    assert res.topk == {1: None, 5: None, 10: None}
    assert res.mean_average_precision is None
    np.testing.assert_array_equal(res.top1_index, [-1, -1, -1])
    np.testing.assert_array_equal(res.first_positive_rank, [0, 0, 0])

    res = evaluate_case(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), q,
                        np.array([0, 1, 2]))
    assert res.n_queries == 0 and res.mean_average_precision is None
    assert res.top1_index.shape == (0,)


def test_single_item_gallery_excluded_is_empty():
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    res = evaluate_case(x, np.array([0]), x, np.array([0]), exclude_self=np.array([0]))
    np.testing.assert_array_equal(res.top1_index, [-1])
    assert res.n_without_positive == 1


def test_normalize():
    x = np.array([[3, 4], [0, 0], [1, 0]], dtype=np.float64)
    out = normalize(x)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, [[0.6, 0.8], [0, 0], [1, 0]], rtol=1e-6)
    assert x[0, 0] == 3  # input untouched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queries": np.zeros((2, 3))}, "dimension"),
        ({"query_labels": np.zeros(3, np.int64)}, "query_labels"),
        ({"gallery_labels": np.zeros(5, np.int64)}, "gallery_labels"),
        ({"query_labels": np.array(["a", "b"])}, "integers"),
        ({"queries": np.zeros(4)}, "2-D"),
        ({"metric": "dot"}, "metric"),
        ({"ks": (0,)}, "k"),
        ({"exclude_self": np.array([0, 4])}, "exclude_self"),
        ({"exclude_self": np.array([0])}, "exclude_self"),
        ({"block_size": 0}, "block_size"),
        ({"n_threads": 0}, "n_threads"),
        ({"gallery": np.full((4, 2), np.nan)}, "NaN"),
        ({"queries": np.array([[0, np.inf], [0, 0]])}, "infinite"),
    ],
)
def test_validation(kwargs, message):
    args = {
        "queries": np.zeros((2, 2)),
        "query_labels": np.zeros(2, np.int64),
        "gallery": np.ones((4, 2)),
        "gallery_labels": np.zeros(4, np.int64),
    }
    options = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        evaluate_case(args["queries"], args["query_labels"], args["gallery"],
                      args["gallery_labels"], **options)


# --------------------------------------------------------------------------- oracles


def test_ap_matches_sklearn_on_tie_free_galleries():
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(20):
        q = rng.standard_normal((6, 8)).astype(np.float32)
        g = rng.standard_normal((40, 8)).astype(np.float32)
        ql, gl = rng.integers(0, 3, 6), rng.integers(0, 3, 40)
        sim = similarity64(q, g, "cosine")
        if min_score_gap(sim) < 1e-4:
            continue
        res = evaluate_case(q, ql, g, gl)
        aps = [average_precision_score(gl == ql[i], sim[i]) for i in range(6)
               if (gl == ql[i]).any()]
        assert res.mean_average_precision == pytest.approx(np.mean(aps), rel=1e-9)
        checked += 1
    assert checked >= 10


def test_larger_random_case_matches_brute_force(code_path):
    # 1,500 items in 40 clusters (integer centres in [-20, 20], integer noise in [-1, 1], so
    # every score is exact and ties are frequent).  Queries near their centre have few
    # candidates (vectorised path by default); the last ten are random points with many
    # (row-by-row path), so the default thresholds exercise both.
    rng = np.random.default_rng(11)
    centres = rng.integers(-20, 21, (40, 6))
    gl = rng.integers(0, 40, 1500)
    g = (centres[gl] + rng.integers(-1, 2, (1500, 6))).astype(np.float32)
    ql = rng.integers(0, 40, 40)
    q = (centres[ql] + rng.integers(-1, 2, (40, 6))).astype(np.float32)
    q[30:] = rng.integers(-20, 21, (10, 6))
    excl = np.where(rng.random(40) < 0.3, rng.integers(0, 1500, 40), -1)
    for metric in ("ip", "l2"):
        res = evaluate_case(q, ql, g, gl, metric=metric, ks=KS, exclude_self=excl,
                            block_size=16)
        assert_matches(res, brute_force(q, ql, g, gl, metric, KS, excl))


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    q, ql, g, gl = int_data(rng, 6, 20, 3, 3)
    excl = np.arange(6)
    copies = [a.copy() for a in (q, ql, g, gl, excl)]
    for metric in ("cosine", "ip", "l2"):
        evaluate_case(q, ql, g, gl, metric=metric, exclude_self=excl)
    for original, copy in zip((q, ql, g, gl, excl), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_threads_do_not_change_results():
    rng = np.random.default_rng(5)
    q, ql, g, gl = int_data(rng, 33, 200, 4, 6)
    ref = evaluate_case(q, ql, g, gl, metric="ip", n_threads=1)
    assert_same(ref, evaluate_case(q, ql, g, gl, metric="ip", n_threads=3))


# --------------------------------------------------------------------------- properties


@st.composite
def integer_cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    nq, ng = draw(st.integers(1, 12)), draw(st.integers(1, 40))
    d, n_labels = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    q, ql, g, gl = int_data(rng, nq, ng, d, n_labels)
    excl = None
    if draw(st.booleans()):
        excl = rng.integers(-1, ng, nq)
    metric = draw(st.sampled_from(["ip", "l2"]))
    return q, ql, g, gl, excl, metric


@settings(max_examples=50, deadline=None)
@given(case=integer_cases(), bs=st.integers(1, 15), tile=st.sampled_from([1, 4, 2048]),
       buckets=st.sampled_from([1, 2, 3, 2048]), batch=st.sampled_from([1, 30, 10**6]),
       threads=st.sampled_from([1, 3]))
def test_property_matches_brute_force_and_block_size(case, bs, tile, buckets, batch, threads):
    q, ql, g, gl, excl, metric = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(retrieval, "_TILE", tile)
        mp.setattr(retrieval, "_BUCKETS", buckets)
        mp.setattr(retrieval, "_KEY_BATCH", batch)
        res = evaluate_case(q, ql, g, gl, metric=metric, ks=KS, exclude_self=excl,
                            block_size=bs, n_threads=threads)
    assert_matches(res, brute_force(q, ql, g, gl, metric, KS, excl))
    assert_same(res, evaluate_case(q, ql, g, gl, metric=metric, ks=KS, exclude_self=excl))


@settings(max_examples=50, deadline=None)
@given(case=integer_cases())
def test_property_bounds_and_monotone_topk(case):
    q, ql, g, gl, excl, metric = case
    res = evaluate_case(q, ql, g, gl, metric=metric, ks=(10, 1, 3, 2), exclude_self=excl)
    n_eval = res.n_queries - res.n_without_positive
    assert n_eval == int((res.first_positive_rank > 0).sum())
    if n_eval == 0:
        assert res.mean_average_precision is None
        assert all(v is None for v in res.topk.values())
        return
    assert 0 < res.mean_average_precision <= 1
    accs = [res.topk[k] for k in sorted(res.topk)]
    assert all(0 <= a <= 1 for a in accs)
    assert accs == sorted(accs)
    assert res.topk[1] == pytest.approx(res.top1_correct.sum() / n_eval)
    # mAP is at least the mean of 1/r_1 * (1/P) and at most 1; AP <= 1/r_1 * ... is not
    # needed: check the top-1 consistency instead.
    ok = res.top1_correct
    np.testing.assert_array_equal(gl[res.top1_index[ok]], ql[ok])


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nq=st.integers(1, 8), ng=st.integers(2, 40),
       metric=st.sampled_from(["cosine", "ip", "l2"]))
def test_property_gallery_permutation_invariance(seed, nq, ng, metric):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, 5)).astype(np.float32)
    g = rng.standard_normal((ng, 5)).astype(np.float32)
    ql, gl = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    assume(min_score_gap(similarity64(q, g, metric)) > 1e-4)  # no ties, no near-ties
    perm = rng.permutation(ng)
    a = evaluate_case(q, ql, g, gl, metric=metric, ks=KS)
    b = evaluate_case(q, ql, g[perm], gl[perm], metric=metric, ks=KS)
    assert a.topk == b.topk
    if a.mean_average_precision is None:
        assert b.mean_average_precision is None
    else:
        assert a.mean_average_precision == pytest.approx(b.mean_average_precision, rel=1e-12)
    np.testing.assert_array_equal(a.first_positive_rank, b.first_positive_rank)
    np.testing.assert_array_equal(a.top1_index, perm[b.top1_index])
    assert_matches(a, brute_force(q, ql, g, gl, metric))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_labels=st.integers(1, 6), nq=st.integers(1, 10),
       metric=st.sampled_from(["cosine", "ip", "l2"]), loo=st.booleans())
def test_property_map_is_one_when_positives_are_nearest(seed, n_labels, nq, metric, loo):
    # Well separated clusters: centre 100 * e_label plus integer noise in [-3, 3], so every
    # item of a query's label is closer (for all three metrics) than any other item.
    rng = np.random.default_rng(seed)
    gl = rng.integers(0, n_labels, 30)
    g = 100 * np.eye(n_labels)[gl] + rng.integers(-3, 4, (30, n_labels))
    if loo:
        excl = rng.integers(0, 30, nq)
        q, ql = g[excl], gl[excl]
    else:
        excl = None
        ql = rng.integers(0, n_labels, nq)
        q = 100 * np.eye(n_labels)[ql] + rng.integers(-3, 4, (nq, n_labels))
    res = evaluate_case(q.astype(np.float32), ql, g.astype(np.float32), gl, metric=metric,
                        exclude_self=excl)
    if res.n_without_positive == nq:
        return
    assert res.mean_average_precision == 1.0
    assert all(v == 1.0 for v in res.topk.values())


# ---------------------------------------------------------------- streamed gallery (shards)


def shards_of(g: np.ndarray, sizes: list[int]):
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
@given(case=integer_cases(), cuts=st.lists(st.integers(0, 9), min_size=0, max_size=6),
       block_bytes=st.sampled_from([1, 64, 10**9]), dense=st.booleans())
def test_property_streamed_matches_brute_force_and_in_memory(case, cuts, block_bytes, dense):
    """Shards of uneven sizes (empty ones too), any query block: the same ranks, top-1 and
    metrics as brute force and, to the bit, as the in-memory kernel."""
    q, ql, g, gl, excl, metric = case
    with pytest.MonkeyPatch.context() as mp:
        if dense:
            mp.setattr(retrieval, "_BUCKETS", 1)
        res = evaluate_streamed(q, ql, gl, shards_of(g, cuts), metric=metric, ks=KS,
                                exclude_self=excl, block_bytes=block_bytes)
    assert_matches(res, brute_force(q, ql, g, gl, metric, KS, excl))
    mem = evaluate_case(q, ql, g, gl, metric=metric, ks=KS, exclude_self=excl)
    assert_same(res, mem)
    np.testing.assert_array_equal(res.average_precision, mem.average_precision)


def test_streamed_ties_across_shard_borders():
    """Every gallery item scores the same: ranks follow the gallery index across borders,
    and a shard holding no positive still counts the items before them."""
    g = np.ones((9, 2), dtype=np.float32)
    gl = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0])  # shard [3, 6) holds no positive of label 0
    q = np.ones((2, 2), dtype=np.float32)
    ql = np.array([0, 1])
    res = evaluate_streamed(q, ql, gl, shards_of(g, [3, 3, 3]), metric="ip", ks=(1, 5))
    np.testing.assert_array_equal(res.first_positive_rank, [1, 4])
    np.testing.assert_array_equal(res.top1_index, [0, 0])
    # label 0: positives at ranks 1, 2, 3, 7, 8, 9; label 1: 4, 5, 6.
    ap0 = np.mean(np.arange(1, 7) / np.array([1, 2, 3, 7, 8, 9]))
    ap1 = np.mean(np.arange(1, 4) / np.array([4, 5, 6]))
    np.testing.assert_allclose(res.average_precision, [ap0, ap1], rtol=1e-15)
    assert_matches(res, brute_force(q, ql, g, gl, "ip", (1, 5)))


def test_streamed_leave_one_out_float_data_equals_in_memory():
    """Float (not exactly representable) scores, leave-one-out, shards not dividing the
    gallery: the streamed kernel equals the in-memory one to the bit."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    y = rng.integers(0, 20, 300)
    excl = np.arange(300)
    for metric in ("cosine", "ip", "l2"):
        mem = evaluate_case(x, y, x, y, metric=metric, exclude_self=excl)
        res = evaluate_streamed(x, y, y, shards_of(x, [7, 100, 1, 55]), metric=metric,
                                exclude_self=excl, block_bytes=4 * 7 * 50)
        assert_same(res, mem)
        np.testing.assert_array_equal(res.average_precision, mem.average_precision)


def test_streamed_rejects_a_wrong_total():
    g = np.ones((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="3 rows given for 4 gallery indices"):
        evaluate_streamed(g, [0, 0, 0, 0], [0, 0, 0, 0], lambda: iter([g[:3]]))


@settings(max_examples=60, deadline=None)
@given(case=integer_cases(), seed=st.integers(0, 2**32 - 1), n_parts=st.integers(1, 5),
       block_bytes=st.sampled_from([1, 64, 10**9]))
def test_property_shards_in_any_order_and_merged_states_match_brute_force(
        case, seed, n_parts, block_bytes):
    """The kernel's unit of work, as a cluster would run it: the gallery cut into shards of
    scattered rows (gidx in any order), counted in any order into separate states that are
    then merged: the same ranks, top-1 and AP bits as the in-memory kernel."""
    q, ql, g, gl, excl, metric = case
    rng = np.random.default_rng(seed)
    ng = g.shape[0]
    excl = np.full(q.shape[0], -1) if excl is None else excl
    indptr, indices = retrieval.positive_pairs(retrieval._Work.create(
        np.asarray(ql, dtype=np.int64), np.asarray(gl, dtype=np.int64), excl))
    qs, gs = retrieval.prepare_queries(q, metric), retrieval.prepare_gallery(g, metric)
    pos = retrieval.Positives.create(indptr, indices)
    perm = rng.permutation(ng)
    cuts = np.sort(rng.integers(0, ng + 1, n_parts - 1))
    parts = np.split(perm, cuts)
    score = np.zeros(indices.size, dtype=np.float32)
    for part in parts[::-1]:
        at, vals = retrieval.shard_positive_scores(pos, qs, gs[part], part)
        score[at] = vals
    states = []
    for part in parts:
        state = retrieval.StreamState.create(indptr, indices, score)
        retrieval.count_shard(state, qs, gs[part], part, excl, block_bytes=block_bytes)
        states.append(state)
    res = retrieval.finish_stream(retrieval.merge_states(states[::-1]), KS)
    assert_matches(res, brute_force(q, ql, g, gl, metric, KS, excl))
    mem = evaluate_case(q, ql, g, gl, metric=metric, ks=KS, exclude_self=excl)
    assert_same(res, mem)
    np.testing.assert_array_equal(res.average_precision, mem.average_precision)


def scattered(g: np.ndarray, rng: np.random.Generator, n_parts: int):
    """A ``galleries`` entry: ``g``'s rows cut into ``n_parts`` shards of scattered rows (as
    a file stored in another order gives them), of uneven sizes, empty ones included."""
    perm = rng.permutation(g.shape[0])
    parts = np.split(perm, np.sort(rng.integers(0, g.shape[0] + 1, n_parts - 1)))
    return lambda: ((part, g[part]) for part in parts)


@settings(max_examples=60, deadline=None)
@given(case=integer_cases(), seed=st.integers(0, 2**32 - 1), n_parts=st.integers(1, 6),
       block_bytes=st.sampled_from([1, 64, 10**9]))
def test_property_galleries_read_in_any_order_match_brute_force(case, seed, n_parts,
                                                                 block_bytes):
    """evaluate_streamed_galleries: two gallery models, each read in its own (shuffled) row
    order in uneven shards; four cases (every query model on every gallery model): each
    equals brute force and, to the bit, the in-memory kernel; progress counts every row of
    both passes over both galleries."""
    q, ql, g, gl, excl, metric = case
    rng = np.random.default_rng(seed)
    g2 = g[:, ::-1].copy()  # a second model of the same items
    q2 = q[:, ::-1].copy()
    models = {"a": (q, g), "b": (q2, g2)}
    galleries = {k: scattered(gm, rng, n_parts) for k, (_, gm) in models.items()}
    cases = [retrieval.StreamCase(models[qk][0], ql, excl, gk)
             for qk in models for gk in models]
    seen = []
    got = retrieval.evaluate_streamed_galleries(cases, gl, galleries, metric=metric, ks=KS,
                                                block_bytes=block_bytes,
                                                progress=seen.append)
    assert seen[-1] == 2 * 2 * g.shape[0]
    for case_, res in zip(cases, got, strict=True):
        gm = models[case_.key][1]
        assert_matches(res, brute_force(case_.queries, ql, gm, gl, metric, KS, excl))
        mem = evaluate_case(case_.queries, ql, gm, gl, metric=metric, ks=KS,
                            exclude_self=excl)
        assert_same(res, mem)
        np.testing.assert_array_equal(res.average_precision, mem.average_precision)


def test_galleries_with_explicit_positives_and_a_shard_without_positives():
    """Explicit positives (as --qrels gives): ranks of every positive equal the in-memory
    kernel's; a shard with no positive at all, and ties across shards."""
    g = np.ones((8, 2), dtype=np.float32)
    g[5:] = 2  # items 5..7 score highest for every query
    q = np.ones((2, 2), dtype=np.float32)
    positives = (np.array([0, 2, 3]), np.array([1, 6, 0]))  # query 0: 1, 6; query 1: 0
    shards = [np.array([7, 5]), np.array([3, 2, 4]), np.array([6, 1, 0])]  # [3,2,4]: none
    galleries = {"g": lambda: ((s, g[s]) for s in shards)}
    case = retrieval.StreamCase(q, None, None, "g", positives)
    res = retrieval.evaluate_streamed_galleries([case], None, galleries, n_gallery=8,
                                                metric="ip", ks=(1, 5))[0]
    mem = evaluate_case(q, None, g, None, positives=positives, metric="ip", ks=(1, 5))
    assert_same(res, mem)
    np.testing.assert_array_equal(res.positive_rank, mem.positive_rank)
    # query 0: 5 > 6 > 7 (index order among ties) then 0 < 1 ...: 6 ranks 2nd, 1 ranks 5th
    np.testing.assert_array_equal(res.positive_rank, [5, 2, 4])
    np.testing.assert_array_equal(res.top1_index, [5, 5])


@pytest.mark.parametrize("shards, message", [
    ([np.array([0, 1]), np.array([1, 2])], "given twice"),
    ([np.array([0, 1, 2, 5])], "outside"),
    ([np.array([0, 2])], "2 rows given for 4 gallery indices"),
    ([np.array([0, 0, 1, 2])], "4 rows given for 4 gallery indices"),
])
def test_galleries_reject_indices_not_given_exactly_once(shards, message):
    g = np.ones((6, 2), dtype=np.float32)
    galleries = {"g": lambda: ((s, g[: s.size]) for s in shards)}
    case = retrieval.StreamCase(g[:1], [0], None, "g")
    with pytest.raises(ValueError, match=message):
        retrieval.evaluate_streamed_galleries([case], [0, 0, 1, 1], galleries)


# ----------------------------------------------------------------- the tiled kernel's paths
def count_case(q, ql, g, gl, excl, metric, gidx_order, n_threads):
    """``count_shard`` over the whole gallery given in the row order ``gidx_order``."""
    ng = g.shape[0]
    excl = np.full(q.shape[0], -1) if excl is None else np.asarray(excl)
    indptr, indices = retrieval.positive_pairs(retrieval._Work.create(
        np.asarray(ql, dtype=np.int64), np.asarray(gl, dtype=np.int64), excl))
    qs, gs = retrieval.prepare_queries(q, metric), retrieval.prepare_gallery(g, metric)
    pos = retrieval.Positives.create(indptr, indices)
    at, vals = retrieval.shard_positive_scores(pos, qs, gs, np.arange(ng))
    score = np.zeros(indices.size, dtype=np.float32)
    score[at] = vals
    state = retrieval.StreamState.create(indptr, indices, score)
    retrieval.count_shard(state, qs, gs[gidx_order], gidx_order, excl, n_threads=n_threads)
    return retrieval.finish_stream(state, KS)


@pytest.mark.parametrize("threads", [1, 2, 5])
@pytest.mark.parametrize("scrambled", [False, True])
def test_ties_across_tile_borders(monkeypatch, threads, scrambled):
    """Every item scores the same: ranks follow the gallery index across tiles of 3 items,
    whichever thread counts a tile and in whatever row order the shard comes."""
    monkeypatch.setattr(retrieval, "_TILE", 3)
    ng = 17
    g = np.ones((ng, 2), dtype=np.float32)
    gl = np.array([1, 0, 0, 1, 2, 2, 2, 0, 1, 1, 0, 2, 2, 0, 1, 0, 2])
    q = np.ones((4, 2), dtype=np.float32)
    ql = np.array([0, 1, 2, 3])  # label 3: no positive, top-1 only
    order = np.random.default_rng(3).permutation(ng) if scrambled else np.arange(ng)
    res = count_case(q, ql, g, gl, None, "ip", order, threads)
    assert_matches(res, brute_force(q, ql, g, gl, "ip"))
    np.testing.assert_array_equal(res.top1_index, [0, 0, 0, 0])
    np.testing.assert_array_equal(res.first_positive_rank, [2, 1, 5, 0])


def test_tiles_without_positive_or_candidate(monkeypatch):
    """Tiles whose items all score below every query's worst positive and hold no positive
    (nothing counted there), and a query without positive: still exact."""
    monkeypatch.setattr(retrieval, "_TILE", 4)
    q = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    ql = np.array([0, 1, 9])
    far = np.tile([[-5, -5]], (12, 1))  # every score -5 or -10: below every positive
    g = np.vstack([far, [[3, 0], [0, 3], [2, 2], [1, 0]]]).astype(np.float32)
    gl = np.r_[np.full(12, 5), [0, 1, 0, 1]]
    for threads in (1, 3):
        res = evaluate_case(q, ql, g, gl, metric="ip", ks=KS, n_threads=threads)
        assert_matches(res, brute_force(q, ql, g, gl, "ip"))
    np.testing.assert_array_equal(res.top1_index, [12, 13, 14])


@pytest.mark.parametrize("buckets", [1, 3, 2048])
def test_candidates_sharing_one_bucket_and_ties_with_positives(monkeypatch, buckets):
    """Rows whose positives all score the same (bucket span 0) with many items tied to
    them, and rows with many ties inside a positive's bucket: ties go by gallery index."""
    monkeypatch.setattr(retrieval, "_BUCKETS", buckets)
    monkeypatch.setattr(retrieval, "_TILE", 5)
    rng = np.random.default_rng(5)
    g = rng.integers(0, 3, (60, 2)).astype(np.float32)  # scores in {0 .. 4}: many ties
    gl = rng.integers(0, 4, 60)
    q = np.array([[1, 0], [0, 1], [1, 1], [1, 0]], dtype=np.float32)
    ql = np.array([0, 1, 2, 3])
    excl = np.array([-1, 5, 59, 0])
    same = np.ones((30, 2), dtype=np.float32)  # every score equal: one bucket
    same_l = rng.integers(0, 3, 30)
    for threads in (1, 2):
        for qq, qql, gg, ggl, ex in ((q, ql, g, gl, excl), (q[:3], ql[:3], same, same_l, None)):
            res = evaluate_case(qq, qql, gg, ggl, metric="ip", ks=KS, exclude_self=ex,
                                n_threads=threads)
            assert_matches(res, brute_force(qq, qql, gg, ggl, "ip", KS, ex))
            order = rng.permutation(gg.shape[0])
            assert_same(count_case(qq, qql, gg, ggl, ex, "ip", order, threads), res)


@settings(max_examples=40, deadline=None)
@given(case=integer_cases(), seed=st.integers(0, 2**32 - 1), threads=st.sampled_from([1, 2, 4]),
       tile=st.sampled_from([1, 2, 5, 2048]), buckets=st.sampled_from([1, 2, 7, 2048]))
def test_property_scrambled_shard_and_threads_equal_in_memory(case, seed, threads, tile,
                                                              buckets):
    """One shard holding the whole gallery in a scrambled row order, counted by 1 to 4
    threads with any tile and bucket count: the in-memory result, to the bit."""
    q, ql, g, gl, excl, metric = case
    order = np.random.default_rng(seed).permutation(g.shape[0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(retrieval, "_TILE", tile)
        mp.setattr(retrieval, "_BUCKETS", buckets)
        res = count_case(q, ql, g, gl, excl, metric, order, threads)
    mem = evaluate_case(q, ql, g, gl, metric=metric, ks=KS, exclude_self=excl, n_threads=1)
    assert_same(res, mem)
    np.testing.assert_array_equal(res.average_precision, mem.average_precision)
    assert_matches(res, brute_force(q, ql, g, gl, metric, KS, excl))


def test_a_one_item_tile_rounds_like_the_rest():
    """A one-item tile (gallery of 2049 = 2048 + 1 items) is scored by a matrix-matrix
    product too: numpy's matrix-vector path sums in another order, which broke near-ties
    differently in memory (one shard) and streamed (shards of 1000)."""
    rng = np.random.default_rng(15)
    n = 2049
    x = rng.integers(1, 4, (n, 4)).astype(np.float32)
    y = rng.integers(0, 60, n)
    excl = np.arange(n)
    mem = evaluate_case(x, y, x, y, exclude_self=excl)
    res = evaluate_streamed(x, y, y, lambda: (x[i : i + 1000] for i in range(0, n, 1000)),
                            exclude_self=excl)
    assert_same(res, mem)
    np.testing.assert_array_equal(res.average_precision, mem.average_precision)
