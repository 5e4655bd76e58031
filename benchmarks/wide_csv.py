"""A wide CSV pair: how much of a flips audit is CSV sniffing (issue 13).

Writes a pair of CSV files (ROWS x COLUMNS feature columns, plus id, label, pred) into
``benchmarks/data/`` and prints, each in a fresh process:

* ``gaudit flips old.csv new.csv -f json`` (the whole audit),
* DuckDB's ``sniff_csv`` of one file (one sniff: dialect and the type of every column),
* ``SELECT count(*)`` over one file read with explicit columns (one plain scan).

A view over ``read_csv_auto`` sniffs the file again for every query: before the fix the
audit cost about 8 sniffs per file; now it costs one sniff per file plus a few scans.

    .venv/bin/python benchmarks/wide_csv.py [--rows 20000] [--columns 2000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def write_pair(rows: int, columns: int, folder: Path) -> tuple[Path, Path]:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    old, new = folder / f"wide_{rows}x{columns}_old.csv", folder / f"wide_{rows}x{columns}_new.csv"
    if old.exists() and new.exists():
        return old, new
    rng = np.random.default_rng(0)
    label = rng.integers(0, 5, rows)
    preds = [np.where(rng.random(rows) < 0.9, label, rng.integers(0, 5, rows)) for _ in "on"]
    header = "id,label,pred," + ",".join(f"f{i}" for i in range(columns)) + "\n"
    with old.open("w") as fo, new.open("w") as fn:
        fo.write(header)
        fn.write(header)
        for start in range(0, rows, 1000):
            feats = rng.normal(size=(min(1000, rows - start), columns)).round(3)
            for j, row in enumerate(feats):
                i = start + j
                tail = ",".join(map(str, row))
                fo.write(f"r{i},{label[i]},{preds[0][i]},{tail}\n")
                fn.write(f"r{i},{label[i]},{preds[1][i]},{tail}\n")
    return old, new


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--columns", type=int, default=2_000)
    opts = parser.parse_args()
    old, new = write_pair(opts.rows, opts.columns, HERE / "data")
    py = sys.executable
    sniff = (f"import duckdb; duckdb.sql(\"SELECT * FROM sniff_csv('{old}', header = true)\")"
             ".fetchall()")
    prompt = (f"import duckdb; c = duckdb.connect(); p = c.sql(\"SELECT Prompt FROM "
              f"sniff_csv('{old}', header = true)\").fetchone()[0].rstrip(';'); "
              "import time; t = time.perf_counter(); c.sql('SELECT count(*) ' + p).fetchall(); "
              "print(time.perf_counter() - t)")
    audit = timed([py, "-m", "graceful_audit", "flips", str(old), str(new), "-f", "json", "-q"])
    one_sniff = timed([py, "-c", sniff])
    scan = float(subprocess.run([py, "-c", prompt], check=True, capture_output=True,
                                text=True).stdout)
    print(f"{opts.rows} rows x {opts.columns} columns, two files")
    print(f"gaudit flips (whole audit): {audit:.1f} s")
    print(f"one sniff of one file:      {one_sniff:.1f} s")
    print(f"one count(*) scan:          {scan:.2f} s")
    print(f"audit / (2 sniffs):         {audit / (2 * one_sniff):.2f}")


if __name__ == "__main__":
    main()
