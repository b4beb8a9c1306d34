"""Tests of wgflow.grids.Grid: geometry, flattening, stencils, deposition, interpolation."""
import numpy as np
import pytest

import wgflow as wg
from wgflow import Grid


def dense(idx, w, size):
    """Stencil rows ``(n, K)`` -> dense ``(n, size)`` (duplicate indices summed)."""
    out = np.zeros((idx.shape[0], size))
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.ravel()), w.ravel())
    return out


# ------------------------------------------------------------------------------ geometry
def test_centres_spacing_volume_hand_values():
    g = Grid(bounds=[(-1, 1), (0, 3)], shape=[4, 3])
    np.testing.assert_allclose(g.spacing, [0.5, 1.0], rtol=0, atol=1e-15)
    assert g.cell_volume == pytest.approx(0.5, abs=1e-15)
    assert g.size == 12 and g.ndim == 2 and g.shape == (4, 3)
    np.testing.assert_allclose(g.axes[0], [-0.75, -0.25, 0.25, 0.75], atol=1e-15)
    np.testing.assert_allclose(g.axes[1], [0.5, 1.5, 2.5], atol=1e-15)
    assert g.centers.shape == (12, 2)


def test_c_order_flattening():
    g = Grid(bounds=[(0, 2), (0, 3), (-1, 1)], shape=[2, 3, 4])
    np.testing.assert_array_equal(g.strides, [12, 4, 1])
    for i in range(2):
        for j in range(3):
            for k in range(4):
                flat = i * 12 + j * 4 + k
                np.testing.assert_allclose(g.centers[flat], [g.axes[0][i], g.axes[1][j], g.axes[2][k]],
                                           atol=1e-15)
    # cell_index inverts the flattening at the centres and anywhere inside a cell
    np.testing.assert_array_equal(g.cell_index(g.centers), np.arange(g.size))
    shifted = g.centers + 0.49 * g.spacing * np.array([1, -1, 1])
    np.testing.assert_array_equal(g.cell_index(shifted), np.arange(g.size))


def test_cell_volume_times_size_is_box_volume():
    g = Grid([(-2, 1), (0.5, 4), (3, 3.25)], [7, 5, 3])
    assert g.cell_volume * g.size == pytest.approx(3 * 3.5 * 0.25, rel=1e-14)


def test_periodic_wrap(rng):
    g = Grid([(-np.pi, np.pi), (0, 1)], [8, 4], periodic=[True, False])
    x = np.column_stack([rng.uniform(-20, 20, 200), rng.uniform(-3, 3, 200)])
    y = g.wrap(x)
    assert np.all((y[:, 0] >= -np.pi) & (y[:, 0] < np.pi))
    # same angle: the difference is a multiple of the period
    k = (x[:, 0] - y[:, 0]) / (2 * np.pi)
    np.testing.assert_allclose(k, np.round(k), atol=1e-12)
    np.testing.assert_array_equal(y[:, 1], x[:, 1])          # non-periodic axis untouched
    # periodic axes are always "inside"; the other axis is checked
    np.testing.assert_array_equal(g.contains(x), (x[:, 1] >= 0) & (x[:, 1] <= 1))
    # cell_index wraps on the periodic axis
    np.testing.assert_array_equal(g.cell_index(x + [[2 * np.pi, 0]]), g.cell_index(x))


# ------------------------------------------------------------------------------ linear stencil
def test_linear_stencil_weights_nonnegative_sum_one(rng):
    g = Grid([(0, 1)], [10])
    x = rng.uniform(-0.5, 1.5, 500)
    idx, w, dw = g.linear_stencil(x, 0)
    assert idx.shape == w.shape == dw.shape == (500, 2)
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert np.all((idx >= 0) & (idx < 10))


def test_linear_stencil_first_moment_exact_in_interior(rng):
    g = Grid([(-2, 3)], [13])
    c = g.axes[0]
    x = np.concatenate([rng.uniform(c[0], c[-1], 300), c])     # include the centres themselves
    idx, w, _ = g.linear_stencil(x, 0)
    np.testing.assert_allclose(np.sum(w * c[idx], axis=1), x, rtol=0, atol=1e-13)
    # a point on a centre gets a one-cell stencil
    idx_c, w_c, _ = g.linear_stencil(c, 0)
    np.testing.assert_array_equal(dense(idx_c, w_c, 13), np.eye(13))


