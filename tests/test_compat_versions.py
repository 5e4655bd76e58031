"""``gaudit compat V1 V2 V3 ...``: the n x n matrix, every later-vs-earlier pair, gates on
every pair, the command line and bad inputs.

Every matrix cell is checked against a brute-force numpy oracle written here (the full
similarity matrix sorted with ``np.lexsort``: score descending, then gallery position
ascending, the tie rule of :mod:`graceful_audit.retrieval`), on integer embeddings whose
float32 scores are exact, so ties are real ties; every pair against the two-file audit of
the same two versions.
"""

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
from graceful_audit.rerender import load_result, regate

runner = CliRunner()


# --------------------------------------------------------------------------- oracle


def oracle(q: np.ndarray, ql: np.ndarray, g: np.ndarray, gl: np.ndarray, metric: str,
           loo: bool) -> tuple[float | None, float | None, np.ndarray]:
    """Top-1 accuracy, mAP and per-query top-1 hits (False without a positive) by sorting
    every query's full score row; leave-one-out drops the query itself."""
    q64, g64 = q.astype(np.float64), g.astype(np.float64)
    if metric == "cosine":
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        g64 = g64 / np.linalg.norm(g64, axis=1, keepdims=True)
    s = (-((q64[:, None, :] - g64[None, :, :]) ** 2).sum(-1) if metric == "l2"
         else q64 @ g64.T)
    hits, aps, evaluated = [], [], []
    for r in range(len(q)):
        idx = np.arange(len(g))
        if loo:
            idx = idx[idx != r]
        order = idx[np.lexsort((idx, -s[r, idx]))]
        pos = gl[order] == ql[r]
        if not pos.any():
            hits.append(False)
            continue
        evaluated.append(r)
        hits.append(bool(pos[0]))
        ranks = np.flatnonzero(pos) + 1
        aps.append(float(np.mean(np.arange(1, ranks.size + 1) / ranks)))
    hit = np.array(hits)
    if not evaluated:
        return None, None, hit
    return float(hit[evaluated].mean()), float(np.mean(aps)), hit


def chain(n_versions: int = 3, n: int = 36, d: int = 4, *, seed: int = 0, split: bool = True,
          integer: bool = True, dims: tuple[int, ...] | None = None) -> list[pa.Table]:
    """``n_versions`` embeddings of the same ``n`` items (6 identities): each version drifts
    further from the first, so later versions tend to fail on early galleries. Integer
    vectors (small values) make float32 scores exact and ties frequent. Rows are shuffled
    per file: the audit must join by id."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 6
    centres = rng.integers(-3, 4, size=(6, d))
    tables = []
    for v in range(n_versions):
        dim = d if dims is None else dims[v]
        drift = rng.integers(-v, v + 1, size=(6, dim)) if v else np.zeros((6, dim), int)
        base = np.zeros((6, dim), dtype=np.int64)
        base[:, :min(d, dim)] = centres[:, :min(d, dim)]
        noise = rng.integers(-1, 2, size=(n, dim)) if integer else rng.normal(size=(n, dim))
        emb = (base + drift)[labels] * 2 + noise
        if not integer:
            emb = emb.astype(np.float64) + rng.normal(scale=0.3, size=(n, dim))
        emb[np.all(emb == 0, axis=1), 0] = 1  # no zero vector (cosine)
        cols = {"id": [f"i{k:03d}" for k in range(n)], "label": labels.astype(str),
                "embedding": [list(map(float, row)) for row in emb]}
        if split:
            cols["split"] = ["query" if k % 4 == 0 else "gallery" for k in range(n)]
        perm = np.random.default_rng(seed + 100 + v).permutation(n)
        tables.append(pa.table({k: [vals[i] for i in perm] for k, vals in cols.items()}))
    return tables


def arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Embeddings, labels and query mask in id order (the audit's gallery order)."""
    df = table.to_pandas().sort_values("id")
    split = (df["split"] == "query").to_numpy() if "split" in df else None
    return np.array(df["embedding"].tolist(), dtype=np.float32), df["label"].to_numpy(), split


