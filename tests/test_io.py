"""Tests of wgflow.io: save/load round trips, atomic writes, damaged and foreign files."""
import os

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

import wgflow as wg
import wgflow.h5 as h5
import wgflow.io as wio
import wgflow.records as records


def assert_csr_equal(A, B):
    assert A.shape == B.shape
    np.testing.assert_array_equal(A.indptr, B.indptr)
    np.testing.assert_array_equal(A.indices, B.indices)
    np.testing.assert_array_equal(A.data, B.data)


def assert_policy_equal(p, q):
    np.testing.assert_array_equal(p.masses, q.masses)
    assert p.actions == q.actions and p.states == q.states


# ------------------------------------------------------------------------------ round trips
def test_mdp_round_trip_registry_problem_rebuilds_model(tmp_path, rng):
    mdp = wg.problems.get("lqr1d", n_states=31, n_actions=11, noise=0.4)
    path = tmp_path / "lqr.h5"
    assert wg.save(path, mdp) == path
    back = wg.load(path)
    assert isinstance(back, wg.MDP)
    assert_csr_equal(back.P, mdp.P)
    np.testing.assert_array_equal(back.C, mdp.C)
    assert back.states == mdp.states and back.actions == mdp.actions
    assert back.provenance == mdp.provenance
    assert back.provenance["problem"] == "lqr1d" and back.provenance["params"]["noise"] == 0.4
    # the continuous model is back: off-grid evaluation equals the original's exactly
    s = rng.integers(0, 31, 25)
    a = rng.uniform(-4, 4, (25, 1))
    e0, e1 = mdp.evaluate_model(s, a), back.evaluate_model(s, a)
    for f in ("idx", "w", "dw", "cost", "dcost"):
        np.testing.assert_array_equal(getattr(e1, f), getattr(e0, f))
    assert type(back.model).__name__ == "DynamicsModel"


def test_mdp_round_trip_2d_problem_with_tuple_params(tmp_path, rng):
    mdp = wg.problems.get("lqr2d", n_states=(7, 7), n_actions=(3, 3))
    path = tmp_path / "lqr2d.h5"
    wg.save(path, mdp)
    back = wg.load(path)
    assert_csr_equal(back.P, mdp.P)
    s = rng.integers(0, 49, 10)
    a = rng.uniform(-3, 3, (10, 2))
    np.testing.assert_array_equal(back.evaluate_model(s, a).dw, mdp.evaluate_model(s, a).dw)


def test_mdp_round_trip_plain_arrays(tmp_path, rng):
    P = rng.random((5, 3, 5))
    P /= P.sum(axis=2, keepdims=True)
    C = rng.normal(size=(5, 3))
    mdp = wg.MDP.from_arrays(P, C)
    wg.save(tmp_path / "m.h5", mdp)
    back = wg.load(tmp_path / "m.h5")
    assert_csr_equal(back.P, mdp.P)
    np.testing.assert_array_equal(back.C, C)
    assert back.states is None and back.actions is None and back.model is None
    # garnet: tabulated model with an action grid
    g = wg.problems.get("garnet", n_states=10, n_actions=4)
    wg.save(tmp_path / "g.h5", g)
    gb = wg.load(tmp_path / "g.h5")
    assert_csr_equal(gb.P, g.P)
    a = rng.uniform(0, 1, (7, 1))
    np.testing.assert_array_equal(gb.evaluate_model(np.arange(7), a).w, g.evaluate_model(np.arange(7), a).w)


def test_policy_round_trip(tmp_path):
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=15)
    pi = wg.Policy.gaussian(mdp, mean=lambda s: -0.5 * s[:, 0], std=0.7)
    wg.save(tmp_path / "p.h5", pi)
    back = wg.load(tmp_path / "p.h5")
    assert isinstance(back, wg.Policy)
    assert_policy_equal(back, pi)
    assert back == pi


