"""Audit settings are checked where they are set: a bad value is refused with its name and value before any
step runs (in Python, and from a run's config as the Dagster launchpad passes it)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from pydantic import ValidationError

from dq_pipeline.defs.resources import AuditSettings
from dq_pipeline_tests.conftest import DATA


@pytest.mark.parametrize("changes, needle", [
    ({"c_grid": [0.03, 0.0]}, "c_grid: every L2 strength C must be a positive number, got [0.0]"),
    ({"c_grid": [float("nan")]}, "got [nan]"),
    ({"model": "xgboost"}, "model must be one of ['logreg', 'fast_logreg'"),
    ({"label_method": "confident"}, "label_method must be one of ['ensemble', 'cleanlab'], got 'confident'"),
    ({"outlier_method": "zscore"}, "outlier_method must be one of"),
    ({"neighbour_method": "annoy"}, "neighbour_method must be one of ['auto', 'exact', 'hnsw'], got 'annoy'"),
    ({"embedding_precision": "fp16"},
     "embedding_precision must be one of ['auto', 'float32', 'bfloat16'], got 'fp16'"),
])
def test_a_bad_setting_names_itself(changes: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        AuditSettings(**changes)
    assert needle in str(err.value)


def test_the_defaults_and_an_empty_grid_are_accepted() -> None:
    assert AuditSettings().c_grid == [0.003, 0.01, 0.03, 0.1]
    assert AuditSettings().embedding_precision == "auto"
    assert AuditSettings(c_grid=[], model="logreg").c_grid == []


def test_a_bad_setting_in_the_run_config_stops_the_run_before_any_step(tmp_path: Path) -> None:
    """As the launchpad passes it: the run fails at resource initialisation, nothing is materialized, and the
    failure names the setting and its value."""
    from dq_pipeline.definitions import build_definitions
    from dq_pipeline.defs.partitions import dataset_partitions

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_partitions.name, ["mulan_emotions"])
    defs = build_definitions(data_dir=str(DATA), db_path=str(tmp_path / "c.duckdb"), in_memory=True)
    result = defs.resolve_job_def("audit").execute_in_process(
        partition_key="mulan_emotions", instance=instance, raise_on_error=False,
        run_config={"resources": {"settings": {"config": {"c_grid": [0.01, -1.0]}}}})
    assert not result.success
    assert not result.get_asset_materialization_events()
    failures = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
    assert failures, [e.event_type_value for e in result.all_events]
    text = " ".join(str(e.event_specific_data) for e in failures)
    assert "c_grid: every L2 strength C must be a positive number, got [-1.0]" in text