def expected_matrix(tables: list[pa.Table], metric: str):
    data = [arrays(t) for t in tables]
    split = data[0][2]
    n = len(tables)
    top1 = [[None] * n for _ in range(n)]
    maps = [[None] * n for _ in range(n)]
    hits = {}
    for qv in range(n):
        for gv in range(n):
            eq, lab, _ = data[qv]
            eg = data[gv][0]
            if eq.shape[1] != eg.shape[1]:
                continue
            if split is None:
                t, m, h = oracle(eq, lab, eg, lab, metric, loo=True)
            else:
                t, m, h = oracle(eq[split], lab[split], eg[~split], lab[~split], metric,
                                 loo=False)
            top1[qv][gv], maps[qv][gv], hits[(qv, gv)] = t, m, h
    return top1, maps, hits


# --------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize(("metric", "split", "integer", "n_versions"), [
    ("ip", True, True, 3), ("l2", True, True, 3), ("ip", False, True, 4),
    ("cosine", True, False, 3), ("cosine", False, False, 3),
])
def test_every_cell_matches_brute_force(metric, split, integer, n_versions):
    tables = chain(n_versions, split=split, integer=integer, seed=n_versions)
    result = audit_compat(*tables, metric=metric)
    top1, maps, _ = expected_matrix(tables, metric)
    v = result.versions
    assert v.n == n_versions
    assert all(top1[k][k] is not None and maps[k][k] is not None for k in range(n_versions))
    assert len({x for row in top1 for x in row}) > 2  # the cells differ: not vacuous
    for q in range(n_versions):
        for g in range(n_versions):
            assert v.top1[q][g] == pytest.approx(top1[q][g], abs=1e-12), (q, g)
            assert v.map[q][g] == pytest.approx(maps[q][g], abs=1e-9), (q, g)
    doc = result.to_dict()
    assert doc["matrix"] == {"top1": [list(r) for r in v.top1], "map": [list(r) for r in v.map]}


def test_ties_are_broken_by_gallery_position():
    """Every gallery item scores the same: top-1 is the first gallery item by id, in
    every cell."""
    ids = [f"i{k}" for k in range(8)]
    labels = ["a", "b"] * 4
    split = ["query", "query"] + ["gallery"] * 6
    tables = [pa.table({"id": ids, "label": labels, "split": split,
                        "embedding": [[1.0, 1.0]] * 8}) for _ in range(3)]
    result = audit_compat(*tables, metric="ip")
    # gallery order i2 (a), i3 (b), ...: query i0 (a) is right at top-1, i1 (b) is not.
    assert all(x == 0.5 for row in result.versions.top1 for x in row)
    # equal matrices: no later version beats an earlier gallery (the criterion is strict)
    assert result.compatible is False
    assert all(p.audit.update_gain is None for p in result.versions.pairs)


# --------------------------------------------------------------------------- the pairs


def test_pairs_equal_the_two_file_audit_of_the_same_versions():
    tables = chain(3, seed=7)
    result = audit_compat(*tables, metric="ip", top=5)
    v = result.versions
    assert [(p.query_index, p.gallery_index) for p in v.pairs] == [(1, 0), (2, 0), (2, 1)]
    top1, _, hits = expected_matrix(tables, "ip")
    for p in v.pairs:
        j, i = p.query_index, p.gallery_index
        two = audit_compat(tables[i], tables[j], metric="ip", top=5)
        a = p.audit
        assert a.compatible == two.compatible == (top1[j][i] > top1[i][i])
        assert a.update_gain == two.update_gain
        own = top1[j][j] - top1[i][i]
        if own:
            assert a.update_gain == pytest.approx((top1[j][i] - top1[i][i]) / own)
        assert a.retrieval_negative_flips == two.retrieval_negative_flips == int(
            np.count_nonzero(hits[(i, i)] & ~hits[(j, i)]))
        assert a.criterion_test == two.criterion_test
        assert a.criterion_delta == two.criterion_delta
        assert a.breaking_queries == two.breaking_queries
        d = p.to_dict()
        assert d["criterion_values"] == {"cross": top1[j][i], "base": top1[i][i],
                                         "backfilled": top1[j][j]}
        assert d["tests"]["criterion"] == two.to_dict()["tests"]["criterion"]
        assert d["intervals"]["criterion_delta"] == two.to_dict()["intervals"][
            "criterion_delta"]
    # the two-version fields describe the newest queries on the oldest gallery
    newest = audit_compat(tables[0], tables[2], metric="ip", top=5).to_dict()
    doc = result.to_dict()
    for key in ("cases", "criterion_delta", "criterion_significant", "intervals", "tests",
                "update_gain", "retrieval_negative_flips", "retrieval_negative_flip_rate",
                "breaking_queries", "queries", "queries_without_positive"):
        assert doc[key] == newest[key], key
    assert doc["summary_pair"]["query_index"] == 2 and doc["summary_pair"]["gallery_index"] == 0
    assert doc["compatible"] == all(p.compatible for p in v.pairs)
    assert doc["versions"] == ["<Arrow table>"] * 3
    assert [x["dim"] for x in doc["inputs"]["versions"]] == [4, 4, 4]


