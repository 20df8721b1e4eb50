"""Embedding sharded across a local Ray cluster (2 workers) gives the in-process vectors, in row order.

One local Ray (``ray.init(num_cpus=2)``) serves the whole module and is shut down at its end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dq_pipeline_tests.conftest import DATA, write_dataset

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _examples(name: str) -> pd.DataFrame:
    from dq_pipeline.ingest import load_examples
    from dq_pipeline.manifest import load_manifest

    return load_examples(load_manifest(DATA / name)).examples


def test_text_on_two_workers_equals_in_process(local_ray, tmp_path: Path) -> None:
    from dq_pipeline.embed.distributed import RayOptions, embed_distributed
    from dq_pipeline.embed.text import embed_texts

    texts = list(_examples("goemotions_sample")["text"].iloc[:96])
    stats: dict = {}
    seen: list[tuple[int, int]] = []
    X = embed_distributed(texts, "text", options=RayOptions(num_workers=2, rows_per_batch=24),
                          shard_dir=tmp_path, progress=lambda done, total: seen.append((done, total)), stats=stats)
    expected = embed_texts(texts)
    assert X.shape == expected.shape == (96, 384) and X.dtype == np.float32
    assert np.allclose(X, expected, rtol=0, atol=1e-5), np.abs(X - expected).max()
    assert not np.allclose(X[1:], expected[:-1], rtol=0, atol=1e-5)  # (order matters for this check)
    assert stats["shards"] == 4 and stats["workers"] == 2 and sum(stats["rows_per_worker"]) == 96
    assert seen[-1] == (96, 96) and len(seen) == 4
    assert list(tmp_path.iterdir()) == [] or all(not any(p.iterdir()) for p in tmp_path.iterdir())


def test_a_ray_session_it_starts_itself_leaves_the_signal_handlers_as_they_were(tmp_path: Path) -> None:
    """``address='local'`` with no Ray running (the CLI's DQ_RAY_ADDRESS=local): the embedding starts and stops Ray
    itself, in a new process started as a script's background job is (SIGINT ignored). ray.init installs a SIGTERM
    handler that ray.shutdown leaves behind; afterwards SIGTERM must stop the process as before."""
    import subprocess
    import sys

    script = tmp_path / "own_ray.py"
    script.write_text(
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "import numpy as np, pandas as pd, ray\n"
        "from dq_pipeline.embed.distributed import RayOptions, featurize_tabular_distributed\n"
        "from dq_pipeline.embed.tabular import featurize_tabular\n"
        "ex = pd.DataFrame({'a': np.arange(60.0), 'b': np.arange(60.0) % 7})\n"
        "X = featurize_tabular_distributed(ex, ['a', 'b'], options=RayOptions(num_workers=1, rows_per_batch=30))\n"
        "assert np.array_equal(X, featurize_tabular(ex, ['a', 'b']))\n"
        "print('after', ray.is_initialized(), signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,\n"
        "      signal.getsignal(signal.SIGINT) == signal.SIG_IGN)\n")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after False True True" in done.stdout, done.stdout[-2000:]


def test_tabular_on_two_workers_equals_in_process(local_ray) -> None:
    from dq_pipeline.embed.distributed import RayOptions, featurize_tabular_distributed
    from dq_pipeline.embed.tabular import featurize_tabular

    ex = _examples("mulan_flags")  # numeric and one-hot (categorical codes) columns
    columns = [c for c in ex.columns if c not in ("example_id", "row_number", "tags")]
    stats: dict = {}
    X = featurize_tabular_distributed(ex, columns, options=RayOptions(num_workers=2, rows_per_batch=50), stats=stats)
    expected = featurize_tabular(ex, columns)
    assert X.shape == expected.shape and stats["shards"] == 4
    assert np.array_equal(X, expected)


def test_features_asset_on_ray_equals_in_process(local_ray, tmp_path: Path) -> None:
    """The same ``features`` asset, with the ``ray`` resource set, gives the in-process matrix."""
    import dagster as dg

    from dq_pipeline.defs.assets import features, raw_examples
    from dq_pipeline.defs.partitions import dataset_partitions
    from dq_pipeline.defs.resources import AuditSettings, CuratedStore, DatasetsResource, RaySettings
    from dq_pipeline.embed import resolved_precision

    source = pd.read_csv(DATA / "goemotions_sample" / "comments.csv").head(40)
    manifest = (DATA / "goemotions_sample" / "dataset.yaml").read_text()
    write_dataset(tmp_path / "data" / "mini", source, manifest, source="comments.csv")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, ["mini"])
    out = {}
    cache = tmp_path / "cache"
    for name, address, cache_dir in (("in_process", "", ""), ("ray", "local", str(cache))):
        result = dg.materialize(  # in-process without a cache; Ray through a cold cache (both embed)
            [raw_examples, features], partition_key="mini", instance=instance,
            resources={"datasets": DatasetsResource(data_dir=str(tmp_path / "data")),
                       "curated_store": CuratedStore(path=str(tmp_path / "curated.duckdb")),
                       "settings": AuditSettings(cache_dir=cache_dir),
                       "ray": RaySettings(address=address, num_workers=2, rows_per_batch=16)},
        )
        assert result.success
        out[name] = result.output_for_node("features")
        meta = result.asset_materializations_for_node("features")[0].metadata
        assert ("ray_workers" in meta) == (name == "ray")
    a, b = out["in_process"], out["ray"]
    assert a.example_ids == b.example_ids and a.exact_keys == b.exact_keys and a.metric == b.metric
    if resolved_precision(AuditSettings().embedding_precision, "text") == "float32":
        assert np.allclose(a.X, b.X, rtol=0, atol=1e-5)
    else:  # bfloat16 (the default on CPUs that multiply it natively): a text's vector moves with its batch-mates
        assert (a.X * b.X).sum(axis=1).min() > 0.9998 and np.abs(a.X - b.X).max() < 0.01
    assert len(list((cache / "embeddings").glob("*.npz"))) == 1  # the Ray vectors went into the cache


def test_executor_is_configurable() -> None:
    import dagster as dg

    from dq_pipeline.definitions import build_definitions

    assert build_definitions().resolve_job_def("audit").executor_def is dg.in_process_executor
    defs = build_definitions(executor=dg.multiprocess_executor)
    assert defs.resolve_job_def("audit").executor_def is dg.multiprocess_executor


def test_read_shards_names_missing_and_repeated_rows(tmp_path: Path) -> None:
    from dq_pipeline.embed.distributed import read_shards

    def shard(name: str, rows: list[int], width: int = 3) -> Path:
        flat = pa.array(np.repeat(np.asarray(rows, dtype=np.float32), width))  # each row's values = its number
        path = tmp_path / name
        pq.write_table(pa.table({"row": pa.array(rows, pa.int64()),
                                 "vector": pa.FixedSizeListArray.from_arrays(flat, width)}), path)
        return path

    good = read_shards([shard("b.parquet", [3, 2]), shard("a.parquet", [0, 1])], 4)
    assert good.shape == (4, 3) and good.dtype == np.float32
    assert (good == np.arange(4, dtype=np.float32)[:, None]).all()  # put back in row order
    with pytest.raises(RuntimeError, match=r"vectors of width \[2\], expected 3"):
        read_shards([shard("e.parquet", [0, 1]), shard("f.parquet", [2], width=2)], 3)
    with pytest.raises(RuntimeError, match=r"missing rows \[4\], repeated rows \[1\]"):
        read_shards([shard("c.parquet", [0, 1, 2, 3]), shard("d.parquet", [1])], 5)
