"""Speed of the embedding layer vs the bare models, and of the embedding cache.

(a) texts/s: bare ``SentenceTransformer.encode`` vs ``embed_texts`` on 2,000 GoEmotions comments;
(b) images/s: bare EfficientNet-Lite0 forward over already-preprocessed batches vs
    ``embed_images`` (which also decodes and resizes) on 200 MIML photos; and the model's forward in the default
    contiguous memory layout (before) vs channels-last (shipped), same batches;
(c) cold (empty cache) vs warm (all hits) ``embed_texts_cached`` / ``embed_images_cached``.
Each timing is the median of 3 runs (bare and ours interleaved so machine load hits both).
Writes a markdown table to bench/results/embed.md.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_embed.py
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from dq_pipeline.embed.cache import EmbeddingCache
from dq_pipeline.embed.image import (
    DEFAULT_IMAGE_MODEL,
    embed_images,
    embed_images_cached,
    load_efficientnet_lite,
    preprocess_batch,
)
from dq_pipeline.embed.text import embed_texts, embed_texts_cached, load_text_model

DATA = Path(os.environ.get("DQ_SHARED_DATA", "/work/shared/data"))
RESULTS = Path(__file__).resolve().parent / "results" / "embed.md"
N_TEXTS, N_IMAGES, RUNS = 2000, 200, 3
TEXT_BATCH, IMAGE_BATCH = 64, 32


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    fns: dict[str, Callable[[], object]], runs: int = RUNS
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall seconds and median process-CPU seconds of each function.

    Runs are interleaved with alternating order so drifting load on a shared machine hits both;
    CPU time (all threads of this process) shows the work done, independent of that load.
    """
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for run in range(runs):
        for name in list(fns)[:: 1 if run % 2 == 0 else -1]:
            c0 = time.process_time()
            wall[name].append(timed(fns[name]))
            cpu[name].append(time.process_time() - c0)
    med = statistics.median
    return {k: med(v) for k, v in wall.items()}, {k: med(v) for k, v in cpu.items()}


def main() -> None:
    import torch

    texts = pd.read_csv(DATA / "goemotions" / "goemotions.csv", keep_default_na=False)["text"]
    texts = texts.sample(N_TEXTS, random_state=0).tolist()
    labels = pd.read_csv(DATA / "miml_natural_scenes" / "labels.csv", keep_default_na=False)
    paths = [DATA / "miml_natural_scenes" / p for p in labels["image"].sample(N_IMAGES, random_state=0)]

    # warm-up: load models once (cached per process), first forwards
    st = load_text_model()
    st.encode(texts[:64], batch_size=TEXT_BATCH)
    net = load_efficientnet_lite(DEFAULT_IMAGE_MODEL)
    embed_images(paths[:IMAGE_BATCH], batch_size=IMAGE_BATCH)

    rows: list[tuple[str, ...]] = []

    # (a) text throughput
    t, c = interleaved(
        {
            "bare": lambda: st.encode(texts, batch_size=TEXT_BATCH, show_progress_bar=False),
            "ours": lambda: embed_texts(texts, batch_size=TEXT_BATCH),
        }
    )
    rows.append(
        (
            f"text: {N_TEXTS} GoEmotions comments, all-MiniLM-L6-v2, batch {TEXT_BATCH}",
            f"bare `SentenceTransformer.encode` {N_TEXTS / t['bare']:.1f} texts/s",
            f"`embed_texts` {N_TEXTS / t['ours']:.1f} texts/s",
            f"{t['bare'] / t['ours']:.2f}x",
            f"{c['bare'] / c['ours']:.2f}x",
            ">= 0.90x",
        )
    )

    # (b) image throughput; bare = forward only, on batches preprocessed beforehand
    batches = [preprocess_batch(paths[i : i + IMAGE_BATCH]) for i in range(0, N_IMAGES, IMAGE_BATCH)]

    def bare_images() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([net.extract_features(x).mean(dim=(2, 3)).numpy() for x in batches])

    t, c = interleaved({"bare": bare_images, "ours": lambda: embed_images(paths, batch_size=IMAGE_BATCH)})
    rows.append(
        (
            f"image: {N_IMAGES} MIML photos, EfficientNet-Lite0 1280-d, batch {IMAGE_BATCH}",
            f"bare forward (pre-decoded tensors) {N_IMAGES / t['bare']:.1f} img/s",
            f"`embed_images` (decode + resize + forward) {N_IMAGES / t['ours']:.1f} img/s",
            f"{t['bare'] / t['ours']:.2f}x",
            f"{c['bare'] / c['ours']:.2f}x",
            ">= 0.90x",
        )
    )

    # (b2) memory layout of the image model: contiguous NCHW (before) vs channels-last (shipped), same batches
    import copy

    contiguous_net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    contiguous_batches = [x.contiguous() for x in batches]

    def contiguous_images() -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([contiguous_net.extract_features(x).mean(dim=(2, 3)).numpy()
                                   for x in contiguous_batches])

    t, c = interleaved({"before": contiguous_images, "shipped": bare_images})
    diff = float(np.abs(contiguous_images() - bare_images()).max())
    rows.append(
        (
            f"image model layout: {N_IMAGES} MIML photos, forward only, batch {IMAGE_BATCH}",
            f"contiguous NCHW (before) {N_IMAGES / t['before']:.1f} img/s",
            f"channels-last (shipped) {N_IMAGES / t['shipped']:.1f} img/s; features max abs diff {diff:.1e}",
            f"{t['before'] / t['shipped']:.2f}x",
            f"{c['before'] / c['shipped']:.2f}x",
            "",
        )
    )

    # (c) cache: cold = empty cache folder each run; warm = every item already stored
    for label, n, fn, items in [
        ("text", N_TEXTS, embed_texts_cached, texts),
        ("image", N_IMAGES, embed_images_cached, paths),
    ]:
        with tempfile.TemporaryDirectory() as tmp:
            cold = [timed(lambda i=i: fn(items, cache=EmbeddingCache(Path(tmp) / f"cold{i}"))) for i in range(RUNS)]
            warm_cache = EmbeddingCache(Path(tmp) / "cold0")
            warm = [timed(lambda: fn(items, cache=warm_cache)) for _ in range(RUNS)]
        c, w = statistics.median(cold), statistics.median(warm)
        rows.append(
            (
                f"cache, {label}: `embed_{label}s_cached` on {n} items",
                f"cold {c:.2f} s ({n / c:.0f}/s)",
                f"warm {w * 1000:.0f} ms ({n / w:.0f}/s)",
                f"{c / w:.0f}x",
                "",
                ">= 10x",
            )
        )

    header = (
        "| case | baseline | ours | speed ours/baseline (wall) | (CPU time) | target |\n"
        "|---|---|---|---|---|---|\n"
    )
    table = header + "".join(f"| {' | '.join(r)} |\n" for r in rows)
    meta = (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads (CPU only); "
        f"median of {RUNS} runs (bare/ours interleaved, alternating order); {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.\n"
    )
    print(table)
    print(meta)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        "# Embedding layer speed (`bench/bench_embed.py`)\n\n"
        + meta
        + "\nRatio > 1 means ours is faster. Wall time is what a user waits; on a busy shared machine "
        "it is noisy, so the ratio of process CPU time (work done) is given too. Warm = every item is a cache hit "
        "(keys from text / file bytes, one .npz per model).\n\n"
        + table
    )


if __name__ == "__main__":
    main()
