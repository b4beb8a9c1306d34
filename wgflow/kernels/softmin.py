r"""Soft (entropy-regularized) Bellman sweeps of modified policy iteration.

``P`` is the CSR transition matrix ``(nS*nA, nS)`` (row ``s*nA + a``), ``C`` the costs ``(nS, nA)``
and ``u`` the continuation (``gamma V``), so that ``Q(s,a) = C(s,a) + sum_j P_{(s,a),j} u_j``.

Kernels:

- :func:`exp_gibbs`: the Gibbs weights ``exp(-t)`` of a row of scaled gaps ``t = (Q - q_min)/tau
  >= 0``, exact zeros from :data:`GIBBS_CUT` on, in loops the compiler turns into SIMD code
  (Cody-Waite range reduction, a degree-13 Taylor polynomial evaluated with fused multiply-adds,
  and the power of two written into the exponent bits); within 1 ulp of the correctly rounded
  exponential on ``[-GIBBS_CUT, 0]`` (the tests compare with ``np.exp`` and with extended
  precision). Numpy twin: :func:`exp_gibbs_numpy`.
- :func:`chain_gather_map`: the entries of ``P`` grouped by their position in the union pattern
  of the policies' chains (computed once per ``P``).
- :func:`soft_sweep_chain`: the soft Bellman sweep ``TV``, ``Q``, the Gibbs policy's cost
  ``c_pi`` and its chain ``P_pi`` on the union pattern, in one pass over ``P``; no numpy twin:
  the tests compare it with :func:`~wgflow.kernels.bellman.bellman_softmin_numpy` and the
  policy-matrix assembly.
- :func:`gibbs_rows`: the Gibbs masses of a ``Q`` table (:func:`wgflow.policy.gibbs_masses`,
  without the temporaries).
- :func:`span_sweeps`: a partial evaluation of a Gibbs policy: Jacobi sweeps on its chain with
  MacQueen's span bounds, in one call (the Gauss-Seidel alternative is in
  :mod:`wgflow.kernels.gauss_seidel`).

Positions into ``P`` are unsigned inside the loops: numba tests every signed index for
negative-index wraparound, which costs about as much as the multiply-add it guards.
"""
from __future__ import annotations

import math

import numpy as np

from .bellman import policy_sweep
from .config import jit

__all__ = ["GIBBS_CUT", "exp_gibbs", "exp_gibbs_numpy", "chain_gather_map", "soft_sweep_chain",
           "gibbs_rows", "span_sweeps"]

#: soft sweeps skip the exponential of actions with ``(Q - q_min) / tau >= GIBBS_CUT``: their
#: terms, below ``exp(-GIBBS_CUT) = 2e-22`` each against ``z >= 1``, cannot change ``z`` in double
#: precision for fewer than ``10^5`` actions (their masses are stored as exact zeros)
GIBBS_CUT = 50.0

# exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite: ln 2 split in a high part
# with trailing zero bits, so n * _LN2_HI is exact for |n| < 2^11, and the rest), |r| <= ln(2)/2
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# adding 1.5 * 2^52 rounds to an integer held in the low bits of the significand
_SHIFT = 6755399441055744.0
# Taylor coefficients 1/k!: the remainder |r|^14/14! <= 4e-18 is below 1/50 ulp of exp(r) >= 0.7
_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12, _C13 = (
    1.0 / math.factorial(k) for k in range(2, 14))
# inputs are clamped 8 below the cut before the reduction (their weights are zeroed
# afterwards): n stays within the normal exponent range and the exponent-bit arithmetic never
# wraps; exp(-708) is the smallest normal result
_EXP_NORMAL = 708.0


