"""The UI's case: one persistent Dagster instance holding every demo dataset, runs launched from the
sensor's and the schedule's requests, outputs stored in the instance (no in-memory shortcut).

Until asset checks carried the dataset partitions, every run failed from the second registered dataset
on: a check loaded *every* partition of its asset. These tests run the real definitions as `make ui`
loads them, against one instance and one DuckDB file for the whole module.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dq_pipeline.defs.automation import daily_reaudit, dataset_folder_sensor
from dq_pipeline.definitions import build_definitions
from dq_pipeline_tests.conftest import DATA, REPO

DEMO = ["goemotions_sample", "miml_scenes", "mulan_emotions", "mulan_flags"]


class Deployment:
    """A data folder, a DuckDB file and a persistent instance configured as `make ui` configures it."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        for name in DEMO:
            shutil.copytree(DATA / name, self.data / name)
        self.db = str(root / "curated.duckdb")
        home = root / "dagster_home"  # what `make ui` does: the project's dagster.yaml in $DAGSTER_HOME
        home.mkdir()
        shutil.copyfile(REPO / ".dagster" / "dagster.yaml", home / "dagster.yaml")
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.defs = build_definitions(data_dir=str(self.data), db_path=self.db)
        self.job = self.defs.resolve_job_def("audit")
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        """One sensor evaluation; applies its partition requests as the daemon does."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                         resources={"datasets": self.defs.resources["datasets"]})
        result = dataset_folder_sensor(context)
        for request in result.dynamic_partitions_requests:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = result.cursor
        return result

    def launch(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Execute one run request of the audit job on the persistent instance (outputs stored there)."""
        return self.job.execute_in_process(partition_key=request.partition_key, instance=self.instance,
                                           tags=request.tags, raise_on_error=False)

    def latest_runs(self) -> pd.DataFrame:
        with duckdb.connect(self.db, read_only=True) as con:
            return con.execute("SELECT dataset, run_id, n_examples FROM latest_audit_runs ORDER BY dataset").df()


def _failure(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(str(e.step_failure_data.error.message if e.step_failure_data.error else e)
                     for e in result.get_step_failure_events())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """Four demo datasets registered by the sensor's first tick and audited from its run requests."""
    dep = Deployment(tmp_path_factory.mktemp("deployment"))
    first = dep.tick()
    assert sorted(r.partition_key for r in first.run_requests) == DEMO
    dep.first_results = {r.partition_key: dep.launch(r) for r in first.run_requests}
    return dep


def test_every_sensor_requested_run_succeeds(deployment: Deployment):
    for name, result in deployment.first_results.items():
        assert result.success, f"{name}: {_failure(result)}"
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"raw_examples_gate": True, "features_gate": True, "probabilities_gate": True,
                          "nothing_lost": True, "regression": True}, name  # a first audit: no regression
        curated = next(m.step_materialization_data.materialization for m in result.get_asset_materialization_events()
                       if m.asset_key == dg.AssetKey("curated"))
        assert curated.metadata["review"].value == f"http://127.0.0.1:8765/datasets/{name}"  # the review app
    runs = deployment.latest_runs()
    assert list(runs["dataset"]) == DEMO
    assert dict(zip(runs["dataset"], runs["n_examples"])) == {
        "goemotions_sample": 1261, "miml_scenes": 400, "mulan_emotions": 593, "mulan_flags": 194}
    assert set(deployment.instance.get_dynamic_partitions("dataset")) == set(DEMO)


def test_outliers_of_texts_also_read_the_tokenizer_and_other_modalities_do_not(deployment: Deployment):
    """The outliers asset gives texts a second statistic (tokenizer pieces per word); its summary says so, with the
    per-metric threshold; photos and tabular rows are flagged on the k-NN distance alone."""
    from dq_pipeline.issues.outliers import DEFAULT_EXTRA_Z_THRESHOLD, DEFAULT_Z_THRESHOLDS

    for name, result in deployment.first_results.items():
        outliers = next(m.step_materialization_data.materialization for m in result.get_asset_materialization_events()
                        if m.asset_key == dg.AssetKey("outliers"))
        summary = outliers.metadata["summary"].value
        assert summary["z_threshold"] == DEFAULT_Z_THRESHOLDS[summary["metric"]], name
        table = outliers.metadata["worst_examples"].value
        assert re.search(r"\| why +\|", table), name  # why each shown row was flagged
        if summary["n_outliers_by_extra" if name == "goemotions_sample" else "n_outliers"]:
            assert ("unreadable as words" if name == "goemotions_sample" else "far from its neighbours") in table
        if name == "goemotions_sample":
            assert summary["extra_statistic"] == "pieces_per_word"
            assert summary["extra_z_threshold"] == DEFAULT_EXTRA_Z_THRESHOLD
            assert 0 <= summary["n_outliers_by_extra"] <= summary["n_outliers"] <= 0.02 * 1261
        else:
            assert "extra_statistic" not in summary, name


