"""Wording and numbers shared by every report of a chain of versions
(``gaudit compat V1 V2 V3 ...``): the inputs, the matrix and the pairs."""

from __future__ import annotations

from typing import Any, NamedTuple

from .common import count, criterion_label, gain, pct, pp, shown

#: The two matrices, in the order every report shows them: JSON key and title.
MATRICES = (("top1", "Top-1 accuracy"), ("map", "mAP"))


def matrix_note() -> str:
    return ("Rows: query version, columns: gallery version; the diagonal is each version "
            "on its own gallery, below it a later version's queries on an earlier gallery "
            "(must beat the diagonal cell of its column)")


def matrix_rows(versions: Any, key: str) -> list[list[str]]:
    """The matrix ``key`` (``top1`` or ``map``) as formatted rows, ``n/a`` where the case
    could not be computed (dimensions differ)."""
    m = versions.top1 if key == "top1" else versions.map
    return [[pct(v) for v in row] for row in m]


class PairRow(NamedTuple):
    """One later-vs-earlier pair, formatted for a table: every value is ours (numbers and
    the names ``V1`` .. ``Vn``), never data; renderers escape them all the same."""

    pair: str  # V3/V1
    cross: str  # M(V3/V1)
    base: str  # M(V1/V1)
    delta: str  # M(V3/V1) - M(V1/V1)
    interval: str  # its interval, ``[-1.15, +1.83] pp`` ("" when there is none)
    p_value: str  # of the paired test; ``n/a`` when it was not run
    significant: bool | None
    gain: str
    flips: str  # retrieval negative flips (right at top-1 in V1/V1, wrong in V3/V1)
    flip_rate: str  # of the queries with a match in the gallery
    compatible: bool
    reason: str  # ``top-1 V3/V1 0.83% <= V1/V1 98.61%`` or the dimensions that differ


def pair_rows(result: Any) -> list[PairRow]:
    rows = []
    for p in result.versions.pairs:
        a = p.audit
        cross, base, _ = p.values(a.criterion)
        t = a.criterion_test
        ci = "" if t is None or t.interval is None else (
            f"[{100 * t.interval[0]:+.2f}, {100 * t.interval[1]:+.2f}] pp")
        p_value = "n/a" if t is None or t.p_value is None else f"{t.p_value:.3g}"
        rows.append(PairRow(f"{p.query}/{p.gallery}", pct(cross), pct(base),
                            pp(a.criterion_delta), ci, p_value, a.criterion_significant,
                            gain(a.update_gain), count(a.retrieval_negative_flips),
                            pct(a.retrieval_negative_flip_rate), a.compatible, p.reason()))
    return rows


def pair_head(result: Any) -> list[str]:
    """Column titles of the pairs table in Markdown and HTML."""
    crit = criterion_label(result)
    return ["pair (query/gallery)", "compatible", f"{crit} Vj/Vi", f"{crit} Vi/Vi",
            "Vj/Vi - Vi/Vi", f"{result.confidence:.0%} interval", "p", "update gain",
            "queries that break"]


def inputs_lines(result: Any) -> list[str]:
    """One line per version, then the items and queries."""
    v, i = result.versions, result.inputs
    lines = [f"V{k + 1} {shown(x.path)} ({count(x.rows)} rows, dim {x.dim}, "
             f"{count(x.unmatched)} ids missing from another version)"
             for k, x in enumerate(v.inputs)]
    mode = "split column" if i.mode == "split" else "leave-one-out"
    lines.append(f"{count(i.matched)} items in all {v.n} files; {count(result.queries)} "
                 f"queries vs {count(i.gallery)} gallery items ({mode}); "
                 f"{count(result.queries_without_positive)} queries without a match in the "
                 "gallery (excluded from the metrics)")
    return lines


def summary_title(result: Any) -> str:
    """Where the breaking queries come from: the newest version on the oldest gallery."""
    s = result.versions.summary_pair
    return (f"{s.label}: right at top-1 in {s.gallery}/{s.gallery}, wrong in "
            f"{s.query}/{s.gallery}")


def criterion_sentence(result: Any) -> str:
    crit = criterion_label(result)
    n = len(result.versions.pairs)
    return (f"Compatible when {crit} Vj/Vi > Vi/Vi for each of the {n} pairs (query version "
            "j later than gallery version i); update gain (Vj/Vi - Vi/Vi) / (Vj/Vj - Vi/Vi): "
            "1 = as good as a full backfill to Vj, 0 = no better than Vi.")


