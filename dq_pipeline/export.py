"""Write the corrected dataset in the source's own format, ready to replace the original file.

Only what the audit and the latest valid review decisions (even those taken after the audit) corrected
changes: the labels cell of changed rows is rewritten, excluded rows are dropped, and every other byte is the source's own — CSV/TSV and JSONL are edited as text (BOM, line
endings, quoting, number spellings, "NA"/"null" cells and key order kept), parquet is rewritten with
pyarrow keeping the schema and values of every other column. Export refuses (:class:`ExportError`) when
the source file is no longer the one the latest audit read (its sha256 differs), since rows would be
matched to other rows' corrections.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dq_pipeline.ingest import parse_tags, read_source
from dq_pipeline.manifest import DATASET_NAME_RE, DatasetManifest, discover_datasets, load_manifest


class ExportError(Exception):
    """Export refused or failed; the message says why and what to do. ``exit_code``: 2 refused, 1 failed."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_dataset` wrote."""

    path: Path
    source_format: str
    n_rows: int  # data rows written
    n_changed: int  # rows whose labels cell was rewritten
    n_excluded: int  # rows dropped (excluded by the curation policy)
    n_unaudited: int  # source rows the audit did not curate (quarantined), kept as they were
    run_id: str = ""
    audited_at: Any = None
    warnings: list[str] = field(default_factory=list)


