r"""Exact policy evaluation and exact solvers.

:func:`evaluate` returns the objective ``J``, the metric weights (discounted occupancy or
stationary law), ``V`` (or the bias ``h``) and the soft ``Q``; :func:`solve` finds the optimal
policy by modified policy iteration with a certified stopping rule (the default for discounted
objectives), policy iteration (soft policy iteration when ``entropy > 0``; exact to rounding),
value iteration or relative value iteration.

Formulas (costs minimized, ``tau`` the entropy weight, ``vol`` the action-cell volume, 1 when
there is no action grid)::

    c_pi(s)  = sum_a pi(a|s) [C(s,a) + tau log(pi(a|s)/vol)]
    Discounted:  V = c_pi + gamma P_pi V,  J = mu0 . V,  d_pi = (1-gamma) mu0^T (I - gamma P_pi)^-1
                 Q = C + gamma P V
    Average:     h + J = c_pi + P_pi h,  rho_pi . h = 0,  rho_pi^T P_pi = rho_pi^T
                 Q = C - J + P h

With ``tau > 0`` the soft-greedy policy has masses proportional to ``exp(-Q/tau)``.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp, xlogy

from . import validation
from .errors import AccuracyWarning, ConvergenceError, NotUnichainError, ValidationError
from .kernels import PolicyMatrixAssembler
from .kernels.bellman import closed_components, make_bellman_sweep, policy_sweep
from .kernels.gauss_seidel import (corrected_gs_sweeps, diagonal_positions, drop_negligible,
                                   stationary_sweeps, transpose_pattern)
from .kernels.softmin import chain_gather_map, soft_sweep_chain, span_sweeps
from .kernels.assembly import union_pattern
from .kernels.config import compile_seconds
from .linalg import BlockTriangularSolver, CSRArrays, LinearSolveCache, single_thread_blas
from .mdp import MDP
from .objectives import Average, Discounted, Objective
from .policy import Policy, check_masses, gibbs_masses

__all__ = ["evaluate", "solve", "Evaluation", "Solution", "recurrent_classes", "bellman_operator",
           "METHODS"]


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Exact evaluation of a policy.

    Attributes
    ----------
    J : float
        Objective value.
    weights : ndarray ``(nS,)``
        Metric weights: normalized discounted occupancy ``d_pi`` or stationary law ``rho_pi``.
    V : ndarray ``(nS,)``
        Value function (discounted) or bias ``h`` with ``rho . h = 0`` (average).
    Q : ndarray ``(nS, nA)``
        Soft Q-function.
    c_pi : ndarray ``(nS,)``
        Per-state (entropy-regularized) cost of the policy.
    diagnostics : dict
        Timings and linear-solver statistics.
    """

    J: float
    weights: np.ndarray
    V: np.ndarray
    Q: np.ndarray
    c_pi: np.ndarray
    objective: Objective
    policy: Policy
    diagnostics: dict = field(default_factory=dict)

    @property
    def h(self) -> np.ndarray:
        """The bias (alias of ``V``; meaningful for :class:`Average`)."""
        return self.V

    def __repr__(self) -> str:
        return (f"<Evaluation: J = {self.J:.12g}, {self.policy.n_states} states x "
                f"{self.policy.n_actions} actions, {self.objective!r}>")

    def plot(self, fields=("V", "mean", "std", "weights"), **kwargs):
        """V, mean action, spread and weights over the state space (:func:`wgflow.plot.plot_solution`)."""
        from .plot import plot_solution
        return plot_solution(self, fields=fields, **kwargs)

    def continuation(self) -> np.ndarray:
        """``u`` with ``Q = C + P u - J_offset``: ``gamma V`` (discounted) or ``h`` (average)."""
        if isinstance(self.objective, Discounted):
            return self.objective.gamma * self.V
        return self.V

    def q_at(self, mdp: MDP, state_index, actions, grad: bool = False):
        """Soft Q at off-grid actions (and its action gradient when ``grad``).

        ``Q(s, a) = C(s, a) + E[u(s') | s, a] - offset`` evaluated with the MDP's continuous model
        (or multilinear interpolation of the tables), where ``u`` is :meth:`continuation`.
        """
        ev = mdp.evaluate_model(state_index, actions)
        e, de = ev.expect(self.continuation())
        offset = self.J if isinstance(self.objective, Average) else 0.0
        q = ev.cost + e - offset
        return (q, ev.dcost + de) if grad else q


class _DeferredWeights:
    """A not yet computed ``weights`` array: ``compute()`` is called on first access."""

    __slots__ = ("compute",)

    def __init__(self, compute):
        self.compute = compute


class _LazyWeights:
    """Descriptor for :attr:`Solution.weights`: computed on first access when deferred.

    The fast solvers never need the occupancy measure (one transpose solve); it is computed when
    asked for, exactly (a direct sparse solve for the returned policy), and then kept.
    """

    def __set_name__(self, owner, name):
        self._slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            raise AttributeError("weights")          # a required dataclass field (no default)
        val = obj.__dict__[self._slot]
        if isinstance(val, _DeferredWeights):
            val = val.compute()
            obj.__dict__[self._slot] = val
        return val

    def __set__(self, obj, value):
        obj.__dict__[self._slot] = value


@dataclass
class Solution:
    """Result of :func:`solve`.

    Attributes
    ----------
    policy : Policy
        The optimal policy found (deterministic one-hot masses when ``entropy == 0``, the Gibbs
        policy ``masses ~ exp(-Q/tau)`` otherwise).
    J, V, Q, weights : as in :class:`Evaluation`, for ``policy`` (evaluated exactly).
    iterations : int
    converged : bool
    residual : float
        Sup-norm of the Bellman residual ``T V - V`` (average cost: ``T h - h - J``) of the
        returned ``V``.
    method : str
    diagnostics : dict
        ``history`` (J or residual per iteration), timings (``compile``, ``solve``,
        ``bookkeeping``), linear-solver statistics.
    """

    policy: Policy
    J: float
    V: np.ndarray
    Q: np.ndarray
    weights: np.ndarray = _LazyWeights()
    iterations: int
    converged: bool
    residual: float
    method: str
    objective: Objective
    diagnostics: dict = field(default_factory=dict)

    @property
    def h(self):
        return self.V

    def summary(self) -> str:
        d = self.diagnostics
        return (f"J = {self.J:.12g}   method = {self.method}   iterations = {self.iterations}   "
                f"residual = {self.residual:.3e}   time = {d.get('time_total', float('nan')):.3f} s")

    def __repr__(self) -> str:
        return (f"<Solution: J = {self.J:.12g}, {self.policy.n_states} states x {self.policy.n_actions} "
                f"actions, {self.objective!r}, {self.method}, {self.iterations} iterations, "
                f"{'converged' if self.converged else 'NOT converged'}, residual {self.residual:.2e}>")

    def plot(self, fields=("V", "mean", "std", "weights"), **kwargs):
        """V, mean action, spread and occupancy over the state space
        (:func:`wgflow.plot.plot_solution`; over (theta, omega) for the pendulum).

        Examples
        --------
        >>> import matplotlib; matplotlib.use("Agg")
        >>> import wgflow as wg
        >>> mdp = wg.problems.get("pendulum", n_theta=11, n_omega=11, n_actions=5)
        >>> fig = wg.solve(mdp, wg.Discounted(0.9, entropy=0.5)).plot()
        """
        from .plot import plot_solution
        return plot_solution(self, fields=fields, **kwargs)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def timings(total: float, compile_time: float, solve_time: float) -> dict:
    """The diagnostics' time split: numba ``compile``, sparse ``solve``, and the rest (``bookkeeping``)."""
    return {"compile": compile_time, "solve": solve_time,
            "bookkeeping": max(total - compile_time - solve_time, 0.0)}


def _cell_volume(mdp: MDP) -> float:
    return mdp.actions.cell_volume if mdp.actions is not None else 1.0


def policy_cost(mdp: MDP, masses: np.ndarray, tau: float) -> np.ndarray:
    """``c_pi(s) = sum_a pi [C + tau log(pi / vol)]`` (``0 log 0 = 0``)."""
    c = np.sum(masses * mdp.C, axis=1)
    if tau > 0:
        c = c + tau * np.sum(xlogy(masses, masses / _cell_volume(mdp)), axis=1)
    return c


