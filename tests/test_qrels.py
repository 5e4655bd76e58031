"""``gaudit compat --qrels``: the relevance metrics against ranx (an independent
implementation that matches trec_eval) and against trec_eval's definitions worked out by hand
for ties; the qrels reader (BEIR and TREC); the paired test of nDCG@10 against scipy.

Tie rule of gaudit: score descending, then gallery index ascending (ranx and trec_eval order
ties differently), so ranx is fed scores that encode exactly gaudit's order whenever the
scores tie.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ranx import Qrels, Run, evaluate
from scipy import stats
from typer.testing import CliRunner

from graceful_audit.cli import app
from graceful_audit.compat import audit_compat
from graceful_audit.errors import InputError
from graceful_audit.qrels import read_qrels

RANX = {"ndcg10": "ndcg@10", "recall10": "recall@10", "recall100": "recall@100",
        "mrr10": "mrr@10", "map": "map"}


def make_data(seed: int, nq: int, ng: int, d: int, span: int):
    """Integer embeddings (exact float32 scores); ids q*/d* with a split column; corpus ids
    named out of order so that gallery index and id order differ."""
    rng = np.random.default_rng(seed)
    old_q, new_q = (rng.integers(-span, span + 1, (nq, d)) for _ in range(2))
    old_g, new_g = (rng.integers(-span, span + 1, (ng, d)) for _ in range(2))
    q_ids = [f"q{i:03d}" for i in range(nq)]
    g_ids = [f"d{(7 * i) % ng:03d}x{i}" for i in range(ng)]
    qrels = {}
    for qi, q in enumerate(q_ids):
        if qi % 7 == 6:
            continue  # unjudged query
        judged = rng.choice(ng, size=int(rng.integers(1, 15)), replace=False)
        grades = rng.integers(0, 4, judged.size)
        qrels[q] = {g_ids[j]: int(x) for j, x in zip(judged, grades, strict=True)}

    def frame(eq, eg):
        return pd.DataFrame({
            "id": q_ids + g_ids, "split": ["query"] * nq + ["gallery"] * ng,
            "embedding": [list(map(float, v)) for v in np.vstack([eq, eg])]})

    return (frame(old_q, old_g), frame(new_q, new_g), qrels, q_ids, g_ids,
            {"old": (old_q, old_g), "new": (new_q, new_g)})


def write_beir(path, qrels):
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{g}" for q, docs in qrels.items() for d, g in docs.items()]
    path.write_text("\n".join(lines) + "\n")


def ranx_case(qrels, q_ids, g_ids, eq, eg, tie_encode: bool):
    """ranx's per-query metrics of one case, on queries with a relevant judged document."""
    # gaudit sorts the gallery ascending by id (the join's ORDER BY): rebuild that order.
    order = np.argsort(np.array(g_ids, dtype=object), kind="stable")
    gids = np.array(g_ids, dtype=object)[order]
    eg = eg[order]
    scores = eq.astype(np.float64) @ eg.astype(np.float64).T
    relevant = {q: d for q, d in qrels.items() if any(g > 0 for g in d.values())}
    run = {}
    for i, q in enumerate(q_ids):
        if q not in relevant:
            continue
        s = scores[i]
        if tie_encode:  # gaudit's exact order: score desc, then gallery index asc
            ranked = np.lexsort((np.arange(s.size), -s))
            enc = np.empty(s.size)
            enc[ranked] = np.arange(s.size, 0, -1, dtype=np.float64)
            s = enc
        else:
            assert np.unique(s).size == s.size, "this test needs tie-free scores"
        run[q] = {str(g): float(v) for g, v in zip(gids, s, strict=True)}
    rq = Qrels.from_dict({q: {d: g for d, g in docs.items()} for q, docs in relevant.items()})
    return evaluate(rq, Run.from_dict(run), list(RANX.values()), return_mean=False,
                    make_comparable=False), sorted(relevant)


