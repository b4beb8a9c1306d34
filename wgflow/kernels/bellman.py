r"""Bellman sweeps, policy-evaluation sweeps and block-triangular policy evaluation.

``P`` is the CSR transition matrix ``(nS*nA, nS)`` (row ``s*nA + a``), ``C`` the costs
``(nS, nA)``; ``u`` is the continuation (``gamma V`` discounted, the bias ``h`` average cost) and
``offset`` the gain subtracted in the average case (0 otherwise), so that

.. math::

    Q(s,a) = C(s,a) + \sum_j P_{(s,a),j}\, u_j - \text{offset}.

Kernels (each has a plain-numpy twin ``*_numpy`` used by the tests):

- :func:`make_bellman_sweep` ``("min")``: ``TV(s) = min_a Q(s,a)``, the greedy action (ties kept at
  the current action, relative tolerance ``1e-12``), the span of ``TV - V`` and the greedy
  policy's chain and costs, in one pass over ``P`` (no ``nS*nA`` temporary unless ``Q`` is asked
  for; no second, scattered pass to gather the chosen rows).
- :func:`make_bellman_sweep` ``("softmin")``: the soft Bellman operator
  ``TV(s) = -tau log sum_a vol exp(-Q(s,a)/tau)`` evaluated with a min-shift (a stable
  log-sum-exp: no overflow, underflowing Gibbs tails are exact zeros), the Gibbs masses
  ``pi ~ exp(-Q/tau)`` and their cost ``c_pi = sum_a pi (C + tau log(pi/vol))`` with ``log pi``
  computed analytically (``0 log 0 = 0`` without evaluating ``log 0``).
- the soft sweep of modified policy iteration, which also assembles the Gibbs policy's chain,
  is in :mod:`wgflow.kernels.softmin`.
- :func:`policy_sweep`: one Jacobi sweep ``out = c + g P_pi v`` of a policy's evaluation with the
  extreme entries of ``out - v`` (for span bounds).
- :func:`scc_order`: Tarjan's strongly connected components of the graph of ``P_pi``, emitted
  successors first; :func:`btf_substitute` then solves ``(I - g P_pi) v = c`` block by block in
  that order (singletons and small blocks by elimination without pivoting, which is stable because
  ``I - g P_pi`` is strictly diagonally dominant for ``g < 1``; larger blocks by Gauss-Seidel
  sweeps to rounding, or, when those converge slowly, by the caller's sparse LU).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import jit

__all__ = ["make_bellman_sweep", "bellman_min_numpy", "bellman_softmin_numpy", "policy_sweep",
           "policy_sweep_numpy", "scc_order", "btf_substitute", "block_system", "DENSE_BLOCK",
           "downwind_order", "SINK_FRACTION",
           "blocks_still_triangular", "closed_components"]

#: blocks up to this size are solved densely inside :func:`btf_substitute`
DENSE_BLOCK = 48
#: :func:`downwind_order` starts from every state of a block whose self-loop is at least this
#: fraction of the block's largest (pendulum 41x41 and 71x71: 15-17 % fewer Gauss-Seidel sweeps
#: than from the largest alone; 0.7 to 0.9 measured alike, 0.5 and below worse)
SINK_FRACTION = 0.9


@lru_cache(maxsize=None)
def make_bellman_sweep(kind: str, write_q: bool = True):
    """Bellman sweep kernel for ``kind`` in ``{"min", "softmin"}``; ``write_q`` bakes in whether
    the full ``Q`` table is stored (a sweep that only needs ``TV`` and the greedy policy then
    writes ``nS`` numbers, not ``nS * nA``).

    ``"min"``: ``lo, hi = sweep(indptr, indices, data, C, u, offset, V, sigma, TV, new_sigma, Q,
    pptr, pidx, pval, cpi)``; ``sigma`` is the current action per state (``-1``: none),
    ``new_sigma`` receives the greedy action (ties within ``1e-12 max(|min Q|, |u|_inf, |offset|,
    |C(s, sigma)|)`` -- the magnitudes whose rounding the comparison sees -- kept at ``sigma``), ``(lo, hi)`` are the extreme entries of ``TV - V``, and the greedy policy's chain
    is written while its row is in cache: the CSR arrays ``pptr`` (``nS + 1``), ``pidx``, ``pval``
    (room for the ``new_sigma`` rows of ``P``) and its costs ``cpi = C[s, new_sigma[s]]``. ``Q`` is
    ``(nS, nA)`` when ``write_q`` (any array otherwise). ``u_zero=True`` says ``u`` is zero (the
    first sweep from ``V = 0``): ``P`` is then read only for the chosen rows.

    ``"softmin"``: ``sweep(indptr, indices, data, C, u, offset, tau, logvol, TV, masses, cpi, Q)``;
    ``masses`` receives the Gibbs masses and ``cpi`` their regularized cost.

    The row pointer runs through ``P`` once (rows ``s*nA + a`` are consecutive), ``C`` is read
    flat: the sweep costs about one sparse mat-vec with ``P``.
    """
    if kind == "min":
        @jit
        def sweep(indptr, indices, data, C, u, offset, V, sigma, TV, new_sigma, Q, pptr, pidx, pval,
                  cpi, u_zero=False):
            nS, nA = C.shape
            Cf = C.ravel()
            Qf = Q.ravel()
            lo = np.inf
            hi = -np.inf
            # unsigned positions throughout: numba tests every signed index for wraparound,
            # which costs about half of the pass's speed
            one = np.uint64(1)
            nAu = np.uint64(nA)
            k = np.uint64(indptr[0])
            pptr[0] = 0
            m = np.uint64(0)
            base = np.uint64(0)
            # ties are judged relative to the magnitudes that make up Q (rounding of the sums),
            # never against an absolute floor: costs of any scale give the same policies
            umax = abs(offset)
            if not u_zero:
                for i in range(u.size):
                    ui = abs(u[i])
                    umax = ui if ui > umax else umax
            for s in range(nS):
                su = np.uint64(s)
                best = np.inf
                arg = np.uint64(0)
                for a in range(nAu):
                    acc = 0.0
                    if not u_zero:
                        end = np.uint64(indptr[base + a + one])
                        while k < end:
                            acc += data[k] * u[np.uint64(indices[k])]
                            k += one
                    q = Cf[base + a] + acc - offset
                    if write_q:
                        Qf[base + a] = q
                    if q < best:
                        best = q
                        arg = a
                cur = sigma[su]
                if cur >= 0 and np.uint64(cur) != arg:
                    r = base + np.uint64(cur)
                    if write_q:
                        qcur = Qf[r]
                    else:
                        acc = 0.0
                        for kk in range(np.uint64(indptr[r]), np.uint64(indptr[r + one])):
                            acc += data[kk] * u[np.uint64(indices[kk])]
                        qcur = Cf[r] + acc - offset
                    if qcur <= best + 1e-12 * max(abs(best), umax, abs(Cf[r])):
                        arg = np.uint64(cur)
                TV[su] = best
                new_sigma[su] = arg
                d = best - V[su]
                lo = min(lo, d)
                hi = max(hi, d)
                # the greedy action's row, still in cache: the chain of the new policy
                r = base + arg
                cpi[su] = Cf[r]
                for kk in range(np.uint64(indptr[r]), np.uint64(indptr[r + one])):
                    pidx[m] = indices[kk]
                    pval[m] = data[kk]
                    m += one
                pptr[su + one] = m
                base += nAu
            return lo, hi
        return sweep
    if kind == "softmin":
        @jit
        def sweep(indptr, indices, data, C, u, offset, tau, logvol, TV, masses, cpi, Q):
            nS, nA = C.shape
            Cf = C.ravel()
            Qf = Q.ravel()
            qrow = np.empty(nA)
            k = indptr[0]
            for s in range(nS):
                qmin = np.inf
                base = s * nA
                for a in range(nA):
                    acc = 0.0
                    end = indptr[base + a + 1]
                    while k < end:
                        acc += data[k] * u[indices[k]]
                        k += 1
                    q = Cf[base + a] + acc - offset
                    qrow[a] = q
                    if write_q:
                        Qf[base + a] = q
                    if q < qmin:
                        qmin = q
                z = 0.0
                for a in range(nA):
                    e = np.exp(-(qrow[a] - qmin) / tau)
                    masses[s, a] = e
                    z += e
                logz = np.log(z)
                TV[s] = qmin - tau * logz - tau * logvol
                c = 0.0
                for a in range(nA):
                    m = masses[s, a] / z
                    masses[s, a] = m
                    if m > 0.0:
                        # log(m / vol) = -(q - qmin)/tau - log z - log vol, never log(0)
                        c += m * (Cf[base + a] - (qrow[a] - qmin) - tau * (logz + logvol))
                cpi[s] = c
        return sweep
    raise ValueError(f"unknown Bellman sweep kind {kind!r}")


def bellman_min_numpy(P, C, u, offset=0.0, sigma=None):
    """Plain-numpy twin of the ``"min"`` sweep's values: returns ``(TV, new_sigma, Q)``."""
    nS, nA = C.shape
    Q = C + (P @ u).reshape(nS, nA) - offset
    best = np.argmin(Q, axis=1)
    TV = Q[np.arange(nS), best]
    if sigma is None:
        return TV, best, Q
    umax = max(float(np.max(np.abs(u), initial=0.0)), abs(offset))
    keep = Q[np.arange(nS), sigma] <= TV + 1e-12 * np.maximum(
        np.maximum(np.abs(TV), umax), np.abs(C[np.arange(nS), sigma]))
    return TV, np.where(keep, sigma, best), Q


