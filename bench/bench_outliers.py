"""Outlier flags against planted junk: real data per modality plus items that do not belong there.

Usage::

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_outliers.py --miml-rows 800   # 3 min, warm cache
    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_outliers.py --validation-only

The first run embeds ~56k texts and ~1.2k images into the cache (about 2-3 min for GoEmotions on 2 quiet
cores; 50 min on a machine shared with other jobs); ``--goemotions-rows N`` samples N comments instead.

Each dataset is real data (the given rows are taken as clean) plus planted junk; features come from the
shipped embedders exactly as the pipeline's ``features`` asset computes them (text: packaged
all-MiniLM-L6-v2, cosine; image: EfficientNet-Lite0, cosine; tabular: ``featurize_tabular`` on the
frame *with* the junk rows, euclidean), then ``find_outliers`` runs as the ``outliers`` asset runs it.

* **validation** (the calibrated threshold's parameters were chosen on these): bundled ``data/``
  MIML photos (400) + the 5 fixture junk images; bundled GoEmotions sample (1,261) + the 16 fixture junk
  texts; bundled MULAN emotions (593) and flags (194) + planted rows.
* **test** (reported, not tuned on): the other 1,600 MIML photos of ``../shared/data`` (``--miml-rows``
  samples them) + the 5 fixture images, and in a second copy + 5 unseen junk images made here (a third
  *stress* copy holds all 10); full GoEmotions (54k, minus the bundled sample's rows) and 2,500 TMDb movie
  overviews, each + the fixture texts + 12 unseen junk texts; MULAN yeast and scene + planted rows.

Methods: ``new`` = ``find_outliers`` defaults as the ``outliers`` asset calls it (calibrated threshold; texts
with ``pieces_per_word`` as the second statistic); ``knn`` = the same on the k-NN distance alone (the default
before that statistic); ``old`` = the previous Tukey fence
(``find_outliers(..., method="iqr")``, Q3 + 3 IQR); ``baseline`` = a model-free robust z-score (max over
simple per-item statistics: pixel statistics / character classes and length / per-column values) flagged
at the same calibrated rule as ``new`` (see ``flag_by_null``) and ranked by that max z.
Embeddings are cached by content in ``bench/results/.cache/embeddings`` (``EmbeddingCache``, git-ignored).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import base64
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dq_pipeline.issues import outliers as ol  # noqa: E402

DATA = ROOT / "data"
SHARED = Path(os.environ.get("DQ_SHARED_DATA", ROOT.parent / "shared" / "data"))
JUNK = ROOT / "dq_pipeline_tests" / "fixtures" / "junk"
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / ".cache" / "embeddings"
SEED = 0


@dataclass
class Case:
    """One dataset with planted junk: features X (N, D), the metric, which rows are junk and a model-free score."""

    name: str
    modality: str
    split: str  # validation | test
    X: np.ndarray
    metric: str
    junk: np.ndarray  # (N,) bool
    kinds: list[str]  # (N,) '' for clean rows, else the junk kind
    baseline: np.ndarray  # (N,) model-free outlyingness, HIGH = more outlying
    notes: str = ""
    hard: np.ndarray | None = field(default=None)  # (N,) bool: junk kinds not counted in the goal
    extra: np.ndarray | None = field(default=None)  # (N,) the detector's second statistic (texts: pieces per word)


# --------------------------------------------------------------------------------------------------
# model-free baselines (HIGH = more outlying)


def robust_z_max(F: np.ndarray) -> np.ndarray:
    """Max over columns of |x - median| / (1.4826 MAD) (std where the MAD is 0; constant columns skipped)."""
    F = np.asarray(F, dtype=np.float64)
    med = np.median(F, axis=0)
    scale = 1.4826 * np.median(np.abs(F - med), axis=0)
    std = F.std(axis=0)
    scale = np.where(scale > 0, scale, std)
    keep = scale > 0
    if not keep.any():
        return np.zeros(len(F))
    return (np.abs(F[:, keep] - med[keep]) / scale[keep]).max(axis=1)


def text_statistics(texts: list[str]) -> np.ndarray:
    """(N, 8): log length, share of letters / digits / upper case / non-ASCII / punctuation / spaces,
    mean word length."""
    rows = []
    for t in texts:
        n = max(len(t), 1)
        words = t.split()
        rows.append([
            np.log1p(len(t)),
            sum(c.isalpha() for c in t) / n,
            sum(c.isdigit() for c in t) / n,
            sum(c.isupper() for c in t) / n,
            sum(ord(c) > 127 for c in t) / n,
            sum((not c.isalnum()) and (not c.isspace()) for c in t) / n,
            sum(c.isspace() for c in t) / n,
            np.log1p(np.mean([len(w) for w in words]) if words else 0.0),
        ])
    return np.asarray(rows)


def image_statistics(paths: list[Path]) -> np.ndarray:
    """(N, 9): per-channel mean and std of the RGB pixels, mean saturation, mean absolute gradient,
    grey-histogram entropy (on a 128-pixel thumbnail)."""
    from PIL import Image

    rows = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.thumbnail((128, 128))
            a = np.asarray(im, dtype=np.float64) / 255.0
        grey = a.mean(axis=2)
        sat = a.max(axis=2) - a.min(axis=2)
        grad = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
        hist = np.histogram(grey, bins=32, range=(0, 1))[0] / grey.size
        ent = -(hist[hist > 0] * np.log(hist[hist > 0])).sum()
        rows.append([*a.mean(axis=(0, 1)), *a.std(axis=(0, 1)), sat.mean(), grad, ent])
    return np.asarray(rows)


# --------------------------------------------------------------------------------------------------
# junk


def fixture_junk_texts() -> pd.DataFrame:
    return pd.read_csv(JUNK / "texts.csv", keep_default_na=False)


def unseen_junk_texts() -> pd.DataFrame:
    """Junk of the same families as the fixture, but other strings (test sets only)."""
    rng = np.random.default_rng(1)
    rows = [
        ("c code", "for (int i = 0; i < n; ++i) { if (buf[i] == '\\0') break; sum += buf[i] * w[i]; } return sum;"),
        ("shell", "sudo apt-get update && sudo apt-get install -y build-essential libssl-dev && make -j4 install"),
        ("base64", base64.b64encode(rng.bytes(48)).decode()),
        ("uuid list", "3f2b8c1e-9a4d-4e2b-8f1a-0c6d2e9b7a55 7d1e0f3a-2b6c-4d8e-9f0a-1b2c3d4e5f60"),
        ("spanish", "La reunión del consejo de administración se aplaza hasta el próximo jueves a las catorce horas."),
        ("chinese", "本次会议将于下周四下午两点在三楼会议室举行，请各部门负责人准时参加。"),
        ("arabic", "سيعقد الاجتماع القادم يوم الخميس في قاعة المؤتمرات الرئيسية بحضور جميع الأعضاء."),
        ("repeated character", "z" * 90),
        ("repeated syllable", "ha" * 60),
        ("xml", "<?xml version=\"1.0\"?><config><entry key=\"timeout\">30</entry><entry key=\"retries\">5</entry></config>"),
        ("log line", "2026-11-30T14:02:11.532Z INFO [worker-3] job=8812 status=done elapsed_ms=4411 bytes=1048576"),
        ("dotted numbers", "10.0.0.1 10.0.0.2 10.0.0.17 192.168.1.254 172.16.0.3 8.8.8.8 1.1.1.1"),
    ]
    return pd.DataFrame(rows, columns=["kind", "text"])


def unseen_junk_images(folder: Path) -> list[tuple[str, Path]]:
    """5 more junk images (test sets only): white, dark blue, Gaussian noise, a text 'receipt', a green disc."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = []

    def save(kind: str, im: Image.Image) -> None:
        p = folder / f"unseen_{kind.replace(' ', '_')}.png"
        im.save(p)
        out.append((kind, p))

    save("solid white", Image.new("RGB", (256, 384), (255, 255, 255)))
    save("solid dark blue", Image.new("RGB", (384, 256), (10, 20, 90)))
    g = np.clip(np.random.default_rng(1).normal(128, 60, size=(160, 160, 3)), 0, 255).astype(np.uint8)
    save("gaussian noise", Image.fromarray(g, "RGB"))
    rec = Image.new("RGB", (256, 384), (250, 250, 245))
    d = ImageDraw.Draw(rec)
    for i, line in enumerate(["RECEIPT", "Store 0042", "Coffee      3.10", "Bagel       2.40", "Tax         0.44",
                              "TOTAL       5.94", "Card **** 1234", "Thank you!"]):
        d.text((20, 20 + 40 * i), line, fill=(0, 0, 0))
    save("text receipt", rec)
    disc = Image.new("RGB", (384, 256), (255, 255, 255))
    ImageDraw.Draw(disc).ellipse([(142, 78), (242, 178)], fill=(20, 170, 40))
    save("green disc", disc)
    return out


