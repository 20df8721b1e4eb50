"""Tabular features: a scikit-learn ColumnTransformer (impute + scale numbers, impute + one-hot the rest).

Hostile input is refused or bounded, never passed on silently:

- a numeric cell that is infinite, or so large that standardising its column would overflow float64,
  raises ``ValueError`` naming the column, the row (position, index label and the frame's
  ``example_id`` / ``row_number`` when present) and the value; the output is checked to be finite too;
- a categorical column does not explode into one one-hot column per row: an id-like column (every
  row a distinct value) is dropped, and one with more than ``max_categories`` distinct values keeps a
  column only for its most frequent values seen at least twice, the rest sharing one "infrequent"
  column; both are logged at WARNING.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

log = logging.getLogger(__name__)

#: Default cap on the one-hot columns of one categorical column (see :func:`plan_tabular_columns`).
MAX_CATEGORIES = 50
#: A categorical column is id-like (dropped) when it has a distinct value in every row, from this many rows.
ID_LIKE_MIN_ROWS = 20
#: Columns that identify a row in error messages when the frame has them (the pipeline's examples do).
ID_COLUMNS = ("example_id", "row_number")


def _is_numeric(series: pd.Series) -> bool:
    """Numbers (incl. nullable Int64/Float64) are numeric; bool, category and text are not."""
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _to_float(x: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Numeric block -> float64 with NaN for missing (handles pandas nullable dtypes / pd.NA)."""
    frame = pd.DataFrame(x)
    if all(isinstance(d, np.dtype) and d.kind in "fiu" for d in frame.dtypes):  # plain numpy numbers: one copy
        return frame.to_numpy(dtype=np.float64)  # (to_numeric would return them as they are)
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


@dataclass(frozen=True)
class TabularColumns:
    """How each feature column is encoded.

    numeric : standardised columns. categorical : one-hot, one column per value.
    capped : one-hot with at most ``max_categories`` columns (values seen once and the least frequent
    share one "infrequent" column). dropped : column -> reason (empty and id-like columns).
    """

    numeric: list[str]
    categorical: list[str]
    capped: list[str]
    dropped: dict[str, str] = field(default_factory=dict)


def plan_tabular_columns(
    frame: pd.DataFrame, feature_columns: Sequence[str] | None = None, max_categories: int | None = MAX_CATEGORIES
) -> TabularColumns:
    """Sort ``frame[feature_columns]`` into numeric, categorical, capped and dropped columns.

    Categorical (non-numeric) values are compared as strings, missing not counted. One-hot gives a
    value seen in a single row a column of its own that no held-out row can share and that only adds
    the same distance to every pair of rows (and makes every row's content unique, hiding exact
    duplicates). So:

    - an **id-like** column, with a value in every row and every value distinct (names, keys,
      timestamps), is **dropped** when the frame has at least ``ID_LIKE_MIN_ROWS`` (20) rows (in a
      smaller frame distinct values may be chance);
    - a column with more than ``max_categories`` distinct values is **capped**: sklearn's
      ``OneHotEncoder(min_frequency=2, max_categories=...)`` keeps a column for each of the most
      frequent values seen at least twice (at most ``max_categories - 1``) and one shared
      "infrequent" column for the rest;
    - any other categorical column is one-hot encoded in full, one column per value, as before.

    Dropped and capped columns are logged at WARNING with their counts. ``max_categories=None`` turns
    capping off. Columns without any value are dropped too (reason recorded, not logged). ValueError
    for a complex-valued column, or when no column is left (the reasons named).
    """
    if max_categories is not None and max_categories < 2:
        raise ValueError(f"max_categories must be >= 2 or None, got {max_categories}")
    columns = list(frame.columns if feature_columns is None else feature_columns)
    usable = _usable_columns(frame, columns)
    dropped = {c: "no value" for c in columns if c not in set(usable)}
    numeric, categorical, capped = [], [], []
    for c in usable:
        if pd.api.types.is_complex_dtype(frame[c].dtype):
            raise ValueError(f"column {c!r} holds complex numbers; give real parts or text")
        if _is_numeric(frame[c]):
            numeric.append(c)
            continue
        values = _to_category_strings(frame[[c]])[:, 0]
        present = values[~pd.isna(values)]
        n_distinct = len(pd.unique(present))
        if n_distinct == len(frame) >= ID_LIKE_MIN_ROWS:
            dropped[c] = (f"id-like: a distinct value in each of the {n_distinct} rows; one-hot would add "
                          f"{n_distinct} columns that no other row shares")
            log.warning("tabular features: column %r dropped: %s", c, dropped[c])
        elif max_categories is None or n_distinct <= max_categories:
            categorical.append(c)
        else:
            capped.append(c)
            log.warning("tabular features: column %r has %d distinct values in %d rows (> max_categories=%d): "
                        "one-hot keeps at most %d frequent values (seen >= 2 times), the rest share one "
                        "'infrequent' column", c, n_distinct, len(present), max_categories, max_categories - 1)
    if not numeric and not categorical and not capped:
        raise ValueError(f"no usable feature column: {dropped}")
    return TabularColumns(numeric, categorical, capped, dropped)


