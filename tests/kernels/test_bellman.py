"""Bellman-sweep, policy-sweep and block-triangular kernels against plain numpy/scipy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

import wgflow as wg
from wgflow.kernels.bellman import (DENSE_BLOCK, SINK_FRACTION, bellman_min_numpy,
                                    bellman_softmin_numpy, make_bellman_sweep, policy_sweep,
                                    policy_sweep_numpy, scc_order, downwind_order, closed_components)
from wgflow.kernels import policy_matrix
from wgflow.linalg import BlockTriangularSolver


def _mdps():
    return [wg.problems.get("garnet", n_states=40, n_actions=6, branching=4, seed=3),
            wg.problems.get("pendulum", n_theta=9, n_omega=9, n_actions=7)]


def _min_sweep(mdp, C, u, offset, V, sigma, write_q=True, u_zero=False):
    """Run the fused ``"min"`` sweep; returns its outputs and the greedy chain as scipy CSR."""
    nS, nA = mdp.n_states, mdp.n_actions
    TV, new, Q = np.empty(nS), np.empty(nS, dtype=np.int64), np.empty((nS, nA) if write_q else (0, 0))
    pptr, pidx, pval = (np.empty(nS + 1, dtype=np.int64), np.empty(mdp.P.nnz, dtype=mdp.P.indices.dtype),
                        np.empty(mdp.P.nnz))
    cpi = np.empty(nS)
    lo, hi = make_bellman_sweep("min", write_q)(mdp.P.indptr, mdp.P.indices, mdp.P.data, C, u, offset, V,
                                                sigma, TV, new, Q, pptr, pidx, pval, cpi, u_zero)
    P_pi = sp.csr_matrix((pval[:pptr[-1]], pidx[:pptr[-1]], pptr), shape=(nS, nS))
    return TV, new, Q, lo, hi, P_pi, cpi


@pytest.mark.parametrize("k", [0, 1])
def test_min_sweep_matches_numpy(rng, k):
    mdp = _mdps()[k]
    nS, nA = mdp.n_states, mdp.n_actions
    C = np.ascontiguousarray(mdp.C)
    u = 10 * rng.random(nS)
    V = rng.random(nS)
    sigma = rng.integers(0, nA, nS)
    TV, new, Q, lo, hi, P_pi, cpi = _min_sweep(mdp, C, u, 0.3, V, sigma)
    TVn, newn, Qn = bellman_min_numpy(mdp.P, C, u, 0.3, sigma)
    # same sums in a different order: a few ulps of |Q|
    tol = 1e-13 * (1 + np.max(np.abs(Qn)))
    np.testing.assert_allclose(Q, Qn, rtol=0, atol=tol)
    np.testing.assert_allclose(TV, TVn, rtol=0, atol=tol)
    # greedy actions attain the minimum (ties may resolve differently between the two)
    np.testing.assert_allclose(Qn[np.arange(nS), new], TVn, rtol=0, atol=2 * tol)
    # the span of TV - V, and the greedy policy's chain and costs: the rows of P and C it picks
    assert lo == np.min(TV - V) and hi == np.max(TV - V)
    assert abs(P_pi - mdp.P[np.arange(nS) * nA + new]).max() == 0
    np.testing.assert_array_equal(cpi, C[np.arange(nS), new])
    # ties are kept at the current action: make the current action an exact tie
    C2 = C.copy()
    C2[np.arange(nS), sigma] -= Q[np.arange(nS), sigma] - TV
    for write_q in (True, False):
        new2 = _min_sweep(mdp, C2, u, 0.3, V, sigma, write_q)[1]
        np.testing.assert_array_equal(new2, sigma)
    # u = 0 declared: P is not read for Q (= C - offset), only for the chosen rows
    z = _min_sweep(mdp, C, np.zeros(nS), 0.3, V, sigma, True, u_zero=True)
    ref = _min_sweep(mdp, C, np.zeros(nS), 0.3, V, sigma, True)
    for a, b in zip(z, ref):
        if isinstance(b, sp.csr_matrix):
            assert abs(a - b).max() == 0
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("tau", [1.0, 0.05, 1e-4])
def test_softmin_sweep_matches_numpy_and_underflows_cleanly(rng, tau):
    # tau = 1e-4 with Q spreads of order 1: exp(-dQ/tau) underflows to exact zeros
    mdp = _mdps()[1]
    nS, nA = mdp.n_states, mdp.n_actions
    vol = mdp.actions.cell_volume
    C = np.ascontiguousarray(mdp.C)
    u = 5 * rng.random(nS)
    TV, m, cpi, Q = np.empty(nS), np.empty((nS, nA)), np.empty(nS), np.empty((nS, nA))
    make_bellman_sweep("softmin", True)(mdp.P.indptr, mdp.P.indices, mdp.P.data, C, u, 0.0, tau,
                                        np.log(vol), TV, m, cpi, Q)
    TVn, mn, cpin, Qn = bellman_softmin_numpy(mdp.P, C, u, tau, vol)
    assert np.all(np.isfinite(TV)) and np.all(np.isfinite(cpi)) and np.all(m >= 0)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    scale = 1 + np.max(np.abs(Qn))
    np.testing.assert_allclose(Q, Qn, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(TV, TVn, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(m, mn, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cpi, cpin, rtol=0, atol=1e-12 * scale)
    if tau == 1e-4:
        assert np.any(m == 0.0)
    # the soft value is the Gibbs policy's one-step value: sum_a pi Q + tau sum_a pi log(pi/vol)
    np.testing.assert_allclose(cpi - np.sum(m * C, axis=1) + np.sum(m * Q, axis=1), TV, rtol=0,
                               atol=1e-11 * scale)


def test_policy_sweep_and_row_selection(rng):
    mdp = _mdps()[0]
    nS, nA = mdp.n_states, mdp.n_actions
    Ps = _min_sweep(mdp, np.ascontiguousarray(mdp.C), rng.random(nS), 0.0, np.zeros(nS),
                    np.full(nS, -1))[5]
    ptr, idx, val = Ps.indptr, Ps.indices, Ps.data
    c, v = rng.random(nS), rng.random(nS)
    out = np.empty(nS)
    lo, hi = policy_sweep(ptr, idx, val, c, v, 0.9, out)
    outn, lon, hin = policy_sweep_numpy(Ps, c, v, 0.9)
    np.testing.assert_allclose(out, outn, rtol=0, atol=1e-14)
    assert lo == pytest.approx(lon, abs=1e-14) and hi == pytest.approx(hin, abs=1e-14)


def _random_substochastic(rng, n, density, cycles):
    """Sparse non-negative rows summing to <= 1: a DAG plus ``cycles`` back edges."""
    A = sp.random(n, n, density=density, random_state=np.random.RandomState(int(rng.integers(1e9))))
    A = sp.tril(A, k=-1).tocsr()                                   # successors first: acyclic
    rows = rng.integers(0, n, cycles)
    cols = rng.integers(0, n, cycles)
    A = (A + sp.csr_matrix((rng.random(cycles), (rows, cols)), shape=(n, n))).tocsr()
    A = A + sp.diags(rng.random(n) * (rng.random(n) < 0.2))        # some self-loops
    s = np.asarray(A.sum(axis=1)).ravel()
    A = sp.diags(1.0 / np.maximum(s, 1.0) * (0.5 + 0.5 * rng.random(n))) @ A
    return sp.csr_matrix(A)


@pytest.mark.parametrize("cycles", [0, 30, 400])
def test_scc_order_is_block_triangular_and_matches_scipy(rng, cycles):
    n = 300
    P = _random_substochastic(rng, n, 0.01, cycles)
    order, ptr = scc_order(P.indptr, P.indices, n)
    assert np.array_equal(np.sort(order), np.arange(n))
    block = np.empty(n, dtype=np.int64)
    for b in range(ptr.size - 1):
        block[order[ptr[b]:ptr[b + 1]]] = b
    coo = P.tocoo()
    assert np.all(block[coo.col] <= block[coo.row])                # edges go to earlier blocks
    ncomp, labels = connected_components(P, directed=True, connection="strong")
    assert ncomp == ptr.size - 1
    # same partition: each of our blocks is one scipy component
    for b in range(ptr.size - 1):
        assert np.unique(labels[order[ptr[b]:ptr[b + 1]]]).size == 1


def test_downwind_order_keeps_blocks_and_follows_successors(rng):
    # large blocks are reordered so that every state but the first (the largest self-loop) comes
    # after one of its successors in the same block; block contents and order are unchanged
    n = 400
    P = _random_substochastic(rng, n, 0.01, 2000)
    order, ptr = scc_order(P.indptr, P.indices, n)
    sizes = np.diff(ptr)
    assert sizes.max() > DENSE_BLOCK
    new = order.copy()
    loc = np.full(n, -1, dtype=np.int64)
    downwind_order(P.indptr, P.indices, P.data, new, ptr, DENSE_BLOCK, loc)
    assert np.all(loc == -1)
    diag = P.diagonal()
    for b in range(ptr.size - 1):
        old_b, new_b = order[ptr[b]:ptr[b + 1]], new[ptr[b]:ptr[b + 1]]
        assert np.array_equal(np.sort(old_b), np.sort(new_b))
        if sizes[b] <= DENSE_BLOCK:
            assert np.array_equal(old_b, new_b)
            continue
        assert diag[new_b[0]] == diag[new_b].max()
        # the sources (self-loop within SINK_FRACTION of the largest) lead; then every state has
        # a successor earlier in its block
        sources = diag[new_b] >= SINK_FRACTION * diag[new_b].max() if diag[new_b].max() > 0 else \
            np.arange(new_b.size) == 0
        k = int(np.count_nonzero(sources))
        assert np.all(sources[:k])
        seen = set(new_b[:k].tolist())
        for s in new_b[k:]:
            succ = set(P.indices[P.indptr[s]:P.indptr[s + 1]].tolist())
            assert succ & seen, f"state {s} has no successor earlier in its block"
            seen.add(int(s))


def test_block_solver_reuses_a_previous_order_only_when_it_still_holds(rng):
    # a chain that differs from the previous one by edges that stay within or go down the old
    # block order keeps it (no Tarjan pass); an edge up the order forces a fresh one; both solve
    # exactly (against spsolve)
    n, g = 400, 0.99
    P = _random_substochastic(rng, n, 0.01, 2000)
    first = BlockTriangularSolver(P, g)
    first.solve(rng.random(n))
    block = first._block_of
    coo = P.tocoo()
    keep = block[coo.col] <= block[coo.row]
    assert np.all(keep)
    # reweight existing edges (same graph): the old order holds
    P2 = sp.csr_matrix((coo.data * (0.5 + 0.5 * rng.random(coo.nnz)), (coo.row, coo.col)), shape=(n, n))
    # an edge from the first block's state to a state of the last block goes up the order
    lo_state, hi_state = first.order[0], first.order[-1]
    P3 = (P2 + sp.csr_matrix(([0.01], ([lo_state], [hi_state])), shape=(n, n))).tocsr()
    P3 = sp.diags(1.0 / np.maximum(np.asarray(P3.sum(axis=1)).ravel(), 1.0)) @ P3
    P3 = sp.csr_matrix(P3)
    for Pn, reused in [(P2, True), (P3, False)]:
        Pn.sort_indices()
        bts = BlockTriangularSolver(Pn, g, previous=first)
        assert bts.reused_order is reused
        c = rng.random(n)
        ref = spla.spsolve((sp.identity(n) - g * Pn).tocsc(), c)
        # rounding times the condition (<= 2/(1-g)) times |v|, as above
        np.testing.assert_allclose(bts.solve(c), ref, rtol=0, atol=1e-13 / (1 - g) * np.max(np.abs(ref)))


@pytest.mark.parametrize("cycles", [0, 30, 400])
def test_closed_components_match_scipy_and_ignore_stored_zeros(rng, cycles):
    # recurrent classes: scipy's strong components of the positive entries, kept when no positive
    # entry leaves them; stored zeros (here on a fifth of the entries) are not edges
    n = 300
    P = _random_substochastic(rng, n, 0.01, cycles)
    P = (P + sp.diags(np.where(np.asarray(P.sum(axis=1)).ravel() == 0, 1.0, 0.0))).tocsr()
    P.data[rng.random(P.nnz) < 0.2] = 0.0            # stored zeros
    order, ptr, closed = closed_components(P.indptr, P.indices, P.data, n)
    pos = P.copy()
    pos.eliminate_zeros()
    ncomp, labels = connected_components(pos, directed=True, connection="strong")
    coo = pos.tocoo()
    open_ = np.zeros(ncomp, dtype=bool)
    open_[labels[coo.row[labels[coo.row] != labels[coo.col]]]] = True
    expected = {frozenset(np.flatnonzero(labels == k).tolist()) for k in np.flatnonzero(~open_)}
    found = {frozenset(order[ptr[b]:ptr[b + 1]].tolist()) for b in np.flatnonzero(closed)}
    assert ptr.size - 1 == ncomp and found == expected


@pytest.mark.parametrize("cycles", [0, 30, 2000])
@pytest.mark.parametrize("g", [0.5, 0.99])
def test_block_triangular_solver_matches_spsolve(rng, cycles, g):
    n = 400
    P = _random_substochastic(rng, n, 0.01, cycles)
    c = rng.random(n)
    A = (sp.identity(n) - g * P).tocsc()
    ref = spla.spsolve(A, c)
    bts = BlockTriangularSolver(P, g)
    if cycles == 2000:
        assert bts.largest_block > DENSE_BLOCK            # exercises the swept / factorized block
    v = bts.solve(c)
    # backward-stable solves of a diagonally dominant system: rounding times its condition
    # (<= 2/(1-g)) times |v|
    np.testing.assert_allclose(v, ref, rtol=0, atol=1e-13 / (1 - g) * np.max(np.abs(ref)))
    # forcing the factorization of large blocks gives the same answer
    bts.GS_MAX = 1
    np.testing.assert_allclose(bts.solve(c), ref, rtol=0, atol=1e-13 / (1 - g) * np.max(np.abs(ref)))
    # a loose tolerance is honoured (sup-norm)
    w = BlockTriangularSolver(P, g).solve(c, v0=np.zeros(n), tol=1e-6)
    assert np.max(np.abs(w - ref)) <= 1e-6
