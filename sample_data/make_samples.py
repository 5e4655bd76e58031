"""Generate the bundled sample data for ``gaudit`` from real scikit-learn models.

Every file is built from datasets that ship with scikit-learn (no downloads) and from
models trained here with fixed random states, so rerunning the script reproduces the
CSV files byte for byte. Old and new files of a pair share an ``id`` column and the
"new" files are deliberately shuffled: consumers must join on ``id``, never on row order.

Pairs written next to this script:

* ``digits_old.csv`` / ``digits_new.parquet``: class probabilities of an old (PCA-8 +
  logistic regression) and a new (logistic regression on all pixels) digit classifier.
* ``emb_old.parquet`` / ``emb_new_compatible.parquet`` / ``emb_new_incompatible.parquet``:
  16-d embeddings of every digit image for retrieval-compatibility checks.
* ``diabetes_old.csv`` / ``diabetes_new.parquet``: out-of-fold regression predictions.
* ``beir_old.parquet`` / ``beir_new.parquet`` / ``beir_qrels.tsv``: the digit embeddings in
  the shape of a BEIR search benchmark (queries and corpus told apart by ``split``, no labels)
  with graded relevance judgments, for ``gaudit compat --qrels``.

Run with ``.venv/bin/python sample_data/make_samples.py`` from the project root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_diabetes, load_digits
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

OUT_DIR = Path(__file__).resolve().parent
SEED = 0
N_CLASSES = 10
PROB_COLS = [f"prob_{c}" for c in range(N_CLASSES)]
EMB_DIM = 16
COMPAT_BLEND = 0.5  # weight b of the old-centroid term in the compatible embedding
DIABETES_OLD_FEATURES = ["bmi", "bp", "s5"]
WORSE_BY = 10.0


# --------------------------------------------------------------------------- io helpers


def write_csv(df: pd.DataFrame, name: str) -> None:
    """Write ``df`` as a CSV without index and with ``\\n`` line endings."""
    df.to_csv(OUT_DIR / name, index=False, lineterminator="\n")


def write_parquet(table: pa.Table, name: str) -> None:
    """Write ``table`` as zstd-compressed Parquet without pandas metadata."""
    pq.write_table(table.replace_schema_metadata(None), OUT_DIR / name, compression="zstd")


def shuffled(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Return the rows of ``df`` in a fixed pseudo-random order."""
    order = np.random.default_rng(seed).permutation(len(df))
    return df.iloc[order].reset_index(drop=True)


def digit_ids(index: np.ndarray) -> list[str]:
    """Stable ids for digit images, derived from the original dataset index."""
    return [f"img-{i:04d}" for i in index]


# --------------------------------------------------------------- 1. digits classification