def recurrent_classes(P_pi: sp.csr_matrix) -> list:
    """Closed communicating classes of the chain ``P_pi`` (sorted arrays of state indices; stored
    zeros are not transitions), in increasing order of their smallest state."""
    P = sp.csr_matrix(P_pi)
    order, block_ptr, closed = closed_components(P.indptr, P.indices, P.data, P.shape[0])
    classes = [np.sort(order[block_ptr[b]:block_ptr[b + 1]]) for b in np.flatnonzero(closed)]
    return sorted(classes, key=lambda c: c[0])


def _check_policy(mdp: MDP, policy) -> np.ndarray:
    if isinstance(policy, Policy):
        if policy.n_states != mdp.n_states or policy.n_actions != mdp.n_actions:
            raise ValidationError(f"policy is {policy.n_states} x {policy.n_actions} but the MDP is "
                                  f"{mdp.n_states} x {mdp.n_actions}")
        if (policy.actions is not None and mdp.actions is not None and policy.actions != mdp.actions):
            raise ValidationError(f"policy's action grid {policy.actions} differs from the MDP's {mdp.actions}")
        return policy.masses
    return check_masses(policy, mdp.n_states, mdp.n_actions, "policy masses")


def _check_mdp(mdp, where: str):
    if not isinstance(mdp, MDP):
        raise ValidationError(f"{where}: mdp must be a wgflow.MDP (e.g. wg.problems.get(...)), got "
                              f"{validation.describe(mdp)}")


def _check_objective(objective):
    if not isinstance(objective, Objective):
        raise ValidationError(f"objective must be wgflow.Discounted(...) or wgflow.Average(...), "
                              f"got {objective!r}")


def _assembler(mdp: MDP) -> PolicyMatrixAssembler:
    asm = getattr(mdp, "_policy_matrix_assembler", None)
    if asm is None or asm.P is not mdp.P:
        asm = PolicyMatrixAssembler(mdp.P, mdp.n_actions)
        mdp._policy_matrix_assembler = asm
    return asm


def _union_pattern(mdp: MDP):
    """``(ptr, idx, cptr, act, cdata)``: the union pattern of the policies' chains and ``mdp.P``
    grouped on it (:func:`~wgflow.kernels.assembly.union_pattern`,
    :func:`~wgflow.kernels.softmin.chain_gather_map`; ``cdata = P.data[perm]``, the layout
    :func:`~wgflow.kernels.softmin.soft_sweep_chain` reads), computed once per MDP and kept on
    it (``P``'s values are copied: an MDP's ``P`` is not modified in place)."""
    pat = getattr(mdp, "_union_pattern", None)
    if pat is None or pat[0] is not mdp.P:
        P, nS, nA = mdp.P, mdp.n_states, mdp.n_actions
        ptr, idx, pos = union_pattern(P.indptr, P.indices, nS, nA)
        nnz = P.indptr[nS * nA]
        act = np.empty(nnz, dtype=np.uint8 if nA <= 256 else np.int32)
        perm = np.empty(nnz, dtype=np.int32 if nnz < 2 ** 31 else np.int64)
        cptr = chain_gather_map(P.indptr, nS, nA, ptr, pos, act, perm)
        if nnz < 2 ** 31:
            cptr = cptr.astype(np.int32)
        if nS < 2 ** 31:
            idx = idx.astype(np.int32)
        pat = (P, (ptr, idx, cptr, act, np.ascontiguousarray(P.data[perm], dtype=np.float64)))
        mdp._union_pattern = pat
    return pat[1]


def _union_transpose(mdp: MDP):
    """``(dpos, (tptr, tidx, tmap))`` of the union pattern (:func:`_union_pattern`): where each
    row's self-loop is stored and the pattern of its transpose
    (:func:`~wgflow.kernels.gauss_seidel.diagonal_positions`,
    :func:`~wgflow.kernels.gauss_seidel.transpose_pattern`), computed once per MDP and kept
    with the union pattern (pendulum 150^2 x 51: 2 ms a solve)."""
    ptr, idx = _union_pattern(mdp)[:2]
    pat = getattr(mdp, "_union_transpose", None)
    if pat is None or pat[0] is not idx:
        nS = mdp.n_states
        pat = (idx, (diagonal_positions(ptr, idx, nS), transpose_pattern(ptr, idx, nS)))
        mdp._union_transpose = pat
    return pat[1]


def _evaluate_masses(mdp: MDP, masses: np.ndarray, objective: Objective, cache: LinearSolveCache,
                     weights: bool = True, V0: np.ndarray | None = None, J0: float | None = None,
                     stationary: bool = True):
    """Core evaluation: returns ``(J, weights, V, Q, c_pi, P_pi)``.

    ``weights=False`` skips the occupancy (one transpose solve) for the discounted objective and
    returns ``None`` in its place; the average cost computes its stationary law (it normalizes
    the bias) unless ``stationary=False``: then ``weights`` is ``None`` and the bias is
    normalized by ``h(ref) = 0`` at a recurrent state ``ref`` instead of ``rho . h = 0`` (the
    greedy policy does not depend on the constant). ``V0``: an approximation of ``V`` that starts
    the solve when ``cache`` reuses an earlier factorization (same stopping rule: the result is
    exact to the same tolerance); for the average cost it is used only with ``J0`` (``h`` in any
    normalization, and ``J``).
    """
    tau = objective.entropy
    c_pi = policy_cost(mdp, masses, tau)
    P_pi = _assembler(mdp)(masses)
    nS = mdp.n_states
    I = sp.identity(nS, format="csr")
    if isinstance(objective, Discounted):
        g = objective.gamma
        mu0 = objective.initial_law(nS)
        if weights:
            V, x = cache.solve((I - g * P_pi).tocsr(), [c_pi, mu0], [False, True],
                               **({} if V0 is None else {"x0": [V0, None]}))
            weights = (1.0 - g) * x
        else:
            V, = cache.solve((I - g * P_pi).tocsr(), [c_pi], [False],
                             **({} if V0 is None else {"x0": [V0]}))
            weights = None
        J = float(mu0 @ V)
        Q = mdp.C + g * (mdp.P @ V).reshape(nS, mdp.n_actions)
    else:
        classes = recurrent_classes(P_pi)
        if len(classes) != 1:
            sizes = [len(c) for c in classes]
            examples = "; ".join(f"class {k}: states {c[:5].tolist()}{'...' if len(c) > 5 else ''}"
                                 for k, c in enumerate(classes[:4]))
            raise NotUnichainError(
                f"average-cost evaluation needs a unichain policy chain, but P_pi has {len(classes)} "
                f"recurrent classes (sizes {sizes}): {examples}. The average cost then depends on the "
                "initial state. Ways out: use Discounted(...); give absorbing terminal states a reset law "
                "(mountain_car: goal='reset'); start from a unichain policy (solve(..., policy0=...)).",
                classes)
        ref = int(classes[0][0])
        # M = (I - P_pi) with column ref replaced by ones: M [h; J at ref] = c_pi, M^T rho = e_ref
        M = (I - P_pi).tocsc()
        M.data[M.indptr[ref]:M.indptr[ref + 1]] = 0.0
        # kept in CSC: the column of ones is dense, and COLAMD orders a dense column last
        # (factoring the transpose instead would make it a dense row and fill every factor row)
        M = (M + sp.csc_matrix((np.ones(nS), (np.arange(nS), np.full(nS, ref))), shape=(nS, nS))).tocsc()
        e = np.zeros(nS)
        e[ref] = 1.0
        x0 = {}
        if V0 is not None and J0 is not None:
            v = np.asarray(V0, dtype=float) - V0[ref]
            v[ref] = J0
            x0 = {"x0": [v, None] if stationary else [v]}
        if stationary:
            x, rho = cache.solve(M, [c_pi, e], [False, True], **x0)
        else:
            (x,), rho = cache.solve(M, [c_pi], [False], **x0), None
        J = float(x[ref])
        h = x.copy()
        h[ref] = 0.0
        if rho is not None:
            if np.min(rho) < -1e-10:
                raise ConvergenceError(f"stationary law has a negative entry {np.min(rho):g}: the chain "
                                       "is numerically ill-conditioned", {"min_rho": float(np.min(rho))})
            rho = np.clip(rho, 0.0, None)
            rho /= rho.sum()     # rounding only: rho already sums to 1 to ~1e-15
            h -= rho @ h
        Q = mdp.C - J + (mdp.P @ h).reshape(nS, mdp.n_actions)
        V, weights = h, rho
    _check_accuracy(objective, J, weights, V, Q, c_pi, P_pi)
    return J, weights, V, Q, c_pi, P_pi


