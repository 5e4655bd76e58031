"""Speed and scale benchmarks of ``gaudit``, each against its reference, in one run.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py                      # flips (5M rows), compat, help
    .venv/bin/python benchmarks/run.py --scenarios flips --rows 1000000
    .venv/bin/python benchmarks/run.py --scenarios big --big-rows 200000000

Every measured command runs in its own process, spawned by a small launcher that takes
its wall time around ``posix_spawn`` .. ``os.wait4`` and its peak memory from the
``ru_maxrss`` that ``os.wait4`` returns for that very process (its RSS high-water mark).
Commands are run ``--repeat`` times, gaudit and reference interleaved, after ``--warmup``
unmeasured runs of each, and the median wall time is reported (peak memory: the largest
of the runs).

Scenarios (see benchmarks/README.md):

* ``flips``  - ``gaudit flips old.parquet new.parquet -f json`` (and ``--slice-by segment``)
  vs DuckDB's raw join-and-count SQL in a fresh ``python -c``; target ratio <= 1.5.
* ``compat`` - ``gaudit compat old.parquet new.parquet -f json`` vs pyarrow + four faiss
  exact top-10 searches (``IndexFlatIP``) in a fresh ``python -c``; target ratio <= 2.
* ``help``   - ``gaudit --help`` and ``python -X importtime``: no heavy module at start-up.
* ``big``    - (only with ``--big`` or ``--scenarios big``) 200M-row Parquet pair written in
  chunks, ``gaudit flips --memory-limit 8GB``: wall time and peak RSS.
* ``compat-big`` - (only with ``--scenarios compat-big``) a 20M x 128-d gallery pair (two
  ~10 GiB Parquet files written in chunks), ``gaudit compat --memory-limit 4GB``: wall time
  and peak RSS (``--compat-big-gallery N`` for a quicker check).

Data are generated deterministically (``numpy.random.default_rng`` seeded from 0) into
``benchmarks/data/`` (git-ignored) and reused while their parameters are unchanged. The
table is printed and written, with the machine's description, to ``benchmarks/results.md``.
When a ratio misses its target (or with ``--breakdown always``), the gaudit call is
repeated in-process with timers on its stages and on every DuckDB query, plus cProfile.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import functools
import inspect
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
PYTHON = sys.executable
HEAVY_MODULES = ("pandas", "sklearn", "scipy", "faiss", "duckdb")
INFO_MODULES = ("numpy", "pyarrow", "rich", "typer")
DEFAULT_SCENARIOS = ("flips", "compat", "help")
ALL_SCENARIOS = (*DEFAULT_SCENARIOS, "big", "compat-big", "spark", "spark-compat", "whatif")

# flips data: accuracy of the old model, P(new right | old right), P(new right | old wrong).
N_CLASSES = 100
OLD_ACCURACY = 0.85
KEEP_RIGHT = 0.97  # negative flips: 0.85 * 0.03 = 2.55 % of the rows
FIX_WRONG = 0.37  # new accuracy: 0.85 * 0.97 + 0.15 * 0.37 = 0.88
SEGMENTS = ("web", "ios", "android", "tablet", "tv", "kiosk", "email", "api", "partner", "other")
SEGMENT_WEIGHTS = (0.30, 0.18, 0.17, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02)
ROW_GROUP_ROWS = 1_000_000
GENERATOR_VERSION = 1  # bump when the generated data change, to invalidate cached files

# compat data: identity noise of the old model, extra noise of the new model (unit centres).
OLD_NOISE = 1.5
NEW_EXTRA_NOISE = 0.5


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Run:
    """One finished subprocess: wall time, peak RSS, CPU time, and its output.

    ``others_cores`` is the CPU time the rest of the machine used during the run, in cores
    (busy time of all CPUs from /proc/stat minus this process's own CPU time, over the wall
    time): 0 on an idle machine; on a 2-core machine, 1 means half of it was taken by others.
    """

    wall_s: float
    maxrss_mib: float
    returncode: int
    stdout: str
    stderr: str
    cpu_s: float = 0.0
    others_cores: float = 0.0


# The measured command is started by this small launcher, not by the benchmark process
# itself: Linux carries the RSS high-water mark of the process that forks/execs into the
# child's ``ru_maxrss``, and this process grows to gigabytes (data generation, in-process
# breakdowns). The launcher stays at ~10 MiB and times the child itself.
LAUNCHER = r"""
import json, os, sys, time
def busy():
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
report, cmd = sys.argv[1], sys.argv[2:]
b0 = busy()
t0 = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - t0
b1 = busy()
with open(report, "w") as fh:
    json.dump({"wall_s": wall, "maxrss_kib": usage.ru_maxrss,
               "returncode": os.waitstatus_to_exitcode(status),
               "cpu_s": usage.ru_utime + usage.ru_stime, "busy_s": b1 - b0}, fh)
"""


def machine_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


IDLE = {"wait_s": 0.0, "threshold": 0.3}


def wait_for_idle() -> None:
    """Wait (up to ``--idle-wait`` seconds) until others use under ``--idle-threshold`` cores."""
    deadline = time.monotonic() + IDLE["wait_s"]
    while time.monotonic() < deadline:
        b0 = machine_busy_s()
        time.sleep(0.5)
        if (machine_busy_s() - b0) / 0.5 < IDLE["threshold"]:
            return


def run_measured(cmd: Sequence[str], env: dict[str, str], check: bool = True) -> Run:
    """Run ``cmd`` in its own process; wall time and ``ru_maxrss`` of exactly that process."""
    wait_for_idle()
    with (tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err,
          tempfile.NamedTemporaryFile("r", suffix=".json") as rep):
        subprocess.run([PYTHON, "-c", LAUNCHER, rep.name, *cmd], stdout=out, stderr=err,
                       stdin=subprocess.DEVNULL, env=env, cwd=ROOT, check=True)
        facts = json.load(rep)
        out.seek(0)
        err.seek(0)
        wall = facts["wall_s"]
        others = max(0.0, facts["busy_s"] - facts["cpu_s"]) / wall if wall > 0 else 0.0
        run = Run(wall, facts["maxrss_kib"] / 1024, facts["returncode"], out.read(),
                  err.read(), facts["cpu_s"], others)
    if check and run.returncode != 0:
        raise RuntimeError(
            f"command failed with exit code {run.returncode}: {' '.join(cmd)}\n{run.stderr}"
        )
    return run


@dataclass
class Series:
    """Repeated runs of one command."""

    runs: list[Run] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def maxrss_mib(self) -> float:
        return max(r.maxrss_mib for r in self.runs)

    @property
    def others_cores(self) -> float:
        return statistics.mean(r.others_cores for r in self.runs)

    @property
    def spread(self) -> str:
        walls = sorted(r.wall_s for r in self.runs)
        return f"{walls[0]:.2f}-{walls[-1]:.2f} s" if len(walls) > 1 else ""


def measure_pair(
    gaudit_cmd: Sequence[str],
    reference_cmd: Sequence[str],
    env: dict[str, str],
    repeat: int,
    warmup: int,
) -> tuple[Series, Series]:
    """Warm both commands up, then run them ``repeat`` times, interleaved."""
    for _ in range(warmup):
        run_measured(reference_cmd, env)
        run_measured(gaudit_cmd, env)
    ours, ref = Series(), Series()
    for _ in range(repeat):
        ours.runs.append(run_measured(gaudit_cmd, env))
        ref.runs.append(run_measured(reference_cmd, env))
    return ours, ref


def spreads(ours: Series, ref: Series) -> str:
    if len(ours.runs) < 2:
        return ""
    return f"gaudit runs {ours.spread}, reference runs {ref.spread}; "


def measure(cmd: Sequence[str], env: dict[str, str], repeat: int) -> Series:
    series = Series()
    for _ in range(repeat):
        series.runs.append(run_measured(cmd, env))
    return series


def child_env(data_dir: Path) -> dict[str, str]:
    """Environment of the measured processes.

    Bytecode is cached under ``benchmarks/data/pycache`` (as an installed package has its
    ``.pyc`` files) without writing anything into the package or the virtualenv.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(data_dir / "pycache")
    env["NO_COLOR"] = "1"
    return env


