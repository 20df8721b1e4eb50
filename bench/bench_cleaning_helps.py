"""Does cleaning help? A tagger trained on noisy, curated and clean labels, scored on a clean test split.

Usage::

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_cleaning_helps.py --jobs 2   # ~10 min, 2 cores
    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_cleaning_helps.py --quick    # 2 datasets, 1 seed

For each dataset (MULAN emotions / scene / yeast, MIML photos, a GoEmotions sample; features and subsets
from ``bench/datasets.py`` - the text / image sets use their ``--quick`` subsets, embeddings cached under
``bench/.cache/``) and seed: a multilabel-stratified 70/30 train/test split; the *train* tags are corrupted
with ``bench/noise.py`` (flip / missing / confusion, and the plausible similar_swap: a present tag replaced
by one with a similar co-occurrence profile, at ``--rates``), the *test* tags stay clean. Then :func:`dq_pipeline.tagger.train_tagger` (the
audit's classifier, ``fast_logreg``, 5-fold out-of-fold per-tag F1 thresholds - exactly what the
``tagger`` asset does) is trained on

* **noisy**: the corrupted train tags;
* **curated**: the corrupted tags with the pipeline's label-issue suggestions applied to the flagged
  (example, tag) pairs - out-of-fold probabilities of the audit's model on the noisy tags,
  ``find_label_issues(Y, P, features=X, seed=seed)`` (the shipped defaults, as the asset calls it),
  ``suggested_tags`` of its ``details`` rows (``curate.tag_flag_matrix``), as ``curate.audit_tables`` builds
  ``curated_labels``;
* **reviewed**: the same suggestions, but only those an ideal reviewer would accept (the ones that restore
  the true tag): what curation with review can reach at most with this detector (a simulation, not a person);
* **drop-flagged**: the noisy tags with every flagged *example* left out (a simpler use of the same flags);
* **clean**: the true train tags (the ceiling);

and scored on the clean test split (micro / macro F1 of the thresholded predictions). Model-free baseline:
every tag predicted for every test row (the best constant predictor for F1). ``recovered`` = (curated -
noisy) / (clean - noisy): the share of the gap that cleaning closes (n/a unless clean beats noisy by at
least 0.01: with no gap there is nothing to recover).

Out-of-fold probabilities and tagger predictions are cached under ``bench/.cache/P/`` by their inputs (and the
source of ``dq_pipeline/model.py`` / ``tagger.py``), so a rerun after a detector change retrains only the
variants whose labels changed.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import datasets as bd  # noqa: E402
from bench import noise as bn  # noqa: E402
from bench.bench_quality import P_CACHE, _digest, c_grid_tag  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: datasets of this benchmark (names in bench/datasets.py); text / image use their quick subsets
DEFAULT_DATASETS = ("emotions", "scene", "yeast", "miml", "goemotions")
#: the three original noise models and one plausible one (bench/noise.py); the datasets here have no one-of-N groups
DEFAULT_NOISE = ("flip", "missing", "confusion", "similar_swap")
VARIANTS = ("noisy", "curated", "reviewed", "drop-flagged", "clean")
MIN_GAP = 0.01


def split(Y: np.ndarray, seed: int, test_size: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Multilabel-stratified train / test row positions."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    s = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(s.split(np.zeros((len(Y), 1)), Y))
    return np.sort(train), np.sort(test)


def _code_version() -> str:
    """Git commit of the checkout and the detector's last commit (bench_quality's helper)."""
    from bench.bench_quality import _code_version as version

    return version("detector")


def _source_digest() -> str:
    """Digest of the code behind cached P and tagger predictions (a change there invalidates the cache)."""
    return _digest(*[(ROOT / "dq_pipeline" / f).read_text() for f in ("model.py", "tagger.py")])


def _cached(kind: str, name: str, arrays: tuple[np.ndarray, ...], seed: int, compute) -> np.ndarray:
    """``compute()`` (an array) cached under bench/.cache/P by (kind, arrays, seed, model / tagger source)."""
    path = P_CACHE / f"{name}_{kind}_{_digest(kind, *arrays, seed, _source_digest())}.npy"
    if path.exists():
        return np.load(path)
    out = np.asarray(compute())
    P_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out


def curate_like_pipeline(name: str, X: np.ndarray, Yn: np.ndarray, seed: int, model: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(curated tags (N, K), flagged examples (N,) bool, detector summary): the audit's OOF model, label-issue
    detector (shipped defaults) and suggestions on noisy tags Yn, as the label_issues asset and
    curate.audit_tables do (no review)."""
    from dq_pipeline.curate import tag_flag_matrix
    from dq_pipeline.issues.label_issues import find_label_issues, suggested_tags
    from dq_pipeline.model import DEFAULT_C_GRID, out_of_fold_probabilities

    P = _cached(f"oofP-{model}-{c_grid_tag()}", name, (X, Yn), seed,
                lambda: out_of_fold_probabilities(X, Yn, seed=seed, model=model, C_grid=DEFAULT_C_GRID).probabilities)
    result = find_label_issues(Yn, P, features=X, seed=seed)
    flags = tag_flag_matrix(result.details, Yn.shape)
    return suggested_tags(Yn, flags), np.asarray(result.flags, dtype=bool), dict(result.summary or {})


