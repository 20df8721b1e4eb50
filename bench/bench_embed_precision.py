"""Embedding in bfloat16 (torch CPU autocast) against float32: speed, and how far the vectors move.

Usage (from the repository root)::

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_embed_precision.py

- **text**: ``--texts`` GoEmotions comments (a seeded sample of ../shared/data/goemotions) through ``embed_texts``
  with all-MiniLM-L6-v2;
- **image**: ``--images`` MIML photos (a seeded sample of ../shared/data/miml_natural_scenes) through ``embed_images`` with
  EfficientNet-Lite0.

Both precisions embed the same items in one process, alternating, ``--repeats`` rounds after one small warm-up
call each; the table gives the median seconds and the float32 / bfloat16 ratio of the medians. Agreement compares
the two sets of vectors: cosine of each item's two vectors (unit-normalised), the share of each item's 15 exact
nearest neighbours (cosine, float64 brute force) both sets agree on, and the near-duplicate pairs (cosine distance
<= ``duplicates.DEFAULT_THRESHOLD``) each set finds. Written to ``bench/results/embed_precision.md``.

What it does not show: CPUs without native bfloat16 (there "auto" stays float32, and bfloat16 is emulated and
slower), the label-issue quality on top of the vectors (``bench_quality.py`` with ``$DQ_BENCH_EMBED_PRECISION``),
other models than the two shipped ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("DQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
PRECISIONS = ("float32", "bfloat16")


def _items(kind: str, n: int, seed: int) -> list:
    if kind == "text":
        frame = pd.read_csv(SHARED / "goemotions" / "goemotions.csv", keep_default_na=False)
        rows = np.random.default_rng(seed).choice(len(frame), size=min(n, len(frame)), replace=False)
        return frame["text"].astype(str).iloc[np.sort(rows)].tolist()
    files = sorted(p for p in (SHARED / "miml_natural_scenes" / "images").rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"no images under {SHARED / 'miml_natural_scenes' / 'images'}")
    rows = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
    return [files[i] for i in np.sort(rows)]


def _embed(kind: str, items: list, precision: str) -> np.ndarray:
    if kind == "text":
        from dq_pipeline.embed.text import embed_texts

        return embed_texts(items, precision=precision)
    from dq_pipeline.embed.image import embed_images

    return embed_images(items, precision=precision)


def _unit(X: np.ndarray) -> np.ndarray:
    X = X.astype(np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def agreement(full: np.ndarray, low: np.ndarray, k: int = 15) -> dict[str, float]:
    """How far the bfloat16 vectors ``low`` are from the float32 ones ``full`` (both (N, D))."""
    from dq_pipeline.issues.duplicates import DEFAULT_THRESHOLD

    a, b = _unit(full), _unit(low)
    cosine = (a * b).sum(axis=1)
    neighbours, pairs = [], []
    for U in (a, b):
        S = U @ U.T
        np.fill_diagonal(S, -np.inf)
        i, j = np.nonzero(np.triu(1.0 - S <= DEFAULT_THRESHOLD, 1))
        pairs.append(set(zip(i.tolist(), j.tolist())))
        neighbours.append(np.argsort(-S, axis=1, kind="stable")[:, :k])
        del S
    kept, same = [], 0
    for x, y in zip(*neighbours):
        shared = len(set(x.tolist()) & set(y.tolist()))
        kept.append(shared / k)
        same += shared == k
    union = pairs[0] | pairs[1]
    return {"cos_min": float(cosine.min()), "cos_p01": float(np.quantile(cosine, 0.01)),
            "cos_median": float(np.median(cosine)), "knn_kept": float(np.mean(kept)), "knn_same": same / len(a),
            "dup_full": len(pairs[0]), "dup_low": len(pairs[1]),
            "dup_jaccard": len(pairs[0] & pairs[1]) / len(union) if union else 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=8000, help="GoEmotions comments (default 8000)")
    parser.add_argument("--images", type=int, default=400, help="MIML photos (default 400)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "embed_precision.md"))
    args = parser.parse_args()

    import torch

    from dq_pipeline.hardware import native_bf16

    rows, agree = [], {}
    for kind, n in (("text", args.texts), ("image", args.images)):
        items = _items(kind, n, args.seed)
        for precision in PRECISIONS:  # warm-up: model load, first-call allocations
            _embed(kind, items[:32], precision)
        seconds: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        vectors: dict[str, np.ndarray] = {}
        for r in range(args.repeats):
            for precision in (PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]):
                t0 = time.perf_counter()
                vectors[precision] = _embed(kind, items, precision)
                seconds[precision].append(time.perf_counter() - t0)
                print(f"{kind} {precision} round {r + 1}: {seconds[precision][-1]:.1f} s", flush=True)
        med = {p: statistics.median(s) for p, s in seconds.items()}
        rows.append((kind, len(items), med, seconds))
        agree[kind] = agreement(vectors["float32"], vectors["bfloat16"])
        print(kind, agree[kind], flush=True)

    lines = [
        "# Embedding precision: bfloat16 autocast vs float32 (`bench/bench_embed_precision.py`)",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'bench/bench_embed_precision.py', *sys.argv[1:]])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; native bfloat16 (AMX / AVX512-BF16): {native_bf16()}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.  ",
        "Text: a seeded sample of GoEmotions comments, all-MiniLM-L6-v2 (`embed_texts`); image: a seeded sample of "
        "MIML photos, EfficientNet-Lite0 1280-d (`embed_images`, decoding included). Both precisions in one process, "
        f"alternating, {args.repeats} rounds after a warm-up; medians.",
        "",
        "| items | float32 s | bfloat16 s | float32 / bfloat16 | rounds float32 | rounds bfloat16 |",
        "|---|---:|---:|---:|---|---|",
    ]
    for kind, n, med, seconds in rows:
        lines.append(f"| {n} {kind}s | {med['float32']:.2f} | {med['bfloat16']:.2f} | "
                     f"**{med['float32'] / med['bfloat16']:.2f}x** | "
                     f"{', '.join(f'{s:.1f}' for s in seconds['float32'])} | "
                     f"{', '.join(f'{s:.1f}' for s in seconds['bfloat16'])} |")
    lines += [
        "",
        "Agreement of the bfloat16 vectors with the float32 ones (15-NN: exact cosine neighbours of each item among "
        "the same items; near-duplicate pairs at cosine distance <= `duplicates.DEFAULT_THRESHOLD`):",
        "",
        "| items | cosine min | cosine 1st percentile | cosine median | 15-NN kept (mean) | same 15-NN list | "
        "near-dup pairs float32 | bfloat16 | Jaccard |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, n, _, _ in rows:
        a = agree[kind]
        lines.append(f"| {n} {kind}s | {a['cos_min']:.5f} | {a['cos_p01']:.5f} | {a['cos_median']:.6f} | "
                     f"{a['knn_kept']:.3f} | {a['knn_same']:.3f} | {a['dup_full']} | {a['dup_low']} | "
                     f"{a['dup_jaccard']:.3f} |")
    lines += ["", "What it does not show: CPUs without native bfloat16 (there `embedding_precision: auto` stays float32; "
              "bfloat16 would be emulated and slower), the detectors' quality on top of the vectors "
              "(`bench_quality.py` with `$DQ_BENCH_EMBED_PRECISION`), other models.", ""]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
