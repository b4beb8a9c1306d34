r"""The weighted action Laplacian of the Wasserstein metric on grid policies.

Per state, the metric tensor at masses ``m`` is the graph Laplacian over the action cells with
face weights (mobilities) ``theta(m_i, m_j)``:
``(L_theta(m) phi)_i = sum_faces theta (phi_i - phi_j) / h^2``; a potential ``phi`` moves the
masses by ``dm = L_theta(m) phi``. This module holds the mobilities (the Scharfetter-Gummel
equilibrium mobility ``m_i m_j / logmean(m_i, m_j)``, the logarithmic and the arithmetic mean),
their derivatives, and the Laplacian and its derivative in ``m`` applied to potentials.
:mod:`wgflow.hessian` builds the second-order analysis on it; :mod:`wgflow.plot` uses it to draw
eigen-fields as mass changes. Nothing here knows about MDPs.
"""
from __future__ import annotations

import numpy as np

from .errors import ValidationError
from .kernels.config import jit

__all__ = ["MOBILITIES", "MASS_FLOOR", "mobility", "mobility_numpy", "make_mobility_kernel",
           "face_mobilities", "laplacian_apply"]

MOBILITIES = ("sg", "logmean", "arithmetic")

#: masses below this (the smallest normal float64, 2.2e-308) are empty cells for the Hessian:
#: zero, or subnormal (an underflowed Gibbs tail: a handful of significant bits, 1/m overflows)
MASS_FLOOR = float(np.finfo(float).tiny)


# ---------------------------------------------------------------------------------------------
# face mobilities
# ---------------------------------------------------------------------------------------------
def _small_ratio_functions(rho, kind):
    """``f(rho)``, ``f'(rho)`` for ``rho = min/max`` in ``(0, 1]``: ``theta = M f(rho)``.

    Computed on the ratio of the smaller to the larger mass, so nothing overflows however far
    apart the masses are (``f`` and ``f'`` stay finite for every positive ``rho``); a series is
    used near ``rho = 1``.
    """
    x = rho - 1.0
    near = np.abs(x) < 1e-4
    xs = np.where(near, -0.5, x)                   # harmless value where the series is used
    lr = np.log(np.where(near, 0.5, rho))
    if kind == "sg":           # f = r log r / (r - 1)
        f = np.where(near, 1 + x / 2 - x ** 2 / 6 + x ** 3 / 12, rho * lr / xs)
        fp = np.where(near, 0.5 - x / 3 + x ** 2 / 4, (xs - lr) / xs ** 2)
    elif kind == "logmean":    # f = (r - 1) / log r
        f = np.where(near, 1 + x / 2 - x ** 2 / 12 + x ** 3 / 24, xs / lr)
        # f' = (log r - (r - 1)/r) / log(r)^2; (r - 1)/r written as 1 - 1/r with r >= 1e-300
        # (the derivative grows like 1/(r log^2 r) for vanishing r: capped, not overflowed)
        rr = np.maximum(np.where(near, 0.5, rho), 1e-300)
        fp = np.where(near, 0.5 - x / 6 + x ** 2 / 8, (lr - (1.0 - 1.0 / rr)) / lr ** 2)
    elif kind == "arithmetic":  # f = (r + 1) / 2
        f, fp = (rho + 1) / 2, np.full_like(rho, 0.5)
    else:
        raise ValidationError(f"unknown mobility {kind!r}; choose from {MOBILITIES}")
    return f, fp


def mobility_numpy(mi, mj, kind="sg"):
    """Plain-numpy twin of :func:`mobility` (same formulas, vectorized with ``np.where``)."""
    mi = np.asarray(mi, dtype=float)
    mj = np.asarray(mj, dtype=float)
    live = (mi >= MASS_FLOOR) & (mj >= MASS_FLOOR)
    big = np.where(live, np.maximum(mi, mj), 1.0)
    small = np.where(live, np.minimum(mi, mj), 1.0)
    rho = small / big
    f, fp = _small_ratio_functions(rho, kind)
    theta = np.where(live, big * f, 0.0)
    d_small = np.where(live, fp, 0.0)
    d_big = np.where(live, f - rho * fp, 0.0)
    i_small = mi <= mj
    return theta, np.where(i_small, d_small, d_big), np.where(i_small, d_big, d_small)


