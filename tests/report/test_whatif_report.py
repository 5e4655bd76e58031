"""The what-if section in every format (issue 17), on the golden frames: golden JSON and
Markdown, the HTML curve, the terminal table."""

from __future__ import annotations

from typing import Any

import pytest

from graceful_audit import audit_flips
from graceful_audit.report import Format, render

from .conftest import golden_frames


@pytest.fixture(scope="module")
def what_if_result() -> Any:
    old, new = golden_frames()
    return audit_flips(old, new, score_cols="prob_*", slice_by=["device"], what_if=True,
                       what_if_steps=11, gates={"max-nfr": 0.05, "min-btc": 0.8})


def test_golden_json(what_if_result, check_golden):
    check_golden("flips_what_if.json", render(what_if_result, Format.JSON))


def test_golden_markdown(what_if_result, check_golden):
    check_golden("flips_what_if.md", render(what_if_result, Format.MARKDOWN))


def test_every_format_shows_the_recommendation(what_if_result):
    rec = what_if_result.what_if.recommended
    assert rec is not None and rec.negative_flip_rate <= 0.05
    for fmt in (Format.TEXT, Format.MARKDOWN, Format.HTML):
        text = " ".join(render(what_if_result, fmt).split())
        assert "What-if: blending" in text and "--max-nfr 0.05" in text, fmt
    html = render(what_if_result, Format.HTML)
    assert html.count('<svg class="plot') == 1 + render(
        audit_flips(*golden_frames(), score_cols="prob_*", slice_by=["device"],
                    gates={"max-nfr": 0.05, "min-btc": 0.8}), Format.HTML).count(
        '<svg class="plot')


def test_a_thousand_points_stay_short(what_if_result):
    """K = 1001: the tables list 21 points (the recommended one included), the JSON all."""
    old, new = golden_frames()
    result = audit_flips(old, new, score_cols="prob_*", what_if=True, what_if_steps=1001,
                         gates={"max-nfr": 0.05})
    assert len(result.to_dict()["what_if"]["points"]) == 1001
    md = render(result, Format.MARKDOWN)
    assert "(21 of 1001 points)" in md or "(22 of 1001 points)" in md
    html = render(result, Format.HTML)
    assert "of 1001 points shown, every one in the JSON" in html
    rec = result.what_if.recommended
    assert f"| {rec.alpha:.4g} |" in md and "recommended" in md
