"""The ``wpo`` mixture carries log weights: weights that underflow come back, restart data."""
import h5py
import numpy as np
import pytest

import wgflow as wg
import wgflow.flows.wpo  # noqa: F401  (registration)
from wgflow import h5
from wgflow.errors import ValidationError
from wgflow.flows.trajectory import _frame_values
from wgflow.flows.wpo import WPO

# log of the smallest positive double (subnormal): exp of anything below underflows to 0
LOG_TINY = float(np.log(np.nextafter(0.0, 1.0)))


def quartic(tilt=0.2, a_max=10.0, n=401):
    """1-state MDP with cost a^4/100 - a^2 + tilt a on [-a_max, a_max] (the WPO paper's toy):
    wells near -7.12 and +7.02, the left one cheaper by about 2.8 for tilt 0.2."""
    S = wg.Grid([(0.0, 1.0)], [1])
    A = wg.Grid([(-a_max, a_max)], [n])
    return wg.MDP.from_dynamics(S, A, drift=lambda s, a: s.copy(), noise=0.0,
                                cost=lambda s, a: (a[:, 0] ** 4 / 100 - a[:, 0] ** 2
                                                   + tilt * a[:, 0]),
                                drift_da=lambda s, a: np.zeros((s.shape[0], 1, 1)),
                                cost_da=lambda s, a: 0.04 * a ** 3 - 2 * a + tilt)


# component 1 sits in the dearer right well; component 2 starts near the hilltop, where its
# expected cost exceeds the mixture's by ~23: with entropy 0.01 its log weight follows
# -(E_2 Psi - E_1 Psi)/tau ~ -2000 (weight_rate h tau = 0.5 < 2: the mirror step is stable), far
# below the log of the smallest double, until it has slid into the cheaper left well
TAU, KW = 0.01, dict(scheme="wpo", components=2, weight_rate=1000.0, dt=0.05, progress=False)
P0 = {"weights": [0.5, 0.5], "mean": [7.0, -0.5], "std": [0.2, 0.3]}


def test_underflowed_weight_comes_back():
    mdp = quartic()
    obj = wg.Discounted(0.5, entropy=TAU)
    tr = wg.flow(mdp, obj, P0, t_end=7.0, save_every=0.1, **KW)
    w2 = tr.params["weights"][:, 0, 1]
    assert np.sum(w2 == 0.0) >= 5                       # underflowed for a stretch of steps
    # references: one Gaussian started where component 2 starts slides into the left well, one
    # started where component 1 starts stays in the right well. The flows contract to their
    # fixed points by ~1e-2 per time unit (measured: the mixture's J is 2e-8 above the left
    # Gaussian's at t = 4, 2e-14 at t = 7), so at t = 7 the mixture, once its weight has come
    # back, has the left-well J to rounding
    left = wg.flow(mdp, obj, {"mean": -0.5, "std": 0.3}, scheme="wpo", dt=0.05, t_end=7.0,
                   progress=False)
    right = wg.flow(mdp, obj, {"mean": 7.0, "std": 0.2}, scheme="wpo", dt=0.05, t_end=7.0,
                    progress=False)
    assert right.J[-1] - left.J[-1] > 5.0
    assert w2[-1] > 1.0 - 1e-12
    assert tr.J[-1] == pytest.approx(left.J[-1], rel=1e-12, abs=0)
    assert tr.params["mean"][-1, 0, 1, 0] == pytest.approx(left.params["mean"][-1, 0, 0], abs=1e-10)
    # the logs carried the weight through: finite, below the underflow threshold where the
    # weight is 0, and the weights are their exponentials
    lw = tr.params["log_weights"][:, 0, :]
    assert np.all(np.isfinite(lw)) and np.all(tr.params["support"] == 1)
    assert np.all(lw[w2 == 0.0, 1] < LOG_TINY) and lw[:, 1].min() < -1000.0
    np.testing.assert_array_equal(tr.params["weights"], np.exp(tr.params["log_weights"]))


def test_resume_through_an_underflowed_weight(tmp_path):
    # the log weights are the restart data: a run stored up to a frame where the weight of
    # component 2 has underflowed and resumed from it equals the uninterrupted stored run
    mdp = quartic()
    obj = wg.Discounted(0.5, entropy=TAU)
    ref = wg.flow(mdp, obj, P0, t_end=2.0, save_every=0.25, storage=tmp_path / "ref.h5", **KW)
    path = tmp_path / "run.h5"
    part = wg.flow(mdp, obj, P0, t_end=0.5, save_every=0.25, storage=path, **KW)
    assert part.params["weights"][-1, 0, 1] == 0.0
    assert part.params["log_weights"][-1, 0, 1] < LOG_TINY
    wg.flow(mdp, obj, None, t_end=2.0, save_every=0.25, storage=path, resume=True, **KW)
    a, b = wg.Trajectory.from_hdf5(tmp_path / "ref.h5"), wg.Trajectory.from_hdf5(path)
    assert a.params["weights"][-1, 0, 1] > 1.0 - 1e-12
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.J, b.J)
    assert sorted(a.params) == sorted(b.params) == ["log_weights", "mean", "std", "support",
                                                     "weights"]
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def _drop_log_weights(path):
    """Rewrite a stored mixture run in the layout of files written before the scheme carried
    the log weights: no params/log_weights and params/support, checksums over what is left."""
    h5.unseal(path)      # (a no-op for a run's storage file, which has no seal)
    with h5py.File(path, "a") as f:
        g = f["trajectory"]
        del g["params/log_weights"], g["params/support"]
        for i in range(int(g.attrs["n_frames"])):
            vals = _frame_values(g["times"][i], g["J"][i], g["grad_norm2"][i], g["restart"][i],
                                 g["masses"][i], {k: g["params"][k][i] for k in g["params"]},
                                 {k: g["state"][k][i] for k in g["state"]})
            g["checksum"][i] = h5.checksum(vals)


