"""Geodesics of the policy-dependent metric (wgflow.geodesics)."""
import numpy as np
import pytest

import wgflow as wg
from wgflow import geodesics as G


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def random_masses(rng, nS, nA):
    m = rng.random((nS, nA)) + 0.05
    return m / m.sum(axis=1, keepdims=True)


def path_problem(mdp, obj, m0, m1, n_nodes=5, M=8, deposition="linear"):
    e = G._edges(mdp.actions)
    U, X0, X1, free, _ = G._common_knots(m0, m1, e, M)
    return G._PathProblem(mdp, obj, U, X0, X1, e, m0, m1, n_nodes, free, deposition), e


def fd_check(prob, e, seed=0):
    """Directional central difference of the energy at a perturbed McCann path."""
    rng = np.random.default_rng(seed)
    K = prob.K
    t = np.linspace(0, 1, K + 1)[:, None, None]
    z = prob.pack((1 - t) * prob.X0 + t * prob.X1)
    z = np.clip(z + rng.normal(scale=0.02 * (e[-1] - e[0]), size=z.size), e[0] + 1e-3, e[-1] - 1e-3)
    g = prob.pack(prob.evaluate(prob.full(z), grad=True)["grad"])
    errs = []
    for _ in range(3):
        d = rng.normal(size=z.size)
        h = 1e-6
        fp = prob.evaluate(prob.full(z + h * d))["energy"]
        fm = prob.evaluate(prob.full(z - h * d))["energy"]
        fd = (fp - fm) / (2 * h)
        errs.append(abs(fd - g @ d) / abs(g @ d))
    return max(errs)


def constant_weight_mdp(nS=3, nA=16, seed=0):
    """Transitions independent of the action: omega_pi does not depend on pi."""
    rng = np.random.default_rng(seed)
    q = rng.random((nS, nS)) + 0.1
    q /= q.sum(axis=1, keepdims=True)
    P = np.repeat(q[:, None, :], nA, axis=1)
    C = rng.random((nS, nA))
    return wg.MDP.from_arrays(P, C, actions=wg.Grid([(-1.0, 1.0)], [nA]))


@pytest.fixture(scope="module")
def switching():
    mdp = G.switching_chain(n_actions=24)
    obj = wg.Discounted(gamma=0.9, initial=[1.0, 0.0])
    pi0 = wg.Policy.gaussian(mdp, mean=-0.5, std=0.2)
    pi1 = wg.Policy.gaussian(mdp, mean=0.5, std=0.2)
    res = G.metric_geodesic(mdp, obj, pi0, pi1, n_nodes=5, n_quantiles=16)
    return mdp, obj, pi0, pi1, res


# ---------------------------------------------------------------------------------------------
# gradient
# ---------------------------------------------------------------------------------------------
OBJECTIVES = pytest.mark.parametrize("objective", [wg.Discounted(gamma=0.8), wg.Average()],
                                     ids=["discounted", "average"])
DEPOSITIONS = pytest.mark.parametrize("deposition", ["linear", "exact"])


@OBJECTIVES
@DEPOSITIONS
def test_energy_gradient_matches_finite_differences_garnet(objective, deposition):
    mdp = wg.problems.get("garnet", n_states=4, n_actions=12, branching=2, seed=3)
    rng = np.random.default_rng(1)
    prob, e = path_problem(mdp, objective, random_masses(rng, 4, 12), random_masses(rng, 4, 12),
                           deposition=deposition)
    assert fd_check(prob, e) <= 1e-5


@OBJECTIVES
@DEPOSITIONS
def test_energy_gradient_matches_finite_differences_switching(objective, deposition):
    mdp = G.switching_chain(n_actions=12)
    pi0 = wg.Policy.gaussian(mdp, mean=-0.5, std=0.3)
    pi1 = wg.Policy.gaussian(mdp, mean=0.5, std=0.2)
    prob, e = path_problem(mdp, objective, pi0.masses, pi1.masses, deposition=deposition)
    assert fd_check(prob, e, seed=2) <= 1e-5