#: estimated relative error of an exact evaluation above which it warns (AccuracyWarning) ...
ACCURACY_WARN = 1e-8
#: ... and above which it raises ConvergenceError
ACCURACY_FAIL = 1e-4


def _check_accuracy(objective, J, weights, V, Q, c_pi, P_pi) -> float:
    r"""Refuse a non-finite result and estimate the relative error of an exact evaluation.

    Discounted: with the residual ``r = c_pi - (V - gamma P_pi V)``,
    ``|V - V_exact|_inf <= |r|_inf / (1 - gamma)`` because ``|(I - gamma P_pi)^-1|_inf =
    1/(1 - gamma)``; and the occupancy weights sum to 1 exactly, so ``|sum w - 1|`` measures the
    transposed solve. Average cost: the residual of ``h + J = c_pi + P_pi h`` relative to the
    size of ``h`` and ``c_pi``. Returns the estimate; warns with :class:`AccuracyWarning` above
    :data:`ACCURACY_WARN` and raises :class:`ConvergenceError` above :data:`ACCURACY_FAIL`.
    """
    bad = [name for name, a in (("J", J), ("V", V), ("Q", Q), ("weights", weights), ("c_pi", c_pi))
           if a is not None and not np.all(np.isfinite(a))]
    gamma = getattr(objective, "gamma", None)
    if bad:
        raise ConvergenceError(
            f"exact evaluation gave non-finite {', '.join(bad)} ({objective!r}; largest finite |c_pi| "
            f"= {np.max(np.abs(c_pi[np.isfinite(c_pi)]), initial=0.0):.3g}): the values overflow "
            "double precision; rescale the costs", {"non_finite": bad})
    with np.errstate(all="ignore"):
        scale = max(float(np.max(np.abs(V), initial=0.0)), float(np.max(np.abs(c_pi), initial=0.0)),
                    1e-300)
        if gamma is not None:
            r = c_pi - (V - gamma * (P_pi @ V))
            err = float(np.max(np.abs(r), initial=0.0)) / (1.0 - gamma) / scale
            if weights is not None:
                err = max(err, abs(float(np.sum(weights)) - 1.0))
        else:
            r = c_pi - J - (V - P_pi @ V)
            err = float(np.max(np.abs(r), initial=0.0)) / max(scale, abs(J))
    if not err <= ACCURACY_FAIL:
        cond = f", 1/(1 - gamma) = {1.0 / (1.0 - gamma):.3g}" if gamma is not None else ""
        raise ConvergenceError(f"exact evaluation lost its accuracy: estimated relative error "
                               f"{err:.2e} ({objective!r}{cond}); the linear system is too badly "
                               "conditioned for double precision", {"estimated_error": err})
    if err > ACCURACY_WARN:
        warnings.warn(f"exact evaluation: estimated relative error {err:.2e} ({objective!r})",
                      AccuracyWarning, stacklevel=3)
    return err


def evaluate(mdp: MDP, policy, objective: Objective, cache: LinearSolveCache | None = None) -> Evaluation:
    r"""Evaluate a policy exactly (sparse LU).

    Parameters
    ----------
    mdp : MDP
    policy : Policy or array ``(nS, nA)`` of masses
    objective : Discounted or Average
    cache : LinearSolveCache, optional
        Reuse the factorization of a previous, similar evaluation (flows, iterations).

    Returns
    -------
    Evaluation
        ``J``, ``weights``, ``V`` (bias ``h`` for average cost), soft ``Q``.

    Raises
    ------
    NotUnichainError
        Average cost on a chain with more than one recurrent class.

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("garnet", n_states=20, n_actions=4, seed=1)
    >>> ev = wg.evaluate(mdp, wg.Policy.uniform(mdp), wg.Discounted(gamma=0.9))
    >>> bool(abs(ev.weights.sum() - 1) < 1e-12)
    True
    """
    _check_mdp(mdp, "evaluate")
    _check_objective(objective)
    masses = _check_policy(mdp, policy)
    pol = policy if isinstance(policy, Policy) else Policy(masses, mdp.actions, mdp.states, validate=False)
    cache = cache or LinearSolveCache(reuse=False)
    t0, c0, s0 = time.perf_counter(), compile_seconds(), cache.stats["solve_time"]
    J, w, V, Q, c_pi, _ = _evaluate_masses(mdp, masses, objective, cache)
    total = time.perf_counter() - t0
    diag = {"time_total": total, "timings": timings(total, compile_seconds() - c0,
                                                    cache.stats["solve_time"] - s0),
            "linear_solver": dict(cache.stats)}
    return Evaluation(J, w, V, Q, c_pi, objective, pol, diag)


# ---------------------------------------------------------------------------------------------
# Bellman operator
# ---------------------------------------------------------------------------------------------
def bellman_operator(mdp: MDP, u: np.ndarray, tau: float, offset: float = 0.0):
    """One (soft) Bellman step on the continuation ``u``: returns ``(TV, Q)``.

    ``Q = C + P u - offset``; ``TV(s) = min_a Q`` (``tau = 0``) or
    ``-tau log sum_a vol exp(-Q/tau)`` (``tau > 0``).
    """
    Q = mdp.C + (mdp.P @ u).reshape(mdp.n_states, mdp.n_actions) - offset
    if tau > 0:
        TV = -tau * logsumexp(-Q / tau, axis=1) - tau * np.log(_cell_volume(mdp))
    else:
        TV = Q.min(axis=1)
    return TV, Q


def _greedy(Q, tau, current=None):
    """Greedy masses: Gibbs for ``tau > 0``; one-hot argmin (ties kept at the current action)."""
    if tau > 0:
        return gibbs_masses(Q, tau)
    nS, nA = Q.shape
    best = np.argmin(Q, axis=1)
    if current is not None:
        cur = np.argmax(current, axis=1)
        qmin = Q[np.arange(nS), best]
        # ties relative to the table's magnitude (the rounding of its sums), not an absolute
        # floor: costs of any scale give the same policies
        scale = 1e-12 * float(np.max(np.abs(Q)))
        keep = Q[np.arange(nS), cur] <= qmin + scale
        best = np.where(keep, cur, best)
    m = np.zeros((nS, nA))
    m[np.arange(nS), best] = 1.0
    return m


def _residual(mdp, objective, V, J):
    tau = objective.entropy
    if isinstance(objective, Discounted):
        TV, _ = bellman_operator(mdp, objective.gamma * V, tau)
        return float(np.max(np.abs(TV - V)))
    TV, _ = bellman_operator(mdp, V, tau, offset=J)
    return float(np.max(np.abs(TV - V)))


# ---------------------------------------------------------------------------------------------
# solvers
# ---------------------------------------------------------------------------------------------
_METHODS = ("modified_policy_iteration", "policy_iteration", "soft_policy_iteration",
            "value_iteration", "relative_value_iteration")
#: the values of ``solve(..., method=...)`` (the command line reads this tuple)
METHODS = ("auto",) + _METHODS


def _progress(enabled, total, desc):
    from ._progress import enabled as _enabled, tqdm_class
    if not _enabled(enabled):
        return None
    return tqdm_class()(total=total, desc=desc, leave=False)


