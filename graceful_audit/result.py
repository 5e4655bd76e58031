"""The result of a flips audit: computed once, frozen, rendered by every format.

:meth:`FlipsResult.to_dict` *is* the JSON document of DESIGN.md (``schema_version: 1``);
:meth:`FlipsResult.from_dict` reads it back so a saved result can be re-rendered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .align import Accounting
from .count import FlipExample
from .gates import Gated, GateResult
from .metrics import PROPORTIONS, FlipCounts, FlipMetrics, rate
from .outcomes import ScoreSummary
from .quality import DeLongResult, Quality
from .regression import RegressionSummary
from .stats import McNemarResult, wilson_interval
from .whatif import WhatIf

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class GroupRow:
    """A class or a slice value with its flip counts and rates."""

    value: str | None
    counts: FlipCounts
    negative_flip_rate_interval: tuple[float, float] | None = None
    mae_delta: float | None = None  # regression audits only

    @property
    def n(self) -> int:
        return self.counts.n

    @property
    def negative_flip_rate(self) -> float | None:
        return rate("negative_flip_rate", self.counts)

    def to_dict(self, key: str, size_key: str) -> dict[str, Any]:
        c = self.counts
        ci = self.negative_flip_rate_interval
        return {
            key: self.value,
            size_key: c.n,
            "negative_flips": c.negative_flips,
            "positive_flips": c.positive_flips,
            "negative_flip_rate": self.negative_flip_rate,
            "negative_flip_rate_interval": list(ci) if ci else None,
            "positive_flip_rate": rate("positive_flip_rate", c),
            "old_error_rate": rate("old_error_rate", c),
            "new_error_rate": rate("new_error_rate", c),
            "counts": dataclasses.asdict(c),
            **({"mae_delta": self.mae_delta} if self.mae_delta is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], key: str) -> GroupRow:
        ci = d.get("negative_flip_rate_interval")
        return cls(d[key], FlipCounts(**d["counts"]), tuple(ci) if ci else None,
                   d.get("mae_delta"))


def group_row(value: str | None, counts: FlipCounts, confidence: float,
              mae_delta: float | None = None) -> GroupRow:
    return GroupRow(value, counts, wilson_interval(counts.negative_flips, counts.n,
                                                   confidence=confidence), mae_delta)


@dataclass(frozen=True, kw_only=True)
class Inputs(Accounting):
    """The row accounting of the join, with where the rows came from."""

    old_path: str
    new_path: str
    labels_path: str | None = None
    label_source: str = ""
    old_prediction: str = ""
    new_prediction: str = ""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "old": {"path": self.old_path, "rows": self.old_rows,
                    "prediction": self.old_prediction},
            "new": {"path": self.new_path, "rows": self.new_rows,
                    "prediction": self.new_prediction},
        }
        if self.labels_path is not None:
            d["labels"] = {"path": self.labels_path, "rows": self.labels_rows,
                           "unused": self.unused_labels}
        d.update({
            "matched": self.matched,
            "unmatched_old": self.unmatched_old,
            "unmatched_new": self.unmatched_new,
            "excluded": {"no_label": self.missing_label},
            "audited": self.audited,
            "label_source": self.label_source,
        })
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Inputs:
        lab = d.get("labels") or {}
        return cls(
            old_rows=d["old"]["rows"], new_rows=d["new"]["rows"], labels_rows=lab.get("rows"),
            matched=d["matched"], unmatched_old=d["unmatched_old"],
            unmatched_new=d["unmatched_new"],
            missing_label=d.get("excluded", {}).get("no_label", 0),
            unused_labels=lab.get("unused", 0),
            old_path=d["old"]["path"], new_path=d["new"]["path"], labels_path=lab.get("path"),
            label_source=d.get("label_source", ""),
            old_prediction=d["old"].get("prediction", ""),
            new_prediction=d["new"].get("prediction", ""),
        )


@dataclass(frozen=True)
class FlipsResult(Gated):
    """Everything ``gaudit flips`` found. Immutable; every report renders this object."""

    inputs: Inputs
    counts: FlipCounts
    metrics: FlipMetrics
    confidence: float
    intervals: dict[str, tuple[float, float] | None]
    mcnemar: McNemarResult
    per_class: tuple[GroupRow, ...]
    slices: dict[str, tuple[GroupRow, ...]]
    flip_matrix: tuple[tuple[str, str, int], ...]
    top_negative_flips: tuple[FlipExample, ...]
    gates: tuple[GateResult, ...] = ()
    task: str = "classification"
    engine: str = "duckdb"
    tool_version: str = __version__
    options: dict[str, Any] = field(default_factory=dict)
    regression: RegressionSummary | None = None
    task_reason: str = ""
    #: what makes the numbers doubtful without making them wrong (e.g. predicted classes
    #: that never occur among the labels); every report shows them
    warnings: tuple[str, ...] = ()
    #: an outcome audit of graded scores: the paired score delta
    scores: ScoreSummary | None = None
    #: ``--what-if``: the flips of the blended scores per alpha (:mod:`.whatif`), or None
    what_if: WhatIf | None = None
    #: the usual quality metrics of both models (accuracy, macro F1, ROC-AUC, R², ...)
    quality: Quality | None = None

    kind = "flips"

    def metric_value(self, name: str) -> float | None:
        """A headline metric by its JSON name (regression error deltas included)."""
        if hasattr(self.metrics, name):
            return getattr(self.metrics, name)
        if name == "scores.mean_delta":
            return self.scores.mean_delta if self.scores else None
        return self.regression.metrics().get(name) if self.regression else None

    def with_gates(self, gates: tuple[GateResult, ...]) -> FlipsResult:
        """This result judged by ``gates``; the what-if's recommendation follows the
        ``max-nfr`` gate among them (so ``gaudit render --max-nfr X`` recomputes it)."""
        curve = self.what_if
        if curve is not None:
            max_nfr = next((g.threshold for g in gates if g.name == "max-nfr"), None)
            curve = curve.recommend(max_nfr)
        return dataclasses.replace(self, gates=gates, what_if=curve)

    def to_dict(self) -> dict[str, Any]:
        """The JSON result document (DESIGN.md, ``schema_version: 1``)."""
        intervals: dict[str, Any] = {"confidence": self.confidence, "method": "wilson"}
        intervals.update({k: list(v) if v else None for k, v in self.intervals.items()})
        metrics = dataclasses.asdict(self.metrics)
        tests: dict[str, Any] = {"mcnemar": self.mcnemar.to_dict()}
        extra: dict[str, Any] = {}
        if self.regression is not None:
            reg = self.regression
            metrics.update(reg.metrics())
            ci = reg.mae_delta_interval
            intervals["mae_delta"] = list(ci) if ci else None
            intervals["mae_delta_method"] = "paired t"
            tests["wilcoxon"] = reg.wilcoxon.to_dict()
            extra = {"tolerance": {"atol": reg.atol, "rtol": reg.rtol},
                     "regression": reg.to_dict()}
        if self.scores is not None:
            sc = self.scores
            ci = sc.mean_delta_interval
            intervals["mean_delta"] = list(ci) if ci else None
            intervals["mean_delta_method"] = "paired t"
            tests["wilcoxon"] = sc.wilcoxon.to_dict()
            extra = {"scores": sc.to_dict()}
        per_class = [r.to_dict("class", "support") for r in self.per_class]
        q = self.quality
        if q is not None:
            for row in per_class:
                found = q.class_row(row["class"])
                if found is not None:
                    row.update(found.to_dict())
            tests["roc_auc_delong"] = q.delong.to_dict() if q.delong else None
            intervals["roc_auc_delta"] = list(q.delong.interval) if q.delong else None
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "task": self.task,
            "task_reason": self.task_reason,
            "warnings": list(self.warnings),
            "engine": self.engine,
            "tool": {"name": "graceful-audit", "version": self.tool_version},
            "inputs": self.inputs.to_dict(),
            **extra,
            "metrics": metrics,
            "counts": dataclasses.asdict(self.counts),
            "intervals": intervals,
            "tests": tests,
            "per_class": per_class,
            "slices": {
                col: [r.to_dict("value", "n") for r in rows] for col, rows in self.slices.items()
            },
            "flip_matrix": [
                {"old_pred": o, "new_pred": n, "count": c} for o, n, c in self.flip_matrix
            ],
            "top_negative_flips": [e.to_dict() for e in self.top_negative_flips],
            **({"what_if": self.what_if.to_dict()} if self.what_if is not None else {}),
            **({"quality": q.to_dict()} if q is not None else {}),
            "options": dict(self.options),
            "gates": [g.to_dict() for g in self.gates],
            "passed": self.passed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlipsResult:
        """Rebuild a result from its JSON document (for ``gaudit render``)."""
        t = d["tests"]["mcnemar"]
        iv = d.get("intervals", {})
        counts = FlipCounts(**d["counts"])
        return cls(
            inputs=Inputs.from_dict(d["inputs"]),
            counts=counts,
            metrics=FlipMetrics(**{f.name: d["metrics"].get(f.name)
                                   for f in dataclasses.fields(FlipMetrics)}),
            confidence=iv.get("confidence", 0.95),
            intervals={p.name: tuple(iv[p.name]) if iv.get(p.name) else None
                       for p in PROPORTIONS if p.name in iv},
            mcnemar=McNemarResult(t["negative_flips"], t["positive_flips"], t.get("statistic"),
                                  t["p_value"], t["method"]),
            per_class=tuple(GroupRow.from_dict(r, "class") for r in d.get("per_class", [])),
            slices={c: tuple(GroupRow.from_dict(r, "value") for r in rows)
                    for c, rows in d.get("slices", {}).items()},
            flip_matrix=tuple((m["old_pred"], m["new_pred"], m["count"])
                              for m in d.get("flip_matrix", [])),
            top_negative_flips=tuple(FlipExample.from_dict(e)
                                     for e in d.get("top_negative_flips", [])),
            gates=tuple(GateResult.from_dict(g) for g in d.get("gates", [])),
            task=d.get("task", "classification"),
            engine=d.get("engine", "duckdb"),
            tool_version=d.get("tool", {}).get("version", __version__),
            options=d.get("options", {}),
            regression=RegressionSummary.from_dict(d["regression"]) if d.get("regression")
            else None,
            task_reason=d.get("task_reason", ""),
            warnings=tuple(str(w) for w in d.get("warnings", [])),
            scores=ScoreSummary.from_dict(d["scores"], iv.get("mean_delta"),
                                          d["tests"]["wilcoxon"]) if d.get("scores") else None,
            what_if=WhatIf.from_dict(d["what_if"], counts) if d.get("what_if") else None,
            quality=_quality_from_dict(d),
        )


def _quality_from_dict(d: dict[str, Any]) -> Quality | None:
    """The saved ``quality`` block, with DeLong's test from ``tests`` and ``intervals``."""
    q = d.get("quality")
    if q is None:
        return None
    quality = Quality.from_dict(q, d.get("task", "classification"), d.get("per_class", []))
    test, ci = d.get("tests", {}).get("roc_auc_delong"), d.get("intervals", {}).get(
        "roc_auc_delta")
    if test and ci:
        delta = quality.delta.get("roc_auc")
        conf = d.get("intervals", {}).get("confidence", 0.95)
        quality = dataclasses.replace(quality, delong=DeLongResult(
            delta if delta is not None else (ci[0] + ci[1]) / 2, test.get("z"),
            test.get("p_value"), (ci[0], ci[1]), conf))
    return quality
