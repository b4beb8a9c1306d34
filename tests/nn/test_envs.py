"""Environments: the model sampler follows the continuous model; gymnasium observations map to the
problem's states; an exact grid solution runs in gymnasium as a reference agent."""
import numpy as np
import pytest

import wgflow as wg
from wgflow.nn.envs import ModelEnv, SolutionAgent, make_env


def test_model_env_follows_the_pendulum_model(rng):
    model = wg.problems.model("pendulum")
    env = ModelEnv(model, horizon=3, n_envs=5, seed=0)
    s = env.reset()
    assert np.all((s[:, 0] >= -np.pi) & (s[:, 0] < np.pi) & (np.abs(s[:, 1]) <= 8))
    a = rng.uniform(-2, 2, (5, 1))
    s2, c, term, trunc = env.step(a)
    np.testing.assert_array_equal(s2, model.states.wrap(model.drift(s, a)))     # noise 0: exact
    np.testing.assert_array_equal(c, model.cost(s, a))
    assert not term.any() and not trunc.any()
    env.step(a)
    _, _, _, trunc = env.step(a)
    assert trunc.all()                                       # horizon 3
    s3 = env.reset_done(trunc)
    assert np.all(env.t == 0) and not np.array_equal(s3, s2)
    # actions outside the box are clipped, as the grid's action box
    env.step(np.full((5, 1), 10.0))


def test_model_env_terminal_states_follow_the_grid_rules():
    absorbing = ModelEnv(wg.problems.model("mountain_car"), n_envs=2, seed=1)
    absorbing.reset()
    absorbing.state[:] = [[0.5, 0.01], [-0.5, 0.0]]          # the first is in the goal
    s2, c, term, _ = absorbing.step(np.zeros((2, 1)))
    assert term.tolist() == [True, False] and c[0] == 0.0
    np.testing.assert_array_equal(s2[0], [0.5, 0.01])
    reset = ModelEnv(wg.problems.model("mountain_car", goal="reset"), objective="average", seed=2)
    reset.reset()
    reset.state[:] = [[0.5, 0.01]]
    s2, c, term, trunc = reset.step(np.zeros((1, 1)))
    assert not term[0] and not trunc[0] and c[0] == 0.0
    assert -0.6 <= s2[0, 0] <= -0.4 and s2[0, 1] == pytest.approx(0.0, abs=0.07 / 61)


def test_model_env_charges_the_goal_entry_cost_as_the_grid_does():
    # mountain car: -100 for entering the goal (DynamicsModel.entry_cost), once. From the cell
    # centres of the grid MDP, with its actions: where the grid deposits no mass on goal cells
    # the sampled cost is C(s, a); where it deposits a fraction p (the car's motion is
    # deterministic, split between two cells by linear interpolation) C(s, a) = c(s, a) - 100 p,
    # and the sampled cost is c(s, a) - 100 exactly when the car's next position is in the goal
    for goal in ("absorbing", "reset"):
        mdp = wg.problems.get("mountain_car", n_position=21, n_velocity=21, n_actions=11, goal=goal)
        model = mdp.model
        env = ModelEnv(model, n_envs=mdp.n_states * mdp.n_actions, seed=5)
        env.reset()
        s_idx = np.repeat(np.arange(mdp.n_states), mdp.n_actions)
        a_idx = np.tile(np.arange(mdp.n_actions), mdp.n_states)
        s, a = mdp.states.centers[s_idx], mdp.actions.centers[a_idx]
        env.state[:] = s
        _, cost, _, _ = env.step(a)
        term = model.terminal_mask
        into = np.asarray(mdp.P.tocsr()[:, term].sum(axis=1)).ravel()      # grid P(goal | s, a)
        live = ~term[s_idx]
        reaches = live & np.asarray(model.terminal(np.clip(model.drift(s, a), model.states.bounds[:, 0],
                                                           model.states.bounds[:, 1]))).ravel()
        assert reaches.sum() > 10 and np.all(into[reaches] > 0)
        C = mdp.C.ravel()
        # sums of a few terms: rounding of |C| <= 100
        tol = 1e-12
        np.testing.assert_allclose(cost[live & (into == 0)], C[live & (into == 0)], rtol=0, atol=tol)
        frac = live & (into > 0)
        np.testing.assert_allclose(cost[frac], C[frac] + 100.0 * into[frac] - 100.0 * reaches[frac],
                                   rtol=0, atol=tol)
        assert np.all(cost[term[s_idx]] == 0.0)


def test_model_env_noise_has_the_model_standard_deviation():
    model = wg.problems.model("lqr1d")                      # x' = 0.9 x + a + 0.5 xi
    env = ModelEnv(model, n_envs=20000, seed=3)
    env.reset()
    env.state[:] = 0.0
    s2, *_ = env.step(np.zeros((20000, 1)))
    # 5 standard errors of the sample standard deviation (0.5 / sqrt(2 n))
    assert abs(s2.std() - 0.5) < 5 * 0.5 / np.sqrt(2 * 20000)


def test_make_env_rejects_tabular_problems_and_bad_options():
    with pytest.raises(ValueError, match="tabular"):
        make_env("garnet")
    with pytest.raises(ValueError):
        ModelEnv(wg.problems.model("pendulum"), objective="total")


