r"""Second-order analysis: the Hessian of the energy on the grid policy space, its spectrum, rates.

Tangent vectors are **grid potentials** ``phi`` ``(nS, nA)`` (defined up to a constant per
state). A potential moves the masses by the discrete continuity equation

.. math:: \delta m = L_\theta(m)\,\phi,\qquad (L_\theta \phi)_i = \sum_{\text{faces } i\sim j} \theta_{ij}(m)\,\frac{\phi_i-\phi_j}{h^2},

(mass flows along ``grad phi``), with a face mobility ``theta`` (default ``"sg"``:
``theta = m_i m_j / logmean(m_i, m_j)``, the mobility of the Scharfetter--Gummel flux of the
``otto`` scheme at equilibrium). The metric is
``G(phi, psi) = sum_s w(s) sum_faces theta (phi_j - phi_i)(psi_j - psi_i) / h^2`` -- docs/design.md
section 2's ``g_pi`` with the policy mass on faces given by ``theta`` -- and the Hessian is

.. math:: H(\phi,\psi) = (L\phi)^T \nabla^2_m J\,(L\psi) + \tfrac12\,\nabla_m J\cdot\big(L'(m)[L\psi]\phi + L'(m)[L\phi]\psi\big),

the symmetrized second derivative of ``J`` along the curves ``d m/d eps = L_theta(m) phi`` with
``phi`` frozen (:func:`continuity_curve`). At a critical point the second term vanishes and ``H``
is the Riemannian Hessian, independent of the connection; away from critical points this is the
connection in which frozen potentials are parallel (docs/hessian.md).

``grad_m J`` and ``Hess_m J`` are exact: the gradient is ``kappa w(s) (Q + tau log(m/vol) + tau)``,
and a Hessian-vector product costs two sparse solves with the evaluation's matrices (the
response of ``V`` or ``h`` and of the weights). The *local* part of ``H`` is the second variation
with ``Q`` and the weights frozen (entropy curvature ``tau x / m`` and the ``grad J . m2`` term);
the *transport* part is the rest (responses of ``Q`` and of the weights).
"""
from __future__ import annotations

import time
import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .errors import ValidationError
from .evaluation import Evaluation, _check_objective, _check_policy, _evaluate_masses, _cell_volume
from .linalg import LinearSolveCache
from .mobility import (MASS_FLOOR, MOBILITIES, _dtheta_apply, _dtheta_transpose, face_mobilities,
                       laplacian_apply, mobility)
from .objectives import Discounted
from .policy import Policy

__all__ = ["hessian", "Hessian", "continuity_curve", "mobility", "laplacian_apply", "MASS_FLOOR",
           "predicted_rate", "measured_rate", "energy_gradient"]


def continuity_curve(mdp, policy, phi, eps: float, mobility_kind: str = "sg", substeps: int = 16):
    """Masses ``m(eps)`` solving ``dm/d eps = L_theta(m) phi`` from ``m(0) = policy.masses`` (RK4).

    The smooth discrete counterpart of the exponential curve ``(id + eps grad phi)_# pi``: the
    Hessian is the second derivative of ``J`` along these curves. Cells that are empty at
    ``eps = 0`` stay empty (no face of the support touches them); every other cell must stay
    positive.
    """
    A = mdp.require_actions("continuity_curve")
    m = (policy.masses if isinstance(policy, Policy) else np.asarray(policy, dtype=float)).copy()
    phi = np.asarray(phi, dtype=float).reshape(m.shape)
    if eps == 0:
        return m
    support = m >= MASS_FLOOR
    h = eps / substeps

    def f(x):
        if not np.all(x[support] > 0):      # also catches NaN
            raise ValidationError(f"continuity_curve: eps = {eps:g} empties a cell (a Runge-Kutta "
                                  "stage left the positive orthant); use a smaller eps")
        return laplacian_apply(x, phi, A, mobility_kind)

    for _ in range(substeps):
        k1 = f(m)
        k2 = f(m + 0.5 * h * k1)
        k3 = f(m + 0.5 * h * k2)
        k4 = f(m + h * k3)
        m = m + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    if not np.all(m[support] > 0):
        raise ValidationError(f"continuity_curve: eps = {eps:g} empties a cell; use a smaller eps")
    return m