def ink_levels(pixels: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
    """Tertiles of total pixel intensity; thresholds come from the training rows only."""
    total = pixels.sum(axis=1)
    thresholds = np.quantile(total[train_idx], [1 / 3, 2 / 3])
    names = np.array(["light", "medium", "heavy"])
    return names[np.digitize(total, thresholds)]


def round_summing_to_one(probs: np.ndarray) -> np.ndarray:
    """``probs`` rounded to 6 decimals so that every row still sums to 1.

    Each row is rounded in whole millionths that add up to exactly one million (the largest
    probability takes the rounding residue, a few millionths at most), so every row sums to
    1 within float precision: plain rounding left most rows off by more than the 1e-6 that
    log-loss allows.
    """
    units = np.round(probs * 1e6).astype(np.int64)
    top = units.argmax(axis=1)
    units[np.arange(len(units)), top] += 1_000_000 - units.sum(axis=1)
    rounded = units / 1e6
    assert np.abs(rounded.sum(axis=1) - 1).max() < 1e-12
    return rounded


def rounded_probs_and_pred(model: Pipeline, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities rounded to 6 decimals (rows summing to 1) and ``pred`` = their
    (unique) argmax."""
    probs = round_summing_to_one(model.predict_proba(pixels))
    pred = probs.argmax(axis=1)
    n_at_max = (probs == probs.max(axis=1, keepdims=True)).sum(axis=1)
    assert (n_at_max == 1).all(), "tied maximum probability after rounding"
    disagree = int((model.predict(pixels) != pred).sum())
    if disagree:
        print(f"  note: predict() disagrees with argmax(prob) on {disagree} rows; using argmax")
    return probs, pred


def classification_frame(
    ids: list[str], labels: np.ndarray, probs: np.ndarray, pred: np.ndarray, ink: np.ndarray
) -> pd.DataFrame:
    """Assemble the id/label/pred/prob_*/ink frame of one classifier."""
    frame = pd.DataFrame({"id": ids, "label": labels.astype("int64"), "pred": pred.astype("int64")})
    for c, col in enumerate(PROB_COLS):
        frame[col] = probs[:, c]
    frame["ink"] = ink
    return frame


def classification_schema() -> pa.Schema:
    fields = [pa.field("id", pa.string()), pa.field("label", pa.int64())]
    fields += [pa.field("pred", pa.int64())]
    fields += [pa.field(col, pa.float64()) for col in PROB_COLS]
    fields += [pa.field("ink", pa.string())]
    return pa.schema(fields)


def report_flips(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, float]:
    """Compare two classification frames joined on ``id`` and print the headline numbers."""
    joined = old.merge(new, on="id", suffixes=("_old", "_new"), validate="one_to_one")
    assert len(joined) == len(old) == len(new)
    assert (joined["label_old"] == joined["label_new"]).all()
    old_ok = joined["pred_old"] == joined["label_old"]
    new_ok = joined["pred_new"] == joined["label_new"]
    stats = {
        "n": len(joined),
        "old_error": 1 - old_ok.mean(),
        "new_error": 1 - new_ok.mean(),
        "negative_flips": int((old_ok & ~new_ok).sum()),
        "positive_flips": int((~old_ok & new_ok).sum()),
    }
    print(
        f"  n={stats['n']}  old error={stats['old_error']:.4f}  new error={stats['new_error']:.4f}"
        f"  negative flips={stats['negative_flips']}  positive flips={stats['positive_flips']}"
    )
    return stats


def make_digits_pair() -> None:
    print("digits classification pair")
    pixels, labels = load_digits(return_X_y=True)
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=0.4, stratify=labels, random_state=SEED)
    test = np.sort(test)
    ink = ink_levels(pixels, train)
    models = {
        "old": make_pipeline(
            PCA(n_components=8, svd_solver="full"), LogisticRegression(max_iter=5000)
        ),
        "new": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
    }
    frames = {}
    for name, model in models.items():
        model.fit(pixels[train], labels[train])
        probs, pred = rounded_probs_and_pred(model, pixels[test])
        frames[name] = classification_frame(digit_ids(test), labels[test], probs, pred, ink[test])
    new_shuffled = shuffled(frames["new"], seed=SEED + 1)
    stats = report_flips(frames["old"], new_shuffled)
    assert stats["new_error"] < stats["old_error"]
    assert 2 <= stats["negative_flips"] <= 15 and stats["positive_flips"] > 0
    write_csv(frames["old"], "digits_old.csv")
    table = pa.Table.from_pandas(new_shuffled, schema=classification_schema(), preserve_index=False)
    write_parquet(table, "digits_new.parquet")


# ------------------------------------------------------------------- 2. digit embeddings


def pad_to(emb: np.ndarray, dim: int) -> np.ndarray:
    """Zero-pad the columns of ``emb`` up to ``dim``."""
    return np.hstack([emb, np.zeros((len(emb), dim - emb.shape[1]))])


def class_centroids(emb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.stack([emb[labels == c].mean(axis=0) for c in range(N_CLASSES)])


def top1_accuracy(
    query: np.ndarray, gallery: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray
) -> float:
    """Brute-force cosine nearest neighbour: share of queries whose top-1 has their label."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    nearest = (q @ g.T).argmax(axis=1)
    return float((gallery_labels[nearest] == query_labels).mean())


def embedding_table(
    ids: list[str], labels: np.ndarray, split: np.ndarray, emb: np.ndarray
) -> pa.Table:
    """Arrow table with a ``fixed_size_list<float32, d>`` embedding column."""
    dim = emb.shape[1]
    values = pa.array(emb.astype(np.float32).ravel(), type=pa.float32())
    return pa.table(
        {
            "id": pa.array(ids, type=pa.string()),
            "label": pa.array(labels, type=pa.int64()),
            "split": pa.array(split, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(values, list_size=dim),
        }
    )


def report_retrieval(
    name: str, old: np.ndarray, new: np.ndarray, labels: np.ndarray, is_query: np.ndarray
) -> dict[str, float]:
    """Top-1 for old/old, new/new and new queries against the old gallery."""
    q, g = is_query, ~is_query
    stats = {
        "old/old": top1_accuracy(old[q], old[g], labels[q], labels[g]),
        "new/new": top1_accuracy(new[q], new[g], labels[q], labels[g]),
        "new/old": top1_accuracy(new[q], old[g], labels[q], labels[g]),
    }
    shown = "  ".join(f"{k}={v:.4f}" for k, v in stats.items())
    print(f"  {name}: top-1 {shown}")
    return stats


def make_embedding_pairs() -> None:
    print("digits embedding pairs (cosine top-1, queries vs gallery)")
    pixels, labels = load_digits(return_X_y=True)
    index = np.arange(len(labels))
    gallery, query = train_test_split(index, test_size=0.2, stratify=labels, random_state=SEED)
    is_query = np.isin(index, query)
    split = np.where(is_query, "query", "gallery")

    # Old model: unsupervised PCA(16) fitted on the gallery pixels.
    old_model = PCA(n_components=EMB_DIM, svd_solver="full").fit(pixels[gallery])
    old = old_model.transform(pixels).astype(np.float32)

    # New backbone: RBF kernel features (Nystroem) + LDA, trained on the gallery.
    backbone = make_pipeline(
        Nystroem(kernel="rbf", gamma=0.001, n_components=400, random_state=SEED),
        LinearDiscriminantAnalysis(),
    ).fit(pixels[gallery], labels[gallery])

    # Incompatible: the backbone's own 9-d discriminant space, zero-padded to 16 dims.
    incompatible = pad_to(backbone.transform(pixels), EMB_DIM).astype(np.float32)

    # Compatible (Shen et al. 2020 style): pull the old embedding towards the old
    # classifier's class centroids, weighted by the new backbone's posterior.
    centroids = class_centroids(old[gallery], labels[gallery])
    posterior = backbone.predict_proba(pixels)
    compatible = ((1 - COMPAT_BLEND) * old + COMPAT_BLEND * posterior @ centroids).astype(
        np.float32
    )

    comp = report_retrieval("compatible  ", old, compatible, labels, is_query)
    inc = report_retrieval("incompatible", old, incompatible, labels, is_query)
    assert comp["new/old"] > comp["old/old"] and comp["new/new"] > comp["old/old"]
    assert inc["new/old"] < inc["old/old"] - 0.5 and inc["new/new"] > inc["old/old"]

    ids = digit_ids(index)
    outputs = {
        "emb_old.parquet": (old, None),
        "emb_new_compatible.parquet": (compatible, SEED + 2),
        "emb_new_incompatible.parquet": (incompatible, SEED + 3),
    }
    for file_name, (emb, seed) in outputs.items():
        table = embedding_table(ids, labels, split, emb)
        if seed is not None:
            table = table.take(np.random.default_rng(seed).permutation(len(ids)))
        write_parquet(table, file_name)
    make_beir_sample(pixels, labels, is_query, old, compatible)


BEIR_RELEVANT = (3, 7)  # per query: the 3 nearest same-digit documents grade 2, 7 more grade 1
BEIR_HARD_NEGATIVES = 5  # the nearest other-digit documents, judged 0 (not relevant)
BEIR_UNJUDGED_EVERY = 40  # every 40th query has no judgment (counted, not evaluated)


def make_beir_sample(pixels: np.ndarray, labels: np.ndarray, is_query: np.ndarray,
                     old: np.ndarray, new: np.ndarray) -> None:
    """BEIR-shaped files: ``q-NNNN`` queries and ``doc-NNNN`` corpus items (no labels), and
    graded judgments from raw pixel distances, independent of both models."""
    index = np.arange(len(labels))
    queries, corpus = index[is_query], index[~is_query]
    ids = np.array([f"q-{i:04d}" if q else f"doc-{i:04d}"
                    for i, q in zip(index, is_query, strict=True)])
    split = np.where(is_query, "query", "gallery")
    dist = ((pixels[queries, None, :] - pixels[None, corpus, :]) ** 2).sum(axis=-1)
    rows = ["query-id\tcorpus-id\tscore"]
    top, more = BEIR_RELEVANT
    for n, (q, d) in enumerate(zip(queries, dist, strict=True)):
        if n % BEIR_UNJUDGED_EVERY == BEIR_UNJUDGED_EVERY - 1:
            continue
        order = np.lexsort((corpus, d))  # nearest first, ties by index
        same = order[labels[corpus[order]] == labels[q]]
        other = order[labels[corpus[order]] != labels[q]]
        judged = [(same[i], 2 if i < top else 1) for i in range(top + more)]
        judged += [(other[i], 0) for i in range(BEIR_HARD_NEGATIVES)]
        rows += [f"{ids[q]}\t{ids[corpus[c]]}\t{g}" for c, g in judged]
    (OUT_DIR / "beir_qrels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    for file_name, emb, seed in (("beir_old.parquet", old, None),
                                 ("beir_new.parquet", new, SEED + 4)):
        dim = emb.shape[1]
        values = pa.array(emb.astype(np.float32).ravel(), type=pa.float32())
        table = pa.table({
            "id": pa.array(ids.tolist(), type=pa.string()),
            "split": pa.array(split, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(values, list_size=dim),
        })
        if seed is not None:
            table = table.take(np.random.default_rng(seed).permutation(len(ids)))
        write_parquet(table, file_name)


# ---------------------------------------------------------------- 3. diabetes regression


def age_groups(age: pd.Series) -> np.ndarray:
    """under-40: age < 40; 40-55: 40 <= age <= 55; over-55: age > 55 (years)."""
    return np.select([age < 40, age <= 55], ["under-40", "40-55"], default="over-55")


def regression_frame(
    target: pd.Series, prediction: np.ndarray, age_group: np.ndarray
) -> pd.DataFrame:
    ids = [f"patient-{i:03d}" for i in range(len(target))]
    return pd.DataFrame(
        {
            "id": ids,
            "target": target.to_numpy(dtype="float64"),
            "prediction": np.round(prediction, 3),
            "age_group": age_group,
        }
    )


def report_regression(old: pd.DataFrame, new: pd.DataFrame) -> dict[str, float]:
    """MAE / RMSE of both models and how many examples got worse, joined on ``id``."""
    joined = old.merge(new, on="id", suffixes=("_old", "_new"), validate="one_to_one")
    assert len(joined) == len(old) == len(new)
    stats: dict[str, float] = {"n": len(joined)}
    abs_err = {}
    for side in ("old", "new"):
        residual = joined[f"prediction_{side}"] - joined[f"target_{side}"]
        abs_err[side] = residual.abs()
        stats[f"{side}_mae"] = float(abs_err[side].mean())
        stats[f"{side}_rmse"] = float(np.sqrt((residual**2).mean()))
    delta = abs_err["new"] - abs_err["old"]
    stats["worse"] = int((delta > WORSE_BY).sum())
    stats["better"] = int((delta < -WORSE_BY).sum())
    print(
        f"  n={stats['n']}  old MAE={stats['old_mae']:.3f} RMSE={stats['old_rmse']:.3f}"
        f"  new MAE={stats['new_mae']:.3f} RMSE={stats['new_rmse']:.3f}"
        f"  worse by >{WORSE_BY:g}={stats['worse']}  better by >{WORSE_BY:g}={stats['better']}"
    )
    return stats


def make_diabetes_pair() -> None:
    print("diabetes regression pair (5-fold out-of-fold predictions)")
    scaled = load_diabetes(as_frame=True)
    raw = load_diabetes(as_frame=True, scaled=False)
    features, target = scaled.data, scaled.target
    folds = KFold(n_splits=5, shuffle=True, random_state=SEED)
    groups = age_groups(raw.data["age"])
    old_pred = cross_val_predict(
        LinearRegression(), features[DIABETES_OLD_FEATURES], target, cv=folds
    )
    new_pred = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 1, 20)), features, target, cv=folds)
    old = regression_frame(target, old_pred, groups)
    new = shuffled(regression_frame(target, new_pred, groups), seed=SEED + 4)
    stats = report_regression(old, new)
    assert stats["new_mae"] < stats["old_mae"]
    write_csv(old, "diabetes_old.csv")
    schema = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("target", pa.float64()),
            pa.field("prediction", pa.float64()),
            pa.field("age_group", pa.string()),
        ]
    )
    write_parquet(
        pa.Table.from_pandas(new, schema=schema, preserve_index=False), "diabetes_new.parquet"
    )


def main() -> None:
    make_digits_pair()
    make_embedding_pairs()
    make_diabetes_pair()
    print(f"wrote sample data to {OUT_DIR}")


if __name__ == "__main__":
    main()
