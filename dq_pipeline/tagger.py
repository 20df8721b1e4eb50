"""A tagger trained on the curated labels: the audit's embedder + classifier, per-tag thresholds, a
versioned artifact, and predictions for new rows.

Functional core (no Dagster): :func:`train_tagger` fits the audit's classifier on features X (N, D)
and curated tags Y (N, K), tunes one decision threshold per tag on out-of-fold probabilities
(maximising that tag's F1, or the lowest threshold reaching a target precision), and returns a
:class:`Tagger`. :func:`save_tagger` / :func:`load_tagger` store it as plain arrays (``weights.npz``,
read with ``allow_pickle=False``) + a JSON model card; :func:`predict_input` reads a new CSV / JSONL /
TSV / parquet file (or a folder of images), embeds its rows as the audit did and returns per-tag
probabilities in [0, 1] and the tags at or above each tag's threshold.

Artifact layout (format version :data:`FORMAT_VERSION`), next to the DuckDB file the audit wrote::

    <db file>.models/<dataset>/<run_id>/weights.npz      coef (D, K), intercept (K,), constant (K,),
                                                          constant_prob (K,), thresholds (K,) float64
    <db file>.models/<dataset>/<run_id>/model_card.json  classes, thresholds, embedder identity,
                                                          input columns, training audit run_id, metrics
    <db file>.models/<dataset>/LATEST                    the run_id of the newest tagger (a text file)

The classifier is linear in the features (every model of :mod:`dq_pipeline.model` is a logistic
regression), so coef/intercept are stored on the raw features: p = sigmoid(X @ coef + intercept). Tabular
features are rebuilt from the stored parameters of the audit's ColumnTransformer (medians, means,
scales, one-hot categories) - no pickled object is ever loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS_NAME = "weights.npz"
CARD_NAME = "model_card.json"
LATEST_NAME = "LATEST"
#: Columns a prediction adds to the input's rows: the tags predicted (list in JSONL, joined in CSV) and
#: one ``prob_<tag>`` column per class; ``predict_problem`` only when some row could not be tagged.
LABELS_COLUMN = "predicted_labels"
PROB_PREFIX = "prob_"
PROBLEM_COLUMN = "predict_problem"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_WEIGHT_ARRAYS = ("coef", "intercept", "constant", "constant_prob", "thresholds")


class TaggerError(ValueError):
    """A tagger cannot be trained, loaded or applied; the message names the file, column and what the
    model card expected."""


# ------------------------------------------------------------------------------------------ model


@dataclass(frozen=True)
class LinearWeights:
    """p = sigmoid(X @ coef + intercept) per tag, except ``constant`` tags, predicted as ``constant_prob``.

    coef (D, K), intercept (K,), constant (K,) bool, constant_prob (K,) in [0, 1] (a tag present in
    every or in no training row has no model: its training prevalence, 1 or 0).
    """

    coef: np.ndarray
    intercept: np.ndarray
    constant: np.ndarray
    constant_prob: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, K) float64 probabilities in [0, 1] for features X (N, D)."""
        from scipy.special import expit

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.coef.shape[0]:
            raise TaggerError(f"features have shape {X.shape}, the tagger expects (N, {self.coef.shape[0]})")
        P = expit(X @ self.coef + self.intercept)
        P[:, self.constant] = self.constant_prob[self.constant]
        return np.clip(P, 0.0, 1.0)


def _linear_parts(est: Any, n_features: int, n_tags: int) -> tuple[np.ndarray, np.ndarray]:
    """(coef (D, k), intercept (k,)) on the raw features of a fitted estimator from ``model.make_model``."""
    if hasattr(est, "coef_") and hasattr(est, "intercept_"):  # JointLogisticRegression: already raw
        coef = np.asarray(est.coef_, dtype=np.float64).reshape(n_features, -1)
        return coef, np.asarray(est.intercept_, dtype=np.float64).reshape(-1)
    scaler, ovr = est.steps[0][1], est.steps[-1][1]  # 'logreg': StandardScaler + OneVsRest(LogisticRegression)
    coefs = np.column_stack([e.coef_.reshape(-1) for e in ovr.estimators_])  # (D, k) on standardised X
    intercepts = np.array([float(np.ravel(e.intercept_)[0]) for e in ovr.estimators_])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    coef = coefs / scale[:, None]
    return coef, intercepts - scaler.mean_ @ coef


