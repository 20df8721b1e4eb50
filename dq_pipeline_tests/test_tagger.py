"""The tagger's functional core: thresholds, weights, tabular spec, artifact (no Dagster)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dq_pipeline import tagger as tg
from dq_pipeline_tests.conftest import DATA


def _brute_force_f1(y: np.ndarray, p: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(p):
        pred = p >= t
        tp = (pred & y).sum()
        if tp:
            best = max(best, 2 * tp / (pred.sum() + y.sum()))
    return best


def test_thresholds_maximise_each_tags_f1_on_real_oof_probabilities(emotions_xy):
    from dq_pipeline.model import out_of_fold_probabilities

    X, Y = emotions_xy
    P = out_of_fold_probabilities(X, Y).probabilities
    thr = tg.tune_thresholds(Y, P)
    assert thr.rule == "max_f1" and thr.target_met.all()
    for k in range(Y.shape[1]):
        y = Y[:, k].astype(bool)
        pred = P[:, k] >= thr.values[k]
        f1 = 2 * (pred & y).sum() / (pred.sum() + y.sum())
        assert f1 == pytest.approx(thr.f1[k]) == pytest.approx(_brute_force_f1(y, P[:, k]))
        assert f1 >= 2 * ((P[:, k] >= 0.5) & y).sum() / ((P[:, k] >= 0.5).sum() + y.sum()) - 1e-12


def test_target_precision_takes_the_lowest_threshold_reaching_it():
    y = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)[:, None]
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])[:, None]
    thr = tg.tune_thresholds(y, p, target_precision=0.75)
    assert thr.values[0] == 0.6 and thr.precision[0] == 0.75 and thr.recall[0] == 0.75 and thr.target_met[0]
    unreachable = tg.tune_thresholds(~y, p, target_precision=0.99)  # best precision is 4/6 at 0.4 and below
    assert not unreachable.target_met[0]
    assert unreachable.values[0] == tg.tune_thresholds(~y, p).values[0]  # falls back to max F1
    with pytest.raises(ValueError, match="target_precision"):
        tg.tune_thresholds(y, p, target_precision=1.5)


def test_tag_with_one_class_gets_half():
    Y = np.array([[1, 0], [1, 1], [1, 0], [1, 1]])
    thr = tg.tune_thresholds(Y, np.full((4, 2), 0.7))
    assert thr.values[0] == 0.5


@pytest.mark.parametrize("model", ["fast_logreg", "logreg"])
def test_stored_weights_give_the_models_probabilities(emotions_xy, model):
    from dq_pipeline.model import make_model

    X, Y = emotions_xy
    Y = Y.copy()
    Y[:, 2] = 0  # a tag nobody has: no model, probability 0
    w = tg.fit_weights(X[:400], Y[:400], model)
    est = make_model(model).fit(X[:400], Y[:400][:, [0, 1, 3, 4, 5]])
    P = w.predict_proba(X[400:])
    np.testing.assert_allclose(P[:, [0, 1, 3, 4, 5]], est.predict_proba(X[400:]), atol=1e-9)
    assert (P[:, 2] == 0).all() and list(w.constant) == [False, False, True, False, False, False]


def _flags_examples() -> pd.DataFrame:
    from dq_pipeline.ingest import load_examples
    from dq_pipeline.manifest import load_manifest

    return load_examples(load_manifest(DATA / "mulan_flags")).examples


def test_tabular_spec_reproduces_the_audits_features_and_transforms_new_rows():
    from dq_pipeline.embed.tabular import build_tabular_transformer, featurize_tabular

    ex = _flags_examples()
    columns = [c for c in ex.columns if c not in ("example_id", "row_number", "tags")]
    spec = tg.fit_tabular_spec(ex, columns)
    np.testing.assert_allclose(tg.tabular_features(spec, ex), featurize_tabular(ex, columns), atol=1e-10)
    kinds = tg.tabular_columns(spec)
    assert kinds["landmass"] == "categorical" and kinds["area"] == "numeric"
    # new rows: missing values, an unseen category (all zeros), a fitted transformer agrees
    fitted = build_tabular_transformer(ex, columns).fit(ex[columns])
    new = ex[columns].iloc[:5].copy()
    new.loc[new.index[0], "area"] = np.nan
    new.loc[new.index[1], "religion"] = "never-seen"
    new.loc[new.index[2], "zone"] = None
    np.testing.assert_allclose(tg.tabular_features(spec, new), fitted.transform(new), atol=1e-10)


def test_tabular_spec_caps_high_cardinality_columns_like_the_encoder():
    from dq_pipeline.embed.tabular import build_tabular_transformer

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "city": [f"c{int(v)}" for v in rng.zipf(1.6, 300) % 80]})
    fitted = build_tabular_transformer(frame, ["x", "city"], max_categories=10).fit(frame)
    spec = tg.tabular_spec(fitted)
    city = spec["blocks"][1]["columns"][0]
    assert len(city["categories"]) == 9 and city["infrequent"]
    new = pd.DataFrame({"x": [0.1, 2.0, None], "city": ["c1", "c79", "unseen"]})
    np.testing.assert_allclose(tg.tabular_features(spec, new), fitted.transform(new), atol=1e-10)


def test_save_load_round_trip_and_model_card(tmp_path: Path, emotions_xy):
    X, Y = emotions_xy
    classes = [f"tag{k}" for k in range(Y.shape[1])]
    trained = tg.train_tagger(X[:450], Y[:450], classes, model="fast_logreg", target_precision=0.6)
    trained.card.update({"modality": "tabular", "input": {"feature_columns": ["a"]}})
    folder = tg.save_tagger(trained, tmp_path / "models", "emo", "run-1")
    assert folder == tmp_path / "models" / "emo" / "run-1"
    assert tg.latest_folder(tmp_path / "models", "emo") == folder
    card = json.loads((folder / tg.CARD_NAME).read_text())
    assert card["format_version"] == tg.FORMAT_VERSION and card["dataset"] == "emo" and card["run_id"] == "run-1"
    assert card["classes"] == classes and list(card["thresholds"]) == classes
    assert card["threshold_rule"] == "precision>=0.6" and card["n_train"] == 450 and card["created_at"]
    assert 0 < card["metrics"]["oof_micro_f1"] <= 1 and 0 < card["metrics"]["oof_macro_f1"] <= 1
    assert [t["tag"] for t in card["metrics"]["per_tag"]] == classes
    loaded = tg.load_tagger(folder)
    P1, T1 = trained.predict(X[450:])
    P2, T2 = loaded.predict(X[450:])
    assert np.array_equal(P1, P2) and np.array_equal(T1, T2)
    assert ((P2 >= 0) & (P2 <= 1)).all()
    np.testing.assert_array_equal(loaded.thresholds, [card["thresholds"][c] for c in classes])
    # nothing in the weights file needs pickle
    with np.load(folder / tg.WEIGHTS_NAME, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(["coef", "intercept", "constant", "constant_prob", "thresholds"])
    # a second training of the same dataset moves LATEST
    tg.save_tagger(trained, tmp_path / "models", "emo", "run-2")
    assert tg.latest_folder(tmp_path / "models", "emo").name == "run-2"


def test_load_refuses_unknown_version_and_mismatched_arrays(tmp_path: Path, emotions_xy):
    X, Y = emotions_xy
    trained = tg.train_tagger(X[:200], Y[:200], [str(k) for k in range(6)], model="fast_logreg")
    folder = tg.save_tagger(trained, tmp_path, "emo", "r")
    card_path = folder / tg.CARD_NAME
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "classes": card["classes"][:5]}))
    with pytest.raises(tg.TaggerError, match=r"weights.npz: coef has shape \(72, 6\), the card"):
        tg.load_tagger(folder)
    card_path.write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(tg.TaggerError, match="model_card.json: format_version 99"):
        tg.load_tagger(folder)
    with pytest.raises(tg.TaggerError, match="no tagger for dataset 'other'.*build one: do this"):
        tg.latest_folder(tmp_path, "other", "do this")


def test_too_few_curated_rows_is_a_clear_error(emotions_xy):
    X, Y = emotions_xy
    with pytest.raises(tg.TaggerError, match="only 3 curated"):
        tg.train_tagger(X[:3], Y[:3], [str(k) for k in range(6)], model="fast_logreg")


def test_f1_scores():
    Y = np.array([[1, 0], [0, 1], [1, 1]])
    pred = np.array([[1, 0], [1, 1], [0, 1]])
    s = tg.f1_scores(Y, pred)
    assert s["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert s["macro_f1"] == pytest.approx((0.5 + 1.0) / 2)  # tag 0: tp 1, fp 1, fn 1; tag 1: perfect


def test_tagger_refits_at_the_C_its_cross_validation_chose(emotions_xy):
    """With a C grid, the card names the chosen C and the stored weights are the all-rows fit at that C."""
    X, Y = emotions_xy
    classes = [f"tag{k}" for k in range(Y.shape[1])]
    grid = (0.003, 0.03, 1.0)
    trained = tg.train_tagger(X[:450], Y[:450], classes, model="fast_logreg", C_grid=grid)
    chosen = trained.card["C"]
    assert chosen in grid and chosen != 1.0  # C = 1 over-fits these 450 rows of 72 features
    at_chosen = tg.fit_weights(X[:450], Y[:450], "fast_logreg", C=chosen)
    at_one = tg.fit_weights(X[:450], Y[:450], "fast_logreg", C=1.0)
    np.testing.assert_allclose(trained.weights.coef, at_chosen.coef, rtol=0, atol=1e-9)
    assert np.abs(at_one.coef).sum() > 2 * np.abs(at_chosen.coef).sum()  # the penalty really differs
    assert tg.train_tagger(X[:450], Y[:450], classes, model="fast_logreg").card["C"] == 0.03  # no grid: its own
