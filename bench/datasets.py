"""Datasets of the label-error quality benchmark, and its fixed validation / test split.

Every dataset is real data from ``../shared/data`` (benchmarks may read it; tests may not): the given
tags are taken as the clean truth. Two datasets are built with real one-of-N tag groups from MULAN
flags: its nominal country codes become groups of mutually exclusive tags next to the colour tags
(every flag has exactly one landmass, one zone, one religion, one language), and the features are
the remaining columns.

The split is fixed here and stated in every results file:

* ``VALIDATION`` (for choosing defaults): emotions, scene, tmdb, flags, flags-groupsA, scene-single
* ``TEST`` (for reporting): yeast, miml, goemotions, flags-groupsB, goemotions-single

``*-single`` datasets are the rows of a mostly single-label dataset that carry exactly one tag, so all
its tags form one real one-of-N group (scene type; a comment's one emotion) - bigger group datasets
than the 194 flags.

Text and image embeddings (the pipeline's own models, in the audit's default ``embedding_precision`` "auto"
unless ``$DQ_BENCH_EMBED_PRECISION`` says otherwise) are cached under ``bench/.cache/``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
CACHE = ROOT / "bench" / ".cache"
SUBSET_SEED = 0
#: The embedding models' precision, as the audit's ``embedding_precision`` setting (default "auto").
EMBED_PRECISION = os.environ.get("DQ_BENCH_EMBED_PRECISION", "auto")

#: UCI Flags codebook (flag.names): value -> name of the nominal codes turned into one-of-N groups.
FLAG_CODES: dict[str, dict[int, str]] = {
    "landmass": {1: "N.America", 2: "S.America", 3: "Europe", 4: "Africa", 5: "Asia", 6: "Oceania"},
    "zone": {1: "NE", 2: "SE", 3: "SW", 4: "NW"},
    "religion": {0: "Catholic", 1: "Other Christian", 2: "Muslim", 3: "Buddhist", 4: "Hindu",
                 5: "Ethnic", 6: "Marxist", 7: "Others"},
    "language": {1: "English", 2: "Spanish", 3: "French", 4: "German", 5: "Slavic",
                 6: "Other Indo-European", 7: "Chinese", 8: "Arabic", 9: "Japanese/Turkish/Finnish/Magyar",
                 10: "Others"},
}


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    modality: str  # tabular | text | image
    folder: str
    file: str
    n_full: int | None  # rows used in the full run (None = all)
    n_quick: int  # rows used with --quick (a prefix of the full run's seeded order)
    column: str | None = None  # text / image column
    group_columns: tuple[str, ...] = ()  # nominal columns turned into one-of-N tag groups
    single_of: str | None = None  # built from this dataset's rows that carry exactly one tag (one-of-N over all tags)


DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("yeast", "tabular", "mulan_yeast", "yeast.csv", None, 600),
    DatasetSpec("scene", "tabular", "mulan_scene", "scene.csv", None, 600),
    DatasetSpec("emotions", "tabular", "mulan_emotions", "emotions.csv", None, 593),
    DatasetSpec("flags", "tabular", "mulan_flags", "flags.csv", None, 194),
    DatasetSpec("flags-groupsA", "tabular", "mulan_flags", "flags.csv", None, 194,
                group_columns=("landmass", "zone")),
    DatasetSpec("flags-groupsB", "tabular", "mulan_flags", "flags.csv", None, 194,
                group_columns=("religion", "language")),
    DatasetSpec("miml", "image", "miml_natural_scenes", "labels.csv", 600, 300, "image"),  # stratified split yields 593
    DatasetSpec("goemotions", "text", "goemotions", "goemotions.csv", 2500, 600, "text"),
    DatasetSpec("tmdb", "text", "tmdb_movie_genres", "movies.csv", 2500, 600, "overview"),
    # one-of-N over all tags: the rows of a mostly single-label dataset that carry exactly one tag
    DatasetSpec("scene-single", "tabular", "mulan_scene", "scene.csv", None, 600, single_of="scene"),
    DatasetSpec("goemotions-single", "text", "goemotions", "goemotions.csv", 2500, 600, "text", single_of="goemotions"),
)
SPECS = {d.name: d for d in DATASETS}

#: Fixed split (issue 10): defaults are chosen on VALIDATION only; reported numbers are on TEST.
#: Each half has a one-of-N group dataset, a text set, a big and a small tabular set; the test half
#: holds the image set (MIML) and the GoEmotions case of the issue (no row is ever empty).
VALIDATION: tuple[str, ...] = ("emotions", "scene", "tmdb", "flags", "flags-groupsA", "scene-single")
TEST: tuple[str, ...] = ("yeast", "miml", "goemotions", "flags-groupsB", "goemotions-single")
SPLITS: dict[str, tuple[str, ...]] = {"validation": VALIDATION, "test": TEST, "all": VALIDATION + TEST}


@dataclass
class Dataset:
    name: str
    modality: str
    X: np.ndarray  # (N, D) features
    Y: np.ndarray  # (N, K) uint8 clean tags
    tags: list[str]
    groups: list[np.ndarray] = field(default_factory=list)  # one-of-N groups (tag index arrays)


def _read(spec: DatasetSpec) -> pd.DataFrame:
    frame = pd.read_csv(DATA / spec.folder / spec.file, keep_default_na=False)
    if spec.folder == "tmdb_movie_genres":
        frame = frame[frame["overview"].str.strip() != ""]
    return frame.reset_index(drop=True)


def _tag_matrix(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
    from dq_pipeline.ingest import parse_tags, tags_matrix

    sets = [parse_tags(s, "|") for s in labels]
    tags = sorted({t for s in sets for t in s})
    return tags_matrix(sets, tags), tags


def _group_tags(frame: pd.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, list[str], list[list[int]]]:
    """One-of-N tags from nominal code columns: (N, sum of codes) 0/1, their names, index groups."""
    blocks, names, groups = [], [], []
    for col in columns:
        codes = FLAG_CODES[col]
        values = frame[col].astype(int).to_numpy()
        unknown = sorted(set(values) - set(codes))
        if unknown:
            raise ValueError(f"{col}: codes {unknown} not in the UCI codebook {sorted(codes)}")
        present = [c for c in sorted(codes) if (values == c).any()]
        groups.append(list(range(len(names), len(names) + len(present))))
        names += [f"{col}={codes[c]}" for c in present]
        blocks.append(np.stack([values == c for c in present], axis=1))
    return np.concatenate(blocks, axis=1).astype(np.uint8), names, groups


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


def embed_precision(modality: str) -> str:
    """The resolved precision :data:`EMBED_PRECISION` gives a ``modality``'s model ("float32" / "bfloat16")."""
    from dq_pipeline.embed import resolved_precision

    return resolved_precision(EMBED_PRECISION, modality)


