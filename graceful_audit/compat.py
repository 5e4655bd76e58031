"""``audit_compat``: cross-model retrieval compatibility of an embedding-model update.

read (DuckDB views) -> align by id -> validate embeddings -> four retrieval cases
(:mod:`graceful_audit.retrieval`) -> criterion, update gain, retrieval negative flips ->
gates.

Cases are named *query model / gallery model*: ``old/old``, ``new/new``, ``new/old`` (new
queries against the old, un-backfilled index: the case that matters) and ``old/new``.

* Empirical compatibility criterion (Shen et al., "Towards Backward-Compatible
  Representation Learning", CVPR 2020): the update is compatible when
  ``M(new/old) > M(old/old)``, with M top-1 accuracy (``--criterion top1``, default) or
  mAP (``--criterion map``).
* ``update_gain = (M(new/old) - M(old/old)) / (M(new/new) - M(old/old))``; ``None`` when
  the denominator is zero.
* Retrieval negative flips: queries whose top-1 neighbour has the right identity in
  old/old and the wrong one in new/old.
* Confidence (at ``confidence``, default 0.95): a Wilson interval for every top-k of every
  case, and the paired test of the criterion on the same queries. For ``top1``, McNemar's
  test on the per-query top-1 hits of old/old vs new/old (``b`` = right in old/old and
  wrong in new/old, the retrieval negative flips; ``c`` = the reverse; exact binomial while
  ``b + c < 25``, chi-square with continuity correction otherwise, as for flips) and
  Newcombe's hybrid score interval of ``top1(new/old) - top1(old/old)``; for ``map``,
  Student's paired t test and interval of the per-query AP difference (new/old - old/old).
  Both come from the per-query hits and APs of the four searches: nothing is searched
  again. The margin is *significant* when ``p < 1 - confidence``.

Three or more files (``audit_compat(v1, v2, v3)``, oldest first) give the n x n matrix of
query version x gallery version and every later-vs-earlier pair, each judged by the same
code as two files (:mod:`graceful_audit.versions`).

With a ``split`` column, ``query`` items search the ``gallery`` items; without one, every
item queries all the others (leave-one-out).

With relevance judgments (``qrels``, :mod:`graceful_audit.qrels`) instead of identity labels,
the split column is required, a query's positives are its relevant (grade > 0) judged gallery
items, and every case also gets nDCG@10, recall@10, recall@100 and MRR@10 (mAP with binary
relevance); the criterion defaults to ``ndcg10`` and is tested with the paired t test of the
per-query difference (like ``map``). Retrieval negative flips are then the queries whose top-1
result is relevant in old/old and not in new/old (the ``b`` of McNemar's test on top-1).

When old and new dimensions differ the cross cases cannot be computed: they are reported as
unavailable and the update is not compatible.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from .align import ID_SYNONYMS, LABEL_SYNONYMS, check_ids, id_sql
from .engine import FILL_TEXT, FILL_VALUE, Dialect, DuckDBEngine, check_engine_options
from .errors import InputError, UsageError, examples
from .flips import gate_specs, natural_key
from .gates import (
    Gated,
    GateDef,
    GateResult,
    GateSpec,
    check_threshold,
    check_top,
    evaluate_gates,
)
from .io import (
    Table,
    check_column_names,
    is_integer_type,
    is_list_type,
    is_numeric_type,
    quote,
    resolve_column,
)
from .stats import mcnemar, paired_difference_interval, paired_t, wilson_interval

if TYPE_CHECKING:
    from .versions import Versions

CASES = ("old/old", "new/new", "new/old", "old/new")
CRITERIA = {"top1": "top1", "map": "map"}
#: How reports name each criterion (``--criterion``); the last four need ``--qrels``.
CRITERION_LABELS = {"top1": "top-1", "map": "mAP", "ndcg10": "nDCG@10", "recall10": "recall@10",
                    "recall100": "recall@100", "mrr10": "MRR@10"}
SPLIT_VALUES = ("query", "gallery")
KS = (1, 5, 10)
#: Norm limits for float32 search: cosine needs a norm to divide by; inner products and
#: squared distances of larger vectors overflow float32 (max 3.4e38).
MIN_NORM, MAX_NORM = 1e-30, 1e18


@dataclass(frozen=True)
class CaseMetrics:
    """One query-model / gallery-model case; ``available`` is False when dims differ."""

    name: str
    available: bool
    topk: dict[int, float | None] = field(default_factory=dict)
    map: float | None = None
    queries_evaluated: int = 0
    reason: str | None = None
    #: ``k -> (low, high)``: Wilson interval of each top-k accuracy (None: no query).
    intervals: dict[int, tuple[float, float] | None] = field(default_factory=dict)
    #: With relevance judgments only: ``ndcg10``, ``recall10``, ``recall100``, ``mrr10``.
    relevance: dict[str, float | None] = field(default_factory=dict)

    def metric(self, criterion: str) -> float | None:
        if criterion == "map":
            return self.map
        if criterion != "top1":  # a relevance metric (None when the case has none)
            return self.relevance.get(criterion)
        return self.topk.get(1)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f"top{k}": v for k, v in self.topk.items()} if self.available else {
            f"top{k}": None for k in KS}
        d.update(self.relevance)
        d.update({"map": self.map, "queries_evaluated": self.queries_evaluated,
                  "available": self.available})
        d["intervals"] = {f"top{k}": (list(ci) if (ci := self.intervals.get(k)) else None)
                          for k in (self.topk if self.available else KS)}
        if self.reason:
            d["reason"] = self.reason
        return d

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> CaseMetrics:
        topk = {int(k[3:]): v for k, v in d.items() if re.fullmatch(r"top\d+", k)}
        iv = d.get("intervals") or {}
        intervals = {int(k[3:]): (tuple(v) if v else None) for k, v in iv.items()
                     if re.fullmatch(r"top\d+", k)}
        from .qrels import RELEVANCE_KEYS

        relevance = {k: d[k] for k in RELEVANCE_KEYS if k in d}
        return cls(name, d.get("available", True), topk, d.get("map"),
                   d.get("queries_evaluated", 0), d.get("reason"), intervals, relevance)


@dataclass(frozen=True)
class CriterionTest:
    """The paired test of the criterion, new/old against old/old on the same queries.

    ``method`` is ``"exact"`` or ``"chi2"`` (McNemar's test, ``--criterion top1``; ``b`` =
    queries right at top-1 in old/old and wrong in new/old, ``c`` = the reverse) or
    ``"paired t"`` (``--criterion map`` or a relevance criterion: Student's paired t test of
    the per-query AP, nDCG@10, ... difference; ``b`` and ``c`` are None). ``interval`` is
    the interval of ``M(new/old) - M(old/old)``: Newcombe's hybrid score interval for paired
    proportions (``interval_method`` ``"newcombe"``) or the paired t interval
    (``"paired t"``).
    """

    method: str
    p_value: float | None
    statistic: float | None
    b: int | None
    c: int | None
    n: int
    interval: tuple[float, float] | None
    interval_method: str

    def to_dict(self) -> dict[str, Any]:
        return {"p_value": self.p_value, "method": self.method, "b": self.b, "c": self.c,
                "statistic": self.statistic, "queries": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, iv: dict[str, Any]) -> CriterionTest | None:
        if not d:
            return None
        ci = iv.get("criterion_delta")
        return cls(d["method"], d.get("p_value"), d.get("statistic"), d.get("b"), d.get("c"),
                   d.get("queries", 0), tuple(ci) if ci else None,
                   iv.get("criterion_delta_method", "newcombe"))


def criterion_test(old_old: Any, new_old: Any, criterion: str, *,
                   confidence: float = 0.95,
                   per_query: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> CriterionTest | None:
    """The paired test of the criterion from two :class:`~graceful_audit.retrieval.CaseResult`
    of the same queries (old/old, new/old): per-query top-1 hits or APs, no new search.

    ``per_query`` (old/old, new/old) gives the per-query values of any other criterion (the
    relevance metrics of ``--qrels``), tested like mAP. Only queries with a positive in the
    gallery count (as in every metric); ``None`` when there is none.
    """
    evaluated = old_old.first_positive_rank > 0
    n = int(np.count_nonzero(evaluated))
    if n == 0:
        return None
    if criterion != "top1":
        a, b = ((old_old.average_precision, new_old.average_precision) if per_query is None
                else per_query)
        t = paired_t(b[evaluated] - a[evaluated], confidence=confidence)
        return CriterionTest("paired t", t.p_value, t.statistic, None, None, n, t.interval,
                             "paired t")
    hit_oo, hit_no = old_old.top1_correct[evaluated], new_old.top1_correct[evaluated]
    b = int(np.count_nonzero(hit_oo & ~hit_no))
    c = int(np.count_nonzero(~hit_oo & hit_no))
    both = int(np.count_nonzero(hit_oo & hit_no))
    m = mcnemar(b, c)
    # p1 = new/old = both + c, p2 = old/old = both + b: the interval of new/old - old/old.
    ci = paired_difference_interval(both, c, b, n - both - b - c, confidence=confidence)
    return CriterionTest(m.method, m.p_value, m.statistic, b, c, n, ci, "newcombe")


@dataclass(frozen=True)
class BreakingQuery:
    """A retrieval negative flip: right at top-1 in old/old, wrong in new/old.

    With ``--qrels``: ``label`` is empty, ``new_old_rank`` is the rank of the first relevant
    document and ``new_old_top1_label`` the grade of the new/old top-1 (``"0"``: judged not
    relevant, ``"unjudged"``)."""

    id: str
    label: str
    new_old_rank: int  # 1-based rank of the first correct gallery item in new/old
    new_old_top1_id: str
    new_old_top1_label: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CompatInputs:
    old_path: str
    new_path: str
    old_rows: int
    new_rows: int
    matched: int
    unmatched_old: int
    unmatched_new: int
    old_dim: int
    new_dim: int
    mode: str  # "split" or "leave-one-out"
    queries: int
    gallery: int
    qrels: QrelsInfo | None = None
    #: ``--sample-queries``: the audited queries are a uniform sample of ``of`` queries
    #: drawn with ``seed`` (None: every query).
    sample: QuerySample | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "old": {"path": self.old_path, "rows": self.old_rows, "dim": self.old_dim},
            "new": {"path": self.new_path, "rows": self.new_rows, "dim": self.new_dim},
            "matched": self.matched, "unmatched_old": self.unmatched_old,
            "unmatched_new": self.unmatched_new, "mode": self.mode,
            "gallery": self.gallery,
        }
        if self.qrels is not None:
            d["qrels"] = dataclasses.asdict(self.qrels)
        if self.sample is not None:
            d["sample"] = self.sample.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], queries: int) -> CompatInputs:
        q, s = d.get("qrels"), d.get("sample")
        return cls(d["old"]["path"], d["new"]["path"], d["old"]["rows"], d["new"]["rows"],
                   d["matched"], d["unmatched_old"], d["unmatched_new"], d["old"]["dim"],
                   d["new"]["dim"], d["mode"], queries, d["gallery"],
                   None if q is None else QrelsInfo(**q),
                   QuerySample(s["queries"], s["of"], s["seed"]) if s else None)


@dataclass(frozen=True)
class QrelsInfo:
    """The relevance judgments of a ``--qrels`` audit (JSON ``inputs.qrels``).

    ``judgments``: lines read; ``relevant``: judgments with grade > 0 used as positives;
    ``unmatched``: judgments dropped (``--allow-unmatched``) because an id is not among the
    audited items; ``wrong_side``: dropped because the query id is a gallery item or the
    corpus id a query.
    """

    path: str
    format: str
    judgments: int
    relevant: int
    unmatched: int
    wrong_side: int


@dataclass(frozen=True)
class QuerySample:
    """A uniform sample (without replacement) of ``queries`` of the ``of`` queries, drawn
    by ``numpy.random.default_rng(seed).choice``; the same seed gives the same sample."""

    queries: int
    of: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "of": self.of, "seed": self.seed}

    def sentence(self) -> str:
        return (f"a uniform sample of {self.queries:,} of {self.of:,} queries "
                f"(seed {self.seed})")


@dataclass(frozen=True)
class CompatResult(Gated):
    """Everything ``gaudit compat`` found. Immutable; every report renders this object."""

    inputs: CompatInputs
    metric: str
    criterion: str
    cases: dict[str, CaseMetrics]
    compatible: bool
    update_gain: float | None
    retrieval_negative_flips: int | None
    queries: int
    queries_without_positive: int
    breaking_queries: tuple[BreakingQuery, ...]
    confidence: float = 0.95
    criterion_test: CriterionTest | None = None
    gates: tuple[GateResult, ...] = ()
    tool_version: str = __version__
    #: Three or more versions (``gaudit compat V1 V2 V3 ...``): the n x n matrix and every
    #: later-vs-earlier pair. The other fields then describe the newest version's queries on
    #: the oldest version's gallery (old = V1, new = Vn), except ``compatible`` (every pair),
    #: ``reason``, the gates (evaluated on every pair) and ``passed``.
    versions: Versions | None = None
    #: The engine that read the files and searched the gallery (JSON ``engine``).
    engine: str = "duckdb"

    kind = "compat"

    @property
    def dimension_mismatch(self) -> bool:
        return self.inputs.old_dim != self.inputs.new_dim

    @property
    def retrieval_negative_flip_rate(self) -> float | None:
        evaluated = self.queries - self.queries_without_positive
        if self.retrieval_negative_flips is None or evaluated == 0:
            return None
        return self.retrieval_negative_flips / evaluated

    @property
    def criterion_delta(self) -> float | None:
        """``M(new/old) - M(old/old)`` for the criterion's M; None when either is missing."""
        if not self.cases["new/old"].available:
            return None
        t = self.criterion_test
        if t is not None and t.b is not None and t.c is not None and t.n:
            return (t.c - t.b) / t.n  # exact: one rounding, not two
        cross, base = (self.cases[n].metric(self.criterion) for n in ("new/old", "old/old"))
        return None if cross is None or base is None else cross - base

    @property
    def cross_drop(self) -> float | None:
        """``M(old/old) - M(new/old)``: what ``--max-cross-drop`` watches."""
        delta = self.criterion_delta
        return None if delta is None else -delta

    @property
    def criterion_significant(self) -> bool | None:
        """Whether the paired test of the criterion has ``p < 1 - confidence``; None when
        it could not be run (new/old unavailable, no evaluated query, one query for mAP)."""
        t = self.criterion_test
        if t is None or t.p_value is None:
            return None
        return t.p_value < 1.0 - self.confidence

    def metric_value(self, name: str) -> float | None:
        if name == "compatible":
            return 1.0 if self.compatible else 0.0
        if name == "cross_top1":
            return self.cases["new/old"].topk.get(1)
        return getattr(self, name)

    def significance(self) -> str:
        """The paired test of the criterion in one sentence (empty when it was not run)."""
        t = self.criterion_test
        if t is None:
            return ""
        crit = CRITERION_LABELS[self.criterion]
        level = _level(self.confidence)
        p = "n/a" if t.p_value is None else f"{t.p_value:.3g}"
        if self.criterion_significant is None:
            said = "cannot be tested on one query"
        elif self.criterion_significant:
            said = f"significant at the {level} level"
        else:
            said = f"not significant at the {level} level"
        if t.b is not None:
            how = ("McNemar's test (exact binomial)" if t.method == "exact" else
                   "McNemar's test (chi-square with continuity correction)")
            test = (f"{how} on {t.c:,} queries right at top-1 only in new/old vs {t.b:,} only "
                    f"in old/old: p = {p}")
        else:
            what = "AP" if self.criterion == "map" else CRITERION_LABELS[self.criterion]
            test = (f"paired t test of the per-query {what} difference on {t.n:,} queries: "
                    f"p = {p}")
        ci = ("" if t.interval is None else
              f", {self.confidence:.0%} interval [{_pp(t.interval[0])}, {_pp(t.interval[1])}]"
              f" ({'Newcombe' if t.interval_method == 'newcombe' else 'paired t'})")
        return (f"{crit} new/old - old/old = {_pp(self.criterion_delta)}{ci}; {test} "
                f"({said}).")

    def reason(self) -> str:
        """Why the update is (not) compatible, in one clause."""
        if self.versions is not None:
            return self.versions.reason(self.criterion)
        if self.dimension_mismatch:
            return (f"dimension {self.inputs.old_dim} vs {self.inputs.new_dim}: "
                    "not backward compatible")
        crit = CRITERION_LABELS[self.criterion]
        cross = self.cases["new/old"].metric(self.criterion)
        base = self.cases["old/old"].metric(self.criterion)
        op = ">" if self.compatible else "<="
        digits = _distinct_decimals(cross, base)
        return (f"{crit} new/old {_pct(cross, digits)} {op} old/old {_pct(base, digits)}")

    def headline(self) -> str:
        sample = self.inputs.sample
        on = "" if sample is None else f"; on {sample.sentence()}"
        if self.versions is not None:
            return self.versions.headline(self.criterion, self.confidence) + on
        if self.dimension_mismatch:
            return self.reason() + on
        word = "backward compatible" if self.compatible else "NOT backward compatible"
        flips = ("" if self.retrieval_negative_flips is None else
                 f"; {self.retrieval_negative_flips:,} of {self.queries:,} queries break")
        return f"{word} ({self.reason()}){self._not_significant()}{flips}{on}"

    def _not_significant(self) -> str:
        """``, but the margin is not significant (...)`` when the paired test says so."""
        t = self.criterion_test
        if t is None or self.criterion_significant is not False:
            return ""
        if t.b is not None:
            method = "exact" if t.method == "exact" else "chi-square"
            how = (f"McNemar {method} p = {t.p_value:.3g}; {t.c:,} queries gained, {t.b:,} "
                   "lost at top-1")
        else:
            how = f"paired t p = {t.p_value:.3g}; {t.n:,} queries"
        return (f", but the margin is not significant at the {_level(self.confidence)} level "
                f"({how})")

    def with_gates(self, gates: tuple[GateResult, ...]) -> CompatResult:
        return dataclasses.replace(self, gates=gates)

    def to_dict(self) -> dict[str, Any]:
        d = self._to_dict()
        if self.versions is not None:
            d = self.versions.into_dict(d)
        return d

    def _to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "kind": "compat",
            "engine": self.engine,
            "tool": {"name": "graceful-audit", "version": self.tool_version},
            "inputs": self.inputs.to_dict(),
            "metric": self.metric,
            "criterion": self.criterion,
            "cases": {name: c.to_dict() for name, c in self.cases.items()},
            "compatible": self.compatible,
            "reason": self.reason(),
            "criterion_delta": self.criterion_delta,
            "criterion_significant": self.criterion_significant,
            "intervals": self._intervals(),
            "tests": {"criterion": (None if self.criterion_test is None
                                    else self.criterion_test.to_dict())},
            "update_gain": self.update_gain,
            "retrieval_negative_flips": self.retrieval_negative_flips,
            "retrieval_negative_flip_rate": self.retrieval_negative_flip_rate,
            "queries": self.queries,
            "queries_without_positive": self.queries_without_positive,
            "breaking_queries": [b.to_dict() for b in self.breaking_queries],
            "gates": [g.to_dict() for g in self.gates],
            "passed": self.passed,
        }

    def _intervals(self) -> dict[str, Any]:
        t = self.criterion_test
        ci = None if t is None else t.interval
        return {"confidence": self.confidence, "method": "wilson",
                "criterion_delta": list(ci) if ci else None,
                "criterion_delta_method": None if t is None else t.interval_method}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompatResult:
        result = cls._from_dict(d)
        if "versions" in d:
            from .versions import Versions

            result = dataclasses.replace(result, versions=Versions.from_dict(d, result))
        return result

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> CompatResult:
        iv = d.get("intervals") or {}
        return cls(
            inputs=CompatInputs.from_dict(d["inputs"], d["queries"]),
            metric=d["metric"], criterion=d["criterion"],
            cases={n: CaseMetrics.from_dict(n, c) for n, c in d["cases"].items()},
            compatible=d["compatible"], update_gain=d.get("update_gain"),
            retrieval_negative_flips=d.get("retrieval_negative_flips"),
            queries=d["queries"], queries_without_positive=d.get("queries_without_positive", 0),
            breaking_queries=tuple(BreakingQuery(**b) for b in d.get("breaking_queries", [])),
            confidence=iv.get("confidence", 0.95),
            criterion_test=CriterionTest.from_dict((d.get("tests") or {}).get("criterion"), iv),
            gates=tuple(GateResult.from_dict(g) for g in d.get("gates", [])),
            tool_version=d.get("tool", {}).get("version", __version__),
            engine=d.get("engine", "duckdb"),
        )