def test_adjoint_of_weights_matches_finite_differences():
    mdp = wg.problems.get("garnet", n_states=5, n_actions=6, branching=3, seed=0)
    rng = np.random.default_rng(0)
    m = random_masses(rng, 5, 6)
    f = rng.normal(size=5)
    dm = rng.normal(size=(5, 6))
    dm -= dm.mean(axis=1, keepdims=True)           # stay on the simplex
    for obj in (wg.Discounted(gamma=0.9), wg.Average()):
        gm = G._Weights(mdp, obj, m).adjoint(f)
        h = 1e-6
        fp = f @ G._weights_of(mdp, obj, m + h * dm)
        fm = f @ G._weights_of(mdp, obj, m - h * dm)
        fd = (fp - fm) / (2 * h)
        assert abs(fd - np.sum(gm * dm)) <= 1e-7 * max(1.0, abs(fd))
        # the weights are the ones evaluate() reports
        ev = wg.evaluate(mdp, m, obj)
        np.testing.assert_allclose(G._weights_of(mdp, obj, m), ev.weights, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# quantile utilities
# ---------------------------------------------------------------------------------------------
def test_exact_w2_of_shifted_cells_and_endpoint_reconstruction():
    A = wg.Grid([(0.0, 1.0)], [10])
    m0 = np.zeros((3, 10))
    m1 = np.zeros((3, 10))
    m0[0, 2], m1[0, 5] = 1.0, 1.0                    # one cell shifted by 3 cells: W2 = 0.3
    m0[1, :] = 0.1                                    # uniform vs uniform on the left half
    m1[1, :5] = 0.2
    m0[2, [1, 8]] = 0.5                               # a gap in the support
    m1[2, 4] = 1.0
    w = G.wasserstein_1d(m0, m1, A)
    assert w[0] == pytest.approx(0.3, abs=1e-14)
    # quantiles u and u/2 on [0, 1]: int (u/2)^2 du = 1/12
    assert w[1] == pytest.approx(np.sqrt(1 / 12), abs=1e-14)
    # masses 1/2 on [0.1, 0.2] and [0.8, 0.9] vs all on [0.4, 0.5]
    q0 = lambda u: np.where(u < 0.5, 0.1 + 0.2 * u, 0.8 + 0.2 * (u - 0.5))
    q1 = lambda u: 0.4 + 0.1 * u
    u = (np.arange(200000) + 0.5) / 200000
    assert w[2] ** 2 == pytest.approx(np.mean((q0(u) - q1(u)) ** 2), rel=1e-8)
    U, X0, X1, free, side = G._common_knots(m0, m1, G._edges(A), 7)
    np.testing.assert_allclose(G._masses_from_knots(X0, U, G._edges(A), "exact"), m0, atol=1e-12)
    np.testing.assert_allclose(G._masses_from_knots(X1, U, G._edges(A), "exact"), m1, atol=1e-12)
    # linear deposition conserves mass and the mean action
    c = A.centers[:, 0]
    ml = G._masses_from_knots(X0, U, G._edges(A), "linear")
    np.testing.assert_allclose(ml.sum(axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(ml @ c, m0 @ c, atol=1e-12)
    np.testing.assert_allclose(G._positions_at_knots(m0, G._edges(A), U, free, side), X0, atol=1e-14)


def test_masses_from_non_monotone_knots_are_a_probability():
    A = wg.Grid([(-1.0, 1.0)], [9])
    rng = np.random.default_rng(0)
    U = np.sort(np.concatenate([[[0.0]] * 2, rng.random((2, 6)), [[1.0]] * 2], axis=1), axis=1)
    X = rng.uniform(-1, 1, size=U.shape)
    for dep in ("linear", "exact"):
        m = G._masses_from_knots(X, U, G._edges(A), dep)
        assert np.all(m >= -1e-15)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# the geodesic
# ---------------------------------------------------------------------------------------------
def test_action_independent_transitions_give_mccann():
    mdp = constant_weight_mdp()
    obj = wg.Discounted(gamma=0.8)
    pi0 = wg.Policy.gaussian(mdp, mean=[-0.5, 0.0, 0.3], std=[0.2, 0.4, 0.1])
    pi1 = wg.Policy.gaussian(mdp, mean=[0.4, -0.3, 0.3], std=[0.3, 0.1, 0.4])
    res = G.metric_geodesic(mdp, obj, pi0, pi1, n_nodes=6, n_quantiles=16)
    assert res.energy == pytest.approx(res.mccann_energy, rel=1e-12)
    assert res.length == pytest.approx(res.mccann_length, rel=1e-12)
    # omega is constant, so the McCann energy is omega-weighted W2^2 of the endpoints
    w = wg.evaluate(mdp, pi0, obj).weights
    d2 = np.sum(w * G.wasserstein_1d(pi0.masses, pi1.masses, mdp.actions) ** 2)
    assert res.mccann_energy == pytest.approx(d2, rel=1e-10)
    assert res.mccann_length == pytest.approx(np.sqrt(d2), rel=1e-10)
    # from a perturbed initial path the optimizer returns to the McCann path
    uni = wg.Policy.uniform(mdp).masses
    init = [pi0] + [0.7 * p.masses + 0.3 * uni for p in res.mccann_policies[1:-1]] + [pi1]
    res2 = G.metric_geodesic(mdp, obj, pi0, pi1, n_nodes=6, n_quantiles=16, initial=init)
    assert res2.energy == pytest.approx(res.mccann_energy, rel=1e-8)
    for p, q in zip(res2.policies, res.mccann_policies):
        np.testing.assert_allclose(p.masses, q.masses, atol=1e-5)


def test_metric_geodesic_is_shorter_than_mccann(switching):
    mdp, obj, pi0, pi1, res = switching
    assert res.length <= res.mccann_length + 1e-10
    assert res.energy <= res.mccann_energy
    assert res.length < 0.97 * res.mccann_length          # strictly: observed ratio ~0.946
    assert res.mccann_length == pytest.approx(0.99293, abs=1e-4)
    assert res.length == pytest.approx(0.93913, abs=2e-3)
    assert res.diagnostics["converged"]


def test_endpoints_fixed_and_nodes_are_policies(switching):
    mdp, obj, pi0, pi1, res = switching
    assert res.policies[0] is pi0 and res.policies[-1] is pi1
    np.testing.assert_allclose(res.quantiles.masses(0), pi0.masses, atol=1e-10)
    np.testing.assert_allclose(res.quantiles.masses(len(res.times) - 1), pi1.masses, atol=1e-10)
    np.testing.assert_array_equal(res.times, np.linspace(0, 1, 5))
    for p in res.policies:
        assert np.all(p.masses >= 0) and np.allclose(p.masses.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(res.weights[0], wg.evaluate(mdp, pi0, obj).weights, atol=1e-13)
    np.testing.assert_allclose(res.weights[-1], wg.evaluate(mdp, pi1, obj).weights, atol=1e-13)


def test_cauchy_schwarz_and_constant_speed(switching):
    mdp, obj, pi0, pi1, res = switching
    assert res.energy >= res.length ** 2 * (1 - 1e-14)
    assert res.mccann_energy >= res.mccann_length ** 2 * (1 - 1e-14)
    # at the optimum the speed is constant: E = L^2 up to the discretization
    assert res.energy / res.length ** 2 - 1 <= 1e-3
    seg = np.diff(res.diagnostics["arclength"])
    assert np.max(np.abs(seg * (len(res.times) - 1) - 1)) <= 0.02
    # any path: E >= L^2
    rng = np.random.default_rng(0)
    path = [pi0] + [random_masses(rng, 2, 24) for _ in range(3)] + [pi1]
    pe = G.path_energy(mdp, obj, path)
    assert pe.energy >= pe.length ** 2


def test_path_energy_agrees_with_result(switching):
    mdp, obj, pi0, pi1, res = switching
    pe = G.path_energy(mdp, obj, res)
    assert pe.energy == pytest.approx(res.energy, rel=1e-13)
    assert pe.length == pytest.approx(res.length, rel=1e-13)
    pm = G.path_energy(mdp, obj, res.mccann_quantiles)
    assert pm.energy == pytest.approx(res.mccann_energy, rel=1e-13)
    # Eulerian evaluation of the cell-projected McCann policies: same up to the projection
    pe_mc = G.path_energy(mdp, obj, res.mccann_policies)
    assert pe_mc.length == pytest.approx(res.mccann_length, rel=1e-4)
    pe_geo = G.path_energy(mdp, obj, res.policies)
    assert pe_geo.length == pytest.approx(res.length, rel=1e-2)
    assert pe_geo.length < pe_mc.length


def test_average_cost_geodesic():
    mdp = G.switching_chain(n_actions=16)
    obj = wg.Average()
    pi0 = wg.Policy.gaussian(mdp, mean=-0.5, std=0.25)
    pi1 = wg.Policy.gaussian(mdp, mean=0.5, std=0.25)
    res = G.metric_geodesic(mdp, obj, pi0, pi1, n_nodes=5, n_quantiles=8)
    assert res.length <= res.mccann_length + 1e-10
    assert res.length < 0.99 * res.mccann_length
    np.testing.assert_allclose(res.weights.sum(axis=1), 1.0, atol=1e-12)


def test_geodesic_validation():
    mdp = G.switching_chain(n_actions=8)
    pi = wg.Policy.uniform(mdp)
    with pytest.raises(ValueError):
        G.metric_geodesic(mdp, wg.Discounted(0.9), pi, pi, n_nodes=1)
    with pytest.raises(wg.ValidationError):
        G.metric_geodesic(mdp, wg.Discounted(0.9), pi, np.ones((2, 8)))
    mdp2 = wg.problems.get("lqr2d", n_states=(3, 3), n_actions=(3, 3))
    p2 = wg.Policy.uniform(mdp2)
    with pytest.raises(wg.ValidationError, match="1-D"):
        G.metric_geodesic(mdp2, wg.Discounted(0.9), p2, p2)
    # identical endpoints: zero energy, nothing to optimize
    res = G.metric_geodesic(mdp, wg.Discounted(0.9), pi, pi, n_nodes=4)
    assert res.energy == pytest.approx(0.0, abs=1e-25) and res.length == pytest.approx(0.0, abs=1e-12)


def test_cross_check_with_geometry_module(switching):
    geometry = wg.geometry
    mdp, obj, pi0, pi1, _ = switching
    w = wg.evaluate(mdp, pi0, obj).weights
    d_ref = np.sqrt(np.sum(w * G.wasserstein_1d(pi0.masses, pi1.masses, mdp.actions) ** 2))
    assert geometry.distance(pi0, pi1, w) == pytest.approx(d_ref, rel=1e-10)
    # per-state W2 on laws with gaps in their support
    rng = np.random.default_rng(5)
    m0, m1 = random_masses(rng, 2, 24), random_masses(rng, 2, 24)
    m0[:, 3:9] = 0.0
    m1[:, 15:] = 0.0
    m0 /= m0.sum(axis=1, keepdims=True)
    m1 /= m1.sum(axis=1, keepdims=True)
    p0, p1 = wg.Policy.from_masses(mdp, m0), wg.Policy.from_masses(mdp, m1)
    np.testing.assert_allclose(geometry.w2sq(p0, p1), G.wasserstein_1d(m0, m1, mdp.actions) ** 2,
                               rtol=1e-10, atol=1e-15)
    # the McCann path with exact cell masses is geometry.geodesic
    res = G.metric_geodesic(mdp, obj, pi0, pi1, n_nodes=5, n_quantiles=16, deposition="exact")
    assert res.length <= res.mccann_length
    for k, t in enumerate(res.times):
        np.testing.assert_allclose(geometry.geodesic(pi0, pi1, t).masses,
                                   res.mccann_policies[k].masses, atol=1e-9)


def test_iteration_limit_raises_with_partial_result_and_progress_callback():
    mdp = G.switching_chain(n_actions=24, sharpness=6.0, leak=0.01)
    obj = wg.Discounted(gamma=0.95, initial=[1.0, 0.0])
    pi0 = wg.Policy.gaussian(mdp, mean=-0.6, std=0.15)
    pi1 = wg.Policy.gaussian(mdp, mean=0.6, std=0.15)
    seen = []
    with pytest.raises(wg.ConvergenceError) as info:
        G.metric_geodesic(mdp, obj, pi0, pi1, n_nodes=5, n_quantiles=8, max_iter=3,
                          progress=lambda it, E: seen.append((it, E)))
    partial = info.value.diagnostics["result"]
    assert partial.energy < partial.mccann_energy
    assert [it for it, _ in seen] == [1, 2, 3]
    assert all(np.isfinite(E) for _, E in seen)


# ---------------------------------------------------------------------------------------------
# negligible tail masses (Gibbs tails at small entropy)
# ---------------------------------------------------------------------------------------------
def test_negligible_tail_mass_is_not_spread_across_the_box():
    """m0 = [1e-13, .5, .5, 0] and m1 = [0, 0, .5, .5]: a shift by one cell (W2 = h = 0.25).
    Merging the knot level 1e-13 into 0 used to interpolate the quantile function from the box
    edge across cell 0 (W2 = 0.3227)."""
    import ot
    A = wg.Grid([(0.0, 1.0)], [4])
    m0 = np.array([[1e-13, 0.5, 0.5, 0.0]])
    m0 /= m0.sum()
    m1 = np.array([[0.0, 0.0, 0.5, 0.5]])
    x = A.centers[:, 0]
    pot = np.sqrt(ot.wasserstein_1d(x, x, m0[0], m1[0], p=2))
    # the 1e-13 tail moves W2 by at most sqrt(1e-13 * 1) ~ 3e-7 (it is dropped, never spread)
    assert G.wasserstein_1d(m0, m1, A)[0] == pytest.approx(0.25, abs=1e-6)
    assert wg.geometry.distance(wg.Policy(m0, A), wg.Policy(m1, A), [1.0]) == pytest.approx(0.25, abs=1e-6)
    assert pot == pytest.approx(0.25, abs=1e-6)


@pytest.fixture(scope="module")
def sharp_optimum():
    """lqr1d's soft optimum at entropy 0.05: Gibbs tails from 1 down to underflow, and a shifted,
    stretched copy of it."""
    mdp = wg.problems.get("lqr1d", n_states=15, n_actions=11)
    obj = wg.Average(entropy=0.05)
    p0 = wg.solve(mdp, obj).policy
    A = mdp.actions
    u = (2 * A.centers[:, 0] - A.bounds[0].sum()) / (A.bounds[0, 1] - A.bounds[0, 0])
    rng = np.random.default_rng(0)
    v = (rng.uniform(-0.15, 0.15, (mdp.n_states, 1)) + rng.uniform(-0.2, 0.2, (mdp.n_states, 1)) * u / 2) * 8
    return mdp, obj, p0, wg.geometry.exp(p0, v)


def test_quantile_knots_agree_with_the_geometry_kernel_on_gibbs_tails(sharp_optimum):
    """Two independent exact 1-D W2 computations (geodesics' merged knots, geometry's two-pointer
    kernel) agree on policies with masses from 1 to 1e-300; POT on the atoms is within the
    atoms-vs-density gap (at most h, since both quantile functions agree at every cell edge)."""
    import ot
    mdp, obj, p0, p1 = sharp_optimum
    A = mdp.actions
    w_knots = G.wasserstein_1d(p0.masses, p1.masses, A)
    w_kernel = np.sqrt(wg.geometry.w2sq(p0, p1))
    # both exact: rounding of sums over ~2 nA segments of size <= box^2
    np.testing.assert_allclose(w_knots, w_kernel, rtol=1e-9, atol=1e-9)
    x = A.centers[:, 0]
    pot = np.array([np.sqrt(ot.wasserstein_1d(x, x, a, b, p=2)) for a, b in zip(p0.masses, p1.masses)])
    assert np.max(np.abs(pot - w_kernel)) <= A.spacing[0]
    pe = G.path_energy(mdp, obj, [p0, p1])
    np.testing.assert_allclose(pe.squared_displacements[0], w_kernel ** 2, rtol=1e-9, atol=1e-12)


def test_metric_geodesic_endpoints_are_the_input_policies(sharp_optimum):
    """The geodesic's end nodes are the inputs exactly; the deposition of the end knots (what the
    convexity rows evaluate) is within h/sqrt(3) of them in W2 per state -- not spread across the
    box. (Couple each point x to a neighbouring centre c with the linear weights, then uniformly
    in c's cell: E|x - c|^2 <= h^2/4, plus h^2/12 inside the cell.)"""
    mdp, obj, p0, p1 = sharp_optimum
    res = G.metric_geodesic(mdp, obj, p0, p1, n_nodes=5, n_quantiles=8, tol=1e-7, max_iter=100,
                            progress=False)
    np.testing.assert_array_equal(res.policies[0].masses, p0.masses)
    np.testing.assert_array_equal(res.policies[-1].masses, p1.masses)
    import dataclasses
    q = dataclasses.replace(res.quantiles, end_masses=None)
    h = mdp.actions.spacing[0]
    for k, p in ((0, p0), (q.n_nodes - 1, p1)):
        dep = wg.Policy(G._clean_masses(q.masses(k)), mdp.actions)
        d = np.sqrt(wg.geometry.w2sq(dep, p))
        assert np.max(d) <= h / np.sqrt(3) * (1 + 1e-9)
    # path_energy of the two-node path is the weighted squared distance at both ends' weights
    pe = G.path_energy(mdp, obj, [p0, p1])
    wbar = 0.5 * (wg.evaluate(mdp, p0, obj).weights + wg.evaluate(mdp, p1, obj).weights)
    assert pe.energy == pytest.approx(float(wbar @ wg.geometry.w2sq(p0, p1)), rel=1e-12)
