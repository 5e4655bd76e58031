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


# ------------------------------------------- with --qrels and with versions (V1 V2 ... Vn)


def _judged(seed=0, nq=40, ng=150, d=5, integer=False, n_versions=2):
    """Versions with a split column and a BEIR qrels text: queries q*, corpus items d*
    (named out of order), some queries unjudged or judged only not relevant."""
    rng = np.random.default_rng(seed)
    q_ids = [f"q{i:03d}" for i in range(nq)]
    g_ids = [f"d{(7 * i) % ng:03d}x{i}" for i in range(ng)]
    ids = q_ids + g_ids
    split = ["query"] * nq + ["gallery"] * ng
    base = rng.normal(size=(nq + ng, d))
    tables = []
    for _ in range(n_versions):
        e = base + 0.7 * rng.normal(size=base.shape)
        if integer:
            e = np.round(2 * e)
        tables.append(pa.table({"id": ids, "split": split,
                                "embedding": list(np.asarray(e, dtype=np.float32))}))
    lines = ["query-id\tcorpus-id\tscore"]
    for i, q in enumerate(q_ids):
        if i % 9 == 8:
            continue
        for j in rng.choice(ng, size=int(rng.integers(1, 12)), replace=False):
            lines.append(f"{q}\t{g_ids[j]}\t{int(rng.integers(0, 4))}")
    return tables, q_ids, "\n".join(lines) + "\n"


@pytest.mark.parametrize("integer", [True, False], ids=["integer", "float"])
@pytest.mark.parametrize("rows", [4, 64])
@pytest.mark.parametrize("sample", [None, 13])
def test_qrels_streamed_equals_in_memory(tmp_path, monkeypatch, integer, rows, sample):
    """--qrels with the gallery streamed in shards (with and without --sample-queries): the
    same JSON as in memory, relevance metrics, paired test and breaking queries included."""
    (old, new), _, text = _judged(seed=11, integer=integer)
    path = tmp_path / "q.tsv"
    path.write_text(text)
    kw = {"metric": "ip" if integer else "cosine", "qrels": str(path),
          "sample_queries": sample, "seed": None if sample is None else 5}
    expected = _doc(audit_compat(old, new, **kw))
    assert expected["cases"]["new/old"]["ndcg10"] is not None
    monkeypatch.setattr(compat_mod, "_SHARD_ROWS", rows)
    assert _doc(audit_compat(old, new, **kw)) == expected


def test_qrels_with_sample_queries_is_the_audit_of_the_sampled_queries(tmp_path):
    """--qrels --sample-queries N --seed S audits exactly numpy's sample of the queries (in
    id order): the same cases, test, flips and breaking queries as an audit of files and
    judgments cut down to those queries by hand; judgments of the queries left out are not
    'unmatched'."""
    (old, new), q_ids, text = _judged(seed=12, nq=60)
    path = tmp_path / "q.tsv"
    path.write_text(text)
    got = audit_compat(old, new, qrels=str(path), sample_queries=17, seed=9).to_dict()
    pick = np.sort(np.random.default_rng(9).choice(len(q_ids), 17, replace=False))
    kept = {q_ids[i] for i in pick}
    cut_text = "".join(line + "\n" for k, line in enumerate(text.splitlines())
                       if k == 0 or line.split("\t")[0] in kept)
    (tmp_path / "cut.tsv").write_text(cut_text)

    def cut(t):
        ids = t.column("id").to_pylist()
        keep = [k for k, i in enumerate(ids) if not i.startswith("q") or i in kept]
        return t.take(keep)

    want = audit_compat(cut(old), cut(new), qrels=str(tmp_path / "cut.tsv")).to_dict()
    for key in ("cases", "compatible", "reason", "criterion_delta", "tests", "intervals",
                "update_gain", "retrieval_negative_flips", "breaking_queries", "queries",
                "queries_without_positive"):
        assert got[key] == want[key], key
    assert got["inputs"]["sample"] == {"queries": 17, "of": 60, "seed": 9}
    assert got["inputs"]["qrels"]["relevant"] == want["inputs"]["qrels"]["relevant"]
    assert got["inputs"]["qrels"]["unmatched"] == 0
    assert got["inputs"]["qrels"]["judgments"] == len(text.splitlines()) - 1


