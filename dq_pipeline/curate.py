"""Assemble one audit's curated tables (the DuckDB contract) from the detector outputs.

Pure pandas/numpy: the Dagster ``curated`` asset only calls :func:`audit_tables` and writes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def curated_labels(
    example_ids: list[str],
    Y: np.ndarray,
    S: np.ndarray,
    classes: list[str],
    outliers: DetectorResult,
    duplicates: DetectorResult,
    policy: CurationPolicy,
) -> pd.DataFrame:
    """One row per example: corrected labels, whether it is excluded, and why (empty when unchanged)."""
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
    return pd.DataFrame({
        "example_id": example_ids,
        "labels": tags_from_matrix(S, classes),
        "excluded": excluded,
        "reason": ["; ".join(r) for r in reasons],
    })


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
) -> tuple[dict[str, pd.DataFrame], dict[str, float | int]]:
    """Build every table of one audit (without dataset/run_id) and the audit_runs counters.

    Y, P: (N, K) given tags and out-of-fold probabilities; detector results are over the same N rows.
    """
    n, k = Y.shape
    ids = examples["example_id"].astype(str).tolist()
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

    example_rows = pd.DataFrame({
        "example_id": ids,
        "row_number": examples["row_number"].astype("int64"),
        "given_labels": tags_from_matrix(Y, classes),
        "suggested_labels": tags_from_matrix(S, classes),
        "label_quality": label.scores,
        "is_label_issue": label.flags,
        "ambiguity": ambiguous.scores,
        "is_ambiguous": ambiguous.flags,
        "borderline_tags": borderline,
        "outlier_score": outliers.scores,
        "is_outlier": outliers.flags,
        "near_duplicate_group": pd.array(np.where(group >= 0, group, 0), dtype="Int32"),
        "is_near_duplicate": duplicates.flags,
        "near_duplicate_conflict": conflict,
        "payload": payload_of(examples, modality),
    })
    example_rows.loc[group < 0, "near_duplicate_group"] = pd.NA

    tag_issue_rows = pd.DataFrame(columns=["example_id", "tag", "given", "probability", "kind", "score"])
    if label.details is not None and len(label.details):
        li = label.details
        tag_issue_rows = pd.DataFrame({
            "example_id": id_arr[li["example_index"].to_numpy()], "tag": cls_arr[li["tag_index"].to_numpy()],
            "given": li["given"].astype(bool), "probability": li["probability"], "kind": li["kind"],
            "score": li["score"],
        })
    predictions = pd.DataFrame({
        "example_id": np.repeat(id_arr, k), "tag": np.tile(cls_arr, n),
        "given": Y.astype(bool).reshape(-1), "probability": np.asarray(P, dtype=np.float64).reshape(-1),
    })
    summary = class_summary(Y, S, label.details, classes, list(auroc))
    confusions = confusion_pairs(label.details, classes)
    curated = curated_labels(
        ids, Y, S, classes, outliers, duplicates, policy
    )
    flags = {"label_issue": label.flags, "ambiguous": ambiguous.flags, "outlier": outliers.flags,
             "near_duplicate": duplicates.flags}
    counters = {
        "n_examples": n,
        "n_quarantined": len(quarantine),
        "n_classes": k,
        "health_score": float(health_score(flags)),
        "n_label_issues": int(label.flags.sum()),
        "n_ambiguous": int(ambiguous.flags.sum()),
        "n_outliers": int(outliers.flags.sum()),
        "n_near_duplicates": int(duplicates.flags.sum()),
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
    }
    return tables, counters
