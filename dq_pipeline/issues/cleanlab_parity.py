"""Multi-label label issues that reproduce cleanlab 2.9's defaults exactly, vectorised across tags.

cleanlab (``cleanlab.multilabel_classification``) treats every tag as its own binary problem and loops
over tags in Python, rebuilding and re-validating the data each time. Here the same arithmetic runs on
arrays that hold many tags at once. Results are bit-for-bit those of cleanlab 2.9.0 with default
arguments, which the differential tests check (cleanlab is a dev/bench dependency only; this module
never imports it):

* :func:`label_quality_scores` = ``multilabel_classification.get_label_quality_scores``
  (per-tag self-confidence, aggregated by an exponential moving average with ``alpha = 0.8`` over the
  scores sorted from largest to smallest).
* :func:`per_tag_issues` = ``multilabel_classification.filter.find_multilabel_issues_per_class``
  (``filter_by='prune_by_noise_rate'``, ``frac_noise=1``, ``min_examples_per_class=1``).
* :func:`find_label_issues` = ``multilabel_classification.filter.find_label_issues``: any tag flagged.
* :func:`confident_joint` = ``count.compute_confident_joint(..., multi_label=True)`` (calibrated).

The steps for one tag with probabilities ``p`` and given states ``y`` (cleanlab's binary problem with
columns ``[1 - p, p]``), each done here for a block of tags at once:

1. Confident thresholds ``t1 = mean(p | y=1)``, ``t0 = mean(1 - p | y=0)``; a class nobody is given
   gets threshold 2 (nothing is confident about it); both are clipped below at 2e-6.
2. Confident joint ``C[s, g]``: an example is confidently ``g=1`` when ``p >= t1 - 1e-6`` and
   confidently ``g=0`` when ``1 - p >= t0 - 1e-6``; when both hold, the larger of ``p`` and ``1 - p``
   wins (ties go to 0). Diagonal clipped to >= 1, then calibrated: rows rescaled to the given-class
   counts, the whole matrix to N, and rounded per row preserving row totals.
3. Prune counts (``_keep_at_least_n_per_class`` with n=1): ``m1 = max(C[1,0] - [C[1,1] == 0], 0)``
   given-positives and ``m0 = max(C[0,1] - [C[0,0] == 0], 0)`` given-negatives are flagged, those with
   the largest margin ``p(other) - p(given)``; a block with at most one example is never pruned.
4. A flag is dropped when the prediction (argmax of ``[1 - p, p]`` after adding 1e-6 to the given
   class) agrees with the given state (``_reduce_issues``).

Exactness notes. Thresholds use ``np.mean`` on the same contiguous values cleanlab averages (so the same
pairwise summation). The top-``m`` selection uses ``np.partition``; only when tied margins straddle
the cut-off does the tag fall back to cleanlab's own ``np.argsort(-margin)`` on an identical array,
because numpy's default sort is not stable and decides which tied examples are flagged. float32 and
float64 probabilities keep their dtype (as in cleanlab); other dtypes are converted to float64.

Where cleanlab raises, these functions still answer (cleanlab's rules extended, not new rules):

* a tag carried by **every** example (cleanlab: ``ValueError: Labels must contain at least 2
  classes.``) is handled with cleanlab's own rule for an absent class (threshold 2), exactly as cleanlab
  handles a tag carried by **no** example: such a tag is never flagged;
* scores for K = 1 or a constant ``Y`` (cleanlab: ``ValueError: Labels must be in multi-label
  format.``; all-zero ``Y`` raises ``ValueError: max() arg is an empty sequence``) use the same
  self-confidence + EMA formula, which is defined for any K >= 1;
* N = 0 gives empty outputs; K = 0 gives scores of 1 and no flags.

Probabilities must be finite and within ``[-1e-6, 1 + 1e-6]`` (cleanlab's own tolerance; NaN is
rejected here, cleanlab would silently return garbage). Memory: work is done on blocks of tags
(:data:`CHUNK_ELEMENTS` entries, at least :data:`MIN_BLOCK_TAGS` tags) and cache-sized blocks of
rows for scores, so peak extra memory is a small multiple of one block plus the (N, K) boolean
flags, not of ``P``.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pandas as pd

from dq_pipeline.issues.base import DetectorResult

#: cleanlab.internal.constants values the algorithm depends on.
FLOATING_POINT_COMPARISON = 1e-6
CONFIDENT_THRESHOLDS_LOWER_BOUND = 2 * FLOATING_POINT_COMPARISON
TINY_VALUE = 1e-100
#: Threshold cleanlab gives a class that no example is given (no probability can reach it).
ABSENT_CLASS_THRESHOLD = 2
#: Default EMA forgetting factor of cleanlab's multi-label aggregator.
EMA_ALPHA = 0.8
#: Entries (rows x tags) per block of tags in the pruning step (at least MIN_BLOCK_TAGS tags):
#: bounds the temporary memory and keeps blocks small enough to be fast.
CHUNK_ELEMENTS = 1 << 20
MIN_BLOCK_TAGS = 4
#: Entries per block of rows when scoring (about 1 MiB of float64: stays in cache).
SCORE_BLOCK_ELEMENTS = 1 << 17
_TRANSPOSE_ROWS = 2048

TAG_ISSUE_COLUMNS = ["example_index", "tag_index", "given", "probability", "kind", "score"]


# --------------------------------------------------------------------------------------------------
# input handling


def _check_inputs(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and normalise ``Y`` to bool (N, K) and ``P`` to float32/float64 (N, K)."""
    P = np.asarray(P)
    if P.dtype not in (np.float32, np.float64):
        P = P.astype(np.float64)
    Y = np.asarray(Y)
    if P.ndim != 2:
        raise ValueError(f"P must be 2-d (N, K), got shape {P.shape}")
    if Y.shape != P.shape:
        raise ValueError(f"Y {Y.shape} and P {P.shape} must have the same (N, K) shape")
    if Y.dtype != bool:
        if Y.dtype.kind not in "biuf":
            raise ValueError(f"Y must hold 0/1 values, got dtype {Y.dtype}")
        rows = max(1, CHUNK_ELEMENTS // max(Y.shape[1], 1))
        for a in range(0, Y.shape[0], rows):
            block = Y[a : a + rows]
            if not np.all((block == 0) | (block == 1)):
                raise ValueError("Y must hold only 0/1 values")
        Y = Y != 0
    if P.size:
        lo, hi = P.min(), P.max()
        # NaN fails both comparisons; the tolerance is cleanlab's (assert_valid_inputs).
        if not (lo >= -FLOATING_POINT_COMPARISON and hi <= 1 + FLOATING_POINT_COMPARISON):
            raise ValueError("P must be finite probabilities in [0, 1]")
    return Y, P


def _tag_blocks(N: int, K: int) -> Iterator[slice]:
    width = max(1, min(K, max(MIN_BLOCK_TAGS, CHUNK_ELEMENTS // max(N, 1))))
    for a in range(0, K, width):
        yield slice(a, min(a + width, K))


def _transposed(A: np.ndarray, cols: slice) -> np.ndarray:
    """C-contiguous copy of ``A[:, cols].T``, copied in row blocks (about 2x faster than one copy)."""
    N = A.shape[0]
    out = np.empty((cols.stop - cols.start, N), dtype=A.dtype)
    for a in range(0, N, _TRANSPOSE_ROWS):
        out[:, a : a + _TRANSPOSE_ROWS] = A[a : a + _TRANSPOSE_ROWS, cols].T
    return out


def _row_blocks(N: int, K: int) -> Iterator[slice]:
    rows = max(1, SCORE_BLOCK_ELEMENTS // max(K, 1))
    for a in range(0, N, rows):
        yield slice(a, min(a + rows, N))


# --------------------------------------------------------------------------------------------------
# scores


def _self_confidence(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(n, K) float64 self-confidence: ``p`` where a tag is given, ``1 - p`` (in P's dtype) otherwise."""
    return np.where(Y, P, 1 - P).astype(np.float64, copy=False)


def label_quality_scores(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Per-example label quality, as ``cleanlab.multilabel_classification.get_label_quality_scores``.

    Parameters
    ----------
    Y : np.ndarray, shape (N, K)
        Given tags, 0/1 (or bool).
    P : np.ndarray, shape (N, K)
        Out-of-fold probability of each tag (columns need not sum to 1).

    Returns
    -------
    np.ndarray, shape (N,), float64
        Exponential moving average (alpha 0.8) of the per-tag self-confidences sorted from largest to
        smallest, so the least confident tags weigh most. In [0, 1]; **low = label more likely wrong**.
    """
    Y, P = _check_inputs(Y, P)
    return _scores(Y, P)


def _scores(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    N, K = P.shape
    out = np.empty(N, dtype=np.float64)
    if K == 0:
        out.fill(1.0)
        return out
    for rows in _row_blocks(N, K):
        s = _self_confidence(Y[rows], P[rows])
        s.sort(axis=1)  # s[:, K-1] holds each row's largest score
        ema = s[:, K - 1].copy()
        tmp = np.empty_like(ema)
        for i in range(K - 2, -1, -1):  # cleanlab: ema = alpha * s_i + (1 - alpha) * ema
            np.multiply(EMA_ALPHA, s[:, i], out=tmp)
            ema *= 1 - EMA_ALPHA
            ema += tmp
        out[rows] = ema
    return out


# --------------------------------------------------------------------------------------------------
# confident learning per tag


def _calibrate(cj: np.ndarray, n0: np.ndarray, n1: np.ndarray) -> np.ndarray:
    """cleanlab ``calibrate_confident_joint`` for a stack of binary joints.

    cj : (c, 2, 2) int64 raw confident joint (diagonal already >= 1); n0, n1 : (c,) given counts.
    Returns (c, 2, 2) int64 calibrated counts, every row summing to its given count.
    """
    lc = np.stack([n0, n1], axis=1).astype(np.int64)  # (c, 2) given-class counts
    rs = np.clip(cj.sum(axis=2), TINY_VALUE, None)  # row sums, float64
    cal = cj / rs[:, :, None] * lc[:, :, None]
    # cleanlab's np.sum over the 2x2 runs in row-major order: ((c00 + c01) + c10) + c11.
    total = ((cal[:, 0, 0] + cal[:, 0, 1]) + cal[:, 1, 0]) + cal[:, 1, 1]
    cal = cal / np.clip(total, TINY_VALUE, None)[:, None, None] * (n0 + n1)[:, None, None]
    return _round_preserving_row_totals(cal)


def _round_preserving_row_totals(f: np.ndarray) -> np.ndarray:
    """cleanlab ``round_preserving_row_totals`` for (c, 2, 2) float rows of length 2.

    Round half to even, then, if a row's rounded total misses ``round(row sum)`` (it can miss by at
    most 1 for two entries), move the entry with the largest (adding 1) or smallest (removing 1)
    rounding remainder; on a tie cleanlab's ``argsort`` of two equal values picks the last entry when
    adding and the first when removing.
    """
    ints = np.round(f)
    diff = np.round(np.round(f[..., 0] + f[..., 1]) - (ints[..., 0] + ints[..., 1]))
    rem = f - ints
    add_to_1 = rem[..., 1] >= rem[..., 0]  # argsort(rem)[-1] == 1
    sub_from_0 = rem[..., 0] <= rem[..., 1]  # argsort(rem)[0] == 0
    up = diff > 0
    down = diff < 0
    ints[..., 1] += up & add_to_1
    ints[..., 0] += up & ~add_to_1
    ints[..., 0] -= down & sub_from_0
    ints[..., 1] -= down & ~sub_from_0
    return ints.astype(np.int64)


def _cuts(
    pos: np.ndarray, neg_q: np.ndarray, n0: np.ndarray, n1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(c, 2) float64 confident thresholds and cut-offs ``threshold - 1e-6`` for classes [0, 1].

    ``pos`` holds P of the given-positive examples and ``neg_q`` holds 1 - P of the given-negative
    examples, tag after tag (lengths n1 / n0). The means are cleanlab's own ``np.mean`` on the same
    contiguous values, and the clip/subtract follow its dtype rules (float32 stays float32 unless a
    class is absent); storing the result as float64 is exact.
    """
    c = len(n0)
    out = np.empty((c, 2), dtype=np.float64)
    thr = np.empty((c, 2), dtype=np.float64)
    e0 = np.concatenate([[0], np.cumsum(n0)])
    e1 = np.concatenate([[0], np.cumsum(n1)])
    for t in range(c):
        t0 = np.mean(neg_q[e0[t] : e0[t + 1]]) if n0[t] > 0 else ABSENT_CLASS_THRESHOLD
        t1 = np.mean(pos[e1[t] : e1[t + 1]]) if n1[t] > 0 else ABSENT_CLASS_THRESHOLD
        thresholds = np.clip([t0, t1], a_min=CONFIDENT_THRESHOLDS_LOWER_BOUND, a_max=None)
        thr[t] = thresholds
        out[t] = thresholds - FLOATING_POINT_COMPARISON
    return thr, out


def _top_m(margin: np.ndarray, m: int, out: np.ndarray) -> None:
    """Mark in ``out`` the ``m`` entries of ``margin`` cleanlab's ``argsort(-margin)[:m]`` picks."""
    n = len(margin)
    if m >= n:
        out[:] = True
        return
    kth = n - m
    v = np.partition(margin, kth)[kth]  # the m-th largest margin
    above = margin > v
    at = margin == v
    if int(above.sum()) + int(at.sum()) == m:  # no tie straddles the cut-off: the set is unique
        np.logical_or(above, at, out=out)
    else:  # tied margins straddle it: which ones get in is decided by numpy's (unstable) argsort
        out[np.argsort(-margin)[:m]] = True


def _prune_block(PT: np.ndarray, YT: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-tag label issues for a block of c tags.

    PT : (c, N) probabilities (float32/64, C-contiguous), YT : (c, N) bool given tags.
    Returns FT (c, N) bool flags and per-tag stats: ``thresholds`` (c, 2), ``confident_joint`` (c, 2, 2)
    calibrated, ``num_to_prune`` (c, 2) as [given-negatives, given-positives].
    """
    c, N = PT.shape
    n1 = np.count_nonzero(YT, axis=1).astype(np.int64)
    n0 = N - n1
    notYT = ~YT
    pos = PT[YT]  # tag after tag, examples in their original order
    neg = PT[notYT]
    pos_q = 1 - pos  # cleanlab's column 0 of the binary problem
    neg_q = 1 - neg

    # 1. thresholds; 2. confident joint
    thresholds, cuts = _cuts(pos, neg_q, n0, n1)
    Q = 1 - PT
    b1 = PT >= cuts[:, 1:2]
    b0 = Q >= cuts[:, 0:1]
    gt = PT > Q  # argmax([1 - p, p]) == 1, ties go to 0
    del Q
    conf1 = ~b0
    conf1 |= gt
    conf1 &= b1  # confidently 1: b1 and (not b0, or p wins)
    conf0 = gt
    conf0 &= b1
    np.logical_not(conf0, out=conf0)
    conf0 &= b0  # confidently 0: b0 and not (b1 and p wins)
    del b0, b1
    cj = np.empty((c, 2, 2), dtype=np.int64)
    cj[:, 1, 1] = np.count_nonzero(conf1 & YT, axis=1)
    cj[:, 0, 1] = np.count_nonzero(conf1, axis=1) - cj[:, 1, 1]
    cj[:, 1, 0] = np.count_nonzero(conf0 & YT, axis=1)
    cj[:, 0, 0] = np.count_nonzero(conf0, axis=1) - cj[:, 1, 0]
    del conf0, conf1
    cj[:, 0, 0] = np.maximum(cj[:, 0, 0], 1)
    cj[:, 1, 1] = np.maximum(cj[:, 1, 1], 1)
    cal = _calibrate(cj, n0, n1)

    # 3. how many to prune in each (tag, given class) block; blocks of <= 1 example are left alone
    m0 = np.maximum(cal[:, 0, 1] - (cal[:, 0, 0] == 0), 0)
    m1 = np.maximum(cal[:, 1, 0] - (cal[:, 1, 1] == 0), 0)
    m0[n0 <= 1] = 0
    m1[n1 <= 1] = 0

    sel_pos = np.zeros(pos.shape, dtype=bool)
    sel_neg = np.zeros(neg.shape, dtype=bool)
    e0 = np.concatenate([[0], np.cumsum(n0)])
    e1 = np.concatenate([[0], np.cumsum(n1)])
    if m1.any():
        margin = pos_q - pos  # p(0) - p(1) for given-positives
        for t in np.flatnonzero(m1):
            s = slice(e1[t], e1[t + 1])
            _top_m(margin[s], int(m1[t]), sel_pos[s])
    if m0.any():
        margin = neg - neg_q  # p(1) - p(0) for given-negatives
        for t in np.flatnonzero(m0):
            s = slice(e0[t], e0[t + 1])
            _top_m(margin[s], int(m0[t]), sel_neg[s])

    # 4. drop flags where the (1e-6-favoured) prediction equals the given state
    sel_pos &= ~((pos + FLOATING_POINT_COMPARISON) > pos_q)
    sel_neg &= ~((neg_q + FLOATING_POINT_COMPARISON) >= neg)

    FT = np.zeros((c, N), dtype=bool)
    FT[YT] = sel_pos
    FT[notYT] = sel_neg
    stats = {
        "thresholds": thresholds,
        "confident_joint": cal,
        "num_to_prune": np.stack([m0, m1], axis=1),
    }
    return FT, stats


def _per_tag(Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(N, K) bool per-tag flags and (K, ...) per-tag stats, computed block of tags by block."""
    N, K = P.shape
    flags = np.zeros((N, K), dtype=bool)
    stats: dict[str, np.ndarray] = {
        "thresholds": np.full((K, 2), np.nan),
        "confident_joint": np.zeros((K, 2, 2), dtype=np.int64),
        "num_to_prune": np.zeros((K, 2), dtype=np.int64),
    }
    if N == 0:
        return flags, stats
    for tags in _tag_blocks(N, K):
        PT = _transposed(P, tags)
        YT = _transposed(Y, tags)
        FT, block_stats = _prune_block(PT, YT)
        flags[:, tags] = FT.T
        for key, value in block_stats.items():
            stats[key][tags] = value
    return flags, stats


def per_tag_issues(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Which (example, tag) annotations look wrong, as cleanlab's ``find_multilabel_issues_per_class``.

    Parameters
    ----------
    Y : np.ndarray, shape (N, K)
        Given tags, 0/1 (or bool).
    P : np.ndarray, shape (N, K)
        Out-of-fold probability of each tag.

    Returns
    -------
    np.ndarray, shape (N, K), bool
        ``True`` where tag k of example i is flagged: given but likely absent ('incorrect') or absent
        but likely present ('missing'). Column k equals cleanlab's mask for class k.
    """
    Y, P = _check_inputs(Y, P)
    return _per_tag(Y, P)[0]


def find_label_issues(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Examples with a label issue in any tag, as ``multilabel_classification.filter.find_label_issues``.

    Parameters
    ----------
    Y : np.ndarray, shape (N, K)
        Given tags, 0/1 (or bool).
    P : np.ndarray, shape (N, K)
        Out-of-fold probability of each tag.

    Returns
    -------
    np.ndarray, shape (N,), bool
        ``True`` where at least one tag of the example is flagged by :func:`per_tag_issues`.
    """
    return per_tag_issues(Y, P).any(axis=1)


def confident_joint(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Calibrated one-vs-rest confident joint, as ``count.compute_confident_joint(multi_label=True)``.

    Returns
    -------
    np.ndarray, shape (K, 2, 2), int64
        Entry ``[k, s, g]`` estimates how many examples are given state ``s`` of tag k (0 absent,
        1 present) while truly in state ``g``; row ``[k, s]`` sums to the number given state ``s``.
    """
    Y, P = _check_inputs(Y, P)
    return _per_tag(Y, P)[1]["confident_joint"]


# --------------------------------------------------------------------------------------------------
# detector


def detect_parity(Y: np.ndarray, P: np.ndarray) -> DetectorResult:
    """cleanlab-parity multi-label label-issue detector.

    Parameters
    ----------
    Y : np.ndarray, shape (N, K)
        Given tags, 0/1 (or bool).
    P : np.ndarray, shape (N, K)
        Out-of-fold probability of each tag.

    Returns
    -------
    DetectorResult
        ``scores`` (N,) = :func:`label_quality_scores` (clipped to [0, 1]; only probabilities within
        cleanlab's 1e-6 tolerance outside [0, 1] are affected), **low = likely mislabeled**;
        ``flags`` (N,) = :func:`find_label_issues`; ``details`` one row per flagged (example, tag):
        ``example_index``, ``tag_index``, ``given`` (bool), ``probability`` (P), ``kind``
        ('incorrect' if given else 'missing'), ``score`` (that tag's self-confidence, ``p`` if given
        else ``1 - p``; low = more certain it is wrong); ``summary`` counts overall and per tag.
    """
    Y, P = _check_inputs(Y, P)
    N, K = P.shape
    scores = np.clip(_scores(Y, P), 0.0, 1.0)
    tag_flags, stats = _per_tag(Y, P)
    flags = tag_flags.any(axis=1)

    rows, cols = np.nonzero(tag_flags)
    del tag_flags
    given = Y[rows, cols]
    prob = P[rows, cols].astype(np.float64)
    self_conf = np.where(given, P[rows, cols], 1 - P[rows, cols]).astype(np.float64)
    details = pd.DataFrame(
        {
            "example_index": rows.astype(np.int64),
            "tag_index": cols.astype(np.int64),
            "given": given,
            "probability": prob,
            "kind": pd.Categorical.from_codes(
                np.where(given, 1, 0).astype(np.int8), categories=["missing", "incorrect"]
            ),
            "score": np.clip(self_conf, 0.0, 1.0),
        },
        columns=TAG_ISSUE_COLUMNS,
    )
    incorrect = np.bincount(cols[given], minlength=K)
    missing = np.bincount(cols[~given], minlength=K)
    n_given = np.count_nonzero(Y, axis=0) if N else np.zeros(K, dtype=np.int64)
    summary: dict[str, Any] = {
        "method": "cleanlab-parity: confident learning prune_by_noise_rate per tag; "
        "scores = self-confidence, EMA alpha=0.8",
        "n_examples": int(N),
        "n_tags": int(K),
        "n_label_issues": int(flags.sum()),
        "label_issue_rate": float(flags.mean()) if N else 0.0,
        "n_tag_issues": int(len(rows)),
        "n_incorrect": int(incorrect.sum()),
        "n_missing": int(missing.sum()),
        "incorrect_per_tag": incorrect.tolist(),
        "missing_per_tag": missing.tolist(),
        # tags where cleanlab's confident learning has no contrast, hence never flagged
        # (cleanlab itself raises for the 'given to every example' case)
        "tags_given_to_none": np.flatnonzero(n_given == 0).tolist() if N else [],
        "tags_given_to_all": np.flatnonzero(n_given == N).tolist() if N else [],
        # per tag [t0 = mean(1 - p | absent), t1 = mean(p | given)]; 2 = class given to nobody
        "confident_thresholds": stats["thresholds"].tolist(),
    }
    return DetectorResult(scores=scores, flags=flags, summary=summary, details=details)
