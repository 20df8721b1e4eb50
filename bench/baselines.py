"""Model-free baselines for label-error detection: they look at the given tags only (no features, no P).

A detection method that does not beat these by a clear margin has learned nothing beyond "odd tag
sets are suspicious". Scores follow the benchmark's convention: in [0, 1], low = more likely an error.

* :func:`rarity_scores` - rank by how rare the example's exact tag set is in the given data (rarest
  first), random tie-break.
* :func:`empty_first_scores` - empty tag sets first, then by rarity (random tie-break).

Fair flagging rule (so the baselines also get flag precision / recall, stated in the report): flag the
examples whose exact tag set occurs once in the given data (:func:`rarity_flags`); empty-first also
flags every empty set (:func:`empty_first_flags`). They suggest nothing (no suggested tag sets).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def tag_set_counts(Y: np.ndarray) -> np.ndarray:
    """(N,) int: number of examples in ``Y`` (N, K) 0/1 with exactly the same tag set as each example."""
    Y = np.asarray(Y, dtype=np.uint8)
    keys = [row.tobytes() for row in Y]
    counts = Counter(keys)
    return np.array([counts[k] for k in keys], dtype=np.int64)


def _tie_break(n: int, seed: int) -> np.ndarray:
    """(N,) uniform jitter in [0, 1) for a seeded random order among tied examples."""
    return np.random.default_rng(seed).random(n)


def rarity_scores(Y: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) in (0, 1]: ``(count of the example's exact tag set - 1 + jitter) / N``, jitter in [0, 1).

    Low = rare set. Strictly ordered by the count first; ties between equally rare sets are broken
    at random (seeded) - without it, whole blocks of tied sets make the ranking metrics depend on
    sklearn's tie handling.
    """
    counts = tag_set_counts(Y)
    n = len(counts)
    return (counts - 1 + _tie_break(n, seed)) / max(n, 1)


def empty_first_scores(Y: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N,) in [0, 1]: empty tag sets first (scores in [0, 0.5)), then every other set by rarity
    (scores in [0.5, 1]); random tie-break inside both blocks."""
    Y = np.asarray(Y, dtype=np.uint8)
    empty = Y.sum(axis=1) == 0
    jitter = _tie_break(len(Y), seed)
    return np.where(empty, 0.5 * jitter, 0.5 + 0.5 * rarity_scores(Y, seed))


def rarity_flags(Y: np.ndarray) -> np.ndarray:
    """(N,) bool: the example's exact tag set occurs only once in ``Y``."""
    return tag_set_counts(Y) == 1


def empty_first_flags(Y: np.ndarray) -> np.ndarray:
    """(N,) bool: empty tag set, or a set that occurs only once."""
    Y = np.asarray(Y, dtype=np.uint8)
    return (Y.sum(axis=1) == 0) | rarity_flags(Y)
