"""Tests of wgflow.MDP: constructors, conversions, dynamics discretization, off-grid evaluation,
validation of malformed input."""
import numpy as np
import pytest
import scipy.sparse as sp

import wgflow as wg
from wgflow import Grid, MDP


def dense_rows(idx, w, nS):
    out = np.zeros((idx.shape[0], nS))
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), w.ravel())
    return out


def random_dense_mdp(rng, nS=6, nA=3):
    P = rng.random((nS, nA, nS)) * (rng.random((nS, nA, nS)) < 0.6)
    P[:, :, 0] += 1e-3                       # no empty row
    P /= P.sum(axis=2, keepdims=True)
    C = rng.normal(size=(nS, nA))
    return P, C


# ------------------------------------------------------------------------------ from_arrays
def test_from_arrays_dense_and_sparse_agree(rng):
    P, C = random_dense_mdp(rng)
    nS, nA = C.shape
    m1 = MDP.from_arrays(P, C)
    m2 = MDP.from_arrays(sp.csr_matrix(P.reshape(nS * nA, nS)), C)
    m3 = MDP.from_arrays(P.reshape(nS * nA, nS), C)
    for m in (m1, m2, m3):
        assert isinstance(m.P, sp.csr_matrix) and m.P.dtype == np.float64
        assert m.P.shape == (nS * nA, nS) and m.C.shape == (nS, nA)
        assert m.n_states == nS and m.n_actions == nA
        np.testing.assert_array_equal(m.P.toarray(), P.reshape(nS * nA, nS))
        np.testing.assert_array_equal(m.C, C)
    # row s*nA + a is the law of (s, a)
    s, a = 4, 2
    np.testing.assert_array_equal(m1.P[s * nA + a].toarray()[0], P[s, a])
    Pd, Cd = m1.to_arrays()
    np.testing.assert_array_equal(Pd, P)
    np.testing.assert_array_equal(Cd, C)


def test_from_arrays_evaluation_matches_direct_linear_algebra(rng):
    P, C = random_dense_mdp(rng)
    nS, nA = C.shape
    mdp = MDP.from_arrays(P, C)
    pi = rng.random((nS, nA))
    pi /= pi.sum(axis=1, keepdims=True)
    g = 0.9
    ev = wg.evaluate(mdp, pi, wg.Discounted(gamma=g))
    P_pi = np.einsum("sa,sat->st", pi, P)
    V = np.linalg.solve(np.eye(nS) - g * P_pi, np.sum(pi * C, axis=1))
    np.testing.assert_allclose(ev.V, V, rtol=1e-12)


# ------------------------------------------------------------------------------ mdptoolbox
def test_from_mdptoolbox_forest_round_trip_and_values():
    import mdptoolbox
    import mdptoolbox.example
    with np.errstate(all="warn"):
        P, R = mdptoolbox.example.forest(S=5, r1=4, r2=2, p=0.1)
    nA, nS, _ = P.shape
    mdp = MDP.from_mdptoolbox(P, R)
    for s in range(nS):
        for a in range(nA):
            np.testing.assert_array_equal(mdp.P[s * nA + a].toarray()[0], P[a, s])
    np.testing.assert_array_equal(mdp.C, -R)
    P2, R2 = mdp.to_mdptoolbox(sparse=False)
    np.testing.assert_array_equal(P2, P)
    np.testing.assert_array_equal(R2, R)
    Ps, _ = mdp.to_mdptoolbox(sparse=True)
    assert len(Ps) == nA and all(sp.issparse(m) for m in Ps)
    np.testing.assert_array_equal(np.stack([m.toarray() for m in Ps]), P)
    # independent solver: pymdptoolbox's policy iteration maximizes rewards
    with np.errstate(all="warn"):
        pi_tb = mdptoolbox.mdp.PolicyIteration(P, R, 0.9)
        pi_tb.run()
    sol = wg.solve(mdp, wg.Discounted(gamma=0.9))
    np.testing.assert_allclose(sol.V, -np.asarray(pi_tb.V), rtol=1e-9)
    np.testing.assert_array_equal(sol.policy.greedy(), np.asarray(pi_tb.policy))


