"""Dataset manifest (``data/<dataset>/dataset.yaml``): loading and validation.

The manifest is a contract (see DESIGN.md). Every error names the manifest file and the key or value
that is wrong, so a user can fix it without reading code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST_NAME = "dataset.yaml"
MODALITIES = ("image", "text", "tabular")
SOURCE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}
DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class ManifestError(ValueError):
    """The dataset manifest (or the dataset folder it describes) is invalid."""


@dataclass(frozen=True)
class DatasetManifest:
    """A validated ``dataset.yaml``; paths are absolute."""

    name: str
    folder: Path
    modality: str
    source: Path
    labels_column: str
    separator: str | None = "|"
    classes: tuple[str, ...] | None = None
    id_column: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    feature_columns: tuple[str, ...] | None = None
    categorical_columns: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_NAME

    @property
    def source_format(self) -> str:
        return SOURCE_FORMATS[self.source.suffix.lower()]


def _as_str_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ManifestError(f"{path}: '{key}' must be a list of names, got {value!r}")
    return tuple(str(v) for v in value)


def load_manifest(folder: str | Path) -> DatasetManifest:
    """Read and validate ``<folder>/dataset.yaml``.

    Checks keys and types and that the source file exists inside the folder. Column existence is
    checked against the source by :func:`dq_pipeline.ingest.load_examples`.
    """
    folder = Path(folder).resolve()
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found (every dataset folder needs a {MANIFEST_NAME})")
    name = folder.name
    if not DATASET_NAME_RE.match(name):
        raise ManifestError(
            f"{folder}: dataset folder name {name!r} may only contain letters, digits, '_' and '-'"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping of keys, got {type(raw).__name__}")

    known = {"modality", "source", "labels", "id_column", "text_column", "image_column", "feature_columns",
             "categorical_columns", "description"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(known)}")

    modality = raw.get("modality")
    if modality not in MODALITIES:
        raise ManifestError(f"{path}: 'modality' must be one of {list(MODALITIES)}, got {modality!r}")
    source_rel = raw.get("source")
    if not isinstance(source_rel, str) or not source_rel:
        raise ManifestError(f"{path}: 'source' (the data file, relative to the folder) is required")
    source = (folder / source_rel).resolve()
    if not source.is_relative_to(folder):
        raise ManifestError(f"{path}: 'source' {source_rel!r} leaves the dataset folder {folder}")
    if source.suffix.lower() not in SOURCE_FORMATS:
        raise ManifestError(
            f"{path}: 'source' {source_rel!r} has unsupported format; use one of {sorted(SOURCE_FORMATS)}"
        )
    if not source.is_file():
        raise ManifestError(f"{path}: 'source' file {source} not found")

    labels = raw.get("labels")
    if not isinstance(labels, dict) or not isinstance(labels.get("column"), str):
        raise ManifestError(f"{path}: 'labels.column' (name of the tags column) is required")
    unknown_label_keys = sorted(set(labels) - {"column", "separator", "classes"})
    if unknown_label_keys:
        raise ManifestError(f"{path}: unknown key(s) under 'labels': {unknown_label_keys}")
    separator = labels.get("separator", "|")
    if separator is not None and not isinstance(separator, str):
        raise ManifestError(f"{path}: 'labels.separator' must be a string, got {separator!r}")
    classes = None
    if labels.get("classes") is not None:
        classes = _as_str_list(labels["classes"], "labels.classes", path)
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise ManifestError(f"{path}: 'labels.classes' lists {duplicates} more than once")
        if not classes:
            raise ManifestError(f"{path}: 'labels.classes' is empty")

    def opt_str(key: str) -> str | None:
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ManifestError(f"{path}: '{key}' must be a column name, got {value!r}")
        return value

    text_column, image_column = opt_str("text_column"), opt_str("image_column")
    if modality == "text" and not text_column:
        raise ManifestError(f"{path}: modality 'text' needs 'text_column'")
    if modality == "image" and not image_column:
        raise ManifestError(f"{path}: modality 'image' needs 'image_column'")
    feature_columns = None
    if raw.get("feature_columns") is not None:
        feature_columns = _as_str_list(raw["feature_columns"], "feature_columns", path)

    categorical_columns: tuple[str, ...] = ()
    if raw.get("categorical_columns") is not None:
        categorical_columns = _as_str_list(raw["categorical_columns"], "categorical_columns", path)

    return DatasetManifest(
        name=name,
        folder=folder,
        modality=modality,
        source=source,
        labels_column=labels["column"],
        separator=separator,
        classes=classes,
        id_column=opt_str("id_column"),
        text_column=text_column,
        image_column=image_column,
        feature_columns=feature_columns,
        categorical_columns=categorical_columns,
        raw=raw,
    )


def discover_datasets(data_dir: str | Path) -> dict[str, Path]:
    """Map dataset name -> folder for every direct subfolder of ``data_dir`` holding a manifest."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return {}
    return {
        p.name: p.resolve()
        for p in sorted(data_dir.iterdir())
        if p.is_dir() and (p / MANIFEST_NAME).is_file() and DATASET_NAME_RE.match(p.name)
    }
