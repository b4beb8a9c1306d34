"""The ``wppg`` scheme: Gaussian fixed point (grid and particles), O(h) bias to the Gibbs policy,
mass/positivity, numba vs numpy, particles through ``flow`` (storage and resume)."""
from __future__ import annotations

import numpy as np
import pytest

import wgflow as wg
import wgflow.flows.wppg as wppg_mod
import wgflow.geometry as geo
from wgflow.flows import get_scheme, scheme_names
from wgflow.particles import ParticlePolicy

K, C, TAU = 1.0, 0.3, 0.25          # bandit cost K/2 (a - C)^2, entropy TAU: Gibbs N(C, TAU/K)


def closed_form_variance(h, k=K, tau=TAU):
    """Fixed point of s2 -> (1 - h k)^2 s2 + 2 tau h."""
    return tau / (k * (1.0 - h * k / 2.0))


def bandit(n_actions, a_max=4.0):
    return wg.problems.get("quadratic_bandit", n_actions=n_actions, a_max=a_max, curvature=K,
                           center=C)


def run_grid(mdp, obj, h, n_steps, **opts):
    sch = wppg_mod.WPPG(mdp, obj, **opts)
    st = sch.init(wg.Policy.gaussian(mdp, C, np.sqrt(closed_form_variance(h))))
    for _ in range(n_steps):
        st = sch.step(st, h)
    return sch, st


def test_registered():
    assert "wppg" in scheme_names()
    assert get_scheme("wppg") is wppg_mod.WPPG


@pytest.mark.parametrize("h", [0.4, 1.2])
def test_grid_fixed_point_matches_closed_form(h):
    """Grid fixed point: mean C exactly, variance (2 tau h + D)/(h k (2 - h k)) with D the measured
    deposition variance (an identity of the discrete scheme: transport and deposition keep the
    mean, heat adds exactly 2 tau h); hence |var - tau/(k(1 - hk/2))| <= dx^2/(4 h k (2 - h k))."""
    mdp = bandit(1201, a_max=6.0)          # walls > 7.5 sd away: reflection effects < 1e-13
    obj = wg.Discounted(0.5, entropy=TAU)
    dx = mdp.actions.spacing[0]
    n_steps = int(np.ceil(9.0 / min(h * K, 2 - h * K)))
    sch, st = run_grid(mdp, obj, h, n_steps)
    st2 = sch.step(st, h)
    assert np.max(np.abs(st2.masses - st.masses)) <= 1e-12           # converged
    pol = sch.policy(st)
    mean = pol.mean()[0, 0]
    var = pol.variance(piecewise_constant=False)[0, 0]
    D = st2.info["deposition_variance"][0, 0]
    assert abs(mean - C) <= 1e-9
    assert abs(var - (2 * TAU * h + D) / (h * K * (2 - h * K))) <= 1e-9
    bound = dx ** 2 / (4 * h * K * (2 - h * K))
    assert 0.0 <= var - closed_form_variance(h) + 1e-10 <= bound + 1e-10
    # the bias is real: it is far larger than the grid error
    assert var - TAU / K > 10 * bound


def test_grid_small_step_regime_is_upwind_diffusion():
    """When every displacement h k |a - C| is below dx, deposition adds f(1-f) dx^2 = d dx - d^2
    (d the displacement) and the fixed point is var = tau/k + dx E|a - C| / 2 exactly: the O(h)
    bias cancels and an O(dx) numerical-diffusion bias remains (docs/wppg.md)."""
    mdp = bandit(131, a_max=4.5)
    obj = wg.Discounted(0.5, entropy=TAU)
    dx = mdp.actions.spacing[0]
    x = mdp.actions.centers[:, 0]
    h = 0.012
    assert h * K * np.max(np.abs(x - C)) < dx
    sch = wppg_mod.WPPG(mdp, obj)
    st = sch.init(wg.Policy.gaussian(mdp, C, np.sqrt(TAU / K + 0.4 * dx * np.sqrt(TAU / K))))
    for _ in range(800):
        st = sch.step(st, h)
    p = st.masses[0]
    var, e_abs = p @ (x - C) ** 2, p @ np.abs(x - C)
    assert abs(var - (TAU / K + dx * e_abs / 2)) <= 1e-9
    assert var - closed_form_variance(h) > 0.5 * dx * e_abs / 2


