"""Inputs people really have (issue 13, section 5): pipes, wide CSVs, booleans, dialects.

The pipe tests run ``gaudit`` in a subprocess with a timeout, since the failure they guard
against is a hang (``open()`` of a FIFO without a writer blocks forever). The timeout is a
guard, not a timed assertion: a correct run takes about a second.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from graceful_audit import audit_compat, audit_flips
from graceful_audit.errors import InputError
from graceful_audit.io import Reader

ROOT = Path(__file__).resolve().parents[1]
GUARD = 60  # seconds: only a hang comes near this

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX pipes")


def frames(n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """As in test_bad_inputs: 3 negative flips (x0, x4, x8)."""
    ids = [f"x{i}" for i in range(n)]
    labels = [i % 3 for i in range(n)]
    old = pd.DataFrame({"id": ids, "label": labels, "pred": labels})
    new = old.assign(pred=[(i + 1) % 3 if i % 4 == 0 else i % 3 for i in range(n)])
    return old, new


def gaudit(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "graceful_audit", *args], cwd=cwd, env=env, input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True,
        timeout=GUARD,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    old, new = frames()
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    (tmp_path / "gaudit.toml").write_text("# isolates the test from parent folders\n")
    return tmp_path


def negative_flips(proc: subprocess.CompletedProcess) -> int:
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)["metrics"]["negative_flips"]


# --------------------------------------------------------------------------- pipes


def test_fifo_without_writer_is_refused_not_waited_for(work: Path) -> None:
    os.mkfifo(work / "old.pipe")
    proc = gaudit("flips", "old.pipe", "new.parquet", cwd=work)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.startswith("gaudit: error: OLD file old.pipe: is a pipe that gave no data")
    assert "Write the data to a file first" in err and err.count("\n") == 1


def test_fifo_with_a_writer_is_read(work: Path) -> None:
    fifo = work / "old.pipe"
    os.mkfifo(fifo)
    data = (work / "old.csv").read_bytes()

    def write() -> None:
        with open(fifo, "wb") as fh:  # blocks until gaudit opens the pipe
            fh.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    proc = gaudit("flips", str(fifo), "new.parquet", "-f", "json", cwd=work)
    writer.join(GUARD)
    assert negative_flips(proc) == 3
    assert json.loads(proc.stdout)["inputs"]["old"]["path"] == str(fifo)


@pytest.mark.parametrize("name", ["old.csv", "new.parquet"])
def test_stdin_pipe_is_read(work: Path, name: str) -> None:
    """``cat preds.csv | gaudit flips /dev/stdin ...``: CSV or Parquet, read once."""
    args = (["/dev/stdin", "new.parquet"] if name == "old.csv" else ["old.csv", "/dev/stdin"])
    proc = gaudit("flips", *args, "-f", "json", cwd=work, stdin=(work / name).read_bytes())
    assert negative_flips(proc) == 3


def test_dash_is_stdin(work: Path) -> None:
    proc = gaudit("flips", "-", "new.parquet", "-f", "json", cwd=work,
                  stdin=(work / "old.csv").read_bytes())
    assert negative_flips(proc) == 3
    assert json.loads(proc.stdout)["inputs"]["old"]["path"] == "-"


def test_dash_on_a_terminal_is_refused(work: Path) -> None:
    """``gaudit flips - new.csv`` typed at a terminal: refused, not a wait for typing."""
    import pty

    leader, follower = pty.openpty()
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-m", "graceful_audit", "flips", "-",
                               "new.parquet"], cwd=work, env=env, stdin=follower,
                              capture_output=True, timeout=GUARD)
    finally:
        os.close(leader)
        os.close(follower)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "OLD file -: is a terminal" in err, err


def test_gzip_csv_through_a_pipe(work: Path) -> None:
    data = gzip.compress((work / "old.csv").read_bytes())
    proc = gaudit("flips", "/dev/stdin", "new.parquet", "-f", "json", cwd=work, stdin=data)
    assert negative_flips(proc) == 3


def test_stdin_twice_is_refused(work: Path) -> None:
    """A pipe can be read once: the second input gets a message, not a hang or a join of
    nothing."""
    proc = gaudit("flips", "/dev/stdin", "/dev/stdin", cwd=work,
                  stdin=(work / "old.csv").read_bytes())
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "NEW file /dev/stdin" in err and "read once" in err


def test_config_from_a_fifo_without_writer_is_refused(work: Path) -> None:
    os.mkfifo(work / "conf.pipe")
    proc = gaudit("flips", "old.csv", "new.parquet", "--config", "conf.pipe", cwd=work)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "--config conf.pipe" in err and "gave no data" in err


def test_config_from_stdin_is_read(work: Path) -> None:
    proc = gaudit("flips", "old.csv", "new.parquet", "--config", "/dev/stdin", cwd=work,
                  stdin=b"[flips]\nmax-nfr = 0.1\n")
    assert proc.returncode == 1, proc.stderr.decode()  # 3 of 10 flips breach max-nfr 0.1


def test_render_from_a_fifo_without_writer_is_refused(work: Path) -> None:
    os.mkfifo(work / "result.pipe")
    proc = gaudit("render", "result.pipe", cwd=work)
    assert proc.returncode == 2 and "gave no data" in proc.stderr.decode()


def test_render_from_stdin(work: Path) -> None:
    saved = gaudit("flips", "old.csv", "new.parquet", "-f", "json", cwd=work).stdout
    proc = gaudit("render", "/dev/stdin", "-f", "json", cwd=work, stdin=saved)
    assert proc.returncode == 0 and proc.stdout == saved


def test_out_of_memory_names_the_flag() -> None:
    """DuckDB running out of the memory it was given is about --memory-limit, not the file."""
    from graceful_audit.io import _read_error

    error = _read_error("old.csv", "csv", duckdb.OutOfMemoryException(
        "Out of Memory Error: failed to allocate data of size 32.0 KiB"))
    assert "ran out of memory" in str(error) and "--memory-limit" in str(error)
    assert "old.csv" not in str(error)


# --------------------------------------------------------------------------- wide CSVs


def test_csv_is_sniffed_once_then_read_with_explicit_columns(tmp_path: Path) -> None:
    """The view reads the CSV with the sniffed dialect and types spelled out, so a query
    does not sniff the file again (a 2,000-column file took 8 sniffs per audit); and the
    types are the sniffer's own, except ids (text) and booleans (text as written)."""
    path = tmp_path / "wide.csv"
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": [f"{i:03d}" for i in range(50)], "label": rng.integers(0, 3, 50),
                       "flag": rng.random(50) > 0.5, "day": ["2024-01-02"] * 50,
                       "note": ['a "quoted", text'] * 50})
    for k in range(40):
        df[f"f{k}"] = rng.normal(size=50)
    df.to_csv(path, index=False)
    con = duckdb.connect()
    table = Reader(con).open(str(path), "OLD", text_columns=["id"])
    (sql,) = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?",
                         [table.view]).fetchone()
    assert "(auto_detect = false)" in sql and '("columns" = struct_pack(' in sql
    auto = dict(con.execute(f"DESCRIBE SELECT * FROM read_csv('{path}', header = true)")
                .fetchall()[i][:2] for i in range(len(df.columns)))
    expected = {**auto, "id": "VARCHAR", "flag": "VARCHAR"}
    assert table.columns == expected
    assert table.rows == 50
    assert con.execute(f"SELECT min(id), max(note) FROM {table.view}").fetchone() == (
        "000", 'a "quoted", text')


