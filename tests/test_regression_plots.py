"""The histograms behind the regression plots, against numpy, and the plots in the HTML page.

The expected bins never come from the package: both prediction files are read back with
pandas (CSV numbers parsed with Python's ``float``), joined with an explicit
``pandas.merge`` on id, and binned with ``numpy.histogram`` / ``numpy.histogram2d``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graceful_audit import audit_flips
from graceful_audit.regression import HISTOGRAM_BINS, RegressionSummary
from graceful_audit.report.html import render
from graceful_audit.result import FlipsResult

ROOT = Path(__file__).resolve().parents[1]
DIABETES_OLD = ROOT / "sample_data" / "diabetes_old.csv"
DIABETES_NEW = ROOT / "sample_data" / "diabetes_new.parquet"

CAPTIONS = ("Old vs new absolute error per example", "Distribution of d = new error")


def read_back(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str)
        for col in ("target", "prediction"):
            frame[col] = frame[col].map(float)
        return frame
    return pd.read_parquet(path)


def errors(old: pd.DataFrame, new: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    m = pd.merge(old, new, on="id", how="inner", suffixes=("_old", "_new"),
                 validate="one_to_one")
    y = m["target_old"].to_numpy(dtype=float)
    return (np.abs(m["prediction_old"].to_numpy(dtype=float) - y),
            np.abs(m["prediction_new"].to_numpy(dtype=float) - y))


def assert_histograms(reg: RegressionSummary, eo: np.ndarray, en: np.ndarray) -> None:
    d = en - eo
    counts, edges = np.histogram(d, bins=HISTOGRAM_BINS)
    assert reg.d_histogram is not None
    np.testing.assert_allclose(reg.d_histogram.edges, edges, rtol=0, atol=1e-9)
    assert list(reg.d_histogram.counts) == counts.tolist()

    top = float(max(eo.max(), en.max())) if eo.size else 1.0
    grid, xe, ye = np.histogram2d(eo, en, bins=HISTOGRAM_BINS, range=[[0, top], [0, top]])
    np.testing.assert_array_equal(xe, ye)
    assert reg.error_histogram is not None
    np.testing.assert_allclose(reg.error_histogram.edges, xe, rtol=0, atol=1e-9)
    assert [list(r) for r in reg.error_histogram.counts] == grid.astype(int).tolist()
    assert sum(reg.d_histogram.counts) == int(grid.sum()) == d.size


@pytest.fixture(scope="module")
def diabetes():
    return audit_flips(DIABETES_OLD, DIABETES_NEW, atol=10, slice_by=["age_group"])


def test_diabetes_histograms_equal_numpy(diabetes):
    eo, en = errors(read_back(DIABETES_OLD), read_back(DIABETES_NEW))
    assert_histograms(diabetes.regression, eo, en)


def test_values_on_bin_edges(tmp_path):
    """Integer errors land on (or a rounding away from) the edges: the bins still agree."""
    rng = np.random.default_rng(3)
    n = 600
    y = rng.integers(0, 50, n).astype(float)
    old = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "target": y,
                        "prediction": y + rng.integers(-10, 11, n) + 0.5})
    new = old.assign(prediction=y + rng.integers(-13, 8, n) + 0.5).sample(frac=1,
                                                                          random_state=4)
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    result = audit_flips(tmp_path / "old.csv", tmp_path / "new.parquet", atol=2.0,
                         label_col="target", pred_col="prediction", task="regression")
    eo, en = errors(read_back(tmp_path / "old.csv"), read_back(tmp_path / "new.parquet"))
    assert_histograms(result.regression, eo, en)


@pytest.mark.parametrize(("old_shift", "new_shift"), [(1.5, -1.5), (0.0, 0.0)],
                         ids=["all-d-equal", "all-errors-zero"])
def test_degenerate(old_shift, new_shift):
    """Every d equal (numpy widens the range by 0.5 each side); every error zero too."""
    y = np.arange(80, dtype=float) * 1.25
    ids = [f"x{i}" for i in range(80)]
    old = pd.DataFrame({"id": ids, "label": y, "pred": y + old_shift + 0.25 * (old_shift != 0)})
    new = pd.DataFrame({"id": ids, "label": y, "pred": y + new_shift - 0.25 * (new_shift != 0)})
    result = audit_flips(old, new, task="regression", atol=1.0)
    eo = np.abs(old["pred"].to_numpy() - y)
    en = np.abs(new["pred"].to_numpy() - y)
    assert np.unique(en - eo).size == 1
    assert_histograms(result.regression, eo, en)
    edges = result.regression.d_histogram.edges
    assert edges[0] == pytest.approx(-0.5) and edges[-1] == pytest.approx(0.5)
    assert render(result).count("<svg") >= 2


def test_json_round_trip_and_old_documents(diabetes):
    doc = json.loads(json.dumps(diabetes.to_dict()))
    reg = doc["regression"]
    assert len(reg["d_histogram"]["edges"]) == HISTOGRAM_BINS + 1
    assert len(reg["d_histogram"]["counts"]) == HISTOGRAM_BINS
    assert len(reg["error_histogram"]["counts"]) == HISTOGRAM_BINS
    assert all(len(r) == HISTOGRAM_BINS for r in reg["error_histogram"]["counts"])
    back = RegressionSummary.from_dict(reg)
    assert back == diabetes.regression
    assert FlipsResult.from_dict(doc).to_dict() == doc

    # A document written before the histograms existed still loads, and renders without them.
    del reg["d_histogram"], reg["error_histogram"]
    old = FlipsResult.from_dict(doc)
    assert old.regression.d_histogram is None and old.regression.error_histogram is None
    text = render(old)
    assert not any(c in text for c in CAPTIONS)
    assert "MAE delta" in text


def test_html_has_both_plots_and_stays_self_contained(diabetes):
    text = render(diabetes)
    assert text == render(diabetes)  # deterministic
    for caption in CAPTIONS:
        assert caption in text
    assert 'aria-label="old vs new absolute error per example' in text
    assert 'aria-label="distribution of d = e_new - e_old"' in text
    section = text[text.index("Error per example"):]
    section = section[:section.index("</section>")]
    assert section.count("<svg") == 2
    # Nothing can load: no script or external reference, in-page ids only.
    lower = text.lower()
    for tag in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "@import"):
        assert tag not in lower
    assert "http" not in lower
    assert re.findall(r"url\((?!#gaudit-fig)", text) == []
    assert all(h.startswith("#") for h in re.findall(r'\bhref="([^"]*)"', text))


def test_classification_report_has_no_regression_plots():
    old = pd.DataFrame({"id": range(30), "label": ["a", "b"] * 15, "pred": ["a", "b"] * 15})
    new = old.assign(pred=["a"] * 30)
    text = render(audit_flips(old, new))
    assert not any(c in text for c in CAPTIONS) and "Error per example" not in text
