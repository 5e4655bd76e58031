r"""Exact retrieval metrics for one query-model / gallery-model case.

``gaudit compat OLD NEW`` runs :func:`evaluate_case` four times (old/old, new/new, new/old,
old/new), or :func:`evaluate_streamed_cases` once for the four when the gallery is read in
shards.  This module is the pure compute core: no I/O, no printing, no pandas.

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

All scores are float32 values of one BLAS ``sgemm`` per block of queries, except that a
query's *positives* take their :func:`pair_scores` (one float32 dot product per pair), so
that a positive's score never depends on the shape of a matrix product: the in-memory and
the streamed kernels then compare the very same values.  Scores that are equal in exact
arithmetic but not in float32 are *not* ties.

Ranking and ties
----------------
For each query the gallery is sorted by score descending; **equal scores are ordered by gallery
index ascending** (the lower index ranks first), so the ranking is a total order and every
result is deterministic (see *Determinism* below).  The 1-based rank of gallery item
:math:`p` is

.. math:: r(p) = 1 + \#\{g : s_g > s_p\} + \#\{g : s_g = s_p,\ g < p\}.

When ``exclude_self[q] = j >= 0`` item :math:`j` is removed from query :math:`q`'s gallery
(leave-one-out evaluation when queries and gallery are the same items): it is neither ranked
nor counted as a positive.

Metrics
-------
A *positive* of query :math:`q` is a gallery item (other than the excluded one) with the same
label.  Positives may instead be given explicitly per query (``positives=(indptr, indices)``, CSR
form: relevance judgments of search and RAG); the kernel reads them the same way and then
also returns every positive's rank.  Queries with no positive are counted in
``n_without_positive`` and excluded from the denominators of both top-k accuracy and mAP.
Let :math:`\mathcal Q^+` be the queries with at least one positive.

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
float32, at most ~128 MB by default, plus a bool mask a quarter of that size) is computed by
``sgemm``.  Every quantity above only involves gallery items scoring at least as high as the
query's *worst* positive :math:`t_q = \min_p s_p`: the best positive, the top-1 neighbour and
every item ranked before some positive.  Per block:

1. gather the positives' scores (label groups are precomputed) and take :math:`t_q` with a
   segmented minimum;
2. one vectorised pass ``S >= t[:, None]`` marks the *candidates* and a word-wise popcount
   counts them per query: a good model has a few times :math:`P` per query, a poor one up to
   the whole gallery;
3. queries with few candidates (at most ``500 + ng / 64``) are ranked all at once: candidates
   become ``int64`` keys ``(row << 32) + order-preserving-int32(-score)``, one ``np.argsort``
   puts every row in ranking order, runs of equal keys are re-sorted by gallery index, and a
   positive's rank is its position minus its row's start; the top-1 is the row's first;
4. queries with more candidates are ranked row by row without sorting them
   (:func:`rank_positives`): the candidates go into about ``count / 4`` score buckets
   linear in score (a monotone float32 map, so equal scores share a bucket), a histogram
   gives each positive the number of candidates in higher buckets, and only the buckets
   that hold a positive are sorted exactly (score descending, gallery index ascending) for
   the rest, ties included; the top-1 is the best positive if it ranks first, else
   ``argmax`` of the row (numpy returns the first maximum: the lowest index among tied
   best scores).

With ``n_threads > 1`` the rows of a block are split among worker threads, each running its
own single-threaded ``sgemm`` (BLAS is limited to one thread with ``threadpoolctl`` for the
duration of the call, so no idle BLAS thread spins on a core) and steps 1-3; the rows of
step 4 are then dealt round-robin.  numpy releases the GIL in all of these.

Streamed gallery (:func:`evaluate_streamed_cases`): the queries stay in memory, the gallery
comes in shards (two passes).  Pass 1 computes every positive's pair score; then, per shard,
:func:`count_shard` counts for every positive the shard items ranking before it (score
greater, or equal at a lower gallery index, across shard borders too) with
:func:`rank_positives` on the shard's candidates and all the query's positives placed by
gallery index; ranks add up over the shards and the top-1 keeps the first maximum.  Positives
come from labels or explicitly (CSR, as in memory; then every positive's rank is returned,
``positive_rank``).  Memory: the queries, the positives (about 20 bytes each), one shard and
one block of its scores.

Determinism: given the scores, the ranking and every metric do not depend on ``block_size``,
``n_threads`` or the shards (each query's AP is summed left to right in rank order whichever
step ranked it, so even the float bits agree).  The non-positive scores come from ``sgemm``
calls whose shape follows the block size, the thread split and the shards; the BLAS
libraries we know compute each entry the same way whatever the shape, but none promises it,
and another shape (or CPU) could round an entry differently in the last bit, which can only
swap items whose scores are within about one float32 ulp.  Exactly representable scores
(the integer vectors of the tests) give identical results for every setting.  Compared
with gaudit before the pair scores, a positive's score may differ in the last bit from the
``sgemm`` value it had (mAP of the benchmark data moved by about 1e-9; the ranks and top-k
of the 256 queries compared did not change).

Cost: one ``sgemm`` plus a few cheap passes over :math:`S` when the model is good; when the
worst positive ranks deep (a poor model, or many positives per query) step 4 adds a few
linear passes over the query's candidates, no sort of them.  faiss is not used: top-k
accuracy follows exactly from the first positive's rank, numpy's ``sgemm`` runs at the rate
of faiss's exact search, and faiss's order among equal scores is unspecified.

Inputs must be finite (checked: ``ValueError``) and the caller should reject zero vectors for
``cosine`` (here they score 0 against everything).  Scores must not overflow float32.

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

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

try:  # a dependency of scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = ["CaseResult", "evaluate_case", "evaluate_streamed", "normalize", "METRICS",
           "DEFAULT_BLOCK_BYTES"]

METRICS = ("cosine", "ip", "l2")
"""Accepted values of ``metric``."""

DEFAULT_BLOCK_BYTES = 128 * 1024 * 1024
"""Target size of one block's float32 score matrix when ``block_size`` is not given."""

_CANDIDATE_CHUNK = 8_000_000
"""Candidates (or positives) handled at once, about 40 bytes each; one row may exceed it."""

_BUCKET_ITEMS = 4
"""Candidates per score bucket (on average) when a row with many candidates is ranked by
:func:`rank_positives`; only affects speed."""

