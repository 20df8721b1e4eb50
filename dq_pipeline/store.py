"""The curated DuckDB store: versioned schema, one-transaction audit writes, ``latest_*`` views, reads.

Default file ``data/curated.duckdb`` (override with ``DQ_DUCKDB_PATH``). Every audit table carries
``dataset`` and ``run_id``; ``latest_<table>`` views show the latest successful audit per dataset.
An audit's rows are written in one transaction that also checks *input rows = examples + quarantined*
before it commits, so a failed or incomplete write leaves the previous audit the latest.

Schema versions: table ``schema_version`` holds one row per applied migration; :data:`MIGRATIONS` is
the ordered list, each applied once, in its own transaction, when a read-write connection finds the
file behind. Version 1 is the baseline (the tables of the hash-versioned store; files written before
versions existed are brought to it, missing columns added); later versions only add (columns, tables).
Version 3 adds the append-only ``reviews`` table (human decisions; :mod:`dq_pipeline.review`) and makes
``latest_examples`` join each example with its latest review decision (``review_action``,
``reviewed_labels``, ``is_open_issue``, ``reopened_reason``), so a decision shows without a re-audit.
Version 4 adds ``label_rules`` (the label structure learned from each audit's tags: exclusive groups,
cardinality bounds, implications; :mod:`dq_pipeline.rules`), ``examples.is_rule_violation`` /
``rule_violations`` and ``audit_runs.expected_error_rate`` with its interval (``_lo``, ``_hi``).

Errors opening the file (a folder, not a DuckDB file, damaged, read-only, locked by another process)
raise :class:`StoreError` naming the path, the cause and what to do.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_DB_PATH = "data/curated.duckdb"


class StoreError(RuntimeError):
    """The DuckDB file cannot be used, or an audit write was refused; the message says why and what to do."""


class NothingLostError(StoreError):
    """An audit's input rows != its examples + quarantined rows; it was rolled back, not written."""


