"""Speed and quality of the cross-validation stage: one-vs-rest ``logreg`` against the joint models.

Usage::

    .venv/bin/python bench/bench_cv_speed.py                    # all four datasets, 3 runs each
    .venv/bin/python bench/bench_cv_speed.py --datasets emotions yeast --repeats 1

For every dataset and model, :func:`dq_pipeline.model.out_of_fold_probabilities` runs with the same
folds (``n_folds=5, seed=0``) under the same thread limit (``--threads``, default 1, set through
threadpoolctl and the ``*_NUM_THREADS`` variables before numpy loads). Reported:

- ``wall s`` / ``CPU s``: median wall and process-CPU time of ``--repeats`` runs of the whole stage
  (folds + fits + predictions) on the clean tags, the models interleaved within each repeat so that
  load from other jobs hits all of them alike; ``speed-up`` = logreg's median / the model's median.
- ``AUROC``: mean per-tag out-of-fold AUROC against the clean tags; ``|dP|``: mean absolute difference
  of the model's out-of-fold probabilities from logreg's.
- ``AUPRC``: planted label errors. One random tag is flipped in 10% of the examples
  (``numpy.random.default_rng(--noise-seed)``); out-of-fold probabilities are computed on the noisy
  tags; examples are scored by ``variant_label_issues(Y_noisy, P, method="confident_learning").scores`` (bench/label_variants.py) and the planted examples are
  ranked with ``average_precision_score(planted, -label_quality)`` (chance = 0.10). ``dAUPRC`` is the
  model's AUPRC minus logreg's with a 95% paired bootstrap interval (1,000 resamples of examples).

Datasets: MULAN yeast, scene, emotions (``$DQ_SHARED_DATA`` or ``../shared/data``), and GoEmotions:
``--text-n`` texts drawn at random (seed 0), embedded once with
:func:`dq_pipeline.embed.text.embed_texts` and cached under ``bench/results/.cache/``.
Results go to stdout and ``bench/results/cv_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import sys

THREADS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _threads_from_argv() -> int:
    """Thread count from ``--threads`` (read before numpy is imported)."""
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


for _var in THREADS_ENV:
    os.environ[_var] = str(_threads_from_argv())
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dq_pipeline.ingest import parse_tags, tags_matrix  # noqa: E402
from bench.label_variants import variant_label_issues  # noqa: E402
from dq_pipeline.model import DEFAULT_C, out_of_fold_probabilities  # noqa: E402

SHARED_DATA = Path(os.environ.get("DQ_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "bench" / "results"
CACHE = RESULTS / ".cache"
TABULAR = {
    "yeast": "mulan_yeast/yeast.csv",
    "scene": "mulan_scene/scene.csv",
    "emotions": "mulan_emotions/emotions.csv",
}
DATASETS = (*TABULAR, "goemotions")
N_FOLDS, SEED = 5, 0


def tags_from_cells(cells: pd.Series) -> np.ndarray:
    """(N, K) uint8 from '|'-joined tag cells, classes sorted."""
    sets = [parse_tags(c, "|") for c in cells]
    return tags_matrix(sets, sorted({t for s in sets for t in s}))


def load_tabular(name: str) -> tuple[np.ndarray, np.ndarray]:
    """MULAN features X (N, D) float64 and tags Y (N, K)."""
    frame = pd.read_csv(SHARED_DATA / TABULAR[name], keep_default_na=False)
    return frame.drop(columns="labels").to_numpy(np.float64), tags_from_cells(frame["labels"])


def load_goemotions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random GoEmotions comments: MiniLM embeddings (N, 384) and tags (N, 28).

    Embeddings are cached in ``bench/results/.cache/goemotions_{n}_seed{seed}.npy``.
    """
    frame = pd.read_csv(SHARED_DATA / "goemotions" / "goemotions.csv", keep_default_na=False)
    names = (SHARED_DATA / "goemotions" / "original" / "emotions.txt").read_text().split()
    rows = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    sample = frame.iloc[rows]
    sets = [set(c.split("|")) for c in sample["labels"]]
    Y = np.array([[t in s for t in names] for s in sets], dtype=np.uint8)
    path = CACHE / f"goemotions_{n}_seed{seed}.npy"
    if path.exists():
        X = np.load(path)
    else:
        from dq_pipeline.embed.text import embed_texts

        t0 = time.perf_counter()
        X = embed_texts(sample["text"].tolist())
        print(f"embedded {n} texts in {time.perf_counter() - t0:.0f} s -> {path}", file=sys.stderr)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, X)
    return X.astype(np.float64), Y


