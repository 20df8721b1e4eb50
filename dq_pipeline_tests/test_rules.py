"""Learned label structure (dq_pipeline.rules): exclusive groups, cardinality bounds, implications, their
violations and repairs; on synthetic tags and on the real MULAN flags with a one-of-N landmass group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dq_pipeline import rules as lr

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _synthetic(n: int = 400, seed: int = 0) -> np.ndarray:
    """Tags 0-2 exactly one of (a group), tag 3 free, tag 4 => tag 5 (always), tag 6 rare."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, 7), dtype=bool)
    Y[np.arange(n), rng.integers(0, 3, n)] = True
    Y[:, 3] = rng.random(n) < 0.4
    Y[:, 4] = rng.random(n) < 0.3
    Y[:, 5] = Y[:, 4] | (rng.random(n) < 0.2)
    Y[:, 6] = rng.random(n) < 0.03
    return Y


def test_learns_the_group_the_bounds_and_the_implication():
    Y = _synthetic()
    rules = lr.learn_label_rules(Y)
    assert rules.groups == ((0, 1, 2),)
    assert rules.min_tags == 1
    assert (4, 5) in rules.implications and (5, 4) not in rules.implications
    assert not lr.violation_counts(rules, Y).any()
    table = rules.table([f"t{i}" for i in range(7)], Y)
    assert table.loc[0, "rule"] == "exactly one of t0, t1, t2" and table.loc[0, "confidence"] == 1.0
    assert set(table["rule_type"]) >= {"exclusive_group", "min_tags", "implication"}


def test_rules_survive_a_few_percent_of_noise_and_name_the_violators():
    Y = _synthetic()
    noisy = Y.copy()
    rows = np.arange(0, 400, 40)  # 10 rows (2.5%): a second group member added
    noisy[rows, 0] = True
    noisy[rows, 1] = True
    rules = lr.learn_label_rules(noisy)
    assert rules.groups == ((0, 1, 2),)
    broken = lr.violations(rules, noisy, [f"t{i}" for i in range(7)])
    assert {i for i, b in enumerate(broken) if "exactly one of t0, t1, t2" in b} == set(rows.tolist())


def test_no_group_when_tags_co_occur_and_no_never_empty_when_empty_rows_are_common():
    rng = np.random.default_rng(1)
    Y = rng.random((300, 5)) < 0.3  # independent tags: 17% of rows empty, pairs co-occur
    rules = lr.learn_label_rules(Y)
    assert rules.groups == () and rules.min_tags == 0 and rules.implications == ()


def _groups_by_recount(Y: np.ndarray) -> list[tuple[tuple[int, ...], float]]:
    """The greedy group search of ``rules._learn_groups`` written directly: every step recounts all N rows."""
    excl = lr._exclusive_pairs(lr.cooccurrence(Y))
    n = Y.sum(axis=0)
    assigned = np.zeros(Y.shape[1], dtype=bool)
    groups = []
    for start in np.argsort(-n, kind="stable"):
        if assigned[start] or n[start] == 0:
            continue
        members, count = [int(start)], Y[:, start].astype(np.int64)
        while True:
            cand = [c for c in np.flatnonzero(~assigned & excl[members].all(axis=0)) if c not in members]
            if not cand:
                break
            after = [((count + Y[:, c]) == 1).mean() for c in cand]
            best = int(np.argmax(after))
            if after[best] <= (count == 1).mean():
                break
            members.append(int(cand[best]))
            count = count + Y[:, cand[best]]
        if len(members) >= 2 and (count == 1).mean() >= lr.GROUP_MIN_EXACTLY_ONE:
            groups.append((tuple(sorted(members)), float((count == 1).mean())))
            assigned[members] = True
    return groups


