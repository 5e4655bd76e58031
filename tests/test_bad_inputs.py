"""Every class of bad input gets one clear answer through the command line (issue 6).

One table, :data:`CASES`, drives the battery: each case writes its files into a fresh
working directory, runs ``gaudit`` through typer's ``CliRunner`` and states the exit code
and the substrings the message must contain (the file, the column, example ids or rows,
what to do). Every case also checks the invariants of the contract: the exit code is the
one expected, never 3; no traceback; and an exit 2 prints exactly one line on stderr that
starts with ``gaudit: error:`` and leaks no engine internals.

Cases marked ``xfail(strict=True)`` are real bugs, described in their reason; when one is
fixed the test starts to pass and pytest reports it, so the mark must then be removed.
``docs/troubleshooting.md`` is the user-facing copy of this table.

Below the table: "nothing lost" (the row accounting of the JSON adds up on messy inputs)
and "reproducible" (byte-identical JSON, no absolute path or timestamp that was not asked
for).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from graceful_audit.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"

runner = CliRunner()

#: Words of engine or interpreter internals that must never reach the user raw.
INTERNALS = (
    "Traceback", "Binder Error", "Catalog Error", "Parser Error", "Conversion Error",
    "Invalid Input Error", "IO Error", "INTERNAL Error", "duckdb.", "pyarrow.lib",
    "Exception:", 'File "',
)  # fmt: skip


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args))


# --------------------------------------------------------------------------- file makers


def frames(n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A clean pair: ids ``x0 ..``, labels ``i % 3``; the old model is always right and the
    new model is wrong on every fourth id (``x0``, ``x4``, ``x8``: 3 negative flips)."""
    ids = [f"x{i}" for i in range(n)]
    labels = [i % 3 for i in range(n)]
    old = pd.DataFrame({"id": ids, "label": labels, "pred": labels})
    new = old.assign(pred=[(i + 1) % 3 if i % 4 == 0 else i % 3 for i in range(n)])
    return old, new


def pair(old: pd.DataFrame, new: pd.DataFrame, old_name: str = "old.csv",
         new_name: str = "new.csv") -> list[str]:
    """Write a pair (format from the suffix) and return the ``flips`` arguments."""
    for df, name in ((old, old_name), (new, new_name)):
        if name.endswith(".csv"):
            df.to_csv(name, index=False)
        else:
            df.to_parquet(name, index=False)
    return ["flips", old_name, new_name]


def clean_pair() -> list[str]:
    return pair(*frames())


def embeddings(n: int = 12, d: int = 8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "id": [f"e{i}" for i in range(n)],
        "label": [i % 3 for i in range(n)],
        "embedding": [rng.normal(size=d).tolist() for _ in range(n)],
    })


