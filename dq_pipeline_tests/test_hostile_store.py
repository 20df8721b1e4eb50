"""Hostile input for the DuckDB store: paths that are not usable DuckDB files, read-only and locked files,
a full disk, incomplete audits, files written by the previous (hash-versioned) schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dq_pipeline import store

REPO = Path(__file__).resolve().parents[1]


def _run(run_id: str, minutes: int = 0, dataset: str = "ds", n: int = 2, **extra) -> dict:
    t = datetime(2026, 1, 1) + timedelta(minutes=minutes)
    return {"run_id": run_id, "dataset": dataset, "started_at": t, "finished_at": t, "status": "success",
            "n_input_rows": n, "n_examples": n, "n_quarantined": 0, "config": {}, **extra}


def _tables(labels: list[list[str]]) -> dict[str, pd.DataFrame]:
    ids = [str(i) for i in range(len(labels))]
    return {
        "examples": pd.DataFrame({"example_id": ids, "given_labels": labels, "label_quality": 0.5}),
        "curated_labels": pd.DataFrame({"example_id": ids, "labels": labels, "excluded": False, "reason": ""}),
    }


def _python(code: str, *args: str, prefix: tuple[str, ...] = (), **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, env=env, timeout=120, **kw)


def _can(*command: str) -> bool:
    try:
        return subprocess.run(list(command), capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --------------------------------------------------------------------------- paths that are not DuckDB files

@pytest.fixture
def hostile(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.duckdb"
    store.write_audit(good, _run("r1"), _tables([["a"], []]))
    data = good.read_bytes()
    (tmp_path / "folder.duckdb").mkdir()
    (tmp_path / "text.duckdb").write_text("run_id,dataset\nr1,ds\n")
    (tmp_path / "truncated.duckdb").write_bytes(data[:5000])
    (tmp_path / "zeroed.duckdb").write_bytes(data[:8192] + b"\0" * (len(data) - 8192))
    (tmp_path / "dangling.duckdb").symlink_to(tmp_path / "nowhere.duckdb")
    (tmp_path / "a_file").write_text("x")
    return {"good": good, "folder": tmp_path / "folder.duckdb", "text": tmp_path / "text.duckdb",
            "truncated": tmp_path / "truncated.duckdb", "zeroed": tmp_path / "zeroed.duckdb",
            "dangling": tmp_path / "dangling.duckdb", "under_a_file": tmp_path / "a_file" / "c.duckdb",
            "missing_folders": tmp_path / "new" / "deeper" / "c.duckdb"}


@pytest.mark.parametrize("case, expected", [
    ("folder", "is a directory, not a DuckDB file"),
    ("text", "exists but is not a DuckDB database file"),
    ("truncated", "is damaged (truncated or corrupt"),
    ("zeroed", "is damaged (truncated or corrupt"),
    ("dangling", "is a dangling symbolic link"),
    ("under_a_file", "is a file, not a folder"),
])
def test_check_writable_names_the_path_and_the_cause(hostile, case, expected):
    with pytest.raises(store.StoreError) as info:
        store.check_writable(hostile[case])
    assert expected in str(info.value) and str(hostile[case].name) in str(info.value)
    if case != "dangling":  # (a write through a dangling link creates its target, as DuckDB does)
        with pytest.raises(store.StoreError):  # writing says the same, as a StoreError
            store.write_audit(hostile[case], _run("r2"), _tables([["a"], []]))


@pytest.mark.parametrize("path, expected", [("", "is not a file path"), (":memory:", "is not a file path"),
                                            ("/dev/null", "not a regular file")])
def test_check_writable_refuses_non_files(path, expected):
    with pytest.raises(store.StoreError, match=expected):
        store.check_writable(path)


def test_check_writable_accepts_new_and_good_files_without_creating_anything(hostile):
    store.check_writable(hostile["missing_folders"])
    assert not hostile["missing_folders"].parent.exists()
    store.check_writable(hostile["good"])
    store.write_audit(hostile["missing_folders"], _run("r1"), _tables([["a"], []]))  # the write creates them
    assert store.read_latest(hostile["missing_folders"], "audit_runs")["run_id"].tolist() == ["r1"]


def test_reading_a_missing_file_explains_and_creates_nothing(tmp_path):
    with pytest.raises(store.StoreError, match="no DuckDB file at .*run `dq-pipeline audit` first"):
        store.read_latest(tmp_path / "none" / "c.duckdb", "curated_labels", "ds")
    assert not (tmp_path / "none").exists()


# --------------------------------------------------------------------------- read-only files, folders, mounts

@contextmanager
def _shared_tmp():
    """A folder other users can enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="dq_store_ro_"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o777) if p.is_dir() else p.chmod(0o666)
        shutil.rmtree(folder)


