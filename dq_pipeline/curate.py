"""Assemble one audit's curated tables (the DuckDB contract) from the detector outputs.

Pure pandas/numpy: the Dagster ``curated`` asset only calls :func:`audit_tables` and writes the result.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from dq_pipeline.ingest import tags_from_matrix
from dq_pipeline.issues.base import DetectorResult
from dq_pipeline.issues.label_issues import suggested_tags
from dq_pipeline.issues.summary import class_summary, confusion_pairs, health_score

SNIPPET_CHARS = 120


@dataclass(frozen=True)
class CurationPolicy:
    """What ``curated_labels`` applies: suggested tags always replace the given tags of flagged
    examples; optionally outliers are excluded, and only the first member of each duplicate group kept."""

    exclude_outliers: bool = False
    keep_one_per_duplicate_group: bool = False


def outlier_reasons(outliers: DetectorResult, n: int) -> pd.Series:
    """(n,) what flagged each outlier (the detector's ``flagged_by``: 'knn_distance' or 'pieces_per_word'),
    missing where not flagged; 'knn_distance' for every flagged example of a result without that column."""
    out = pd.Series(pd.array([None] * n, dtype="string"))
    d = outliers.details
    if d is not None and len(d) and "flagged_by" in d:
        out.iloc[d["example_index"].to_numpy()] = d["flagged_by"].astype(str).to_numpy()
    else:
        out[np.asarray(outliers.flags, dtype=bool)] = "knn_distance"
    return out


def tag_flag_matrix(details: pd.DataFrame, shape: tuple[int, int]) -> np.ndarray:
    """(N, K) bool from tag-issue rows (columns example_index, tag_index)."""
    out = np.zeros(shape, dtype=bool)
    if details is not None and len(details):
        out[details["example_index"].to_numpy(), details["tag_index"].to_numpy()] = True
    return out


def payload_of(examples: pd.DataFrame, modality: str) -> list[str | None]:
    """What a person needs to recognise an example: a text snippet or the image path."""
    if modality == "text":
        return [t if len(t) <= SNIPPET_CHARS else t[: SNIPPET_CHARS - 1] + "…" for t in examples["text"]]
    if modality == "image":
        return list(examples["image"])
    return [None] * len(examples)


_BASE_COLUMNS = ("example_id", "row_number", "tags", "image_path")


def _raw_values(examples: pd.DataFrame) -> list[dict]:
    """Per tabular example: {column: raw value} of its feature columns (JSON-ready: NaN -> None)."""
    columns = [c for c in examples.columns if c not in _BASE_COLUMNS]
    rows = []
    for values in zip(*(examples[c].tolist() for c in columns)) if columns else ([] for _ in range(len(examples))):
        rows.append({str(column): _json_value(v) for column, v in zip(columns, values)})
    return rows


def _json_value(v: Any) -> Any:
    """A cell as the payload holds it: numpy scalars as Python ones, missing / non-finite as None, other
    objects as text."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA or v is pd.NaT:
        return None
    return v if isinstance(v, (str, int, float, bool)) else str(v)


def _json_tokens(values: pd.Series) -> list[str]:
    """Each cell of a feature column as ``json.dumps`` writes it inside :func:`_raw_values`' row dict (same
    normalisation: numpy scalars as Python ones, missing / non-finite as null, other objects as text)."""
    dtype = values.dtype
    if pd.api.types.is_float_dtype(dtype) and not isinstance(dtype, pd.api.extensions.ExtensionDtype):
        array = values.to_numpy(dtype=np.float64)
        tokens = list(map(float.__repr__, array.tolist()))  # json.dumps writes a finite float as its repr
        for i in np.flatnonzero(~np.isfinite(array)).tolist():
            tokens[i] = "null"
        return tokens
    if pd.api.types.is_integer_dtype(dtype) and not isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return list(map(int.__repr__, values.to_numpy().tolist()))
    return [json.dumps(_json_value(v), ensure_ascii=False) for v in values.tolist()]


#: Rows of a tabular frame turned into payloads and content keys at a time (bounds the per-cell strings).
PAYLOAD_CHUNK_ROWS = 8_192


def _payload_chunks(examples: pd.DataFrame, chunk_rows: int) -> Iterator[tuple[list[str], list[str]]]:
    """``(payloads, content_keys)`` of successive blocks of ``chunk_rows`` tabular examples (see
    :func:`tabular_payloads_and_keys`)."""
    columns = [c for c in examples.columns if c not in _BASE_COLUMNS]
    names = [str(c) for c in columns]
    if len(set(names)) != len(names):  # two columns with one name as text: the dict path decides which wins
        rows = _raw_values(examples)
        yield ([json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) for r in rows],
               [hashlib.sha256(json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                               .encode("utf-8")).hexdigest() for r in rows])
        return
    shown = [json.dumps(n, ensure_ascii=False) for n in names]
    order = sorted(range(len(names)), key=lambda j: names[j])
    sha256 = hashlib.sha256
    for start in range(0, len(examples), chunk_rows):
        block = examples.iloc[start:start + chunk_rows]
        if not columns:
            yield ["{}"] * len(block), [sha256(b"{}").hexdigest()] * len(block)
            continue
        tokens = [_json_tokens(block[c]) for c in columns]
        loose = [[f"{shown[j]}: {t}" for t in tokens[j]] for j in range(len(columns))]
        payloads = ["{" + ", ".join(row) + "}" for row in zip(*loose)]
        del loose
        tight = [[f"{shown[j]}:{t}" for t in tokens[j]] for j in order]
        del tokens
        yield payloads, [sha256(("{" + ",".join(row) + "}").encode("utf-8")).hexdigest() for row in zip(*tight)]


