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

With a ``split`` column, ``query`` items search the ``gallery`` items; without one, every
item queries all the others (leave-one-out). When old and new dimensions differ the cross
cases cannot be computed: they are reported as unavailable and the update is not compatible.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .align import ID_SYNONYMS, LABEL_SYNONYMS, check_ids, id_sql
from .engine import FILL_TEXT, FILL_VALUE, Dialect, DuckDBEngine
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

CASES = ("old/old", "new/new", "new/old", "old/new")
CRITERIA = {"top1": "top1", "map": "map"}
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

    def metric(self, criterion: str) -> float | None:
        return self.map if criterion == "map" else self.topk.get(1)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f"top{k}": v for k, v in self.topk.items()} if self.available else {
            f"top{k}": None for k in KS}
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
        return cls(name, d.get("available", True), topk, d.get("map"),
                   d.get("queries_evaluated", 0), d.get("reason"), intervals)


@dataclass(frozen=True)
class CriterionTest:
    """The paired test of the criterion, new/old against old/old on the same queries.

    ``method`` is ``"exact"`` or ``"chi2"`` (McNemar's test, ``--criterion top1``; ``b`` =
    queries right at top-1 in old/old and wrong in new/old, ``c`` = the reverse) or
    ``"paired t"`` (``--criterion map``: Student's paired t test of the per-query AP
    difference; ``b`` and ``c`` are None). ``interval`` is the interval of
    ``M(new/old) - M(old/old)``: Newcombe's hybrid score interval for paired proportions
    (``interval_method`` ``"newcombe"``) or the paired t interval (``"paired t"``).
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
                   confidence: float = 0.95) -> CriterionTest | None:
    """The paired test of the criterion from two :class:`~graceful_audit.retrieval.CaseResult`
    of the same queries (old/old, new/old): per-query top-1 hits or APs, no new search.

    Only queries with a positive in the gallery count (as in every metric); ``None`` when
    there is none.
    """
    evaluated = old_old.first_positive_rank > 0
    n = int(np.count_nonzero(evaluated))
    if n == 0:
        return None
    if criterion == "map":
        t = paired_t(new_old.average_precision[evaluated] - old_old.average_precision[evaluated],
                     confidence=confidence)
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
    """A retrieval negative flip: right at top-1 in old/old, wrong in new/old."""

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
        if self.sample is not None:
            d["sample"] = self.sample.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], queries: int) -> CompatInputs:
        s = d.get("sample")
        return cls(d["old"]["path"], d["new"]["path"], d["old"]["rows"], d["new"]["rows"],
                   d["matched"], d["unmatched_old"], d["unmatched_new"], d["old"]["dim"],
                   d["new"]["dim"], d["mode"], queries, d["gallery"],
                   QuerySample(s["queries"], s["of"], s["seed"]) if s else None)


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
        crit = "top-1" if self.criterion == "top1" else "mAP"
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
            test = f"paired t test of the per-query AP difference on {t.n:,} queries: p = {p}"
        ci = ("" if t.interval is None else
              f", {self.confidence:.0%} interval [{_pp(t.interval[0])}, {_pp(t.interval[1])}]"
              f" ({'Newcombe' if t.interval_method == 'newcombe' else 'paired t'})")
        return (f"{crit} new/old - old/old = {_pp(self.criterion_delta)}{ci}; {test} "
                f"({said}).")

    def reason(self) -> str:
        """Why the update is (not) compatible, in one clause."""
        if self.dimension_mismatch:
            return (f"dimension {self.inputs.old_dim} vs {self.inputs.new_dim}: "
                    "not backward compatible")
        crit = "top-1" if self.criterion == "top1" else "mAP"
        cross = self.cases["new/old"].metric(self.criterion)
        base = self.cases["old/old"].metric(self.criterion)
        op = ">" if self.compatible else "<="
        digits = _distinct_decimals(cross, base)
        return (f"{crit} new/old {_pct(cross, digits)} {op} old/old {_pct(base, digits)}")

    def headline(self) -> str:
        sample = self.inputs.sample
        on = "" if sample is None else f"; on {sample.sentence()}"
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
        return {
            "schema_version": 1,
            "kind": "compat",
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


def _value(name: str) -> Callable[[Any], tuple[float | None, str | None]]:
    def value(result: Any) -> tuple[float | None, str | None]:
        if name != "compatible" and result.dimension_mismatch:
            return _unsearchable(result, name)
        detail = result.reason() if name == "compatible" else None
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
        GateDef("require-compatible", "compatible", "min", 1, 1, _value("compatible"),
                kind="compat", help="Fail unless new/old beats old/old."),
        GateDef("min-update-gain", "update_gain", "min", -1e6, 1e6, _value("update_gain"),
                kind="compat", help="Fail when the update gain falls below X."),
        GateDef("max-retrieval-nfr", "retrieval_negative_flip_rate", "max", 0, 1,
                _value("retrieval_negative_flip_rate"), kind="compat",
                help="Fail when the share of queries that break exceeds X (0..1)."),
        GateDef("min-cross-top1", "cross_top1", "min", 0, 1, _value("cross_top1"),
                kind="compat", help="Fail when new/old top-1 accuracy falls below X."),
        GateDef("max-cross-drop", "cross_drop", "max", -1, 1, _value("cross_drop"),
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
    """Arrow list column -> float32 (n, d); ragged, null, NaN, inf and zero rows are errors."""
    import pyarrow.compute as pc

    arr = table.column(column).combine_chunks()
    n = len(arr)
    if arr.null_count:
        null_rows = np.flatnonzero(np.asarray(pc.is_null(arr)))
        raise InputError(f"{where}: {null_rows.size} item(s) have no embedding (ids "
                         f"{examples(ids[null_rows])}). Every item needs an embedding.")
    lengths = np.asarray(pc.list_value_length(arr))
    dims = np.unique(lengths)
    if dims.size > 1:
        common = int(np.bincount(lengths).argmax())
        odd = np.flatnonzero(lengths != common)
        raise InputError(
            f"{where}: ragged embeddings: lengths {', '.join(map(str, dims[:5]))} "
            f"(most are {common}; ids {examples(ids[odd])} differ). All embeddings of a "
            "model must have the same dimension."
        )
    d = int(dims[0]) if n else 0
    if d == 0:
        raise InputError(f"{where}: the embeddings are empty (dimension 0).")
    x = np.asarray(arr.flatten().to_numpy(zero_copy_only=False)).reshape(n, d)
    if x.dtype.kind not in "fiu":
        x = x.astype(np.float64)
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
    *,
    id_col: str | None = None,
    label_col: str | None = None,
    embedding_col: str | None = None,
    split_col: str | None = None,
    metric: str = "cosine",
    criterion: str = "top1",
    top: int = 10,
    confidence: float = 0.95,
    allow_unmatched: bool = False,
    gates: Mapping[str, float] | Sequence[GateSpec] | None = None,
    block_size: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    memory_limit: str | None = None,
    sample_queries: int | None = None,
    seed: int | None = None,
) -> CompatResult:
    """Audit an embedding-model update for backward compatibility of retrieval.

    Parameters
    ----------
    old, new : path, pandas.DataFrame or pyarrow.Table
        Per item: id, identity label, embedding (a list column or ``emb_0 .. emb_{d-1}``),
        and optionally ``split`` (``query`` / ``gallery``). Joined by id.
    metric : {"cosine", "ip", "l2"}
        Similarity. Cosine L2-normalises both sides.
    criterion : {"top1", "map"}
        The M of the compatibility criterion and of the update gain.
    top : int
        How many breaking queries to list (worst first: deepest first correct match in
        new/old, ties by id).
    confidence : float
        Level of the Wilson intervals of every top-k, of the interval of the criterion's
        margin, and of its significance (``p < 1 - confidence``).
    progress : callable, optional
        ``progress(case, done, total)`` after each block of queries (in memory) or
        ``progress("gallery shards", rows, total)`` after each shard (streamed).
    memory_limit : str, optional
        Memory for the whole audit (``--memory-limit``, as for ``flips``; default 80% of
        the RAM). When the embeddings would not fit, the gallery is streamed in shards
        (:func:`_streamed_cases`), with the same results.
    sample_queries, seed : int, optional
        Audit a uniform sample of ``sample_queries`` queries (all of them when there are no
        more), drawn with ``seed`` (default 0); the report says so.

    Returns
    -------
    CompatResult
    """
    from .retrieval import METRICS

    if metric not in METRICS:
        raise UsageError(f"--metric: {metric!r} is not one of {', '.join(METRICS)}.")
    if criterion not in CRITERIA:
        raise UsageError(f"--criterion: {criterion!r} is not one of top1, map.")
    check_top(top)
    _check_sample(sample_queries, seed)
    if isinstance(confidence, bool) or not 0.0 < confidence < 1.0:
        raise UsageError(f"--confidence: {confidence!r} must be strictly between 0 and 1.")
    check_column_names({"--id-col": id_col, "--label-col": label_col,
                        "--embedding-col": embedding_col, "--split-col": split_col})
    specs = gate_specs(gates)
    for spec in specs:
        check_threshold(spec.name, spec.threshold, COMPAT_GATES, spec.source)

    id_names = [id_col] if id_col else ["id", *ID_SYNONYMS]
    engine = DuckDBEngine(memory_limit)
    shard_rows: int | None = None
    try:
        old_t = engine.open(old, "OLD", text_columns=id_names)
        new_t = engine.open(new, "NEW", text_columns=id_names)
        sides = [_resolve(t, id_col, label_col, embedding_col, split_col) for t in (old_t, new_t)]
        for s in sides:
            check_ids(engine, s.table, s.id)
        if sides[0].label is None and sides[1].label is None:
            raise InputError(
                f"no identity label column {label_col or 'label'!r} in OLD file "
                f"{old_t.display} or NEW file {new_t.display}. Name it with --label-col."
            )
        with engine.errors(f"while joining {old_t.display} and {new_t.display}"):
            matched, un_old, un_new = _join_counts(engine.con, sides, allow_unmatched)
            shard_rows = _plan_shards(engine.con, sides, matched, memory_limit)
            data = _join(engine.con, sides, embeddings=shard_rows is None)
        ids, labels, mode, codes, q_idx, g_idx, exclude = _items(data, sides)
        q_idx, exclude, sample = _sample(q_idx, exclude, sample_queries, seed)
    except BaseException:
        shard_rows = None
        raise
    finally:
        if shard_rows is None:
            engine.close()

    where = {"old": f"OLD file {old_t.display}", "new": f"NEW file {new_t.display}"}
    if shard_rows is None:
        raw, dims = _in_memory_cases(data, ids, where, metric, q_idx, g_idx, codes, exclude,
                                     block_size, progress)
    else:
        try:
            with engine.errors(f"while reading {old_t.display} and {new_t.display}"):
                raw, dims = _streamed_cases(engine.con, sides, ids, where, metric, q_idx,
                                            g_idx, codes, exclude, shard_rows, memory_limit,
                                            progress)
        finally:
            engine.close()
    cases: dict[str, CaseMetrics] = {}
    for name in CASES:
        qm, gm = name.split("/")
        if name not in raw:
            cases[name] = CaseMetrics(
                name, False, reason=f"dimension {dims[qm]} vs {dims[gm]}: cannot compare")
            continue
        r = raw[name]
        evaluated = r.first_positive_rank > 0
        intervals = {k: wilson_interval(int(np.count_nonzero(evaluated & (r.first_positive_rank
                                                                          <= k))),
                                        r.n_evaluated, confidence=confidence) for k in KS}
        cases[name] = CaseMetrics(name, True, dict(r.topk), r.mean_average_precision,
                                  r.n_evaluated, intervals=intervals)

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
    if "new/old" in raw:
        oo, no = raw["old/old"], raw["new/old"]
        test = criterion_test(oo, no, criterion, confidence=confidence)
        broke = np.flatnonzero(oo.top1_correct & ~no.top1_correct)
        flips = int(broke.size)
        q_ids, q_labels = ids[q_idx], labels[q_idx]
        g_ids, g_labels = ids[g_idx], labels[g_idx]
        order = sorted(broke, key=lambda i: (-_rank_key(no.first_positive_rank[i]),
                                             natural_key(q_ids[i])))
        breaking = tuple(
            BreakingQuery(
                id=str(q_ids[i]), label=str(q_labels[i]),
                new_old_rank=int(no.first_positive_rank[i]),
                new_old_top1_id=str(g_ids[no.top1_index[i]]),
                new_old_top1_label=str(g_labels[no.top1_index[i]]),
            )
            for i in order[:top]
        )
    inputs = CompatInputs(
        _display(old), _display(new), old_t.rows, new_t.rows, matched, un_old, un_new,
        dims["old"], dims["new"], mode, int(q_idx.size), int(g_idx.size), sample,
    )
    result = CompatResult(inputs, metric, criterion, cases, compatible, gain, flips,
                          int(q_idx.size), without_positive, breaking, confidence, test)
    return result.with_gates(evaluate_gates(result, specs, COMPAT_GATES))


#: Test knob: gallery rows per shard, forcing the streamed path (None: decided by memory).
_SHARD_ROWS: int | None = None
#: The in-memory path peaks at about this many times the raw float32 embeddings.
_IN_MEMORY_FACTOR = 3.5
#: Shares of the memory budget when streaming: DuckDB's join and sort, one shard (Arrow,
#: float32 and prepared copies of both models), one block of scores.
_DUCKDB_SHARE, _SHARD_SHARE, _BLOCK_SHARE = 0.6, 0.1, 0.05


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
    """Sum of both models' embedding dimensions, from the first row of each file."""
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