def source_digest(manifest: DatasetManifest) -> str:
    """sha256 (hex) of the manifest's source file bytes."""
    digest = hashlib.sha256()
    with open(manifest.source, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_example_ids(manifest: DatasetManifest, frame: pd.DataFrame) -> list[str | None]:
    """The example id ingestion gives each source row (None where the id is null, empty or not a scalar)."""
    if not manifest.id_column:
        return [str(i) for i in range(len(frame))]
    out: list[str | None] = []
    for v in frame[manifest.id_column].tolist():
        if v is None or isinstance(v, (list, tuple, dict, np.ndarray)) or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
        else:
            out.append(str(v).strip() or None)
    return out


# --------------------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class _Plan:
    keep: list[bool]  # per source row
    changes: dict[int, list[str]]  # source row -> corrected tags (original order, added tags appended)
    n_unaudited: int


def _plan(manifest: DatasetManifest, frame: pd.DataFrame, curated: pd.DataFrame) -> _Plan:
    """Which source rows to keep and which labels cells change. ``curated`` rows are matched to source rows
    by ``row_number`` (the audit's own, from ``examples``) when given, else by example id."""
    ids = source_example_ids(manifest, frame)
    decisions = list(zip(curated["labels"], curated["excluded"]))
    if "row_number" in curated.columns and curated["row_number"].notna().all():
        by_row: dict[int, Any] = {}
        for ex_id, row, decision in zip(curated["example_id"], curated["row_number"], decisions):
            row = int(row)
            if not 0 <= row < len(frame) or ids[row] != ex_id:
                raise ExportError(f"{manifest.source}: the audit's example {ex_id!r} was row {row}, which now "
                                  f"{'does not exist' if not 0 <= row < len(frame) else f'has id {ids[row]!r}'}; "
                                  "re-audit the dataset")
            by_row[row] = decision
        lookup = [by_row.get(i) for i in range(len(frame))]
    else:
        by_id = dict(zip(curated["example_id"], decisions))
        lookup = [by_id.get(ex_id) if ex_id is not None else None for ex_id in ids]
    cells = frame[manifest.labels_column].tolist()
    keep, changes, unaudited = [], {}, 0
    for i, found in enumerate(lookup):
        if found is None:  # quarantined (or never curated): kept as it was
            keep.append(True)
            unaudited += 1
            continue
        labels, excluded = found
        keep.append(not bool(excluded))
        original = parse_tags(cells[i], manifest.separator)
        corrected = [str(t) for t in labels] if labels is not None else []
        if set(original) != set(corrected):
            changes[i] = [t for t in original if t in corrected] + [t for t in corrected if t not in original]
    return _Plan(keep, changes, unaudited)


def _joined(manifest: DatasetManifest, tags: list[str]) -> str:
    if not manifest.separator and len(tags) > 1:
        raise ExportError(f"{manifest.manifest_path}: labels.separator is empty, so a cell holds one tag, but "
                          f"the corrected labels {tags} hold {len(tags)}; declare a separator")
    return (manifest.separator or "").join(tags)


# --------------------------------------------------------------------------------------- CSV / TSV

_QUOTED = re.compile(r'"[^"]*(?:""[^"]*)*"')


def _decode_field(raw: str) -> str:
    if raw.startswith('"'):
        m = _QUOTED.match(raw)
        if m:
            return raw[1:m.end() - 1].replace('""', '"') + raw[m.end():]
    return raw


_LINE_END = re.compile(r"\r\n?|\n")


def _delimited_records(text: str, delim: str, columns: tuple[int, ...]):
    """Yield ``(start, end, term_end, n_fields, spans)`` per record: ``spans[k]`` = (start, end) of field
    ``k`` for each wanted column (None when the record is shorter). Blank lines (spaces/tabs only, which
    pandas skips) are yielded with ``n_fields = 0``. Quoting follows pandas' C parser: a field is quoted
    when it starts with ``"``; ``""`` inside is a quote; line breaks inside quotes belong to the field.
    Lines without a quote take a fast path (str.split)."""
    blank_chars = " \t" if delim != "\t" else " "
    pos, n = 0, len(text)
    while pos < n:
        m = _LINE_END.search(text, pos)
        end, term_end = (m.start(), m.end()) if m else (n, n)
        line = text[pos:end]
        if not line.strip(blank_chars):
            yield pos, term_end, term_end, 0, {}
            pos = term_end
            continue
        if '"' not in line:
            parts = line.split(delim, max(columns) + 1) if columns else [line]
            spans = {}
            for k in columns:
                if k < len(parts):
                    s0 = pos + sum(map(len, parts[:k])) + k
                    spans[k] = (s0, s0 + len(parts[k]))
            yield pos, end, term_end, line.count(delim) + 1, spans
            pos = term_end
            continue
        field, record, skip = _patterns(delim, columns)
        m = record.match(text, pos)
        end = m.end()
        if end < n and text[end] not in "\r\n":
            raise ExportError(f"unterminated quoted field in the record starting at character {pos}")
        spans = {}
        for k in columns:
            s0 = skip[k].match(text, pos, end)
            if s0:
                spans[k] = (s0.end(), field.match(text, s0.end(), end).end())
        n_fields = len(columns) and max(columns) + 1  # at least; counted when a wanted field is missing
        if len(spans) < len(columns):
            n_fields, at = 1, field.match(text, pos, end).end()
            while at < end:  # at a delimiter
                n_fields, at = n_fields + 1, field.match(text, at + 1, end).end()
        term_end = end + (2 if text.startswith("\r\n", end) else 1 if end < n else 0)
        yield pos, end, term_end, max(n_fields, 1), spans
        pos = term_end


_PATTERNS: dict[tuple[str, tuple[int, ...]], tuple[Any, Any, dict[int, Any]]] = {}


def _patterns(delim: str, columns: tuple[int, ...]):
    """(one field, one record, {k: the first k fields with their delimiters}) as possessive regexes (no
    backtracking): a field is quoted ("..." with "" inside, then any text up to the delimiter) or not."""
    key = (delim, columns)
    if key not in _PATTERNS:
        d = re.escape(delim)
        f = rf'(?:"[^"]*+(?:""[^"]*+)*+"[^{d}\r\n]*+|[^{d}\r\n"][^{d}\r\n]*+|)'
        _PATTERNS[key] = (re.compile(f), re.compile(rf"{f}(?:{d}{f})*+"),
                          {k: re.compile(rf"(?:{f}{d}){{{k}}}") for k in columns})
    return _PATTERNS[key]


def _needs_quotes(value: str, delim: str) -> bool:
    return any(c in value for c in (delim, '"', "\r", "\n")) or value != value.strip(" \t")


def _edit_delimited(manifest: DatasetManifest, data: bytes, frame: pd.DataFrame, plan: _Plan) -> bytes:
    delim = "," if manifest.source_format == "csv" else "\t"
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    text = data[len(bom):].decode("utf-8")
    if manifest.labels_column not in frame.columns:
        raise _unparsable(manifest, f"no column {manifest.labels_column!r}")
    column = list(frame.columns).index(manifest.labels_column)
    id_index = list(frame.columns).index(manifest.id_column) if manifest.id_column else None
    expected_labels = frame[manifest.labels_column].tolist()
    expected_ids = frame[manifest.id_column].tolist() if manifest.id_column else None
    parts: list[str] = []
    wanted = (column,) if id_index is None else (column, id_index)
    row = -1  # -1: the header record
    for start, end, term_end, n_fields, spans in _delimited_records(text, delim, wanted):
        if not n_fields or row == -1:
            parts.append(text[start:term_end])
            row += n_fields > 0
            continue
        if row >= len(frame):
            raise _unparsable(manifest, f"more data records than the {len(frame)} rows pandas reads")
        cell = _decode_field(text[slice(*spans[column])]) if column in spans else ""
        _agree(manifest, row, "labels", cell, expected_labels[row])
        if id_index is not None:
            raw_id = _decode_field(text[slice(*spans[id_index])]) if id_index in spans else ""
            _agree(manifest, row, manifest.id_column, raw_id, expected_ids[row])
        if not plan.keep[row]:
            pass
        elif row in plan.changes:
            value = _joined(manifest, plan.changes[row])
            if column in spans:
                fstart, fend = spans[column]
                quote = text.startswith('"', fstart) or _needs_quotes(value, delim)
                new = f'"{value.replace(chr(34), chr(34) * 2)}"' if quote else value
                record = text[start:fstart] + new + text[fend:end]
            else:  # a short record: pad the missing fields
                quote = _needs_quotes(value, delim)
                new = f'"{value.replace(chr(34), chr(34) * 2)}"' if quote else value
                record = text[start:end] + delim * (column - n_fields + 1) + new
            if not record:  # an empty single-field record would read as a blank line (skipped)
                record = '""'
            parts.append(record + text[end:term_end])
        else:
            parts.append(text[start:term_end])
        row += 1
    if row != len(frame):
        raise _unparsable(manifest, f"{max(row, 0)} data records found, pandas reads {len(frame)} rows")
    return bom + "".join(parts).encode("utf-8")


def _agree(manifest: DatasetManifest, row: int, column: str, raw: Any, expected: Any) -> None:
    """The text edit must see the same cell as ingestion did, or it would edit the wrong row."""
    if expected is None or (isinstance(expected, float) and np.isnan(expected)):
        expected = ""
    if raw != expected and str(raw) != str(expected):
        raise _unparsable(manifest, f"row {row}, column {column!r}: text {raw!r} but pandas reads {expected!r}")


def _unparsable(manifest: DatasetManifest, detail: str) -> ExportError:
    return ExportError(f"{manifest.source}: cannot edit the file in place, its rows do not parse the way the "
                       f"audit read them ({detail}); nothing written")


# --------------------------------------------------------------------------------------- JSONL

_WS = re.compile(r"[ \t\n\r]*")


def _labels_span(line: str, key: str) -> tuple[tuple[int, int] | None, int]:
    """(span of the last ``key`` value in the top-level object on ``line`` or None, index of its ``}``)."""
    decoder = json.JSONDecoder()
    i = _WS.match(line, 0).end()
    if not line.startswith("{", i):
        raise ValueError("not a JSON object")
    i = _WS.match(line, i + 1).end()
    found = None
    if line.startswith("}", i):
        return None, i
    while True:
        if not line.startswith('"', i):
            raise ValueError(f"expected a key at {i}")
        name, i = json.decoder.scanstring(line, i + 1)
        i = _WS.match(line, i).end()
        if not line.startswith(":", i):
            raise ValueError(f"expected ':' at {i}")
        i = _WS.match(line, i + 1).end()
        _, end = decoder.raw_decode(line, i)
        if name == key:
            found = (i, end)
        i = _WS.match(line, end).end()
        if line.startswith(",", i):
            i = _WS.match(line, i + 1).end()
            continue
        if line.startswith("}", i):
            return found, i
        raise ValueError(f"expected ',' or '}}' at {i}")


def _edit_jsonl(manifest: DatasetManifest, data: bytes, frame: pd.DataFrame, plan: _Plan) -> bytes:
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    text = data[len(bom):].decode("utf-8")
    key = manifest.labels_column
    expected = frame[key].tolist() if key in frame.columns else [None] * len(frame)
    list_valued = any(isinstance(v, (list, tuple, np.ndarray)) for v in expected)
    parts, row = [], 0
    for line in re.findall(r"[^\n]*\n|[^\n]+$", text):  # pandas splits JSON lines on \n only
        if not line.strip():
            parts.append(line)
            continue
        if row >= len(frame):
            raise _unparsable(manifest, f"more JSON lines than the {len(frame)} rows pandas reads")
        body = line.rstrip("\r\n")
        try:
            span, close = _labels_span(body, key)
        except ValueError as exc:
            raise _unparsable(manifest, f"row {row}: {exc}") from exc
        current = json.loads(body[span[0]:span[1]]) if span else None
        want = expected[row]
        if isinstance(want, np.ndarray):
            want = want.tolist()
        if not ((current is None and (want is None or (isinstance(want, float) and np.isnan(want))))
                or current == want):
            raise _unparsable(manifest, f"row {row}: labels {current!r} but pandas reads {want!r}")
        if not plan.keep[row]:
            pass
        elif row in plan.changes:
            tags = plan.changes[row]
            as_list = isinstance(current, list) or (current is None and list_valued)
            value = json.dumps(tags if as_list else _joined(manifest, tags), ensure_ascii=body.isascii())
            if span:
                body = body[:span[0]] + value + body[span[1]:]
            else:
                sep = "" if body[:close].rstrip().endswith("{") else ", "
                body = body[:close] + f"{sep}{json.dumps(key)}: {value}" + body[close:]
            parts.append(body + line[len(line.rstrip("\r\n")):])
        else:
            parts.append(line)
        row += 1
    if row != len(frame):
        raise _unparsable(manifest, f"{row} JSON lines found, pandas reads {len(frame)} rows")
    return bom + "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------------------- parquet

def _edit_parquet(manifest: DatasetManifest, data: bytes, frame: pd.DataFrame, plan: _Plan) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(io.BytesIO(data))
    table = source.read()
    if table.num_rows != len(frame):
        raise _unparsable(manifest, f"pyarrow reads {table.num_rows} rows, pandas {len(frame)}")
    index = table.schema.get_field_index(manifest.labels_column)
    fld = table.schema.field(index)
    values = table.column(index).to_pylist()
    typ = fld.type
    base = typ.value_type if pa.types.is_dictionary(typ) else typ
    list_valued = pa.types.is_list(base) or pa.types.is_large_list(base) or pa.types.is_fixed_size_list(base)
    for i, tags in plan.changes.items():
        values[i] = tags if list_valued else _joined(manifest, tags)
    if plan.changes:
        if pa.types.is_null(typ):
            fld = fld.with_type(pa.list_(pa.string()) if list_valued else pa.string())
            array = pa.array(values, type=fld.type)
        elif pa.types.is_dictionary(typ):
            array = pa.array(values, type=base).dictionary_encode().cast(typ)
        else:
            array = pa.array(values, type=typ)
        table = table.set_column(index, fld, array)
    table = table.filter(pa.array(plan.keep, type=pa.bool_()))
    meta = source.metadata
    codec = meta.row_group(0).column(0).compression.lower() if meta.num_row_groups and meta.num_columns else "snappy"
    codec = {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=codec if codec in ("none", "snappy", "gzip", "brotli", "zstd", "lz4")
                   else "snappy")
    return sink.getvalue().to_pybytes()


# --------------------------------------------------------------------------------------- writing

def export_corrected(manifest: DatasetManifest, curated: pd.DataFrame, out: str | Path,
                     expected_digest: str | None = None) -> ExportSummary:
    """Write the source with ``curated``'s labels (example_id, labels, excluded) to ``out``.

    ``expected_digest``: the audit's ``source_sha256``; the bytes edited must have it (ExportError
    otherwise). The output is written to a temporary file beside ``out`` and renamed over it (devices
    such as /dev/stdout are written directly).
    """
    data = manifest.source.read_bytes()
    if expected_digest is not None and hashlib.sha256(data).hexdigest() != expected_digest:
        raise ExportError(f"{manifest.source} changed while exporting; run the export again")
    frame = read_source(manifest)
    if expected_digest is not None and source_digest(manifest) != expected_digest:
        raise ExportError(f"{manifest.source} changed while exporting; run the export again")
    plan = _plan(manifest, frame, curated)
    fmt = manifest.source_format
    try:
        if fmt in ("csv", "tsv"):
            payload = _edit_delimited(manifest, data, frame, plan)
        elif fmt == "jsonl":
            payload = _edit_jsonl(manifest, data, frame, plan)
        else:
            payload = _edit_parquet(manifest, data, frame, plan)
    except UnicodeDecodeError as exc:
        raise _unparsable(manifest, f"not UTF-8: {exc}") from exc
    path = _write(Path(out), payload)
    kept = [i for i, k in enumerate(plan.keep) if k]
    return ExportSummary(path=path, source_format=fmt, n_rows=len(kept),
                         n_changed=sum(1 for i in plan.changes if plan.keep[i]),
                         n_excluded=plan.keep.count(False), n_unaudited=plan.n_unaudited)


def _write(out: Path, payload: bytes) -> Path:
    try:
        if out.exists() and not stat.S_ISREG(out.stat().st_mode):  # a device or pipe: write into it
            with open(out, "wb") as fh:
                fh.write(payload)
                fh.flush()
            return out
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            if out.exists():
                os.chmod(tmp, stat.S_IMODE(out.stat().st_mode))
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ExportError(f"cannot write {out}: {exc.strerror or exc}; nothing written", exit_code=1) from exc
    return out


def check_output_path(out: str | Path, manifest: DatasetManifest, db_path: str | Path | None = None) -> Path:
    """Refuse an output path that is empty, a folder, in a missing folder, or the source, the manifest or
    the DuckDB file itself (export never overwrites what the audit refers to)."""
    if not str(out).strip():
        raise ExportError("--out is empty; give the output file name")
    path = Path(out)
    if path.is_dir():
        raise ExportError(f"--out {path} is a folder; give a file name, e.g. {path / manifest.source.name}")
    if not path.parent.is_dir():
        raise ExportError(f"--out {path}: folder {path.parent} does not exist; create it first")
    for what, other in (("the dataset's source file", manifest.source), ("the dataset's manifest",
                        manifest.manifest_path), ("the DuckDB file", Path(db_path) if db_path else None)):
        if other is not None and (path.resolve() == other.resolve()
                                  or (path.exists() and other.exists() and os.path.samefile(path, other))):
            raise ExportError(f"--out {path} is {what} ({other}); export never overwrites it: write to another "
                              "file, check it, then replace the original yourself")
    return path


def _latest_decisions(db_path: str | Path, dataset: str, run_id: str) -> pd.DataFrame:
    """example_id, review_action, reviewed_labels of the latest audit's examples with a valid review
    decision (taken before or after the audit); empty for a file from before reviews existed."""
    from dq_pipeline import store

    try:
        rows = store.read_latest(db_path, "examples", dataset,
                                 columns=["run_id", "example_id", "review_action", "reviewed_labels"])
    except ValueError:  # a file from before schema version 3 that could not be migrated now: no reviews
        return pd.DataFrame(columns=["example_id", "review_action", "reviewed_labels"])
    rows = rows[rows["review_action"].notna() & (rows["run_id"] == run_id)]
    return rows.drop(columns="run_id")


def apply_reviews(curated: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """``curated`` (example_id, labels, excluded, ...) with the latest valid review decisions applied:
    'exclude' excludes the example, 'keep' / 'accept' / 'set' write the tags decided (reviewed_labels)
    and un-exclude it (review > suggestion > given)."""
    if decisions is None or decisions.empty or curated.empty:
        return curated
    by_id = {str(e): (a, lab) for e, a, lab in zip(decisions["example_id"], decisions["review_action"],
                                                    decisions["reviewed_labels"])}
    curated = curated.copy()
    labels, excluded, reasons = list(curated["labels"]), list(curated["excluded"]), list(curated["reason"])
    for i, ex_id in enumerate(curated["example_id"]):
        found = by_id.get(str(ex_id))
        if found is None:
            continue
        action, decided = found
        if action == "exclude":
            excluded[i] = True
        else:
            labels[i] = [str(t) for t in (decided if decided is not None else [])]
            excluded[i] = False
        reasons[i] = f"review: {action}"
    curated["labels"], curated["excluded"], curated["reason"] = labels, excluded, reasons
    return curated


def export_dataset(dataset: str, out: str | Path, data_dir: str | Path, db_path: str | Path) -> ExportSummary:
    """``dq-pipeline export``: the latest audit's corrections of ``data_dir/dataset`` written to ``out``.

    Raises :class:`ExportError` (refusals: unknown dataset, no audit, source changed since the audit, bad
    output path; failures writing ``out``), :class:`dq_pipeline.store.StoreError` (the DuckDB file cannot
    be read) or :class:`dq_pipeline.manifest.ManifestError` (invalid dataset.yaml).
    """
    from dq_pipeline import store

    folder = Path(data_dir) / dataset
    if not DATASET_NAME_RE.match(dataset) or not (folder / "dataset.yaml").is_file():
        known = sorted(discover_datasets(data_dir))
        hint = f"datasets there: {', '.join(known)}" if known else "no dataset folders there"
        raise ExportError(f"unknown dataset {dataset!r}: no {folder}/dataset.yaml under --data-dir {data_dir} "
                          f"({hint})")
    manifest = load_manifest(folder)
    out_path = check_output_path(out, manifest, db_path)
    if not Path(db_path).exists():
        raise ExportError(f"no successful audit of {dataset!r}: no DuckDB file at {db_path}; run `dq-pipeline "
                          f"audit {folder} --db {db_path}` first, or pass --db (or set DQ_DUCKDB_PATH) to the file "
                          "the audits wrote")
    runs = store.read_latest(db_path, "audit_runs", dataset)
    if runs.empty:
        raise ExportError(f"no successful audit of {dataset!r} in {db_path}; run `dq-pipeline audit {folder} "
                          f"--db {db_path}` first")
    run = runs.iloc[0].to_dict()
    curated = store.read_latest(db_path, "curated_labels", dataset)
    rows = store.read_latest(db_path, "examples", dataset, columns=["run_id", "example_id", "row_number"])
    if len(rows) == len(curated) and set(rows["run_id"]) == set(curated["run_id"]):
        curated = curated.merge(rows.drop(columns="run_id"), on="example_id", how="left")
    curated = apply_reviews(curated, _latest_decisions(db_path, dataset, run["run_id"]))
    if curated.empty or set(curated["run_id"]) != {run["run_id"]}:
        raise ExportError(f"the latest audit of {dataset!r} in {db_path} (run {run['run_id']}) has no curated "
                          "labels (or another audit finished meanwhile); re-run the export or the audit")
    recorded = run.get("source_sha256")
    audited = f"audited at {run.get('finished_at')} (run {run['run_id']})"
    redo = f"re-audit it first: dq-pipeline audit {folder} --db {db_path}"
    if not isinstance(recorded, str) or not recorded:
        raise ExportError(f"the latest audit of {dataset!r} ({audited}) did not record the sha256 of "
                          f"{manifest.source} (it predates source fingerprints), so export cannot tell whether "
                          f"the file still matches it; {redo}")
    current = source_digest(manifest)
    if current != recorded:
        ids = f"ids from {manifest.id_column!r}" if manifest.id_column else "row numbers as ids"
        raise ExportError(f"{manifest.source} changed since the audit of {dataset!r} {audited}: sha256 is now "
                          f"{current[:12]}…, the audit read {recorded[:12]}…. Exporting would apply the audit's "
                          f"corrections ({ids}) to a different file; {redo}")
    warnings = []
    if path_suffix := out_path.suffix.lower():
        if path_suffix != manifest.source.suffix.lower():
            warnings.append(f"{out_path} gets the source's format ({manifest.source_format}), not "
                            f"{path_suffix.lstrip('.')}")
    summary = export_corrected(manifest, curated, out_path, expected_digest=recorded)
    return dataclasses.replace(summary, run_id=str(run["run_id"]), audited_at=run.get("finished_at"),
                               warnings=warnings)
