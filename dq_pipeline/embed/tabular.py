"""Tabular features: a scikit-learn ColumnTransformer (impute + scale numbers, impute + one-hot the rest)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer


def _is_numeric(series: pd.Series) -> bool:
    """Numbers (incl. nullable Int64/Float64) are numeric; bool, category and text are not."""
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _to_float(x: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Numeric block -> float64 with NaN for missing (handles pandas nullable dtypes / pd.NA)."""
    frame = pd.DataFrame(x)
    return frame.apply(pd.to_numeric, errors="coerce").astype("float64").to_numpy()


def _to_category_strings(x: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Categorical block -> object array of ``str`` with ``np.nan`` for missing.

    Uniform Python strings keep ``OneHotEncoder`` from failing on mixed types (e.g. ``1`` and
    ``"1"``, bools, categories) and ``SimpleImputer`` sees one missing marker whatever the dtype
    (pandas 3 ``str`` columns use NaN, nullable ones ``pd.NA``).
    """
    frame = pd.DataFrame(x)
    values = frame.astype(object).to_numpy()
    missing = frame.isna().to_numpy()
    out = values.astype(str).astype(object)
    out[missing] = np.nan
    return out


def _usable_columns(frame: pd.DataFrame, feature_columns: Sequence[str] | None) -> list[str]:
    columns = list(frame.columns if feature_columns is None else feature_columns)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(f"feature columns not in the frame: {missing}")
    # a column with no value at all carries no information: drop it
    usable = [c for c in columns if frame[c].notna().any()]
    if not usable:
        raise ValueError(f"no usable feature column (all empty or none given): {columns}")
    return usable


def build_tabular_transformer(
    frame: pd.DataFrame, feature_columns: Sequence[str] | None = None
) -> ColumnTransformer:
    """Unfitted ColumnTransformer for ``frame[feature_columns]``.

    Numeric columns: median imputation + standard scaling. Everything else (text, pandas ``str``,
    category, bool, object): most-frequent imputation + one-hot (unknown categories ignored).
    Columns with no value at all are left out.

    Parameters
    ----------
    frame : pd.DataFrame
        Used only to pick columns and their kinds.
    feature_columns : sequence of str, optional
        Columns to use; default every column of ``frame``.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    columns = _usable_columns(frame, feature_columns)
    numeric = [c for c in columns if _is_numeric(frame[c])]
    categorical = [c for c in columns if c not in set(numeric)]
    transformers = []
    if numeric:
        transformers.append(
            (
                "numeric",
                make_pipeline(
                    FunctionTransformer(_to_float, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="median", keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                make_pipeline(
                    FunctionTransformer(_to_category_strings, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                categorical,
            )
        )
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def featurize_tabular(frame: pd.DataFrame, feature_columns: Sequence[str] | None = None) -> np.ndarray:
    """Fit the tabular transformer on ``frame`` and return its features.

    Returns
    -------
    np.ndarray, shape (N, D), float64
        Finite; D = #numeric columns + total distinct values of the categorical columns.
    """
    transformer = build_tabular_transformer(frame, feature_columns)
    columns = [c for _, _, cols in transformer.transformers for c in cols]
    features = transformer.fit_transform(frame[columns])
    return np.asarray(features, dtype=np.float64)
