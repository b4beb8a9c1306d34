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
from .objectives import Discounted
from .policy import Policy

__all__ = ["hessian", "Hessian", "continuity_curve", "mobility", "laplacian_apply",
           "predicted_rate", "measured_rate", "energy_gradient"]

MOBILITIES = ("sg", "logmean", "arithmetic")


# ---------------------------------------------------------------------------------------------
# face mobilities
# ---------------------------------------------------------------------------------------------
def _ratio_functions(r, kind):
    """``f(r)`` and ``f'(r)`` with ``theta = m_j f(m_i / m_j)`` (series near ``r = 1``)."""
    x = r - 1.0
    near = np.abs(x) < 1e-4
    xs = np.where(near, 0.5, x)                    # harmless value where the series is used
    lr = np.log(np.where(near, 1.5, r))
    if kind == "sg":           # f = r log r / (r - 1)
        f = np.where(near, 1 + x / 2 - x ** 2 / 6 + x ** 3 / 12, r * lr / xs)
        fp = np.where(near, 0.5 - x / 3 + x ** 2 / 4, (xs - lr) / xs ** 2)
    elif kind == "logmean":    # f = (r - 1) / log r
        f = np.where(near, 1 + x / 2 - x ** 2 / 12 + x ** 3 / 24, xs / np.where(near, 1.0, lr))
        fp = np.where(near, 0.5 - x / 6 + x ** 2 / 8,
                      (lr - xs / np.where(near, 1.5, r)) / np.where(near, 1.0, lr) ** 2)
    elif kind == "arithmetic":  # f = (r + 1) / 2
        f, fp = (r + 1) / 2, np.full_like(r, 0.5)
    else:
        raise ValidationError(f"unknown mobility {kind!r}; choose from {MOBILITIES}")
    return f, fp


def mobility(mi, mj, kind="sg"):
    """Face mobility ``theta(m_i, m_j)`` and its partial derivatives ``(theta, d_i, d_j)``.

    ``"sg"``: ``m_i m_j / logmean(m_i, m_j)`` (the equilibrium mobility of the SG flux);
    ``"logmean"``: the logarithmic mean (Maas); ``"arithmetic"``: ``(m_i + m_j) / 2``.
    Masses must be positive.
    """
    r = mi / mj
    f, fp = _ratio_functions(r, kind)
    theta = mj * f
    return theta, fp, f - r * fp


def _faces(shape_a, d):
    """Reshape helper: ``(outer, n, inner)`` view sizes for faces along action axis ``d``."""
    full = (-1,) + tuple(shape_a)
    outer_dims = shape_a[:d]
    return int(np.prod(outer_dims)), shape_a[d], int(np.prod(shape_a[d + 1:])), full


def _axis_arrays(a, actions, d):
    nS = a.shape[0]
    o, n, i, _ = _faces(tuple(actions.shape), d)
    return a.reshape(nS * o, n, i)


def face_mobilities(masses, actions, kind="sg"):
    """Per action axis, ``(theta, d theta/d m_i, d theta/d m_j)`` on the faces (None for 1-cell axes)."""
    out = []
    for d in range(actions.ndim):
        if actions.shape[d] < 2:
            out.append(None)
            continue
        m3 = _axis_arrays(masses, actions, d)
        out.append(mobility(m3[:, :-1, :], m3[:, 1:, :], kind))
    return out


def laplacian_apply(masses, phi, actions, kind="sg", faces=None):
    """``L_theta(m) phi`` per state: ``(L phi)_i = sum_faces theta (phi_i - phi_j) / h^2``.

    ``faces`` (from :func:`face_mobilities`) avoids recomputing the mobilities.
    """
    faces = face_mobilities(masses, actions, kind) if faces is None else faces
    out = np.zeros_like(phi)
    for d in range(actions.ndim):
        if faces[d] is None:
            continue
        p3 = _axis_arrays(phi, actions, d)
        o3 = _axis_arrays(out, actions, d)
        th = faces[d][0]
        q = th * (p3[:, :-1, :] - p3[:, 1:, :]) / actions.spacing[d] ** 2
        o3[:, :-1, :] += q
        o3[:, 1:, :] -= q
    return out


