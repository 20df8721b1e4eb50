"""Audit history: the diff between audits (exact rows, counts, reasons), the regression check run by
Dagster, retention, `dq-pipeline history`, and the sensor's content fingerprint."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from dq_pipeline import history, review, store
from dq_pipeline.defs.resources import AuditSettings
from dq_pipeline.defs.runner import run_audit
from dq_pipeline_tests.conftest import DATA, write_dataset

# --------------------------------------------------------------------------------------- the diff (pure)


def _examples(rows: list[tuple]) -> pd.DataFrame:
    """(id, content_key, tags, flagged issue types, decided_action) -> an examples frame."""
    out = []
    for ex_id, key, tags, flagged, decided in rows:
        out.append({"example_id": ex_id, "content_key": key, "given_labels": tags, "decided_action": decided,
                    **{col: issue in flagged for issue, col in history.ISSUE_FLAGS.items()}})
    return pd.DataFrame(out)


def test_diff_rows_reasons_and_counts_are_exact():
    previous = _examples([
        ("a", "ka", ["x"], {"label_issue"}, None),      # stays open: persisting
        ("b", "kb", ["y"], {"label_issue"}, None),      # removed: resolved, data changed
        ("c", "kc", ["x"], {"label_issue"}, None),      # tag fixed, no flag now: resolved, tags changed
        ("d", "kd", ["x"], {"outlier"}, None),          # unchanged, no flag now: resolved, model changed
        ("e", "ke", ["y"], {"ambiguous"}, None),        # decided since: resolved, reviewed
        ("f", "kf", ["x"], {"label_issue"}, "keep"),    # closed; content edited: reopened, data changed
        ("g", "kg", ["x"], {"label_issue"}, "accept"),  # closed and still closed: no row
        ("h", "kh", [], set(), None),                   # unchanged, flagged now: new, model changed
        ("i", "ki", ["y"], {"label_issue"}, "keep"),    # closed; tags changed: reopened, tags changed
    ])
    current = _examples([
        ("a", "ka", ["x"], {"label_issue"}, None),
        ("c", "kc", ["y"], set(), None),
        ("d", "kd", ["x"], set(), None),
        ("e", "ke", ["y"], {"ambiguous"}, "accept"),
        ("f", "kf2", ["x"], {"label_issue"}, None),
        ("g", "kg", ["x"], {"label_issue"}, "accept"),
        ("h", "kh", [], {"ambiguous"}, None),
        ("i", "ki", ["y", "x"], {"label_issue"}, None),
        ("j", "kj", ["x"], {"outlier"}, None),          # added, flagged: new, data changed
        ("k", "kk", ["y"], set(), None),                # added, not flagged: no row
    ])
    diff = history.diff_audits(previous, current, {"n_folds": 5, "cache_dir": "a"}, {"n_folds": 10, "cache_dir": "b"})
    model = "same content and tags; other examples: 2 added, 1 removed, 3 edited; settings: n_folds"
    assert [tuple(r) for r in diff.changes.itertuples(index=False)] == [
        ("h", "ambiguous", "new", "model changed", model),
        ("j", "outlier", "new", "data changed", "example added"),
        ("f", "label_issue", "reopened", "data changed", "content edited since review"),
        ("i", "label_issue", "reopened", "tags changed", "given tags changed since review: +x"),
        ("e", "ambiguous", "resolved", "reviewed", "review: accept"),
        ("b", "label_issue", "resolved", "data changed", "example removed"),
        ("c", "label_issue", "resolved", "tags changed", "given tags: +y -x"),
        ("d", "outlier", "resolved", "model changed", model),
        ("a", "label_issue", "persisting", None, None),
    ]
    assert diff.counts == {"n_new": 2, "n_resolved": 4, "n_persisting": 1, "n_reopened": 2, "n_added": 2,
                           "n_removed": 1, "n_edited": 3, "n_open_label_issues": 3, "n_open_ambiguous": 1,
                           "n_open_outliers": 1, "n_open_near_duplicates": 0}
    ec = diff.example_changes
    assert list(zip(ec["example_id"], ec["change"])) == [("j", "added"), ("k", "added"), ("b", "removed"),
                                                         ("c", "edited"), ("f", "edited"), ("i", "edited")]
    edited = ec[ec["change"] == "edited"].set_index("example_id")
    assert edited["content_changed"].tolist() == [False, True, False]
    assert edited["tags_changed"].tolist() == [True, False, True]
    assert edited.loc["c", "previous_labels"] == ["x"] and edited.loc["c", "given_labels"] == ["y"]
    # a first audit has nothing to compare with: no rows, counts None
    first = history.diff_audits(None, current)
    assert first.changes.empty and first.counts["n_new"] is None and first.counts["n_open_label_issues"] == 3


def test_regression_thresholds():
    changes = pd.DataFrame({"example_id": ["1", "2", "3"], "issue_type": ["label_issue"] * 3,
                            "change": ["new", "persisting", "reopened"], "reason": ["model changed", None, "reviewed"],
                            "detail": [None] * 3})
    prev = {"run_id": "p", "health_score": 0.90, "n_open_issues": 20}
    t = history.RegressionThresholds(max_health_drop=0.02, max_open_increase=0.25, min_open_increase=5)
    ok = history.regression({"health_score": 0.89, "n_open_issues": 25}, prev, changes, t)
    assert ok.passed and ok.causes.empty  # -0.01 health, +5 <= max(0.25 * 20, 5)
    drop = history.regression({"health_score": 0.87, "n_open_issues": 25}, prev, changes, t)
    assert not drop.passed and "health score fell 0.900 -> 0.870" in drop.description
    assert drop.causes["example_id"].tolist() == ["1", "3"]
    jump = history.regression({"health_score": 0.90, "n_open_issues": 26}, prev, changes, t)
    assert not jump.passed and "open issues rose 20 -> 26" in jump.description
    assert history.regression({"health_score": 0.1, "n_open_issues": 99}, None, changes, t).passed  # first audit


# --------------------------------------------------------------------------------------- real audits

DATASET = "flags_hist"
MANIFEST = """modality: tabular
source: flags.csv
labels: {column: labels, separator: "|"}
id_column: flag_id
categorical_columns: [landmass, zone, language, religion]
"""


@pytest.fixture
def flags() -> pd.DataFrame:
    """MULAN flags (194 real rows) with a stable id column, so removing a row renumbers nothing."""
    frame = pd.read_csv(DATA / "mulan_flags" / "flags.csv", keep_default_na=False)
    frame.insert(0, "flag_id", [f"flag{i:03d}" for i in range(len(frame))])
    return frame


def _read(db: str, sql: str, params: list | None = None) -> pd.DataFrame:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(sql, params or []).df()


def _examples_of(db: str, run_id: str) -> pd.DataFrame:
    return _read(db, "SELECT * FROM examples WHERE run_id = ?", [run_id])


def _expected_changes(prev: pd.DataFrame, cur: pd.DataFrame) -> set[tuple[str, str, str]]:
    """The (example_id, issue_type, change) set by the definition, straight from two audits' examples."""
    def state(frame: pd.DataFrame) -> dict[tuple[str, str], str]:
        out = {}
        for r in frame.to_dict("records"):
            for issue, col in history.ISSUE_FLAGS.items():
                if r[col]:
                    out[(r["example_id"], issue)] = "closed" if isinstance(r["decided_action"], str) else "open"
        return out

    before, after = state(prev), state(cur)
    expected = set()
    for key in set(before) | set(after):
        b, a = before.get(key), after.get(key)
        change = ({("open", "open"): "persisting", ("closed", "open"): "reopened"}.get((b, a))
                  or ("new" if a == "open" else "resolved" if b == "open" else None))
        if change:
            expected.add((*key, change))
    return expected


