"""Trajectory, HDF5 storage of flows (per-frame append, interruption, resume) and trackers."""
from __future__ import annotations

import os
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import wgflow as wg
from wgflow.flows import CallbackTracker, FlowState, GuardTracker

T_END, DT, SAVE = 0.2, 0.01, 0.05


@pytest.fixture(scope="module")
def reference(storage_case):
    """Uninterrupted run with a fixed dt."""
    mdp, obj, pi0 = storage_case
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
    """Two runs of the same flow, one with storage: equal to rounding. (Not bitwise in general:
    with storage every frame is a restart point where the evaluator drops the factorization it
    reuses as a preconditioner, which changes the last bits of later evaluations.)"""
    np.testing.assert_allclose(a.times, b.times, rtol=0, atol=1e-14)
    np.testing.assert_allclose(a.J, b.J, rtol=rtol)
    np.testing.assert_allclose(a.grad_norm2, b.grad_norm2, rtol=1e-10)
    np.testing.assert_allclose(a.masses, b.masses, rtol=0, atol=rtol)


# ------------------------------------------------------------------------------ Trajectory
def test_trajectory_fields_are_consistent(storage_case, reference):
    mdp, obj, pi0 = storage_case
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


def test_from_hdf5_rejects_other_wgflow_files(tmp_path, storage_case):
    mdp, _, pi0 = storage_case
    path = wg.save(tmp_path / "policy.h5", pi0)
    with pytest.raises(wg.FileFormatError):
        wg.Trajectory.from_hdf5(path)


# ------------------------------------------------------------------------------ storage=path
def test_storage_writes_every_saved_frame(tmp_path, storage_case, reference):
    mdp, obj, pi0 = storage_case
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


def test_interrupted_run_leaves_readable_file(tmp_path, storage_case, reference):
    mdp, obj, pi0 = storage_case
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


def test_interrupt_at_a_frame_time_is_stored_once(tmp_path, storage_case, reference):
    mdp, obj, pi0 = storage_case
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


def _stored(path):
    """Frames, restart flags and scheme state of a storage file, read with h5py."""
    with h5py.File(path, "r") as f:
        g = f["trajectory"]
        n = int(g.attrs["n_frames"])
        return {"restart": g["restart"][:n].astype(bool),
                **{f"state/{k}": g["state"][k][:n] for k in g["state"]}}


def test_resume_continues_from_the_last_restart_frame_bit_for_bit(tmp_path, storage_case):
    mdp, obj, pi0 = storage_case
    kw = dict(t_end=T_END, dt=DT, save_every=SAVE, progress=False)
    ref = wg.flow(mdp, obj, pi0, storage=tmp_path / "ref.h5", **kw)
    path = tmp_path / "resume.h5"
    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, pi0, storage=path, trackers=[_interrupt_at(0.125)], **kw)
    # the state at the interruption is stored as a snapshot, not as a restart point
    assert _stored(path)["restart"].tolist() == [True, True, True, False]
    res = wg.flow(mdp, obj, None, storage=path, resume=True, **kw)
    # continued from the last restart frame (t = 0.1): the snapshot at 0.13 is dropped
    assert res.diagnostics["resumed_from"] == {"t": res.times[0], "frame": 2, "dropped_frames": 1,
                                               "torn_frames": 0, "uncommitted_frames": 0}
    assert res.times[0] == pytest.approx(0.1, abs=1e-12)
    assert res.diagnostics["steps"] == 10
    back = wg.Trajectory.from_hdf5(path)
    assert back.diagnostics["complete"] is True
    _assert_same_frames(back, wg.Trajectory.from_hdf5(tmp_path / "ref.h5"))
    _assert_same_frames(res, _last(ref, 3))
    assert _stored(path)["restart"].all()


def _last(traj, n):
    return wg.Trajectory(traj.times[-n:], traj.J[-n:], traj.grad_norm2[-n:], traj.masses[-n:],
                         traj.actions, traj.states, {k: v[-n:] for k, v in traj.params.items()})


# every registered scheme, adaptive steps where the scheme has them: (scheme, options, t_end)
RESUME_CASES = [("otto", {}, 0.3), ("otto", {"method": "explicit"}, 0.3), ("jko", {}, 4.0),
                ("jko", {"implicit": True}, 4.0), ("pmd", {}, 4.0), ("pg", {}, 2.0), ("wpo", {}, 1.0), ("wpo", {"samples": 6}, 1.0),
                ("wppg", {}, 1.0), ("wppg", {"particles": 7}, 1.0)]