def _dtheta_apply(faces, dm, g, actions):
    """``L'(m)[dm] g``: the Laplacian with face weights ``d theta[dm]`` applied to ``g``."""
    out = np.zeros_like(g)
    for d in range(actions.ndim):
        if faces[d] is None:
            continue
        dm3 = _axis_arrays(dm, actions, d)
        g3, o3 = _axis_arrays(g, actions, d), _axis_arrays(out, actions, d)
        _, di, dj = faces[d]
        dth = di * dm3[:, :-1, :] + dj * dm3[:, 1:, :]
        q = dth * (g3[:, :-1, :] - g3[:, 1:, :]) / actions.spacing[d] ** 2
        o3[:, :-1, :] += q
        o3[:, 1:, :] -= q
    return out


def _dtheta_transpose(faces, g, phi, actions):
    """Gradient in ``m`` of ``g^T L(m) phi = sum_faces theta (g_i - g_j)(phi_i - phi_j) / h^2``."""
    out = np.zeros_like(g)
    for d in range(actions.ndim):
        if faces[d] is None:
            continue
        g3, p3, o3 = _axis_arrays(g, actions, d), _axis_arrays(phi, actions, d), _axis_arrays(out, actions, d)
        _, di, dj = faces[d]
        prod = (g3[:, :-1, :] - g3[:, 1:, :]) * (p3[:, :-1, :] - p3[:, 1:, :]) / actions.spacing[d] ** 2
        o3[:, :-1, :] += di * prod
        o3[:, 1:, :] += dj * prod
    return out


def continuity_curve(mdp, policy, phi, eps: float, mobility_kind: str = "sg", substeps: int = 16):
    """Masses ``m(eps)`` solving ``dm/d eps = L_theta(m) phi`` from ``m(0) = policy.masses`` (RK4).

    The smooth discrete counterpart of the exponential curve ``(id + eps grad phi)_# pi``: the
    Hessian is the second derivative of ``J`` along these curves.
    """
    A = mdp.require_actions("continuity_curve")
    m = (policy.masses if isinstance(policy, Policy) else np.asarray(policy, dtype=float)).copy()
    phi = np.asarray(phi, dtype=float).reshape(m.shape)
    if eps == 0:
        return m
    h = eps / substeps

    def f(x):
        if not np.all(x > 0):      # also catches NaN
            raise ValidationError(f"continuity_curve: eps = {eps:g} empties a cell (a Runge-Kutta "
                                  "stage left the positive orthant); use a smaller eps")
        return laplacian_apply(x, phi, A, mobility_kind)

    for _ in range(substeps):
        k1 = f(m)
        k2 = f(m + 0.5 * h * k1)
        k3 = f(m + 0.5 * h * k2)
        k4 = f(m + h * k3)
        m = m + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    if not np.all(m > 0):
        raise ValidationError(f"continuity_curve: eps = {eps:g} empties a cell; use a smaller eps")
    return m


# ---------------------------------------------------------------------------------------------
# exact derivatives of J in the masses
# ---------------------------------------------------------------------------------------------
class _MassDerivatives:
    """Gradient and Hessian-vector products of ``J(m)`` w.r.t. the masses (exact)."""

    def __init__(self, mdp, objective, masses):
        self.mdp, self.objective, self.m = mdp, objective, masses
        self.tau = objective.entropy
        self.cache = LinearSolveCache(reuse=False)
        J, w, V, Q, c_pi, P_pi = _evaluate_masses(mdp, masses, objective, self.cache)
        self.J, self.w, self.V, self.Q = J, w, V, Q
        nS = mdp.n_states
        vol = _cell_volume(mdp)
        self.psi = Q + (self.tau * (np.log(masses / vol) + 1.0) if self.tau > 0 else 0.0)
        if isinstance(objective, Discounted):
            self.x = w / (1.0 - objective.gamma)        # unnormalized occupancy mu0^T (I - g P)^-1
        else:
            self.x = w
        self.grad = self.x[:, None] * self.psi
        self.nS, self.nA = nS, mdp.n_actions

    def hvp_parts(self, dm):
        """``(local, transport)`` parts of ``Hess_m J . dm`` (``dm`` with zero sum per state)."""
        mdp, obj, tau = self.mdp, self.objective, self.tau
        nS, nA = self.nS, self.nA
        local = self.x[:, None] * (tau * dm / self.m) if tau > 0 else np.zeros_like(dm)
        r = np.sum(dm * self.psi, axis=1)
        xdm = (self.x[:, None] * dm).ravel()
        if isinstance(obj, Discounted):
            g = obj.gamma
            q = g * (mdp.P.T @ xdm)
            # the factorization of I - gamma P_pi from the evaluation is still in the cache
            dV, dx = self._solve([r, q])
            dQ = g * (mdp.P @ dV).reshape(nS, nA)
        else:
            q = mdp.P.T @ xdm
            sol, drho = self._solve_average(r, q)
            dJ = sol[self._ref]
            dh = sol.copy()
            dh[self._ref] = 0.0
            dQ = -dJ + (mdp.P @ dh).reshape(nS, nA)
            dx = drho
        transport = dx[:, None] * self.psi + self.x[:, None] * dQ
        return local, transport

    def _solve(self, rhs):
        return [self.cache.lu_solve(rhs[0]), self.cache.lu_solve(rhs[1], trans=True)]

    @property
    def _ref(self):
        # the reference state used by the bordered system of the evaluation (first recurrent state)
        if not hasattr(self, "_ref_cached"):
            from .evaluation import recurrent_classes
            from .kernels import policy_matrix
            self._ref_cached = int(recurrent_classes(policy_matrix(self.mdp.P, self.m))[0][0])
        return self._ref_cached

    def _solve_average(self, r, q):
        b = q.copy()
        b[self._ref] = 0.0
        return self.cache.lu_solve(r), self.cache.lu_solve(b, trans=True)

    def hvp(self, dm):
        loc, tr = self.hvp_parts(dm)
        return loc + tr


