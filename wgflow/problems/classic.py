"""Classic continuous-control problems on grids (gymnasium physics)."""
from __future__ import annotations

import numpy as np

from .. import validation
from ..grids import Grid
from .registry import dynamics, register


@register
@dynamics
def double_integrator(n_states=(41, 41), n_actions=21, x_max=3.0, v_max=3.0, a_max=2.0, dt=0.1,
                      q_x=1.0, q_v=0.1, r=0.1, noise=0.0):
    """Double integrator: x' = x + dt v + dt^2 a / 2, v' = v + dt a; cost dt (q_x x^2 + q_v v^2 + r a^2).

    State (x, v) on [-x_max, x_max] x [-v_max, v_max]; force a on [-a_max, a_max]. ``noise`` is
    the standard deviation of the state noise (scalar or one per axis; 0 = deterministic,
    deposited by bilinear interpolation).
    """
    S = Grid([(-x_max, x_max), (-v_max, v_max)], list(np.broadcast_to(n_states, (2,))),
             names=["position", "velocity"], units=["m", "m/s"])
    Ac = Grid([(-a_max, a_max)], [n_actions], names=["acceleration"], units=["m/s^2"])

    def drift(s, a):
        x, v, u = s[:, 0], s[:, 1], a[:, 0]
        return np.stack([x + dt * v + 0.5 * dt * dt * u, v + dt * u], axis=1)

    def drift_da(s, a):
        J = np.empty((s.shape[0], 2, 1))
        J[:, 0, 0] = 0.5 * dt * dt
        J[:, 1, 0] = dt
        return J

    return dict(states=S, actions=Ac, noise=noise, drift=drift, drift_da=drift_da,
                cost=lambda s, a: dt * (q_x * s[:, 0] ** 2 + q_v * s[:, 1] ** 2 + r * a[:, 0] ** 2),
                cost_da=lambda s, a: dt * 2.0 * r * a)


def angle_normalize(x):
    return ((x + np.pi) % (2 * np.pi)) - np.pi


@register
@dynamics
def pendulum(n_theta=51, n_omega=51, n_actions=21, noise=0.0, g=10.0, m=1.0, l=1.0, dt=0.05,
             max_speed=8.0, max_torque=2.0):
    """Inverted pendulum with the physics and cost of gymnasium's Pendulum-v1.

    State (theta, omega): theta periodic on [-pi, pi) (0 = upright), omega on
    [-max_speed, max_speed]; torque u on [-max_torque, max_torque]. One step:
    omega' = clip(omega + (3 g / (2 l) sin(theta) + 3 u / (m l^2)) dt, -max_speed, max_speed),
    theta' = theta + omega' dt; cost theta^2 + 0.1 omega^2 + 0.001 u^2 (theta normalized to
    [-pi, pi)), i.e. minus gymnasium's reward.
    """
    S = Grid([(-np.pi, np.pi), (-max_speed, max_speed)], [n_theta, n_omega], periodic=[True, False],
             names=["theta", "omega"], units=["rad", "rad/s"])
    Ac = Grid([(-max_torque, max_torque)], [n_actions], names=["torque"], units=["N m"])
    k_sin, k_u = 3.0 * g / (2.0 * l), 3.0 / (m * l * l)

    def raw_speed(s, a):
        return s[:, 1] + (k_sin * np.sin(s[:, 0]) + k_u * a[:, 0]) * dt

    def drift(s, a):
        w = np.clip(raw_speed(s, a), -max_speed, max_speed)
        return np.stack([s[:, 0] + w * dt, w], axis=1)

    def drift_da(s, a):
        w = raw_speed(s, a)
        free = (w > -max_speed) & (w < max_speed)
        J = np.zeros((s.shape[0], 2, 1))
        J[:, 1, 0] = np.where(free, k_u * dt, 0.0)
        J[:, 0, 0] = J[:, 1, 0] * dt
        return J

    return dict(states=S, actions=Ac, noise=noise, drift=drift, drift_da=drift_da,
                cost=lambda s, a: angle_normalize(s[:, 0]) ** 2 + 0.1 * s[:, 1] ** 2 + 0.001 * a[:, 0] ** 2,
                cost_da=lambda s, a: 0.002 * a)


@register
@dynamics
def mountain_car(n_position=61, n_velocity=61, n_actions=21, noise=0.0, power=0.0015,
                 goal_position=0.45, goal_velocity=0.0, goal="absorbing"):
    """MountainCarContinuous-v0 physics: v' = clip(v + power u - 0.0025 cos(3x), +-0.07), x' = x + v'.

    State (x, v) on [-1.2, 0.6] x [-0.07, 0.07], force u on [-1, 1]; at x' = -1.2 the velocity
    is reset to 0 if negative. Cost: minus gymnasium's reward, 0.1 u^2 per step and -100 once
    when the goal (x >= goal_position and v >= goal_velocity) is reached. The goal set of the
    grid is the cells whose centre is in the goal (terminal, cost 0), and the -100 is charged by
    the probability the step deposits on those cells (``entry_cost``): the next state is
    deposited bilinearly, so a step ending just inside the goal puts part of its mass on the
    cells below ``goal_position``, which reach the goal -- and are charged -- a step later. The
    goal is thus charged exactly once per episode, and every value is at least -100 (a discount
    only lowers it). ``goal="absorbing"`` keeps terminal cells there (episodic: a discounted
    objective; each goal cell is its own recurrent class, so no average cost); ``goal="reset"``
    restarts from gymnasium's initial law (x uniform in [-0.6, -0.4], v = 0) one step after the
    goal, which makes the long-run average cost meaningful.
    """
    S = Grid([(-1.2, 0.6), (-0.07, 0.07)], [n_position, n_velocity],
             names=["position", "velocity"], units=["m", "m/s"])
    Ac = Grid([(-1.0, 1.0)], [n_actions], names=["force"], units=[""])
    validation.choice(goal, "goal", ("absorbing", "reset"), "problem 'mountain_car'")

    def step(s, a):
        x, v = s[:, 0], s[:, 1]
        v2 = np.clip(v + a[:, 0] * power - 0.0025 * np.cos(3 * x), -0.07, 0.07)
        x2 = np.clip(x + v2, -1.2, 0.6)
        v2 = np.where((x2 == -1.2) & (v2 < 0), 0.0, v2)
        return x2, v2

    def drift(s, a):
        return np.stack(step(s, a), axis=1)

    def cost(s, a):
        return 0.1 * a[:, 0] ** 2

    def terminal(s):
        return (s[:, 0] >= goal_position) & (s[:, 1] >= goal_velocity)

    reset = None
    if goal == "reset":
        xs = S.axes[0][(S.axes[0] >= -0.6) & (S.axes[0] <= -0.4)]
        if xs.size == 0:
            # a grid too coarse to have a cell centre in [-0.6, -0.4]: deposit the uniform law
            # on the interval by the midpoint rule instead
            xs = -0.6 + 0.2 * (np.arange(64) + 0.5) / 64
        pts = np.stack([xs, np.zeros_like(xs)], axis=1)
        reset = S.deposit(pts) / len(xs)
    return dict(states=S, actions=Ac, noise=noise, drift=drift, cost=cost, terminal=terminal,
                reset=reset, entry_cost=-100.0, cost_da=lambda s, a: 0.2 * a)
