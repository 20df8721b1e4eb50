"""The curated DuckDB store: schema, one-transaction audit writes, ``latest_*`` views, reads.

Default file ``data/curated.duckdb`` (override with ``DQ_DUCKDB_PATH``). Every table carries
``dataset`` and ``run_id``; ``latest_<table>`` views show the latest successful audit per dataset.
An audit's rows are written in one transaction, so a failure leaves the previous audit intact.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_DB_PATH = "data/curated.duckdb"

TABLES: dict[str, str] = {
    "audit_runs": """
        run_id VARCHAR NOT NULL, dataset VARCHAR NOT NULL, started_at TIMESTAMP, finished_at TIMESTAMP,
        status VARCHAR, modality VARCHAR, source VARCHAR, n_input_rows BIGINT, n_examples BIGINT,
        n_quarantined BIGINT, n_classes INTEGER, health_score DOUBLE, n_label_issues BIGINT,
        n_ambiguous BIGINT, n_outliers BIGINT, n_near_duplicates BIGINT, config JSON""",
    "examples": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, row_number BIGINT,
        given_labels VARCHAR[], suggested_labels VARCHAR[], label_quality DOUBLE, is_label_issue BOOLEAN,
        ambiguity DOUBLE, is_ambiguous BOOLEAN, borderline_tags VARCHAR[], outlier_score DOUBLE,
        is_outlier BOOLEAN, near_duplicate_group INTEGER, is_near_duplicate BOOLEAN,
        near_duplicate_conflict BOOLEAN, payload VARCHAR""",
    "tag_issues": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, tag VARCHAR NOT NULL,
        given BOOLEAN, probability DOUBLE, kind VARCHAR, score DOUBLE""",
    "predictions": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, tag VARCHAR NOT NULL,
        given BOOLEAN, probability DOUBLE""",
    "class_summary": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, tag VARCHAR NOT NULL, n_given BIGINT,
        n_suggested BIGINT, n_missing BIGINT, n_incorrect BIGINT, missing_rate DOUBLE,
        incorrect_rate DOUBLE, oof_auroc DOUBLE""",
    "tag_confusions": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, missing_tag VARCHAR, incorrect_tag VARCHAR,
        n_examples BIGINT""",
    "duplicate_groups": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, group_id INTEGER, example_id VARCHAR,
        kind VARCHAR, is_conflict BOOLEAN, group_size INTEGER""",
    "quarantine": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, row_number BIGINT, example_id VARCHAR,
        reason VARCHAR""",
    "curated_labels": """
        dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, labels VARCHAR[],
        excluded BOOLEAN, reason VARCHAR""",
}

COMMENTS = {
    ("class_summary", "missing_rate"): "n_missing / (examples not carrying the tag); NULL if none",
    ("class_summary", "incorrect_rate"): "n_incorrect / n_given (examples carrying the tag); NULL if none",
    ("class_summary", "n_given"): "examples of this audit carrying the tag",
    ("examples", "label_quality"): "0-1, low = labels likely wrong",
    ("examples", "ambiguity"): "0-1, low = ambiguous",
    ("examples", "outlier_score"): "0-1, low = outlier",
    ("audit_runs", "health_score"): "fraction of examples with no issue flag (0-1, high = healthy)",
}


def default_db_path() -> str:
    """``$DQ_DUCKDB_PATH`` or ``data/curated.duckdb``."""
    return os.environ.get("DQ_DUCKDB_PATH", DEFAULT_DB_PATH)


@contextmanager
def connect(db_path: str | Path, read_only: bool = False, timeout_s: float = 60.0) -> Iterator[Any]:
    """Open the DuckDB file (creating schema and views), retrying while another process holds the lock."""
    import duckdb

    path = Path(db_path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    try:
        if not read_only:
            ensure_schema(con)
        yield con
    finally:
        con.close()


def _schema_version() -> str:
    import hashlib

    text = json.dumps([TABLES, sorted(COMMENTS.items()), _LATEST_RUNS_SQL, _LATEST_TABLE_SQL])
    return "dq_pipeline schema " + hashlib.sha256(text.encode()).hexdigest()[:16]


_LATEST_RUNS_SQL = """CREATE OR REPLACE VIEW latest_audit_runs AS
           SELECT * FROM audit_runs WHERE status = 'success'
           QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY finished_at DESC, run_id DESC) = 1"""
_LATEST_TABLE_SQL = """CREATE OR REPLACE VIEW latest_{name} AS
                    SELECT t.* FROM {name} t JOIN latest_audit_runs r USING (dataset, run_id)"""


def ensure_schema(con: Any) -> None:
    """Create the tables, column comments and ``latest_*`` views if absent (idempotent).

    The schema's version is kept as the comment of ``audit_runs``; a file already at this version is
    left untouched (no catalog writes on every connection).
    """
    version = _schema_version()
    found = con.execute("SELECT comment FROM duckdb_tables() WHERE schema_name = 'main' "
                        "AND table_name = 'audit_runs'").fetchall()
    if found and found[0][0] == version:
        return
    for name, columns in TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")
    for (table, column), text in COMMENTS.items():
        con.execute(f"COMMENT ON COLUMN {table}.{column} IS '{text}'")
    con.execute(_LATEST_RUNS_SQL)
    for name in TABLES:
        if name != "audit_runs":
            con.execute(_LATEST_TABLE_SQL.format(name=name))
    con.execute(f"COMMENT ON TABLE audit_runs IS '{version}'")


def write_audit(db_path: str | Path, run: dict[str, Any], tables: dict[str, pd.DataFrame]) -> None:
    """Write one audit atomically.

    ``run`` is the ``audit_runs`` row (must hold run_id and dataset; ``config`` may be a dict);
    ``tables`` maps table name -> frame (without ``dataset``/``run_id``, which are added). Rows of a
    previous write with the same (dataset, run_id) are replaced, so a retried write never duplicates.
    """
    unknown = set(tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}")
    dataset, run_id = run["dataset"], run["run_id"]
    run_row = dict(run)
    run_row["config"] = json.dumps(run_row.get("config") or {}, default=str)
    with connect(db_path) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            retried = con.execute("SELECT count(*) FROM audit_runs WHERE dataset = ? AND run_id = ?",
                                  [dataset, run_id]).fetchall()[0][0]
            for name in TABLES if retried else ():  # a new run has no rows to replace: skip the scans
                con.execute(f"DELETE FROM {name} WHERE dataset = ? AND run_id = ?", [dataset, run_id])
            _insert(con, "audit_runs", pd.DataFrame([run_row]))
            for name, frame in tables.items():
                frame = frame.copy()
                frame.insert(0, "run_id", run_id)
                frame.insert(0, "dataset", dataset)
                _insert(con, name, frame)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _insert(con: Any, table: str, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    con.register("_dq_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _dq_frame")
    finally:
        con.unregister("_dq_frame")


def read_latest(db_path: str | Path, table: str, dataset: str | None = None) -> pd.DataFrame:
    """Rows of ``latest_<table>`` (optionally for one dataset) as a DataFrame."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {sorted(TABLES)}")
    with connect(db_path) as con:
        sql = f"SELECT * FROM latest_{table}"
        params: list[Any] = []
        if dataset is not None:
            sql += " WHERE dataset = ?"
            params.append(dataset)
        frame = con.execute(sql, params).df()
    for column in frame.columns:  # VARCHAR[] arrives as numpy arrays: hand out plain lists
        if frame[column].dtype == object and frame[column].map(lambda v: hasattr(v, "tolist")).any():
            frame[column] = frame[column].map(lambda v: v.tolist() if hasattr(v, "tolist") else v)
    return frame
