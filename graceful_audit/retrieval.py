r"""Exact retrieval metrics for one query-model / gallery-model case.

``gaudit compat OLD NEW`` runs :func:`evaluate_case` four times (old/old, new/new, new/old,
old/new).  This module is the pure compute core: no I/O, no printing, no pandas.

Similarity
----------
Every metric is turned into a score where *higher is closer*:

* ``"cosine"``: :math:`s(q, g) = \hat q \cdot \hat g` with :math:`\hat x = x / \lVert x\rVert_2`
  (both sides L2-normalised in float32, then an inner product);
* ``"ip"``: :math:`s(q, g) = q \cdot g`;
* ``"l2"``: :math:`s(q, g) = -\lVert q - g\rVert_2^2`.  Internally the rank-equivalent score
  :math:`q \cdot g - \tfrac12 \lVert g\rVert_2^2 = -\tfrac12(\lVert q-g\rVert_2^2 -
  \lVert q\rVert_2^2)` is computed with one matrix product on augmented vectors
  :math:`[q, 1]\cdot[g, -\tfrac12\lVert g\rVert^2]` (the same expansion faiss uses), so distances
  that differ by less than float32 rounding may be ordered by rounding, not by their exact value.

All scores are float32 values of one BLAS ``sgemm`` per block of queries; scores that are equal
in exact arithmetic but not in float32 are *not* ties.

Ranking and ties
----------------
For each query the gallery is sorted by score descending; **equal scores are ordered by gallery
index ascending** (the lower index ranks first), so the ranking is a total order and every
result is deterministic and independent of the block size.  The 1-based rank of gallery item
:math:`p` is

.. math:: r(p) = 1 + \#\{g : s_g > s_p\} + \#\{g : s_g = s_p,\ g < p\}.

When ``exclude_self[q] = j >= 0`` item :math:`j` is removed from query :math:`q`'s gallery
(leave-one-out evaluation when queries and gallery are the same items): it is neither ranked
nor counted as a positive.

Metrics
-------
A *positive* of query :math:`q` is a gallery item (other than the excluded one) with the same
label.  Queries with no positive are counted in ``n_without_positive`` and excluded from the
denominators of both top-k accuracy and mAP.  Let :math:`\mathcal Q^+` be the queries with at
least one positive.

* Top-k identification accuracy (CMC at rank k, [1]_):
  :math:`\mathrm{acc}@k = |\{q \in \mathcal Q^+ : r^{(q)}_1 \le k\}| / |\mathcal Q^+|`, where
  :math:`r^{(q)}_1` is the rank of the best-ranked positive.  ``k`` larger than the gallery is
  allowed (every query in :math:`\mathcal Q^+` is then a hit).
* Average precision over the full gallery ([2]_, the usual re-identification protocol [3]_): with
  the :math:`P` positives of :math:`q` at ranks :math:`r_1 < \dots < r_P`,

  .. math:: \mathrm{AP}(q) = \frac1P \sum_{i=1}^{P} \frac{i}{r_i}
            = \frac1P \sum_{i=1}^{P} \mathrm{precision@}r_i,

  and :math:`\mathrm{mAP} = \frac{1}{|\mathcal Q^+|}\sum_{q\in\mathcal Q^+}\mathrm{AP}(q)`.  This
  equals ``sklearn.metrics.average_precision_score(is_positive, score)`` when no two gallery
  scores of the query are equal (with ties sklearn pools the tied items; here the index rule
  decides).

Algorithm (exact, bounded memory)
---------------------------------
Queries are processed in blocks.  For one block the score matrix :math:`S` (block x gallery,
float32, at most ~256 MB by default) is computed with a single ``sgemm``.  Every quantity above
only involves gallery items scoring at least as high as the query's *worst* positive
:math:`t_q = \min_p s_p`: the best positive, the top-1 neighbour and all items ranked before
any positive.  So per block:

1. gather the positives' scores and take :math:`t_q` (a segmented minimum);
2. one vectorised pass ``S >= t[:, None]`` selects the *candidates*, typically a few times
   :math:`P` per query;
3. candidates are encoded as ``uint64`` keys ``(row << 32) | order-reversing-bits(score)`` and
   sorted (``np.sort``); a positive's rank is ``searchsorted`` of its key minus its row start,
   plus the number of equal-score candidates with a lower gallery index (computed with a stable
   sort restricted to the tied keys, only when ties exist);
4. the top-1 neighbour is the first candidate (gallery order) with the row's best key.

The cost is one ``sgemm`` plus two cheap passes over :math:`S`; the rest is proportional to the
number of candidates.  A model that ranks some positives last makes that query's candidates the
whole gallery; correctness is unaffected and candidates are processed in row chunks so memory
stays bounded, but the sort then dominates.  faiss is not needed: top-k accuracy follows exactly
from the first positive rank, and the numpy ``sgemm`` runs at the same rate as faiss's exact
search without faiss's heap pass (whose order among equal scores is unspecified anyway).

Inputs must be finite (the caller rejects NaN/inf and zero vectors).

References
----------
.. [1] H. Moon and P. J. Phillips, "Computational and performance aspects of PCA-based
   face-recognition algorithms", Perception 30(3), 2001 (cumulative match characteristic).
.. [2] C. D. Manning, P. Raghavan and H. Schuetze, *Introduction to Information Retrieval*,
   Cambridge University Press, 2008, section 8.4 (mean average precision).
.. [3] L. Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015
   (mAP over the full gallery for re-identification).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["CaseResult", "evaluate_case", "normalize", "METRICS", "DEFAULT_BLOCK_BYTES"]

METRICS = ("cosine", "ip", "l2")
"""Accepted values of ``metric``."""

DEFAULT_BLOCK_BYTES = 256 * 1024 * 1024
"""Target size of one block's float32 score matrix when ``block_size`` is not given."""