def solve(mdp: MDP, objective: Objective, method: str = "auto", tol: float = 1e-10,
          max_iter: int | None = None, policy0=None, reuse_factorization: bool = True,
          aperiodicity: float = 0.0, progress: bool | None = None) -> Solution:
    r"""Solve the MDP exactly.

    Parameters
    ----------
    mdp : MDP
    objective : Discounted or Average
    method : {"auto", "modified_policy_iteration", "policy_iteration", "soft_policy_iteration",
              "value_iteration", "relative_value_iteration"} (the tuple ``METHODS``)
        ``"auto"``: modified policy iteration for a Discounted objective (hard and soft), (soft)
        policy iteration for Average. ``"policy_iteration"`` keeps every evaluation exact (a
        direct sparse solve, or GMRES preconditioned by earlier factors down to a direct solve's
        backward error, ``EXACT_BACKWARD``): the answer is exact to rounding.
        ``"value_iteration"`` on an Average objective means relative value iteration.
    tol : float
        Modified policy iteration (relative accuracy): stops when
        ``|T V - V|_inf <= (1 - gamma) tol |V|_inf`` for the soft (``tau > 0``) or hard Bellman
        operator ``T``. Since ``T`` is a ``gamma``-contraction, this guarantees
        ``|V - V*|_inf <= tol |V|_inf``, and, the returned policy being greedy (Gibbs) in
        ``Q = C + gamma P V``, also ``|V - V_pi|_inf <= tol |V|_inf``: ``V`` is the value of
        the returned policy to ``tol``. ``Q`` is exactly ``C + gamma P V`` and
        ``diagnostics["error_bound"]`` the bound ``|T V - V|_inf / (1 - gamma)``.
        Soft policy iteration: stop when the policy masses change by at most ``tol`` (sup-norm)
        and return the last improved (Gibbs) policy; exact policy iteration stops when the policy
        repeats.
        Value iteration: stop when ``|V_{k+1} - V_k|_inf < tol * (1 - gamma) / gamma`` (so ``V``
        is within ``tol`` of the fixed point). Relative VI: stop when the span of
        ``T h - h`` is below ``tol``.
    max_iter : int, optional
        Default 10^4 (modified policy iteration: Bellman sweeps), 1000 (policy iteration) or
        10^6 (value iteration).
    policy0 : Policy, optional
        Starting policy. Default: for ``Average``, the policy that modified policy iteration
        returns for ``Discounted(0.99, entropy=tau)`` when it is unichain; otherwise (and for
        policy iteration on a Discounted objective) the greedy policy of the costs for
        ``tau = 0`` and the uniform policy for ``tau > 0``. Modified policy iteration starts
        from ``V = 0`` or from the exact value of ``policy0``.
    reuse_factorization : bool
        Warm-start each evaluation with the previous LU factorization as a GMRES preconditioner.
    aperiodicity : float in [0, 1)
        Relative VI only: iterate ``h <- a h + (1-a) T h`` (the aperiodicity transform, same gain
        and bias) so periodic chains converge.
    progress : bool or None
        tqdm progress bar (None: when stderr is a terminal or in a notebook).

    Returns
    -------
    Solution
        Policy iteration: ``J, V, Q, weights`` are an exact evaluation of the returned policy.
        Modified policy iteration: ``V`` as guaranteed by ``tol``, ``J = mu0 . V``,
        ``Q = C + gamma P V``; ``weights`` (the occupancy of the returned policy, a direct
        transpose solve) is computed when first accessed.

    Notes
    -----
    Modified policy iteration alternates one Bellman sweep (numba, one pass over ``P``; the soft
    sweep also assembles the Gibbs policy's chain) with an evaluation of the greedy (Gibbs)
    policy: Jacobi sweeps with MacQueen's span extrapolation,
    or, for a deterministic policy whose chain splits into small strongly connected components,
    block substitution in Tarjan's order (exact; Gauss-Seidel sweeps inside larger blocks). See
    docs/solvers.md.

    Examples
    --------
    >>> import wgflow as wg
    >>> mdp = wg.problems.get("garnet", n_states=30, n_actions=5, seed=0)
    >>> sol = wg.solve(mdp, wg.Discounted(gamma=0.9))
    >>> sol.converged
    True
    """
    _check_mdp(mdp, "solve")
    _check_objective(objective)
    tol, max_iter, aperiodicity = validation.solve_arguments(tol, max_iter, aperiodicity)
    reuse_factorization = validation.boolean(reuse_factorization, "reuse_factorization", "solve")
    if method == "auto":
        method = ("modified_policy_iteration" if isinstance(objective, Discounted)
                  else "policy_iteration")
    if method == "value_iteration" and isinstance(objective, Average):
        method = "relative_value_iteration"
    if method == "relative_value_iteration" and isinstance(objective, Discounted):
        method = "value_iteration"
    if method not in _METHODS:
        raise ValidationError(f"unknown method {method!r}; choose from {METHODS}")
    if method == "modified_policy_iteration" and isinstance(objective, Average):
        raise ValidationError("modified_policy_iteration needs a Discounted objective; use "
                              "'policy_iteration' (or 'auto') for Average")
    if method == "soft_policy_iteration":
        if objective.entropy <= 0:
            raise ValidationError("soft_policy_iteration needs entropy > 0")
        method = "policy_iteration"
    with single_thread_blas():
        return _solve(mdp, objective, method, tol, max_iter, policy0, reuse_factorization,
                      aperiodicity, progress)


def _solve(mdp, objective, method, tol, max_iter, policy0, reuse_factorization, aperiodicity,
           progress):
    t0, c0 = time.perf_counter(), compile_seconds()
    from .kernels import config
    if method == "modified_policy_iteration":
        return _solve_mpi(mdp, objective, tol, max_iter or 10000, policy0, progress, t0, c0)
    if method == "policy_iteration":
        out = _policy_iteration(mdp, objective, tol, max_iter or 1000, policy0, reuse_factorization, progress)
    else:
        out = _value_iteration(mdp, objective, tol, max_iter or 10**6, aperiodicity, progress)
    masses, iters, converged, history, cache, last = out
    t1 = time.perf_counter()
    final_cache = LinearSolveCache(reuse=False)
    if last is not None:
        # exact policy iteration: the last iteration evaluated this very policy exactly to rounding
        J, w, V, Q = last
    else:
        # the returned values come from a fresh factorization: accurate to rounding, not to
        # GMRES's rtol
        J, w, V, Q, _, _ = _evaluate_masses(mdp, masses, objective, final_cache)
    res = _residual(mdp, objective, V, J)
    t2 = time.perf_counter()
    name = method if not (method == "policy_iteration" and objective.entropy > 0) else "soft_policy_iteration"
    solve_time = final_cache.stats["solve_time"] + (cache.stats["solve_time"] if cache is not None else 0.0)
    diag = {"history": np.asarray(history), "time_total": t2 - t0, "time_iterations": t1 - t0,
            "time_final_evaluation": t2 - t1,
            "timings": timings(t2 - t0, compile_seconds() - c0, solve_time),
            "linear_solver": dict(cache.stats) if cache is not None else {},
            "kernels_declared": config.KERNELS_DECLARED}
    pol = Policy(masses, mdp.actions, mdp.states, validate=False)
    sol = Solution(pol, J, V, Q, w, iters, converged, res, name, objective, diag)
    if not converged:
        change = f", last change {history[-1]:.3e}" if history and method != "policy_iteration" else ""
        hint = "raise max_iter or tol"
        if method == "relative_value_iteration" and aperiodicity == 0.0:
            # a periodic chain makes h oscillate for ever
            hint = ("on a periodic chain the iteration oscillates: pass aperiodicity (e.g. 0.5) or "
                    "use the default policy iteration; else raise max_iter or tol")
        raise ConvergenceError(f"{name} did not converge in {iters} iterations (Bellman residual of "
                               f"the returned policy {res:.3e}{change}); {hint}",
                               {"solution": sol, **diag})
    return sol


#: normwise backward error asked of the evaluations of exact policy iteration that reuse an old
#: factorization (GMRES preconditioned by it): four machine epsilons, at or below what a fresh
#: sparse LU solve attains (mountain car 121^2 average cost: 7 eps for the bias, GMRES 1.2 eps)
EXACT_BACKWARD = 4 * np.finfo(float).eps


#: discount factor of the modified-policy-iteration solve whose policy starts average-cost
#: policy iteration (an effective horizon of 100 steps)
AVERAGE_START_GAMMA = 0.99
#: relative accuracy of that solve: its policy is only a start (mountain car 121^2, reset: the
#: same 4 policy-iteration steps, 2 factorizations and gain from tolerances 1e-8 to 1e-1; in one
#: process the whole average-cost solve took 0.415 s at 1e-2, 0.451 s at 1e-3)
AVERAGE_START_TOL = 1e-2