TABULAR_KINDS = ("beyond every range", "one column 10 ranges out", "sentinel -999", "x100 unit error",
                 "shuffled (inside ranges)")


def plant_tabular_rows(frame: pd.DataFrame, numeric: list[str], kind: str, n_rows: int,
                       rng: np.random.Generator) -> pd.DataFrame:
    """``n_rows`` rows of one junk ``kind``, built from random real rows of ``frame`` (categorical cells copied).

    Kinds: *beyond every range* (each numeric column at max + 0.5 (max - min)); *one column 10 ranges out*
    (a real row, one random column at max + 10 (max - min)); *sentinel -999* (a real row, 3 random columns
    at -999); *x100 unit error* (a real row, every numeric column times 100, or max + 100 ranges where it is
    0); *shuffled* (every column from a different random row: inside each column's range, off the joint
    distribution; reported as ``hard``, not counted in the goal).
    """
    lo, hi = frame[numeric].min(), frame[numeric].max()
    span = (hi - lo).where(hi > lo, 1.0)
    rows = []
    for _ in range(n_rows):
        r = frame.iloc[rng.integers(len(frame))].copy()
        if kind == "beyond every range":
            r[numeric] = (hi + 0.5 * span).to_numpy()
        elif kind == "one column 10 ranges out":
            c = numeric[rng.integers(len(numeric))]
            r[c] = hi[c] + 10 * span[c]
        elif kind == "sentinel -999":
            for c in rng.choice(numeric, size=min(3, len(numeric)), replace=False):
                r[c] = -999.0
        elif kind == "x100 unit error":
            vals = r[numeric].astype(float).to_numpy()
            r[numeric] = np.where(vals != 0, vals * 100, (hi + 100 * span).to_numpy())
        elif kind.startswith("shuffled"):
            for c in frame.columns:
                r[c] = frame[c].iloc[rng.integers(len(frame))]
        else:
            raise ValueError(kind)
        rows.append(r)
    return pd.DataFrame(rows).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# cases