def test_grid_bias_to_gibbs_is_first_order_in_h():
    """As h -> 0 the fixed point approaches solve()'s Gibbs policy, W2 ~ (sqrt(tau/k)/4) k h."""
    mdp = bandit(801)
    obj = wg.Discounted(0.5, entropy=TAU)
    sol = wg.solve(mdp, obj)
    assert abs(sol.policy.variance(piecewise_constant=False)[0, 0] - TAU / K) <= 1e-10
    dx = mdp.actions.spacing[0]
    hs = [0.4, 0.2, 0.1]
    dist = []
    for h in hs:
        sch, st = run_grid(mdp, obj, h, int(np.ceil(8.0 / (h * K))))
        d = geo.distance(sch.policy(st), sol.policy, [1.0])
        exact = np.sqrt(closed_form_variance(h)) - np.sqrt(TAU / K)
        # grid error: variance off by <= dx^2/(4hk(2-hk)), i.e. sigma by that / (2 sigma)
        tol = dx ** 2 / (4 * h * K * (2 - h * K)) / (2 * np.sqrt(TAU / K)) + 2e-5
        assert abs(d - exact) <= tol
        dist.append(d)
    slopes = np.diff(np.log(dist)) / np.diff(np.log(hs))
    assert np.all(np.abs(slopes - 1.0) <= 0.15)
    assert abs(dist[-1] / hs[-1] - np.sqrt(TAU / K) * K / 4) <= 0.01


def test_particle_fixed_point_matches_closed_form():
    """Particles see the exact gradient K (a - C): each follows the AR(1) recursion
    a <- (1 - hK) a + hK C + sqrt(2 tau h) xi, whose stationary law is N(C, closed form).
    The time-averaged empirical variance has Monte Carlo standard deviation
    s2 sqrt(2 / N) sqrt((1 + rho) / ((1 - rho) T)), rho = (1 - hK)^2, T steps."""
    h, N, burn, T = 0.5, 20000, 15, 40
    mdp = bandit(201)
    obj = wg.Discounted(0.5, entropy=TAU)
    s2 = closed_form_variance(h)
    sch = wppg_mod.WPPG(mdp, obj, particles=N, seed=7)
    st = sch.init(wg.Policy.gaussian(mdp, C, np.sqrt(s2)))
    assert st.params["particles"].shape == (1, N, 1)
    v, m = [], []
    for i in range(burn + T):
        st = sch.step(st, h)
        assert np.max(np.abs(st.masses.sum(axis=1) - 1.0)) <= 1e-13 and st.masses.min() >= 0
        if i >= burn:
            X = st.params["particles"][0, :, 0]
            v.append(X.var())
            m.append(X.mean())
    rho = (1 - h * K) ** 2
    sd = s2 * np.sqrt(2.0 / N) * np.sqrt((1 + rho) / ((1 - rho) * T))
    assert abs(np.mean(v) - s2) <= 5 * sd
    assert abs(np.mean(v) - TAU / K) > 20 * sd                  # the O(h) bias is resolved
    sd_mean = np.sqrt(s2 / N) * np.sqrt((1 + np.sqrt(rho)) / ((1 - np.sqrt(rho)) * T))
    assert abs(np.mean(m) - C) <= 5 * sd_mean