def _discounted_start(mdp, tau):
    """The (soft) optimal policy of ``Discounted(AVERAGE_START_GAMMA, entropy=tau)`` by modified
    policy iteration, as a start for average-cost policy iteration; ``None`` when that policy is
    not unichain or the solve fails (the caller then starts as before)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AccuracyWarning)
            sol = _solve_mpi(mdp, Discounted(AVERAGE_START_GAMMA, entropy=tau), AVERAGE_START_TOL,
                             10000, None, False, time.perf_counter(), compile_seconds())
    except ConvergenceError:
        return None
    masses = sol.policy.masses
    if tau == 0 and len(recurrent_classes(_assembler(mdp)(masses))) != 1:
        return None
    return masses


def _policy_iteration(mdp, objective, tol, max_iter, policy0, reuse, progress):
    tau = objective.entropy
    if policy0 is not None:
        masses = _check_policy(mdp, policy0)
    elif isinstance(objective, Average) and (warm := _discounted_start(mdp, tau)) is not None:
        masses = warm
    elif tau == 0:
        # greedy for V = 0: a deterministic start keeps P_pi (and its LU factors) as sparse as a
        # deterministic policy's; the uniform policy mixes every action's row
        masses = _greedy(mdp.C, 0.0)
        if isinstance(objective, Average) and len(recurrent_classes(_assembler(mdp)(masses))) != 1:
            # the cheapest actions leave several recurrent classes (e.g. states they keep in
            # place): start from the discounted-optimal policy at gamma = 0.999 instead, which
            # steers every state where the average-optimal policy does
            masses = _policy_iteration(mdp, Discounted(0.999), tol, max_iter, None, reuse, False)[0]
    else:
        masses = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)
    # exact PI switches whole rows of P_pi from one iteration to the next, which defeats the old
    # factors as a preconditioner until few states change: reuse is probed only then
    # tau = 0: reused-factor solves must reach a direct solve's backward error (EXACT_BACKWARD),
    # so every evaluation is exact to rounding and the last one is returned as it is
    cache = LinearSolveCache(reuse=reuse and tau > 0,
                             backward_tol=EXACT_BACKWARD if tau == 0 else None)
    last = None
    history = []
    bar = _progress(progress, max_iter, "policy iteration")
    converged = False
    it = 0
    try:
        for it in range(1, max_iter + 1):
            # the greedy step needs V only: the occupancy / stationary law (a transposed solve) is
            # computed once, for the returned policy
            J, _, V, Q, _, _ = _evaluate_masses(mdp, masses, objective, cache, weights=False,
                                                stationary=False)
            history.append(J)
            new = _greedy(Q, tau, current=masses)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(J=f"{J:.10g}")
            if tau == 0:
                if np.array_equal(new, masses):
                    converged = True
                    # this evaluation is exact to rounding (a direct solve, or reused factors held
                    # to EXACT_BACKWARD): add the weights with the current factors (never a new
                    # factorization), the values restarting from it (accepted by the same test)
                    cache.reuse, cache.small_factor = True, 0
                    last = _evaluate_masses(mdp, masses, objective, cache, V0=V, J0=J)[:4]
                    break
                changed = np.count_nonzero(np.any(new != masses, axis=1))
                cache.reuse = reuse and changed <= 0.01 * mdp.n_states
            else:
                # the Bellman residual is second order in the policy error (it is tau times a KL
                # divergence), so stop on the change of the policy itself and return the improved one
                change = float(np.max(np.abs(new - masses)))
                masses = new
                if change <= tol:
                    converged = True
                    break
                continue
            masses = new
    finally:
        if bar is not None:
            bar.close()
    return masses, it, converged, history, cache, last


def _value_iteration(mdp, objective, tol, max_iter, aperiodicity, progress):
    tau = objective.entropy
    nS = mdp.n_states
    u = np.zeros(nS)
    history = []
    bar = _progress(progress, None, "value iteration" if isinstance(objective, Discounted)
                    else "relative value iteration")
    converged = False
    it = 0
    try:
        if isinstance(objective, Discounted):
            g = objective.gamma
            thresh = tol * (1.0 - g) / max(g, 1e-300)
            for it in range(1, max_iter + 1):
                TV, Q = bellman_operator(mdp, g * u, tau)
                diff = float(np.max(np.abs(TV - u)))
                u = TV
                history.append(diff)
                if bar is not None and it % 100 == 0:
                    bar.update(100)
                    bar.set_postfix(diff=f"{diff:.2e}")
                if diff < thresh:
                    converged = True
                    break
            _, Q = bellman_operator(mdp, g * u, tau)
        else:
            a = aperiodicity
            ref = 0
            for it in range(1, max_iter + 1):
                TV, Q = bellman_operator(mdp, u, tau)
                TV = a * u + (1.0 - a) * TV
                delta = TV - u
                span = float(delta.max() - delta.min())
                u = TV - TV[ref]
                history.append(span)
                if bar is not None and it % 100 == 0:
                    bar.update(100)
                    bar.set_postfix(span=f"{span:.2e}")
                if span < tol * (1.0 - a):
                    converged = True
                    break
            _, Q = bellman_operator(mdp, u, tau)
    finally:
        if bar is not None:
            bar.close()
    return _greedy(Q, tau), it, converged, history, None, None


# ---------------------------------------------------------------------------------------------
# modified policy iteration: the default for discounted objectives
# ---------------------------------------------------------------------------------------------
class _LUFallback:
    """What the evaluators of modified policy iteration share: after :attr:`MAX_PARTIAL` partial
    evaluations in a row, evaluations switch to sparse LU factorizations, reused as
    preconditioners between iterations (:class:`~wgflow.linalg.LinearSolveCache`). Subclasses
    hold ``nS``, ``g``, ``cache`` (None until then), ``unconverged`` and ``stats``."""

    #: partial evaluations in a row after which evaluations are factorized
    MAX_PARTIAL = 30

    def _lu_evaluate(self, P_pi, c):
        """``(V, 0.0)``: the exact evaluation by the cached factorization."""
        A = (sp.identity(self.nS, format="csr") - self.g * P_pi.tocsr()).tocsr()
        V, = self.cache.solve(A, [c], [False])
        self.stats["lu_evaluations"] += 1
        return V, 0.0

    def _partial(self):
        """Count a partial evaluation; the last one allowed in a row switches to LU."""
        self.stats["partial_evaluations"] += 1
        self.unconverged += 1
        if self.unconverged >= self.MAX_PARTIAL:
            # as exact policy iteration's evaluations: a reused factorization's answer is
            # accepted at the backward error of a direct solve (GMRES's relative residual
            # alone leaves errors of 1e-13 |c| / (1 - gamma), a floor that the Bellman residual
            # cannot pass at gamma = 0.999)
            self.cache = LinearSolveCache(reuse=True, backward_tol=EXACT_BACKWARD)


class _PolicyEvaluator(_LUFallback):
    """Evaluates the successive policies of modified policy iteration.

    Jacobi sweeps ``v <- c + g P_pi v`` run from the warm start; after each sweep the span bound
    ``g/(1-g) span(T v - v)/2`` bounds the error of the midpoint-corrected iterate (MacQueen).
    They stop at the target, or early when the contraction measured over the first sweeps
    predicts more than ``k_max`` sweeps (about one Bellman sweep's worth of work). Then:

    - a deterministic policy whose chain has no large strongly connected component is evaluated
      exactly by block substitution (:class:`~wgflow.linalg.BlockTriangularSolver`), which is
      cheap on the nearly acyclic chains of control problems;
    - otherwise the sweeps go on to ``k_max`` and the partial evaluation is kept (modified policy
      iteration proper); after :attr:`MAX_PARTIAL` partial evaluations in a row, evaluations
      switch to sparse LU factorizations, reused as preconditioners between iterations
      (:class:`~wgflow.linalg.LinearSolveCache`).
    """

    #: sweeps before the contraction rate is judged
    PROBE = 4
    #: block substitution is used when the largest component has at most
    #: ``max(BLOCK_MAX, BLOCK_FRACTION * nS)`` states (its sparse LU is then cheap)
    BLOCK_MAX = 2000
    BLOCK_FRACTION = 0.75
    #: evaluations that skip the search for blocks after it found one too large
    SKIP_AFTER_LARGE = 3

    def __init__(self, nS, g, k_max):
        self.nS, self.g, self.k_max = nS, g, int(k_max)
        self.unconverged = 0
        self.prefer_blocks = False
        self.skip_blocks = 0     # evaluations left before blocks are looked for again
        self.last_blocks = None  # the last block solver that evaluated a policy
        self.cache = None
        self.out = np.empty(nS)
        self.stats = {"evaluation_sweeps": 0, "block_evaluations": 0, "lu_evaluations": 0,
                      "partial_evaluations": 0, "largest_block": 0, "evaluation_time": 0.0,
                      "reused_block_orders": 0}

    def __call__(self, P_pi, c, v0, target, deterministic, final=True):
        t = time.perf_counter()
        try:
            return self._evaluate(P_pi, c, v0, target, deterministic, final)
        finally:
            self.stats["evaluation_time"] += time.perf_counter() - t

    def _sweeps(self, P_pi, c, v, target, k_stop, probe):
        """Jacobi sweeps on ``v`` (in place) up to ``k_stop`` or the target; with ``probe``, stop
        after :attr:`PROBE` sweeps when the measured rate predicts more than ``k_max`` sweeps.
        Returns ``(v, err, converged)``; ``v`` is not yet midpoint-corrected (see ``_finish``)."""
        g = self.g
        out = self.out
        self._lo = self._hi = 0.0
        err = first = np.inf
        k = 0
        while k < k_stop:
            self._lo, self._hi = policy_sweep(P_pi.indptr, P_pi.indices, P_pi.data, c, v, g, out)
            v, out = out, v
            k += 1
            err = 0.5 * g * (self._hi - self._lo) / (1.0 - g)
            if err <= target:
                break
            if k == 1:
                first = err
            elif probe and k == self.PROBE:
                # sweeps still needed at the contraction rate seen so far
                rate = (err / first) ** (1.0 / (k - 1))
                if target <= 0 or rate >= 1.0 or (
                        rate > 0 and k + np.log(target / err) / np.log(rate) > self.k_max):
                    break
        self.out = out
        self.stats["evaluation_sweeps"] += k
        return v, err, k

    def _finish(self, v):
        return v + 0.5 * self.g * (self._hi + self._lo) / (1.0 - self.g)

    def _blocks(self, P_pi, c, v0, target, factorize):
        """Block substitution, or None when the chain has a large component or a block would
        need a factorization and ``factorize`` is False."""
        if self.skip_blocks > 0:
            self.skip_blocks -= 1
            return None
        bts = BlockTriangularSolver(P_pi, self.g, previous=self.last_blocks)
        self.stats["largest_block"] = bts.largest_block
        self.stats["reused_block_orders"] += bts.reused_order
        if bts.largest_block > max(self.BLOCK_MAX, self.BLOCK_FRACTION * self.nS):
            # successive policies of a slowly mixing problem (mountain car) keep one large
            # component: look again only after a few iterations (saves Tarjan's pass each time)
            self.skip_blocks = self.SKIP_AFTER_LARGE
            return None
        v = bts.solve(c, v0, tol=target, factorize=factorize)
        if v is not None:
            self.stats["block_evaluations"] += 1
            self.unconverged = 0
            # late policies differ from their predecessor in few states: its blocks usually
            # still order the next chain (checked in one pass, instead of Tarjan's)
            self.last_blocks = bts
        return v

    def _evaluate(self, P_pi, c, v0, target, deterministic, final):
        if self.cache is not None:
            return self._lu_evaluate(P_pi, c)
        tried = False
        if deterministic and self.prefer_blocks:
            # the previous chain was nearly acyclic: its successor usually is too
            tried = True
            v = self._blocks(P_pi, c, v0, target, final)
            if v is not None:
                return v, target
            self.prefer_blocks = False
        v = np.array(v0, dtype=float)
        v, err, k = self._sweeps(P_pi, c, v, target, self.k_max, deterministic and not tried)
        if err <= target:
            self.unconverged = 0
            return self._finish(v), err
        if deterministic and not tried:
            # a sparse LU of a slowly mixing block only pays near the end (early targets are loose)
            w = self._blocks(P_pi, c, v0, target, final)
            if w is not None:
                self.prefer_blocks = True
                return w, target
            # a large component (early policies of control problems often circulate, e.g.
            # zero torque on the pendulum): a partial evaluation with the full sweep budget
            if k < self.k_max:
                v, err, _ = self._sweeps(P_pi, c, v, target, self.k_max - k, False)
                if err <= target:
                    self.unconverged = 0
                    return self._finish(v), err
        self._partial()
        return self._finish(v), err


def _deferred_weights(mdp, objective, masses):
    """The normalized discounted occupancy of ``masses``, computed when first asked for."""
    def compute():
        g = objective.gamma
        P_pi = _assembler(mdp)(masses)
        A = (sp.identity(mdp.n_states, format="csr") - g * P_pi).tocsr()
        y, = LinearSolveCache(reuse=False).solve(A, [objective.initial_law(mdp.n_states)], [True])
        return (1.0 - g) * y
    return _DeferredWeights(compute)


#: work of a soft sweep per state-action pair (exponential, gather), in units of one entry of
#: ``P``: sets the number of evaluation sweeps per iteration (``k_max``, about one soft sweep's
#: worth: 50 Jacobi sweeps on the pendulum 101^2 x 41, where a soft sweep takes 3.8 ms and a
#: Jacobi sweep on the Gibbs chain 0.08 ms; 8 to 16 give within one sweep's worth of the same
#: total work there)
_SOFT_PAIR_WORK = 12


class _SoftEvaluator(_LUFallback):
    """Partial evaluations of the Gibbs policies of soft modified policy iteration.

    Soft modified policy iteration is an inexact Newton method (soft policy iteration is Newton's
    method on ``V = T V``); each evaluation starts from the sweep's ``TV`` and stops at a target
    ``eta |TV - V|_inf`` or after ``k_max`` sweeps' worth of work. The forcing term ``eta``
    follows Eisenstat and Walker (1996, choice 2): ``eta = 0.9 (delta / delta_prev)^2``, kept
    within ``[ETA_MIN, ETA_MAX]``: loose while the residual stalls, ``ETA_MIN`` in the fast local
    phase. The Gibbs chain is one strongly connected component, so the block substitution of
    deterministic chains does not apply. Two kinds of sweeps:

    - *global phase* (until the residual falls to ``LOCAL_DROP`` of the largest so far): Jacobi
      sweeps with MacQueen's span bounds (:func:`~wgflow.kernels.softmin.span_sweeps`); robust
      for any chain. Early policies change wholesale, an accurate evaluation of them is wasted:
      while the residual has not decreased, an evaluation gets ``1 / GLOBAL_SHARE`` of the
      budget.
    - *local phase*: symmetric Gauss-Seidel sweeps, each corrected by a constant weighted by an
      estimate of the chain's stationary law (:func:`~wgflow.kernels.gauss_seidel.corrected_gs_sweeps`;
      the estimate starts with ``RHO_START`` Gauss-Seidel sweeps on ``rho = P^T rho`` from the
      uniform law and is carried from policy to policy). About three times fewer sweeps than Jacobi's for the same accuracy
      on the pendulum at ``gamma = 0.99`` (the chain mixes slowly: Jacobi sweeps contract by
      0.88 there), each about ``GS_COST`` Jacobi sweeps. Their error is estimated, not bounded
      (the outer sweep certifies the result), so the target is read as the Jacobi sweeps' span
      bound reads it: a residual ``2 (1 - gamma) / gamma`` times the target, but no less than
      ``GS_FLOOR`` times the final target. If the sweeps
      diverge (the kernel's bound check: a poor estimate, amplified by ``1 / (1 - gamma)``), or
      the residual grows after a local evaluation for the ``GROW_LIMIT``-th time, the solve goes
      back to Jacobi sweeps for good (a single growth is often the policy still changing
      wholesale after an accurate evaluation: mountain car 61^2 with resets, entropy 0.1, went
      from 12 Bellman sweeps to 36 and LU factorizations when the first one sent it back).
    - *chains with an absorbing state* (a self-loop of probability 1 in double precision: the
      goal cells of the mountain car): no slow constant mode (the absorbing values pin it, and
      a sweep solves them exactly with their self-loop) and no unique stationary law, so plain
      symmetric Gauss-Seidel sweeps, without the correction or the estimate, in both phases
      (they contract at least as fast as Jacobi's: Stein-Rosenberg), and no return to Jacobi
      sweeps when the residual grows. Mountain car 61^2 x 21 at ``gamma = 0.999``: 11-14
      Bellman sweeps and 154-299 evaluation sweeps instead of 13-26 and 493-1122.

    After :attr:`MAX_PARTIAL` partial evaluations in a row, evaluations switch to sparse LU
    factorizations (:class:`~wgflow.linalg.LinearSolveCache`).
    """

    ETA_MIN = 1e-3
    ETA_MAX = 0.1
    #: while the residual has not decreased, evaluations get this fraction of ``k_max``
    #: (pendulum 101^2 x 41, entropy 0.1: 303 evaluation sweeps instead of 361, the same 9
    #: Bellman sweeps)
    GLOBAL_SHARE = 3
    #: a corrected Gauss-Seidel sweep costs about this many Jacobi sweeps (``k_max`` counts the
    #: latter)
    GS_COST = 1.3
    #: a Gauss-Seidel sweep of the stationary-law estimate every this many sweeps
    RHO_EVERY = 8
    #: the local phase starts once the residual is this fraction of the largest so far (0.1
    #: took 50 more Jacobi sweeps on the pendulums 71^2 to 150^2 for the same Bellman sweeps)
    LOCAL_DROP = 0.3
    #: Gauss-Seidel sweeps from the uniform law that start the stationary-law estimate (on the
    #: pendulum 101^2 x 41, 10 of them come closer to it than 40 power steps)
    RHO_START = 10
    #: the Gauss-Seidel target is at least this many times the final target (``(1 - gamma) tol
    #: |V| / 4``): the stopping test asks ``|TV - V| <= 4`` of it, and an evaluation error ``e``
    #: leaves a residual of at most ``(1 + gamma) e`` (the target read as the Jacobi bound asks
    #: 50 times less there; pendulum 101^2 x 41: 59 Gauss-Seidel sweeps instead of 72, the same
    #: Bellman sweeps on the pendulums and the mountain car)
    GS_FLOOR = 1.0
    #: growths of the residual after local evaluations that send the solve back to Jacobi sweeps
    GROW_LIMIT = 3
    #: the sweeps run on a copy of the chain without its negligible entries when at least this
    #: share of them are (:meth:`_swept_chain`; pendulum 150^2 x 51 at entropy 1e-3: 65 %, a
    #: Gauss-Seidel sweep on the copy costs 0.64 of one on the chain; at entropy 0.1, 11 % and
    #: 0.96, less than the copy costs; mountain car 61^2 at entropy 1e-3: 30 %, 5 % slower)
    MIN_DROPPED = 0.4

    def __init__(self, nS, g, k_max, pattern):
        # pattern: a callable giving the self-loop positions and the transpose of the chains'
        # common pattern (:func:`_union_transpose`, kept on the MDP)
        self.nS, self.g, self.k_max, self.pattern = nS, g, int(k_max), pattern
        self.prev = self.prev2 = None
        self.floor = 0.0
        self.unconverged = 0
        self.cache = None
        self.work = (np.empty(nS), np.empty(nS), np.empty(nS))
        self.rho = self.dpos = self.tpat = self.tdata = self.loops = None
        self.local = self.failed = False
        self.growths = 0
        self.largest = 0.0
        self.thin = None
        self.stats = {"evaluation_sweeps": 0, "gauss_seidel_sweeps": 0, "block_evaluations": 0,
                      "lu_evaluations": 0, "partial_evaluations": 0, "largest_block": 0,
                      "evaluation_time": 0.0}

    def target(self, delta, floor):
        """The evaluation target after a sweep with residual ``delta`` (at least ``floor``)."""
        eta = self.ETA_MIN
        if self.prev is not None and self.prev > 0:
            eta = min(self.ETA_MAX, max(self.ETA_MIN, 0.9 * (delta / self.prev) ** 2))
        self.prev, self.prev2 = delta, self.prev
        self.floor = floor
        self.largest = max(self.largest, delta)
        return max(floor, eta * delta)

    def last_sweep_expected(self, threshold):
        """Whether the next sweep is expected to meet the stopping test ``delta <= threshold``.

        In the local (quadratic) phase ``delta_next ~ K delta^2`` with ``K ~ delta /
        delta_prev^2``; a margin of 100 on the threshold. Only decides whether that sweep writes
        ``Q`` and the masses (a wrong guess costs one more sweep, never accuracy).
        """
        d1, d0 = self.prev, self.prev2
        if d1 is None or d0 is None or not d1 < d0:
            return False
        # (d1 / d0)^2 d1: no overflow or underflow of the powers at extreme cost scales
        return (d1 / d0) ** 2 * d1 <= 100.0 * threshold

    def _swept_chain(self, P_pi):
        """``(indptr, indices, data, dpos)`` of the chain the sweeps run on: where at least
        :attr:`MIN_DROPPED` of its entries are below ``theta = eps (1 - g) / (4 w)`` (``w`` the
        longest row), a copy of ``P_pi`` without those off the diagonal
        (:func:`~wgflow.kernels.gauss_seidel.drop_negligible`): they move the evaluation by at
        most ``g w theta |x|_inf / (1 - g) < eps |x|_inf / 4``, below the rounding of the values.
        Small entropies leave most of a Gibbs chain's entries far below it (the masses of the
        actions whose ``Q`` is many ``tau`` above the row minimum); otherwise ``P_pi`` itself."""
        if self.thin is None:
            w = max(int(np.max(np.diff(P_pi.indptr))), 1)
            theta = np.finfo(float).eps * (1.0 - self.g) / (4.0 * w)
            self.thin = (theta, np.empty(P_pi.indptr.size, dtype=np.int64),
                         np.empty_like(P_pi.indices), np.empty(P_pi.data.size),
                         np.empty(self.nS, dtype=np.int64))
        theta, optr, oidx, odata, dpos = self.thin
        if np.count_nonzero(P_pi.data <= theta) < self.MIN_DROPPED * P_pi.data.size:
            return P_pi.indptr, P_pi.indices, P_pi.data, self.dpos
        k = drop_negligible(P_pi.indptr, P_pi.indices, P_pi.data, theta, optr, oidx, odata, dpos)
        return optr, oidx[:k], odata[:k], dpos

    def __call__(self, P_pi, c, v0, target, deterministic=False, final=True):
        """``(V, err)``: the evaluation from ``v0`` and its error (a bound from Jacobi sweeps, an
        estimate from Gauss-Seidel sweeps; the call of :class:`_PolicyEvaluator`;
        ``deterministic`` and ``final`` are not used)."""
        t = time.perf_counter()
        try:
            if self.cache is not None:
                return self._lu_evaluate(P_pi, c)
            if self.dpos is None:
                # the chains of a solve share one pattern (the union pattern)
                self.dpos, self.tpat = self.pattern()
                self.loops = self.dpos[self.dpos >= 0]
            # a chain with an absorbing state (a goal cell) has no slow constant mode (the
            # absorbing values pin it) and no unique stationary law: plain Gauss-Seidel sweeps,
            # which contract at least as fast as Jacobi's (Stein-Rosenberg), in every phase
            absorbing = bool(np.any(P_pi.data[self.loops] >= 1.0 - 1e-12))
            if (self.local and not absorbing and self.prev2 is not None
                    and self.prev > self.prev2):
                # the residual grew after a Gauss-Seidel evaluation: the policy may still
                # change wholesale, or the estimate misled; the latter, repeated, means Jacobi
                self.growths += 1
                if self.growths >= self.GROW_LIMIT:
                    self.local, self.failed = False, True
            if not (self.local or self.failed) and self.prev <= self.LOCAL_DROP * self.largest:
                self.local = True
            # no decrease of the residual yet: the policies still change wholesale, an accurate
            # evaluation of them is wasted (a GLOBAL_SHARE of the budget in the global phase)
            starting = self.prev2 is None or self.prev >= self.prev2
            v, prho, dv = self.work
            v[:] = v0
            gauss_seidel = self.local or (absorbing and not self.failed)
            swept = self._swept_chain(P_pi)
            if gauss_seidel:
                tptr, tidx, tmap = self.tpat
                if self.tdata is None:
                    self.tdata = np.zeros(tmap.size)
                if not absorbing:
                    tdata = np.take(P_pi.data, tmap, out=self.tdata)
                    if self.rho is None:
                        self.rho = np.full(self.nS, 1.0 / self.nS)
                        stationary_sweeps(tptr, tidx, tdata, self.rho, self.RHO_START, True)
                tdata = self.tdata
                rho = self.rho if self.rho is not None else prho      # (not read if absorbing)
                k_max = self.k_max / self.GS_COST
                if not self.local and starting:
                    # the global phase of a chain with absorbing states
                    k_max /= self.GLOBAL_SHARE
                # the target as the Jacobi sweeps' span bound reads it: their residual within
                # 2 (1 - g) / g of it (the next sweep's residual is what the evaluation leaves)
                k, err, ok = corrected_gs_sweeps(*swept, tptr, tidx, tdata, c, v, self.g,
                                                 rho, prho, dv, max(1, int(k_max)),
                                                 max(2.0 * (1.0 - self.g) / self.g * target,
                                                     self.GS_FLOOR * self.floor),
                                                 self.RHO_EVERY, not absorbing)
                self.stats["gauss_seidel_sweeps"] += int(k)
                self.stats["evaluation_sweeps"] += int(k)
                if not ok:
                    # diverging (a poor stationary-law estimate): Jacobi sweeps from here on
                    self.local, self.failed, gauss_seidel = False, True, False
                    v[:] = v0
            if not gauss_seidel:
                k_max = max(1, self.k_max // self.GLOBAL_SHARE) if starting else self.k_max
                v, k, err = span_sweeps(*swept[:3], c, v, self.g, k_max, target, prho)
                self.stats["evaluation_sweeps"] += int(k)
            if err <= target:
                self.unconverged = 0
            else:
                self._partial()
            return v.copy(), err
        finally:
            self.stats["evaluation_time"] += time.perf_counter() - t


#: modified policy iteration stops at the rounding floor once this many sweeps in a row after
#: exact (factorized) evaluations have not lowered a Bellman residual whose error bound is
#: already within ``ACCURACY_FAIL`` (policy iteration with exact evaluations, Newton's method
#: there, lowers it every step until rounding takes over)
STALLED_EXACT = 3


def _solve_mpi(mdp, objective, tol, max_iter, policy0, progress, t0, c0):
    r"""Modified policy iteration with certified stopping (see :func:`solve`)."""
    from .kernels import config
    g, tau = objective.gamma, objective.entropy
    nS, nA = mdp.n_states, mdp.n_actions
    P = mdp.P
    C = np.ascontiguousarray(mdp.C, dtype=np.float64)
    hard = tau == 0
    logvol = float(np.log(_cell_volume(mdp)))
    sweep = make_bellman_sweep("min") if hard else None
    mu0 = objective.initial_law(nS)
    states = np.arange(nS)
    TV = np.empty(nS)
    new_sigma = np.empty(nS, dtype=np.int64)
    Q = np.empty((nS, nA))
    cpi = np.empty(nS)
    if hard:
        # the greedy policy's chain, written by the sweep (room for any choice of rows)
        P_hard = CSRArrays(np.empty(nS + 1, dtype=np.int64), np.empty(P.nnz, dtype=P.indices.dtype),
                           np.empty(P.nnz), nS)
    else:
        # the chains of all Gibbs policies live on one pattern, filled by the sweep itself
        u_ptr, u_idx, u_cptr, u_act, u_data = _union_pattern(mdp)
        P_soft = CSRArrays(u_ptr, u_idx, np.empty(u_idx.size), nS)
        # Q and the Gibbs masses are written by the sweep expected to be the last
        soft_masses = np.empty((nS, nA))
        wrote = False
    # one Bellman sweep reads every (s, a) row of P; a policy sweep only the rows of P_pi:
    # allow about one Bellman sweep's worth of policy sweeps per partial evaluation
    bellman_work = P.nnz + nS * nA * (1 if hard else _SOFT_PAIR_WORK)
    evaluator = (_PolicyEvaluator(nS, g, 10) if hard
                 else _SoftEvaluator(nS, g, 10, lambda: _union_transpose(mdp)))

    def set_k_max(P_pi):
        evaluator.k_max = int(np.clip(bellman_work / (P_pi.nnz + nS), 30, 1000))

    if policy0 is not None:
        m0 = _check_policy(mdp, policy0)
        V = _evaluate_masses(mdp, m0, objective, LinearSolveCache(reuse=False), weights=False)[2]
        sigma = np.argmax(m0, axis=1).astype(np.int64)
    else:
        # V = 0: the first sweep gives the greedy policy of the costs
        sigma = np.full(nS, -1, dtype=np.int64)
        V = np.zeros(nS)
    tiny = np.finfo(float).tiny
    eps = np.finfo(float).eps
    history = []
    bar = _progress(progress, None, "modified policy iteration")
    converged = False
    n_sweeps = 0
    delta = np.inf
    best, since_best = np.inf, 0
    it = 0
    try:
        for it in range(1, max_iter + 1):
            u = g * V
            if hard:
                lo, hi = sweep(P.indptr, P.indices, P.data, C, u, 0.0, V, sigma, TV, new_sigma, Q,
                               P_hard.indptr, P_hard.indices, P_hard.data, cpi,
                               it == 1 and policy0 is None)
                delta = max(-lo, hi)
            else:
                stop = max((1.0 - g) * tol, 64 * eps) * max(float(np.max(np.abs(V))), tiny)
                wrote = evaluator.last_sweep_expected(stop)
                soft_sweep_chain(u_ptr, u_idx, u_cptr, u_act, u_data, C, u, tau, logvol, TV, Q,
                                 P_soft.data, cpi, soft_masses, wrote)
                d = TV - V
                delta = float(max(-d.min(), d.max()))
            n_sweeps += 1
            if not np.isfinite(delta):
                raise ConvergenceError(
                    f"solve: exact evaluation gave non-finite values (modified policy iteration, "
                    f"iteration {it}; {objective!r}; largest |C| = {np.max(np.abs(C)):.3g}): the "
                    "values overflow double precision; rescale the costs", {"iteration": it})
            scale = max(float(np.max(np.abs(V))), tiny)
            history.append(delta / (1.0 - g))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(bound=f"{delta / (1.0 - g):.2e}")
            # |V - V*| and |V - V_pi| are both <= |TV - V|_inf / (1 - g) for pi greedy in TV
            if delta <= (1.0 - g) * tol * scale or delta <= 64 * eps * scale:
                converged = True
                break
            best, since_best = (delta, 0) if delta < best else (best, since_best + 1)
            if (evaluator.cache is not None and since_best >= STALLED_EXACT
                    and history[-1] <= ACCURACY_FAIL * scale):
                # exact evaluations no longer lower a residual that is already small: the
                # rounding floor of this problem (the check below warns). A larger residual may
                # grow for a while as the policy changes wholesale, even with exact evaluations
                converged = True
                break
            final_target = 0.25 * (1.0 - g) * tol * scale
            target = max(final_target, 0.001 * delta)
            if hard:
                sigma, new_sigma = new_sigma, sigma
                P_pi = P_hard
                c = cpi.copy()
            else:
                P_pi = P_soft
                c = cpi                 # read by the evaluation before the next sweep writes it
                target = evaluator.target(delta, final_target)
            if it == 1:
                set_k_max(P_pi)
            # the first greedy policy (of the costs alone) usually circulates (zero torque on the
            # pendulum): its chain is one large component, so sweeps only (a partial evaluation)
            V, _ = evaluator(P_pi, c, TV, target, hard and it > 1, target <= 10 * final_target)
    finally:
        if bar is not None:
            bar.close()
    if hard:
        final = np.zeros((nS, nA))
        final[states, new_sigma] = 1.0
    else:
        if not wrote:
            # the last sweep was not expected to be: once more, writing Q and the masses (the
            # library's Gibbs map of Q, as gibbs_masses)
            soft_sweep_chain(u_ptr, u_idx, u_cptr, u_act, u_data, C, u, tau, logvol, TV, Q,
                             P_soft.data, cpi, soft_masses, True)
            n_sweeps += 1
        final = soft_masses
    if converged and history[-1] > tol * scale:
        # stopped at the rounding floor: the bound is what double precision allows here
        est = history[-1] / scale
        if not est <= ACCURACY_FAIL:
            raise ConvergenceError(
                f"solve: exact evaluation lost its accuracy: estimated relative error {est:.2e} "
                f"({objective!r}, 1/(1 - gamma) = {1.0 / (1.0 - g):.3g}); the problem is too badly "
                "conditioned for double precision", {"estimated_error": est})
        warnings.warn(f"solve: error bound {est:.2e} relative, above tol = {tol:g}: the rounding "
                      f"floor of double precision at {objective!r}", AccuracyWarning, stacklevel=4)
    t2 = time.perf_counter()
    J = float(mu0 @ V)
    bound = delta / (1.0 - g)
    solve_time = evaluator.stats["evaluation_time"]
    lin = dict(evaluator.cache.stats) if evaluator.cache is not None else {}
    diag = {"history": np.asarray(history), "time_total": t2 - t0, "time_iterations": t2 - t0,
            "time_final_evaluation": 0.0,
            "timings": timings(t2 - t0, compile_seconds() - c0, solve_time),
            "error_bound": bound, "bellman_sweeps": n_sweeps, **evaluator.stats,
            "linear_solver": lin, "kernels_declared": config.KERNELS_DECLARED}
    pol = Policy(final, mdp.actions, mdp.states, validate=False)
    sol = Solution(pol, J, V.copy(), Q, _deferred_weights(mdp, objective, final), it, converged,
                   delta, "modified_policy_iteration", objective, diag)
    if not converged:
        raise ConvergenceError(f"modified_policy_iteration did not converge in {it} iterations "
                               f"(error bound {bound:.3e}); raise max_iter or tol",
                               {"solution": sol, **diag})
    return sol