#: Schema version 1 (the baseline): the audit tables exactly as the hash-versioned store created them.
#: Never edit these: change the schema by appending a :class:`Migration` to :data:`MIGRATIONS`.
BASELINE_TABLES: dict[str, str] = {
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

#: The audit tables (each keyed by dataset + run_id); every one but ``audit_runs`` has a
#: ``latest_<table>`` view joined on the latest successful audit run.
TABLES: tuple[str, ...] = tuple(BASELINE_TABLES)

COMMENTS = {
    ("class_summary", "missing_rate"): "n_missing / (examples not carrying the tag); NULL if none",
    ("class_summary", "incorrect_rate"): "n_incorrect / n_given (examples carrying the tag); NULL if none",
    ("class_summary", "n_given"): "examples of this audit carrying the tag",
    ("examples", "label_quality"): "0-1, low = labels likely wrong",
    ("examples", "ambiguity"): "0-1, low = ambiguous",
    ("examples", "outlier_score"): "0-1, low = outlier",
    ("audit_runs", "health_score"): "fraction of examples with no issue flag (0-1, high = healthy)",
}


#: Table ``reviews`` (version 3): one row per human decision, append-only; the latest row per
#: (dataset, example_id) is the decision. It is valid for an audit while the example's content_key and
#: given tags equal the ones recorded here.
REVIEWS_DDL = """
    dataset VARCHAR NOT NULL, example_id VARCHAR NOT NULL, action VARCHAR NOT NULL, labels VARCHAR[],
    run_id VARCHAR, content_key VARCHAR, given_labels VARCHAR[], reviewed_at TIMESTAMP, reviewer VARCHAR"""

#: Column comments added by version 3 (health_score's is restated: it counts open issues from v3 on).
COMMENTS_V3 = {
    ("examples", "content_key"): "sha256 of the example's content (text; image file bytes; tabular raw "
                                 "feature values as canonical JSON); a review stays valid while it is unchanged",
    ("examples", "payload"): "what a person judges: the full text, the image path relative to the dataset "
                             "folder, or a JSON object of the tabular row's raw feature values",
    ("audit_runs", "folder"): "absolute path of the dataset folder audited (images are served only from inside it)",
    ("audit_runs", "n_open_issues"): "examples flagged by a detector with no valid review decision",
    ("audit_runs", "health_score"): "fraction of examples with no open issue (no detector flag, or a valid "
                                    "review decision); 0-1, high = healthy",
    ("reviews", "action"): "accept (the suggested tags) | keep (the given tags) | exclude (drop the example) | "
                           "set (the labels given)",
    ("reviews", "labels"): "the tags decided ([] for exclude)",
    ("reviews", "run_id"): "the audit the reviewer saw",
    ("reviews", "content_key"): "examples.content_key when reviewed",
    ("reviews", "given_labels"): "the example's given tags when reviewed",
}


#: Table ``label_rules`` (version 4): one row per rule learned from an audit's given tags
#: (:mod:`dq_pipeline.rules`).
LABEL_RULES_DDL = """
    dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, rule_type VARCHAR NOT NULL, rule VARCHAR,
    tags VARCHAR[], support BIGINT, confidence DOUBLE, n_violations BIGINT"""

#: Audit tables added after the baseline (name -> DDL); each has a ``latest_<table>`` view once it exists.
ADDED_TABLES: dict[str, str] = {"label_rules": LABEL_RULES_DDL}

#: Column comments added by version 4.
COMMENTS_V4 = {
    ("label_rules", "rule_type"): "exclusive_group (exactly one of the tags) | min_tags | max_tags | "
                                  "implication (first tag => second tag)",
    ("label_rules", "support"): "examples the rule applies to when learned",
    ("label_rules", "confidence"): "share of those examples obeying it when learned (0-1)",
    ("label_rules", "n_violations"): "examples of this audit whose given tags break the rule",
    ("audit_runs", "expected_error_rate"): "estimated share of examples with at least one wrong tag (0-1)",
    ("audit_runs", "expected_error_rate_lo"): "lower end of its 90% bootstrap interval",
    ("audit_runs", "expected_error_rate_hi"): "upper end of its 90% bootstrap interval",
    ("audit_runs", "n_rule_violations"): "examples whose given tags break a learned label rule",
    ("examples", "is_rule_violation"): "the given tags break a learned label rule (table label_rules)",
    ("examples", "rule_violations"): "the rules broken, as text",
}


def _columns(ddl: str) -> list[tuple[str, str]]:
    """``"a VARCHAR NOT NULL, b DOUBLE"`` -> ``[("a", "VARCHAR"), ("b", "DOUBLE")]`` (no commas in types)."""
    out = []
    for part in ddl.split(","):
        name, typ = part.split(None, 1)
        out.append((name, re.sub(r"\s+NOT\s+NULL\s*$", "", typ.strip(), flags=re.I)))
    return out


def _literal(text: str) -> str:
    """A SQL string literal for a *code constant* (DDL such as COMMENT ON takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _comment(table: str, column: str, text: str) -> str:
    return f"COMMENT ON COLUMN {table}.{column} IS {_literal(text)}"


@dataclass(frozen=True)
class Migration:
    """One schema step: ``statements`` run in one transaction, then ``version`` is recorded."""

    version: int
    description: str
    statements: tuple[str, ...]


def _baseline() -> tuple[str, ...]:
    statements = [f"CREATE TABLE IF NOT EXISTS {name} ({ddl})" for name, ddl in BASELINE_TABLES.items()]
    for name, ddl in BASELINE_TABLES.items():  # a file from before versions may lack later columns
        statements += [f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {col} {typ}" for col, typ in _columns(ddl)]
    statements += [_comment(t, c, text) for (t, c), text in COMMENTS.items()]
    statements.append(f"COMMENT ON TABLE audit_runs IS {_literal('one row per audit; schema version: table schema_version')}")
    return tuple(statements)


#: Ordered schema migrations; append only (never edit or reorder an applied one).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: audit tables, column comments, latest_* views", _baseline()),
    Migration(2, "audit_runs.source_sha256: sha256 of the source file the audit read", (
        "ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS source_sha256 VARCHAR",
        _comment("audit_runs", "source_sha256",
                 "sha256 (hex) of the source file bytes the audit read; export refuses when the file differs"),
    )),
    Migration(3, "reviews (human decisions); examples.content_key; audit_runs.folder, n_open_issues; "
                 "latest_examples gains review_action, reviewed_labels, is_open_issue, reopened_reason", (
        f"CREATE TABLE IF NOT EXISTS reviews ({REVIEWS_DDL})",
        "ALTER TABLE examples ADD COLUMN IF NOT EXISTS content_key VARCHAR",
        "ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS folder VARCHAR",
        "ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS n_open_issues BIGINT",
        *(_comment(t, c, text) for (t, c), text in COMMENTS_V3.items()),
        "COMMENT ON TABLE reviews IS "
        + _literal("append-only human decisions; the latest row per (dataset, example_id) is the decision"),
    )),
    Migration(4, "label_rules (learned label structure); audit_runs.expected_error_rate (+ interval), "
                 "n_rule_violations; examples.is_rule_violation, rule_violations", (
        f"CREATE TABLE IF NOT EXISTS label_rules ({LABEL_RULES_DDL})",
        "ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS expected_error_rate DOUBLE",
        "ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS expected_error_rate_lo DOUBLE",
        "ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS expected_error_rate_hi DOUBLE",
        "ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS n_rule_violations BIGINT",
        "ALTER TABLE examples ADD COLUMN IF NOT EXISTS is_rule_violation BOOLEAN",
        "ALTER TABLE examples ADD COLUMN IF NOT EXISTS rule_violations VARCHAR[]",
        *(_comment(t, c, text) for (t, c), text in COMMENTS_V4.items()),
    )),
)

#: Version 5 (audit history, :mod:`dq_pipeline.history`): table ``audit_changes`` — one row per (example,
#: issue type) whose open/closed state differs from, or stays open since, the previous successful audit of
#: the dataset; table ``example_changes`` — examples added, removed or edited since that audit;
#: ``audit_runs`` gains the diff counts, open issues per type and whether old detail was pruned;
#: ``examples.decided_action`` records the valid review decision the audit applied.
AUDIT_CHANGES_DDL = """
    dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, previous_run_id VARCHAR, example_id VARCHAR NOT NULL,
    issue_type VARCHAR NOT NULL, change VARCHAR NOT NULL, reason VARCHAR, detail VARCHAR"""
EXAMPLE_CHANGES_DDL = """
    dataset VARCHAR NOT NULL, run_id VARCHAR NOT NULL, previous_run_id VARCHAR, example_id VARCHAR NOT NULL,
    change VARCHAR NOT NULL, content_changed BOOLEAN, tags_changed BOOLEAN, previous_labels VARCHAR[],
    given_labels VARCHAR[]"""
HISTORY_RUN_COLUMNS = """
    previous_run_id VARCHAR, n_new BIGINT, n_resolved BIGINT, n_persisting BIGINT, n_reopened BIGINT,
    n_added BIGINT, n_removed BIGINT, n_edited BIGINT, n_open_label_issues BIGINT, n_open_ambiguous BIGINT,
    n_open_outliers BIGINT, n_open_near_duplicates BIGINT, detail_pruned BOOLEAN"""
COMMENTS_V5 = {
    ("audit_changes", "change"): "new | resolved | persisting | reopened, against previous_run_id (the previous "
                                 "successful audit of the dataset); see README 'Audit history'",
    ("audit_changes", "reason"): "data changed | tags changed | model changed | reviewed (NULL for persisting)",
    ("audit_changes", "issue_type"): "label_issue | ambiguous | outlier | near_duplicate",
    ("example_changes", "change"): "added | removed | edited (content or given tags) since previous_run_id",
    ("audit_runs", "previous_run_id"): "the previous successful audit of the dataset the diff compares with "
                                       "(NULL for the first audit: no diff, counts NULL)",
    ("audit_runs", "n_new"): "audit_changes rows of this audit with change = 'new' ((example, issue type) pairs)",
    ("audit_runs", "n_added"): "examples whose id is new since the previous audit",
    ("audit_runs", "n_edited"): "examples whose content_key or given tags changed since the previous audit",
    ("audit_runs", "detail_pruned"): "true when this audit's per-example rows were deleted by retention "
                                     "(history_keep_audits); its audit_runs row, class_summary and "
                                     "tag_confusions are kept",
    ("examples", "decided_action"): "the valid review decision this audit applied (accept/keep/exclude/set), "
                                    "NULL if none; such an example has no open issue",
}
HISTORY_MIGRATION = Migration(5, "audit history: audit_changes, example_changes, audit_runs diff counts, "
                                 "examples.decided_action", (
    f"CREATE TABLE IF NOT EXISTS audit_changes ({AUDIT_CHANGES_DDL})",
    f"CREATE TABLE IF NOT EXISTS example_changes ({EXAMPLE_CHANGES_DDL})",
    *(f"ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS {c} {t}" for c, t in _columns(HISTORY_RUN_COLUMNS)),
    "ALTER TABLE examples ADD COLUMN IF NOT EXISTS decided_action VARCHAR",
    *(_comment(t, c, text) for (t, c), text in COMMENTS_V5.items()),
))
MIGRATIONS = MIGRATIONS + (HISTORY_MIGRATION,)
TABLES = TABLES + ("audit_changes", "example_changes")
#: Version 6: why an outlier was flagged — ``examples.outlier_reason`` ('knn_distance': far from its nearest
#: neighbours; 'pieces_per_word': a text its embedder's tokenizer cannot read as words; NULL when not an outlier).
OUTLIER_REASON_MIGRATION = Migration(6, "examples.outlier_reason: what flagged an outlier", (
    "ALTER TABLE examples ADD COLUMN IF NOT EXISTS outlier_reason VARCHAR",
    _comment("examples", "outlier_reason", "why is_outlier: knn_distance (far from its nearest neighbours) | "
                                           "pieces_per_word (a text the tokenizer cannot read as words); NULL if "
                                           "not an outlier"),
))
MIGRATIONS = MIGRATIONS + (OUTLIER_REASON_MIGRATION,)
#: Per-example tables whose rows retention deletes for audits older than the last N (``prune_history``);
#: the others (audit_runs, class_summary, tag_confusions) are summaries, kept forever.
DETAIL_TABLES: tuple[str, ...] = ("examples", "tag_issues", "predictions", "duplicate_groups", "quarantine",
                                  "curated_labels", "audit_changes", "example_changes")

SCHEMA_VERSION = MIGRATIONS[-1].version

_LATEST_RUNS_SQL = """CREATE OR REPLACE VIEW latest_audit_runs AS
           SELECT * FROM audit_runs WHERE status = 'success'
           QUALIFY row_number() OVER (PARTITION BY dataset ORDER BY finished_at DESC, run_id DESC) = 1"""
_LATEST_TABLE_SQL = """CREATE OR REPLACE VIEW latest_{name} AS
                    SELECT t.* FROM {name} t JOIN latest_audit_runs r USING (dataset, run_id)"""


def default_db_path() -> str:
    """``$DQ_DUCKDB_PATH`` or ``data/curated.duckdb``."""
    return os.environ.get("DQ_DUCKDB_PATH", DEFAULT_DB_PATH)


# --------------------------------------------------------------------------------------- opening

_LOCK_RE = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")


def _is_lock_error(exc: BaseException) -> bool:
    return "Could not set lock" in str(exc) or "Conflicting lock" in str(exc)


def _process(pid: str, exe: str) -> str:
    """What a lock holder runs: its command line when readable (Linux /proc), else its executable."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        cmd = " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    except OSError:
        cmd = ""
    cmd = cmd or exe or "unknown program"
    return cmd if len(cmd) <= 160 else cmd[:157] + "..."


def _explain(path: Path, exc: BaseException, read_only: bool) -> StoreError:
    """Turn DuckDB's / the OS's error about ``path`` into a StoreError saying what to do."""
    msg = str(exc)
    lock = _LOCK_RE.search(msg)
    if lock:
        return StoreError(
            f"{path} is locked by process {lock['pid']} ({_process(lock['pid'], lock['exe'])}): DuckDB "
            "allows one writer, or readers only. Close that connection (or stop that process) and retry, "
            "or pass --db (or set DQ_DUCKDB_PATH) to use another file")
    if _is_lock_error(exc):
        return StoreError(f"{path} is locked by another process ({msg}); close it or pass --db")
    if "different configuration" in msg:
        return StoreError(
            f"{path} is already open in this process in {'read-write' if read_only else 'read-only'} mode; "
            "close that connection first")
    if "Is a directory" in msg or path.is_dir():
        return StoreError(f"{path} is a directory, not a DuckDB file; pass a file path such as "
                          f"{path / 'curated.duckdb'}")
    if "not a valid DuckDB database file" in msg:
        return StoreError(f"{path} exists but is not a DuckDB database file; move it away or pass --db "
                          "with another path")
    if "Could not read enough bytes" in msg or "Corrupt database file" in msg or "checksum" in msg.lower():
        return StoreError(f"{path} is damaged (truncated or corrupt: {msg}); restore it from a backup, or "
                          "move it away so that the next audit starts a new file")
    if "database does not exist" in msg or (read_only and not path.exists()):
        return StoreError(f"no DuckDB file at {path}: run `dq-pipeline audit` first, or pass --db (or set "
                          "DQ_DUCKDB_PATH) to the file the audits wrote")
    if "Read-only file system" in msg:
        return StoreError(f"{path} is on a read-only file system; pass --db with a writable path")
    if "Permission denied" in msg:
        return StoreError(f"{path}: permission denied ({msg}); DuckDB needs read-write access to the file "
                          "and to its folder (for the .wal file beside it)")
    if "No such file or directory" in msg:
        return StoreError(f"{path}: folder {path.parent} does not exist")
    if "No space left on device" in msg:
        return StoreError(f"{path}: no space left on device ({msg})")
    return StoreError(f"{path}: cannot open the DuckDB file: {msg}")


def _path(db_path: str | Path) -> Path:
    text = str(db_path)
    if not text.strip() or text.startswith(":memory:"):
        raise StoreError(f"{text!r} is not a file path (DuckDB would keep the audit in memory only); pass "
                         "--db FILE or set DQ_DUCKDB_PATH")
    return Path(db_path)


def _open(path: Path, read_only: bool, timeout_s: float) -> Any:
    """``duckdb.connect`` retrying while another process holds the lock; StoreError when it cannot."""
    import duckdb

    if read_only and not path.exists():
        raise _explain(path, FileNotFoundError(str(path)), read_only)
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {path}: {exc.strerror or exc} "
                             f"({exc.filename or path.parent})") from exc
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if _is_lock_error(exc) and time.monotonic() < deadline:
                time.sleep(0.25)
                continue
            if read_only and "different configuration" in str(exc):
                # this process holds a read-write connection: share it (DuckDB allows one config per file)
                return _open(path, False, timeout_s)
            raise _explain(path, exc, read_only) from exc