_DENSE_ROW_MIN = 500
_DENSE_ROW_DIVISOR = 64
"""A query with more than ``_DENSE_ROW_MIN + ng // _DENSE_ROW_DIVISOR`` candidates is ranked
row by row (partition + sort of its candidates) instead of in the vectorised batch; this only
affects speed."""


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
    average_precision : numpy.ndarray
        ``float64[n_queries]``: each query's AP (0 without positive); the mean over the
        evaluated queries is ``mean_average_precision``. Paired tests compare these per query.
    positive_rank : numpy.ndarray or None
        Only with explicit ``positives=(indptr, indices)``: ``int64[nnz]``, the 1-based rank of
        every positive, aligned with ``indices`` (``None`` in label mode).
    """

    topk: dict[int, float | None]
    mean_average_precision: float | None
    n_queries: int
    n_without_positive: int
    top1_correct: np.ndarray
    first_positive_rank: np.ndarray
    top1_index: np.ndarray
    average_precision: np.ndarray
    positive_rank: np.ndarray | None = None

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
    query_labels: np.ndarray | None,
    gallery: np.ndarray,
    gallery_labels: np.ndarray | None,
    *,
    positives: tuple[np.ndarray, np.ndarray] | None = None,
    metric: str = "cosine",
    ks: tuple[int, ...] = (1, 5, 10),
    exclude_self: np.ndarray | None = None,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    n_threads: int | None = None,
) -> CaseResult:
    r"""Rank the full gallery for every query and compute top-k accuracy and mAP exactly.

    Ranking: score descending, ties by gallery index ascending (see the module docstring).
    :math:`\mathrm{acc}@k = \#\{q \in \mathcal Q^+: r^{(q)}_1 \le k\} / |\mathcal Q^+|` and
    :math:`\mathrm{AP}(q) = \frac1P \sum_{i=1}^P i / r_i` with the positives' ranks
    :math:`r_1 < \dots < r_P` over the full gallery.

    Parameters
    ----------
    queries : numpy.ndarray
        ``(nq, d)`` query embeddings (converted to float32, C order).
    query_labels : numpy.ndarray
        ``(nq,)`` integer label codes.
    gallery : numpy.ndarray
        ``(ng, d)`` gallery embeddings (converted to float32, C order).
    gallery_labels : numpy.ndarray
        ``(ng,)`` integer label codes, same coding as ``query_labels``.
    positives : tuple of numpy.ndarray, optional
        The positives of every query given explicitly instead of by labels (both labels must
        then be ``None``, and ``exclude_self`` too), in CSR form ``(indptr, indices)``:
        ``indptr`` ``int64[nq + 1]`` from 0 to ``nnz``, nondecreasing; the positives of query
        ``r`` are the gallery indices ``indices[indptr[r]:indptr[r + 1]]``, strictly
        ascending.  The result then holds ``positive_rank`` (aligned with ``indices``).
    metric : {"cosine", "ip", "l2"}
        Similarity; ``"l2"`` ranks by squared euclidean distance, smallest first.
    ks : tuple of int
        Cut-offs for top-k accuracy, each >= 1 (may exceed the gallery size).
    exclude_self : numpy.ndarray, optional
        ``(nq,)`` integers: gallery index removed from each query's gallery, -1 for none.
    block_size : int, optional
        Queries per block.  Default: as many as keep one float32 block score matrix under
        :data:`DEFAULT_BLOCK_BYTES` (the block also needs a bool mask of a quarter that size).
        Results do not depend on it beyond float32 rounding (module docstring).
    progress : callable, optional
        Called after each block with the number of queries finished so far.
    n_threads : int, optional
        Threads for the per-block ranking work (numpy releases the GIL in it); default: the
        CPUs this process may run on.  The matrix product uses BLAS's own threads.

    Returns
    -------
    CaseResult

    Raises
    ------
    ValueError
        On shape or dimension mismatches, non-integer labels, an unknown metric, a ``k < 1``,
        a ``block_size < 1`` or an ``exclude_self`` index outside ``[-1, ng)``.
    """
    if positives is None:
        q, ql, g, gl, excl = _validate(queries, query_labels, gallery, gallery_labels,
                                       exclude_self)
    else:
        if query_labels is not None or gallery_labels is not None or exclude_self is not None:
            raise ValueError("with positives, query_labels, gallery_labels and exclude_self "
                             "must be None")
        q, ql, g, gl, excl = _validate(queries, np.zeros(len(queries), np.int64), gallery,
                                       np.zeros(len(gallery), np.int64), None)
        indptr, indices = _csr(positives, q.shape[0], g.shape[0])
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    ks = tuple(ks)
    for k in ks:
        if not _is_count(k):
            raise ValueError(f"every k must be an integer >= 1, got {k!r}")
    if block_size is not None and not _is_count(block_size):
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    if n_threads is not None and not _is_count(n_threads):
        raise ValueError(f"n_threads must be an integer >= 1, got {n_threads!r}")

    nq, ng = q.shape[0], g.shape[0]
    if positives is None:
        work = _Work.create(ql, gl, excl)
    else:
        work = _Work.create_csr(indptr, indices, ng)
    if nq and ng:
        qs, gt = _prepare(q, g, metric)
        nb = int(min(block_size or max(1, DEFAULT_BLOCK_BYTES // (4 * ng)), nq))
        threads = int(n_threads or _available_cpus())
        s = np.empty((nb, ng), dtype=np.float32)
        # Rows padded to whole 8-byte words (the padding stays False) for _row_counts.
        mask = np.zeros((nb, -(-ng // 8) * 8), dtype=bool)
        # With several workers each runs its own single-threaded sgemm: as fast as BLAS's
        # threads, and no BLAS thread keeps spinning on a core the ranking work needs.
        split = threads > 1 and threadpool_limits is not None
        blas_limit = threadpool_limits(1, user_api="blas") if split else nullcontext()
        with blas_limit, ThreadPoolExecutor(max_workers=threads) as pool:
            for b0 in range(0, nq, nb):
                b1 = min(b0 + nb, nq)
                _evaluate_block(work, qs[b0:b1], gt, s[: b1 - b0], mask[: b1 - b0], b0, pool,
                                threads, split)
                if progress is not None:
                    progress(b1)
    elif progress is not None:
        progress(nq)

    return _case_result(nq, ks, work.first_rank, work.top1, work.ap, work.prank)


def evaluate_streamed(
    queries: np.ndarray,
    query_labels: np.ndarray | None,
    gallery_labels: np.ndarray | None,
    shards: Callable[[], Iterable[np.ndarray]],
    *,
    positives: tuple[np.ndarray, np.ndarray] | None = None,
    n_gallery: int | None = None,
    metric: str = "cosine",
    ks: tuple[int, ...] = (1, 5, 10),
    exclude_self: np.ndarray | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> CaseResult:
    r""":func:`evaluate_case` with the gallery read in shards: the same ranks, ties and
    metrics, with only the queries and one shard (plus its score block) in memory.

    ``shards()`` yields the gallery's rows in gallery order, in consecutive blocks of any
    sizes (each ``(n_i, d)``); it is called twice.  See :func:`evaluate_streamed_cases`
    (``progress(rows)``: gallery rows done, after each shard).  With explicit
    ``positives=(indptr, indices)`` (as for :func:`evaluate_case`: both labels and
    ``exclude_self`` ``None``) the gallery size ``n_gallery`` is needed, and the result holds
    ``positive_rank``.
    """
    case = StreamCase(queries, query_labels, exclude_self, "g", positives)
    return evaluate_streamed_cases(
        [case], gallery_labels, lambda: ({"g": g} for g in shards()), n_gallery=n_gallery,
        metric=metric, ks=ks, block_bytes=block_bytes, progress=progress)[0]


@dataclass(frozen=True)
class StreamCase:
    """One case of :func:`evaluate_streamed_cases`: its queries (in memory), which gallery
    model (``key`` of the shard mappings) they search, and their positives: by label
    (``query_labels``, ``exclude_self``) or explicit (``positives=(indptr, indices)``, CSR as
    for :func:`evaluate_case`; the labels and ``exclude_self`` are then ``None``)."""

    queries: np.ndarray
    query_labels: np.ndarray | None
    exclude_self: np.ndarray | None
    key: str
    positives: tuple[np.ndarray, np.ndarray] | None = None


def evaluate_streamed_cases(
    cases: list[StreamCase],
    gallery_labels: np.ndarray | None,
    shards: Callable[[], Iterable[dict[str, np.ndarray]]],
    *,
    n_gallery: int | None = None,
    metric: str = "cosine",
    ks: tuple[int, ...] = (1, 5, 10),
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> list[CaseResult]:
    r"""Several cases over one gallery read in shards, two passes over the shards in all.

    ``shards()`` yields, in gallery order, consecutive blocks of the gallery as mappings
    ``key -> (n_i, d_key)`` array (one per gallery model; blocks of any sizes); it is called
    twice.  Pass 1 computes every positive's score (:func:`pair_scores`, as
    :func:`evaluate_case` does); pass 2 computes each shard's scores, ``block_bytes`` of
    them at a time, and :func:`count_shard` adds, for every positive, the shard items
    ranking before it; ranks add up, the top-1 is the first maximum over the shards.  The
    results equal :func:`evaluate_case`'s to the bit (given the scores: the matrix product
    of a shard rounds like that of the whole gallery in every BLAS we know of, but BLAS does
    not promise it).  ``progress(rows)`` is called after each shard of pass 2 with the
    gallery rows done.  ``gallery_labels`` may be ``None`` when every case has explicit
    positives; ``n_gallery`` (the gallery size) is then required.  Cases with explicit
    positives return ``positive_rank``.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if gallery_labels is None:
        if n_gallery is None or not (_is_count(n_gallery) or n_gallery == 0):
            raise ValueError("without gallery_labels, n_gallery (an integer >= 0) is needed")
        gl = None
        ng = int(n_gallery)
    else:
        gl = np.asarray(gallery_labels)
        if gl.ndim != 1:
            raise ValueError(f"gallery_labels must be 1-D, got shape {gl.shape}")
        gl = _integers(gl, gl.size, "gallery_labels", "gallery rows")
        ng = gl.size
        if n_gallery is not None and n_gallery != ng:
            raise ValueError(f"n_gallery is {n_gallery} but gallery_labels has {ng} rows")
    ks = tuple(ks)
    for k in ks:
        if not _is_count(k):
            raise ValueError(f"every k must be an integer >= 1, got {k!r}")
    plans = []
    for case in cases:
        q = np.ascontiguousarray(case.queries, dtype=np.float32)
        if q.ndim != 2 or not np.isfinite(q).all():
            raise ValueError("queries must be a finite 2-D (n, d) array")
        nq = q.shape[0]
        excl = np.full(nq, -1, dtype=np.int64)
        if case.positives is not None:
            if case.query_labels is not None or case.exclude_self is not None:
                raise ValueError("with positives, query_labels and exclude_self must be None")
            indptr, indices = _csr(case.positives, nq, ng)
        else:
            if gl is None:
                raise ValueError("a case with query_labels needs gallery_labels")
            ql = _integers(case.query_labels, nq, "query_labels", "queries")
            if case.exclude_self is not None:
                excl = _integers(case.exclude_self, nq, "exclude_self", "queries")
                if excl.size and (excl.min() < -1 or excl.max() >= ng):
                    raise ValueError(
                        f"exclude_self must hold gallery indices in [0, {ng}) or -1")
            indptr, indices = positive_pairs(_Work.create(ql, gl, excl))
        plans.append({
            "key": case.key, "qs": prepare_queries(q, metric), "excl": excl,
            "positives": Positives.create(indptr, indices),
            "explicit": case.positives is not None,
        })

    def each_shard() -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        g0 = 0
        for block in shards():
            prepared, n = {}, None
            for key, arr in block.items():
                g = np.ascontiguousarray(arr, dtype=np.float32)
                if g.ndim != 2 or (n is not None and g.shape[0] != n) or not np.isfinite(
                        g).all():
                    raise ValueError(f"gallery shard at row {g0}: expected finite 2-D arrays "
                                     f"of equal length, got shape {g.shape} for {key!r}")
                n = g.shape[0]
                prepared[key] = prepare_gallery(g, metric)
            n = n or 0
            yield np.arange(g0, g0 + n, dtype=np.int64), prepared
            g0 += n
        if g0 != ng:
            raise ValueError(f"the shards hold {g0} gallery rows, the labels {ng}")

    scores = [np.zeros(p["positives"].indices.size, dtype=np.float32) for p in plans]
    for gidx, gal in each_shard():  # pass 1: the positives' scores
        for p, score in zip(plans, scores, strict=True):
            gs = gal[p["key"]]
            if gs.shape[1] != p["qs"].shape[1]:
                raise ValueError(f"queries have dimension {p['qs'].shape[1]} but the gallery "
                                 f"{p['key']!r} has {gs.shape[1]}")
            at, vals = shard_positive_scores(p["positives"], p["qs"], gs, gidx)
            score[at] = vals
    states = [StreamState.create(p["positives"].indptr, p["positives"].indices, score)
              for p, score in zip(plans, scores, strict=True)]
    for gidx, gal in each_shard():  # pass 2: counts
        for p, state in zip(plans, states, strict=True):
            count_shard(state, p["qs"], gal[p["key"]], gidx, p["excl"],
                        block_bytes=block_bytes)
        if progress is not None and gidx.size:
            progress(int(gidx[-1]) + 1)
    return [finish_stream(state, ks, p["explicit"])
            for p, state in zip(plans, states, strict=True)]


