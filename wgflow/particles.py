r"""Particle policies: ``N`` equally weighted action particles per state.

A :class:`ParticlePolicy` holds positions ``(nS, N, da)`` (float64); state ``s`` carries the
empirical law ``(1/N) sum_k delta_{x_{s,k}}``. Particles may sit anywhere in ``R^da`` (off-grid
actions); an action grid is only needed to convert to / from grid policies.

Conversions (formulas in ``docs/geometry.md``):

* :meth:`ParticlePolicy.from_policy` -- 1-D actions, ``method="quantile"``: ``x_k = Q((k+1/2)/N)``
  with ``Q`` the exact quantile function of the piecewise-constant law (deterministic quantile
  sampling; the empirical law is the best ``N``-atom quantization of the law in ``W_2`` among
  equal-weight ones up to ``O(1/N)``). Multi-D ``"quantile"``: systematic (stratified) sampling
  of the cells in C order at levels ``(k+1/2)/N`` (each cell receives ``floor`` or ``ceil`` of
  ``N m_a`` particles), positions inside the cell from the within-cell mass fraction on axis 0
  and a Kronecker low-discrepancy sequence on the other axes. ``method="random"``: i.i.d.
  samples of the piecewise-constant law (inverse CDF of random levels; uniform in the cell),
  seeded by ``rng``.
* :meth:`ParticlePolicy.to_policy` -- conservative deposition with multilinear weights (mass
  ``1/N`` per particle; points beyond the outermost centre land on the outermost cell), or
  ``rule="nearest"`` (histogram of the containing cells, exact counts).
"""
from __future__ import annotations

import numpy as np

from .errors import ValidationError
from .grids import Grid
from .policy import Policy, _policy_parts
from .transport import _count_le, _emd_state, _knots, _quantile_pc, check_weights

__all__ = ["ParticlePolicy", "particle_distance", "particle_w2sq"]

# Kronecker sequence constants (generalized golden ratios, R_d sequence of Roberts 2018)
def _kronecker_alphas(dim: int) -> np.ndarray:
    phi = 2.0
    for _ in range(50):
        phi = (1.0 + phi) ** (1.0 / (dim + 1))
    return np.mod(1.0 / phi ** np.arange(1, dim + 1), 1.0)


