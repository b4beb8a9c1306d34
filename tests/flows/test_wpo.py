"""The ``wpo`` scheme: WPO update identities, Gibbs fixed points, soft-LQR limit, mixtures."""
import numpy as np
import pytest
from scipy.linalg import solve_discrete_are
from scipy.stats import truncnorm

import wgflow as wg
import wgflow.flows.wpo  # noqa: F401  (registration)
from wgflow.errors import ValidationError
from wgflow.flows.wpo import WPO


def one_state_mdp(cost, cost_da, a_max=10.0, n=401):
    """A 1-state MDP (1-cell state grid) with action cost ``cost(a)`` on [-a_max, a_max]."""
    S = wg.Grid([(0.0, 1.0)], [1])
    A = wg.Grid([(-a_max, a_max)], [n])
    return wg.MDP.from_dynamics(S, A, drift=lambda s, a: s.copy(), noise=0.0,
                                cost=lambda s, a: cost(a[:, 0]),
                                drift_da=lambda s, a: np.zeros((s.shape[0], 1, 1)),
                                cost_da=lambda s, a: cost_da(a))


def quartic(tilt=0.0, **kw):
    """The WPO paper's toy, Q(a) = -a^4/100 + a^2 as a reward, i.e. cost a^4/100 - a^2."""
    return one_state_mdp(lambda a: a ** 4 / 100 - a ** 2 + tilt * a,
                         lambda a: 0.04 * a ** 3 - 2 * a + tilt, **kw)


def direction(mdp, objective, params, **options):
    sch = WPO(mdp, objective, **options)
    st = sch.init(params)
    return sch, st, sch.direction(st)


# ------------------------------------------------------------------ representation
def test_grid_policy_is_policy_gaussian():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=31)
    mean = np.linspace(-2, 2, 21)
    std = np.linspace(0.3, 1.2, 21)
    sch = WPO(mdp, wg.Discounted(0.9, entropy=0.1))
    st = sch.init({"mean": mean, "std": std})
    ref = wg.Policy.gaussian(mdp, mean=mean, std=std).masses
    np.testing.assert_allclose(st.masses, ref, rtol=1e-12, atol=1e-300)
    assert st.params["mean"].shape == (21, 1) and st.params["std"].shape == (21, 1)


def test_one_component_mixture_equals_gaussian():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=31)
    obj = wg.Discounted(0.9, entropy=0.2)
    p = {"mean": 0.3, "std": 0.7}
    t1 = wg.flow(mdp, obj, p, scheme="wpo", t_end=0.3, dt=0.1, progress=False)
    t2 = wg.flow(mdp, obj, {**p, "weights": [1.0]}, scheme="wpo", components=1, t_end=0.3, dt=0.1,
                 progress=False)
    np.testing.assert_allclose(t2.masses, t1.masses, rtol=0, atol=1e-14)
    np.testing.assert_allclose(t2.params["mean"][:, :, 0], t1.params["mean"], atol=1e-14)


# ------------------------------------------------------------------ the update, closed forms
@pytest.mark.parametrize("tau", [0.0, 0.3])
def test_quadrature_update_closed_form_quadratic_bandit(tau):
    """Q = k/2 (a-c)^2: E[grad Q] = k(mu-c), E[(a-mu) grad Q] = k sigma^2 -- on the grid the second
    moment of the binned Gaussian is sigma^2 + h^2/12 (Sheppard), far from the box edges exactly
    (Poisson summation: the other errors are ~exp(-2 pi^2 sigma^2/h^2))."""
    k, c, mu, sd = 2.0, 0.5, 1.2, 0.7
    mdp = wg.problems.get("quadratic_bandit", n_actions=401, a_max=8.0, curvature=k, center=c)
    h = mdp.actions.spacing[0]
    _, _, d = direction(mdp, wg.Discounted(0.5, entropy=tau), {"mean": mu, "std": sd})
    m2 = sd ** 2 + h ** 2 / 12
    assert d["dmu"][0, 0, 0] == pytest.approx(k * (mu - c), rel=1e-12)
    assert d["E_dev_grad_psi"][0, 0, 0] == pytest.approx((k - tau / sd ** 2) * m2, rel=1e-12)
    assert d["dstd"][0, 0, 0] == pytest.approx((k - tau / sd ** 2) * m2 / sd, rel=1e-12)
    # without Sheppard's term the closed form is off by exactly k h^2/12 (here 1.3e-4 relative)
    assert abs(d["E_dev_grad_psi"][0, 0, 0] - (k - tau / sd ** 2) * sd ** 2) > 1e-5


