"""Progress lines: done / total, share, rate and time left; throttled, always reporting the end."""

import time

import numpy as np

from dq_pipeline.model import out_of_fold_probabilities
from dq_pipeline.progress import heartbeat, progress_line, throttled


def test_progress_line_reads_like_a_sentence():
    assert progress_line("text embeddings", 640, 1280, 4.0, "texts") == \
        "text embeddings: 640/1280 (50%), 160.0 texts/s, about 4 s left"
    assert progress_line("folds", 5, 5, 2.5, "folds") == "folds: 5/5 (100%), done in 2.5 s (2.0 folds/s)"
    assert progress_line("folds", 0, 5, 0.0, "folds") == "folds: 0/5 (0%), 0.0 folds/s"  # no rate yet: no ETA


def test_throttled_reports_at_most_every_interval_and_always_the_end():
    lines: list[str] = []
    report = throttled(lines.append, "stage", "rows", every_s=3600)
    for done in range(1, 101):
        report(done, 100)
    assert len(lines) == 2  # the first call, then the end
    assert lines[0].startswith("stage: 1/100 (1%)") and lines[-1].startswith("stage: 100/100 (100%), done in")


def test_a_zero_report_starts_the_clock_after_a_setup():
    lines: list[str] = []
    report = throttled(lines.append, "stage", "rows", every_s=0.0)
    time.sleep(0.3)  # loading a model: not part of the rate
    report(0, 100)
    assert lines == []  # nothing to say yet
    report(100, 100)
    assert lines[0].startswith("stage: 100/100 (100%), done in 0.0 s")


def test_heartbeat_reports_start_beats_and_end_of_a_stage_without_a_count():
    lines: list[str] = []
    with heartbeat(lines.append, "assigning folds", every_s=0.05):
        time.sleep(0.3)
    assert lines[0] == "assigning folds: started"
    beats = [line for line in lines if "still running" in line]
    assert 2 <= len(beats) <= 7 and all(b.endswith("s so far") for b in beats)
    assert lines[-1].startswith("assigning folds: done in 0.") and len(lines) == len(beats) + 2
    with heartbeat(None, "silent"):  # no emitter: nothing to report, the block still runs
        lines.append("ran")
    assert lines[-1] == "ran"


def test_cross_validation_reports_its_fold_assignment():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    Y = (X[:, :3] + rng.standard_normal((200, 3)) > 0.5).astype(int)
    lines: list[str] = []
    out_of_fold_probabilities(X, Y, n_folds=3, note=lines.append)
    assert lines[0] == "cross-validation: assigning 200 rows x 3 tags to 3 multilabel-stratified folds: started"
    assert lines[-1].startswith("cross-validation: assigning 200 rows x 3 tags to 3 multilabel-stratified folds: "
                                "done in ")
