"""Results files of :func:`wgflow.nn.train` and :func:`load_policy`.

HDF5 layout (root attributes ``wgflow_type = "NNTrainingResult"``, ``wgflow_version``,
``format_version``, ``config``, ``env``, ``diagnostics`` as JSON, and the scalars ``J_exact``,
``J_exact_stochastic``, ``J_star``, ``final_return_mean``, ``final_return_std``)::

    /curve/<name>            learning curve (step, wall, cpu, J_exact, return_mean, ...)
    /actor/<parameter>       final policy weights (attribute ``config``: the architecture)
    /critic/<parameter>      final twin-critic weights (attribute ``config``)

Writes are atomic (:class:`wgflow.h5.atomic_h5`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, MissingFileError, ValidationError
from ..h5 import atomic_h5, check_bytes
from ..version import __version__
from ._torch import require_torch

torch = require_torch()

__all__ = ["TrainResult", "save_result", "load_result", "load_policy", "DeterministicPolicy", "LoadedResult",
           "RESULT_TYPE"]

RESULT_TYPE = "NNTrainingResult"
FORMAT_VERSION = 1
_SCALARS = ("J_exact", "J_exact_stochastic", "J_star", "final_return_mean", "final_return_std")


@dataclass
class TrainResult:
    """What :func:`train` returns (and the results file holds).

    Attributes
    ----------
    curve : dict of arrays
        ``step``, ``wall``, ``cpu`` (seconds, training and evaluation), ``J_exact`` (exact J of the
        deterministic policy on the grid problem, NaN without one), ``return_mean``,
        ``return_std`` (gymnasium episodes, NaN without a twin), ``gain_estimate`` (average cost),
        ``critic_loss``, ``actor_loss``, ``mean_std`` (mean exploration scale).
    J_exact, J_exact_stochastic, J_star : float
        Final exact values (deterministic and stochastic projections) and the grid optimum
        (the gain for the average cost). NaN when the environment has no grid problem.
    final_return_mean, final_return_std : float
        Over ``final_episodes`` gymnasium episodes (seeds 0..n-1), NaN without a twin.
    diagnostics : dict
        Timings (``train_wall``, ``train_cpu``, ``eval_wall``, ``eval_cpu``), versions, device.
    """

    config: object                  # the run's wgflow.nn.TrainConfig
    env: dict
    curve: dict
    J_exact: float
    J_exact_stochastic: float
    J_star: float
    final_return_mean: float
    final_return_std: float
    actor: object = field(repr=False, default=None)
    critic: object = field(repr=False, default=None)
    diagnostics: dict = field(default_factory=dict)

    def summary(self) -> str:
        c = self.config
        lines = [f"algo {c.algo}, {c.steps} steps, seed {c.seed}, env {self.env['name']} "
                 f"({self.env.get('objective')})"]
        if np.isfinite(self.J_star):
            # a relative gap needs J* != 0 (the noiseless pendulum's optimal gain is 0): then the
            # absolute one is given
            gap = (f"gap {100 * (self.J_exact - self.J_star) / abs(self.J_star):.2f} %" if self.J_star != 0
                   else f"above the optimum by {self.J_exact - self.J_star:.6g}")
            kind = "gain" if c.objective == "average" else "J"
            lines.append(f"exact {kind}: deterministic {self.J_exact:.6g}, stochastic "
                         f"{self.J_exact_stochastic:.6g}, optimum {self.J_star:.6g} ({gap})")
        if np.isfinite(self.final_return_mean):
            lines.append(f"{self.env.get('gym_id')}: mean return {self.final_return_mean:.2f} +- "
                         f"{self.final_return_std:.2f} over {c.final_episodes} episodes")
        d = self.diagnostics
        lines.append(f"time: train {d.get('train_wall', 0):.1f} s wall / {d.get('train_cpu', 0):.1f} s CPU, "
                     f"evaluation {d.get('eval_wall', 0):.1f} s wall / {d.get('eval_cpu', 0):.1f} s CPU")
        return "\n".join(lines)


def _critic_config(res) -> dict:
    e = res.env
    return {"state_bounds": e["state_bounds"], "periodic": e["periodic"], "action_low": e["action_low"],
            "action_high": e["action_high"], "hidden": list(res.config.critic_hidden)}


def save_result(path, res) -> Path:
    """Write a :class:`TrainResult` to ``path`` (HDF5, atomic)."""
    if not isinstance(res, TrainResult):
        raise ValidationError(f"save_result stores a TrainResult, not {type(res).__name__}")
    with atomic_h5(path) as f:
        f.attrs["wgflow_type"] = RESULT_TYPE
        f.attrs["wgflow_version"] = __version__
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["config"] = json.dumps(res.config.to_dict())
        f.attrs["env"] = json.dumps(res.env)
        f.attrs["diagnostics"] = json.dumps(res.diagnostics)
        for k in _SCALARS:
            f.attrs[k] = float(getattr(res, k))
        g = f.create_group("curve")
        for k, v in res.curve.items():
            g.create_dataset(k, data=np.asarray(v, dtype=float))
        for name, net, cfg in (("actor", res.actor, res.actor.config()),
                               ("critic", res.critic, _critic_config(res))):
            grp = f.create_group(name)
            grp.attrs["config"] = json.dumps(cfg)
            for k, v in net.state_dict().items():
                grp.create_dataset(k, data=v.detach().cpu().numpy())
    return Path(path)


@dataclass
class LoadedResult:
    """A results file read back: fields as in :class:`TrainResult`."""

    config: dict
    env: dict
    curve: dict
    J_exact: float
    J_exact_stochastic: float
    J_star: float
    final_return_mean: float
    final_return_std: float
    actor: object
    diagnostics: dict


def _open(path):
    import h5py
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"no such file: {path}")
    check_bytes(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise FileFormatError(f"{path} is not a readable HDF5 file: {exc}") from exc
    if f.attrs.get("wgflow_type") != RESULT_TYPE:
        kind = f.attrs.get("wgflow_type")
        f.close()
        raise FileFormatError(f"{path} is not a wgflow.nn training result (wgflow_type={kind!r})")
    return f


def _read_actor(f, device="cpu"):
    from .networks import policy_from_config
    grp = f["actor"]
    net = policy_from_config(json.loads(grp.attrs["config"]))
    sd = {k: torch.as_tensor(grp[k][...]) for k in grp.keys()}
    net.load_state_dict(sd)
    net.eval()
    return net.to(device)


def load_result(path, device="cpu") -> LoadedResult:
    """Read a results file written by :func:`wgflow.nn.train`."""
    with _open(path) as f:
        try:
            curve = {k: f["curve"][k][...] for k in f["curve"].keys()}
            return LoadedResult(json.loads(f.attrs["config"]), json.loads(f.attrs["env"]), curve,
                                *(float(f.attrs[k]) for k in _SCALARS), _read_actor(f, device),
                                json.loads(f.attrs["diagnostics"]))
        except KeyError as exc:
            raise FileFormatError(f"{path} is a damaged wgflow.nn result file: {exc}") from exc


class DeterministicPolicy:
    """Callable states ``(n, ds)`` -> deterministic actions ``(n, da)`` (numpy float64).

    ``network`` is the torch policy; :attr:`env` says which state coordinates it expects.
    """

    def __init__(self, network, env: dict | None = None):
        self.network = network
        self.env = dict(env or {})

    @property
    def state_dim(self) -> int:
        return len(self.network.features.bounds_list)

    def __call__(self, states):
        from .projection import deterministic_actions
        x = np.asarray(states, dtype=float)
        if x.ndim == 1 and x.size == self.state_dim:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.state_dim:
            raise ValidationError(f"states must have shape (n, {self.state_dim}), got {np.shape(states)}")
        if not np.all(np.isfinite(x)):
            raise ValidationError("states contain NaN or inf")
        return deterministic_actions(self.network, x)


def load_policy(path, device="cpu") -> DeterministicPolicy:
    """The deterministic policy of a results file: states ``(n, ds)`` -> actions ``(n, da)``.

    States are in the coordinates of the training environment: a wgflow problem's state (the
    pendulum's ``(theta, omega)``, also for a policy trained on gymnasium's Pendulum-v1, whose
    observations are mapped to it), or a gymnasium observation for environments without a twin.

    Examples
    --------
    >>> import wgflow.nn as wnn                          # doctest: +SKIP
    >>> pi = wnn.load_policy("wpo.h5")                   # doctest: +SKIP
    >>> pi(np.array([[0.0, 0.0], [3.0, 1.0]])).shape     # doctest: +SKIP
    (2, 1)
    """
    with _open(path) as f:
        try:
            return DeterministicPolicy(_read_actor(f, device), json.loads(f.attrs["env"]))
        except KeyError as exc:
            raise FileFormatError(f"{path} is a damaged wgflow.nn result file: {exc}") from exc
