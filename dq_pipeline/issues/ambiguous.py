"""Ambiguous examples: the model cannot decide, whatever the given tags say.

This is not a label-error detector: an example whose given tags agree with borderline
probabilities is still ambiguous, and a confidently mislabelled example is not.

Decision thresholds
-------------------
By default a tag's decision threshold is **0.5** (``threshold=0.5``): out-of-fold probabilities of
logistic models are roughly calibrated, so "cannot decide" means "close to an even bet". The
alternative ``threshold="midpoint"`` gives each tag the midpoint of the mean probability over its
positives and over its negatives, which follows class imbalance (rare tags rarely cross 0.5), but on
many-tag data it calls most examples ambiguous: on the bundled GoEmotions sample (28 tags, 1,261
comments) midpoint + margin 0.1 flagged 69% of the examples, 0.5 + margin 0.1 flagged 10%
(MIML 400 photos: 5% / 5%; MULAN emotions: 29% / 26%). An explicit array of K thresholds is
accepted too.

Normalised distance
-------------------
For tag k with threshold ``t`` the probability is mapped to a signed distance
``z = (p - t) / t`` if ``p < t`` else ``(p - t) / (1 - t)``, so ``z`` is -1 at p = 0, 0 at the
threshold and +1 at p = 1 whatever ``t`` is. "Borderline" means ``|z| <= margin``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dq_pipeline.issues.base import DetectorResult

#: Half-width of the borderline band on the normalised scale (fraction of the way from the
#: threshold to 0 or to 1). 0.1 with t = 0.5 means p in [0.45, 0.55]; with t = 0.2,
#: p in [0.18, 0.28]. (Measured with 5-fold logistic-regression probabilities: 13% of MULAN
#: scene flagged, 32% of MULAN emotions, 86% of yeast, whose 14 tags are barely learnable.)
DEFAULT_MARGIN: float = 0.1
DEFAULT_THRESHOLD: str | float = 0.5
#: Co-occurring pairs: both tags within this (wider, 2 x margin) band of their thresholds ...
DEFAULT_PAIR_BAND: float = 0.2
#: ... and their normalised distances within this gap of each other.
DEFAULT_PAIR_GAP: float = 0.05
#: A tag pair counts as co-occurring when at least this many examples carry both tags.
DEFAULT_MIN_COOCCURRENCE: int = 5
_EPS = 1e-6

DETAIL_COLUMNS = ["example_index", "tag_index", "probability", "threshold", "distance", "reason"]


def tag_thresholds(P: np.ndarray, Y: np.ndarray,
                   method: str | float | Sequence[float] = DEFAULT_THRESHOLD) -> np.ndarray:
    """Per-tag decision thresholds, shape (K,), in (0, 1).

    ``"midpoint"``: ``(mean(p | y=1) + mean(p | y=0)) / 2`` per tag, falling back to 0.5 for a
    tag with no positives or no negatives. A float: that threshold for every tag. A sequence:
    one threshold per tag.
    """
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y).astype(bool)
    K = P.shape[1]
    if isinstance(method, str):
        if method != "midpoint":
            raise ValueError(f"unknown threshold method {method!r}")
        t = np.full(K, 0.5)
        n_pos = Y.sum(axis=0)
        ok = (n_pos > 0) & (n_pos < len(Y))
        if ok.any():
            mean_pos = np.where(Y, P, 0).sum(axis=0)[ok] / n_pos[ok]
            mean_neg = np.where(~Y, P, 0).sum(axis=0)[ok] / (len(Y) - n_pos[ok])
            t[ok] = (mean_pos + mean_neg) / 2
    else:
        t = np.broadcast_to(np.asarray(method, dtype=np.float64), (K,)).copy()
    return np.clip(t, _EPS, 1 - _EPS)


def normalised_distance(P: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Signed distance of each probability to its tag's threshold, in [-1, 1] (0 = on it)."""
    P = np.asarray(P, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)[None, :]
    return np.where(P < t, (P - t) / t, (P - t) / (1 - t))


