"""Embeddings sharded across a Ray actor pool (Ray Data ``map_batches``), results in Parquet shards.

When one machine is outgrown, the dominant cost of an audit — the embedding model — runs on a Ray
cluster: the rows are cut into blocks of ``rows_per_batch``, a fixed-size pool of ``num_workers`` actors
(``ray.data.ActorPoolStrategy(size=num_workers)``) each loads the shipped embedder **once** and runs
the very functions the in-process path runs (:func:`dq_pipeline.embed.text.embed_texts`,
:func:`dq_pipeline.embed.image.embed_images`, or the tabular ColumnTransformer fitted on the driver),
and writes each block's vectors to one Parquet file ``part-<first row>.parquet`` (columns ``row``
BIGINT, ``vector`` FLOAT[D] / DOUBLE[D]). The driver reports progress as blocks finish, then reads the
shards back with DuckDB into row order (one shard at a time) and checks that every row came back
exactly once.

Addresses: ``"local"`` starts a local Ray with ``num_workers * cpus_per_worker`` CPUs for this call
(and shuts it down after); ``"auto"`` or ``"ray://host:10001"`` joins a running cluster (whose workers
must have this package installed and see ``shard_dir`` — a shared folder — and the image files). A
Ray already initialised in this process (``ray.init`` by the caller) is used as it is.

Ray is an optional dependency (``pip install 'dq_pipeline[ray]'``); it is imported only here, lazily.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dq_pipeline.runtime import keep_signal_handlers

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: ``address`` value that starts a local Ray for the call.
LOCAL = "local"
_ROW = "_dq_row"  # the row-position column of the blocks handed to the actors


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the embedding runs.

    address : ``"local"`` (start a local Ray), ``"auto"`` / ``"ray://host:port"`` (join a cluster).
    num_workers : actors in the pool; each loads the model once.
    rows_per_batch : rows per block = per ``map_batches`` call = per Parquet shard.
    cpus_per_worker, gpus_per_worker : Ray resources each actor reserves (torch in an actor uses
        ``cpus_per_worker`` threads: Ray sets ``OMP_NUM_THREADS`` accordingly).
    """

    address: str = LOCAL
    num_workers: int = 2
    rows_per_batch: int = 1024
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
        if self.rows_per_batch < 1:
            raise ValueError(f"rows_per_batch must be >= 1, got {self.rows_per_batch}")
        if self.cpus_per_worker <= 0 and self.gpus_per_worker <= 0:
            raise ValueError("each worker needs some CPU or GPU (cpus_per_worker or gpus_per_worker > 0)")


