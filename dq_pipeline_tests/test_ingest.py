from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.ingest import load_examples, parse_tags, tags_from_matrix, tags_matrix
from dq_pipeline.manifest import ManifestError, load_manifest
from dq_pipeline_tests.conftest import DATA, TEXT_MANIFEST, write_dataset


def test_parse_tags():
    assert parse_tags("a|b| a |", "|") == ["a", "b"]
    assert parse_tags("", "|") == []
    assert parse_tags(None, "|") == []
    assert parse_tags(["x", "y", "x"], None) == ["x", "y"]
    assert parse_tags(np.array(["x"]), "|") == ["x"]
    assert parse_tags("single tag", None) == ["single tag"]


@pytest.mark.parametrize("source", ["data.csv", "data.tsv", "data.parquet", "data.jsonl"])
def test_each_format_reads_the_same_examples(tmp_path: Path, emotions_frame: pd.DataFrame, source: str):
    frame = emotions_frame.iloc[:40].copy()
    frame.insert(0, "song", [f"s{i}" for i in range(len(frame))])
    if source.endswith((".parquet", ".jsonl")):  # list-valued tags column
        frame["labels"] = [s.split("|") if s else [] for s in frame["labels"]]
    manifest = f"modality: tabular\nsource: {source}\nlabels: {{column: labels, separator: '|'}}\nid_column: song\n"
    result = load_examples(load_manifest(write_dataset(tmp_path / "ds", frame, manifest, source)))
    assert len(result.examples) == 40 and result.quarantine.empty
    assert result.examples["example_id"].tolist()[:2] == ["s0", "s1"]
    expected = emotions_frame["labels"].iloc[0].split("|")
    assert result.examples["tags"].iloc[0] == expected
    assert "song" not in result.examples.columns  # the id column is not a feature
    features = [c for c in result.examples.columns if c not in ("example_id", "row_number", "tags")]
    assert len(features) == 72
    assert np.allclose(result.examples[features].to_numpy(float), emotions_frame.iloc[:40, :72].to_numpy(float))


def test_row_number_ids_when_no_id_column(tmp_path: Path, emotions_frame: pd.DataFrame):
    frame = pd.concat([emotions_frame.iloc[:3], emotions_frame.iloc[:1]])  # a repeated row keeps its own id
    manifest = "modality: tabular\nsource: data.csv\nlabels: {column: labels}\n"
    result = load_examples(load_manifest(write_dataset(tmp_path / "ds", frame, manifest)))
    assert result.examples["example_id"].tolist() == ["0", "1", "2", "3"]


def test_missing_column_is_named(tmp_path: Path):
    folder = write_dataset(tmp_path / "ds", pd.DataFrame({"t": ["hi"], "tags": ["a"]}), TEXT_MANIFEST, "comments.csv")
    with pytest.raises(ManifestError) as info:
        load_examples(load_manifest(folder))
    text = str(info.value)
    assert "dataset.yaml" in text and "'labels'" in text and "available columns" in text


def test_text_quarantine_null_id_and_empty_text(tmp_path: Path):
    frame = pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False).iloc[:10].copy()
    frame.loc[2, "text"] = "   "
    frame.loc[5, "id"] = ""
    result = load_examples(load_manifest(write_dataset(tmp_path / "ds", frame, TEXT_MANIFEST, "comments.csv")))
    q = result.quarantine.set_index("row_number")
    assert list(q.index) == [2, 5]
    assert "text column 'text' is empty" in q.loc[2, "reason"] and q.loc[2, "example_id"] == frame.loc[2, "id"]
    assert "id column 'id' is null" in q.loc[5, "reason"]
    assert len(result.examples) + len(result.quarantine) == result.n_input_rows == 10


def test_image_quarantine_each_bad_file(image_dataset: Path):
    labels = pd.read_csv(image_dataset / "labels.csv", keep_default_na=False)
    (image_dataset / "images" / "31.jpg").unlink()                                  # missing
    (image_dataset / "images" / "32.jpg").write_text("not a picture")              # not an image
    data = (image_dataset / "images" / "33.jpg").read_bytes()
    (image_dataset / "images" / "33.jpg").write_bytes(data[: len(data) // 2])       # truncated
    result = load_examples(load_manifest(image_dataset))
    q = result.quarantine.set_index("example_id")["reason"]
    assert set(q.index) == {"images/31.jpg", "images/32.jpg", "images/33.jpg"}
    assert "not found" in q["images/31.jpg"]
    assert "not an image" in q["images/32.jpg"]
    assert "truncated" in q["images/33.jpg"]
    assert len(result.examples) == len(labels) - 3


def test_tags_matrix_roundtrip():
    classes = ["a", "b", "c"]
    Y = tags_matrix([["a"], [], ["c", "b"]], classes)
    assert Y.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert tags_from_matrix(Y, classes) == [["a"], [], ["b", "c"]]
    with pytest.raises(ValueError, match="'z'"):
        tags_matrix([["z"]], classes)
