"""``gaudit compat`` end to end: the four cases against a brute-force numpy oracle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from graceful_audit import audit_compat
from graceful_audit.cli import app
from graceful_audit.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
runner = CliRunner()


def brute_force(q, ql, g, gl, metric="cosine", exclude=None):
    """Top-1/5/10 and mAP by sorting the full similarity matrix (ties by gallery index)."""
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
    q, g = q.astype(np.float64), g.astype(np.float64)
    s = -((q[:, None, :] - g[None, :, :]) ** 2).sum(-1) if metric == "l2" else q @ g.T
    top = {1: [], 5: [], 10: []}
    aps, first = [], []
    for i in range(len(q)):
        idx = np.arange(len(g))
        keep = idx != (exclude[i] if exclude is not None else -1)
        idx = idx[keep]
        order = idx[np.lexsort((idx, -s[i, idx]))]
        hit = gl[order] == ql[i]
        if not hit.any():
            first.append(0)
            continue
        ranks = np.flatnonzero(hit) + 1
        first.append(ranks[0])
        for k in top:
            top[k].append(ranks[0] <= k)
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
    return {k: float(np.mean(v)) for k, v in top.items()}, float(np.mean(aps)), np.array(first)


def load(path):
    t = pq.read_table(path).to_pandas()
    return t, np.stack(t["embedding"].to_numpy()).astype(np.float32)


@pytest.mark.parametrize("which", ["compatible", "incompatible"])
def test_sample_cases_match_brute_force(which):
    old_df, e_old = load(SAMPLE / "emb_old.parquet")
    new_df, e_new = load(SAMPLE / f"emb_new_{which}.parquet")
    new_df = new_df.set_index("id").loc[old_df["id"]].reset_index()
    e_new = np.stack(new_df["embedding"].to_numpy()).astype(np.float32)
    order = np.argsort(old_df["id"].to_numpy())
    old_df, e_old, e_new = old_df.iloc[order], e_old[order], e_new[order]
    labels = old_df["label"].to_numpy()
    qm = (old_df["split"] == "query").to_numpy()
    r = audit_compat(SAMPLE / "emb_old.parquet", SAMPLE / f"emb_new_{which}.parquet")
    emb = {"old": e_old, "new": e_new}
    for case in ("old/old", "new/new", "new/old", "old/new"):
        qn, gn = case.split("/")
        top, mean_ap, _ = brute_force(emb[qn][qm], labels[qm], emb[gn][~qm], labels[~qm])
        c = r.cases[case]
        for k in (1, 5, 10):
            assert c.topk[k] == pytest.approx(top[k], abs=1e-9), (case, k)
        assert c.map == pytest.approx(mean_ap, abs=1e-6), case
    assert r.queries == int(qm.sum())
    _, _, f_oo = brute_force(e_old[qm], labels[qm], e_old[~qm], labels[~qm])
    _, _, f_no = brute_force(e_new[qm], labels[qm], e_old[~qm], labels[~qm])
    assert r.retrieval_negative_flips == int(np.sum((f_oo == 1) & (f_no != 1)))
    assert r.compatible is (which == "compatible")


def _frame(ids, labels, emb, split=None):
    d = {"id": ids, "label": labels, "embedding": list(emb.astype(np.float32))}
    if split is not None:
        d["split"] = split
    return pa.table(d)


def test_leave_one_out_with_l2_and_ip_match_brute_force():
    rng = np.random.default_rng(3)
    n, d = 120, 8
    labels = rng.integers(0, 12, n)
    centers = rng.normal(size=(12, d))
    e_old = centers[labels] + 0.9 * rng.normal(size=(n, d))
    e_new = centers[labels] + 0.5 * rng.normal(size=(n, d))
    ids = [f"x{i:03d}" for i in range(n)]
    old, new = _frame(ids, labels, e_old), _frame(ids[::-1], labels[::-1], e_new[::-1])
    for metric in ("cosine", "ip", "l2"):
        r = audit_compat(old, new, metric=metric)
        assert r.inputs.mode == "leave-one-out"
        for case, (a, b) in {"old/old": (e_old, e_old), "new/old": (e_new, e_old)}.items():
            top, mean_ap, _ = brute_force(a.astype(np.float32), labels, b.astype(np.float32),
                                          labels, metric, exclude=np.arange(n))
            assert r.cases[case].topk[1] == pytest.approx(top[1], abs=1e-9), (metric, case)
            assert r.cases[case].map == pytest.approx(mean_ap, abs=1e-6), (metric, case)


def test_query_without_positive_is_counted_and_excluded():
    e = np.eye(4, dtype=np.float32) + 0.1
    old = _frame(["a", "b", "c", "d"], [1, 1, 2, 3], e, ["query", "gallery", "query", "gallery"])
    r = audit_compat(old, old)
    assert r.queries == 2 and r.queries_without_positive == 1
    assert r.cases["old/old"].queries_evaluated == 1


def test_dimension_mismatch_is_incompatible_not_an_error():
    rng = np.random.default_rng(0)
    ids, labels = [f"i{i}" for i in range(30)], np.arange(30) % 3
    old = _frame(ids, labels, rng.normal(size=(30, 4)))
    new = _frame(ids, labels, rng.normal(size=(30, 6)))
    r = audit_compat(old, new, gates={"require-compatible": 1})
    assert not r.compatible and not r.passed
    assert not r.cases["new/old"].available and r.cases["new/new"].available
    assert "dimension 4 vs 6" in r.reason()
    assert r.update_gain is None and r.retrieval_negative_flips is None


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda e: e.__setitem__((3, 1), np.nan), "NaN"),
        (lambda e: e.__setitem__((5, 0), np.inf), "NaN, inf"),
        (lambda e: e.__setitem__(7, 0.0), "all zeros"),
    ],
)
def test_bad_embeddings_are_input_errors(mutate, needle):
    rng = np.random.default_rng(1)
    e = rng.normal(size=(20, 4))
    mutate(e)
    ids, labels = [f"i{i}" for i in range(20)], np.arange(20) % 4
    with pytest.raises(InputError, match=needle) as info:
        audit_compat(_frame(ids, labels, e), _frame(ids, labels, rng.normal(size=(20, 4))))
    assert "OLD file" in str(info.value) and "'i" in str(info.value)


def test_ragged_embeddings_are_an_input_error():
    t = pa.table({"id": ["a", "b", "c"], "label": [1, 1, 2],
                  "embedding": [[1.0, 2.0], [1.0, 0.0, 3.0], [0.5, 0.5]]})
    with pytest.raises(InputError, match="ragged"):
        audit_compat(t, t)


def test_emb_columns_in_csv(tmp_path):
    rng = np.random.default_rng(2)
    e = rng.normal(size=(25, 3))
    df = pd.DataFrame({"id": range(25), "label": np.arange(25) % 5})
    for j in range(3):
        df[f"emb_{j}"] = e[:, j]
    df.to_csv(tmp_path / "old.csv", index=False)
    df.sample(frac=1, random_state=0).to_csv(tmp_path / "new.csv", index=False)
    r = audit_compat(tmp_path / "old.csv", tmp_path / "new.csv")
    assert r.inputs.old_dim == 3
    assert r.cases["new/old"].topk[1] == r.cases["old/old"].topk[1]


def test_cli_require_compatible_exit_codes():
    old = str(SAMPLE / "emb_old.parquet")
    ok = runner.invoke(app, ["compat", old, str(SAMPLE / "emb_new_compatible.parquet"),
                             "--require-compatible"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("PASSED: backward compatible")
    bad = runner.invoke(app, ["compat", old, str(SAMPLE / "emb_new_incompatible.parquet"),
                              "--require-compatible", "-f", "json"])
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)
    assert doc["kind"] == "compat" and doc["compatible"] is False
    assert set(doc["cases"]) == {"old/old", "new/new", "new/old", "old/new"}


def test_cli_file_without_embeddings_exits_2():
    r = runner.invoke(app, ["compat", str(SAMPLE / "emb_old.parquet"),
                            str(SAMPLE / "digits_new.parquet")])
    assert r.exit_code == 2
    assert "no embeddings" in r.stderr and "Traceback" not in r.output


def test_cross_gates_breach_when_new_queries_cannot_search_the_old_index():
    """Different dimensions: new/old finds nothing (M = 0), so the gates on it breach
    instead of holding as n/a; computed by hand from the same-model cases."""
    rng = np.random.default_rng(0)
    ids, labels = [f"i{i}" for i in range(30)], np.arange(30) % 3
    old = _frame(ids, labels, rng.normal(size=(30, 4)))
    new = _frame(ids, labels, rng.normal(size=(30, 6)))
    r = audit_compat(old, new, gates={"min-cross-top1": 0.0, "max-cross-drop": 0.0,
                                      "max-retrieval-nfr": 0.0})
    base = r.cases["old/old"].topk[1]
    by_name = {g.name: g for g in r.gates}
    assert by_name["min-cross-top1"].value == 0.0 and by_name["min-cross-top1"].passed
    assert by_name["max-cross-drop"].value == pytest.approx(base)
    assert by_name["max-retrieval-nfr"].value == pytest.approx(base)
    assert base > 0 and not r.passed
    assert all("cannot search the old index" in g.detail for g in r.gates)
    r = audit_compat(old, new, gates={"min-cross-top1": 0.01})
    assert not r.passed and r.gates[0].status == "fail"


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_gallery_after_the_queries_or_interleaved_matches_brute_force(interleaved, metric):
    """The gallery items as one run of rows after the queries (read without a copy) or
    interleaved with them (gathered): the same cases as brute force."""
    rng = np.random.default_rng(8)
    n, d = 90, 6
    labels = rng.integers(0, 9, n)
    e_old = rng.normal(size=(n, d)).astype(np.float32)
    e_new = (e_old + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    is_q = rng.random(n) < 0.3 if interleaved else np.arange(n) < 25
    split = np.where(is_q, "query", "gallery")
    ids = [f"i{i:03d}" for i in range(n)]  # id order = row order
    r = audit_compat(_frame(ids, labels, e_old, split), _frame(ids, labels, e_new, split),
                     metric=metric)
    emb = {"old": e_old, "new": e_new}
    for case in ("old/old", "new/new", "new/old", "old/new"):
        qn, gn = case.split("/")
        top, mean_ap, _ = brute_force(emb[qn][is_q], labels[is_q], emb[gn][~is_q],
                                      labels[~is_q], metric)
        assert r.cases[case].topk[1] == pytest.approx(top[1], abs=1e-9), case
        assert r.cases[case].map == pytest.approx(mean_ap, abs=1e-6), case


@pytest.mark.parametrize(
    ("metric", "norm", "needle"),
    [
        ("cosine", 1e-20, None),  # tiny float32 squared norm: checked exactly, fine
        ("cosine", 1e-31, "too close to zero"),
        ("ip", 5e17, None),  # squared norm near float32's limit: checked exactly, fine
        ("l2", 2e18, r"norms above 1e\+18"),
    ],
)
def test_norms_near_the_limits_are_checked_exactly(metric, norm, needle):
    rng = np.random.default_rng(2)
    e = rng.normal(size=(12, 4))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    e[5] *= norm
    ids, labels = [f"i{i}" for i in range(12)], np.arange(12) % 3
    old, new = _frame(ids, labels, e), _frame(ids, labels, rng.normal(size=(12, 4)))
    if needle is None:
        assert audit_compat(old, new, metric=metric).cases["old/old"].available
    else:
        with pytest.raises(InputError, match=needle) as info:
            audit_compat(old, new, metric=metric)
        assert "'i5'" in str(info.value)
