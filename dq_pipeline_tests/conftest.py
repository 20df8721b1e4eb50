"""Shared fixtures: small real datasets written to tmp folders, a temporary DuckDB file.

Every test reads data from inside the repository: the bundled ``data/`` folder (``DATA``) or the
small extracts under ``dq_pipeline_tests/fixtures/`` (``FIXTURES``; see make_fixtures.py there).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pandas as pd
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["DAGSTER_TELEMETRY_DISABLED"] = "1"
os.environ.pop("DAGSTER_HOME", None)  # tests use ephemeral Dagster instances
# one fresh embedding + result cache per test session (never the repository's .cache)
os.environ["DQ_CACHE_DIR"] = tempfile.mkdtemp(prefix="dq_pipeline_cache_")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # small extracts the bundled data lacks


@pytest.fixture(autouse=True)
def _signal_handlers_per_test():
    """Each test gets back the SIGINT / SIGTERM handlers it started with: a test that runs Dagster or Ray directly
    (``dg.materialize``, ``ray.init``) must not change how the next one can be interrupted or terminated."""
    from dq_pipeline.runtime import keep_signal_handlers

    with keep_signal_handlers():
        yield


def write_dataset(folder: Path, frame: pd.DataFrame, manifest: str, source: str = "data.csv") -> Path:
    """Write ``frame`` as the source file (format from its suffix) plus ``dataset.yaml`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / source
    if source.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif source.endswith(".tsv"):
        frame.to_csv(path, index=False, sep="\t")
    elif source.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)
    (folder / "dataset.yaml").write_text(manifest)
    return folder


def stop_process_group(proc: subprocess.Popen, timeout_s: float = 30) -> None:
    """Stop a server started with ``start_new_session=True`` and every process it spawned: SIGTERM to
    its process group, SIGKILL when it lingers past ``timeout_s``."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "curated.duckdb")


@pytest.fixture
def emotions_frame() -> pd.DataFrame:
    """MULAN emotions (593 real rows, 72 numeric features, 6 tags)."""
    return pd.read_csv(DATA / "mulan_emotions" / "emotions.csv", keep_default_na=False)


@pytest.fixture
def emotions_xy(emotions_frame: pd.DataFrame):
    """MULAN emotions as (X (593, 72) float, Y (593, 6) uint8 in sorted tag order)."""
    from dq_pipeline.ingest import tags_matrix

    classes = sorted({t for s in emotions_frame["labels"] for t in s.split("|") if t})
    Y = tags_matrix([s.split("|") for s in emotions_frame["labels"]], classes)
    X = emotions_frame.drop(columns="labels").to_numpy(float)
    return X, Y


@pytest.fixture
def image_dataset(tmp_path: Path) -> Path:
    """60 real MIML photos with their labels: 20 deserts (including the near-duplicate pairs 37/41 and
    39/43) and 40 photos drawn at random from the whole set."""
    src = DATA / "miml_scenes"
    labels = pd.read_csv(src / "labels.csv", keep_default_na=False).iloc[30:90].reset_index(drop=True)
    folder = tmp_path / "miml_small"
    (folder / "images").mkdir(parents=True)
    for rel in labels["image"]:
        shutil.copyfile(src / rel, folder / rel)
    return write_dataset(folder, labels, MIML_MANIFEST, "labels.csv")


@pytest.fixture
def text_dataset(tmp_path: Path) -> Path:
    """300 real GoEmotions comments from the bundled sample."""
    frame = pd.read_csv(DATA / "goemotions_sample" / "comments.csv", keep_default_na=False).iloc[:300]
    return write_dataset(tmp_path / "goemo_small", frame, TEXT_MANIFEST, "comments.csv")


MIML_MANIFEST = """modality: image
source: labels.csv
labels: {column: labels, separator: "|", classes: [desert, mountains, sea, sunset, trees]}
id_column: image
image_column: image
"""
TEXT_MANIFEST = """modality: text
source: comments.csv
labels: {column: labels, separator: "|"}
id_column: id
text_column: text
"""
TABULAR_MANIFEST = """modality: tabular
source: data.csv
labels: {column: labels, separator: "|"}
"""