def _close(con: Any, exc: BaseException | None) -> None:
    """Close ``con``; while ``exc`` propagates, a failing close only adds a note to it (never hides it)."""
    try:
        con.close()
    except Exception as close_exc:
        if exc is None:
            raise
        exc.add_note(f"(closing the DuckDB connection then failed too: {close_exc})")


@contextmanager
def connect(db_path: str | Path, read_only: bool = False, timeout_s: float = 60.0) -> Iterator[Any]:
    """Open the DuckDB file, retrying up to ``timeout_s`` while another process holds its lock.

    Read-write: creates the file (and its folders) if needed and applies pending :data:`MIGRATIONS`.
    Read-only: the file must exist; one behind the code's schema version is migrated first through a
    short read-write connection when the file is writable. Raises :class:`StoreError` (naming the
    path, the cause — e.g. the process holding the lock — and what to do) when the file cannot be used.
    """
    import duckdb

    path = _path(db_path)
    if read_only:
        con = _open(path, True, timeout_s)
        try:
            behind = _version(con) < SCHEMA_VERSION
        except duckdb.Error as exc:
            _close(con, exc)
            raise _explain(path, exc, True) from exc
        if behind and os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
            con.close()
            try:  # migrate through a short read-write connection; if it cannot, read the file as it is
                with connect(path, read_only=False, timeout_s=min(timeout_s, 2.0)):
                    pass
            except StoreError:
                pass
            con = _open(path, True, timeout_s)
    else:
        con = _open(path, False, timeout_s)
        try:
            ensure_schema(con)
        except BaseException as exc:
            _close(con, exc)
            if isinstance(exc, duckdb.Error):
                raise _explain(path, exc, False) from exc
            raise
    try:
        yield con
    except BaseException as exc:
        _close(con, exc)
        raise
    _close(con, None)