CHECK = """
import sys
from dq_pipeline import store
try:
    store.check_writable(sys.argv[1])
    print("WRITABLE")
except store.StoreError as exc:
    print("REFUSED:", exc)
"""


def _check_unprivileged(path: Path) -> str:
    """check_writable as an ordinary user (root ignores file modes: drop to nobody when root)."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot test file modes")
        prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    out = _python(CHECK, str(path), prefix=prefix)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_read_only_file_and_read_only_folder_are_refused_before_any_work():
    with _shared_tmp() as folder:
        db = folder / "c.duckdb"
        store.write_audit(db, _run("r1"), _tables([["a"], []]))
        db.chmod(0o444)
        folder.chmod(0o777)
        assert "REFUSED:" in (out := _check_unprivileged(db)) and "is read-only (mode -r--r--r--" in out
        db.chmod(0o666)
        folder.chmod(0o755)  # the file is writable, its folder is not: DuckDB's commit would fail on the .wal
        out = _check_unprivileged(db)
        assert "is in a read-only folder" in out and "c.duckdb.wal" in out
        out = _check_unprivileged(folder / "new.duckdb")
        assert "cannot create" in out and "is read-only" in out
        folder.chmod(0o777)
        assert _check_unprivileged(db).startswith("WRITABLE")


@pytest.mark.skipif(not _can("unshare", "-rm", "true"), reason="needs user+mount namespaces (unshare -rm)")
def test_read_only_file_system_is_refused(tmp_path):
    db = tmp_path / "ro" / "c.duckdb"
    store.write_audit(db, _run("r1"), _tables([["a"], []]))
    mount = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" -c "$3" "$4"'
    out = subprocess.run(["unshare", "-rm", "sh", "-c", mount, "sh", str(db.parent), sys.executable,
                          textwrap.dedent(CHECK), str(db)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "REFUSED:" in out.stdout and "read-only file system" in out.stdout, out.stdout + out.stderr


# --------------------------------------------------------------------------- locked by another process

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "reader")
print("holding", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("holder", ["writer", "reader"])
def test_lock_held_by_another_process_names_it(tmp_path, holder):
    db = tmp_path / "c.duckdb"
    store.write_audit(db, _run("r1"), _tables([["a"], []]))
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db), holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        for attempt in (lambda: store.check_writable(db, timeout_s=0.5),
                        lambda: store.connect(db, timeout_s=0.5).__enter__()):
            with pytest.raises(store.StoreError) as info:
                attempt()
            message = str(info.value)
            assert f"is locked by process {proc.pid} (" in message and "python" in message.lower()
            assert "close that connection" in message.lower() and "--db" in message
    finally:
        proc.kill()
        proc.wait()
    store.check_writable(db, timeout_s=5)  # released: fine again


# --------------------------------------------------------------------------- errors inside the write

def test_wrong_column_type_mid_transaction_surfaces_the_original_error(db_path):
    store.write_audit(db_path, _run("r1"), _tables([["a"], []]))
    bad = _tables([["x"], ["y"]])
    bad["examples"]["label_quality"] = ["not a number", "x"]
    with pytest.raises(store.StoreError) as info:
        store.write_audit(db_path, _run("r2", 5), bad)
    assert "Could not convert string 'not a number'" in str(info.value)
    assert "no transaction is active" not in str(info.value) and "aborted" not in str(info.value)
    assert store.read_latest(db_path, "audit_runs")["run_id"].tolist() == ["r1"]


def test_failed_commit_is_reported_not_the_failed_rollback(db_path, monkeypatch):
    """DuckDB ends the transaction itself when COMMIT fails (full disk); the ROLLBACK that follows fails
    with 'no transaction is active', which must not replace the COMMIT's error."""
    store.write_audit(db_path, _run("r1"), _tables([["a"], []]))
    real_connect = store.connect

    class FullDisk:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql == "COMMIT":
                self.con.execute("ROLLBACK")  # what DuckDB does on a failed commit
                raise duckdb.IOException('IO Error: Could not write file "x.wal": No space left on device')
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    @contextmanager
    def connect(path, read_only=False, timeout_s=60.0):
        with real_connect(path, read_only, timeout_s) as con:
            yield FullDisk(con)

    monkeypatch.setattr(store, "connect", connect)
    with pytest.raises(store.StoreError, match="No space left on device") as info:
        store.write_audit(db_path, _run("r2", 5), _tables([["b"], ["c"]]))
    assert "no transaction is active" not in str(info.value)
    assert any("no transaction is active" in note for note in info.value.__cause__.__notes__)
    monkeypatch.undo()
    assert store.read_latest(db_path, "audit_runs")["run_id"].tolist() == ["r1"]


