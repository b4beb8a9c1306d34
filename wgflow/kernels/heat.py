r"""Exact heat semigroup of the discrete Laplacian on a cell-centred action grid.

The WPPG heat step convolves each state's action law with ``N(0, 2 tau h I)``. On the grid we
apply the *exact* semigroup ``exp(t L)`` of the finite-volume Laplacian ``L`` (spacing ``dx``),
axis by axis (the axis Laplacians commute, so this is exact in multi-D too), with reflecting
(zero-flux, Neumann) boundaries -- or wrap-around on periodic axes. With ``r = tau t / dx^2``:

* On the infinite lattice ``exp(t L)`` is the law of a continuous-time random walk with jumps
  ``+-dx`` at rate ``tau / dx^2`` each way: its kernel is
  ``K_j = exp(-2 r) I_j(2 r)`` (modified Bessel function), with ``sum_j K_j = 1``,
  ``sum_j j K_j = 0`` and ``sum_j (j dx)^2 K_j = 2 r dx^2 = 2 tau t`` -- the variance added is
  **exactly** ``2 tau t``; only the higher cumulants differ from the Gaussian's
  (fourth cumulant ``2 tau t dx^2``, excess kurtosis ``dx^2 / (2 tau t)``).
* Reflecting boundaries (ghost cells ``m_{-1} = m_0``, ``m_n = m_{n-1}``) are the method of
  images: the even ``2n``-periodic extension of the masses evolves by the free semigroup, so
  the folded kernel sends mass from cell ``i`` at offset ``j`` to ``fold(i + j)`` where ``fold``
  reduces modulo ``2n`` and reflects ``p >= n`` to ``2n - 1 - p``. A periodic axis reduces
  modulo ``n``. Every unit of mass lands in the grid, so mass is conserved to rounding, and the
  weights are non-negative, so positivity holds.
* Equivalently (the reference used by the tests) the Neumann semigroup is diagonal in the
  DCT-II basis, eigenvalues ``-4 sin^2(pi k / 2n) / dx^2``.

The kernel folds the Bessel weights modulo the period once (:func:`heat_weights`), applies the
in-axis offsets as contiguous axpy's and only folds the rest, so a step costs
``O(n * min(width, 2n))`` per grid line (``width ~ 33 sqrt(2 r)`` cells, weights below ``1e-60``
of the centre dropped). The time step enters only through the weights and the axis length
through the array: one compiled kernel per boundary rule and layout serves every grid and
every step size. When the kernel is as wide as a short axis (small action grids) the dense
folded matrix is applied instead (:func:`make_dense_heat_kernel`, ``n^2`` vectorized
multiply-adds per line); when it is wide on a long axis (``r`` large: fine grids, long steps)
the DCT costs ``O(n log n)`` and :func:`heat_step` with ``method="auto"`` switches to it.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ive

from ..errors import ValidationError
from .config import jit

__all__ = ["heat_weights", "make_heat_kernel", "make_dense_heat_kernel", "heat_step",
           "heat_step_numpy", "heat_step_dct", "heat_matrix"]

#: relative size below which Bessel weights are dropped (far below double rounding of the mass)
_TAIL = 1e-60


#: a Bessel window wider than this many periods is replaced by the cycle's spectral weights (the
#: folded Bessel sum is the more accurate of the two: ~1e-16 per weight against ~1e-16 P)
_CYCLE_FACTOR = 64


def _bessel_width(r: float) -> int:
    """Half-width of the Bessel window of :func:`_bessel_weights` before its tail is cut."""
    return int(np.ceil(2.0 * r + 40.0 * np.sqrt(r + 1.0) + 40.0))


@lru_cache(maxsize=256)
def _cycle_weights(P: int, r: float) -> np.ndarray:
    """Weights of ``exp(r L)`` on the cycle of ``P`` cells for offsets ``-(P//2) .. P - 1 - P//2``.

    ``w_j = (1/P) sum_k exp(-4 r sin^2(pi k / P)) cos(2 pi k j / P)``: the free-lattice kernel
    summed over the images ``j + P Z`` (what :func:`heat_weights` folds). Rounding noise
    (``~1e-17``) below zero is set to 0 and the weights are scaled to sum 1 (the exact kernel's
    mass), so the heat step stays positive and conservative.
    """
    k = np.arange(P)
    lam = np.exp(-4.0 * r * np.sin(np.pi * k / P) ** 2)
    w = np.real(np.fft.ifft(lam))
    w = np.roll(w, P // 2)                               # offsets -(P//2) .. P - 1 - P//2
    np.maximum(w, 0.0, out=w)
    w /= w.sum()
    w.setflags(write=False)
    return w


@lru_cache(maxsize=256)
def _bessel_weights(r: float):
    """Free-lattice weights ``K_j = e^{-2r} I_j(2r)`` for ``j = -W..W``, normalized to sum 1."""
    if r == 0.0:
        return np.zeros(1, dtype=np.int64), np.ones(1)
    W = _bessel_width(r)
    j = np.arange(W + 1)
    k = ive(j, 2.0 * r)
    keep = np.nonzero(k > _TAIL * k[0])[0]
    k = k[: keep[-1] + 1] if keep.size else k[:1]
    W = k.size - 1
    full = np.concatenate([k[:0:-1], k])               # j = -W .. W
    full = full / full.sum()                            # exact normalization: sum 1 to rounding
    return np.arange(-W, W + 1, dtype=np.int64), full


def heat_weights(n: int, r: float, periodic: bool = False):
    """Weights of ``exp(t L)`` on an axis of ``n`` cells, ``r = tau t / dx^2``.

    Returns ``(j0, weights)``: mass ``m_i`` sends ``weights[k] * m_i`` to ``fold(i + j0 + k)``
    (contiguous offsets ``j0, j0 + 1, ...``). A kernel wider than the period (``2n`` reflecting,
    ``n`` periodic) is first summed modulo the period onto one window of offsets, so there are
    never more than ``period`` weights.
    """
    r = float(r)
    if not (np.isfinite(r) and r >= 0):
        raise ValidationError(f"heat step needs r = tau t / dx^2 >= 0, got {r}")
    P = n if periodic else 2 * n
    if r > 0 and 2 * _bessel_width(r) + 1 > _CYCLE_FACTOR * P:
        # the folded kernel is the heat kernel of the cycle of P cells: from its eigenvalues
        # (no Bessel window of ~4r weights, whatever r: exactly 1/P per cell for large r)
        return -(P // 2), _cycle_weights(P, r).copy()
    off, w = _bessel_weights(r)
    if off.size > P:
        j0 = -(P // 2)
        folded = np.bincount(np.mod(off - j0, P), weights=w, minlength=P)
        return j0, folded
    return int(off[0]), w.copy()


_KERNELS: dict = {}


def make_heat_kernel(periodic: bool = False, inner: bool = False):
    """Kernel ``heat(m, j0, weights, out)`` with the boundary rule and the memory layout baked in.

    ``periodic=False``: reflecting (Neumann) axis, images folded modulo ``2n``; ``True``: wrap
    modulo ``n``. ``inner=False``: ``m, out`` are ``(lines, n)`` with the axis last (contiguous);
    ``inner=True``: ``(outer, n, inner)`` with the axis in the middle. ``n`` is read from the
    array, so one compilation serves every grid. ``out`` is overwritten with the masses after
    the step; ``j0, weights`` come from :func:`heat_weights` for that ``n``. Offsets landing
    inside the axis are applied as contiguous axpy's on array views (which LLVM vectorizes);
    only the few that leave the axis are folded (reflected or wrapped).
    """
    reflect = not periodic

    if not inner:
        @jit
        def heat(m, j0, weights, out):
            A, n = m.shape
            P = 2 * n if reflect else n
            K = weights.shape[0]
            for a in range(A):
                oa = out[a]
                ma = m[a]
                for i in range(n):
                    oa[i] = 0.0
                for i in range(n):
                    base = i + j0
                    kl = min(max(0, -base), K)          # offsets with target < 0 : k < kl
                    kh = max(min(K, n - base), kl)      # targets inside: kl <= k < kh
                    mi = ma[i]
                    seg = oa[base + kl: base + kh]
                    ws = weights[kl:kh]
                    for q in range(kh - kl):
                        seg[q] += ws[q] * mi
                    # offsets that leave the axis: one reflection (or wrap) is a contiguous
                    # segment; only kernels wider than the axis need the general fold
                    k1 = min(max(0, -n - base), kl)     # base + k >= -n  for k >= k1
                    for k in range(k1, kl):
                        v = base + k
                        t = -1 - v if reflect else v + n
                        oa[t] += weights[k] * mi
                    k2 = max(min(K, 2 * n - base), kh)  # base + k < 2n  for k < k2
                    for k in range(kh, k2):
                        v = base + k
                        t = P - 1 - v if reflect else v - n
                        oa[t] += weights[k] * mi
                    for k in range(k1):
                        t = (base + k) % P
                        if reflect and t >= n:
                            t = P - 1 - t
                        oa[t] += weights[k] * mi
                    for k in range(k2, K):
                        t = (base + k) % P
                        if reflect and t >= n:
                            t = P - 1 - t
                        oa[t] += weights[k] * mi
        return heat

    @jit
    def heat_inner(m, j0, weights, out):
        A, n, B = m.shape
        P = 2 * n if reflect else n
        K = weights.shape[0]
        for a in range(A):
            oa = out[a]
            ma = m[a]
            for i in range(n):
                for b in range(B):
                    oa[i, b] = 0.0
            for i in range(n):
                base = i + j0
                kl = min(max(0, -base), K)
                kh = max(min(K, n - base), kl)
                mrow = ma[i]
                for k in range(K):
                    if kl <= k < kh:
                        t = base + k
                    else:
                        t = (base + k) % P
                        if reflect and t >= n:
                            t = P - 1 - t
                    wk = weights[k]
                    orow = oa[t]
                    for b in range(B):
                        orow[b] += wk * mrow[b]
    return heat_inner


def make_dense_heat_kernel(inner: bool = False):
    """Kernel ``heat(m, GT, out)`` applying a dense folded semigroup matrix (``GT = G.T``, i.e.
    ``GT[i]`` is where the mass of cell ``i`` goes), for kernels as wide as the axis (small action
    grids): ``n^2`` vectorized multiply-adds per line instead of ``n K`` with folding. Layouts as
    in :func:`make_heat_kernel`; ``out`` is overwritten. Every output is a sum of non-negative
    terms (exact positivity); columns of ``G`` sum to 1 to rounding (mass)."""
    if not inner:
        @jit
        def heat_dense(m, GT, out):
            A, n = m.shape
            for a in range(A):
                oa = out[a]
                ma = m[a]
                for t in range(n):
                    oa[t] = 0.0
                for i in range(n):
                    mi = ma[i]
                    gi = GT[i]
                    for t in range(n):
                        oa[t] += gi[t] * mi
        return heat_dense

    @jit
    def heat_dense_inner(m, GT, out):
        A, n, B = m.shape
        for a in range(A):
            oa = out[a]
            ma = m[a]
            for t in range(n):
                for b in range(B):
                    oa[t, b] = 0.0
            for i in range(n):
                mrow = ma[i]
                gi = GT[i]
                for t in range(n):
                    g = gi[t]
                    orow = oa[t]
                    for b in range(B):
                        orow[b] += g * mrow[b]
    return heat_dense_inner


@lru_cache(maxsize=64)
def _dense_GT(n: int, r: float, periodic: bool) -> np.ndarray:
    GT = np.ascontiguousarray(heat_matrix(n, r, periodic).T)
    GT.setflags(write=False)
    return GT


def _dense_kernel(inner):
    key = ("dense", bool(inner))
    if key not in _KERNELS:
        _KERNELS[key] = make_dense_heat_kernel(inner)
    return _KERNELS[key]


def _kernel(periodic, inner):
    key = (bool(periodic), bool(inner))
    if key not in _KERNELS:
        _KERNELS[key] = make_heat_kernel(*key)
    return _KERNELS[key]


def _axis_view(shape, d):
    """``(outer, n, inner)`` sizes viewing a C-ordered array with ``shape`` along axis ``d``."""
    return int(np.prod(shape[:d])), shape[d], int(np.prod(shape[d + 1:]))


def _variances(grid, variance):
    v = np.broadcast_to(np.asarray(variance, dtype=float), (grid.ndim,))
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValidationError(f"heat step variance must be finite and >= 0, got {variance}")
    return v


#: ``method="auto"`` uses the spectral path on an axis when the kernel has more than
#: ``_DCT_FACTOR * log2(n) + 16`` weights (its cost grows like n log n, the direct one like n K)
#: and the axis is longer than ``_DENSE_MAX``
_DCT_FACTOR = 12.0
#: kernels with at least ``n/2`` weights on axes of at most this many cells use the dense matrix
_DENSE_MAX = 128


def heat_step(masses: np.ndarray, grid, variance, method: str = "auto") -> np.ndarray:
    """Apply the discrete heat semigroup adding ``variance`` (``2 tau t``; scalar or per axis).

    ``masses`` is ``(nS, grid.size)`` (one law per row, C-ordered cells); returns a new array.

    ``method="kernel"``: numba, the image-folded Bessel kernel (banded, ``O(n K)`` per line) or,
    when it has at least ``n/2`` weights on an axis of at most 128 cells, the dense folded
    matrix (``O(n^2)``) -- mass conserved to rounding, every output a sum of non-negative terms
    (exact positivity). ``"dct"``: the same operator by DCT-II / FFT per axis
    (:func:`heat_step_dct`), ``O(n log n)`` per line; results agree with the kernel to ~1e-16
    absolute, and the rounding noise (~1e-18) where the masses are 0 is clipped to 0 (mass still
    conserved to rounding). ``"auto"`` (default): ``"kernel"``, except on axes longer than 128
    cells whose kernel has more than ``12 log2(n) + 16`` weights, where the DCT is used.
    """
    if method not in ("auto", "kernel", "dct"):
        raise ValidationError(f"heat_step method must be 'auto', 'kernel' or 'dct', got {method!r}")
    v = _variances(grid, variance)
    nS = masses.shape[0]
    shape = (nS,) + tuple(grid.shape)
    cur = np.array(masses, dtype=float, order="C").reshape(shape)     # a copy: never aliases
    clip = False
    for d in range(grid.ndim):
        if v[d] == 0.0 or grid.shape[d] < 2:
            continue
        r = v[d] / (2.0 * grid.spacing[d] ** 2)
        j0, w = heat_weights(grid.shape[d], r, grid.periodic[d])
        o, n, i = _axis_view(shape, d + 1)
        dense = 2 * w.size >= n and n <= _DENSE_MAX
        if method == "dct" or (method == "auto" and not dense
                               and w.size > _DCT_FACTOR * np.log2(n) + 16):
            cur = _spectral_axis(cur, d + 1, n, grid.spacing[d], v[d], grid.periodic[d])
            clip = True
            continue
        out = np.empty(shape)
        if dense:
            GT = _dense_GT(n, float(r), bool(grid.periodic[d]))
            if i == 1:
                _dense_kernel(False)(cur.reshape(o, n), GT, out.reshape(o, n))
            else:
                _dense_kernel(True)(cur.reshape(o, n, i), GT, out.reshape(o, n, i))
        elif i == 1:
            _kernel(grid.periodic[d], False)(cur.reshape(o, n), j0, w, out.reshape(o, n))
        else:
            _kernel(grid.periodic[d], True)(cur.reshape(o, n, i), j0, w, out.reshape(o, n, i))
        cur = out
    if clip:
        np.maximum(cur, 0.0, out=cur)
    return cur.reshape(masses.shape)


def _spectral_axis(cur, axis, n, dx, variance, periodic):
    """``exp(t L)`` along ``axis`` by DCT-II (reflecting) or FFT (periodic); ``tau t = variance/2``."""
    from scipy import fft
    tL = variance / 2.0
    k = np.arange(n)
    shp = [1] * cur.ndim
    shp[axis] = n
    if periodic:
        lam = -4.0 * np.sin(np.pi * k / n) ** 2 / dx ** 2
        return np.ascontiguousarray(np.real(fft.ifft(fft.fft(cur, axis=axis) * np.exp(tL * lam).reshape(shp),
                                                     axis=axis)))
    lam = -4.0 * np.sin(np.pi * k / (2 * n)) ** 2 / dx ** 2
    c = fft.dct(cur, type=2, norm="ortho", axis=axis) * np.exp(tL * lam).reshape(shp)
    return np.ascontiguousarray(fft.idct(c, type=2, norm="ortho", axis=axis))


def heat_matrix(n: int, r: float, periodic: bool = False) -> np.ndarray:
    """Dense ``(n, n)`` matrix ``G`` of the folded semigroup: ``m_new = G @ m`` (numpy)."""
    j0, w = heat_weights(n, r, periodic)
    off = j0 + np.arange(w.size)
    P = n if periodic else 2 * n
    src = np.repeat(np.arange(n), off.size)
    t = np.mod(src + np.tile(off, n), P)
    if not periodic:
        t = np.where(t >= n, P - 1 - t, t)
    G = np.zeros((n, n))
    np.add.at(G, (t, src), np.tile(w, n))
    return G


def heat_step_numpy(masses: np.ndarray, grid, variance) -> np.ndarray:
    """Plain-numpy twin of :func:`heat_step` (dense folded matrix per axis)."""
    v = _variances(grid, variance)
    nS = masses.shape[0]
    cur = np.asarray(masses, dtype=float).reshape((nS,) + tuple(grid.shape))
    for d in range(grid.ndim):
        if v[d] == 0.0 or grid.shape[d] < 2:
            continue
        G = heat_matrix(grid.shape[d], v[d] / (2.0 * grid.spacing[d] ** 2), grid.periodic[d])
        cur = np.moveaxis(np.tensordot(G, cur, axes=([1], [d + 1])), 0, d + 1)
    return np.ascontiguousarray(cur).reshape(masses.shape)


def heat_step_dct(masses: np.ndarray, grid, variance) -> np.ndarray:
    """Spectral reference: ``exp(t L)`` by DCT-II (reflecting axes) or FFT (periodic axes),
    no clipping (the test reference for :func:`heat_step`)."""
    v = _variances(grid, variance)
    nS = masses.shape[0]
    cur = np.asarray(masses, dtype=float).reshape((nS,) + tuple(grid.shape))
    for d in range(grid.ndim):
        if v[d] == 0.0 or grid.shape[d] < 2:
            continue
        cur = _spectral_axis(cur, d + 1, grid.shape[d], grid.spacing[d], v[d], grid.periodic[d])
    return np.ascontiguousarray(cur).reshape(masses.shape)
