"""Baselines: ``pmd`` (KL mirror descent / NPG with entropy) and ``pg`` (softmax policy gradient)."""
import numpy as np
import pytest

import wgflow as wg
import wgflow.flows.baselines  # noqa: F401  (registration)
from wgflow.errors import ValidationError
from wgflow.flows.baselines import PG, PMD, pmd_update, softmax_pg_gradient
from wgflow.policy import gibbs_masses


def _random_policy(mdp, rng, floor=0.05):
    m = rng.random((mdp.n_states, mdp.n_actions)) + floor
    return wg.Policy.from_masses(mdp, m / m.sum(axis=1, keepdims=True))


def _softmax(theta):
    e = np.exp(theta - theta.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


GARNET = dict(n_states=12, n_actions=4, branching=3, seed=7)


# ------------------------------------------------------------------ pmd
@pytest.mark.parametrize("case", ["lqr1d", "garnet", "garnet-average"])
def test_pmd_fixed_point_is_solve(case):
    if case == "lqr1d":
        mdp, obj = wg.problems.get("lqr1d"), wg.Discounted(0.9, entropy=0.1)
    elif case == "garnet":
        mdp, obj = wg.problems.get("garnet", **GARNET), wg.Discounted(0.9, entropy=0.2)
    else:
        mdp, obj = wg.problems.get("garnet", **GARNET), wg.Average(entropy=0.2)
    sol = wg.solve(mdp, obj)
    h = 1.0 / obj.entropy                                   # the default step
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pmd", t_end=30 * h, save_every=h,
                 progress=False)
    assert tr.diagnostics["steps"] == 30
    assert np.max(np.abs(tr.masses[-1] - sol.policy.masses)) < 1e-6
    assert abs(tr.J[-1] - sol.J) < 1e-10 * max(1.0, abs(sol.J))
    assert tr.grad_norm2[-1] < 1e-16


def test_pmd_steps_to_optimum_lqr1d():
    """With the default step h = 1/tau, J - J* < 1e-8 after 13 steps on lqr1d (gamma 0.9, tau 0.1)."""
    mdp, obj = wg.problems.get("lqr1d"), wg.Discounted(0.9, entropy=0.1)
    sol = wg.solve(mdp, obj)
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pmd", t_end=200.0, save_every=10.0,
                 progress=False)
    gap = tr.J - sol.J
    assert gap.min() >= -1e-10
    assert int(np.argmax(gap < 1e-8)) == 13


def test_pmd_large_step_is_soft_policy_iteration():
    rng = np.random.default_rng(0)
    mdp = wg.problems.get("garnet", **GARNET)
    pi = _random_policy(mdp, rng)
    for tau in (0.05, 0.5):
        Q = wg.evaluate(mdp, pi, wg.Discounted(0.9, entropy=tau)).Q
        gibbs = gibbs_masses(Q, tau)
        np.testing.assert_allclose(pmd_update(pi.masses, Q, tau, np.inf), gibbs, atol=1e-15)
        # h -> inf: pi^(1/(1+h tau)) -> 1, error O(1/h)
        err = [np.max(np.abs(pmd_update(pi.masses, Q, tau, h) - gibbs)) for h in (1e6, 1e8, 1e10)]
        assert err[-1] < 1e-9
        assert err[0] / err[1] == pytest.approx(100, rel=0.05)
        # through the scheme
        sch = PMD(mdp, wg.Discounted(0.9, entropy=tau))
        st = sch.step(sch.init(pi), 1e12)
        np.testing.assert_allclose(st.masses, gibbs, atol=1e-10)
        assert st.t == 1e12


def test_pmd_no_entropy_large_step_is_greedy():
    mdp = wg.problems.get("garnet", **GARNET)
    Q = wg.evaluate(mdp, wg.Policy.uniform(mdp), wg.Discounted(0.9)).Q
    m = pmd_update(np.full(Q.shape, 1.0 / Q.shape[1]), Q, 0.0, np.inf)
    np.testing.assert_array_equal(np.argmax(m, axis=1), np.argmin(Q, axis=1))


