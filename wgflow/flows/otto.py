r"""The ``otto`` scheme: time integration of the semi-discrete Wasserstein gradient flow.

Per state ``s`` the masses follow the conservative finite-volume scheme

.. math:: \frac{dm_i}{dt} = -\sum_{\text{faces } i\to j} F_{i\to j}(m, Q^{\pi}),

with Scharfetter--Gummel fluxes on the faces between neighbouring action cells, dimension by
dimension (:mod:`wgflow.kernels.fluxes`), and ``Q^pi`` the exact soft Q of the current policy,
re-evaluated every step. The semi-discrete flow keeps mass per state, positivity and the discrete
Gibbs state ``m ~ exp(-Q/tau)`` of a frozen ``Q`` stationary, and dissipates exactly:
``dJ/dt = -kappa * sum_s w(s) sum_faces theta |psi_j - psi_i|^2 / h^2`` with
``psi = Q + tau log(m / vol)``, ``theta >= 0`` and ``kappa = 1/(1-gamma)`` (discounted) or 1.

Two time integrators (:class:`Otto`): linearly implicit Euler with lagged ``Q`` (default; every
property above for every step size, plus monotone ``J``; adaptive steps without a CFL bound) and
explicit Euler (the first-order reference; positivity under ``dt * max_i rate_i <= 1``).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConvergenceError, ValidationError
from ..kernels.fluxes import sg_flux, sg_flux_numpy
from ..kernels.sg_implicit import SGOperator
from .base import FlowState, ProposedStep, Scheme, grid_potential

__all__ = ["Otto", "otto_rhs"]


def _axis_views(shape, d):
    outer = int(np.prod(shape[:d + 1])) // shape[d]
    return outer, shape[d], int(np.prod(shape[d + 1:]))


def otto_rhs(masses, Q, tau, actions, weights=None, use_numba=True):
    """Right-hand side of the semi-discrete flow for frozen ``Q``.

    Returns ``(dm, rate, dissipation)``: ``dm`` ``(nS, nA)`` the time derivative of the masses,
    ``rate`` ``(nS, nA)`` the outflow rate of each cell (CFL), and, when ``weights`` are given,
    ``sum_s w(s) sum_faces -F (psi_j - psi_i)`` (the squared gradient norm; ``inf`` when a mass is
    zero while ``tau > 0``: Fisher information is infinite there).
    """
    nS = masses.shape[0]
    shape = (nS,) + tuple(actions.shape)
    m = masses.reshape(shape)
    q = Q.reshape(shape)
    dm = np.zeros(shape)
    rate = np.zeros(shape)
    diss = 0.0
    psi = None
    if weights is not None:
        psi = grid_potential(masses, Q, tau, actions.cell_volume).reshape(shape)
    for d in range(actions.ndim):
        if actions.shape[d] < 2:
            continue
        o, n, i = _axis_views(shape, d + 1)
        m3, q3 = m.reshape(o, n, i), q.reshape(o, n, i)
        F, r = (sg_flux if use_numba else sg_flux_numpy)(m3, q3, tau, actions.spacing[d])
        dm3 = dm.reshape(o, n, i)
        dm3[:, :-1, :] -= F
        dm3[:, 1:, :] += F
        rate += r.reshape(shape)
        if psi is not None:
            p3 = psi.reshape(o, n, i)
            with np.errstate(invalid="ignore"):
                dpsi = p3[:, 1:, :] - p3[:, :-1, :]
                term = np.where(F == 0.0, 0.0, -F * dpsi)
            per_state = term.reshape(nS, -1).sum(axis=1)
            diss += float(np.sum(weights * per_state))
    return dm.reshape(masses.shape), rate.reshape(masses.shape), diss


class Otto(ProposedStep, Scheme):
    r"""Time integration of the semi-discrete flow with the exact ``Q`` of each step's policy.

    Both integrators advance the same semi-discrete equation ``dm/dt = -L(Q^m) m``, ``L`` the
    Scharfetter--Gummel generator of each state (:mod:`wgflow.kernels.sg_implicit`).

    ``method="implicit"`` (default): linearly implicit Euler with lagged ``Q``,

    .. math:: (I + h L(Q_k))\, m_{k+1} = m_k ,\qquad Q_k = Q^{\pi_k}\ \text{(exact)},

    one banded M-matrix solve per state by subtraction-free elimination. For **every** ``h > 0``
    it keeps mass and positivity, leaves the Gibbs masses of a frozen ``Q`` unchanged, and
    decreases ``J``: ``R_h = (I + hL(Q_k))^{-1}`` is a Markov kernel leaving ``g ~ exp(-Q_k/tau)``
    invariant, so it decreases ``KL(m | g) = (F_s(m) - F_s(g))/tau``, ``F_s(m) = <Q_k, m> + tau <m,
    log m>``, in every state (``tau = 0``: ``R_h`` averages the frozen upwind flow over times,
    which decreases ``<Q_k, m>``), and the performance-difference lemma turns the per-state
    decrease into ``J(pi_{k+1}) <= J(pi_k)``. Its fixed points are the policies that are Gibbs
    for their own ``Q``, i.e. the policy :func:`wgflow.solve` returns; ``h -> inf`` is one soft
    policy-iteration step. First order in time (``docs/flows.md``).

    Adaptive steps (``dt=None``) control a local error estimate built from resolvents only (no
    term in which rounding is multiplied by ``h``): with ``Q_mid = (Q_k + Q_{k+1})/2``,

    .. math:: e = 2 R_{h/2}(Q_{mid})^2 m_k - R_h(Q_{mid}) m_k - m_{k+1},\qquad
              \epsilon = \frac1{n_S} \sum_s \| e_s \|_1 ,

    i.e. the Richardson estimate of the time-discretization error of a backward Euler step plus
    the effect of lagging ``Q`` (``Q_{k+1}`` of a candidate is first approximated by a few
    refinement steps with the factorization the exact evaluations hold, so a rejected candidate
    costs no exact evaluation). A step is accepted when ``epsilon <= tol`` and the next one is
    ``h * min(growth, 0.9 (tol / epsilon)^0.7)`` (the exponent sits between the ``O(h^2)``
    error of smooth phases and the ``O(h)`` error of lagging ``Q`` while fast modes are relaxed).
    There is no CFL bound: the step follows the change of the policy and of ``Q`` and grows
    geometrically as the flow settles, through the long times at which the exact flow crosses the
    barriers of a multimodal ``Q(s, .)`` (about ``exp(barrier / tau)``), up to
    ``h * max rate = 1e250``.

    ``method="explicit"``: forward Euler, the first-order reference. Positivity needs
    ``dt * max rate <= 1`` (a fixed ``dt`` above it raises); adaptive steps use
    ``cfl / max rate``, at most doubling, and reject a step that increases ``J``.

    Options
    -------
    method : {"implicit", "explicit"}
        Time integrator (default ``"implicit"``).
    tol : float
        Implicit adaptive steps: bound on ``epsilon``, the mean over states of the L1 norm of the
        estimated local error of the masses (default ``0.05``).
    growth : float
        Implicit adaptive steps: largest ratio of two successive steps (default ``1e3``).
    dt_max : float, optional
        Implicit adaptive steps: largest step (default None: only ``dt * max rate <= 1e250``).
    cfl : float
        Explicit adaptive steps: fraction of the positivity bound ``1 / max rate`` (default
        0.5). The first implicit adaptive step is ``cfl / max rate`` too.
    monotone : bool
        Adaptive steps: reject (and shrink) a step that increases ``J`` by more than the rounding
        of the evaluation (default True; the implicit step decreases ``J`` for every ``h``).

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15)
    >>> obj = wg.Discounted(0.9, entropy=0.5)
    >>> traj = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1e6, progress=False)
    >>> bool(traj.J[-1] - wg.solve(mdp, obj).J < 1e-8)
    True
    """

    name = "otto"
    #: exponent of the step-size rule (see the class docstring)
    EXPONENT = 0.7
    #: refinement steps of the approximate ``Q`` that tests a candidate step
    APPROX_ITERATIONS = 3
    #: largest ``dt * max rate`` of an implicit step (the resolvent stays finite far beyond)
    MAX_STIFFNESS = 1e250

    def __init__(self, mdp, objective, method: str = "implicit", tol: float = 0.05,
                 growth: float = 1e3, dt_max: float | None = None, cfl: float = 0.5,
                 monotone: bool = True, **options):
        super().__init__(mdp, objective, **options)
        if method not in ("implicit", "explicit"):
            raise ValidationError(f"otto: method must be 'implicit' or 'explicit', got {method!r}")
        if not 0 < cfl <= 1:
            raise ValidationError(f"otto: cfl must be in (0, 1], got {cfl}")
        if not (np.isfinite(tol) and tol > 0):
            raise ValidationError(f"otto: tol must be a finite number > 0, got {tol}")
        if dt_max is not None and not (np.isfinite(dt_max) and dt_max > 0):
            raise ValidationError(f"otto: dt_max must be a finite number > 0 or None, got {dt_max}")
        if not (np.isfinite(growth) and growth > 1):
            raise ValidationError(f"otto: growth must be a finite number > 1, got {growth}")
        self.method = method
        self.tol = float(tol)
        self.growth = float(growth)
        self.dt_max = np.inf if dt_max is None else float(dt_max)
        self.cfl = cfl
        self.monotone = monotone
        self._dt_prev = None
        self._dt_next = None
        if method == "implicit":
            self.stats.update({"error_max": 0.0, "dt_largest": 0.0, "approximate_evaluations": 0})

    @property
    def adaptive(self) -> bool:
        return True

    # -- cached per state -----------------------------------------------------------------
    def _rhs(self, state, with_dissipation=False):
        # cached on the state: suggest_dt, step and grad_norm2 all need it
        key = "_rhs_diss" if with_dissipation else "_rhs"
        if with_dissipation and state.evaluation.weights is None:
            # steps skip the occupancy solve; frames that report the gradient norm need it
            state.evaluation = self.evaluate(state.masses)
        if key not in state.info:
            w = state.evaluation.weights if with_dissipation else None
            state.info[key] = otto_rhs(state.masses, state.evaluation.Q, self.tau, self.mdp.actions, w)
            if with_dissipation:
                state.info["_rhs"] = state.info[key]
        return state.info[key]

    def _operator(self, state):
        """The SG generator of the state's ``Q`` and the largest outflow rate (cached)."""
        if "_op" not in state.info:
            op = SGOperator(state.evaluation.Q, self.tau, self.mdp.actions)
            state.info["_op"] = (op, float(op.apply(state.masses)[1].max()))
        return state.info["_op"]

    def grad_norm2(self, state) -> float:
        return self._rhs(state, True)[2]

    def suggest_dt(self, state) -> float:
        if self.method == "implicit":
            if self._dt_next is not None:
                return self._dt_next
            rmax = self._operator(state)[1]
            # first step: the explicit bound (then the error control takes over)
            return min(self.cfl / rmax if rmax > 0 else 1.0, self.dt_max)
        _, rate, _ = self._rhs(state)
        rmax = float(rate.max())
        bound = self.cfl / rmax if rmax > 0 else np.inf
        if self._dt_prev is not None:
            bound = min(bound, 2.0 * self._dt_prev)
        return bound

    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        if self.method == "implicit":
            return self._step_implicit(state, dt, adaptive)
        dm, rate, _ = self._rhs(state)
        rmax = float(rate.max())
        if not adaptive and dt * rmax > 1.0 + 1e-12:
            raise ValidationError(
                f"otto: dt = {dt:g} exceeds the positivity (CFL) bound 1/max_rate = {1.0 / rmax:g} "
                "of the explicit step; use a smaller dt, dt=None for adaptive steps, or "
                "method='implicit' (no step bound)")

        def propose(h):
            new = state.masses + h * dm
            if np.min(new) < 0.0:
                # rounding can leave -1e-18 on emptied cells; anything larger is a real violation
                if np.min(new) < -1e-14:
                    return None
                new = np.maximum(new, 0.0)
            ev = self.evaluate(new, weights=False)
            return FlowState(state.t + h, new, ev, state.params, {"dt": h, "max_rate": rmax})

        return self._accept_or_halve(state, dt, adaptive, propose)

    # -- linearly implicit Euler with lagged Q ------------------------------------------
    def local_error(self, state: FlowState, m1: np.ndarray, Q1: np.ndarray, h: float) -> float:
        r"""``epsilon`` of the class docstring for the step ``m1 = R_h(Q_k) m_k`` from ``state``,
        with ``Q1`` the (possibly approximate) ``Q`` of ``m1``."""
        opm = SGOperator(0.5 * (state.evaluation.Q + Q1), self.tau, self.mdp.actions)
        m0 = state.masses
        e = 2.0 * opm.resolvent(m0, 0.5 * h, repeat=2) - opm.resolvent(m0, h) - m1
        return float(np.mean(np.sum(np.abs(e), axis=1)))

    def _rounding_J(self, J):
        # rounding of an exact evaluation of J: a few ulps times the condition number of the
        # linear system, ~(1 + gamma)/(1 - gamma) for the discounted objective
        return 64.0 * np.finfo(float).eps * self.evaluate.dissipation_factor * max(1.0, abs(J))

    def _step_implicit(self, state, dt, adaptive):
        if not (dt > 0):
            raise ValidationError(f"otto: dt must be > 0, got {dt}")
        op0, rmax = self._operator(state)
        h_cap = self.MAX_STIFFNESS / rmax if rmax > 0 else np.inf
        if not adaptive:
            if not dt <= h_cap:
                raise ValidationError(
                    f"otto: dt = {dt:g} is beyond the largest implicit step {h_cap:g} "
                    f"(dt * max rate <= {self.MAX_STIFFNESS:g}; max rate = {rmax:g})")
            m1 = op0.resolvent(state.masses, dt)
            self.stats["steps"] += 1
            self._dt_prev = dt
            return FlowState(state.t + dt, m1, self.evaluate(m1, weights=False), state.params,
                             {"dt": dt})
        proposal = self._dt_next
        J0 = state.J
        h = min(dt, h_cap)
        for _ in range(60):
            m1 = op0.resolvent(state.masses, h)
            # the error estimate needs the Q of m1: a cheap approximation first (a rejected
            # candidate costs no exact evaluation), the exact Q once the candidate is accepted
            ev = None
            approx = self.evaluate.approximate_q(m1, state.evaluation, self.APPROX_ITERATIONS)
            if approx is None:
                ev = self.evaluate(m1, weights=False)
                Q1 = ev.Q
            else:
                Q1, V1 = approx
            err = self.local_error(state, m1, Q1, h)
            fac = 0.9 * (self.tol / err) ** self.EXPONENT if err > 0 else np.inf
            if err <= self.tol:
                if ev is None:
                    # exact, started from the approximation's V (the same stopping rule)
                    ev = self.evaluate(m1, weights=False, V0=V1)
                if not (self.monotone and ev.J > J0 + self._rounding_J(J0)):
                    nxt = h * min(self.growth, fac)
                    if proposal is not None and h < proposal and fac >= 1.0:
                        nxt = max(nxt, proposal)     # the caller shortened the step (a frame)
                    self._dt_next = min(nxt, self.dt_max)
                    self._dt_prev = h
                    self.stats["steps"] += 1
                    self.stats["error_max"] = max(self.stats["error_max"], err)
                    self.stats["dt_largest"] = max(self.stats["dt_largest"], h)
                    self.stats["approximate_evaluations"] = self.evaluate.approximations
                    return FlowState(state.t + h, m1, ev, state.params, {"dt": h, "error": err})
                h *= 0.5                             # J increased beyond rounding: never seen
            else:
                h *= min(0.5, max(0.1, fac))
            self.stats["rejected"] += 1
        raise ConvergenceError(f"otto: 60 successive step rejections at t = {state.t:g}",
                               {"t": state.t, "dt": h})
