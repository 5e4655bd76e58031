"""``gaudit compat`` on a small query set: Wilson intervals of every top-k, the paired test
of the criterion, the verdict that says when a margin is not significant, and the gate
``--max-cross-drop``, each against an independent computation (statsmodels, scipy, a
brute-force numpy ranking, numbers worked by hand)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ttest_rel
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.proportion import proportion_confint
from typer.testing import CliRunner

from graceful_audit import audit_compat
from graceful_audit.cli import app
from graceful_audit.compat import CompatResult, criterion_test
from graceful_audit.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
OLD = str(ROOT / "sample_data" / "emb_old.parquet")
COMPATIBLE = str(ROOT / "sample_data" / "emb_new_compatible.parquet")
INCOMPATIBLE = str(ROOT / "sample_data" / "emb_new_incompatible.parquet")
runner = CliRunner()


def _frame(ids, labels, emb, split=None) -> pa.Table:
    d = {"id": ids, "label": labels, "embedding": list(np.asarray(emb, dtype=np.float32))}
    if split is not None:
        d["split"] = split
    return pa.table(d)


def ranks(q, ql, g, gl, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    """Per query, by sorting the full cosine similarity matrix in float64 (ties by gallery
    index): the 1-based rank of the first positive (0: none) and the AP (0: none)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    s = q.astype(np.float64) @ g.astype(np.float64).T
    first, ap = np.zeros(len(q), dtype=int), np.zeros(len(q))
    for i in range(len(q)):
        idx = np.arange(len(g))
        if exclude is not None:
            idx = idx[idx != exclude[i]]
        order = idx[np.lexsort((idx, -s[i, idx]))]
        hit = np.flatnonzero(gl[order] == ql[i]) + 1
        if hit.size:
            first[i] = hit[0]
            ap[i] = np.mean(np.arange(1, hit.size + 1) / hit)
    return first, ap