def build_tabular_transformer(
    frame: pd.DataFrame, feature_columns: Sequence[str] | None = None, max_categories: int | None = MAX_CATEGORIES
) -> ColumnTransformer:
    """Unfitted ColumnTransformer for ``frame[feature_columns]``.

    Numeric columns: median imputation + standard scaling. Everything else (text, pandas ``str``,
    category, bool, object): most-frequent imputation + one-hot (unknown categories ignored), with
    high-cardinality columns capped or dropped as :func:`plan_tabular_columns` says. Columns with no
    value at all are left out.

    Parameters
    ----------
    frame : pd.DataFrame
        Used only to pick columns and their kinds (and count categories).
    feature_columns : sequence of str, optional
        Columns to use; default every column of ``frame``.
    max_categories : int or None
        Cap on the one-hot columns of one categorical column; None for no cap.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    plan = plan_tabular_columns(frame, feature_columns, max_categories)

    def one_hot(**kwargs) -> object:
        return make_pipeline(
            FunctionTransformer(_to_category_strings, feature_names_out="one-to-one"),
            SimpleImputer(strategy="most_frequent", keep_empty_features=True),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False, **kwargs),
        )

    transformers = []
    if plan.numeric:
        transformers.append(
            (
                "numeric",
                make_pipeline(
                    FunctionTransformer(_to_float, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="median", keep_empty_features=True),
                    StandardScaler(),
                ),
                plan.numeric,
            )
        )
    if plan.categorical:
        transformers.append(("categorical", one_hot(), plan.categorical))
    if plan.capped:
        transformers.append(("capped", one_hot(min_frequency=2, max_categories=max_categories), plan.capped))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _show(value: object) -> str:
    """repr of a cell, numpy scalars as plain Python ones (``inf``, not ``np.float64(inf)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _describe_row(frame: pd.DataFrame, i: int, id_columns: Sequence[str]) -> str:
    """'row 7 (index 7, example_id='x')': position, index label and any id columns the frame has."""
    parts = [f"index {_show(frame.index[i])}"]
    parts += [f"{c}={_show(frame[c].iloc[i])}" for c in id_columns if c in frame.columns]
    return f"row {i} ({', '.join(parts)})"


def _check_numeric_input(frame: pd.DataFrame, numeric: Sequence[str], id_columns: Sequence[str]) -> None:
    """ValueError for an infinite numeric cell, or a column that cannot be standardised in float64.

    Standardising squares deviations from the mean and sums N of them: with every |x| <= sqrt(max
    float64 / (4 N)) (about 6.7e153 for 100 rows) nothing overflows. At the other end, a column whose
    values differ by less than 1e-150 in all would have its variance underflow (squares below the
    smallest normal float64, about 2.2e-308) and silently become a constant. Real measurements are far
    from both limits.
    """
    if not numeric:
        return
    values = _to_float(frame[list(numeric)])  # (N, p); NaN = missing, imputed later
    limit = np.sqrt(np.finfo(np.float64).max / (4.0 * max(len(frame), 1)))
    tiny_spread = 1e-150
    for j, column in enumerate(numeric):
        col = values[:, j]
        bad = np.flatnonzero(np.isinf(col))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"column {column!r}, {_describe_row(frame, i, id_columns)}: value "
                             f"{_show(frame[column].iloc[i])} is not finite ({bad.size} such row(s)); "
                             "fix or remove it (missing values may be left empty)")
        size = np.abs(np.nan_to_num(col, nan=0.0))
        if size.size and size.max() > limit:
            i = int(size.argmax())
            raise ValueError(f"column {column!r}, {_describe_row(frame, i, id_columns)}: value "
                             f"{_show(frame[column].iloc[i])} is too large to standardise in float64 "
                             f"(|value| must be <= {limit:.3g} for {len(frame)} rows; "
                             f"{int((size > limit).sum())} such row(s)); rescale the column")
        present = col[~np.isnan(col)]
        spread = float(present.max() - present.min()) if present.size else 0.0
        if 0.0 < spread < tiny_spread:
            i = int(np.nanargmax(np.abs(col - np.nanmedian(col))))
            raise ValueError(f"column {column!r}, {_describe_row(frame, i, id_columns)}: value "
                             f"{_show(frame[column].iloc[i])}: the column's values differ by only {spread:.3g}, "
                             f"too little to standardise in float64 (needs >= {tiny_spread:g}); rescale the column")