def test_cli_qrels_sample_and_memory_limit_stream_with_the_same_json(tmp_path, monkeypatch):
    """The CLI with --qrels --sample-queries: a --memory-limit too small for the embeddings
    streams the gallery (seen by the shard plan) and writes the same JSON; gaudit render
    reads it back byte for byte, in every format."""
    (old, new), _, text = _judged(seed=13)
    pq.write_table(old, tmp_path / "o.parquet")
    pq.write_table(new, tmp_path / "n.parquet")
    (tmp_path / "q.tsv").write_text(text)
    args = ["compat", str(tmp_path / "o.parquet"), str(tmp_path / "n.parquet"), "--qrels",
            str(tmp_path / "q.tsv"), "--sample-queries", "25", "--seed", "3", "-f", "json",
            "--quiet"]
    plain = runner.invoke(app, args)
    assert plain.exit_code in (0, 1), plain.output
    calls = []
    original = compat_mod._stream
    monkeypatch.setattr(compat_mod, "_stream",
                        lambda *a, **k: calls.append(a[6]) or original(*a, **k))
    monkeypatch.setattr(compat_mod, "_IN_MEMORY_FACTOR", 1e6)
    streamed = runner.invoke(app, [*args, "--memory-limit", "64MB"])
    assert streamed.exit_code == plain.exit_code, streamed.output
    assert calls, "the gallery was not streamed"
    assert streamed.stdout == plain.stdout
    doc = json.loads(plain.stdout)
    assert doc["inputs"]["sample"] == {"queries": 25, "of": 40, "seed": 3}
    assert doc["inputs"]["qrels"]["format"] == "beir"
    out = tmp_path / "r.json"
    out.write_text(plain.stdout)
    again = runner.invoke(app, ["render", str(out), "-f", "json"])
    assert again.exit_code == plain.exit_code and again.stdout == plain.stdout
    for fmt in ("text", "markdown", "html", "junit"):
        r = runner.invoke(app, ["render", str(out), "-f", fmt])
        assert r.exit_code == plain.exit_code, (fmt, r.output)
        assert "uniform sample of 25 of 40 queries" in r.stdout, fmt


@pytest.mark.parametrize("judged", [False, True], ids=["labels", "qrels"])
@pytest.mark.parametrize("sample", [None, 11])
def test_versions_streamed_equal_in_memory(tmp_path, monkeypatch, judged, sample):
    """Three versions (n^2 cases in one streamed pass pair): the same JSON as in memory,
    with identity labels or --qrels, with or without --sample-queries; the sample is stated
    in the verdict of the chain."""
    kw = {"sample_queries": sample, "seed": None if sample is None else 2}
    if judged:
        versions, _, text = _judged(seed=14, n_versions=3)
        (tmp_path / "q.tsv").write_text(text)
        kw["qrels"] = str(tmp_path / "q.tsv")
    else:
        rng = np.random.default_rng(14)
        old, new = _data(seed=14)
        third = new.set_column(2, "embedding", pa.array(
            list(np.asarray(new.column("embedding").to_pylist(), dtype=np.float32)
                 + rng.normal(size=(new.num_rows, 6)).astype(np.float32))))
        versions = [old, new, third]
    expected = audit_compat(*versions, **kw)
    assert expected.versions is not None
    if sample:
        assert "; on a uniform sample of 11 of" in expected.headline()
    monkeypatch.setattr(compat_mod, "_SHARD_ROWS", 7)
    seen = []
    got = audit_compat(*versions, progress=lambda *a: seen.append(a), **kw)
    assert _doc(got) == _doc(expected)
    assert {a[0] for a in seen} == {"gallery shards"}


def test_versions_streamed_with_a_dimension_mismatch(monkeypatch):
    """V2 has another dimension: its cells with V1 and V3 are unavailable, streamed too."""
    old, new = _data(seed=15, d_new=9)
    versions = [old, new, old]
    expected = _doc(audit_compat(*versions))
    assert expected["matrix"]["top1"][1][0] is None
    monkeypatch.setattr(compat_mod, "_SHARD_ROWS", 5)
    assert _doc(audit_compat(*versions)) == expected


# ------------------------------------------- files read in their own row order (no join)


def _shuffled(table, seed):
    return table.take(np.random.default_rng(seed).permutation(table.num_rows))


