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

#: :func:`exp_gibbs` gives exact zeros from ``t >= GIBBS_CUT`` on: such terms, below
#: ``exp(-GIBBS_CUT) = 2e-22`` each against ``z >= 1``, cannot change ``z`` in double precision
#: for fewer than ``10^5`` actions (:func:`soft_sweep_chain` and :func:`gibbs_rows` keep every
#: term until it underflows)
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
# afterwards): n >= -1088 for cuts up to 746 and the exponent-bit arithmetic never wraps
# the bit pattern of _SHIFT: kd's pattern minus this is n
_SHIFT_BITS = 0x4338000000000000
# 2^n below 2^-1000 (results near or below the smallest normal 2^-1022): the scale is built in
# two steps, 2^(n + 128) (normal, exact product) then 2^-128 (one rounding, into the subnormals)
_TWO_STEP = -1000
_TWO_STEP_SCALE = -(2.0 ** -128)
#: exp(-t) rounds to zero from here on (exp(-746) < 2.5e-324, half the smallest subnormal)
_EXP_ZERO = 746.0


@jit(fastmath={"contract"})
def _exp_below(t, out, scratch, cut):
    """``out = exp(-t)`` where ``t < cut``, ``0`` where ``t >= cut``, NaN where NaN
    (``-700 <= t``, ``cut <= 746``). Results are ``p 2^n`` with ``p`` the polynomial: exact
    products while they are normal numbers (``t < 708``), a single rounding of ``p 2^n`` to the
    subnormals below (``2^(n+128)`` then ``2^-128``: within one unit of the smallest
    subnormal, exact zeros where ``exp`` rounds to zero)."""
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
    # kd's pattern is _SHIFT's plus n (kd = 1.5 2^52 + n is an integer-valued double), so
    # (n + 1023) << 52 is the pattern of the double 2^n; below 2^_TWO_STEP the pattern of
    # -2^(n + 128) (the sign marks the second step)
    bits = scratch.view(np.int64)
    for i in range(n):
        m = bits[i] - _SHIFT_BITS
        two = m < _TWO_STEP
        bits[i] = ((m + 128 * two + 1023) << 52) | (np.int64(two) << 63)
    scale = bits.view(np.float64)
    for i in range(n):
        ti = t[i]
        y = out[i] * scale[i]
        y = y * _TWO_STEP_SCALE if y < 0.0 else y
        # (ti - ti) is 0, or NaN for a NaN gap: a NaN reaches the caller's sums
        out[i] = 0.0 if ti >= cut else y + (ti - ti)


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


#: states per batch of :func:`soft_sweep_chain`: the exponentials of a batch are one call of the
#: vector loops of :func:`_exp_below` (per-call overhead and remainder loops amortized)
_SWEEP_BATCH = 16


@jit
def _row_min(q, o, n):
    """``min q[o:o+n]`` over the entries that are not NaN (``inf`` if none), in four lanes
    (independent compare chains); ``o``, ``n`` unsigned."""
    m0 = np.inf
    m1 = np.inf
    m2 = np.inf
    m3 = np.inf
    one = np.uint64(1)
    a = o
    end = o + n
    while a + np.uint64(3) < end:
        x0 = q[a]
        x1 = q[a + one]
        x2 = q[a + np.uint64(2)]
        x3 = q[a + np.uint64(3)]
        m0 = x0 if x0 < m0 else m0
        m1 = x1 if x1 < m1 else m1
        m2 = x2 if x2 < m2 else m2
        m3 = x3 if x3 < m3 else m3
        a += np.uint64(4)
    while a < end:
        x0 = q[a]
        m0 = x0 if x0 < m0 else m0
        a += one
    m0 = m1 if m1 < m0 else m0
    m2 = m3 if m3 < m2 else m2
    return m2 if m2 < m0 else m0


@jit
def _gaps(q, qmin, tau, t, o, n):
    """``t = (q - qmin) / tau`` on ``[o, o + n)``: a division, as
    :func:`wgflow.policy.gibbs_masses` (the gaps agree bitwise, and exp amplifies a gap's
    rounding by the gap itself)."""
    for a in range(o, o + n):
        t[a] = (q[a] - qmin) / tau


@jit
def _sum4(e):
    """``sum e`` in four interleaved partial sums (``e[a]`` in sum ``a mod 4``),
    ``(z0 + z1) + (z2 + z3)``: the order of the ``z`` of :func:`soft_sweep_chain`."""
    n = e.size
    z0 = 0.0
    z1 = 0.0
    z2 = 0.0
    z3 = 0.0
    a = 0
    while a + 3 < n:
        z0 += e[a]
        z1 += e[a + 1]
        z2 += e[a + 2]
        z3 += e[a + 3]
        a += 4
    if a < n:
        z0 += e[a]
    if a + 1 < n:
        z1 += e[a + 1]
    if a + 2 < n:
        z2 += e[a + 2]
    return (z0 + z1) + (z2 + z3)


