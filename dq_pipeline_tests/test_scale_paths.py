"""The column-wise / vectorised paths that keep the non-detector stages linear at 1M rows give exactly what the
row-by-row definitions give: tabular payloads and content keys, tag lists from a tag matrix, exact-duplicate row
keys, fingerprints of many strings, the raw-examples gate on a tabular frame."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.curate import _raw_values, content_keys, review_payload, tabular_payloads_and_keys
from dq_pipeline.embed.tabular import row_keys
from dq_pipeline.ingest import load_examples, tags_from_matrix, tags_matrix
from dq_pipeline.issues.duplicates import row_key
from dq_pipeline.manifest import load_manifest
from dq_pipeline.result_cache import fingerprint

DATA = Path(__file__).resolve().parents[1] / "data"


def _reference(examples: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The row-by-row definition: one dict per row, json.dumps twice."""
    rows = _raw_values(examples)
    payloads = [json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) for r in rows]
    keys = [hashlib.sha256(json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                           .encode("utf-8")).hexdigest() for r in rows]
    return payloads, keys


def _hostile_frame() -> pd.DataFrame:
    n = 7
    return pd.DataFrame({
        "example_id": [f"e{i}" for i in range(n)],
        "row_number": np.arange(n),
        "tags": [["a"], [], ["a", "b"], ["b"], [], ["a"], ["b"]],
        "zeta": [1.5, np.nan, -0.0, np.inf, 1e-300, 1e20, 0.1 + 0.2],
        "älpha \"q\"": np.array([1, 2, 3, -4, 0, 2**40, 7], dtype=np.int64),
        "3": pd.array([1, None, 3, 4, None, 6, 7], dtype="Int64"),
        "flag": [True, False, True, True, False, False, True],
        "text": ["plain", None, 'quote " and \\ backslash', "new\nline", "emoji 🎉", "", "naïve"],
        "mixed": [1, "x", 2.5, None, float("nan"), np.int32(3), ["list", 1]],
        "float32": np.array([0.1, 2.5, np.nan, -1.0, 3.4028235e38, 1e-7, 0.0], dtype=np.float32),
    })


@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_tabular_payloads_and_keys_equal_the_dict_definition(chunk_rows):
    frame = _hostile_frame()
    assert tabular_payloads_and_keys(frame, chunk_rows=chunk_rows) == _reference(frame)
    payloads, keys = tabular_payloads_and_keys(frame, chunk_rows=chunk_rows, arrow=True)  # as audit_tables does
    assert (list(payloads), keys) == _reference(frame) and len(payloads) == len(frame)


def test_payloads_and_keys_of_a_real_dataset_and_the_public_helpers_agree():
    examples = load_examples(load_manifest(DATA / "mulan_emotions")).examples
    payloads, keys = _reference(examples)
    assert review_payload(examples, "tabular") == payloads
    assert content_keys(examples, "tabular") == keys
    assert json.loads(payloads[0])  # a JSON object of the raw values


def test_columns_whose_names_collide_as_text_keep_the_dict_behaviour():
    frame = pd.DataFrame({"example_id": ["a", "b"], "row_number": [0, 1], "tags": [[], []], 1: [1.0, 2.0],
                          "1": ["x", "y"]})
    out = tabular_payloads_and_keys(frame)
    assert out == _reference(frame)
    assert out[0][0] == '{"1": "x"}'  # the later column wins, as in the dict


def test_no_feature_column_gives_empty_objects():
    frame = pd.DataFrame({"example_id": ["a"], "row_number": [0], "tags": [["t"]]})
    assert tabular_payloads_and_keys(frame) == _reference(frame) == (["{}"], [hashlib.sha256(b"{}").hexdigest()])


def test_tags_from_matrix_inverts_tags_matrix():
    rng = np.random.default_rng(0)
    classes = [f"t{k}" for k in range(6)]
    M = (rng.random((50, 6)) < 0.3).astype(np.uint8)
    M[3] = 0
    tags = tags_from_matrix(M, classes)
    assert tags == [[classes[k] for k in range(6) if row[k]] for row in M]
    assert tags[3] == []
    assert (tags_matrix(tags, classes) == M).all()
    assert tags_from_matrix(np.zeros((0, 6)), classes) == []
    assert tags_from_matrix(np.zeros((2, 0)), []) == [[], []]
    with pytest.raises(ValueError, match="shape"):
        tags_from_matrix(np.zeros(3), classes)