def _check_diff(db: str, run_id: str, prev_run: str) -> pd.DataFrame:
    """The stored diff of ``run_id`` equals the definition applied to the stored examples; counts agree."""
    changes = _read(db, "SELECT * FROM audit_changes WHERE run_id = ?", [run_id])
    assert set(changes["previous_run_id"]) <= {prev_run}
    got = set(zip(changes["example_id"], changes["issue_type"], changes["change"]))
    assert got == _expected_changes(_examples_of(db, prev_run), _examples_of(db, run_id))
    run = _read(db, "SELECT * FROM audit_runs WHERE run_id = ?", [run_id]).iloc[0]
    assert run["previous_run_id"] == prev_run
    for change in ("new", "resolved", "persisting", "reopened"):
        assert run[f"n_{change}"] == (changes["change"] == change).sum(), change
    return changes


def test_three_audits_with_edits_diff_exactly_and_keep_two(tmp_path: Path, flags: pd.DataFrame):
    db = str(tmp_path / "curated.duckdb")
    folder = tmp_path / DATASET
    settings = AuditSettings(history_keep_audits=2)

    def audit(frame: pd.DataFrame) -> str:
        write_dataset(folder, frame, MANIFEST, "flags.csv")
        outcome = run_audit(folder, db_path=db, settings=settings)
        assert outcome.success, outcome.reason()
        return outcome.summary["run_id"]

    # a tag error to fix later: the row the detector trusts most (a scratch audit of the clean rows) loses all its
    # tags; no flag is untagged, so the learned never-empty rule flags it
    write_dataset(folder, flags.iloc[:184], MANIFEST, "flags.csv")
    scratch = run_audit(folder, db_path=str(tmp_path / "scratch.duckdb"), settings=settings)
    assert scratch.success, scratch.reason()
    trusted = _examples_of(str(tmp_path / "scratch.duckdb"), scratch.summary["run_id"])
    fixed = trusted[~trusted["is_label_issue"]].sort_values(["label_quality", "example_id"])["example_id"].iloc[-1]
    base = flags.iloc[:184].copy()
    base.loc[base["flag_id"] == fixed, "labels"] = ""
    run1 = audit(base)
    ex1 = _examples_of(db, run1)
    assert _read(db, "SELECT count(*) AS n FROM audit_changes")["n"].item() == 0  # a first audit: no diff
    assert _read(db, "SELECT n_new, previous_run_id FROM audit_runs").iloc[0].isna().all()

    # between audits 1 and 2: 5 rows added, the emptied row's tags restored, one other issue reviewed
    issues = ex1[ex1["is_label_issue"]].sort_values(["label_quality", "example_id"])
    assert fixed in set(issues["example_id"])
    reviewed = issues["example_id"][issues["example_id"] != fixed].iloc[0]
    review.record_review(db, DATASET, reviewed, "keep")
    second = flags.iloc[:189].copy()
    run2 = audit(second)
    changes = _check_diff(db, run2, run1)
    added = [f"flag{i:03d}" for i in range(184, 189)]
    ec = _read(db, "SELECT * FROM example_changes WHERE run_id = ? ORDER BY change, example_id", [run2])
    assert list(zip(ec["change"], ec["example_id"])) == [("added", i) for i in added] + [("edited", fixed)]
    assert ec.iloc[-1]["tags_changed"] and not ec.iloc[-1]["content_changed"]
    run = _read(db, "SELECT n_added, n_removed, n_edited FROM audit_runs WHERE run_id = ?", [run2]).iloc[0]
    assert run.tolist() == [5, 0, 1]
    now = _examples_of(db, run2).set_index("example_id")
    assert now.loc[reviewed, "decided_action"] == "keep" and now["decided_action"].notna().sum() == 1
    for r in changes[changes["change"] != "persisting"].to_dict("records"):
        if r["example_id"] in added:
            assert (r["reason"], r["detail"]) == ("data changed", "example added")
        elif r["example_id"] == fixed:
            assert r["reason"] == "tags changed" and r["detail"].startswith("given tags: ")
        elif r["example_id"] == reviewed and r["change"] == "resolved" and \
                now.loc[reviewed, history.ISSUE_FLAGS[r["issue_type"]]]:  # still flagged, closed by the review
            assert (r["reason"], r["detail"]) == ("reviewed", "review: keep")
        else:
            assert r["reason"] == "model changed"
            assert r["detail"] == "same content and tags; other examples: 5 added, 1 edited", r
    assert ((changes["example_id"] == reviewed) & (changes["reason"] == "reviewed")).sum() >= 1
    assert ((changes["example_id"] == fixed) & (changes["change"] == "resolved")).any()  # the fix resolved it

    # between audits 2 and 3: one row with an open issue removed
    ex2 = _examples_of(db, run2)
    gone = ex2[ex2["is_label_issue"] & ex2["decided_action"].isna()]["example_id"].sort_values().iloc[0]
    run3 = audit(second[second["flag_id"] != gone])
    changes = _check_diff(db, run3, run2)
    assert _read(db, "SELECT change, example_id FROM example_changes WHERE run_id = ?", [run3]).values.tolist() == [
        ["removed", gone]]
    mine = changes[changes["example_id"] == gone]
    assert not mine.empty and set(mine["change"]) == {"resolved"}
    assert set(zip(mine["reason"], mine["detail"])) == {("data changed", "example removed")}

    # retention: keep 2 -> audit 1's per-example rows are gone, its summary stays
    for table in store.DETAIL_TABLES:
        kept = set(_read(db, f"SELECT DISTINCT run_id FROM {table}")["run_id"])
        assert kept <= {run2, run3} and (kept or table in ("quarantine", "duplicate_groups")), table
    assert set(_read(db, "SELECT DISTINCT run_id FROM predictions")["run_id"]) == {run2, run3}
    runs = _read(db, "SELECT run_id, detail_pruned FROM audit_runs ORDER BY finished_at")
    assert runs["run_id"].tolist() == [run1, run2, run3]
    assert runs["detail_pruned"].fillna(False).tolist() == [True, False, False]
    assert set(_read(db, "SELECT DISTINCT run_id FROM class_summary")["run_id"]) == {run1, run2, run3}

    # dq-pipeline history
    from dq_pipeline.cli import main

    with duckdb.connect(db) as con:  # the column issue 10 adds: printed when present
        con.execute("ALTER TABLE audit_runs ADD COLUMN IF NOT EXISTS expected_error_rate DOUBLE")
        con.execute("UPDATE audit_runs SET expected_error_rate = 0.125 WHERE run_id = ?", [run3])
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["history", DATASET, "--db", db]) == 0
        assert main(["history", "nope", "--db", db]) == 2
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 + 3 and "expected error rate" in lines[1] and "0.125" in lines[4]
    assert lines[2].split()[2] == run1[:8] and lines[2].split()[-1] == "pruned" and lines[4].split()[-1] == "kept"
    header = lines[1].split("  ")
    assert "added" in lines[1] and "removed" in lines[1] and "open label_issue" in lines[1], header
    assert f"no audit of dataset 'nope'" in err.getvalue() and f"audited: {DATASET}" in err.getvalue()

    # the review app's dataset page: the trend and the latest diff
    hist = review.dataset_history(db, DATASET)
    assert [a["run_id"] for a in hist["audits"]] == [run1, run2, run3]
    assert len(hist["trend"].split()) == 3 and hist["audits"][-1]["expected_error_rate"] == 0.125
    moved = changes[changes["change"] != "persisting"]
    assert hist["n_changes"] == len(moved) and {c["example_id"] for c in hist["changes"]} == set(moved["example_id"])
    status, page = _get(db, f"/datasets/{DATASET}")
    assert status == 200 and "Audit history (3 audit(s))" in page and "<polyline points=" in page
    assert f">{gone}</a></td><td>label issue</td><td class=\"chg-resolved\">resolved</td><td>data changed</td>" in page
    status, body = _get(db, f"/api/datasets/{DATASET}/history")
    assert status == 200 and json.loads(body)["n_changes"] == len(moved)


