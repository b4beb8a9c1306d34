"""Files without a seal (written before seals, or a flow's storage left by a killed run) are
parsed by a child process before the loader's: metadata damage that crashes the HDF5 library
raises FileFormatError instead of killing the process that loads the file.

Every load of a damaged file runs in a forked child here, so that a crash fails the test instead
of ending pytest.
"""
from __future__ import annotations

import faulthandler
import os
import signal

import h5py
import numpy as np
import pytest

import wgflow as wg
from wgflow import h5

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and POSIX signals")

T_END, DT, SAVE = 0.2, 0.01, 0.05


def _in_child(func, *args):
    """Run ``func(*args)`` in a forked child: ``(signal that killed it or None, its result or
    'ExceptionName: message' as text)``."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # child
        os.close(r)
        faulthandler.disable()                       # (pytest's: a crash here is expected)
        try:
            out = repr(func(*args))
        except BaseException as exc:                 # noqa: BLE001 - reported to the parent
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    buf = b""
    while chunk := os.read(r, 65536):
        buf += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return (os.WTERMSIG(status) if os.WIFSIGNALED(status) else None), buf.decode()


def _bad_string_kind(data: bytes) -> bytes:
    """``data`` with the root attribute ``wgflow_type`` claiming an undefined kind of
    variable-length type.

    h5py writes it as a version-1 attribute message: the name ``wgflow_type\\0`` (12 bytes,
    padded to 16), then the datatype message, whose first byte is version 1 / class 9
    (variable length) and whose low nibble of the second byte is the kind (0 sequence, 1
    string); 2 is undefined.
    """
    at = data.index(b"wgflow_type\x00") + 16
    assert data[at] == 0x19 and data[at + 1] & 0x0F == 1, "unexpected attribute layout"
    out = bytearray(data)
    out[at + 1] = (out[at + 1] & 0xF0) | 2
    return bytes(out)


def _random_damage(data: bytes, seed: int) -> bytes:
    """1 to 7 bytes of the first 4 kB set to random values."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 8))):
        i, v = int(rng.integers(0, 4096)), int(rng.integers(0, 256))
        if i < len(out):
            out[i] = v
    return bytes(out)


def _raw_h5py_read(path):
    """What the loader does first, without wgflow: read the root attributes."""
    with h5py.File(path, "r") as f:
        return {k: f.attrs[k] for k in f.attrs}


@pytest.fixture(scope="module")
def legacy_solution(tmp_path_factory):
    """A small Solution as written before seals (no user block), and the Solution."""
    mdp = wg.problems.get("lqr1d", n_states=9, n_actions=5)
    sol = wg.solve(mdp, wg.Discounted(0.9, entropy=0.5))
    folder = tmp_path_factory.mktemp("legacy")
    wg.save(folder / "sealed.h5", sol)
    path = folder / "legacy.h5"
    path.write_bytes((folder / "sealed.h5").read_bytes()[h5.USERBLOCK:])   # HDF5 addresses are
    return path, sol                                                      # relative to the base


def test_damage_that_crashes_hdf5_raises_file_format_error(legacy_solution, tmp_path):
    path, sol = legacy_solution
    bad = tmp_path / "bad.h5"
    bad.write_bytes(_bad_string_kind(path.read_bytes()))
    sig, _ = _in_child(_raw_h5py_read, bad)
    if sig is None:
        pytest.skip("this HDF5 build does not crash on an undefined variable-length kind")
    assert sig == signal.SIGSEGV
    sig, out = _in_child(wg.load, bad)
    assert sig is None, f"wg.load was killed by {signal.Signals(sig).name}"
    assert out.startswith("FileFormatError") and "crashed" in out and "SIGSEGV" in out
    assert str(bad) in out
    # the undamaged legacy file loads (probed, in this process)
    back = wg.load(path)
    np.testing.assert_array_equal(back.V, sol.V)
    np.testing.assert_array_equal(back.policy.masses, sol.policy.masses)


def test_a_probe_that_does_not_finish_refuses_the_file(legacy_solution, monkeypatch):
    # a limit far below the child's start-up time (an interpreter and h5py: tenths of a second)
    path, _ = legacy_solution
    monkeypatch.setattr(h5, "PROBE_TIMEOUT", 1e-3)
    with pytest.raises(wg.FileFormatError, match="did not finish reading this file"):
        wg.load(path)


def test_without_a_child_interpreter_the_file_is_read_unprobed(legacy_solution, monkeypatch,
                                                              tmp_path):
    path, sol = legacy_solution
    monkeypatch.setattr("sys.executable", str(tmp_path / "no-such-python"))
    with pytest.warns(RuntimeWarning, match="could not be test-read in a separate process"):
        back = wg.load(path)
    np.testing.assert_array_equal(back.V, sol.V)


