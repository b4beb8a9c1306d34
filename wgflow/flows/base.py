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

import inspect
import time
from dataclasses import dataclass, field

import numpy as np

from .. import validation
from ..errors import ConvergenceError, ValidationError
from ..evaluation import (Evaluation, _assembler, _check_mdp, _check_objective, _evaluate_masses,
                          policy_cost)
from ..linalg import LinearSolveCache
from ..policy import Policy

__all__ = ["Scheme", "FlowState", "Evaluator", "get_scheme", "scheme_names", "scheme_options",
           "grid_potential", "rebuild_state"]

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
        self.reuse = reuse
        self.cache = LinearSolveCache(reuse=reuse)
        self._past_stats: dict = {}
        self.count = 0
        self.time = 0.0
        self.approximations = 0
        self.time_approximations = 0.0

    def restart(self) -> None:
        """Forget everything that makes the next evaluation depend on earlier ones.

        After ``restart()`` an evaluation gives the same bits as the first evaluation of a new
        :class:`Evaluator` on the same input: the reused factorization (a preconditioner, so it
        changes the last bits of the solution), the reuse/probe counters and any warm start are
        dropped by starting a new :class:`~wgflow.linalg.LinearSolveCache`. Stored frames of a flow
        are restart points (see :class:`Scheme`); statistics are kept (:meth:`solver_stats`).
        """
        for k, v in self.cache.stats.items():
            self._past_stats[k] = self._past_stats.get(k, 0) + v
        self.cache = LinearSolveCache(reuse=self.reuse)

    def solver_stats(self) -> dict:
        """Linear-solver statistics summed over the caches used since the start."""
        out = dict(self._past_stats)
        for k, v in self.cache.stats.items():
            out[k] = out.get(k, 0) + v
        return out

    def __call__(self, masses: np.ndarray, weights: bool = True, V0: np.ndarray | None = None) -> Evaluation:
        """Exact evaluation; ``weights=False`` may skip the metric weights (``ev.weights`` None);
        ``V0`` (discounted) starts a solve that reuses the held factorization (exact all the same)."""
        t0 = time.perf_counter()
        J, w, V, Q, c_pi, _ = _evaluate_masses(self.mdp, masses, self.objective, self.cache, weights,
                                               V0=V0)
        self.count += 1
        self.time += time.perf_counter() - t0
        pol = Policy(masses, self.mdp.actions, self.mdp.states, validate=False)
        return Evaluation(J, w, V, Q, c_pi, self.objective, pol, {})

    def approximate_q(self, masses: np.ndarray, previous: Evaluation, iterations: int = 3) -> tuple | None:
        r"""Cheap approximation of the soft ``Q`` of ``masses`` (discounted objective only).

        ``iterations`` steps of iterative refinement of ``(I - gamma P_pi) V = c_pi`` started
        from ``previous.V`` and preconditioned by the factorization the exact evaluations hold
        (no new factorization, no Krylov iteration): ``V <- V + LU^{-1}(c_pi - (I - gamma P_pi)
        V)``, then ``Q = C + gamma P V``. Each refinement step contracts the error by the
        preconditioner's quality (how far ``P_pi`` is from the factorized matrix). Returns
        ``(Q, V)``, or None when no factorization is held or for the average cost (whose bordered
        system changes its reference state with the recurrent class); the caller then evaluates
        exactly. ``V`` can start the exact evaluation of the same masses (``V0``). Counted in
        ``approximations``, not in ``count``.
        """
        g = getattr(self.objective, "gamma", None)
        lu = getattr(self.cache, "_lu", None)
        if g is None or lu is None or previous is None or lu.shape[0] != self.mdp.n_states:
            return None
        t0 = time.perf_counter()
        mdp = self.mdp
        c_pi = policy_cost(mdp, masses, self.objective.entropy)
        P_pi = _assembler(mdp)(masses)
        V = np.array(previous.V, dtype=float, copy=True)
        for _ in range(int(iterations)):
            r = c_pi - (V - g * (P_pi @ V))
            V += self.cache.lu_solve(r)
        self.approximations += 1
        self.time_approximations += time.perf_counter() - t0
        return mdp.C + g * (mdp.P @ V).reshape(mdp.n_states, mdp.n_actions), V

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

    **Restart protocol** (what makes ``wg.flow(..., storage=path, resume=True)`` bit-identical
    to the uninterrupted run). A run's next step may depend on

    1. the :class:`FlowState`: ``t``, ``masses``, ``params`` (the scheme's own representation,
       stored with every frame) and the exact evaluation of the masses;
    2. the scheme's constructor options (stored in the file's header and compared on resume);
    3. scheme state that lives on the scheme object across steps -- a step-size controller's
       last step, a lagged quantity of a time integrator, a counter that seeds random numbers.
       :meth:`state_dict` returns all of it and :meth:`load_state_dict` puts it back; it is
       stored with every frame;
    4. the evaluator's reuse of an earlier factorization (a preconditioner: it changes the last
       bits). Every stored frame is therefore a *restart point*: the running flow rebuilds its
       state from the frame's data with :func:`rebuild_state` -- the very function a resume
       calls on the data read back -- so continuing in memory and continuing from the file run
       the same code on the same bits.

    A scheme keeps the protocol when (a) :meth:`step` and :meth:`suggest_dt` read nothing but
    (1)-(3); (b) :meth:`state_dict` returns every attribute of (3) as numbers or arrays whose
    shapes and dtypes stay fixed during a run (``nan`` stands for "not set yet"), and
    :meth:`load_state_dict` restores them exactly; (c) :meth:`init_from_frame` rebuilds the
    state from ``(policy, params, t)`` deterministically, evaluating through ``self.evaluate``;
    (d) random numbers come from generators seeded by an option and a counter kept in
    ``params`` or :meth:`state_dict` (as ``wppg`` does with ``default_rng([seed, step])``),
    never from a generator object that advances across steps. The base class stores the
    step-size controller shared by the adaptive schemes (``dt_prev``: the last accepted step,
    which bounds the next one); a scheme with more state extends both methods and calls
    ``super()``. ``tests/flows/test_trajectory.py`` checks every registered scheme.

    Parameters
    ----------
    mdp : MDP
    objective : Discounted or Average
    reuse_factorization : bool
        Warm-start each exact evaluation with the previous factorization.
    """

    name: str | None = None
    #: last accepted step of the adaptive step control (None before the first step)
    _dt_prev: float | None = None
    #: whether the scheme moves in continuous time (dt is a time step) or iterates (dt = step size)
    needs_actions: bool = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _checked_init(cls.__dict__["__init__"])
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self, mdp, objective, reuse_factorization: bool = True, **options):
        where = f"scheme {self.name!r}"
        _check_mdp(mdp, where)
        _check_objective(objective)
        reuse_factorization = validation.boolean(reuse_factorization, "reuse_factorization", where)
        if self.needs_actions:
            mdp.require_actions(f"the '{self.name}' scheme")
        if options:
            validation.options(options, {where: scheme_options(type(self))}, where, what="option")
        self.mdp = mdp
        self.objective = objective
        self.tau = float(objective.entropy)
        self.evaluate = Evaluator(mdp, objective, reuse=reuse_factorization)
        self.stats = {"steps": 0, "rejected": 0}

    def initial_masses(self, policy) -> np.ndarray:
        """The validated masses ``(nS, nA)`` of an initial policy (a Policy or an array), checked
        as user input (finite, >= 0, rows summing to 1; nothing is renormalized)."""
        where = f"scheme {self.name!r}"
        if isinstance(policy, Policy):
            if (policy.actions is not None and self.mdp.actions is not None
                    and policy.actions != self.mdp.actions):
                raise ValidationError(f"{where}: the initial policy's action grid {policy.actions} "
                                      f"differs from the MDP's {self.mdp.actions}")
            policy = policy.masses
        return validation.masses(policy, self.mdp.n_states, self.mdp.n_actions,
                                 "initial policy masses", where)

    # -- to implement ------------------------------------------------------------------
    def init(self, policy, t0: float = 0.0) -> FlowState:
        masses = self.initial_masses(policy)
        return FlowState(t0, masses, self.evaluate(masses))

    def init_from_frame(self, policy, params: dict, t0: float) -> FlowState:
        """Rebuild a state from a stored frame (a restart point, see the class docstring);
        schemes with their own representation override this to use ``params``."""
        return self.init(policy, t0=t0)

    # -- restart protocol -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Scheme state (beyond the :class:`FlowState`) that the next step depends on.

        Returns a dict ``name -> float or ndarray``; shapes and dtypes stay fixed during a run
        (they are stored with every frame of ``storage=``). The base class returns the adaptive
        step control's last accepted step, ``{"dt_prev": dt}`` (``nan`` before the first step).
        """
        return {"dt_prev": np.nan if self._dt_prev is None else float(self._dt_prev)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (bit for bit)."""
        dt = float(np.asarray(state.get("dt_prev", np.nan)))
        self._dt_prev = None if np.isnan(dt) else dt

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


class ProposedStep:
    """Restart protocol of a scheme whose step controller proposes the next step ``_dt_next``
    (``None`` before the first): stored as ``"dt_next"`` (``nan`` for ``None``) beside the base
    class's ``"dt_prev"``. Mix in before :class:`Scheme`."""

    def state_dict(self) -> dict:
        out = super().state_dict()
        out["dt_next"] = np.nan if self._dt_next is None else float(self._dt_next)
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        h = float(np.asarray(state.get("dt_next", np.nan)))
        self._dt_next = None if np.isnan(h) else h


def _check_option(where: str, name: str, value, param: inspect.Parameter):
    """Type check of a scheme option from its annotation (or its default's type)."""
    ann = param.annotation if isinstance(param.annotation, str) else getattr(param.annotation, "__name__", "")
    ann = ann.replace(" ", "") if ann is not inspect.Parameter.empty else ""
    parts = set(ann.split("|")) if ann else set()
    default = param.default
    if not parts and default is not inspect.Parameter.empty and default is not None:
        parts = {type(default).__name__}
    none = "None" in parts or default is None
    parts.discard("None")
    if value is None and none:
        return
    if parts == {"bool"}:
        validation.boolean(value, f"option {name}", where)
    elif parts == {"int"}:
        validation.integer(value, f"option {name}", where, low=0 if name == "seed" else None)
    elif parts <= {"float", "int"} and parts:
        validation.real(value, f"option {name}", where)
    elif parts == {"str"} and not isinstance(value, str):
        raise ValidationError(f"{where}: option {name} must be a string, got {validation.describe(value)}")


def _checked_init(init):
    """Wrap a scheme's ``__init__`` so that every option is type-checked before it runs (from
    its annotation), whatever scheme is added later."""
    sig = inspect.signature(init)

    def __init__(self, *args, **kwargs):
        try:
            bound = sig.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise ValidationError(f"scheme {type(self).name!r}: {exc}") from None
        for name, value in bound.arguments.items():
            p = sig.parameters[name]
            if name in ("self", "mdp", "objective") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            _check_option(f"scheme {type(self).name!r}", name, value, p)
        init(self, *args, **kwargs)

    __init__.__wrapped__ = init
    __init__.__doc__ = init.__doc__
    return __init__


def scheme_options(scheme, defaults: bool = False):
    """The options a scheme takes (its constructor keywords, its base classes' included):
    their names, or with ``defaults`` a dict of their default values."""
    cls = get_scheme(scheme)
    out = {}
    for klass in reversed(cls.__mro__):
        init = klass.__dict__.get("__init__")
        if init is None or not issubclass(klass, Scheme):
            continue
        init = getattr(init, "__wrapped__", init)
        for name, p in inspect.signature(init).parameters.items():
            if name in ("self", "mdp", "objective") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            out[name] = None if p.default is inspect.Parameter.empty else p.default
    return out if defaults else sorted(out)


def frame_logs(where: str, logs_name: str, params: dict, shape: tuple,
               extra: tuple = ()) -> tuple:
    """The carried logs and support of a restart frame (pmd's ``log_masses``, wpo's
    ``log_weights``), checked: ``(logs, support, arrays)`` with ``logs`` finite floats,
    ``support`` boolean with a true entry in every row, and ``arrays`` every named entry of
    ``params`` (also those of ``extra``) as an array of ``shape``. Raises ``ValidationError``
    naming the scheme (``where``), the field and the place."""
    arrays = {}
    for name in (logs_name, "support") + tuple(extra):
        a = np.asarray(params.get(name, np.empty(0)))
        if a.shape != tuple(shape):
            raise ValidationError(f"{where}: the frame's {name} must be an array {tuple(shape)}, "
                                  f"got shape {a.shape}")
        arrays[name] = a
    logs, support = arrays[logs_name].astype(float), arrays["support"]
    if not np.all(np.isfinite(logs)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(logs))[0])
        raise ValidationError(f"{where}: the frame's {logs_name} must be finite, got "
                              f"{float(logs[idx])!r} at {idx}")
    if not np.all((support == 0) | (support == 1)):
        raise ValidationError(f"{where}: the frame's support must hold 0 or 1")
    support = support == 1
    if not np.all(np.any(support, axis=1)):
        s = int(np.flatnonzero(~np.any(support, axis=1))[0])
        raise ValidationError(f"{where}: the frame's support of state {s} is empty")
    return logs, support, arrays