class _EmbedActor:
    """One Ray actor: loads the embedder once (in ``__init__``), embeds blocks, writes one shard each."""

    def __init__(self, modality: str, model_name: str | None, batch_size: int, shard_dir: str,
                 transformer: Any = None, precision: str = "float32") -> None:
        self.modality, self.model_name, self.batch_size = modality, model_name, batch_size
        self.precision = precision
        self.shard_dir, self.transformer = shard_dir, transformer
        if modality == "text":
            from dq_pipeline.embed.text import load_text_model

            load_text_model(model_name)  # cached per process: embed_texts reuses it
        elif modality == "image":
            if model_name.startswith("efficientnet-lite"):
                from dq_pipeline.embed.image import load_efficientnet_lite

                load_efficientnet_lite(model_name)
            else:
                from dq_pipeline.embed.text import _load_sentence_transformer

                _load_sentence_transformer(model_name)

    def _embed(self, block: pd.DataFrame) -> np.ndarray:
        if self.modality == "text":
            from dq_pipeline.embed.text import embed_texts

            return embed_texts(list(block["item"]), model_name=self.model_name, batch_size=self.batch_size,
                               precision=self.precision)
        if self.modality == "image":
            from dq_pipeline.embed.image import embed_images

            return embed_images(list(block["item"]), model_name=self.model_name, batch_size=self.batch_size,
                                precision=self.precision)
        columns = [c for c in block.columns if c != _ROW]
        with np.errstate(over="ignore", invalid="ignore"):  # finiteness is checked on the driver
            return np.asarray(self.transformer.transform(block[columns]), dtype=np.float64)

    def __call__(self, block: pd.DataFrame) -> pd.DataFrame:
        import pyarrow as pa
        import pyarrow.parquet as pq

        started = time.perf_counter()
        rows = block[_ROW].to_numpy(dtype=np.int64)
        first, last = int(rows.min()), int(rows.max())
        try:
            vectors = self._embed(block)
        except Exception as exc:
            raise RuntimeError(f"rows {first}..{last} ({self.modality}): {type(exc).__name__}: {exc}") from exc
        dim = vectors.shape[1]
        flat = pa.array(np.ascontiguousarray(vectors).reshape(-1))
        table = pa.table({"row": pa.array(rows), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
        path = os.path.join(self.shard_dir, f"part-{first:012d}.parquet")
        tmp = f"{path}.{os.getpid()}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, path)  # a shard is whole or absent
        return pd.DataFrame({"path": [path], "n": [len(rows)], "pid": [os.getpid()],
                             "seconds": [time.perf_counter() - started]})


def _connect(options: RayOptions) -> bool:
    """Make sure Ray is initialised; True when this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    if options.address == LOCAL:
        kwargs["num_cpus"] = max(1, int(np.ceil(options.num_workers * options.cpus_per_worker)))
        if options.gpus_per_worker:
            kwargs["num_gpus"] = int(np.ceil(options.num_workers * options.gpus_per_worker))
    else:
        kwargs["address"] = options.address
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(**kwargs)
    return True


def _quiet_ray_loggers() -> Callable[[], None]:
    """Raise Ray's Python loggers to ERROR (start-up banners, Ray Data's execution and progress-bar
    notices); returns the function that restores their levels."""
    names = ("ray", "ray.data", "ray._private", "ray.data._internal.execution.streaming_executor")
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)

    def restore() -> None:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)

    return restore


def _blocks(frame: pd.DataFrame, rows_per_batch: int) -> list[pd.DataFrame]:
    return [frame.iloc[start:start + rows_per_batch] for start in range(0, len(frame), rows_per_batch)]


def run_sharded(
    frame: pd.DataFrame, modality: str, model_name: str | None, *, options: RayOptions,
    shard_dir: str | Path | None = None, batch_size: int = 32, transformer: Any = None, precision: str = "float32",
    progress: Progress | None = None, keep_shards: bool = False, stats: dict[str, Any] | None = None,
) -> np.ndarray:
    """Embed the rows of ``frame`` (column ``item`` for text/image, feature columns for tabular) on a
    Ray actor pool; return the vectors in row order.

    ``stats`` (a dict, optional) receives what ran where: ``shards``, ``workers`` (distinct actor
    processes), ``rows_per_worker`` and ``busy_seconds_per_worker`` (time inside the embedder and the
    shard write), ``wall_seconds``.

    Returns
    -------
    np.ndarray, shape (len(frame), D): float32 for text/image, float64 for tabular.

    Raises
    ------
    RuntimeError naming the rows of a block whose embedding failed (with the worker's message), or
    the rows missing / repeated in the shards read back.
    """
    import ray
    import ray.data

    n = len(frame)
    if n == 0:
        raise ValueError("nothing to embed: 0 rows")
    base = Path(shard_dir) if shard_dir else Path(tempfile.gettempdir()) / "dq_pipeline_ray_shards"
    out_dir = base / f"{modality}-{uuid.uuid4().hex[:12]}"  # this call's shards only
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = frame.reset_index(drop=True).copy()
    frame.insert(0, _ROW, np.arange(n, dtype=np.int64))
    quiet = _quiet_ray_loggers()  # ours (rows, rate, time left) replace Ray Data's progress and banners
    with keep_signal_handlers():  # ray.init installs a SIGTERM handler that ray.shutdown leaves behind
        started_ray = _connect(options)
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False  # ours (rows, rate, time left) go to the Dagster log / CLI
            ctx.print_on_execution_start = False
            ds = ray.data.from_pandas(_blocks(frame, options.rows_per_batch))
            ds = ds.map_batches(
                _EmbedActor,
                fn_constructor_kwargs={"modality": modality, "model_name": model_name, "batch_size": batch_size,
                                       "precision": precision,
                                       "shard_dir": str(out_dir), "transformer": transformer},
                batch_size=options.rows_per_batch,
                batch_format="pandas",
                compute=ray.data.ActorPoolStrategy(size=options.num_workers),
                num_cpus=options.cpus_per_worker,
                num_gpus=options.gpus_per_worker or None,
            )
            done, paths, results = 0, [], []
            started = time.perf_counter()
            try:
                for result in ds.iter_batches(batch_size=None, batch_format="pandas"):
                    results.append(result)
                    paths += list(result["path"])
                    done += int(result["n"].sum())
                    if progress is not None:
                        progress(min(done, n), n)
            except Exception as exc:  # a worker's error arrives wrapped: name it first
                cause = exc
                while getattr(cause, "cause", None) is not None or cause.__cause__ is not None:
                    cause = getattr(cause, "cause", None) or cause.__cause__
                raise RuntimeError(f"distributed {modality} embedding failed: {cause}") from exc
            X = read_shards(paths, n)
            per = pd.concat(results).groupby("pid").agg(rows=("n", "sum"), seconds=("seconds", "sum"))
            summary = {"shards": len(paths), "workers": len(per), "rows_per_worker": per["rows"].tolist(),
                       "busy_seconds_per_worker": per["seconds"].round(3).tolist(),
                       "wall_seconds": round(time.perf_counter() - started, 3)}
            log.info("ray %s embedding: %d rows in %d shards on %d workers, %s", modality, n, summary["shards"],
                     summary["workers"], summary)
            if stats is not None:
                stats.update(summary)
            return X
        finally:
            if started_ray:
                ray.shutdown()
            quiet()
            if not keep_shards:
                shutil.rmtree(out_dir, ignore_errors=True)


def read_shards(paths: Sequence[str | Path], n: int) -> np.ndarray:
    """Read Parquet shards (``row``, ``vector``) with DuckDB into row order; check rows are 0..n-1 once each.

    The row numbers of all shards are checked first (one BIGINT column); the vectors are then read one
    shard at a time into the (n, D) result, so memory peaks at the result plus one shard.

    Returns np.ndarray, shape (n, D), the shards' float type.
    """
    import duckdb
    import pyarrow.compute as pc

    files = [str(p) for p in paths]
    if not files:
        raise RuntimeError(f"no shard came back: 0 of {n} rows embedded")
    con = duckdb.connect()
    try:
        rows = con.sql("SELECT row FROM read_parquet($files) ORDER BY row",
                       params={"files": files}).fetchnumpy()["row"]
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != n or not np.array_equal(rows, np.arange(n)):
            seen = np.bincount(rows[(rows >= 0) & (rows < n)], minlength=n)
            missing, repeated = np.flatnonzero(seen == 0), np.flatnonzero(seen > 1)
            raise RuntimeError(f"shards hold {len(rows)} rows for {n} inputs: missing rows {missing[:10].tolist()}"
                               f"{' ...' if len(missing) > 10 else ''}, repeated rows {repeated[:10].tolist()}")
        out: np.ndarray | None = None
        for path in files:
            relation = con.sql("SELECT row, vector FROM read_parquet($file)", params={"file": path})
            table = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
            vectors = table.column("vector").combine_chunks()
            widths = set(pc.list_value_length(vectors).to_numpy(zero_copy_only=False).tolist())
            width = out.shape[1] if out is not None else next(iter(widths), 0)
            if widths != {width}:
                raise RuntimeError(f"{path}: vectors of width {sorted(widths)}, expected {width}")
            flat = pc.list_flatten(vectors).to_numpy(zero_copy_only=False)
            if out is None:
                out = np.empty((n, width), dtype=flat.dtype)
            out[table.column("row").to_numpy()] = flat.reshape(-1, width)
    finally:
        con.close()
    return out


def embed_distributed(
    items: Sequence[str], modality: str, model_name: str | None = None, *, options: RayOptions | None = None,
    shard_dir: str | Path | None = None, batch_size: int = 32, progress: Progress | None = None,
    stats: dict[str, Any] | None = None, precision: str = "float32",
) -> np.ndarray:
    """Embed texts (``modality="text"``) or image paths (``"image"``) on a Ray actor pool.

    Same model, preprocessing and output as ``embed_texts`` / ``embed_images`` in-process (each actor
    calls them on its blocks). ``precision`` is resolved here, on the driver, so every worker runs the
    same arithmetic whatever its CPU.

    Returns
    -------
    np.ndarray, shape (N, D), float32, rows in input order (L2-normalised for text).
    """
    if modality not in ("text", "image"):
        raise ValueError(f"modality must be 'text' or 'image', got {modality!r} (tabular: featurize_tabular_distributed)")
    if model_name is None:
        from dq_pipeline.embed import DEFAULT_IMAGE_MODEL, DEFAULT_TEXT_MODEL

        model_name = DEFAULT_TEXT_MODEL if modality == "text" else DEFAULT_IMAGE_MODEL
    from dq_pipeline.embed import resolved_precision

    frame = pd.DataFrame({"item": [str(t) for t in items]})
    X = run_sharded(frame, modality, model_name, options=options or RayOptions(), shard_dir=shard_dir,
                    batch_size=batch_size, progress=progress, stats=stats,
                    precision=resolved_precision(precision, modality))
    return np.asarray(X, dtype=np.float32)


def embed_cached_distributed(
    items: Sequence[str], modality: str, model_name: str, cache: Any = None, precision: str = "float32", **kw: Any
) -> np.ndarray:
    """:func:`embed_distributed` through the same ``EmbeddingCache`` namespace and keys as
    ``embed_texts_cached`` / ``embed_images_cached``: only items not cached reach the cluster, and
    vectors computed either way serve the other."""
    from dq_pipeline.embed import resolved_precision
    from dq_pipeline.embed.cache import cached_embed, content_key, file_keys, model_identity

    items = [str(t) for t in items]
    precision = resolved_precision(precision, modality)
    identity = model_identity(model_name, modality, precision)
    keys = [content_key(identity, t) for t in items] if modality == "text" else file_keys(identity, items)
    return cached_embed(keys, lambda idx: embed_distributed([items[i] for i in idx], modality, model_name,
                                                            precision=precision, **kw),
                        identity, cache)


def featurize_tabular_distributed(
    frame: pd.DataFrame, feature_columns: Sequence[str] | None = None, *, options: RayOptions | None = None,
    shard_dir: str | Path | None = None, progress: Progress | None = None, stats: dict[str, Any] | None = None,
) -> np.ndarray:
    """``featurize_tabular`` with the transform sharded on a Ray actor pool: the ColumnTransformer is
    fitted (and its input checked) on the driver, each actor transforms its blocks.

    Returns np.ndarray, shape (N, D), float64, finite (same values as ``featurize_tabular``).
    """
    from dq_pipeline.embed.tabular import fit_tabular_transformer

    transformer, columns = fit_tabular_transformer(frame, feature_columns)
    X = run_sharded(frame[columns], "tabular", None, options=options or RayOptions(), shard_dir=shard_dir,
                    transformer=transformer, progress=progress, stats=stats)
    if not np.isfinite(X).all():
        i, j = (int(v) for v in np.argwhere(~np.isfinite(X))[0])
        raise ValueError(f"row {i}: feature {transformer.get_feature_names_out()[j]!r} is not finite ({X[i, j]})")
    return X
