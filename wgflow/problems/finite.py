"""Finite and single-state problems."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ValidationError
from ..grids import Grid
from .registry import dynamics, register


@register
def garnet(n_states=50, n_actions=10, branching=5, seed=0, cost_low=0.0, cost_high=1.0):
    """Random finite MDP (Garnet): each (s, a) reaches ``branching`` distinct random states.

    Transition probabilities are the gaps of sorted uniforms; costs are uniform on
    [cost_low, cost_high]. Actions carry a 1-D coordinate: the action grid is ``n_actions`` cells
    on [0, 1], so the Wasserstein geometry applies. Reproducible from ``seed``.
    """
    from ..mdp import MDP
    if not 1 <= branching <= n_states:
        raise ValidationError(f"problem 'garnet': parameter branching must be in [1, n_states = "
                              f"{n_states}], got {branching}")
    if not cost_low <= cost_high:
        raise ValidationError(f"problem 'garnet': parameter cost_low ({cost_low!r}) must be <= "
                              f"cost_high ({cost_high!r}); the costs are uniform on "
                              "[cost_low, cost_high]")
    if not np.isfinite(cost_high - cost_low):
        raise ValidationError(f"problem 'garnet': the cost range [{cost_low!r}, {cost_high!r}] is "
                              "wider than a float can hold")
    rng = np.random.default_rng(seed)
    n = n_states * n_actions
    # random keys drawn in row chunks (the same stream as one (n, n_states) draw, so seeds give
    # the same MDPs) to keep memory at ~8 MB whatever n * n_states is
    chunk = max(1, 1_000_000 // n_states)
    cols = np.concatenate([np.argsort(rng.random((min(chunk, n - r), n_states)), axis=1)[:, :branching]
                           for r in range(0, n, chunk)])
    cuts = np.sort(rng.random((n, branching - 1)), axis=1)
    probs = np.diff(np.concatenate([np.zeros((n, 1)), cuts, np.ones((n, 1))], axis=1), axis=1)
    P = sp.csr_matrix((probs.ravel(), cols.ravel(), np.arange(0, n * branching + 1, branching)),
                      shape=(n, n_states))
    C = rng.uniform(cost_low, cost_high, size=(n_states, n_actions))
    return MDP(P, C, states=None, actions=Grid([(0.0, 1.0)], [n_actions], names=["action"], units=[""]))


@register
@dynamics
def quadratic_bandit(n_actions=201, a_max=4.0, curvature=1.0, center=0.0):
    """One state, cost curvature/2 * (a - center)^2 on [-a_max, a_max].

    The soft-optimal policy is the Gaussian N(center, tau / curvature) restricted to the box.
    """
    S = Grid([(0.0, 1.0)], [1], names=["s"], units=[""])
    Ac = Grid([(-a_max, a_max)], [n_actions], names=["a"], units=[""])
    return dict(states=S, actions=Ac, noise=0.0, drift=lambda s, a: s.copy(),
                cost=lambda s, a: 0.5 * curvature * (a[:, 0] - center) ** 2,
                drift_da=lambda s, a: np.zeros((s.shape[0], 1, 1)),
                cost_da=lambda s, a: curvature * (a - center))