# ---------------------------------------------------------------------------------------------
# exact derivatives of J in the masses
# ---------------------------------------------------------------------------------------------
class _MassDerivatives:
    """Gradient and Hessian-vector products of ``J(m)`` w.r.t. the masses (exact).

    With empty cells (``m = 0``) everything is restricted to the support: ``psi`` is set to ``Q``
    there (a finite placeholder no support face sees) and directions never move mass into them.
    """

    def __init__(self, mdp, objective, masses):
        self.mdp, self.objective, self.m = mdp, objective, masses
        self.tau = objective.entropy
        self.cache = LinearSolveCache(reuse=False)
        J, w, V, Q, c_pi, P_pi = _evaluate_masses(mdp, masses, objective, self.cache)
        self.J, self.w, self.V, self.Q = J, w, V, Q
        nS = mdp.n_states
        vol = _cell_volume(mdp)
        self.support = masses >= MASS_FLOOR
        if self.tau > 0:
            with np.errstate(divide="ignore"):
                logm = np.where(self.support, np.log(np.where(self.support, masses, 1.0) / vol), 0.0)
            self.psi = Q + self.tau * (logm + 1.0)
        else:
            self.psi = Q.copy()
        if isinstance(objective, Discounted):
            self.x = w / (1.0 - objective.gamma)        # unnormalized occupancy mu0^T (I - g P)^-1
        else:
            self.x = w
        self.grad = self.x[:, None] * self.psi
        # psi minus its policy mean per state: the same potential up to a per-state constant
        # (which no zero-sum direction sees), with much smaller rounding where psi is nearly
        # constant (at a critical point it is constant)
        self.psi_c = self.psi - np.sum(masses * self.psi, axis=1, keepdims=True)
        self.grad_c = self.x[:, None] * self.psi_c
        with np.errstate(divide="ignore"):
            self.inv_m = np.where(self.support, 1.0 / np.where(self.support, masses, 1.0), 0.0)
        self.nS, self.nA = nS, mdp.n_actions

    def local_part(self, dm, x=None):
        """``tau x dm / m``: the entropic local part of ``Hess_m J . dm`` (``dm`` ``(nS, nA[, b])``)."""
        x = self.x if x is None else x
        if self.tau <= 0:
            return np.zeros_like(dm)
        xs = x[:, None] if dm.ndim == 2 else x[:, None, None]
        im = self.inv_m if dm.ndim == 2 else self.inv_m[:, :, None]
        return self.tau * xs * dm * im

    def hvp_parts(self, dm):
        """``(local, transport)`` parts of ``Hess_m J . dm`` (``dm`` ``(nS, nA)`` or ``(nS, nA, b)``,
        zero sum per state)."""
        mdp, obj = self.mdp, self.objective
        nS, nA = self.nS, self.nA
        single = dm.ndim == 2
        D = dm[:, :, None] if single else dm
        b = D.shape[2]
        local = self.local_part(D)
        r = np.einsum("sab,sa->sb", D, self.psi_c)
        xdm = (self.x[:, None, None] * D).reshape(nS * nA, b)
        if isinstance(obj, Discounted):
            g = obj.gamma
            q = g * (mdp.P.T @ xdm)
            # the factorization of I - gamma P_pi from the evaluation is still in the cache
            dV = self.cache.lu_solve(r)
            dx = self.cache.lu_solve(q, trans=True)
            dQ = g * (mdp.P @ dV).reshape(nS, nA, b)
        else:
            q = mdp.P.T @ xdm
            q[self._ref] = 0.0
            sol = self.cache.lu_solve(r)
            dx = self.cache.lu_solve(q, trans=True)
            dJ = sol[self._ref]
            dh = sol.copy()
            dh[self._ref] = 0.0
            dQ = -dJ[None, None, :] + (mdp.P @ dh).reshape(nS, nA, b)
        dx = np.asarray(dx).reshape(nS, b)
        transport = dx[:, None, :] * self.psi_c[:, :, None] + self.x[:, None, None] * dQ
        transport = np.where(self.support[:, :, None], transport, 0.0)
        if single:
            return local[:, :, 0], transport[:, :, 0]
        return local, transport

    @property
    def _ref(self):
        # the reference state used by the bordered system of the evaluation (first recurrent state)
        if not hasattr(self, "_ref_cached"):
            from .evaluation import recurrent_classes
            from .kernels import policy_matrix
            self._ref_cached = int(recurrent_classes(policy_matrix(self.mdp.P, self.m))[0][0])
        return self._ref_cached

    def hvp(self, dm):
        loc, tr = self.hvp_parts(dm)
        return loc + tr


def energy_gradient(mdp, objective, policy) -> np.ndarray:
    """Exact ``dJ / dm(s, a) = kappa w(s) (Q + tau log(m/vol) + tau)``, array ``(nS, nA)``.

    On empty cells (``m = 0``, ``tau > 0``) the derivative is ``-inf`` (the entropy pulls mass in).
    """
    masses = _check_policy(mdp, policy)
    d = _MassDerivatives(mdp, objective, masses)
    if objective.entropy > 0 and not np.all(d.support):
        return np.where(d.support, d.grad, -np.inf)
    return d.grad