def compat_pair(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    old.to_parquet("old.parquet", index=False)
    new.to_parquet("new.parquet", index=False)
    return ["compat", "old.parquet", "new.parquet"]


def with_embedding(df: pd.DataFrame, row: int, vector: list[float]) -> pd.DataFrame:
    df = df.copy()
    df.at[row, "embedding"] = vector
    return df


# ---- compat --qrels (relevance judgments)


def qrels_pair(split: bool = True) -> list[str]:
    """Six queries q0..q5 and six corpus items d0..d5, no labels."""
    rng = np.random.default_rng(0)
    ids = [f"q{i}" for i in range(6)] + [f"d{i}" for i in range(6)]
    frame = pd.DataFrame({"id": ids, "embedding": [rng.normal(size=4).tolist() for _ in ids]})
    if split:
        frame["split"] = ["query"] * 6 + ["gallery"] * 6
    frame.to_parquet("old.parquet", index=False)
    frame.sample(frac=1, random_state=1).to_parquet("new.parquet", index=False)
    return ["compat", "old.parquet", "new.parquet", "--qrels", "qrels.tsv"]


def write_qrels(text: str) -> None:
    Path("qrels.tsv").write_text(text, encoding="utf-8")


BEIR_OK = "query-id\tcorpus-id\tscore\nq0\td0\t2\nq1\td1\t1\nq2\td3\t0\n"


def qrels_missing_file() -> list[str]:
    return qrels_pair()


def qrels_empty_file() -> list[str]:
    write_qrels("\n\n")
    return qrels_pair()


def qrels_unknown_format() -> list[str]:
    write_qrels("q0,d0,1\n")
    return qrels_pair()


def qrels_malformed_line() -> list[str]:
    write_qrels("query-id\tcorpus-id\tscore\nq0\td0\t2\nq1 d1 1\n")
    return qrels_pair()


def qrels_trec_malformed_line() -> list[str]:
    write_qrels("q0 0 d0 1\nq1 0 d1\n")
    return qrels_pair()


def qrels_negative_grade() -> list[str]:
    write_qrels("q0 0 d0 1\nq1 0 d1 -1\n")
    return qrels_pair()


def qrels_fractional_grade() -> list[str]:
    write_qrels("query-id\tcorpus-id\tscore\nq0\td0\t0.5\n")
    return qrels_pair()


def qrels_duplicate_judgment() -> list[str]:
    write_qrels("q0 0 d0 1\nq0 0 d0 2\n")
    return qrels_pair()


def qrels_header_only() -> list[str]:
    write_qrels("query-id\tcorpus-id\tscore\n")
    return qrels_pair()


def qrels_unknown_ids() -> list[str]:
    write_qrels(BEIR_OK + "q9\td0\t1\nq0\tdoc-x\t1\nd1\td2\t1\nq0\tq1\t1\n")
    return qrels_pair()


def qrels_unknown_ids_allowed() -> list[str]:
    write_qrels(BEIR_OK + "q9\td0\t1\nq0\tdoc-x\t1\nd1\td2\t1\nq0\tq1\t1\n")
    return [*qrels_pair(), "--allow-unmatched", "--format", "json"]


def qrels_without_split() -> list[str]:
    write_qrels(BEIR_OK)
    return qrels_pair(split=False)


def qrels_with_label_col() -> list[str]:
    write_qrels(BEIR_OK)
    return [*qrels_pair(), "--label-col", "label"]


def qrels_with_top1_criterion() -> list[str]:
    write_qrels(BEIR_OK)
    return [*qrels_pair(), "--criterion", "top1"]


def qrels_empty_path() -> list[str]:
    return [*qrels_pair()[:-1], ""]


def qrels_is_report_output() -> list[str]:
    write_qrels(BEIR_OK)
    return [*qrels_pair(), "--output", "qrels.tsv"]


def ndcg_criterion_without_qrels() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--criterion", "ndcg10"]


def _unmatched_counted(result: Result) -> None:
    doc = json.loads(result.stdout)
    assert doc["inputs"]["qrels"] == {"path": "qrels.tsv", "format": "beir", "judgments": 7,
                                      "relevant": 2, "unmatched": 2, "wrong_side": 2}
    assert doc["queries_without_positive"] == 4  # q2 (grade 0 only), q3, q4, q5


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One bad (or tricky-but-good) input and what the user must see.

    ``build`` runs inside the case's empty working directory and returns the arguments of
    ``gaudit``. ``needles`` must all occur in the message: stderr for exit code 2, stdout
    otherwise. ``check`` may look further at the result (e.g. parse the JSON).
    """

    name: str
    build: Callable[[], list[str]]
    code: int | tuple[int, ...]
    needles: Sequence[str] = ()
    check: Callable[[Result], None] | None = None
    bug: str | None = None  # a known bug: the case is a strict xfail with this reason
    keep_config_isolation: bool = True
    time_limit: float | None = None  # seconds, for the cases about scale
    absent: Sequence[str] = ()  # must NOT occur in the message (a misleading claim)


# ---- builders, one per case (kept small: the file they write is the documentation)


def missing_file() -> list[str]:
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "nope.csv", "new.csv"]


def directory_without_data_files() -> list[str]:
    Path("preds").mkdir()
    Path("preds", "README.md").write_text("predictions go here\n")
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "preds", "new.csv"]


def glob_without_match() -> list[str]:
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "runs/*.parquet", "new.csv"]


def empty_file() -> list[str]:
    Path("old.csv").write_bytes(b"")
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv"]


def header_only_csv() -> list[str]:
    Path("old.csv").write_text("id,label,pred\n")
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv"]


def corrupt_parquet() -> list[str]:
    Path("old.parquet").write_bytes(np.random.default_rng(6).bytes(4096))
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "old.parquet", "new.csv"]


def truncated_parquet() -> list[str]:
    data = (SAMPLES / "digits_new.parquet").read_bytes()
    Path("new.parquet").write_bytes(data[: len(data) // 2])
    shutil.copy(SAMPLES / "digits_old.csv", "old.csv")
    return ["flips", "old.csv", "new.parquet"]


def csv_not_utf8() -> list[str]:
    old, new = frames()
    old.to_csv("old.csv", index=False)
    text = Path("old.csv").read_text().replace("x2,", "caf\u00e9,")
    Path("old.csv").write_bytes(text.encode("latin-1"))
    new.to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv", "--allow-unmatched"]


def csv_ragged_row() -> list[str]:
    """An unquoted comma in a free-text column: line 5 has one field more than the header."""
    old, new = frames()
    old["note"] = "ok"
    old.loc[3, "note"] = "blurry, dark"
    old.to_csv("old.csv", index=False)
    Path("old.csv").write_text(Path("old.csv").read_text().replace('"blurry, dark"',
                                                                    "blurry, dark"))
    new.to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv"]


def csv_with_bom() -> list[str]:
    old, new = frames()
    Path("old.csv").write_bytes(b"\xef\xbb\xbf" + old.to_csv(index=False).encode())
    Path("new.csv").write_bytes(b"\xef\xbb\xbf" + new.to_csv(index=False).encode())
    return ["flips", "old.csv", "new.csv", "--format", "json"]


def missing_pred_column() -> list[str]:
    old, new = frames()
    return pair(old.rename(columns={"pred": "prediction_x"}), new)


def missing_id_column() -> list[str]:
    return [*clean_pair(), "--id-col", "ID"]


def missing_label_column() -> list[str]:
    old, new = frames()
    return pair(old.rename(columns={"label": "lable"}), new.drop(columns="label"))


def duplicate_ids() -> list[str]:
    old, new = frames()
    old.loc[[3, 5], "id"] = "x1"
    return pair(old, new)


def null_ids() -> list[str]:
    old, new = frames()
    old["id"] = old["id"].astype(object)
    old.loc[[3, 5], "id"] = None
    return pair(old, new)


def null_labels() -> list[str]:
    old, new = frames()
    for df in (old, new):
        df["label"] = df["label"].astype("Int64")
        df.loc[[2, 7], "label"] = pd.NA
    return pair(old, new, "old.parquet", "new.parquet")


def nan_labels() -> list[str]:
    old, new = frames()
    old["label"] = old["label"].astype(float)
    old.loc[[2, 7], "label"] = np.nan
    return pair(old, new.drop(columns="label"), "old.parquet", "new.parquet")


def null_predictions() -> list[str]:
    old, new = frames()
    new["pred"] = new["pred"].astype("Int64")
    new.loc[4, "pred"] = pd.NA
    return pair(old, new)


def labels_disagree() -> list[str]:
    old, new = frames()
    new.loc[[1, 6], "label"] = 2
    return pair(old, new)


def unmatched_ids() -> list[str]:
    old, new = frames()
    new = new.iloc[2:].copy()
    new.loc[[8, 9], "id"] = ["z8", "z9"]
    return pair(old, new)


def unmatched_ids_allowed() -> list[str]:
    return [*unmatched_ids(), "--allow-unmatched", "--format", "json"]


def labels_file_missing_ids() -> list[str]:
    old, new = frames()
    old.loc[[0, 2, 5], ["id", "label"]].to_csv("truth.csv", index=False)
    old, new = old.drop(columns="label"), new.drop(columns="label")
    return [*pair(old, new), "--labels", "truth.csv"]


def no_shared_ids() -> list[str]:
    old, new = frames()
    return [*pair(old, new.assign(id=[f"q{i}" for i in range(10)])), "--allow-unmatched"]


def mixed_label_types() -> list[str]:
    old, new = frames()
    new = new.assign(label=new["label"].astype(str), pred=new["pred"].astype(str))
    return [*pair(old, new, "old.parquet", "new.parquet"), "--format", "json"]


def mixed_id_types() -> list[str]:
    old, new = frames()
    old = old.assign(id=range(10))
    new = new.assign(id=[str(i) for i in range(10)])
    return [*pair(old, new, "old.parquet", "new.parquet"), "--format", "json"]


def float_ids() -> list[str]:
    """Ids written as floats (as pandas does to an integer column that once held NaN)."""
    old, new = frames()
    old = old.assign(id=[float(i) for i in range(10)])
    new = new.assign(id=range(10)).iloc[::-1]  # integer ids, rows in another order
    return [*pair(old, new, "old.parquet", "new.parquet"), "--format", "json"]


def nan_ids() -> list[str]:
    """Float ids with NaN values (real NaN in the Parquet file, not nulls)."""
    old, new = frames()
    ids = [float("nan") if i in (3, 5) else float(i) for i in range(10)]
    table = pa.Table.from_pandas(old.drop(columns=["id"]), preserve_index=False)
    pq.write_table(table.add_column(0, "id", pa.array(ids, from_pandas=False)), "old.parquet")
    new.assign(id=range(10)).to_parquet("new.parquet", index=False)
    return ["flips", "old.parquet", "new.parquet"]


def compat_float_ids() -> list[str]:
    old = embeddings().assign(id=[float(i) for i in range(12)])
    new = embeddings(seed=1).assign(id=range(12)).iloc[::-1]
    return [*compat_pair(old, new), "--format", "json"]


def threshold_not_a_number() -> list[str]:
    return [*clean_pair(), "--max-nfr", "abc"]


def threshold_out_of_range() -> list[str]:
    return [*clean_pair(), "--max-nfr", "1.5"]


def confidence_zero() -> list[str]:
    return [*clean_pair(), "--confidence", "0"]


def unknown_key_gaudit_toml() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nmax_nfrr = 0.1\n")
    return clean_pair()


def unknown_key_pyproject() -> list[str]:
    Path("pyproject.toml").write_text("[tool.gaudit.flips]\nmax-nfr = 0.5\ncolour = 'red'\n")
    return clean_pair()


def wrong_type_in_config() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nmax-nfr = 'high'\n")
    return clean_pair()


def config_value_out_of_range() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nmax-nfr = 3.0\n")
    return clean_pair()


def embeddings_nan() -> list[str]:
    return compat_pair(embeddings(), with_embedding(embeddings(seed=1), 3, [np.nan] + [0.1] * 7))


def embeddings_inf() -> list[str]:
    return compat_pair(with_embedding(embeddings(), 4, [np.inf] + [0.1] * 7), embeddings(seed=1))


def embeddings_ragged() -> list[str]:
    return compat_pair(embeddings(), with_embedding(embeddings(seed=1), 5, [0.1] * 7))


def embeddings_beyond_float32() -> list[str]:
    return compat_pair(embeddings(), with_embedding(embeddings(seed=1), 3, [1e39] * 8))


def embeddings_huge_l2() -> list[str]:
    new = with_embedding(embeddings(seed=1), 3, [1e20] * 8)
    return [*compat_pair(embeddings(), new), "--metric", "l2"]


def zero_vectors() -> pd.DataFrame:
    new = with_embedding(embeddings(seed=1), 6, [0.0] * 8)
    return with_embedding(new, 7, [0.0] * 8)


def zero_vectors_cosine() -> list[str]:
    return compat_pair(embeddings(), zero_vectors())


def zero_vectors_ip() -> list[str]:
    return [*compat_pair(embeddings(), zero_vectors()), "--metric", "ip"]


def dimension_mismatch() -> list[str]:
    return [*compat_pair(embeddings(d=8), embeddings(d=12, seed=2)), "--require-compatible"]


def compat_versions(*frames: pd.DataFrame) -> list[str]:
    """Write ``v1.parquet`` .. ``vN.parquet`` and return the ``compat`` arguments."""
    names = []
    for k, df in enumerate(frames):
        df.to_parquet(f"v{k + 1}.parquet", index=False)
        names.append(f"v{k + 1}.parquet")
    return ["compat", *names]


def versions_one_file() -> list[str]:
    return compat_versions(embeddings())[:2]


def versions_unmatched_ids() -> list[str]:
    return compat_versions(embeddings(), embeddings(seed=1).iloc[2:], embeddings(seed=2))


def versions_dimension_middle() -> list[str]:
    return [*compat_versions(embeddings(d=8), embeddings(d=12, seed=1), embeddings(seed=2)),
            "--require-compatible"]


def versions_labels_disagree() -> list[str]:
    v3 = embeddings(seed=2)
    v3.at[5, "label"] = 9
    return compat_versions(embeddings(), embeddings(seed=1), v3)


def check_versions_dimension(result: Result) -> None:
    r = invoke("compat", "v1.parquet", "v2.parquet", "v3.parquet", "-f", "json")
    assert r.exit_code == 0  # no gate
    doc = json.loads(r.stdout)
    assert [p["compatible"] for p in doc["pairs"]][::2] == [False, False]  # V2/V1, V3/V2
    assert doc["matrix"]["top1"][1][0] is None and doc["matrix"]["top1"][2][0] is not None
    assert [v["dim"] for v in doc["inputs"]["versions"]] == [8, 12, 8]


def no_embeddings() -> list[str]:
    return compat_pair(embeddings().drop(columns="embedding"), embeddings(seed=1))


DEEP_ROWS = 40_000
DEEP_ROW = 30_000  # beyond DuckDB's type-sniffing sample (20,480 rows)


def text_deep_in_numeric_column() -> list[str]:
    ids = [f"r{i}" for i in range(DEEP_ROWS)]
    labels = [i % 5 for i in range(DEEP_ROWS)]
    old = pd.DataFrame({"id": ids, "label": labels, "pred": labels})
    new = old.assign(pred=old["pred"].astype(object))
    new.loc[DEEP_ROW, "pred"] = "oops"
    return pair(old, new)


N_CLASSES, N_ROWS = 50_000, 100_000


def many_classes() -> list[str]:
    rng = np.random.default_rng(0)
    labels = np.arange(N_ROWS) % N_CLASSES
    old_pred = np.where(rng.random(N_ROWS) < 0.9, labels, rng.integers(0, N_CLASSES, N_ROWS))
    new_pred = np.where(rng.random(N_ROWS) < 0.9, labels, rng.integers(0, N_CLASSES, N_ROWS))
    old = pd.DataFrame({"id": np.arange(N_ROWS), "label": labels, "pred": old_pred})
    return [*pair(old, old.assign(pred=new_pred), "old.parquet", "new.csv"), "-f", "json"]


LONG = 10_000


def very_long_ids() -> list[str]:
    old, new = frames()
    ids = [f"k{i}-" + "x" * (LONG - 3) for i in range(10)]
    return [*pair(old.assign(id=ids), new.assign(id=ids).iloc[::-1]), "--format", "json"]


def binary_scores(new_score: float, row: int) -> list[str]:
    labels = [i % 2 for i in range(10)]
    old = pd.DataFrame({"id": [f"b{i}" for i in range(10)], "label": labels,
                        "score": [0.9 if y else 0.1 for y in labels]})
    new = old.copy()
    new.loc[row, "score"] = new_score
    return [*pair(old, new, "old.csv", "new.parquet"), "--score-cols", "score"]


def binary_score_nan() -> list[str]:
    return binary_scores(np.nan, 5)


def binary_score_inf() -> list[str]:
    return [*binary_scores(np.inf, 4), "--format", "json"]


def class_scores_inf() -> list[str]:
    shutil.copy(SAMPLES / "digits_old.csv", "old.csv")
    new = pd.read_parquet(SAMPLES / "digits_new.parquet")
    row = new.index[new["id"] == "img-0087"][0]  # a negative flip: old right, new wrong
    new.loc[row, f"prob_{new.loc[row, 'pred']}"] = np.inf
    new.drop(columns="pred").to_parquet("new.parquet", index=False)
    return ["flips", "old.csv", "new.parquet", "--score-cols", "prob_*", "--format", "json"]


# ---- issue 13, part 1: a gate must never pass on a broken audit


def scored(n: int = 20, columns: tuple[str, ...] = ("prob_0", "prob_1"),
           labels: Sequence[Any] = (0, 1)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-class scores: the old model scores the true class 0.9 on every row; the new one
    is wrong on every fifth row. Column ``i`` of ``columns`` scores ``labels[i]``."""
    ids = [f"s{i:02d}" for i in range(n)]
    ys = [i % len(labels) for i in range(n)]
    frames_ = []
    for wrong in (set(), set(range(0, n, 5))):
        data: dict[str, Any] = {"id": ids, "label": [labels[y] for y in ys]}
        for k, col in enumerate(columns):
            hit = [(y + (i in wrong)) % len(labels) for i, y in enumerate(ys)]
            data[col] = [0.9 if h == k else 0.1 / max(1, len(columns) - 1) for h in hit]
        frames_.append(pd.DataFrame(data))
    return frames_[0], frames_[1]


def scores_name_other_classes() -> list[str]:
    """Score columns prob_cat / prob_dog, labels 0 / 1: every prediction would be wrong."""
    old, new = scored(columns=("prob_cat", "prob_dog"))
    return [*pair(old, new), "--score-cols", "prob_*", "--max-nfr", "0.01"]


def binary_score_text_labels() -> list[str]:
    """One binary score column (predicts 0 / 1) against labels neg / pos."""
    old, new = scored(columns=("score",), labels=("neg", "pos"))
    return [*pair(old, new), "--score-cols", "score", "--max-nfr", "0.01"]


def stray_score_column() -> list[str]:
    """``prob_*`` also catches ``prob_top`` (the top-1 probability), which comes first and so
    wins every argmax (the first maximum)."""
    old, new = scored(columns=("prob_0", "prob_1", "prob_2"), labels=(0, 1, 2))
    for df in (old, new):
        df.insert(2, "prob_top", df[["prob_0", "prob_1", "prob_2"]].max(axis=1))
    return [*pair(old, new), "--score-cols", "prob_*", "--max-nfr", "0.01"]


def pred_shares_nothing_with_labels() -> list[str]:
    old, new = frames(20)
    old, new = old.assign(label=old["label"].map({0: "cat", 1: "dog", 2: "cow"})), new
    return [*pair(old, new.drop(columns="label")), "--max-nfr", "0.01"]


def labels_file_shares_nothing() -> list[str]:
    old, new = frames(20)
    truth = old[["id"]].assign(label=[f"class-{y}" for y in old["label"]])
    truth.to_csv("truth.csv", index=False)
    return [*pair(old.drop(columns="label"), new.drop(columns="label")), "--labels",
            "truth.csv", "--max-nfr", "0.01"]


def mostly_unknown_predictions() -> list[str]:
    """The new model names a class no label has on 12 of 20 rows: loud, but not refused."""
    old, new = frames(20)
    new = new.assign(pred=["other" if i < 12 else p for i, p in enumerate(new["pred"])])
    return [*pair(old, new), "--format", "json"]


def tiny_disjoint_predictions() -> list[str]:
    """Two rows of one class, both predicted as another: too little to call a mix-up."""
    old = pd.DataFrame({"id": ["a", "b"], "label": [0, 0], "pred": [1, 1]})
    return [*pair(old, old), "--format", "json"]


def whole_number_regression() -> list[str]:
    """Counts: integer predictions; --atol and --max-mae-delta make it a regression audit."""
    rng = np.random.default_rng(13)
    y = rng.integers(0, 30, 60)
    old = pd.DataFrame({"id": range(60), "label": y, "pred": y + rng.integers(-1, 2, 60)})
    new = old.assign(pred=y + rng.integers(-4, 5, 60))
    return [*pair(old, new), "--atol", "1", "--max-mae-delta", "0.1", "--format", "json"]


def regression_gate_with_task_classification() -> list[str]:
    return [*whole_number_regression()[:3], "--max-mae-delta", "0.1", "--task", "classification"]


def atol_in_config_with_task_classification() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\natol = 1.0\n")
    return [*whole_number_regression()[:3], "--task", "classification"]


def regression_gate_from_config() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nmax-rmse-delta = 0.1\natol = 1\n")
    return [*whole_number_regression()[:3], "--format", "json"]


def churn_gate_on_regression() -> list[str]:
    return [*whole_number_regression()[:3], "--atol", "1", "--max-churn", "0.1"]


def render_regression_gate_on_classification() -> list[str]:
    invoke(*clean_pair(), "--format", "json", "--output", "result.json")
    return ["render", "result.json", "--max-mae-delta", "0.5"]


def ragged_score_lists() -> list[str]:
    old, new = scored(columns=("a", "b", "c"), labels=(0, 1, 2))
    for df in (old, new):
        df["scores"] = df[["a", "b", "c"]].to_numpy().tolist()
    new.at[4, "scores"] = [0.1, 0.1, 0.1, 0.7]  # a fourth class on two rows
    new.at[9, "scores"] = [0.1, 0.1, 0.1, 0.7]
    return [*pair(old, new, "old.parquet", "new.parquet"), "--score-cols", "scores"]


def binary_score_logits() -> list[str]:
    old, new = scored(columns=("score",))
    new.loc[[3, 7], "score"] = [4.2, -1.5]  # logits, not probabilities
    return [*pair(old, new), "--score-cols", "score", "--max-nfr", "0.01"]


def binary_score_logits_with_pred() -> list[str]:
    old, new = scored(columns=("score",))
    old["pred"] = (old["score"] >= 0.5).astype(int)
    old.loc[2, "score"] = 4.2  # would be shown as "confidence 4.2"
    return [*pair(old, old), "--score-cols", "score"]


def slice_pair(new_values: list[Any]) -> list[str]:
    old, new = frames()
    old["device"] = ["phone", "web"] * 5
    new["device"] = new_values
    return pair(old, new, "old.csv", "new.parquet")


def slice_values_differ() -> list[str]:
    values = ["phone", "web"] * 5
    values[3], values[6] = "tablet", None
    return [*slice_pair(values), "--slice-by", "device"]


def slice_values_agree() -> list[str]:
    old, new = frames()
    old["shard"] = [i % 2 for i in range(10)]  # integers in CSV
    new["shard"] = [float(i % 2) for i in range(10)]  # the same values as floats
    return [*pair(old, new, "old.csv", "new.parquet"), "--slice-by", "shard", "-f", "json"]


def slice_differs_in_labels_file() -> list[str]:
    old, new = frames()
    truth = old[["id", "label"]].assign(device=["phone", "web"] * 5)
    truth.loc[4, "device"] = "web"
    truth.to_csv("truth.csv", index=False)
    old = old.drop(columns="label").assign(device=["phone", "web"] * 5)
    return [*pair(old, new.drop(columns="label")), "--labels", "truth.csv", "--slice-by",
            "device"]


def csv_duplicate_column() -> list[str]:
    clean_pair()
    Path("old.csv").write_text(Path("old.csv").read_text().replace("id,label,pred\n",
                                                                    "id,label,pred,pred\n", 1)
                               .replace("\n", ",0\n").replace("pred,pred,0", "pred,pred"))
    return ["flips", "old.csv", "new.csv"]


def csv_duplicate_column_other_case() -> list[str]:
    clean_pair()
    text = Path("new.csv").read_text().replace("id,label,pred\n", "id,Label,label,pred\n", 1)
    lines = text.splitlines()
    lines[1:] = [f"{line.split(',')[0]},{line.split(',')[1]},{line.split(',', 1)[1]}"
                 for line in lines[1:]]
    Path("new.csv").write_text("\n".join(lines) + "\n")
    return ["flips", "old.csv", "new.csv"]


def parquet_duplicate_column() -> list[str]:
    old, new = frames()
    table = pa.Table.from_pandas(old, preserve_index=False)
    pq.write_table(table.append_column("pred", table.column("pred")), "old.parquet")
    new.to_parquet("new.parquet", index=False)
    return ["flips", "old.parquet", "new.parquet"]


def pred_and_pred_1_columns() -> list[str]:
    old, new = frames()
    return [*pair(old.assign(pred_1=0), new.assign(pred_1=1)), "-f", "json"]


def threshold_without_binary_score() -> list[str]:
    """--threshold with a prediction column: it would be ignored."""
    return [*clean_pair(), "--threshold", "0.8", "--max-nfr", "0.5"]


def threshold_in_config_without_binary_score() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nthreshold = 0.8\n")
    old, new = scored(columns=("prob_0", "prob_1"))
    return [*pair(old, new), "--score-cols", "prob_*"]


def pred_col_is_label_col() -> list[str]:
    return [*clean_pair(), "--pred-col", "label", "--max-nfr", "0.01"]


def score_glob_catches_pred() -> list[str]:
    old, new = scored(columns=("p_0", "p_1"))
    old["pred"], new["pred"] = 0, 1
    return [*pair(old, new), "--score-cols", "p*"]


def score_columns_miss_predicted_classes() -> list[str]:
    """A prediction column of names, score columns of numbers: no confidence, said loudly."""
    old, new = scored(columns=("prob_0", "prob_1"), labels=("cat", "dog"))
    old["pred"], new["pred"] = old["label"], "cat"
    return [*pair(old, new), "--score-cols", "prob_*", "-f", "json"]


def check_score_columns_miss(result: Result) -> None:
    warnings = json_doc(result)["warnings"]
    assert len(warnings) == 2 and all("confidence of its predictions is unknown" in w
                                      for w in warnings)
    assert "prob_0 -> '0', prob_1 -> '1'" in warnings[0]


def list_scores_labels_from_one() -> list[str]:
    """Labels 1..3 against list entries 0..2: label 3 can never be predicted."""
    old, new = scored(columns=("a", "b", "c"), labels=(0, 1, 2))
    for df in (old, new):
        df["scores"] = df[["a", "b", "c"]].to_numpy().tolist()
        df["label"] += 1
    cols = ["id", "label", "scores"]
    return [*pair(old[cols], new[cols], "old.parquet", "new.parquet"), "--score-cols",
            "scores", "-f", "json"]


def class_warnings(result: Result) -> list[str]:
    """The JSON warnings about classes (not the "right on none of the rows" ones)."""
    return [w for w in json_doc(result)["warnings"] if "is right on none" not in w]


def check_labels_from_one(result: Result) -> None:
    warnings = class_warnings(result)
    assert len(warnings) == 2, warnings
    assert "OLD file old.parquet" in warnings[0] and "also hold '3'" in warnings[0]


def binary_score_labels_minus_one() -> list[str]:
    """Labels -1 / 1 against one binary score (predicts 0 / 1): most of -1 count wrong."""
    old, new = scored(columns=("score",), labels=(-1, 1))
    return [*pair(old, new), "--score-cols", "score", "-f", "json"]


def mostly_unknown_classes() -> list[str]:
    """Labels 0..3; the new model predicts 0, 1 and, on three rows, classes no label has:
    three of its five predicted classes are unknown (on few rows: still loud)."""
    labels = [i % 4 for i in range(20)]
    old = pd.DataFrame({"id": [f"u{i:02d}" for i in range(20)], "label": labels,
                        "pred": labels})
    preds: list[Any] = [y if y < 2 else 0 for y in labels]
    preds[2], preds[3], preds[6] = "junk-a", "junk-b", "junk-c"
    return [*pair(old, old.assign(pred=preds)), "-f", "json"]


def check_one_warning_per_model(result: Result) -> None:
    warnings = class_warnings(result)
    assert len(warnings) == 2 and "OLD file" in warnings[0] and "NEW file" in warnings[1]
    assert all("'-1'" in w for w in warnings)


def check_mostly_unknown_classes(result: Result) -> None:
    (warning,) = json_doc(result)["warnings"]
    assert "3 of its 5 predicted classes" in warning and "on 3 of 20 audited rows" in warning


def compat_duplicate_column() -> list[str]:
    old = embeddings()
    table = pa.Table.from_pandas(old, preserve_index=False)
    pq.write_table(table.append_column("Label", table.column("label")), "old.parquet")
    embeddings(seed=1).to_parquet("new.parquet", index=False)
    return ["compat", "old.parquet", "new.parquet"]


def config_key_both_spellings() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nmax_nfr = 0.5\nmax-nfr = 0.01\n")
    return clean_pair()


def pyproject_key_both_spellings() -> list[str]:
    Path("pyproject.toml").write_text("[tool.gaudit.flips]\nmax-nfr = 0.01\nmax_nfr = 0.5\n")
    return clean_pair()


def compat_max_cross_drop_out_of_range() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--max-cross-drop", "2"]


def compat_confidence_one() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--confidence", "1"]


def compat_sample_queries_zero() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--sample-queries", "0"]


def compat_seed_without_sample() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--seed", "3"]


def compat_negative_seed() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--sample-queries", "2",
            "--seed", "-1"]