def check_writable(db_path: str | Path, timeout_s: float = 10.0) -> None:
    """Raise :class:`StoreError` unless an audit can be written to ``db_path`` — call it before computing.

    Refused: an empty or in-memory path; a directory, device or dangling link; a path whose nearest
    existing folder is a file or not writable; a read-only file, or a file in a read-only folder (DuckDB
    writes ``<file>.wal`` beside it); a file that is not DuckDB or is damaged; a file locked by another
    process for longer than ``timeout_s`` (the message names its PID and command line). An existing
    file is opened read-write once (bringing its schema up to date); a missing one is not created.
    """
    path = _path(db_path)
    if path.is_symlink() and not path.exists():
        raise StoreError(f"{path} is a dangling symbolic link (to {os.readlink(path)}); fix or remove it")
    if path.is_dir():
        raise _explain(path, IsADirectoryError(str(path)), False)
    if path.exists():
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise StoreError(f"{path} is not a regular file (a device, pipe or socket); pass --db with a "
                             "file path")
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"{path} is read-only ({_why_read_only(path)}); make it writable or pass --db "
                             "with another file")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise StoreError(f"{path} is in a read-only folder {path.parent} ({_why_read_only(path.parent)}); "
                             f"DuckDB needs to create {path.name}.wal beside it: make the folder writable or "
                             "pass --db with another file")
        with connect(path, timeout_s=timeout_s) as con:
            try:
                con.execute("SELECT count(run_id), max(finished_at) FROM audit_runs").fetchall()
            except Exception as exc:
                raise _explain(path, exc, False) from exc
        return
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise StoreError(f"cannot create {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"cannot create {path}: folder {ancestor} is read-only ({_why_read_only(ancestor)}); "
                         "pass --db with a writable path")