def evaluate_streamed_galleries(
    cases: list[StreamCase],
    gallery_labels: np.ndarray | None,
    galleries: dict[str, Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]],
    *,
    n_gallery: int | None = None,
    metric: str = "cosine",
    ks: tuple[int, ...] = (1, 5, 10),
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: Callable[[int], None] | None = None,
) -> list[CaseResult]:
    r""":func:`evaluate_streamed_cases` with every gallery model read on its own, in any row
    order: each gallery version (``galleries[key]()``, e.g. one file read in its own row
    order) is read once per pass for all the cases that search it, two passes in all.

    ``galleries[key]()`` yields shards ``(gidx, g)``: ``gidx`` (``int64[n_i]``) the gallery
    index of each row of ``g`` (``(n_i, d_key)``), distinct, in any order; over all its
    shards every gallery index appears exactly once.  Pass 1 computes every positive's
    score (:func:`shard_positive_scores`), pass 2 counts (:func:`count_shard`); the results
    equal :func:`evaluate_streamed_cases`'s (and :func:`evaluate_case`'s, as said there).
    ``progress(rows)`` after each shard: the gallery rows read so far over both passes and
    every gallery model (``2 * len(galleries used) * n_gallery`` in all).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if gallery_labels is None:
        if n_gallery is None or not (_is_count(n_gallery) or n_gallery == 0):
            raise ValueError("without gallery_labels, n_gallery (an integer >= 0) is needed")
        gl = None
        ng = int(n_gallery)
    else:
        gl = _integers(np.asarray(gallery_labels), np.asarray(gallery_labels).size,
                       "gallery_labels", "gallery rows")
        ng = gl.size
        if n_gallery is not None and n_gallery != ng:
            raise ValueError(f"n_gallery is {n_gallery} but gallery_labels has {ng} rows")
    ks = tuple(ks)
    for k in ks:
        if not _is_count(k):
            raise ValueError(f"every k must be an integer >= 1, got {k!r}")
    plans = []
    for case in cases:
        if case.key not in galleries:
            raise ValueError(f"no gallery {case.key!r} for a case")
        q = np.ascontiguousarray(case.queries, dtype=np.float32)
        if q.ndim != 2 or not np.isfinite(q).all():
            raise ValueError("queries must be a finite 2-D (n, d) array")
        nq = q.shape[0]
        excl = np.full(nq, -1, dtype=np.int64)
        if case.positives is not None:
            if case.query_labels is not None or case.exclude_self is not None:
                raise ValueError("with positives, query_labels and exclude_self must be None")
            indptr, indices = _csr(case.positives, nq, ng)
        else:
            if gl is None:
                raise ValueError("a case with query_labels needs gallery_labels")
            ql = _integers(case.query_labels, nq, "query_labels", "queries")
            if case.exclude_self is not None:
                excl = _integers(case.exclude_self, nq, "exclude_self", "queries")
                if excl.size and (excl.min() < -1 or excl.max() >= ng):
                    raise ValueError(
                        f"exclude_self must hold gallery indices in [0, {ng}) or -1")
            indptr, indices = positive_pairs(_Work.create(ql, gl, excl))
        plans.append({
            "key": case.key, "qs": prepare_queries(q, metric), "excl": excl,
            "positives": Positives.create(indptr, indices),
            "explicit": case.positives is not None,
        })
    keys = list(dict.fromkeys(p["key"] for p in plans))
    done = 0

    def shards_of(key: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        nonlocal done
        seen = np.zeros(ng, dtype=bool)
        given = 0
        for gidx, arr in galleries[key]():
            gidx = np.asarray(gidx, dtype=np.int64)
            g = np.ascontiguousarray(arr, dtype=np.float32)
            if g.ndim != 2 or g.shape[0] != gidx.size or not np.isfinite(g).all():
                raise ValueError(f"gallery {key!r}: expected a finite 2-D array of "
                                 f"{gidx.size} rows, got shape {g.shape}")
            if gidx.size and (gidx.min() < 0 or gidx.max() >= ng or seen[gidx].any()):
                raise ValueError(f"gallery {key!r}: gallery indices outside [0, {ng}) or "
                                 "given twice")
            seen[gidx] = True
            given += int(gidx.size)
            yield gidx, prepare_gallery(g, metric)
            done += int(gidx.size)
            if progress is not None:
                progress(done)
        # every index seen and no more rows than indices: each was given exactly once
        if given != ng or not seen.all():
            raise ValueError(f"gallery {key!r}: {given} rows given for {ng} gallery indices "
                             f"({ng - int(seen.sum())} never given)")

    scores = [np.zeros(p["positives"].indices.size, dtype=np.float32) for p in plans]
    for key in keys:  # pass 1: the positives' scores
        mine = [(p, s) for p, s in zip(plans, scores, strict=True) if p["key"] == key]
        for gidx, gs in shards_of(key):
            for p, score in mine:
                if gs.shape[1] != p["qs"].shape[1]:
                    raise ValueError(f"queries have dimension {p['qs'].shape[1]} but the "
                                     f"gallery {key!r} has {gs.shape[1]}")
                at, vals = shard_positive_scores(p["positives"], p["qs"], gs, gidx)
                score[at] = vals
    states = [StreamState.create(p["positives"].indptr, p["positives"].indices, score)
              for p, score in zip(plans, scores, strict=True)]
    for key in keys:  # pass 2: counts
        mine_states = [(p, st) for p, st in zip(plans, states, strict=True) if p["key"] == key]
        for gidx, gs in shards_of(key):
            for p, state in mine_states:
                count_shard(state, p["qs"], gs, gidx, p["excl"], block_bytes=block_bytes)
    return [finish_stream(state, ks, p["explicit"])
            for p, state in zip(plans, states, strict=True)]


def _case_result(nq: int, ks: tuple[int, ...], first_rank: np.ndarray, top1: np.ndarray,
                 ap: np.ndarray, positive_rank: np.ndarray | None = None) -> CaseResult:
    """Top-k accuracies and mAP from the per-query first ranks and APs (0: no positive);
    ``positive_rank``: every explicit positive's rank (None in label mode)."""
    evaluated = first_rank > 0
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
        top1_index=top1,
        average_precision=ap,
        positive_rank=positive_rank,
    )


