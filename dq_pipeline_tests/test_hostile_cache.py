"""Hostile cache folders: planted pickles, truncated and garbage entries, forged entries, a cache folder
that is read-only or a file, concurrent writers -- for the stage-result cache and the embedding cache --
and embedding-cache keys that follow the preprocessing.

Every answer is one of: a hit on a valid entry, a miss that recomputes and replaces the entry, or (for
a folder that cannot be written) a computed value that is not stored. Never an exception in the audit,
never code run from the cache folder.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import multiprocessing
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.embed.cache import EmbeddingCache, cached_embed, content_key, model_identity
from dq_pipeline.result_cache import ResultCache, cached, read_entry

from dq_pipeline_tests.conftest import DATA

KEY = "e" * 64


class Planted:
    """A pickle that runs code when loaded: creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _value() -> dict:
    return {"P": np.full((4, 2), 0.25), "n": 3, "frame": pd.DataFrame({"tag": ["a", "b"], "v": [1.0, 2.0]})}


def _same_value(a: dict, b: dict) -> None:
    np.testing.assert_array_equal(a["P"], b["P"])
    assert a["n"] == b["n"]
    pd.testing.assert_frame_equal(a["frame"], b["frame"])


class Counter:
    def __init__(self, make: Callable[[], Any] = _value) -> None:
        self.calls = 0
        self.make = make

    def __call__(self) -> Any:
        self.calls += 1
        return self.make()


# ------------------------------------------------------------------------------ result cache


def test_planted_pickle_is_not_executed_and_is_replaced(tmp_path: Path) -> None:
    marker, control = tmp_path / "PWNED", tmp_path / "CONTROL"
    pickle.loads(pickle.dumps(Planted(control)))  # the payload is live: loading it runs code
    assert control.exists()
    cache = ResultCache(tmp_path / "cache")
    path = cache.path_for("label_issues", KEY)
    path.parent.mkdir(parents=True)
    payload = pickle.dumps(Planted(marker))
    path.write_bytes(payload)  # at the entry's own path
    cache.path_for("label_issues", KEY).with_suffix(".pkl").write_bytes(payload)  # and where pickles used to be
    compute = Counter()
    value, hit = cached(cache, "label_issues", KEY, compute)
    assert not hit and compute.calls == 1 and not marker.exists()
    _same_value(value, read_entry(path))  # replaced by a data entry
    assert not path.with_suffix(".pkl").exists()  # old pickles are pruned, never read
    value, hit = cached(cache, "label_issues", KEY, compute)
    assert hit and compute.calls == 1 and not marker.exists()


def _forged_entry(path: Path, description: Any = None, raw: bytes | None = None, **arrays: np.ndarray) -> None:
    """An npz shaped like an entry, with a chosen description."""
    text = raw if raw is not None else json.dumps({"format": 1, "value": description}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, entry=np.frombuffer(text, dtype=np.uint8), **arrays)


FORGED = {
    "unknown tag": {"$": "eval", "code": "__import__('os').system('touch PWNED')"},
    "dataclass outside the registry": {"$": "dataclass", "type": "subprocess.Popen",
                                       "fields": [["args", ["touch", "PWNED"]]]},
    "registered dataclass, wrong fields": {"$": "dataclass", "type": "dq_pipeline.model.OutOfFold",
                                           "fields": [["probabilities", None]]},
    "DetectorResult failing its own checks": {
        "$": "dataclass", "type": "dq_pipeline.issues.base.DetectorResult",
        "fields": [["scores", [5.0]], ["flags", [True, False]], ["summary", None], ["details", None]]},
    "dagster class not whitelisted": {"$": "dagster", "json": '{"__class__": "os.system", "command": "x"}'},
    "dagster value that is not metadata": {"$": "dagster", "json": '{"__class__": "AssetKey", "path": ["a"]}'},
    "array reference missing": {"$": "ndarray", "ref": "a7"},
    "array reference to the description": {"$": "ndarray", "ref": "entry"},
    "frame of garbage bytes": {"$": "frame", "ref": "a0", "object_columns": []},
    "object array with a wrong shape": {"$": "objarray", "shape": [3], "items": ["a"]},
    "bad float": {"$": "float", "v": "__import__"},
    "dict item not a pair": {"$": "dict", "items": [["a"]]},
}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_entries_are_misses(tmp_path: Path, case: str) -> None:
    cache = ResultCache(tmp_path)
    path = cache.path_for("outliers", KEY)
    _forged_entry(path, FORGED[case], a0=np.frombuffer(b"not parquet at all", dtype=np.uint8))
    assert cache.get("outliers", KEY) is None and not path.exists()
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


