"""Engine equality: the same files give the same JSON on DuckDB and on Spark (Spark Connect).

One local Spark session serves the whole test run (it stays on 127.0.0.1). Skipped when
pyspark or Java is missing; CI installs the ``spark`` extra, so there it runs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graceful_audit import audit_flips
from graceful_audit.errors import GauditError

pytest.importorskip("pyspark.sql.connect", reason="the spark extra is not installed")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip("no Java for a local Spark session", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


@pytest.fixture(scope="session", autouse=True)
def spark_session():
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from graceful_audit.engine_spark import SparkEngine

    engine = SparkEngine()  # starts the one local session of this test run
    yield engine.spark


def both(*args, **kwargs):
    duck = audit_flips(*args, engine="duckdb", **kwargs).to_dict()
    spark = audit_flips(*args, engine="spark", **kwargs).to_dict()
    assert duck.pop("engine") == "duckdb" and spark.pop("engine") == "spark"
    return duck, spark


def assert_close(a, b, path="$"):
    """Equal, except floats that come from sums of doubles: those to 1e-12 relative."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_sample_pair_is_byte_identical():
    duck, spark = both(SAMPLE / "digits_old.csv", SAMPLE / "digits_new.parquet",
                       score_cols="prob_*", slice_by=["ink"], gates={"max-nfr": 0.01})
    assert json.dumps(duck) == json.dumps(spark)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    rng = np.random.default_rng(7)
    n = 2_000
    classes = np.array(["cat", "dog", "owl", "fox"])
    y = rng.integers(0, 4, n)
    old = np.where(rng.random(n) < 0.8, y, rng.integers(0, 4, n))
    new = np.where(rng.random(n) < 0.85, y, rng.integers(0, 4, n))
    d = tmp_path_factory.mktemp("gen")
    ids = np.arange(n) * 3 + 1
    seg = rng.choice(["web", "app", None], n)
    o = pd.DataFrame({"id": ids, "label": classes[y], "pred": classes[old], "segment": seg})
    for k, c in enumerate(classes):
        o[f"p_{c}"] = np.where(old == k, 0.7, 0.1) + rng.random(n) * 0.01
    nn = pd.DataFrame({"id": ids, "pred": classes[new]})
    for k, c in enumerate(classes):
        nn[f"p_{c}"] = np.where(new == k, 0.6, 0.1) + rng.random(n) * 0.01
    nn = nn.sample(frac=1, random_state=1)
    o.to_csv(d / "old.csv", index=False)
    nn.to_parquet(d / "new.parquet", index=False)
    o.assign(id=[f"s{i}" for i in ids]).to_parquet(d / "old_str.parquet", index=False)
    nn.assign(id=[f"s{i}" for i in nn["id"]]).to_parquet(d / "new_str.parquet", index=False)
    o[["id", "label"]].to_csv(d / "labels.csv", index=False)
    nn.assign(id=nn["id"] + 10**7).to_parquet(d / "elsewhere.parquet", index=False)
    o.drop(columns=["label"]).to_parquet(d / "old_nolabel.parquet", index=False)
    o.assign(id=o["id"].astype(float)).to_parquet(d / "old_float_ids.parquet", index=False)
    # Booleans (issue 13): True/False in a CSV against 0/1 in Parquet; a boolean slice.
    b = pd.DataFrame({"id": ids, "label": y % 2 == 1, "pred": old % 2 == 1,
                      "flag": rng.random(n) > 0.5})
    b.to_csv(d / "bool_old.csv", index=False)
    b.assign(pred=(new % 2).astype(int)).drop(columns="label").to_parquet(
        d / "bool_new.parquet", index=False)
    reg = pd.DataFrame({"id": [f"r{i}" for i in range(300)], "y": rng.normal(50, 10, 300)})
    reg["pred"] = (reg["y"] + rng.normal(0, 4, 300)).round(1)
    # issue 13: classes that share nothing with the labels, slice values that differ
    o.assign(pred=o["pred"].map({c: f"{c}!" for c in classes})).to_parquet(
        d / "old_other_classes.parquet", index=False)
    nn.assign(pred=nn["pred"].where(nn["id"] % 4 == 1, "unknown")).to_parquet(
        d / "new_mostly_unknown.parquet", index=False)
    nn.assign(segment=o.set_index("id").loc[nn["id"], "segment"].fillna("web").to_numpy()
              ).to_parquet(d / "new_segment.parquet", index=False)
    dup = o[["id", "label", "pred"]].assign(again=o["pred"])
    dup.to_csv(d / "old_dup.csv", index=False, header=["id", "label", "pred", "pred"])
    lists = pd.DataFrame({"id": ids, "label": y})
    lists["scores"] = [[0.1, 0.2, 0.7] if i % 50 else [0.1, 0.2, 0.3, 0.4] for i in range(n)]
    lists.to_parquet(d / "old_ragged.parquet", index=False)
    reg.to_csv(d / "reg_old.csv", index=False)
    reg.assign(pred=(reg["y"] + rng.normal(0, 3, 300)).round(1)).sample(
        frac=1, random_state=2).to_parquet(d / "reg_new.parquet", index=False)
    return d


