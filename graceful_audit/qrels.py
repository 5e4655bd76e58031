r"""Relevance judgments (qrels) for ``gaudit compat --qrels FILE``: reading and metrics.

Search and RAG indexes are judged by query-document relevance instead of identity labels.
A judgment says how relevant corpus item ``d`` is to query ``q``: a non-negative integer
grade, 0 = judged not relevant.  Documents without a judgment are not relevant.

File formats (detected from the first non-blank line)
-----------------------------------------------------
* BEIR (Thakur et al., NeurIPS 2021 datasets track): tab-separated with the header
  ``query-id<TAB>corpus-id<TAB>score``, then one ``qid<TAB>docid<TAB>grade`` per line;
* TREC (``trec_eval``'s qrels): ``qid iteration docid grade`` separated by whitespace, no
  header (the iteration column is ignored).

Blank lines are skipped; every other malformed line is an error naming its number.

Metrics of one query (ranking = the retrieval kernel's: score descending, ties by gallery
index ascending; :math:`g_d` the grade of document :math:`d`, :math:`r_d` its 1-based rank,
:math:`R_q = \{d : g_d > 0\}` the query's relevant documents)
-----------------------------------------------------------------------------------------------
* nDCG@10 (Järvelin and Kekäläinen, "Cumulated gain-based evaluation of IR techniques", ACM
  TOIS 20(4), 2002), linear gain and log2 discount as ``trec_eval -m ndcg_cut.10`` and ranx
  compute it:

  .. math:: \mathrm{DCG@10} = \sum_{d \in R_q,\ r_d \le 10} \frac{g_d}{\log_2(r_d + 1)},
            \qquad \mathrm{nDCG@10} = \mathrm{DCG@10} / \mathrm{IDCG@10}

  with IDCG@10 the DCG@10 of the query's judgments sorted by grade, descending;
* recall@k :math:`= |\{d \in R_q : r_d \le k\}| / |R_q|` (k = 10, 100);
* MRR@10 (Voorhees, TREC-8 QA track, 1999): :math:`1 / \min_{d \in R_q} r_d` when that rank
  is at most 10, else 0;
* AP over the full ranking with binary relevance (grade > 0), as the kernel computes it
  (:mod:`graceful_audit.retrieval`): :math:`\frac{1}{|R_q|}\sum_{i} i / r_{(i)}`.

Each metric is averaged over the queries with at least one relevant judged document in the
gallery; the others are counted (``queries_without_positive``) and excluded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

BEIR_HEADER = ("query-id", "corpus-id", "score")
#: JSON keys of the relevance metrics in ``cases[c]`` (besides ``map``), in report order.
RELEVANCE_KEYS = ("ndcg10", "recall10", "recall100", "mrr10")
#: Criteria of ``--criterion`` with ``--qrels``.
QRELS_CRITERIA = ("ndcg10", "map", "recall10", "recall100", "mrr10")
_INTEGER = re.compile(r"[+]?[0-9]+")
_MAX_GRADE = 2**31 - 1


@dataclass(frozen=True)
class Qrels:
    """The judgments of one file, in file order."""

    path: str
    format: str  # "beir" or "trec"
    query_ids: np.ndarray  # object (str)
    doc_ids: np.ndarray  # object (str)
    grades: np.ndarray  # int64, >= 0
    lines: np.ndarray  # int64, 1-based line numbers


def read_qrels(path: str) -> Qrels:
    """Read a BEIR or TREC qrels file; :class:`InputError` on anything malformed."""
    from .io import read_bytes
    from .textsafe import shown

    where = f"--qrels file {shown(path)}"
    try:
        raw = read_bytes(path, where)
    except FileNotFoundError:
        raise InputError(f"{where}: no such file. Check the path.") from None
    except IsADirectoryError:
        raise InputError(f"{where}: is a directory; give the qrels file itself.") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot be read ({exc.strerror or exc}).") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: is not UTF-8 text (byte {exc.start}). Save it as UTF-8."
                         ) from None
    lines = text.splitlines()
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise InputError(f"{where}: is empty; it needs one judgment per line (BEIR: header "
                         "'query-id<TAB>corpus-id<TAB>score'; TREC: 'qid 0 docid grade').")
    first_no, first = numbered[0]
    if tuple(f.strip() for f in first.split("\t")) == BEIR_HEADER:
        fmt, rows = "beir", numbered[1:]
    elif len(first.split()) == 4:
        fmt, rows = "trec", numbered
    else:
        raise InputError(
            f"{where}: line {first_no} ({shown(_clip(first))}) is neither the BEIR header "
            "'query-id<TAB>corpus-id<TAB>score' nor a TREC judgment 'qid 0 docid grade' "
            "(4 fields separated by whitespace)."
        )
    qids: list[str] = []
    dids: list[str] = []
    grades: list[int] = []
    numbers: list[int] = []
    for no, line in rows:
        if fmt == "beir":
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) != 3 or not all(fields):
                raise InputError(
                    f"{where}: line {no} ({shown(_clip(line))}) is not 'query-id<TAB>corpus-id"
                    f"<TAB>score' ({len(fields)} tab-separated field(s)"
                    f"{', an empty one' if len(fields) == 3 else ''}).")
            qid, did, grade = fields
        else:
            fields = line.split()
            if len(fields) != 4:
                raise InputError(
                    f"{where}: line {no} ({shown(_clip(line))}) is not a TREC judgment "
                    f"'qid 0 docid grade' ({len(fields)} field(s), 4 expected).")
            qid, _, did, grade = fields
        if not _INTEGER.fullmatch(grade) or int(grade) > _MAX_GRADE:
            kind = "negative" if grade.startswith("-") else "not a non-negative integer"
            raise InputError(
                f"{where}: line {no}: the grade {shown(_clip(grade))} is {kind}. Grades are "
                "integers >= 0 (0 = judged not relevant).")
        qids.append(qid)
        dids.append(did)
        grades.append(int(grade))
        numbers.append(no)
    if not qids:
        raise InputError(f"{where}: has the BEIR header but no judgment.")
    q = np.array(qids, dtype=object)
    d = np.array(dids, dtype=object)
    seen: dict[tuple[str, str], int] = {}
    for a, b, no in zip(qids, dids, numbers, strict=True):
        if (a, b) in seen:
            raise InputError(
                f"{where}: query {shown(a)} and document {shown(b)} are judged twice (lines "
                f"{seen[(a, b)]} and {no}). Keep one judgment per pair.")
        seen[(a, b)] = no
    return Qrels(str(path), fmt, q, d, np.array(grades, dtype=np.int64),
                 np.array(numbers, dtype=np.int64))


def _clip(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


@dataclass(frozen=True)
class Judged:
    """Judgments matched to the audited items: the kernel's explicit positives.

    ``indptr``/``indices`` (CSR over the queries, gallery indices ascending) list every
    relevant (grade > 0) judged gallery item; ``grades`` is aligned with ``indices``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    grades: np.ndarray
    judgments: int
    relevant: int
    unmatched: int
    wrong_side: int

    def take(self, rows: np.ndarray) -> Judged:
        """The judgments of the queries ``rows`` only (their positions, ascending; e.g. a
        sample of the queries), as CSR over those queries.  ``relevant`` counts the kept
        positives; ``judgments``, ``unmatched`` and ``wrong_side`` stay the file's counts."""
        rows = np.asarray(rows, dtype=np.int64)
        start, stop = self.indptr[rows], self.indptr[rows + 1]
        n = stop - start
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(n, out=indptr[1:])
        sel = np.repeat(start, n) + (np.arange(indptr[-1]) - np.repeat(indptr[:-1], n))
        return Judged(indptr, self.indices[sel], self.grades[sel], self.judgments,
                      int(indptr[-1]), self.unmatched, self.wrong_side)