def _mobility_body(kind, mi, mj, floor, theta, di, dj):
    for k in range(mi.size):
        a = mi[k]
        b = mj[k]
        if a < floor or b < floor:
            theta[k] = 0.0
            di[k] = 0.0
            dj[k] = 0.0
            continue
        if a <= b:
            small, big = a, b
        else:
            small, big = b, a
        rho = small / big
        x = rho - 1.0
        if kind == 0:                                   # sg: f = r log r / (r - 1)
            if abs(x) < 1e-4:
                f = 1.0 + x / 2 - x * x / 6 + x * x * x / 12
                fp = 0.5 - x / 3 + x * x / 4
            else:
                lr = np.log(rho)
                f = rho * lr / x
                fp = (x - lr) / (x * x)
        elif kind == 1:                                 # logmean: f = (r - 1) / log r
            if abs(x) < 1e-4:
                f = 1.0 + x / 2 - x * x / 12 + x * x * x / 24
                fp = 0.5 - x / 6 + x * x / 8
            else:
                lr = np.log(rho)
                f = x / lr
                rr = rho if rho > 1e-300 else 1e-300
                fp = (lr - (1.0 - 1.0 / rr)) / (lr * lr)
        else:                                           # arithmetic
            f = (rho + 1.0) / 2.0
            fp = 0.5
        theta[k] = big * f
        if a <= b:
            di[k] = fp
            dj[k] = f - rho * fp
        else:
            di[k] = f - rho * fp
            dj[k] = fp


_MOBILITY_KERNEL: dict = {}


def make_mobility_kernel():
    """Factory of the jitted face-mobility kernel ``kernel(kind, mi, mj, floor, theta, di, dj)``
    (flat arrays; ``kind`` 0 = sg, 1 = logmean, 2 = arithmetic): one pass, no temporaries."""
    if "mobility" not in _MOBILITY_KERNEL:
        _MOBILITY_KERNEL["mobility"] = jit(_mobility_body)
    return _MOBILITY_KERNEL["mobility"]


def mobility(mi, mj, kind="sg"):
    """Face mobility ``theta(m_i, m_j)`` and its partial derivatives ``(theta, d_i, d_j)``.

    ``"sg"``: ``m_i m_j / logmean(m_i, m_j)`` (the equilibrium mobility of the SG flux);
    ``"logmean"``: the logarithmic mean (Maas); ``"arithmetic"``: ``(m_i + m_j) / 2``.
    A face with an empty cell on either side is not part of the policy's support: its mobility
    and derivatives are 0 for every kind (docs/hessian.md §1). A cell is empty when its mass is
    below :data:`MASS_FLOOR` (0, or subnormal: an underflowed Gibbs tail, whose few significant
    bits carry no information). Evaluated through the ratio of the smaller to the larger mass:
    nothing overflows however far apart the masses are (a numba kernel; :func:`mobility_numpy`
    is its numpy twin).
    """
    if kind not in MOBILITIES:
        raise ValidationError(f"unknown mobility {kind!r}; choose from {MOBILITIES}")
    mi, mj = np.broadcast_arrays(np.asarray(mi, dtype=float), np.asarray(mj, dtype=float))
    shape = mi.shape
    a = np.ascontiguousarray(mi).ravel()
    b = np.ascontiguousarray(mj).ravel()
    theta, di, dj = np.empty(a.size), np.empty(a.size), np.empty(a.size)
    make_mobility_kernel()(MOBILITIES.index(kind), a, b, MASS_FLOOR, theta, di, dj)
    return theta.reshape(shape), di.reshape(shape), dj.reshape(shape)