def compat_spark_conf_without_engine() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--spark-conf", "a=b",
            "--spark-remote", "sc://example.invalid:15002"]


def compat_memory_limit_with_spark() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--engine", "spark",
            "--memory-limit", "1GB"]


def compat_engine_unknown_in_config() -> list[str]:
    Path("gaudit.toml").write_text('[compat]\nengine = "postgres"\n')
    return compat_pair(embeddings(), embeddings(seed=1))


def compat_memory_limit_too_small() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--memory-limit", "1MB"]


def compat_key_both_spellings() -> list[str]:
    Path("gaudit.toml").write_text("[compat]\nrequire_compatible = false\n"
                                   "require-compatible = true\n")
    return compat_pair(embeddings(), embeddings(seed=1))


# ---- checks on successful runs


# ---- issue 13: reports never destroy a file; config files that are not what they seem


def output_onto_input(*extra: str) -> list[str]:
    return [*clean_pair(), *extra]


def output_onto_old() -> list[str]:
    return output_onto_input("-o", "old.csv")


def output_onto_new_other_spelling() -> list[str]:
    Path("sub").mkdir()
    return output_onto_input("-f", "json", "-o", "sub/../new.csv")


def output_onto_labels() -> list[str]:
    old, new = frames()
    old[["id", "label"]].to_csv("truth.csv", index=False)
    return [*pair(old.drop(columns="label"), new.drop(columns="label")), "--labels",
            "truth.csv", "--report", "html:truth.csv"]


def output_onto_symlink_to_input() -> list[str]:
    args = clean_pair()
    Path("report.txt").symlink_to("old.csv")
    return [*args, "-o", "report.txt"]


def output_onto_hard_link_to_input() -> list[str]:
    args = clean_pair()
    Path("new.csv").rename("new-data.csv")
    Path("new.csv").hardlink_to("new-data.csv")
    return [*args, "--report", "json:new-data.csv"]


def output_onto_config_file() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nmax-nfr = 0.5\n")
    return output_onto_input("--report", "markdown:gaudit.toml")


def output_onto_input_in_folder() -> list[str]:
    Path("runs").mkdir()
    old, new = frames()
    old.to_parquet("runs/part-0.parquet", index=False)
    new.to_csv("new.csv", index=False)
    return ["flips", "runs", "new.csv", "-o", "runs/part-0.parquet"]


def output_twice() -> list[str]:
    return output_onto_input("-f", "json", "-o", "r.json", "--report", "json:./r.json")


def output_twice_to_stdout() -> list[str]:
    return output_onto_input("--report", "json:-")


def output_existing_folder() -> list[str]:
    Path("reports").mkdir()
    return output_onto_input("-o", "reports")


def output_trailing_slash() -> list[str]:
    return output_onto_input("--report", "html:reports/")


def output_dot_under_a_new_folder() -> list[str]:
    return output_onto_input("-o", "nodir/x/.")


def output_under_a_file() -> list[str]:
    Path("notes").write_text("not a folder\n")
    return output_onto_input("-o", "notes/report.txt")


def config_table_is_a_number() -> list[str]:
    Path("gaudit.toml").write_text("flips = 3\n")
    return clean_pair()


def config_tool_gaudit_is_a_string() -> list[str]:
    Path("gaudit.toml").unlink()
    Path("pyproject.toml").write_text('[tool]\ngaudit = "x"\n')
    return clean_pair()


def config_command_table_is_a_string() -> list[str]:
    Path("gaudit.toml").unlink()
    Path("pyproject.toml").write_text('[tool.gaudit]\nflips = "x"\n')
    return clean_pair()


def config_tool_is_a_number() -> list[str]:
    Path("gaudit.toml").unlink()
    Path("pyproject.toml").write_text("tool = 3\n")
    return clean_pair()


def config_not_utf8() -> list[str]:
    Path("gaudit.toml").write_bytes("[flips]\nid-col = 'caf\u00e9'\n".encode("latin-1"))
    return clean_pair()


def config_is_a_folder() -> list[str]:
    Path("settings.toml").mkdir()
    return [*clean_pair(), "--config", "settings.toml"]