@jit(fastmath={"reassoc", "contract"})
def _dot_run(e, a0, d, m0, n):
    """``sum_k e[a0 + k] d[m0 + k]`` over ``k < n`` (a position's run of consecutive actions);
    the compiler may reorder the sum (vector lanes, fused multiply-adds)."""
    p = 0.0
    for k in range(n):
        p += e[a0 + k] * d[m0 + k]
    return p


@jit(fastmath={"reassoc", "contract"})
def _cost_sum(e, C, s, q, qmin, o, n):
    """``sum_a e[o+a] (C[s, a] - (q[o+a] - qmin))`` over ``a < n``; the compiler may reorder
    the sum (vector lanes, fused multiply-adds)."""
    p = 0.0
    for a in range(n):
        p += e[o + a] * (C[s, a] - (q[o + a] - qmin))
    return p


@jit
def soft_sweep_chain(ptr, idx, cptr, cact, cdata, C, u, tau, logvol, TV, Q, pi_val, c_pi, masses,
                     write):
    r"""Soft Bellman sweep fused with the assembly of the Gibbs policy's chain, in one pass.

    ``P`` enters grouped by state and pattern position: state ``s`` owns the positions
    ``j in [ptr[s], ptr[s+1])`` of the union pattern (column ``idx[j]``) and position ``j`` the
    entries ``m in [cptr[j], cptr[j+1])`` of ``P`` with their actions ``cact[m]`` (increasing)
    and values ``cdata[m]`` (:func:`chain_gather_map`: ``cdata = P.data[perm]``). Then

    - ``Q(s, a) = C(s, a) + sum_m cdata[m] u[idx[j]]`` (over the entries of action ``a``);
    - with the Gibbs weights ``e(s, a) = exp(-t)``, ``t = (Q(s,a) - q_min)/tau`` (a division,
      as :func:`wgflow.policy.gibbs_masses`), ``z = sum_a e``:
      ``TV(s) = q_min - tau log z - tau log vol`` (``logvol`` is ``log vol``; a min-shifted
      log-sum-exp: no overflow, ``z >= 1``);
    - with the Gibbs masses ``pi(a|s) = e / z``, the regularized cost
      ``c_pi(s) = sum_a pi (C + tau log(pi/vol))`` (``log pi`` analytic, so ``0 log 0`` never
      meets ``log 0``) and ``pi_val[j] = sum_m pi(cact[m]|s) cdata[m]``: the chain
      ``P_pi = sum_a pi(a|s) P[(s,a), :]`` on the pattern (masses that underflow to exact zeros
      leave stored zeros);
    - when ``write`` is true, ``Q`` and the masses ``e / z`` into ``Q`` and ``masses`` (both
      ``(nS, nA)``; unused otherwise: modified policy iteration asks for them on the sweep it
      expects to be its last, saving two ``nS * nA`` writes per sweep). The masses are
      :func:`gibbs_rows` of the written ``Q`` (the same operations); ``TV``, ``c_pi`` and
      ``pi_val`` do not depend on ``write``.

    The weights are :func:`exp_gibbs`'s exponential without its cut (:func:`_exp_below` up to
    ``t = 746``): within 1 ulp while they are normal numbers (``t < 708``), one rounding into
    the subnormals below, exact zeros exactly where ``exp`` rounds to zero. No term is skipped,
    so the masses written are the weights the sweep used, over the same ``z``. States go in
    batches of :data:`_SWEEP_BATCH`: the ``Q`` rows, minima and gaps of a batch, one call of
    the exponential on all its gaps, then per state the sums, the chain and the writes. ``z``
    keeps four interleaved partial sums (:func:`_sum4`'s order); the cost sum and the chain's
    sums are left to the compiler's order (vector lanes).

    ``P`` is read once, in this order: ``u`` once per pattern position, each state's entries
    twice while they are in cache, and no column index or row pointer of ``P``. Where a
    position's actions are consecutive (every position of a grid MDP whose successors move
    monotonically with the action) its entries are a stride-1 slice of the ``Q`` row and of
    the weights: ``cact`` is not read per entry and the updates are vector loops; other
    positions take the indexed loops. ``Q`` is summed per action in pattern order (a few ulps
    from the row-order sum). A NaN in ``u`` reaches ``TV``.
    """
    nS, nA = C.shape
    nbat = _SWEEP_BATCH
    # rows of the batch buffers padded to a multiple of 4 (w), with gaps inf (weights 0) in
    # the padding: z's four partial sums run without a remainder loop
    w = (nA + 3) // 4 * 4
    qb = np.empty(nbat * w)
    tb = np.empty(nbat * w)
    eb = np.empty(nbat * w)
    scratch = np.empty(nbat * w)
    qmins = np.empty(nbat)
    one = np.uint64(1)
    two = np.uint64(2)
    three = np.uint64(3)
    # u = 0 (the first sweep from V = 0): Q = C exactly, P is read for the chain only
    zero = True
    for i in range(u.size):
        if u[i] != 0.0:
            zero = False
            break
    for s0 in range(0, nS, nbat):
        nb = min(nbat, nS - s0)
        for b in range(nb):
            s = s0 + b
            # row b of the batch buffers starts at o (unsigned: no wraparound tests; no
            # slices, which cost a reference count each)
            o = np.uint64(b * w)
            for a in range(np.uint64(nA)):
                qb[o + a] = C[s, a]
            if not zero:
                for j in range(ptr[s], ptr[s + 1]):
                    uj = u[np.uint64(idx[j])]
                    m0 = np.uint64(cptr[j])
                    m1 = np.uint64(cptr[j + 1])
                    a0 = np.uint64(cact[m0])
                    if np.uint64(cact[m1 - one]) - a0 == m1 - m0 - one:
                        # consecutive actions a0, a0 + 1, ...: a vector loop
                        qa = o + a0
                        for i in range(m1 - m0):
                            qb[qa + i] += cdata[m0 + i] * uj
                    else:
                        for m in range(m0, m1):
                            qb[o + cact[m]] += cdata[m] * uj
            qmin = _row_min(qb, o, np.uint64(nA))
            qmins[b] = qmin
            _gaps(qb, qmin, tau, tb, o, np.uint64(nA))
            for a in range(np.uint64(nA), np.uint64(w)):
                tb[o + a] = np.inf
        n = nb * w
        _exp_below(tb[:n], eb[:n], scratch[:n], _EXP_ZERO)
        for b in range(nb):
            s = s0 + b
            o = np.uint64(b * w)
            qmin = qmins[b]
            # z in _sum4's order (the masses divide by it: gibbs_rows must agree bitwise); a
            # NaN gap reaches z
            z0 = 0.0
            z1 = 0.0
            z2 = 0.0
            z3 = 0.0
            for a in range(o, o + np.uint64(w), np.uint64(4)):
                z0 += eb[a]
                z1 += eb[a + one]
                z2 += eb[a + two]
                z3 += eb[a + three]
            z = (z0 + z1) + (z2 + z3)
            ce = _cost_sum(eb, C, s, qb, qmin, o, np.uint64(nA))
            lz = tau * (np.log(z) + logvol)
            TV[s] = qmin - lz
            # sum_a pi (C - (q - q_min) - tau (log z + log vol)), with sum_a pi = 1
            c_pi[s] = ce / z - lz
            iz = 1.0 / z
            for j in range(ptr[s], ptr[s + 1]):
                m0 = np.uint64(cptr[j])
                m1 = np.uint64(cptr[j + 1])
                a0 = np.uint64(cact[m0])
                if np.uint64(cact[m1 - one]) - a0 == m1 - m0 - one:
                    pi_val[j] = _dot_run(eb, o + a0, cdata, m0, m1 - m0) * iz
                else:
                    p0 = 0.0
                    p1 = 0.0
                    m = m0
                    while m + one < m1:
                        p0 += eb[o + cact[m]] * cdata[m]
                        p1 += eb[o + cact[m + one]] * cdata[m + one]
                        m += two
                    if m < m1:
                        p0 += eb[o + cact[m]] * cdata[m]
                    pi_val[j] = (p0 + p1) * iz
            if write:
                for a in range(np.uint64(nA)):
                    Q[s, a] = qb[o + a]
                for a in range(np.uint64(nA)):
                    masses[s, a] = eb[o + a] / z


