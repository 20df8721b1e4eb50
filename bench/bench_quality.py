"""Label-error detection quality: planted errors in real multi-label datasets, cleanlab vs ours.

Usage::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_quality.py            # full (~15 min on 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_quality.py --quick    # smoke run (< 3 min)

See ``bench/README.md`` for what each noise model, method and metric means. In short: the given tags
of six real datasets are taken as the clean truth; a noise model (``bench/noise.py``) corrupts a
fraction of the examples; out-of-fold probabilities ``P`` are computed once per corrupted copy with
:func:`dq_pipeline.model.out_of_fold_probabilities`; every detection method is then run on the same
``P`` and scored against the known corrupted set (``bench/metrics.py``). Results go to
``bench/results/quality.md`` (tables) and ``bench/results/quality_runs.csv`` (one row per run x method).
Embeddings are computed once and cached as ``.npy`` under ``bench/results/.cache/``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread per worker; parallelism comes from --jobs

import argparse
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import metrics as bm  # noqa: E402
from dq_pipeline.ingest import parse_tags, tags_matrix  # noqa: E402
from bench import noise as bn  # noqa: E402

DATA = Path(os.environ.get("DQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / ".cache"
SUBSET_SEED = 0


# --------------------------------------------------------------------------------------------------
# datasets


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    modality: str  # tabular | text | image
    folder: str
    file: str
    n_full: int | None  # rows used in the full run (None = all)
    n_quick: int  # rows used with --quick
    column: str | None = None  # text / image column


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("yeast", "tabular", "mulan_yeast", "yeast.csv", None, 600),
    DatasetSpec("scene", "tabular", "mulan_scene", "scene.csv", None, 600),
    DatasetSpec("emotions", "tabular", "mulan_emotions", "emotions.csv", None, 593),
    DatasetSpec("miml", "image", "miml_natural_scenes", "labels.csv", 600, 300, "image"),
    DatasetSpec("goemotions", "text", "goemotions", "goemotions.csv", 2500, 600, "text"),
    DatasetSpec("tmdb", "text", "tmdb_movie_genres", "movies.csv", 2500, 600, "overview"),
)


@dataclass
class Dataset:
    name: str
    modality: str
    X: np.ndarray  # (N, D) features
    Y: np.ndarray  # (N, K) uint8 clean tags
    tags: list[str]


def _read(spec: DatasetSpec) -> pd.DataFrame:
    frame = pd.read_csv(DATA / spec.folder / spec.file, keep_default_na=False)
    if spec.name == "tmdb":
        frame = frame[frame["overview"].str.strip() != ""]
    return frame.reset_index(drop=True)


def _tag_matrix(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
    sets = [parse_tags(s, "|") for s in labels]
    tags = sorted({t for s in sets for t in s})
    return tags_matrix(sets, tags), tags


def _subset_rows(spec: DatasetSpec, Y: np.ndarray) -> np.ndarray:
    """Row positions of the full-run subset, in a seeded order (the quick subset is its prefix)."""
    rng = np.random.default_rng(SUBSET_SEED)
    n = len(Y)
    if spec.n_full is None or spec.n_full >= n:
        rows = np.arange(n)
    elif spec.modality == "image":  # stratified across tags
        from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

        split = MultilabelStratifiedShuffleSplit(
            n_splits=1, train_size=spec.n_full, test_size=n - spec.n_full, random_state=SUBSET_SEED
        )
        rows, _ = next(split.split(np.zeros((n, 1)), Y))
    else:
        rows = rng.choice(n, size=spec.n_full, replace=False)
    return rng.permutation(np.sort(rows))


def _features(spec: DatasetSpec, frame: pd.DataFrame, rows: np.ndarray, cache_rows: np.ndarray) -> np.ndarray:
    """Features of ``frame.iloc[rows]``; text/image embeddings cached for ``cache_rows`` (a superset)."""
    if spec.modality == "tabular":
        from dq_pipeline.embed.tabular import featurize_tabular

        sub = frame.iloc[rows].reset_index(drop=True)
        return featurize_tabular(sub, [c for c in sub.columns if c != "labels"])
    CACHE.mkdir(parents=True, exist_ok=True)
    for cand in (cache_rows, rows):
        path = CACHE / f"{spec.name}_{len(cand)}_seed{SUBSET_SEED}.npy"
        ids_path = path.with_suffix(".rows.npy")
        if path.exists() and ids_path.exists():
            cached_rows = np.load(ids_path)
            if np.array_equal(cached_rows[: len(rows)], rows):
                return np.load(path)[: len(rows)]
    t0 = time.perf_counter()
    if spec.modality == "text":
        from dq_pipeline.embed.text import embed_texts

        X = embed_texts(frame[spec.column].iloc[rows].astype(str).tolist())
    else:
        from dq_pipeline.embed.image import embed_images

        folder = DATA / spec.folder
        X = embed_images([folder / p for p in frame[spec.column].iloc[rows]])
    print(f"  embedded {len(rows)} {spec.name} items in {time.perf_counter() - t0:.0f}s", flush=True)
    path = CACHE / f"{spec.name}_{len(rows)}_seed{SUBSET_SEED}.npy"
    np.save(path, X)
    np.save(path.with_suffix(".rows.npy"), rows)
    return X


def load_dataset(spec: DatasetSpec, quick: bool = False) -> Dataset:
    """Features and clean tags of one benchmark dataset (subset as in the spec)."""
    frame = _read(spec)
    Y_all, tags = _tag_matrix(frame["labels"])
    full_rows = _subset_rows(spec, Y_all)
    rows = full_rows[: spec.n_quick] if quick else full_rows
    X = _features(spec, frame, rows, full_rows)
    Y = Y_all[rows]
    keep = Y.sum(axis=0) > 0  # a tag absent from the subset carries no signal
    return Dataset(spec.name, spec.modality, np.asarray(X, dtype=np.float64), Y[:, keep], [t for t, k in zip(tags, keep) if k])


# --------------------------------------------------------------------------------------------------
# methods


#: Our variants: keyword arguments of ``dq_pipeline.issues.label_issues.find_label_issues``.
OURS: dict[str, dict] = {
    # confident-learning flags + min pooling: the pipeline's default before this benchmark chose 'ensemble'
    "ours-default": {"method": "confident_learning"},
    "ours-ema": {"method": "confident_learning", "pooling": "ema"},
    "ours-product": {"method": "confident_learning", "pooling": "product"},
    "ours-thr": {"method": "confident_learning", "scoring": "threshold_normalized"},
    "ours-parity-flags": {"method": "prune_by_noise_rate"},
    "ours-knn": {"evidence": "knn", "method": "prune_by_noise_rate"},
    "ours-calibrated": {"evidence": "calibrated", "method": "prune_by_noise_rate", "pooling": "product"},
    "ours-cooc": {"evidence": "cooccurrence", "method": "prune_by_noise_rate", "pooling": "product"},
    "ours-cooc-knn": {"evidence": "cooccurrence_knn", "method": "prune_by_noise_rate", "pooling": "product"},
    "ours-ensemble": {"method": "ensemble"},
}
BASELINES = ("cleanlab", "parity", "cleanlab-e2e")
METHOD_ORDER = ("cleanlab-e2e", "cleanlab", "parity", *OURS)


@dataclass
class Output:
    scores: np.ndarray  # (N,) low = likely error
    flags: np.ndarray  # (N,) bool
    tag_scores: np.ndarray  # (N, K) low = likely wrong
    tag_flags: np.ndarray  # (N, K) bool
    seconds: float


def _labels_list(Y: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in Y]


def run_cleanlab(Y: np.ndarray, P: np.ndarray) -> Output:
    """cleanlab 2.9 itself, default arguments (labels converted to lists beforehand, not timed)."""
    from cleanlab.multilabel_classification import get_label_quality_scores
    from cleanlab.multilabel_classification.filter import find_label_issues, find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores_per_class

    labels = _labels_list(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "May not flag all label issues in class ..." on small tags
        t0 = time.perf_counter()
        scores = get_label_quality_scores(labels, P)
        flags = find_label_issues(labels, P, n_jobs=1)
        seconds = time.perf_counter() - t0
        tag_flags = np.asarray(find_multilabel_issues_per_class(labels, P, n_jobs=1), dtype=bool)  # (N, K)
        tag_scores = np.asarray(get_label_quality_scores_per_class(labels, P), dtype=np.float64)  # (N, K)
    if tag_flags.shape != Y.shape or tag_scores.shape != Y.shape:
        raise RuntimeError(f"unexpected cleanlab output shapes {tag_flags.shape}, {tag_scores.shape}")
    return Output(np.asarray(scores, float), np.asarray(flags, bool), tag_scores, tag_flags, seconds)


def run_parity(Y: np.ndarray, P: np.ndarray) -> Output:
    from dq_pipeline.issues import cleanlab_parity as cp

    t0 = time.perf_counter()
    result = cp.detect_parity(Y, P)
    seconds = time.perf_counter() - t0
    tag_flags = np.zeros(Y.shape, dtype=bool)
    tag_flags[result.details["example_index"], result.details["tag_index"]] = True
    return Output(result.scores, result.flags, np.where(Y, P, 1.0 - P), tag_flags, seconds)


def run_ours(Y: np.ndarray, P_evidence: np.ndarray, evidence_seconds: float, **kw) -> Output:
    from dq_pipeline.issues import label_issues as li

    t0 = time.perf_counter()
    result = li.find_label_issues(Y, P_evidence, **kw)
    seconds = time.perf_counter() - t0 + evidence_seconds
    tag_flags = np.zeros(Y.shape, dtype=bool)
    tag_flags[result.details["example_index"], result.details["tag_index"]] = True
    if kw.get("scoring") == "threshold_normalized":
        tag_scores = li.threshold_normalized_confidence(Y, P_evidence)
    else:
        tag_scores = li.self_confidence(Y, P_evidence)
    return Output(result.scores, result.flags, tag_scores, tag_flags, seconds)


def cleanlab_e2e_probabilities(X: np.ndarray, Y: np.ndarray, seed: int = 0, n_folds: int = 5) -> np.ndarray:
    """Out-of-fold P by cleanlab's multi-label tutorial recipe, with logistic regression.

    ``OneVsRestClassifier(LogisticRegression())`` (sklearn defaults: lbfgs, ``max_iter=100``, no feature
    scaling of its own) fitted on the same features, 5-fold ``StratifiedKFold(shuffle=True,
    random_state=seed)`` stratified on **one randomly chosen tag per example** (``random.seed(seed)``;
    an example without tags counts as an extra 'none' class), as in cleanlab's tutorial (which uses a
    random forest in place of the logistic regression). A tag constant in a training fold is predicted
    as that constant (cleanlab's recipe has no rule for it; sklearn would fail).
    """
    import random

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.multiclass import OneVsRestClassifier

    random.seed(seed)
    single = [random.choice(np.flatnonzero(row).tolist()) if row.any() else Y.shape[1] for row in Y]
    P = np.zeros(Y.shape, dtype=np.float64)
    kf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few members per class; lbfgs convergence (as users see them)
        for train, test in kf.split(X, single):
            Yt = Y[train]
            varying = np.flatnonzero(Yt.min(axis=0) != Yt.max(axis=0))
            for j in np.flatnonzero(Yt.min(axis=0) == Yt.max(axis=0)):
                P[test, j] = Yt[0, j]
            if varying.size == 1:
                clf = LogisticRegression().fit(X[train], Yt[:, varying[0]])
                P[np.ix_(test, varying)] = clf.predict_proba(X[test])[:, [1]]
            elif varying.size:
                clf = OneVsRestClassifier(LogisticRegression()).fit(X[train], Yt[:, varying])
                P[np.ix_(test, varying)] = clf.predict_proba(X[test])
    return P


# --------------------------------------------------------------------------------------------------
# one run = (dataset, noise model, rate, seed)


def run_one(data: Dataset, noise: str, rate: float, seed: int, e2e: bool = True) -> list[dict]:
    """Corrupt, compute P once, evaluate every method; one dict per method."""
    from dq_pipeline.issues import label_issues as li
    from dq_pipeline.model import out_of_fold_probabilities

    Yn, changed = bn.inject_noise(noise, data.Y, rate, seed, X=data.X)
    Yb = Yn.astype(bool)
    t0 = time.perf_counter()
    P = out_of_fold_probabilities(data.X, Yn, seed=seed, model="logreg").probabilities
    oof_seconds = time.perf_counter() - t0

    outputs: dict[str, Output] = {}
    if e2e:
        t0 = time.perf_counter()
        P_e2e = cleanlab_e2e_probabilities(data.X, Yn, seed=seed)
        e2e_oof = time.perf_counter() - t0
        outputs["cleanlab-e2e"] = run_cleanlab(Yn, P_e2e)
    outputs["cleanlab"] = run_cleanlab(Yn, P)
    outputs["parity"] = run_parity(Yn, P)
    evidence: dict[str, tuple[np.ndarray, float]] = {}
    for name, kw in OURS.items():
        kw = dict(kw)
        if kw.get("method") == "ensemble":  # = find_label_issues(method="ensemble"), from cached evidence
            for ev in ("knn", "cooccurrence_knn"):
                if ev not in evidence:
                    t0 = time.perf_counter()
                    evidence[ev] = (li.evidence_probabilities(Yb, P, ev, features=data.X, seed=seed), time.perf_counter() - t0)
            (P_cooc, t_cooc), (P_knn, t_knn) = evidence["cooccurrence_knn"], evidence["knn"]
            t0 = time.perf_counter()
            result = li.combine_evidence(Yb, P_cooc, P_knn)
            seconds = time.perf_counter() - t0 + t_cooc + t_knn
            tag_flags = np.zeros(Yb.shape, dtype=bool)
            tag_flags[result.details["example_index"], result.details["tag_index"]] = True
            outputs[name] = Output(result.scores, result.flags, li.ensemble_tag_scores(Yb, P_cooc, P_knn), tag_flags, seconds)
            continue
        ev = kw.pop("evidence", "model")
        if ev not in evidence:
            t0 = time.perf_counter()
            Pe = li.evidence_probabilities(Yb, P, ev, features=data.X, seed=seed)
            evidence[ev] = (Pe, time.perf_counter() - t0)
        outputs[name] = run_ours(Yb, *evidence[ev], **kw)

    is_error = changed.any(axis=1)
    base = {
        "dataset": data.name,
        "noise": noise,
        "rate": rate,
        "seed": seed,
        "n": len(Yn),
        "k": Yn.shape[1],
        "n_corrupted": int(is_error.sum()),
        "n_missing_true": int((changed & ~Yb).sum()),
        "n_incorrect_true": int((changed & Yb).sum()),
        "oof_seconds": oof_seconds,
    }
    clean_ref, par = outputs["cleanlab"], outputs["parity"]
    parity_check = {
        "parity_max_abs_score_diff": float(np.max(np.abs(clean_ref.scores - par.scores))),
        "parity_tag_flag_mismatches": int((clean_ref.tag_flags != par.tag_flags).sum()),
        "parity_example_flag_mismatches": int((clean_ref.flags != par.flags).sum()),
    }
    rows = []
    for name, out in outputs.items():
        row = dict(base, method=name, seconds=out.seconds)
        if name == "cleanlab-e2e":
            row["oof_seconds"] = e2e_oof
        row.update(bm.example_metrics(is_error, out.scores, out.flags))
        row.update(bm.tag_metrics(Yb, changed, out.tag_scores, out.tag_flags))
        if name == "parity":
            row.update(parity_check)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# report


def _fmt(x: float, digits: int = 3) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def _pivot_table(df: pd.DataFrame, value: str, index: str = "dataset", mean_row: bool = True) -> str:
    """Markdown table of mean ``value`` per (index x method); methods as columns in METHOD_ORDER."""
    methods = [m for m in METHOD_ORDER if m in set(df["method"])]
    table = df.groupby([index, "method"])[value].mean().unstack("method")[methods]
    order = [d.name for d in DATASETS] if index == "dataset" else sorted(table.index)
    table = table.loc[[i for i in order if i in table.index]]
    if mean_row:
        # every (index) cell is a mean over the same number of runs, so the mean of means is fair
        table.loc["**mean**"] = table.mean(axis=0)
    best = table.idxmax(axis=1)
    lines = [f"| {index} | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
    for idx, row in table.iterrows():
        cells = [f"**{_fmt(v)}**" if m == best[idx] else _fmt(v) for m, v in row.items()]
        lines.append(f"| {idx} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _method_table(df: pd.DataFrame, columns: list[str], labels: list[str]) -> str:
    methods = [m for m in METHOD_ORDER if m in set(df["method"])]
    table = df.groupby("method")[columns].mean().loc[methods]
    lines = ["| method | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for m, row in table.iterrows():
        lines.append(f"| {m} | " + " | ".join(_fmt(v, 1 if c == "n_flagged" else 3) for c, v in row.items()) + " |")
    return "\n".join(lines)


def _winner(df: pd.DataFrame) -> tuple[str, str]:
    """Markdown summary of every ours-* variant against parity (paired by run) and the best variant."""
    key = ["dataset", "noise", "rate", "seed"]
    par = df[df["method"] == "parity"].set_index(key)
    rows = []
    for m in OURS:
        ours = df[df["method"] == m].set_index(key)
        diff = (ours["auprc"] - par["auprc"]).rename("d_auprc").to_frame()
        diff["d_f1"] = ours["tag_f1"] - par["tag_f1"]
        diff["d_f1_missing"] = ours["missing_f1"] - par["missing_f1"]
        diff["d_f1_incorrect"] = ours["incorrect_f1"] - par["incorrect_f1"]
        per_ds = diff.groupby(level="dataset")["d_auprc"].mean()
        rows.append(
            {
                "method": m,
                "mean": per_ds.mean(),
                "worst_dataset": per_ds.min(),
                "worst_name": per_ds.idxmin(),
                "wins": int((diff["d_auprc"] > 0).sum()),
                "runs": len(diff),
                "d_f1": diff["d_f1"].mean(),
                "d_f1_missing": diff["d_f1_missing"].mean(),
                "d_f1_incorrect": diff["d_f1_incorrect"].mean(),
                "per_ds": per_ds,
            }
        )
    lines = [
        "| variant | mean dAUPRC | worst dataset dAUPRC | runs won | d tag-F1 | d F1 missing | d F1 incorrect | target met |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: -r["mean"]):
        met = r["mean"] >= 0.05 and r["worst_dataset"] >= -0.01 and r["d_f1"] > 0
        lines.append(
            f"| {r['method']} | {r['mean']:+.3f} | {r['worst_dataset']:+.3f} ({r['worst_name']}) | "
            f"{r['wins']}/{r['runs']} | {r['d_f1']:+.3f} | {r['d_f1_missing']:+.3f} | {r['d_f1_incorrect']:+.3f} | "
            f"{'yes' if met else 'no'} |"
        )
    best = max(rows, key=lambda r: r["mean"])
    per_ds = " · ".join(f"{d} {v:+.3f}" for d, v in best["per_ds"].items())
    verdict = (
        f"Best variant by mean example-level AUPRC: **{best['method']}** ({OURS[best['method']]}): "
        f"{best['mean']:+.3f} vs parity on average (mean over datasets of the per-run paired difference); "
        f"per dataset: {per_ds}; tag-level flag F1 {best['d_f1']:+.3f} (missing {best['d_f1_missing']:+.3f}, "
        f"incorrect {best['d_f1_incorrect']:+.3f}). Target (+0.05 mean, no dataset below -0.01, higher "
        f"tag F1): **{'met' if best['mean'] >= 0.05 and best['worst_dataset'] >= -0.01 and best['d_f1'] > 0 else 'not met'}**."
    )
    return "\n".join(lines), verdict


def write_report(df: pd.DataFrame, command: str, elapsed: float, args: argparse.Namespace) -> str:
    import cleanlab
    import sklearn

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sizes = df.groupby("dataset")[["n", "k"]].first()
    ds_line = ", ".join(f"{d} {int(sizes.loc[d, 'n'])}x{int(sizes.loc[d, 'k'])}" for d in [s.name for s in DATASETS] if d in sizes.index)
    par = df[df["method"] == "parity"]
    winner_table, verdict = _winner(df)
    parts = [
        f"# Label-error detection quality{' (quick)' if args.quick else ''}: planted errors, cleanlab vs ours",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s) (shared), {platform.platform()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"cleanlab {cleanlab.__version__}; {args.jobs} worker process(es); {now}; wall time {elapsed / 60:.1f} min.  ",
        f"Datasets (examples x tags): {ds_line}. Noise models: {', '.join(args.noise)}; rates "
        f"{', '.join(str(r) for r in args.rates)} of the examples; seeds {', '.join(str(s) for s in args.seeds)} "
        f"({df.groupby(['dataset', 'noise', 'rate', 'seed']).ngroups} runs). P = 5-fold out-of-fold "
        "`dq_pipeline.model.out_of_fold_probabilities` (standardised one-vs-rest logistic regression), computed "
        "once per run and shared by every method except cleanlab-e2e. What each method, noise model and "
        "metric means: `bench/README.md`. Raw rows: `bench/results/quality_runs.csv`.",
        "",
        "## Verdict",
        "",
        verdict,
        "",
        "Every ours-* variant against parity (paired per run; dAUPRC = example-level AUPRC difference, "
        "'worst dataset' = lowest per-dataset mean difference; d tag-F1 = per-tag flag F1 difference):",
        "",
        winner_table,
        "",
        "## Example-level AUPRC (mean over noise models, rates and seeds; best per row in bold)",
        "",
        _pivot_table(df, "auprc"),
        "",
    ]
    for noise in args.noise:
        parts += [f"### Noise model: {noise}", "", _pivot_table(df[df["noise"] == noise], "auprc"), ""]
    parts += [
        "### By corruption rate (mean over datasets, noise models, seeds)",
        "",
        _pivot_table(df, "auprc", index="rate", mean_row=False),
        "",
        "## Other example-level metrics (mean over all runs)",
        "",
        "prec@T = precision among the T lowest-scored examples (T = number corrupted); precision / recall / "
        "F1 / n flagged refer to the method's own flagged set.",
        "",
        _method_table(
            df,
            ["auroc", "auprc", "prec_at_t", "precision", "recall", "f1", "n_flagged"],
            ["AUROC", "AUPRC", "prec@T", "flag precision", "flag recall", "flag F1", "n flagged"],
        ),
        "",
        "## Tag level (mean over all runs)",
        "",
        "Over (example, tag) pairs; score = the method's per-tag score (self-confidence of the probabilities it "
        "uses; threshold-normalised for ours-thr), flags = its per-tag flags. 'missing' = pairs given absent "
        "(error = truly present), 'incorrect' = pairs given present (error = truly absent).",
        "",
        _method_table(
            df,
            ["tag_auprc", "tag_f1", "missing_auprc", "missing_precision", "missing_recall", "missing_f1",
             "incorrect_auprc", "incorrect_precision", "incorrect_recall", "incorrect_f1"],
            ["tag AUPRC", "tag F1", "missing AUPRC", "missing P", "missing R", "missing F1",
             "incorrect AUPRC", "incorrect P", "incorrect R", "incorrect F1"],
        ),
        "",
        "### Tag-level flag F1 per dataset",
        "",
        _pivot_table(df, "tag_f1"),
        "",
        "## Parity check (cleanlab 2.9 vs `cleanlab_parity` on the same P)",
        "",
        f"Over {len(par)} runs: max |score difference| = {par['parity_max_abs_score_diff'].max():.3g}; "
        f"(example, tag) flags that differ: {int(par['parity_tag_flag_mismatches'].sum())}; "
        f"example flags that differ: {int(par['parity_example_flag_mismatches'].sum())}.",
        "",
        "## Time (mean seconds per run, detection only unless stated)",
        "",
        _method_table(df, ["seconds"], ["seconds"]),
        "",
        f"Out-of-fold P (ours, shared): {df[df['method'] == 'parity']['oof_seconds'].mean():.2f} s per run; "
        + (
            f"cleanlab-e2e's own cross-validation: {df[df['method'] == 'cleanlab-e2e']['oof_seconds'].mean():.2f} s per run. "
            if "cleanlab-e2e" in set(df["method"])
            else ""
        )
        + "Stacked / kNN variants include the time to build their probabilities.",
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one rate, small subsets (< 3 min)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--datasets", nargs="+", default=[d.name for d in DATASETS])
    parser.add_argument("--noise", nargs="+", default=list(bn.NOISE_MODELS))
    parser.add_argument("--rates", nargs="+", type=float, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--no-e2e", action="store_true", help="skip cleanlab-e2e (its own cross-validation)")
    parser.add_argument("--out", default=None, help="markdown output (default bench/results/quality[_quick].md)")
    args = parser.parse_args(argv)
    args.rates = args.rates or ([0.1] if args.quick else [0.05, 0.1, 0.2])
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    suffix = "_quick" if args.quick else ""
    out_md = Path(args.out) if args.out else RESULTS / f"quality{suffix}.md"
    out_csv = out_md.with_name(out_md.stem.replace("quality", "quality_runs") + ".csv")

    from joblib import Parallel, delayed

    start = time.perf_counter()
    specs = [d for d in DATASETS if d.name in args.datasets]
    data = {}
    for spec in specs:
        data[spec.name] = load_dataset(spec, quick=args.quick)
        print(f"{spec.name}: {data[spec.name].X.shape[0]} examples, {data[spec.name].Y.shape[1]} tags, "
              f"{data[spec.name].X.shape[1]} features", flush=True)
    tasks = [(name, noise, rate, seed) for name in data for noise in args.noise for rate in args.rates for seed in args.seeds]
    # biggest datasets first so the pool drains evenly
    tasks.sort(key=lambda t: -data[t[0]].X.shape[0] * data[t[0]].Y.shape[1])
    print(f"{len(tasks)} runs on {args.jobs} worker(s)", flush=True)
    done = []
    results = Parallel(n_jobs=args.jobs, return_as="generator_unordered", verbose=0)(
        delayed(run_one)(data[name], noise, rate, seed, not args.no_e2e) for name, noise, rate, seed in tasks
    )
    for rows in results:
        done.append(rows)
        r = rows[0]
        if len(done) % 10 == 0 or len(done) == len(tasks):
            print(f"  {len(done)}/{len(tasks)} runs ({time.perf_counter() - start:.0f}s) last: {r['dataset']} "
                  f"{r['noise']} {r['rate']} seed {r['seed']}", flush=True)
    df = pd.DataFrame([row for rows in done for row in rows])
    df = df.sort_values(["dataset", "noise", "rate", "seed", "method"]).reset_index(drop=True)
    elapsed = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    report = write_report(df, command, elapsed, args)
    out_md.write_text(report)
    print(report)
    print(f"wrote {out_md} and {out_csv} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