def _why_read_only(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
        st = path.stat()
    except OSError as exc:
        return exc.strerror or str(exc)
    return f"mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid}, this process runs as uid {os.geteuid()}"


# --------------------------------------------------------------------------------------- schema

def _version(con: Any) -> int:
    """The file's schema version: max of ``schema_version``; 0 for a new file or one from before versions."""
    found = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?",
        ["schema_version"]).fetchall()}
    if not found:
        return 0
    return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])


def ensure_schema(con: Any) -> None:
    """Apply the pending :data:`MIGRATIONS` (each once, in its own transaction, with the views).

    A file at the current version is left untouched (one catalog query, no writes). A file from a newer
    code version is left as it is (later versions only add columns and tables).
    """
    if _version(con) >= SCHEMA_VERSION:
        return
    for migration in MIGRATIONS:
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                        "description VARCHAR, applied_at TIMESTAMP)")
            if _version(con) >= migration.version:  # applied meanwhile, or earlier
                con.execute("COMMIT")
                continue
            for statement in migration.statements:
                con.execute(statement)
            _create_views(con)
            con.execute("INSERT INTO schema_version VALUES (?, ?, current_timestamp::TIMESTAMP)",
                        [migration.version, migration.description])
            con.execute("COMMIT")
        except BaseException as exc:
            _rollback(con, exc)
            raise


#: Latest review per (dataset, example_id), every row (valid or not); ties on reviewed_at: the later row.
_LATEST_REVIEWS_SQL = """CREATE OR REPLACE VIEW latest_reviews AS
           SELECT * FROM reviews
           QUALIFY row_number() OVER (PARTITION BY dataset, example_id ORDER BY reviewed_at DESC, rowid DESC) = 1"""

