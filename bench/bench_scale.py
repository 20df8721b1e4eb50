"""End-to-end scale: cold ``dq-pipeline audit`` of synthetic tabular sets (100k / 300k / 1M rows x 64 numeric
columns x 40 tags) and of the full GoEmotions (54,263 texts, 28 tags), as a user runs it.

Each audit is a new ``dq-pipeline audit FOLDER --db FILE`` process (the venv's console script, with this checkout
first on ``PYTHONPATH``), in a fresh working folder with a fresh ``$DQ_CACHE_DIR`` and DuckDB file, and
``$DAGSTER_HOME`` unset as the README's shell example has it (an ephemeral instance, step outputs handed over in
memory); ``--dagster-home`` gives it a fresh persistent instance instead (outputs pickled to its storage, as under
``make ui``). Measured per audit:

* wall seconds of the process (start-up and imports included);
* peak RSS of the whole process tree: the largest sum of RSS over the process and all its descendants, sampled
  from /proc every 0.1 s (a spike shorter than that can be missed), next to ``/usr/bin/time -v``'s maximum RSS
  of the largest single process;
* seconds per Dagster step (STEP_START to STEP_SUCCESS in the run's own event log, printed by the CLI as its
  ``step seconds:`` line), and each step's share of the wall time.

Tabular data (seeded, written once to ``--workdir`` as Parquet and reused): 8 latent factors drive 64 correlated
numeric columns (some skewed, a few with missing cells); each tag is a logistic function of a random sparse mix
of the columns plus a shared factor (so tags correlate), prevalence from 0.3% to 35%, two tags implied by
another; then ``--noise`` (3%) of the rows get one planted error (a given tag dropped or a wrong one added).

Usage (nice it: the machine is shared)::

    nice -n 10 .venv/bin/python bench/bench_scale.py --sizes 100000 300000            # tabular only
    nice -n 10 .venv/bin/python bench/bench_scale.py --only text                      # full GoEmotions
    nice -n 10 .venv/bin/python bench/bench_scale.py --only text --text-precisions float32 auto  # both precisions
    nice -n 10 .venv/bin/python bench/bench_scale.py --sizes 100000 1000000 --text     # the issue's goals

Results are kept per audit in ``<workdir>/results.jsonl`` (a failed or killed audit records why) and the report
``bench/results/scale.md`` is rewritten after every audit from the measurements of this invocation plus, with
``--resume``, earlier ones of the same commit (sizes already measured are then skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DQ = Path(sys.executable).parent / "dq-pipeline"
GB = 1024 ** 3
RSS_LIMIT_GB = 8.0

N_COLUMNS = 64
N_TAGS = 40


# --------------------------------------------------------------------------------------------- datasets

def synthetic_tabular(n: int, seed: int = 0, noise: float = 0.03) -> tuple["object", np.ndarray]:
    """``(frame, planted)``: ``n`` rows of ``id``, ``f00``..``f63`` (float) and ``labels`` ("a|b") with realistic
    structure (see the module docstring); ``planted`` (n,) bool marks the rows given a planted error."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_latent = 8
    Z = rng.standard_normal((n, n_latent)).astype(np.float32)
    W = rng.standard_normal((n_latent, N_COLUMNS)).astype(np.float32) * rng.uniform(0.2, 1.0, N_COLUMNS).astype(np.float32)
    X = Z @ W + rng.standard_normal((n, N_COLUMNS)).astype(np.float32) * 0.7
    skewed = rng.choice(N_COLUMNS, 8, replace=False)
    X[:, skewed] = np.exp(X[:, skewed] / 2)  # a few log-normal columns
    scale = rng.uniform(0.1, 100.0, N_COLUMNS).astype(np.float32)  # columns on different scales
    X *= scale
    # tags: sparse mix of columns + a shared factor, bias set for a target prevalence
    prevalence = np.exp(rng.uniform(np.log(0.003), np.log(0.35), N_TAGS))
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    tags = np.zeros((n, N_TAGS), dtype=bool)
    for k in range(N_TAGS):
        cols = rng.choice(N_COLUMNS, 4, replace=False)
        logit = Xs[:, cols] @ rng.normal(0, 1.2, 4).astype(np.float32) + 0.8 * Z[:, k % n_latent]
        logit = logit * 1.5
        bias = -np.quantile(logit, 1 - prevalence[k])
        tags[:, k] = rng.random(n) < 1 / (1 + np.exp(-(logit + bias)))
    tags[:, 1] &= tags[:, 0]  # tag 1 implies tag 0
    tags[:, 3] &= tags[:, 2]
    given = tags.copy()
    planted = rng.random(n) < noise
    rows = np.flatnonzero(planted)
    ks = rng.integers(0, N_TAGS, len(rows))
    given[rows, ks] = ~given[rows, ks]  # drop a given tag or add a wrong one
    del Xs, Z
    missing = rng.random((n, 3)) < 0.01  # a few missing cells in three columns
    for j, col in enumerate(rng.choice(N_COLUMNS, 3, replace=False)):
        X[missing[:, j], col] = np.nan
    names = [f"tag{k:02d}" for k in range(N_TAGS)]
    labels = ["|".join(names[k] for k in np.flatnonzero(r)) for r in given]
    frame = pd.DataFrame(X.astype(np.float64), columns=[f"f{j:02d}" for j in range(N_COLUMNS)])
    frame.insert(0, "id", [f"r{i:07d}" for i in range(n)])
    frame["labels"] = labels
    return frame, planted


