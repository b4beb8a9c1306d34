r"""Environments for learning, all speaking wgflow's language (states, actions, **costs**).

* :class:`ModelEnv` samples a wgflow problem's *continuous* model (the drift, noise and cost the
  grid MDP was discretized from), so a policy learned on it can be projected on the grid and
  evaluated exactly. One step: ``s' = drift(s, a) + noise * xi``; periodic axes wrap, other axes
  are clipped to the state box (the continuous analogue of the grid keeping mass at the outermost
  cell). A state whose position is terminal (``model.terminal``) costs 0 and moves to a cell drawn
  from ``model.reset`` (its centre) -- or, for absorbing problems, ends the episode
  (``terminated``: its future cost is 0, as in the grid MDP).

  ``objective="discounted"``: episodes start from the uniform law on the state box (the grid
  objective's default ``mu_0``, uniform over cells) and are truncated after ``horizon`` steps
  (truncation is not termination: the critic bootstraps). ``objective="average"``: one long
  trajectory per parallel copy, never reset (the ergodic formulation).

* :class:`GymEnv` wraps a gymnasium environment; ``cost = -reward``. For Pendulum-v1 and
  MountainCarContinuous-v0 the observation is mapped to the wgflow problem's state (pendulum:
  ``(atan2(sin, cos), theta_dot)``), so one policy runs in both and is evaluated exactly too.

* :class:`SolutionAgent` runs an exact grid solution in a gymnasium environment: its
  deterministic action per state cell (the mean action of the solution's law), interpolated
  multilinearly over the state grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ValidationError
from ._torch import require_gymnasium

__all__ = ["ModelEnv", "GymEnv", "GymAdapter", "GYM_ADAPTERS", "make_env", "SolutionAgent",
           "gym_evaluate", "EvalResult", "training_seed", "TRAINING_SEED_BASE"]


# ---------------------------------------------------------------------------------------------
# continuous model of a wgflow problem
# ---------------------------------------------------------------------------------------------
class ModelEnv:
    """Vectorized sampler of a wgflow problem's continuous model (``n_envs`` copies).

    Parameters
    ----------
    model : wgflow.mdp.DynamicsModel
        e.g. ``wg.problems.model("pendulum")`` or ``mdp.model`` of an MDP built from dynamics.
    objective : {"discounted", "average"}
    horizon : int
        Truncation of discounted episodes (ignored for ``"average"``).
    n_envs : int
    seed : int
    initial : array ``(nS,)``, optional
        Initial law over state cells (a state is drawn uniformly inside the drawn cell);
        default uniform on the box.

    Examples
    --------
    >>> import wgflow as wg
    >>> env = ModelEnv(wg.problems.model("pendulum"), seed=0)
    >>> s = env.reset()
    >>> s2, cost, terminated, truncated = env.step(np.zeros((1, 1)))
    >>> s2.shape, cost.shape
    ((1, 2), (1,))
    """

    def __init__(self, model, objective: str = "discounted", horizon: int = 200, n_envs: int = 1,
                 seed: int = 0, initial=None):
        from ..mdp import DynamicsModel
        if not isinstance(model, DynamicsModel):
            raise ValidationError("ModelEnv needs a continuous model (a problem built from dynamics); "
                                  f"got {type(model).__name__}")
        if objective not in ("discounted", "average"):
            raise ValidationError(f"objective must be 'discounted' or 'average', got {objective!r}")
        if int(horizon) < 1 or int(n_envs) < 1:
            raise ValidationError(f"horizon and n_envs must be >= 1, got {horizon}, {n_envs}")
        self.model = model
        self.states = model.states
        self.actions = model.actions
        self.objective = objective
        self.horizon = int(horizon)
        self.n_envs = int(n_envs)
        self.rng = np.random.default_rng(seed)
        self.initial = None
        if initial is not None:
            from ..mdp import _check_prob_vector
            self.initial = _check_prob_vector(initial, self.states.size, "initial")
        self.state = None
        self.t = np.zeros(self.n_envs, dtype=np.int64)
        self.state_bounds = self.states.bounds.copy()
        self.periodic = list(self.states.periodic)
        self.action_low = self.actions.bounds[:, 0].copy()
        self.action_high = self.actions.bounds[:, 1].copy()
        self.state_dim, self.action_dim = self.states.ndim, self.actions.ndim

    # -- laws
    def _uniform_in_cells(self, cells):
        lo = self.states.bounds[:, 0]
        h = self.states.spacing
        sub = np.stack(np.unravel_index(cells, self.states.shape), axis=1)
        return lo + (sub + self.rng.random(sub.shape)) * h

    def sample_initial(self, n):
        if self.initial is None:
            b = self.states.bounds
            return b[:, 0] + self.rng.random((n, b.shape[0])) * (b[:, 1] - b[:, 0])
        return self._uniform_in_cells(self.rng.choice(self.states.size, size=n, p=self.initial))

    def reset(self):
        """Start all copies from the initial law; returns the states ``(n_envs, ds)``."""
        self.state = self.sample_initial(self.n_envs)
        self.t[:] = 0
        return self.state.copy()

    def _terminal(self, s):
        if self.model.terminal is None:
            return np.zeros(s.shape[0], dtype=bool)
        return np.asarray(self.model.terminal(s), dtype=bool).reshape(-1)

    def step(self, a):
        """Advance every copy; returns ``(next_state, cost, terminated, truncated)``.

        ``next_state`` is the state that follows ``(state, a)`` (before any reset of a finished
        episode: call :meth:`reset_done` after storing the transition).
        """
        a = np.asarray(a, dtype=float).reshape(self.n_envs, self.action_dim)
        a = np.clip(a, self.action_low, self.action_high)
        s = self.state
        term_now = self._terminal(s)
        m = self.model._drift(s, a)
        if np.any(self.model.noise > 0):
            m = m + self.model.noise * self.rng.standard_normal(m.shape)
        nxt = self.states.wrap(m)
        per = np.asarray(self.periodic)
        b = self.states.bounds
        nxt[:, ~per] = np.clip(nxt[:, ~per], b[~per, 0], b[~per, 1])
        cost = self.model._cost(s, a)
        if self.model.entry_cost != 0.0:
            # charged once, on the step that enters a terminal state (the grid MDP charges it on
            # the probability the step deposits there: DynamicsModel.entry_cost)
            cost = cost + self.model.entry_cost * (~term_now & self._terminal(nxt))
        terminated = np.zeros(self.n_envs, dtype=bool)
        if np.any(term_now):
            cost = np.where(term_now, 0.0, cost)
            if self.model.reset is not None:
                cells = self.rng.choice(self.states.size, size=int(term_now.sum()), p=self.model.reset)
                nxt[term_now] = self.states.centers[cells]
            else:
                nxt[term_now] = s[term_now]
                terminated = term_now.copy()        # absorbing, cost 0 forever: V = 0
        self.t += 1
        truncated = (self.t >= self.horizon) & ~terminated if self.objective == "discounted" \
            else np.zeros(self.n_envs, dtype=bool)
        self.state = nxt
        return nxt.copy(), cost, terminated, truncated

    def reset_done(self, done):
        """Restart the copies flagged in ``done`` (discounted episodes); returns the states."""
        done = np.asarray(done, dtype=bool)
        if np.any(done):
            self.state[done] = self.sample_initial(int(done.sum()))
            self.t[done] = 0
        return self.state.copy()

    # -- checkpoints
    def get_state(self) -> dict:
        return {"state": None if self.state is None else self.state.copy(), "t": self.t.copy(),
                "rng": self.rng.bit_generator.state}

    def set_state(self, d: dict):
        self.state = None if d["state"] is None else np.array(d["state"])
        self.t = np.array(d["t"])
        self.rng.bit_generator.state = d["rng"]


# ---------------------------------------------------------------------------------------------
# gymnasium
# ---------------------------------------------------------------------------------------------
@dataclass
class GymAdapter:
    """How a gymnasium environment's observations map to a wgflow problem's states."""

    problem: str
    obs_to_state: Callable
    state_bounds: np.ndarray
    periodic: list


def _pendulum_obs(obs):
    obs = np.atleast_2d(obs)
    return np.stack([np.arctan2(obs[:, 1], obs[:, 0]), obs[:, 2]], axis=1)


def _identity_obs(obs):
    return np.atleast_2d(np.asarray(obs, dtype=float))


#: gymnasium environments with a wgflow grid counterpart
GYM_ADAPTERS = {
    "Pendulum-v1": GymAdapter("pendulum", _pendulum_obs, np.array([[-np.pi, np.pi], [-8.0, 8.0]]),
                              [True, False]),
    "MountainCarContinuous-v0": GymAdapter("mountain_car", _identity_obs,
                                           np.array([[-1.2, 0.6], [-0.07, 0.07]]), [False, False]),
}


#: an observation bound this large (gymnasium's float32 max) means an unbounded axis
_UNBOUNDED = 1e30

#: training episodes are reset with seeds from here on; evaluation episodes use smaller ones
TRAINING_SEED_BASE = 2 ** 31


def training_seed(seed: int, episode: int) -> int:
    """The gymnasium reset seed of training episode ``episode`` of a run with seed ``seed``.

    ``seed + episode`` would replay the evaluation episodes (seeds ``0..n-1``) during training and
    give runs with seeds 0 and 1 the same episodes shifted by one; a hash of ``(seed, episode)``
    above :data:`TRAINING_SEED_BASE` gives neither.
    """
    word = int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1, dtype=np.uint32)[0])
    return TRAINING_SEED_BASE + (word >> 1)


def observation_box(space) -> np.ndarray:
    """Bounds ``(ds, 2)`` of a gymnasium Box observation space, unbounded axes as ``-+inf``.

    gymnasium writes an unbounded axis as +-float32 max (CartPole's velocities); mapping that
    "box" affinely to ``[-1, 1]`` would squash every state to one feature value.
    """
    b = np.stack([np.asarray(space.low, float).reshape(-1), np.asarray(space.high, float).reshape(-1)],
                 axis=1)
    b[:, 0] = np.where(b[:, 0] <= -_UNBOUNDED, -np.inf, b[:, 0])
    b[:, 1] = np.where(b[:, 1] >= _UNBOUNDED, np.inf, b[:, 1])
    return b


class GymEnv:
    """A gymnasium environment seen through wgflow's conventions (single copy, ``cost = -reward``).

    Episode ``k`` is reset with the seed :func:`training_seed` ``(seed, k)``, so a run is
    reproducible and a checkpoint needs only the episode counter and the classic-control physical
    state. Those seeds are at least ``2**31``, never one of the evaluation seeds of
    :func:`gym_evaluate` (``seed + i``, small): a return is measured on start states that training
    did not see.
    """

    def __init__(self, env_id: str, seed: int = 0):
        gym = require_gymnasium()
        self.env_id = env_id
        try:
            self.env = gym.make(env_id)
        except Exception as exc:        # gymnasium raises its own error types
            raise ValidationError(f"gymnasium cannot make {env_id!r}: {exc}") from exc
        sp_a = self.env.action_space
        if not isinstance(sp_a, gym.spaces.Box):
            raise ValidationError(f"{env_id} has a {type(sp_a).__name__} action space; wgflow.nn needs "
                                  "a continuous Box")
        self.adapter = GYM_ADAPTERS.get(env_id)
        if self.adapter is not None:
            self.state_bounds = self.adapter.state_bounds.copy()
            self.periodic = list(self.adapter.periodic)
        else:
            self.state_bounds = observation_box(self.env.observation_space)
            self.periodic = [False] * self.state_bounds.shape[0]
        self.action_low = np.asarray(sp_a.low, dtype=float).reshape(-1)
        self.action_high = np.asarray(sp_a.high, dtype=float).reshape(-1)
        self.state_dim, self.action_dim = self.state_bounds.shape[0], self.action_low.size
        self.n_envs = 1
        self.objective = "discounted"
        self.seed = int(seed)
        self.episode = 0
        self.state = None

    def observe(self, obs):
        return (self.adapter.obs_to_state(obs) if self.adapter is not None
                else _identity_obs(obs).reshape(1, -1)).astype(float)

    def reset(self):
        obs, _ = self.env.reset(seed=training_seed(self.seed, self.episode))
        self.state = self.observe(obs)
        return self.state.copy()

    def step(self, a):
        a = np.clip(np.asarray(a, dtype=float).reshape(self.action_dim), self.action_low, self.action_high)
        obs, reward, terminated, truncated, _ = self.env.step(a.astype(self.env.action_space.dtype))
        nxt = self.observe(obs)
        self.state = nxt
        return nxt.copy(), np.array([-float(reward)]), np.array([bool(terminated)]), np.array([bool(truncated)])

    def reset_done(self, done):
        if bool(np.asarray(done).reshape(-1)[0]):
            self.episode += 1
            return self.reset()
        return self.state.copy()

    def get_state(self) -> dict:
        u = self.env.unwrapped
        if not hasattr(u, "state"):
            raise ValidationError(f"checkpoints of {self.env_id} need a classic-control environment "
                                  "(an 'unwrapped.state' attribute)")
        return {"episode": self.episode, "phys": np.array(u.state, dtype=float).copy(),
                "elapsed": _elapsed(self.env),
                "np_random": u.np_random.bit_generator.state, "state": self.state.copy()}

    def set_state(self, d: dict):
        self.episode = int(d["episode"])
        self.env.reset(seed=training_seed(self.seed, self.episode))
        u = self.env.unwrapped
        u.state = np.array(d["phys"], dtype=u.state.dtype if hasattr(u.state, "dtype") else float)
        u.np_random.bit_generator.state = d["np_random"]
        _set_elapsed(self.env, d["elapsed"])
        self.state = np.array(d["state"])

    def close(self):
        self.env.close()


def _time_limit(env):
    e = env
    while e is not None:
        if type(e).__name__ == "TimeLimit":
            return e
        e = getattr(e, "env", None)
    return None


def _elapsed(env):
    tl = _time_limit(env)
    return None if tl is None else int(tl._elapsed_steps)


def _set_elapsed(env, value):
    tl = _time_limit(env)
    if tl is not None and value is not None:
        tl._elapsed_steps = int(value)


def make_env(name: str, params: dict | None = None, objective: str = "discounted", seed: int = 0,
             horizon: int = 200, n_envs: int = 1):
    """A :class:`ModelEnv` for a wgflow problem name, a :class:`GymEnv` for a gymnasium id."""
    from .. import problems
    if name in problems.names():
        model = problems.model(name, **(params or {}))
        if model is None:
            raise ValidationError(f"problem {name!r} is tabular (no continuous model to sample); "
                                  "wgflow.nn learns on problems built from dynamics")
        return ModelEnv(model, objective=objective, horizon=horizon, n_envs=n_envs, seed=seed)
    if objective != "discounted":
        raise ValidationError("gymnasium environments are trained with the discounted objective")
    if n_envs != 1:
        raise ValidationError("gymnasium environments run one copy (n_envs=1)")
    return GymEnv(name, seed=seed)


# ---------------------------------------------------------------------------------------------
# reference agent and evaluation in gymnasium
# ---------------------------------------------------------------------------------------------
class SolutionAgent:
    """An exact grid solution as an agent: states ``(n, ds)`` -> actions ``(n, da)``.

    The action of a state cell is the mean of the solution's action law in that cell (the cell
    centre of the chosen action for a deterministic solution); off-centre states get the
    multilinear interpolation over the state grid (periodic axes wrap; beyond the outermost
    centres the outermost value is kept).
    """

    def __init__(self, solution_or_policy):
        pol = getattr(solution_or_policy, "policy", solution_or_policy)
        if pol.states is None or pol.actions is None:
            raise ValidationError("SolutionAgent needs a policy with state and action grids")
        self.grid = pol.states
        self.values = pol.mean()

    def __call__(self, states):
        return self.grid.interpolate(self.values, self.grid.wrap(self.grid.as_points(states)))


@dataclass
class EvalResult:
    """Returns of gymnasium episodes: ``returns`` per episode, their ``mean`` and ``std`` (ddof 0)."""

    returns: np.ndarray
    discounted: np.ndarray
    seeds: np.ndarray
    env_id: str
    diagnostics: dict

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def summary(self) -> str:
        return (f"{self.env_id}: mean return {self.mean:.2f} +- {self.std:.2f} over "
                f"{self.returns.size} episodes (seeds {int(self.seeds[0])}..{int(self.seeds[-1])})")


def gym_evaluate(agent, env_id: str, episodes: int = 100, seed: int = 0, gamma: float = 0.99,
                 progress: bool = False) -> EvalResult:
    """Run ``agent`` (states ``(n, ds)`` -> actions ``(n, da)``) in gymnasium, episodes in lockstep.

    Episode ``i`` is reset with seed ``seed + i`` (below ``2**31``: training episodes of
    :class:`GymEnv` use larger seeds, so these start states were not trained on). Observations
    are mapped to wgflow states for the environments in :data:`GYM_ADAPTERS` (raw observations
    otherwise); actions are clipped to the action box. Returns the undiscounted returns and the
    ``gamma``-discounted ones.
    """
    from .. import validation
    gym = require_gymnasium()
    episodes = validation.integer(episodes, "episodes", "gym_evaluate", low=1)
    seed = validation.integer(seed, "seed", "gym_evaluate", low=0, high=TRAINING_SEED_BASE - episodes)
    gamma = validation.real(gamma, "gamma", "gym_evaluate", low=0.0, high=1.0)
    envs = [gym.make(env_id) for _ in range(episodes)]
    adapter = GYM_ADAPTERS.get(env_id)
    obs_map = adapter.obs_to_state if adapter is not None else _identity_obs
    low = np.asarray(envs[0].action_space.low, dtype=float)
    high = np.asarray(envs[0].action_space.high, dtype=float)
    dtype = envs[0].action_space.dtype
    obs = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    alive = np.ones(episodes, dtype=bool)
    ret = np.zeros(episodes)
    disc = np.zeros(episodes)
    k = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(desc=f"{env_id} episodes", total=episodes, leave=False)
    while alive.any():
        idx = np.nonzero(alive)[0]
        states = np.concatenate([obs_map(obs[i]).reshape(1, -1) for i in idx], axis=0)
        acts = np.asarray(agent(states), dtype=float).reshape(idx.size, -1)
        acts = np.clip(acts, low, high)
        for j, i in enumerate(idx):
            o, r, term, trunc, _ = envs[i].step(acts[j].astype(dtype))
            obs[i] = o
            ret[i] += r
            disc[i] += gamma ** k * r
            if term or trunc:
                alive[i] = False
                if bar is not None:
                    bar.update(1)
        k += 1
    for e in envs:
        e.close()
    if bar is not None:
        bar.close()
    return EvalResult(ret, disc, seed + np.arange(episodes), env_id, {"gamma": gamma, "max_steps": k})