@pytest.mark.parametrize("case", ["truncated", "garbage", "empty", "wrong format number", "description not utf-8",
                                  "description not json", "npy instead of npz", "pickled object array",
                                  "pickled npy", "directory", "symlink elsewhere"])
def test_unreadable_entries_are_misses_and_are_replaced(tmp_path: Path, case: str) -> None:
    marker = tmp_path / "PWNED"
    cache = ResultCache(tmp_path / "cache")
    path = cache.path_for("ambiguous_examples", KEY)
    cache.put("ambiguous_examples", KEY, _value())
    good = path.read_bytes()
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    path.unlink()
    if case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "wrong format number":
        _forged_entry(path, raw=json.dumps({"format": 99, "value": 1}).encode())
    elif case == "description not utf-8":
        _forged_entry(path, raw=b"\xff\xfe\x00bad")
    elif case == "description not json":
        _forged_entry(path, raw=b"{'format': 1")
    elif case == "npy instead of npz":
        np.save(path.with_suffix(".npy"), np.arange(3))
        path.with_suffix(".npy").rename(path)
    elif case == "pickled object array":
        with open(path, "wb") as fh:
            np.savez(fh, entry=np.array([Planted(marker)], dtype=object))
    elif case == "pickled npy":
        with open(path, "wb") as fh:
            np.save(fh, np.array([Planted(marker)], dtype=object), allow_pickle=True)
    elif case == "directory":
        path.mkdir()
    elif case == "symlink elsewhere":
        path.symlink_to(outside)
    compute = Counter()
    value, hit = cached(cache, "ambiguous_examples", KEY, compute)
    assert not hit and compute.calls == 1 and not marker.exists()
    _same_value(value, _value())
    assert outside.read_text() == "not yours"
    if case == "directory":  # not ours to delete: the stage computes, nothing is stored
        assert path.is_dir()
    else:
        _same_value(read_entry(path), _value())
        assert cached(cache, "ambiguous_examples", KEY, compute)[1] and compute.calls == 1


def test_values_the_cache_cannot_store_are_computed_every_time(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)

    class Opaque:
        pass

    for value in [Opaque(), {"s": {1, 2}}, pd.DataFrame({"tags": [["a"], ["b"]]}), pd.DataFrame({1: [1]})]:
        compute = Counter(lambda value=value: value)
        assert cached(cache, "label_issues", KEY, compute) == (value, False)
        assert cached(cache, "label_issues", KEY, compute)[1] is False and compute.calls == 2
    assert not list((tmp_path / "label_issues").glob("*.npz"))


def test_cache_folder_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "results"
    root.write_text("a file where the cache folder should be")
    cache = ResultCache(root)
    compute = Counter()
    for _ in range(2):
        value, hit = cached(cache, "outliers", KEY, compute)
        assert not hit
        _same_value(value, _value())
    assert compute.calls == 2 and root.read_text().startswith("a file")
    assert cache.put("outliers", KEY, 1) is False


def _in_child(fn: Callable[[], Any], as_nobody: bool) -> Any:
    """Run ``fn`` in a forked child (as user ``nobody`` when asked: root ignores file permissions)."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()

    def target() -> None:
        try:
            if as_nobody:
                os.setgid(65534)
                os.setuid(65534)
            queue.put(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            queue.put(("error", f"{type(exc).__name__}: {exc}"))

    process = ctx.Process(target=target)
    process.start()
    status, result = queue.get(timeout=120)
    process.join(30)
    assert status == "ok", result
    return result


@pytest.fixture()
def readonly_folder() -> Any:
    """A folder that the test's (possibly dropped) user can read but not write."""
    folder = Path(tempfile.mkdtemp(prefix="dq_readonly_"))
    os.chmod(folder, 0o755)
    yield folder
    for p in [folder, *folder.rglob("*")]:
        os.chmod(p, 0o755)
    shutil.rmtree(folder)