@pytest.mark.parametrize("seed", [122, 145])
def test_random_damage_of_a_legacy_file_never_crashes_the_loader(legacy_solution, tmp_path, seed):
    # two of the 300 seeds 0..299 whose damage crashed wg.load on the file of this fixture;
    # whatever the damage now does to HDF5, the load may only raise FileFormatError
    path, _ = legacy_solution
    bad = tmp_path / "bad.h5"
    bad.write_bytes(_random_damage(path.read_bytes(), seed))
    sig, out = _in_child(wg.load, bad)
    assert sig is None, f"wg.load was killed by {signal.Signals(sig).name}"
    assert out.startswith("FileFormatError"), out


# ------------------------------------------------------------------------------ flow storage
def _flow(storage_case, path, resume=False, trackers=None):
    mdp, obj, pi0 = storage_case
    return wg.flow(mdp, obj, None if resume else pi0, t_end=T_END, dt=DT, save_every=SAVE,
                   progress=False, storage=path, resume=resume, trackers=trackers)


def _killed_run(storage_case, path, t_kill):
    """A run whose process is killed (SIGKILL) at the first step with t >= t_kill."""
    def kill(state, context):
        if state.t >= t_kill - 1e-12:
            os.kill(os.getpid(), signal.SIGKILL)

    sig, out = _in_child(_flow, storage_case, path, False, [kill])
    assert sig == signal.SIGKILL, out


def test_finished_storage_is_sealed(tmp_path, storage_case):
    path = tmp_path / "run.h5"
    traj = _flow(storage_case, path)
    data = path.read_bytes()
    assert data.startswith(b"WGFLOW-SHA256 ") and data[h5.USERBLOCK:h5.USERBLOCK + 4] == b"\x89HDF"
    back = wg.Trajectory.from_hdf5(path)
    np.testing.assert_array_equal(back.masses, traj.masses)
    assert back.diagnostics["complete"] is True
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0x01                      # one bit of the frames' data
    (tmp_path / "bad.h5").write_bytes(bytes(bad))
    with pytest.raises(wg.FileFormatError, match="does not match its checksum"):
        wg.Trajectory.from_hdf5(tmp_path / "bad.h5")


def test_storage_of_a_killed_run_is_probed_and_resumes_exactly(tmp_path, storage_case):
    ref = tmp_path / "ref.h5"
    _flow(storage_case, ref)
    path = tmp_path / "run.h5"
    _killed_run(storage_case, path, 0.1)                     # frames 0 and 0.05 committed
    data = path.read_bytes()
    # its metadata damaged: every loader raises FileFormatError, none crashes
    bad = tmp_path / "bad.h5"
    bad.write_bytes(_bad_string_kind(data))
    for load in (wg.load, wg.Trajectory.from_hdf5, lambda p: _flow(storage_case, p, resume=True)):
        sig, out = _in_child(load, bad)
        assert sig is None, f"killed by {signal.Signals(sig).name}"
        assert out.startswith("FileFormatError"), out
    assert data.startswith(b"WGFLOW-OPEN\n")          # no seal: the run never closed the file
    first = wg.Trajectory.from_hdf5(path)
    np.testing.assert_allclose(first.times, [0.0, SAVE], rtol=0, atol=1e-15)
    assert first.diagnostics["complete"] is False
    # the undamaged file resumes to the uninterrupted run, bit for bit, and ends sealed
    _flow(storage_case, path, resume=True)
    a, b = wg.Trajectory.from_hdf5(ref), wg.Trajectory.from_hdf5(path)
    for name in ("times", "J", "grad_norm2", "masses"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert path.read_bytes().startswith(b"WGFLOW-SHA256 ")
    assert b.diagnostics["complete"] is True


def test_storage_without_a_user_block_resumes_and_stays_unsealed(tmp_path, storage_case):
    # a storage file written before seals (no user block): resumed, it is appended to as it is
    # (sealing needs the user block that HDF5 reserves only when it creates a file)
    ref = tmp_path / "ref.h5"
    _flow(storage_case, ref)
    path = tmp_path / "run.h5"
    _killed_run(storage_case, path, 0.1)
    old = tmp_path / "old.h5"
    old.write_bytes(path.read_bytes()[h5.USERBLOCK:])
    _flow(storage_case, old, resume=True)
    assert old.read_bytes()[:4] == b"\x89HDF"
    a, b = wg.Trajectory.from_hdf5(ref), wg.Trajectory.from_hdf5(old)
    np.testing.assert_array_equal(a.masses, b.masses)
    np.testing.assert_array_equal(a.J, b.J)
