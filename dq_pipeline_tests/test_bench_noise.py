"""Noise models, baselines, metrics and report logic of the label-error quality benchmark
(bench/noise.py, bench/baselines.py, bench/metrics.py, bench/bench_quality.py), on real data bundled in
the repository (data/): MULAN emotions, MULAN flags (with its nominal codes as one-of-N tag groups) and
the GoEmotions sample (no comment without a tag)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import baselines as bb
from bench import metrics as bm
from bench import noise as bn

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def emotions(emotions_frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(X standardised (593, 72), Y (593, 6) uint8) from the real MULAN emotions data."""
    tags = sorted({t for s in emotions_frame["labels"] for t in s.split("|") if t})
    Y = np.array([[t in s.split("|") for t in tags] for s in emotions_frame["labels"]], dtype=np.uint8)
    X = emotions_frame.drop(columns="labels").to_numpy(dtype=np.float64)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, Y


# ------------------------------------------------------------------------------------------------ noise


@pytest.fixture
def flags_groups() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(X (194, 17), Y (194, 17), groups): MULAN flags' 7 colour tags plus its nominal landmass (6) and
    zone (4) codes as one-of-N tag groups (every flag has exactly one of each), as bench 'flags-groupsA'."""
    from bench.datasets import _group_tags, _tag_matrix

    frame = pd.read_csv(REPO / "data" / "mulan_flags" / "flags.csv", keep_default_na=False)
    Yc, _ = _tag_matrix(frame["labels"])
    G, _, groups = _group_tags(frame, ("landmass", "zone"))
    Y = np.concatenate([Yc, G], axis=1)
    X = frame.drop(columns=["labels", "landmass", "zone"]).to_numpy(dtype=np.float64)
    return X, Y, [np.asarray(g) + Yc.shape[1] for g in groups]


@pytest.fixture
def goemotions_y() -> np.ndarray:
    """(1261, 28) tags of the bundled GoEmotions sample: every comment carries at least one."""
    from bench.datasets import _tag_matrix

    frame = pd.read_csv(REPO / "data" / "goemotions_sample" / "comments.csv", keep_default_na=False)
    return _tag_matrix(frame["labels"])[0]


@pytest.mark.parametrize("kind", bn.NOISE_MODELS)
def test_changed_mask_is_exactly_what_changed_and_seeded(flags_groups, kind):
    X, Y, groups = flags_groups
    Yn, changed = bn.inject_noise(kind, Y, 0.2, seed=3, X=X, groups=groups)
    assert Yn.shape == Y.shape and Yn.dtype == np.uint8
    np.testing.assert_array_equal(changed, Yn != Y)
    assert changed.any()
    again, _ = bn.inject_noise(kind, Y, 0.2, seed=3, X=X, groups=groups)
    other, _ = bn.inject_noise(kind, Y, 0.2, seed=4, X=X, groups=groups)
    np.testing.assert_array_equal(again, Yn)
    assert not np.array_equal(other, Yn)


def test_flip_rates_hit_the_target_and_keep_prevalence(emotions):
    _, Y = emotions
    r1, r0 = bn.flip_rates(Y, 0.1)
    Yb = Y.astype(bool)
    expected = np.mean(1 - np.prod(np.where(Yb, 1 - r1, 1 - r0), axis=1))
    assert expected == pytest.approx(0.1, abs=1e-6)
    n1 = Yb.sum(axis=0)
    np.testing.assert_allclose(r1 * n1, r0 * (len(Y) - n1))  # expected removals == expected additions


@pytest.mark.parametrize("rate", [0.05, 0.2])
def test_flip_noise_honours_rate_and_flips_both_ways(emotions, rate):
    _, Y = emotions
    fractions = []
    for seed in range(5):
        Yn, changed = bn.flip_noise(Y, rate, seed)
        fractions.append(changed.any(axis=1).mean())
        assert (changed & (Y == 1)).any() and (changed & (Y == 0)).any()
    # mean of 5 x 593 Bernoulli(rate) draws: sd <= 0.008
    assert np.mean(fractions) == pytest.approx(rate, abs=0.03)


def test_missing_noise_drops_exactly_one_tag_from_rate_of_examples(emotions):
    _, Y = emotions
    Yn, changed = bn.missing_noise(Y, 0.1, seed=0)
    assert changed.any(axis=1).sum() == round(0.1 * len(Y))
    assert set(changed.sum(axis=1)) == {0, 1}
    assert (Y[changed] == 1).all() and (Yn[changed] == 0).all()  # only forgotten tags


def test_confusion_noise_swaps_one_tag_for_a_confusable_one(emotions):
    X, Y = emotions
    Yn, changed = bn.confusion_noise(Y, 0.2, seed=1, X=X)
    rows = changed.any(axis=1)
    assert rows.sum() == round(0.2 * len(Y))
    np.testing.assert_array_equal(Yn.sum(axis=1), Y.sum(axis=1))  # cardinality kept
    assert ((changed & (Y == 1)).sum(axis=1)[rows] == 1).all()
    assert ((changed & (Y == 0)).sum(axis=1)[rows] == 1).all()
    # co-occurrence only: the new tag always co-occurs with the replaced one in the clean tags
    Yc, ch = bn.confusion_noise(Y, 0.2, seed=1, X=None, cooc_weight=1.0)
    cooc = Y.T.astype(int) @ Y.astype(int)
    for i in np.flatnonzero(ch.any(axis=1)):
        old = np.flatnonzero(ch[i] & (Y[i] == 1))[0]
        new = np.flatnonzero(ch[i] & (Y[i] == 0))[0]
        assert cooc[old, new] > 0


def test_tag_confusion_is_row_stochastic_without_self(emotions):
    X, Y = emotions
    M = bn.tag_confusion(Y, X)
    np.testing.assert_allclose(M.sum(axis=1), 1.0)
    np.testing.assert_array_equal(np.diag(M), 0.0)
    assert (M >= 0).all()


def test_unreachable_rate_is_refused():
    Y = np.array([[1, 0], [0, 0], [0, 0], [0, 0]], dtype=np.uint8)
    with pytest.raises(ValueError, match="eligible"):
        bn.missing_noise(Y, 0.5)
    with pytest.raises(ValueError):
        bn.inject_noise("typo", Y, 0.1)


# ---------------------------------------------------------------------------------------------- metrics


def test_ranking_metrics_on_a_hand_made_case():
    truth = np.array([1, 0, 1, 0], dtype=bool)
    scores = np.array([0.1, 0.2, 0.3, 0.9])  # low = error: ranking T, F, T, F
    assert bm.auprc(truth, scores) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert bm.auroc(truth, scores) == pytest.approx(3 / 4)
    assert bm.precision_at(truth, scores) == pytest.approx(1 / 2)  # T = 2 lowest: T, F
    assert bm.auprc(truth, -scores) < bm.auprc(truth, scores)
    assert np.isnan(bm.auroc(np.zeros(4, bool), scores))


def test_precision_at_resolves_ties_in_expectation():
    truth = np.array([1, 0, 0, 1], dtype=bool)
    scores = np.array([0.1, 0.5, 0.5, 0.5])
    # item 0 is in; one more place among three tied items, one of which is an error
    assert bm.precision_at(truth, scores, 2) == pytest.approx((1 + 1 / 3) / 2)


def test_best_f1_is_the_best_threshold_and_keeps_ties_together():
    truth = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    # cut-offs flag 1..6 lowest: F1 = 2 tp / (k + 3) = 2/4, 2/5, 4/6, 6/7, 6/8, 6/9 -> 6/7
    assert bm.best_f1(truth, scores) == pytest.approx(6 / 7)
    assert bm.best_f1(truth, scores) >= bm.precision_at(truth, scores)  # F1 at the true count is one cut-off
    # the two lowest tie: they are flagged together (2/5 with one hit), never the error alone (2/4)
    tied = np.array([0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    assert bm.best_f1(truth, tied) == pytest.approx(max(2 * 1 / (2 + 3), 2 * 3 / (6 + 3)))
    assert np.isnan(bm.best_f1(np.zeros(6, bool), scores))


def test_flag_metrics_on_a_hand_made_case():
    truth = np.array([1, 1, 0, 0, 1], dtype=bool)
    flags = np.array([1, 0, 1, 0, 0], dtype=bool)
    m = bm.flag_metrics(truth, flags)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1 / 2, 1 / 3, 2 * 1 / (2 + 3)))
    none = bm.flag_metrics(truth, np.zeros(5, bool))
    assert np.isnan(none["precision"]) and none["recall"] == 0 and none["f1"] == 0


def test_tag_metrics_split_missing_and_incorrect():
    given = np.array([[1, 0], [0, 1], [1, 1]], dtype=bool)
    changed = np.array([[1, 0], [1, 0], [0, 0]], dtype=bool)  # (0,0) incorrect, (1,0) missing
    flags = np.array([[1, 0], [0, 0], [0, 1]], dtype=bool)  # finds the incorrect one, one false alarm
    scores = np.where(changed, 0.1, 0.9)
    m = bm.tag_metrics(given, changed, scores, flags)
    assert m["tag_auprc"] == pytest.approx(1.0)
    assert (m["incorrect_precision"], m["incorrect_recall"]) == pytest.approx((1 / 2, 1.0))
    assert m["missing_recall"] == 0 and np.isnan(m["missing_precision"])
    assert m["tag_f1"] == pytest.approx(2 * 1 / (2 + 2))


# ------------------------------------------------------------------------------------ plausible noise


@pytest.mark.parametrize("kind", bn.PLAUSIBLE_NOISE_MODELS)
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
def test_plausible_noise_never_leaves_an_implausible_set(flags_groups, kind, rate):
    X, Y, groups = flags_groups
    Yn, changed = bn.inject_noise(kind, Y, rate, seed=0, X=X, groups=groups)
    assert changed.any(axis=1).sum() == round(rate * len(Y))
    p = bn.plausibility(Y, Yn, groups)
    assert p["n_corrupted"] == round(rate * len(Y))
    assert p["implausible"] == 0 and p["empty"] == 0 and p["card_out"] == 0 and p["group_broken"] == 0


@pytest.mark.parametrize("kind", ["similar_swap", "drop", "spurious"])
def test_plausible_noise_on_goemotions_never_empties_a_comment(goemotions_y, kind):
    Y = goemotions_y
    assert Y.sum(axis=1).min() >= 1
    Yn, _ = bn.inject_noise(kind, Y, 0.1, seed=2)
    assert Yn.sum(axis=1).min() >= 1
    assert bn.plausibility(Y, Yn)["implausible"] == 0


def test_plausibility_catches_what_the_legacy_noise_does(goemotions_y, flags_groups):
    """The check can fail: 'missing' empties single-tag comments, 'confusion' breaks one-of-N groups."""
    Y = goemotions_y
    Yn, _ = bn.missing_noise(Y, 0.1, seed=0)
    p = bn.plausibility(Y, Yn)
    assert p["empty"] > 0.5 and p["implausible"] >= p["empty"]
    X, Yg, groups = flags_groups
    Yc, _ = bn.confusion_noise(Yg, 0.2, seed=0, X=X)
    assert bn.plausibility(Yg, Yc, groups)["group_broken"] > 0


def test_group_swap_swaps_inside_one_group(flags_groups):
    _, Y, groups = flags_groups
    Yn, changed = bn.group_swap_noise(Y, 0.2, seed=1, groups=groups)
    np.testing.assert_array_equal(Yn.sum(axis=1), Y.sum(axis=1))
    in_group = np.zeros(Y.shape[1], dtype=bool)
    for g in groups:
        in_group[g] = True
        assert (Yn[:, g].sum(axis=1) == 1).all()  # still exactly one landmass and one zone
    rows = changed.any(axis=1)
    assert (changed.sum(axis=1)[rows] == 2).all()
    assert not changed[:, ~in_group].any()  # colours untouched
    for i in np.flatnonzero(rows):
        assert sum(changed[i, g].any() for g in groups) == 1  # both changes in the same group
    with pytest.raises(ValueError, match="group"):
        bn.group_swap_noise(Y, 0.1, seed=0, groups=None)


def test_cooccurrence_profile_similarity_on_a_hand_made_case():
    # tags 0 and 1 never meet but both come with tag 2; tag 3 only comes with tag 4
    Y = np.array([[1, 0, 1, 0, 0], [0, 1, 1, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 1, 1], [0, 1, 1, 0, 0]], dtype=np.uint8)
    S = bn.cooccurrence_profile_similarity(Y)
    np.testing.assert_allclose(S, S.T)
    np.testing.assert_array_equal(np.diag(S), 0.0)
    assert S[0, 1] == pytest.approx(1.0)
    assert S[0, 3] == 0.0
    # so similar_swap replaces tag 0 by tag 1 (the only similar absent tag), almost always
    Ybig = Y.repeat(20, axis=0)
    Yn, changed = bn.similar_swap_noise(Ybig, 0.5, seed=0)
    lost_0 = changed[:, 0] & (Ybig[:, 0] == 1)
    assert lost_0.sum() >= 5
    assert (Yn[lost_0, 1] == 1).mean() > 0.9


def test_drop_keeps_min_cardinality_and_spurious_the_max(emotions):
    _, Y = emotions
    lo, hi = Y.sum(axis=1).min(), Y.sum(axis=1).max()
    Yd, cd = bn.drop_noise(Y, 0.2, seed=0)
    assert (cd <= (Y == 1)).all() and (Yd.sum(axis=1) >= lo).all()
    Ys, cs = bn.spurious_noise(Y, 0.2, seed=0)
    assert (cs <= (Y == 0)).all() and (Ys.sum(axis=1) <= hi).all()
    single = np.eye(4, dtype=np.uint8)[[0, 1, 2, 3, 0, 1]]  # every row has one tag: nothing may be dropped
    with pytest.raises(ValueError, match="eligible"):
        bn.drop_noise(single, 0.2)


def test_spurious_adds_frequent_tags_more_often(emotions):
    _, Y = emotions
    _, changed = bn.spurious_noise(Y, 0.2, seed=0)
    added = changed.sum(axis=0)
    freq = Y.sum(axis=0)
    assert np.corrcoef(added, freq)[0, 1] > 0


# ------------------------------------------------------------------------------------------ baselines


def test_rarity_ranks_rare_sets_first_and_empty_first_puts_empty_sets_before():
    Y = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [1, 1], [0, 0], [0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(bb.tag_set_counts(Y), [3, 3, 3, 2, 2, 1, 2, 2])
    r = bb.rarity_scores(Y, seed=0)
    assert ((r >= 0) & (r <= 1)).all()
    assert r[5] < r[3:5].min() and r[3:5].max() < r[:3].min()  # once < twice < three times
    e = bb.empty_first_scores(Y, seed=0)
    assert e[6:].max() < e[:6].min() and e[5] < e[:5].min()
    np.testing.assert_array_equal(bb.rarity_flags(Y), [0, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(bb.empty_first_flags(Y), [0, 0, 0, 0, 0, 1, 1, 1])


# --------------------------------------------------------------------------------- suggestions, verdict


def test_suggestion_metrics_on_a_hand_made_case():
    clean = np.array([[1, 0], [0, 1], [1, 1], [1, 0]])
    given = np.array([[0, 1], [0, 0], [1, 1], [1, 0]])  # rows 0, 1 corrupted
    sugg = np.array([[1, 0], [0, 0], [1, 0], [1, 0]])  # row 0 fixed, row 1 untouched, clean row 2 changed
    m = bm.suggestion_metrics(clean, given, sugg)
    assert m["sugg_exact_corrupted"] == pytest.approx(0.5)
    assert m["sugg_kept_clean"] == pytest.approx(0.5)
    assert m["sugg_changed"] == 2 and m["sugg_right_when_changed"] == pytest.approx(0.5)
    assert bm.flag_ratio(6, 4) == pytest.approx(1.5) and np.isnan(bm.flag_ratio(3, 0))


def _verdict_rows(ours_auprc: float, flag_ratio: float) -> pd.DataFrame:
    rows = []
    for d, cl in (("a", 0.30), ("b", 0.40)):
        for rate in (0.05, 0.1, 0.2):
            common = dict(dataset=d, rate=rate, noise="drop")
            rows += [
                dict(common, method="rarity", auprc=0.2),
                dict(common, method="empty-first", auprc=0.25),
                dict(common, method="cleanlab", auprc=cl, f1=0.3, flag_ratio=5.0, sugg_exact_corrupted=0.1, sugg_kept_clean=0.5),
                dict(common, method="ours-default", auprc=ours_auprc, f1=0.6, flag_ratio=flag_ratio,
                     sugg_exact_corrupted=0.7, sugg_kept_clean=0.99),
            ]
    return pd.DataFrame(rows)


def test_verdict_is_computed_from_the_rows():
    from bench.bench_quality import verdict

    text, numbers = verdict(_verdict_rows(0.50, 1.0), ["ours-default"])
    assert "7 of 7 bars met" in text
    assert numbers.loc["ours-default", "AUPRC - best cleanlab (mean)"] == pytest.approx(0.15)
    assert numbers.loc["ours-default", "AUPRC - best baseline (mean)"] == pytest.approx(0.25)
    text, _ = verdict(_verdict_rows(0.38, 2.0), ["ours-default"])  # below cleanlab on 'b', too many flags
    assert "never below cleanlab on a dataset" in text and "flagged/true in [0.7, 1.5]" in text
    assert "7 of 7" not in text


def test_run_one_scores_every_method_and_a_file_candidate(emotions, tmp_path, monkeypatch):
    """One benchmark run on real data: baselines, cleanlab, ours-default and a candidate from a .py file."""
    from bench import bench_quality as bq
    from bench.datasets import Dataset

    monkeypatch.setattr(bq, "P_CACHE", tmp_path / "P")
    cand = tmp_path / "cand.py"
    cand.write_text(
        "from dq_pipeline.issues.label_issues import find_label_issues\n"
        "def same(Y, P, features=None, seed=0):\n"
        "    return find_label_issues(Y, P, features=features, seed=seed)\n"
    )
    X, Y = emotions
    data = Dataset("emotions", "tabular", X, Y, [f"t{k}" for k in range(Y.shape[1])])
    rows = bq.run_one(data, "validation", "drop", 0.1, 0, False, (f"mine={cand}:same",))
    by = {r["method"]: r for r in rows}
    assert set(by) == {"rarity", "empty-first", "cleanlab", "ours-default", "mine"}
    assert by["ours-default"]["n_corrupted"] == round(0.1 * len(Y))
    for key in ("auprc", "auroc", "f1", "flag_ratio", "sugg_exact_corrupted", "sugg_kept_clean", "tag_f1"):
        assert by["mine"][key] == pytest.approx(by["ours-default"][key], nan_ok=True)
    assert 0 < by["ours-default"]["auprc"] <= 1 and "sugg_exact_corrupted" not in by["rarity"]
    assert list((tmp_path / "P").glob("*.npz"))  # P cached on disk
    again = bq.run_one(data, "validation", "drop", 0.1, 0, False, ())
    assert {r["method"]: r["auprc"] for r in again}["ours-default"] == pytest.approx(by["ours-default"]["auprc"])
    skipped = bq.run_one(data, "validation", "group_swap", 0.1, 0, False, ())
    assert skipped[0]["method"] == "(skipped)" and "group" in skipped[0]["skipped"]

    # the report renders from these rows, with the verdict and the split named
    import argparse

    # the tags as given (no planted error): nothing to find, so whatever is flagged counts in the share flagged only
    unplanted = {r["method"]: r for r in bq.run_one(data, "validation", bq.UNPLANTED, 0.0, 0, False, ())}
    ours0 = unplanted["ours-default"]
    assert ours0["n_corrupted"] == 0 and np.isnan(ours0["auprc"]) and np.isnan(ours0["best_f1"])
    assert 0 <= ours0["flagged_share"] < 0.5 and ours0["sugg_kept_clean"] == pytest.approx(1 - ours0["flagged_share"])
    assert by["ours-default"]["best_f1"] >= by["ours-default"]["prec_at_t"] - 1e-12  # the true count is one threshold

    df = pd.DataFrame(rows + bq.run_one(data, "validation", "spurious", 0.1, 0, False, ()) + list(unplanted.values()))
    args = argparse.Namespace(split="validation", quick=True, workers=1, noise=["drop", "spurious", "group_swap"],
                              rates=[0.1], seeds=[0], no_unplanted=False)
    report = bq.write_report(df, pd.DataFrame(skipped), "cmd", 1.0, args, "x_runs.csv")
    assert "Split: validation" in report and "## Verdict" in report and "bars met" in report
    assert "group_swap" in report and "emotions" in report
    assert "## What the flag bars need" in report and "## The tags as given" in report
    assert "precision the two bars need" in report
    assert f"| emotions · ours-default | {ours0['flagged_share']:.3f} |" in report
    # the verdict counts planted runs only: adding the unplanted run leaves it unchanged
    assert bq.verdict(df[df["noise"] != bq.UNPLANTED], ["ours-default", "mine"])[0] in report


def test_neighbour_swap_takes_the_tag_the_look_alikes_carry(flags_groups, emotions):
    X, Y, groups = flags_groups
    Yn, changed = bn.neighbour_swap_noise(Y, 0.2, seed=0, X=X, groups=groups)
    assert changed.any(axis=1).sum() == round(0.2 * len(Y))
    assert bn.plausibility(Y, Yn, groups)["implausible"] == 0
    np.testing.assert_array_equal(Yn.sum(axis=1), Y.sum(axis=1))
    with pytest.raises(ValueError, match="features"):
        bn.neighbour_swap_noise(Y, 0.1)
    # two clusters in feature space with different tags: a swapped tag comes from the example's own cluster
    rng = np.random.default_rng(0)
    Xc = np.concatenate([rng.normal(0, 0.1, (40, 3)) + [5, 0, 0], rng.normal(0, 0.1, (40, 3)) + [0, 5, 0]])
    Yc = np.zeros((80, 4), dtype=np.uint8)
    Yc[np.arange(40), np.arange(40) % 2] = 1  # cluster A: tag 0 or tag 1
    Yc[np.arange(40, 80), 2 + np.arange(40) % 2] = 1  # cluster B: tag 2 or tag 3
    Ys, ch = bn.neighbour_swap_noise(Yc, 0.25, seed=1, X=Xc)
    added = ch & (Yc == 0)
    assert added[:40, [0, 1]].sum() > 3 * added[:40, [2, 3]].sum()
    assert added[40:, [2, 3]].sum() > 3 * added[40:, [0, 1]].sum()
