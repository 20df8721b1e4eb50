"""Profile of the non-detector stages at scale: each stage of a tabular audit called as its Dagster asset calls
it, in one process, on the synthetic tabular set of ``bench_scale.py`` (N rows x 64 numeric columns x 40 tags),
with seconds and peak RSS per stage.

The detectors are not run (their brute-force neighbour searches take hours at 1M rows; ``bench_scale.py``
measures them end to end): ``curated`` gets stand-in detector results of realistic size instead — scores from P,
3% of examples flagged as label issues with one flagged tag each, 10% ambiguous, 1% outliers, 0.5% in exact
duplicate pairs. What it shows: where ingestion, features, the gates, cross-validation, the curated tables, the
history diff, the DuckDB write and Dagster's pickled IO spend time and memory as N grows; what it does not show:
the detectors, Dagster's own overhead between steps (``bench_scale.py`` has both).

Usage::

    nice -n 10 .venv/bin/python bench/bench_scale_stages.py --sizes 100000 300000 [--second-audit]

Writes ``bench/results/scale_stages.md`` (``--out``); datasets are shared with bench_scale.py (``--workdir``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
GB = 1024 ** 3


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Profile:
    """Seconds and peak RSS (sampled every 20 ms) of named stages run one after another."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    @contextmanager
    def stage(self, name: str):
        start_rss, peak, stop = _rss(), [0], threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                peak[0] = max(peak[0], _rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - t0
            stop.set()
            thread.join()
            peak[0] = max(peak[0], _rss())
            self.rows.append({"stage": name, "seconds": seconds, "rss_before": start_rss, "peak_rss": peak[0]})
            print(f"  {name}: {seconds:.2f} s, peak RSS {peak[0] / GB:.2f} GB (+{(peak[0] - start_rss) / GB:.2f})",
                  flush=True)


def stand_in_detectors(P: np.ndarray, Y: np.ndarray, seed: int = 0):
    """Detector results of realistic size for ``curated`` (see the module docstring)."""
    from dq_pipeline.issues.base import DetectorResult

    rng = np.random.default_rng(seed)
    n, k = P.shape
    agree = 1 - np.abs(P - Y).max(axis=1)
    flagged = np.argsort(agree)[: int(0.03 * n)]
    tags = np.abs(P - Y)[flagged].argmax(axis=1)
    given = Y[flagged, tags].astype(bool)
    details = pd.DataFrame({"example_index": flagged, "tag_index": tags, "given": given,
                            "probability": P[flagged, tags], "kind": np.where(given, "incorrect", "missing"),
                            "score": agree[flagged]})
    flags = np.zeros(n, bool)
    flags[flagged] = True
    label = DetectorResult(np.clip(agree, 0, 1), flags, {"n_flagged": int(flags.sum())}, details)
    margin = np.abs(P - 0.5).min(axis=1)
    amb_rows = np.argsort(margin)[: n // 10]
    amb_flags = np.zeros(n, bool)
    amb_flags[amb_rows] = True
    ambiguous = DetectorResult(np.clip(2 * margin, 0, 1), amb_flags, {}, pd.DataFrame(
        {"example_index": amb_rows, "tag_index": np.abs(P - 0.5)[amb_rows].argmin(axis=1)}))
    out_scores = rng.random(n)
    outliers = DetectorResult(out_scores, out_scores < 0.01, {})
    pairs = rng.choice(n, 2 * (n // 400), replace=False)
    dup_flags = np.zeros(n, bool)
    dup_flags[pairs] = True
    dups = DetectorResult(np.where(dup_flags, 0.0, 1.0), dup_flags, {}, pd.DataFrame(
        {"example_index": pairs, "group_id": np.repeat(np.arange(len(pairs) // 2), 2), "kind": "exact",
         "is_conflict": False, "group_size": 2}))
    return label, ambiguous, outliers, dups


def profile_size(n: int, workdir: Path, second_audit: bool, text: bool = False) -> Profile:
    """Profile one dataset: the synthetic tabular set of ``n`` rows, or (``text``) the full GoEmotions with
    its embeddings in ``<workdir>/embedding_cache`` (cold the first time: the report says which)."""
    from bench_scale import goemotions_folder, tabular_folder

    from dq_pipeline import model as cv
    from dq_pipeline import store
    from dq_pipeline.curate import CurationPolicy, audit_tables
    from dq_pipeline.defs import checks
    from dq_pipeline.defs.assets import Features, Predictions, RawDataset, _diff_with_previous
    from dq_pipeline.export import source_digest
    from dq_pipeline.ingest import load_examples
    from dq_pipeline.manifest import load_manifest

    folder = goemotions_folder(workdir) if text else tabular_folder(workdir, n, 0)
    modality = "text" if text else "tabular"
    prof = Profile()
    print(f"{n} rows ({folder}):", flush=True)
    with prof.stage("raw_examples: source digest x2 + load_examples"):
        manifest = load_manifest(folder)
        digest = source_digest(manifest)
        result = load_examples(manifest)
        source_digest(manifest)
        raw = RawDataset(manifest, result.examples, result.quarantine, result.classes, result.n_input_rows,
                         datetime.now(), digest)
        del result
    with prof.stage("raw_examples: content fingerprint"):
        raw.fingerprint
    with prof.stage("raw_examples_gate (GE)"):
        gate = checks.raw_gate(raw, 5)
        assert gate.success, gate.describe()
    if text:
        from dq_pipeline.embed.cache import EmbeddingCache
        from dq_pipeline.embed.text import embed_texts_cached
        from dq_pipeline.issues.duplicates import text_key

        cache_dir = workdir / "embedding_cache"
        warm = cache_dir.is_dir() and any(cache_dir.rglob("*.np*"))
        with prof.stage(f"features: text embeddings ({'warm: from the cache' if warm else 'cold'})"):
            from dq_pipeline.defs.resources import AuditSettings

            settings = AuditSettings()  # the audit's default model and batch size
            X = embed_texts_cached(list(raw.examples["text"]), settings.text_model, EmbeddingCache(cache_dir),
                                   batch_size=settings.batch_size)
        with prof.stage("features: exact-duplicate text keys"):
            keys = [text_key(t) for t in raw.examples["text"]]
        metric = "cosine"
    else:
        with prof.stage("features: featurize_tabular"):
            from dq_pipeline.embed.tabular import featurize_tabular

            columns = [c for c in raw.examples.columns if c not in ("example_id", "row_number", "tags")]
            X = featurize_tabular(raw.examples, columns)
        with prof.stage("features: exact-duplicate row keys"):
            keys = _row_keys(X)
        metric = "euclidean"
    feats = Features(list(raw.examples["example_id"]), np.asarray(X), metric, keys)
    with prof.stage("features: fingerprint"):
        feats.fingerprint
    with prof.stage("features_gate (GE)"):
        assert checks.features_gate(raw, feats).success
    with prof.stage("oof_probabilities: Y + 5-fold fast_logreg"):
        Y = raw.Y
        oof = cv.out_of_fold_probabilities(X, Y, 5, 0, "fast_logreg")
    preds = Predictions(feats.example_ids, raw.classes, Y, oof.probabilities, oof.folds, oof.auroc)
    with prof.stage("oof_probabilities: fingerprint"):
        preds.fingerprint
    with prof.stage("probabilities_gate (GE, chunked)"):
        assert checks.probabilities_gate(raw, preds).success
    label, ambiguous, outliers, dups = stand_in_detectors(preds.P, Y)
    with prof.stage("pickle outputs (Dagster IO with a persistent instance)"):
        sizes = {name: len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
                 for name, value in (("raw_examples", raw), ("features", feats), ("oof_probabilities", preds))}
    print("    pickled MB: " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in sizes.items()))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        db = str(Path(tmp) / "curated.duckdb")
        for audit in range(2 if second_audit else 1):
            tag = "" if audit == 0 else " (2nd audit)"
            run_id = f"run{audit}"
            with prof.stage("curated: gates re-run before the write (none skipped)" + tag):
                assert all(g.success for g in checks.run_gates(raw, feats, preds, 5,
                                                               skip={"raw_examples_gate", "features_gate"}))
            with prof.stage("curated: read_reviews + audit_tables" + tag):
                reviews = store.read_reviews(db, manifest.name)
                tables, counters = audit_tables(raw.examples, raw.quarantine, raw.classes, modality, Y,
                                                preds.P, preds.auroc, label, ambiguous, outliers, dups,
                                                CurationPolicy(), reviews=reviews)
            run = {"run_id": run_id, "dataset": manifest.name, "started_at": raw.started_at,
                   "finished_at": datetime.now(), "status": "success", "modality": modality,
                   "source": str(manifest.source), "n_input_rows": raw.n_input_rows,
                   "source_sha256": digest, "folder": str(folder), **counters, "config": {}}
            with prof.stage("curated: history diff" + tag):
                _diff_with_previous(db, manifest.name, tables, run, reviews)
            with prof.stage("curated: write_audit (DuckDB)" + tag):
                store.write_audit(db, run, tables)
            del tables
            with prof.stage("curated_nothing_lost + regression reads" + tag):
                from dq_pipeline import history

                with store.connect(db, read_only=True) as con:
                    con.execute("SELECT count(*) FROM examples WHERE dataset = ? AND run_id = ?",
                                [manifest.name, run_id]).fetchone()
                history.read_changes(db, manifest.name, run_id)
        prof.db_mb = os.path.getsize(db) / 1e6
    return prof


def _row_keys(X: np.ndarray) -> list[str]:
    """The features asset's exact-duplicate keys (its own function when there is one, else row_key per row)."""
    try:
        from dq_pipeline.embed.tabular import row_keys
    except ImportError:
        from dq_pipeline.issues.duplicates import row_key

        return [row_key(r) for r in X]
    return row_keys(X)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 300_000])
    parser.add_argument("--text", action="store_true", help="also the full GoEmotions (54,263 texts)")
    parser.add_argument("--workdir", default="/tmp/dq_bench_scale")
    parser.add_argument("--second-audit", action="store_true", help="also a second audit into the same DuckDB file "
                                                                     "(history diff against the first)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "scale_stages.md"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    profiles = {n: profile_size(n, workdir, args.second_audit) for n in args.sizes}
    if args.text:
        profiles["GoEmotions"] = profile_size(54_263, workdir, args.second_audit, text=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    sizes = [n for n in profiles if isinstance(n, int)]
    lines = [
        "# Non-detector stages at scale (`bench/bench_scale_stages.py`)", "",
        f"Command: `.venv/bin/python bench/bench_scale_stages.py {' '.join(sys.argv[1:])}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, shared with other work; "
        f"commit {commit}{' (+ uncommitted changes)' if dirty else ''}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        "Each stage called as its asset calls it, one process. Peak = the process's RSS (sampled every 20 ms) "
        "during the stage; stand-in detector results (see the script's docstring). Not shown: the detectors, "
        "Dagster's overhead between steps, process start-up and imports (bench_scale.py has them).", "",
    ]
    if sizes:
        stages = [r["stage"] for r in profiles[sizes[0]].rows]
        lines += ["## Synthetic tabular (64 numeric columns, 40 tags, Parquet)", "",
                  "| stage | " + " | ".join(f"{n:,} s | peak GB" for n in sizes)
                  + (f" | s growth {sizes[0]:,}->{sizes[-1]:,} (linear = {sizes[-1] / sizes[0]:.1f}x) |"
                     if len(sizes) > 1 else " |"),
                  "|---|" + "---:|---:|" * len(sizes) + ("---:|" if len(sizes) > 1 else "")]
        for i, stage in enumerate(stages):
            cells = [f"{profiles[n].rows[i]['seconds']:.2f} | {profiles[n].rows[i]['peak_rss'] / GB:.2f}" for n in sizes]
            growth = ""
            if len(sizes) > 1:
                a, b = profiles[sizes[0]].rows[i]["seconds"], profiles[sizes[-1]].rows[i]["seconds"]
                growth = f" | {b / a:.1f}x" if a > 0.005 else " | -"
            lines.append(f"| {stage} | " + " | ".join(cells) + growth + " |")
        totals = [sum(r["seconds"] for r in profiles[n].rows) for n in sizes]
        lines.append("| **total** | " + " | ".join(
            f"**{t:.1f}** | {max(r['peak_rss'] for r in profiles[n].rows) / GB:.2f}" for t, n in zip(totals, sizes))
            + (f" | {totals[-1] / totals[0]:.1f}x" if len(sizes) > 1 else "") + " |")
        lines += ["", "DuckDB file MB: " + ", ".join(f"{n:,}: {profiles[n].db_mb:.0f}" for n in sizes), ""]
    if "GoEmotions" in profiles:
        rows = profiles["GoEmotions"].rows
        emb = next(r["seconds"] for r in rows if r["stage"].startswith("features: text embeddings"))
        rest = sum(r["seconds"] for r in rows if not r["stage"].startswith("features: text embeddings"))
        lines += ["## Full GoEmotions (54,263 texts, 28 tags)", "",
                  f"Every stage but the embedding: {rest:.1f} s = {rest / emb:.3f} x the embedding's {emb:.1f} s "
                  "(issue 11 budget for everything but the embedding, detectors included: 0.15 x).", "",
                  "| stage | s | x embedding | peak GB |", "|---|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['stage']} | {r['seconds']:.2f} | {r['seconds'] / emb:.3f} | {r['peak_rss'] / GB:.2f} |")
        lines += ["", f"DuckDB file MB: {profiles['GoEmotions'].db_mb:.0f}", ""]
    text = "\n".join(lines)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