def fit_weights(X: np.ndarray, Y: np.ndarray, model: str, seed: int = 0, C: float | None = None) -> LinearWeights:
    """Fit ``model`` (a name of :data:`dq_pipeline.model.MODELS`; ``C``: another L2 strength than its own) on
    X (N, D), Y (N, K) 0/1 and return its weights on the raw features; tags constant in Y get no model (their
    prevalence)."""
    import warnings

    from dq_pipeline.model import make_model

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y).astype(np.int64)
    d = X.shape[1]
    k = Y.shape[1]
    constant = Y.min(axis=0) == Y.max(axis=0)
    coef, intercept = np.zeros((d, k)), np.zeros(k)
    varying = np.flatnonzero(~constant)
    if varying.size:
        est = make_model(model, seed, C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter, as in the cross-validation
            est.fit(X, Y[:, varying[0]] if varying.size == 1 else Y[:, varying])
        c, b = _linear_parts(est, d, varying.size)
        coef[:, varying], intercept[varying] = c, b
    return LinearWeights(coef, intercept, constant, Y.mean(axis=0).astype(np.float64))


# ------------------------------------------------------------------------------------ thresholds


@dataclass(frozen=True)
class Thresholds:
    """Per-tag decision thresholds (predict tag k when p_k >= values[k]) and how they were chosen.

    values, precision, recall, f1 : (K,) on the out-of-fold predictions at that threshold;
    target_met : (K,) bool, whether the target precision was reached (all True when maximising F1);
    rule : 'max_f1' or 'precision>=<target>'.
    """

    values: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    target_met: np.ndarray
    rule: str


def tune_thresholds(Y: np.ndarray, P: np.ndarray, target_precision: float | None = None) -> Thresholds:
    """One threshold per tag from out-of-fold probabilities P (N, K) against tags Y (N, K).

    Default: the threshold maximising the tag's F1 (ties: the higher threshold). With
    ``target_precision`` in (0, 1]: the lowest threshold whose precision reaches it (most recall at
    that precision); a tag that never reaches it falls back to its F1-maximising threshold and is
    marked ``target_met = False``. A tag without positives (or negatives) gets 0.5.
    """
    from sklearn.metrics import precision_recall_curve

    Y = np.asarray(Y).astype(bool)
    P = np.asarray(P, dtype=np.float64)
    if target_precision is not None and not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")
    k = Y.shape[1]
    values, prec, rec, f1 = np.full(k, 0.5), np.zeros(k), np.zeros(k), np.zeros(k)
    met = np.ones(k, dtype=bool)
    for j in range(k):
        y, p = Y[:, j], P[:, j]
        if not 0 < y.sum() < len(y):
            pred = p >= 0.5
            tp = float((pred & y).sum())
            prec[j] = tp / pred.sum() if pred.sum() else float(not y.any())
            rec[j] = tp / y.sum() if y.sum() else 1.0
            f1[j] = _f1(prec[j], rec[j])
            continue
        precision, recall, thr = precision_recall_curve(y, p)
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        scores = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0)
        best = len(scores) - 1 - int(np.argmax(scores[::-1]))  # ties: the higher threshold
        if target_precision is not None:
            ok = np.flatnonzero(precision >= target_precision - 1e-12)
            if ok.size:
                best = int(ok[0])  # thresholds ascend: the lowest one reaching the target
            else:
                met[j] = False
        values[j], prec[j], rec[j], f1[j] = thr[best], precision[best], recall[best], scores[best]
    rule = "max_f1" if target_precision is None else f"precision>={target_precision:g}"
    return Thresholds(values, prec, rec, f1, met, rule)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def f1_scores(Y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Micro and macro F1 of 0/1 predictions (N, K) against tags Y (N, K); macro averages the tags that
    have a positive in Y or in pred (others are undefined and skipped)."""
    Y, pred = np.asarray(Y).astype(bool), np.asarray(pred).astype(bool)
    tp, fp, fn = (pred & Y).sum(axis=0), (pred & ~Y).sum(axis=0), (~pred & Y).sum(axis=0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    defined = (tp + fp + fn) > 0
    per_tag = np.where(defined, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    return {"micro_f1": float(micro), "macro_f1": float(np.nanmean(per_tag)) if defined.any() else 0.0}


# ------------------------------------------------------------------------------------------ tagger


@dataclass
class Tagger:
    """A trained tagger: weights, per-tag thresholds, its model card (a JSON-able dict) and, for tabular
    data, the feature spec (:func:`tabular_spec`) inside the card."""

    classes: list[str]
    weights: LinearWeights
    thresholds: np.ndarray
    card: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, K) probabilities in [0, 1], columns in ``classes`` order."""
        return self.weights.predict_proba(X)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P (N, K) probabilities, tags (N, K) uint8 = P >= thresholds)."""
        P = self.predict_proba(X)
        return P, (P >= self.thresholds).astype(np.uint8)


def train_tagger(
    X: np.ndarray, Y: np.ndarray, classes: list[str], model: str, n_folds: int = 5, seed: int = 0,
    target_precision: float | None = None, C_grid: tuple[float, ...] | None = None,
) -> Tagger:
    """Train on features X (N, D) and curated tags Y (N, K): out-of-fold probabilities
    (:func:`dq_pipeline.model.out_of_fold_probabilities`, same folds and model as the audit) tune the
    per-tag thresholds, then the model is refitted on all N rows (at the C the cross-validation chose from
    ``C_grid``, if given). The card's ``metrics`` hold the
    out-of-fold micro/macro F1 at the tuned thresholds and at 0.5 (the tuned ones are chosen on the same
    predictions, so they are optimistic) and per-tag threshold, precision, recall, F1 and AUROC.
    TaggerError when there are fewer rows than folds."""
    from dq_pipeline.model import out_of_fold_probabilities

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y).astype(np.uint8)
    if Y.ndim != 2 or Y.shape[1] != len(classes) or len(X) != len(Y):
        raise TaggerError(f"X {X.shape}, Y {Y.shape} and {len(classes)} classes do not match")
    if len(X) < n_folds:
        raise TaggerError(f"only {len(X)} curated (not excluded) examples, fewer than the {n_folds} folds "
                          "needed to tune thresholds")
    oof = out_of_fold_probabilities(X, Y, n_folds=n_folds, seed=seed, model=model, C_grid=C_grid)
    thr = tune_thresholds(Y, oof.probabilities, target_precision)
    tuned = f1_scores(Y, oof.probabilities >= thr.values)
    half = f1_scores(Y, oof.probabilities >= 0.5)
    weights = fit_weights(X, Y, model, seed, C=oof.C)
    per_tag = [
        {"tag": c, "threshold": float(thr.values[j]), "n_positive": int(Y[:, j].sum()),
         "oof_precision": float(thr.precision[j]), "oof_recall": float(thr.recall[j]),
         "oof_f1": float(thr.f1[j]), "oof_auroc": None if np.isnan(oof.auroc[j]) else float(oof.auroc[j]),
         "target_met": bool(thr.target_met[j]), "constant": bool(weights.constant[j])}
        for j, c in enumerate(classes)
    ]
    card = {
        "classes": list(classes),
        "thresholds": {c: float(t) for c, t in zip(classes, thr.values)},
        "threshold_rule": thr.rule,
        "model": model,
        "C": oof.C,
        "n_folds": n_folds,
        "seed": seed,
        "n_train": len(X),
        "n_features": int(X.shape[1]),
        "metrics": {
            "oof_micro_f1": tuned["micro_f1"], "oof_macro_f1": tuned["macro_f1"],
            "oof_micro_f1_at_0.5": half["micro_f1"], "oof_macro_f1_at_0.5": half["macro_f1"],
            "per_tag": per_tag,
        },
    }
    return Tagger(list(classes), weights, thr.values.astype(np.float64), card)


# --------------------------------------------------------------------------------- tabular features


def tabular_spec(transformer: Any) -> dict[str, Any]:
    """JSON-able parameters of a fitted ColumnTransformer from
    :func:`dq_pipeline.embed.tabular.build_tabular_transformer`: per numeric column its median, mean
    and scale; per one-hot column its most frequent value and its output categories (plus whether an
    'infrequent' column follows). :func:`tabular_features` rebuilds its ``transform`` from this."""
    blocks = []
    for name, pipe, columns in transformer.transformers_:
        if name == "remainder" or pipe == "drop":
            continue
        steps = dict(pipe.steps)
        if name == "numeric":
            imputer, scaler = steps["simpleimputer"], steps["standardscaler"]
            blocks.append({"kind": "numeric", "columns": [str(c) for c in columns],
                           "median": imputer.statistics_.astype(float).tolist(),
                           "mean": scaler.mean_.astype(float).tolist(),
                           "scale": scaler.scale_.astype(float).tolist()})
        else:
            imputer, encoder = steps["simpleimputer"], steps["onehotencoder"]
            infrequent = getattr(encoder, "infrequent_categories_", None) or [None] * len(columns)
            cols = []
            for j, column in enumerate(columns):
                rare = set() if infrequent[j] is None else {str(v) for v in infrequent[j]}
                cats = [str(v) for v in encoder.categories_[j]]
                cols.append({"column": str(column), "most_frequent": str(imputer.statistics_[j]),
                             "categories": [c for c in cats if c not in rare],
                             "infrequent": sorted(rare)})
            blocks.append({"kind": "one_hot", "columns": cols})
    return {"blocks": blocks}


def tabular_columns(spec: dict[str, Any]) -> dict[str, str]:
    """Feature column -> 'numeric' or 'categorical', as the spec encodes them."""
    out: dict[str, str] = {}
    for block in spec["blocks"]:
        if block["kind"] == "numeric":
            out.update({c: "numeric" for c in block["columns"]})
        else:
            out.update({c["column"]: "categorical" for c in block["columns"]})
    return out


def tabular_features(spec: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """(N, D) features of ``frame`` as the fitted transformer of ``spec`` gives them: numeric cells
    (float, NaN = missing -> median) standardised; categorical cells compared as strings (missing -> most
    frequent), one-hot over the training categories; a value rare in training sets the shared
    'infrequent' column, an unseen one none (as OneHotEncoder(handle_unknown='ignore'))."""
    from dq_pipeline.embed.tabular import _to_category_strings, _to_float

    parts = []
    for block in spec["blocks"]:
        if block["kind"] == "numeric":
            values = _to_float(frame[block["columns"]])
            median = np.asarray(block["median"])
            values = np.where(np.isnan(values), median, values)
            scale = np.asarray(block["scale"])
            parts.append((values - np.asarray(block["mean"])) / np.where(scale > 0, scale, 1.0))
            continue
        for col in block["columns"]:
            cells = _to_category_strings(frame[[col["column"]]])[:, 0]
            cells = np.array([col["most_frequent"] if pd.isna(v) else v for v in cells], dtype=object)
            cats = col["categories"]
            out = np.zeros((len(frame), len(cats) + (1 if col["infrequent"] else 0)))
            index = {c: j for j, c in enumerate(cats)}
            rare = set(col["infrequent"])
            for i, v in enumerate(cells):
                j = index.get(v)
                if j is not None:
                    out[i, j] = 1.0
                elif v in rare:
                    out[i, -1] = 1.0  # rare in training: the shared 'infrequent' column (unseen: all zero)
            parts.append(out)
    return np.hstack(parts) if parts else np.zeros((len(frame), 0))


def fit_tabular_spec(examples: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    """Fit the audit's tabular transformer on ``examples[columns]`` (as the ``features`` asset does)
    and return its :func:`tabular_spec`."""
    from dq_pipeline.embed.tabular import build_tabular_transformer

    transformer = build_tabular_transformer(examples, columns)
    used = [c for _, _, cols in transformer.transformers for c in cols]
    transformer.fit(examples[used])
    return tabular_spec(transformer)


# ----------------------------------------------------------------------------------------- artifact


def models_root(db_path: str | Path) -> Path:
    """Folder of the taggers trained on audits of ``db_path``: ``<db file>.models``."""
    return Path(f"{db_path}.models")


def embedder_card(modality: str, text_model: str, image_model: str, precision: str = "float32") -> dict[str, Any]:
    """Name, identity and precision of the features' embedder: for text/image the embedding cache's namespace
    (``model_identity(name, modality, precision)``: name, package pins, preprocessing key, bfloat16) and the
    resolved ``precision`` (an ``embedding_precision`` value), which new inputs are embedded in; for tabular the
    ColumnTransformer (its parameters are the card's ``tabular`` spec)."""
    from dq_pipeline.embed import resolved_precision
    from dq_pipeline.embed.cache import model_identity

    if modality in ("text", "image"):
        name = text_model if modality == "text" else image_model
        resolved = resolved_precision(precision, modality)
        return {"name": name, "identity": model_identity(name, modality, resolved), "precision": resolved}
    return {"name": "ColumnTransformer", "identity": "tabular spec in this card"}


def dataset_card(manifest: Any, examples: pd.DataFrame, text_model: str, image_model: str,
                 precision: str = "float32") -> dict[str, Any]:
    """The model-card fields that describe the data a tagger reads: ``modality``, ``source`` (file name),
    ``embedder`` (:func:`embedder_card`), ``input`` (labels column and separator, id / text / image
    column, tabular feature and categorical columns) and, for tabular data, ``tabular``: the spec of the
    audit's ColumnTransformer fitted on ``examples`` (the ingested rows, as the ``features`` asset fits it).
    ``manifest`` is a :class:`dq_pipeline.manifest.DatasetManifest`."""
    inputs: dict[str, Any] = {"labels_column": manifest.labels_column, "separator": manifest.separator,
                              "id_column": manifest.id_column, "text_column": manifest.text_column,
                              "image_column": manifest.image_column}
    card: dict[str, Any] = {"modality": manifest.modality, "source": manifest.source.name,
                            "embedder": embedder_card(manifest.modality, text_model, image_model, precision)}
    if manifest.modality == "tabular":
        spec = fit_tabular_spec(examples, [c for c in examples.columns if c not in ("example_id", "row_number", "tags")])
        inputs["feature_columns"] = list(tabular_columns(spec))
        inputs["categorical_columns"] = [c for c in manifest.categorical_columns if c in inputs["feature_columns"]]
        card["tabular"] = spec
    card["input"] = inputs
    return card


def save_tagger(tagger: Tagger, root: str | Path, dataset: str, run_id: str) -> Path:
    """Write ``<root>/<dataset>/<run_id>/`` (weights.npz + model_card.json, replaced as a whole) and point
    ``<root>/<dataset>/LATEST`` at it. Returns the folder. The card gets ``format_version``,
    ``dataset``, ``run_id`` and ``created_at`` (UTC, ISO 8601)."""
    folder = Path(root) / dataset / run_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    card = {"format_version": FORMAT_VERSION, "dataset": dataset, "run_id": run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **tagger.card,
            "weights": WEIGHTS_NAME}
    card["classes"] = list(tagger.classes)
    card["thresholds"] = {c: float(t) for c, t in zip(tagger.classes, tagger.thresholds)}
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_id}.", dir=folder.parent))
    try:
        w = tagger.weights
        np.savez(tmp / WEIGHTS_NAME, coef=w.coef.astype(np.float64), intercept=w.intercept.astype(np.float64),
                 constant=w.constant.astype(bool), constant_prob=w.constant_prob.astype(np.float64),
                 thresholds=np.asarray(tagger.thresholds, dtype=np.float64))
        (tmp / CARD_NAME).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    latest = folder.parent / LATEST_NAME
    tmp_latest = latest.with_name(f".{LATEST_NAME}.{os.getpid()}")
    tmp_latest.write_text(run_id + "\n", encoding="utf-8")
    os.replace(tmp_latest, latest)
    tagger.card = card
    return folder


