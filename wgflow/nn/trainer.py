r"""Off-policy actor-critic training with the WPO, WPPG and reparameterized actor updates.

One loop for every algorithm (costs minimized):

1. act: WPO and ``reparam`` sample their squashed Gaussian, WPPG executes ``g_theta(s, eps)``;
   every algorithm adds Gaussian noise of standard deviation ``exploration_std * r`` (``r`` the
   action box's half-width; for WPPG the paper's convolution of the executed action, default 0.1;
   default 0 for the others) and clips to the box; the first ``learning_starts`` steps act
   uniformly;
2. store ``(s, a, cost, s', terminated)``; WPPG stores ``cost - tau * H(s)`` with ``H`` the plug-in
   mixture entropy (:func:`~wgflow.nn.algorithms.mixture_entropy`, bandwidth = the exploration
   noise);
3. critic: twin ``Q`` of the cost with Polyak-averaged targets,
   ``y = c + gamma (1 - terminated) mean_k max(Q'_1, Q'_2)(s', a'_k)``, ``a'_k ~ pi(.|s')``
   (``reparam`` adds ``alpha log pi(a'|s')``). Average cost (the ergodic formulation, one long
   trajectory): ``y = c - rho + mean_k max(Q'_1, Q'_2)(s', a'_k) - m`` where ``rho`` is the gain
   estimated along the trajectory (running mean of the costs, then an exponential average with
   rate ``gain_rate``) and ``m`` the batch mean of ``max(Q'_1, Q'_2)(s, a)``: relative values
   centred on the replay law (which approximates the stationary law), so the additive constant of
   the relative ``Q`` stays bounded;
4. actor: :func:`~wgflow.nn.algorithms.wpo_loss`, :func:`~wgflow.nn.algorithms.wppg_loss` or
   :func:`~wgflow.nn.algorithms.reparam_loss` with the critic's action gradient.

Every ``eval_every`` steps the learning curve gets the exact ``J`` of the deterministic policy on
the grid problem (when there is one) and the mean return of ``eval_episodes`` gymnasium episodes
(when the problem has a gymnasium twin). Every ``checkpoint_every`` steps the whole state
(networks, optimizers, target networks, replay buffer, environment, torch/numpy/python random
states, curve and clocks) is written to ``<output>.ckpt``; a resumed run continues exactly as an
uninterrupted one.
"""
from __future__ import annotations

import math
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import MissingFileError, ValidationError
from ._torch import require_torch, resolve_device
from .algorithms import ALGORITHMS, average_cost_target, gaussian_kl, mixture_entropy, reparam_loss, wpo_loss, wppg_loss, wppg_target
from .envs import GYM_ADAPTERS, ModelEnv, gym_evaluate, make_env
from .networks import ImplicitPolicy, SquashedGaussianPolicy, TwinQ
from .replay import ReplayBuffer
from .results import TrainResult, save_result

torch = require_torch()

__all__ = ["TrainConfig", "Trainer", "TrainResult", "train"]


