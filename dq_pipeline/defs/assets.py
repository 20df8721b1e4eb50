"""The audit graph, one partition per dataset. Each asset wires a core function and attaches metadata."""


import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import numpy as np
import pandas as pd

from dq_pipeline import model as cv
from dq_pipeline import result_cache
from dq_pipeline import store
from dq_pipeline.curate import CurationPolicy, audit_tables
from dq_pipeline.defs.partitions import dataset_partitions
from dq_pipeline.defs.resources import DUCKDB_POOL, AuditSettings, CuratedStore, DatasetsResource, RaySettings
from dq_pipeline.export import source_digest
from dq_pipeline.ingest import load_examples, tags_matrix
from dq_pipeline.issues.base import DetectorResult
from dq_pipeline.manifest import DatasetManifest, load_manifest
from dq_pipeline.metadata import detector_metadata, markdown_table
from dq_pipeline.neighbours import NeighbourGraph

GROUP = "audit"
T = TypeVar("T")


@dataclass(frozen=True)
class RawDataset:
    """Output of ``raw_examples``: the manifest and what ingestion kept and quarantined."""

    manifest: DatasetManifest
    examples: pd.DataFrame
    quarantine: pd.DataFrame
    classes: list[str]
    n_input_rows: int
    started_at: datetime
    source_sha256: str  # of the bytes ingested (export refuses a source that changed since)

    @property
    def Y(self) -> np.ndarray:
        """(N, K) uint8 given tags; raises ValueError on a tag outside ``classes`` (the gate reports it first)."""
        return tags_matrix(self.examples["tags"], self.classes)

    @cached_property
    def fingerprint(self) -> str:
        """Content key of what downstream stages read: the examples, classes and modality."""
        return result_cache.fingerprint(self.examples, self.classes, self.manifest.modality)


@dataclass(frozen=True)
class Features:
    """(N, D) float feature matrix, rows aligned with ``example_ids``; ``metric`` suits the geometry."""

    example_ids: list[str]
    X: np.ndarray
    metric: str
    exact_keys: list[str]

    @cached_property
    def fingerprint(self) -> str:
        """Content key of the features: the matrix bytes, metric and exact-duplicate keys."""
        return result_cache.fingerprint(self.X, self.metric, self.exact_keys)


@dataclass(frozen=True)
class Predictions:
    """Out-of-fold probabilities P (N, K) for given tags Y (N, K) in ``classes`` order."""

    example_ids: list[str]
    classes: list[str]
    Y: np.ndarray
    P: np.ndarray
    folds: np.ndarray
    auroc: np.ndarray

    @cached_property
    def fingerprint(self) -> str:
        """Content key of the predictions: P, Y and the tag order."""
        return result_cache.fingerprint(self.P, self.Y, self.classes)


def _progress(context: dg.AssetExecutionContext, stage: str, unit: str) -> Callable[[int, int], None]:
    """Progress of a long stage in the run's log (and the CLI): done / total, rate, time left."""
    from dq_pipeline.progress import throttled

    return throttled(context.log.info, stage, unit)


def reuse(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, settings: AuditSettings, stage: str,
    key_parts: list[Any], compute: Callable[[], T],
) -> tuple[T, str, bool]:
    """``(value, key, hit)``: the stage's result for these inputs and settings from the result cache
    under ``<cache_dir>/results`` (key = stage, code version and ``key_parts``), else ``compute()``."""
    key = result_cache.fingerprint(stage, result_cache.code_version(), *key_parts)
    value, hit = result_cache.cached(settings.result_cache(), stage, key, compute)
    if hit:
        context.log.info(f"{stage}: inputs, settings and code unchanged; reused cached result {key[:12]}")
    return value, key, hit


def _detector(
    context: dg.AssetExecutionContext, settings: AuditSettings, stage: str, key_parts: list[Any],
    compute: Callable[[], tuple[DetectorResult, dict[str, Any]]],
) -> DetectorResult:
    """Run (or reuse) a detector and its UI metadata (tables, plots), attach the metadata, return it."""
    started = time.perf_counter()
    (result, meta), key, hit = reuse(context, settings, stage, key_parts, compute)
    context.add_output_metadata({**meta, **cache_metadata(key, hit, started)})
    return result


