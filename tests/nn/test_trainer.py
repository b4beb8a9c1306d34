"""Training: a resumed run equals an uninterrupted one; a short run improves the exact J."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import wgflow as wg  # noqa: E402
from wgflow.nn.trainer import TrainConfig, Trainer, train  # noqa: E402

TINY = dict(hidden=(16, 16), critic_hidden=(16, 16), batch_size=16, learning_starts=20,
            eval_every=25, eval_episodes=1, final_episodes=1, wpo_samples=2, wppg_samples=2,
            entropy_centers=4, entropy_samples=4, checkpoint_every=0, horizon=30, threads=1)
SMALL_PENDULUM = dict(n_theta=9, n_omega=9, n_actions=7)


def _weights(tr):
    return [p.detach().clone() for p in list(tr.actor.parameters()) + list(tr.critic.parameters())
            + list(tr.critic_target.parameters())]


@pytest.mark.parametrize("algo,objective", [("wpo", "discounted"), ("wppg", "discounted"),
                                            ("wppg-implicit", "discounted"), ("reparam", "discounted"),
                                            ("wpo", "average")])
def test_resume_equals_uninterrupted(tmp_path, algo, objective):
    opts = dict(TINY, kl_mean=0.5, kl_std=10.0, kl_period=7) if algo == "wpo" else dict(TINY)
    cfg = TrainConfig(algo=algo, steps=70, seed=3, objective=objective, **opts)
    full = Trainer("pendulum", cfg, params=SMALL_PENDULUM, progress=False).run()
    first = Trainer("pendulum", cfg, params=SMALL_PENDULUM, output=tmp_path / "r.h5", progress=False)
    first.run(until=45)                                  # mid-episode (horizon 30), after learning starts
    first.save_checkpoint()
    del first
    resumed = Trainer("pendulum", cfg, params=SMALL_PENDULUM, output=tmp_path / "r.h5", progress=False)
    resumed.load_checkpoint().run()
    for a, b in zip(_weights(full), _weights(resumed)):
        assert torch.equal(a, b)
    for k in ("step", "J_exact", "critic_loss", "actor_loss", "gain_estimate", "return_mean"):
        np.testing.assert_array_equal(full.curve[k], resumed.curve[k])
    np.testing.assert_array_equal(full.env.state, resumed.env.state)
    assert full.rho == resumed.rho


def test_resume_in_gymnasium_mid_episode(tmp_path):
    pytest.importorskip("gymnasium")
    cfg = TrainConfig(algo="reparam", steps=60, seed=1, **TINY)
    full = Trainer("Pendulum-v1", cfg, params=SMALL_PENDULUM, progress=False).run()
    part = Trainer("Pendulum-v1", cfg, params=SMALL_PENDULUM, output=tmp_path / "g.h5", progress=False)
    part.run(until=33)
    part.save_checkpoint()
    resumed = Trainer("Pendulum-v1", cfg, params=SMALL_PENDULUM, output=tmp_path / "g.h5", progress=False)
    resumed.load_checkpoint().run()
    for a, b in zip(_weights(full), _weights(resumed)):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(full.curve["return_mean"], resumed.curve["return_mean"])


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    cfg = TrainConfig(algo="wpo", steps=30, seed=0, **TINY)
    tr = Trainer("pendulum", cfg, params=SMALL_PENDULUM, output=tmp_path / "x.h5", progress=False)
    tr.run(until=10)
    tr.save_checkpoint()
    other = Trainer("pendulum", TrainConfig(algo="wpo", steps=30, seed=1, **TINY), params=SMALL_PENDULUM,
                    output=tmp_path / "x.h5", progress=False)
    with pytest.raises(ValueError, match=r"another configuration.*differing: \['seed'\].*--no-resume"):
        other.load_checkpoint()
    with pytest.raises(FileNotFoundError):
        other.load_checkpoint(tmp_path / "missing.ckpt")


@pytest.mark.parametrize("algo", ["wpo", "wppg"])
def test_short_run_improves_exact_J(algo):
    # lqr1d (x' = 0.9 x + a + 0.5 xi, cost x^2 + a^2) on a 41 x 21 grid at gamma 0.9
    params = dict(n_states=41, n_actions=21)
    cfg = TrainConfig(algo=algo, steps=600, seed=0, gamma=0.9, hidden=(32, 32), critic_hidden=(32, 32),
                      batch_size=64, learning_starts=100, eval_every=600, eval_episodes=1,
                      actor_lr=1e-3, critic_lr=1e-3,
                      final_episodes=0, horizon=50, checkpoint_every=0, threads=1)
    tr = Trainer("lqr1d", cfg, params=params, progress=False)
    from wgflow.nn.projection import exact_evaluation
    J0 = exact_evaluation(tr.actor, tr.mdp, tr.objective, stochastic=False)["J_deterministic"]
    tr.run()
    J1 = tr.curve["J_exact"][-1]
    # the untrained policy is far from optimal (J0 ~ 122 vs J* ~ 15.7); 600 steps close > 90 % of the gap
    assert J0 - tr.J_star > 1.0
    assert J1 - tr.J_star < 0.1 * (J0 - tr.J_star)
    assert J1 >= tr.J_star - 1e-9 * abs(tr.J_star)       # J* is the grid optimum


def test_train_writes_results_and_load_policy(tmp_path):
    import wgflow.nn as wnn
    out = tmp_path / "res.h5"
    res = train("pendulum", algo="wppg-implicit", steps=40, seed=2, output=out, params=SMALL_PENDULUM,
                progress=False, **TINY)
    assert out.exists() and not (tmp_path / "res.h5.ckpt").exists()
    pol = wnn.load_policy(out)
    s = np.array([[0.1, -1.0], [3.0, 7.5], [-3.1, 0.0]])
    np.testing.assert_array_equal(pol(s), res.actor.deterministic(torch.tensor(s, dtype=torch.float32)).double().detach().numpy())
    loaded = wnn.load_result(out)
    assert loaded.J_star == res.J_star and loaded.J_exact == res.J_exact
    np.testing.assert_array_equal(loaded.curve["J_exact"], res.curve["J_exact"])
    assert loaded.config["algo"] == "wppg-implicit"
    # J* is the exact optimum of the same grid problem
    assert res.J_star == pytest.approx(wg.solve(wg.problems.get("pendulum", **SMALL_PENDULUM),
                                                wg.Discounted(gamma=0.99)).J, rel=1e-12)
    with pytest.raises(ValueError):
        pol(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="not a wgflow.nn training result"):
        wg.save(tmp_path / "m.h5", wg.problems.get("lqr1d", n_states=5, n_actions=3))
        wnn.load_policy(tmp_path / "m.h5")
    # one changed byte of the stored curve (HDF5 reads it without complaint): the seal refuses
    import h5py
    with h5py.File(out, "r") as f:
        offset = f["curve/J_exact"].id.get_offset()
    data = bytearray(out.read_bytes())
    data[offset] ^= 0x40
    out.write_bytes(bytes(data))
    for load in (wnn.load_result, wnn.load_policy):
        with pytest.raises(wg.FileFormatError, match="does not match its checksum"):
            load(out)


def test_exploration_noise_is_added_to_every_algorithm_s_action():
    """Same seeds, same policy samples: the executed actions differ by exploration_std * r * xi with
    xi standard normal (away from the box's edges); the default is 0.1 for WPPG, 0 otherwise."""
    assert TrainConfig(algo="wpo").exploration_std == 0.0
    assert TrainConfig(algo="reparam").exploration_std == 0.0
    assert TrainConfig(algo="wppg").exploration_std == 0.1
    assert TrainConfig(algo="wppg-implicit").exploration_std == 0.1
    opts = dict(TINY, learning_starts=0, objective="average")
    states = np.tile([[0.5, 1.0]], (4000, 1))
    acts = {}
    for e in (0.0, 0.05):
        tr = Trainer("pendulum", TrainConfig(algo="wpo", steps=10, exploration_std=e, **opts),
                     params=SMALL_PENDULUM, progress=False)
        acts[e] = tr._act(states)[:, 0]
    # torque box [-2, 2], noise std 0.05 * 2 = 0.1: from |a| < 1.4 clipping needs a 6-sigma draw
    inside = np.abs(acts[0.0]) < 1.4
    xi = (acts[0.05] - acts[0.0])[inside] / (0.05 * 2.0)
    assert inside.sum() > 2000
    # mean and standard deviation of >2000 standard normals: 5 standard errors
    assert abs(xi.mean()) < 5 / np.sqrt(inside.sum())
    assert abs(xi.std() - 1.0) < 5 / np.sqrt(2 * inside.sum())


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="unknown algorithm"):
        TrainConfig(algo="ppo")
    with pytest.raises(ValueError, match="gamma"):
        TrainConfig(gamma=1.0)
    with pytest.raises(ValueError, match="tabular"):
        Trainer("garnet", TrainConfig(steps=10, **TINY), progress=False)