def _embed_texts(texts: list[str]) -> np.ndarray:
    from dq_pipeline.embed.cache import EmbeddingCache
    from dq_pipeline.embed.text import embed_texts_cached

    return embed_texts_cached(texts, cache=EmbeddingCache(CACHE))


def _embed_images(paths: list[Path]) -> np.ndarray:
    from dq_pipeline.embed.cache import EmbeddingCache
    from dq_pipeline.embed.image import embed_images_cached

    return embed_images_cached([str(p) for p in paths], cache=EmbeddingCache(CACHE))


def text_case(name: str, split: str, clean: list[str], junk: pd.DataFrame, notes: str = "") -> Case:
    texts = list(clean) + list(junk["text"])
    is_junk = np.r_[np.zeros(len(clean), bool), np.ones(len(junk), bool)]
    t0 = time.perf_counter()
    X = _embed_texts(texts)
    print(f"  {name}: {len(texts)} texts embedded/loaded in {time.perf_counter() - t0:.0f}s", flush=True)
    from dq_pipeline.embed.text import pieces_per_word

    return Case(name, "text", split, X, "cosine", is_junk, [""] * len(clean) + list(junk["kind"]),
                robust_z_max(text_statistics(texts)), notes, extra=pieces_per_word(texts))


def image_case(name: str, split: str, clean: list[Path], junk: list[tuple[str, Path]], notes: str = "") -> Case:
    paths = list(clean) + [p for _, p in junk]
    is_junk = np.r_[np.zeros(len(clean), bool), np.ones(len(junk), bool)]
    t0 = time.perf_counter()
    X = _embed_images(paths)
    print(f"  {name}: {len(paths)} images embedded/loaded in {time.perf_counter() - t0:.0f}s", flush=True)
    return Case(name, "image", split, X, "cosine", is_junk, [""] * len(clean) + [k for k, _ in junk],
                robust_z_max(image_statistics(paths)), notes)