def latest_folder(root: str | Path, dataset: str, how_to_build: str = "") -> Path:
    """``<root>/<dataset>/<run_id named in LATEST>``; TaggerError (saying how to build one) when absent."""
    pointer = Path(root) / dataset / LATEST_NAME
    hint = f"; build one: {how_to_build}" if how_to_build else ""
    if not pointer.is_file():
        raise TaggerError(f"no tagger for dataset {dataset!r}: {pointer} does not exist{hint}")
    run_id = pointer.read_text(encoding="utf-8").strip()
    folder = pointer.parent / run_id
    if not run_id or "/" in run_id or not (folder / CARD_NAME).is_file():
        raise TaggerError(f"{pointer} names run {run_id!r}, but {folder / CARD_NAME} does not exist{hint}")
    return folder


def load_tagger(folder: str | Path) -> Tagger:
    """Read a tagger written by :func:`save_tagger` (``allow_pickle=False``); TaggerError naming the file
    for a missing file, an unknown format version or arrays that do not match the card."""
    folder = Path(folder)
    card_path, weights_path = folder / CARD_NAME, folder / WEIGHTS_NAME
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TaggerError(f"{card_path}: cannot read the model card: {exc}") from exc
    version = card.get("format_version")
    if version != FORMAT_VERSION:
        raise TaggerError(f"{card_path}: format_version {version!r}; this dq_pipeline reads version "
                          f"{FORMAT_VERSION}: retrain the tagger")
    try:
        with np.load(weights_path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _WEIGHT_ARRAYS}
    except (OSError, KeyError, ValueError) as exc:
        raise TaggerError(f"{weights_path}: cannot read the weights ({type(exc).__name__}: {exc})") from exc
    classes = list(card.get("classes") or [])
    k, d = len(classes), card.get("n_features")
    shapes = {"coef": (d, k), "intercept": (k,), "constant": (k,), "constant_prob": (k,), "thresholds": (k,)}
    for name, shape in shapes.items():
        if arrays[name].shape != shape:
            raise TaggerError(f"{weights_path}: {name} has shape {arrays[name].shape}, the card "
                              f"({card_path.name}) says {shape}")
    weights = LinearWeights(arrays["coef"], arrays["intercept"], arrays["constant"].astype(bool),
                            arrays["constant_prob"])
    return Tagger(classes, weights, arrays["thresholds"], card)


