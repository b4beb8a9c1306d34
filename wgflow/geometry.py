r"""Wasserstein geometry of policies (WFRL): metric, tangent projection, distance, geodesics.

A policy is a family of laws ``pi(.|s)`` on the action box, stored as cell masses ``(nS, nA)``
(:class:`~wgflow.Policy`). This module implements, state by state and vectorized over states:

* the Riemannian metric ``g_pi(v, w) = sum_s omega(s) sum_a pi(a|s) v(s,a).w(s,a)`` on velocity
  fields at cell centres (:func:`metric`, :func:`norm`), discrete gradients (:func:`gradient`,
  :func:`face_gradient`) and the ``L^2(pi)``-orthogonal projection onto action gradients
  (:func:`tangent_projection`);
* the distance ``d(pi0, pi1) = (sum_s omega(s) W_2^2(pi0(.|s), pi1(.|s)))^{1/2}``
  (:func:`distance`, per-state squares :func:`w2sq`);
* state-wise McCann geodesics for fixed weights (:func:`geodesic`), the exponential map
  (:func:`exp`, push-forward by ``id + v``) and its inverse (:func:`log`, optimal map minus id).

The discrete formulas actually implemented are written out in ``docs/geometry.md``. Two laws
are attached to the same masses:

* the **piecewise-constant** law (default, ``atoms=False``): density ``m_a / |cell|`` on each
  cell -- what the grid represents (``policy.density``);
* the **atoms** law (``atoms=True``): point masses ``m_a`` at the cell centres -- what POT
  computes on the same data.

For 1-D actions every computation on the piecewise-constant law is **exact** (quantile
functions are piecewise linear with knots at the cumulative masses). For multi-D actions the
distance is computed on atoms (exact network simplex, or sub-atoms with ``refine``), see
:func:`w2sq`. Periodic action axes are not supported by the transport functions (they would need
the circle / torus distance) and raise :class:`~wgflow.ValidationError`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import spsolve

from .errors import ConvergenceError, ValidationError, WgflowError
from .grids import Grid
from .particles import ParticlePolicy, particle_distance
from .policy import Policy, _policy_parts, check_masses
from .transport import (SUM_TOL, _emd_state, _interpolate_1d, _map_at_centres_1d, _w2sq_1d,
                        _w2sq_1d_body, _w2sq_1d_numpy, check_weights, coupling_1d, make_w2sq_1d_kernel)

__all__ = ["metric", "norm", "gradient", "face_gradient", "face_average", "face_metric",
           "tangent_projection", "TangentProjection", "distance", "w2sq", "geodesic", "exp",
           "log", "check_weights", "transport_plan"]



# =============================================================================================
# input checking
# =============================================================================================
def _check_pair(pi0, pi1, what: str):
    m0, A0 = _policy_parts(pi0, "pi0")
    m1, A1 = _policy_parts(pi1, "pi1")
    if A0 != A1:
        raise ValidationError(f"{what}: pi0 and pi1 live on different action grids ({A0!r} vs "
                              f"{A1!r}); put them on the same grid first")
    if m0.shape[0] != m1.shape[0]:
        raise ValidationError(f"{what}: pi0 has {m0.shape[0]} states but pi1 has {m1.shape[0]}")
    _no_periodic(A0, what)
    return m0, m1, A0


def _no_periodic(A: Grid, what: str):
    if any(A.periodic):
        raise ValidationError(f"{what}: periodic action axes are not supported (the transport "
                              "cost would be the circle/torus distance); use a non-periodic grid")


def _velocity(v, n_states: int, A: Grid, name: str = "v") -> np.ndarray:
    """Velocity field ``(nS, nA, da)`` (``(nS, nA)`` accepted for 1-D actions), validated."""
    v = np.asarray(v, dtype=float)
    if v.ndim == 2 and A.ndim == 1:
        v = v[:, :, None]
    if v.shape != (n_states, A.size, A.ndim):
        extra = f" or ({n_states}, {A.size})" if A.ndim == 1 else ""
        raise ValidationError(f"{name} must have shape ({n_states}, {A.size}, {A.ndim}){extra} "
                              f"(a velocity per state and action cell), got {v.shape}")
    if not np.all(np.isfinite(v)):
        s, a = np.argwhere(~np.all(np.isfinite(v), axis=2))[0]
        raise ValidationError(f"{name} contains NaN or inf at state {s}, action {a}")
    return v


# =============================================================================================
# metric, gradients, tangent projection
# =============================================================================================
def metric(pi, v, w, weights) -> float:
    r"""The metric ``g_pi(v, w) = sum_s omega(s) sum_a pi(a|s) v(s,a)·w(s,a)``.

    Parameters
    ----------
    pi : Policy
        Base point (masses ``pi(a|s)``).
    v, w : array ``(nS, nA, da)`` (or ``(nS, nA)`` for 1-D actions)
        Velocity fields at the action-cell centres.
    weights : array ``(nS,)`` or Evaluation
        State weights ``omega`` (a probability vector; ``ev.weights`` of an Evaluation).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np, wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=5, n_actions=9)
    >>> pi = wg.Policy.uniform(mdp)
    >>> ones = np.ones((5, 9))
    >>> round(wg.geometry.metric(pi, ones, 2 * ones, np.full(5, 0.2)), 12)
    2.0
    """
    m, A = _policy_parts(pi, "pi")
    om = check_weights(weights, m.shape[0])
    v = _velocity(v, m.shape[0], A, "v")
    w = _velocity(w, m.shape[0], A, "w")
    return float(om @ np.einsum("sa,sad,sad->s", m, v, w))


def norm(pi, v, weights) -> float:
    r"""``||v||_pi = sqrt(g_pi(v, v))`` (see :func:`metric`)."""
    return float(np.sqrt(max(metric(pi, v, v, weights), 0.0)))


def _face_pairs(A: Grid):
    """Per axis ``d``: flat indices ``(left, right)`` of the cells sharing each face normal to ``d``.

    A periodic axis with at least 3 cells also has the wrap-around faces.
    """
    shape = A.shape
    flat = np.arange(A.size).reshape(shape)
    out = []
    for d in range(A.ndim):
        n = shape[d]
        if A.periodic[d] and n >= 3:
            left = flat
            right = np.roll(flat, -1, axis=d)
        else:
            left = np.take(flat, np.arange(n - 1), axis=d)
            right = np.take(flat, np.arange(1, n), axis=d)
        out.append((left.ravel(), right.ravel()))
    return out


def face_gradient(phi, actions: Grid):
    r"""Face differences of potentials: ``(D phi)_f = (phi_j - phi_i) / h_d``.

    For each axis ``d`` and each face ``f`` between cells ``i`` and ``j = i + e_d``.

    Parameters
    ----------
    phi : array ``(nS, nA)``
    actions : Grid

    Returns
    -------
    tuple of arrays ``(nS, F_d)``, one per axis; the face order is that of the left cells in
    C order (see ``docs/geometry.md``).
    """
    phi = np.asarray(phi, dtype=float)
    if phi.ndim != 2 or phi.shape[1] != actions.size:
        raise ValidationError(f"phi must have shape (nS, {actions.size}), got {phi.shape}")
    h = actions.spacing
    return tuple((phi[:, r] - phi[:, l]) / h[d] for d, (l, r) in enumerate(_face_pairs(actions)))


def face_average(v, actions: Grid):
    r"""Face-normal velocities ``v_f = (v_i^d + v_j^d) / 2`` from a cell-centred field.

    ``v`` is ``(nS, nA, da)`` (or ``(nS, nA)`` for 1-D); returns a tuple of ``(nS, F_d)``.
    """
    v = np.asarray(v, dtype=float)
    if v.ndim == 2 and actions.ndim == 1:
        v = v[:, :, None]
    v = _velocity(v, v.shape[0], actions, "v")
    return tuple(0.5 * (v[:, l, d] + v[:, r, d]) for d, (l, r) in enumerate(_face_pairs(actions)))


def _face_mobility(m: np.ndarray, A: Grid):
    """``theta_f = (pi_i + pi_j) / 2`` per axis, tuple of ``(nS, F_d)``."""
    return tuple(0.5 * (m[:, l] + m[:, r]) for l, r in _face_pairs(A))


def face_metric(pi, f, g, weights=None):
    r"""Face inner product ``sum_s omega(s) sum_d sum_f theta_f f_f g_f``, ``theta_f = (pi_i+pi_j)/2``.

    ``f, g`` are tuples of face fields as returned by :func:`face_gradient`. With
    ``weights=None`` the per-state values ``(nS,)`` are returned.
    """
    m, A = _policy_parts(pi, "pi")
    th = _face_mobility(m, A)
    per_state = sum(np.sum(t * np.asarray(a) * np.asarray(b), axis=1) for t, a, b in zip(th, f, g))
    per_state = np.asarray(per_state, dtype=float) + np.zeros(m.shape[0])
    if weights is None:
        return per_state
    return float(check_weights(weights, m.shape[0]) @ per_state)


def gradient(phi, actions: Grid) -> np.ndarray:
    r"""Cell-centred action gradient of potentials ``phi`` ``(nS, nA)`` -> ``(nS, nA, da)``.

    Central differences ``(phi_{i+1} - phi_{i-1}) / (2 h_d)`` inside, one-sided first-order
    differences at the box edges (``numpy.gradient`` with ``edge_order=1``), wrap-around central
    differences on periodic axes; zero along an axis with a single cell. Equivalently: the
    average of the face gradients (:func:`face_gradient`) on the faces of the cell.

    Examples
    --------
    >>> import numpy as np, wgflow as wg
    >>> A = wg.Grid([(0, 1)], [4])
    >>> phi = (A.centers[:, 0] ** 2)[None, :]
    >>> wg.geometry.gradient(phi, A)[0, :, 0]
    array([0.5 , 0.75, 1.25, 1.5 ])
    """
    phi = np.asarray(phi, dtype=float)
    if phi.ndim != 2 or phi.shape[1] != actions.size:
        raise ValidationError(f"phi must have shape (nS, {actions.size}), got {phi.shape}")
    nS = phi.shape[0]
    P = phi.reshape((nS,) + actions.shape)
    h = actions.spacing
    out = np.zeros((nS,) + actions.shape + (actions.ndim,))
    for d in range(actions.ndim):
        n = actions.shape[d]
        if n == 1:
            continue
        if actions.periodic[d] and n >= 3:
            out[..., d] = (np.roll(P, -1, axis=d + 1) - np.roll(P, 1, axis=d + 1)) / (2 * h[d])
        else:
            out[..., d] = np.gradient(P, h[d], axis=d + 1, edge_order=1)
    return out.reshape(nS, actions.size, actions.ndim)


@dataclass
class TangentProjection:
    """Result of :func:`tangent_projection`.

    Attributes
    ----------
    potential : ndarray ``(nS, nA)``
        ``phi``, normalized to ``pi``-mean zero on each connected component of the support
        graph (0 on cells no face of positive mobility touches).
    faces : tuple of ndarray ``(nS, F_d)``
        The projected face field ``D phi`` (:func:`face_gradient`).
    velocity : ndarray ``(nS, nA, da)``
        Cell-centred reconstruction ``gradient(phi)`` (average of the adjacent face values).
    residual : tuple of ndarray ``(nS, F_d)``
        ``v_f - D phi`` (orthogonal to every face gradient in the face inner product).
    diagnostics : dict
    """

    potential: np.ndarray
    faces: tuple
    velocity: np.ndarray
    residual: tuple
    diagnostics: dict = field(default_factory=dict)


def tangent_projection(pi, v) -> TangentProjection:
    r"""``L^2(pi)``-orthogonal projection of a velocity field onto action gradients.

    Per state ``s`` solve

    .. math:: \min_\phi \sum_d \sum_{f \perp e_d} \theta_f \, |v_f - (D\phi)_f|^2, \qquad
              \theta_f = (\pi_i + \pi_j)/2, \quad (D\phi)_f = (\phi_j - \phi_i)/h_d,

    where ``v_f`` is the face-normal velocity (average of the two cell-centre values, or given
    directly as face fields). The normal equations are the weighted graph Laplacian system
    ``L phi = D^T Theta v``, ``L = D^T Theta D``.

    * **1-D actions** (non-periodic): ``D`` maps ``nA`` potentials onto all ``nA - 1`` faces, so
      every face field is a gradient: ``phi`` is the exact cumulative sum
      ``phi_{k+1} = phi_k + h v_{k+1/2}`` and the projected face field equals ``v_f`` (zero
      residual). This is the 1-D fact that every velocity is tangent.
    * **multi-D**: one sparse solve for all states at once (block-diagonal Laplacian), with one
      node pinned per connected component of the graph of faces with ``theta_f > 0``.

    The gauge is fixed by ``sum_a pi(a|s) phi(s,a) = 0`` per component.

    Parameters
    ----------
    pi : Policy
    v : array ``(nS, nA, da)`` / ``(nS, nA)`` (cell centres) or tuple of face fields ``(nS, F_d)``

    Returns
    -------
    TangentProjection

    Examples
    --------
    >>> import numpy as np, wgflow as wg
    >>> mdp = wg.problems.get("lqr2d", n_states=(2, 2), n_actions=(4, 4))
    >>> pi = wg.Policy.uniform(mdp)
    >>> v = np.random.default_rng(0).normal(size=(4, 16, 2))
    >>> p = wg.geometry.tangent_projection(pi, v)
    >>> q = wg.geometry.tangent_projection(pi, p.faces)
    >>> bool(max(np.abs(a - b).max() for a, b in zip(p.faces, q.faces)) < 1e-10)
    True
    """
    m, A = _policy_parts(pi, "pi")
    nS, nA = m.shape
    pairs = _face_pairs(A)
    if isinstance(v, (tuple, list)):
        if len(v) != A.ndim:
            raise ValidationError(f"face fields: expected {A.ndim} arrays (one per axis), got {len(v)}")
        vf = []
        for d, (arr, (l, _)) in enumerate(zip(v, pairs)):
            arr = np.asarray(arr, dtype=float)
            if arr.shape != (nS, l.size):
                raise ValidationError(f"face field of axis {d} must have shape ({nS}, {l.size}), got {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValidationError(f"face field of axis {d} contains NaN or inf")
            vf.append(arr)
        vf = tuple(vf)
    else:
        vf = face_average(_velocity(v, nS, A, "v"), A)
    h = A.spacing
    theta = _face_mobility(m, A)
    diag = {}
    if A.ndim == 1 and not (A.periodic[0] and A.size >= 3):
        phi = np.zeros((nS, nA))
        np.cumsum(h[0] * vf[0], axis=1, out=phi[:, 1:])
        phi -= np.sum(m * phi, axis=1, keepdims=True)
        diag["method"] = "cumulative sum (1-D: every face field is a gradient)"
    else:
        phi = _graph_solve(m, pairs, theta, vf, h)
        diag["method"] = "block-diagonal weighted graph Laplacian, sparse direct solve"
    faces = face_gradient(phi, A)
    resid = tuple(a - b for a, b in zip(vf, faces))
    return TangentProjection(phi, faces, gradient(phi, A), resid, diag)


def _graph_solve(m, pairs, theta, vf, h):
    nS, nA = m.shape
    N = nS * nA
    off = (np.arange(nS) * nA)[:, None]
    rows, cols, wts, rhs = [], [], [], np.zeros(N)
    for d, (l, r) in enumerate(pairs):
        if l.size == 0:
            continue
        L = (off + l[None, :]).ravel()
        R = (off + r[None, :]).ravel()
        th = theta[d].ravel()
        keep = th > 0
        L, R, th, vv = L[keep], R[keep], th[keep], vf[d].ravel()[keep]
        rows.append(L); cols.append(R); wts.append(th / h[d] ** 2)
        flux = th * vv / h[d]
        rhs += np.bincount(R, flux, minlength=N) - np.bincount(L, flux, minlength=N)
    if rows:
        I = np.concatenate(rows); J = np.concatenate(cols); W = np.concatenate(wts)
    else:
        I = J = np.zeros(0, dtype=np.int64); W = np.zeros(0)
    Adj = sp.csr_matrix((W, (I, J)), shape=(N, N))
    Adj = Adj + Adj.T
    Lap = (sp.diags(np.asarray(Adj.sum(axis=1)).ravel()) - Adj).tocsr()
    ncomp, labels = connected_components(Adj, directed=False)
    _, first = np.unique(labels, return_index=True)
    free = np.ones(N, dtype=bool)
    free[first] = False
    phi = np.zeros(N)
    if free.any():
        phi[free] = spsolve(Lap[free][:, free].tocsc(), rhs[free])
    mflat = m.ravel()
    cm = np.bincount(labels, mflat, minlength=ncomp)
    cmean = np.bincount(labels, mflat * phi, minlength=ncomp)
    shift = np.where(cm > 0, cmean / np.where(cm > 0, cm, 1.0), 0.0)
    phi -= shift[labels]
    return phi.reshape(nS, nA)


# =============================================================================================
# multi-D: exact network simplex (POT) and Sinkhorn
# =============================================================================================
def _sub_atoms(A: Grid, refine: int):
    """Offsets ``(r^da, da)`` of the sub-cell centres of a cell split ``refine`` times per axis."""
    g = [((np.arange(refine) + 0.5) / refine - 0.5) * h for h in A.spacing]
    mesh = np.meshgrid(*g, indexing="ij")
    return np.stack([x.ravel() for x in mesh], axis=1)


def _support_atoms(m_row, X, offsets):
    idx = np.nonzero(m_row > 0)[0]
    pts = (X[idx][:, None, :] + offsets[None, :, :]).reshape(-1, X.shape[1])
    w = np.repeat(m_row[idx] / offsets.shape[0], offsets.shape[0])
    return idx, pts, w


def _w2sq_multi(m0, m1, A, refine, method, reg, numItermax, stopThr):
    import ot
    X = A.centers
    off = _sub_atoms(A, refine)
    out = np.empty(m0.shape[0])
    for s in range(m0.shape[0]):
        _, P0, a = _support_atoms(m0[s], X, off)
        _, P1, b = _support_atoms(m1[s], X, off)
        if method == "exact":
            out[s], _ = _emd_state(a, b, P0, P1, s)
        else:
            M = ((P0[:, None, :] - P1[None, :, :]) ** 2).sum(axis=2)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                val, log = ot.sinkhorn2(a / a.sum(), b / b.sum(), M, reg, method="sinkhorn_log",
                                        numItermax=numItermax, stopThr=stopThr, log=True)
            bad = [w for w in caught if "converge" in str(w.message).lower()]
            if bad or not np.isfinite(val):
                raise ConvergenceError(
                    f"Sinkhorn (reg={reg:g}) did not converge for state {s}: "
                    f"{'; '.join(str(w.message) for w in bad) or 'non-finite value'}",
                    {"state": s, "niter": log.get("niter"), "err": (log.get("err") or [None])[-1]})
            out[s] = float(val)
    return out


# =============================================================================================
# distance
# =============================================================================================
def w2sq(pi0, pi1, atoms: bool = False, method: str = "exact", reg: float | None = None,
         refine: int = 1, backend: str = "numba", numItermax: int = 10000,
         stopThr: float = 1e-9) -> np.ndarray:
    r"""Per-state squared Wasserstein distances ``W_2^2(pi0(.|s), pi1(.|s))``, array ``(nS,)``.

    **1-D actions** (exact, vectorized over states). With ``Q_i`` the quantile functions,
    ``W_2^2 = int_0^1 |Q_0(u) - Q_1(u)|^2 du``. The knots of both quantile functions (the
    cumulative masses ``c_j``) are merged; on each of the ``2 nA + 1`` sub-intervals
    ``[u_a, u_b]`` both are affine (piecewise-constant law, default) or constant (``atoms=True``),
    so the integral is exact:
    ``(u_b - u_a) (D_a^2 + D_a D_b + D_b^2) / 3`` with ``D = Q_0 - Q_1`` at the ends, resp.
    ``(u_b - u_a)(x_{j0} - x_{j1})^2``. Zero-mass cells are empty u-intervals (jumps of ``Q``).
    Computed by a numba two-pointer merge (``backend="numba"``) or a numpy sort-based twin
    (``backend="numpy"``).

    **Multi-D actions** (not exact for the piecewise-constant law). ``method="exact"``: POT's
    network simplex ``ot.emd2`` per state on the atoms, restricted to the supports, with the
    marginals checked in float64 and the solver status checked (never a silent zero plan).
    Without ``atoms`` each cell is split into ``refine^da`` sub-atoms of equal mass at the
    sub-cell centres (``refine=1``, the default, *is* the atoms value; ``refine`` is ignored for
    exact 1-D computations). Since
    ``W_2(piecewise-constant, its sub-atoms)^2 = sum_d h_d^2 / (12 refine^2)`` exactly, the
    result is within ``2 sqrt(sum_d h_d^2 / 12) / refine`` of the piecewise-constant value (per
    state, triangle inequality). ``method="sinkhorn"``: entropic plan cost
    ``<P_reg, M>`` (``ot.sinkhorn2``, log-domain), ``reg`` in units of squared action distance;
    biased upward, for big grids; ``numItermax`` and ``stopThr`` are passed to POT and a
    non-converged run raises :class:`~wgflow.ConvergenceError`.

    Raises ValidationError for different action grids, different numbers of states, periodic
    action axes, invalid masses; WgflowError if the network simplex is not optimal.
    """
    m0, m1, A = _check_pair(pi0, pi1, "distance")
    if method not in ("exact", "sinkhorn"):
        raise ValidationError(f"method must be 'exact' or 'sinkhorn', got {method!r}")
    refine = int(refine)
    if refine < 1:
        raise ValidationError(f"refine must be a positive integer, got {refine}")
    if method == "sinkhorn":
        if reg is None or not np.isfinite(reg) or reg <= 0:
            raise ValidationError(f"method='sinkhorn' needs reg > 0, got {reg!r}")
    if A.ndim == 1 and method == "exact":
        return _w2sq_1d(m0, m1, float(A.spacing[0]), atoms, backend)
    return _w2sq_multi(m0, m1, A, 1 if atoms else refine, method, reg, numItermax, stopThr)


def distance(pi0, pi1, weights, atoms: bool = False, method: str = "exact",
             reg: float | None = None, refine: int = 1) -> float:
    r"""Wasserstein distance between policies, ``d = (sum_s omega(s) W_2^2(pi0(.|s), pi1(.|s)))^{1/2}``.

    Returns ``d`` (not ``d^2``). ``weights`` is the state law ``omega`` (probability vector
    ``(nS,)``, or an Evaluation whose ``weights`` are used). ``atoms=False`` (default): the
    piecewise-constant densities the grid represents -- exact for 1-D actions; for multi-D
    actions the atoms (or ``refine`` sub-atoms) approximation described in :func:`w2sq`.
    ``atoms=True``: point masses at the cell centres (what ``ot.emd2`` / ``ot.wasserstein_1d``
    compute on the same data). Two :class:`~wgflow.particles.ParticlePolicy` are handled by
    :func:`~wgflow.particles.particle_distance`.

    Examples
    --------
    >>> import numpy as np, wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=3, n_actions=41)
    >>> p0 = wg.Policy.gaussian(mdp, 0.0, 0.6)
    >>> p1 = wg.Policy.gaussian(mdp, 1.0, 0.6)
    >>> round(wg.geometry.distance(p0, p1, np.full(3, 1 / 3)), 4)     # a translate by 1
    1.0
    """
    if isinstance(pi0, ParticlePolicy) or isinstance(pi1, ParticlePolicy):
        return particle_distance(pi0, pi1, weights)
    n0 = pi0.n_states if isinstance(pi0, Policy) else None
    d2 = w2sq(pi0, pi1, atoms=atoms, method=method, reg=reg, refine=refine)
    om = check_weights(weights, n0 if n0 is not None else d2.size)
    return float(np.sqrt(max(float(om @ d2), 0.0)))


# =============================================================================================
# geodesics, exp, log
# =============================================================================================
def _deposit_states(A: Grid, pts: np.ndarray, mass: np.ndarray, state: np.ndarray, nS: int):
    """Deposit points ``(K, da)`` with masses ``(K,)`` belonging to ``state`` ``(K,)`` (multilinear)."""
    idx, w = A.interpolation_weights(pts)
    flat = (state[:, None] * A.size + idx).ravel()
    out = np.bincount(flat, weights=(w * mass[:, None]).ravel(), minlength=nS * A.size)
    return out.reshape(nS, A.size)


def _finish(masses, template: Policy) -> Policy:
    masses = np.maximum(masses, 0.0)
    return Policy(masses, template.actions, template.states, validate=True)


def _plans_multi(m0, m1, A):
    """Per state the nonzeros ``(i, j, P_ij)`` of the optimal plan between the atoms."""
    X = A.centers
    zero = np.zeros((1, A.ndim))
    out = []
    for s in range(m0.shape[0]):
        i0, _, a = _support_atoms(m0[s], X, zero)
        i1, _, b = _support_atoms(m1[s], X, zero)
        _, G = _emd_state(a, b, X[i0], X[i1], s, want_plan=True)
        G = G * (1.0 / G.sum())
        r, c = np.nonzero(G > 0)
        out.append((i0[r], i1[c], G[r, c]))
    return out


def transport_plan(pi0, pi1, state: int):
    r"""Optimal plan between the atoms of ``pi0(.|s)`` and ``pi1(.|s)``, as ``(i, j, mass)`` arrays.

    1-D: the monotone (quantile) coupling of the normalized masses, built by a merge over the
    amounts still unassigned in the current cells (see ``docs/geometry.md``, section 4): every
    row and column sum equals the cell's normalized mass to a few ulps *relative to that mass*,
    down to subnormal masses. Multi-D: POT's network simplex (checked).
    """
    m0, m1, A = _check_pair(pi0, pi1, "transport_plan")
    s = int(state)
    if not 0 <= s < m0.shape[0]:
        raise ValidationError(f"state {s} is outside [0, {m0.shape[0]})")
    if A.ndim == 1:
        K, I, J, Lp, Lq, _ = coupling_1d(m0[s:s + 1], m1[s:s + 1])
        k = int(K[0])
        # the two laws account the meeting piece with a rounding difference: take the mean
        L = 0.5 * (Lp[0, :k] + Lq[0, :k])
        keep = L > 0
        return I[0, :k][keep], J[0, :k][keep], L[keep]
    return _plans_multi(m0[s:s + 1], m1[s:s + 1], A)[0]


def _deposit_pairs(A: Grid, I, J, P, st, nS: int, t: float) -> np.ndarray:
    """Masses ``P`` moved from the centres of cells ``I`` towards those of ``J``, fraction ``t``,
    deposited with multilinear weights (conservative; first moment exact).

    Positions are taken in cell units per axis and written from the nearer end
    (``i + t (j - i)`` for ``t <= 1/2``, ``j + (1 - t)(i - j)`` beyond), so a pair with ``i = j``
    lands exactly on its centre and gives no sliver of mass to a neighbour.
    """
    shape = A.shape
    iu = np.unravel_index(I, shape)
    ju = np.unravel_index(J, shape)
    cells, fracs = [], []
    for d, n in enumerate(shape):
        i_d, j_d = iu[d].astype(float), ju[d].astype(float)
        y = i_d + t * (j_d - i_d) if t <= 0.5 else j_d + (1.0 - t) * (i_d - j_d)
        y = np.clip(y, 0.0, n - 1.0)
        c = np.minimum(np.floor(y), max(n - 2, 0)).astype(np.int64)
        cells.append(c)
        fracs.append(y - c)
    out = np.zeros(nS * A.size)
    for corner in range(2 ** A.ndim):
        idx, w = [], np.asarray(P, dtype=float).copy()
        for d, n in enumerate(shape):
            up = (corner >> (A.ndim - 1 - d)) & 1
            idx.append(np.minimum(cells[d] + up, n - 1))
            w = w * (fracs[d] if up else 1.0 - fracs[d])
        flat = st * A.size + np.ravel_multi_index(tuple(idx), shape)
        out += np.bincount(flat, weights=w, minlength=nS * A.size)
    return out.reshape(nS, A.size)


def geodesic(pi0, pi1, t, atoms: bool = False):
    r"""State-wise McCann (displacement) interpolation between ``pi0`` and ``pi1`` (fixed weights).

    **1-D actions, default** (exact): the monotone coupling of the two piecewise-constant laws
    is a sequence of pieces -- mass ``L`` of cell ``i`` spread uniformly over a sub-interval of
    cell ``i``, sent affinely onto a sub-interval of cell ``j`` -- and at time ``t`` each piece is
    uniform on the interpolated interval. The returned masses are the overlaps of these
    intervals with the cells: the exact cell masses of the true interpolant. The pieces come
    from a merge over the amounts still unassigned in the current cells (never from differences
    of cumulative sums), so each cell mass keeps its relative precision: ``geodesic(p, p, t)``
    is ``p`` to a few ulps for every ``t``, zero cells stay zero, and the Gibbs tails of a soft
    policy (masses down to subnormal) are neither lost nor filled. ``t = 0`` and ``t = 1`` return
    the masses of ``pi0`` and ``pi1`` unchanged. The returned policy is the grid's
    (piecewise-constant) representation of the interpolant, which is generally *not* exactly
    the interpolant (its density is piecewise constant on other intervals):
    ``W_2(returned, true) <= h`` since both quantile functions agree at every edge level.

    **Multi-D actions, or** ``atoms=True``: optimal plan between the atoms (1-D: the same
    monotone coupling; multi-D: ``ot.emd``, checked), each pair ``(x, y, P_xy)`` displaced to
    ``(1 - t) x + t y`` and deposited with multilinear weights (conservative, first moment
    exact; a pair with ``x = y`` stays on its cell exactly).

    Parameters
    ----------
    pi0, pi1 : Policy on the same action grid
    t : float in [0, 1] or array of them
    atoms : bool

    Returns
    -------
    Policy (scalar ``t``) or list of Policy (array ``t``).

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=2, n_actions=81)
    >>> g = wg.geometry.geodesic(wg.Policy.gaussian(mdp, -1, 0.5), wg.Policy.gaussian(mdp, 1, 0.5), 0.5)
    >>> bool(abs(g.mean()).max() < 1e-6)
    True
    """
    m0, m1, A = _check_pair(pi0, pi1, "geodesic")
    scalar = np.ndim(t) == 0
    ts = np.atleast_1d(np.asarray(t, dtype=float)).ravel()
    if not np.all(np.isfinite(ts)) or np.any(ts < 0) or np.any(ts > 1):
        raise ValidationError(f"t must lie in [0, 1], got {np.asarray(t).tolist()}")
    nS = m0.shape[0]
    if A.ndim == 1:
        K, I, J, Lp, Lq, F = coupling_1d(m0, m1)
        t0, t1 = m0.sum(axis=1), m1.sum(axis=1)
        # the pieces are normalized laws; the interpolant carries the interpolated total
        tot = np.ascontiguousarray(t0[None, :] + ts[:, None] * (t1 - t0)[None, :])
        out = np.empty((ts.size, nS, A.size))
        _interpolate_1d(K, I, J, Lp, Lq, F, np.ascontiguousarray(ts), tot, bool(atoms), out)
        masses = list(out)
    else:
        plans = _plans_multi(m0, m1, A)
        st = np.concatenate([np.full(p[0].size, s) for s, p in enumerate(plans)])
        I = np.concatenate([p[0] for p in plans])
        J = np.concatenate([p[1] for p in plans])
        P = np.concatenate([p[2] for p in plans])
        masses = [_deposit_pairs(A, I, J, P, st, nS, tt) for tt in ts]
    for k, tt in enumerate(ts):         # the endpoints are the given policies
        if tt == 0.0:
            masses[k] = m0.copy()
        elif tt == 1.0:
            masses[k] = m1.copy()
    pols = [_finish(mm, pi0) for mm in masses]
    return pols[0] if scalar else pols


def exp(pi, v) -> Policy:
    r"""Exponential map: state-wise push-forward ``(id + v)_# pi(.|s)``.

    The atoms at the cell centres ``x_a`` are moved to ``x_a + v(s, a)`` and their masses are
    deposited back on the grid with multilinear weights (:meth:`Grid.interpolation_weights`):
    conservative (mass per state exact to rounding), positive, first moment exact for points
    inside the hull of the centres. Mass moved beyond the outermost centre of a non-periodic
    axis is clamped: it lands on the outermost cell (the deposition rule); periodic axes wrap.

    Parameters
    ----------
    pi : Policy
    v : array ``(nS, nA, da)`` or ``(nS, nA)`` (1-D actions)

    Examples
    --------
    >>> import numpy as np, wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=2, n_actions=9)
    >>> pi = wg.Policy.deterministic(mdp, 0.0, rule="nearest")
    >>> h = mdp.actions.spacing[0]
    >>> out = wg.geometry.exp(pi, np.full((2, 9), h))     # shift by one cell
    >>> int(out.greedy()[0]) - int(pi.greedy()[0])
    1
    """
    m, A = _policy_parts(pi, "pi")
    nS, nA = m.shape
    v = _velocity(v, nS, A, "v")
    pts = (A.centers[None, :, :] + v).reshape(-1, A.ndim)
    st = np.repeat(np.arange(nS), nA)
    keep = m.ravel() > 0
    masses = _deposit_states(A, pts[keep], m.ravel()[keep], st[keep], nS)
    return _finish(masses, pi)


def log(pi0, pi1) -> np.ndarray:
    r"""Logarithm map: optimal-transport displacement ``T(x_a) - x_a`` at the cell centres.

    **1-D actions**: ``T = Q_1 o F_0``, the monotone map between the piecewise-constant laws,
    at the cell centre, i.e. at the cell's mid-mass level (exact). It is read off the pieces of
    the monotone coupling (the merge over unassigned amounts used by :func:`geodesic`): the
    piece of cell ``a`` that holds the cell's middle maps it affinely into its target cell. No
    level is formed as a cumulative sum, so every cell keeps full relative precision, whatever
    lies on either side of it: ``log(pi, pi) = 0`` exactly on every cell with mass. A zero-mass
    cell gets the position where the next cell of positive mass starts (irrelevant: it carries
    no mass).

    **Multi-D actions**: barycentric projection of the optimal plan between the atoms,
    ``T(x_i) = sum_j P_ij y_j / sum_j P_ij``; cells where ``pi0`` has no mass get ``v = 0``.

    Returns
    -------
    ndarray ``(nS, nA, da)`` -- a velocity field for :func:`exp`; ``exp(pi0, log(pi0, pi1))``
    is ``pi1`` up to a grid error (see ``docs/geometry.md``, section 5: a few ``h`` where ``pi0``
    is concentrated on few cells).
    """
    m0, m1, A = _check_pair(pi0, pi1, "log")
    nS, nA = m0.shape
    X = A.centers
    if A.ndim == 1:
        K, I, J, _, _, F = coupling_1d(m0, m1)
        T = np.empty((nS, nA))
        _map_at_centres_1d(K, I, J, F, np.ascontiguousarray(m0), T)
        # in cell units: the centre of cell a is a + 1/2
        return (float(A.spacing[0]) * (T - (np.arange(nA) + 0.5)[None, :]))[:, :, None]
    v = np.zeros((nS, nA, A.ndim))
    for s, (I, J, P) in enumerate(_plans_multi(m0, m1, A)):
        mass = np.bincount(I, P, minlength=nA)
        bary = np.stack([np.bincount(I, P * X[J, d], minlength=nA) for d in range(A.ndim)], 1)
        pos = mass > 0
        v[s, pos] = bary[pos] / mass[pos, None] - X[pos]
    return v
