r"""The ``jko`` scheme: minimizing movements (JKO / Wasserstein proximal steps) on the grid masses.

One step of size ``h`` from the policy ``pi_k`` (masses ``p = pi_k(.|s)``) solves, state by state,

.. math::

    m^+ = \operatorname*{argmin}_{m \in \Delta}\;
          \sum_a m_a Q_k(s,a) + \tau \sum_a m_a \log\frac{m_a}{|{\rm cell}|}
          + \frac{W_2^2(m, p)}{2h},

with ``Q_k`` the exact soft Q of ``pi_k`` (linearized energy) and ``W_2`` the **exact**
Wasserstein distance between the piecewise-constant densities the grid masses represent
(1-D actions: quantile functions are piecewise linear in ``u`` with knots at the cumulative
masses). The metric weights ``omega(s)`` multiply every term of state ``s`` and cancel, so the
time normalization is the one of ``otto``: as ``h -> 0`` both follow
``d_t pi = div(pi grad(Q + tau log pi))``.

The per-state problem is strictly convex (``tau > 0``) and is solved by a damped Newton method
in the cumulative-mass coordinates ``F_j = m_0 + ... + m_{j-1}`` where the Hessian is
tridiagonal (exact Hessian of ``W_2^2`` included), vectorized over all states (one numba
LDL^T sweep, stable for masses spanning hundreds of orders of magnitude), with multiplicative
(log-mass) updates and an Armijo line search on the objective. The formulas are written out in
``docs/jko.md``, together with the known limitation (masses spanning more than ~16 orders of
magnitude *inside* the support make ``W_2^2`` non-smooth at floating-point resolution; the
Newton iteration may then stall: ConvergenceError, or ``on_stall="warn"``).

Guarantees (``tau > 0``): mass per state exact to rounding, positivity, the grid Gibbs policy of a
frozen ``Q`` is a fixed point, ``h -> infinity`` is one soft policy-iteration step, and ``J``
decreases monotonically for every ``h`` (performance-difference lemma; ``docs/jko.md``), so the
limit of the flow is the policy :func:`wgflow.solve` returns. ``tau = 0`` raises ValidationError.

Multi-D action grids use the **entropic** JKO step (Peyre 2015) on atoms at the cell centres:
log-domain Sinkhorn scaling with the closed-form KL-prox of the linear + entropy energy and the
Gaussian kernel applied axis by axis (:func:`jko_prox_entropic`). Entropic smoothing adds diffusion:
its fixed point is the Gibbs law at an effective temperature between ``tau + eps/2`` (small ``h``)
and ``tau + eps`` (large ``h``); see ``docs/jko.md`` Section 8.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import LinAlgError, solve_banded, solveh_banded

from ..errors import ConvergenceError, ValidationError
from ..kernels.config import jit
from .base import FlowState, ProposedStep, Scheme
from .otto import otto_rhs

__all__ = ["JKO", "w2sq_pc", "w2sq_pc_grad", "jko_prox_1d", "jko_velocity_1d", "jko_prox_entropic",
           "entropic_default_eps", "entropic_gaussian_variance"]

_EPS = np.finfo(float).eps
#: smallest mass kept by the Newton iteration (the exact minimizer is > 0 but may underflow, e.g.
#: far from a point mass for small h; masses are floored here so that tau/m stays finite)
_FLOOR = 1e-250


# =============================================================================================
# exact W_2^2 between piecewise-constant 1-D densities, its gradient and Hessian
# =============================================================================================
def _cumulative(m):
    """Knots ``F_0 = 0 <= F_1 <= ... <= F_n = 1`` of the quantile function (rows)."""
    nS, n = m.shape
    F = np.empty((nS, n + 1))
    F[:, 0] = 0.0
    np.cumsum(m[:, :-1], axis=1, out=F[:, 1:n])
    F[:, n] = 1.0
    np.minimum(F, 1.0, out=F)   # rounding: a partial sum may exceed 1 by an ulp
    return F


def _w2_half(m, p, delta, hessian):
    """Contributions of ``u in [0, 1/2]`` to W_2^2 and to the per-cell integrals ``A, B`` (and
    the slope moments ``alpha, beta, gamma``); see :func:`_w2_terms`. Cumulative masses are
    accurate near ``u = 0`` only, which is why the upper half is computed on reversed arrays."""
    nS, n = m.shape
    F = _cumulative(m)
    P = _cumulative(p)
    vals = np.concatenate([F, P, np.full((nS, 1), 0.5)], axis=1)     # (nS, 2n+3)
    order = np.argsort(vals, axis=1, kind="stable")           # ties: knots of m first
    U = np.take_along_axis(vals, order, axis=1)
    isF = order <= n
    isP = (order > n) & (order <= 2 * n + 1)
    cF = np.cumsum(isF, axis=1)
    cP = np.cumsum(isP, axis=1)
    Ua, Ub = U[:, :-1], U[:, 1:]
    L = Ub - Ua                                               # sub-interval lengths
    live = (L > 0.0) & (Ub <= 0.5)
    i = np.clip(cF[:, :-1] - 1, 0, n - 1)                     # cell of m containing the sub-interval
    k = np.clip(cP[:, :-1] - 1, 0, n - 1)                     # cell of p containing it
    rows = np.arange(nS)[:, None]
    Fi, Fi1, mi = F[rows, i], F[rows, i + 1], m[rows, i]
    Pk, Pk1, pk = P[rows, k], P[rows, k + 1], p[rows, k]
    mi_safe = np.where(live, mi, 1.0)
    pk_safe = np.where(live & (pk > 0), pk, 1.0)
    # relative positions in the m-cell (s) and in the p-cell (t); exact 0 / 1 at the cells' own knots
    sa = np.clip(np.where(live, (Ua - Fi) / mi_safe, 0.0), 0.0, 1.0)
    sb = np.clip(np.where(Ub == Fi1, 1.0, np.where(live, (Ub - Fi) / mi_safe, 0.0)), 0.0, 1.0)
    ta = np.clip(np.where(live, (Ua - Pk) / pk_safe, 0.0), 0.0, 1.0)
    tb = np.clip(np.where(Ub == Pk1, 1.0, np.where(live, (Ub - Pk) / pk_safe, 0.0)), 0.0, 1.0)
    shift = (i - k).astype(float)
    Da = np.where(live, shift + sa - ta, 0.0)                 # displacement / delta at the ends
    Db = np.where(live, shift + sb - tb, 0.0)
    Lw = np.where(live, L, 0.0)
    w2 = delta ** 2 * np.sum(Lw * (Da * Da + Da * Db + Db * Db), axis=1) / 3.0
    ds = np.where(live, sb - sa, 0.0)
    a_con = ds * (Da * (2.0 * sa + sb) + Db * (sa + 2.0 * sb)) / 6.0
    e_con = ds * (Da + Db) / 2.0
    flat = (rows * n + i).ravel()
    A = np.bincount(flat, weights=a_con.ravel(), minlength=nS * n).reshape(nS, n)
    E = np.bincount(flat, weights=e_con.ravel(), minlength=nS * n).reshape(nS, n)
    # cells of m too light to have a u-interval in floating point (F_i == F_{i+1}) still carry the
    # s-integrals: there u = F_i + m_i s ~ F_i, X_p ~ X_p(F_i) and e(s) = x_i + delta s - X_p(F_i)
    dead = (F[:, 1:] == F[:, :-1]) & (F[:, :-1] <= 0.5)
    dead_c = None
    if np.any(dead):
        ds_, di = np.nonzero(dead)
        u0 = F[ds_, di]
        kd = np.empty(ds_.size, dtype=int)
        for r in np.unique(ds_):
            sel = ds_ == r
            kd[sel] = np.searchsorted(P[r], u0[sel], side="right") - 1
        kd = np.clip(kd, 0, n - 1)
        pkd = p[ds_, kd]
        td = np.clip(np.where(pkd > 0, (u0 - P[ds_, kd]) / np.where(pkd > 0, pkd, 1.0), 0.0), 0.0, 1.0)
        da = (di - kd) - td
        db = da + 1.0
        A[ds_, di] += (da + 2.0 * db) / 6.0
        E[ds_, di] += (da + db) / 2.0
        dead_c = (ds_, di, np.where(pkd > 0, delta / np.where(pkd > 0, pkd, 1.0), 0.0))
    A *= delta
    E *= delta
    B = E - A
    if not hessian:
        return w2, A, B, None, None, None
    # moments of the slope of X_p along the cell: int X_p'(u(s)) w(s) ds for w = (1-s)^2, s(1-s), s^2;
    # on a sub-interval X_p' = delta / p_k and ds = L / m_i
    big = np.maximum(mi_safe, pk_safe)
    c = np.where(live, delta * (Lw / big) / np.minimum(mi_safe, pk_safe), 0.0)   # L <= min(m_i, p_k)
    # means over [sa, sb] of (1-s)^2, s(1-s), s^2 (s linear), written without cancellation
    ra, rb = 1.0 - sa, 1.0 - sb
    alpha_c = c * (ra * ra + ra * rb + rb * rb) / 3.0
    beta_c = c * (2.0 * sa * ra + sa * rb + sb * ra + 2.0 * sb * rb) / 6.0
    gamma_c = c * (sa * sa + sa * sb + sb * sb) / 3.0
    # jumps of X_p (delta per cell of p of zero length in u) inside a cell of m: Dirac slopes
    kk = order - (n + 1)
    jump = isP & (kk < n)
    kk_c = np.clip(kk, 0, n - 1)
    uj = np.where(jump, U, 0.0)
    jump &= (P[rows, kk_c + 1] == P[rows, kk_c]) & (uj > 0.0) & (uj <= 0.5)
    extra = None
    if np.any(jump):
        ij = np.clip(cF - 1, 0, n - 1)
        mj = np.where(jump, m[rows, ij], 1.0)
        sj = np.clip(np.where(jump, (uj - F[rows, ij]) / mj, 0.0), 0.0, 1.0)
        cj = np.where(jump, delta / mj, 0.0)
        extra = ((rows * n + ij).ravel(), (cj * (1 - sj) ** 2).ravel(), (cj * sj * (1 - sj)).ravel(),
                 (cj * sj * sj).ravel())

    def _sum(vals_, ex):
        out = np.bincount(flat, weights=vals_.ravel(), minlength=nS * n)
        if extra is not None:
            out += np.bincount(extra[0], weights=ex, minlength=nS * n)
        return out.reshape(nS, n)

    alpha = _sum(alpha_c, extra[1] if extra else None)
    beta = _sum(beta_c, extra[2] if extra else None)
    gamma = _sum(gamma_c, extra[3] if extra else None)
    if dead_c is not None:
        ds_, di, cd = dead_c
        alpha[ds_, di] += cd / 3.0
        beta[ds_, di] += cd / 6.0
        gamma[ds_, di] += cd / 3.0
    return w2, A, B, alpha, beta, gamma


def _w2_terms(m, p, delta, hessian=True):
    r"""W_2^2 between the piecewise-constant laws with cell masses ``m`` and ``p`` (rows), cell
    width ``delta``, and its derivatives w.r.t. the interior knots ``F_1..F_{n-1}`` of ``m``.

    Returns ``(w2 (nS,), grad (nS, n-1), hdiag (nS, n-1), hoff (nS, n-2))``; the Hessian parts are
    None unless ``hessian``. ``m`` must be > 0 (the knots of ``m`` are the unknowns); ``p`` may
    have zeros (jumps of its quantile function).

    Notation: on cell ``i`` of ``m`` the relative position is ``s in [0,1]``, ``u = F_i + m_i s``;
    ``e_i(s) = X_m(u) - X_p(u)`` (the displacement ``y - T(y)``, ``T`` the monotone map from
    ``m`` to ``p``). With ``A_i = int e_i s ds`` and ``B_i = int e_i (1-s) ds``::

        dW^2/dF_j = -2 delta (A_{j-1} + B_j)

    (cell averages of the Kantorovich potential differ by these across face ``j``). The half
    ``u <= 1/2`` is computed from cumulative sums from the left, the half ``u >= 1/2`` from the
    reversed arrays (cumulative sums from the right; the reflection ``x -> -x`` maps ``s`` to
    ``1 - s``, ``e`` to ``-e``, ``A`` to ``-B``), so that tails on both sides are resolved to
    the precision of their own masses.
    """
    w_f, A_f, B_f, al_f, be_f, ga_f = _w2_half(m, p, delta, hessian)
    w_b, A_b, B_b, al_b, be_b, ga_b = _w2_half(m[:, ::-1], p[:, ::-1], delta, hessian)
    w2 = w_f + w_b
    A = A_f - B_b[:, ::-1]
    B = B_f - A_b[:, ::-1]
    grad = -2.0 * delta * (A[:, :-1] + B[:, 1:])
    if not hessian:
        return w2, grad, None, None
    alpha = al_f + ga_b[:, ::-1]
    beta = be_f + be_b[:, ::-1]
    gamma = ga_f + al_b[:, ::-1]
    hdiag = 2.0 * delta * (gamma[:, :-1] + alpha[:, 1:])
    hoff = 2.0 * delta * beta[:, 1:-1]
    return w2, grad, hdiag, hoff


def _check_1d(masses, name):
    m = np.asarray(masses, dtype=float)
    if m.ndim == 1:
        m = m[None, :]
    return m


def w2sq_pc(m, p, delta):
    """Exact ``W_2^2`` per row between piecewise-constant laws of cell masses ``m``, ``p`` (cells of
    width ``delta``; both may have zeros)."""
    m, p = _check_1d(m, "m"), _check_1d(p, "p")
    with np.errstate(divide="ignore", invalid="ignore"):
        return _w2_terms(m, p, float(delta), hessian=False)[0]


def w2sq_pc_grad(m, p, delta):
    r"""Gradient of ``W_2^2(m, p)`` w.r.t. the masses ``m`` (``m > 0``), normalized to mass-weighted
    mean 0 (it is defined up to a constant on the simplex): the cell averages of the Kantorovich
    potential ``phi`` with ``phi' = 2 (x - T(x))``."""
    m, p = _check_1d(m, "m"), _check_1d(p, "p")
    _, gF, _, _ = _w2_terms(m, p, float(delta), hessian=False)
    # m_i = F_{i+1} - F_i  =>  dW/dm_i = sum_{j > i} dW/dF_j
    g = np.zeros_like(m)
    g[:, :-1] = np.cumsum(gF[:, ::-1], axis=1)[:, ::-1]
    return g - np.sum(m * g, axis=1, keepdims=True)


