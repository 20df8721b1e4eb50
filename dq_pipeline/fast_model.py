"""Fast multi-label logistic regression: all tags fitted together, Newton-preconditioned.

One-vs-rest logistic regression (``make_model('logreg')``) fits K binary problems one after the
other, each with its own L-BFGS loop over gemv products. For tag k, on standardised features, sklearn
minimises::

    f_k(w_k, b_k) = mean_i logloss(y_ik, x_i . w_k + b_k) + ||w_k||^2 / (2 C n)

:class:`JointLogisticRegression` minimises the same K objectives (so, at convergence, the same
models) but evaluates all tags at once: one iteration is two BLAS matrix products ``X @ W`` and
``X.T @ R`` with W (D, K), instead of K separate Python-level loops. Features are standardised as
sklearn's ``StandardScaler`` does (same constant-column rule). Further ingredients:

- **Preconditioning** (``precondition=True``): the problem is rewritten in the eigenbasis U of
  ``X.T X / n`` with direction j of tag k scaled by ``1 / sqrt(s_k lambda_j + 1 / (C n))``, where
  ``s_k = p_k (1 - p_k)`` and p_k is the tag's prevalence. At the start (W = 0, intercept
  logit p_k) that is exactly the inverse square root of the Hessian, so the first step is a Newton
  step and L-BFGS needs few iterations. The eigendecomposition is shared by all tags; the minimiser
  is unchanged (an invertible change of variables).
- **Solver**: ``"batched"`` (default, :func:`batched_lbfgs`) runs K independent L-BFGS recursions
  in lockstep (per-tag history, per-tag backtracking line search), batching their function
  evaluations into one matrix product and dropping a tag from the product once it has converged;
  each tag therefore needs only its own number of iterations (about 10-25 here, against 30-200 for
  sklearn's unpreconditioned fits). ``"scipy"`` hands the summed objective over all tags to
  ``scipy.optimize.minimize(method="L-BFGS-B")`` as one problem (simpler, but the slowest tag and
  the shared line search set the pace).

- **Precision** (``dtype``): the per-iteration products and the elementwise loss/sigmoid may run in
  float32 (about half the cost); everything else, sums included, stays float64.

Optionally ``n_components`` keeps only the top principal directions (from the same
eigendecomposition) when D is larger: a rank-limited model, no longer identical to ``logreg``.

**Wide input** (``gram``; by default when D > N, e.g. one-hot features of many categories or embeddings
of few examples): the eigenbasis comes from the N x N Gram matrix ``Xs Xs.T`` instead of the D x D
covariance, costing O(N^2 D + N^3) instead of O(N D^2 + D^3) time and N x N instead of D x D memory
(320 rows x 13,524 one-hot columns: one fit 0.4 s and 0.5 GB, against 13 minutes and 3.2 GB). Its
eigenvectors span the row space of Xs, where the minimiser lies (the loss depends on w only through
``Xs w``, so the L2 penalty zeroes every other component); directions whose variance is below the
float64 rounding floor of the Gram matrix are left out. The weights stay D-dimensional (``W = basis @
w_z``, loss and penalty as above) and convergence is still tested on the full D-dimensional gradient,
so the result is the same model as with the covariance eigenbasis. ``fit_info_`` records which basis
was used and the time it took (also logged at INFO).

Convergence uses sklearn's rule per tag: stop when every entry of the gradient of that tag's
objective (standardised-feature coordinates, intercept included) is at most ``tol`` in absolute value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_C = 1.0
DEFAULT_TOL = 1e-4
DEFAULT_MAX_ITER = 1000
SOLVERS = ("batched", "scipy")

# evaluate(x (d+1, k'), cols (k',)) -> (loss (k',), gradient (d+1, k'), convergence measure (k',))
Evaluate = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class JointLogisticRegression:
    """Multi-label L2 logistic regression fitted for all tags at once (sklearn-style estimator).

    Parameters
    ----------
    C : float or array (K,)
        Inverse L2 strength, as sklearn's ``LogisticRegression(C=...)``; intercepts unpenalised. An array
        gives each tag (column of Y) its own: K independent problems either way.
    tol : float
        A tag has converged when max |gradient| of its objective <= tol (sklearn's ``tol``).
    max_iter : int
        Maximum L-BFGS iterations (per tag for ``"batched"``, for the joint problem for ``"scipy"``).
    solver : {"batched", "scipy"}
        Lockstep per-tag L-BFGS, or one scipy L-BFGS-B over the summed objective.
    precondition : bool
        Solve in the Newton-preconditioned eigenbasis (same optimum, far fewer iterations).
    n_components : int or None
        If set and smaller than D, restrict the weights to that many principal directions.
    history : int
        L-BFGS memory (pairs kept).
    dtype : {"float64", "float32"}
        Precision of the two matrix products and the elementwise loss/sigmoid of each iteration.
        Standardisation, optimiser state, sums and the fitted model are float64 either way (the
        covariance eigendecomposition runs in this precision, the Gram one in float64); "float32"
        halves the cost of an iteration.
    gram : bool or None
        Take the eigenbasis from the N x N Gram matrix (row space) rather than the D x D covariance.
        None (default): exactly when D > N, where it is much cheaper and gives the same model.
    seed : int
        Accepted for interface compatibility; the fit has no random step and is deterministic.

    Attributes
    ----------
    coef_ : (D, K) float64, weights on the raw features; intercept_ : (K,) float64.
    n_iter_ : int, iterations of the slowest tag (``"batched"``) or of the joint problem (``"scipy"``).
    converged_ : (K,) bool, whether each tag met ``tol``.
    fit_info_ : dict, what the fit did: ``basis`` ("covariance", "gram" or "none"), ``n``, ``d_in``
        (D), ``d_basis`` (directions kept), ``basis_seconds``, ``fit_seconds`` (whole fit), ``n_iter``.
    """

    def __init__(
        self,
        C: float | np.ndarray = DEFAULT_C,
        tol: float = DEFAULT_TOL,
        max_iter: int = DEFAULT_MAX_ITER,
        solver: str = "batched",
        precondition: bool = True,
        n_components: int | None = None,
        history: int = 10,
        dtype: str = "float64",
        gram: bool | None = None,
        seed: int = 0,
    ) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
        self.C = C
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver
        self.precondition = precondition
        self.n_components = n_components
        self.history = history
        self.dtype = dtype
        self.gram = gram
        self.seed = seed

    def fit(self, X: np.ndarray, Y: np.ndarray) -> JointLogisticRegression:
        """Fit on X (N, D) and Y (N, K) 0/1, or Y (N,) 0/1 for a single binary tag.

        Every column of Y must contain both classes (the cross-validation loop predicts tags that are
        constant in a training fold by their prevalence and never passes them here).
        """
        started = time.perf_counter()
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y)
        if X.ndim != 2 or X.shape[1] == 0:
            raise ValueError(f"X must be (N, D) with D >= 1, got shape {X.shape}")
        if len(Y) != len(X):
            raise ValueError(f"X has {len(X)} rows but Y has {len(Y)}")
        self._binary = Y.ndim == 1
        Y = Y.reshape(len(Y), -1).astype(np.float64)
        n = X.shape[0]
        prev = Y.mean(axis=0)
        if np.any((prev <= 0) | (prev >= 1)):
            raise ValueError("every tag needs positive and negative examples in the training data")

        # StandardScaler: population std; constant columns (sklearn's rounding-aware test) are centred,
        # not scaled. Columns of tiny but real variance are scaled to unit variance, as sklearn does.
        mean = X.mean(axis=0)
        Xs = X - mean
        var = np.einsum("ij,ij->j", Xs, Xs) / n
        eps = np.finfo(np.float64).eps
        constant = var <= n * eps * var + (n * mean * eps) ** 2
        scale = np.where(constant, 1.0, np.sqrt(var))
        Xs /= scale
        C = np.asarray(self.C, dtype=np.float64)
        if C.ndim and C.shape != prev.shape:
            raise ValueError(f"C has shape {C.shape} but Y has {prev.size} tag(s)")
        if np.any(C <= 0):
            raise ValueError("C must be positive")
        reg = np.broadcast_to(1.0 / (C * n), prev.shape)  # (K,) L2 strength per tag
        s = prev * (1.0 - prev)  # (K,) logistic curvature at the start

        dt = np.dtype(self.dtype)
        Xm = Xs.astype(dt, copy=False)  # (N, D) in the working precision of the products
        basis = None  # (D, d) orthonormal columns: weights on Xs are w = basis @ w_z
        lam = None
        D = Xs.shape[1]
        reduce = self.n_components is not None and self.n_components < D
        use_gram = D > n if self.gram is None else bool(self.gram)
        basis_kind, basis_seconds = "none", 0.0
        if self.precondition or reduce:
            t0 = time.perf_counter()
            if use_gram:  # wide: the row space from the N x N Gram matrix, O(N^2 D + N^3)
                lam, basis = _row_space_eigenbasis(Xs)
                basis_kind = "gram"
            else:
                # eigenbasis of the feature covariance (Xs is centred), in the working precision: it only
                # has to be a good preconditioner (the objective below uses the rotated weights as they are)
                from scipy.linalg import eigh

                lam, basis = eigh(Xm.T @ Xm / dt.type(n), driver="evd", check_finite=False)  # ascending
                lam, basis = np.clip(lam.astype(np.float64), 0.0, None), basis.astype(np.float64)
                basis_kind = "covariance"
            if reduce:
                keep = min(self.n_components, len(lam))
                lam, basis = lam[len(lam) - keep :], basis[:, len(lam) - keep :]
                Xm = Xm @ basis.astype(dt)  # (N, d): the data live in the principal subspace
            basis_seconds = time.perf_counter() - t0
        d = len(lam) if lam is not None else D
        if self.precondition:
            S = 1.0 / np.sqrt(np.outer(lam, s) + reg)  # (d, K)
            sb = 1.0 / np.sqrt(s)  # intercepts (Xs is centred, so they decouple at the start)
        else:
            S, sb = np.ones((d, len(s))), np.ones(len(s))
        # Parameters of tag k: x[:, k] = (v_k (d,), c_k); w_z = S[:, k] * v_k, b_k = sb[k] * c_k.
        # Full preconditioned model: the weights are rotated (w = basis @ w_z, two D x D x K products
        # per evaluation) rather than the data (an N x D x D product per fit); loss, penalty ||w||^2
        # and gradient are those of sklearn's objective in w, whose gradient on Xs gives sklearn's
        # convergence criterion directly. With n_components the model is w = basis @ w_z with
        # penalty ||w_z||^2 (the same while basis is orthonormal).
        rotate = basis is not None and not reduce
        Bm = basis.astype(dt) if rotate else None
        Ym = Y.astype(dt)
        del X, Xs, Y  # the products read Xm and Ym only (at 1M x 64 x 40 the float64 copies are ~0.9 GB)
        one = dt.type(1.0)
        tol = self.tol
        sqrt_d = np.sqrt(D)
        K = len(s)

        def evaluate(x: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            full = cols.size == K  # cols are sorted and distinct: all tags
            Sc, Yc, sbc, rc = (S, Ym, sb, reg) if full else (S[:, cols], Ym[:, cols], sb[cols], reg[cols])
            Wz = Sc * x[:-1]
            W = Bm @ Wz.astype(dt) if rotate else Wz.astype(dt)
            z = Xm @ W
            z += (x[-1] * sbc).astype(dt)
            e = np.exp(-np.abs(z))  # logistic loss and sigmoid from one exp, stable for any z
            loss = np.log(one + e)
            loss += np.maximum(z, 0)
            loss -= Yc * z
            r = np.where(z >= 0, one, e) / (one + e) - Yc  # sigmoid(z) - y
            W64 = W.astype(np.float64) if rotate else Wz
            f = loss.mean(axis=0, dtype=np.float64) + 0.5 * rc * np.einsum("ij,ij->j", W64, W64)
            gW = Xm.T @ r
            gW /= n
            gW += rc.astype(dt) * W  # gradient w.r.t. the weights on Xm (working precision)
            gb = r.mean(axis=0, dtype=np.float64)
            if rotate:  # sklearn's criterion on Xs coordinates, then the gradient in the eigenbasis
                crit = np.maximum(np.abs(gW).max(axis=0), np.abs(gb))
                gz = (Bm.T @ gW).astype(np.float64)
            else:
                gz = gW.astype(np.float64)
                crit = _criterion(gz, gb, basis, tol, sqrt_d)
            return f, np.vstack([Sc * gz, gb * sbc]), crit

        x0 = np.vstack([np.zeros((d, len(s))), np.log(prev / (1.0 - prev)) / sb])
        if self.solver == "batched":
            x, iters, self.converged_ = batched_lbfgs(evaluate, x0, self.tol, self.max_iter, self.history)
            self.n_iter_ = int(iters.max())
        else:
            x, self.n_iter_, conv = _scipy_joint_lbfgs(evaluate, x0, self.tol, self.max_iter, self.history)
            self.converged_ = np.full(x.shape[1], conv)
        W = S * x[:-1]
        if basis is not None:
            W = basis @ W  # (D, K) on the standardised features
        self.coef_ = W / scale[:, None]  # (D, K) on the raw features
        self.intercept_ = x[-1] * sb - mean @ self.coef_  # (K,)
        self.fit_info_ = {
            "basis": basis_kind, "n": n, "d_in": D, "d_basis": d if basis is not None else 0,
            "basis_seconds": basis_seconds, "fit_seconds": time.perf_counter() - started, "n_iter": self.n_iter_,
        }
        if basis_kind == "gram":
            log.info("wide input (N=%d < D=%d): eigenbasis of the %d x %d Gram matrix, %d directions, %.2fs "
                     "(fit %.2fs)", n, D, n, n, d, basis_seconds, self.fit_info_["fit_seconds"])
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits: (N, K), or (N,) for a model fitted on a 1-d y."""
        z = np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_
        return z[:, 0] if self._binary else z

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities in [0, 1]: (N, K) per tag; (N, 2) ``[1 - p, p]`` if fitted on a 1-d y."""
        from scipy.special import expit

        p = expit(np.asarray(X, dtype=np.float64) @ self.coef_ + self.intercept_)
        return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if self._binary else p


def _row_space_eigenbasis(Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of ``Xs.T @ Xs / N`` with a non-zero eigenvalue, from the N x N Gram matrix.

    Xs: (N, D) float64, centred. With ``Xs Xs.T = U diag(mu) U.T``, the columns of
    ``Xs.T U / sqrt(mu)`` are orthonormal eigenvectors of ``Xs.T Xs`` with eigenvalues mu; they span the
    row space of Xs. Eigenvalues at or below the Gram matrix's rounding floor
    (``max(N, D) * eps * max(mu)``, numpy's matrix_rank rule for mu = sigma^2) are dropped: there the
    data have no variance to speak of. Cost O(N^2 D + N^3), memory N x N + D x r.

    Returns
    -------
    lam : (r,) float64, ascending eigenvalues of ``Xs.T @ Xs / N``, r <= N.
    basis : (D, r) float64, the matching orthonormal eigenvectors.
    """
    from scipy.linalg import eigh

    n, D = Xs.shape
    mu, U = eigh(Xs @ Xs.T, driver="evd", check_finite=False)  # ascending
    top = mu[-1] if mu.size else 0.0
    keep = mu > max(top, 0.0) * max(n, D) * np.finfo(np.float64).eps
    if not keep.any():  # every column constant: no direction at all
        return np.zeros(0), np.zeros((D, 0))
    mu, U = mu[keep], U[:, keep]
    basis = Xs.T @ (U / np.sqrt(mu))
    return mu / n, basis


def _criterion(gW: np.ndarray, gb: np.ndarray, basis: np.ndarray | None, tol: float, sqrt_d: float) -> np.ndarray:
    """sklearn's convergence measure per tag, max |gradient| in standardised coordinates, where the
    weight gradient is ``basis @ gW``; returned exactly only where needed to compare it with ``tol``.

    ``basis`` keeps 2-norms, and for a D-vector ``norm / sqrt(D) <= max|.| <= norm``: columns whose
    bounds already decide the comparison get a bound instead of the product.
    """
    if basis is None:
        return np.maximum(np.abs(gW).max(axis=0), np.abs(gb))
    norm = np.sqrt(np.einsum("pk,pk->k", gW, gW))
    crit = np.where(norm <= tol, norm, norm / sqrt_d)
    unsure = np.flatnonzero((norm > tol) & (norm / sqrt_d <= tol))
    if unsure.size:
        crit[unsure] = np.abs(basis @ gW[:, unsure]).max(axis=0)
    return np.maximum(crit, np.abs(gb))


def batched_lbfgs(
    evaluate: Evaluate,
    x0: np.ndarray,
    tol: float,
    max_iter: int,
    history: int = 10,
    max_linesearch: int = 30,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise K independent smooth convex functions with L-BFGS run in lockstep.

    Column k of ``x0`` (P, K) starts problem k. ``evaluate(x, cols)`` returns the losses, gradients
    (P, len(cols)) and convergence criteria of problems ``cols`` at the columns of ``x``. Each
    problem keeps its own curvature pairs and takes its own step (backtracking from 1 with
    Armijo's condition and quadratic interpolation); it stops when its criterion is <= ``tol``, when
    no acceptable step is found, when the computed loss has not decreased for 3 iterations in a row
    (rounding floor), or after ``max_iter`` iterations. A trial step is accepted when it meets
    Armijo's condition or the slope along the direction is still <= 0 there (which, for a convex
    function, proves a decrease without trusting rounded loss values). Returns the solutions (P, K),
    the iterations used (K,) and whether each problem met ``tol`` (K,).
    """
    x = x0.copy()
    P, K = x.shape
    f, g, crit = evaluate(x, np.arange(K))
    iters = np.zeros(K, dtype=np.int64)
    # State of the problems still running, compacted to their columns (ids in `run`).
    run = np.flatnonzero(crit > tol)
    xa, fa, ga = x[:, run], f[run], g[:, run]
    s_hist = np.zeros((history, P, run.size))
    y_hist = np.zeros((history, P, run.size))
    rho = np.zeros((history, run.size))  # 0 marks an empty or discarded pair: it contributes nothing
    gamma = np.ones(run.size)
    stalls = np.zeros(run.size, dtype=np.int64)  # consecutive iterations without a computed decrease
    head = n_pairs = 0
    for _ in range(max_iter):
        if run.size == 0:
            break
        # two-loop recursion, vectorised over the running problems
        q = ga.copy()
        slots = [(head - 1 - j) % history for j in range(n_pairs)]  # newest first
        alpha = np.zeros((history, run.size))
        for i in slots:
            alpha[i] = rho[i] * np.einsum("pk,pk->k", s_hist[i], q)
            q -= alpha[i] * y_hist[i]
        q *= gamma
        for i in reversed(slots):
            beta = rho[i] * np.einsum("pk,pk->k", y_hist[i], q)
            q += s_hist[i] * (alpha[i] - beta)
        p = -q
        gp = np.einsum("pk,pk->k", ga, p)
        bad = ~(gp < 0)  # not a descent direction (numerical trouble): restart from steepest descent
        if bad.any():
            p[:, bad] = -ga[:, bad]
            gp[bad] = -np.einsum("pk,pk->k", ga[:, bad], ga[:, bad])
            rho[:, bad] = 0.0
        # backtracking line search; only the problems still searching are evaluated
        t = np.ones(run.size)
        x_new, f_new, g_new, c_new = xa.copy(), fa.copy(), ga.copy(), np.full(run.size, np.inf)
        found = np.zeros(run.size, dtype=bool)
        pending = np.arange(run.size)
        for _ in range(max_linesearch):
            xt = xa[:, pending] + t[pending] * p[:, pending]
            ft, gt, ct = evaluate(xt, run[pending])
            f0, gp0, tp = fa[pending], gp[pending], t[pending]
            # Armijo, or the slope at the trial point is still <= 0: for a convex function that alone
            # proves a decrease, and it does not depend on rounding in the loss values
            ok = (ft <= f0 + 1e-4 * tp * gp0) | (np.einsum("pk,pk->k", gt, p[:, pending]) <= 0)
            acc = pending[ok]
            x_new[:, acc], f_new[acc], g_new[:, acc], c_new[acc] = xt[:, ok], ft[ok], gt[:, ok], ct[ok]
            found[acc] = True
            if ok.all():
                break
            pending, ft, f0, gp0, tp = pending[~ok], ft[~ok], f0[~ok], gp0[~ok], tp[~ok]
            # minimiser of the quadratic through f(0), f'(0) and f(t), kept within [0.1 t, 0.5 t]
            denom = 2.0 * (ft - f0 - gp0 * tp)
            with np.errstate(divide="ignore", invalid="ignore"):
                t_q = np.where(denom > 0, -gp0 * tp * tp / denom, 0.5 * tp)
            t[pending] = np.clip(t_q, 0.1 * tp, 0.5 * tp)
        sv = x_new - xa
        yv = g_new - ga
        sy = np.einsum("pk,pk->k", sv, yv)
        yy = np.einsum("pk,pk->k", yv, yv)
        good = found & (sy > 1e-12 * np.maximum(yy, 1e-300))
        s_hist[head], y_hist[head] = sv, yv
        rho[head] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        gamma = np.where(good, sy / np.maximum(yy, 1e-300), gamma)
        head, n_pairs = (head + 1) % history, min(n_pairs + 1, history)
        # At the rounding floor (float32 products) slope-accepted steps stop lowering the computed
        # loss; three such iterations in a row end that problem.
        stalls = np.where(f_new < fa, 0, stalls + 1)
        xa, fa, ga = x_new, f_new, g_new
        x[:, run], crit[run] = xa, np.where(found, c_new, crit[run])
        iters[run] += 1
        keep = found & (c_new > tol) & (stalls < 3)
        if not keep.all():  # drop the finished problems from the running state
            run, xa, fa, ga, gamma = run[keep], xa[:, keep], fa[keep], ga[:, keep], gamma[keep]
            stalls = stalls[keep]
            s_hist, y_hist, rho = s_hist[:, :, keep], y_hist[:, :, keep], rho[:, keep]
    return x, iters, crit <= tol


def _scipy_joint_lbfgs(
    evaluate: Evaluate, x0: np.ndarray, tol: float, max_iter: int, history: int
) -> tuple[np.ndarray, int, bool]:
    """One ``scipy.optimize.minimize(method='L-BFGS-B')`` over the sum of all K objectives; stops
    when every tag meets sklearn's criterion (checked at each accepted iterate)."""
    from scipy.optimize import minimize

    shape = x0.shape
    cols = np.arange(shape[1])
    last: dict[str, object] = {}

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad, crit = evaluate(theta.reshape(shape), cols)
        last["x"], last["crit"] = theta, crit.max()
        return float(loss.sum()), grad.ravel()

    def callback(intermediate_result) -> None:
        if np.array_equal(intermediate_result.x, last["x"]) and last["crit"] <= tol:
            raise StopIteration

    res = minimize(
        fun,
        x0.ravel(),
        jac=True,
        method="L-BFGS-B",
        callback=callback,
        options={"maxiter": max_iter, "maxcor": history, "maxls": 50, "gtol": 0.0, "ftol": 64 * np.finfo(float).eps},
    )
    return res.x.reshape(shape), int(res.nit), bool(last["crit"] <= tol)
