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
    assert calls == [(0, 6), (2, 6), (6, 6)]  # 0: the model is loaded; then the short chunk first (spread order)
    # each row is the embedding of the text at that position
    single = load_text_model().encode([texts[-1]], normalize_embeddings=True)
    np.testing.assert_allclose(chunked[-1], single[0], atol=1e-5)


def test_empty_input_has_model_width() -> None:
    assert embed_texts([]).shape == (0, 384)


def test_model_is_loaded_once_per_process() -> None:
    assert load_text_model(DEFAULT_TEXT_MODEL) is load_text_model()


def test_pieces_per_word_reads_prose_low_and_unreadable_strings_high() -> None:
    """The outliers' extra statistic for texts: English comments read about 1-2 tokenizer pieces per word; a run of
    one character, base64, another script and an unknown-token word read many (an unknown token costs one piece per
    character it covers); an empty text reads 0."""
    from dq_pipeline.embed.text import pieces_per_word

    frame = pd.read_csv(GOEMOTIONS, keep_default_na=False)
    prose = pieces_per_word(list(frame["text"]))
    assert prose.shape == (len(frame),) and prose.dtype == np.float64
    assert 1.0 <= np.median(prose) <= 1.6
    assert np.quantile(prose, 0.9) < 2.5
    junk = pieces_per_word(["z" * 90, "ha" * 60, "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgdGV4dA==",
                            "本次会议将于下周四", "", "I love it"])
    assert junk[0] > 20 and junk[2] > 10 and junk[3] == 9.0  # 9 characters, one 'word'
    assert junk[1] == 120.0  # one over-long word: one unknown token covering its 120 characters
    assert junk[4] == 0.0 and junk[5] == 1.0


def test_pieces_per_word_tokenizer_file_equals_the_models_tokenizer() -> None:
    """The statistic reads the model folder's tokenizer.json alone (no model load); the loaded model's own
    tokenizer (the path for a model without that file) gives the same values on the real comments."""
    from dq_pipeline.embed.text import _tokenizer, pieces_per_word

    texts = list(pd.read_csv(GOEMOTIONS, keep_default_na=False)["text"]) + ["ha" * 60, "本次会议", "café ☕ 👍"]
    fast = pieces_per_word(texts)
    hf = load_text_model().tokenizer
    enc = hf(texts, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False)
    unk = hf.unk_token_id
    slow = [(len(ids) + sum(b - a - 1 for t, (a, b) in zip(ids, sp) if t == unk and b - a > 1)) / max(len(t.split()), 1)
            for t, ids, sp in zip(texts, enc["input_ids"], enc["offset_mapping"])]
    np.testing.assert_array_equal(fast, np.asarray(slow))
    encode, spans, unk_id = _tokenizer(DEFAULT_TEXT_MODEL)
    assert unk_id == unk
    assert encode(texts[-3:]) == enc["input_ids"][-3:]  # ids without offsets, offsets asked for apart
    assert [spans(t) for t in texts[-3:]] == [list(s) for s in enc["offset_mapping"][-3:]]


def test_bfloat16_vectors_are_the_float32_ones_within_rounding() -> None:
    from dq_pipeline.hardware import native_bf16

    texts = list(pd.read_csv(GOEMOTIONS, keep_default_na=False)["text"].iloc[:64])
    full = embed_texts(texts, precision="float32")
    low = embed_texts(texts, precision="bfloat16")
    assert low.dtype == np.float32 and low.shape == full.shape
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)
    cosine = (full * low).sum(axis=1)
    assert cosine.min() > 0.999, cosine.min()
    assert not np.array_equal(full, low)  # the autocast did run in bfloat16
    auto = embed_texts(texts, precision="auto")
    np.testing.assert_array_equal(auto, low if native_bf16() else full)


def test_precision_is_checked_and_part_of_the_cache_namespace() -> None:
    from dq_pipeline.embed import resolved_precision
    from dq_pipeline.embed.cache import model_identity

    with pytest.raises(ValueError, match=r"precision must be one of \['auto', 'float32', 'bfloat16'\], got 'fp16'"):
        embed_texts(["a comment"], precision="fp16")
    plain = model_identity(DEFAULT_TEXT_MODEL, "text")
    assert model_identity(DEFAULT_TEXT_MODEL, "text", "float32") == plain
    assert model_identity(DEFAULT_TEXT_MODEL, "text", "bfloat16") == plain + "|bfloat16"
    with pytest.raises(ValueError, match="resolved"):
        model_identity(DEFAULT_TEXT_MODEL, "text", "auto")  # resolve first: the key must say what ran
    assert resolved_precision("auto", "image") == "float32"
    assert resolved_precision("bfloat16", "image") == "bfloat16"
    assert resolved_precision("bfloat16", "tabular") == "float32"


def test_cached_bfloat16_vectors_never_serve_a_float32_call(tmp_path) -> None:
    from dq_pipeline.embed.cache import EmbeddingCache
    from dq_pipeline.embed.text import embed_texts_cached

    texts = list(pd.read_csv(GOEMOTIONS, keep_default_na=False)["text"].iloc[:8])
    cache = EmbeddingCache(tmp_path)
    low = embed_texts_cached(texts, cache=cache, precision="bfloat16")
    full = embed_texts_cached(texts, cache=cache, precision="float32")
    np.testing.assert_array_equal(full, embed_texts(texts))  # computed, not the bfloat16 entries
    np.testing.assert_array_equal(embed_texts_cached(texts, cache=cache, precision="bfloat16"), low)


def test_chunks_run_long_and_short_alternately_so_the_rate_holds() -> None:
    order = text_mod._spread_order(53)
    assert sorted(order.tolist()) == list(range(53))
    assert 10 < order[0] < 43  # neither the longest nor the shortest chunk first
    # chunks are sorted longest first: every prefix of the run covers long and short chunks about evenly
    for m in range(8, 54):
        assert abs(order[:m].mean() - 26) < 4.5, (m, order[:m].mean())
    assert text_mod._spread_order(0).size == 0 and text_mod._spread_order(1).tolist() == [0]
