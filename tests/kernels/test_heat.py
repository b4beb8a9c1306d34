"""Exact discrete heat semigroup (the WPPG heat step): kernel vs numpy twin vs DCT vs expm."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

import wgflow as wg
from wgflow.kernels.heat import (heat_matrix, heat_step, heat_step_dct, heat_step_numpy,
                                 heat_weights, make_dense_heat_kernel, make_heat_kernel)


def _random_masses(rng, nS, n):
    m = rng.random((nS, n))
    return m / m.sum(axis=1, keepdims=True)


def _laplacian(n, dx, periodic):
    L = np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    if periodic:
        L[0, -1] += 1.0
        L[-1, 0] += 1.0
    else:                      # zero flux through the outer faces (ghost cell = own value)
        L[0, 0] = L[-1, -1] = -1.0
    return L / dx ** 2


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("variance", [0.0, 1e-5, 3e-3, 0.2, 4.0, 300.0])
def test_kernel_equals_numpy_twin_and_dct(rng, periodic, variance):
    g = wg.Grid([(-2.0, 3.0)], [57], periodic=periodic)
    m = _random_masses(rng, 5, g.size)
    a = heat_step(m, g, variance, method="kernel")
    b = heat_step_numpy(m, g, variance)
    c = heat_step_dct(m, g, variance)
    assert np.max(np.abs(a - b)) <= 1e-14
    assert np.max(np.abs(a - c)) <= 1e-14
    assert a is not m
    for method in ("auto", "dct"):
        d = heat_step(m, g, variance, method=method)
        assert np.max(np.abs(a - d)) <= 1e-14 and d.min() >= 0.0
        assert np.max(np.abs(d.sum(axis=1) - m.sum(axis=1))) <= 1e-14


def test_multid_equals_twins_and_is_separable(rng):
    g = wg.Grid([(-1, 1), (0, 2), (0, 1)], [9, 12, 5], periodic=[False, True, False])
    m = _random_masses(rng, 3, g.size)
    var = [0.01, 0.3, 0.002]
    a = heat_step(m, g, var, method="kernel")
    assert np.max(np.abs(a - heat_step(m, g, var))) <= 1e-14
    assert np.max(np.abs(a - heat_step_numpy(m, g, var))) <= 1e-14
    assert np.max(np.abs(a - heat_step_dct(m, g, var))) <= 1e-14
    # separability: the axis steps commute and compose
    one = heat_step(heat_step(m, g, [0.01, 0.0, 0.0], method="kernel"), g, [0.0, 0.3, 0.002],
                    method="kernel")
    assert np.max(np.abs(one - a)) <= 1e-15
    # the input is never modified
    m0 = m.copy()
    heat_step(m, g, 0.0)
    assert np.array_equal(m, m0)


@pytest.mark.parametrize("periodic", [False, True])
def test_semigroup_is_expm_of_the_discrete_laplacian(periodic):
    n, dx, tau, t = 9, 0.3, 0.2, 0.37
    G = heat_matrix(n, tau * t / dx ** 2, periodic)
    E = expm(tau * t * _laplacian(n, dx, periodic))
    assert np.max(np.abs(G - E)) <= 1e-14
    assert np.max(np.abs(G - G.T)) <= 1e-15                  # self-adjoint
    assert np.min(G) >= 0.0                                   # positivity


def test_mass_positivity_and_entropy_growth(rng):
    g = wg.Grid([(-4, 4)], [101])
    m = np.zeros((3, 101))
    m[0, 0] = 1.0                                             # a point mass at the wall
    m[1, 50] = 1.0
    m[2] = _random_masses(rng, 1, 101)[0]
    prev = m
    for v in [1e-4, 1e-3, 1e-2, 0.1, 1.0]:
        cur = heat_step(prev, g, v, method="kernel")
        assert np.max(np.abs(cur.sum(axis=1) - 1.0)) <= 4e-16 * 101
        assert cur.min() >= 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            H0 = -np.sum(np.where(prev > 0, prev * np.log(prev), 0.0), axis=1)
            H1 = -np.sum(np.where(cur > 0, cur * np.log(cur), 0.0), axis=1)
        assert np.all(H1 >= H0 - 1e-13)                       # entropy never decreases
        prev = cur


@pytest.mark.parametrize("variance", [1e-4, 0.02, 0.5])
def test_gaussian_in_the_interior_gains_exactly_2_tau_t(variance):
    """Interior: the variance grows by exactly ``2 tau t`` (random walk with +-dx jumps at rate
    tau/dx^2); the mean is unchanged; the fourth cumulant gains ``2 tau t dx^2`` (the grid error
    is in the shape, not in the variance)."""
    g = wg.Grid([(-8, 8)], [801])
    x = g.axes[0]
    dx = g.spacing[0]
    m = np.exp(-0.5 * (x - 0.4) ** 2 / 0.3 ** 2)[None, :]
    m /= m.sum()

    def cumulants(p):
        mu = p @ x
        c = x - mu
        v = p @ c ** 2
        return mu, v, p @ c ** 4 - 3 * v ** 2

    mu0, v0, k40 = cumulants(m[0])
    for method in ("kernel", "dct"):
        out = heat_step(m, g, variance, method=method)[0]
        mu1, v1, k41 = cumulants(out)
        assert abs(mu1 - mu0) <= 1e-14
        assert abs((v1 - v0) - variance) <= 1e-13 * max(1.0, variance / 0.09)
        assert abs((k41 - k40) - variance * dx ** 2) <= 1e-12
    # the weights themselves: sum 1, mean 0, variance 2r (in cells)
    r = variance / (2 * dx ** 2)
    j0, w = heat_weights(801, r)
    j = j0 + np.arange(w.size)
    assert abs(w.sum() - 1.0) <= 1e-15 and abs(w @ j) <= 1e-12
    assert abs(w @ j ** 2 - 2 * r) <= 1e-12 * max(1, r)


def test_crank_nicolson_converges_to_the_exact_semigroup(rng):
    n, dx, tau, t = 40, 0.1, 0.3, 0.2
    g = wg.Grid([(0, n * dx)], [n])
    m = _random_masses(rng, 1, n)[0]
    exact = heat_step(m[None, :], g, 2 * tau * t)[0]
    L = tau * _laplacian(n, dx, False)
    errs = []
    for k in (50, 100):
        h = t / k
        A = np.eye(n) - 0.5 * h * L
        B = np.eye(n) + 0.5 * h * L
        u = m.copy()
        for _ in range(k):
            u = np.linalg.solve(A, B @ u)
        errs.append(np.max(np.abs(u - exact)))
    assert errs[1] < errs[0] / 3.5                           # second order in the CN step
    assert errs[1] < 1e-5


def test_wide_kernel_is_folded_and_reaches_uniform():
    j0, w = heat_weights(10, 1e6)
    assert w.size == 20 and abs(w.sum() - 1.0) <= 1e-15
    g = wg.Grid([(0, 1)], [10])
    for method in ("kernel", "auto"):
        out = heat_step(np.eye(10), g, 1e3, method=method)
        assert np.max(np.abs(out - 0.1)) <= 1e-13


@pytest.mark.parametrize("periodic", [False, True])
def test_banded_kernel_on_a_long_axis_with_a_wide_kernel(rng, periodic):
    """n > 128: the banded kernel (not the dense one) handles offsets folded several times."""
    g = wg.Grid([(0, 1.5)], [150], periodic=periodic)
    m = _random_masses(rng, 2, 150)
    for variance in (0.02, 2.0, 50.0):                  # kernel narrower / wider than the axis
        a = heat_step(m, g, variance, method="kernel")
        assert np.max(np.abs(a - heat_step_numpy(m, g, variance))) <= 1e-14
        assert np.max(np.abs(a - heat_step_dct(m, g, variance))) <= 1e-14


def test_factory_kernel_direct_call():
    j0, w = heat_weights(6, 0.7)
    m = np.arange(1.0, 7.0).reshape(1, 6, 1)
    k = make_heat_kernel(periodic=False, inner=True)
    out3 = np.empty((1, 6, 3))
    k(np.repeat(m, 3, axis=2), j0, w, out3)
    out2 = np.empty((1, 6))
    make_heat_kernel(periodic=False)(m[:, :, 0].copy(), j0, w, out2)
    ref = heat_matrix(6, 0.7) @ m[0, :, 0]
    assert np.allclose(out2[0], ref, rtol=0, atol=1e-14)
    for b in range(3):
        assert np.allclose(out3[0, :, b], ref, rtol=0, atol=1e-14)
    # a kernel far wider than the axis (offsets folded many times), banded and dense kernels
    for periodic in (False, True):
        j0, w = heat_weights(6, 9.0, periodic)
        ref = heat_matrix(6, 9.0, periodic) @ m[0, :, 0]
        out2 = np.empty((1, 6))
        make_heat_kernel(periodic)(m[:, :, 0].copy(), j0, w, out2)
        assert np.allclose(out2[0], ref, rtol=0, atol=1e-14)
        GT = np.ascontiguousarray(heat_matrix(6, 9.0, periodic).T)
        make_dense_heat_kernel(False)(m[:, :, 0].copy(), GT, out2)
        assert np.allclose(out2[0], ref, rtol=0, atol=1e-14)
        make_dense_heat_kernel(True)(np.repeat(m, 3, axis=2), GT, out3)
        assert np.allclose(out3[0, :, 2], ref, rtol=0, atol=1e-14)


def test_bad_variance_raises():
    g = wg.Grid([(0, 1)], [5])
    with pytest.raises(ValueError):
        heat_step(np.full((1, 5), 0.2), g, -1.0)
    with pytest.raises(ValueError):
        heat_step(np.full((1, 5), 0.2), g, np.nan)
    with pytest.raises(ValueError):
        heat_step(np.full((1, 5), 0.2), g, 0.1, method="fft")


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("r", [0.3, 5.0, 80.0])
def test_cycle_weights_equal_the_folded_bessel_kernel(periodic, r):
    """A kernel wider than the period comes from the cycle's eigenvalues; folding the free-lattice
    Bessel kernel over the images gives the same weights (two independent formulas)."""
    from wgflow.kernels.heat import _bessel_weights, _cycle_weights
    n = 7
    P = n if periodic else 2 * n
    j0, w = -(P // 2), _cycle_weights(P, r)
    off, k = _bessel_weights(r)
    folded = np.bincount(np.mod(off - j0, P), weights=k, minlength=P)
    # sums of O(1) terms: rounding, times the number of images folded
    np.testing.assert_allclose(w, folded, rtol=0, atol=1e-15 * max(1.0, off.size / P))
    assert np.all(w >= 0)


def test_huge_entropy_heat_step_is_the_uniform_law():
    """A variance far beyond the box (entropy 1e300) gives the uniform law on the reflecting grid,
    without a window of ~r weights."""
    j0, w = heat_weights(10, 1e300)
    assert w.size == 20 and np.all(w == w[0])
    out = heat_step(np.eye(10), wg.Grid([(0, 1)], [10]), 1e298)
    np.testing.assert_allclose(out, 0.1, rtol=1e-14)
