"""The Dagster UI as a user meets it: `dagster dev` over the demo data, a real browser (Playwright
driving Debian's chromium; `.ci/run` installs it when absent), the sensor's runs, a partition
materialized by clicking, the gates on the Checks tab, a failed gate's reason on the run page.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from dq_pipeline_tests.conftest import DATA, REPO, stop_process_group

DEMO = ["goemotions_sample", "miml_scenes", "mulan_emotions", "mulan_flags"]
BIN = Path(sys.executable).parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT_S = 900


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`dagster dev` in its own process group, with its own $DAGSTER_HOME, data folder and DuckDB file."""

    def __init__(self, root: Path) -> None:
        self.root = root  # also receives the screenshots (docs/ui/ keeps copies)
        self.home, self.data = root / "dagster_home", root / "data"
        self.home.mkdir()
        shutil.copyfile(REPO / ".dagster" / "dagster.yaml", self.home / "dagster.yaml")
        for name in DEMO:
            shutil.copytree(DATA / name, self.data / name)
        too_small = self.data / "too_small"  # a fifth dataset that fails its gate: 3 rows < 5 folds
        too_small.mkdir()
        lines = (DATA / "mulan_flags" / "flags.csv").read_text().splitlines(keepends=True)
        (too_small / "flags.csv").write_text("".join(lines[:4]))
        shutil.copyfile(DATA / "mulan_flags" / "dataset.yaml", too_small / "dataset.yaml")
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DAGSTER_HOME": str(self.home), "DQ_DATA_DIR": str(self.data),
               "DQ_DUCKDB_PATH": str(root / "curated.duckdb"), "HF_HUB_OFFLINE": "1",
               "DAGSTER_TELEMETRY_DISABLED": "1"}
        self.log = open(root / "dagster_dev.log", "w")
        self.proc = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.instance = dg.DagsterInstance.from_config(str(self.home))

    def wait_for_webserver(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"dagster dev exited: {self.log_tail()}"
            try:
                with urllib.request.urlopen(f"{self.base}/server_info", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"webserver did not answer in {timeout_s:.0f}s: {self.log_tail()}")

    def runs(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs())

    def wait_for_runs(self, done: callable, what: str) -> list[dg.DagsterRun]:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            runs = self.runs()
            if done(runs):
                return runs
            assert self.proc.poll() is None, f"dagster dev exited: {self.log_tail()}"
            time.sleep(3)
        raise TimeoutError(f"{what}: {[(r.tags.get('dagster/partition'), r.status) for r in self.runs()]}")

    def log_tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-3000:]

    def stop(self) -> None:
        """Stop the webserver, daemon and code server: the whole process group."""
        stop_process_group(self.proc)
        self.log.close()
        self.instance.dispose()


def _finished(run: dg.DagsterRun) -> bool:
    return run.status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def _partition(run: dg.DagsterRun) -> str | None:
    return run.tags.get("dagster/partition")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is required for the browser tests: apt-get install chromium "
                    "(.ci/run installs it)")
    srv = Server(tmp_path_factory.mktemp("ui"))
    try:
        srv.wait_for_webserver()
        yield srv
    finally:
        srv.stop()
    assert srv.proc.poll() is not None
    with pytest.raises(OSError):  # the port is free again: nothing of the server is left running
        urllib.request.urlopen(f"{srv.base}/server_info", timeout=2)


@pytest.fixture(scope="module")
def page(server: Server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    skip = page.get_by_role("button", name="Skip")  # first-visit dialog
    if skip.count():
        skip.click()


def test_sensor_audits_every_dataset_and_a_clicked_partition_succeeds(server: Server, page):
    # 1. the sensor registers the five folders and requests one run each; the four good ones succeed
    runs = server.wait_for_runs(lambda rs: len(rs) >= 5 and all(_finished(r) for r in rs),
                                "the sensor's five runs did not finish")
    status = {_partition(r): r.status for r in runs}
    assert status == {**{n: dg.DagsterRunStatus.SUCCESS for n in DEMO},
                      "too_small": dg.DagsterRunStatus.FAILURE}, server.log_tail()

    # 2. materialize one partition by clicking: lineage page -> Materialize all -> mulan_flags -> Launch
    _open(page, f"{server.base}/asset-groups/audit")
    page.get_by_role("button", name="Materialize all").first.click()
    page.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem", name="mulan_flags").click()
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Launch 1 run").click()
    known = {r.run_id for r in runs}
    runs = server.wait_for_runs(lambda rs: any(r.run_id not in known and _finished(r) for r in rs),
                                "the clicked run did not finish")
    clicked = next(r for r in runs if r.run_id not in known)
    assert _partition(clicked) == "mulan_flags"
    assert clicked.status == dg.DagsterRunStatus.SUCCESS, server.log_tail()

    # 3. its run page says so, and the gates' results show on the Checks tab of that partition
    _open(page, f"{server.base}/runs/{clicked.run_id}")
    page.get_by_text("Success", exact=True).first.wait_for()
    _open(page, f"{server.base}/assets/raw_examples?view=checks&partition=mulan_flags")
    page.get_by_text("raw_examples_gate").first.wait_for()
    page.get_by_text("Passed").first.wait_for()
    page.get_by_text("raw_examples_gate").first.click()
    page.get_by_text("n_expectations").first.wait_for()  # the GE suite's metadata of this evaluation
    assert "passed (" in page.content() and "mulan_flags" in page.content()  # its description, partition
    page.screenshot(path=str(server.root / "raw_examples_checks.png"))


def test_failed_gate_shows_its_reason_on_the_run_page(server: Server, page):
    runs = server.wait_for_runs(lambda rs: any(_partition(r) == "too_small" and _finished(r) for r in rs),
                                "the failing dataset's run did not finish")
    failed = next(r for r in runs if _partition(r) == "too_small")
    _open(page, f"{server.base}/runs/{failed.run_id}")
    page.get_by_text("Failure", exact=True).first.wait_for()
    # the gate's own reason (expectation and what it observed), not only "1 blocking asset check failed"
    reason = page.get_by_text("expect_table_row_count_to_be_between").first
    reason.wait_for()
    assert "too_small" in page.content()
    page.screenshot(path=str(server.root / "failed_gate_run.png"))