def bellman_softmin_numpy(P, C, u, tau, vol=1.0, offset=0.0):
    """Plain-numpy twin of the ``"softmin"`` sweep: returns ``(TV, masses, cpi, Q)``."""
    from scipy.special import logsumexp, xlogy
    nS, nA = C.shape
    Q = C + (P @ u).reshape(nS, nA) - offset
    TV = -tau * logsumexp(-Q / tau, axis=1) - tau * np.log(vol)
    with np.errstate(under="ignore"):
        m = np.exp(-(Q - TV[:, None]) / tau - np.log(vol))
    m /= m.sum(axis=1, keepdims=True)
    cpi = np.sum(m * C, axis=1) + tau * np.sum(xlogy(m, m / vol), axis=1)
    return TV, m, cpi, Q


@jit
def policy_sweep(indptr, indices, data, c, v, g, out):
    """``out = c + g P_pi v`` (CSR ``P_pi``); returns ``(min, max)`` of ``out - v``."""
    lo = np.inf
    hi = -np.inf
    for s in range(v.size):
        acc = 0.0
        # unsigned positions: no negative-index wraparound test per entry
        for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + 1])):
            acc += data[k] * v[np.uint64(indices[k])]
        x = c[s] + g * acc
        out[s] = x
        d = x - v[s]
        if d < lo:
            lo = d
        if d > hi:
            hi = d
    return lo, hi


