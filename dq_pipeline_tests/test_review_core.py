"""The review loop's core on real audits: decisions, the queue, carry-forward, export, import/export.

Real audits of bundled data (MULAN flags, a GoEmotions extract) through Dagster; no web code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dq_pipeline import review, store
from dq_pipeline.cli import main
from dq_pipeline.defs.runner import run_audit
from dq_pipeline.export import export_dataset
from dq_pipeline_tests.conftest import DATA


def _audit(folder: Path, db: Path) -> dict:
    outcome = run_audit(folder, db_path=str(db))
    assert outcome.success, outcome.reason()
    return outcome.summary


@pytest.fixture(scope="module")
def audited_flags(tmp_path_factory) -> tuple[Path, Path]:
    """MULAN flags (194 rows, tabular) copied and audited once: (folder, DuckDB file with no reviews)."""
    root = tmp_path_factory.mktemp("flags")
    folder = root / "mulan_flags"
    shutil.copytree(DATA / "mulan_flags", folder)
    db = root / "base.duckdb"
    _audit(folder, db)
    return folder, db


@pytest.fixture
def flags(audited_flags, tmp_path) -> tuple[Path, str]:
    """A fresh copy of the audited DuckDB file per test: (dataset folder, db path)."""
    folder, db = audited_flags
    copy = tmp_path / "curated.duckdb"
    shutil.copyfile(db, copy)
    return folder, str(copy)


def _latest(db: str, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def _example(db: str, example_id: str) -> dict:
    with duckdb.connect(db, read_only=True) as con:
        cur = con.execute("SELECT * FROM latest_examples WHERE dataset = 'mulan_flags' AND example_id = ?",
                          [example_id])
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchone()))


def _changed_suggestion(db: str) -> str:
    """An open label-issue example whose suggested tags differ from its given tags."""
    items = review.review_queue(db, "mulan_flags", issue="label_issue", limit=200)["items"]
    return next(i["example_id"] for i in items if set(i["suggested_labels"]) != set(i["given_labels"]))


# --------------------------------------------------------------------------------------- decisions

def test_record_review_each_action(flags, monkeypatch):
    _, db = flags
    monkeypatch.setenv("USER", "ana")
    ex_id = _changed_suggestion(db)
    before = _example(db, ex_id)
    assert before["is_open_issue"] and before["review_action"] is None and before["reopened_reason"] is None
    classes = review.dataset_overview(db, "mulan_flags")["tags"]
    expected = {"accept": before["suggested_labels"], "keep": before["given_labels"], "exclude": [],
                "set": [c for c in classes if c in ("red", "blue")]}
    for action, labels in expected.items():
        row = review.record_review(db, "mulan_flags", ex_id, action, labels=["red", "blue", "red"])
        assert row["action"] == action and row["labels"] == labels, action
        assert row["run_id"] == before["run_id"] and row["content_key"] == before["content_key"]
        assert row["given_labels"] == before["given_labels"] and row["reviewer"] == "ana"
        assert isinstance(row["reviewed_at"], str)
        now = _example(db, ex_id)  # the view shows the decision at once, no re-audit
        assert now["review_action"] == action and now["reviewed_labels"] == labels
        assert now["is_open_issue"] is False and now["reopened_reason"] is None
    row = review.record_review(db, "mulan_flags", ex_id, "keep", reviewer="bo")
    assert row["reviewer"] == "bo"
    assert len(review.export_reviews(db)) == 5  # append-only: every decision kept, the latest applies
    assert review.example_detail(db, "mulan_flags", ex_id)["review"]["action"] == "keep"


@pytest.mark.parametrize("call, status, message", [
    (lambda db, ex: review.record_review(db, "nope", ex, "keep"), 404, "unknown dataset 'nope'"),
    (lambda db, ex: review.record_review(db, "mulan_flags", "99999", "keep"), 404, "unknown example '99999'"),
    (lambda db, ex: review.record_review(db, "mulan_flags", ex, "delete"), 400, "action must be one of"),
    (lambda db, ex: review.record_review(db, "mulan_flags", ex, "set"), 400, "'set' needs labels"),
    (lambda db, ex: review.record_review(db, "mulan_flags", ex, "set", ["red", "purple"]), 400, "'purple'"),
    (lambda db, ex: review.record_review(db, "mulan_flags", ex, "set", "red"), 400, "must be a list"),
    (lambda db, ex: review.review_queue(db, "mulan_flags", issue="typo"), 400, "issue must be one of"),
    (lambda db, ex: review.review_queue(db, "mulan_flags", state="done"), 400, "state must be one of"),
    (lambda db, ex: review.review_queue(db, "mulan_flags", tag="purple"), 400, "unknown tag 'purple'"),
    (lambda db, ex: review.review_queue(db, "mulan_flags", kind="wrong"), 400, "kind must be one of"),
    (lambda db, ex: review.review_queue(db, "mulan_flags", limit=-1), 400, "limit must be"),
    (lambda db, ex: review.example_detail(db, "mulan_flags", "x"), 404, "unknown example 'x'"),
    (lambda db, ex: review.dataset_overview(db, "nope"), 404, "unknown dataset"),
])
def test_validation_errors(flags, call, status, message):
    _, db = flags
    ex_id = _changed_suggestion(db)
    with pytest.raises(review.ReviewError, match=message) as info:
        call(db, ex_id)
    assert info.value.status == status
    assert review.export_reviews(db).empty  # nothing stored


# --------------------------------------------------------------------------------------- the queue

def test_queue_filters_ordering_and_paging(flags):
    _, db = flags
    flagged = _latest(db, "SELECT example_id FROM latest_examples WHERE dataset = 'mulan_flags' AND (is_label_issue "
                          "OR is_ambiguous OR is_outlier OR is_near_duplicate)")
    full = review.review_queue(db, "mulan_flags", limit=1000)
    assert full["total"] == len(flagged) == len(full["items"]) > 50
    assert {i["example_id"] for i in full["items"]} == {r[0] for r in flagged}
    keys = [(i["severity"], i["example_id"]) for i in full["items"]]
    assert keys == sorted(keys)
    for item in full["items"]:  # severity = the lowest score among the example's flags
        scores = [s for s, f in ((item["label_quality"], item["is_label_issue"]), (item["ambiguity"],
                  item["is_ambiguous"]), (item["outlier_score"], item["is_outlier"])) if f]
        assert item["severity"] == (min(scores) if scores else 1.0)
        assert set(item) >= set(review.ITEM_COLUMNS) | {"tag_issues"}
    pages = [review.review_queue(db, "mulan_flags", limit=7, offset=o) for o in range(0, full["total"] + 7, 7)]
    assert all(p["total"] == full["total"] for p in pages)
    assert [i["example_id"] for p in pages for i in p["items"]] == [i["example_id"] for i in full["items"]]
    assert pages[-1]["items"] == []

    datasets = review.list_datasets(db)
    assert datasets[0]["dataset"] == "mulan_flags" and datasets[0]["n_open"] == full["total"]
    for issue, column in (("label_issue", "is_label_issue"), ("ambiguous", "is_ambiguous"),
                          ("outlier", "is_outlier"), ("near_duplicate", "is_near_duplicate"),
                          ("conflict", "near_duplicate_conflict")):
        n = _latest(db, f"SELECT count(*) FROM latest_examples WHERE dataset = 'mulan_flags' AND {column}")[0][0]
        got = review.review_queue(db, "mulan_flags", issue=issue, limit=1000)
        assert got["total"] == n and all(i[column] for i in got["items"]), issue
    assert datasets[0]["n_label_issues"] == review.review_queue(db, "mulan_flags", issue="label_issue")["total"]
    n_broken = _latest(db, "SELECT count(*) FROM latest_examples WHERE dataset = 'mulan_flags' AND is_rule_violation")
    assert review.review_queue(db, "mulan_flags", issue="rule_violation")["total"] == n_broken[0][0] \
        == datasets[0]["n_rule_violations"]

    tag_rows = _latest(db, "SELECT example_id, tag, kind FROM latest_tag_issues WHERE dataset = 'mulan_flags'")
    tag, kind = tag_rows[0][1], tag_rows[0][2]
    by_tag = review.review_queue(db, "mulan_flags", tag=tag, limit=1000, state="all")
    assert {i["example_id"] for i in by_tag["items"]} == {e for e, t, _ in tag_rows if t == tag}
    assert all(any(t["tag"] == tag for t in i["tag_issues"]) for i in by_tag["items"])
    by_kind = review.review_queue(db, "mulan_flags", tag=tag, kind=kind, limit=1000, state="all")
    assert {i["example_id"] for i in by_kind["items"]} == {e for e, t, k in tag_rows if t == tag and k == kind}
    only_kind = review.review_queue(db, "mulan_flags", kind="missing", limit=1000, state="all")
    assert {i["example_id"] for i in only_kind["items"]} == {e for e, _, k in tag_rows if k == "missing"}

    first = [i["example_id"] for i in full["items"][:3]]
    for ex_id in first:
        review.record_review(db, "mulan_flags", ex_id, "keep")
    assert review.review_queue(db, "mulan_flags")["total"] == full["total"] - 3
    reviewed = review.review_queue(db, "mulan_flags", state="reviewed")
    assert reviewed["total"] == 3 and [i["example_id"] for i in reviewed["items"]] == first
    assert all(i["review_action"] == "keep" and not i["is_open_issue"] for i in reviewed["items"])
    assert review.review_queue(db, "mulan_flags", state="all")["total"] == full["total"]
    assert review.list_datasets(db)[0]["n_reviewed"] == 3


def test_example_detail(flags):
    folder, db = flags
    item = review.review_queue(db, "mulan_flags", issue="label_issue", limit=1)["items"][0]
    detail = review.example_detail(db, "mulan_flags", item["example_id"])
    assert {k: detail[k] for k in item} == item
    assert detail["modality"] == "tabular" and detail["folder"] == str(folder.resolve())
    assert detail["review"] is None and detail["duplicates"] == []
    classes = review.dataset_overview(db, "mulan_flags")["tags"]
    assert [t["tag"] for t in detail["tags"]] == classes
    probs = dict(_latest(db, "SELECT tag, probability FROM latest_predictions WHERE dataset = 'mulan_flags' AND "
                             "example_id = ?", [item["example_id"]]))
    kinds = {t["tag"]: t["kind"] for t in item["tag_issues"]}
    assert kinds  # a label issue has at least one flagged tag
    for t in detail["tags"]:
        assert t["given"] == (t["tag"] in item["given_labels"])
        assert t["suggested"] == (t["tag"] in item["suggested_labels"])
        assert t["probability"] == pytest.approx(probs[t["tag"]]) and t["kind"] == kinds.get(t["tag"])
    # the payload is the row's raw feature values (what a person judges)
    raw = pd.read_csv(folder / "flags.csv").iloc[item["row_number"]]
    payload = json.loads(detail["payload"])
    assert list(payload) == [c for c in raw.index if c != "labels"]
    assert float(payload["area"]) == raw["area"] and payload["landmass"] == str(raw["landmass"])
    review.record_review(db, "mulan_flags", item["example_id"], "exclude")
    assert review.example_detail(db, "mulan_flags", item["example_id"])["review"]["action"] == "exclude"


def test_overview_lists_classes(flags):
    _, db = flags
    overview = review.dataset_overview(db, "mulan_flags")
    assert overview["tags"] == ["black", "blue", "green", "orange", "red", "white", "yellow"]
    assert [c["tag"] for c in overview["classes"]] == overview["tags"] and "oof_auroc" in overview["classes"][0]
    assert overview["n_examples"] == 194 and overview["modality"] == "tabular"
    assert overview["health_score_now"] == pytest.approx(1 - overview["n_open"] / 194)


def test_accept_top(flags):
    _, db = flags
    before = review.review_queue(db, "mulan_flags", issue="label_issue", limit=5)
    assert review.accept_top(db, "mulan_flags", 5, issue="label_issue", reviewer="bulk") == 5
    after = review.review_queue(db, "mulan_flags", issue="label_issue", limit=1000)
    assert after["total"] == before["total"] - 5
    done = review.review_queue(db, "mulan_flags", state="reviewed", limit=100)
    assert sorted(i["example_id"] for i in done["items"]) == sorted(i["example_id"] for i in before["items"])
    assert all(i["review_action"] == "accept" and i["reviewed_labels"] == i["suggested_labels"]
               for i in done["items"])
    assert set(review.export_reviews(db)["reviewer"]) == {"bulk"}
    assert review.accept_top(db, "mulan_flags", 0) == 0
    with pytest.raises(review.ReviewError, match="k must be >= 0"):
        review.accept_top(db, "mulan_flags", -1)


# --------------------------------------------------------------------------------------- carry forward

def test_decisions_carry_forward_and_reopen_when_content_or_tags_change(audited_flags, tmp_path):
    base_folder, base_db = audited_flags
    folder = tmp_path / "mulan_flags"
    shutil.copytree(base_folder, folder)
    db = str(tmp_path / "curated.duckdb")
    shutil.copyfile(base_db, db)
    first = review.list_datasets(db)[0]
    items = review.review_queue(db, "mulan_flags", issue="label_issue", limit=200)["items"]
    accepted = next(i for i in items if set(i["suggested_labels"]) != set(i["given_labels"]))
    kept, excluded = [i for i in items if i["example_id"] != accepted["example_id"]][:2]
    review.record_review(db, "mulan_flags", accepted["example_id"], "accept")
    review.record_review(db, "mulan_flags", kept["example_id"], "keep")
    review.record_review(db, "mulan_flags", excluded["example_id"], "exclude")
    ids = {"accept": accepted["example_id"], "keep": kept["example_id"], "exclude": excluded["example_id"]}

    second = _audit(folder, db)  # unchanged data: every decision still valid
    run = review.list_datasets(db)[0]
    assert run["run_id"] != first["run_id"] and run["n_reviewed"] == 3
    assert second["health_score"] == pytest.approx(first["health_score"] + 3 / 194)
    assert _latest(db, "SELECT n_open_issues FROM latest_audit_runs")[0][0] == first["n_open"] - 3
    for action, ex_id in ids.items():
        row = _example(db, ex_id)
        assert row["review_action"] == action and not row["is_open_issue"] and row["reopened_reason"] is None
    curated = {r[0]: r[1:] for r in _latest(db, "SELECT example_id, labels, excluded, reason FROM "
                                                "latest_curated_labels WHERE dataset = 'mulan_flags'")}
    assert curated[ids["accept"]] == (accepted["suggested_labels"], False, "review: accept")
    assert curated[ids["keep"]] == (kept["given_labels"], False, "review: keep")
    assert curated[ids["exclude"]][1:] == (True, "review: exclude")

    # change the accepted row's content and the kept row's given tags; leave the excluded row alone
    source = folder / "flags.csv"
    lines = source.read_text().splitlines(keepends=True)
    row_a, row_k = accepted["row_number"] + 1, kept["row_number"] + 1  # + header line
    cells = lines[row_a].split(",")
    cells[2] = str(float(cells[2]) + 1.0)  # area
    lines[row_a] = ",".join(cells)
    head, labels = lines[row_k].rstrip("\n").rsplit(",", 1)
    tags = labels.split("|")
    new_tags = [t for t in tags if t != tags[0]] if len(tags) > 1 else [*tags, "white" if tags[0] != "white"
                                                                        else "red"]
    lines[row_k] = head + "," + "|".join(new_tags) + "\n"
    source.write_text("".join(lines))
    _audit(folder, db)
    row = _example(db, ids["accept"])
    assert row["review_action"] is None and row["reopened_reason"] == "content changed since review"
    assert row["is_open_issue"] == bool(row["is_label_issue"] or row["is_ambiguous"] or row["is_outlier"]
                                        or row["is_near_duplicate"])
    row = _example(db, ids["keep"])
    assert row["review_action"] is None and row["reopened_reason"] == "given tags changed since review"
    row = _example(db, ids["exclude"])
    assert row["review_action"] == "exclude" and row["reopened_reason"] is None and not row["is_open_issue"]
    curated = {r[0]: r[1:] for r in _latest(db, "SELECT example_id, excluded, reason FROM latest_curated_labels "
                                                "WHERE dataset = 'mulan_flags'")}
    assert curated[ids["exclude"]] == (True, "review: exclude")
    assert not curated[ids["accept"]][1].startswith("review") and not curated[ids["keep"]][1].startswith("review")
    reopened = review.review_queue(db, "mulan_flags", state="all", limit=1000)["items"]
    assert {i["example_id"] for i in reopened if i["reopened_reason"]} >= {ids["accept"], ids["keep"]}


# --------------------------------------------------------------------------------------- text + export

def test_text_payload_and_export_applies_decisions_made_after_the_audit(text_dataset, db_path, tmp_path):
    _audit(text_dataset, db_path)
    name = text_dataset.name
    source = pd.read_csv(text_dataset / "comments.csv", keep_default_na=False)
    items = review.review_queue(db_path, name, limit=1000)["items"]
    assert items
    for item in items[:20]:  # the full text, its sha256 the content key
        text = source.loc[source["id"] == item["example_id"], "text"].iloc[0]
        assert item["payload"] == text
        assert _latest(db_path, "SELECT content_key FROM latest_examples WHERE example_id = ?",
                       [item["example_id"]])[0][0] == hashlib.sha256(text.encode()).hexdigest()
    before = tmp_path / "before.csv"
    export_dataset(name, before, data_dir=text_dataset.parent, db_path=db_path)

    classes = review.dataset_overview(db_path, name)["tags"]
    set_item, gone = items[0], items[1]
    new_tags = [c for c in classes if c not in set_item["suggested_labels"]][:2]
    review.record_review(db_path, name, set_item["example_id"], "set", new_tags)
    review.record_review(db_path, name, gone["example_id"], "exclude")
    after = tmp_path / "after.csv"
    summary = export_dataset(name, after, data_dir=text_dataset.parent, db_path=db_path)
    assert summary.n_excluded == 1
    old_lines = before.read_bytes().splitlines(keepends=True)
    new_lines = after.read_bytes().splitlines(keepends=True)
    out = pd.read_csv(after, keep_default_na=False).set_index("id")
    assert gone["example_id"] not in out.index
    assert set(out.loc[set_item["example_id"], "labels"].split("|")) == set(new_tags)
    # every other byte as before the decisions: one line dropped, one labels cell edited
    kept = [line for line in old_lines if not line.startswith(gone["example_id"].encode() + b",")]
    assert len(kept) == len(old_lines) - 1 == len(new_lines)
    diff = [(a, b) for a, b in zip(kept, new_lines) if a != b]
    assert len(diff) == 1 and diff[0][0].startswith(set_item["example_id"].encode() + b",")
    assert diff[0][0].rsplit(b",", 1)[0] == diff[0][1].rsplit(b",", 1)[0]


# --------------------------------------------------------------------------------------- migration

def test_schema_v2_file_gains_reviews(tmp_path):
    db = tmp_path / "v2.duckdb"
    with duckdb.connect(str(db)) as con:  # a file exactly as the v2 code left it, holding one audit
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, description VARCHAR, "
                    "applied_at TIMESTAMP)")
        for migration in store.MIGRATIONS[:2]:
            for statement in migration.statements:
                con.execute(statement)
            con.execute("INSERT INTO schema_version VALUES (?, ?, current_timestamp::TIMESTAMP)",
                        [migration.version, migration.description])
        con.execute(store._LATEST_RUNS_SQL)
        for name in list(store.BASELINE_TABLES)[1:]:  # the v2 tables
            con.execute(store._LATEST_TABLE_SQL.format(name=name))
        con.execute("INSERT INTO audit_runs (run_id, dataset, finished_at, status, n_examples) VALUES "
                    "('r1', 'old', '2025-01-01', 'success', 2)")
        con.execute("INSERT INTO examples (dataset, run_id, example_id, given_labels, is_label_issue, is_ambiguous, "
                    "is_outlier, is_near_duplicate) VALUES ('old', 'r1', '0', ['a'], true, false, false, false), "
                    "('old', 'r1', '1', ['b'], false, false, false, false)")
    assert review.export_reviews(db).empty  # a read migrates the writable file
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == store.SCHEMA_VERSION >= 3
        columns = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'reviews'")
                   .fetchall()}
        assert columns == set(store.REVIEW_COLUMNS)
        rows = con.execute("SELECT example_id, review_action, is_open_issue, reopened_reason FROM latest_examples "
                           "ORDER BY 1").fetchall()
        assert rows == [("0", None, True, None), ("1", None, False, None)]
        assert con.execute("SELECT comment FROM duckdb_columns() WHERE table_name = 'audit_runs' AND column_name = "
                           "'health_score'").fetchone()[0].startswith("fraction of examples with no open issue")
    assert review.list_datasets(db)[0]["n_open"] == 1
    with pytest.raises(review.ReviewError, match="predates review decisions .* re-audit"):
        review.record_review(db, "old", "0", "keep")  # no content_key: the decision could never be kept
    assert review.accept_top(db, "old", 5) == 0 and review.export_reviews(db).empty


# --------------------------------------------------------------------------------------- import / export

def test_reviews_export_import_round_trip(audited_flags, flags, tmp_path, capsys):
    _, base_db = audited_flags
    _, db = flags
    items = review.review_queue(db, "mulan_flags", limit=4)["items"]
    review.record_review(db, "mulan_flags", items[0]["example_id"], "accept", reviewer="ana")
    review.record_review(db, "mulan_flags", items[1]["example_id"], "keep")
    review.record_review(db, "mulan_flags", items[2]["example_id"], "exclude")
    review.record_review(db, "mulan_flags", items[3]["example_id"], "set", ["red", "white"])
    expected = review.export_reviews(db)
    for suffix in ("csv", "jsonl"):
        out = tmp_path / f"reviews.{suffix}"
        assert main(["reviews", "export", "--dataset", "mulan_flags", "--out", str(out), "--db", db]) == 0
        other = tmp_path / f"other_{suffix}.duckdb"
        shutil.copyfile(base_db, other)
        assert main(["reviews", "import", str(out), "--db", str(other)]) == 0
        assert "imported 4 review decision(s)" in capsys.readouterr().out
        pd.testing.assert_frame_equal(review.export_reviews(other), expected)
    assert main(["reviews", "export", "--db", db]) == 0  # CSV to stdout
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == ",".join(review.REVIEW_COLUMNS) and len(printed) == 5 and "red|white" in printed[4]


def test_reviews_import_minimal_file_and_errors_name_file_and_line(flags, tmp_path, capsys):
    _, db = flags
    ids = [i["example_id"] for i in review.review_queue(db, "mulan_flags", limit=2)["items"]]
    good = tmp_path / "decisions.jsonl"
    good.write_text(json.dumps({"dataset": "mulan_flags", "example_id": ids[0], "action": "set",
                                "labels": ["blue"]}) + "\n\n"
                    + json.dumps({"dataset": "mulan_flags", "example_id": ids[1], "action": "keep"}) + "\n")
    assert review.import_reviews(db, good) == 2
    assert _example(db, ids[0])["reviewed_labels"] == ["blue"] and _example(db, ids[1])["review_action"] == "keep"
    n = len(review.export_reviews(db))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"dataset,example_id,action,labels\nmulan_flags,{ids[0]},set,red|blue\n"
                   "mulan_flags,no-such-row,keep,\n")
    with pytest.raises(review.ReviewError, match=r"bad\.csv:3: unknown example 'no-such-row'"):
        review.import_reviews(db, bad)
    assert main(["reviews", "import", str(bad), "--db", db]) == 2
    assert "bad.csv:3: unknown example 'no-such-row'" in capsys.readouterr().err
    bad.write_text(f"dataset,example_id,action\nmulan_flags,{ids[0]},keep\nmulan_flags,{ids[1]},approve\n")
    with pytest.raises(review.ReviewError, match=r"bad\.csv:3: action must be one of .*'approve'"):
        review.import_reviews(db, bad)
    bad.write_text(f"dataset,example_id,action,labels\nmulan_flags,{ids[0]},set,red|purple\n")
    with pytest.raises(review.ReviewError, match=r"bad\.csv:2: unknown tag\(s\) 'purple'"):
        review.import_reviews(db, bad)
    bad.write_text("dataset,example\nmulan_flags,1\n")
    with pytest.raises(review.ReviewError, match=r"bad\.csv:1: missing column\(s\) example_id, action"):
        review.import_reviews(db, bad)
    assert len(review.export_reviews(db)) == n  # all or nothing: none of the bad files' rows stored
