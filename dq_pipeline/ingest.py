"""Ingestion: read a dataset's source file into examples + quarantine, as the manifest describes.

Nothing is lost: every input row ends up either in ``examples`` or in ``quarantine`` with a reason
(``n_input_rows == len(examples) + len(quarantine)``) that names the file, the row (0-based data row,
the quarantine's ``row_number``; for text formats also the file's 1-based line), the column and the
value. Problems of the dataset as a whole (unknown tags, duplicate ids, escaping paths, no tag at
all, ...) are *not* decided here: the raw-examples gate (:mod:`dq_pipeline.expectations`) fails on
them with a message naming the rows. A file that cannot be read as rows at all (not UTF-8, empty,
duplicate column names, a CSV row with more fields than the header, a JSONL line that is not an
object) raises :class:`~dq_pipeline.manifest.ManifestError` naming the file, line and value.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
#: A tabular feature column is numeric when its cells that are not numbers are at most this share of
#: its non-missing cells (or just one cell) and at least two cells are numbers: those cells are then
#: quarantined with their row, column and value, rather than one typo turning the column into hundreds
#: of one-hot columns. Columns with more non-numbers are categorical (one-hot), as are
#: ``categorical_columns`` always.
MAX_NON_NUMERIC_SHARE = 0.05
#: Largest magnitude a numeric feature may have; larger values (and +-inf) are quarantined. Scaling
#: squares the values: 1e150**2 = 1e300, and a sum of up to 1e8 such squares stays below float64's
#: maximum (1.8e308), while no real measurement comes near 1e150.
MAX_ABS_VALUE = 1e150
#: Longest text (characters) accepted; longer ones are quarantined (the text model reads only the first
#: few hundred word pieces anyway).
MAX_TEXT_CHARS = 1_000_000

_NA_SET = frozenset(NA_STRINGS)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INFINITY_RE = re.compile(r"[+-]?(?:inf|infinity)", re.IGNORECASE)
_DECIMAL_COMMA_RE = re.compile(r"[+-]?\d+,\d+")
_SURROGATE_RE = re.compile("[\udc80-\udcff]")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")
_CONTAINERS = (list, tuple, dict, set, np.ndarray)


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


@dataclass(frozen=True)
class _Source:
    """A source file as read: the frame, the 1-based file line where each data row starts (text formats,
    when known) and problems of single rows found while reading (short CSV rows, JSONL keys missing)."""

    frame: pd.DataFrame
    lines: list[int] | None = None
    row_problems: dict[int, str] = field(default_factory=dict)


def read_source(manifest: DatasetManifest) -> pd.DataFrame:
    """Read the manifest's source file; label, id and text columns are kept verbatim (no NA parsing).

    Raises :class:`ManifestError` naming the file (and line, column and value where there is one) when
    the file cannot be read as a whole: not UTF-8, empty, duplicate column names, a CSV row with more
    fields than the header, a JSONL line that is not a JSON object, a broken parquet file.
    """
    return _read(manifest).frame


def check_source(manifest: DatasetManifest) -> None:
    """Raise :class:`ManifestError` unless the source reads and holds every column the manifest names
    (what the CLI checks before it starts an audit); row-level problems are left to ingestion."""
    frame = _read(manifest).frame
    _require_columns(manifest, frame)
    if manifest.modality == "tabular":
        feature_columns_of(manifest, frame)


def _read(manifest: DatasetManifest) -> _Source:
    path, fmt = manifest.source, manifest.source_format
    if fmt == "parquet":
        return _read_parquet(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the file: {exc}") from exc
    text = _decode(path, data, fmt)
    if not text.strip():
        raise ManifestError(f"{path}: the file is empty" + (" (no header row)" if fmt != "jsonl" else ""))
    verbatim = [c for c in (manifest.labels_column, manifest.id_column, manifest.text_column,
                            manifest.image_column) if c]
    if fmt == "jsonl":
        return _read_jsonl(path, text, verbatim)
    return _read_delimited(path, text, "," if fmt == "csv" else "\t", verbatim)


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return text[: limit - 4] + "...'" if text[0] in "'\"" else text[:limit] + "..."


def _duplicate_names(path: Path, names: list[str]) -> None:
    seen: dict[str, list[int]] = {}
    for position, name in enumerate(names, 1):
        if name != "":
            seen.setdefault(name, []).append(position)
    for name, positions in seen.items():
        if len(positions) > 1:
            raise ManifestError(
                f"{path}: column name {name!r} appears {len(positions)} times (columns "
                f"{', '.join(map(str, positions))}); rename them so that every column name is unique"
            )


def _decode(path: Path, data: bytes, fmt: str) -> str:
    """UTF-8 (a BOM is dropped); anything else is a ManifestError naming the line, row, column and byte."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ManifestError(f"{path}: the file is UTF-16 (or UTF-32) encoded; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        line = data.count(b"\n", 0, exc.start) + 1
        where = f"line {line}"
        located = _locate_undecodable(data, fmt)
        if located:
            row, column, value = located
            where = (f"header (line {line})" if row is None else f"row {row} (line {line})") + \
                f", column {column!r}, value '{value}'"
        latin = bytes([byte]).decode("cp1252", errors="replace")
        raise ManifestError(
            f"{path}: {where}: byte 0x{byte:02x} is not valid UTF-8 (it reads as {latin!r} in latin-1 / "
            "Windows-1252, the likely encoding of this file); save the file as UTF-8"
        ) from None


