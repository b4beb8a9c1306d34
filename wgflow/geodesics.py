r"""Geodesics of the policy-dependent Wasserstein metric (1-D action grids).

The WFRL metric on policies :math:`\pi : S \to \mathcal P_2(A)` is

.. math::

    g_\pi(v, w) = \sum_s \omega_\pi(s) \sum_a \pi(a|s)\, v(s,a)\, w(s,a),

with :math:`\omega_\pi` the normalized discounted occupancy
:math:`d_\pi = (1-\gamma)\mu_0^T (I-\gamma P_\pi)^{-1}` (:class:`~wgflow.Discounted`) or the
stationary law :math:`\rho_\pi` (:class:`~wgflow.Average`). For *fixed* weights the geodesics
are state-wise McCann interpolations; because :math:`\omega_\pi` moves with :math:`\pi`, the
true geodesics of :math:`g` are not. :func:`metric_geodesic` computes them by minimizing a
discrete path energy in Lagrangian (quantile) coordinates; :func:`path_energy` evaluates the
same energy and length on any discrete path.

Discretization (see ``docs/metric_geodesics.md`` for the derivation)
---------------------------------------------------------------------
Per state ``s`` a common set of knot levels ``0 = u_0 <= u_1 <= ... <= u_n = 1`` is chosen: the
union of the cumulative masses of the two endpoint policies (so both endpoint quantile
functions are *exactly* piecewise linear on it; a zero-mass gap gives a pair of knots at the
same level) and a uniform refinement ``j / M``. A policy along the path is given by knot
positions ``X(s, i)`` in the action box; the law it represents is the push-forward of the
uniform law on ``[0, 1]`` by the piecewise-linear map ``u -> X(s, u)`` (piecewise-constant
density between knots); its cell masses -- from which the weights are evaluated -- are its linear
(cloud-in-cell) deposition on the cell centres (default) or its exact cell integrals
(``deposition="exact"``). The discrete energy of a path
``X_0, ..., X_K`` (endpoints fixed) is

.. math::

    E = K \sum_{k=0}^{K-1} \sum_s \bar\omega_k(s)\, e_k(s), \qquad
    e_k(s) = \int_0^1 |X_{k+1}(s,u) - X_k(s,u)|^2 du, \qquad
    \bar\omega_k = \tfrac12(\omega_{\pi_k} + \omega_{\pi_{k+1}}),

(``e_k`` is integrated exactly for piecewise-linear ``X``) and its length is
:math:`L = \sum_k (\sum_s \bar\omega_k(s) e_k(s))^{1/2}`; Cauchy--Schwarz gives
:math:`E \ge L^2` with equality at constant speed. The gradient of ``E`` is exact: the
dependence of :math:`\omega_{\pi_k}` on the node is differentiated by one adjoint linear solve per
node (same matrix as the evaluation) and the chain rule through the cell masses.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.optimize import minimize

from .errors import ConvergenceError, NotUnichainError, ValidationError
from .evaluation import _check_objective, _check_policy, recurrent_classes
from .grids import Grid
from .kernels import policy_matrix
from .mdp import MDP
from .objectives import Discounted, Objective
from .policy import Policy

__all__ = ["metric_geodesic", "path_energy", "wasserstein_1d", "GeodesicResult", "PathEnergy", "QuantilePath",
           "switching_chain"]

_LEVEL_TOL = 1e-12     # knot levels closer than this are merged


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class QuantilePath:
    """A discrete path of policies in Lagrangian (quantile) coordinates.

    Attributes
    ----------
    levels : ndarray ``(nS, n_knots)``
        Knot levels ``u`` per state, non-decreasing from 0 to 1 (padding knots sit at level 1).
    positions : ndarray ``(n_nodes, nS, n_knots)``
        Knot positions ``X_k(s, i)`` (the quantile function at ``levels``) at each node.
    free : ndarray ``(nS, n_knots)`` of bool
        Knots that are real (not padding); only these are optimized at interior nodes.
    actions : Grid
        The 1-D action grid.
    deposition : {"linear", "exact"}
        How knots are turned into cell masses (see :func:`metric_geodesic`).
    end_masses : tuple of two arrays or None
        Exact masses of the first and last node (the endpoint policies); when given they are
        used for those nodes instead of the deposition of their knots.
    """

    levels: np.ndarray
    positions: np.ndarray
    free: np.ndarray
    actions: Grid
    deposition: str = "linear"
    end_masses: tuple | None = None

    @property
    def n_nodes(self) -> int:
        return self.positions.shape[0]

    def masses(self, k: int) -> np.ndarray:
        """Cell masses ``(nS, nA)`` of node ``k`` (deposition of the represented law)."""
        k = range(self.n_nodes)[k]
        if self.end_masses is not None and k in (0, self.n_nodes - 1):
            return np.array(self.end_masses[0 if k == 0 else 1])
        return _masses_from_knots(self.positions[k], self.levels, _edges(self.actions), self.deposition)

    def policy(self, k: int, states: Grid | None = None) -> Policy:
        """Node ``k`` as a :class:`~wgflow.Policy` on the action grid."""
        return Policy(_clean_masses(self.masses(k)), self.actions, states, validate=True)


@dataclass
class PathEnergy:
    """Energy and length of a discrete path in the policy-dependent metric.

    Attributes
    ----------
    energy : float
        :math:`E = K \\sum_k \\sum_s \\bar\\omega_k(s)\\, W_k(s)^2`.
    length : float
        :math:`L = \\sum_k (\\sum_s \\bar\\omega_k(s)\\, W_k(s)^2)^{1/2}`.
    weights : ndarray ``(n_nodes, nS)``
        :math:`\\omega_{\\pi_k}` at every node.
    segment_lengths : ndarray ``(K,)``
        The summands of ``length``.
    squared_displacements : ndarray ``(K, nS)``
        :math:`W_k(s)^2`: the squared displacement of state ``s`` on segment ``k``.
    """

    energy: float
    length: float
    weights: np.ndarray
    segment_lengths: np.ndarray
    squared_displacements: np.ndarray


@dataclass
class GeodesicResult:
    """Result of :func:`metric_geodesic`.

    Attributes
    ----------
    policies : list of Policy
        The path ``pi_0 = pi0, ..., pi_K = pi1`` (the endpoints are the given policies).
    times : ndarray ``(n_nodes,)``
        Curve parameter ``k / K`` of each node (the minimizer of the energy is parametrized at
        constant speed, so these are also arc-length fractions up to the discretization; the
        measured ones are ``diagnostics["arclength"]``).
    energy, length : float
        Discrete energy and length of the optimized path.
    mccann_energy, mccann_length : float
        The same functionals on the state-wise McCann path (straight quantile interpolation at
        the same ``times``), weighted by the policy-dependent ``omega``.
    weights : ndarray ``(n_nodes, nS)``
        Metric weights ``omega_{pi_k}`` along the optimized path.
    mccann_weights : ndarray ``(n_nodes, nS)``
        Metric weights along the McCann path.
    quantiles, mccann_quantiles : QuantilePath
        Both paths in Lagrangian coordinates.
    diagnostics : dict
        ``iterations``, ``function_evaluations``, ``gradient_norm`` (max-norm of the projected
        gradient in the optimizer's scaled variables), ``message``, ``converged``,
        ``arclength``, ``monotone`` (whether every node's knots are non-decreasing),
        ``monotonicity_violation`` (largest decrease between consecutive knots, in cell widths),
        timings.
    """

    policies: list
    times: np.ndarray
    energy: float
    length: float
    mccann_energy: float
    mccann_length: float
    weights: np.ndarray
    mccann_weights: np.ndarray
    quantiles: QuantilePath
    mccann_quantiles: QuantilePath
    diagnostics: dict = field(default_factory=dict)

    @property
    def mccann_policies(self) -> list:
        """The McCann path as policies (endpoints included)."""
        states = self.policies[0].states
        pols = [self.mccann_quantiles.policy(k, states) for k in range(1, len(self.times) - 1)]
        return [self.policies[0]] + pols + [self.policies[-1]]

    def summary(self) -> str:
        d = self.diagnostics
        return (f"metric geodesic: {len(self.times)} nodes, length {self.length:.6g} "
                f"(McCann {self.mccann_length:.6g}, ratio {self.length / max(self.mccann_length, 1e-300):.4f}), "
                f"energy {self.energy:.6g} (McCann {self.mccann_energy:.6g}); "
                f"{d.get('iterations')} iterations, {d.get('message')}")


# ---------------------------------------------------------------------------------------------
# 1-D quantile utilities (piecewise-constant densities on a cell-centred grid)
# ---------------------------------------------------------------------------------------------
def _action_grid(mdp: MDP, what: str) -> Grid:
    A = mdp.require_actions(what)
    if A.ndim != 1:
        raise ValidationError(f"{what} works on 1-D action grids (quantile coordinates); this MDP's "
                              f"action grid has {A.ndim} dimensions")
    if A.periodic[0]:
        raise ValidationError(f"{what} needs a non-periodic action axis (quantile coordinates on an "
                              "interval); this action grid is periodic")
    return A


def _edges(A: Grid) -> np.ndarray:
    lo, hi = A.bounds[0]
    e = lo + np.arange(A.shape[0] + 1) * A.spacing[0]
    e[-1] = hi
    return e


def _cdf(m: np.ndarray) -> np.ndarray:
    """CDF at the cell edges, ``(..., nA + 1)``, from 0 to exactly 1 (monotone)."""
    F = np.concatenate([np.zeros(m.shape[:-1] + (1,)), np.cumsum(m, axis=-1)], axis=-1)
    F = F / F[..., -1:]
    return np.maximum.accumulate(np.clip(F, 0.0, 1.0), axis=-1)


def _quantile(F: np.ndarray, edges: np.ndarray, u: np.ndarray, side: str) -> np.ndarray:
    """Quantile of the piecewise-constant law with edge-CDF ``F`` (one state) at levels ``u``.

    ``side="left"``: ``Q(u-) = inf{x : F(x) >= u}`` (needs ``u > 0``); ``side="right"``:
    ``Q(u+) = inf{x : F(x) > u}`` (needs ``u < 1``). Linear inside each cell.
    """
    nA = F.size - 1
    u = np.asarray(u, dtype=float)
    if side == "left":
        i = np.clip(np.searchsorted(F, u, side="left"), 1, nA)      # F[i-1] < u <= F[i]
        c = i - 1
    else:
        c = np.clip(np.searchsorted(F, u, side="right") - 1, 0, nA - 1)   # F[c] <= u < F[c+1]
    dm = F[c + 1] - F[c]
    frac = np.where(dm > 0, (u - F[c]) / np.where(dm > 0, dm, 1.0), 0.0 if side == "right" else 1.0)
    x = edges[c] + np.clip(frac, 0.0, 1.0) * (edges[c + 1] - edges[c])
    return x


def _common_knots(m0: np.ndarray, m1: np.ndarray, edges: np.ndarray, n_quantiles: int):
    """Knot levels on which both endpoint quantile functions are exactly piecewise linear.

    Returns ``(U, X0, X1, free, side)`` of shape ``(nS, n_knots)``: levels, positions of both
    endpoints, real-knot mask, and which one-sided limit each knot is (-1 left member of a jump
    pair, +1 right member, 0 single knot).
    """
    nS = m0.shape[0]
    F0, F1 = _cdf(m0), _cdf(m1)
    width = edges[-1] - edges[0]
    xtol = 1e-12 * width
    uni = np.linspace(0.0, 1.0, n_quantiles + 1) if n_quantiles > 0 else np.array([0.0, 1.0])
    rows = []
    for s in range(nS):
        lv = np.unique(np.concatenate([F0[s], F1[s], uni]))
        # levels closer than _LEVEL_TOL form one knot; the quantile functions may still move
        # across the merged gap (a negligible mass, e.g. a 1e-13 tail cell), so the knot takes
        # the left limit at the gap's lower end and the right limit at its upper end: a jump
        # pair when they differ (the negligible mass is dropped, never spread across the box)
        start = np.concatenate([[True], np.diff(lv) > _LEVEL_TOL])
        first = np.nonzero(start)[0]
        last = np.concatenate([first[1:] - 1, [lv.size - 1]])
        u_lo, u_hi = lv[first], lv[last]
        lv = u_lo.copy()
        lv[0], lv[-1] = 0.0, 1.0
        if lv.size < 2:
            lv = np.array([0.0, 1.0])
            u_lo, u_hi = np.array([0.0, 1.0]), np.array([u_hi[0], 1.0])
        u_hi[-1] = 1.0
        inner_lo, inner_hi = u_lo[1:-1], u_hi[1:-1]
        L0 = np.concatenate([[_quantile(F0[s], edges, 0.0, "right")], _quantile(F0[s], edges, inner_lo, "left"),
                             [_quantile(F0[s], edges, max(u_lo[-1], 1e-300), "left")]])
        R0 = np.concatenate([[_quantile(F0[s], edges, min(u_hi[0], 1.0 - 1e-16), "right")],
                             _quantile(F0[s], edges, inner_hi, "right"), [_quantile(F0[s], edges, 1.0, "left")]])
        L1 = np.concatenate([[_quantile(F1[s], edges, 0.0, "right")], _quantile(F1[s], edges, inner_lo, "left"),
                             [_quantile(F1[s], edges, max(u_lo[-1], 1e-300), "left")]])
        R1 = np.concatenate([[_quantile(F1[s], edges, min(u_hi[0], 1.0 - 1e-16), "right")],
                             _quantile(F1[s], edges, inner_hi, "right"), [_quantile(F1[s], edges, 1.0, "left")]])
        jump = (np.abs(R0 - L0) > xtol) | (np.abs(R1 - L1) > xtol)
        U, X0, X1, side = [], [], [], []
        for i in range(lv.size):
            if jump[i]:
                U += [lv[i], lv[i]]
                X0 += [L0[i], R0[i]]
                X1 += [L1[i], R1[i]]
                side += [-1, 1]
            else:
                U.append(lv[i])
                X0.append(R0[i] if i < lv.size - 1 else L0[i])
                X1.append(R1[i] if i < lv.size - 1 else L1[i])
                side.append(0)
        rows.append((np.array(U), np.array(X0), np.array(X1), np.array(side)))
    nk = max(r[0].size for r in rows)
    U = np.ones((nS, nk))
    X0 = np.empty((nS, nk))
    X1 = np.empty((nS, nk))
    free = np.zeros((nS, nk), dtype=bool)
    side = np.zeros((nS, nk), dtype=np.int8)
    for s, (u, x0, x1, sd) in enumerate(rows):
        n = u.size
        U[s, :n], X0[s, :n], X1[s, :n], side[s, :n] = u, x0, x1, sd
        X0[s, n:], X1[s, n:] = x0[-1], x1[-1]
        free[s, :n] = True
    return U, X0, X1, free, side


def _positions_at_knots(m: np.ndarray, edges: np.ndarray, U: np.ndarray, free: np.ndarray,
                        side: np.ndarray) -> np.ndarray:
    """Quantile positions of masses ``m`` at the knots (one-sided limits as in ``side``)."""
    F = _cdf(m)
    X = np.empty(U.shape)
    for s in range(U.shape[0]):
        n = int(free[s].sum())
        u = U[s, :n]
        left = (side[s, :n] < 0) | (u >= 1.0)
        left &= u > 0.0
        x = np.where(left, _quantile(F[s], edges, u, "left"), _quantile(F[s], edges, np.minimum(u, 1.0), "right"))
        X[s, :n] = x
        X[s, n:] = x[-1]
    return X


_DEPOSITIONS = ("linear", "exact")


def _profile_means(X: np.ndarray, edges: np.ndarray, deposition: str, grad: bool = False):
    r"""Means of the cumulative profiles ``phi_c`` over every segment ``[X_i, X_{i+1}]``.

    ``phi_c`` (one per interior edge ``e_c``, ``c = 1..nA-1``) is 1 left of the edge and 0 right
    of it, with a transition of half-width ``delta``: ``delta = 0`` (``"exact"``: the indicator
    of ``x <= e_c``) or ``delta = h/2`` (``"linear"``: the ramp between the two neighbouring cell
    centres, so ``phi_c - phi_{c+1}`` is the hat function of linear deposition). Returns
    ``mean (nS, nseg, nA-1)`` and, with ``grad``, its derivatives w.r.t. the lower and upper end
    of each segment (``dmean/dhi = (phi(hi) - mean)/w``, ``dmean/dlo = (mean - phi(lo))/w``).
    """
    h = edges[1] - edges[0]
    delta = 0.5 * h if deposition == "linear" else 0.0
    e = edges[None, None, 1:-1]
    a_, b_ = e - delta, e + delta
    x0 = X[:, :-1, None]
    x1 = X[:, 1:, None]
    lo = np.minimum(x0, x1)
    hi = np.maximum(x0, x1)
    w = hi - lo
    wide = w > 1e-9 * (edges[-1] - edges[0])
    ws = np.where(wide, w, 1.0)

    if delta > 0:
        def phi(x):
            return np.clip((b_ - x) / (2 * delta), 0.0, 1.0)

        def dphi(x):
            return np.where((x > a_) & (x < b_), -1.0 / (2 * delta), 0.0)
        p = np.maximum(lo, a_)
        q = np.minimum(hi, b_)
        len2 = np.clip(q - p, 0.0, None)
        integral = np.clip(np.minimum(hi, a_) - lo, 0.0, None) + len2 * ((b_ - p) + (b_ - q)) / (4 * delta)
    else:
        def phi(x):
            return (x <= e).astype(float)

        def dphi(x):
            return np.zeros(np.broadcast(x, e).shape)
        integral = np.clip(np.minimum(hi, e) - lo, 0.0, None)
    mid = 0.5 * (lo + hi)
    mean = np.where(wide, np.clip(integral / ws, 0.0, 1.0), phi(mid))
    if not grad:
        return mean
    d_mid = 0.5 * dphi(mid)
    d_hi = np.where(wide, (phi(hi) - mean) / ws, d_mid)
    d_lo = np.where(wide, (mean - phi(lo)) / ws, d_mid)
    return mean, d_lo, d_hi, x0[:, :, 0] <= x1[:, :, 0]


def _masses_from_knots(X: np.ndarray, U: np.ndarray, edges: np.ndarray,
                       deposition: str = "linear") -> np.ndarray:
    r"""Cell masses of the law represented by knots ``X`` at levels ``U``.

    The law is the push-forward of ``Uniform[0, 1]`` by the piecewise-linear ``u -> X(u)``:
    segment ``i`` carries mass ``du_i`` spread uniformly between ``X_i`` and ``X_{i+1}`` (an atom
    if they coincide), whatever their order, so the map is valid -- conservative and
    non-negative -- for non-monotone ``X`` too. With ``deposition="exact"`` the masses are the
    exact cell integrals of that law, ``m_c = F(e_{c+1}) - F(e_c)``; with ``"linear"`` they are
    its linear (hat-function, cloud-in-cell) deposition on the cell centres, i.e. the cell
    integrals of the law smoothed by a uniform kernel of one cell width.
    ``F_c = sum_i du_i mean_i(phi_c)``, ``m = diff([0, F, 1])``.
    """
    du = np.diff(U, axis=1)[:, :, None]
    F_in = np.sum(du * _profile_means(X, edges, deposition), axis=1)          # (nS, nA - 1)
    nS = X.shape[0]
    F = np.concatenate([np.zeros((nS, 1)), F_in, np.ones((nS, 1))], axis=1)
    return np.diff(F, axis=1)


def _masses_vjp(X: np.ndarray, U: np.ndarray, edges: np.ndarray, gm: np.ndarray,
                deposition: str = "linear") -> np.ndarray:
    """Vector-Jacobian product ``d/dX sum_{s,c} gm[s,c] m[s,c](X)``, shape of ``X``."""
    du = np.diff(U, axis=1)[:, :, None]
    _, d_lo, d_hi, a_lo = _profile_means(X, edges, deposition, grad=True)
    gF = (gm[:, :-1] - gm[:, 1:])[:, None, :]                   # dL/dF_c at the interior edges
    g_lo = np.sum(du * d_lo * gF, axis=2)
    g_hi = np.sum(du * d_hi * gF, axis=2)
    g = np.zeros_like(X)
    g[:, :-1] += np.where(a_lo, g_lo, g_hi)
    g[:, 1:] += np.where(a_lo, g_hi, g_lo)
    return g


def _segment_energy(Xa: np.ndarray, Xb: np.ndarray, U: np.ndarray, grad: bool = False):
    r"""``e(s) = int_0^1 |Xb - Xa|^2 du`` for piecewise-linear ``D = Xb - Xa`` (exact).

    ``e = sum_i du_i (D_i^2 + D_i D_{i+1} + D_{i+1}^2) / 3``; with ``grad`` also ``de/dD``.
    """
    D = Xb - Xa
    du = np.diff(U, axis=1)
    Dl, Dr = D[:, :-1], D[:, 1:]
    e = np.sum(du * (Dl * Dl + Dl * Dr + Dr * Dr), axis=1) / 3.0
    if not grad:
        return e
    g = np.zeros_like(D)
    g[:, :-1] += du * (2.0 * Dl + Dr) / 3.0
    g[:, 1:] += du * (Dl + 2.0 * Dr) / 3.0
    return e, g


def _clean_masses(m: np.ndarray) -> np.ndarray:
    m = np.clip(m, 0.0, None)
    return m / m.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# metric weights and their adjoint
# ---------------------------------------------------------------------------------------------
class _Weights:
    r"""Metric weights ``omega_pi`` of masses ``m`` and the adjoint of ``L = f . omega_pi``.

    Discounted: ``A = I - gamma P_pi``, ``omega = (1-gamma) A^{-T} mu0``,
    ``dL/dpi(s,a) = gamma omega(s) (P x)(s,a)`` with ``A x = f``.
    Average: bordered ``M`` (``I - P_pi`` with column ``ref`` replaced by ones), ``M^T rho =
    e_ref``, ``dL/dpi(s,a) = rho(s) (P z~)(s,a)`` with ``M z = f`` and ``z~ = z`` except
    ``z~[ref] = 0`` (``z~`` is the bias of the cost ``f`` normalized by ``h[ref] = 0``).
    """

    def __init__(self, mdp: MDP, objective: Objective, m: np.ndarray):
        self.mdp = mdp
        self.objective = objective
        nS = mdp.n_states
        P_pi = policy_matrix(mdp.P, m)
        I = sp.identity(nS, format="csc")
        if isinstance(objective, Discounted):
            g = objective.gamma
            A = (I - g * P_pi).tocsc()
            self.lu = spla.splu(A, permc_spec="COLAMD")
            mu0 = objective.initial_law(nS)
            self.omega = (1.0 - g) * self.lu.solve(mu0, trans="T")
            self.ref = None
        else:
            classes = recurrent_classes(P_pi)
            if len(classes) != 1:
                raise NotUnichainError(
                    f"metric geodesics with Average() need unichain policies along the path, but a "
                    f"node's chain has {len(classes)} recurrent classes (sizes "
                    f"{[len(c) for c in classes]}); use Discounted(...)", classes)
            ref = int(classes[0][0])
            M = (I - P_pi).tocsc()
            M.data[M.indptr[ref]:M.indptr[ref + 1]] = 0.0
            M = (M + sp.csc_matrix((np.ones(nS), (np.arange(nS), np.full(nS, ref))),
                                   shape=(nS, nS))).tocsc()
            self.lu = spla.splu(M, permc_spec="COLAMD")
            e = np.zeros(nS)
            e[ref] = 1.0
            self.omega = self.lu.solve(e, trans="T")
            self.ref = ref

    def adjoint(self, f: np.ndarray) -> np.ndarray:
        """Gradient ``(nS, nA)`` of ``sum_s f(s) omega_pi(s)`` w.r.t. the masses ``pi(a|s)``."""
        mdp = self.mdp
        nS, nA = mdp.n_states, mdp.n_actions
        if self.ref is None:
            x = self.lu.solve(np.asarray(f, dtype=float))
            return self.objective.gamma * self.omega[:, None] * (mdp.P @ x).reshape(nS, nA)
        z = self.lu.solve(np.asarray(f, dtype=float))
        z[self.ref] = 0.0
        return self.omega[:, None] * (mdp.P @ z).reshape(nS, nA)


def _weights_of(mdp, objective, m):
    return _Weights(mdp, objective, m).omega


# ---------------------------------------------------------------------------------------------
# the discrete energy in Lagrangian coordinates
# ---------------------------------------------------------------------------------------------
class _PathProblem:
    """Energy, length and exact gradient of a path with fixed endpoints."""

    def __init__(self, mdp, objective, U, X_end0, X_end1, edges, m0, m1, n_nodes, free,
                 deposition="linear"):
        self.mdp, self.objective, self.deposition = mdp, objective, deposition
        self.U, self.edges, self.free = U, edges, free
        self.K = n_nodes - 1
        self.X0, self.X1 = X_end0, X_end1
        self.m_end = (m0, m1)
        self.w_end = (_weights_of(mdp, objective, m0), _weights_of(mdp, objective, m1))
        self.n_eval = 0

    def full(self, z: np.ndarray) -> np.ndarray:
        """Node positions ``(K+1, nS, nk)`` from the interior free variables ``z``."""
        K = self.K
        t = np.linspace(0.0, 1.0, K + 1)[:, None, None]
        X = (1.0 - t) * self.X0[None] + t * self.X1[None]     # padding knots follow the line
        if K > 1:
            inner = X[1:-1]
            inner[:, self.free] = z.reshape(K - 1, -1)
        X[0], X[-1] = self.X0, self.X1
        return X

    def pack(self, X: np.ndarray) -> np.ndarray:
        return X[1:-1][:, self.free].ravel().copy()

    def node_masses(self, X, k):
        if k == 0:
            return self.m_end[0]
        if k == self.K:
            return self.m_end[1]
        return _masses_from_knots(X[k], self.U, self.edges, self.deposition)

    def evaluate(self, X: np.ndarray, grad: bool = False):
        K = self.K
        solvers = [None] * (K + 1)
        omega = np.empty((K + 1, self.U.shape[0]))
        omega[0], omega[K] = self.w_end
        for k in range(1, K):
            solvers[k] = _Weights(self.mdp, self.objective, self.node_masses(X, k))
            omega[k] = solvers[k].omega
        wbar = 0.5 * (omega[:-1] + omega[1:])                     # (K, nS)
        es, gDs = [], []
        for k in range(K):
            if grad:
                e, gD = _segment_energy(X[k], X[k + 1], self.U, grad=True)
                gDs.append(gD)
            else:
                e = _segment_energy(X[k], X[k + 1], self.U)
            es.append(e)
        es = np.array(es)                                          # (K, nS)
        a = np.sum(wbar * es, axis=1)                              # (K,)
        E = float(K * np.sum(a))
        seg = np.sqrt(np.maximum(a, 0.0))
        out = dict(energy=E, length=float(np.sum(seg)), segment_lengths=seg, weights=omega,
                   squared_displacements=es)
        if grad:
            gX = np.zeros_like(X)
            for k in range(1, K):
                gX[k] = K * (wbar[k - 1][:, None] * gDs[k - 1] - wbar[k][:, None] * gDs[k])
                f = 0.5 * K * (es[k - 1] + es[k])                  # dE / d omega_k
                gm = solvers[k].adjoint(f)
                gX[k] += _masses_vjp(X[k], self.U, self.edges, gm, self.deposition)
            out["grad"] = gX
        self.n_eval += 1
        return out


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def _as_masses(mdp, p, name):
    try:
        return _check_policy(mdp, p)
    except ValidationError as exc:
        raise ValidationError(f"{name}: {exc}") from exc


def path_energy(mdp: MDP, objective: Objective, path) -> PathEnergy:
    r"""Energy and length of a discrete path of policies in the policy-dependent metric.

    For nodes :math:`\pi_0, \dots, \pi_K`,

    .. math::

        E = K \sum_{k<K} \sum_s \bar\omega_k(s)\, W_k(s)^2, \quad
        L = \sum_{k<K} \Big(\sum_s \bar\omega_k(s)\, W_k(s)^2\Big)^{1/2}, \quad
        \bar\omega_k = \tfrac12 (\omega_{\pi_k} + \omega_{\pi_{k+1}}),

    with :math:`\omega_\pi` the metric weights of ``objective`` evaluated exactly at each node.

    Parameters
    ----------
    mdp : MDP
        With a 1-D, non-periodic action grid.
    objective : Discounted or Average
    path : sequence of Policy (or mass arrays ``(nS, nA)``), QuantilePath or GeodesicResult
        For policies, :math:`W_k(s) = W_2(\pi_k(\cdot|s), \pi_{k+1}(\cdot|s))` computed exactly for
        the piecewise-constant densities (quantile formula). For a :class:`QuantilePath` (or a
        result's ``quantiles``), :math:`W_k(s)^2` is the Lagrangian cost
        :math:`\int_0^1 |X_{k+1} - X_k|^2 du` the optimizer uses (equal to :math:`W_2^2` when
        the knots are monotone) and the weights are those of the represented laws.

    Returns
    -------
    PathEnergy
        ``energy >= length**2`` (Cauchy--Schwarz), with equality iff all segments have equal
        length.
    """
    _check_objective(objective)
    A = _action_grid(mdp, "path_energy")
    edges = _edges(A)
    if isinstance(path, GeodesicResult):
        path = path.quantiles
    if isinstance(path, QuantilePath):
        if path.n_nodes < 2:
            raise ValidationError("a path needs at least 2 nodes")
        X = path.positions
        K = X.shape[0] - 1
        omega = np.array([_weights_of(mdp, objective, path.masses(k)) for k in range(K + 1)])
        es = np.array([_segment_energy(X[k], X[k + 1], path.levels) for k in range(K)])
    else:
        masses = [_as_masses(mdp, p, f"path node {k}") for k, p in enumerate(path)]
        if len(masses) < 2:
            raise ValidationError("a path needs at least 2 nodes")
        K = len(masses) - 1
        omega = np.array([_weights_of(mdp, objective, m) for m in masses])
        es = []
        for k in range(K):
            U, X0, X1, _, _ = _common_knots(masses[k], masses[k + 1], edges, 0)
            es.append(_segment_energy(X0, X1, U))
        es = np.array(es)
    wbar = 0.5 * (omega[:-1] + omega[1:])
    a = np.sum(wbar * es, axis=1)
    seg = np.sqrt(np.maximum(a, 0.0))
    return PathEnergy(float(K * a.sum()), float(seg.sum()), omega, seg, es)


def wasserstein_1d(m0: np.ndarray, m1: np.ndarray, actions: Grid) -> np.ndarray:
    """Per-state exact :math:`W_2` between the piecewise-constant densities of two mass arrays."""
    U, X0, X1, _, _ = _common_knots(np.atleast_2d(m0), np.atleast_2d(m1), _edges(actions), 0)
    return np.sqrt(np.maximum(_segment_energy(X0, X1, U), 0.0))


def _progress_bar(progress, max_iter):
    if callable(progress) and not isinstance(progress, bool):
        return None, progress
    from ._progress import enabled as _enabled, tqdm_class
    enabled = _enabled(progress)
    if not enabled:
        return None, None
    return tqdm_class()(total=max_iter, desc="metric geodesic", leave=False), None


def metric_geodesic(mdp: MDP, objective: Objective, pi0, pi1, n_nodes: int = 8,
                    n_quantiles: int = 64, tol: float = 1e-10, max_iter: int = 1000,
                    deposition: str = "linear", initial=None, progress=None) -> GeodesicResult:
    r"""Geodesic of the policy-dependent Wasserstein metric between two policies (1-D actions).

    Minimizes the discrete path energy

    .. math::

        E(X_1, \dots, X_{K-1}) = K \sum_{k=0}^{K-1} \sum_s \bar\omega_k(s)
        \int_0^1 |X_{k+1}(s,u) - X_k(s,u)|^2\, du,
        \qquad \bar\omega_k = \tfrac12(\omega_{\pi_k} + \omega_{\pi_{k+1}}),

    over the interior quantile functions :math:`X_k(s, \cdot)` (piecewise linear on a fixed set
    of knot levels; :math:`X_0, X_K` are the exact quantile functions of ``pi0``, ``pi1``) with
    L-BFGS-B, the action box as bounds and the exact gradient (adjoint of the occupancy /
    stationary law, chain rule through the cell masses). For action-independent
    transitions :math:`\omega` is constant and the minimizer is the state-wise McCann
    interpolation, which is also the initial guess.

    Parameters
    ----------
    mdp : MDP
        With a 1-D, non-periodic action grid.
    objective : Discounted or Average
        Defines the weights: discounted occupancy :math:`d_\pi` or stationary law
        :math:`\rho_\pi` (each node must then be unichain).
    pi0, pi1 : Policy or masses ``(nS, nA)``
        Endpoints (kept exactly).
    n_nodes : int
        Number of path nodes ``K + 1`` including both endpoints (>= 2).
    n_quantiles : int
        ``M``: the uniform levels ``j / M`` added to the endpoints' cumulative masses as knots.
    deposition : {"linear", "exact"}
        How an interior node's knots become cell masses (from which :math:`\omega` is
        evaluated). ``"exact"``: exact cell integrals of the represented piecewise-constant
        law; the energy is then only piecewise smooth with a gradient that concentrates on the
        knots next to a cell edge (transitions are constant per action cell), which slows
        L-BFGS-B and produces sub-cell wiggles. ``"linear"`` (default): linear (cloud-in-cell)
        deposition of the represented law on the cell centres -- the exact cell integrals of the
        law smoothed by one cell width: an O(h^2) change of the masses of a smooth density, which
        conserves mass and mean -- whose gradient is spread over all
        knots (the discrete action-gradient of the first variation). The endpoints always use the
        given masses.
    tol : float
        Relative tolerance of L-BFGS-B (``ftol``; ``gtol`` on the scaled gradient).
    max_iter : int
        L-BFGS-B iterations; reaching it without convergence raises :class:`ConvergenceError`.
    initial : sequence of ``n_nodes`` Policy / mass arrays, optional
        Initial path (its interior nodes are converted to knot positions); default McCann.
    progress : bool, callable or None
        tqdm bar (None: when stderr is a terminal or in a notebook), or ``progress(iteration, energy)``.

    Returns
    -------
    GeodesicResult

    Notes
    -----
    Monotonicity of the knots is *not* imposed: for a non-monotone ``X`` the node is the
    push-forward of the uniform law by ``X`` (still a valid law) and the Lagrangian cost
    :math:`\int|X_{k+1}-X_k|^2` is an upper bound of :math:`W_2^2`, with equality for
    monotone ``X``; so the constrained and unconstrained minima coincide (monotone rearrangement
    of a minimizer is a minimizer) and box bounds suffice. ``diagnostics["monotone"]`` reports
    whether the returned path is monotone.

    Examples
    --------
    >>> import wgflow as wg
    >>> from wgflow.geodesics import metric_geodesic, switching_chain
    >>> mdp = switching_chain(n_actions=24)
    >>> obj = wg.Discounted(gamma=0.9, initial=[1.0, 0.0])
    >>> pi0 = wg.Policy.gaussian(mdp, mean=-0.5, std=0.2)
    >>> pi1 = wg.Policy.gaussian(mdp, mean=0.5, std=0.2)
    >>> res = metric_geodesic(mdp, obj, pi0, pi1, n_nodes=5, n_quantiles=16)
    >>> bool(res.length < res.mccann_length)
    True
    """
    t_start = time.perf_counter()
    _check_objective(objective)
    A = _action_grid(mdp, "metric_geodesic")
    m0 = _as_masses(mdp, pi0, "pi0")
    m1 = _as_masses(mdp, pi1, "pi1")
    if int(n_nodes) != n_nodes or n_nodes < 2:
        raise ValidationError(f"n_nodes must be an integer >= 2, got {n_nodes!r}")
    if int(n_quantiles) != n_quantiles or n_quantiles < 0:
        raise ValidationError(f"n_quantiles must be an integer >= 0, got {n_quantiles!r}")
    n_nodes, n_quantiles = int(n_nodes), int(n_quantiles)
    if not (np.isfinite(tol) and tol > 0):
        raise ValidationError(f"tol must be > 0, got {tol!r}")
    p0 = pi0 if isinstance(pi0, Policy) else Policy(m0, A, mdp.states, validate=False)
    p1 = pi1 if isinstance(pi1, Policy) else Policy(m1, A, mdp.states, validate=False)
    edges = _edges(A)
    U, X0, X1, free, side = _common_knots(m0, m1, edges, n_quantiles)
    if deposition not in _DEPOSITIONS:
        raise ValidationError(f"deposition must be one of {_DEPOSITIONS}, got {deposition!r}")
    prob = _PathProblem(mdp, objective, U, X0, X1, edges, m0, m1, n_nodes, free, deposition)
    K = n_nodes - 1
    times = np.linspace(0.0, 1.0, n_nodes)

    X_mc = (1.0 - times[:, None, None]) * X0[None] + times[:, None, None] * X1[None]
    X_mc[0], X_mc[-1] = X0, X1
    mc = prob.evaluate(X_mc)
    t_setup = time.perf_counter()

    if initial is not None:
        init = list(initial)
        if len(init) != n_nodes:
            raise ValidationError(f"initial must hold n_nodes = {n_nodes} policies, got {len(init)}")
        Xi = X_mc.copy()
        for k in range(1, K):
            mk = _as_masses(mdp, init[k], f"initial node {k}")
            Xi[k] = _positions_at_knots(mk, edges, U, free, side)
        z0 = prob.pack(Xi)
    else:
        z0 = prob.pack(X_mc)

    diag = {"n_variables": int(z0.size), "n_knots": int(free.sum(axis=1).max()),
            "n_nodes": n_nodes, "n_quantiles": n_quantiles}
    if K <= 1 or z0.size == 0 or mc["energy"] == 0.0:
        X = X_mc
        res_info = dict(iterations=0, function_evaluations=0, gradient_norm=0.0,
                        message="no interior variables (or identical endpoints)", converged=True)
    else:
        # diagonal scaling: y = X * sqrt(mass of the knot * omega), so the Hessian of E in y is
        # O(1) on the diagonal whatever the knot spacing (tiny du's would otherwise stall L-BFGS)
        du = np.diff(U, axis=1)
        mass = np.zeros_like(U)
        mass[:, :-1] += du / 2
        mass[:, 1:] += du / 2
        om = mc["weights"][1:-1]                                     # (K-1, nS)
        om = np.maximum(om, 1e-3 * om.max(axis=1, keepdims=True))
        knot_mass = np.maximum(mass, 1e-6 / max(mass.shape[1], 1))
        scale = np.sqrt(2.0 * K * om[:, :, None] * knot_mass[None])[:, free].ravel()
        E_ref = max(mc["energy"], 1e-300)
        lo, hi = edges[0], edges[-1]
        bounds = list(zip(lo * scale, hi * scale))
        bar, cb_user = _progress_bar(progress, max_iter)
        it = [0]
        last = [np.nan]

        def fun(y):
            X = prob.full(y / scale)
            out = prob.evaluate(X, grad=True)
            last[0] = out["energy"]
            g = prob.pack(out["grad"]) / scale
            return out["energy"] / E_ref, g / E_ref

        def callback(y):
            it[0] += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(E=f"{last[0]:.8g}")
            if cb_user is not None:
                cb_user(it[0], last[0])

        try:
            opt = minimize(fun, z0 * scale, jac=True, method="L-BFGS-B", bounds=bounds,
                           callback=callback,
                           options=dict(maxiter=max_iter, ftol=tol, gtol=tol, maxcor=20))
        finally:
            if bar is not None:
                bar.close()
        y = np.clip(opt.x, [b[0] for b in bounds], [b[1] for b in bounds])
        X = prob.full(y / scale)
        # projected gradient (bounds active) in the scaled variables, relative to E_mccann
        _, g = fun(y)
        at_lo = (y <= np.array([b[0] for b in bounds])) & (g > 0)
        at_hi = (y >= np.array([b[1] for b in bounds])) & (g < 0)
        pg = np.where(at_lo | at_hi, 0.0, g)
        gnorm = float(np.max(np.abs(pg))) if pg.size else 0.0
        msg = opt.message if isinstance(opt.message, str) else str(opt.message)
        # the energy is only piecewise smooth (its gradient jumps where a knot crosses a cell edge
        # and the represented density jumps there), so the projected gradient need not vanish at
        # the minimizer: convergence is L-BFGS-B's relative-decrease test (or a small gradient)
        converged = bool(opt.success) or gnorm <= 1e-7
        if opt.status == 2:     # line search failed at a kink: as good as it gets, but say so
            converged = True
            msg = msg + " (line search stopped at a kink of the piecewise-smooth energy)"
        res_info = dict(iterations=int(opt.nit), function_evaluations=int(opt.nfev),
                        gradient_norm=gnorm, message=msg, converged=converged)
    t_opt = time.perf_counter()
    out = prob.evaluate(X)
    quant = QuantilePath(U, X, free, A, deposition, (m0, m1))
    mc_quant = QuantilePath(U, X_mc, free, A, deposition, (m0, m1))
    policies = [p0] + [quant.policy(k, mdp.states) for k in range(1, K)] + [p1]
    cum = np.concatenate([[0.0], np.cumsum(out["segment_lengths"])])
    steps = np.diff(X, axis=2)[:, free[:, 1:]]
    monotone = bool(np.all(steps >= -1e-12 * (edges[-1] - edges[0])))
    violation = float(max(0.0, -steps.min(initial=0.0)) / (edges[1] - edges[0]))
    diag.update(res_info)
    diag.update(arclength=cum / max(cum[-1], 1e-300), monotone=monotone,
                monotonicity_violation=violation,
                time_setup=t_setup - t_start, time_optimize=t_opt - t_setup,
                time_total=time.perf_counter() - t_start, energy_evaluations=prob.n_eval)
    result = GeodesicResult(policies, times, out["energy"], out["length"], mc["energy"], mc["length"],
                            out["weights"], mc["weights"], quant, mc_quant, diag)
    if not res_info["converged"]:
        raise ConvergenceError(
            f"metric_geodesic: L-BFGS-B stopped after {res_info['iterations']} iterations without "
            f"converging ({res_info['message']}; projected gradient {res_info['gradient_norm']:.3e}); "
            "raise max_iter or tol", {"result": result, **diag})
    return result


# ---------------------------------------------------------------------------------------------
# an example where the weights depend strongly on the policy
# ---------------------------------------------------------------------------------------------
def switching_chain(n_actions: int = 40, a_max: float = 1.0, sharpness: float = 3.0,
                    leak: float = 0.02, costs=None) -> MDP:
    r"""Two states where the action decides which state is visited next.

    From either state, action :math:`a \in [-a_{max}, a_{max}]` (cell centre) leads to state 1
    with probability :math:`p(a) = \epsilon + (1 - 2\epsilon)\,\sigma(k a)` (``leak``
    :math:`\epsilon`, ``sharpness`` :math:`k`, :math:`\sigma` the logistic function) and to state
    0 otherwise. Negative actions keep the chain in state 0, positive ones send it to state 1,
    so the occupancy :math:`\omega_\pi` depends strongly on :math:`\pi`: moving the policy of the
    rarely visited state is cheap in the metric, which the metric geodesic exploits.
    Costs default to ``a^2`` (they play no role in the metric).
    """
    A = Grid([(-a_max, a_max)], [n_actions])
    a = A.centers[:, 0]
    p = leak + (1.0 - 2.0 * leak) / (1.0 + np.exp(-sharpness * a))
    P = np.zeros((2, n_actions, 2))
    P[:, :, 1] = p[None, :]
    P[:, :, 0] = 1.0 - p[None, :]
    C = np.tile(a ** 2, (2, 1)) if costs is None else np.asarray(costs, dtype=float)
    return MDP.from_arrays(P, C, states=None, actions=A)
