"""A resume reports the frames it drops from the storage file -- a torn tail, frames written but
never counted, snapshots after the restart frame -- as a read of the file counts them."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

import wgflow as wg

T_END, DT, SAVE = 0.2, 0.01, 0.05


def _run(storage_case, path, t_end, resume=False):
    mdp, obj, pi0 = storage_case
    return wg.flow(mdp, obj, None if resume else pi0, t_end=t_end, dt=DT, save_every=SAVE,
                   progress=False, storage=path, resume=resume)


def _extra_rows(path, k, counted):
    """Append ``k`` frames after the stored ones, as a killed run can leave them: with
    ``counted`` the counter covers them but their data never reached the disk (masses all zero,
    checksum wrong: a torn tail); without, their data is complete but the counter was never
    raised (uncommitted)."""
    wg.h5.unseal(path)                   # (a killed run never sealed its file)
    with h5py.File(path, "r+") as f:
        g = f["trajectory"]
        n = int(g.attrs["n_frames"])
        names = ["times", "J", "grad_norm2", "masses", "restart", "checksum"]
        names += [f"state/{s}" for s in g["state"]] + [f"params/{s}" for s in g["params"]]
        for name in names:
            g[name].resize(n + k, axis=0)
        for j in range(k):
            g["times"][n + j] = g["times"][n - 1] + (j + 1) * SAVE
            g["J"][n + j] = g["J"][n - 1]
            g["restart"][n + j] = 1
            if not counted:               # a copy of the last frame, shifted in time
                g["masses"][n + j] = g["masses"][n - 1]
                g["grad_norm2"][n + j] = g["grad_norm2"][n - 1]
        if counted:
            g.attrs["n_frames"] = n + k
        g.attrs["complete"] = False


@pytest.mark.parametrize("k", [1, 2])
def test_a_resume_counts_the_torn_tail_it_drops(tmp_path, storage_case, k):
    path = tmp_path / "run.h5"
    first = _run(storage_case, path, T_END)
    _extra_rows(path, k, counted=True)
    with pytest.warns(UserWarning, match=f"torn tail of {k} frame"):
        read = wg.Trajectory.from_hdf5(path)
    assert read.diagnostics["torn_frames"] == k and len(read) == len(first)
    with pytest.warns(UserWarning, match=f"torn tail of {k} frame"):
        res = _run(storage_case, path, T_END + SAVE, resume=True)
    assert res.diagnostics["resumed_from"] == {
        "t": first.times[-1], "frame": len(first) - 1, "dropped_frames": 0,
        "torn_frames": read.diagnostics["torn_frames"], "uncommitted_frames": 0}
    # the file keeps the record; read now, it holds no torn frame
    back = wg.Trajectory.from_hdf5(path)
    assert back.diagnostics["torn_frames"] == 0 and len(back) == len(first) + 1
    assert back.diagnostics["resumed_from"]["torn_frames"] == k


def test_a_resume_counts_the_uncommitted_frames_it_drops(tmp_path, storage_case):
    path = tmp_path / "run.h5"
    first = _run(storage_case, path, T_END)
    _extra_rows(path, 1, counted=False)
    read = wg.Trajectory.from_hdf5(path)
    assert read.diagnostics["uncommitted_frames"] == 1 and read.diagnostics["torn_frames"] == 0
    np.testing.assert_array_equal(read.masses, first.masses)
    res = _run(storage_case, path, T_END + SAVE, resume=True)
    assert res.diagnostics["resumed_from"]["uncommitted_frames"] == 1
    assert res.diagnostics["resumed_from"]["torn_frames"] == 0
    back = wg.Trajectory.from_hdf5(path)
    assert back.diagnostics["uncommitted_frames"] == 0 and len(back) == len(first) + 1
