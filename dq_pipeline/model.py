"""Cross-validated multi-label classifiers giving out-of-fold probabilities."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dq_pipeline.progress import heartbeat

log = logging.getLogger(__name__)

DEFAULT_N_FOLDS = 5
DEFAULT_SEED = 0
#: 'fast_logreg' fits the same L2 logistic regression as 'logreg' for all tags at once: 4.1-7.4x faster
#: cross-validation at equal planted-error AUPRC on 4 real datasets (bench/results/cv_speed.md, both at DEFAULT_C).
DEFAULT_MODEL = "fast_logreg"
#: L2 strength of the shipped classifiers (sklearn's C on standardised features, for 'logreg' and every fast
#: variant alike). Chosen on the validation half of the quality benchmark's datasets by out-of-fold log-loss
#: (bench/bench_regularization.py -> bench/results/regularization.md): sklearn's default C = 1, used until
#: 2026-12-07, over-fits every one of them (validation mean log-loss 0.448 vs 0.347 at 0.03).
DEFAULT_C = 0.03


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold predictions.

    probabilities : (N, K) float64 in [0, 1]; row i comes from a model that never saw example i.
    folds : (N,) int, the fold in which example i was held out.
    auroc : (K,) float64, per-tag out-of-fold AUROC (NaN where a tag has one class only).
    fit_info : one dict per fold: ``fold``, ``n_train``, ``n_features``, ``constant_tags`` (tags
        predicted by their training prevalence), ``seconds`` (fit + predict) and, for the fast models,
        the estimator's ``fit_info_`` (e.g. ``basis``: "gram" for wide input).
    """

    probabilities: np.ndarray
    folds: np.ndarray
    auroc: np.ndarray
    fit_info: tuple[dict, ...] = field(default=())


