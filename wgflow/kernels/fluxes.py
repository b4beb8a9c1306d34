r"""Scharfetter--Gummel fluxes of the policy flow on an action grid.

Per state, the semi-discrete flow ``dm_i/dt = -sum_faces F_{i->j}`` uses on the face between
neighbouring cells ``i -> j`` (spacing ``h`` along the face's axis)

.. math::

    F_{i\to j} = \frac{\tau}{h^2}\left[B(z)\, m_i - B(-z)\, m_j\right],\qquad
    z = \frac{Q_j - Q_i}{\tau},\qquad B(z) = \frac{z}{e^z - 1},

and, for ``tau = 0``, its limit, the upwind flux ``F = (max(Q_i - Q_j, 0) m_i - max(Q_j - Q_i, 0) m_j) / h^2``.
The flux vanishes exactly at the discrete Gibbs state ``m ~ exp(-Q/tau)``, is linear in ``m``
with an M-matrix structure (so explicit Euler keeps masses non-negative when
``dt * outflow_rate <= 1``), and equals ``-theta * (psi_j - psi_i) / h^2`` with ``psi = Q + tau log m``
and a mobility ``theta >= 0``: the scheme dissipates the discrete energy exactly.

Masses and Q are viewed as 3-D arrays ``(outer, n, inner)`` with the faces along the middle axis,
so one kernel serves every axis of a multi-D action grid.
"""
from __future__ import annotations

import numpy as np

from .config import jit


@jit
def bernoulli(z):
    """``B(z) = z / (exp(z) - 1)`` with ``B(0) = 1``, stable for all ``z``."""
    if abs(z) < 1e-10:
        return 1.0 - 0.5 * z
    if z > 700.0:
        return z * np.exp(-z)
    return z / np.expm1(z)


@jit
def sg_face_coefficients(dq, tau, inv_h2):
    """``(cf, cb)`` of one face: ``F = cf m_i - cb m_j`` for ``dq = Q_j - Q_i``.

    ``tau B(z)`` is evaluated at ``|z|`` (small, accurate) and ``B(-z) = B(z) + z`` gives the
    other side: one exponential per face and no cancellation; ``tau = 0`` is the upwind limit.
    """
    if tau > 0.0:
        tb = tau * bernoulli(abs(dq) / tau)
        return (tb + max(-dq, 0.0)) * inv_h2, (tb + max(dq, 0.0)) * inv_h2
    return max(-dq, 0.0) * inv_h2, max(dq, 0.0) * inv_h2


def make_sg_flux(spacing: float):
    """Kernel ``flux(m, q, tau, F, rate)`` for faces of spacing ``spacing`` baked in.

    ``m, q`` are ``(outer, n, inner)``; ``F`` ``(outer, n-1, inner)`` receives the fluxes and
    ``rate`` ``(outer, n, inner)`` is incremented by each cell's outflow coefficient (the CFL
    rate: explicit Euler keeps positivity when ``dt * rate <= 1``).
    """
    inv_h2 = 1.0 / (spacing * spacing)

    @jit
    def flux(m, q, tau, F, rate):
        A, n, B = m.shape
        for i in range(A):
            for k in range(n - 1):
                for j in range(B):
                    cf, cb = sg_face_coefficients(q[i, k + 1, j] - q[i, k, j], tau, inv_h2)
                    F[i, k, j] = cf * m[i, k, j] - cb * m[i, k + 1, j]
                    rate[i, k, j] += cf
                    rate[i, k + 1, j] += cb
        # returns nothing: cached closures returning arrays have tripped numba's runtime

    return flux


def _exp_neg(z):
    with np.errstate(under="ignore"):
        return np.exp(-z)


