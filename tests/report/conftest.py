"""Fixtures for the report tests: small, deterministic audits built from DataFrames.

Golden files live in ``tests/report/golden/``. After an intended change of a report,
regenerate them with one command, from the project root::

    GAUDIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report

then review the diff of ``tests/report/golden/`` like any other change.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from graceful_audit import audit_compat, audit_flips

GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("GAUDIT_UPDATE_GOLDEN"))

CLASSES = ("cat", "dog", "bird")
NEGATIVE = {1, 5, 10, 22}  # old right, new wrong
POSITIVE = {3, 7, 14, 19, 30, 33}  # old wrong, new right
BOTH_WRONG = {40, 41}

HOSTILE_IDS = (
    "<script>alert(1)</script>",
    "a|b",
    "`rm -rf /`",
    "line\nbreak\r\nand\ttab",
    "x" * 5000,
    "*bold* _it_ [link](javascript:alert(1)) ![img](x.png)",
    "&amp; &lt; \" ' @admin https://evil.example",
)


def _scores(i: int, pred: str) -> dict[str, float]:
    """Per-class probabilities peaking at ``pred``, varied so the confidences differ."""
    top = 0.40 + (i * 7 % 11) / 20
    rest = (1.0 - top) / 2
    return {f"prob_{c}": round(top if c == pred else rest, 4) for c in CLASSES}


def golden_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """48 examples of three classes on two devices: 4 negative, 6 positive flips."""
    old_rows, new_rows = [], []
    for i in range(48):
        label = CLASSES[i % 3]
        wrong = CLASSES[(i + 1) % 3]
        old = wrong if i in POSITIVE | BOTH_WRONG else label
        new = wrong if i in NEGATIVE | BOTH_WRONG else label
        base = {"id": f"ex-{i:03d}", "label": label,
                "device": "phone" if i % 4 < 2 else "web"}
        old_rows.append({**base, **_scores(i, old)})
        new_rows.append({**base, **_scores(i + 3, new)})
    # Joined by id, never by position: shuffle the new file deterministically.
    return pd.DataFrame(old_rows), pd.DataFrame(new_rows[::-1])


def hostile_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every hostile id is a negative flip; the classes and slices are hostile too."""
    classes = ("<script>alert(1)</script>", "a|b", "`tick`")
    ids, labels, old, new, seg = [], [], [], [], []
    for k, hostile in enumerate(HOSTILE_IDS):
        ids.append(hostile)
        labels.append(classes[k % 3])
        old.append(classes[k % 3])
        new.append(classes[(k + 1) % 3])
        seg.append("<b>|seg|</b>" if k % 2 else "$x$ \\ `y`")
    for j in range(20):  # some agreement, so the rates are not all 100%
        ids.append(f"ok-{j}")
        labels.append(classes[j % 3])
        old.append(classes[j % 3])
        new.append(classes[j % 3])
        seg.append("<b>|seg|</b>" if j % 2 else "$x$ \\ `y`")
    base = pd.DataFrame({"id": ids, "label": labels, "segment": seg})
    return base.assign(pred=old), base.assign(pred=new)


# --------------------------------------------------------------------------- compat

IDENTITIES = ("ada", "bo", "cy", "di", "eve", "fay", "gus", "hal", "ivy", "jo")
JITTER = (0, 13, -11, 19, -7, 5, -17, 2, 9, -3, 15, -14)  # degrees, cycled


def _unit(degrees: float) -> list[float]:
    return [round(math.cos(math.radians(degrees)), 4), round(math.sin(math.radians(degrees)), 4)]


def compat_tables() -> tuple[pa.Table, pa.Table]:
    """40 items of 10 identities on a circle, 2 queries + 2 gallery items each (split).

    The new model is tighter (new/new: 100% top-1) but rotated by 12 degrees, so new
    queries against the old gallery lose some identities: new/old top-1 70% < old/old 85%,
    6 of 20 queries break. Hand-made 2-d unit vectors, so every number is fixed.
    """
    ids, labels, split, old, new = [], [], [], [], []
    for k, name in enumerate(IDENTITIES):
        for m in range(4):
            i = 4 * k + m
            ids.append(f"{name}-{m}")
            labels.append(name)
            split.append("query" if m < 2 else "gallery")
            old.append(_unit(36 * k + 0.8 * JITTER[i * 5 % len(JITTER)]))
            new.append(_unit(36 * k + 12 + 0.4 * JITTER[(i * 7 + 3) % len(JITTER)]))
    base = {"id": ids, "label": labels, "split": split}
    return pa.table({**base, "embedding": old}), pa.table({**base, "embedding": new})


HOSTILE_LABELS = ("<script>alert(1)</script>", "a|b", "`tick`")


