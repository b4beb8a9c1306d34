"""Gaussian stencils on a periodic axis with a noise wider than the period."""
from __future__ import annotations

import numpy as np
import pytest

import wgflow as wg
from wgflow import Grid


def _dense(idx, w, n):
    out = np.zeros((idx.shape[0], n))
    for r in range(idx.shape[0]):
        np.add.at(out[r], idx[r], w[r])
    return out


def _wrapped_by_fourier(c, m, sigma, L, q_max=60):
    """The wrapped normal density at ``c`` by Poisson summation (the dual of the sum over images):
    ``(1 + 2 sum_q exp(-2 pi^2 q^2 sigma^2 / L^2) cos(2 pi q (c - m) / L)) / L``, normalized
    over the cells. Its series converges for sigma >~ L / 10 with q_max = 60."""
    q = np.arange(1, q_max + 1)
    coef = np.exp(-2 * np.pi ** 2 * q ** 2 * (sigma / L) ** 2)
    phase = 2 * np.pi * (c[None, :, None] - m[:, None, None]) * q[None, None, :] / L
    f = 1.0 + 2.0 * np.sum(coef * np.cos(phase), axis=2)
    return f / f.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("sigma", [0.15, 0.4, 1.0, 1.4, 2.0, 1e6])
def test_wide_noise_on_a_periodic_axis_is_the_wrapped_gaussian_on_n_cells(sigma):
    n = 20
    g = Grid([(0, 1)], [n], periodic=True)
    m = np.array([0.33, 0.8, -1.27, 5.5])            # means outside [0, 1) wrap too
    idx, w, dw = g.gaussian_stencil(m, sigma, 0, cutoff=12.0)
    # memory stays bounded: one weight per cell of the axis, whatever sigma is (a window of
    # cutoff * sigma / h cells held 2.4e8 entries per point for sigma = 1e6)
    assert idx.shape == w.shape == dw.shape == (m.size, n)
    # against the wrapped normal computed by Poisson summation (independent of the sum over
    # images); the cutoff 12 leaves out images below exp(-72) relative density, so the
    # difference is rounding (1e-16 relative on weights ~ 1 / 20)
    np.testing.assert_allclose(_dense(idx, w, n), _wrapped_by_fourier(g.axes[0], m, sigma, 1.0),
                               rtol=1e-13, atol=0)
    # derivative w.r.t. the mean: central differences (step 1e-6, truncation ~ eps^2 / sigma^3,
    # rounding ~ 1e-16 / 1e-6 on weights of size 1 / 20)
    eps = 1e-6
    ip, wp, _ = g.gaussian_stencil(m + eps, sigma, 0, cutoff=12.0)
    im, wm, _ = g.gaussian_stencil(m - eps, sigma, 0, cutoff=12.0)
    fd = (_dense(ip, wp, n) - _dense(im, wm, n)) / (2 * eps)
    np.testing.assert_allclose(_dense(idx, dw, n), fd, rtol=0, atol=1e-9)
    np.testing.assert_allclose(dw.sum(axis=1), 0.0, atol=1e-14)      # mass is conserved


def test_pendulum_with_huge_angle_noise_is_uniform_and_small():
    # noise 1e6 on the periodic angle (and on the bounded speed): the next state is uniform
    # over the grid. The speed axis (bounded, clamped to it) keeps relative density differences
    # of (16 / 1e6)^2 / 2 = 1.3e-10 across its span; the angle axis none (2 pi^2 sigma^2 / L^2
    # > 40 makes it uniform to rounding).
    mdp = wg.problems.get("pendulum", n_theta=9, n_omega=5, n_actions=3, noise=1e6)
    nS = mdp.n_states
    np.testing.assert_allclose(mdp.P.toarray(), 1.0 / nS, rtol=1e-9)
    assert mdp.P.nnz == mdp.P.shape[0] * nS
    # off-grid evaluation (the flows' path) uses the same stencils, with derivatives
    ev = mdp.model.stencil(mdp.states.centers[:3], mdp.actions.centers)
    assert ev[0].shape[1] <= 9 * (2 * 5 + 1)
    # the angle is uniform to rounding: its weights do not move with the mean (the bounded
    # speed axis keeps a derivative of order w * span / sigma^2 ~ 1e-12)
    np.testing.assert_array_equal(ev[2][:, :, 0], 0.0)