def tabular_folder(workdir: Path, n: int, seed: int) -> Path:
    """The dataset folder ``<workdir>/data/tabular_<n>`` (built once: Parquet + dataset.yaml)."""
    folder = workdir / "data" / f"tabular_{n}"
    done = folder / "BUILT"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frame, planted = synthetic_tabular(n, seed)
    frame.to_parquet(folder / "rows.parquet", index=False)
    np.save(folder.parent.parent / f"planted_{n}.npy", planted)  # outside the dataset folder
    (folder / "dataset.yaml").write_text(
        "modality: tabular\nsource: rows.parquet\nid_column: id\nlabels:\n  column: labels\n  separator: \"|\"\n")
    done.write_text(json.dumps({"n": n, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)}))
    print(f"built {folder} ({n} rows) in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def goemotions_folder(workdir: Path) -> Path:
    """``<workdir>/data/goemotions_full``: ../shared/data/goemotions/goemotions.csv (54,263 rows) as a dataset."""
    folder = workdir / "data" / "goemotions_full"
    folder.mkdir(parents=True, exist_ok=True)
    source = SHARED / "goemotions" / "goemotions.csv"
    if not (folder / "goemotions.csv").is_file():
        shutil.copyfile(source, folder / "goemotions.csv")
    (folder / "dataset.yaml").write_text(
        "modality: text\nsource: goemotions.csv\nid_column: id\ntext_column: text\nlabels:\n  column: labels\n"
        "  separator: \"|\"\n")
    return folder


# --------------------------------------------------------------------------------------------- measuring

def _tree_rss(root: int) -> int:
    """Sum of RSS bytes of ``root`` and all its descendants (from /proc; vanished processes count 0)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{entry}/statm") as fh:
                rss[int(entry)] = int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def timed_audit(folder: Path, run_dir: Path, dagster_home: bool, timeout: float, precision: str = "auto",
                db_name: str = "curated.duckdb") -> dict:
    """Run ``dq-pipeline audit folder`` in ``run_dir`` (cold unless ``run_dir/cache`` holds an earlier audit's
    cache) into the DuckDB file ``run_dir/db_name``; wall, peak tree RSS, step seconds, output tail.
    ``precision``: the audit's ``embedding_precision`` (through ``$DQ_EMBEDDING_PRECISION``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DQ_CACHE_DIR": str(run_dir / "cache"), "HF_HUB_OFFLINE": "1",
           "DAGSTER_TELEMETRY_DISABLED": "1", "GX_ANALYTICS_ENABLED": "False", "DQ_EMBEDDING_PRECISION": precision}
    env.pop("DAGSTER_HOME", None)
    env.pop("DQ_DUCKDB_PATH", None)
    if dagster_home:
        (run_dir / "dagster_home").mkdir(exist_ok=True)
        env["DAGSTER_HOME"] = str(run_dir / "dagster_home")
    db = run_dir / db_name
    command = [str(DQ), "audit", str(folder), "--db", str(db)]
    timev = run_dir / "time_v.txt"
    wrapped = (["/usr/bin/time", "-v", "-o", str(timev)] if Path("/usr/bin/time").exists() else []) + command
    peak, samples = [0], []
    log = open(run_dir / "output.txt", "w")
    t0 = time.perf_counter()
    # its own process group: a timeout kills the audit too, not only /usr/bin/time above it
    proc = subprocess.Popen(wrapped, cwd=run_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            rss = _tree_rss(proc.pid)
            peak[0] = max(peak[0], rss)
            samples.append((round(time.perf_counter() - t0, 1), rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = f"killed after the --timeout of {timeout:.0f} s"
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    log.close()
    output = (run_dir / "output.txt").read_text(errors="replace")
    steps: dict[str, float] = {}
    match = re.search(r"^\s*step seconds: (.*)$", output, re.M)
    if match:
        for part in match.group(1).split(", "):
            key, value = part.rsplit(" ", 1)
            steps[key] = float(value)
    max_single = None
    if timev.is_file():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", timev.read_text())
        max_single = int(m.group(1)) * 1024 if m else None
    rss_steps = _rss_per_step(samples, steps)
    return {"rc": rc, "wall_s": round(wall, 2), "peak_tree_rss": peak[0], "max_single_rss": max_single,
            "steps": steps, "step_peak_rss": rss_steps, "command": " ".join(command), "db_bytes":
            db.stat().st_size if db.exists() else None, "tail": output[-3000:]}


def _rss_per_step(samples: list[tuple[float, int]], steps: dict[str, float]) -> dict[str, int]:
    """Peak sampled RSS during each step, assuming the steps ran one after another and ended with the run
    (the in-process executor runs them serially; start-up and the summary take the rest of the wall time)."""
    if not samples or not steps:
        return {}
    end = samples[-1][0]
    # the CLI prints the summary right after the last step: place the steps backwards from the end, minus a
    # small allowance for the run's own teardown
    out: dict[str, int] = {}
    t = end - 0.5
    for key in reversed(list(steps)):
        start = t - steps[key]
        window = [r for s, r in samples if start <= s <= t]
        out[key] = max(window) if window else 0
        t = start
    return {k: out[k] for k in steps}


# --------------------------------------------------------------------------------------------- report

def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def _stage_table(result: dict) -> list[str]:
    steps, wall = result["steps"], result["wall_s"]
    rss = result.get("step_peak_rss", {})
    lines = ["| step | seconds | share of wall | peak tree RSS during step, approx. (GB) |", "|---|---:|---:|---:|"]
    for key, value in steps.items():
        peak = f"{rss[key] / GB:.2f}" if rss.get(key) else "- (shorter than a sample)"
        lines.append(f"| {key} | {value:.2f} | {value / wall:.1%} | {peak} |")
    rest = wall - sum(steps.values())
    lines.append(f"| (start-up, imports, Dagster, summary) | {rest:.2f} | {rest / wall:.1%} | |")
    return lines


def ge_import_seconds(repeats: int = 3) -> float:
    """Median seconds of ``import great_expectations`` in a new process that has already imported what the audit
    imports before its first gate needs GE (pandas, scipy.stats, sklearn, dagster): GE's own share of the raw gate."""
    code = ("import time, pandas, scipy.stats, sklearn, dagster; t = time.perf_counter(); import great_expectations; "
            "print(time.perf_counter() - t)")
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "False"}
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  env=env).stdout.split()[-1]) for _ in range(repeats)]
    return float(np.median(times))