def cache_metadata(key: str, hit: bool, started: float) -> dict[str, Any]:
    """Step metadata: whether the result came from the cache, its key prefix, seconds since ``started``."""
    return {"cache_hit": hit, "cache_key": key[:12], "seconds": round(time.perf_counter() - started, 3)}


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, kinds={"python", "pandas"})
def raw_examples(
    context: dg.AssetExecutionContext, datasets: DatasetsResource, curated_store: CuratedStore
) -> RawDataset:
    """Ingest the dataset's source file as its dataset.yaml describes: stable example ids, parsed
    tags, and the payload (text, image path or feature columns). Unusable rows (null id, empty text,
    missing/unreadable/truncated image) are set aside in quarantine with their row number and reason.
    First checks that the DuckDB file can be written (not read-only, not locked by another process),
    so an audit never computes for minutes to fail at the write."""
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    try:
        store.check_writable(curated_store.path)
    except store.StoreError as exc:
        raise dg.Failure(description=f"cannot write the audit: {exc}") from exc
    manifest = load_manifest(datasets.folder(context.partition_key))
    digest = source_digest(manifest)
    result = load_examples(manifest, progress=_progress(context, f"reading {manifest.source.name}", "cells"))
    if source_digest(manifest) != digest:
        raise dg.Failure(description=f"{manifest.source} changed while it was being read; audit it again")
    context.log.info(
        f"{manifest.name}: {result.n_input_rows} rows read from {manifest.source}, "
        f"{len(result.examples)} examples, {len(result.quarantine)} quarantined"
    )
    preview = result.examples.drop(columns=["image_path"], errors="ignore").head(10)
    context.add_output_metadata({
        "source": str(manifest.source),
        "modality": manifest.modality,
        "n_input_rows": result.n_input_rows,
        "n_examples": len(result.examples),
        "n_quarantined": len(result.quarantine),
        "classes": ", ".join(result.classes),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
        "quarantine": dg.MetadataValue.md(markdown_table(result.quarantine.head(20))),
    })
    raw = RawDataset(manifest, result.examples, result.quarantine, result.classes, result.n_input_rows, started,
                     digest)
    context.add_output_metadata({"content_key": raw.fingerprint[:12]})  # computed once, stored with the output
    return raw


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, kinds={"python", "torch"})
def features(
    context: dg.AssetExecutionContext, raw_examples: RawDataset, settings: AuditSettings, ray: RaySettings
) -> Features:
    """Per-example features: sentence-transformers embeddings for text, pretrained-CNN (or CLIP) image
    embeddings, or a scaled/one-hot/imputed ColumnTransformer matrix for tabular rows. The models run in the
    ``embedding_precision`` setting's arithmetic (metadata ``precision``: bfloat16 for text on CPUs that multiply
    it natively, by default). Embeddings are cached by content, model and precision, so an unchanged dataset
    skips the model on re-audit. With the ``ray``
    resource's ``address`` set, the rows are sharded across a Ray actor pool (same vectors)."""
    from dq_pipeline.embed import resolved_precision
    from dq_pipeline.embed.cache import EmbeddingCache, file_keys
    from dq_pipeline.issues.duplicates import text_key

    ex = raw_examples.examples
    modality = raw_examples.manifest.modality
    cache = EmbeddingCache(Path(settings.cache_dir) / "embeddings") if settings.cache_dir else None
    t0 = time.perf_counter()
    if ray.enabled:
        X, metric, keys, model_name = _features_on_ray(context, ex, modality, settings, ray, cache)
    elif modality == "text":
        from dq_pipeline.embed.text import embed_texts_cached

        X = embed_texts_cached(list(ex["text"]), settings.text_model, cache, batch_size=settings.batch_size,
                               precision=settings.embedding_precision,
                               progress=_progress(context, "text embeddings", "texts"))
        metric, keys, model_name = "cosine", [text_key(t) for t in ex["text"]], settings.text_model
    elif modality == "image":
        from dq_pipeline.embed.image import embed_images_cached

        X = embed_images_cached(list(ex["image_path"]), settings.image_model, cache,
                                batch_size=settings.batch_size, precision=settings.embedding_precision,
                                progress=_progress(context, "image embeddings", "images"))
        keys = file_keys(settings.image_model, list(ex["image_path"]))  # same bytes <=> same key
        metric, model_name = "cosine", settings.image_model
    else:
        from dq_pipeline.embed.tabular import featurize_tabular, row_keys

        columns = [c for c in ex.columns if c not in ("example_id", "row_number", "tags")]
        X = featurize_tabular(ex, columns)
        metric, keys, model_name = "euclidean", row_keys(X), "ColumnTransformer"  # = row_key of each row
    elapsed = time.perf_counter() - t0
    context.add_output_metadata({
        "model": model_name,
        "precision": resolved_precision(settings.embedding_precision, modality),
        "shape": f"{X.shape[0]} x {X.shape[1]}",
        "seconds": round(elapsed, 2),
        "examples_per_second": round(X.shape[0] / elapsed, 1) if elapsed > 0 else None,
    })
    feats = Features(list(ex["example_id"]), np.asarray(X), metric, keys)
    context.add_output_metadata({"content_key": feats.fingerprint[:12]})
    return feats


