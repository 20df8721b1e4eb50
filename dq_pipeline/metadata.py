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


def markdown_table(frame: pd.DataFrame, max_rows: int = 50) -> str:
    """A GitHub-markdown table of the first ``max_rows`` rows (lists joined with ', ', pipes escaped)."""
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
    text = shown.to_markdown(index=False, floatfmt=".3f")
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


def detector_metadata(name: str, result: Any, raw: Any, preds: Any) -> dict[str, Any]:
    """Dagster metadata for a detector asset: counts, the worst examples and a plot.

    ``result`` is a DetectorResult, ``raw`` the RawDataset, ``preds`` the Predictions (for tags).
    """
    import dagster as dg

    from dq_pipeline.curate import payload_of
    from dq_pipeline.ingest import tags_from_matrix

    scores, flags = result.scores, result.flags
    n = len(scores)
    order = np.argsort(scores, kind="stable")[:WORST_ROWS]
    examples = raw.examples
    worst = pd.DataFrame({
        "example_id": examples["example_id"].to_numpy()[order],
        "given": [tags_from_matrix(preds.Y[i : i + 1], preds.classes)[0] for i in order],
        "score": scores[order],
        "flagged": flags[order],
    })
    if raw.manifest.modality != "tabular":
        worst["content"] = np.asarray(payload_of(examples, raw.manifest.modality), dtype=object)[order]
    meta: dict[str, Any] = {
        "n_flagged": int(flags.sum()),
        "rate_flagged": round(float(flags.mean()), 4) if n else 0.0,
        "summary": dg.MetadataValue.json({k: v for k, v in result.summary.items()
                                          if isinstance(v, (int, float, str, bool, list, dict, type(None)))}),
    }
    labels = {"label_issues": "label quality (low = likely wrong)", "ambiguous": "ambiguity (low = ambiguous)",
              "outliers": "outlier score (low = outlier)", "near_duplicates": "duplicate score (low = duplicate)"}
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
    meta["worst_examples"] = dg.MetadataValue.md(markdown_table(worst))
    meta["distribution"] = dg.MetadataValue.md(histogram_png(scores, flags, name, labels.get(name, "score")))
    return meta