#: ``latest_examples`` from version 3: the latest audit's examples with the latest review decision.
#: A decision is valid while its content_key and given tags (as a set) equal the example's; else the
#: example is re-opened (``reopened_reason``). Open issue = any detector flag and no valid decision.
_LATEST_EXAMPLES_SQL = """CREATE OR REPLACE VIEW latest_examples AS
    SELECT * EXCLUDE (_valid, _reviewed, _action, _content_changed),
           CASE WHEN _valid THEN _action END AS review_action,
           CASE WHEN _valid THEN _reviewed END AS reviewed_labels,
           (coalesce(is_label_issue, false) OR coalesce(is_ambiguous, false) OR coalesce(is_outlier, false)
            OR coalesce(is_near_duplicate, false)) AND NOT _valid AS is_open_issue,
           CASE WHEN _action IS NULL OR _valid THEN NULL
                WHEN _content_changed THEN 'content changed since review'
                ELSE 'given tags changed since review' END AS reopened_reason
    FROM (
        SELECT e.*, r.action AS _action, r.labels AS _reviewed,
               (r.content_key IS DISTINCT FROM e.content_key OR e.content_key IS NULL) AS _content_changed,
               coalesce(r.action IS NOT NULL AND r.content_key = e.content_key
                        AND list_sort(list_distinct(coalesce(r.given_labels, [])))
                            = list_sort(list_distinct(coalesce(e.given_labels, []))), false) AS _valid
        FROM examples e
        JOIN latest_audit_runs a ON a.dataset = e.dataset AND a.run_id = e.run_id
        LEFT JOIN latest_reviews r ON r.dataset = e.dataset AND r.example_id = e.example_id
    ) t"""


def _create_views(con: Any) -> None:
    con.execute(_LATEST_RUNS_SQL)
    existing = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
                .fetchall()}
    for name in (*TABLES, *ADDED_TABLES):
        if name != "audit_runs" and name in existing:  # a later migration's table: its view comes with it
            con.execute(_LATEST_TABLE_SQL.format(name=name))
    has_reviews = con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND "
                              "table_name = ?", ["reviews"]).fetchone()[0]
    if has_reviews:  # version 3 on
        con.execute(_LATEST_REVIEWS_SQL)
        con.execute(_LATEST_EXAMPLES_SQL)


def _rollback(con: Any, exc: BaseException) -> None:
    """ROLLBACK after ``exc``; if DuckDB already ended the transaction (a failed COMMIT does), only note it."""
    try:
        con.execute("ROLLBACK")
    except Exception as rollback_exc:
        exc.add_note(f"(ROLLBACK then failed too: {rollback_exc}; DuckDB had already ended the transaction, "
                     "nothing of it was written)")


# --------------------------------------------------------------------------------------- writes

def write_audit(db_path: str | Path, run: dict[str, Any], tables: dict[str, pd.DataFrame],
                progress: Callable[[int, int], None] | None = None) -> None:
    """Write one audit atomically.

    ``run`` is the ``audit_runs`` row (must hold run_id, dataset and n_input_rows; ``config`` may be a
    dict); ``tables`` maps table name -> frame (without ``dataset``/``run_id``, which are added): a
    pandas DataFrame, a pyarrow Table / RecordBatchReader or anything with ``to_batches(max_chunksize)``
    (``PredictionRows``), inserted in chunks of
    :data:`WRITE_CHUNK_ROWS` rows inside the one transaction (``progress(rows_done, rows_total)`` after
    each chunk; a RecordBatchReader's rows count once read). Rows of
    a previous write with the same (dataset, run_id) are replaced, so a retried write never duplicates.
    Before COMMIT the transaction checks n_input_rows == examples + quarantine rows written for this run
    and raises :class:`NothingLostError` (rolled back) otherwise. Any failure leaves the previous audit
    the latest; DuckDB and OS errors are raised as :class:`StoreError` carrying the original message.
    """
    import duckdb

    unknown = set(tables) - set(TABLES) - set(ADDED_TABLES)
    if unknown:
        raise ValueError(f"unknown table(s) {sorted(unknown)}")
    if run.get("n_input_rows") is None:
        raise ValueError("run['n_input_rows'] is required: the write checks input rows = examples + "
                         "quarantined before it commits")
    dataset, run_id, n_input = run["dataset"], run["run_id"], int(run["n_input_rows"])
    run_row = dict(run)
    run_row["config"] = json.dumps(run_row.get("config") or {}, default=str)
    with connect(db_path) as con:
        if WRITE_MEMORY_LIMIT:  # DuckDB's default (80% of RAM) let a 1M-row audit's write hold ~3 GB
            try:
                con.execute(f"SET memory_limit = '{WRITE_MEMORY_LIMIT.replace(chr(39), '')}'")  # no quote inside
            except duckdb.Error as exc:
                raise StoreError(f"DuckDB memory limit {WRITE_MEMORY_LIMIT!r} (DQ_DUCKDB_WRITE_MEMORY) not usable: "
                                 f"{exc}; give a size such as 1GB or 512MB") from exc
        con.execute("BEGIN TRANSACTION")
        try:
            retried = con.execute("SELECT count(*) FROM audit_runs WHERE dataset = ? AND run_id = ?",
                                  [dataset, run_id]).fetchall()[0][0]
            for name in (*TABLES, *ADDED_TABLES) if retried else ():  # a new run has nothing to replace
                con.execute(f"DELETE FROM {name} WHERE dataset = ? AND run_id = ?", [dataset, run_id])
            _insert(con, "audit_runs", pd.DataFrame([run_row]))
            total = sum(len(frame) for frame in tables.values() if hasattr(frame, "__len__"))
            done = [0]

            def advance(rows: int) -> None:
                done[0] += rows
                if progress is not None:
                    progress(min(done[0], total), max(total, done[0]))

            for name, frame in tables.items():  # in chunks, dataset and run_id added by DuckDB (no copy)
                _insert(con, name, frame, {"dataset": dataset, "run_id": run_id}, advance=advance)
            n_examples, n_quarantined = (
                con.execute(f"SELECT count(*) FROM {name} WHERE dataset = ? AND run_id = ?",
                            [dataset, run_id]).fetchone()[0]
                for name in ("examples", "quarantine"))
            if n_input != n_examples + n_quarantined:
                raise NothingLostError(
                    f"audit {run_id!r} of {dataset!r} not written to {db_path}: {n_input} input rows != "
                    f"{n_examples} examples + {n_quarantined} quarantined ({n_input - n_examples - n_quarantined:+d} "
                    "rows unaccounted for); the previous audit stays the latest")
            con.execute("COMMIT")
        except BaseException as exc:
            _rollback(con, exc)
            if isinstance(exc, (duckdb.Error, OSError)) and not isinstance(exc, StoreError):
                raise StoreError(f"audit {run_id!r} of {dataset!r} was not written to {db_path} (the previous "
                                 f"audit stays the latest): {exc}") from exc
            raise