#: Steps that compute something from the features (their time shrinks with a faster algorithm; the rest is I/O,
#: start-up and gates).
COMPUTE_STEPS = ("neighbour_graph", "oof_probabilities", "ambiguous_examples", "label_issues", "near_duplicates",
                 "outliers")


def _floor_lines(r: dict) -> list[str]:
    """What a 1.15x audit leaves for computing: the cold audit's budget against the warm re-audit's floor."""
    w, emb = r.get("warm"), r["steps"].get("features")
    if not w or w.get("rc") != 0 or not emb:
        return []
    read = w["steps"].get("features", 0.0)
    floor = w["wall_s"] - read + r.get("ge_import_s", 0.0)
    budget = 0.15 * emb
    compute = {k: v for k, v in r["steps"].items() if k in COMPUTE_STEPS}
    took = sum(compute.values())
    verdict = (f"That leaves **{budget - floor:.1f} s** for the steps that compute ({', '.join(compute)}), which "
               f"took **{took:.1f} s** in the cold audit ({took / (budget - floor):.1f}x what is left)."
               if budget > floor else
               f"The floor alone is over the budget; the steps that compute ({', '.join(compute)}) took "
               f"**{took:.1f} s** on top.")
    return ["", f"**The budget against the floor.** A 1.15x audit leaves {budget:.1f} s (0.15 x the {emb:.1f} s "
            f"embedding) for everything else. The same audit again in a new process, every step read from the cache "
            f"(warm re-audit, its own new DuckDB file): wall {w['wall_s']:.1f} s, of which reading the embeddings "
            f"{read:.1f} s; the rest ({w['wall_s'] - read:.1f} s: start-up, imports, Dagster, reading the CSV, the "
            f"DuckDB write, cached gates) plus importing Great Expectations ({r.get('ge_import_s', 0.0):.1f} s, skipped "
            f"when the gates' verdicts come from the cache) is a floor of **{floor:.1f} s** outside the steps that "
            f"compute. " + verdict, ""]