@jit(fastmath={"contract"})
def _exp_below(t, out, scratch, cut):
    """``out = exp(-t)`` where ``t < cut``, ``0`` where ``t >= cut``, NaN where NaN
    (``-700 <= t``, ``cut <= 708``: results stay normal numbers)."""
    n = t.size
    clamp = cut + 8.0
    for i in range(n):
        x = -t[i]
        x = x if x > -clamp else -clamp         # NaN becomes -clamp here; restored below
        kd = x * _LOG2E + _SHIFT
        scratch[i] = kd
        nf = kd - _SHIFT
        r = (x - nf * _LN2_HI) - nf * _LN2_LO
        p = _C13
        p = p * r + _C12
        p = p * r + _C11
        p = p * r + _C10
        p = p * r + _C9
        p = p * r + _C8
        p = p * r + _C7
        p = p * r + _C6
        p = p * r + _C5
        p = p * r + _C4
        p = p * r + _C3
        p = p * r + _C2
        p = p * r + 1.0
        p = p * r + 1.0
        out[i] = p
    # the low bits of kd's significand hold n (two's complement); shifting by 52 drops the
    # rest, so (bits + 1023) << 52 is the pattern of the double 2^n
    bits = scratch.view(np.int64)
    for i in range(n):
        bits[i] = (bits[i] + 1023) << 52
    scale = bits.view(np.float64)
    for i in range(n):
        ti = t[i]
        # (ti - ti) is 0, or NaN for a NaN gap: a NaN reaches the caller's sums
        out[i] = 0.0 if ti >= cut else out[i] * scale[i] + (ti - ti)


@jit
def exp_gibbs(t, out, scratch):
    """``out = exp(-t)`` where ``t < GIBBS_CUT``, ``0`` where ``t >= GIBBS_CUT``, NaN where NaN.

    ``t`` is meant to be ``>= 0`` (gaps to the row minimum over ``tau``; values down to
    ``-700`` are exact too); ``scratch`` is a float array of ``t``'s size. Three loops without
    branches or calls, which LLVM vectorizes: the reduced argument and the polynomial (fused
    multiply-adds: ``fastmath`` allows contraction only), the scale ``2^n`` built in the
    exponent bits (``scratch`` reinterpreted as integers), and the product with the cut applied.
    """
    _exp_below(t, out, scratch, GIBBS_CUT)


def exp_gibbs_numpy(t):
    """Plain-numpy twin of :func:`exp_gibbs`."""
    t = np.asarray(t, dtype=float)
    with np.errstate(over="ignore", under="ignore"):
        return np.where(t >= GIBBS_CUT, 0.0, np.exp(-t))


@jit
def chain_gather_map(indptr, nS, nA, ptr, pos, act, perm):
    """The entries of ``P`` grouped by their position in the union pattern (a counting sort).

    With ``(ptr, idx, pos)`` from :func:`wgflow.kernels.assembly.union_pattern` (the union over
    actions of each state's successors, in order of first appearance, and the position of each
    entry of ``P`` in it), fills ``act`` and ``perm`` (one slot per entry of ``P``; ``act`` may
    be ``uint8`` when ``nA <= 256``) and returns ``cptr``: the entries of ``P`` that fall on
    pattern position ``j`` are ``perm[cptr[j]:cptr[j+1]]`` (indices into ``P.data``), with their
    actions ``act[cptr[j]:cptr[j+1]]``, so that a policy's chain is the gather
    ``P_pi[j] = sum_m pi(act[m] | s) data[perm[m]]`` (no scattered writes; the entries of a
    state stay within its own rows of ``P``).
    """
    npat = ptr[nS]
    cptr = np.zeros(npat + 1, dtype=np.int64)
    nnz = indptr[nS * nA]
    for k in range(nnz):
        cptr[pos[k] + 1] += 1
    for j in range(npat):
        cptr[j + 1] += cptr[j]
    fill = cptr[:npat].copy()
    for s in range(nS):
        for a in range(nA):
            r = s * nA + a
            for k in range(indptr[r], indptr[r + 1]):
                m = fill[pos[k]]
                act[m] = a
                perm[m] = k
                fill[pos[k]] = m + 1
    return cptr