#: DuckDB ``memory_limit`` while an audit is written (its buffer pool; beyond it DuckDB writes blocks out to the
#: file or its temp folder instead of keeping them in memory). ``$DQ_DUCKDB_WRITE_MEMORY`` overrides it; ''
#: keeps DuckDB's default (80% of RAM).
WRITE_MEMORY_LIMIT = os.environ.get("DQ_DUCKDB_WRITE_MEMORY", "512MB")

#: Rows per INSERT of an audit table: a large frame (predictions N x K, examples) goes to DuckDB in
#: slices / Arrow record batches of this many rows, never as one extra full copy.
WRITE_CHUNK_ROWS = 131_072


def _chunks(frame: Any, rows: int) -> Iterator[Any]:
    """Slices of ``frame`` of at most ``rows`` rows: a pandas frame (row slices, no copy), a
    ``pyarrow.Table`` or anything with ``to_batches(max_chunksize)`` (record batches, e.g.
    :class:`dq_pipeline.curate.PredictionRows`), or a ``RecordBatchReader`` / iterable of batches."""
    if isinstance(frame, pd.DataFrame):
        for start in range(0, len(frame), rows):
            yield frame.iloc[start:start + rows]
        return
    import pyarrow as pa

    batches = frame.to_batches(max_chunksize=rows) if hasattr(frame, "to_batches") else frame
    for batch in batches:
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def _insert(con: Any, table: str, frame: Any, constants: dict[str, str] | None = None,
            chunk_rows: int | None = None, advance: Callable[[int], None] | None = None) -> None:
    """``INSERT INTO table BY NAME`` the rows of ``frame`` (pandas frame, pyarrow Table or
    RecordBatchReader), in chunks of ``chunk_rows`` (default :data:`WRITE_CHUNK_ROWS`) rows, with each
    of ``constants`` (column -> value, e.g. dataset and run_id) added as a column by DuckDB;
    ``advance(rows)`` after each chunk."""
    select = ", ".join(f"?::VARCHAR AS {column}" for column in constants or {})
    sql = f"INSERT INTO {table} BY NAME SELECT {select + ', ' if select else ''}* FROM _dq_frame"
    params = list((constants or {}).values())
    for chunk in _chunks(frame, chunk_rows or WRITE_CHUNK_ROWS):
        if len(chunk) == 0:
            continue
        if isinstance(chunk, pd.DataFrame):
            # DuckDB types a pandas object column from a sample of its rows (1,000 by default): a list column
            # empty on every sampled row (e.g. examples.rule_violations, 38 non-empty of 54,263 on the full
            # GoEmotions) was typed NULL[] and the first real value failed the cast. Sample every row.
            con.execute(f"SET pandas_analyze_sample = {max(len(chunk), 1000)}")
        con.register("_dq_frame", chunk)
        try:
            con.execute(sql, params)
        except BaseException as exc:  # unregistering in an aborted transaction fails too: never hide exc
            try:
                con.unregister("_dq_frame")
            except Exception as unregister_exc:
                exc.add_note(f"(unregistering the frame then failed too: {unregister_exc})")
            raise
        con.unregister("_dq_frame")
        if advance is not None:
            advance(len(chunk))