def test_group_search_keeps_its_counts_right():
    """The group search updates its counts from the rows of each added tag; the result is the full recount's,
    share included, on one-of-N blocks with noise and on unstructured tags."""
    rng = np.random.default_rng(3)
    found_groups = 0
    for trial in range(60):
        n, k = int(rng.integers(20, 300)), int(rng.integers(2, 12))
        Y = rng.random((n, k)) < rng.uniform(0.05, 0.4)
        if trial % 2:
            g = int(rng.integers(2, k + 1))
            Y[:, :g] = False
            Y[np.arange(n), rng.integers(0, g, n)] = True
            Y[rng.random((n, k)) < 0.02] ^= True
        expected = _groups_by_recount(Y)
        assert lr._learn_groups(Y) == expected
        found_groups += len(expected)
    assert found_groups >= 5  # the cases do exercise groups (8 with this seed)


def test_group_search_counts_the_overlap_of_a_member_added_earlier():
    """Tags a (3,400 rows), b (300), c (150) and d (165 = 155 alone + 10 of b's rows); c and d share 35 rows, so
    only one of them can join. After a and b, c leaves 3,850 examples with exactly one member and d 3,845 (its
    10 rows with b count twice): c joins. A search that forgot d's rows already covered by b would pick d."""
    Y = np.zeros((4000, 4), dtype=bool)
    Y[:3400, 0] = True
    Y[3400:3700, 1] = True
    Y[3700:3850, 2] = True
    Y[3815:3970, 3] = True
    Y[3400:3410, 3] = True
    expected = [((0, 1, 2), 3850 / 4000)]
    assert _groups_by_recount(Y) == expected
    assert lr._learn_groups(Y) == expected


def test_json_round_trip():
    rules = lr.learn_label_rules(_synthetic())
    data = json.loads(json.dumps(rules.to_dict([f"t{i}" for i in range(7)])))
    back = lr.LabelRules.from_dict(data)
    assert back == rules
    assert data["descriptions"][0] == "exactly one of t0, t1, t2"


def test_repair_swaps_inside_a_group_fills_empty_rows_and_follows_implications():
    rules = lr.learn_label_rules(_synthetic())
    p = np.array([0.1, 0.7, 0.2, 0.5, 0.1, 0.1, 0.05])
    fixed = lr.repair(rules, np.array([1, 1, 0, 0, 0, 0, 0], bool), p)  # two group members: keep the likelier
    assert fixed.tolist() == [0, 1, 0, 0, 0, 0, 0]
    fixed = lr.repair(rules, np.zeros(7, bool), p)  # empty: one member of the group (the likeliest)
    assert fixed.tolist() == [0, 1, 0, 0, 0, 0, 0]
    fixed = lr.repair(rules, np.array([0, 0, 1, 0, 1, 0, 0], bool), p)  # 4 => 5
    assert fixed[5] and not lr.violation_counts(rules, fixed[None, :]).any()


def test_empty_and_degenerate_inputs():
    assert lr.learn_label_rules(np.zeros((0, 3))).n_rules == 0
    assert lr.learn_label_rules(np.zeros((5, 0))).n_rules == 0
    rules = lr.learn_label_rules(np.zeros((10, 3)))
    assert rules.min_tags == 0 and rules.groups == ()
    with pytest.raises(ValueError, match="shape"):
        lr.learn_label_rules(np.zeros(4))


def test_real_flags_learn_the_landmass_group():
    """MULAN flags with the landmass code as six one-of-N tags (fixture made by make_flags_landmass.py): the
    group is learned exactly, colours stay free, and no row is empty."""
    from dq_pipeline.ingest import load_examples, tags_matrix
    from dq_pipeline.manifest import load_manifest

    raw = load_examples(load_manifest(FIXTURES / "flags_landmass"))
    Y = tags_matrix(raw.examples["tags"], raw.classes).astype(bool)
    rules = lr.learn_label_rules(Y)
    groups = [{raw.classes[t] for t in g} for g in rules.groups]
    assert groups == [{c for c in raw.classes if c.startswith("landmass:")}]
    assert rules.min_tags == 1
