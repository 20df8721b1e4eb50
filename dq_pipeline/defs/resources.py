"""Dagster resources: where datasets live, where results go, and every audit setting.

All settings are config fields with documented defaults, editable per run in the launchpad.
"""

from __future__ import annotations

import math
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from dq_pipeline import model, neighbours, store
from dq_pipeline.hardware import PRECISIONS
from dq_pipeline.model import DEFAULT_C, DEFAULT_C_GRID
from dq_pipeline.issues import ambiguous, duplicates, label_issues, outliers
from dq_pipeline.result_cache import ResultCache
from dq_pipeline.runtime import fewer_collections

if TYPE_CHECKING:
    from dq_pipeline.history import RegressionThresholds


class DatasetsResource(dg.ConfigurableResource):
    """Folder holding one sub-folder (with a ``dataset.yaml``) per dataset; folder name = partition key."""

    data_dir: str = Field(default="data", description="Folder of dataset folders")

    def folder(self, dataset: str) -> Path:
        return (Path(self.data_dir) / dataset).resolve()


#: Dagster concurrency pool of the steps that open the DuckDB file (one writer at a time; the instance's
#: ``concurrency.pools.default_limit: 1`` in ``.dagster/dagster.yaml``); every other step of audits of
#: different datasets runs side by side.
DUCKDB_POOL = "duckdb_write"


class CuratedStore(dg.ConfigurableResource):
    """The curated DuckDB file."""

    path: str = Field(default=store.DEFAULT_DB_PATH, description="DuckDB file ($DQ_DUCKDB_PATH overrides)")
    review_url: str = Field(
        default=os.environ.get("DQ_REVIEW_URL", "http://127.0.0.1:8765"),
        description="Where `dq-pipeline review` serves this file ($DQ_REVIEW_URL sets the default); the "
                    "curated asset's metadata links each dataset's review page")

    def review_page(self, dataset: str) -> str:
        from urllib.parse import quote

        return f"{self.review_url.rstrip('/')}/datasets/{quote(dataset)}"


