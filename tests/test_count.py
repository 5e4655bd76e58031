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
