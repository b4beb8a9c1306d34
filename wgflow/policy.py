"""Policies on a finite MDP: probability masses ``(nS, nA)`` over the action cells.

``policy.masses[s, a]`` is the probability of action cell ``a`` in state ``s``; rows sum to 1.
``policy.density = masses / actions.cell_volume`` is the density of the piecewise-constant law
the grid represents, w.r.t. Lebesgue measure on the action box.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, xlogy

from . import validation
from .errors import ValidationError
from .grids import Grid
from .mdp import ROW_SUM_TOL  # noqa: F401  (re-exported)

__all__ = ["Policy", "gibbs_masses", "check_masses"]


def check_masses(masses, n_states: int | None = None, n_actions: int | None = None,
                 name: str = "masses") -> np.ndarray:
    """Validate a ``(nS, nA)`` array of per-state probability masses (nothing is renormalized);
    see :func:`wgflow.validation.masses`."""
    return validation.masses(masses, n_states, n_actions, name)


def _log_cell_probabilities(z):
    """``log(Phi(z[..., k+1]) - Phi(z[..., k]))`` accurate in both tails (``z`` increasing).

    ``-inf`` for a cell whose larger tail probability is already below the smallest float in
    log space (``log Phi(b) = -inf``): its probability is zero to any representable precision.
    """
    lo, hi = z[..., :-1], z[..., 1:]
    upper = lo > 0      # above the mean use the upper tail: Phi(-lo) - Phi(-hi)
    a = np.where(upper, -hi, lo)
    b = np.where(upper, -lo, hi)
    lb, la = log_ndtr(b), log_ndtr(a)
    # (la - lb would be -inf - -inf = NaN where both tails underflow, as they do for cells
    # thousands of standard deviations from the mean with a std of 1e-160)
    dead = lb == -np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        out = lb + np.log1p(-np.exp(np.minimum(la - lb, 0.0)))
    return np.where(dead, -np.inf, out)


def gibbs_masses(Q: np.ndarray, tau: float) -> np.ndarray:
    """Masses ``proportional to exp(-Q / tau)`` per state, computed stably (``tau > 0``).

    Raises :class:`~wgflow.errors.ValidationError` for ``tau`` not a finite positive number and
    for a state whose smallest ``Q`` is NaN or infinite (no Gibbs law)."""
    if not (isinstance(tau, (int, float, np.floating, np.integer)) and np.isfinite(tau) and tau > 0):
        raise ValidationError(f"gibbs_masses: tau must be a finite number > 0, got {tau!r}")
    qmin = Q.min(axis=1, keepdims=True)
    if not np.all(np.isfinite(qmin)):
        s = int(np.flatnonzero(~np.isfinite(qmin.ravel()))[0])
        raise ValidationError(f"gibbs_masses: Q of state {s} has no finite minimum (NaN or inf: "
                              f"{qmin[s, 0]!r}); its Gibbs law is undefined")
    z = -(Q - qmin) / tau
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _per_state(value, n_states, dim, name):
    """Broadcast a scalar / ``(dim,)`` / ``(nS,)`` / ``(nS, dim)`` parameter to ``(nS, dim)``."""
    v = np.asarray(value, dtype=float)
    if v.ndim == 0:
        v = np.full((n_states, dim), float(v))
    elif v.ndim == 1 and v.size == dim and not (dim == 1 and v.size == n_states and n_states != 1):
        v = np.broadcast_to(v, (n_states, dim))
    elif v.ndim == 1 and v.size == n_states:
        if dim != 1:
            raise ValidationError(f"{name} of shape ({n_states},) is ambiguous for {dim}-D actions; "
                                  f"give ({n_states}, {dim})")
        v = v[:, None]
    if v.shape != (n_states, dim):
        raise ValidationError(f"{name} must be a scalar, ({dim},), ({n_states},) or ({n_states}, {dim}); "
                              f"got shape {np.shape(value)}")
    if not np.all(np.isfinite(v)):
        raise ValidationError(f"{name} contains NaN or inf")
    return np.array(v)


#: how far (relative to the box's width) an action may lie outside the action box and still
#: count as on its boundary: rounding of a computed action, e.g. ``lo + n * h`` for ``hi``
BOX_SLACK = 1e-12


def _check_in_box(pts, A: Grid, states: Grid | None) -> None:
    """Refuse actions ``(nS, da)`` outside the (non-periodic axes of the) action box."""
    lo, hi = A.bounds[:, 0], A.bounds[:, 1]
    slack = BOX_SLACK * (hi - lo)
    out = ((pts < lo - slack) | (pts > hi + slack)) & ~np.asarray(A.periodic, dtype=bool)
    if np.any(out):
        s, d = (int(i) for i in np.argwhere(out)[0])
        at = "" if states is None else f" (centre {states.centers[s].tolist()})"
        box = " x ".join(f"[{a:g}, {b:g}]" for a, b in zip(lo, hi))
        axis = "" if A.ndim == 1 else f" on action axis {d}"
        raise ValidationError(f"Policy.deterministic: the action {pts[s].tolist()} of state {s}{at} "
                              f"lies outside the action box {box}{axis} ({np.count_nonzero(out.any(axis=1))} "
                              f"state(s) do); clip the actions (np.clip) if the edge cell is meant")


class Policy:
    """A stochastic policy stored as masses ``(nS, nA)`` on the MDP's action cells.

    Build with :meth:`uniform`, :meth:`gaussian`, :meth:`deterministic` or :meth:`from_masses`.

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("quadratic_bandit")
    >>> pi = wg.Policy.gaussian(mdp, mean=0.5, std=0.3)
    >>> float(pi.masses.sum())
    1.0
    """

    def __init__(self, masses, actions: Grid | None = None, states: Grid | None = None,
                 validate: bool = True):
        m = check_masses(masses) if validate else np.ascontiguousarray(masses, dtype=float)
        if actions is not None and actions.size != m.shape[1]:
            raise ValidationError(f"masses have {m.shape[1]} actions but the action grid has {actions.size} cells")
        if states is not None and states.size != m.shape[0]:
            raise ValidationError(f"masses have {m.shape[0]} states but the state grid has {states.size} cells")
        self._masses = np.array(m, dtype=float, copy=True)   # never freeze the caller's array
        self._masses.setflags(write=False)
        self.actions = actions
        self.states = states

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_masses(cls, mdp, masses) -> "Policy":
        """Policy with the given masses (validated: finite, >= 0, rows sum to 1 within 1e-10)."""
        m = check_masses(masses, mdp.n_states, mdp.n_actions)
        return cls(m, mdp.actions, mdp.states, validate=False)

    @classmethod
    def uniform(cls, mdp) -> "Policy":
        """Uniform masses over the action cells in every state."""
        return cls(np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions), mdp.actions,
                   mdp.states, validate=False)

    @classmethod
    def gaussian(cls, mdp, mean, std) -> "Policy":
        r"""Diagonal Gaussian ``N(mean(s), diag(std(s)^2))`` restricted to the action box.

        Each cell gets the Gaussian probability of the cell (products of normal-CDF differences
        per axis), then each state is normalized over the box: the law is the Gaussian
        conditioned on the box. ``mean`` and ``std`` are scalars, ``(da,)``, ``(nS,)`` (1-D
        actions), ``(nS, da)`` or callables of the state centres ``(nS, ds)``.

        Degenerate laws are their limits, as the conditioned Gaussian gives them to rounding: a
        ``std`` far below the cell width puts the mass on the cell of the mean (half on each
        side when the mean lies on a cell edge), as ``deterministic(rule="nearest")`` does; a
        mean so far outside the box that the box's probability underflows even in log space
        (beyond about ``1e154`` standard deviations) puts it on the edge cell nearest to the
        mean, where the conditioned law concentrates. ``std <= 0``, NaN or inf raise
        :class:`~wgflow.ValidationError`.
        """
        A = mdp.require_actions("Policy.gaussian")
        nS = mdp.n_states
        if callable(mean):
            mean = mean(mdp.states.centers if mdp.states is not None else np.arange(nS)[:, None])
        if callable(std):
            std = std(mdp.states.centers if mdp.states is not None else np.arange(nS)[:, None])
        mu = _per_state(mean, nS, A.ndim, "mean")
        sd = _per_state(std, nS, A.ndim, "std")
        if np.any(sd <= 0):
            raise ValidationError("std must be > 0 (use Policy.deterministic for point masses)")
        masses = np.ones((nS, 1))
        for d in range(A.ndim):
            edges = A.bounds[d, 0] + np.arange(A.shape[d] + 1) * A.spacing[d]
            with np.errstate(over="ignore"):     # (a tiny std: z = +-inf is what is meant)
                z = (edges[None, :] - mu[:, d:d + 1]) / sd[:, d:d + 1]
            logp = _log_cell_probabilities(z)
            top = logp.max(axis=1, keepdims=True)
            # no cell with representable mass: only a mean outside the box by more than ~1e154
            # std (a mean inside keeps log Phi >= log 1/2 on its cell); the conditioned law is
            # then the edge cell nearest to the mean
            lost = ~np.isfinite(top[:, 0])
            if np.any(lost):
                logp[lost] = -np.inf
                logp[lost & (mu[:, d] < edges[0]), 0] = 0.0
                logp[lost & (mu[:, d] > edges[-1]), -1] = 0.0
                top[lost] = 0.0
            p = np.exp(logp - top)
            masses = (masses[:, :, None] * (p / p.sum(axis=1, keepdims=True))[:, None, :]).reshape(nS, -1)
        return cls(masses, A, mdp.states, validate=True)

    @classmethod
    def deterministic(cls, mdp, action, rule: str = "nearest") -> "Policy":
        """A point mass per state at ``action(s)``.

        ``rule="nearest"``: all mass on the action cell containing the point (one-hot masses, what
        policy iteration returns). ``rule="linear"``: multilinear deposition on the neighbouring
        cells, which keeps the mean action exact. ``action`` is as ``mean`` in :meth:`gaussian`,
        or an integer array ``(nS,)`` of action-cell indices when ``rule="index"``.

        An action outside the action box (on a non-periodic axis, by more than ``1e-12`` of the
        box's width: rounding) raises :class:`~wgflow.ValidationError` naming the state, the
        action and the box; nothing is moved onto the edge cell silently (``np.clip`` the
        actions first if that is meant). Periodic action axes wrap.
        """
        validation.choice(rule, "rule", ("nearest", "linear", "index"), "Policy.deterministic")
        nS, nA = mdp.n_states, mdp.n_actions
        masses = np.zeros((nS, nA))
        if rule == "index":
            idx = np.asarray(action)
            if idx.shape != (nS,) or not np.issubdtype(idx.dtype, np.integer):
                raise ValidationError(f"action indices must be an integer array ({nS},)")
            if np.any((idx < 0) | (idx >= nA)):
                s = int(np.nonzero((idx < 0) | (idx >= nA))[0][0])
                raise ValidationError(f"action index {idx[s]} of state {s} is outside [0, {nA})")
            masses[np.arange(nS), idx] = 1.0
            return cls(masses, mdp.actions, mdp.states, validate=False)
        A = mdp.require_actions("Policy.deterministic")
        if callable(action):
            action = action(mdp.states.centers)
        pts = _per_state(action, nS, A.ndim, "action")
        _check_in_box(pts, A, mdp.states)
        if rule == "nearest":
            masses[np.arange(nS), A.cell_index(pts)] = 1.0
        else:
            idx, w = A.interpolation_weights(pts)
            np.add.at(masses, (np.repeat(np.arange(nS), idx.shape[1]), idx.ravel()), w.ravel())
        return cls(masses, A, mdp.states, validate=False)

    # ------------------------------------------------------------------ views
    @property
    def masses(self) -> np.ndarray:
        """Probability masses ``(nS, nA)`` (read-only)."""
        return self._masses

    @property
    def n_states(self) -> int:
        return self._masses.shape[0]

    @property
    def n_actions(self) -> int:
        return self._masses.shape[1]

    @property
    def density(self) -> np.ndarray:
        """``masses / actions.cell_volume``: density w.r.t. Lebesgue measure on the action box."""
        if self.actions is None:
            raise ValidationError("policy.density needs an action grid; this policy has none")
        return self._masses / self.actions.cell_volume

    def mean(self) -> np.ndarray:
        """Mean action per state (cell centres as atoms), ``(nS, da)``."""
        A = self._require_actions("mean")
        return self._masses @ A.centers

    def variance(self, piecewise_constant: bool = True) -> np.ndarray:
        """Per-axis action variance per state ``(nS, da)``.

        With ``piecewise_constant`` (default) the law is the piecewise-constant density, whose
        variance is the atoms' variance plus ``h^2 / 12`` per axis.
        """
        A = self._require_actions("variance")
        mu = self.mean()
        var = self._masses @ (A.centers ** 2) - mu ** 2
        if piecewise_constant:
            var = var + A.spacing ** 2 / 12.0
        return var

    def entropy(self) -> np.ndarray:
        """Differential entropy ``-sum_a pi log pi_density`` per state ``(nS,)``."""
        vol = self._require_actions("entropy").cell_volume
        return -np.sum(xlogy(self._masses, self._masses / vol), axis=1)

    def greedy(self) -> np.ndarray:
        """Index of the most likely action cell per state."""
        return np.argmax(self._masses, axis=1)

    def _require_actions(self, what):
        if self.actions is None:
            raise ValidationError(f"policy.{what} needs an action grid; this policy has none")
        return self.actions

    def copy(self) -> "Policy":
        return Policy(self._masses.copy(), self.actions, self.states, validate=False)

    def __repr__(self) -> str:
        return f"<Policy: {self.n_states} states x {self.n_actions} actions>"

    def __eq__(self, other):
        if not isinstance(other, Policy):
            return NotImplemented
        return np.array_equal(self._masses, other._masses) and self.actions == other.actions

    __hash__ = None


def _policy_parts(pi, name: str = "policy"):
    """``(masses, actions)`` of a Policy, re-validated (negative masses etc. raise)."""
    if not isinstance(pi, Policy):
        raise ValidationError(f"{name} must be a wgflow Policy, got {type(pi).__name__}")
    if pi.actions is None:
        raise ValidationError(f"{name} has no action grid; the geometry needs one "
                              "(build the MDP with actions=Grid(...))")
    m = pi.masses
    # fast path (two passes); anything suspicious goes through check_masses for the message
    sums = m.sum(axis=1) if m.ndim == 2 else None
    if (sums is None or m.shape[1] != pi.actions.size or not np.all(np.isfinite(sums))
            or m.min() < 0 or np.any(np.abs(sums - 1.0) > ROW_SUM_TOL)):
        m = check_masses(m, n_actions=pi.actions.size, name=f"{name}.masses")
    return np.asarray(m, dtype=float), pi.actions
