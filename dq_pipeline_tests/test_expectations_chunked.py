"""The probabilities and features gates scan their matrix in chunks (no N x K melt), and still name
the example, row, tag and value of what is wrong. Real probabilities: cross-validation on the bundled
MULAN emotions data."""

from __future__ import annotations

import numpy as np
import pytest

from dq_pipeline.expectations import validate_features, validate_probabilities
from dq_pipeline_tests.conftest import DATA


@pytest.fixture(scope="module")
def emotions():
    from dq_pipeline import model as cv
    from dq_pipeline.embed.tabular import featurize_tabular
    from dq_pipeline.ingest import load_examples, tags_matrix
    from dq_pipeline.manifest import load_manifest

    result = load_examples(load_manifest(DATA / "mulan_emotions"))
    ex = result.examples
    X = featurize_tabular(ex, [c for c in ex.columns if c not in ("example_id", "row_number", "tags")])
    Y = tags_matrix(ex["tags"], result.classes)
    P = cv.out_of_fold_probabilities(X, Y, 3, 0).probabilities
    return list(ex["example_id"]), result.classes, X, P


def test_real_probabilities_pass_in_any_chunking(emotions) -> None:
    ids, classes, _, P = emotions
    seen: list[tuple[int, int]] = []
    for chunk_rows in (7, 100, 10_000):
        result = validate_probabilities(P, ids, classes, chunk_rows=chunk_rows,
                                        progress=lambda d, t: seen.append((d, t)))
        assert result.success, result.describe()
    assert seen[-1] == (len(ids), len(ids)) and (7, len(ids)) in seen
    assert validate_probabilities(P.astype(np.float32), ids, classes).success


def test_bad_cells_are_counted_and_named_across_chunks(emotions) -> None:
    ids, classes, _, P = emotions
    bad = P.copy()
    bad[[5, 300, 301], 2] = np.nan
    bad[590, 0] = 1.25
    bad[[10, 11], [1, 4]] = -0.5
    result = validate_probabilities(bad, ids, classes, source="emotions", chunk_rows=64)
    assert not result.success
    by_column = {f.column: f for f in result.failures}
    assert set(by_column) == {"n_null", "n_below_0", "n_above_1"}
    assert [by_column[c].unexpected_count for c in ("n_null", "n_below_0", "n_above_1")] == [3, 2, 1]
    assert by_column["n_above_1"].sample == [
        {"example_id": ids[590], "row": 590, "tag": classes[0], "probability": 1.25}]
    assert [(s["row"], s["tag"]) for s in by_column["n_null"].sample] == [(5, classes[2]), (300, classes[2]),
                                                                          (301, classes[2])]
    text = result.describe()
    assert text.startswith("gate 'probabilities' (emotions) FAILED: 3 probabilities missing (NaN)")
    assert f"example_id={ids[590]!r}, row=590, tag={classes[0]!r}, probability=1.25" in text
    assert "2 probabilities below 0" in text and "1 probability above 1" in text


def test_shape_and_uniqueness_failures(emotions) -> None:
    ids, classes, _, P = emotions
    short = validate_probabilities(P[:-1], ids, classes)
    assert not short.success and f"shape {P[:-1].shape}, expected {P.shape}" in short.describe()
    doubled = validate_probabilities(P, ids[:-1] + [ids[0]], classes)
    assert not doubled.success and f"example id(s) [{ids[0]!r}] appear more than once" in doubled.describe()
    tags = validate_probabilities(P, ids, classes[:-1] + [classes[0]])
    assert not tags.success and f"tag(s) [{classes[0]!r}] appear more than once" in tags.describe()


def test_features_gate_names_the_non_finite_row(emotions) -> None:
    ids, _, X, _ = emotions
    assert validate_features(X, ids).success
    bad = X.copy()
    bad[400, 3] = np.inf
    result = validate_features(bad, ids)
    assert not result.success and f"example_id={ids[400]!r}" in result.describe()