def tabular_payloads_and_keys(examples: pd.DataFrame, chunk_rows: int = PAYLOAD_CHUNK_ROWS, arrow: bool = False
                              ) -> tuple[Any, list[str]]:
    """``(payloads, content_keys)`` of tabular examples, byte for byte what :func:`review_payload` and
    :func:`content_keys` define through :func:`_raw_values` and ``json.dumps`` (payload: columns in frame
    order, separators ``", "`` / ``": "``; key: sha256 of the sorted-key compact form), built column-wise in
    chunks of ``chunk_rows`` rows: one JSON token per cell, never a dict per row. ``arrow``: the payloads as
    a pandas string array over Arrow chunks (no Python string per payload kept: at 1M rows of 64 numbers,
    ~1.3 GB of strings once instead of twice when they become a frame column)."""
    import pyarrow as pa

    payloads: list[Any] = []
    keys: list[str] = []
    for chunk, chunk_keys in _payload_chunks(examples, chunk_rows):
        payloads.append(pa.array(chunk, pa.large_string()) if arrow else chunk)
        keys += chunk_keys
    if arrow:
        return pd.arrays.ArrowStringArray(pa.chunked_array(payloads, pa.large_string())), keys
    return [p for chunk in payloads for p in chunk], keys


def review_payload(examples: pd.DataFrame, modality: str) -> list[str | None]:
    """What a person judges (``examples.payload``): the full text; the image path relative to the dataset
    folder as the source wrote it; a tabular row's raw feature values as a JSON object {column: value}."""
    if modality == "text":
        return [str(t) for t in examples["text"]]
    if modality == "image":
        return [str(p) for p in examples["image"]]
    return tabular_payloads_and_keys(examples)[0]