def test_directory_of_csvs_with_different_columns(tmp_path: Path) -> None:
    """Each file is sniffed once and the files are matched by column name."""
    old, new = frames()
    (tmp_path / "old").mkdir()
    old.iloc[:4].to_csv(tmp_path / "old" / "a.csv", index=False)
    old.iloc[4:][["pred", "id", "label"]].to_csv(tmp_path / "old" / "b.csv", index=False, sep=";")
    result = audit_flips(str(tmp_path / "old"), new)
    assert result.inputs.old_rows == 10 and result.metrics.negative_flips == 3


@pytest.mark.parametrize("kind", ["semicolon", "tsv", "crlf", "trailing_blank_lines",
                                  "quoted_header", "gzip", "gzip_without_gz_name", "glob"])
def test_csv_dialects(tmp_path: Path, kind: str) -> None:
    old, new = frames()
    label, pred = "label", "pred"
    target = tmp_path / "old.csv"
    if kind == "semicolon":
        old.to_csv(target, index=False, sep=";")
    elif kind == "tsv":
        target = tmp_path / "old.tsv"
        old.to_csv(target, index=False, sep="\t")
    elif kind == "crlf":
        old.to_csv(target, index=False, lineterminator="\r\n")
    elif kind == "trailing_blank_lines":
        target.write_text(old.to_csv(index=False) + "\n\n")
    elif kind == "quoted_header":
        label, pred = "true label", "model's pred"
        old.rename(columns={"label": label, "pred": pred}).to_csv(target, index=False, quoting=1)
        new = new.rename(columns={"label": label, "pred": pred})
    elif kind == "gzip":
        target = tmp_path / "old.csv.gz"
        target.write_bytes(gzip.compress(old.to_csv(index=False).encode()))
    elif kind == "gzip_without_gz_name":
        target.write_bytes(gzip.compress(old.to_csv(index=False).encode()))
    elif kind == "glob":
        old.iloc[:5].to_csv(tmp_path / "part-0.csv", index=False)
        old.iloc[5:].to_csv(tmp_path / "part-1.csv", index=False)
        target = tmp_path / "part-*.csv"
    result = audit_flips(str(target), new, label_col=label, pred_col=pred)
    assert result.inputs.old_rows == 10 and result.metrics.negative_flips == 3


