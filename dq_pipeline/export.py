"""Write the corrected dataset in the source's own format, ready to replace the original file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dq_pipeline.ingest import parse_tags, read_source
from dq_pipeline.manifest import DatasetManifest


def source_example_ids(manifest: DatasetManifest, frame: pd.DataFrame) -> list[str | None]:
    """The example id ingestion gives each source row (None where the id is null)."""
    if not manifest.id_column:
        return [str(i) for i in range(len(frame))]
    out: list[str | None] = []
    for v in frame[manifest.id_column].tolist():
        text = None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
        out.append(text or None)
    return out


def corrected_frame(manifest: DatasetManifest, curated: pd.DataFrame) -> pd.DataFrame:
    """The source rows with the labels column replaced by ``curated`` (example_id, labels, excluded).

    Same columns, order, id and tag format (separator-joined string, or a list where the source holds
    lists); unchanged cells are kept verbatim, changed ones keep the original tag order and append
    added tags. Excluded examples are dropped; rows the audit never saw (quarantined) are kept unchanged.
    """
    frame = read_source(manifest)
    ids = source_example_ids(manifest, frame)
    by_id = {r.example_id: r for r in curated.itertuples(index=False)}
    column = manifest.labels_column
    list_valued = any(isinstance(v, (list, tuple, np.ndarray)) for v in frame[column].tolist())
    keep, labels = [], []
    for i, ex_id in enumerate(ids):
        row = by_id.get(ex_id)
        if row is None:
            keep.append(True)
            labels.append(frame[column].iloc[i])
            continue
        keep.append(not bool(row.excluded))
        original = parse_tags(frame[column].iloc[i], manifest.separator)
        corrected = [str(t) for t in row.labels]
        if set(original) == set(corrected):  # unchanged: keep the cell exactly as written
            labels.append(frame[column].iloc[i])
            continue
        tags = [t for t in original if t in corrected] + [t for t in corrected if t not in original]
        labels.append(tags if list_valued else (manifest.separator or "").join(tags))
    out = frame.copy()
    out[column] = pd.Series(labels, index=out.index, dtype=object)
    return out.loc[keep].reset_index(drop=True)


def write_like_source(manifest: DatasetManifest, frame: pd.DataFrame, out: str | Path) -> Path:
    """Write ``frame`` to ``out`` in the manifest's source format."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fmt = manifest.source_format
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "tsv":
        frame.to_csv(out, index=False, sep="\t")
    elif fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_json(out, orient="records", lines=True, force_ascii=False)
    return out
