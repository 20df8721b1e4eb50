"""Exact / near-duplicate groups: constructed cases and real duplicates in MULAN scene,
GoEmotions and the MIML photos (fixtures under dq_pipeline_tests/fixtures and the bundled data/)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.issues.duplicates import find_near_duplicates, row_key, text_key
from dq_pipeline_tests.conftest import DATA, FIXTURES


def _multi_hot(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
    classes = sorted({t for s in labels for t in s.split("|") if t})
    col = {c: k for k, c in enumerate(classes)}
    Y = np.zeros((len(labels), len(classes)), dtype=np.int8)
    for i, s in enumerate(labels):
        for t in s.split("|"):
            if t:
                Y[i, col[t]] = 1
    return Y, classes


def _groups(details: pd.DataFrame) -> list[list[int]]:
    return [sorted(g["example_index"].tolist()) for _, g in details.groupby("group_id")]


# ---------------------------------------------------------------- keys


def test_text_key_normalises_case_and_whitespace() -> None:
    assert text_key("  Thank\tyou!\n ") == "thank you!"
    assert text_key("THANK  YOU!") == text_key("thank you!")
    assert text_key("thank you") != text_key("thank you!")  # punctuation is content


def test_row_key_equal_rows_equal_keys() -> None:
    a = np.array([0.1, 0.0, 3.0])
    assert row_key(a) == row_key([0.1, -0.0, 3.0])  # -0.0 == 0.0
    assert row_key(a) != row_key([0.1, 0.0, 3.0000001])
    assert row_key([np.nan, 1.0]) == row_key([float("nan"), 1.0])
    assert len(row_key(a)) == 40


# ---------------------------------------------------------------- constructed cases


def test_exact_groups_conflicts_and_stable_ids() -> None:
    X = np.zeros((7, 2))
    Y = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [1, 1], [1, 0]])
    keys = ["b", "a", "c", "b", "a", None, None]  # None never matches, even another None
    r = find_near_duplicates(X, Y, exact_keys=keys, near=False)

    d = r.details
    assert _groups(d) == [[0, 3], [1, 4]]
    assert d.groupby("group_id")["example_index"].min().tolist() == [0, 1]  # ordered by min index
    assert set(d["kind"]) == {"exact"}
    assert not d["is_conflict"].any()  # both pairs carry equal tag sets
    assert d["group_size"].tolist() == [2, 2, 2, 2]
    assert r.flags.tolist() == [True, True, False, True, True, False, False]
    assert r.scores[r.flags].tolist() == [0.0] * 4
    assert (r.scores[~r.flags] == 1.0).all()
    assert r.summary["n_groups"] == 2 and r.summary["n_conflict_groups"] == 0
    assert r.summary["n_examples_in_groups"] == 4

    Y2 = Y.copy()
    Y2[4] = [1, 1]  # now example 4 disagrees with its twin 1
    r2 = find_near_duplicates(X, Y2, exact_keys=keys, near=False)
    conflict = r2.details.groupby("group_id")["is_conflict"].first()
    assert conflict.tolist() == [False, True]
    assert r2.summary["n_conflict_groups"] == 1


def test_near_duplicates_chain_into_one_group_and_score_by_similarity() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 16))
    base = X[5].copy()
    X[12] = base + 0.01 * rng.normal(size=16)  # near 5
    X[30] = X[12] + 0.01 * rng.normal(size=16)  # near 12 -> chains with 5
    X[20] = 3.0 * X[7]  # same direction: cosine distance 0
    Y = np.zeros((40, 3), dtype=int)
    Y[[5, 12, 30], 0] = 1
    Y[30, 1] = 1  # 30 carries an extra tag -> conflict
    Y[[7, 20], 2] = 1
    r = find_near_duplicates(X, Y, threshold=0.01)

    assert _groups(r.details) == [[5, 12, 30], [7, 20]]
    by_group = r.details.drop_duplicates("group_id").set_index("group_id")
    assert by_group["kind"].tolist() == ["near", "near"]
    assert by_group["is_conflict"].tolist() == [True, False]
    assert by_group["group_size"].tolist() == [3, 2]
    # duplicates have the lowest scores; an unrelated random vector is far (cosine ~ 1)
    assert set(np.argsort(r.scores)[:5]) == {5, 12, 30, 7, 20}
    assert r.scores[20] < 1e-6
    assert np.median(r.scores[~r.flags]) > 0.5
    assert r.summary["n_conflict_groups"] == 1


def test_exact_and_near_links_merge_into_one_group() -> None:
    X = np.array([[1.0, 0.0], [1.0, 0.001], [0.0, 1.0], [-1.0, 0.3]])
    Y = np.array([[1], [1], [1], [0]])
    r = find_near_duplicates(X, Y, exact_keys=["k", None, "k", None], threshold=0.01)
    # 0~1 by features, 0=2 by key: one group, not 'exact' (member 1 has another key)
    assert _groups(r.details) == [[0, 1, 2]]
    assert r.details["kind"].unique().tolist() == ["near"]
    assert r.scores[[0, 2]].tolist() == [0.0, 0.0]
    assert not r.flags[3]


def test_euclidean_metric_and_tiny_inputs() -> None:
    X = np.array([[0.0, 0.0], [0.0, 0.05], [5.0, 5.0]])
    Y = np.zeros((3, 1))
    r = find_near_duplicates(X, Y, metric="euclidean", threshold=0.1)
    assert _groups(r.details) == [[0, 1]]
    assert r.scores[0] < r.scores[2] and 0 <= r.scores.min() and r.scores.max() <= 1

    one = find_near_duplicates(np.ones((1, 4)), np.ones((1, 2)))
    assert one.flags.tolist() == [False] and one.summary["n_groups"] == 0
    empty = find_near_duplicates(np.zeros((0, 4)), np.zeros((0, 2)))
    assert empty.scores.shape == (0,) and list(empty.details.columns) == [
        "example_index", "group_id", "kind", "is_conflict", "group_size"]


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError):
        find_near_duplicates(np.zeros((3, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError):
        find_near_duplicates(np.zeros((3, 2)), np.zeros((3, 1)), exact_keys=["a"], near=False)


# ---------------------------------------------------------------- real ground truth


def test_mulan_scene_identical_feature_rows() -> None:
    # 517 rows of scene.csv: rows 0..499 plus the partners of all 9 identical pairs (fixtures/make_fixtures.py)
    df = pd.read_csv(FIXTURES / "mulan_scene" / "scene_sample.csv.gz", keep_default_na=False)
    source_row = df.pop("source_row").tolist()
    F = df.drop(columns="labels").to_numpy(dtype=np.float64)
    Y, _ = _multi_hot(df["labels"])
    r = find_near_duplicates(F, Y, exact_keys=[row_key(row) for row in F], near=False)

    # the identical feature rows of the full scene.csv (SOURCE.md), as rows of scene.csv
    found = [[source_row[i] for i in members] for members in _groups(r.details)]
    expected = [[231, 1529], [593, 1816], [612, 819], [699, 2133], [713, 1937],
                [808, 1823], [809, 1824], [1179, 1180], [1857, 2083]]  # SOURCE.md
    assert found == expected
    conflicts = [[source_row[i] for i in members] for members in _groups(r.details[r.details["is_conflict"]])]
    assert conflicts == [[713, 1937], [1857, 2083]]
    assert r.summary["n_conflict_groups"] == 2 and r.summary["n_exact_groups"] == 9


def test_goemotions_duplicated_texts_with_conflicting_labels() -> None:
    # every row of GoEmotions whose (normalised) text occurs more than once, so every duplicate group of the
    # full 54,263 rows is complete, plus 200 rows with a unique text (fixtures/make_fixtures.py)
    df = pd.read_csv(FIXTURES / "goemotions_duplicates" / "comments.csv", keep_default_na=False)
    assert len(df) == 706
    Y, _ = _multi_hot(df["labels"])

    raw = find_near_duplicates(None, Y, exact_keys=df["text"].tolist(), near=False)
    assert raw.summary["n_conflict_groups"] == 74  # SOURCE.md: 74 duplicated texts conflict
    assert raw.summary["n_groups"] == 166

    norm = find_near_duplicates(None, Y, exact_keys=[text_key(t) for t in df["text"]], near=False)
    # case/whitespace normalisation merges e.g. "Happy Cake Day! :)" with "Happy cake day! :)"
    assert norm.summary["n_conflict_groups"] == 81
    assert norm.summary["n_groups"] == 186
    # every raw conflicting group lies inside one normalised conflicting group
    norm_group = norm.details.set_index("example_index")["group_id"]
    norm_conflict = norm.details.groupby("group_id")["is_conflict"].first()
    for members in _groups(raw.details[raw.details["is_conflict"]]):
        gids = norm_group.loc[members].unique()
        assert len(gids) == 1 and norm_conflict[gids[0]]


def test_miml_photo_near_duplicates_with_real_image_embeddings() -> None:
    from dq_pipeline.embed.image import embed_images

    # bundled photos: rows 0..49 are images/1.jpg .. images/50.jpg (all desert), rows 50..119 other photos
    root = DATA / "miml_scenes"
    rows = pd.read_csv(root / "labels.csv", keep_default_na=False).iloc[:120]
    assert rows["image"].iloc[:50].tolist() == [f"images/{i}.jpg" for i in range(1, 51)]
    Y, _ = _multi_hot(rows["labels"])
    X = embed_images([root / rel for rel in rows["image"]])
    r = find_near_duplicates(X, Y)  # default threshold

    # image n is row n - 1: 37~41 and 39~43, and nothing else (next closest pair, 49.jpg/390.jpg: 0.086)
    assert _groups(r.details) == [[36, 40], [38, 42]]
    assert not r.details["is_conflict"].any()  # same photo, same tag (desert)
    assert set(np.argsort(r.scores)[:4]) == {36, 40, 38, 42}
    assert r.scores[36] < 0.01 and r.scores[38] < 0.05
