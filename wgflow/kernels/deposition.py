r"""Push-forward of masses by multilinear (cloud-in-cell) deposition on an action grid.

Given, per state ``s``, point masses ``w[s, p]`` at points ``y[s, p]`` (the images of the cell
centres under a transport map, or particles), the push-forward law is put on the cell-centred
grid by multilinear weights: along axis ``d`` a point with ``u = (y - lo)/dx - 1/2 = j + f``
(``0 <= f < 1``) gives ``1 - f`` to centre ``j`` and ``f`` to centre ``j + 1``; the weights of
all ``2^da`` corners are products over axes. Properties (tested):

* **mass**: weights are non-negative and sum to 1 per point, so total mass is conserved to
  rounding and positivity holds;
* **first moment**: ``(1 - f) x_j + f x_{j+1} = y``, so the mean is exact for points inside the
  hull of the centres ``[x_0, x_{n-1}]`` (points beyond it are put on the outermost cell: the
  caller clamps first if it wants a documented rule); periodic axes wrap around;
* **second moment**: deposition *adds* variance ``f (1 - f) dx^2`` per point and axis (at most
  ``dx^2/4``; ``dx^2/6`` on average over ``f``) -- the numerical diffusion of the scheme.

:func:`make_deposition_kernel` bakes the grid's dimension into a numba kernel (the grid's
numbers are arguments: one compilation per dimension); :func:`push_forward` is the convenient
entry point, :func:`push_forward_numpy` its plain-numpy twin (same arithmetic, same summation
order).
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from .config import jit

__all__ = ["make_deposition_kernel", "push_forward", "push_forward_numpy", "deposition_variance"]


def _grid_constants(grid):
    lo = np.ascontiguousarray(grid.bounds[:, 0], dtype=float)
    dx = np.ascontiguousarray(grid.spacing, dtype=float)
    shape = np.asarray(grid.shape, dtype=np.int64)
    per = np.asarray(grid.periodic, dtype=np.bool_)
    strides = np.asarray(grid.strides, dtype=np.int64)
    return lo, dx, shape, per, strides


def make_deposition_kernel(ndim: int):
    """Kernel ``deposit(w, y, lo, inv_dx, shape, periodic, strides, out)`` for ``ndim``-D grids.

    The dimension (the number of corners, ``2**ndim``) is baked in; the grid's numbers (origin
    ``lo``, inverse spacing ``inv_dx``, ``shape``, ``periodic`` flags, flat ``strides``) are
    arguments, so one compilation serves every grid of that dimension. ``w`` ``(nS, nP)`` point
    masses, ``y`` ``(nS, nP, da)`` points, ``out`` ``(nS, grid.size)`` is *incremented* by the
    deposited masses (zero it first for a plain push-forward).
    """
    da = int(ndim)
    ncorner = 1 << da

    @jit
    def deposit(w, y, lo, inv_dx, shape, periodic, strides, out):
        nS, nP = w.shape
        j0 = np.empty(da, dtype=np.int64)
        j1 = np.empty(da, dtype=np.int64)
        f = np.empty(da)
        for s in range(nS):
            for p in range(nP):
                ws = w[s, p]
                if ws == 0.0:
                    continue
                for d in range(da):
                    n = shape[d]
                    u = (y[s, p, d] - lo[d]) * inv_dx[d] - 0.5
                    if periodic[d]:
                        u = u - n * np.floor(u / n)
                        j = int(np.floor(u))
                        fr = u - j
                        if j >= n:          # u rounded up to n
                            j = 0
                            fr = 0.0
                        j0[d] = j
                        j1[d] = j + 1 if j + 1 < n else 0
                        f[d] = fr
                    else:
                        if u <= 0.0 or n == 1:
                            j0[d] = 0
                            j1[d] = 1 if n > 1 else 0
                            f[d] = 0.0
                        elif u >= n - 1:
                            j0[d] = n - 2
                            j1[d] = n - 1
                            f[d] = 1.0
                        else:
                            j = int(np.floor(u))
                            j0[d] = j
                            j1[d] = j + 1
                            f[d] = u - j
                for c in range(ncorner):
                    wt = ws
                    idx = 0
                    for d in range(da):
                        if (c >> (da - 1 - d)) & 1:
                            wt *= f[d]
                            idx += j1[d] * strides[d]
                        else:
                            wt *= 1.0 - f[d]
                            idx += j0[d] * strides[d]
                    out[s, idx] += wt

    return deposit


_KERNELS: dict = {}


def _kernel(grid):
    key = grid.ndim
    if key not in _KERNELS:
        _KERNELS[key] = make_deposition_kernel(key)
    return _KERNELS[key]


def _prepare(masses, points, grid):
    w = np.ascontiguousarray(masses, dtype=float)
    y = np.asarray(points, dtype=float)
    if y.ndim == 2 and grid.ndim == 1:
        y = y[:, :, None]
    y = np.ascontiguousarray(y)
    if w.ndim != 2 or y.shape != w.shape + (grid.ndim,):
        raise ValidationError(f"push-forward needs masses (nS, nP) and points (nS, nP, {grid.ndim}); "
                         f"got {w.shape} and {np.shape(points)}")
    if not np.all(np.isfinite(y)):
        raise ValidationError("push-forward points contain NaN or inf")
    return w, y


def push_forward(masses, points, grid) -> np.ndarray:
    """Masses ``(nS, grid.size)`` of the laws ``sum_p masses[s, p] delta_{points[s, p]}`` (numba)."""
    w, y = _prepare(masses, points, grid)
    out = np.zeros((w.shape[0], grid.size))
    lo, dx, shape, per, strides = _grid_constants(grid)
    _kernel(grid)(w, y, lo, 1.0 / dx, shape, per, strides, out)
    return out


def _stencils_numpy(y, grid):
    """Per axis ``(j0, j1, f)`` arrays of the points ``y`` ``(..., da)`` (same rule as the kernel)."""
    lo, dx, shape, per, _ = _grid_constants(grid)
    out = []
    for d in range(grid.ndim):
        n = int(shape[d])
        u = (y[..., d] - lo[d]) * (1.0 / dx[d]) - 0.5
        if per[d]:
            u = u - n * np.floor(u / n)
            j = np.floor(u).astype(np.int64)
            f = u - j
            wrap = j >= n
            j = np.where(wrap, 0, j)
            f = np.where(wrap, 0.0, f)
            j1 = np.where(j + 1 < n, j + 1, 0)
        elif n == 1:
            j = np.zeros(u.shape, dtype=np.int64)
            j1, f = j, np.zeros(u.shape)
        else:
            low, high = u <= 0.0, u >= n - 1
            uc = np.where(low | high, 0.0, u)
            j = np.floor(uc).astype(np.int64)
            f = uc - j
            j = np.where(low, 0, np.where(high, n - 2, j))
            f = np.where(low, 0.0, np.where(high, 1.0, f))
            j1 = j + 1
        out.append((j, j1, f))
    return out


def push_forward_numpy(masses, points, grid) -> np.ndarray:
    """Plain-numpy twin of :func:`push_forward` (same weights, same summation order)."""
    w, y = _prepare(masses, points, grid)
    nS, nP = w.shape
    st = _stencils_numpy(y, grid)
    strides = grid.strides
    da = grid.ndim
    idx_c, wt_c = [], []
    for c in range(1 << da):
        wt = w.copy()
        idx = np.zeros((nS, nP), dtype=np.int64)
        for d in range(da):
            j0, j1, f = st[d]
            if (c >> (da - 1 - d)) & 1:
                wt = wt * f
                idx = idx + j1 * strides[d]
            else:
                wt = wt * (1.0 - f)
                idx = idx + j0 * strides[d]
        idx_c.append(idx)
        wt_c.append(wt)
    idx = np.stack(idx_c, axis=-1) + (np.arange(nS) * grid.size)[:, None, None]
    wt = np.stack(wt_c, axis=-1)
    wt = np.where(w[:, :, None] == 0.0, 0.0, wt)
    out = np.bincount(idx.ravel(), weights=wt.ravel(), minlength=nS * grid.size)
    return out.reshape(nS, grid.size)


def deposition_variance(masses, points, grid) -> np.ndarray:
    """Variance added by depositing, per state and axis: ``sum_p w_p f_p (1 - f_p) dx^2``
    ``(nS, da)`` (exact for points inside the hull of the centres)."""
    w, y = _prepare(masses, points, grid)
    st = _stencils_numpy(y, grid)
    return np.stack([np.sum(w * f * (1.0 - f), axis=1) * grid.spacing[d] ** 2
                     for d, (_, _, f) in enumerate(st)], axis=1)
