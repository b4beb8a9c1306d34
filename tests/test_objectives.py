"""Objective descriptions (to_dict / objective_from_dict) and their storage with trajectories."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import wgflow as wg
from wgflow.objectives import objective_from_dict


def _skewed_law(n):
    """A non-uniform initial law (mass growing with the state index)."""
    w = np.arange(1.0, n + 1.0) ** 2
    return w / w.sum()


def test_discounted_description_round_trips_the_initial_law():
    mu = _skewed_law(7)
    obj = wg.Discounted(0.9, entropy=0.2, initial=mu)
    d = obj.to_dict()
    json.dumps(d)                                  # JSON-ready
    back = objective_from_dict(json.loads(json.dumps(d)))
    assert back == obj
    np.testing.assert_array_equal(back.initial, mu)   # floats survive JSON exactly
    # the uniform default is described without the key (as files written before)
    assert "initial" not in wg.Discounted(0.9).to_dict()


def test_old_descriptions_without_initial_still_load():
    back = objective_from_dict({"kind": "discounted", "gamma": 0.9, "entropy": 0.1})
    assert back == wg.Discounted(0.9, entropy=0.1) and back.initial is None
    assert objective_from_dict({"kind": "average", "entropy": 0.5}) == wg.Average(entropy=0.5)


@pytest.mark.parametrize("d, words", [
    ({"kind": "discounted", "gamma": 0.9, "entropy": 0.0, "initial": [0.5, 0.6]}, "sums to"),
    ({"kind": "discounted", "gamma": 0.9, "entropy": 0.0, "initial": [1.5, -0.5]}, "negative"),
    ({"kind": "discounted", "gamma": 0.9, "entropy": 0.0, "intial": [0.5, 0.5]}, "'intial'"),
    ({"kind": "average", "entropy": 0.0, "gamma": 0.9}, "'gamma'"),
    ({"kind": "discounted", "entropy": 0.0}, "'gamma'"),
])
def test_bad_descriptions_name_the_key(d, words):
    with pytest.raises(wg.ValidationError, match=words):
        objective_from_dict(d)


def test_trajectory_file_keeps_the_initial_law(tmp_path):
    """J of a stored trajectory, recomputed from the stored objective, is the stored J."""
    mdp = wg.problems.get("lqr1d", n_states=9, n_actions=7)
    mu = _skewed_law(mdp.n_states)
    obj = wg.Discounted(0.8, entropy=0.3, initial=mu)
    pi0 = wg.Policy.gaussian(mdp, mean=0.5, std=0.8)
    path = tmp_path / "run.h5"
    traj = wg.flow(mdp, obj, pi0, t_end=0.1, dt=0.05, save_every=0.05, progress=False,
                   storage=path)
    wg.save(tmp_path / "whole.h5", traj)
    for p in (path, tmp_path / "whole.h5"):
        back = wg.load(p)
        stored = objective_from_dict(back.objective)
        assert stored == obj
        for i in range(len(back)):
            J = wg.evaluate(mdp, back.policy(i), stored).J
            # same evaluation as the flow's (sparse LU on 9 states): equal to rounding
            assert J == pytest.approx(back.J[i], rel=1e-12)
        # the uniform law gives another J: the check above can tell them apart
        J_uniform = wg.evaluate(mdp, back.policy(0), wg.Discounted(0.8, entropy=0.3)).J
        assert abs(J_uniform - back.J[0]) > 1e-3 * abs(back.J[0])


def test_solution_file_keeps_the_initial_law_and_reads_old_files(tmp_path):
    mdp = wg.problems.get("lqr1d", n_states=9, n_actions=7)
    mu = _skewed_law(mdp.n_states)
    sol = wg.solve(mdp, wg.Discounted(0.8, entropy=0.3, initial=mu))
    wg.save(tmp_path / "sol.h5", sol)
    back = wg.load(tmp_path / "sol.h5")
    assert back.objective == sol.objective and back.J == sol.J
    # the law is stored once, in its own dataset (exact binary), as files have always held it:
    # the JSON attribute does not repeat it, so files of every version read alike
    with h5py.File(tmp_path / "sol.h5", "r") as f:
        grp = f["solution"]
        assert set(json.loads(grp.attrs["objective"])) == {"kind", "gamma", "entropy"}
        np.testing.assert_array_equal(grp["initial"][()], mu)
