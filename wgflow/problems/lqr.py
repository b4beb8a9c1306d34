"""Linear-quadratic problems (closed forms in docs/lqr.md)."""
from __future__ import annotations

import numpy as np

from ..grids import Grid
from .registry import dynamics, register


@register
@dynamics
def lqr1d(n_states=101, n_actions=61, x_max=5.0, a_max=4.0, A=0.9, B=1.0, q=1.0, r=1.0,
          noise=0.5, noise_cutoff=6.0):
    """Scalar linear-quadratic regulator: x' = A x + B a + noise*xi, cost q x^2 + r a^2.

    States on [-x_max, x_max] (n_states cells), actions on [-a_max, a_max] (n_actions cells).
    With entropy tau the optimal policy is Gaussian with mean -K x (K from the discounted Riccati
    equation) and variance tau / (2 (r + gamma p B^2)) away from the box edges (docs/lqr.md).
    """
    S = Grid([(-x_max, x_max)], [n_states], names=["x"], units=[""])
    Ac = Grid([(-a_max, a_max)], [n_actions], names=["a"], units=[""])
    return dict(
        states=S, actions=Ac, noise=noise, noise_cutoff=noise_cutoff,
        drift=lambda s, a: A * s + B * a,
        cost=lambda s, a: q * s[:, 0] ** 2 + r * a[:, 0] ** 2,
        drift_da=lambda s, a: np.full((s.shape[0], 1, 1), float(B)),
        cost_da=lambda s, a: 2.0 * r * a,
    )


@register
@dynamics
def lqr2d(n_states=(21, 21), n_actions=(7, 7), x_max=4.0, a_max=3.0,
          A=((0.9, 0.2), (0.0, 0.9)), B=((1.0, 0.0), (0.0, 1.0)), q=1.0, r=1.0, noise=0.3,
          noise_cutoff=6.0):
    """Two-dimensional LQR with 2-D actions: x' = A x + B a + noise*xi, cost q|x|^2 + r|a|^2.

    States on [-x_max, x_max]^2, actions on [-a_max, a_max]^2 (multi-D action geometry).
    """
    A = np.asarray(A, dtype=float)
    B = np.asarray(B, dtype=float)
    S = Grid([(-x_max, x_max)] * 2, list(np.broadcast_to(n_states, (2,))), names=["x1", "x2"],
             units=["", ""])
    da = B.shape[1]
    Ac = Grid([(-a_max, a_max)] * da, list(np.broadcast_to(n_actions, (da,))),
              names=[f"a{i + 1}" for i in range(da)], units=[""] * da)
    return dict(
        states=S, actions=Ac, noise=noise, noise_cutoff=noise_cutoff,
        drift=lambda s, a: s @ A.T + a @ B.T,
        cost=lambda s, a: q * np.sum(s ** 2, axis=1) + r * np.sum(a ** 2, axis=1),
        drift_da=lambda s, a: np.broadcast_to(B, (s.shape[0],) + B.shape),
        cost_da=lambda s, a: 2.0 * r * a,
    )
