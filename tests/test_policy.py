"""Tests of wgflow.Policy: constructors, masses vs closed forms, density, entropy, validation."""
import numpy as np
import pytest
from scipy import stats

import wgflow as wg
from wgflow import Grid, Policy
from wgflow.errors import ValidationError


@pytest.fixture(scope="module")
def bandit():
    return wg.problems.get("quadratic_bandit", n_actions=81, a_max=4.0)   # h = 0.1


@pytest.fixture(scope="module")
def lqr():
    return wg.problems.get("lqr1d", n_states=21, n_actions=41)


def cdf_masses(edges, mu, sd):
    """Exact cell probabilities of N(mu, sd^2) conditioned on [edges[0], edges[-1]] (upper tail
    through the survival function, so no cancellation)."""
    z = (edges - mu) / sd
    lower = np.diff(stats.norm.cdf(z))
    upper = -np.diff(stats.norm.sf(z))
    p = np.where(z[:-1] >= 0, upper, lower)
    return p / p.sum()


# ------------------------------------------------------------------------------ uniform
def test_uniform(lqr):
    pi = Policy.uniform(lqr)
    assert pi.masses.shape == (21, 41)
    np.testing.assert_array_equal(pi.masses, 1.0 / 41)
    np.testing.assert_allclose(pi.masses.sum(axis=1), 1.0, atol=1e-14)
    assert not pi.masses.flags.writeable       # read-only view


def test_uniform_entropy_is_log_box_volume(lqr):
    pi = Policy.uniform(lqr)
    np.testing.assert_allclose(pi.entropy(), np.log(8.0), rtol=1e-14)     # box [-4, 4]
    mdp2 = wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(4, 6), a_max=1.5)
    np.testing.assert_allclose(Policy.uniform(mdp2).entropy(), np.log(3.0 * 3.0), rtol=1e-14)


def test_density_is_masses_over_cell_volume(lqr, rng):
    m = rng.random((21, 41))
    m /= m.sum(axis=1, keepdims=True)
    pi = Policy.from_masses(lqr, m)
    np.testing.assert_array_equal(pi.masses, m)
    np.testing.assert_allclose(pi.density, m * 41 / 8.0, rtol=1e-15)     # cell volume 8 / 41
    np.testing.assert_allclose(pi.density, m / lqr.actions.cell_volume, rtol=0, atol=0)
    # the density integrates to one over the box
    np.testing.assert_allclose(pi.density.sum(axis=1) * lqr.actions.cell_volume, 1.0, atol=1e-14)


def test_entropy_closed_form_for_a_given_policy(lqr, rng):
    m = rng.random((21, 41)) * (rng.random((21, 41)) < 0.5)
    m[:, 0] += 0.01
    m /= m.sum(axis=1, keepdims=True)
    pi = Policy.from_masses(lqr, m)
    vol = lqr.actions.cell_volume
    ref = np.array([-sum(p * np.log(p / vol) for p in row if p > 0) for row in m])
    np.testing.assert_allclose(pi.entropy(), ref, rtol=1e-13)