def write_report(results: list[dict], out: Path, argv: list[str]) -> str:
    tab = sorted((r for r in results if r["kind"] == "tabular"), key=lambda r: r["n"])
    text = [r for r in results if r["kind"] == "text"]
    lines = [
        "# End-to-end scale (`bench/bench_scale.py`)", "",
        f"Command: `{' '.join(argv)}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GB:.0f} GB RAM, {platform.platform()}, "
        f"Python {platform.python_version()}; shared with other work (wall times are noisy; ratios are within "
        "one invocation).  ",
        f"Commit: {_git('rev-parse', '--short', 'HEAD')}{' (+ uncommitted changes)' if _git('status', '--porcelain', '--untracked-files=no', '--', '.', ':!bench/results') else ''}"
        f"; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        "Each audit: `dq-pipeline audit FOLDER --db FILE` in a new process, fresh cache and DuckDB file (cold), "
        "`$DAGSTER_HOME` " + ("set to a fresh folder (persistent instance, pickled step outputs)"
                              if any(r.get("dagster_home") for r in results) else
                              "unset (ephemeral instance, in-memory step outputs, as the README's shell example)")
        + ". Peak RSS = largest sum over the process tree, sampled every 0.1 s; `time -v` = the largest single "
        "process's maximum RSS. Step seconds from the run's STEP_START / STEP_SUCCESS events (gates are the "
        "`*_gate` / `curated_*` steps).", "",
    ]
    if tab:
        lines += ["## Tabular (64 numeric columns, 40 tags, 3% planted errors, Parquet)", "",
                  "| rows | result | wall s | ms per 1k rows | vs smallest N | peak tree RSS GB | time -v max RSS GB "
                  "| <= 8 GB | DuckDB MB |", "|---:|---|---:|---:|---:|---:|---:|---|---:|"]
        base = next((r for r in tab if r["rc"] == 0), None)
        for r in tab:
            ok = r["rc"] == 0
            per = r["wall_s"] / r["n"] * 1e6
            ratio = f"{per / (base['wall_s'] / base['n'] * 1e6):.2f}x" if ok and base else "-"
            single = f"{r['max_single_rss'] / GB:.2f}" if r.get("max_single_rss") else "-"
            within = ("yes" if r["peak_tree_rss"] <= RSS_LIMIT_GB * GB else "NO") if ok else \
                ("NO" if r["peak_tree_rss"] > RSS_LIMIT_GB * GB else "- (until it stopped)")
            lines.append(f"| {r['n']:,} | {'ok' if ok else 'FAILED: ' + str(r['rc'])} | {r['wall_s']:.1f} | "
                         f"{f'{per:.1f}' if ok else '-'} | {ratio} | {r['peak_tree_rss'] / GB:.2f} | {single} | "
                         f"{within} | {(r['db_bytes'] or 0) / 1e6 if ok else 0:.0f} |")
        if base and len(tab) > 1:
            lines += ["", f"Time per row relative to {base['n']:,} rows (goal at 1M: <= 1.5x); "
                      "the same ratio without start-up (sum of steps):", ""]
            per_base = sum(base["steps"].values()) / base["n"]
            for r in tab:
                if r["rc"] == 0 and r is not base and r["steps"]:
                    lines.append(f"- {r['n']:,}: {r['wall_s'] / r['n'] / (base['wall_s'] / base['n']):.2f}x wall, "
                                 f"{sum(r['steps'].values()) / r['n'] / per_base:.2f}x steps")
        for r in tab:
            lines += ["", f"### {r['n']:,} rows: steps", "", *_stage_table(r)]
            if r["rc"] != 0:
                lines += ["", "Output tail:", "", "```", r["tail"][-1500:], "```"]
    if len(text) > 1 and all(r["rc"] == 0 for r in text):
        lines += ["", "## Full GoEmotions by `embedding_precision`", "",
                  "| embedding_precision | wall s | embedding s | other steps s | wall vs the first |",
                  "|---|---:|---:|---:|---:|"]
        for r in text:
            emb = r["steps"].get("features", 0.0)
            lines.append(f"| {r.get('precision', 'auto')} | {r['wall_s']:.1f} | {emb:.1f} | "
                         f"{sum(r['steps'].values()) - emb:.1f} | {r['wall_s'] / text[0]['wall_s']:.2f}x |")
    for r in text:
        lines += ["", "## Full GoEmotions (54,263 texts, 28 tags), cold, "
                  f"`embedding_precision: {r.get('precision', 'auto')}`", ""]
        if r["rc"] != 0:
            lines += [f"FAILED: {r['rc']}", "", "```", r["tail"][-1500:], "```"]
        emb = r["steps"].get("features")
        if emb:
            rest = sum(v for k, v in r["steps"].items() if k != "features")
            lines += [f"Wall {r['wall_s']:.1f} s, embedding step (`features`) {emb:.1f} s: **total / embedding = "
                      f"{r['wall_s'] / emb:.2f}** (goal <= 1.15); every other step together {rest:.1f} s = "
                      f"{rest / emb:.2f} x embedding (budget 0.15); peak tree RSS {r['peak_tree_rss'] / GB:.2f} GB.",
                      ""]
        lines += _stage_table(r)
        lines += _floor_lines(r)
    lines += ["", "What this does not show: the detectors' quality (bench_quality.py), warm re-audits "
              "(bench_reaudit.py), audits that run beside other work (the machine is shared, so wall times carry "
              "noise), memory peaks shorter than the 0.1 s sampling interval.", ""]
    report = "\n".join(lines)
    out.write_text(report)
    return report