def test_quadrature_update_box_truncation():
    """A box cutting the Gaussian: the quadrature gives the truncated-normal moments (to the
    O(h^2) binning error), which differ from the untruncated closed forms by O(1)."""
    k, c, mu, sd, a_max = 2.0, 0.0, 1.2, 0.7, 2.0
    mdp = wg.problems.get("quadratic_bandit", n_actions=801, a_max=a_max, curvature=k, center=c)
    h = mdp.actions.spacing[0]
    _, _, d = direction(mdp, wg.Discounted(0.5), {"mean": mu, "std": sd})
    tn = truncnorm((-a_max - mu) / sd, (a_max - mu) / sd, loc=mu, scale=sd)
    Ea, Va = tn.mean(), tn.var()
    exact_dmu = k * (Ea - c)
    exact_m = k * (Va + (Ea - mu) ** 2 + (Ea - mu) * (mu - c))      # E[(a-mu) k (a-c)]
    assert d["dmu"][0, 0, 0] == pytest.approx(exact_dmu, abs=2 * k * h ** 2)
    assert d["E_dev_grad_psi"][0, 0, 0] == pytest.approx(exact_m + k * h ** 2 / 12, abs=2 * k * h ** 2)
    # the truncation error of the untruncated closed forms is large here
    assert abs(d["dmu"][0, 0, 0] - k * (mu - c)) > 0.1
    assert abs(d["E_dev_grad_psi"][0, 0, 0] - k * sd ** 2) > 0.1


def test_wpo_equals_score_function_pg_in_expectation():
    """Stein: E[grad Q] = E[Q (a-mu)]/sigma^2 and E[(a-mu) grad Q]/sigma = E[Q ((a-mu)^2/sigma^2 - 1)]/sigma,
    so after the (sigma^2, sigma^2/2) rescaling the WPO update is the score-function gradient of
    E[Q] in (mu, sigma) -- checked against the closed form for the quartic cost."""
    mu, sd = 2.0, 1.5
    mdp = quartic(a_max=14.0, n=2801)
    _, st, d = direction(mdp, wg.Discounted(0.5), {"mean": mu, "std": sd})
    # d/dmu, d/dsigma of E[a^4/100 - a^2] with E a^4 = mu^4 + 6 mu^2 s^2 + 3 s^4
    g_mu = (4 * mu ** 3 + 12 * mu * sd ** 2) / 100 - 2 * mu
    g_sd = (12 * mu ** 2 * sd + 12 * sd ** 3) / 100 - 2 * sd
    assert d["dmu"][0, 0, 0] == pytest.approx(g_mu, rel=2e-4)
    assert d["dstd"][0, 0, 0] == pytest.approx(g_sd, rel=2e-4)
    # the same expectations written with the score function (Stein's identity) on the same grid
    a = mdp.actions.centers[:, 0]
    m = st.masses[0]
    Q = st.evaluation.Q[0]
    sf_mu = np.sum(m * Q * (a - mu)) / sd ** 2
    sf_sd = np.sum(m * Q * ((a - mu) ** 2 / sd ** 2 - 1)) / sd
    assert d["dmu"][0, 0, 0] == pytest.approx(sf_mu, rel=2e-4)
    assert d["dstd"][0, 0, 0] == pytest.approx(sf_sd, rel=2e-4)
    # natural PG (F^-1 times the score-function gradient) differs by sigma^2 on the mean
    assert abs(sd ** 2 * g_mu - d["dmu"][0, 0, 0]) > 0.5 * abs(g_mu)