@jit
def soft_sweep_chain(ptr, idx, cptr, cact, cdata, C, u, tau, logvol, TV, Q, pi_val, c_pi, masses,
                     write):
    r"""Soft Bellman sweep fused with the assembly of the Gibbs policy's chain, in one pass.

    ``P`` enters grouped by state and pattern position: state ``s`` owns the positions
    ``j in [ptr[s], ptr[s+1])`` of the union pattern (column ``idx[j]``) and position ``j`` the
    entries ``m in [cptr[j], cptr[j+1])`` of ``P`` with their actions ``cact[m]`` and values
    ``cdata[m]`` (:func:`chain_gather_map`: ``cdata = P.data[perm]``). Then

    - ``Q(s, a) = C(s, a) + sum_m cdata[m] u[idx[j]]`` (over the entries of action ``a``);
    - ``TV(s) = q_min - tau log sum_a exp(-(Q(s,a) - q_min)/tau) - tau log vol`` (``logvol`` is
      ``log vol``; a min-shifted log-sum-exp: no overflow; terms with
      ``(Q - q_min)/tau >= GIBBS_CUT`` are exact zeros, see :data:`GIBBS_CUT`; exponentials by
      :func:`exp_gibbs`);
    - with the Gibbs masses ``pi(a|s) = exp(-(Q - q_min)/tau) / z``, the regularized cost
      ``c_pi(s) = sum_a pi (C + tau log(pi/vol))`` (``log pi`` analytic, so ``0 log 0`` never
      meets ``log 0``) and ``pi_val[j] = sum_m pi(cact[m]|s) cdata[m]``: the chain
      ``P_pi = sum_a pi(a|s) P[(s,a), :]`` on the pattern (masses that are exact zeros leave
      stored zeros);
    - when ``write`` is true, ``Q`` and the Gibbs masses of :func:`gibbs_rows` (no cut) into
      ``Q`` and ``masses`` (both ``(nS, nA)``; unused otherwise: modified policy iteration asks
      for them on the sweep it expects to be its last, saving two ``nS * nA`` writes per sweep).

    ``P`` is read once, in this order: ``u`` once per pattern position, each state's entries
    twice while they are in cache, and no column index or row pointer of ``P``. ``Q`` is summed
    per action in pattern order (a few ulps from the row-order sum). A NaN in ``u`` reaches
    ``TV``.
    """
    nS, nA = C.shape
    qrow = np.empty(nA)
    trow = np.empty(nA)
    erow = np.empty(nA)
    scratch = np.empty(nA)
    inv = 1.0 / tau
    one = np.uint64(1)
    two = np.uint64(2)
    # u = 0 (the first sweep from V = 0): Q = C exactly, P is read for the chain only
    zero = True
    for i in range(u.size):
        if u[i] != 0.0:
            zero = False
            break
    for s in range(nS):
        for a in range(nA):
            qrow[a] = C[s, a]
        p0 = ptr[s]
        p1 = ptr[s + 1]
        if not zero:
            # unsigned positions: no negative-index wraparound test per entry
            for j in range(p0, p1):
                uj = u[np.uint64(idx[j])]
                for m in range(np.uint64(cptr[j]), np.uint64(cptr[j + 1])):
                    qrow[cact[m]] += cdata[m] * uj
        qmin = np.inf
        for a in range(nA):
            if qrow[a] < qmin:
                qmin = qrow[a]
        for a in range(nA):
            trow[a] = (qrow[a] - qmin) * inv
        exp_gibbs(trow, erow, scratch)
        # z and sum_a e (C - (q - q_min)); cut terms are exact zeros (q is finite: adding
        # 0 * finite changes nothing), a NaN gap reaches z; two partial sums halve the chain
        # of dependent additions
        z0 = 0.0
        z1 = 0.0
        c0 = 0.0
        c1 = 0.0
        a = 0
        while a + 1 < nA:
            e0 = erow[a]
            e1 = erow[a + 1]
            z0 += e0
            z1 += e1
            c0 += e0 * (C[s, a] - (qrow[a] - qmin))
            c1 += e1 * (C[s, a + 1] - (qrow[a + 1] - qmin))
            a += 2
        if a < nA:
            z0 += erow[a]
            c0 += erow[a] * (C[s, a] - (qrow[a] - qmin))
        z = z0 + z1
        ce = c0 + c1
        lz = tau * (np.log(z) + logvol)
        TV[s] = qmin - lz
        # sum_a pi (C - (q - q_min) - tau (log z + log vol)), with sum_a pi = 1
        c_pi[s] = ce / z - lz
        iz = 1.0 / z
        for j in range(p0, p1):
            a0 = 0.0
            a1 = 0.0
            m = np.uint64(cptr[j])
            m1 = np.uint64(cptr[j + 1])
            while m + one < m1:
                a0 += erow[cact[m]] * cdata[m]
                a1 += erow[cact[m + one]] * cdata[m + one]
                m += two
            if m < m1:
                a0 += erow[cact[m]] * cdata[m]
            pi_val[j] = (a0 + a1) * iz
        if write:
            for a in range(nA):
                Q[s, a] = qrow[a]
            _gibbs_row(qrow, tau, trow, erow, scratch, masses[s])