# ---------------------------------------------------------------------------------------------
# the Hessian operator
# ---------------------------------------------------------------------------------------------
class Hessian(spla.LinearOperator):
    """Hessian of ``J`` on grid potentials (a ``scipy.sparse.linalg.LinearOperator``).

    ``H.matvec(phi)`` (``phi`` flattened ``(nS*nA,)``) returns ``H phi``; ``H.local`` and
    ``H.transport`` are the two parts as LinearOperators; ``H.metric`` is the metric ``G``;
    :meth:`spectrum` gives the smallest eigenvalues of ``H`` relative to ``G``.

    Attributes
    ----------
    evaluation : Evaluation of the policy
    kappa : float
        ``1/(1-gamma)`` (discounted) or 1: ``otto`` is the gradient flow of ``J / kappa``.
    support : ndarray of bool ``(nS, nA)``
        The cells with positive mass: the operator acts on potentials of the support (empty
        cells stay empty; docs/hessian.md §1).
    diagnostics : dict
        Setup time, ``empty_cells``, ``zero_weight_states``, and what :meth:`spectrum` did.
    """

    def __init__(self, mdp, objective, masses, mobility_kind, deriv, diagnostics):
        n = masses.size
        super().__init__(dtype=np.float64, shape=(n, n))
        self.mdp, self.objective, self.masses = mdp, objective, masses
        self.mobility = mobility_kind
        self._d = deriv
        self.kappa = 1.0 / (1.0 - objective.gamma) if isinstance(objective, Discounted) else 1.0
        self.diagnostics = diagnostics
        self.support = deriv.support
        A = mdp.actions
        self._faces = face_mobilities(masses, A, mobility_kind)      # computed once
        self._spectrum_cache = {}
        self._coords = None
        self.local = spla.LinearOperator((n, n), matvec=lambda v: self._apply(v, "local"),
                                         matmat=lambda V: self._apply_block(V, "local"), dtype=np.float64)
        self.transport = spla.LinearOperator((n, n), matvec=lambda v: self._apply(v, "transport"),
                                             matmat=lambda V: self._apply_block(V, "transport"),
                                             dtype=np.float64)
        self.metric = spla.LinearOperator((n, n), matvec=self._metric_apply, dtype=np.float64)
        self.evaluation = Evaluation(deriv.J, deriv.w, deriv.V, deriv.Q, None, objective,
                                     Policy(masses, mdp.actions, mdp.states, validate=False))
        w = deriv.w
        self.diagnostics.setdefault("empty_cells", int(np.count_nonzero(~self.support)))
        self.diagnostics.setdefault("zero_weight_states", int(np.count_nonzero(~(w > 0))))

    def __repr__(self) -> str:
        nS, nA = self.masses.shape
        spec = ""
        try:                    # the eigenvalues computed so far, if any
            for (kk, *_), (v, _) in self._spectrum_cache.items():
                spec = f", smallest eigenvalues {np.array2string(np.asarray(v)[:min(kk, 4)], precision=5)}"
                break
        except (AttributeError, TypeError, ValueError):
            spec = ""
        return (f"<Hessian: {nS} states x {nA} actions ({self.shape[0]} potentials), "
                f"J = {self.evaluation.J:.10g}, kappa = {self.kappa:.4g}, mobility '{self.mobility}'{spec}>")

    @property
    def gradient(self) -> np.ndarray:
        """Potential ``Q + tau log(m/vol) + tau`` ``(nS, nA)`` (``psi`` up to a per-state constant):
        the Riemannian gradient is ``grad_a`` of it (``Q + tau`` on empty cells, where no face of
        the support sees it)."""
        return self._d.psi

    def _L(self, phi):
        return laplacian_apply(self.masses, phi, self.mdp.actions, self.mobility, self._faces)

    def _metric_apply(self, v):
        phi = np.asarray(v, dtype=float).reshape(self.masses.shape)
        return (self._d.w[:, None] * self._L(phi)).ravel()

    def _apply_cells(self, phi, part="all", x_local=None, transport_states=None):
        """``H phi`` for potentials ``phi`` ``(nS, nA[, b])`` (cell form).

        ``x_local`` replaces the weights of the local part and ``transport_states`` (bool per
        state) restricts the transport part to those states (both used by the spectrum for
        states of zero weight; default: the operator itself).
        """
        A, d = self.mdp.actions, self._d
        m1 = self._L(phi)
        out = np.zeros_like(phi, dtype=float)
        if part in ("all", "transport"):
            dm = m1 if transport_states is None else m1 * _bcast(transport_states, m1)
            _, tr = d.hvp_parts(dm)
            if transport_states is not None:
                tr = tr * _bcast(transport_states, tr)
            out += self._L(tr)
        if part in ("all", "local"):
            x = d.x if x_local is None else x_local
            g = d.grad_c if x_local is None else x_local[:, None] * d.psi_c
            out += self._L(d.local_part(m1, x))
            # 1/2 [ grad J . L'(m)[L psi] phi + grad J . L'(m)[L phi] psi ], differentiated in psi
            b1 = _dtheta_transpose(self._faces, g, phi, A)
            b2 = _dtheta_apply(self._faces, m1, g, A)
            out += 0.5 * (self._L(b1) + b2)
        return out

    def _apply(self, v, part="all"):
        phi = np.asarray(v, dtype=float).reshape(self.masses.shape)
        return self._apply_cells(phi, part).ravel()

    def _apply_block(self, V, part="all"):
        V = np.asarray(V, dtype=float)
        nS, nA = self.masses.shape
        out = self._apply_cells(V.reshape(nS, nA, -1), part)
        return out.reshape(nS * nA, -1)

    def _matvec(self, v):
        return self._apply(np.asarray(v, dtype=float).ravel(), "all")

    def _matmat(self, V):
        return self._apply_block(V, "all")

    def quadratic_form(self, phi, psi=None) -> float:
        """``H(phi, psi)`` (``psi`` defaults to ``phi``)."""
        phi = np.asarray(phi, dtype=float).ravel()
        psi = phi if psi is None else np.asarray(psi, dtype=float).ravel()
        return float(psi @ self.matvec(phi))

    # ------------------------------------------------------------------------------ spectrum
    def _coordinates(self):
        if self._coords is None:
            t0 = time.perf_counter()
            self._coords = _TreeCoordinates(self)
            self.diagnostics["time_spectral_coordinates"] = time.perf_counter() - t0
        return self._coords

    def spectrum(self, k: int = 5, return_vectors: bool = False, method: str = "auto",
                 tol: float = 1e-8, maxiter: int = 200):
        r"""The ``k`` smallest eigenvalues of ``H`` relative to the metric ``G``: ``H phi = lambda G phi``.

        Posed on the tangent space of the policy's support: potentials modulo a constant per
        connected piece of each state's support, in coordinates where ``G`` is the identity
        (1-D actions: the face differences of the potential scaled by ``sqrt(w theta / h^2)``;
        multi-D: ``e_a - e_pin`` orthonormalized per state). Nothing else is left out: every
        state and every face of the support is a direction, however small its weight or mass
        (docs/hessian.md §4). States of zero weight (transient states of an average-cost chain,
        states ``mu0`` never reaches) are seen by neither ``H`` nor ``G``; they enter through the
        limit ``w -> 0`` of ``G^{-1} H``, their local operator (exact at a critical point of
        ``J``, where the transport part vanishes).

        ``method``:

        * ``"auto"`` (default): the local part of ``H`` is block diagonal (one block per state,
          assembled exactly); its eigenvectors for the smallest ``p = max(2k, k + 8)``
          eigenvalues over all states span a subspace on which ``H`` is Rayleigh--Ritz
          projected (``p`` products). The Ritz pairs are returned when their residuals are below
          ``tol`` (relative to ``|lambda|``, with an absolute floor ``1000 eps |K|`` at the
          rounding of the local blocks ``K``) and the transport part, estimated by a few power
          steps, is either smaller than the gap to the first local eigenvalue left out (Weyl:
          no eigenvalue can then be missed) or so small that twice it is within that tolerance
          (Weyl: each Ritz value is within twice the transport part of the eigenvalue of the
          same rank, whatever the gap; this covers more than ``p`` eigenvalues at rounding
          level, metastable modes at small entropies). At a critical point of ``J``
          (``wg.solve``'s policy) the transport part vanishes and this is exact. Otherwise
          LOBPCG refines the Ritz vectors, preconditioned by the inverse of the local part.
        * ``"lobpcg"``: the same start, always refined by LOBPCG.
        * ``"dense"``: the full matrix in the same coordinates (one product per direction) and
          ``scipy.linalg.eigh``: the independent reference for small problems (at most 6000
          directions).

        Returns ``k`` values, or raises: :class:`~wgflow.ValidationError` when the tangent space
        has fewer than ``k`` directions, :class:`~wgflow.ConvergenceError` when LOBPCG stops with
        residuals above ``max(tol, 1e-6)`` (relative to ``max(|lambda|, 1000 eps |K| / tol)``,
        the same floor). Eigenvalues far below the operator's norm are resolved only absolutely
        (``diagnostics["spectrum_abs_error"]``): values of order ``1e-14`` mean "no measurable
        decay". Eigenvectors ``(k, nS, nA)`` are potentials normalized to
        ``G(phi, phi) = 1`` (to the ``w = 1`` metric on zero-weight states) and to zero mean per
        state; ``grad_a phi`` is the velocity field to plot. ``diagnostics`` records the method
        used, how Rayleigh--Ritz was accepted (``spectrum_acceptance``: ``"gap"``,
        ``"weyl-absolute"`` or ``"whole space"``), the products, the residuals and the transport
        estimate.
        """
        if int(k) < 1:
            raise ValidationError(f"spectrum needs k >= 1 eigenvalues, got {k}")
        if method not in ("auto", "lobpcg", "dense"):
            raise ValidationError(f"unknown spectrum method {method!r}; use 'auto', 'lobpcg' or 'dense'")
        k = int(k)
        for (kk, meth, tl, mi), (v, vec) in self._spectrum_cache.items():
            if kk >= k and meth == method and tl == tol and mi == maxiter:
                return (v[:k].copy(), vec[:k].copy()) if return_vectors else v[:k].copy()
        C = self._coordinates()
        if k > C.n:
            raise ValidationError(f"spectrum: k = {k} eigenvalues asked for, but the policy's tangent "
                                  f"space has {C.n} directions (support faces)")
        t0 = time.perf_counter()
        products = [0]

        def apply(Y, part="all"):
            products[0] += Y.shape[1] if part != "local" else 0
            return C.apply(Y, part)

        if method == "dense":
            if C.n > 6000:
                raise ValidationError(f"spectrum(method='dense'): {C.n} directions (at most 6000); use "
                                      "method='auto'")
            M = np.empty((C.n, C.n))
            step = 256
            for j in range(0, C.n, step):
                E = np.zeros((C.n, min(step, C.n - j)))
                E[np.arange(j, j + E.shape[1]), np.arange(E.shape[1])] = 1.0
                M[:, j:j + E.shape[1]] = apply(E)
            M = 0.5 * (M + M.T)
            vals, Y = sla.eigh(M, subset_by_index=[0, k - 1])
            info = {"spectrum_method": "dense"}
        else:
            vals, Y, info = self._spectrum_iterative(C, k, method, tol, maxiter, apply)
        info["spectrum_products"] = products[0]
        info["directions"] = C.n
        # the state carrying most of each mode (its share of the unit G-norm)
        info["mode_states"] = [int(np.argmax(np.bincount(C.ks, weights=Y[:, j] ** 2, minlength=C.nS)))
                               for j in range(Y.shape[1])]
        info["time_spectrum"] = time.perf_counter() - t0
        self.diagnostics.update(info)
        # coordinates at the eigen-solver's rounding level carry no information; in Gibbs tails
        # 1/sqrt(w theta) would turn them into large face differences: they are set to 0
        Yc = np.where(np.abs(Y) > 1e-12 * np.max(np.abs(Y), axis=0, keepdims=True), Y, 0.0)
        vecs = C.to_potentials(Yc)                            # (k, nS, nA)
        vecs = vecs - vecs.mean(axis=2, keepdims=True)         # canonical representative
        self._spectrum_cache[(k, method, tol, maxiter)] = (vals.copy(), vecs.copy())
        return (vals, vecs) if return_vectors else vals

    def _spectrum_iterative(self, C, k, method, tol, maxiter, apply):
        mu, embed = C.local_eigenpairs()
        n = C.n
        p = int(min(n, max(2 * k, k + 8)))
        order = np.argsort(mu, kind="stable")
        X = embed(order[:p])                        # (n, p), orthonormal columns
        HX = apply(X)
        Ar = X.T @ HX
        Ar = 0.5 * (Ar + Ar.T)
        theta, Cr = sla.eigh(Ar)
        V, HV = X @ Cr, HX @ Cr
        R = HV - V * theta[None, :]
        # residuals relative to |lambda|, with a floor at the rounding of the local blocks
        # (1000 eps |K|): an eigenvalue far below the operator's norm (a slow or metastable
        # mode) is resolved only to that absolute accuracy
        floor = 1e3 * np.finfo(float).eps * C._local["norm"] / tol
        scale = np.maximum(np.abs(theta), floor) + 1e-300
        res = np.linalg.norm(R, axis=0) / scale
        left_out = float(mu[order[p]]) if p < n else np.inf
        info = {"spectrum_method": "rayleigh-ritz", "local_subspace": p}
        ok = method == "auto" and bool(np.all(res[:k] <= tol))
        abs_error = float(np.max(np.linalg.norm(R[:, :k], axis=0)))
        if ok and np.isfinite(left_out):
            # the transport part's norm: three power steps on (H - local) from a random block
            # (an estimate from below; the tests below allow for it being low)
            Z = np.random.default_rng(0).standard_normal((n, 3))
            nu = 0.0
            for _ in range(3):
                Z /= np.maximum(np.linalg.norm(Z, axis=0), 1e-300)
                Z = apply(Z, "transport")
                nu = max(nu, float(np.max(np.linalg.norm(Z, axis=0))))
                if nu == 0.0:
                    break
            gap = left_out - float(theta[k - 1])
            info["transport_norm_estimate"] = nu
            info["local_gap"] = gap
            # Weyl, twice: H = local + transport, so the i-th eigenvalue of H and the i-th Ritz
            # value on the span of the p smallest local eigenvectors both lie within |transport|
            # of the i-th local eigenvalue mu_i (i <= p): the Ritz values are within
            # 2 |transport| of H's, whatever the gap. (i) With a gap above |transport| (10 nu),
            # no eigenvalue of H outside the subspace lies below theta_k, and the small
            # residuals make the Ritz values exact. (ii) Otherwise they are accepted when
            # 2 |transport| (2 x 3 nu) is within what the residuals are held to (tol |theta|,
            # floor 1000 eps |K|): at a critical point the transport part is at rounding level,
            # and at small entropies more than p local eigenvalues can sit there too (metastable
            # modes, gaps exp(-barrier/tau) far below the floor), so no gap separates them
            # however exact the Ritz values are. An estimate of |transport| that is low by a
            # factor f only makes the error bound of (ii) f times larger (nothing is missed
            # beyond 2 |transport|), hence the smaller margin there.
            if 10.0 * nu < gap:
                info["spectrum_acceptance"] = "gap"
                abs_error += nu
            elif bool(np.all(2.0 * 3.0 * nu <= tol * scale[:k])):
                info["spectrum_acceptance"] = "weyl-absolute"
                abs_error = max(abs_error, 2.0 * nu)
            else:
                ok = False
        elif ok:
            info["spectrum_acceptance"] = "whole space"     # p = n: the Ritz pairs are H's
        if ok:
            info["spectrum_residuals"] = res[:k]
            info["spectrum_abs_error"] = abs_error
            return theta[:k], V[:, :k], info
        # LOBPCG from the Ritz vectors, preconditioned by the inverse of the local part
        m = int(min(n, max(k + 3, min(p, 2 * k))))
        if n < 5 * m:                               # too small for LOBPCG: dense in these coordinates
            M = apply(np.eye(n))
            M = 0.5 * (M + M.T)
            vals, Y = sla.eigh(M, subset_by_index=[0, k - 1])
            info.update(spectrum_method="dense (small)", spectrum_residuals=np.zeros(k))
            return vals, Y, info
        shift = max(float(np.max(np.abs(theta[:k]))), 1e-300)
        floor_abs = tol * floor                     # 1000 eps |K|: the Rayleigh--Ritz floor
        prec = C.local_inverse(shift)
        Aop = spla.LinearOperator((n, n), matvec=lambda y: apply(np.asarray(y).reshape(n, -1)).ravel(),
                                  matmat=lambda Yb: apply(np.asarray(Yb)), dtype=float)
        Mop = spla.LinearOperator((n, n), matvec=lambda y: prec(np.asarray(y).reshape(n, -1)).ravel(),
                                  matmat=lambda Yb: prec(np.asarray(Yb)), dtype=float)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)        # convergence is judged below
            vals, Y, hist = spla.lobpcg(Aop, V[:, :m].copy(), M=Mop, largest=False,
                                        tol=max(tol * shift, floor_abs),
                                        maxiter=maxiter, retResidualNormsHistory=True)
        o = np.argsort(vals)[:k]
        vals, Y = vals[o], Y[:, o]
        R = apply(Y) - Y * vals[None, :]
        # relative to |lambda| with the same absolute floor as the Rayleigh--Ritz path: a
        # value at rounding level (|lambda| ~ 1e-16) is resolved only to that floor
        res = np.linalg.norm(R, axis=0) / (np.maximum(np.abs(vals), floor) + 1e-300)
        info.update(spectrum_method="lobpcg", lobpcg_iterations=len(hist), spectrum_residuals=res)
        if not (np.all(np.isfinite(vals)) and np.all(res <= max(tol, 1e-6))):
            from .errors import ConvergenceError
            raise ConvergenceError(f"spectrum: LOBPCG stopped after {len(hist)} iterations with relative "
                                   f"residuals {res} (tolerance {max(tol, 1e-6):g}); raise maxiter or use "
                                   "method='dense' on a small problem", {"values": vals, "residuals": res})
        return vals, Y, info

    def predicted_rate(self) -> float:
        """Rate ``r`` with ``J - J* ~ exp(-r t)`` under ``otto`` near this (optimal) policy:
        ``r = 2 lambda_min / kappa``, twice the slowest decay rate of the linearized flow."""
        return predicted_rate(self)