def _random_pair(seed: int, n: int = 90, d: int = 6, classes: int = 9,
                 split: bool = True) -> tuple[pa.Table, pa.Table, dict]:
    """Old and new embeddings of the same items, and the brute-force per-query results."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, d))
    e_old = (centers[labels] + rng.uniform(0.6, 1.4) * rng.normal(size=(n, d))).astype(np.float32)
    e_new = (centers[labels] + rng.uniform(0.4, 1.6) * rng.normal(size=(n, d))).astype(np.float32)
    ids = [f"x{i:03d}" for i in range(n)]  # sorted: the audit's order
    sp = np.where(rng.uniform(size=n) < 0.3, "query", "gallery") if split else None
    old = _frame(ids, labels, e_old, None if sp is None else list(sp))
    new = _frame(ids[::-1], labels[::-1], e_new[::-1], None if sp is None else list(sp[::-1]))
    if split:
        qm = sp == "query"
        args = {"oo": (e_old[qm], labels[qm], e_old[~qm], labels[~qm], None),
                "no": (e_new[qm], labels[qm], e_old[~qm], labels[~qm], None)}
    else:
        args = {"oo": (e_old, labels, e_old, labels, np.arange(n)),
                "no": (e_new, labels, e_old, labels, np.arange(n))}
    truth = {case: ranks(*a) for case, a in args.items()}
    return old, new, truth


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("conf", [0.8, 0.95, 0.99])
def test_every_topk_of_every_case_has_the_statsmodels_wilson_interval(conf):
    old, new, _ = _random_pair(1)
    r = audit_compat(old, new, confidence=conf)
    doc = r.to_dict()
    assert doc["intervals"]["confidence"] == conf and doc["intervals"]["method"] == "wilson"
    for name, case in r.cases.items():
        n = case.queries_evaluated
        for k in (1, 5, 10):
            hits = round(case.topk[k] * n)
            lo, hi = proportion_confint(hits, n, alpha=1 - conf, method="wilson")
            got = doc["cases"][name]["intervals"][f"top{k}"]
            assert got == pytest.approx([max(lo, 0), min(hi, 1)], abs=1e-12), (name, k)


def test_unavailable_cases_have_null_intervals_and_no_criterion_test():
    rng = np.random.default_rng(0)
    ids, labels = [f"i{i}" for i in range(30)], np.arange(30) % 3
    r = audit_compat(_frame(ids, labels, rng.normal(size=(30, 4))),
                     _frame(ids, labels, rng.normal(size=(30, 6))),
                     gates={"max-cross-drop": 0.0})
    doc = r.to_dict()
    assert doc["cases"]["new/old"]["intervals"] == {"top1": None, "top5": None, "top10": None}
    assert doc["cases"]["new/new"]["intervals"]["top1"] is not None
    assert doc["tests"] == {"criterion": None}
    assert doc["intervals"]["criterion_delta"] is None
    assert doc["criterion_significant"] is None and doc["criterion_delta"] is None
    assert r.gates[0].status == "fail"  # new/old finds nothing: the drop is all of old/old
    assert "significant" not in r.headline() and r.significance() == ""


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.5, 1.5, True])
def test_confidence_out_of_range_is_a_usage_error(bad):
    old, new, _ = _random_pair(2, n=30)
    with pytest.raises(UsageError, match="--confidence"):
        audit_compat(old, new, confidence=bad)


# --------------------------------------------------------------------------- paired test


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("seed", [3, 4, 5])
def test_mcnemar_counts_and_p_value_match_brute_force_and_statsmodels(seed, split):
    old, new, truth = _random_pair(seed, split=split)
    r = audit_compat(old, new)
    (f_oo, _), (f_no, _) = truth["oo"], truth["no"]
    b = int(np.sum((f_oo == 1) & (f_no != 1)))
    c = int(np.sum((f_oo != 1) & (f_no == 1)))
    t = r.criterion_test
    assert (t.b, t.c) == (b, c) and b == r.retrieval_negative_flips
    assert t.n == int(np.sum(f_oo > 0)) == r.cases["old/old"].queries_evaluated
    sm = sm_mcnemar([[0, b], [c, 0]], exact=b + c < 25, correction=True)
    assert t.p_value == pytest.approx(sm.pvalue, rel=1e-12)
    assert t.method == ("exact" if b + c < 25 else "chi2")
    doc = r.to_dict()
    assert doc["tests"]["criterion"] == {"p_value": t.p_value, "method": t.method, "b": b,
                                         "c": c, "statistic": t.statistic, "queries": t.n}
    assert doc["criterion_significant"] is bool(sm.pvalue < 0.05)
    n = t.n
    assert doc["criterion_delta"] == pytest.approx((c - b) / n, abs=1e-15)
    # Newcombe's interval of new/old - old/old from the brute-force 2x2 table.
    both = int(np.sum((f_oo == 1) & (f_no == 1)))
    x_no, x_oo = both + c, both + b
    l1, u1 = proportion_confint(x_no, n, method="wilson")
    l2, u2 = proportion_confint(x_oo, n, method="wilson")
    p1, p2 = x_no / n, x_oo / n
    a = both * (n - both - b - c) - c * b
    margins = x_no * (n - x_no) * x_oo * (n - x_oo)
    phi = 0.0 if margins == 0 or 0 <= a <= n / 2 else (
        (a - n / 2 if a > n / 2 else a) / math.sqrt(margins))
    lo = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    hi = p1 - p2 + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    assert doc["intervals"]["criterion_delta"] == pytest.approx([max(lo, -1), min(hi, 1)],
                                                                abs=1e-12)
    assert doc["intervals"]["criterion_delta_method"] == "newcombe"


@pytest.mark.parametrize("conf", [0.9, 0.95])
@pytest.mark.parametrize("split", [True, False])
def test_map_criterion_is_scipys_paired_t_on_brute_force_aps(split, conf):
    old, new, truth = _random_pair(7, split=split)
    r = audit_compat(old, new, criterion="map", confidence=conf)
    (f_oo, ap_oo), (_, ap_no) = truth["oo"], truth["no"]
    keep = f_oo > 0
    want = ttest_rel(ap_no[keep], ap_oo[keep])
    ci = want.confidence_interval(conf)
    t = r.criterion_test
    assert t.method == "paired t" and t.b is None and t.c is None and t.n == int(keep.sum())
    assert t.p_value == pytest.approx(want.pvalue, rel=1e-6)
    assert t.interval == pytest.approx((ci.low, ci.high), abs=1e-9)
    doc = r.to_dict()
    assert doc["tests"]["criterion"]["b"] is None and doc["tests"]["criterion"]["c"] is None
    assert doc["intervals"]["criterion_delta_method"] == "paired t"
    assert doc["criterion_delta"] == pytest.approx(
        r.cases["new/old"].map - r.cases["old/old"].map, abs=1e-15)
    assert doc["criterion_significant"] is bool(want.pvalue < 1 - conf)


def _tiny() -> tuple[pa.Table, pa.Table]:
    """Worked by hand. Gallery: g-a (label a) along x, g-b (label b) along y, the same in
    both models. Four queries, two per label; the old model points each at its own
    identity, the new one points q1 (a) and q3 (b) at the other identity."""
    ids = ["g-a", "g-b", "q1", "q2", "q3", "q4"]
    labels = ["a", "b", "a", "a", "b", "b"]
    split = ["gallery", "gallery", "query", "query", "query", "query"]
    e_old = [[1, 0], [0, 1], [1, 0.1], [1, 0.2], [0.1, 1], [0.2, 1]]
    e_new = [[1, 0], [0, 1], [0.1, 1], [1, 0.2], [1, 0.1], [0.2, 1]]
    return _frame(ids, labels, e_old, split), _frame(ids, labels, e_new, split)


def test_hand_worked_tiny_case():
    r = audit_compat(*_tiny())
    # old/old 4 of 4 right at top-1, new/old 2 of 4: b = 2 (q1, q3), c = 0.
    assert r.cases["old/old"].topk[1] == 1.0 and r.cases["new/old"].topk[1] == 0.5
    t = r.criterion_test
    assert (t.b, t.c, t.n, t.method) == (2, 0, 4, "exact")
    assert t.p_value == 0.5  # two-sided exact binomial: 2 * P(X <= 0 | 2, 1/2) = 2 / 4
    # Wilson for 2 of 4 at z = 1.959964: centre 1/2, half = z / (1 + z^2/4) *
    # sqrt(1/16 + z^2/64) = 0.349965...
    z = 1.959963984540054
    half = z / (1 + z * z / 4) * math.sqrt(1 / 16 + z * z / 64)
    assert r.cases["new/old"].intervals[1] == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    assert r.cases["old/old"].intervals[1][1] == 1.0
    assert r.criterion_delta == -0.5 and r.cross_drop == 0.5
    assert r.criterion_significant is False
    assert r.headline() == (
        "NOT backward compatible (top-1 new/old 50.00% <= old/old 100.00%), but the margin "
        "is not significant at the 5% level (McNemar exact p = 0.5; 0 queries gained, 2 lost "
        "at top-1); 2 of 4 queries break")
    # mAP: one positive of two gallery items, AP 1 or 1/2: d = (-1/2, 0, -1/2, 0),
    # mean -1/4, sd = sqrt(1/12), t = -1/4 / sqrt(1/48) = -sqrt(3), 3 degrees of freedom.
    m = audit_compat(*_tiny(), criterion="map").criterion_test
    assert m.statistic == pytest.approx(-math.sqrt(3), rel=1e-12)
    assert m.p_value == pytest.approx(0.18169011381620928, rel=1e-9)


def test_single_query_map_cannot_be_tested():
    old, new = _tiny()
    keep = [0, 1, 2]  # two gallery items, one query
    r = audit_compat(old.take(keep), new.take(keep), criterion="map")
    assert r.criterion_test.p_value is None and r.criterion_significant is None
    assert "cannot be tested on one query" in r.significance()
    assert "significant" not in r.headline()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(0, 1), st.floats(0, 1)),
                min_size=1, max_size=80), st.sampled_from(["top1", "map"]))
def test_swapping_the_two_cases_swaps_b_and_c_and_mirrors_the_interval(rows, crit):
    def case(hit, ap):
        hit = np.array(hit)
        return SimpleNamespace(first_positive_rank=np.where(hit, 1, 2), top1_correct=hit,
                               average_precision=np.array(ap, dtype=float))

    x = case([r[0] for r in rows], [r[2] for r in rows])
    y = case([r[1] for r in rows], [r[3] for r in rows])
    fwd, back = criterion_test(x, y, crit), criterion_test(y, x, crit)
    assert (fwd.b, fwd.c) == (back.c, back.b)
    if fwd.p_value is None:
        assert back.p_value is None
    else:
        assert fwd.p_value == pytest.approx(back.p_value, rel=1e-9, abs=1e-300)
    if fwd.interval is not None:
        assert back.interval == pytest.approx((-fwd.interval[1], -fwd.interval[0]), abs=1e-12)


# --------------------------------------------------------------------------- sample, CLI


@pytest.fixture(scope="module")
def sample_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compat") / "result.json"
    r = runner.invoke(app, ["compat", OLD, COMPATIBLE, "-f", "json", "-o", str(path), "-q"])
    assert r.exit_code == 0, r.output
    return path


def test_sample_one_query_decides_and_the_report_says_so(sample_json):
    doc = json.loads(sample_json.read_text())
    assert doc["compatible"] is True
    assert doc["tests"]["criterion"]["b"] == 1 and doc["tests"]["criterion"]["c"] == 2
    assert doc["tests"]["criterion"]["p_value"] == 1.0  # exact: 2 * P(X <= 1 | 3) = 1
    assert doc["criterion_significant"] is False
    lo, hi = doc["intervals"]["criterion_delta"]
    assert lo < 0 < hi
    assert round(doc["cases"]["new/old"]["top1"] * 360) == 356
    assert round(doc["cases"]["old/old"]["top1"] * 360) == 355
    for fmt in ("text", "markdown", "html", "junit"):
        out = runner.invoke(app, ["render", str(sample_json), "-f", fmt])
        assert out.exit_code == 0, out.output
        flat = " ".join(out.stdout.split())
        assert ("backward compatible (top-1 new/old 98.89% &gt; old/old 98.61%), but the margin "
                "is not significant at the 5% level (McNemar exact p = 1; 2 queries gained, 1 "
                "lost at top-1)").replace("&gt;", "&gt;" if fmt in ("markdown", "html", "junit")
                                          else ">") in flat, fmt
        if fmt != "junit":  # the intervals beside the top-k numbers
            assert ("97.2-99.6%" if fmt == "text" else "98.89% [97.18%, 99.57%]"
                    if fmt == "markdown" else "[97.18%, 99.57%]") in flat, fmt
        assert "p = 1 (not significant at the 5% level)" in flat, fmt


def test_sample_json_round_trips_through_render(sample_json):
    again = runner.invoke(app, ["render", str(sample_json), "-f", "json"])
    assert again.exit_code == 0
    assert again.stdout.rstrip("\n") == sample_json.read_text().rstrip("\n")
    doc = json.loads(sample_json.read_text())
    back = CompatResult.from_dict(doc)
    assert back.criterion_test.interval == tuple(doc["intervals"]["criterion_delta"])
    assert back.cases["new/old"].intervals[5] == tuple(doc["cases"]["new/old"]["intervals"]["top5"])


def test_incompatible_sample_is_significant_and_says_nothing_more():
    r = audit_compat(OLD, INCOMPATIBLE)
    assert r.criterion_significant is True and r.criterion_test.method == "chi2"
    assert "significant" not in r.headline()
    assert "(significant at the 5% level)" in r.significance()


@pytest.mark.parametrize(
    ("flags", "code", "status"),
    [
        (["--max-cross-drop", "0"], 0, "pass"),            # 355 -> 356 of 360: held
        (["--max-cross-drop", "-0.002"], 0, "pass"),       # gained 1/360 = 0.0028 >= 0.002
        (["--max-cross-drop", "-0.01"], 1, "fail"),        # demands a gain of 1%: breached
        (["--max-cross-drop", "0", "--criterion", "map"], 0, "pass"),
        (["--max-cross-drop", "-0.2", "--criterion", "map"], 1, "fail"),  # mAP gained 15 pp
    ],
)
def test_max_cross_drop_gate(sample_json, flags, code, status):
    r = runner.invoke(app, ["compat", OLD, COMPATIBLE, *flags, "-f", "json"])
    assert r.exit_code == code, r.output
    doc = json.loads(r.stdout)
    gate = doc["gates"][0]
    assert gate["name"] == "max-cross-drop" and gate["metric"] == "cross_drop"
    assert gate["status"] == status and gate["direction"] == "max"
    assert gate["value"] == pytest.approx(-doc["criterion_delta"], abs=0)


def test_max_cross_drop_breached_names_the_gate_in_every_format(sample_json):
    for fmt in ("text", "markdown", "html", "junit"):
        r = runner.invoke(app, ["render", str(sample_json), "--max-cross-drop", "-0.01",
                                "-f", fmt])
        assert r.exit_code == 1
        flat = " ".join(r.stdout.split())
        metric = "cross\\_drop" if fmt == "markdown" else "cross_drop"  # escaped in Markdown
        assert "max-cross-drop" in flat and metric in flat, fmt
    r = runner.invoke(app, ["render", str(sample_json), "--max-cross-drop", "0"])
    assert r.exit_code == 0 and "max-cross-drop" in r.stdout
    text = runner.invoke(app, ["render", str(sample_json), "--max-cross-drop", "-0.01"]).stdout
    assert "REGRESSION:" in text and "max-cross-drop (-0.002778 > -0.01)" in " ".join(
        text.split())


def test_max_cross_drop_on_a_flips_result_is_a_usage_error(tmp_path):
    flips = tmp_path / "flips.json"
    r = runner.invoke(app, ["flips", str(ROOT / "sample_data" / "digits_old.csv"),
                            str(ROOT / "sample_data" / "digits_new.parquet"), "-f", "json",
                            "-o", str(flips), "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["render", str(flips), "--max-cross-drop", "0"])
    assert r.exit_code == 2 and "--max-cross-drop does not apply to a flips result" in r.stderr


@pytest.mark.parametrize("value", ["1.5", "-1.01"])
def test_max_cross_drop_out_of_range(value):
    r = runner.invoke(app, ["compat", OLD, COMPATIBLE, "--max-cross-drop", value])
    assert r.exit_code == 2
    assert "--max-cross-drop" in r.stderr and "outside the valid range -1 to 1" in r.stderr


@pytest.mark.parametrize("file", ["gaudit.toml", "pyproject.toml"])
def test_max_cross_drop_and_confidence_from_config(tmp_path, monkeypatch, file):
    table = "[tool.gaudit.compat]" if file == "pyproject.toml" else "[compat]"
    (tmp_path / file).write_text(f"{table}\nmax-cross-drop = -0.01\nconfidence = 0.8\n")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["compat", OLD, COMPATIBLE, "-f", "json"])
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["gates"][0]["source"] == file and doc["gates"][0]["name"] == "max-cross-drop"
    assert doc["intervals"]["confidence"] == 0.8
    lo, hi = proportion_confint(355, 360, alpha=0.2, method="wilson")
    assert doc["cases"]["old/old"]["intervals"]["top1"] == pytest.approx([lo, hi], abs=1e-12)
    # a flag on the command line wins over the file
    r = runner.invoke(app, ["compat", OLD, COMPATIBLE, "--max-cross-drop", "0",
                            "--confidence", "0.99", "-f", "json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["intervals"]["confidence"] == 0.99


def test_confidence_in_config_out_of_range_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "gaudit.toml").write_text("[compat]\nconfidence = 95\n")
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["compat", OLD, COMPATIBLE])
    assert r.exit_code == 2
    assert "gaudit.toml: confidence: 95.0 must be strictly between 0 and 1" in r.stderr
    assert "--confidence" not in r.stderr  # the user typed no flag


def test_readme_quotes_the_real_verdict(sample_json):
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    quoted = readme.split("the verdict says `", 1)[1].split("`", 1)[0]
    text = runner.invoke(app, ["render", str(sample_json)]).stdout
    assert quoted in " ".join(text.split())


def test_junit_properties_carry_the_criterion_test(sample_json):
    import xml.etree.ElementTree as ET

    out = runner.invoke(app, ["render", str(sample_json), "-f", "junit"]).stdout
    props = {p.get("name"): p.get("value") for p in ET.fromstring(out.encode()).iter("property")}
    assert props["criterion_significant"] == "false" and props["criterion_test"] == "exact"
    assert float(props["criterion_p_value"]) == 1.0 and props["confidence"] == "0.95"


def test_a_result_saved_before_these_fields_still_renders(sample_json, tmp_path):
    doc = json.loads(sample_json.read_text())
    for key in ("criterion_delta", "criterion_significant", "intervals", "tests"):
        del doc[key]
    for case in doc["cases"].values():
        del case["intervals"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    for fmt in ("text", "markdown", "html", "junit", "json"):
        r = runner.invoke(app, ["render", str(old), "-f", fmt, "--max-cross-drop", "0"])
        assert r.exit_code == 0, (fmt, r.output)
        assert "not significant" not in r.stdout  # no test was saved: nothing is claimed
    again = json.loads(runner.invoke(app, ["render", str(old), "-f", "json"]).stdout)
    assert again["tests"] == {"criterion": None} and again["criterion_significant"] is None
    assert again["criterion_delta"] == pytest.approx(1 / 360, abs=1e-15)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["tests"]["criterion"].update(method="bogus"), "tests.criterion.method"),
        (lambda d: d["tests"]["criterion"].update(b=-1), "tests.criterion.b"),
        (lambda d: d["intervals"].update(criterion_delta=[0.1]), "intervals.criterion_delta"),
        (lambda d: d["cases"]["new/old"]["intervals"].update(top5="wide"),
         "cases.new/old.intervals.top5"),
        (lambda d: d.update(criterion="top7"), "criterion must be"),
        (lambda d: d.update(metric="dot"), "metric must be"),
        (lambda d: d["tests"]["criterion"].update(p_value=2), "tests.criterion.p_value"),
        (lambda d: d["intervals"].update(confidence=2), "intervals.confidence"),
    ],
)
def test_a_hand_edited_criterion_test_is_an_input_error_naming_the_field(sample_json, tmp_path,
                                                                          edit, field):
    doc = json.loads(sample_json.read_text())
    edit(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    r = runner.invoke(app, ["render", str(bad)])
    assert r.exit_code == 2 and field in r.stderr and "Traceback" not in r.output
