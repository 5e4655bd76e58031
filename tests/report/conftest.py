"""Fixtures for the report tests: small, deterministic audits built from DataFrames.

Golden files live in ``tests/report/golden/``. After an intended change of a report,
regenerate them with one command, from the project root::

    GAUDIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/report

then review the diff of ``tests/report/golden/`` like any other change.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from graceful_audit import audit_flips

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
