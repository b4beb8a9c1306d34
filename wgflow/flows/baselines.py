r"""Baseline (non-Wasserstein) policy-optimization schemes: ``pmd`` and ``pg``.

``pmd`` -- KL mirror descent / natural policy gradient with entropy (exact Q): per state,

.. math:: \pi^+ = \arg\min_\pi \langle Q, \pi\rangle + \tau\,\langle\pi, \log\pi\rangle
          + \tfrac1h \mathrm{KL}(\pi\,\|\,\pi_k)
          \;\propto\; \pi_k^{1/(1+h\tau)} \exp\!\big(-hQ/(1+h\tau)\big),

computed in log space. ``h -> inf`` is one soft policy-iteration step (``pi ~ exp(-Q/tau)``).

``pg`` -- Euclidean gradient descent on softmax logits ``theta`` (``pi = softmax(theta)`` per
state) with the exact gradient

.. math:: \frac{\partial J}{\partial\theta(s,a)} = \kappa\,\omega(s)\,\pi(a|s)
          \Big[\Psi(s,a) - \sum_b \pi(b|s)\Psi(s,b)\Big],\qquad \Psi = Q + \tau\log(\pi/\mathrm{vol}),

``kappa = 1/(1-gamma)`` (discounted, ``omega`` the normalized discounted occupancy) or 1 (average
cost, ``omega`` the stationary law). Derivations in ``docs/wpo_and_baselines.md``.

Neither scheme needs an action grid (no geometry on the actions is used).
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from .base import FlowState, Scheme, frame_logs

__all__ = ["PMD", "PG", "pmd_update", "pmd_log_update", "softmax_pg_gradient"]


def _masses_of(scheme, policy):
    return scheme.initial_masses(policy)


def _vol(mdp) -> float:
    return mdp.actions.cell_volume if mdp.actions is not None else 1.0


def _psi_centered(masses, Q, tau, vol):
    """``Psi - sum_b pi Psi`` per state, ``Psi = Q + tau log(pi/vol)``; 0 where ``pi = 0``."""
    support = masses > 0
    if tau > 0:
        with np.errstate(divide="ignore"):
            logm = np.where(support, np.log(np.where(support, masses, 1.0) / vol), 0.0)
        psi = Q + tau * logm
    else:
        psi = Q
    psi = np.where(support, psi, 0.0)
    mean = np.sum(masses * psi, axis=1, keepdims=True)
    return np.where(support, psi - mean, 0.0)


def pmd_log_update(log_masses, Q, tau, h):
    r"""One KL mirror-descent step on log masses: ``(log pi - h Q) / (1 + h tau)``, normalized.

    ``log_masses`` ``(nS, nA)`` holds ``log pi`` (``-inf`` off the support; each row with a finite
    entry). Returns ``(masses, log_masses)`` of ``pi+``: ``log pi+`` normalized per state
    (``log sum exp = 0`` to rounding), ``-inf`` exactly off the support, finite on it even where
    ``pi+`` itself underflows to zero. Carried from step to step, the logs keep the support:
    masses computed from masses would lose, for good, every action whose mass once underflowed
    (``exp(-hQ/(1 + h tau))`` spans thousands of orders of magnitude at small entropies), which the
    exact iteration never does. ``h = inf`` gives the soft-greedy (Gibbs) policy for ``tau > 0``
    and the greedy one (uniform over the argmin ties within the support) for ``tau = 0``.
    """
    support = np.isfinite(log_masses)
    if np.isinf(h):
        if tau > 0:
            z = np.where(support, -Q / tau, -np.inf)
        else:
            Qs = np.where(support, Q, np.inf)
            best = Qs.min(axis=1, keepdims=True)
            z = np.where(Qs <= best, 0.0, -np.inf)
    else:
        z = np.where(support, (np.where(support, log_masses, 0.0) - h * Q) / (1.0 + h * tau),
                     -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    return e / total, z - np.log(total)


def pmd_update(masses, Q, tau, h):
    r"""One KL mirror-descent step ``pi+ ~ pi^{1/(1+h tau)} exp(-h Q/(1+h tau))`` (log space) from
    masses: :func:`pmd_log_update` of ``log masses``. Zero masses stay zero (the scheme carries
    the logs instead, so that masses which underflow keep their place in the support).
    """
    with np.errstate(divide="ignore"):
        logm = np.log(masses)
    return pmd_log_update(logm, Q, tau, h)[0]


def softmax_pg_gradient(masses, Q, weights, tau, kappa, vol=1.0):
    r"""``dJ/dtheta(s,a) = kappa w(s) pi(a|s) (Psi(s,a) - sum_b pi(b|s) Psi(s,b))``."""
    return kappa * weights[:, None] * masses * _psi_centered(masses, Q, tau, vol)


def _softmax(theta):
    z = theta - theta.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class PMD(Scheme):
    r"""Policy mirror descent (KL proximal / natural policy gradient with entropy), exact Q.

    One step of size ``h = dt``: ``pi+ ~ pi^{1/(1+h tau)} exp(-h Q^pi/(1+h tau))`` per state.
    Monotone (``V^{pi+} <= V^{pi}`` state-wise) for every ``h > 0``, and its fixed points are the
    soft-greedy policies of their own Q, i.e. the policy :func:`wgflow.solve` returns. The support
    of the initial policy is kept (zeros stay zero). The state carries the log masses
    (``params["log_masses"]``, :func:`pmd_log_update`; 0 off the support, which
    ``params["support"]`` holds): a mass that underflows to zero keeps its log and can grow
    back, as in exact arithmetic (pendulum 51x51x21, ``gamma = 0.99``, entropy 1e-3: from
    masses, the iteration lost the optimal actions of some states for good and stalled at
    ``J - J* = 0.6``; from the logs it reaches ``J - J* < 1e-8`` in 20 steps).

    ``dt=None`` uses ``h = step / tau`` (``tau > 0``; ``step`` default 1: the proximal term and the
    entropy have equal weight, ``pi+ ~ sqrt(pi * exp(-Q/tau))``) or ``h = step / max_s span_a Q``
    (``tau = 0``).

    ``grad_norm2``: ``sum_s w(s) sum_a pi (Psi - E_pi Psi)^2`` with ``Psi = Q + tau log pi`` -- the
    squared norm of the mirror direction in the Fisher--Rao (Shahshahani) metric weighted by
    ``w``; ``dJ/dt = -kappa * grad_norm2`` for the continuous-time mirror flow
    ``d log pi/dt = -(Psi - E_pi Psi)``.

    Options
    -------
    step : float
        Scale of the default step (see above; default 1).
    """

    name = "pmd"
    needs_actions = False

    def __init__(self, mdp, objective, step: float = 1.0, **options):
        super().__init__(mdp, objective, **options)
        if not (np.isfinite(step) and step > 0):
            raise ValidationError(f"pmd: step must be > 0, got {step}")
        self.step_scale = float(step)

    def _state(self, t, masses, log_masses, support, info=None):
        # the frame's data are finite: log pi on the support, 0 off it (where the masses are 0)
        params = {"log_masses": np.where(support, log_masses, 0.0),
                  "support": support.astype(np.uint8)}
        return FlowState(t, masses, self.evaluate(masses), params, dict(info or {}))

    def init(self, policy, t0: float = 0.0) -> FlowState:
        m = _masses_of(self, policy)
        with np.errstate(divide="ignore"):
            return self._state(t0, m, np.log(m), m > 0)

    def init_from_frame(self, policy, params: dict, t0: float) -> FlowState:
        nS, nA = self.mdp.n_states, self.mdp.n_actions
        logm, support, _ = frame_logs("pmd", "log_masses", params, (nS, nA))
        return self._state(t0, _masses_of(self, policy), logm, support)

    def suggest_dt(self, state) -> float:
        if self.tau > 0:
            return self.step_scale / self.tau
        Q = np.where(state.masses > 0, state.evaluation.Q, np.nan)
        span = float(np.nanmax(np.nanmax(Q, axis=1) - np.nanmin(Q, axis=1)))
        return self.step_scale / span if span > 0 else np.inf

    def grad_norm2(self, state) -> float:
        c = _psi_centered(state.masses, state.evaluation.Q, self.tau, _vol(self.mdp))
        return float(np.sum(state.evaluation.weights * np.sum(state.masses * c * c, axis=1)))

    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        support = state.params["support"] == 1
        new, logm = pmd_log_update(np.where(support, state.params["log_masses"], -np.inf),
                                   state.evaluation.Q, self.tau, dt)
        self.stats["steps"] += 1
        return self._state(state.t + dt, new, logm, support, {"dt": dt})


class PG(Scheme):
    r"""Euclidean softmax policy gradient with the exact gradient.

    ``state.params["logits"]`` ``(nS, nA)``: ``pi = softmax(logits)`` per state; one step
    ``logits <- logits - h dJ/dlogits`` with ``dJ/dlogits = kappa w pi (Psi - E_pi Psi)``.
    The initial policy must have full support (a Policy with positive masses, whose logits are
    ``log m`` centred per state) or be given as ``{"logits": array}``.

    ``grad_norm2``: the squared Euclidean norm of ``dJ/dlogits`` (so ``dJ/dt = -grad_norm2`` for the
    continuous-time gradient flow in logit space; no ``kappa`` because it is inside the gradient).

    Options
    -------
    cfl : float
        Adaptive steps: ``dt = cfl / L`` with the local smoothness estimate
        ``L = kappa max_s w(s) (2 max_a |Psi - E_pi Psi| + tau)`` (the local Hessian bound of the
        softmax parametrization; conservative by a factor ~4 on garnets), at most doubling per
        step (default 2).
    monotone : bool
        Adaptive steps only: reject (and halve) a step that increases ``J`` (default True).
    """

    name = "pg"
    needs_actions = False

    def __init__(self, mdp, objective, cfl: float = 2.0, monotone: bool = True, **options):
        super().__init__(mdp, objective, **options)
        if not (np.isfinite(cfl) and cfl > 0):
            raise ValidationError(f"pg: cfl must be > 0, got {cfl}")
        self.cfl = float(cfl)
        self.monotone = bool(monotone)
        self.kappa = self.evaluate.dissipation_factor
        self._dt_prev = None

    def _state(self, t, theta, info=None):
        m = _softmax(theta)
        return FlowState(t, m, self.evaluate(m), {"logits": theta}, dict(info or {}))

    def init(self, policy, t0: float = 0.0) -> FlowState:
        nS, nA = self.mdp.n_states, self.mdp.n_actions
        if isinstance(policy, dict):
            if set(policy) != {"logits"}:
                raise ValidationError(f"pg: parameters must be {{'logits': array ({nS}, {nA})}}, "
                                      f"got keys {sorted(policy)}")
            theta = np.array(policy["logits"], dtype=float)
            if theta.shape != (nS, nA) or not np.all(np.isfinite(theta)):
                raise ValidationError(f"pg: logits must be a finite array ({nS}, {nA}), got shape "
                                      f"{theta.shape}")
        else:
            m = _masses_of(self, policy)
            if np.any(m <= 0):
                s, a = np.argwhere(m <= 0)[0]
                raise ValidationError(f"pg: a softmax policy has full support, but the initial "
                                      f"policy has mass 0 at state {s}, action {a}")
            theta = np.log(m)
            theta = theta - theta.mean(axis=1, keepdims=True)
        return self._state(t0, theta)

    def init_from_frame(self, policy, params: dict, t0: float) -> FlowState:
        return self.init({"logits": params["logits"]}, t0=t0)

    def gradient(self, state) -> np.ndarray:
        """``dJ/dlogits`` ``(nS, nA)`` (cached on the state)."""
        if "_gradient" not in state.info:
            ev = state.evaluation
            state.info["_gradient"] = softmax_pg_gradient(state.masses, ev.Q, ev.weights, self.tau,
                                                          self.kappa, _vol(self.mdp))
        return state.info["_gradient"]

    def grad_norm2(self, state) -> float:
        G = self.gradient(state)
        return float(np.sum(G * G))

    @property
    def adaptive(self) -> bool:
        return True

    def suggest_dt(self, state) -> float:
        c = _psi_centered(state.masses, state.evaluation.Q, self.tau, _vol(self.mdp))
        L = self.kappa * float(np.max(state.evaluation.weights * (2.0 * np.max(np.abs(c), axis=1) + self.tau)))
        bound = self.cfl / L if L > 0 else np.inf
        if self._dt_prev is not None:
            bound = min(bound, 2.0 * self._dt_prev)
        return bound

    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        G = self.gradient(state)
        theta = state.params["logits"]
        return self._accept_or_halve(state, dt, adaptive,
                                     lambda h: self._state(state.t + h, theta - h * G, {"dt": h}))
