"""Tabular features on a real slice of the MULAN flags data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dq_pipeline.embed.tabular import build_tabular_transformer, featurize_tabular
from dq_pipeline_tests.conftest import DATA

FLAGS = DATA / "mulan_flags" / "flags.csv"


@pytest.fixture()
def flags() -> pd.DataFrame:
    frame = pd.read_csv(FLAGS, keep_default_na=False).drop(columns="labels").head(60).copy()
    # religion as text categories (pandas 3: default ``str`` dtype), with a missing value
    frame["religion"] = frame["religion"].map(lambda v: f"religion_{v}")
    frame.loc[3, "religion"] = np.nan
    frame.loc[5, "area"] = np.nan
    return frame


def test_mixed_columns_give_finite_scaled_and_one_hot_features(flags: pd.DataFrame) -> None:
    assert pd.api.types.is_string_dtype(flags["religion"].dtype)
    features = featurize_tabular(flags)
    n_numeric = flags.shape[1] - 1
    n_religions = flags["religion"].nunique()  # NaN imputed with the most frequent religion
    assert features.shape == (60, n_numeric + n_religions)
    assert features.dtype == np.float64
    assert np.isfinite(features).all()
    numeric = features[:, :n_numeric]
    np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-9)
    one_hot = features[:, n_numeric:]
    assert set(np.unique(one_hot)) == {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)
    most_frequent = flags["religion"].mode()[0]
    row_of_most_frequent = flags.index[flags["religion"] == most_frequent][0]
    np.testing.assert_array_equal(one_hot[3], one_hot[row_of_most_frequent])


def test_feature_columns_select_and_kinds_are_detected(flags: pd.DataFrame) -> None:
    flags["has_icon"] = flags["icon"].astype(bool)
    flags["zone_cat"] = pd.Categorical(flags["zone"].astype(str))
    flags["bars_nullable"] = pd.array([1, None] * 30, dtype="Int64")
    flags["nothing"] = np.nan
    flags["no_text"] = pd.Series([None] * 60, dtype="str")
    columns = ["area", "bars_nullable", "religion", "has_icon", "zone_cat", "nothing", "no_text"]
    transformer = build_tabular_transformer(flags, columns)
    kinds = {name: list(cols) for name, _, cols in transformer.transformers}
    assert kinds == {
        "numeric": ["area", "bars_nullable"],
        "categorical": ["religion", "has_icon", "zone_cat"],
    }
    features = featurize_tabular(flags, columns)
    width = 2 + flags["religion"].nunique() + 2 + flags["zone_cat"].nunique()
    assert features.shape == (60, width)
    assert np.isfinite(features).all()


def test_fitted_transformer_ignores_unseen_categories(flags: pd.DataFrame) -> None:
    transformer = build_tabular_transformer(flags)
    transformer.fit(flags)
    unseen = flags.head(2).copy()
    unseen["religion"] = "religion_unknown"
    out = transformer.transform(unseen)
    assert np.isfinite(out).all()
    assert out[:, -flags["religion"].nunique():].sum() == 0


def test_only_empty_columns_is_an_error(flags: pd.DataFrame) -> None:
    flags["nothing"] = np.nan
    with pytest.raises(ValueError, match="no usable feature column"):
        featurize_tabular(flags, ["nothing"])
