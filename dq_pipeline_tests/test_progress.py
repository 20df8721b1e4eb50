"""Progress lines: done / total, share, rate and time left; throttled, always reporting the end."""

from dq_pipeline.progress import progress_line, throttled


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