def _lock_down(folder: Path) -> None:
    for p in [*folder.rglob("*"), folder]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)


def test_read_only_result_cache_serves_hits_and_computes_misses(readonly_folder: Path) -> None:
    cache = ResultCache(readonly_folder)
    cache.put("outliers", KEY, _value())
    _lock_down(readonly_folder)

    def use() -> tuple:
        hit_value, hit = cached(ResultCache(readonly_folder), "outliers", KEY, lambda: None)
        miss_value, miss_hit = cached(ResultCache(readonly_folder), "outliers", "f" * 64, _value)
        new_stage = cached(ResultCache(readonly_folder), "new_stage", KEY, lambda: 7)
        stored = ResultCache(readonly_folder).put("outliers", "f" * 64, 1)
        return hit, hit_value["n"], miss_hit, miss_value["n"], new_stage, stored

    assert _in_child(use, as_nobody=os.geteuid() == 0) == (True, 3, False, 3, (7, False), False)
    assert sorted(p.name for p in (readonly_folder / "outliers").iterdir()) == [f"{KEY}.npz"]


def _writer(root: str, worker: int) -> int:
    cache = ResultCache(root, max_entries=4)  # small: every write also prunes, concurrently
    for i in range(12):
        key = KEY if i % 2 == 0 else f"{worker}{i:063d}"  # half on one shared key, half on keys of their own
        cache.put("label_issues", key, {"worker": worker, "i": i, "P": np.full((50, 5), i / 12)})
        value = cache.get("label_issues", KEY)
        assert value is None or set(value) == {"worker", "i", "P"}
    return worker


def test_concurrent_writers(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    pool = ctx.Pool(4)
    try:
        done = pool.starmap(_writer, [(str(tmp_path), w) for w in range(4)])
    except BaseException:
        pool.terminate()
        raise
    else:  # the workers finish and exit. Pool's `with` terminates them instead, which hangs for good in a process
        pool.close()  # that ignores SIGTERM (a script's background job did after a Dagster run, 2026-12-07)
    finally:
        pool.join()
    assert sorted(done) == [0, 1, 2, 3]
    entries = list((tmp_path / "label_issues").glob("*.npz"))
    assert 1 <= len(entries) <= 4
    for entry in entries:  # every surviving entry is whole
        value = read_entry(entry)
        assert value["P"].shape == (50, 5)
    assert not list((tmp_path / "label_issues").glob(".*.tmp"))


# --------------------------------------------------------------------------- embedding cache


class CountingEmbed:
    def __init__(self, items: list[str], dim: int = 4) -> None:
        self.items, self.dim, self.calls = items, dim, []

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        self.calls.append(list(idx))
        return np.array([[len(self.items[i]) * (k + 1) for k in range(self.dim)] for i in idx], dtype=np.float32)


def _embedding_file(cache_dir: Path, items: list[str]) -> tuple[EmbeddingCache, list[str], np.ndarray]:
    cache = EmbeddingCache(cache_dir)
    keys = [content_key("m", t) for t in items]
    expected = cached_embed(keys, CountingEmbed(items), "m", cache)
    return cache, keys, expected


@pytest.mark.parametrize("case", ["truncated", "garbage", "empty", "pickled object arrays", "keys not S64",
                                  "vectors float64", "rows do not match", "missing vectors", "a directory"])
def test_unreadable_embedding_file_is_a_miss_and_is_replaced(tmp_path: Path, case: str) -> None:
    items = ["alpha", "be", "gamma ray", "be"]
    cache, keys, expected = _embedding_file(tmp_path, items)
    path = cache.path_for("m")
    good = path.read_bytes()
    path.unlink()
    marker = tmp_path / "PWNED"
    if case == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif case == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(2048))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "pickled object arrays":
        np.savez(path, keys=np.array([Planted(marker)], dtype=object), vectors=np.zeros((1, 4), np.float32))
    elif case == "keys not S64":
        np.savez(path, keys=np.arange(3), vectors=np.zeros((3, 4), np.float32))
    elif case == "vectors float64":
        np.savez(path, keys=np.asarray(keys, dtype="S64"), vectors=expected.astype(np.float64))
    elif case == "rows do not match":
        np.savez(path, keys=np.asarray(keys[:2], dtype="S64"), vectors=expected)
    elif case == "missing vectors":
        np.savez(path, keys=np.asarray(keys, dtype="S64"))
    elif case == "a directory":
        path.mkdir()
    hit, vectors = cache.get_many("m", keys)
    assert not hit.any() and vectors is None
    compute = CountingEmbed(items)
    out = cached_embed(keys, compute, "m", EmbeddingCache(tmp_path))
    np.testing.assert_array_equal(out, expected)
    assert compute.calls == [[0, 1, 2]] and not marker.exists()
    if case != "a directory":  # replaced: the next audit hits
        again = CountingEmbed(items)
        np.testing.assert_array_equal(cached_embed(keys, again, "m", EmbeddingCache(tmp_path)), expected)
        assert again.calls == []