@pytest.fixture(scope="module")
def gym():
    return pytest.importorskip("gymnasium")


def test_gym_env_maps_pendulum_observations_to_states(gym):
    from wgflow.nn.envs import GymEnv
    env = GymEnv("Pendulum-v1", seed=4)
    s = env.reset()
    th, om = env.env.unwrapped.state
    np.testing.assert_allclose(s[0], [np.arctan2(np.sin(th), np.cos(th)), om], rtol=0, atol=1e-6)
    s2, c, term, trunc = env.step(np.array([[0.5]]))
    model = wg.problems.model("pendulum")
    # gymnasium computes in float32 observations: agreement to float32 rounding of |state| <= 8
    np.testing.assert_allclose(s2, model.states.wrap(model.drift(s, np.array([[0.5]]))), rtol=0, atol=1e-5)
    assert c[0] == pytest.approx(model.cost(s, np.array([[0.5]]))[0], rel=1e-5)


def test_solution_agent_reproduces_the_grid_policy_and_the_model_value(gym):
    from wgflow.nn.envs import gym_evaluate
    mdp = wg.problems.get("pendulum", n_theta=51, n_omega=51, n_actions=21)
    sol = wg.solve(mdp, wg.Discounted(gamma=0.99), progress=False)
    agent = SolutionAgent(sol)
    np.testing.assert_array_equal(agent(mdp.states.centers), sol.policy.mean())
    r = gym_evaluate(agent, "Pendulum-v1", episodes=8, seed=0, gamma=0.99)
    assert r.returns.shape == (8,) and np.all(r.returns < 0)
    # the model's value at the episodes' start states predicts the real discounted return: the
    # grid error at 51 x 51 is about 1 % (docs/nn.md); the 200-step truncation drops at most
    # 0.99^200 * (cost of the upright state ~ 0); tolerance 5 %
    env = gym.make("Pendulum-v1")
    starts = []
    for i in range(8):
        env.reset(seed=i)
        starts.append(np.array(env.unwrapped.state, dtype=float))
    V = mdp.states.interpolate(sol.V, mdp.states.wrap(np.array(starts)))
    assert -r.discounted.mean() == pytest.approx(V.mean(), rel=0.05)


@pytest.mark.parametrize("kw,match", [(dict(gamma=1.5), "gamma must be"),
                                      (dict(episodes=2.5), "episodes must be"),
                                      (dict(seed=-1), "seed must be")])
def test_gym_evaluate_rejects_bad_arguments(gym, kw, match):
    from wgflow.nn.envs import gym_evaluate
    with pytest.raises(wg.ValidationError, match=match):
        gym_evaluate(lambda s: np.zeros((s.shape[0], 1)), "Pendulum-v1", **kw)


def test_training_episodes_are_not_the_evaluation_episodes(gym):
    """Training episode k of a GymEnv and evaluation episode i of gym_evaluate start from
    different states: a return is not measured on start states trained on."""
    from wgflow.nn.envs import GymEnv
    evals = []
    for i in range(40):
        e = gym.make("Pendulum-v1")
        e.reset(seed=i)
        evals.append(np.array(e.unwrapped.state, dtype=float))
    starts = {}
    for seed in (0, 1):
        env = GymEnv("Pendulum-v1", seed=seed)
        starts[seed] = []
        for k in range(40):
            env.episode = k
            env.reset()
            starts[seed].append(np.array(env.env.unwrapped.state, dtype=float))
    train = np.array(starts[0] + starts[1])
    # the start states are continuous draws: equal ones only come from equal reset seeds
    assert np.min(np.abs(train[:, None, :] - np.array(evals)[None, :, :]).sum(-1)) > 0
    assert len({tuple(x) for x in train}) == 80          # seeds 0 and 1 share no episode
    from wgflow.nn.envs import TRAINING_SEED_BASE, training_seed
    assert min(training_seed(s, k) for s in (0, 1) for k in range(40)) >= TRAINING_SEED_BASE


def test_float32_max_observation_bounds_are_unbounded_axes(gym):
    """gymnasium writes an unbounded observation axis as +-float32 max: read as a box it would map
    every state to the feature -1 (width 6.8e38); it is an unbounded axis, passed through."""
    import torch
    from wgflow.nn.envs import GymEnv
    from wgflow.nn.networks import StateFeatures
    big = np.finfo(np.float32).max

    class Drift(gym.Env):
        observation_space = gym.spaces.Box(np.array([-1.0, -big], np.float32),
                                           np.array([1.0, big], np.float32))
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(2, np.float32), {}

        def step(self, a):
            return np.zeros(2, np.float32), 0.0, False, False, {}

    if "WgflowTestDrift-v0" not in gym.registry:
        gym.register("WgflowTestDrift-v0", entry_point=Drift, max_episode_steps=5)
    env = GymEnv("WgflowTestDrift-v0")
    np.testing.assert_array_equal(env.state_bounds, [[-1.0, 1.0], [-np.inf, np.inf]])
    f = StateFeatures(env.state_bounds, env.periodic)(torch.tensor([[0.5, 2.0], [0.5, -3.0]]))
    np.testing.assert_allclose(f.numpy(), [[0.5, 2.0], [0.5, -3.0]])    # bounded: 2 (x+1)/2 - 1 = x