def config_is_a_fifo() -> list[str]:
    os.mkfifo("settings.toml")
    return [*clean_pair(), "--config", "settings.toml"]


def config_value(text: str) -> Callable[[], list[str]]:
    def build() -> list[str]:
        Path("gaudit.toml").write_text(f"[flips]\n{text}\n")
        return clean_pair()

    return build


def with_options(*options: str) -> Callable[[], list[str]]:
    def build() -> list[str]:
        return [*clean_pair(), *options]

    return build


def score_pair(old_classes: Sequence[str] = ("a", "b", "c"),
               new_classes: Sequence[str] = ("a", "b", "c"), n: int = 12,
               pred: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-class scores ``p_<class>`` in both files (issue 17's --what-if)."""
    rng = np.random.default_rng(17)
    ids = [f"x{i}" for i in range(n)]
    labels = [old_classes[i % len(old_classes)] for i in range(n)]
    old = pd.DataFrame({"id": ids, "label": labels})
    new = pd.DataFrame({"id": ids})
    for frame, classes in ((old, old_classes), (new, new_classes)):
        for c in classes:
            frame[f"p_{c}"] = rng.random(n).round(3)
        if pred:
            frame["pred"] = labels
    return old, new


def whatif_args(*extra: str, **kwargs: Any) -> Callable[[], list[str]]:
    def build() -> list[str]:
        return [*pair(*score_pair(**kwargs)), "--score-cols", "p_*", *extra]

    return build


def whatif_nan_score() -> list[str]:
    old, new = score_pair(pred=True)
    new.loc[[3, 7], "p_b"] = np.nan
    return [*pair(old, new, new_name="new.parquet"), "--score-cols", "p_*", "--what-if"]


def whatif_fill_value_score() -> list[str]:
    old, new = score_pair(pred=True)
    old.loc[5, "p_c"] = -3.4e38
    return [*pair(old, new, old_name="old.parquet"), "--score-cols", "p_*", "--what-if"]


def whatif_binary_against_columns() -> list[str]:
    old, new = score_pair(("a", "b"), ("a", "b"))
    old = old.rename(columns={"p_a": "q"}).drop(columns="p_b")
    old["label"] = [i % 2 for i in range(len(old))]
    new = new.rename(columns={"p_a": "p_0", "p_b": "p_1"})
    old = old.rename(columns={"q": "p_1"})
    return [*pair(old, new), "--score-cols", "p_*", "--what-if"]


def whatif_list_lengths_differ() -> list[str]:
    ids = [f"x{i}" for i in range(6)]
    old = pd.DataFrame({"id": ids, "label": [i % 3 for i in range(6)],
                        "s": [[0.2, 0.3, 0.5]] * 6})
    new = pd.DataFrame({"id": ids, "s": [[0.1, 0.2, 0.3, 0.4]] * 6})
    return [*pair(old, new, "old.parquet", "new.parquet"), "--score-cols", "s", "--what-if"]


def whatif_regression() -> list[str]:
    old = pd.DataFrame({"id": range(10), "label": [i + 0.5 for i in range(10)],
                        "pred": [i + 0.25 for i in range(10)], "p_x": 0.5, "p_y": 0.5})
    return [*pair(old, old.assign(pred=old["pred"] + 0.1)), "--score-cols", "p_*",
            "--atol", "1", "--what-if"]


def whatif_binary_threshold_with_predictions() -> list[str]:
    old, new = score_pair(("a",), ("a",))
    old["label"] = [i % 2 for i in range(len(old))]
    old["pred"] = (old["p_a"] >= 0.5).astype(int)
    new["pred"] = (new["p_a"] >= 0.5).astype(int)
    return [*pair(old, new), "--score-cols", "p_a", "--what-if", "--threshold", "0.3",
            "--format", "json"]


def check_threshold_used(result: Result) -> None:
    doc = json.loads(result.stdout)["what_if"]
    assert doc["prediction"] == "threshold" and doc["threshold"] == 0.3
    assert len(doc["points"]) == 21


def regression_pair(new_values: dict[int, float]) -> list[str]:
    old = pd.DataFrame({"id": range(10), "label": [float(i) for i in range(10)],
                        "pred": [i + 0.5 for i in range(10)]})
    new = old.copy()
    for row, value in new_values.items():
        new.loc[row, "pred"] = value
    return [*pair(old, new), "--task", "regression", "--atol", "1", "-f", "json"]


def regression_prediction_1e200() -> list[str]:
    return regression_pair({2: 1e200})


def regression_predictions_overflow_sum() -> list[str]:
    return regression_pair({2: 1e300, 3: -1e300, 4: 1.5e308})


def regression_prediction_large_but_fine() -> list[str]:
    """Large, below the fill-value magnitude (1e30): data, and the JSON stays strict."""
    return regression_pair({2: 1e25})


def check_strict_json(result: Result) -> None:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the JSON")

    json.loads(result.stdout, parse_constant=refuse)


def json_doc(result: Result) -> dict[str, Any]:
    return json.loads(result.stdout)


def check_bom(result: Result) -> None:
    doc = json_doc(result)
    assert doc["inputs"]["matched"] == 10
    assert doc["metrics"]["negative_flips"] == 3


def check_unmatched_allowed(result: Result) -> None:
    inputs = json_doc(result)["inputs"]
    assert (inputs["matched"], inputs["unmatched_old"], inputs["unmatched_new"]) == (6, 4, 2)
    assert inputs["audited"] == 6


def check_same_class(result: Result) -> None:
    """``1`` and ``"1"`` are the same class: the numbers equal the all-integer audit's."""
    doc = json_doc(result)
    assert doc["metrics"]["n"] == 10
    assert doc["metrics"]["negative_flips"] == 3
    assert doc["metrics"]["old_error_rate"] == 0.0
    assert [c["class"] for c in doc["per_class"]] == ["0", "1", "2"]


def check_mixed_ids(result: Result) -> None:
    doc = json_doc(result)
    assert doc["inputs"]["matched"] == 10 and doc["metrics"]["negative_flips"] == 3


def check_float_ids(result: Result) -> None:
    doc = json_doc(result)
    assert doc["inputs"]["matched"] == 10 and doc["metrics"]["negative_flips"] == 3
    assert all("." not in row["id"] for row in doc["top_negative_flips"])


def check_compat_float_ids(result: Result) -> None:
    doc = json_doc(result)
    assert doc["kind"] == "compat" and doc["inputs"]["matched"] == 12


def check_long_ids(result: Result) -> None:
    doc = json_doc(result)
    assert doc["inputs"]["matched"] == 10
    ids = [row["id"] for row in doc["top_negative_flips"]]
    assert len(ids) == 3 and all(len(i) == LONG for i in ids)


def check_dimension_json(result: Result) -> None:
    # the text report says "dimension" (needle); the JSON of the same run must too
    r = invoke("compat", "old.parquet", "new.parquet", "--require-compatible", "-f", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["compatible"] is False and "dimension" in doc["reason"]
    assert doc["inputs"]["old"]["dim"] == 8 and doc["inputs"]["new"]["dim"] == 12


def check_many_classes(result: Result) -> None:
    doc = json_doc(result)
    assert doc["metrics"]["n"] == N_ROWS
    assert len(doc["per_class"]) == N_CLASSES


def check_mostly_unknown(result: Result) -> None:
    doc = json_doc(result)
    (warning,) = doc["warnings"]
    assert "NEW file new.csv" in warning and "'other'" in warning and "12 of 20" in warning
    assert result.stderr.startswith("gaudit: warning: NEW file new.csv")


def check_tiny_disjoint(result: Result) -> None:
    doc = json_doc(result)
    assert doc["metrics"]["old_error_rate"] == 1.0
    assert len(doc["warnings"]) == 2 and "share no class" in doc["warnings"][0]


def check_whole_number_regression(result: Result) -> None:
    doc = json_doc(result)
    assert doc["task"] == "regression" and "--atol, --max-mae-delta" in doc["task_reason"]
    assert doc["tolerance"] == {"atol": 1.0, "rtol": 0.0}
    (gate,) = doc["gates"]
    assert gate["status"] != "n/a" and gate["value"] is not None


def check_regression_gate_from_config(result: Result) -> None:
    doc = json_doc(result)
    assert doc["task"] == "regression" and "gaudit.toml: max-rmse-delta" in doc["task_reason"]
    assert doc["gates"][0]["value"] is not None


def check_slice_values_agree(result: Result) -> None:
    doc = json_doc(result)
    assert [row["value"] for row in doc["slices"]["shard"]] == ["0", "1"]


def check_pred_and_pred_1(result: Result) -> None:
    assert json_doc(result)["metrics"]["negative_flips"] == 3
# ---- inputs people really have (issue 13, section 5)


def boolean_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``frames()`` with classes 0 and 2 as false, 1 as true: 2 negative flips (x0, x4)."""
    old, new = frames()
    return (old.assign(label=old["label"] == 1, pred=old["pred"] == 1),
            new.assign(label=new["label"] == 1, pred=new["pred"] == 1))


def csv_booleans() -> list[str]:
    """pandas writes booleans as ``True`` / ``False``."""
    return [*pair(*boolean_frames()), "--format", "json"]


def csv_booleans_spelled_differently() -> list[str]:
    """``true`` in one file, ``TRUE`` in the other."""
    old, new = boolean_frames()
    pair(old, new)
    Path("old.csv").write_text(Path("old.csv").read_text().replace("True", "true")
                               .replace("False", "false"))
    Path("new.csv").write_text(Path("new.csv").read_text().replace("True", "TRUE")
                               .replace("False", "FALSE"))
    return ["flips", "old.csv", "new.csv", "--format", "json"]


def csv_booleans_against_integers() -> list[str]:
    """Booleans in the OLD CSV, 0/1 in the NEW Parquet file: ``True`` is ``1``."""
    old, new = boolean_frames()
    new = new.assign(label=new["label"].astype(int), pred=new["pred"].astype(int))
    return [*pair(old, new, "old.csv", "new.parquet"), "--format", "json"]


def parquet_booleans_against_text() -> list[str]:
    """A Parquet boolean column against the text ``1`` / ``0`` and ``True`` / ``False``."""
    old, new = boolean_frames()
    new = new.assign(label=new["label"].astype(int).astype(str), pred=new["pred"].astype(str))
    return [*pair(old, new, "old.parquet", "new.parquet"), "--format", "json"]


def csv_booleans_labels_file() -> list[str]:
    """Integer predictions, the ground truth as booleans in a labels file."""
    old, new = boolean_frames()
    old.drop(columns="label").assign(pred=old["pred"].astype(int)).to_csv("old.csv", index=False)
    new.drop(columns="label").assign(pred=new["pred"].astype(int)).to_csv("new.csv", index=False)
    old[["id", "label"]].to_csv("truth.csv", index=False)
    return ["flips", "old.csv", "new.csv", "--labels", "truth.csv", "--format", "json"]


def check_booleans(result: Result) -> None:
    """Booleans are the classes 0 and 1: the numbers of the integer audit."""
    doc = json_doc(result)
    assert doc["metrics"]["n"] == 10
    assert doc["metrics"]["negative_flips"] == 2
    assert doc["metrics"]["old_error_rate"] == 0.0
    assert [c["class"] for c in doc["per_class"]] == ["0", "1"]


def yes_no_text_labels() -> list[str]:
    """``yes`` / ``no`` stay text (DuckDB's sniffer would call them booleans)."""
    old, new = boolean_frames()
    yes = {True: "yes", False: "no"}
    old = old.assign(label=old["label"].map(yes), pred=old["pred"].map(yes))
    new = new.assign(label=new["label"].map(yes), pred=new["pred"].map(yes))
    old.to_csv("old.csv", index=False)
    new.to_parquet("new.parquet", index=False)
    return ["flips", "old.csv", "new.parquet", "--format", "json"]


def check_yes_no(result: Result) -> None:
    doc = json_doc(result)
    assert doc["metrics"]["negative_flips"] == 2
    assert [c["class"] for c in doc["per_class"]] == ["no", "yes"]


def fill_value_labels() -> list[str]:
    """float32's -3.4e38 (a "missing" marker of some exporters) in a label column."""
    old, new = frames()
    label = old["label"].astype("float32")
    label[[3, 6]] = np.float32(-3.4028235e38)
    return pair(old.assign(label=label), new, "old.parquet", "new.csv")


def fill_value_labels_csv() -> list[str]:
    old, new = frames()
    label = old["label"].astype(float)
    label[[5]] = -3.4e38
    return pair(old.assign(label=label), new)


def fill_value_prediction_regression() -> list[str]:
    """float64's maximum as a regression prediction; targets near 1e9 are fine."""
    old, new = frames()
    y = [1e9 + 1000.5 * i for i in range(10)]
    old = old.assign(label=y, pred=[v + 0.25 for v in y])
    new = new.assign(label=y, pred=[1.7976931348623157e308 if i == 2 else v + 0.5
                                    for i, v in enumerate(y)])
    return [*pair(old, new, "old.parquet", "new.parquet"), "--atol", "1"]


def fill_value_score() -> list[str]:
    old, new = frames()
    rng = np.random.default_rng(0)
    for df in (old, new):
        for k in range(3):
            df[f"prob_{k}"] = rng.random(10) / 10
        for i, y in enumerate(df["pred"]):
            df.loc[i, f"prob_{y}"] = 0.9
    new.loc[7, "prob_1"] = -3.4e38
    return [*pair(old.drop(columns="pred"), new.drop(columns="pred"), "old.parquet",
                  "new.parquet"), "--score-cols", "prob_*"]


def large_values_are_data() -> list[str]:
    """Big integer ids, targets of 1e9 and 1e15: data, not fill values."""
    old, new = frames()
    ids = [10**17 + i for i in range(10)]
    y = [1e15 * (i + 1) for i in range(10)]
    old = old.assign(id=ids, label=y, pred=[v * 1.01 for v in y])
    new = new.assign(id=ids, label=y, pred=[v * 0.98 for v in y])
    return [*pair(old, new, "old.parquet", "new.parquet"), "--task", "regression", "--rtol",
            "0.015", "-f", "json"]


def check_large_values(result: Result) -> None:
    doc = json_doc(result)
    assert doc["task"] == "regression" and doc["metrics"]["n"] == 10
    assert doc["metrics"]["negative_flips"] == 10


def empty_column_flag(flag: str, value: str = "") -> Callable[[], list[str]]:
    def build() -> list[str]:
        if flag in ("--embedding-col", "--split-col"):
            return [*compat_pair(embeddings(), embeddings(seed=1)), flag, value]
        return [*clean_pair(), flag, value]

    return build


def empty_column_in_config() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nslice_by = ['ink', ' ']\n")
    return clean_pair()


def memory_limit(value: str) -> Callable[[], list[str]]:
    return lambda: [*clean_pair(), "--memory-limit", value]


def flips_spark_remote_without_engine() -> list[str]:
    return [*clean_pair(), "--spark-remote", "sc://example.invalid:15002"]


def flips_memory_limit_with_spark() -> list[str]:
    return [*clean_pair(), "--engine", "spark", "--memory-limit", "1GB"]


def memory_limit_in_config() -> list[str]:
    Path("gaudit.toml").write_text("[flips]\nmemory-limit = '1KB'\n")
    return clean_pair()


def device_as_input() -> list[str]:
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "/dev/zero", "new.csv"]  # a device: reading it would never end


def empty_path() -> list[str]:
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "", "new.csv"]


def excel_named_csv() -> list[str]:
    """An .xlsx workbook (a zip archive) saved under a .csv name."""
    frames()[1].to_csv("new.csv", index=False)
    Path("old.csv").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    return ["flips", "old.csv", "new.csv"]


def json_lines_input() -> list[str]:
    """JSON Lines are read (issue 16), beside CSV and Parquet."""
    old, new = frames()
    old.to_json("old.jsonl", orient="records", lines=True)
    new.to_csv("new.csv", index=False)
    return ["flips", "old.jsonl", "new.csv", "-f", "json"]


def jsonl_named_csv() -> list[str]:
    old, new = frames()
    old.to_json("old.csv", orient="records", lines=True)
    new.to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv"]


def html_named_csv() -> list[str]:
    """What a failed download often leaves behind."""
    Path("old.csv").write_text("<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n")
    frames()[1].to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv"]


def utf16_csv() -> list[str]:
    """Excel's "Unicode text": UTF-16 with a byte-order mark."""
    old, new = frames()
    old.to_csv("old.csv", index=False, encoding="utf-16")
    new.to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv", "--format", "json"]


def parquet_named_csv() -> list[str]:
    old, new = frames()
    old.to_parquet("old.csv", index=False)
    new.to_csv("new.csv", index=False)
    return ["flips", "old.csv", "new.csv", "--format", "json"]


def auc_gate_without_scores() -> list[str]:
    """``--max-auc-drop`` with no ``--score-cols``: no ROC-AUC, the gate could never fail."""
    return [*clean_pair(), "--max-auc-drop", "0.01"]


def render_auc_gate_without_scores() -> list[str]:
    invoke(*clean_pair(), "--format", "json", "--output", "result.json")
    return ["render", "result.json", "--max-auc-drop", "0.01"]


def f1_gate_on_regression() -> list[str]:
    return [*whole_number_regression()[:3], "--atol", "1", "--max-f1-drop", "0.01"]


def check_clean_pair(result: Result) -> None:
    doc = json_doc(result)
    assert doc["metrics"]["n"] == 10 and doc["metrics"]["negative_flips"] == 3


def top_beyond_int64() -> list[str]:
    return [*clean_pair(), "--top", "99999999999999999999"]


def compat_negative_top() -> list[str]:
    return [*compat_pair(embeddings(), embeddings(seed=1)), "--top", "-1"]


def slice_gate_without_slice_by() -> list[str]:
    """``--max-slice-nfr`` with no ``--slice-by``: the gate could never be breached."""
    return [*clean_pair(), "--max-slice-nfr", "0"]


def _jsonl(name: str, rows: list[dict]) -> str:
    Path(name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return name


def _harness(score: float = 0.9) -> list[dict]:
    return [{"task": t, "doc_id": i, "exact_match": int((i + k) % 2), "judge": {"score": score}}
            for k, t in enumerate(("arc_easy", "gsm8k")) for i in range(3)]


def malformed_jsonl_line() -> list[str]:
    _jsonl("old.jsonl", [{"id": 1, "ok": True}, {"id": 2, "ok": False}])
    Path("new.jsonl").write_text('{"id": 1, "ok": true}\n{"id": 2, "ok": fals}\n')
    return ["flips", "old.jsonl", "new.jsonl", "--outcome-col", "ok"]


def outcome_scores_without_threshold() -> list[str]:
    _jsonl("old.jsonl", [{"id": 1, "s": 0.25}, {"id": 2, "s": 0.75}])
    return ["flips", "old.jsonl", "old.jsonl", "--outcome-col", "s"]


def outcome_missing() -> list[str]:
    _jsonl("old.jsonl", [{"id": 1, "ok": True}, {"id": 2, "ok": None}])
    _jsonl("new.jsonl", [{"id": 1, "ok": True}, {"id": 2, "ok": False}])
    return ["flips", "old.jsonl", "new.jsonl", "--outcome-col", "ok"]


def doc_id_repeats_across_tasks() -> list[str]:
    _jsonl("old.jsonl", _harness())
    return ["flips", "old.jsonl", "old.jsonl", "--id-col", "doc_id", "--outcome-col",
            "exact_match"]


def nested_field_missing() -> list[str]:
    _jsonl("old.jsonl", _harness())
    return ["flips", "old.jsonl", "old.jsonl", "--id-col", "task", "--id-col", "doc_id",
            "--outcome-col", "judge.scor", "--pass-threshold", "0.5"]


def outcome_with_label_col() -> list[str]:
    _jsonl("old.jsonl", _harness())
    return ["flips", "old.jsonl", "old.jsonl", "--id-col", "task", "--id-col", "doc_id",
            "--outcome-col", "exact_match", "--label-col", "target"]


def pass_threshold_on_booleans() -> list[str]:
    _jsonl("old.jsonl", [{"id": 1, "ok": True}, {"id": 2, "ok": False}])
    return ["flips", "old.jsonl", "old.jsonl", "--outcome-col", "ok", "--pass-threshold", "0.5"]


def outcome_with_what_if() -> list[str]:
    _jsonl("old.jsonl", [{"id": 1, "ok": True}, {"id": 2, "ok": False}])
    return ["flips", "old.jsonl", "old.jsonl", "--outcome-col", "ok", "--what-if"]


def score_gate_without_scores() -> list[str]:
    _jsonl("old.jsonl", [{"id": 1, "ok": True}, {"id": 2, "ok": False}])
    return ["flips", "old.jsonl", "old.jsonl", "--outcome-col", "ok", "--min-score-delta", "0"]


CASES: list[Case] = [
    Case("malformed_jsonl_line", malformed_jsonl_line, 2,
         ["new.jsonl, line 2", "not valid JSON", "one JSON object"]),
    Case("outcome_scores_without_threshold", outcome_scores_without_threshold, 2,
         ["outcome column 's'", "0.25", "--pass-threshold"]),
    Case("outcome_missing", outcome_missing, 2, ["missing", "outcome", "old.jsonl", "ids 2"]),
    Case("doc_id_repeats_across_tasks", doc_id_repeats_across_tasks, 2,
         ["'doc_id'", "--id-col task --id-col doc_id"]),
    Case("nested_field_missing", nested_field_missing, 2,
         ["'judge.scor'", "no field 'scor'", "score"]),
    Case("outcome_with_label_col", outcome_with_label_col, 2,
         ["--label-col", "--outcome-col"]),
    Case("outcome_with_what_if", outcome_with_what_if, 2,
         ["--what-if cannot be combined with --outcome-col", "Drop it"]),
    Case("pass_threshold_on_booleans", pass_threshold_on_booleans, 2,
         ["--pass-threshold", "booleans"]),
    Case("score_gate_without_scores", score_gate_without_scores, 2,
         ["--min-score-delta", "graded scores"]),
    Case("missing_file", missing_file, 2, ["nope.csv", "no such file"]),
    Case("directory_without_data_files", directory_without_data_files, 2,
         ["preds", "no .parquet, .csv or .jsonl files"]),
    Case("glob_without_match", glob_without_match, 2, ["runs/*.parquet", "no file matches"]),
    Case("empty_file", empty_file, 2, ["old.csv", "empty"]),
    Case("header_only_csv", header_only_csv, 2,
         ["OLD file old.csv", "no rows", "id, label, pred"]),
    Case("corrupt_parquet", corrupt_parquet, 2,
         ["old.parquet", "not a readable Parquet file", "write it again"]),
    Case("truncated_parquet", truncated_parquet, 2,
         ["new.parquet", "not a readable Parquet file", "truncated or corrupt"]),
    Case("csv_not_utf8", csv_not_utf8, 2,
         ["old.csv", "not UTF-8", "Line: 4", "Save the CSV as UTF-8"]),
    Case("csv_with_bom", csv_with_bom, 0, check=check_bom),
    Case("csv_ragged_row", csv_ragged_row, 2, ["old.csv"], absent=["no column 'id'"]),
    Case("missing_pred_column", missing_pred_column, 2,
         ["OLD file old.csv", "no column 'pred'", "Columns present: id, label, prediction_x",
          "Closest match: 'prediction_x'", "--pred-col"]),
    Case("missing_id_column", missing_id_column, 2,
         ["OLD file old.csv", "no column 'ID'", "Columns present: id, label, pred",
          "Closest match: 'id'", "--id-col id"]),
    Case("missing_label_column", missing_label_column, 2,
         ["old.csv", "'label'", "Columns present", "Closest match: 'lable'", "--label-col"]),
    Case("duplicate_ids", duplicate_ids, 2,
         ["OLD file old.csv", "column 'id'", "'x1' (3 times)", "unique"]),
    Case("null_ids", null_ids, 2,
         ["OLD file old.csv", "no id in column 'id'", "data rows 4, 6"]),
    Case("null_labels", null_labels, 2, ["label", "'label'", "ids 'x2', 'x7'", "Fill them in"]),
    Case("nan_labels", nan_labels, 2, ["NaN", "'label'", "ids 'x2', 'x7'", "Fill them in"]),
    Case("null_labels_name_the_file", null_labels, 2, ["old.parquet", "'x2'"]),
    Case("null_predictions", null_predictions, 2,
         ["NEW file new.csv", "prediction", "column 'pred'", "ids 'x4'"]),
    Case("labels_disagree", labels_disagree, 2,
         ["OLD file old.csv", "NEW file new.csv", "column 'label'", "2 id(s)",
          "'x1' (OLD 1, NEW 2)", "'x6' (OLD 0, NEW 2)", "--labels FILE"]),
    Case("unmatched_ids", unmatched_ids, 2,
         ["4 id(s) only in OLD file old.csv", "'x0', 'x1', 'x8', 'x9'",
          "2 id(s) only in NEW file new.csv", "'z8', 'z9'", "6 matched", "--allow-unmatched"]),
    Case("unmatched_ids_allowed", unmatched_ids_allowed, 0, check=check_unmatched_allowed),
    Case("labels_file_missing_ids", labels_file_missing_ids, 2,
         ["LABELS file truth.csv", "7 matched id(s) have no label", "'x1'",
          "--allow-unmatched"]),
    Case("no_shared_ids", no_shared_ids, 2,
         ["OLD file old.csv", "NEW file new.csv", "share no ids", "'x0'", "'q0'", "--id-col"]),
    Case("mixed_label_types", mixed_label_types, 0, check=check_same_class),
    Case("mixed_id_types", mixed_id_types, 0, check=check_mixed_ids),
    Case("float_ids", float_ids, 0, check=check_float_ids),
    Case("nan_ids", nan_ids, 2, ["OLD file old.parquet", "no id in column 'id'",
                                 "data rows 4, 6"]),
    Case("compat_float_ids", compat_float_ids, 0, check=check_compat_float_ids),
    Case("threshold_not_a_number", threshold_not_a_number, 2, ["--max-nfr", "abc"]),
    Case("threshold_out_of_range", threshold_out_of_range, 2,
         ["--max-nfr", "1.5", "range 0 to 1"]),
    Case("confidence_zero", confidence_zero, 2, ["--confidence", "between 0 and 1"]),
    Case("unknown_key_gaudit_toml", unknown_key_gaudit_toml, 2,
         ["gaudit.toml", "unknown key 'max_nfrr'", "Did you mean 'max-nfr'?"]),
    Case("unknown_key_pyproject", unknown_key_pyproject, 2,
         ["pyproject.toml", "unknown key 'colour'", "flips settings"],
         keep_config_isolation=False),
    Case("wrong_type_in_config", wrong_type_in_config, 2,
         ["gaudit.toml", "'max-nfr' must be a number", "'high'"]),
    Case("config_value_out_of_range", config_value_out_of_range, 2,
         ["max-nfr", "3.0", "range 0 to 1", "gaudit.toml"]),
    Case("embeddings_nan", embeddings_nan, 2, ["NEW file new.parquet", "NaN", "ids 'e3'"]),
    Case("embeddings_inf", embeddings_inf, 2, ["OLD file old.parquet", "inf", "ids 'e4'"]),
    Case("embeddings_ragged", embeddings_ragged, 2,
         ["NEW file new.parquet", "ragged", "lengths 7, 8", "'e5'", "same dimension"]),
    Case("embeddings_beyond_float32", embeddings_beyond_float32, 2,
         ["NEW file new.parquet", "'e3'"]),
    Case("embeddings_scores_overflow_l2", embeddings_huge_l2, (0, 2)),
    Case("zero_vectors_cosine", zero_vectors_cosine, 2,
         ["NEW file new.parquet", "all zeros", "'e6', 'e7'", "--metric ip"]),
    Case("zero_vectors_ip", zero_vectors_ip, 0, ["dim 8"]),
    Case("dimension_mismatch_require_compatible", dimension_mismatch, 1,
         ["dimension 8 vs 12", "require-compatible"],
         check=check_dimension_json),
    Case("versions_one_file", versions_one_file, 2, ["Missing argument 'NEW'"]),
    Case("versions_unmatched_ids", versions_unmatched_ids, 2,
         ["V2 file v2.parquet lacks 2 id(s) another version has (e.g. 'e0', 'e1')",
          "10 matched", "present in all 3 files", "--allow-unmatched"],
         absent=["V1 file", "V3 file"]),
    Case("versions_dimension_middle", versions_dimension_middle, 1,
         ["dimension 12 vs 8: cannot compare", "3 of 3 pairs fail",
          "require-compatible"], check=check_versions_dimension),
    Case("versions_labels_disagree", versions_labels_disagree, 2,
         ["identity labels disagree between V1 and V3", "'e5'", "All files must label"]),
    Case("no_embeddings", no_embeddings, 2,
         ["OLD file old.parquet", "no embeddings", "Columns present: id, label",
          "--embedding-col"]),
    Case("text_deep_in_numeric_column", text_deep_in_numeric_column, 2,
         ["new.csv", f"line {DEEP_ROW + 2}", "mixed types"]),
    Case("text_deep_names_file_and_column", text_deep_in_numeric_column, 2,
         ["new.csv", "'pred'", "oops"]),
    Case("many_classes", many_classes, 0, check=check_many_classes, time_limit=60.0),
    Case("very_long_ids", very_long_ids, 0, check=check_long_ids),
    Case("binary_score_nan", binary_score_nan, 2,
         ["NEW file new.parquet", "'score'", "ids 'b5'"]),
    Case("binary_score_inf", binary_score_inf, 2, ["NEW file new.parquet", "'score'"]),
    Case("class_scores_inf", class_scores_inf, 2, ["NEW file", "img-0087"]),
    # issue 13, part 1
    Case("scores_name_other_classes", scores_name_other_classes, 2,
         ["OLD file old.csv", "prob_cat -> 'cat', prob_dog -> 'dog'", "'cat', 'dog'",
          "hold '0', '1'", "share no class", "--score-cols"]),
    Case("binary_score_text_labels", binary_score_text_labels, 2,
         ["OLD file old.csv", "'score' >= 0.5", "'0', '1'", "'neg', 'pos'", "share no class"]),
    Case("stray_score_column", stray_score_column, 2,
         ["OLD file old.csv", "prob_top -> 'top'", "predicts the classes 'top'",
          "share no class"]),
    Case("pred_shares_nothing_with_labels", pred_shares_nothing_with_labels, 2,
         ["OLD file old.csv (column 'pred')", "'0', '1', '2'", "'cat', 'cow', 'dog'",
          "share no class", "--label-col"]),
    Case("labels_file_shares_nothing", labels_file_shares_nothing, 2,
         ["LABELS file truth.csv", "'class-0'", "share no class"]),
    Case("mostly_unknown_predictions", mostly_unknown_predictions, 0,
         check=check_mostly_unknown),
    Case("tiny_disjoint_predictions", tiny_disjoint_predictions, 0, check=check_tiny_disjoint),
    Case("whole_number_regression", whole_number_regression, (0, 1),
         check=check_whole_number_regression),
    Case("regression_gate_with_task_classification", regression_gate_with_task_classification,
         2, ["--max-mae-delta", "only to a regression audit", "--task classification"]),
    Case("atol_in_config_with_task_classification", atol_in_config_with_task_classification,
         2, ["gaudit.toml: atol applies", "only to a regression audit", "--task classification"]),
    Case("regression_gate_from_config", regression_gate_from_config, (0, 1),
         check=check_regression_gate_from_config),
    Case("churn_gate_on_regression", churn_gate_on_regression, 2,
         ["--max-churn", "churn_rate", "only for a classification audit", "regression audit"]),
    Case("render_regression_gate_on_classification", render_regression_gate_on_classification,
         2, ["--max-mae-delta", "only for a regression audit", "classification audit"]),
    Case("auc_gate_without_scores", auc_gate_without_scores, 2,
         ["--max-auc-drop", "ROC-AUC needs the models' scores", "--score-cols"]),
    Case("render_auc_gate_without_scores", render_auc_gate_without_scores, 2,
         ["--max-auc-drop", "ROC-AUC needs the models' scores"]),
    Case("f1_gate_on_regression", f1_gate_on_regression, 2,
         ["--max-f1-drop", "macro_f1_drop", "only for a classification audit"]),
    Case("ragged_score_lists", ragged_score_lists, 2,
         ["NEW file new.parquet", "ragged score lists", "'scores'", "lengths 3, 4",
          "'s04', 's09'"]),
    Case("binary_score_logits", binary_score_logits, 2,
         ["NEW file new.csv", "'score'", "outside [0, 1]", "'s03' (4.2)", "'s07' (-1.5)",
          "sigmoid"], absent=["confidence 4.2"]),
    Case("binary_score_logits_with_pred", binary_score_logits_with_pred, 2,
         ["OLD file old.csv", "'score'", "'s02' (4.2)"]),
    Case("slice_values_differ", slice_values_differ, 2,
         ["--slice-by 'device'", "OLD file old.csv", "NEW file new.parquet", "2 audited id(s)",
          "'x3' (OLD 'web', NEW 'tablet')", "'x6' (OLD 'phone', NEW None)"]),
    Case("slice_values_agree", slice_values_agree, 0, check=check_slice_values_agree),
    Case("slice_differs_in_labels_file", slice_differs_in_labels_file, 2,
         ["--slice-by 'device'", "OLD file old.csv", "LABELS file truth.csv", "'x4'"]),
    Case("csv_duplicate_column", csv_duplicate_column, 2,
         ["OLD file old.csv", "'pred' occurs twice", "header", "Rename or drop"]),
    Case("csv_duplicate_column_other_case", csv_duplicate_column_other_case, 2,
         ["NEW file new.csv", "'Label' and 'label'"]),
    Case("parquet_duplicate_column", parquet_duplicate_column, 2,
         ["OLD file old.parquet", "'pred' occurs twice"]),
    Case("pred_and_pred_1_columns", pred_and_pred_1_columns, 0, check=check_pred_and_pred_1),
    Case("threshold_without_binary_score", threshold_without_binary_score, 2,
         ["--threshold 0.8", "unused", "OLD predicts from column 'pred'"]),
    Case("threshold_in_config_without_binary_score", threshold_in_config_without_binary_score,
         2, ["gaudit.toml: threshold 0.8", "argmax of 2 score columns"]),
    Case("pred_col_is_label_col", pred_col_is_label_col, 2,
         ["OLD file old.csv", "column 'label'", "ground truth (--label-col)",
          "prediction (--pred-col)"]),
    Case("score_glob_catches_pred", score_glob_catches_pred, 2,
         ["OLD file old.csv", "column 'pred'", "score column (--score-cols 'p*')"]),
    Case("score_columns_miss_predicted_classes", score_columns_miss_predicted_classes, 0,
         check=check_score_columns_miss),
    Case("list_scores_labels_from_one", list_scores_labels_from_one, (0, 1),
         check=check_labels_from_one),
    Case("binary_score_labels_minus_one", binary_score_labels_minus_one, (0, 1),
         check=check_one_warning_per_model),
    Case("mostly_unknown_classes", mostly_unknown_classes, 0,
         check=check_mostly_unknown_classes),
    Case("compat_duplicate_column", compat_duplicate_column, 2,
         ["OLD file old.parquet", "'label' and 'Label'"]),
    Case("config_key_both_spellings", config_key_both_spellings, 2,
         ["gaudit.toml", "'max_nfr' and 'max-nfr'", "keep one"]),
    Case("pyproject_key_both_spellings", pyproject_key_both_spellings, 2,
         ["pyproject.toml", "'max-nfr' and 'max_nfr'"], keep_config_isolation=False),
    Case("compat_key_both_spellings", compat_key_both_spellings, 2,
         ["gaudit.toml", "'require_compatible' and 'require-compatible'"]),
    Case("compat_max_cross_drop_out_of_range", compat_max_cross_drop_out_of_range, 2,
         ["--max-cross-drop", "outside the valid range -1 to 1"]),
    Case("compat_confidence_one", compat_confidence_one, 2,
         ["--confidence", "strictly between 0 and 1"]),
    Case("compat_sample_queries_zero", compat_sample_queries_zero, 2,
         ["--sample-queries: 0 is not a number of queries"]),
    Case("compat_seed_without_sample", compat_seed_without_sample, 2,
         ["--seed: only used with --sample-queries"]),
    Case("compat_negative_seed", compat_negative_seed, 2, ["--seed: -1 is not a seed"]),
    Case("compat_memory_limit_too_small", compat_memory_limit_too_small, 2,
         ["--memory-limit", "too small"]),
    Case("compat_spark_conf_without_engine", compat_spark_conf_without_engine, 2,
         ["--spark-remote and --spark-conf: only used with --engine spark"]),
    Case("compat_memory_limit_with_spark", compat_memory_limit_with_spark, 2,
         ["--memory-limit: bounds the default engine", "Drop --memory-limit"]),
    Case("compat_engine_unknown_in_config", compat_engine_unknown_in_config, 2,
         ["'postgres'", "duckdb, spark"]),
    Case("flips_spark_remote_without_engine", flips_spark_remote_without_engine, 2,
         ["--spark-remote: only used with --engine spark", "drop it"]),
    Case("flips_memory_limit_with_spark", flips_memory_limit_with_spark, 2,
         ["--memory-limit: bounds the default engine"]),

    Case("csv_booleans", csv_booleans, 0, check=check_booleans),
    Case("csv_booleans_spelled_differently", csv_booleans_spelled_differently, 0,
         check=check_booleans),
    Case("csv_booleans_against_integers", csv_booleans_against_integers, 0,
         check=check_booleans),
    Case("parquet_booleans_against_text", parquet_booleans_against_text, 0,
         check=check_booleans),
    Case("csv_booleans_labels_file", csv_booleans_labels_file, 0, check=check_booleans),
    Case("yes_no_text_labels", yes_no_text_labels, 0, check=check_yes_no),
    Case("fill_value_labels", fill_value_labels, 2,
         ["OLD file old.parquet", "column 'label'", "fill value", "2 row(s)",
          "'x3' (-3.4028235e+38)", "'x6'", "-3.4e38"]),
    Case("fill_value_labels_csv", fill_value_labels_csv, 2,
         ["OLD file old.csv", "column 'label'", "fill value", "'x5' (-3.4e+38)"]),
    Case("fill_value_prediction_regression", fill_value_prediction_regression, 2,
         ["NEW file new.parquet", "column 'pred'", "fill value", "'x2' (1.7976931e+308)"]),
    Case("fill_value_score", fill_value_score, 2,
         ["NEW file new.parquet", "column 'prob_1'", "fill value", "'x7'"]),
    Case("large_values_are_data", large_values_are_data, 0, check=check_large_values),
    *[Case(f"empty_{flag[2:].replace('-', '_')}", empty_column_flag(flag, value), 2,
           [f"{flag}: the column name is empty"], absent=["file"])
      for flag, value in (("--id-col", ""), ("--label-col", " "), ("--pred-col", ""),
                          ("--score-cols", "  "), ("--slice-by", ""),
                          ("--embedding-col", ""), ("--split-col", "\t"))],
    Case("empty_column_in_config", empty_column_in_config, 2,
         ["gaudit.toml: 'slice_by': the column name is empty"]),
    *[Case(f"memory_limit_{name}", memory_limit(value), 2, [f"--memory-limit: {value!r}", want],
           absent=["file"])
      for name, value, want in (("1KB", "1KB", "too small"), ("zero", "0", "not a memory size"),
                                ("negative", "-1GB", "not a memory size"),
                                ("abc", "abc", "not a memory size"),
                                ("exponent", "1e3GB", "not a memory size"))],
    Case("memory_limit_in_config", memory_limit_in_config, 2,
         ["gaudit.toml: 'memory-limit': '1KB' is too small"]),
    Case("device_as_input", device_as_input, 2, ["OLD file /dev/zero", "is a device"]),
    Case("empty_path", empty_path, 2, ["OLD file", "the path is empty"]),
    Case("empty_config_path", lambda: [*clean_pair(), "--config", ""], 2,
         ["--config: the path is empty"]),
    Case("excel_named_csv", excel_named_csv, 2, ["old.csv", "zip archive", "Excel", "Save it"]),
    Case("json_lines_input", json_lines_input, 0, check=check_clean_pair),  # issue 16: read
    Case("jsonl_named_csv", jsonl_named_csv, 2,
         ["old.csv: is JSON, not CSV", "Name a JSON Lines file", ".jsonl"]),
    Case("html_named_csv", html_named_csv, 2, ["old.csv", "HTML", "error page"]),
    Case("utf16_csv", utf16_csv, 0, check=check_clean_pair),
    Case("parquet_named_csv", parquet_named_csv, 0, check=check_clean_pair),
    Case("slice_gate_without_slice_by", slice_gate_without_slice_by, 2,
         ["--max-slice-nfr: no --slice-by column is audited", "never be breached"]),
    # issue 13: never destroy a file (usage errors before any work is done)
    Case("output_onto_old", output_onto_old, 2,
         ["--output old.csv", "the OLD input old.csv", "destroy"]),
    Case("output_onto_new_other_spelling", output_onto_new_other_spelling, 2,
         ["--output sub/../new.csv", "the NEW input new.csv"]),
    Case("output_onto_labels", output_onto_labels, 2,
         ["--report html:truth.csv", "the LABELS input truth.csv"]),
    Case("output_onto_symlink_to_input", output_onto_symlink_to_input, 2,
         ["--output report.txt", "the OLD input old.csv"]),
    Case("output_onto_hard_link_to_input", output_onto_hard_link_to_input, 2,
         ["--report json:new-data.csv", "the NEW input new.csv"]),
    Case("output_onto_config_file", output_onto_config_file, 2,
         ["--report markdown:gaudit.toml", "the config input", "gaudit.toml"]),
    Case("output_onto_input_in_folder", output_onto_input_in_folder, 2,
         ["--output runs/part-0.parquet", "the OLD input", "part-0.parquet"]),
    Case("output_twice", output_twice, 2,
         ["--report json:./r.json", "--output r.json already writes there"]),
    Case("output_twice_to_stdout", output_twice_to_stdout, 2,
         ["--report json:-", "the text report (standard output) already writes there"]),
    Case("output_existing_folder", output_existing_folder, 2,
         ["--output reports", "is a folder"]),
    Case("output_trailing_slash", output_trailing_slash, 2,
         ["--report html:reports/", "is a folder"]),
    Case("output_dot_under_a_new_folder", output_dot_under_a_new_folder, 2,
         ["--output nodir/x/.", "is a folder"]),
    Case("output_under_a_file", output_under_a_file, 2,
         ["--output notes/report.txt", "is a file, not a folder"]),
    # issue 13: config files that are not what they seem
    Case("config_table_is_a_number", config_table_is_a_number, 2,
         ["gaudit.toml", "'flips' must be a table", "got 3"]),
    Case("config_tool_gaudit_is_a_string", config_tool_gaudit_is_a_string, 2,
         ["pyproject.toml", "'tool.gaudit' must be a table", "got 'x'"]),
    Case("config_command_table_is_a_string", config_command_table_is_a_string, 2,
         ["pyproject.toml", "'tool.gaudit.flips' must be a table", "got 'x'"]),
    Case("config_tool_is_a_number", config_tool_is_a_number, 2,
         ["pyproject.toml", "'tool' must be a table"]),
    Case("config_not_utf8", config_not_utf8, 2, ["gaudit.toml", "not UTF-8", "0xe9"]),
    Case("config_is_a_folder", config_is_a_folder, 2, ["settings.toml", "cannot be read"]),
    Case("config_is_a_fifo", config_is_a_fifo, 2, ["settings.toml", "a pipe that gave no data"]),
    # issue 13: a value from a config file is named by file and key, not by a flag
    Case("config_memory_limit", config_value("memory-limit = 'lots'"), 2,
         ["gaudit.toml: 'memory-limit': 'lots' is not a memory size"], absent=["--memory-limit"]),
    Case("config_confidence", config_value("confidence = 2.0"), 2,
         ["gaudit.toml: confidence: 2.0"], absent=["--confidence"]),
    Case("config_engine", config_value("engine = 'sqlite'"), 2,
         ["gaudit.toml: engine: 'sqlite'"], absent=["--engine"]),
    Case("config_task", config_value("task = 'ranking'"), 2,
         ["gaudit.toml: task: 'ranking'"], absent=["--task"]),
    Case("config_threshold", config_value("threshold = 3.0"), 2,
         ["gaudit.toml: threshold: 3.0"], absent=["--threshold"]),
    Case("config_top", config_value("top = -1"), 2, ["gaudit.toml: top: -1"],
         absent=["--top"]),
    Case("config_atol", config_value("atol = -1.0"), 2, ["gaudit.toml: atol: -1.0"],
         absent=["--atol"]),
    Case("config_gate_out_of_range", config_value("min-btc = 1.5"), 2,
         ["gaudit.toml: min-btc: 1.5 is outside"], absent=["--min-btc"]),
    Case("config_score_cols_match_nothing", config_value("score-cols = 'zz_*'"), 2,
         ["score-cols (from gaudit.toml) 'zz_*'"], absent=["--score-cols"]),
    # issue 13: a non-finite number never reaches the JSON writer
    Case("regression_prediction_1e200", regression_prediction_1e200, 2,
         ["NEW file new.csv", "column 'pred' holds a fill value", "'2' (1e+200)"]),
    Case("regression_predictions_overflow_sum", regression_predictions_overflow_sum, 2,
         ["'2' (1e+300)", "'3' (-1e+300)", "'4' (1.5e+308)"]),
    Case("regression_prediction_large_but_fine", regression_prediction_large_but_fine, 0,
         check=check_strict_json),
    Case("top_beyond_int64", top_beyond_int64, 2,
         ["--top: 99999999999999999999 must be between 0 and 1,000,000,000"]),
    Case("compat_negative_top", compat_negative_top, 2, ["--top: -1 must be between 0"]),
    Case("qrels_missing_file", qrels_missing_file, 2, ["--qrels file qrels.tsv: no such file"]),
    Case("qrels_empty_file", qrels_empty_file, 2, ["qrels.tsv: is empty", "BEIR", "TREC"]),
    Case("qrels_unknown_format", qrels_unknown_format, 2,
         ["line 1", "neither the BEIR header", "TREC judgment"]),
    Case("qrels_malformed_line", qrels_malformed_line, 2, ["line 3", "1 tab-separated field"]),
    Case("qrels_trec_malformed_line", qrels_trec_malformed_line, 2,
         ["line 2", "3 field(s), 4 expected"]),
    Case("qrels_negative_grade", qrels_negative_grade, 2, ["line 2", "-1 is negative"]),
    Case("qrels_fractional_grade", qrels_fractional_grade, 2,
         ["line 2", "0.5 is not a non-negative integer"]),
    Case("qrels_duplicate_judgment", qrels_duplicate_judgment, 2,
         ["judged twice (lines 1 and 2)"]),
    Case("qrels_header_only", qrels_header_only, 2, ["has the BEIR header but no judgment"]),
    Case("qrels_unknown_ids", qrels_unknown_ids, 2,
         ["4 of 7 judgment(s)", "'q9'", "'doc-x'", "gallery side of the split",
          "query side of the split", "--allow-unmatched"]),
    Case("qrels_unknown_ids_allowed", qrels_unknown_ids_allowed, 0, check=_unmatched_counted),
    Case("qrels_without_split", qrels_without_split, 2,
         ["--qrels needs a split column", "--split-col"]),
    Case("qrels_with_label_col", qrels_with_label_col, 2,
         ["--label-col cannot be used with --qrels"]),
    Case("qrels_with_top1_criterion", qrels_with_top1_criterion, 2,
         ["'top1' cannot be used with --qrels", "ndcg10"]),
    Case("qrels_empty_path", qrels_empty_path, 2, ["--qrels: the path is empty"]),
    Case("qrels_is_report_output", qrels_is_report_output, 2,
         ["--output qrels.tsv: that is the QRELS input"]),
    Case("ndcg_criterion_without_qrels", ndcg_criterion_without_qrels, 2,
         ["'ndcg10' is not one of top1, map", "--qrels FILE"]),
    # issue 19: --log-to mlflow
    Case("log_to_unknown_tracker", with_options("--log-to", "wandb"), 2,
         ["--log-to", "'wandb' is not one of 'mlflow', 'none'"]),
    Case("config_log_to_unknown_tracker", config_value('log-to = "wandb"'), 2,
         ["gaudit.toml: log-to 'wandb': not a tracker gaudit can log to; use mlflow or none"],
         absent=["--log-to 'wandb'"]),
    Case("mlflow_experiment_without_log_to", with_options("--mlflow-experiment", "x"), 2,
         ["--mlflow-experiment 'x': nothing is logged to MLflow without --log-to mlflow"]),
    Case("config_mlflow_experiment_without_log_to", config_value('mlflow-experiment = "x"'), 2,
         ["gaudit.toml: mlflow-experiment 'x': nothing is logged to MLflow"]),
    Case("mlflow_experiment_empty", with_options("--log-to", "mlflow",
                                                 "--mlflow-experiment", ""), 2,
         ["--mlflow-experiment: the name is empty"]),
    # issue 17: --what-if needs scores of the same classes in both files
    Case("whatif_without_score_cols", lambda: [*clean_pair(), "--what-if"], 2,
         ["--what-if blends the two models' per-class scores", "no --score-cols was given",
          "--score-cols 'prob_*'"]),
    Case("whatif_steps_without_whatif", whatif_args("--what-if-steps", "5"), 2,
         ["--what-if-steps 5 is given without --what-if", "add --what-if"]),
    Case("whatif_steps_one", whatif_args("--what-if", "--what-if-steps", "1"), 2,
         ["--what-if-steps: 1 must be an integer from 2 to 1001"]),
    Case("whatif_steps_too_many", whatif_args("--what-if", "--what-if-steps", "1002"), 2,
         ["--what-if-steps: 1002 must be an integer from 2 to 1001"]),
    Case("whatif_steps_not_an_integer", whatif_args("--what-if", "--what-if-steps", "2.5"), 2,
         ["--what-if-steps", "'2.5' is not a valid int"]),
    Case("whatif_steps_in_config_without_whatif",
         lambda: [*whatif_args()(), "--config", "cfg.toml"]
         if Path("cfg.toml").write_text("[flips]\nwhat-if-steps = 5\n") else [], 2,
         ["cfg.toml: what-if-steps 5 is given without --what-if"], absent=["--what-if-steps"]),
    Case("whatif_steps_in_config_not_an_integer", config_value("what-if-steps = 2.5"), 2,
         ["gaudit.toml: 'what-if-steps' must be an integer, got 2.5"]),
    Case("whatif_in_config_not_a_bool", config_value("what-if = 'yes'"), 2,
         ["gaudit.toml: 'what-if' must be true or false, got 'yes'"]),
    Case("whatif_scores_in_one_file_only",
         lambda: [*pair(score_pair()[0], frames()[1].drop(columns="label")), "--score-cols",
                  "p_*", "--what-if"], 2,
         ["NEW file new.csv: no column matches --score-cols 'p_*'", "Columns present"]),
    Case("whatif_classes_differ", whatif_args("--what-if", new_classes=("a", "b", "d")), 2,
         ["--what-if blends scores of the same classes", "only OLD file old.csv has scores "
          "for 'c'", "only NEW file new.csv has scores for 'd'"]),
    Case("whatif_binary_against_columns", whatif_binary_against_columns, 2,
         ["OLD file old.csv one score column 'p_1'", "NEW file new.csv 2 score columns"]),
    Case("whatif_list_lengths_differ", whatif_list_lengths_differ, 2,
         ["a list column 's' of 3 scores per row", "a list column 's' of 4 scores per row"]),
    Case("whatif_regression", whatif_regression, 2,
         ["--what-if blends the scores of two classifiers; this audit is a regression"]),
    Case("whatif_nan_score", whatif_nan_score, 2,
         ["--what-if: 2 audited row(s) have a missing score", "NEW file new.parquet",
          "--score-cols 'p_*'", "ids 'x3', 'x7'"]),
    Case("whatif_fill_value_score", whatif_fill_value_score, 2,
         ["--what-if: 1 audited row(s) have a missing score", "fill value",
          "OLD file old.parquet", "ids 'x5'"]),
    Case("whatif_binary_threshold_with_predictions", whatif_binary_threshold_with_predictions,
         0, check=check_threshold_used),
]


def params() -> list[Any]:
    out = []
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case.bug, strict=True),
                 pytest.mark.filterwarnings("ignore::RuntimeWarning")] if case.bug else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory whose (empty) gaudit.toml stops the upward search for
    configuration files, so none of the folders above can change the outcome."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gaudit.toml").write_text("# no options: isolates the test from parent folders\n")
    return tmp_path