def test_linear_stencil_clamps_at_the_ends():
    g = Grid([(0, 1)], [5])
    c = g.axes[0]
    x = np.array([-3.0, 0.0, c[0] - 1e-3, c[-1] + 1e-3, 1.0, 7.0])
    idx, w, dw = g.linear_stencil(x, 0)
    D = dense(idx, w, 5)
    expected = np.zeros((6, 5))
    expected[:3, 0] = 1.0
    expected[3:, 4] = 1.0
    np.testing.assert_array_equal(D, expected)
    np.testing.assert_array_equal(dw, 0.0)      # clamped points do not move with x


def test_linear_stencil_derivative_matches_finite_differences(rng):
    g = Grid([(-1, 2)], [9])
    h = g.spacing[0]
    c = g.axes[0]
    # points strictly inside cells between centres (no kink within eps)
    j = rng.integers(0, 8, 100)
    x = c[j] + rng.uniform(0.05, 0.95, 100) * h
    eps = 1e-7
    idx, w, dw = g.linear_stencil(x, 0)
    ip, wp, _ = g.linear_stencil(x + eps, 0)
    im, wm, _ = g.linear_stencil(x - eps, 0)
    fd = (dense(ip, wp, 9) - dense(im, wm, 9)) / (2 * eps)
    np.testing.assert_allclose(dense(idx, dw, 9), fd, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.abs(dw), 1.0 / h, rtol=1e-14)


def test_linear_stencil_periodic_wraps_between_last_and_first_cell():
    g = Grid([(0, 1)], [4], periodic=True)        # centres 0.125, 0.375, 0.625, 0.875
    idx, w, dw = g.linear_stencil(np.array([0.0, 1.0, 0.95, -0.05]), 0)
    D = dense(idx, w, 4)
    np.testing.assert_allclose(D[0], [0.5, 0, 0, 0.5], atol=1e-15)
    np.testing.assert_allclose(D[1], [0.5, 0, 0, 0.5], atol=1e-15)
    np.testing.assert_allclose(D[2], [0.3, 0, 0, 0.7], atol=1e-12)
    np.testing.assert_allclose(D[3], [0.3, 0, 0, 0.7], atol=1e-12)
    assert np.all(dw != 0)                          # nothing is clamped on a periodic axis


def test_linear_stencil_rejects_nan():
    g = Grid([(0, 1)], [4])
    with pytest.raises(wg.ValidationError):
        g.linear_stencil(np.array([0.3, np.nan]), 0)


# ------------------------------------------------------------------------------ gaussian stencil
def test_gaussian_stencil_sums_to_one_and_matches_normalized_density(rng):
    g = Grid([(-3, 3)], [31])
    c = g.axes[0]
    m = rng.uniform(-4, 4, 50)                      # some means outside the box
    sigma = 0.37
    idx, w, _ = g.gaussian_stencil(m, sigma, 0, cutoff=60.0)   # window = whole grid
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    D = dense(idx, w, 31)
    ref = np.exp(-0.5 * ((c[None, :] - m[:, None]) / sigma) ** 2)
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(D, ref, rtol=1e-12, atol=1e-300)


def test_gaussian_stencil_cutoff_drops_only_far_cells(rng):
    g = Grid([(-3, 3)], [61])
    c = g.axes[0]
    h = g.spacing[0]
    sigma, cutoff = 0.2, 4.0
    m = rng.uniform(-2, 2, 40)
    idx, w, _ = g.gaussian_stencil(m, sigma, 0, cutoff=cutoff)
    D = dense(idx, w, 61)
    dist = np.abs(c[None, :] - m[:, None])
    assert np.all(D[dist <= cutoff * sigma] > 0)
    assert np.all(D[dist > cutoff * sigma + 3 * h] == 0)   # window: +- (ceil(cutoff sigma/h)+1) cells
    ref = np.exp(-0.5 * (dist / sigma) ** 2)
    ref /= ref.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(D, ref, rtol=0, atol=2 * np.exp(-cutoff ** 2 / 2))


@pytest.mark.parametrize("ratio", [1.0, 1.5, 3.0])
def test_gaussian_stencil_moments_poisson_summation(rng, ratio):
    # A Gaussian sampled on a lattice of spacing h has mean and variance equal to the
    # continuous ones up to O(exp(-2 pi^2 sigma^2 / h^2)) (Poisson summation): the first
    # aliased Fourier mode gives relative errors 4 pi r^2 e^{-2 pi^2 r^2} (mean, in units of h)
    # and 8 pi^2 r^2 e^{-2 pi^2 r^2} (variance), r = sigma / h: 3e-8 and 2e-7 for sigma = h.
    g = Grid([(-10, 10)], [201])
    h = g.spacing[0]
    sigma = ratio * h
    c = g.axes[0]
    m = rng.uniform(-5, 5, 40)
    idx, w, _ = g.gaussian_stencil(m, sigma, 0, cutoff=12.0)
    mean = np.sum(w * c[idx], axis=1)
    var = np.sum(w * (c[idx] - m[:, None]) ** 2, axis=1)
    alias = np.exp(-2 * np.pi ** 2 * ratio ** 2)
    np.testing.assert_allclose(mean, m, rtol=0, atol=1.01 * 4 * np.pi * ratio ** 2 * alias * h + 1e-14)
    np.testing.assert_allclose(var, sigma ** 2, rtol=1.01 * (8 * np.pi ** 2 * ratio ** 2 + 4) * alias + 1e-13,
                               atol=0)
    if ratio == 1.0:   # the bound is attained: the aliasing error is really there (test can fail)
        assert np.max(np.abs(var / sigma ** 2 - 1)) > 0.3 * 8 * np.pi ** 2 * alias