def _bcast(mask_states, arr):
    return mask_states.reshape((-1,) + (1,) * (arr.ndim - 1))


class _TreeCoordinates:
    r"""Coordinates of the tangent space of the support in which ``G`` is the identity.

    Per state, the support graph (cells of positive mass, faces whose two cells have mass) gets a
    maximum spanning forest for the face mobilities, rooted at the most likely cell of each
    connected piece. A potential modulo constants is given by its differences
    ``t_e = phi_right - phi_left`` on the tree faces; the difference on any other face is the
    signed sum along the tree path (a path matrix ``A`` with entries 0, +-1), so the potential is
    never formed and no cumulative sum mixes tail and bulk values. ``G = A^T diag(w theta / h^2) A``
    per state is Jacobi-scaled and Cholesky-factorized, ``t = T y``, ``T^T G T = I``. In 1-D
    every support face is a tree face: ``A = I`` and ``T = diag((w theta / h^2)^{-1/2})``. The
    maximum spanning tree keeps ``G`` well conditioned however small the tail mobilities are
    (every non-tree face is weaker than each tree face on its cycle). States of zero weight
    use ``w = 1`` and keep only their local operator.
    """

    def __init__(self, H):
        from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree
        self.H = H
        d, A = H._d, H.mdp.actions
        nS, nA = H.masses.shape
        self.nS, self.nA = nS, nA
        # flat face list (same for every state): left/right cells, h^2, mobilities (nS, nF)
        lefts, rights, h2, th, di, dj = [], [], [], [], [], []
        cells = np.arange(nA).reshape(tuple(A.shape))
        for ax in range(A.ndim):
            if H._faces[ax] is None:
                continue
            lefts.append(np.take(cells, np.arange(A.shape[ax] - 1), axis=ax).ravel())
            rights.append(np.take(cells, np.arange(1, A.shape[ax]), axis=ax).ravel())
            h2.append(np.full(lefts[-1].size, float(A.spacing[ax]) ** 2))
            t, a_, b_ = (np.moveaxis(x.reshape((nS,) + tuple(A.shape[:ax]) + (A.shape[ax] - 1,)
                                               + tuple(A.shape[ax + 1:])), 1 + ax, 1 + ax).reshape(nS, -1)
                         for x in H._faces[ax])
            th.append(t), di.append(a_), dj.append(b_)
        if lefts:
            self.left, self.right = np.concatenate(lefts), np.concatenate(rights)
            self.h2 = np.concatenate(h2)
            self.th, self.di, self.dj = (np.concatenate(x, axis=1) for x in (th, di, dj))
        else:
            self.left = self.right = np.zeros(0, int)
            self.h2 = np.zeros(0)
            self.th = self.di = self.dj = np.zeros((nS, 0))
        nF = self.left.size
        self.nF = nF
        self.Dm = np.zeros((nF, nA))                    # face differences: (D v)_f = v_right - v_left
        self.Dm[np.arange(nF), self.right] = 1.0
        self.Dm[np.arange(nF), self.left] = -1.0
        self.Lm = np.zeros((nF, nA))
        self.Lm[np.arange(nF), self.left] = 1.0
        self.Rm = np.zeros((nF, nA))
        self.Rm[np.arange(nF), self.right] = 1.0
        w = d.w
        self.zero_w = ~(w > 0)
        w_eff = np.where(self.zero_w, 1.0, w)
        if isinstance(H.objective, Discounted):
            self.x_eff = np.where(self.zero_w, H.kappa, d.x)
        else:
            self.x_eff = np.where(self.zero_w, 1.0, d.x)
        self.g = self.x_eff[:, None] * d.psi_c
        self.dg = self.g @ self.Dm.T                    # (nS, nF)
        self.tr_states = ~self.zero_w
        # the weight is a per-state factor, kept out of the products (w theta / h^2 can underflow)
        g_face = self.th / self.h2[None, :]
        rw = 1.0 / np.sqrt(w_eff)
        self.one_d = A.ndim == 1
        if self.one_d:
            kept = self.th > 0
            self.kept = kept
            self.ks, self.kf = np.nonzero(kept)
            self.Dmax = nF
            self.sc = np.zeros((nS, nF))
            self.sc[kept] = 1.0 / np.sqrt(g_face[kept]) * rw[self.ks]
        else:
            trees = []
            for s in range(nS):
                live = self.th[s] > 0
                f_live = np.nonzero(live)[0]
                lt = np.log(self.th[s, f_live])
                wgt = 1.0 + (lt.max() - lt) if f_live.size else lt
                Gr = sp.csr_matrix((wgt, (self.left[f_live], self.right[f_live])), shape=(nA, nA))
                mst = minimum_spanning_tree(Gr)
                mst = (mst + mst.T).tocsr()
                ncomp, lab = connected_components(mst, directed=False)
                sup = H.support[s]
                face_of = {}
                for f in f_live:
                    face_of[(self.left[f], self.right[f])] = f
                coef = np.zeros((nA, nA))        # row a: coefficients of the tree differences in phi_a
                col = 0
                tree_faces = []
                for c in range(ncomp):
                    members = np.nonzero((lab == c) & sup)[0]
                    if members.size < 2:
                        continue
                    root = members[np.argmax(H.masses[s, members])]
                    order, pred = breadth_first_order(mst, root, directed=False)
                    for a in order[1:]:
                        p = pred[a]
                        if (p, a) in face_of:       # child on the right: phi_a = phi_p + t
                            f, sign = face_of[(p, a)], 1.0
                        else:
                            f, sign = face_of[(a, p)], -1.0
                        coef[a] = coef[p]
                        coef[a, col] += sign
                        tree_faces.append(f)
                        col += 1
                trees.append((coef[:, :col], np.array(tree_faces, dtype=int)))
            self.Dmax = max((t[0].shape[1] for t in trees), default=0)
            Dmax = self.Dmax
            self.kept = np.zeros((nS, Dmax), dtype=bool)
            self.Bpot = np.zeros((nS, nA, Dmax))
            for s, (coef, tf) in enumerate(trees):
                self.kept[s, :coef.shape[1]] = True
                self.Bpot[s, :, :coef.shape[1]] = coef
            self.ks, self.kf = np.nonzero(self.kept)
            self.Apath = np.einsum("fa,sae->sfe", self.Dm, self.Bpot)      # (nS, nF, Dmax), entries 0, +-1
            G = np.einsum("sfe,sf,sfk->sek", self.Apath, g_face, self.Apath)
            pad = ~self.kept
            G = G + pad[:, :, None] * np.eye(Dmax)[None]
            dgn = np.sqrt(np.einsum("sii->si", G))
            Cm = G / dgn[:, :, None] / dgn[:, None, :]
            try:
                Lc = np.linalg.cholesky(Cm)
            except np.linalg.LinAlgError as exc:
                from .errors import ConvergenceError
                raise ConvergenceError("spectrum: the metric of a state's support is numerically singular "
                                       f"(Cholesky failed: {exc})") from exc
            # T^T (w G0) T = I
            self.T = np.transpose(np.linalg.inv(Lc), (0, 2, 1)) / dgn[:, :, None] * rw[:, None, None]
        self.n = self.ks.size

    # coordinates y (n, b) <-> padded per-state arrays (nS, Dmax, b)
    def _pad(self, Y):
        P = np.zeros((self.nS, self.Dmax, Y.shape[1]))
        P[self.ks, self.kf] = Y
        return P

    def _face_differences(self, Y):
        """``(D phi)_f`` on every face, ``(nS, nF, b)``, from coordinates ``Y`` ``(n, b)``."""
        P = self._pad(Y)
        if self.one_d:
            return P * self.sc[:, :, None]
        t = np.einsum("sij,sjb->sib", self.T, P)
        return np.einsum("sfe,seb->sfb", self.Apath, t)

    def _from_faces(self, out):
        """Coordinates of the functional ``phi -> sum_f out_f (D phi)_f`` (the adjoint)."""
        if self.one_d:
            return (out * self.sc[:, :, None])[self.ks, self.kf]
        u = np.einsum("sfe,sfb->seb", self.Apath, out)
        return np.einsum("sji,sjb->sib", self.T, u)[self.ks, self.kf]

    # face <-> cell maps by gathers and scatters (no dense products)
    def _div(self, q):
        """``D^T q``: cells ``(nS, nA, b)`` from face values ``q`` ``(nS, nF, b)`` (left -q, right +q)."""
        if self.one_d:
            out = np.zeros((self.nS, self.nA, q.shape[2]))
            out[:, :-1] -= q
            out[:, 1:] += q
            return out
        return self._scatter(q, self.right) - self._scatter(q, self.left)

    def _scatter(self, q, cells):
        """``sum over faces f with cells[f] = a of q_f`` per cell ``(nS, nA, b)``."""
        out = np.zeros((self.nS, self.nA, q.shape[2]))
        for c in range(self.nA):       # faces per cell: at most two per axis
            sel = self._faces_of[id(cells)][c]
            if sel.size:
                out[:, c] = q[:, sel].sum(axis=1)
        return out

    def _ensure_face_lists(self):
        if not hasattr(self, "_faces_of"):
            self._faces_of = {id(arr): [np.nonzero(arr == c)[0] for c in range(self.nA)]
                              for arr in (self.left, self.right)}

    def apply(self, Y, part="all"):
        dv = self.H._d
        if not self.one_d:
            self._ensure_face_lists()
        Y = np.asarray(Y, dtype=float).reshape(self.n, -1)
        Dphi = self._face_differences(Y)
        th = (self.th / self.h2[None, :])[:, :, None]
        dm = self._div(th * Dphi)                                   # L phi, cells
        t = np.zeros_like(dm)
        out = np.zeros_like(Dphi)
        if part in ("all", "transport"):
            dmt = dm * self.tr_states[:, None, None]
            _, tr = dv.hvp_parts(dmt)
            t += tr * self.tr_states[:, None, None]
        if part in ("all", "local"):
            t += dv.local_part(dm, self.x_eff)
            dg = self.dg[:, :, None]
            prod = dg * Dphi / self.h2[None, :, None]
            if self.one_d:
                t[:, :-1] += 0.5 * self.di[:, :, None] * prod
                t[:, 1:] += 0.5 * self.dj[:, :, None] * prod
            else:
                t += 0.5 * (self._scatter(self.di[:, :, None] * prod, self.left)
                            + self._scatter(self.dj[:, :, None] * prod, self.right))
            dth = self.di[:, :, None] * dm[:, self.left] + self.dj[:, :, None] * dm[:, self.right]
            out += 0.5 * dth * dg / self.h2[None, :, None]
        out += th * (t[:, self.right] - t[:, self.left])
        return self._from_faces(out)

    def local_eigenpairs(self):
        probes = np.zeros((self.n, self.Dmax))
        probes[np.arange(self.n), self.kf] = 1.0
        out = self.apply(probes, "local")                 # column j: probe j of every state
        K = np.zeros((self.nS, self.Dmax, self.Dmax))
        K[self.ks, self.kf, :] = out
        return _block_eigenpairs(self, K, self.ks, self.kf, self.kept)

    def local_inverse(self, shift):
        return _block_inverse(self, shift)

    def to_potentials(self, Y):
        """Potentials ``(b, nS, nA)`` (0 at each root; constant across faces outside the support)."""
        Y = np.asarray(Y, dtype=float).reshape(self.n, -1)
        P = self._pad(Y)
        if self.one_d:
            D = P * self.sc[:, :, None]
            phi = np.zeros((self.nS, self.nA, Y.shape[1]))
            phi[:, 1:] = np.cumsum(D, axis=1)
        else:
            t = np.einsum("sij,sjb->sib", self.T, P)
            phi = np.einsum("sae,seb->sab", self.Bpot, t)
        return np.moveaxis(phi, 2, 0)


