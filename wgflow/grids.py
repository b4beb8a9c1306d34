"""Tensor-product, cell-centred grids on boxes.

A :class:`Grid` with ``bounds=[(lo_0, hi_0), ...]`` and ``shape=[n_0, ...]`` splits each axis
into ``n_d`` cells of width ``h_d = (hi_d - lo_d) / n_d``; cell ``i`` of axis ``d`` has centre
``lo_d + (i + 1/2) h_d``. Cells are flattened in C order (last axis fastest). An axis may be
periodic (angles): its coordinate is then taken modulo ``hi_d - lo_d``.

Two kinds of *stencils* put a point or a law on the grid, axis by axis, and are combined by
tensor product:

* :meth:`Grid.linear_stencil` -- multilinear deposition (linear interpolation weights onto the
  two neighbouring centres). It conserves mass and the first moment; a point beyond the outermost
  centre of a non-periodic axis puts all of its mass on the outermost cell.
* :meth:`Grid.gaussian_stencil` -- a Gaussian law ``N(m, sigma^2)`` evaluated at the cell centres
  and normalized over the grid (so mass that would leave the box stays on the grid), truncated to
  the cells within ``cutoff * sigma`` of the nearest cell.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .errors import ValidationError
from .validation import boolean, describe, integer, memory

__all__ = ["Grid"]


class Grid:
    """Cell-centred tensor-product grid on a box.

    Parameters
    ----------
    bounds : sequence of (lo, hi)
        The box, one pair per dimension, ``lo < hi``.
    shape : sequence of int
        Number of cells per dimension (at least 1).
    periodic : bool or sequence of bool, optional
        Which axes wrap around (default: none).
    names : sequence of str, optional
        Name of each axis (e.g. ``["theta", "omega"]``), used to label figures. Metadata only:
        it does not enter equality.
    units : sequence of str, optional
        Unit of each axis (e.g. ``["rad", "rad/s"]``; ``""`` for none). Metadata only.

    Examples
    --------
    >>> g = Grid(bounds=[(-1, 1)], shape=[4])
    >>> g.centers[:, 0]
    array([-0.75, -0.25,  0.25,  0.75])
    >>> g.cell_volume
    0.5
    >>> Grid([(0, 1)], [2], names=["x"], units=["m"]).label(0)
    'x [m]'
    """

    def __init__(self, bounds, shape, periodic=False, names=None, units=None):
        if isinstance(bounds, (str, bytes)) or bounds is None:
            raise ValidationError(f"Grid bounds must be numbers (lo, hi) per axis, got {describe(bounds)}")
        try:
            raw = np.asarray(bounds)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"Grid bounds must be numbers (lo, hi) per axis, got {bounds!r}") from exc
        if raw.dtype.kind not in "iuf" and not (raw.dtype.kind == "O" and raw.size == 0):
            raise ValidationError(f"Grid bounds must be real numbers (lo, hi) per axis, got "
                                  f"{bounds!r} (dtype {raw.dtype})")
        bounds = np.asarray(raw, dtype=float)
        if bounds.ndim == 1 and bounds.size == 2:
            bounds = bounds[None, :]
        if bounds.ndim != 2 or bounds.shape[1] != 2 or bounds.shape[0] == 0:
            raise ValidationError(f"Grid bounds must be a sequence of (lo, hi) pairs, got shape {bounds.shape}")
        if not np.all(np.isfinite(bounds)):
            raise ValidationError(f"Grid bounds must be finite, got {bounds.tolist()}")
        bad = np.nonzero(bounds[:, 1] <= bounds[:, 0])[0]
        if bad.size:
            d = int(bad[0])
            raise ValidationError(f"Grid bounds of axis {d} must have lo < hi, got {tuple(bounds[d])}")
        shp = np.atleast_1d(np.asarray(shape, dtype=object))
        if shp.ndim != 1 or shp.size != bounds.shape[0]:
            raise ValidationError(
                f"Grid shape {np.asarray(shape, dtype=object).tolist()} does not match the "
                f"{bounds.shape[0]} axes of bounds")
        shape = tuple(integer(n, f"shape[{d}]", "Grid", low=1) for d, n in enumerate(shp))
        per = np.atleast_1d(np.asarray(periodic, dtype=object))
        if per.size == 1:
            per = np.repeat(per, bounds.shape[0])
        if per.ndim != 1 or per.size != bounds.shape[0]:
            raise ValidationError(f"Grid periodic must be one bool or one per axis "
                                  f"({bounds.shape[0]}), got {periodic!r}")
        self._bounds = bounds
        self._shape = shape
        self._periodic = tuple(boolean(p, f"periodic[{d}]", "Grid") for d, p in enumerate(per))
        self._names = self._labels(names, "names")
        self._units = self._labels(units, "units")

    def _labels(self, values, what):
        """Validate ``names`` / ``units``: None or one string per axis."""
        if values is None:
            return None
        if isinstance(values, str):
            values = [values]
        try:
            values = list(values)
        except TypeError as exc:
            raise ValidationError(f"Grid {what} must be a sequence of {self.ndim} strings, "
                                  f"got {values!r}") from exc
        if len(values) != self.ndim or not all(isinstance(v, str) for v in values):
            raise ValidationError(f"Grid {what} must be {self.ndim} strings (one per axis), got {values!r}")
        return tuple(values)

    # ------------------------------------------------------------------ basic properties
    @property
    def bounds(self) -> np.ndarray:
        """Array ``(ndim, 2)`` of ``(lo, hi)`` per axis."""
        return self._bounds.copy()

    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def periodic(self) -> tuple:
        return self._periodic

    @property
    def names(self) -> tuple | None:
        """Axis names (None when the grid was built without them)."""
        return self._names

    @property
    def units(self) -> tuple | None:
        """Axis units (None when the grid was built without them; ``""`` for a unitless axis)."""
        return self._units

    def label(self, axis: int = 0, default: str | None = None) -> str:
        """Axis label for figures: ``"name [unit]"``, ``"name"`` without a unit, else ``default``
        (``"axis d"`` when not given)."""
        if not 0 <= axis < self.ndim:
            raise ValidationError(f"axis {axis} is outside [0, {self.ndim})")
        if self._names is None:
            return f"axis {axis}" if default is None else default
        unit = self._units[axis] if self._units is not None else ""
        return f"{self._names[axis]} [{unit}]" if unit else self._names[axis]

    def with_labels(self, names=None, units=None) -> "Grid":
        """A copy of the grid with axis names / units set."""
        return Grid(self._bounds, self._shape, self._periodic,
                    self._names if names is None else names, self._units if units is None else units)

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._shape))

    @property
    def spacing(self) -> np.ndarray:
        """Cell widths ``h_d``, array ``(ndim,)``."""
        return (self._bounds[:, 1] - self._bounds[:, 0]) / np.asarray(self._shape)

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    @cached_property
    def axes(self) -> list:
        """Cell centres of each axis (list of 1-D arrays)."""
        h = self.spacing
        return [self._bounds[d, 0] + (np.arange(n) + 0.5) * h[d] for d, n in enumerate(self._shape)]

    @cached_property
    def centers(self) -> np.ndarray:
        """Cell centres, array ``(size, ndim)`` in C order."""
        memory(2.0 * self.size * self.ndim * 8, f"the {self.size} cell centres of {self!r}")
        mesh = np.meshgrid(*self.axes, indexing="ij")
        out = np.stack([m.ravel() for m in mesh], axis=1)
        out.setflags(write=False)
        return out

    @property
    def strides(self) -> np.ndarray:
        """Flat-index strides of each axis (C order)."""
        s = np.ones(self.ndim, dtype=np.int64)
        for d in range(self.ndim - 2, -1, -1):
            s[d] = s[d + 1] * self._shape[d + 1]
        return s

    def __repr__(self) -> str:
        b = ", ".join(f"({lo:g}, {hi:g})" for lo, hi in self._bounds)
        per = "" if not any(self._periodic) else f", periodic={list(self._periodic)}"
        lab = "" if self._names is None else f", names={list(self._names)}"
        if self._units is not None:
            lab += f", units={list(self._units)}"
        return f"Grid(bounds=[{b}], shape={list(self._shape)}{per}{lab})"

    def __eq__(self, other) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return (self._shape == other._shape and self._periodic == other._periodic
                and np.allclose(self._bounds, other._bounds, rtol=1e-12, atol=0))

    def __hash__(self):
        return hash((self._shape, self._periodic, tuple(self._bounds.ravel().round(12))))

    def to_dict(self) -> dict:
        d = {"bounds": self._bounds.tolist(), "shape": list(self._shape),
             "periodic": list(self._periodic)}
        if self._names is not None:
            d["names"] = list(self._names)
        if self._units is not None:
            d["units"] = list(self._units)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        """The grid :meth:`to_dict` described (validated like any constructor input)."""
        if not isinstance(d, dict) or not {"bounds", "shape"} <= set(d):
            raise ValidationError(f"a grid is described by a dict with 'bounds' and 'shape', got "
                                  f"{describe(d)}")
        return cls(d["bounds"], d["shape"], d.get("periodic", False), d.get("names"), d.get("units"))

    # ------------------------------------------------------------------ points
    def as_points(self, x, name: str = "points") -> np.ndarray:
        """Validate and reshape coordinates to ``(n, ndim)`` float64."""
        x = np.asarray(x, dtype=float)
        if x.ndim == 1 and self.ndim == 1:
            x = x[:, None]
        elif x.ndim == 1 and x.size == self.ndim:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.ndim:
            raise ValidationError(f"{name} must have shape (n, {self.ndim}), got {np.shape(x)}")
        if not np.all(np.isfinite(x)):
            row = int(np.nonzero(~np.all(np.isfinite(x), axis=1))[0][0])
            raise ValidationError(f"{name} contain NaN or inf (first at row {row})")
        return x

    def wrap(self, x: np.ndarray) -> np.ndarray:
        """Map periodic coordinates into ``[lo, hi)``; other axes unchanged."""
        x = np.array(x, dtype=float, copy=True)
        for d in range(self.ndim):
            if self._periodic[d]:
                lo, hi = self._bounds[d]
                w = lo + np.mod(x[..., d] - lo, hi - lo)
                # lo + mod(.) can round up to hi for x just below lo: [lo, hi) is half open
                x[..., d] = np.where(w >= hi, lo, w)
        return x

    def contains(self, x) -> np.ndarray:
        """Boolean mask of points inside the box (periodic axes always count as inside)."""
        x = self.as_points(x)
        inside = np.ones(x.shape[0], dtype=bool)
        for d in range(self.ndim):
            if not self._periodic[d]:
                lo, hi = self._bounds[d]
                inside &= (x[:, d] >= lo) & (x[:, d] <= hi)
        return inside

    def cell_index(self, x) -> np.ndarray:
        """Flat index of the cell containing each point (points outside are clamped to the box)."""
        x = self.as_points(x)
        idx = np.zeros(x.shape[0], dtype=np.int64)
        for d, (n, h, st) in enumerate(zip(self._shape, self.spacing, self.strides)):
            i = np.floor((x[:, d] - self._bounds[d, 0]) / h).astype(np.int64)
            i = np.mod(i, n) if self._periodic[d] else np.clip(i, 0, n - 1)
            idx += i * st
        return idx

    # ------------------------------------------------------------------ stencils (one axis)
    def linear_stencil(self, x: np.ndarray, axis: int):
        """Linear-interpolation weights of 1-D coordinates ``x`` on ``axis``.

        Returns ``(idx, w, dw)``, each ``(n, 2)``: neighbouring cell indices along the axis, their
        weights (non-negative, summing to 1) and the derivatives of the weights w.r.t. ``x``
        (zero where the point is clamped at a non-periodic end).
        """
        x = np.asarray(x, dtype=float)
        if not np.all(np.isfinite(x)):
            raise ValidationError(f"coordinates on axis {axis} contain NaN or inf (first at "
                                  f"{int(np.nonzero(~np.isfinite(x))[0][0])})")
        n, h, lo = self._shape[axis], self.spacing[axis], self._bounds[axis, 0]
        u = (x - lo) / h - 0.5
        if self._periodic[axis]:
            clamped = np.zeros(x.shape, dtype=bool)
        else:
            clamped = (u <= 0.0) | (u >= n - 1)
            u = np.clip(u, 0.0, n - 1)
        j0 = np.floor(u)
        frac = u - j0
        # snap rounding noise so a point on a centre gives an exact one-cell stencil
        snap = np.abs(frac - np.round(frac)) < 1e-12
        j0 = np.where(snap, np.round(u), j0)
        frac = np.where(snap, 0.0, frac)
        j0 = j0.astype(np.int64)
        j1 = j0 + 1
        if self._periodic[axis]:
            j0, j1 = np.mod(j0, n), np.mod(j1, n)
        else:
            j1 = np.minimum(j1, n - 1)
        idx = np.stack([j0, j1], axis=-1)
        w = np.stack([1.0 - frac, frac], axis=-1)
        dw = np.stack([-np.ones_like(frac), np.ones_like(frac)], axis=-1) / h
        dw[clamped] = 0.0
        return idx, w, dw

    def gaussian_stencil(self, mean: np.ndarray, sigma: float, axis: int, cutoff: float = 6.0):
        """Weights of ``N(mean, sigma^2)`` evaluated at the centres of ``axis`` and normalized.

        The window holds every cell within ``cutoff * sigma`` (plus one cell) of the in-grid cell
        nearest to ``mean``; cells outside it carry relative density below
        ``exp(-cutoff^2 / 2)`` and are dropped. On a periodic axis the law is wrapped (images are
        summed); when the window is wider than the period the stencil is the whole axis, each
        cell summing its images, and once ``2 pi^2 sigma^2 / L^2 > 40`` (``sigma`` above about
        ``1.42`` periods ``L``) it is uniform: by Poisson summation the wrapped density's relative
        variation is then below ``2 e^-40 = 8.5e-18``, rounding. On a bounded axis a window wider
        than the axis is clamped to it. The width therefore never exceeds ``2 n + 1`` whatever
        ``sigma`` is. Returns ``(idx, w, dw)``, each ``(n_points, width)``, where ``dw`` is the
        derivative of the normalized weights w.r.t. ``mean``.
        """
        m = np.asarray(mean, dtype=float)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValidationError(f"gaussian_stencil needs a standard deviation > 0, got {sigma!r}")
        if not np.all(np.isfinite(m)):
            raise ValidationError(f"Gaussian means on axis {axis} contain NaN or inf")
        n, h, lo = self._shape[axis], self.spacing[axis], self._bounds[axis, 0]
        half = int(np.ceil(cutoff * sigma / h)) + 1
        if self._periodic[axis] and 2 * half + 1 > n:
            return self._wrapped_gaussian_stencil(m, sigma, axis, cutoff)
        if self._periodic[axis]:
            # a window shorter than the period: each cell appears once or, near a full period,
            # twice (both images are summed by the callers)
            centre = np.floor((m - lo) / h).astype(np.int64)
            j = centre[:, None] + np.arange(-half, half + 1)[None, :]
            pos = lo + (j + 0.5) * h              # unwrapped position of each image
            idx = np.mod(j, n)
            valid = np.ones(j.shape, dtype=bool)
        else:
            # a window wider than the axis adds only cells outside it (a noise of 1e6 on a
            # 21-cell axis asked for 49 GiB)
            half = min(half, n)
            centre = np.clip(np.floor((m - lo) / h), 0, n - 1).astype(np.int64)
            j = centre[:, None] + np.arange(-half, half + 1)[None, :]
            valid = (j >= 0) & (j < n)
            idx = np.clip(j, 0, n - 1)
            pos = lo + (j + 0.5) * h
        z = (pos - m[:, None]) / sigma
        logw = np.where(valid, -0.5 * z * z, -np.inf)
        logw -= logw.max(axis=1, keepdims=True)
        w = np.exp(logw)
        w /= w.sum(axis=1, keepdims=True)
        dlog = np.where(valid, z / sigma, 0.0)     # d log w_j / d mean before normalization
        dw = w * (dlog - np.sum(w * dlog, axis=1, keepdims=True))
        return idx, w, dw

    def _wrapped_gaussian_stencil(self, m: np.ndarray, sigma: float, axis: int, cutoff: float):
        """:meth:`gaussian_stencil` on a periodic axis whose window is wider than the period.

        The stencil is the whole axis (width ``n``): each cell sums its images within
        ``cutoff * sigma`` (plus one period) of the mean, image by image, so memory stays
        ``n`` per point however large ``sigma`` is (a window of ``cutoff * sigma / h`` cells
        asked for gigabytes with a noise of 1e6 on a 64-cell angle). Once
        ``2 pi^2 sigma^2 / L^2 > 40`` (``L`` the period) the wrapped law is uniform to rounding
        (by Poisson summation its density is ``(1 + 2 sum_q exp(-2 pi^2 q^2 sigma^2 / L^2)
        cos(2 pi q x / L)) / L``, relative variation below ``2 e^-40 = 8.5e-18``): equal weights
        and a zero derivative are returned without summing images.
        """
        n, h, lo = self._shape[axis], self.spacing[axis], self._bounds[axis, 0]
        L = n * h
        idx = np.broadcast_to(np.arange(n, dtype=np.int64), (m.size, n)).copy()
        if 2.0 * np.pi ** 2 * (sigma / L) ** 2 > 40.0:
            return idx, np.full((m.size, n), 1.0 / n), np.zeros((m.size, n))
        centres = lo + (np.arange(n) + 0.5) * h
        # offset of each cell's nearest image from the mean, in [-L/2, L/2)
        d = np.mod(centres[None, :] - m[:, None] + 0.5 * L, L) - 0.5 * L
        zmin = np.min(np.abs(d), axis=1, keepdims=True) / sigma    # the largest image's z
        # images beyond exp(-cutoff^2/2) are dropped as in the narrow window; beyond 40 sigma
        # they underflow anyway (exp(-800) = 0)
        J = int(np.ceil(min(cutoff, 40.0) * sigma / L)) + 1
        W = np.zeros(d.shape)
        dW = np.zeros(d.shape)
        for j in range(-J, J + 1):
            z = (d + j * L) / sigma
            e = np.exp(-0.5 * (z - zmin) * (z + zmin))   # relative to the largest image
            W += e
            dW += e * (z / sigma)                          # d e / d mean
        S = W.sum(axis=1, keepdims=True)
        w = W / S
        dw = (dW - w * dW.sum(axis=1, keepdims=True)) / S
        return idx, w, dw

    # ------------------------------------------------------------------ stencils (all axes)
    def combine_stencils(self, stencils):
        """Tensor product of per-axis stencils ``[(idx_d, w_d, dw_d), ...]``.

        Returns ``(idx, w, dw)`` with ``idx, w`` of shape ``(n, K)`` (flat cell indices and weights,
        ``K`` the product of the widths) and ``dw`` of shape ``(n, K, ndim)``: the derivative of the
        weights w.r.t. the point's coordinate on each axis.
        """
        strides = self.strides
        idx = np.zeros((stencils[0][0].shape[0], 1), dtype=np.int64)
        w = np.ones((idx.shape[0], 1))
        dws = [np.ones((idx.shape[0], 1)) for _ in range(self.ndim)]
        for d, (i_d, w_d, dw_d) in enumerate(stencils):
            idx = (idx[:, :, None] + i_d[:, None, :] * strides[d]).reshape(idx.shape[0], -1)
            for e in range(self.ndim):
                factor = dw_d if e == d else w_d
                dws[e] = (dws[e][:, :, None] * factor[:, None, :]).reshape(idx.shape[0], -1)
            w = (w[:, :, None] * w_d[:, None, :]).reshape(idx.shape[0], -1)
        return idx, w, np.stack(dws, axis=-1)

    def interpolation_weights(self, x):
        """Multilinear weights of points ``x`` ``(n, ndim)``: ``(idx, w)`` of shape ``(n, 2**ndim)``.

        The weights are non-negative and sum to one (deposition conserves mass).
        """
        x = self.as_points(x)
        st = [self.linear_stencil(x[:, d], d) for d in range(self.ndim)]
        idx, w, _ = self.combine_stencils(st)
        return idx, w

    def deposit(self, x, masses=None) -> np.ndarray:
        """Deposit point masses on the grid by multilinear weights (conservative).

        Parameters
        ----------
        x : array ``(n, ndim)``
            Points.
        masses : array ``(n,)``, optional
            Mass of each point (default: 1 each).

        Returns
        -------
        array ``(size,)`` -- the cell masses; their sum equals ``masses.sum()`` to rounding.
        """
        idx, w = self.interpolation_weights(x)
        m = np.ones(idx.shape[0]) if masses is None else np.asarray(masses, dtype=float)
        return np.bincount(idx.ravel(), weights=(w * m[:, None]).ravel(), minlength=self.size)

    def interpolate(self, values, x) -> np.ndarray:
        """Multilinear interpolation of cell values ``(size, ...)`` at points ``x``."""
        idx, w = self.interpolation_weights(x)
        values = np.asarray(values)
        return np.einsum("nk,nk...->n...", w, values[idx])