def _features_on_ray(
    context: dg.AssetExecutionContext, ex: pd.DataFrame, modality: str, settings: AuditSettings,
    ray: RaySettings, cache: Any,
) -> tuple[np.ndarray, str, list[str], str]:
    """``(X, metric, exact_keys, model)`` of ``features``, embedded on the Ray actor pool of ``ray``."""
    from dq_pipeline.embed import distributed
    from dq_pipeline.embed.cache import file_keys
    from dq_pipeline.issues.duplicates import row_key, text_key

    options, stats = ray.options(), {}
    where = f"ray {options.address}, {options.num_workers} workers"
    kw = {"options": options, "shard_dir": ray.shard_dir or None, "stats": stats}
    if modality == "tabular":
        columns = [c for c in ex.columns if c not in ("example_id", "row_number", "tags")]
        X = distributed.featurize_tabular_distributed(
            ex, columns, progress=_progress(context, f"tabular features ({where})", "rows"), **kw)
        metric, keys, model_name = "euclidean", [row_key(r) for r in X], "ColumnTransformer"
    else:
        column, model_name = ("text", settings.text_model) if modality == "text" else ("image_path", settings.image_model)
        unit = "texts" if modality == "text" else "images"
        X = distributed.embed_cached_distributed(
            list(ex[column]), modality, model_name, cache, batch_size=settings.batch_size,
            precision=settings.embedding_precision,
            progress=_progress(context, f"{modality} embeddings ({where})", unit), **kw)
        metric = "cosine"
        keys = [text_key(t) for t in ex["text"]] if modality == "text" else file_keys(model_name, list(ex[column]))
    if stats:
        context.add_output_metadata({"ray_workers": stats["workers"], "ray_shards": stats["shards"],
                                     "ray_rows_per_worker": str(stats["rows_per_worker"])})
    return X, metric, keys, model_name