def assert_clean(result: Result, code: int | tuple[int, ...]) -> str:
    """The contract every case shares; returns the stream holding the message."""
    codes = code if isinstance(code, tuple) else (code,)
    out, err = result.stdout, result.stderr
    assert result.exit_code in codes, (
        f"exit {result.exit_code}, expected {codes}\nstdout: {out[:2000]}\nstderr: {err[:2000]}"
    )
    assert result.exit_code != 3
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception)
    )
    assert "Traceback" not in out and "Traceback" not in err
    if result.exit_code == 2:
        assert err.startswith("gaudit: error: "), err
        assert err.count("\n") == 1 and err.endswith("\n"), f"not one line:\n{err}"
        assert out == ""
        for word in INTERNALS:
            assert word not in err, f"engine internals {word!r} in: {err}"
        return err
    assert "gaudit: error" not in err and "internal error" not in err, err
    return out


@pytest.mark.parametrize("case", params())
def test_bad_input(case: Case, isolated: Path) -> None:
    if not case.keep_config_isolation:
        (isolated / "gaudit.toml").unlink()
    args = case.build()
    start = time.perf_counter()
    result = invoke(*args)
    elapsed = time.perf_counter() - start
    message = assert_clean(result, case.code)
    if case.time_limit is not None:
        assert elapsed < case.time_limit, f"took {elapsed:.1f} s (limit {case.time_limit} s)"
    for needle in case.needles:
        assert needle in message, f"{needle!r} not in message:\n{message[:3000]}"
    for claim in case.absent:
        assert claim not in message, f"misleading {claim!r} in message:\n{message[:3000]}"
    if case.check is not None:
        case.check(result)


