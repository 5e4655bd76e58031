r"""Exact retrieval metrics for one query-model / gallery-model case.

``gaudit compat OLD NEW`` runs :func:`evaluate_case` four times (old/old, new/new, new/old,
old/new), or :func:`evaluate_streamed_galleries` once for the four when the gallery is read in
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
One kernel, :func:`count_shard`, serves the in-memory gallery (one shard holding every item)
and the streamed one (any shards, any row order).  Every quantity above only involves
gallery items scoring at least as high as the query's *worst* positive
:math:`t_q = \min_p s_p` (its *candidates*): the best positive, the top-1 and every item
ranked before some positive.  The positives' scores are their :func:`pair_scores`, known
before the gallery is read, so each query gets fixed *buckets* of its candidates' scores,
:math:`b(x) = \min(\lfloor (x - t_q)\,c_q \rfloor, B - 1)` in float32 with
:math:`c_q = (B - 2) / (\max_p s_p - t_q)` (every float operation rounds monotonically, so
:math:`b` is monotone: a higher bucket holds only higher scores, equal scores share one;
the scale only affects speed, never the result).  Then, for a block of queries:

1. the shard is cut into *tiles* of ``_TILE`` items, dealt to worker threads; each runs a
   single-threaded ``sgemm`` of the block against its tile, so the (block x tile) scores
   stay in the cache for every pass over them and the gallery is read once per block;
2. in the tile, the query's positives and its excluded item are blanked (``-inf``: the
   positives are ranked among themselves by :func:`finish_stream`), one vectorised
   comparison marks the candidates, and their buckets go into a per-query histogram
   (one ``np.bincount`` per few million candidates);
3. the candidates falling into a bucket that holds a positive of their query, or into a
   bucket at or above its best positive's, are kept exactly (the *mates*: score, gallery
   index);
4. after the last tile, a positive's count of items ranking before it is the candidates in
   higher buckets (a suffix sum of the histogram) plus its mates that rank before it
   (score greater, or equal at a lower gallery index; one ``lexsort`` of the block's mates
   and positives); the top-1 is the first of the mates and positives in ranking order
   (every item scoring at least the best positive is a mate).  A query without positive
   only needs its top-1: the first maximum of each tile.

Workers keep their own histograms and mates, added up per block, so neither the thread
count nor the tiles change a count.  Ranks: :math:`r(p) = 1 + \#\{\text{items before }
p\} + \#\{\text{positives before } p\}`; AP is summed left to right in rank order.

Streamed gallery (:func:`evaluate_streamed_galleries`): the queries stay in memory, the gallery
comes in shards (two passes).  Pass 1 computes every positive's pair score; pass 2 runs
:func:`count_shard` on each shard (its items' gallery indices, ``gidx``, in any order);
the counts add up over the shards and the top-1 keeps the first maximum
(:func:`merge_states` joins states counted apart, e.g. by Spark tasks).  Positives come
from labels or explicitly (CSR, as in memory; then every positive's rank is returned,
``positive_rank``).  Memory: the queries, the positives (about 20 bytes each), one shard,
each worker's tile of scores and a histogram of ``_BUCKETS`` counts per query of a block.

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

Cost: one ``sgemm`` plus, per score, one comparison and one pass of ``np.flatnonzero``
while the tile is in cache, and a few vectorised operations per candidate (a poor model's
worst positive ranks deep, so it has many: about 6% of a million-item gallery in the
benchmark).  faiss is not used: top-k accuracy follows exactly from the first positive's
rank, numpy's ``sgemm`` runs at the rate of faiss's exact search, and faiss's order among
equal scores is unspecified.

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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # a dependency of scikit-learn
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover
    ThreadpoolController = None


class _ProcessCache:
    """A value made once per process that pickles as empty: Spark ships this module to its
    tasks by value (``compat_spark._ship``), and a ThreadpoolController holds ctypes
    pointers, which cannot be pickled."""

    def __init__(self) -> None:
        self.value: Any = None

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_ProcessCache, ())


_controller = _ProcessCache()  # the ThreadpoolController, made once (it scans libraries)


def _single_threaded_blas() -> AbstractContextManager[Any]:
    """A context manager limiting BLAS to one thread (``nullcontext`` without threadpoolctl);
    the libraries are scanned once per process, not at every call (about 10 ms each)."""
    if ThreadpoolController is None:  # pragma: no cover
        return nullcontext()
    if _controller.value is None:
        _controller.value = ThreadpoolController()
    limiter: AbstractContextManager[Any] = _controller.value.limit(limits=1, user_api="blas")
    return limiter

__all__ = ["CaseResult", "evaluate_case", "evaluate_streamed", "normalize", "METRICS",
           "DEFAULT_BLOCK_BYTES"]

METRICS = ("cosine", "ip", "l2")
"""Accepted values of ``metric``."""

DEFAULT_BLOCK_BYTES = 128 * 1024 * 1024
"""Target size of one block's float32 score matrix when ``block_size`` is not given."""

