r"""Optimal-transport primitives on cell-centred grids, shared by the geometry and the particles.

* quantile functions of the piecewise-constant law of cell masses (1-D): knots ``c_j`` (the
  cumulative masses), the quantile function, the merge of two knot sets on which both are
  affine, and the exact ``W_2^2`` between two such laws (a numba two-pointer kernel and its numpy
  twin);
* POT's network simplex between two sets of atoms, with the marginals and the solver status
  checked (never a silent zero plan);
* validation of the metric weights (a probability vector over states).

Nothing here knows about policies or MDPs: :mod:`wgflow.geometry` and :mod:`wgflow.particles`
build on it.
"""
from __future__ import annotations

import warnings

import numpy as np

from .errors import ValidationError, WgflowError
from .kernels.config import jit

__all__ = ["check_weights", "SUM_TOL"]

#: tolerance on the total of a probability vector (same as the row-sum tolerance of masses)
SUM_TOL = 1e-10


def check_weights(weights, n_states: int, name: str = "weights") -> np.ndarray:
    """Validate metric weights: a probability vector ``(nS,)`` (or an ``Evaluation``).

    Accepts an object with a ``weights`` attribute (e.g. :class:`~wgflow.Evaluation`) or an
    array. Raises :class:`~wgflow.ValidationError` naming the problem: wrong shape, NaN/inf, a
    negative entry (and where), or a total differing from 1 by more than ``1e-10``. Nothing is
    renormalized.
    """
    if weights is None:
        raise ValidationError(f"{name} are required: give a probability vector ({n_states},) over "
                              "states, or an Evaluation (its ev.weights are used)")
    if hasattr(weights, "weights") and not isinstance(weights, np.ndarray):
        weights = weights.weights
    w = np.asarray(weights, dtype=float)
    if w.shape != (n_states,):
        raise ValidationError(f"{name} must have shape ({n_states},) (one per state), got {w.shape}")
    if not np.all(np.isfinite(w)):
        s = int(np.nonzero(~np.isfinite(w))[0][0])
        raise ValidationError(f"{name} contain NaN or inf (first at state {s})")
    if np.any(w < 0):
        s = int(np.nonzero(w < 0)[0][0])
        raise ValidationError(f"{name} must be >= 0; state {s} has weight {w[s]:g}")
    tot = float(w.sum())
    if abs(tot - 1.0) > SUM_TOL:
        raise ValidationError(f"{name} must sum to 1 (a probability vector over states) within "
                              f"{SUM_TOL:g}; they sum to {tot:.17g}. Nothing is renormalized.")
    return w


# =============================================================================================
# 1-D quantile machinery (vectorized over states)
# =============================================================================================
def _knots(m: np.ndarray) -> np.ndarray:
    """Cumulative masses ``c_0 = 0, ..., c_n = 1`` per state ``(nS, n+1)`` (normalized by the total)."""
    nS, n = m.shape
    c = np.zeros((nS, n + 1))
    np.cumsum(m, axis=1, out=c[:, 1:])
    c /= c[:, -1:]
    c[:, -1] = 1.0
    return c