# =============================================================================================
# the per-state proximal problem
# =============================================================================================
def _solve_tridiag_spd(diag, off, rhs, reg=0.0):
    """Solve the block-diagonal system of SPD tridiagonal blocks (rows = blocks) in one call.

    The system is Jacobi-scaled first (unit diagonal: masses spanning hundreds of orders of
    magnitude make the raw entries span as many); ``reg`` is added to the scaled diagonal (a
    relative Levenberg--Marquardt shift keeping numerically singular blocks solvable).
    """
    nb, k = diag.shape
    N = nb * k
    d = 1.0 / np.sqrt(diag)
    ab = np.zeros((2, N))
    ab[1] = 1.0 + reg
    if k > 1:
        sup = np.zeros((nb, k))
        sup[:, 1:] = off * d[:, :-1] * d[:, 1:]
        ab[0] = sup.ravel()
    b = (rhs * d).ravel()
    try:
        y = solveh_banded(ab, b, lower=False, check_finite=False)
    except LinAlgError:
        ab3 = np.zeros((3, N))
        ab3[0] = ab[0]
        ab3[1] = ab[1]
        ab3[2, :-1] = ab[0, 1:]
        y = solve_banded((1, 1), ab3, b, check_finite=False)
    return y.reshape(nb, k) * d