def _block_eigenpairs(C, K, ks, kf, kept):
    """Eigen-decomposition of per-state local blocks ``K`` ``(nS, D, D)`` (padded slots decoupled).

    Returns ``mu`` ``(n,)`` (the eigenvalues, one per coordinate) and ``embed(sel)``, which
    returns the eigenvectors ``sel`` as columns ``(n, len(sel))`` in the coordinates
    (orthonormal). Only the eigenvalues of every block are computed up front; eigenvectors are
    computed for the blocks ``embed`` needs (and all of them for :func:`_block_inverse`).
    """
    nS, D, _ = K.shape
    K = 0.5 * (K + np.transpose(K, (0, 2, 1)))
    if getattr(C, "one_d", False) and D > 2:
        # the 1-D local operator is tridiagonal in face coordinates: drop the rounding outside
        K = np.triu(np.tril(K, 1), -1)
    norm = float(np.max(np.sum(np.abs(K), axis=2), initial=0.0))
    big = 2.0 * norm + 1.0
    pad = ~kept
    K = np.where(pad[:, :, None] | pad[:, None, :], 0.0, K) + (big * pad)[:, :, None] * np.eye(D)[None]
    vals = np.linalg.eigvalsh(K)                       # ascending; padded ones (= big) last
    n_s = kept.sum(axis=1)
    C._local = {"K": K, "vals": vals, "vecs": {}, "norm": norm}
    js = np.concatenate([np.arange(c) for c in n_s]) if nS else np.zeros(0, int)
    ss = np.repeat(np.arange(nS), n_s)
    mu = vals[ss, js]
    assert mu.size == ks.size

    tridiagonal = bool(getattr(C, "one_d", False))

    def vectors(states):
        need = [s for s in np.unique(states) if s not in C._local["vecs"]]
        if need and tridiagonal:
            # 1-D: the local operator couples neighbouring faces only (tridiagonal blocks);
            # LAPACK's tridiagonal solver needs no level-3 BLAS (whose threads cost more than
            # the work on blocks this small)
            for s in need:
                C._local["vecs"][int(s)] = sla.eigh_tridiagonal(np.diagonal(K[s]).copy(),
                                                                np.diagonal(K[s], 1).copy())[1]
        elif need:
            w, v = np.linalg.eigh(K[need])
            for s, vs in zip(need, v):
                C._local["vecs"][int(s)] = vs
        return np.stack([C._local["vecs"][int(s)] for s in states]) if len(states) else np.zeros((0, D, D))

    def embed(sel):
        sel = np.asarray(sel, dtype=int)
        V = vectors(ss[sel])
        out = np.zeros((nS, D, sel.size))
        out[ss[sel], :, np.arange(sel.size)] = V[np.arange(sel.size), :, js[sel]]
        return out[ks, kf]

    C._local["all_vectors"] = lambda: vectors(np.arange(nS))
    return mu, embed