def test_gaussian_stencil_derivative_matches_finite_differences(rng):
    g = Grid([(-3, 3)], [41])
    h = g.spacing[0]
    lo = -3.0
    sigma = 0.4
    # keep (m - lo)/h away from integers so the window is the same at m +- eps
    k = rng.integers(5, 35, 60)
    m = lo + (k + rng.uniform(0.1, 0.9, 60)) * h
    eps = 1e-6
    idx, w, dw = g.gaussian_stencil(m, sigma, 0)
    ip, wp, _ = g.gaussian_stencil(m + eps, sigma, 0)
    im, wm, _ = g.gaussian_stencil(m - eps, sigma, 0)
    fd = (dense(ip, wp, 41) - dense(im, wm, 41)) / (2 * eps)
    an = dense(idx, dw, 41)
    np.testing.assert_allclose(an, fd, rtol=0, atol=1e-7 * np.abs(an).max())
    np.testing.assert_allclose(dw.sum(axis=1), 0.0, atol=1e-12)     # mass is conserved


def test_gaussian_stencil_derivative_matches_fd_near_the_boundary(rng):
    # near the edge the normalization over the grid matters; window covers the whole grid
    g = Grid([(0, 1)], [20])
    m = np.array([-0.13, 0.02, 0.51, 0.97, 1.2])
    sigma, eps = 0.15, 1e-6
    idx, w, dw = g.gaussian_stencil(m, sigma, 0, cutoff=40)
    ip, wp, _ = g.gaussian_stencil(m + eps, sigma, 0, cutoff=40)
    im, wm, _ = g.gaussian_stencil(m - eps, sigma, 0, cutoff=40)
    fd = (dense(ip, wp, 20) - dense(im, wm, 20)) / (2 * eps)
    np.testing.assert_allclose(dense(idx, dw, 20), fd, rtol=0, atol=1e-7)


def _wrapped_reference(c, m, sigma, L, images=60):
    ref = sum(np.exp(-0.5 * ((c[None, :] + k * L - m[:, None]) / sigma) ** 2)
              for k in range(-images, images + 1))
    return ref / ref.sum(axis=1, keepdims=True)


def test_gaussian_stencil_periodic_sums_images(rng):
    g = Grid([(0, 1)], [20], periodic=True)
    c = g.axes[0]
    m = rng.uniform(-1.5, 2.5, 30)           # means outside [0, 1) wrap too
    sigma = 0.1                              # cutoff * sigma < period
    idx, w, _ = g.gaussian_stencil(m, sigma, 0)
    np.testing.assert_allclose(dense(idx, w, 20), _wrapped_reference(c, m, sigma, 1.0),
                               rtol=0, atol=1e-12)


def test_gaussian_stencil_periodic_wide_noise_sums_all_images():
    g = Grid([(0, 1)], [20], periodic=True)
    c = g.axes[0]
    m = np.array([0.33, 0.8])
    sigma = 0.5
    # the window is cut at cutoff * sigma (documented truncation exp(-cutoff^2/2)); with
    # cutoff 9 every image above 1e-17 relative density is inside it
    idx, w, _ = g.gaussian_stencil(m, sigma, 0, cutoff=9.0)
    np.testing.assert_allclose(dense(idx, w, 20), _wrapped_reference(c, m, sigma, 1.0),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.0, -0.1])
def test_gaussian_stencil_rejects_nonpositive_sigma(sigma):
    g = Grid([(0, 1)], [4])
    with np.errstate(all="ignore"):
        with pytest.raises(wg.ValidationError):
            g.gaussian_stencil(np.array([0.5]), sigma, 0)