class FixedPointModel:
    """Stands in for the MDP in :meth:`~wgflow.evaluation.Evaluation.q_at` at points fixed for a
    whole run (the action cell centres of every state): the model evaluated there once -- its
    next-state stencils, their action derivatives and the costs, which do not depend on the
    policy -- is reused every step (the model evaluation is the expensive part of ``q_at``)."""

    def __init__(self, model_eval):
        self._me = model_eval

    def evaluate_model(self, state_index, actions):
        return self._me


def rebuild_state(scheme: Scheme, t: float, masses: np.ndarray, params: dict,
                  scheme_state: dict) -> FlowState:
    """The state of a restart point: the one function both a running flow (at each stored frame)
    and a resume (on the frame read back) call, so both continue from identical bits.

    Restores ``scheme_state`` (:meth:`Scheme.state_dict`), restarts the evaluator (no reused
    factorization) and rebuilds the state with :meth:`Scheme.init_from_frame`.
    """
    scheme.load_state_dict(scheme_state)
    scheme.evaluate.restart()
    pol = Policy(masses, scheme.mdp.actions, scheme.mdp.states, validate=False)
    state = scheme.init_from_frame(pol, {k: np.array(v, copy=True) for k, v in params.items()},
                                   float(t))
    scheme.load_state_dict(scheme_state)   # init_from_frame may touch it; the frame's state wins
    return state


def get_scheme(name) -> type:
    """The scheme class registered as ``name`` (or ``name`` itself if it is a Scheme subclass)."""
    if isinstance(name, type) and issubclass(name, Scheme):
        return name
    if not isinstance(name, str):
        raise ValidationError(f"flow: scheme must be a name ({', '.join(scheme_names())}) or a Scheme "
                              f"subclass, got {validation.describe(name)}")
    validation.choice(name, "scheme", scheme_names(), "flow")
    return _REGISTRY[name]


def scheme_names() -> list:
    return sorted(_REGISTRY)