@jit
def _gibbs_row(q, tau, trow, erow, scratch, out):
    """``out = exp(-(q - min q)/tau) / z`` for one row (see :func:`gibbs_rows`)."""
    nA = np.uint64(q.size)
    zero = np.uint64(0)
    qmin = _row_min(q, zero, nA)
    _gaps(q, qmin, tau, trow, zero, nA)
    _exp_below(trow, erow, scratch, _EXP_ZERO)
    z = _sum4(erow)
    for a in range(nA):
        out[a] = erow[a] / z


@jit
def gibbs_rows(Q, tau, out):
    """``out[s] = exp(-Q[s]/tau) / sum_a exp(-Q[s, a]/tau)``, min-shifted per row.

    The Gibbs map of :func:`wgflow.policy.gibbs_masses` (no cut: terms below
    ``exp(-GIBBS_CUT)`` keep their value until they underflow to zero), one row at a time:
    gaps by division, the exponential of :func:`exp_gibbs` without its cut (within 1 ulp while
    results are normal numbers, ``(Q - q_min)/tau < 708``; one rounding into the subnormals
    below, within a unit of the smallest subnormal; exact zeros exactly where ``exp`` rounds to
    zero), the sum in :func:`_sum4`'s order: the operations of the masses of
    :func:`soft_sweep_chain`. Agrees with the numpy version to a few ulps of each normal mass.
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