def run_one(name: str, X: np.ndarray, Y: np.ndarray, noise: str, rate: float, seed: int, model: str,
            groups: list | None = None) -> list[dict]:
    from dq_pipeline.model import DEFAULT_C_GRID
    from dq_pipeline.tagger import f1_scores, train_tagger

    train, test = split(Y, seed)
    Xtr, Ytr, Xte, Yte = X[train], Y[train], X[test], Y[test]
    keep = Ytr.sum(axis=0) > 0
    Ytr, Yte = Ytr[:, keep], Yte[:, keep]
    if groups:  # one-of-N groups in the kept tags' indexing
        new_index = np.cumsum(keep) - 1
        groups = [np.asarray([new_index[i] for i in g if keep[i]]) for g in groups]
        groups = [g for g in groups if len(g) >= 2]
    Yn, changed = bn.inject_noise(noise, Ytr, rate, seed, X=Xtr, groups=groups or None)
    t0 = time.perf_counter()
    Yc, flagged, summary = curate_like_pipeline(name, Xtr, Yn, seed, model)
    curate_s = time.perf_counter() - t0
    wrong_before = int((Yn != Ytr).sum())
    wrong_after = int((Yc != Ytr).sum())
    # an ideal reviewer: of the suggested changes, accepts exactly those that restore the true tag
    Yr = np.where((Yc != Yn) & (Yc == Ytr), Yc, Yn).astype(np.uint8)
    labels = {"noisy": (Xtr, Yn), "curated": (Xtr, Yc), "reviewed": (Xtr, Yr),
              "drop-flagged": (Xtr[~flagged], Yn[~flagged]),
              "clean": (Xtr, Ytr)}
    classes = [str(j) for j in range(Ytr.shape[1])]
    base = {"dataset": name, "noise": noise, "rate": rate, "seed": seed, "n_train": len(train), "n_test": len(test),
            "k": Ytr.shape[1], "n_corrupted": int(changed.any(axis=1).sum()), "n_flagged": int(flagged.sum()),
            "wrong_pairs_noisy": wrong_before, "wrong_pairs_curated": wrong_after,
            "wrong_pairs_reviewed": int((Yr != Ytr).sum()), "curate_seconds": curate_s,
            "n_changed_curated": int((Yc != Yn).any(axis=1).sum()),
            "expected_error_rate": float(summary.get("expected_error_rate", np.nan))}
    rows = []
    everything = f1_scores(Yte, np.ones_like(Yte))
    rows.append({**base, "variant": "all-tags (model-free)", **everything, "seconds": 0.0})
    for variant, (Xv, Yv) in labels.items():
        t0 = time.perf_counter()
        pred = _cached(f"tagger-{model}-{c_grid_tag()}", name, (Xv, Yv, Xte), seed,
                       lambda: train_tagger(Xv, Yv, classes, model=model, seed=seed,
                                            C_grid=DEFAULT_C_GRID).predict(Xte)[1])
        rows.append({**base, "variant": variant, **f1_scores(Yte, pred), "seconds": time.perf_counter() - t0})
    return rows


def _fmt(x: float, digits: int = 3) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def recovered(df: pd.DataFrame, metric: str, by: list[str]) -> pd.DataFrame:
    """Per group: mean F1 of each variant and the share of the noisy -> clean gap closed by curated and
    drop-flagged (computed on the group means; NaN unless clean beats noisy by at least MIN_GAP)."""
    wide = df.pivot_table(index=by, columns="variant", values=metric, aggfunc="mean")
    gap = wide["clean"] - wide["noisy"]
    for v in ("curated", "reviewed", "drop-flagged"):
        wide[f"recovered {v}"] = np.where(gap >= MIN_GAP, (wide[v] - wide["noisy"]) / gap.where(gap != 0), np.nan)
    return wide


