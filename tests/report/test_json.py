"""JSON report: golden file, the document round-trips, one line per list item.

Regenerate the golden file after an intended change (then review its diff)::

    GAUDIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report
"""

from __future__ import annotations

import json

from graceful_audit.report.json import render


def test_golden(golden_result, check_golden):
    check_golden("flips.json", render(golden_result))


def test_compat_golden(compat_result, check_golden):
    check_golden("compat.json", render(compat_result))


def test_versions_golden(versions_result, check_golden):
    check_golden("versions.json", render(versions_result))


def test_document_round_trips(golden_result, compat_result, hostile_result, versions_result):
    for result in (golden_result, compat_result, hostile_result, versions_result):
        text = render(result)
        assert json.loads(text) == json.loads(json.dumps(result.to_dict()))
        assert text.endswith("}\n")


def test_list_items_take_one_line_each(golden_result):
    lines = render(golden_result).splitlines()
    doc = golden_result.to_dict()
    for key in ("per_class", "flip_matrix", "top_negative_flips"):
        start = lines.index(f'  "{key}": [')
        items = lines[start + 1 : start + 1 + len(doc[key])]
        assert [json.loads(line.strip().rstrip(",")) for line in items] == doc[key]
        assert lines[start + 1 + len(doc[key])] in ("  ],", "  ]")
    assert '    "negative_flips": 4,' in lines  # objects stay indented


def test_hostile_values_stay_on_their_line(hostile_result):
    text = render(hostile_result)
    flips = hostile_result.to_dict()["top_negative_flips"]
    start = text.splitlines().index('  "top_negative_flips": [')
    assert len(text.splitlines()) > start + len(flips)  # "\n" in an id is escaped, not raw
    assert "line\\nbreak\\r\\nand\\ttab" in text