def _faces(shape_a, d):
    """Reshape helper: ``(outer, n, inner)`` view sizes for faces along action axis ``d``."""
    full = (-1,) + tuple(shape_a)
    outer_dims = shape_a[:d]
    return int(np.prod(outer_dims)), shape_a[d], int(np.prod(shape_a[d + 1:])), full


def _axis_arrays(a, actions, d):
    """View of ``a`` ``(nS, nA)`` or ``(nS, nA, b)`` as ``(nS*outer, n, inner, b)`` (faces along axis 1)."""
    nS = a.shape[0]
    b = a.shape[2] if a.ndim == 3 else 1
    o, n, i, _ = _faces(tuple(actions.shape), d)
    return a.reshape(nS * o, n, i, b)


def face_mobilities(masses, actions, kind="sg"):
    """Per action axis, ``(theta, d theta/d m_i, d theta/d m_j)`` on the faces (None for 1-cell axes).

    Faces touching an empty cell have mobility and derivatives 0 (they are not in the support).
    """
    out = []
    for d in range(actions.ndim):
        if actions.shape[d] < 2:
            out.append(None)
            continue
        m3 = _axis_arrays(masses, actions, d)[..., 0]
        out.append(mobility(m3[:, :-1, :], m3[:, 1:, :], kind))
    return out


def laplacian_apply(masses, phi, actions, kind="sg", faces=None):
    """``L_theta(m) phi`` per state: ``(L phi)_i = sum_faces theta (phi_i - phi_j) / h^2``.

    ``phi`` is ``(nS, nA)`` or a block ``(nS, nA, b)``; ``faces`` (from :func:`face_mobilities`)
    avoids recomputing the mobilities.
    """
    faces = face_mobilities(masses, actions, kind) if faces is None else faces
    out = np.zeros_like(phi, dtype=float)
    for d in range(actions.ndim):
        if faces[d] is None:
            continue
        p3 = _axis_arrays(phi, actions, d)
        o3 = _axis_arrays(out, actions, d)
        th = faces[d][0][..., None]
        q = th * (p3[:, :-1] - p3[:, 1:]) / actions.spacing[d] ** 2
        o3[:, :-1] += q
        o3[:, 1:] -= q
    return out


def _dtheta_apply(faces, dm, g, actions):
    """``L'(m)[dm] g``: the Laplacian with face weights ``d theta[dm]`` applied to ``g`` ``(nS, nA)``."""
    out = np.zeros_like(dm, dtype=float)
    for d in range(actions.ndim):
        if faces[d] is None:
            continue
        dm3 = _axis_arrays(dm, actions, d)
        g3, o3 = _axis_arrays(g, actions, d), _axis_arrays(out, actions, d)
        _, di, dj = faces[d]
        dth = di[..., None] * dm3[:, :-1] + dj[..., None] * dm3[:, 1:]
        q = dth * (g3[:, :-1] - g3[:, 1:]) / actions.spacing[d] ** 2
        o3[:, :-1] += q
        o3[:, 1:] -= q
    return out


def _dtheta_transpose(faces, g, phi, actions):
    """Gradient in ``m`` of ``g^T L(m) phi = sum_faces theta (g_i - g_j)(phi_i - phi_j) / h^2``."""
    out = np.zeros_like(phi, dtype=float)
    for d in range(actions.ndim):
        if faces[d] is None:
            continue
        g3, p3, o3 = _axis_arrays(g, actions, d), _axis_arrays(phi, actions, d), _axis_arrays(out, actions, d)
        _, di, dj = faces[d]
        prod = (g3[:, :-1] - g3[:, 1:]) * (p3[:, :-1] - p3[:, 1:]) / actions.spacing[d] ** 2
        o3[:, :-1] += di[..., None] * prod
        o3[:, 1:] += dj[..., None] * prod
    return out