def featurize_tabular(
    frame: pd.DataFrame,
    feature_columns: Sequence[str] | None = None,
    *,
    max_categories: int | None = MAX_CATEGORIES,
    id_columns: Sequence[str] = ID_COLUMNS,
) -> np.ndarray:
    """Fit the tabular transformer on ``frame`` and return its features.

    Parameters
    ----------
    frame : pd.DataFrame, N rows.
    feature_columns : columns to use; default every column.
    max_categories : cap on one categorical column's one-hot width; None for no cap. Id-like
        columns are dropped, wider ones capped, with a WARNING log (see :func:`plan_tabular_columns`).
    id_columns : columns that, when the frame has them, identify a row in error messages.

    Returns
    -------
    np.ndarray, shape (N, D), float64
        Finite; D = #numeric columns + the one-hot widths of the categorical columns (distinct values,
        or at most ``max_categories`` for a capped column).

    Raises
    ------
    ValueError
        Naming the column, row and value, for an infinite numeric cell or one whose column cannot be
        standardised in float64 (see :func:`_check_numeric_input`); also if, against expectation, any
        output is not finite. Never returns NaN or inf.
    """
    transformer = build_tabular_transformer(frame, feature_columns, max_categories)
    numeric = next((cols for name, _, cols in transformer.transformers if name == "numeric"), [])
    _check_numeric_input(frame, numeric, id_columns)
    columns = [c for _, _, cols in transformer.transformers for c in cols]
    with np.errstate(over="ignore", invalid="ignore"):  # checked below, with the column named
        features = np.asarray(transformer.fit_transform(frame[columns]), dtype=np.float64)
    finite = np.isfinite(features)
    if not finite.all():  # defence in depth: the input checks above should make this unreachable
        i, j = (int(v) for v in np.argwhere(~finite)[0])
        name = transformer.get_feature_names_out()[j]
        block, cols = next((b, cols) for b, _, cols in transformer.transformers
                           if transformer.output_indices_[b].start <= j < transformer.output_indices_[b].stop)
        # numeric outputs are one per input column; a one-hot block can only be named as a whole
        source = cols[j - transformer.output_indices_[block].start] if block == "numeric" else cols[0]
        raise ValueError(f"column {source!r}, {_describe_row(frame, i, id_columns)}: value "
                         f"{_show(frame[source].iloc[i])} gives a non-finite feature {name!r} ({features[i, j]})")
    return features


def fit_tabular_transformer(
    frame: pd.DataFrame,
    feature_columns: Sequence[str] | None = None,
    *,
    max_categories: int | None = MAX_CATEGORIES,
    id_columns: Sequence[str] = ID_COLUMNS,
) -> tuple[ColumnTransformer, list[str]]:
    """The ColumnTransformer of :func:`featurize_tabular`, fitted on ``frame`` (input checked the same
    way), and the input columns its ``transform`` takes, in order. ``transform`` of any block of rows
    then gives exactly those rows of ``featurize_tabular(frame, ...)`` (the distributed path uses it)."""
    transformer = build_tabular_transformer(frame, feature_columns, max_categories)
    numeric = next((cols for name, _, cols in transformer.transformers if name == "numeric"), [])
    _check_numeric_input(frame, numeric, id_columns)
    columns = [c for _, _, cols in transformer.transformers for c in cols]
    with np.errstate(over="ignore", invalid="ignore"):
        transformer.fit(frame[columns])
    return transformer, columns


def row_keys(X: np.ndarray, chunk_rows: int = 65_536) -> list[str]:
    """Exact-duplicate key of each row of X (N, D): the same hex SHA-1 as
    :func:`dq_pipeline.issues.duplicates.row_key` gives row by row (float64 bytes, ``-0.0`` as ``0.0``, one
    NaN bit pattern), normalised in blocks of ``chunk_rows`` rows instead of one small array per row."""
    import hashlib

    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be (N, D), got shape {X.shape}")
    keys: list[str] = []
    sha1 = hashlib.sha1
    for start in range(0, len(X), chunk_rows):
        block = np.ascontiguousarray(np.asarray(X[start:start + chunk_rows], dtype=np.float64) + 0.0)
        block[np.isnan(block)] = np.nan  # one NaN bit pattern, as row_key's np.where(isnan, nan, row)
        keys += [sha1(row).hexdigest() for row in block]
    return keys
