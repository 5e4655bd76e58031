"""The join plan's checks: every check count against a direct count over the inputs.

The count step groups by one integer per row whose bits are the checks, and sends clean
rows to a constant without evaluating each check (:meth:`Plan.checks_sql`). These tests
draw inputs with every kind of defect (null and unmatched ids, null labels and
predictions, labels that disagree, a labels file that misses or adds ids) and compare the
engine's counts with the same counts taken row by row in Python.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from graceful_audit.align import Aligner, Columns, Plan, resolve_side
from graceful_audit.count import _checks, count_flips
from graceful_audit.engine import open_engine

CHECKS = settings(max_examples=60, deadline=None, database=None)

Row = tuple[int | None, int | None, int | None]  # id, label, pred


def rows(max_id: int = 12, label: bool = True) -> st.SearchStrategy[list[Row]]:
    """Rows with unique non-null ids (plus maybe null ids), labels and predictions."""
    value = st.one_of(st.none(), st.integers(0, 2))
    ids = st.lists(st.integers(0, max_id), unique=True, max_size=max_id)
    nulls = st.integers(0, 2)
    return st.tuples(ids, nulls).filter(lambda t: len(t[0]) + t[1] > 0).flatmap(lambda t: st.tuples(
        st.lists(st.tuples(value if label else st.none(), value),
                 min_size=len(t[0]) + t[1], max_size=len(t[0]) + t[1]),
        st.just([*t[0], *[None] * t[1]]),
    )).map(lambda t: [(i, y, p) for i, (y, p) in zip(t[1], t[0], strict=True)])


def table(data: list[Row], label: bool = True) -> pa.Table:
    cols = {"id": pa.array([r[0] for r in data], pa.int64())}
    if label:
        cols["label"] = pa.array([r[1] for r in data], pa.int64())
    cols["pred"] = pa.array([r[2] for r in data], pa.int64())
    return pa.table(cols)


def expected(old: list[Row], new: list[Row], labels: list[tuple[int | None, int | None]] | None,
             new_has_label: bool) -> dict[str, int]:
    """Every check counted row by row, without SQL."""
    o = {i: (y, p) for i, y, p in old if i is not None}
    n = {i: (y, p) for i, y, p in new if i is not None}
    lab = None if labels is None else {i: y for i, y in labels if i is not None}
    matched = o.keys() & n.keys()
    audited = matched if lab is None else matched & lab.keys()

    def y_of(i: int) -> int | None:
        if lab is not None:
            return lab[i]
        yo, yn = o[i][0], n[i][0] if new_has_label else None
        return yo if yo is not None else yn

    no_id = sum(r[0] is None for r in old) + sum(r[0] is None for r in new)
    c = {
        "o_seen": len(o), "n_seen": len(n), "no_id": no_id,
        "matched": len(matched),
        "un_old": len(o.keys() - n.keys()), "un_new": len(n.keys() - o.keys()),
        "null_y": sum(y_of(i) is None for i in audited),
        "null_o": sum(o[i][1] is None for i in audited),
        "null_n": sum(n[i][1] is None for i in audited),
    }
    if lab is not None:
        assert labels is not None
        c.update(l_seen=len(lab), no_id=no_id + sum(i is None for i, _y in labels),
                 missing_label=len(matched - lab.keys()), unused=len(lab.keys() - matched))
    elif new_has_label:
        c["disagree"] = sum(o[i][0] is not None and n[i][0] is not None and o[i][0] != n[i][0]
                            for i in matched)
        c["one_label"] = sum((o[i][0] is None) != (n[i][0] is None) for i in matched)
    return c


def counted(old: pa.Table, new: pa.Table, labels: pa.Table | None) -> tuple[Plan, dict, dict]:
    """The checks as the audit counts them, and counted with every check evaluated."""
    with open_engine() as eng:
        cols = Columns()
        sides = [resolve_side(eng.open(t, role), cols, eng.dialect)
                 for t, role in ((old, "OLD"), (new, "NEW"))]
        lab = eng.open(labels, "LABELS") if labels is not None else None
        plan = Aligner(eng).plan(*sides, lab, cols)
        fast = count_flips(eng, plan, top=3).checks
        # The same counts with the clean shortcut disabled: every row evaluates every check.
        slow_plan = dataclasses.replace(plan, clean="FALSE")
        per_mask = dict(eng.rows(f"{plan.with_sql} SELECT {slow_plan.checks_sql()} AS m, "
                                 "count(*) FROM j GROUP BY m"))
        return plan, fast, _checks(plan, per_mask)


@CHECKS
@given(rows(), rows(), st.booleans())
def test_checks_match_a_row_by_row_count(old: list[Row], new: list[Row], new_label: bool
                                         ) -> None:
    new = new if new_label else [(i, None, p) for i, _y, p in new]
    plan, fast, slow = counted(table(old), table(new, new_label), None)
    want = expected(old, new, None, new_label)
    assert fast == want
    assert slow == want
    assert set(plan.checks) == set(want)


@CHECKS
@given(rows(), rows(), st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 14)),
                                          st.one_of(st.none(), st.integers(0, 2))),
                                min_size=1, max_size=14).map(lambda r: list({i: (i, y) for i, y in r
                                                                 if i is not None}.values())
                                                 + [r for r in r if r[0] is None][:1]))
def test_checks_with_a_labels_file(old: list[Row], new: list[Row],
                                   labels: list[tuple[int | None, int | None]]) -> None:
    lab = pa.table({"id": pa.array([i for i, _y in labels], pa.int64()),
                    "label": pa.array([y for _i, y in labels], pa.int64())})
    _plan, fast, slow = counted(table(old, False), table(new, False), lab)
    want = expected(old, new, labels, False)
    assert fast == want
    assert slow == want


def test_clean_rows_pass_exactly_the_clean_checks() -> None:
    """A matched, labelled, predicted row lands on the constant of ``clean_checks``."""
    old = [(1, 0, 0), (2, 1, 0), (3, None, 1), (4, 2, None), (None, 1, 1)]
    new = [(1, 0, 1), (2, 2, 0), (3, 1, 1), (4, 2, 2), (5, 0, 0)]
    plan, fast, slow = counted(table(old), table(new), None)
    assert plan.clean_checks == ("o_seen", "n_seen", "matched")
    assert fast == slow == expected(old, new, None, True)
    assert fast["disagree"] == 1 and fast["null_o"] == 1 and fast["un_new"] == 1
    assert plan.audited(sum(1 << list(plan.checks).index(c) for c in plan.clean_checks))
    assert not plan.audited(1)  # in OLD only
