"""The one shape every issue detector returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class DetectorResult:
    """Output of an issue detector over N examples.

    Attributes
    ----------
    scores : np.ndarray, shape (N,), float64 in [0, 1]
        Per-example score; **low = more severe** (more likely a problem), as in cleanlab.
    flags : np.ndarray, shape (N,), bool
        True where the example is flagged for this issue.
    summary : dict
        Dataset-level summary (JSON-serialisable scalars/lists): counts, rates, thresholds used.
    details : pd.DataFrame | None
        Optional detector-specific rows (e.g. per (example, tag) flags, duplicate groups),
        indexed by position (column ``example_index`` = row position in the input arrays).
    """

    scores: np.ndarray
    flags: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)
    details: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64)
        flags = np.asarray(self.flags, dtype=bool)
        if scores.ndim != 1 or flags.shape != scores.shape:
            raise ValueError(f"scores {scores.shape} and flags {flags.shape} must be 1-d and equal")
        if scores.size and (np.nanmin(scores) < 0 or np.nanmax(scores) > 1):
            raise ValueError("detector scores must lie in [0, 1]")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "flags", flags)

    @property
    def n_flagged(self) -> int:
        return int(self.flags.sum())