def _c_grid(settings: AuditSettings) -> tuple[float, ...] | None:
    """The settings' ``c_grid`` for the cross-validation: None (the model's own C) when empty or for 'logreg'."""
    return tuple(settings.c_grid) if settings.c_grid and settings.model in cv.FAST_MODELS else None


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, kinds={"python", "scikitlearn"})
def oof_probabilities(
    context: dg.AssetExecutionContext, raw_examples: RawDataset, features: Features, settings: AuditSettings
) -> Predictions:
    """Out-of-fold probability for every (example, tag): K multilabel-stratified folds
    (iterative-stratification); each example is predicted by a model that never saw it.
    Default model: 'fast_logreg' (L2 logistic regression for all tags at once), its L2 strength chosen from
    the setting ``c_grid`` by out-of-fold log-loss. Records the chosen C and the per-tag out-of-fold AUROC.
    Reused from the result cache when features, tags, settings and code are unchanged."""
    Y = raw_examples.Y
    started = time.perf_counter()
    if settings.c_grid and _c_grid(settings) is None:
        context.log.warning(f"c_grid {settings.c_grid} is ignored: model '{settings.model}' uses its own C "
                            f"(the grid applies to the fast models {list(cv.FAST_MODELS)})")
    oof, key, hit = reuse(
        context, settings, "oof_probabilities",
        [features.fingerprint, Y, settings.n_folds, settings.seed, settings.model, _c_grid(settings)],
        lambda: cv.out_of_fold_probabilities(features.X, Y, settings.n_folds, settings.seed, settings.model,
                                             progress=_progress(context, "cross-validation folds", "folds"),
                                             note=context.log.info, C_grid=_c_grid(settings)),
    )
    auroc = pd.DataFrame({"tag": raw_examples.classes, "n_given": Y.sum(axis=0), "oof_auroc": oof.auroc.round(4)})
    context.add_output_metadata({
        "n_folds": settings.n_folds,
        "model": settings.model,
        "C": oof.C,
        "C_log_loss": dg.MetadataValue.md(markdown_table(pd.DataFrame(
            {"C": list(oof.C_log_loss), "oof_log_loss": [round(v, 5) for v in oof.C_log_loss.values()]}))),
        "mean_oof_auroc": float(np.nanmean(oof.auroc)) if np.isfinite(oof.auroc).any() else None,
        "per_tag_auroc": dg.MetadataValue.md(markdown_table(auroc)),
        **cache_metadata(key, hit, started),
    })
    preds = Predictions(features.example_ids, raw_examples.classes, Y, oof.probabilities, oof.folds, oof.auroc)
    context.add_output_metadata({"content_key": preds.fingerprint[:12]})
    return preds


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, kinds={"python", "numpy"})
def neighbour_graph(context: dg.AssetExecutionContext, features: Features, settings: AuditSettings) -> NeighbourGraph:
    """Each example's k nearest other examples in feature space (cosine for embeddings, euclidean for
    tabular features), searched once per audit and read by the label-issue votes, the outliers and the near
    duplicates. Exact (torch brute force in blocks) up to a size, HNSW (approximate, with its measured
    recall) above; setting ``neighbour_method``."""
    from dq_pipeline.issues.label_issues import DEFAULT_N_NEIGHBORS
    from dq_pipeline.neighbours import build_neighbour_graph

    k = max(DEFAULT_N_NEIGHBORS, settings.outlier_neighbors)
    started = time.perf_counter()
    graph, key, hit = reuse(
        context, settings, "neighbour_graph", [features.fingerprint, k, settings.neighbour_method, settings.seed],
        lambda: build_neighbour_graph(features.X, k=k, metric=features.metric, method=settings.neighbour_method,
                                      progress=_progress(context, "neighbour graph", "rows"), seed=settings.seed),
    )
    context.add_output_metadata({
        "method": graph.method,
        "k": graph.k,
        "metric": graph.metric,
        "recall": round(graph.recall, 4) if graph.recall is not None else None,
        "build_seconds": round(graph.seconds, 2),
        "median_nearest_distance": float(np.median(graph.distances[:, 0])) if graph.k else None,
        **cache_metadata(key, hit, started),
    })
    return graph


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP)
def label_issues(
    context: dg.AssetExecutionContext, oof_probabilities: Predictions, raw_examples: RawDataset,
    settings: AuditSettings, neighbour_graph: NeighbourGraph,
) -> DetectorResult:
    """Label quality per example (0-1, low = likely wrong), the expected share of wrongly tagged examples
    (with a 90% interval), about that many flagged examples (the lowest scores) and a suggested tag set for
    each, kept within the label rules learned from the tags (exclusive groups, never empty, implications).
    Default method 'ensemble' (out-of-fold probabilities + tag co-occurrence + nearest-neighbour tags,
    cross-fitted); 'cleanlab' reproduces cleanlab 2.9 exactly."""
    from dq_pipeline.issues.label_issues import find_label_issues

    p = oof_probabilities

    def compute() -> tuple[DetectorResult, dict[str, Any]]:
        result = find_label_issues(p.Y, p.P, neighbours=neighbour_graph.indices, method=settings.label_method,
                                   seed=settings.seed, progress=_progress(context, "second-stage fits", "fits"),
                                   stage_progress=lambda stage, unit: _progress(context, stage, unit))
        return result, {**detector_metadata("label_issues", result, raw_examples, p),
                        **label_rules_metadata(result, p)}

    return _detector(context, settings, "label_issues",
                     [p.fingerprint, raw_examples.fingerprint, settings.label_method,
                      settings.seed, neighbour_graph.fingerprint], compute)


