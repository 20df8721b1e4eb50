"""Sensor registers dataset folders as partitions and requests audits; schedule re-audits all."""

import shutil
from datetime import datetime
from pathlib import Path

import dagster as dg

from dq_pipeline.defs.automation import daily_reaudit, dataset_folder_sensor
from dq_pipeline.defs.resources import DatasetsResource
from dq_pipeline.definitions import build_definitions, defs
from dq_pipeline_tests.conftest import DATA


def test_definitions_load_with_every_asset_and_gate():
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert keys == {"raw_examples", "features", "oof_probabilities", "label_issues", "ambiguous_examples",
                    "outliers", "near_duplicates", "curated", "tagger", "neighbour_graph"}
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert checks == {"raw_examples_gate", "features_gate", "probabilities_gate", "nothing_lost", "regression"}
    assert defs.resolve_job_def("audit") is not None
    assert defs.resolve_job_def("train_tagger") is not None  # the audit + the tagger (not in the audit job)


def test_sensor_registers_new_folders_and_rerequests_on_change(tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(DATA / "mulan_flags", data / "mulan_flags")
    (data / "not_a_dataset").mkdir()
    instance = dg.DagsterInstance.ephemeral()
    resources = {"datasets": DatasetsResource(data_dir=str(data))}
    ctx = dg.build_sensor_context(instance=instance, resources=resources)
    first = dataset_folder_sensor(ctx)
    assert [r.partition_key for r in first.run_requests] == ["mulan_flags"]
    assert first.dynamic_partitions_requests[0].partition_keys == ["mulan_flags"]
    instance.add_dynamic_partitions("dataset", ["mulan_flags"])

    again = dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=resources,
                                                          cursor=first.cursor))
    assert again.run_requests == [] and again.dynamic_partitions_requests == []

    source = data / "mulan_flags" / "flags.csv"  # a dataset file changes (one row fewer)
    source.write_text("".join(source.read_text().splitlines(keepends=True)[:-1]))
    changed = dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=resources,
                                                            cursor=first.cursor))
    assert [r.partition_key for r in changed.run_requests] == ["mulan_flags"]


def test_schedule_requests_every_registered_dataset():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("dataset", ["a", "b"])
        with dg.build_schedule_context(instance=instance,
                                       scheduled_execution_time=datetime(2026, 1, 2, 3)) as ctx:
            requests = daily_reaudit(ctx)
    assert sorted(r.partition_key for r in requests) == ["a", "b"]
    assert daily_reaudit.cron_schedule == "0 3 * * *"


def test_build_definitions_points_at_folders(tmp_path: Path):
    d = build_definitions(data_dir=str(tmp_path), db_path=str(tmp_path / "x.duckdb"))
    assert d.resources["datasets"].data_dir == str(tmp_path)
    assert d.resources["curated_store"].path == str(tmp_path / "x.duckdb")
