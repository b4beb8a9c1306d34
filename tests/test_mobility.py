"""The mobilities and the weighted action Laplacian of the metric (:mod:`wgflow.mobility`).

Checked against the numpy twin of the kernel, closed-form means, and a weighted graph Laplacian
assembled independently with scipy.sparse.csgraph.
"""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import laplacian

from wgflow.grids import Grid
from wgflow.mobility import MASS_FLOOR, MOBILITIES, face_mobilities, laplacian_apply, mobility, mobility_numpy


def test_mobility_kernel_equals_numpy_twin_and_handles_extreme_masses():
    rng = np.random.default_rng(0)
    a = np.exp(rng.uniform(-700, 0, 2000))
    b = a * np.exp(rng.normal(0, 5, 2000))
    b[:5] = a[:5] * (1 + 1e-7)            # the series branch
    a[5:10] = 0.0                         # empty cells
    b[10:12] = 1e-320                     # subnormal: empty too
    for kind in MOBILITIES:
        th, di, dj = mobility(a, b, kind)
        for x, y in zip((th, di, dj), mobility_numpy(a, b, kind)):
            # the same formulas in the same order: equal to a few ulps
            np.testing.assert_allclose(x, y, rtol=1e-14, atol=0)
        assert np.all(np.isfinite(th)) and np.all(np.isfinite(di)) and np.all(np.isfinite(dj))
        assert np.all(th[5:12] == 0) and np.all(di[5:12] == 0) and np.all(dj[5:12] == 0)
        # symmetric in its arguments, positive on the support
        np.testing.assert_array_equal(mobility(b, a, kind)[0], th)
        live = (a >= MASS_FLOOR) & (b >= MASS_FLOOR)
        assert np.all(th[live] > 0)
        # between the two masses (a mean) for every kind
        assert np.all(th[live] <= np.maximum(a, b)[live] * (1 + 1e-12))


@pytest.mark.parametrize("kind", MOBILITIES)
def test_mobility_is_the_closed_form_mean(kind):
    a = np.array([0.3, 2e-200, 1.0])
    b = np.array([0.7, 5e-3, 1.0])
    th = mobility(a, b, kind)[0]
    logmean = np.array([x if x == y else (y - x) / (np.log(y) - np.log(x)) for x, y in zip(a, b)])
    expected = {"sg": a * b / logmean, "logmean": logmean, "arithmetic": (a + b) / 2}[kind]
    # a few ulps of the formulas above (log of the ratio vs difference of logs)
    np.testing.assert_allclose(th, expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(6,), (3, 4)])
def test_laplacian_apply_equals_weighted_graph_laplacian(shape):
    """Per state, ``L_theta(m) phi`` is the graph Laplacian of the action grid with face weights
    ``theta / h^2``, built here from an explicit edge list with scipy."""
    rng = np.random.default_rng(4)
    actions = Grid([(0.0, 1.0 * n) for n in shape], shape)
    nA, nS = int(np.prod(shape)), 3
    m = rng.uniform(0.1, 1.0, (nS, nA))
    m[1, 2] = 0.0                                    # an empty cell: its faces carry no weight
    m /= m.sum(axis=1, keepdims=True)
    phi = rng.standard_normal((nS, nA))
    idx = np.arange(nA).reshape(shape)
    out = laplacian_apply(m, phi, actions, "sg")
    for s in range(nS):
        rows, cols, w = [], [], []
        for d in range(len(shape)):
            lo = np.take(idx, range(shape[d] - 1), axis=d).ravel()
            hi = np.take(idx, range(1, shape[d]), axis=d).ravel()
            th = mobility(m[s, lo], m[s, hi], "sg")[0] / actions.spacing[d] ** 2
            rows += [lo, hi]
            cols += [hi, lo]
            w += [th, th]
        W = sp.csr_matrix((np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))), shape=(nA, nA))
        expected = laplacian(W).toarray() @ phi[s]
        # sums of a few O(1) products: rounding level
        np.testing.assert_allclose(out[s], expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    # conservative (each state's mass change sums to 0) and nothing moves into the empty cell
    np.testing.assert_allclose(out.sum(axis=1), 0.0, atol=1e-12 * np.abs(out).max())
    assert out[1, 2] == 0.0
    faces = face_mobilities(m, actions, "sg")
    np.testing.assert_array_equal(laplacian_apply(m, phi, actions, "sg", faces), out)