FILL = """
import sys
from datetime import datetime
import pandas as pd
from dq_pipeline import store

db, n, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def run(run_id, n, minute):
    return {"run_id": run_id, "dataset": "ds", "started_at": datetime(2026, 1, 1),
            "finished_at": datetime(2026, 1, 1, 0, minute), "status": "success", "n_input_rows": n}
def tables(n):
    ids = [f"example-{i:07d}-" + "p" * 40 for i in range(n)]
    return {"examples": pd.DataFrame({"example_id": ids, "given_labels": [["a", "b"]] * n,
                                      "payload": ["q" * width] * n})}
store.write_audit(db, run("r1", 2, 0), tables(2))
try:
    store.write_audit(db, run("r2", n, 1), tables(n))
    print("WRITTEN")
except store.StoreError as exc:
    print("ERROR:", exc)
print("LATEST:", store.read_latest(db, "audit_runs")["run_id"].tolist())
"""


@pytest.mark.skipif(not _can("unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"),
                    reason="needs user+mount namespaces to mount a tiny tmpfs")
@pytest.mark.parametrize("rows, width, where", [(20_000, 10, "commit"), (200_000, 60, "insert")])
def test_full_disk_reports_no_space_left(tmp_path, rows, width, where):
    """A real 1 MiB file system: the audit fails in COMMIT (the WAL) or in INSERT (DuckDB writes big
    inserts to the file directly); either way 'No space left on device' is what the user reads."""
    mount = 'mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" -c "$3" "$1/c.duckdb" "$4" "$5"'
    (tmp_path / "fs").mkdir()
    out = subprocess.run(["unshare", "-rm", "sh", "-c", mount, "sh", str(tmp_path / "fs"), sys.executable,
                          textwrap.dedent(FILL), str(rows), str(width)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "ERROR:" in out.stdout, out.stdout + out.stderr
    error = out.stdout.split("ERROR:")[1].split("\n")[0]
    assert "No space left on device" in error and "was not written" in error
    assert "no transaction is active" not in error and "Current transaction is aborted" not in error
    assert ("Failed to commit" in error) == (where == "commit")
    assert "LATEST: ['r1']" in out.stdout


# --------------------------------------------------------------------------- nothing lost, in the transaction

def test_audit_losing_rows_is_rolled_back_and_never_becomes_latest(db_path):
    store.write_audit(db_path, _run("r1"), _tables([["a"], []]))
    with pytest.raises(store.NothingLostError, match=r"5 input rows != 2 examples \+ 1 quarantined \(\+2 rows"):
        tables = _tables([["b"], ["c"]])
        tables["quarantine"] = pd.DataFrame({"row_number": [2], "example_id": [None], "reason": ["empty id"]})
        store.write_audit(db_path, _run("r2", 5, n=5), tables)
    assert store.read_latest(db_path, "audit_runs")["run_id"].tolist() == ["r1"]
    with duckdb.connect(db_path, read_only=True) as con:
        for table in store.TABLES:
            assert con.execute(f"SELECT count(*) FROM {table} WHERE run_id = 'r2'").fetchone()[0] == 0
    tables = _tables([["b"], ["c"]])  # 3 input rows = 2 examples + 1 quarantined: written
    tables["quarantine"] = pd.DataFrame({"row_number": [2], "example_id": [None], "reason": ["empty id"]})
    store.write_audit(db_path, _run("r3", 9, n=3), tables)
    assert store.read_latest(db_path, "audit_runs")["run_id"].tolist() == ["r3"]


def test_write_requires_the_input_row_count(db_path):
    run = _run("r1")
    del run["n_input_rows"]
    with pytest.raises(ValueError, match="n_input_rows"):
        store.write_audit(db_path, run, _tables([["a"]]))


# --------------------------------------------------------------------------- the previous schema (v1)

#: The schema as the hash-versioned store (git HEAD before versioned migrations) created it, verbatim.
V1_TABLES = {
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
V1_LATEST_RUNS = """CREATE OR REPLACE VIEW latest_audit_runs AS
           SELECT * FROM audit_runs WHERE status = 'success'
           QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY finished_at DESC, run_id DESC) = 1"""
V1_LATEST_TABLE = """CREATE OR REPLACE VIEW latest_{name} AS
                    SELECT t.* FROM {name} t JOIN latest_audit_runs r USING (dataset, run_id)"""


def _v1_file(path: Path, drop_columns: dict[str, list[str]] | None = None) -> None:
    """A file as the previous code wrote it: tables, views, the hash comment, one audit of 'old'."""
    with duckdb.connect(str(path)) as con:
        for name, ddl in V1_TABLES.items():
            columns = [c for c in ddl.split(",") if c.split()[0] not in (drop_columns or {}).get(name, [])]
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({','.join(columns)})")
        con.execute(V1_LATEST_RUNS)
        for name in V1_TABLES:
            if name != "audit_runs":
                con.execute(V1_LATEST_TABLE.format(name=name))
        con.execute("COMMENT ON TABLE audit_runs IS 'dq_pipeline schema 5f0c2a9e41d7b3c8'")
        con.execute("INSERT INTO audit_runs (run_id, dataset, started_at, finished_at, status, n_examples, config) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", ["r-old", "old", datetime(2025, 6, 1), datetime(2025, 6, 1),
                                                     "success", 1, "{}"])
        con.execute("INSERT INTO curated_labels VALUES (?, ?, ?, ?, ?, ?)",
                    ["old", "r-old", "0", ["x", "y"], False, ""])


def test_previous_schema_file_is_migrated_and_old_audits_stay_readable(tmp_path):
    db = tmp_path / "v1.duckdb"
    _v1_file(db)
    before = store.read_latest(db, "audit_runs")  # a read migrates a writable file first
    assert before["run_id"].tolist() == ["r-old"] and before["source_sha256"].isna().all()
    store.write_audit(db, _run("r-new", dataset="new", n=1, source_sha256="ab" * 32), _tables([["z"]]))
    runs = store.read_latest(db, "audit_runs").set_index("dataset")
    assert runs.loc["old", "run_id"] == "r-old" and pd.isna(runs.loc["old", "source_sha256"])
    assert runs.loc["new", "run_id"] == "r-new" and runs.loc["new", "source_sha256"] == "ab" * 32
    labels = store.read_latest(db, "curated_labels").set_index("dataset")["labels"]
    assert labels["old"] == ["x", "y"] and labels["new"] == ["z"]
    with duckdb.connect(str(db), read_only=True) as con:
        versions = con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert versions == [(m.version,) for m in store.MIGRATIONS]
        comment = con.execute("SELECT comment FROM duckdb_columns() WHERE table_name = 'audit_runs' "
                              "AND column_name = 'source_sha256'").fetchone()[0]
        assert "sha256" in comment
    store.write_audit(db, _run("r-old-2", 9, dataset="old", n=1, source_sha256="cd" * 32), _tables([["x"]]))
    assert store.read_latest(db, "audit_runs", "old")["run_id"].tolist() == ["r-old-2"]


def test_file_from_before_a_column_existed_is_healed(tmp_path):
    """The hash-versioned store never added columns to existing tables, so every later write failed."""
    db = tmp_path / "older.duckdb"
    _v1_file(db, drop_columns={"audit_runs": ["n_input_rows"], "examples": ["payload", "borderline_tags"]})
    store.write_audit(db, _run("r1", dataset="new", n=1), {**_tables([["z"]]), "examples": pd.DataFrame(
        {"example_id": ["0"], "given_labels": [["z"]], "payload": ["text"], "borderline_tags": [["q"]]})})
    latest = store.read_latest(db, "examples", "new")
    assert latest["payload"].tolist() == ["text"] and latest["borderline_tags"].tolist() == [["q"]]
    assert store.read_latest(db, "audit_runs", "new")["n_input_rows"].tolist() == [1]


def test_old_file_that_cannot_be_migrated_now_is_still_read(tmp_path):
    db = tmp_path / "v1.duckdb"
    _v1_file(db)
    holder = duckdb.connect(str(db), read_only=True)  # another read-only user: migration is skipped
    try:
        assert store.read_latest(db, "curated_labels", "old")["labels"].tolist() == [["x", "y"]]
    finally:
        holder.close()


def test_connections_in_this_process_in_the_other_mode(db_path):
    store.write_audit(db_path, _run("r1"), _tables([["a"], []]))
    with store.connect(db_path) as writer:  # a read while this process holds a read-write connection
        assert store.read_latest(db_path, "audit_runs")["run_id"].tolist() == ["r1"]
        writer.execute("SELECT 1").fetchall()
    reader = duckdb.connect(db_path, read_only=True)
    try:  # a write while this process holds a read-only connection: named, not DuckDB's bare error
        with pytest.raises(store.StoreError, match="already open in this process in read-only mode"):
            store.write_audit(db_path, _run("r2", 5), _tables([["b"]]))
    finally:
        reader.close()


def test_file_from_a_newer_schema_version_is_left_as_it_is(db_path):
    store.write_audit(db_path, _run("r1"), _tables([["a"], []]))
    with duckdb.connect(db_path) as con:
        con.execute("INSERT INTO schema_version VALUES (?, ?, NULL)", [store.SCHEMA_VERSION + 7, "future"])
        con.execute("ALTER TABLE audit_runs ADD COLUMN future_column VARCHAR")
    store.write_audit(db_path, _run("r2", 5), _tables([["b"], []]))
    assert store.read_latest(db_path, "audit_runs")["run_id"].tolist() == ["r2"]
    with duckdb.connect(db_path, read_only=True) as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == store.SCHEMA_VERSION + 7