def _pct(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _pp(x: float | None) -> str:
    """A difference of rates in percentage points, signed: ``+0.28 pp``."""
    return "n/a" if x is None else f"{100 * x:+.2f} pp"


def _level(confidence: float) -> str:
    """The significance level ``1 - confidence`` as text: ``5%``, ``0.001``."""
    alpha = 1 - confidence
    return f"{alpha:.0%}" if round(alpha * 100, 9) == round(alpha * 100) else f"{alpha:.3g}"


def _distinct_decimals(a: float | None, b: float | None) -> int:
    """Decimals (2 or more) at which percentages ``a`` and ``b`` read differently, unless
    they are equal: ``85.00% > 85.00%`` must never be printed."""
    if a is None or b is None or a == b:
        return 2
    for digits in range(2, 16):
        if f"{100 * a:.{digits}f}" != f"{100 * b:.{digits}f}":
            return digits
    return 15


def _value(name: str, direction: str) -> Callable[[Any], tuple[float | None, str | None]]:
    def value(result: Any) -> tuple[float | None, str | None]:
        versions = getattr(result, "versions", None)
        if versions is not None and name != "compatible":
            return versions.worst(name, direction, pair_value)
        return pair_value(result, versions)

    def pair_value(result: Any, versions: Any = None) -> tuple[float | None, str | None]:
        """The gated value of a two-version audit (or of one pair of versions)."""
        if name != "compatible" and result.dimension_mismatch:
            return _unsearchable(result, name)
        detail = result.reason() if name == "compatible" else None
        if name == "compatible" and versions is not None:
            detail = versions.verdicts()
        return result.metric_value(name), detail

    return value


def _unsearchable(result: Any, name: str) -> tuple[float | None, str | None]:
    """A gate on the new/old case when the dimensions differ: new queries cannot search the
    old index at all, so new/old finds nothing (M(new/old) = 0). An undefined ("n/a") value
    would let ``--min-cross-top1`` or ``--max-cross-drop`` hold on the least compatible
    update there is."""
    base = result.cases["old/old"].metric(result.criterion)
    top1 = result.cases["old/old"].topk.get(1)
    backfilled = result.cases["new/new"].metric(result.criterion)
    value: float | None
    if name == "cross_top1":
        value = 0.0
    elif name == "cross_drop":
        value = base
    elif name == "retrieval_negative_flip_rate":
        value = top1  # every query right at top-1 in old/old breaks
    elif base is None or backfilled is None or backfilled == base:
        value = None  # update_gain: (0 - M(old/old)) / (M(new/new) - M(old/old))
    else:
        value = -base / (backfilled - base)
    return value, (f"dimension {result.inputs.old_dim} vs {result.inputs.new_dim}: new "
                   "queries cannot search the old index, so new/old counts as finding nothing")


COMPAT_GATES: dict[str, GateDef] = {
    g.name: g
    for g in (
        GateDef("require-compatible", "compatible", "min", 1, 1, _value("compatible", "min"),
                kind="compat", help="Fail unless new/old beats old/old."),
        GateDef("min-update-gain", "update_gain", "min", -1e6, 1e6, _value("update_gain", "min"),
                kind="compat", help="Fail when the update gain falls below X."),
        GateDef("max-retrieval-nfr", "retrieval_negative_flip_rate", "max", 0, 1,
                _value("retrieval_negative_flip_rate", "max"), kind="compat",
                help="Fail when the share of queries that break exceeds X (0..1)."),
        GateDef("min-cross-top1", "cross_top1", "min", 0, 1, _value("cross_top1", "min"),
                kind="compat", help="Fail when new/old top-1 accuracy falls below X."),
        GateDef("max-cross-drop", "cross_drop", "max", -1, 1, _value("cross_drop", "max"),
                kind="compat",
                help="Fail when M(old/old) - M(new/old) exceeds X (-1..1; M the criterion; "
                "negative X demands an improvement)."),
    )
}


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _EmbeddingSide:
    table: Table
    id: str
    label: str | None
    split: str | None
    embedding_sql: str
    embedding_desc: str


def _resolve(table: Table, id_col: str | None, label_col: str | None, emb_col: str | None,
             split_col: str | None) -> _EmbeddingSide:
    idc = resolve_column(table, id_col, "id", ID_SYNONYMS)
    if idc is None:
        raise table.missing_column(id_col or "id", "--id-col")
    label = resolve_column(table, label_col, "label", LABEL_SYNONYMS)
    split = resolve_column(table, split_col, "split", ())
    if split_col is not None and split is None:
        raise table.missing_column(split_col, "--split-col")
    wanted = emb_col or "embedding"
    if table.has(wanted):
        t = table.type_of(wanted)
        if not is_list_type(t):
            raise InputError(
                f"{table.label}: column {wanted!r} is {t}, not a list of numbers. Store the "
                "embedding as a Parquet list column, or as columns emb_0 .. emb_{d-1}."
            )
        return _EmbeddingSide(table, idc, label, split, quote(wanted), f"list column {wanted!r}")
    prefix = emb_col or "emb"
    numbered = sorted(
        ((int(m.group(1)), c) for c in table.columns
         if (m := re.fullmatch(re.escape(prefix) + r"_(\d+)", c))),
    )
    if emb_col is not None and not numbered:
        raise table.missing_column(emb_col, "--embedding-col",
                                   hint="Expected a list column or columns NAME_0 .. NAME_{d-1}.")
    if not numbered:
        raise InputError(
            f"{table.label}: no embeddings: no list column 'embedding' and no columns "
            f"emb_0 .. emb_{{d-1}}. Columns present: {', '.join(table.columns)}. "
            "Name the embedding column with --embedding-col."
        )
    idx = [i for i, _ in numbered]
    if idx != list(range(len(idx))):
        missing = sorted(set(range(max(idx) + 1)) - set(idx))
        raise InputError(
            f"{table.label}: embedding columns {prefix}_0 .. {prefix}_{max(idx)} are not "
            f"contiguous (missing {', '.join(f'{prefix}_{i}' for i in missing[:5])})."
        )
    for _, c in numbered:
        if not is_numeric_type(table.type_of(c)):
            raise InputError(f"{table.label}: embedding column {c!r} is "
                             f"{table.type_of(c)}, not numeric.")
    lst = "list_value(" + ", ".join(f"CAST({quote(c)} AS DOUBLE)" for _, c in numbered) + ")"
    return _EmbeddingSide(table, idc, label, split, lst,
                          f"columns {prefix}_0 .. {prefix}_{len(numbered) - 1}")


def _matrix(table: Any, column: str, ids: np.ndarray, where: str, metric: str) -> np.ndarray:
    """Arrow list column -> float32 (n, d); ragged, null, NaN, inf and zero rows are errors.

    float32 values stay float32 (no copy when the column is one chunk), and the checks run
    on whole-array minima, maxima and float32 norms; only when one of them fails are the
    rows examined one by one (:func:`_matrix_rows`) for the message."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column)
    chunks = [c for c in col.chunks if len(c)] or [col.combine_chunks()]
    n = sum(len(c) for c in chunks)
    if any(c.null_count for c in chunks):
        null_rows = np.flatnonzero(np.asarray(pc.is_null(col.combine_chunks())))
        raise InputError(f"{where}: {null_rows.size} item(s) have no embedding (ids "
                         f"{examples(ids[null_rows])}). Every item needs an embedding.")
    if not n:
        d = 0
    elif pa.types.is_fixed_size_list(chunks[0].type):
        d = chunks[0].type.list_size
    else:
        lengths = np.concatenate([np.asarray(pc.list_value_length(c)) for c in chunks])
        lo = int(lengths.min())
        if lo != int(lengths.max()):
            dims = np.unique(lengths)
            common = int(np.bincount(lengths).argmax())
            odd = np.flatnonzero(lengths != common)
            raise InputError(
                f"{where}: ragged embeddings: lengths {', '.join(map(str, dims[:5]))} "
                f"(most are {common}; ids {examples(ids[odd])} differ). All embeddings of a "
                "model must have the same dimension."
            )
        d = lo
    if d == 0:
        raise InputError(f"{where}: the embeddings are empty (dimension 0).")
    parts = [np.asarray(c.flatten().to_numpy(zero_copy_only=False)) for c in chunks]
    x = (parts[0] if len(parts) == 1 else np.concatenate(parts)).reshape(n, d)
    if x.dtype.kind not in "fiu":
        x = x.astype(np.float64)
    if x.dtype == np.float32 and n:
        # Fast path: one min and max decide NaN / inf / fill values for the whole matrix,
        # and float32 squared norms decide the norm checks except near their limits.
        lo, hi = float(x.min()), float(x.max())
        if np.isfinite(lo) and np.isfinite(hi) and max(-lo, hi) < FILL_VALUE:
            sq = np.einsum("ij,ij->i", x, x)
            doubtful = ~((sq >= _SAFE_SQ[0]) & (sq <= _SAFE_SQ[1]))
            if not doubtful.any() or not _norm_problem(x[doubtful], metric):
                return x
    return _matrix_rows(x, ids, where, metric)


#: float32 squared norms inside these bounds are far from MIN_NORM ** 2 and MAX_NORM ** 2
#: (float32 rounding of a sum of squares is far below a factor of 10): no exact check needed.
_SAFE_SQ = (1e-30, 1e35)


def _norm_problem(x: np.ndarray, metric: str) -> bool:
    """Whether some row of ``x`` fails a norm check of :func:`_matrix_rows` (exact float64
    norms)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    if metric == "cosine":
        return bool((~(x != 0).any(axis=1) | (norms < MIN_NORM)).any())
    return bool((norms > MAX_NORM).any())


def _matrix_rows(x: np.ndarray, ids: np.ndarray, where: str, metric: str) -> np.ndarray:
    """The checks of :func:`_matrix` row by row (messages name the rows): NaN / inf, fill
    values, values beyond float32, zero norms (cosine), norms that overflow (ip, l2)."""
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise InputError(
            f"{where}: {int(bad.sum())} embedding(s) contain NaN, inf or null values (ids "
            f"{examples(ids[bad])}). Fix or drop those items."
        )
    fill = (np.abs(x) >= FILL_VALUE).any(axis=1)
    if fill.any():
        raise InputError(
            f"{where}: {int(fill.sum())} embedding(s) hold a fill value for a missing number "
            f"(magnitude {FILL_TEXT} or more, such as float32's -3.4e38; ids "
            f"{examples(ids[fill])}). Fix or drop those items."
        )
    with np.errstate(over="ignore"):  # values beyond float32 become inf: reported below
        x32 = np.ascontiguousarray(x, dtype=np.float32)  # search runs in float32 (BLAS sgemm)
    huge = ~np.isfinite(x32).all(axis=1)
    if huge.any():
        raise InputError(
            f"{where}: {int(huge.sum())} embedding(s) hold values beyond the float32 range "
            f"(ids {examples(ids[huge])}). Rescale the embeddings."
        )
    norms = np.sqrt(np.einsum("ij,ij->i", x32, x32, dtype=np.float64))
    if metric == "cosine":
        zero = ~(x32 != 0).any(axis=1) | (norms < MIN_NORM)
        if zero.any():
            raise InputError(
                f"{where}: {int(zero.sum())} embedding(s) are all zeros, or too close to zero "
                f"to normalise (ids {examples(ids[zero])}); cosine similarity is undefined for "
                "them. Drop them, or use --metric ip or l2."
            )
    elif (norms > MAX_NORM).any():
        big = norms > MAX_NORM
        raise InputError(
            f"{where}: {int(big.sum())} embedding(s) have norms above {MAX_NORM:g} (ids "
            f"{examples(ids[big])}); their {metric} scores overflow float32. Rescale the "
            "embeddings, or use --metric cosine."
        )
    return x32


#: Boolean labels are the classes 1 and 0, written as booleans or as text (as in ``flips``).
_BOOLEAN_TEXT = {"true": "1", "false": "0"}


def _texts(values: Any, booleans: bool = False) -> np.ndarray:
    """Labels and ids as text; integral floats lose their ``.0`` (as in ``flips``); with
    ``booleans`` (labels), ``True`` and the text ``true`` (any case) are ``1``, false ``0``."""
    out = []
    for v in values:
        if v is None:
            out.append(None)
        elif (isinstance(v, bool) and booleans) or (isinstance(v, float) and v.is_integer()):
            out.append(str(int(v)))
        elif booleans and isinstance(v, str) and v.lower() in _BOOLEAN_TEXT:
            out.append(_BOOLEAN_TEXT[v.lower()])
        else:
            out.append(str(v))
    return np.array(out, dtype=object)


def audit_compat(
    old: Any,
    new: Any,
    *later: Any,
    id_col: str | None = None,
    label_col: str | None = None,
    embedding_col: str | None = None,
    split_col: str | None = None,
    metric: str = "cosine",
    criterion: str | None = None,
    top: int = 10,
    confidence: float = 0.95,
    allow_unmatched: bool = False,
    qrels: str | None = None,
    gates: Mapping[str, float] | Sequence[GateSpec] | None = None,
    block_size: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    memory_limit: str | None = None,
    sample_queries: int | None = None,
    seed: int | None = None,
    engine: str = "duckdb",
    spark_remote: str | None = None,
    spark_conf: Mapping[str, str] | None = None,
    verbose: bool = False,
) -> CompatResult:
    """Audit an embedding-model update for backward compatibility of retrieval.

    Parameters
    ----------
    old, new : path, pandas.DataFrame or pyarrow.Table
        Per item: id, identity label, embedding (a list column or ``emb_0 .. emb_{d-1}``),
        and optionally ``split`` (``query`` / ``gallery``). Joined by id.
    *later : path, pandas.DataFrame or pyarrow.Table
        Further versions, oldest first (``audit_compat(v1, v2, v3)``): the n x n matrix of
        query version x gallery version and every later-vs-earlier pair
        (:class:`~graceful_audit.versions.Versions`, ``result.versions``). n versions cost
        n^2 searches.
    metric : {"cosine", "ip", "l2"}
        Similarity. Cosine L2-normalises both sides.
    criterion : {"top1", "map"}, or with ``qrels`` {"ndcg10", "map", "recall10", "recall100", \
"mrr10"}
        The M of the compatibility criterion and of the update gain; default ``top1``, with
        ``qrels`` ``ndcg10``.
    top : int
        How many breaking queries to list (worst first: deepest first correct match in
        new/old, ties by id).
    confidence : float
        Level of the Wilson intervals of every top-k, of the interval of the criterion's
        margin, and of its significance (``p < 1 - confidence``).
    allow_unmatched : bool
        Audit the ids present in both files; with ``qrels``, also drop (and count) the
        judgments naming ids that are not audited queries / gallery items.
    qrels : path, optional
        Relevance judgments (BEIR TSV or TREC, :mod:`graceful_audit.qrels`) instead of
        identity labels; needs the split column, and no ``label_col``.
    progress : callable, optional
        ``progress(case, done, total)`` after each block of queries (in memory) or
        ``progress("gallery shards", rows, total)`` after each shard (streamed).
    memory_limit : str, optional
        Memory for the whole audit (``--memory-limit``, as for ``flips``; default 80% of
        the RAM). When the embeddings would not fit, the gallery is streamed in shards
        (each file read in its own row order, :class:`_Stream`), with the same results.
    sample_queries, seed : int, optional
        Audit a uniform sample of ``sample_queries`` queries (all of them when there are no
        more), drawn with ``seed`` (default 0); the report says so.
    engine : {"duckdb", "spark"}
        ``spark``: read and join on Spark (Spark Connect: ``spark_remote``, else
        ``SPARK_REMOTE``, else a local session; ``spark_conf`` settings; ``verbose`` shows
        Spark's warnings) and search the gallery in Spark tasks; only per-query and
        per-positive partial results reach this process (:mod:`.compat_spark`). The
        result equals the default engine's except ``engine``.

    Returns
    -------
    CompatResult
    """
    from .retrieval import METRICS

    if metric not in METRICS:
        raise UsageError(f"--metric: {metric!r} is not one of {', '.join(METRICS)}.")
    from .qrels import QRELS_CRITERIA

    if qrels is not None:
        criterion = "ndcg10" if criterion is None else criterion
        if criterion not in QRELS_CRITERIA:
            raise UsageError(
                f"--criterion: {criterion!r} cannot be used with --qrels (top-1 identity "
                f"accuracy needs labels); use one of {', '.join(QRELS_CRITERIA)}.")
        if label_col is not None:
            raise UsageError("--label-col cannot be used with --qrels: the relevance "
                             "judgments replace the identity labels. Drop one of them.")
        if not str(qrels).strip():
            raise UsageError("--qrels: the path is empty.")
    else:
        criterion = "top1" if criterion is None else criterion
        if criterion not in CRITERIA:
            extra = (" (nDCG, recall and MRR need relevance judgments: --qrels FILE)"
                     if criterion in QRELS_CRITERIA else "")
            raise UsageError(f"--criterion: {criterion!r} is not one of top1, map{extra}.")
    check_top(top)
    _check_sample(sample_queries, seed)
    check_engine_options(engine, spark_remote, spark_conf, memory_limit)
    if isinstance(confidence, bool) or not 0.0 < confidence < 1.0:
        raise UsageError(f"--confidence: {confidence!r} must be strictly between 0 and 1.")
    check_column_names({"--id-col": id_col, "--label-col": label_col,
                        "--embedding-col": embedding_col, "--split-col": split_col})
    specs = gate_specs(gates)
    for spec in specs:
        check_threshold(spec.name, spec.threshold, COMPAT_GATES, spec.source)

    judgments = judged = None
    if qrels is not None:
        from .qrels import read_qrels

        judgments = read_qrels(qrels)
    sources = (old, new, *later)
    if engine == "spark":
        from .compat_spark import align_spark

        al = align_spark(sources, id_col, label_col, embedding_col, split_col, metric,
                         allow_unmatched, judgments is not None, sample_queries, seed,
                         spark_remote, spark_conf, verbose)
    else:
        al = _align(sources, id_col, label_col, embedding_col, split_col, metric,
                    allow_unmatched, judgments is not None, memory_limit, sample_queries, seed)
    try:
        if judgments is not None:
            from .qrels import match_qrels

            # Matched against every query (a judgment of a query left out of the sample is
            # not "unmatched"), then only the sampled queries' judgments are kept.
            judged = match_qrels(judgments, al.ids[al.all_queries], al.ids[al.g_idx],
                                 allow_unmatched=allow_unmatched)
            if al.pick is not None:
                judged = judged.take(al.pick)
        run = _Run(al, metric, criterion, top, confidence, block_size, progress, judgments,
                   judged)
        n = len(sources)
        if n == 2:
            pairs = {name: tuple(0 if m == "old" else 1 for m in name.split("/"))
                     for name in CASES}
            run.prepare(list(pairs.values()))
            cases: dict[str, CaseMetrics] = {}
            raw: dict[str, Any] = {}
            for name, (q, g) in pairs.items():
                cases[name], raw[name] = run.case(name, q, g)
            result = run.pair(1, 0, cases, raw)
        else:
            from .versions import audit_versions

            run.prepare([(q, g) for q in range(n) for g in range(n)])
            result = audit_versions(run)
    finally:
        al.close()
    result = dataclasses.replace(result, engine=engine)
    return result.with_gates(evaluate_gates(result, specs, COMPAT_GATES))


@dataclass(frozen=True)
class _File:
    """One version's file as the streamed gallery reads it: in its own row order."""

    sql: str  # ``SELECT id, e FROM ...``: the file's rows in the order it stores them
    where: str  # the file, for messages
    #: Per row of the file (in that order): its aligned position, -1 when it is not
    #: audited (an unmatched id).
    pos: np.ndarray


def _rows_of(emb: Any, rows: np.ndarray) -> Any:
    """The list column ``emb`` at ``rows``: gathered by numpy when every row is a list of
    the same length without nulls (much faster than Arrow's ``take`` of lists), by Arrow
    otherwise (the validation then reports the odd rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(emb)
    if n and emb.null_count == 0:
        lengths = pc.list_value_length(emb)
        d = int(pc.min(lengths).as_py() or 0)
        if d and d == pc.max(lengths).as_py():
            values = emb.flatten()
            if values.null_count == 0 and len(values) == n * d:
                x = values.to_numpy(zero_copy_only=False).reshape(n, d)[rows]
                return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), d)
    return emb.take(pa.array(rows))


@dataclass(frozen=True)
class _Stream:
    """A gallery read in shards (``--memory-limit`` too small for every embedding): the
    open engine and every version's file, each read in its own row order (no join and no
    sort of embeddings), and the queries' embeddings, read once.

    The aligned order stays the in-memory audit's (items ordered by id): each file row
    knows its aligned position (:attr:`_File.pos`, from the ids alone), so every shard of
    a file goes to the kernel with the gallery index of each of its rows."""

    engine: Any
    shard_rows: int
    block_bytes: int
    joined: str  # the files, for messages
    files: tuple[_File, ...]
    ids: _Ids
    metric: str
    #: Each version's dimension, from the first rows read; later rows must agree.
    dims: dict[int, int] = field(default_factory=dict)
    #: The (sampled) queries' embeddings of each version, filled by :meth:`read_queries`.
    queries: list[np.ndarray] = field(default_factory=list)

    def batches(self, k: int, slot: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Version ``k``'s file in shards, in its row order: per shard, ``slot[aligned
        position]`` of its rows whose slot is >= 0, and their validated float32 embeddings
        (shards without such rows are skipped)."""
        import pyarrow as pa

        f = self.files[k]
        r0 = 0
        for batch in self.engine.con.sql(f.sql).to_arrow_reader(self.shard_rows):
            n = batch.num_rows
            pos = f.pos[r0 : r0 + n].astype(np.int64)
            r0 += n
            rows = np.flatnonzero(pos >= 0)
            where = rows[slot[pos[rows]] >= 0]
            if not where.size:
                continue
            at = pos[where]
            ids, emb = batch.column(0), batch.column(1)
            if where.size < n:
                ids, emb = ids.take(pa.array(where)), _rows_of(emb, where)
            self._check_order(ids, at)
            sub = pa.Table.from_arrays([emb], ["e"])
            x = _matrix(sub, "e", self.ids.view(at), f.where, self.metric)
            if self.dims.setdefault(k, x.shape[1]) != x.shape[1]:
                raise InputError(
                    f"{f.where}: ragged embeddings: dimension {x.shape[1]} for ids "
                    f"{examples(self.ids[at])} but {self.dims[k]} for earlier ids. All "
                    "embeddings of a model must have the same dimension.")
            yield slot[at], x
        if r0 != f.pos.size:
            raise AssertionError(f"{f.where}: read {r0} rows, expected {f.pos.size}")

    def _check_order(self, ids: Any, at: np.ndarray) -> None:
        """The ids of a shard's rows are those its positions were computed from: the file
        was read in the same row order twice (a bug otherwise, never a wrong result)."""
        import pyarrow as pa

        want = self.ids.arr.take(pa.array(at))
        if not ids.cast(want.type).equals(want):
            raise AssertionError("compat: a file's rows came back in another order")

    def read_queries(self, all_queries: np.ndarray, q_idx: np.ndarray) -> None:
        """One pass per file: validate every query's embeddings (sampled or not, as in
        memory) and keep those of ``q_idx`` (ascending positions, a subset of
        ``all_queries``), in that order."""
        n = len(self.ids)
        slot = np.full(n, -1, dtype=np.int64)
        slot[all_queries] = np.arange(all_queries.size)
        keep = np.full(all_queries.size, -1, dtype=np.int64)
        keep[np.searchsorted(all_queries, q_idx)] = np.arange(q_idx.size)
        for k in range(len(self.files)):
            out: np.ndarray | None = None
            for at, x in self.batches(k, slot):
                mine = keep[at]
                sel = mine >= 0
                if out is None:
                    out = np.zeros((q_idx.size, x.shape[1]), dtype=np.float32)
                out[mine[sel]] = x[sel]
            assert out is not None  # there is a query (checked by _items)
            self.queries.append(out)

    def gallery(self, k: int, g_idx: np.ndarray) -> Callable[[], Iterator[
            tuple[np.ndarray, np.ndarray]]]:
        """Version ``k``'s gallery for
        :func:`~graceful_audit.retrieval.evaluate_streamed_galleries`: the shards of its
        file with the gallery index of each row (items ``g_idx``)."""
        slot = np.full(len(self.ids), -1, dtype=np.int64)
        slot[g_idx] = np.arange(g_idx.size)
        return lambda: self.batches(k, slot)