def test_resume_cases_cover_every_registered_scheme():
    assert {c[0] for c in RESUME_CASES} == set(wg.flows.scheme_names())


@pytest.mark.parametrize("scheme, options, t_end", RESUME_CASES,
                         ids=[f"{c[0]}-{'-'.join(c[1]) or 'default'}" for c in RESUME_CASES])
def test_resumed_run_is_bit_identical_for_every_scheme(tmp_path, storage_case, scheme, options, t_end):
    """Interrupt a run half-way, resume it: the file equals the uninterrupted run's bit for bit
    (times, J, gradient norms, masses, the scheme's parameters and its state)."""
    mdp, obj, pi0 = storage_case
    kw = dict(scheme=scheme, t_end=t_end, save_every=t_end / 8, progress=False, **options)
    ref = wg.flow(mdp, obj, pi0, storage=tmp_path / "ref.h5", **kw)
    assert ref.diagnostics["steps"] >= 8
    path = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, pi0, storage=path, trackers=[_interrupt_at(0.55 * t_end)], **kw)
    res = wg.flow(mdp, obj, None, storage=path, resume=True, **kw)
    assert 0 < res.diagnostics["resumed_from"]["frame"] < len(ref) - 1
    a, b = wg.Trajectory.from_hdf5(tmp_path / "ref.h5"), wg.Trajectory.from_hdf5(path)
    _assert_same_frames(a, b)
    sa, sb = _stored(tmp_path / "ref.h5"), _stored(path)
    assert sorted(sa) == sorted(sb) and "state/dt_prev" in sa
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_resume_is_bit_identical_when_factorizations_are_reused(tmp_path):
    """On a problem large enough that evaluations reuse the previous LU factors (GMRES
    preconditioner), stored frames are restart points: resuming still gives the same bits."""
    mdp = wg.problems.get("lqr1d", n_states=201, n_actions=15, noise=0.6)
    obj = wg.Discounted(0.9, entropy=0.3)
    pi0 = wg.Policy.gaussian(mdp, mean=1.0, std=0.8)
    kw = dict(t_end=0.3, save_every=0.05, progress=False)
    ref = wg.flow(mdp, obj, pi0, storage=tmp_path / "ref.h5", **kw)
    assert ref.diagnostics["linear_solver"]["krylov_solves"] > 0      # reuse is exercised
    path = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, pi0, storage=path, trackers=[_interrupt_at(0.17)], **kw)
    wg.flow(mdp, obj, None, storage=path, resume=True, **kw)
    _assert_same_frames(wg.Trajectory.from_hdf5(tmp_path / "ref.h5"), wg.Trajectory.from_hdf5(path))


def test_resume_twice_and_to_a_later_end(tmp_path, storage_case):
    mdp, obj, pi0 = storage_case
    kw = dict(dt=DT, save_every=SAVE, progress=False)
    path = tmp_path / "r.h5"
    wg.flow(mdp, obj, pi0, t_end=0.1, storage=path, **kw)
    wg.flow(mdp, obj, None, t_end=0.15, storage=path, resume=True, **kw)
    res = wg.flow(mdp, obj, None, t_end=T_END, storage=path, resume=True, **kw)
    assert res.times[0] == pytest.approx(0.15, abs=1e-12)
    ref = wg.flow(mdp, obj, pi0, t_end=T_END, storage=tmp_path / "ref.h5", **kw)
    _assert_same_frames(wg.Trajectory.from_hdf5(path), ref)


def test_storage_refuses_an_existing_file_unless_told(tmp_path, storage_case):
    mdp, obj, pi0 = storage_case
    path = tmp_path / "run.h5"
    first = wg.flow(mdp, obj, pi0, t_end=0.02, dt=DT, progress=False, storage=path)
    before = path.read_bytes()
    with pytest.raises(wg.errors.ExistingFileError, match="overwrite=True.*resume=True") as info:
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, storage=path)
    assert isinstance(info.value, FileExistsError)
    assert path.read_bytes() == before

    # overwrite=True replaces it, but only once the new run has a committed frame: a run that
    # fails before that leaves the old file as it was, and no temporary file
    def fail_at_start(state, context):
        raise RuntimeError("no frame yet")

    class Failing(wg.flows.Tracker):
        def start(self, state, context):
            fail_at_start(state, context)

    with pytest.raises(RuntimeError, match="no frame yet"):
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, storage=path, overwrite=True,
                trackers=[Failing()])
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["run.h5"]
    second = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=0.05, dt=DT, progress=False,
                     storage=path, overwrite=True)
    _assert_same_frames(wg.Trajectory.from_hdf5(path), second)
    assert len(second) != len(first) and os.listdir(tmp_path) == ["run.h5"]