def test_table_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_threshold_not_a_number_is_a_usage_error(isolated: Path) -> None:
    """What holds today for ``--max-nfr abc`` (the message format is the xfail above)."""
    result = invoke(*clean_pair(), "--max-nfr", "abc")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "'--max-nfr'" in result.stderr
    assert "valid number" in result.stderr or "valid float" in result.stderr  # typer's words
    assert result.stderr.count("'abc'") == 1  # the value is named once


def test_debug_shows_the_traceback_of_an_input_error(isolated: Path) -> None:
    """``--debug`` is the way to the traceback; without it there is none (above). It keeps
    the exit code: CI reads 1 as "gate breached" (issue 13)."""
    result = invoke(*empty_file(), "--debug")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "InputError" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("gaudit: error: old.csv")


# --------------------------------------------------------------------------- nothing lost


def messy_pair() -> list[str]:
    """OLD m00..m19; NEW m03..m23; LABELS lack m05, m09, m11 and hold an unknown id."""
    old = pd.DataFrame({"id": [f"m{i:02d}" for i in range(20)],
                        "pred": [i % 3 for i in range(20)]})
    new = pd.DataFrame({"id": [f"m{i:02d}" for i in range(3, 24)],
                        "pred": [i % 3 if i % 5 else 0 for i in range(3, 24)]})
    kept = [i for i in range(24) if i not in (5, 9, 11)]
    truth = pd.DataFrame({"id": [f"m{i:02d}" for i in kept] + ["zzz"],
                          "label": [i % 3 for i in kept] + [1]})
    old.to_csv("old.csv", index=False)
    new.to_parquet("new.parquet", index=False)
    truth.to_csv("truth.csv", index=False)
    return ["flips", "old.csv", "new.parquet", "--labels", "truth.csv", "--allow-unmatched"]


