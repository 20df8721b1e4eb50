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

Convergence uses sklearn's rule per tag: stop when every entry of the gradient of that tag's
objective (standardised-feature coordinates, intercept included) is at most ``tol`` in absolute value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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
    C : float
        Inverse L2 strength, as sklearn's ``LogisticRegression(C=...)``; intercepts unpenalised.
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
        Standardisation, eigendecomposition, optimiser state, sums and the fitted model are float64
        either way; "float32" halves the cost of an iteration.
    seed : int
        Accepted for interface compatibility; the fit has no random step and is deterministic.

    Attributes
    ----------
    coef_ : (D, K) float64, weights on the raw features; intercept_ : (K,) float64.
    n_iter_ : int, iterations of the slowest tag (``"batched"``) or of the joint problem (``"scipy"``).
    converged_ : (K,) bool, whether each tag met ``tol``.
    """

    def __init__(
        self,
        C: float = DEFAULT_C,
        tol: float = DEFAULT_TOL,
        max_iter: int = DEFAULT_MAX_ITER,
        solver: str = "batched",
        precondition: bool = True,
        n_components: int | None = None,
        history: int = 10,
        dtype: str = "float64",
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
        self.seed = seed

    def fit(self, X: np.ndarray, Y: np.ndarray) -> JointLogisticRegression:
        """Fit on X (N, D) and Y (N, K) 0/1, or Y (N,) 0/1 for a single binary tag.

        Every column of Y must contain both classes (the cross-validation loop predicts tags that are
        constant in a training fold by their prevalence and never passes them here).
        """
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y)
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
        reg = 1.0 / (self.C * n)
        s = prev * (1.0 - prev)  # (K,) logistic curvature at the start

        dt = np.dtype(self.dtype)
        Xm = Xs.astype(dt, copy=False)  # (N, D) in the working precision of the products
        basis = None  # (D, d) orthonormal columns: weights on Xs are w = basis @ w_z
        lam = None
        D = Xs.shape[1]
        reduce = self.n_components is not None and self.n_components < D
        if self.precondition or reduce:
            # eigenbasis of the feature covariance (Xs is centred), in the working precision: it only
            # has to be a good preconditioner (the objective below uses the rotated weights as they are)
            from scipy.linalg import eigh

            lam, basis = eigh(Xm.T @ Xm / dt.type(n), driver="evd", check_finite=False)  # ascending
            lam, basis = np.clip(lam.astype(np.float64), 0.0, None), basis.astype(np.float64)
            if reduce:
                lam, basis = lam[D - self.n_components :], basis[:, D - self.n_components :]
                Xm = Xm @ basis.astype(dt)  # (N, d): the data live in the principal subspace
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
        one = dt.type(1.0)
        tol = self.tol
        sqrt_d = np.sqrt(D)
        K = len(s)

        def evaluate(x: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            full = cols.size == K  # cols are sorted and distinct: all tags
            Sc, Yc, sbc = (S, Ym, sb) if full else (S[:, cols], Ym[:, cols], sb[cols])
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
            f = loss.mean(axis=0, dtype=np.float64) + 0.5 * reg * np.einsum("ij,ij->j", W64, W64)
            gW = Xm.T @ r
            gW /= n
            gW += reg * W  # gradient w.r.t. the weights on Xm (working precision)
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