@pytest.mark.parametrize("chunk_rows", [1, 4, 65_536])
def test_row_keys_equal_row_key_per_row(chunk_rows):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((9, 4))
    X[1] = X[0]
    X[1, 2] = -0.0 if X[0, 2] == 0 else X[1, 2]
    X[2, :] = [0.0, np.nan, 1.0, 2.0]
    X[3, :] = [-0.0, -np.nan, 1.0, 2.0]  # same row as 2 up to the sign of zero and NaN's bits
    X[4, 0] = np.inf
    keys = row_keys(X, chunk_rows=chunk_rows)
    assert keys == [row_key(r) for r in X]
    assert keys[2] == keys[3] and keys[0] == keys[1] and len(set(keys)) == 7
    assert row_keys(X.astype(np.float32), chunk_rows) == [row_key(r) for r in X.astype(np.float32)]


def test_fingerprint_of_many_strings_tells_every_change_apart():
    keys = [f"{i:040x}" for i in range(1000)]
    base = fingerprint(keys)
    assert fingerprint(list(keys)) == base and fingerprint(tuple(keys)) == base
    assert fingerprint(keys[:-1] + ["x"]) != base
    assert fingerprint(keys[1:] + keys[:1]) != base  # order
    assert fingerprint(keys[:-1] + [1]) != base  # a non-string item
    assert fingerprint(["a,b"] + ["c"] * 99) != fingerprint(["a", "b,c"] + ["c"] * 98)
    assert fingerprint(keys, "x") != fingerprint(keys + ["x"])  # parts stay separate
    assert fingerprint(["\udc80"] * 100)  # a lone surrogate is escaped, not an encoding error


def test_raw_gate_on_a_tabular_frame_still_fails_on_an_empty_feature_set(tmp_path):
    from dq_pipeline.expectations import validate_raw_examples

    examples = load_examples(load_manifest(DATA / "mulan_emotions")).examples
    ok = validate_raw_examples(examples, modality="tabular", classes=sorted({t for r in examples["tags"] for t in r}),
                               n_folds=5)
    assert ok.success, ok.describe()
    empty = examples[["example_id", "row_number", "tags"]].assign(f=np.nan)
    bad = validate_raw_examples(empty, modality="tabular", classes=sorted({t for r in empty["tags"] for t in r}),
                                n_folds=5)
    assert not bad.success and "no usable feature column" in bad.describe()
    doubled = pd.concat([examples.head(3), examples.head(1)], ignore_index=True)
    bad = validate_raw_examples(doubled, modality="tabular", classes=sorted({t for r in doubled["tags"] for t in r}),
                                n_folds=2)
    assert not bad.success and "appear more than once" in bad.describe()


@pytest.mark.parametrize("name", ["mulan_emotions", "goemotions_sample", "miml_scenes"])
def test_ingest_reports_progress_up_to_every_cell(name):
    calls: list[tuple[int, int]] = []
    manifest = load_manifest(DATA / name)
    result = load_examples(manifest, progress=lambda done, total: calls.append((done, total)))
    n, passes = result.n_input_rows, 3
    if manifest.modality == "tabular":
        passes = 2 + len([c for c in result.examples.columns if c not in ("example_id", "row_number", "tags")])
    assert calls[-1] == (n * passes, n * passes)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and {t for _, t in calls} == {n * passes}
    assert result.examples.index.equals(pd.RangeIndex(len(result.examples)))


def test_raw_gate_counts_and_names_every_row_with_an_unknown_tag():
    from dq_pipeline.expectations import validate_raw_examples

    examples = pd.DataFrame({"example_id": [f"e{i}" for i in range(8)], "row_number": np.arange(8),
                             "tags": [["a"], ["x"], ["a", "x"], [], ["b"], ["y", "a"], ["x"], ["b"]]})
    result = validate_raw_examples(examples, modality="tabular", classes=["a", "b"], n_folds=2)
    assert not result.success
    failure = next(f for f in result.failures if f.column == "tag")
    assert failure.unexpected_count == 4  # rows 1, 2, 6 carry x, row 5 carries y
    assert [(s["row_number"], s["tag"]) for s in failure.sample] == [(1, "x"), (2, "x"), (5, "y"), (6, "x")]
    assert "tag(s) ['x', 'y'] are not among the classes" in result.describe()
    assert "example_id='e5'" in result.describe()