def test_compatible_only_when_every_pair_is():
    base = chain(3, seed=7)
    result = audit_compat(*base, metric="ip")
    verdicts = [p.compatible for p in result.versions.pairs]
    assert result.compatible == all(verdicts)
    # V1 three times: every cross cell equals its diagonal, so no pair beats it
    same = audit_compat(base[0], base[0], base[0], metric="ip")
    assert same.compatible is False and len(same.versions.failing) == 3
    assert same.reason().startswith("3 of 3 pairs fail: V2 queries on V1 gallery")
    assert "NOT backward compatible across 3 versions" in same.headline()


def _improving() -> list[pa.Table]:
    """V1 noisy, V2 and V3 exact copies of the identity centres' direction: every later
    version beats every earlier gallery."""
    ids = [f"i{k:02d}" for k in range(12)]
    labels = [str(k % 3) for k in range(12)]
    split = ["query" if k < 6 else "gallery" for k in range(12)]
    centres = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    noisy = [centres[k % 3] + (np.array([0.0, 1.6]) if k in (0, 1, 4) else 0.0)
             for k in range(12)]
    good = [centres[k % 3] for k in range(12)]
    return [pa.table({"id": ids, "label": labels, "split": split,
                      "embedding": [list(x) for x in e]}) for e in (noisy, good, good)]


def test_all_pairs_hold_says_so():
    tables = _improving()
    v12 = audit_compat(tables[0], tables[1], metric="ip")
    assert v12.compatible
    result = audit_compat(tables[0], tables[1], tables[2], metric="ip")
    # V3/V2 = V2/V2 (identical models): not strictly better, so the chain fails there only
    assert [p.compatible for p in result.versions.pairs] == [True, True, False]
    assert result.reason() == ("1 of 3 pairs fail: V3 queries on V2 gallery: top-1 V3/V2 "
                               "100.00% <= V2/V2 100.00%")


# --------------------------------------------------------------------------- gates


def test_gates_apply_to_every_pair_and_name_the_worst():
    tables = chain(3, seed=7)
    result = audit_compat(*tables, metric="ip")
    pairs = result.versions.pairs
    cross = {(p.query_index, p.gallery_index): p.audit.cases["new/old"].topk[1] for p in pairs}
    worst = min(cross, key=lambda k: (cross[k], list(cross).index(k)))
    label = f"V{worst[0] + 1} queries on V{worst[1] + 1} gallery"
    just_above = cross[worst] + 1e-9
    gated = audit_compat(*tables, metric="ip", gates={"min-cross-top1": just_above})
    (g,) = gated.gates
    assert g.status == "fail" and g.value == cross[worst] and g.detail == label
    held = audit_compat(*tables, metric="ip", gates={"min-cross-top1": cross[worst]})
    assert held.passed and held.gates[0].detail == label
    # max gates: the largest value over the pairs
    drops = {(p.query_index, p.gallery_index): p.audit.cross_drop for p in pairs}
    worst_drop = max(drops.values())
    nfr = max(p.audit.retrieval_negative_flip_rate for p in pairs)
    gated = audit_compat(*tables, metric="ip", gates={"max-cross-drop": worst_drop,
                                                      "max-retrieval-nfr": 0.0})
    assert gated.gates[0].value == worst_drop and gated.gates[0].passed
    assert gated.gates[1].value == nfr
    assert (gated.gates[1].status == "fail") == (nfr > 0)
    gains = [p.audit.update_gain for p in pairs if p.audit.update_gain is not None]
    gated = audit_compat(*tables, metric="ip", gates={"min-update-gain": -1e6})
    assert gated.gates[0].value == (min(gains) if gains else None)


