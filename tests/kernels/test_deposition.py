"""Push-forward deposition kernel: numpy twin, mass and first moment, added variance."""
from __future__ import annotations

import numpy as np
import pytest

import wgflow as wg
from wgflow.kernels.deposition import (deposition_variance, make_deposition_kernel, push_forward,
                                       push_forward_numpy)

GRIDS = [
    wg.Grid([(-4, 4)], [101]),
    wg.Grid([(-1, 1), (0, 3)], [7, 9], periodic=[False, True]),
    wg.Grid([(-1, 1), (0, 3), (0, 1)], [5, 6, 1]),
    wg.Grid([(0, 1)], [1]),
]


@pytest.mark.parametrize("g", GRIDS, ids=["1d", "2d-periodic", "3d-flat", "one-cell"])
def test_kernel_equals_numpy_twin(rng, g):
    nS, nP = 4, 60
    w = rng.random((nS, nP))
    w[0, 3] = 0.0
    lo, hi = g.bounds[:, 0], g.bounds[:, 1]
    y = rng.uniform(lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo), (nS, nP, g.ndim))
    y[1, :5] = g.centers[rng.integers(0, g.size, 5)]          # points exactly on centres
    a = push_forward(w, y, g)
    b = push_forward_numpy(w, y, g)
    assert np.max(np.abs(a - b)) <= 1e-14
    assert np.max(np.abs(a.sum(axis=1) - w.sum(axis=1))) <= 1e-14 * nP
    assert a.min() >= 0.0
    # the grid's own (vectorized, snapping) deposition agrees to rounding
    for s in range(nS):
        assert np.max(np.abs(g.deposit(y[s], w[s]) - a[s])) <= 1e-12


def test_first_moment_exact_inside_the_hull(rng):
    g = wg.Grid([(-2, 2), (0, 1)], [41, 13])
    nS, nP = 3, 200
    w = rng.random((nS, nP))
    w /= w.sum(axis=1, keepdims=True)
    lo = g.bounds[:, 0] + 0.5 * g.spacing
    hi = g.bounds[:, 1] - 0.5 * g.spacing
    y = rng.uniform(lo, hi, (nS, nP, 2))
    m = push_forward(w, y, g)
    mean_grid = m @ g.centers
    mean_pts = np.einsum("sp,spd->sd", w, y)
    assert np.max(np.abs(mean_grid - mean_pts)) <= 1e-14
    # second moment: deposition adds exactly sum w f(1-f) dx^2 per axis
    var_added = deposition_variance(w, y, g)
    second_grid = m @ g.centers ** 2
    second_pts = np.einsum("sp,spd->sd", w, y ** 2)
    assert np.max(np.abs(second_grid - second_pts - var_added)) <= 1e-13
    assert np.all(var_added >= 0) and np.all(var_added <= g.spacing ** 2 / 4 + 1e-16)


def test_centres_are_fixed_points_and_identity_push_forward(rng):
    g = wg.Grid([(-1, 1), (0, 2)], [6, 5])
    m = rng.random((2, g.size))
    y = np.broadcast_to(g.centers, (2, g.size, 2)).copy()
    assert np.max(np.abs(push_forward(m, y, g) - m)) <= 1e-15
    assert np.max(deposition_variance(m, y, g)) <= 1e-15     # frac = O(eps) at centres


def test_outside_points_go_to_the_outer_cell_and_periodic_wraps():
    g = wg.Grid([(0, 1)], [4])
    out = push_forward(np.ones((1, 2)), np.array([[[-5.0], [0.1]]]), g)
    assert out[0, 0] == 2.0
    gp = wg.Grid([(0, 1)], [4], periodic=True)
    # 1.0 is half-way between the last centre 0.875 and the first centre 0.125 + 1
    out = push_forward(np.ones((1, 1)), np.array([[[1.0]]]), gp)
    assert np.allclose(out[0], [0.5, 0, 0, 0.5], atol=1e-15)
    out2 = push_forward(np.ones((1, 1)), np.array([[[1.0 + 3.0]]]), gp)
    assert np.max(np.abs(out2 - out)) <= 1e-13


def test_factory_kernel_increments_out():
    k = make_deposition_kernel(1)
    out = np.ones((1, 5))
    k(np.array([[1.0]]), np.array([[[0.5]]]), np.zeros(1), np.array([5.0]), np.array([5]),
      np.array([False]), np.array([1]), out)
    assert np.array_equal(out, [[1.0, 1.0, 2.0, 1.0, 1.0]])


def test_bad_shapes_raise():
    g = wg.Grid([(0, 1), (0, 1)], [3, 3])
    with pytest.raises(ValueError):
        push_forward(np.ones((1, 2)), np.zeros((1, 2, 1)), g)
    with pytest.raises(ValueError):
        push_forward(np.ones((1, 1)), np.full((1, 1, 2), np.nan), g)