def test_embedding_file_of_another_width_is_replaced(tmp_path: Path) -> None:
    items = ["one", "three", "eleven"]
    keys = [content_key("m", t) for t in items]
    cache = EmbeddingCache(tmp_path)
    cache.put_many("m", keys[:2], np.ones((2, 7)))  # 7-d rows under this namespace: not this model's
    compute = CountingEmbed(items)
    out = cached_embed(keys, compute, "m", cache)
    np.testing.assert_array_equal(out, CountingEmbed(items)(np.arange(3)))
    assert compute.calls == [[2], [0, 1]]
    hit, stored = cache.get_many("m", keys)
    assert hit.all() and stored.shape == (3, 4)


def test_embedding_cache_folder_that_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "embeddings"
    root.write_text("not a folder")
    items = ["a", "bb"]
    compute = CountingEmbed(items)
    for _ in range(2):
        out = cached_embed([content_key("m", t) for t in items], compute, "m", EmbeddingCache(root))
        np.testing.assert_array_equal(out, CountingEmbed(items)(np.arange(2)))
    assert len(compute.calls) == 2


def test_read_only_embedding_cache(readonly_folder: Path) -> None:
    items = ["stored", "new one"]
    keys = [content_key("m", t) for t in items]
    EmbeddingCache(readonly_folder).put_many("m", keys[:1], CountingEmbed(items)(np.array([0])))
    _lock_down(readonly_folder)

    def use() -> tuple:
        compute = CountingEmbed(items)
        out = cached_embed(keys, compute, "m", EmbeddingCache(readonly_folder))
        return compute.calls, out.tolist()

    calls, out = _in_child(use, as_nobody=os.geteuid() == 0)
    assert calls == [[1]] and out == CountingEmbed(items)(np.arange(2)).tolist()


def _embed_writer(root: str, worker: int) -> None:
    items = [f"worker {worker} item {i}" for i in range(25)] + ["shared item"]
    cache = EmbeddingCache(root)
    for lo in range(0, len(items), 5):
        part = items[lo : lo + 5]
        cached_embed([content_key("m", t) for t in part], CountingEmbed(part), "m", cache)


def test_concurrent_embedding_writers_keep_every_row(tmp_path: Path) -> None:
    # spawned, not forked: a child forked from this many-threaded test process (faiss / torch thread pools) can
    # inherit a lock another thread held and hang (seen once in a fresh clone: one worker on a futex for minutes)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.starmap(_embed_writer, [(str(tmp_path), w) for w in range(4)])
    items = [f"worker {w} item {i}" for w in range(4) for i in range(25)] + ["shared item"]
    hit, vectors = EmbeddingCache(tmp_path).get_many("m", [content_key("m", t) for t in items])
    assert hit.all()
    np.testing.assert_array_equal(vectors, CountingEmbed(items)(np.arange(len(items))))


