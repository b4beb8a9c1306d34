"""Exact evaluation and exact solvers: cross-checks against QuantEcon, pymdptoolbox and dense
independent computations, invariants, error paths and factorization reuse.

Conventions (docs/design.md §1): wgflow minimizes costs, the references maximize rewards, so
``V_wgflow = -V_reference`` and ``J_wgflow = -average_reward``; deterministic optimal policies are
compared as action indices (argmin of our Q == argmax of theirs).
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mdptoolbox.example
import mdptoolbox.mdp
from quantecon.markov import DiscreteDP, MarkovChain, gth_solve

import wgflow as wg
from wgflow.kernels import policy_matrix

GAMMAS = [0.5, 0.9, 0.99]


# ---------------------------------------------------------------------------------------------
# independent helpers (dense numpy; nothing here calls wgflow's solvers)
# ---------------------------------------------------------------------------------------------
def _seeded_rand(S, A, seed):
    """``mdptoolbox.example.rand`` draws from the global numpy state: seed it, then restore it."""
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        return mdptoolbox.example.rand(S, A)
    finally:
        np.random.set_state(state)


def _expected_reward(P_tb, R_tb):
    """Rewards ``(S, A)`` from pymdptoolbox's ``R`` ``(S, A)`` or ``(A, S, S)``."""
    R_tb = np.asarray(R_tb, dtype=float)
    if R_tb.ndim == 3:
        return np.einsum("ast,ast->sa", P_tb, R_tb)
    return R_tb


def _problem(name):
    """``(mdp, P_tb (A, S, S) dense, R_tb as pymdptoolbox wants it, R_sa (S, A) rewards)``."""
    if name.startswith("rand"):
        P_tb, R_tb = _seeded_rand(30, 4, seed=int(name[4:]))
    elif name.startswith("forest"):
        P_tb, R_tb = mdptoolbox.example.forest(S=int(name[6:]))
    elif name == "garnet":
        g = wg.problems.get("garnet", n_states=40, n_actions=5, branching=4, seed=3)
        S, A = g.n_states, g.n_actions
        P_tb = g.P.toarray().reshape(S, A, S).transpose(1, 0, 2).copy()
        R_tb = -g.C
    else:  # pragma: no cover
        raise KeyError(name)
    mdp = wg.MDP.from_mdptoolbox(P_tb, R_tb)
    return mdp, np.asarray(P_tb, dtype=float), R_tb, _expected_reward(P_tb, R_tb)


PROBLEMS = ["rand7", "garnet", "forest3", "forest50"]


def _dense_P(mdp):
    return mdp.P.toarray().reshape(mdp.n_states, mdp.n_actions, mdp.n_states)


def _dense_policy_matrix(Pd, masses):
    return np.einsum("sa,sat->st", masses, Pd)


def _dense_policy_cost(C, masses, tau, vol):
    c = np.sum(masses * C, axis=1)
    if tau > 0:
        pos = masses > 0
        logs = np.zeros_like(masses)
        logs[pos] = np.log(masses[pos] / vol)
        c = c + tau * np.sum(masses * logs, axis=1)
    return c


def _bordered_average(P_pi, c_pi, rho):
    """Solve ``(I - P) h + J 1 = c``, ``rho . h = 0`` densely: returns ``(J, h)``."""
    n = len(c_pi)
    K = np.zeros((n + 1, n + 1))
    K[:n, :n] = np.eye(n) - P_pi
    K[:n, n] = 1.0
    K[n, :n] = rho
    sol = np.linalg.solve(K, np.r_[c_pi, 0.0])
    return sol[n], sol[:n]


def _soft_value(Q, tau, vol):
    """``-tau log sum_a vol exp(-Q/tau)`` computed with an explicit min-shift."""
    qmin = Q.min(axis=1)
    return qmin - tau * np.log(np.sum(vol * np.exp(-(Q - qmin[:, None]) / tau), axis=1))


def _gibbs(Q, tau):
    z = np.exp(-(Q - Q.min(axis=1, keepdims=True)) / tau)
    return z / z.sum(axis=1, keepdims=True)


def _closed_classes_dense(P_pi):
    """Closed communicating classes by boolean transitive closure (independent of scipy.csgraph)."""
    n = P_pi.shape[0]
    R = (P_pi > 0) | np.eye(n, dtype=bool)
    while True:
        R2 = (R.astype(np.int64) @ R.astype(np.int64)) > 0
        if np.array_equal(R2, R):
            break
        R = R2
    recurrent = [i for i in range(n) if np.all(R[R[i], i])]   # every state i reaches, reaches i back
    classes = []
    seen = set()
    for i in recurrent:
        if i in seen:
            continue
        cls = frozenset(np.nonzero(R[i] & R[:, i])[0].tolist())
        seen |= cls
        classes.append(cls)
    return set(classes)


def _q_gap(Q):
    s = np.sort(Q, axis=1)
    return np.min(s[:, 1] - s[:, 0]) if Q.shape[1] > 1 else np.inf


