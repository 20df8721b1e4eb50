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
#: The audit's cross-validation fits every value at once (one joint fit of G x K columns per fold) and keeps the one
#: with the lowest out-of-fold log-loss against the given tags, one value per dataset: the best C varies from 0.003
#: (TMDb texts) to 0.1 (flags) across the benchmark datasets (bench/results/regularization.md). Chosen on the
#: validation half of the quality benchmark against DEFAULT_C alone and against one value per tag
#: (bench/README.md, "The classifier's C per dataset").
DEFAULT_C_GRID: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1)
#: With a C grid, one joint fit takes as many grid values as keep training rows x columns within this (the fit's
#: float32 temporaries are that size): all four at once on 54k texts x 28 tags, one at a time (the memory of a
#: plain fit) on 1M rows x 40 tags.
GRID_FIT_CELLS: int = 1 << 25
#: Once this many held-out rows have been predicted at every grid value, the value is chosen on them and the
#: remaining folds fit only it: every benchmark dataset (up to 2,500 rows) tries the grid in all folds, the full
#: GoEmotions (54k) in its first fold only: its cold audit's cross-validation took 4.0 s at C = 0.03 alone, 8.3 s
#: with the grid in every fold, 4.2 s with this (bench/results/scale_text.md).
GRID_CHOOSE_ROWS: int = 10_000


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
    #: The L2 strength behind the probabilities (with a ``C_grid``: the chosen value).
    C: float | None = None
    #: {grid value: out-of-fold log-loss against the given tags (mean over the cells of the held-out rows the choice
    #: saw)}; empty without a grid.
    C_log_loss: dict[float, float] = field(default_factory=dict)


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