# ------------------------------------------------------------------------------ gaussian
def test_gaussian_masses_are_conditioned_cdf_differences(lqr):
    A = lqr.actions
    edges = -4.0 + np.arange(42) * A.spacing[0]
    x = lqr.states.centers[:, 0]
    mean = lambda s: -0.8 * s[:, 0]
    std = 0.3 + 0.05 * np.abs(x)
    pi = Policy.gaussian(lqr, mean=mean, std=std)
    for s in range(21):
        # atol: cell probabilities are compared with scipy's in absolute terms
        np.testing.assert_allclose(pi.masses[s], cdf_masses(edges, -0.8 * x[s], std[s]),
                                   rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(pi.masses.sum(axis=1), 1.0, atol=1e-14)


def test_gaussian_far_out_mean_is_conditioned_on_the_box(lqr):
    # a mean outside the box: the law is the Gaussian conditioned on the box (not renormalized
    # atoms of the untruncated density)
    pi = Policy.gaussian(lqr, mean=5.0, std=1.0)
    edges = -4.0 + np.arange(42) * lqr.actions.spacing[0]
    np.testing.assert_allclose(pi.masses[0], cdf_masses(edges, 5.0, 1.0), rtol=1e-8, atol=1e-15)
    assert np.argmax(pi.masses[0]) == 40


def test_gaussian_2d_is_product_of_axes():
    mdp = wg.problems.get("lqr2d", n_states=(5, 5), n_actions=(7, 9), a_max=3.0)
    A = mdp.actions
    mu, sd = np.array([0.4, -1.1]), np.array([0.7, 1.3])
    pi = Policy.gaussian(mdp, mean=mu, std=sd)
    e0 = -3.0 + np.arange(8) * A.spacing[0]
    e1 = -3.0 + np.arange(10) * A.spacing[1]
    ref = np.outer(cdf_masses(e0, mu[0], sd[0]), cdf_masses(e1, mu[1], sd[1])).ravel()   # C order
    for s in (0, 12, 24):
        np.testing.assert_allclose(pi.masses[s], ref, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("sd", [0.15, 0.3, 0.5])
def test_gaussian_interior_mean_and_variance(bandit, sd):
    # well inside the box: atoms' mean = mu, atoms' variance = sd^2 + h^2/12 (Sheppard),
    # both up to exponentially small aliasing terms; the piecewise-constant law adds h^2/12 more
    h = bandit.actions.spacing[0]
    pi = Policy.gaussian(bandit, mean=0.23, std=sd)
    np.testing.assert_allclose(pi.mean(), 0.23, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pi.variance(piecewise_constant=False), sd ** 2 + h ** 2 / 12, rtol=1e-9)
    np.testing.assert_allclose(pi.variance(), sd ** 2 + h ** 2 / 6, rtol=1e-9)


def test_gaussian_truncated_mean_and_variance(bandit):
    # a wide Gaussian is cut by the box: compare with the truncated normal; the grid error of the
    # piecewise-constant law is O(h^2) (midpoint rule on each cell)
    h = bandit.actions.spacing[0]
    mu, sd = 1.5, 2.0
    pi = Policy.gaussian(bandit, mean=mu, std=sd)
    tn = stats.truncnorm((-4 - mu) / sd, (4 - mu) / sd, loc=mu, scale=sd)
    np.testing.assert_allclose(pi.mean(), tn.mean(), rtol=0, atol=h ** 2)
    np.testing.assert_allclose(pi.variance(), tn.var(), rtol=0, atol=h ** 2)
    assert abs(tn.mean() - mu) > 0.3           # the truncation matters here


def test_gaussian_bad_std_and_shapes(lqr):
    with pytest.raises(wg.ValidationError, match="std must be > 0"):
        Policy.gaussian(lqr, mean=0.0, std=0.0)
    with pytest.raises(wg.ValidationError, match="mean"):
        Policy.gaussian(lqr, mean=np.zeros(7), std=1.0)
    with pytest.raises(wg.ValidationError, match="mean contains NaN"):
        Policy.gaussian(lqr, mean=np.nan, std=1.0)


# ------------------------------------------------------------------------------ deterministic
def test_deterministic_nearest_is_one_hot(lqr, rng):
    act = rng.uniform(-4, 4, 21)         # the action box (outside it raises)
    act[:2] = [-4.0, 4.0]                  # its ends: the first and last cells
    pi = Policy.deterministic(lqr, act, rule="nearest")
    assert set(np.unique(pi.masses)) == {0.0, 1.0}
    np.testing.assert_array_equal(pi.masses.sum(axis=1), 1.0)
    h = lqr.actions.spacing[0]
    expected = np.minimum(np.floor((act + 4.0) / h), 40).astype(int)
    np.testing.assert_array_equal(pi.greedy(), expected)


def test_deterministic_linear_keeps_the_mean(lqr, rng):
    c = lqr.actions.axes[0]
    act = rng.uniform(c[0], c[-1], 21)
    pi = Policy.deterministic(lqr, act, rule="linear")
    np.testing.assert_allclose(pi.mean()[:, 0], act, rtol=0, atol=1e-13)
    assert np.all(np.count_nonzero(pi.masses, axis=1) <= 2)
    np.testing.assert_allclose(pi.masses.sum(axis=1), 1.0, atol=1e-15)


def test_deterministic_index_rule(lqr):
    idx = np.arange(21) % 41
    pi = Policy.deterministic(lqr, idx, rule="index")
    np.testing.assert_array_equal(pi.masses, np.eye(41)[idx])
    with pytest.raises(wg.ValidationError, match="state 3"):
        bad = idx.copy()
        bad[3] = 41
        Policy.deterministic(lqr, bad, rule="index")
    with pytest.raises(wg.ValidationError, match="rule"):
        Policy.deterministic(lqr, 0.0, rule="cubic")


# ------------------------------------------------------------------------------ bad masses
def good_masses(rng, nS=21, nA=41):
    m = rng.random((nS, nA))
    return m / m.sum(axis=1, keepdims=True)


def test_from_masses_rows_off_by_1e9_raise_naming_the_state(lqr, rng):
    m = good_masses(rng)
    m[5, 3] += 1e-9
    with pytest.raises(wg.ValidationError, match=r"state 5 sum to") as info:
        Policy.from_masses(lqr, m)
    assert isinstance(info.value, ValueError)
    m[5, 3] -= 2e-9
    with pytest.raises(wg.ValidationError, match=r"state 5"):
        Policy.from_masses(lqr, m)


def test_from_masses_negative_raises(lqr, rng):
    m = good_masses(rng)
    m[7, 2] -= 0.5
    m[7, 3] += 0.5
    with pytest.raises(wg.ValidationError, match=r"negative mass .* state 7, action 2"):
        Policy.from_masses(lqr, m)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_from_masses_nonfinite_raises(lqr, rng, bad):
    m = good_masses(rng)
    m[11, 9] = bad
    with pytest.raises(wg.ValidationError, match=r"NaN or inf at state 11, action 9"):
        Policy.from_masses(lqr, m)


def test_from_masses_wrong_shape_raises(lqr, rng):
    with pytest.raises(wg.ValidationError, match="rows but the MDP has 21 states"):
        Policy.from_masses(lqr, good_masses(rng, 20, 41))
    with pytest.raises(wg.ValidationError, match="columns but the MDP has 41 actions"):
        Policy.from_masses(lqr, good_masses(rng, 21, 40))
    with pytest.raises(wg.ValidationError, match="2-D"):
        Policy.from_masses(lqr, np.full(41, 1 / 41))


def test_policy_constructor_validates_and_checks_grids(rng):
    with pytest.raises(wg.ValidationError, match="state 0"):
        Policy(np.array([[0.5, 0.6]]))
    with pytest.raises(wg.ValidationError, match="action grid has 3 cells"):
        Policy(np.array([[0.5, 0.5]]), actions=Grid([(0, 1)], [3]))
    pi = Policy(np.array([[0.25, 0.75]]), actions=Grid([(0, 1)], [2]))
    assert pi == pi.copy()
    np.testing.assert_allclose(pi.mean(), [[0.25 * 0.25 + 0.75 * 0.75]], atol=1e-15)


def test_from_masses_leaves_the_callers_array_writable(lqr, rng):
    m = good_masses(rng)
    pi = Policy.from_masses(lqr, m)
    m[0, 0] += 0.0                 # raises "assignment destination is read-only"
    assert not np.shares_memory(m, pi.masses)


def test_gaussian_masses_are_mirror_symmetric(bandit):
    # on the symmetric box [-4, 4], N(mu, sd) and N(-mu, sd) give mirrored masses
    for mu, sd in [(1.0, 0.3), (3.0, 0.2), (4.5, 0.3)]:
        p = Policy.gaussian(bandit, mean=mu, std=sd).masses[0]
        q = Policy.gaussian(bandit, mean=-mu, std=sd).masses[0][::-1]
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=0)
    Policy.gaussian(bandit, mean=-5.0, std=0.1)          # mirror of mean=+5, which works


def test_gibbs_masses_rejects_a_bad_entropy_or_a_state_without_finite_q():
    Q = np.array([[0.0, 1.0], [2.0, 0.5]])
    for tau in (0.0, -1.0, np.nan, np.inf, "0.1"):
        with pytest.raises(ValidationError, match="tau must be a finite number > 0"):
            wg.policy.gibbs_masses(Q, tau)
    for bad in (np.nan, np.inf):
        Qb = Q.copy()
        Qb[1] = bad
        with pytest.raises(ValidationError, match="state 1 has no finite minimum"):
            wg.policy.gibbs_masses(Qb, 0.1)
    # a NaN next to a finite minimum is no error of the map's input check; the finite rows
    # are the Gibbs law (closed form for two actions)
    np.testing.assert_allclose(wg.policy.gibbs_masses(Q, 0.5)[0],
                               [1 / (1 + np.exp(-2.0)), np.exp(-2.0) / (1 + np.exp(-2.0))])