def test_nothing_lost_accounting_adds_up(isolated: Path) -> None:
    result = invoke(*messy_pair(), "--slice-by", "id", "-f", "json")
    assert_clean(result, 0)
    doc = json.loads(result.stdout)
    inputs, metrics = doc["inputs"], doc["metrics"]
    assert inputs["old"]["rows"] == 20 and inputs["new"]["rows"] == 21
    assert inputs["labels"]["rows"] == 22
    assert inputs["old"]["rows"] == inputs["matched"] + inputs["unmatched_old"]
    assert inputs["new"]["rows"] == inputs["matched"] + inputs["unmatched_new"]
    assert inputs["audited"] == inputs["matched"] - inputs["excluded"]["no_label"]
    assert metrics["n"] == inputs["audited"]
    # the exact numbers, so that "adds up" cannot hold by everything being zero
    assert (inputs["matched"], inputs["unmatched_old"], inputs["unmatched_new"]) == (17, 3, 4)
    assert inputs["excluded"]["no_label"] == 3 and inputs["audited"] == 14
    # every labels row is either audited or reported unused
    assert inputs["labels"]["rows"] == inputs["audited"] + inputs["labels"]["unused"]
    # the breakdowns cover exactly the audited rows
    assert sum(row["support"] for row in doc["per_class"]) == inputs["audited"]
    assert sum(row["n"] for row in doc["slices"]["id"]) == inputs["audited"]


