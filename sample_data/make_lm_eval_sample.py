"""Generate the evaluation-outcome sample: lm-evaluation-harness ``--log_samples`` records.

lm-evaluation-harness writes one ``samples_<task>_<time>.jsonl`` per task, one JSON object
per document: ``doc_id`` (which repeats across tasks), ``doc``, ``target``,
``arguments``, ``resps``, ``filtered_resps``, ``filter``, ``metrics``, ``doc_hash``,
``prompt_hash``, ``target_hash`` and the metric fields themselves (``exact_match``). This
script writes such records for three tasks and two models into one file per model (the
per-task files concatenated, each record with a ``task`` field, as
``jq -c '. + {task: "arc_easy"}' samples_arc_easy_*.jsonl`` gives), plus a ``judge`` object
with a graded score from an LLM judge (``judge.score`` in 0..1):

* ``lm_eval_old.jsonl``: the old model;
* ``lm_eval_new.jsonl.gz``: the new model (gzip, records in another order).

The outcomes are synthetic but deterministic (``random.Random(16)``, no third-party
package): the new model is better on ``arc_easy``, about as good on ``hellaswag`` and
breaks a batch of ``gsm8k`` cases the old model passed. Run from the project root::

    .venv/bin/python sample_data/make_lm_eval_sample.py
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = {"arc_easy": 120, "gsm8k": 100, "hellaswag": 120}
#: per task: (old pass probability, chance the new model flips a pass to a fail, chance it
#: flips a fail to a pass)
BEHAVIOUR = {"arc_easy": (0.78, 0.03, 0.45), "gsm8k": (0.62, 0.22, 0.15),
             "hellaswag": (0.70, 0.06, 0.12)}
CHOICES = "ABCD"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _doc(task: str, doc_id: int, rng: random.Random) -> tuple[dict, str, str]:
    """A document, its prompt and its target, in the shape of the task."""
    if task == "gsm8k":
        a, b = rng.randint(2, 90), rng.randint(2, 40)
        question = f"Sam has {a} apples and buys {b} more bags of 3. How many apples now?"
        target = str(a + 3 * b)
        return {"question": question, "answer": f"#### {target}"}, f"Question: {question}\n" \
            "Answer:", target
    if task == "arc_easy":
        stem = f"Which property of matter is measured in experiment {doc_id}?"
        answer = CHOICES[rng.randrange(4)]
        return ({"id": f"Mercury_{7000 + doc_id}", "question": stem,
                 "choices": {"label": list(CHOICES), "text": ["mass", "volume", "color",
                                                             "shape"]},
                 "answerKey": answer}, f"Question: {stem}\nAnswer:", answer)
    ctx = f"A person is seen kneeling on a roof, scene {doc_id}. They"
    label = rng.randrange(4)
    return ({"ind": doc_id, "ctx": ctx, "label": str(label)}, ctx, str(label))


def _answer(task: str, target: str, passed: bool, rng: random.Random) -> str:
    if passed:
        return target
    if task == "gsm8k":
        return str(int(target) + rng.choice([-3, -1, 1, 2, 10]))
    if task == "arc_easy":
        return rng.choice([c for c in CHOICES if c != target])
    return str((int(target) + rng.randint(1, 3)) % 4)


def _judge(passed: bool, rng: random.Random) -> float:
    """A judge's graded score: high for a pass, low for a fail, never exactly 0.5."""
    score = rng.uniform(0.55, 1.0) if passed else rng.uniform(0.0, 0.45)
    return round(score, 3)


def records(rng: random.Random) -> tuple[list[dict], list[dict]]:
    old, new = [], []
    for task, n in TASKS.items():
        p_pass, p_break, p_fix = BEHAVIOUR[task]
        for doc_id in range(n):
            doc, prompt, target = _doc(task, doc_id, rng)
            old_pass = rng.random() < p_pass
            flip = rng.random() < (p_break if old_pass else p_fix)
            new_pass = old_pass != flip
            base = {"task": task, "doc_id": doc_id, "doc": doc, "target": target,
                    "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": {"until": ["\n"]}}},
                    "filter": "strict-match", "metrics": ["exact_match"],
                    "doc_hash": _sha(json.dumps(doc, sort_keys=True)),
                    "prompt_hash": _sha(prompt), "target_hash": _sha(target)}
            for rows, passed, model in ((old, old_pass, "old"), (new, new_pass, "new")):
                answer = _answer(task, target, passed, rng)
                rows.append({**base, "resps": [[f" {answer}"]], "filtered_resps": [answer],
                             "exact_match": 1.0 if passed else 0.0,
                             "judge": {"model": "judge-v2", "score": _judge(passed, rng),
                                       "rationale": f"{model} answer {answer!r}"}})
    return old, new


def main() -> None:
    old, new = records(random.Random(16))
    random.Random(17).shuffle(new)  # joined by (task, doc_id), never by position
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in old)
    (HERE / "lm_eval_old.jsonl").write_text(text, encoding="utf-8")
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in new).encode()
    (HERE / "lm_eval_new.jsonl.gz").write_bytes(gzip.compress(data, mtime=0))


if __name__ == "__main__":
    main()