def plant_flips(Y: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip one random tag in ``round(rate * N)`` random examples. Returns (Y_noisy, planted (N,) bool)."""
    rng = np.random.default_rng(seed)
    n, k = Y.shape
    planted = np.zeros(n, dtype=bool)
    rows = rng.choice(n, size=int(round(rate * n)), replace=False)
    planted[rows] = True
    Yn = Y.copy()
    cols = rng.integers(0, k, size=len(rows))
    Yn[rows, cols] = 1 - Yn[rows, cols]
    return Yn, planted


def auprc(planted: np.ndarray, quality: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(planted, -quality))


def bootstrap_diff(planted: np.ndarray, q_model: np.ndarray, q_base: np.ndarray, reps: int = 1000) -> tuple[float, float]:
    """95% paired bootstrap interval of AUPRC(model) - AUPRC(base) over resampled examples."""
    rng = np.random.default_rng(0)
    n = len(planted)
    diffs = []
    for _ in range(reps):
        idx = rng.integers(0, n, size=n)
        if planted[idx].any():
            diffs.append(auprc(planted[idx], q_model[idx]) - auprc(planted[idx], q_base[idx]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def timed_oof(X: np.ndarray, Y: np.ndarray, model: str) -> tuple[float, float, object]:
    """One run of the CV stage: (wall seconds, process CPU seconds, OutOfFold)."""
    t0, c0 = time.perf_counter(), time.process_time()
    oof = out_of_fold_probabilities(X, Y, n_folds=N_FOLDS, seed=SEED, model=model)
    return time.perf_counter() - t0, time.process_time() - c0, oof


def machine_info(threads: int) -> list[str]:
    import scipy
    import sklearn
    from threadpoolctl import threadpool_info

    blas = sorted({f"{i['internal_api']} {i.get('version')}" for i in threadpool_info() if i["user_api"] == "blas"})
    return [
        f"- platform: `{platform.platform()}`, python {platform.python_version()}, processor `{platform.processor() or platform.machine()}`",
        f"- cores: os.cpu_count()={os.cpu_count()}, usable={len(os.sched_getaffinity(0))} (shared with other jobs: compare ratios, not absolute times)",
        f"- numpy {np.__version__}, scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, BLAS: {', '.join(blas)}",
        f"- threads for every model: {threads} (threadpoolctl + {'/'.join(THREADS_ENV)})",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument(
        "--models", nargs="+", default=["fast_logreg", "fast_logreg_f64", "joint_logreg", "joint_logreg_precond", "fast_logreg_pca"]
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per (dataset, model), interleaved")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--text-n", type=int, default=3000)
    parser.add_argument("--noise-rate", type=float, default=0.1)
    parser.add_argument("--noise-seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "cv_speed.md"))
    args = parser.parse_args(argv)

    import warnings

    from threadpoolctl import threadpool_limits

    warnings.simplefilter("ignore")  # sklearn's convergence chatter (the CV loop silences it too)
    models = ["logreg", *[m for m in args.models if m != "logreg"]]
    header = [
        "# Cross-validation stage: speed and quality",
        "",
        f"Command: `{' '.join(['.venv/bin/python', *sys.argv])}`",
        "",
        *machine_info(args.threads),
        f"- stage = `out_of_fold_probabilities(X, Y, n_folds={N_FOLDS}, seed={SEED}, model=...)` (folds + fits +"
        f" predictions); {args.repeats} timed runs per model, interleaved (logreg, model 1, ..., repeat), median"
        " reported; speed-up = logreg median / model median, from the same process",
        f"- planted noise: one random tag flipped in {args.noise_rate:.0%} of the examples (seed {args.noise_seed});"
        " AUPRC = average_precision_score(planted, -variant_label_issues(Y_noisy, P_oof, method=confident_learning).scores), chance = "
        f"{args.noise_rate:.2f}; dAUPRC = model - logreg with a 95% paired bootstrap interval",
        f"- models: `logreg` = StandardScaler + OneVsRest(LogisticRegression(C={DEFAULT_C:g}, max_iter=1000)); the"
        f" others are `dq_pipeline.fast_model.JointLogisticRegression` (same objective, C={DEFAULT_C:g}, tol=1e-4 on sklearn's"
        " gradient criterion): `fast_logreg` = Newton-preconditioned lockstep per-tag L-BFGS, float32"
        " per-iteration products; `fast_logreg_f64` = the same in float64; `joint_logreg` = one scipy"
        " L-BFGS-B over all tags, no preconditioning; `joint_logreg_precond` = the same, preconditioned;"
        " `fast_logreg_pca` = `fast_logreg` restricted to the top 256 principal directions (D > 256 only)",
        "",
    ]
    cols = ["dataset", "N x D, K", "model", "wall s", "speed-up (wall)", "CPU s", "speed-up (CPU)",
            "AUROC (mean per tag)", "max per-tag abs dAUROC", "mean abs dP vs logreg", "AUPRC planted",
            "dAUPRC [95% CI]"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    print("\n".join(header + lines), flush=True)
    with threadpool_limits(limits=args.threads):
        # warm-up: imports (iterstrat, sklearn, scipy) are not charged to the first model timed
        Xw = np.random.default_rng(0).standard_normal((60, 4))
        Yw = (Xw[:, :2] > 0).astype(int)
        for m in models:
            out_of_fold_probabilities(Xw, Yw, model=m)
        for name in args.datasets:
            X, Y = load_goemotions(args.text_n) if name == "goemotions" else load_tabular(name)
            shape = f"{X.shape[0]} x {X.shape[1]}, {Y.shape[1]}"
            wall: dict[str, list[float]] = {m: [] for m in models}
            cpu: dict[str, list[float]] = {m: [] for m in models}
            oofs = {}
            for _ in range(args.repeats):
                for m in models:
                    w, c, oofs[m] = timed_oof(X, Y, m)
                    wall[m].append(w)
                    cpu[m].append(c)
            Yn, planted = plant_flips(Y, args.noise_rate, args.noise_seed)
            quality = {m: variant_label_issues(Yn, out_of_fold_probabilities(X, Yn, N_FOLDS, SEED, m).probabilities,
                                            method="confident_learning").scores
                       for m in models}
            base_ap = auprc(planted, quality["logreg"])
            bw, bc = statistics.median(wall["logreg"]), statistics.median(cpu["logreg"])
            for m in models:
                mw, mc = statistics.median(wall[m]), statistics.median(cpu[m])
                ap = auprc(planted, quality[m])
                dp = np.abs(oofs[m].probabilities - oofs["logreg"].probabilities).mean()
                if m == "logreg":
                    diff = ""
                else:
                    lo, hi = bootstrap_diff(planted, quality[m], quality["logreg"])
                    diff = f"{ap - base_ap:+.4f} [{lo:+.4f}, {hi:+.4f}]"
                row = [name, shape, m, f"{mw:.3f}", f"{bw / mw:.1f}x", f"{mc:.3f}", f"{bc / mc:.1f}x",
                       f"{np.nanmean(oofs[m].auroc):.4f}",
                       f"{np.nanmax(np.abs(oofs[m].auroc - oofs['logreg'].auroc)):.4f}",
                       f"{dp:.1e}", f"{ap:.4f}", diff]
                lines.append("| " + " | ".join(row) + " |")
                print(lines[-1], f"<!-- wall runs {[round(t, 3) for t in wall[m]]} -->", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header + lines) + "\n")
    print(f"\nwritten {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
