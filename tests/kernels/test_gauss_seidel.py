"""Corrected Gauss-Seidel evaluation sweeps against direct solves, Jacobi sweeps and scipy."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

import wgflow as wg
from wgflow.kernels import policy_matrix
from wgflow.kernels.gauss_seidel import (corrected_gs_sweeps, csr_apply, diagonal_positions,
                                        drop_negligible, stationary_sweeps, transpose_pattern)
from wgflow.kernels.softmin import span_sweeps
from wgflow.policy import gibbs_masses


def _chain(mdp, rng, tau):
    masses = gibbs_masses(mdp.C + rng.random((mdp.n_states, mdp.n_actions)), tau)
    P = policy_matrix(mdp.P, masses).tocsr()
    P.sort_indices()
    return P


def _stationary(P):
    # rho (P - I) = 0 with the last equation replaced by sum(rho) = 1, by a direct solve
    n = P.shape[0]
    A = (P.T - sp.identity(n)).tolil()
    A[n - 1, :] = np.ones(n)
    b = np.zeros(n)
    b[-1] = 1.0
    return spsolve(A.tocsc(), b)


def _run(P, c, g, rho, k_max, target, v=None):
    n = P.shape[0]
    v = np.zeros(n) if v is None else v
    tptr, tidx, tmap = transpose_pattern(P.indptr, P.indices, n)
    k, err, ok = corrected_gs_sweeps(P.indptr, P.indices.astype(np.int32), P.data,
                                     diagonal_positions(P.indptr, P.indices, n), tptr, tidx,
                                     P.data[tmap], c, v, g, rho.copy(), np.empty(n), np.empty(n),
                                     k_max, target, 8)
    return v, k, err, ok


def test_diagonal_positions_and_transpose_match_scipy(rng):
    n = 60
    A = sp.random(n, n, density=0.1, random_state=np.random.RandomState(1), format="lil")
    A.setdiag(np.where(rng.random(n) < 0.5, rng.random(n), 0.0))     # some rows without
    A[7, :] = 0.0                                                     # an empty row
    A = A.tocsr()
    A.eliminate_zeros()
    pos = diagonal_positions(A.indptr, A.indices, n)
    for s in range(n):
        row = A.indices[A.indptr[s]:A.indptr[s + 1]]
        if s in row:
            assert A.indices[pos[s]] == s and A.data[pos[s]] == A[s, s]
        else:
            assert pos[s] == -1
    x, out = rng.random(n), np.empty(n)
    tptr, tidx, tmap = transpose_pattern(A.indptr, A.indices, n)
    T = A.T.tocsr()
    T.sort_indices()
    np.testing.assert_array_equal(tptr, T.indptr)
    np.testing.assert_array_equal(tidx, T.indices)
    np.testing.assert_array_equal(A.data[tmap], T.data)
    csr_apply(tptr, tidx, A.data[tmap], x, out)
    # sums in another order: a few ulps of the largest term
    np.testing.assert_allclose(out, A.T @ x, rtol=1e-14, atol=1e-15)


def test_drop_negligible_keeps_the_diagonal_and_every_entry_above_the_threshold(rng):
    # entries spread over 10^-30..1 (a third below theta, as the masses of a Gibbs chain at a
    # small entropy), some rows without a self-loop, one self-loop tiny and one zero: the copy is
    # scipy's matrix with the off-diagonal entries <= theta removed, its diagonal positions
    # those of diagonal_positions on it
    n = 80
    P = sp.random(n, n, density=0.15, random_state=np.random.RandomState(3), format="lil")
    P.setdiag(np.where(rng.random(n) < 0.7, 1.0, 0.0))
    P = P.tocsr()
    P.eliminate_zeros()
    P.data = 10.0 ** rng.uniform(-30.0, 0.0, P.nnz)
    P.sort_indices()
    d = diagonal_positions(P.indptr, P.indices, n)
    rows = np.flatnonzero(d >= 0)
    assert 3 < rows.size < n
    P.data[d[rows[0]]] = 1e-300
    P.data[d[rows[1]]] = 0.0
    theta = 1e-20
    optr, oidx, odata, dpos = (np.empty(n + 1, dtype=np.int64), np.empty_like(P.indices),
                               np.empty(P.nnz), np.empty(n, dtype=np.int64))
    k = drop_negligible(P.indptr, P.indices, P.data, theta, optr, oidx, odata, dpos)
    keep = P.data > theta
    keep[d[rows]] = True
    ref = sp.csr_matrix((P.data[keep], P.indices[keep],
                         np.concatenate([[0], np.cumsum(np.add.reduceat(keep, P.indptr[:-1]))])),
                        shape=P.shape)
    assert 0.5 * P.nnz < k < 0.8 * P.nnz
    np.testing.assert_array_equal(optr, ref.indptr)
    np.testing.assert_array_equal(oidx[:k], ref.indices)
    np.testing.assert_array_equal(odata[:k], ref.data)
    np.testing.assert_array_equal(dpos, diagonal_positions(optr, oidx[:k], n))
    assert odata[dpos[rows[0]]] == 1e-300 and odata[dpos[rows[1]]] == 0.0
    assert np.all(dpos[d < 0] == -1)
    # what was dropped: at most theta per entry
    dropped = P.copy()
    dropped.data[keep] = 0.0
    assert dropped.data.max() <= theta


def test_stationary_sweeps_reach_the_stationary_law_faster_than_power_steps(rng):
    # a Gibbs chain of the pendulum (slow mixing: its second eigenvalue is 0.99): Gauss-Seidel
    # sweeps on rho = P^T rho from the uniform law converge to the stationary law of a direct
    # solve, far ahead of as many power steps
    mdp = wg.problems.get("pendulum", n_theta=25, n_omega=25, n_actions=11)
    P = _chain(mdp, rng, 0.3)
    n = P.shape[0]
    st = _stationary(P)
    tptr, tidx, tmap = transpose_pattern(P.indptr, P.indices, n)
    errors = []
    for k in (30, 1000):
        rho = np.full(n, 1.0 / n)
        stationary_sweeps(tptr, tidx, P.data[tmap], rho, k, True)
        assert rho.sum() == pytest.approx(1.0, rel=1e-13) and np.all(rho >= 0)
        errors.append(np.abs(rho - st).sum())
    # 1000 sweeps: the direct solve's rounding, ulps times the conditioning 1 / (1 - 0.99)
    assert errors[1] <= 1e-11
    power = np.full(n, 1.0 / n)
    for _ in range(30):
        power = P.T @ power
    assert np.abs(power - st).sum() > 10 * errors[0]


@pytest.mark.parametrize("tau", [1e-3, 0.3])
def test_corrected_sweeps_reach_the_direct_solve_in_fewer_sweeps_than_jacobi(rng, tau):
    # a Gibbs chain of the pendulum at gamma 0.99 (it mixes slowly: Jacobi sweeps contract by
    # about 0.97): the sweeps converge to the direct solve, their error estimate is within a
    # factor 10 of the true error, and they need fewer than half of Jacobi's sweeps to the same
    # target, with the stationary law or with the uniform law as the estimate
    mdp = wg.problems.get("pendulum", n_theta=25, n_omega=25, n_actions=11)
    g = 0.99
    P = _chain(mdp, rng, tau)
    n = P.shape[0]
    c = rng.random(n)
    x = spsolve((sp.identity(n) - g * P).tocsc(), c)
    target = 1e-10 * np.max(np.abs(x))
    _, kj, errj = span_sweeps(P.indptr, P.indices.astype(np.int32), P.data, c, np.zeros(n), g,
                              5000, target, np.empty(n))
    assert errj <= target
    for rho in (_stationary(P), np.full(n, 1.0 / n)):
        v, k, err, ok = _run(P, c, g, rho, 5000, target)
        assert ok and err <= target
        true = np.max(np.abs(v - x))
        # the estimate follows the true error (the direct solve's rounding: ulps of |x| / (1-g))
        assert true <= 10 * err + 1e-12 * np.max(np.abs(x))
        assert k < kj / 2


def test_corrected_sweeps_give_up_when_a_poor_estimate_makes_them_diverge(rng):
    # mountain car at gamma 0.999: with the uniform law for the stationary one, the correction
    # (amplified by 1 / (1 - gamma) = 1000) throws the iterate away; the bound check stops the
    # call within a few sweeps and says so, while the stationary law converges
    mdp = wg.problems.get("mountain_car", n_position=25, n_velocity=25)
    g = 0.999
    P = _chain(mdp, rng, 0.3)
    n = P.shape[0]
    c = rng.random(n)
    x = spsolve((sp.identity(n) - g * P).tocsc(), c)
    target = 1e-10 * np.max(np.abs(x))
    v, k, err, ok = _run(P, c, g, np.full(n, 1.0 / n), 5000, target)
    assert not ok and k <= 10 and err == np.inf
    # a stationary law (the chain has more than one closed class: any of them serves)
    tptr, tidx, tmap = transpose_pattern(P.indptr, P.indices, n)
    rho = np.full(n, 1.0 / n)
    stationary_sweeps(tptr, tidx, P.data[tmap], rho, 2000, True)
    assert np.abs(P.T @ rho - rho).sum() <= 1e-12
    v, k, err, ok = _run(P, c, g, rho, 5000, target)
    assert ok and np.max(np.abs(v - x)) <= 10 * err + 1e-12 * np.max(np.abs(x))


def test_corrected_sweeps_keep_a_solution(rng):
    # started at the solution, the sweeps stay there (changes at rounding level) and stop
    mdp = wg.problems.get("pendulum", n_theta=9, n_omega=9, n_actions=7)
    g = 0.99
    P = _chain(mdp, rng, 0.3)
    n = P.shape[0]
    c = rng.random(n)
    x = spsolve((sp.identity(n) - g * P).tocsc(), c)
    scale = np.max(np.abs(x))
    v, k, err, ok = _run(P, c, g, _stationary(P), 50, 1e-9 * scale, v=x.copy())
    assert ok and k <= 3
    # rounding of the sweep and of the direct solve: ulps of |x| / (1 - g)
    np.testing.assert_allclose(v, x, rtol=0, atol=1e-11 * scale)


def test_uncorrected_sweeps_do_not_read_rho_and_converge_on_an_absorbing_chain(rng):
    # mountain car (goal cells absorbing) at gamma 0.999: with correct=False the sweeps are plain
    # symmetric Gauss-Seidel; rho and the transpose are not read (NaN here), and they converge
    # to the direct solve with the estimate following the true error
    mdp = wg.problems.get("mountain_car", n_position=25, n_velocity=25)
    g = 0.999
    P = _chain(mdp, rng, 0.3)
    n = P.shape[0]
    assert np.any(P.diagonal() == 1.0)
    c = rng.random(n)
    x = spsolve((sp.identity(n) - g * P).tocsc(), c)
    scale = np.max(np.abs(x))
    v = np.zeros(n)
    nan = np.full(n, np.nan)
    k, err, ok = corrected_gs_sweeps(P.indptr, P.indices.astype(np.int32), P.data,
                                     diagonal_positions(P.indptr, P.indices, n), P.indptr,
                                     P.indices, nan, c, v, g, nan.copy(), np.empty(n),
                                     np.empty(n), 20000, 1e-10 * scale, 8, False)
    assert ok and err <= 1e-10 * scale and np.all(np.isfinite(v))
    # the direct solve's rounding: ulps of |x| / (1 - g)
    assert np.max(np.abs(v - x)) <= 10 * err + 1e-12 * scale