def label_rules_metadata(result: DetectorResult, preds: Predictions) -> dict[str, Any]:
    """Metadata of the label_issues asset: expected error rate (+ interval) and the learned label rules."""
    from dq_pipeline.rules import LabelRules

    s = result.summary
    meta: dict[str, Any] = {}
    if "expected_error_rate" in s:
        lo, hi = s["expected_error_rate_interval"]
        meta["expected_error_rate"] = round(float(s["expected_error_rate"]), 4)
        meta["expected_error_rate_interval"] = f"{lo:.3f} - {hi:.3f} (90% bootstrap)"
        meta["n_rule_violations"] = int(s.get("n_rule_violations", 0))
    if s.get("label_rules"):
        rules = LabelRules.from_dict(s["label_rules"])
        table = rules.table(preds.classes, preds.Y).drop(columns=["tags"])
        meta["n_label_rules"] = len(table)
        meta["label_rules"] = dg.MetadataValue.md(markdown_table(table, floatfmt=".3g") if len(table)
                                                  else "_No rule learned from the given tags._")
    return meta


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP)
def ambiguous_examples(
    context: dg.AssetExecutionContext, oof_probabilities: Predictions, raw_examples: RawDataset,
    settings: AuditSettings,
) -> DetectorResult:
    """Examples whose tags the model cannot decide: borderline probabilities on a tag, or between two
    co-occurring tags (0-1, low = ambiguous). An ambiguous example may be labelled right and still
    need a human decision."""
    from dq_pipeline.issues.ambiguous import find_ambiguous

    p = oof_probabilities

    def compute() -> tuple[DetectorResult, dict[str, Any]]:
        result = find_ambiguous(p.P, p.Y, margin=settings.ambiguity_margin)
        return result, detector_metadata("ambiguous", result, raw_examples, p)

    return _detector(context, settings, "ambiguous_examples",
                     [p.fingerprint, raw_examples.fingerprint, settings.ambiguity_margin], compute)


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP)
def outliers(
    context: dg.AssetExecutionContext, features: Features, raw_examples: RawDataset,
    oof_probabilities: Predictions, settings: AuditSettings, neighbour_graph: NeighbourGraph,
) -> DetectorResult:
    """Examples far from the rest in feature space: mean distance to the k nearest neighbours
    (cosine for embeddings, euclidean for standardised tabular features; from the neighbour graph);
    texts also by how far the embedder's tokenizer is from reading them as words (pieces per word);
    0-1, low = outlier."""
    from dq_pipeline.issues.outliers import find_outliers

    text = raw_examples.manifest.modality == "text"

    def compute() -> tuple[DetectorResult, dict[str, Any]]:
        extra = None
        if text:
            from dq_pipeline.embed.text import pieces_per_word

            extra = pieces_per_word(list(raw_examples.examples["text"]), settings.text_model)
        result = find_outliers(features.X, n_neighbors=settings.outlier_neighbors, metric=features.metric,
                               method=settings.outlier_method, z_threshold=settings.outlier_z_threshold,
                               iqr_factor=settings.outlier_iqr_factor, graph=neighbour_graph, extra=extra,
                               extra_z_threshold=settings.outlier_extra_z_threshold, extra_name="pieces_per_word")
        return result, detector_metadata("outliers", result, raw_examples, oof_probabilities)

    return _detector(context, settings, "outliers",
                     [features.fingerprint, raw_examples.fingerprint, oof_probabilities.fingerprint,
                      settings.outlier_neighbors, settings.outlier_iqr_factor, settings.outlier_method,
                      settings.outlier_z_threshold, neighbour_graph.fingerprint,
                      ("pieces_per_word", settings.text_model, settings.outlier_extra_z_threshold) if text else None],
                     compute)


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP)
def near_duplicates(
    context: dg.AssetExecutionContext, features: Features, raw_examples: RawDataset,
    oof_probabilities: Predictions, settings: AuditSettings, neighbour_graph: NeighbourGraph,
) -> DetectorResult:
    """Groups of (almost) the same item: exact duplicates (same file bytes, normalised text or feature
    row) and near ones (embedding distance, from the neighbour graph; rows with more near neighbours than
    the graph holds get an exact radius search). A group whose members carry different tags is a conflict."""
    from dq_pipeline.issues.duplicates import find_near_duplicates

    def compute() -> tuple[DetectorResult, dict[str, Any]]:
        near = features.metric == "cosine"  # tabular rows: exact duplicates only
        result = find_near_duplicates(features.X, oof_probabilities.Y, exact_keys=features.exact_keys,
                                      threshold=settings.duplicate_threshold, metric=features.metric, near=near,
                                      graph=neighbour_graph if near else None)
        return result, detector_metadata("near_duplicates", result, raw_examples, oof_probabilities)

    return _detector(context, settings, "near_duplicates",
                     [features.fingerprint, raw_examples.fingerprint, oof_probabilities.fingerprint,
                      settings.duplicate_threshold, neighbour_graph.fingerprint], compute)


