"""What a person sees in the Dagster UI: markdown tables of the worst examples and PNG plots.

Plots are rendered with matplotlib (Agg) and embedded in markdown metadata as data-URI images.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pandas as pd

WORST_ROWS = 15


def markdown_table(frame: pd.DataFrame, max_rows: int = 50, floatfmt: str = ".3f") -> str:
    """A GitHub-markdown table of the first ``max_rows`` rows (lists joined with ', ', pipes escaped; floats
    formatted with ``floatfmt``, e.g. '.3g' for 3 significant digits)."""
    if frame is None or frame.empty:
        return "_(none)_"
    shown = frame.head(max_rows).copy()
    for column in shown.columns:
        if pd.api.types.is_numeric_dtype(shown[column]) or pd.api.types.is_bool_dtype(shown[column]):
            continue
        shown[column] = [
            ", ".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else str(v) for v in shown[column]
        ]
        shown[column] = shown[column].map(lambda v: v.replace("|", "\\|").replace("\n", " "))
    text = shown.to_markdown(index=False, floatfmt=floatfmt)
    if len(frame) > max_rows:
        text += f"\n\n_{len(frame) - max_rows} more rows not shown_"
    return text


def png_markdown(fig: Any, title: str) -> str:
    """Render a matplotlib figure to a PNG embedded in markdown, then close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def histogram_png(scores: np.ndarray, flags: np.ndarray, title: str, xlabel: str) -> str:
    """Histogram of per-example scores, flagged examples stacked in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    bins = np.linspace(0, 1, 31)
    ax.hist([scores[~flags], scores[flags]], bins=bins, stacked=True, color=["#4c78a8", "#e45756"],
            label=["not flagged", "flagged"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    ax.set_title(title)
    ax.legend()
    return png_markdown(fig, title)


def tag_bars_png(classes: list[str], missing: np.ndarray, incorrect: np.ndarray) -> str:
    """Per-tag bars of flagged missing and incorrect tags."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(classes) + 2), 3.2))
    x = np.arange(len(classes))
    ax.bar(x - 0.2, missing, width=0.4, label="missing", color="#f58518")
    ax.bar(x + 0.2, incorrect, width=0.4, label="incorrect", color="#e45756")
    ax.set_xticks(x, classes, rotation=60, ha="right")
    ax.set_ylabel("flagged tags")
    ax.set_title("Label issues per tag")
    ax.legend()
    return png_markdown(fig, "Label issues per tag")


#: Tabular payload in the worst-examples table: this many feature values per row, the row's most unusual
#: numeric ones (largest |z-score| over the dataset) first.
PAYLOAD_FEATURES = 4
#: What each detector's flag means, for the caption of its worst-examples table.
FLAG_RULES = {
    "label_issues": "among the lowest-scoring examples, as many as the estimated number of wrongly tagged "
                    "examples (summary: expected_error_rate), plus any example breaking a learned label rule",
    "ambiguous": "a tag within the ambiguity margin of its decision threshold, or an ambiguous co-occurring pair",
    "outliers": "k-NN distance far above the robust fit of the data's distances (outlier_z_threshold); texts also "
                "when the tokenizer reads far more pieces per word than usual (outlier_extra_z_threshold)",
    "near_duplicates": "in a group of exact or near-duplicate examples",
}
SCORE_LABELS = {"label_issues": "label quality (low = likely wrong)", "ambiguous": "ambiguity (low = ambiguous)",
                "outliers": "outlier score (low = outlier)", "near_duplicates": "duplicate score (low = duplicate)"}


