"""The `dq-pipeline` command: audit exit codes and messages, export round trip, --help."""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dq_pipeline import store
from dq_pipeline.cli import main
from dq_pipeline.ingest import load_examples
from dq_pipeline.manifest import load_manifest
from dq_pipeline_tests.conftest import TABULAR_MANIFEST, write_dataset

FLAGS_MANIFEST = """modality: tabular
source: flags.csv
labels: {column: labels, separator: "|"}
categorical_columns: [landmass, zone, language, religion]
"""


@pytest.fixture
def flags_folder(tmp_path: Path) -> Path:
    frame = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "mulan_flags" / "flags.csv",
                        keep_default_na=False)
    return write_dataset(tmp_path / "data" / "flags", frame, FLAGS_MANIFEST, "flags.csv")


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "dq_pipeline.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("audit", "demo", "export"):
        assert word in out.stdout


def test_audit_then_export_round_trip(flags_folder: Path, db_path: str, tmp_path: Path, capsys):
    started = time.perf_counter()
    assert main(["audit", str(flags_folder), "--db", db_path]) == 0
    wall = time.perf_counter() - started
    printed = capsys.readouterr().out
    assert "flags" in printed and "health_score" in printed and db_path in printed
    # where the time went: every step of the run, in start order, from the run's own step events
    line = next(li for li in printed.splitlines() if li.strip().startswith("step seconds: "))
    steps = dict(part.rsplit(" ", 1) for part in line.split("step seconds: ", 1)[1].split(", "))
    assert list(steps)[0] == "raw_examples" and {"features", "oof_probabilities", "label_issues",
                                                 "curated", "curated_nothing_lost"} <= set(steps)
    assert all(float(v) >= 0 for v in steps.values()) and sum(map(float, steps.values())) < wall
    # the closing line names exactly the tables the DuckDB file holds
    listed = set(next(li for li in printed.splitlines() if li.startswith("DuckDB: "))
                 .split("(tables: ", 1)[1].split(";", 1)[0].split(", "))
    import duckdb
    with duckdb.connect(db_path, read_only=True) as con:
        held = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
                .fetchall()} - {"schema_version"}
    assert listed == held

    out = tmp_path / "fixed.csv"
    assert main(["export", "flags", "--out", str(out), "--data-dir", str(flags_folder.parent), "--db", db_path]) == 0
    original = pd.read_csv(flags_folder / "flags.csv", keep_default_na=False)
    exported = pd.read_csv(out, keep_default_na=False)
    assert list(exported.columns) == list(original.columns) and len(exported) == len(original)
    pd.testing.assert_frame_equal(exported.drop(columns="labels"), original.drop(columns="labels"))
    # re-read with the same manifest: the tags are exactly curated_labels
    folder2 = write_dataset(tmp_path / "again" / "flags", exported, FLAGS_MANIFEST, "flags.csv")
    reread = load_examples(load_manifest(folder2)).examples.set_index("example_id")["tags"]
    curated = store.read_latest(db_path, "curated_labels", "flags").set_index("example_id")["labels"]
    assert {k: sorted(v) for k, v in reread.items()} == {k: sorted(v) for k, v in curated.items()}
    changed = store.read_latest(db_path, "curated_labels", "flags")["reason"].ne("").sum()
    assert changed > 0  # the audit did correct something, so the round trip is not trivially equal
    assert (exported["labels"] != original["labels"]).sum() == changed


def test_audit_gate_failure_exits_nonzero_with_reason(tmp_path: Path, db_path: str, emotions_frame, capsys):
    frame = emotions_frame.iloc[:3]
    folder = write_dataset(tmp_path / "tiny", frame, TABULAR_MANIFEST)
    assert main(["audit", str(folder), "--db", db_path]) == 1
    err = capsys.readouterr().err
    assert "AUDIT FAILED for tiny" in err and "raw_examples_gate" in err and "row_count" in err


def test_audit_requires_a_dataset_folder(tmp_path: Path, capsys):
    assert main(["audit", str(tmp_path)]) == 2
    assert "dataset.yaml not found" in capsys.readouterr().err


def test_export_without_audit_is_explained(flags_folder: Path, db_path: str, tmp_path: Path, capsys):
    code = main(["export", "flags", "--out", str(tmp_path / "x.csv"), "--data-dir", str(flags_folder.parent),
                 "--db", db_path])
    assert code == 2 and "no successful audit" in capsys.readouterr().err