def multilabel_folds(Y: np.ndarray, n_folds: int = DEFAULT_N_FOLDS, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Assign each example to one of ``n_folds`` multilabel-stratified folds.

    Uses ``iterstrat.ml_stratifiers.MultilabelStratifiedKFold`` so every tag's positives are spread
    evenly. A single tag (K = 1, which iterstrat rejects as a 'binary' target) uses sklearn's
    ``StratifiedKFold`` on that tag instead: the same guarantee for one tag. Y: (N, K) 0/1, or (N,) for
    one tag. Returns (N,) int fold ids in [0, n_folds).
    """
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
    from sklearn.model_selection import StratifiedKFold

    Y = _as_tag_matrix(Y)
    n = Y.shape[0]
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if n < n_folds:
        raise ValueError(f"{n} examples are fewer than the {n_folds} folds")
    folds = np.full(n, -1, dtype=np.int64)
    if Y.shape[1] == 1:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():  # "least populated class has only m members": fine, as iterstrat
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            splits = list(splitter.split(np.zeros((n, 1)), Y[:, 0]))
    else:
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros((n, 1)), Y))
    for k, (_, test) in enumerate(splits):
        folds[test] = k
    return folds


def _as_tag_matrix(Y: np.ndarray, dtype: type = np.int64) -> np.ndarray:
    """Y (N, K) or (N,) of 0/1 (bool, int or float) -> (N, K) ``dtype`` (int64 by default); ValueError naming
    the first bad cell."""
    Y = np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[1] == 0:
        raise ValueError(f"Y must be (N, K) with at least one tag, got shape {Y.shape}")
    if Y.dtype == object or not (np.issubdtype(Y.dtype, np.number) or Y.dtype == bool):
        raise ValueError(f"Y must hold 0/1 numbers, got dtype {Y.dtype}")
    bad = ~np.isin(Y, (0, 1))
    if bad.any():
        i, k = np.argwhere(bad)[0]
        raise ValueError(f"Y must be 0/1: row {i}, tag {k} is {Y[i, k].item()!r}")
    return Y.astype(dtype)


def make_model(name: str = DEFAULT_MODEL, seed: int = DEFAULT_SEED):
    """A fresh multi-label estimator (fit(X, Y) / predict_proba(X) -> (N, K)) by name.

    ``logreg``: standardised features + one-vs-rest logistic regression (cleanlab's recipe) at
    :data:`DEFAULT_C`.
    ``fast_logreg``: the same L2 logistic regression (same C, tol) for all tags at once with
    Newton-preconditioned, lockstep per-tag L-BFGS, per-iteration products in float32
    (:class:`dq_pipeline.fast_model.JointLogisticRegression`); ``fast_logreg_f64``: the same in
    float64. ``joint_logreg`` / ``joint_logreg_precond``: one scipy L-BFGS-B over the summed
    objective, without / with preconditioning. ``fast_logreg_pca``: ``fast_logreg`` on at most 256
    principal directions (a different, rank-limited model).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(
            StandardScaler(),
            OneVsRestClassifier(LogisticRegression(C=DEFAULT_C, max_iter=1000, random_state=seed)),
        )
    if name in FAST_MODELS:
        from dq_pipeline.fast_model import JointLogisticRegression

        return JointLogisticRegression(seed=seed, **FAST_MODELS[name])
    raise ValueError(f"unknown model {name!r}; available: {list(MODELS)}")


#: Keyword arguments of :class:`dq_pipeline.fast_model.JointLogisticRegression` per model name.
FAST_MODELS: dict[str, dict] = {
    "fast_logreg": {"C": DEFAULT_C, "dtype": "float32", "history": 5},
    "fast_logreg_f64": {"C": DEFAULT_C, "history": 5},
    "joint_logreg": {"C": DEFAULT_C, "solver": "scipy", "precondition": False},
    "joint_logreg_precond": {"C": DEFAULT_C, "solver": "scipy"},
    "fast_logreg_pca": {"C": DEFAULT_C, "dtype": "float32", "history": 5, "n_components": 256},
}
MODELS = ("logreg", *FAST_MODELS)


def per_tag_auroc(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(K,) AUROC of P[:, k] against Y[:, k]; NaN for a tag with a single class.

    The Mann-Whitney form: (sum of the positives' ranks - n1 (n1 + 1) / 2) / (n1 n0), tied scores at their mean
    rank, which is sklearn's ``roc_auc_score`` (ties count one half) with one sort per tag instead of its
    curve (1M rows x 40 tags: ~2x faster)."""
    from scipy.stats import rankdata

    Y = np.asarray(Y)
    out = np.full(Y.shape[1], np.nan)
    for k in range(Y.shape[1]):
        pos = Y[:, k] != 0
        n1 = int(pos.sum())
        n0 = len(pos) - n1
        if n1 and n0:
            ranks = rankdata(P[:, k])
            out[k] = (ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return out


def out_of_fold_probabilities(
    X: np.ndarray,
    Y: np.ndarray,
    n_folds: int = DEFAULT_N_FOLDS,
    seed: int = DEFAULT_SEED,
    model: str = DEFAULT_MODEL,
    progress: Callable[[int, int], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> OutOfFold:
    """K-fold out-of-fold probabilities for every (example, tag).

    X: (N, D) finite features; Y: (N, K) 0/1 given tags, K >= 1 (a single tag may come as (N,)).
    Returns probabilities (N, K). A tag that is constant within a training fold (present in every row
    or in none) is predicted as that constant's prevalence; a fold where every tag is constant fits no
    model. ``progress(done_folds, n_folds)`` is called after each fold; ``note(message)`` gets a start line, a
    heartbeat every 10 s and the time taken of the fold assignment, which reports no count (~15 s at 1M rows); what
    each fold did (time, the
    fast model's basis) is in ``fit_info`` and logged at INFO. ValueError for a non-finite X (naming
    the row and column), a Y that is not 0/1, or mismatched lengths.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; available: {list(MODELS)}")
    X = np.asarray(X)
    if not np.issubdtype(X.dtype, np.number):
        X = X.astype(np.float64)  # ValueError for text cells
    Y = _as_tag_matrix(Y, np.uint8)  # 0/1 in one byte: at 1M x 40 tags, 40 MB instead of 320 MB (and its fold copies)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be (N, D) with D >= 1 features, got shape {X.shape}")
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} rows but Y has {len(Y)}")
    finite = np.isfinite(X).all(axis=1) if X.size <= (1 << 24) else np.concatenate(
        [np.isfinite(X[s:s + 65_536]).all(axis=1) for s in range(0, len(X), 65_536)])  # no N x D temporary
    if not finite.all():
        bad = ~np.isfinite(X)
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"X must be finite: row {i}, column {j} is {X[i, j].item()!r} "
                         f"({int(bad.sum())} non-finite values)")
    with heartbeat(note, f"cross-validation: assigning {len(Y):,} rows x {Y.shape[1]} tags to {n_folds} "
                        "multilabel-stratified folds"):
        folds = multilabel_folds(Y, n_folds, seed)
    P = np.zeros(Y.shape, dtype=np.float64)
    info: list[dict] = []
    for k in range(n_folds):
        started = time.perf_counter()
        train, test = folds != k, folds == k
        Yt = Y[train]
        const = (Yt.min(axis=0) == Yt.max(axis=0))
        varying = np.flatnonzero(~const)
        fold_info: dict = {"fold": k, "n_train": int(train.sum()), "n_features": X.shape[1],
                           "constant_tags": np.flatnonzero(const).tolist()}
        if varying.size:
            est = make_model(model, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter on tiny folds
                if varying.size == 1:  # a single column is a plain binary problem for sklearn
                    est.fit(X[train], Yt[:, varying[0]])
                    proba = est.predict_proba(X[test])[:, [1]]
                else:
                    est.fit(X[train], Yt[:, varying])
                    proba = est.predict_proba(X[test])
            P[np.ix_(test, varying)] = proba
            fold_info.update(getattr(est, "fit_info_", {}))
        for j in np.flatnonzero(const):
            P[test, j] = Yt[:, j].mean()
        fold_info["seconds"] = time.perf_counter() - started
        info.append(fold_info)
        log.info("fold %d/%d: %s on %d x %d, %d constant tag(s), basis %s, %.2fs", k + 1, n_folds, model,
                 fold_info["n_train"], X.shape[1], len(fold_info["constant_tags"]), fold_info.get("basis", "-"),
                 fold_info["seconds"])
        if progress:
            progress(k + 1, n_folds)
    np.clip(P, 0.0, 1.0, out=P)
    return OutOfFold(probabilities=P, folds=folds, auroc=per_tag_auroc(Y, P), fit_info=tuple(info))
