"""Re-rendering: read a saved JSON result back into its result object, re-apply gates.

A saved result may have been edited by hand or damaged on the way. Before it is turned
back into a result object, every field that object is built from is checked against
:data:`FLIPS` / :data:`COMPAT` (a small declarative schema), so a string where a number
belongs, a NaN, a list where an object belongs or a missing key is an :class:`InputError`
naming the file and the field, never a crash in a renderer.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InputError, UsageError
from .gates import GATES, GateSpec, evaluate_gates
from .io import read_bytes

SCHEMA_VERSION = 1

# Schema leaves: what a value must be. A dict is an object whose keys ending in "?" are
# optional (extra keys are allowed, except in an object that has the key "="), a list of one
# schema is a list of such items, "*" in a dict stands for every key.
NUM = "a finite number"
NUM_OR_NULL = "a finite number or null"
COUNT = "a whole number >= 0"
COUNT_OR_NULL = "a whole number >= 0 or null"
TEXT = "a string"
TEXT_OR_NULL = "a string or null"
BOOL = "true or false"
LABEL = "a string, a number or null"
PAIR_OR_NULL = "a list of two finite numbers, or null"
LIST = "a list"
OBJECT = "an object"
PROB = "a number from 0 to 1"
PROB_OR_NULL = "a number from 0 to 1, or null"
LEVEL = "a number strictly between 0 and 1"

_COUNTS = {"=": True, "both_right": COUNT, "negative_flips": COUNT, "positive_flips": COUNT,
           "both_wrong": COUNT, "both_wrong_disagree?": COUNT}
_GATE = {"name": TEXT, "metric": TEXT, "threshold": NUM, "value?": NUM_OR_NULL,
         "passed": BOOL, "status?": frozenset({"pass", "fail", "n/a"}), "source?": TEXT,
         "detail?": TEXT, "direction?": frozenset({"max", "min"})}
_SIDE = {"path": TEXT, "rows": COUNT, "prediction?": TEXT}


_PRF = {f"{side}_{k}?": PROB_OR_NULL for side in ("old", "new")
        for k in ("precision", "recall", "f1")}


def _group(key: str, size: str) -> dict[str, Any]:
    return {key: LABEL, f"{size}?": COUNT, "counts": _COUNTS,
            "negative_flip_rate_interval?": PAIR_OR_NULL, "mae_delta?": NUM_OR_NULL, **_PRF}


_QUALITY_SIDE = {"=": True, "accuracy?": PROB_OR_NULL, "macro_precision?": PROB_OR_NULL,
                 "macro_recall?": PROB_OR_NULL, "macro_f1?": PROB_OR_NULL,
                 "log_loss?": NUM_OR_NULL, "brier?": NUM_OR_NULL, "roc_auc?": PROB_OR_NULL,
                 "r2?": NUM_OR_NULL, "mape?": NUM_OR_NULL, "max_error?": NUM_OR_NULL}
_QUALITY_DELTA = {"=": True, **{k: NUM_OR_NULL for k in _QUALITY_SIDE if k != "="}}
_BIN = {"low": NUM, "high": NUM, "count": COUNT, "mean_confidence?": NUM_OR_NULL,
        "accuracy?": PROB_OR_NULL}
_QUALITY = {
    "old": _QUALITY_SIDE, "new": _QUALITY_SIDE,
    "delta": _QUALITY_DELTA,
    "reasons?": {"*": TEXT},
    "positive_class?": TEXT_OR_NULL,
    "predicted_only_classes?": [{"class": TEXT, **_PRF}],
    "confusion?": {"classes": [TEXT], "total_classes": COUNT,
                   "rows_left_out": {"=": True, "old": COUNT, "new": COUNT},
                   "old": [[COUNT]], "new": [[COUNT]]},
    "reliability?": {"*": [_BIN]},
    "mape_excluded_zero_labels?": COUNT_OR_NULL,
}


_HISTOGRAM = {"edges": [NUM], "counts": LIST}
_WILCOXON = {"statistic?": NUM_OR_NULL, "p_value?": PROB_OR_NULL, "method": TEXT,
             "n_nonzero?": COUNT, "zero_differences?": COUNT}
_REGRESSION = {
    "tolerance": {"atol": NUM, "rtol": NUM},
    "errors": {"n": COUNT, "sum_abs_old": NUM, "sum_abs_new": NUM, "sum_sq_old": NUM,
               "sum_sq_new": NUM, "mean_d?": NUM_OR_NULL, "var_d?": NUM_OR_NULL},
    "mae_delta_interval?": PAIR_OR_NULL,
    "wilcoxon": _WILCOXON,
    "d_histogram?": (_HISTOGRAM, None),
    "error_histogram?": (_HISTOGRAM, None),
}

_WHAT_IF = {
    "method": frozenset({"blend"}), "formula?": TEXT,
    "prediction?": frozenset({"argmax", "threshold"}), "threshold?": PROB_OR_NULL,
    "steps": COUNT, "classes?": [TEXT],
    "new_pred_disagreements?": COUNT, "old_pred_disagreements?": COUNT,
    "points": [{"alpha": PROB, "negative_flips": COUNT, "positive_flips": COUNT,
                **{f"{k}?": PROB_OR_NULL for k in (
                    "error_rate", "negative_flip_rate", "positive_flip_rate",
                    "backward_trust_compatibility")}}],
    "recommended?": ({"alpha": PROB, "max_nfr": PROB, "negative_flips": COUNT,
                      "negative_flip_rate?": PROB_OR_NULL, "error_rate?": PROB_OR_NULL,
                      "error_rate_cost?": NUM_OR_NULL}, None),
}

#: What :meth:`FlipsResult.from_dict` reads.
FLIPS: dict[str, Any] = {
    "task?": frozenset({"classification", "regression", "outcome"}), "task_reason?": TEXT,
    "engine?": TEXT, "tool?": {"version?": TEXT},
    "inputs": {"old": _SIDE, "new": _SIDE,
               "labels?": ({"path": TEXT, "rows?": COUNT_OR_NULL, "unused?": COUNT}, None),
               "matched": COUNT, "unmatched_old": COUNT, "unmatched_new": COUNT,
               "excluded?": {"no_label?": COUNT}, "label_source?": TEXT},
    "metrics": {"n": COUNT, "negative_flips": COUNT, "positive_flips": COUNT,
                **{f"{k}?": NUM_OR_NULL for k in (
                    "old_error_rate", "new_error_rate", "error_rate_delta",
                    "negative_flip_rate", "positive_flip_rate", "negative_flip_impact",
                    "churn_rate", "backward_trust_compatibility",
                    "backward_error_compatibility", "relative_negative_flip_rate",
                    "old_mae", "new_mae", "mae_delta", "old_rmse", "new_rmse", "rmse_delta")}},
    "counts": _COUNTS,
    "intervals?": {"confidence?": LEVEL, "method?": TEXT, "mae_delta_method?": TEXT,
                   "mean_delta_method?": TEXT, "*": PAIR_OR_NULL},
    "tests": {"mcnemar": {"negative_flips": COUNT, "positive_flips": COUNT,
                          "statistic?": NUM_OR_NULL, "p_value": PROB, "method": TEXT},
              "wilcoxon?": (_WILCOXON, None),
              "roc_auc_delong?": ({"z?": NUM_OR_NULL, "p_value?": PROB_OR_NULL,
                                   "method?": TEXT}, None)},
    "scores?": ({"n": COUNT, "old_mean?": NUM_OR_NULL, "new_mean?": NUM_OR_NULL,
                 "mean_delta?": NUM_OR_NULL, "var_delta?": NUM_OR_NULL,
                 "pass_threshold?": NUM}, None),
    "per_class?": [_group("class", "support")],
    "slices?": {"*": [_group("value", "n")]},
    "flip_matrix?": [{"old_pred": TEXT, "new_pred": TEXT, "count": COUNT}],
    "top_negative_flips?": [{
        "id": TEXT, "label?": LABEL, "old_pred?": LABEL, "new_pred?": LABEL,
        "old_score?": NUM_OR_NULL, "new_score?": NUM_OR_NULL, "id_parts?": [TEXT],
        "old_confidence?": NUM_OR_NULL, "new_confidence?": NUM_OR_NULL,
        "slices?": {"*": LABEL}, "old_error?": NUM_OR_NULL, "new_error?": NUM_OR_NULL}],
    "options?": OBJECT,
    "regression?": (_REGRESSION, None),
    "what_if?": (_WHAT_IF, None),
    "quality?": (_QUALITY, None),
    "gates?": [_GATE],
}

_CASE = {"map?": NUM_OR_NULL, "queries_evaluated?": COUNT, "available?": BOOL,
         "reason?": TEXT_OR_NULL, "top*": NUM_OR_NULL,
         "intervals?": ({"top*": PAIR_OR_NULL}, None),
         # compat --qrels: the relevance metrics of the case
         **{f"{k}?": PROB_OR_NULL for k in ("ndcg10", "recall10", "recall100", "mrr10")}}
_CRITERION_TEST = {"p_value?": PROB_OR_NULL, "method": frozenset({"exact", "chi2", "paired t"}),
                   "b?": COUNT_OR_NULL, "c?": COUNT_OR_NULL, "statistic?": NUM_OR_NULL,
                   "queries?": COUNT}

_CRITERION_INTERVALS = {"criterion_delta?": PAIR_OR_NULL,
                        "criterion_delta_method?": (frozenset({"newcombe", "paired t"}), None)}
#: One later-vs-earlier pair of a result over three or more versions.
_PAIR = {"query_index": COUNT, "gallery_index": COUNT, "compatible": BOOL, "reason?": TEXT,
         "criterion_values?": {"cross?": NUM_OR_NULL, "base?": NUM_OR_NULL,
                               "backfilled?": NUM_OR_NULL},
         "criterion_delta?": NUM_OR_NULL, "criterion_significant?": (BOOL, None),
         "intervals?": _CRITERION_INTERVALS, "tests?": {"criterion?": (_CRITERION_TEST, None)},
         "update_gain?": NUM_OR_NULL, "retrieval_negative_flips?": COUNT_OR_NULL,
         "retrieval_negative_flip_rate?": PROB_OR_NULL}

#: What :meth:`CompatResult.from_dict` reads.
COMPAT: dict[str, Any] = {
    "engine?": frozenset({"duckdb", "spark"}), "tool?": {"version?": TEXT},
    "inputs": {"old": {**_SIDE, "dim": COUNT}, "new": {**_SIDE, "dim": COUNT},
               "matched": COUNT, "unmatched_old": COUNT, "unmatched_new": COUNT, "mode": TEXT,
               "gallery": COUNT,
               "qrels?": ({"path": TEXT, "format": frozenset({"beir", "trec"}),
                           "judgments": COUNT, "relevant": COUNT, "unmatched": COUNT,
                           "wrong_side": COUNT}, None),
               "versions?": [{"path": TEXT, "rows": COUNT, "dim": COUNT, "unmatched": COUNT}],
               "sample?": {"queries": COUNT, "of": COUNT, "seed": COUNT}},
    "versions?": [TEXT],
    "matrix?": {"top1": [[PROB_OR_NULL]], "map": [[PROB_OR_NULL]]},
    "pairs?": [_PAIR],
    "summary_pair?": {"query_index": COUNT, "gallery_index": COUNT, "fields?": [TEXT]},
    "metric": frozenset({"cosine", "ip", "l2"}),
    "criterion": frozenset({"top1", "map", "ndcg10", "recall10", "recall100", "mrr10"}),
    "cases": {"old/old": _CASE, "new/old": _CASE, "*": _CASE},
    "compatible": BOOL, "update_gain?": NUM_OR_NULL, "retrieval_negative_flips?": COUNT_OR_NULL,
    "intervals?": {"confidence?": LEVEL, "method?": TEXT, "criterion_delta?": PAIR_OR_NULL,
                   "criterion_delta_method?": (frozenset({"newcombe", "paired t"}), None)},
    "tests?": {"criterion?": (_CRITERION_TEST, None)},
    "queries": COUNT, "queries_without_positive?": COUNT,
    "breaking_queries?": [{"=": True, "id": TEXT, "label": TEXT, "new_old_rank": COUNT,
                           "new_old_top1_id": TEXT, "new_old_top1_label": TEXT}],
    "gates?": [_GATE],
}


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _leaf_ok(value: Any, want: str) -> bool:
    if want.endswith(" or null") and value is None:
        return True
    if want in (NUM, NUM_OR_NULL):
        return _finite(value)
    if want in (PROB, PROB_OR_NULL):
        return _finite(value) and 0 <= value <= 1
    if want == LEVEL:
        return _finite(value) and 0 < value < 1
    if want in (COUNT, COUNT_OR_NULL):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if want in (TEXT, TEXT_OR_NULL):
        return isinstance(value, str)
    if want == BOOL:
        return isinstance(value, bool)
    if want == LABEL:
        return value is None or isinstance(value, str) or _finite(value)
    if want == PAIR_OR_NULL:
        return isinstance(value, list) and len(value) == 2 and all(map(_finite, value))
    if want == LIST:
        return isinstance(value, list)
    if want == OBJECT:
        return isinstance(value, dict)
    raise AssertionError(want)


def _check(value: Any, schema: Any, where: str) -> str | None:
    """The first problem of ``value`` against ``schema`` as ``(field, message)`` text."""
    if schema is None:
        return None
    if isinstance(schema, tuple):  # alternatives (an object or null)
        if value is None and None in schema:
            return None
        return _check(value, schema[0], where)
    if isinstance(schema, frozenset):
        if isinstance(value, str) and value in schema:
            return None
        return (f"{where} must be one of {', '.join(map(repr, sorted(schema)))}, "
                f"got {_shown(value)}")
    if isinstance(schema, str):
        if _leaf_ok(value, schema):
            return None
        return f"{where or 'the document'} must be {schema}, got {_shown(value)}"
    if isinstance(schema, list):
        if not isinstance(value, list):
            return f"{where} must be a list, got {_shown(value)}"
        for i, item in enumerate(value):
            problem = _check(item, schema[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    if not isinstance(value, dict):
        return f"{where or 'the document'} must be an object, got {_shown(value)}"
    prefix = f"{where}." if where else ""
    for key, sub in schema.items():
        if key in ("=", "*") or "*" in key:
            continue
        name = key.rstrip("?")
        if name not in value:
            if key.endswith("?"):
                continue
            return f"{prefix}{name} is missing"
        problem = _check(value[name], sub, prefix + name)
        if problem:
            return problem
    known = {k.rstrip("?") for k in schema}
    for key, item in value.items():
        if key in known:
            continue
        pattern = next((k for k in schema if "*" in k and k != "*"
                        and key.startswith(k.split("*")[0])), None)
        if pattern is not None:
            problem = _check(item, schema[pattern], prefix + key)
        elif "*" in schema:
            problem = _check(item, schema["*"], prefix + key)
        elif "=" in schema:
            problem = f"{prefix}{key} is not a field gaudit writes"
        else:
            problem = None
        if problem:
            return problem
    return None


def _shown(value: Any) -> str:
    text = json.dumps(value, allow_nan=True) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _consistent(doc: dict[str, Any], kind: str) -> str | None:
    """What the schema cannot say: fields that must agree with each other."""
    if kind == "flips" and doc.get("task") == "regression" and not doc.get("regression"):
        return "task is 'regression' but the regression field is missing"
    if kind == "flips" and doc.get("task") == "outcome":
        flips = doc.get("top_negative_flips") or ()
        if any("label" in e for e in flips):
            return "task is 'outcome' but top_negative_flips hold labels (a classification's)"
        if doc.get("scores") and not (doc.get("tests") or {}).get("wilcoxon"):
            return "scores are given but tests.wilcoxon is missing"
    elif kind == "flips":
        flips = doc.get("top_negative_flips") or ()
        for i, e in enumerate(flips):
            missing = [k for k in ("label", "old_pred", "new_pred") if k not in e]
            if missing:
                return f"top_negative_flips[{i}] has no {', '.join(missing)}"
        problem = _confusion_consistent((doc.get("quality") or {}).get("confusion"))
        if problem:
            return problem
    what_if = doc.get("what_if") if kind == "flips" else None
    if what_if:
        problem = _what_if_consistent(what_if)
        if problem:
            return problem
    if kind == "compat":
        from .compat import COMPAT_GATES as registry

        problem = _versions_consistent(doc)
        if problem:
            return problem
    else:
        registry = GATES
        counts, metrics = doc.get("counts") or {}, doc.get("metrics") or {}
        total = sum(counts.get(k, 0) for k in ("both_right", "negative_flips",
                                                "positive_flips", "both_wrong"))
        if counts and "n" in metrics and metrics["n"] != total:
            return (f"metrics.n is {_shown(metrics['n'])} but the counts add up to {total}")
        audited = (doc.get("inputs") or {}).get("audited")
        if audited is not None and "n" in metrics and metrics["n"] != audited:
            return (f"metrics.n is {_shown(metrics['n'])} but inputs.audited is "
                    f"{_shown(audited)}")
    for i, gate in enumerate(doc.get("gates") or ()):
        if gate["name"] not in registry:
            return (f"gates[{i}].name {gate['name']!r} is not a gate of a {kind} result "
                    f"(known: {', '.join(registry)})")
        status = gate.get("status", "pass" if gate["passed"] else "fail")
        if status != "n/a" and gate.get("value") is None:
            return f"gates[{i}].value must be a number when the gate's status is {status!r}"
    return None


def _confusion_consistent(confusion: dict[str, Any] | None) -> str | None:
    """Both confusion matrices are square over ``classes``, which are distinct and no more
    than ``total_classes``."""
    if confusion is None:
        return None
    k = len(confusion["classes"])
    if len(set(confusion["classes"])) != k:
        return "quality.confusion.classes holds a class twice"
    if confusion["total_classes"] < k:
        return (f"quality.confusion.total_classes is {confusion['total_classes']} but "
                f"quality.confusion.classes holds {k} classes")
    for side in ("old", "new"):
        rows = confusion[side]
        if len(rows) != k or any(len(r) != k for r in rows):
            return (f"quality.confusion.{side} must be a {k} x {k} matrix (one row and one "
                    "column per class of quality.confusion.classes)")
    return None


def _what_if_consistent(what_if: dict[str, Any]) -> str | None:
    """A what-if curve has ``steps`` points at the alphas ``i / (steps - 1)``."""
    from .whatif import MAX_STEPS, alphas

    points, steps = what_if["points"], what_if["steps"]
    if not 2 <= steps <= MAX_STEPS:
        return f"what_if.steps must be from 2 to {MAX_STEPS}, got {_shown(steps)}"
    if len(points) != steps:
        return f"what_if.points holds {len(points)} points but what_if.steps is {steps}"
    for i, (p, a) in enumerate(zip(points, alphas(steps), strict=True)):
        if p["alpha"] != a:
            return f"what_if.points[{i}].alpha must be {a!r}, got {_shown(p['alpha'])}"


_VERSIONS_FIELDS = ("matrix", "pairs", "summary_pair")


def _versions_consistent(doc: dict[str, Any]) -> str | None:
    """A result over three or more versions: the matrix is n x n, every later-vs-earlier
    pair is there once, ``compatible`` is true only when every pair is."""
    if "versions" not in doc:
        extra = [k for k in _VERSIONS_FIELDS if k in doc]
        extra += ["inputs.versions"] if "versions" in (doc.get("inputs") or {}) else []
        return f"{extra[0]} is present but versions is missing" if extra else None
    missing = [k for k in _VERSIONS_FIELDS if k not in doc]
    if missing or "versions" not in doc["inputs"]:
        return f"versions is present but {(missing or ['inputs.versions'])[0]} is missing"
    n = len(doc["versions"])
    if n < 3:
        return f"versions lists {n} files; a versions result has 3 or more"
    if len(doc["inputs"]["versions"]) != n:
        return (f"inputs.versions has {len(doc['inputs']['versions'])} entries but versions "
                f"lists {n} files")
    for key in ("top1", "map"):
        rows = doc["matrix"][key]
        if len(rows) != n or any(len(r) != n for r in rows):
            return f"matrix.{key} must be {n} x {n} (one row and column per version)"
    wanted = {(j, i) for j in range(n) for i in range(j)}
    seen = [(p["query_index"], p["gallery_index"]) for p in doc["pairs"]]
    if sorted(seen) != sorted(wanted):
        return (f"pairs must hold each later-vs-earlier pair once (query_index > "
                f"gallery_index, both below {n}); got {_shown([list(p) for p in seen])}")
    s = doc["summary_pair"]
    if (s["query_index"], s["gallery_index"]) != (n - 1, 0):
        return f"summary_pair must be the newest queries on the oldest gallery ({n - 1}, 0)"
    every = all(p["compatible"] for p in doc["pairs"])
    if doc["compatible"] != every:
        return (f"compatible is {_shown(doc['compatible'])} but the pairs say "
                f"{_shown(every)}")
    return None


def load_result(path: str) -> Any:
    """A :class:`FlipsResult` or :class:`CompatResult` from a ``--format json`` document."""
    try:
        doc = json.loads(read_bytes(path, path).decode("utf-8"))  # never blocks on a pipe
    except FileNotFoundError:
        raise InputError(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a JSON result of gaudit.") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: is not a JSON result of gaudit (not UTF-8 text).") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: is not a JSON result of gaudit ({exc}).") from None
    except RecursionError:
        raise InputError(f"{path}: is not a JSON result of gaudit (nested too deeply).") from None
    version = doc.get("schema_version") if isinstance(doc, dict) else None
    if _finite(version) and version > SCHEMA_VERSION:
        raise InputError(f"{path}: written by a newer gaudit (schema_version {version}); "
                         f"upgrade gaudit to render it (this one reads schema_version "
                         f"{SCHEMA_VERSION}).")
    if not isinstance(doc, dict) or version != SCHEMA_VERSION or isinstance(version, bool):
        raise InputError(f"{path}: not a gaudit result (schema_version 1); save one with "
                         "--format json.")
    kind = doc.get("kind")
    if kind not in ("flips", "compat"):
        raise InputError(f"{path}: unknown result kind {kind!r}; expected 'flips' or 'compat'.")
    problem = _check(doc, FLIPS if kind == "flips" else COMPAT, "") or _consistent(doc, kind)
    if problem:
        raise InputError(f"{path}: {problem}. Was it edited? Save the result again with "
                         "--format json.")
    try:
        if kind == "flips":
            from .result import FlipsResult

            return FlipsResult.from_dict(doc)
        from .compat import CompatResult

        return CompatResult.from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InputError(f"{path}: the result document is inconsistent ({exc}). Was it "
                         "edited? Save the result again with --format json.") from None


def regate(result: Any, specs: list[GateSpec]) -> Any:
    """``result`` with ``specs`` evaluated in place of its saved gates."""
    if result.kind == "compat":
        from .compat import COMPAT_GATES as registry
    else:
        registry = GATES
    wrong = [s.name for s in specs if s.name not in registry]
    if wrong:
        raise UsageError(f"--{wrong[0]} does not apply to a {result.kind} result; gates for it: "
                         f"{', '.join('--' + g for g in registry)}.")
    if result.kind == "flips" and result.task == "classification":
        from .flips import check_scores_given

        scored = result.quality is not None and result.quality.scored
        check_scores_given(specs, "saved" if scored else None, saved=True)
    return result.with_gates(evaluate_gates(result, specs, registry))