def _locate_undecodable(data: bytes, fmt: str) -> tuple[int | None, str, str] | None:
    """(data row or None for the header, column, value with the bad bytes as \\xNN) of the first cell
    holding bytes that are not UTF-8; None when that cannot be told."""
    text = data.decode("utf-8-sig", errors="surrogateescape")

    def show(value: str) -> str:
        shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return shown if len(shown) <= 60 else shown[:57] + "..."

    try:
        if fmt == "jsonl":
            for row, (_, line) in enumerate(_jsonl_lines(text)):
                if _SURROGATE_RE.search(line):
                    record = json.loads(line)
                    for key, value in (record.items() if isinstance(record, dict) else ()):
                        cell = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                        if _SURROGATE_RE.search(cell):
                            return row, show(key), show(cell)
                    return None
            return None
        records = _csv_records(text, "," if fmt == "csv" else "\t")
    except (ValueError, csv.Error):
        return None
    header = records[0][1] if records else []
    for index, (_, fields) in enumerate(records):
        for j, value in enumerate(fields):
            if _SURROGATE_RE.search(value):
                column = header[j] if j < len(header) else f"#{j + 1}"
                return (None if index == 0 else index - 1), show(column), show(value)
    return None


def _csv_records(text: str, sep: str) -> list[tuple[int, list[str]]]:
    """(first line, fields) of each record, header included, skipping the lines pandas skips (empty or
    whitespace only)."""
    old_limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # huge texts in a cell are rows like any other
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
        records, previous = [], 0
        for fields in reader:
            start, previous = previous + 1, reader.line_num
            if not fields or (len(fields) == 1 and fields[0] != "" and not fields[0].strip()):
                continue
            records.append((start, fields))
        return records
    finally:
        csv.field_size_limit(old_limit)