def _in_memory_cases(
    data: Any, ids: np.ndarray, where: dict[str, str], metric: str, q_idx: np.ndarray,
    g_idx: np.ndarray, codes: np.ndarray, exclude: np.ndarray | None,
    block_size: int | None, progress: Callable[[str, int, int], None] | None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """The cases with every embedding in memory: ``({case: CaseResult}, {model: dim})``;
    a case whose models' dimensions differ is left out."""
    from .retrieval import evaluate_case

    emb = {"old": _matrix(data, "e_o", ids, where["old"], metric),
           "new": _matrix(data, "e_n", ids, where["new"], metric)}
    dims = {m: int(e.shape[1]) for m, e in emb.items()}
    raw = {}
    for name in CASES:
        qm, gm = name.split("/")
        if dims[qm] != dims[gm]:
            continue
        cb = None if progress is None else (lambda done, _n=name: progress(_n, done, q_idx.size))
        raw[name] = evaluate_case(emb[qm][q_idx], codes[q_idx], emb[gm][g_idx], codes[g_idx],
                                  metric=metric, ks=KS, exclude_self=exclude,
                                  block_size=block_size, progress=cb)
    return raw, dims


def _streamed_cases(
    con: Any, sides: list[_EmbeddingSide], ids: np.ndarray, where: dict[str, str],
    metric: str, q_idx: np.ndarray, g_idx: np.ndarray, codes: np.ndarray,
    exclude: np.ndarray | None, shard_rows: int, memory_limit: str | None,
    progress: Callable[[str, int, int], None] | None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """:func:`_in_memory_cases` with the gallery streamed from DuckDB in shards of about
    ``shard_rows`` joined rows (id order, as in memory): one pass collects the queries'
    embeddings, then :func:`~graceful_audit.retrieval.evaluate_streamed_cases` makes two
    passes for all cases at once.  Embeddings are validated shard by shard (a message names
    the bad items of the first bad shard)."""
    import pyarrow as pa

    from .retrieval import StreamCase, evaluate_streamed_cases

    n = len(ids)
    is_q = np.zeros(n, dtype=bool)
    is_q[q_idx] = True
    is_g = np.zeros(n, dtype=bool)
    is_g[g_idx] = True
    sql = (f"{_with_sql(sides)} SELECT o.e AS e_o, n.e AS e_n FROM o JOIN n ON o.id = n.id "
           "ORDER BY o.id")
    dims: dict[str, int] = {}

    def batches(mask: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        r0 = 0
        for batch in con.sql(sql).to_arrow_reader(shard_rows):
            t = pa.Table.from_batches([batch])
            rows = np.flatnonzero(mask[r0 : r0 + t.num_rows])
            if rows.size:
                sub = t if rows.size == t.num_rows else t.take(rows)
                out = {}
                for model, col in (("old", "e_o"), ("new", "e_n")):
                    x = _matrix(sub, col, ids[r0 + rows], where[model], metric)
                    if dims.setdefault(model, x.shape[1]) != x.shape[1]:
                        raise InputError(
                            f"{where[model]}: ragged embeddings: dimension {x.shape[1]} for "
                            f"ids {examples(ids[r0 + rows])} but {dims[model]} for earlier "
                            "ids. All embeddings of a model must have the same dimension.")
                    out[model] = x
                yield out
            r0 += t.num_rows

    parts: dict[str, list[np.ndarray]] = {"old": [], "new": []}
    for block in batches(is_q):
        for model, x in block.items():
            parts[model].append(x)
    queries = {m: np.concatenate(p) for m, p in parts.items()}
    del parts
    names = [c for c in CASES if dims[c.split("/")[0]] == dims[c.split("/")[1]]]
    specs = [StreamCase(queries[c.split("/")[0]], codes[q_idx], exclude, c.split("/")[1])
             for c in names]
    cb = None if progress is None else (
        lambda done: progress("gallery shards", done, int(g_idx.size)))
    results = evaluate_streamed_cases(
        specs, codes[g_idx], lambda: batches(is_g), metric=metric, ks=KS,
        block_bytes=max(1 << 20, int(_BLOCK_SHARE * memory_budget(memory_limit))),
        progress=cb)
    return dict(zip(names, results, strict=True)), dims


def _items(data: Any, sides: list[_EmbeddingSide]) -> tuple[
        np.ndarray, np.ndarray, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Ids, labels, mode, label codes, query and gallery positions and the excluded item of
    each query (leave-one-out) of the joined items."""
    ids = _texts(data.column("id").to_pylist())
    labels = _labels(data, ids, sides)
    is_query, mode = _split(data, ids, sides)

    codes = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    if mode == "split":
        q_idx, g_idx = np.flatnonzero(is_query), np.flatnonzero(~is_query)
        exclude = None
        if q_idx.size == 0 or g_idx.size == 0:
            raise InputError(
                f"the split column has {q_idx.size} query and {g_idx.size} gallery items; "
                "both are needed (or drop the column for leave-one-out)."
            )
    else:
        q_idx = g_idx = np.arange(len(ids))
        exclude = np.arange(len(ids), dtype=np.int64)
    return ids, labels, mode, codes, q_idx, g_idx, exclude


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


def _sample(q_idx: np.ndarray, exclude: np.ndarray | None, n: int | None,
            seed: int | None) -> tuple[np.ndarray, np.ndarray | None, QuerySample | None]:
    """Keep a uniform sample of ``n`` queries (in their order), or all when ``n`` is None
    or not smaller than their number."""
    if n is None or n >= q_idx.size:
        return q_idx, exclude, None
    seed = 0 if seed is None else int(seed)
    pick = np.sort(np.random.default_rng(seed).choice(q_idx.size, int(n), replace=False))
    return (q_idx[pick], None if exclude is None else exclude[pick],
            QuerySample(int(n), int(q_idx.size), seed))


def _rank_key(rank: int) -> int:
    """Worst first: a query with no correct item at all (rank 0) is the worst."""
    return np.iinfo(np.int64).max if rank == 0 else int(rank)


def _display(source: Any) -> str:
    from .flips import _display as display

    return display(source)


def _with_sql(sides: list[_EmbeddingSide]) -> str:
    """``WITH o AS (...), n AS (...)``: id (as text unless both are integers), label, split
    and embedding of each side."""
    integer = all(is_integer_type(s.table.type_of(s.id)) for s in sides)

    def sub(s: _EmbeddingSide) -> str:
        idx = id_sql(s.table, s.id, integer, Dialect())
        lab = quote(s.label) if s.label else "NULL"
        spl = f"CAST({quote(s.split)} AS VARCHAR)" if s.split else "NULL"
        return (f"SELECT {idx} AS id, {lab} AS y, {spl} AS sp, {s.embedding_sql} AS e "
                f"FROM {quote(s.table.view)}")

    return f"WITH o AS ({sub(sides[0])}), n AS ({sub(sides[1])})"


def _join_counts(
    con: Any, sides: list[_EmbeddingSide], allow_unmatched: bool
) -> tuple[int, int, int]:
    """``(matched, only in OLD, only in NEW)``; unmatched ids are an error unless allowed."""
    o, n = sides
    with_sql = _with_sql(sides)
    matched, un_old, un_new = con.execute(
        f"{with_sql} SELECT count(*) FILTER (WHERE o.id IS NOT NULL AND n.id IS NOT NULL), "
        "count(*) FILTER (WHERE n.id IS NULL), count(*) FILTER (WHERE o.id IS NULL) "
        "FROM o FULL OUTER JOIN n ON o.id = n.id").fetchall()[0]
    if matched == 0:
        raise InputError(
            f"OLD file {o.table.display} and NEW file {n.table.display} share no ids. "
            "Check --id-col and that both files embed the same items."
        )
    if (un_old or un_new) and not allow_unmatched:
        ex_o = [r[0] for r in con.execute(
            f"{with_sql} SELECT o.id FROM o ANTI JOIN n ON o.id = n.id ORDER BY 1 LIMIT 5"
        ).fetchall()]
        ex_n = [r[0] for r in con.execute(
            f"{with_sql} SELECT n.id FROM n ANTI JOIN o ON o.id = n.id ORDER BY 1 LIMIT 5"
        ).fetchall()]
        parts = []
        if un_old:
            parts.append(f"{un_old} id(s) only in OLD file {o.table.display} "
                         f"(e.g. {examples(ex_o)})")
        if un_new:
            parts.append(f"{un_new} id(s) only in NEW file {n.table.display} "
                         f"(e.g. {examples(ex_n)})")
        raise InputError(
            f"unmatched ids: {'; '.join(parts)}; {matched} matched. Pass --allow-unmatched "
            "to audit only the items present in both (the counts stay in the report)."
        )
    return int(matched), int(un_old), int(un_new)


def _join(con: Any, sides: list[_EmbeddingSide], embeddings: bool = True) -> Any:
    """The matched items ordered by id (Arrow): id, labels, splits and, with
    ``embeddings``, both embeddings (``e_o``, ``e_n``)."""
    emb = ", o.e AS e_o, n.e AS e_n" if embeddings else ""
    return con.sql(
        f"{_with_sql(sides)} SELECT o.id AS id, o.y AS y_o, n.y AS y_n, o.sp AS sp_o, "
        f"n.sp AS sp_n{emb} FROM o JOIN n ON o.id = n.id ORDER BY o.id"
    ).to_arrow_table()


def _labels(data: Any, ids: np.ndarray, sides: list[_EmbeddingSide]) -> np.ndarray:
    y_o = _texts(data.column("y_o").to_pylist(), booleans=True) if sides[0].label else None
    y_n = _texts(data.column("y_n").to_pylist(), booleans=True) if sides[1].label else None
    if y_o is not None and y_n is not None:
        both = np.array([a is not None and b is not None for a, b in zip(y_o, y_n, strict=True)])
        bad = np.flatnonzero(both & (y_o != y_n))
        if bad.size:
            raise InputError(
                f"the identity labels disagree between OLD and NEW for {bad.size} item(s) "
                f"(ids {examples(ids[bad])}). Both files must label the same identities."
            )
        y = np.where(np.array([a is None for a in y_o]), y_n, y_o)
    else:
        y = y_o if y_o is not None else y_n
    assert y is not None
    missing = np.flatnonzero(np.array([v is None for v in y]))
    if missing.size:
        raise InputError(f"{missing.size} item(s) have no identity label (ids "
                         f"{examples(ids[missing])}). Fill them in or drop those items.")
    return y


def _split(data: Any, ids: np.ndarray, sides: list[_EmbeddingSide]) -> tuple[np.ndarray, str]:
    cols = [c for c, s in (("sp_o", sides[0]), ("sp_n", sides[1])) if s.split]
    if not cols:
        return np.zeros(len(ids), dtype=bool), "leave-one-out"
    values = [np.array([None if v is None else str(v).strip().lower()
                        for v in data.column(c).to_pylist()], dtype=object) for c in cols]
    if len(values) == 2:
        differ = np.flatnonzero(values[0] != values[1])
        if differ.size:
            raise InputError(
                f"the split column disagrees between OLD and NEW for {differ.size} item(s) "
                f"(ids {examples(ids[differ])}). Keep one split for both models."
            )
    split = values[0]
    bad = np.flatnonzero(~np.isin(split, np.array(SPLIT_VALUES, dtype=object)))
    if bad.size:
        found = sorted({str(v) for v in split[bad]})
        raise InputError(
            f"the split column holds values other than 'query' and 'gallery' "
            f"({', '.join(found[:5])}; ids {examples(ids[bad])})."
        )
    return split == "query", "split"
