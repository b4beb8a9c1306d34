"""Parameters of the finite problems (garnet) that contradict each other."""
from __future__ import annotations

import numpy as np
import pytest

import wgflow as wg


def test_garnet_cost_range_must_be_ordered():
    with pytest.raises(wg.ValidationError, match=r"garnet.*cost_low \(1\.0\) must be <= cost_high \(0\.0\)"):
        wg.problems.get("garnet", n_states=4, n_actions=2, branching=2, cost_low=1.0, cost_high=0.0)
    with pytest.raises(wg.ValidationError, match="wider than a float"):
        wg.problems.get("garnet", n_states=4, n_actions=2, branching=2, cost_low=-1e308,
                        cost_high=1e308)
    # an empty range is a constant cost
    mdp = wg.problems.get("garnet", n_states=4, n_actions=2, branching=2, cost_low=0.5, cost_high=0.5)
    np.testing.assert_array_equal(mdp.C, 0.5)


def test_garnet_branching_names_the_problem():
    with pytest.raises(wg.ValidationError, match=r"garnet.*branching.*n_states = 4\], got 5"):
        wg.problems.get("garnet", n_states=4, n_actions=2, branching=5)