def find_ambiguous(
    P: np.ndarray,
    Y: np.ndarray,
    *,
    margin: float = DEFAULT_MARGIN,
    threshold: str | float | Sequence[float] = DEFAULT_THRESHOLD,
    pair_band: float = DEFAULT_PAIR_BAND,
    pair_gap: float = DEFAULT_PAIR_GAP,
    min_cooccurrence: int = DEFAULT_MIN_COOCCURRENCE,
) -> DetectorResult:
    """Flag examples whose out-of-fold probabilities sit on a decision boundary.

    An example is ambiguous when

    * **borderline**: some tag has ``|z| <= margin`` (module docstring), or
    * **co-occurring pair**: two tags that co-occur in ``Y`` (>= ``min_cooccurrence`` examples
      carry both) both have ``|z| <= pair_band`` and ``|z_j - z_k| <= pair_gap``: the model
      gives two related tags the same lukewarm support and cannot tell which applies.

    Parameters
    ----------
    P : np.ndarray, shape (N, K)
        Out-of-fold probabilities in [0, 1].
    Y : np.ndarray, shape (N, K), 0/1
        Given tags (used for the midpoint thresholds and for tag co-occurrence only).
    margin, threshold, pair_band, pair_gap, min_cooccurrence
        See the module constants ``DEFAULT_*``; ``pair_band`` must be >= ``margin``.

    Returns
    -------
    DetectorResult
        ``scores`` (N,) in [0, 1], **low = more ambiguous**: the smallest ``|z|`` over tags,
        lowered for examples with an ambiguous pair to ``min(margin, max(|z_j - z_k|,
        max(|z_j|, |z_k|) * margin / pair_band))``, so that ``flags == (scores <= margin)``
        holds exactly.
        ``details``: one row per flagged (example, tag): ``example_index``, ``tag_index``,
        ``probability``, ``threshold``, ``distance`` (signed ``z``), ``reason``
        (``'borderline'`` or ``'co-occurring pair'``).
        ``summary``: ``n_ambiguous``, ``rate``, ``n_borderline`` / ``n_pair`` (examples per
        rule), ``per_tag_borderline`` {tag_index: rows in details}, ``thresholds`` (K),
        ``margin``, ``threshold_method``, ``pair_band``, ``pair_gap``, ``min_cooccurrence``.
    """
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y).astype(bool)
    if P.ndim != 2 or P.shape != Y.shape:
        raise ValueError(f"P {P.shape} and Y {Y.shape} must both be (N, K)")
    if pair_band < margin:
        raise ValueError("pair_band must be >= margin")
    n, K = P.shape

    t = tag_thresholds(P, Y, threshold)
    z = normalised_distance(P, t)
    az = np.abs(z)

    tag_flag = az <= margin  # (N, K) borderline cells
    scores = az.min(axis=1) if K else np.ones(n)
    borderline = tag_flag.any(axis=1)

    pair_flag = np.zeros((n, K), dtype=bool)
    Yf = Y.astype(np.float64)  # float products: BLAS (an int64 product is a slow loop at 1M rows)
    co = np.rint(Yf.T @ Yf)
    js, ks = np.nonzero(np.triu(co >= min_cooccurrence, k=1))
    # only rows with both tags inside the band can hit: search each pair among its first tag's band rows,
    # not all N rows (1M x 40 tags: 780 pairs x N was the step's time, 17.8x for 10x the rows)
    in_band = az <= pair_band
    band_rows = [np.flatnonzero(in_band[:, j]) for j in range(K)]
    for j, k in zip(js.tolist(), ks.tolist()):
        rows = band_rows[j][in_band[band_rows[j], k]]
        if not len(rows):
            continue
        gap = np.abs(z[rows, j] - z[rows, k])
        top = np.maximum(az[rows, j], az[rows, k])
        hit = gap <= pair_gap
        rows, pair_score = rows[hit], np.maximum(gap[hit], top[hit] * margin / pair_band)
        pair_flag[rows, j] = pair_flag[rows, k] = True
        # keep flags == scores <= margin: pairs only lower the score where they flag
        scores[rows] = np.minimum(scores[rows], np.minimum(pair_score, margin))
    scores = np.clip(scores, 0.0, 1.0)
    flags = scores <= margin
    pair_examples = pair_flag.any(axis=1)

    cells = tag_flag | pair_flag
    ex, tg = np.nonzero(cells)
    details = pd.DataFrame(
        {
            "example_index": ex.astype(np.int64),
            "tag_index": tg.astype(np.int64),
            "probability": P[ex, tg],
            "threshold": t[tg],
            "distance": z[ex, tg],
            "reason": np.where(tag_flag[ex, tg], "borderline", "co-occurring pair").astype(object),
        },
        columns=DETAIL_COLUMNS,
    )
    per_tag = np.bincount(tg, minlength=K)
    summary = {
        "n_ambiguous": int(flags.sum()),
        "rate": float(flags.mean()) if n else 0.0,
        "n_borderline": int(borderline.sum()),
        "n_pair": int(pair_examples.sum()),
        "per_tag_borderline": {int(k): int(c) for k, c in enumerate(per_tag)},
        "thresholds": [float(x) for x in t],
        "margin": float(margin),
        "threshold_method": threshold if isinstance(threshold, str) else "fixed",
        "pair_band": float(pair_band),
        "pair_gap": float(pair_gap),
        "min_cooccurrence": int(min_cooccurrence),
    }
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)
