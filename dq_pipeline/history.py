"""Audit history: what changed since the previous audit of a dataset, health trends, regression test.

Functional core (pandas + DuckDB reads, no Dagster): the ``curated`` asset calls :func:`diff_audits`
before it writes an audit, the ``regression`` asset check calls :func:`regression`, ``dq-pipeline
history`` prints :func:`audit_history`.

**Identity.** An example is the same across audits when its ``example_id`` is (the manifest's
``id_column``, else the row number — so without an id column, deleting a row renumbers the rows after
it). Its *content* is ``examples.content_key`` (sha256 of the text, the image bytes or the raw tabular
values) and its *tags* are ``given_labels`` (compared as sets).

**Issue state** of an (example, issue type) in one audit, issue types ``label_issue``, ``ambiguous``,
``outlier``, ``near_duplicate`` (the detector flags): *open* = flagged and no valid review decision
applied by that audit (``examples.decided_action`` NULL); *closed* = flagged and decided; otherwise
*clear* (not flagged, or not in the audit).

**Change** against the previous successful audit of the dataset (``previous_run_id``):
``new`` clear -> open; ``persisting`` open -> open; ``resolved`` open -> clear or closed;
``reopened`` closed -> open (the decision no longer applies: content or given tags changed since it).
Closed -> closed and clear -> closed are not changes (no row).

**Reason** (the first that applies): ``reviewed`` — resolved because a valid review decision now closes
it, or reopened because the decision no longer applies for another reason than the two below; ``data
changed`` — the example was added, removed, or its content changed; ``tags changed`` — its given tags
changed; ``model changed`` — the example itself is unchanged: the flag moved because the detectors saw
something else (other examples added, removed or edited, so cross-validation and neighbours changed; or
settings, models, code or library versions changed — ``detail`` says which it can tell). Persisting rows
have no reason (NULL). ``detail`` adds the specifics ('example added', 'given tags: +red -blue',
'review: accept', 'other examples: 3 added, 1 removed', 'settings: n_folds').
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: issue type -> the examples column holding its flag
ISSUE_FLAGS: dict[str, str] = {"label_issue": "is_label_issue", "ambiguous": "is_ambiguous",
                               "outlier": "is_outlier", "near_duplicate": "is_near_duplicate"}
#: issue type -> the audit_runs column counting its open examples
OPEN_COUNT_COLUMNS: dict[str, str] = {"label_issue": "n_open_label_issues", "ambiguous": "n_open_ambiguous",
                                      "outlier": "n_open_outliers", "near_duplicate": "n_open_near_duplicates"}
CHANGES = ("new", "reopened", "resolved", "persisting")
REASONS = ("data changed", "tags changed", "model changed", "reviewed")
CHANGE_COLUMNS = ["example_id", "issue_type", "change", "reason", "detail"]
EXAMPLE_CHANGE_COLUMNS = ["example_id", "change", "content_changed", "tags_changed", "previous_labels", "given_labels"]
COUNT_COLUMNS = ["n_new", "n_resolved", "n_persisting", "n_reopened", "n_added", "n_removed", "n_edited"]
#: settings that do not change any flag: ignored when naming what changed between two audits
INERT_SETTINGS = ("cache_dir", "batch_size", "history_keep_audits", "regression_max_health_drop",
                  "regression_max_open_increase", "regression_min_open_increase", "regression_blocking")
#: columns of an examples frame the diff reads
EXAMPLE_COLUMNS = ["example_id", "content_key", "given_labels", *ISSUE_FLAGS.values(), "decided_action"]


class HistoryError(ValueError):
    """An unknown dataset or a DuckDB file without audits; the message names what exists."""


@dataclass
class AuditDiff:
    """One audit against the previous one: ``changes`` (:data:`CHANGE_COLUMNS`, one row per (example,
    issue type)), ``example_changes`` (:data:`EXAMPLE_CHANGE_COLUMNS`) and ``counts`` (the audit_runs
    columns :data:`COUNT_COLUMNS` + :data:`OPEN_COUNT_COLUMNS`; the diff counts are None for a first audit)."""

    changes: pd.DataFrame
    example_changes: pd.DataFrame
    counts: dict[str, int | None] = field(default_factory=dict)


def _tags(value: Any) -> frozenset[str]:
    if value is None or (isinstance(value, float) and value != value):
        return frozenset()
    return frozenset(str(t) for t in (value.tolist() if hasattr(value, "tolist") else value))


def _sorted_tags(value: Any) -> list[str] | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return sorted(_tags(value))


def states(examples: pd.DataFrame) -> pd.DataFrame:
    """Per example (index example_id) and issue type (columns): 'open', 'closed' or '' (clear)."""
    decided = examples["decided_action"].notna().to_numpy() if "decided_action" in examples else np.zeros(
        len(examples), dtype=bool)
    out = {}
    for issue, column in ISSUE_FLAGS.items():
        flagged = examples[column].fillna(False).to_numpy(dtype=bool) if column in examples else np.zeros(
            len(examples), dtype=bool)
        out[issue] = np.where(flagged & ~decided, "open", np.where(flagged, "closed", ""))
    return pd.DataFrame(out, index=examples["example_id"].astype(str).to_numpy())


def open_counts(examples: pd.DataFrame) -> dict[str, int]:
    """``{n_open_label_issues: ..., ...}``: open (flagged, undecided) examples per issue type."""
    s = states(examples)
    return {OPEN_COUNT_COLUMNS[i]: int((s[i] == "open").sum()) for i in ISSUE_FLAGS}


def changed_settings(previous: dict | str | None, current: dict | str | None) -> list[str]:
    """Names of the settings (audit_runs.config) that differ, ignoring :data:`INERT_SETTINGS`."""
    def load(c: Any) -> dict:
        if c is None:
            return {}
        return json.loads(c) if isinstance(c, str) else dict(c)

    a, b = load(previous), load(current)
    return sorted(k for k in set(a) | set(b) if k not in INERT_SETTINGS and a.get(k) != b.get(k))


def _tag_delta(before: frozenset[str], after: frozenset[str]) -> str:
    parts = [f"+{t}" for t in sorted(after - before)] + [f"-{t}" for t in sorted(before - after)]
    return "given tags: " + " ".join(parts)


def diff_audits(previous: pd.DataFrame | None, current: pd.DataFrame, previous_config: dict | str | None = None,
                current_config: dict | str | None = None) -> AuditDiff:
    """Diff of two audits of one dataset (see the module docstring for the exact rules).

    ``previous`` / ``current``: examples frames with :data:`EXAMPLE_COLUMNS` (``decided_action`` and
    ``content_key`` may be missing or NULL: then nothing counts as decided, resp. content as unchanged);
    ``previous`` None = first audit (no changes, diff counts None). Configs: the audits' settings (dict
    or JSON), used only to name changed settings in ``detail``.
    """
    current = current.assign(example_id=current["example_id"].astype(str))
    counts: dict[str, int | None] = dict(open_counts(current))
    if previous is None:
        counts.update({c: None for c in COUNT_COLUMNS})
        return AuditDiff(pd.DataFrame(columns=CHANGE_COLUMNS), pd.DataFrame(columns=EXAMPLE_CHANGE_COLUMNS), counts)
    previous = previous.assign(example_id=previous["example_id"].astype(str))

    # examples: added, removed, edited
    cur_ids, prev_ids = set(current["example_id"]), set(previous["example_id"])
    added, removed = sorted(cur_ids - prev_ids), sorted(prev_ids - cur_ids)
    key_cur = dict(zip(current["example_id"], current["content_key"] if "content_key" in current else [None] * len(current)))
    key_prev = dict(zip(previous["example_id"], previous["content_key"] if "content_key" in previous else [None] * len(previous)))
    tags_cur = dict(zip(current["example_id"], current["given_labels"]))
    tags_prev = dict(zip(previous["example_id"], previous["given_labels"]))
    content_changed, tags_changed = set(), set()
    for ex_id in cur_ids & prev_ids:
        a, b = key_prev[ex_id], key_cur[ex_id]
        if isinstance(a, str) and isinstance(b, str) and a != b:
            content_changed.add(ex_id)
        if _tags(tags_prev[ex_id]) != _tags(tags_cur[ex_id]):
            tags_changed.add(ex_id)
    edited = sorted(content_changed | tags_changed)
    example_rows = (
        [{"example_id": i, "change": "added", "content_changed": None, "tags_changed": None,
          "previous_labels": None, "given_labels": _sorted_tags(tags_cur[i])} for i in added]
        + [{"example_id": i, "change": "removed", "content_changed": None, "tags_changed": None,
            "previous_labels": _sorted_tags(tags_prev[i]), "given_labels": None} for i in removed]
        + [{"example_id": i, "change": "edited", "content_changed": i in content_changed,
            "tags_changed": i in tags_changed, "previous_labels": _sorted_tags(tags_prev[i]),
            "given_labels": _sorted_tags(tags_cur[i])} for i in edited])
    example_changes = pd.DataFrame(example_rows, columns=EXAMPLE_CHANGE_COLUMNS)

    # what else changed, for 'model changed'
    others = [f"{n} {what}" for n, what in ((len(added), "added"), (len(removed), "removed"), (len(edited), "edited"))
              if n]
    settings = changed_settings(previous_config, current_config)
    model_detail = "same content and tags; " + "; ".join(
        ([f"other examples: {', '.join(others)}"] if others else [])
        + ([f"settings: {', '.join(settings)}"] if settings else [])
        or ["same data and settings (code or library versions changed)"])
    added_set, removed_set = set(added), set(removed)
    decided_cur = dict(zip(current["example_id"], current["decided_action"])) if "decided_action" in current else {}

    def data_or_tags(ex_id: str) -> tuple[str, str] | None:
        if ex_id in added_set:
            return "data changed", "example added"
        if ex_id in removed_set:
            return "data changed", "example removed"
        if ex_id in content_changed:
            return "data changed", "content edited"
        if ex_id in tags_changed:
            return "tags changed", _tag_delta(_tags(tags_prev[ex_id]), _tags(tags_cur[ex_id]))
        return None

    s_prev, s_cur = states(previous), states(current)
    both = s_prev.join(s_cur, how="outer", lsuffix="_prev", rsuffix="_cur").fillna("")
    rows = []
    for issue in ISSUE_FLAGS:
        before, after = both[f"{issue}_prev"], both[f"{issue}_cur"]
        for ex_id in both.index[(before == "open") | (after == "open")]:
            b, a = before[ex_id], after[ex_id]
            if a == "open" and b == "open":
                rows.append((ex_id, issue, "persisting", None, None))
                continue
            if a == "open" and b == "closed":
                if ex_id in content_changed:
                    why = ("data changed", "content edited since review")
                elif ex_id in tags_changed:
                    delta = _tag_delta(_tags(tags_prev[ex_id]), _tags(tags_cur[ex_id])).split(": ", 1)[1]
                    why = ("tags changed", f"given tags changed since review: {delta}")
                else:
                    why = ("reviewed", "review decision no longer applies")
                rows.append((ex_id, issue, "reopened", *why))
                continue
            change = "new" if a == "open" else "resolved"
            if a == "closed":
                why = ("reviewed", f"review: {decided_cur.get(ex_id)}")
            else:
                why = data_or_tags(ex_id) or ("model changed", model_detail)
            rows.append((ex_id, issue, change, *why))
    changes = pd.DataFrame(rows, columns=CHANGE_COLUMNS)
    order = {c: i for i, c in enumerate(CHANGES)}
    changes = (changes.assign(_o=changes["change"].map(order)).sort_values(["_o", "issue_type", "example_id"])
               .drop(columns="_o").reset_index(drop=True))
    for column in ("reason", "detail"):  # NULL, not NaN
        changes[column] = changes[column].astype(object).where(changes[column].notna(), None)
    for change in ("new", "resolved", "persisting", "reopened"):
        counts[f"n_{change}"] = int((changes["change"] == change).sum())
    counts.update(n_added=len(added), n_removed=len(removed), n_edited=len(edited))
    return AuditDiff(changes, example_changes, counts)


# --------------------------------------------------------------------------------------- DuckDB reads

def _known_columns(con: Any, table: str) -> set[str]:
    return {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' "
                                      "AND table_name = ?", [table]).fetchall()}


def read_previous(db_path: str | Path, dataset: str) -> tuple[dict[str, Any] | None, pd.DataFrame | None]:
    """The latest successful audit of ``dataset`` (its audit_runs row) and its examples (the columns of
    :data:`EXAMPLE_COLUMNS` it has); ``(None, None)`` when the file or an audit of the dataset is missing,
    or its examples were pruned."""
    from dq_pipeline import store

    if not Path(db_path).exists():
        return None, None
    with store.connect(db_path, read_only=True) as con:
        run = con.execute("SELECT * FROM latest_audit_runs WHERE dataset = ?", [dataset]).df()
        if run.empty:
            return None, None
        row = {k: (None if isinstance(v, float) and v != v else v) for k, v in run.iloc[0].to_dict().items()}
        have = _known_columns(con, "examples")
        cols = ", ".join(c for c in EXAMPLE_COLUMNS if c in have)
        examples = con.execute(f"SELECT {cols} FROM examples WHERE dataset = ? AND run_id = ?",
                               [dataset, row["run_id"]]).df()
    if examples.empty and row.get("n_examples"):
        return row, None
    return row, examples


def _datasets(con: Any) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT dataset FROM audit_runs WHERE status = 'success' "
                                      "ORDER BY 1").fetchall()]


#: audit_history columns, in order; optional ones (another migration's) are read only when present
HISTORY_COLUMNS = ["finished_at", "run_id", "n_examples", "health_score", "n_open_issues",
                   *OPEN_COUNT_COLUMNS.values(), "n_label_issues", "n_ambiguous", "n_outliers", "n_near_duplicates",
                   "expected_error_rate", "n_added", "n_removed", "n_edited", "n_new", "n_resolved", "n_persisting",
                   "n_reopened", "previous_run_id", "detail_pruned"]


def audit_history(db_path: str | Path, dataset: str) -> pd.DataFrame:
    """Every successful audit of ``dataset``, oldest first (:data:`HISTORY_COLUMNS` that the file has;
    ``expected_error_rate`` only where a migration added it). HistoryError for an unknown dataset,
    naming the audited ones; StoreError for an unusable file."""
    from dq_pipeline import store

    with store.connect(db_path, read_only=True) as con:
        have = _known_columns(con, "audit_runs")
        frame = con.execute(
            f"SELECT {', '.join(c for c in HISTORY_COLUMNS if c in have)} FROM audit_runs "
            "WHERE dataset = ? AND status = 'success' ORDER BY finished_at, run_id", [dataset]).df()
        if frame.empty:
            known = _datasets(con)
            raise HistoryError(f"no audit of dataset {dataset!r} in {db_path} (audited: "
                               f"{', '.join(known) or 'none yet; run dq-pipeline audit first'})")
    return frame


def read_changes(db_path: str | Path, dataset: str, run_id: str) -> pd.DataFrame:
    """The audit_changes rows of one audit (:data:`CHANGE_COLUMNS`), in :data:`CHANGES` order."""
    from dq_pipeline import store

    with store.connect(db_path, read_only=True) as con:
        frame = con.execute(f"SELECT {', '.join(CHANGE_COLUMNS)} FROM audit_changes WHERE dataset = ? AND run_id = ?",
                            [dataset, run_id]).df()
    order = {c: i for i, c in enumerate(CHANGES)}
    return (frame.assign(_o=frame["change"].map(order)).sort_values(["_o", "issue_type", "example_id"])
            .drop(columns="_o").reset_index(drop=True))


def read_run(db_path: str | Path, dataset: str, run_id: str | None) -> dict[str, Any] | None:
    """One audit_runs row as a dict (NaN -> None), or None."""
    from dq_pipeline import store

    if run_id is None:
        return None
    with store.connect(db_path, read_only=True) as con:
        frame = con.execute("SELECT * FROM audit_runs WHERE dataset = ? AND run_id = ?", [dataset, run_id]).df()
    if frame.empty:
        return None
    return {k: (None if isinstance(v, float) and v != v else v) for k, v in frame.iloc[0].to_dict().items()}


# --------------------------------------------------------------------------------------- regression

@dataclass(frozen=True)
class RegressionThresholds:
    """When an audit counts as a regression against the previous one: the health score (0-1, high =
    healthy) fell by more than ``max_health_drop``, or the open-issue count rose by more than
    ``max(max_open_increase * previous count, min_open_increase)`` examples."""

    max_health_drop: float = 0.02
    max_open_increase: float = 0.25
    min_open_increase: int = 5


@dataclass
class Regression:
    """Outcome of :func:`regression`: ``passed``, a one-line ``description``, the ``causes`` (audit_changes
    rows with change 'new' or 'reopened') and the numbers compared (``metrics``)."""

    passed: bool
    description: str
    causes: pd.DataFrame
    metrics: dict[str, Any]


def regression(current: dict[str, Any], previous: dict[str, Any] | None, changes: pd.DataFrame,
               thresholds: RegressionThresholds = RegressionThresholds()) -> Regression:
    """Compare an audit with the previous one (audit_runs rows as dicts; ``changes`` the current audit's
    audit_changes rows). No previous audit: passes. Fails when a threshold of ``thresholds`` is passed."""
    causes = changes[changes["change"].isin(["new", "reopened"])].reset_index(drop=True)
    if previous is None:
        return Regression(True, "first audit of the dataset: nothing to compare with", causes.iloc[:0], {})
    def num(value: Any, kind: type) -> Any:
        return None if value is None or (isinstance(value, float) and value != value) else kind(value)

    h_cur, h_prev = num(current.get("health_score"), float), num(previous.get("health_score"), float)
    o_cur, o_prev = num(current.get("n_open_issues"), int), num(previous.get("n_open_issues"), int)
    metrics: dict[str, Any] = {"previous_run_id": str(previous.get("run_id")), "health_score": h_cur,
                               "previous_health_score": h_prev, "n_open_issues": o_cur,
                               "previous_n_open_issues": o_prev}
    problems = []
    if h_cur is not None and h_prev is not None:
        drop = float(h_prev) - float(h_cur)
        metrics["health_drop"] = round(drop, 6)
        if drop > thresholds.max_health_drop:
            problems.append(f"health score fell {h_prev:.3f} -> {h_cur:.3f} (-{drop:.3f} > "
                            f"{thresholds.max_health_drop:g} allowed)")
    if o_cur is not None and o_prev is not None:
        rise, allowed = int(o_cur) - int(o_prev), max(thresholds.max_open_increase * int(o_prev),
                                                      thresholds.min_open_increase)
        metrics["open_issue_increase"] = rise
        if rise > allowed:
            problems.append(f"open issues rose {int(o_prev)} -> {int(o_cur)} (+{rise} > {allowed:g} allowed)")
    if not problems:
        return Regression(True, "no regression against the previous audit "
                                f"(health {h_prev} -> {h_cur}, open issues {o_prev} -> {o_cur})", causes.iloc[:0],
                          metrics)
    n_ids = causes["example_id"].nunique()
    return Regression(False, "; ".join(problems) + f"; {n_ids} example(s) with new or reopened issues",
                      causes, metrics)


# --------------------------------------------------------------------------------------- presentation

def health_trend_png(history: pd.DataFrame, title: str = "Health score per audit") -> str:
    """Markdown PNG: health score (0-1, high = healthy) per audit, open issues on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dq_pipeline.metadata import png_markdown

    x = np.arange(len(history))
    fig, ax = plt.subplots(figsize=(7, 3))
    if "n_open_issues" in history:
        ax2 = ax.twinx()
        ax2.bar(x, history["n_open_issues"].fillna(0), color="#e45756", alpha=0.3, label="open issues")
        ax2.set_ylabel("open issues")
    ax.plot(x, history["health_score"], marker="o", color="#4c78a8", label="health score")
    ax.set_zorder(3)
    ax.patch.set_visible(False)
    ax.set_ylabel("health score (high = healthy)")
    labels = [pd.Timestamp(t).strftime("%m-%d %H:%M") if pd.notna(t) else "?" for t in history["finished_at"]]
    step = max(1, len(x) // 12)
    ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
    ax.set_title(title)
    return png_markdown(fig, title)


def diff_summary(counts: dict[str, Any]) -> str:
    """One line: '3 new, 1 resolved, 20 persisting, 0 reopened issues; examples +2 -1 ~1'."""
    if counts.get("n_new") is None:
        return "first audit of the dataset: no previous audit to compare with"
    return (f"{counts['n_new']} new, {counts['n_resolved']} resolved, {counts['n_persisting']} persisting, "
            f"{counts['n_reopened']} reopened (example, issue type) pairs; examples {counts['n_added']} added, "
            f"{counts['n_removed']} removed, {counts['n_edited']} edited")


def diff_markdown(counts: dict[str, Any], changes: pd.DataFrame, max_rows: int = 40) -> str:
    """The latest diff as markdown: :func:`diff_summary`, then the changed rows (persisting ones left out)."""
    from dq_pipeline.metadata import markdown_table

    moved = changes[changes["change"] != "persisting"]
    return f"_{diff_summary(counts)}_\n\n" + markdown_table(moved, max_rows=max_rows)


def _cell(value: Any, fmt: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA or value is pd.NaT:
        return "-"
    if fmt:
        return format(float(value), fmt)
    return str(int(value)) if isinstance(value, (int, np.integer, float, np.floating)) else str(value)


def format_history(history: pd.DataFrame, dataset: str) -> str:
    """:func:`audit_history` as a plain-text table for the terminal (oldest first; '-' = not recorded)."""
    columns = [("finished (UTC)", lambda r: pd.Timestamp(r["finished_at"]).strftime("%Y-%m-%d %H:%M:%S")
                if pd.notna(r["finished_at"]) else "-"),
               ("run_id", lambda r: str(r["run_id"])[:8]),
               ("examples", lambda r: _cell(r.get("n_examples"))),
               ("health", lambda r: _cell(r.get("health_score"), ".3f")),
               ("open", lambda r: _cell(r.get("n_open_issues")))]
    columns += [(f"open {issue}", (lambda c: lambda r: _cell(r.get(c)))(col)) for issue, col in OPEN_COUNT_COLUMNS.items()]
    if "expected_error_rate" in history:
        columns.append(("expected error rate", lambda r: _cell(r.get("expected_error_rate"), ".3f")))
    columns += [("added", lambda r: _cell(r.get("n_added"))), ("removed", lambda r: _cell(r.get("n_removed"))),
                ("edited", lambda r: _cell(r.get("n_edited"))), ("new", lambda r: _cell(r.get("n_new"))),
                ("resolved", lambda r: _cell(r.get("n_resolved"))), ("reopened", lambda r: _cell(r.get("n_reopened"))),
                ("detail", lambda r: "pruned" if _cell(r.get("detail_pruned")) not in ("-", "0", "False") else "kept")]
    rows = [[fn(r) for _, fn in columns] for r in history.to_dict("records")]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, (name, _) in enumerate(columns)]
    lines = [f"audit history of {dataset}: {len(history)} audit(s), oldest first; open = examples with an open "
             "issue; new/resolved/reopened count (example, issue type) pairs against the previous audit",
             "  ".join(name.rjust(w) for (name, _), w in zip(columns, widths))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