def _read_delimited(path: Path, text: str, sep: str, verbatim: list[str]) -> _Source:
    try:
        records: list[tuple[int, list[str]]] | None = _csv_records(text, sep)
    except csv.Error:
        records = None  # pandas reports what is wrong below; rows are then named without lines
    if records:
        header_line, header = records[0]
        _duplicate_names(path, header)
        for line, fields in records[1:]:
            if len(fields) > len(header):
                name = "comma" if sep == "," else "tab"
                raise ManifestError(
                    f"{path}: line {line} has {len(fields)} fields but the header (line {header_line}) has "
                    f"{len(header)}; a {name} inside a value? quote that value"
                )
    try:
        columns = pd.read_csv(io.StringIO(text), sep=sep, nrows=0).columns
        na_values = {c: NA_STRINGS for c in columns if c not in verbatim}
        frame = pd.read_csv(io.StringIO(text), sep=sep, keep_default_na=False, na_values=na_values,
                            dtype={c: str for c in verbatim if c in columns}, index_col=False)
    except (ValueError, pd.errors.ParserError) as exc:
        unclosed = re.search(r"EOF inside string starting at row (\d+)", str(exc))
        if unclosed:  # pandas counts lines from 0 here
            raise ManifestError(f"{path}: line {int(unclosed.group(1)) + 1}: a quote (\") opens a value that is "
                                "never closed; close it, or double quotes inside values (\"\")") from exc
        raise ManifestError(f"{path}: cannot read {'csv' if sep == ',' else 'tsv'} source: {exc}") from exc
    frame = frame.reset_index(drop=True)
    if records is None or len(records) - 1 != len(frame):
        return _Source(frame)
    width = len(records[0][1])
    problems = {
        i: f"has {len(fields)} field(s) but the header has {width}; its missing cells would be read as empty"
        for i, (_, fields) in enumerate(records[1:]) if len(fields) < width
    }
    return _Source(frame, [line for line, _ in records[1:]], problems)


def _jsonl_lines(text: str) -> Iterable[tuple[int, str]]:
    """(1-based line, text) of every non-blank line (JSON Lines are separated by \\n only)."""
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield number, line


class _DuplicateKey(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _read_jsonl(path: Path, text: str, verbatim: list[str]) -> _Source:
    records, lines, problems = [], [], {}
    for line_number, line in _jsonl_lines(text):
        try:
            record = json.loads(line, object_pairs_hook=_object_without_duplicates)
        except _DuplicateKey as exc:
            raise ManifestError(f"{path}: line {line_number}: key {exc.args[0]!r} appears more than once in "
                                "the record") from None
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}: line {line_number}: not valid JSON ({exc.msg} at character "
                                f"{exc.colno}): {_shown(line)}") from None
        if not isinstance(record, dict):
            raise ManifestError(f"{path}: line {line_number}: expected one JSON object {{...}} per line, got "
                                f"{type(record).__name__} {_shown(record)}")
        absent = [c for c in verbatim if c not in record]
        if absent:
            problems[len(records)] = f"has no {absent[0]!r} key"
        records.append(record)
        lines.append(line_number)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    if records:
        # a key no record has is still a column (all missing), so the manifest's columns are found
        known = {k for r in records for k in r}
        for column in verbatim:
            if column not in known:
                frame[column] = None
    return _Source(frame.reset_index(drop=True), lines, problems)


def _read_parquet(path: Path) -> _Source:
    import pyarrow.parquet as pq

    try:
        _duplicate_names(path, list(pq.read_schema(path).names))
        frame = pd.read_parquet(path)
    except (ValueError, OSError) as exc:
        raise ManifestError(f"{path}: cannot read parquet source: {exc}") from exc
    return _Source(frame.reset_index(drop=True))


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _integral(value: Any) -> str | None:
    """The text of an integer-valued number (``3``, ``3.0`` -> ``'3'``); None for anything else."""
    if _is_bool(value):
        return None
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return None