def test_resume_from_a_file_without_log_weights(tmp_path):
    # an older file (weights, mean, std only) resumes from log(weights) and goes on in its own
    # layout; where no weight has underflowed, log(exp(lw)) = lw to an ulp, so the run agrees
    # with the uninterrupted one to rounding (tilted toy at entropy 0.05: no underflow)
    mdp = quartic()
    obj = wg.Discounted(0.5, entropy=0.05)
    p0 = {"weights": [0.5, 0.5], "mean": [-1.0, 1.0], "std": 1.0}
    kw = dict(scheme="wpo", components=2, save_every=2.0, progress=False)
    ref = wg.flow(mdp, obj, p0, t_end=8.0, **kw)
    path = tmp_path / "old.h5"
    wg.flow(mdp, obj, p0, t_end=4.0, storage=path, **kw)
    _drop_log_weights(path)
    wg.flow(mdp, obj, None, t_end=8.0, storage=path, resume=True, **kw)
    b = wg.Trajectory.from_hdf5(path)
    assert sorted(b.params) == ["mean", "std", "weights"]
    np.testing.assert_array_equal(b.times, ref.times)
    w1 = ref.params["weights"][:, 0, 0]
    assert w1.min() > 1e-6 and w1[-1] > 1 - 1e-6
    # one rounding of log/exp of the weights at the resume, carried through 4 time units of a
    # contracting flow (measured: equal to the last bit here); 1e-12 leaves room for other BLAS
    np.testing.assert_allclose(b.params["weights"], ref.params["weights"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b.params["mean"], ref.params["mean"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.J, ref.J, rtol=1e-12, atol=0)


def test_frame_log_weights_are_validated():
    mdp = quartic(n=41)
    sch = WPO(mdp, wg.Discounted(0.5, entropy=0.05), components=2)
    st = sch.init({"weights": [0.25, 0.75], "mean": [-1.0, 1.0], "std": 1.0})
    good = {k: np.array(v) for k, v in st.params.items()}
    np.testing.assert_allclose(good["log_weights"], np.log([[0.25, 0.75]]), rtol=1e-15)
    pi = sch.policy(st)
    for bad, match in (({"log_weights": good["log_weights"][:, :1]},
                        "log_weights must be an array"),
                       ({"support": np.ones((2, 2), np.uint8)}, "support must be an array"),
                       ({"log_weights": np.array([[-np.inf, 0.0]])}, "finite, got -inf"),
                       ({"support": np.array([[2, 1]], np.uint8)}, "0 or 1"),
                       ({"support": np.zeros((1, 2), np.uint8)}, "support of state 0 is empty"),
                       ({"log_weights": good["log_weights"] + 1e-6}, "not normalized"),
                       ({"weights": np.array([[0.5, 0.5]])}, r"not exp\(log_weights\)")):
        with pytest.raises(ValidationError, match=match):
            sch.init_from_frame(pi, {**good, **bad}, 0.0)
    with pytest.raises(ValidationError, match="support must be an array"):
        sch.init_from_frame(pi, {k: v for k, v in good.items() if k != "support"}, 0.0)
    st2 = sch.init_from_frame(pi, good, 0.0)
    np.testing.assert_array_equal(st2.masses, st.masses)


def test_zero_initial_weight_stays_zero():
    # a component started with weight 0 is off the support: its log weight is stored as 0 with
    # support 0, its weight stays exactly 0 (the mirror step multiplies it)
    mdp = quartic(n=101)
    tr = wg.flow(mdp, wg.Discounted(0.5, entropy=0.05),
                 {"weights": [1.0, 0.0], "mean": [-1.0, 1.0], "std": 1.0}, scheme="wpo",
                 components=2, t_end=2.0, save_every=0.5, progress=False)
    np.testing.assert_array_equal(tr.params["weights"][:, 0, 1], 0.0)
    np.testing.assert_array_equal(tr.params["support"][:, 0], [[1, 0]] * len(tr.times))
    np.testing.assert_array_equal(tr.params["log_weights"][:, 0], 0.0)
