r"""Numerical checks of the theory, reusable on any MDP with an action grid.

:func:`run` evaluates a set of identities of the Wasserstein geometry of policies (docs/design.md
sections 2, 3 and 5) on a given MDP and objective, each as a row
``(check, value, reference, error, tolerance, status)`` of a :class:`VerifyReport`:

========================  =====================================================================
check                     identity (error measure; default tolerance)
========================  =====================================================================
``gradient``              first variation: ``dJ/de`` at 0 along the continuity curve
                          ``dm/de = L_theta(m) phi`` equals ``sum grad_m J . L_theta phi``
                          (Richardson central difference; relative to the Cauchy--Schwarz bound
                          ``kappa |psi|_G |phi|_G``; 1e-6)
``riesz``                 the Riesz representative of ``dJ`` in the metric ``G`` is
                          ``kappa psi``, ``psi = Q + tau log(m/vol)``: the weights cancel
                          (``|r/kappa - psi|_G / |psi|_G``; 1e-8)
``dissipation``           semi-discrete: ``grad_m J . dm/dt = -kappa grad_norm2`` for the
                          ``otto`` right-hand side (relative; 1e-9)
``dissipation (step)``    one explicit ``otto`` step of ``wg.flow``: ``(J(dt) - J(0))/dt`` vs
                          ``-kappa grad_norm2`` (relative, O(dt); 1e-3 at ``dt = 1e-4/max_rate``)
``gibbs``                 ``wg.solve``'s policy has masses ``~ exp(-Q/tau)`` (max abs; 1e-8)
``gibbs (otto rhs)``      and is stationary for ``otto`` (``max|dm/dt| / max outflow``; 1e-7)
``hessian``               ``H(phi, phi)`` vs second differences of ``J`` along continuity curves
                          (Richardson; relative to ``|H_local| + |H_transport|``; 1e-5)
``hessian symmetry``      ``|H(phi, chi) - H(chi, phi)|`` relative to ``|H phi||chi| + |H chi||phi|``
                          (1e-10)
``rate``                  ``predicted_rate`` (``2 lambda_min / kappa`` at the optimum) vs the decay
                          rate of an ``otto`` run started along the slowest mode (relative; 2e-2)
``convexity (...)``       second differences of ``J`` along the McCann geodesic and the metric
                          geodesic from the optimum (informational: convexity is a property, not an
                          identity), the exact continuity-curve comparison with ``H`` (1e-5) and
                          the O(h) McCann comparison (informational)
========================  =====================================================================

``docs/verify.md`` explains each identity and its error measure. :func:`convexity_along` is the
public tool behind the convexity rows.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla

from .errors import ConvergenceError, LookupFailure, ValidationError, WgflowError
from .evaluation import _check_objective, _check_policy, evaluate, solve
from .hessian import (continuity_curve, energy_gradient, hessian, laplacian_apply, measured_rate,
                      predicted_rate)
from .objectives import Average, Discounted
from .policy import Policy, gibbs_masses

__all__ = ["run", "verify", "VerifyReport", "CheckRow", "convexity_along", "ConvexityResult",
           "ContinuityCurve", "default_policy", "random_potential", "CHECKS", "TOLERANCES",
           "GEODESIC_OPTIONS"]

#: names accepted by ``run(checks=...)``, in the order they run
CHECKS = ("gradient", "riesz", "dissipation", "gibbs", "hessian", "symmetry", "rate", "convexity")

#: default tolerances (see the module docstring and docs/verify.md for the error measures)
TOLERANCES = {
    "gradient": 1e-6,
    "riesz": 1e-8,
    "dissipation": 1e-9,
    "dissipation_step": 1e-3,
    "gibbs": 1e-8,
    "gibbs_rhs": 1e-7,
    "hessian": 1e-5,
    "symmetry": 1e-10,
    "rate": 2e-2,
    "convexity_hessian": 1e-5,
    "convexity_rtol": 1e-3,
}


# =============================================================================================
# results
# =============================================================================================
@dataclass
class CheckRow:
    """One row of a :class:`VerifyReport`.

    Attributes
    ----------
    check : str
        Name of the check.
    value : float
        The computed quantity (finite-difference value, measured rate, ...).
    reference : float or str
        What it is compared with (exact formula, predicted rate, ``">= 0"``...).
    error : float
        The documented error measure (relative unless said otherwise).
    tolerance : float
        ``error <= tolerance`` passes.
    status : {"pass", "fail", "skip", "info"}
        ``"info"`` rows report a property (e.g. convexity) and never fail the report.
    note : str
        Details (decompositions, step sizes, why a check was skipped).
    """

    check: str
    value: float
    reference: object
    error: float
    tolerance: float
    status: str
    note: str = ""

    @property
    def passed(self) -> bool:
        """False only for a failed identity (``status == "fail"``)."""
        return self.status != "fail"


def _fmt(x):
    if isinstance(x, str):
        return x
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    return f"{x:.6g}" if isinstance(x, (float, np.floating)) else str(x)


@dataclass
class VerifyReport:
    """Result of :func:`run`: the table of checks.

    Attributes
    ----------
    rows : list of CheckRow
    title : str
        Problem / objective description printed above the table.
    diagnostics : dict
        Timings per check (``"time_<check>"``), the policy the checks ran at, FD steps.
    """

    rows: list
    title: str = ""
    diagnostics: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no row failed (skipped and informational rows do not count)."""
        return all(r.passed for r in self.rows)

    def row(self, check: str) -> CheckRow:
        """The row named ``check`` (KeyError if absent)."""
        for r in self.rows:
            if r.check == check:
                return r
        raise LookupFailure(f"no check named {check!r}; rows: {[r.check for r in self.rows]}")

    def failed(self) -> list:
        """The rows that failed."""
        return [r for r in self.rows if r.status == "fail"]

    def table(self, notes: bool = True) -> str:
        """The report as a fixed-width text table (one line per check, notes underneath)."""
        head = ("check", "value", "reference", "error", "tolerance", "status")
        cells = [head] + [(r.check, _fmt(r.value), _fmt(r.reference), _fmt(r.error),
                           _fmt(r.tolerance), r.status.upper() if r.status == "fail" else r.status)
                          for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = []
        if self.title:
            lines.append(self.title)
        for k, c in enumerate(cells):
            lines.append("  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in
                                   enumerate(zip(c, widths))).rstrip())
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        n_fail = len(self.failed())
        n_pass = sum(r.status == "pass" for r in self.rows)
        lines.append(f"{'ALL PASSED' if self.passed else 'FAILED'}: {n_pass} passed, {n_fail} failed, "
                     f"{sum(r.status == 'skip' for r in self.rows)} skipped, "
                     f"{sum(r.status == 'info' for r in self.rows)} informational")
        if notes:
            ns = [f"  {r.check}: {r.note}" for r in self.rows if r.note]
            if ns:
                lines.append("notes:")
                lines.extend(ns)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        counts = {k: sum(r.status == k for r in self.rows) for k in ("pass", "fail", "skip", "info")}
        return (f"<VerifyReport: {'passed' if self.passed else 'FAILED'}, {counts['pass']} passed, "
                f"{counts['fail']} failed, {counts['skip']} skipped, {counts['info']} informational>")