def tags_of_cell(value: Any, separator: str | None) -> tuple[list[str], str | None]:
    """``(tags, problem)`` for one labels cell; ``problem`` (None when fine) says what is wrong with it.

    A list/array cell holds one tag per item (strings, or integers taken as their text; null items are
    skipped); a string is split on ``separator`` (whitespace around tags is stripped; an empty string
    means no tags); a missing cell means no tags; an integer is one tag. Anything else (a fraction, a
    boolean, a mapping, nested lists) is a problem, and ``tags`` holds what could be read.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        if isinstance(value, np.ndarray) and value.ndim != 1:
            return [], f"holds a nested list {_shown(value.tolist())}; expected a flat list of tags"
        texts, problem = [], None
        for item in value:
            if _is_missing(item):
                continue
            if isinstance(item, str):
                texts.append(item)
            elif _integral(item) is not None:
                texts.append(_integral(item))
            elif problem is None:
                problem = (f"holds {_shown(item)} ({type(item).__name__}) in its list {_shown(_plain(value))}; "
                           "tags must be strings")
        items: list[Any] = texts
    elif _is_missing(value):
        return [], None
    elif isinstance(value, str):
        items, problem = (value.split(separator) if separator else [value]), None
    elif _integral(value) is not None:
        items, problem = [_integral(value)], None
    else:
        sep = f"separated by {separator!r}" if separator else "(one per cell)"
        return [], (f"holds {_shown(_plain(value))} ({type(value).__name__}); expected a string of tags {sep} "
                    "or a list of tags")
    tags = list(dict.fromkeys(t for t in (str(t).strip() for t in items) if t))
    if problem is None:
        odd = [t for t in tags if _CONTROL_RE.search(t)]
        if odd:
            problem = f"holds the tag {odd[0]!r}, which contains a control character"
    return tags, problem


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def parse_tags(value: Any, separator: str | None) -> list[str]:
    """Turn one labels cell into a de-duplicated list of tags (order of first appearance).

    A list/array cell is taken as-is; a string is split on ``separator`` (whitespace around tags is
    stripped; an empty string means no tags); a missing cell means no tags. Cells that
    :func:`tags_of_cell` finds a problem in give the tags that could be read (ingestion quarantines them).
    """
    return tags_of_cell(value, separator)[0]


def _require_columns(manifest: DatasetManifest, frame: pd.DataFrame) -> None:
    wanted = {
        "labels.column": manifest.labels_column,
        "id_column": manifest.id_column,
        "text_column": manifest.text_column,
        "image_column": manifest.image_column,
    }
    available = list(map(str, frame.columns))

    def missing(key: str, column: str) -> ManifestError:
        near = [c for c in available if c.strip().casefold() == column.strip().casefold()]
        hint = f" (did you mean {near[0]!r}? mind spaces and capitals)" if near else ""
        shown = available if len(available) <= 30 else available[:30] + [f"... {len(available)} in all"]
        return ManifestError(f"{manifest.manifest_path}: '{key}' names column {column!r}, which is not in "
                             f"{manifest.source.name}{hint}; available columns: {shown}")

    for key, column in wanted.items():
        if column and column not in frame.columns:
            raise missing(key, column)
    for key, columns in (("feature_columns", manifest.feature_columns or ()),
                         ("categorical_columns", manifest.categorical_columns)):
        for column in columns:
            if column not in frame.columns:
                raise missing(key, column)


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
    if not columns:
        raise ManifestError(
            f"{manifest.source}: no feature columns: the file holds only {list(map(str, frame.columns))} "
            "(the labels and id columns are not features)"
        )
    return columns


def _number(value: Any) -> tuple[str, float]:
    """Classify one feature cell: ('missing' | 'number' | 'other', value as float or NaN)."""
    if _is_missing(value):
        return "missing", np.nan
    if _is_bool(value) or isinstance(value, _CONTAINERS):
        return "other", np.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        try:
            return "number", float(value)
        except OverflowError:  # a JSON integer beyond float64
            return "number", np.inf if value > 0 else -np.inf
    text = str(value).strip()
    if text in _NA_SET:
        return "missing", np.nan
    if _NUMBER_RE.fullmatch(text) or _INFINITY_RE.fullmatch(text):
        return "number", float(text)
    return "other", np.nan


class _FloatReprs:
    """``shown[i]`` = ``repr(float(values[i]))``, made on demand."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __getitem__(self, i: int) -> str:
        return repr(float(self.values[i]))