def _get(db: str, path: str) -> tuple[int, str]:
    """GET ``path`` from the review app over ``db`` through ASGI directly (no server, no HTTP client)."""
    import asyncio

    from dq_pipeline.review_app import create_app

    app = create_app(db)
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"127.0.0.1")], "scheme": "http", "server": ("127.0.0.1", 8765),
             "client": ("127.0.0.1", 40000), "root_path": "", "http_version": "1.1"}
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return messages[0]["status"], body.decode()


def _check_evaluation(instance: dg.DagsterInstance, run_id: str):
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    found = [r.event_log_entry.dagster_event.event_specific_data for r in records]
    return next(e for e in found if e.check_name == "regression")


def test_seeded_quality_drop_fails_the_regression_check(tmp_path: Path, flags: pd.DataFrame):
    db = str(tmp_path / "curated.duckdb")
    folder = tmp_path / DATASET
    instance = dg.DagsterInstance.ephemeral()
    noisy = flags.copy()
    rng = np.random.default_rng(0)
    classes = sorted({t for s in flags["labels"] for t in s.split("|") if t})
    flipped = rng.choice(len(noisy), size=60, replace=False)  # 31% of rows: one tag flipped
    for i in flipped:
        tags = set(filter(None, noisy.at[i, "labels"].split("|"))) ^ {classes[rng.integers(len(classes))]}
        noisy.at[i, "labels"] = "|".join(sorted(tags))
    flipped_ids = set(noisy["flag_id"].iloc[flipped])

    def audit(frame: pd.DataFrame, **settings):
        write_dataset(folder, frame, MANIFEST, "flags.csv")
        outcome = run_audit(folder, db_path=db, settings=AuditSettings(**settings), instance=instance)
        return outcome, _check_evaluation(instance, outcome.run_id)

    clean, first = audit(flags)
    assert clean.success and first.passed  # nothing to compare with
    drop, evaluation = audit(noisy)
    assert drop.success, drop.reason()  # WARN: the run succeeds
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "health score fell" in evaluation.description
    causes = set(evaluation.metadata["causing_example_ids"].value)
    changes = _read(db, "SELECT example_id FROM audit_changes WHERE run_id = ? AND change IN ('new', 'reopened')",
                    [drop.run_id])
    assert causes == set(changes["example_id"]) and evaluation.metadata["n_causing_examples"].value == len(causes)
    mats = instance.get_records_for_run(drop.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    meta = next(m.metadata for m in (r.event_log_entry.dagster_event.event_specific_data.materialization for r in mats)
                if m.asset_key == dg.AssetKey("curated"))
    assert meta["health_trend"].value.startswith(f"![{DATASET}: health per audit](data:image/png;base64,")
    n_new = len(_read(db, "SELECT 1 FROM audit_changes WHERE run_id = ? AND change = 'new'", [drop.run_id]))
    assert meta["n_new"].value == n_new > 0 and f"_{n_new} new, " in meta["latest_diff"].value
    assert "| example_id " in meta["latest_diff"].value
    # flipped rows are 31% of all; measured 27 / 68 = 0.40 with the classifier at C = 0.03 (48 / 107 = 0.45 at C = 1)
    assert len(causes & flipped_ids) / len(causes) >= 0.36
    # the blocking variant: back to clean (an improvement passes), then the same drop fails the run
    back, evaluation = audit(flags, regression_blocking=True)
    assert back.success and evaluation.passed
    blocked, evaluation = audit(noisy, regression_blocking=True)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert not blocked.success and any(g.startswith("regression: health score fell") for g in blocked.gate_failures)


# --------------------------------------------------------------------------------------- retention (store level)

def _audit_tables(day: int, n: int = 6, k: int = 3) -> tuple[dict, dict[str, pd.DataFrame]]:
    ids = [f"e{i}" for i in range(day, day + n)]  # a sliding window: rows come and go
    flags = [(i + day) % 3 == 0 for i in range(n)]
    examples = pd.DataFrame({"example_id": ids, "row_number": range(n), "given_labels": [["t0"]] * n,
                             "label_quality": np.linspace(0, 1, n), "is_label_issue": flags,
                             "is_ambiguous": False, "is_outlier": False, "is_near_duplicate": False,
                             "content_key": ids, "decided_action": None})
    tables = {
        "examples": examples,
        "predictions": pd.DataFrame({"example_id": np.repeat(ids, k), "tag": [f"t{j}" for j in range(k)] * n,
                                     "given": False, "probability": 0.5}),
        "class_summary": pd.DataFrame({"tag": [f"t{j}" for j in range(k)], "n_given": 1}),
        "curated_labels": pd.DataFrame({"example_id": ids, "labels": [["t0"]] * n, "excluded": False, "reason": ""}),
        "tag_issues": pd.DataFrame({"example_id": ids[:1], "tag": ["t0"], "given": True, "probability": 0.1,
                                    "kind": "incorrect", "score": 0.1}),
    }
    run = {"run_id": f"r{day}", "dataset": "d", "status": "success", "n_input_rows": n, "n_examples": n,
           "finished_at": pd.Timestamp("2026-01-01") + pd.Timedelta(days=day), "health_score": 1 - np.mean(flags)}
    return run, tables


def test_retention_keeps_exactly_the_last_audits_and_latest_views(tmp_path: Path):
    pruned_db, full_db = str(tmp_path / "pruned.duckdb"), str(tmp_path / "full.duckdb")
    for day in range(6):
        for db in (pruned_db, full_db):
            run, tables = _audit_tables(day)
            prev_run, prev = history.read_previous(db, "d")
            diff = history.diff_audits(prev, tables["examples"])
            tables["audit_changes"] = diff.changes.assign(previous_run_id=prev_run and prev_run["run_id"])
            store.write_audit(db, {**run, **diff.counts}, tables)
        assert store.prune_history(pruned_db, "d", keep=3) == ([f"r{day - 3}"] if day >= 3 else [])
    with duckdb.connect(pruned_db, read_only=True) as con:
        for table in ("examples", "predictions", "curated_labels", "tag_issues", "audit_changes"):
            runs = {r[0] for r in con.execute(f"SELECT DISTINCT run_id FROM {table}").fetchall()}
            assert runs == {"r3", "r4", "r5"}, table
        assert con.execute("SELECT count(*) FROM audit_runs").fetchone()[0] == 6
        assert con.execute("SELECT count(DISTINCT run_id) FROM class_summary").fetchone()[0] == 6
        assert [r[0] for r in con.execute("SELECT run_id FROM audit_runs WHERE detail_pruned ORDER BY 1").fetchall()] \
            == ["r0", "r1", "r2"]
    for table in store.TABLES:  # every latest_* view, row by row
        sql = f"SELECT * {'EXCLUDE (detail_pruned)' if table == 'audit_runs' else ''} FROM latest_{table} ORDER BY ALL"
        pd.testing.assert_frame_equal(_read(pruned_db, sql), _read(full_db, sql), obj=table)
    assert len(store.read_latest(pruned_db, "predictions")) == 18
    assert store.prune_history(pruned_db, "d", keep=3) == []  # idempotent
    with pytest.raises(ValueError, match="keep must be >= 1"):
        store.prune_history(pruned_db, "d", keep=0)


# --------------------------------------------------------------------------------------- sensor

def test_sensor_runs_only_when_the_content_changes(tmp_path: Path):
    from dq_pipeline.defs.automation import dataset_folder_sensor
    from dq_pipeline.defs.resources import DatasetsResource

    data = tmp_path / "data"
    shutil.copytree(DATA / "mulan_flags", data / "mulan_flags")
    instance = dg.DagsterInstance.ephemeral()
    resources = {"datasets": DatasetsResource(data_dir=str(data))}

    def tick(cursor: str | None):
        return dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor))

    first = tick(None)
    assert [r.partition_key for r in first.run_requests] == ["mulan_flags"]
    instance.add_dynamic_partitions("dataset", ["mulan_flags"])
    source = data / "mulan_flags" / "flags.csv"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 5_000_000_000))  # touched
    assert tick(first.cursor).run_requests == []
    source.write_bytes(source.read_bytes())  # rewritten, same bytes
    assert tick(first.cursor).run_requests == []
    source.write_bytes(source.read_bytes().replace(b"red|green", b"green|red", 1))  # one cell edited
    changed = tick(first.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["mulan_flags"]
    assert changed.cursor != first.cursor
    (data / "mulan_flags" / "notes.txt").write_text("new file")  # a new file in the folder is a change too
    assert [r.partition_key for r in tick(changed.cursor).run_requests] == ["mulan_flags"]
