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
    kept = sorted(p.stem for p in (tmp_path / "outliers").glob("*.npz"))
    assert kept == ["k0", "k2", "k3"]
    assert cache.get("ambiguous_examples", "k9") == 9


# ------------------------------------------------------------------ every type the pipeline caches


def assert_same(a, b, where: str = "value") -> None:
    """``b`` is ``a`` rebuilt: same types all the way down, equal values (NaN equal to NaN)."""
    import dataclasses

    import dagster as dg
    from dagster._serdes import serialize_value

    assert type(a) is type(b), f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.hasobject:
            for i, (x, y) in enumerate(zip(a.ravel().tolist(), b.ravel().tolist())):
                assert_same(x, y, f"{where}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=where)
    elif isinstance(a, dg.MetadataValue):
        assert serialize_value(a) == serialize_value(b), where
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def pipeline_results() -> dict:
    """What the audit stores in the result cache, computed on real data (MULAN emotions, 593 clips; the
    bundled GoEmotions comments for a failing raw gate): ``reuse(...)`` in defs/assets.py stores the
    out-of-fold result and ``(DetectorResult, metadata)`` per detector; ``_checked`` in defs/checks.py a
    GateResult per gate."""
    from types import SimpleNamespace

    from dq_pipeline import expectations as gates
    from dq_pipeline import model as cv
    from dq_pipeline.ingest import tags_matrix
    from dq_pipeline.issues.ambiguous import find_ambiguous
    from dq_pipeline.issues.duplicates import find_near_duplicates, row_key
    from dq_pipeline.issues.label_issues import find_label_issues
    from dq_pipeline.issues.outliers import find_outliers
    from dq_pipeline.metadata import detector_metadata

    from dq_pipeline_tests.conftest import DATA

    frame = pd.read_csv(DATA / "mulan_emotions" / "emotions.csv", keep_default_na=False)
    tags = [s.split("|") for s in frame["labels"]]
    classes = sorted({t for s in tags for t in s if t})
    Y = tags_matrix(tags, classes)
    X = frame.drop(columns="labels").to_numpy(float)
    X = np.vstack([X, X[:3]])  # three exact duplicates, one with other tags: a conflict group
    Y = np.vstack([Y, Y[:2], 1 - Y[2:3]])
    ids = [f"clip{i}" for i in range(len(X))]
    oof = cv.out_of_fold_probabilities(X, Y, 5, 0, "fast_logreg")
    raw = SimpleNamespace(examples=pd.DataFrame({"example_id": ids}), manifest=SimpleNamespace(modality="tabular"))
    preds = SimpleNamespace(Y=Y, classes=classes)
    detectors = {
        "label_issues": find_label_issues(Y, oof.probabilities, features=X),
        "label_issues_cleanlab": find_label_issues(Y, oof.probabilities, method="cleanlab"),
        "ambiguous": find_ambiguous(oof.probabilities, Y),
        "outliers": find_outliers(X, metric="euclidean"),
        "near_duplicates": find_near_duplicates(X, Y, exact_keys=[row_key(r) for r in X], metric="euclidean",
                                                near=False),
    }
    values: dict = {"oof_probabilities": oof}
    for name, result in detectors.items():
        values[name] = (result, detector_metadata(name.removesuffix("_cleanlab"), result, raw, preds))
    values["features_gate"] = gates.validate_features(X, ids, source="emotions")
    values["probabilities_gate"] = gates.validate_probabilities(
        np.where(np.arange(len(X))[:, None] == 4, 1.5, oof.probabilities), ids, classes, source="emotions")
    comments = pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False).iloc[:40]
    examples = pd.DataFrame({
        "example_id": list(comments["id"].iloc[:39]) + [comments["id"].iloc[0]],  # a duplicated id
        "row_number": np.arange(2, 42),
        "tags": [s.split("|") if s else [] for s in comments["labels"]],
        "text": list(comments["text"].iloc[:39]) + ["   "],  # and an empty text
    })
    gate_classes = sorted({t for ts in examples["tags"] for t in ts} - {"neutral"}) + ["not_used"]
    values["raw_examples_gate"] = gates.validate_raw_examples(
        examples, modality="text", classes=gate_classes, n_folds=5, source="comments.csv")
    return values


def test_every_pipeline_type_round_trips(tmp_path: Path, pipeline_results: dict) -> None:
    from dq_pipeline.expectations import GateResult
    from dq_pipeline.issues.base import DetectorResult
    from dq_pipeline.model import OutOfFold

    raw_gate = pipeline_results["raw_examples_gate"]
    assert not raw_gate.success and len(raw_gate.failures) >= 3  # samples, observed values, messages
    assert not pipeline_results["probabilities_gate"].success and pipeline_results["features_gate"].success
    assert isinstance(pipeline_results["oof_probabilities"], OutOfFold)
    for stage, value in pipeline_results.items():
        assert isinstance(value, (OutOfFold, GateResult, tuple)), stage
        if isinstance(value, tuple):
            assert isinstance(value[0], DetectorResult) and isinstance(value[1], dict), stage
        cache = ResultCache(tmp_path)
        assert cache.put(stage, "k" * 64, value), stage
        back = ResultCache(tmp_path).get(stage, "k" * 64)
        assert_same(value, back, stage)
        if isinstance(value, GateResult):
            assert back.describe() == value.describe() and back.metadata() == value.metadata()


def test_entries_are_npz_data_without_pickles(tmp_path: Path, pipeline_results: dict) -> None:
    import zipfile

    cache = ResultCache(tmp_path)
    cache.put("label_issues", "k" * 64, pipeline_results["label_issues"])
    path = cache.path_for("label_issues", "k" * 64)
    assert path.suffix == ".npz"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert "entry.npy" in names and all(n.endswith(".npy") for n in names)
        for name in names:  # every member is a plain .npy array: loads with pickles refused
            np.load(archive.open(name), allow_pickle=False)


def test_code_version_follows_every_library_that_shapes_a_cached_value(monkeypatch) -> None:
    import importlib.metadata

    from dq_pipeline import result_cache

    pins = result_cache.library_versions()
    for name in ("great-expectations", "dagster", "matplotlib", "scikit-learn", "numpy", "pandas", "pyarrow"):
        assert any(p.startswith(f"{name}==") for p in pins), name
    assert pins[0].startswith("python==")
    before = code_version()
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "99.0" if name == "great-expectations" else real(name))
    code_version.cache_clear()
    try:
        assert code_version() != before
        assert result_cache.library_versions() != pins
    finally:
        monkeypatch.undo()
        code_version.cache_clear()
    assert result_cache.library_versions() == pins