def _block_inverse(C, shift):
    """Preconditioner ``y -> (|K_local| + shift)^{-1} y`` block by block (needs local_eigenpairs)."""
    vals = C._local["vals"]
    vecs = C._local["all_vectors"]()
    nS, D = vals.shape
    inv = 1.0 / (np.abs(vals) + shift)
    ks, kf = C.ks, C.kf

    def prec(Y):
        Y = np.asarray(Y, dtype=float).reshape(ks.size, -1)
        Yp = np.zeros((nS, D, Y.shape[1]))
        Yp[ks, kf] = Y
        Z = np.einsum("sji,sjb->sib", vecs, Yp) * inv[:, :, None]
        return np.einsum("sij,sjb->sib", vecs, Z)[ks, kf]

    return prec


def hessian(mdp, objective, policy, mobility: str = "sg") -> Hessian:
    r"""The Hessian of ``J`` at ``policy`` as a LinearOperator on grid potentials.

    Parameters
    ----------
    mdp : MDP (with an action grid)
    objective : Discounted or Average
    policy : Policy
        Masses may be zero (e.g. Gibbs tails that underflow at small entropies): the Hessian is
        then that of ``J`` restricted to policies with the same support -- tangent directions
        move mass only between cells of positive mass, through faces whose both cells have
        mass (docs/hessian.md §1, "empty cells").
    mobility : {"sg", "logmean", "arithmetic"}
        Face mobility of the metric and of the continuity curves (default ``"sg"``, consistent
        with the ``otto`` scheme's linearization at equilibrium).

    Returns
    -------
    Hessian
        ``H.matvec``, ``H.local``, ``H.transport``, ``H.metric``, ``H.spectrum(k)``.

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("quadratic_bandit", n_actions=41, curvature=2.0)
    >>> obj = wg.Discounted(0.5, entropy=0.5)
    >>> H = wg.hessian(mdp, obj, wg.solve(mdp, obj).policy)
    >>> lam = H.spectrum(1)[0]       # ~ kappa * curvature for a Gaussian Gibbs law
    """
    _check_objective(objective)
    mdp.require_actions("hessian")
    masses = _check_policy(mdp, policy)
    if mobility not in MOBILITIES:
        raise ValidationError(f"unknown mobility {mobility!r}; choose from {MOBILITIES}")
    t0 = time.perf_counter()
    deriv = _MassDerivatives(mdp, objective, masses)
    diag = {"time_setup": time.perf_counter() - t0}
    return Hessian(mdp, objective, masses, mobility, deriv, diag)


def predicted_rate(H: Hessian) -> float:
    """``2 lambda_min / kappa``: the decay rate of ``J - J*`` (and of any squared distance to the
    optimum) under ``otto`` near the optimum; ``lambda_min / kappa`` is the slowest decay rate of
    the flow linearized there."""
    lam = H.spectrum(1)[0]
    return 2.0 * lam / H.kappa


def measured_rate(traj, J_star: float, lower: float = 1e-10, upper: float = 1e-4) -> float:
    """Fit ``J - J* ~ C exp(-r t)`` on the frames where ``lower < (J - J*)/|J*| < upper``.

    Returns the least-squares slope ``r``; raises if fewer than 3 frames fall in the window.
    """
    scale = max(1.0, abs(J_star))
    gap = (np.asarray(traj.J) - J_star) / scale
    sel = (gap > lower) & (gap < upper)
    if np.count_nonzero(sel) < 3:
        raise ValidationError(f"measured_rate: only {np.count_nonzero(sel)} frames with relative gap in "
                              f"({lower:g}, {upper:g}); run longer or save more often")
    t = np.asarray(traj.times)[sel]
    slope = np.polyfit(t, np.log(gap[sel]), 1)[0]
    return float(-slope)