class ParticlePolicy:
    """Equal-weight particle policy: positions ``(nS, N, da)``.

    Parameters
    ----------
    positions : array ``(nS, N, da)`` (or ``(nS, N)`` for 1-D actions)
        Action particles per state; finite.
    actions : Grid, optional
        Action grid used by :meth:`to_policy` (and to check the dimension).

    Examples
    --------
    >>> import numpy as np
    >>> from wgflow.particles import ParticlePolicy
    >>> p = ParticlePolicy(np.zeros((3, 10)))
    >>> p.positions.shape
    (3, 10, 1)
    >>> p.exp(np.ones((3, 10))).mean()[:, 0]
    array([1., 1., 1.])
    """

    def __init__(self, positions, actions: Grid | None = None):
        x = np.array(positions, dtype=np.float64, copy=True)
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3:
            raise ValidationError(f"particle positions must have shape (nS, N, da) or (nS, N), got {np.shape(positions)}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValidationError(f"particle positions need at least one state and one particle, got {x.shape}")
        if not np.all(np.isfinite(x)):
            s, k = np.argwhere(~np.all(np.isfinite(x), axis=2))[0]
            raise ValidationError(f"particle positions contain NaN or inf at state {s}, particle {k}")
        if actions is not None:
            if not isinstance(actions, Grid):
                raise ValidationError(f"actions must be a Grid, got {type(actions).__name__}")
            if actions.ndim != x.shape[2]:
                raise ValidationError(f"particles are {x.shape[2]}-D but the action grid is {actions.ndim}-D")
        x.setflags(write=False)
        self._x = x
        self.actions = actions

    # ------------------------------------------------------------------ views
    @property
    def positions(self) -> np.ndarray:
        """Positions ``(nS, N, da)`` (read-only)."""
        return self._x

    @property
    def n_states(self) -> int:
        return self._x.shape[0]

    @property
    def n_particles(self) -> int:
        return self._x.shape[1]

    @property
    def dim(self) -> int:
        return self._x.shape[2]

    @property
    def weights(self) -> np.ndarray:
        """Particle weights ``(N,)``, all ``1/N``."""
        return np.full(self.n_particles, 1.0 / self.n_particles)

    def mean(self) -> np.ndarray:
        """Mean action per state ``(nS, da)``."""
        return self._x.mean(axis=1)

    def variance(self) -> np.ndarray:
        """Per-axis variance per state ``(nS, da)`` (population variance, weights 1/N)."""
        return self._x.var(axis=1)

    def __repr__(self) -> str:
        return f"<ParticlePolicy: {self.n_states} states x {self.n_particles} particles in {self.dim}-D>"

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_policy(cls, policy, n_particles: int, method: str = "quantile", rng=None) -> "ParticlePolicy":
        r"""Particles representing a grid policy's piecewise-constant law.

        Parameters
        ----------
        policy : Policy (with an action grid)
        n_particles : int
        method : {"quantile", "random"}
            ``"quantile"``: deterministic; 1-D: ``x_k = Q((k + 1/2)/N)``, ``Q`` the exact quantile
            function of the piecewise-constant law. Multi-D: systematic sampling of cells at
            levels ``(k + 1/2)/N`` plus low-discrepancy within-cell positions (module docstring).
            ``"random"``: i.i.d. samples of the piecewise-constant law.
        rng : int or numpy Generator, optional (``"random"`` only)
        """
        m, A = _policy_parts(policy, "policy")
        N = int(n_particles)
        if N < 1 or N != n_particles:
            raise ValidationError(f"n_particles must be a positive integer, got {n_particles!r}")
        if method not in ("quantile", "random"):
            raise ValidationError(f"method must be 'quantile' or 'random', got {method!r}")
        nS = m.shape[0]
        c = _knots(m)
        if method == "quantile":
            u = np.broadcast_to((np.arange(N) + 0.5) / N, (nS, N))
        else:
            gen = np.random.default_rng(rng)
            u = gen.random((nS, N))
        if A.ndim == 1:
            x = _quantile_pc(c, np.ascontiguousarray(u), float(A.bounds[0, 0]), float(A.spacing[0]))
            return cls(x[:, :, None], A)
        n = A.size
        j = np.clip(_count_le(c, np.ascontiguousarray(u)) - 1, 0, n - 1)
        cj = np.take_along_axis(c, j, 1)
        mj = np.take_along_axis(c, j + 1, 1) - cj
        r = np.clip(np.where(mj > 0, (u - cj) / np.where(mj > 0, mj, 1.0), 0.5), 0.0, 1.0)
        if method == "quantile":
            alphas = _kronecker_alphas(A.ndim - 1)
            k = np.arange(N) + 0.5
            others = np.mod(k[:, None] * alphas[None, :], 1.0)          # (N, da-1)
            frac = np.concatenate([r[:, :, None], np.broadcast_to(others, (nS, N, A.ndim - 1))], axis=2)
        else:
            frac = gen.random((nS, N, A.ndim))
        x = A.centers[j] + (frac - 0.5) * A.spacing
        return cls(x, A)

    def to_policy(self, actions: Grid | None = None, rule: str = "linear"):
        r"""Grid policy from the particles: each particle's mass ``1/N`` deposited on the grid.

        ``rule="linear"`` (default): multilinear weights (conservative, keeps the mean for points
        inside the hull of the centres; points beyond the outermost centre land on the
        outermost cell). ``rule="nearest"``: all mass on the cell containing the particle
        (clamped to the box).
        """
        A = actions if actions is not None else self.actions
        if A is None:
            raise ValidationError("to_policy needs an action grid: pass actions=Grid(...)")
        if A.ndim != self.dim:
            raise ValidationError(f"particles are {self.dim}-D but the action grid is {A.ndim}-D")
        nS, N = self.n_states, self.n_particles
        pts = self._x.reshape(-1, self.dim)
        st = np.repeat(np.arange(nS), N)
        if rule == "linear":
            idx, w = A.interpolation_weights(pts)
            flat = (st[:, None] * A.size + idx).ravel()
            masses = np.bincount(flat, weights=w.ravel() / N, minlength=nS * A.size)
        elif rule == "nearest":
            flat = st * A.size + A.cell_index(pts)
            masses = np.bincount(flat, minlength=nS * A.size) / N
        else:
            raise ValidationError(f"rule must be 'linear' or 'nearest', got {rule!r}")
        return Policy(masses.reshape(nS, A.size), A, None, validate=True)

    def exp(self, v) -> "ParticlePolicy":
        """Move every particle by its velocity: ``x + v`` (exact; no clamping).

        ``v`` is ``(nS, N, da)`` (or ``(nS, N)`` for 1-D).
        """
        v = np.asarray(v, dtype=float)
        if v.ndim == 2 and self.dim == 1:
            v = v[:, :, None]
        if v.shape != self._x.shape:
            raise ValidationError(f"particle velocity must have shape {self._x.shape}, got {np.shape(v)}")
        if not np.all(np.isfinite(v)):
            s, k = np.argwhere(~np.all(np.isfinite(v), axis=2))[0]
            raise ValidationError(f"particle velocity contains NaN or inf at state {s}, particle {k}")
        return ParticlePolicy(self._x + v, self.actions)


def _check_particle_pair(p0, p1):
    for nm, p in (("p0", p0), ("p1", p1)):
        if not isinstance(p, ParticlePolicy):
            raise ValidationError(f"{nm} must be a ParticlePolicy, got {type(p).__name__}")
    if p0.n_states != p1.n_states:
        raise ValidationError(f"p0 has {p0.n_states} states but p1 has {p1.n_states}")
    if p0.n_particles != p1.n_particles:
        raise ValidationError(f"p0 has {p0.n_particles} particles per state but p1 has "
                              f"{p1.n_particles}; particle_distance needs equal N")
    if p0.dim != p1.dim:
        raise ValidationError(f"p0 is {p0.dim}-D but p1 is {p1.dim}-D")


def particle_w2sq(p0: ParticlePolicy, p1: ParticlePolicy) -> np.ndarray:
    r"""Exact per-state ``W_2^2`` between the empirical laws, ``(nS,)``.

    1-D: ``W_2^2 = (1/N) sum_k (x_(k) - y_(k))^2`` with sorted positions (the monotone coupling
    is optimal), vectorized over states. Multi-D: POT's network simplex ``ot.emd2`` with uniform
    weights per state (status checked).
    """
    _check_particle_pair(p0, p1)
    if p0.dim == 1:
        x = np.sort(p0.positions[:, :, 0], axis=1)
        y = np.sort(p1.positions[:, :, 0], axis=1)
        return np.mean((x - y) ** 2, axis=1)
    N = p0.n_particles
    a = np.full(N, 1.0 / N)
    return np.array([_emd_state(a, a, p0.positions[s], p1.positions[s], s)[0]
                     for s in range(p0.n_states)])


def particle_distance(p0: ParticlePolicy, p1: ParticlePolicy, weights) -> float:
    r"""``d = (sum_s omega(s) W_2^2(p0_s, p1_s))^{1/2}`` between particle policies (exact).

    ``weights``: probability vector ``(nS,)`` or an Evaluation. See :func:`particle_w2sq`.

    Examples
    --------
    >>> import numpy as np
    >>> from wgflow.particles import ParticlePolicy, particle_distance
    >>> p = ParticlePolicy(np.array([[0.0, 1.0]])); q = ParticlePolicy(np.array([[3.0, 2.0]]))
    >>> particle_distance(p, q, [1.0])
    2.0
    """
    d2 = particle_w2sq(p0, p1)
    om = check_weights(weights, p0.n_states)
    return float(np.sqrt(max(float(om @ d2), 0.0)))