def test_solution_round_trip(tmp_path):
    mdp = wg.problems.get("garnet", n_states=20, n_actions=5, seed=2)
    mu0 = np.arange(1, 21, dtype=float)
    mu0 /= mu0.sum()
    sol = wg.solve(mdp, wg.Discounted(gamma=0.9, entropy=0.05, initial=mu0))
    wg.save(tmp_path / "s.h5", sol)
    back = wg.load(tmp_path / "s.h5")
    assert isinstance(back, wg.Solution)
    assert_policy_equal(back.policy, sol.policy)
    for f in ("V", "Q", "weights"):
        np.testing.assert_array_equal(getattr(back, f), getattr(sol, f))
    assert back.J == sol.J and back.iterations == sol.iterations
    assert back.converged == sol.converged and back.residual == sol.residual
    assert back.method == sol.method
    assert back.objective == sol.objective
    np.testing.assert_array_equal(back.objective.initial, mu0)
    np.testing.assert_array_equal(back.diagnostics["history"], sol.diagnostics["history"])


def test_evaluation_round_trip(tmp_path):
    mdp = wg.problems.get("lqr1d", n_states=21, n_actions=11)
    ev = wg.evaluate(mdp, wg.Policy.uniform(mdp), wg.Average(entropy=0.2))
    wg.save(tmp_path / "e.h5", ev)
    back = wg.load(tmp_path / "e.h5")
    assert isinstance(back, wg.Evaluation)
    for f in ("V", "Q", "weights", "c_pi"):
        np.testing.assert_array_equal(getattr(back, f), getattr(ev, f))
    assert back.J == ev.J
    assert back.objective == ev.objective
    assert_policy_equal(back.policy, ev.policy)


# ------------------------------------------------------------------------------ atomic write
def test_crash_mid_write_leaves_good_file_untouched(tmp_path, monkeypatch):
    mdp = wg.problems.get("garnet", n_states=10, n_actions=3)
    path = tmp_path / "good.h5"
    wg.save(path, mdp)
    before = path.read_bytes()

    def crashing_writer(grp, obj):
        grp.create_dataset("P_data", data=np.arange(1000.0))   # half-written content
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(records, "write_mdp", crashing_writer)
    other = wg.problems.get("garnet", n_states=12, n_actions=3, seed=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        wg.save(path, other)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["good.h5"]          # no temporary file left
    monkeypatch.undo()
    assert_csr_equal(wg.load(path).P, mdp.P)
    # a crash while creating a new file leaves nothing behind
    monkeypatch.setattr(records, "write_mdp", crashing_writer)
    with pytest.raises(RuntimeError):
        wg.save(tmp_path / "new.h5", other)
    assert sorted(os.listdir(tmp_path)) == ["good.h5"]


def test_overwrite_replaces_file(tmp_path):
    path = tmp_path / "x.h5"
    wg.save(path, wg.problems.get("garnet", n_states=10, n_actions=3))
    g2 = wg.problems.get("garnet", n_states=12, n_actions=2, seed=9)
    wg.save(path, g2)
    assert_csr_equal(wg.load(path).P, g2.P)
    assert sorted(os.listdir(tmp_path)) == ["x.h5"]


# ------------------------------------------------------------------------------ bad files
@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.h5"
    wg.save(path, wg.problems.get("garnet", n_states=10, n_actions=3))
    return path


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.95])
def test_truncated_file_raises_file_format_error(good_file, tmp_path, fraction):
    data = good_file.read_bytes()
    bad = tmp_path / "trunc.h5"
    bad.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(wg.FileFormatError) as info:
        wg.load(bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, wg.WgflowError)


def test_random_bytes_raise_file_format_error(tmp_path, rng):
    bad = tmp_path / "noise.h5"
    bad.write_bytes(rng.bytes(4096))
    with pytest.raises(wg.FileFormatError, match="not a readable HDF5"):
        wg.load(bad)
    txt = tmp_path / "text.h5"
    txt.write_text("hello, I am not HDF5\n")
    with pytest.raises(wg.FileFormatError):
        wg.load(txt)


