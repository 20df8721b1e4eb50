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

    def describe(self) -> str:
        where = f" on column {self.column!r}" if self.column else ""
        text = f"{self.expectation}{where} failed"
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
                 "observed": _plain(f.observed)}
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


def _validate(frames: list[tuple[str, pd.DataFrame, list[Any], list[str]]]) -> tuple[list[GateFailure], int]:
    """Validate each (name, frame, expectations, index columns) with GE; collect failures."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("dq_pipeline")
    failures: list[GateFailure] = []
    count = 0
    for name, frame, expectations, index_columns in frames:
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
            for item in (res.get("unexpected_index_list") or [])[:SAMPLE_SIZE]:
                sample.append(dict(item) if isinstance(item, dict) else {"index": item})
            if not sample and res.get("partial_unexpected_list"):
                column = r.expectation_config.kwargs.get("column", "value")
                sample = [{column: v} for v in res["partial_unexpected_list"][:SAMPLE_SIZE]]
            exc = (r.exception_info or {}).get("exception_message") if r.exception_info else None
            failures.append(
                GateFailure(
                    expectation=r.expectation_config.type,
                    column=r.expectation_config.kwargs.get("column"),
                    unexpected_count=int(res.get("unexpected_count") or 0),
                    sample=sample,
                    observed=exc or res.get("observed_value"),
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
    ``classes``; every class carried by at least one example; at least ``n_folds`` examples;
    texts non-empty; image files present and inside the dataset folder.
    """
    import great_expectations as gx

    E = gx.expectations
    index = ["example_id", "row_number"]
    payload = {"text": ["text"], "image": ["image", "image_path"]}.get(modality, [])
    base = examples.copy()
    exps: list[Any] = [E.ExpectColumnToExist(column=c) for c in ["example_id", "row_number", "tags", *payload]]
    exps += [
        E.ExpectColumnValuesToNotBeNull(column="example_id"),
        E.ExpectColumnValuesToBeUnique(column="example_id"),
        E.ExpectTableRowCountToBeBetween(min_value=n_folds),
    ]
    if modality == "text" and "text" in base:
        base["text_stripped"] = base["text"].astype(str).str.strip()
        exps.append(E.ExpectColumnValueLengthsToBeBetween(column="text_stripped", min_value=1))
    if modality == "image" and "image_path" in base:
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
    tags = examples[["example_id", "row_number", "tags"]].explode("tags").dropna(subset=["tags"])
    tags = tags.rename(columns={"tags": "tag"}).reset_index(drop=True)
    counts = pd.DataFrame({"tag": classes})
    counts["n_examples_with_tag"] = counts["tag"].map(tags["tag"].value_counts()).fillna(0).astype(int)
    frames = [
        ("raw_examples", base, exps, index),
        ("raw_tags", tags, [E.ExpectColumnValuesToBeInSet(column="tag", value_set=list(classes))], index),
        ("class_counts", counts,
         [E.ExpectColumnValuesToBeBetween(column="n_examples_with_tag", min_value=1)], ["tag"]),
    ]
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