_CANDIDATE_CHUNK = 8_000_000
"""Candidates handled at once (about 40 bytes each); a single row may exceed it."""

_DENSE_ROW_MIN = 2_000
_DENSE_ROW_DIVISOR = 16
"""A query with more than ``_DENSE_ROW_MIN + ng // _DENSE_ROW_DIVISOR`` candidates is ranked
on its own row (partition + sort of its candidates) instead of in the vectorised batch."""


@dataclass(frozen=True)
class CaseResult:
    """Retrieval metrics of one query-model / gallery-model case.

    Attributes
    ----------
    topk : dict[int, float | None]
        ``k -> acc@k``: fraction of evaluated queries (those with at least one positive) with a
        positive among their first ``k`` results; ``None`` when no query was evaluated.
    mean_average_precision : float | None
        Mean of :math:`\\mathrm{AP} = \\frac1P\\sum_i i/r_i` over the evaluated queries;
        ``None`` when no query was evaluated.
    n_queries : int
        All queries.
    n_without_positive : int
        Queries with no positive in their gallery (counted, excluded from both denominators).
    top1_correct : numpy.ndarray
        ``bool[n_queries]``: the top-1 neighbour has the query's label (False without positive).
    first_positive_rank : numpy.ndarray
        ``int64[n_queries]``: 1-based rank of the best-ranked positive, 0 when there is none.
    top1_index : numpy.ndarray
        ``int64[n_queries]``: gallery index of the top-1 neighbour, -1 if the gallery is empty.
    """

    topk: dict[int, float | None]
    mean_average_precision: float | None
    n_queries: int
    n_without_positive: int
    top1_correct: np.ndarray
    first_positive_rank: np.ndarray
    top1_index: np.ndarray

    @property
    def n_evaluated(self) -> int:
        """Queries with at least one positive (the denominator of every metric)."""
        return self.n_queries - self.n_without_positive