@dg.asset(partitions_def=dataset_partitions, group_name=GROUP, kinds={"duckdb"}, pool=DUCKDB_POOL)
def curated(
    context: dg.AssetExecutionContext,
    raw_examples: RawDataset,
    features: Features,
    oof_probabilities: Predictions,
    label_issues: DetectorResult,
    ambiguous_examples: DetectorResult,
    outliers: DetectorResult,
    near_duplicates: DetectorResult,
    settings: AuditSettings,
    curated_store: CuratedStore,
) -> dict:
    """Write every table of this audit to DuckDB in one transaction (audit_runs, examples, tag_issues,
    predictions, class_summary, quarantine, curated_labels, ...). Refuses to write when any gate fails
    on its inputs (gates that passed in this same run are not repeated), so a previous good audit stays
    the latest."""
    from dq_pipeline.defs.checks import gates_passed_in_run, run_gates

    passed_here = gates_passed_in_run(context.instance, context.run_id)
    gates = run_gates(raw_examples, features, oof_probabilities, settings.n_folds, skip=passed_here)
    failed = [g for g in gates if not g.success]
    if failed:
        raise dg.Failure(
            description="refusing to write: " + " | ".join(g.describe() for g in failed),
            metadata={"failed_gates": [g.gate for g in failed]},
        )
    manifest = raw_examples.manifest
    try:  # the dataset's review decisions: valid ones are applied and close their examples' issues
        reviews = store.read_reviews(curated_store.path, manifest.name)
    except store.StoreError as exc:
        raise dg.Failure(description=f"cannot read the review decisions: {exc}") from exc
    tables, counters = audit_tables(
        raw_examples.examples, raw_examples.quarantine, raw_examples.classes, manifest.modality,
        oof_probabilities.Y, oof_probabilities.P, oof_probabilities.auroc,
        label_issues, ambiguous_examples, outliers, near_duplicates,
        CurationPolicy(settings.exclude_outliers, settings.keep_one_per_duplicate_group),
        reviews=reviews,
    )
    run = {
        "run_id": context.run_id,
        "dataset": manifest.name,
        "started_at": raw_examples.started_at,
        "finished_at": datetime.now(timezone.utc).replace(tzinfo=None),
        "status": "success",
        "modality": manifest.modality,
        "source": str(manifest.source),
        "n_input_rows": raw_examples.n_input_rows,
        "source_sha256": raw_examples.source_sha256,
        "folder": str(Path(manifest.folder).resolve()),
        **counters,
        "config": settings.model_dump(),
    }
    diff = _diff_with_previous(curated_store.path, manifest.name, tables, run, reviews)
    store.write_audit(curated_store.path, run, tables, progress=_progress(context, "DuckDB write", "rows"))
    try:  # retention; the audit is written either way
        pruned = store.prune_history(curated_store.path, manifest.name, settings.history_keep_audits)
    except store.StoreError as exc:
        context.log.warning(f"audit written; pruning older audits' detail failed (retried after the next "
                            f"audit): {exc}")
        pruned = []
    summary = {k: run[k] for k in ("dataset", "run_id", "n_input_rows", "n_examples", "n_quarantined",
                                   "n_label_issues", "n_ambiguous", "n_outliers", "n_near_duplicates",
                                   "health_score")}
    context.add_output_metadata({
        **{k: v for k, v in summary.items() if k != "run_id"},
        "n_open_issues": run.get("n_open_issues"),
        "review": dg.MetadataValue.url(curated_store.review_page(manifest.name)),
        "duckdb": str(Path(curated_store.path).resolve()),
        "gates_rerun": len(gates),
        "class_summary": dg.MetadataValue.md(markdown_table(tables["class_summary"])),
        "top_confusions": dg.MetadataValue.md(markdown_table(tables["tag_confusions"])),
        **_history_metadata(curated_store.path, manifest.name, diff, pruned),
    })
    return summary


