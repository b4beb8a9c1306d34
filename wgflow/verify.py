r"""Numerical checks of the theory, reusable on any MDP with an action grid.

:func:`run` evaluates the identities of the Wasserstein geometry of policies (docs/design.md
sections 2, 3 and 5) on a given MDP and objective, each as a row
``(check, value, reference, error, tolerance, status, time)`` of a :class:`VerifyReport`. Every
identity row compares two independent computations (finite differences of ``wg.evaluate``, a
closed form, another code path); the tolerance is derived from the error expected of the
comparison (truncation plus a rounding floor that the row states):

================================  ===========================================================================
check                             comparison (error measure; default tolerance)
================================  ===========================================================================
``solve``                         Bellman residual of ``wg.solve``'s ``V`` (relative; 1e-8); a failing
                                  solve is reported here with the way out
``gradient``                      ``dJ/de`` along ``dm/de = L_theta(m) phi`` by Richardson central
                                  differences vs ``kappa G(psi, phi)``: the Riesz representative of ``dJ``
                                  in ``G`` is ``kappa psi`` (relative to the Cauchy--Schwarz bound;
                                  1e-6 + rounding)
``dissipation``                   ``dJ/dt`` along ``otto``'s velocity (finite differences) vs
                                  ``-kappa sum w theta_SG |dpsi|^2/h^2`` with the closed-form SG mobility
                                  (relative; 1e-6 + rounding)
``dissipation (step)``            one fixed explicit ``otto`` step of ``wg.flow`` vs the second-order
                                  Taylor prediction with the exact mass Hessian (relative to the step's
                                  change; 10 x the Taylor remainder estimated by finite differences of
                                  ``J`` + rounding)
``gibbs``                         ``wg.solve``'s policy vs ``exp(-Q/tau)/Z``, ``Q`` of an exact evaluation of
                                  that policy (max abs; 1e-8)
``gibbs (otto rhs)``              the ``otto`` flux vanishes there (relative to the outflow; 1e-7)
``hessian``                       ``H(phi, phi)`` vs second differences of ``J`` along continuity curves
                                  (relative to ``|H_local| + |H_transport|``; 1e-5 + rounding)
``hessian symmetry``              ``|H(phi, chi) - H(chi, phi)|`` (relative; 1e-10)
``rate``                          ``predicted_rate`` vs the measured decay, along explicit ``otto`` steps, of
                                  the slowest local mode of the flux kernel's generators (chosen without
                                  ``H``; relative to the larger rate; 2e-2 + the measurement's resolution;
                                  skipped when neither rate exceeds 10 x the resolution)
``convexity (continuity vs H)``   second difference of ``J`` along a continuity curve vs ``H``
                                  (relative; 1e-5)
``convexity (McCann)``            information: second differences of ``J`` along the McCann geodesic
                                  from the optimum (convexity is a property)
``convexity (metric geodesic)``   the same along the metric geodesic (information)
``geodesic (McCann speed)``       ``W2(pi0, pi_t) = t W2(pi0, pi1)`` along ``geometry.geodesic`` (max
                                  error relative to the grid bound ``h``; 1)
``geodesic (metric endpoints)``   the metric geodesic's end nodes are the given policies (exact)
``geodesic (metric length)``      its length (``path_energy`` of its nodes) is at most the McCann nodes'
                                  length plus the deposition bound (relative to the bound; 1)
================================  ===========================================================================

The summary line of the table reads ``ALL PASSED`` only when no row failed or was skipped; skipped
rows are counted and named there with their reason. ``docs/verify.md`` explains each comparison
and its error measure. :func:`convexity_along` is the
public tool behind the convexity rows.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import ConvergenceError, LookupFailure, NotUnichainError, ValidationError, WgflowError
from .evaluation import _check_objective, _check_policy, evaluate, solve
from .hessian import MASS_FLOOR, continuity_curve, hessian, laplacian_apply
from .objectives import Average, Discounted
from .policy import Policy, gibbs_masses

__all__ = ["run", "verify", "VerifyReport", "CheckRow", "convexity_along", "ConvexityResult", "local_gaps",
           "ContinuityCurve", "default_policy", "random_potential", "CHECKS", "TOLERANCES",
           "GEODESIC_OPTIONS", "GEODESIC_MAX_PAIRS"]

#: names accepted by ``run(checks=...)``, in the order they run
CHECKS = ("gradient", "dissipation", "gibbs", "hessian", "symmetry", "rate", "convexity")

#: default tolerances (see the module docstring and docs/verify.md for the error measures)
TOLERANCES = {
    "solve": 1e-8,
    "gradient": 1e-6,
    "dissipation": 1e-6,
    "dissipation_step": 10.0,     # factor on the estimated Taylor remainder (check_dissipation)
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
    time : float or None
        Seconds spent on the row.
    reason : str
        For a skipped row, why in a few words (shown in the summary line of the table; the
        details are in ``note``).
    """

    check: str
    value: float
    reference: object
    error: float
    tolerance: float
    status: str
    note: str = ""
    time: float | None = None
    reason: str = ""

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
        head = ("check", "value", "reference", "error", "tolerance", "status", "time [s]")
        cells = [head] + [(r.check, _fmt(r.value), _fmt(r.reference), _fmt(r.error),
                           _fmt(r.tolerance), r.status.upper() if r.status == "fail" else r.status,
                           "-" if r.time is None else f"{r.time:.2f}")
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
        lines.append(self.summary())
        if notes:
            ns = [f"  {r.check}: {r.note}" for r in self.rows if r.note]
            if ns:
                lines.append("notes:")
                lines.extend(ns)
        return "\n".join(lines)

    def summary(self) -> str:
        """The last line of :meth:`table`: the outcome, the counts, and why rows were skipped.

        ``ALL PASSED`` only when every identity row passed and none was skipped; with skipped
        rows and no failure the outcome reads ``PASSED, n SKIPPED`` and names each skipped row
        with its reason (a check that raised says so): a skipped identity has not been checked.
        """
        n_fail = len(self.failed())
        n_pass = sum(r.status == "pass" for r in self.rows)
        skips = [r for r in self.rows if r.status == "skip"]
        total = sum(r.time for r in self.rows if r.time is not None)
        if n_fail:
            head = "FAILED"
        elif skips:
            head = f"PASSED, {len(skips)} SKIPPED"
        else:
            head = "ALL PASSED"
        line = (f"{head}: {n_pass} passed, {n_fail} failed, {len(skips)} skipped, "
                f"{sum(r.status == 'info' for r in self.rows)} informational; {total:.1f} s")
        if skips:
            line += "; skipped: " + ", ".join(f"{r.check} ({r.reason or _short_reason(r.note)})" for r in skips)
        return line

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

#: the metric-geodesic rows run when ``n_states * n_actions`` is at most this (the L-BFGS-B
#: path-energy minimization costs ~100 s on lqr1d's default 101 x 61; raise it to include them)
GEODESIC_MAX_PAIRS = 2000


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
            # potentials are scaled to max |L phi / m| = 1 and |e| <= 0.2: four RK4 steps keep the
            # curve's error (~(e/4)^5) far below what the finite differences resolve
            m = continuity_curve(mdp, masses, phi, e, mobility_kind=kind, substeps=4)
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


def _short_reason(note: str) -> str:
    """The first clause of a note, at most 60 characters (for the summary line)."""
    first = note.split(";")[0].strip()
    return first if len(first) <= 60 else first[:57] + "..."


def _skip(check, note, reason=""):
    return CheckRow(check, float("nan"), "-", float("nan"), float("nan"), "skip", note,
                    reason=reason or _short_reason(note))


_EPS = float(np.finfo(float).eps)


def _psi(masses, Q, tau, vol):
    """``psi = Q + tau log(m / vol)`` on the support (``Q`` on empty cells, where no face sees it)."""
    if tau <= 0:
        return Q.copy()
    sup = masses >= MASS_FLOOR
    lm = np.where(sup, np.log(np.where(sup, masses, 1.0) / vol), 0.0)
    return Q + tau * lm


def _log_abs_expm1(x):
    """``log |exp(x) - 1|`` for ``x != 0``, without overflow."""
    ax = np.where(x == 0, 1.0, x)
    with np.errstate(over="ignore", divide="ignore"):
        return np.where(ax > 0, ax + np.log1p(-np.exp(-np.abs(ax))), np.log(-np.expm1(np.minimum(ax, -1e-300))))


def check_gradient(mdp, objective, masses, rng, eps=0.05, n_directions=2, tol=None):
    r"""First variation along continuity curves: finite differences of ``J`` vs ``kappa G(psi, phi)``.

    For smooth random potentials ``phi`` (scaled so that ``max |L phi / m| = 1``), the
    Richardson-extrapolated central difference ``(4 D(e/2) - D(e)) / 3`` of ``J`` along
    ``dm/de = L_theta(m) phi`` (only ``wg.evaluate``) is compared with ``kappa G(psi, phi)``,
    ``psi = Q + tau log(m/vol)`` from the evaluation's ``Q`` and ``G`` the metric: the statement
    that the Riemannian gradient is ``grad_a psi`` with the weights cancelling (the Riesz
    representative of ``dJ`` in ``G`` is ``kappa psi``). Error: absolute difference divided by the
    Cauchy--Schwarz bound ``kappa |psi|_G |phi|_G`` (worst direction). Expected: the Richardson
    remainder ``O(e^4)`` (about ``1e-8`` here) plus rounding ``~ 8 eps |J| / e``, which is added to
    the tolerance.
    """
    tol = TOLERANCES["gradient"] if tol is None else tol
    A = mdp.actions
    ev = evaluate(mdp, masses, objective)
    kappa = _kappa(objective)
    psi = _psi(masses, ev.Q, objective.entropy, A.cell_volume)
    psi_norm = np.sqrt(max(_metric_norm2(masses, ev.weights, psi, A), 0.0))
    worst, out, floor_used = -1.0, None, 0.0
    for _ in range(n_directions):
        phi = _scale_potential(mdp, masses, random_potential(mdp, rng))
        exact = kappa * _metric_inner(masses, ev.weights, psi, phi, A)
        J = {e: _J(mdp, _cc(mdp, masses, phi, e), objective) for e in (eps, -eps, eps / 2, -eps / 2)}
        D1 = (J[eps] - J[-eps]) / (2 * eps)
        D2 = (J[eps / 2] - J[-eps / 2]) / eps
        fd = (4 * D2 - D1) / 3
        phi_norm = np.sqrt(max(_metric_norm2(masses, ev.weights, phi, A), 0.0))
        scale = max(abs(exact), kappa * psi_norm * phi_norm, 1e-300)
        err = abs(fd - exact) / scale
        floor = 8 * _EPS * max(abs(ev.J), 1.0) / eps / scale
        if err - floor > worst:
            worst, out, floor_used = err - floor, (fd, exact, err), floor
    fd, exact, err = out
    return [_row("gradient", fd, exact, err, tol + floor_used,
                 f"dJ/de along continuity curves (Richardson central differences, e = {eps:g}, "
                 f"{n_directions} random potentials) vs kappa G(psi, phi), psi = Q + tau log(m/vol): the "
                 "Riesz representative of dJ is kappa psi; error / (kappa |psi|_G |phi|_G), tolerance + "
                 f"rounding {floor_used:.1e}")]


def _sg_dissipation(masses, Q, tau, actions, weights):
    r"""``sum_s w(s) sum_faces theta (psi_j - psi_i)^2 / h^2`` with the off-equilibrium SG mobility.

    ``theta = tau B(z) m_i (e^u - 1) / u`` with ``z = (Q_j - Q_i)/tau``, ``u = (psi_j - psi_i)/tau``
    (``u -> 0``: ``tau B(z) m_i``); ``tau = 0``: the upwind flux ``max(Q_i - Q_j, 0) m_i - ...``
    written as ``theta (Q_j - Q_i)`` with ``theta = m_i`` (downhill from ``i``) or ``m_j``. A formula
    of the mobility, not of the flux: an independent computation of ``-psi . dm/dt``.
    """
    nS = masses.shape[0]
    shape = (nS,) + tuple(actions.shape)
    m = masses.reshape(shape)
    psi = _psi(masses, Q, tau, actions.cell_volume).reshape(shape)
    q = Q.reshape(shape)
    total = np.zeros(nS)
    for d in range(actions.ndim):
        if actions.shape[d] < 2:
            continue
        sl_i = [slice(None)] * len(shape)
        sl_j = [slice(None)] * len(shape)
        sl_i[d + 1] = slice(0, -1)
        sl_j[d + 1] = slice(1, None)
        mi, mj = m[tuple(sl_i)], m[tuple(sl_j)]
        dq = q[tuple(sl_j)] - q[tuple(sl_i)]
        h2 = float(actions.spacing[d]) ** 2
        if tau > 0:
            live = (mi >= MASS_FLOOR) & (mj >= MASS_FLOOR)
            z = dq / tau
            dpsi = np.where(live, psi[tuple(sl_j)] - psi[tuple(sl_i)], 0.0)
            u = dpsi / tau
            # log theta = log m_i + log B(z) + log((e^u - 1)/u), B(z) = z/(e^z - 1): in logs, so
            # that neither e^z nor e^u overflows far from equilibrium
            small_z, small_u = np.abs(z) < 1e-8, np.abs(u) < 1e-8
            zs, us = np.where(small_z, 1.0, z), np.where(small_u, 1.0, u)
            logB = np.where(small_z, np.log1p(-np.where(small_z, z, 0.0) / 2),
                            np.log(np.abs(zs)) - _log_abs_expm1(zs))
            logE = np.where(small_u, np.log1p(np.where(small_u, u, 0.0) / 2),
                            _log_abs_expm1(us) - np.log(np.abs(us)))
            with np.errstate(over="ignore"):
                theta = np.where(live, np.exp(np.log(np.where(live, mi, 1.0)) + logB + logE), 0.0)
            term = np.where(live, theta * dpsi ** 2 / h2, 0.0)
        else:
            theta = np.where(dq < 0, mi, mj)
            term = theta * dq ** 2 / h2
        total += term.reshape(nS, -1).sum(axis=1)
    return float(np.sum(weights * total))


def check_dissipation(mdp, objective, masses, tol=None, tol_step=None, eps=0.05, dt_factor=1e-3):
    r"""Energy dissipation of the ``otto`` scheme, by two independent computations.

    (a) ``dissipation``: ``dJ/dt`` along the ``otto`` velocity ``dm/dt`` (:func:`otto_rhs`, the
    flux kernel) by Richardson central differences of ``J(m + t dm/dt)`` (only ``wg.evaluate``)
    vs ``-kappa sum_s w sum_faces theta |psi_j - psi_i|^2 / h^2`` from the closed-form
    off-equilibrium Scharfetter--Gummel mobility ``theta = B(z) m_i (e^u - 1)/u``
    (:func:`_sg_dissipation`). Error relative to the reference; expected: ``O(e^4)`` with the
    largest relative mass change ``e = 0.05`` (``~6e-6`` times a curvature ratio; observed
    ``< 1e-8``) plus rounding ``8 eps |J| / (e |dJ/dt|)``.
    (b) ``dissipation (step)``: one fixed explicit ``otto`` step of ``wg.flow`` with
    ``dt = 1e-3 / max_a |dm/dt / m|``: ``J(dt)`` vs the second-order Taylor prediction
    ``J(0) + dt J' + dt^2 J'' / 2`` with ``J'`` the reference of (a) and
    ``J'' = dm . Hess_m J . dm`` from the exact mass Hessian (two adjoint solves). Error relative
    to ``|J(dt) - J(0)|``. The expected error is the Taylor remainder
    ``dt^3 |J'''|/6 + dt^4 |J''''|/24``, with ``J'''`` and ``J''''`` along the step estimated by
    finite differences of ``J`` (the evaluations of (a), independent of the Hessian): tolerance
    ``tol_step`` (10) times that, plus rounding ``32 eps kappa |J| / |J(dt) - J(0)|``. The ``J''`` term is
    ``O(rho)`` of the change (``rho = dt max|dm/m| = 1e-3``), the remainder ``O(rho^2)``: a Hessian
    10 % off (or set to 0) fails the row.
    """
    from .flows import flow
    from .flows.otto import otto_rhs
    from .hessian import _MassDerivatives
    tol = TOLERANCES["dissipation"] if tol is None else tol
    tol_step = TOLERANCES["dissipation_step"] if tol_step is None else tol_step
    t_start = time.perf_counter()
    ev = evaluate(mdp, masses, objective)
    kappa = _kappa(objective)
    tau = objective.entropy
    dm, rate, _ = otto_rhs(masses, ev.Q, tau, mdp.actions)
    ref = -kappa * _sg_dissipation(masses, ev.Q, tau, mdp.actions, ev.weights)
    sup = masses > 0
    rel = float(np.max(np.abs(dm[sup]) / masses[sup])) if np.any(sup) else 0.0
    rows = []
    if rel == 0.0:
        return [_skip("dissipation", "the otto velocity vanishes at this policy"),
                _skip("dissipation (step)", "the otto velocity vanishes at this policy")]
    h = eps / rel
    Jt = {}
    for t in (h, -h, h / 2, -h / 2):
        Jt[t] = _J(mdp, masses + t * dm, objective)
    D1 = (Jt[h] - Jt[-h]) / (2 * h)
    D2 = (Jt[h / 2] - Jt[-h / 2]) / h
    fd = (4 * D2 - D1) / 3
    floor = 8 * _EPS * max(abs(ev.J), 1.0) / h / max(abs(ref), 1e-300)
    rows.append(_row("dissipation", fd, ref, abs(fd - ref) / max(abs(ref), 1e-300), tol + floor,
                     f"dJ/dt along otto's velocity (Richardson central differences of J(m + t dm/dt), "
                     f"largest relative change {eps:g}) vs -kappa sum w theta_SG |dpsi|^2/h^2 (closed-form "
                     f"mobility); tolerance + rounding {floor:.1e}"))
    rows[-1].time = time.perf_counter() - t_start
    t_start = time.perf_counter()
    dt = dt_factor / rel
    pol = Policy(masses, mdp.actions, mdp.states, validate=False)
    # the explicit step m + dt dm/dt: the expansion below is along that straight line
    traj = flow(mdp, objective, pol, scheme="otto", method="explicit", t_end=dt, dt=dt,
                progress=False)
    J0, J1 = float(traj.J[0]), float(traj.J[-1])
    d2 = float(np.sum(dm * _MassDerivatives(mdp, objective, masses).hvp(dm)))
    pred = J0 + dt * ref + 0.5 * dt * dt * d2
    dJ = abs(J1 - J0)
    err = abs(J1 - pred) / max(dJ, 1e-300)
    rho = dt * rel
    # the expected error is the Taylor remainder dt^3 J'''/6 + dt^4 J''''/24, with J''' and J''''
    # along the same straight line m + t dm estimated from the four evaluations of (a), without
    # the Hessian: D(t) = (J(t) - J(-t))/2t = J' + t^2 J'''/6 + O(t^4) and
    # S(t) = (J(t) - 2 J(0) + J(-t))/t^2 = J'' + t^2 J''''/12 + O(t^4). The rounding of these
    # estimates (16 eps |J| / h^3 and 64 eps |J| / h^4) enters multiplied by (dt/h)^3 = 50^-3.
    g3 = 8.0 * (D1 - D2) / h ** 2
    S1 = (Jt[h] - 2.0 * ev.J + Jt[-h]) / h ** 2
    S2 = (Jt[h / 2] - 2.0 * ev.J + Jt[-h / 2]) / (h / 2) ** 2
    g4 = 16.0 * (S2 - S1) / h ** 2
    remainder = (dt ** 3 * abs(g3) / 6.0 + dt ** 4 * abs(g4) / 24.0) / max(dJ, 1e-300)
    # rounding of J(dt) - J(0): each J comes out of a linear solve with I - gamma P (condition
    # number up to (1 + gamma)/(1 - gamma) ~ 2 kappa), so it carries a few eps kappa |J|
    # (observed: 0.5 eps kappa |J| on quadratic_bandit, Discounted(0.99), tau = 0; 6 eps |J| on
    # double_integrator, Average(entropy=0.05))
    floor = 32 * _EPS * kappa * max(abs(J0), 1.0) / max(dJ, 1e-300)
    second = 0.5 * dt * dt * abs(d2) / max(dJ, 1e-300)
    rows.append(_row("dissipation (step)", J1 - J0, pred - J0, err, tol_step * remainder + floor,
                     f"one fixed explicit otto step of wg.flow (dt = {dt:.3g}, largest relative mass change rho = "
                     f"{rho:.1e}): J(dt) - J(0) vs dt J' + dt^2 J''/2 (J'' = dm.Hess_m J.dm, exact; its term is "
                     f"{second:.1e} of the change); tolerance {tol_step:g} x the Taylor remainder "
                     f"{remainder:.1e} (J''' and J'''' by finite differences of J along the step) + rounding "
                     f"{floor:.1e}"))
    rows[-1].time = time.perf_counter() - t_start
    return rows


def check_gibbs(mdp, objective, solution, tol=None, tol_rhs=None):
    r"""The optimal policy is the Gibbs policy of its own Q and a stationary point of ``otto``.

    ``Q`` is recomputed by an exact evaluation of the returned policy
    (``wg.evaluate(mdp, solution.policy, objective).Q``), not taken from ``solution.Q``: the
    solvers write their masses as ``gibbs_masses`` of the ``Q`` they return, so a comparison with
    ``solution.Q`` would hold by construction at any iterate, converged or not.

    (a) ``max |m - gibbs_masses(Q_pi, tau)|`` for ``solve``'s policy ``pi`` and its exact ``Q_pi``:
    zero exactly when ``pi`` is a fixed point of soft policy improvement, i.e. optimal;
    (b) ``max |dm/dt| / max(rate * m)`` for the ``otto`` right-hand side at ``(m, Q_pi)`` (the flux
    kernel's imbalance relative to the largest outflow of a cell).
    """
    from .flows.otto import otto_rhs
    tol = TOLERANCES["gibbs"] if tol is None else tol
    tol_rhs = TOLERANCES["gibbs_rhs"] if tol_rhs is None else tol_rhs
    tau = objective.entropy
    if tau <= 0:
        return [_skip("gibbs", "needs entropy > 0 (with tau = 0 optimal policies are deterministic)",
                      "needs entropy > 0"),
                _skip("gibbs (otto rhs)", "needs entropy > 0")]
    m = solution.policy.masses
    Q = evaluate(mdp, solution.policy, objective).Q
    g = gibbs_masses(Q, tau)
    err = float(np.max(np.abs(m - g)))
    dm, rate, _ = otto_rhs(m, Q, tau, mdp.actions)
    out = float(np.max(rate * m))
    e2 = float(np.max(np.abs(dm))) / max(out, 1e-300)
    return [_row("gibbs", err, 0.0, err, tol,
                 f"max |m - exp(-Q/tau)/Z| at wg.solve's policy ({solution.iterations} iterations), Q of an "
                 "exact evaluation of that policy"),
            _row("gibbs (otto rhs)", float(np.max(np.abs(dm))), 0.0, e2, tol_rhs,
                 "max |dm/dt| of otto at the optimum (Q of an exact evaluation) / largest cell outflow")]


def check_hessian(mdp, objective, masses, rng, eps=0.05, n_directions=2, tol=None, tol_sym=None,
                  H=None, which=("hessian", "symmetry")):
    r"""Hessian against second differences along continuity curves, and its symmetry.

    ``hessian``: ``H(phi, phi)`` (``H.matvec``) vs the Richardson extrapolation
    ``(4 S(e/2) - S(e)) / 3`` of ``S(e) = (J(m(e)) - 2 J(m) + J(m(-e))) / e^2`` along
    ``dm/de = L_theta(m) phi``; error relative to ``|H_local(phi,phi)| + |H_transport(phi,phi)|``;
    expected ``O(e^4)`` plus rounding ``16 eps |J| / e^2`` (added to the tolerance).
    ``hessian symmetry``: ``|H(phi, chi) - H(chi, phi)|`` relative to
    ``|H phi| |chi| + |H chi| |phi|`` (Euclidean norms), random smooth ``phi``, ``chi``: the
    adjoint solves of the transport part must be consistent.
    """
    tol = TOLERANCES["hessian"] if tol is None else tol
    tol_sym = TOLERANCES["symmetry"] if tol_sym is None else tol_sym
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
            floor = 16 * _EPS * max(abs(J0), 1.0) / (eps / 2) ** 2 / scale
            if err - floor > worst:
                worst, best = err - floor, (fd, q, loc, tr, err, floor)
        fd, q, loc, tr, err, floor = best
        rows.append(_row("hessian", fd, q, err, tol + floor,
                         f"J'' along continuity curves (Richardson, e = {eps:g}, {n_directions} random "
                         f"potentials) vs H(phi,phi) = local {loc:.4g} + transport {tr:.4g}; "
                         f"error / (|local| + |transport|), tolerance + rounding {floor:.1e}"))
    if "symmetry" in which:
        phi = _scale_potential(mdp, masses, random_potential(mdp, rng)).ravel()
        chi = _scale_potential(mdp, masses, random_potential(mdp, rng)).ravel()
        Hp, Hc = H.matvec(phi), H.matvec(chi)
        a, b = float(chi @ Hp), float(phi @ Hc)
        scale = np.linalg.norm(Hp) * np.linalg.norm(chi) + np.linalg.norm(Hc) * np.linalg.norm(phi)
        rows.append(_row("hessian symmetry", abs(a - b), 0.0, abs(a - b) / max(scale, 1e-300), tol_sym,
                         f"H(phi,chi) = {b:.6g}, H(chi,phi) = {a:.6g}"))
    return rows


def _relative_mode(mdp, Q, masses, tau, s, mu):
    r"""Relative perturbation ``f = dm / m`` of state ``s``'s local mode with rate ``mu``.

    The linearized ``otto`` flow of state ``s`` at the Gibbs state is ``df/dt = K f`` with the
    backward generator ``(K f)_i = sum_j k_ij (f_j - f_i)``, ``k_ij`` the Scharfetter--Gummel face
    coefficients of the flux kernel (no masses enter, so ``f`` is accurate in the tails, unlike
    ``L_theta phi / m`` from an eigenvector). ``f`` is found by inverse iteration with shift ``mu``
    on the support of the state, normalized to ``max|f| = 1`` and to zero ``m``-mean.
    """
    from .kernels.fluxes import sg_face_coefficients
    A = mdp.actions
    sup = masses[s] >= MASS_FLOOR
    idx = np.nonzero(sup)[0]
    n = idx.size
    pos = -np.ones(masses.shape[1], dtype=int)
    pos[idx] = np.arange(n)
    K = np.zeros((n, n))
    for left, right, d in _face_pairs(A):
        inv_h2 = 1.0 / float(A.spacing[d]) ** 2
        for i, j in zip(left, right):
            if pos[i] < 0 or pos[j] < 0:
                continue
            cf, cb = sg_face_coefficients(Q[s, j] - Q[s, i], tau, inv_h2)
            a, b = pos[i], pos[j]
            K[a, a] -= cf
            K[a, b] += cf
            K[b, b] -= cb
            K[b, a] += cb
    rng = np.random.default_rng(0)
    f = rng.standard_normal(n)
    # shift just beside mu (and off 0, where the constants are an exact eigenvector)
    M = K + (mu * (1.0 + 1e-9) + 1e-12 * max(float(np.max(np.abs(K))), 1e-300)) * np.eye(n)
    for _ in range(4):
        f = np.linalg.solve(M, f)
        f /= np.max(np.abs(f))
    m = masses[s, idx]
    f = f - np.sum(m * f) / np.sum(m)
    out = np.zeros(masses.shape[1])
    out[idx] = f / np.max(np.abs(f))
    return out


def _face_pairs(actions):
    """Neighbouring cells ``(i, j, axis)`` of the action grid (flattened indices, ``j`` after ``i``):
    the faces of the flux kernel (no wrap-around on periodic axes, unlike the metric's faces in
    :mod:`wgflow.geometry`), in the order of :func:`_sg_coefficients`."""
    cells = np.arange(int(np.prod(actions.shape))).reshape(tuple(actions.shape))
    out = []
    for d in range(actions.ndim):
        left = np.take(cells, np.arange(actions.shape[d] - 1), axis=d).ravel()
        right = np.take(cells, np.arange(1, actions.shape[d]), axis=d).ravel()
        out.append((left, right, d))
    return out


def _sg_coefficients(Q, shape, d, tau, inv_h2):
    """``(cf, cb)`` ``(nS, faces)`` of the faces normal to action axis ``d``, in the order of
    :func:`_face_pairs`: :func:`wgflow.kernels.fluxes.sg_coefficients` on ``Q`` seen as
    ``(nS * cells before d, n_d, cells after d)``."""
    from .kernels.fluxes import sg_coefficients
    nS = Q.shape[0]
    pre, post = int(np.prod(shape[:d])), int(np.prod(shape[d + 1:]))
    q = np.ascontiguousarray(Q, dtype=float).reshape(nS * pre, shape[d], post)
    cf = np.empty((nS * pre, shape[d] - 1, post))
    cb = np.empty_like(cf)
    sg_coefficients(q, float(tau), inv_h2, cf, cb)
    return cf.reshape(nS, -1), cb.reshape(nS, -1)


def local_gaps(mdp, Q, masses, tau):
    r"""Per-state slowest decay rates of the ``otto`` flow linearized at a Gibbs state, from the flux kernel.

    At a critical point the linearized flow is, state by state, ``df/dt = K_s f`` for the
    relative perturbation ``f = dm/m``, ``K_s`` the backward generator with the Scharfetter--Gummel
    face coefficients ``(cf, cb)`` of ``Q(s, .)`` on the support ``m >= MASS_FLOOR``
    (docs/hessian.md section 5). It is reversible, so ``-K_s`` is similar to the symmetric matrix
    with off-diagonal ``-sqrt(cf cb)``; its eigenvalues are found by ``numpy.linalg.eigh`` (all
    states at once), without masses, without the Hessian. The ``p_s`` smallest eigenvalues (one per
    connected piece of the support: the constants) are dropped.

    Returns
    -------
    gaps : ndarray ``(nS,)``
        Smallest non-zero rate ``mu_s`` per state (``inf`` where the support has no face).
    resolution : ndarray ``(nS,)``
        Absolute rounding of the eigenvalues, ``1000 eps max|K_s|``: a gap below it is not
        resolved (a metastable state).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    A = mdp.actions
    nS, nA = masses.shape
    sup = masses >= MASS_FLOOR
    R = np.zeros((nS, nA, nA))
    rows, cols = [], []
    for left, right, d in _face_pairs(A):
        inv_h2 = 1.0 / float(A.spacing[d]) ** 2
        cf, cb = _sg_coefficients(Q, tuple(A.shape), d, tau, inv_h2)
        live = sup[:, left] & sup[:, right]
        cf, cb = np.where(live, cf, 0.0), np.where(live, cb, 0.0)
        off = -np.sqrt(cf) * np.sqrt(cb)
        si = np.arange(nS)[:, None]
        np.add.at(R, (si, left[None, :], left[None, :]), cf)
        np.add.at(R, (si, right[None, :], right[None, :]), cb)
        R[si, left[None, :], right[None, :]] += off
        R[si, right[None, :], left[None, :]] += off
        s_idx, f_idx = np.nonzero(live)
        rows.append(s_idx * nA + left[f_idx])
        cols.append(s_idx * nA + right[f_idx])
    norm = np.max(np.abs(R), axis=(1, 2))
    big = 10.0 * max(float(np.max(norm)), 1.0) * nA
    idx = np.arange(nA)
    R[:, idx, idx] = np.where(sup, R[:, idx, idx], big)          # empty cells: out of the way
    rows, cols = (np.concatenate(rows), np.concatenate(cols)) if rows else (np.zeros(0, int), np.zeros(0, int))
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(nS * nA, nS * nA))
    _, labels = connected_components(graph, directed=False)
    flat = np.nonzero(sup.ravel())[0]
    pieces = np.zeros(nS, dtype=int)
    if flat.size:
        pairs = np.unique(np.stack([flat // nA, labels[flat]], axis=1), axis=0)
        pieces = np.bincount(pairs[:, 0], minlength=nS)
    vals = np.linalg.eigvalsh(R)
    n_sup = sup.sum(axis=1)
    gaps = np.full(nS, np.inf)
    ok = n_sup > pieces
    gaps[ok] = vals[ok, pieces[ok]]
    return gaps, 1000.0 * _EPS * norm


def check_rate(mdp, objective, solution, tol=None, eps=1e-3, max_steps=30, min_steps=10):
    r"""Predicted vs measured local rate of the ``otto`` flow at the optimum.

    ``predicted_rate(H) = 2 lambda_min / kappa`` with ``lambda_min`` the smallest eigenvalue of
    ``H`` relative to ``G`` at ``wg.solve``'s policy (``H.spectrum``). The measurement does not use
    ``H``: the state ``s`` perturbed is the one with the smallest local gap of the flux kernel's
    generators (:func:`local_gaps`), so a spectrum that missed the slowest mode is compared with
    the decay of the mode it missed. Its relative mode ``f`` (:func:`_relative_mode`, inverse
    iteration at that gap) starts the perturbed run ``m = m* (1 + eps f)`` in state ``s``; ``n``
    explicit steps ``m <- m + dt otto_rhs(m, Q(m))`` (exact ``Q`` every step, fixed
    ``dt = 0.5 / max rate``) are taken from it and, with the same steps, from ``m*`` itself. The
    quantity is the chi-square distance between the two runs in state ``s``,
    ``X = sum_a m*_a r_a^2``, ``r = (m - m_ref) / m*``: the drift of the unperturbed run (the
    solver's tolerance, rounding) cancels, and the relative ``r`` neither underflows nor loses
    digits in Gibbs tails. A least-squares fit of ``log X`` per step gives the per-step factor
    ``(1 - dt mu)^2`` of a linear mode; ``2 mu`` is the measured rate.

    Resolution ``r_res`` (rate units): three standard errors of the fitted slope, the rounding of
    ``log X`` over the run (``8 (n + 1) eps_mach / eps`` spread over ``n dt``), and the ``O(eps)``
    nonlinearity. When neither the predicted nor the measured rate exceeds ``10 r_res`` the row
    is skipped ("no measurable decay", e.g. a metastable mode): it cannot confirm the
    prediction, and it does not pass. Otherwise the error is
    ``|measured - predicted| / max(|measured|, |predicted|)`` with tolerance
    ``tol + r_res / max(|measured|, |predicted|)`` (at most ``tol + 0.1``).
    ``n = 0.02 / (mu_gap dt)`` steps, between ``min_steps`` and ``max_steps`` (10 and 30: the
    reference run removes the drift, so the decay is resolved far below the 2 % it has by then).
    """
    from .flows.otto import otto_rhs
    from .linalg import LinearSolveCache
    tol = TOLERANCES["rate"] if tol is None else tol
    tau = objective.entropy
    if tau <= 0:
        return [_skip("rate", "needs entropy > 0 (no Gibbs optimum, no local linear rate)", "needs entropy > 0")]
    ps = solution.policy
    H = hessian(mdp, objective, ps)
    vals = H.spectrum(1)
    lam = float(vals[0])
    pred = 2.0 * lam / H.kappa
    m_star = ps.masses
    cache = LinearSolveCache()
    Q_star = evaluate(mdp, m_star, objective, cache=cache).Q
    gaps, gap_res = local_gaps(mdp, Q_star, m_star, tau)
    s = int(np.argmin(gaps))
    mu_gap = float(gaps[s])
    if not np.isfinite(mu_gap):
        return [_skip("rate", "no state has a face between two cells of its support: no mode to perturb",
                      "no mode")]
    f = _relative_mode(mdp, Q_star, m_star, tau, s, max(mu_gap, 0.0))
    m0 = m_star.copy()
    m0[s] = m_star[s] * (1.0 + eps * f)
    _, rate, _ = otto_rhs(m_star, Q_star, tau, mdp.actions)
    live = m_star > 0
    dt = 0.5 / float(np.max(rate[live]))
    n = int(np.clip(np.ceil(0.02 / max(mu_gap * dt, 1e-300)), min_steps, max_steps))
    sup = m_star[s] >= MASS_FLOOR
    # weights m*_a scaled in logs so that max_a m*_a f_a^2 = 1: X neither underflows (a mode on
    # masses of 1e-300) nor overflows (exponents clipped; w_a f_a^2 <= 1 on every cell)
    lw = np.log(m_star[s, sup])
    fa = np.abs(f[sup])
    L0 = float(np.max(lw + 2.0 * np.log(np.where(fa > 0, fa, 1e-300))))
    w = np.exp(np.minimum(lw - L0, 700.0))
    ms = m_star[s, sup]
    m, m_ref = m0, m_star.copy()
    X = []
    for k in range(n + 1):
        r = (m[s, sup] - m_ref[s, sup]) / ms
        X.append(float(np.sum(w * r * r)))
        if k == n:
            break
        dm, _, _ = otto_rhs(m, evaluate(mdp, m, objective, cache=cache).Q, tau, mdp.actions)
        dm_ref, _, _ = otto_rhs(m_ref, evaluate(mdp, m_ref, objective, cache=cache).Q, tau, mdp.actions)
        m, m_ref = m + dt * dm, m_ref + dt * dm_ref
    X = np.asarray(X)
    if not (np.all(np.isfinite(X)) and np.all(X > 0)):
        return [_skip("rate", f"the perturbation of state {s} is not resolved in double precision "
                      f"(chi-square {X.min():.3g} at some step)", "perturbation not resolved")]
    steps = np.arange(n + 1, dtype=float)
    y = np.log(X)
    coef = np.polyfit(steps, y, 1)
    slope = float(coef[0])
    resid = y - np.polyval(coef, steps)
    se = float(np.sqrt(np.sum(resid ** 2) / max(n - 1, 1) / np.sum((steps - steps.mean()) ** 2)))
    mu_meas = (1.0 - np.exp(slope / 2.0)) / dt
    r_meas = 2.0 * mu_meas
    # resolution: 3 standard errors of the slope (per step -> per unit time through the Euler
    # conversion), the rounding of log X over the run (each r carries ~4 eps_mach per step relative
    # to its size eps |f|, accumulated over n steps, doubled by the square), and the O(eps) bias of
    # the linearization (Q responds at second order)
    r_round = 8.0 * (n + 1) * _EPS / eps / (n * dt)
    r_res = 3.0 * se / dt + r_round + eps * abs(r_meas)
    scale = max(abs(pred), abs(r_meas))
    d = H.diagnostics
    note = (f"lambda_min = {lam:.6g} ({d.get('spectrum_method')}, {d.get('spectrum_products')} products), "
            f"kappa = {H.kappa:.4g}; slowest local gap of the flux kernel's generators: 2 mu = {2 * mu_gap:.6g} "
            f"in state {s} (weight {solution.weights[s]:.2g}, eigenvalue rounding {2 * gap_res[s]:.1g}); "
            f"quantity: chi-square distance in that state between runs from m* (1 + {eps:g} f) and from m*; "
            f"{n} explicit otto steps of dt = {dt:.3g}: measured rate {r_meas:.6g}, resolution {r_res:.2g}")
    if scale <= 10.0 * r_res:
        return [CheckRow("rate", float(r_meas), float(pred), float("nan"), float("nan"), "skip",
                         note + f"; neither rate exceeds 10x the resolution ({10 * r_res:.2g}): no measurable "
                         f"decay in {n} steps (a metastable mode), the prediction cannot be confirmed",
                         reason=f"no measurable decay (rates < 10 x resolution {r_res:.1g})")]
    err = abs(r_meas - pred) / scale
    return [_row("rate", r_meas, pred, err, tol + r_res / scale, note)]


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
                if A.ndim == 1:
                    dmax = float(np.sqrt(np.max(geometry.w2sq(p0, p1))))
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


def _geodesic_check_rows(mdp, objective, p0, p1, geodesic_result=None):
    """Checks of the two geodesics by independent computations (see :func:`_convexity_rows`)."""
    from . import geometry
    A = mdp.actions
    rows = []
    # McCann: constant speed in W2, exact 1-D formula (multi-D: POT on the atoms, on at most
    # 32 states drawn at random: each costs network-simplex solves)
    ts = (0.25, 0.5, 0.75)
    atoms = A.ndim > 1
    if atoms and mdp.n_states > 32:
        sel = np.sort(np.random.default_rng(0).choice(mdp.n_states, 32, replace=False))
        p0 = Policy(p0.masses[sel], A, validate=False)
        p1 = Policy(p1.masses[sel], A, validate=False)
    d01 = np.sqrt(np.maximum(geometry.w2sq(p0, p1, atoms=atoms), 0.0))
    worst = 0.0
    for t, g in zip(ts, geometry.geodesic(p0, p1, np.array(ts))):
        d0t = np.sqrt(np.maximum(geometry.w2sq(p0, g, atoms=atoms), 0.0))
        dt1 = np.sqrt(np.maximum(geometry.w2sq(g, p1, atoms=atoms), 0.0))
        worst = max(worst, float(np.max(np.abs(d0t - t * d01))), float(np.max(np.abs(dt1 - (1 - t) * d01))))
    bound = float(np.sqrt(np.sum(A.spacing ** 2))) if atoms else float(A.spacing[0])
    rows.append(_row("geodesic (McCann speed)", worst, bound, worst / bound, 1.0,
                     f"max over states and t = 0.25, 0.5, 0.75 of |W2(pi0, pi_t) - t W2(pi0, pi1)| and "
                     f"|W2(pi_t, pi1) - (1-t) W2(pi0, pi1)| ({'POT on the atoms' if atoms else 'exact 1-D W2'}) "
                     f"relative to the grid bound {bound:.3g} (the returned masses are within "
                     f"{'one cell diagonal' if atoms else 'h'} of the exact interpolant in W2)"))
    if geodesic_result is not None:
        from .geodesics import path_energy
        g = geodesic_result
        end = max(float(np.max(np.abs(g.policies[0].masses - p0.masses))),
                  float(np.max(np.abs(g.policies[-1].masses - p1.masses))))
        L_geo = path_energy(mdp, objective, g.policies).length
        L_mc = path_energy(mdp, objective, g.mccann_policies).length
        K = len(g.policies) - 1
        rows.append(_row("geodesic (metric endpoints)", end, 0.0, end, 0.0,
                         "max |m - m_input| of the metric geodesic's first and last nodes: they are the "
                         "given policies, exactly (not the deposition of their quantile knots)"))
        # W2 between deposited nodes differs from W2 between the represented laws by at most
        # 2 delta per segment, delta = h/sqrt(3) (couple each point to a neighbouring centre with
        # the linear weights, then uniformly in that cell: h^2/4 + h^2/12), and the optimized
        # knot length is at most McCann's: L_geo <= L_mccann + 2 (K + 1) delta
        bound = 2.0 * (K + 1) * float(A.spacing[0]) / np.sqrt(3.0)
        rows.append(_row("geodesic (metric length)", L_geo, L_mc, max(0.0, L_geo - L_mc) / bound, 1.0,
                         f"length of the metric geodesic's nodes (path_energy: exact W2 between node policies, "
                         f"weights at the nodes) <= that of the McCann nodes + {bound:.3g} (2 (K+1) h/sqrt(3), "
                         f"K = {K}); error = excess / bound"))
    return rows


def _convexity_rows(mdp, objective, solution, base, rng, tol, geodesics=True, rtol=None):
    rtol = TOLERANCES["convexity_rtol"] if rtol is None else rtol
    rows = []
    A = mdp.actions
    tau = objective.entropy
    # the continuity curve through the base policy: exact comparison with H
    t0 = time.perf_counter()
    phi = _scale_potential(mdp, base, random_potential(mdp, rng))
    try:
        res = convexity_along(mdp, objective, ContinuityCurve(base, phi, 0.2), n_points=5,
                              per_state=False)
        h = res.hessian_comparison
        rows.append(_row("convexity (continuity vs H)", h["fd"], h["hessian"], h["rel_error"], tol,
                         h["note"] + f"; J convex on [-0.2, 0.2]: {res.convex}"))
    except WgflowError as exc:
        rows.append(_skip("convexity (continuity vs H)", f"{type(exc).__name__}: {exc}"))
    rows[-1].time = time.perf_counter() - t0
    # McCann and metric geodesics from the optimum (tau > 0) or from the base policy
    if any(A.periodic):
        rows.append(_skip("convexity (McCann)", "geodesics need a non-periodic action grid"))
        return rows
    t0 = time.perf_counter()
    p0 = solution.policy if (tau > 0 and solution is not None) else Policy(base, A, mdp.states, validate=False)
    U = _unit_coords(A)
    shift = rng.uniform(-0.15, 0.15, size=(mdp.n_states, 1, A.ndim))
    stretch = rng.uniform(-0.2, 0.2, size=(mdp.n_states, 1, 1))
    width = (A.bounds[:, 1] - A.bounds[:, 0])[None, None, :]
    v = (shift + stretch * U[None, :, :] / 2.0) * width
    from . import geometry
    p1 = None
    try:
        p1 = geometry.exp(p0, v)
        res = convexity_along(mdp, objective, (p0, p1), rtol=rtol, compare_hessian=False)
        note = (f"McCann geodesic from the {'optimum' if tau > 0 else 'base policy'} to a shifted and "
                f"stretched policy, {len(res.t)} points: " + ("convex" if res.convex else
                f"NOT convex at t = {np.round(res.negative_t, 3).tolist()}"
                + (f", states {res.failing_states}" if res.failing_states else "")))
        scale = float(np.max(np.abs(res.second_differences)))
        rows.append(_row("convexity (McCann)", res.min_second_difference, ">= 0",
                         max(0.0, -res.min_second_difference) / max(scale, 1e-300),
                         rtol, note, info=True))
    except WgflowError as exc:
        rows.append(_skip("convexity (McCann)", f"{type(exc).__name__}: {exc}"))
    rows[-1].time = time.perf_counter() - t0
    g = None
    if geodesics and p1 is not None:
        t0 = time.perf_counter()
        if A.ndim != 1:
            rows.append(_skip("convexity (metric geodesic)", "metric_geodesic needs a 1-D action grid"))
        elif mdp.n_states * mdp.n_actions > GEODESIC_MAX_PAIRS:
            rows.append(_skip("convexity (metric geodesic)", "nS*nA = "
                              f"{mdp.n_states * mdp.n_actions} > verify.GEODESIC_MAX_PAIRS = "
                              f"{GEODESIC_MAX_PAIRS}: the path-energy minimization would dominate the "
                              "run (raise the limit to include it)", "nS*nA > GEODESIC_MAX_PAIRS"))
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
                g = None
        rows[-1].time = time.perf_counter() - t0
    if p1 is not None:
        t0 = time.perf_counter()
        try:
            rows += _geodesic_check_rows(mdp, objective, p0, p1, g)
        except WgflowError as exc:
            rows.append(_skip("geodesic (McCann speed)", f"{type(exc).__name__}: {exc}"))
        rows[-1].time = time.perf_counter() - t0
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


def _unichain_hint(mdp) -> str:
    """What to do when an average-cost solve meets several recurrent classes, for this MDP."""
    model = getattr(mdp, "model", None)
    mask = getattr(model, "terminal_mask", None) if model is not None else None
    hints = []
    if mask is not None and np.any(mask) and getattr(model, "reset", None) is None:
        name = mdp.provenance.get("problem", "")
        hints.append("the MDP's terminal states are absorbing, each its own recurrent class: give it a "
                     "reset law" + (" (mountain_car: goal='reset')" if name == "mountain_car" else ""))
    hints.append("or use Discounted(...)")
    hints.append("or pass a unichain starting policy: verify.run(..., policy=...) for the local checks, "
                 "wg.solve(..., policy0=...) for the optimum")
    return "; ".join(hints)


_GROUP_ROWS = {"solve": ["solve"], "gradient": ["gradient"], "dissipation": ["dissipation", "dissipation (step)"],
               "gibbs": ["gibbs", "gibbs (otto rhs)"], "hessian": ["hessian"], "symmetry": ["hessian symmetry"],
               "rate": ["rate"], "convexity": ["convexity (continuity vs H)", "convexity (McCann)",
                                               "geodesic (McCann speed)"]}
_GEODESIC_GROUP_ROWS = ["convexity (metric geodesic)", "geodesic (metric endpoints)", "geodesic (metric length)"]


def _group_rows(name, geodesics):
    """Every row a check group produces (all are reported when the group raises)."""
    rows = list(_GROUP_ROWS.get(name, [name]))
    if name == "convexity" and geodesics:
        # the order of _convexity_rows: metric geodesic after McCann, its checks after McCann's
        rows = rows[:2] + _GEODESIC_GROUP_ROWS[:1] + rows[2:] + _GEODESIC_GROUP_ROWS[1:]
    return rows


def run(mdp, objective, policy=None, checks=None, rng=None, rates: bool = True, progress=None,
        geodesics: bool = True, tolerances: dict | None = None, title: str | None = None,
        solution=None) -> VerifyReport:
    r"""Run the numerical checks of the theory on ``mdp`` and return the table.

    Every check is computed independently of the others; one that cannot be computed (a
    numerical limitation, a non-unichain chain...) becomes a ``skip`` row with the reason, and a
    check that raises an unexpected error becomes a ``fail`` row with the error -- every row of
    that check's group (e.g. ``gibbs`` and ``gibbs (otto rhs)``): the report is always returned,
    and its summary line names the skipped rows and why. The first row, ``solve``, is the Bellman residual of ``wg.solve``'s solution
    (``fail`` with the way out when the solve itself fails, e.g. a multichain average-cost
    problem); the checks at the optimum are skipped then.

    Parameters
    ----------
    mdp : MDP
        With an action grid (1-D or multi-D; the metric-geodesic rows are 1-D only).
    objective : Discounted or Average
    policy : Policy, optional
        Where the local identities (gradient, dissipation, Hessian) are checked. Default
        :func:`default_policy` (a perturbed optimum; a perturbed uniform policy when the solve
        fails).
    checks : sequence of str, optional
        Subset of :data:`CHECKS` (default: all).
    rng : numpy Generator or int, optional
        Randomness of the test directions (default seed 0: reproducible).
    rates : bool
        Run the rate check (explicit ``otto`` steps near the optimum).
    progress : bool, callable or None
        Print each check's name to stderr (None: when stderr is a terminal or in a notebook), or
        ``progress(name, index, total)``.
    geodesics : bool
        Include the metric-geodesic rows (an L-BFGS-B path-energy minimization).
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
    rows = []
    t0 = time.perf_counter()
    sol, sol_error = solution, None
    if sol is None:
        try:
            sol = solve(mdp, objective)
        except NotUnichainError as exc:
            sol_error = f"NotUnichainError: {exc} Way out: {_unichain_hint(mdp)}"
        except WgflowError as exc:
            sol_error = f"{type(exc).__name__}: {exc}"
    if sol is not None:
        from .evaluation import bellman_operator
        tau = objective.entropy
        if isinstance(objective, Discounted):
            TV, _ = bellman_operator(mdp, objective.gamma * sol.V, tau)
        else:
            TV, _ = bellman_operator(mdp, sol.V, tau, offset=sol.J)
        res = float(np.max(np.abs(TV - sol.V)))
        scale = max(1.0, float(np.max(np.abs(sol.V))))
        rows.append(_row("solve", res, 0.0, res / scale, tols["solve"],
                         f"wg.solve: J* = {sol.J:.10g} ({sol.method}, {sol.iterations} iterations); value: "
                         "Bellman residual |T V - V|_inf of the returned V, error relative to max(1, |V|_inf)"))
    else:
        rows.append(CheckRow("solve", float("nan"), "-", float("nan"), tols["solve"], "fail", sol_error))
    rows[-1].time = time.perf_counter() - t0
    diag["time_solve"] = rows[-1].time
    if policy is None:
        base_sol = sol if sol is not None else None
        if base_sol is not None:
            pol = default_policy(mdp, objective, rng, base_sol)
        else:
            pol = default_policy(mdp, objective, rng, _UniformSolution(mdp))
    else:
        pol = policy if isinstance(policy, Policy) else Policy(policy, A, mdp.states)
    base = _check_policy(mdp, pol)
    if np.any(base <= 0) and any(c in names for c in ("gradient", "hessian", "symmetry", "convexity")):
        s, a = np.argwhere(base <= 0)[0]
        raise ValidationError(f"verify.run needs a strictly positive policy (state {s}, action {a} has "
                              f"mass {base[s, a]:g}); pass policy=None for the default")
    diag["policy"] = base
    needs_solution = {"gibbs", "rate", "convexity"}
    H = None
    for i, name in enumerate(names):
        prog(name, i, len(names))
        ts = time.perf_counter()
        before = len(rows)
        if name in needs_solution and sol is None:
            for r in _group_rows(name, geodesics):
                rows.append(_skip(r, f"needs wg.solve's optimum: {sol_error}", "no optimum: the solve failed"))
        else:
            try:
                if name == "gradient":
                    rows += check_gradient(mdp, objective, base, rng, tol=tols["gradient"])
                elif name == "dissipation":
                    rows += check_dissipation(mdp, objective, base, tol=tols["dissipation"],
                                              tol_step=tols["dissipation_step"])
                elif name == "gibbs":
                    rows += check_gibbs(mdp, objective, sol, tol=tols["gibbs"], tol_rhs=tols["gibbs_rhs"])
                elif name in ("hessian", "symmetry"):
                    if H is None:
                        H = hessian(mdp, objective, base)
                    rows += check_hessian(mdp, objective, base, rng, tol=tols["hessian"],
                                          tol_sym=tols["symmetry"], H=H, which=(name,))
                elif name == "rate":
                    rows += check_rate(mdp, objective, sol, tol=tols["rate"])
                elif name == "convexity":
                    rows += _convexity_rows(mdp, objective, sol, base, rng, tols["convexity_hessian"],
                                            geodesics=geodesics, rtol=tols["convexity_rtol"])
            except (WgflowError, np.linalg.LinAlgError) as exc:
                # every row of the group is reported (none silently disappears from the table);
                # rows of the group already appended before the error are replaced
                del rows[before:]
                for r in _group_rows(name, geodesics):
                    rows.append(_skip(r, f"could not be computed: {type(exc).__name__}: {exc}",
                                      f"{type(exc).__name__} raised"))
            except Exception as exc:  # noqa: BLE001 -- a bug, reported in the table, not a lost report
                del rows[before:]
                for r in _group_rows(name, geodesics):
                    rows.append(CheckRow(r, float("nan"), "-", float("nan"), float("nan"), "fail",
                                         f"unexpected {type(exc).__name__}: {exc}"))
        elapsed = time.perf_counter() - ts
        new = rows[before:]
        untimed = [r for r in new if r.time is None]
        if untimed:
            rest = max(elapsed - sum(r.time for r in new if r.time is not None), 0.0)
            for r in untimed:
                r.time = rest / len(untimed)
        diag[f"time_{name}"] = elapsed
    if title is None:
        title = (f"wgflow verify: {mdp.n_states} states x {mdp.n_actions} actions "
                 f"({A.ndim}-D actions), {objective!r}")
    diag["time_total"] = time.perf_counter() - t0
    return VerifyReport(rows, title, diag)


class _UniformSolution:
    """Stand-in for a solution when the solve fails: the uniform policy (for default_policy)."""

    def __init__(self, mdp):
        self.policy = Policy.uniform(mdp)


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