def test_nothing_lost_in_compat(isolated: Path) -> None:
    old, new = embeddings(12), embeddings(14, seed=1).iloc[3:]
    result = invoke(*compat_pair(old, new), "--allow-unmatched", "-f", "json")
    assert_clean(result, 0)
    inputs = json.loads(result.stdout)["inputs"]
    assert inputs["old"]["rows"] == inputs["matched"] + inputs["unmatched_old"] == 12
    assert inputs["new"]["rows"] == inputs["matched"] + inputs["unmatched_new"] == 11
    assert inputs["matched"] == inputs["gallery"] == 9


# --------------------------------------------------------------------------- reproducible

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2})?")
TIME_KEYS = re.compile(r"(^|_)(time|timestamp|date|datetime|generated|created|now)(_|$)", re.I)


def keys(doc: Any) -> list[str]:
    if isinstance(doc, dict):
        return [k for k, v in doc.items() for k in (k, *keys(v))]
    if isinstance(doc, list):
        return [k for v in doc for k in keys(v)]
    return []


def assert_no_stray_paths_or_times(text: str, given: Sequence[str], workdir: Path) -> None:
    time_keys = [k for k in keys(json.loads(text)) if TIME_KEYS.search(k)]
    assert not time_keys, f"time-like keys in the JSON: {time_keys}"
    for path in given:
        text = text.replace(json.dumps(path)[1:-1], "")
    for folder in {str(workdir), str(workdir.resolve()), tempfile.gettempdir(), str(ROOT),
                   str(Path.home())}:
        assert folder not in text, f"absolute path {folder!r} in the JSON"
    assert not re.search(r'"/[^"]*"', text), "an absolute path in the JSON"
    assert not TIMESTAMP.search(text), f"timestamp-like value: {TIMESTAMP.search(text)}"


def run_twice(args: list[str]) -> bytes:
    outputs = []
    for i in range(2):
        out = f"run{i}.json"
        result = invoke(*args, "--format", "json", "--output", out)
        assert result.exit_code in (0, 1), result.output
        outputs.append(Path(out).read_bytes())
    assert outputs[0] == outputs[1]
    return outputs[0]


def test_flips_json_is_reproducible(isolated: Path) -> None:
    shutil.copy(SAMPLES / "digits_old.csv", "old.csv")
    shutil.copy(SAMPLES / "digits_new.parquet", "new.parquet")
    Path("gaudit.toml").write_text("[flips]\nmax-nfr = 0.02\nslice-by = ['ink']\n")
    data = run_twice(["flips", "old.csv", "new.parquet", "--score-cols", "prob_*"])
    doc = json.loads(data)
    assert doc["gates"][0]["source"] == "gaudit.toml"  # relative, as found
    assert doc["inputs"]["old"]["path"] == "old.csv"
    assert_no_stray_paths_or_times(data.decode(), [], isolated)


def test_flips_json_holds_only_the_absolute_paths_given(isolated: Path) -> None:
    old, new = str(SAMPLES / "digits_old.csv"), str(SAMPLES / "digits_new.parquet")
    data = run_twice(["flips", old, new, "--slice-by", "ink", "--max-nfr", "0.01"])
    assert json.loads(data)["inputs"]["new"]["path"] == new
    assert_no_stray_paths_or_times(data.decode(), [old, new], isolated)


def test_compat_json_is_reproducible(isolated: Path) -> None:
    shutil.copy(SAMPLES / "emb_old.parquet", "old.parquet")
    shutil.copy(SAMPLES / "emb_new_incompatible.parquet", "new.parquet")
    data = run_twice(["compat", "old.parquet", "new.parquet", "--require-compatible",
                      "--max-retrieval-nfr", "0.5"])
    assert json.loads(data)["breaking_queries"], "expected some breaking queries to order"
    assert_no_stray_paths_or_times(data.decode(), [], isolated)
