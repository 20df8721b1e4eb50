"""Dagster entry point (``workspace.yaml`` loads ``defs`` from here)."""

from __future__ import annotations

import os

import dagster as dg

from dq_pipeline import store
from dq_pipeline.defs.assets import AUDIT_ASSETS, TAGGER_ASSETS, tagger_job
from dq_pipeline.defs.automation import audit_job, daily_reaudit, dataset_folder_sensor
from dq_pipeline.defs.checks import AUDIT_CHECKS
from dq_pipeline.defs.resources import AuditSettings, CuratedStore, DatasetsResource, RaySettings


def build_definitions(
    data_dir: str | None = None, db_path: str | None = None, settings: AuditSettings | None = None,
    in_memory: bool = False, loggers: dict[str, dg.LoggerDefinition] | None = None,
    ray: RaySettings | None = None, executor: dg.ExecutorDefinition | None = None,
) -> dg.Definitions:
    """All assets, gates, the audit job, sensor and schedule, wired to a data folder and a DuckDB file.

    Defaults: ``$DQ_DATA_DIR`` or ``data``; ``$DQ_DUCKDB_PATH`` or ``data/curated.duckdb``. Steps run
    in-process (one process per run), so models load once per run. ``in_memory`` hands step outputs
    over in memory instead of pickling them to the instance's storage (for one-off runs on an ephemeral
    instance, whose storage is discarded anyway). ``loggers`` replaces Dagster's console logger (the
    CLI's brief one). ``ray`` shards the embedding on a Ray cluster (default: ``RaySettings()``, in-process
    unless ``$DQ_RAY_ADDRESS`` is set). ``executor`` replaces the in-process executor (e.g.
    ``dg.multiprocess_executor`` or dagster-k8s's ``k8s_job_executor``; see docs/scale-out.md).
    """
    resources: dict[str, object] = {"io_manager": dg.mem_io_manager} if in_memory else {}
    return dg.Definitions(
        assets=AUDIT_ASSETS + TAGGER_ASSETS,
        asset_checks=AUDIT_CHECKS,
        jobs=[audit_job, tagger_job],
        sensors=[dataset_folder_sensor],
        schedules=[daily_reaudit],
        resources={
            "datasets": DatasetsResource(data_dir=data_dir or os.environ.get("DQ_DATA_DIR", "data")),
            "curated_store": CuratedStore(path=db_path or store.default_db_path()),
            "settings": settings or AuditSettings(),
            "ray": ray or RaySettings(),
            **resources,
        },
        executor=executor or dg.in_process_executor,
        loggers=loggers,
    )


defs = build_definitions()