# ------------------------------------------------------------------------------ combination
def test_combine_stencils_2d_derivative_matches_fd(rng):
    g = Grid([(-1, 1), (0, 2)], [7, 5])
    x = np.column_stack([rng.uniform(-0.8, 0.8, 30), rng.uniform(0.3, 1.7, 30)])
    eps = 1e-7

    def stencil(p):
        return g.combine_stencils([g.linear_stencil(p[:, 0], 0),
                                   g.gaussian_stencil(p[:, 1], 0.5, 1, cutoff=40)])
    idx, w, dw = stencil(x)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-14)
    for d in range(2):
        e = np.zeros(2)
        e[d] = eps
        ip, wp, _ = stencil(x + e)
        im, wm, _ = stencil(x - e)
        fd = (dense(ip, wp, g.size) - dense(im, wm, g.size)) / (2 * eps)
        np.testing.assert_allclose(dense(idx, dw[:, :, d], g.size), fd, rtol=0, atol=2e-6)


# ------------------------------------------------------------------------------ deposit / interpolate
def test_deposit_conserves_mass_and_first_moment(rng):
    g = Grid([(-1, 1), (0, 2)], [9, 6])
    x = np.column_stack([rng.uniform(-1.5, 1.5, 400), rng.uniform(-0.5, 2.5, 400)])
    m = rng.uniform(0, 2, 400)
    cells = g.deposit(x, m)
    assert cells.shape == (g.size,) and np.all(cells >= 0)
    assert cells.sum() == pytest.approx(m.sum(), rel=1e-14)
    assert g.deposit(x).sum() == pytest.approx(400, rel=1e-14)
    # inside the hull of the centres the first moment is kept on every axis
    lo = g.centers.min(axis=0)
    hi = g.centers.max(axis=0)
    y = lo + rng.random((300, 2)) * (hi - lo)
    my = rng.uniform(0, 1, 300)
    cy = g.deposit(y, my)
    np.testing.assert_allclose(cy @ g.centers, my @ y, rtol=1e-13)


def test_interpolate_reproduces_linear_functions_exactly(rng):
    g = Grid([(-1, 1), (0, 2)], [9, 6])
    lo = g.centers.min(axis=0)
    hi = g.centers.max(axis=0)
    x = lo + rng.random((300, 2)) * (hi - lo)
    f = lambda p: 1.5 - 2.0 * p[:, 0] + 0.75 * p[:, 1]
    np.testing.assert_allclose(g.interpolate(f(g.centers), x), f(x), rtol=0, atol=1e-13)
    # bilinear: the product x*y is reproduced too; vector values are interpolated per component
    vals = np.column_stack([f(g.centers), g.centers[:, 0] * g.centers[:, 1]])
    out = g.interpolate(vals, x)
    np.testing.assert_allclose(out[:, 1], x[:, 0] * x[:, 1], rtol=0, atol=1e-13)
    np.testing.assert_allclose(g.interpolate(vals, g.centers), vals, rtol=0, atol=1e-15)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bounds, shape", [
    ([(1.0, 1.0)], [3]),           # lo == hi
    ([(2.0, 1.0)], [3]),           # lo > hi
    ([(0, 1), (1, 0)], [3, 3]),    # second axis
    ([(0.0, np.inf)], [3]),        # not finite
    ([(0.0, np.nan)], [3]),
    ([(0, 1)], [2.5]),             # non-integer shape
    ([(0, 1)], [0]),               # empty axis
    ([(0, 1)], [-3]),
    ([(0, 1)], [3, 3]),            # shape / bounds mismatch
    ([0, 1, 2], [3]),              # not pairs
])
def test_bad_grid_raises_validation_error(bounds, shape):
    with pytest.raises(wg.ValidationError) as info:
        Grid(bounds, shape)
    assert isinstance(info.value, ValueError) and isinstance(info.value, wg.WgflowError)


def test_bad_grid_message_names_the_axis():
    with pytest.raises(ValueError, match="axis 1"):
        Grid([(0, 1), (1, 0)], [3, 3])


def test_string_shape_raises_validation_error():
    with pytest.raises(wg.ValidationError):
        Grid([(0, 1)], ["3"])


@pytest.mark.parametrize("method", ["deposit", "interpolate", "cell_index", "contains"])
def test_nan_points_raise(method):
    g = Grid([(0, 1), (0, 1)], [4, 4])
    x = np.array([[0.2, 0.3], [0.5, np.nan], [0.1, 0.1]])
    call = {"deposit": lambda: g.deposit(x), "interpolate": lambda: g.interpolate(np.zeros(16), x),
            "cell_index": lambda: g.cell_index(x), "contains": lambda: g.contains(x)}[method]
    with pytest.raises(wg.ValidationError, match="row 1") as info:
        call()
    assert isinstance(info.value, ValueError)