_TILE = 2048
"""Gallery items per tile: a tile's scores (query block x tile, float32) stay in the cache
while they are compared and bucketed; only affects speed."""

_QUERY_BLOCK = 256
"""Most queries per block: every block reads the whole shard once, and a worker's tile of
scores (block x ``_TILE`` float32, 2 MiB) stays in a core's L2 cache; only affects speed."""

_BUCKETS = 2048
"""Score buckets per query (its candidates' histogram); only affects speed."""

_KEY_BATCH = 1 << 22
"""Bucket keys gathered before one ``np.bincount``; only affects speed."""

_MAX_SCALE = 1e30
"""Largest bucket scale (a finite float32, so that ``0 * scale`` stays 0)."""


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
    prepared: bool = False,
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
        Worker threads, each with single-threaded BLAS (numpy releases the GIL); default:
        the CPUs this process may run on.
    prepared : bool
        ``queries`` and ``gallery`` are already as :func:`prepare_queries` and
        :func:`prepare_gallery` return them for ``metric`` (so a caller searching one
        gallery with several query sets prepares it once); no copy is made.

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
        indptr, indices = positive_pairs(_Work.create(ql, gl, excl))
    if prepared:
        qs, gs = q, g
    else:
        qs, gs = prepare_queries(q, metric), prepare_gallery(g, metric)
    score = np.empty(indices.size, dtype=np.float32)
    pair_scores(qs, gs, np.repeat(np.arange(nq, dtype=np.int64), np.diff(indptr)), indices,
                score)
    state = StreamState.create(indptr, indices, score)
    count_shard(state, qs, gs, np.arange(ng, dtype=np.int64), excl, block_rows=block_size,
                n_threads=n_threads, progress=progress)
    return finish_stream(state, ks, positives is not None)


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
    (``progress(rows)``: gallery rows read so far over both passes, after each shard).  With
    explicit ``positives=(indptr, indices)`` (as for :func:`evaluate_case`: both labels and
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
    r"""Several cases over one gallery read in consecutive shards: ``shards()`` yields, in
    gallery order, blocks of the gallery as mappings ``key -> (n_i, d_key)`` array (one per
    gallery model; blocks of any sizes).  :func:`evaluate_streamed_galleries` with each
    model's rows numbered in the order they come (``shards()`` is called twice per model);
    ``progress`` as there.  The results equal :func:`evaluate_case`'s to the bit (given the
    scores: the matrix product of a shard rounds like that of the whole gallery in every BLAS
    we know of, but BLAS does not promise it).  ``gallery_labels`` may be ``None`` when every
    case has explicit positives; ``n_gallery`` (the gallery size) is then required.
    """
    def gallery(key: str) -> Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]:
        def read() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            g0 = 0
            for block in shards():
                g = block[key]
                yield np.arange(g0, g0 + len(g), dtype=np.int64), g
                g0 += len(g)
        return read

    return evaluate_streamed_galleries(
        cases, gallery_labels, {c.key: gallery(c.key) for c in cases}, n_gallery=n_gallery,
        metric=metric, ks=ks, block_bytes=block_bytes, progress=progress)


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
    r"""Several cases over galleries read in shards, every gallery model on its own, in any
    row order: each gallery version (``galleries[key]()``, e.g. one file read in its own row
    order) is read once per pass for all the cases that search it, two passes in all.

    ``galleries[key]()`` yields shards ``(gidx, g)``: ``gidx`` (``int64[n_i]``) the gallery
    index of each row of ``g`` (``(n_i, d_key)``), distinct, in any order; over all its
    shards every gallery index appears exactly once.  Pass 1 computes every positive's
    score (:func:`shard_positive_scores`), pass 2 counts (:func:`count_shard`); the results
    equal :func:`evaluate_case`'s (as said in :func:`evaluate_streamed_cases`).
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
        if not _all_finite(x):
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


def _all_finite(x: np.ndarray) -> bool:
    """No NaN or infinity in ``x`` (its minimum and maximum: NaN propagates; no copy)."""
    return not x.size or bool(np.isfinite(x.min()) and np.isfinite(x.max()))


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


def positive_pairs(work: _Work) -> tuple[np.ndarray, np.ndarray]:
    """The positives of every query in CSR form: ``(indptr int64[nq + 1], indices)``, each
    row's gallery indices ascending, the excluded item removed (read through ``_Work``)."""
    nq = work.n_same.size
    row, col = work.pairs(0, nq)
    indptr = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=nq), out=indptr[1:])
    return indptr, col.astype(np.int64, copy=False)


