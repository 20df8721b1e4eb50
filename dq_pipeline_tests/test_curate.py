"""Curation policy and audit-table assembly (pure functions, no Dagster)."""

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.curate import CurationPolicy, audit_tables, curated_labels
from dq_pipeline.issues.base import DetectorResult
from dq_pipeline.issues.label_issues import tag_issue_rows

CLASSES = ["a", "b", "c"]
Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.uint8)


def _result(flags, details=None) -> DetectorResult:
    flags = np.asarray(flags, dtype=bool)
    return DetectorResult(scores=np.where(flags, 0.1, 0.9), flags=flags, details=details)


def _dups() -> DetectorResult:
    details = pd.DataFrame({"example_index": [1, 2], "group_id": [0, 0], "kind": ["near", "near"],
                            "is_conflict": [True, True], "group_size": [2, 2]})
    return _result([False, True, True, False], details)


def test_default_policy_applies_suggestions_and_excludes_nothing():
    S = Y.copy()
    S[0, 1] = 1  # +b on example 0
    S[2, 0] = 0  # -a on example 2
    out = curated_labels(["e0", "e1", "e2", "e3"], Y, S, CLASSES, _result([1, 0, 0, 0]), _dups(), CurationPolicy())
    assert out["labels"].tolist() == [["a", "b"], ["b"], ["b"], ["c"]]
    assert not out["excluded"].any()
    assert out["reason"].tolist() == ["label issue: +b", "", "label issue: -a", ""]


def test_policy_options_exclude_outliers_and_duplicates():
    policy = CurationPolicy(exclude_outliers=True, keep_one_per_duplicate_group=True)
    out = curated_labels(["e0", "e1", "e2", "e3"], Y, Y, CLASSES, _result([0, 0, 0, 1]), _dups(), policy)
    assert out["excluded"].tolist() == [False, False, True, True]
    assert out["reason"].iloc[2] == "excluded: near-duplicate of e1"
    assert out["reason"].iloc[3] == "excluded: outlier"


def test_audit_tables_are_consistent():
    P = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.1], [0.9, 0.7, 0.2], [0.1, 0.1, 0.9]])
    flags = np.zeros_like(Y, dtype=bool)
    flags[0, 1] = True
    label = _result([1, 0, 0, 0], tag_issue_rows(Y, P, flags))
    amb = _result([0, 0, 1, 0], pd.DataFrame({"example_index": [2], "tag_index": [1]}))
    examples = pd.DataFrame({"example_id": ["e0", "e1", "e2", "e3"], "row_number": [0, 1, 3, 4],
                             "tags": [["a"], ["b"], ["a", "b"], ["c"]], "text": ["x", "y", "z" * 200, "w"]})
    quarantine = pd.DataFrame({"row_number": [2], "example_id": ["bad"], "reason": ["row 2: empty"]})
    tables, counters = audit_tables(examples, quarantine, CLASSES, "text", Y, P, np.array([0.9, 0.8, 1.0]),
                                    label, amb, _result([0, 0, 0, 0]), _dups())
    ex = tables["examples"].set_index("example_id")
    assert ex.loc["e0", "suggested_labels"] == ["a", "b"] and ex.loc["e0", "is_label_issue"]
    assert ex.loc["e2", "borderline_tags"] == ["b"]
    assert ex.loc["e1", "near_duplicate_group"] == 0 and pd.isna(ex.loc["e0", "near_duplicate_group"])
    assert ex.loc["e2", "payload"] == "z" * 200  # the full text: what a reviewer judges
    assert tables["tag_issues"][["example_id", "tag", "kind"]].values.tolist() == [["e0", "b", "missing"]]
    assert len(tables["predictions"]) == 12
    summary = tables["class_summary"].set_index("tag")
    assert summary.loc["b", "n_missing"] == 1 and summary.loc["b", "n_suggested"] == 3
    assert counters["n_examples"] + counters["n_quarantined"] == 5
    assert counters["health_score"] == 1 / 4  # only e3 carries no flag of any kind


def test_rule_violations_label_rules_and_expected_error_rate_reach_the_tables(tmp_path):
    """Real MULAN flags with a one-of-N landmass group; one country given two continents, one given none.
    Both break the learned rule: flagged, marked is_rule_violation with the rule's text, and given a suggested
    set with exactly one continent; the label_rules table and the audit_runs counters carry the rules and the
    expected error rate, and everything is written to (and read back from) a real DuckDB file."""
    from pathlib import Path

    from dq_pipeline import store
    from dq_pipeline.embed.tabular import featurize_tabular
    from dq_pipeline.ingest import load_examples, tags_matrix
    from dq_pipeline.issues.label_issues import find_label_issues
    from dq_pipeline.manifest import load_manifest
    from dq_pipeline.model import out_of_fold_probabilities

    raw = load_examples(load_manifest(Path(__file__).resolve().parent / "fixtures" / "flags_landmass"))
    ex = raw.examples
    classes = raw.classes
    X = featurize_tabular(ex, [c for c in ex.columns if c not in ("example_id", "row_number", "tags")])
    Yb = tags_matrix(ex["tags"], classes).astype(bool)
    land = [i for i, c in enumerate(classes) if c.startswith("landmass:")]
    Yb[3, land] = False
    Yb[3, land[:2]] = True  # two continents
    Yb[5, land] = False  # none
    Yi = Yb.astype(np.uint8)
    P = out_of_fold_probabilities(X, Yi).probabilities
    label = find_label_issues(Yi, P, features=X, seed=0)
    none = _result(np.zeros(len(ex), bool))
    tables, counters = audit_tables(ex, pd.DataFrame(columns=["row_number", "example_id", "reason"]), classes,
                                    "tabular", Yi, P, np.full(len(classes), 0.8), label, none, none, none)
    rows = tables["examples"]
    assert rows["is_rule_violation"].tolist() == [i in (3, 5) for i in range(len(ex))]
    group_rule = "exactly one of " + ", ".join(classes[t] for t in land)
    assert rows.loc[3, "rule_violations"] == [group_rule] and rows.loc[5, "rule_violations"] == [group_rule]
    assert rows.loc[3, "is_label_issue"] and rows.loc[5, "is_label_issue"]
    for i in (3, 5):
        assert sum(t.startswith("landmass:") for t in rows.loc[i, "suggested_labels"]) == 1
    rules = tables["label_rules"]
    assert rules.loc[0, "rule_type"] == "exclusive_group" and rules.loc[0, "n_violations"] == 2
    assert counters["n_rule_violations"] == 2
    assert counters["expected_error_rate_lo"] <= counters["expected_error_rate"] <= counters["expected_error_rate_hi"]

    db = tmp_path / "curated.duckdb"
    run = {"run_id": "r1", "dataset": "flags_landmass", "n_input_rows": len(ex), "status": "success",
           "finished_at": pd.Timestamp("2026-01-01"), **counters}
    store.write_audit(db, run, tables)
    assert store.read_latest(db, "label_rules", "flags_landmass")["rule"].tolist() == rules["rule"].tolist()
    runs = store.read_latest(db, "audit_runs", "flags_landmass")
    assert runs["expected_error_rate"].item() == pytest.approx(counters["expected_error_rate"])
    latest = store.read_latest(db, "examples", "flags_landmass", columns=["example_id", "is_rule_violation"])
    assert latest["is_rule_violation"].sum() == 2