def _feature_column(series: pd.Series, name: str) -> tuple[pd.Series, dict[int, str]]:
    """A feature column as the model should see it, and the problems of its cells by row.

    Numbers (float64, NaN for missing) when almost every non-missing cell is a number (see
    :data:`MAX_NON_NUMERIC_SHARE`): its non-numbers, infinities and values beyond :data:`MAX_ABS_VALUE`
    are problems. Otherwise (text or codes, booleans) the column is kept as it is and only lists or
    mappings in its cells are problems.
    """
    dtype = series.dtype
    problems: dict[int, str] = {}
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        values = pd.to_numeric(series, errors="coerce").astype("float64").to_numpy(copy=True)
        shown = _FloatReprs(values)  # a cell's repr only when a problem names it (not N reprs per column)
        kinds = None
    else:
        cells = series.tolist()
        classified = [_number(v) for v in cells]
        kinds = [k for k, _ in classified]
        values = np.array([v for _, v in classified], dtype=np.float64)
        n_numbers, n_other = kinds.count("number"), kinds.count("other")
        numeric = not pd.api.types.is_bool_dtype(dtype) and n_numbers >= 2 and \
            n_other <= max(1.0, MAX_NON_NUMERIC_SHARE * (n_numbers + n_other))
        if not numeric:
            if n_numbers >= n_other > 0:
                first = kinds.index("other")
                log.warning("column %r is taken as categorical (one-hot): only %d of %d values are numbers "
                            "(e.g. row %d: %s); fix those cells, or list it in categorical_columns",
                            name, n_numbers, n_numbers + n_other, first, _shown(_plain(cells[first])))
            for i, v in enumerate(cells):
                if isinstance(v, _CONTAINERS):
                    problems[i] = (f"column {name!r} holds {_shown(_plain(v))} ({type(v).__name__}); feature "
                                   "cells must be numbers or text")
            return series, problems
        shown = [_shown(_plain(v)) for v in cells]
        share = f"{n_numbers} of {n_numbers + n_other} values are numbers"
        for i, kind in enumerate(kinds):
            if kind == "other":
                hint = " (a decimal comma? write a point)" if isinstance(cells[i], str) and \
                    _DECIMAL_COMMA_RE.fullmatch(cells[i].strip()) else ""
                problems[i] = f"column {name!r} = {shown[i]} is not a number{hint} (the column is numeric: {share})"
    for i in np.flatnonzero(np.isinf(values)):
        problems[int(i)] = f"column {name!r} = {shown[i]} is infinite (or overflows float64)"
    with np.errstate(invalid="ignore"):
        huge = np.isfinite(values) & (np.abs(values) > MAX_ABS_VALUE)
    for i in np.flatnonzero(huge):
        problems[int(i)] = (f"column {name!r} = {shown[i]} is larger in magnitude than {MAX_ABS_VALUE:g}, "
                            "the largest value features may have")
    if problems:
        values[list(problems)] = np.nan
    return pd.Series(values, index=series.index, name=series.name), problems


