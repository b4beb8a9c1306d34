r"""Actor updates: WPO, WPPG (Gaussian and implicit) and a reparameterized (SAC-style) baseline.

Costs are minimized: ``Q`` is the critic of the cost, and every update moves actions along
``-grad_a Q`` (the papers, written for rewards, move them along ``+grad_a Q_reward``).

WPO (Pfau et al. 2025, Eq. 6; acme ``losses/wpo.py``)
    Per batch state ``N`` actions ``u_n ~ N(mu, sigma^2)`` (pre-tanh), ``G_n = grad_u Q`` (stopped),
    optionally ``cbrt``-squashed elementwise, and the surrogate

    .. math:: L = \frac1N \sum_n \nabla_u \log\tilde\pi_\theta(u_n|s)\cdot G_n ,

    where :math:`\tilde\pi` has the values of :math:`\pi` but its parameter gradients rescaled by
    ``sigma^2`` through ``mu`` and ``sigma^2/2`` through ``sigma`` -- the inverse Fisher matrix of
    ``N(mu, sigma^2)`` in ``(mu, sigma)``. Hence ``dL/dmu = E[G]`` and ``dL/dsigma = E[(u-mu) G]/sigma``
    (a descent step moves the mean against ``grad Q``). By Stein's identity the expectation equals
    the score-function gradient of ``E[Q]`` in ``(mu, sigma)``. ``space="pre_tanh"`` (default)
    transports in the Gaussian's own coordinates ``u`` (``G = grad_a Q * da/du``);
    ``space="action"`` is the W2 flow on the box itself (``G = grad_a Q / (da/du)``).

WPPG (Zhu, Zhang, Gao, Li 2026, Alg. 2-3: transport then heat)
    Per batch state ``K`` samples ``a_k = g_theta(s, eps_k)``, ``G_k = grad_a Q(s, a_k)``, and the
    regression target ``a_k - eta G_k + xi_k`` with ``xi_k ~ N(0, 2 tau eta I)``:
    ``L = mean_k |g_theta(s, eps_k) - stop(a_k - eta G_k + xi_k)|^2``.

Reparameterized baseline (SAC)
    ``L = mean[max(Q_1, Q_2)(s, a(eps)) + alpha log pi(a(eps)|s)]`` with ``alpha`` tuned to a
    target entropy.
"""
from __future__ import annotations

import math

from ..errors import ValidationError
from ._torch import require_torch

torch = require_torch()

__all__ = ["precondition", "wpo_loss", "wppg_target", "wppg_loss", "reparam_loss",
           "mixture_entropy", "gaussian_kl", "average_cost_target", "ALGORITHMS"]

#: the algorithm names accepted by the trainer and the CLI
ALGORITHMS = ("wpo", "wppg", "wppg-implicit", "reparam")


def precondition(x, scale):
    """Same value as ``x``; the gradient reaching ``x`` is multiplied by ``scale`` (stopped)."""
    scale = scale.detach()
    return x.detach() + scale * (x - x.detach())


def wpo_loss(mu, std, u, G, preconditioner: bool = True):
    r"""WPO surrogate ``mean_n sum_d [grad_u log pi~(u_n)]_d G_{n,d}``, averaged over the batch.

    Parameters
    ----------
    mu, std : tensor ``(B, da)``
        The Gaussian (pre-tanh) parameters, differentiable.
    u : tensor ``(N, B, da)``
        Samples (their gradient is ignored).
    G : tensor ``(N, B, da)``
        Action gradients of the cost critic in the coordinates of ``u`` (stopped).
    preconditioner : bool
        Apply the inverse Fisher ``diag(sigma^2, sigma^2/2)`` (acme's natural-gradient adaptor).

    Returns
    -------
    torch.Tensor
        A scalar. Per batch state (and divided by ``B``) its gradient w.r.t. ``mu`` is ``E[G]``
        and w.r.t. ``sigma`` is ``E[(u - mu) G] / sigma`` with the preconditioner; without it,
        ``E[G] / sigma^2`` and ``2 E[(u - mu) G] / sigma^3``.
    """
    u, G = u.detach(), G.detach()
    if preconditioner:
        var = std.detach() ** 2
        mu_t = precondition(mu, var)
        std_t = precondition(std, var / 2.0)
    else:
        mu_t, std_t = mu, std
    score = -(u - mu_t) / std_t ** 2           # grad_u log N(u; mu, std)
    return (score * G).sum(-1).mean(0).mean()


