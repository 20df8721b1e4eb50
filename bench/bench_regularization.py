"""The shipped classifier's L2 strength C: out-of-fold probability quality over a grid, per benchmark dataset.

Usage::

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_regularization.py      # both halves, ~3 min

For every dataset of ``bench/datasets.py`` (both halves of the quality benchmark's fixed split; features as there)
and every C of ``--grid``, 5-fold out-of-fold probabilities of the shipped ``fast_logreg`` model
(:class:`dq_pipeline.fast_model.JointLogisticRegression`, its settings from ``dq_pipeline.model.FAST_MODELS``
with C replaced) on the given tags, the folds of :func:`dq_pipeline.model.multilabel_folds` (seed 0). Reported:
mean per-cell log-loss (probabilities clipped to [1e-6, 1 - 1e-6]; lower is better) and mean per-tag AUROC
(higher is better), with a model-free baseline: every tag predicted at its training-fold prevalence.

The default is chosen on the **validation** half only: the C with the lowest mean log-loss over the validation
datasets (the test half is printed beside it, not used). What it does not show: label-error detection itself
(``bench_quality.py`` measures that with the shipped C), and a per-dataset choice of C (listed as 'best per
dataset' for reference).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import datasets as bd  # noqa: E402

from dq_pipeline.model import DEFAULT_C, FAST_MODELS, multilabel_folds, per_tag_auroc  # noqa: E402

GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def oof(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, C: float | None) -> np.ndarray:
    """(N, K) out-of-fold probabilities of fast_logreg at C (None = the prevalence baseline)."""
    from dq_pipeline.fast_model import JointLogisticRegression

    return oof_with(X, Y, folds, None if C is None else
                    (lambda: JointLogisticRegression(**{**FAST_MODELS["fast_logreg"], "C": C})))


def oof_with(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, make: Callable[[], Any] | None) -> np.ndarray:
    """(N, K) out-of-fold probabilities of the estimators ``make()`` returns (fit(X, Y (n, K)) / predict_proba(X)
    -> (n, K)), one per fold; a tag constant in a training fold is predicted at that constant; ``make=None``: every
    tag at its training-fold prevalence."""
    P = np.zeros(Y.shape)
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        Yt = Y[tr]
        varying = Yt.min(axis=0) != Yt.max(axis=0)
        P[np.ix_(te, ~varying)] = Yt[0, ~varying]
        if make is None:
            P[np.ix_(te, varying)] = Yt[:, varying].mean(axis=0)
        elif varying.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter
                model = make().fit(X[tr], Yt[:, varying])
            P[np.ix_(te, varying)] = model.predict_proba(X[te]).reshape(int(te.sum()), -1)
    return P


def log_loss(Y: np.ndarray, P: np.ndarray) -> float:
    P = np.clip(P, 1e-6, 1 - 1e-6)
    return float(-np.mean(Y * np.log(P) + (1 - Y) * np.log(1 - P)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=float, nargs="+", default=list(GRID))
    ap.add_argument("--datasets", nargs="+", default=list(bd.SPLITS["all"]))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "regularization.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    for name in args.datasets:
        d = bd.load_dataset(name)
        Y = d.Y.astype(np.uint8)
        folds = multilabel_folds(Y, 5, 0)
        cells = {}
        for C in [None, *args.grid]:
            P = oof(d.X, Y, folds, C)
            cells[C] = (log_loss(Y, P), float(np.nanmean(per_tag_auroc(Y, P))))
        split = "validation" if name in bd.SPLITS["validation"] else "test"
        rows.append((name, split, d.modality, d.X.shape, cells))
        best = min(args.grid, key=lambda c: cells[c][0])
        print(f"{split:10s} {name:18s} {d.modality:7s} {d.X.shape}  best C {best:g}  " + "  ".join(
            f"C={c:g}: {cells[c][0]:.4f}" for c in args.grid), flush=True)

    def mean_ll(split: str, C: float | None) -> float:
        return float(np.mean([r[4][C][0] for r in rows if r[1] == split]))

    val_best = min(args.grid, key=lambda c: mean_ll("validation", c))
    header = "| split | dataset | modality | N x D | baseline | " + " | ".join(f"C={c:g}" for c in args.grid) + " |"
    lines = [
        "# The shipped classifier's L2 strength C: out-of-fold log-loss (AUROC)",
        "",
        "Command: `" + " ".join(["HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_regularization.py",
                                 *sys.argv[1:]]) + "`  ",
        f"Run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.machine()}, "
        f"{time.perf_counter() - t0:.0f} s wall. Shipped C: **{DEFAULT_C:g}** (`dq_pipeline.model.DEFAULT_C`).",
        "",
        "Cells: mean per-cell log-loss of 5-fold out-of-fold probabilities against the given tags (lower is better) "
        "and, in brackets, mean per-tag AUROC; **bold** = lowest log-loss of the row. baseline = each tag at its "
        "training-fold prevalence (model-free).",
        "",
        header,
        "|---|---|---|---|---|" + "---|" * len(args.grid),
    ]
    for name, split, modality, shape, cells in rows:
        best = min(args.grid, key=lambda c: cells[c][0])
        out = [f"{cells[None][0]:.4f} ({cells[None][1]:.3f})"]
        for c in args.grid:
            text = f"{cells[c][0]:.4f} ({cells[c][1]:.3f})"
            out.append(f"**{text}**" if c == best else text)
        lines.append(f"| {split} | {name} | {modality} | {shape[0]} x {shape[1]} | " + " | ".join(out) + " |")
    for split in ("validation", "test"):
        if any(r[1] == split for r in rows):
            per = " | ".join(f"{mean_ll(split, c):.4f}" for c in args.grid)
            lines.append(f"| **mean {split}** | | | | {mean_ll(split, None):.4f} | {per} |")
    lines += [
        "",
        f"**Chosen on the validation half** (lowest mean validation log-loss): C = **{val_best:g}**. "
        f"Best per dataset: " + ", ".join(f"{r[0]} {min(args.grid, key=lambda c: r[4][c][0]):g}" for r in rows) + ".",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"chosen on validation: C = {val_best:g}; wrote {args.out}")


if __name__ == "__main__":
    main()