@dataclass
class ConvexityResult:
    """Result of :func:`convexity_along`.

    Attributes
    ----------
    t : ndarray ``(n,)``
        Curve parameters.
    J : ndarray ``(n,)``
        Objective along the curve.
    second_differences : ndarray ``(n-2,)``
        ``(J[k+1] - 2 J[k] + J[k-1]) / dt^2`` at ``t[1:-1]`` (uniform ``t``; otherwise the
        non-uniform three-point formula).
    convex : bool
        No second difference below ``-rtol * max|second_differences|`` (minus a rounding floor).
    min_second_difference : float
    negative_t : ndarray
        The interior ``t`` where the second difference is (significantly) negative.
    failing_states : list of int or None
        States whose own restricted curve (that state's policy follows the curve, the others
        stay at the first node) has negative second differences; None when not computed.
    hessian_comparison : dict or None
        ``{"fd", "hessian", "rel_error", "exact", "note"}``: the second derivative at ``t = 0``
        against the Hessian quadratic form along the initial velocity (see
        :func:`convexity_along`).
    kind : str
        ``"continuity"``, ``"mccann"``, ``"metric_geodesic"`` or ``"nodes"``.
    """

    t: np.ndarray
    J: np.ndarray
    second_differences: np.ndarray
    convex: bool
    min_second_difference: float
    negative_t: np.ndarray
    failing_states: list | None
    hessian_comparison: dict | None
    kind: str
    diagnostics: dict = field(default_factory=dict)

    def summary(self) -> str:
        s = (f"{self.kind} curve, {len(self.t)} points: min second difference "
             f"{self.min_second_difference:.4g}; {'convex' if self.convex else 'NOT convex'}")
        if not self.convex:
            s += f" at t = {np.round(self.negative_t, 4).tolist()}"
            if self.failing_states is not None:
                s += f"; states {self.failing_states}"
        h = self.hessian_comparison
        if h and (h["exact"] or (h.get("resolved") and h.get("critical"))):
            s += (f"; J''(0) = {h['fd']:.6g} vs H = {h['hessian']:.6g} "
                  f"(rel. diff. {h['rel_error']:.2e}{'' if h['exact'] else ', grid error'})")
        return s


@dataclass
class ContinuityCurve:
    """The curve ``dm/de = L_theta(m) phi`` through ``policy`` for ``e`` in ``[-eps, eps]``.

    The Hessian of :func:`wgflow.hessian` is exactly the second derivative of ``J`` along these
    curves at ``e = 0`` (frozen potential ``phi``, ``mobility`` as in the Hessian).
    """

    policy: object
    phi: np.ndarray
    eps: float
    mobility: str = "sg"


#: options of the metric-geodesic convexity row (``wgflow.geodesics.metric_geodesic``); a run that
#: stops at ``max_iter`` is still used (reported as "NOT converged")
GEODESIC_OPTIONS = {"n_nodes": 9, "n_quantiles": 8, "tol": 1e-7, "max_iter": 150}


# =============================================================================================
# helpers
# =============================================================================================
def _kappa(objective) -> float:
    return 1.0 / (1.0 - objective.gamma) if isinstance(objective, Discounted) else 1.0


def _J(mdp, masses, objective) -> float:
    return evaluate(mdp, masses, objective).J


def _unit_coords(actions):
    """Action coordinates scaled to [-1, 1] per axis, ``(nA, da)``."""
    X = actions.centers
    lo, hi = actions.bounds[:, 0], actions.bounds[:, 1]
    return (2.0 * X - (lo + hi)) / np.where(hi > lo, hi - lo, 1.0)


def random_potential(mdp, rng, degree: int = 3) -> np.ndarray:
    """A smooth random potential ``(nS, nA)``: per state a random polynomial of the action.

    Monomials of total degree 1..``degree`` in the action coordinates scaled to ``[-1, 1]``,
    with independent standard normal coefficients per state.
    """
    A = mdp.require_actions("random_potential")
    U = _unit_coords(A)
    feats = []
    da = U.shape[1]
    from itertools import combinations_with_replacement
    for deg in range(1, degree + 1):
        for idx in combinations_with_replacement(range(da), deg):
            feats.append(np.prod(U[:, list(idx)], axis=1))
    F = np.stack(feats)                                   # (n_features, nA)
    c = rng.standard_normal((mdp.n_states, F.shape[0]))
    return c @ F


def _scale_potential(mdp, masses, phi, kind="sg"):
    """Scale ``phi`` so that the relative mass change rate ``max |L phi / m|`` is 1."""
    Lp = laplacian_apply(masses, phi, mdp.actions, kind)
    r = np.max(np.abs(Lp) / masses)
    return phi / r if r > 0 else phi


def _metric_norm2(masses, weights, phi, actions, kind="sg") -> float:
    """``G(phi, phi) = sum_s w(s) sum_faces theta (phi_i - phi_j)^2 / h^2``."""
    return float(np.sum(weights[:, None] * phi * laplacian_apply(masses, phi, actions, kind)))


def _metric_inner(masses, weights, phi, chi, actions, kind="sg") -> float:
    return float(np.sum(weights[:, None] * chi * laplacian_apply(masses, phi, actions, kind)))


def _cc(mdp, masses, phi, e, kind="sg"):
    """:func:`wgflow.hessian.continuity_curve`, raising ValidationError on any non-positive mass.

    (``continuity_curve`` only checks the final masses: an RK4 stage that leaves the positive
    cone produces ``log`` of a negative ratio -- a NaN, or FloatingPointError under
    ``np.seterr(all="raise")`` -- and NaN masses pass its ``min(m) <= 0`` test.)
    """
    try:
        with np.errstate(invalid="raise", divide="raise", over="raise"):
            m = continuity_curve(mdp, masses, phi, e, mobility_kind=kind)
    except FloatingPointError as exc:
        raise ValidationError(f"continuity curve: e = {e:g} leaves the positive cone ({exc})") from exc
    if not np.all(np.isfinite(m)) or np.min(m) <= 0:
        raise ValidationError(f"continuity curve: e = {e:g} empties a cell")
    return m


def default_policy(mdp, objective, rng, solution=None) -> Policy:
    """The policy the local checks run at by default: a perturbed optimum.

    ``m ~ (0.75 m* + 0.25 / nA) exp(0.5 phi)`` with ``m*`` the optimal masses and ``phi`` a
    smooth random potential scaled to sup-norm 1: strictly positive, away from the optimum
    (so that first-order identities are not trivially 0 = 0), and in the region that matters.
    """
    sol = solution if solution is not None else solve(mdp, objective)
    nA = mdp.n_actions
    phi = random_potential(mdp, rng, degree=2)
    phi /= max(np.max(np.abs(phi)), 1e-300)
    m = (0.75 * sol.policy.masses + 0.25 / nA) * np.exp(0.5 * phi)
    m /= m.sum(axis=1, keepdims=True)
    return Policy(m, mdp.actions, mdp.states, validate=True)


