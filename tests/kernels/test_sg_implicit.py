"""Linearly implicit SG kernels (wgflow.kernels.sg_implicit): the resolvent (I + h L)^{-1} against
dense linear algebra and exact rational arithmetic, and the structure it must keep for every h
(mass, positivity, Gibbs stationarity; docs/design.md §3)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from scipy.linalg import expm

import wgflow as wg
from wgflow.kernels.sg_implicit import (SGOperator, sg_generator_dense, sg_implicit_solve,
                                        sg_implicit_solve_numpy)
from wgflow.policy import gibbs_masses

SHAPES = [(9,), (4, 5), (3, 2, 4)]


def _grid(shape):
    return wg.Grid([(-1.0, 1.0)] * len(shape), list(shape))


def _inputs(rng, grid, nS=5, q_scale=3.0):
    q = q_scale * rng.standard_normal((nS, grid.size))
    m = rng.random((nS, grid.size))
    return m / m.sum(axis=1, keepdims=True), q


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("tau", [0.0, 0.1, 1.0])
def test_resolvent_equals_dense_solve(rng, shape, tau):
    grid = _grid(shape)
    m, q = _inputs(rng, grid)
    for h in (1e-3, 1.0):
        x = sg_implicit_solve(m, q, tau, h, grid)
        y = sg_implicit_solve_numpy(m, q, tau, h, grid)
        # A = I + hL has column sums 1 and |A|_1 <= 1 + 2 h max rate; with these h its condition
        # number is below ~1e4, so LAPACK's solve is accurate to ~1e4 ulps of max|x|
        np.testing.assert_allclose(x, y, rtol=0, atol=1e4 * np.finfo(float).eps * np.abs(y).max())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_generator_apply_and_rates(rng, shape):
    grid = _grid(shape)
    m, q = _inputs(rng, grid)
    L = sg_generator_dense(q, 0.3, grid)
    # a generator of mass-conserving fluxes: zero column sums, non-positive off-diagonals
    np.testing.assert_allclose(L.sum(axis=1), 0.0, atol=1e-12 * np.abs(L).max())
    off = L - np.einsum("sii->si", L)[:, :, None] * np.eye(grid.size)[None]
    assert off.max() <= 0.0
    dm, rate = SGOperator(q, 0.3, grid).apply(m)
    np.testing.assert_allclose(dm, -np.einsum("sij,sj->si", L, m), rtol=0, atol=1e-13 * np.abs(L).max())
    np.testing.assert_allclose(rate, np.einsum("sii->si", L), rtol=1e-14)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("tau", [0.0, 0.05, 0.7])
@pytest.mark.parametrize("h", [1e-3, 1.0, 1e6, 1e200])
def test_mass_and_positivity_for_every_step(rng, shape, tau, h):
    grid = _grid(shape)
    m, q = _inputs(rng, grid, q_scale=5.0)
    m[0, ::2] = 0.0                                      # empty cells are fine too
    m[0] /= m[0].sum()
    x = sg_implicit_solve(m, q, tau, h, grid)
    assert np.all(np.isfinite(x)) and x.min() >= 0.0
    # sums of non-negative terms: the mass is kept to a few ulps per cell
    np.testing.assert_allclose(x.sum(axis=1), 1.0, rtol=0, atol=4 * grid.size * np.finfo(float).eps)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("h", [1e-2, 1e3, 1e12, 1e200])
def test_gibbs_masses_are_fixed_for_every_step(rng, shape, h):
    grid = _grid(shape)
    _, q = _inputs(rng, grid, q_scale=2.0)
    for tau in (0.05, 1.0):
        g = gibbs_masses(q, tau)
        x = sg_implicit_solve(g, q, tau, h, grid)
        # L g = 0 exactly in exact arithmetic; every entry is recomputed to a few ulps of itself
        np.testing.assert_allclose(x, g, rtol=1e-13, atol=0.0)


def test_large_step_tends_to_gibbs_at_rate_one_over_h(rng):
    # Q with small variations (no barriers): the spectral gap of L is O(1), so the resolvent is
    # within O(1 / h) of the Gibbs masses carrying the mass of m
    grid = _grid((9,))
    q = 0.1 * rng.standard_normal((4, 9))
    m = rng.random((4, 9))
    m /= m.sum(axis=1, keepdims=True)
    g = gibbs_masses(q, 0.1)
    errs = [np.abs(sg_implicit_solve(m, q, 0.1, h, grid) - g).max() for h in (1e4, 1e6, 1e8)]
    assert errs[0] < 1e-3
    # the error is c / h + O(1 / h^2): ratios of 100 per factor 100 in h, to O(1 / (h gap))
    np.testing.assert_allclose(np.array(errs[:-1]) / np.array(errs[1:]), 100.0, rtol=1e-2)


def _exact_resolvent(cf, cb, h, b):
    """(I + h L)^{-1} b in exact rational arithmetic (Fractions) for one 1-D line."""
    n = b.size
    F = Fraction
    A = [[F(0)] * n for _ in range(n)]
    for i in range(n):
        A[i][i] = F(1)
    for i in range(n - 1):
        a, c = F(float(h)) * F(float(cf[i])), F(float(h)) * F(float(cb[i]))
        A[i][i] += a
        A[i + 1][i] -= a
        A[i + 1][i + 1] += c
        A[i][i + 1] -= c
    x = [F(float(v)) for v in b]
    for k in range(n):                                   # Gaussian elimination, exact
        for i in range(k + 1, n):
            f = A[i][k] / A[k][k]
            if f:
                for j in range(k, n):
                    A[i][j] -= f * A[k][j]
                x[i] -= f * x[k]
    out = [F(0)] * n
    for i in range(n - 1, -1, -1):
        out[i] = (x[i] - sum(A[i][j] * out[j] for j in range(i + 1, n))) / A[i][i]
    return np.array([float(v) for v in out])


@pytest.mark.parametrize("h", [1.0, 1e8, 1e40])
def test_every_entry_accurate_relative_to_itself(h):
    # masses spanning ~200 orders of magnitude (a Gibbs tail): the subtraction-free elimination
    # computes each entry to a few ulps of itself, which an exact rational solve confirms; a
    # dense LU (numpy) gets the tail entries wrong by many orders of magnitude
    grid = wg.Grid([(-1.0, 1.0)], [7])
    q = np.array([[0.0, 3.0, 8.0, 15.0, 25.0, 33.0, 45.0]])
    tau = 0.1
    op = SGOperator(q, tau, grid)
    b = np.array([[0.3, 0.2, 0.1, 1e-5, 1e-40, 1e-100, 1e-150]])
    x = op.resolvent(b, h)[0]
    ref = _exact_resolvent(op.cf[0, 0], op.cb[0, 0], h, b[0])
    assert x.min() > 0 and ref.min() < 1e-100
    # each entry is a sum of positive terms, each carrying O(n) roundings
    np.testing.assert_allclose(x, ref, rtol=64 * np.finfo(float).eps, atol=0.0)


def test_repeat_is_repeated_solves(rng):
    for shape in ((8,), (3, 4)):
        grid = _grid(shape)
        m, q = _inputs(rng, grid)
        op = SGOperator(q, 0.2, grid)
        once = op.resolvent(op.resolvent(op.resolvent(m, 0.3), 0.3), 0.3)
        np.testing.assert_allclose(op.resolvent(m, 0.3, repeat=3), once, rtol=1e-14, atol=0.0)


def test_implicit_euler_is_first_order_for_the_frozen_flow(rng):
    # frozen Q: the flow is dm/dt = -L m, solved exactly by scipy's expm; n implicit steps of
    # size T/n miss it by O(1/n)
    grid = _grid((11,))
    m, q = _inputs(rng, grid, nS=2, q_scale=1.0)
    L = sg_generator_dense(q, 0.2, grid)
    T = 0.05
    exact = np.stack([expm(-T * L[s]) @ m[s] for s in range(2)])
    op = SGOperator(q, 0.2, grid)
    errs = [np.abs(op.resolvent(m, T / n, repeat=n) - exact).max() for n in (20, 40, 80)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    np.testing.assert_allclose(orders, 1.0, atol=0.05)