def test_rematerializing_one_partition_succeeds_and_becomes_latest(deployment: Deployment):
    before = deployment.latest_runs().set_index("dataset")["run_id"]
    result = deployment.launch(dg.RunRequest(partition_key="mulan_flags"))
    assert result.success, _failure(result)
    after = deployment.latest_runs().set_index("dataset")["run_id"]
    assert after["mulan_flags"] == result.run_id != before["mulan_flags"]
    assert (after.drop("mulan_flags") == before.drop("mulan_flags")).all()  # other datasets untouched


def test_single_assets_of_one_partition_rerun_from_stored_outputs(deployment: Deployment):
    """The UI's 'Materialize selected' on one asset of one partition: upstream outputs come from the
    instance's storage for that partition only (the other three partitions are stored beside it)."""
    job = deployment.defs.resolve_implicit_global_asset_job_def()
    selection = [dg.AssetKey("outliers"), dg.AssetKey("curated")]
    result = job.get_subset(asset_selection=set(selection)).execute_in_process(
        partition_key="mulan_emotions", instance=deployment.instance, raise_on_error=False)
    assert result.success, _failure(result)
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {"nothing_lost": True,
                                                                                       "regression": True}
    assert deployment.latest_runs().set_index("dataset").at["mulan_emotions", "run_id"] == result.run_id


def test_sensor_registers_a_dataset_added_later_and_leaves_unchanged_ones(deployment: Deployment):
    frame = pd.read_csv(DATA / "mulan_emotions" / "emotions.csv", keep_default_na=False).iloc[:150]
    folder = deployment.data / "emotions_subset"
    folder.mkdir()
    frame.to_csv(folder / "emotions.csv", index=False)
    shutil.copyfile(DATA / "mulan_emotions" / "dataset.yaml", folder / "dataset.yaml")

    tick = deployment.tick()
    assert [r.partition_key for r in tick.run_requests] == ["emotions_subset"]
    result = deployment.launch(tick.run_requests[0])
    assert result.success, _failure(result)
    assert "emotions_subset" in deployment.instance.get_dynamic_partitions("dataset")
    assert deployment.latest_runs().set_index("dataset").at["emotions_subset", "n_examples"] == 150
    assert deployment.tick().run_requests == []  # nothing changed since


def test_a_failing_dataset_fails_alone_with_its_gate_reason(deployment: Deployment):
    """A broken fifth dataset fails at its gate with the reason in the run's failure; the others stay."""
    folder = deployment.data / "too_small"
    folder.mkdir()
    lines = (DATA / "mulan_flags" / "flags.csv").read_text().splitlines(keepends=True)
    (folder / "flags.csv").write_text("".join(lines[:4]))  # 3 rows < 5 folds
    shutil.copyfile(DATA / "mulan_flags" / "dataset.yaml", folder / "dataset.yaml")
    before = deployment.latest_runs()

    tick = deployment.tick()
    assert [r.partition_key for r in tick.run_requests] == ["too_small"]
    result = deployment.launch(tick.run_requests[0])
    assert not result.success
    failed = {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == {"raw_examples_gate"}
    reason = _failure(result)
    assert "raw_examples" in reason and "expect_table_row_count_to_be_between" in reason
    assert "blocking asset check failed" not in reason  # the gate's own reason, not Dagster's generic one
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_examples"}  # the gate blocked everything downstream
    pd.testing.assert_frame_equal(deployment.latest_runs(), before)
    shutil.rmtree(folder)


def test_schedule_requests_every_registered_partition(deployment: Deployment):
    with dg.build_schedule_context(instance=deployment.instance,
                                   scheduled_execution_time=datetime(2026, 1, 2, 3)) as context:
        requests = daily_reaudit(context)
    registered = deployment.instance.get_dynamic_partitions("dataset")
    assert sorted(r.partition_key for r in requests) == sorted(registered)
    assert set(DEMO) <= set(registered)
    result = deployment.launch(next(r for r in requests if r.partition_key == "goemotions_sample"))
    assert result.success, _failure(result)