# =============================================================================================
# the individual checks
# =============================================================================================
def _row(check, value, reference, error, tol, note="", info=False):
    if info:
        status = "info"
    else:
        status = "pass" if (np.isfinite(error) and error <= tol) else "fail"
    return CheckRow(check, float(value), reference if isinstance(reference, str) else float(reference),
                    float(error), float(tol), status, note)


def _skip(check, note):
    return CheckRow(check, float("nan"), "-", float("nan"), float("nan"), "skip", note)


def check_gradient(mdp, objective, masses, rng, eps=0.05, n_directions=2, tol=None):
    r"""First variation along continuity curves.

    For smooth random potentials ``phi`` (scaled so that ``max |L phi / m| = 1``), compares the
    Richardson-extrapolated central difference ``(4 D(e/2) - D(e)) / 3`` with
    ``D(e) = (J(m(e)) - J(m(-e))) / (2e)`` against the exact
    ``dJ/de = sum_{s,a} grad_m J . (L_theta phi) = kappa G(psi, phi)``. Error: absolute difference
    divided by the Cauchy--Schwarz bound ``kappa |psi|_G |phi|_G`` (worst direction).
    """
    tol = TOLERANCES["gradient"] if tol is None else tol
    A = mdp.actions
    grad = energy_gradient(mdp, objective, masses)
    ev = evaluate(mdp, masses, objective)
    kappa = _kappa(objective)
    tau = objective.entropy
    psi = ev.Q + (tau * np.log(masses / A.cell_volume) if tau > 0 else 0.0)
    psi_norm = np.sqrt(max(_metric_norm2(masses, ev.weights, psi, A), 0.0))
    worst, out = -1.0, None
    for _ in range(n_directions):
        phi = _scale_potential(mdp, masses, random_potential(mdp, rng))
        exact = float(np.sum(grad * laplacian_apply(masses, phi, A)))
        J = {e: _J(mdp, _cc(mdp, masses, phi, e), objective) for e in (eps, -eps, eps / 2, -eps / 2)}
        D1 = (J[eps] - J[-eps]) / (2 * eps)
        D2 = (J[eps / 2] - J[-eps / 2]) / eps
        fd = (4 * D2 - D1) / 3
        phi_norm = np.sqrt(max(_metric_norm2(masses, ev.weights, phi, A), 0.0))
        scale = max(abs(exact), kappa * psi_norm * phi_norm, 1e-300)
        err = abs(fd - exact) / scale
        if err > worst:
            worst, out = err, (fd, exact)
    return [_row("gradient", out[0], out[1], worst, tol,
                 f"dJ/de along continuity curves, Richardson central differences (e = {eps:g}, "
                 f"{n_directions} random potentials); error / (kappa |psi|_G |phi|_G)")]


def _state_laplacians(masses, actions, kind="sg"):
    """Dense per-state weighted graph Laplacians ``L_s`` ``(nS, nA, nA)`` of ``L_theta(m)``."""
    nS, nA = masses.shape
    Ls = np.zeros((nS, nA, nA))
    e = np.zeros((nS, nA))
    for a in range(nA):
        e[:, a] = 1.0
        Ls[:, :, a] = laplacian_apply(masses, e, actions, kind)
        e[:, a] = 0.0
    return Ls


def check_riesz(mdp, objective, masses, tol=None, min_weight=1e-12):
    r"""The Riemannian gradient is ``grad_a psi``: weights cancel in the Riesz representation.

    The differential ``dJ[phi] = grad_m J . L_theta phi`` is represented in the metric
    ``G(phi, chi) = sum_s w(s) phi^T L_s chi`` by the potential ``r`` solving, per state,
    ``w(s) L_s r_s = L_s grad_m J_s`` (one pinned node per state: potentials are defined up to a
    constant). The theory says ``r = kappa psi`` up to per-state constants (the occupancy in
    ``grad_m J = kappa w psi`` cancels the weight of the metric). Error:
    ``|r / kappa - psi|_G / |psi|_G``. States with ``w < min_weight * max w`` are left out
    (the metric does not see them). The note also reports the Rayleigh quotient of the
    weight-multiplied candidate ``w psi`` relative to the maximum (``<= 1`` by Cauchy--Schwarz).
    """
    tol = TOLERANCES["riesz"] if tol is None else tol
    A = mdp.actions
    ev = evaluate(mdp, masses, objective)
    w = ev.weights
    tau = objective.entropy
    kappa = _kappa(objective)
    psi = ev.Q + (tau * np.log(masses / A.cell_volume) if tau > 0 else 0.0)
    grad = energy_gradient(mdp, objective, masses)
    nS, nA = masses.shape
    if nS * nA * nA > 5e7:
        return [_skip("riesz", f"dense per-state metric blocks too large (nS*nA^2 = {nS * nA * nA:.3g})")]
    Ls = _state_laplacians(masses, A)
    r = np.zeros_like(psi)
    active = w >= min_weight * np.max(w)
    for s in np.nonzero(active)[0]:
        Ms = w[s] * Ls[s]
        b = Ls[s] @ grad[s]
        p = int(np.argmax(masses[s]))
        keep = np.arange(nA) != p
        M = Ms[np.ix_(keep, keep)]
        d = np.sqrt(np.abs(np.diag(M)))
        d = np.where(d > 0, d, 1.0)
        y = sla.lstsq(M / d[:, None] / d[None, :], b[keep] / d, lapack_driver="gelsd")[0]
        r[s, keep] = y / d
    e = np.where(active[:, None], r / kappa - psi, 0.0)
    wa = np.where(active, w, 0.0)
    num = np.sqrt(max(_metric_norm2(masses, wa, e, A), 0.0))
    psin = np.sqrt(max(_metric_norm2(masses, wa, psi, A), 0.0))
    err = num / psin if psin > 0 else num
    # the weight-multiplied candidate: Rayleigh quotient kappa G(psi, w psi) / |w psi|_G
    wpsi = w[:, None] * psi
    wn = np.sqrt(max(_metric_norm2(masses, w, wpsi, A), 0.0))
    ratio = (_metric_inner(masses, w, psi, wpsi, A) / (wn * psin)) if wn > 0 and psin > 0 else 1.0
    return [_row("riesz", num, 0.0, err, tol,
                 f"|r/kappa - psi|_G = {num:.3g}, |psi|_G = {psin:.3g} (r: Riesz representative of dJ "
                 f"in G); the weighted candidate w*psi reaches {ratio:.4f} of the steepest slope")]