def test_max_steps_keeps_the_final_state(tmp_path, storage_case):
    mdp, obj, pi0 = storage_case
    path = tmp_path / "m.h5"
    traj = wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False,
                   max_steps=7, storage=path)
    assert "max_steps = 7" in traj.diagnostics["stop_reason"]
    # frames 0 and 0.05, then the state after 7 steps (t = 0.07), between two frames
    np.testing.assert_allclose(traj.times, [0.0, 0.05, 0.07], atol=1e-12)
    ref = wg.flow(mdp, obj, pi0, t_end=0.07, dt=DT, save_every=SAVE, progress=False)
    np.testing.assert_allclose(traj.final.masses, ref.final.masses, rtol=0, atol=1e-13)
    back = wg.Trajectory.from_hdf5(path)
    _assert_same_frames(back, traj)
    assert _stored(path)["restart"].tolist() == [True, True, False]


def test_reading_a_file_that_a_running_flow_writes(tmp_path, storage_case):
    mdp, obj, pi0 = storage_case
    path = tmp_path / "live.h5"
    seen = []

    def peek(state, context):
        seen.append(len(wg.Trajectory.from_hdf5(path)))

    wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False, storage=path,
            trackers=[peek])
    assert seen == [1, 2, 3, 4]       # called at each new frame, before it is stored


# ------------------------------------------------------------------------------ torn and damaged files
def _stored_run(tmp_path, storage_case):
    """A storage file as a run killed after its last frame leaves it: not sealed (a run seals
    its file when it closes it; a sealed file refuses any change outright)."""
    mdp, obj, pi0 = storage_case
    path = tmp_path / "run.h5"
    wg.flow(mdp, obj, pi0, t_end=T_END, dt=DT, save_every=SAVE, progress=False, storage=path)
    wg.h5.unseal(path)
    return path


def _tear(path, how):
    """Simulate a frame that was counted but not (completely) written."""
    with h5py.File(path, "r+") as f:
        g = f["trajectory"]
        n = int(g.attrs["n_frames"])
        if how == "zero masses":      # t and J written, the masses chunk never was
            for name in ("times", "J", "grad_norm2", "masses", "restart", "checksum"):
                g[name].resize(n + 1, axis=0)
            g["times"][n] = g["times"][n - 1] + SAVE
            g["J"][n] = g["J"][n - 1] - 1.0
            g["restart"][n] = 1
            g["checksum"][n] = 12345
            for k in g["state"]:
                g["state"][k].resize(n + 1, axis=0)
        elif how == "count ahead":    # the counter reached the disk, the datasets did not grow
            pass
        g.attrs["n_frames"] = n + 1
        g.attrs["complete"] = False


@pytest.mark.parametrize("how", ["zero masses", "count ahead"])
def test_torn_tail_is_dropped_on_read_and_never_resumed(tmp_path, storage_case, how):
    mdp, obj, pi0 = storage_case
    path = _stored_run(tmp_path, storage_case)
    good = wg.Trajectory.from_hdf5(path)
    _tear(path, how)
    with pytest.warns(UserWarning, match="torn tail of 1 frame"):
        back = wg.Trajectory.from_hdf5(path)
    _assert_same_frames(back, good)
    assert back.diagnostics["torn_frames"] == 1 and back.diagnostics["complete"] is False
    # a resume continues from the last complete restart frame and overwrites the torn one
    with pytest.warns(UserWarning, match="torn tail"):
        res = wg.flow(mdp, obj, None, t_end=T_END + SAVE, dt=DT, save_every=SAVE, progress=False,
                      storage=path, resume=True)
    assert res.times[0] == good.times[-1] and np.all(res.masses.sum(axis=2) > 0.99)
    full = wg.Trajectory.from_hdf5(path)
    assert full.diagnostics["torn_frames"] == 0 and len(full) == len(good) + 1


def test_damaged_middle_frame_raises(tmp_path, storage_case):
    path = _stored_run(tmp_path, storage_case)
    with h5py.File(path, "r+") as f:
        m = f["trajectory"]["masses"][1]
        f["trajectory"]["masses"][1] = m[:, ::-1]      # still valid masses, not the stored ones
    with pytest.raises(wg.FileFormatError, match=r"frame 1 of /trajectory.*checksum"):
        wg.Trajectory.from_hdf5(path)