def make_model(name: str = DEFAULT_MODEL, seed: int = DEFAULT_SEED, C: float | None = None):
    """A fresh multi-label estimator (fit(X, Y) / predict_proba(X) -> (N, K)) by name.

    ``logreg``: standardised features + one-vs-rest logistic regression (cleanlab's recipe) at
    :data:`DEFAULT_C`.
    ``fast_logreg``: the same L2 logistic regression (same C, tol) for all tags at once with
    Newton-preconditioned, lockstep per-tag L-BFGS, per-iteration products in float32
    (:class:`dq_pipeline.fast_model.JointLogisticRegression`); ``fast_logreg_f64``: the same in
    float64. ``joint_logreg`` / ``joint_logreg_precond``: one scipy L-BFGS-B over the summed
    objective, without / with preconditioning. ``fast_logreg_pca``: ``fast_logreg`` on at most 256
    principal directions (a different, rank-limited model). ``C``: another L2 strength than the model's own.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logreg":
        return make_pipeline(
            StandardScaler(),
            OneVsRestClassifier(LogisticRegression(C=DEFAULT_C if C is None else C, max_iter=1000,
                                                   random_state=seed)),
        )
    if name in FAST_MODELS:
        from dq_pipeline.fast_model import JointLogisticRegression

        return JointLogisticRegression(seed=seed, **{**FAST_MODELS[name], **({} if C is None else {"C": C})})
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
    C_grid: tuple[float, ...] | None = None,
) -> OutOfFold:
    """K-fold out-of-fold probabilities for every (example, tag).

    X: (N, D) finite features; Y: (N, K) 0/1 given tags, K >= 1 (a single tag may come as (N,)).
    Returns probabilities (N, K). A tag that is constant within a training fold (present in every row
    or in none) is predicted as that constant's prevalence; a fold where every tag is constant fits no
    model. ``progress(done_folds, n_folds)`` is called after each fold; ``note(message)`` gets a start line, a
    heartbeat every 10 s and the time taken of the fold assignment, which reports no count (~15 s at 1M rows); what
    each fold did (time, the
    fast model's basis) is in ``fit_info`` and logged at INFO.

    ``C_grid`` (fast models only; the audit passes :data:`DEFAULT_C_GRID`; None: the model's own C): every fold
    fits each tag at every grid value at once (joint fits of G x K columns, split by :data:`GRID_FIT_CELLS`), and
    the result is the value with the lowest out-of-fold log-loss against the given tags (mean over all cells;
    ties: the first). Once :data:`GRID_CHOOSE_ROWS` held-out rows have been predicted at every value, the choice
    is made on them and the remaining folds fit only the chosen value. ``C`` and ``C_log_loss`` (on the rows the
    choice saw) of the result say which.

    ValueError for a non-finite X (naming the row and column), a Y that is not 0/1, or mismatched lengths.
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
    grid = np.asarray(C_grid if C_grid is not None else [], dtype=np.float64)
    if C_grid is not None:
        if model not in FAST_MODELS or grid.ndim != 1 or grid.size == 0 or np.any(grid <= 0):
            raise ValueError(f"C_grid needs a fast model ({list(FAST_MODELS)}) and positive values, got "
                             f"{model!r} and {C_grid!r}")
    G = max(1, grid.size)
    with heartbeat(note, f"cross-validation: assigning {len(Y):,} rows x {Y.shape[1]} tags to {n_folds} "
                        "multilabel-stratified folds"):
        folds = multilabel_folds(Y, n_folds, seed)
    # one slab per grid value; float32 above 2^25 cells in all (1M x 40 x 4 values: 640 MB instead of 1.3 GB)
    P_all = np.zeros((G, *Y.shape), dtype=np.float64 if G * Y.size <= (1 << 25) else np.float32)
    info: list[dict] = []
    tried = np.arange(grid.size)  # grid values this fold fits (all, until the choice is made)
    scored = np.zeros(len(Y), dtype=bool)  # held-out rows predicted at every grid value
    best: int | None = None
    for k in range(n_folds):
        if grid.size > 1 and best is None and scored.sum() >= GRID_CHOOSE_ROWS:
            best = int(np.argmin(_grid_log_losses(Y, P_all, scored)))
            tried = np.array([best])
        started = time.perf_counter()
        train, test = folds != k, folds == k
        Yt = Y[train]
        const = (Yt.min(axis=0) == Yt.max(axis=0))
        varying = np.flatnonzero(~const)
        fold_info: dict = {"fold": k, "n_train": int(train.sum()), "n_features": X.shape[1],
                           "constant_tags": np.flatnonzero(const).tolist()}
        if varying.size and grid.size:
            from dq_pipeline.fast_model import JointLogisticRegression

            # as many grid values per joint fit as keep its (rows x columns) temporaries within GRID_FIT_CELLS
            per_fit = max(1, GRID_FIT_CELLS // max(1, int(train.sum()) * varying.size))
            for g0 in range(0, len(tried), per_fit):
                part = tried[g0:g0 + per_fit]
                est = JointLogisticRegression(seed=seed, **{**FAST_MODELS[model],
                                                            "C": np.repeat(grid[part], varying.size)})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.fit(X[train], np.tile(Yt[:, varying], (1, len(part))))  # every tag at part[0], part[1]...
                    proba = est.predict_proba(X[test]).reshape(int(test.sum()), len(part), varying.size)
                for j, g in enumerate(part):
                    P_all[g][np.ix_(test, varying)] = proba[:, j]
            fold_info.update(getattr(est, "fit_info_", {}), C_tried=grid[tried].tolist())
        elif varying.size:
            est = make_model(model, seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter on tiny folds
                if varying.size == 1:  # a single column is a plain binary problem for sklearn
                    est.fit(X[train], Yt[:, varying[0]])
                    proba = est.predict_proba(X[test])[:, [1]]
                else:
                    est.fit(X[train], Yt[:, varying])
                    proba = est.predict_proba(X[test])
            P_all[0][np.ix_(test, varying)] = proba
            fold_info.update(getattr(est, "fit_info_", {}))
        for j in np.flatnonzero(const):
            P_all[:, test, j] = Yt[:, j].mean()
        if best is None:
            scored |= test
        fold_info["seconds"] = time.perf_counter() - started
        info.append(fold_info)
        log.info("fold %d/%d: %s on %d x %d, %d constant tag(s), basis %s, %.2fs", k + 1, n_folds, model,
                 fold_info["n_train"], X.shape[1], len(fold_info["constant_tags"]), fold_info.get("basis", "-"),
                 fold_info["seconds"])
        if progress:
            progress(k + 1, n_folds)
    C_log_loss: dict[float, float] = {}
    if grid.size:
        losses = _grid_log_losses(Y, P_all, scored)
        best = int(np.argmin(losses)) if best is None else best  # argmin ties: the first
        P = P_all[best].astype(np.float64)
        C = float(grid[best])
        C_log_loss = {float(c): float(v) for c, v in zip(grid, losses)}
        log.info("C = %g chosen by out-of-fold log-loss on %d held-out rows: %s", C, int(scored.sum()),
                 ", ".join(f"{c:g}: {v:.4f}" for c, v in C_log_loss.items()))
    else:
        P = P_all[0]
        C = float(FAST_MODELS[model]["C"]) if model in FAST_MODELS else DEFAULT_C
    del P_all
    np.clip(P, 0.0, 1.0, out=P)
    return OutOfFold(probabilities=P, folds=folds, auroc=per_tag_auroc(Y, P), fit_info=tuple(info), C=C,
                     C_log_loss=C_log_loss)


def _grid_log_losses(Y: np.ndarray, P_all: np.ndarray, rows: np.ndarray) -> list[float]:
    """Mean log-loss on ``rows`` of each grid value's probabilities (first axis of P_all (G, N, K))."""
    return [_mean_log_loss(Y[rows], P_all[g][rows]) for g in range(len(P_all))]


def _mean_log_loss(Y: np.ndarray, P: np.ndarray, block: int = 65_536) -> float:
    """Mean binary log-loss over all cells of probabilities P (N, K) against 0/1 Y (N, K), P clipped to
    [1e-7, 1 - 1e-7]; computed in row blocks (no N x K float64 temporaries at 1M rows)."""
    total = 0.0
    for s in range(0, len(Y), block):
        p = np.clip(P[s:s + block].astype(np.float64), 1e-7, 1 - 1e-7)
        total -= float(np.where(Y[s:s + block] == 1, np.log(p), np.log1p(-p)).sum())
    return total / max(1, Y.size)