@dataclass(frozen=True)
class _Aligned:
    """Every version's embeddings joined by id: one row per item present in all files."""

    roles: tuple[str, ...]  # OLD, NEW; or V1 .. Vn
    displays: tuple[str, ...]
    rows: tuple[int, ...]
    matched: int
    unmatched: tuple[int, ...]  # per file: its ids missing from another file
    ids: _Ids
    labels: np.ndarray  # the distinct labels (text, sorted): item i's is labels[codes[i]]
    codes: np.ndarray
    dims: tuple[int, ...]  # each version's embedding dimension
    #: Every item's embeddings per version; None when the gallery is streamed (``stream``).
    emb: tuple[np.ndarray, ...] | None
    mode: str
    q_idx: np.ndarray  # the audited queries (a sample with --sample-queries)
    g_idx: np.ndarray
    exclude: np.ndarray | None
    #: Every query before ``--sample-queries``; ``pick``: the positions in it of ``q_idx``.
    all_queries: np.ndarray
    pick: np.ndarray | None = None
    sample: QuerySample | None = None
    stream: _Stream | None = None
    #: ``--engine spark``: the gallery stays on the cluster (:mod:`.compat_spark`).
    spark: Any = None

    def close(self) -> None:
        """Close the engine a streamed gallery reads from (nothing in memory mode)."""
        if self.stream is not None:
            self.stream.engine.close()
        if self.spark is not None:
            self.spark.close()