def test_points_with_wrong_dimension_raise():
    g = Grid([(0, 1), (0, 1)], [4, 4])
    with pytest.raises(wg.ValidationError, match=r"\(n, 2\)"):
        g.deposit(np.zeros((5, 3)))


def test_grid_dict_round_trip_and_equality():
    g = Grid([(-np.pi, np.pi), (0, 1)], [8, 3], periodic=[True, False])
    h = Grid.from_dict(g.to_dict())
    assert h == g and hash(h) == hash(g)
    np.testing.assert_array_equal(h.centers, g.centers)
    assert Grid([(0, 1)], [3]) != Grid([(0, 1)], [4])


def test_wrap_never_returns_hi():
    g = Grid([(-np.pi, np.pi)], [8], periodic=True)
    y = g.wrap(np.array([[np.nextafter(-np.pi, -10)]]))
    assert -np.pi <= y[0, 0] < np.pi


# ------------------------------------------------------------------------------ axis names and units
def test_names_and_units_label_axes_and_do_not_enter_equality():
    g = Grid([(-np.pi, np.pi), (-8, 8)], [4, 3], periodic=[True, False], names=["theta", "omega"],
             units=["rad", "rad/s"])
    assert g.names == ("theta", "omega") and g.units == ("rad", "rad/s")
    assert g.label(0) == "theta [rad]" and g.label(1) == "omega [rad/s]"
    assert Grid([(0, 1)], [2], names=["x"], units=[""]).label(0) == "x"
    assert Grid([(0, 1)], [2]).label(0) == "axis 0" and Grid([(0, 1)], [2]).label(0, "state") == "state"
    plain = Grid([(-np.pi, np.pi), (-8, 8)], [4, 3], periodic=[True, False])
    assert g == plain and hash(g) == hash(plain)
    assert "names=['theta', 'omega']" in repr(g)
    assert Grid.from_dict(g.to_dict()).names == g.names and Grid.from_dict(plain.to_dict()).names is None
    assert g.with_labels(units=["deg", "deg/s"]).label(0) == "theta [deg]"


@pytest.mark.parametrize("kw, match", [({"names": ["x"]}, "2 strings"), ({"units": ["m", 3]}, "2 strings"),
                                       ({"names": 5}, "sequence of 2 strings")])
def test_bad_names_or_units(kw, match):
    with pytest.raises(wg.ValidationError, match=match):
        Grid([(0, 1), (0, 1)], [2, 2], **kw)


def test_names_and_units_survive_hdf5(tmp_path):
    mdp = wg.problems.get("pendulum", n_theta=5, n_omega=4, n_actions=3)
    wg.save(tmp_path / "m.h5", mdp)
    back = wg.load(tmp_path / "m.h5")
    assert back.states.names == ("theta", "omega") and back.states.units == ("rad", "rad/s")
    assert back.actions.label(0) == "torque [N m]"
    wg.save(tmp_path / "p.h5", wg.Policy.uniform(mdp))
    assert wg.load(tmp_path / "p.h5").states.label(1) == "omega [rad/s]"


def test_every_builtin_problem_names_its_axes():
    for name in wg.problems.names():
        kw = {"n_states": (3, 3)} if name in ("lqr2d", "double_integrator") else {}
        mdp = wg.problems.get(name, **kw)
        for grid in (mdp.states, mdp.actions):
            if grid is not None:
                assert grid.names is not None and len(grid.names) == grid.ndim
                assert grid.units is not None and len(grid.units) == grid.ndim


def test_gaussian_stencil_wider_than_the_axis_is_uniform_over_it():
    # a standard deviation far beyond the axis: every cell of the axis, equal weights to rounding
    # (the window used to span cutoff * sigma / h cells: 49 GiB for sigma = 1e6 on 21 cells)
    g = Grid([(-2.0, 2.0)], [21])
    idx, w, dw = g.gaussian_stencil(np.array([0.3, -1.9]), 1e6, 0)
    assert idx.shape[1] <= 2 * 21 + 1
    for r in range(2):
        mass = np.bincount(idx[r], weights=w[r], minlength=21)
        # relative density differences across the axis: (4 / 1e6)^2 / 2
        np.testing.assert_allclose(mass, 1.0 / 21, rtol=1e-10)
    mdp = wg.MDP.from_dynamics(g, Grid([(-1.0, 1.0)], [5]), lambda s, a: 0.9 * s + 0.5 * a,
                               lambda s, a: s[:, 0] ** 2 + a[:, 0] ** 2, noise=1e6)
    np.testing.assert_allclose(mdp.P.toarray(), 1.0 / 21, rtol=1e-10)