def test_sampled_estimator_zero_variance_for_linear_q():
    b = 0.7
    mdp = one_state_mdp(lambda a: b * a, lambda a: np.full_like(a, b), a_max=5.0, n=101)
    obj = wg.Discounted(0.5)
    dmu, dsd, dsd_anti = [], [], []
    for seed in range(5):
        for mu in (0.0, 1.3):
            _, _, d = direction(mdp, obj, {"mean": mu, "std": 1.0}, samples=8, seed=seed)
            dmu.append(d["dmu"][0, 0, 0])
            if mu == 0.0:
                dsd.append(d["dstd"][0, 0, 0])
        _, _, d = direction(mdp, obj, {"mean": 0.0, "std": 1.0}, samples=8, seed=seed, antithetic=True)
        dsd_anti.append(d["dstd"][0, 0, 0])
    np.testing.assert_allclose(dmu, b, rtol=1e-14)           # the mean estimator: exactly b
    np.testing.assert_allclose(dsd_anti, 0.0, atol=1e-14)    # antithetic pairs: exactly 0
    assert np.std(dsd) > 1e-3                                # plain draws: O(1/sqrt(N)) noise


def test_sampled_estimator_unbiased():
    mdp = quartic(a_max=10.0, n=801)
    obj = wg.Discounted(0.5, entropy=0.1)
    p = {"mean": 2.0, "std": 1.0}
    _, _, dq = direction(mdp, obj, p)
    _, _, ds = direction(mdp, obj, p, samples=20000, seed=3)
    # standard errors ~ std(grad Psi)/sqrt(N) ~ 0.02; the quadrature itself is O(h^2) ~ 1e-3 off
    assert ds["dmu"][0, 0, 0] == pytest.approx(dq["dmu"][0, 0, 0], abs=0.06)
    assert ds["dstd"][0, 0, 0] == pytest.approx(dq["dstd"][0, 0, 0], abs=0.08)


# ------------------------------------------------------------------ flows
@pytest.mark.parametrize("tau,k", [(0.2, 2.0), (0.05, 0.5)])
def test_gibbs_fixed_point_quadratic_bandit(tau, k):
    """With Q = k/2 (a-c)^2 the fixed point is sigma^2 = tau/k exactly: the score term and the
    Q term are integrated by the same quadrature, so the h^2/12 of both cancel."""
    c = 0.5
    mdp = wg.problems.get("quadratic_bandit", n_actions=201, a_max=6.0, curvature=k, center=c)
    tr = wg.flow(mdp, wg.Discounted(0.5, entropy=tau), {"mean": -1.0, "std": 2.0}, scheme="wpo",
                 t_end=60.0 / k, save_every=6.0 / k, progress=False)
    assert tr.params["std"][-1, 0, 0] == pytest.approx(np.sqrt(tau / k), rel=1e-10)
    assert tr.params["mean"][-1, 0, 0] == pytest.approx(c, abs=1e-10)
    assert np.all(np.diff(tr.J) <= 1e-12)
    assert tr.grad_norm2[-1] < 1e-20


