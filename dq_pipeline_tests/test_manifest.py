from pathlib import Path

import pandas as pd
import pytest

from dq_pipeline.manifest import ManifestError, discover_datasets, load_manifest
from dq_pipeline_tests.conftest import DATA, write_dataset


def test_bundled_manifests_load():
    found = discover_datasets(DATA)
    assert {"miml_scenes", "goemotions_sample", "mulan_emotions", "mulan_flags"} <= set(found)
    modalities = {load_manifest(f).modality for f in found.values()}
    assert modalities == {"image", "text", "tabular"}
    m = load_manifest(DATA / "miml_scenes")
    assert m.classes == ("desert", "mountains", "sea", "sunset", "trees")
    assert m.source.name == "labels.csv" and m.source_format == "csv"


@pytest.mark.parametrize(
    "manifest, message",
    [
        ("modality: video\nsource: data.csv\nlabels: {column: labels}\n", "'modality' must be one of"),
        ("modality: tabular\nlabels: {column: labels}\n", "'source'"),
        ("modality: tabular\nsource: missing.csv\nlabels: {column: labels}\n", "not found"),
        ("modality: tabular\nsource: ../outside.csv\nlabels: {column: labels}\n", "leaves the dataset folder"),
        ("modality: tabular\nsource: data.xlsx\nlabels: {column: labels}\n", "unsupported format"),
        ("modality: text\nsource: data.csv\nlabels: {column: labels}\n", "needs 'text_column'"),
        ("modality: tabular\nsource: data.csv\nlabels: {column: labels}\ncolour: red\n", "unknown key"),
        ("modality: tabular\nsource: data.csv\nlabels: {column: labels, classes: [a, a]}\n", "more than once"),
        ("modality: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_manifest_names_file_and_key(tmp_path: Path, manifest: str, message: str):
    folder = write_dataset(tmp_path / "ds", pd.DataFrame({"x": [1.0], "labels": ["a"]}), manifest)
    with pytest.raises(ManifestError, match=message) as info:
        load_manifest(folder)
    assert str(folder / "dataset.yaml") in str(info.value)


def test_bad_folder_name(tmp_path: Path):
    folder = write_dataset(tmp_path / "bad name", pd.DataFrame({"labels": ["a"]}),
                           "modality: tabular\nsource: data.csv\nlabels: {column: labels}\n")
    with pytest.raises(ManifestError, match="letters, digits"):
        load_manifest(folder)