# ------------------------------------------------------------------------------------------ predict


@dataclass
class PredictInput:
    """Rows read from a prediction input: ``frame`` (as read, for the output), ``fmt`` ('csv', 'tsv',
    'jsonl', 'parquet' or 'folder'), the payload per usable row and the problems of the others."""

    path: Path
    fmt: str
    frame: pd.DataFrame
    usable: np.ndarray  # (N,) bool
    problems: dict[int, str]
    payload: Any  # texts (list), image paths (list) or a feature frame


def _input_format(path: Path) -> str:
    from dq_pipeline.manifest import SOURCE_FORMATS

    if path.is_dir():
        return "folder"
    fmt = SOURCE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TaggerError(f"{path}: unsupported input; give a {', '.join(sorted(SOURCE_FORMATS))} file or a "
                          "folder of images")
    return fmt


def _missing_column(path: Path, frame: pd.DataFrame, missing: list[str], expected: str, card: dict[str, Any]) -> TaggerError:
    """The error for an input without the column(s) the model card expects, naming file, column and card."""
    available = [str(c) for c in frame.columns]
    near = [c for c in available if c.strip().casefold() == missing[0].strip().casefold()]
    hint = f" (did you mean {near[0]!r}? mind spaces and capitals)" if near else ""
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    shown = available[:12] + ([f"... {len(available)} in all"] if len(available) > 12 else [])
    return TaggerError(f"{path}: no column {missing[0]!r}{hint}{more}: the tagger of {card.get('dataset')!r} tags "
                       f"{card.get('modality')} rows and expects {expected} (model card {card.get('card_path')}); "
                       f"the file has columns {shown}")