def _scores(qb: np.ndarray, g: np.ndarray, out: np.ndarray) -> None:
    """``out = qb @ g.T`` by a matrix-matrix product (``sgemm``) whatever the shapes.

    With one query or one gallery item numpy would call a matrix-vector routine, which sums
    in another order and can round an entry differently from ``sgemm``: a one-item tile (a
    gallery of 2048k + 1 items, or a one-row shard) or a one-query block is computed as a
    two-row product, like every other tile (module docstring, *Determinism*).
    """
    nr, w = out.shape
    if nr >= 2 and w >= 2:
        np.matmul(qb, g.T, out=out)
        return
    q2 = qb if nr >= 2 else np.concatenate([qb, qb])
    g2 = g if w >= 2 else np.concatenate([g, g])
    out[...] = (q2 @ g2.T)[:nr, :w]


def pair_scores(qs: np.ndarray, gs: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                out: np.ndarray) -> None:
    """``out[i] = qs[rows[i]] . gs[cols[i]]`` in float32, in chunks.

    This is *the* score of a query's positive wherever it is compared (every engine, every
    shard size): one float32 dot product per pair, so a positive's score never depends on
    the shape of the matrix product it would otherwise come from.
    """
    step = max(1, (1 << 19) // max(1, qs.shape[1]))  # gathered rows stay in the cache
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
                excl: np.ndarray, *, block_bytes: int = DEFAULT_BLOCK_BYTES,
                n_threads: int | None = None, block_rows: int | None = None,
                progress: Callable[[int], None] | None = None) -> None:
    r"""Add one gallery shard to ``state`` (the kernel's unit of work, in memory too).

    ``qs``: every query of the case as prepared (:func:`prepare_queries`, ``(nq, d)``);
    ``gs``: the shard's gallery rows as prepared (:func:`prepare_gallery`, ``(n, d)``);
    ``gidx``: ``int64[n]``, the global gallery index of each shard row (distinct, in any
    order: shards may come from any part of the gallery, in any order); ``excl``:
    ``int64[nq]``, the gallery index each query leaves out (-1 for none).

    For every positive :math:`p` of query :math:`q` it adds to ``state.above`` the number of
    shard items other than :math:`q`'s positives (and its excluded item) that rank before
    it, :math:`\#\{g: s_g > s_p\} + \#\{g: s_g = s_p,\ g < p\}`, and it merges the shard's
    candidates for the top-1 into ``state.best`` (greater score, or equal score at a lower
    gallery index): for a query with positives, the shard's items scoring at least its best
    positive (the top-1 is one of them or that positive), else the shard's first maximum.
    A positive's score is always its pair score (``state.score``).  Shards may be counted in
    any order and by separate workers (:func:`merge_states`): the result is the same.

    The queries go in blocks of ``block_rows`` (default: as many as keep the score tiles of
    all threads under ``block_bytes``, at most ``_QUERY_BLOCK``); per block the shard is cut
    into tiles of ``_TILE`` items, dealt to ``n_threads`` workers (default: the CPUs this
    process may run on), each with single-threaded BLAS (module docstring, *Algorithm*).
    ``progress(rows)`` is called after each query block with the queries done.
    """
    nq, n = qs.shape[0], gs.shape[0]
    if not (nq and n):
        if progress is not None:
            progress(nq)
        return
    gidx = np.ascontiguousarray(gidx, dtype=np.int64)
    excl = np.asarray(excl, dtype=np.int64)
    tile = int(max(1, min(_TILE, n)))
    n_tiles = -(-n // tile)
    threads = int(max(1, min(n_threads or _available_cpus(), n_tiles)))
    rows = block_rows or max(1, min(_QUERY_BLOCK, block_bytes // (4 * tile * threads)))
    rows = int(min(rows, nq))
    kernel = _Kernel.create(state, gs, gidx, excl, tile)
    tiles = [(c0, min(c0 + tile, n)) for c0 in range(0, n, tile)]
    parts = [tiles[i::threads] for i in range(threads)]
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        with _single_threaded_blas() if pool is not None else nullcontext():
            for r0 in range(0, nq, rows):
                r1 = min(nq, r0 + rows)
                block = kernel.block(r0, r1)
                qb = qs[r0:r1]
                if pool is None:
                    found = [_count_tiles(block, qb, gs, gidx, parts[0])]
                else:
                    futures = [pool.submit(_count_tiles, block, qb, gs, gidx, part)
                               for part in parts]
                    found = [f.result() for f in futures]
                kernel.finish_block(block, found)
                if progress is not None:
                    progress(r1)
    finally:
        if pool is not None:
            pool.shutdown()


@dataclass
class _Kernel:
    """What :func:`count_shard` prepares once per shard: every positive's bucket, each
    query's bucket scale and the shard cells to blank (positives and excluded items)."""

    state: StreamState
    tile: int
    n_buckets: int
    sorted_gidx: bool  # the shard's gallery indices ascending (argmax gives the lowest)
    scale: np.ndarray  # float32[nq]
    bucket: np.ndarray  # int64[nnz]: every positive's bucket
    kill_row: np.ndarray  # query row of each shard cell to blank, by shard row
    kill_col: np.ndarray  # its shard row, ascending
    in_shard: np.ndarray  # positions (in state.indices) of the positives in the shard

    @classmethod
    def create(cls, state: StreamState, gs: np.ndarray, gidx: np.ndarray, excl: np.ndarray,
               tile: int) -> _Kernel:
        nq, n = state.indptr.size - 1, gidx.size
        n_buckets = int(max(1, min(_BUCKETS, n)))  # a query has at most n candidates here
        sorted_gidx = bool(np.all(gidx[1:] > gidx[:-1]))
        at, srow = Positives.create(state.indptr, state.indices).in_shard(gidx)
        # Excluded items in the shard: the query rows and their shard rows.
        if sorted_gidx:
            where = np.minimum(np.searchsorted(gidx, excl), n - 1)
            hit = np.flatnonzero(gidx[where] == excl)
            ex_col = where[hit]
        else:
            order = np.argsort(gidx)
            where = np.minimum(np.searchsorted(gidx[order], excl), n - 1)
            hit = np.flatnonzero(gidx[order[where]] == excl)
            ex_col = order[where[hit]]
        kill_row = np.concatenate([state.row[at], hit]).astype(np.int64)
        kill_col = np.concatenate([srow, ex_col]).astype(np.int64)
        o = np.argsort(kill_col, kind="stable")
        # Bucket scale per query: its positives spread over buckets 0 .. B - 2, items above
        # the best positive fall into B - 1 (clamped).  Any positive scale is correct.
        thresh = state.thresh
        best = np.full(nq, -np.inf, dtype=np.float32)
        if state.row.size:
            starts = state.indptr[:-1][np.diff(state.indptr) > 0]
            best[state.row[starts]] = np.maximum.reduceat(state.score, starts)
        scale = np.zeros(nq, dtype=np.float32)
        has = np.isfinite(thresh)
        span = np.subtract(best[has], thresh[has]).astype(np.float64)
        with np.errstate(divide="ignore"):
            sc = np.where(span > 0, max(n_buckets - 2, 0) / np.where(span > 0, span, 1.0),
                          _MAX_SCALE if n_buckets >= 2 else 0.0)
        scale[has] = np.minimum(sc, _MAX_SCALE)
        bucket = _buckets(state.score, thresh[state.row], scale[state.row], n_buckets)
        return cls(state, tile, n_buckets, sorted_gidx, scale, bucket, kill_row[o], kill_col[o],
                   at)

    def block(self, r0: int, r1: int) -> _Block:
        """The per-block constants of queries ``r0 .. r1`` (shared by the workers)."""
        st, nb = self.state, self.n_buckets
        nr = r1 - r0
        a, b = int(st.indptr[r0]), int(st.indptr[r1])
        prow = st.row[a:b] - r0
        pbucket = self.bucket[a:b]
        # Buckets whose candidates are kept exactly ("mates"): those holding a positive of
        # the row and every bucket from its best positive's up (the top-1 is there).
        top = np.full(nr, nb, dtype=np.int64)  # rows without positive: nothing marked
        if prow.size:
            starts = np.flatnonzero(np.r_[True, prow[1:] != prow[:-1]])
            top[prow[starts]] = np.maximum.reduceat(pbucket, starts)
        marked = np.arange(nb)[None, :] >= top[:, None]
        marked[prow, pbucket] = True
        sel = (self.kill_row >= r0) & (self.kill_row < r1)
        thresh = self.state.thresh[r0:r1]
        return _Block(
            r0=r0, r1=r1, tile=self.tile, n_buckets=nb, sorted_gidx=self.sorted_gidx,
            thresh=thresh, thresh_col=thresh[:, None], scale=self.scale[r0:r1],
            marked=marked.reshape(-1), kill_row=self.kill_row[sel] - r0,
            kill_col=self.kill_col[sel], no_positive=np.flatnonzero(~np.isfinite(thresh)),
        )

    def finish_block(self, block: _Block, found: list[_Found]) -> None:
        """Add the workers' counts of one query block to the positives' ``above`` and merge
        the top-1 (module docstring, *Algorithm*)."""
        st, nb = self.state, self.n_buckets
        r0, r1 = block.r0, block.r1
        nr = r1 - r0
        a, b = int(st.indptr[r0]), int(st.indptr[r1])
        if b > a:
            hist = found[0].hist
            for f in found[1:]:
                hist += f.hist
            h = hist.reshape(nr, nb)
            # higher[r, k]: the row's candidates in buckets above k.
            higher = np.cumsum(h[:, ::-1], axis=1)[:, ::-1]
            higher -= h
            prow = st.row[a:b] - r0
            pbucket = self.bucket[a:b]
            above = higher[prow, pbucket]
            mkey = np.concatenate([f.mate_key for f in found])
            mgidx = np.concatenate([f.mate_gidx for f in found])
            mval = np.concatenate([f.mate_val for f in found])
            if mkey.size:
                # Mates and positives of a bucket in ranking order: a positive's mates
                # ranking before it are the mates before it in its bucket.
                pkey = prow * nb + pbucket
                key = np.concatenate([mkey, pkey])
                g = np.concatenate([mgidx, st.indices[a:b]])
                v = _ordered_int32(np.subtract(np.float32(0.0),
                                               np.concatenate([mval, st.score[a:b]])))
                o = np.lexsort((g, v, key))
                is_mate = o < mkey.size
                before = np.cumsum(is_mate) - is_mate
                skey = key[o]
                idx = np.arange(o.size)
                new = np.r_[True, skey[1:] != skey[:-1]]
                group = np.maximum.accumulate(np.where(new, idx, 0))
                pp = np.flatnonzero(~is_mate)
                above[o[pp] - mkey.size] += before[pp] - before[group[pp]]
                # Top-1 of the rows with positives: among the mates (every item scoring at
                # least the best positive is one) and the positives in the shard.
            at = self.in_shard[(st.row[self.in_shard] >= r0) & (st.row[self.in_shard] < r1)]
            crow = np.concatenate([mkey // nb, st.row[at] - r0])
            cg = np.concatenate([mgidx, st.indices[at]])
            cv = np.concatenate([mval, st.score[at]])
            if crow.size:
                o = np.lexsort((cg, _ordered_int32(np.subtract(np.float32(0.0), cv)), crow))
                first = o[np.r_[True, crow[o][1:] != crow[o][:-1]]]
                _merge_best(st, r0 + crow[first], cv[first], cg[first])
            st.above[a:b] += above
        if block.no_positive.size:
            val = np.full(block.no_positive.size, -np.inf, dtype=np.float32)
            idx = np.full(block.no_positive.size, -1, dtype=np.int64)
            for f in found:
                better = _better(f.top_val, f.top_idx, val, idx)
                val[better] = f.top_val[better]
                idx[better] = f.top_idx[better]
            _merge_best(st, r0 + block.no_positive, val, idx)


@dataclass(frozen=True)
class _Block:
    r0: int
    r1: int
    tile: int
    n_buckets: int
    sorted_gidx: bool
    thresh: np.ndarray
    thresh_col: np.ndarray
    scale: np.ndarray
    marked: np.ndarray  # bool[rows * n_buckets]
    kill_row: np.ndarray
    kill_col: np.ndarray
    no_positive: np.ndarray


@dataclass
class _Found:
    """One worker's counts for one query block."""

    hist: np.ndarray
    mate_key: np.ndarray
    mate_gidx: np.ndarray
    mate_val: np.ndarray
    top_val: np.ndarray
    top_idx: np.ndarray


def _buckets(x: np.ndarray, t: np.ndarray, scale: np.ndarray, n_buckets: int) -> np.ndarray:
    """``clamp(floor((x - t) * scale), 0, B - 1)`` in float32 (``x >= t``): monotone in
    ``x``, so a higher bucket holds only higher scores and equal scores share one."""
    y = np.subtract(x, t)
    y *= scale
    np.minimum(y, np.float32(n_buckets - 1), out=y)
    return y.astype(np.int64)


def _count_tiles(block: _Block, qb: np.ndarray, gs: np.ndarray, gidx: np.ndarray,
                 tiles: list[tuple[int, int]]) -> _Found:
    """One worker: the tiles ``tiles`` of the shard against the query block ``qb``."""
    nr, nb = qb.shape[0], block.n_buckets
    score_buf = np.empty(nr * block.tile, dtype=np.float32)
    mask_buf = np.empty(nr * block.tile, dtype=bool)
    hist = np.zeros(nr * nb, dtype=np.int64)
    keys: list[np.ndarray] = []
    n_keys = 0
    mates: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    nop = block.no_positive
    top_val = np.full(nop.size, -np.inf, dtype=np.float32)
    top_idx = np.full(nop.size, -1, dtype=np.int64)
    thresh, scale, marked = block.thresh, block.scale, block.marked
    for c0, c1 in tiles:
        w = c1 - c0
        s = score_buf[: nr * w].reshape(nr, w)
        _scores(qb, gs[c0:c1], s)
        k0, k1 = np.searchsorted(block.kill_col, (c0, c1))
        if k1 > k0:  # positives (ranked among themselves later) and excluded items
            s[block.kill_row[k0:k1], block.kill_col[k0:k1] - c0] = -np.inf
        if nop.size:  # rows without positive: only the first maximum
            sub = s if nop.size == nr else s[nop]
            val = sub.max(axis=1)
            if block.sorted_gidx:
                idx = gidx[c0 + sub.argmax(axis=1)]
            else:
                big = np.iinfo(np.int64).max
                idx = np.where(sub == val[:, None], gidx[None, c0:c1], big).min(axis=1)
            better = _better(val, idx, top_val, top_idx)
            top_val[better] = val[better]
            top_idx[better] = idx[better]
        m = mask_buf[: nr * w].reshape(nr, w)
        np.greater_equal(s, block.thresh_col, out=m)
        flat = np.flatnonzero(m)
        if flat.size == 0:
            continue
        vals = s.reshape(-1)[flat]
        row = flat // w
        key = _buckets(vals, thresh[row], scale[row], nb)
        key += row * nb
        keys.append(key)
        n_keys += key.size
        if n_keys >= _KEY_BATCH:
            hist += np.bincount(np.concatenate(keys), minlength=nr * nb)
            keys, n_keys = [], 0
        hit = np.flatnonzero(marked[key])
        if hit.size:
            col = flat[hit] - row[hit] * w
            mates.append((key[hit], gidx[c0 + col], vals[hit]))
    if keys:
        hist += np.bincount(np.concatenate(keys), minlength=nr * nb)
    if mates:
        mk, mg, mv = (np.concatenate(x) for x in zip(*mates, strict=True))
    else:
        mk, mg, mv = (np.zeros(0, np.int64), np.zeros(0, np.int64),
                      np.zeros(0, np.float32))
    return _Found(hist, mk, mg, mv, top_val, top_idx)


def _better(val: np.ndarray, idx: np.ndarray, best: np.ndarray,
            best_index: np.ndarray) -> np.ndarray:
    """Where ``(val, idx)`` beats ``(best, best_index)``: a greater score, or an equal one at
    a lower gallery index; an excluded item (-inf) never wins."""
    better = (val > best) | ((val == best) & ((best_index < 0) | (idx < best_index)))
    better &= val > -np.inf
    better &= idx >= 0
    return better


def _merge_best(state: StreamState, rows: np.ndarray, val: np.ndarray, idx: np.ndarray) -> None:
    """Merge top-1 candidates ``(val, idx)`` of the query rows ``rows`` (distinct) into
    ``state``."""
    better = _better(val, idx, state.best[rows], state.best_index[rows])
    state.best[rows[better]] = val[better]
    state.best_index[rows[better]] = idx[better]


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