def test_require_compatible_names_the_failing_pairs():
    tables = _improving()
    result = audit_compat(*tables, metric="ip", gates={"require-compatible": 1})
    (g,) = result.gates
    assert not g.passed and g.detail == "1 of 3 pairs fail: V3/V2"
    from graceful_audit.report.common import verdict

    assert "V3 queries on V2 gallery" in verdict(result)
    ok = audit_compat(*tables[:2], metric="ip", gates={"require-compatible": 1})
    assert ok.passed


def test_a_gate_names_the_pair_in_every_report():
    from graceful_audit.report import Format, render

    tables = _improving()
    result = audit_compat(*tables, metric="ip", gates={"max-cross-drop": -0.01})
    (g,) = result.gates
    assert g.status == "fail" and g.value == 0.0 and g.detail == "V3 queries on V2 gallery"
    for fmt in Format:
        text = " ".join(render(result, fmt).split())
        assert "V3 queries on V2 gallery" in text, fmt


# --------------------------------------------------------------------------- dimensions


def test_dimension_of_the_middle_version_differs():
    """V2 is 6-d between two 4-d versions: the pairs with V2 cannot be compared (not
    compatible, cells null), V3/V1 still can; gates take V2's cross cases as finding
    nothing, like the two-file audit."""
    tables = chain(3, seed=7, dims=(4, 6, 4))
    result = audit_compat(*tables, metric="ip", gates={"min-cross-top1": 0.0001,
                                                       "require-compatible": 1})
    v = result.versions
    assert v.top1[1][0] is None and v.top1[0][1] is None and v.top1[2][1] is None
    assert v.top1[1][1] is not None and v.top1[2][0] is not None
    by = {(p.query_index, p.gallery_index): p for p in v.pairs}
    assert not by[(1, 0)].compatible and not by[(2, 1)].compatible
    assert by[(1, 0)].reason() == "dimension 6 vs 4: cannot compare"
    assert by[(1, 0)].audit.update_gain is None and by[(1, 0)].audit.retrieval_negative_flips \
        is None
    two = audit_compat(tables[0], tables[2], metric="ip")
    assert by[(2, 0)].compatible == two.compatible
    assert result.compatible is False
    cross = next(g for g in result.gates if g.name == "min-cross-top1")
    assert cross.value == 0.0 and cross.detail.startswith("V2 queries on V1 gallery (dimension")
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["pairs"][0]["criterion_values"]["cross"] is None


# --------------------------------------------------------------------------- joining


def test_ids_are_joined_across_all_files():
    tables = chain(3, seed=7)
    short = tables[1].filter(pa.compute.invert(pa.compute.is_in(
        tables[1].column("id"), value_set=pa.array(["i004", "i007"]))))
    with pytest.raises(InputError) as e:
        audit_compat(tables[0], short, tables[2], metric="ip")
    msg = str(e.value)
    assert "V2 file <Arrow table> lacks 2 id(s) another version has (e.g. 'i004', 'i007')" \
        in msg
    assert "34 matched" in msg and "all 3 files" in msg and "V1 file" not in msg
    result = audit_compat(tables[0], short, tables[2], metric="ip", allow_unmatched=True)
    i = result.to_dict()["inputs"]
    assert i["matched"] == 34 and [x["unmatched"] for x in i["versions"]] == [2, 0, 2]
    assert [x["rows"] for x in i["versions"]] == [36, 34, 36]
    expected = expected_matrix([t.filter(pa.compute.is_in(
        t.column("id"), value_set=short.column("id"))) for t in tables], "ip")[0]
    for got, want in zip(result.versions.top1, expected, strict=True):
        assert list(got) == pytest.approx(want)