def _count_le(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise ``searchsorted(a[r], v[r], side="right")``: how many ``a[r, :] <= v[r, k]``.

    ``a`` is ``(nS, p)`` sorted per row, ``v`` is ``(nS, q)`` (any order). One stable argsort of
    the concatenation (a's entries first, so ties count as ``<=``); no loop over rows.
    """
    nS, p = a.shape
    q = v.shape[1]
    Z = np.concatenate([a, v], axis=1)
    o = np.argsort(Z, axis=1, kind="stable")
    isa = o < p
    cnt = np.cumsum(isa, axis=1)
    r, pos = np.nonzero(~isa)
    out = np.empty((nS, q), dtype=np.int64)
    out[r, o[r, pos] - p] = cnt[r, pos]
    return out


def _quantile_pc(c: np.ndarray, u: np.ndarray, lo: float, h: float) -> np.ndarray:
    """Quantile function of the piecewise-constant law with knots ``c`` at levels ``u`` ``(nS, q)``.

    On ``u in [c_j, c_{j+1}]`` (a cell of positive mass) ``Q(u) = lo + h (j + (u - c_j)/m_j)``.
    """
    n = c.shape[1] - 1
    j = np.clip(_count_le(c, u) - 1, 0, n - 1)
    cj = np.take_along_axis(c, j, axis=1)
    mj = np.take_along_axis(c, j + 1, axis=1) - cj
    return lo + h * (j + _ratio01(u - cj, mj))


def _merge(c0: np.ndarray, c1: np.ndarray):
    """Merge two knot sets per state.

    Returns ``ua, ub`` (ends of the ``2n+1`` sub-intervals, ``(nS, 2n+1)``) and the cells
    ``j0, j1`` of each law on each sub-interval. On a sub-interval of positive length both
    quantile functions are linear (affine in u) and ``c_{j} <= ua < ub <= c_{j+1}``.
    """
    nS, n1 = c0.shape
    n = n1 - 1
    U = np.concatenate([c0, c1], axis=1)
    o = np.argsort(U, axis=1, kind="stable")
    u = np.take_along_axis(U, o, axis=1)
    k0 = np.cumsum(o < n1, axis=1)[:, :-1]            # c0 knots at or before each position
    j0 = k0 - 1
    j1 = np.arange(2 * n + 1)[None, :] - k0          # (p + 1 - k0) - 1
    np.clip(j0, 0, n - 1, out=j0)
    np.clip(j1, 0, n - 1, out=j1)
    return u[:, :-1], u[:, 1:], j0, j1


def _local(c, j, ua, ub):
    """Relative positions ``(u - c_j)/m_j`` of both ends of each sub-interval within cell ``j``."""
    cj = np.take_along_axis(c, j, axis=1)
    mj = np.take_along_axis(c, j + 1, axis=1) - cj
    return _ratio01(ua - cj, mj), _ratio01(ub - cj, mj)


def _ratio01(num, den):
    """``clip(num / den, 0, 1)`` where ``den > 0``, 0 elsewhere: a division, not a reciprocal, so a
    subnormal cell mass (1/m overflows) gives the right fraction."""
    pos = den > 0
    with np.errstate(over="ignore", under="ignore"):
        r = np.divide(num, np.where(pos, den, 1.0))
    return np.where(pos, np.clip(r, 0.0, 1.0), 0.0)


def _w2sq_1d_numpy(m0, m1, h, atoms):
    """Plain-numpy twin of the 1-D kernel (vectorized over states): exact ``W_2^2`` per state."""
    c0, c1 = _knots(m0), _knots(m1)
    ua, ub, j0, j1 = _merge(c0, c1)
    L = ub - ua
    dj = (j0 - j1).astype(float)
    if atoms:
        return np.sum(L * (h * dj) ** 2, axis=1)
    r0a, r0b = _local(c0, j0, ua, ub)
    r1a, r1b = _local(c1, j1, ua, ub)
    Da = h * (dj + r0a - r1a)
    Db = h * (dj + r0b - r1b)
    return np.sum(L * (Da * Da + Da * Db + Db * Db), axis=1) / 3.0


def _w2sq_1d_body(m0, m1, h, atoms, out):
    nS, n = m0.shape
    for s in range(nS):
        t0 = 0.0
        t1 = 0.0
        for a in range(n):
            t0 += m0[s, a]
            t1 += m1[s, a]
        i = 0
        j = 0
        cum0 = m0[s, 0]
        cum1 = m1[s, 0]
        lo0 = 0.0
        lo1 = 0.0
        hi0 = cum0 / t0 if i < n - 1 else 1.0
        hi1 = cum1 / t1 if j < n - 1 else 1.0
        u = 0.0
        acc = 0.0
        while True:
            while hi0 <= u and i < n - 1:
                i += 1
                lo0 = hi0
                cum0 += m0[s, i]
                hi0 = cum0 / t0 if i < n - 1 else 1.0
            while hi1 <= u and j < n - 1:
                j += 1
                lo1 = hi1
                cum1 += m1[s, j]
                hi1 = cum1 / t1 if j < n - 1 else 1.0
            ub = hi0 if hi0 < hi1 else hi1
            if ub <= u:
                break
            L = ub - u
            dj = float(i - j)
            if atoms:
                d = h * dj
                acc += L * d * d
            else:
                w0 = hi0 - lo0
                w1 = hi1 - lo1
                da = h * (dj + (u - lo0) / w0 - (u - lo1) / w1)
                db = h * (dj + (ub - lo0) / w0 - (ub - lo1) / w1)
                acc += L * (da * da + da * db + db * db) / 3.0
            u = ub
        out[s] = acc


_KERNELS: dict = {}


def make_w2sq_1d_kernel():
    """Factory of the jitted 1-D kernel ``kernel(m0, m1, h, atoms, out)`` (two-pointer merge).

    Per state, one pass over the merged knots of the two quantile functions (O(nA) per state,
    no sort, no temporaries); equals :func:`_w2sq_1d_numpy` to rounding.
    """
    if "w2sq_1d" not in _KERNELS:
        _KERNELS["w2sq_1d"] = jit(_w2sq_1d_body)
    return _KERNELS["w2sq_1d"]


def _w2sq_1d(m0, m1, h, atoms, backend="numba"):
    if backend == "numpy":
        return _w2sq_1d_numpy(m0, m1, h, atoms)
    out = np.empty(m0.shape[0])
    make_w2sq_1d_kernel()(np.ascontiguousarray(m0), np.ascontiguousarray(m1), float(h),
                          bool(atoms), out)
    return out


def _emd_state(a, b, X, Y, s, want_plan=False):
    """Exact OT between atoms ``(a, X)`` and ``(b, Y)`` by POT's network simplex, checked.

    Marginals are checked in float64 (each sums to 1 within 1e-10); the solver status must be
    OPTIMAL (POT returns a silent zero plan with only a warning otherwise) -- else a
    WgflowError is raised.
    """
    import ot
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    for nm, x in (("pi0", a), ("pi1", b)):
        if abs(x.sum() - 1.0) > SUM_TOL:
            raise ValidationError(f"{nm} masses of state {s} sum to {x.sum():.17g}, not 1 within "
                                  f"{SUM_TOL:g}; refusing to call ot.emd on unbalanced marginals")
    a = a / a.sum()
    b = b / b.sum()
    M = np.ascontiguousarray(((X[:, None, :] - Y[None, :, :]) ** 2).sum(axis=2))
    nmax = max(100000, 50 * (a.size + b.size) ** 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if want_plan:
            G, log = ot.emd(a, b, M, numItermax=nmax, log=True)
            cost = float(log["cost"])
        else:
            cost, log = ot.emd2(a, b, M, numItermax=nmax, log=True)
            G = None
    code = int(log.get("result_code", -1))
    solver_warnings = [w for w in caught
                       if any(k in str(w.message).lower() for k in ("optimal", "infeasible", "unbounded"))]
    if code != 1 or solver_warnings:
        msgs = "; ".join(str(w.message) for w in solver_warnings) or str(log.get("warning"))
        raise WgflowError(f"ot.emd did not reach an optimal transport plan for state {s} "
                          f"(result_code={code}: {msgs}); not accepting its result")
    return float(cost), G