def _roles(n: int) -> tuple[str, ...]:
    return ("OLD", "NEW") if n == 2 else tuple(f"V{k + 1}" for k in range(n))


def _align(sources: Sequence[Any], id_col: str | None, label_col: str | None,
           embedding_col: str | None, split_col: str | None, metric: str,
           allow_unmatched: bool, judged: bool = False, memory_limit: str | None = None,
           sample_queries: int | None = None, seed: int | None = None) -> _Aligned:
    """read -> join by id -> labels, split and embedding matrices, for any number of files.

    ``judged``: relevance judgments replace the identity labels (``--qrels``), so the split
    column is required and labels are not read.  ``sample_queries``/``seed``: keep a uniform
    sample of the queries (:func:`_sample`).  When the embeddings would not fit in
    ``memory_limit`` (:func:`_plan_shards`) only the queries' embeddings are read here and
    the engine stays open for the gallery's shards (``stream``; :meth:`_Aligned.close`)."""
    roles = _roles(len(sources))
    id_names = [id_col] if id_col else ["id", *ID_SYNONYMS]
    engine = DuckDBEngine(memory_limit)
    shard_rows: int | None = None
    try:
        tables = [engine.open(src, role, text_columns=id_names)
                  for src, role in zip(sources, roles, strict=True)]
        sides = [_resolve(t, id_col, label_col, embedding_col, split_col) for t in tables]
        for s in sides:
            check_ids(engine, s.table, s.id)
        sides, joined = _labelled_sides(tables, sides, judged, label_col, split_col)
        with engine.errors(f"while joining {joined}"):
            matched, unmatched = _join_counts(engine.con, sides, allow_unmatched)
            shard_rows = _plan_shards(engine.con, sides, matched, memory_limit)
            data = _join(engine.con, sides, embeddings=shard_rows is None)
        ids, labels, mode, codes, all_queries, g_idx, exclude = _items(data, sides, judged)
    except BaseException:
        shard_rows = None
        raise
    finally:
        if shard_rows is None:
            engine.close()

    pick, sample = _sample(all_queries.size, sample_queries, seed)
    q_idx = all_queries
    if pick is not None:
        q_idx = all_queries[pick]
        exclude = None if exclude is None else exclude[pick]
    emb: tuple[np.ndarray, ...] | None = None
    stream = None
    if shard_rows is not None:
        del data  # the ids are kept (as Arrow), not the joined labels and split
    if shard_rows is None:
        emb = tuple(_matrix(data, f"e_{k}", ids, t.label, metric) for k, t in enumerate(tables))
        dims = tuple(int(e.shape[1]) for e in emb)
    else:
        try:
            with engine.errors(f"while reading {joined}"):
                stream = _stream(engine, sides, tables, joined, ids, metric, shard_rows,
                                 memory_limit)
                stream.read_queries(all_queries, q_idx)
        except BaseException:
            engine.close()
            raise
        dims = tuple(stream.dims[k] for k in range(len(tables)))
    return _Aligned(roles, tuple(_display(s) for s in sources), tuple(t.rows for t in tables),
                    matched, tuple(unmatched), ids, labels, codes, dims, emb, mode, q_idx,
                    g_idx, exclude, all_queries, pick, sample, stream)


