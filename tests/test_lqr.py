"""Soft LQR on a grid against its closed forms (derivation in docs/lqr.md).

For x' = A x + B a + sigma xi with cost q x^2 + r a^2 and entropy tau, the soft-optimal policy is
Gaussian: mean -K x and variance tau / (2 M), M = r + gamma p B^2, where p solves the discounted
Riccati equation (gamma = 1 for the average cost). On the grid these hold to exponentially small
(Poisson-summation) error in the interior of the box, as long as the noise and the Gibbs standard
deviation span a few cells; what is left is the box boundary's influence on V.
"""
import numpy as np
import pytest
from scipy.linalg import solve_discrete_are, solve_discrete_lyapunov

import wgflow as wg

A, B, Q_, R_, SIGMA = 0.9, 1.0, 1.0, 1.0, 0.5
TAU = 0.5


@pytest.fixture(scope="module")
def mdp():
    # noise_cutoff 10: the truncated Gaussian tails (exp(-50)) stay far below the tolerances
    return wg.problems.get("lqr1d", A=A, B=B, q=Q_, r=R_, noise=SIGMA, noise_cutoff=10.0)


def riccati(gamma):
    g = np.sqrt(gamma)
    p = solve_discrete_are(np.array([[g * A]]), np.array([[g * B]]), np.array([[Q_]]), np.array([[R_]]))[0, 0]
    M = R_ + gamma * p * B ** 2
    return p, M, gamma * p * A * B / M


def moments(mdp, sol):
    a = mdp.actions.centers[:, 0]
    m = sol.policy.masses
    mean = m @ a
    return mean, m @ a ** 2 - mean ** 2


@pytest.mark.parametrize("objective", [wg.Discounted(gamma=0.5, entropy=TAU),
                                       wg.Discounted(gamma=0.9, entropy=TAU),
                                       wg.Average(entropy=TAU)], ids=["disc0.5", "disc0.9", "average"])
def test_soft_lqr_gain_variance_and_value(mdp, objective):
    gamma = getattr(objective, "gamma", 1.0)
    p, M, K = riccati(gamma)
    sol = wg.solve(mdp, objective)
    x = mdp.states.centers[:, 0]
    # the box edge perturbs V, and through it the policy, by amounts that decay like a Gaussian
    # tail towards the centre (2e-3 at the edge, 1e-8 at |x| = 2 for gamma = 0.5)
    inner = np.abs(x) <= 2.0
    mean, var = moments(mdp, sol)
    # mean action slope = -K (Riccati gain)
    slope = np.polyfit(x[inner], mean[inner], 1)[0]
    assert slope == pytest.approx(-K, rel=1e-7)
    assert np.max(np.abs(mean[inner] + K * x[inner])) < 5e-8
    # Gibbs variance tau / (2 M_aa)
    np.testing.assert_allclose(var[inner], TAU / (2 * M), rtol=1e-6)
    # V (or the bias h) is p x^2 + const in the interior
    curv = np.polyfit(x[inner], sol.V[inner], 2)[0]
    assert curv == pytest.approx(p, rel=1e-9)


def test_soft_lqr_average_stationary_law_and_gain(mdp):
    p, M, K = riccati(1.0)
    sol = wg.solve(mdp, wg.Average(entropy=TAU))
    s2 = TAU / (2 * M)
    # closed loop x' = (A - B K) x + B eps + sigma xi, eps ~ N(0, s2): Lyapunov variance
    Sigma = solve_discrete_lyapunov(np.array([[A - B * K]]), np.array([[B ** 2 * s2 + SIGMA ** 2]]))[0, 0]
    x = mdp.states.centers[:, 0]
    rho = sol.weights
    mx = rho @ x
    assert abs(mx) < 1e-12
    assert rho @ x ** 2 - mx ** 2 == pytest.approx(Sigma, rel=1e-7)
    # gain J = p sigma^2 - (tau/2) log(2 pi s2)  (entropy of the piecewise-constant density)
    assert sol.J == pytest.approx(p * SIGMA ** 2 - 0.5 * TAU * np.log(2 * np.pi * s2), abs=1e-9)


def test_lqr_without_entropy_picks_nearest_grid_action(mdp):
    p, M, K = riccati(0.9)
    sol = wg.solve(mdp, wg.Discounted(gamma=0.9))
    x = mdp.states.centers[:, 0]
    a = mdp.actions.centers[:, 0]
    inner = np.abs(x) <= 2.5
    chosen = a[sol.policy.greedy()]
    assert np.all(sol.policy.masses.max(axis=1) == 1.0)          # deterministic
    # restricting actions to the grid perturbs V slightly, so the argmin of a quadratic in a is the
    # nearest cell centre to -K x up to that perturbation: within half a cell plus a margin
    h = mdp.actions.spacing[0]
    assert np.max(np.abs(chosen[inner] + K * x[inner])) <= 0.5 * h + 0.02 * h
