"""Cold vs warm re-audit of unchanged demo datasets, end to end through Dagster (the CLI code path).

Cold = empty cache (embeddings and stage results); warm = the same dataset audited again with the cache
the cold run filled. Every audit runs the whole job: ingestion, all steps and gates, and a full DuckDB
write. Two settings, each with medians of --repeats cold/warm pairs (a fresh cache and DuckDB file per
pair):

* in-process -- ``run_audit`` in one Python process, after an untimed warm-up audit of the same dataset,
  so neither cold nor warm pays imports or model loading (the model stays loaded, which makes cold as
  fast as it can be: the ratio is conservative);
* fresh process -- ``dq-pipeline audit`` as a user runs it, one new interpreter per audit, so both pay
  Python start-up and imports.

Usage:  .venv/bin/python bench/bench_reaudit.py [--datasets goemotions_sample miml_scenes] [--repeats 3]
Writes bench/results/reaudit.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")
os.environ.pop("DAGSTER_HOME", None)  # ephemeral Dagster instances, as the CLI uses without one

STAGES = ["features", "oof_probabilities", "label_issues", "curated"]


def audit_in_process(folder: Path, cache_dir: str, db: str) -> tuple[float, dict[str, float]]:
    """(whole audit seconds, seconds per step from the run's own events) of one audit."""
    total, steps, _ = timed_audit(folder, cache_dir, db)
    return total, steps


def timed_audit(folder: Path, cache_dir: str | Path, db: str) -> tuple[float, dict[str, float], str]:
    """(whole audit seconds, seconds per step from the run's own events, run id) of one in-process audit."""
    import dagster as dg

    from dq_pipeline.defs.resources import AuditSettings
    from dq_pipeline.defs.runner import run_audit

    instance = dg.DagsterInstance.ephemeral()
    t0 = time.perf_counter()
    outcome = run_audit(folder, db_path=db, settings=AuditSettings(cache_dir=str(cache_dir)), instance=instance,
                        log_level="WARNING", in_memory=True)
    total = time.perf_counter() - t0
    if not outcome.success:
        raise RuntimeError(outcome.reason())
    started: dict[str, float] = {}
    steps: dict[str, float] = {}
    for record in instance.get_records_for_run(outcome.run_id).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = record.timestamp
        elif event.event_type == dg.DagsterEventType.STEP_SUCCESS:
            steps[event.step_key] = record.timestamp - started[event.step_key]
    return total, steps, outcome.run_id


def audit_fresh_process(folder: Path, cache_dir: str, db: str) -> float:
    """Wall seconds of ``dq-pipeline audit FOLDER`` in a new interpreter."""
    env = {**os.environ, "DQ_CACHE_DIR": cache_dir}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "dq_pipeline.cli", "audit", str(folder), "--db", db],
                          env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["goemotions_sample", "miml_scenes"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "reaudit.md"))
    args = parser.parse_args()
    rows, stage_rows = [], []
    for name in args.datasets:
        folder = REPO / "data" / name
        with tempfile.TemporaryDirectory() as tmp:  # untimed warm-up: imports, model load
            audit_in_process(folder, str(Path(tmp) / "cache"), str(Path(tmp) / "c.duckdb"))
        pairs: dict[str, list[tuple[float, float]]] = {"in-process": [], "fresh process": []}
        cold_steps: list[dict[str, float]] = []
        warm_steps: list[dict[str, float]] = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                cache, db = str(Path(tmp) / "cache"), str(Path(tmp) / "c.duckdb")
                (cold, c_steps), (warm, w_steps) = (audit_in_process(folder, cache, db) for _ in range(2))
                pairs["in-process"].append((cold, warm))
                cold_steps.append(c_steps)
                warm_steps.append(w_steps)
            with tempfile.TemporaryDirectory() as tmp:
                cache, db = str(Path(tmp) / "cache"), str(Path(tmp) / "c.duckdb")
                pairs["fresh process"].append(tuple(audit_fresh_process(folder, cache, db) for _ in range(2)))
        for setting, values in pairs.items():
            cold = statistics.median(c for c, _ in values)
            warm = statistics.median(w for _, w in values)
            ratio = statistics.median(c / w for c, w in values)
            rows.append(f"| {name} | {setting} | {cold:.2f} | {warm:.2f} | {ratio:.1f}x |")
            print(rows[-1], flush=True)
        for stage in STAGES:
            cold = statistics.median(s.get(stage, float("nan")) for s in cold_steps)
            warm = statistics.median(s.get(stage, float("nan")) for s in warm_steps)
            stage_rows.append(f"| {name} | {stage} | {cold:.3f} | {warm:.3f} | {cold / warm:.0f}x |")
        gates = [sum(v for k, v in s.items() if k.endswith("_gate")) for s in (cold_steps[0], warm_steps[0])]
        stage_rows.append(f"| {name} | three gates (first pair) | {gates[0]:.3f} | {gates[1]:.3f} | "
                          f"{gates[0] / gates[1]:.0f}x |")
    text = "\n".join([
        "# Cold vs warm re-audit (`bench/bench_reaudit.py`)",
        "",
        f"Command: `.venv/bin/python bench/bench_reaudit.py --datasets {' '.join(args.datasets)} "
        f"--repeats {args.repeats}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}; medians of "
        f"{args.repeats} cold/warm pairs per setting; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Cold = empty cache; warm = the unchanged dataset audited again. Both run the whole Dagster job "
        "(ingestion, every step and gate, a full DuckDB write). *In-process*: one Python process after an "
        "untimed warm-up, so neither pays imports or model loading (conservative for cold). *Fresh "
        "process*: `dq-pipeline audit` in a new interpreter each time, so both pay start-up and imports.",
        "",
        "| dataset | setting | cold audit s | warm audit s | speed-up (median of ratios) |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        "Steps, in-process (seconds from the run's STEP_START/STEP_SUCCESS events, medians):",
        "",
        "| dataset | step | cold s | warm s | speed-up |",
        "|---|---|---:|---:|---:|",
        *stage_rows,
        "",
        "A warm run reads embeddings from `.cache/embeddings` (no model call) and the out-of-fold "
        "probabilities, detector outputs with their UI metadata and gate verdicts from `.cache/results` "
        "(keys: input bytes, settings, code). What remains is ingestion (images are re-checked), "
        "fingerprinting, Dagster's own step and event handling, and the DuckDB write.",
    ])
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