def _labelled_sides(tables: list[Any], sides: list[_EmbeddingSide], judged: bool,
                    label_col: str | None, split_col: str | None) -> tuple[
                        list[_EmbeddingSide], str]:
    """The sides as the audit reads them (no labels with ``--qrels``, which needs a split
    column; else some file needs the label column) and the files' names for messages."""
    where = (f"OLD file {tables[0].display} or NEW file {tables[1].display}"
             if len(tables) == 2 else
             "any of the files (" + ", ".join(t.label for t in tables) + ")")
    if judged:
        sides = [dataclasses.replace(s, label=None) for s in sides]
        if all(s.split is None for s in sides):
            raise InputError(
                f"--qrels needs a split column {split_col or 'split'!r} ('query' / "
                f"'gallery', in {where}) to tell queries from corpus items. Add it, or "
                "name it with --split-col.")
    elif all(s.label is None for s in sides):
        raise InputError(f"no identity label column {label_col or 'label'!r} in {where}. "
                         "Name it with --label-col.")
    joined = (f"{tables[0].display} and {tables[1].display}" if len(tables) == 2 else
              f"the {len(tables)} files")
    return sides, joined


def _stream(engine: Any, sides: list[_EmbeddingSide], tables: list[Any], joined: str,
            ids: _Ids, metric: str, shard_rows: int,
            memory_limit: str | None) -> _Stream:
    """The :class:`_Stream` reading each file in shards of about ``shard_rows`` rows, in its
    own row order (one block of scores gets ``_BLOCK_SHARE`` of the memory budget)."""
    exprs = _id_exprs(sides)
    files = tuple(
        _File(f"SELECT {e} AS id, {s.embedding_sql} AS e FROM {quote(s.table.view)}", t.label,
              _positions(engine, e, s, ids))
        for e, s, t in zip(exprs, sides, tables, strict=True))
    block_bytes = max(1 << 20, int(_BLOCK_SHARE * memory_budget(memory_limit)))
    return _Stream(engine, shard_rows, block_bytes, joined, files, ids, metric)