def _table(wide: pd.DataFrame, index_name: str) -> str:
    cols = ["all-tags (model-free)", "noisy", "curated", "reviewed", "drop-flagged", "clean", "recovered curated",
            "recovered reviewed",
            "recovered drop-flagged"]
    head = f"| {index_name} | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for idx, row in wide.iterrows():
        key = " / ".join(str(i) for i in idx) if isinstance(idx, tuple) else str(idx)
        cells = []
        for c in cols:
            v = row.get(c, np.nan)
            cells.append(("n/a" if pd.isna(v) else f"{v:+.0%}") if c.startswith("recovered") else _fmt(v))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="emotions + miml, seed 0")
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    parser.add_argument("--noise", nargs="+", default=list(DEFAULT_NOISE), choices=bn.NOISE_MODELS)
    parser.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.2])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--model", default="fast_logreg")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: the machine is shared)")
    parser.add_argument("--out", default=None, help="markdown output (default bench/results/cleaning_helps[_quick].md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.seeds = ["emotions", "miml"], [0]
    command = ("HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_cleaning_helps.py "
               + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    out_md = Path(args.out) if args.out else RESULTS / f"cleaning_helps{'_quick' if args.quick else ''}.md"
    out_csv = out_md.with_name(out_md.stem.replace("cleaning_helps", "cleaning_helps_runs") + ".csv")

    code = _code_version()
    start = time.perf_counter()
    data = {}
    for name in args.datasets:
        if name not in bd.SPECS:
            parser.error(f"unknown dataset {name!r}; choose from {sorted(bd.SPECS)}")
        d = bd.load_dataset(name, quick=bd.SPECS[name].modality != "tabular")  # text/image: their quick subsets
        data[name] = d
        print(f"{name}: {d.X.shape[0]} examples x {d.Y.shape[1]} tags, {d.X.shape[1]} features", flush=True)
    tasks = [(n, noise, r, s) for n in data for noise in args.noise for r in args.rates for s in args.seeds]
    from joblib import Parallel, delayed

    rows = []
    for i, out in enumerate(Parallel(n_jobs=args.jobs, return_as="generator")(
            delayed(run_one)(n, data[n].X, data[n].Y, noise, r, s, args.model, data[n].groups)
            for n, noise, r, s in tasks), 1):
        rows += out
        r = out[0]
        print(f"  {i}/{len(tasks)} {r['dataset']} {r['noise']} {r['rate']} seed {r['seed']}: micro F1 "
              + ", ".join(f"{o['variant'].split(' ')[0]} {o['micro_f1']:.3f}" for o in out)
              + f" ({time.perf_counter() - start:.0f}s)", flush=True)
    df = pd.DataFrame(rows)
    elapsed = time.perf_counter() - start
    df.to_csv(out_csv, index=False)

    micro = recovered(df, "micro_f1", ["dataset"])
    macro = recovered(df, "macro_f1", ["dataset"])
    by_noise = recovered(df, "micro_f1", ["noise"])
    by_noise_macro = recovered(df, "macro_f1", ["noise"])
    detail = recovered(df, "micro_f1", ["dataset", "noise"])
    legacy = df[df["noise"].isin(bn.LEGACY_NOISE_MODELS)]
    legacy_part = []
    if len(legacy) and legacy["noise"].nunique() < df["noise"].nunique():
        lp = legacy.pivot_table(index=["dataset", "noise", "rate", "seed"], columns="variant", values="micro_f1")
        legacy_part = [
            f"## Legacy noise models only ({', '.join(sorted(legacy['noise'].unique()))}; micro F1)", "",
            f"The runs an earlier version of this report covered (before the plausible noise models): curated beats "
            f"noisy in {int((lp['curated'] > lp['noisy'] + 1e-9).sum())} of {len(lp)} runs and loses in "
            f"{int((lp['curated'] < lp['noisy'] - 1e-9).sum())}.", "",
            _table(recovered(legacy, "micro_f1", ["dataset"]), "dataset"), "",
            _table(recovered(legacy, "macro_f1", ["dataset"]), "dataset (macro F1)"), ""]
    overall_micro = recovered(df.assign(all="all"), "micro_f1", ["all"]).iloc[0]
    overall_macro = recovered(df.assign(all="all"), "macro_f1", ["all"]).iloc[0]
    pairs = df[df["variant"] == "noisy"]
    fixed = 1 - pairs["wrong_pairs_curated"].sum() / max(pairs["wrong_pairs_noisy"].sum(), 1)
    per_run = df.pivot_table(index=["dataset", "noise", "rate", "seed"], columns="variant", values="micro_f1")
    wins = int((per_run["curated"] > per_run["noisy"] + 1e-9).sum())
    losses = int((per_run["curated"] < per_run["noisy"] - 1e-9).sum())
    record = per_run.assign(win=per_run["curated"] > per_run["noisy"] + 1e-9,
                            loss=per_run["curated"] < per_run["noisy"] - 1e-9).groupby("dataset")[["win", "loss"]].sum()
    labels_table = ["| dataset | corrupted examples | flagged examples | examples changed by curation | "
                    "estimated error rate (mean) / true | wrong (example, tag) pairs: noisy | "
                    "curated | reviewed | runs curated > noisy / < noisy (micro F1) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, g in pairs.groupby("dataset"):
        labels_table.append(f"| {name} | {int(g['n_corrupted'].sum())} | {int(g['n_flagged'].sum())} | "
                            f"{int(g['n_changed_curated'].sum())} | {g['expected_error_rate'].mean():.3f} / "
                            f"{(g['n_corrupted'] / g['n_train']).mean():.3f} | "
                            f"{int(g['wrong_pairs_noisy'].sum())} | {int(g['wrong_pairs_curated'].sum())} | "
                            f"{int(g['wrong_pairs_reviewed'].sum())} | "
                            f"{int(record.loc[name, 'win'])} / {int(record.loc[name, 'loss'])} |")
    diff = micro["curated"] - micro["noisy"]
    hurt = [f"{n} ({d:+.3f})" for n, d in diff.items() if d < -0.005]
    diff_macro = macro["curated"] - macro["noisy"]
    hurt_macro = [f"{n} ({d:+.3f})" for n, d in diff_macro.items() if d < -0.005]
    helped = [f"{n} ({d:+.3f})" for n, d in diff.items() if d > 0.005]
    verdict = []
    for name in micro.index:
        m, a = micro.loc[name], macro.loc[name]
        gap = m["clean"] - m["noisy"]
        delta = m["curated"] - m["noisy"]
        if gap < MIN_GAP:
            what = (f"no gap to recover (clean {m['clean']:.3f} vs noisy {m['noisy']:.3f}: the noise barely hurts "
                    f"this model); curated {delta:+.3f}")
        else:
            what = f"curated recovers {m['recovered curated']:.0%} of the {gap:.3f} gap ({delta:+.3f})"
        verdict.append(f"- **{name}** (micro F1): {what}; with an ideal review of the same suggestions "
                       f"{m['reviewed'] - m['noisy']:+.3f}. Macro F1 noisy {a['noisy']:.3f} -> curated "
                       f"{a['curated']:.3f} / reviewed {a['reviewed']:.3f} (clean {a['clean']:.3f}).")
    sizes = df.groupby("dataset")[["n_train", "n_test", "k"]].first()
    import sklearn

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# Does cleaning help? Tagger trained on noisy / curated / clean labels{' (quick)' if args.quick else ''}",
        "",
        f"Command: `{command}`  ",
        f"Code: {code}.  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU(s) shared with other jobs, Python "
        f"{platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}; {now}; wall time "
        f"{elapsed / 60:.1f} min.  ",
        "Datasets (train / clean test rows x tags): " + ", ".join(
            f"{d} {int(sizes.loc[d, 'n_train'])}/{int(sizes.loc[d, 'n_test'])} x {int(sizes.loc[d, 'k'])}"
            for d in data if d in sizes.index) + f". Noise on the train split only: {', '.join(args.noise)} at "
        f"{', '.join(f'{r:.0%}' for r in args.rates)} of the examples; seeds {', '.join(map(str, args.seeds))} "
        f"({len(tasks)} runs). Classifier `{args.model}` with per-tag thresholds tuned on 5-fold out-of-fold "
        "predictions of its own training labels (`dq_pipeline.tagger.train_tagger`). Protocol: module docstring of "
        "`bench/bench_cleaning_helps.py`; raw rows: `" + out_csv.name + "`.",
        "",
        "## Verdict",
        "",
        f"Curated beats noisy in {wins} of {len(per_run)} runs and loses in {losses} (micro F1 on the clean test "
        f"split). Means over all runs: micro F1 noisy {overall_micro['noisy']:.3f}, curated "
        f"{overall_micro['curated']:.3f}, clean {overall_micro['clean']:.3f}; macro F1 noisy "
        f"{overall_macro['noisy']:.3f}, curated {overall_macro['curated']:.3f}, clean {overall_macro['clean']:.3f} "
        "(these pool datasets of very different difficulty; per dataset:)",
        "",
        *verdict,
        "",
        f"**Where it does not help:** micro F1 {', '.join(hurt) or 'none'}; macro F1 "
        f"{', '.join(hurt_macro) or 'none'} (curated below noisy by more than 0.005 on average). The detector flagged "
        f"{int(pairs['n_flagged'].sum())} examples where {int(pairs['n_corrupted'].sum())} were corrupted and "
        f"suggested a change for {int(pairs['n_changed_curated'].sum())}; applying every suggestion without review "
        f"leaves {int(pairs['wrong_pairs_curated'].sum())} wrong (example, tag) pairs where the noise planted "
        f"{int(pairs['wrong_pairs_noisy'].sum())} (net {fixed:+.0%} fixed; table below"
        + ("" if fixed > 0 else ": curation changes more right labels than wrong ones") + "). Where the tagger "
        f"gains ({', '.join(helped) or 'none'}), part of the gain can come from labels the model learns from more "
        "easily (closer to its own view of the data), not only from true ones. Reviewed (an ideal reviewer accepting "
        f"only the suggestions that restore the true tag): micro F1 {overall_micro['reviewed']:.3f}"
        + (f", {overall_micro['recovered reviewed']:.0%} of the pooled gap" if pd.notna(overall_micro["recovered reviewed"])
           else f" (no share of the pooled gap: clean - noisy = {overall_micro['clean'] - overall_micro['noisy']:+.3f}, "
                f"under {MIN_GAP:g})") + ": review the suggestions before "
        "training, most of all where the model is weak (low out-of-fold F1).",
        "",
        "## Labels: planted errors, flags, and what curation did (sums over runs)",
        "",
        *labels_table,
        "",
        "## Micro F1 on the clean test split, per dataset (mean over noise models, rates, seeds)",
        "",
        _table(micro, "dataset"),
        "",
        "## Macro F1 per dataset",
        "",
        _table(macro, "dataset"),
        "",
        "## Per noise model (micro F1; macro F1 below)",
        "",
        _table(by_noise, "noise"),
        "",
        _table(by_noise_macro, "noise"),
        "",
        *legacy_part,
        "## Per dataset and noise model (micro F1)",
        "",
        _table(detail, "dataset / noise"),
        "",
        "## What these numbers do not show",
        "",
        "- The noise is planted (`bench/noise.py`) on labels taken as clean; real annotation errors may be harder "
        "to find, and the given labels of these datasets contain errors of their own (the 'clean' ceiling is the "
        "datasets' tags, not the truth).",
        "- Curation here is fully automatic (every suggestion accepted, no human review, no exclusions); in the "
        "pipeline a reviewer decides, which should help where the detector's flags are wrong.",
        "- Text and image use small subsets (GoEmotions 600 comments, MIML 300 photos: the quick subsets of "
        "`bench/datasets.py`), so their test splits are 90-180 rows and their F1 differences are "
        f"noisy; 'recovered' is n/a where clean does not beat noisy by {MIN_GAP}. Two seeds give no confidence interval; the "
        "per-run CSV has every number.",
        "- Thresholds of every variant are tuned on its own (noisy, curated or clean) training labels, as the "
        "tagger asset would; the test split is never used for tuning.",
        "",
        "## Time",
        "",
        "Mean seconds per training (5-fold thresholds + final fit): "
        + ", ".join(f"{v} {df[df['variant'] == v]['seconds'].mean():.2f}" for v in VARIANTS)
        + f"; curation (out-of-fold probabilities + detector) {pairs['curate_seconds'].mean():.2f} s per run "
        "(out-of-fold probabilities and trainings read from `bench/.cache/P` count about 0 s).",
        "",
    ]
    report = "\n".join(parts)
    out_md.write_text(report)
    print(report)
    print(f"wrote {out_md} and {out_csv} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