def policy_sweep_numpy(P_pi, c, v, g):
    """Plain-numpy twin of :func:`policy_sweep`: returns ``(out, min, max)``."""
    out = c + g * (P_pi @ v)
    d = out - v
    return out, float(d.min()), float(d.max())


@jit
def scc_order(indptr, indices, n):
    """Strongly connected components of the graph ``s -> indices[indptr[s]:indptr[s+1]]``.

    Iterative Tarjan. Returns ``(order, block_ptr)``: block ``b`` is
    ``order[block_ptr[b]:block_ptr[b+1]]``, and every edge leaves a block only towards blocks
    emitted *before* it (successors first), so ``(I - g P)`` is block lower-triangular in this
    order and can be solved by block forward substitution.
    """
    index = np.full(n, -1, dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    onstack = np.zeros(n, dtype=np.bool_)
    stack = np.empty(n, dtype=np.int64)
    sp_ = 0
    call = np.empty(n, dtype=np.int64)
    ptr = np.empty(n, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    block_ptr = np.empty(n + 1, dtype=np.int64)
    block_ptr[0] = 0
    nb = 0
    m = 0
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        top = 0
        call[0] = root
        ptr[0] = indptr[root]
        index[root] = counter
        low[root] = counter
        counter += 1
        stack[sp_] = root
        sp_ += 1
        onstack[root] = True
        while top >= 0:
            v = call[top]
            if ptr[top] < indptr[v + 1]:
                w = np.uint64(indices[np.uint64(ptr[top])])   # unsigned: no wraparound tests
                ptr[top] += 1
                if index[w] < 0:
                    index[w] = counter
                    low[w] = counter
                    counter += 1
                    stack[sp_] = w
                    sp_ += 1
                    onstack[w] = True
                    top += 1
                    call[top] = w
                    ptr[top] = indptr[w]
                elif onstack[w]:
                    if index[w] < low[v]:
                        low[v] = index[w]
            else:
                if low[v] == index[v]:
                    while True:
                        sp_ -= 1
                        w = stack[sp_]
                        onstack[w] = False
                        order[m] = w
                        m += 1
                        if w == v:
                            break
                    nb += 1
                    block_ptr[nb] = m
                top -= 1
                if top >= 0:
                    u = call[top]
                    if low[v] < low[u]:
                        low[u] = low[v]
    return order, block_ptr[:nb + 1].copy()


@jit
def closed_components(indptr, indices, data, n):
    """Strongly connected components of the graph of the *positive* entries of a CSR ``(n, n)``
    matrix (stored zeros are not edges), and which of them are closed (no positive entry leaves
    them): for a transition matrix, its recurrent classes. Returns ``(order, block_ptr, closed)``
    with the blocks of :func:`scc_order` and ``closed[b]`` for block ``b``.
    """
    ptr = np.empty(n + 1, dtype=np.int64)
    ptr[0] = 0
    idx = np.empty(indptr[n], dtype=np.int64)
    m = 0
    for s in range(n):
        for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + 1])):
            if data[k] > 0.0:
                idx[m] = indices[k]
                m += 1
        ptr[s + 1] = m
    order, block_ptr = scc_order(ptr, idx, n)
    nb = block_ptr.size - 1
    block_of = np.empty(n, dtype=np.int64)
    for b in range(nb):
        for i in range(block_ptr[b], block_ptr[b + 1]):
            block_of[order[i]] = b
    closed = np.ones(nb, dtype=np.bool_)
    for s in range(n):
        b = block_of[s]
        for k in range(ptr[s], ptr[s + 1]):
            if block_of[idx[k]] != b:
                closed[b] = False
                break
    return order, block_ptr, closed


