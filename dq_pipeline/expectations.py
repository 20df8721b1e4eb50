"""Great Expectations suites that gate each stage (what is checked), plus a small runner.

Each gate builds one or more pandas frames from a stage's output, validates each against a GE 1.x
expectation suite in an ephemeral context, and returns a :class:`GateResult` whose failures name the
expectation, the column, the offending values and a sample of example ids / row numbers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class GateFailure:
    """One failed expectation."""

    expectation: str
    column: str | None
    unexpected_count: int
    sample: list[dict[str, Any]]
    observed: Any = None
    message: str = ""  # what is wrong, in words (first in the description), when the gate can say it

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        text = (f"{self.message} — " if self.message else "") + f"{self.expectation}{where} failed"
        if self.unexpected_count:
            text += f" for {self.unexpected_count} row(s)"
        if self.observed is not None:
            text += f" (observed {self.observed})"
        if self.sample:
            text += "; e.g. " + ", ".join(
                "{" + ", ".join(f"{k}={_plain(v)!r}" for k, v in s.items()) + "}" for s in self.sample
            )
        return text


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate (one or more GE suites)."""

    gate: str
    success: bool
    failures: list[GateFailure] = field(default_factory=list)
    n_expectations: int = 0
    context: str = ""

    def describe(self) -> str:
        """A human summary: what failed, where, and which rows."""
        head = f"gate '{self.gate}'" + (f" ({self.context})" if self.context else "")
        if self.success:
            return f"{head} passed ({self.n_expectations} expectations)"
        return f"{head} FAILED: " + "; ".join(f.describe() for f in self.failures)

    def metadata(self) -> dict[str, Any]:
        """JSON-friendly dict for Dagster metadata and the CLI."""
        return {
            "gate": self.gate,
            "success": self.success,
            "n_expectations": self.n_expectations,
            "failures": [
                {"expectation": f.expectation, "column": f.column, "unexpected_count": f.unexpected_count,
                 "sample": [{k: _plain(v) for k, v in s.items()} for s in f.sample],
                 "observed": _plain(f.observed), "message": f.message}
                for f in self.failures
            ],
        }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _few(values: list[Any], limit: int = 10) -> str:
    """``values`` as a list literal, at most ``limit`` of them, saying how many more there are."""
    shown = repr([_plain(v) for v in values[:limit]])
    return shown + (f" (and {len(values) - limit} more)" if len(values) > limit else "")


