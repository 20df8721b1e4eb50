"""Text embeddings with the packaged all-MiniLM-L6-v2 on real GoEmotions comments (bundled sample)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.embed import text as text_mod
from dq_pipeline.embed.text import DEFAULT_TEXT_MODEL, embed_texts, load_text_model
from dq_pipeline_tests.conftest import DATA

GOEMOTIONS = DATA / "goemotions_sample" / "comments.csv"


@pytest.fixture(scope="module")
def comments() -> dict[str, str]:
    frame = pd.read_csv(GOEMOTIONS, keep_default_na=False)
    wanted = ["ef4zpzf", "eez55ml", "edy47ix", "edmw0td", "eedrxfb", "eda39j9"]
    rows = frame.set_index("id").loc[wanted, "text"]
    return dict(rows.items())


def test_embeddings_are_unit_norm_384d(comments: dict[str, str]) -> None:
    vectors = embed_texts(list(comments.values()))
    assert vectors.shape == (len(comments), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_comments_are_closer_than_unrelated(comments: dict[str, str]) -> None:
    # gratitude: "Thanks, bud!", "thanks for this", "Thanks for finding out! That's cool"
    # anger: "Take your upvote, you no good bastard.", "And everybody clapped! Fuck this loser!"
    gratitude, anger = ["ef4zpzf", "eez55ml", "eedrxfb"], ["edy47ix", "edmw0td"]
    vectors = embed_texts([comments[i] for i in gratitude + anger])
    similarity = vectors @ vectors.T
    emotion = np.array([0] * len(gratitude) + [1] * len(anger))
    np.fill_diagonal(similarity, -np.inf)
    assert (emotion[similarity.argmax(axis=1)] == emotion).all()
    same = emotion[:, None] == emotion[None, :]
    within = similarity[:3, :3][np.isfinite(similarity[:3, :3])].mean()
    across = similarity[~same].mean()
    assert within > across + 0.15


def test_chunking_keeps_input_order_and_reports_progress(
    comments: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = list(comments.values())
    whole = embed_texts(texts)
    monkeypatch.setattr(text_mod, "CHUNK_SIZE", 4)
    calls: list[tuple[int, int]] = []
    chunked = embed_texts(texts, batch_size=2, progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    assert calls == [(4, 6), (6, 6)]
    # each row is the embedding of the text at that position
    single = load_text_model().encode([texts[-1]], normalize_embeddings=True)
    np.testing.assert_allclose(chunked[-1], single[0], atol=1e-5)


def test_empty_input_has_model_width() -> None:
    assert embed_texts([]).shape == (0, 384)


def test_model_is_loaded_once_per_process() -> None:
    assert load_text_model(DEFAULT_TEXT_MODEL) is load_text_model()
