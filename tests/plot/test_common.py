"""Tests of wgflow.plot._common: labels from grids, representative states."""
import numpy as np

import wgflow as wg
from wgflow.plot._common import fmt_value, representative_states, state_label


def test_state_label_uses_names_units_and_snaps_rounding_at_zero():
    S = wg.Grid([(-np.pi, np.pi), (-8, 8)], [41, 5], names=["theta", "omega"], units=["rad", "rad/s"])
    s = 20 * 5 + 1                      # theta centre ~ 4e-16 by rounding; omega = -3.2
    assert abs(S.centers[s, 0]) < 1e-15
    assert state_label(S, s) == "theta = 0 rad, omega = -3.2 rad/s"
    assert state_label(wg.Grid([(0, 1), (0, 1)], [2, 2]), 3) == "x0 = 0.75, x1 = 0.75"
    assert state_label(None, 7) == "state 7"
    assert fmt_value(1e-7) == "1.00e-07" and fmt_value(123.456) == "123"


def test_representative_states_tile_a_2d_grid_like_the_state_space():
    S = wg.Grid([(0, 1), (0, 1)], [9, 6])
    idx = representative_states(S, S.size, 3)
    c = S.centers[idx]
    # rows of three: the second coordinate decreases from row to row, the first increases along one
    assert np.all(np.diff(c[:, 1].reshape(3, 3)[:, 0]) < 0)
    assert np.all(np.diff(c[:, 0].reshape(3, 3), axis=1) > 0)
    assert representative_states(None, 4, 3) == [0, 1, 2, 3]
