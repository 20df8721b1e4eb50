"""The review loop's core: what a person sees of an audit and the decisions they take (no web code).

Pure functions over the DuckDB file (the web app and the CLI call them): reads open read-only
connections, writes go through :func:`dq_pipeline.store.connect` (its lock retry and clear errors), SQL
takes parameters only. Decisions are rows of the append-only table ``reviews``; the latest row per
(dataset, example_id) is the decision, valid while the example's content (``content_key``) and given
tags are those recorded with it (``latest_examples`` shows it at once: ``review_action``,
``reviewed_labels``, ``is_open_issue``, ``reopened_reason``).

Every value returned is JSON-ready: tags are lists of str, timestamps ISO-8601 strings (UTC), NaN is None.
"""

from __future__ import annotations

import csv
import json
import math
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from dq_pipeline import store

ACTIONS = ("accept", "keep", "exclude", "set")
#: Queue issue filters; ``conflict`` = near-duplicate group whose members carry different tags;
#: ``rule_violation`` = given tags breaking a learned label rule (schema version 4 on; every one is also a
#: label issue).
ISSUES = ("label_issue", "ambiguous", "outlier", "near_duplicate", "conflict", "rule_violation")
KINDS = ("missing", "incorrect")
STATES = ("open", "reviewed", "all")

_ISSUE_COLUMN = {"label_issue": "is_label_issue", "ambiguous": "is_ambiguous", "outlier": "is_outlier",
                 "near_duplicate": "is_near_duplicate", "conflict": "near_duplicate_conflict",
                 "rule_violation": "is_rule_violation"}
_FLAGGED = ("(coalesce(e.is_label_issue, false) OR coalesce(e.is_ambiguous, false) OR coalesce(e.is_outlier, false) "
            "OR coalesce(e.is_near_duplicate, false) OR coalesce(e.near_duplicate_conflict, false))")
#: Lowest score among the example's flags (low = more severe); 1.0 when no scored flag (duplicates only).
_SEVERITY = ("coalesce(least(CASE WHEN e.is_label_issue THEN e.label_quality END, "
             "CASE WHEN e.is_ambiguous THEN e.ambiguity END, CASE WHEN e.is_outlier THEN e.outlier_score END), "
             "1.0::DOUBLE)")
ITEM_COLUMNS = ("example_id", "row_number", "severity", "given_labels", "suggested_labels", "label_quality",
                "ambiguity", "outlier_score", "outlier_reason", "is_label_issue", "is_ambiguous", "is_outlier",
                "is_near_duplicate", "near_duplicate_conflict", "near_duplicate_group", "review_action",
                "reviewed_labels", "is_open_issue", "reopened_reason", "payload")
_ITEM_SQL = ", ".join(f"{_SEVERITY} AS severity" if c == "severity" else f"e.{c}" for c in ITEM_COLUMNS)
REVIEW_COLUMNS = tuple(store.REVIEW_COLUMNS)
_INSERT_REVIEW = (f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) "
                  "VALUES (?, ?, ?, ?::VARCHAR[], ?, ?, ?::VARCHAR[], ?, ?)")