def test_flow_lqr1d_converges_to_soft_lqr():
    """Soft LQR: the optimum is Gaussian, mean -K x and std sqrt(tau/(2M)) (docs/lqr.md)."""
    gamma, tau = 0.9, 0.1
    mdp = wg.problems.get("lqr1d")
    obj = wg.Discounted(gamma, entropy=tau)
    tr = wg.flow(mdp, obj, {"mean": 0.0, "std": 1.0}, scheme="wpo", t_end=4.0, save_every=0.5,
                 progress=False)
    p = solve_discrete_are(np.sqrt(gamma) * 0.9, np.sqrt(gamma) * 1.0, 1.0, 1.0)[0, 0]
    M = 1.0 + gamma * p
    K = gamma * p * 0.9 / M
    s = np.sqrt(tau / (2 * M))
    x = mdp.states.centers[:, 0]
    inner = np.abs(x) <= 2
    mu, sd = tr.params["mean"][-1, :, 0], tr.params["std"][-1, :, 0]
    assert np.max(np.abs(mu + K * x)[inner]) < 1e-8
    assert np.max(np.abs(sd - s)[inner]) < 1e-8
    assert np.max(np.abs(sd - s)) < 1e-5                     # box edges included
    assert np.all(np.diff(tr.J) <= 1e-12 * abs(tr.J[0]))
    assert tr.grad_norm2[-1] < 1e-16 * tr.grad_norm2[0]
    # the policy's binned masses differ from the grid Gibbs masses by O(h^2) (Sheppard), so J is
    # above the grid optimum by a grid-size amount
    sol = wg.solve(mdp, obj)
    assert 0 <= tr.J[-1] - sol.J < 2e-3
    # and the Gaussian fitted to solve()'s masses has the same parameters to the same O(h^2)
    h = mdp.actions.spacing[0]
    assert np.max(np.abs(np.sqrt(sol.policy.variance(piecewise_constant=False)[:, 0]) - s)[inner]) < 1e-8
    assert np.max(np.abs(sol.policy.mean()[:, 0] - mu)[inner]) < 1e-8
    assert h ** 2 / 12 > 1e-3 * s ** 2


@pytest.mark.parametrize("objective", [wg.Discounted(0.9, entropy=0.3), wg.Average(entropy=0.3)],
                         ids=["discounted", "average"])
def test_dissipation_matches_grad_norm2(objective):
    """dJ/dt = -kappa * grad_norm2 up to the quadrature (O(h^2)) error."""
    mdp = wg.problems.get("lqr1d", n_states=41, n_actions=81, noise=0.6)
    sch = WPO(mdp, objective)
    st = sch.init({"mean": lambda x: 0.5 - 0.2 * x[:, 0], "std": 0.8})
    kappa = sch.evaluate.dissipation_factor
    eps = 1e-4
    Jp = sch.step(st, eps).J
    w, mu, sd = sch._update(st, -eps)
    Jm = sch._state(0.0, w, mu, sd).J
    slope = (Jp - Jm) / (2 * eps)
    assert slope == pytest.approx(-kappa * sch.grad_norm2(st), rel=5e-3)


# ------------------------------------------------------------------ mixtures
def test_mixture_components_move_to_the_two_optima():
    """Reward -a^4/100 + a^2 (cost a^4/100 - a^2): optima at +-sqrt(50) ~ +-7.07. With entropy tau
    the Gaussian fixed point is mu^2 = 50 - 3 sigma^2, sigma^2 (4 - 0.24 sigma^2) = tau."""
    tau = 0.05
    mdp = quartic(a_max=10.0, n=401)
    tr = wg.flow(mdp, wg.Discounted(0.5, entropy=tau),
                 {"weights": [0.5, 0.5], "mean": [-1.0, 1.0], "std": 1.0}, scheme="wpo",
                 components=2, t_end=12.0, save_every=2.0, progress=False)
    s2 = min(np.roots([-0.24, 4.0, -tau]).real)
    mu = tr.params["mean"][-1, 0, :, 0]
    np.testing.assert_allclose(mu, [-np.sqrt(50 - 3 * s2), np.sqrt(50 - 3 * s2)], atol=1e-4)
    np.testing.assert_allclose(np.abs(mu), np.sqrt(50), atol=5e-3)
    np.testing.assert_allclose(tr.params["std"][-1, 0, :, 0], np.sqrt(s2), rtol=1e-4)
    np.testing.assert_allclose(tr.params["weights"][-1, 0], 0.5, atol=1e-12)
    assert np.all(np.diff(tr.J) <= 1e-12)


def test_mixture_weights_mirror_step_selects_the_better_optimum():
    mdp = quartic(tilt=0.2)          # the left optimum is cheaper by ~2.8
    tr = wg.flow(mdp, wg.Discounted(0.5, entropy=0.05),
                 {"weights": [0.5, 0.5], "mean": [-1.0, 1.0], "std": 1.0}, scheme="wpo",
                 components=2, t_end=12.0, save_every=2.0, progress=False)
    w = tr.params["weights"][:, 0, 0]
    assert w[-1] > 1 - 1e-9
    # non-decreasing up to the rounding of a weight next to 1 (two ulps of 1.0)
    assert np.all(np.diff(w) >= -2 * np.finfo(float).eps)
    assert tr.params["mean"][-1, 0, 0, 0] == pytest.approx(-7.118, abs=1e-2)