def gaussian_kl(mu1, std1, mu2, std2):
    """``KL(N(mu1, std1^2) || N(mu2, std2^2))`` elementwise."""
    return torch.log(std2 / std1) + (std1 ** 2 + (mu1 - mu2) ** 2) / (2.0 * std2 ** 2) - 0.5


def wppg_target(a0, G, eta: float, tau: float, noise):
    r"""WPPG regression target ``a0 - eta G + sqrt(2 tau eta) noise``.

    The transport step moves each sample by ``-eta grad_a Q`` (costs), the heat step adds
    Gaussian noise of variance ``2 tau eta`` per coordinate (the exact heat semigroup of
    ``tau Delta`` over time ``eta``). ``noise`` is standard normal with ``a0``'s shape.
    """
    if eta <= 0 or tau < 0:
        raise ValidationError(f"WPPG needs eta > 0 and tau >= 0, got eta={eta}, tau={tau}")
    return a0.detach() - eta * G.detach() + math.sqrt(2.0 * tau * eta) * noise


def wppg_loss(a, target):
    """``mean |a - target|^2`` (sum over action coordinates, mean over samples and states)."""
    return ((a - target.detach()) ** 2).sum(-1).mean()


def reparam_loss(q, logp, alpha):
    """SAC actor loss for costs: ``mean(q + alpha logp)`` (``alpha`` stopped)."""
    return (q + alpha.detach() * logp).mean()


def average_cost_target(cost, rho, q_next, centre):
    r"""Relative-value (average-cost) critic target ``y = c - rho + Q'(s', a') - m``.

    Parameters
    ----------
    cost : tensor ``(B,)``
        One-step costs ``c(s, a)``.
    rho : float
        Gain estimate (any finite value: it only shifts the additive constant of the fixed point).
    q_next : tensor ``(B,)``
        ``E_{a' ~ pi(.|s')} Q'(s', a')`` (target critic).
    centre : tensor (scalar)
        ``m``, the mean of the target critic over the replayed pairs ``(s, a)``.

    Notes
    -----
    In expectation over a replay law ``d`` on state-action pairs that is stationary for the
    policy's state-action chain ``P_pi``, the target is the operator
    ``T Q = c - rho + P_pi Q - (d . Q) 1``. Its fixed point solves ``Q = c - g + P_pi Q`` (the
    relative Q of the papers' digest, ``Q = c - J + P V``) with ``d . Q = g - rho``, where
    ``g = d . c`` is the gain: whatever ``rho`` is, the relative values -- and so ``grad_a Q``,
    all the actor uses -- are right, and the constant stays bounded. The iteration matrix
    ``P_pi - 1 d^T`` has the eigenvalues of ``P_pi`` except that ``1`` is replaced by ``0``, so the
    iteration converges for an aperiodic unichain policy (relative value iteration with the
    ``d``-average as the reference).

    Examples
    --------
    >>> import torch
    >>> average_cost_target(torch.tensor([1.0, 2.0]), 1.5, torch.tensor([0.5, -0.5]),
    ...                     torch.tensor(0.25))
    tensor([-0.2500, -0.2500])
    """
    return cost - rho + q_next - centre


def mixture_entropy(centers, samples, sigma: float):
    r"""Plug-in Gaussian-mixture entropy estimate (WPPG Alg. 1), per state.

    ``centers`` ``(M, n, da)`` = ``g(s, z_j)``, ``samples`` ``(L, n, da)`` = ``g(s, z~_l) + sigma xi_l``;

    .. math:: \hat H = -\frac1L\sum_l \log\Big[\frac1M\sum_j \varphi_\sigma(a_l - \mu_j)\Big],

    an estimate of the differential entropy of ``pi(.|s) * N(0, sigma^2 I)``. Returns ``(n,)``.
    """
    if sigma <= 0:
        raise ValidationError(f"the mixture bandwidth sigma must be > 0, got {sigma}")
    M, da = centers.shape[0], centers.shape[-1]
    d2 = ((samples[:, None] - centers[None, :]) ** 2).sum(-1)         # (L, M, n)
    log_phi = -0.5 * d2 / sigma ** 2 - da * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
    log_mix = torch.logsumexp(log_phi, dim=1) - math.log(M)            # (L, n)
    return -log_mix.mean(0)