def test_labels_and_split_must_agree_across_all_files():
    tables = chain(3, seed=7)
    labels = tables[2].column("label").to_pylist()
    k = tables[2].column("id").to_pylist().index("i005")
    labels[k] = "zz"
    bad = tables[2].set_column(tables[2].schema.get_field_index("label"), "label",
                               pa.array(labels))
    with pytest.raises(InputError, match="disagree between V1 and V3 for 1 item.*'i005'.*All "
                                         "files must label"):
        audit_compat(tables[0], tables[1], bad, metric="ip")
    split = tables[1].column("split").to_pylist()
    split[k] = "gallery" if split[k] == "query" else "query"
    bad = tables[1].set_column(tables[1].schema.get_field_index("split"), "split",
                               pa.array(split))
    with pytest.raises(InputError, match="split column disagrees between V1 and V2.*Keep one "
                                         "split for all models"):
        audit_compat(tables[0], bad, tables[2], metric="ip")
    # labels in one file only are enough
    no_labels = [t.drop(["label"]) for t in tables[1:]]
    ok = audit_compat(tables[0], *no_labels, metric="ip")
    assert ok.versions.top1 == audit_compat(*tables, metric="ip").versions.top1
    with pytest.raises(InputError, match="no identity label column 'label' in any of the "
                                         "files \\(V1 file"):
        audit_compat(tables[0].drop(["label"]), *no_labels, metric="ip")


def test_no_id_in_every_file():
    tables = chain(3, seed=7)
    renamed = tables[2].set_column(0, "id", pa.array(
        [f"z{x}" for x in tables[2].column("id").to_pylist()]))
    with pytest.raises(InputError, match="no id is in all 3 files"):
        audit_compat(tables[0], tables[1], renamed, metric="ip")


# --------------------------------------------------------------------------- saved results


def test_render_reads_a_saved_versions_result_back(tmp_path):
    tables = chain(3, seed=7, dims=(4, 6, 4))
    result = audit_compat(*tables, metric="ip", gates={"min-update-gain": 0.1,
                                                       "max-cross-drop": 0.0})
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result.to_dict()))
    back = load_result(str(path))
    assert back.to_dict() == result.to_dict()
    from graceful_audit.report import Format, render

    for fmt in Format:
        assert render(back, fmt) == render(result, fmt), fmt
    from graceful_audit.gates import GateSpec

    again = regate(back, [GateSpec("min-cross-top1", 0.5), GateSpec("require-compatible", 1)])
    fresh = audit_compat(*tables, metric="ip", gates={"min-cross-top1": 0.5,
                                                      "require-compatible": 1})
    assert [g.to_dict() for g in again.gates] == [g.to_dict() for g in fresh.gates]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["matrix"]["top1"].pop(), "matrix.top1 must be 3 x 3"),
    (lambda d: d["pairs"].pop(), "pairs must hold each later-vs-earlier pair once"),
    (lambda d: d["pairs"][0].update(query_index=0, gallery_index=1),
     "pairs must hold each later-vs-earlier pair once"),
    (lambda d: d.update(compatible=not d["compatible"]), "but the pairs say"),
    (lambda d: d.pop("matrix"), "versions is present but matrix is missing"),
    (lambda d: d.pop("versions"), "matrix is present but versions is missing"),
    (lambda d: d["versions"].pop(), "versions lists 2 files"),
    (lambda d: d["inputs"]["versions"].pop(), "inputs.versions has 2 entries"),
    (lambda d: d["matrix"]["map"][1].__setitem__(0, "high"),
     "matrix.map[1][0] must be a number from 0 to 1"),
    (lambda d: d["pairs"][1].update(compatible="yes"), "pairs[1].compatible must be true"),
    (lambda d: d["summary_pair"].update(query_index=1), "summary_pair must be the newest"),
])
def test_render_refuses_an_edited_versions_result(tmp_path, edit, message):
    tables = chain(3, seed=7)
    doc = audit_compat(*tables, metric="ip").to_dict()
    edit(doc)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="Was it edited") as e:
        load_result(str(path))
    assert message in str(e.value)


# --------------------------------------------------------------------------- command line


def _write(tables: list[pa.Table], folder: Path) -> list[str]:
    paths = []
    for k, t in enumerate(tables):
        p = folder / f"v{k + 1}.parquet"
        pq.write_table(t, p)
        paths.append(str(p))
    return paths