def normalize(x: np.ndarray) -> np.ndarray:
    r"""Return a float32 C-contiguous copy of ``x`` with every row scaled to unit L2 norm.

    :math:`\hat x_i = x_i / \lVert x_i \rVert_2`.  Rows of norm zero are left as zeros (the
    caller is expected to reject them before).

    Parameters
    ----------
    x : numpy.ndarray
        ``(n, d)`` array.

    Returns
    -------
    numpy.ndarray
        ``(n, d)`` float32 array.
    """
    out = np.array(x, dtype=np.float32, order="C", copy=True)
    if out.ndim != 2:
        raise ValueError(f"normalize expects a 2-D array, got shape {out.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float32))
    norms[norms == 0] = 1
    out /= norms[:, None]
    return out


def evaluate_case(
    queries: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    metric: str = "cosine",
    ks: tuple[int, ...] = (1, 5, 10),
    exclude_self: np.ndarray | None = None,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> CaseResult:
    r"""Rank the full gallery for every query and compute top-k accuracy and mAP exactly.

    Ranking: score descending, ties by gallery index ascending (see the module docstring).
    :math:`\mathrm{acc}@k = \#\{q: r^{(q)}_1 \le k\} / |\mathcal Q^+|` and
    :math:`\mathrm{AP}(q) = \frac1P \sum_{i=1}^P i / r_i` with the positives' ranks
    :math:`r_1 < \dots < r_P` over the full gallery.

    Parameters
    ----------
    queries : numpy.ndarray
        ``(nq, d)`` query embeddings (converted to float32).
    query_labels : numpy.ndarray
        ``(nq,)`` integer label codes.
    gallery : numpy.ndarray
        ``(ng, d)`` gallery embeddings (converted to float32).
    gallery_labels : numpy.ndarray
        ``(ng,)`` integer label codes, same coding as ``query_labels``.
    metric : {"cosine", "ip", "l2"}
        Similarity; ``"l2"`` ranks by squared euclidean distance, smallest first.
    ks : tuple of int
        Cut-offs for top-k accuracy, each >= 1 (may exceed the gallery size).
    exclude_self : numpy.ndarray, optional
        ``(nq,)`` integers: gallery index removed from each query's gallery, -1 for none.
    block_size : int, optional
        Queries per block.  Default: as many as keep one float32 block score matrix under
        :data:`DEFAULT_BLOCK_BYTES`.  Results do not depend on it.
    progress : callable, optional
        Called after each block with the number of queries finished so far.

    Returns
    -------
    CaseResult

    Raises
    ------
    ValueError
        On shape or dimension mismatches, non-integer labels, an unknown metric, a ``k < 1``,
        a ``block_size < 1`` or an ``exclude_self`` index outside ``[-1, ng)``.
    """
    q, ql, g, gl, excl = _validate(queries, query_labels, gallery, gallery_labels, exclude_self)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    ks = tuple(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"every k must be an integer >= 1, got {k!r}")
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int | np.integer)
        or block_size < 1
    ):
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")

    nq, ng = q.shape[0], g.shape[0]
    top1_index = np.full(nq, -1, dtype=np.int64)
    first_rank = np.zeros(nq, dtype=np.int64)
    ap = np.zeros(nq, dtype=np.float64)

    # Positives per query: same label, excluding the query's own gallery item.
    order = np.argsort(gl, kind="stable")
    gl_sorted = gl[order]
    lo = np.searchsorted(gl_sorted, ql, side="left")
    n_same = np.searchsorted(gl_sorted, ql, side="right") - lo
    has_self = excl >= 0
    self_is_pos = np.zeros(nq, dtype=bool)
    self_is_pos[has_self] = gl[excl[has_self]] == ql[has_self]
    n_pos = n_same - self_is_pos

    if nq and ng:
        qs, gt = _prepare(q, g, metric)
        nb = block_size or max(1, DEFAULT_BLOCK_BYTES // (4 * ng))
        nb = int(min(nb, nq))
        buf = np.empty((nb, ng), dtype=np.float32)
        mask = np.empty((nb, ng), dtype=bool)
        for b0 in range(0, nq, nb):
            b1 = min(b0 + nb, nq)
            _evaluate_block(
                qs[b0:b1], gt, buf[: b1 - b0], mask[: b1 - b0],
                ql[b0:b1], gl, order, lo[b0:b1], n_same[b0:b1], n_pos[b0:b1], excl[b0:b1],
                top1_index[b0:b1], first_rank[b0:b1], ap[b0:b1],
            )
            if progress is not None:
                progress(b1)
    elif progress is not None:
        progress(nq)

    evaluated = n_pos > 0
    n_eval = int(evaluated.sum())
    topk: dict[int, float | None] = {}
    for k in ks:
        hits = int(np.count_nonzero(evaluated & (first_rank <= k)))
        topk[int(k)] = hits / n_eval if n_eval else None
    mean_ap = float(ap[evaluated].mean()) if n_eval else None
    return CaseResult(
        topk=topk,
        mean_average_precision=mean_ap,
        n_queries=nq,
        n_without_positive=nq - n_eval,
        top1_correct=first_rank == 1,
        first_positive_rank=first_rank,
        top1_index=top1_index,
    )


def _validate(
    queries: np.ndarray,
    query_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    exclude_self: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2:
        raise ValueError(
            f"queries and gallery must be 2-D (n, d); got shapes {q.shape} and {g.shape}"
        )
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"queries have dimension {q.shape[1]} but the gallery has {g.shape[1]}"
        )
    ql = _labels(query_labels, q.shape[0], "query_labels", "queries")
    gl = _labels(gallery_labels, g.shape[0], "gallery_labels", "gallery rows")
    if exclude_self is None:
        excl = np.full(q.shape[0], -1, dtype=np.int64)
    else:
        excl = _labels(exclude_self, q.shape[0], "exclude_self", "queries")
        if excl.size and (excl.min() < -1 or excl.max() >= g.shape[0]):
            raise ValueError(
                f"exclude_self must hold gallery indices in [0, {g.shape[0]}) or -1"
            )
    return q, ql, g, gl, excl


def _labels(values: np.ndarray, n: int, name: str, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the {n} {what}; got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers (factorise string labels), got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _prepare(q: np.ndarray, g: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(Q', G'^T)`` such that ``Q' @ G'^T`` is the rank-equivalent score matrix."""
    if metric == "cosine":
        q, g = normalize(q), normalize(g)
    elif metric == "l2":
        half_sq = 0.5 * np.einsum("ij,ij->i", g, g, dtype=np.float64)
        q = np.hstack([q, np.ones((q.shape[0], 1), dtype=np.float32)])
        g = np.hstack([g, (-half_sq).astype(np.float32)[:, None]])
    # A C-contiguous (d, ng) right-hand side is a few percent faster in sgemm than g.T.
    return q, np.ascontiguousarray(g.T)


def _evaluate_block(
    qb: np.ndarray,
    gt: np.ndarray,
    s: np.ndarray,
    mask: np.ndarray,
    ql: np.ndarray,
    gl: np.ndarray,
    order: np.ndarray,
    lo: np.ndarray,
    n_same: np.ndarray,
    n_pos: np.ndarray,
    excl: np.ndarray,
    top1_index: np.ndarray,
    first_rank: np.ndarray,
    ap: np.ndarray,
) -> None:
    """Fill ``top1_index``, ``first_rank`` and ``ap`` (views) for one block of queries."""
    nb, ng = s.shape
    np.matmul(qb, gt, out=s)
    rows = np.arange(nb)
    has_self = excl >= 0
    s[rows[has_self], excl[has_self]] = -np.inf

    with_pos = n_pos > 0
    if with_pos.any():
        # t_q: the worst positive's score (+inf when the query has no positive).
        thresh = np.full(nb, np.inf, dtype=np.float32)
        _worst_positive(s, order, lo, n_same, excl, thresh)
        np.greater_equal(s, thresh[:, None], out=mask)
        counts = mask.view(np.uint8).sum(axis=1, dtype=np.int64)
        dense = counts > _DENSE_ROW_MIN + ng // _DENSE_ROW_DIVISOR
        for r in np.flatnonzero(dense):
            pcols = order[lo[r] : lo[r] + n_same[r]]
            pcols = pcols[pcols != excl[r]]
            top1_index[r], first_rank[r], ap[r] = _rank_dense_row(s[r], int(counts[r]), pcols)
        if dense.any():
            mask[dense] = False
            counts[dense] = 0
        if counts.any():
            for r0, r1 in _split_by_weight(counts, _CANDIDATE_CHUNK):
                _rank_sparse_rows(
                    s[r0:r1], mask[r0:r1], counts[r0:r1], ql[r0:r1], gl, n_pos[r0:r1],
                    top1_index[r0:r1], first_rank[r0:r1], ap[r0:r1],
                )

    # Top-1 where the best positive is not first: first maximum = lowest index on ties.
    todo = np.flatnonzero(first_rank != 1)
    if todo.size:
        if 8 * todo.size > nb:
            best = s.argmax(axis=1)[todo]
        else:
            best = s[todo].argmax(axis=1)
        empty = s[todo, best] == -np.inf
        top1_index[todo] = np.where(empty, -1, best)


def _worst_positive(
    s: np.ndarray,
    order: np.ndarray,
    lo: np.ndarray,
    n_same: np.ndarray,
    excl: np.ndarray,
    thresh: np.ndarray,
) -> None:
    """Set ``thresh[r]`` to the minimum score of row ``r``'s positives (untouched if none)."""
    ng = s.shape[1]
    flat_s = s.reshape(-1)
    for r0, r1 in _split_by_weight(n_same, _CANDIDATE_CHUNK):
        cnt = n_same[r0:r1]
        total = int(cnt.sum())
        if total == 0:
            continue
        row = np.repeat(np.arange(r0, r1), cnt)
        seg_start = np.cumsum(cnt) - cnt
        within = np.arange(total) - np.repeat(seg_start, cnt)
        col = order[np.repeat(lo[r0:r1], cnt) + within]
        keep = col != excl[row]
        row, col = row[keep], col[keep]
        if row.size == 0:
            continue
        vals = flat_s[row * ng + col]
        # `row` is ascending, so segments start where it changes.
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        thresh[row[starts]] = np.minimum.reduceat(vals, starts)


def _rank_dense_row(v: np.ndarray, n_cand: int, pcols: np.ndarray) -> tuple[int, int, float]:
    """Rank one query's positives when many gallery items beat its worst positive.

    ``v`` is the query's score row, ``n_cand = #{v >= t}`` and ``pcols`` its positives.  The
    ``n_cand`` best scores are selected (``np.partition``) and sorted; a positive's rank is then
    ``1 + #{greater} + #{equal with lower index}``.  Returns ``(top1 or -1, r_1, AP)``; top-1
    is left to the caller (-1) unless the best positive is first.
    """
    ng = v.size
    if 2 * n_cand > ng:
        top = np.sort(v)[ng - n_cand :]
    else:
        top = np.partition(v, ng - n_cand)[ng - n_cand :]
        top.sort()
    pv = v[pcols]
    right = np.searchsorted(top, pv, side="right")
    rank = 1 + (n_cand - right)
    tied = np.flatnonzero(right - np.searchsorted(top, pv, side="left") > 1)
    if tied.size:
        for val in np.unique(pv[tied]):
            sel = tied[pv[tied] == val]
            rank[sel] += np.searchsorted(np.flatnonzero(v == val), pcols[sel])
    o = np.argsort(rank)
    ranks = rank[o]
    ap = float(np.mean(np.arange(1, ranks.size + 1) / ranks))
    top1 = int(pcols[o[0]]) if ranks[0] == 1 else -1
    return top1, int(ranks[0]), ap


def _rank_sparse_rows(
    s: np.ndarray,
    mask: np.ndarray,
    counts: np.ndarray,
    ql: np.ndarray,
    gl: np.ndarray,
    n_pos: np.ndarray,
    top1_index: np.ndarray,
    first_rank: np.ndarray,
    ap: np.ndarray,
) -> None:
    """Rank the candidates (``mask``) of rows with few of them, all rows at once.

    Candidates are encoded as ``int64`` keys ``(row << 32) + order(-score)`` so that one
    ``np.sort`` orders every row by score descending; see the module docstring, step 3.
    """
    nr, ng = s.shape
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return
    row = np.repeat(np.arange(nr, dtype=np.int64), counts)
    col = flat - row * ng
    # 0 - score: descending order, and -0.0 becomes +0.0 so equal scores share a key.
    neg = np.subtract(np.float32(0.0), s.reshape(-1)[flat])
    key = np.left_shift(row, 32)
    key += _ordered_int32(neg)
    sorted_key = np.sort(key)
    row_start = np.cumsum(counts) - counts

    # Ranks of the positives: strictly better candidates + equal ones with a lower index.
    pos = np.flatnonzero(gl[col] == ql[row])
    pos_row, pos_key = row[pos], key[pos]
    left = np.searchsorted(sorted_key, pos_key, side="left")
    rank = 1 + left - row_start[pos_row]
    n_equal = np.searchsorted(sorted_key, pos_key, side="right") - left
    tied = np.flatnonzero(n_equal > 1)
    if tied.size:
        rank[tied] += _equal_before(key, pos[tied], np.unique(pos_key[tied]))

    n_found = np.bincount(pos_row, minlength=nr)
    has = n_found > 0
    if not np.array_equal(n_found[has], n_pos[has]):  # pragma: no cover - invariant
        raise AssertionError("retrieval: positives missing from the candidate set")

    # AP: order each row's positives by rank; the i-th (1-based) contributes i / r_i.
    stride = np.int64(ng + 1)
    o = np.argsort(pos_row * stride + rank)
    prow, prank = pos_row[o], rank[o]
    pstart = np.cumsum(n_found) - n_found
    i = np.arange(1, o.size + 1) - pstart[prow]
    sums = np.bincount(prow, weights=i / prank, minlength=nr)
    ap[has] = sums[has] / n_found[has]
    best = pstart[has]
    first_rank[has] = prank[best]
    top1_index[has] = np.where(prank[best] == 1, col[pos[o[best]]], -1)


def _equal_before(key: np.ndarray, targets: np.ndarray, tied_keys: np.ndarray) -> np.ndarray:
    """For candidate positions ``targets``: how many earlier candidates share their key.

    Candidates are in row-major gallery order, so "earlier with the same key" means "same
    query, same score, lower gallery index".  Only candidates whose key is in ``tied_keys``
    are sorted (stably), which keeps the common tie-free case free of this cost.
    """
    sub = np.flatnonzero(np.isin(key, tied_keys))
    sub_key = key[sub]
    o = np.argsort(sub_key, kind="stable")
    sk = sub_key[o]
    occurrence = np.empty(sub.size, dtype=np.int64)
    occurrence[o] = np.arange(sub.size) - np.searchsorted(sk, sk, side="left")
    return occurrence[np.searchsorted(sub, targets)]


def _ordered_int32(vals: np.ndarray) -> np.ndarray:
    """Map float32 values to int32 preserving order (``-0.0`` must be excluded beforehand).

    Non-negative floats compare like their bit patterns as signed integers; for negative ones
    the lower 31 bits are flipped so that more negative floats give smaller integers.
    """
    i = vals.view(np.int32)
    flip = np.right_shift(i, 31)
    flip &= 0x7FFFFFFF
    flip ^= i
    return flip


def _split_by_weight(weights: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """Split ``range(len(weights))`` into consecutive chunks of total weight <= ``cap``.

    A single item heavier than ``cap`` forms its own chunk.
    """
    n = weights.size
    cum = np.cumsum(weights, dtype=np.int64)
    chunks: list[tuple[int, int]] = []
    start, base = 0, 0
    while start < n:
        end = int(np.searchsorted(cum, base + cap, side="right"))
        end = max(end, start + 1)
        chunks.append((start, end))
        base = int(cum[end - 1])
        start = end
    return chunks