@pytest.mark.parametrize(
    ("old", "new", "kwargs"),
    [
        ("old.csv", "new.parquet", {"slice_by": ["segment"], "top": 7}),
        ("old_str.parquet", "new_str.parquet", {"score_cols": "p_*", "pred_col": "pred"}),
        ("old_nolabel.parquet", "new.parquet", {"labels": "labels.csv"}),
        ("old_float_ids.parquet", "new.parquet", {"top": 5}),
        ("bool_old.csv", "bool_new.parquet", {"slice_by": ["flag"]}),
    ],
    ids=["int-ids-slices", "string-ids-scores", "labels-file", "float-ids", "booleans"],
)
def test_generated_cases_are_byte_identical(generated, old, new, kwargs):
    if "labels" in kwargs:
        kwargs = {**kwargs, "labels": generated / kwargs["labels"]}
    duck, spark = both(generated / old, generated / new, **kwargs)
    assert json.dumps(duck) == json.dumps(spark)


@pytest.mark.parametrize("top", [3, 12])
def test_ids_that_only_look_numeric_order_the_same(tmp_path, top):
    """Integer text sorts numerically, "1.5" / "0x10" / "1e3" as text, on both engines."""
    ids = ["1.5", "0x10", "1e3", "2", "a", "-3", "+4", " 7", "1_0", "0010", "10",
           "1234567890123456789"]
    old = pd.DataFrame({"id": ids, "label": ["x"] * len(ids), "pred": ["x"] * len(ids)})
    new = pd.DataFrame({"id": ids[::-1], "pred": ["y"] * len(ids)})
    old.to_parquet(tmp_path / "old.parquet", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    duck, spark = both(tmp_path / "old.parquet", tmp_path / "new.parquet", top=top)
    assert json.dumps(duck) == json.dumps(spark)
    assert [e["id"] for e in duck["top_negative_flips"]][:3] == ["-3", "2", "+4"]


def test_warnings_match(generated):
    """The predicted classes are counted in the same pass on both engines: same warning."""
    duck, spark = both(generated / "old.csv", generated / "new_mostly_unknown.parquet",
                       slice_by=["segment"])
    assert json.dumps(duck) == json.dumps(spark)
    assert len(duck["warnings"]) == 1 and "'unknown'" in duck["warnings"][0]


def test_regression_matches(generated):
    duck, spark = both(generated / "reg_old.csv", generated / "reg_new.parquet", atol=3.0,
                       label_col="y", gates={"max-mae-delta": 0})
    assert duck["task"] == spark["task"] == "regression"
    assert_close(duck, spark)


def test_quality_with_scores_is_byte_identical(tmp_path):
    """Log-loss and Brier are exact sums (integer parts), AUCs and DeLong's moments exact
    integer sums: the quality block is the same bytes on both engines, binary and
    multiclass, with ties."""
    rng = np.random.default_rng(3)
    n = 1_500
    y = rng.integers(0, 2, n)
    s_old = np.clip(np.round(0.5 * y + rng.normal(0.25, 0.3, n), 2), 0, 1)
    s_new = np.clip(np.round(0.6 * y + rng.normal(0.2, 0.3, n), 2), 0, 1)
    pd.DataFrame({"id": np.arange(n), "label": y, "score": s_old}).to_csv(
        tmp_path / "bo.csv", index=False)
    pd.DataFrame({"id": np.arange(n), "score": s_new}).sample(frac=1, random_state=4).to_parquet(
        tmp_path / "bn.parquet", index=False)
    duck, spark = both(tmp_path / "bo.csv", tmp_path / "bn.parquet", score_cols="score",
                       gates={"max-auc-drop": 0.0, "max-f1-drop": 0.0})
    assert duck["tests"]["roc_auc_delong"]["z"] is not None
    assert json.dumps(duck) == json.dumps(spark)
    p = rng.dirichlet(np.ones(3), n)
    frame = pd.DataFrame({"id": np.arange(n), "label": rng.integers(0, 3, n)})
    for k in range(3):
        frame[f"prob_{k}"] = p[:, k]
    frame.to_parquet(tmp_path / "mo.parquet", index=False)
    frame.assign(**{f"prob_{k}": np.roll(p[:, k], 7) for k in range(3)}).drop(
        columns="label").to_parquet(tmp_path / "mn.parquet", index=False)
    duck, spark = both(tmp_path / "mo.parquet", tmp_path / "mn.parquet", score_cols="prob_*")
    assert duck["quality"]["old"]["log_loss"] is not None
    assert json.dumps(duck) == json.dumps(spark)


@pytest.mark.parametrize(
    ("old", "new", "kwargs", "needle"),
    [
        ("old.csv", "new.parquet", {"pred_col": "prediction"}, "no column 'prediction'"),
        ("old.csv", "elsewhere.parquet", {}, "share no ids"),
        ("old.csv", "missing.parquet", {}, "no such file"),
        ("old_other_classes.parquet", "new.parquet", {}, "share no class"),
        ("old.csv", "new_segment.parquet", {"slice_by": ["segment"]},
         "--slice-by 'segment': OLD file"),
        ("old_ragged.parquet", "old_ragged.parquet", {"score_cols": "scores"},
         "ragged score lists in column 'scores': lengths 3, 4"),
        ("old_dup.csv", "new.parquet", {}, "the column name 'pred' occurs twice in the header"),
    ],
    ids=["wrong-column", "no-shared-ids", "missing-file", "classes-share-nothing",
         "slice-values-differ", "ragged-score-lists", "duplicate-column"],
)
def test_errors_match(generated, old, new, kwargs, needle):
    messages = []
    for engine in ("duckdb", "spark"):
        with pytest.raises(GauditError) as info:
            audit_flips(generated / old, generated / new, engine=engine, **kwargs)
        messages.append(str(info.value))
    assert all(needle in m for m in messages), messages


def test_cli_engine_spark_exit_codes(generated, monkeypatch):
    from typer.testing import CliRunner

    from graceful_audit.cli import app

    monkeypatch.chdir(generated)
    runner = CliRunner()
    args = ["flips", str(SAMPLE / "digits_old.csv"), str(SAMPLE / "digits_new.parquet"),
            "--engine", "spark"]
    assert runner.invoke(app, [*args, "--max-nfr", "0.01"]).exit_code == 1
    assert runner.invoke(app, [*args, "--max-nfr", "0.05"]).exit_code == 0
    bad = runner.invoke(app, [*args, "--pred-col", "nope"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_unreachable_cluster_is_one_clear_error(monkeypatch):
    from typer.testing import CliRunner

    from graceful_audit.cli import app

    monkeypatch.chdir(SAMPLE)
    r = CliRunner().invoke(app, ["flips", "digits_old.csv", "digits_new.parquet", "--engine",
                                 "spark", "--spark-remote", "sc://127.0.0.1:1"])
    assert r.exit_code == 2
    assert "cannot reach the Spark Connect server sc://127.0.0.1:1" in r.stderr
    assert "Traceback" not in r.output


# --------------------------------------------------------------------------- outcomes


def test_outcome_audit_of_the_lm_eval_sample_is_identical():
    """JSON Lines (plain and gzip), nested fields, composite ids, graded scores (issue 16)."""
    duck, spark = both(SAMPLE / "lm_eval_old.jsonl", SAMPLE / "lm_eval_new.jsonl.gz",
                       id_col=["task", "doc_id"], outcome_col="judge.score",
                       pass_threshold=0.5, slice_by=["task"], top=20,
                       gates={"max-slice-nfr": 0.1, "min-score-delta": -0.01})
    assert duck["task"] == "outcome" and duck["scores"]["n"] == 340
    assert_close(duck, spark)


def test_outcome_pass_fail_and_bad_json_line_on_spark(tmp_path):
    duck, spark = both(SAMPLE / "lm_eval_old.jsonl", SAMPLE / "lm_eval_new.jsonl.gz",
                       id_col=["task", "doc_id"], outcome_col="exact_match", top=5)
    assert_close(duck, spark)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "ok": true}\n{"id": 2, "ok": tru}\n')
    with pytest.raises(GauditError, match=r"bad\.jsonl, line 2: is not valid JSON"):
        audit_flips(str(bad), str(bad), outcome_col="ok", engine="spark")
# --------------------------------------------------------------------------- what-if (issue 17)


@pytest.fixture(scope="module")
def what_if_files(tmp_path_factory):
    """Scores with ties everywhere (few levels), logits, one binary score, list columns."""
    rng = np.random.default_rng(17)
    n, k = 1_500, 4
    d = tmp_path_factory.mktemp("whatif")
    y = rng.integers(0, k, n)
    ids = [f"w{i}" for i in range(n)]
    so = np.round(rng.random((n, k)) * 2) / 2
    sn = np.round(rng.random((n, k)) * 2) / 2
    old = pd.DataFrame({"id": ids, "label": y})
    new = pd.DataFrame({"id": ids, "pred": np.argmax(sn, axis=1) ^ (np.arange(n) % 9 == 0)})
    for j in range(k):
        old[f"p_{j}"] = so[:, j]
    for j in reversed(range(k)):  # another column order: ties break in NEW's
        new[f"p_{j}"] = sn[:, j]
    old.to_csv(d / "old.csv", index=False)
    new.sample(frac=1, random_state=3).to_parquet(d / "new.parquet", index=False)
    logits = old.assign(**{f"p_{j}": np.log(so[:, j] + 1e-3) * 3.3 for j in range(k)})
    logits.to_parquet(d / "old_logits.parquet", index=False)
    b = pd.DataFrame({"id": ids, "label": y % 2, "s": (rng.random(n) * 10).round() / 10})
    b.to_parquet(d / "bin_old.parquet", index=False)
    b.assign(s=(rng.random(n) * 10).round() / 10).drop(columns="label").to_parquet(
        d / "bin_new.parquet", index=False)
    lists = pd.DataFrame({"id": ids, "label": y, "scores": list(so)})
    lists.to_parquet(d / "list_old.parquet", index=False)
    lists.assign(scores=list(sn)).drop(columns="label").to_parquet(d / "list_new.parquet",
                                                                    index=False)
    return d


def test_what_if_on_the_sample_is_byte_identical():
    duck, spark = both(SAMPLE / "digits_old.csv", SAMPLE / "digits_new.parquet",
                       score_cols="prob_*", what_if=True, gates={"max-nfr": 0.005})
    assert duck["what_if"]["recommended"]["alpha"] == 0.35
    assert json.dumps(duck) == json.dumps(spark)


@pytest.mark.parametrize(
    ("old", "new", "kwargs"),
    [
        ("old.csv", "new.parquet", {"score_cols": "p_*", "what_if_steps": 41}),
        ("old_logits.parquet", "new.parquet", {"score_cols": "p_*"}),
        ("bin_old.parquet", "bin_new.parquet", {"score_cols": "s", "threshold": 0.3}),
        ("list_old.parquet", "list_new.parquet", {"score_cols": "scores",
                                                  "what_if_steps": 7}),
    ],
    ids=["ties", "logits", "binary", "lists"],
)
def test_what_if_is_byte_identical(what_if_files, old, new, kwargs):
    duck, spark = both(what_if_files / old, what_if_files / new, what_if=True,
                       gates={"max-nfr": 0.05}, **kwargs)
    assert json.dumps(duck) == json.dumps(spark)
    assert len(duck["what_if"]["points"]) == kwargs.get("what_if_steps", 21)


def test_what_if_missing_score_matches(what_if_files, tmp_path):
    new = pd.read_parquet(what_if_files / "new.parquet")
    new.loc[new["id"] == "w3", "p_2"] = np.nan
    new.to_parquet(tmp_path / "new.parquet", index=False)
    messages = []
    for engine in ("duckdb", "spark"):
        with pytest.raises(GauditError) as info:
            audit_flips(what_if_files / "old.csv", tmp_path / "new.parquet", engine=engine,
                        score_cols="p_*", what_if=True)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "--what-if: 1 audited row(s) have a missing score" in messages[0]
    assert "ids 'w3'" in messages[0]


# --------------------------------------------------------------------------- compat (issue 15)


def both_compat(*files, **kwargs):
    """The compat JSON of the default engine and of Spark, without their ``engine``."""
    from graceful_audit import audit_compat

    duck = audit_compat(*files, **kwargs).to_dict()
    spark = audit_compat(*files, engine="spark", **kwargs).to_dict()
    assert duck.pop("engine") == "duckdb" and spark.pop("engine") == "spark"
    return duck, spark


@pytest.mark.parametrize(
    ("files", "kwargs"),
    [
        (("emb_old.parquet", "emb_new_compatible.parquet"),
         {"gates": {"require-compatible": 1, "max-retrieval-nfr": 0.05}, "top": 20}),
        (("emb_old.parquet", "emb_new_incompatible.parquet"),
         {"criterion": "map", "sample_queries": 150, "seed": 4}),
        (("beir_old.parquet", "beir_new.parquet"), {"qrels": str(SAMPLE / "beir_qrels.tsv")}),
        (("emb_old.parquet", "emb_new_compatible.parquet", "emb_new_incompatible.parquet"),
         {"gates": {"min-update-gain": 0.0}}),
    ],
    ids=["split-gates", "map-sample", "qrels", "three-versions"],
)
def test_compat_samples_are_byte_identical(files, kwargs):
    duck, spark = both_compat(*(SAMPLE / f for f in files), **kwargs)
    assert json.dumps(duck) == json.dumps(spark)
    assert duck["queries"] > 0 and duck["cases"]["new/old"]["available"]


@pytest.fixture(scope="module")
def compat_files(tmp_path_factory):
    """Ties everywhere (embeddings of a few integer levels), leave-one-out (no split
    column), integer ids shuffled in one file, the new model as CSV ``emb_*`` columns; and a
    pair whose dimensions differ."""
    rng = np.random.default_rng(15)
    d = tmp_path_factory.mktemp("compat")
    n = 400
    y = rng.integers(0, 25, n)
    ids = rng.permutation(10 * n)[:n]
    old = pd.DataFrame({"id": ids, "label": y,
                        "embedding": list(rng.integers(1, 4, (n, 4)).astype(np.float32))})
    old.to_parquet(d / "ties_old.parquet", index=False)
    new = pd.DataFrame({"id": ids, "label": y})
    for j, col in enumerate(rng.integers(1, 3, (4, n))):
        new[f"emb_{j}"] = col + (y % 3 == j) * 2
    new.sample(frac=1, random_state=5).to_csv(d / "ties_new.csv", index=False)
    wide = pd.DataFrame({"id": ids, "label": y, "split": np.where(ids % 4 == 0, "query",
                                                                  "gallery"),
                         "embedding": list(rng.normal(size=(n, 6)))})
    wide.to_parquet(d / "dim6.parquet", index=False)
    wide.assign(embedding=list(rng.normal(size=(n, 4)))).to_parquet(d / "dim4.parquet",
                                                                  index=False)
    return d


@pytest.mark.parametrize(
    ("old", "new", "kwargs"),
    [
        ("ties_old.parquet", "ties_new.csv", {"metric": "ip", "criterion": "map"}),
        ("ties_old.parquet", "ties_new.csv", {"metric": "l2", "sample_queries": 90,
                                              "seed": 2}),
        ("dim4.parquet", "dim6.parquet", {"gates": {"require-compatible": 1}}),
    ],
    ids=["ties-leave-one-out-ip", "ties-l2-sample", "dimension-mismatch"],
)
def test_compat_generated_are_byte_identical(compat_files, old, new, kwargs):
    duck, spark = both_compat(compat_files / old, compat_files / new, **kwargs)
    assert json.dumps(duck) == json.dumps(spark)


def test_compat_spark_tasks_see_scattered_rows(compat_files, monkeypatch, spark_session):
    """Eight partitions of batches of 7 rows (every batch a shard of gallery rows in no
    particular order, merged across tasks), score blocks of a few rows and the queries in
    blocks: the same JSON."""
    from graceful_audit import compat_spark

    monkeypatch.setattr(compat_spark, "TASK_BLOCK_BYTES", 4096)
    monkeypatch.setattr(compat_spark, "CLOSURE_BYTES", 200_000)  # 400 queries: 4 blocks
    monkeypatch.setattr(compat_spark, "SHARD_BYTES", 4 * 4 * 20)  # shards of 20+ rows
    conf = {"spark.sql.execution.arrow.maxRecordsPerBatch": "7",
            "spark.sql.adaptive.coalescePartitions.enabled": "false"}
    saved = {k: spark_session.conf.get(k) for k in conf}
    for k, v in conf.items():
        spark_session.conf.set(k, v)
    try:
        for old, new, kwargs in [("ties_old.parquet", "ties_new.csv", {}),
                                 ("dim4.parquet", "dim4.parquet", {"sample_queries": 30})]:
            duck, spark = both_compat(compat_files / old, compat_files / new, **kwargs)
            assert json.dumps(duck) == json.dumps(spark)
    finally:
        for k, v in saved.items():
            spark_session.conf.set(k, v)


@pytest.mark.parametrize(
    "builder",
    ["embeddings_nan", "embeddings_inf", "embeddings_ragged", "embeddings_beyond_float32",
     "embeddings_huge_l2", "zero_vectors_cosine"],
)
def test_compat_bad_embeddings_same_message(tmp_path, monkeypatch, builder):
    """The checks run in Spark tasks and give the default engine's message, word for word."""
    import test_bad_inputs
    from test_bad_inputs import invoke

    monkeypatch.chdir(tmp_path)
    # absolute paths: the local Spark server keeps the working directory it started in
    args = [str(tmp_path / a) if (tmp_path / a).is_file() else a
            for a in getattr(test_bad_inputs, builder)()]
    duck = invoke(*args)
    spark = invoke(*args, "--engine", "spark")
    assert duck.exit_code == spark.exit_code == 2, (duck.output, spark.output)
    assert duck.stderr == spark.stderr
    assert "Traceback" not in spark.output


def test_compat_bad_embeddings_many_rows_same_message(tmp_path):
    """Counts and the first ids over many rows and partitions: the five smallest ids in id
    order and "(+N more)", as the default engine says them."""
    from graceful_audit import audit_compat

    rng = np.random.default_rng(8)
    n = 3_000
    e = rng.normal(size=(n, 5))
    e[rng.choice(n, 40, replace=False), 2] = np.nan
    ragged = [list(v) for v in rng.normal(size=(n, 3))]
    for i in rng.choice(n, 12, replace=False):
        ragged[i] = [0.5, 0.5]
    frame = pd.DataFrame({"id": [f"k{i:05d}" for i in rng.permutation(n)],
                          "label": rng.integers(0, 9, n)})
    frame.assign(embedding=list(rng.normal(size=(n, 5)))).to_parquet(tmp_path / "ok.parquet")
    frame.assign(embedding=list(e)).to_parquet(tmp_path / "nan.parquet")
    frame.assign(embedding=ragged).to_parquet(tmp_path / "ragged.parquet")
    for bad in ("nan.parquet", "ragged.parquet"):
        messages = []
        for engine in ("duckdb", "spark"):
            with pytest.raises(GauditError) as info:
                audit_compat(tmp_path / "ok.parquet", tmp_path / bad, engine=engine)
            messages.append(str(info.value))
        assert messages[0] == messages[1]
        assert "more)" in messages[0]


def test_compat_cli_engine_spark():
    from typer.testing import CliRunner

    from graceful_audit.cli import app

    runner = CliRunner()
    args = ["compat", str(SAMPLE / "emb_old.parquet"), str(SAMPLE / "emb_new_incompatible.parquet"),
            "--engine", "spark", "--require-compatible"]
    r = runner.invoke(app, [*args, "--format", "json"])
    assert r.exit_code == 1, r.output
    assert json.loads(r.stdout)["engine"] == "spark"
    bad = runner.invoke(app, [*args, "--embedding-col", "nope"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
