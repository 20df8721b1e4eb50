"""The label-issue detector's issue-11 speed work keeps its answers: vectorised suggestions choose what the
per-row loop chose (bundled data), the default equals the pre-issue-11 detector below the second stage's row
cap, the batched Newton second stage above the cap stays within sklearn's tolerance of the separate fits and
keeps an example's own tag out of its prediction (to ~1e-4), and ``neighbours=`` equals ``features=`` given the
same neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import label_variants as lv
from dq_pipeline.issues import label_issues as li
from dq_pipeline.rules import learn_label_rules

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "dq_pipeline_tests" / "fixtures"


def _swap_noise(Y: np.ndarray, rate: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Yn = Y.astype(bool).copy()
    for i in rng.choice(len(Y), int(round(rate * len(Y))), replace=False):
        on, off = np.flatnonzero(Yn[i]), np.flatnonzero(~Yn[i])
        if len(on) and len(off):
            Yn[i, rng.choice(on)], Yn[i, rng.choice(off)] = False, True
    return Yn


@pytest.fixture(scope="module")
def emotions():
    """MULAN emotions (593 x 6, bundled), 10% of the examples with a swapped tag: (X, Y, P, learned rules)."""
    import pandas as pd

    from dq_pipeline.ingest import tags_matrix
    from dq_pipeline.model import out_of_fold_probabilities

    frame = pd.read_csv(ROOT / "data" / "mulan_emotions" / "emotions.csv", keep_default_na=False)
    tags = sorted({t for s in frame["labels"] for t in s.split("|") if t})
    Y = _swap_noise(tags_matrix([s.split("|") for s in frame["labels"]], tags), 0.1, seed=3)
    X = frame.drop(columns="labels").to_numpy(dtype=np.float64)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X, Y, out_of_fold_probabilities(X, Y).probabilities, learn_label_rules(Y)


@pytest.fixture(scope="module")
def flags_landmass():
    """The flags fixture (one-of-N landmass group): (X, Y with 6 rows breaking the group, P, the rules learned
    from the clean tags)."""
    from dq_pipeline.embed.tabular import featurize_tabular
    from dq_pipeline.ingest import load_examples, tags_matrix
    from dq_pipeline.manifest import load_manifest
    from dq_pipeline.model import out_of_fold_probabilities

    raw = load_examples(load_manifest(FIXTURES / "flags_landmass"))
    ex = raw.examples
    X = featurize_tabular(ex, [c for c in ex.columns if c not in ("example_id", "row_number", "tags")])
    clean = tags_matrix(ex["tags"], raw.classes).astype(bool)
    rules = learn_label_rules(clean)
    Y = _swap_noise(clean, 0.1, seed=4)
    land = np.array([i for i, c in enumerate(raw.classes) if c.startswith("landmass:")])
    assert [set(g) for g in rules.groups] == [set(land.tolist())]
    Y[:3, land] = False  # no continent
    Y[3:6, land[:2]] = True  # two continents
    return X, Y, out_of_fold_probabilities(X, Y).probabilities, rules


@pytest.mark.parametrize("data", ["emotions", "flags_landmass"])
def test_vectorised_suggestions_equal_the_per_row_loop(data, request):
    X, Y, P, rules = request.getfixturevalue(data)
    votes = li.knn_tag_votes(X, Y)
    model = li.fit_stacked(Y, P, extra=votes, seed=0)
    P_knn = 0.5 * P + 0.5 * votes
    P_tags = 0.5 * (model.probabilities(Y) + P_knn)
    rows = np.arange(len(Y))  # every example: flips, swaps, rule breakers and repairs all exercised
    fast = li.suggest(Y, rows, model, P_knn, rules, P_tags)
    loop = lv.issue10_suggest(Y, rows, model, P_knn, rules, P_tags)
    assert (fast != Y).any()  # something is suggested
    if rules.groups:  # the rule breakers got valid sets (a repair where no single change is valid)
        assert not (fast[:6, list(rules.groups[0])].sum(axis=1) != 1).any()
    np.testing.assert_array_equal(fast, loop)
    some = rows[::3]
    np.testing.assert_array_equal(li.suggest(Y, some, model, P_knn, rules, P_tags),
                                  lv.issue10_suggest(Y, some, model, P_knn, rules, P_tags))


def test_the_default_below_the_row_cap_is_the_pre_issue11_detector(emotions):
    X, Y, P, _ = emotions
    assert len(Y) * 0.8 <= li.STACK_MAX_ROWS
    new, old = li.find_label_issues(Y, P, features=X, seed=0), lv.issue10_default(Y, P, features=X, seed=0)
    np.testing.assert_array_equal(new.scores, old.scores)
    np.testing.assert_array_equal(new.flags, old.flags)
    assert new.details.equals(old.details)
    assert new.summary["expected_error_rate"] == old.summary["expected_error_rate"]
    lo, hi = new.summary["expected_error_rate_interval"]
    assert lo <= new.summary["expected_error_rate"] <= hi


def _synthetic(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded tags with co-occurrence (a shared latent factor) and imbalanced prevalence, and a noisy P."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2)) @ rng.normal(size=(2, k)) + np.log(rng.uniform(0.02, 0.4, k) / 0.7)
    Y = rng.random((n, k)) < 1.0 / (1.0 + np.exp(-z))
    P = 1.0 / (1.0 + np.exp(-(0.5 * z + 1.5 * (2.0 * Y - 1.0) + rng.normal(size=(n, k)))))
    return Y, P


def test_the_batched_newton_second_stage_matches_the_separate_fits():
    Y, P = _synthetic(4000, 6, seed=2)
    extra = np.random.default_rng(5).random((4000, 6))
    calls = []
    newton = li.fit_stacked(Y, P, extra=extra, max_rows=1000, progress=lambda d, t: calls.append((d, t)))
    sklearn = li.fit_stacked(Y, P, extra=extra, max_rows=None)
    np.testing.assert_array_equal(newton.fold, sklearn.fold)
    diff = np.abs(newton.probabilities(Y) - sklearn.probabilities(Y))
    assert diff.mean() < 1e-3 and diff.max() < 0.03  # both are the same optimum up to sklearn's tolerance 1e-4
    assert np.abs(newton.W - sklearn.W).max() < 0.05
    # progress: increasing, ending at done == total
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == calls[-1][1]


def test_the_newton_path_keeps_an_examples_own_tag_out_of_its_prediction():
    Y, P = _synthetic(4000, 6, seed=7)
    base = li.fit_stacked(Y, P, max_rows=1000).probabilities(Y)
    k = int(np.argmin(Y.mean(axis=0)))  # the rarest tag: its positives have the most influence
    for i in np.flatnonzero(Y[:, k])[:3]:
        flipped = Y.copy()
        flipped[i, k] ^= True
        again = li.fit_stacked(flipped, P, max_rows=1000).probabilities(flipped)
        assert abs(again[i, k] - base[i, k]) < 2e-3  # measured <= 4e-4; below the cap exactly 0
        assert not np.allclose(again[i], base[i])  # but it is evidence for the example's other tags


def test_given_neighbours_equal_the_feature_search_with_the_same_neighbours(emotions):
    from sklearn.neighbors import NearestNeighbors

    X, Y, P, _ = emotions
    idx = NearestNeighbors(n_neighbors=20, metric="cosine").fit(X).kneighbors(return_distance=False)
    np.testing.assert_array_equal(li.neighbour_votes(Y, idx), Y[idx[:, :15]].mean(axis=1))
    by_features = li.find_label_issues(Y, P, features=X, seed=0)
    by_index = li.find_label_issues(Y, P, neighbours=idx, seed=0)  # 20 columns: the first 15 are used
    np.testing.assert_array_equal(by_index.scores, by_features.scores)
    np.testing.assert_array_equal(by_index.flags, by_features.flags)
    assert by_index.details.equals(by_features.details)
    assert by_index.summary == by_features.summary
    with pytest.raises(ValueError, match=r"neighbours must be \(593, k >= 1\).*shape \(592, 20\)"):
        li.find_label_issues(Y, P, neighbours=idx[:-1])
    with pytest.raises(ValueError, match=r"in \[0, 593\)"):
        li.find_label_issues(Y, P, neighbours=idx + 1)


def _resampled_rates(observed: np.ndarray, planted: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The estimate on n bootstrap resamples built explicitly (the pre-issue-11 way)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        obs = observed[rng.integers(0, len(observed), len(observed))]
        pl = planted[rng.integers(0, len(planted), len(planted))]
        t = np.quantile(pl, li.ESTIMATE_QUANTILE)
        out.append(min(1.0, np.count_nonzero(obs <= t) / len(obs) / (np.count_nonzero(pl <= t) / len(pl))))
    return np.array(out)


@pytest.mark.parametrize("decimals", [None, 1])  # continuous scores, and heavily tied ones
def test_the_o1_bootstrap_draws_what_resampling_draws(decimals):
    rng = np.random.default_rng(0)
    observed, planted = rng.normal(size=3000), rng.normal(size=2500) - 1.2
    if decimals is not None:
        observed, planted = np.round(observed, decimals), np.round(planted, decimals)
    built = _resampled_rates(observed, planted, 3000, seed=1)
    drawn = li._bootstrap_rates(observed, planted, 3000, np.random.default_rng(2))
    q = (0.05, 0.25, 0.5, 0.75, 0.95)
    np.testing.assert_allclose(np.quantile(drawn, q), np.quantile(built, q), atol=0.003)  # Monte Carlo noise
    assert abs(drawn.mean() - built.mean()) < 0.001
    rate, (lo, hi) = li.estimate_error_rate(observed, planted, seed=0)
    assert lo <= rate <= hi and hi - lo == pytest.approx(np.diff(np.quantile(built, li.INTERVAL))[0], abs=0.01)