def _validate(frames: list[tuple]) -> tuple[list[GateFailure], int]:
    """Validate each (name, frame, expectations, index columns[, messages]) with GE; collect failures.

    ``messages`` (optional) maps ``"<expectation type>:<column>"`` or ``"<expectation type>"`` to the
    words a failure of that expectation is described with.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("dq_pipeline")
    failures: list[GateFailure] = []
    count = 0
    for name, frame, expectations, index_columns, *rest in frames:
        messages: dict[str, str] = rest[0] if rest else {}
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = gx.ExpectationSuite(name=name)
        for expectation in expectations:
            suite.add_expectation(expectation)
        count += len(expectations)
        result_format: dict[str, Any] = {"result_format": "COMPLETE"}
        if index_columns:
            result_format["unexpected_index_column_names"] = index_columns
        batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(suite, result_format=result_format)
        for r in outcome.results:
            if r.success:
                continue
            res = r.result or {}
            sample: list[dict[str, Any]] = []
            for item in (res.get("unexpected_index_list") or [] if index_columns else [])[:SAMPLE_SIZE]:
                sample.append(dict(item) if isinstance(item, dict) else {"index": item})
            if not sample and res.get("partial_unexpected_list"):
                column = r.expectation_config.kwargs.get("column", "value")
                sample = [{column: v} for v in res["partial_unexpected_list"][:SAMPLE_SIZE]]
            exc = (r.exception_info or {}).get("exception_message") if r.exception_info else None
            kind, column = r.expectation_config.type, r.expectation_config.kwargs.get("column")
            failures.append(
                GateFailure(
                    expectation=kind,
                    column=column,
                    unexpected_count=int(res.get("unexpected_count") or 0),
                    sample=sample,
                    observed=exc or res.get("observed_value"),
                    message=messages.get(f"{kind}:{column}", messages.get(kind, "")),
                )
            )
    return failures, count


def validate_raw_examples(
    examples: pd.DataFrame,
    *,
    modality: str,
    classes: list[str],
    n_folds: int,
    dataset_folder: str | None = None,
    source: str = "",
) -> GateResult:
    """Gate on ingested examples (see :func:`dq_pipeline.ingest.load_examples`).

    Expects: the base and payload columns exist; ids non-null and unique; every tag one of
    ``classes``; every class carried by at least one example; at least one example carrying a tag;
    at least ``n_folds`` examples; texts non-empty; image files present and inside the dataset folder;
    (tabular) at least one feature column with a value. Failures say what is wrong in words first
    (e.g. "3 examples, but 5-fold cross-validation needs at least 5").
    """
    import great_expectations as gx

    E = gx.expectations
    index = ["example_id", "row_number"]
    payload = {"text": ["text"], "image": ["image", "image_path"]}.get(modality, [])
    # only the columns the suite reads go to GE (it copies, pickles and hashes its frame): a tabular
    # frame's feature columns are checked below as one count
    base = examples[[c for c in ("example_id", "row_number", "tags", *payload) if c in examples.columns]].copy()
    if "tags" in base:  # the tags themselves are checked per distinct tag below; here only that the column exists
        base["tags"] = [len(t) if isinstance(t, (list, tuple, np.ndarray)) else 0 for t in base["tags"]]
    n = len(base)
    exps: list[Any] = [E.ExpectColumnToExist(column=c) for c in ["example_id", "row_number", "tags", *payload]]
    exps += [
        E.ExpectColumnValuesToNotBeNull(column="example_id"),
        E.ExpectColumnValuesToBeUnique(column="example_id"),
        E.ExpectTableRowCountToBeBetween(min_value=n_folds),
    ]
    messages = {
        "expect_table_row_count_to_be_between":
            f"{n} example{'s' if n != 1 else ''}, but {n_folds}-fold cross-validation needs at least {n_folds}",
        "expect_column_values_to_not_be_null:example_id": "examples without an id",
    }
    if "example_id" in base:
        ids = base["example_id"]
        repeated = ids[ids.duplicated(keep=False) & ids.notna()].drop_duplicates().tolist()
        messages["expect_column_values_to_be_unique:example_id"] = (
            f"example id(s) {_few(repeated)} appear more than once; ids must be unique")
    if modality == "text" and "text" in base:
        base["text_stripped"] = base["text"].astype(str).str.strip()
        exps.append(E.ExpectColumnValueLengthsToBeBetween(column="text_stripped", min_value=1))
        messages["expect_column_value_lengths_to_be_between:text_stripped"] = "empty texts"
    if modality == "image" and "image_path" in base:
        index = [*index, "image"]  # name the path as written
        folder = os.path.realpath(dataset_folder or ".")
        real = [os.path.realpath(p) if p else "" for p in base["image_path"]]
        base["image_inside_dataset_folder"] = [
            bool(p) and os.path.commonpath([p, folder]) == folder for p in real
        ]
        base["image_file_present"] = [bool(p) and os.path.isfile(p) for p in real]
        exps += [
            E.ExpectColumnValuesToBeInSet(column="image_inside_dataset_folder", value_set=[True]),
            E.ExpectColumnValuesToBeInSet(column="image_file_present", value_set=[True]),
        ]
        outside = base.loc[~base["image_inside_dataset_folder"], "image"].tolist()
        messages["expect_column_values_to_be_in_set:image_inside_dataset_folder"] = (
            f"image path(s) {_few(outside)} lead outside the dataset folder {folder} (a '..', an absolute "
            "path or a link out of it); images must lie inside the dataset folder")
        absent = base.loc[~base["image_file_present"], "image"].tolist()
        messages["expect_column_values_to_be_in_set:image_file_present"] = f"image file(s) {_few(absent)} not found"
    tags = examples[["example_id", "row_number", "tags"]].explode("tags").dropna(subset=["tags"])
    tags = tags.rename(columns={"tags": "tag"}).reset_index(drop=True)
    counts = pd.DataFrame({"tag": list(classes)})
    counts["n_examples_with_tag"] = counts["tag"].map(tags["tag"].value_counts()).fillna(0).astype(int)
    unknown = sorted(set(pd.unique(tags["tag"]).tolist()) - set(classes))  # not a Python loop over N x tags
    # GE validates one row per distinct tag (its first (example, tag) row), not the N x tags rows: a failure is
    # restated below over every offending row (count, first SAMPLE_SIZE rows)
    distinct_tags = tags.drop_duplicates("tag").reset_index(drop=True)
    unused = counts.loc[counts["n_examples_with_tag"] == 0, "tag"].tolist()
    n_tagged = int(sum(bool(len(t)) for t in examples["tags"])) if "tags" in examples else 0
    presence = pd.DataFrame({"n_examples_with_any_tag": [n_tagged]})
    frames = [
        ("raw_examples", base, exps, index, messages),
        ("raw_tags", distinct_tags, [E.ExpectColumnValuesToBeInSet(column="tag", value_set=list(classes))], index,
         {"expect_column_values_to_be_in_set": f"tag(s) {_few(unknown)} are not among the classes "
                                               f"{_few(list(classes))}"}),
        ("class_counts", counts,
         [E.ExpectColumnValuesToBeBetween(column="n_examples_with_tag", min_value=1)], ["tag"],
         {"expect_column_values_to_be_between": f"class(es) {_few(unused)} are carried by no example"}),
        ("tag_presence", presence,
         [E.ExpectColumnValuesToBeBetween(column="n_examples_with_any_tag", min_value=1)], [],
         {"expect_column_values_to_be_between":
              (f"no example carries any tag: the labels cell of all {n} examples is empty, so there is "
               "nothing to learn or audit") if n else "no example carries any tag: there are no examples"}),
    ]
    if modality == "tabular" and n:
        feature_columns = [c for c in examples.columns if c not in ("example_id", "row_number", "tags")]
        usable = [c for c in feature_columns if examples[c].notna().any()]
        frames.append((
            "feature_columns", pd.DataFrame({"n_usable_feature_columns": [len(usable)]}),
            [E.ExpectColumnValuesToBeBetween(column="n_usable_feature_columns", min_value=1)], [],
            {"expect_column_values_to_be_between":
                 f"no usable feature column: every one of {_few(feature_columns)} is empty"},
        ))
    failures, n = _validate(frames)
    if unknown:  # the unknown-tag failure over all offending rows, as if GE had seen every (example, tag) row
        offending = tags[tags["tag"].isin(unknown)]
        sample = [{**{c: r[c] for c in index if c in offending}, "tag": r["tag"]}
                  for r in offending.head(SAMPLE_SIZE).to_dict("records")]
        failures = [GateFailure(f.expectation, f.column, len(offending), sample, f.observed, f.message)
                    if f.column == "tag" and f.expectation == "expect_column_values_to_be_in_set" else f
                    for f in failures]
    return GateResult("raw_examples", not failures, failures, n, context=source)


def _rows_finite(X: np.ndarray, chunk_rows: int = 16_384) -> np.ndarray:
    """(N,) bool: every value of the row finite; scanned in row chunks (no N x D temporary)."""
    out = np.empty(len(X), dtype=bool)
    for start in range(0, len(X), chunk_rows):
        out[start:start + chunk_rows] = np.isfinite(X[start:start + chunk_rows]).all(axis=1)
    return out


def validate_features(features: np.ndarray, example_ids: list[str], *, source: str = "") -> GateResult:
    """Gate on the feature matrix (N, D): one row per example (unique ids), every value finite."""
    import great_expectations as gx

    E = gx.expectations
    X = np.asarray(features)
    frame = pd.DataFrame({
        "example_id": list(example_ids)[: len(X)] + [None] * max(0, len(X) - len(example_ids)),
        "all_values_finite": _rows_finite(X) if X.ndim == 2 else np.zeros(len(X), bool),
    })
    exps = [
        E.ExpectTableRowCountToEqual(value=len(example_ids)),
        E.ExpectColumnValuesToNotBeNull(column="example_id"),
        E.ExpectColumnValuesToBeUnique(column="example_id"),
        E.ExpectColumnValuesToBeInSet(column="all_values_finite", value_set=[True]),
    ]
    failures, n = _validate([("features", frame, exps, ["example_id"])])
    if X.ndim != 2 or X.shape[1] == 0:
        failures.append(GateFailure("feature_matrix_is_2d_and_non_empty", None, 0, [], observed=X.shape))
    return GateResult("features", not failures, failures, n + 1, context=source)


#: Rows of P scanned at a time by the probabilities gate (memory: about CHUNK_ROWS x K booleans).
CHUNK_ROWS = 65_536


def _scan_probabilities(
    P: np.ndarray, progress: Callable[[int, int], None] | None, chunk_rows: int
) -> tuple[pd.DataFrame, dict[str, list[tuple[int, int]]]]:
    """Per-tag aggregates of P (N, K), in row chunks: ``n_null`` (NaN), ``n_below_0``, ``n_above_1``,
    ``min``, ``max`` (over the non-null values); and the first ``SAMPLE_SIZE`` offending cells
    ``(row, tag index)`` of each kind (keyed by the aggregate column), in row order."""
    n, k = P.shape
    n_null = np.zeros(k, dtype=np.int64)
    below, above = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    lo, hi = np.full(k, np.inf), np.full(k, -np.inf)
    cells: dict[str, list[tuple[int, int]]] = {"n_null": [], "n_below_0": [], "n_above_1": []}
    for start in range(0, n, chunk_rows):
        block = P[start:start + chunk_rows]
        null = np.isnan(block)
        n_null += null.sum(axis=0)
        with np.errstate(invalid="ignore"):
            low, high = block < 0, block > 1
        below += low.sum(axis=0)
        above += high.sum(axis=0)
        if not null.all():
            lo = np.fmin(lo, np.nanmin(np.where(null, np.inf, block), axis=0))
            hi = np.fmax(hi, np.nanmax(np.where(null, -np.inf, block), axis=0))
        for kind, mask in (("n_null", null), ("n_below_0", low), ("n_above_1", high)):
            if len(cells[kind]) < SAMPLE_SIZE and mask.any():
                found = np.argwhere(mask)[: SAMPLE_SIZE - len(cells[kind])]
                cells[kind] += [(start + int(i), int(j)) for i, j in found]
        if progress is not None:
            progress(min(start + chunk_rows, n), n)
    aggregates = pd.DataFrame({"tag_index": np.arange(k), "n_null": n_null, "n_below_0": below,
                               "n_above_1": above, "min": np.where(np.isfinite(lo), lo, np.nan),
                               "max": np.where(np.isfinite(hi), hi, np.nan)})
    return aggregates, cells


def validate_probabilities(
    probabilities: np.ndarray, example_ids: list[str], classes: list[str], *, source: str = "",
    progress: Callable[[int, int], None] | None = None, chunk_rows: int = CHUNK_ROWS,
) -> GateResult:
    """Gate on out-of-fold probabilities (N, K): one per (example, tag), each in [0, 1], not null.

    P is never melted into N x K rows: it is scanned in chunks of ``chunk_rows`` rows (numpy, in P's
    own dtype) into per-tag aggregates, and the GE expectations run on those aggregates (K rows), on
    counts of null and repeated example ids (one pandas hash pass over the N ids) and on the tags, so
    memory stays about ``chunk_rows x K`` booleans plus the ids' hash.
    A failure names the example (id and row position in P), the tag and the value, e.g.
    ``{example_id='e7', row=7, tag='joy', probability=1.5}``, and counts the offending cells.
    ``progress(done_rows, total_rows)`` is called after each chunk.
    """
    import great_expectations as gx

    E = gx.expectations
    P = np.asarray(probabilities)
    if P.dtype.kind not in "fc":
        P = P.astype(np.float64)
    shape_ok = P.ndim == 2 and P.shape == (len(example_ids), len(classes))
    n_rows, n_tags = (P.shape + (0, 0))[:2] if P.ndim else (0, 0)
    shape = pd.DataFrame({"n_rows": [n_rows], "n_tags": [n_tags], "ndim": [P.ndim]})
    frames: list[tuple] = [(
        "probabilities_shape", shape,
        [E.ExpectColumnValuesToBeInSet(column="ndim", value_set=[2]),
         E.ExpectColumnValuesToBeInSet(column="n_rows", value_set=[len(example_ids)]),
         E.ExpectColumnValuesToBeInSet(column="n_tags", value_set=[len(classes)])], [],
        {"expect_column_values_to_be_in_set": (
            f"probabilities of shape {P.shape}, expected ({len(example_ids)}, {len(classes)}): one per "
            "(example, tag)")},
    )]
    ids = pd.Series(list(example_ids), dtype=object)
    null_ids = ids.isna().to_numpy()
    doubled_rows = ids.duplicated(keep=False).to_numpy() & ~null_ids
    repeated = ids[doubled_rows].drop_duplicates().tolist()
    id_counts = pd.DataFrame({"n_ids": [len(ids)], "n_null_ids": [int(null_ids.sum())],
                              "n_rows_with_repeated_id": [int(doubled_rows.sum())]})
    frames.append(("probability_examples", id_counts,  # one row: the N ids are counted with pandas
                   [E.ExpectColumnValuesToBeBetween(column="n_null_ids", min_value=0, max_value=0),
                    E.ExpectColumnValuesToBeBetween(column="n_rows_with_repeated_id", min_value=0, max_value=0)], [],
                   {"expect_column_values_to_be_between:n_rows_with_repeated_id":
                        f"example id(s) {_few(repeated)} appear more than once: (example_id, tag) must be unique",
                    "expect_column_values_to_be_between:n_null_ids": "examples without an id"}))
    id_rows = {"n_null_ids": np.flatnonzero(null_ids)[:SAMPLE_SIZE],
               "n_rows_with_repeated_id": np.flatnonzero(doubled_rows)[:SAMPLE_SIZE]}
    tags = pd.DataFrame({"tag": pd.Series(list(classes), dtype=object)})
    doubled = tags["tag"][tags["tag"].duplicated(keep=False)].drop_duplicates().tolist()
    frames.append(("probability_tags", tags, [E.ExpectColumnValuesToBeUnique(column="tag")], ["tag"],
                   {"expect_column_values_to_be_unique": f"tag(s) {_few(doubled)} appear more than once: "
                                                         "(example_id, tag) must be unique"}))
    cells: dict[str, list[tuple[int, int]]] = {}
    aggregates = None
    if P.ndim == 2 and P.shape[1] == len(classes):
        aggregates, cells = _scan_probabilities(P, progress, chunk_rows)
        aggregates.insert(0, "tag", list(classes))
        total = {c: int(aggregates[c].sum()) for c in ("n_null", "n_below_0", "n_above_1")}
        word = {c: "probability" if v == 1 else "probabilities" for c, v in total.items()}
        frames.append((
            "probability_values", aggregates,
            [E.ExpectColumnValuesToBeBetween(column="n_null", min_value=0, max_value=0),
             E.ExpectColumnValuesToBeBetween(column="n_below_0", min_value=0, max_value=0),
             E.ExpectColumnValuesToBeBetween(column="n_above_1", min_value=0, max_value=0)], ["tag"],
            {"expect_column_values_to_be_between:n_null": f"{total['n_null']} {word['n_null']} missing (NaN)",
             "expect_column_values_to_be_between:n_below_0":
                 f"{total['n_below_0']} {word['n_below_0']} below 0 (outside [0, 1])",
             "expect_column_values_to_be_between:n_above_1":
                 f"{total['n_above_1']} {word['n_above_1']} above 1 (outside [0, 1])"},
        ))
    failures, count = _validate(frames)
    failures = [_name_cells(f, P, example_ids, classes, aggregates, cells) for f in failures]
    failures = [GateFailure(f.expectation, f.column, int(id_counts[f.column].iloc[0]),
                            [{"example_id": example_ids[i], "row": int(i)} for i in id_rows[f.column]],
                            f.observed, f.message) if f.column in id_rows else f for f in failures]
    return GateResult("probabilities", not failures, failures, count, context=source)


def _name_cells(failure: GateFailure, P: np.ndarray, example_ids: list[str], classes: list[str],
                aggregates: pd.DataFrame | None, cells: dict[str, list[tuple[int, int]]]) -> GateFailure:
    """A failed aggregate expectation restated over the offending cells: how many, and a sample naming
    each cell's example id, row position, tag and value."""
    column = failure.column or ""
    if aggregates is None or column not in ("n_null", "n_below_0", "n_above_1"):
        return failure
    sample = [{"example_id": example_ids[i], "row": i, "tag": classes[j], "probability": float(P[i, j])}
              for i, j in cells.get(column, [])]
    return GateFailure(failure.expectation, column, int(aggregates[column].sum()), sample,
                       failure.observed, failure.message)