def hostile_compat_tables() -> tuple[pa.Table, pa.Table]:
    """Hostile ids and identity labels; every hostile id is a query that breaks.

    Leave-one-out over 3 identities at 120 degrees; the new model moves each hostile item
    onto the next identity, so in new/old its top-1 neighbour has the wrong (hostile) label.
    """
    ids, labels, old, new = [], [], [], []
    items = [*HOSTILE_IDS, *(f"ok-{j}" for j in range(8))]
    for i, item in enumerate(items):
        k = i % 3
        ids.append(item)
        labels.append(HOSTILE_LABELS[k])
        old.append(_unit(120 * k + JITTER[i % len(JITTER)] / 4))
        new.append(_unit(120 * ((k + 1) if i < len(HOSTILE_IDS) else k) + i))
    base = {"id": ids, "label": labels}
    return pa.table({**base, "embedding": old}), pa.table({**base, "embedding": new})


def versions_tables() -> tuple[pa.Table, pa.Table, pa.Table]:
    """Three versions of :func:`compat_tables`' items: V1 its old model, V3 its new one, and
    V2 between them, rotated by 3 degrees and tighter: V2 queries beat V1's gallery (top-1
    95% > 85%), V3 queries fail on both earlier galleries (70% on V1's, 75% on V2's)."""
    old, new = compat_tables()
    mid = []
    for k in range(len(IDENTITIES)):
        for m in range(4):
            i = 4 * k + m
            mid.append(_unit(36 * k + 3 + 0.6 * JITTER[(i * 5 + 1) % len(JITTER)]))
    v2 = old.set_column(old.schema.get_field_index("embedding"), "embedding", pa.array(mid))
    return old, v2, new


def mismatch_tables() -> tuple[pa.Table, pa.Table]:
    """Old embeddings of dimension 4, new of dimension 6: the cross cases cannot run."""
    ids, labels = ["a", "b", "c", "d"], ["x", "x", "y", "y"]
    old = [[1.0, 0, 0, 0], [1, 0.1, 0, 0], [0, 1, 0, 0], [0, 1, 0.1, 0]]
    new = [[*v, 0.0, 0.0] for v in old]
    return (pa.table({"id": ids, "label": labels, "embedding": old}),
            pa.table({"id": ids, "label": labels, "embedding": new}))


@pytest.fixture(scope="session")
def compat_result() -> Any:
    """One breached gate (require-compatible) and one held (max-retrieval-nfr 0.5)."""
    return audit_compat(*compat_tables(),
                        gates={"require-compatible": 1, "max-retrieval-nfr": 0.5})


@pytest.fixture(scope="session")
def versions_result() -> Any:
    """Three versions: two failing pairs; require-compatible and min-cross-top1 breached
    (the worst pair, V3 on V1's gallery, named), max-retrieval-nfr 0.5 held."""
    return audit_compat(*versions_tables(),
                        gates={"require-compatible": 1, "min-cross-top1": 0.72,
                               "max-retrieval-nfr": 0.5})


@pytest.fixture(scope="session")
def hostile_compat_result() -> Any:
    return audit_compat(*hostile_compat_tables(), top=20,
                        gates={"require-compatible": 1, "max-retrieval-nfr": 0.1})


@pytest.fixture(scope="session")
def mismatch_result() -> Any:
    return audit_compat(*mismatch_tables(),
                        gates={"require-compatible": 1, "min-update-gain": 0.5})


@pytest.fixture(scope="session")
def golden_result() -> Any:
    old, new = golden_frames()
    return audit_flips(old, new, score_cols="prob_*", slice_by=["device"],
                       gates={"max-nfr": 0.05, "min-btc": 0.8})


@pytest.fixture(scope="session")
def hostile_result() -> Any:
    old, new = hostile_frames()
    return audit_flips(old, new, slice_by=["segment"], top=len(HOSTILE_IDS),
                       gates={"max-nfr": 0.05, "max-class-nfr": 0.01})


@pytest.fixture(scope="session")
def sample_result() -> Any:
    root = Path(__file__).resolve().parents[2] / "sample_data"
    return audit_flips(str(root / "digits_old.csv"), str(root / "digits_new.parquet"),
                       score_cols="prob_*", slice_by=["ink"],
                       gates={"max-nfr": 0.01, "min-btc": 0.95})


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        return
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with "
                    "GAUDIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(list(difflib.unified_diff(
            expected.splitlines(keepends=True), text.splitlines(keepends=True),
            f"golden/{name}", "rendered"))[:80])
        pytest.fail(f"{name} differs from its golden file (if intended, regenerate with "
                    f"GAUDIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report):\n{diff}")


@pytest.fixture
def check_golden() -> Callable[[str, str], None]:
    """``check_golden(name, text)``: compare with (or, when updating, write) a golden file."""
    return _check_golden