def read_input(path: str | Path, card: dict[str, Any]) -> PredictInput:
    """Read a prediction input as the model card's dataset would be read: a CSV / TSV / JSONL / parquet
    file with the card's text or image column, or its feature columns (tabular), or a folder of images
    (image taggers). TaggerError naming the file and column on a mismatch; rows that cannot be tagged
    (empty text, unreadable image, non-numeric value in a numeric column) are kept with a problem."""
    import dataclasses

    from dq_pipeline import ingest
    from dq_pipeline.manifest import DatasetManifest, ManifestError

    path = Path(path)
    if not path.exists():
        raise TaggerError(f"{path}: no such file or folder")
    modality = card["modality"]
    inputs = card["input"]
    fmt = _input_format(path)
    if fmt == "folder":
        if modality != "image":
            raise TaggerError(f"{path} is a folder (of images?), but the tagger of {card.get('dataset')!r} "
                              f"tags {modality} rows: give a CSV/JSONL file with "
                              + (f"column {inputs['text_column']!r}" if modality == "text"
                                 else f"feature columns {inputs['feature_columns'][:10]}"))
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TaggerError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        frame = pd.DataFrame({"image": [str(p.relative_to(path)) for p in files]})
        return _image_rows(path, fmt, frame, [p.resolve() for p in files], "image")
    manifest = DatasetManifest(name=str(card.get("dataset")), folder=path.parent.resolve(), modality=modality,
                               source=path.resolve(), labels_column=inputs.get("labels_column") or "labels",
                               id_column=inputs.get("id_column"), text_column=inputs.get("text_column"),
                               image_column=inputs.get("image_column"))
    try:
        source = ingest._read(dataclasses.replace(manifest))  # same reader (and errors) as ingestion
    except ManifestError as exc:
        raise TaggerError(str(exc)) from exc
    frame = source.frame
    if fmt == "jsonl":  # the reader adds the manifest's columns that no record has: they are absent here
        keys = {k for line in path.read_text(encoding="utf-8-sig").split("\n") if line.strip()
                for k in json.loads(line)}
        frame = frame[[c for c in frame.columns if c in keys]]
    if len(frame) == 0:
        raise TaggerError(f"{path}: no rows to tag")
    clash = [c for c in frame.columns if c == LABELS_COLUMN or str(c).startswith(PROB_PREFIX)
             or c == PROBLEM_COLUMN]
    if clash:
        raise TaggerError(f"{path}: column {clash[0]!r} would be overwritten by the prediction's output "
                          f"({LABELS_COLUMN!r}, {PROB_PREFIX}<tag>); rename it")
    if modality == "text":
        column = inputs["text_column"]
        if column not in frame.columns:
            raise _missing_column(path, frame, [column], f"the text in column {column!r}", card)
        problems: dict[int, str] = {}
        texts = []
        for i, t in enumerate(frame[column].tolist()):
            if ingest._is_missing(t) or isinstance(t, ingest._CONTAINERS) or not str(t).strip():
                problems[i] = f"text column {column!r} is empty or not text ({ingest._shown(t)})"
            texts.append("" if ingest._is_missing(t) else str(t))
        usable = np.array([i not in problems for i in range(len(frame))])
        return PredictInput(path, fmt, frame, usable, problems, texts)
    if modality == "image":
        column = inputs["image_column"]
        if column not in frame.columns:
            raise _missing_column(path, frame, [column], f"image paths (relative to the file) in column {column!r}",
                                  card)
        paths = [None if ingest._is_missing(p) or not str(p).strip() else (path.parent / str(p).strip()).resolve()
                 for p in frame[column].tolist()]
        return _image_rows(path, fmt, frame, paths, column)
    spec = card["tabular"]
    kinds = tabular_columns(spec)
    missing = [c for c in inputs["feature_columns"] if c not in frame.columns]
    if missing:
        wanted = inputs["feature_columns"]
        raise _missing_column(path, frame, missing, f"its {len(wanted)} feature columns "
                              f"{wanted[:12] + (['...'] if len(wanted) > 12 else [])}", card)
    problems = {}
    payload = pd.DataFrame(index=frame.index)
    categorical = set(inputs.get("categorical_columns") or [])
    for column in inputs["feature_columns"]:
        cells = frame[column].tolist()
        if kinds.get(column) == "numeric":
            values = []
            for i, v in enumerate(cells):
                kind, x = ingest._number(v)
                if kind == "other" or (kind == "number" and not np.isfinite(x)) or abs(x) > ingest.MAX_ABS_VALUE:
                    problems.setdefault(i, f"column {column!r} = {ingest._shown(v)} is not a finite number (the "
                                           "column was numeric in training)")
                    x = np.nan
                values.append(x)
            payload[column] = np.asarray(values, dtype=np.float64)
        elif column in categorical:
            payload[column] = pd.Series([None if ingest._is_missing(v) else str(v) for v in cells],
                                        index=frame.index, dtype=object)
        else:
            payload[column] = frame[column]
    usable = np.array([i not in problems for i in range(len(frame))])
    return PredictInput(path, fmt, frame, usable, problems, payload)