@dataclass
class TrainConfig:
    """Hyperparameters (defaults sized for 2-D states, 1-D actions on a CPU).

    Published values for comparison (docs/nn.md): WPPG K=32, eta=0.1, tau=1e-4, lr 3e-4, batch 256,
    Polyak 0.005, (256, 256) MLPs; acme WPO N=20 samples, lr 1e-4, KL penalty on.
    """

    algo: str = "wpo"
    steps: int = 30000
    seed: int = 0
    objective: str = "discounted"
    gamma: float = 0.99
    hidden: tuple = (256, 256)
    critic_hidden: tuple = (256, 256)
    batch_size: int = 256
    buffer_size: int = 1_000_000
    learning_starts: int = 1000
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    polyak: float = 0.005
    updates_per_step: int = 1
    horizon: int = 200
    n_envs: int = 1
    next_samples: int = 1
    grad_clip: float = 0.0
    # WPO
    wpo_samples: int = 8
    wpo_space: str = "pre_tanh"
    wpo_squash: str = "identity"
    wpo_preconditioner: bool = True
    kl_mean: float = 0.0
    kl_std: float = 0.0
    kl_period: int = 100
    # WPPG
    wppg_samples: int = 8
    eta: float = 0.1
    tau: float = 1e-4
    exploration_std: float | None = None
    entropy_centers: int = 16
    entropy_samples: int = 16
    latent_dim: int = 0
    # reparameterized baseline (SAC)
    init_alpha: float = 0.2
    target_entropy: float = float("nan")
    # ergodic
    gain_rate: float = 1e-3
    # bookkeeping
    eval_every: int = 2000
    eval_episodes: int = 10
    final_episodes: int = 50
    checkpoint_every: int = 5000
    device: str = "auto"
    threads: int = 0

    def __post_init__(self):
        from .. import validation
        where = "TrainConfig"
        if self.algo not in ALGORITHMS:
            raise ValidationError(f"unknown algorithm {self.algo!r}; choose from {ALGORITHMS}")
        self.hidden = self._layers("hidden")
        self.critic_hidden = self._layers("critic_hidden")
        # integers are checked as integers: a float would be truncated (horizon=1.5) or, as a
        # period, never divide a step count (eval_every=2.5 gives no learning-curve point)
        for name in ("steps", "batch_size", "buffer_size", "updates_per_step", "horizon", "n_envs",
                     "next_samples", "wpo_samples", "wppg_samples", "entropy_centers",
                     "entropy_samples", "eval_episodes", "kl_period"):
            setattr(self, name, validation.integer(getattr(self, name), name, where, low=1))
        for name in ("seed", "learning_starts", "eval_every", "checkpoint_every", "final_episodes",
                     "threads", "latent_dim"):
            setattr(self, name, validation.integer(getattr(self, name), name, where, low=0))
        if self.objective not in ("discounted", "average"):
            raise ValidationError(f"objective must be 'discounted' or 'average', got {self.objective!r}")
        self.gamma = validation.real(self.gamma, "gamma", where, low=0.0, high=1.0, high_open=True)
        if self.wpo_space not in ("pre_tanh", "action"):
            raise ValidationError(f"wpo_space must be 'pre_tanh' or 'action', got {self.wpo_space!r}")
        if self.wpo_squash not in ("identity", "cbrt"):
            raise ValidationError(f"wpo_squash must be 'identity' or 'cbrt', got {self.wpo_squash!r}")
        self.wpo_preconditioner = validation.boolean(self.wpo_preconditioner, "wpo_preconditioner", where)
        for name in ("actor_lr", "critic_lr", "eta", "init_alpha", "gain_rate"):
            setattr(self, name, validation.real(getattr(self, name), name, where, low=0.0, low_open=True))
        if self.exploration_std is None:
            self.exploration_std = 0.1 if self.algo.startswith("wppg") else 0.0
        for name in ("tau", "kl_mean", "kl_std", "grad_clip", "exploration_std"):
            setattr(self, name, validation.real(getattr(self, name), name, where, low=0.0))
        self.polyak = validation.real(self.polyak, "polyak", where, low=0.0, high=1.0, low_open=True)
        if self.target_entropy is None:
            self.target_entropy = float("nan")
        if not (isinstance(self.target_entropy, float) and math.isnan(self.target_entropy)):
            self.target_entropy = validation.real(self.target_entropy, "target_entropy", where)
        if self.algo.startswith("wppg") and self.tau > 0 and self.exploration_std == 0:
            # the entropy estimate's bandwidth is the executed-action noise: without it the
            # entropy term tau H would silently be 0
            raise ValidationError(f"{self.algo} with tau={self.tau} > 0 needs exploration_std > 0 "
                                  "(the bandwidth of its entropy estimate); set tau=0 to train "
                                  "without the entropy term")
        # options of one algorithm whose default switches them off: set for another, they would
        # be ignored
        if self.algo != "wpo" and (self.kl_mean > 0 or self.kl_std > 0):
            raise ValidationError(f"kl_mean and kl_std are WPO's KL penalty; {self.algo} has none "
                                  f"(got kl_mean={self.kl_mean}, kl_std={self.kl_std})")
        if self.algo != "wppg-implicit" and self.latent_dim > 0:
            raise ValidationError(f"latent_dim sets the implicit policy of wppg-implicit; {self.algo} "
                                  f"has a Gaussian policy (got latent_dim={self.latent_dim})")
        if not isinstance(self.device, str):
            raise ValidationError(f"device must be a string ('auto', 'cpu', 'cuda', ...), got "
                                  f"{validation.describe(self.device)}")

    def _layers(self, name):
        from .. import validation
        value = getattr(self, name)
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ValidationError(f"TrainConfig: {name} must be a sequence of layer widths, e.g. "
                                  f"(256, 256), got {validation.describe(value)}")
        return tuple(validation.integer(h, f"{name} width", "TrainConfig", low=1) for h in value)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"], d["critic_hidden"] = list(self.hidden), list(self.critic_hidden)
        if math.isnan(d["target_entropy"]):
            d["target_entropy"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("target_entropy", 0.0) is None:
            d["target_entropy"] = float("nan")
        return cls(**d)


# -------------------------------------------------------------------------------------------
def _gym_twin(problem: str, params: dict):
    """The gymnasium id whose physics equals ``problem`` with ``params`` (None if none)."""
    from .. import problems
    for gid, ad in GYM_ADAPTERS.items():
        if ad.problem != problem:
            continue
        defaults = problems.parameters(problem)
        grid_keys = {k for k in defaults if k.startswith("n_")}
        same = all(params.get(k, v) == v for k, v in defaults.items() if k not in grid_keys)
        if same:
            try:
                import gymnasium  # noqa: F401
            except ImportError:
                return None
            return gid
    return None


def _plain(value):
    """``value`` with numpy scalars and arrays turned into Python numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _curve_keys():
    return ("step", "wall", "cpu", "J_exact", "return_mean", "return_std", "gain_estimate",
            "critic_loss", "actor_loss", "mean_std")


class Trainer:
    """Stateful trainer; see the module documentation. Use :func:`train` for the common case.

    Parameters
    ----------
    env_name : str
        A wgflow problem built from dynamics (``wgflow problems``) or a gymnasium id.
    config : TrainConfig
    params : dict, optional
        Problem parameters (grid sizes set the exact evaluation's grid; the other parameters set
        the physics). For a gymnasium id with a wgflow twin they choose the evaluation grid.
    output : path, optional
        Results file; checkpoints go to ``<output>.ckpt``.
    progress : bool or None
        tqdm progress bar (None: when stderr is a terminal or in a Jupyter notebook).
    """

    def __init__(self, env_name: str, config: TrainConfig | None = None, params: dict | None = None,
                 output=None, progress: bool | None = None):
        from .. import problems
        self.config = cfg = config or TrainConfig()
        # numpy scalars and arrays become Python values: the results file stores the parameters
        # as JSON, which numpy types would break after the whole run
        self.params = {str(k): _plain(v) for k, v in dict(params or {}).items()}
        self.env_name = env_name
        from .. import validation
        # checked now, not at the first checkpoint thousands of steps later
        self.output = validation.output_path(output, "output", "Trainer") if output is not None else None
        from .. import _progress
        self.progress = _progress.enabled(progress)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.device = resolve_device(cfg.device)
        self.env = make_env(env_name, self.params, cfg.objective, seed=cfg.seed, horizon=cfg.horizon,
                            n_envs=cfg.n_envs)
        if isinstance(self.env, ModelEnv):
            self.problem = env_name
            self.gym_id = _gym_twin(env_name, self.params) if cfg.objective == "discounted" else None
        else:
            ad = GYM_ADAPTERS.get(env_name)
            self.problem = ad.problem if ad is not None else None
            self.gym_id = env_name
            if self.output is not None and cfg.checkpoint_every and \
                    not hasattr(self.env.env.unwrapped, "state"):
                # said now, not at the first checkpoint thousands of steps later
                raise ValidationError(f"checkpoints of {env_name} need a classic-control environment "
                                      "(an 'unwrapped.state' attribute); train it with "
                                      "checkpoint_every=0 (--checkpoint-every 0)")
            if self.problem is None and self.params:
                raise ValidationError(f"{env_name} has no wgflow grid twin (twins: {sorted(GYM_ADAPTERS)}): "
                                      f"the parameter(s) {sorted(self.params)} would be ignored")
            if self.problem is not None:
                defaults = problems.parameters(self.problem)
                unknown = set(self.params) - set(defaults)
                if unknown:
                    raise ValidationError(f"{self.problem} has no parameter(s) {sorted(unknown)}")
                # gymnasium runs its own physics: only the grid sizes of the exact evaluation may
                # be chosen, or J and J* would belong to another problem than the one trained on
                physics = sorted(k for k, v in self.params.items()
                                 if not k.startswith("n_") and v != defaults[k])
                if physics:
                    raise ValidationError(
                        f"{env_name} runs gymnasium's own physics; the parameter(s) {physics} of "
                        f"{self.problem} would make the exact evaluation that of another problem: "
                        f"give only grid sizes ({sorted(k for k in defaults if k.startswith('n_'))}), "
                        f"or train on the model '{self.problem}' with these parameters")
        # seeds: networks from torch's global generator, everything later from own generators
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.rng = np.random.default_rng([cfg.seed, 1])
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        e = self.env
        geo = (e.state_bounds, e.periodic, e.action_low, e.action_high)
        if cfg.algo == "wppg-implicit":
            self.actor = ImplicitPolicy(*geo, hidden=cfg.hidden, latent_dim=cfg.latent_dim or None)
        else:
            self.actor = SquashedGaussianPolicy(*geo, hidden=cfg.hidden)
        self.critic = TwinQ(*geo, hidden=cfg.critic_hidden)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target = TwinQ(*geo, hidden=cfg.critic_hidden).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.actor_target = None
        if cfg.algo == "wpo" and (cfg.kl_mean > 0 or cfg.kl_std > 0):
            self.actor_target = SquashedGaussianPolicy(*geo, hidden=cfg.hidden).to(self.device)
            self.actor_target.load_state_dict(self.actor.state_dict())
            self.actor_target.requires_grad_(False)
        self.log_alpha = None
        if cfg.algo == "reparam":
            self.log_alpha = torch.tensor(math.log(cfg.init_alpha), device=self.device, requires_grad=True)
            self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.actor_lr)
            self.target_entropy = (-float(e.action_dim) if math.isnan(cfg.target_entropy)
                                   else float(cfg.target_entropy))
        self.buffer = ReplayBuffer(cfg.buffer_size, e.state_dim, e.action_dim)
        self.radius = (e.action_high - e.action_low) / 2.0
        # exact grid problem
        self.mdp = None
        self.J_star = float("nan")
        if self.problem is not None:
            from .. import Average, Discounted, solve
            self.objective = Average() if cfg.objective == "average" else Discounted(gamma=cfg.gamma)
            self.mdp = problems.get(self.problem, **self.params)
            self.J_star = float(solve(self.mdp, self.objective, progress=False).J)
        # state of the run
        self.step = 0
        self.updates = 0
        self.rho = 0.0
        self.obs = None
        self.curve = {k: [] for k in _curve_keys()}
        self.clock = {"train_wall": 0.0, "train_cpu": 0.0, "eval_wall": 0.0, "eval_cpu": 0.0}
        self._last = {"critic_loss": float("nan"), "actor_loss": float("nan"), "mean_std": float("nan")}

    # ------------------------------------------------------------------ helpers
    def _t(self, x):
        return torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    def _randn(self, *shape):
        return torch.randn(shape, generator=self.gen, device=self.device)

    def _noise_dim(self):
        return self.actor.latent_dim if self.actor.kind == "implicit" else self.env.action_dim

    def _sample_actions(self, s, k=None):
        """Policy samples at states ``s`` ``(B, ds)``: ``(a, u, noise)`` of shape ``(k, B, .)``
        (no leading axis when ``k`` is None)."""
        shape = (s.shape[0], self._noise_dim()) if k is None else (k, s.shape[0], self._noise_dim())
        noise = self._randn(*shape)
        a, u = self.actor.sample(s, noise)
        return a, u, noise

    def _entropy_bonus(self, s):
        """WPPG's plug-in entropy estimate at states ``s`` (bandwidth = the exploration noise)."""
        cfg = self.config
        sigma = float(cfg.exploration_std * np.mean(self.radius))
        if cfg.tau == 0 or sigma == 0:
            return np.zeros(s.shape[0])
        with torch.no_grad():
            centers = self._sample_actions(s, cfg.entropy_centers)[0]
            samp = self._sample_actions(s, cfg.entropy_samples)[0]
            samp = samp + sigma * self._randn(*samp.shape)
            return mixture_entropy(centers, samp, sigma).double().cpu().numpy()

    # ------------------------------------------------------------------ acting
    def _act(self, states):
        cfg = self.config
        if self.step < cfg.learning_starts:
            e = self.env
            return e.action_low + self.rng.random((states.shape[0], e.action_dim)) * (e.action_high - e.action_low)
        with torch.no_grad():
            a = self._sample_actions(self._t(states))[0].double().cpu().numpy()
        if cfg.exploration_std > 0:
            a = a + cfg.exploration_std * self.radius * self.rng.standard_normal(a.shape)
        return np.clip(a, self.env.action_low, self.env.action_high)

    def _env_step(self):
        cfg = self.config
        if self.obs is None:
            self.obs = self.env.reset()
        s = self.obs
        a = self._act(s)
        s2, c, term, trunc = self.env.step(a)
        c_store = c
        if cfg.algo.startswith("wppg") and cfg.tau > 0 and self.step >= cfg.learning_starts:
            c_store = c - cfg.tau * self._entropy_bonus(self._t(s))
        self.buffer.add(s, a, c_store, s2, term)
        if cfg.objective == "average":
            n = self.step + 1
            beta = max(cfg.gain_rate, 1.0 / n)
            self.rho = (1.0 - beta) * self.rho + beta * float(np.mean(c))
        done = term | trunc
        self.obs = self.env.reset_done(done) if np.any(done) else s2

    # ------------------------------------------------------------------ updates
    def _update(self):
        cfg = self.config
        s, a, c, s2, term = (self._t(x) for x in self.buffer.sample(self.rng, cfg.batch_size))
        # critic
        with torch.no_grad():
            a2, u2, _ = self._sample_actions(s2, cfg.next_samples)
            q_next = self.critic_target.pessimistic(s2, a2)
            if cfg.algo == "reparam":
                mu2, std2 = self.actor.dist(s2)
                q_next = q_next + self.log_alpha.exp() * self.actor.log_prob(u2, mu2, std2)
            q_next = q_next.mean(0)
            if cfg.objective == "discounted":
                y = c + cfg.gamma * (1.0 - term) * q_next
            else:
                centre = self.critic_target.pessimistic(s, a).mean()
                y = average_cost_target(c, self.rho, q_next, centre)
        q1, q2 = self.critic(s, a)
        critic_loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        # actor
        actor_loss, mean_std = self._actor_loss(s)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
        self.actor_opt.step()
        # targets
        with torch.no_grad():
            for p, pt in zip(self.critic.parameters(), self.critic_target.parameters()):
                pt.mul_(1.0 - cfg.polyak).add_(p, alpha=cfg.polyak)
        self.updates += 1
        if self.actor_target is not None and self.updates % cfg.kl_period == 0:
            self.actor_target.load_state_dict(self.actor.state_dict())
        self._last = {"critic_loss": float(critic_loss.detach()), "actor_loss": float(actor_loss.detach()),
                      "mean_std": mean_std}

    def _actor_loss(self, s):
        cfg = self.config
        if cfg.algo == "wpo":
            mu, std = self.actor.dist(s)
            u = (mu + std * self._randn(cfg.wpo_samples, *mu.shape)).detach()
            a = self.actor.squash(u)
            G = self.critic.action_grad(s, a)
            d = self.actor.squash_derivative(u)
            G = G * d if cfg.wpo_space == "pre_tanh" else G / d.clamp_min(1e-6)
            if cfg.wpo_squash == "cbrt":
                G = torch.sign(G) * G.abs().pow(1.0 / 3.0)
            loss = wpo_loss(mu, std, u, G, preconditioner=cfg.wpo_preconditioner)
            if self.actor_target is not None:
                with torch.no_grad():
                    mu_t, std_t = self.actor_target.dist(s)
                loss = loss + cfg.kl_mean * gaussian_kl(mu_t, std_t, mu, std_t).sum(-1).mean() \
                    + cfg.kl_std * gaussian_kl(mu_t, std_t, mu_t, std).sum(-1).mean()
            return loss, float(std.detach().mean())
        if cfg.algo in ("wppg", "wppg-implicit"):
            a, _, _ = self._sample_actions(s, cfg.wppg_samples)
            G = self.critic.action_grad(s, a)
            target = wppg_target(a, G, cfg.eta, cfg.tau, self._randn(*a.shape))
            spread = float(a.detach().std(0).mean())
            return wppg_loss(a, target), spread
        # reparam
        mu, std = self.actor.dist(s)
        u = mu + std * self._randn(*mu.shape)
        a = self.actor.squash(u)
        logp = self.actor.log_prob(u, mu, std)
        q = self.critic.pessimistic(s, a)
        alpha = self.log_alpha.exp()
        loss = reparam_loss(q, logp, alpha)
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        return loss, float(std.detach().mean())

    # ------------------------------------------------------------------ evaluation
    def deterministic_policy(self):
        """Callable states ``(n, ds)`` -> deterministic actions ``(n, da)`` (numpy)."""
        from .projection import deterministic_actions
        return lambda states: deterministic_actions(self.actor, states)

    def _exact_J(self, mode: str) -> float:
        """Exact J (or gain) of the ``mode`` projection of the policy on the grid problem.

        For the average cost a projected policy whose chain has several recurrent classes (a
        noiseless model, e.g. the double integrator's ``v = 0`` cells under a zero action) has no
        single gain, and a nearly decomposable chain (model noise far below the grid spacing) may
        have no stationary law that :func:`wgflow.evaluate` can compute accurately
        (ConvergenceError): that evaluation is NaN, with a warning, rather than the end of the run.
        """
        from ..errors import ConvergenceError, NotUnichainError
        from ..evaluation import evaluate
        from .projection import project_policy
        try:
            return float(evaluate(self.mdp, project_policy(self.actor, self.mdp, mode), self.objective).J)
        except NotUnichainError as exc:
            warnings.warn(f"step {self.step}: the {mode} projection of the policy has "
                          f"{len(exc.classes) or 'several'} recurrent classes on the grid, so no single "
                          "gain; its exact evaluation is NaN", UserWarning, stacklevel=2)
        except ConvergenceError as exc:
            warnings.warn(f"step {self.step}: the exact evaluation of the {mode} projection of the "
                          f"policy failed ({exc}); it is NaN", UserWarning, stacklevel=2)
        return float("nan")

    def _evaluate(self):
        cfg = self.config
        w0, c0 = time.perf_counter(), time.process_time()
        J = float("nan")
        if self.mdp is not None:
            J = self._exact_J("deterministic")
        rm = rs = float("nan")
        if self.gym_id is not None and cfg.eval_episodes > 0:
            r = gym_evaluate(self.deterministic_policy(), self.gym_id, cfg.eval_episodes, seed=0,
                             gamma=cfg.gamma)
            rm, rs = r.mean, r.std
        self.clock["eval_wall"] += time.perf_counter() - w0
        self.clock["eval_cpu"] += time.process_time() - c0
        row = {"step": self.step, "wall": self.clock["train_wall"] + self.clock["eval_wall"],
               "cpu": self.clock["train_cpu"] + self.clock["eval_cpu"], "J_exact": J,
               "return_mean": rm, "return_std": rs,
               "gain_estimate": self.rho if cfg.objective == "average" else float("nan"), **self._last}
        for k in _curve_keys():
            self.curve[k].append(float(row[k]))
        return row

    def final_evaluation(self) -> dict:
        """Exact J (both projections) and ``final_episodes`` gymnasium episodes."""
        cfg = self.config
        out = {"J_exact": float("nan"), "J_exact_stochastic": float("nan"),
               "final_return_mean": float("nan"), "final_return_std": float("nan")}
        w0, c0 = time.perf_counter(), time.process_time()
        if self.mdp is not None:
            out["J_exact"] = self._exact_J("deterministic")
            out["J_exact_stochastic"] = self._exact_J("stochastic")
        if self.gym_id is not None and cfg.final_episodes > 0:
            r = gym_evaluate(self.deterministic_policy(), self.gym_id, cfg.final_episodes, seed=0,
                             gamma=cfg.gamma)
            out["final_return_mean"], out["final_return_std"] = r.mean, r.std
        self.clock["eval_wall"] += time.perf_counter() - w0
        self.clock["eval_cpu"] += time.process_time() - c0
        return out

    # ------------------------------------------------------------------ run
    def run(self, until: int | None = None):
        """Train up to step ``until`` (default ``config.steps``), evaluating and checkpointing."""
        cfg = self.config
        until = cfg.steps if until is None else min(int(until), cfg.steps)
        bar = None
        if self.progress:
            from .._progress import tqdm_class
            bar = tqdm_class()(total=cfg.steps, initial=self.step, desc=f"{cfg.algo} {self.env_name}",
                       unit="step", dynamic_ncols=True)
        try:
            while self.step < until:
                w0, c0 = time.perf_counter(), time.process_time()
                self._env_step()
                if self.step >= cfg.learning_starts:
                    for _ in range(cfg.updates_per_step):
                        self._update()
                self.step += 1
                self.clock["train_wall"] += time.perf_counter() - w0
                self.clock["train_cpu"] += time.process_time() - c0
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps:
                    row = self._evaluate()
                    if bar is not None:
                        post = {}
                        if np.isfinite(row["J_exact"]):
                            post["J"] = f"{row['J_exact']:.4g}"
                            post["J*"] = f"{self.J_star:.4g}"
                        if np.isfinite(row["return_mean"]):
                            post["return"] = f"{row['return_mean']:.1f}"
                        bar.set_postfix(post, refresh=False)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.output is not None \
                        and self.step < cfg.steps:
                    self.save_checkpoint()
                if bar is not None:
                    bar.update(1)
            if self.step == cfg.steps and (not self.curve["step"] or self.curve["step"][-1] != self.step):
                # a run resumed from a checkpoint at its (smaller) last step: the curve gets the
                # point at ``steps`` that an uninterrupted run of that length records
                self._evaluate()
        finally:
            if bar is not None:
                bar.close()
        return self

    def result(self, final: dict | None = None) -> TrainResult:
        final = final if final is not None else self.final_evaluation()
        env = {"name": self.env_name, "params": self.params, "problem": self.problem,
               "gym_id": self.gym_id, "objective": self.config.objective,
               "state_bounds": np.asarray(self.env.state_bounds).tolist(), "periodic": list(self.env.periodic),
               "action_low": np.asarray(self.env.action_low).tolist(),
               "action_high": np.asarray(self.env.action_high).tolist()}
        diag = dict(self.clock)
        diag.update({"device": str(self.device), "torch": torch.__version__,
                     "torch_threads": torch.get_num_threads(), "updates": self.updates,
                     "gain_estimate": self.rho if self.config.objective == "average" else None})
        return TrainResult(self.config, env, {k: np.asarray(v) for k, v in self.curve.items()},
                           final["J_exact"], final["J_exact_stochastic"], self.J_star,
                           final["final_return_mean"], final["final_return_std"], self.actor, self.critic, diag)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        if self.output is None:
            raise ValidationError("checkpoints need an output path")
        return self.output.with_name(self.output.name + ".ckpt")

    def state_dict(self) -> dict:
        d = {"config": self.config.to_dict(), "env_name": self.env_name, "params": self.params,
             "step": self.step, "updates": self.updates, "rho": self.rho, "obs": self.obs,
             "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
             "critic_target": self.critic_target.state_dict(),
             "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
             "device": self.device.type, "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
             "np_rng": self.rng.bit_generator.state, "py_rng": random.getstate(),
             "env": self.env.get_state(), "buffer": self.buffer.state_dict(),
             "curve": {k: list(v) for k, v in self.curve.items()}, "clock": dict(self.clock),
             "last": dict(self._last)}
        if self.actor_target is not None:
            d["actor_target"] = self.actor_target.state_dict()
        if self.log_alpha is not None:
            d["log_alpha"] = self.log_alpha.detach().clone()
            d["alpha_opt"] = self.alpha_opt.state_dict()
        return d

    def load_state_dict(self, d: dict):
        mine, theirs = self.config.to_dict(), dict(d["config"])
        mine.pop("steps")
        theirs.pop("steps")
        if theirs != mine or d["env_name"] != self.env_name or d["params"] != self.params:
            diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if d["env_name"] != self.env_name:
                diff.append("environment")
            if d["params"] != self.params:
                diff.append("params")
            raise ValidationError(f"the checkpoint was written by a run with another configuration, "
                                  f"environment or parameters (differing: {diff}); resume with the "
                                  f"same ones (only the number of steps may change), or start "
                                  f"afresh (wgflow train --no-resume; train(..., resume=False))")
        written_on = d.get("device", "cpu")
        if written_on != self.device.type:
            # the random generators of a CPU and a CUDA run have different states: the run
            # cannot continue as it would have (device="auto" picks the GPU where there is one)
            raise ValidationError(f"the checkpoint was written by a run on {written_on!r}, this run "
                                  f"is on {self.device.type!r}; resume on the same kind of device "
                                  f"(TrainConfig.device / --device)")
        if int(d["step"]) > self.config.steps:
            raise ValidationError(f"the checkpoint is at step {d['step']}, beyond steps={self.config.steps}")
        self.step, self.updates, self.rho = int(d["step"]), int(d["updates"]), float(d["rho"])
        self.obs = None if d["obs"] is None else np.array(d["obs"])
        self.actor.load_state_dict(d["actor"])
        self.critic.load_state_dict(d["critic"])
        self.critic_target.load_state_dict(d["critic_target"])
        self.actor_opt.load_state_dict(d["actor_opt"])
        self.critic_opt.load_state_dict(d["critic_opt"])
        self.gen.set_state(d["gen"])
        torch.set_rng_state(d["torch_rng"])
        self.rng.bit_generator.state = d["np_rng"]
        random.setstate(d["py_rng"])
        self.env.set_state(d["env"])
        self.buffer.load_state_dict(d["buffer"])
        self.curve = {k: list(v) for k, v in d["curve"].items()}
        self.clock = dict(d["clock"])
        self._last = dict(d["last"])
        if self.actor_target is not None:
            self.actor_target.load_state_dict(d["actor_target"])
        if self.log_alpha is not None:
            with torch.no_grad():
                self.log_alpha.copy_(d["log_alpha"])
            self.alpha_opt.load_state_dict(d["alpha_opt"])

    def save_checkpoint(self):
        """Write the full state to ``<output>.ckpt`` atomically (temporary file, then rename)."""
        path = self.checkpoint_path
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path=None):
        """Restore from a checkpoint (default ``<output>.ckpt``). It is a pickle: load only your own."""
        path = Path(path) if path is not None else self.checkpoint_path
        if not path.exists():
            raise MissingFileError(f"no checkpoint at {path}")
        self.load_state_dict(torch.load(path, map_location=self.device, weights_only=False))
        return self