@jit
def _gibbs_row(q, tau, trow, erow, scratch, out):
    """``out = exp(-(q - min q)/tau) / z`` for one row (see :func:`gibbs_rows`)."""
    nA = q.size
    qmin = np.inf
    for a in range(nA):
        if q[a] < qmin:
            qmin = q[a]
    for a in range(nA):
        # a division, as gibbs_masses: the gaps agree bitwise (exp amplifies a gap's
        # rounding by the gap itself)
        trow[a] = (q[a] - qmin) / tau
    _exp_below(trow, erow, scratch, _EXP_NORMAL)
    z = 0.0
    for a in range(nA):
        t = trow[a]
        if t >= _EXP_NORMAL:                # subnormal or zero: the library exponential
            erow[a] = np.exp(-t)
        z += erow[a]
    for a in range(nA):
        out[a] = erow[a] / z


@jit
def gibbs_rows(Q, tau, out):
    """``out[s] = exp(-Q[s]/tau) / sum_a exp(-Q[s, a]/tau)``, min-shifted per row.

    The Gibbs map of :func:`wgflow.policy.gibbs_masses` (no cut: terms below
    ``exp(-GIBBS_CUT)`` keep their value until they underflow to zero), one row at a time:
    the exponential of :func:`exp_gibbs` while results are normal numbers
    (``(Q - q_min)/tau < 708``), the library exponential below.
    Agrees with the numpy version to a few ulps of each mass.
    """
    nS, nA = Q.shape
    trow = np.empty(nA)
    erow = np.empty(nA)
    scratch = np.empty(nA)
    for s in range(nS):
        _gibbs_row(Q[s], tau, trow, erow, scratch, out[s])


@jit
def span_sweeps(indptr, indices, data, c, v, g, k_max, target, out):
    r"""Jacobi sweeps ``v <- c + g P v`` with span bounds, up to ``k_max`` or the target.

    After each sweep the extreme entries ``lo, hi`` of ``c + g P v - v`` bound the solution
    ``x = (I - g P)^{-1} c`` of a stochastic ``P`` (MacQueen):
    ``new + g lo / (1 - g) <= x <= new + g hi / (1 - g)``, so the midpoint
    ``new + g (hi + lo) / (2 (1 - g))`` is within ``err = g (hi - lo) / (2 (1 - g))`` of ``x``.
    Stops once ``err <= target`` or after ``k_max`` sweeps. ``v`` and ``out`` are work arrays
    of ``P``'s size (``v`` holds the start); returns ``(w, k, err)`` with ``w`` the corrected
    iterate (one of the two arrays) and ``k`` the number of sweeps. Numpy twin: repeated
    :func:`~wgflow.kernels.bellman.policy_sweep_numpy`.
    """
    lo = 0.0
    hi = 0.0
    err = np.inf
    k = 0
    while k < k_max:
        lo, hi = policy_sweep(indptr, indices, data, c, v, g, out)
        v, out = out, v
        k += 1
        err = 0.5 * g * (hi - lo) / (1.0 - g)
        if err <= target:
            break
    shift = 0.5 * g * (hi + lo) / (1.0 - g)
    for s in range(v.size):
        v[s] += shift
    return v, k, err