def test_resume_missing_file_raises(tmp_path, storage_case):
    mdp, obj, pi0 = storage_case
    with pytest.raises(wg.MissingFileError):
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, storage=tmp_path / "nope.h5",
                resume=True)
    assert not (tmp_path / "nope.h5").exists()


def test_resume_without_storage_raises(storage_case):
    mdp, obj, pi0 = storage_case
    with pytest.raises(wg.ValidationError, match="resume=True needs storage"):
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, resume=True)


# ------------------------------------------------------------------------------ stalls
@pytest.mark.parametrize("problem, objective", [
    (dict(n_actions=21), wg.Discounted(0.5, entropy=1e300)),           # huge entropy
    (dict(n_actions=21, curvature=2e12), wg.Discounted(0.5, entropy=0.1)),  # huge costs
])
def test_a_step_size_that_cannot_make_progress_stops_the_flow(problem, objective):
    """Reaching t_end = 10 with explicit (CFL-bounded) steps would take ~1e13 (costs 1e12) or
    ~1e300 (entropy 1e300) steps: the flow stops once J has settled, with the reason, after a few
    thousand steps."""
    mdp = wg.problems.get("quadratic_bandit", **problem)
    traj = wg.flow(mdp, objective, wg.Policy.uniform(mdp), t_end=10.0, progress=False,
                   method="explicit")
    reason = traj.diagnostics["stop_reason"]
    assert reason.startswith("stalled") and "rescale" in reason
    assert traj.diagnostics["steps"] <= 5000 and traj.times[-1] < 1e-9
    assert not traj.diagnostics["interrupted"]
    # it stopped where it had settled: at the optimum (relative gap from the solver's stopping
    # tolerance and the flow's last J changes, both far below 1e-8)
    assert traj.J[-1] == pytest.approx(wg.solve(mdp, objective).J, rel=1e-8)


def test_a_long_t_end_stopped_by_a_tracker_is_not_a_stall(storage_case):
    """t_end far beyond reach is fine while J still moves (runs stopped by their trackers)."""
    mdp, obj, pi0 = storage_case
    traj = wg.flow(mdp, obj, pi0, t_end=1e12, save_every=1e12, progress=False,
                   trackers=[CallbackTracker(lambda s, c: "enough" if s.t > 2.0 else None,
                                             interval=0.0)])
    assert traj.diagnostics["stop_reason"] == "enough"


# ------------------------------------------------------------------------------ trackers
def test_steady_state_tracker_stops_early(storage_case):
    mdp, obj, pi0 = storage_case
    traj = wg.flow(mdp, obj, pi0, t_end=1e3, progress=False, trackers=["steady_state"],
                   save_every=10.0)
    reason = traj.diagnostics["stop_reason"]
    assert reason is not None and "steady state" in reason
    assert traj.times[-1] < 1e3
    # the final frame is the state where it stopped, and it is (nearly) the optimum
    sol = wg.solve(mdp, obj)
    assert traj.J[-1] == pytest.approx(sol.J, rel=1e-8)
    assert np.max(np.abs(traj.final.masses - sol.policy.masses)) < 1e-6


def test_callable_returning_false_stops(storage_case):
    mdp, obj, pi0 = storage_case
    calls = []

    def stop(state, context):
        calls.append(state.t)
        assert context["scheme"] == "otto" and context["mdp"] is mdp
        return False if state.t > 0.1 else None

    traj = wg.flow(mdp, obj, pi0, t_end=1.0, dt=DT, save_every=DT, progress=False, trackers=[stop])
    assert traj.diagnostics["stop_reason"] == "stopped by callback"
    assert traj.times[-1] == pytest.approx(0.11, abs=1e-12)
    assert calls[-1] == traj.times[-1]


def test_callable_returning_string_stops_with_that_reason(storage_case):
    mdp, obj, pi0 = storage_case
    traj = wg.flow(mdp, obj, pi0, t_end=1.0, dt=DT, progress=False,
                   trackers=[CallbackTracker(lambda s, c: "enough, thanks" if s.t > 0.05 else None,
                                             interval=0.0)])
    assert traj.diagnostics["stop_reason"] == "enough, thanks"
    assert traj.times[-1] == pytest.approx(0.06, abs=1e-12)
    # the state where it stopped is the last frame
    assert traj.diagnostics["steps"] == 6


def test_callable_returning_true_or_none_does_not_stop(storage_case):
    mdp, obj, pi0 = storage_case
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