@jit
def blocks_still_triangular(indptr, indices, block_of):
    """Whether every edge ``s -> j`` of the graph goes to a block numbered at most ``s``'s
    (``block_of`` from an earlier :func:`scc_order`): then that order and those blocks still make
    ``I - g P`` block lower-triangular. One pass over the edges, stopped at the first violation.
    """
    for s in range(block_of.size):
        b = block_of[s]
        for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + 1])):
            if block_of[np.uint64(indices[k])] > b:
                return False
    return True


@jit
def downwind_order(indptr, indices, data, order, block_ptr, dense_max, loc):
    """Reorder, in place, the states of every block larger than ``dense_max`` so that
    Gauss-Seidel sweeps run downwind.

    Within a block (a strongly connected component from :func:`scc_order`), the states are listed
    in breadth-first order over *predecessors*, from the states whose self-loop is at least
    :data:`SINK_FRACTION` of the block's largest (where the chain lingers: sinks of the block's
    flow; the state with the largest self-loop first). Every other state then comes after one of
    its successors, so one sweep carries values along the whole flow instead of one step of it
    (pendulum 101x101, gamma 0.99: the largest block of the optimal policy converges in under 10
    sweeps instead of about 45; 41x41: 25 sweeps to 1e-10 with these sources, 30 from the largest
    self-loop alone, about 90 in Tarjan's order). Only the order inside blocks changes, so the
    block-triangular structure is kept. ``loc`` is scratch of length ``n`` filled with ``-1``
    (restored).
    """
    nb = block_ptr.size - 1
    for blk in range(nb):
        lo = block_ptr[blk]
        hi = block_ptr[blk + 1]
        size = hi - lo
        if size <= dense_max:
            continue
        root = 0
        best = -1.0
        selfp = np.empty(size)
        for i in range(size):
            s = order[lo + i]
            loc[s] = i
            d = 0.0
            for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + 1])):
                if indices[k] == s:
                    d += data[k]
            selfp[i] = d
            if d > best:
                best = d
                root = i
        # predecessor lists of the block (CSR, local indices)
        cnt = np.zeros(size + 1, dtype=np.int64)
        for i in range(size):
            s = order[lo + i]
            for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + 1])):
                p = loc[np.uint64(indices[k])]
                if p >= 0 and p != i:
                    cnt[p + 1] += 1
        for i in range(size):
            cnt[i + 1] += cnt[i]
        pred = np.empty(cnt[size], dtype=np.int64)
        fill = cnt[:size].copy()
        for i in range(size):
            s = order[lo + i]
            for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + 1])):
                p = loc[np.uint64(indices[k])]
                if p >= 0 and p != i:
                    pred[fill[p]] = i
                    fill[p] += 1
        queue = np.empty(size, dtype=np.int64)
        seen = np.zeros(size, dtype=np.bool_)
        queue[0] = root
        seen[root] = True
        tail = 1
        if best > 0.0:
            # every state whose self-loop is within 10 % of the largest is a source too
            for i in range(size):
                if not seen[i] and selfp[i] >= SINK_FRACTION * best:
                    seen[i] = True
                    queue[tail] = i
                    tail += 1
        head = 0
        while head < tail:
            i = queue[head]
            head += 1
            for m in range(cnt[i], cnt[i + 1]):
                w = pred[m]
                if not seen[w]:
                    seen[w] = True
                    queue[tail] = w
                    tail += 1
        # strongly connected: every state is reached from the sources over predecessors
        for i in range(size):
            loc[order[lo + i]] = -1
            queue[i] = order[lo + queue[i]]
        for i in range(size):
            order[lo + i] = queue[i]


