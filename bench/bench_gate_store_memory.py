"""Peak memory and time of the probabilities gate and of the DuckDB audit write at N x K (default 1M x 20):
the previous code (melt P into N x K rows for GE; build the N x K predictions as a pandas frame, copy it,
add dataset/run_id, one INSERT) against the current (per-tag aggregates scanned in row chunks; the
predictions as dictionary-encoded Arrow record batches made on demand from Y and P, pandas frames in row
slices, dataset/run_id added by DuckDB).

The previous code is reproduced here verbatim (from git ea128a5) as the baseline. Each case runs in its
own process: after the inputs exist (P float64 N x K, Y, ids, the examples frame), the peak-RSS mark is
reset (``/proc/self/clear_refs``) and the case's *extra* peak RSS (VmHWM - RSS before) and wall seconds
are measured. This is a gate / store-level measurement, not a full audit.

Run: nice -n 10 env PYTHONPATH=. GX_ANALYTICS_ENABLED=False .venv/bin/python bench/bench_gate_store_memory.py
(BENCH_N, BENCH_K override the size). Writes bench/results/gate_store_memory.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "gate_store_memory.md"
N = int(os.environ.get("BENCH_N", "1000000"))
K = int(os.environ.get("BENCH_K", "20"))
CASES = ["gate_melted", "gate_chunked", "write_pandas_one_insert", "write_arrow_chunked"]


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _inputs(n: int, k: int):
    rng = np.random.default_rng(0)
    P = rng.random((n, k))
    Y = rng.random((n, k)) < 0.1
    ids = [f"ex{i:08d}" for i in range(n)]
    classes = [f"tag{j:02d}" for j in range(k)]
    examples = pd.DataFrame({"example_id": ids, "row_number": np.arange(n, dtype=np.int64),
                             "label_quality": rng.random(n), "is_label_issue": rng.random(n) < 0.05})
    return P, Y, ids, classes, examples


def gate_melted(P, Y, ids, classes, examples, tmp):  # the previous validate_probabilities (git ea128a5)
    import great_expectations as gx

    from dq_pipeline.expectations import _validate

    E = gx.expectations
    P = np.asarray(P, dtype=np.float64)
    n, k = P.shape
    long = pd.DataFrame({
        "example_id": np.repeat(np.asarray(ids, dtype=object)[:n], k),
        "tag": np.tile(np.asarray(classes, dtype=object)[:k], n),
        "probability": P.reshape(-1),
    })
    exps = [
        E.ExpectTableRowCountToEqual(value=len(ids) * len(classes)),
        E.ExpectColumnValuesToNotBeNull(column="probability"),
        E.ExpectColumnValuesToBeBetween(column="probability", min_value=0.0, max_value=1.0),
        E.ExpectCompoundColumnsToBeUnique(column_list=["example_id", "tag"]),
    ]
    failures, _ = _validate([("probabilities", long, exps, ["example_id", "tag"])])
    assert not failures


def gate_chunked(P, Y, ids, classes, examples, tmp):
    from dq_pipeline.expectations import validate_probabilities

    assert validate_probabilities(P, ids, classes).success


def _run_row(n):
    t = datetime(2026, 1, 1)
    return {"run_id": "r1", "dataset": "ds", "started_at": t, "finished_at": t, "status": "success",
            "n_input_rows": n, "n_examples": n, "n_quarantined": 0, "config": "{}"}


def write_pandas_one_insert(P, Y, ids, classes, examples, tmp):  # previous curate + write_audit (git ea128a5)
    from dq_pipeline import store

    n, k = Y.shape
    id_arr, cls_arr = np.asarray(ids, dtype=object), np.asarray(classes, dtype=object)
    predictions = pd.DataFrame({
        "example_id": np.repeat(id_arr, k), "tag": np.tile(cls_arr, n),
        "given": Y.astype(bool).reshape(-1), "probability": np.asarray(P, dtype=np.float64).reshape(-1),
    })
    with store.connect(Path(tmp) / "old.duckdb") as con:
        con.execute("BEGIN TRANSACTION")
        con.register("_dq_frame", pd.DataFrame([_run_row(n)]))
        con.execute("INSERT INTO audit_runs BY NAME SELECT * FROM _dq_frame")
        for name, frame in {"examples": examples, "predictions": predictions}.items():
            frame = frame.copy()
            frame.insert(0, "run_id", "r1")
            frame.insert(0, "dataset", "ds")
            con.register("_dq_frame", frame)
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _dq_frame")
            con.unregister("_dq_frame")
        con.execute("COMMIT")


def write_arrow_chunked(P, Y, ids, classes, examples, tmp):
    from dq_pipeline import store
    from dq_pipeline.curate import predictions_table

    store.write_audit(Path(tmp) / "new.duckdb", _run_row(len(ids)),
                      {"examples": examples, "predictions": predictions_table(ids, classes, Y, P)})


def child(case: str) -> None:
    inputs = _inputs(N, K)
    with tempfile.TemporaryDirectory() as tmp:
        from dq_pipeline import store  # imports (GE, duckdb) before the mark: the case's data, not its code

        with store.connect(Path(tmp) / "warm.duckdb"):
            pass
        import great_expectations  # noqa: F401

        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status("VmRSS")
        t0 = time.perf_counter()
        globals()[case](*inputs, tmp)
        seconds = time.perf_counter() - t0
        peak = _status("VmHWM")
    print(json.dumps({"case": case, "seconds": seconds, "extra_peak_mb": (peak - before) / 2**20,
                      "rss_before_mb": before / 2**20}))


def main() -> None:
    rows = []
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, case], capture_output=True, text=True,
                             env={**os.environ, "GX_ANALYTICS_ENABLED": "False"})
        line = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if out.returncode or not line:
            raise SystemExit(f"{case} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[-1]))
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    r = {row["case"]: row for row in rows}
    lines = [
        "# Probabilities gate and DuckDB audit write: memory and time (`bench/bench_gate_store_memory.py`)",
        "",
        "Command: `nice -n 10 env PYTHONPATH=. GX_ANALYTICS_ENABLED=False .venv/bin/python "
        f"bench/bench_gate_store_memory.py` (N={N:,}, K={K})",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs; one process per case, "
        f"one run each; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "",
        "extra peak = peak RSS during the case minus RSS once its inputs (P float64 N x K, Y, N ids, an N-row "
        "examples frame) exist and the libraries are imported.",
        "",
        table.round(2).to_markdown(index=False),
        "",
        f"- gate: extra peak {r['gate_melted']['extra_peak_mb']:.0f} MB -> {r['gate_chunked']['extra_peak_mb']:.0f} MB, "
        f"time {r['gate_melted']['seconds']:.1f} s -> {r['gate_chunked']['seconds']:.1f} s "
        f"({r['gate_melted']['seconds'] / r['gate_chunked']['seconds']:.1f}x faster)",
        f"- write (examples + predictions): extra peak {r['write_pandas_one_insert']['extra_peak_mb']:.0f} MB -> "
        f"{r['write_arrow_chunked']['extra_peak_mb']:.0f} MB, time {r['write_pandas_one_insert']['seconds']:.1f} s -> "
        f"{r['write_arrow_chunked']['seconds']:.1f} s",
        "",
        "What this does not show: DuckDB's own buffer memory is counted in RSS (it grows with the table "
        "written, and is the same for both); timings on a shared 2-core machine are noisy (one run each); "
        "the full audit's peak is set elsewhere (the detectors' neighbour searches, issue 11 part 1).",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        child(sys.argv[1])
    else:
        main()