def gaudit_cmd() -> list[str]:
    exe = Path(PYTHON).with_name("gaudit")
    return [str(exe)] if exe.exists() else [PYTHON, "-m", "graceful_audit"]


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    wall_s: float | None
    ref_wall_s: float | None
    target: str
    rss_mib: float | None
    ref_rss_mib: float | None
    reference: str
    verdict: str = ""
    others_cores: float | None = None  # CPU the rest of the machine used meanwhile

    @property
    def ratio(self) -> float | None:
        if self.wall_s is None or not self.ref_wall_s:
            return None
        return self.wall_s / self.ref_wall_s


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        print(f"  - {text}", flush=True)
        self.notes.append(text)


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def fmt_mib(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def markdown_table(rows: list[Row]) -> str:
    head = ("| scenario | gaudit wall (s) | reference wall (s) | ratio | target | verdict "
            "| gaudit peak RSS (MiB) | reference peak RSS (MiB) | others' CPU (cores) "
            "| reference |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        others = "-" if r.others_cores is None else f"{r.others_cores:.1f}"
        lines.append(
            f"| {r.scenario} | {fmt_s(r.wall_s)} | {fmt_s(r.ref_wall_s)} | {ratio} | {r.target} "
            f"| {r.verdict} | {fmt_mib(r.rss_mib)} | {fmt_mib(r.ref_rss_mib)} | {others} "
            f"| {r.reference} |"
        )
    return "\n".join(lines)


def verdict(ratio: float | None, limit: float) -> str:
    if ratio is None:
        return "-"
    return "met" if ratio <= limit else "**missed**"


# --------------------------------------------------------------------------- data: flips


def flips_chunk(seed: int, chunk: int, start: int, n: int) -> dict[str, np.ndarray]:
    """Rows ``start .. start + n`` of the flips pair (old and new predictions, same order).

    Each chunk has its own generator, seeded from ``(seed, chunk)``, so any chunk can be
    regenerated on its own (the big files are written without holding all rows).
    """
    rng = np.random.default_rng([seed, chunk])
    label = rng.integers(0, N_CLASSES, n, dtype=np.int32)
    old_ok = rng.random(n) < OLD_ACCURACY
    new_ok = np.where(old_ok, rng.random(n) < KEEP_RIGHT, rng.random(n) < FIX_WRONG)
    # A wrong prediction is any other class, uniformly.
    old_wrong = (label + rng.integers(1, N_CLASSES, n, dtype=np.int32)) % N_CLASSES
    new_wrong = (label + rng.integers(1, N_CLASSES, n, dtype=np.int32)) % N_CLASSES
    segment = rng.choice(len(SEGMENTS), n, p=np.array(SEGMENT_WEIGHTS)).astype(np.int32)
    return {
        "id": np.arange(start, start + n, dtype=np.int64),
        "label": label,
        "old_pred": np.where(old_ok, label, old_wrong).astype(np.int32),
        "new_pred": np.where(new_ok, label, new_wrong).astype(np.int32),
        "segment": segment,
    }


def flips_table(data: dict[str, np.ndarray], pred: str, order: np.ndarray | None = None) -> Any:
    import pyarrow as pa

    def col(name: str) -> np.ndarray:
        return data[name] if order is None else data[name][order]

    segments = pa.array(SEGMENTS, type=pa.string()).take(pa.array(col("segment")))
    return pa.table({"id": col("id"), "label": col("label"), "pred": col(pred),
                     "segment": segments})


def write_flips_pair(
    old_path: Path, new_path: Path, rows: int, chunk_rows: int, seed: int = 0
) -> dict[str, int]:
    """Write the old file in id order and the new file shuffled, ``chunk_rows`` at a time.

    The new file's shuffle is a random permutation of the chunks plus a full shuffle within
    each chunk: exact (a uniform shuffle of all rows) when there is one chunk, an
    approximation otherwise (a row stays among the ``chunk_rows`` rows of its chunk, but the
    chunks land in random order, so the join still sees ids in no useful order).
    Returns the totals of the four contingency cells, to check gaudit's answer.
    """
    import pyarrow.parquet as pq

    n_chunks = math.ceil(rows / chunk_rows)
    chunk_order = np.random.default_rng(seed).permutation(n_chunks)
    totals = {"negative_flips": 0, "positive_flips": 0}

    def chunk(c: int) -> dict[str, np.ndarray]:
        start = c * chunk_rows
        return flips_chunk(seed, c, start, min(chunk_rows, rows - start))

    with contextlib.ExitStack() as stack:
        writers: dict[str, Any] = {}
        for j in range(n_chunks):
            old = chunk(j)
            ook, nok = old["old_pred"] == old["label"], old["new_pred"] == old["label"]
            totals["negative_flips"] += int(np.count_nonzero(ook & ~nok))
            totals["positive_flips"] += int(np.count_nonzero(~ook & nok))
            c = int(chunk_order[j])
            new = old if c == j else chunk(c)
            shuffle = np.random.default_rng([seed, c, 1]).permutation(len(new["id"]))
            for name, path, table in (
                ("old", old_path, flips_table(old, "old_pred")),
                ("new", new_path, flips_table(new, "new_pred", shuffle)),
            ):
                if name not in writers:
                    writers[name] = stack.enter_context(
                        pq.ParquetWriter(str(path), table.schema, compression="snappy"))
                writers[name].write_table(table, row_group_size=ROW_GROUP_ROWS)
    return totals


def cached(folder: Path, params: dict[str, Any], make: Callable[[], dict[str, Any]],
           regenerate: bool) -> tuple[dict[str, Any], float | None]:
    """Run ``make`` unless ``folder/params.json`` says the files there are these data."""
    stamp = folder / "params.json"
    wanted = {"generator_version": GENERATOR_VERSION, **params}
    if not regenerate and stamp.exists():
        saved = json.loads(stamp.read_text())
        if saved.get("params") == wanted:
            return saved.get("facts", {}), None
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    facts = make()
    seconds = time.perf_counter() - t0
    stamp.write_text(json.dumps({"params": wanted, "facts": facts}, indent=1))
    return facts, seconds


# --------------------------------------------------------------------------- data: what-if

# Both models' logits share a per-example part (the examples are equally hard for both),
# so they agree on most rows: old accuracy ~89%, new ~93%, churn ~10%, NFR ~2.2%.
WHATIF_SHARED, WHATIF_NOISE, WHATIF_LABEL, WHATIF_NEW_GAIN = 1.0, 0.45, 3.2, 0.35
WHATIF_CHUNK = 1_000_000


def whatif_chunk(seed: int, chunk: int, start: int, n: int, classes: int
                 ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Rows ``start .. start + n``: ids, labels and both models' class probabilities
    (float32, softmax of the logits); its own generator, so a chunk can be rebuilt alone."""
    rng = np.random.default_rng([seed, 17, chunk])
    label = rng.integers(0, classes, n, dtype=np.int32)
    rows = np.arange(n)
    shared = rng.normal(0, WHATIF_SHARED, (n, classes))
    shared[rows, label] += WHATIF_LABEL
    old = shared + rng.normal(0, WHATIF_NOISE, (n, classes))
    new = shared + rng.normal(0, WHATIF_NOISE, (n, classes))
    new[rows, label] += WHATIF_NEW_GAIN

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    ids = {"id": np.arange(start, start + n, dtype=np.int64), "label": label}
    return ids, softmax(old), softmax(new)


def write_whatif_pair(old_path: Path, new_path: Path, rows: int, classes: int,
                      seed: int = 0) -> dict[str, Any]:
    """``id, label, prob_0 .. prob_{C-1}`` (old, in id order) and ``id, prob_*`` (new:
    chunks in a random order, rows shuffled within each chunk), 1M-row row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n_chunks = math.ceil(rows / WHATIF_CHUNK)
    order = np.random.default_rng([seed, 18]).permutation(n_chunks)

    def chunk(c: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        start = c * WHATIF_CHUNK
        return whatif_chunk(seed, c, start, min(WHATIF_CHUNK, rows - start), classes)

    facts = {"old_right": 0, "new_right": 0}
    with contextlib.ExitStack() as stack:
        writers: dict[str, Any] = {}
        for j in range(n_chunks):
            base, old_p, _ = chunk(j)
            facts["old_right"] += int(np.count_nonzero(old_p.argmax(1) == base["label"]))
            c = int(order[j])
            nbase, _, new_p = chunk(c)
            nlab = nbase["label"]
            facts["new_right"] += int(np.count_nonzero(new_p.argmax(1) == nlab))
            shuffle = np.random.default_rng([seed, 19, c]).permutation(len(nlab))
            tables = {
                "old": pa.table({**base, **{f"prob_{k}": old_p[:, k] for k in range(classes)}}),
                "new": pa.table({"id": nbase["id"][shuffle],
                                 **{f"prob_{k}": new_p[shuffle, k] for k in range(classes)}}),
            }
            for name, path in (("old", old_path), ("new", new_path)):
                if name not in writers:
                    writers[name] = stack.enter_context(pq.ParquetWriter(
                        str(path), tables[name].schema, compression="snappy"))
                writers[name].write_table(tables[name], row_group_size=ROW_GROUP_ROWS)
    return facts


#: In-process: where the time of ``gaudit flips --what-if`` goes (the what-if pass alone).
WHATIF_STAGES = r"""
import json, sys, time
import graceful_audit.flips as flips
spent = {}
inner = flips.blend_what_if
def timed(*args, **kwargs):
    t0 = time.perf_counter()
    try:
        return inner(*args, **kwargs)
    finally:
        spent["what_if_s"] = time.perf_counter() - t0
flips.blend_what_if = timed
t0 = time.perf_counter()
flips.audit_flips(sys.argv[1], sys.argv[2], score_cols="prob_*", what_if=True,
                  what_if_steps=int(sys.argv[3]))
spent["audit_s"] = time.perf_counter() - t0
print(json.dumps(spent))
"""


# --------------------------------------------------------------------------- data: compat


def write_compat_pair(old_path: Path, new_path: Path, n_gallery: int, n_queries: int,
                      n_ids: int, dim: int, seed: int = 0) -> dict[str, Any]:
    """Clustered embeddings: unit identity centres plus isotropic noise; new = old + noise.

    Every identity has ``n_gallery / n_ids`` gallery items; queries take identities in a
    random order (each identity once while ``n_queries <= n_ids``). Rows: queries first,
    then the gallery, in the same order in both files (gaudit joins by id anyway).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    q_lab = np.resize(rng.permutation(n_ids), n_queries)
    g_lab = rng.permutation(np.arange(n_gallery) % n_ids)
    labels = np.concatenate([q_lab, g_lab]).astype(np.int64)
    n = labels.size
    scale = np.float32(1 / math.sqrt(dim))
    old = centres[labels]
    old += np.float32(OLD_NOISE) * scale * rng.standard_normal((n, dim), dtype=np.float32)
    new = old + np.float32(NEW_EXTRA_NOISE) * scale * rng.standard_normal((n, dim),
                                                                          dtype=np.float32)
    split = pa.array(["query"] * n_queries + ["gallery"] * n_gallery, type=pa.string())
    ids = np.arange(n, dtype=np.int64)
    for path, emb in ((old_path, old), (new_path, new)):
        values = pa.array(emb.reshape(-1), type=pa.float32())
        table = pa.table({
            "id": ids, "label": labels, "split": split,
            "embedding": pa.FixedSizeListArray.from_arrays(values, dim),
        })
        pq.write_table(table, str(path), row_group_size=ROW_GROUP_ROWS // 10)
    return {"items": int(n)}


def write_compat_big_pair(old_path: Path, new_path: Path, n_gallery: int, n_queries: int,
                          n_ids: int, dim: int, chunk_rows: int, seed: int = 0
                          ) -> dict[str, Any]:
    """The compat generator's model (unit identity centres + noise, new = old + noise),
    written ``chunk_rows`` rows at a time without holding the files: ids 0 .. n-1, the
    first ``n_queries`` rows are the queries (identities in a random order), every later
    row a gallery item of identity ``row % n_ids`` (so each identity has about
    ``n_gallery / n_ids`` items), with fresh noise drawn per chunk from the chunk's own
    generator (seeded from ``(seed, 1, chunk)``). The old file is in id order; the new
    file's rows are shuffled within each chunk (so the two files are in different row
    orders). (Noise pools reused across chunks were tried: items sharing a noise row are
    nearer than an identity's items, and top-1 fell to 0 at 20M.)"""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    q_lab = np.resize(rng.permutation(n_ids), n_queries)
    n = n_queries + n_gallery
    scale = np.float32(1 / math.sqrt(dim))

    def table(ids: np.ndarray, labels: np.ndarray, emb: np.ndarray) -> Any:
        split = pa.array(np.where(ids < n_queries, "query", "gallery"), type=pa.string())
        values = pa.array(emb.reshape(-1), type=pa.float32())
        return pa.table({"id": ids, "label": labels, "split": split,
                         "embedding": pa.FixedSizeListArray.from_arrays(values, dim)})

    with contextlib.ExitStack() as stack:
        writers: dict[Path, Any] = {}
        for c in range(math.ceil(n / chunk_rows)):
            start, stop = c * chunk_rows, min(n, (c + 1) * chunk_rows)
            ids = np.arange(start, stop, dtype=np.int64)
            labels = np.where(ids < n_queries, q_lab[np.minimum(ids, n_queries - 1)],
                              (ids - n_queries) % n_ids).astype(np.int64)
            g = np.random.default_rng([seed, 1, c])
            old = g.standard_normal((ids.size, dim), dtype=np.float32)
            old *= np.float32(OLD_NOISE) * scale
            old += centres[labels]
            new = g.standard_normal((ids.size, dim), dtype=np.float32)
            new *= np.float32(NEW_EXTRA_NOISE) * scale
            new += old
            shuffle = g.permutation(ids.size)
            for path, t in ((old_path, table(ids, labels, old)),
                            (new_path, table(ids[shuffle], labels[shuffle], new[shuffle]))):
                if path not in writers:
                    writers[path] = stack.enter_context(
                        pq.ParquetWriter(str(path), t.schema, compression="snappy"))
                writers[path].write_table(t, row_group_size=ROW_GROUP_ROWS // 10)
            del old, new
    return {"items": int(n), "queries": int(n_queries), "gallery": int(n_gallery)}


# --------------------------------------------------------------------------- references

REFERENCE_FLIPS = r"""
import json, sys, time
t0 = time.perf_counter()
import duckdb
t1 = time.perf_counter()
old, new, group, memory_limit = sys.argv[1:5]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
if memory_limit:
    con.execute(f"SET memory_limit = '{memory_limit}'")
def lit(path):
    return "'" + path.replace("'", "''") + "'"
sel = "o." + group + " AS g, " if group else ""
sql = (
    "SELECT " + sel
    + "count(*) FILTER (WHERE o.pred = o.label AND n.pred <> o.label) AS negative_flips, "
    "count(*) FILTER (WHERE o.pred <> o.label AND n.pred = o.label) AS positive_flips, "
    "count(*) FILTER (WHERE o.pred = o.label AND n.pred = o.label) AS both_right, "
    "count(*) FILTER (WHERE o.pred <> o.label AND n.pred <> o.label) AS both_wrong "
    f"FROM read_parquet({lit(old)}) o JOIN read_parquet({lit(new)}) n USING (id)"
    + (" GROUP BY ALL" if group else "")
)
rows = con.execute(sql).fetchall()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "query_s": t2 - t1, "rows": rows}))
"""

REFERENCE_COMPAT = r"""
import json, sys, time
t0 = time.perf_counter()
import faiss
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
t1 = time.perf_counter()
def load(path):
    t = pq.read_table(path, columns=["label", "split", "embedding"])
    emb = t.column("embedding").combine_chunks()
    x = np.ascontiguousarray(emb.flatten().to_numpy().reshape(len(emb), -1), dtype=np.float32)
    faiss.normalize_L2(x)
    q = pc.equal(t.column("split"), "query").to_numpy(zero_copy_only=False)
    y = t.column("label").to_numpy()
    return {"q": x[q], "qy": y[q], "g": x[~q], "gy": y[~q]}
m = {"old": load(sys.argv[1]), "new": load(sys.argv[2])}
t2 = time.perf_counter()
top1, search = {}, {}
for case in ("old/old", "new/new", "new/old", "old/new"):
    qm, gm = case.split("/")
    s0 = time.perf_counter()
    index = faiss.IndexFlatIP(m[gm]["g"].shape[1])
    index.add(m[gm]["g"])
    _, ix = index.search(m[qm]["q"], 10)
    search[case] = time.perf_counter() - s0
    top1[case] = float(np.mean(m[gm]["gy"][ix[:, 0]] == m[qm]["qy"]))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "search_s": t3 - t2,
                  "search": search, "top1": top1, "threads": faiss.omp_get_max_threads()}))
"""


# --------------------------------------------------------------------------- scenarios


@dataclass
class Context:
    args: argparse.Namespace
    data_dir: Path
    env: dict[str, str]
    report: Report
    tmp: Path


def scenario_flips(ctx: Context) -> None:
    a = ctx.args
    folder = ctx.data_dir / f"flips-{a.rows}"
    old, new = folder / "old.parquet", folder / "new.parquet"
    print(f"\n## flips: {a.rows:,} rows", flush=True)
    facts, gen_s = cached(
        folder, {"rows": a.rows, "chunk_rows": a.rows, "seed": 0},
        lambda: write_flips_pair(old, new, a.rows, a.rows, seed=0), a.regenerate,
    )
    if gen_s is not None:
        ctx.report.note(f"flips data: generated {a.rows:,} rows in {gen_s:.1f} s")
    ctx.report.note(f"flips files: old {old.stat().st_size / 2**20:.0f} MiB, new (shuffled) "
                    f"{new.stat().st_size / 2**20:.0f} MiB")

    startup = measure([PYTHON, "-c", "import duckdb"], ctx.env, a.repeat)
    gaudit_floor = measure([PYTHON, "-c", "import graceful_audit.cli, graceful_audit.flips, "
                            "graceful_audit.report.json, duckdb"], ctx.env, a.repeat)
    out = ctx.tmp / "flips.json"
    variants = [("flips", [], ""), ("flips --slice-by segment", ["--slice-by", "segment"],
                                    "segment")]
    ratios = []
    for name, extra, group in variants:
        cmd = [*gaudit_cmd(), "flips", str(old), str(new), *extra, "-f", "json",
               "-o", str(out), "-q"]
        ref_cmd = [PYTHON, "-c", REFERENCE_FLIPS, str(old), str(new), group, ""]
        ours, ref = measure_pair(cmd, ref_cmd, ctx.env, a.repeat, a.warmup)
        row = Row(f"{name} ({a.rows / 1e6:g}M rows)", ours.wall_s, ref.wall_s, "<= 1.5",
                  ours.maxrss_mib, ref.maxrss_mib,
                  "DuckDB join + count SQL" + (" GROUP BY segment" if group else ""))
        row.verdict = verdict(row.ratio, 1.5)
        row.others_cores = statistics.mean([ours.others_cores, ref.others_cores])
        ctx.report.rows.append(row)
        ratios.append(row.ratio or 0.0)
        ref_out = last_json(ref.runs[-1].stdout)
        ctx.report.note(
            f"{name}: {spreads(ours, ref)}reference in-process query "
            f"{ref_out['query_s']:.2f} s, `python -c 'import duckdb'` "
            f"{startup.wall_s:.2f} s = {100 * startup.wall_s / ref.wall_s:.0f}% of the "
            f"reference wall time; gaudit start-up floor (python + graceful_audit.cli + "
            f"flips + duckdb imports) {gaudit_floor.wall_s:.2f} s"
        )
        ctx.report.note(f"{name}: {check_flips(out, ref_out['rows'], facts, group)}")
        ctx.report.note(f"{name}: gaudit {import_note(cmd[len(gaudit_cmd()):], ctx.env)}")
    if a.breakdown == "always" or (a.breakdown == "auto" and max(ratios) > 1.5):
        breakdown_flips(ctx, old, new)


def last_json(stdout: str) -> Any:
    """The JSON document a reference printed on its last line."""
    return json.loads(stdout.strip().splitlines()[-1])


def check_flips(out: Path, ref_rows: list[list[Any]], facts: dict[str, Any], group: str) -> str:
    """Compare gaudit's JSON with the reference's counts (and the generator's)."""
    doc = json.loads(out.read_text())
    m = doc["metrics"]
    if group:
        ref = {r[0]: r[1] for r in ref_rows}
        ours = {s["value"]: s["negative_flips"] for s in doc["slices"][group]}
        same = ours == ref
        what = f"negative flips per {group} value"
    else:
        nf, pf = ref_rows[0][0], ref_rows[0][1]
        same = (m["negative_flips"], m["positive_flips"]) == (nf, pf)
        what = f"negative flips {m['negative_flips']:,}, positive flips {m['positive_flips']:,}"
    gen = (m["negative_flips"], m["positive_flips"]) == (
        facts.get("negative_flips"), facts.get("positive_flips"))
    return (f"check: {what}; {'same as' if same else 'DIFFERENT FROM'} the reference, "
            f"{'same as' if gen else 'DIFFERENT FROM'} the generator; old error "
            f"{m['old_error_rate']:.4f}, new error {m['new_error_rate']:.4f}")


def scenario_compat(ctx: Context) -> None:
    a = ctx.args
    tag = f"compat-{a.gallery}-{a.queries}-{a.identities}-{a.dim}"
    folder = ctx.data_dir / tag
    old, new = folder / "old.parquet", folder / "new.parquet"
    print(f"\n## compat: {a.queries:,} queries x {a.gallery:,} gallery, {a.dim}-d", flush=True)
    params = {"gallery": a.gallery, "queries": a.queries, "ids": a.identities, "dim": a.dim,
              "old_noise": OLD_NOISE, "new_noise": NEW_EXTRA_NOISE, "seed": 0}
    _, gen_s = cached(
        folder, params,
        lambda: write_compat_pair(old, new, a.gallery, a.queries, a.identities, a.dim),
        a.regenerate,
    )
    if gen_s is not None:
        ctx.report.note(f"compat data: generated in {gen_s:.1f} s")
    startup = measure([PYTHON, "-c", "import faiss, numpy, pyarrow.parquet"], ctx.env, a.repeat)
    out = ctx.tmp / "compat.json"
    cmd = [*gaudit_cmd(), "compat", str(old), str(new), "-f", "json", "-o", str(out), "-q"]
    ref_cmd = [PYTHON, "-c", REFERENCE_COMPAT, str(old), str(new)]
    ours, ref = measure_pair(cmd, ref_cmd, ctx.env, a.repeat, a.warmup)
    row = Row(f"compat ({a.queries:,} q x {a.gallery / 1000:g}k gallery, {a.dim}-d)",
              ours.wall_s, ref.wall_s, "<= 2", ours.maxrss_mib, ref.maxrss_mib,
              "pyarrow read + 4 faiss IndexFlatIP top-10 searches")
    row.verdict = verdict(row.ratio, 2.0)
    row.others_cores = statistics.mean([ours.others_cores, ref.others_cores])
    ctx.report.rows.append(row)
    ref_out = last_json(ref.runs[-1].stdout)
    per_case = ", ".join(f"{k} {v:.2f}" for k, v in ref_out["search"].items())
    ctx.report.note(
        f"compat: {spreads(ours, ref)}reference: imports "
        f"{ref_out['import_s']:.2f} s, read {ref_out['read_s']:.2f} s, 4 searches "
        f"{ref_out['search_s']:.2f} s ({per_case}), faiss threads "
        f"{ref_out['threads']}; `python -c 'import faiss, numpy, pyarrow.parquet'` "
        f"{startup.wall_s:.2f} s = "
        f"{100 * startup.wall_s / ref.wall_s:.0f}% of the reference wall time"
    )
    doc = json.loads(out.read_text())
    ctx.report.note("compat: check: top-1 gaudit vs faiss: " + ", ".join(
        f"{case} {doc['cases'][case]['top1']:.4f} vs {t:.4f}"
        for case, t in ref_out["top1"].items()
    ) + f"; mAP old/old {doc['cases']['old/old']['map']:.4f}, new/old "
        f"{doc['cases']['new/old']['map']:.4f}")
    ctx.report.note(f"compat: gaudit {import_note(cmd[len(gaudit_cmd()):], ctx.env)}")
    if a.breakdown == "always" or (a.breakdown == "auto" and (row.ratio or 0) > 2.0):
        breakdown_compat(ctx, old, new)


def imported_modules(stderr: str) -> dict[str, int]:
    """Parse ``-X importtime`` output: top-level package -> cumulative microseconds."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if m:
            top = m.group(4).split(".")[0]
            found[top] = max(found.get(top, 0), int(m.group(2)))
    return found


def import_note(gaudit_args: Sequence[str], env: dict[str, str]) -> str:
    """Which heavy modules ``gaudit ARGS`` imports, and how long imports take (-X importtime)."""
    cmd = [PYTHON, "-X", "importtime", "-m", "graceful_audit", *gaudit_args]
    stderr = run_measured(cmd, env).stderr
    total_us = sum(
        int(m.group(1)) for m in re.finditer(r"^import time:\s+\d+\s+\|\s+(\d+)\s+\| \S",
                                             stderr, flags=re.M)
    )
    mods = imported_modules(stderr)
    big = sorted(((us, m) for m, us in mods.items() if us >= 20_000), reverse=True)
    heavy = [m for m in (*HEAVY_MODULES, "numpy", "pyarrow") if m in mods]
    return (f"imports {total_us / 1e6:.2f} s in all; heavy modules: "
            f"{', '.join(heavy) or 'none'}; slowest packages: "
            + ", ".join(f"{m} {us / 1000:.0f} ms" for us, m in big[:6]))


def scenario_help(ctx: Context) -> None:
    a = ctx.args
    print("\n## help: start-up", flush=True)
    cmd = [*gaudit_cmd(), "--help"]
    run_measured(cmd, ctx.env)  # warm the bytecode cache
    ours = measure(cmd, ctx.env, max(a.repeat, 5))
    ref = measure([PYTHON, "-c", "pass"], ctx.env, max(a.repeat, 5))
    version = measure([*gaudit_cmd(), "--version"], ctx.env, max(a.repeat, 5))
    heavy_by_probe: dict[str, list[str]] = {}
    cli_import_ms = 0.0
    info: dict[str, int] = {}
    for probe, pcmd in (
        ("import graceful_audit.cli", [PYTHON, "-X", "importtime", "-c",
                                       "import graceful_audit.cli"]),
        ("gaudit --help", [PYTHON, "-X", "importtime", "-m", "graceful_audit", "--help"]),
        ("gaudit --version", [PYTHON, "-X", "importtime", "-m", "graceful_audit",
                              "--version"]),
    ):
        mods = imported_modules(run_measured(pcmd, ctx.env).stderr)
        heavy_by_probe[probe] = [m for m in HEAVY_MODULES if m in mods]
        if probe == "import graceful_audit.cli":
            cli_import_ms = mods.get("graceful_audit", 0) / 1000
            info = {m: mods[m] for m in INFO_MODULES if m in mods}
    clean = not any(heavy_by_probe.values())
    row = Row("gaudit --help", ours.wall_s, ref.wall_s, "no heavy import",
              ours.maxrss_mib, ref.maxrss_mib, "`python -c pass`",
              "met" if clean else "**missed**", ours.others_cores)
    ctx.report.rows.append(row)
    ctx.report.note(f"help: `gaudit --version` {version.wall_s:.2f} s; `import "
                    f"graceful_audit.cli` {cli_import_ms:.0f} ms cumulative (-X importtime)")
    for probe, heavy in heavy_by_probe.items():
        ctx.report.note(f"help: heavy modules imported by `{probe}`: "
                        f"{', '.join(heavy) if heavy else 'none'} (checked: "
                        f"{', '.join(HEAVY_MODULES)})")
    ctx.report.note("help: other modules at `import graceful_audit.cli`: " + (", ".join(
        f"{m} {us / 1000:.0f} ms" for m, us in info.items()) or "none of " + ", ".join(
        INFO_MODULES)))


def scenario_big(ctx: Context) -> None:
    a = ctx.args
    folder = ctx.data_dir / f"big-{a.big_rows}"
    old, new = folder / "old.parquet", folder / "new.parquet"
    print(f"\n## big: {a.big_rows:,} rows, --memory-limit {a.memory_limit}", flush=True)
    need = 2 * a.big_rows * 12  # about 11 bytes per row per file (snappy), with margin
    free = shutil.disk_usage(ctx.data_dir).free
    if free < need + 2 * 2**30:
        raise SystemExit(f"big: needs about {need / 2**30:.0f} GiB free in {ctx.data_dir}, "
                         f"{free / 2**30:.0f} GiB available")
    try:
        facts, gen_s = cached(
            folder, {"rows": a.big_rows, "chunk_rows": a.chunk_rows, "seed": 0},
            lambda: write_flips_pair(old, new, a.big_rows, a.chunk_rows, seed=0),
            a.regenerate,
        )
        size = (old.stat().st_size + new.stat().st_size) / 2**30
        ctx.report.note(
            f"big: {a.big_rows:,} rows per file, {size:.1f} GiB for the pair"
            + (f", generated in {gen_s:.0f} s" if gen_s is not None else "")
            + f" in chunks of {a.chunk_rows:,} rows (new file: chunk order permuted, rows "
            "shuffled within each chunk)"
        )
        out = ctx.tmp / "big.json"
        ours = run_measured([*gaudit_cmd(), "flips", str(old), str(new), "--memory-limit",
                             a.memory_limit, "-f", "json", "-o", str(out), "-q"], ctx.env)
        ref = run_measured([PYTHON, "-c", REFERENCE_FLIPS, str(old), str(new), "",
                            a.memory_limit], ctx.env)
        row = Row(f"big flips ({a.big_rows / 1e6:g}M rows, --memory-limit {a.memory_limit})",
                  ours.wall_s, ref.wall_s, "completes", ours.maxrss_mib, ref.maxrss_mib,
                  f"DuckDB join + count SQL, memory_limit {a.memory_limit}", "met",
                  statistics.mean([ours.others_cores, ref.others_cores]))
        ctx.report.rows.append(row)
        ref_out = last_json(ref.stdout)
        ctx.report.note("big: one run each; " + check_flips(out, ref_out["rows"], facts, ""))
    finally:
        if not a.keep_big and folder.exists():
            shutil.rmtree(folder)
            ctx.report.note(f"big: deleted {folder.relative_to(ROOT)} (use --keep-big to keep)")


def scenario_compat_big(ctx: Context) -> None:
    """``gaudit compat --memory-limit 4GB`` on a gallery far larger than the limit (the
    gallery is streamed, each file read in its own row order): wall time and peak RSS."""
    a = ctx.args
    n_gallery, n_queries, dim = a.compat_big_gallery, a.compat_big_queries, a.dim
    n_ids = max(1, n_gallery // 50)
    folder = ctx.data_dir / f"compat-big-{n_gallery}-{n_queries}-{dim}"
    old, new = folder / "old.parquet", folder / "new.parquet"
    limit = a.compat_big_memory_limit
    print(f"\n## compat-big: {n_queries:,} queries x {n_gallery:,} gallery, {dim}-d, "
          f"--memory-limit {limit}", flush=True)
    need = 2 * (n_gallery + n_queries) * (4 * dim + 40)
    free = shutil.disk_usage(ctx.data_dir).free
    if not (folder / "params.json").exists() and free < need + 2 * 2**30:
        raise SystemExit(f"compat-big: needs about {need / 2**30:.0f} GiB free in "
                         f"{ctx.data_dir}, {free / 2**30:.0f} GiB available")
    try:
        facts, gen_s = cached(
            folder, {"gallery": n_gallery, "queries": n_queries, "ids": n_ids, "dim": dim,
                     "chunk_rows": a.compat_big_chunk_rows, "old_noise": OLD_NOISE,
                     "generator": "fresh noise per chunk",
                     "new_noise": NEW_EXTRA_NOISE, "seed": 0},
            lambda: write_compat_big_pair(old, new, n_gallery, n_queries, n_ids, dim,
                                          a.compat_big_chunk_rows),
            a.regenerate,
        )
        size = (old.stat().st_size + new.stat().st_size) / 2**30
        ctx.report.note(
            f"compat-big: {n_gallery:,} gallery items + {n_queries:,} queries per file "
            f"({n_ids:,} identities), {dim}-d float32, {size:.1f} GiB for the pair"
            + (f", generated in {gen_s:.0f} s" if gen_s is not None else "")
            + f" in chunks of {a.compat_big_chunk_rows:,} rows (new file: rows shuffled "
            "within each chunk)")
        out = ctx.tmp / "compat-big.json"
        load = load_note()
        ours = run_measured([*gaudit_cmd(), "compat", str(old), str(new), "--memory-limit",
                             limit, "-f", "json", "-o", str(out), "-q"], ctx.env, check=False)
        if ours.returncode not in (0, 1):
            raise RuntimeError(f"compat-big: gaudit failed ({ours.returncode}):\n"
                               f"{ours.stderr[-3000:]}")
        row = Row(f"big compat ({n_queries:,} q x {n_gallery / 1e6:g}M gallery, {dim}-d, "
                  f"--memory-limit {limit})", ours.wall_s, None, "completes",
                  ours.maxrss_mib, None, "none (one run; peak RSS against the limit)", "met",
                  ours.others_cores)
        ctx.report.rows.append(row)
        doc = json.loads(out.read_text())
        ok = doc["queries"] == facts["queries"] and doc["inputs"]["gallery"] == facts["gallery"]
        ctx.report.note(
            f"compat-big: one run, load average before {load}; peak RSS "
            f"{ours.maxrss_mib:,.0f} MiB for --memory-limit {limit}; check: {doc['queries']:,} "
            f"queries and {doc['inputs']['gallery']:,} gallery items as generated: {ok}; "
            "top-1 " + ", ".join(f"{c} {doc['cases'][c]['top1']:.4f}" for c in doc["cases"]))
        if a.compat_big_check:
            ref_out = ctx.tmp / "compat-big-memory.json"
            ref = run_measured([*gaudit_cmd(), "compat", str(old), str(new), "-f", "json",
                                "-o", str(ref_out), "-q"], ctx.env, check=False)
            same = json.loads(ref_out.read_text()) == doc
            ctx.report.note(
                f"compat-big: check: the same audit in memory (no --memory-limit: "
                f"{ref.wall_s:.0f} s, peak RSS {ref.maxrss_mib:,.0f} MiB) gives the same JSON: "
                f"{same}")
    finally:
        if not a.keep_big and folder.exists():
            shutil.rmtree(folder)
            ctx.report.note(f"compat-big: deleted {folder.name} "
                            "(use --keep-big to keep)")


# --------------------------------------------------------------------------- breakdowns


@dataclass
class Stage:
    label: str
    depth: int
    seconds: float = 0.0
    calls: int = 0


@dataclass
class Query:
    stage: str
    sql: str
    seconds: float = 0.0


class Timers:
    """Inclusive timers on patched functions and on every DuckDB query (main thread only)."""

    def __init__(self) -> None:
        self.stages: dict[str, Stage] = {}
        self.queries: list[Query] = []
        self.stack: list[str] = []
        self.missing: list[str] = []
        self.workers: dict[str, list[float]] = {}  # label -> [thread-seconds, calls]
        self._lock = threading.Lock()
        self._restore: list[tuple[Any, str, Any]] = []

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[None]:
        st = self.stages.setdefault(label, Stage(label, len(self.stack)))
        self.stack.append(label)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            st.seconds += time.perf_counter() - t0
            st.calls += 1
            self.stack.pop()

    def wrap(self, owner: Any, name: str, label: str) -> None:
        """Time every call of ``owner.name`` (function, method, static or class method)."""
        try:
            raw = inspect.getattr_static(owner, name)
        except AttributeError:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return
        func = getattr(owner, name)
        timers = self

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with timers.stage(label):
                return func(*args, **kwargs)

        if isinstance(raw, staticmethod):
            new: Any = staticmethod(timed)
        elif isinstance(raw, classmethod):
            new = classmethod(lambda cls, *args, **kw: timed(*args, **kw))
        else:
            new = timed
        setattr(owner, name, new)
        self._restore.append((owner, name, raw))

    def wrap_worker(self, owner: Any, name: str, label: str) -> None:
        """Time ``owner.name`` when it runs in worker threads: seconds summed over threads."""
        try:
            raw = inspect.getattr_static(owner, name)
        except AttributeError:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return
        func = getattr(owner, name)
        timers = self

        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                with timers._lock:
                    acc = timers.workers.setdefault(label, [0.0, 0])
                    acc[0] += time.perf_counter() - t0
                    acc[1] += 1

        setattr(owner, name, timed)
        self._restore.append((owner, name, raw))

    def patch(self, owner: Any, name: str, value: Any) -> None:
        self._restore.append((owner, name, inspect.getattr_static(owner, name)))
        setattr(owner, name, value)

    def restore(self) -> None:
        for owner, name, raw in reversed(self._restore):
            setattr(owner, name, raw)
        self._restore.clear()

    def query(self, sql: str) -> Query:
        q = Query(self.stack[-1] if self.stack else "-", summarize_sql(sql))
        self.queries.append(q)
        return q


def summarize_sql(sql: str) -> str:
    """The final SELECT of a query (after its CTEs), on one line and shortened."""
    text = " ".join(sql.split())
    cut = text.rfind(") SELECT ")
    if cut >= 0 and text.startswith("WITH"):
        text = "... " + text[cut + 2:]
    return text if len(text) <= 140 else text[:137] + "..."


class _TimedResult:
    def __init__(self, inner: Any, entry: Query) -> None:
        self._inner, self._entry = inner, entry

    def _timed(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return getattr(self._inner, name)(*args, **kwargs)
            finally:
                self._entry.seconds += time.perf_counter() - t0
        return call

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("fetch", "to_", "arrow", "df", "pl", "record_batch")):
            return self._timed(name)
        return getattr(self._inner, name)


class _TimedConnection:
    """A DuckDB connection proxy timing ``execute`` and ``sql`` (up to the fetch)."""

    def __init__(self, con: Any, timers: Timers) -> None:
        self._con, self._timers = con, timers

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        entry = self._timers.query(sql)
        t0 = time.perf_counter()
        res = self._con.execute(sql, *args, **kwargs)
        entry.seconds += time.perf_counter() - t0
        return _TimedResult(res, entry)

    def sql(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        entry = self._timers.query(sql)
        t0 = time.perf_counter()
        rel = self._con.sql(sql, *args, **kwargs)
        entry.seconds += time.perf_counter() - t0
        return _TimedResult(rel, entry)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class _TimedNumpy:
    """Stands in for ``numpy`` inside ``graceful_audit.retrieval``: times ``np.matmul``."""

    def __init__(self, timers: Timers) -> None:
        self._timers = timers

    def matmul(self, *args: Any, **kwargs: Any) -> Any:
        with self._timers.stage("sgemm (np.matmul)"):
            return np.matmul(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


def timed_connections(timers: Timers) -> None:
    """Make every ``duckdb.connect`` in this process return a timing proxy.

    Patching the engine's entry point rather than gaudit's own connection helper keeps the
    breakdown working while the package's internals are refactored.
    """
    import duckdb

    original = duckdb.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        with timers.stage("duckdb.connect"):
            return _TimedConnection(original(*args, **kwargs), timers)

    timers.patch(duckdb, "connect", connect)


def wrap_stages(timers: Timers, specs: Sequence[tuple[str, str]]) -> None:
    """Time ``module:Qual.name`` callables; names that no longer exist are listed, not fatal.

    A function imported by name into another module must be patched there too, hence
    several specs for one function (e.g. ``check_ids`` in ``align`` and ``compat``).
    """
    import importlib

    for spec, label in specs:
        module_name, _, qualname = spec.partition(":")
        try:
            owner: Any = importlib.import_module(module_name)
            *path, name = qualname.split(".")
            for part in path:
                owner = getattr(owner, part)
            inspect.getattr_static(owner, name)
        except (ImportError, AttributeError):
            timers.missing.append(spec)
            continue
        timers.wrap(owner, name, label)


FLIPS_STAGES = (
    ("graceful_audit.io:Reader.open", "read: open view, DESCRIBE, count(*)"),
    ("graceful_audit.align:Aligner.plan", "align: validate and join plan"),
    ("graceful_audit.align:check_ids", "check_ids: null + duplicate ids"),
    ("graceful_audit.flips:count_flips", "count: the one pass over the join"),
    ("graceful_audit.align:Aligner.account", "account: validate the counted checks"),
    ("graceful_audit.flips:worst_flips", "worst flips: from the candidates (+ slices)"),
    ("graceful_audit.flips:build_result", "metrics: build_result (+ lazy imports)"),
    ("graceful_audit.engine:DuckDBEngine.close", "close engine, remove spill dir"),
)

COMPAT_STAGES = (
    ("graceful_audit.io:Reader.open", "read: open view, DESCRIBE, count(*)"),
    ("graceful_audit.compat:check_ids", "check_ids: null + duplicate ids"),
    ("graceful_audit.compat:_join", "join: DuckDB join by id -> Arrow"),
    ("graceful_audit.compat:_texts", "_texts: ids/labels to Python str"),
    ("graceful_audit.compat:_labels", "labels: agree + missing"),
    ("graceful_audit.compat:_split", "split: query/gallery"),
    ("graceful_audit.compat:_matrix", "matrix: Arrow list -> float32, checks"),
    ("graceful_audit.retrieval:prepare_gallery", "prepare_gallery: normalise (once a model)"),
    ("graceful_audit.retrieval:evaluate_case", "evaluate_case (one case)"),
    ("graceful_audit.retrieval:pair_scores", "pair_scores: the positives' scores"),
    ("graceful_audit.retrieval:count_shard", "count_shard: the tiled kernel"),
    ("graceful_audit.retrieval:_Kernel.create", "kernel setup: buckets, blanked cells"),
    ("graceful_audit.retrieval:_Kernel.finish_block", "finish_block: histograms + mates"),
    ("graceful_audit.retrieval:finish_stream", "finish_stream: ranks, AP"),
    ("graceful_audit.engine:DuckDBEngine.close", "close engine, remove spill dir"),
)


def stage_table(timers: Timers, total: float) -> str:
    lines = ["| stage (inclusive) | calls | seconds | share |", "|---|---|---|---|"]
    for st in timers.stages.values():
        pad = "&nbsp;&nbsp;" * st.depth
        lines.append(f"| {pad}{st.label} | {st.calls} | {st.seconds:.2f} "
                     f"| {100 * st.seconds / total:.0f}% |")
    for label, (seconds, calls) in timers.workers.items():
        lines.append(f"| (worker threads) {label} | {calls} | {seconds:.2f} thread-s | |")
    return "\n".join(lines)


def query_table(timers: Timers, top: int = 25) -> str:
    lines = ["| # | stage | seconds | query (final SELECT) |", "|---|---|---|---|"]
    for i, q in enumerate(timers.queries, 1):
        if i > top:
            break
        sql = q.sql.replace("|", "\\|")
        lines.append(f"| {i} | {q.stage} | {q.seconds:.3f} | `{sql}` |")
    total = sum(q.seconds for q in timers.queries)
    lines.append(f"| | **{len(timers.queries)} queries** | **{total:.2f}** | |")
    return "\n".join(lines)


def profile_table(prof: cProfile.Profile, top: int = 12) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    text = stream.getvalue()
    start = text.find("   ncalls")
    return "```\n" + text[start:].rstrip() + "\n```"


def breakdown_flips(ctx: Context, old: Path, new: Path) -> None:
    """In-process: time the stages of ``audit_flips`` and every DuckDB query it runs."""
    print("\n### flips breakdown (in-process)", flush=True)
    t0 = time.perf_counter()
    import duckdb  # noqa: F401

    import graceful_audit.flips as flips_mod
    from graceful_audit.report import Format, render
    import_s = time.perf_counter() - t0

    sections = [f"### Where the time goes: `gaudit flips` ({ctx.args.rows:,} rows, in-process)",
                "", f"Imports (duckdb + graceful_audit.flips; already cached): {import_s:.2f} s."]
    for slice_by in ((), ("segment",)):
        timers = Timers()
        timed_connections(timers)
        wrap_stages(timers, FLIPS_STAGES)
        try:
            t0 = time.perf_counter()
            with timers.stage("audit_flips (total)"):
                result = flips_mod.audit_flips(str(old), str(new), slice_by=slice_by)
            with timers.stage("render JSON + write"):
                (ctx.tmp / "breakdown.json").write_text(render(result, Format.JSON))
            total = time.perf_counter() - t0
        finally:
            timers.restore()
        title = "flips" + (" --slice-by segment" if slice_by else "")
        sections += ["", f"**{title}**: {total:.2f} s in-process.", "", stage_table(timers, total),
                     "", query_table(timers)]
        if timers.missing:
            sections.append(f"\n(not found, not timed: {', '.join(timers.missing)})")
    prof = cProfile.Profile()
    prof.runcall(flips_mod.audit_flips, str(old), str(new))
    sections += ["", "cProfile of `audit_flips` (top by own time):", "", profile_table(prof)]
    text = "\n".join(sections)
    print(text, flush=True)
    ctx.report.sections.append(text)


def breakdown_compat(ctx: Context, old: Path, new: Path) -> None:
    """In-process: time the stages of ``audit_compat`` against sgemm and faiss on the data."""
    print("\n### compat breakdown (in-process)", flush=True)
    import faiss
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import graceful_audit.compat as compat_mod
    import graceful_audit.retrieval as retrieval_mod
    from graceful_audit.report import Format, render

    timers = Timers()
    timed_connections(timers)
    wrap_stages(timers, COMPAT_STAGES)
    for name, label in (("_count_tiles", "_count_tiles: sgemm, compare, bucket per tile"),):
        if hasattr(retrieval_mod, name):
            timers.wrap_worker(retrieval_mod, name, label)
        else:
            timers.missing.append(f"graceful_audit.retrieval:{name}")
    if getattr(retrieval_mod, "np", None) is np:
        timers.patch(retrieval_mod, "np", _TimedNumpy(timers))
    try:
        t0 = time.perf_counter()
        with timers.stage("audit_compat (total)"):
            result = compat_mod.audit_compat(str(old), str(new))
        with timers.stage("render JSON + write"):
            (ctx.tmp / "breakdown.json").write_text(render(result, Format.JSON))
        total = time.perf_counter() - t0
    finally:
        timers.restore()

    # Floors on the same data: one sgemm per case, and faiss's exact top-10 search.
    def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
        t = pq.read_table(str(path), columns=["split", "embedding"])
        emb = t.column("embedding").combine_chunks()
        x = np.ascontiguousarray(emb.flatten().to_numpy().reshape(len(emb), -1),
                                 dtype=np.float32)
        faiss.normalize_L2(x)
        q = pc.equal(t.column("split"), "query").to_numpy(zero_copy_only=False)
        return x[q], x[~q]

    m = {"old": load(old), "new": load(new)}
    sgemm = faiss_s = 0.0
    for case in compat_mod.CASES:
        qm, gm = case.split("/")
        q, g = m[qm][0], m[gm][1]
        gt = np.ascontiguousarray(g.T)
        nb = max(1, min(q.shape[0], (256 * 2**20) // (4 * g.shape[0])))
        out = np.empty((nb, g.shape[0]), dtype=np.float32)
        t0 = time.perf_counter()
        for b0 in range(0, q.shape[0], nb):
            qb = q[b0 : b0 + nb]
            np.matmul(qb, gt, out=out[: qb.shape[0]])
        sgemm += time.perf_counter() - t0
        t0 = time.perf_counter()
        index = faiss.IndexFlatIP(g.shape[1])
        index.add(g)
        index.search(q, 10)
        faiss_s += time.perf_counter() - t0
    nq, ng, d = m["old"][0].shape[0], m["old"][1].shape[0], m["old"][0].shape[1]
    gflop = 4 * 2 * nq * ng * d / 1e9
    sections = [
        f"### Where the time goes: `gaudit compat` ({nq:,} queries x {ng:,} gallery, "
        f"{d}-d, in-process)", "",
        f"`audit_compat` + JSON: {total:.2f} s. Floors on the same data, same process: 4 x "
        f"numpy sgemm in 256 MB blocks (queries x gallery^T) {sgemm:.2f} s "
        f"({gflop / sgemm:.0f} GFLOP/s); "
        f"4 x faiss IndexFlatIP top-10 {faiss_s:.2f} s ({gflop / faiss_s:.0f} GFLOP/s).", "",
        stage_table(timers, total), "", query_table(timers),
    ]
    if timers.missing:
        sections.append(f"\n(not found, not timed: {', '.join(timers.missing)})")
    prof = cProfile.Profile()
    prof.runcall(compat_mod.audit_compat, str(old), str(new))
    sections += ["", "cProfile of `audit_compat` (top by own time; worker threads not "
                 "profiled):", "", profile_table(prof)]
    text = "\n".join(sections)
    print(text, flush=True)
    ctx.report.sections.append(text)


# --------------------------------------------------------------------------- machine, main


def machine_info() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    versions = []
    for mod in ("duckdb", "faiss", "numpy", "pyarrow", "graceful_audit"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # a missing module is reported, not fatal
            versions.append(f"{mod} (not importable)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           text=True, capture_output=True).stdout.strip()
    return [
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
        f"{ram} RAM, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; {', '.join(versions)}",
        f"- code: git {commit}{' + uncommitted changes' if dirty else ''}",
    ]


def load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark gaudit against DuckDB SQL and faiss, in one run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rows", type=int, default=5_000_000, help="rows of the flips pair")
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                   help=f"comma-separated, from {', '.join(ALL_SCENARIOS)}")
    p.add_argument("--big", action="store_true", help="also run the big (out-of-core) scenario")
    p.add_argument("--big-rows", type=int, default=200_000_000, help="rows of the big pair")
    p.add_argument("--chunk-rows", type=int, default=5_000_000,
                   help="rows generated and written at a time for the big pair")
    p.add_argument("--memory-limit", default="8GB", help="gaudit --memory-limit for big")
    p.add_argument("--keep-big", action="store_true", help="keep the big files afterwards")
    p.add_argument("--compat-big-gallery", type=int, default=20_000_000,
                   help="gallery items of the compat-big pair")
    p.add_argument("--compat-big-queries", type=int, default=1_000,
                   help="queries of the compat-big pair")
    p.add_argument("--compat-big-memory-limit", default="4GB",
                   help="gaudit --memory-limit for compat-big")
    p.add_argument("--compat-big-chunk-rows", type=int, default=1_000_000,
                   help="rows written at a time for the compat-big pair")
    p.add_argument("--compat-big-check", action="store_true",
                   help="also run compat-big in memory and compare the JSON (small sizes)")
    p.add_argument("--gallery", type=int, default=100_000, help="compat gallery items")
    p.add_argument("--queries", type=int, default=2_000, help="compat queries")
    p.add_argument("--identities", type=int, default=2_000, help="compat identities")
    p.add_argument("--dim", type=int, default=128, help="compat embedding dimension")
    p.add_argument("--whatif-classes", type=int, default=10, help="classes of the whatif pair")
    p.add_argument("--whatif-steps", type=int, default=21, help="--what-if-steps for whatif")
    p.add_argument("--repeat", type=int, default=3, help="measured runs per command (median)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured runs per command first")
    p.add_argument("--breakdown", choices=("auto", "always", "never"), default="auto",
                   help="in-process stage timing: when a ratio misses its target, always, never")
    p.add_argument("--idle-wait", type=float, default=0.0,
                   help="before each measured run, wait up to this many seconds for the rest "
                   "of the machine to use less than --idle-threshold cores")
    p.add_argument("--idle-threshold", type=float, default=0.3, help="cores, see --idle-wait")
    p.add_argument("--data-dir", type=Path, default=BENCH_DIR / "data")
    p.add_argument("--results", type=Path, default=BENCH_DIR / "results.md",
                   help="markdown file for the table ('-': do not write)")
    p.add_argument("--regenerate", action="store_true", help="rewrite the data files")
    args = p.parse_args(argv)
    args.scenario_list = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if args.big and "big" not in args.scenario_list:
        args.scenario_list.append("big")
    unknown = sorted(set(args.scenario_list) - set(ALL_SCENARIOS))
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    if min(args.rows, args.big_rows, args.chunk_rows, args.repeat) < 1 or args.warmup < 0:
        p.error("--rows, --big-rows, --chunk-rows and --repeat must be >= 1, --warmup >= 0")
    return args


def scenario_spark(ctx: Context) -> None:
    """``gaudit flips --engine spark`` (a local Spark Connect session) against the default
    DuckDB engine on the same files: what the local Spark costs, start-up included."""
    a = ctx.args
    folder = ctx.data_dir / f"flips-{a.rows}"
    old, new = folder / "old.parquet", folder / "new.parquet"
    print(f"\n## spark: {a.rows:,} rows", flush=True)
    cached(folder, {"rows": a.rows, "chunk_rows": a.rows, "seed": 0},
           lambda: write_flips_pair(old, new, a.rows, a.rows, seed=0), a.regenerate)
    out = ctx.tmp / "spark.json"
    env = {**ctx.env, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [*gaudit_cmd(), "flips", str(old), str(new), "--engine", "spark", "-f", "json",
           "-o", str(out), "-q"]
    ref_cmd = [*gaudit_cmd(), "flips", str(old), str(new), "-f", "json", "-o",
               str(ctx.tmp / "duck.json"), "-q"]
    ours, ref = measure_pair(cmd, ref_cmd, env, a.repeat, a.warmup)
    row = Row(f"flips --engine spark, local session ({a.rows / 1e6:g}M rows)", ours.wall_s,
              ref.wall_s, "reported", ours.maxrss_mib, ref.maxrss_mib,
              "gaudit flips on the default DuckDB engine")
    row.verdict = "reported"
    row.others_cores = statistics.mean([ours.others_cores, ref.others_cores])
    ctx.report.rows.append(row)
    spark_doc = json.loads(out.read_text())
    duck_doc = json.loads((ctx.tmp / "duck.json").read_text())
    same = {k: v for k, v in spark_doc.items() if k != "engine"} == {
        k: v for k, v in duck_doc.items() if k != "engine"}
    ctx.report.note(f"spark: {spreads(ours, ref)}same JSON as DuckDB except `engine`: {same}; "
                    "peak RSS is the Python client's (the local Spark JVM is a child process)")


def scenario_spark_compat(ctx: Context) -> None:
    """``gaudit compat --engine spark`` (a local Spark Connect session; the search in Spark
    tasks) against the default engine on the compat scenario's files, start-up included."""
    a = ctx.args
    tag = f"compat-{a.gallery}-{a.queries}-{a.identities}-{a.dim}"
    folder = ctx.data_dir / tag
    old, new = folder / "old.parquet", folder / "new.parquet"
    print(f"\n## spark-compat: {a.queries:,} queries x {a.gallery:,} gallery, {a.dim}-d",
          flush=True)
    params = {"gallery": a.gallery, "queries": a.queries, "ids": a.identities, "dim": a.dim,
              "old_noise": OLD_NOISE, "new_noise": NEW_EXTRA_NOISE, "seed": 0}
    cached(folder, params,
           lambda: write_compat_pair(old, new, a.gallery, a.queries, a.identities, a.dim),
           a.regenerate)
    out, duck = ctx.tmp / "spark-compat.json", ctx.tmp / "duck-compat.json"
    env = {**ctx.env, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [*gaudit_cmd(), "compat", str(old), str(new), "--engine", "spark", "-f", "json",
           "-o", str(out), "-q"]
    ref_cmd = [*gaudit_cmd(), "compat", str(old), str(new), "-f", "json", "-o", str(duck),
               "-q"]
    ours, ref = measure_pair(cmd, ref_cmd, env, a.repeat, a.warmup)
    row = Row(f"compat --engine spark, local session ({a.queries:,} q x "
              f"{a.gallery / 1000:g}k gallery)", ours.wall_s, ref.wall_s, "reported",
              ours.maxrss_mib, ref.maxrss_mib, "gaudit compat on the default engine")
    row.verdict = "reported"
    row.others_cores = statistics.mean([ours.others_cores, ref.others_cores])
    ctx.report.rows.append(row)
    spark_doc = json.loads(out.read_text())
    same = {k: v for k, v in spark_doc.items() if k != "engine"} == json.loads(
        duck.read_text())
    ctx.report.note(f"spark-compat: {spreads(ours, ref)}same JSON as the default engine "
                    f"except `engine`: {same}; peak RSS is the Python client's (the local "
                    "Spark JVM and its Python workers are child processes)")


def scenario_whatif(ctx: Context) -> None:
    """``gaudit flips --what-if`` against the same audit without it, on score files:
    what blending K alphas costs on top of the plain audit."""
    a = ctx.args
    classes, steps = a.whatif_classes, a.whatif_steps
    folder = ctx.data_dir / f"whatif-{a.rows}-{classes}"
    old, new = folder / "old.parquet", folder / "new.parquet"
    print(f"\n## whatif: {a.rows:,} rows x {classes} classes x {steps} steps", flush=True)
    facts, gen_s = cached(
        folder, {"rows": a.rows, "classes": classes, "seed": 0,
                 "model": [WHATIF_SHARED, WHATIF_NOISE, WHATIF_LABEL, WHATIF_NEW_GAIN]},
        lambda: write_whatif_pair(old, new, a.rows, classes), a.regenerate,
    )
    if gen_s is not None:
        ctx.report.note(f"whatif data: generated {a.rows:,} rows in {gen_s:.1f} s")
    ctx.report.note(f"whatif files: old {old.stat().st_size / 2**20:.0f} MiB, new (shuffled) "
                    f"{new.stat().st_size / 2**20:.0f} MiB ({classes} float32 scores a row)")
    out, plain_out = ctx.tmp / "whatif.json", ctx.tmp / "plain.json"
    base = [*gaudit_cmd(), "flips", str(old), str(new), "--score-cols", "prob_*", "-f", "json",
            "-q"]
    cmd = [*base, "--what-if", "--what-if-steps", str(steps), "-o", str(out)]
    ref_cmd = [*base, "-o", str(plain_out)]
    ours, ref = measure_pair(cmd, ref_cmd, ctx.env, a.repeat, a.warmup)
    row = Row(f"flips --what-if ({a.rows / 1e6:g}M rows x {classes} classes x {steps} steps)",
              ours.wall_s, ref.wall_s, "<= 3", ours.maxrss_mib, ref.maxrss_mib,
              "the same `gaudit flips --score-cols 'prob_*'` without --what-if")
    row.verdict = verdict(row.ratio, 3.0)
    row.others_cores = statistics.mean([ours.others_cores, ref.others_cores])
    ctx.report.rows.append(row)
    doc, plain = json.loads(out.read_text()), json.loads(plain_out.read_text())
    first, last = doc["what_if"]["points"][0], doc["what_if"]["points"][-1]
    m = doc["metrics"]
    same = {k: v for k, v in doc.items() if k != "what_if"} == plain
    ok = (first["error_rate"] == m["new_error_rate"] and last["negative_flips"] == 0
          and last["error_rate"] == m["old_error_rate"]
          and round((1 - m["old_error_rate"]) * m["n"]) == facts.get("old_right")
          and round((1 - m["new_error_rate"]) * m["n"]) == facts.get("new_right"))
    ctx.report.note(
        f"whatif: {spreads(ours, ref)}check: JSON without `what_if` equal to the plain "
        f"audit's: {same}; alpha = 0 is the new model and alpha = 1 the old one, both as the "
        f"generator counted them: {ok} (NFR {first['negative_flip_rate']:.4f} at alpha = 0)")
    stages = run_measured([PYTHON, "-c", WHATIF_STAGES, str(old), str(new), str(steps)],
                          ctx.env)
    spent = last_json(stages.stdout)
    ctx.report.note(
        f"whatif: in-process, the what-if pass (join with both models' scores, streamed to "
        f"numpy in Arrow batches, {steps} alphas per batch) took {spent['what_if_s']:.2f} s "
        f"of the audit's {spent['audit_s']:.2f} s")


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "flips": scenario_flips,
    "compat": scenario_compat,
    "help": scenario_help,
    "big": scenario_big,
    "compat-big": scenario_compat_big,
    "spark": scenario_spark,
    "spark-compat": scenario_spark_compat,
    "whatif": scenario_whatif,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    IDLE.update(wait_s=args.idle_wait, threshold=args.idle_threshold)
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join([".venv/bin/python benchmarks/run.py", *(argv or sys.argv[1:])]).strip()
    report = Report()
    load_before = load_note()
    print(f"gaudit benchmarks: {', '.join(args.scenario_list)}; load average {load_before}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="gaudit-bench-", dir=data_dir) as tmp:
        ctx = Context(args, data_dir, child_env(data_dir), report, Path(tmp))
        for name in args.scenario_list:
            SCENARIOS[name](ctx)
    table = markdown_table(report.rows)
    print("\n" + table, flush=True)
    if str(args.results) != "-":
        parts = [
            "# gaudit benchmark results", "",
            f"Command: `{command}`", "", *machine_info(),
            f"- load average: {load_before} before, {load_note()} after; the table's "
            "\"others' CPU\" column is the CPU the rest of the machine used during the "
            "measured runs (0 = undisturbed)", "",
            f"Wall times: median of {args.repeat} runs after {args.warmup} warm-up run(s), "
            "gaudit and reference interleaved, each in a fresh process; peak RSS: the largest "
            "`ru_maxrss` (os.wait4) of those runs. Ratio = gaudit / reference.", "",
            table, "", "## Notes", "", *[f"- {n}" for n in report.notes],
        ]
        for section in report.sections:
            parts += ["", section]
        args.results.write_text("\n".join(parts) + "\n")
        print(f"\nwrote {args.results}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