@jit
def btf_substitute(indptr, indices, data, c, g, order, block_ptr, start, v, loc, dense_max,
                   gs_max, gs_tol):
    """Solve ``(I - g P) v = c`` block by block from block ``start`` on (``P`` CSR ``(n, n)``).

    Blocks are taken in the order of :func:`scc_order`; ``v`` must hold the solution on every
    earlier block (and, on later ones, a starting guess). Blocks of size ``<= dense_max`` are
    solved in place by Gaussian elimination without pivoting (``I - g P_BB`` is strictly row
    diagonally dominant). Larger blocks get Gauss-Seidel sweeps in the block's order, each state
    solved together with its self-loop, until the largest change ``delta`` of a sweep satisfies
    ``g delta / (1 - g) <= gs_tol`` (a Gauss-Seidel sweep contracts the sup-norm error by ``g``,
    so the block is then within ``gs_tol`` of its solution) or is 4 ulps of the block's largest
    value. A block that has not converged after ``gs_max`` sweeps, or whose rate over the first
    ten sweeps predicts more, is returned to the caller (for a sparse LU), who then resumes after
    it. Returns that block's index, or the number of blocks when done. ``loc`` is scratch of
    length ``n`` filled with ``-1``.
    """
    nb = block_ptr.size - 1
    A = np.empty((dense_max, dense_max))
    b = np.empty(dense_max)
    eps = np.finfo(np.float64).eps
    one = np.uint64(1)
    for blk in range(start, nb):
        lo = block_ptr[blk]
        hi = block_ptr[blk + 1]
        size = hi - lo
        if size == 1:
            s = np.uint64(order[lo])
            acc = 0.0
            diag = 0.0
            # unsigned positions: no negative-index wraparound test per entry
            for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + one])):
                j = np.uint64(indices[k])
                if j == s:
                    diag += data[k]
                else:
                    acc += data[k] * v[j]
            v[s] = (c[s] + g * acc) / (1.0 - g * diag)
            continue
        if size > dense_max:
            converged = False
            first = 0.0
            for sweep in range(gs_max):
                change = 0.0
                big = 0.0
                for i in range(lo, hi):
                    s = np.uint64(order[i])
                    acc = 0.0
                    diag = 0.0
                    for k in range(np.uint64(indptr[s]), np.uint64(indptr[s + one])):
                        j = np.uint64(indices[k])
                        if j == s:
                            diag += data[k]
                        else:
                            acc += data[k] * v[j]
                    x = (c[s] + g * acc) / (1.0 - g * diag)
                    change = max(change, abs(x - v[s]))
                    big = max(big, abs(x))
                    v[s] = x
                if change <= 4.0 * eps * big or g * change <= gs_tol * (1.0 - g):
                    converged = True
                    break
                if sweep == 0:
                    first = change
                elif sweep == 9 and change > 0.0:
                    rate = (change / first) ** (1.0 / 9.0)
                    goal = max(4.0 * eps * big, gs_tol * (1.0 - g) / max(g, 1e-300))
                    if rate >= 1.0 or 10.0 + np.log(goal / change) / np.log(rate) > gs_max:
                        break
            if converged:
                continue
            return blk
        for i in range(size):
            loc[order[lo + i]] = i
        for i in range(size):
            s = order[lo + i]
            for j in range(size):
                A[i, j] = 0.0
            A[i, i] = 1.0
            acc = 0.0
            for k in range(indptr[s], indptr[s + 1]):
                j = indices[k]
                p = loc[j]
                if p >= 0:
                    A[i, p] -= g * data[k]
                else:
                    acc += data[k] * v[j]
            b[i] = c[s] + g * acc
        # elimination without pivoting (strict diagonal dominance), then back substitution
        for kk in range(size):
            piv = A[kk, kk]
            for i in range(kk + 1, size):
                f = A[i, kk] / piv
                if f != 0.0:
                    for j in range(kk + 1, size):
                        A[i, j] -= f * A[kk, j]
                    b[i] -= f * b[kk]
        for i in range(size - 1, -1, -1):
            acc = b[i]
            for j in range(i + 1, size):
                acc -= A[i, j] * b[j]
            b[i] = acc / A[i, i]
        for i in range(size):
            s = order[lo + i]
            v[s] = b[i]
            loc[s] = -1
    return nb


