"""Finite (discretized) Markov decision processes with costs.

An :class:`MDP` holds ``P``, a ``scipy.sparse.csr_matrix`` of shape ``(nS*nA, nS)`` whose row
``s*nA + a`` is the next-state law of ``(s, a)``, and ``C``, a float64 array ``(nS, nA)`` of
costs (costs are minimized; rewards are converted once, ``cost = -reward``). It may carry the
``states`` and ``actions`` grids and, when built from dynamics, the continuous model so that
transitions and costs -- and their action-derivatives -- can be evaluated at off-grid actions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from . import validation
from .errors import ValidationError
from .grids import Grid
from .validation import ROW_SUM_TOL

__all__ = ["MDP", "DynamicsModel", "TabulatedModel", "ROW_SUM_TOL"]
#: number of state-action pairs processed at once when building ``P`` from dynamics
_CHUNK = 1 << 15


# ---------------------------------------------------------------------------------------------
# continuous models: what can be evaluated at off-grid actions
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelEval:
    """A model evaluated at ``n`` (state cell, action point) pairs.

    ``idx, w`` ``(n, K)``: next-state cells and probabilities; ``dw`` ``(n, K, da)``: derivative of
    the probabilities w.r.t. the action; ``cost`` ``(n,)`` and ``dcost`` ``(n, da)``.
    """

    idx: np.ndarray
    w: np.ndarray
    dw: np.ndarray
    cost: np.ndarray
    dcost: np.ndarray

    def expect(self, u: np.ndarray):
        """``E[u(s')]`` and its action gradient, for values ``u`` ``(nS,)``."""
        ui = u[self.idx]
        return np.sum(self.w * ui, axis=1), np.einsum("nk,nkd->nd", ui, self.dw)


def _fd_jacobian(f, s, a, out_dim, scale):
    """Central differences of ``f(s, a)`` w.r.t. ``a``: array ``(n, out_dim, da)``."""
    n, da = a.shape
    jac = np.empty((n, out_dim, da))
    for d in range(da):
        eps = 6e-6 * scale[d]
        ap, am = a.copy(), a.copy()
        ap[:, d] += eps
        am[:, d] -= eps
        jac[:, :, d] = (np.reshape(f(s, ap), (n, out_dim)) - np.reshape(f(s, am), (n, out_dim))) / (2 * eps)
    return jac


@dataclass
class DynamicsModel:
    """Continuous model ``s' = drift(s, a) + noise * xi`` with cost ``cost(s, a)``.

    ``noise`` is one standard deviation per state dimension; ``0`` on an axis means deterministic
    motion along it, deposited by linear interpolation onto the two neighbouring cells; ``> 0``
    means the Gaussian density evaluated at the cell centres and normalized over the grid
    (truncated beyond ``noise_cutoff`` standard deviations). ``terminal(s) -> bool`` marks states
    whose next-state law is ``reset`` (a probability vector over states) or, when ``reset`` is
    None, themselves (absorbing); terminal states cost 0. ``entry_cost`` is charged once per unit
    of probability that a transition from a non-terminal state deposits on terminal states
    (e.g. ``-100`` for reaching a goal): the cost follows the deposited mass, so a goal reached
    by a fraction of the mass is charged for that fraction only, and exactly once.
    """

    states: Grid
    actions: Grid
    drift: Callable
    cost: Callable
    noise: np.ndarray
    noise_cutoff: float = 6.0
    drift_da: Callable | None = None
    cost_da: Callable | None = None
    terminal: Callable | None = None
    reset: np.ndarray | None = None
    entry_cost: float = 0.0
    _terminal_mask: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        noise = validation.array(self.noise, "noise", "MDP.from_dynamics", finite=False)
        if noise.ndim > 1 or (noise.ndim == 1 and noise.size not in (1, self.states.ndim)):
            raise ValidationError(f"noise must be a scalar or one standard deviation per state axis "
                                  f"({self.states.ndim}), got shape {noise.shape}")
        self.noise = np.broadcast_to(noise.reshape(-1) if noise.ndim else noise, (self.states.ndim,)).copy()
        if np.any(~np.isfinite(self.noise)) or np.any(self.noise < 0):
            raise ValidationError(f"noise must be finite and >= 0 per state dimension, got {self.noise}")
        if not self.noise_cutoff > 0:
            raise ValidationError(f"noise_cutoff must be > 0, got {self.noise_cutoff}")
        if self.reset is not None:
            self.reset = _check_prob_vector(self.reset, self.states.size, "reset")
        self.entry_cost = float(self.entry_cost)
        if not np.isfinite(self.entry_cost):
            raise ValidationError(f"entry_cost must be finite, got {self.entry_cost}")

    @property
    def terminal_mask(self) -> np.ndarray:
        if self._terminal_mask is None:
            if self.terminal is None:
                self._terminal_mask = np.zeros(self.states.size, dtype=bool)
            else:
                self._terminal_mask = np.asarray(self.terminal(self.states.centers), dtype=bool).reshape(-1)
                if self._terminal_mask.shape != (self.states.size,):
                    raise ValidationError("terminal(s) must return one boolean per state")
        return self._terminal_mask

    def _drift(self, s, a):
        m = np.asarray(self.drift(s, a), dtype=float)
        if m.size != s.shape[0] * self.states.ndim:
            raise ValidationError(f"drift(s, a) must return shape ({s.shape[0]}, {self.states.ndim}) for "
                                  f"{s.shape[0]} state-action pairs, got {m.shape}")
        m = m.reshape(s.shape[0], self.states.ndim)
        if not np.all(np.isfinite(m)):
            bad = int(np.nonzero(~np.all(np.isfinite(m), axis=1))[0][0])
            raise ValidationError(f"drift returned NaN/inf at state {s[bad]}, action {a[bad]}")
        return m

    def _cost(self, s, a):
        c = np.asarray(self.cost(s, a), dtype=float)
        if c.size != s.shape[0]:
            raise ValidationError(f"cost(s, a) must return shape ({s.shape[0]},), got {c.shape}")
        c = c.reshape(-1)
        if not np.all(np.isfinite(c)):
            bad = int(np.nonzero(~np.isfinite(c))[0][0])
            raise ValidationError(f"cost returned NaN/inf at state {s[bad]}, action {a[bad]}")
        return c

    def _add_entry_cost(self, idx, w, dw, cost, dcost=None):
        """Add ``entry_cost * P(next state terminal)`` (and its action gradient) to the cost."""
        if self.entry_cost == 0.0 or not np.any(self.terminal_mask):
            return cost, dcost
        into = self.terminal_mask[idx]
        cost = cost + self.entry_cost * np.sum(w * into, axis=1)
        if dcost is not None and dw is not None:
            dcost = dcost + self.entry_cost * np.einsum("nk,nkd->nd", into.astype(float), dw)
        return cost, dcost

    def stencil(self, s, a, derivatives: bool = False):
        """Next-state stencil at state points ``s`` and action points ``a``: ``(idx, w, dw_ds')``."""
        m = self.states.wrap(self._drift(s, a))
        per_axis = []
        for d in range(self.states.ndim):
            if self.noise[d] > 0:
                per_axis.append(self.states.gaussian_stencil(m[:, d], self.noise[d], d, self.noise_cutoff))
            else:
                per_axis.append(self.states.linear_stencil(m[:, d], d))
        return self.states.combine_stencils(per_axis)

    def evaluate(self, state_index, a) -> ModelEval:
        """Evaluate the model at state cells ``state_index`` ``(n,)`` and action points ``a``."""
        state_index = np.asarray(state_index, dtype=np.int64).reshape(-1)
        a = self.actions.as_points(a, "actions")
        s = self.states.centers[state_index]
        idx, w, dw_dm = self.stencil(s, a)
        jac = (self.drift_da(s, a) if self.drift_da is not None
               else _fd_jacobian(self._drift, s, a, self.states.ndim, self.actions.spacing * self.actions.shape))
        jac = np.asarray(jac, dtype=float).reshape(s.shape[0], self.states.ndim, self.actions.ndim)
        dw = np.einsum("nke,ned->nkd", dw_dm, jac)
        cost = self._cost(s, a)
        dcost = (self.cost_da(s, a) if self.cost_da is not None
                 else _fd_jacobian(self._cost, s, a, 1, self.actions.spacing * self.actions.shape)[:, 0, :])
        dcost = np.asarray(dcost, dtype=float).reshape(s.shape[0], self.actions.ndim)
        cost, dcost = self._add_entry_cost(idx, w, dw, cost, dcost)
        term = self.terminal_mask[state_index]
        if np.any(term):
            idx, w, dw, cost, dcost = _apply_terminal(self, state_index, term, idx, w, dw, cost, dcost)
        return ModelEval(idx, w, dw, cost, dcost)


def _apply_terminal(model, state_index, term, idx, w, dw, cost, dcost):
    """Replace the rows of terminal states by the reset law (or a self-loop); cost 0."""
    if model.reset is not None:
        support = np.nonzero(model.reset)[0]
        K = max(idx.shape[1], support.size)
    else:
        K = idx.shape[1]
    pad = K - idx.shape[1]
    if pad:
        idx = np.concatenate([idx, np.repeat(idx[:, :1], pad, axis=1)], axis=1)
        w = np.concatenate([w, np.zeros((w.shape[0], pad))], axis=1)
        dw = np.concatenate([dw, np.zeros((dw.shape[0], pad, dw.shape[2]))], axis=1)
    idx, w, dw, cost, dcost = idx.copy(), w.copy(), dw.copy(), cost.copy(), dcost.copy()
    rows = np.nonzero(term)[0]
    w[rows] = 0.0
    dw[rows] = 0.0
    cost[rows] = 0.0
    dcost[rows] = 0.0
    if model.reset is not None:
        idx[rows, :support.size] = support
        w[rows, :support.size] = model.reset[support]
        idx[rows, support.size:] = support[0]
    else:
        idx[rows, :] = state_index[rows, None]
        w[rows, 0] = 1.0
    return idx, w, dw, cost, dcost


class TabulatedModel:
    """Off-grid evaluation of a tabulated MDP by multilinear interpolation in the action.

    ``P(.|s, a) = sum_k w_k(a) P(.|s, a_k)`` and the same for ``C``, with ``w_k`` the linear
    interpolation weights of ``a`` on the action grid; derivatives are those of the weights
    (piecewise constant in ``a``).
    """

    def __init__(self, P: sp.csr_matrix, C: np.ndarray, actions: Grid):
        self.P, self.C, self.actions = P, C, actions

    def evaluate(self, state_index, a) -> ModelEval:
        state_index = np.asarray(state_index, dtype=np.int64).reshape(-1)
        a = self.actions.as_points(a, "actions")
        nA = self.actions.size
        st = [self.actions.linear_stencil(a[:, d], d) for d in range(self.actions.ndim)]
        aidx, aw, adw = self.actions.combine_stencils(st)        # (n, 2^da), (n, 2^da, da)
        rows = state_index[:, None] * nA + aidx
        n, k = rows.shape
        sub = self.P[rows.ravel()]                               # (n*k, nS) sparse
        counts = np.diff(sub.indptr)
        K = max(int(counts.max()) if counts.size else 1, 1)
        # one padded stencil row per (point, action corner): pad to K entries
        pos = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], counts)
        idx_c = np.zeros((n * k, K), dtype=np.int64)
        p_c = np.zeros((n * k, K))
        r = np.repeat(np.arange(n * k), counts)
        idx_c[r, pos] = sub.indices
        p_c[r, pos] = sub.data
        idx = idx_c.reshape(n, k * K)
        w = (p_c.reshape(n, k, K) * aw[:, :, None]).reshape(n, k * K)
        dw = (p_c.reshape(n, k, K, 1) * adw[:, :, None, :]).reshape(n, k * K, -1)
        c = self.C[state_index[:, None], aidx]
        return ModelEval(idx, w, dw, np.sum(aw * c, axis=1), np.einsum("nk,nkd->nd", c, adw))


