"""Scheme interface and registry shared by every flow scheme.

A scheme says *how* one step moves the policy; :func:`wgflow.flow` says what is integrated (MDP,
objective), for how long, and what is saved. Schemes register themselves by defining a class
attribute ``name`` (py-pde's pattern)::

    class MyScheme(Scheme):
        name = "mine"
        def step(self, state, dt): ...

and are then available as ``wg.flow(..., scheme="mine")``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConvergenceError, ValidationError
from ..evaluation import Evaluation, _check_objective, _evaluate_masses
from ..linalg import LinearSolveCache
from ..policy import Policy

__all__ = ["Scheme", "FlowState", "Evaluator", "get_scheme", "scheme_names", "grid_potential"]

_REGISTRY: dict = {}


@dataclass
class FlowState:
    """The state of a flow between steps.

    ``masses`` ``(nS, nA)`` is the grid policy (for particle or parametric schemes, the policy the
    scheme's own representation induces on the grid, used for exact evaluation); ``params`` holds
    the scheme's own representation (particles, Gaussian parameters...) when it has one.
    """

    t: float
    masses: np.ndarray
    evaluation: Evaluation
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def J(self) -> float:
        return self.evaluation.J


class Evaluator:
    """Exact evaluation with factorization reuse across the steps of a flow."""

    def __init__(self, mdp, objective, reuse: bool = True):
        self.mdp = mdp
        self.objective = objective
        self.cache = LinearSolveCache(reuse=reuse)
        self.count = 0
        self.time = 0.0

    def __call__(self, masses: np.ndarray, weights: bool = True) -> Evaluation:
        """Exact evaluation; ``weights=False`` may skip the metric weights (``ev.weights`` None)."""
        t0 = time.perf_counter()
        J, w, V, Q, c_pi, _ = _evaluate_masses(self.mdp, masses, self.objective, self.cache, weights)
        self.count += 1
        self.time += time.perf_counter() - t0
        pol = Policy(masses, self.mdp.actions, self.mdp.states, validate=False)
        return Evaluation(J, w, V, Q, c_pi, self.objective, pol, {})

    @property
    def dissipation_factor(self) -> float:
        """``kappa`` in ``dJ/dt = -kappa * |grad|^2``: ``1/(1-gamma)`` (discounted) or 1 (average).

        The normalized occupancy ``d_pi`` weights the metric, while ``dJ/dpi(s,a) =
        d_pi(s) (Q + tau log pi + tau) / (1 - gamma)``.
        """
        g = getattr(self.objective, "gamma", None)
        return 1.0 if g is None else 1.0 / (1.0 - g)


def grid_potential(masses, Q, tau, cell_volume):
    """``psi = Q + tau log(masses / vol)`` (``-inf`` where a mass is 0 and ``tau > 0``)."""
    if tau <= 0:
        return Q
    with np.errstate(divide="ignore"):
        return Q + tau * np.log(masses / cell_volume)


class Scheme:
    """Base class of flow schemes.

    Subclasses set ``name`` and implement :meth:`step`; they may override :meth:`init`
    (representation of the initial policy), :meth:`suggest_dt` (step when the user gives none)
    and :meth:`policy` (the policy of a state).

    Parameters
    ----------
    mdp : MDP
    objective : Discounted or Average
    reuse_factorization : bool
        Warm-start each exact evaluation with the previous factorization.
    """

    name: str | None = None
    #: whether the scheme moves in continuous time (dt is a time step) or iterates (dt = step size)
    needs_actions: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self, mdp, objective, reuse_factorization: bool = True, **options):
        _check_objective(objective)
        if self.needs_actions:
            mdp.require_actions(f"the '{self.name}' scheme")
        if options:
            raise ValidationError(f"scheme '{self.name}' got unknown option(s) {sorted(options)}")
        self.mdp = mdp
        self.objective = objective
        self.tau = float(objective.entropy)
        self.evaluate = Evaluator(mdp, objective, reuse=reuse_factorization)
        self.stats = {"steps": 0, "rejected": 0}

    # -- to implement ------------------------------------------------------------------
    def init(self, policy, t0: float = 0.0) -> FlowState:
        masses = policy.masses if isinstance(policy, Policy) else np.asarray(policy, dtype=float)
        return FlowState(t0, masses, self.evaluate(masses))

    def init_from_frame(self, policy, params: dict, t0: float) -> FlowState:
        """Rebuild a state from a stored frame (resuming); schemes with their own
        representation override this to use ``params``."""
        return self.init(policy, t0=t0)

    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        """Advance by ``dt`` and return the new state with ``t`` advanced by the step taken.

        With ``adaptive`` (the user gave no dt) the scheme may take a smaller step than ``dt``;
        otherwise it takes exactly ``dt`` or raises."""
        raise NotImplementedError

    #: adaptive steps that increase J are rejected and halved (schemes set this from an option)
    monotone: bool = False

    def _accept_or_halve(self, state: FlowState, dt: float, adaptive: bool, propose) -> FlowState:
        """Step control shared by the schemes: ``propose(dt)`` returns the candidate state, or
        None to reject it (e.g. negative masses). With adaptive steps, a rejected candidate or
        (when ``monotone``) one that increases ``J`` is retried with half the step."""
        J0 = state.J
        for _ in range(60):
            new = propose(dt)
            increases = (new is not None and self.monotone
                         and new.J > J0 + 1e-13 * max(1.0, abs(J0)))
            if new is not None and not (adaptive and increases):
                self.stats["steps"] += 1
                self._dt_prev = dt
                return new
            if not adaptive:
                raise ValidationError(f"{self.name}: the step dt={dt:g} was rejected; reduce dt")
            dt *= 0.5
            self.stats["rejected"] += 1
        raise ConvergenceError(f"{self.name}: 60 successive step rejections (J keeps increasing)",
                               {"t": state.t, "dt": dt})

    def suggest_dt(self, state: FlowState) -> float:
        """Step used when the user gives none."""
        raise ValidationError(f"scheme '{self.name}' needs an explicit dt")

    def policy(self, state: FlowState) -> Policy:
        return Policy(state.masses, self.mdp.actions, self.mdp.states, validate=False)

    def grad_norm2(self, state: FlowState) -> float:
        """Squared norm of the gradient the scheme follows (NaN if not defined)."""
        return float("nan")

    @property
    def adaptive(self) -> bool:
        return False


def get_scheme(name) -> type:
    """The scheme class registered as ``name`` (or ``name`` itself if it is a Scheme subclass)."""
    if isinstance(name, type) and issubclass(name, Scheme):
        return name
    if name not in _REGISTRY:
        raise ValidationError(f"unknown scheme {name!r}; registered schemes: {scheme_names()}")
    return _REGISTRY[name]


def scheme_names() -> list:
    return sorted(_REGISTRY)