def load_examples(
    manifest: DatasetManifest,
    check_image: Callable[[Path], str | None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Read the source and split its rows into usable examples and quarantined rows.

    Quarantined, with a reason naming the file, row (and line), column and value: a null/empty id; a
    labels cell that is neither tags text nor a list of tags; an empty, whitespace-only or overlong
    text; an image that is missing, unreadable, truncated or not an image; a tabular row whose numeric
    feature is not a number, infinite or beyond :data:`MAX_ABS_VALUE`; a CSV row with fewer fields than
    the header; a JSONL record without one of the manifest's columns. Image paths that leave the dataset
    folder are kept and fail the raw-examples gate instead, like unknown tags and duplicate ids.
    ``progress(cells_done, cells_total)`` after each checked column of the source (ids, labels, the payload
    or each feature column; images every 256 rows): N cells per column.
    """
    source = _read(manifest)
    frame = source.frame
    _require_columns(manifest, frame)
    features = feature_columns_of(manifest, frame) if manifest.modality == "tabular" else []
    if manifest.modality == "image" and check_image is None:
        from dq_pipeline.embed.image import check_image as check_image  # lazy: pulls in PIL

    n = len(frame)
    passes = 2 + (len(features) if manifest.modality == "tabular" else 1)  # ids, labels, payload column(s)
    cells = [0]

    def advance(rows: int) -> None:
        cells[0] += rows
        if progress is not None:
            progress(min(cells[0], n * passes), n * passes)

    problems: list[list[str]] = [[] for _ in range(n)]
    for i, problem in source.row_problems.items():
        problems[i].append(problem)
    row_numbers = np.arange(n)

    if manifest.id_column:
        ids: list[str | None] = []
        for i, v in enumerate(frame[manifest.id_column].tolist()):
            if isinstance(v, _CONTAINERS):
                problems[i].append(f"id column {manifest.id_column!r} holds {_shown(_plain(v))}; ids must be "
                                   "text or numbers")
                ids.append(None)
            elif _is_missing(v) or not str(v).strip():
                problems[i].append(f"id column {manifest.id_column!r} is null or empty")
                ids.append(None)
            else:
                ids.append(str(v).strip())
    else:
        ids = [str(i) for i in range(n)]
    advance(n)

    tags = []
    for i, v in enumerate(frame[manifest.labels_column].tolist()):
        row_tags, problem = tags_of_cell(v, manifest.separator)
        if problem:
            problems[i].append(f"labels column {manifest.labels_column!r} {problem}")
        tags.append(row_tags)
    examples = pd.DataFrame({"example_id": ids, "row_number": row_numbers, "tags": tags})
    advance(n)

    if manifest.modality == "text":
        column = manifest.text_column
        texts = frame[column].tolist()
        for i, t in enumerate(texts):
            if isinstance(t, _CONTAINERS):
                problems[i].append(f"text column {column!r} holds {_shown(_plain(t))}; expected a string")
            elif _is_missing(t) or not str(t).strip():
                problems[i].append(f"text column {column!r} is empty ({t!r})")
            elif len(str(t)) > MAX_TEXT_CHARS:
                problems[i].append(f"text column {column!r} holds {len(str(t)):,} characters, more than "
                                   f"{MAX_TEXT_CHARS:,} ({_shown(str(t)[:40])}...)")
        examples["text"] = ["" if _is_missing(t) or isinstance(t, _CONTAINERS) else str(t) for t in texts]
        advance(n)
    elif manifest.modality == "image":
        column = manifest.image_column
        rel_paths, abs_paths = [], []
        for i, p in enumerate(frame[column].tolist()):
            rel = "" if _is_missing(p) or isinstance(p, _CONTAINERS) else str(p).strip()
            if isinstance(p, _CONTAINERS):
                problems[i].append(f"image column {column!r} holds {_shown(_plain(p))}; expected a file path")
            elif not rel:
                problems[i].append(f"image column {column!r} is empty")
            elif "\x00" in rel:
                problems[i].append(f"image column {column!r} = {rel!r} holds a NUL character")
                rel = ""
            rel_paths.append(rel)
            abs_paths.append((manifest.folder / rel).resolve() if rel else None)
        for i, (rel, path) in enumerate(zip(rel_paths, abs_paths)):
            if i % 256 == 255:
                advance(256)
            if problems[i] or path is None or not path.is_relative_to(manifest.folder):
                continue  # escaping paths fail the gate instead
            try:
                problem = check_image(path)
            except OSError as exc:
                problem = f"unreadable image: {path} ({exc})"
            if problem:
                problems[i].append(f"{column}={rel!r}: {problem}")
        examples["image"] = rel_paths
        examples["image_path"] = [str(p) if p else "" for p in abs_paths]
        advance(n % 256)
    else:
        payload = frame[features].copy()
        for column in features:
            if column in manifest.categorical_columns:  # integer codes are categories, not magnitudes
                for i, v in enumerate(payload[column].tolist()):
                    if isinstance(v, _CONTAINERS):
                        problems[i].append(f"column {column!r} holds {_shown(_plain(v))}; categorical cells "
                                           "must be codes or text")
                payload[column] = payload[column].map(
                    lambda v: None if _is_missing(v) else str(v)).astype(object)
            else:
                payload[column], column_problems = _feature_column(payload[column], str(column))
                for i, problem in column_problems.items():
                    problems[i].append(problem)
            advance(n)
        examples = pd.concat([examples, payload.reset_index(drop=True)], axis=1)

    where = _row_namer(manifest.source.name, source.lines)
    reasons = [f"{where(i)}: " + "; ".join(p[:3]) + (f"; and {len(p) - 3} more problem(s)" if len(p) > 3 else "")
               if p else None for i, p in enumerate(problems)]
    bad = np.array([r is not None for r in reasons], dtype=bool)
    quarantine = pd.DataFrame(
        {
            "row_number": row_numbers[bad].astype("int64"),
            "example_id": [ids[i] for i in np.flatnonzero(bad)],
            "reason": [reasons[i] for i in np.flatnonzero(bad)],
        }
    )
    if bad.any():  # else the frame as it is (a 1M-row tabular frame is not copied once more)
        examples = examples.loc[~bad].reset_index(drop=True)
    if manifest.classes:
        classes = list(manifest.classes)
    else:
        classes = sorted({t for row in examples["tags"] for t in row})
    if len(quarantine):
        log.warning("%s: %d of %d rows quarantined (first: %s)", manifest.name, len(quarantine), n,
                    quarantine["reason"].iloc[0])
    return IngestResult(examples=examples, quarantine=quarantine, source=frame, classes=classes)


def _row_namer(file_name: str, lines: list[int] | None) -> Callable[[int], str]:
    """``where(i)`` -> ``"data.csv row 3 (line 5)"``: rows count data rows from 0 (the quarantine's
    ``row_number``); the line is the file's own 1-based line, where known."""
    def where(i: int) -> str:
        return f"{file_name} row {i}" + (f" (line {lines[i]})" if lines and i < len(lines) else "")
    return where


def tags_matrix(tags: Iterable[list[str]], classes: list[str]) -> np.ndarray:
    """One-hot tags, shape (N, K) uint8, columns in ``classes`` order; unknown tags raise ValueError."""
    index = {c: k for k, c in enumerate(classes)}
    rows = list(tags)
    out = np.zeros((len(rows), len(classes)), dtype=np.uint8)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    flat = [t for row in rows for t in row]
    codes = np.fromiter((index.get(t, -1) for t in flat), dtype=np.int64, count=len(flat))
    if (codes < 0).any():  # the first unknown tag, in row order
        j = int(np.flatnonzero(codes < 0)[0])
        i = int(np.searchsorted(np.cumsum(lengths), j, side="right"))
        raise ValueError(f"example {i}: tag {flat[j]!r} is not one of the classes {classes}")
    out[np.repeat(np.arange(len(rows)), lengths), codes] = 1
    return out


def tags_from_matrix(matrix: np.ndarray, classes: list[str]) -> list[list[str]]:
    """Inverse of :func:`tags_matrix`: (N, K) 0/1 -> list of tag lists in ``classes`` order."""
    M = np.asarray(matrix, dtype=bool)
    if M.ndim != 2:
        raise ValueError(f"expected an (N, K) tag matrix, got shape {M.shape}")
    _, cols = np.nonzero(M)  # row-major: each row's tags in classes order, rows in order
    names = np.asarray(classes, dtype=object)[cols].tolist() if len(classes) else []
    ends = np.cumsum(M.sum(axis=1)).tolist()
    out, start = [], 0
    for end in ends:
        out.append(names[start:end])
        start = end
    return out