def test_resume_at_a_smaller_step_count_records_the_final_point(tmp_path):
    """A run checkpointed at step 40 and resumed with steps=40 (allowed: only the step count may
    change) ends with the curve of an uninterrupted 40-step run, whose last point is at step 40
    although 40 is not a multiple of eval_every=25."""
    opts = dict(TINY, checkpoint_every=40)
    longer = Trainer("pendulum", TrainConfig(algo="wpo", steps=100, seed=0, **opts), params=SMALL_PENDULUM,
                     output=tmp_path / "r.h5", progress=False)
    longer.run(until=41)                                 # the checkpoint of step 40 is written
    assert longer.checkpoint_path.exists()
    cfg = TrainConfig(algo="wpo", steps=40, seed=0, **opts)
    resumed = Trainer("pendulum", cfg, params=SMALL_PENDULUM, output=tmp_path / "r.h5", progress=False)
    resumed.load_checkpoint().run()
    full = Trainer("pendulum", cfg, params=SMALL_PENDULUM, progress=False).run()
    assert full.curve["step"] == [25.0, 40.0]
    for k in ("step", "J_exact", "critic_loss", "actor_loss"):
        np.testing.assert_array_equal(resumed.curve[k], full.curve[k])
    resumed.run()                                        # a finished run adds no second point
    assert resumed.curve["step"] == [25.0, 40.0]


