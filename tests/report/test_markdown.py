"""Markdown report: golden file, escaping of hostile values, table shape.

Regenerate the golden file after an intended change (then review its diff)::

    GAUDIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graceful_audit.report.markdown import MAX_CELL, md_escape, render

from .conftest import HOSTILE_IDS

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def tables(text: str) -> list[list[str]]:
    """The Markdown tables of ``text``, each as its list of lines."""
    out: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


def cells(line: str) -> int:
    """Columns of a table row: unescaped pipes minus one."""
    return len(UNESCAPED_PIPE.findall(line)) - 1


def test_golden(golden_result, check_golden):
    check_golden("flips.md", render(golden_result))


def test_sections_in_order(golden_result):
    text = render(golden_result)
    order = ["**❌ REGRESSION: 4 negative flips", "**Inputs:**", "#### Headline metrics",
             "McNemar's test", "#### Gates", "#### Classes with the most negative flips",
             "#### Slices by device", "#### Worst negative flips"]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    assert "| max\\-nfr" not in text  # gate names are plain
    assert "❌ **breached**" in text and "✅ held" in text
    assert "| **negative flip rate (NFR)**: 4 flips | **8.33%** | [3.29%, 19.55%] |" in text


def test_no_gates_and_passing_verdicts(golden_result):
    from dataclasses import replace

    none = render(replace(golden_result, gates=()))
    assert none.splitlines()[2].startswith("**NO GATES SET: 4 negative flips")
    assert "No gate set" in none
    held = tuple(replace(g, passed=True, status="pass") for g in golden_result.gates)
    assert render(replace(golden_result, gates=held)).splitlines()[2].startswith("**✅ PASSED")


def test_hostile_values_cannot_break_tables_or_inject(hostile_result):
    text = render(hostile_result)
    assert "<script" not in text.lower()
    assert "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    for table in tables(text):
        width = cells(table[0])
        assert all(cells(row) == width for row in table), table
        assert re.fullmatch(r"\| (:---|---:)( \| (:---|---:))* \|", table[1])
    worst = tables(text)[-1]
    data_cells = list(worst[2:])  # every cell of this table is hostile data
    for t in tables(text)[2:-1]:  # classes and slices: the first cell is the value
        data_cells += [UNESCAPED_PIPE.split(row)[1] for row in t[2:]]
    for cell in data_cells:
        # every backtick, asterisk, underscore, bracket and dollar in data is escaped
        assert not re.search(r"(?<!\\)[`*_\[\]$]", cell.replace("\\\\", "")), cell
    assert len(worst) == 2 + len(HOSTILE_IDS)  # no row was split by a line break
    assert max(len(line) for line in text.splitlines()) < 1000  # the 5,000-char id is cut
    assert "x" * (MAX_CELL - 1) + "…" in text
    assert "@&#8203;admin" in text  # no @mention
    assert "https\\://evil" in text  # no autolink


@pytest.mark.parametrize(("raw", "escaped"), [
    ("a|b", "a\\|b"),
    ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("`code`", "\\`code\\`"),
    ("*x* _y_ ~z~", "\\*x\\* \\_y\\_ \\~z\\~"),
    ("[a](b)", "\\[a\\](b)"),
    ("one\ntwo\r\nthree\u2028four", "one\\\\ntwo\\\\r\\\\nthree\\\\u2028four"),
    ("back\\slash", "back\\\\slash"),
    ("a & b", "a &amp; b"),
    ("$math$", "\\$math\\$"),
    ("bell\x07", "bell\\\\x07"),
    ("rtl\u202eevil", "rtl\\\\u202eevil"),
    ("#123 GH-7 a#1 @me", "#&#8203;123 GH-&#8203;7 a#&#8203;1 @&#8203;me"),
    ("[bold]x[/bold]", "\\[bold\\]x\\[/bold\\]"),
    (None, ""),
    (3, "3"),
])
def test_md_escape(raw, escaped):
    assert md_escape(raw) == escaped


def test_md_escape_truncates():
    assert md_escape("y" * 500) == "y" * (MAX_CELL - 1) + "…"
    assert md_escape("y" * 500, limit=None) == "y" * 500


@given(st.text(max_size=300))
def test_md_escape_is_one_safe_line(value):
    out = md_escape(value)
    assert "\n" not in out and "\r" not in out
    assert "<" not in out and ">" not in out
    assert not UNESCAPED_PIPE.search(out.replace("\\\\", ""))
    assert len(out) <= 8 * MAX_CELL  # every character grows at most to "@&#8203;"


def test_other_kinds_are_not_implemented():
    with pytest.raises(NotImplementedError, match="ranking"):
        render(SimpleNamespace(kind="ranking"))


def test_no_negative_flips_says_so():
    import pandas as pd

    from graceful_audit import audit_flips

    old = pd.DataFrame({"id": ["a", "b", "c"], "label": ["x", "y", "x"], "pred": ["x", "y", "y"]})
    text = render(audit_flips(old, old.assign(pred=["x", "y", "x"])))
    assert "No negative flips" in text
    assert "#### Classes" not in text and "#### Worst" not in text


# --------------------------------------------------------------------------- compat


def test_compat_golden(compat_result, check_golden):
    check_golden("compat.md", render(compat_result))


def test_compat_sections_in_order(compat_result):
    text = render(compat_result)
    order = ["### gaudit compat", "**❌ REGRESSION: NOT backward compatible", "**Inputs:**",
             "**Items:**", "#### Retrieval", "#### Update gain and negative flips",
             "#### Gates", "#### Queries that break (worst 6 of 6"]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    assert "**20 queries** vs 20 gallery items (split column)" in text
    assert "dim 2" in text and "0 queries without a match" in text
    # the four cases, in order, the one that matters in bold
    # every top-k with its Wilson interval (statsmodels: 17 of 20 -> [0.6396, 0.9476])
    assert "| old/old | old queries, old gallery (today) | 85.00% [63.96%, 94.76%] | " \
           "100.00% [83.89%, 100.00%] | 100.00% [83.89%, 100.00%] | 91.25% |" in text
    assert "| **new/old** | new queries, old gallery (no backfill) | 70.00% [48.10%, 85.45%] |" \
        in text
    # the paired test of the criterion: McNemar exact on 3 gained vs 6 lost, 2 * 130 / 512
    assert ("McNemar's test (exact binomial) on 3 queries right at top-1 only in new/old vs 6 "
            "only in old/old: p = 0.508 (not significant at the 5% level)") in text
    assert text.index("| old/old |") < text.index("| new/new |") < text.index(
        "| **new/old** |") < text.index("| old/new |")
    assert "**-1.000**" in text and "**6** of 20 queries (30.00%)" in text
    assert "❌ **breached**" in text and "✅ held" in text
    assert "| ada\\-0" not in text and "| ada-0 | ada | 2 | bo-2 | bo |" in text


def test_versions_golden(versions_result, check_golden):
    check_golden("versions.md", render(versions_result))


def test_versions_sections(versions_result):
    text = render(versions_result)
    order = ["### gaudit compat", "**❌ REGRESSION: NOT backward compatible across 3 versions",
             "**Inputs:** V1 &lt;Arrow table&gt;", "#### Top-1 accuracy: query version x gallery",
             "#### mAP: query version x gallery", "#### Pairs", "#### Gates",
             "#### Queries that break (V3 queries on V1 gallery: right at top-1 in V1/V1, wrong "
             "in V3/V1; worst 6 of 6"]
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    # the matrix: row = query version, the diagonal in bold
    assert "| **V1** | **85.00%** | 100.00% | 85.00% |" in text
    assert "| **V2** | 95.00% | **100.00%** |" in text
    assert "| **V3** | 70.00% | 75.00% | **100.00%** |" in text
    assert "| **V2/V1** | ✅ yes | 95.00% | 85.00% | +10.00 pp |" in text
    assert "| **V3/V2** | ❌ **no**: top-1 V3/V2 75.00% &lt;= V2/V2 100.00% |" in text
    assert "0.7 (70.00%) at V3 queries on V1 gallery" in text


def test_compat_tables_are_well_formed(compat_result, hostile_compat_result, mismatch_result,
                                       versions_result):
    for result in (compat_result, hostile_compat_result, mismatch_result, versions_result):
        for table in tables(render(result)):
            width = cells(table[0])
            assert all(cells(row) == width for row in table), table


def test_compat_hostile_values_escaped(hostile_compat_result):
    text = render(hostile_compat_result)
    assert "<script" not in text.lower() and "<Arrow" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    breaking = tables(text)[-1]
    assert len(breaking) == 2 + len(hostile_compat_result.breaking_queries)
    assert len(hostile_compat_result.breaking_queries) == len(HOSTILE_IDS)
    for row in breaking[2:]:
        assert cells(row) == 5, row  # no pipe, newline or backtick broke the row
        for cell in UNESCAPED_PIPE.split(row)[1:-1]:
            assert not re.search(r"(?<!\\)[`*_\[\]$]", cell.replace("\\\\", "")), cell
    assert max(len(line) for line in text.splitlines()) < 1000  # the 5,000-char id is cut
    assert "x" * (MAX_CELL - 1) + "…" in text
    assert "@&#8203;admin" in text and "https\\://evil" in text


def test_compat_dimension_mismatch(mismatch_result):
    text = render(mismatch_result)
    assert "dimension 4 vs 6: not backward compatible" in text
    assert "| **new/old** | new queries, old gallery (no backfill) · *unavailable: dimension " \
           "6 vs 4: cannot compare* | n/a | n/a | n/a | n/a |" in text
    assert "Cannot be counted: the new/old case is unavailable (dimension 6 vs 4" in text
    assert "⚠️ n/a (undefined, cannot fail)" in text  # min-update-gain: the gain is undefined


def test_compat_no_gates_and_no_breaking_queries():
    from graceful_audit import audit_compat

    from .conftest import mismatch_tables

    old, _ = mismatch_tables()
    text = render(audit_compat(old, old))
    assert text.splitlines()[2].startswith("**NO GATES SET: NOT backward compatible")
    assert "`--require-compatible`" in text and "`[tool.gaudit.compat]`" in text
    assert "No query breaks" in text


def test_versions_hostile_values_escaped(tmp_path):
    import pyarrow.parquet as pq

    from graceful_audit import audit_compat

    from .conftest import hostile_compat_tables

    old, new = hostile_compat_tables()
    path = tmp_path / "a|b `x` <b>.parquet"
    pq.write_table(new, path)
    text = render(audit_compat(old, new, str(path), top=20))
    assert "<script" not in text.lower() and "<b>" not in text
    assert "a\\|b \\`x\\` &lt;b&gt;.parquet" in text
    for table in tables(text):
        width = cells(table[0])
        assert all(cells(row) == width for row in table), table
