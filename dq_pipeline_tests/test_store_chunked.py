"""Audit writes in chunks: pandas frames in row slices, the predictions table as Arrow record batches
made on demand (``PredictionRows``),
all in the one transaction (a failure in a late chunk leaves nothing of the audit written)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dq_pipeline import store
from dq_pipeline.curate import predictions_table


def _run(run_id: str, n: int) -> dict:
    t = datetime(2026, 1, 1)
    return {"run_id": run_id, "dataset": "ds", "started_at": t, "finished_at": t, "status": "success",
            "n_input_rows": n, "n_examples": n, "n_quarantined": 0, "config": {}}


def _tables(n: int, k: int, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    ids = [f"ex{i:04d}" for i in range(n)]
    classes = [f"tag{j}" for j in range(k)]
    Y = rng.random((n, k)) < 0.3
    P = rng.random((n, k)).astype(np.float32)
    labels = [[c for c, y in zip(classes, row) if y] for row in Y]
    tables = {
        "examples": pd.DataFrame({"example_id": ids, "row_number": np.arange(n), "given_labels": labels,
                                  "label_quality": rng.random(n), "payload": [None] * (n // 2) + ["x"] * (n - n // 2)}),
        "predictions": predictions_table(ids, classes, Y, P),
    }
    return tables, Y, P, ids


def test_chunked_write_round_trips(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "WRITE_CHUNK_ROWS", 37)  # many chunks, a short last one
    n, k = 250, 6
    tables, Y, P, ids = _tables(n, k)
    seen: list[tuple[int, int]] = []
    store.write_audit(db_path, _run("r1", n), tables, progress=lambda done, total: seen.append((done, total)))
    # examples: 37-row slices; predictions: batches of whole examples, at most 37 rows (6 examples x 6 tags)
    assert seen[-1] == (n + n * k, n + n * k) and len(seen) == -(-n // 37) + -(-n // (37 // k))
    assert all(b[0] > a[0] for a, b in zip(seen, seen[1:]))
    pred = store.read_latest(db_path, "predictions", "ds")
    assert len(pred) == n * k and set(pred["run_id"]) == {"r1"}
    pred = pred.sort_values(["example_id", "tag"])
    assert np.allclose(pred["probability"].to_numpy().reshape(n, k), P.astype(np.float64), rtol=0, atol=0)
    assert (pred["given"].to_numpy().reshape(n, k) == Y).all()
    ex = store.read_latest(db_path, "examples", "ds").sort_values("row_number")
    assert ex["example_id"].tolist() == ids and ex["payload"].isna().sum() == n // 2
    assert ex["given_labels"].tolist() == tables["examples"]["given_labels"].tolist()


def test_a_failing_late_chunk_rolls_back_the_whole_audit(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "WRITE_CHUNK_ROWS", 50)
    tables, *_ = _tables(120, 4)
    store.write_audit(db_path, _run("r1", 120), tables)
    bad, *_ = _tables(120, 4, seed=1)
    bad["examples"].loc[110, "example_id"] = None  # NOT NULL: the third chunk of examples fails
    with pytest.raises(store.StoreError, match="'r2' of 'ds' was not written"):
        store.write_audit(db_path, _run("r2", 120), bad)
    with store.connect(db_path, read_only=True) as con:
        counts = {t: con.execute(f"SELECT count(*) FROM {t} WHERE run_id = 'r2'").fetchone()[0]
                  for t in ("audit_runs", "examples", "predictions")}
    assert counts == {"audit_runs": 0, "examples": 0, "predictions": 0}
    assert set(store.read_latest(db_path, "predictions", "ds")["run_id"]) == {"r1"}


def test_nothing_lost_still_checked_after_chunked_inserts(db_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "WRITE_CHUNK_ROWS", 16)
    tables, *_ = _tables(40, 3)
    with pytest.raises(store.NothingLostError, match="41 input rows != 40 examples"):
        store.write_audit(db_path, _run("r1", 41), tables)
    assert not Path(db_path).exists() or store.read_latest(db_path, "predictions").empty


def test_prediction_rows_match_the_row_major_table() -> None:
    tables, Y, P, ids = _tables(23, 4)
    rows = tables["predictions"]
    frame = rows.to_pandas()
    assert len(rows) == len(frame) == 92
    assert frame["example_id"].astype(str).tolist() == [i for i in ids for _ in range(4)]
    assert frame["tag"].astype(str).tolist() == [f"tag{j}" for j in range(4)] * 23
    assert (frame["given"].to_numpy() == Y.reshape(-1)).all()
    assert (frame["probability"].to_numpy() == P.astype(np.float64).reshape(-1)).all()
    assert sum(b.num_rows for b in rows.to_batches(max_chunksize=10)) == 92  # 2 examples (8 rows) per batch


def test_the_write_runs_under_duckdbs_memory_limit_and_larger_than_it(db_path: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """write_audit caps DuckDB's buffer pool (``WRITE_MEMORY_LIMIT``); an audit larger than the cap is still
    written whole (DuckDB writes blocks out instead of holding them), and '' keeps DuckDB's own default."""
    monkeypatch.setattr(store, "WRITE_MEMORY_LIMIT", "32MB")
    n, k = 20_000, 40  # 800k prediction rows with their strings: well beyond 32 MB in memory
    tables, Y, P, ids = _tables(n, k)
    tables["examples"]["payload"] = ["p" * 2000] * n  # 40 MB of payload text
    store.write_audit(db_path, _run("big", n), tables)
    with store.connect(db_path, read_only=True) as con:
        assert con.execute("SELECT count(*), sum(probability) FROM predictions WHERE run_id = 'big'").fetchone() == \
            pytest.approx((n * k, float(P.astype(np.float64).sum())))
        assert con.execute("SELECT count(*), min(length(payload)) FROM examples WHERE run_id = 'big'").fetchone() == \
            (n, 2000)
    monkeypatch.setattr(store, "WRITE_MEMORY_LIMIT", "plenty")  # the limit is really applied: a bad one is refused
    with pytest.raises(store.StoreError, match="'plenty' .DQ_DUCKDB_WRITE_MEMORY. not usable"):
        store.write_audit(db_path, _run("bad", 10), _tables(10, 3)[0])
    monkeypatch.setattr(store, "WRITE_MEMORY_LIMIT", "")
    store.write_audit(db_path, _run("default", 10), _tables(10, 3)[0])
    with store.connect(db_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM examples WHERE run_id = 'default'").fetchone() == (10,)


def test_a_column_empty_for_its_first_thousands_of_rows_is_written(db_path: str) -> None:
    """The full GoEmotions audit failed here ("Failed to cast value: Unimplemented type for cast (VARCHAR ->
    NULL)"): DuckDB typed a pandas object column from its first 1,000 values, all None, and a later string
    did not fit. Every value of such a column must be written."""
    n = 5000
    tables, _, _, ids = _tables(n, 3)
    payload = [None] * n
    payload[4321] = "late text"
    tables["examples"]["payload"] = payload
    violations: list[list[str]] = [[] for _ in range(n)]  # a list column: empty lists, then one with a value
    violations[4001] = ["never empty"]  # off the stride DuckDB samples (every 5th row of 5,000)
    tables["examples"]["rule_violations"] = violations
    store.write_audit(db_path, _run("r1", n), tables)
    ex = store.read_latest(db_path, "examples", "ds").set_index("example_id")
    assert ex.loc[ids[4321], "payload"] == "late text" and ex["payload"].isna().sum() == n - 1
    assert list(ex.loc[ids[4001], "rule_violations"]) == ["never empty"]
    assert sum(len(v) for v in ex["rule_violations"]) == 1