def test_gallery_bigger_than_a_small_memory_limit(tmp_path, monkeypatch):
    """300k x 16-d items in each file (38 MB of float32 embeddings for the pair; about
    3.5x that in memory) under --memory-limit 64MB: the gallery is streamed, each file in
    its own row order (both files shuffled differently), in several shards, and the JSON
    is the in-memory audit's."""
    n, d, nq = 300_000, 16, 100
    rng = np.random.default_rng(21)
    labels = rng.integers(0, n // 10, n)
    centres = 3 * rng.standard_normal((n // 10, d), dtype=np.float32)
    e_old = centres[labels] + rng.standard_normal((n, d), dtype=np.float32)
    e_new = e_old + 0.5 * rng.standard_normal((n, d), dtype=np.float32)
    split = np.full(n, "gallery", dtype=object)
    split[rng.choice(n, nq, replace=False)] = "query"
    ids = pa.array([f"x{i:06d}" for i in range(n)])

    def write(e, name, seed):
        t = pa.table({"id": ids, "label": labels, "split": split,
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(e.ravel()), d)})
        pq.write_table(_shuffled(t, seed), tmp_path / name, row_group_size=20_000)
        return str(tmp_path / name)

    old, new = write(e_old, "o.parquet", 1), write(e_new, "n.parquet", 2)
    expected = _doc(audit_compat(old, new))
    assert expected["cases"]["new/old"]["top1"] > 0.5  # a meaningful audit
    calls = []
    original = compat_mod._stream
    monkeypatch.setattr(compat_mod, "_stream",
                        lambda *a, **k: calls.append(a[6]) or original(*a, **k))
    assert _doc(audit_compat(old, new, memory_limit="64MB")) == expected
    assert len(calls) == 1 and calls[0] < n // 4  # streamed, in more than four shards


@pytest.mark.parametrize("rows", [3, 64])
@pytest.mark.parametrize("n_versions", [2, 3])
def test_files_in_other_row_orders_with_unmatched_rows(monkeypatch, rows, n_versions):
    """Every file in its own row order, each with unmatched rows (--allow-unmatched; one
    with a NaN embedding, which is not audited, so not an error), shards of 3 or 64 rows:
    the same JSON as in memory; integer ids too."""
    old, new = _data(seed=31, n=150)
    versions = [old, new, new][:n_versions]
    extra = pa.table({"id": ["zz1", "zz2"], "label": [0, 1], "embedding": [
        [float("nan")] * 6, [1.0] * 6], "split": ["query", "gallery"]}).select(
        old.column_names).cast(old.schema)
    versions = [_shuffled(pa.concat_tables([t, extra.slice(k % 2, 1)]), k)
                for k, t in enumerate(versions)]
    for integer in (False, True):
        if integer:
            versions = [t.set_column(0, "id", pa.array(
                [int(v[1:]) if v[0] == "i" else 10**6 + int(v[2:]) for v in
                 t.column("id").to_pylist()])) for t in versions]
        with monkeypatch.context() as mp:
            expected = _doc(audit_compat(*versions, allow_unmatched=True))
            mp.setattr(compat_mod, "_SHARD_ROWS", rows)
            assert _doc(audit_compat(*versions, allow_unmatched=True)) == expected


def _defect(kind):
    """A pair where one query or gallery item (the one with the 7th smallest id of its
    side) has a bad embedding in NEW."""
    old, new = _data(seed=41, n=90)
    ids = new.column("id").to_pylist()
    split = new.column("split").to_pylist()
    target = sorted(i for i, s in zip(ids, split, strict=True) if s == kind[1])[6]
    e = [list(v) for v in new.column("embedding").to_pylist()]
    at = ids.index(target)
    e[at] = {"nan": [float("nan")] + e[at][1:], "zero": [0.0] * 6, "huge": [1e39] * 6,
             "null": None, "ragged": e[at] + [1.0]}[kind[0]]
    new = new.set_column(2, "embedding", pa.array(e, type=pa.list_(pa.float32())
                                                  if kind[0] != "huge" else pa.list_(
                                                      pa.float64())))
    return old, new, target


@pytest.mark.parametrize("kind", [(k, s) for k in ("nan", "zero", "huge", "null", "ragged")
                                  for s in ("query", "gallery")],
                         ids=lambda k: "-".join(k))
def test_streamed_bad_embeddings_are_named_as_in_memory(monkeypatch, kind):
    """A NaN, all-zero, beyond-float32, missing or ragged embedding of a query or of a
    gallery item: the streamed gallery reports it like the in-memory audit (which file,
    which id), whatever shard it falls in."""
    from graceful_audit.errors import InputError

    old, new, target = _defect(kind)
    with pytest.raises(InputError) as mem:
        audit_compat(old, new)
    monkeypatch.setattr(compat_mod, "_SHARD_ROWS", 4)
    with pytest.raises(InputError) as streamed:
        audit_compat(_shuffled(old, 1), _shuffled(new, 2))
    assert repr(target) in str(streamed.value) and "NEW file" in str(streamed.value)
    if kind[0] == "ragged":
        assert "ragged embeddings" in str(mem.value) and "ragged embeddings" in str(
            streamed.value)
    else:
        assert str(streamed.value) == str(mem.value)
