"""Chains of versions: ``gaudit compat V1 V2 ... Vn`` (oldest first, n >= 3).

A gallery indexed with V1 and never backfilled must still serve V2's and V3's queries: a
growing set of compatibility constraints (Shen et al., "Towards Backward-Compatible
Representation Learning", CVPR 2020, section 3.3). The audit searches every query version
against every gallery version (the n x n matrix of top-1 accuracy and mAP, row = query
version, column = gallery version: n^2 searches) and judges every later-vs-earlier pair
(query version ``j`` > gallery version ``i``) exactly as the two-file audit judges NEW
against OLD, with old = ``Vi`` and new = ``Vj``:

* compatible when ``M(Vj/Vi) > M(Vi/Vi)``;
* ``update_gain = (M(Vj/Vi) - M(Vi/Vi)) / (M(Vj/Vj) - M(Vi/Vi))``;
* the retrieval negative flips (right at top-1 in Vi/Vi, wrong in Vj/Vi) and the paired
  test of the criterion (:func:`graceful_audit.compat.criterion_test`).

The chain is compatible only when every pair is. Each pair is a two-version
:class:`~graceful_audit.compat.CompatResult` built by the same code as ``gaudit compat OLD
NEW``; the result's other fields describe the newest version's queries on the oldest
version's gallery (:attr:`Versions.summary_pair`), and every gate is evaluated on every pair
(the worst pair is named).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .compat import (
    CRITERION_LABELS,
    CaseMetrics,
    CompatInputs,
    CompatResult,
    CriterionTest,
    _distinct_decimals,
    _level,
    _pct,
)

if TYPE_CHECKING:
    from .compat import _Run

#: Top-level fields of a versions result that describe :attr:`Versions.summary_pair` (the
#: newest version's queries on the oldest version's gallery); written into the JSON.
SUMMARY_FIELDS = ("inputs.old", "inputs.new", "cases", "criterion_delta",
                  "criterion_significant", "intervals", "tests", "update_gain",
                  "retrieval_negative_flips", "retrieval_negative_flip_rate",
                  "breaking_queries")
#: Failing pairs named in the verdict at most (every pair is in the report and the JSON).
NAMED = 3


def version_name(index: int) -> str:
    """``V1`` for index 0: versions are numbered from 1, oldest first."""
    return f"V{index + 1}"


@dataclass(frozen=True)
class VersionInput:
    """One version's file: its path, rows read, embedding dimension, and how many of its
    ids some other version lacks (left out with ``--allow-unmatched``)."""

    path: str
    rows: int
    dim: int
    unmatched: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VersionPair:
    """Version ``query_index``'s queries against version ``gallery_index``'s gallery
    (query > gallery), as a two-version audit: old = the gallery version, new = the query
    version."""

    query_index: int
    gallery_index: int
    audit: CompatResult

    @property
    def query(self) -> str:
        return version_name(self.query_index)

    @property
    def gallery(self) -> str:
        return version_name(self.gallery_index)

    @property
    def label(self) -> str:
        """``V3 queries on V1 gallery``: how reports and gates name the pair."""
        return f"{self.query} queries on {self.gallery} gallery"

    @property
    def compatible(self) -> bool:
        return self.audit.compatible

    def values(self, criterion: str) -> tuple[float | None, float | None, float | None]:
        """``M(Vj/Vi)``, ``M(Vi/Vi)``, ``M(Vj/Vj)`` for the criterion's M."""
        c = self.audit.cases
        return (c["new/old"].metric(criterion) if c["new/old"].available else None,
                c["old/old"].metric(criterion), c["new/new"].metric(criterion))

    def reason(self) -> str:
        """``top-1 V3/V1 70.00% <= V1/V1 85.00%``: the pair's criterion in one clause."""
        a = self.audit
        if a.dimension_mismatch:
            return f"dimension {a.inputs.new_dim} vs {a.inputs.old_dim}: cannot compare"
        crit = CRITERION_LABELS[a.criterion]
        cross, base, _ = self.values(a.criterion)
        op = ">" if a.compatible else "<="
        digits = _distinct_decimals(cross, base)
        q, g = self.query, self.gallery
        return f"{crit} {q}/{g} {_pct(cross, digits)} {op} {g}/{g} {_pct(base, digits)}"

    def to_dict(self) -> dict[str, Any]:
        a = self.audit
        cross, base, own = self.values(a.criterion)
        t = a.criterion_test
        ci = None if t is None else t.interval
        return {
            "query_index": self.query_index, "gallery_index": self.gallery_index,
            "compatible": a.compatible, "reason": self.reason(),
            "criterion_values": {"cross": cross, "base": base, "backfilled": own},
            "criterion_delta": a.criterion_delta,
            "criterion_significant": a.criterion_significant,
            "intervals": {"criterion_delta": list(ci) if ci else None,
                          "criterion_delta_method": None if t is None else t.interval_method},
            "tests": {"criterion": None if t is None else t.to_dict()},
            "update_gain": a.update_gain,
            "retrieval_negative_flips": a.retrieval_negative_flips,
            "retrieval_negative_flip_rate": a.retrieval_negative_flip_rate,
        }