def test_unknown_tracker_raises(storage_case):
    mdp, obj, pi0 = storage_case
    with pytest.raises(wg.ValidationError):
        wg.flow(mdp, obj, pi0, t_end=0.05, dt=DT, progress=False, trackers=["nonsense"])


def test_steady_state_tracker_is_not_fooled_by_long_implicit_steps():
    # pendulum 21^2 x 11 at gamma 0.99: implicit otto steps grow to 1e10 while the policy still
    # moves (a mass changed by 0.28 in one such step); the tracker stops only once the change
    # itself is small, at the optimum (the same run without the tracker ends at J - J* ~ 1e-10)
    mdp = wg.problems.get("pendulum", n_theta=21, n_omega=21, n_actions=11)
    obj = wg.Discounted(0.99, entropy=0.1)
    sol = wg.solve(mdp, obj, method="policy_iteration")
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=1e300, trackers=["steady_state"],
                 progress=False)
    assert "steady state" in tr.diagnostics["stop_reason"]
    # J* exact to rounding; the flow's own error at its stop
    assert tr.J[-1] - sol.J < 1e-8 * abs(sol.J)


@pytest.mark.parametrize("t_end, save_every", [(1e-300, None), (1.0, 1e-300)])
def test_tiny_times_do_not_hang(t_end, save_every):
    # the first frame time after t is found by a jump, not by steps of one save interval
    # (save_every = 1e-302 used to need ~1e290 of them)
    mdp = wg.problems.get("lqr1d", n_states=11, n_actions=7)
    obj = wg.Discounted(0.9, entropy=0.5)
    from wgflow.flows import _next_frame_time
    # the first grid time beyond the tolerance 1e-12 max(1, |t|) of t = 0
    assert 1e-12 < _next_frame_time(0.0, 1e-302) <= 1e-12 * (1 + 1e-15)
    tr = wg.flow(mdp, obj, wg.Policy.uniform(mdp), t_end=t_end, save_every=save_every,
                 progress=False, max_steps=3)
    assert tr.times[0] == 0.0 and tr.diagnostics["steps"] <= 3


def test_resume_says_what_it_ignores(tmp_path, storage_case):
    # a policy0 given with resume=True is not used, and a t_end the stored run has already
    # reached runs nothing: both are said, not silently ignored
    mdp, obj, pi0 = storage_case
    kw = dict(dt=DT, save_every=SAVE, progress=False)
    path = tmp_path / "r.h5"
    wg.flow(mdp, obj, pi0, t_end=0.1, storage=path, **kw)
    with pytest.warns(UserWarning, match="policy0 given is not used"):
        wg.flow(mdp, obj, pi0, t_end=0.15, storage=path, resume=True, **kw)
    with pytest.warns(UserWarning, match="already at t = 0.15 >= t_end = 0.05"):
        res = wg.flow(mdp, obj, None, t_end=0.05, storage=path, resume=True, **kw)
    assert res.diagnostics["steps"] == 0


def test_resume_with_an_initial_law_compares_it_by_digest(tmp_path):
    # a non-uniform initial law of many states: a resume with the same law continues bit for
    # bit; with another law it is refused, the message naming the law, not printing it
    mdp = wg.problems.get("lqr1d", n_states=401, n_actions=9)
    x = mdp.states.centers[:, 0]
    mu = np.exp(-0.5 * (x - 1.0) ** 2)
    mu /= mu.sum()
    obj = wg.Discounted(0.9, entropy=0.3, initial=mu)
    pi0 = wg.Policy.gaussian(mdp, mean=0.5, std=1.0)
    kw = dict(dt=DT, save_every=SAVE, progress=False)
    # (the reference stores its frames too: stored frames are restart points)
    full = wg.flow(mdp, obj, pi0, t_end=2 * SAVE, storage=tmp_path / "full.h5", **kw)
    path = tmp_path / "run.h5"
    with pytest.raises(KeyboardInterrupt):
        wg.flow(mdp, obj, pi0, t_end=2 * SAVE, storage=path, trackers=[_interrupt_at(1.5 * SAVE)],
                **kw)
    res = wg.flow(mdp, obj, None, t_end=2 * SAVE, storage=path, resume=True, **kw)
    np.testing.assert_array_equal(res.masses[-1], full.masses[-1])
    assert res.J[-1] == full.J[-1]
    other = wg.Discounted(0.9, entropy=0.3, initial=mu[::-1].copy())
    with pytest.raises(wg.ValidationError, match="initial law") as info:
        wg.flow(mdp, other, None, t_end=3 * SAVE, storage=path, resume=True, **kw)
    assert len(str(info.value)) < 1000