def _positions(engine: Any, expr: str, side: _EmbeddingSide, ids: _Ids) -> np.ndarray:
    """Per row of ``side``'s file, in the order the file stores them (the order a plain
    scan returns), the aligned position of its id (its index in ``ids``), -1 when it is
    not audited. Computed from the ids alone: DuckDB joins the file's ids, numbered in scan
    order, with the aligned ids (a hash join of two integer-tagged id columns; nothing is
    sorted)."""
    import pyarrow as pa

    con = engine.con
    file_ids = con.sql(f"SELECT {expr} AS id FROM {quote(side.table.view)}").to_arrow_table()
    n, m = file_ids.num_rows, len(ids)
    kind = np.int32 if max(n, m) < 2**31 - 1 else np.int64
    rows = pa.table({"id": file_ids.column(0), "rn": pa.array(np.arange(n, dtype=kind))})
    del file_ids
    aligned = pa.table({"id": ids.arr, "pos": pa.array(np.arange(m, dtype=kind))})
    pos = np.full(n, -1, dtype=kind)
    names = ("gaudit_rows", "gaudit_aligned")
    con.register(names[0], rows)
    con.register(names[1], aligned)
    try:
        reader = con.sql(f"SELECT r.rn, a.pos FROM {names[0]} AS r JOIN {names[1]} AS a "
                         "ON r.id = a.id").to_arrow_reader(1 << 20)
        for batch in reader:
            rn = batch.column(0).to_numpy(zero_copy_only=False)
            pos[rn] = batch.column(1).to_numpy(zero_copy_only=False)
    finally:
        for name in names:
            con.unregister(name)
    return pos


@dataclass(frozen=True)
class _Run:
    """The aligned data and the options: computes one case, or one pair's audit."""

    al: _Aligned
    metric: str
    criterion: str
    top: int
    confidence: float
    block_size: int | None
    progress: Callable[[str, int, int], None] | None
    #: ``--qrels``: the judgments as read, and matched to the audited queries / gallery.
    judgments: Any = None
    judged: Any = None
    #: ``(q, g) -> {metric: per-query values}`` of the relevance metrics, filled by case().
    per_query: dict[tuple[int, int], dict[str, np.ndarray]] = field(default_factory=dict)
    #: ``(q, g) -> CaseResult`` computed by :meth:`prepare` (streamed gallery only).
    streamed: dict[tuple[int, int], Any] = field(default_factory=dict)
    #: In memory: version ``g``'s gallery as the kernel reads it (normalised once for the
    #: cases that search it), and how many of the planned cases still will.
    galleries: dict[int, np.ndarray] = field(default_factory=dict)
    gallery_uses: dict[int, int] = field(default_factory=dict)

    def prepare(self, cells: Sequence[tuple[int, int]]) -> None:
        """With a streamed gallery, compute every case ``(query version, gallery version)``
        of ``cells`` at once (two passes over the shards in all), then close the engine; in
        memory, nothing (:meth:`case` computes each case when asked)."""
        al, st, judged = self.al, self.al.stream, self.judged
        if al.spark is not None:  # --engine spark: every case in Spark tasks
            self.streamed.update(al.spark.evaluate(self, cells))
            return
        if st is None:
            for q, g in dict.fromkeys(cells):
                if al.dims[q] == al.dims[g]:
                    self.gallery_uses[g] = self.gallery_uses.get(g, 0) + 1
            return
        from .retrieval import StreamCase, evaluate_streamed_galleries

        todo = [(q, g) for q, g in dict.fromkeys(cells) if al.dims[q] == al.dims[g]]
        if judged is None:
            specs = [StreamCase(st.queries[q], al.codes[al.q_idx], al.exclude, str(g))
                     for q, g in todo]
        else:
            positives = (judged.indptr, judged.indices)
            specs = [StreamCase(st.queries[q], None, None, str(g), positives) for q, g in todo]
        n_gallery = int(al.g_idx.size)
        galleries = {str(g): st.gallery(g, al.g_idx) for g in dict.fromkeys(g for _, g in todo)}
        # Every gallery version is read twice (positives' scores, then counts).
        progress, total = self.progress, 2 * len(galleries) * n_gallery
        cb = None if progress is None else (lambda done: progress("gallery shards", done,
                                                                  total))
        try:
            with st.engine.errors(f"while reading {st.joined}"):
                results = evaluate_streamed_galleries(
                    specs, al.codes[al.g_idx] if judged is None else None, galleries,
                    n_gallery=n_gallery, metric=self.metric, ks=KS,
                    block_bytes=st.block_bytes, progress=cb)
        finally:
            al.close()
        self.streamed.update(zip(todo, results, strict=True))

    def case(self, name: str, q: int, g: int) -> tuple[CaseMetrics, Any]:
        """Version ``q``'s queries searching version ``g``'s gallery: the case's metrics and
        its per-query :class:`~graceful_audit.retrieval.CaseResult` (None when the
        dimensions differ)."""
        from .qrels import RELEVANCE_KEYS, per_query_metrics, summary
        from .retrieval import evaluate_case, prepare_queries

        al, judged = self.al, self.judged
        dq, dg = al.dims[q], al.dims[g]
        if dq != dg:
            return CaseMetrics(name, False, reason=f"dimension {dq} vs {dg}: cannot compare",
                               relevance={} if judged is None else
                               dict.fromkeys(RELEVANCE_KEYS)), None
        r = self.streamed.get((q, g))
        if r is None:
            if al.emb is None:  # pragma: no cover - prepare() computed every streamed case
                raise AssertionError(f"compat: case {name} was not computed")
            eq, eg = prepare_queries(al.emb[q][al.q_idx], self.metric), self._gallery(g)
            progress, total = self.progress, al.q_idx.size
            cb = None if progress is None else (lambda done: progress(name, done, total))
            if judged is None:
                r = evaluate_case(eq, al.codes[al.q_idx], eg, al.codes[al.g_idx],
                                  metric=self.metric, ks=KS, exclude_self=al.exclude,
                                  block_size=self.block_size, progress=cb, prepared=True)
            else:
                r = evaluate_case(eq, None, eg, None, positives=(judged.indptr, judged.indices),
                                  metric=self.metric, ks=KS, block_size=self.block_size,
                                  progress=cb, prepared=True)
        evaluated = r.first_positive_rank > 0
        intervals = {k: wilson_interval(int(np.count_nonzero(evaluated & (r.first_positive_rank
                                                                          <= k))),
                                        r.n_evaluated, confidence=self.confidence) for k in KS}
        relevance: dict[str, float | None] = {}
        if judged is not None:
            assert r.positive_rank is not None
            values = per_query_metrics(r.positive_rank, judged.indptr, judged.grades,
                                       r.average_precision)
            self.per_query[(q, g)] = values
            means = summary(values, evaluated)
            relevance = {k: means[k] for k in RELEVANCE_KEYS}
        return CaseMetrics(name, True, dict(r.topk), r.mean_average_precision, r.n_evaluated,
                           intervals=intervals, relevance=relevance), r

    def _gallery(self, g: int) -> np.ndarray:
        """Version ``g``'s gallery prepared for the kernel (:func:`~graceful_audit.retrieval.
        prepare_gallery`: normalised for cosine), once for all the cases :meth:`prepare`
        planned on it, then released; no copy when the gallery items are consecutive rows
        (every item, or the items after the queries) and the metric is ``ip``."""
        from .retrieval import prepare_gallery

        al = self.al
        x = self.galleries.get(g)
        if x is None:
            emb, at = al.emb[g], al.g_idx
            if at.size and at[-1] - at[0] + 1 == at.size and np.all(at[1:] > at[:-1]):
                emb = emb[at[0] : at[-1] + 1]  # consecutive rows: a view, no copy
            else:
                emb = emb[at]
            x = prepare_gallery(emb, self.metric)
        left = self.gallery_uses.get(g, 1) - 1
        self.gallery_uses[g] = left
        if left > 0:
            self.galleries[g] = x
        else:
            self.galleries.pop(g, None)
        return x

    def pair(self, new: int, old: int, cases: dict[str, CaseMetrics],
             raw: Mapping[str, Any]) -> CompatResult:
        """Version ``new`` against version ``old`` as a two-version audit, from its four
        cases (``old/old``, ``new/new``, ``new/old``, ``old/new``); no gates."""
        al, criterion = self.al, self.criterion
        without_positive = raw["old/old"].n_without_positive
        cross, base, own = (cases[n].metric(criterion) for n in ("new/old", "old/old", "new/new"))
        compatible = bool(cases["new/old"].available and cross is not None and base is not None
                          and cross > base)
        gain = None
        if cross is not None and base is not None and own is not None and own != base:
            gain = (cross - base) / (own - base)
        flips: int | None = None
        breaking: tuple[BreakingQuery, ...] = ()
        test: CriterionTest | None = None
        if raw.get("new/old") is not None:
            oo, no = raw["old/old"], raw["new/old"]
            per_query = None
            if self.judged is not None and criterion != "top1":
                per_query = (self.per_query[(old, old)][criterion],
                             self.per_query[(new, old)][criterion])
            test = criterion_test(oo, no, criterion, confidence=self.confidence,
                                  per_query=per_query)
            broke = np.flatnonzero(oo.top1_correct & ~no.top1_correct)
            flips = int(broke.size)
            q_ids, q_labels = al.ids[al.q_idx], al.labels[al.codes[al.q_idx]]
            g_ids = al.ids.view(al.g_idx)
            if self.judgments is not None:
                q_labels = np.full(al.q_idx.size, "", dtype=object)
                top1_labels = _grades_of_top1(self.judgments, q_ids, g_ids, no.top1_index)
            else:
                top1_labels = al.labels[al.codes[al.g_idx[no.top1_index]]]
            order = sorted(broke, key=lambda i: (-_rank_key(no.first_positive_rank[i]),
                                                 natural_key(q_ids[i])))
            breaking = tuple(
                BreakingQuery(
                    id=str(q_ids[i]), label=str(q_labels[i]),
                    new_old_rank=int(no.first_positive_rank[i]),
                    new_old_top1_id=str(g_ids[no.top1_index[i]]),
                    new_old_top1_label=str(top1_labels[i]),
                )
                for i in order[:self.top]
            )
        inputs = CompatInputs(
            al.displays[old], al.displays[new], al.rows[old], al.rows[new], al.matched,
            al.unmatched[old], al.unmatched[new], al.dims[old], al.dims[new],
            al.mode, int(al.q_idx.size), int(al.g_idx.size),
            None if self.judged is None else QrelsInfo(
                self.judgments.path, self.judgments.format, self.judged.judgments,
                self.judged.relevant, self.judged.unmatched, self.judged.wrong_side),
            al.sample,
        )
        return CompatResult(inputs, self.metric, criterion, cases, compatible, gain, flips,
                            int(al.q_idx.size), without_positive, breaking, self.confidence,
                            test)