# --------------------------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 300_000, 1_000_000],
                        help="tabular row counts (default 100000 300000 1000000)")
    parser.add_argument("--only", choices=["tabular", "text"], help="only the tabular sizes or only GoEmotions")
    parser.add_argument("--text", action="store_true", help="also the full GoEmotions (default when --only text)")
    parser.add_argument("--workdir", default="/tmp/dq_bench_scale",
                        help="datasets (built once, reused), per-audit folders and results.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dagster-home", action="store_true",
                        help="a fresh persistent Dagster instance per audit (outputs pickled) instead of none")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds before an audit is killed")
    parser.add_argument("--resume", action="store_true",
                        help="keep earlier results of the same commit from results.jsonl; skip what they measured")
    parser.add_argument("--text-precisions", nargs="+", default=["auto"], choices=["auto", "float32", "bfloat16"],
                        help="GoEmotions: one audit per embedding_precision, in this order (default: auto only)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "scale.md"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    commit = _git("rev-parse", "HEAD")
    jobs: list[tuple[str, int, str]] = []
    if args.only != "text":
        jobs += [("tabular", n, "auto") for n in args.sizes]
    if args.only == "text" or args.text:
        jobs += [("text", 54_263, p) for p in args.text_precisions]
    results_file = workdir / "results.jsonl"
    results: list[dict] = []
    if args.resume and results_file.is_file():
        for line in results_file.read_text().splitlines():
            r = json.loads(line)
            if r.get("commit") == commit and r.get("dagster_home") == args.dagster_home and r["rc"] == 0:
                results.append(r)
    argv = [".venv/bin/python", "bench/bench_scale.py", *sys.argv[1:]]
    for kind, n, precision in jobs:
        if any(r["kind"] == kind and r["n"] == n and r.get("precision", "auto") == precision for r in results):
            print(f"{kind} {n}: measured before (--resume), skipped", flush=True)
            continue
        try:
            folder = tabular_folder(workdir, n, args.seed) if kind == "tabular" else goemotions_folder(workdir)
            run_dir = Path(tempfile.mkdtemp(prefix=f"{folder.name}_", dir=workdir))
            print(f"auditing {folder.name} in {run_dir} ...", flush=True)
            r = timed_audit(folder, run_dir, args.dagster_home, args.timeout, precision)
            if kind == "text" and r["rc"] == 0:  # the floor: the same audit again, everything from the cache
                w = timed_audit(folder, run_dir, args.dagster_home, args.timeout, precision, db_name="warm.duckdb")
                r["warm"] = {k: w[k] for k in ("rc", "wall_s", "steps")}
                r["ge_import_s"] = round(ge_import_seconds(), 2)
        except Exception as exc:  # a size that fails still leaves a row and the others run
            r = {"rc": f"{type(exc).__name__}: {exc}", "wall_s": 0.0, "peak_tree_rss": 0, "max_single_rss": None,
                 "steps": {}, "step_peak_rss": {}, "command": "", "db_bytes": None, "tail": ""}
        r.update(kind=kind, n=n, commit=commit, dagster_home=args.dagster_home, precision=precision)
        with results_file.open("a") as fh:
            fh.write(json.dumps(r) + "\n")
        results.append(r)
        print(f"{kind} {n}: rc {r['rc']}, wall {r['wall_s']:.1f} s, peak tree RSS {r['peak_tree_rss'] / GB:.2f} GB; "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items()), flush=True)
        if r["rc"] == 0:
            shutil.rmtree(run_dir / "cache", ignore_errors=True)
            for name in ("curated.duckdb", "warm.duckdb"):
                (run_dir / name).unlink(missing_ok=True)
        write_report(results, Path(args.out), argv)
    print(write_report(results, Path(args.out), argv))
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
