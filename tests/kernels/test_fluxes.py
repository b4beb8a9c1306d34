"""Scharfetter--Gummel flux kernel (wgflow.kernels.fluxes): numba kernel vs numpy twin, Gibbs
stationarity, and the gradient structure F = -theta * dpsi / h^2 with theta >= 0 (docs/design.md §3).
"""
from __future__ import annotations

import numpy as np
import pytest

from wgflow.kernels.fluxes import bernoulli, make_sg_flux, sg_flux, sg_flux_numpy

SPACING = 0.1


def _state(rng, shape=(4, 13, 3), q_scale=1.0, positive=True):
    m = rng.random(shape) + (0.01 if positive else 0.0)
    q = q_scale * rng.standard_normal(shape)
    return m, q


def _one_sided(m, q, tau, h):
    """Magnitude of the two one-sided parts |cf m_i| + |cb m_j| of each face flux (error scale)."""
    F, rate = sg_flux_numpy(m, q, tau, h)
    dq = q[:, 1:, :] - q[:, :-1, :]
    if tau > 0:
        from scipy.special import exprel
        z = np.abs(dq) / tau
        tb = tau / exprel(np.minimum(z, 700.0)) * np.where(z > 700.0, 0.0, 1.0)
    else:
        tb = 0.0 * dq
    cf = (tb + np.maximum(-dq, 0.0)) / h ** 2
    cb = (tb + np.maximum(dq, 0.0)) / h ** 2
    return cf * m[:, :-1, :] + cb * m[:, 1:, :]


# --------------------------------------------------------------------------- kernel == twin
@pytest.mark.parametrize("tau, q_scale", [(0.0, 1.0), (0.3, 1.0), (0.05, 2.0), (2.0, 0.5)],
                         ids=["upwind", "moderate", "sharp", "diffusive"])
def test_kernel_equals_numpy_twin(rng, tau, q_scale):
    m, q = _state(rng, q_scale=q_scale)
    F1, r1 = sg_flux(m, q, tau, SPACING)
    F2, r2 = sg_flux_numpy(m, q, tau, SPACING)
    assert F1.shape == (4, 12, 3) and r1.shape == m.shape
    np.testing.assert_allclose(F1, F2, rtol=1e-14, atol=0.0)
    np.testing.assert_allclose(r1, r2, rtol=1e-14, atol=0.0)
    assert np.all(r1 >= 0.0)


@pytest.mark.parametrize("tau, q_scale", [(1e-3, 1e3), (1e-8, 10.0), (1e-12, 1e3), (1e-3, 1e-9)],
                         ids=["z~1e6", "z~1e9", "z~1e15", "z~1e-6"])
def test_kernel_equals_twin_for_extreme_ratios_without_fp_errors(rng, tau, q_scale):
    # conftest turns overflow / invalid / divide into FloatingPointError: the twin must not
    # produce any, and neither result may hold NaN/inf.
    m, q = _state(rng, q_scale=q_scale)
    F1, r1 = sg_flux(m, q, tau, SPACING)
    F2, r2 = sg_flux_numpy(m, q, tau, SPACING)
    for a in (F1, r1, F2, r2):
        assert np.all(np.isfinite(a))
    np.testing.assert_allclose(F1, F2, rtol=1e-14, atol=0.0)
    # the twin returns a sub-normal (<1e-300) where the kernel's Bernoulli underflows to 0: see
    # test_twin_bernoulli_underflows_like_the_kernel; everything representable agrees to 1e-14
    np.testing.assert_allclose(r1, r2, rtol=1e-14, atol=1e-300)
    # a sharp potential (z >> 1) makes the flux pure upwind
    if q_scale / tau > 1e5:
        up1, _ = sg_flux(m, q, 0.0, SPACING)
        np.testing.assert_allclose(F1, up1, rtol=1e-12, atol=0.0)


def test_twin_bernoulli_underflows_like_the_kernel():
    # z = |dq| / tau = 1e6: B(z) = z exp(-z) is 0 in float64, and the kernel says so
    m = np.ones((1, 2, 1))
    q = np.array([0.0, 1e3]).reshape(1, 2, 1)
    _, r1 = sg_flux(m, q, 1e-3, 1.0)
    assert r1[0, 0, 0] == 0.0
    _, r2 = sg_flux_numpy(m, q, 1e-3, 1.0)
    np.testing.assert_array_equal(r2, r1)