def test_particles_common_random_numbers_and_numpy_twins():
    mdp = bandit(101)
    obj = wg.Discounted(0.5, entropy=TAU)
    X0 = ParticlePolicy(np.random.default_rng(1).normal(0.0, 1.0, (1, 300, 1)), mdp.actions)
    out = {}
    for use_numba in (True, False):
        sch = wppg_mod.WPPG(mdp, obj, seed=3, use_numba=use_numba)
        st = sch.init(X0)
        for _ in range(3):
            st = sch.step(st, 0.3)
        out[use_numba] = st
    assert np.array_equal(out[True].params["particles"], out[False].params["particles"])
    assert np.max(np.abs(out[True].masses - out[False].masses)) <= 1e-14
    # tau = 0 with the same seed: the difference is exactly the (reflected) noise of the run above
    sch0 = wppg_mod.WPPG(mdp, wg.Discounted(0.5, entropy=0.0), seed=3)
    st0 = sch0.step(sch0.init(X0), 0.3)
    sch1 = wppg_mod.WPPG(mdp, obj, seed=3)
    st1 = sch1.step(sch1.init(X0), 0.3)
    xi = np.random.default_rng([3, 0]).standard_normal((1, 300, 1))
    expected = st0.params["particles"] + np.sqrt(2 * TAU * 0.3) * xi
    assert np.max(np.abs(st1.params["particles"] - expected)) <= 1e-12


def test_grid_numba_equals_numpy_and_mass_positivity_on_lqr():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=41)
    obj = wg.Discounted(0.9, entropy=0.2)
    pi0 = wg.Policy.gaussian(mdp, 0.5, 1.0)
    states = {}
    for use_numba in (True, False):
        sch = wppg_mod.WPPG(mdp, obj, use_numba=use_numba)
        st = sch.init(pi0)
        h = sch.suggest_dt(st)
        for _ in range(5):
            st = sch.step(st, h)
            assert np.max(np.abs(st.masses.sum(axis=1) - 1.0)) <= 1e-13
            assert st.masses.min() >= 0.0
        states[use_numba] = st
    assert np.max(np.abs(states[True].masses - states[False].masses)) <= 1e-14
    assert states[True].J < wg.evaluate(mdp, pi0, obj).J


def test_gradient_model_vs_grid_and_suggest_dt():
    mdp = wg.problems.get("lqr1d", n_states=15, n_actions=81)
    obj = wg.Discounted(0.9, entropy=0.2)
    sm = wppg_mod.WPPG(mdp, obj, gradient="model")
    sg = wppg_mod.WPPG(mdp, obj, gradient="grid")
    assert wppg_mod.WPPG(mdp, obj).gradient == "model"
    st = sm.init(wg.Policy.gaussian(mdp, 0.0, 1.0))
    gm = sm.centre_gradients(st.evaluation)[:, 1:-1]
    gg = sg.centre_gradients(st.evaluation)[:, 1:-1]
    dx = mdp.actions.spacing[0]
    assert np.max(np.abs(gm - gg)) <= 5 * dx ** 2 * max(1.0, np.max(np.abs(gm)))   # O(dx^2)
    # bandit: Q'' = K exactly, so the default step is 0.5 / K
    b = bandit(101)
    sb = wppg_mod.WPPG(b, wg.Discounted(0.5, entropy=TAU))
    assert abs(sb.suggest_dt(sb.init(wg.Policy.uniform(b))) - 0.5 / K) <= 1e-9
    assert wppg_mod.WPPG(b, wg.Discounted(0.5, entropy=TAU), gradient="grid").gradient == "grid"


def test_two_dimensional_actions_fixed_point_per_axis():
    """Separable 2-D bandit with curvatures (1, 2): per axis var = (2 tau h + D_d)/(h k_d (2 - h k_d))."""
    ks = np.array([1.0, 2.0])
    mdp = wg.MDP.from_dynamics(
        states=wg.Grid([(0, 1)], [1]), actions=wg.Grid([(-3, 3), (-3, 3)], [61, 61]),
        drift=lambda s, a: s.copy(), cost=lambda s, a: 0.5 * (a ** 2) @ ks,
        drift_da=lambda s, a: np.zeros((s.shape[0], 1, 2)), cost_da=lambda s, a: a * ks)
    obj = wg.Discounted(0.5, entropy=0.2)
    h = 0.3
    sch = wppg_mod.WPPG(mdp, obj)
    st = sch.init(wg.Policy.gaussian(mdp, 0.0, [0.6, 0.4]))
    for _ in range(40):
        st = sch.step(st, h)
        assert abs(st.masses.sum() - 1.0) <= 1e-13 and st.masses.min() >= 0.0
    st2 = sch.step(st, h)
    pol = sch.policy(st)
    var = pol.variance(piecewise_constant=False)[0]
    D = st2.info["deposition_variance"][0]
    assert np.max(np.abs(pol.mean()[0])) <= 1e-12
    assert np.max(np.abs(var - (2 * 0.2 * h + D) / (h * ks * (2 - h * ks)))) <= 1e-8
    cov = pol.masses[0] @ np.prod(mdp.actions.centers, axis=1)
    assert abs(cov) <= 1e-12