def test_gymnasium_twin_refuses_physics_parameters():
    """Pendulum-v1 runs gymnasium's physics (g = 10): a g given for the exact evaluation would make
    J and J* those of another pendulum, so only grid sizes are accepted."""
    pytest.importorskip("gymnasium")
    cfg = TrainConfig(algo="wpo", steps=10, **TINY)
    with pytest.raises(wg.ValidationError, match=r"gymnasium's own physics.*\['g'\]"):
        Trainer("Pendulum-v1", cfg, params=dict(SMALL_PENDULUM, g=9.81), progress=False)
    # a parameter equal to its default changes nothing and is accepted
    tr = Trainer("Pendulum-v1", cfg, params=dict(SMALL_PENDULUM, g=10.0), progress=False)
    assert tr.J_star == wg.solve(wg.problems.get("pendulum", **SMALL_PENDULUM), wg.Discounted(gamma=0.99),
                                 progress=False).J


@pytest.mark.parametrize("field,value,match", [
    ("gamma", "0.99", "gamma must be a finite real number"),
    ("polyak", "nan", "polyak must be a finite real number"),
    ("batch_size", "abc", "batch_size must be an integer"),
    ("horizon", 1.5, "horizon must be an integer"),
    ("eval_every", 2.5, "eval_every must be an integer"),
    ("hidden", "abc", "hidden must be a sequence of layer widths"),
    ("critic_hidden", (64, 0), "critic_hidden width must be an integer >= 1"),
    ("target_entropy", "abc", "target_entropy must be a finite real number"),
    ("wpo_preconditioner", "no", "wpo_preconditioner must be True or False"),
])
def test_bad_configuration_values_name_the_field(field, value, match):
    with pytest.raises(wg.ValidationError, match=match):
        TrainConfig(algo="reparam", **{field: value})


