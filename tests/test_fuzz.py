"""Reader fuzzing through the command line (issue 6): whatever the files hold, ``gaudit``
answers with exit 0, 1 or 2 and one message, never an internal error (3) or a traceback.

Four generators, each bounded by ``max_examples`` so that the whole file stays well under
40 s on a 2-core CI runner (one CLI run costs 20-100 ms):

* random bytes written as ``.csv`` and as ``.parquet`` (sometimes wrapped in the Parquet
  magic bytes ``PAR1``, behind a CSV header or a byte-order mark, to get past the first
  checks);
* random CSV shapes and random Parquet shapes: a *valid* old/new pair (same ids in another
  row order, labels from one of several class sets: ints, text, ``1`` vs ``1.0`` vs ``"1"``,
  booleans, non-integral floats, text with commas and quotes; optional score and slice
  columns), then a few random mutations on each side: a cell replaced by anything (ints,
  floats, NaN, inf, text, empty, quotes, commas, None), a column renamed, dropped, added or
  nulled, a row duplicated or deleted. CSV is written quoted or naively joined, sometimes
  with a ragged row; Parquet columns are sometimes retyped (text, float, list, struct,
  binary, dictionary) and the new side is sometimes a directory of two parts, possibly of
  unrelated schemas;
* random embedding tables for ``gaudit compat``: a valid pair, then NaN, inf, zero, tiny or
  large values, ragged or missing vectors, another dimension, duplicate or missing ids,
  disagreeing labels or splits, and the three layouts (list, fixed-size list, ``emb_i``).

Starting from valid pairs matters: about half of the examples get through to the metrics
and the reports (exit 0 or 1), the rest stop at a check (exit 2); purely random tables
would all stop at "no column 'id'".

Known bugs are kept out of the generators, so that these tests do not fail at random: they
are pinned as strict xfail cases in ``tests/test_bad_inputs.py`` instead (infinite scores
with ``--format json``; embedding values or scores beyond the float32 range). When those are
fixed, widen :data:`EMB_VALUES` and :data:`FLIPS_OPTIONS` accordingly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from graceful_audit.cli import app

runner = CliRunner()

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder whose empty gaudit.toml stops the upward config search."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gaudit.toml").write_text("# no options\n")
    return tmp_path


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    """A fresh folder per example (the function-scoped tmp_path is shared by all of them)."""
    with tempfile.TemporaryDirectory(prefix="gaudit-fuzz-") as name:
        yield Path(name)


def invoke(args: Sequence[str]) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def assert_graceful(result: Result, allowed: Sequence[int] = (0, 1, 2)) -> None:
    """Exit 0/1/2 as allowed; no traceback; an exit 2 is one ``gaudit: error:`` line."""
    out, err = result.stdout, result.stderr
    detail = f"exit {result.exit_code}\nstdout: {out[:1500]}\nstderr: {err[:1500]}"
    assert result.exit_code in allowed, detail
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{result.exception!r}\n{detail}"
    )
    assert "Traceback" not in out and "Traceback" not in err, detail
    if result.exit_code == 2:
        assert err.startswith("gaudit: error: "), detail
        # one message (a column name may itself hold a line break, so do not count lines)
        assert err.count("gaudit: error") == 1 and "Usage:" not in err, detail


# --------------------------------------------------------------------------- random bytes

GOOD_CSV = "id,label,pred\n" + "".join(f"x{i},{i % 3},{i % 3}\n" for i in range(10))


@settings(FUZZ, max_examples=50)
@given(
    blob=st.binary(max_size=3000),
    wrap=st.sampled_from(["none", "par1", "csv-header", "bom"]),
    suffix=st.sampled_from([".csv", ".parquet"]),
    side=st.sampled_from(["old", "new"]),
)
def test_random_bytes(isolated: Path, blob: bytes, wrap: str, suffix: str, side: str) -> None:
    if wrap == "par1":
        blob = b"PAR1" + blob + b"PAR1"
    elif wrap == "csv-header":
        blob = b"id,label,pred\n" + blob
    elif wrap == "bom":
        blob = b"\xef\xbb\xbf" + blob
    with folder() as work:
        bad = work / f"bad{suffix}"
        bad.write_bytes(blob)
        good = work / "good.csv"
        good.write_text(GOOD_CSV)
        pair = (bad, good) if side == "old" else (good, bad)
        assert_graceful(invoke(["flips", *pair]), allowed=(0, 2))


# --------------------------------------------------------------------------- mutations

# A table is a list of (column name, values) with Python values; None is a missing value.
Columns = list[tuple[str, list[Any]]]

NAME_POOL = ["id", "label", "pred", "prediction", "y_true", "score", "prob_0", "prob_1", "ink",
             "ID", "lable", "", "id ", "emb_0", "split", "embedding"]
CLASS_SETS = [["0", "1", "2"], [0, 1, 2], ["cat", "dog"], [1, 1.0, "1", 2], [True, False],
              [0.5, 1.5], ["a,b", 'q"uote', " 1 "]]
ANY_VALUE = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "NaN", "nan", "inf", "-inf", "NULL", "None", "True", "1e3", "a,b",
                     '"1"', "x1", "0", "1.0", "\\N", "é"]),
    st.text(alphabet=st.sampled_from(list("ab,\"' ;\\é01.-\n")), max_size=6),
    st.none(),
    st.booleans(),
)


@st.composite
def mutate(draw: st.DrawFn, columns: Columns, max_mutations: int = 3) -> Columns:
    """Apply up to ``max_mutations`` random edits (none half of the time): cells, names,
    columns, rows."""
    cols = [(name, list(values)) for name, values in columns]
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, *range(1, max_mutations + 1)]))):
        n_rows = len(cols[0][1]) if cols else 0
        kind = draw(st.sampled_from(["cell", "cell", "rename", "drop", "add", "dup_row",
                                     "del_row", "null_column"]))
        j = draw(st.integers(0, len(cols) - 1)) if cols else 0
        if kind == "cell" and cols and n_rows:
            cols[j][1][draw(st.integers(0, n_rows - 1))] = draw(ANY_VALUE)
        elif kind == "rename" and cols:
            cols[j] = (draw(st.one_of(st.sampled_from(NAME_POOL), st.text(max_size=4))), cols[j][1])
        elif kind == "drop" and cols:
            del cols[j]
        elif kind == "add":
            name = draw(st.one_of(st.sampled_from(NAME_POOL), st.text(max_size=4)))
            cols.append((name, draw(st.lists(ANY_VALUE, min_size=n_rows, max_size=n_rows))))
        elif kind in ("dup_row", "del_row") and n_rows:
            i = draw(st.integers(0, n_rows - 1))
            for _name, values in cols:
                if kind == "dup_row":
                    values.append(values[i])
                else:
                    del values[i]
        elif kind == "null_column" and cols:
            cols[j] = (cols[j][0], [None] * n_rows)
    return cols


@st.composite
def flips_pair(draw: st.DrawFn) -> tuple[Columns, Columns]:
    """A valid old/new pair (same ids, same labels), then a few mutations on each side."""
    n = draw(st.integers(1, 12))
    ids: list[Any] = ([f"x{i}" for i in range(n)] if draw(st.booleans())
                      else list(range(n)))
    classes = draw(st.sampled_from(CLASS_SETS))
    labels = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
    sides = []
    for _ in ("old", "new"):
        preds = draw(st.lists(st.sampled_from(classes), min_size=n, max_size=n))
        cols: Columns = [("id", list(ids)), ("label", list(labels)), ("pred", preds)]
        if draw(st.booleans()):
            score = st.floats(0, 1)
            cols += [("score", draw(st.lists(score, min_size=n, max_size=n))),
                     ("prob_0", draw(st.lists(score, min_size=n, max_size=n))),
                     ("prob_1", draw(st.lists(score, min_size=n, max_size=n)))]
        if draw(st.booleans()):
            cols.append(("ink", draw(st.lists(st.sampled_from(["light", "dark", None, 3]),
                                              min_size=n, max_size=n))))
        order = draw(st.permutations(range(n)))  # row order must not matter
        cols = [(name, [values[i] for i in order]) for name, values in cols]
        sides.append(draw(mutate(cols)))
    return sides[0], sides[1]


FLIPS_OPTIONS = st.sampled_from([
    [], ["--allow-unmatched"], ["--max-nfr", "0.2", "--allow-unmatched"],
    ["--score-cols", "prob_*"], ["--score-cols", "score", "--allow-unmatched"],
    ["--slice-by", "ink", "--allow-unmatched"], ["--task", "regression", "--atol", "0.5"],
    ["--task", "classification", "-f", "json"], ["-f", "markdown", "--allow-unmatched"],
    ["-f", "json", "--allow-unmatched", "--min-btc", "0.5"],
    ["-f", "html", "--max-churn", "0.5"], ["-f", "junit", "--max-class-nfr", "0.5"],
])


# --------------------------------------------------------------------------- random CSV


def csv_cell(value: Any) -> str:
    return "" if value is None else str(value)


@st.composite
def csv_text(draw: st.DrawFn, columns: Columns) -> str:
    """Serialise: properly quoted, or naively joined (commas and quotes then break rows);
    sometimes with a ragged row."""
    names = [name for name, _ in columns]
    rows = [list(r) for r in zip(*(values for _, values in columns), strict=True)]
    rows = [[csv_cell(v) for v in row] for row in rows]
    # Hypothesis favours the first option of sampled_from: keep the well-formed one first.
    if rows and draw(st.sampled_from(["even"] * 9 + ["ragged"])) == "ragged":
        i = draw(st.integers(0, len(rows) - 1))
        rows[i] = rows[i][:-1] if draw(st.booleans()) else [*rows[i], "extra"]
    buf = io.StringIO()
    if draw(st.sampled_from(["quoted", "quoted", "quoted", "naive"])) == "quoted":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)
    else:
        buf.write(",".join(names) + "\n")
        buf.writelines(",".join(r) + "\n" for r in rows)
    return buf.getvalue()


@settings(FUZZ, max_examples=70)
@given(data=st.data(), pair=flips_pair(), options=FLIPS_OPTIONS)
def test_random_csv_shapes(isolated: Path, data: st.DataObject,
                           pair: tuple[Columns, Columns], options: list[str]) -> None:
    old, new = (data.draw(csv_text(side)) for side in pair)
    with folder() as work:
        (work / "old.csv").write_text(old, encoding="utf-8")
        (work / "new.csv").write_text(new, encoding="utf-8")
        assert_graceful(invoke(["flips", work / "old.csv", work / "new.csv", *options]))


# --------------------------------------------------------------------------- random Parquet

RETYPES: dict[str, Any] = {
    "string": lambda v: None if v is None else str(v),
    "float": lambda v: v if v is None or isinstance(v, float) else float(hash(str(v)) % 7),
    "list": lambda v: None if v is None else [v],
    "struct": lambda v: {"a": None if v is None else str(v)},
    "bytes": lambda v: None if v is None else str(v).encode(),
    "keep": lambda v: v,
}


def arrow_column(values: list[Any], dictionary: bool) -> pa.Array:
    """Let pyarrow infer the type; a column of mixed Python types becomes text."""
    try:
        array = pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        array = pa.array([None if v is None else str(v) for v in values], pa.string())
    if dictionary and pa.types.is_string(array.type):
        array = array.dictionary_encode()
    return array


@st.composite
def arrow_table(draw: st.DrawFn, columns: Columns) -> pa.Table:
    """Columns with their inferred type, or retyped (text, float, list, struct, binary,
    dictionary); duplicate or empty names are dropped (Arrow would allow them)."""
    arrays: dict[str, pa.Array] = {}
    for name, values in columns:
        if not name or name in arrays:
            continue
        retype = RETYPES[draw(st.sampled_from(["keep"] * 6 + list(RETYPES)))]
        arrays[name] = arrow_column([retype(v) for v in values], draw(st.booleans()))
    if not arrays:
        arrays["x"] = pa.array([1])
    return pa.table(arrays)


def write_parts(tables: Sequence[pa.Table], path: Path) -> Path:
    """A directory of Parquet parts: one table's rows split in two, or two unrelated tables
    (their schemas then differ, and are unified by name)."""
    path.mkdir()
    if len(tables) == 1:
        table = tables[0]
        step = max(1, math.ceil(table.num_rows / 2))
        tables = [table.slice(0, step), table.slice(step)]
    for i, table in enumerate(tables):
        pq.write_table(table, path / f"part-{i}.parquet")
    return path


@settings(FUZZ, max_examples=70)
@given(data=st.data(), pair=flips_pair(), other=flips_pair(),
       layout=st.sampled_from(["file", "file", "file", "split", "mixed"]), options=FLIPS_OPTIONS)
def test_random_parquet_shapes(isolated: Path, data: st.DataObject,
                               pair: tuple[Columns, Columns], other: tuple[Columns, Columns],
                               layout: str, options: list[str]) -> None:
    old, new = (data.draw(arrow_table(side)) for side in pair)
    with folder() as work:
        pq.write_table(old, work / "old.parquet")
        if layout == "file":
            pq.write_table(new, work / "new.parquet")
            b = work / "new.parquet"
        elif layout == "split":
            b = write_parts([new], work / "new")
        else:
            b = write_parts([new, data.draw(arrow_table(other[1]))], work / "new")
        assert_graceful(invoke(["flips", work / "old.parquet", b, *options]))


# --------------------------------------------------------------------------- random compat

#: 1e15 keeps squared norms of d <= 5 inside float32 (larger ones are a known bug, see above).
EMB_VALUES = st.one_of(
    st.floats(-3, 3, width=32),
    st.sampled_from([0.0, -0.0, 1.0, math.nan, math.inf, -math.inf, 1e-45, 1e15, -1e15]),
)
#: Non-zero values (hypothesis favours 0.0, which would make most vectors all zeros).
FINITE = st.builds(lambda m, sign: sign * m / 8, st.integers(1, 24), st.sampled_from([1, -1]))


@st.composite
def embedding_pair(draw: st.DrawFn) -> tuple[pa.Table, pa.Table]:
    """Same items in both files (labels repeat, so there are positives), then mutations:
    NaN/inf/zero/huge values, ragged or missing vectors, another dimension, a split column,
    duplicate ids, disagreeing or missing labels, another layout (emb_i columns, fixed size)."""
    n = draw(st.integers(2, 14))
    ids: list[Any] = [f"e{i}" for i in range(n)] if draw(st.booleans()) else list(range(n))
    label_pool = draw(st.sampled_from([[0, 1, 2], ["a", "b"], [0, 1, "1"]]))
    labels = draw(st.lists(st.sampled_from(label_pool), min_size=n, max_size=n))
    split = draw(st.one_of(st.none(), st.lists(st.sampled_from(["query", "gallery"]),
                                                min_size=n, max_size=n)))
    tables = []
    dim = draw(st.integers(1, 5))
    for _side in ("old", "new"):
        d = draw(st.sampled_from([dim] * 4 + [1, 2, 3, 4, 5]))
        vectors: list[Any] = draw(st.lists(st.lists(FINITE, min_size=d, max_size=d),
                                           min_size=n, max_size=n))
        side_ids, side_labels = list(ids), list(labels)
        side_split = list(split) if split else None
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            i = draw(st.integers(0, n - 1))
            kind = draw(st.sampled_from(["value", "value", "vector", "label", "id", "split"]))
            if kind == "value" and vectors[i]:
                vectors[i][draw(st.integers(0, len(vectors[i]) - 1))] = draw(EMB_VALUES)
            elif kind == "vector":
                vectors[i] = draw(st.one_of(st.none(), st.just([0.0] * d),
                                            st.lists(FINITE, max_size=6)))
            elif kind == "label":
                side_labels[i] = draw(st.sampled_from([None, "z", 7]))
            elif kind == "id":
                side_ids[i] = draw(st.sampled_from([ids[0], None, "e99"]))
            elif kind == "split" and side_split:
                side_split[i] = draw(st.sampled_from(["Query ", "other", None, "gallery"]))
        columns: dict[str, Any] = {"id": side_ids, "label": side_labels}
        layout = draw(st.sampled_from(["list", "list", "fixed", "columns"]))  # "list" first
        same = all(v is not None and len(v) == d for v in vectors)
        if layout == "columns" and same:
            for j in range(d):
                columns[f"emb_{j}"] = pa.array([v[j] for v in vectors], pa.float64())
        elif layout == "fixed" and same:
            columns["embedding"] = pa.array(vectors, pa.list_(pa.float32(), d))
        else:
            columns["embedding"] = pa.array(vectors, pa.list_(pa.float64()))
        if side_split is not None:
            columns["split"] = side_split
        tables.append(pa.table({k: arrow_column(v, False) if isinstance(v, list) else v
                                for k, v in columns.items()}))
    return tables[0], tables[1]


COMPAT_OPTIONS = st.sampled_from([
    [], ["--allow-unmatched"], ["--metric", "ip"], ["--metric", "l2", "--allow-unmatched"],
    ["--require-compatible", "--allow-unmatched"], ["--criterion", "map", "-f", "json"],
    ["--max-retrieval-nfr", "0.5", "--min-update-gain", "0", "--allow-unmatched"],
    ["-f", "markdown", "--min-cross-top1", "0.5"], ["-f", "html"], ["-f", "junit"],
])


@settings(FUZZ, max_examples=60)
@given(pair=embedding_pair(), options=COMPAT_OPTIONS)
def test_random_embedding_tables(isolated: Path, pair: tuple[pa.Table, pa.Table],
                                 options: list[str]) -> None:
    with folder() as work:
        pq.write_table(pair[0], work / "old.parquet")
        pq.write_table(pair[1], work / "new.parquet")
        assert_graceful(invoke(["compat", work / "old.parquet", work / "new.parquet",
                                *options]))