def _grades_of_top1(judgments: Any, q_ids: np.ndarray, g_ids: _Ids,
                    top1: np.ndarray) -> np.ndarray:
    """Per query: the judged grade of its top-1 gallery item as text, or ``"unjudged"``."""
    grade = {(str(a), str(b)): int(c) for a, b, c in
             zip(judgments.query_ids, judgments.doc_ids, judgments.grades, strict=True)}
    tops = g_ids[np.maximum(top1, 0)] if top1.size else np.zeros(0, dtype=object)
    return np.array([
        "unjudged" if t < 0 else str(grade.get((str(q), str(g)), "unjudged"))
        for q, t, g in zip(q_ids, top1.tolist(), tops, strict=True)], dtype=object)


#: Test knob: gallery rows per shard, forcing the streamed path (None: decided by memory).
_SHARD_ROWS: int | None = None
#: The in-memory path peaks at about this many times the raw float32 embeddings.
_IN_MEMORY_FACTOR = 3.5
#: Shares of the memory budget when streaming: DuckDB (the join and sort of the ids,
#: labels and split; then scans), one shard (Arrow, float32, validation and prepared copies
#: of one model's rows), one block of scores. The rest is for the per-item arrays (ids as
#: Arrow, label codes, positions: a few int64 per item) and the queries.
_DUCKDB_SHARE, _SHARD_SHARE, _BLOCK_SHARE = 0.4, 0.1, 0.05


def memory_budget(memory_limit: str | None) -> int:
    """Bytes of ``--memory-limit`` (checked as for ``flips``); default 80% of the RAM."""
    from .engine import _UNITS, MEMORY_SIZE, check_memory_limit

    total = _physical_memory()
    if memory_limit is None:
        return int(0.8 * total)
    check_memory_limit(memory_limit)
    m = MEMORY_SIZE.fullmatch(memory_limit)
    assert m is not None
    number, unit = float(m.group(1)), m.group(2).upper()
    if unit == "%":
        return int(total * number / 100)
    return int(number * _UNITS[unit])


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 * 2**30


def _embedding_dims(con: Any, sides: list[_EmbeddingSide]) -> int:
    """Sum of every model's embedding dimension, from the first row of each file."""
    total = 0
    for s in sides:
        rows = con.sql(f"SELECT len({s.embedding_sql}) FROM {quote(s.table.view)} "
                       f"WHERE {s.embedding_sql} IS NOT NULL LIMIT 1").fetchall()
        total += int(rows[0][0] or 0) if rows else 0
    return total


def _plan_shards(con: Any, sides: list[_EmbeddingSide], matched: int,
                 memory_limit: str | None) -> int | None:
    """Rows per shard when the embeddings would not fit in ``memory_limit``, else None
    (everything in memory, as before); sets DuckDB's share of the budget when streaming."""
    budget = memory_budget(memory_limit)
    if _SHARD_ROWS is None:
        row_bytes = 4 * max(1, _embedding_dims(con, sides))
        if matched * row_bytes * _IN_MEMORY_FACTOR <= budget:
            return None
        rows = max(1024, int(_SHARD_SHARE * budget) // (4 * row_bytes))
    else:
        rows = _SHARD_ROWS
    con.execute(f"SET memory_limit = '{max(64, int(_DUCKDB_SHARE * budget / 1e6))}MB'")
    return rows


class _Ids:
    """The aligned items' ids, held as one Arrow array (not one Python string per item) and
    turned into text (:func:`_texts`) only for the items asked for: ``ids[rows]`` (positions
    or a mask) is an object array of text, ``ids.view(rows)`` a lazy selection."""

    def __init__(self, arr: Any, rows: np.ndarray | None = None) -> None:
        self.arr = arr
        self.rows = rows

    def __len__(self) -> int:
        return len(self.arr) if self.rows is None else int(self.rows.size)

    def view(self, rows: np.ndarray) -> _Ids:
        rows = np.asarray(rows, dtype=np.int64)
        return _Ids(self.arr, rows if self.rows is None else self.rows[rows])

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int | np.integer):
            at = int(key) if self.rows is None else int(self.rows[key])
            return _texts([self.arr[at].as_py()])[0]
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        at = key.astype(np.int64) if self.rows is None else self.rows[key]
        at = np.where(at < 0, at + len(self.arr), at)  # numpy's negative positions
        return _texts(self.arr.take(at).to_pylist())


def _encoded(column: Any, normal: Callable[[list[Any]], np.ndarray]) -> tuple[
        np.ndarray, np.ndarray]:
    """An Arrow column as codes (``int64``, -1 for null) into its distinct values as
    ``normal`` writes them (object array, sorted): ``normal`` sees each distinct raw value
    once, not every row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_null(arr.type):
        return np.full(len(arr), -1, dtype=np.int64), np.zeros(0, dtype=object)
    enc = pc.dictionary_encode(arr)
    if isinstance(enc, pa.ChunkedArray):  # pragma: no cover - combined above
        enc = enc.combine_chunks()
    names, inverse = np.unique(normal(enc.dictionary.to_pylist()), return_inverse=True)
    idx = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False),
                     dtype=np.int64)
    codes = np.where(idx >= 0, inverse.reshape(-1)[np.maximum(idx, 0)], -1)
    return codes, names.astype(object)


def _merge_names(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[np.ndarray],
                                                                       np.ndarray]:
    """Codes of several columns into one set of names: each column's codes re-numbered into
    the sorted union of the names (-1 stays -1)."""
    every = np.concatenate([names for _, names in parts]) if parts else np.zeros(0, object)
    union, inverse = np.unique(every, return_inverse=True)
    out, at = [], 0
    for codes, names in parts:
        remap = inverse.reshape(-1)[at : at + names.size]
        out.append(np.where(codes >= 0, remap[np.maximum(codes, 0)] if names.size else -1, -1))
        at += names.size
    return out, union.astype(object)


def _items(data: Any, sides: list[_EmbeddingSide], judged: bool) -> tuple[
        _Ids, np.ndarray, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Ids, label names, mode, label codes, query and gallery positions and the excluded
    item of each query (leave-one-out) of the joined items; with ``judged`` (``--qrels``) no
    labels are read. Item ``i``'s label is ``names[codes[i]]``; nothing here holds a Python
    object per item."""
    ids = _Ids(data.column("id").combine_chunks())
    n = len(ids)
    if judged:
        codes, names = np.zeros(n, dtype=np.int64), np.array(["0"], dtype=object)
    else:
        codes, names = _labels(data, ids, sides)
    is_query, mode = _split(data, ids, sides)
    exclude = None
    if mode == "split":
        q_idx, g_idx = np.flatnonzero(is_query), np.flatnonzero(~is_query)
        if q_idx.size == 0 or g_idx.size == 0:
            raise InputError(
                f"the split column has {q_idx.size} query and {g_idx.size} gallery items; "
                "both are needed (or drop the column for leave-one-out)."
            )
    else:
        q_idx = g_idx = np.arange(n)
        exclude = np.arange(n, dtype=np.int64)
    return ids, names, mode, codes, q_idx, g_idx, exclude