Matrix = tuple[tuple[float | None, ...], ...]


@dataclass(frozen=True)
class Versions:
    """The n x n matrix (row = query version, column = gallery version) and every
    later-vs-earlier pair, in the order (V2, V1), (V3, V1), (V3, V2), (V4, V1), ..."""

    inputs: tuple[VersionInput, ...]
    top1: Matrix
    map: Matrix
    pairs: tuple[VersionPair, ...]

    @property
    def n(self) -> int:
        return len(self.inputs)

    @property
    def summary_pair(self) -> VersionPair:
        """The newest version's queries on the oldest version's gallery: the pair the
        result's two-version fields (cases, update gain, breaking queries, ...) describe."""
        return next(p for p in self.pairs
                    if (p.query_index, p.gallery_index) == (self.n - 1, 0))

    @property
    def failing(self) -> tuple[VersionPair, ...]:
        return tuple(p for p in self.pairs if not p.compatible)

    def reason(self, criterion: str) -> str:
        """Why the chain is (not) compatible: the failing pairs, or that every pair holds."""
        bad, total = self.failing, len(self.pairs)
        if not bad:
            crit = CRITERION_LABELS[criterion]
            return (f"all {total} pairs hold: {crit} Vj/Vi > Vi/Vi for every later version "
                    "j and earlier gallery i")
        named = "; ".join(f"{p.label}: {p.reason()}" for p in bad[:NAMED])
        more = f"; {len(bad) - NAMED} more" if len(bad) > NAMED else ""
        return f"{len(bad)} of {total} pairs fail: {named}{more}"

    def verdicts(self) -> str:
        """``2 of 3 pairs fail: V3/V1, V3/V2`` (or ``all 3 pairs hold``): what a gate on
        ``compatible`` says beside its value."""
        bad = self.failing
        if not bad:
            return f"all {len(self.pairs)} pairs hold"
        return (f"{len(bad)} of {len(self.pairs)} pairs fail: "
                + ", ".join(f"{p.query}/{p.gallery}" for p in bad))

    def headline(self, criterion: str, confidence: float) -> str:
        word = "backward compatible" if not self.failing else "NOT backward compatible"
        weak = [f"{p.query}/{p.gallery}" for p in self.pairs
                if p.audit.criterion_significant is False]
        note = ("" if not weak else
                f"; margin not significant at the {_level(confidence)} level for "
                f"{', '.join(weak)}")
        return f"{word} across {self.n} versions ({self.reason(criterion)}){note}"

    def worst(self, name: str, direction: str,
              value: Callable[[Any], tuple[float | None, str | None]]
              ) -> tuple[float | None, str | None]:
        """A gate's value on every pair: the worst (highest for a ``max`` gate, lowest for a
        ``min`` gate; the first such pair on a tie), named; None when undefined on all."""
        worst: tuple[float, str] | None = None
        for p in self.pairs:
            v, detail = value(p.audit)
            if v is None:
                continue
            if worst is None or (v > worst[0] if direction == "max" else v < worst[0]):
                worst = (v, p.label + (f" ({detail})" if detail else ""))
        return (None, None) if worst is None else worst

    def into_dict(self, d: dict[str, Any]) -> dict[str, Any]:
        """The two-version document ``d`` with the versions' fields: ``versions``,
        ``matrix``, ``pairs`` and ``summary_pair`` before ``cases``, and
        ``inputs.versions``."""
        out: dict[str, Any] = {}
        for key, value in d.items():
            if key == "cases":
                s = self.summary_pair
                out["versions"] = [v.path for v in self.inputs]
                out["matrix"] = {"top1": [list(r) for r in self.top1],
                                 "map": [list(r) for r in self.map]}
                out["pairs"] = [p.to_dict() for p in self.pairs]
                out["summary_pair"] = {"query_index": s.query_index,
                                       "gallery_index": s.gallery_index,
                                       "fields": list(SUMMARY_FIELDS)}
            out[key] = value
        out["inputs"] = {**d["inputs"], "versions": [v.to_dict() for v in self.inputs]}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], top: CompatResult) -> Versions:
        """From a saved document (checked by :mod:`graceful_audit.rerender`); each pair's
        audit is rebuilt from the matrix and the pair's fields, enough for its gates."""
        inputs = tuple(VersionInput(v["path"], v["rows"], v["dim"], v["unmatched"])
                       for v in d["inputs"]["versions"])
        top1 = tuple(tuple(r) for r in d["matrix"]["top1"])
        map_ = tuple(tuple(r) for r in d["matrix"]["map"])
        pairs = tuple(VersionPair(p["query_index"], p["gallery_index"],
                                  _saved_pair(top, inputs, top1, map_, p))
                      for p in d["pairs"])
        return cls(inputs, top1, map_, pairs)