@pytest.mark.parametrize("tau", [0.0, 0.3])
@pytest.mark.parametrize("h", [0.1, 2.0, 50.0])
def test_pmd_is_monotone(tau, h):
    """Exact-Q PMD improves every state's value at every step, for every step size."""
    rng = np.random.default_rng(1)
    mdp = wg.problems.get("garnet", **GARNET)
    obj = wg.Discounted(0.9, entropy=tau)
    sch = PMD(mdp, obj)
    st = sch.init(_random_policy(mdp, rng))
    for _ in range(15):
        new = sch.step(st, h)
        assert np.all(new.evaluation.V <= st.evaluation.V + 1e-12)
        assert new.J <= st.J + 1e-12
        np.testing.assert_allclose(new.masses.sum(axis=1), 1.0, atol=1e-14)
        st = new


def test_pmd_monotone_average_cost_and_lqr():
    for mdp, obj in [(wg.problems.get("lqr1d", n_states=41, n_actions=31), wg.Discounted(0.95, entropy=0.05)),
                     (wg.problems.get("garnet", **GARNET), wg.Average(entropy=0.1))]:
        tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pmd", t_end=2.0, dt=0.1, save_every=0.1,
                     progress=False)
        assert np.all(np.diff(tr.J) <= 1e-12 * abs(tr.J[0]))


@pytest.mark.parametrize("objective", [wg.Discounted(0.9, entropy=0.3), wg.Average(entropy=0.3)],
                         ids=["discounted", "average"])
def test_pmd_grad_norm2_is_the_dissipation(objective):
    """For small h, (J(pi+) - J)/h -> -kappa * grad_norm2 (Fisher--Rao norm of the mirror direction)."""
    rng = np.random.default_rng(2)
    mdp = wg.problems.get("garnet", **GARNET)
    sch = PMD(mdp, objective)
    st = sch.init(_random_policy(mdp, rng))
    kappa = sch.evaluate.dissipation_factor
    slopes = [(sch.step(st, h).J - st.J) / h for h in (1e-4, 5e-5)]
    target = -kappa * sch.grad_norm2(st)
    assert slopes[-1] == pytest.approx(target, rel=1e-3)
    assert abs(slopes[1] - target) < 0.6 * abs(slopes[0] - target)     # first order in h


def test_pmd_keeps_support_and_validates():
    mdp = wg.problems.get("garnet", **GARNET)
    m = np.full((mdp.n_states, mdp.n_actions), 1.0 / (mdp.n_actions - 1))
    m[:, 0] = 0.0
    tr = wg.flow(mdp, wg.Discounted(0.9, entropy=0.2), m, scheme="pmd", t_end=10.0, progress=False)
    assert np.all(tr.masses[:, :, 0] == 0.0)
    assert np.isfinite(tr.grad_norm2).all()
    with pytest.raises(ValidationError, match="unknown option"):
        PMD(mdp, wg.Discounted(0.9), cfl=1.0)
    with pytest.raises(ValidationError):
        PMD(mdp, wg.Discounted(0.9), step=0.0)
    with pytest.raises(ValidationError):
        PMD(mdp, wg.Discounted(0.9)).init(np.ones((mdp.n_states, mdp.n_actions)))


