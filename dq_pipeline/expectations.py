"""Great Expectations suites that gate each stage (what is checked), plus a small runner.

Each gate builds one or more pandas frames from a stage's output, validates each against a GE 1.x
expectation suite in an ephemeral context, and returns a :class:`GateResult` whose failures name the
expectation, the column, the offending values and a sample of example ids / row numbers.
"""

from __future__ import annotations

import logging
import os
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
    base = examples.copy()
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
    unknown = sorted(set(tags["tag"]) - set(classes))
    unused = counts.loc[counts["n_examples_with_tag"] == 0, "tag"].tolist()
    n_tagged = int(sum(bool(len(t)) for t in examples["tags"])) if "tags" in examples else 0
    presence = pd.DataFrame({"n_examples_with_any_tag": [n_tagged]})
    frames = [
        ("raw_examples", base, exps, index, messages),
        ("raw_tags", tags, [E.ExpectColumnValuesToBeInSet(column="tag", value_set=list(classes))], index,
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
        feature_columns = [c for c in base.columns if c not in ("example_id", "row_number", "tags")]
        usable = [c for c in feature_columns if base[c].notna().any()]
        frames.append((
            "feature_columns", pd.DataFrame({"n_usable_feature_columns": [len(usable)]}),
            [E.ExpectColumnValuesToBeBetween(column="n_usable_feature_columns", min_value=1)], [],
            {"expect_column_values_to_be_between":
                 f"no usable feature column: every one of {_few(feature_columns)} is empty"},
        ))
    failures, n = _validate(frames)
    return GateResult("raw_examples", not failures, failures, n, context=source)


def validate_features(features: np.ndarray, example_ids: list[str], *, source: str = "") -> GateResult:
    """Gate on the feature matrix (N, D): one row per example (unique ids), every value finite."""
    import great_expectations as gx

    E = gx.expectations
    X = np.asarray(features)
    frame = pd.DataFrame({
        "example_id": list(example_ids)[: len(X)] + [None] * max(0, len(X) - len(example_ids)),
        "all_values_finite": np.isfinite(X).all(axis=1) if X.ndim == 2 else np.zeros(len(X), bool),
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


def validate_probabilities(
    probabilities: np.ndarray, example_ids: list[str], classes: list[str], *, source: str = ""
) -> GateResult:
    """Gate on out-of-fold probabilities (N, K): one per (example, tag), each in [0, 1], not null."""
    import great_expectations as gx

    E = gx.expectations
    P = np.asarray(probabilities, dtype=np.float64)
    n, k = (P.shape + (1,))[:2] if P.ndim >= 1 else (0, 0)
    long = pd.DataFrame({
        "example_id": np.repeat(np.asarray(example_ids, dtype=object)[:n], k) if P.ndim == 2 else [],
        "tag": np.tile(np.asarray(classes, dtype=object)[:k], n) if P.ndim == 2 else [],
        "probability": P.reshape(-1) if P.ndim == 2 else [],
    })
    exps = [
        E.ExpectTableRowCountToEqual(value=len(example_ids) * len(classes)),
        E.ExpectColumnValuesToNotBeNull(column="probability"),
        E.ExpectColumnValuesToBeBetween(column="probability", min_value=0.0, max_value=1.0),
        E.ExpectCompoundColumnsToBeUnique(column_list=["example_id", "tag"]),
    ]
    failures, count = _validate([("probabilities", long, exps, ["example_id", "tag"])])
    return GateResult("probabilities", not failures, failures, count, context=source)