def tabular_cases(name: str, split: str, frame: pd.DataFrame, categorical: list[str], seed: int,
                  n_rows: int = 3) -> list[Case]:
    """One case per junk kind (``n_rows`` planted rows into its own copy of ``frame``), because
    ``featurize_tabular`` standardises with the junk included: a x100 row inflates every column's standard
    deviation and hides other junk in the same copy. ``frame``: feature columns only (no ids/tags)."""
    from dq_pipeline.embed.tabular import featurize_tabular

    frame = frame.copy()
    for c in categorical:
        frame[c] = frame[c].astype(str)
    numeric = [c for c in frame.columns if c not in categorical]
    frame[numeric] = frame[numeric].astype(float)
    rng = np.random.default_rng(seed)
    out = []
    for kind in TABULAR_KINDS:
        planted = plant_tabular_rows(frame, numeric, kind, n_rows, rng)
        full = pd.concat([frame, planted], ignore_index=True)
        X = featurize_tabular(full)
        is_junk = np.r_[np.zeros(len(frame), bool), np.ones(len(planted), bool)]
        hard = is_junk & kind.startswith("shuffled")
        out.append(Case(name, "tabular", split, X, "euclidean", is_junk,
                        [""] * len(frame) + [kind] * len(planted),
                        robust_z_max(full[numeric].to_numpy(float)), notes=kind, hard=hard))
    return out


def build_cases(args: argparse.Namespace, tmp: Path) -> list[Case]:
    cases: list[Case] = []
    fixture_images = sorted(JUNK.glob("images/*.png"))
    fixture_junk = [(p.stem.removeprefix("junk_").replace("_", " "), p) for p in fixture_images]
    texts_fx = fixture_junk_texts()
    if "image" in args.modalities:
        bundled = pd.read_csv(DATA / "miml_scenes" / "labels.csv")
        cases.append(image_case("MIML photos (bundled 400)", "validation",
                                [DATA / "miml_scenes" / p for p in bundled["image"]], fixture_junk))
        shared = pd.read_csv(SHARED / "miml_natural_scenes" / "labels.csv")
        rest = shared.loc[~shared["image"].isin(set(bundled["image"]))]
        if args.miml_rows and args.miml_rows < len(rest):
            held = rest.drop(rest.sample(args.miml_rows, random_state=SEED).index)
            rest = rest.sample(args.miml_rows, random_state=SEED)
            # the photos the test sample leaves out: a second image validation set (same 5 fixture junk)
            cases.append(image_case(f"MIML photos (other {len(held)}, not in the test sample)", "validation",
                                    [SHARED / "miml_natural_scenes" / p for p in held["image"]], fixture_junk))
        if not args.validation_only:
            photos = [SHARED / "miml_natural_scenes" / p for p in rest["image"]]
            unseen = unseen_junk_images(tmp / "junk_images")
            name = f"MIML photos (other {len(rest)})"
            cases.append(image_case(name, "test", photos, fixture_junk, "5 fixture junk images"))
            cases.append(image_case(name, "test", photos, unseen, "5 unseen junk images"))
            cases.append(image_case(name + ", all 10 junk together", "test (stress)", photos, fixture_junk + unseen,
                                    "10 junk images in one copy: similar junk (4 solid colours, 2 noises, 2 text "
                                    "images) fill each other's 10 nearest neighbours"))
    if "text" in args.modalities:
        sample = pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False)
        cases.append(text_case("GoEmotions sample (bundled 1,261)", "validation", list(sample["text"]), texts_fx))
        if not args.validation_only:
            both = pd.concat([texts_fx, unseen_junk_texts()], ignore_index=True)
            full = pd.read_csv(SHARED / "goemotions" / "goemotions.csv", keep_default_na=False)
            full = full.loc[~full["id"].isin(set(sample["id"]))]
            if args.goemotions_rows and args.goemotions_rows < len(full):
                full = full.sample(args.goemotions_rows, random_state=SEED)
            cases.append(text_case(f"GoEmotions full (other {len(full):,})", "test", list(full["text"]), both,
                                   "fixture + 12 unseen junk texts"))
            tmdb = pd.read_csv(SHARED / "tmdb_movie_genres" / "movies.csv", keep_default_na=False)
            tmdb = tmdb.loc[tmdb["overview"].str.strip() != ""].sample(args.tmdb_rows, random_state=SEED)
            cases.append(text_case(f"TMDb overviews ({len(tmdb):,})", "test", list(tmdb["overview"]), both,
                                   "fixture + 12 unseen junk texts"))
    if "tabular" in args.modalities:
        emo = pd.read_csv(DATA / "mulan_emotions" / "emotions.csv", keep_default_na=False)
        cases += tabular_cases("MULAN emotions (593)", "validation", emo.drop(columns="labels"), [], 1)
        flags = pd.read_csv(DATA / "mulan_flags" / "flags.csv", keep_default_na=False)
        cases += tabular_cases("MULAN flags (194)", "validation", flags.drop(columns="labels"),
                               ["landmass", "zone", "language", "religion"], 2)
        if not args.validation_only:
            for stem, seed in (("yeast", 3), ("scene", 4)):
                df = pd.read_csv(SHARED / f"mulan_{stem}" / f"{stem}.csv", keep_default_na=False)
                cases += tabular_cases(f"MULAN {stem} ({len(df):,})", "test", df.drop(columns="labels"), [], seed)
    return cases