def test_cli_three_files_exit_codes(tmp_path):
    paths = _write(_improving(), tmp_path)
    r = runner.invoke(app, ["compat", *paths[:2], "--require-compatible", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["compat", *paths, "-f", "json", "--metric", "ip"])
    assert r.exit_code == 0, r.output  # no gate: nothing can fail
    doc = json.loads(r.stdout)
    assert doc["versions"] == paths and len(doc["pairs"]) == 3
    assert doc["compatible"] is False
    r = runner.invoke(app, ["compat", *paths, "--metric", "ip", "--require-compatible"])
    assert r.exit_code == 1
    assert "V3 queries on V2 gallery" in " ".join(r.stdout.split())
    r = runner.invoke(app, ["compat", paths[0], paths[1], paths[0], "--metric", "ip",
                            "--min-cross-top1", "0.5"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["compat", paths[0], "--require-compatible"])
    assert r.exit_code == 2 and "Missing argument 'NEW'" in r.output
    pd.DataFrame({"id": ["a"], "label": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    r = runner.invoke(app, ["compat", *paths, str(tmp_path / "bad.csv")])
    assert r.exit_code == 2 and "V4 file" in r.output and "no embeddings" in r.output
    r = runner.invoke(app, ["compat", *paths, "-o", paths[2]])
    assert r.exit_code == 2 and "V3" in r.output


def test_cli_reads_the_sample_chain():
    root = Path(__file__).resolve().parents[1] / "sample_data"
    files = [str(root / f) for f in ("emb_old.parquet", "emb_new_compatible.parquet",
                                     "emb_new_incompatible.parquet")]
    r = runner.invoke(app, ["compat", *files, "--require-compatible", "-f", "json"])
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert [p["compatible"] for p in doc["pairs"]] == [True, False, False]
    two = json.loads(runner.invoke(app, ["compat", *files[:2], "-f", "json"]).stdout)
    assert doc["matrix"]["top1"][1][0] == two["cases"]["new/old"]["top1"]
    assert doc["matrix"]["map"][0][1] == two["cases"]["old/new"]["map"]


def test_readme_versions_example_is_what_gaudit_says():
    root = Path(__file__).resolve().parents[1]
    files = [str(root / "sample_data" / f) for f in (
        "emb_old.parquet", "emb_new_compatible.parquet", "emb_new_incompatible.parquet")]
    r = runner.invoke(app, ["compat", *files, "--min-cross-top1", "0.5"])
    assert r.exit_code == 1
    said = " ".join(r.stdout.split())
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    for quote in ("2 of 3 pairs fail: V3 queries on V1 gallery: top-1 V3/V1 0.83% <= V1/V1 "
                  "98.61%;", "min-cross-top1 (0.002778 at V3 queries on V2 gallery < 0.5)"):
        assert quote in said and quote in readme
    assert "n versions cost n^2 searches" in readme


@pytest.mark.parametrize("dims", [(6, 4, 4), (4, 4, 6), (4, 6, 8)])
def test_every_format_renders_when_pairs_cannot_be_compared(dims):
    """The newest-on-oldest pair itself may be unavailable: every report still renders
    and says why."""
    from graceful_audit.report import Format, render

    result = audit_compat(*chain(3, seed=7, dims=dims), metric="ip",
                          gates={"max-retrieval-nfr": 0.5, "min-update-gain": 0})
    assert result.compatible is False
    for fmt in Format:
        text = " ".join(render(result, fmt).split())
        assert "cannot compare" in text or fmt is Format.JSON, fmt
    if dims[0] != dims[2]:
        assert result.retrieval_negative_flips is None
        assert "Cannot be counted: the V3/V1 case is unavailable" in render(result,
                                                                              Format.MARKDOWN)


def test_markdown_cuts_the_pairs_of_many_versions_failing_first():
    from graceful_audit.report.markdown import render

    tables = chain(3, seed=7)
    many = [tables[k % 3] for k in range(24)]  # 276 pairs
    result = audit_compat(*many, metric="ip")
    text = render(result, limit=20_000)
    assert len(text.encode("utf-16-le")) // 2 <= 20_000
    assert "more pairs in the JSON" in text
    listed = [line for line in text.splitlines() if line.startswith("| **V")
              and "/V" in line.split("|")[1]]
    assert listed and all("❌" in line for line in listed)  # failing pairs come first