def test_truncated_cache_file_does_not_break_real_text_embeddings(tmp_path: Path) -> None:
    from dq_pipeline.embed.text import embed_texts, embed_texts_cached

    texts = list(pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False)["text"][:20])
    cache = EmbeddingCache(tmp_path)
    cold = embed_texts_cached(texts, cache=cache)
    (file,) = [p for p in tmp_path.glob("*.npz")]
    file.write_bytes(file.read_bytes()[:100])  # a crash mid-copy, a full disk...
    again = embed_texts_cached(texts, cache=EmbeddingCache(tmp_path))
    np.testing.assert_allclose(again, cold, atol=1e-6)
    np.testing.assert_allclose(again, embed_texts(texts), atol=1e-6)
    hit, _ = EmbeddingCache(tmp_path).get_many(model_identity("all-MiniLM-L6-v2", "text"),
                                               [content_key(model_identity("all-MiniLM-L6-v2", "text"), t)
                                                for t in texts])
    assert hit.all()  # the file was replaced


# -------------------------------------------------------------- keys follow the preprocessing


@pytest.mark.parametrize("change", ["crop fraction", "mean", "std", "resample filter", "background",
                                    "crop code", "decoding code", "pillow version"])
def test_image_namespace_follows_preprocessing(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    import importlib.metadata

    from dq_pipeline.embed import image

    before = model_identity("efficientnet-lite0", "image")
    assert model_identity("efficientnet-lite0") == before  # the default model's modality is known
    if change == "crop fraction":
        monkeypatch.setattr(image, "_CROP_FRACTION", 0.9)
    elif change == "mean":
        monkeypatch.setattr(image, "_LITE_MEAN", 127.0)
    elif change == "std":
        monkeypatch.setattr(image, "_LITE_STD", 127.0)
    elif change == "resample filter":
        monkeypatch.setattr(image, "_RESAMPLE", "BILINEAR")
    elif change == "background":
        monkeypatch.setattr(image, "BACKGROUND", (0, 0, 0))
    elif change == "crop code":
        def _lite_input(im, size):  # same signature, other code
            return np.asarray(im.resize((size, size)), dtype=np.uint8)

        monkeypatch.setattr(image, "_lite_input", _lite_input)
    elif change == "decoding code":
        monkeypatch.setattr(image, "to_rgb", lambda im: im.convert("RGB"))
    else:
        real = importlib.metadata.version
        monkeypatch.setattr(importlib.metadata, "version", lambda n: "0.1" if n == "pillow" else real(n))
    after = model_identity("efficientnet-lite0", "image")
    assert after != before
    assert EmbeddingCache("x").path_for(after) != EmbeddingCache("x").path_for(before)
    assert content_key(after, b"same bytes") != content_key(before, b"same bytes")


def test_clip_style_image_models_key_on_decoding_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dq_pipeline.embed import image

    folder = tmp_path / "clip"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    before = model_identity(str(folder), "image")
    assert "sentence-transformers==" in before and "transformers==" in before
    monkeypatch.setattr(image, "BACKGROUND", (0, 0, 0))
    assert model_identity(str(folder), "image") != before


@pytest.mark.parametrize("change", ["normalisation", "text code"])
def test_text_namespace_follows_preprocessing(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    from dq_pipeline.embed import text

    before = model_identity("all-MiniLM-L6-v2", "text")
    assert model_identity("all-MiniLM-L6-v2") == before and "tokenizers==" in before
    if change == "normalisation":
        monkeypatch.setattr(text, "NORMALIZE_EMBEDDINGS", False)
    else:
        def embed_texts(texts, model_name=text.DEFAULT_TEXT_MODEL, batch_size=64, progress=None):
            return text.load_text_model(model_name).encode([t.lower()[:100] for t in texts])

        monkeypatch.setattr(text, "embed_texts", embed_texts)
    assert model_identity("all-MiniLM-L6-v2", "text") != before


def test_changed_crop_recomputes_real_image_vectors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dq_pipeline.embed import image

    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    shutil.copy(DATA / "miml_scenes" / "images" / "2.jpg", paths[0])
    shutil.copy(DATA / "miml_scenes" / "images" / "37.jpg", paths[1])
    cache = EmbeddingCache(tmp_path / "cache")
    old = image.embed_images_cached(paths, cache=cache)
    monkeypatch.setattr(image, "_CROP_FRACTION", 0.5)  # a tighter centre crop: other pixels reach the model
    new = image.embed_images_cached(paths, cache=cache)
    np.testing.assert_allclose(new, image.embed_images(paths), rtol=1e-4, atol=1e-4)
    assert np.abs(new - old).max() > 0.05  # not the stale vectors
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # one namespace per preprocessing
