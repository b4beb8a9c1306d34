r"""Policies and critics as small torch MLPs.

* :class:`StateFeatures` -- the fixed input map of every network: a periodic state axis
  ``x`` on ``[lo, hi)`` becomes ``(cos 2 pi (x-lo)/L, sin 2 pi (x-lo)/L)``, a bounded axis is
  mapped affinely to ``[-1, 1]``, an unbounded one is passed through.
* :class:`SquashedGaussianPolicy` -- ``u ~ N(mu(s), diag sigma(s)^2)``, ``a = c + r tanh(u)`` on
  the action box ``[c - r, c + r]``. Deterministic action: ``c + r tanh(mu(s))``.
* :class:`ImplicitPolicy` -- push-forward ``a = c + r tanh(f([s, z]))``, ``z ~ N(0, I_M)``; no
  density is available. Deterministic action: ``z = 0``.
* :class:`TwinQ` -- two critics ``Q_1, Q_2`` of the *cost*; :meth:`TwinQ.pessimistic` is
  ``max(Q_1, Q_2)`` (clipped double Q for costs) and :meth:`TwinQ.action_grad` its action gradient.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ValidationError
from ._torch import require_torch

torch = require_torch()
nn = torch.nn

__all__ = ["StateFeatures", "MLP", "SquashedGaussianPolicy", "ImplicitPolicy", "TwinQ",
           "LOG_STD_BOUNDS"]

#: bounds of log sigma of the squashed Gaussian (pre-tanh coordinates)
LOG_STD_BOUNDS = (-5.0, 2.0)


class StateFeatures(nn.Module):
    """Fixed feature map of states ``(n, ds)`` -> ``(n, n_features)``.

    Parameters
    ----------
    bounds : array ``(ds, 2)``
        Box of the state; ``inf`` bounds mean the axis is passed through unchanged.
    periodic : sequence of bool
        Periodic axes are embedded on the circle (two features each).
    """

    def __init__(self, bounds, periodic=None):
        super().__init__()
        b = np.asarray(bounds, dtype=float).reshape(-1, 2)
        per = np.zeros(b.shape[0], bool) if periodic is None else np.asarray(periodic, bool).reshape(-1)
        if per.shape[0] != b.shape[0]:
            raise ValidationError(f"periodic has {per.shape[0]} entries for {b.shape[0]} state axes")
        if np.any(per & ~np.all(np.isfinite(b), axis=1)):
            raise ValidationError("a periodic state axis needs finite bounds")
        finite = np.all(np.isfinite(b), axis=1)
        lo = np.where(finite, b[:, 0], 0.0)
        width = np.where(finite, b[:, 1] - b[:, 0], 2.0)
        self.bounds_list = b.tolist()
        self.periodic_list = per.tolist()
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("width", torch.tensor(width, dtype=torch.float32))
        self.register_buffer("finite", torch.tensor(finite))
        self.register_buffer("per", torch.tensor(per))
        self.n_features = int(b.shape[0] + per.sum())

    def forward(self, s):
        z = (s - self.lo) / self.width                       # [0, 1] on finite axes
        lin = torch.where(self.finite, 2.0 * z - 1.0, s)
        ang = 2.0 * math.pi * z
        out = [torch.where(self.per, torch.cos(ang), lin)]
        if bool(self.per.any()):
            out.append(torch.sin(ang[:, self.per]))
        return torch.cat(out, dim=-1)


class MLP(nn.Module):
    """A multilayer perceptron: linear layers with ReLU activations between them."""

    def __init__(self, n_in: int, n_out: int, hidden=(256, 256)):
        super().__init__()
        layers, last = [], n_in
        for h in hidden:
            layers += [nn.Linear(last, int(h)), nn.ReLU()]
            last = int(h)
        layers.append(nn.Linear(last, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def _box(low, high):
    low = np.asarray(low, dtype=float).reshape(-1)
    high = np.asarray(high, dtype=float).reshape(-1)
    if low.shape != high.shape or not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
        raise ValidationError(f"the action box must be finite, got low={low}, high={high}")
    if np.any(high <= low):
        raise ValidationError(f"the action box needs low < high per axis, got low={low}, high={high}")
    return low, high


class _BoxPolicy(nn.Module):
    """Common part: feature map, action box ``[c - r, c + r]``, squashing ``a = c + r tanh(u)``."""

    kind = "base"

    def __init__(self, state_bounds, periodic, action_low, action_high):
        super().__init__()
        self.features = StateFeatures(state_bounds, periodic)
        low, high = _box(action_low, action_high)
        self.action_dim = low.size
        self.register_buffer("center", torch.tensor((low + high) / 2, dtype=torch.float32))
        self.register_buffer("radius", torch.tensor((high - low) / 2, dtype=torch.float32))

    def squash(self, u):
        return self.center + self.radius * torch.tanh(u)

    def squash_derivative(self, u):
        """``da/du = r (1 - tanh(u)^2)`` (elementwise)."""
        t = torch.tanh(u)
        return self.radius * (1.0 - t * t)

    def normalize_action(self, a):
        """Map the box to ``[-1, 1]^da`` (what the critics see)."""
        return (a - self.center) / self.radius

    def config(self) -> dict:
        raise NotImplementedError


class SquashedGaussianPolicy(_BoxPolicy):
    r"""Tanh-squashed diagonal Gaussian on the action box.

    ``u ~ N(mu(s), diag sigma(s)^2)`` with ``log sigma`` squashed smoothly into
    :data:`LOG_STD_BOUNDS`, ``a = c + r tanh(u)``. Its density on the box is
    ``pi(a|s) = N(u; mu, sigma) / prod_d r_d (1 - tanh(u_d)^2)``.

    Examples
    --------
    >>> import torch
    >>> pi = SquashedGaussianPolicy([[-1, 1]], [False], [-2.0], [2.0], hidden=(8,))
    >>> pi.deterministic(torch.zeros(3, 1)).shape
    torch.Size([3, 1])
    """

    kind = "gaussian"

    def __init__(self, state_bounds, periodic, action_low, action_high, hidden=(256, 256),
                 log_std_bounds=LOG_STD_BOUNDS):
        super().__init__(state_bounds, periodic, action_low, action_high)
        self.hidden = tuple(int(h) for h in hidden)
        self.log_std_bounds = (float(log_std_bounds[0]), float(log_std_bounds[1]))
        self.net = MLP(self.features.n_features, 2 * self.action_dim, self.hidden)
        self._init = dict(state_bounds=self.features.bounds_list, periodic=self.features.periodic_list,
                          action_low=(self.center - self.radius).tolist(),
                          action_high=(self.center + self.radius).tolist(), hidden=list(self.hidden),
                          log_std_bounds=list(self.log_std_bounds))

    def config(self) -> dict:
        return {"kind": self.kind, **self._init}

    def dist(self, s):
        """``(mu, sigma)`` of the pre-tanh Gaussian, each ``(n, da)``."""
        out = self.net(self.features(s))
        mu, raw = out[:, :self.action_dim], out[:, self.action_dim:]
        lo, hi = self.log_std_bounds
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(raw) + 1.0)
        return mu, torch.exp(log_std)

    def sample(self, s, noise):
        """Actions for standard normal ``noise`` of shape ``(..., n, da)``: returns ``(a, u)``."""
        mu, std = self.dist(s)
        u = mu + std * noise
        return self.squash(u), u

    def log_prob(self, u, mu, std):
        """Log density on the box of ``a = squash(u)`` (tanh Jacobian included), ``(..., n)``."""
        z = (u - mu) / std
        logn = -0.5 * z * z - torch.log(std) - 0.5 * math.log(2 * math.pi)
        # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_jac = torch.log(self.radius) + 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return (logn - log_jac).sum(-1)

    def deterministic(self, s):
        mu, _ = self.dist(s)
        return self.squash(mu)


class ImplicitPolicy(_BoxPolicy):
    r"""Implicit push-forward policy ``a = c + r tanh(f_theta([phi(s), z]))``, ``z ~ N(0, I_M)``.

    No log-density is available; the law per state is only sampled. ``latent_dim`` ``M``
    defaults to ``max(1, round(n_features / 3))`` (WPPG-I's ``|S|/3``).
    """

    kind = "implicit"

    def __init__(self, state_bounds, periodic, action_low, action_high, hidden=(256, 256),
                 latent_dim: int | None = None):
        super().__init__(state_bounds, periodic, action_low, action_high)
        nf = self.features.n_features
        self.latent_dim = int(latent_dim) if latent_dim is not None else max(1, int(round(nf / 3)))
        if self.latent_dim < 1:
            raise ValidationError(f"latent_dim must be >= 1, got {latent_dim}")
        self.hidden = tuple(int(h) for h in hidden)
        self.net = MLP(nf + self.latent_dim, self.action_dim, self.hidden)
        self._init = dict(state_bounds=self.features.bounds_list, periodic=self.features.periodic_list,
                          action_low=(self.center - self.radius).tolist(),
                          action_high=(self.center + self.radius).tolist(), hidden=list(self.hidden),
                          latent_dim=self.latent_dim)

    def config(self) -> dict:
        return {"kind": self.kind, **self._init}

    def sample(self, s, noise):
        """Actions for latent ``noise`` of shape ``(..., n, M)``: returns ``(a, pre-tanh)``."""
        f = self.features(s)
        f = f.expand(noise.shape[:-1] + f.shape[-1:])
        u = self.net(torch.cat([f, noise], dim=-1))
        return self.squash(u), u

    def deterministic(self, s):
        z = torch.zeros(s.shape[0], self.latent_dim, dtype=s.dtype, device=s.device)
        return self.sample(s, z)[0]


def policy_from_config(cfg: dict):
    """Rebuild a policy network (untrained) from :meth:`config`."""
    cfg = dict(cfg)
    kind = cfg.pop("kind")
    if kind == "gaussian":
        return SquashedGaussianPolicy(**cfg)
    if kind == "implicit":
        return ImplicitPolicy(**cfg)
    raise ValidationError(f"unknown policy kind {kind!r} (expected 'gaussian' or 'implicit')")


class TwinQ(nn.Module):
    """Two critics of the cost, ``Q_i([phi(s), (a - c)/r])``.

    :meth:`pessimistic` is ``max(Q_1, Q_2)``: for costs the clipped double-Q estimate is the
    larger one.
    """

    def __init__(self, state_bounds, periodic, action_low, action_high, hidden=(256, 256)):
        super().__init__()
        self.features = StateFeatures(state_bounds, periodic)
        low, high = _box(action_low, action_high)
        self.register_buffer("center", torch.tensor((low + high) / 2, dtype=torch.float32))
        self.register_buffer("radius", torch.tensor((high - low) / 2, dtype=torch.float32))
        n_in = self.features.n_features + low.size
        self.q1 = MLP(n_in, 1, hidden)
        self.q2 = MLP(n_in, 1, hidden)

    def forward(self, s, a):
        f = self.features(s)
        if a.dim() > f.dim():
            f = f.expand(a.shape[:-1] + f.shape[-1:])
        x = torch.cat([f, (a - self.center) / self.radius], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def pessimistic(self, s, a):
        q1, q2 = self(s, a)
        return torch.maximum(q1, q2)

    def action_grad(self, s, a):
        """``grad_a max(Q_1, Q_2)(s, a)`` at fixed (detached) actions, same shape as ``a``."""
        a = a.detach().requires_grad_(True)
        with torch.enable_grad():
            q = self.pessimistic(s, a)
            (g,) = torch.autograd.grad(q.sum(), a)
        return g
