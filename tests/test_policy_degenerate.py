"""Degenerate input to the policy constructors: actions outside the box, vanishing std."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import wgflow as wg
from wgflow import Grid, Policy


@pytest.fixture(scope="module")
def bandit():
    # box [-2, 2], four cells of width 1: the edges -2, -1, 0, 1, 2 are exact in binary
    return wg.problems.get("quadratic_bandit", n_actions=4, a_max=2.0)


@pytest.fixture(scope="module")
def lqr():
    return wg.problems.get("lqr1d", n_states=5, n_actions=9)      # actions on [-4, 4]


# ------------------------------------------------------------------------------ deterministic
@pytest.mark.parametrize("rule", ["nearest", "linear"])
def test_deterministic_refuses_actions_outside_the_box_only(lqr, rule):
    act = np.array([0.0, 1.0, 4.5, -3.0, -9.0])
    with pytest.raises(wg.ValidationError, match=r"action \[4\.5\] of state 2 .*box \[-4, 4\]"):
        Policy.deterministic(lqr, act, rule=rule)
    # the ends of the box and a rounding step beyond them (1e-13 of a width-8 box) are inside:
    # the edge cells
    pi = Policy.deterministic(lqr, np.array([-4.0, 4.0, 4.0 + 1e-13, -4.0 - 1e-13, 0.0]), rule=rule)
    np.testing.assert_array_equal(pi.greedy(), [0, 8, 8, 0, 4])
    # a periodic action axis (an angle) has no outside: 2 pi + 0.1 is the cell of 0.1
    A = Grid([(0.0, 2 * np.pi)], [8], periodic=True)
    mdp = wg.MDP.from_arrays(np.full((2 * 8, 2), 0.5), np.zeros((2, 8)), actions=A)
    pi = Policy.deterministic(mdp, np.array([2 * np.pi + 0.1, -0.1]), rule="nearest")
    np.testing.assert_array_equal(pi.greedy(), [0, 7])


def test_deterministic_unknown_rule_is_a_lookup_failure(lqr):
    with pytest.raises(wg.LookupFailure, match="'nearest'"):
        Policy.deterministic(lqr, 0.0, rule="neerest")


# ------------------------------------------------------------------------------ gaussian
def _conditioned_masses(edges, mean, std):
    """Cell probabilities of N(mean, std^2) conditioned on [edges[0], edges[-1]] (scipy; the
    upper tail's survival function for a mean below the box, where the CDF rounds to 1)."""
    if mean < edges[0]:
        p = -np.diff(norm.sf(edges, loc=mean, scale=std))
    else:
        p = np.diff(norm.cdf(edges, loc=mean, scale=std))
    return p / p.sum()


@pytest.mark.parametrize("std", [1e-160, 1e-300, 5e-324])
def test_gaussian_far_below_the_cell_width_is_the_cell_of_the_mean(bandit, std):
    edges = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    means = np.array([0.3, -1.7, 1.999, -2.0])
    for m in means:
        pi = Policy.gaussian(bandit, mean=m, std=std)
        # the limit the conditioned Gaussian reaches already at std = 1e-6 (scipy, rounding)
        np.testing.assert_allclose(pi.masses[0], _conditioned_masses(edges, m, 1e-6),
                                   rtol=0, atol=1e-15)
        np.testing.assert_array_equal(pi.masses, Policy.deterministic(bandit, m).masses)


def test_gaussian_far_below_the_cell_width_on_a_cell_edge_splits_in_halves(bandit):
    # Phi(0) = 1/2 on each side of the edge 0
    pi = Policy.gaussian(bandit, mean=0.0, std=1e-200)
    np.testing.assert_array_equal(pi.masses[0], [0.0, 0.5, 0.5, 0.0])


@pytest.mark.parametrize("mean, cell", [(-1e200, 0), (1e200, 3), (2.5, 3)])
def test_gaussian_mean_far_outside_the_box_is_the_nearest_edge_cell(bandit, mean, cell):
    # the Gaussian conditioned on the box concentrates at the box point nearest to the mean;
    # at (1e200 - 2) / 1 or 0.5 / 1e-200 standard deviations the box's probability underflows
    std = 1.0 if abs(mean) > 1e100 else 1e-200
    pi = Policy.gaussian(bandit, mean=mean, std=std)
    np.testing.assert_array_equal(pi.masses[0], np.eye(4)[cell])
    # where scipy still resolves it (10 standard deviations out) it is the same point mass
    np.testing.assert_allclose(_conditioned_masses(np.arange(-2.0, 2.5), np.sign(mean) * 2.5, 0.05),
                               np.eye(4)[cell], rtol=0, atol=1e-15)


def test_gaussian_tiny_std_per_axis_in_two_dimensions():
    mdp = wg.problems.get("lqr2d", n_states=(3, 3), n_actions=(4, 4), a_max=2.0)
    pi = Policy.gaussian(mdp, mean=(0.4, -1.5), std=(1e-250, 0.3))
    # axis 0: the cell [0, 1) of 0.4; axis 1: the conditioned N(-1.5, 0.3^2) (scipy)
    expected = np.outer(np.eye(4)[2], _conditioned_masses(np.arange(-2.0, 2.5), -1.5, 0.3)).ravel()
    np.testing.assert_allclose(pi.masses, np.broadcast_to(expected, pi.masses.shape),
                               rtol=1e-13, atol=1e-16)