def test_glob_mixing_csv_and_parquet_is_refused(tmp_path: Path) -> None:
    old, new = frames()
    old.iloc[:5].to_csv(tmp_path / "part-0.csv", index=False)
    old.iloc[5:].to_parquet(tmp_path / "part-1.parquet", index=False)
    with pytest.raises(InputError, match="mixes Parquet and CSV"):
        audit_flips(str(tmp_path / "part-*"), new)


# --------------------------------------------------------------------------- Parquet types


@pytest.mark.parametrize("kind", ["dictionary", "categorical", "large_string", "string_view"])
def test_parquet_string_encodings(tmp_path: Path, kind: str) -> None:
    old, new = frames()
    text = [str(v) for v in old["label"]]
    if kind == "dictionary":
        cols = {"label": pa.array(text).dictionary_encode(),
                "pred": pa.array(text).dictionary_encode()}
    elif kind == "categorical":
        cols = {"label": pa.Array.from_pandas(pd.Categorical(old["label"])),
                "pred": pa.Array.from_pandas(pd.Categorical(old["pred"]))}
    else:
        t = pa.large_string() if kind == "large_string" else pa.string_view()
        cols = {"label": pa.array(text, t), "pred": pa.array(text, t)}
    pq.write_table(pa.table({"id": pa.array(list(old["id"])), **cols}), tmp_path / "old.parquet")
    result = audit_flips(str(tmp_path / "old.parquet"), new)
    assert result.metrics.negative_flips == 3
    assert [row.value for row in result.per_class] == ["0", "1", "2"]


# --------------------------------------------------------------------------- booleans


def test_boolean_identity_labels_in_compat() -> None:
    """Identity labels True/False in OLD, 1/0 in NEW: the same identities, as in flips."""
    rng = np.random.default_rng(0)
    n = 12
    emb = [rng.normal(size=4).tolist() for _ in range(n)]
    old = pd.DataFrame({"id": range(n), "label": [i % 2 == 1 for i in range(n)],
                        "embedding": emb})
    new = old.assign(label=[i % 2 for i in range(n)])
    text = old.assign(label=["TRUE" if i % 2 else "false" for i in range(n)])
    for other in (new, text):
        result = audit_compat(old, other)
        assert result.cases["old/old"].topk[1] == result.cases["new/new"].topk[1]