@pytest.mark.parametrize(("seed", "span", "tie_encode"), [(1, 1000, False), (2, 2, True),
                                                           (3, 1, True)])
def test_relevance_metrics_match_ranx(tmp_path, seed, span, tie_encode):
    old, new, qrels, q_ids, g_ids, emb = make_data(seed, 30, 120, 3, span)
    write_beir(tmp_path / "q.tsv", qrels)
    res = audit_compat(old, new, metric="ip", qrels=str(tmp_path / "q.tsv"))
    assert res.criterion == "ndcg10"
    per_case = {}
    for case in ("old/old", "new/new", "new/old", "old/new"):
        qm, gm = case.split("/")
        got, queries = ranx_case(qrels, q_ids, g_ids, emb[qm][0], emb[gm][1], tie_encode)
        per_case[case] = got
        c = res.cases[case]
        assert c.queries_evaluated == len(queries)
        for key, name in RANX.items():
            ours = c.map if key == "map" else c.relevance[key]
            assert ours == pytest.approx(float(np.mean(got[name])), rel=1e-9, abs=1e-12), \
                (case, key)
    # Every judged-relevant-less or unjudged query is counted, not evaluated.
    assert res.queries_without_positive == 30 - len(queries)
    # The paired test of nDCG@10: scipy's paired t test on ranx's per-query values.
    t = stats.ttest_rel(per_case["new/old"]["ndcg@10"], per_case["old/old"]["ndcg@10"])
    assert res.criterion_test.method == "paired t"
    assert res.criterion_test.p_value == pytest.approx(t.pvalue, rel=1e-6)
    assert res.criterion_test.n == len(queries)
    lo, hi = t.confidence_interval(0.95)
    assert res.criterion_test.interval == pytest.approx((lo, hi), rel=1e-6)


def test_trec_eval_semantics_with_ties_by_hand(tmp_path):
    """Query q scores the corpus [3, 5, 5, 1, 5] (ip with the vector 1): gaudit's order is
    d1, d2, d4, d0, d3 (ties by gallery index). Judgments: d0 grade 1, d2 grade 3, d4 0,
    d3 grade 2.

    * ranks: d2 -> 2, d0 -> 4, d3 -> 5 (d4 is judged 0: not relevant)
    * DCG@10 = 3/log2(3) + 1/log2(5) + 2/log2(6); IDCG@10 = 3/1 + 2/log2(3) + 1/log2(4)
    * recall@10 = recall@100 = 3/3; MRR@10 = 1/2
    * AP = (1/2 + 2/4 + 3/5) / 3
    """
    g = [[3], [5], [5], [1], [5]]
    frame = pd.DataFrame({"id": ["q", "d0", "d1", "d2", "d3", "d4"],
                          "split": ["query"] + ["gallery"] * 5,
                          "embedding": [[1.0]] + [[float(x[0])] for x in g]})
    (tmp_path / "q.trec").write_text("q 0 d0 1\nq 0 d2 3\nq 0 d4 0\nq 0 d3 2\n")
    res = audit_compat(frame, frame, metric="ip", qrels=str(tmp_path / "q.trec"))
    c = res.cases["old/old"]
    dcg = 3 / np.log2(3) + 1 / np.log2(5) + 2 / np.log2(6)
    idcg = 3 + 2 / np.log2(3) + 1 / np.log2(4)
    assert c.relevance["ndcg10"] == pytest.approx(dcg / idcg, rel=1e-12)
    assert c.relevance["recall10"] == c.relevance["recall100"] == 1.0
    assert c.relevance["mrr10"] == 0.5
    assert c.map == pytest.approx((1 / 2 + 2 / 4 + 3 / 5) / 3, rel=1e-12)
    assert c.topk[1] == 0.0  # d1 (unjudged) is first
    assert res.inputs.qrels.format == "trec"


