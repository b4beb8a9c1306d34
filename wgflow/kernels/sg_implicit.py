r"""Linearly implicit Scharfetter--Gummel steps: ``(I + h L(Q)) m^+ = m`` state by state.

Per state, the Scharfetter--Gummel fluxes of :mod:`wgflow.kernels.fluxes` define the generator
``L(Q)`` of the semi-discrete flow ``dm/dt = -L(Q) m``: on the face between cells ``i`` and
``j = i + stride_d`` (axis ``d``, spacing ``h_d``), with ``F = cf m_i - cb m_j``,

.. math::

    L_{ii} \mathrel{+}= cf,\quad L_{ji} \mathrel{-}= cf,\quad
    L_{jj} \mathrel{+}= cb,\quad L_{ij} \mathrel{-}= cb .

``L`` has non-positive off-diagonal entries and zero column sums, so ``A = I + h L`` is a
non-singular M-matrix with column sums 1 for every ``h >= 0``: ``A^{-1} >= 0`` (positivity),
``1^T A^{-1} = 1^T`` (mass), and ``L g = 0`` for the discrete Gibbs masses ``g ~ exp(-Q/tau)``
gives ``A^{-1} g = g`` (stationarity). ``A^{-1}`` is therefore a Markov kernel that leaves ``g``
invariant; it is the resolvent ``int_0^inf e^{-u} exp(-u h L) du`` of the frozen-``Q`` flow.

**Subtraction-free elimination.** ``A`` is banded (half-bandwidth ``w = nA / n_0``: one for 1-D
actions, ``n_1 n_2 ...`` for C-ordered multi-D grids). Gaussian elimination without pivoting
keeps the M-matrix structure; the pivots are computed as in the Grassmann--Taksar--Heyman
algorithm from the column *excess* ``e_k`` (the column sum of the remaining Schur complement,
1 at the start):

.. math::

    p_k = e_k + \sum_{i>k} |a_{ik}|,\qquad
    a_{ij} \leftarrow a_{ij} - a_{ik} a_{kj} / p_k\ (i \ne j),\qquad
    e_j \leftarrow e_j + |a_{kj}|\, e_k / p_k .

Off-diagonal updates add numbers of one sign, the diagonal is never updated by a subtraction,
and forward and back substitution with a non-negative right-hand side only add non-negative
terms. Every entry of ``m^+`` is therefore computed to a few ulps *relative to itself* --
Gibbs tails of ``1e-150`` included -- for any ``h`` (tested against exact rational arithmetic at
``h = 1e40``). Cost per state ``O(nA w^2)``.
"""
from __future__ import annotations

import numpy as np

from .config import jit
from .fluxes import sg_face_coefficients

__all__ = ["make_sg_operator", "sg_face_arrays", "sg_apply", "sg_resolvent_1d", "sg_resolvent_band",
           "SGOperator", "sg_implicit_solve", "sg_implicit_solve_numpy",
           "sg_generator_dense"]


def _strides(shape):
    shape = tuple(int(n) for n in shape)
    return tuple(int(np.prod(shape[d + 1:])) for d in range(len(shape)))