def _assert_simplex(masses):
    assert np.all(masses >= 0)
    np.testing.assert_allclose(masses.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def _random_masses(rng, nS, nA, zero_frac=0.3):
    m = rng.dirichlet(np.ones(nA), size=nS)
    m[rng.random((nS, nA)) < zero_frac] = 0.0
    m[np.arange(nS), rng.integers(0, nA, nS)] += 0.5     # every row keeps some mass
    return m / m.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# 1. discounted, tau = 0: QuantEcon and pymdptoolbox
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", PROBLEMS)
def test_discounted_optimum_matches_quantecon_and_mdptoolbox(name, gamma):
    mdp, P_tb, R_tb, R_sa = _problem(name)
    S, A = mdp.n_states, mdp.n_actions
    sol = wg.solve(mdp, wg.Discounted(gamma=gamma), method="policy_iteration")   # exact to rounding
    assert sol.converged and sol.method == "policy_iteration"
    m = sol.policy.masses
    assert set(np.unique(m)) <= {0.0, 1.0}
    _assert_simplex(m)
    ours = sol.policy.greedy()
    # the optimal action is unique in every state (otherwise comparing policies is meaningless)
    assert _q_gap(sol.Q) > 1e-8
    scale = 1.0 + np.max(np.abs(sol.V))
    tol = 1e-11 * scale / (1.0 - gamma)

    # QuantEcon, state-action (sparse) form through wgflow's exporter
    r1 = mdp.to_quantecon(gamma).solve(method="policy_iteration")
    np.testing.assert_array_equal(r1.sigma, ours)
    np.testing.assert_allclose(sol.V, -r1.v, rtol=0, atol=tol)

    # QuantEcon, independently built from the dense (n, m, n) arrays
    ddp = DiscreteDP(R_sa, P_tb.transpose(1, 0, 2), gamma)
    r2 = ddp.solve(method="policy_iteration")
    np.testing.assert_array_equal(r2.sigma, ours)
    np.testing.assert_allclose(sol.V, -r2.v, rtol=0, atol=tol)
    # soft Q = C + gamma P V with the reference's value
    Q_ref = -(R_sa + gamma * np.einsum("ast,t->sa", P_tb, r2.v))
    np.testing.assert_allclose(sol.Q, Q_ref, rtol=0, atol=tol)

    # pymdptoolbox exact policy iteration (dense linear solve)
    pi = mdptoolbox.mdp.PolicyIteration(P_tb, R_tb, gamma, eval_type="matrix")
    pi.run()
    np.testing.assert_array_equal(np.asarray(pi.policy), ours)
    np.testing.assert_allclose(sol.V, -np.asarray(pi.V), rtol=0, atol=tol)

    # J = mu0 . V with the default uniform mu0; weights are the discounted occupancy
    assert sol.J == pytest.approx(np.mean(sol.V), rel=1e-13, abs=1e-13)
    assert np.all(sol.weights >= 0) and abs(sol.weights.sum() - 1.0) <= 1e-12
    P_pi = P_tb[ours, np.arange(S), :]
    d = (1 - gamma) * np.linalg.solve((np.eye(S) - gamma * P_pi).T, np.full(S, 1.0 / S))
    np.testing.assert_allclose(sol.weights, d, rtol=0, atol=1e-12)
    assert sol.residual <= 1e-12 * scale / (1 - gamma)

    # the default (modified policy iteration) meets its stated accuracy against the exact solve:
    # |V - V*| <= tol max|V| with the bound |TV - V| / (1 - gamma) it reports
    fast = wg.solve(mdp, wg.Discounted(gamma=gamma))
    assert fast.method == "modified_policy_iteration" and fast.converged
    assert fast.diagnostics["error_bound"] <= 1e-10 * np.max(np.abs(fast.V))
    np.testing.assert_allclose(fast.V, sol.V, rtol=0, atol=1e-10 * np.max(np.abs(sol.V)))
    np.testing.assert_array_equal(fast.policy.greedy(), ours)     # unique optimal actions (gap > 1e-8)
    np.testing.assert_allclose(fast.weights, sol.weights, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", ["rand7", "garnet", "forest3", "forest50"])
def test_mdptoolbox_value_iteration_gives_our_policy(name, gamma):
    # pymdptoolbox's ValueIteration stops on a span criterion and returns the last iterate: its
    # V can be off by a large near-constant (pymdptoolbox's upstream issue #39; forest(S=3), discount 0.99: V about
    # (6.4, 10.0, 14.0) instead of (317.6, 321.1, 325.1)). Its *policy* is still the optimal one,
    # so only the policy is compared; values are checked against PolicyIteration above.
    mdp, P_tb, R_tb, _ = _problem(name)
    sol = wg.solve(mdp, wg.Discounted(gamma=gamma))
    vi = mdptoolbox.mdp.ValueIteration(P_tb, R_tb, gamma, epsilon=1e-10)
    vi.run()
    np.testing.assert_array_equal(np.asarray(vi.policy), sol.policy.greedy())


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("name", ["rand7", "garnet", "forest50"])
def test_value_iteration_within_stated_tolerance(name, gamma):
    mdp, *_ = _problem(name)
    tol = 1e-8
    pi = wg.solve(mdp, wg.Discounted(gamma=gamma))
    vi = wg.solve(mdp, wg.Discounted(gamma=gamma), method="value_iteration", tol=tol)
    assert vi.converged and vi.method == "value_iteration"
    # stopping rule: |V_k+1 - V_k| < tol (1 - gamma) / gamma, so V_k+1 is within tol of V*
    hist = vi.diagnostics["history"]
    assert len(hist) == vi.iterations
    assert hist[-1] < tol * (1 - gamma) / gamma
    assert np.all(hist[:-1] >= tol * (1 - gamma) / gamma)
    np.testing.assert_array_equal(vi.policy.masses, pi.policy.masses)
    assert np.max(np.abs(vi.V - pi.V)) <= tol
    assert abs(vi.J - pi.J) <= tol


def test_from_mdptoolbox_layout_roundtrip():
    g = wg.problems.get("garnet", n_states=12, n_actions=3, branching=3, seed=11)
    S, A = g.n_states, g.n_actions
    Pd = _dense_P(g)
    m = wg.MDP.from_mdptoolbox(Pd.transpose(1, 0, 2), -g.C)
    np.testing.assert_array_equal(m.P.toarray(), g.P.toarray())
    np.testing.assert_array_equal(m.C, g.C)
    mats, R = g.to_mdptoolbox(sparse=False)
    np.testing.assert_array_equal(mats, Pd.transpose(1, 0, 2))
    np.testing.assert_array_equal(R, -g.C)
    # (A, S, S) rewards become expected rewards
    rng = np.random.default_rng(0)
    R3 = rng.random((A, S, S))
    m3 = wg.MDP.from_mdptoolbox(Pd.transpose(1, 0, 2), R3)
    np.testing.assert_allclose(m3.C, -np.einsum("sat,ast->sa", Pd, R3), rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# 2. average cost, tau = 0
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rand7", "rand8", "garnet", "forest50"])
def test_average_cost_matches_rvi_and_dense(name):
    mdp, P_tb, R_tb, R_sa = _problem(name)
    S = mdp.n_states
    sol = wg.solve(mdp, wg.Average())
    assert sol.converged
    ours = sol.policy.greedy()
    _assert_simplex(sol.policy.masses)
    assert set(np.unique(sol.policy.masses)) <= {0.0, 1.0}

    # pymdptoolbox relative value iteration (rewards: average_reward = -J)
    rvi = mdptoolbox.mdp.RelativeValueIteration(P_tb, R_tb, epsilon=1e-12)
    rvi.run()
    assert sol.J == pytest.approx(-rvi.average_reward, abs=1e-10)
    if _q_gap(sol.Q) > 1e-8:
        np.testing.assert_array_equal(np.asarray(rvi.policy), ours)

    # dense, independent: stationary law (QuantEcon), J = rho . c_pi, bordered Poisson solve
    P_pi = P_tb[ours, np.arange(S), :]
    c_pi = -R_sa[np.arange(S), ours]
    mc = MarkovChain(P_pi)
    assert mc.num_recurrent_classes == 1
    rho = mc.stationary_distributions[0]
    np.testing.assert_allclose(rho, gth_solve(P_pi), rtol=0, atol=1e-13)
    J_dense, h_dense = _bordered_average(P_pi, c_pi, rho)
    assert rho @ c_pi == pytest.approx(J_dense, abs=1e-12)
    assert sol.J == pytest.approx(J_dense, abs=1e-12 * (1 + abs(J_dense)))
    np.testing.assert_allclose(sol.weights, rho, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol.h, h_dense, rtol=0, atol=1e-10 * (1 + np.max(np.abs(h_dense))))
    assert abs(sol.weights @ sol.h) <= 1e-12 * (1 + np.max(np.abs(sol.h)))
    # Q = C - J + P h and the optimality equation h = min_a Q
    Q_dense = -R_sa - J_dense + np.einsum("ast,t->sa", P_tb, h_dense)
    np.testing.assert_allclose(sol.Q, Q_dense, rtol=0, atol=1e-10 * (1 + np.max(np.abs(h_dense))))
    np.testing.assert_allclose(sol.Q.min(axis=1), sol.h, rtol=0, atol=1e-11 * (1 + np.max(np.abs(sol.h))))
    assert sol.residual <= 1e-11 * (1 + np.max(np.abs(sol.h)))

    # relative value iteration (wgflow) reaches the same gain
    rv = wg.solve(mdp, wg.Average(), method="value_iteration", tol=1e-11)
    assert rv.method == "relative_value_iteration" and rv.converged
    assert rv.J == pytest.approx(sol.J, abs=1e-9)

    # vanishing discount: (1 - gamma) mu0 . V_gamma -> J
    disc = wg.solve(mdp, wg.Discounted(gamma=1 - 1e-6))
    assert (1e-6) * disc.J == pytest.approx(sol.J, abs=1e-4 * (1 + abs(sol.J)))


def test_average_periodic_and_transient_states():
    # 0 -> 1 -> 2 -> 0 deterministic cycle (period 3) plus transient 3 -> {3, 0}
    P = np.zeros((4, 1, 4))
    P[0, 0, 1] = P[1, 0, 2] = P[2, 0, 0] = 1.0
    P[3, 0, 3] = 0.5
    P[3, 0, 0] = 0.5
    C = np.array([[1.0], [2.0], [6.0], [100.0]])
    mdp = wg.MDP.from_arrays(P, C)
    ev = wg.evaluate(mdp, wg.Policy.uniform(mdp), wg.Average())
    assert ev.J == pytest.approx(3.0, abs=1e-13)
    np.testing.assert_allclose(ev.weights, [1 / 3, 1 / 3, 1 / 3, 0.0], rtol=0, atol=1e-15)
    J, h = _bordered_average(P[:, 0, :], C[:, 0], np.array([1 / 3, 1 / 3, 1 / 3, 0.0]))
    np.testing.assert_allclose(ev.h, h, rtol=0, atol=1e-12)
    assert h[3] == pytest.approx(2 * (100 - 3) + h[0])   # transient: h3 = 100 - 3 + (h3 + h0)/2


# ---------------------------------------------------------------------------------------------
# 3. entropy regularization
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["discounted", "average"])
@pytest.mark.parametrize("grid", [True, False])
def test_soft_solvers_agree_and_satisfy_soft_bellman(kind, grid):
    g = wg.problems.get("garnet", n_states=30, n_actions=5, branching=4, seed=5)
    mdp = g if grid else wg.MDP(g.P, g.C)            # with grid: vol = 1/5; without: vol = 1
    vol = 1.0 / 5 if grid else 1.0
    tau = 0.3
    obj = wg.Discounted(gamma=0.9, entropy=tau) if kind == "discounted" else wg.Average(entropy=tau)
    spi = wg.solve(mdp, obj, method="soft_policy_iteration", tol=1e-12)
    auto = wg.solve(mdp, obj, tol=1e-12)
    vi = wg.solve(mdp, obj, method="value_iteration", tol=1e-11)
    assert spi.method == "soft_policy_iteration"
    assert auto.method == ("modified_policy_iteration" if kind == "discounted" else "soft_policy_iteration")
    assert vi.method == ("value_iteration" if kind == "discounted" else "relative_value_iteration")
    for s in (spi, auto, vi):
        assert s.converged
        _assert_simplex(s.policy.masses)
        assert np.all(s.policy.masses > 0)                 # Gibbs policies have full support
        assert s.J == pytest.approx(spi.J, abs=1e-8)
        # the policy is the Gibbs policy of its own (exactly evaluated) Q
        np.testing.assert_allclose(s.policy.masses, _gibbs(s.Q, tau), rtol=0, atol=1e-8)
    np.testing.assert_allclose(vi.V, spi.V, rtol=0, atol=1e-8)
    # soft Bellman equation V = -tau log sum_a vol exp(-Q/tau), Q the soft Q of V
    scale = 1.0 + np.max(np.abs(spi.V))
    np.testing.assert_allclose(spi.V, _soft_value(spi.Q, tau, vol), rtol=0, atol=1e-10 * scale)
    assert spi.residual <= 1e-10 * scale
    Pd = _dense_P(mdp)
    if kind == "discounted":
        np.testing.assert_allclose(spi.Q, mdp.C + 0.9 * Pd @ spi.V, rtol=0, atol=1e-12 * scale)
    else:
        np.testing.assert_allclose(spi.Q, mdp.C - spi.J + Pd @ spi.h, rtol=0, atol=1e-12 * scale)
        assert abs(spi.weights @ spi.h) <= 1e-12 * scale
    # the soft optimum beats (or ties) any other policy, e.g. the uniform one and the hard optimum
    for other in (wg.Policy.uniform(mdp), wg.solve(mdp, wg.Discounted(0.9) if kind == "discounted"
                                                   else wg.Average()).policy):
        assert wg.evaluate(mdp, other.masses, obj).J >= spi.J - 1e-12


@pytest.mark.parametrize("grid", [True, False])
@pytest.mark.parametrize("tau", [0.0, 0.7])
def test_evaluate_discounted_matches_dense(rng, grid, tau):
    g = wg.problems.get("garnet", n_states=25, n_actions=4, branching=5, seed=8)
    mdp = g if grid else wg.MDP(g.P, g.C)
    vol = 1.0 / 4 if grid else 1.0
    gamma = 0.95
    nS, nA = mdp.n_states, mdp.n_actions
    masses = _random_masses(rng, nS, nA)
    assert np.any(masses == 0)                                   # exercises 0 log 0 = 0
    mu0 = rng.dirichlet(np.ones(nS))
    ev = wg.evaluate(mdp, wg.Policy.from_masses(mdp, masses), wg.Discounted(gamma, tau, mu0))
    Pd = _dense_P(mdp)
    P_pi = _dense_policy_matrix(Pd, masses)
    c_pi = _dense_policy_cost(mdp.C, masses, tau, vol)
    V = np.linalg.solve(np.eye(nS) - gamma * P_pi, c_pi)
    d = (1 - gamma) * np.linalg.solve((np.eye(nS) - gamma * P_pi).T, mu0)
    scale = 1 + np.max(np.abs(V))
    np.testing.assert_allclose(ev.c_pi, c_pi, rtol=0, atol=1e-14 * (1 + np.max(np.abs(c_pi))))
    np.testing.assert_allclose(ev.V, V, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(ev.weights, d, rtol=0, atol=1e-13)
    assert ev.J == pytest.approx(mu0 @ V, abs=1e-12 * scale)
    np.testing.assert_allclose(ev.Q, mdp.C + gamma * Pd @ V, rtol=0, atol=1e-12 * scale)
    # J = (1/(1-gamma)) d . c_pi  (occupancy identity)
    assert ev.J == pytest.approx(ev.weights @ c_pi / (1 - gamma), abs=1e-11 * scale)
    # policy as a raw array gives the same evaluation
    ev2 = wg.evaluate(mdp, masses, wg.Discounted(gamma, tau, mu0))
    np.testing.assert_array_equal(ev2.V, ev.V)


@pytest.mark.parametrize("tau", [0.0, 0.7])
def test_evaluate_average_matches_dense(rng, tau):
    mdp = wg.problems.get("garnet", n_states=25, n_actions=4, branching=3, seed=9)
    nS, nA = mdp.n_states, mdp.n_actions
    masses = _random_masses(rng, nS, nA)
    ev = wg.evaluate(mdp, masses, wg.Average(entropy=tau))
    Pd = _dense_P(mdp)
    P_pi = _dense_policy_matrix(Pd, masses)
    c_pi = _dense_policy_cost(mdp.C, masses, tau, 1.0 / nA)
    mc = MarkovChain(P_pi)
    assert mc.num_recurrent_classes == 1
    rho = mc.stationary_distributions[0]
    J, h = _bordered_average(P_pi, c_pi, rho)
    scale = 1 + np.max(np.abs(h))
    assert ev.J == pytest.approx(rho @ c_pi, abs=1e-12 * (1 + abs(J)))
    assert ev.J == pytest.approx(J, abs=1e-12 * (1 + abs(J)))
    np.testing.assert_allclose(ev.weights, rho, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ev.h, h, rtol=0, atol=1e-11 * scale)
    np.testing.assert_allclose(ev.Q, mdp.C - J + Pd @ h, rtol=0, atol=1e-11 * scale)


# ---------------------------------------------------------------------------------------------
# 4. invariants (property test)
# ---------------------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), nS=st.integers(1, 10), nA=st.integers(1, 4), seed=st.integers(0, 2**31),
       tau=st.sampled_from([0.0, 0.05, 1.0]), kind=st.sampled_from(["discounted", "average"]),
       gamma=st.sampled_from([0.0, 0.5, 0.99]), zero_frac=st.sampled_from([0.0, 0.5, 0.9]),
       mu_kind=st.sampled_from(["uniform", "random", "point"]))
def test_evaluation_invariants(data, nS, nA, seed, tau, kind, gamma, zero_frac, mu_kind):
    branching = data.draw(st.integers(1, nS), label="branching")
    mdp = wg.problems.get("garnet", n_states=nS, n_actions=nA, branching=branching, seed=seed)
    r = np.random.default_rng(seed + 1)
    masses = _random_masses(r, nS, nA, zero_frac)
    _assert_simplex(masses)
    Pd = _dense_P(mdp)
    P_pi_dense = _dense_policy_matrix(Pd, masses)
    P_pi = policy_matrix(mdp.P, masses)
    np.testing.assert_allclose(np.asarray(P_pi.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-14)
    if kind == "discounted":
        mu0 = {"uniform": None, "random": r.dirichlet(np.ones(nS)),
               "point": np.eye(nS)[r.integers(nS)]}[mu_kind]
        obj = wg.Discounted(gamma=gamma, entropy=tau, initial=mu0)
    else:
        obj = wg.Average(entropy=tau)
        closed = _closed_classes_dense(P_pi_dense)
        if len(closed) > 1:
            event("average: several closed classes")
            with pytest.raises(wg.NotUnichainError) as exc:
                wg.evaluate(mdp, masses, obj)
            assert {frozenset(np.asarray(c).tolist()) for c in exc.value.classes} == closed
            return
    event(f"{kind} evaluated")
    ev = wg.evaluate(mdp, masses, obj)
    V, w, c = ev.V, ev.weights, ev.c_pi
    scale = 1.0 + np.max(np.abs(V))
    # weights are probability vectors
    assert np.all(w >= 0)
    assert abs(w.sum() - 1.0) <= 1e-12
    if kind == "discounted":
        # V = c_pi + gamma P_pi V to rounding; J = mu0 . V; d = (1-g) mu0 + g d P_pi
        res = V - c - gamma * (P_pi @ V)
        assert np.max(np.abs(res)) <= 1e-12 * scale
        assert ev.J == pytest.approx(obj.initial_law(nS) @ V, abs=1e-13 * scale)
        np.testing.assert_allclose(w, (1 - gamma) * obj.initial_law(nS) + gamma * (P_pi.T @ w),
                                   rtol=0, atol=1e-13)
        np.testing.assert_allclose(ev.Q, mdp.C + gamma * (Pd @ V), rtol=0, atol=1e-12 * scale)
    else:
        # h + J = c_pi + P_pi h, rho P_pi = rho, rho . h = 0, J = rho . c_pi
        res = V + ev.J - c - P_pi @ V
        assert np.max(np.abs(res)) <= 1e-12 * (scale + abs(ev.J))
        np.testing.assert_allclose(P_pi.T @ w, w, rtol=0, atol=1e-13)
        assert abs(w @ V) <= 1e-12 * scale
        assert ev.J == pytest.approx(w @ c, abs=1e-12 * (1 + abs(ev.J)))
        np.testing.assert_allclose(ev.Q, mdp.C - ev.J + Pd @ V, rtol=0, atol=1e-12 * (scale + abs(ev.J)))
    # the Bellman operator applied to the policy: sum_a pi Q + tau entropy term = V
    ent = _dense_policy_cost(np.zeros_like(mdp.C), masses, tau, mdp.actions.cell_volume)
    np.testing.assert_allclose(np.sum(masses * ev.Q, axis=1) + ent, V, rtol=0, atol=1e-12 * (scale + abs(ev.J)))


@pytest.mark.parametrize("kind", ["discounted", "average"])
@pytest.mark.parametrize("tau", [0.0, 0.2])
def test_solution_invariants(kind, tau):
    mdp = wg.problems.get("garnet", n_states=60, n_actions=6, branching=4, seed=21)
    obj = wg.Discounted(gamma=0.97, entropy=tau) if kind == "discounted" else wg.Average(entropy=tau)
    sol = wg.solve(mdp, obj, method="policy_iteration")     # (soft) PI: exact evaluations
    _assert_simplex(sol.policy.masses)
    assert np.all(sol.weights >= 0) and abs(sol.weights.sum() - 1) <= 1e-12
    scale = 1.0 + np.max(np.abs(sol.V)) + abs(sol.J)
    if tau == 0:
        # optimal Bellman equation holds to rounding for the exactly evaluated optimal policy
        assert sol.residual <= 1e-12 * scale
        TV = sol.Q.min(axis=1)
    else:
        assert sol.residual <= 1e-10 * scale
        TV = _soft_value(sol.Q, tau, mdp.actions.cell_volume)
    np.testing.assert_allclose(TV, sol.V, rtol=0, atol=max(sol.residual, 1e-12 * scale) * 1.01)
    if kind == "discounted":
        assert sol.J == pytest.approx(np.mean(sol.V), abs=1e-13 * scale)
    else:
        ev = wg.evaluate(mdp, sol.policy, obj)
        assert sol.J == pytest.approx(sol.weights @ ev.c_pi, abs=1e-13 * scale)
        assert abs(sol.weights @ sol.h) <= 1e-12 * scale
    assert len(sol.diagnostics["history"]) == sol.iterations
    # (soft) policy iteration improves monotonically: J of the evaluated policies never increases
    hist = sol.diagnostics["history"]
    assert len(hist) >= 2 and np.all(np.diff(hist) <= 1e-12 * scale)
    assert sol.J <= hist[-1] + 1e-12 * scale


# ---------------------------------------------------------------------------------------------
# 5. non-unichain
# ---------------------------------------------------------------------------------------------
def _two_class_mdp():
    """5 states, 2 actions. Action 0: {0, 1} and {2, 3} are closed cycles, 4 is transient.
    Action 1 moves everything to state 0 (so the MDP itself can be unichain)."""
    P = np.zeros((5, 2, 5))
    P[0, 0, 1] = P[1, 0, 0] = 1.0
    P[2, 0, 3] = 0.3
    P[2, 0, 2] = 0.7
    P[3, 0, 2] = 1.0
    P[4, 0, [0, 2, 4]] = [0.25, 0.25, 0.5]
    P[:, 1, 0] = 1.0
    C = np.arange(10, dtype=float).reshape(5, 2) / 10
    return wg.MDP.from_arrays(P, C), P


def test_not_unichain_raises_with_classes():
    mdp, P = _two_class_mdp()
    masses = np.zeros((5, 2))
    masses[:, 0] = 1.0
    with pytest.raises(wg.NotUnichainError) as exc:
        wg.evaluate(mdp, masses, wg.Average())
    err = exc.value
    assert isinstance(err, ValueError) and isinstance(err, wg.WgflowError)
    assert "recurrent classes" in str(err)
    assert sorted(sorted(np.asarray(c).tolist()) for c in err.classes) == [[0, 1], [2, 3]]
    # also with entropy and through solve (policy0 multichain)
    with pytest.raises(wg.NotUnichainError):
        wg.evaluate(mdp, masses, wg.Average(entropy=0.1))
    with pytest.raises(wg.NotUnichainError):
        wg.solve(mdp, wg.Average(), policy0=wg.Policy.from_masses(mdp, masses))
    # discounted evaluation of the same policy is fine and exact
    gamma = 0.9
    ev = wg.evaluate(mdp, masses, wg.Discounted(gamma=gamma))
    P_pi = P[:, 0, :]
    V = np.linalg.solve(np.eye(5) - gamma * P_pi, mdp.C[:, 0])
    np.testing.assert_allclose(ev.V, V, rtol=0, atol=1e-13)
    assert np.all(ev.weights >= 0) and abs(ev.weights.sum() - 1) <= 1e-12
    # a unichain policy (action 1 somewhere in class {2, 3}) evaluates fine
    m2 = masses.copy()
    m2[3] = [0.5, 0.5]
    ev2 = wg.evaluate(mdp, m2, wg.Average())
    assert ev2.weights[4] == 0.0
    assert abs(ev2.weights.sum() - 1) <= 1e-12


def test_not_unichain_detected_with_explicit_zeros_in_P():
    # two closed classes {0, 1} and {2, 3}; the sparse P *stores* a 0.0 at (2 -> 0)
    rows = np.array([0, 0, 1, 1, 2, 2, 2, 3, 3])
    cols = np.array([0, 1, 0, 1, 2, 3, 0, 2, 3])
    data = np.array([0.5, 0.5, 0.3, 0.7, 0.4, 0.6, 0.0, 0.9, 0.1])
    P = sp.csr_matrix((data, (rows, cols)), shape=(4, 4))
    assert P.nnz == 9                                  # the explicit zero is stored
    mdp = wg.MDP(P, np.array([[1.0], [2.0], [3.0], [4.0]]))
    with pytest.raises(wg.NotUnichainError):
        wg.evaluate(mdp, wg.Policy.uniform(mdp), wg.Average())


def test_recurrent_classes_ignores_stored_zeros():
    from wgflow.evaluation import recurrent_classes
    # P_pi with stored zeros 2 -> 0 and 0 -> 4; true classes {0, 1} and {2, 3}; 4 transient
    rows = np.array([0, 0, 0, 1, 2, 2, 2, 3, 4, 4])
    cols = np.array([0, 1, 4, 0, 2, 3, 0, 2, 4, 1])
    data = np.array([0.5, 0.5, 0.0, 1.0, 0.4, 0.6, 0.0, 1.0, 0.5, 0.5])
    P_pi = sp.csr_matrix((data, (rows, cols)), shape=(5, 5))
    assert P_pi.nnz == 10
    found = {frozenset(np.asarray(c).tolist()) for c in recurrent_classes(P_pi)}
    assert found == {frozenset({0, 1}), frozenset({2, 3})}
    assert found == _closed_classes_dense(P_pi.toarray())


# ---------------------------------------------------------------------------------------------
# 6. factorization reuse
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tau", [0.0, 0.2])
@pytest.mark.parametrize("kind", ["discounted", "average"])
def test_reuse_factorization_gives_same_answer(tau, kind):
    mdp = wg.problems.get("garnet", n_states=150, n_actions=6, branching=5, seed=4)
    obj = wg.Discounted(gamma=0.99, entropy=tau) if kind == "discounted" else wg.Average(entropy=tau)
    a = wg.solve(mdp, obj, method="policy_iteration", reuse_factorization=True)
    b = wg.solve(mdp, obj, method="policy_iteration", reuse_factorization=False)
    assert a.iterations == b.iterations
    if tau == 0:
        np.testing.assert_array_equal(a.policy.masses, b.policy.masses)
    else:
        np.testing.assert_allclose(a.policy.masses, b.policy.masses, rtol=0, atol=1e-10)
    assert a.J == pytest.approx(b.J, abs=1e-10)
    np.testing.assert_allclose(a.V, b.V, rtol=0, atol=1e-10 * (1 + np.max(np.abs(b.V))))
    sa, sb = a.diagnostics["linear_solver"], b.diagnostics["linear_solver"]
    # every evaluation of the iteration is either a factorization or one reused solve (values
    # only); exact PI then adds the weights of the returned policy with its last factors (two
    # solves: the values, restarted from the exact ones, and the weights)
    final = 2 if tau == 0 else 0
    assert sb["krylov_solves"] == final and sb["factorizations"] == b.iterations
    # soft PI tries the old factorization first; exact PI only once few states switch action
    # (whole rows of P_pi change otherwise), so on this small garnet it may never reuse
    if tau > 0:
        assert sa["krylov_iterations"] > 0
    assert sa["factorizations"] + sa["krylov_solves"] == a.iterations + final


def test_reuse_factorization_must_be_a_bool():
    mdp = wg.problems.get("garnet", n_states=20, n_actions=3, seed=0)
    with pytest.raises(wg.ValidationError, match="solve: reuse_factorization must be True or False"):
        wg.solve(mdp, wg.Discounted(0.9), method="policy_iteration", reuse_factorization=0)


def _policy_system(mdp, masses, gamma=0.99):
    I = sp.identity(mdp.n_states, format="csr")
    return (I - gamma * policy_matrix(mdp.P, masses)).tocsr()


def _primed_cache(mdp, masses, rhs, trans):
    """A fresh cache that has factorized the system of ``masses`` (each scenario gets its own
    cache: after the first reuse attempt the cache may choose its path from measured timings)."""
    cache = wg.LinearSolveCache(reuse=True)
    A0 = _policy_system(mdp, masses)
    out = cache.solve(A0, rhs, trans)
    assert cache.stats["factorizations"] == 1 and cache.stats["krylov_solves"] == 0
    for x, b, t in zip(out, rhs, trans):
        assert np.linalg.norm((A0.T if t else A0) @ x - b) <= 1e-13 * np.linalg.norm(b)
    return cache, out


def _perturbed(rng, masses, eps):
    m = masses * (1 + eps * rng.random(masses.shape))
    return m / m.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("eps", [1e-7, 1e-3, 3e-2])
def test_linear_solve_cache_reuses_factorization_for_nearby_matrix(rng, eps):
    mdp = wg.problems.get("garnet", n_states=300, n_actions=4, branching=5, seed=1)
    masses = rng.dirichlet(np.ones(4), size=300)
    b, c = rng.random(300), rng.random(300)
    cache, (x0, _) = _primed_cache(mdp, masses, [b, c], [False, True])
    A1 = _policy_system(mdp, _perturbed(rng, masses, eps))
    x1, y1 = cache.solve(A1, [b, c], [False, True])
    # no new factorization: the old LU served as preconditioner / refinement operator
    assert cache.stats["factorizations"] == 1
    assert cache.stats["krylov_solves"] == 2
    assert cache.stats["refactorizations_after_krylov"] == 0
    assert cache.stats["krylov_iterations"] <= 2 * cache.max_krylov
    # requested accuracy, checked on the true residual, and agreement with a direct solve
    assert np.linalg.norm(A1 @ x1 - b) <= 10 * cache.rtol * np.linalg.norm(b)
    assert np.linalg.norm(A1.T @ y1 - c) <= 10 * cache.rtol * np.linalg.norm(c)
    np.testing.assert_allclose(x1, sp.linalg.spsolve(A1.tocsc(), b), rtol=1e-11)
    np.testing.assert_allclose(y1, sp.linalg.spsolve(A1.T.tocsc(), c), rtol=1e-11)
    assert np.max(np.abs(x1 - x0)) > 1e-9        # the answer did change: not a stale solve


def test_linear_solve_cache_falls_back_to_refactorization(rng):
    mdp = wg.problems.get("garnet", n_states=300, n_actions=4, branching=5, seed=1)
    masses = rng.dirichlet(np.ones(4), size=300)
    b, c = rng.random(300), rng.random(300)
    cache, _ = _primed_cache(mdp, masses, [b, c], [False, True])
    # very different matrix (another MDP): the old factors are useless, the cache refactorizes
    other = wg.problems.get("garnet", n_states=300, n_actions=4, branching=5, seed=2)
    A2 = _policy_system(other, masses)
    x2, y2 = cache.solve(A2, [b, c], [False, True])
    assert cache.stats["refactorizations_after_krylov"] == 1
    assert cache.stats["factorizations"] == 2
    assert cache.stats["krylov_solves"] == 0
    assert np.linalg.norm(A2 @ x2 - b) <= 1e-13 * np.linalg.norm(b)
    assert np.linalg.norm(A2.T @ y2 - c) <= 1e-13 * np.linalg.norm(c)
    # reuse=False never tries the old factors
    plain = wg.LinearSolveCache(reuse=False)
    A0 = _policy_system(mdp, masses)
    plain.solve(A0, [b], [False])
    x1, = plain.solve(_policy_system(mdp, _perturbed(rng, masses, 1e-7)), [b], [False])
    assert plain.stats["factorizations"] == 2 and plain.stats["krylov_iterations"] == 0
    assert plain.stats["krylov_solves"] == 0


# ---------------------------------------------------------------------------------------------
# 8. convergence failures
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["discounted", "average"])
def test_value_iteration_max_iter_raises_convergence_error(kind):
    mdp = wg.problems.get("garnet", n_states=30, n_actions=4, seed=2)
    obj = wg.Discounted(gamma=0.99) if kind == "discounted" else wg.Average()
    with pytest.raises(wg.ConvergenceError) as exc:
        wg.solve(mdp, obj, method="value_iteration", max_iter=5, tol=1e-12)
    err = exc.value
    assert isinstance(err, RuntimeError) and isinstance(err, wg.WgflowError)
    d = err.diagnostics
    assert len(d["history"]) == 5
    assert d["solution"].iterations == 5 and not d["solution"].converged
    # the last sup-norm step is still above the stopping threshold (the greedy policy of the
    # 5th iterate may already be optimal: the error is about the method's own criterion)
    thresh = 1e-12 * (1 - 0.99) / 0.99 if kind == "discounted" else 1e-12
    assert d["history"][-1] >= thresh
    assert "5 iterations" in str(err)


def test_relative_value_iteration_periodic_chain_needs_aperiodicity():
    # deterministic 3-cycle, one action: RVI oscillates forever unless the aperiodicity
    # transform h <- a h + (1 - a) T h is used; the gain is the mean cost along the cycle
    P = np.zeros((3, 1, 3))
    P[0, 0, 1] = P[1, 0, 2] = P[2, 0, 0] = 1.0
    mdp = wg.MDP.from_arrays(P, np.array([[0.0], [3.0], [9.0]]))
    with pytest.raises(wg.ConvergenceError) as exc:
        wg.solve(mdp, wg.Average(), method="relative_value_iteration", max_iter=500)
    assert np.min(exc.value.diagnostics["history"]) > 1.0      # the span never shrinks
    sol = wg.solve(mdp, wg.Average(), method="relative_value_iteration", aperiodicity=0.5, tol=1e-12)
    assert sol.converged and sol.J == pytest.approx(4.0, abs=1e-12)
    np.testing.assert_allclose(sol.weights, 1 / 3, rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        wg.solve(mdp, wg.Average(), method="relative_value_iteration", aperiodicity=1.0)


@pytest.mark.parametrize("kind", ["discounted", "average"])
def test_policy_iteration_terminates_with_duplicate_actions(kind):
    # actions 0 and 1 are identical: exact ties everywhere; PI must not cycle between them
    g = wg.problems.get("garnet", n_states=40, n_actions=3, branching=4, seed=13)
    S = g.n_states
    Pd = _dense_P(g)
    Pdup = np.concatenate([Pd[:, :1], Pd], axis=1)              # (S, 4, S): action 0 duplicated
    Cdup = np.concatenate([g.C[:, :1], g.C], axis=1)
    dup = wg.MDP.from_arrays(Pdup, Cdup)
    obj = wg.Discounted(gamma=0.95) if kind == "discounted" else wg.Average()
    a, b = wg.solve(dup, obj), wg.solve(wg.MDP(g.P, g.C), obj)
    assert a.converged and a.iterations < 50
    assert a.J == pytest.approx(b.J, abs=1e-12)
    np.testing.assert_allclose(a.V, b.V, rtol=0, atol=1e-10)
    # and from a policy that already sits on the duplicate: it stays (ties keep the current action)
    start = np.zeros((S, 4))
    start[np.arange(S), 0] = 1.0
    c = wg.solve(dup, obj, policy0=wg.Policy.from_masses(dup, start))
    assert c.J == pytest.approx(b.J, abs=1e-12)


def test_policy_iteration_max_iter_raises_convergence_error():
    mdp = wg.problems.get("garnet", n_states=30, n_actions=4, seed=2)
    with pytest.raises(wg.ConvergenceError) as exc:
        wg.solve(mdp, wg.Discounted(gamma=0.9), max_iter=1)
    assert exc.value.diagnostics["solution"].iterations == 1
    # the same call with enough iterations converges
    assert wg.solve(mdp, wg.Discounted(gamma=0.9), max_iter=50).converged


# ---------------------------------------------------------------------------------------------
# 9. the default discounted solver (modified policy iteration) against the exact option
# ---------------------------------------------------------------------------------------------
def _realistic(name, small=False):
    n = 15 if small else 21
    if name == "pendulum":
        return wg.problems.get("pendulum", n_theta=n, n_omega=n, n_actions=9 if small else 11), 0.99
    if name == "mountain_car":
        return wg.problems.get("mountain_car", n_position=n, n_velocity=n, n_actions=7), 0.99
    return wg.problems.get("garnet", n_states=200, n_actions=8, branching=5, seed=7), 0.95


@pytest.mark.parametrize("tau", [0.0, 0.1, 1e-3])
@pytest.mark.parametrize("name", ["pendulum", "mountain_car", "garnet"])
def test_default_meets_stated_accuracy_against_exact(name, tau):
    # tau = 1e-3 on the pendulum: Gibbs tails underflow to exact zeros
    mdp, gamma = _realistic(name, small=tau > 0)    # (soft PI, the reference, is slow)
    obj = wg.Discounted(gamma, entropy=tau)
    tol = 1e-10
    fast = wg.solve(mdp, obj, tol=tol)
    exact = wg.solve(mdp, obj, method="policy_iteration")
    assert fast.method == "modified_policy_iteration" and fast.converged
    scale = np.max(np.abs(fast.V))
    # the stated guarantee: |V - V*| <= tol max|V| and V is the value of the returned policy to
    # tol max|V| (the reference is exact to rounding, a few ulps of |V| / (1 - gamma))
    assert fast.diagnostics["error_bound"] <= tol * scale
    ref_err = 1e-13 * scale / (1 - gamma)
    np.testing.assert_allclose(fast.V, exact.V, rtol=0, atol=tol * scale + ref_err)
    ev = wg.evaluate(mdp, fast.policy, obj)
    np.testing.assert_allclose(fast.V, ev.V, rtol=0, atol=tol * scale + ref_err)
    assert fast.J == pytest.approx(exact.J, abs=tol * scale + ref_err)
    # Q is the soft Q of the returned V (one sweep: C + gamma P V), the policy greedy / Gibbs in it
    np.testing.assert_allclose(fast.Q, mdp.C + gamma * (mdp.P @ fast.V).reshape(fast.Q.shape),
                               rtol=0, atol=1e-13 * (1 + scale))
    if tau > 0:
        np.testing.assert_allclose(fast.policy.masses, _gibbs(fast.Q, tau), rtol=0, atol=1e-12)
    else:
        q = fast.Q[np.arange(mdp.n_states), fast.policy.greedy()]
        np.testing.assert_allclose(q, fast.Q.min(axis=1), rtol=0, atol=1e-12 * (1 + scale))
    assert fast.residual == pytest.approx(fast.diagnostics["error_bound"] * (1 - gamma), rel=1e-12)
    # the occupancy, computed on first access, is the returned policy's
    np.testing.assert_allclose(fast.weights, ev.weights, rtol=0, atol=1e-12)


def test_mpi_stopping_rule_bounds_the_true_error():
    # a loose tolerance: the reported bound is an upper bound of the true error, and the true
    # error respects the tolerance
    mdp, gamma = _realistic("pendulum")
    exact = wg.solve(mdp, wg.Discounted(gamma), method="policy_iteration")
    scale = np.max(np.abs(exact.V))
    for tol in (1e-3, 1e-6):
        s = wg.solve(mdp, wg.Discounted(gamma), tol=tol)
        err = np.max(np.abs(s.V - exact.V))
        assert err <= s.diagnostics["error_bound"] * (1 + 1e-9) + 1e-12 * scale
        assert err <= tol * np.max(np.abs(s.V)) * (1 + 1e-9)


def test_mpi_options_and_errors():
    mdp, gamma = _realistic("garnet")
    obj = wg.Discounted(gamma)
    exact = wg.solve(mdp, obj, method="policy_iteration")
    # a starting policy (the optimum): converges at once to the same values
    s = wg.solve(mdp, obj, policy0=exact.policy)
    assert s.iterations == 1
    np.testing.assert_allclose(s.V, exact.V, rtol=0, atol=1e-10 * np.max(np.abs(exact.V)))
    with pytest.raises(wg.ConvergenceError) as exc:
        wg.solve(mdp, obj, max_iter=1)
    assert exc.value.diagnostics["solution"].iterations == 1
    assert "did not converge" in str(exc.value)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="tol"):
            wg.solve(mdp, obj, tol=bad)
    with pytest.raises(ValueError, match="Discounted"):
        wg.solve(mdp, wg.Average(), method="modified_policy_iteration")
    from wgflow.evaluation import METHODS
    assert METHODS[0] == "auto" and "modified_policy_iteration" in METHODS


@pytest.mark.parametrize("tau", [0.0, 0.1])
def test_average_default_on_mountain_car(tau):
    # average cost (reset at the goal makes the chain unichain): the default is (soft) policy
    # iteration with direct evaluations; check the average-cost optimality equation and the
    # gain against the vanishing-discount limit
    mdp = wg.problems.get("mountain_car", n_position=21, n_velocity=21, n_actions=7, goal="reset")
    sol = wg.solve(mdp, wg.Average(entropy=tau), tol=1e-12)
    scale = 1 + np.max(np.abs(sol.h)) + abs(sol.J)
    if tau == 0:
        TV = sol.Q.min(axis=1)
    else:
        TV = _soft_value(sol.Q, tau, mdp.actions.cell_volume)
    np.testing.assert_allclose(TV, sol.h, rtol=0, atol=1e-9 * scale)
    assert abs(sol.weights @ sol.h) <= 1e-11 * scale
    disc = wg.solve(mdp, wg.Discounted(1 - 1e-5, entropy=tau))
    assert 1e-5 * disc.J == pytest.approx(sol.J, abs=1e-3 * (1 + abs(sol.J)))


def test_average_start_falls_back_when_the_discounted_policy_is_multichain():
    # state 2 keeps a cost-0.5 self-loop rather than pay 60 once to reach the free loop at 1:
    # optimal at gamma = 0.99 (0.5 / 0.01 = 50 < 60), so the discounted start is multichain
    # ({1} and {2} closed); the average-optimal policy moves (gain 0 instead of 0.5)
    P = np.zeros((3, 2, 3))
    P[0, 0, 0] = P[0, 1, 1] = P[1, 0, 1] = P[1, 1, 0] = P[2, 0, 2] = P[2, 1, 1] = 1.0
    C = np.array([[1.0, 2.0], [0.0, 0.0], [0.5, 60.0]])
    mdp = wg.MDP.from_arrays(P, C)
    from wgflow.evaluation import _discounted_start
    assert _discounted_start(mdp, 0.0) is None
    sol = wg.solve(mdp, wg.Average())
    assert sol.J == 0.0
    np.testing.assert_array_equal(sol.policy.masses.argmax(axis=1), [1, 0, 1])


def test_linear_solve_cache_orders_nearly_acyclic_chains():
    # the double integrator's optimal chain has small components (the largest of 60 states):
    # the block-ordered factorization is used and agrees with COLAMD to rounding
    mdp, gamma = wg.problems.get("double_integrator"), 0.99
    sol = wg.solve(mdp, wg.Discounted(gamma), method="policy_iteration")
    P_pi = policy_matrix(mdp.P, sol.policy.masses)
    A = (sp.identity(mdp.n_states) - gamma * P_pi).tocsr()
    b = np.random.default_rng(0).random(mdp.n_states)
    auto, colamd = wg.LinearSolveCache(reuse=False), wg.LinearSolveCache(reuse=False, ordering="colamd")
    x1, y1 = auto.solve(A, [b, b], [False, True])
    x2, y2 = colamd.solve(A, [b, b], [False, True])
    assert auto.stats["block_ordered_factorizations"] == 1
    assert colamd.stats["block_ordered_factorizations"] == 0
    tol = 1e-13 / (1 - gamma) * np.max(np.abs(x2))
    np.testing.assert_allclose(x1, x2, rtol=0, atol=tol)
    np.testing.assert_allclose(y1, y2, rtol=0, atol=1e-13 / (1 - gamma) * np.max(np.abs(y2)))
    assert np.linalg.norm(A @ x1 - b) <= 1e-12 * np.linalg.norm(b)


@pytest.mark.parametrize("tau", [0.0, 0.1])
def test_mpi_factorized_evaluations_reach_the_tolerance_at_gamma_0999(monkeypatch, tau):
    # after MAX_PARTIAL partial evaluations, modified policy iteration factorizes; forced from
    # the first one on the mountain car (3,721 states, goal cells absorbing) at gamma 0.999, the
    # reused factorizations must be as accurate as direct solves: an evaluation accurate only
    # to GMRES's relative residual left a Bellman residual of 1e-10, above the stopping test,
    # and the solve ran to max_iter
    from wgflow.evaluation import _LUFallback
    monkeypatch.setattr(_LUFallback, "MAX_PARTIAL", 1)
    mdp = wg.problems.get("mountain_car")
    obj = wg.Discounted(0.999, entropy=tau)
    tol = 1e-10
    sol = wg.solve(mdp, obj, tol=tol, max_iter=60)
    d = sol.diagnostics
    assert sol.converged and d["lu_evaluations"] >= 1 and d["bellman_sweeps"] < 30
    exact = wg.solve(mdp, obj, method="policy_iteration")
    scale = np.max(np.abs(exact.V))
    assert d["error_bound"] <= tol * np.max(np.abs(sol.V))
    np.testing.assert_allclose(sol.V, exact.V, rtol=0, atol=tol * scale + 1e-13 * scale / (1 - 0.999))


def test_mpi_stops_at_a_floor_of_exact_evaluations_with_a_warning(monkeypatch):
    # factorized evaluations that cannot lower the Bellman residual any further (here made so:
    # each answer carries an error of 1e-7 of |V|) end the solve at that floor within a few
    # sweeps, with an AccuracyWarning and a bound that still holds, instead of sweeping on to
    # max_iter
    from wgflow.evaluation import _LUFallback
    monkeypatch.setattr(_LUFallback, "MAX_PARTIAL", 1)
    exact_lu = _LUFallback._lu_evaluate
    rng = np.random.default_rng(3)

    def floored(self, P_pi, c):
        V, err = exact_lu(self, P_pi, c)
        return V + 1e-7 * np.max(np.abs(V)) * rng.standard_normal(V.size), err

    monkeypatch.setattr(_LUFallback, "_lu_evaluate", floored)
    mdp, gamma = _realistic("pendulum", small=True)
    for tau in (0.0, 0.1):
        obj = wg.Discounted(gamma, entropy=tau)
        with pytest.warns(wg.AccuracyWarning, match="rounding floor"):
            sol = wg.solve(mdp, obj, tol=1e-10, max_iter=200)
        d = sol.diagnostics
        assert sol.converged and d["bellman_sweeps"] <= 20
        exact = wg.solve(mdp, obj, method="policy_iteration")
        assert np.max(np.abs(sol.V - exact.V)) <= d["error_bound"]
        assert d["error_bound"] <= 1e-4 * np.max(np.abs(exact.V))


@pytest.mark.parametrize("name", ["mountain_car", "pendulum"])
def test_soft_mpi_stationary_law_only_for_chains_without_absorbing_states(monkeypatch, name):
    # the constant correction of the local phase needs the chain's stationary law; the mountain
    # car's goal cells are absorbing (no unique stationary law, no slow constant mode): its
    # sweeps go uncorrected, and the estimate is never computed; the pendulum's chain is
    # irreducible and gets it (at 21^2; at 15^2 the Gibbs policy stays at the bottom equilibrium
    # with probability 1 - 1e-13, an absorbing state in double precision). Both meet their
    # accuracy against exact policy iteration
    import wgflow.evaluation as evaluation
    calls = []
    real = evaluation.stationary_sweeps

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(evaluation, "stationary_sweeps", counted)
    mdp, gamma = _realistic(name, small=name == "mountain_car")
    obj = wg.Discounted(gamma, entropy=0.1)
    sol = wg.solve(mdp, obj, tol=1e-10)
    assert sol.converged and sol.diagnostics["gauss_seidel_sweeps"] > 0
    assert (len(calls) > 0) == (name == "pendulum")
    exact = wg.solve(mdp, obj, method="policy_iteration")
    scale = np.max(np.abs(exact.V))
    np.testing.assert_allclose(sol.V, exact.V, rtol=0, atol=1e-10 * scale + 1e-13 * scale / (1 - gamma))


def test_soft_mpi_keeps_gauss_seidel_through_a_residual_growth():
    # mountain car 61^2 with the goal resetting (one recurrent class) at gamma 0.99, entropy 0.1:
    # the residual grows once after an accurate Gauss-Seidel evaluation (the policy still
    # changes wholesale there); going back to Jacobi sweeps for good on that (they contract by
    # about 0.99 on this chain) took 36 Bellman sweeps and LU factorizations, staying with
    # Gauss-Seidel 12. The result meets its accuracy against exact policy iteration
    mdp = wg.problems.get("mountain_car", goal="reset")
    obj = wg.Discounted(0.99, entropy=0.1)
    sol = wg.solve(mdp, obj, tol=1e-10)
    d = sol.diagnostics
    assert sol.converged and d["bellman_sweeps"] <= 16 and d["lu_evaluations"] == 0
    exact = wg.solve(mdp, obj, method="policy_iteration")
    scale = np.max(np.abs(exact.V))
    np.testing.assert_allclose(sol.V, exact.V, rtol=0, atol=1e-10 * scale + 1e-13 * scale / (1 - 0.99))


@pytest.mark.parametrize("diverge", [False, True])
def test_soft_mpi_gauss_seidel_phase_and_its_fallback(monkeypatch, diverge):
    # the local phase of soft modified policy iteration evaluates by corrected Gauss-Seidel
    # sweeps; when the kernel reports divergence (here: forced, with a garbage iterate), the
    # solve goes back to Jacobi sweeps for good and still meets its accuracy against exact
    # policy iteration
    import wgflow.evaluation as evaluation
    mdp, gamma = _realistic("pendulum", small=True)
    obj = wg.Discounted(gamma, entropy=0.1)
    calls = []
    if diverge:
        def broken(indptr, indices, data, dpos, tptr, tidx, tdata, c, v, *args):
            calls.append(1)
            v[:] = 1e30
            return 2, np.inf, False
        monkeypatch.setattr(evaluation, "corrected_gs_sweeps", broken)
    tol = 1e-10
    sol = wg.solve(mdp, obj, tol=tol)
    exact = wg.solve(mdp, obj, method="policy_iteration")
    assert sol.converged
    gs = sol.diagnostics["gauss_seidel_sweeps"]
    if diverge:
        assert len(calls) == 1 and gs == 2
    else:
        assert gs > 0
    scale = np.max(np.abs(exact.V))
    np.testing.assert_allclose(sol.V, exact.V, rtol=0, atol=tol * scale + 1e-13 * scale / (1 - gamma))


@pytest.mark.parametrize("guess", [True, False])
def test_soft_mpi_last_sweep_writes_q_and_underflowing_masses(monkeypatch, guess):
    # entropy 1e-3 on the pendulum at gamma 0.99: Gibbs tails underflow to exact zeros. Q and the
    # masses come from the sweep expected to be the last, or (guess=False: never expected) from
    # one more sweep at the same V: the same values either way, Q = C + gamma P V to rounding,
    # masses = the Gibbs map of Q with the same exact zeros
    from wgflow.evaluation import _SoftEvaluator
    mdp, gamma = _realistic("pendulum", small=True)
    obj = wg.Discounted(gamma, entropy=1e-3)
    ref = wg.solve(mdp, obj)
    if not guess:
        monkeypatch.setattr(_SoftEvaluator, "last_sweep_expected", lambda self, threshold: False)
    sol = wg.solve(mdp, obj)
    assert sol.converged
    extra = 0 if guess else 1
    assert sol.diagnostics["bellman_sweeps"] == ref.diagnostics["bellman_sweeps"] + extra
    np.testing.assert_array_equal(sol.V, ref.V)
    np.testing.assert_array_equal(sol.Q, ref.Q)
    np.testing.assert_array_equal(sol.policy.masses, ref.policy.masses)
    scale = np.max(np.abs(sol.V))
    # sums in another order: a few ulps of |Q|
    np.testing.assert_allclose(sol.Q, mdp.C + gamma * (mdp.P @ sol.V).reshape(sol.Q.shape), rtol=0,
                               atol=1e-13 * (1 + scale))
    g = _gibbs(sol.Q, 1e-3)
    assert np.any(g == 0.0)
    np.testing.assert_array_equal(sol.policy.masses == 0.0, g == 0.0)
    # exp of a gap of a few ulps of |Q| / tau: relative error ~ 1e-13 |Q| / tau per mass
    np.testing.assert_allclose(sol.policy.masses, g, rtol=0, atol=1e-13 * (1 + scale) / 1e-3)


def test_soft_mpi_sweeps_a_thinned_chain_at_a_small_entropy(monkeypatch):
    # pendulum 21^2 x 11, gamma 0.99, entropy 1e-3: about a quarter of the Gibbs chain's entries
    # are below eps (1 - gamma) / (4 w) (thinned from a fifth on here; by default from 40 %, on
    # larger grids), and the evaluations sweep a copy without them. The solve keeps its stated
    # accuracy against soft policy iteration (exact evaluations of the full chains) and takes
    # the Bellman sweeps of the same solve on the full chains
    from wgflow import evaluation
    from wgflow.evaluation import _SoftEvaluator
    mdp = wg.problems.get("pendulum", n_theta=21, n_omega=21, n_actions=11)
    obj = wg.Discounted(0.99, entropy=1e-3)
    tol = 1e-10
    real, kept = evaluation.drop_negligible, []

    def counted(indptr, indices, data, *args):
        k = real(indptr, indices, data, *args)
        kept.append(k / data.size)
        return k

    monkeypatch.setattr(evaluation, "drop_negligible", counted)
    monkeypatch.setattr(_SoftEvaluator, "MIN_DROPPED", 0.2)
    sol = wg.solve(mdp, obj, tol=tol)
    assert kept and max(kept) <= 0.8
    monkeypatch.setattr(_SoftEvaluator, "MIN_DROPPED", 2.0)      # never thinned
    n = len(kept)
    full = wg.solve(mdp, obj, tol=tol)
    assert len(kept) == n
    assert sol.diagnostics["bellman_sweeps"] == full.diagnostics["bellman_sweeps"]
    exact = wg.solve(mdp, obj, method="policy_iteration")
    scale = np.max(np.abs(exact.V))
    for s in (sol, full):
        # the certified bound, plus the reference's own rounding (ulps of |V| / (1 - gamma))
        np.testing.assert_allclose(s.V, exact.V, rtol=0, atol=tol * scale + 1e-13 * scale / 0.01)


@pytest.mark.parametrize("scale", [1e-10, 1e-12, 1e6])
@pytest.mark.parametrize("method", ["policy_iteration", "modified_policy_iteration"])
def test_hard_solves_are_invariant_to_the_scale_of_the_costs(scale, method):
    # costs times a constant: the same optimal policy and J times that constant. Ties between
    # actions are judged relative to the magnitudes in Q, not against an absolute floor (which
    # made small costs look like ties: policy iteration stopped on a non-greedy policy, modified
    # policy iteration never met its relative stopping test)
    mdp = wg.problems.get("garnet", n_states=30, n_actions=4, seed=0)
    scaled = wg.MDP(mdp.P, mdp.C * scale)
    objectives = [wg.Discounted(0.9)] + ([wg.Average()] if method == "policy_iteration" else [])
    for obj in objectives:
        ref = wg.solve(mdp, obj, method="policy_iteration")
        sol = wg.solve(scaled, obj, method=method)
        np.testing.assert_array_equal(sol.policy.greedy(), ref.policy.greedy())
        # the solver's stopping tolerance (1e-10 relative) on top of rounding
        assert sol.J / scale == pytest.approx(ref.J, rel=1e-9)
    # against QuantEcon on the scaled problem (its own policy iteration: exact to rounding)
    qe = pytest.importorskip("quantecon")
    res = scaled.to_quantecon(0.9).solve(method="policy_iteration")
    sol = wg.solve(scaled, wg.Discounted(0.9), method=method)
    np.testing.assert_array_equal(sol.policy.greedy(), res.sigma)


@pytest.mark.parametrize("scale", [1e-160, 1e120])
def test_soft_solve_at_extreme_cost_scales(scale):
    # costs and entropy times the same constant: the same Gibbs policy, J times the constant
    # (the last-sweep guess used to square residuals of 1e-160 and cube ones of 1e120)
    g = wg.problems.get("garnet", n_states=30, n_actions=4, seed=0)
    ref = wg.solve(wg.MDP(g.P, g.C), wg.Discounted(0.9, entropy=0.1))
    sol = wg.solve(wg.MDP(g.P, g.C * scale), wg.Discounted(0.9, entropy=0.1 * scale))
    # both to the solver's 1e-10 relative tolerance
    assert sol.J / scale == pytest.approx(ref.J, rel=1e-9)
    np.testing.assert_allclose(sol.policy.masses, ref.policy.masses, rtol=0, atol=1e-8)


def test_relative_value_iteration_on_a_periodic_chain_names_the_aperiodicity_option():
    # two states that swap every step whatever the action: h oscillates under relative value
    # iteration; the error says why and what to pass, and the transform converges to the gain
    # of policy iteration (J = 2: costs 1 and 3 alternate under the cheaper action)
    P = sp.csr_matrix(np.array([[0, 1.0], [0, 1.0], [1.0, 0], [1.0, 0]]))
    mdp = wg.MDP(P, np.array([[1.0, 2.0], [3.0, 4.0]]))
    with pytest.raises(wg.ConvergenceError, match="periodic chain.*aperiodicity"):
        wg.solve(mdp, wg.Average(), method="relative_value_iteration", max_iter=1000)
    ref = wg.solve(mdp, wg.Average())
    assert ref.J == pytest.approx(2.0, abs=1e-14)
    sol = wg.solve(mdp, wg.Average(), method="relative_value_iteration", aperiodicity=0.5)
    assert sol.J == pytest.approx(ref.J, abs=1e-9)