def test_from_mdptoolbox_reward_conventions():
    import mdptoolbox.example
    np.random.seed(7)   # mdptoolbox.example.rand uses the global numpy generator
    with np.errstate(all="warn"):
        P, R3 = mdptoolbox.example.rand(6, 3)          # R (A, S, S)
    nA, nS = 3, 6
    mdp = MDP.from_mdptoolbox(P, R3)
    expected = -np.einsum("ast,ast->sa", P, R3)      # expected reward sum_s' P R
    np.testing.assert_allclose(mdp.C, expected, rtol=1e-13, atol=1e-15)
    # (S,) rewards: the same for every action
    Rs = np.arange(nS, dtype=float)
    np.testing.assert_array_equal(MDP.from_mdptoolbox(P, Rs).C, -np.repeat(Rs[:, None], nA, axis=1))
    # (S, A) rewards: costs are minus rewards
    Rsa = np.arange(nS * nA, dtype=float).reshape(nS, nA)
    np.testing.assert_array_equal(MDP.from_mdptoolbox(P, Rsa).C, -Rsa)
    # sparse form (lists of CSR matrices) gives the same MDP
    Psp = [sp.csr_matrix(P[a]) for a in range(nA)]
    Rsp = [sp.csr_matrix(R3[a]) for a in range(nA)]
    m_sp = MDP.from_mdptoolbox(Psp, Rsp)
    np.testing.assert_allclose(m_sp.C, mdp.C, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(m_sp.P.toarray(), mdp.P.toarray())
    # round trip through to_mdptoolbox keeps P and the (S, A) expected rewards
    back = MDP.from_mdptoolbox(*mdp.to_mdptoolbox())
    np.testing.assert_array_equal(back.P.toarray(), mdp.P.toarray())
    np.testing.assert_array_equal(back.C, mdp.C)


def test_from_mdptoolbox_sparse_rand_example():
    import mdptoolbox.example
    np.random.seed(3)
    with np.errstate(all="warn"):
        P, R = mdptoolbox.example.rand(8, 2, is_sparse=True)
    mdp = MDP.from_mdptoolbox(P, R)
    for a in range(2):
        Pa = P[a].toarray()
        np.testing.assert_array_equal(mdp.P[np.arange(8) * 2 + a].toarray(), Pa)
        np.testing.assert_allclose(mdp.C[:, a], -(Pa * R[a].toarray()).sum(axis=1), rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------ quantecon
def test_to_quantecon_same_data_and_same_optimum():
    mdp = wg.problems.get("garnet", n_states=15, n_actions=4, seed=3)
    ddp = mdp.to_quantecon(beta=0.9)
    np.testing.assert_array_equal(np.asarray(ddp.R), -mdp.C.ravel())
    Q = ddp.Q.toarray() if sp.issparse(ddp.Q) else np.asarray(ddp.Q)
    np.testing.assert_array_equal(Q, mdp.P.toarray())
    assert ddp.beta == 0.9
    np.testing.assert_array_equal(ddp.s_indices, np.repeat(np.arange(15), 4))
    np.testing.assert_array_equal(ddp.a_indices, np.tile(np.arange(4), 15))
    res = ddp.solve(method="policy_iteration")
    sol = wg.solve(mdp, wg.Discounted(gamma=0.9))
    np.testing.assert_allclose(sol.V, -res.v, rtol=1e-10)
    np.testing.assert_array_equal(sol.policy.greedy(), res.sigma)


# ------------------------------------------------------------------------------ from_dynamics
def small_linear(noise=0.0, cutoff=6.0, n_s=21, n_a=5):
    S = Grid([(-2, 2)], [n_s])
    A = Grid([(-1, 1)], [n_a])
    return MDP.from_dynamics(S, A, drift=lambda s, a: 0.9 * s + 0.5 * a,
                             cost=lambda s, a: s[:, 0] ** 2 + 0.5 * a[:, 0] ** 2,
                             noise=noise, noise_cutoff=cutoff)


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_from_dynamics_rows_are_probability_vectors_and_csr(noise):
    mdp = small_linear(noise)
    assert isinstance(mdp.P, sp.csr_matrix)
    assert mdp.P.shape == (21 * 5, 21)
    assert np.all(mdp.P.data > 0)                # explicit zeros are dropped
    np.testing.assert_allclose(np.asarray(mdp.P.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-13)
    # costs are the cost function at (state centre, action centre), in row order s*nA + a
    s = np.repeat(mdp.states.centers, 5, axis=0)
    a = np.tile(mdp.actions.centers, (21, 1))
    np.testing.assert_allclose(mdp.C.ravel(), s[:, 0] ** 2 + 0.5 * a[:, 0] ** 2, rtol=1e-15)


def test_from_dynamics_deterministic_hand_computed_row_2d():
    S = Grid([(0, 1), (0, 1)], [5, 5])           # h = 0.2, centres 0.1, 0.3, ...
    A = Grid([(-0.1, 0.1)], [2])                 # centres -0.05, 0.05
    mdp = MDP.from_dynamics(S, A, drift=lambda s, a: s + np.column_stack([a[:, 0] + 0.11, -0.03 + 0 * a[:, 0]]),
                            cost=lambda s, a: np.zeros(len(s)))
    # state (0.3, 0.5) = cell (1, 2) = flat 7; action -0.05 -> next (0.36, 0.47):
    # x: u = 0.36/0.2 - 0.5 = 1.3 -> cells 1, 2 with 0.7, 0.3; v: u = 1.85 -> cells 1, 2 with 0.15, 0.85
    row = mdp.P[7 * 2 + 0].toarray()[0]
    expected = np.zeros(25)
    expected[[6, 7, 11, 12]] = [0.7 * 0.15, 0.7 * 0.85, 0.3 * 0.15, 0.3 * 0.85]
    np.testing.assert_allclose(row, expected, rtol=0, atol=1e-14)
    # beyond the outermost centre: all mass on the outermost cell (state (0.9, 0.1), action 0.05
    # -> (1.06, 0.07): x clamped to cell 4, v below the first centre -> cell 0)
    row = mdp.P[20 * 2 + 1].toarray()[0]
    expected = np.zeros(25)
    expected[20] = 1.0
    np.testing.assert_allclose(row, expected, rtol=0, atol=1e-15)


def test_from_dynamics_gaussian_row_is_normalized_centre_density():
    mdp = small_linear(noise=0.3, cutoff=50.0)   # window covers the grid: no truncation
    c = mdp.states.axes[0]
    s, a = 7, 3
    m = 0.9 * c[s] + 0.5 * mdp.actions.axes[0][a]
    ref = np.exp(-(c - m) ** 2 / (2 * 0.3 ** 2))
    ref /= ref.sum()
    np.testing.assert_allclose(mdp.P[s * 5 + a].toarray()[0], ref, rtol=1e-13, atol=1e-300)
    # near the edge: the mass that would leave the box stays, distributed like the in-box density
    s, a = 20, 4
    m = 0.9 * c[s] + 0.5 * mdp.actions.axes[0][a]
    ref = np.exp(-(c - m) ** 2 / (2 * 0.3 ** 2))
    ref /= ref.sum()
    np.testing.assert_allclose(mdp.P[s * 5 + a].toarray()[0], ref, rtol=1e-13, atol=1e-300)


def test_from_dynamics_gaussian_default_cutoff_close_to_untruncated():
    m6 = small_linear(noise=0.3)
    m50 = small_linear(noise=0.3, cutoff=50.0)
    np.testing.assert_allclose(m6.P.toarray(), m50.P.toarray(), rtol=0, atol=3 * np.exp(-18))
    assert m6.P.nnz < m50.P.nnz


def test_from_dynamics_pendulum_periodic_rows_wrap():
    mdp = wg.problems.get("pendulum", n_theta=12, n_omega=9, n_actions=3, noise=0.0)
    nA = 3
    np.testing.assert_allclose(np.asarray(mdp.P.sum(axis=1)).ravel(), 1.0, atol=1e-13)
    # first moment of theta (mod 2 pi) and omega of each row equals the (wrapped) drift
    model = wg.problems.model("pendulum", n_theta=12, n_omega=9, n_actions=3)
    S = mdp.states
    s = np.repeat(S.centers, nA, axis=0)
    a = np.tile(mdp.actions.centers, (S.size, 1))
    nxt = model.drift(s, a)
    P = mdp.P.toarray()
    # angle: circular mean of the 2 deposited neighbours = wrapped next angle (linear weights)
    mean_omega = P @ S.centers[:, 1]
    inside = (nxt[:, 1] >= S.axes[1][0]) & (nxt[:, 1] <= S.axes[1][-1])
    np.testing.assert_allclose(mean_omega[inside], nxt[inside, 1], atol=1e-12)
    # theta: weights along theta are linear on the circle
    th = S.axes[0]
    for r in np.nonzero(inside)[0][:40]:
        cells = np.nonzero(P[r])[0]
        thc = th[cells // 9]
        d = np.angle(np.exp(1j * (thc - nxt[r, 0])))     # signed circular distance
        assert abs(np.sum(P[r, cells] * d)) < 1e-12


# ------------------------------------------------------------------------------ off-grid evaluation
def all_pairs(mdp):
    nS, nA = mdp.n_states, mdp.n_actions
    s_idx = np.repeat(np.arange(nS), nA)
    a = np.tile(mdp.actions.centers, (nS, 1))
    return s_idx, a


@pytest.mark.parametrize("name, params", [
    ("lqr1d", dict(n_states=41, n_actions=11)),
    ("lqr1d", dict(n_states=41, n_actions=11, noise=0.0)),
    ("pendulum", dict(n_theta=10, n_omega=9, n_actions=5, noise=0.4)),
    ("mountain_car", dict(n_position=13, n_velocity=9, n_actions=5, goal="reset")),
    ("garnet", dict(n_states=12, n_actions=5)),
    ("lqr2d", dict(n_states=(7, 7), n_actions=(3, 3))),
])
def test_off_grid_evaluation_reproduces_P_and_C_at_centres(name, params):
    mdp = wg.problems.get(name, **params)
    s_idx, a = all_pairs(mdp)
    ev = mdp.evaluate_model(s_idx, a)
    np.testing.assert_allclose(dense_rows(ev.idx, ev.w, mdp.n_states), mdp.P.toarray(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(ev.cost, mdp.C.ravel(), rtol=0, atol=1e-15)
    # ModelEval.expect: E[u(s')] equals P @ u
    u = np.cos(np.arange(mdp.n_states))
    e, _ = ev.expect(u)
    np.testing.assert_allclose(e, mdp.P @ u, rtol=0, atol=1e-13)


def fd_check(mdp, s_idx, a, eps, atol_w, atol_c):
    ev = mdp.evaluate_model(s_idx, a)
    nS, da = mdp.n_states, a.shape[1]
    for d in range(da):
        e = np.zeros(da)
        e[d] = eps
        evp = mdp.evaluate_model(s_idx, a + e)
        evm = mdp.evaluate_model(s_idx, a - e)
        fd_w = (dense_rows(evp.idx, evp.w, nS) - dense_rows(evm.idx, evm.w, nS)) / (2 * eps)
        fd_c = (evp.cost - evm.cost) / (2 * eps)
        an_w = dense_rows(ev.idx, ev.dw[:, :, d], nS)
        assert np.abs(an_w).max() > 0          # the check is not vacuous
        np.testing.assert_allclose(an_w, fd_w, rtol=0, atol=atol_w)
        np.testing.assert_allclose(ev.dcost[:, d], fd_c, rtol=0, atol=atol_c)
        # u -> E[u]: the gradient from expect() agrees too
        u = np.sin(np.arange(nS) * 0.7)
        _, de = ev.expect(u)
        np.testing.assert_allclose(de[:, d], fd_w @ u, rtol=0, atol=atol_w * np.abs(u).sum())


def test_off_grid_derivatives_lqr1d_noise_match_fd(rng):
    mdp = wg.problems.get("lqr1d", n_states=41, n_actions=11, noise=0.5, noise_cutoff=40.0)
    s_idx = rng.integers(0, 41, 50)
    a = rng.uniform(-3.9, 3.9, (50, 1))
    fd_check(mdp, s_idx, a, 1e-6, 1e-7, 1e-7)


def test_off_grid_derivatives_lqr1d_default_cutoff_match_fd(rng):
    mdp = wg.problems.get("lqr1d", n_states=41, n_actions=11, noise=0.5)
    S = mdp.states
    s_idx = rng.integers(0, 41, 200)
    a = rng.uniform(-3.9, 3.9, (200, 1))
    # keep the drift away from cell edges so the truncation window is the same at a +- eps
    m = 0.9 * S.centers[s_idx, 0] + a[:, 0]
    frac = ((m + 5.0) / S.spacing[0]) % 1.0
    keep = (frac > 0.05) & (frac < 0.95)
    fd_check(mdp, s_idx[keep], a[keep], 1e-6, 1e-7, 1e-7)


def test_off_grid_derivatives_lqr2d_match_fd(rng):
    mdp = wg.problems.get("lqr2d", n_states=(9, 9), n_actions=(3, 3), noise=0.6, noise_cutoff=40.0)
    s_idx = rng.integers(0, 81, 20)
    a = rng.uniform(-2.9, 2.9, (20, 2))
    fd_check(mdp, s_idx, a, 1e-6, 1e-7, 1e-7)


def test_off_grid_derivatives_tabulated_garnet_match_fd(rng):
    mdp = wg.problems.get("garnet", n_states=15, n_actions=6, seed=4)
    A = mdp.actions
    h = A.spacing[0]
    j = rng.integers(0, 5, 40)
    a = (A.axes[0][j] + rng.uniform(0.1, 0.9, 40) * h)[:, None]     # between centres
    s_idx = rng.integers(0, 15, 40)
    fd_check(mdp, s_idx, a, 1e-6, 1e-7, 1e-7)
    # linear in the action between centres: law and cost interpolate the tables
    ev = mdp.evaluate_model(s_idx, a)
    t = (a[:, 0] - A.axes[0][j]) / h
    P = mdp.P.toarray()
    ref = (1 - t)[:, None] * P[s_idx * 6 + j] + t[:, None] * P[s_idx * 6 + j + 1]
    np.testing.assert_allclose(dense_rows(ev.idx, ev.w, 15), ref, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ev.cost, (1 - t) * mdp.C[s_idx, j] + t * mdp.C[s_idx, j + 1], atol=1e-15)


def test_off_grid_derivatives_fd_jacobian_path_match_fd(rng):
    # a model without drift_da / cost_da: the package's internal central differences
    S = Grid([(-2, 2)], [31])
    A = Grid([(-1, 1)], [7])
    mdp = MDP.from_dynamics(S, A, drift=lambda s, a: 0.8 * s + np.sin(a), noise=0.4, noise_cutoff=40.0,
                            cost=lambda s, a: np.cos(s[:, 0]) * a[:, 0] ** 3)
    s_idx = rng.integers(0, 31, 30)
    a = rng.uniform(-0.95, 0.95, (30, 1))
    ev = mdp.evaluate_model(s_idx, a)
    np.testing.assert_allclose(ev.dcost[:, 0], 3 * np.cos(S.centers[s_idx, 0]) * a[:, 0] ** 2, rtol=1e-6, atol=1e-9)
    fd_check(mdp, s_idx, a, 1e-5, 1e-6, 1e-6)


# ------------------------------------------------------------------------------ terminal states
def test_mountain_car_reset_rows():
    mdp = wg.problems.get("mountain_car", n_position=19, n_velocity=7, n_actions=5, goal="reset")
    S = mdp.states
    x, v = S.axes
    # reset law by hand: x centres in [-0.6, -0.4], v = 0 (centre 3 of 7), equal masses
    xs = np.nonzero((x >= -0.6) & (x <= -0.4))[0]
    assert abs(v[3]) < 1e-15 and xs.size >= 2
    reset = np.zeros(S.size)
    reset[xs * 7 + 3] = 1.0 / xs.size
    term = np.nonzero((S.centers[:, 0] >= 0.45) & (S.centers[:, 1] >= 0.0))[0]
    assert term.size > 0
    P = mdp.P.toarray()
    for s in term:
        for a in range(5):
            np.testing.assert_allclose(P[s * 5 + a], reset, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(mdp.C[term], 0.0)
    nonterm = np.setdiff1d(np.arange(S.size), term)
    assert np.all(mdp.C[nonterm][:, [0, 1, 3, 4]] != 0.0)     # 0.1 u^2 (or the -100 bonus) off u = 0
    # off-grid actions at a terminal state: reset law, zero cost, zero derivatives
    ev = mdp.evaluate_model(np.repeat(term[:2], 3), np.array([[-0.77], [0.1], [0.93]] * 2))
    np.testing.assert_allclose(dense_rows(ev.idx, ev.w, S.size), np.tile(reset, (6, 1)), atol=1e-15)
    np.testing.assert_array_equal(ev.cost, 0.0)
    np.testing.assert_array_equal(ev.dcost, 0.0)
    np.testing.assert_array_equal(ev.dw, 0.0)


def test_mountain_car_absorbing_rows():
    mdp = wg.problems.get("mountain_car", n_position=19, n_velocity=7, n_actions=5, goal="absorbing")
    S = mdp.states
    term = np.nonzero((S.centers[:, 0] >= 0.45) & (S.centers[:, 1] >= 0.0))[0]
    P = mdp.P.toarray()
    for s in term:
        np.testing.assert_array_equal(P[s * 5:(s + 1) * 5], np.tile(np.eye(S.size)[s], (5, 1)))
    np.testing.assert_array_equal(mdp.C[term], 0.0)
    ev = mdp.evaluate_model(term, np.full((term.size, 1), 0.37))
    np.testing.assert_array_equal(dense_rows(ev.idx, ev.w, S.size), np.eye(S.size)[term])
    np.testing.assert_array_equal(ev.cost, 0.0)


# ------------------------------------------------------------------------------ malformed input
@pytest.fixture
def good(rng):
    return random_dense_mdp(rng, nS=4, nA=3)


def raises_validation(match, func, *args, **kwargs):
    with pytest.raises(wg.ValidationError, match=match) as info:
        func(*args, **kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, wg.WgflowError)
    return info.value


def test_row_not_summing_to_one_raises_and_names_the_row(good):
    P, C = good
    P = P.copy()
    P[2, 1, 3] += 1e-9                      # 1 + 1e-9: must not be silently renormalized
    raises_validation(r"row 7 \(state 2, action 1\).*sums to", MDP.from_arrays, P, C)
    raises_validation(r"state 2, action 1", MDP.from_arrays, sp.csr_matrix(P.reshape(12, 4)), C)
    P[2, 1, 3] -= 2e-9
    raises_validation(r"state 2, action 1", MDP.from_arrays, P, C)


def test_row_within_tolerance_is_accepted_unchanged(good):
    P, C = good
    P = P.copy()
    P[2, 1, 3] += 5e-11
    mdp = MDP.from_arrays(P, C)
    np.testing.assert_array_equal(mdp.P.toarray(), P.reshape(12, 4))     # not renormalized


def test_negative_probability_raises(good):
    P, C = good
    P = P.copy()
    P[1, 2] = [0.6, -0.1, 0.3, 0.2]
    raises_validation(r"negative.*state 1, action 2", MDP.from_arrays, P, C)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_P_raises(good, bad):
    P, C = good
    P = P.copy()
    P[3, 0, 1] = bad
    raises_validation(r"NaN or inf.*state 3, action 0.*column 1", MDP.from_arrays, P, C)
    Ps = sp.csr_matrix(good[0].reshape(12, 4))
    Ps.data[5] = bad
    r = int(np.searchsorted(Ps.indptr, 5, side="right") - 1)
    raises_validation(rf"NaN or inf.*row {r}", MDP.from_arrays, Ps, C)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_C_raises(good, bad):
    P, C = good
    C = C.copy()
    C[2, 1] = bad
    raises_validation(r"C contains NaN or inf at state 2, action 1", MDP.from_arrays, P, C)


def test_shape_mismatches_raise(good):
    P, C = good
    raises_validation(r"\(S, A, S\)", MDP.from_arrays, P[:, :2], C)
    raises_validation(r"shape", MDP.from_arrays, P.reshape(12, 4)[:11], C)
    raises_validation(r"shape", MDP.from_arrays, P, C[:, :2])
    raises_validation(r"\(S, A\)", MDP.from_arrays, P, C.ravel())
    raises_validation(r"shape", MDP.from_arrays, P.reshape(12, 4)[:, :3], C)
    raises_validation(r"sparse", MDP, P.reshape(12, 4), C)           # MDP() takes sparse only
    raises_validation(r"\(A, S, S\)", MDP.from_mdptoolbox, np.ones((2, 3, 4)) / 4, np.zeros((3, 2)))
    raises_validation(r"R must be", MDP.from_mdptoolbox, np.ones((2, 3, 3)) / 3, np.zeros((2, 3)))


def test_grid_size_mismatch_raises(good):
    P, C = good
    raises_validation(r"states grid has 5 cells but P has 4", MDP.from_arrays, P, C,
                      states=Grid([(0, 1)], [5]))
    raises_validation(r"actions grid has 2 cells but C has 3", MDP.from_arrays, P, C,
                      actions=Grid([(0, 1)], [2]))


def test_missing_action_grid_for_geometric_calls(good):
    P, C = good
    mdp = MDP.from_arrays(P, C)                 # garnet-like, no action coordinates
    raises_validation(r"Policy.gaussian needs an action grid", wg.Policy.gaussian, mdp, 0.5, 0.1)
    raises_validation(r"action grid", mdp.evaluate_model, [0], [[0.5]])
    raises_validation(r"action grid", wg.Policy.deterministic, mdp, 0.5)
    pi = wg.Policy.uniform(mdp)
    with pytest.raises(wg.ValidationError, match="density needs an action grid"):
        pi.density
    raises_validation(r"action grid", pi.entropy)


def test_bad_noise_and_reset_raise():
    S, A = Grid([(0, 1)], [5]), Grid([(0, 1)], [2])
    f = lambda s, a: s
    c = lambda s, a: s[:, 0]
    raises_validation(r"noise", MDP.from_dynamics, S, A, f, c, noise=-0.1)
    raises_validation(r"noise", MDP.from_dynamics, S, A, f, c, noise=np.nan)
    raises_validation(r"reset sums to", MDP.from_dynamics, S, A, f, c, terminal=lambda s: s[:, 0] > 0.8,
                      reset=np.full(5, 0.2 + 1e-9))
    raises_validation(r"reset has a negative", MDP.from_dynamics, S, A, f, c,
                      terminal=lambda s: s[:, 0] > 0.8, reset=np.array([0.5, 0.6, -0.1, 0, 0]))


def test_dynamics_returning_nan_raises_with_the_state():
    S, A = Grid([(0, 1)], [5]), Grid([(0, 1)], [2])
    raises_validation(r"drift returned NaN/inf at state", MDP.from_dynamics, S, A,
                      lambda s, a: np.where(s > 0.6, np.nan, s), lambda s, a: s[:, 0])
    raises_validation(r"cost returned NaN/inf at state", MDP.from_dynamics, S, A,
                      lambda s, a: s, lambda s, a: np.where(s[:, 0] > 0.6, np.inf, 0.0))
    raises_validation(r"cost\(s, a\) must return shape", MDP.from_dynamics, S, A,
                      lambda s, a: s, lambda s, a: np.zeros((len(s), 2)))


def test_mdp_does_not_alias_caller_arrays(good):
    P, C = good
    C = C.copy()
    Ps = sp.csr_matrix(P.reshape(12, 4))
    mdp = MDP.from_arrays(Ps, C)
    C[0, 0] = np.nan
    Ps.data[0] = -1.0
    assert np.all(np.isfinite(mdp.C))
    assert np.all(mdp.P.data >= 0)


def test_chunked_assembly_equals_one_shot_evaluation():
    # default mountain car: 3721 x 21 = 78141 pairs, assembled in several chunks, with terminal
    # (reset) rows whose stencil is wider than the others
    mdp = wg.problems.get("mountain_car", goal="reset")
    nS, nA = mdp.n_states, mdp.n_actions
    assert nS * nA > 2 * (1 << 15)
    s_idx, a = all_pairs(mdp)
    ev = mdp.evaluate_model(s_idx, a)
    rows = np.repeat(np.arange(nS * nA), ev.idx.shape[1])
    ref = sp.csr_matrix((ev.w.ravel(), (rows, ev.idx.ravel())), shape=(nS * nA, nS))
    diff = (mdp.P - ref).tocsr()
    assert diff.nnz == 0 or np.abs(diff.data).max() < 1e-15
    np.testing.assert_array_equal(ev.cost, mdp.C.ravel())


def test_evaluate_model_rejects_bad_actions():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=11)
    with pytest.raises(wg.ValidationError, match="row 1"):
        mdp.evaluate_model([0, 1], [[0.3], [np.nan]])
    with pytest.raises(wg.ValidationError, match=r"\(n, 1\)"):
        mdp.evaluate_model([0], np.zeros((1, 2)))


@pytest.mark.parametrize("name", ["lqr1d", "garnet"])
@pytest.mark.parametrize("bad", [-1, 10**3])
def test_evaluate_model_rejects_out_of_range_states(name, bad):
    mdp = wg.problems.get(name, n_states=21, n_actions=11)
    with pytest.raises(wg.ValidationError, match="state"):
        mdp.evaluate_model([bad], [[0.1]])


@pytest.mark.parametrize("case", ["noise", "drift"])
def test_dynamics_shape_mismatch_raises_validation_error(case):
    S, A = Grid([(0, 1), (0, 1)], [3, 3]), Grid([(0, 1)], [2])
    kw = dict(noise=[0.1, 0.2, 0.3]) if case == "noise" else dict()
    drift = (lambda s, a: s) if case == "noise" else (lambda s, a: s[:, :1])
    with pytest.raises(wg.ValidationError):
        MDP.from_dynamics(S, A, drift, lambda s, a: s[:, 0], **kw)
