"""Trajectory, HDF5 storage of flows (per-frame append, interruption, resume) and trackers."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import wgflow as wg
from wgflow.flows import CallbackTracker, FlowState, GuardTracker

T_END, DT, SAVE = 0.2, 0.01, 0.05


@pytest.fixture(scope="module")
def setup():
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15, noise=0.6)
    obj = wg.Discounted(0.9, entropy=0.3)
    pi0 = wg.Policy.gaussian(mdp, mean=1.0, std=0.8)
    return mdp, obj, pi0


@pytest.fixture(scope="module")
def reference(setup):
    """Uninterrupted run with a fixed dt."""
    mdp, obj, pi0 = setup
    return wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False)


def _assert_same_frames(a, b):
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.J, b.J)
    np.testing.assert_array_equal(a.grad_norm2, b.grad_norm2)
    np.testing.assert_array_equal(a.masses, b.masses)
    assert sorted(a.params) == sorted(b.params)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def _assert_close_frames(a, b, rtol=1e-12):
    """Two *runs* of the same flow: equal to rounding. (Not bitwise: LinearSolveCache chooses
    between reusing old LU factors and refactorizing by comparing wall-clock timings, so the
    linear-solve path -- hence the last bits -- can differ from run to run.)"""
    np.testing.assert_allclose(a.times, b.times, rtol=0, atol=1e-14)
    np.testing.assert_allclose(a.J, b.J, rtol=rtol)
    np.testing.assert_allclose(a.grad_norm2, b.grad_norm2, rtol=1e-10)
    np.testing.assert_allclose(a.masses, b.masses, rtol=0, atol=rtol)


# ------------------------------------------------------------------------------ Trajectory
def test_trajectory_fields_are_consistent(setup, reference):
    mdp, obj, pi0 = setup
    traj = reference
    n = len(traj)
    np.testing.assert_allclose(traj.times, np.arange(0.0, T_END + 1e-9, SAVE), atol=1e-12)
    assert traj.J.shape == traj.grad_norm2.shape == (n,)
    assert traj.masses.shape == (n, mdp.n_states, mdp.n_actions)
    np.testing.assert_array_equal(traj.masses[0], pi0.masses)
    np.testing.assert_allclose(traj.masses.sum(axis=2), 1.0, atol=1e-13)
    assert np.all(np.diff(traj.J) < 0)
    assert np.all(traj.grad_norm2 > 0)
    # J and masses agree with an exact evaluation of each frame
    for i in (0, 2, -1):
        pol = traj.policy(i)
        assert isinstance(pol, wg.Policy)
        np.testing.assert_array_equal(pol.masses, traj.masses[i])
        assert wg.evaluate(mdp, pol, obj).J == pytest.approx(traj.J[i], rel=1e-11)
    np.testing.assert_array_equal(traj.final.masses, traj.masses[-1])
    assert traj.final.actions == mdp.actions
    d = traj.diagnostics
    assert d["steps"] == round(T_END / DT) and d["stop_reason"] is None
    # one evaluation per step plus the initial one; saved frames may add one each, because
    # steps skip the occupancy solve that the frame's gradient norm needs
    assert d["steps"] + 1 <= d["evaluations"] <= d["steps"] + 1 + len(traj)
    assert not d["interrupted"]
    assert traj.scheme == "otto"
    assert "Trajectory (otto)" in repr(traj)


def test_to_hdf5_round_trip_is_exact(tmp_path, reference):
    path = reference.to_hdf5(tmp_path / "traj.h5")
    back = wg.Trajectory.from_hdf5(path)
    assert len(back) == len(reference)
    _assert_same_frames(back, reference)
    assert back.actions == reference.actions and back.states == reference.states
    assert back.scheme == reference.scheme and back.objective == reference.objective
    assert back.diagnostics["complete"] is True
    assert back.diagnostics["steps"] == reference.diagnostics["steps"]


def test_save_load_trajectory(tmp_path, reference):
    path = tmp_path / "traj_saved.h5"
    wg.save(path, reference)
    back = wg.load(path)
    assert isinstance(back, wg.Trajectory)
    assert len(back) == len(reference)
    _assert_same_frames(back, reference)


def test_save_load_dispatch_to_trajectory(tmp_path, reference):
    # what does work today: save -> to_hdf5 and load -> Trajectory.from_hdf5 (type and metadata)
    path = tmp_path / "traj_dispatch.h5"
    assert wg.save(path, reference) == path
    back = wg.load(path)
    assert isinstance(back, wg.Trajectory)
    assert back.scheme == "otto" and back.actions == reference.actions
    assert back.objective == reference.objective
    assert back.diagnostics["complete"] is True


def test_from_hdf5_rejects_other_wgflow_files(tmp_path, setup):
    mdp, _, pi0 = setup
    path = wg.save(tmp_path / "policy.h5", pi0)
    with pytest.raises(wg.FileFormatError):
        wg.Trajectory.from_hdf5(path)


# ------------------------------------------------------------------------------ storage=path
def test_storage_writes_every_saved_frame(tmp_path, setup, reference):
    mdp, obj, pi0 = setup
    path = tmp_path / "run.h5"
    traj = wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False, storage=path)
    _assert_close_frames(traj, reference)          # storage does not change the run
    back = wg.Trajectory.from_hdf5(path)
    _assert_same_frames(back, traj)
    assert back.diagnostics["complete"] is True
    assert back.diagnostics["steps"] == traj.diagnostics["steps"]
    assert back.scheme == "otto" and back.actions == mdp.actions and back.states == mdp.states
    # and through the generic loader
    loaded = wg.load(path)
    _assert_same_frames(loaded, traj)


def _interrupt_at(t_stop):
    def boom(state, context):
        if state.t > t_stop:
            raise KeyboardInterrupt
    return CallbackTracker(boom, interval=0.0)     # checked after every step


def test_interrupted_run_leaves_readable_file(tmp_path, setup, reference):
    mdp, obj, pi0 = setup
    path = tmp_path / "interrupted.h5"
    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False, storage=path,
                trackers=[_interrupt_at(0.125)])
    back = wg.Trajectory.from_hdf5(path)
    assert back.diagnostics["complete"] is False
    assert back.diagnostics["interrupted"] is True
    # every saved frame so far (0, 0.05, 0.1) plus the state at the interruption (0.13)
    np.testing.assert_allclose(back.times, [0.0, 0.05, 0.1, 0.13], atol=1e-12)
    _assert_close_frames(_first(back, 3), _first(reference, 3))
    np.testing.assert_allclose(back.masses.sum(axis=2), 1.0, atol=1e-13)
    assert back.J[3] < back.J[2]


def test_interrupt_at_a_frame_time_is_stored_once(tmp_path, setup, reference):
    mdp, obj, pi0 = setup
    path = tmp_path / "interrupted_frame.h5"

    def boom(state, context):          # default interval: called at saved frames only
        if state.t > 0.12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False, storage=path,
                trackers=[boom])
    back = wg.Trajectory.from_hdf5(path)
    assert back.diagnostics["complete"] is False
    _assert_close_frames(back, _first(reference, 4))


def _first(traj, n):
    return wg.Trajectory(traj.times[:n], traj.J[:n], traj.grad_norm2[:n], traj.masses[:n],
                         traj.actions, traj.states, {k: v[:n] for k, v in traj.params.items()})


def test_resume_continues_and_matches_uninterrupted_run(tmp_path, setup, reference):
    mdp, obj, pi0 = setup
    path = tmp_path / "resume.h5"
    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False, storage=path,
                trackers=[_interrupt_at(0.125)])
    res = wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False, storage=path,
                  resume=True)
    # continued from the last stored frame
    assert res.times[0] == pytest.approx(0.13, abs=1e-12)
    assert res.times[-1] == pytest.approx(T_END, abs=1e-12)
    assert res.diagnostics["steps"] == 7
    np.testing.assert_allclose(res.final.masses, reference.final.masses, rtol=0, atol=1e-12)
    assert res.J[-1] == pytest.approx(reference.J[-1], rel=1e-12)
    back = wg.Trajectory.from_hdf5(path)
    assert back.diagnostics["complete"] is True
    # the stored frames so far, then the resumed run's frames (after resuming, frames are saved
    # every SAVE counted from the resume time, so they need not fall on the original grid)
    np.testing.assert_allclose(back.times[:4], [0.0, 0.05, 0.1, 0.13], atol=1e-12)
    np.testing.assert_allclose(back.times[4:], res.times[1:], rtol=0, atol=0)
    assert back.times[-1] == pytest.approx(T_END, abs=1e-12) and np.all(np.diff(back.times) > 0)
    np.testing.assert_array_equal(back.masses[-1], res.final.masses)
    assert np.all(np.diff(back.J) < 0)


def test_resume_from_a_different_frame_shape_raises(tmp_path, setup):
    mdp, obj, pi0 = setup
    path = tmp_path / "shape.h5"
    wg.flow(mdp, obj, pi0, t_end=0.02, dt=DT, progress=False, storage=path)
    for kw in ({"n_actions": 11}, {"n_states": 25}):
        other = wg.problems.get("lqr1d", noise=0.6, **{"n_states": 21, "n_actions": 15, **kw})
        with pytest.raises(wg.ValidationError):
            wg.flow(other, obj, wg.Policy.uniform(other), t_end=0.05, dt=DT, progress=False,
                    storage=path, resume=True)
    # the file is left untouched
    assert len(wg.Trajectory.from_hdf5(path)) == 3


def test_resume_missing_file_raises(tmp_path, setup):
    mdp, obj, pi0 = setup
    with pytest.raises((FileNotFoundError, wg.ValidationError)):
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, storage=tmp_path / "nope.h5",
                resume=True)
    assert not (tmp_path / "nope.h5").exists()


def test_resume_without_storage_raises(setup):
    mdp, obj, pi0 = setup
    with pytest.raises(wg.ValidationError):
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, resume=True)


# ------------------------------------------------------------------------------ trackers
def test_steady_state_tracker_stops_early(setup):
    mdp, obj, pi0 = setup
    traj = wg.flow(mdp, obj, pi0, t_end=1e3, progress=False, trackers=["steady_state"],
                   save_every=10.0)
    reason = traj.diagnostics["stop_reason"]
    assert reason is not None and "steady state" in reason
    assert traj.times[-1] < 1e3
    # the final frame is the state where it stopped, and it is (nearly) the optimum
    sol = wg.solve(mdp, obj)
    assert traj.J[-1] == pytest.approx(sol.J, rel=1e-8)
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-6


def test_callable_returning_false_stops(setup):
    mdp, obj, pi0 = setup
    calls = []

    def stop(state, context):
        calls.append(state.t)
        assert context["scheme"] == "otto" and context["mdp"] is mdp
        return False if state.t > 0.1 else None

    traj = wg.flow(mdp, obj, pi0, t_end=1.0, dt=DT, save_every=DT, progress=False, trackers=[stop])
    assert traj.diagnostics["stop_reason"] == "stopped by callback"
    assert traj.times[-1] == pytest.approx(0.11, abs=1e-12)
    assert calls[-1] == traj.times[-1]


def test_callable_returning_string_stops_with_that_reason(setup):
    mdp, obj, pi0 = setup
    traj = wg.flow(mdp, obj, pi0, t_end=1.0, dt=DT, progress=False,
                   trackers=[CallbackTracker(lambda s, c: "enough, thanks" if s.t > 0.05 else None,
                                             interval=0.0)])
    assert traj.diagnostics["stop_reason"] == "enough, thanks"
    assert traj.times[-1] == pytest.approx(0.06, abs=1e-12)
    # the state where it stopped is the last frame
    assert traj.diagnostics["steps"] == 6


def test_callable_returning_true_or_none_does_not_stop(setup):
    mdp, obj, pi0 = setup
    traj = wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False,
                   trackers=[lambda s, c: True])
    assert traj.diagnostics["stop_reason"] is None
    assert traj.times[-1] == pytest.approx(0.05)


def _fake_state(masses, J):
    return FlowState(0.3, masses, SimpleNamespace(J=J))


def test_guard_tracker_stops_on_non_finite_values():
    g = GuardTracker()
    ok = np.full((2, 3), 1.0 / 3.0)
    g.start(_fake_state(ok, 2.0), {})
    assert g.handle(_fake_state(ok, 2.5), {}) is None
    bad = ok.copy()
    bad[1, 2] = np.nan
    reason = g.handle(_fake_state(bad, 2.5), {})
    assert reason is not None and "non-finite masses" in reason
    bad[1, 2] = np.inf
    assert "non-finite masses" in g.handle(_fake_state(bad, 2.5), {})
    assert "non-finite J" in g.handle(_fake_state(ok, np.nan), {})
    neg = ok.copy()
    neg[0, 0] = -1e-6
    assert "negative mass" in g.handle(_fake_state(neg, 2.5), {})
    assert "blew up" in g.handle(_fake_state(ok, 1e9), {})


def test_unknown_tracker_raises(setup):
    mdp, obj, pi0 = setup
    with pytest.raises(wg.ValidationError):
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, trackers=["nonsense"])
