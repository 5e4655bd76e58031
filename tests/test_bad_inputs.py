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
    return regression_pair({2: 1e150})


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


CASES: list[Case] = [
    Case("missing_file", missing_file, 2, ["nope.csv", "no such file"]),
    Case("directory_without_data_files", directory_without_data_files, 2,
         ["preds", "no .parquet or .csv files"]),
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
    Case("config_is_a_fifo", config_is_a_fifo, 2, ["settings.toml", "named pipe"]),
    # issue 13: a value from a config file is named by file and key, not by a flag
    Case("config_memory_limit", config_value("memory-limit = 'lots'"), 2,
         ["gaudit.toml: memory-limit 'lots'"], absent=["--memory-limit"]),
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
         ["NEW new.csv 1e+200", "id '2'", "MAE and RMSE cannot be computed"]),
    Case("regression_predictions_overflow_sum", regression_predictions_overflow_sum, 2,
         ["id '4'", "id '2'", "id '3'"]),
    Case("regression_prediction_large_but_fine", regression_prediction_large_but_fine, 0,
         check=check_strict_json),
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