def test_bernoulli_scalar_values():
    assert bernoulli(0.0) == 1.0
    assert bernoulli(1e-12) == pytest.approx(1.0 - 0.5e-12, rel=1e-15)
    assert bernoulli(1.0) == pytest.approx(1.0 / (np.e - 1.0), rel=1e-15)
    assert bernoulli(-1.0) == pytest.approx(np.e / (np.e - 1.0), rel=1e-15)
    assert bernoulli(-1.0) == pytest.approx(bernoulli(1.0) + 1.0, rel=1e-15)   # B(-z) = B(z) + z
    assert bernoulli(800.0) == 800.0 * np.exp(-800.0)
    assert bernoulli(-800.0) == pytest.approx(800.0, rel=1e-15)
    assert np.isfinite(bernoulli(1e300)) and np.isfinite(bernoulli(-1e300))


def test_factory_kernel_fills_F_and_increments_rate(rng):
    m, q = _state(rng, shape=(2, 7, 1))
    kern = make_sg_flux(0.25)
    F = np.empty((2, 6, 1))
    rate = np.full(m.shape, 3.0)          # incremented, not overwritten (one call per axis)
    kern(m, q, 0.4, F, rate)
    F2, r2 = sg_flux_numpy(m, q, 0.4, 0.25)
    np.testing.assert_allclose(F, F2, rtol=1e-14, atol=0.0)
    np.testing.assert_allclose(rate, r2 + 3.0, rtol=1e-14, atol=0.0)


def test_non_contiguous_views(rng):
    m, q = _state(rng, shape=(3, 9, 4))
    mv, qv = m[:, :, ::2], q[:, :, ::2]
    F1, r1 = sg_flux(mv, qv, 0.2, SPACING)
    F2, r2 = sg_flux_numpy(np.ascontiguousarray(mv), np.ascontiguousarray(qv), 0.2, SPACING)
    np.testing.assert_allclose(F1, F2, rtol=1e-14, atol=0.0)
    np.testing.assert_allclose(r1, r2, rtol=1e-14, atol=0.0)


# --------------------------------------------------------------------------- Gibbs stationarity
@pytest.mark.parametrize("tau, q_scale", [(0.05, 1.0), (0.3, 2.0), (1.0, 0.3), (0.01, 0.2)])
@pytest.mark.parametrize("kernel", ["numba", "numpy"])
def test_flux_vanishes_at_discrete_gibbs_state(rng, tau, q_scale, kernel):
    _, q = _state(rng, q_scale=q_scale)
    m = np.exp(-(q - q.min(axis=1, keepdims=True)) / tau)      # per (outer, inner) line
    m /= m.sum(axis=1, keepdims=True)
    if kernel == "numba":
        F, rate = sg_flux(m, q, tau, SPACING)
    else:
        F, rate = sg_flux_numpy(m, q, tau, SPACING)
    scale = _one_sided(m, q, tau, SPACING)
    assert np.all(np.abs(F) <= 1e-13 * scale + 1e-300)
    # any other (e.g. uniform) state is not stationary
    F2, _ = sg_flux(np.full_like(m, 1.0 / m.shape[1]), q, tau, SPACING)
    assert np.max(np.abs(F2)) > 1e-2


def test_upwind_flux_vanishes_for_mass_at_local_minima():
    # tau = 0: mass sitting on cells that are local minima of Q does not move
    q = np.array([3.0, 1.0, 2.0, 0.5, 4.0]).reshape(1, 5, 1)
    m = np.array([0.0, 0.4, 0.0, 0.6, 0.0]).reshape(1, 5, 1)
    F, rate = sg_flux(m, q, 0.0, SPACING)
    np.testing.assert_array_equal(F, 0.0)
    # ... and mass on a slope flows downhill
    m2 = np.array([0.0, 0.0, 1.0, 0.0, 0.0]).reshape(1, 5, 1)
    F2, _ = sg_flux(m2, q, 0.0, SPACING)
    assert F2[0, 1, 0] < 0.0 < F2[0, 2, 0]       # 2 -> 1 (left) and 2 -> 3 (right): both downhill