# ------------------------------------------------------------------ interface
def test_options_and_params_validation():
    mdp = wg.problems.get("quadratic_bandit", n_actions=41)
    obj = wg.Discounted(0.5, entropy=0.1)
    with pytest.raises(ValidationError, match="unknown option"):
        WPO(mdp, obj, bogus=1)
    for bad in ({"components": 0}, {"samples": 0}, {"samples": 3, "antithetic": True},
                {"antithetic": True}, {"cfl": -1.0}, {"weight_rate": 0.0}, {"min_std": -1.0}):
        with pytest.raises(ValidationError):
            WPO(mdp, obj, **bad)
    sch = WPO(mdp, obj, components=2)
    with pytest.raises(ValidationError, match="sum"):
        sch.init({"weights": [0.5, 0.6], "mean": 0.0, "std": 1.0})
    with pytest.raises(ValidationError):
        WPO(mdp, obj).init({"mean": 0.0, "std": -1.0})
    with pytest.raises(ValidationError):
        wg.flow(mdp, obj, {"mean": 0.0}, scheme="wpo", t_end=1.0, progress=False)


def test_init_from_policy_and_resume(tmp_path):
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=31)
    obj = wg.Discounted(0.9, entropy=0.2)
    pi = wg.Policy.gaussian(mdp, mean=0.5, std=0.6)
    sch = WPO(mdp, obj)
    st = sch.init(pi)           # moment matching inverts the binning (Sheppard)
    np.testing.assert_allclose(st.params["mean"], 0.5, atol=1e-6)
    np.testing.assert_allclose(st.params["std"], 0.6, atol=1e-6)
    path = tmp_path / "wpo.h5"
    full = wg.flow(mdp, obj, pi, scheme="wpo", t_end=1.0, dt=0.05, save_every=0.25, progress=False)
    wg.flow(mdp, obj, pi, scheme="wpo", t_end=0.5, dt=0.05, save_every=0.25, storage=path,
            progress=False)
    resumed = wg.flow(mdp, obj, None, scheme="wpo", t_end=1.0, dt=0.05, save_every=0.25,
                      storage=path, resume=True, progress=False)
    np.testing.assert_allclose(resumed.masses[-1], full.masses[-1], atol=1e-13)


@pytest.mark.parametrize("antithetic", [False, True])
def test_sampled_flow_common_random_numbers(antithetic):
    """With fixed draws the sampled flow is deterministic, and for quadratic Q its fixed point is
    the Gibbs Gaussian exactly, whatever the draws: with a = mu + sigma xi,
    dmu = k(mu - c) + (k sigma - tau/sigma) mean(xi), dsigma = (k sigma^2 - tau) mean(xi^2)/sigma
    + k (mu - c) mean(xi), both zero at mu = c, sigma^2 = tau/k."""
    k, c, tau = 2.0, 0.5, 0.2
    mdp = wg.problems.get("quadratic_bandit", n_actions=201, a_max=6.0, curvature=k, center=c)
    run = lambda: wg.flow(mdp, wg.Discounted(0.5, entropy=tau), {"mean": -1.0, "std": 2.0},  # noqa: E731
                          scheme="wpo", samples=64, seed=1, antithetic=antithetic, t_end=20.0,
                          save_every=2.0, progress=False)
    t1, t2 = run(), run()
    np.testing.assert_array_equal(t1.params["std"], t2.params["std"])
    assert t1.grad_norm2[-1] < 1e-20
    assert t1.params["mean"][-1, 0, 0] == pytest.approx(c, abs=1e-12)
    assert t1.params["std"][-1, 0, 0] == pytest.approx(np.sqrt(tau / k), rel=1e-12)
