"""Registering problem builders: malformed builders are refused with a wgflow error."""
from __future__ import annotations

import pytest

import wgflow as wg
from wgflow.problems import registry


def test_register_refuses_a_builder_without_defaults():
    def builder(n_states, noise=0.0):            # pragma: no cover (never built)
        return None
    with pytest.raises(wg.ValidationError, match="builder needs a default .*n_states"):
        registry.register(builder)
    assert "builder" not in registry.names()


def test_register_refuses_what_is_not_a_function():
    with pytest.raises(wg.ValidationError, match="function, got"):
        registry.register(42)
    with pytest.raises(wg.ValidationError, match="non-empty string"):
        registry.register(lambda n=1: None, name=3)


def test_mountain_car_goal_is_a_lookup():
    with pytest.raises(wg.LookupFailure, match="mountain_car.*unknown goal 'rest'.*did you mean 'reset'"):
        wg.problems.get("mountain_car", n_position=5, n_velocity=5, n_actions=3, goal="rest")