class AuditSettings(dg.ConfigurableResource):
    """How an audit runs: models, cross-validation, detector thresholds and the curation policy."""

    text_model: str = Field(default="all-MiniLM-L6-v2",
                            description="sentence-transformers model name or local path for text")
    image_model: str = Field(default="efficientnet-lite0",
                             description="'efficientnet-lite0' (packaged) or a sentence-transformers CLIP "
                                         "model name/path for images")
    batch_size: int = Field(default=32, description="Embedding batch size")
    embedding_precision: str = Field(
        default=os.environ.get("DQ_EMBEDDING_PRECISION", "auto"), validate_default=True,
        description="Arithmetic of the text and image embedding models: 'float32'; 'bfloat16' (torch CPU "
                    "autocast); 'auto' (default; $DQ_EMBEDDING_PRECISION sets the default) = bfloat16 for text "
                    "models where the CPU multiplies bfloat16 natively (AMX / AVX512-BF16: texts embedded 2.4-2.7x "
                    "faster, bench/results/embed_precision.md), float32 elsewhere and for image models. Part of "
                    "the embedding cache key")
    cache_dir: str = Field(
        default=os.environ.get("DQ_CACHE_DIR", ".cache"),
        description="Cache folder ($DQ_CACHE_DIR sets the default; '' disables): embeddings keyed by content "
                    "and model, and stage results (out-of-fold probabilities, detectors) keyed by inputs, "
                    "settings and code, so re-auditing an unchanged dataset skips the model and the refits")
    n_folds: int = Field(default=model.DEFAULT_N_FOLDS, description="Cross-validation folds (K)")
    seed: int = Field(default=model.DEFAULT_SEED, description="Seed for folds and models")
    model: str = Field(default=model.DEFAULT_MODEL, description=f"Classifier, one of {list(model.MODELS)}")
    c_grid: list[float] = Field(default=list(DEFAULT_C_GRID),
                                description="L2 strengths (sklearn's C) the cross-validation tries at once, keeping "
                                            "the one with the lowest out-of-fold log-loss (fast models; empty: the "
                                            f"model's own C, {DEFAULT_C:g})")
    label_method: str = Field(default=label_issues.DEFAULT_METHOD,
                              description=f"Label-issue method, one of {list(label_issues.METHODS)}: 'ensemble' "
                                          "(default) or 'cleanlab' (cleanlab 2.9's defaults exactly)")
    ambiguity_margin: float = Field(default=ambiguous.DEFAULT_MARGIN,
                                    description="Borderline band around each tag's threshold")
    outlier_neighbors: int = Field(default=outliers.DEFAULT_N_NEIGHBORS, description="k of the k-NN distance")
    outlier_iqr_factor: float = Field(default=outliers.DEFAULT_IQR_FACTOR,
                                      description="Outlier fence of outlier_method 'iqr': Q3 + factor * IQR "
                                                  "of the k-NN distance")
    outlier_method: str = Field(default=outliers.DEFAULT_METHOD,
                                description=f"Outlier flags, one of {list(outliers.METHODS)}: 'calibrated' = robust "
                                            "log-normal fit of the k-NN distances, flag above outlier_z_threshold")
    outlier_z_threshold: float | None = Field(
        default=None,
        description="Calibrated outlier flags: robust standard deviations of the log k-NN distance above its median; "
                    f"empty = per metric {outliers.DEFAULT_Z_THRESHOLDS} (chosen on bench/bench_outliers.py's "
                    "validation datasets)")
    outlier_extra_z_threshold: float = Field(
        default=outliers.DEFAULT_EXTRA_Z_THRESHOLD,
        description="Texts: also flag as outliers texts the embedder cannot read as words (tokenizer pieces per "
                    "word, e.g. base64, another script, a run of one character) this many robust standard "
                    "deviations of its log above its median")
    duplicate_threshold: float = Field(default=duplicates.DEFAULT_THRESHOLD,
                                       description="Near-duplicate cosine distance (embeddings)")
    neighbour_method: str = Field(
        default="auto",
        description="Neighbour graph shared by the kNN detectors (label votes, outliers, near duplicates): "
                    "'exact' (torch brute force, blocks), 'hnsw' (hnswlib HNSW, approximate; its estimated recall "
                    "is in the neighbour_graph asset's metadata) or 'auto' (exact up to "
                    f"{neighbours.AUTO_EXACT_MAX_ROWS:,} rows, hnsw above)")
    exclude_outliers: bool = Field(default=False, description="Curation: exclude flagged outliers")
    keep_one_per_duplicate_group: bool = Field(
        default=False, description="Curation: keep only the first example of each duplicate group")
    tagger_target_precision: float = Field(
        default=0.0, description="Tagger: each tag's decision threshold is the lowest whose out-of-fold "
                                 "precision reaches this (a tag that never does keeps its F1-maximising one); "
                                 "0 = maximise each tag's F1")

    history_keep_audits: int = Field(
        default=10, ge=1,
        description="Retention: keep the per-example rows (examples, predictions, tag_issues, ...) of the last N "
                    "audits per dataset; older audits keep their audit_runs row, class_summary and tag_confusions")
    regression_max_health_drop: float = Field(
        default=0.02, ge=0,
        description="Regression check: fail when the health score (0-1) falls by more than this since the "
                    "previous audit")
    regression_max_open_increase: float = Field(
        default=0.25, ge=0,
        description="Regression check: fail when open issues rise by more than this fraction of the previous "
                    "count (and by more than regression_min_open_increase examples)")
    regression_min_open_increase: int = Field(
        default=5, ge=0, description="Regression check: open-issue rises up to this many examples never fail it")
    regression_blocking: bool = Field(
        default=False,
        description="Regression check severity: False = WARN (the run succeeds, the check shows failed); True = "
                    "ERROR (the run and `dq-pipeline audit` fail; the audit is still written, for inspection)")

    @field_validator("c_grid")
    @classmethod
    def _positive_grid(cls, value: list[float]) -> list[float]:
        bad = [v for v in value if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"c_grid: every L2 strength C must be a positive number, got {bad} in {value}")
        return value

    @field_validator("model", "label_method", "outlier_method", "neighbour_method", "embedding_precision")
    @classmethod
    def _known_choice(cls, value: str, info: ValidationInfo) -> str:
        choices = {"model": model.MODELS, "label_method": label_issues.METHODS, "outlier_method": outliers.METHODS,
                   "neighbour_method": neighbours.METHODS, "embedding_precision": PRECISIONS}[info.field_name]
        if value not in choices:
            raise ValueError(f"{info.field_name} must be one of {list(choices)}, got {value!r}")
        return value

    def regression_thresholds(self) -> RegressionThresholds:
        """The regression check's thresholds from these settings."""
        from dq_pipeline.history import RegressionThresholds

        return RegressionThresholds(self.regression_max_health_drop, self.regression_max_open_increase,
                                    self.regression_min_open_increase)

    def result_cache(self) -> ResultCache | None:
        """Cache of stage results and gate verdicts under ``<cache_dir>/results`` (None when disabled)."""
        return ResultCache(Path(self.cache_dir) / "results") if self.cache_dir else None

    _run_scope: ExitStack = PrivateAttr(default_factory=ExitStack)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Start of a run (per process: once per run with the in-process executor, CLI and UI alike): the
        cyclic GC runs with :data:`dq_pipeline.runtime.AUDIT_GC_THRESHOLDS` until :meth:`teardown_after_execution`."""
        self._run_scope.enter_context(fewer_collections())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """End of the run: the GC thresholds the process had before it."""
        self._run_scope.close()


class RaySettings(dg.ConfigurableResource):
    """Where the ``features`` asset embeds: in-process (default, ``address`` empty) or sharded across a
    Ray actor pool (:mod:`dq_pipeline.embed.distributed`; needs ``pip install 'dq_pipeline[ray]'``).
    Same model, preprocessing and vectors either way; the embedding cache is shared."""

    address: str = Field(
        default=os.environ.get("DQ_RAY_ADDRESS", ""),
        description="'' = embed in-process (default); 'local' = start a local Ray for the step; 'auto' or "
                    "'ray://host:10001' = join a running cluster ($DQ_RAY_ADDRESS sets the default)")
    num_workers: int = Field(default=int(os.environ.get("DQ_RAY_WORKERS", "2")),
                             description="Actors in the pool; each loads the model once ($DQ_RAY_WORKERS)")
    rows_per_batch: int = Field(default=1024, description="Rows per block = per map_batches call = per Parquet shard")
    cpus_per_worker: float = Field(default=1.0, description="CPUs each actor reserves (its torch threads)")
    gpus_per_worker: float = Field(default=0.0, description="GPUs each actor reserves (0 = CPU only)")
    shard_dir: str = Field(
        default="", description="Folder for the Parquet shards (a folder every worker and the driver see on "
                                "a cluster); '' = the system's temporary folder. Removed after reading")

    @property
    def enabled(self) -> bool:
        return bool(self.address.strip())

    def options(self) -> "RayOptions":
        """The :class:`~dq_pipeline.embed.distributed.RayOptions` of these settings."""
        from dq_pipeline.embed.distributed import RayOptions

        return RayOptions(address=self.address.strip(), num_workers=self.num_workers,
                          rows_per_batch=self.rows_per_batch, cpus_per_worker=self.cpus_per_worker,
                          gpus_per_worker=self.gpus_per_worker)