def energy_gradient(mdp, objective, policy) -> np.ndarray:
    """Exact ``dJ / dm(s, a) = kappa w(s) (Q + tau log(m/vol) + tau)``, array ``(nS, nA)``."""
    masses = _check_policy(mdp, policy)
    return _MassDerivatives(mdp, objective, masses).grad


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
    """

    def __init__(self, mdp, objective, masses, mobility_kind, deriv, diagnostics):
        n = masses.size
        super().__init__(dtype=np.float64, shape=(n, n))
        self.mdp, self.objective, self.masses = mdp, objective, masses
        self.mobility = mobility_kind
        self._d = deriv
        self.kappa = 1.0 / (1.0 - objective.gamma) if isinstance(objective, Discounted) else 1.0
        self.diagnostics = diagnostics
        A = mdp.actions
        sh = masses.shape
        self._faces = face_mobilities(masses, A, mobility_kind)      # computed once
        self._L = lambda phi: laplacian_apply(masses, phi.reshape(sh), A, mobility_kind, self._faces)
        self._spectrum_cache = {}
        self.local = spla.LinearOperator((n, n), matvec=lambda v: self._apply(v, "local"), dtype=np.float64)
        self.transport = spla.LinearOperator((n, n), matvec=lambda v: self._apply(v, "transport"),
                                             dtype=np.float64)
        self.metric = spla.LinearOperator((n, n), matvec=self._metric_apply, dtype=np.float64)
        self.evaluation = Evaluation(deriv.J, deriv.w, deriv.V, deriv.Q, None, objective,
                                     Policy(masses, mdp.actions, mdp.states, validate=False))

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
        the Riemannian gradient is ``grad_a`` of it."""
        return self._d.psi

    def _metric_apply(self, v):
        phi = v.reshape(self.masses.shape)
        return (self._d.w[:, None] * self._L(phi)).ravel()

    def _apply(self, v, part="all"):
        sh = self.masses.shape
        phi = v.reshape(sh)
        A, d = self.mdp.actions, self._d
        m1 = self._L(phi)
        loc, tr = d.hvp_parts(m1)
        out = np.zeros(sh)
        if part in ("all", "transport"):
            out += self._L(tr)
        if part in ("all", "local"):
            out += self._L(loc)
            # 1/2 [ grad J . L'(m)[L psi] phi + grad J . L'(m)[L phi] psi ], differentiated in psi
            b1 = _dtheta_transpose(self._faces, d.grad, phi, A)
            b2 = _dtheta_apply(self._faces, m1, d.grad, A)
            out += 0.5 * (self._L(b1) + b2)
        return out.ravel()

    def _matvec(self, v):
        return self._apply(np.asarray(v, dtype=float).ravel(), "all")

    def quadratic_form(self, phi, psi=None) -> float:
        """``H(phi, psi)`` (``psi`` defaults to ``phi``)."""
        phi = np.asarray(phi, dtype=float).ravel()
        psi = phi if psi is None else np.asarray(psi, dtype=float).ravel()
        return float(psi @ self.matvec(phi))

    def spectrum(self, k: int = 5, return_vectors: bool = False, method: str = "auto",
                 min_weight: float = 1e-8, tol: float = 1e-8, maxiter: int = 500):
        r"""The ``k`` smallest eigenvalues of ``H`` relative to the metric ``G``.

        Potentials are defined up to a constant per state (``H`` and ``G`` both vanish on them),
        so the problem is posed in a basis of potentials modulo constants: for 1-D actions the
        step functions ``1[a > f]``, one per face, in which ``G`` is diagonal
        (``w(s) theta_f / h^2``) however small the tail masses are; for multi-D actions
        ``e_a - e_pin`` with the pin at each state's most likely action.

        Directions the metric barely sees are left out (their potentials held fixed): states
        whose weight is below ``min_weight * max(w)`` and faces (cells in multi-D) whose weighted
        mobility is below ``min_weight`` times the largest. Absolute rounding errors of order
        ``1e-16 |H|`` would otherwise dominate their Rayleigh quotients (Gibbs tails carry masses
        like 1e-60). This is a Galerkin restriction: the eigenvalues returned are upper bounds of
        the exact ones, equal to them when the slow modes live where the policy has mass.

        ``method``: ``"dense"`` (``scipy.linalg.eigh`` on the reduced matrices, one matvec per
        basis vector), ``"lobpcg"`` (1-D actions: LOBPCG on ``G^{-1/2} Z^T H Z G^{-1/2}`` with the
        entropic local part as preconditioner), or ``"auto"`` (1-D actions: LOBPCG above 800
        directions; otherwise dense, up to 2500 directions).
        Eigenvectors ``(k, nS, nA)`` are potentials normalized to ``G(phi, phi) = 1``; ``grad_a phi``
        is the velocity field to plot. ``diagnostics`` records the method, the number of
        directions kept and, for LOBPCG, the iterations and residuals.
        """
        # a cached result with at least k values (same method, restriction and tolerances) serves
        for (kk, meth, mw, tl, mi), (v, vec) in self._spectrum_cache.items():
            if kk >= k and meth == method and mw == min_weight and tl == tol and mi == maxiter:
                return (v[:k].copy(), vec[:k].copy()) if return_vectors else v[:k].copy()
        key = (k, method, min_weight, tol, maxiter)
        if int(k) < 1:
            raise ValidationError(f"spectrum needs k >= 1 eigenvalues, got {k}")
        nS, nA = self.masses.shape
        w = self._d.w
        active = w >= min_weight * np.max(w)
        self.diagnostics["states_in_spectrum"] = int(np.count_nonzero(active))
        Z = self._reduced_basis(active, min_weight)
        k = int(min(k, Z.shape[1]))
        self.diagnostics["directions_in_spectrum"] = int(Z.shape[1])
        if method == "auto":
            # LOBPCG costs a few hundred products; dense costs one per direction plus an eigh
            if self.mdp.actions.ndim == 1 and Z.shape[1] > 800:
                method = "lobpcg"
            elif Z.shape[1] <= 2500:
                method = "dense"
            else:
                raise ValidationError(f"spectrum: {Z.shape[1]} directions on a multi-D action grid; "
                                      "LOBPCG supports 1-D actions only and method='auto' keeps the "
                                      "dense method to 2500 directions (ask for method='dense' "
                                      "explicitly, or raise min_weight)")
        t0 = time.perf_counter()
        if method == "dense":
            cols = np.arange(Z.shape[1])
            HZ = np.column_stack([self.matvec(Z[:, j].toarray().ravel()) for j in cols])
            GZ = np.column_stack([self._metric_apply(Z[:, j].toarray().ravel()) for j in cols])
            Hr, Gr = np.asarray(Z.T @ HZ), np.asarray(Z.T @ GZ)
            Hr, Gr = 0.5 * (Hr + Hr.T), 0.5 * (Gr + Gr.T)
            # scale G to unit diagonal so its Cholesky factorization sees a well-scaled matrix
            D = 1.0 / np.sqrt(np.diag(Gr))
            vals, y = sla.eigh(D[:, None] * Hr * D[None, :], D[:, None] * Gr * D[None, :],
                               subset_by_index=[0, k - 1])
            vecs = Z @ (D[:, None] * y)
        elif method == "lobpcg":
            vals, vecs = self._lobpcg(Z, k, tol, maxiter)
        else:
            raise ValidationError(f"unknown spectrum method {method!r}; use 'auto', 'dense' or 'lobpcg'")
        self.diagnostics["time_spectrum"] = time.perf_counter() - t0
        self.diagnostics["spectrum_method"] = method
        vecs = vecs.T.reshape(k, nS, nA)
        vecs = vecs - vecs.mean(axis=2, keepdims=True)     # canonical representative
        for j in range(k):
            nrm = np.sqrt(max(self._metric_apply(vecs[j].ravel()) @ vecs[j].ravel(), 1e-300))
            vecs[j] /= nrm
        self._spectrum_cache[key] = (vals.copy(), vecs.copy())
        return (vals, vecs) if return_vectors else vals

    def _lobpcg(self, Z, k, tol, maxiter):
        """LOBPCG in the step-function basis (1-D actions), where ``G`` is diagonal."""
        A = self.mdp.actions
        if A.ndim != 1:
            raise ValidationError("spectrum(method='lobpcg') supports 1-D action grids; multi-D "
                                  "problems use the dense method (at most 2500 directions)")
        nS, nA = self.masses.shape
        d, m = self._d, self.masses
        th = self._faces[0][0].reshape(nS, nA - 1) / A.spacing[0] ** 2
        g = (d.w[:, None] * th).ravel()
        cols = Z.tocsc()
        # the kept faces, in the order of Z's columns: the first (smallest) cell index of each
        # column minus one is the face, per state
        first = cols.indices[cols.indptr[:-1]]
        ks = (first // nA) * (nA - 1) + (first % nA) - 1
        nk = ks.size
        sc = 1.0 / np.sqrt(g[ks])                                     # G^{-1/2} on the kept faces

        def to_potentials(Y):
            Y = np.asarray(Y).reshape(nk, -1)
            full = np.zeros((nS * (nA - 1), Y.shape[1]))
            full[ks] = Y * sc[:, None]
            phi = np.zeros((nS, nA, Y.shape[1]))
            phi[:, 1:] = np.cumsum(full.reshape(nS, nA - 1, -1), axis=1)
            return phi.reshape(nS * nA, -1)

        def from_potentials(V):                                       # adjoint of to_potentials
            b = V.shape[1]
            r = np.cumsum(V.reshape(nS, nA, b)[:, ::-1], axis=1)[:, ::-1][:, 1:]
            return r.reshape(nS * (nA - 1), b)[ks] * sc[:, None]

        def apply(Y):
            P = to_potentials(Y)
            return from_potentials(np.column_stack([self.matvec(P[:, j]) for j in range(P.shape[1])]))

        # preconditioner: the entropic local part x tau / m, tridiagonal in face coordinates
        c = d.x[:, None] * max(d.tau, 1e-300) / m
        diag = th ** 2 * (c[:, :-1] + c[:, 1:])
        off = np.zeros((nS, nA - 1))
        off[:, :-1] = -th[:, :-1] * th[:, 1:] * c[:, 1:-1]
        nF = nS * (nA - 1)
        offd = off.ravel()[:-1]
        K = sp.diags([offd, diag.ravel(), offd], [-1, 0, 1], shape=(nF, nF), format="csr")[ks][:, ks]
        S = sp.diags(sc)
        lu = spla.splu((S @ K @ S + sp.identity(nk)).tocsc())
        T = spla.LinearOperator((nk, nk), matvec=lambda v: lu.solve(np.asarray(v).reshape(nk, -1)).reshape(np.shape(v)),
                                matmat=lambda X: lu.solve(np.asarray(X)), dtype=float)
        Aop = spla.LinearOperator((nk, nk), matvec=apply, matmat=apply, dtype=float)
        X = np.random.default_rng(0).standard_normal((nk, k + 3))
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)     # reported below instead
            vals, Y, hist = spla.lobpcg(Aop, X, M=T, largest=False, tol=tol, maxiter=maxiter,
                                        retResidualNormsHistory=True)
        order = np.argsort(vals)[:k]
        res = np.asarray(hist[-1])[order] if len(hist) else np.full(k, np.nan)
        self.diagnostics["lobpcg_iterations"] = len(hist)
        self.diagnostics["lobpcg_residuals"] = res
        scale = np.maximum(1.0, np.abs(vals[order]))
        if np.any(res > 1e-3 * scale) or not np.all(np.isfinite(vals[order])):
            # the Ritz values are not trustworthy: a numerical failure, not a result
            from .errors import ConvergenceError
            raise ConvergenceError(f"LOBPCG did not converge in {len(hist)} iterations (residuals {res}); "
                                   "raise maxiter or use method='dense'",
                                   {"values": vals[order], "residuals": res, "iterations": len(hist)})
        if np.any(res > 100 * tol * scale):
            # eigenvalues are accurate to about residual^2 / gap: usable, but say so
            import warnings as _w
            _w.warn(f"LOBPCG stopped after {len(hist)} iterations with residuals {res} (eigenvalues "
                    "are accurate to about residual^2/gap; eigenvectors of a cluster are mixed)",
                    RuntimeWarning, stacklevel=3)
        return vals[order], to_potentials(Y[:, order])

    def _reduced_basis(self, active=None, min_weight=0.0):
        """Sparse basis ``Z`` of potentials modulo per-state constants.

        1-D actions: step functions ``1[a > f]`` (one per face), in which the metric is diagonal
        (``G = diag(w theta_f / h^2)``) however small the tail masses are. Multi-D: ``e_a - e_pin``
        with the pin at the most likely action of each state.
        """
        nS, nA = self.masses.shape
        n = nS * nA
        A = self.mdp.actions
        active = np.ones(nS, dtype=bool) if active is None else active
        w = self._d.w
        if A.ndim == 1:
            th = mobility(self.masses[:, :-1], self.masses[:, 1:], self.mobility)[0]
            face_w = w[:, None] * th
            # faces the metric barely sees (Gibbs tails) are left out, like low-weight states
            use = (face_w >= min_weight * face_w.max()) & active[:, None]
            # column j = step function of face (s, f): ones on the cells a > f of state s
            ss, ff = np.nonzero(use)
            step = np.arange(nA)[None, :] > ff[:, None]                  # (n_faces, nA)
            j, a = np.nonzero(step)
            rows = ss[j] * nA + a
            return sp.csr_matrix((np.ones(rows.size), (rows, j)), shape=(n, ss.size))
        pin = np.argmax(self.masses, axis=1)
        idx = np.arange(n).reshape(nS, nA)
        cell_w = w[:, None] * self.masses
        sel = ((np.arange(nA)[None, :] != pin[:, None]) & active[:, None]
               & (cell_w >= min_weight * cell_w.max()))
        keep = idx[sel]
        last = (np.arange(nS) * nA + pin)[np.nonzero(sel)[0]]
        c = np.arange(keep.size)
        return sp.csr_matrix((np.concatenate([np.ones(keep.size), -np.ones(keep.size)]),
                              (np.concatenate([keep, last]), np.concatenate([c, c]))), shape=(n, keep.size))

    def predicted_rate(self) -> float:
        """Rate ``r`` with ``J - J* ~ exp(-r t)`` under ``otto`` near this (optimal) policy:
        ``r = 2 lambda_min / kappa``."""
        return predicted_rate(self)


def hessian(mdp, objective, policy, mobility: str = "sg") -> Hessian:
    r"""The Hessian of ``J`` at ``policy`` as a LinearOperator on grid potentials.

    Parameters
    ----------
    mdp : MDP (with an action grid)
    objective : Discounted or Average
    policy : Policy with strictly positive masses (entropy-regularized policies are)
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
    if np.any(masses <= 0):
        s, a = np.argwhere(masses <= 0)[0]
        raise ValidationError(f"hessian needs strictly positive masses (entropy > 0 keeps them so); "
                              f"state {s}, action {a} has mass {masses[s, a]:g}")
    if mobility not in MOBILITIES:
        raise ValidationError(f"unknown mobility {mobility!r}; choose from {MOBILITIES}")
    t0 = time.perf_counter()
    deriv = _MassDerivatives(mdp, objective, masses)
    diag = {"time_setup": time.perf_counter() - t0}
    return Hessian(mdp, objective, masses, mobility, deriv, diag)


def predicted_rate(H: Hessian) -> float:
    """``2 lambda_min / kappa``: the decay rate of ``J - J*`` under ``otto`` near the optimum."""
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