def test_cutoffs_by_hand(tmp_path):
    """12 corpus items scored 12..1; relevant at ranks 11 and 12 only: nDCG@10 = recall@10
    = MRR@10 = 0, recall@100 = 1, AP = (1/11 + 2/12) / 2."""
    n = 12
    frame = pd.DataFrame({"id": ["q"] + [f"d{i:02d}" for i in range(n)],
                          "split": ["query"] + ["gallery"] * n,
                          "embedding": [[1.0]] + [[float(n - i)] for i in range(n)]})
    (tmp_path / "q.tsv").write_text("query-id\tcorpus-id\tscore\nq\td10\t1\nq\td11\t5\n")
    c = audit_compat(frame, frame, metric="ip", qrels=str(tmp_path / "q.tsv")).cases["new/old"]
    assert (c.relevance["ndcg10"], c.relevance["recall10"], c.relevance["mrr10"]) == (0, 0, 0)
    assert c.relevance["recall100"] == 1.0
    assert c.map == pytest.approx((1 / 11 + 2 / 12) / 2)


def test_reader_formats(tmp_path):
    (tmp_path / "b.tsv").write_text("\ufeffquery-id\tcorpus-id\tscore\r\nq 1\td1\t2\r\n\n")
    q = read_qrels(str(tmp_path / "b.tsv"))
    assert (q.format, q.query_ids.tolist(), q.doc_ids.tolist(), q.grades.tolist(),
            q.lines.tolist()) == ("beir", ["q 1"], ["d1"], [2], [2])
    (tmp_path / "t.txt").write_text("301  0 FT911-3 1\n\n301\t0\tFT911-4 0\n")
    q = read_qrels(str(tmp_path / "t.txt"))
    assert (q.format, q.doc_ids.tolist(), q.grades.tolist(), q.lines.tolist()) == (
        "trec", ["FT911-3", "FT911-4"], [1, 0], [1, 3])
    (tmp_path / "bad.txt").write_bytes(b"q 0 d \xff\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_qrels(str(tmp_path / "bad.txt"))
    with pytest.raises(InputError, match="is a directory"):
        read_qrels(str(tmp_path))


def test_cli_sample_and_render(tmp_path):
    """The bundled BEIR-shaped sample: the identity-compatible update is not compatible for
    search (nDCG@10 drops), and ``gaudit render`` re-renders the saved JSON identically."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sample_data"
    runner = CliRunner()
    out = tmp_path / "r.json"
    r = runner.invoke(app, ["compat", str(root / "beir_old.parquet"),
                            str(root / "beir_new.parquet"), "--qrels",
                            str(root / "beir_qrels.tsv"), "--require-compatible",
                            "--format", "json", "--output", str(out), "--quiet"])
    assert r.exit_code == 1, r.output
    doc = json.loads(out.read_text())
    assert doc["criterion"] == "ndcg10" and doc["compatible"] is False
    assert doc["cases"]["new/old"]["ndcg10"] < doc["cases"]["old/old"]["ndcg10"]
    assert set(doc["cases"]["old/old"]) >= {"ndcg10", "recall10", "recall100", "mrr10", "map"}
    again = tmp_path / "again.json"
    r = runner.invoke(app, ["render", str(out), "--format", "json", "--output", str(again)])
    assert r.exit_code == 1 and again.read_text() == out.read_text()
    for fmt in ("text", "markdown", "html", "junit"):
        r = runner.invoke(app, ["render", str(out), "--format", fmt])
        assert r.exit_code == 1 and ("nDCG@10" in r.stdout or "ndcg10" in r.stdout), fmt
    # An edited document: a relevance metric outside [0, 1] is refused ...
    doc["cases"]["new/old"]["ndcg10"] = 1.5
    out.write_text(json.dumps(doc))
    r = runner.invoke(app, ["render", str(out)])
    assert r.exit_code == 2 and "ndcg10" in r.stderr
    # ... and a criterion whose metric the cases lack reads n/a, never top-1.
    for case in doc["cases"].values():
        del case["ndcg10"]
    out.write_text(json.dumps(doc))
    r = runner.invoke(app, ["render", str(out), "--format", "json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["reason"] == (
        "nDCG@10 new/old n/a <= old/old n/a")


def test_config_key_qrels(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sample_data"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gaudit.toml").write_text(
        f'[compat]\nqrels = "{root / "beir_qrels.tsv"}"\ncriterion = "map"\n')
    r = CliRunner().invoke(app, ["compat", str(root / "beir_old.parquet"),
                                 str(root / "beir_new.parquet"), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["criterion"] == "map" and doc["inputs"]["qrels"]["format"] == "beir"


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_per_query_metrics_match_the_formulas(data):
    """:func:`per_query_metrics` against the formulas written as plain loops, with graded
    relevance, more than 10 relevant documents and ranks beyond the cut-offs; and the
    invariants 0 <= metric <= 1."""
    from graceful_audit.qrels import per_query_metrics

    nq = data.draw(st.integers(1, 5))
    rows, grade_rows = [], []
    for _ in range(nq):
        ranks = data.draw(st.lists(st.integers(1, 150), unique=True, max_size=25))
        rows.append(ranks)
        grade_rows.append(data.draw(st.lists(st.integers(1, 4), min_size=len(ranks),
                                             max_size=len(ranks))))
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64)
    rank = np.array([x for r in rows for x in r], dtype=np.int64)
    grades = np.array([x for r in grade_rows for x in r], dtype=np.int64)
    ap = np.arange(nq, dtype=np.float64) / 10
    got = per_query_metrics(rank, indptr, grades, ap)
    for i, (r, g) in enumerate(zip(rows, grade_rows, strict=True)):
        if not r:
            assert all(got[k][i] == 0 for k in got)
            continue
        dcg = sum(gi / math.log2(ri + 1) for ri, gi in zip(r, g, strict=True) if ri <= 10)
        ideal = sorted(g, reverse=True)[:10]
        idcg = sum(gi / math.log2(j + 2) for j, gi in enumerate(ideal))
        assert got["ndcg10"][i] == pytest.approx(dcg / idcg, rel=1e-12)
        assert got["recall10"][i] == sum(x <= 10 for x in r) / len(r)
        assert got["recall100"][i] == sum(x <= 100 for x in r) / len(r)
        assert got["mrr10"][i] == (1 / min(r) if min(r) <= 10 else 0.0)
        assert got["map"][i] == ap[i]
        assert all(0 <= got[k][i] <= 1 for k in got)


def test_versions_with_qrels_judge_every_pair_by_the_relevance_criterion():
    """Three versions with --qrels: every pair is the two-file --qrels audit of that pair
    (nDCG@10 values, paired t test, breaking queries with grades), and the verdict names
    nDCG@10, not mAP."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sample_data"
    v1, v2 = str(root / "beir_old.parquet"), str(root / "beir_new.parquet")
    qrels = str(root / "beir_qrels.tsv")
    chain = audit_compat(v1, v2, v1, qrels=qrels)
    assert chain.criterion == "ndcg10" and chain.compatible is False
    reason = chain.to_dict()["reason"]
    assert "nDCG@10 V2/V1" in reason and "mAP" not in reason
    two = {(1, 0): audit_compat(v1, v2, qrels=qrels), (2, 1): audit_compat(v2, v1, qrels=qrels)}
    for pair in chain.versions.pairs:
        key = (pair.query_index, pair.gallery_index)
        if key not in two:
            continue
        a, b = pair.audit.to_dict(), two[key].to_dict()
        for k in ("cases", "criterion_delta", "tests", "update_gain", "breaking_queries"):
            assert a[k] == b[k], (key, k)
        assert a["inputs"]["qrels"] == b["inputs"]["qrels"]
