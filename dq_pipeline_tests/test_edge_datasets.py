"""Whole audits of datasets at the edges of the label space: one class, no tags at all."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dq_pipeline import store
from dq_pipeline.defs.runner import run_audit
from dq_pipeline_tests.conftest import DATA

FLAGS = pd.read_csv(DATA / "mulan_flags" / "flags.csv", keep_default_na=False)


def _flags_with_labels(folder: Path, labels: list[str], classes: str = "") -> Path:
    folder.mkdir(parents=True)
    frame = FLAGS.assign(labels=labels)
    frame.to_csv(folder / "flags.csv", index=False)
    (folder / "dataset.yaml").write_text(
        "modality: tabular\nsource: flags.csv\n"
        f"labels: {{column: labels, separator: '|'{classes}}}\n"
        "categorical_columns: [landmass, zone, language, religion]\n")
    return folder


def test_a_single_class_dataset_audits_end_to_end(tmp_path: Path, db_path: str):
    """K = 1: whether each flag shows red (real tags of MULAN flags)."""
    red = ["red" if "red" in s.split("|") else "" for s in FLAGS["labels"]]
    outcome = run_audit(_flags_with_labels(tmp_path / "red_only", red), db_path=db_path)
    assert outcome.success, outcome.reason()
    runs = store.read_latest(db_path, "audit_runs", "red_only")
    assert runs["n_classes"].item() == 1 and runs["n_examples"].item() == len(FLAGS)
    summary = store.read_latest(db_path, "class_summary", "red_only")
    assert list(summary["tag"]) == ["red"] and summary["oof_auroc"].item() > 0.6
    predictions = store.read_latest(db_path, "predictions", "red_only")
    assert len(predictions) == len(FLAGS) and predictions["probability"].between(0, 1).all()


def test_a_dataset_without_any_tag_fails_its_gate_saying_so(tmp_path: Path, db_path: str):
    outcome = run_audit(_flags_with_labels(tmp_path / "no_tags", [""] * len(FLAGS), ", classes: [red]"),
                        db_path=db_path)
    assert not outcome.success
    assert "raw_examples" in outcome.reason() and "no example carries any tag" in outcome.reason()
    assert not Path(db_path).exists()  # nothing was written