def _check_sample(n: Any, seed: Any) -> None:
    """``--sample-queries`` must be a whole number >= 1 and ``--seed`` one >= 0, given only
    with ``--sample-queries`` (it would be ignored otherwise)."""
    def whole(x: Any) -> bool:
        return isinstance(x, int | np.integer) and not isinstance(x, bool)

    if n is not None and not (whole(n) and n >= 1):
        raise UsageError(f"--sample-queries: {n!r} is not a number of queries; give a whole "
                         "number of 1 or more.")
    if seed is not None:
        if n is None:
            raise UsageError("--seed: only used with --sample-queries; add --sample-queries N "
                             "or drop --seed.")
        if not (whole(seed) and 0 <= seed < 2**63):
            raise UsageError(f"--seed: {seed!r} is not a seed; give a whole number from 0 to "
                             "2**63 - 1.")


def _sample(n_queries: int, n: int | None,
            seed: int | None) -> tuple[np.ndarray | None, QuerySample | None]:
    """A uniform sample of ``n`` of the ``n_queries`` queries: their positions, ascending
    (queries keep their order), or None (all of them) when ``n`` is None or not smaller."""
    if n is None or n >= n_queries:
        return None, None
    seed = 0 if seed is None else int(seed)
    pick = np.sort(np.random.default_rng(seed).choice(n_queries, int(n), replace=False))
    return pick, QuerySample(int(n), int(n_queries), seed)


def _rank_key(rank: int) -> int:
    """Worst first: a query with no correct item at all (rank 0) is the worst."""
    return np.iinfo(np.int64).max if rank == 0 else int(rank)


def _display(source: Any) -> str:
    from .flips import _display as display

    return display(source)


def _with_sql(sides: list[_EmbeddingSide], d: Dialect | None = None) -> str:
    """``WITH s0 AS (...), s1 AS (...), ...``: id (as text unless all are integers), label,
    split and embedding of each file (in DuckDB's SQL, or ``d``'s: Spark's)."""
    d = d or Dialect()
    text = "STRING" if d.name == "spark" else "VARCHAR"

    def sub(s: _EmbeddingSide, idx: str) -> str:
        lab = quote(s.label) if s.label else "NULL"
        spl = f"CAST({quote(s.split)} AS {text})" if s.split else "NULL"
        return (f"SELECT {idx} AS id, {lab} AS y, {spl} AS sp, {s.embedding_sql} AS e "
                f"FROM {quote(s.table.view)}")

    return "WITH " + ", ".join(f"s{k} AS ({sub(s, idx)})" for k, (s, idx) in
                               enumerate(zip(sides, _id_exprs(sides, d), strict=True)))


def _id_exprs(sides: list[_EmbeddingSide], d: Dialect | None = None) -> list[str]:
    """Each file's id as joined: as is when every file's id is an integer, else as text."""
    integer = all(is_integer_type(s.table.type_of(s.id)) for s in sides)
    return [id_sql(s.table, s.id, integer, d or Dialect()) for s in sides]


def _join_counts(con: Any, sides: list[_EmbeddingSide], allow_unmatched: bool,
                 d: Dialect | None = None) -> tuple[int, list[int]]:
    """The count of the items in every file and, per file, how many of its ids some other
    file lacks (with two files: ids only in OLD, only in NEW); unmatched ids are an error
    unless allowed."""
    n = len(sides)
    with_sql = _with_sql(sides, d)
    if n == 2:
        matched, *unmatched = con.execute(
            f"{with_sql} SELECT count(*) FILTER (WHERE s0.id IS NOT NULL AND s1.id IS NOT NULL), "
            "count(*) FILTER (WHERE s1.id IS NULL), count(*) FILTER (WHERE s0.id IS NULL) "
            "FROM s0 FULL OUTER JOIN s1 ON s0.id = s1.id").fetchall()[0]
    else:
        with_sql += (", common AS (SELECT s0.id FROM s0 "
                     + " ".join(f"JOIN s{k} ON s0.id = s{k}.id" for k in range(1, n)) + ")")
        counts = ", ".join(f"(SELECT count(*) FROM s{k} ANTI JOIN common ON s{k}.id = "
                           "common.id)" for k in range(n))
        matched, *unmatched = con.execute(
            f"{with_sql} SELECT (SELECT count(*) FROM common), {counts}").fetchall()[0]
    tables = [s.table for s in sides]
    if matched == 0:
        if n == 2:
            what = f"OLD file {tables[0].display} and NEW file {tables[1].display} share no ids"
        else:
            what = (f"no id is in all {n} files ("
                    + ", ".join(t.label for t in tables) + ")")
        raise InputError(f"{what}. Check --id-col and that {'both' if n == 2 else 'all'} "
                         "files embed the same items.")
    if any(unmatched) and not allow_unmatched:
        parts = []
        if n == 2:
            for k, (t, count) in enumerate(zip(tables, unmatched, strict=True)):
                if count:
                    ex = [r[0] for r in con.execute(
                        f"{with_sql} SELECT s{k}.id FROM s{k} ANTI JOIN s{1 - k} "
                        f"ON s{k}.id = s{1 - k}.id ORDER BY 1 LIMIT 5").fetchall()]
                    parts.append(f"{count} id(s) only in {t.label} (e.g. {examples(ex)})")
        else:  # name the files that lack ids, and which
            every = " UNION ".join(f"SELECT id FROM s{k}" for k in range(n))
            for k, t in enumerate(tables):
                lacking = (f"{with_sql}, every AS ({every}) SELECT every.id FROM every "
                           f"ANTI JOIN s{k} ON every.id = s{k}.id")
                count = con.execute(f"SELECT count(*) FROM ({lacking}) AS t").fetchall()[0][0]
                if count:
                    ex = [r[0] for r in con.execute(f"{lacking} ORDER BY 1 LIMIT 5").fetchall()]
                    parts.append(f"{t.label} lacks {count} id(s) another version has (e.g. "
                                 f"{examples(ex)})")
        present = "both" if n == 2 else f"all {n} files"
        raise InputError(
            f"unmatched ids: {'; '.join(parts)}; {matched} matched. Pass --allow-unmatched "
            f"to audit only the items present in {present} (the counts stay in the report)."
        )
    return int(matched), [int(u) for u in unmatched]


def _join(con: Any, sides: list[_EmbeddingSide], embeddings: bool = True) -> Any:
    """The items in every file, ordered by id (Arrow): columns ``id``, ``y_k``, ``sp_k`` and,
    with ``embeddings``, ``e_k`` for file k."""
    n = len(sides)
    cols = ", ".join(f"s{k}.y AS y_{k}, s{k}.sp AS sp_{k}" + (f", s{k}.e AS e_{k}"
                                                              if embeddings else "")
                     for k in range(n))
    joins = " ".join(f"JOIN s{k} ON s0.id = s{k}.id" for k in range(1, n))
    return con.sql(f"{_with_sql(sides)} SELECT s0.id AS id, {cols} FROM s0 {joins} "
                   "ORDER BY s0.id").to_arrow_table()


def _labels(data: Any, ids: _Ids, sides: list[_EmbeddingSide]) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """One identity label per item: the first file's that has one; labels given by two
    files must agree. Returns the codes (``int64``) and the names (text, sorted) they
    number."""
    given = [k for k, s in enumerate(sides) if s.label]
    parts, names = _merge_names([
        _encoded(data.column(f"y_{k}"), lambda v: _texts(v, booleans=True)) for k in given])
    y: np.ndarray | None = None
    source: np.ndarray | None = None  # which file each label came from
    for k, y_k in zip(given, parts, strict=True):
        if y is None or source is None:
            y, source = y_k, np.full(len(y_k), k)
            continue
        has_k, has = y_k >= 0, y >= 0
        bad = np.flatnonzero(has & has_k & (y != y_k))
        if bad.size:
            first = sides[int(source[bad[0]])].table.role
            both = "Both files" if len(sides) == 2 else "All files"
            raise InputError(
                f"the identity labels disagree between {first} and {sides[k].table.role} for "
                f"{bad.size} item(s) (ids {examples(ids[bad])}). {both} must label the same "
                "identities."
            )
        take = ~has & has_k
        y = np.where(take, y_k, y)
        source = np.where(take, k, source)
    assert y is not None
    missing = np.flatnonzero(y < 0)
    if missing.size:
        raise InputError(f"{missing.size} item(s) have no identity label (ids "
                         f"{examples(ids[missing])}). Fill them in or drop those items.")
    used = np.zeros(names.size, dtype=bool)
    used[y] = True
    renumber = np.cumsum(used) - 1
    return renumber[y].astype(np.int64), names[used]


def _split_texts(values: list[Any]) -> np.ndarray:
    return np.array([str(v).strip().lower() for v in values], dtype=object)


def _split(data: Any, ids: _Ids, sides: list[_EmbeddingSide]) -> tuple[np.ndarray, str]:
    given = [k for k, s in enumerate(sides) if s.split]
    if not given:
        return np.zeros(len(ids), dtype=bool), "leave-one-out"
    values, names = _merge_names([_encoded(data.column(f"sp_{k}"), _split_texts)
                                  for k in given])
    for k, other in zip(given[1:], values[1:], strict=True):
        differ = np.flatnonzero(values[0] != other)
        if differ.size:
            models = "both models" if len(sides) == 2 else "all models"
            raise InputError(
                f"the split column disagrees between {sides[given[0]].table.role} and "
                f"{sides[k].table.role} for {differ.size} item(s) (ids "
                f"{examples(ids[differ])}). Keep one split for {models}."
            )
    split = values[0]
    wanted = np.flatnonzero(np.isin(names, np.array(SPLIT_VALUES, dtype=object)))
    bad = np.flatnonzero(~np.isin(split, wanted))
    if bad.size:
        found = sorted({"None" if c < 0 else str(names[c]) for c in np.unique(split[bad])})
        raise InputError(
            f"the split column holds values other than 'query' and 'gallery' "
            f"({', '.join(found[:5])}; ids {examples(ids[bad])})."
        )
    query = np.flatnonzero(names == "query")
    return (split == query[0]) if query.size else np.zeros(split.size, dtype=bool), "split"