def sg_flux_numpy(m, q, tau, spacing):
    """Plain-numpy twin of :func:`make_sg_flux`: returns ``(F, rate)``."""
    dq = q[:, 1:, :] - q[:, :-1, :]
    inv_h2 = 1.0 / (spacing * spacing)
    if tau > 0:
        z = np.abs(dq) / tau
        small = z < 1e-10
        big = z > 700.0
        safe = np.where(small | big, 1.0, z)           # keeps expm1 finite and nonzero
        tb = tau * np.where(small, 1.0 - 0.5 * z,
                            np.where(big, z * _exp_neg(np.maximum(z, 700.0)), safe / np.expm1(safe)))
        cf = (tb + np.maximum(-dq, 0.0)) * inv_h2         # B(-z) = B(z) + z
        cb = (tb + np.maximum(dq, 0.0)) * inv_h2
    else:
        cf, cb = np.maximum(-dq, 0.0) * inv_h2, np.maximum(dq, 0.0) * inv_h2
    F = cf * m[:, :-1, :] - cb * m[:, 1:, :]
    rate = np.zeros_like(m)
    rate[:, :-1, :] += cf
    rate[:, 1:, :] += cb
    return F, rate


_FLUX_KERNELS: dict = {}


def sg_flux(m, q, tau, spacing):
    """Numba SG fluxes: returns ``(F, rate)`` for 3-D views ``(outer, n, inner)``."""
    key = float(spacing)
    if key not in _FLUX_KERNELS:
        _FLUX_KERNELS[key] = make_sg_flux(key)
    F = np.empty((m.shape[0], m.shape[1] - 1, m.shape[2]))
    rate = np.zeros(m.shape)
    _FLUX_KERNELS[key](np.ascontiguousarray(m), np.ascontiguousarray(q), float(tau), F, rate)
    return F, rate


# ---------------------------------------------------------------------------------------------
# frozen Q: coefficients once, then many cheap explicit steps (Fokker--Planck with a fixed potential)
# ---------------------------------------------------------------------------------------------
@jit
def sg_coefficients(q, tau, inv_h2, cf, cb):
    """Face coefficients ``F = cf m_i - cb m_j`` of the SG flux for frozen ``q`` ``(outer, n, inner)``."""
    A, n, B = q.shape
    for i in range(A):
        for k in range(n - 1):
            for j in range(B):
                cf[i, k, j], cb[i, k, j] = sg_face_coefficients(q[i, k + 1, j] - q[i, k, j], tau, inv_h2)


@jit
def sg_euler_frozen(m, cf, cb, dt, n_steps):
    """``n_steps`` explicit Euler steps of ``dm/dt = -div F`` with frozen coefficients, in place.

    One fused pass over the faces per step (flux and divergence together); the old value of the
    right cell is carried along the line, so no copy of ``m`` is needed.
    """
    A, n, B = m.shape
    for _ in range(n_steps):
        for i in range(A):
            for j in range(B):
                left = m[i, 0, j]
                for k in range(n - 1):
                    right = m[i, k + 1, j]
                    f = dt * (cf[i, k, j] * left - cb[i, k, j] * right)
                    m[i, k, j] -= f
                    m[i, k + 1, j] = right + f
                    left = right


def sg_frozen_steps(m, q, tau, spacing, dt, n_steps):
    """Masses after ``n_steps`` explicit SG steps of size ``dt`` with a frozen potential ``q``.

    ``m`` and ``q`` are ``(outer, n, inner)`` (faces along the middle axis). The coefficients
    (one exponential per face) are computed once; each step then costs one multiply-add per face.
    Positivity requires ``dt * rate <= 1`` (see :func:`sg_flux`).
    """
    m = np.array(m, dtype=float, copy=True, order="C")
    q = np.ascontiguousarray(q, dtype=float)
    cf = np.empty((q.shape[0], q.shape[1] - 1, q.shape[2]))
    cb = np.empty_like(cf)
    sg_coefficients(q, float(tau), 1.0 / (spacing * spacing), cf, cb)
    sg_euler_frozen(m, cf, cb, float(dt), int(n_steps))
    return m


def sg_frozen_steps_numpy(m, q, tau, spacing, dt, n_steps):
    """Plain-numpy twin of :func:`sg_frozen_steps`."""
    m = np.array(m, dtype=float, copy=True)
    for _ in range(int(n_steps)):
        F, _ = sg_flux_numpy(m, q, tau, spacing)
        m[:, :-1, :] -= dt * F
        m[:, 1:, :] += dt * F
    return m
