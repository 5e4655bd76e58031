"""The worst-flip candidates: merging per-group top-n lists against a brute-force sort."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from graceful_audit.count import Candidate, _settled, _smallest

FAST = settings(max_examples=200, deadline=None, database=None)

# Per group: up to n (key, id) pairs, in any order; ids are unique across groups.
groups_strategy = st.lists(
    st.lists(st.integers(-5, 5), min_size=1, max_size=4), min_size=0, max_size=12
).map(lambda gs: [([k for k in keys], [100 * g + i for i in range(len(keys))], f"y{g}", f"n{g}")
                  for g, keys in enumerate(gs)])


@FAST
@given(groups_strategy, st.integers(1, 6))
def test_smallest_keeps_the_n_smallest_keys(groups: list, n: int) -> None:
    every = [Candidate(k, i, y, new) for keys, ids, y, new in groups
             for k, i in zip(keys, ids, strict=True)]
    got = _smallest(groups, n)
    assert [c.key for c in got] == sorted(c.key for c in every)[:n]
    assert set(got) <= set(every)  # each candidate keeps its own id, label and new class


@FAST
@given(groups_strategy, st.integers(1, 5))
def test_settled_matches_a_full_sort_or_says_open(groups: list, top: int) -> None:
    every = [Candidate(k, i, y, new) for keys, ids, y, new in groups
             for k, i in zip(keys, ids, strict=True)]
    got = _settled(_smallest(groups, top + 1), len(every), top)
    full = sorted(every, key=lambda c: (c.key, c.id))[:top]
    if got is None:  # open only when the key ties across the cut
        assert len(every) > top
        ranked = sorted(c.key for c in every)
        assert ranked[top - 1] == ranked[top]
    else:
        assert got == full


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2),
                          st.one_of(st.integers(-3, 3).map(float),
                                    st.floats(-1e29, 1e29, allow_nan=False),
                                    st.floats(0, 1e-300)),
                          st.integers(0, 5), st.integers(0, 5)),
                max_size=60),
       st.booleans())
def test_before_sums_match_a_brute_force_prefix_sum(rows: list, grouped: bool) -> None:
    """The exact sums over smaller keys, from range buckets and partitioned running sums,
    are the brute-force ones: skewed keys (1e29 beside 1e-300), one key, ties across
    groups, empty input."""
    import duckdb

    from graceful_audit.count import before_sums

    con = duckdb.connect()
    con.execute("CREATE TABLE src0 (g INTEGER, k DOUBLE, p BIGINT, q BIGINT)")
    if rows:
        con.executemany("INSERT INTO src0 VALUES (?, ?, ?, ?)", rows)
    by = "g" if grouped else None
    keys = "g, k" if grouped else "k"
    got = con.execute(
        f"WITH s AS (SELECT {keys}, sum(p) AS p, sum(q) AS q FROM src0 GROUP BY {keys}), "
        f"{before_sums('w', 's', 'k', ['p', 'q'], by=by)} "
        f"SELECT {keys}, before_p, before_q FROM w").fetchall()
    want = {}
    for g, k, _p, _q in rows:
        g = g if grouped else None
        want[(g, k)] = tuple(sum(r[m] for r in rows if (r[0] == g or not grouped) and r[1] < k)
                             for m in (2, 3))
    assert {((r[0], r[1]) if grouped else (None, r[0])): tuple(int(v) for v in r[-2:])
            for r in got} == want