def _image_rows(path: Path, fmt: str, frame: pd.DataFrame, files: list[Path | None], column: str) -> PredictInput:
    from dq_pipeline.embed.image import check_image

    problems: dict[int, str] = {}
    for i, f in enumerate(files):
        if f is None:
            problems[i] = f"image column {column!r} is empty"
            continue
        try:
            problem = check_image(f)
        except OSError as exc:
            problem = f"unreadable image: {f} ({exc})"
        if problem:
            problems[i] = f"{column}={frame[column].iloc[i]!r}: {problem}"
    usable = np.array([i not in problems for i in range(len(frame))])
    return PredictInput(path, fmt, frame, usable, problems, [str(f) if f else "" for f in files])


def input_features(rows: PredictInput, card: dict[str, Any], cache_dir: str | None = None) -> np.ndarray:
    """(M, D) features of the usable rows (M = rows.usable.sum()), embedded as the audit did: the card's
    text/image model through the embedding cache under ``<cache_dir>/embeddings``, or the card's
    tabular spec. Logs a WARNING when the embedder's identity (package versions, preprocessing) differs
    from the card's: the vectors may then differ from those the tagger was trained on."""
    modality = card["modality"]
    idx = np.flatnonzero(rows.usable)
    if modality == "tabular":
        return tabular_features(card["tabular"], rows.payload.iloc[idx].reset_index(drop=True))
    from dq_pipeline.embed.cache import EmbeddingCache, model_identity

    name = card["embedder"]["name"]
    precision = card["embedder"].get("precision", "float32")  # cards written before the setting: float32
    identity = model_identity(name, modality, precision)
    if identity != card["embedder"].get("identity"):
        log.warning("the %s embedder %r differs from the one the tagger was trained with (card: %s; now: %s): "
                    "predictions may be off; retrain the tagger", modality, name, card["embedder"].get("identity"),
                    identity)
    cache = EmbeddingCache(Path(cache_dir) / "embeddings") if cache_dir else None
    items = [rows.payload[i] for i in idx]
    if not items:
        return np.zeros((0, card["n_features"]))
    if modality == "text":
        from dq_pipeline.embed.text import embed_texts_cached

        return embed_texts_cached(items, name, cache, precision=precision)
    from dq_pipeline.embed.image import embed_images_cached

    return embed_images_cached(items, name, cache, precision=precision)