# --------------------------------------------------------------------------------------------------
# evaluation


def evaluate(case: Case, scores: np.ndarray, flags: np.ndarray) -> dict:
    """Counts for one case. ``scores``: LOW = more outlying (rank 1 = lowest score, ties by position)."""
    from sklearn.metrics import roc_auc_score

    hard = case.hard if case.hard is not None else np.zeros_like(case.junk)
    goal = case.junk & ~hard
    clean = ~case.junk
    order = np.argsort(scores, kind="stable")
    rank = np.empty(len(scores), int)
    rank[order] = np.arange(1, len(scores) + 1)
    k = int(flags.sum())
    return {
        "goal": int(goal.sum()), "goal_flagged": int(flags[goal].sum()),
        "clean": int(clean.sum()), "clean_flagged": int(flags[clean].sum()),
        "hard": int(hard.sum()), "hard_flagged": int(flags[hard].sum()),
        "ranks": rank[goal].tolist(),
        "auroc": [float(roc_auc_score(goal[goal | clean], -scores[goal | clean]))] if goal.any() else [],
        # scores shared beyond identical feature rows (identical texts / files / rows must tie)
        "ties": max(0, int(len(np.unique(case.X, axis=0)) - len(np.unique(scores)))),
        "top_is_flagged": bool(k == 0 or flags[order[:k]].all()),
    }


def aggregate(rows: list[dict]) -> dict:
    """Sum the counts of the cases of one dataset (tabular: one case per junk kind)."""
    out = {key: sum(r[key] for r in rows) for key in ("goal", "goal_flagged", "clean", "clean_flagged",
                                                      "hard", "hard_flagged", "ties")}
    ranks = [x for r in rows for x in r["ranks"]]
    aurocs = [x for r in rows for x in r["auroc"]]
    out["recall"] = out["goal_flagged"] / out["goal"] if out["goal"] else float("nan")
    out["clean_share"] = out["clean_flagged"] / out["clean"]
    out["hard_recall"] = out["hard_flagged"] / out["hard"] if out["hard"] else None
    out["median_rank"] = float(np.median(ranks)) if ranks else float("nan")
    out["worst_rank"] = int(max(ranks)) if ranks else 0
    out["auroc"] = float(np.mean(aurocs)) if aurocs else float("nan")
    out["top_is_flagged"] = all(r["top_is_flagged"] for r in rows)
    out["n_copies"] = len(rows)
    return out