# ---------------------------------------------------------------------------------------------
# validation helpers (the checks themselves live in wgflow.validation)
# ---------------------------------------------------------------------------------------------
def _check_prob_vector(p, n, name):
    return validation.prob_vector(p, n, name)


def check_transition_matrix(P: sp.csr_matrix, nA: int | None = None, name: str = "P"):
    """Raise :class:`ValidationError` if the rows of ``P`` are not probability vectors."""
    validation.transition_matrix(P, nA, name)


def _check_costs(C, nS, nA, name="C"):
    return validation.costs(C, nS, nA, name)


def _check_grid(g, name):
    if g is not None and not isinstance(g, Grid):
        raise ValidationError(f"MDP: {name} must be a wgflow.Grid or None, got {validation.describe(g)}")


def _stencil_width(states: Grid, noise: np.ndarray, cutoff: float) -> int:
    """Entries per row of ``P`` that :meth:`MDP.from_dynamics` will store (an upper estimate)."""
    K = 1
    for d in range(states.ndim):
        if noise[d] > 0:
            K *= min(states.shape[d], 2 * (int(np.ceil(cutoff * noise[d] / states.spacing[d])) + 1) + 1)
        else:
            K *= min(states.shape[d], 2)
    return K


# ---------------------------------------------------------------------------------------------
# the MDP
# ---------------------------------------------------------------------------------------------
class MDP:
    """A finite MDP with sparse transitions ``P`` ``(nS*nA, nS)`` and costs ``C`` ``(nS, nA)``.

    Use the constructors :meth:`from_dynamics`, :meth:`from_arrays` and :meth:`from_mdptoolbox`,
    or :func:`wgflow.problems.get`.

    Attributes
    ----------
    P : scipy.sparse.csr_matrix ``(nS*nA, nS)``
    C : ndarray ``(nS, nA)``
    states, actions : Grid or None
    model : DynamicsModel, TabulatedModel or None
        What off-grid evaluation uses (see :meth:`evaluate_model`).
    provenance : dict
        How the MDP was made (e.g. ``{"problem": "pendulum", "params": {...}}``).
    """

    def __init__(self, P, C, states: Grid | None = None, actions: Grid | None = None,
                 model=None, provenance: dict | None = None, validate: bool = True,
                 copy: bool = True):
        if not sp.issparse(P):
            raise ValidationError("MDP(P, C) takes a sparse P; use MDP.from_arrays for dense input")
        # index arrays are checked before scipy's compiled code touches them; own copies: later
        # edits of the caller's arrays must not bypass validation
        P = validation.sparse_matrix(P, "P", "MDP", copy=copy)
        if P.shape[0] % max(P.shape[1], 1) != 0 or P.shape[1] == 0:
            raise ValidationError(f"MDP: P must have shape (nS*nA, nS), got {P.shape}")
        nS = P.shape[1]
        nA = P.shape[0] // nS
        if nA == 0:
            raise ValidationError(f"MDP: P must have at least nS = {nS} rows, got {P.shape}")
        self.C = np.array(validation.costs(C, nS, nA, "C", "MDP"), copy=True)
        _check_grid(states, "states")
        _check_grid(actions, "actions")
        if states is not None and states.size != nS:
            raise ValidationError(f"states grid has {states.size} cells but P has {nS} states")
        if actions is not None and actions.size != nA:
            raise ValidationError(f"actions grid has {actions.size} cells but C has {nA} actions")
        if validate:
            validation.transition_matrix(P, nA, "P", "MDP")
        # the arrays compiled kernels index with are frozen: an in-place edit cannot bypass
        # the checks above (build a new MDP instead)
        for arr in (P.data, P.indices, P.indptr, self.C):
            arr.setflags(write=False)
        self.P = P
        self.states = states
        self.actions = actions
        self.model = model
        if self.model is None and actions is not None:
            self.model = TabulatedModel(P, self.C, actions)
        self.provenance = dict(provenance or {})

    # ------------------------------------------------------------------ sizes
    @property
    def n_states(self) -> int:
        return self.P.shape[1]

    @property
    def n_actions(self) -> int:
        return self.C.shape[1]

    nS = n_states
    nA = n_actions

    def __repr__(self) -> str:
        name = self.provenance.get("problem", "")
        name = f" '{name}'" if name else ""
        return (f"<MDP{name}: {self.n_states} states x {self.n_actions} actions, "
                f"nnz(P)={self.P.nnz}, states={self.states}, actions={self.actions}>")

    def require_actions(self, what: str = "this operation") -> Grid:
        """The action grid, or a clear error if there is none."""
        if self.actions is None:
            raise ValidationError(f"{what} needs an action grid, but this MDP has none "
                                  "(pass actions=Grid(...) when building it)")
        return self.actions

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_dynamics(cls, states: Grid, actions: Grid, drift: Callable, cost: Callable,
                      noise=0.0, noise_cutoff: float = 6.0, drift_da: Callable | None = None,
                      cost_da: Callable | None = None, terminal: Callable | None = None,
                      reset=None, entry_cost: float = 0.0, provenance: dict | None = None) -> "MDP":
        r"""Discretize ``s' = drift(s, a) + noise * xi`` (xi standard Gaussian per state axis).

        Parameters
        ----------
        states, actions : Grid
        drift : callable ``(s, a) -> s'``
            ``s`` ``(n, ds)``, ``a`` ``(n, da)``, returns ``(n, ds)``; vectorized.
        cost : callable ``(s, a) -> c``
            Returns ``(n,)``. Costs are minimized.
        noise : float or array ``(ds,)``
            Standard deviation per state axis. On an axis with noise ``> 0`` the next-state law is
            the Gaussian density at the cell centres, normalized over the grid (mass that would
            leave the box stays on it, distributed like the in-box density), truncated to cells
            within ``noise_cutoff`` standard deviations. Noise ``0`` deposits the deterministic
            next state by linear interpolation onto the neighbouring cells; a next state beyond the
            outermost cell centre goes to the outermost cell. Periodic axes wrap (the Gaussian is
            summed over its images). A noise wider than an axis costs no more than the axis: the
            law then spans the whole axis, and is uniform on it once the noise exceeds about
            1.42 periods of a periodic axis (see :meth:`Grid.gaussian_stencil`).
        drift_da, cost_da : callable, optional
            Action-Jacobians ``(n, ds, da)`` and gradients ``(n, da)`` for off-grid evaluation;
            central finite differences are used when absent.
        terminal : callable ``s -> bool``, optional
            Terminal states: cost 0, next state drawn from ``reset`` (probability vector over the
            states) or, if ``reset`` is None, absorbing.
        entry_cost : float
            Charged once per unit of next-state probability landing on terminal states:
            ``C(s, a) = cost(s, a) + entry_cost * sum_{s' terminal} P(s'|s, a)`` for non-terminal
            ``s`` -- a goal reward that follows the deposited mass (``-100`` for mountain car).

        Examples
        --------
        >>> import wgflow as wg
        >>> S = wg.Grid([(-2, 2)], [41]); A = wg.Grid([(-1, 1)], [11])
        >>> mdp = wg.MDP.from_dynamics(S, A, drift=lambda s, a: 0.9 * s + 0.5 * a,
        ...                            cost=lambda s, a: s[:, 0]**2 + a[:, 0]**2, noise=0.2)
        >>> mdp.P.shape
        (451, 41)
        """
        _check_grid(states, "states")
        _check_grid(actions, "actions")
        if states is None or actions is None:
            raise ValidationError("MDP.from_dynamics needs a states grid and an actions grid")
        for nm, f in (("drift", drift), ("cost", cost)):
            if not callable(f):
                raise ValidationError(f"MDP.from_dynamics: {nm} must be a function (s, a) -> ..., "
                                      f"got {validation.describe(f)}")
        noise_cutoff = validation.real(noise_cutoff, "noise_cutoff", "MDP.from_dynamics", low=0,
                                       low_open=True)
        model = DynamicsModel(states, actions, drift, cost, noise, noise_cutoff, drift_da, cost_da,
                              terminal, reset, entry_cost)
        nS, nA = states.size, actions.size
        K = _stencil_width(states, model.noise, noise_cutoff)
        # P (values + indices), costs, and one chunk of stencil temporaries
        validation.memory(nS * nA * (12.0 * K + 8.0) + min(nS * nA, _CHUNK) * K * 40.0,
                          f"discretizing {nS} states x {nA} actions", "MDP.from_dynamics")
        blocks_idx, blocks_w, costs = [], [], np.empty(nS * nA)
        for start in range(0, nS * nA, _CHUNK):
            pairs = np.arange(start, min(start + _CHUNK, nS * nA))
            s_idx, a_idx = pairs // nA, pairs % nA
            s, a = states.centers[s_idx], actions.centers[a_idx]
            idx, w, _ = model.stencil(s, a)
            c, _ = model._add_entry_cost(idx, w, None, model._cost(s, a))
            term = model.terminal_mask[s_idx]
            if np.any(term):
                dummy = np.zeros(w.shape + (1,))
                idx, w, _, c, _ = _apply_terminal(model, s_idx, term, idx, w, dummy, c, np.zeros((len(c), 1)))
            blocks_idx.append(idx)
            blocks_w.append(w)
            costs[pairs] = c
        P = _csr_from_blocks(blocks_idx, blocks_w, nS)
        mdp = cls(P, costs.reshape(nS, nA), states, actions, model=model, provenance=provenance,
                  validate=False, copy=False)
        check_transition_matrix(mdp.P, nA)
        return mdp

    @classmethod
    def from_arrays(cls, P, C, states: Grid | None = None, actions: Grid | None = None) -> "MDP":
        """Build from ``P`` ``(S, A, S)`` dense or ``(S*A, S)`` (sparse or dense) and costs ``C`` ``(S, A)``.

        Rows must be probability vectors (within 1e-10); nothing is renormalized.
        """
        C = validation.array(C, "C", "MDP.from_arrays", finite=False)
        if C.ndim != 2:
            raise ValidationError(f"MDP.from_arrays: C must have shape (S, A), got {C.shape}")
        nS, nA = C.shape
        if sp.issparse(P):
            Ps = validation.sparse_matrix(P, "P", "MDP.from_arrays")
        else:
            P = validation.array(P, "P", "MDP.from_arrays", finite=False)
            if P.ndim == 3:
                if P.shape != (nS, nA, nS):
                    raise ValidationError(f"dense P must have shape (S, A, S) = ({nS}, {nA}, {nS}), got {P.shape}")
                P = P.reshape(nS * nA, nS)
            if P.ndim != 2:
                raise ValidationError(f"P must be (S, A, S) or (S*A, S), got shape {P.shape}")
            if not np.all(np.isfinite(P)):
                r, c = np.argwhere(~np.isfinite(P))[0]
                raise ValidationError(f"P contains NaN or inf at row {r} (state {r // nA}, action "
                                      f"{r % nA}), column {c}")
            Ps = sp.csr_matrix(P)
        if Ps.shape != (nS * nA, nS):
            raise ValidationError(f"P must have shape (S*A, S) = ({nS * nA}, {nS}) to match C {C.shape}, "
                                  f"got {Ps.shape}")
        return cls(Ps, C, states, actions)

    @classmethod
    def from_mdptoolbox(cls, P, R, states: Grid | None = None, actions: Grid | None = None) -> "MDP":
        """Build from pymdptoolbox's layout: ``P`` ``(A, S, S)`` (array or list of sparse) and rewards.

        ``R`` may be ``(S, A)``, ``(S,)`` or ``(A, S, S)`` (then the expected reward
        ``sum_s' P R`` is used). Costs are ``-R``.
        """
        where = "MDP.from_mdptoolbox"
        if isinstance(P, (list, tuple)) or (hasattr(P, "dtype") and P.dtype == object):
            if len(P) == 0:
                raise ValidationError(f"{where}: P has no actions")
            mats = [validation.sparse_matrix(p, f"P[{a}]", where) if sp.issparse(p)
                    else sp.csr_matrix(validation.array(p, f"P[{a}]", where, ndim=2))
                    for a, p in enumerate(P)]
        else:
            P = validation.array(P, "P", where)
            if P.ndim != 3 or P.shape[1] != P.shape[2]:
                raise ValidationError(f"mdptoolbox P must have shape (A, S, S), got {P.shape}")
            mats = [sp.csr_matrix(p) for p in P]
        nA, nS = len(mats), mats[0].shape[0]
        for a, m in enumerate(mats):
            if m.shape != (nS, nS):
                raise ValidationError(f"mdptoolbox P[{a}] has shape {m.shape}, expected ({nS}, {nS})")
        # rows ordered s*nA + a
        Psa = sp.vstack(mats, format="csr")           # row a*nS + s
        perm = (np.arange(nS)[:, None] + nS * np.arange(nA)[None, :]).ravel()
        Psa = Psa[perm]
        if isinstance(R, (list, tuple)) or (hasattr(R, "dtype") and R.dtype == object):
            if len(R) != nA:
                raise ValidationError(f"{where}: R has {len(R)} per-action matrices, P has {nA}")
            R = np.stack([np.asarray((validation.sparse_matrix(r, f"R[{a}]", where) if sp.issparse(r)
                                      else sp.csr_matrix(validation.array(r, f"R[{a}]", where)))
                                     .multiply(m).sum(axis=1)).ravel()
                          for a, (r, m) in enumerate(zip(R, mats))], axis=1)
        R = validation.array(R, "R", where)
        if R.shape == (nA, nS, nS):
            R = np.stack([np.asarray(mats[a].multiply(R[a]).sum(axis=1)).ravel() for a in range(nA)], axis=1)
        elif R.shape == (nS,):
            R = np.repeat(R[:, None], nA, axis=1)
        elif R.shape != (nS, nA):
            raise ValidationError(f"mdptoolbox R must be (S, A), (S,) or (A, S, S); got {R.shape}")
        return cls(Psa, -R, states, actions)

    # ------------------------------------------------------------------ exports
    def to_arrays(self):
        """Dense ``(P (S, A, S), C (S, A))`` -- only for small MDPs."""
        return self.P.toarray().reshape(self.n_states, self.n_actions, self.n_states), self.C.copy()

    def to_mdptoolbox(self, sparse: bool = True):
        """``(P, R)`` in pymdptoolbox's layout: list of ``A`` CSR ``(S, S)`` (or dense ``(A, S, S)``)
        and rewards ``R = -C`` ``(S, A)``."""
        nS, nA = self.n_states, self.n_actions
        mats = [self.P[np.arange(nS) * nA + a] for a in range(nA)]
        if not sparse:
            mats = np.stack([m.toarray() for m in mats])
        return mats, -self.C.copy()

    def to_quantecon(self, beta: float):
        """A ``quantecon.markov.DiscreteDP`` in state-action form (rewards ``-C``, discount ``beta``)."""
        from quantecon.markov import DiscreteDP
        nS, nA = self.n_states, self.n_actions
        s_ind = np.repeat(np.arange(nS), nA)
        a_ind = np.tile(np.arange(nA), nS)
        return DiscreteDP(-self.C.ravel(), self.P, beta, s_ind, a_ind)

    # ------------------------------------------------------------------ off-grid evaluation
    def evaluate_model(self, state_index, actions) -> ModelEval:
        """Transitions, costs and their action-derivatives at (state cell, action point) pairs.

        Uses the continuous model when the MDP was built from dynamics, otherwise multilinear
        interpolation of the tabulated ``P`` and ``C`` over the action grid.
        """
        self.require_actions("off-grid evaluation")
        idx = np.asarray(state_index)
        if idx.size and (not np.issubdtype(idx.dtype, np.integer)
                         or idx.min() < 0 or idx.max() >= self.n_states):
            raise ValidationError(f"state indices must be integers in [0, {self.n_states}), got "
                                  f"{idx.min() if idx.size else ''}..{idx.max() if idx.size else ''} "
                                  f"({idx.dtype})")
        return self.model.evaluate(idx, actions)


def _csr_from_blocks(blocks_idx, blocks_w, nS) -> sp.csr_matrix:
    """CSR matrix from row blocks of fixed-width stencils (zeros dropped, duplicates summed)."""
    data = np.concatenate([w.ravel() for w in blocks_w])
    indices = np.concatenate([i.ravel() for i in blocks_idx])
    widths = np.concatenate([np.full(w.shape[0], w.shape[1]) for w in blocks_w])
    indptr = np.concatenate([[0], np.cumsum(widths)])
    P = sp.csr_matrix((data, indices, indptr), shape=(indptr.size - 1, nS))
    P.sum_duplicates()
    P.eliminate_zeros()
    return P