@dataclass
class Prediction:
    """Per input row: P (N, K) probabilities (NaN rows for rows that could not be tagged), tags (N lists)."""

    rows: PredictInput
    classes: list[str]
    P: np.ndarray
    tags: list[list[str] | None]


def predict_input(tagger: Tagger, path: str | Path, cache_dir: str | None = None) -> Prediction:
    """Read ``path`` (:func:`read_input`), embed its usable rows and tag them. TaggerError when no row
    can be tagged."""
    rows = read_input(path, tagger.card)
    if not rows.usable.any():
        first = next(iter(rows.problems.values()), "")
        raise TaggerError(f"{rows.path}: none of its {len(rows.frame)} rows can be tagged (first: {first})")
    X = input_features(rows, tagger.card, cache_dir)
    P_used, T_used = tagger.predict(X)
    n = len(rows.frame)
    P = np.full((n, len(tagger.classes)), np.nan)
    P[rows.usable] = P_used
    names = np.asarray(tagger.classes, dtype=object)
    tags: list[list[str] | None] = [None] * n
    for i, t in zip(np.flatnonzero(rows.usable), T_used):
        tags[i] = [str(c) for c in names[np.flatnonzero(t)]]
    return Prediction(rows, list(tagger.classes), P, tags)


def write_prediction(pred: Prediction, out: Any, separator: str = "|", fmt: str | None = None) -> None:
    """Write the input's rows plus ``predicted_labels`` and ``prob_<tag>`` (and ``predict_problem`` when
    a row could not be tagged) to ``out`` (a path, or a text stream for csv/tsv/jsonl), in the input's
    format (a folder of images gives CSV). Values are rounded to 6 decimals."""
    fmt = fmt or ("csv" if pred.rows.fmt == "folder" else pred.rows.fmt)
    rows = pred.rows
    probs = {f"{PROB_PREFIX}{c}": [None if np.isnan(p) else round(float(p), 6) for p in pred.P[:, j]]
             for j, c in enumerate(pred.classes)}
    problems = [rows.problems.get(i) for i in range(len(rows.frame))]
    if fmt == "jsonl":
        text = rows.path.read_text(encoding="utf-8-sig")
        records = [json.loads(line) for line in text.split("\n") if line.strip()]
        lines = []
        for i, record in enumerate(records):
            record[LABELS_COLUMN] = pred.tags[i]
            record.update({k: v[i] for k, v in probs.items()})
            if any(problems):
                record[PROBLEM_COLUMN] = problems[i]
            lines.append(json.dumps(record, ensure_ascii=False))
        _write_text(out, "\n".join(lines) + "\n")
        return
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        if rows.fmt == "folder":
            frame = rows.frame.copy()
        else:  # the cells as written (no NA parsing), so every input value is passed through unchanged
            frame = pd.read_csv(rows.path, sep=sep, dtype=str, keep_default_na=False, index_col=False,
                                encoding="utf-8-sig")
        frame[LABELS_COLUMN] = [None if t is None else separator.join(t) for t in pred.tags]
    else:  # parquet
        frame = rows.frame.copy()
        frame[LABELS_COLUMN] = pred.tags
    for k, v in probs.items():
        frame[k] = v
    if any(problems):
        frame[PROBLEM_COLUMN] = problems
    if fmt == "parquet":
        frame.to_parquet(out, index=False)
        return
    buffer = frame.to_csv(None, sep="," if fmt == "csv" else "\t", index=False, lineterminator="\n")
    _write_text(out, buffer)


def _write_text(out: Any, text: str) -> None:
    if hasattr(out, "write"):
        out.write(text)
        return
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