def run_methods(case: Case) -> dict[str, dict]:
    """``new`` = the outliers asset's call (texts with their pieces-per-word statistic), ``knn`` = the same
    without it (the default before), ``old`` = the Tukey fence, ``baseline``; one neighbour graph per case."""
    from dq_pipeline.neighbours import build_neighbour_graph

    res = {}
    graph = build_neighbour_graph(case.X, k=min(ol.DEFAULT_N_NEIGHBORS, len(case.X) - 1), metric=case.metric)
    res["_graph"] = graph
    new = ol.find_outliers(case.X, metric=case.metric, graph=graph, extra=case.extra)
    res["new"] = evaluate(case, new.scores, new.flags)
    res["_new_result"] = new
    knn = ol.find_outliers(case.X, metric=case.metric, graph=graph)
    res["knn"] = evaluate(case, knn.scores, knn.flags)
    old = ol.find_outliers(case.X, metric=case.metric, graph=graph, method="iqr")
    res["old"] = evaluate(case, old.scores, old.flags)
    b = case.baseline
    res["baseline"] = evaluate(case, 1.0 / (1.0 + b), ol.flag_by_null(b))  # 1/(1+z): monotone, low = outlying
    return res


def fmt_pct(x: float) -> str:
    return f"{100 * x:.1f}%"


METHODS = ("new", "knn", "old", "baseline")
SENSITIVITY_Z = (2.25, 2.5, 2.75, 3.0, 3.5)
SENSITIVITY_EXTRA_Z = (3.0, 3.5, 4.0, 4.5, 5.0, 6.0)


def grouped(cases: list[Case], results: list[dict]) -> list[tuple[Case, list[Case], list[dict]]]:
    """(first case, cases, results) per dataset name, in order."""
    groups: dict[str, tuple[Case, list[Case], list[dict]]] = {}
    for c, r in zip(cases, results):
        groups.setdefault(c.name, (c, [], []))
        groups[c.name][1].append(c)
        groups[c.name][2].append(r)
    return list(groups.values())


def table_rows(cases: list[Case], results: list[dict]) -> list[dict]:
    rows = []
    for first, cs, rs in grouped(cases, results):
        for m in METHODS:
            x = aggregate([r[m] for r in rs])
            rows.append({"split": first.split, "dataset": first.name, "modality": first.modality,
                         "N": len(first.junk) - int(first.junk.sum()), "method": m, **x})
    return rows


def _cell(cs: list[Case], rs: list[dict], z: float, extra_z: float | None) -> str:
    """'recall / clean flagged' of find_outliers at thresholds z (and extra_z; None = no extra statistic)."""
    agg = _evaluate_at(cs, rs, z, extra_z)
    return f"{fmt_pct(agg['recall'])} / {fmt_pct(agg['clean_share'])}"


#: ``choose_thresholds``: most clean examples a validation dataset may have flagged (a margin under the 2% goal).
CHOICE_MAX_CLEAN = 0.015


def choose_thresholds(cases: list[Case], results: list[dict]) -> dict[str, dict]:
    """The rule that sets ``DEFAULT_Z_THRESHOLDS`` (and, for texts, ``DEFAULT_EXTRA_Z_THRESHOLD``), on the
    **validation** cases only: per metric, over ``SENSITIVITY_Z`` (x ``SENSITIVITY_EXTRA_Z`` where the metric's
    validation datasets include texts), keep the settings that flag at most ``CHOICE_MAX_CLEAN`` of every
    validation dataset's clean examples; among them the highest mean recall over those datasets, then the lowest
    mean clean share. Returns ``{metric: {"z", "extra_z", "recall", "clean"}}``."""
    val = [(first, cs, rs) for first, cs, rs in grouped(cases, results) if first.split == "validation"]
    out = {}
    for metric in sorted({first.metric for first, _, _ in val}):
        groups = [(cs, rs) for first, cs, rs in val if first.metric == metric]
        texts = any(c.extra is not None for cs, _ in groups for c in cs)
        best = None
        for z in SENSITIVITY_Z:
            for ez in SENSITIVITY_EXTRA_Z if texts else (None,):
                aggs = [_evaluate_at(cs, rs, z, ez) for cs, rs in groups]
                if max(a["clean_share"] for a in aggs) > CHOICE_MAX_CLEAN:
                    continue
                key = (np.mean([a["recall"] for a in aggs]), -np.mean([a["clean_share"] for a in aggs]))
                if best is None or key > best[0]:
                    best = (key, z, ez)
        if best is not None:
            out[metric] = {"z": best[1], "extra_z": best[2], "recall": best[0][0], "clean": -best[0][1]}
    return out


