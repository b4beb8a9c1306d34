r"""The ``wppg`` scheme: Wasserstein proximal policy gradient (Zhu--Zhang--Gao--Li) as a
transport + heat splitting, on the action grid or with particles.

One step of size ``h`` (costs are minimized):

1. **transport** every action by ``a -> a - h grad_a Q_k(s, a)``, ``Q_k`` the exact soft Q of the
   current (grid) policy;
2. **heat**: convolve with ``N(0, 2 tau h I)`` (reflecting at the action box).

*Grid form* (default). The mass ``m[s, i]`` of cell ``i`` sits at its centre ``x_i`` and moves to
``y_i = x_i - h grad_a Q_k(s, x_i)`` (clamped to the hull of the centres per non-periodic axis),
is deposited by multilinear weights (:mod:`wgflow.kernels.deposition`: mass and first moment
exact), then the exact heat semigroup of the discrete Neumann Laplacian is applied
(:mod:`wgflow.kernels.heat`: mass exact, variance ``+2 tau h`` exact away from the walls).
``grad_a Q`` at the centres comes from the continuous model (``gradient="model"``, exact for
problems built from dynamics) or from centred differences of ``Q`` on the grid
(``gradient="grid"``); ``"auto"`` picks the model when the MDP has a dynamics model.

*Particle form* (``policy0`` a :class:`~wgflow.particles.ParticlePolicy`, or option
``particles=N`` to quantize a grid policy at its quantiles). Particles move by
``a -> a - h grad_a Q_k(s, a)`` with the gradient evaluated *at the particles* by
:meth:`Evaluation.q_at`, are clamped to the box, then receive ``sqrt(2 tau h) xi`` with
``xi ~ N(0, I)`` drawn from ``default_rng([seed, step])`` (common random numbers: the same ``xi``
whatever ``h``; resuming from a frame reproduces the run), reflected at the box walls. ``Q_k`` is
the exact Q of the *grid policy obtained by depositing the particles* (exact evaluation needs a
grid policy); that deposited policy is the state's ``masses`` and gives ``J``.

See ``docs/wppg.md`` for the discrete formulas and the fixed-point analysis.
"""
from __future__ import annotations

import numpy as np

from ..errors import ValidationError
from ..kernels.deposition import deposition_variance, push_forward, push_forward_numpy
from ..kernels.heat import heat_step, heat_step_numpy
from ..mdp import DynamicsModel
from ..policy import Policy
from .base import FixedPointModel, FlowState, Scheme
from .otto import otto_rhs

__all__ = ["WPPG", "centre_gradient", "reflect_into_box"]


def centre_gradient(Q: np.ndarray, actions) -> np.ndarray:
    """Centred differences of ``Q`` ``(nS, nA)`` along each action axis: ``(nS, nA, da)``.

    One-sided differences at the outer cells of non-periodic axes, wrap-around on periodic ones;
    0 along axes with a single cell.
    """
    nS = Q.shape[0]
    q = Q.reshape((nS,) + tuple(actions.shape))
    out = np.zeros((nS, actions.size, actions.ndim))
    for d in range(actions.ndim):
        n, dx = actions.shape[d], actions.spacing[d]
        if n < 2:
            continue
        if actions.periodic[d]:
            g = (np.roll(q, -1, axis=d + 1) - np.roll(q, 1, axis=d + 1)) / (2.0 * dx)
        else:
            g = np.gradient(q, dx, axis=d + 1)
        out[:, :, d] = g.reshape(nS, -1)
    return out


def reflect_into_box(y: np.ndarray, actions) -> np.ndarray:
    """Fold points ``(..., da)`` into the action box by reflection at the walls (method of images);
    periodic axes wrap."""
    y = np.array(y, dtype=float, copy=True)
    for d in range(actions.ndim):
        lo, hi = actions.bounds[d]
        L = hi - lo
        if actions.periodic[d]:
            y[..., d] = lo + np.mod(y[..., d] - lo, L)
        else:
            z = np.mod(y[..., d] - lo, 2.0 * L)
            y[..., d] = lo + np.where(z > L, 2.0 * L - z, z)
    return y


def _clamp(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, periodic) -> np.ndarray:
    for d, per in enumerate(periodic):
        if not per:
            np.clip(y[..., d], lo[d], hi[d], out=y[..., d])
    return y