@jit
def _newton_kernel(m, b, k, kap, taus, dF, dth):  # pragma: no cover - compiled
    """Newton step of the proximal problem in the knot coordinates, stable for tiny masses.

    Solves ``H dF = b`` for each row, ``H`` tridiagonal SPD with diagonal
    ``Lam_a + Lam_{a+1} + k_a`` and off-diagonal ``-Lam_{a+1} + kap_a`` (``Lam = tau_s / m`` the
    entropy springs of the cells, ``tau_s`` per row, ``k, kap`` the W_2 part), by an LDL^T recursion on
    ``e_a = d_a - Lam_{a+1}`` (the pivot without the spring to the next knot): it never
    subtracts two large springs, so cells of mass ``1e-200`` next to cells of mass 1 are fine.
    Returns ``dF`` and the log-mass step ``dth_c = dm_c / m_c`` computed without dividing a
    difference of knot moves by a tiny mass (``dm_c = [x_c (e_{c-1} + kap_{c-1}) - z_{c-1}] / d_{c-1}``).
    """
    nS, n = m.shape
    n1 = n - 1
    e = np.empty(n1)
    d = np.empty(n1)
    L = np.zeros(n1)
    z = np.empty(n1)
    x = np.empty(n1)
    for s in range(nS):
        tau = taus[s]
        lam0 = tau / m[s, 0]
        lam1 = tau / m[s, 1]
        e[0] = lam0 + k[s, 0]
        d[0] = e[0] + lam1
        z[0] = b[s, 0]
        for a in range(1, n1):
            lm = tau / m[s, a]
            kp = kap[s, a - 1]
            ep = e[a - 1]
            # lm ep / (ep + lm) + kp (2 lm - kp) / (ep + lm), written so that springs ~ 1e250
            # (floored masses) neither overflow nor cancel
            if ep <= lm:
                harm = ep / (1.0 + ep / lm)
            else:
                harm = lm / (1.0 + lm / ep)
            val = harm + kp * (2.0 * (lm / (ep + lm)) - kp / (ep + lm))
            if val < 0.0:
                val = 0.0
            e[a] = k[s, a] + val
            d[a] = e[a] + tau / m[s, a + 1]
            L[a] = (kp - lm) / d[a - 1]
            z[a] = b[s, a] - L[a] * z[a - 1]
        x[n1 - 1] = z[n1 - 1] / d[n1 - 1]
        for a in range(n1 - 2, -1, -1):
            x[a] = z[a] / d[a] - L[a + 1] * x[a + 1]
        for a in range(n1):
            dF[s, a] = x[a]
        # cell 0: dm_0 = x_0 = (z_0 - H_01 x_1) / d_0 and m_0 d_0 = tau + m_0 (Lam_1 + k_0)
        m0d0 = tau + m[s, 0] * (lam1 + k[s, 0])
        if n1 > 1:
            dth[s, 0] = (z[0] - (kap[s, 0] - lam1) * x[1]) / m0d0
        else:
            dth[s, 0] = z[0] / m0d0
        for c in range(1, n):
            xc = x[c] if c < n1 else 0.0
            kp = kap[s, c - 1] if c < n1 else 0.0
            ep = e[c - 1]
            dth[s, c] = (xc * (ep + kp) - z[c - 1]) / (m[s, c] * ep + tau)


def _objective(m, p, Q, tau, h, delta, vol):
    w2 = _w2_terms(m, p, delta, hessian=False)[0]
    lin = np.sum(m * Q, axis=1)
    ent = tau * np.sum(m * np.log(m / vol), axis=1)
    scale = np.sum(m * np.abs(Q), axis=1) + np.abs(ent) + w2 / (2 * h)
    return lin + ent + w2 / (2.0 * h), scale