class ReviewError(ValueError):
    """A bad request: unknown dataset or example (``status`` 404), bad action, labels, filter or file (400)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------------------- helpers

def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, tuple):
        return list(v)
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):  # numpy / decimal scalars
        try:
            return _json_value(v.item())
        except (AttributeError, ValueError):
            pass
    if type(v).__name__ == "Decimal":
        return float(v)
    return v


def _rows(con: Any, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [{n: _json_value(v) for n, v in zip(names, row)} for row in cur.fetchall()]


def _check_schema(con: Any, db_path: str | Path) -> None:
    if store._version(con) < 3:
        raise store.StoreError(f"{db_path} predates review decisions (schema version < 3) and could not be "
                               "migrated now (read-only or in use): make it writable, or run an audit")


def _latest_run(con: Any, dataset: str) -> dict[str, Any]:
    if not isinstance(dataset, str) or not dataset:
        raise ReviewError(f"dataset must be a name, got {dataset!r}", 404)
    found = _rows(con, "SELECT * FROM latest_audit_runs WHERE dataset = ?", [dataset])
    if not found:
        known = [r[0] for r in con.execute("SELECT dataset FROM latest_audit_runs ORDER BY 1").fetchall()]
        raise ReviewError(f"unknown dataset {dataset!r}: no successful audit of it "
                          f"(audited: {', '.join(known) or 'none'})", 404)
    return found[0]


def _classes(con: Any, dataset: str, run_id: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT tag FROM class_summary WHERE dataset = ? AND run_id = ? ORDER BY rowid",
                                      [dataset, run_id]).fetchall()]


def _filters(con: Any, dataset: str, run: dict, issue: str | None, tag: str | None, kind: str | None,
             state: str) -> tuple[str, list[Any]]:
    """WHERE clause (on ``latest_examples e``) and its parameters for a queue filter; ReviewError when bad."""
    where, params = ["e.dataset = ?"], [dataset]
    if state not in STATES:
        raise ReviewError(f"state must be one of {', '.join(STATES)}, got {state!r}")
    if state == "open":
        where.append("e.is_open_issue")
    elif state == "reviewed":
        where.append("e.review_action IS NOT NULL")
    else:
        where.append(f"({_FLAGGED} OR e.review_action IS NOT NULL OR e.reopened_reason IS NOT NULL)")
    if issue not in (None, ""):
        if issue not in ISSUES:
            raise ReviewError(f"issue must be one of {', '.join(ISSUES)}, got {issue!r}")
        if issue == "rule_violation" and store._version(con) < 4:  # a file read as it is, before rules
            where.append("false")
        else:
            where.append(f"coalesce(e.{_ISSUE_COLUMN[issue]}, false)")
    if kind not in (None, "") and kind not in KINDS:
        raise ReviewError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if tag not in (None, "") or kind not in (None, ""):
        sub = ["t.dataset = e.dataset", "t.run_id = e.run_id", "t.example_id = e.example_id"]
        if tag not in (None, ""):
            if tag not in _classes(con, dataset, run["run_id"]):
                raise ReviewError(f"unknown tag {tag!r} for dataset {dataset!r}")
            sub.append("t.tag = ?")
            params.append(tag)
        if kind not in (None, ""):
            sub.append("t.kind = ?")
            params.append(kind)
        where.append(f"EXISTS (SELECT 1 FROM tag_issues t WHERE {' AND '.join(sub)})")
    return " AND ".join(where), params


def _page(limit: Any, offset: Any) -> tuple[int, int]:
    try:
        limit, offset = int(limit), int(offset)
    except (TypeError, ValueError) as exc:
        raise ReviewError(f"limit and offset must be integers, got {limit!r} and {offset!r}") from exc
    if not 0 <= limit <= 10_000 or offset < 0:
        raise ReviewError(f"limit must be in 0..10000 and offset >= 0, got {limit} and {offset}")
    return limit, offset


def _tag_issues(con: Any, dataset: str, run_id: str, ids: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {i: [] for i in ids}
    if not ids:
        return out
    for r in _rows(con, "SELECT example_id, tag, kind, probability FROM tag_issues WHERE dataset = ? AND run_id = ? "
                        "AND example_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY example_id, kind, tag",
                   [dataset, run_id, ids]):
        out[r.pop("example_id")].append(r)
    return out


# --------------------------------------------------------------------------------------- reads

def list_datasets(db_path: str | Path) -> list[dict[str, Any]]:
    """One dict per dataset with a successful audit (its latest): dataset, run_id, finished_at, modality,
    folder, n_examples, health_score (at audit time), n_label_issues, n_ambiguous, n_outliers,
    n_near_duplicates, n_conflicts, n_open, n_reviewed (live: decisions taken since count),
    health_score_now (1 - n_open / n_examples), and expected_error_rate with expected_error_rate_lo / _hi
    (estimated share of wrongly tagged examples and its 90% interval; None before schema version 4)."""
    with store.connect(db_path, read_only=True) as con:
        _check_schema(con, db_path)
        return _datasets(con, None)


def _datasets(con: Any, dataset: str | None) -> list[dict[str, Any]]:
    # expected_error_rate (+ interval) from schema version 4 on; NULL for a file read as it is at version 3
    eer = ("a.expected_error_rate, a.expected_error_rate_lo, a.expected_error_rate_hi, "
           "coalesce(a.n_rule_violations, 0) AS n_rule_violations,"
           if store._version(con) >= 4 else
           "NULL AS expected_error_rate, NULL AS expected_error_rate_lo, NULL AS expected_error_rate_hi, "
           "0 AS n_rule_violations,")
    sql = """
        SELECT a.dataset, a.run_id, a.finished_at, a.modality, a.folder, a.n_examples, a.health_score,
               a.n_label_issues, a.n_ambiguous, a.n_outliers, a.n_near_duplicates, """ + eer + """
               coalesce(c.n_conflicts, 0) AS n_conflicts, coalesce(c.n_open, 0) AS n_open,
               coalesce(c.n_reviewed, 0) AS n_reviewed,
               CASE WHEN a.n_examples > 0 THEN 1.0 - coalesce(c.n_open, 0) / a.n_examples END AS health_score_now
        FROM latest_audit_runs a LEFT JOIN (
            SELECT dataset, count(*) FILTER (WHERE near_duplicate_conflict) AS n_conflicts,
                   count(*) FILTER (WHERE is_open_issue) AS n_open,
                   count(*) FILTER (WHERE review_action IS NOT NULL) AS n_reviewed
            FROM latest_examples {where} GROUP BY dataset) c USING (dataset)
        {where_a} ORDER BY a.dataset"""
    if dataset is None:
        return _rows(con, sql.format(where="", where_a=""))
    return _rows(con, sql.format(where="WHERE dataset = ?", where_a="WHERE a.dataset = ?"), [dataset, dataset])


def dataset_overview(db_path: str | Path, dataset: str) -> dict[str, Any]:
    """The :func:`list_datasets` row of ``dataset`` + ``classes`` (its class_summary rows, as dicts, in class
    order) + ``tags`` (the class names). ReviewError (404) for an unknown dataset."""
    with store.connect(db_path, read_only=True) as con:
        _check_schema(con, db_path)
        run = _latest_run(con, dataset)
        row = _datasets(con, dataset)[0]
        classes = _rows(con, "SELECT * EXCLUDE (dataset, run_id) FROM class_summary WHERE dataset = ? AND run_id = ? "
                             "ORDER BY rowid", [dataset, run["run_id"]])
    return {**row, "classes": classes, "tags": [c["tag"] for c in classes]}


def review_queue(db_path: str | Path, dataset: str, *, issue: str | None = None, tag: str | None = None,
                 kind: str | None = None, state: str = "open", limit: int = 50, offset: int = 0) -> dict[str, Any]:
    """``{"total", "items"}``: the dataset's flagged (or reviewed) examples, most severe first.

    Severity = the lowest of label_quality / ambiguity / outlier_score among the example's flags (1.0 when
    only a duplicate flag), ties by example_id. Filters: ``issue`` (one of :data:`ISSUES`), ``tag`` (a tag
    issue on that tag), ``kind`` ('missing' | 'incorrect', narrows the tag issue), ``state`` ('open':
    flagged and no valid decision; 'reviewed': a valid decision; 'all': flagged, reviewed or re-opened).
    Each item: :data:`ITEM_COLUMNS` + ``tag_issues`` ([{tag, kind, probability}]). Filtering, ordering and
    paging run in SQL. ReviewError for an unknown dataset or a bad filter.
    """
    limit, offset = _page(limit, offset)
    with store.connect(db_path, read_only=True) as con:
        _check_schema(con, db_path)
        run = _latest_run(con, dataset)
        where, params = _filters(con, dataset, run, issue, tag, kind, state)
        items = _rows(con, f"SELECT {_ITEM_SQL}, count(*) OVER () AS _total FROM latest_examples e WHERE {where} "
                           "ORDER BY severity, e.example_id LIMIT ? OFFSET ?", [*params, limit, offset])
        if items:
            total = items[0]["_total"]
        else:
            total = con.execute(f"SELECT count(*) FROM latest_examples e WHERE {where}", params).fetchone()[0]
        issues = _tag_issues(con, dataset, run["run_id"], [i["example_id"] for i in items])
    for item in items:
        del item["_total"]
        item["tag_issues"] = issues[item["example_id"]]
    return {"total": int(total), "items": items}


def example_detail(db_path: str | Path, dataset: str, example_id: str) -> dict[str, Any]:
    """One example of the latest audit: the queue item's fields + ``modality``, ``folder``, ``tags`` (per
    class in class order: tag, given, suggested, probability (out-of-fold), kind ('missing' / 'incorrect' /
    None)), ``duplicates`` (other members of its near-duplicate group: example_id, given_labels, payload)
    and ``review`` (its latest review row, valid or not, or None). ReviewError (404) when unknown."""
    with store.connect(db_path, read_only=True) as con:
        _check_schema(con, db_path)
        run = _latest_run(con, dataset)
        found = _rows(con, f"SELECT {_ITEM_SQL} FROM latest_examples e WHERE e.dataset = ? AND e.example_id = ?",
                      [dataset, str(example_id)])
        if not found:
            raise ReviewError(f"unknown example {example_id!r} in the latest audit of {dataset!r}", 404)
        item = found[0]
        run_id = run["run_id"]
        item["tag_issues"] = _tag_issues(con, dataset, run_id, [item["example_id"]])[item["example_id"]]
        probs = {r[0]: r[1] for r in con.execute(
            "SELECT tag, probability FROM predictions WHERE dataset = ? AND run_id = ? AND example_id = ?",
            [dataset, run_id, item["example_id"]]).fetchall()}
        kinds = {t["tag"]: t["kind"] for t in item["tag_issues"]}
        given, suggested = set(item["given_labels"] or []), set(item["suggested_labels"] or [])
        item["tags"] = [{"tag": c, "given": c in given, "suggested": c in suggested,
                         "probability": _json_value(probs.get(c)), "kind": kinds.get(c)}
                        for c in _classes(con, dataset, run_id)]
        item["duplicates"] = []
        if item["near_duplicate_group"] is not None:
            item["duplicates"] = _rows(
                con, "SELECT example_id, given_labels, payload FROM latest_examples WHERE dataset = ? "
                     "AND near_duplicate_group = ? AND example_id <> ? ORDER BY row_number, example_id",
                [dataset, item["near_duplicate_group"], item["example_id"]])
        review = _rows(con, f"SELECT {', '.join(REVIEW_COLUMNS)} FROM latest_reviews WHERE dataset = ? "
                            "AND example_id = ?", [dataset, item["example_id"]])
    item["modality"] = run.get("modality")
    item["folder"] = run.get("folder")
    item["review"] = review[0] if review else None
    return item


# --------------------------------------------------------------------------------------- writes

def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _reviewer(reviewer: Any) -> str:
    if reviewer is None or (isinstance(reviewer, str) and not reviewer.strip()):
        return os.environ.get("USER") or "unknown"
    if not isinstance(reviewer, str):
        raise ReviewError(f"reviewer must be a string, got {reviewer!r}")
    return reviewer.strip()


def _decided_labels(action: Any, labels: Any, example: dict, classes: list[str]) -> list[str]:
    """The tags an action decides for ``example`` (a latest_examples row); ReviewError when invalid."""
    if action not in ACTIONS:
        raise ReviewError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if action == "accept":
        return list(example["suggested_labels"] or [])
    if action == "keep":
        return list(example["given_labels"] or [])
    if action == "exclude":
        return []
    if labels is None:
        raise ReviewError("action 'set' needs labels (a list of tags; [] for none)")
    if isinstance(labels, str) or not isinstance(labels, (list, tuple)):
        raise ReviewError(f"labels must be a list of tags, got {labels!r}")
    unknown = [t for t in labels if not isinstance(t, str) or t not in classes]
    if unknown:
        raise ReviewError(f"unknown tag(s) {', '.join(map(repr, unknown))}; tags: {', '.join(classes)}")
    chosen = set(labels)
    return [c for c in classes if c in chosen]


def _require_content_key(example: dict, dataset: str) -> None:
    if not example.get("content_key"):
        raise ReviewError(f"the latest audit of {dataset!r} predates review decisions (its examples have no "
                          "content_key, so a decision could never be kept): re-audit the dataset first")


_EXAMPLE_SQL = ("SELECT dataset, example_id, run_id, content_key, given_labels, suggested_labels FROM latest_examples "
                "WHERE dataset = ? AND example_id = ?")


def record_review(db_path: str | Path, dataset: str, example_id: str, action: str, labels: list[str] | None = None,
                  reviewer: str | None = None) -> dict[str, Any]:
    """Store one decision on an example of the latest audit of ``dataset``; return the stored row.

    ``action``: 'accept' (the suggested tags), 'keep' (the given tags), 'exclude' ([], the example is
    dropped) or 'set' (``labels``, each a known tag; ignored by the other actions). The row records the
    audit's run_id and the example's content_key and given tags (the decision stays valid while they are
    unchanged), reviewed_at now (UTC) and ``reviewer`` (default ``$USER`` or 'unknown'). ReviewError when
    the dataset or example is unknown (404) or the action or labels are bad (400).
    """
    who = _reviewer(reviewer)
    if action not in ACTIONS:
        raise ReviewError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    with store.connect(db_path) as con:
        found = _rows(con, _EXAMPLE_SQL, [dataset, str(example_id)])
        if not found:
            _latest_run(con, dataset)  # an unknown dataset says so
            raise ReviewError(f"unknown example {example_id!r} in the latest audit of {dataset!r}", 404)
        example = found[0]
        _require_content_key(example, dataset)
        classes = _classes(con, dataset, example["run_id"]) if action == "set" else []
        decided = _decided_labels(action, labels, example, classes)
        row = {"dataset": dataset, "example_id": example["example_id"], "action": action, "labels": decided,
               "run_id": example["run_id"], "content_key": example["content_key"],
               "given_labels": list(example["given_labels"] or []), "reviewed_at": _now(), "reviewer": who}
        con.execute(_INSERT_REVIEW, [row[c] for c in REVIEW_COLUMNS])
    row["reviewed_at"] = row["reviewed_at"].isoformat()
    return row


def accept_top(db_path: str | Path, dataset: str, k: int, *, issue: str | None = None, tag: str | None = None,
               kind: str | None = None, reviewer: str | None = None) -> int:
    """Accept the suggested tags of the first ``k`` OPEN items of this queue filter (as :func:`review_queue`
    orders them), in one transaction; returns how many decisions were stored."""
    try:
        k = int(k)
    except (TypeError, ValueError) as exc:
        raise ReviewError(f"k must be an integer, got {k!r}") from exc
    if k < 0:
        raise ReviewError(f"k must be >= 0, got {k}")
    who = _reviewer(reviewer)
    with store.connect(db_path) as con:
        run = _latest_run(con, dataset)
        where, params = _filters(con, dataset, run, issue, tag, kind, "open")
        con.execute("BEGIN TRANSACTION")
        try:
            n = con.execute(
                f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) "
                "SELECT dataset, example_id, 'accept', suggested_labels, run_id, content_key, given_labels, ?, ? "
                f"FROM (SELECT e.*, {_SEVERITY} AS severity FROM latest_examples e WHERE {where} "
                "AND e.content_key IS NOT NULL "
                "ORDER BY severity, e.example_id LIMIT ?)", [_now(), who, *params, k]).fetchone()[0]
            con.execute("COMMIT")
        except BaseException as exc:
            store._rollback(con, exc)
            raise
    return int(n)


# --------------------------------------------------------------------------------------- import / export

def export_reviews(db_path: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """Every row of ``reviews`` (optionally one dataset's), oldest first; labels and given_labels as lists."""
    frame = store.read_reviews(db_path, dataset, latest=False)
    return frame[list(REVIEW_COLUMNS)].reset_index(drop=True)


def _split(cell: Any) -> list[str]:
    if cell is None:
        return []
    if isinstance(cell, list):
        return cell
    text = str(cell)
    return [t.strip() for t in text.split("|") if t.strip()] if text.strip() else []


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) per row of a .csv (labels '|'-joined) or .jsonl file; ReviewError naming file and line."""
    if not path.is_file():
        raise ReviewError(f"{path}: no such file")
    suffix = path.suffix.lower()
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                missing = [c for c in ("dataset", "example_id", "action") if c not in (reader.fieldnames or [])]
                if missing:
                    raise ReviewError(f"{path}:1: missing column(s) {', '.join(missing)} (header: "
                                      f"{', '.join(reader.fieldnames or []) or 'empty'})")
                start = 2
                for rec in reader:
                    if None in rec:
                        raise ReviewError(f"{path}:{start}: more fields than the header has")
                    out.append((start, {k: (v if v != "" else None) for k, v in rec.items()}))
                    start = reader.line_num + 1
                    for key in ("labels", "given_labels"):
                        if key in out[-1][1]:
                            out[-1][1][key] = _split(out[-1][1][key])
        elif suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8-sig") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ReviewError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from exc
                    if not isinstance(rec, dict):
                        raise ReviewError(f"{path}:{number}: expected a JSON object, got {line.strip()[:80]}")
                    out.append((number, rec))
        else:
            raise ReviewError(f"{path}: expected a .csv or .jsonl file")
    except UnicodeDecodeError as exc:
        raise ReviewError(f"{path}: not UTF-8 ({exc})") from exc
    except csv.Error as exc:
        raise ReviewError(f"{path}: unreadable CSV ({exc})") from exc
    return out


def _timestamp(value: Any, where: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ReviewError(f"{where}: reviewed_at {value!r} is not a timestamp") from exc
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def import_reviews(db_path: str | Path, path: str | Path) -> int:
    """Store the decisions of a .csv (labels and given_labels '|'-joined) or .jsonl file; returns how many.

    Columns: dataset, example_id, action, labels (for 'set'), reviewer (optional). Each row is validated
    like :func:`record_review` (ReviewError naming the file, line and value). A file written by
    :func:`export_reviews` also carries run_id, content_key, given_labels and reviewed_at: they are kept
    (so a decision on since-changed content stays re-opened, and the latest decision still wins);
    absent, they are the latest audit's and now. All or nothing: one transaction.
    """
    path = Path(path)
    records = _records(path)
    now = _now()
    rows: list[dict[str, Any]] = []
    with store.connect(db_path) as con:
        runs: dict[str, tuple[dict, list[str]]] = {}
        for line, rec in records:
            where = f"{path}:{line}"
            dataset, example_id, action = rec.get("dataset"), rec.get("example_id"), rec.get("action")
            if dataset is None or example_id is None or action is None:
                raise ReviewError(f"{where}: dataset, example_id and action are required, got {rec!r}")
            dataset, example_id = str(dataset), str(example_id)
            try:
                if dataset not in runs:
                    run = _latest_run(con, dataset)
                    runs[dataset] = (run, _classes(con, dataset, run["run_id"]))
                found = _rows(con, _EXAMPLE_SQL, [dataset, example_id])
                if not found:
                    raise ReviewError(f"unknown example {example_id!r} in the latest audit of {dataset!r}", 404)
                example = found[0]
                if not rec.get("content_key"):
                    _require_content_key(example, dataset)
                labels = rec.get("labels")
                if isinstance(labels, str):
                    labels = _split(labels)
                decided = _decided_labels(action, labels, example, runs[dataset][1])
                if rec.get("content_key") and action != "exclude" and labels is not None:
                    decided = _decided_labels("set", labels, example, runs[dataset][1])  # as decided then
                who = _reviewer(rec.get("reviewer"))
                given = rec.get("given_labels")
                given = _split(given) if isinstance(given, str) else given
            except ReviewError as exc:
                raise ReviewError(f"{where}: {exc}", exc.status) from exc
            rows.append({
                "dataset": dataset, "example_id": example_id, "action": action, "labels": decided,
                "run_id": str(rec.get("run_id") or example["run_id"]),
                "content_key": str(rec.get("content_key") or example["content_key"]),
                "given_labels": list(given) if given is not None and rec.get("content_key")
                else list(example["given_labels"] or []),
                "reviewed_at": _timestamp(rec.get("reviewed_at"), where) or now, "reviewer": who})
        if rows:
            import pyarrow as pa

            schema = pa.schema([("dataset", pa.string()), ("example_id", pa.string()), ("action", pa.string()),
                                ("labels", pa.list_(pa.string())), ("run_id", pa.string()),
                                ("content_key", pa.string()), ("given_labels", pa.list_(pa.string())),
                                ("reviewed_at", pa.timestamp("us")), ("reviewer", pa.string())])
            table = pa.Table.from_pylist(rows, schema=schema)
            con.execute("BEGIN TRANSACTION")
            try:
                con.register("_dq_reviews", table)
                con.execute(f"INSERT INTO reviews ({', '.join(REVIEW_COLUMNS)}) "
                            f"SELECT {', '.join(REVIEW_COLUMNS)} FROM _dq_reviews")
                con.execute("COMMIT")
            except BaseException as exc:
                store._rollback(con, exc)
                raise
            finally:
                try:
                    con.unregister("_dq_reviews")
                except Exception:
                    pass
    return len(rows)


def write_reviews(frame: pd.DataFrame, out: Any, fmt: str) -> None:
    """Write :func:`export_reviews`' frame to the text stream ``out`` as 'csv' (tags '|'-joined) or 'jsonl'."""
    records = []
    for rec in frame.to_dict("records"):
        rec = {k: _json_value(v) for k, v in rec.items()}
        for key in ("reviewed_at",):
            if isinstance(rec.get(key), pd.Timestamp):
                rec[key] = rec[key].isoformat()
        for key in ("labels", "given_labels"):
            rec[key] = list(rec[key]) if rec.get(key) is not None else []
        records.append(rec)
    if fmt == "jsonl":
        for rec in records:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=list(REVIEW_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for rec in records:
        writer.writerow({**rec, "labels": "|".join(rec["labels"]), "given_labels": "|".join(rec["given_labels"])})


# --------------------------------------------------------------------------------------- audit history

#: audit_runs columns of the dataset page's history (those the file has)
HISTORY_COLUMNS = ("run_id", "finished_at", "n_examples", "health_score", "n_open_issues", "expected_error_rate",
                   "n_added", "n_removed", "n_edited", "n_new", "n_resolved", "n_reopened", "n_persisting")


def dataset_history(db_path: str | Path, dataset: str, max_changes: int = 200) -> dict[str, Any]:
    """The dataset's audit history for its page: ``audits`` (successful audits oldest first, the
    :data:`HISTORY_COLUMNS` the file has), ``changes`` (the latest audit's audit_changes rows other than
    persisting, new and reopened first, at most ``max_changes``), ``n_changes`` (all of them) and
    ``trend`` (SVG polyline points of the health score, 0-1 high = healthy, over a 300 x 60 box). Files
    from before audit history (schema < 4) give empty lists. ReviewError (404) for an unknown dataset."""
    with store.connect(db_path, read_only=True) as con:
        _check_schema(con, db_path)
        run = _latest_run(con, dataset)
        have = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' AND "
                                          "table_name = 'audit_runs'").fetchall()}
        columns = [c for c in HISTORY_COLUMNS if c in have]
        audits = _rows(con, f"SELECT {', '.join(columns)} FROM audit_runs WHERE dataset = ? AND status = 'success' "
                            "ORDER BY finished_at, run_id", [dataset])
        changes: list[dict[str, Any]] = []
        n_changes = 0
        if store._version(con) >= 4:
            where = "WHERE dataset = ? AND run_id = ? AND change <> 'persisting'"
            params = [dataset, run["run_id"]]
            n_changes = con.execute(f"SELECT count(*) FROM audit_changes {where}", params).fetchone()[0]
            changes = _rows(con, f"""SELECT example_id, issue_type, change, reason, detail FROM audit_changes {where}
                ORDER BY CASE change WHEN 'new' THEN 0 WHEN 'reopened' THEN 1 ELSE 2 END, issue_type, example_id
                LIMIT ?""", [*params, max_changes])
    scores = [a["health_score"] for a in audits]
    n = len(scores)
    trend = " ".join(f"{(300 * i / (n - 1)) if n > 1 else 150:.1f},{60 - 60 * (s or 0):.1f}" for i, s in enumerate(scores))
    return {"audits": audits, "changes": changes, "n_changes": int(n_changes), "trend": trend}