def content_keys(examples: pd.DataFrame, modality: str) -> list[str]:
    """sha256 (hex) of each example's content: its full text (UTF-8); its image file's bytes; a tabular
    row's raw feature values as canonical JSON (sorted keys) — never featurized values, which change when
    other rows change. A review decision stays valid while this key (and the given tags) are unchanged."""
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    if modality == "text":
        return [digest(str(t).encode("utf-8")) for t in examples["text"]]
    if modality == "image":
        out = []
        for path in examples["image_path"]:
            h = hashlib.sha256()
            try:
                with open(path, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:  # ingestion checked the file; if it went since, the key says so
                h.update(b"unreadable:" + str(path).encode("utf-8", "surrogateescape"))
            out.append(h.hexdigest())
        return out
    return tabular_payloads_and_keys(examples)[1]


def valid_reviews(reviews: pd.DataFrame | None, example_ids: list[str], keys: list[str],
                  given: list[list[str]]) -> list[dict | None]:
    """Per example: its latest review decision (dict with action, labels) when still valid — recorded for
    the same content_key and the same given tags (as a set) — else None."""
    out: list[dict | None] = [None] * len(example_ids)
    if reviews is None or len(reviews) == 0:
        return out
    latest = {}
    for r in reviews.sort_values("reviewed_at", kind="stable").to_dict("records"):
        latest[str(r["example_id"])] = r  # the later row wins
    for i, (ex_id, key, tags) in enumerate(zip(example_ids, keys, given)):
        r = latest.get(ex_id)
        if r is None or r.get("content_key") != key:
            continue
        recorded = r.get("given_labels")
        recorded = [] if recorded is None or isinstance(recorded, float) else list(recorded)
        if set(recorded) != set(tags):
            continue
        labels = r.get("labels")
        out[i] = {"action": r["action"],
                  "labels": [] if labels is None or isinstance(labels, float) else [str(t) for t in labels]}
    return out


def curated_labels(
    example_ids: list[str],
    Y: np.ndarray,
    S: np.ndarray,
    classes: list[str],
    outliers: DetectorResult,
    duplicates: DetectorResult,
    policy: CurationPolicy,
    decisions: list[dict | None] | None = None,
) -> pd.DataFrame:
    """One row per example: corrected labels, whether it is excluded, and why (empty when unchanged).

    ``decisions`` (per example, a valid review decision or None, see :func:`valid_reviews`) come first:
    review > suggestion > given. ``exclude`` excludes (given tags kept, reason 'review: exclude');
    ``keep`` the given tags; ``accept`` / ``set`` the tags decided (for accept: the suggestion the
    reviewer accepted); a reviewed example is never excluded by the policy."""
    n = len(example_ids)
    reasons: list[list[str]] = [[] for _ in range(n)]
    excluded = np.zeros(n, dtype=bool)
    for i, k in zip(*np.nonzero(S.astype(bool) & ~Y.astype(bool))):
        reasons[i].append(f"+{classes[k]}")
    for i, k in zip(*np.nonzero(Y.astype(bool) & ~S.astype(bool))):
        reasons[i].append(f"-{classes[k]}")
    reasons = [["label issue: " + " ".join(r)] if r else [] for r in reasons]
    if policy.exclude_outliers:
        for i in np.flatnonzero(outliers.flags):
            excluded[i] = True
            reasons[i].append("excluded: outlier")
    if policy.keep_one_per_duplicate_group and duplicates.details is not None and len(duplicates.details):
        d = duplicates.details.sort_values(["group_id", "example_index"])
        first = d.groupby("group_id")["example_index"].transform("min")
        for i, keep in zip(d["example_index"], first):
            if i != keep:
                excluded[i] = True
                reasons[i].append(f"excluded: near-duplicate of {example_ids[keep]}")
    labels = tags_from_matrix(S, classes)
    given = tags_from_matrix(Y, classes)
    order = {c: j for j, c in enumerate(classes)}
    for i, decision in enumerate(decisions or []):
        if decision is None:
            continue
        action = decision["action"]
        if action == "exclude":
            labels[i], excluded[i] = given[i], True
        elif action == "keep":
            labels[i], excluded[i] = given[i], False
        else:
            labels[i] = sorted(set(decision["labels"]), key=lambda t: (order.get(t, len(order)), t))
            excluded[i] = False
        reasons[i] = [f"review: {action}"]
    return pd.DataFrame({
        "example_id": example_ids,
        "labels": labels,
        "excluded": excluded,
        "reason": ["; ".join(r) for r in reasons],
    })


@dataclass(frozen=True)
class PredictionRows:
    """The ``predictions`` table (one row per (example, tag), row-major: example_id, tag, given,
    probability), generated lazily from Y and P (N, K) as Arrow record batches: never N x K Python
    objects nor one N x K table in memory. ``len()`` is N x K; ``to_batches(max_chunksize)`` yields
    ``pyarrow.RecordBatch`` es of whole examples (``example_id`` and ``tag`` dictionary-encoded);
    ``to_table()`` / ``to_pandas()`` build everything at once (small data, tests)."""

    ids: list[str]
    classes: list[str]
    Y: np.ndarray
    P: np.ndarray

    def __len__(self) -> int:
        return int(np.shape(self.Y)[0] * np.shape(self.Y)[1])

    def to_batches(self, max_chunksize: int | None = None) -> Any:
        import pyarrow as pa

        n, k = np.shape(self.Y)
        ids, classes = pa.array(self.ids, pa.string()), pa.array(list(self.classes), pa.string())
        step = max(1, (max_chunksize or n * k or 1) // max(k, 1))
        tag_codes = np.arange(k, dtype=np.int32)
        for start in range(0, n, step):
            stop = min(start + step, n)
            yield pa.RecordBatch.from_pydict({
                "example_id": pa.DictionaryArray.from_arrays(
                    np.repeat(np.arange(start, stop, dtype=np.int32), k), ids),
                "tag": pa.DictionaryArray.from_arrays(np.tile(tag_codes, stop - start), classes),
                "given": pa.array(np.asarray(self.Y[start:stop], dtype=bool).reshape(-1)),
                "probability": pa.array(np.asarray(self.P[start:stop], dtype=np.float64).reshape(-1)),
            })

    def to_table(self) -> Any:
        import pyarrow as pa

        batches = list(self.to_batches())
        return pa.Table.from_batches(batches) if batches else pa.table({})

    def to_pandas(self) -> pd.DataFrame:
        return self.to_table().to_pandas()


def predictions_table(ids: list[str], classes: list[str], Y: np.ndarray, P: np.ndarray) -> PredictionRows:
    """The ``predictions`` table of an audit as :class:`PredictionRows` (the store inserts it batch by batch)."""
    return PredictionRows(list(ids), list(classes), np.asarray(Y), np.asarray(P))


def audit_tables(
    examples: pd.DataFrame,
    quarantine: pd.DataFrame,
    classes: list[str],
    modality: str,
    Y: np.ndarray,
    P: np.ndarray,
    auroc: np.ndarray,
    label: DetectorResult,
    ambiguous: DetectorResult,
    outliers: DetectorResult,
    duplicates: DetectorResult,
    policy: CurationPolicy = CurationPolicy(),
    reviews: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], dict[str, float | int]]:
    """Build every table of one audit (without dataset/run_id) and the audit_runs counters. Each table
    is a pandas frame, except ``predictions`` (N x K rows): :class:`PredictionRows`, Arrow record
    batches made on demand (:func:`predictions_table`).

    Y, P: (N, K) given tags and out-of-fold probabilities; detector results are over the same N rows.
    ``reviews``: the dataset's review decisions (columns example_id, action, labels, content_key,
    given_labels, reviewed_at; the latest per example applies). Valid ones (same content and given tags)
    are applied in ``curated_labels`` and close the example's issues: the health score and
    ``n_open_issues`` count open issues only.
    """
    n, k = Y.shape
    ids = examples["example_id"].astype(str).tolist()
    if modality == "tabular":  # one pass over the raw values for both
        payloads, keys = tabular_payloads_and_keys(examples, arrow=True)
    else:
        payloads, keys = review_payload(examples, modality), content_keys(examples, modality)
    given_tags = tags_from_matrix(Y, classes)
    decisions = valid_reviews(reviews, ids, keys, given_tags)
    id_arr = np.asarray(ids, dtype=object)
    cls_arr = np.asarray(classes, dtype=object)
    tag_flags = tag_flag_matrix(label.details, (n, k))
    S = suggested_tags(Y, tag_flags)

    borderline: list[list[str]] = [[] for _ in range(n)]
    if ambiguous.details is not None and len(ambiguous.details):
        for i, t in ambiguous.details[["example_index", "tag_index"]].drop_duplicates().itertuples(index=False):
            borderline[i].append(classes[t])
    group = np.full(n, -1, dtype=np.int64)
    conflict = np.zeros(n, dtype=bool)
    dup_rows = pd.DataFrame(columns=["group_id", "example_id", "kind", "is_conflict", "group_size"])
    if duplicates.details is not None and len(duplicates.details):
        d = duplicates.details
        group[d["example_index"].to_numpy()] = d["group_id"].to_numpy()
        conflict[d["example_index"].to_numpy()] = d["is_conflict"].to_numpy(dtype=bool)
        dup_rows = pd.DataFrame({
            "group_id": d["group_id"].astype("int32"), "example_id": id_arr[d["example_index"].to_numpy()],
            "kind": d["kind"], "is_conflict": d["is_conflict"].astype(bool), "group_size": d["group_size"],
        })

    rules, broken = _rules_of(label, Y, classes)
    example_rows = pd.DataFrame({
        "example_id": ids,
        "row_number": examples["row_number"].astype("int64"),
        "given_labels": given_tags,
        "suggested_labels": tags_from_matrix(S, classes),
        "label_quality": label.scores,
        "is_label_issue": label.flags,
        "ambiguity": ambiguous.scores,
        "is_ambiguous": ambiguous.flags,
        "borderline_tags": borderline,
        "outlier_score": outliers.scores,
        "is_outlier": outliers.flags,
        "outlier_reason": outlier_reasons(outliers, n),
        "near_duplicate_group": pd.array(np.where(group >= 0, group, 0), dtype="Int32"),
        "is_near_duplicate": duplicates.flags,
        "near_duplicate_conflict": conflict,
        "payload": payloads,
        "content_key": keys,
        "is_rule_violation": np.array([bool(b) for b in broken], dtype=bool),
        "rule_violations": [list(b) for b in broken] if rules is not None else [[] for _ in range(n)],
    })
    del payloads  # the frame holds its own (Arrow) copy: at 1M tabular rows ~1.3 GB of Python strings freed
    example_rows.loc[group < 0, "near_duplicate_group"] = pd.NA

    tag_issue_rows = pd.DataFrame(columns=["example_id", "tag", "given", "probability", "kind", "score"])
    if label.details is not None and len(label.details):
        li = label.details
        tag_issue_rows = pd.DataFrame({
            "example_id": id_arr[li["example_index"].to_numpy()], "tag": cls_arr[li["tag_index"].to_numpy()],
            "given": li["given"].astype(bool), "probability": li["probability"], "kind": li["kind"],
            "score": li["score"],
        })
    predictions = predictions_table(ids, classes, Y, P)
    summary = class_summary(Y, S, label.details, classes, list(auroc))
    confusions = confusion_pairs(label.details, classes)
    curated = curated_labels(
        ids, Y, S, classes, outliers, duplicates, policy, decisions
    )
    decided = np.array([d is not None for d in decisions], dtype=bool)
    flags = {"label_issue": label.flags, "ambiguous": ambiguous.flags, "outlier": outliers.flags,
             "near_duplicate": duplicates.flags}
    open_issue = np.zeros(n, dtype=bool)
    for f in flags.values():
        open_issue |= np.asarray(f, dtype=bool)
    open_issue &= ~decided
    counters = {
        "n_examples": n,
        "n_quarantined": len(quarantine),
        "n_classes": k,
        "health_score": float(health_score({"open_issue": open_issue})),
        "n_open_issues": int(open_issue.sum()),
        "n_label_issues": int(label.flags.sum()),
        "n_ambiguous": int(ambiguous.flags.sum()),
        "n_outliers": int(outliers.flags.sum()),
        "n_near_duplicates": int(duplicates.flags.sum()),
        **_expected_error_counters(label),
        "n_rule_violations": int(sum(1 for b in broken if b)),
    }
    tables = {
        "examples": example_rows,
        "tag_issues": tag_issue_rows,
        "predictions": predictions,
        "class_summary": summary,
        "tag_confusions": confusions,
        "duplicate_groups": dup_rows,
        "quarantine": quarantine[["row_number", "example_id", "reason"]],
        "curated_labels": curated,
        "label_rules": rules.table(classes, Y) if rules is not None else pd.DataFrame(columns=LABEL_RULE_COLUMNS),
    }
    return tables, counters


LABEL_RULE_COLUMNS = ["rule_type", "rule", "tags", "support", "confidence", "n_violations"]


def _rules_of(label: DetectorResult, Y: np.ndarray, classes: list[str]) -> tuple[Any, list[list[str]]]:
    """The label rules the detector learned (``summary['label_rules']``; None for the cleanlab parity mode)
    and, per example, the rules its given tags break (as text)."""
    from dq_pipeline.rules import LabelRules, violations

    data = (label.summary or {}).get("label_rules")
    if not data or int(data.get("n_tags", -1)) != Y.shape[1]:
        return None, [[] for _ in range(len(Y))]
    rules = LabelRules.from_dict(data)
    return rules, violations(rules, Y, classes)


def _expected_error_counters(label: DetectorResult) -> dict[str, float | None]:
    """audit_runs columns: the detector's expected error rate and its interval (None when not estimated)."""
    s = label.summary or {}
    rate, interval = s.get("expected_error_rate"), s.get("expected_error_rate_interval") or [None, None]
    return {"expected_error_rate": None if rate is None else float(rate),
            "expected_error_rate_lo": None if interval[0] is None else float(interval[0]),
            "expected_error_rate_hi": None if interval[1] is None else float(interval[1])}