def _diff_with_previous(db_path: str, dataset: str, tables: dict[str, pd.DataFrame], run: dict[str, Any],
                        reviews: pd.DataFrame) -> Any:
    """Diff this audit against the previous successful one of ``dataset`` (:func:`dq_pipeline.history.diff_audits`):
    adds ``examples.decided_action``, the tables ``audit_changes`` and ``example_changes`` and the audit_runs
    counts (``previous_run_id``, n_new ... n_edited, open issues per type) to ``tables`` / ``run``."""
    from dq_pipeline import history
    from dq_pipeline.curate import valid_reviews

    examples = tables["examples"]
    decisions = valid_reviews(reviews, examples["example_id"].tolist(), examples["content_key"].tolist(),
                              [list(t) for t in examples["given_labels"]])
    examples["decided_action"] = [d["action"] if d else None for d in decisions]
    try:
        previous_run, previous_examples = history.read_previous(db_path, dataset)
    except store.StoreError as exc:
        raise dg.Failure(description=f"cannot read the previous audit of {dataset}: {exc}") from exc
    diff = history.diff_audits(previous_examples, examples, (previous_run or {}).get("config"), run["config"])
    previous_run_id = previous_run["run_id"] if previous_examples is not None else None
    tables["audit_changes"] = diff.changes.assign(previous_run_id=previous_run_id)
    tables["example_changes"] = diff.example_changes.assign(previous_run_id=previous_run_id)
    run.update(diff.counts, previous_run_id=previous_run_id)
    return diff


def _history_metadata(db_path: str, dataset: str, diff: Any, pruned: list[str]) -> dict[str, Any]:
    """``curated`` metadata of the audit history: the health trend plot, the diff counts and table."""
    from dq_pipeline import history

    trend = history.audit_history(db_path, dataset)
    return {
        **{k: diff.counts.get(k) for k in history.COUNT_COLUMNS},
        "health_trend": dg.MetadataValue.md(history.health_trend_png(trend, f"{dataset}: health per audit")),
        "latest_diff": dg.MetadataValue.md(history.diff_markdown(diff.counts, diff.changes)),
        "audits_pruned_now": len(pruned),
    }


AUDIT_ASSETS = [raw_examples, features, oof_probabilities, label_issues, ambiguous_examples, outliers,
                near_duplicates, curated, neighbour_graph]


# ------------------------------------------------------------------------------------------- tagger

TAGGER_GROUP = "tagger"


@dg.asset(partitions_def=dataset_partitions, group_name=TAGGER_GROUP, kinds={"python", "scikitlearn"},
          pool=DUCKDB_POOL)