def test_options_of_another_algorithm_are_refused():
    """WPO's KL penalty and WPPG-I's latent dimension are off by default; set for an algorithm
    that has neither, they would be ignored."""
    with pytest.raises(wg.ValidationError, match="WPO's KL penalty; reparam has none"):
        TrainConfig(algo="reparam", kl_mean=0.5)
    with pytest.raises(wg.ValidationError, match="latent_dim sets the implicit policy"):
        TrainConfig(algo="wppg", latent_dim=3)
    assert TrainConfig(algo="wpo", kl_std=1.0).kl_std == 1.0
    assert TrainConfig(algo="wppg-implicit", latent_dim=3).latent_dim == 3


def test_wppg_entropy_term_needs_a_bandwidth():
    """tau > 0 with no executed-action noise would make the entropy estimate (bandwidth = that
    noise) silently 0; it is refused, and tau = 0 without noise is accepted."""
    with pytest.raises(wg.ValidationError, match="needs exploration_std > 0"):
        TrainConfig(algo="wppg", exploration_std=0.0)
    assert TrainConfig(algo="wppg-implicit", exploration_std=0.0, tau=0.0).tau == 0.0


def test_device_that_torch_cannot_use_is_refused():
    from wgflow.nn._torch import resolve_device
    with pytest.raises(wg.ValidationError, match="'gpu'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(wg.ValidationError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_progress_bar_follows_wgflow_s_rule(monkeypatch):
    """None: a bar in a terminal or a notebook (as every wgflow command); False silences it."""
    from wgflow import _progress
    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    cfg = TrainConfig(algo="wpo", steps=10, **TINY)
    assert Trainer("pendulum", cfg, params=SMALL_PENDULUM, progress=None).progress is True
    assert Trainer("pendulum", cfg, params=SMALL_PENDULUM, progress=False).progress is False


def test_parameters_of_a_gymnasium_environment_without_twin_are_refused(tmp_path):
    """Without a grid twin there is no problem the parameters could set: they are not dropped."""
    gym = pytest.importorskip("gymnasium")

    class Line(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(1, np.float32), {}

        def step(self, a):
            return np.zeros(1, np.float32), 0.0, False, False, {}

    if "WgflowTestLine-v0" not in gym.registry:
        gym.register("WgflowTestLine-v0", entry_point=Line, max_episode_steps=5)
    cfg = TrainConfig(algo="wpo", steps=10, **TINY)
    with pytest.raises(wg.ValidationError, match=r"no wgflow grid twin.*\['n_theta'\] would be ignored"):
        Trainer("WgflowTestLine-v0", cfg, params={"n_theta": 9}, progress=False)
    tr = Trainer("WgflowTestLine-v0", cfg, progress=False)
    assert tr.mdp is None and tr.problem is None
    # no physical state to checkpoint: said when the run starts, not at the first checkpoint
    with pytest.raises(wg.ValidationError, match="checkpoint_every=0"):
        Trainer("WgflowTestLine-v0", TrainConfig(algo="wpo", steps=10, **dict(TINY, checkpoint_every=5)),
                output=tmp_path / "l.h5", progress=False)
    Trainer("WgflowTestLine-v0", cfg, output=tmp_path / "l.h5", progress=False).run()   # checkpoint_every=0


def test_summary_gives_the_absolute_gap_when_the_optimum_is_zero():
    from wgflow.nn.results import TrainResult
    res = TrainResult(TrainConfig(objective="average"), {"name": "pendulum", "objective": "average"}, {},
                      0.25, 0.5, 0.0, float("nan"), float("nan"))
    assert "optimum 0 (above the optimum by 0.25)" in res.summary()
    res.J_star = 0.2
    assert "(gap 25.00 %)" in res.summary()             # (0.25 - 0.2) / 0.2


def test_output_in_a_missing_directory_is_refused_before_training(tmp_path):
    cfg = TrainConfig(algo="wpo", steps=10, **TINY)
    with pytest.raises(wg.MissingFileError, match="does not exist"):
        Trainer("pendulum", cfg, params=SMALL_PENDULUM, output=tmp_path / "nodir" / "r.h5", progress=False)


def test_a_multichain_projection_under_the_average_cost_is_nan_not_a_crash():
    """A zero action on the noiseless double integrator leaves every v = 0 cell in place: the
    projected chain has several recurrent classes and no single gain. The curve point is NaN
    with a warning, and the run goes on."""
    cfg = TrainConfig(algo="wpo", steps=10, objective="average", **TINY)
    tr = Trainer("double_integrator", cfg, params=dict(n_states=(9, 9), n_actions=5), progress=False)
    with torch.no_grad():
        last = tr.actor.net.net[-1]
        last.weight.zero_()
        last.bias.zero_()                                # mu = 0: action c + r tanh(0) = 0
    with pytest.raises(wg.NotUnichainError):             # the chain really is multichain
        from wgflow.nn.projection import project_policy
        wg.evaluate(tr.mdp, project_policy(tr.actor, tr.mdp, "deterministic"), wg.Average())
    with pytest.warns(UserWarning, match="recurrent classes"):
        row = tr._evaluate()
    assert np.isnan(row["J_exact"]) and np.isnan(tr.curve["J_exact"][-1])


def test_numpy_parameters_are_stored(tmp_path):
    """Parameters given as numpy numbers (a sweep over np.arange) reach the results file."""
    import wgflow.nn as wnn
    params = {"n_theta": np.int64(9), "n_omega": 9, "n_actions": np.int32(7), "g": np.float64(10.0)}
    res = train("pendulum", algo="wpo", steps=25, seed=0, output=tmp_path / "n.h5", params=params,
                progress=False, **dict(TINY, eval_every=0))
    loaded = wnn.load_result(tmp_path / "n.h5")
    assert loaded.env["params"] == {"n_theta": 9, "n_omega": 9, "n_actions": 7, "g": 10.0}
    assert loaded.J_exact == res.J_exact


def test_checkpoint_of_another_device_is_refused(tmp_path):
    """device="auto" is a GPU where there is one: its checkpoint holds a CUDA generator state,
    which a CPU run cannot continue from (the case is made here by marking a CPU checkpoint)."""
    cfg = TrainConfig(algo="wpo", steps=30, seed=0, **TINY)
    tr = Trainer("pendulum", cfg, params=SMALL_PENDULUM, output=tmp_path / "d.h5", progress=False)
    tr.run(until=5)
    d = tr.state_dict()
    d["device"] = "cuda"
    d["gen"] = torch.zeros(16, dtype=torch.uint8)        # a CUDA generator's state: seed and offset
    torch.save(d, tr.checkpoint_path)
    with pytest.raises(wg.ValidationError, match="written by a run on 'cuda'"):
        Trainer("pendulum", cfg, params=SMALL_PENDULUM, output=tmp_path / "d.h5",
                progress=False).load_checkpoint()


def test_a_failed_exact_evaluation_is_nan_not_a_crash(monkeypatch):
    """wg.evaluate refuses a chain whose stationary law it cannot compute accurately
    (ConvergenceError; e.g. model noise 0.1 on a 9 x 9 pendulum grid under a zero torque, a nearly
    decomposable chain). The curve point is NaN with a warning, and the run goes on."""
    import wgflow.evaluation

    def refuse(*args, **kwargs):
        raise wg.ConvergenceError("stationary law has a negative entry -3.6e-06")

    cfg = TrainConfig(algo="wpo", steps=10, objective="average", **TINY)
    tr = Trainer("pendulum", cfg, params=SMALL_PENDULUM, progress=False)
    monkeypatch.setattr(wgflow.evaluation, "evaluate", refuse)
    with pytest.warns(UserWarning, match="exact evaluation of the deterministic projection.*negative entry"):
        row = tr._evaluate()
    assert np.isnan(row["J_exact"])
