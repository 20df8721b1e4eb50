from datetime import datetime, timedelta

import duckdb
import pandas as pd
import pytest

from dq_pipeline import store


def _run(run_id: str, minutes: int, n: int = 2) -> dict:
    t = datetime(2026, 1, 1) + timedelta(minutes=minutes)
    return {"run_id": run_id, "dataset": "ds", "started_at": t, "finished_at": t, "status": "success",
            "n_input_rows": n, "n_examples": n, "n_quarantined": 0, "config": {"n_folds": 5}}


def _tables(labels: list[list[str]]) -> dict[str, pd.DataFrame]:
    ids = [str(i) for i in range(len(labels))]
    return {
        "examples": pd.DataFrame({"example_id": ids, "given_labels": labels, "label_quality": 0.5}),
        "curated_labels": pd.DataFrame({"example_id": ids, "labels": labels, "excluded": False, "reason": ""}),
    }


def test_reaudit_keeps_history_and_latest_has_no_duplicates(db_path):
    store.write_audit(db_path, _run("r1", 0), _tables([["a"], []]))
    store.write_audit(db_path, _run("r2", 5), _tables([["b"], ["a", "b"]]))
    store.write_audit(db_path, _run("r2", 5), _tables([["b"], ["a", "b"]]))  # retried write: replaced
    with duckdb.connect(db_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM examples").fetchone()[0] == 4
        assert con.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 2
        latest = con.execute("SELECT example_id, given_labels FROM latest_examples ORDER BY 1").fetchall()
        assert latest == [("0", ["b"]), ("1", ["a", "b"])]
        assert con.execute("SELECT typeof(given_labels) FROM examples LIMIT 1").fetchone()[0] == "VARCHAR[]"
        json_cfg = con.execute("SELECT config->>'n_folds' FROM latest_audit_runs").fetchone()[0]
        assert json_cfg == "5"
    assert store.read_latest(db_path, "curated_labels", "ds")["labels"].tolist() == [["b"], ["a", "b"]]


def test_failed_write_leaves_previous_audit_intact(db_path):
    store.write_audit(db_path, _run("r1", 0), _tables([["a"], []]))
    bad = _tables([["x"], ["y"]])
    bad["examples"]["label_quality"] = ["not a number", "x"]  # fails inside the transaction
    with pytest.raises(Exception):
        store.write_audit(db_path, _run("r2", 5), bad)
    latest = store.read_latest(db_path, "examples", "ds")
    assert latest["given_labels"].tolist() == [["a"], []]
    with duckdb.connect(db_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM audit_runs WHERE run_id = 'r2'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM curated_labels WHERE run_id = 'r2'").fetchone()[0] == 0


def test_unknown_table_rejected(db_path):
    with pytest.raises(ValueError, match="unknown table"):
        store.write_audit(db_path, _run("r1", 0), {"nope": pd.DataFrame()})


def test_schema_migrations_run_once_and_a_current_file_is_left_alone(db_path):
    store.write_audit(db_path, _run("r1", 0), _tables([["a"], []]))
    versions = [(m.version,) for m in store.MIGRATIONS]
    with duckdb.connect(db_path) as con:  # current version: connecting leaves the file alone
        assert con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == versions
        con.execute("DROP VIEW latest_curated_labels")
    with store.connect(db_path) as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert "latest_curated_labels" not in views and "latest_examples" in views
    with duckdb.connect(db_path) as con:  # one version behind: only the missing step runs, views rebuilt
        con.execute("DELETE FROM schema_version WHERE version = ?", [store.SCHEMA_VERSION])
    assert store.read_latest(db_path, "curated_labels", "ds")["labels"].tolist() == [["a"], []]
    with duckdb.connect(db_path, read_only=True) as con:
        assert con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == versions
