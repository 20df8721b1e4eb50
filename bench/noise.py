"""Seeded label-noise models for multi-label benchmarks.

Every model takes clean tags ``Y`` (N, K) 0/1 and a target ``rate`` = fraction of **examples** to
corrupt, and returns ``(Y_noisy, changed)``: ``Y_noisy`` (N, K) uint8 and ``changed`` (N, K) bool, True
exactly where ``Y_noisy != Y``. An example is corrupted when any of its tags changed. A changed entry
with ``Y_noisy == 0`` is a *missing* tag (truly present, given absent); with ``Y_noisy == 1`` an
*incorrect* tag (given, truly absent).

* :func:`flip_noise` - class-conditional flips, both directions, independent per (example, tag).
* :func:`missing_noise` - annotators forgetting a tag: one present tag dropped per corrupted example.
* :func:`confusion_noise` - a present tag replaced by a confusable one (frequent co-occurrence, or a
  tag whose examples lie close in feature space).
"""

from __future__ import annotations

import numpy as np

NOISE_MODELS = ("flip", "missing", "confusion")


def _as_tags(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be (N, K), got shape {Y.shape}")
    if not np.isin(Y, (0, 1)).all():
        raise ValueError("Y must hold only 0/1 values")
    return Y.astype(np.uint8)


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")


def flip_rates(Y: np.ndarray, rate: float, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag flip probabilities ``(r1, r0)``, each (K,), for :func:`flip_noise`.

    A given-present entry of tag k is flipped to absent with probability ``r1[k] = c`` and a
    given-absent one to present with ``r0[k] = c * n1[k] / n0[k]`` (n1/n0 = examples with/without k),
    so each tag expects as many additions as removals (its prevalence is kept in expectation). The
    common scale ``c`` is found by bisection such that the expected fraction of examples with at least
    one flip, ``mean_i(1 - prod_k(1 - r[y_ik, k]))``, equals ``rate``.
    """
    Y = _as_tags(Y).astype(bool)
    _check_rate(rate)
    n = len(Y)
    n1 = Y.sum(axis=0).astype(np.float64)
    n0 = n - n1
    ratio = np.divide(n1, n0, out=np.zeros_like(n1), where=n0 > 0)  # tag given to all: no additions

    def rates(c: float) -> tuple[np.ndarray, np.ndarray]:
        return np.full(Y.shape[1], c), np.minimum(c * ratio, 1.0)

    def expected(c: float) -> float:
        r1, r0 = rates(c)
        keep = np.where(Y, 1.0 - r1, 1.0 - r0)
        return float(np.mean(1.0 - np.prod(keep, axis=1)))

    hi = 1.0
    if expected(hi) < rate:
        raise ValueError(f"rate {rate} cannot be reached by flips on these tags")
    lo = 0.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if expected(mid) < rate:
            lo = mid
        else:
            hi = mid
    return rates(hi)


def flip_noise(Y: np.ndarray, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-conditional flips in both directions (rates from :func:`flip_rates`).

    Each (example, tag) entry flips independently with its tag's and given state's probability, so
    the corrupted fraction of examples equals ``rate`` in expectation (binomial spread around it) and
    a corrupted example may have several changed tags of either kind.

    Returns
    -------
    (Y_noisy (N, K) uint8, changed (N, K) bool)
    """
    Y = _as_tags(Y)
    r1, r0 = flip_rates(Y, rate)
    rng = np.random.default_rng(seed)
    prob = np.where(Y.astype(bool), r1[None, :], r0[None, :])
    changed = rng.random(Y.shape) < prob
    return (Y ^ changed).astype(np.uint8), changed


def _pick_rows(candidates: np.ndarray, rate: float, n: int, rng: np.random.Generator) -> np.ndarray:
    _check_rate(rate)
    m = int(round(rate * n))
    if m > len(candidates):
        raise ValueError(f"cannot corrupt {m} examples: only {len(candidates)} are eligible")
    return np.sort(rng.choice(candidates, size=m, replace=False))


def missing_noise(Y: np.ndarray, rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Annotators forgetting tags: exactly ``round(rate * N)`` examples lose one of their tags.

    The examples are drawn uniformly among those with at least one tag, and the dropped tag uniformly
    among the example's tags (an example with a single tag ends up with none). Every change is a
    *missing* tag.

    Returns
    -------
    (Y_noisy (N, K) uint8, changed (N, K) bool)
    """
    Y = _as_tags(Y)
    rng = np.random.default_rng(seed)
    rows = _pick_rows(np.flatnonzero(Y.sum(axis=1) > 0), rate, len(Y), rng)
    changed = np.zeros(Y.shape, dtype=bool)
    for i in rows:
        changed[i, rng.choice(np.flatnonzero(Y[i]))] = True
    return (Y ^ changed).astype(np.uint8), changed


def tag_confusion(
    Y: np.ndarray, X: np.ndarray | None = None, cooc_weight: float = 0.5, temperature: float = 0.1
) -> np.ndarray:
    """(K, K) row-stochastic matrix: ``M[k, j]`` = chance that tag k is mistaken for tag j (``M[k, k] = 0``).

    Mixture ``cooc_weight * A + (1 - cooc_weight) * B`` of

    * A: co-occurrence, ``A[k, j]`` proportional to the number of examples carrying both k and j
      (row k uniform over the other tags if k never co-occurs with anything);
    * B: feature-space closeness, ``B[k, j]`` proportional to ``exp(cos(c_k, c_j) / temperature)``
      where ``c_k`` is the centroid of tag k's examples in column-standardised X (so centroids are
      relative to the overall mean). Without ``X``, M = A.
    """
    Y = _as_tags(Y).astype(np.float64)
    K = Y.shape[1]
    off = ~np.eye(K, dtype=bool)
    A = (Y.T @ Y) * off
    rows = A.sum(axis=1, keepdims=True)
    A = np.where(rows > 0, A / np.where(rows > 0, rows, 1.0), off / max(K - 1, 1))
    if X is None:
        return A
    X = np.asarray(X, dtype=np.float64)
    Z = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    counts = Y.sum(axis=0)
    C = (Y.T @ Z) / np.maximum(counts, 1.0)[:, None]
    C /= np.maximum(np.linalg.norm(C, axis=1, keepdims=True), 1e-12)
    logits = (C @ C.T) / temperature
    logits[~off] = -np.inf
    B = np.exp(logits - logits.max(axis=1, keepdims=True))
    B /= B.sum(axis=1, keepdims=True)
    return cooc_weight * A + (1.0 - cooc_weight) * B


def confusion_noise(
    Y: np.ndarray,
    rate: float,
    seed: int = 0,
    X: np.ndarray | None = None,
    cooc_weight: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Tag confusion: exactly ``round(rate * N)`` examples get one present tag replaced by another.

    Examples are drawn uniformly among those with at least one tag and one absent tag; the replaced
    tag k uniformly among the example's tags; the replacement j among its absent tags with probability
    proportional to ``tag_confusion(Y, X, cooc_weight)[k, j]`` (uniform if all those are 0). Each
    corrupted example has one *missing* (k) and one *incorrect* (j) change.

    Returns
    -------
    (Y_noisy (N, K) uint8, changed (N, K) bool)
    """
    Y = _as_tags(Y)
    M = tag_confusion(Y, X, cooc_weight)
    rng = np.random.default_rng(seed)
    n_tags = Y.sum(axis=1)
    rows = _pick_rows(np.flatnonzero((n_tags > 0) & (n_tags < Y.shape[1])), rate, len(Y), rng)
    changed = np.zeros(Y.shape, dtype=bool)
    for i in rows:
        k = rng.choice(np.flatnonzero(Y[i]))
        absent = Y[i] == 0
        w = M[k] * absent
        w = w / w.sum() if w.sum() > 0 else absent / absent.sum()
        changed[i, k] = True
        changed[i, rng.choice(Y.shape[1], p=w)] = True
    return (Y ^ changed).astype(np.uint8), changed


def inject_noise(
    kind: str, Y: np.ndarray, rate: float, seed: int = 0, X: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch to the noise model named ``kind`` (one of :data:`NOISE_MODELS`)."""
    if kind == "flip":
        return flip_noise(Y, rate, seed)
    if kind == "missing":
        return missing_noise(Y, rate, seed)
    if kind == "confusion":
        return confusion_noise(Y, rate, seed, X=X)
    raise ValueError(f"unknown noise model {kind!r}; choose one of {NOISE_MODELS}")