def train(env_name: str, algo: str = "wpo", steps: int = 30000, seed: int = 0, output=None,
          params: dict | None = None, resume: bool = False, progress: bool | None = None,
          **options) -> TrainResult:
    """Train a policy on a wgflow problem or gymnasium environment; optionally write the results.

    Parameters
    ----------
    env_name : str
        wgflow problem built from dynamics (e.g. ``"pendulum"``) or gymnasium id
        (``"Pendulum-v1"``).
    algo : {"wpo", "wppg", "wppg-implicit", "reparam"}
    steps, seed : int
    output : path, optional
        HDF5 results file (see :mod:`wgflow.nn.results`); checkpoints go to ``<output>.ckpt``.
    params : dict, optional
        Problem parameters, e.g. ``{"n_theta": 101, "n_omega": 101, "n_actions": 41}``.
    resume : bool
        Continue from ``<output>.ckpt`` when it exists.
    **options
        Any :class:`TrainConfig` field.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> import wgflow.nn as wnn                                   # doctest: +SKIP
    >>> res = wnn.train("pendulum", algo="wpo", steps=30000, seed=0, output="wpo.h5",
    ...                 params=dict(n_theta=101, n_omega=101, n_actions=41))   # doctest: +SKIP
    >>> res.J_exact, res.J_star                                   # doctest: +SKIP
    """
    cfg = TrainConfig(algo=algo, steps=steps, seed=seed, **options)
    tr = Trainer(env_name, cfg, params=params, output=output, progress=progress)
    if resume and output is not None and tr.checkpoint_path.exists():
        tr.load_checkpoint()
    tr.run()
    res = tr.result()
    if output is not None:
        save_result(output, res)
        if tr.checkpoint_path.exists():
            tr.checkpoint_path.unlink()
    return res
