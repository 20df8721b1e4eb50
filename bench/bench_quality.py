"""Label-error detection quality: planted errors in real multi-label datasets.

Usage (from the repository root)::

    nice -n 10 .venv/bin/python bench/bench_quality.py --split test --workers 2        # the reported numbers
    nice -n 10 .venv/bin/python bench/bench_quality.py --split validation --workers 2  # for choosing defaults
    .venv/bin/python bench/bench_quality.py --split validation --quick                 # ~2 min smoke run
    .venv/bin/python bench/bench_quality.py --split validation --candidate mine=bench/my_variant.py:detect

The given tags of real datasets (``bench/datasets.py``, fixed validation / test split) are taken as
the clean truth; a noise model (``bench/noise.py``) corrupts a fraction of the examples; out-of-fold
probabilities ``P`` of the shipped default classifier are computed once per corrupted copy (cached on
disk under ``bench/.cache/``); every method runs on the same ``P`` and is scored against the known
corrupted set (``bench/metrics.py``). Methods: model-free baselines (``bench/baselines.py``),
cleanlab (library defaults; also 'cleanlab-e2e', cleanlab's own cross-validation recipe), ours-default
(``find_label_issues`` defaults) and candidates passed with ``--candidate``. See ``bench/README.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread per worker; parallelism comes from --workers

import argparse
import hashlib
import importlib
import importlib.util
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import baselines as bb  # noqa: E402
from bench import datasets as bd  # noqa: E402
from bench import metrics as bm  # noqa: E402
from bench import noise as bn  # noqa: E402

RESULTS = ROOT / "bench" / "results"
P_CACHE = bd.CACHE / "P"


def c_grid_tag() -> str:
    """Cache-key part naming the shipped C grid (the audit's and the tagger's cross-validation choose C from it)."""
    from dq_pipeline.model import DEFAULT_C_GRID

    return "grid" + "_".join(f"{c:g}" for c in DEFAULT_C_GRID)


def _p_kind() -> str:
    """Cache kind of the default P: names the shipped classifier's settings, so a changed default is recomputed."""
    from dq_pipeline.model import DEFAULT_C, DEFAULT_MODEL

    return f"P-{DEFAULT_MODEL}-C{DEFAULT_C:g}-{c_grid_tag()}"
RATES = (0.05, 0.1, 0.2)
SEEDS = (0, 1)
QUICK_DATASETS = {"validation": ("emotions", "flags-groupsA", "tmdb"), "test": ("flags-groupsB", "yeast", "goemotions"),
                  "all": ("emotions", "flags-groupsA", "flags-groupsB")}
BASELINES = ("rarity", "empty-first")
CLEANLABS = ("cleanlab", "cleanlab-e2e")
OURS = "ours-default"
#: Noise models for the out-of-family check beside the verdict (see write_report).
OUT_OF_FAMILY = ("neighbour_swap", "confusion")
#: Noise name of the unplanted runs: the dataset's tags as given, rate 0 (one run per dataset and seed, unless
#: --no-unplanted). What a method flags and estimates there is either real errors in the given tags or its own bias;
#: the planted-error bars count it as false flags (see write_report).
UNPLANTED = "none"


# --------------------------------------------------------------------------------------------------
# probabilities (cached)


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.shape).encode() + str(p.dtype).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()[:20]


def cached(kind: str, name: str, X: np.ndarray, Y: np.ndarray, seed: int, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    """``compute()`` cached on disk by (kind, X, Y, seed): returns (array, seconds it took when computed)."""
    path = P_CACHE / f"{name}_{kind}_{_digest(kind, X, Y, seed)}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["P"], float(z["seconds"])
    t0 = time.perf_counter()
    P = compute()
    seconds = time.perf_counter() - t0
    P_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, P=P, seconds=seconds)
    os.replace(tmp, path)
    return P, seconds


def default_probabilities(X: np.ndarray, Y: np.ndarray, seed: int) -> np.ndarray:
    """5-fold out-of-fold P of the shipped default classifier (``dq_pipeline.model`` defaults, C chosen from
    ``DEFAULT_C_GRID`` as the audit does)."""
    from dq_pipeline.model import DEFAULT_C_GRID, DEFAULT_MODEL, out_of_fold_probabilities

    return out_of_fold_probabilities(X, Y, seed=seed, model=DEFAULT_MODEL, C_grid=DEFAULT_C_GRID).probabilities


