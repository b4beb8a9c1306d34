r"""Optimal-transport primitives on cell-centred grids, shared by the geometry and the particles.

* quantile functions of the piecewise-constant law of cell masses (1-D): knots ``c_j`` (the
  cumulative masses), the quantile function, the merge of two knot sets on which both are
  affine, and the exact ``W_2^2`` between two such laws (a numba two-pointer kernel and its numpy
  twin);
* the 1-D monotone coupling as pieces ``(i, j, L)`` built by a merge over the amounts still
  unassigned (every cell keeps its relative precision, down to subnormal masses), and the
  numba kernels on it: cell masses of McCann interpolants (piecewise-constant or atoms) and the
  monotone map at the cell centres;
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


# =============================================================================================
# 1-D monotone coupling by a merge over remaining amounts (relative precision)
# =============================================================================================
# The monotone (quantile) coupling of two laws on a line is a sequence of pieces
# ``(i, j, L)``: mass ``L`` of cell ``i`` of the first law goes to cell ``j`` of the second.
# Reading the pieces off differences of cumulative sums ``c_{k+1} - c_k`` (``_merge``) loses
# every mass below ``1e-16`` times the cumulative sum at that level. Here each piece is
# ``L = min(rem_i, rem_j)`` of the amounts still unassigned in the two current cells, so a
# piece's mass carries the rounding of its own cells only; the cells of both laws are
# reproduced to a few ulps each (a cell's pieces sum to its mass), however small the mass.
#
# A merge run from one end accumulates the rounding of the amounts it passes; where it ends,
# the two sides differ by that rounding (about 1e-16), which would land on the cells at the far
# end (the other tail). So the merge runs from both ends and meets in the longest piece of a
# first left-to-right pass (at least ``1 / (n0 + n1)`` long): only that piece absorbs the
# rounding, relative to its own size.
#
# Each piece stores where it starts and ends inside both cells, as fractions of the cell
# (``A0, B0`` in cell ``i``, ``A1, B1`` in cell ``j``), each a double-double ``hi + lo`` taken
# from the amount on the nearer side of the cell (``cons / m`` near the left end,
# ``1 - rem / m`` near the right end, the subtraction kept exact in ``lo``): a fraction is
# then known to a relative precision of its distance to the nearer cell end, and a piece that
# ends 1e-20 of a cell before an edge still does after interpolation (positions are summed in
# double-double arithmetic in ``_interpolate_1d``).
@jit
def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


@jit
def _split(a):
    c = 134217729.0 * a          # 2^27 + 1 (Dekker)
    hi = c - (c - a)
    return hi, a - hi


@jit
def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@jit
def _dd_less(h, l, b):
    """``h + l < b`` for a normalized double-double (``|l| <= ulp(h) / 2``) and a double ``b``."""
    return h < b or (h == b and l < 0.0)


@jit
def _frac(left, right, m):
    """Fraction ``left / m`` of a cell split into ``left + right = m``, as ``(hi, lo)``, from the
    smaller side (``1 - right / m`` exactly in two parts when the right part is smaller)."""
    if left <= right:
        return left / m, 0.0
    r = right / m
    hi = 1.0 - r
    return hi, (1.0 - hi) - r


@jit
def _next_cell(P, a, n, rev):
    """``(a, P[cell a])`` for the first cell with positive mass from position ``a`` on, counted
    from the left (``rev=False``) or the right end; ``(n, 0.0)`` if there is none."""
    while a < n and P[n - 1 - a if rev else a] <= 0.0:
        a += 1
    return a, (P[n - 1 - a if rev else a] if a < n else 0.0)


@jit
def _walk_1d(P, Q, n, rev, si, sj, I, J, L, F, off):
    """Merge from the left (``rev=False``) or the right end, writing pieces from ``off`` on.

    ``F`` has 8 rows: the fractions ``A0, B0, A1, B1`` as ``(hi, lo)`` pairs. Stops before the
    piece of the pair ``(si, sj)`` (original cell indices; ``-1``: run to the end of either
    law). Returns ``(count, kbest, ri, rj, ci, cj, met)``: the number of pieces written, the
    index of the longest piece, the amounts of its cells still unassigned (``ri, rj``) and
    already consumed (``ci, cj``) just before it -- or, with a stop pair, where the walk stopped
    -- and whether it met ``(si, sj)``.
    """
    a, ri = _next_cell(P, 0, n, rev)
    b, rj = _next_cell(Q, 0, n, rev)
    k = 0
    kbest = -1
    lbest = -1.0
    out = (0.0, 0.0, 0.0, 0.0)
    ci = 0.0
    cj = 0.0
    met = False
    while a < n and b < n:
        i = n - 1 - a if rev else a
        j = n - 1 - b if rev else b
        if i == si and j == sj:
            met = True
            out = (ri, rj, ci, cj)
            break
        pi = P[i]
        qj = Q[j]
        m = ri if ri < rj else rj
        ri1 = ri - m
        rj1 = rj - m
        if ri <= rj:
            ri1 = 0.0           # exact: the smaller side is used up
        if rj <= ri:
            rj1 = 0.0
        ci1 = ci + m
        cj1 = cj + m
        if ri1 == 0.0:
            ci1 = pi
        if rj1 == 0.0:
            cj1 = qj
        p = off + k
        I[p] = i
        J[p] = j
        L[p] = m
        if rev:     # consumed amounts lie on the right: the left part is what remains
            F[0, p], F[1, p] = _frac(ri1, ci1, pi)
            F[2, p], F[3, p] = _frac(ri, ci, pi)
            F[4, p], F[5, p] = _frac(rj1, cj1, qj)
            F[6, p], F[7, p] = _frac(rj, cj, qj)
        else:
            F[0, p], F[1, p] = _frac(ci, ri, pi)
            F[2, p], F[3, p] = _frac(ci1, ri1, pi)
            F[4, p], F[5, p] = _frac(cj, rj, qj)
            F[6, p], F[7, p] = _frac(cj1, rj1, qj)
        if m > lbest and si < 0:
            lbest = m
            kbest = k
            out = (ri, rj, ci, cj)
        k += 1
        ri = ri1
        rj = rj1
        ci = ci1
        cj = cj1
        if ri <= 0.0:
            a, ri = _next_cell(P, a + 1, n, rev)
            ci = 0.0
        if rj <= 0.0:
            b, rj = _next_cell(Q, b + 1, n, rev)
            cj = 0.0
    return k, kbest, out[0], out[1], out[2], out[3], met


@jit
def _coupling_1d(P, Q, I, J, Lp, Lq, F, RI, RJ, RF):
    """Monotone coupling of the normalized cell masses ``P``, ``Q`` (one state) as pieces.

    ``I, J`` (int) and ``Lp, Lq`` have length ``2 n``, ``F`` is ``(8, 2n)`` (the fractions
    ``A0, B0, A1, B1`` as ``(hi, lo)`` row pairs); ``RI, RJ, RF`` (``(9, 2n)``) are scratch for
    the right walk. Returns the number of pieces (at most ``2n - 1``), in increasing order of
    level. ``Lp`` and ``Lq`` are the piece's mass as seen from the first and the second law;
    they differ only on the meeting piece, by rounding.
    """
    n = P.shape[0]
    K, kb, ri_l, rj_l, ci_l, cj_l, _ = _walk_1d(P, Q, n, False, -1, -1, I, J, Lp, F, 0)
    for k in range(K):
        Lq[k] = Lp[k]
    if K == 0:
        return 0
    si = I[kb]
    sj = J[kb]
    KR, _, ri_r, rj_r, ci_r, cj_r, met = _walk_1d(P, Q, n, True, si, sj, RI, RJ, RF[0], RF[1:], 0)
    if not met:
        return K        # not reached for laws of positive mass; keep the left walk
    pi = P[si]
    qj = Q[sj]
    # the meeting piece: what neither walk took. Its cells hold at least the piece (the
    # longest of the first walk, >= 1/(2n)), so the cancellation costs a few ulps of it
    lp = ri_l - ci_r
    lq = rj_l - cj_r
    Lp[kb] = lp if lp > 0.0 else 0.0
    Lq[kb] = lq if lq > 0.0 else 0.0
    F[0, kb], F[1, kb] = _frac(ci_l, ri_l, pi)
    F[2, kb], F[3, kb] = _frac(ri_r, ci_r, pi)
    F[4, kb], F[5, kb] = _frac(cj_l, rj_l, qj)
    F[6, kb], F[7, kb] = _frac(rj_r, cj_r, qj)
    for r in range(KR):
        p = kb + 1 + r
        src = KR - 1 - r
        I[p] = RI[src]
        J[p] = RJ[src]
        Lp[p] = RF[0, src]
        Lq[p] = RF[0, src]
        for c in range(8):
            F[c, p] = RF[c + 1, src]
    return kb + 1 + KR


@jit
def _coupling_1d_all(m0, m1, I, J, Lp, Lq, F, K):
    """Pieces of the monotone coupling for every state: rows of ``I, J, Lp, Lq`` ``(nS, 2n)``,
    ``F`` ``(nS, 8, 2n)``, counts ``K`` ``(nS,)``; the masses are normalized by the row totals."""
    nS, n = m0.shape
    P = np.empty(n)
    Q = np.empty(n)
    RI = np.empty(2 * n, dtype=np.int64)
    RJ = np.empty(2 * n, dtype=np.int64)
    RF = np.empty((9, 2 * n))
    for s in range(nS):
        t0 = 0.0
        t1 = 0.0
        for a in range(n):
            t0 += m0[s, a]
            t1 += m1[s, a]
        for a in range(n):
            P[a] = m0[s, a] / t0
            Q[a] = m1[s, a] / t1
        K[s] = _coupling_1d(P, Q, I[s], J[s], Lp[s], Lq[s], F[s], RI, RJ, RF)


def coupling_1d(m0: np.ndarray, m1: np.ndarray):
    """Monotone coupling of the rows of ``m0`` and ``m1`` ``(nS, n)`` (each normalized by its total).

    Returns ``(K, I, J, Lp, Lq, F)``: per state ``s`` the first ``K[s]`` entries of the rows are
    the pieces in increasing order of level: mass ``Lp`` of cell ``I`` of the first law goes to
    cell ``J`` of the second (``Lq``: the same mass as the second law accounts it; the two differ
    by rounding on one piece per state), occupying the fractions ``[A0, B0]`` of cell ``I`` and
    ``[A1, B1]`` of cell ``J``, stored in ``F[s]`` as the rows ``A0, A0lo, B0, B0lo, A1, A1lo,
    B1, B1lo`` (``hi, lo`` pairs). Every cell's pieces sum to its normalized mass to a few ulps,
    relative to that mass; zero cells have no pieces.
    """
    m0 = np.ascontiguousarray(m0, dtype=float)
    m1 = np.ascontiguousarray(m1, dtype=float)
    nS, n = m0.shape
    I = np.zeros((nS, 2 * n), dtype=np.int64)
    J = np.zeros((nS, 2 * n), dtype=np.int64)
    Lp = np.zeros((nS, 2 * n))
    Lq = np.zeros((nS, 2 * n))
    F = np.zeros((nS, 8, 2 * n))
    K = np.zeros(nS, dtype=np.int64)
    _coupling_1d_all(m0, m1, I, J, Lp, Lq, F, K)
    return K, I, J, Lp, Lq, F


@jit
def _pos_dd(k, i, j, ah, al, bh, bl, t, s1):
    """``y - k`` in double-double for ``y = (1-t)(i + a) + t (j + b)`` (cell units; ``a, b``
    double-double fractions), written from the nearer end so that ``i = j, a = b`` gives
    ``i + a - k`` exactly for every ``t``."""
    if t <= 0.5:
        c, c0, fh, fl, gh, gl, w = i, j - i, ah, al, bh, bl, t
    else:
        c, c0, fh, fl, gh, gl, w = j, i - j, bh, bl, ah, al, s1
    # y - k = (c - k) + f + w (c0 + (g - f))
    dh, dl = _two_sum(gh, -fh)
    dl += gl - fl
    terms0 = float(c - k)
    p1, e1 = _two_prod(w, float(c0))
    p2, e2 = _two_prod(w, dh)
    s, err = _two_sum(terms0, fh)
    lo = err + fl
    s, err = _two_sum(s, p1)
    lo += err + e1
    s, err = _two_sum(s, p2)
    lo += err + e2 + w * dl
    return _two_sum(s, lo)


@jit
def _interpolate_1d(K, I, J, Lp, Lq, F, ts, tot, atoms, out):
    """Cell masses of the McCann interpolants of the coupled laws at the times ``ts``.

    ``out`` is ``(nt, nS, n)``; ``tot`` ``(nt, nS)`` the total mass at each time. Positions are
    in cell units (cell ``k`` is ``[k, k + 1]``, its centre ``k + 1/2``), relative to a nearby
    edge in double-double arithmetic, and written from the nearer end, so a piece that does
    not move (``i = j``, same fractions) stays exactly where it is for every t, and a piece
    that reaches 1e-20 of a cell over an edge puts that share, to relative precision, there.

    * piecewise-constant laws (``atoms=False``): the piece spreads its mass uniformly over
      ``[(1-t) x0a + t x1a, (1-t) x0b + t x1b]`` (both quantile functions are affine on it) and
      each cell gets the overlap -- the interpolant's exact cell masses. An interval of zero
      width (in double-double) goes to the cell containing it (at an edge, the cell holding more
      of the unit interval ``[(1-t) i + t j, (1-t) i + t j + 1]`` the piece lies in).
    * atoms (``atoms=True``): mass at ``(1-t) i + t j`` (cell units), deposited with linear
      weights between the two nearest centres.
    """
    nt = ts.shape[0]
    nS = I.shape[0]
    n = out.shape[2]
    for it in range(nt):
        t = ts[it]
        s1 = 1.0 - t
        for s in range(nS):
            row = out[it, s]
            for a in range(n):
                row[a] = 0.0
            for k in range(K[s]):
                i = I[s, k]
                j = J[s, k]
                mass = Lp[s, k] + t * (Lq[s, k] - Lp[s, k])
                if mass <= 0.0:
                    continue
                if atoms:
                    # centre positions: the fractions are 1/2 on both sides
                    y = i + t * (j - i) if t <= 0.5 else j + s1 * (i - j)
                    c = int(np.floor(y))
                    c = min(max(c - 1, 0), n - 1)
                    fh, fl = _pos_dd(c, i, j, 0.0, 0.0, 0.0, 0.0, t, s1)
                    while c < n - 1 and not _dd_less(fh, fl, 1.0):
                        c += 1
                        fh, fl = _two_sum(fh - 1.0, fl)      # fh - 1 is exact for fh in [1, 2]
                    if c == n - 1 or not (fh > 0.0 or (fh == 0.0 and fl > 0.0)):
                        row[c] += mass
                    else:
                        gh, gl = _two_sum(1.0, -fh)
                        row[c] += mass * (gh + (gl - fl))
                        row[c + 1] += mass * (fh + fl)
                    continue
                a0h = F[s, 0, k]
                a0l = F[s, 1, k]
                b0h = F[s, 2, k]
                b0l = F[s, 3, k]
                a1h = F[s, 4, k]
                a1l = F[s, 5, k]
                b1h = F[s, 6, k]
                b1l = F[s, 7, k]
                # a nearby edge: the cell of the start, from a plain estimate, one cell lower
                ya = (i + a0h) + t * ((j - i) + (a1h - a0h)) if t <= 0.5 else \
                    (j + a1h) + s1 * ((i - j) + (a0h - a1h))
                e = min(max(int(np.floor(ya)) - 1, 0), n - 1)
                uah, ual = _pos_dd(e, i, j, a0h, a0l, a1h, a1l, t, s1)
                ubh, ubl = _pos_dd(e, i, j, b0h, b0l, b1h, b1l, t, s1)
                wh, wl = _two_sum(ubh, -uah)
                wl += ubl - ual
                w = wh + wl
                if w > 0.0:
                    for c in range(e, min(e + 4, n)):
                        # overlap of [ua, ub] with [c - e, c - e + 1], in double-double
                        lo_h, lo_l = uah, ual
                        if _dd_less(uah, ual, float(c - e)):
                            lo_h, lo_l = float(c - e), 0.0
                        hi_h, hi_l = ubh, ubl
                        if not _dd_less(ubh, ubl, float(c - e + 1)):
                            hi_h, hi_l = float(c - e + 1), 0.0
                        oh, ol = _two_sum(hi_h, -lo_h)
                        ov = oh + (ol + (hi_l - lo_l))
                        if ov > 0.0:
                            row[c] += mass * (ov / w)
                else:
                    base = i + t * (j - i) if t <= 0.5 else j + s1 * (i - j)
                    y = e + (uah + ual)
                    c = int(np.floor(y))
                    if c == y and y >= base + 0.5:
                        c -= 1
                    c = min(max(c, 0), n - 1)
                    row[c] += mass
            for a in range(n):
                row[a] *= tot[it, s]


@jit
def _map_at_centres_1d(K, I, J, F, m0, out):
    """Monotone map ``T`` at the cell centres (cell units), from the coupling's pieces.

    The centre of a cell of positive mass is its mid-mass level: the piece of that cell whose
    fractions ``[A0, B0]`` contain 1/2 maps it, linearly, into ``[A1, B1]`` of its cell ``J``.
    A zero cell gets the position where the next positive cell starts (or the last one ends).
    """
    nS, n = m0.shape
    for s in range(nS):
        k = 0
        last = 0.0
        for a in range(n):
            if m0[s, a] <= 0.0:
                # first piece of a later cell, else the end of the last piece
                if k < K[s]:
                    out[s, a] = J[s, k] + F[s, 4, k]
                else:
                    out[s, a] = last
                continue
            while k < K[s] and I[s, k] == a and F[s, 2, k] < 0.5:
                k += 1
            if k >= K[s] or I[s, k] != a:     # not reached: the cell's pieces are all below 1/2
                k -= 1
            a0 = F[s, 0, k]
            b0 = F[s, 2, k]
            a1 = F[s, 4, k]
            b1 = F[s, 6, k]
            r = 0.5
            if b0 > a0:
                r = (0.5 - a0) / (b0 - a0)
                r = min(max(r, 0.0), 1.0)
            out[s, a] = J[s, k] + a1 + r * (b1 - a1)
            while k < K[s] and I[s, k] == a:
                k += 1
            last = J[s, k - 1] + F[s, 6, k - 1]