def tagger(
    context: dg.AssetExecutionContext, curated: dict, raw_examples: RawDataset, features: Features,
    settings: AuditSettings, curated_store: CuratedStore,
) -> dict:
    """A tagger for new data, trained on this audit's curated labels (review decisions applied, excluded
    examples left out): the audit's features and classifier, one decision threshold per tag tuned on
    5-fold out-of-fold predictions (maximum F1, or ``tagger_target_precision``). Saved as
    ``<DuckDB file>.models/<dataset>/<run_id>/`` (weights.npz + model_card.json) and named in
    ``<dataset>/LATEST``; ``dq-pipeline predict DATASET INPUT`` applies it."""
    from dq_pipeline import tagger as tg
    from dq_pipeline.export import _latest_decisions, apply_reviews

    manifest = raw_examples.manifest
    run_id = str(curated["run_id"])
    try:
        labels = store.read_latest(curated_store.path, "curated_labels", manifest.name)
        labels = labels[labels["run_id"] == run_id]
        labels = apply_reviews(labels, _latest_decisions(curated_store.path, manifest.name, run_id))
    except store.StoreError as exc:
        raise dg.Failure(description=f"cannot read the curated labels: {exc}") from exc
    if labels.empty:
        raise dg.Failure(description=f"{curated_store.path} holds no curated labels of audit {run_id} of "
                                     f"{manifest.name!r} as the latest audit (another audit finished since?); "
                                     "re-run the audit and the tagger together (job train_tagger)")
    row_of = {e: i for i, e in enumerate(features.example_ids)}
    kept = labels[~labels["excluded"].astype(bool)]
    unknown = [e for e in kept["example_id"] if str(e) not in row_of]
    if unknown:
        raise dg.Failure(description=f"curated example {unknown[0]!r} of audit {run_id} has no features in this "
                                     "run; re-run the audit and the tagger together (job train_tagger)")
    rows = np.array([row_of[str(e)] for e in kept["example_id"]], dtype=np.int64)
    classes = raw_examples.classes
    try:
        Y = tags_matrix(kept["labels"], classes)
        target = settings.tagger_target_precision or None
        trained = tg.train_tagger(features.X[rows], Y, classes, model=settings.model, n_folds=settings.n_folds,
                                  seed=settings.seed, target_precision=target, C_grid=_c_grid(settings))
    except ValueError as exc:
        raise dg.Failure(description=f"cannot train a tagger for {manifest.name!r}: {exc}") from exc
    given = {str(e): set(t) for e, t in zip(raw_examples.examples["example_id"], raw_examples.examples["tags"])}
    card = tg.dataset_card(manifest, raw_examples.examples, settings.text_model, settings.image_model,
                           settings.embedding_precision)
    if manifest.modality == "tabular":
        rebuilt = tg.tabular_features(card["tabular"], raw_examples.examples)
        if rebuilt.shape != features.X.shape or not np.allclose(rebuilt, features.X, atol=1e-8):
            raise dg.Failure(description="the stored tabular feature spec does not reproduce the audit's features")
    n_changed = sum(set(t) != given.get(str(e), set()) for e, t in zip(kept["example_id"], kept["labels"]))
    trained.card.update({**card, "training": {
        "audit_run_id": run_id, "n_examples": int(len(labels)), "n_excluded": int(len(labels) - len(kept)),
        "n_labels_changed": int(n_changed), "settings": settings.model_dump()}})
    folder = tg.save_tagger(trained, tg.models_root(curated_store.path), manifest.name, run_id)
    metrics = trained.card["metrics"]
    table = pd.DataFrame(metrics["per_tag"])[["tag", "n_positive", "threshold", "oof_precision", "oof_recall",
                                              "oof_f1", "oof_auroc"]].round(4)
    context.add_output_metadata({
        "path": dg.MetadataValue.path(str(folder.resolve())),
        "audit_run_id": run_id,
        "n_train": trained.card["n_train"],
        "n_excluded": int(len(labels) - len(kept)),
        "n_labels_changed": int(n_changed),
        "threshold_rule": trained.card["threshold_rule"],
        "oof_micro_f1": round(metrics["oof_micro_f1"], 4),
        "oof_macro_f1": round(metrics["oof_macro_f1"], 4),
        "thresholds": dg.MetadataValue.md(markdown_table(table)),
    })
    return {"dataset": manifest.name, "run_id": run_id, "path": str(folder.resolve()),
            "oof_micro_f1": metrics["oof_micro_f1"], "oof_macro_f1": metrics["oof_macro_f1"]}


TAGGER_ASSETS = [tagger]

tagger_job = dg.define_asset_job(
    "train_tagger",
    selection=dg.AssetSelection.groups(GROUP, TAGGER_GROUP),
    partitions_def=dataset_partitions,
    description="The audit of one dataset partition, then a tagger trained on its curated labels "
                "(`dq-pipeline predict` applies it to new data).",
)
