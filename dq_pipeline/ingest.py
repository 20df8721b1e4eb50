"""Ingestion: read a dataset's source file into examples + quarantine, as the manifest describes.

Nothing is lost: every input row ends up either in ``examples`` or in ``quarantine`` with a reason
(``n_input_rows == len(examples) + len(quarantine)``). Problems of the dataset as a whole (unknown
tags, duplicate ids, escaping paths, ...) are *not* decided here: the raw-examples gate
(:mod:`dq_pipeline.expectations`) fails on them with a message naming the rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dq_pipeline.manifest import DatasetManifest, ManifestError

log = logging.getLogger(__name__)

#: Columns every ``examples`` frame carries, whatever the modality.
BASE_COLUMNS = ("example_id", "row_number", "tags")
#: Cell values read as missing in feature columns (labels, ids and texts are read verbatim).
NA_STRINGS = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "#N/A"]


@dataclass(frozen=True)
class IngestResult:
    """Output of :func:`load_examples`.

    examples : one row per usable input row: ``example_id`` (str), ``row_number`` (0-based data row
        in the source), ``tags`` (list[str]) and the payload: ``text`` (text), ``image`` (path as
        written) + ``image_path`` (absolute) (image), or the feature columns (tabular).
    quarantine : ``row_number``, ``example_id`` (None when unknown), ``reason``.
    source : the source file as read (all original columns, original row order) — for export.
    classes : the tag vocabulary (declared in the manifest, else sorted union of the tags seen).
    """

    examples: pd.DataFrame
    quarantine: pd.DataFrame
    source: pd.DataFrame
    classes: list[str]

    @property
    def n_input_rows(self) -> int:
        return len(self.source)


def read_source(manifest: DatasetManifest) -> pd.DataFrame:
    """Read the manifest's source file; label, id and text columns are kept verbatim (no NA parsing)."""
    path, fmt = manifest.source, manifest.source_format
    verbatim = [c for c in (manifest.labels_column, manifest.id_column, manifest.text_column,
                            manifest.image_column) if c]
    try:
        if fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            header = pd.read_csv(path, sep=sep, nrows=0).columns
            na_values = {c: NA_STRINGS for c in header if c not in verbatim}
            frame = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=na_values,
                                dtype={c: str for c in verbatim if c in header})
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ManifestError(f"{path}: cannot read {fmt} source: {exc}") from exc
    return frame.reset_index(drop=True)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def parse_tags(value: Any, separator: str | None) -> list[str]:
    """Turn one labels cell into a de-duplicated list of tags (order of first appearance).

    A list/array cell is taken as-is; a string is split on ``separator`` (whitespace around tags is
    stripped; an empty string means no tags); a missing cell means no tags.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        items: Iterable[Any] = value
    elif _is_missing(value):
        return []
    else:
        text = str(value)
        items = text.split(separator) if separator else [text]
    tags = [str(t).strip() for t in items if not _is_missing(t)]
    return list(dict.fromkeys(t for t in tags if t))


def _require_columns(manifest: DatasetManifest, frame: pd.DataFrame) -> None:
    wanted = {
        "labels.column": manifest.labels_column,
        "id_column": manifest.id_column,
        "text_column": manifest.text_column,
        "image_column": manifest.image_column,
    }
    available = list(map(str, frame.columns))
    for key, column in wanted.items():
        if column and column not in frame.columns:
            raise ManifestError(
                f"{manifest.manifest_path}: '{key}' names column {column!r}, which is not in "
                f"{manifest.source.name}; available columns: {available}"
            )
    for key, columns in (("feature_columns", manifest.feature_columns or ()),
                         ("categorical_columns", manifest.categorical_columns)):
        for column in columns:
            if column not in frame.columns:
                raise ManifestError(
                    f"{manifest.manifest_path}: '{key}' names column {column!r}, which is not in "
                    f"{manifest.source.name}; available columns: {available}"
                )


def feature_columns_of(manifest: DatasetManifest, frame: pd.DataFrame) -> list[str]:
    """The tabular feature columns: declared, else every column except id and labels."""
    if manifest.feature_columns:
        columns = list(manifest.feature_columns)
    else:
        skip = {manifest.labels_column, manifest.id_column}
        columns = [c for c in frame.columns if c not in skip]
    clash = sorted(set(columns) & set(BASE_COLUMNS))
    if clash:
        raise ManifestError(
            f"{manifest.manifest_path}: feature column(s) {clash} clash with reserved names {list(BASE_COLUMNS)}; "
            "list the feature columns explicitly"
        )
    return columns


def load_examples(
    manifest: DatasetManifest,
    check_image: Callable[[Path], str | None] | None = None,
) -> IngestResult:
    """Read the source and split its rows into usable examples and quarantined rows.

    Quarantined (with a reason naming the row, column and value): a null/empty id; an empty or
    whitespace-only text; an image that is missing, unreadable, truncated or not an image. Image paths
    that leave the dataset folder are kept and fail the raw-examples gate instead.
    """
    frame = read_source(manifest)
    _require_columns(manifest, frame)
    if manifest.modality == "image" and check_image is None:
        from dq_pipeline.embed.image import check_image as check_image  # lazy: pulls in PIL

    n = len(frame)
    reasons: list[str | None] = [None] * n
    row_numbers = np.arange(n)

    if manifest.id_column:
        raw_ids = frame[manifest.id_column].tolist()
        ids = [None if _is_missing(v) or not str(v).strip() else str(v).strip() for v in raw_ids]
        for i, v in enumerate(ids):
            if v is None:
                reasons[i] = f"row {i}: id column {manifest.id_column!r} is null or empty"
    else:
        ids = [str(i) for i in range(n)]

    tags = [parse_tags(v, manifest.separator) for v in frame[manifest.labels_column].tolist()]
    examples = pd.DataFrame({"example_id": ids, "row_number": row_numbers, "tags": tags})

    if manifest.modality == "text":
        texts = frame[manifest.text_column].tolist()
        for i, t in enumerate(texts):
            if reasons[i] is None and (_is_missing(t) or not str(t).strip()):
                reasons[i] = f"row {i}: text column {manifest.text_column!r} is empty ({t!r})"
        examples["text"] = ["" if _is_missing(t) else str(t) for t in texts]
    elif manifest.modality == "image":
        rel_paths = ["" if _is_missing(p) else str(p).strip() for p in frame[manifest.image_column].tolist()]
        abs_paths = [(manifest.folder / p).resolve() if p else None for p in rel_paths]
        for i, (rel, path) in enumerate(zip(rel_paths, abs_paths)):
            if reasons[i] is not None:
                continue
            if path is None:
                reasons[i] = f"row {i}: image column {manifest.image_column!r} is empty"
            elif path.is_relative_to(manifest.folder):  # escaping paths fail the gate instead
                problem = check_image(path)
                if problem:
                    reasons[i] = f"row {i}: {manifest.image_column}={rel!r}: {problem}"
        examples["image"] = rel_paths
        examples["image_path"] = [str(p) if p else "" for p in abs_paths]
    else:
        payload = frame[feature_columns_of(manifest, frame)].copy()
        for column in manifest.categorical_columns:  # integer codes are categories, not magnitudes
            if column in payload:
                payload[column] = payload[column].map(lambda v: None if _is_missing(v) else str(v)).astype(object)
        examples = pd.concat([examples, payload.reset_index(drop=True)], axis=1)

    bad = np.array([r is not None for r in reasons], dtype=bool)
    quarantine = pd.DataFrame(
        {
            "row_number": row_numbers[bad].astype("int64"),
            "example_id": [ids[i] for i in np.flatnonzero(bad)],
            "reason": [reasons[i] for i in np.flatnonzero(bad)],
        }
    )
    examples = examples.loc[~bad].reset_index(drop=True)
    if manifest.classes:
        classes = list(manifest.classes)
    else:
        classes = sorted({t for row in examples["tags"] for t in row})
    if len(quarantine):
        log.warning("%s: %d of %d rows quarantined (first: %s)", manifest.name, len(quarantine), n,
                    quarantine["reason"].iloc[0])
    return IngestResult(examples=examples, quarantine=quarantine, source=frame, classes=classes)


def tags_matrix(tags: Iterable[list[str]], classes: list[str]) -> np.ndarray:
    """One-hot tags, shape (N, K) uint8, columns in ``classes`` order; unknown tags raise ValueError."""
    index = {c: k for k, c in enumerate(classes)}
    rows = list(tags)
    out = np.zeros((len(rows), len(classes)), dtype=np.uint8)
    for i, row in enumerate(rows):
        for t in row:
            if t not in index:
                raise ValueError(f"example {i}: tag {t!r} is not one of the classes {classes}")
            out[i, index[t]] = 1
    return out


def tags_from_matrix(matrix: np.ndarray, classes: list[str]) -> list[list[str]]:
    """Inverse of :func:`tags_matrix`: (N, K) 0/1 -> list of tag lists in ``classes`` order."""
    names = np.asarray(classes, dtype=object)
    return [list(names[np.flatnonzero(row)]) for row in np.asarray(matrix, dtype=bool)]