@jit
def sg_face_arrays(q, tau, strides, sizes, inv_h2, cf, cb):  # pragma: no cover - compiled
    """Face coefficients ``cf[d, s, i], cb[d, s, i]`` of the face between cell ``i`` and
    ``i + strides[d]`` (``F = cf m_i - cb m_j``; 0 where ``i`` is the last cell along ``d``)."""
    nS, nA = q.shape
    for d in range(strides.shape[0]):
        st = strides[d]
        nd = sizes[d]
        ih2 = inv_h2[d]
        for s in range(nS):
            for i in range(nA):
                if (i // st) % nd == nd - 1:
                    cf[d, s, i] = 0.0
                    cb[d, s, i] = 0.0
                else:
                    cf[d, s, i], cb[d, s, i] = sg_face_coefficients(q[s, i + st] - q[s, i], tau, ih2)


@jit
def sg_apply(m, cf, cb, strides, dm, rate):  # pragma: no cover - compiled
    """``dm = -L m`` and ``rate = diag L`` (outflow rate of each cell) from the face arrays."""
    nS, nA = m.shape
    for s in range(nS):
        for i in range(nA):
            dm[s, i] = 0.0
            rate[s, i] = 0.0
        for d in range(strides.shape[0]):
            st = strides[d]
            for i in range(nA - st):
                a = cf[d, s, i]
                b = cb[d, s, i]
                if a == 0.0 and b == 0.0:
                    continue
                f = a * m[s, i] - b * m[s, i + st]
                dm[s, i] -= f
                dm[s, i + st] += f
                rate[s, i] += a
                rate[s, i + st] += b


@jit
def sg_resolvent_1d(bvec, cf, cb, h, repeat, out):  # pragma: no cover - compiled
    """``out = (I + h L)^{-repeat} b`` for 1-D action grids: tridiagonal GTH elimination, with
    ``r_i`` the pivot without the outflow to the right neighbour (``p_i = r_i + h cf_i``)."""
    nS, nA = bvec.shape
    piv = np.empty(nA)
    z = np.empty(nA)
    for s in range(nS):
        r = 1.0
        for i in range(nA):
            p = r + h * cf[0, s, i]
            piv[i] = p
            if i + 1 < nA:
                r = 1.0 + h * cb[0, s, i] * (r / p)
        for i in range(nA):
            out[s, i] = bvec[s, i]
        for _ in range(repeat):
            z[0] = out[s, 0]
            for i in range(nA - 1):
                z[i + 1] = out[s, i + 1] + h * cf[0, s, i] * (z[i] / piv[i])
            x = z[nA - 1] / piv[nA - 1]
            out[s, nA - 1] = x
            for i in range(nA - 2, -1, -1):
                x = (z[i] + h * cb[0, s, i] * x) / piv[i]
                out[s, i] = x


@jit
def sg_resolvent_band(bvec, cf, cb, strides, h, repeat, out):  # pragma: no cover - compiled
    """``out = (I + h L)^{-repeat} b`` for any action dimension: banded GTH elimination,
    half-bandwidth ``strides[0]`` (module docstring)."""
    nS, nA = bvec.shape
    w = strides[0] if nA > 1 else 1
    W = 2 * w + 1
    a = np.zeros((nA, W))                   # a[i, w + j - i] = A_ij (off-diagonals only)
    ex = np.empty(nA)                        # column excess
    piv = np.empty(nA)
    z = np.empty(nA)
    for s in range(nS):
        for i in range(nA):
            for k in range(W):
                a[i, k] = 0.0
            ex[i] = 1.0
        for d in range(strides.shape[0]):
            st = strides[d]
            for i in range(nA - st):
                j = i + st
                a[j, w + i - j] = -h * cf[d, s, i]     # A_ji: inflow into j from i
                a[i, w + j - i] = -h * cb[d, s, i]     # A_ij: inflow into i from j
        for k in range(nA):
            col = 0.0
            ilast = min(nA - 1, k + w)
            for i in range(k + 1, ilast + 1):
                col -= a[i, w + k - i]
            pk = ex[k] + col
            piv[k] = pk
            for j in range(k + 1, ilast + 1):
                akj = a[k, w + j - k]
                if akj == 0.0:
                    continue
                f = akj / pk                 # <= 0
                ex[j] -= f * ex[k]           # += |a_kj| e_k / p_k
                for i in range(k + 1, ilast + 1):
                    if i == j:
                        continue
                    aik = a[i, w + k - i]
                    if aik != 0.0:
                        a[i, w + j - i] -= aik * f     # a_ik f >= 0: a_ij grows in magnitude
            for i in range(k + 1, ilast + 1):
                a[i, w + k - i] /= pk        # multipliers l_ik = a_ik / p_k (<= 0)
        for i in range(nA):
            out[s, i] = bvec[s, i]
        for _ in range(repeat):
            for i in range(nA):
                z[i] = out[s, i]
            for k in range(nA):
                zk = z[k]
                if zk == 0.0:
                    continue
                for i in range(k + 1, min(nA - 1, k + w) + 1):
                    z[i] -= a[i, w + k - i] * zk
            for i in range(nA - 1, -1, -1):
                acc = z[i]
                for j in range(i + 1, min(nA - 1, i + w) + 1):
                    acc -= a[i, w + j - i] * out[s, j]
                out[s, i] = acc / piv[i]


def make_sg_operator(shape, spacing):
    """Kernels of the SG generator ``L`` on an action grid of ``shape``/``spacing`` (baked in).

    Returns ``(coefficients, apply, resolvent)``, all on C-ordered ``(nS, nA)`` arrays:

    - ``coefficients(q, tau, cf, cb)``: face coefficients ``cf[d, s, i], cb[d, s, i]`` of the
      face between cell ``i`` and its right neighbour ``i + stride_d`` along axis ``d``
      (``F = cf m_i - cb m_j``; 0 where ``i`` is the last cell along ``d``). One exponential per
      face: compute once per ``Q`` and reuse.
    - ``apply(m, cf, cb, dm, rate)``: ``dm = -L m`` (the flow's right-hand side) and ``rate =
      diag L`` (each cell's outflow rate, the explicit CFL rate).
    - ``resolvent(b, cf, cb, h, repeat, out)``: ``out = (I + h L)^{-repeat} b`` by
      subtraction-free (GTH) elimination (module docstring; one factorization, ``repeat``
      solves); ``b`` may have any sign.

    The jitted loops are module-level functions taking the grid constants as arguments (compiled
    once and cached on disk for every grid); the factory binds the constants.
    """
    shape = tuple(int(n) for n in shape)
    strides = np.array(_strides(shape), dtype=np.int64)
    sizes = np.array(shape, dtype=np.int64)
    inv_h2 = np.array([1.0 / (float(x) * float(x)) for x in spacing])

    def coefficients(q, tau, cf, cb):
        sg_face_arrays(q, tau, strides, sizes, inv_h2, cf, cb)

    def apply(m, cf, cb, dm, rate):
        sg_apply(m, cf, cb, strides, dm, rate)

    if len(shape) == 1:
        def resolvent(b, cf, cb, h, repeat, out):
            sg_resolvent_1d(b, cf, cb, h, repeat, out)
    else:
        def resolvent(b, cf, cb, h, repeat, out):
            sg_resolvent_band(b, cf, cb, strides, h, repeat, out)
    return coefficients, apply, resolvent


_KERNELS: dict = {}


def _kernels(actions):
    key = (tuple(int(n) for n in actions.shape), tuple(float(x) for x in actions.spacing))
    if key not in _KERNELS:
        _KERNELS[key] = make_sg_operator(*key)
    return _KERNELS[key]


class SGOperator:
    """The SG generator ``L(Q)`` of every state for one ``Q``: coefficients computed once, then
    :meth:`apply` (``-L m`` and the outflow rates) and :meth:`resolvent` (``(I + hL)^{-1} b``).

    Examples
    --------
    >>> import numpy as np, wgflow as wg
    >>> A = wg.Grid([(-1, 1)], [5])
    >>> Q = np.array([[0.0, 1.0, 0.5, 2.0, 0.0]])
    >>> op = SGOperator(Q, 0.1, A)
    >>> m = op.resolvent(np.full((1, 5), 0.2), 10.0)
    >>> bool(abs(m.sum() - 1) < 1e-15 and m.min() > 0)
    True
    """

    def __init__(self, Q, tau, actions):
        Q = np.ascontiguousarray(Q, dtype=float)
        self._coef, self._apply, self._resolvent = _kernels(actions)
        nd = len(actions.shape)
        self.cf = np.empty((nd,) + Q.shape)
        self.cb = np.empty((nd,) + Q.shape)
        self._coef(Q, float(tau), self.cf, self.cb)

    def apply(self, m):
        """``(-L m, rate)``: the semi-discrete right-hand side and the outflow rate of each cell."""
        m = np.ascontiguousarray(m, dtype=float)
        dm = np.empty_like(m)
        rate = np.empty_like(m)
        self._apply(m, self.cf, self.cb, dm, rate)
        return dm, rate

    def resolvent(self, b, h, repeat=1):
        """``(I + h L)^{-repeat} b`` per state (``h >= 0`` with ``h * rate`` finite): ``repeat``
        implicit Euler steps of size ``h`` with this ``L``."""
        b = np.ascontiguousarray(b, dtype=float)
        out = np.empty_like(b)
        self._resolvent(b, self.cf, self.cb, float(h), int(repeat), out)
        return out


def sg_implicit_solve(m, q, tau, h, actions):
    """``(I + h L(q))^{-1} m`` per state (numba). ``m``, ``q`` ``(nS, nA)``; ``actions`` a Grid.

    ``h`` may be any number ``>= 0`` for which ``h * rate`` stays finite (``h = 1e200`` is fine);
    ``h -> inf`` tends to the discrete Gibbs masses of ``q`` carrying the mass of ``m`` (as fast
    as ``1 / (h * spectral gap)``, which is exponentially small in the barriers of ``q / tau``).
    """
    return SGOperator(q, tau, actions).resolvent(m, h)


def sg_generator_dense(q, tau, actions):
    """Dense generators ``L(q[s])`` ``(nS, nA, nA)`` (``dm/dt = -L m``) from the numpy flux twin
    :func:`~wgflow.kernels.fluxes.sg_flux_numpy` applied to unit masses on each face: a reference
    for tests, not for production."""
    from .fluxes import sg_flux_numpy
    q = np.asarray(q, dtype=float)
    nS, nA = q.shape
    shape = tuple(actions.shape)
    L = np.zeros((nS, nA, nA))
    idx = np.arange(nA).reshape(shape)
    e0 = np.zeros((nS, 2, 1))
    e0[:, 0] = 1.0
    e1 = e0[:, ::-1].copy()
    for d in range(len(shape)):
        for line in np.moveaxis(idx, d, -1).reshape(-1, shape[d]):
            for k in range(shape[d] - 1):
                i, j = line[k], line[k + 1]
                q2 = np.stack([q[:, i], q[:, j]], axis=1)[:, :, None]
                cf = sg_flux_numpy(e0, q2, tau, actions.spacing[d])[0][:, 0, 0]     # F(e_i) = cf
                cb = -sg_flux_numpy(e1, q2, tau, actions.spacing[d])[0][:, 0, 0]    # F(e_j) = -cb
                L[:, i, i] += cf
                L[:, j, i] -= cf
                L[:, j, j] += cb
                L[:, i, j] -= cb
    return L


def sg_implicit_solve_numpy(m, q, tau, h, actions):
    """Plain-numpy twin of :func:`sg_implicit_solve` (dense generators, ``numpy.linalg.solve``)."""
    L = sg_generator_dense(q, tau, actions)
    nA = L.shape[1]
    A = np.eye(nA)[None] + h * L
    return np.linalg.solve(A, np.asarray(m, dtype=float)[..., None])[..., 0]