def prune_history(db_path: str | Path, dataset: str, keep: int) -> list[str]:
    """Retention: delete the per-example rows (:data:`DETAIL_TABLES`) of ``dataset``'s audits older than its
    last ``keep`` audits (by finished_at, then run_id, as ``latest_audit_runs`` orders them); return the
    run_ids pruned now. Summaries stay forever: every ``audit_runs`` row (marked ``detail_pruned``),
    ``class_summary`` and ``tag_confusions``. The latest successful audit is never pruned, so the
    ``latest_*`` views do not change. ``keep`` < 1 raises ValueError. One transaction."""
    import duckdb

    if keep < 1:
        raise ValueError(f"keep must be >= 1 (the latest audit keeps its detail), got {keep}")
    with connect(db_path) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            old = [r[0] for r in con.execute(
                """SELECT run_id FROM (
                       SELECT run_id, detail_pruned, row_number() OVER (ORDER BY finished_at DESC, run_id DESC) AS rank
                       FROM audit_runs WHERE dataset = ?)
                   WHERE rank > ? AND NOT coalesce(detail_pruned, false)
                     AND run_id NOT IN (SELECT run_id FROM latest_audit_runs WHERE dataset = ?)
                   ORDER BY run_id""", [dataset, keep, dataset]).fetchall()]
            if old:
                con.register("_dq_pruned", pd.DataFrame({"run_id": old}))
                for name in DETAIL_TABLES:
                    con.execute(f"DELETE FROM {name} WHERE dataset = ? AND run_id IN (SELECT run_id FROM _dq_pruned)",
                                [dataset])
                con.execute("UPDATE audit_runs SET detail_pruned = true WHERE dataset = ? AND run_id IN "
                            "(SELECT run_id FROM _dq_pruned)", [dataset])
                con.unregister("_dq_pruned")
            con.execute("COMMIT")
        except BaseException as exc:
            _rollback(con, exc)
            if isinstance(exc, (duckdb.Error, OSError)):
                raise StoreError(f"pruning old audits of {dataset!r} in {db_path} failed (nothing deleted): "
                                 f"{exc}") from exc
            raise
        if old:
            con.execute("CHECKPOINT")  # hand the freed blocks back for reuse by the next writes
    return old


# --------------------------------------------------------------------------------------- reads

def read_latest(db_path: str | Path, table: str, dataset: str | None = None,
                columns: list[str] | None = None) -> pd.DataFrame:
    """Rows of ``latest_<table>`` (optionally for one dataset; optionally only ``columns``) as a DataFrame.

    Opens the file read-only; a missing file raises :class:`StoreError` (it is never created here).
    """
    if table not in TABLES and table not in ADDED_TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {sorted((*TABLES, *ADDED_TABLES))}")
    with connect(db_path, read_only=True) as con:
        selected = "*"
        if columns is not None:
            known = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
                                               [f"latest_{table}"]).fetchall()}
            missing = [c for c in columns if c not in known]
            if missing:
                raise ValueError(f"latest_{table} has no column(s) {missing}; columns: {sorted(known)}")
            selected = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        sql = f"SELECT {selected} FROM latest_{table}"
        params: list[Any] = []
        if dataset is not None:
            sql += " WHERE dataset = ?"
            params.append(dataset)
        try:
            frame = con.execute(sql, params).df()
        except Exception as exc:
            import duckdb

            if isinstance(exc, duckdb.CatalogException):
                raise StoreError(f"{db_path} has no view latest_{table} (not written by dq_pipeline, or by a "
                                 "version too old to migrate read-only): run an audit to update it") from exc
            raise
    for column in frame.columns:  # VARCHAR[] arrives as numpy arrays: hand out plain lists
        if frame[column].dtype == object and frame[column].map(lambda v: hasattr(v, "tolist")).any():
            frame[column] = frame[column].map(lambda v: v.tolist() if hasattr(v, "tolist") else v)
    return frame


REVIEW_COLUMNS = ["dataset", "example_id", "action", "labels", "run_id", "content_key", "given_labels",
                  "reviewed_at", "reviewer"]


def read_reviews(db_path: str | Path, dataset: str | None = None, latest: bool = True) -> pd.DataFrame:
    """Review decisions (table ``reviews``, tags as lists), ordered by reviewed_at.

    ``latest``: only the latest decision per (dataset, example_id) (what applies), else every row. A
    missing file, or one from before version 3 that cannot be migrated now, has none (an empty frame).
    """
    if not Path(db_path).exists():
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    with connect(db_path, read_only=True) as con:
        if _version(con) < 3:
            return pd.DataFrame(columns=REVIEW_COLUMNS)
        sql = f"SELECT {', '.join(REVIEW_COLUMNS)} FROM {'latest_reviews' if latest else 'reviews'}"
        params: list[Any] = []
        if dataset is not None:
            sql += " WHERE dataset = ?"
            params.append(dataset)
        frame = con.execute(sql + " ORDER BY reviewed_at, example_id", params).df()
    for column in ("labels", "given_labels"):
        frame[column] = [list(v) if v is not None and not (isinstance(v, float) and v != v) else None
                         for v in frame[column]]
    return frame
