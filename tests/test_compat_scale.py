"""``gaudit compat`` at scale: the gallery streamed in shards gives the same report."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import graceful_audit.compat as compat_mod
from graceful_audit import audit_compat
from graceful_audit.cli import app

runner = CliRunner()


def _frame(ids, labels, emb, split=None):
    d = {"id": ids, "label": labels, "embedding": list(np.asarray(emb, dtype=np.float32))}
    if split is not None:
        d["split"] = split
    return pa.table(d)


def _doc(result) -> dict:
    return result.to_dict()


def _data(seed=0, n=120, d=6, n_ids=9, split=True, d_new=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_ids, n)
    centres = rng.normal(size=(n_ids, d))
    e_old = centres[labels] + rng.normal(size=(n, d))
    e_new = (np.hstack([e_old, rng.normal(size=(n, d_new - d))]) if d_new else
             e_old + 0.5 * rng.normal(size=(n, d)))
    ids = [f"i{i:04d}" for i in rng.permutation(n)]
    sp = np.where(rng.random(n) < 0.2, "query", "gallery") if split else None
    return _frame(ids, labels, e_old, sp), _frame(ids, labels, e_new, sp)


@pytest.mark.parametrize("split", [True, False], ids=["split", "leave-one-out"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("rows", [3, 64])
def test_streamed_report_equals_in_memory(monkeypatch, split, metric, rows):
    """Shards of 1, 7 or 64 joined rows (DuckDB may cut them unevenly): the same JSON."""
    old, new = _data(split=split)
    expected = _doc(audit_compat(old, new, metric=metric, criterion="map"))
    monkeypatch.setattr(compat_mod, "_SHARD_ROWS", rows)
    seen = []
    got = _doc(audit_compat(old, new, metric=metric, criterion="map",
                            progress=lambda *a: seen.append(a)))
    assert got == expected
    assert seen and seen[-1][0] == "gallery shards" and seen[-1][1] == seen[-1][2]


def test_streamed_sample_files_and_dimension_mismatch(monkeypatch):
    old, new = _data(seed=4, d_new=9)
    expected = _doc(audit_compat(old, new))
    assert expected["cases"]["new/old"]["available"] is False
    monkeypatch.setattr(compat_mod, "_SHARD_ROWS", 5)
    assert _doc(audit_compat(old, new)) == expected


def test_memory_limit_decides_to_stream(monkeypatch):
    """When the embeddings (times the in-memory overhead) exceed --memory-limit the gallery
    is streamed, in shards sized from the limit, and the report does not change."""
    old, new = _data(seed=5, n=400)
    full = _doc(audit_compat(old, new))
    calls = []
    original = compat_mod._stream
    monkeypatch.setattr(compat_mod, "_stream",
                        lambda *a, **k: calls.append(a[6]) or original(*a, **k))
    assert _doc(audit_compat(old, new, memory_limit="64MB")) == full
    assert calls == []  # 400 x 12 floats fit
    # As if each item took 1 MB in memory: 400 MB > 64MB.
    monkeypatch.setattr(compat_mod, "_IN_MEMORY_FACTOR", 1e6 / 48)
    assert _doc(audit_compat(old, new, memory_limit="64MB")) == full
    assert calls == [int(0.1 * 64e6) // (4 * 48)]


def test_cli_memory_limit_for_compat(tmp_path, monkeypatch):
    old, new = _data(seed=2)
    pq.write_table(old, tmp_path / "o.parquet")
    pq.write_table(new, tmp_path / "n.parquet")
    args = ["compat", str(tmp_path / "o.parquet"), str(tmp_path / "n.parquet"), "-f", "json"]
    plain = runner.invoke(app, args)
    monkeypatch.setattr(compat_mod, "_SHARD_ROWS", 3)
    streamed = runner.invoke(app, [*args, "--memory-limit", "1GB"])
    assert streamed.exit_code == plain.exit_code, streamed.output
    assert json.loads(streamed.stdout) == json.loads(plain.stdout)
    bad = runner.invoke(app, [*args, "--memory-limit", "lots"])
    assert bad.exit_code == 2
    assert "--memory-limit: 'lots' is not a memory size" in bad.output


# ---------------------------------------------------------------- --sample-queries / --seed


def test_sample_queries_is_uniform_deterministic_and_reported():
    old, new = _data(seed=6, n=300)
    full = audit_compat(old, new)
    a = audit_compat(old, new, sample_queries=20, seed=3)
    b = audit_compat(old, new, sample_queries=20, seed=3)
    c = audit_compat(old, new, sample_queries=20, seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.queries == 20 and full.queries > 20
    assert a.to_dict()["inputs"]["sample"] == {"queries": 20, "of": full.queries, "seed": 3}
    assert "a uniform sample of 20 of" in a.headline() and "(seed 3)" in a.headline()
    assert c.to_dict()["inputs"]["sample"]["seed"] == 4
    # The same queries as numpy's sample, evaluated exactly as in the full audit: the
    # sampled run equals the full run restricted to those queries (independent check).
    import graceful_audit.compat as cm
    from graceful_audit.retrieval import evaluate_case
    data = old.to_pandas().sort_values("id")
    qpos = np.flatnonzero((data["split"] == "query").to_numpy())
    pick = np.sort(np.random.default_rng(3).choice(qpos.size, 20, replace=False))
    e = np.stack(data["embedding"].to_numpy()).astype(np.float32)
    codes = np.unique(data["label"].to_numpy(), return_inverse=True)[1]
    gpos = np.flatnonzero((data["split"] != "query").to_numpy())
    r = evaluate_case(e[qpos[pick]], codes[qpos[pick]], e[gpos], codes[gpos], ks=cm.KS)
    assert a.cases["old/old"].topk == r.topk
    assert a.cases["old/old"].map == r.mean_average_precision
    # N at or above the number of queries: all of them, nothing said about a sample.
    assert audit_compat(old, new, sample_queries=10**6).to_dict() == full.to_dict()


def test_sample_queries_in_leave_one_out_and_rerender(tmp_path):
    old, new = _data(seed=7, n=80, split=False)
    r = audit_compat(old, new, sample_queries=9, seed=1)
    assert r.queries == 9 and r.inputs.gallery == 80
    pq.write_table(old, tmp_path / "o.parquet")
    pq.write_table(new, tmp_path / "n.parquet")
    out = tmp_path / "r.json"
    args = ["compat", str(tmp_path / "o.parquet"), str(tmp_path / "n.parquet")]
    res = runner.invoke(app, [*args, "--sample-queries", "9", "--seed", "1", "-f", "json",
                              "-o", str(out)])
    assert res.exit_code in (0, 1), res.output
    doc = json.loads(out.read_text())
    assert doc["inputs"]["sample"] == {"queries": 9, "of": 80, "seed": 1}
    md = runner.invoke(app, ["render", str(out), "-f", "markdown"])
    assert md.exit_code in (0, 1), md.output
    assert "a uniform sample of 9 of 80 queries (seed 1)" in md.stdout


@pytest.mark.parametrize("extra, message", [
    (["--sample-queries", "0"], "--sample-queries: 0 is not a number of queries"),
    (["--sample-queries", "-3"], "--sample-queries: -3 is not a number of queries"),
    (["--seed", "4"], "--seed: only used with --sample-queries"),
    (["--sample-queries", "5", "--seed", "-1"], "--seed: -1 is not a seed"),
])
def test_bad_sample_options_are_usage_errors(tmp_path, extra, message):
    old, new = _data(seed=8, n=40)
    pq.write_table(old, tmp_path / "o.parquet")
    pq.write_table(new, tmp_path / "n.parquet")
    res = runner.invoke(app, ["compat", str(tmp_path / "o.parquet"),
                              str(tmp_path / "n.parquet"), *extra])
    assert res.exit_code == 2
    assert message in res.output


def test_sample_queries_from_a_config_file(tmp_path):
    old, new = _data(seed=9, n=60)
    pq.write_table(old, tmp_path / "o.parquet")
    pq.write_table(new, tmp_path / "n.parquet")
    cfg = tmp_path / "gaudit.toml"
    cfg.write_text("[compat]\nsample-queries = 5\nseed = 2\n")
    res = runner.invoke(app, ["compat", str(tmp_path / "o.parquet"), str(tmp_path / "n.parquet"),
                              "-f", "json", "--config", str(cfg)])
    assert res.exit_code in (0, 1), res.output
    assert json.loads(res.stdout)["inputs"]["sample"] == {"queries": 5, "of": 60 - json.loads(
        res.stdout)["inputs"]["gallery"], "seed": 2}