def test_foreign_hdf5_raises_file_format_error(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("masses", data=np.ones((2, 2)) / 2)
        f.attrs["something"] = "else"
    with pytest.raises(wg.FileFormatError, match="not written by wgflow"):
        wg.load(path)


def test_damaged_wgflow_file_raises_file_format_error(good_file):
    # (unsealed: the checks behind the seal, for files without one -- written before seals, or
    # a flow's storage -- and for edits that also rewrote the seal)
    h5.unseal(good_file)
    with h5py.File(good_file, "r+") as f:
        del f["mdp"]["C"]
    with pytest.raises(wg.FileFormatError, match="dataset /mdp/C: missing"):
        wg.load(good_file)


def test_damaged_root_object_header_raises_file_format_error(tmp_path):
    # an unknown message type in the root group's object header of an unsealed file: h5py
    # raises KeyError ("unable to determine object type") when the loader reads its attributes
    path = tmp_path / "sol.h5"
    mdp = wg.problems.get("lqr1d", n_states=9, n_actions=5)
    wg.save(path, wg.solve(mdp, wg.Discounted(0.9, entropy=0.5)))
    h5.unseal(path)
    with h5py.File(path, "r") as f:
        root = h5py.h5o.get_info(f.id).addr          # relative to the user block's end
    data = bytearray(path.read_bytes())
    data[h5.USERBLOCK + root + 16] = 127  # version-1 header: its first message's type
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    with pytest.raises(wg.FileFormatError, match="unreadable"):
        wg.load(bad)


def test_sealed_file_refuses_any_change_before_parsing(tmp_path):
    # a saved file carries the SHA-256 of its content in its user block: any changed byte is
    # refused before the HDF5 library reads the file (damaged headers can crash the library);
    # a damaged seal is refused too; the content alone (a file without a user block, as written
    # before seals) still loads
    path = tmp_path / "sol.h5"
    mdp = wg.problems.get("lqr1d", n_states=9, n_actions=5)
    sol = wg.solve(mdp, wg.Discounted(0.9, entropy=0.5))
    wg.save(path, sol)
    data = path.read_bytes()
    assert data.startswith(b"WGFLOW-SHA256 ") and data[h5.USERBLOCK:h5.USERBLOCK + 4] == b"\x89HDF"
    for k in (h5.USERBLOCK, h5.USERBLOCK + 100, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[k] ^= 0x01
        p = tmp_path / f"flip{k}.h5"
        p.write_bytes(bytes(bad))
        with pytest.raises(wg.FileFormatError, match="does not match its checksum"):
            wg.load(p)
    bad = bytearray(data)
    bad[3] ^= 0x20
    p = tmp_path / "seal.h5"
    p.write_bytes(bytes(bad))
    with pytest.raises(wg.FileFormatError, match="seal .* is damaged"):
        wg.load(p)
    legacy = tmp_path / "legacy.h5"
    legacy.write_bytes(data[h5.USERBLOCK:])          # HDF5 addresses are relative to the base
    back = wg.load(legacy)
    np.testing.assert_array_equal(back.V, sol.V)
    # unsealed (open), the file is read without a checksum; an in-place edit through
    # edit_sealed keeps it loadable and sealed
    h5.unseal(path)
    assert wg.load(path).J == sol.J
    with h5.edit_sealed(path) as f:
        f.attrs["note"] = "edited"
    assert wg.load(path).J == sol.J and path.read_bytes().startswith(b"WGFLOW-SHA256 ")


def test_newer_format_version_raises(good_file):
    h5.unseal(good_file)
    with h5py.File(good_file, "r+") as f:
        f.attrs["format_version"] = wio.FORMAT_VERSION + 1
    with pytest.raises(wg.FileFormatError, match="newer"):
        wg.load(good_file)


def test_unknown_type_raises(good_file):
    h5.unseal(good_file)
    with h5py.File(good_file, "r+") as f:
        f.attrs["wgflow_type"] = "Banana"
    with pytest.raises(wg.FileFormatError, match="unknown wgflow object type"):
        wg.load(good_file)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        wg.load(tmp_path / "nope.h5")


@pytest.mark.parametrize("obj", [np.zeros(3), {"a": 1}, sp.csr_matrix(np.eye(2)), wg.Discounted(0.9)])
def test_saving_unsupported_object_raises(tmp_path, obj):
    with pytest.raises(wg.ValidationError, match="wgflow.save stores"):
        wg.save(tmp_path / "u.h5", obj)
    assert os.listdir(tmp_path) == []