def cleanlab_e2e_probabilities(X: np.ndarray, Y: np.ndarray, seed: int = 0, n_folds: int = 5) -> np.ndarray:
    """Out-of-fold P by cleanlab's multi-label tutorial recipe, with logistic regression.

    ``OneVsRestClassifier(LogisticRegression())`` (sklearn defaults: lbfgs, ``max_iter=100``, no feature
    scaling of its own) on the same features, 5-fold ``StratifiedKFold(shuffle=True, random_state=seed)``
    stratified on one randomly chosen tag per example (an example without tags = an extra class). A tag
    constant in a training fold is predicted as that constant.
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
        warnings.simplefilter("ignore")
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
# methods


@dataclass
class Output:
    scores: np.ndarray  # (N,) low = likely error
    flags: np.ndarray | None  # (N,) bool, None = the method does not flag
    tag_flags: np.ndarray | None  # (N, K) bool, None = the method suggests nothing
    summary: dict
    seconds: float


def _labels_list(Y: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in Y]


def run_cleanlab(Y: np.ndarray, P: np.ndarray) -> Output:
    """cleanlab itself, default arguments: example scores and flags, per-tag flags (= its suggestions)."""
    from cleanlab.multilabel_classification import get_label_quality_scores
    from cleanlab.multilabel_classification.filter import find_label_issues, find_multilabel_issues_per_class

    labels = _labels_list(Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "May not flag all label issues in class ..." on small tags
        t0 = time.perf_counter()
        scores = get_label_quality_scores(labels, P)
        flags = find_label_issues(labels, P, n_jobs=1)
        seconds = time.perf_counter() - t0
        tag_flags = np.asarray(find_multilabel_issues_per_class(labels, P, n_jobs=1), dtype=bool)
    if tag_flags.shape != Y.shape:
        raise RuntimeError(f"unexpected cleanlab per-class flag shape {tag_flags.shape}")
    return Output(np.asarray(scores, float), np.asarray(flags, bool), tag_flags, {}, seconds)


def _tag_flags_from_details(details: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    tag_flags = np.zeros(shape, dtype=bool)
    if details is not None and len(details):
        tag_flags[details["example_index"].to_numpy(int), details["tag_index"].to_numpy(int)] = True
    return tag_flags


def result_output(result: Any, shape: tuple[int, int], seconds: float) -> Output:
    """Output from a ``find_label_issues``-like result (``scores``, ``flags``, ``details``, ``summary``)."""
    scores = np.asarray(result.scores, dtype=np.float64)
    if scores.shape != (shape[0],):
        raise ValueError(f"scores must be ({shape[0]},), got {scores.shape}")
    flags = np.asarray(result.flags, dtype=bool)
    return Output(scores, flags, _tag_flags_from_details(result.details, shape), dict(result.summary or {}), seconds)


def run_ours(Y: np.ndarray, P: np.ndarray, X: np.ndarray, seed: int) -> Output:
    """ours-default: ``find_label_issues`` with its defaults (interface contract of issue 10)."""
    from dq_pipeline.issues.label_issues import find_label_issues

    t0 = time.perf_counter()
    result = find_label_issues(Y, P, features=X, seed=seed)
    return result_output(result, Y.shape, time.perf_counter() - t0)


def load_candidate(spec: str) -> tuple[str, Callable]:
    """``[name=]module:function`` or ``[name=]path/file.py:function`` -> (name, function).

    The function is called as ``fn(Y, P, features=X, seed=seed)`` and must return what
    ``find_label_issues`` returns (``scores``, ``flags``, ``details`` with example_index / tag_index,
    ``summary``).
    """
    name, _, target = spec.rpartition("=")
    module_ref, sep, func = target.rpartition(":")
    if not sep or not module_ref or not func:
        raise ValueError(f"--candidate {spec!r}: expected [name=]module:function or [name=]file.py:function")
    if module_ref.endswith(".py"):
        path = Path(module_ref).resolve()
        if not path.exists():
            raise ValueError(f"--candidate {spec!r}: file {path} does not exist")
        mod_name = f"bench_candidate_{_digest(str(path))}"
        module = sys.modules.get(mod_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_ref)
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ValueError(f"--candidate {spec!r}: {module_ref} has no function {func!r}")
    return (name or func), fn


# --------------------------------------------------------------------------------------------------
# one run = (dataset, noise model, rate, seed)


def run_one(data: bd.Dataset, split: str, noise: str, rate: float, seed: int, e2e: bool, candidates: tuple[str, ...]) -> list[dict]:
    """Corrupt, get P (cache), evaluate every method; one dict per method (or one 'skipped' dict)."""
    base = {"split": split, "dataset": data.name, "modality": data.modality, "noise": noise, "rate": rate,
            "seed": seed, "n": len(data.Y), "k": data.Y.shape[1]}
    try:
        if noise == UNPLANTED:
            Yn, changed = data.Y.copy(), np.zeros(data.Y.shape, dtype=bool)
        else:
            Yn, changed = bn.inject_noise(noise, data.Y, rate, seed, X=data.X, groups=data.groups or None)
    except ValueError as exc:
        return [dict(base, method="(skipped)", skipped=str(exc))]
    Yb = Yn.astype(bool)
    is_error = changed.any(axis=1)
    plaus = bn.plausibility(data.Y, Yn, groups=data.groups or None)
    base.update(
        n_corrupted=int(is_error.sum()),
        true_rate=float(is_error.mean()),
        noise_implausible=plaus["implausible"],
        noise_empty=plaus["empty"],
        noise_card_out=plaus["card_out"],
        noise_group_broken=plaus["group_broken"],
        noise_unseen=plaus["unseen"],
        clean_unseen_loo=plaus["clean_unseen_loo"],
    )
    P, oof_seconds = cached(_p_kind(), data.name, data.X, Yn, seed, lambda: default_probabilities(data.X, Yn, seed))
    base["oof_seconds"] = oof_seconds

    outputs: dict[str, Output] = {}
    t0 = time.perf_counter()
    outputs["rarity"] = Output(bb.rarity_scores(Yn, seed), bb.rarity_flags(Yn), None, {}, time.perf_counter() - t0)
    t0 = time.perf_counter()
    outputs["empty-first"] = Output(bb.empty_first_scores(Yn, seed), bb.empty_first_flags(Yn), None, {}, time.perf_counter() - t0)
    outputs["cleanlab"] = run_cleanlab(Yn, P)
    if e2e:
        P_e2e, _ = cached("Pe2e", data.name, data.X, Yn, seed, lambda: cleanlab_e2e_probabilities(data.X, Yn, seed))
        outputs["cleanlab-e2e"] = run_cleanlab(Yn, P_e2e)
    outputs[OURS] = run_ours(Yb, P, data.X, seed)
    for spec in candidates:
        name, fn = load_candidate(spec)
        t0 = time.perf_counter()
        result = fn(Yb, P, features=data.X, seed=seed)
        outputs[name] = result_output(result, Yb.shape, time.perf_counter() - t0)

    rows = []
    for name, out in outputs.items():
        row = dict(base, method=name, seconds=out.seconds)
        row["auroc"] = bm.auroc(is_error, out.scores)
        row["auprc"] = bm.auprc(is_error, out.scores)
        row["prec_at_t"] = bm.precision_at(is_error, out.scores)
        row["best_f1"] = bm.best_f1(is_error, out.scores)
        if out.flags is not None:
            fm = bm.flag_metrics(is_error, out.flags)
            row["flagged_share"] = fm["n_flagged"] / len(is_error)
            row.update(precision=fm["precision"], recall=fm["recall"], f1=fm["f1"], n_flagged=fm["n_flagged"],
                       flag_ratio=bm.flag_ratio(fm["n_flagged"], fm["n_true"]))
        if out.tag_flags is not None:
            for prefix, mask in (("tag", np.ones_like(Yb)), ("missing", ~Yb), ("incorrect", Yb)):
                fm = bm.flag_metrics(changed[mask], out.tag_flags[mask])
                row[f"{prefix}_precision"], row[f"{prefix}_recall"], row[f"{prefix}_f1"] = fm["precision"], fm["recall"], fm["f1"]
            Ys = (Yb ^ out.tag_flags).astype(np.uint8)
            row.update(bm.suggestion_metrics(data.Y, Yn, Ys))
            changed_rows = (Ys != Yn).any(axis=1)
            bad = bn.implausible_sets(data.Y, Ys[changed_rows], data.groups or None)
            row["sugg_implausible"] = float(bad["implausible"].mean()) if changed_rows.any() else float("nan")
            row["sugg_empty"] = float(bad["empty"].mean()) if changed_rows.any() else float("nan")
        eer = out.summary.get("expected_error_rate")
        if eer is not None:
            row["expected_error_rate"] = float(eer)
            lo_hi = out.summary.get("expected_error_rate_interval")
            if lo_hi is not None and len(lo_hi) == 2:
                row["eer_lo"], row["eer_hi"] = float(lo_hi[0]), float(lo_hi[1])
                row["eer_covers"] = float(lo_hi[0] <= base["true_rate"] <= lo_hi[1])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# report


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)):
        return str(x)
    return f"{x:.{digits}f}"


def method_order(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["method"]))
    fixed = [m for m in (*BASELINES, *CLEANLABS, OURS) if m in present]
    return fixed + [m for m in present if m not in fixed]


def _table(frame: pd.DataFrame, index_name: str, digits: int = 3, bold_max: bool = False) -> str:
    cols = list(frame.columns)
    lines = [f"| {index_name} | " + " | ".join(map(str, cols)) + " |", "|---|" + "---:|" * len(cols)]
    for idx, row in frame.iterrows():
        best = row.astype(float).idxmax() if bold_max and row.notna().any() else None
        cells = [f"**{_fmt(v, digits)}**" if c == best else _fmt(v, digits) for c, v in row.items()]
        lines.append(f"| {idx} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pivot(df: pd.DataFrame, value: str, index: str, methods: list[str], order: list | None = None, mean_row: bool = True) -> pd.DataFrame:
    """Mean ``value`` per (index x method); 'mean' row = mean over index values (each equally weighted)."""
    sub = df[df["method"].isin(methods)]
    t = sub.groupby([index, "method"])[value].mean().unstack("method")
    t = t[[m for m in methods if m in t.columns]]
    if order is not None:
        t = t.loc[[i for i in order if i in t.index]]
    if mean_row and len(t):
        t.loc["**mean**"] = t.mean(axis=0)
    return t


def verdict(df: pd.DataFrame, methods: list[str]) -> tuple[str, pd.DataFrame]:
    """Issue 10's bars, computed per flagging method (ours-default and candidates) from ``df``.

    Every mean is over datasets (each dataset's mean over its runs, datasets equally weighted).
    """
    per_ds = df.groupby(["dataset", "method"])["auprc"].mean().unstack("method")
    cl = per_ds[[m for m in CLEANLABS if m in per_ds.columns]].max(axis=1)
    base = per_ds[[m for m in BASELINES if m in per_ds.columns]].max(axis=1)
    rows = []
    for m in methods:
        if m not in per_ds.columns:
            continue
        sub = df[df["method"] == m]
        d_cl = per_ds[m] - cl
        d_base = per_ds[m] - base
        ratio_by_rate = sub.groupby(["rate", "dataset"])["flag_ratio"].mean().groupby("rate").mean()
        in_range = sub["flag_ratio"].between(0.7, 1.5)
        f1_10 = sub[np.isclose(sub["rate"], 0.1)].groupby("dataset")["f1"].mean().mean()
        exact = sub.groupby("dataset")["sugg_exact_corrupted"].mean().mean()
        kept = sub.groupby("dataset")["sugg_kept_clean"].mean().mean()
        rows.append({
            "method": m,
            "AUPRC - best cleanlab (mean)": d_cl.mean(),
            "worst dataset vs best cleanlab": f"{d_cl.min():+.3f} ({d_cl.idxmin()})",
            "AUPRC - best baseline (mean)": d_base.mean(),
            "flagged/true per rate": " · ".join(f"{r:g}: {v:.2f}" for r, v in ratio_by_rate.items()),
            "runs with flagged/true in [0.7,1.5]": f"{int(in_range.sum())}/{int(sub['flag_ratio'].notna().sum())}",
            "flag F1 @ 0.10": f1_10,
            "exact-match corrupted": exact,
            "clean kept": kept,
            "_pass": {
                "AUPRC >= best cleanlab + 0.05": bool(d_cl.mean() >= 0.05),
                "AUPRC >= best baseline + 0.05": bool(d_base.mean() >= 0.05),
                "never below cleanlab on a dataset": bool((d_cl >= 0).all()),
                "flagged/true in [0.7, 1.5] at every rate": bool(len(ratio_by_rate) and ratio_by_rate.between(0.7, 1.5).all()),
                "flag F1 >= 0.5 at 10%": bool(f1_10 >= 0.5) if not np.isnan(f1_10) else False,
                "exact-match >= 0.5 on corrupted": bool(exact >= 0.5),
                "clean kept >= 0.98": bool(kept >= 0.98),
            },
        })
    if not rows:
        return "(no flagging method in the results)", pd.DataFrame()
    numbers = pd.DataFrame([{k: v for k, v in r.items() if k != "_pass"} for r in rows]).set_index("method")
    passes = pd.DataFrame([dict(method=r["method"], **{k: ("yes" if v else "**no**") for k, v in r["_pass"].items()}) for r in rows]).set_index("method")
    lines = []
    for r in rows:
        n_ok = sum(r["_pass"].values())
        lines.append(f"* **{r['method']}**: {n_ok} of {len(r['_pass'])} bars met"
                     + ("" if n_ok == len(r["_pass"]) else " — not met: " + "; ".join(k for k, v in r["_pass"].items() if not v)) + ".")
    text = "\n".join(lines) + "\n\n" + _table(passes, "method") + "\n\n" + _table(numbers, "method")
    return text, numbers


def ceiling_report(vdf: pd.DataFrame, df: pd.DataFrame, flag_methods: list[str], ds_order: list[str]) -> list[str]:
    """Report lines: how far each flagging bar is from what its method's ranking allows, and what the methods
    flag and estimate on the tags as given (the unplanted runs)."""
    parts: list[str] = []
    if "best_f1" in vdf.columns and flag_methods:
        sub = vdf[vdf["method"].isin(flag_methods)]
        per_rate = sub.groupby(["rate", "dataset", "method"])[["f1", "prec_at_t", "best_f1"]].mean() \
            .groupby(["rate", "method"]).mean()  # datasets weighted equally, as in the verdict
        per_rate.index = [f"{m} @ {r:g}" for r, m in per_rate.index]
        per_rate.columns = ["flag F1 (its own count)", "F1 at the true count (prec@T)", "best F1 of any threshold"]
        at10 = sub[np.isclose(sub["rate"], 0.1)]
        per_ds = at10.groupby(["dataset", "method"])["best_f1"].mean().unstack("method")[flag_methods]
        per_ds = per_ds.loc[[d for d in ds_order if d in per_ds.index]]
        per_ds.loc["**mean**"] = per_ds.mean()
        parts += ["## What the flag bars need: the ranking's ceiling (plausible noise)", "",
                  "A flag count is a cut-off in the method's own ranking. *F1 at the true count* flags exactly as many "
                  "examples as were corrupted (perfect calibration); *best F1 of any threshold* picks the cut-off knowing "
                  "the truth (`bench/metrics.py: best_f1`; tied scores go in or out together). A perfectly calibrated count "
                  "gets the second column; no count rule on this ranking, calibrated or not, gets more than the third. A "
                  "flag-F1 bar above the third column needs a better ranking (better P or detector), not a better count. "
                  "Means over datasets, each dataset's mean over its runs.",
                  "", _table(per_rate, "method @ rate"), "",
                  "Best F1 of any threshold at rate 0.10 per dataset (the issue's F1 bar is 0.5 on the mean):", "",
                  _table(per_ds, "dataset"), ""]
        ours = sub[sub["method"] == OURS]
        if len(ours):
            need = []
            for r, g in ours.groupby("rate"):
                # changed suggestions S: exact-match >= 0.5 needs >= 0.5 T right changes (recall >= 0.5); clean kept >= 0.98
                # allows <= 0.02 (N - T) changed clean rows, so S's precision >= 0.5 / (0.5 + 0.02 (1 - r) / r)
                prec = 0.5 / (0.5 + 0.02 * (1 - r) / r)
                need.append({"rate": f"{r:g}", "precision the two bars need (at recall 0.5)": prec,
                             "F1 that implies": 2 * prec * 0.5 / (prec + 0.5),
                             f"{OURS}: best F1 of any threshold": g.groupby("dataset")["best_f1"].mean().mean()})
            parts += ["The two suggestion bars (exact-match >= 0.5 on corrupted examples, >= 0.98 of clean examples kept) "
                      "ask the same of the examples whose suggestion changes: at least half the corrupted ones, each fixed "
                      "exactly, and at most 2% of the clean ones. Those changed examples are a cut-off of some ranking, so "
                      "together the bars need a ranking that reaches the F1 below; the shipped ranking's ceiling is "
                      "beside it (a different ranking for suggestions than for scores would have to be that much better):",
                      "", _table(pd.DataFrame(need).set_index("rate"), "rate"), ""]
    shown = list(dict.fromkeys(flag_methods + list(CLEANLABS) + list(BASELINES)))
    un = df[(df["noise"] == UNPLANTED) & df["method"].isin(shown)]
    if len(un):
        cols = [c for c in ("flagged_share", "expected_error_rate", "eer_lo", "eer_hi", "sugg_kept_clean") if c in un.columns]
        t = un.groupby(["dataset", "method"])[cols].mean()
        t = t.loc[[(d, m) for d in ds_order for m in shown if (d, m) in t.index]]
        t.index = [f"{d} · {m}" for d, m in t.index]
        t.columns = [{"flagged_share": "share flagged", "expected_error_rate": "estimated error rate",
                      "eer_lo": "interval low", "eer_hi": "interval high",
                      "sugg_kept_clean": "examples whose tags the suggestion keeps"}[c] for c in t.columns]
        parts += ["## The tags as given (no planted error: unplanted runs, rate 0)", "",
                  "Each dataset once per seed with its tags as given. Whatever a method flags here is a real error in the "
                  "source tags or a false flag, and the benchmark cannot tell which: the planted-error bars count every one "
                  "of them against the method (flagged ÷ true counts only planted errors in its denominator). A method whose "
                  "share flagged here is s adds about s ÷ r to flagged ÷ true at planted rate r if it keeps these flags.",
                  "", _table(t, "dataset · method"), ""]
    return parts


def _code_version(detector_label: str = "ours-default") -> str:
    """Git commit of the checkout and the last commit that touched the detector (or 'unknown')."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - no git: the report says so
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (with uncommitted code changes)" if git("status", "--porcelain", "--", "dq_pipeline", "bench/*.py") else ""
    det = git("log", "-1", "--format=%h %s", "--", "dq_pipeline/issues/label_issues.py")[:90] or "unknown"
    return f"commit {head}{dirty}; {detector_label} = `dq_pipeline/issues/label_issues.py` as of {det}"


def _skipped_lines(skipped: pd.DataFrame) -> list[str]:
    """One bullet per (noise, reason), listing the datasets / rates it hit."""
    lines = []
    sk = skipped.copy()
    sk["why"] = sk["skipped"].str.replace(r"cannot corrupt \d+ examples: only (\d+) are eligible", r"too few eligible rows (\1)", regex=True)
    for (noise, why), g in sk.groupby(["noise", "why"], sort=False):
        where = ", ".join(f"{d} @ {'/'.join(f'{r:g}' for r in sorted(set(gg['rate'])))}" for d, gg in g.groupby("dataset", sort=False))
        lines.append(f"* {noise}: {why} — {where}")
    return lines


def write_report(df: pd.DataFrame, skipped: pd.DataFrame, command: str, elapsed: float, args: argparse.Namespace, csv_name: str) -> str:
    import cleanlab
    import sklearn

    from dq_pipeline.model import DEFAULT_MODEL

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    code = _code_version()
    methods = method_order(df)
    flaggers = [m for m in methods if m not in BASELINES and m not in CLEANLABS]
    sizes = df.groupby("dataset")[["n", "k", "modality"]].first()
    ds_order = [d for d in bd.SPLITS["all"] if d in sizes.index]
    ds_line = ", ".join(f"{d} ({sizes.loc[d, 'modality']}, {int(sizes.loc[d, 'n'])} x {int(sizes.loc[d, 'k'])})" for d in ds_order)
    honest = [n for n in args.noise if n in bn.PLAUSIBLE_NOISE_MODELS]
    vdf = df[df["noise"].isin(honest)] if honest else df
    vtext, _ = verdict(vdf, flaggers)
    oof = [n for n in args.noise if n in OUT_OF_FAMILY]
    oof_text = verdict(df[df["noise"].isin(oof)], flaggers)[0] if oof and df["noise"].isin(oof).any() else ""
    nruns = df.groupby(["dataset", "noise", "rate", "seed"]).ngroups
    parts = [
        f"# Label-error detection quality — {args.split} half{' (quick)' if args.quick else ''}",
        "",
        f"Command: `{command}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s) (shared with other jobs), {platform.platform()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
        f"cleanlab {cleanlab.__version__}; {args.workers} worker(s); {now}; wall time {elapsed / 60:.1f} min.  ",
        f"Code: {code}.  ",
        *([f"Candidates (`--candidate`): {', '.join(f'`{c}`' for c in args.candidate)}.  "] if getattr(args, "candidate", None) else []),
        f"**Split: {args.split}.** Validation half (for choosing defaults): {', '.join(bd.VALIDATION)}. "
        f"Test half (for reporting): {', '.join(bd.TEST)}. This file: {ds_line}.  ",
        f"Noise models: {', '.join(args.noise)}; rates {', '.join(f'{r:g}' for r in args.rates)} of the examples; "
        f"seeds {', '.join(str(s) for s in args.seeds)}; {nruns} runs"
        + ("" if args.no_unplanted else " (with one unplanted run per dataset and seed: the tags as given)")
        + f", {len(skipped)} skipped (noise not applicable, listed at the end).  ",
        f"P = 5-fold out-of-fold probabilities of the shipped default classifier (`{DEFAULT_MODEL}`, L2 strength "
        "chosen per run from `DEFAULT_C_GRID` by out-of-fold log-loss as the audit does, "
        "`dq_pipeline.model.out_of_fold_probabilities`), once per run, shared by every method except cleanlab-e2e "
        f"(cleanlab's own recipe). Embeddings: text {bd.embed_precision('text')}, images "
        f"{bd.embed_precision('image')} (`$DQ_BENCH_EMBED_PRECISION` = {bd.EMBED_PRECISION!r}, as the audit's "
        f"`embedding_precision`). Raw rows: `bench/results/{csv_name}`. Definitions: `bench/README.md`.",
        "",
        f"## Verdict against issue 10's bars (noise models: {', '.join(honest) if honest else 'all (no plausible model in this run)'})",
        "",
        "Computed from the rows of this run by `verdict()` in `bench/bench_quality.py`: AUPRC bars on the mean over "
        "datasets of per-dataset means (best cleanlab = the better of cleanlab / cleanlab-e2e per dataset, best baseline "
        "= the better of rarity / empty-first per dataset); flagged/true = mean per rate over datasets; F1 at rate 0.10; "
        "exact-match and clean-kept = mean over datasets. Only the plausible noise models count here; the legacy "
        "ones (flip / missing / confusion) are reported below for comparison."
        + ("" if args.split == "test" else " **This is not the test half: these numbers must not be reported as results.**"),
        "",
        vtext,
        "",
    ]
    if oof_text:
        parts += [
            f"### Out-of-family check (noise models: {', '.join(oof)})",
            "",
            "The same bars on noise the verdict models do not cover: `neighbour_swap` (instance-dependent: the wrong tag "
            "is one the example's nearest neighbours in feature space carry) and the legacy `confusion` (co-occurrence + "
            "tag-centroid closeness; can break one-of-N groups). A detector that calibrates its flag count on planted "
            "errors resembling the verdict models (drop / add / in-group or profile-similar swap) can look calibrated "
            "there and not here; this section shows whether it does. Not one of the issue's bars.",
            "",
            oof_text,
            "",
        ]
    parts += [
        "## Noise plausibility (share of corrupted rows, mean over this run's runs)",
        "",
        "implausible = empty (where no clean row is) or cardinality outside the clean [min, max] or a broken one-of-N "
        "group; unseen = exact tag set no clean row has (reported apart: on many-tag datasets most clean sets are "
        "unique too — 'clean loo' = share of clean rows whose set no other clean row has).",
        "",
    ]
    pl = df[df["method"] == df["method"].iloc[0]].groupby("noise")[
        ["noise_implausible", "noise_empty", "noise_card_out", "noise_group_broken", "noise_unseen", "clean_unseen_loo"]].mean()
    pl.columns = ["implausible", "empty", "card out", "group broken", "unseen", "clean loo"]
    pl = pl.loc[[n for n in bn.NOISE_MODELS if n in pl.index]]
    parts += [_table(pl, "noise"), ""]
    pld = df[df["method"] == df["method"].iloc[0]].groupby(["dataset", "noise"])["noise_implausible"].mean().unstack("noise")
    pld = pld[[n for n in bn.NOISE_MODELS if n in pld.columns]].loc[[d for d in ds_order if d in pld.index]]
    parts += ["Implausible share per dataset:", "", _table(pld, "dataset", digits=2), ""]

    parts += [f"## Example AUPRC (noise: {', '.join(honest) or 'all'}; mean over noise, rates, seeds; best in bold)", "",
              _table(_pivot(vdf, "auprc", "dataset", methods, ds_order), "dataset", bold_max=True), ""]
    parts += [f"## Example AUROC (same runs)", "", _table(_pivot(vdf, "auroc", "dataset", methods, ds_order), "dataset", bold_max=True), ""]
    parts += ["## Example AUPRC per noise model (mean over datasets)", "",
              _table(_pivot(df, "auprc", "noise", methods, list(bn.NOISE_MODELS), mean_row=False), "noise", bold_max=True), ""]
    parts += ["## Example AUPRC per rate (plausible noise)", "",
              _table(_pivot(vdf, "auprc", "rate", methods, None, mean_row=False), "rate", bold_max=True), ""]

    flag_methods = [m for m in methods if "f1" in df.columns and df.loc[df["method"] == m, "f1"].notna().any()]
    cols = ["precision", "recall", "f1", "flag_ratio", "n_flagged", "n_corrupted", "prec_at_t"]
    ft = vdf[vdf["method"].isin(flag_methods)].groupby(["method"])[cols].mean().loc[flag_methods]
    ft.columns = ["flag precision", "flag recall", "flag F1", "flagged/true", "n flagged", "n true",
                  "prec@T (= F1 of the T lowest scores)"]
    parts += ["## Flags (plausible noise; mean over runs)", "",
              "Baselines flag by a stated rule (rarity: exact tag set occurs once; empty-first: also every empty set). "
              "cleanlab = `find_label_issues` of cleanlab's multi-label filter. prec@T = precision of the T lowest-scored "
              "examples, T = true number of errors: the flag F1 a perfectly calibrated count would give with this ranking.", "", _table(ft, "method"), ""]
    fr = vdf[vdf["method"].isin(flag_methods)].groupby(["rate", "method"])["flag_ratio"].mean().unstack("method")[flag_methods]
    f1r = vdf[vdf["method"].isin(flag_methods)].groupby(["rate", "method"])["f1"].mean().unstack("method")[flag_methods]
    parts += ["Flagged ÷ true errors per rate:", "", _table(fr, "rate", digits=2), "",
              "Flag F1 per rate:", "", _table(f1r, "rate"), ""]
    parts += ["Flag F1 per dataset:", "", _table(_pivot(vdf, "f1", "dataset", flag_methods, ds_order), "dataset", bold_max=True), ""]

    sugg_methods = [m for m in methods if "sugg_exact_corrupted" in df.columns and df.loc[df["method"] == m, "sugg_exact_corrupted"].notna().any()]
    if sugg_methods:
        sc = ["sugg_exact_corrupted", "sugg_kept_clean", "sugg_right_when_changed", "sugg_changed", "sugg_implausible", "sugg_empty",
              "tag_precision", "tag_recall", "tag_f1", "missing_f1", "incorrect_f1"]
        st = vdf[vdf["method"].isin(sugg_methods)].groupby("method")[sc].mean().loc[sugg_methods]
        st.columns = ["exact-match corrupted", "clean kept", "right when changed", "n changed", "implausible suggestion",
                      "empty suggestion", "tag P", "tag R", "tag F1", "tag F1 missing", "tag F1 incorrect"]
        parts += ["## Suggestions and per-tag flags (plausible noise; mean over runs)", "",
                  "Suggested set = given tags with every flagged (example, tag) flipped (cleanlab: its per-class flags). "
                  "exact-match corrupted = share of truly corrupted examples whose suggestion equals the clean set; clean kept "
                  "= share of clean examples whose suggestion equals their given set; implausible / empty suggestion = share "
                  "of changed suggestions that are implausible / empty by the clean data's rules.", "",
                  _table(st, "method"), "",
                  "Exact-match on corrupted examples per dataset:", "",
                  _table(_pivot(vdf, "sugg_exact_corrupted", "dataset", sugg_methods, ds_order), "dataset", bold_max=True), "",
                  "Per-tag flag F1 per dataset:", "",
                  _table(_pivot(vdf, "tag_f1", "dataset", sugg_methods, ds_order), "dataset", bold_max=True), ""]

    parts += ceiling_report(vdf, df, flag_methods, ds_order)

    if "expected_error_rate" in df.columns and df["expected_error_rate"].notna().any():
        est = df[df["expected_error_rate"].notna() & (df["noise"] != UNPLANTED)]
        cols = ["true_rate", "expected_error_rate"] + (["eer_covers"] if "eer_covers" in df.columns else [])
        ee = est.groupby(["method", "rate"])[cols].mean()
        ee.index = [f"{m} @ {r:g}" for m, r in ee.index]
        ee.columns = ["true share", "estimated", "interval covers the truth"][: len(cols)]
        pd_ds = est[est["method"] == OURS].groupby(["dataset", "rate"])["expected_error_rate"].mean().unstack("rate")
        pd_ds.columns = [f"estimated @ {r:g}" for r in pd_ds.columns]
        pd_ds = pd_ds.loc[[d for d in ds_order if d in pd_ds.index]]
        pd_noise = est[est["method"] == OURS].groupby(["noise", "rate"])["expected_error_rate"].mean().unstack("rate")
        pd_noise.columns = [f"estimated @ {r:g}" for r in pd_noise.columns]
        pd_noise = pd_noise.loc[[n for n in bn.NOISE_MODELS if n in pd_noise.index]]
        parts += ["## Estimated error rate vs the true one (summary['expected_error_rate'], all noise models)", "",
                  _table(ee, "method @ rate"), "", f"{OURS} per dataset:", "", _table(pd_ds, "dataset"), "",
                  f"{OURS} per noise model:", "", _table(pd_noise, "noise"), ""]

    # per dataset x noise x rate, for ours-default and the best cleanlab / baseline
    cell = df.groupby(["dataset", "noise", "rate", "method"])[["auprc", "f1", "flag_ratio", "sugg_exact_corrupted", "sugg_kept_clean"]].mean()
    lines = ["| dataset | noise | rate | " + " | ".join(f"AUPRC {m}" for m in methods) + f" | {OURS} flag F1 | flagged/true | exact-match | clean kept |",
             "|---|---|---:|" + "---:|" * (len(methods) + 4)]
    for (d, n, r), g in cell.groupby(level=[0, 1, 2]):
        g = g.droplevel([0, 1, 2])
        o = g.loc[OURS] if OURS in g.index else pd.Series(dtype=float)
        lines.append(f"| {d} | {n} | {r:g} | " + " | ".join(_fmt(g.loc[m, "auprc"]) if m in g.index else "" for m in methods)
                     + f" | {_fmt(o.get('f1'))} | {_fmt(o.get('flag_ratio'), 2)} | {_fmt(o.get('sugg_exact_corrupted'))} | {_fmt(o.get('sugg_kept_clean'))} |")
    parts += ["## Per dataset × noise × rate (mean over seeds)", "", "\n".join(lines), ""]

    tt = df.groupby("method")[["seconds"]].mean().loc[methods]
    parts += ["## Time (mean seconds per run, detection only)", "", _table(tt, "method", digits=2), "",
              f"Out-of-fold P: {df['oof_seconds'].mean():.2f} s per run when computed (cached on disk under bench/.cache/P).", ""]
    if len(skipped):
        parts += ["## Skipped runs (noise model not applicable)", ""] + _skipped_lines(skipped) + [""]
    parts += [
        "## What these numbers do not show",
        "",
        "* Planted noise is a model of real errors; the original tags contain real errors too, counted as clean here "
        "(this caps every method's precision equally).",
        "* The plausible noise models keep cardinality and groups plausible, but a corrupted set can still be one no clean "
        "row has ('unseen' above); that is what the rarity baseline exploits.",
        "* ours-default estimates its error rate from errors it plants itself (`plant_errors` in "
        "`dq_pipeline/issues/label_issues.py`: drop / prevalence-weighted add / in-group or co-occurrence-similar swap), "
        "which resemble the verdict's noise models by design; the flag-count calibration is therefore tested here on "
        "the kind of errors it assumes. The out-of-family check (neighbour_swap, confusion) is the test of that "
        "assumption; real annotation errors are not guaranteed to resemble either.",
        "* flags-groupsA and flags-groupsB are the same 194 countries with different one-of-N groups (landmass/zone vs "
        "religion/language): the group structure differs, the rows do not.",
        "",
    ]
    return "\n".join(parts)


def plausibility_report(names: list[str], noises: list[str], rates: list[float], seeds: list[int], command: str) -> str:
    """Markdown: per noise model (and per dataset) the share of corrupted rows with an implausible tag set.

    No model is fitted: only the noise models and :func:`bench.noise.plausibility` on the full subsets.
    """
    rows = []
    for name in names:
        d = bd.load_dataset(name)
        for noise in noises:
            for rate in rates:
                for seed in seeds:
                    try:
                        Yn, _ = bn.inject_noise(noise, d.Y, rate, seed, X=d.X, groups=d.groups or None)
                    except ValueError as exc:
                        rows.append({"dataset": name, "noise": noise, "rate": rate, "seed": seed, "skipped": str(exc)})
                        continue
                    rows.append({"dataset": name, "noise": noise, "rate": rate, "seed": seed, **bn.plausibility(d.Y, Yn, d.groups or None)})
    df = pd.DataFrame(rows)
    ok = df[df.get("skipped", pd.Series(index=df.index, dtype=object)).isna()] if "skipped" in df else df
    cols = ["implausible", "empty", "card_out", "group_broken", "unseen"]
    by_noise = ok.groupby("noise")[cols].agg(["mean", "max"])
    by_noise.columns = [f"{c} {a}" for c, a in by_noise.columns]
    by_noise = by_noise.loc[[n for n in noises if n in by_noise.index]]
    per_ds = ok.groupby(["dataset", "noise"])["implausible"].mean().unstack("noise")
    per_ds = per_ds[[n for n in noises if n in per_ds.columns]].loc[[n for n in names if n in per_ds.index]]
    empty_ds = ok.groupby(["dataset", "noise"])["empty"].mean().unstack("noise")
    empty_ds = empty_ds[[n for n in noises if n in empty_ds.columns]].loc[[n for n in names if n in empty_ds.index]]
    loo = ok.groupby("dataset")["clean_unseen_loo"].first().loc[[n for n in names if n in set(ok["dataset"])]]
    unseen_ds = ok.groupby(["dataset", "noise"])["unseen"].mean().unstack("noise")
    unseen_ds = unseen_ds[[n for n in noises if n in unseen_ds.columns]].loc[loo.index]
    unseen_ds.insert(0, "clean loo", loo)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Noise plausibility: how often each noise model leaves an implausible tag set",
        "",
        f"Command: `{command}`  ",
        f"{now}; datasets (both halves): {', '.join(names)}; rates {', '.join(f'{r:g}' for r in rates)}; seeds "
        f"{', '.join(map(str, seeds))}. No model is fitted. Shares are over the corrupted rows of each run; 'mean' / 'max' "
        "over runs. implausible = empty where no clean row is empty, or cardinality outside the clean [min, max], or a "
        "one-of-N group without exactly one member; unseen = exact tag set that no clean row has (not counted as "
        "implausible; 'clean loo' = share of clean rows whose set no other clean row has, for reference).",
        "",
        _table(by_noise, "noise"),
        "",
        "## Implausible share per dataset",
        "",
        _table(per_ds, "dataset", digits=2),
        "",
        "## Empty share per dataset",
        "",
        _table(empty_ds, "dataset", digits=2),
        "",
        "## Unseen-set share per dataset",
        "",
        _table(unseen_ds, "dataset", digits=2),
        "",
    ]
    if "skipped" in df and df["skipped"].notna().any():
        parts += ["## Not applicable", ""] + _skipped_lines(df[df["skipped"].notna()]) + [""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=list(bd.SPLITS), default="validation",
                        help="which half of the datasets (default validation; report results on test)")
    parser.add_argument("--datasets", nargs="+", default=None, help="datasets (default: the split's; see bench/datasets.py)")
    parser.add_argument("--noise", nargs="+", default=None, choices=list(bn.NOISE_MODELS))
    parser.add_argument("--rates", nargs="+", type=float, default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small subsets, plausible noise, rate 0.1, seed 0, no cleanlab-e2e (~2 min)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--no-e2e", action="store_true", help="skip cleanlab-e2e (cleanlab's own cross-validation)")
    parser.add_argument("--no-unplanted", action="store_true",
                        help="skip the unplanted runs (each dataset's tags as given, rate 0, once per seed)")
    parser.add_argument("--candidate", action="append", default=[], metavar="[NAME=]MODULE:FUNCTION",
                        help="extra method: fn(Y, P, features=X, seed=seed) returning what find_label_issues returns; "
                             "MODULE may be a dotted module or a path ending in .py; repeatable")
    parser.add_argument("--out", default=None, help="markdown output (default bench/results/quality.md for --split test, "
                        "quality_<split>.md otherwise, *_quick.md with --quick); the CSV goes next to it")
    parser.add_argument("--plausibility-only", action="store_true",
                        help="only measure the noise models' plausibility (no model) -> results/quality_noise.md")
    args = parser.parse_args(argv)
    if args.plausibility_only:
        names = args.datasets or list(bd.SPLITS["all"])
        command = "nice -n 10 .venv/bin/python bench/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
        report = plausibility_report(names, args.noise or list(bn.NOISE_MODELS), args.rates or list(RATES),
                                     args.seeds or list(SEEDS), command)
        out_md = Path(args.out) if args.out else RESULTS / "quality_noise.md"
        out_md.write_text(report)
        print(report)
        print(f"wrote {out_md}")
        return
    args.datasets = args.datasets or list(QUICK_DATASETS[args.split] if args.quick else bd.SPLITS[args.split])
    unknown = [d for d in args.datasets if d not in bd.SPECS]
    if unknown:
        parser.error(f"unknown datasets {unknown}; available: {list(bd.SPECS)}")
    args.noise = args.noise or (list(bn.PLAUSIBLE_NOISE_MODELS + bn.INSTANCE_NOISE_MODELS) if args.quick else list(bn.NOISE_MODELS))
    args.rates = args.rates or ([0.1] if args.quick else list(RATES))
    args.seeds = args.seeds or ([0] if args.quick else list(SEEDS))
    e2e = not (args.no_e2e or args.quick)
    for spec in args.candidate:
        load_candidate(spec)  # fail early, in the parent process
    command = "nice -n 10 .venv/bin/python bench/bench_quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    stem = "quality" if args.split == "test" else f"quality_{args.split}"
    out_md = Path(args.out) if args.out else RESULTS / f"{stem}{'_quick' if args.quick else ''}.md"
    quick_sfx = "_quick" if out_md.stem.endswith("_quick") else ""  # *_quick.csv is git-ignored
    out_csv = out_md.with_name(out_md.stem.removesuffix("_quick") + "_runs" + quick_sfx + ".csv")

    from joblib import Parallel, delayed

    start = time.perf_counter()
    data = {}
    for name in args.datasets:
        data[name] = bd.load_dataset(name, quick=args.quick)
        d = data[name]
        print(f"{name}: {d.X.shape[0]} examples, {d.Y.shape[1]} tags, {d.X.shape[1]} features, "
              f"groups {[len(g) for g in d.groups]}", flush=True)
    split_of = {n: ("validation" if n in bd.VALIDATION else "test") for n in data}
    tasks = [(n, noise, rate, seed) for n in data for noise in args.noise for rate in args.rates for seed in args.seeds]
    if not args.no_unplanted:
        tasks += [(n, UNPLANTED, 0.0, seed) for n in data for seed in args.seeds]
    tasks.sort(key=lambda t: -data[t[0]].X.shape[0] * data[t[0]].Y.shape[1])  # biggest first
    print(f"{len(tasks)} runs on {args.workers} worker(s)", flush=True)
    done = []
    cand = tuple(args.candidate)
    results = Parallel(n_jobs=args.workers, return_as="generator_unordered", verbose=0)(
        delayed(run_one)(data[n], split_of[n], noise, rate, seed, e2e, cand) for n, noise, rate, seed in tasks
    )
    for rows in results:
        done.append(rows)
        r = rows[0]
        if len(done) % 10 == 0 or len(done) == len(tasks):
            print(f"  {len(done)}/{len(tasks)} runs ({time.perf_counter() - start:.0f}s) last: {r['dataset']} "
                  f"{r['noise']} {r['rate']} seed {r['seed']}", flush=True)
    all_rows = pd.DataFrame([row for rows in done for row in rows])
    skipped = all_rows[all_rows["method"] == "(skipped)"]
    df = all_rows[all_rows["method"] != "(skipped)"].drop(columns=["skipped"], errors="ignore")
    df = df.sort_values(["dataset", "noise", "rate", "seed", "method"]).reset_index(drop=True)
    elapsed = time.perf_counter() - start
    out_md.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    report = write_report(df, skipped, command, elapsed, args, out_csv.name)
    out_md.write_text(report)
    print(report)
    print(f"wrote {out_md} and {out_csv} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
