"""How `dq-pipeline audit` fails, as a user sees it in a terminal: the reason first, no stack trace,
and a DuckDB file that cannot be written reported before anything is computed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dq_pipeline_tests.conftest import DATA

BIN = Path(sys.executable).parent


def _flags_dataset(folder: Path, n_rows: int | None = None) -> Path:
    folder.mkdir(parents=True)
    lines = (DATA / "mulan_flags" / "flags.csv").read_text().splitlines(keepends=True)
    (folder / "flags.csv").write_text("".join(lines if n_rows is None else lines[: n_rows + 1]))
    (folder / "dataset.yaml").write_text((DATA / "mulan_flags" / "dataset.yaml").read_text())
    return folder


def _audit(folder: Path, db: Path, home: Path, *extra: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    """The installed command in a fresh process with a persistent Dagster instance ($DAGSTER_HOME);
    ``cache``: its own cache folder (default: the test session's)."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "HF_HUB_OFFLINE": "1",
           **({"DQ_CACHE_DIR": str(cache)} if cache else {})}
    return subprocess.run([str(BIN / "dq-pipeline"), "audit", str(folder), "--db", str(db), *extra],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((Path(__file__).resolve().parents[1] / ".dagster" / "dagster.yaml").read_text())
    return home


def test_failed_gate_prints_its_reason_and_no_traceback(tmp_path: Path, home: Path):
    result = _audit(_flags_dataset(tmp_path / "tiny", n_rows=3), tmp_path / "c.duckdb", home)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Stack Trace" not in result.stderr
    failure = result.stderr[result.stderr.index("AUDIT FAILED"):]
    assert "raw_examples" in failure and "3 examples" in failure and "at least 5" in failure
    assert "blocking asset check failed" not in failure

    verbose = _audit(_flags_dataset(tmp_path / "tiny2", n_rows=3), tmp_path / "c.duckdb", home, "--verbose")
    assert verbose.returncode == 1 and "STEP_FAILURE" in verbose.stderr  # Dagster's full log on request
    assert "at least 5" in verbose.stderr[verbose.stderr.index("AUDIT FAILED"):]


def test_locked_database_fails_before_computing_and_names_the_holder(tmp_path: Path, home: Path):
    db = tmp_path / "c.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb, time; con = duckdb.connect({str(db)!r}); "
                               "print('open', flush=True); time.sleep(300)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        started = time.monotonic()
        result = _audit(_flags_dataset(tmp_path / "flags"), db, home)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    failure = result.stderr[result.stderr.index("AUDIT FAILED"):]
    assert f"locked by process {holder.pid}" in failure and "raw_examples" in failure
    assert "cross-validation" not in result.stderr  # nothing was computed
    assert elapsed < 300

    again = _audit(tmp_path / "flags", db, home, cache=tmp_path / "cache")  # the lock is gone: it succeeds
    assert again.returncode == 0, again.stderr[-2000:]
    assert "flags" in again.stdout and "health_score" in again.stdout
    assert "cross-validation folds: 5/5 (100%), done in" in again.stderr  # computed (own cache): progress


def test_a_bad_precision_from_the_environment_is_a_usage_error(tmp_path: Path, home: Path, monkeypatch):
    monkeypatch.setenv("DQ_EMBEDDING_PRECISION", "fp16")
    result = _audit(_flags_dataset(tmp_path / "flags"), tmp_path / "c.duckdb", home)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: setting embedding_precision (from $DQ_EMBEDDING_PRECISION): "
                                    "embedding_precision must be one of ['auto', 'float32', 'bfloat16'], got 'fp16'")
    assert not (tmp_path / "c.duckdb").exists()  # refused before any step


def test_kill_stops_a_background_audit_and_says_so(tmp_path: Path, home: Path):
    """SIGTERM during an audit started as a script's background job (SIGINT ignored): the run stops, the CLI says
    which step was interrupted and why, exits 1, no stack trace."""
    import signal

    env = {**os.environ, "DAGSTER_HOME": str(home), "HF_HUB_OFFLINE": "1", "DQ_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [str(BIN / "dq-pipeline"), "audit", str(_flags_dataset(tmp_path / "flags")), "--db", str(tmp_path / "c.duckdb")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        seen = []
        for line in proc.stdout:  # the run has started once a step reports progress
            seen.append(line)
            if line.startswith("  raw_examples:"):
                break
        proc.send_signal(signal.SIGTERM)
        out = "".join(seen) + proc.stdout.read()
        assert proc.wait(timeout=120) == 1, out
    finally:
        proc.kill()
    failure = out[out.index("AUDIT FAILED"):]
    assert "interrupted: the process received SIGINT (Ctrl-C) or SIGTERM (kill) during this step" in failure
    assert "Traceback" not in out and "DagsterExecutionInterruptedError" not in out