def significant(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits (0.0265, 0.287, 4.95e-07; 0 and 1 as '0' and '1')."""
    if value is None or not np.isfinite(value):
        return str(value)
    return f"{float(value):.{digits}g}"


def worst_order(scores: np.ndarray, flags: np.ndarray, n: int = WORST_ROWS) -> np.ndarray:
    """Row positions of the worst-examples table: flagged examples first, lowest score first (ties by
    position), then, only if fewer than ``n`` are flagged, the lowest-scoring unflagged examples."""
    scores = np.asarray(scores, dtype=np.float64)
    flags = np.asarray(flags, dtype=bool)
    flagged = np.flatnonzero(flags)
    flagged = flagged[np.argsort(scores[flagged], kind="stable")]
    if len(flagged) >= n:
        return flagged[:n]
    rest = np.flatnonzero(~flags)
    rest = rest[np.argsort(scores[rest], kind="stable")]
    return np.concatenate([flagged, rest[: n - len(flagged)]]).astype(np.int64)


def tabular_payload(examples: pd.DataFrame, feature_columns: list[str], rows: np.ndarray,
                    n_values: int = PAYLOAD_FEATURES) -> list[str]:
    """For each of ``rows``: ``n_values`` of its feature values as ``column=value``, the most unusual numeric
    values (largest |z-score| over all examples) first, then the other columns in order; '…' when more."""
    cols = [c for c in feature_columns if c in examples.columns]
    numeric = {c: pd.to_numeric(examples[c], errors="coerce") for c in cols}
    z = {}
    for c, v in numeric.items():
        sd = v.std()
        if v.notna().any() and sd and np.isfinite(sd):
            z[c] = ((v - v.mean()) / sd).abs().to_numpy()
    out = []
    for i in np.asarray(rows, dtype=np.int64):
        ranked = sorted(cols, key=lambda c: -(z[c][i] if c in z and np.isfinite(z[c][i]) else -1.0))
        parts = []
        for c in ranked[:n_values]:
            value = examples[c].iloc[i]
            if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
                shown = str(int(value))  # 22402, not 2.24e+04
            elif isinstance(value, (float, np.floating)):
                shown = significant(value, 4)
            else:
                shown = str(value)
            parts.append(f"{c}={shown}")
        out.append(", ".join(parts) + (", …" if len(cols) > n_values else ""))
    return out


def payload_column(raw: Any, rows: np.ndarray) -> list[str | None]:
    """What a person recognises an example by: the text snippet, the image path (relative to the dataset
    folder) or, for a tabular row, a few feature values (:func:`tabular_payload`)."""
    from dq_pipeline.curate import payload_of

    examples = raw.examples
    rows = np.asarray(rows, dtype=np.int64)
    if raw.manifest.modality == "tabular":
        columns = [c for c in examples.columns if c not in ("example_id", "row_number", "tags")]
        return tabular_payload(examples, columns, rows)
    return list(np.asarray(payload_of(examples.iloc[rows], raw.manifest.modality), dtype=object))


def worst_caption(name: str, n_flagged: int, n_shown_flagged: int, n_padded: int) -> str:
    """The sentence under the worst-examples table: what is shown and why unflagged rows appear."""
    rule = FLAG_RULES.get(name, "flagged by the detector")
    if n_flagged == 0:
        head = "_No example is flagged"
    else:
        head = (f"_{n_shown_flagged} of {n_flagged} flagged example{'s' if n_flagged != 1 else ''}, lowest score "
                f"first")
    if n_padded:
        head += (f"; then the {n_padded} lowest-scoring *unflagged* example{'s' if n_padded != 1 else ''} "
                 f"(flagged = no), shown for comparison only: a low score alone does not flag an example")
    return head + f". Flagged = {rule}._"


def detector_metadata(name: str, result: Any, raw: Any, preds: Any) -> dict[str, Any]:
    """Dagster metadata for a detector asset: counts, the worst examples and a plot.

    ``result`` is a DetectorResult, ``raw`` the RawDataset, ``preds`` the Predictions (for tags). The
    worst-examples table lists flagged examples first (lowest score first; :func:`worst_order`), pads with
    the lowest-scoring unflagged ones only when fewer than :data:`WORST_ROWS` are flagged, marks each row
    ``flagged`` yes/no and says why in a caption; scores show 3 significant digits.
    """
    import dagster as dg

    from dq_pipeline.ingest import tags_from_matrix

    scores, flags = np.asarray(result.scores, dtype=np.float64), np.asarray(result.flags, dtype=bool)
    n = len(scores)
    order = worst_order(scores, flags)
    examples = raw.examples
    worst = pd.DataFrame({
        "example_id": examples["example_id"].to_numpy()[order],
        "given": [tags_from_matrix(preds.Y[i : i + 1], preds.classes)[0] for i in order],
        "score": scores[order],
        "flagged": np.where(flags[order], "yes", "no"),
    })
    worst["content"] = payload_column(raw, order)
    meta: dict[str, Any] = {
        "n_flagged": int(flags.sum()),
        "rate_flagged": round(float(flags.mean()), 4) if n else 0.0,
        "summary": dg.MetadataValue.json({k: v for k, v in result.summary.items()
                                          if isinstance(v, (int, float, str, bool, list, dict, type(None)))}),
    }
    if name == "label_issues":
        from dq_pipeline.curate import tag_flag_matrix
        from dq_pipeline.issues.label_issues import suggested_tags

        S = suggested_tags(preds.Y, tag_flag_matrix(result.details, preds.Y.shape))
        worst.insert(2, "suggested", [tags_from_matrix(S[i : i + 1], preds.classes)[0] for i in order])
        d = result.details
        k = len(preds.classes)
        missing = np.bincount(d.loc[d["kind"] == "missing", "tag_index"], minlength=k)
        incorrect = np.bincount(d.loc[d["kind"] == "incorrect", "tag_index"], minlength=k)
        meta["per_tag_plot"] = dg.MetadataValue.md(tag_bars_png(preds.classes, missing, incorrect))
    if name == "outliers" and result.details is not None and "flagged_by" in result.details:
        from dq_pipeline.issues.outliers import OUTLIER_REASONS

        why = dict(zip(result.details["example_index"], result.details["flagged_by"]))
        worst.insert(3, "why", [OUTLIER_REASONS.get(why[i], why[i]) if i in why else "" for i in order])
    n_shown_flagged = int(flags[order].sum())
    caption = worst_caption(name, int(flags.sum()), n_shown_flagged, len(order) - n_shown_flagged)
    meta["worst_examples"] = dg.MetadataValue.md(markdown_table(worst, floatfmt=".3g") + "\n\n" + caption)
    meta["distribution"] = dg.MetadataValue.md(histogram_png(scores, flags, name, SCORE_LABELS.get(name, "score")))
    return meta
