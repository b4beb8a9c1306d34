"""Tests of the built-in problems: registry, documentation, physics against gymnasium, garnet,
the quadratic bandit's Gibbs optimum."""
import numpy as np
import pytest
import scipy.sparse as sp

import wgflow as wg
from wgflow.problems.classic import angle_normalize

SMALL = {
    "double_integrator": dict(n_states=(11, 9), n_actions=5),
    "garnet": dict(n_states=12, n_actions=4),
    "lqr1d": dict(n_states=21, n_actions=11),
    "lqr2d": dict(n_states=(7, 7), n_actions=(3, 3)),
    "mountain_car": dict(n_position=13, n_velocity=9, n_actions=5),
    "pendulum": dict(n_theta=12, n_omega=9, n_actions=5),
    "quadratic_bandit": dict(n_actions=21),
}


@pytest.mark.parametrize("name", wg.problems.names())
def test_every_problem_builds_with_defaults(name):
    mdp = wg.problems.get(name)
    assert isinstance(mdp.P, sp.csr_matrix)
    nS, nA = mdp.n_states, mdp.n_actions
    assert mdp.P.shape == (nS * nA, nS) and mdp.C.shape == (nS, nA)
    assert np.all(np.isfinite(mdp.C)) and np.all(mdp.P.data >= 0)
    np.testing.assert_allclose(np.asarray(mdp.P.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-10)
    assert mdp.actions is not None and mdp.actions.size == nA
    assert mdp.provenance["problem"] == name
    assert mdp.provenance["params"].keys() == wg.problems.parameters(name).keys()


@pytest.mark.parametrize("name", wg.problems.names())
def test_every_problem_documents_its_parameters(name):
    params = wg.problems.parameters(name)
    assert params, name
    text = wg.problems.describe(name)
    assert text.startswith(f"{name}: ") and len(text.splitlines()[0]) > len(name) + 10
    for k, v in params.items():
        assert f"  {k} = {v!r}" in text
    assert name in SMALL, "add the new problem to SMALL in this file"
    mdp = wg.problems.get(name, **SMALL[name])          # small grids honoured
    prov = mdp.provenance["params"]
    assert prov.keys() == params.keys()
    for k, v in SMALL[name].items():
        np.testing.assert_array_equal(prov[k], v)
    assert mdp.actions.size == mdp.n_actions == int(np.prod(SMALL[name]["n_actions"]))


def test_unknown_problem_and_param_list_valid_ones():
    with pytest.raises(wg.ValidationError) as info:
        wg.problems.get("no_such_problem")
    assert isinstance(info.value, ValueError)
    for name in wg.problems.names():
        assert name in str(info.value)
    with pytest.raises(wg.ValidationError) as info:
        wg.problems.get("lqr1d", n_sates=11)
    msg = str(info.value)
    assert "n_sates" in msg
    for k in wg.problems.parameters("lqr1d"):
        assert k in msg
    with pytest.raises(wg.ValidationError):
        wg.problems.describe("nope")


@pytest.mark.parametrize("name, params", [("garnet", dict(branching=0)),
                                          ("mountain_car", dict(goal="nowhere"))])
def test_bad_param_value_raises_validation_error(name, params):
    with pytest.raises(wg.ValidationError):
        wg.problems.get(name, **params)


# ------------------------------------------------------------------------------ analytic derivatives
@pytest.mark.parametrize("name", ["double_integrator", "pendulum", "lqr1d", "lqr2d",
                                  "quadratic_bandit", "mountain_car"])
def test_analytic_action_derivatives_match_fd(name, rng):
    model = wg.problems.model(name, **SMALL[name])
    S, A = model.states, model.actions
    n = 60
    lo, hi = S.bounds[:, 0], S.bounds[:, 1]
    s = lo + rng.random((n, S.ndim)) * (hi - lo)
    alo, ahi = A.bounds[:, 0], A.bounds[:, 1]
    a = alo + (0.02 + 0.96 * rng.random((n, A.ndim))) * (ahi - alo)
    eps = 1e-6
    for d in range(A.ndim):
        e = np.zeros(A.ndim)
        e[d] = eps
        dp, d0, dm = model.drift(s, a + e), model.drift(s, a), model.drift(s, a - e)
        cp, c0, cm = model.cost(s, a + e), model.cost(s, a), model.cost(s, a - e)
        # a kink (speed clip, wall, goal indicator) within eps shows as one-sided differences
        # that disagree; those few points are left out
        smooth = (np.all(np.abs((dp - d0) - (d0 - dm)) < 1e-9, axis=1)
                  & (np.abs((cp - c0) - (c0 - cm)) < 1e-9))
        assert smooth.sum() >= n - 3
        fd_drift = (dp - dm) / (2 * eps)
        fd_cost = (cp - cm) / (2 * eps)
        if model.drift_da is not None:
            J = np.asarray(model.drift_da(s, a)).reshape(n, S.ndim, A.ndim)[:, :, d]
            np.testing.assert_allclose(J[smooth], fd_drift[smooth], rtol=0, atol=1e-6)
        if model.cost_da is not None:
            g = np.asarray(model.cost_da(s, a)).reshape(n, A.ndim)[:, d]
            np.testing.assert_allclose(g[smooth], fd_cost[smooth], rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------ gymnasium physics
@pytest.fixture(scope="module")
def gym():
    return pytest.importorskip("gymnasium")


def test_pendulum_matches_gymnasium(rng, gym):
    model = wg.problems.model("pendulum")
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    u_env = env.unwrapped
    n = 200
    th = rng.uniform(-np.pi, np.pi, n)
    om = rng.uniform(-8, 8, n)
    om[:10] = [8, -8, 7.9, -7.9, 7.5, -7.5, 0, 0.1, -0.1, 3]      # clipping of the speed
    u = rng.uniform(-2, 2, n)
    s = np.column_stack([th, om])
    a = u[:, None]
    ours = model.drift(s, a)
    cost = model.cost(s, a)
    for i in range(n):
        u_env.state = np.array([th[i], om[i]])
        _, reward, *_ = u_env.step(np.array([u[i]]))
        newth, newthdot = u_env.state
        assert abs(angle_normalize(ours[i, 0] - newth)) < 1e-12
        assert ours[i, 1] == pytest.approx(newthdot, abs=1e-12)
        assert cost[i] == pytest.approx(-reward, rel=1e-12, abs=1e-12)
    env.close()
    # the MDP puts the angle on the periodic grid, the drift itself may leave [-pi, pi)
    w = model.states.wrap(ours)
    assert np.all((w[:, 0] >= -np.pi) & (w[:, 0] < np.pi))


def test_mountain_car_matches_gymnasium(rng, gym):
    model = wg.problems.model("mountain_car")
    env = gym.make("MountainCarContinuous-v0")
    env.reset(seed=0)
    u_env = env.unwrapped
    n = 300
    x = rng.uniform(-1.2, 0.6, n)
    v = rng.uniform(-0.07, 0.07, n)
    x[:6] = [-1.19, -1.2, 0.44, 0.449, 0.5, 0.3]           # left wall, around the goal
    v[:6] = [-0.06, -0.01, 0.02, 0.005, 0.0, 0.07]
    u = rng.uniform(-1, 1, n)
    s = np.column_stack([x, v])
    a = u[:, None]
    ours = model.drift(s, a)
    cost = model.cost(s, a)
    goals = 0
    for i in range(n):
        u_env.state = np.array([x[i], v[i]])
        _, reward, terminated, *_ = u_env.step(np.array([u[i]]))
        goals += terminated
        # gymnasium stores the new state in float32
        assert ours[i, 0] == pytest.approx(u_env.state[0], abs=1e-7)
        assert ours[i, 1] == pytest.approx(u_env.state[1], abs=1e-8)
        # the step's control cost is minus the reward without the goal's +100; the +100 is the
        # model's entry_cost, charged for the mass deposited on goal cells, whose continuous
        # criterion is gymnasium's termination
        assert cost[i] == pytest.approx(-reward + 100.0 * terminated, rel=1e-12, abs=1e-12)
        assert bool(model.terminal(ours[i:i + 1])[0]) == terminated
    assert model.entry_cost == -100.0
    assert goals >= 3
    env.close()


def test_mountain_car_left_wall_velocity_reset():
    model = wg.problems.model("mountain_car")
    nxt = model.drift(np.array([[-1.19, -0.05]]), np.array([[-1.0]]))
    np.testing.assert_array_equal(nxt, [[-1.2, 0.0]])


# ------------------------------------------------------------------------------ garnet
def test_garnet_reproducible_and_branching():
    a = wg.problems.get("garnet", n_states=30, n_actions=4, branching=3, seed=11)
    b = wg.problems.get("garnet", n_states=30, n_actions=4, branching=3, seed=11)
    c = wg.problems.get("garnet", n_states=30, n_actions=4, branching=3, seed=12)
    np.testing.assert_array_equal(a.P.toarray(), b.P.toarray())
    np.testing.assert_array_equal(a.C, b.C)
    assert not np.array_equal(a.C, c.C)
    np.testing.assert_array_equal(np.diff(a.P.indptr), 3)
    assert np.all(a.P.data > 0)
    np.testing.assert_allclose(np.asarray(a.P.sum(axis=1)).ravel(), 1.0, atol=1e-14)
    assert np.all((a.C >= 0) & (a.C <= 1))
    assert a.actions == wg.Grid([(0.0, 1.0)], [4])


def test_garnet_matches_independent_generator():
    n_states, n_actions, branching, seed = 15, 3, 4, 5
    rng = np.random.default_rng(seed)
    n = n_states * n_actions
    cols = np.argsort(rng.random((n, n_states)), axis=1)[:, :branching]
    cuts = np.sort(rng.random((n, branching - 1)), axis=1)
    probs = np.diff(np.concatenate([np.zeros((n, 1)), cuts, np.ones((n, 1))], axis=1), axis=1)
    P = np.zeros((n, n_states))
    P[np.repeat(np.arange(n), branching), cols.ravel()] = probs.ravel()
    C = rng.uniform(-1.0, 2.0, size=(n_states, n_actions))
    mdp = wg.problems.get("garnet", n_states=n_states, n_actions=n_actions, branching=branching,
                          seed=seed, cost_low=-1.0, cost_high=2.0)
    np.testing.assert_array_equal(mdp.P.toarray(), P)
    np.testing.assert_array_equal(mdp.C, C)


# ------------------------------------------------------------------------------ quadratic bandit
@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_quadratic_bandit_soft_optimum_is_gibbs_over_centres(tau):
    curvature, center = 1.7, 0.4
    mdp = wg.problems.get("quadratic_bandit", n_actions=101, a_max=3.0, curvature=curvature,
                          center=center)
    a = mdp.actions.axes[0]
    cost = 0.5 * curvature * (a - center) ** 2
    np.testing.assert_allclose(mdp.C[0], cost, rtol=1e-15)
    gamma = 0.5
    sol = wg.solve(mdp, wg.Discounted(gamma=gamma, entropy=tau))
    w = np.exp(-(cost - cost.min()) / tau)
    gibbs = w / w.sum()
    np.testing.assert_allclose(sol.policy.masses[0], gibbs, rtol=1e-12, atol=1e-300)
    # value: V = (-tau log sum_a vol exp(-C/tau)) / (1 - gamma)
    vol = mdp.actions.cell_volume
    soft_min = cost.min() - tau * np.log(vol * w.sum())
    assert sol.V[0] == pytest.approx(soft_min / (1 - gamma), rel=1e-12)
    assert sol.J == pytest.approx(soft_min / (1 - gamma), rel=1e-12)
    # inside the box the Gibbs law is the Gaussian N(center, tau/curvature)
    if tau == 0.05:
        mean = gibbs @ a
        var = gibbs @ (a - mean) ** 2
        assert mean == pytest.approx(center, abs=1e-10)
        assert var == pytest.approx(tau / curvature, rel=1e-8)