@jit
def block_system(indptr, indices, data, c, g, rows, v, loc):
    """COO of ``I - g P_BB`` and the right-hand side ``c_B + g P_B,out v`` of block ``rows``.

    ``loc`` is scratch of length ``n`` filled with ``-1`` (restored on return).
    """
    size = rows.size
    for i in range(size):
        loc[rows[i]] = i
    nnz = size
    for i in range(size):
        s = rows[i]
        for k in range(indptr[s], indptr[s + 1]):
            if loc[indices[k]] >= 0:
                nnz += 1
    ri = np.empty(nnz, dtype=np.int64)
    ci = np.empty(nnz, dtype=np.int64)
    x = np.empty(nnz)
    rhs = np.empty(size)
    m = 0
    for i in range(size):
        ri[m] = i
        ci[m] = i
        x[m] = 1.0
        m += 1
        s = rows[i]
        acc = 0.0
        for k in range(indptr[s], indptr[s + 1]):
            j = indices[k]
            p = loc[j]
            if p >= 0:
                ri[m] = i
                ci[m] = p
                x[m] = -g * data[k]
                m += 1
            else:
                acc += data[k] * v[j]
        rhs[i] = c[s] + g * acc
    for i in range(size):
        loc[rows[i]] = -1
    return ri, ci, x, rhs