def check_dissipation(mdp, objective, masses, tol=None, tol_step=None, dt_factor=1e-4):
    r"""Energy dissipation of the ``otto`` scheme.

    (a) semi-discrete identity: ``grad_m J . dm/dt = -kappa * grad_norm2`` with ``dm/dt`` and
    ``grad_norm2 = sum_s w(s) sum_faces -F (psi_j - psi_i)`` from :func:`otto_rhs`
    (relative error, exact up to rounding).
    (b) one fixed step of ``wg.flow(..., scheme="otto", dt=dt)`` with ``dt = dt_factor /
    max_rate``: ``(J(dt) - J(0)) / dt`` vs ``-kappa * grad_norm2`` (relative error, O(dt); the
    note gives the error at ``2 dt`` too, whose ratio shows the first order).
    """
    from .flows import flow
    from .flows.otto import otto_rhs
    tol = TOLERANCES["dissipation"] if tol is None else tol
    tol_step = TOLERANCES["dissipation_step"] if tol_step is None else tol_step
    ev = evaluate(mdp, masses, objective)
    kappa = _kappa(objective)
    dm, rate, diss = otto_rhs(masses, ev.Q, objective.entropy, mdp.actions, ev.weights)
    grad = energy_gradient(mdp, objective, masses)
    dJdt = float(np.sum(grad * dm))
    ref = -kappa * diss
    rows = [_row("dissipation", dJdt, ref, abs(dJdt - ref) / max(abs(ref), 1e-300), tol,
                 "grad_m J . dm/dt vs -kappa * grad_norm2 (otto_rhs, exact Q)")]
    pol = Policy(masses, mdp.actions, mdp.states, validate=False)
    errs = {}
    vals = {}
    for f in (2.0, 1.0):
        dt = f * dt_factor / float(rate.max())
        traj = flow(mdp, objective, pol, scheme="otto", t_end=dt, dt=dt, progress=False)
        slope = (traj.J[-1] - traj.J[0]) / (traj.times[-1] - traj.times[0])
        r = -kappa * traj.grad_norm2[0]
        errs[f] = abs(slope - r) / max(abs(r), 1e-300)
        vals[f] = (slope, r, dt)
    slope, r, dt = vals[1.0]
    rows.append(_row("dissipation (step)", slope, r, errs[1.0], tol_step,
                     f"one otto step of wg.flow, dt = {dt:.3g} = {dt_factor:g}/max_rate; error at 2 dt: "
                     f"{errs[2.0]:.3g} (ratio {errs[2.0] / max(errs[1.0], 1e-300):.2f}, first order: 2)"))
    return rows


def check_gibbs(mdp, objective, solution, tol=None, tol_rhs=None):
    r"""The optimal policy is the Gibbs policy of its own Q and a stationary point of ``otto``.

    (a) ``max |m - gibbs_masses(Q, tau)|`` for ``solve``'s policy and its exact ``Q``;
    (b) ``max |dm/dt| / max(rate * m)`` for the ``otto`` right-hand side there (imbalance
    relative to the largest outflow of a cell).
    """
    from .flows.otto import otto_rhs
    tol = TOLERANCES["gibbs"] if tol is None else tol
    tol_rhs = TOLERANCES["gibbs_rhs"] if tol_rhs is None else tol_rhs
    tau = objective.entropy
    if tau <= 0:
        return [_skip("gibbs", "needs entropy > 0 (with tau = 0 optimal policies are deterministic)"),
                _skip("gibbs (otto rhs)", "needs entropy > 0")]
    m = solution.policy.masses
    g = gibbs_masses(solution.Q, tau)
    err = float(np.max(np.abs(m - g)))
    dm, rate, _ = otto_rhs(m, solution.Q, tau, mdp.actions)
    out = float(np.max(rate * m))
    e2 = float(np.max(np.abs(dm))) / max(out, 1e-300)
    return [_row("gibbs", err, 0.0, err, tol,
                 f"max |m - exp(-Q/tau)/Z| at wg.solve's policy ({solution.iterations} iterations)"),
            _row("gibbs (otto rhs)", float(np.max(np.abs(dm))), 0.0, e2, tol_rhs,
                 "max |dm/dt| of otto at the optimum / largest cell outflow")]


def check_hessian(mdp, objective, masses, rng, eps=0.05, n_directions=2, tol=None, tol_sym=None,
                  H=None, which=("hessian", "symmetry")):
    r"""Hessian against second differences along continuity curves, and its symmetry.

    ``hessian``: ``H(phi, phi)`` (``H.matvec``) vs the Richardson extrapolation
    ``(4 S(e/2) - S(e)) / 3`` of ``S(e) = (J(m(e)) - 2 J(m) + J(m(-e))) / e^2`` along
    ``dm/de = L_theta(m) phi``; error relative to ``|H_local(phi,phi)| + |H_transport(phi,phi)|``.
    ``hessian symmetry``: ``|H(phi, chi) - H(chi, phi)|`` relative to
    ``|H phi| |chi| + |H chi| |phi|`` (Euclidean norms), random smooth ``phi``, ``chi``.
    """
    tol = TOLERANCES["hessian"] if tol is None else tol
    tol_sym = TOLERANCES["symmetry"] if tol_sym is None else tol_sym
    if np.any(masses <= 0):
        return [_skip(n, "the Hessian needs strictly positive masses") for n in
                (["hessian"] if "hessian" in which else []) + (["hessian symmetry"] if "symmetry" in which else [])]
    H = hessian(mdp, objective, masses) if H is None else H
    rows = []
    if "hessian" in which:
        J0 = _J(mdp, masses, objective)
        worst, best = -1.0, None
        for _ in range(n_directions):
            phi = _scale_potential(mdp, masses, random_potential(mdp, rng))
            v = phi.ravel()
            q = float(v @ H.matvec(v))
            loc, tr = float(v @ H.local.matvec(v)), float(v @ H.transport.matvec(v))
            J = {e: _J(mdp, _cc(mdp, masses, phi, e), objective) for e in (eps, -eps, eps / 2, -eps / 2)}
            S1 = (J[eps] - 2 * J0 + J[-eps]) / eps ** 2
            S2 = (J[eps / 2] - 2 * J0 + J[-eps / 2]) / (eps / 2) ** 2
            fd = (4 * S2 - S1) / 3
            scale = max(abs(loc) + abs(tr), abs(q), 1e-300)
            err = abs(fd - q) / scale
            if err > worst:
                worst, best = err, (fd, q, loc, tr)
        fd, q, loc, tr = best
        rows.append(_row("hessian", fd, q, worst, tol,
                         f"J'' along continuity curves (Richardson, e = {eps:g}, {n_directions} random "
                         f"potentials) vs H(phi,phi) = local {loc:.4g} + transport {tr:.4g}; "
                         "error / (|local| + |transport|)"))
    if "symmetry" in which:
        phi = _scale_potential(mdp, masses, random_potential(mdp, rng)).ravel()
        chi = _scale_potential(mdp, masses, random_potential(mdp, rng)).ravel()
        Hp, Hc = H.matvec(phi), H.matvec(chi)
        a, b = float(chi @ Hp), float(phi @ Hc)
        scale = np.linalg.norm(Hp) * np.linalg.norm(chi) + np.linalg.norm(Hc) * np.linalg.norm(phi)
        rows.append(_row("hessian symmetry", abs(a - b), 0.0, abs(a - b) / max(scale, 1e-300), tol_sym,
                         f"H(phi,chi) = {b:.6g}, H(chi,phi) = {a:.6g}"))
    return rows