def _weighted_residual(m, p, Q, tau, h, delta, vol, floor=False):
    r"""``sum_a m_a |g_a - gbar| / tau`` per row, ``g = Q + tau log(m/vol) + (dW_2^2/dm)/(2h)`` the
    first variation and ``gbar = sum_a m_a g_a``: zero exactly at the minimizer (the first
    variation is constant on the support), and the L1 mass error it implies otherwise.
    With ``floor``, also its rounding level ``1e3 eps sum_a m_a (|Q_a| + tau |log m_a/vol| + |phi_a|/(2h)) / tau``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = tau * np.log(m / vol)
        ph = w2sq_pc_grad(m, p, delta) / (2.0 * h)
    g = Q + lg + ph
    gbar = np.sum(m * g, axis=1, keepdims=True)
    r = np.sum(m * np.abs(g - gbar), axis=1) / tau
    if not floor:
        return r
    return r, 1e3 * _EPS * np.sum(m * (np.abs(Q) + np.abs(lg) + np.abs(ph)), axis=1) / tau


def jko_prox_1d(p, Q, tau, h, delta, vol=None, tol=1e-12, max_iter=200, m0=None,
                stall_tol=1e-10, on_stall="raise"):
    r"""One JKO step per state for frozen ``Q`` (1-D actions, ``tau > 0``).

    Minimizes ``<Q, m> + tau <m, log(m/vol)> + W_2^2(m, p) / (2h)`` over the simplex, row by row
    (vectorized). Returns ``(m, info)`` with ``info = {"iterations", "residual", "step", ...}``:
    ``residual`` is the largest over states of ``sum_a m_a |g_a - gbar| / tau`` with
    ``g = Q + tau log(m/vol) + (dW_2^2/dm)/(2h)`` the first variation (constant at the minimizer),
    ``step`` the last Newton mass change. Converged when a full Newton step changes no mass by
    more than ``tol``; or, when rounding stalls the iteration (knots of ``m`` at jumps of the
    quantile function of ``p`` -- gaps of ``p`` --, where the Hessian of ``W_2^2`` jumps), when two
    successive steps changed no mass by more than ``tol`` and ``residual <= stall_tol``.
    Otherwise, after ``max_iter`` iterations: ConvergenceError (``on_stall="raise"``), or the last
    iterate is kept (``"warn"``: with a RuntimeWarning; ``"accept"``), listed in ``info["stalled"]``;
    every accepted Newton step decreases the objective, so the kept iterate still satisfies
    ``f(m) <= f(p)`` (what monotonicity of ``J`` needs).
    """
    p = np.asarray(p, dtype=float)
    Q = np.asarray(Q, dtype=float)
    nS, n = p.shape
    vol = delta if vol is None else vol
    if not (tau > 0):
        raise ValidationError("jko_prox_1d needs tau > 0")
    if on_stall not in ("raise", "warn", "accept"):
        raise ValidationError(f"on_stall must be 'raise', 'warn' or 'accept', got {on_stall!r}")
    if n == 1:
        return np.ones_like(p), {"iterations": 0, "iterations_per_state": np.zeros(nS, dtype=int),
                                 "stalled": np.zeros(0, dtype=int), "residual": 0.0,
                                 "residual_per_state": np.zeros(nS), "step": 0.0}
    if m0 is None:
        m = p.copy()
        bad = np.any(p <= 0.0, axis=1)
        if np.any(bad):
            # empty cells in p: start from a slightly spread version (the minimizer is > 0)
            m[bad] = (1.0 - 1e-6) * p[bad] + 1e-6 / n
    else:
        m = np.array(m0, dtype=float)
    m = np.maximum(m, _FLOOR)
    m /= m.sum(axis=1, keepdims=True)
    active = np.arange(nS)
    iters = np.zeros(nS, dtype=int)
    last_step = np.zeros(nS)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        for it in range(1, max_iter + 1):
            if active.size == 0:
                break
            ma, pa, Qa = m[active], p[active], Q[active]
            w2, gW, Kd, Ko = _w2_terms(ma, pa, delta, hessian=True)
            psi = Qa + tau * np.log(ma / vol)
            gF = psi[:, :-1] - psi[:, 1:] + gW / (2.0 * h)
            dF = np.empty((ma.shape[0], n - 1))
            dth = np.empty_like(ma)
            kap = Ko / (2.0 * h) if n > 2 else np.zeros((ma.shape[0], 1))
            _newton_kernel(ma, np.ascontiguousarray(-gF), np.ascontiguousarray(Kd / (2.0 * h)),
                           np.ascontiguousarray(kap), np.full(active.size, float(tau)), dF, dth)
            slope = np.sum(gF * dF, axis=1)                   # < 0: descent direction
            lin = np.sum(ma * Qa, axis=1)
            ent = tau * np.sum(ma * np.log(ma / vol), axis=1)
            f0 = lin + ent + w2 / (2.0 * h)
            slack = 16 * _EPS * (np.sum(ma * np.abs(Qa), axis=1) + np.abs(ent) + w2 / (2 * h) + 1.0)
            alpha = np.ones(active.size)
            todo = np.arange(active.size)
            new = ma.copy()
            accepted = np.zeros(active.size, dtype=bool)
            for _ in range(60):
                if todo.size == 0:
                    break
                x = np.minimum(alpha[todo, None] * dth[todo], 50.0)
                cand = ma[todo] * np.exp(np.maximum(x, -745.0))
                cand = np.maximum(cand, _FLOOR)
                cand /= cand.sum(axis=1, keepdims=True)
                f1, _ = _objective(cand, pa[todo], Qa[todo], tau, h, delta, vol)
                ok = f1 <= f0[todo] + 1e-4 * alpha[todo] * slope[todo] + slack[todo]
                new[todo[ok]] = cand[ok]
                accepted[todo[ok]] = True
                todo = todo[~ok]
                alpha[todo] *= 0.5
            step = np.max(np.abs(new - ma), axis=1)
            # converged: a full (undamped) Newton step that moved no mass by more than tol
            conv = (step <= tol) & accepted & (alpha == 1.0)
            # stalled at the rounding level: no mass moved by more than tol twice in a row, and the
            # optimality conditions hold in the mass-weighted sense (potentials of cells too light
            # to resolve, e.g. inside a gap of p, may not)
            stall = (step <= tol) & (last_step[active] <= tol) & (it > 1) & ~conv
            if np.any(stall):
                idx = np.nonzero(stall)[0]
                r, fl = _weighted_residual(new[idx], pa[idx], Qa[idx], tau, h, delta, vol, floor=True)
                conv[idx[r <= np.maximum(stall_tol, fl)]] = True
            m[active] = new
            iters[active] = it
            last_step[active] = step
            active = active[~conv]
        stalled = active.copy()
        if active.size and on_stall == "raise":
            raise ConvergenceError(
                f"jko: the proximal Newton iteration did not converge in {max_iter} iterations for "
                f"{active.size} state(s) (first: state {int(active[0])}, last mass change "
                f"{last_step[active[0]]:.3e}). This happens when the masses span more than ~16 orders "
                "of magnitude inside the support (entropy tiny compared with the variations of Q): "
                "W_2^2 of the grid densities is then non-smooth at floating-point resolution. Raise "
                "max_inner, use a smaller step or more entropy, or pass on_stall='warn' to keep the "
                "last iterate (it still decreases the proximal objective, so J stays monotone)",
                {"states": active.tolist(), "step": last_step[active].tolist(), "masses": m})
        if active.size and on_stall == "warn":
            warnings.warn(f"jko: {active.size} proximal problem(s) stalled after {max_iter} Newton "
                          f"iterations (last mass change {last_step[active].max():.3e}); keeping the "
                          "last iterate", RuntimeWarning, stacklevel=2)
        m /= m.sum(axis=1, keepdims=True)
        res = _weighted_residual(m, p, Q, tau, h, delta, vol)
    return m, {"iterations": int(iters.max()), "iterations_per_state": iters, "stalled": stalled,
               "residual": float(res.max()), "residual_per_state": res,
               "step": float(last_step.max())}


def jko_velocity_1d(p, Q, tau, delta, vol=None):
    r"""Semi-discrete velocity of the ``jko`` flow (the limit ``(m^+ - p)/h`` as ``h -> 0``), 1-D.

    Linearizing ``W_2^2(p + dm, p) = dF^T G dF`` (``dF`` the change of the cumulative masses at the
    interior faces, ``G`` tridiagonal with ``G_jj = delta^2 (1/p_{j-1} + 1/p_j) / 3`` and
    ``G_{j,j+1} = delta^2 / (6 p_j)``), the step is ``dF = h G^{-1} (psi_j - psi_{j-1})``: a
    finite-volume scheme with a *tridiagonal* (non-local) mobility, consistent to ``O(delta^2)``
    with the Scharfetter--Gummel fluxes of ``otto`` but not identical to them. ``p > 0``.
    """
    p = np.asarray(p, dtype=float)
    vol = delta if vol is None else vol
    psi = Q + tau * np.log(p / vol)
    Gd = delta ** 2 * (1.0 / p[:, :-1] + 1.0 / p[:, 1:]) / 3.0
    Go = delta ** 2 / (6.0 * p[:, 1:-1])
    # minimize <psi, dm> + dF^T G dF / (2h): G dF = h (psi_j - psi_{j-1})
    dF = _solve_tridiag_spd(Gd, Go, psi[:, 1:] - psi[:, :-1])
    v = np.zeros_like(p)
    v[:, :-1] += dF
    v[:, 1:] -= dF
    return v


# =============================================================================================
# multi-D: entropic JKO (log-domain Sinkhorn with the KL-prox of the energy, separable kernel)
# =============================================================================================
#: elements of the temporary (rows, n_d, n_d) array of one chunk of a 1-D log-kernel application
_CHUNK_ELEMS = 1 << 22


@jit
def _lse_axis_kernel(a, L, out):  # pragma: no cover - compiled
    M, n = a.shape
    ni = L.shape[0]
    for m in range(M):
        for i in range(ni):
            mx = -np.inf
            for j in range(n):
                t = L[i, j] + a[m, j]
                if t > mx:
                    mx = t
            if mx == -np.inf:
                out[m, i] = -np.inf
                continue
            acc = 0.0
            for j in range(n):
                acc += np.exp(L[i, j] + a[m, j] - mx)
            out[m, i] = mx + np.log(acc)


def _lse_axis(a, L):
    """``out[m, i] = log sum_j exp(L[i, j] + a[m, j])`` for ``a`` ``(M, n)``; ``-inf`` rows stay
    ``-inf`` (no NaN). One numba kernel (two passes, no temporaries)."""
    out = np.empty((a.shape[0], L.shape[0]))
    _lse_axis_kernel(np.ascontiguousarray(a), np.ascontiguousarray(L), out)
    return out


def _lse_axis_numpy(a, L):
    """Reference implementation of :func:`_lse_axis` (chunked numpy)."""
    M, n = a.shape
    out = np.empty((M, L.shape[0]))
    step = max(1, _CHUNK_ELEMS // (n * L.shape[0]))
    with np.errstate(divide="ignore", under="ignore"):
        for i0 in range(0, M, step):
            t = a[i0:i0 + step, None, :] + L[None, :, :]
            mx = t.max(axis=2)
            mx = np.where(np.isfinite(mx), mx, 0.0)
            out[i0:i0 + step] = mx + np.log(np.exp(t - mx[:, :, None]).sum(axis=2))
    return out


@jit
def _lse_strided_kernel(a, L, K, n_outer, n, st, out):  # pragma: no cover - compiled
    """``out = log(K^d exp(a))`` along one axis of C-ordered flat arrays (``n`` cells of stride
    ``st``, ``n_outer`` blocks), without copies or transposes.

    Per line: shift by its largest entry, ``n`` exponentials, then ``n^2`` multiply-adds with
    the linear kernel ``K = exp(L)`` (a sum of non-negative terms: no cancellation) and one
    logarithm per output; an output whose sum is not safely normal (kernel entries that
    underflow, ``K_ik w_k < 1e-290``) is recomputed as the exact log-sum-exp.
    """
    w = np.empty(n)
    for o in range(n_outer):
        for r in range(st):
            base = o * n * st + r
            mx = -np.inf
            for k in range(n):
                v = a[base + k * st]
                if v > mx:
                    mx = v
            if mx == -np.inf:
                for i in range(n):
                    out[base + i * st] = -np.inf
                continue
            for k in range(n):
                w[k] = np.exp(a[base + k * st] - mx)
            for i in range(n):
                acc = 0.0
                for k in range(n):
                    acc += K[i, k] * w[k]
                if acc > 1e-290:
                    out[base + i * st] = mx + np.log(acc)
                    continue
                m2 = -np.inf                       # exact log-sum-exp of L[i, k] + a_k
                for k in range(n):
                    t = L[i, k] + a[base + k * st]
                    if t > m2:
                        m2 = t
                if m2 == -np.inf:
                    out[base + i * st] = -np.inf
                    continue
                acc = 0.0
                for k in range(n):
                    acc += np.exp(L[i, k] + a[base + k * st] - m2)
                out[base + i * st] = m2 + np.log(acc)


def apply_log_kernel(lw, shape, log_kernels):
    r"""``log(K w)`` for ``lw = log w`` ``(nS, nA)``, with ``K`` the tensor product of the 1-D
    kernels ``exp(log_kernels[d])`` on an action grid of ``shape`` (C order).

    ``K_{ij} = prod_d K^d_{i_d j_d}``, so ``K w`` is the 1-D kernel applied along each axis in
    turn (``O(nS nA sum_d n_d)`` instead of ``O(nS nA^2)``). Each axis is one numba pass over
    strided lines (:func:`_lse_strided_kernel`: ``n_d`` exponentials per line, then the linear
    kernel; exact log-sum-exp where the linear kernel would underflow).
    """
    nS = lw.shape[0]
    shape = tuple(int(n) for n in shape)
    w = np.ascontiguousarray(lw, dtype=float).reshape(-1)
    for d, L in enumerate(log_kernels):
        n = shape[d]
        if n == 1:
            continue
        L = np.ascontiguousarray(L, dtype=float)
        with np.errstate(under="ignore"):
            K = np.exp(L)
        st = int(np.prod(shape[d + 1:]))
        out = np.empty_like(w)
        _lse_strided_kernel(w, L, K, nS * int(np.prod(shape[:d])), n, st, out)
        w = out
    return w.reshape(nS, -1)


def entropic_log_kernels(actions, h, eps):
    """The 1-D log-kernels ``-(x_i - x_j)^2 / (2 h eps)`` of each action axis (cell centres)."""
    return [-(x[:, None] - x[None, :]) ** 2 / (2.0 * h * eps) for x in actions.axes]


def entropic_default_eps(actions, h):
    r"""Default entropic regularization ``eps = delta_min^2 / (2h)``: the Gibbs kernel
    ``exp(-|x-y|^2/(2 h eps))`` then has width ``sqrt(2 h eps) = delta_min`` (one cell; weight
    ``e^{-1}`` between neighbouring cells). Narrower kernels make the grid step sticky (mass moves
    to a neighbour at a rate ``~ exp(-delta^2/(2 h eps))``) and need ``~ tau/eps`` Sinkhorn
    iterations; the price is an effective temperature ``tau + eps/2 ... tau + eps``."""
    return float(np.min(actions.spacing)) ** 2 / (2.0 * h)


def entropic_gaussian_variance(k, tau, h, eps):
    r"""Per-axis variance of the fixed point of the entropic JKO step for ``Q = k |a - c|^2 / 2``
    on the whole space (continuous Gaussian computation, ``docs/jko.md`` Section 8).

    Solves ``eps (v + h w) = w (2 v + h w)`` with ``w = k v - tau > 0``. Limits: ``v -> (tau +
    eps/2)/k`` as ``h -> 0`` and ``v -> (tau + eps)/k`` as ``h -> infinity``; ``v = tau/k`` (Gibbs)
    iff ``eps = 0``.
    """
    if eps == 0:
        return tau / k
    # with v = (tau + w)/k: eps (tau + w)/k + eps h w = w (2 (tau + w)/k + h w), i.e.
    # (2/k + h) w^2 + (2 tau/k - eps/k - eps h) w - eps tau / k = 0 (positive root)
    A2 = 2.0 / k + h
    B = 2.0 * tau / k - eps / k - eps * h
    C = -eps * tau / k
    w = (-B + np.sqrt(B * B - 4 * A2 * C)) / (2 * A2)
    return (tau + w) / k


def _anderson(xa, r, xn, om, grew, active, dX, dR, x_last, r_last, depth, slot):
    """Anderson (type II) update of the relaxed iterates ``xn = xa + om r`` of the active states
    (histories in ring buffers indexed by state, ``slot`` the buffer position of this iteration).
    States with non-finite entries, or whose error grew (``grew``), take the plain step and
    restart their history."""
    mem = dX.shape[1]
    ok = np.all(np.isfinite(xa), axis=1) & np.all(np.isfinite(r), axis=1) & ~grew
    has = ok & (depth[active] > 0)
    # store the differences to the previous iterate (states with a previous one)
    if np.any(has):
        idx = active[has]
        dX[idx, slot] = xa[has] - x_last[idx]
        dR[idx, slot] = r[has] - r_last[idx]
        depth[idx] = np.minimum(depth[idx] + 1, mem + 1)
    x_last[active] = xa
    r_last[active] = r
    depth[active[~ok]] = 0
    depth[active[ok & (depth[active] == 0)]] = 1        # a previous iterate now exists
    use = ok & (depth[active] > 1)
    if not np.any(use):
        return xn
    idx = active[use]
    k = np.minimum(depth[idx] - 1, mem)                  # stored differences per state
    # an active state writes every iteration, so its k latest differences sit in the slots
    # slot, slot - 1, ..., slot - k + 1 (mod mem)
    valid = np.arange(mem)[None, :] < k[:, None]
    order = (slot - np.arange(mem)[None, :]) % mem
    sel = np.zeros((idx.size, mem), dtype=bool)
    np.put_along_axis(sel, order, valid, axis=1)
    DR = dR[idx] * sel[:, :, None]
    DX = dX[idx] * sel[:, :, None]
    G = np.einsum("sik,sjk->sij", DR, DR)
    rhs = np.einsum("sik,sk->si", DR, r[use])
    scale = np.maximum(np.einsum("sii->s", G), 1e-300)
    G = G + (1e-10 * scale)[:, None, None] * np.eye(mem)[None] + np.where(sel, 0.0, 1.0)[:, :, None] * np.eye(mem)[None]
    g = np.linalg.solve(G, rhs[..., None])[..., 0] * sel
    omu = om[use][:, None]
    out = xn.copy()
    out[use] = xa[use] + omu * r[use] - np.einsum("si,sik->sk", g, DX + omu[:, :, None] * DR)
    return out


def jko_prox_entropic(p, Q, tau, h, eps, actions, tol=1e-10, max_iter=20000, on_stall="raise",
                      warm=True, warm_floor=1e-12, anderson=5):
    r"""One entropic JKO step per state (any action dimension; atoms at the cell centres).

    Solves, for every state (vectorized; the arrays are ``(nS, nA)``),

    .. math::

        \min_{\gamma \ge 0,\ \gamma 1 = p}\ \sum_{ij} \gamma_{ij}\frac{|x_i - x_j|^2}{2h}
        + \varepsilon\,\mathrm{KL}(\gamma \,|\, p \otimes 1) + F(\gamma^T 1),\qquad
        F(m) = \langle Q, m\rangle + \tau \langle m, \log(m/\mathrm{vol})\rangle,

    by Sinkhorn-like scaling ``gamma = diag(u) K diag(v)``, ``K = exp(-|x-y|^2/(2 h eps))``, in the
    log domain: ``log u = log p - log(K v)``, ``log q = log(K^T u)``, ``m = prox^KL_{F/eps}(q)
    = softmax((eps log q - Q)/(eps + tau))`` (the mass constraint ``sum m = 1`` -- implied by
    ``gamma 1 = p`` -- is added to ``F``, which removes the slowly converging total-mass mode and
    the factors ``vol`` and ``e^{-tau/(eps+tau)}``), ``log v = log m - log q``. The fixed-point
    iteration on ``log v`` is over-relaxed with ``omega = 1.9/(2 - lambda)``, ``lambda =
    tau/(tau + eps)`` (its Jacobian has a real spectrum in ``[0, lambda]``), and accelerated by
    Anderson mixing of depth ``anderson`` per state (type II: ``x+ = x + omega r - (dX + omega
    dR) g`` with ``g`` the least-squares combination of the last residual differences ``dR``
    closest to the residual ``r``; ``anderson=0`` turns it off). A state whose marginal error grows
    tenfold takes a plain Sinkhorn step and restarts its history; a state where the mixing
    stagnates (the error does not halve within ``4 anderson`` iterations) continues without it.

    Stops when ``|gamma 1 - p|_1 <= tol`` (bounded by ``sum_j q_j v_j |exp(r_j) - 1|``, ``r`` the
    change of ``log v``) and the new masses changed by at most ``tol`` in L1, per state (a rounding
    floor ``64 eps_mach sum_j q_j v_j (|log v_j| + |log q_j|)`` applies for tiny ``eps``). Returns
    ``(m, info)``; ``m`` sums to 1 to rounding and is floored at ``1e-250``. ``warm``: start from
    ``log v = -(Q + tau log p)/eps`` (``p`` floored at ``warm_floor * max p``), exact when the kernel
    is the identity (then ``m = p``); otherwise from ``log v = 0``. Iterations: about
    ``13 tau/eps`` for a spread ``p`` (``docs/jko.md`` Section 8).
    """
    p = np.asarray(p, dtype=float)
    Q = np.asarray(Q, dtype=float)
    nS, nA = p.shape
    shape = tuple(actions.shape)
    if not (tau > 0):
        raise ValidationError("jko_prox_entropic needs tau > 0")
    if not (np.isfinite(eps) and eps > 0):
        raise ValidationError(f"jko: eps must be a finite number > 0, got {eps}")
    if on_stall not in ("raise", "warn", "accept"):
        raise ValidationError(f"on_stall must be 'raise', 'warn' or 'accept', got {on_stall!r}")
    Ls = entropic_log_kernels(actions, h, eps)
    with np.errstate(divide="ignore"):
        lpi = np.log(p)
    Qs = Q - Q.min(axis=1, keepdims=True)
    a, b = eps / (eps + tau), 1.0 / (eps + tau)
    lam = tau / (tau + eps)
    omega = max(1.0, 1.9 / (2.0 - lam))
    if warm:
        # log v of the "no transport" solution (exact when K = I, i.e. kernel much narrower than a
        # cell: then m = p): log v = -(Q + tau log p)/eps; empty cells are floored
        pmax = p.max(axis=1, keepdims=True)
        x = -(Qs + tau * np.log(np.maximum(p, warm_floor * pmax))) / eps
        x -= x.max(axis=1, keepdims=True)
    else:
        x = np.zeros_like(p)                   # log v
    m_out = p.copy()
    m_prev = p.copy()
    err_out = np.full(nS, np.inf)
    dp_out = np.full(nS, np.inf)
    iters = np.zeros(nS, dtype=int)
    active = np.arange(nS)
    best = np.full(nS, np.inf)
    mem = max(int(anderson), 0)
    if mem:
        dX = np.zeros((nS, mem, nA))           # ring buffers of the last differences
        dR = np.zeros((nS, mem, nA))
        x_last = np.zeros((nS, nA))
        r_last = np.zeros((nS, nA))
        depth = np.zeros(nS, dtype=int)        # how many differences are stored (<= mem)
        since = np.zeros(nS, dtype=int)        # iterations since the error last halved
        plain = np.zeros(nS, dtype=bool)       # states where Anderson mixing was switched off
        x_best = x.copy()                      # iterate of each state's smallest error so far
        slot = 0
    with np.errstate(divide="ignore", under="ignore"):
        for it in range(1, max_iter + 1):
            if active.size == 0:
                break
            xa, lpa = x[active], lpi[active]
            lKv = apply_log_kernel(xa, shape, Ls)
            lu = lpa - lKv
            lq = apply_log_kernel(lu, shape, Ls)
            z = a * lq - b * Qs[active]
            zm = z.max(axis=1, keepdims=True)
            lm = z - zm - np.log(np.exp(z - zm).sum(axis=1, keepdims=True))
            r = (lm - lq) - xa
            qcol = np.exp(np.minimum(xa + lq, 0.0))          # column marginal of the current gamma
            err = np.sum(qcol * np.abs(np.expm1(np.minimum(r, 700.0))), axis=1)
            floor = 64 * _EPS * np.sum(qcol * (np.abs(xa) + np.abs(lq)), axis=1)
            mn = np.exp(lm)
            dp = np.sum(np.abs(mn - m_prev[active]), axis=1)
            m_prev[active] = mn
            m_out[active] = mn
            err_out[active], dp_out[active] = err, dp
            iters[active] = it
            thr = np.maximum(tol, floor)
            conv = (err <= thr) & (dp <= thr)
            # safeguard of the over-relaxation: plain Sinkhorn for a state whose error grew tenfold
            grew = err > 10.0 * best[active]
            om = np.where(grew, 1.0, omega)
            improved = err < 0.5 * best[active]
            best[active] = np.minimum(best[active], err)
            xn = xa + om[:, None] * r
            if mem:
                # Anderson mixing stops for good in a state where it stagnates (no halving of the
                # error in 4 * depth iterations): the over-relaxed iteration alone converges
                since[active] = np.where(improved, 0, since[active] + 1)
                x_best[active[improved]] = xa[improved]
                off = (since[active] > 4 * mem) & ~plain[active]
                plain[active[off]] = True
                xn = _anderson(xa, r, xn, om, grew | plain[active], active, dX, dR, x_last,
                               r_last, depth, slot)
                if np.any(off):                  # continue from the best iterate, without mixing
                    xn[off] = x_best[active[off]]
                slot = (slot + 1) % mem
            x[active] = xn - xn.max(axis=1, keepdims=True)  # gauge (u, v) -> (u c, v / c)
            active = active[~conv]
    stalled = active.copy()
    if stalled.size and on_stall == "raise":
        s0 = int(stalled[0])
        raise ConvergenceError(
            f"jko (entropic, multi-D): Sinkhorn did not converge in {max_iter} iterations for "
            f"{stalled.size} state(s) (first: state {s0}, marginal error {err_out[s0]:.3e}, mass "
            f"change {dp_out[s0]:.3e}, tol {tol:g}; eps = {eps:g}, tau = {tau:g}, h = {h:g}). The "
            "iteration contracts like tau/(tau + eps) per step: raise eps_max_iter or eps_tol, or "
            "use a larger eps",
            {"states": stalled.tolist(), "marginal_error": err_out[stalled].tolist(),
             "mass_change": dp_out[stalled].tolist(), "eps": eps, "iterations": max_iter,
             "masses": m_out})
    if stalled.size and on_stall == "warn":
        warnings.warn(f"jko: {stalled.size} entropic proximal problem(s) not converged after "
                      f"{max_iter} Sinkhorn iterations (marginal error {err_out[stalled].max():.3e}); "
                      "keeping the last iterate", RuntimeWarning, stacklevel=2)
    m = np.maximum(m_out, _FLOOR)
    m /= m.sum(axis=1, keepdims=True)
    return m, {"iterations": int(iters.max()), "iterations_per_state": iters, "stalled": stalled,
               "residual": float(err_out.max()), "residual_per_state": err_out,
               "step": float(dp_out.max()), "eps": float(eps)}


# =============================================================================================
# the scheme
# =============================================================================================
class JKO(ProposedStep, Scheme):
    r"""Minimizing movement (JKO) steps: exact 1-D ``W_2`` of the grid densities; multi-D actions:
    entropic JKO (log-domain Sinkhorn, :func:`jko_prox_entropic`).

    Options
    -------
    implicit : bool
        ``False`` (default): ``Q`` linearized at ``pi_k`` (one proximal solve per step).
        ``True``: fixed point ``pi^+ = prox_h(pi_k; Q(pi^+))`` -- the optimality condition of the
        fully implicit step ``argmin J(pi)/kappa + sum_s w(s) W_2^2/(2h)`` with the state weights
        taken at ``pi^+`` -- iterated until the policy changes by less than ``implicit_tol``.
    tol : float
        Newton tolerance of the proximal problem (largest mass change of the last full Newton
        step; default ``1e-12``).
    max_inner : int
        Newton iterations per proximal solve (default 200).
    on_stall : {"raise", "warn", "accept"}
        What to do when a proximal solve does not converge in ``max_inner`` iterations (see
        :func:`jko_prox_1d`; default ``"raise"``: ConvergenceError).
    implicit_tol, max_implicit : float, int
        Fixed-point tolerance (sup-norm of the mass change, default ``1e-10``) and iterations
        (default 200) for ``implicit=True``; ConvergenceError if not reached.
    default_dt : float
        First step when ``wg.flow`` gets ``dt=None`` (default 1.0). The scheme is unconditionally
        stable (1-D: ``J`` decreases for every step), so there is no CFL bound; larger steps
        converge faster (``h -> infinity`` is soft policy iteration) and, on multi-D grids, carry a
        smaller entropic bias (``eps = delta^2 / (2h)``).
    growth : float
        ``dt=None``: each full step is ``growth`` times the previous one (default 10; ``1`` keeps
        ``default_dt``), so the flow reaches its limit in a few steps. A step shortened to land on
        a saved frame does not grow the next one.
    dt_max : float, optional
        ``dt=None``: largest step (default None: no bound).
    eps : float, optional
        Multi-D actions only: entropic regularization of the step (:func:`jko_prox_entropic`).
        Default ``None``: ``delta_min^2 / (2h)`` per step (:func:`entropic_default_eps`, kernel
        width one cell). The fixed point is the Gibbs law at an effective temperature between
        ``tau + eps/2`` and ``tau + eps`` (``docs/jko.md`` Section 8). Giving ``eps`` for 1-D
        actions raises ValidationError (the 1-D step is exact).
    eps_tol, eps_max_iter : float, int
        Multi-D only: Sinkhorn tolerance (L1 marginal error and L1 mass change, default
        ``1e-10``) and iteration cap (default 20000); ``on_stall`` applies when the cap is hit.
    """

    name = "jko"

    def __init__(self, mdp, objective, implicit: bool = False, tol: float = 1e-12,
                 max_inner: int = 200, implicit_tol: float = 1e-10, max_implicit: int = 200,
                 default_dt: float = 1.0, growth: float = 10.0, dt_max: float | None = None,
                 on_stall: str = "raise", eps: float | None = None,
                 eps_tol: float = 1e-10, eps_max_iter: int = 20000, **options):
        super().__init__(mdp, objective, **options)
        A = mdp.actions
        self.entropic = A.ndim > 1
        if any(A.periodic):
            raise ValidationError("jko: periodic action axes are not supported (W_2 on the circle)")
        if not self.tau > 0:
            raise ValidationError(
                "jko needs entropy > 0 (objective entropy tau > 0): with tau = 0 the proximal "
                "problem loses strict convexity and its minimizer leaves the interior of the simplex; "
                "use scheme='otto' (upwind limit) or add entropy")
        for nm, v in (("tol", tol), ("implicit_tol", implicit_tol), ("default_dt", default_dt)):
            if not (np.isfinite(v) and v > 0):
                raise ValidationError(f"jko: {nm} must be a finite number > 0, got {v}")
        if int(max_inner) < 1 or int(max_implicit) < 1:
            raise ValidationError("jko: max_inner and max_implicit must be >= 1")
        self.implicit = bool(implicit)
        self.tol = float(tol)
        self.max_inner = int(max_inner)
        self.implicit_tol = float(implicit_tol)
        self.max_implicit = int(max_implicit)
        self.default_dt = float(default_dt)
        if not (np.isfinite(growth) and growth >= 1):
            raise ValidationError(f"jko: growth must be a finite number >= 1, got {growth}")
        if dt_max is not None and not (np.isfinite(dt_max) and dt_max > 0):
            raise ValidationError(f"jko: dt_max must be a finite number > 0 or None, got {dt_max}")
        self.growth = float(growth)
        self.dt_max = np.inf if dt_max is None else float(dt_max)
        self._dt_next = None
        if on_stall not in ("raise", "warn", "accept"):
            raise ValidationError(f"jko: on_stall must be 'raise', 'warn' or 'accept', got {on_stall!r}")
        self.on_stall = on_stall
        if eps is not None and not self.entropic:
            raise ValidationError("jko: eps is the entropic regularization of the multi-D (Sinkhorn) "
                                  "step; 1-D steps are exact and take no eps")
        if eps is not None and not (np.isfinite(eps) and eps > 0):
            raise ValidationError(f"jko: eps must be a finite number > 0 or None, got {eps}")
        if not (np.isfinite(eps_tol) and eps_tol > 0) or int(eps_max_iter) < 1:
            raise ValidationError("jko: eps_tol must be > 0 and eps_max_iter >= 1")
        self.eps = None if eps is None else float(eps)
        self.eps_tol = float(eps_tol)
        self.eps_max_iter = int(eps_max_iter)
        self.delta = float(A.spacing[0])
        self.vol = float(A.cell_volume)
        self.stats.update({"inner_iterations": 0, "max_inner_iterations": 0,
                           "implicit_iterations": 0, "max_residual": 0.0, "stalled": 0})
        if self.entropic:
            self.stats.update({"eps_last": 0.0, "eps_max": 0.0})

    def grad_norm2(self, state) -> float:
        if state.evaluation.weights is None:
            # steps skip the occupancy solve; frames that report the gradient norm need it
            state.evaluation = self.evaluate(state.masses)
        return otto_rhs(state.masses, state.evaluation.Q, self.tau, self.mdp.actions,
                        state.evaluation.weights)[2]

    @property
    def adaptive(self) -> bool:
        return True

    def suggest_dt(self, state) -> float:
        return min(self.default_dt if self._dt_next is None else self._dt_next, self.dt_max)

    def prox(self, masses, Q, h, m0=None):
        """The proximal step ``argmin <Q,m> + tau <m, log m/vol> + W_2^2(m, masses)/(2h)`` per state
        (multi-D: its entropic approximation, ``m0`` unused)."""
        if self.entropic:
            eps = entropic_default_eps(self.mdp.actions, h) if self.eps is None else self.eps
            m, info = jko_prox_entropic(masses, Q, self.tau, h, eps, self.mdp.actions, self.eps_tol,
                                        self.eps_max_iter, on_stall=self.on_stall)
            self.stats["eps_last"] = float(eps)
            self.stats["eps_max"] = max(self.stats["eps_max"], eps)
        else:
            m, info = jko_prox_1d(masses, Q, self.tau, h, self.delta, self.vol, self.tol,
                                  self.max_inner, m0=m0, on_stall=self.on_stall)
        self.stats["stalled"] += int(len(info["stalled"]))
        self.stats["inner_iterations"] += info["iterations"]
        self.stats["max_inner_iterations"] = max(self.stats["max_inner_iterations"], info["iterations"])
        self.stats["max_residual"] = max(self.stats["max_residual"], info["residual"])
        return m, info

    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        if not (np.isfinite(dt) and dt > 0):
            raise ValidationError(f"jko: dt must be > 0, got {dt}")
        m, info = self.prox(state.masses, state.evaluation.Q, dt)
        inner = info["iterations"]
        n_impl = 0
        if self.implicit:
            change = np.inf
            for n_impl in range(1, self.max_implicit + 1):
                ev = self.evaluate(m, weights=False)
                m_new, info = self.prox(state.masses, ev.Q, dt, m0=m)
                inner += info["iterations"]
                change = float(np.max(np.abs(m_new - m)))
                m = m_new
                if change <= self.implicit_tol:
                    break
            else:
                raise ConvergenceError(
                    f"jko(implicit=True): the fixed point pi+ = prox_h(pi_k; Q(pi+)) did not "
                    f"converge in {self.max_implicit} iterations (last change {change:.3e} > "
                    f"implicit_tol = {self.implicit_tol:g}) at t = {state.t:g}, dt = {dt:g}; "
                    "use a smaller dt or implicit=False", {"t": state.t, "dt": dt, "change": change})
            self.stats["implicit_iterations"] += n_impl
        ev = self.evaluate(m, weights=False)
        self.stats["steps"] += 1
        if adaptive:
            proposal = self.suggest_dt(state)
            # grow after a full step; a step shortened for a frame keeps the proposal
            self._dt_next = min(dt * self.growth, self.dt_max) if dt >= proposal else proposal
            self._dt_prev = dt
        return FlowState(state.t + dt, m, ev, state.params,
                         {"dt": dt, "inner_iterations": inner, "residual": info["residual"],
                          "implicit_iterations": n_impl,
                          **({"eps": info["eps"]} if "eps" in info else {})})
