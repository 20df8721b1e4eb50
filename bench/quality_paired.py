"""Paired comparison of detectors on the same runs of ``bench_quality.py`` (one row per dataset x noise x rate x
seed in its ``*_runs.csv``): per metric, the mean of the per-run difference against a reference method, how many
runs it is better / equal / worse in, and the largest drop. Appends a markdown section to the report.

Usage (after ``bench_quality.py ... --candidate before=bench.label_variants:issue10_default``)::

    .venv/bin/python bench/quality_paired.py bench/results/quality_validation_speed_runs.csv \\
        --reference before --methods ours-default newton --append bench/results/quality_validation_speed.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: (column, label): the issue's quality measures (AUPRC, flagged/true, flag F1, exact-match, clean kept).
METRICS = (("auprc", "AUPRC"), ("flag_ratio", "flagged / true"), ("f1", "flag F1"),
           ("sugg_exact_corrupted", "exact-match on corrupted"), ("sugg_kept_clean", "clean kept"),
           ("expected_error_rate", "expected error rate"))
KEYS = ["dataset", "noise", "rate", "seed"]


def paired(df: pd.DataFrame, reference: str, method: str) -> pd.DataFrame:
    """One row per metric: mean of method - reference over runs both have, counts better / equal / worse."""
    ref = df[df["method"] == reference].set_index(KEYS)
    new = df[df["method"] == method].set_index(KEYS)
    common = ref.index.intersection(new.index)
    rows = []
    for col, label in METRICS:
        a, b = ref.loc[common, col].astype(float), new.loc[common, col].astype(float)
        ok = a.notna() & b.notna()
        d = (b - a)[ok]
        rows.append({"metric": label, "runs": int(ok.sum()), "reference mean": a[ok].mean(), f"{method} mean": b[ok].mean(),
                     "mean difference": d.mean(), "identical runs": int((d.abs() < 1e-12).sum()),
                     "better": int((d > 1e-12).sum()), "worse": int((d < -1e-12).sum()),
                     "largest drop": float(d.min()) if len(d) else np.nan})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs_csv", type=Path)
    parser.add_argument("--reference", default="before")
    parser.add_argument("--methods", nargs="+", default=["ours-default"])
    parser.add_argument("--append", type=Path, default=None, help="markdown report to append the section to")
    args = parser.parse_args(argv)
    df = pd.read_csv(args.runs_csv)
    command = ".venv/bin/python bench/quality_paired.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = ["", f"## Paired against `{args.reference}` (same runs)", "", f"Command: `{command}`", "",
             "For flagged / true and the expected error rate a difference is a change, not a gain or a loss; "
             "'better' counts higher values.", ""]
    for method in args.methods:
        table = paired(df, args.reference, method)
        lines += [f"### {method} vs {args.reference}", "",
                  "| " + " | ".join(table.columns) + " |", "|---|" + "---:|" * (len(table.columns) - 1)]
        for _, r in table.iterrows():
            lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.append:
        with args.append.open("a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
