r"""Exact policy evaluation and exact solvers.

:func:`evaluate` returns the objective ``J``, the metric weights (discounted occupancy or
stationary law), ``V`` (or the bias ``h``) and the soft ``Q``; :func:`solve` finds the optimal
policy by policy iteration (soft policy iteration when ``entropy > 0``), value iteration or
relative value iteration.

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
from scipy.sparse.csgraph import connected_components
from scipy.special import logsumexp, xlogy

from . import validation
from .errors import AccuracyWarning, ConvergenceError, NotUnichainError, ValidationError
from .kernels import PolicyMatrixAssembler
from .kernels.config import compile_seconds
from .linalg import LinearSolveCache
from .mdp import MDP
from .objectives import Average, Discounted, Objective
from .policy import Policy, check_masses, gibbs_masses

__all__ = ["evaluate", "solve", "Evaluation", "Solution", "recurrent_classes", "bellman_operator"]


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
    weights: np.ndarray
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
    """Closed communicating classes of the chain ``P_pi`` (lists of state indices)."""
    pos = P_pi.copy()
    pos.data = (pos.data > 0).astype(float)
    pos.eliminate_zeros()
    n, labels = connected_components(pos, directed=True, connection="strong")
    coo = P_pi.tocoo()
    coo = sp.coo_matrix((coo.data[coo.data > 0], (coo.row[coo.data > 0], coo.col[coo.data > 0])),
                        shape=coo.shape)
    leaving = labels[coo.row] != labels[coo.col]
    open_ = np.zeros(n, dtype=bool)
    open_[labels[coo.row[leaving]]] = True
    closed = np.nonzero(~open_)[0]
    return [np.nonzero(labels == k)[0] for k in closed]


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


def _evaluate_masses(mdp: MDP, masses: np.ndarray, objective: Objective, cache: LinearSolveCache,
                     weights: bool = True):
    """Core evaluation: returns ``(J, weights, V, Q, c_pi, P_pi)``.

    ``weights=False`` skips the occupancy (one transpose solve) for the discounted objective and
    returns ``None`` in its place; the average cost always needs the stationary law (it
    normalizes the bias).
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
            V, x = cache.solve((I - g * P_pi).tocsr(), [c_pi, mu0], [False, True])
            weights = (1.0 - g) * x
        else:
            V, = cache.solve((I - g * P_pi).tocsr(), [c_pi], [False])
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
        M = (M + sp.csc_matrix((np.ones(nS), (np.arange(nS), np.full(nS, ref))), shape=(nS, nS))).tocsr()
        e = np.zeros(nS)
        e[ref] = 1.0
        x, rho = cache.solve(M, [c_pi, e], [False, True])
        J = float(x[ref])
        h = x.copy()
        h[ref] = 0.0
        if np.min(rho) < -1e-10:
            raise ConvergenceError(f"stationary law has a negative entry {np.min(rho):g}: the chain is "
                                   "numerically ill-conditioned", {"min_rho": float(np.min(rho))})
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
        scale = 1e-12 * np.maximum(1.0, np.abs(qmin))
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
_METHODS = ("policy_iteration", "soft_policy_iteration", "value_iteration", "relative_value_iteration")


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
    method : {"auto", "policy_iteration", "soft_policy_iteration", "value_iteration",
              "relative_value_iteration"}
        ``"auto"``: policy iteration (soft when ``entropy > 0``). ``"value_iteration"`` on an
        Average objective means relative value iteration.
    tol : float
        Soft policy iteration: stop when the policy masses change by at most ``tol`` (sup-norm)
        and return the last improved (Gibbs) policy; exact policy iteration stops when the policy
        repeats.
        Value iteration: stop when ``|V_{k+1} - V_k|_inf < tol * (1 - gamma) / gamma`` (so ``V``
        is within ``tol`` of the fixed point). Relative VI: stop when the span of
        ``T h - h`` is below ``tol``.
    max_iter : int, optional
        Default 1000 (policy iteration) or 10^6 (value iteration).
    policy0 : Policy, optional
        Starting policy for policy iteration (default uniform).
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
        The returned ``J, V, Q, weights`` are an exact evaluation of the returned policy.

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
    if method == "auto":
        method = "policy_iteration"
    if method == "value_iteration" and isinstance(objective, Average):
        method = "relative_value_iteration"
    if method == "relative_value_iteration" and isinstance(objective, Discounted):
        method = "value_iteration"
    if method not in _METHODS:
        raise ValidationError(f"unknown method {method!r}; choose from {('auto',) + _METHODS}")
    if method == "soft_policy_iteration":
        if objective.entropy <= 0:
            raise ValidationError("soft_policy_iteration needs entropy > 0")
        method = "policy_iteration"
    t0, c0 = time.perf_counter(), compile_seconds()
    from .kernels import config
    if method == "policy_iteration":
        out = _policy_iteration(mdp, objective, tol, max_iter or 1000, policy0, reuse_factorization, progress)
    else:
        out = _value_iteration(mdp, objective, tol, max_iter or 10**6, aperiodicity, progress)
    masses, iters, converged, history, cache, last = out
    t1 = time.perf_counter()
    final_cache = LinearSolveCache(reuse=False)
    if last is not None:
        # exact policy iteration: the last iteration evaluated this very policy by a direct solve
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
        raise ConvergenceError(f"{name} did not converge in {iters} iterations (Bellman residual "
                               f"{res:.3e}); raise max_iter or tol", {"solution": sol, **diag})
    return sol


def _policy_iteration(mdp, objective, tol, max_iter, policy0, reuse, progress):
    tau = objective.entropy
    if policy0 is not None:
        masses = _check_policy(mdp, policy0)
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
    cache = LinearSolveCache(reuse=reuse and tau > 0)
    last = None
    history = []
    bar = _progress(progress, max_iter, "policy iteration")
    converged = False
    it = 0
    try:
        for it in range(1, max_iter + 1):
            n_factorizations = cache.stats["factorizations"]
            J, w, V, Q, _, _ = _evaluate_masses(mdp, masses, objective, cache)
            direct = cache.stats["factorizations"] > n_factorizations
            history.append(J)
            new = _greedy(Q, tau, current=masses)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(J=f"{J:.10g}")
            if tau == 0:
                if np.array_equal(new, masses):
                    converged = True
                    if direct:
                        last = (J, w, V, Q)
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
