r"""The ``otto`` scheme: explicit steps of the semi-discrete Wasserstein gradient flow.

Per state ``s`` the masses follow the conservative finite-volume scheme

.. math:: \frac{dm_i}{dt} = -\sum_{\text{faces } i\to j} F_{i\to j}(m, Q^{\pi}),

with Scharfetter--Gummel fluxes on the faces between neighbouring action cells, dimension by
dimension (:mod:`wgflow.kernels.fluxes`), and ``Q^pi`` the exact soft Q of the current policy,
re-evaluated every step. It keeps mass per state to rounding, positivity under the CFL bound
``dt * max_i rate_i <= 1``, the discrete Gibbs state ``m ~ exp(-Q/tau)`` stationary, and dissipates
exactly: ``dJ/dt = -kappa * sum_s w(s) sum_faces theta |psi_j - psi_i|^2 / h^2`` with
``psi = Q + tau log(m / vol)``, ``theta >= 0`` and ``kappa = 1/(1-gamma)`` (discounted) or 1.
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from ..kernels.fluxes import sg_flux, sg_flux_numpy
from .base import FlowState, Scheme, grid_potential

__all__ = ["Otto", "otto_rhs"]


def _axis_views(shape, d):
    outer = int(np.prod(shape[:d + 1])) // shape[d]
    return outer, shape[d], int(np.prod(shape[d + 1:]))


def otto_rhs(masses, Q, tau, actions, weights=None, use_numba=True):
    """Right-hand side of the semi-discrete flow for frozen ``Q``.

    Returns ``(dm, rate, dissipation)``: ``dm`` ``(nS, nA)`` the time derivative of the masses,
    ``rate`` ``(nS, nA)`` the outflow rate of each cell (CFL), and, when ``weights`` are given,
    ``sum_s w(s) sum_faces -F (psi_j - psi_i)`` (the squared gradient norm; ``inf`` when a mass is
    zero while ``tau > 0``: Fisher information is infinite there).
    """
    nS = masses.shape[0]
    shape = (nS,) + tuple(actions.shape)
    m = masses.reshape(shape)
    q = Q.reshape(shape)
    dm = np.zeros(shape)
    rate = np.zeros(shape)
    diss = 0.0
    psi = None
    if weights is not None:
        psi = grid_potential(masses, Q, tau, actions.cell_volume).reshape(shape)
    for d in range(actions.ndim):
        if actions.shape[d] < 2:
            continue
        o, n, i = _axis_views(shape, d + 1)
        m3, q3 = m.reshape(o, n, i), q.reshape(o, n, i)
        F, r = (sg_flux if use_numba else sg_flux_numpy)(m3, q3, tau, actions.spacing[d])
        dm3 = dm.reshape(o, n, i)
        dm3[:, :-1, :] -= F
        dm3[:, 1:, :] += F
        rate += r.reshape(shape)
        if psi is not None:
            p3 = psi.reshape(o, n, i)
            with np.errstate(invalid="ignore"):
                dpsi = p3[:, 1:, :] - p3[:, :-1, :]
                term = np.where(F == 0.0, 0.0, -F * dpsi)
            per_state = term.reshape(nS, -1).sum(axis=1)
            diss += float(np.sum(weights * per_state))
    return dm.reshape(masses.shape), rate.reshape(masses.shape), diss


class Otto(Scheme):
    """Explicit (forward Euler) steps of the semi-discrete flow with exact Q every step.

    Options
    -------
    cfl : float
        Fraction of the positivity bound ``1 / max rate`` used by adaptive steps (default 0.5).
    monotone : bool
        Adaptive steps only: reject (and halve) a step that increases ``J`` (default True).
    """

    name = "otto"

    def __init__(self, mdp, objective, cfl: float = 0.5, monotone: bool = True, **options):
        super().__init__(mdp, objective, **options)
        if not 0 < cfl <= 1:
            raise ValidationError(f"cfl must be in (0, 1], got {cfl}")
        self.cfl = cfl
        self.monotone = monotone
        self._dt_prev = None

    @property
    def adaptive(self) -> bool:
        return True

    def _rhs(self, state, with_dissipation=False):
        # cached on the state: suggest_dt, step and grad_norm2 all need it
        key = "_rhs_diss" if with_dissipation else "_rhs"
        if with_dissipation and state.evaluation.weights is None:
            # steps skip the occupancy solve; frames that report the gradient norm need it
            state.evaluation = self.evaluate(state.masses)
        if key not in state.info:
            w = state.evaluation.weights if with_dissipation else None
            state.info[key] = otto_rhs(state.masses, state.evaluation.Q, self.tau, self.mdp.actions, w)
            if with_dissipation:
                state.info["_rhs"] = state.info[key]
        return state.info[key]

    def grad_norm2(self, state) -> float:
        return self._rhs(state, True)[2]

    def suggest_dt(self, state) -> float:
        _, rate, _ = self._rhs(state)
        rmax = float(rate.max())
        bound = self.cfl / rmax if rmax > 0 else np.inf
        if self._dt_prev is not None:
            bound = min(bound, 2.0 * self._dt_prev)
        return bound

    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        dm, rate, _ = self._rhs(state)
        rmax = float(rate.max())
        if not adaptive and dt * rmax > 1.0 + 1e-12:
            raise ValidationError(
                f"otto: dt = {dt:g} exceeds the positivity (CFL) bound 1/max_rate = {1.0 / rmax:g}; "
                "use a smaller dt or dt=None for adaptive steps")

        def propose(h):
            new = state.masses + h * dm
            if np.min(new) < 0.0:
                # rounding can leave -1e-18 on emptied cells; anything larger is a real violation
                if np.min(new) < -1e-14:
                    return None
                new = np.maximum(new, 0.0)
            ev = self.evaluate(new, weights=False)
            return FlowState(state.t + h, new, ev, state.params, {"dt": h, "max_rate": rmax})

        return self._accept_or_halve(state, dt, adaptive, propose)