def _is_count(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


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
        raise ValueError(f"queries have dimension {q.shape[1]} but the gallery has {g.shape[1]}")
    for name, x in (("queries", q), ("gallery", g)):
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contain NaN or infinite values")
    ql = _integers(query_labels, q.shape[0], "query_labels", "queries")
    gl = _integers(gallery_labels, g.shape[0], "gallery_labels", "gallery rows")
    if exclude_self is None:
        excl = np.full(q.shape[0], -1, dtype=np.int64)
    else:
        excl = _integers(exclude_self, q.shape[0], "exclude_self", "queries")
        if excl.size and (excl.min() < -1 or excl.max() >= g.shape[0]):
            raise ValueError(f"exclude_self must hold gallery indices in [0, {g.shape[0]}) or -1")
    return q, ql, g, gl, excl


def _integers(values: np.ndarray, n: int, name: str, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the {n} {what}; got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers (factorise string labels), got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _csr(positives: tuple[np.ndarray, np.ndarray], nq: int,
         ng: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate explicit positives in CSR form (see :func:`evaluate_case`)."""
    try:
        indptr, indices = (np.asarray(a) for a in positives)
    except (TypeError, ValueError) as exc:
        raise ValueError("positives must be a pair (indptr, indices)") from exc
    if indptr.ndim != 1 or indptr.shape[0] != nq + 1:
        raise ValueError(f"positives: indptr must have shape ({nq + 1},), got {indptr.shape}")
    if indices.ndim != 1:
        raise ValueError(f"positives: indices must be 1-D, got shape {indices.shape}")
    for name, a in (("indptr", indptr), ("indices", indices)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"positives: {name} must be integers, got {a.dtype}")
    indptr = indptr.astype(np.int64, copy=False)
    indices = indices.astype(np.int64, copy=False)
    if indptr[0] != 0 or indptr[-1] != indices.size or (np.diff(indptr) < 0).any():
        raise ValueError("positives: indptr must rise from 0 to len(indices), never falling")
    if indices.size and (indices.min() < 0 or indices.max() >= ng):
        raise ValueError(f"positives: indices must be gallery indices in [0, {ng})")
    step = np.diff(indices)
    same_row = np.ones(step.size, dtype=bool)
    starts = indptr[1:-1]
    same_row[starts[(starts > 0) & (starts < indices.size)] - 1] = False  # a row may start lower
    if (step[same_row] <= 0).any():
        raise ValueError("positives: the indices of each query must be strictly ascending")
    return indptr, indices


def _prepare(q: np.ndarray, g: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(Q', G'^T)`` such that ``Q' @ G'^T`` is the rank-equivalent score matrix."""
    if metric == "cosine":
        q, g = normalize(q), normalize(g)
    elif metric == "l2":
        half_sq = 0.5 * np.einsum("ij,ij->i", g, g, dtype=np.float64)
        q = np.hstack([q, np.ones((q.shape[0], 1), dtype=np.float32)])
        g = np.hstack([g, (-half_sq).astype(np.float32)[:, None]])
    return q, g.T  # BLAS reads the transposed view directly; a copy would not pay off


@dataclass
class _Work:
    """Per-query inputs and outputs shared by the blocks (rows are global query indices)."""

    ql: np.ndarray  # query labels
    gl: np.ndarray  # gallery labels
    order: np.ndarray  # gallery indices sorted by label (stable)
    lo: np.ndarray  # first position in `order` of the query's label
    n_same: np.ndarray  # gallery items with the query's label (self included)
    n_pos: np.ndarray  # positives (self excluded)
    excl: np.ndarray  # excluded gallery index or -1
    top1: np.ndarray
    first_rank: np.ndarray
    ap: np.ndarray
    # Explicit positives only (CSR mode): sorted keys ``row * ng + col`` of every positive
    # (the membership test) and the rank of each, aligned with ``order``.
    pkeys: np.ndarray | None = None
    prank: np.ndarray | None = None

    @classmethod
    def create(cls, ql: np.ndarray, gl: np.ndarray, excl: np.ndarray) -> _Work:
        nq = ql.size
        order = np.argsort(gl, kind="stable")
        gl_sorted = gl[order]
        lo = np.searchsorted(gl_sorted, ql, side="left")
        n_same = np.searchsorted(gl_sorted, ql, side="right") - lo
        has_self = excl >= 0
        self_is_pos = np.zeros(nq, dtype=bool)
        self_is_pos[has_self] = gl[excl[has_self]] == ql[has_self]
        return cls(
            ql=ql, gl=gl, order=order, lo=lo, n_same=n_same, n_pos=n_same - self_is_pos,
            excl=excl,
            top1=np.full(nq, -1, dtype=np.int64),
            first_rank=np.zeros(nq, dtype=np.int64),
            ap=np.zeros(nq, dtype=np.float64),
        )

    @classmethod
    def create_csr(cls, indptr: np.ndarray, indices: np.ndarray, ng: int) -> _Work:
        """Explicit positives: ``order = indices``, ``lo = indptr[:-1]``, no exclusion."""
        nq = indptr.size - 1
        n_same = np.diff(indptr)
        rows = np.repeat(np.arange(nq, dtype=np.int64), n_same)
        return cls(
            ql=np.zeros(nq, dtype=np.int64), gl=np.zeros(ng, dtype=np.int64), order=indices,
            lo=indptr[:-1], n_same=n_same, n_pos=n_same, excl=np.full(nq, -1, dtype=np.int64),
            top1=np.full(nq, -1, dtype=np.int64),
            first_rank=np.zeros(nq, dtype=np.int64),
            ap=np.zeros(nq, dtype=np.float64),
            pkeys=rows * np.int64(ng) + indices,
            prank=np.zeros(indices.size, dtype=np.int64),
        )

    def is_positive(self, g0: int, row: np.ndarray, col: np.ndarray,
                    ql: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Whether gallery item ``col[i]`` is a positive of query ``g0 + row[i]``.

        ``ql`` is the query labels from ``g0`` on.  Returns the mask and, with explicit
        positives, the position in ``order`` of each (valid where the mask is True).
        """
        if self.pkeys is None:
            return self.gl[col] == ql[row], None
        keys = (row + g0) * np.int64(self.gl.size) + col
        at = np.searchsorted(self.pkeys, keys)
        np.minimum(at, max(self.pkeys.size - 1, 0), out=at)
        if self.pkeys.size == 0:
            return np.zeros(keys.size, dtype=bool), at
        return self.pkeys[at] == keys, at

    def positives(self, r: int) -> np.ndarray:
        """Gallery indices of query ``r``'s positives, ascending."""
        cols = self.order[self.lo[r] : self.lo[r] + self.n_same[r]]
        return cols[cols != self.excl[r]]

    def pairs(self, q0: int, q1: int) -> tuple[np.ndarray, np.ndarray]:
        """The positives of queries ``q0 .. q1`` as ``(row, col)`` pairs, ``row`` counted
        from ``q0`` and ascending, each row's gallery indices ascending, the excluded item
        removed."""
        cnt = self.n_same[q0:q1]
        total = int(cnt.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        row = np.repeat(np.arange(cnt.size, dtype=np.int64), cnt)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        col = self.order[np.repeat(self.lo[q0:q1], cnt) + within]
        keep = col != self.excl[q0 + row]
        return row[keep], col[keep]


def _evaluate_block(
    work: _Work,
    qb: np.ndarray,
    gt: np.ndarray,
    s: np.ndarray,
    mask: np.ndarray,
    b0: int,
    pool: ThreadPoolExecutor,
    threads: int,
    matmul_in_workers: bool,
) -> None:
    """Compute queries ``b0 .. b0 + len(qb)`` into ``work``; ``s``/``mask`` are scratch.

    The block's rows are split among ``threads`` workers, each computing its rows' scores
    (when ``matmul_in_workers``: single-threaded BLAS, one call per worker; else the caller's
    BLAS threads compute the whole block first), candidates and vectorised ranking; the rows
    with many candidates are then ranked one by one, dealt round-robin to the workers.
    """
    nb = s.shape[0]
    n_parts = min(threads, nb)
    in_workers = matmul_in_workers and n_parts > 1
    if not in_workers:
        np.matmul(qb, gt, out=s)
    if n_parts == 1:
        dense, counts = _finish_rows(work, qb, gt, s, mask, b0, 0, nb, False)
        _rank_dense_rows(work, s, b0, dense, counts)
        return
    bounds = np.linspace(0, nb, n_parts + 1).astype(np.int64).tolist()
    futures = [
        pool.submit(_finish_rows, work, qb, gt, s, mask, b0, r0, r1, in_workers)
        for r0, r1 in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    found = [future.result() for future in futures]
    dense = np.concatenate([d for d, _ in found])
    counts = np.concatenate([c for _, c in found])
    if dense.size:
        futures = [
            pool.submit(_rank_dense_rows, work, s, b0, dense[i::n_parts], counts[i::n_parts])
            for i in range(n_parts)
        ]
        for future in futures:
            future.result()


def _set_pair_scores(work: _Work, qb: np.ndarray, gs: np.ndarray, s: np.ndarray,
                     b0: int) -> None:
    """Overwrite the positives' entries of the score rows ``s`` (queries ``b0 ..``) with
    their :func:`pair_scores`, ``_CANDIDATE_CHUNK`` positives at a time."""
    n_same = work.n_same[b0 : b0 + s.shape[0]]
    for r0, r1 in _split_by_weight(n_same, _CANDIDATE_CHUNK):
        row, col = work.pairs(b0 + r0, b0 + r1)
        if row.size == 0:
            continue
        row += r0
        vals = np.empty(row.size, dtype=np.float32)
        pair_scores(qb, gs, row, col, vals)
        s[row, col] = vals


def _worst_positive(work: _Work, s: np.ndarray, b0: int) -> np.ndarray:
    """Per block row: the minimum score over the query's positives (+inf if it has none)."""
    nb, ng = s.shape
    thresh = np.full(nb, np.inf, dtype=np.float32)
    flat_s = s.reshape(-1)
    n_same = work.n_same[b0 : b0 + nb]
    for r0, r1 in _split_by_weight(n_same, _CANDIDATE_CHUNK):
        row, col = work.pairs(b0 + r0, b0 + r1)
        if row.size == 0:
            continue
        row += r0
        vals = flat_s[row * ng + col]
        # `row` is ascending, so segments start where it changes.
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        thresh[row[starts]] = np.minimum.reduceat(vals, starts)
    return thresh


def _finish_rows(
    work: _Work,
    qb: np.ndarray,
    gt: np.ndarray,
    s_block: np.ndarray,
    mask_block: np.ndarray,
    b0: int,
    r0: int,
    r1: int,
    matmul: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank rows ``r0 .. r1`` of the block except those with many candidates.

    Runs in a worker thread and writes only these rows (their scores too when ``matmul``).
    Returns the block rows left for :func:`_rank_dense_rows` and their candidate counts.
    """
    s, mask = s_block[r0:r1], mask_block[r0:r1]
    nr, ng = s.shape
    g0, g1 = b0 + r0, b0 + r1
    if matmul:
        np.matmul(qb[r0:r1], gt, out=s)
    excl = work.excl[g0:g1]
    rows = np.flatnonzero(excl >= 0)
    s[rows, excl[rows]] = -np.inf
    # A positive's score is its pair score wherever it is compared (see pair_scores).
    _set_pair_scores(work, qb[r0:r1], gt.T, s, g0)
    thresh = _worst_positive(work, s, g0)
    top1, first_rank, ap = work.top1[g0:g1], work.first_rank[g0:g1], work.ap[g0:g1]
    dense = np.zeros(0, dtype=np.int64)
    dense_counts = np.zeros(0, dtype=np.int64)

    if np.isfinite(thresh).any():
        # Candidates: every item scoring at least as high as the query's worst positive.
        np.greater_equal(s, thresh[:, None], out=mask[:, :ng])
        counts = _row_counts(mask)
        dense = np.flatnonzero(counts > _DENSE_ROW_MIN + ng // _DENSE_ROW_DIVISOR)
        if dense.size:
            dense_counts = counts[dense]
            mask[dense] = False
            counts[dense] = 0
        total = int(counts.sum())
        chunks = [(0, nr)]
        if total > _CANDIDATE_CHUNK:
            chunks = _split_by_weight(counts, _CANDIDATE_CHUNK)
        if total:
            for c0, c1 in chunks:
                _rank_sparse_rows(
                    s[c0:c1], mask[c0:c1], counts[c0:c1], work, g0 + c0,
                    work.n_pos[g0 + c0 : g0 + c1], top1[c0:c1], first_rank[c0:c1], ap[c0:c1],
                )

    # Top-1 where the best positive is not first: argmax takes the first maximum, which is
    # the lowest index among tied best scores.
    todo = np.flatnonzero(first_rank != 1)
    todo = np.setdiff1d(todo, dense, assume_unique=True)
    if todo.size:
        if 2 * todo.size > nr:
            best = s.argmax(axis=1)[todo]
        else:  # row by row: no copy of the rows
            best = np.array([s[r].argmax() for r in todo.tolist()], dtype=np.int64)
        empty = s[todo, best] == -np.inf  # the only gallery item was excluded
        top1[todo] = np.where(empty, -1, best)
    return dense + r0, dense_counts


def _rank_dense_rows(
    work: _Work, s: np.ndarray, b0: int, rows: np.ndarray, counts: np.ndarray
) -> None:
    """Rank block rows with many candidates each (module docstring, step 4), row by row
    with :func:`rank_positives`."""
    for r in rows.tolist():
        q = b0 + r
        pcols = work.positives(q)
        ranks = rank_positives(s[r], pcols)
        work.top1[q], work.first_rank[q], work.ap[q] = _summarise(s[r], pcols, ranks)
        if work.prank is not None:  # explicit positives: nothing excluded, aligned with order
            work.prank[work.lo[q] : work.lo[q] + work.n_same[q]] = ranks


def _summarise(v: np.ndarray, pcols: np.ndarray, ranks: np.ndarray) -> tuple[int, int, float]:
    """``(top1, r_1, AP)`` of one query from its positives' ranks (aligned with ``pcols``).

    AP is summed left to right in rank order, like the bincount of the vectorised path, so
    both give identical bits.  Top-1: the best positive if it is first, else the row's first
    maximum (the lowest index among tied best scores).
    """
    o = np.argsort(ranks, kind="stable")
    r = ranks[o]
    ap = float(np.cumsum(np.arange(1, r.size + 1) / r)[-1]) / r.size
    top1 = int(pcols[o[0]]) if r[0] == 1 else int(v.argmax())
    return top1, int(r[0]), ap


def rank_positives(v: np.ndarray, pcols: np.ndarray) -> np.ndarray:
    r"""Exact 1-based ranks of the items ``pcols`` (ascending, non-empty) in the score row ``v``.

    :math:`r(p) = 1 + \#\{g: v_g > v_p\} + \#\{g: v_g = v_p,\ g < p\}`, counted without
    sorting the row: the *candidates* (``v >= min(v[pcols])``) are put into ``B`` buckets
    linear in score, ``b(x) = \lfloor (x - t) \cdot (B - 1) / (\max v - t) \rfloor`` in
    float32, which is monotone in ``x`` (each float operation rounds monotonically), so
    equal scores share a bucket and a higher bucket only holds higher scores.  A histogram
    gives the number of candidates in higher buckets; only the buckets holding a positive
    are sorted exactly (score descending, index ascending), which gives the rest.  About
    ``_BUCKET_ITEMS`` candidates per bucket: linear time, a few cheap passes over the
    candidates.  Returns ``int64[len(pcols)]`` aligned with ``pcols``.
    """
    pv = v[pcols]
    t = pv.min()
    cols = np.flatnonzero(v >= t)
    x = v[cols]
    nb = max(1, cols.size // _BUCKET_ITEMS)
    span = float(x.max()) - float(t)
    scale = np.float32((nb - 1) / span) if span > 0 else np.float32(0)
    if nb > 1 and np.isfinite(scale) and scale > 0:
        y = np.subtract(x, t)
        y *= scale
        b = y.astype(np.int32)
        np.minimum(b, nb - 1, out=b)
    else:
        nb = 1
        b = np.zeros(cols.size, dtype=np.int32)
    hist = np.bincount(b, minlength=nb)
    # higher[k]: candidates in buckets above k.
    higher = np.cumsum(hist[::-1])[::-1] - hist
    marked = np.zeros(nb, dtype=bool)
    bp = b[np.searchsorted(cols, pcols)]
    marked[bp] = True
    sel = np.flatnonzero(marked[b])
    mcol, mb = cols[sel], b[sel]
    # 0 - score: descending order, and -0.0 becomes +0.0 so equal scores share a key.
    key = _ordered_int32(np.subtract(np.float32(0.0), x[sel]))
    o = np.lexsort((mcol, key))
    sb = mb[o]
    idx = np.arange(o.size)
    starts = np.r_[True, sb[1:] != sb[:-1]]
    within = idx - np.maximum.accumulate(np.where(starts, idx, 0))
    rank_sorted = 1 + higher[sb] + within
    scol = mcol[o]
    at = np.searchsorted(pcols, scol)
    is_pos = at < pcols.size
    is_pos[is_pos] = pcols[at[is_pos]] == scol[is_pos]
    ranks = np.zeros(pcols.size, dtype=np.int64)
    ranks[at[is_pos]] = rank_sorted[is_pos]
    if int(np.count_nonzero(is_pos)) != pcols.size:  # pragma: no cover - invariant
        raise AssertionError("retrieval: positives missing from their buckets")
    return ranks


def positive_pairs(work: _Work) -> tuple[np.ndarray, np.ndarray]:
    """The positives of every query in CSR form: ``(indptr int64[nq + 1], indices)``, each
    row's gallery indices ascending, the excluded item removed (read through ``_Work``)."""
    nq = work.n_same.size
    row, col = work.pairs(0, nq)
    indptr = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=nq), out=indptr[1:])
    return indptr, col.astype(np.int64, copy=False)


def pair_scores(qs: np.ndarray, gs: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                out: np.ndarray) -> None:
    """``out[i] = qs[rows[i]] . gs[cols[i]]`` in float32, in chunks.

    This is *the* score of a query's positive wherever it is compared (every engine, every
    shard size): one float32 dot product per pair, so a positive's score never depends on
    the shape of the matrix product it would otherwise come from.
    """
    step = max(1, (1 << 24) // max(1, qs.shape[1]))
    for a in range(0, rows.size, step):
        b = min(a + step, rows.size)
        out[a:b] = np.einsum("ij,ij->i", qs[rows[a:b]], gs[cols[a:b]])


def prepare_gallery(g: np.ndarray, metric: str) -> np.ndarray:
    """Gallery rows as they enter the product (row-wise, so a shard gives the same rows)."""
    return _prepare(np.zeros((0, g.shape[1]), dtype=np.float32), g, metric)[1].T


def prepare_queries(q: np.ndarray, metric: str) -> np.ndarray:
    """Query rows as they enter the product (row-wise)."""
    return _prepare(q, np.zeros((0, q.shape[1]), dtype=np.float32), metric)[0]


@dataclass
class StreamState:
    """Per-query partial results of a gallery streamed in shards (merged exactly).

    ``indptr``/``indices``: the positives (CSR, global gallery indices ascending per query);
    ``score``: their scores (:func:`pair_scores`); ``above``: per positive, the number of
    items of the shards seen so far that rank before it (score greater, or equal at a lower
    gallery index), other positives excluded; ``best``/``best_index``: the running top-1.
    """

    indptr: np.ndarray
    indices: np.ndarray
    score: np.ndarray
    above: np.ndarray
    best: np.ndarray
    best_index: np.ndarray
    row: np.ndarray  # query row of every positive
    thresh: np.ndarray  # worst positive's score per query (+inf without positive)

    @classmethod
    def create(cls, indptr: np.ndarray, indices: np.ndarray, score: np.ndarray) -> StreamState:
        nq = indptr.size - 1
        row = np.repeat(np.arange(nq, dtype=np.int64), np.diff(indptr))
        thresh = np.full(nq, np.inf, dtype=np.float32)
        if row.size:
            starts = indptr[:-1][np.diff(indptr) > 0]
            thresh[row[starts]] = np.minimum.reduceat(score, starts)
        return cls(indptr, indices, score, np.zeros(indices.size, dtype=np.int64),
                   np.full(nq, -np.inf, dtype=np.float32), np.full(nq, -1, dtype=np.int64),
                   row, thresh)


def count_shard(state: StreamState, qs: np.ndarray, gs: np.ndarray, gidx: np.ndarray,
                excl: np.ndarray, *, block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
    r"""Add one gallery shard to ``state`` (the streamed kernel's unit of work).

    ``qs``: every query of the case as prepared (:func:`prepare_queries`, ``(nq, d)``);
    ``gs``: the shard's gallery rows as prepared (:func:`prepare_gallery`, ``(n, d)``);
    ``gidx``: ``int64[n]``, the global gallery index of each shard row (distinct, in any
    order: shards may come from any part of the gallery, in any order); ``excl``:
    ``int64[nq]``, the gallery index each query leaves out (-1 for none).

    For every positive :math:`p` of query :math:`q` it adds to ``state.above`` the number of
    shard items other than :math:`q`'s positives (and its excluded item) that rank before
    it, :math:`\#\{g: s_g > s_p\} + \#\{g: s_g = s_p,\ g < p\}`, and it merges the shard's
    first maximum into the top-1 (greater score, or equal score at a lower gallery index).
    A positive's score is always its pair score (``state.score``).  Shards may be counted in
    any order and by separate workers (:func:`merge_states`): the result is the same.
    Only ``block_bytes`` of scores are held at once.
    """
    nq, n = qs.shape[0], gs.shape[0]
    if not (nq and n):
        return
    gidx = np.asarray(gidx, dtype=np.int64)
    pos = Positives.create(state.indptr, state.indices)
    at, srow = pos.in_shard(gidx)
    order = np.argsort(gidx)
    nb = int(max(1, min(nq, block_bytes // (4 * n))))
    for r0 in range(0, nq, nb):
        r1 = min(nq, r0 + nb)
        s = qs[r0:r1] @ gs.T
        ex = excl[r0:r1]
        at_ex = np.minimum(np.searchsorted(gidx[order], ex), n - 1)
        hit = np.flatnonzero(gidx[order[at_ex]] == ex)
        s[hit, order[at_ex[hit]]] = -np.inf
        prow = state.row[at]
        sel = (prow >= r0) & (prow < r1)
        s[prow[sel] - r0, srow[sel]] = state.score[at[sel]]
        _merge_top1(state, r0, s, gidx)
        s[prow[sel] - r0, srow[sel]] = -np.inf  # positives: counted by finish_stream
        thresh = state.thresh[r0:r1]
        counts = np.count_nonzero(s >= thresh[:, None], axis=1)
        for r in np.flatnonzero(counts).tolist():
            a, b = state.indptr[r0 + r], state.indptr[r0 + r + 1]
            pc, pv = state.indices[a:b], state.score[a:b]
            cand = np.flatnonzero(s[r] >= thresh[r])
            x, g = s[r, cand], gidx[cand]
            o = np.argsort(x, kind="stable")
            xs, gs_sorted = x[o], g[o]
            lo = np.searchsorted(xs, pv, side="left")
            hi = np.searchsorted(xs, pv, side="right")
            above = xs.size - hi
            for i in np.flatnonzero(hi > lo).tolist():  # equal scores: lower index first
                above[i] += int(np.count_nonzero(gs_sorted[lo[i] : hi[i]] < pc[i]))
            state.above[a:b] += above


def _merge_top1(state: StreamState, r0: int, s: np.ndarray, gidx: np.ndarray) -> None:
    """Merge the first maximum of the score rows ``s`` (queries ``r0 ..``; ties: the lowest
    gallery index) into the running top-1 of ``state``."""
    nr = s.shape[0]
    val = s.max(axis=1)
    big = np.iinfo(np.int64).max
    idx = np.where(s == val[:, None], gidx[None, :], big).min(axis=1)
    best, best_index = state.best[r0 : r0 + nr], state.best_index[r0 : r0 + nr]
    better = (val > best) | ((val == best) & (idx < best_index))
    better &= val > -np.inf  # an excluded item is never the top-1
    best[better] = val[better]
    best_index[better] = idx[better]


def merge_states(states: Sequence[StreamState]) -> StreamState:
    """One :class:`StreamState` from the states of disjoint parts of the gallery (each counted
    by :func:`count_shard` from the same :meth:`StreamState.create`): the counts add up,
    the top-1 is the greatest score, the lowest gallery index among equal ones."""
    first = states[0]
    out = dataclasses.replace(first, above=first.above.copy(), best=first.best.copy(),
                              best_index=first.best_index.copy())
    for st in states[1:]:
        out.above += st.above
        better = (st.best > out.best) | ((st.best == out.best) & (st.best_index >= 0)
                                         & ((out.best_index < 0)
                                            | (st.best_index < out.best_index)))
        out.best[better] = st.best[better]
        out.best_index[better] = st.best_index[better]
    return out


@dataclass(frozen=True)
class Positives:
    """Every query's positives (CSR, gallery indices ascending per query) with a column
    index to find those of one shard."""

    indptr: np.ndarray
    indices: np.ndarray
    row: np.ndarray  # query row of every positive
    perm: np.ndarray  # positions in ``indices`` sorted by gallery index
    by_col: np.ndarray  # ``indices[perm]``

    @classmethod
    def create(cls, indptr: np.ndarray, indices: np.ndarray) -> Positives:
        nq = indptr.size - 1
        row = np.repeat(np.arange(nq, dtype=np.int64), np.diff(indptr))
        perm = np.argsort(indices, kind="stable")
        return cls(indptr, indices, row, perm, indices[perm])

    def in_shard(self, gidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The positives whose gallery item is in the shard ``gidx``: their positions in
        ``indices`` and the shard row of each."""
        lo = np.searchsorted(self.by_col, gidx, side="left")
        cnt = np.searchsorted(self.by_col, gidx, side="right") - lo
        total = int(cnt.sum())
        srow = np.repeat(np.arange(gidx.size, dtype=np.int64), cnt)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        return self.perm[np.repeat(lo, cnt) + within], srow


def shard_positive_scores(pos: Positives, qs: np.ndarray, gs: np.ndarray,
                          gidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1 of a streamed gallery, for one shard: the positions (in ``pos.indices``) of the
    positives found in the shard ``gidx`` (rows ``gs``, prepared) and their
    :func:`pair_scores`."""
    at, srow = pos.in_shard(np.asarray(gidx, dtype=np.int64))
    vals = np.empty(at.size, dtype=np.float32)
    pair_scores(qs, gs, pos.row[at], srow, vals)
    return at, vals


def finish_stream(state: StreamState, ks: tuple[int, ...],
                  positive_ranks: bool = False) -> CaseResult:
    """The :class:`CaseResult` of a streamed case once every shard was counted; with
    ``positive_ranks`` (explicit positives) it holds every positive's rank, aligned with
    ``state.indices``."""
    nq = state.indptr.size - 1
    n_pos = np.diff(state.indptr)
    row = state.row
    among = np.zeros(state.indices.size, dtype=np.int64)
    if row.size:
        o = np.lexsort((state.indices, _ordered_int32(np.subtract(np.float32(0.0),
                                                                  state.score)), row))
        among[o] = np.arange(o.size) - state.indptr[row[o]]
    rank = 1 + among + state.above
    first_rank = np.zeros(nq, dtype=np.int64)
    ap = np.zeros(nq, dtype=np.float64)
    if row.size:
        o = np.lexsort((rank, row))
        srow, srank = row[o], rank[o]
        i = np.arange(1, o.size + 1) - state.indptr[srow]
        sums = np.bincount(srow, weights=i / srank, minlength=nq)
        has = n_pos > 0
        ap[has] = sums[has] / n_pos[has]
        first_rank[has] = srank[state.indptr[:-1][has]]
    return _case_result(nq, ks, first_rank, state.best_index.copy(), ap,
                        rank if positive_ranks else None)


def _rank_sparse_rows(
    s: np.ndarray,
    mask: np.ndarray,
    counts: np.ndarray,
    work: _Work,
    g0: int,
    n_pos: np.ndarray,
    top1: np.ndarray,
    first_rank: np.ndarray,
    ap: np.ndarray,
) -> None:
    """Rank the candidates of rows with few of them, all rows at once (module docstring, 3).

    ``mask`` marks the candidates (its rows may be padded with False), ``counts`` has their
    number per row.  Candidates are encoded as ``int64`` keys ``(row << 32) + order(-score)``;
    one ``np.argsort`` puts every row in ranking order (runs of equal keys are then put in
    gallery order), so a positive's rank is its position minus its row's start.
    """
    nr, ng = s.shape
    width = mask.shape[1]
    flat = np.flatnonzero(mask)
    row = np.repeat(np.arange(nr, dtype=np.int64), counts)
    if width == ng:
        col = flat - row * ng
        vals = s.reshape(-1)[flat]
    else:
        col = flat - row * width
        vals = s.reshape(-1)[row * ng + col]
    # 0 - score: descending order, and -0.0 becomes +0.0 so equal scores share a key.
    key = np.left_shift(row, 32)
    key += _ordered_int32(np.subtract(np.float32(0.0), vals))
    order = np.argsort(key)
    _order_ties_by_index(order, key[order], col)
    # Sorting keeps the rows grouped, so `row` also gives the row of each sorted position.
    scol = col[order]
    row_start = np.cumsum(counts) - counts
    is_pos, at = work.is_positive(g0, row, scol, work.ql[g0:])
    pos = np.flatnonzero(is_pos)  # ascending: by row, then by rank
    prow = row[pos]
    prank = pos - row_start[prow] + 1
    if at is not None and work.prank is not None:
        work.prank[at[pos]] = prank

    n_found = np.bincount(prow, minlength=nr)
    has = n_found > 0
    if not np.array_equal(n_found[has], n_pos[has]):  # pragma: no cover - invariant
        raise AssertionError("retrieval: positives missing from the candidate set")
    # AP: the i-th positive (1-based) of a row contributes i / r_i, summed in rank order.
    pstart = np.cumsum(n_found) - n_found
    i = np.arange(1, pos.size + 1) - pstart[prow]
    sums = np.bincount(prow, weights=i / prank, minlength=nr)
    ap[has] = sums[has] / n_found[has]
    first_rank[has] = prank[pstart[has]]
    top1[has] = scol[row_start[has]]


def _order_ties_by_index(order: np.ndarray, sorted_key: np.ndarray, col: np.ndarray) -> None:
    """Within runs of equal ``sorted_key``, reorder ``order`` (in place) by ``col`` ascending.

    ``np.argsort`` is not stable; this restores the tie rule (lower gallery index first) at
    a cost proportional to the number of tied candidates, nothing when there are none.
    """
    eq = sorted_key[1:] == sorted_key[:-1]
    if not eq.any():
        return
    in_run = np.zeros(sorted_key.size, dtype=bool)
    in_run[1:] = eq
    in_run[:-1] |= eq
    idx = np.flatnonzero(in_run)
    # A run starts at idx[j] unless idx[j] continues the run of idx[j] - 1.
    run_id = np.cumsum(np.r_[True, ~eq[idx[1:] - 1]])
    sub = order[idx]
    order[idx] = sub[np.lexsort((col[sub], run_id))]


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


def _row_counts(mask: np.ndarray) -> np.ndarray:
    """Number of True values per row of a bool array whose rows are whole 8-byte words.

    Sums the rows as ``uint64`` words, 255 words at a time so that no byte lane (each holding
    0 or 1 per word) can carry into the next, then adds up the byte lanes: about ten times
    faster than ``np.count_nonzero(mask, axis=1)``.
    """
    nr, width = mask.shape
    words = mask.view(np.uint64)
    n_words = width // 8
    full = n_words // 255 * 255
    counts = np.zeros(nr, dtype=np.int64)
    if full:
        lanes = words[:, :full].reshape(nr, full // 255, 255).sum(axis=2, dtype=np.uint64)
        counts += lanes.view(np.uint8).reshape(nr, -1).sum(axis=1, dtype=np.int64)
    if n_words > full:
        lanes = words[:, full:].sum(axis=1, dtype=np.uint64)
        counts += lanes.view(np.uint8).reshape(nr, 8).sum(axis=1, dtype=np.int64)
    return counts


def _split_by_weight(weights: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """Split ``range(len(weights))`` into consecutive chunks of total weight <= ``cap``.

    A single item heavier than ``cap`` forms its own chunk.
    """
    n = weights.size
    cum = np.cumsum(weights, dtype=np.int64)
    chunks: list[tuple[int, int]] = []
    start, base = 0, 0
    while start < n:
        end = max(int(np.searchsorted(cum, base + cap, side="right")), start + 1)
        chunks.append((start, end))
        base = int(cum[end - 1])
        start = end
    return chunks