def match_qrels(qrels: Qrels, query_ids: np.ndarray, gallery_ids: np.ndarray, *,
                allow_unmatched: bool) -> Judged:
    """Match judgments to the audited queries and gallery items by id (as text).

    A judgment whose query id is not a query, or whose document id is not a gallery item, is
    an error listing examples, unless ``allow_unmatched`` (then it is dropped and counted:
    ``unmatched`` when the id is not among the audited items at all, ``wrong_side`` when it
    is on the other side of the split).
    """
    from .errors import examples
    from .textsafe import shown

    q_pos = {str(v): i for i, v in enumerate(query_ids)}
    g_pos = {str(v): i for i, v in enumerate(gallery_ids)}
    qi = np.array([q_pos.get(v, -1) for v in qrels.query_ids], dtype=np.int64)
    gi = np.array([g_pos.get(v, -1) for v in qrels.doc_ids], dtype=np.int64)
    bad_q, bad_g = qi < 0, gi < 0
    side_q = bad_q & np.array([v in g_pos for v in qrels.query_ids], dtype=bool)
    side_g = bad_g & np.array([v in q_pos for v in qrels.doc_ids], dtype=bool)
    bad = bad_q | bad_g
    wrong = (side_q | side_g) & bad
    if bad.any() and not allow_unmatched:
        parts = []
        unknown_q = bad_q & ~side_q
        unknown_g = bad_g & ~side_g
        for mask, ids, what in (
            (unknown_q, qrels.query_ids, "query id(s) not in the files"),
            (unknown_g, qrels.doc_ids, "corpus id(s) not in the files"),
            (side_q, qrels.query_ids, "query id(s) on the gallery side of the split"),
            (side_g, qrels.doc_ids, "corpus id(s) on the query side of the split"),
        ):
            if mask.any():
                uniq = list(dict.fromkeys(ids[mask].tolist()))
                parts.append(f"{len(uniq)} {what} (e.g. {examples(np.array(uniq, object))}; "
                             f"line {int(qrels.lines[mask][0])})")
        raise InputError(
            f"--qrels file {shown(qrels.path)}: {int(bad.sum())} of {qrels.grades.size} "
            f"judgment(s) name ids the audit cannot use: {'; '.join(parts)}. Fix the ids, or "
            "pass --allow-unmatched to drop those judgments (counted in the report).")
    keep = ~bad & (qrels.grades > 0)
    qi, gi, grades = qi[keep], gi[keep], qrels.grades[keep]
    order = np.lexsort((gi, qi))
    qi, gi, grades = qi[order], gi[order], grades[order]
    indptr = np.zeros(len(query_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(qi, minlength=len(query_ids)), out=indptr[1:])
    return Judged(indptr, gi, grades, int(qrels.grades.size), int(keep.sum()),
                  int((bad & ~wrong).sum()), int(wrong.sum()))


def per_query_metrics(positive_rank: np.ndarray, indptr: np.ndarray, grades: np.ndarray,
                      average_precision: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query ``ndcg10``, ``recall10``, ``recall100``, ``mrr10`` and ``map`` (module
    docstring) from every relevant document's rank and grade (CSR, aligned); 0 for a query
    without a relevant document."""
    nq = indptr.size - 1
    n_rel = np.diff(indptr)
    row = np.repeat(np.arange(nq), n_rel)
    rank = positive_rank.astype(np.float64)
    g = grades.astype(np.float64)
    dcg = np.bincount(row, weights=np.where(rank <= 10, g / np.log2(rank + 1), 0.0),
                      minlength=nq)
    # Ideal: the query's grades sorted descending, at ranks 1, 2, ...
    order = np.lexsort((-g, row))
    at = np.arange(row.size) - indptr[row[order]] + 1
    ideal = np.where(at <= 10, g[order] / np.log2(at + 1.0), 0.0)
    idcg = np.bincount(row[order], weights=ideal, minlength=nq)
    has = n_rel > 0
    out = {name: np.zeros(nq) for name in (*RELEVANCE_KEYS, "map")}
    out["ndcg10"][has] = dcg[has] / idcg[has]
    for k in (10, 100):
        hits = np.bincount(row, weights=(rank <= k).astype(np.float64), minlength=nq)
        out[f"recall{k}"][has] = hits[has] / n_rel[has]
    first = np.full(nq, np.inf)
    np.minimum.at(first, row, rank)
    out["mrr10"] = np.where(first <= 10, 1.0 / first, 0.0)
    out["map"] = np.where(has, average_precision, 0.0)
    return out


def summary(per_query: dict[str, np.ndarray], evaluated: np.ndarray) -> dict[str, Any]:
    """The mean of each per-query metric over the evaluated queries (None when none)."""
    n = int(np.count_nonzero(evaluated))
    return {k: (float(v[evaluated].mean()) if n else None) for k, v in per_query.items()}