# --------------------------------------------------------------------------- gradient structure
@pytest.mark.parametrize("tau, q_scale", [(0.0, 1.0), (0.02, 1.0), (0.3, 1.0), (3.0, 0.2)])
def test_flux_is_minus_mobility_times_potential_difference(rng, tau, q_scale):
    m, q = _state(rng, shape=(6, 15, 2), q_scale=q_scale)
    F, _ = sg_flux(m, q, tau, SPACING)
    psi = q + tau * np.log(m) if tau > 0 else q
    dpsi = psi[:, 1:, :] - psi[:, :-1, :]
    # -F * dpsi >= 0 face by face (the discrete energy dissipates on every face), up to rounding:
    # F = cf m_i - cb m_j is a difference, known to ~4 ulps of the outflows (rate * m) of its two
    # cells; dpsi to ~4 ulps of |psi|. The product's rounding is bounded accordingly.
    _, rate = sg_flux(m, q, tau, SPACING)
    eps = np.finfo(float).eps
    dF = 4 * eps * (rate[:, :-1, :] * m[:, :-1, :] + rate[:, 1:, :] * m[:, 1:, :])
    dP = 4 * eps * np.abs(psi).max()
    assert np.all(-F * dpsi >= -(np.abs(F) * dP + dF * np.abs(dpsi) + dF * dP))
    # theta = -F h^2 / dpsi is the SG mobility tau B(z) m_i (exp(dpsi/tau) - 1) / dpsi >= 0
    nz = np.abs(dpsi) > 1e-8
    theta = -F[nz] * SPACING ** 2 / dpsi[nz]
    assert np.all(theta >= 0.0)
    if tau > 0:
        dq = (q[:, 1:, :] - q[:, :-1, :])[nz]
        mi = m[:, :-1, :][nz]
        bz = np.array([bernoulli(v) for v in dq / tau])
        theta_formula = tau * bz * mi * np.expm1(dpsi[nz] / tau) / dpsi[nz]
        np.testing.assert_allclose(theta, theta_formula, rtol=1e-9)


def test_zero_mass_cells_keep_positive_outflow_structure(rng):
    # with some empty cells the flux still points out of occupied cells only (positivity)
    m, q = _state(rng, shape=(3, 11, 1), positive=False)
    m[:, ::3, :] = 0.0
    F, rate = sg_flux(m, q, 0.1, SPACING)
    dm = np.zeros_like(m)
    dm[:, :-1, :] -= F
    dm[:, 1:, :] += F
    # outflow of a cell is bounded by rate * m: explicit Euler with dt * rate <= 1 keeps m >= 0
    dt = 1.0 / rate.max()
    assert np.all(m + dt * dm >= -1e-15)
    np.testing.assert_allclose(dm.sum(axis=1), 0.0, atol=1e-12 * np.abs(F).max())


# ---------------------------------------------------------------------------------------------
# frozen potential: coefficients once, fused explicit steps
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.0, 0.05, 0.7])
def test_frozen_steps_equal_numpy_twin(rng, tau):
    from wgflow.kernels.fluxes import sg_frozen_steps, sg_frozen_steps_numpy
    m = rng.random((6, 11, 3)) + 0.1
    q = 2.0 * rng.standard_normal((6, 11, 3))
    a = sg_frozen_steps(m, q, tau, 0.2, 1e-4, 25)
    b = sg_frozen_steps_numpy(m, q, tau, 0.2, 1e-4, 25)
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(a.sum(axis=1), m.sum(axis=1), rtol=1e-13)


def test_frozen_steps_relax_to_the_gibbs_state(rng):
    from wgflow.kernels.fluxes import sg_frozen_steps
    from wgflow.policy import gibbs_masses
    q = rng.standard_normal((4, 15))
    tau, h = 0.8, 0.1
    m0 = np.full((4, 15), 1.0 / 15)
    # dt below the CFL bound; long enough for the slowest mode of this small problem
    m = sg_frozen_steps(m0[:, :, None], q[:, :, None], tau, h, 2e-3, 20000)[:, :, 0]
    np.testing.assert_allclose(m, gibbs_masses(q, tau), atol=1e-10)