def test_pmd_at_a_small_entropy_keeps_the_masses_that_underflow():
    # pendulum 15^2 x 9, gamma 0.99, entropy 1e-3: exp(-hQ/(1 + h tau)) spans thousands of
    # orders of magnitude, so most masses underflow to zero along the way. The scheme carries
    # their logs (finite) and reaches the optimum, as the exact iteration does; the same
    # iteration on the masses loses those actions for good and stalls far from it
    mdp = wg.problems.get("pendulum", n_theta=15, n_omega=15, n_actions=9)
    obj = wg.Discounted(0.99, entropy=1e-3)
    sol = wg.solve(mdp, obj, method="policy_iteration")                 # exact to rounding
    h = 1.0 / obj.entropy
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pmd", t_end=20 * h, save_every=h,
                 progress=False)
    logm = tr.params["log_masses"]
    assert np.all(np.isfinite(logm))
    assert np.mean(tr.masses[-1] == 0.0) > 0.3                     # underflowed, kept as logs
    # the masses are the logs' exponentials: rounding of log pi amplified by |log pi| <= 750
    np.testing.assert_allclose(tr.masses[-1], np.exp(logm[-1]), rtol=750 * 4e-16, atol=0)
    # J* exact to rounding (|V| ~ 100): the gap is the iteration's, 1e-9 its linear rate's
    assert abs(tr.J[-1] - sol.J) < 1e-9
    # log pi contracts to -Q/tau by 1/(1 + h tau) = 1/2 a step (with Q still moving): 2^-20 of
    # log ratios of order 10 after 20 steps
    np.testing.assert_allclose(tr.masses[-1], sol.policy.masses, rtol=0, atol=1e-4)
    m = wg.Policy.uniform(mdp).masses
    for _ in range(20):
        m = pmd_update(m, wg.evaluate(mdp, wg.Policy.from_masses(mdp, m), obj).Q, obj.entropy, h)
    assert wg.evaluate(mdp, wg.Policy.from_masses(mdp, m), obj).J - sol.J > 1e-3


def test_pmd_resumes_with_initial_zeros_and_underflowed_masses(tmp_path):
    # the log masses (-inf at the initial zeros, finite where masses underflowed) are the
    # restart data: interrupted and resumed, the run's file equals the uninterrupted run's
    from wgflow.flows import CallbackTracker
    mdp = wg.problems.get("pendulum", n_theta=15, n_omega=15, n_actions=9)
    obj = wg.Discounted(0.99, entropy=1e-3)
    m = np.full((mdp.n_states, mdp.n_actions), 1.0 / (mdp.n_actions - 1))
    m[:, 4] = 0.0
    kw = dict(scheme="pmd", t_end=8e3, save_every=1e3, progress=False)
    ref = wg.flow(mdp, obj, m, storage=tmp_path / "ref.h5", **kw)
    assert np.all(ref.params["support"][:, :, 4] == 0) and np.all(
        np.delete(ref.params["support"], 4, axis=2) == 1)
    under = (ref.masses[-1] == 0.0) & (ref.params["support"][-1] == 1)
    assert np.any(under)                                   # masses that underflowed: their logs
    assert np.all(ref.params["log_masses"][-1][under] < -700.0)
    assert np.all(ref.params["log_masses"][:, :, 4] == 0.0)

    def boom(state, context):
        if state.t > 4.5e3:
            raise KeyboardInterrupt

    path = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, m, storage=path, trackers=[CallbackTracker(boom, interval=0.0)], **kw)
    wg.flow(mdp, obj, None, storage=path, resume=True, **kw)
    a, b = wg.Trajectory.from_hdf5(tmp_path / "ref.h5"), wg.Trajectory.from_hdf5(path)
    for x, y in ((a.times, b.times), (a.J, b.J), (a.masses, b.masses),
                 (a.params["log_masses"], b.params["log_masses"]),
                 (a.params["support"], b.params["support"])):
        np.testing.assert_array_equal(x, y)


def test_pmd_rejects_a_frame_with_bad_log_masses():
    mdp = wg.problems.get("garnet", **GARNET)
    sch = PMD(mdp, wg.Discounted(0.9, entropy=0.2))
    pi = wg.Policy.uniform(mdp)
    good = {"log_masses": np.log(pi.masses), "support": np.ones(pi.masses.shape, np.uint8)}
    zero_row = good["support"].copy()
    zero_row[3] = 0
    for bad, match in (({"log_masses": good["log_masses"][:, :2]}, "log_masses must be an array"),
                       ({"support": good["support"][:2]}, "support must be an array"),
                       ({"log_masses": np.full(pi.masses.shape, -np.inf)}, "finite, got -inf"),
                       ({"support": 2 * good["support"]}, "0 or 1"),
                       ({"support": zero_row}, "support of state 3 is empty")):
        with pytest.raises(ValidationError, match=match):
            sch.init_from_frame(pi, {**good, **bad}, 0.0)
    with pytest.raises(ValidationError, match="shape"):
        sch.init_from_frame(pi, {}, 0.0)
    st = sch.init_from_frame(pi, good, 0.0)
    np.testing.assert_array_equal(st.masses, pi.masses)


