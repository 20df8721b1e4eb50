"""The stage-result cache: keys change with any input byte, entries survive processes, bad entries are misses."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.result_cache import ResultCache, cached, code_version, fingerprint


def test_fingerprint_equal_inputs_give_equal_keys():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 8)).astype(np.float32)
    frame = pd.DataFrame({"example_id": ["a", "b"], "tags": [["x", "y"], []], "v": [1.5, 2.0]})
    key = fingerprint("oof", X, frame, 5, {"b": 1, "a": 2})
    assert key == fingerprint("oof", X.copy(), frame.copy(), 5, {"a": 2, "b": 1})
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize("change", ["one value", "dtype", "shape", "setting type", "part order", "tag"])
def test_fingerprint_sees_every_change(change: str):
    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    frame = pd.DataFrame({"example_id": ["a", "b"], "tags": [["x"], ["y"]]})
    base = fingerprint(X, frame, 5)
    if change == "one value":
        X2 = X.copy()
        X2[2, 3] = np.nextafter(X2[2, 3], 100)
        other = fingerprint(X2, frame, 5)
    elif change == "dtype":
        other = fingerprint(X.astype(np.float32), frame, 5)
    elif change == "shape":
        other = fingerprint(X.reshape(4, 3), frame, 5)
    elif change == "setting type":
        other = fingerprint(X, frame, 5.0)
    elif change == "part order":
        other = fingerprint(frame, X, 5)
    else:
        other = fingerprint(X, frame.assign(tags=[["x"], ["y", "x"]]), 5)
    assert other != base


def test_code_version_is_stable_within_a_process():
    assert code_version() == code_version() and len(code_version()) == 64


def test_cache_round_trip_and_compute_once(tmp_path: Path):
    cache = ResultCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"P": np.full((3, 2), 0.25), "frame": pd.DataFrame({"a": [1, 2]})}

    first, hit1 = cached(cache, "oof", "k" * 64, compute)
    second, hit2 = cached(ResultCache(tmp_path), "oof", "k" * 64, compute)  # a new process would do this
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(second["P"], first["P"])
    pd.testing.assert_frame_equal(second["frame"], first["frame"])
    _, hit3 = cached(None, "oof", "k" * 64, compute)  # caching disabled: always computes
    assert not hit3 and len(calls) == 2


def test_unreadable_entry_is_a_miss_and_is_removed(tmp_path: Path):
    cache = ResultCache(tmp_path)
    cache.put("label_issues", "abc", [1, 2, 3])
    path = cache.path_for("label_issues", "abc")
    path.write_bytes(path.read_bytes()[:5])  # truncated, e.g. by a crash
    assert cache.get("label_issues", "abc") is None and not path.exists()
    value, hit = cached(cache, "label_issues", "abc", lambda: [4])
    assert value == [4] and not hit


def test_each_stage_keeps_its_most_recently_used_entries(tmp_path: Path):
    import os
    import time

    cache = ResultCache(tmp_path, max_entries=3)
    now = time.time()
    for i in range(3):
        cache.put("outliers", f"k{i}", i)
        os.utime(cache.path_for("outliers", f"k{i}"), (now - 100 + i, now - 100 + i))
    assert cache.get("outliers", "k0") == 0  # read: now the most recently used
    cache.put("outliers", "k3", 3)
    cache.put("ambiguous_examples", "k9", 9)  # another stage does not count
    kept = sorted(p.stem for p in (tmp_path / "outliers").glob("*.pkl"))
    assert kept == ["k0", "k2", "k3"]
    assert cache.get("ambiguous_examples", "k9") == 9
