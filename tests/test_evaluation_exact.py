"""Exact policy iteration with reused factorizations: every evaluation at a direct solve's
backward error (``LinearSolveCache(backward_tol=...)``), and BLAS pinned to one thread in
``wg.solve``."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import wgflow as wg
from wgflow.evaluation import EXACT_BACKWARD
from wgflow.kernels import policy_matrix
from wgflow.linalg import single_thread_blas

EPS = np.finfo(float).eps


def _system(mdp, masses, gamma=0.99):
    I = sp.identity(mdp.n_states, format="csr")
    return (I - gamma * policy_matrix(mdp.P, masses)).tocsr()


def _backward_error(A, x, b):
    """Normwise backward error in inf-norms, computed here from scratch (dense norms)."""
    Ad = A.toarray()
    return np.max(np.abs(b - Ad @ x)) / (np.max(np.abs(Ad).sum(axis=1)) * np.max(np.abs(x))
                                         + np.max(np.abs(b)))


@pytest.mark.parametrize("eps", [1e-3, 3e-2])
def test_backward_tol_reuse_reaches_a_direct_solves_accuracy(rng, eps):
    mdp = wg.problems.get("garnet", n_states=300, n_actions=4, branching=5, seed=1)
    masses = rng.dirichlet(np.ones(4), size=300)
    b, c = rng.random(300), rng.random(300)
    # a loose relative residual: with backward_tol given, it is not what decides
    cache = wg.LinearSolveCache(reuse=True, rtol=1e-8, backward_tol=EXACT_BACKWARD)
    cache.solve(_system(mdp, masses), [b, c], [False, True])
    m1 = masses * (1 + eps * rng.random(masses.shape))
    A1 = _system(mdp, m1 / m1.sum(axis=1, keepdims=True))
    x1, y1 = cache.solve(A1, [b, c], [False, True])
    # the old factors served (GMRES / refinement), no new factorization
    assert cache.stats["factorizations"] == 1 and cache.stats["krylov_solves"] == 2
    assert _backward_error(A1, x1, b) <= EXACT_BACKWARD
    assert _backward_error(A1.T.tocsr(), y1, c) <= EXACT_BACKWARD
    # forward error <= cond_inf * backward error (x2 for the direct reference's own error);
    # cond_inf(I - 0.99 P) <= 2 / (1 - 0.99) = 200
    Ad = A1.toarray()
    for x, ref in ((x1, np.linalg.solve(Ad, b)), (y1, np.linalg.solve(Ad.T, c))):
        assert np.max(np.abs(x - ref)) <= 2 * 200 * EXACT_BACKWARD * np.max(np.abs(ref))


def test_backward_tol_refactorizes_when_the_old_factors_do_not_reach_it(rng):
    mdp = wg.problems.get("garnet", n_states=300, n_actions=4, branching=5, seed=1)
    other = wg.problems.get("garnet", n_states=300, n_actions=4, branching=5, seed=2)
    masses = rng.dirichlet(np.ones(4), size=300)
    b = rng.random(300)
    cache = wg.LinearSolveCache(reuse=True, backward_tol=EXACT_BACKWARD)
    cache.solve(_system(mdp, masses), [b], [False])
    A2 = _system(other, masses)
    x2, = cache.solve(A2, [b], [False])
    assert cache.stats["refactorizations_after_krylov"] == 1 and cache.stats["factorizations"] == 2
    np.testing.assert_allclose(x2, spla.spsolve(A2.tocsc(), b), rtol=1e-12)


def test_average_policy_iteration_returns_an_exact_evaluation_after_krylov_steps():
    # mountain car 41^2: the last policy-iteration steps reuse the factors (GMRES), and their
    # evaluation is returned as it is (no fresh factorization at the end)
    mdp = wg.problems.get("mountain_car", n_position=41, n_velocity=41, n_actions=11, goal="reset")
    sol = wg.solve(mdp, wg.Average(), progress=False)
    assert sol.diagnostics["linear_solver"]["krylov_solves"] > 0
    # reference: a dense solve of the Poisson equation of the returned policy, h(ref) = 0
    n = mdp.n_states
    P = policy_matrix(mdp.P, sol.policy.masses).toarray()
    c = np.sum(sol.policy.masses * mdp.C, axis=1)
    ref = int(np.argmax(sol.weights))
    M = np.eye(n) - P
    M[:, ref] = 1.0                      # unknowns: h with h(ref) replaced by J
    x = np.linalg.solve(M, c)
    J = x[ref]
    h = x.copy()
    h[ref] = 0.0
    rho = np.linalg.solve(M.T, np.eye(n)[ref])
    h -= rho @ h / rho.sum()
    # both solves are backward stable: forward errors <= cond(M) * a few eps, cond(M) estimated
    cond = np.linalg.cond(M, 1)
    tol = 16 * EPS * cond
    assert abs(sol.J - J) <= tol * max(abs(J), np.max(np.abs(x)))
    assert np.max(np.abs(sol.V - h)) <= tol * np.max(np.abs(x))
    np.testing.assert_allclose(sol.weights, rho / rho.sum(), rtol=0, atol=tol)
    # and the policy is average-optimal: exact policy iteration from the greedy policy agrees
    plain = wg.solve(mdp, wg.Average(), policy0=wg.Policy.from_masses(mdp, sol.policy.masses),
                     reuse_factorization=False, progress=False)
    assert abs(plain.J - sol.J) <= tol * max(abs(J), np.max(np.abs(x)))


def test_single_thread_blas_limits_and_restores_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]

    before = blas_threads()
    with single_thread_blas():
        inside = blas_threads()
    assert all(t == 1 for t in inside) and len(inside) == len(before)
    assert blas_threads() == before