# ------------------------------------------------------------------ pg
@pytest.mark.parametrize("objective", [wg.Discounted(0.8, entropy=0.4), wg.Discounted(0.8),
                                       wg.Average(entropy=0.3), wg.Average()],
                         ids=["discounted-entropy", "discounted", "average-entropy", "average"])
def test_pg_gradient_matches_finite_differences(objective, rng):
    mdp = wg.problems.get("garnet", n_states=6, n_actions=3, branching=3, seed=2)
    theta = rng.standard_normal((6, 3))
    sch = PG(mdp, objective)
    st = sch.init({"logits": theta})
    G = sch.gradient(st)
    eps = 1e-5
    fd = np.zeros_like(theta)
    for i in range(theta.shape[0]):
        for j in range(theta.shape[1]):
            tp, tm = theta.copy(), theta.copy()
            tp[i, j] += eps
            tm[i, j] -= eps
            fd[i, j] = (wg.evaluate(mdp, _softmax(tp), objective).J
                        - wg.evaluate(mdp, _softmax(tm), objective).J) / (2 * eps)
    assert np.max(np.abs(fd - G)) < 1e-6 * np.max(np.abs(G))
    assert sch.grad_norm2(st) == pytest.approx(np.sum(fd ** 2), rel=1e-6)
    # the formula itself
    ev = st.evaluation
    np.testing.assert_array_equal(G, softmax_pg_gradient(st.masses, ev.Q, ev.weights, objective.entropy,
                                                         sch.evaluate.dissipation_factor,
                                                         mdp.actions.cell_volume))


def test_pg_fixed_point_is_solve():
    mdp = wg.problems.get("garnet", n_states=6, n_actions=3, branching=3, seed=2)
    obj = wg.Discounted(0.8, entropy=0.5)
    sol = wg.solve(mdp, obj)
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pg", t_end=400.0, save_every=50.0,
                 progress=False)
    assert np.max(np.abs(tr.masses[-1] - sol.policy.masses)) < 1e-6
    # J* is a minimum, so tr.J[-1] >= sol.J up to the rounding of two exact evaluations:
    # a few ulps of |J| amplified by the condition 1/(1-gamma) of I - gamma P_pi
    rounding = 64 * np.finfo(float).eps * abs(sol.J) / (1 - obj.gamma)
    assert -rounding <= tr.J[-1] - sol.J < 1e-11
    assert np.all(np.diff(tr.J) <= 1e-13 * abs(tr.J[0]))
    # logits stay centred (the gradient sums to 0 per state)
    np.testing.assert_allclose(tr.params["logits"][-1].sum(axis=1), 0.0, atol=1e-10)


def test_pg_fixed_step_and_validation():
    mdp = wg.problems.get("garnet", n_states=6, n_actions=3, branching=3, seed=2)
    obj = wg.Discounted(0.8, entropy=0.5)
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), scheme="pg", t_end=1.0, dt=0.25, save_every=0.25,
                 progress=False)
    assert tr.diagnostics["steps"] == 4 and tr.params["logits"].shape == (5, 6, 3)
    m = np.full((6, 3), 0.5)
    m[:, 2] = 0.0
    with pytest.raises(ValidationError, match="full support"):
        PG(mdp, obj).init(m)
    with pytest.raises(ValidationError, match="unknown option"):
        PG(mdp, obj, step=1.0)
    with pytest.raises(ValidationError):
        PG(mdp, obj, cfl=0.0)
    with pytest.raises(ValidationError):
        PG(mdp, obj).init({"logits": np.zeros((5, 3))})