def test_flow_with_particles_stores_and_resumes(tmp_path):
    mdp = bandit(101)
    obj = wg.Discounted(0.5, entropy=TAU)
    pi0 = wg.Policy.gaussian(mdp, -1.0, 0.8)
    full = wg.flow(mdp, obj, pi0, scheme="wppg", dt=0.25, t_end=2.0, save_every=0.5,
                   particles=200, seed=5, progress=False)
    assert full.params["particles"].shape == (5, 1, 200, 1)
    assert list(full.params["step"]) == [0, 2, 4, 6, 8]
    path = tmp_path / "run.h5"
    wg.flow(mdp, obj, pi0, scheme="wppg", dt=0.25, t_end=1.0, save_every=0.5, particles=200,
            seed=5, storage=path, progress=False)
    res = wg.flow(mdp, obj, None, scheme="wppg", dt=0.25, t_end=2.0, save_every=0.5,
                  particles=200, seed=5, storage=path, resume=True, progress=False)
    assert np.allclose(res.params["particles"][-1], full.params["particles"][-1], rtol=0, atol=1e-14)
    assert abs(res.J[-1] - full.J[-1]) <= 1e-12


def test_grid_flow_runs_with_default_dt():
    mdp = bandit(61)
    traj = wg.flow(mdp, wg.Discounted(0.5, entropy=TAU), wg.Policy.uniform(mdp), scheme="wppg",
                   t_end=3.0, progress=False)
    assert traj.J[-1] < traj.J[0]
    assert np.all(np.isfinite(traj.grad_norm2))


def test_bad_options_raise():
    mdp = bandit(21)
    obj = wg.Discounted(0.5, entropy=TAU)
    with pytest.raises(ValueError):
        wppg_mod.WPPG(mdp, obj, gradient="exact")
    with pytest.raises(ValueError):
        wppg_mod.WPPG(mdp, obj, particles=0)
    with pytest.raises(ValueError):
        wppg_mod.WPPG(mdp, obj, step_fraction=-1)
    with pytest.raises(ValueError):
        wppg_mod.WPPG(mdp, obj, nonsense=1)
    sch = wppg_mod.WPPG(mdp, obj)
    st = sch.init(wg.Policy.uniform(mdp))
    with pytest.raises(ValueError):
        sch.step(st, -0.1)
    with pytest.raises(ValueError):
        sch.init(ParticlePolicy(np.zeros((2, 5, 1))))


def test_particles_average_cost_lqr():
    """Average cost, dynamics problem: particles see the model gradient at off-grid actions; the
    deposited policy has empty cells, so grad_norm2 is inf (not NaN), J decreases."""
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=31)
    obj = wg.Average(entropy=0.2)
    traj = wg.flow(mdp, obj, wg.Policy.gaussian(mdp, 1.0, 1.0), scheme="wppg", t_end=1.0,
                   dt=0.1, save_every=0.5, particles=40, seed=2, progress=False)
    assert traj.J[-1] < traj.J[0]
    assert not np.any(np.isnan(traj.grad_norm2))
    X = traj.params["particles"][-1]
    lo, hi = mdp.actions.bounds[0]
    assert X.min() >= lo and X.max() <= hi