def _saved_pair(top: CompatResult, inputs: tuple[VersionInput, ...], top1: Matrix,
                map_: Matrix, p: dict[str, Any]) -> CompatResult:
    j, i = p["query_index"], p["gallery_index"]

    def cell(name: str, q: int, g: int) -> CaseMetrics:
        dq, dg = inputs[q].dim, inputs[g].dim
        if dq != dg:
            return CaseMetrics(name, False, reason=f"dimension {dq} vs {dg}: cannot compare")
        return CaseMetrics(name, True, {1: top1[q][g]}, map_[q][g])

    cases = {"old/old": cell("old/old", i, i), "new/new": cell("new/new", j, j),
             "new/old": cell("new/old", j, i), "old/new": cell("old/new", i, j)}
    t = top.inputs
    pair_inputs = CompatInputs(inputs[i].path, inputs[j].path, inputs[i].rows, inputs[j].rows,
                               t.matched, inputs[i].unmatched, inputs[j].unmatched,
                               inputs[i].dim, inputs[j].dim, t.mode, t.queries, t.gallery)
    test = CriterionTest.from_dict((p.get("tests") or {}).get("criterion"),
                                   p.get("intervals") or {})
    return CompatResult(pair_inputs, top.metric, top.criterion, cases, p["compatible"],
                        p.get("update_gain"), p.get("retrieval_negative_flips"), top.queries,
                        top.queries_without_positive, (), top.confidence, test)


def audit_versions(run: _Run) -> CompatResult:
    """Every query version against every gallery version (n^2 searches), every
    later-vs-earlier pair judged as a two-version audit; no gates."""
    al = run.al
    n = len(al.dims)
    cells = {(q, g): run.case(f"{version_name(q)}/{version_name(g)}", q, g)
             for q in range(n) for g in range(n)}

    def case(name: str, q: int, g: int) -> CaseMetrics:
        return dataclasses.replace(cells[(q, g)][0], name=name)

    pairs = []
    for j in range(1, n):
        for i in range(j):
            cases = {"old/old": case("old/old", i, i), "new/new": case("new/new", j, j),
                     "new/old": case("new/old", j, i), "old/new": case("old/new", i, j)}
            raw = {"old/old": cells[(i, i)][1], "new/new": cells[(j, j)][1],
                   "new/old": cells[(j, i)][1], "old/new": cells[(i, j)][1]}
            pairs.append(VersionPair(j, i, run.pair(j, i, cases, raw)))

    def matrix(value: Callable[[CaseMetrics], float | None]) -> Matrix:
        return tuple(tuple(value(cells[(q, g)][0]) if cells[(q, g)][0].available else None
                           for g in range(n)) for q in range(n))

    versions = Versions(
        tuple(VersionInput(al.displays[k], al.rows[k], al.dims[k], al.unmatched[k])
              for k in range(n)),
        matrix(lambda c: c.topk.get(1)), matrix(lambda c: c.map), tuple(pairs))
    return dataclasses.replace(versions.summary_pair.audit,
                               compatible=all(p.compatible for p in pairs), versions=versions)