def _evaluate_at(cs: list[Case], rs: list[dict], z: float, extra_z: float | None) -> dict:
    """Aggregate counts of find_outliers at thresholds z (and extra_z; None = no extra statistic)."""
    out = []
    for c, r in zip(cs, rs):
        kw = {} if extra_z is None or c.extra is None else {"extra": c.extra, "extra_z_threshold": extra_z}
        res = ol.find_outliers(c.X, metric=c.metric, graph=r["_graph"], z_threshold=z, **kw)
        out.append(evaluate(c, res.scores, res.flags))
    return aggregate(out)


def report(cases: list[Case], results: list[dict], command: str, seconds: float) -> str:
    rows = table_rows(cases, results)
    lines = [
        "# Outlier flags against planted junk",
        "",
        f"Command: `{command}`  ",
        f"Run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.machine()}, {seconds:.0f} s wall "
        "(embeddings from the cache `bench/results/.cache/embeddings` where present).",
        "",
        "Goal (issue 10): flag >= 80% of planted junk with <= 2% of clean examples flagged. **recall** = share of "
        "planted junk flagged (tabular: the four *far* kinds, each planted 3 times into its own copy of the "
        "dataset; the *shuffled* rows, inside every column's range, are the `hard` column and not in recall); "
        "**clean** = share of the real examples flagged (tabular: over the five copies); **ranks** = median / "
        "worst rank of the junk by score (1 = most outlying); **AUROC** = junk vs clean by score (tabular: mean "
        "over copies); **flagged** = examples flagged (tabular: summed over the five copies); **ties** = distinct "
        "feature rows minus distinct scores (0 = only identical items share a score; the baseline's statistics are "
        "coarse, so it ties a lot). "
        "`new` = the outliers asset's call (`find_outliers` defaults; texts with their pieces-per-word statistic, "
        "`dq_pipeline.embed.text.pieces_per_word`), `knn` = the same on the k-NN distance alone (the default before "
        "the statistic), `old` = the former Tukey fence Q3 + 3 IQR on the same k-NN distance, `baseline` = model-free robust z (images: pixel "
        "statistics; texts: length and character classes; tabular: per-column |z|, max over columns), "
        "flagged by the same calibrated rule. Parameters of `new` were chosen on the **validation** rows only.",
        "",
        "| split | dataset | clean N | junk | method | recall | clean flagged | flagged | ranks (med / worst) | AUROC | hard | ties |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in rows:
        hard = f"{x['hard_flagged']}/{x['hard']}" if x["hard"] else ""
        lines.append(f"| {x['split']} | {x['dataset']} | {x['N']:,} | {x['goal']} | {x['method']} | "
                     f"**{fmt_pct(x['recall'])}** | {fmt_pct(x['clean_share'])} | "
                     f"{x['goal_flagged'] + x['clean_flagged'] + x['hard_flagged']} | "
                     f"{x['median_rank']:g} / {x['worst_rank']} | {x['auroc']:.3f} | {hard} | {x['ties']} |")
    meets = [x for x in rows if x["method"] == "new" and x["recall"] >= 0.8 and x["clean_share"] <= 0.02]
    new_rows = [x for x in rows if x["method"] == "new"]
    lines += ["", f"`new` meets the goal on {len(meets)} of {len(new_rows)} datasets: "
              + ", ".join(x["dataset"] for x in meets) + ".",
              "Flags are the top of the ranking in every case: "
              + str(all(x["top_is_flagged"] for x in rows if x["method"] != "baseline")) + "."]
    chosen = choose_thresholds(cases, results)
    lines += ["", "## Thresholds chosen on the validation rows (`choose_thresholds`)", "",
              "Rule: " + " ".join(choose_thresholds.__doc__.split("Returns")[0].split()), "",
              "| metric | z_threshold | extra_z_threshold (texts) | validation recall (mean) | clean flagged (mean) | "
              "shipped default |", "|---|---|---|---|---|---|"]
    for metric, c in chosen.items():
        shipped = f"{ol.DEFAULT_Z_THRESHOLDS.get(metric)}" + (
            f" / {ol.DEFAULT_EXTRA_Z_THRESHOLD}" if c["extra_z"] is not None else "")
        extra_z = "" if c["extra_z"] is None else f"{c['extra_z']:g}"
        lines.append(f"| {metric} | {c['z']:g} | {extra_z} | {fmt_pct(c['recall'])} | {fmt_pct(c['clean'])} | "
                     f"{shipped} |")
    lines += ["", "## Sensitivity of `new` to its thresholds (chosen on the validation rows only)", "",
              "recall / clean flagged at other `z_threshold` values (texts: with the pieces-per-word statistic at its "
              f"default z > {ol.DEFAULT_EXTRA_Z_THRESHOLD:g}), same neighbour graph.", "",
              "| split | dataset | " + " | ".join(f"z > {z:g}" for z in SENSITIVITY_Z) + " |",
              "|---|---|" + "---|" * len(SENSITIVITY_Z)]
    for first, cs, rs in grouped(cases, results):
        cells = [_cell(cs, rs, zt, ol.DEFAULT_EXTRA_Z_THRESHOLD) for zt in SENSITIVITY_Z]
        lines.append(f"| {first.split} | {first.name} | " + " | ".join(cells) + " |")
    text_groups = [g for g in grouped(cases, results) if g[0].extra is not None]
    if text_groups:
        lines += ["", "Texts: recall / clean flagged over the pieces-per-word threshold (`extra_z_threshold`, rows) "
                  "and `z_threshold` (columns); `none` = without the statistic.", ""]
        for first, cs, rs in text_groups:
            lines += [f"{first.name} ({first.split}):", "",
                      "| extra z | " + " | ".join(f"z > {z:g}" for z in SENSITIVITY_Z) + " |",
                      "|---|" + "---|" * len(SENSITIVITY_Z)]
            for ez in (None, *SENSITIVITY_EXTRA_Z):
                cells = [_cell(cs, rs, zt, ez) for zt in SENSITIVITY_Z]
                lines.append(f"| {'none' if ez is None else f'> {ez:g}'} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["", "## Per junk item (`new`): rank by score (1 = most outlying); *not flagged* marked", ""]
    for c, r in zip(cases, results):
        res = r["_new_result"]
        order = np.argsort(res.scores, kind="stable")
        rank = np.empty(len(order), int)
        rank[order] = np.arange(1, len(order) + 1)
        sm = res.summary
        items = ", ".join(f"{c.kinds[i]} {rank[i]}{'' if res.flags[i] else ' *not flagged*'}"
                          for i in np.flatnonzero(c.junk))
        lines.append(f"- {c.name}{' / ' + c.notes if c.notes else ''} ({c.split}): {sm['n_outliers']} flagged "
                     f"(z > {sm['z_threshold']:g} on a null of log d with median {sm['null_center']:.3f}, "
                     f"scale {sm['null_scale']:.3f}; {sm['expected_by_chance']:.1f} expected by chance): {items}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modalities", nargs="+", default=["image", "text", "tabular"])
    ap.add_argument("--validation-only", action="store_true")
    ap.add_argument("--goemotions-rows", type=int, default=0, help="sample this many GoEmotions rows (0 = all)")
    ap.add_argument("--tmdb-rows", type=int, default=2500)
    ap.add_argument("--miml-rows", type=int, default=0, help="sample this many of the other MIML photos (0 = all)")
    ap.add_argument("--out", default=str(RESULTS / "outliers.md"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(args, Path(tmp))
    results = []
    for c in cases:
        results.append(run_methods(c))
    for x in table_rows(cases, results):
        hard = f" hard {x['hard_flagged']}/{x['hard']}" if x["hard"] else ""
        print(f"{x['split']:10s} {x['dataset']:36s} {x['method']:8s} recall {fmt_pct(x['recall']):>6s} "
              f"clean {fmt_pct(x['clean_share']):>6s} ranks {x['median_rank']:g}/{x['worst_rank']} "
              f"auroc {x['auroc']:.3f}{hard}", flush=True)
    command = "HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/bench_outliers.py " + " ".join(sys.argv[1:])
    text = report(cases, results, command.strip(), time.perf_counter() - t0)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
