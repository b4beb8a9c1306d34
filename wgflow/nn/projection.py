r"""Projection of a neural policy onto a grid MDP, and its exact evaluation.

A network policy is a law on the continuous action box for every continuous state. The grid MDP
needs masses ``(nS, nA)`` on its action cells at its state-cell centres. Three projections:

``"deterministic"``
    The deterministic action ``a(s)`` of each state centre (``c + r tanh(mu(s))`` for the
    squashed Gaussian, ``g(s, 0)`` for an implicit policy), deposited on the two neighbouring
    action centres per axis by linear interpolation (``Policy.deterministic(..., rule="linear")``):
    the mean action is exact, the law is spread over at most ``2^da`` cells.
``"stochastic"`` (squashed Gaussian)
    The exact probability of each action cell: with cell edges ``e_k`` mapped to the pre-tanh
    line, ``u_k = atanh((e_k - c)/r)`` (``-inf``/``+inf`` at the box ends), the mass of cell
    ``k`` is ``Phi((u_{k+1}-mu)/sigma) - Phi((u_k-mu)/sigma)``, a product over action axes.
    No approximation beyond the grid MDP's own (it treats a cell's mass as sitting at the cell's
    centre); rows sum to 1 up to rounding, which is removed by dividing by the row sum.
``"stochastic"`` (implicit)
    ``samples`` latent draws per state (a fixed torch generator), each action deposited linearly
    as above and averaged: a Monte Carlo estimate whose per-cell standard error is at most
    ``0.5 / sqrt(samples)``.

:func:`exact_evaluation` evaluates the projected policies exactly with :func:`wgflow.evaluate`
(sparse LU), i.e. in the grid MDP that :func:`wgflow.solve` optimizes, so ``J`` is directly
comparable with ``J*``.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from ..errors import ValidationError
from ._torch import require_torch

torch = require_torch()

__all__ = ["project_policy", "exact_evaluation", "deterministic_actions", "squashed_gaussian_masses"]


def _network_device(net):
    try:
        return next(net.parameters()).device
    except StopIteration:       # pragma: no cover
        return torch.device("cpu")


def deterministic_actions(net, states, batch: int = 65536) -> np.ndarray:
    """Deterministic actions ``(n, da)`` of a policy network at states ``(n, ds)`` (float64)."""
    states = np.asarray(states, dtype=np.float32)
    dev = _network_device(net)
    out = []
    with torch.no_grad():
        for i in range(0, states.shape[0], batch):
            s = torch.as_tensor(states[i:i + batch], device=dev)
            out.append(net.deterministic(s).double().cpu().numpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, net.action_dim))


def _interval_probability(lo, hi):
    """``Phi(hi) - Phi(lo)`` with the tail that keeps relative accuracy (``lo <= hi``)."""
    upper = lo > 0
    return np.where(upper, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))


def squashed_gaussian_masses(mu, std, center, radius, actions) -> np.ndarray:
    """Exact cell masses ``(n, nA)`` of ``c + r tanh(N(mu, std^2))`` on an action grid.

    ``mu``, ``std`` ``(n, da)`` (pre-tanh); ``center``, ``radius`` ``(da,)``; ``actions`` a Grid
    that must tile the box ``[c - r, c + r]``.
    """
    mu, std = np.asarray(mu, float), np.asarray(std, float)
    n, da = mu.shape
    if actions.ndim != da:
        raise ValidationError(f"the action grid has {actions.ndim} axes, the policy {da}")
    box = np.stack([np.asarray(center) - radius, np.asarray(center) + radius], axis=1)
    if not np.allclose(actions.bounds, box, rtol=0, atol=1e-6 * np.max(np.abs(box)) + 1e-12):
        raise ValidationError(f"the action grid's box {actions.bounds.tolist()} differs from the "
                              f"policy's action box {box.tolist()}")
    masses = np.ones((n, 1))
    for d in range(da):
        nd = actions.shape[d]
        inner = actions.bounds[d, 0] + np.arange(1, nd) * actions.spacing[d]
        x = (inner - center[d]) / radius[d]
        u = np.concatenate([[-np.inf], np.arctanh(x), [np.inf]])
        with np.errstate(over="ignore", invalid="ignore"):
            z = (u[None, :] - mu[:, d:d + 1]) / std[:, d:d + 1]
        z[:, 0], z[:, -1] = -np.inf, np.inf
        p = _interval_probability(z[:, :-1], z[:, 1:])
        masses = (masses[:, :, None] * p[:, None, :]).reshape(n, -1)
    return masses / masses.sum(axis=1, keepdims=True)


def project_policy(net, mdp, mode: str = "deterministic", samples: int = 256, seed: int = 0):
    """Project a policy network onto ``mdp``'s grids: a :class:`wgflow.Policy` (see module doc).

    Parameters
    ----------
    net : SquashedGaussianPolicy or ImplicitPolicy
    mdp : wgflow.MDP
        With state and action grids (the network's state coordinates are the grid's).
    mode : {"deterministic", "stochastic"}
    samples : int
        Latent draws per state for an implicit policy's stochastic projection.
    seed : int
        Seed of those draws.
    """
    from ..policy import Policy
    A = mdp.require_actions("project_policy")
    if mdp.states is None:
        raise ValidationError("project_policy needs an MDP with a state grid")
    centers = mdp.states.centers
    if mode == "deterministic":
        act = deterministic_actions(net, centers)
        act = np.clip(act, A.bounds[:, 0], A.bounds[:, 1])
        return Policy.deterministic(mdp, act, rule="linear")
    if mode != "stochastic":
        raise ValidationError(f"mode must be 'deterministic' or 'stochastic', got {mode!r}")
    dev = _network_device(net)
    s = torch.as_tensor(np.array(centers, dtype=np.float32), device=dev)
    center = net.center.double().cpu().numpy()
    radius = net.radius.double().cpu().numpy()
    if net.kind == "gaussian":
        with torch.no_grad():
            mu, std = net.dist(s)
        masses = squashed_gaussian_masses(mu.double().cpu().numpy(), std.double().cpu().numpy(),
                                          center, radius, A)
        return Policy.from_masses(mdp, masses)
    if int(samples) < 1:
        raise ValidationError(f"samples must be >= 1, got {samples}")
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    nS, nA = mdp.n_states, mdp.n_actions
    masses = np.zeros((nS, nA))
    chunk = max(1, 65536 // int(samples))
    with torch.no_grad():
        for i in range(0, nS, chunk):
            si = s[i:i + chunk]
            z = torch.randn((int(samples), si.shape[0], net.latent_dim), generator=gen, device=dev)
            a = net.sample(si, z)[0].double().cpu().numpy()          # (K, n, da)
            a = np.clip(a, A.bounds[:, 0], A.bounds[:, 1])
            idx, w = A.interpolation_weights(a.reshape(-1, A.ndim))
            rows = np.broadcast_to(np.arange(i, i + si.shape[0])[None, :, None],
                                   (int(samples), si.shape[0], idx.shape[1])).reshape(-1)
            np.add.at(masses, (rows, idx.ravel()), w.ravel())
    masses /= float(samples)
    return Policy.from_masses(mdp, masses / masses.sum(axis=1, keepdims=True))


def exact_evaluation(net, mdp, objective, stochastic: bool = True, samples: int = 256) -> dict:
    """Exact ``J`` of the projected policies: ``{"J_deterministic", "J_stochastic"}`` (the latter
    only when ``stochastic``); for an :class:`~wgflow.Average` objective ``J`` is the gain."""
    from ..evaluation import evaluate
    out = {"J_deterministic": float(evaluate(mdp, project_policy(net, mdp, "deterministic"), objective).J)}
    if stochastic:
        out["J_stochastic"] = float(evaluate(mdp, project_policy(net, mdp, "stochastic", samples=samples),
                                             objective).J)
    return out