def _embed_cached(spec: DatasetSpec, frame: pd.DataFrame, rows: np.ndarray, cache_rows: np.ndarray) -> np.ndarray:
    """Embeddings of ``frame.iloc[rows]``, from bench/.cache when a cached subset starts with ``rows``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    precision = embed_precision(spec.modality)
    tag = "" if precision == "float32" else f"_{precision}"
    for cand in (cache_rows, rows):
        path = CACHE / f"{spec.name}_{len(cand)}_seed{SUBSET_SEED}{tag}.npy"
        ids_path = path.with_suffix(".rows.npy")
        if path.exists() and ids_path.exists():
            cached_rows = np.load(ids_path)
            if np.array_equal(cached_rows[: len(rows)], rows):
                return np.load(path)[: len(rows)]
    t0 = time.perf_counter()
    if spec.modality == "text":
        from dq_pipeline.embed.text import embed_texts

        X = embed_texts(frame[spec.column].iloc[rows].astype(str).tolist(), precision=precision)
    else:
        from dq_pipeline.embed.image import embed_images

        folder = DATA / spec.folder
        X = embed_images([folder / p for p in frame[spec.column].iloc[rows]], precision=precision)
    print(f"  embedded {len(rows)} {spec.name} items ({precision}) in {time.perf_counter() - t0:.0f}s", flush=True)
    path = CACHE / f"{spec.name}_{len(rows)}_seed{SUBSET_SEED}{tag}.npy"
    np.save(path, X)
    np.save(path.with_suffix(".rows.npy"), rows)
    return X


def load_dataset(name: str, quick: bool = False) -> Dataset:
    """Features and clean tags of one benchmark dataset (subset as in its spec)."""
    from dq_pipeline.embed.tabular import featurize_tabular

    spec = SPECS[name]
    if spec.single_of:
        base = load_dataset(spec.single_of, quick=quick)
        rows = np.flatnonzero(base.Y.sum(axis=1) == 1)
        Y = base.Y[rows]
        keep = Y.sum(axis=0) > 0
        return Dataset(spec.name, spec.modality, base.X[rows], Y[:, keep], [t for t, k in zip(base.tags, keep) if k],
                       [np.arange(int(keep.sum()), dtype=np.int64)])
    frame = _read(spec)
    Y_all, tags = _tag_matrix(frame["labels"])
    groups: list[list[int]] = []
    if spec.group_columns:
        G, gnames, gidx = _group_tags(frame, spec.group_columns)
        offset = len(tags)
        Y_all = np.concatenate([Y_all, G], axis=1)
        tags = tags + gnames
        groups = [[offset + i for i in g] for g in gidx]
    full_rows = _subset_rows(spec, Y_all)
    rows = full_rows[: spec.n_quick] if quick else full_rows
    if spec.modality == "tabular":
        sub = frame.iloc[rows].reset_index(drop=True)
        X = featurize_tabular(sub, [c for c in sub.columns if c != "labels" and c not in spec.group_columns])
    else:
        X = _embed_cached(spec, frame, rows, full_rows)
    Y = Y_all[rows]
    keep = Y.sum(axis=0) > 0  # a tag absent from the subset carries no signal
    new_index = np.cumsum(keep) - 1
    kept_groups = []
    for g in groups:
        g2 = [int(new_index[i]) for i in g if keep[i]]
        if len(g2) >= 2:
            kept_groups.append(np.asarray(g2, dtype=np.int64))
    return Dataset(spec.name, spec.modality, np.asarray(X, dtype=np.float64), Y[:, keep],
                   [t for t, k in zip(tags, keep) if k], kept_groups)


if __name__ == "__main__":  # python bench/datasets.py [names]: build (and cache) the datasets, print shapes
    import sys

    for n in sys.argv[1:] or [d.name for d in DATASETS]:
        d = load_dataset(n)
        card = d.Y.sum(axis=1)
        print(f"{n}: X {d.X.shape}, Y {d.Y.shape}, cardinality {card.min()}-{card.max()} "
              f"(mean {card.mean():.2f}), groups {[len(g) for g in d.groups]}", flush=True)