def check_rate(mdp, objective, solution, tol=None, target_gap=1e-5, max_steps=20000):
    r"""Predicted vs measured local rate of the ``otto`` flow at the optimum.

    ``predicted_rate(H) = 2 lambda_min / kappa`` with ``lambda_min`` the smallest eigenvalue of
    ``H`` relative to ``G`` at ``wg.solve``'s policy (``H.spectrum(1)``, ``method="auto"``: dense
    up to 2500 reduced directions, LOBPCG above; skipped for multi-D action grids above 2500,
    where LOBPCG is not available). The flow starts on the continuity curve
    along the slowest eigenvector (relative gap ``~ target_gap``) and runs with a fixed step
    ``dt = 0.5 / max_rate``; :func:`measured_rate` fits ``J - J* ~ exp(-r t)`` on relative gaps
    in ``(1e-9, target_gap / 3)`` (the flow's warm-started evaluations are accurate to ~1e-12). Explicit Euler contracts the slow mode by
    ``1 - dt r / 2`` per step, so the measured rate is converted to the continuous-time rate
    ``(2/dt)(1 - exp(-r_meas dt / 2))`` before the comparison. Error: relative.
    """
    from .flows import flow
    from .flows.otto import otto_rhs
    tol = TOLERANCES["rate"] if tol is None else tol
    tau = objective.entropy
    if tau <= 0:
        return [_skip("rate", "needs entropy > 0 (the Hessian needs positive masses)")]
    ps = solution.policy
    H = hessian(mdp, objective, ps)
    import warnings
    try:
        # method="auto": dense up to 2500 reduced directions, LOBPCG above (1-D action grids)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            vals, vecs = H.spectrum(1, return_vectors=True)
    except ValidationError as exc:
        # multi-D action grids with more than 2500 reduced directions: LOBPCG is 1-D only
        return [_skip("rate", f"H.spectrum: {exc}")]
    for w in caught:              # re-emit what is not LOBPCG's non-convergence warning
        if "LOBPCG" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    spec_note = f"spectrum: {H.diagnostics.get('spectrum_method')}"
    if H.diagnostics.get("spectrum_method") == "lobpcg":
        spec_note += (f" ({H.diagnostics['lobpcg_iterations']} iterations, residual "
                      f"{float(np.max(H.diagnostics['lobpcg_residuals'])):.1e}"
                      + ("; above LOBPCG's tolerance" if any("LOBPCG" in str(w.message) for w in caught) else "")
                      + ")")
    lam = float(vals[0])
    pred = predicted_rate(H)          # the package's formula, 2 lambda_min / kappa
    if not pred > 0:
        return [_skip("rate", f"lambda_min = {lam:.3g} <= 0: no local linear rate")]
    scale = max(1.0, abs(solution.J))
    eps = np.sqrt(2.0 * target_gap * scale / lam)
    # at most a 10% relative change of any cell's mass along the way
    r = float(np.max(np.abs(laplacian_apply(ps.masses, vecs[0], mdp.actions)) / ps.masses))
    if r > 0:
        eps = min(eps, 0.1 / r)
    m0 = None
    for _ in range(30):
        try:
            m0 = _cc(mdp, ps.masses, vecs[0], eps)
            break
        except ValidationError:
            eps *= 0.5
    if m0 is None:
        return [_skip("rate", "could not start on the slowest mode (continuity curve empties a cell)")]
    _, rate, _ = otto_rhs(ps.masses, solution.Q, tau, mdp.actions)
    dt = 0.5 / float(rate.max())
    gap0 = (_J(mdp, m0, objective) - solution.J) / scale
    t_end = np.log(max(gap0, 2e-10) / 1e-10) / pred * 1.1
    n_steps = int(np.ceil(t_end / dt))
    if n_steps > max_steps:
        return [_skip("rate", f"would need {n_steps} otto steps (> max_steps = {max_steps}); "
                      "rate = 2 lambda/kappa is too slow relative to the CFL step")]
    stride = max(1, n_steps // 400)
    traj = flow(mdp, objective, Policy(m0, mdp.actions, mdp.states, validate=False), scheme="otto",
                t_end=n_steps * dt, dt=dt, save_every=stride * dt, progress=False)
    try:
        r_meas = measured_rate(traj, solution.J, lower=1e-9, upper=target_gap / 3)
    except ValidationError as exc:
        return [_skip("rate", f"measured_rate failed: {exc}")]
    r_cont = 2.0 / dt * (1.0 - np.exp(-r_meas * dt / 2.0))
    return [_row("rate", r_cont, pred, abs(r_cont - pred) / pred, tol,
                 f"lambda_min = {lam:.6g} ({spec_note}), kappa = {H.kappa:.4g}; otto with fixed "
                 f"dt = {dt:.3g} ({n_steps} steps) decays at {r_meas:.6g} per unit time, i.e. "
                 f"{r_cont:.6g} after the explicit-Euler correction")]


# =============================================================================================
# convexity along curves
# =============================================================================================
def _second_differences(t, J):
    t0, t1, t2 = t[:-2], t[1:-1], t[2:]
    h1, h2 = t1 - t0, t2 - t1
    return 2.0 * (h1 * J[2:] - (h1 + h2) * J[1:-1] + h2 * J[:-2]) / (h1 * h2 * (h1 + h2))


def _potential_from_velocity(v, actions):
    """1-D: potential whose face difference quotient is the face average of ``v`` ``(nS, nA)``."""
    h = actions.spacing[0]
    vf = 0.5 * (v[:, 1:] + v[:, :-1])
    phi = np.concatenate([np.zeros((v.shape[0], 1)), np.cumsum(vf * h, axis=1)], axis=1)
    return phi - phi.mean(axis=1, keepdims=True)


_TAIL_LIMIT = 2.0


def _tail_statistic(m):
    """``max_s sum_a max(m_{a-1}, m_{a+1})^2 / m_a``: about 1 for a density the grid resolves."""
    nb = np.zeros_like(m)
    nb[:, 1:] = np.maximum(nb[:, 1:], m[:, :-1])
    nb[:, :-1] = np.maximum(nb[:, :-1], m[:, 1:])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.where(m > 0, nb ** 2 / np.where(m > 0, m, 1.0), np.where(nb > 0, np.inf, 0.0))
    return float(np.max(np.sum(r, axis=1)))


def _tails_resolved(m) -> bool:
    return _tail_statistic(m) <= _TAIL_LIMIT


def _clean(m):
    m = np.maximum(np.asarray(m, dtype=float), 0.0)
    return m / m.sum(axis=1, keepdims=True)


def convexity_along(mdp, objective, curve, n_points: int | None = None, rtol: float | None = None,
                    per_state: bool | None = None, compare_hessian: bool = True,
                    fd_step: float = 1e-3) -> ConvexityResult:
    r"""``J`` and its second differences along a curve of policies: is ``J`` convex along it?

    Parameters
    ----------
    mdp : MDP (with an action grid)
    objective : Discounted or Average
    curve : one of
        * ``(pi0, pi1)``: two policies -- the state-wise McCann geodesic
          (:func:`wgflow.geometry.geodesic`) on ``t`` in ``[0, 1]``;
        * a sequence of 3 or more policies / mass arrays: the nodes of a curve at uniform
          ``t = k / K``;
        * a :class:`~wgflow.geodesics.GeodesicResult` (:func:`~wgflow.geodesics.metric_geodesic`):
          its nodes at its ``times``;
        * a :class:`ContinuityCurve` ``(policy, phi, eps)``: ``dm/de = L_theta(m) phi`` on
          ``[-eps, eps]``;
        * a callable ``t -> Policy or masses`` on ``[0, 1]``.
    n_points : int, optional
        Points on ``[0, 1]`` (or ``[-eps, eps]``) for the McCann, continuity and callable curves.
        McCann default: chosen so that the largest per-state displacement per step is about two
        action cells (between 5 and 33 points): the cell masses of a McCann curve are only
        piecewise smooth in ``t`` (a kink whenever a quantile knot crosses a cell edge), so finer
        steps measure those kinks, not the curvature. Other curves: 21.
    rtol : float
        A second difference counts as negative when it is below
        ``-rtol * max |second differences|`` (minus a rounding floor). Default 1e-3.
    per_state : bool, optional
        Also find the states whose own restricted curve (only that state's policy moves along
        the curve, the others stay at the first node) is non-convex. Default: when
        ``n_states <= 32``.
    compare_hessian : bool
        ``ContinuityCurve``: compare the Richardson central second difference of ``J`` at
        ``e = 0`` (steps ``min(eps, 0.05)`` and half of it) with ``H(phi, phi)`` -- an exact
        identity at any policy.
        McCann curves with 1-D actions and positive ``pi0``: compare the one-sided Richardson
        second derivative ``J''(0+)`` (steps ``fd_step``, ``fd_step / 2``) with
        ``H(phi_v, phi_v)``, ``phi_v`` the potential of the initial velocity
        ``v = log(pi0, pi1)`` (face differences of ``phi_v`` = face averages of ``v``). This agrees
        only up to the grid error and only at a critical point of ``J`` (e.g. ``pi0`` the
        entropy-regularized optimum): at ``t = 0+`` the McCann cell masses move by *upwind*
        fluxes of ``pi0 v`` while ``H`` uses the ``L_theta`` fluxes, and away from critical
        points the McCann acceleration adds ``grad J . m''``. When ``pi0`` is not resolved by
        the grid (``max_s sum_a max(m_{a-1}, m_{a+1})^2 / m_a > 2``, e.g. Gibbs tails falling by
        many orders of magnitude per cell) the comparison is not made (``resolved=False``):
        ``J''(0+)`` is then dominated by the upwind entropy term of tail cells.
    fd_step : float
        One-sided step for the McCann comparison.

    Returns
    -------
    ConvexityResult

    Examples
    --------
    >>> import wgflow as wg
    >>> from wgflow.verify import convexity_along
    >>> mdp = wg.problems.get("quadratic_bandit", n_actions=61)
    >>> obj = wg.Discounted(0.5, entropy=0.2)
    >>> res = convexity_along(mdp, obj, (wg.Policy.gaussian(mdp, -1, 0.4), wg.Policy.gaussian(mdp, 1.5, 0.8)))
    >>> res.convex
    True
    """
    from . import geometry
    from .geodesics import GeodesicResult
    _check_objective(objective)
    A = mdp.require_actions("convexity_along")
    rtol = TOLERANCES["convexity_rtol"] if rtol is None else rtol
    comparison = None
    diag = {}
    if isinstance(curve, ContinuityCurve):
        kind = "continuity"
        m0 = _check_policy(mdp, curve.policy)
        phi = np.asarray(curve.phi, dtype=float).reshape(m0.shape)
        n = 21 if n_points is None else int(n_points)
        t = np.linspace(-curve.eps, curve.eps, n)
        masses = [_cc(mdp, m0, phi, tt, curve.mobility) for tt in t]
        if compare_hessian:
            e = min(curve.eps, 0.05)
            J0 = _J(mdp, m0, objective)
            Jd = {x: _J(mdp, _cc(mdp, m0, phi, x, curve.mobility), objective) for x in (e, -e, e / 2, -e / 2)}
            S1 = (Jd[e] - 2 * J0 + Jd[-e]) / e ** 2
            S2 = (Jd[e / 2] - 2 * J0 + Jd[-e / 2]) / (e / 2) ** 2
            fd = (4 * S2 - S1) / 3
            H = hessian(mdp, objective, m0, mobility=curve.mobility)
            v = phi.ravel()
            q = float(v @ H.matvec(v))
            scale = max(abs(float(v @ H.local.matvec(v))) + abs(float(v @ H.transport.matvec(v))), abs(q), 1e-300)
            comparison = {"fd": fd, "hessian": q, "rel_error": abs(fd - q) / scale, "exact": True,
                          "note": f"central Richardson second difference at e = 0 (steps {e:g}, {e / 2:g}) "
                                  "vs H(phi, phi); error / (|H_local| + |H_transport|)"}
    elif isinstance(curve, GeodesicResult):
        kind = "metric_geodesic"
        t = np.asarray(curve.times, dtype=float)
        # every node (endpoints included) deposited the same way: the endpoints' exact masses
        # differ from the deposition of their knots by O(h^2), which would show up as spurious
        # second differences at the first and last interior nodes
        import dataclasses
        q = dataclasses.replace(curve.quantiles, end_masses=None)
        masses = [_clean(q.masses(k)) for k in range(q.n_nodes)]
    elif callable(curve) and not isinstance(curve, (list, tuple)):
        kind = "callable"
        n = 21 if n_points is None else int(n_points)
        t = np.linspace(0.0, 1.0, n)
        masses = [_check_policy(mdp, curve(tt)) for tt in t]
    else:
        nodes = list(curve)
        if len(nodes) == 2:
            kind = "mccann"
            p0, p1 = (p if isinstance(p, Policy) else Policy(p, A, mdp.states) for p in nodes)
            _check_policy(mdp, p0), _check_policy(mdp, p1)
            if n_points is None:
                from .geodesics import wasserstein_1d
                if A.ndim == 1:
                    dmax = float(np.max(wasserstein_1d(p0.masses, p1.masses, A)))
                else:
                    dmax = float(np.sqrt(np.max(geometry.w2sq(p0, p1, atoms=True))))
                n = int(np.clip(np.floor(dmax / (2.0 * np.min(A.spacing))) + 1, 5, 33))
            else:
                n = int(n_points)
            t = np.linspace(0.0, 1.0, n)
            masses = [p.masses for p in geometry.geodesic(p0, p1, t)]
            resolved = _tails_resolved(p0.masses) if A.ndim == 1 and np.all(p0.masses > 0) else False
            diag["mccann_tails_statistic"] = _tail_statistic(p0.masses) if A.ndim == 1 else None
            if compare_hessian and A.ndim == 1 and np.all(p0.masses > 0) and not resolved:
                comparison = {"fd": float("nan"), "hessian": float("nan"), "rel_error": float("nan"),
                              "exact": False, "resolved": False, "critical": None,
                              "note": "pi0's density is not resolved by the grid (neighbour mass ratios "
                                      f"too large: statistic {diag['mccann_tails_statistic']:.3g} > "
                                      f"{_TAIL_LIMIT:g}); J''(0+) along the grid McCann curve is then "
                                      "dominated by the upwind entropy term of tail cells"}
            elif compare_hessian and A.ndim == 1 and np.all(p0.masses > 0):
                d = fd_step
                Jt = {x: _J(mdp, geometry.geodesic(p0, p1, x).masses, objective) for x in (0.0, d / 2, d, 2 * d)}
                D1 = (Jt[2 * d] - 2 * Jt[d] + Jt[0.0]) / d ** 2
                D2 = (Jt[d] - 2 * Jt[d / 2] + Jt[0.0]) / (d / 2) ** 2
                fd = 2 * D2 - D1
                v = geometry.log(p0, p1)[:, :, 0]
                phiv = _potential_from_velocity(v, A)
                H = hessian(mdp, objective, p0)
                pv = phiv.ravel()
                q = float(pv @ H.matvec(pv))
                # critical point: the gradient |grad_a psi|_G is negligible next to |grad_a Q|_G
                wts = H.evaluation.weights
                gpsi = _metric_norm2(p0.masses, wts, H.gradient, A)
                gq = _metric_norm2(p0.masses, wts, H.evaluation.Q, A)
                critical = bool(np.sqrt(max(gpsi, 0.0)) <= 1e-6 * np.sqrt(max(gq, 1e-300)))
                comparison = {"fd": fd, "hessian": q, "rel_error": abs(fd - q) / max(abs(q), 1e-300),
                              "exact": False, "resolved": True, "critical": critical,
                              "note": f"one-sided Richardson J''(0+) (steps {d:g}, {d / 2:g}) vs "
                                      "H(phi_v, phi_v), grad phi_v = log(pi0, pi1): agree only up to the "
                                      "grid error (resolution statistic "
                                      f"{diag['mccann_tails_statistic']:.3g}, 1 = resolved) and only at "
                                      "a critical point of J"}
        elif len(nodes) >= 3:
            kind = "nodes"
            masses = [_check_policy(mdp, p) for p in nodes]
            t = np.linspace(0.0, 1.0, len(masses))
        else:
            raise ValidationError(f"convexity_along needs 2 policies (McCann) or >= 3 nodes, got {len(nodes)}")
    if len(masses) < 3:
        raise ValidationError("convexity_along needs at least 3 points on the curve")
    J = np.array([_J(mdp, m, objective) for m in masses])
    D2 = _second_differences(t, J)
    dt_min = float(np.min(np.diff(t)))
    floor = 16 * np.finfo(float).eps * max(1.0, float(np.max(np.abs(J)))) / dt_min ** 2
    thr = rtol * float(np.max(np.abs(D2))) + floor
    neg = D2 < -thr
    failing = None
    if per_state is None:
        per_state = mdp.n_states <= 32
    if per_state and mdp.n_states > 1:
        failing = []
        base = masses[0]
        for s in range(mdp.n_states):
            Js = []
            for m in masses:
                ms = base.copy()
                ms[s] = m[s]
                Js.append(_J(mdp, ms, objective))
            Js = np.array(Js)
            d2 = _second_differences(t, Js)
            if np.any(d2 < -(rtol * float(np.max(np.abs(d2))) + floor)):
                failing.append(int(s))
    elif per_state:
        failing = [0] if np.any(neg) else []
    diag.update({"threshold": thr, "n_points": len(t)})
    return ConvexityResult(t=t, J=J, second_differences=D2, convex=not bool(np.any(neg)),
                           min_second_difference=float(np.min(D2)), negative_t=t[1:-1][neg],
                           failing_states=failing, hessian_comparison=comparison, kind=kind,
                           diagnostics=diag)


def _convexity_rows(mdp, objective, solution, base, rng, tol, geodesics=True, rtol=None):
    rtol = TOLERANCES["convexity_rtol"] if rtol is None else rtol
    rows = []
    A = mdp.actions
    tau = objective.entropy
    # the continuity curve through the base policy: exact comparison with H
    phi = _scale_potential(mdp, base, random_potential(mdp, rng))
    try:
        res = convexity_along(mdp, objective, ContinuityCurve(base, phi, 0.2), n_points=9,
                              per_state=False)
        h = res.hessian_comparison
        rows.append(_row("convexity (continuity vs H)", h["fd"], h["hessian"], h["rel_error"], tol,
                         h["note"] + f"; J convex on [-0.2, 0.2]: {res.convex}"))
    except ValidationError as exc:
        rows.append(_skip("convexity (continuity vs H)", str(exc)))
    # McCann and metric geodesics from the optimum (tau > 0) or from the base policy
    p0 = solution.policy if tau > 0 else Policy(base, A, mdp.states, validate=False)
    U = _unit_coords(A)
    shift = rng.uniform(-0.15, 0.15, size=(mdp.n_states, 1, A.ndim))
    stretch = rng.uniform(-0.2, 0.2, size=(mdp.n_states, 1, 1))
    width = (A.bounds[:, 1] - A.bounds[:, 0])[None, None, :]
    v = (shift + stretch * U[None, :, :] / 2.0) * width
    from . import geometry
    try:
        p1 = geometry.exp(p0, v)
        res = convexity_along(mdp, objective, (p0, p1), rtol=rtol)
        note = (f"McCann geodesic from the {'optimum' if tau > 0 else 'base policy'} to a shifted and "
                f"stretched policy, {len(res.t)} points: " + ("convex" if res.convex else
                f"NOT convex at t = {np.round(res.negative_t, 3).tolist()}"
                + (f", states {res.failing_states}" if res.failing_states else "")))
        scale = float(np.max(np.abs(res.second_differences)))
        rows.append(_row("convexity (McCann)", res.min_second_difference, ">= 0",
                         max(0.0, -res.min_second_difference) / max(scale, 1e-300),
                         rtol, note, info=True))
        if res.hessian_comparison is not None:
            h = res.hessian_comparison
            if h["resolved"] and h["critical"]:
                rows.append(_row("convexity (McCann J''(0) vs H)", h["fd"], h["hessian"], h["rel_error"],
                                 float("nan"), h["note"], info=True))
            elif not h["resolved"]:
                rows.append(_skip("convexity (McCann J''(0) vs H)", h["note"]))
            else:
                rows.append(_skip("convexity (McCann J''(0) vs H)", "the McCann curve does not start "
                                  "at a critical point of J (tau = 0): J''(0+) includes grad J . m''"))
    except WgflowError as exc:
        rows.append(_skip("convexity (McCann)", f"{type(exc).__name__}: {exc}"))
        p1 = None
    if geodesics and p1 is not None:
        if A.ndim != 1 or any(A.periodic):
            rows.append(_skip("convexity (metric geodesic)", "metric_geodesic needs a 1-D, non-periodic action grid"))
        elif mdp.n_states * mdp.n_actions > 20000:
            rows.append(_skip("convexity (metric geodesic)", "problem too large for the path-energy "
                              "minimization (nS*nA > 20000)"))
        else:
            from .geodesics import metric_geodesic
            try:
                try:
                    g = metric_geodesic(mdp, objective, p0, p1, **{**GEODESIC_OPTIONS, "progress": False})
                    conv = "converged"
                except ConvergenceError as exc:
                    g = exc.diagnostics["result"]
                    conv = "NOT converged"
                res = convexity_along(mdp, objective, g, rtol=rtol)
                scale = float(np.max(np.abs(res.second_differences)))
                note = (f"metric geodesic ({conv}, length {g.length:.4g} vs McCann {g.mccann_length:.4g}), "
                        f"{len(res.t)} nodes: " + ("convex" if res.convex else
                        f"NOT convex at t = {np.round(res.negative_t, 3).tolist()}"
                        + (f", states {res.failing_states}" if res.failing_states else "")))
                rows.append(_row("convexity (metric geodesic)", res.min_second_difference, ">= 0",
                                 max(0.0, -res.min_second_difference) / max(scale, 1e-300),
                                 rtol, note, info=True))
            except WgflowError as exc:
                rows.append(_skip("convexity (metric geodesic)", f"{type(exc).__name__}: {exc}"))
    return rows


# =============================================================================================
# the driver
# =============================================================================================
def _progress_fn(progress):
    if callable(progress) and not isinstance(progress, bool):
        return progress
    from ._progress import enabled as _enabled
    enabled = _enabled(progress)
    if not enabled:
        return lambda name, i, n: None
    return lambda name, i, n: print(f"[{i + 1}/{n}] {name} ...", file=sys.stderr, flush=True)


def run(mdp, objective, policy=None, checks=None, rng=None, rates: bool = True, progress=None,
        geodesics: bool = True, tolerances: dict | None = None, title: str | None = None,
        solution=None) -> VerifyReport:
    r"""Run the numerical checks of the theory on ``mdp`` and return the table.

    Parameters
    ----------
    mdp : MDP
        With an action grid (1-D or multi-D; the metric-geodesic and the McCann/Hessian rows are
        1-D only).
    objective : Discounted or Average
    policy : Policy, optional
        Where the local identities (gradient, Riesz, dissipation, Hessian) are checked; must be
        strictly positive. Default :func:`default_policy` (a perturbed optimum).
    checks : sequence of str, optional
        Subset of :data:`CHECKS` (default: all).
    rng : numpy Generator or int, optional
        Randomness of the test directions (default seed 0: reproducible).
    rates : bool
        Run the (more expensive) rate check (an ``otto`` run near the optimum).
    progress : bool, callable or None
        Print each check's name to stderr (None: when stderr is a terminal or in a notebook), or
        ``progress(name, index, total)``.
    geodesics : bool
        Include the metric-geodesic convexity row (an L-BFGS-B path-energy minimization).
    tolerances : dict, optional
        Overrides of :data:`TOLERANCES`.
    title : str, optional
        First line of the table.
    solution : Solution, optional
        ``wg.solve(mdp, objective)`` if already computed.

    Returns
    -------
    VerifyReport
        ``report.rows``, ``report.passed``, ``report.table()``; ``print(report)`` prints it.

    Examples
    --------
    >>> import wgflow as wg
    >>> from wgflow import verify
    >>> mdp = wg.problems.get("lqr1d", n_states=15, n_actions=11)
    >>> rep = verify.run(mdp, wg.Discounted(0.9, entropy=0.5), rates=False, geodesics=False)
    >>> rep.passed
    True
    """
    _check_objective(objective)
    A = mdp.require_actions("verify.run")
    tols = dict(TOLERANCES)
    if tolerances:
        unknown = set(tolerances) - set(tols)
        if unknown:
            raise ValidationError(f"unknown tolerance names {sorted(unknown)}; known: {sorted(tols)}")
        tols.update(tolerances)
    names = list(CHECKS) if checks is None else [str(c) for c in ([checks] if isinstance(checks, str) else checks)]
    bad = [c for c in names if c not in CHECKS]
    if bad:
        raise ValidationError(f"unknown checks {bad}; choose from {CHECKS}")
    if not rates and "rate" in names:
        names.remove("rate")
    names = [c for c in CHECKS if c in names]
    rng = np.random.default_rng(0 if rng is None else rng) if not isinstance(rng, np.random.Generator) else rng
    prog = _progress_fn(progress)
    diag = {}
    t0 = time.perf_counter()
    sol = solution if solution is not None else solve(mdp, objective)
    diag["time_solve"] = time.perf_counter() - t0
    if policy is None:
        pol = default_policy(mdp, objective, rng, sol)
    else:
        pol = policy if isinstance(policy, Policy) else Policy(policy, A, mdp.states)
    base = _check_policy(mdp, pol)
    if np.any(base <= 0) and any(c in names for c in ("gradient", "riesz", "hessian", "symmetry", "convexity")):
        s, a = np.argwhere(base <= 0)[0]
        raise ValidationError(f"verify.run needs a strictly positive policy (state {s}, action {a} has "
                              f"mass {base[s, a]:g}); pass policy=None for the default")
    diag["policy"] = base
    H = None
    rows = []
    for i, name in enumerate(names):
        prog(name, i, len(names))
        ts = time.perf_counter()
        if name == "gradient":
            rows += check_gradient(mdp, objective, base, rng, tol=tols["gradient"])
        elif name == "riesz":
            rows += check_riesz(mdp, objective, base, tol=tols["riesz"])
        elif name == "dissipation":
            rows += check_dissipation(mdp, objective, base, tol=tols["dissipation"],
                                      tol_step=tols["dissipation_step"])
        elif name == "gibbs":
            rows += check_gibbs(mdp, objective, sol, tol=tols["gibbs"], tol_rhs=tols["gibbs_rhs"])
        elif name in ("hessian", "symmetry"):
            if H is None:
                H = hessian(mdp, objective, base)
            rows += check_hessian(mdp, objective, base, rng, tol=tols["hessian"], tol_sym=tols["symmetry"],
                                  H=H, which=(name,))
        elif name == "rate":
            rows += check_rate(mdp, objective, sol, tol=tols["rate"])
        elif name == "convexity":
            rows += _convexity_rows(mdp, objective, sol, base, rng, tols["convexity_hessian"],
                                    geodesics=geodesics, rtol=tols["convexity_rtol"])
        diag[f"time_{name}"] = time.perf_counter() - ts
    if title is None:
        title = (f"wgflow verify: {mdp.n_states} states x {mdp.n_actions} actions "
                 f"({A.ndim}-D actions), {objective!r}")
    return VerifyReport(rows, title, diag)


def verify(problem_name: str, objective: str = "discounted", gamma: float = 0.95, entropy: float = 0.5,
           checks=None, rates: bool = True, rng=None, progress=None, geodesics: bool = True,
           **params) -> VerifyReport:
    """Build a built-in problem and :func:`run` the checks on it.

    ``verify("lqr1d", n_states=15, n_actions=11, entropy=0.5)`` is
    ``run(wg.problems.get("lqr1d", n_states=15, n_actions=11), wg.Discounted(0.95, entropy=0.5))``.
    ``objective`` is ``"discounted"`` or ``"average"``; ``**params`` go to the problem.
    """
    from . import problems
    mdp = problems.get(problem_name, **params)
    if objective == "average":
        obj = Average(entropy=entropy)
    elif objective == "discounted":
        obj = Discounted(gamma=gamma, entropy=entropy)
    else:
        raise ValidationError(f"objective must be 'discounted' or 'average', got {objective!r}")
    title = (f"wgflow verify {problem_name} {params if params else ''}: {mdp.n_states} states x "
             f"{mdp.n_actions} actions, {obj!r}")
    return run(mdp, obj, checks=checks, rates=rates, rng=rng, progress=progress, geodesics=geodesics,
               title=title)