class WPPG(Scheme):
    r"""Transport ``a -> a - h grad_a Q_k`` then heat ``N(0, 2 tau h)``, on the grid or with particles.

    ``dt`` is the proximal step size ``h`` (``t`` advances by ``h`` per step, so ``t`` is
    comparable with the flow time of ``otto``: the split scheme is a first-order time stepping of
    ``d pi/dt = div(pi grad(Q + tau log pi))``).

    Options
    -------
    gradient : {"auto", "model", "grid"}
        How ``grad_a Q`` is obtained: the MDP's continuous model via ``Evaluation.q_at`` (exact for
        dynamics problems; for tabulated MDPs the derivative of the multilinear interpolation),
        or centred differences of ``Q`` on the action grid (interpolated multilinearly at
        particles). ``"auto"`` (default): ``"model"`` when the MDP has a dynamics model, else
        ``"grid"``.
    particles : int, optional
        Use the particle form with ``N`` particles per state, obtained from a grid ``policy0`` by
        deterministic quantiles (:meth:`ParticlePolicy.from_policy`). Implied when ``policy0``
        is a :class:`~wgflow.particles.ParticlePolicy`.
    seed : int
        Seed of the particle heat noise (default 0); step ``k`` draws from
        ``numpy.random.default_rng([seed, k])``.
    step_fraction : float
        ``suggest_dt`` returns ``step_fraction / max |d^2 Q / da_d^2|`` (default 0.5; the
        quadratic analysis gives stability for ``h < 2 / curvature`` and a monotone transport
        map for ``h < 1 / curvature``).
    heat : {"auto", "kernel", "dct"}
        Heat-step implementation (:func:`wgflow.kernels.heat.heat_step`): the numba
        image-folded kernel, the DCT, or ``"auto"`` (default: the kernel unless it is wide).
    use_numba : bool
        Numba kernels (default) or their numpy twins (then ``heat`` is ignored).
    """

    name = "wppg"

    def __init__(self, mdp, objective, gradient: str = "auto", particles: int | None = None,
                 seed: int = 0, step_fraction: float = 0.5, heat: str = "auto",
                 use_numba: bool = True, **options):
        super().__init__(mdp, objective, **options)
        if gradient not in ("auto", "model", "grid"):
            raise ValidationError(f"wppg: gradient must be 'auto', 'model' or 'grid', got {gradient!r}")
        if gradient == "auto":
            gradient = "model" if isinstance(getattr(mdp, "model", None), DynamicsModel) else "grid"
        self.gradient = gradient
        # the model at every (state, action centre), evaluated on first use (grid form, "model")
        self._centre_model = None
        if particles is not None and (int(particles) != particles or particles < 1):
            raise ValidationError(f"wppg: particles must be a positive integer, got {particles!r}")
        self.n_particles = None if particles is None else int(particles)
        self.seed = int(seed)
        if not step_fraction > 0:
            raise ValidationError(f"wppg: step_fraction must be > 0, got {step_fraction}")
        self.step_fraction = float(step_fraction)
        self.use_numba = bool(use_numba)
        if heat not in ("auto", "kernel", "dct"):
            raise ValidationError(f"wppg: heat must be 'auto', 'kernel' or 'dct', got {heat!r}")
        self.heat_method = heat
        self.particle_form = self.n_particles is not None
        A = mdp.actions
        self._lo = A.bounds[:, 0]
        self._hi = A.bounds[:, 1]
        self._hull_lo = self._lo + 0.5 * A.spacing
        self._hull_hi = self._hi - 0.5 * A.spacing
        self._push = push_forward if self.use_numba else push_forward_numpy
        self._heat = ((lambda m, g, v: heat_step(m, g, v, method=heat)) if self.use_numba
                      else heat_step_numpy)

    # ------------------------------------------------------------------ representation
    def _deposit_particles(self, X: np.ndarray) -> np.ndarray:
        nS, N, _ = X.shape
        return self._push(np.full((nS, N), 1.0 / N), X, self.mdp.actions)

    def _particle_state(self, X, step, t0, info=None):
        X = np.ascontiguousarray(X, dtype=float)
        masses = self._deposit_particles(X)
        return FlowState(t0, masses, self.evaluate(masses),
                         {"particles": X, "step": np.array(int(step), dtype=np.int64)}, info or {})

    def init(self, policy, t0: float = 0.0) -> FlowState:
        from ..particles import ParticlePolicy
        A = self.mdp.actions
        if isinstance(policy, ParticlePolicy):
            X = np.array(policy.positions, dtype=float)
            if X.shape[0] != self.mdp.n_states or X.shape[2] != A.ndim:
                raise ValidationError(f"wppg: particles of shape {X.shape} do not fit the MDP "
                                      f"({self.mdp.n_states} states, {A.ndim}-D actions)")
            if self.n_particles is not None and self.n_particles != X.shape[1]:
                raise ValidationError(f"wppg: particles={self.n_particles} but the ParticlePolicy "
                                      f"has {X.shape[1]} particles per state")
            self.n_particles = X.shape[1]
            self.particle_form = True
            return self._particle_state(X, 0, t0)
        masses = self.initial_masses(policy)
        if self.particle_form:
            pol = policy if isinstance(policy, Policy) else Policy(masses, A, self.mdp.states)
            X = np.array(ParticlePolicy.from_policy(pol, self.n_particles, "quantile").positions)
            return self._particle_state(X, 0, t0)
        return FlowState(t0, masses, self.evaluate(masses))

    def init_from_frame(self, policy, params: dict, t0: float) -> FlowState:
        if "particles" in params:
            X = np.asarray(params["particles"], dtype=float)
            self.n_particles = X.shape[1]
            self.particle_form = True
            return self._particle_state(X, int(np.asarray(params.get("step", 0))), t0)
        return self.init(policy, t0=t0)

    def particles(self, state):
        """The state's :class:`~wgflow.particles.ParticlePolicy` (particle form only)."""
        from ..particles import ParticlePolicy
        if "particles" not in state.params:
            raise ValidationError("wppg: this state has no particles (grid form)")
        return ParticlePolicy(state.params["particles"], self.mdp.actions)

    # ------------------------------------------------------------------ gradients
    def gradient_at(self, evaluation, state_index: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``grad_a Q_k`` at ``points`` ``(n, da)`` of states ``state_index`` ``(n,)``."""
        A = self.mdp.actions
        if self.gradient == "model":
            return evaluation.q_at(self.mdp, state_index, points, grad=True)[1]
        G = centre_gradient(evaluation.Q, A)                                  # (nS, nA, da)
        idx, w = A.interpolation_weights(points)
        return np.einsum("nk,nkd->nd", w, G[state_index[:, None], idx])

    def centre_gradients(self, evaluation) -> np.ndarray:
        """``grad_a Q_k`` at every (state, action centre): ``(nS, nA, da)``."""
        A = self.mdp.actions
        nS = self.mdp.n_states
        if self.gradient == "grid":
            return centre_gradient(evaluation.Q, A)
        s = np.repeat(np.arange(nS), A.size)
        pts = np.tile(A.centers, (nS, 1))
        if self._centre_model is None:
            self._centre_model = FixedPointModel(self.mdp.evaluate_model(s, pts))
        return evaluation.q_at(self._centre_model, s, pts, grad=True)[1].reshape(nS, A.size, A.ndim)

    # ------------------------------------------------------------------ stepping
    def step(self, state: FlowState, dt: float, adaptive: bool = False) -> FlowState:
        if not (np.isfinite(dt) and dt > 0):
            raise ValidationError(f"wppg: step size must be > 0, got {dt}")
        A = self.mdp.actions
        var = 2.0 * self.tau * dt
        if "particles" in state.params:
            X = state.params["particles"]
            nS, N, da = X.shape
            k = int(np.asarray(state.params["step"]))
            s = np.repeat(np.arange(nS), N)
            G = self.gradient_at(state.evaluation, s, X.reshape(-1, da)).reshape(nS, N, da)
            Y = _clamp(X - dt * G, self._lo, self._hi, A.periodic)
            if var > 0:
                xi = np.random.default_rng([self.seed, k]).standard_normal(Y.shape)
                Y = Y + np.sqrt(var) * xi
            Y = reflect_into_box(Y, A)
            self.stats["steps"] += 1
            new = self._particle_state(Y, k + 1, state.t + dt, {"dt": dt})
            return new
        G = self.centre_gradients(state.evaluation)
        Y = A.centers[None, :, :] - dt * G
        Y = _clamp(Y, self._hull_lo, self._hull_hi, A.periodic)
        m = self._push(state.masses, Y, A)
        info = {"dt": dt, "deposition_variance": deposition_variance(state.masses, Y, A)}
        if var > 0:
            m = self._heat(m, A, var)
        self.stats["steps"] += 1
        return FlowState(state.t + dt, m, self.evaluate(m), state.params, info)

    def suggest_dt(self, state: FlowState) -> float:
        """``step_fraction / max |d^2 Q/da_d^2|`` (second differences on the grid); 1 if Q is
        affine in the action (then any step is exact)."""
        A = self.mdp.actions
        nS = state.masses.shape[0]
        q = state.evaluation.Q.reshape((nS,) + tuple(A.shape))
        curv = 0.0
        for d in range(A.ndim):
            if A.shape[d] < 3:
                continue
            q2 = np.diff(q, n=2, axis=d + 1) / A.spacing[d] ** 2
            curv = max(curv, float(np.max(np.abs(q2))))
        return self.step_fraction / curv if curv > 0 else 1.0

    def grad_norm2(self, state) -> float:
        """``|grad_a (Q + tau log pi)|^2`` of the (deposited) grid policy, as for ``otto`` (inf
        where a cell is empty and ``tau > 0``)."""
        w = state.evaluation.weights
        keep = w > 0          # states of weight 0 do not count (and would give 0 * inf)
        return otto_rhs(state.masses[keep], state.evaluation.Q[keep], self.tau, self.mdp.actions,
                        w[keep])[2]
