"""SEVPO as a whole: the switch to the trust-region loss at K_trust, the lagged-copy refresh, acting,
and the stage-1 cache (reused for the same data and config, refused for another dataset)."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from sevpo_testdata import TINY_ALGO, rollout_arrays

from go2_sevpo.algorithms.base import PretrainContext
from go2_sevpo.algorithms.sevpo import SEVPO, SEVPOConfig, safe_region_objective
from go2_sevpo.data.format import OfflineDataset
from go2_sevpo.data.sampler import DeviceSampler
from go2_sevpo.networks import DiffusionConfig
from go2_sevpo.utils.errors import CacheError, ConfigError


def tiny_config(**overrides) -> SEVPOConfig:
    values = {**TINY_ALGO, **overrides}
    values["actor"] = DiffusionConfig(**{**TINY_ALGO["actor"], "dropout": 0.0, **overrides.get("actor", {})})
    return SEVPOConfig(**values)


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    a = rollout_arrays(num_envs=24, steps=30, seed=0)
    return OfflineDataset(**{k: a[k] for k in ("observations", "next_observations", "actions", "rewards", "costs")},
                          terminals=a["terminals"].astype(bool), timeouts=a["timeouts"].astype(bool))


def context(ds, sampler, cache_dir="", fingerprint=None, cost_limit=0.0) -> PretrainContext:
    return PretrainContext(dataset=ds, sampler=sampler, fingerprint=fingerprint or ds.fingerprint(),
                           cache_dir=str(cache_dir), log=lambda *a: None, message=lambda m: None,
                           log_interval=1000, show_progress=False, cost_limit=cost_limit)


def make(ds, total_steps=10, seed=0, **overrides):
    torch.manual_seed(seed)
    algo = SEVPO(tiny_config(**overrides), ds.obs_dim, ds.act_dim, total_steps, "cpu", seed)
    return algo, DeviceSampler(ds, "cpu", seed)


def test_config_switches_are_validated(dataset):
    for bad in ({"cost_transform": "bogus"}, {"unsafe_actions": "x"}, {"select": "best"}, {"objective_penalty": "y"},
                {"advantage_estimate": "mc"}, {"admissible_test": "hindsight"}, {"reward_critic": "maybe"}):
        with pytest.raises(ConfigError):
            make(dataset, **bad)


def test_update_before_stage1_is_refused(dataset):
    algo, sampler = make(dataset)
    with pytest.raises(RuntimeError, match="stage 1"):
        algo.update(sampler, 0)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_trust_region_switch_at_k_trust(dataset, dropout):
    # Everything is "unsafe" (l < 0), and with k = 1 the lag copy equals the actor at every step, so
    # eq. 15's loss is exactly 0 from K_trust on, while eq. 14's loss before it is not. With dropout
    # the online actor must be compared without it, like z' (else the loss is the dropout noise and
    # the actor diverges, docs/SEVPO.md).
    algo, sampler = make(dataset, total_steps=8, trust_start=0.5, lag_refresh=1, region_threshold=-1.0,
                         actor={"dropout": dropout})
    algo.stage1_done = True
    phases, unsafe_losses = [], []
    for step in range(8):
        out = algo.update(sampler, step)
        phases.append(out["trust_phase"])
        unsafe_losses.append(float(out["loss_actor_unsafe"]))
    assert algo.trust_start_step == 4
    assert phases == [0.0] * 4 + [1.0] * 4
    assert all(x > 0 for x in unsafe_losses[:4])
    assert all(x == 0.0 for x in unsafe_losses[4:])
    assert float(out["safe_state_fraction"]) == 0.0


def test_trust_region_off_keeps_eq14(dataset):
    algo, sampler = make(dataset, total_steps=4, trust_start=0.0, trust_region=False, lag_refresh=1, region_threshold=-1.0)
    algo.stage1_done = True
    out = algo.update(sampler, 3)
    assert out["trust_phase"] == 0.0 and float(out["loss_actor_unsafe"]) > 0


def test_lag_copy_refreshed_every_k_steps(dataset):
    algo, sampler = make(dataset, lag_refresh=3)
    algo.stage1_done = True

    def lag_equals_actor() -> bool:
        return all(torch.equal(a, b) for a, b in zip(algo.actor.parameters(), algo.actor_lag.parameters()))

    pattern = []
    for step in range(7):
        algo.update(sampler, step)
        pattern.append(lag_equals_actor())
    # refreshed after steps 2 and 5 (every 3rd step); between refreshes the actor moves on
    assert pattern == [False, False, True, False, False, True, False]


def test_ema_actor_moves_slowly(dataset):
    algo, sampler = make(dataset, actor_ema=0.5)
    algo.stage1_done = True
    before = [p.clone() for p in algo.actor_ema.parameters()]
    algo.update(sampler, 0)
    for e, e0, a in zip(algo.actor_ema.parameters(), before, algo.actor.parameters()):
        assert torch.allclose(e, 0.5 * e0 + 0.5 * a, atol=1e-6)


def test_act_is_batched_valid_and_follows_the_rule(dataset):
    algo, sampler = make(dataset)
    algo.stage1_done = True
    obs = sampler.sample(10).observations
    g = torch.Generator().manual_seed(0)
    a = algo.act(obs, g)
    assert a.shape == (10, 2) and float(a.abs().max()) <= 1.0
    # with select=minqc the chosen candidate has the least Qc_hat among the same candidates
    algo.cfg = dataclasses.replace(algo.cfg, select="minqc")
    chosen = algo.act(obs, torch.Generator().manual_seed(5))
    cands = algo.actor_ema.sample(obs, torch.Generator().manual_seed(5), algo.cfg.num_candidates)
    qc = algo.conservative_q(obs.repeat_interleave(algo.cfg.num_candidates, 0), cands.reshape(-1, 2)).view(10, -1)
    assert torch.equal(chosen, cands[torch.arange(10), qc.argmin(1)])


def test_same_seed_same_updates(dataset):
    outs = []
    for _ in range(2):
        algo, sampler = make(dataset, seed=4)
        algo.pretrain(context(dataset, sampler))
        for step in range(3):
            algo.update(sampler, step)
        outs.append(torch.cat([p.flatten() for p in algo.actor.parameters()]))
    assert torch.equal(outs[0], outs[1])


def test_mu_safe_zero_skips_the_advantage_exactly(dataset):
    """mu_1 = 0 skips A and Vf (exp(0 A) = 1); the actor and critics must equal those of a run whose
    weights are computed from A with a temperature so small that exp(mu_1 A) rounds to 1."""
    params = {}
    for mu in (0.0, 1e-30):
        algo, sampler = make(dataset, total_steps=6, seed=2, mu_safe=mu, trust_start=0.5)
        assert algo.weighs_advantages == (mu != 0)
        algo.pretrain(context(dataset, sampler))
        vf_before = [p.clone() for p in algo.objective_value.parameters()]
        for step in range(6):
            out = algo.update(sampler, step)
        assert ("advantage_std" in out) == (mu != 0)
        vf_moved = any(not torch.equal(a, b) for a, b in zip(vf_before, algo.objective_value.parameters()))
        assert vf_moved == (mu != 0)  # Vf is trained only when its advantages weigh the loss
        params[mu] = torch.cat([p.flatten() for p in algo.actor.parameters()] + cost_members(algo))
    assert torch.equal(params[0.0], params[1e-30])


def cost_members(algo) -> list[torch.Tensor]:
    """The stage-2 Qc members' parameters, flattened (members [n:] of a full ensemble, or all of a Qc-only one)."""
    n = algo.cfg.num_critics
    return [(p[n:] if algo.has_reward_critic else p).flatten() for p in algo.policy_critics.parameters()]


def test_reward_critic_is_trained_only_when_read(dataset):
    """Where nothing reads Qr (mu_1 = 0, the mode rule) it is not trained; the rest of the run (actor,
    Qc, acting) is exactly that of a run that trains it. Settings that read it refuse `false`."""
    runs = {}
    for flag in ("auto", "true"):
        algo, sampler = make(dataset, total_steps=6, seed=3, mu_safe=0.0, select="mode", reward_critic=flag)
        assert algo.has_reward_critic == (flag == "true")
        assert algo.policy_critics.num_members == (2 if flag == "auto" else 4)
        algo.pretrain(context(dataset, sampler))
        for step in range(6):
            out = algo.update(sampler, step)
        assert ("reward_q_mean" in out) == (flag == "true")
        obs = sampler.sample(16).observations
        assert algo.policy_q(obs, algo.act(obs, torch.Generator().manual_seed(0)))[0] is None or flag == "true"
        actions = algo.act(obs, torch.Generator().manual_seed(0))
        runs[flag] = torch.cat([p.flatten() for p in algo.actor.parameters()] + cost_members(algo) + [actions.flatten()])
    assert torch.equal(runs["auto"], runs["true"])
    for reads in ({"select": "sevpo"}, {"select": "filtered"}, {"mu_safe": 3.0}):
        assert make(dataset, **reads)[0].has_reward_critic
        with pytest.raises(ConfigError, match="reward_critic"):
            make(dataset, reward_critic="false", **reads)
    assert not make(dataset, mu_safe=3.0, advantage_estimate="return")[0].has_reward_critic


def test_checkpoint_with_the_reward_critic_loads_where_auto_drops_it(dataset):
    """Runs trained with Qr (before `reward_critic`, or with `true`) load into a config whose default
    would not build it: same critics, same actions, and training resumes with Qr as it was trained."""
    trained, sampler = make(dataset, total_steps=6, seed=3, mu_safe=0.0, select="mode", reward_critic="true")
    trained.pretrain(context(dataset, sampler))
    for step in range(3):
        trained.update(sampler, step)
    loaded, _ = make(dataset, total_steps=6, seed=5, mu_safe=0.0, select="mode")
    assert not loaded.has_reward_critic
    loaded.load_state_dict(copy.deepcopy(trained.state_dict()))  # as through a file: no shared optimiser state
    assert loaded.has_reward_critic and loaded.policy_critics.num_members == 4
    obs = sampler.sample(16).observations
    for a, b in zip(trained.policy_q(obs, obs[:, :2]), loaded.policy_q(obs, obs[:, :2])):
        assert torch.equal(a, b)
    assert torch.equal(trained.act(obs, torch.Generator().manual_seed(0)), loaded.act(obs, torch.Generator().manual_seed(0)))
    sampler_copy = DeviceSampler(dataset, "cpu", 3)
    sampler_copy.load_state_dict(sampler.state_dict())
    trained.update(sampler, 3)
    loaded.update(sampler_copy, 3)
    assert torch.equal(torch.cat([p.flatten() for p in trained.policy_critics.parameters()]),
                       torch.cat([p.flatten() for p in loaded.policy_critics.parameters()]))
    other, _ = make(dataset, num_critics=1)
    with pytest.raises(ValueError, match="not the same run"):
        other.load_state_dict(trained.state_dict())


def online_actor(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.parametrize("unsafe", [("policy", "per_state"), ("dataset", "batch")])
def test_escape_actor_takes_the_unsafe_region_alone(dataset, unsafe):
    """escape_actor=true: eq. 13 trains only `actor`, eq. 14 only the escape actor (with the one actor,
    eq. 14 moves it too); outside the learned safe region the escape actor acts, inside the main one."""
    moved = {}
    for escape in (False, True):
        algo, sampler = make(dataset, total_steps=20, seed=1, escape_actor=escape, unsafe_actions=unsafe[0], unsafe_weighting=unsafe[1],
                             trust_region=False, safe_loss_weight=0.0, region_threshold=-1.0)  # every state unsafe
        algo.pretrain(context(dataset, sampler))
        before = online_actor(algo.actor)
        escape_before = online_actor(algo.escape_actor) if escape else None
        for step in range(3):
            algo.update(sampler, step)
        moved[escape] = not torch.equal(before, online_actor(algo.actor))
        if escape:
            assert not torch.equal(escape_before, online_actor(algo.escape_actor))
            assert "escape_actor" in algo.state_dict()
    assert moved == {False: True, True: False}

    algo, sampler = make(dataset, total_steps=20, seed=1, escape_actor=True, unsafe_loss_weight=0.0)
    algo.pretrain(context(dataset, sampler))
    escape_before = online_actor(algo.escape_actor)
    for step in range(3):
        algo.update(sampler, step)
    assert torch.equal(escape_before, online_actor(algo.escape_actor))

    # Acting: the escape actor's samples where the learned region says unsafe, the main actor's elsewhere.
    obs = sampler.sample(8).observations
    algo.actor_ema.sample = lambda o, g, n=1: torch.full((o.shape[0], n, 2), -0.5)
    algo.escape_actor_ema.sample = lambda o, g, n=1: torch.full((o.shape[0], n, 2), 0.5)
    unsafe = torch.arange(8) % 2 == 0
    algo.safe_set = lambda o: ~unsafe[: o.shape[0]]
    for select in ("mode", "minqc", "actor"):
        algo.cfg.select = select
        actions = algo.act(obs, torch.Generator().manual_seed(0))
        assert torch.equal(actions[:, 0], torch.where(unsafe, 0.5, -0.5))


def test_return_advantages_score_each_row_by_its_own_trajectory(dataset):
    """advantage_estimate=return: f of a dataset row is eq. 10 on the discounted reward and cost its
    trajectory collected from that row on, whatever the critics say; the weights follow from it."""
    algo, sampler = make(dataset, mu_safe=1.0, advantage_estimate="return", stage1_steps=2)
    algo.pretrain(context(dataset, sampler))
    batch = sampler.sample(32)
    reward_to_go = dataset.discounted_to_go(dataset.rewards, algo.cfg.gamma)[batch.rows.numpy()]
    cost_to_go = dataset.discounted_to_go(dataset.costs, algo.cfg.gamma)[batch.rows.numpy()]
    expected = safe_region_objective(torch.as_tensor(reward_to_go).float(), torch.as_tensor(cost_to_go).float(), algo.delta)
    torch.testing.assert_close(algo.dataset_objective(batch), expected)
    assert (cost_to_go > 0).any() and (cost_to_go == 0).any()  # both branches of f are exercised
    with torch.no_grad():  # the critics do not enter: scrambling them leaves f unchanged
        for p in algo.policy_critics_target.parameters():
            p.add_(1.0)
    torch.testing.assert_close(algo.dataset_objective(batch), expected)
    out = algo.update(sampler, 0)
    assert torch.isfinite(out["loss_actor"]) and "advantage_mean" in out


def test_data_admissibility_drops_rows_whose_trajectory_then_pays_cost(dataset):
    """admissible_test=critic_and_data: a safe state's dataset action is imitated only if the cost
    critic admits it AND its own trajectory's discounted cost to go is <= l. Against the critic's test
    alone, on the same stage 1 and the same rows, some rows the critic admits are dropped."""
    algo, sampler = make(dataset, admissible_test="critic_and_data", stage1_steps=2)
    algo.pretrain(context(dataset, sampler))
    batch = sampler.sample(256)
    cost_to_go = torch.as_tensor(dataset.discounted_to_go(dataset.costs, algo.cfg.gamma)[batch.rows.numpy()]).float()
    torch.testing.assert_close(algo.rows_to_go(batch)[1], cost_to_go)
    critic_ok = algo.conservative_q(batch.observations, batch.actions) <= algo.threshold
    assert ((cost_to_go > algo.threshold) & critic_ok).any()  # rows the data test removes and the critic keeps
    plain, _ = make(dataset, stage1_steps=2)
    plain.pretrain(context(dataset, sampler))
    sampler_a, sampler_b = DeviceSampler(dataset, "cpu", 0), DeviceSampler(dataset, "cpu", 0)
    with_data = float(algo.update(sampler_a, 0)["admissible_fraction"])
    critic_only = float(plain.update(sampler_b, 0)["admissible_fraction"])
    assert with_data < critic_only  # same rows, same stage 1: strictly fewer rows imitated


def test_trajectory_admissibility_keeps_only_rows_of_trajectories_within_the_limit(dataset):
    """admissible_test=critic_and_trajectory: a dataset action is imitated only if the cost critic
    admits it AND its trajectory kept the episode cost limit (BC-safe's rows): no row of a costly
    trajectory gets eq. 13 weight, and on the same rows and stage 1 fewer rows are imitated."""
    algo, sampler = make(dataset, admissible_test="critic_and_trajectory", stage1_steps=2)
    algo.pretrain(context(dataset, sampler))
    lengths = np.diff(dataset.episode_bounds(), axis=1)[:, 0]
    costly = np.repeat(dataset.episode_costs() > 0.0, lengths)  # the context's cost limit is 0
    assert costly.any() and not costly.all()
    np.testing.assert_array_equal(algo.trajectory_safe.numpy(), (~costly).astype(np.float32))
    plain, _ = make(dataset, stage1_steps=2)
    plain.pretrain(context(dataset, sampler))
    sampler_a, sampler_b = DeviceSampler(dataset, "cpu", 0), DeviceSampler(dataset, "cpu", 0)
    with_trajectory = float(algo.update(sampler_a, 0)["admissible_fraction"])
    critic_only = float(plain.update(sampler_b, 0)["admissible_fraction"])
    assert with_trajectory < critic_only
    with pytest.raises(ConfigError, match="episode cost limit"):
        make(dataset, admissible_test="critic_and_trajectory", stage1_steps=2)[0].pretrain(
            context(dataset, sampler, cost_limit=None))
    below_every_trajectory = float(dataset.episode_costs().min()) - 1.0  # no trajectory kept: refused
    with pytest.raises(ConfigError, match="no trajectory"):
        make(dataset, admissible_test="critic_and_trajectory", stage1_steps=2)[0].pretrain(
            context(dataset, sampler, cost_limit=below_every_trajectory))


def test_stage1_cache_reused_and_guarded(dataset, tmp_path):
    algo, sampler = make(dataset)
    algo.pretrain(context(dataset, sampler, tmp_path))
    files = list(tmp_path.glob("sevpo_stage1_*.pt"))
    assert len(files) == 1 and dataset.fingerprint() in files[0].name
    trained = algo.conservative_cost_value.state_dict()

    # Same data, same stage-1 config, another run seed: loaded, identical networks, no training.
    other, sampler2 = make(dataset, seed=9)
    other._train_stage1 = lambda ctx: pytest.fail("stage 1 retrained although cached")
    other.pretrain(context(dataset, sampler2, tmp_path))
    assert other.stage1_done
    assert all(torch.equal(trained[k], v) for k, v in other.conservative_cost_value.state_dict().items())

    # Another stage-1 config gets another file (not the cached one).
    changed, sampler3 = make(dataset, cost_expectile=0.8)
    assert changed.stage1_cache_path(context(dataset, sampler3, tmp_path)) != files[0]

    # A cache from another dataset: refused with a one-line error.
    foreign, sampler4 = make(dataset, stage1_cache=str(files[0]))
    with pytest.raises(CacheError, match="another dataset"):
        foreign.pretrain(context(dataset, sampler4, tmp_path, fingerprint="0123456789abcdef"))
    # Same file, other stage-1 settings: refused too.
    mismatch, sampler5 = make(dataset, stage1_cache=str(files[0]), alpha=0.5)
    with pytest.raises(CacheError, match="other stage-1 settings"):
        mismatch.pretrain(context(dataset, sampler5, tmp_path))
    # A corrupt cache file: one-line error.
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a torch file")
    corrupt, sampler6 = make(dataset, stage1_cache=str(bad))
    with pytest.raises(CacheError, match="unreadable"):
        corrupt.pretrain(context(dataset, sampler6, tmp_path))


def test_cached_stage1_leaves_stage2_unchanged(dataset, tmp_path):
    """A run that loads stage 1 from the cache continues exactly like one that trained it."""
    results = []
    for _ in range(2):  # first: trains and writes the cache; second: loads it
        algo, sampler = make(dataset, seed=1)
        algo.pretrain(context(dataset, sampler, tmp_path))
        for step in range(3):
            algo.update(sampler, step)
        results.append(torch.cat([p.flatten() for p in algo.actor.parameters()]))
    assert torch.equal(results[0], results[1])


def test_reach_avoid_specialisation_is_merged_into_the_cpu_config_only():
    # configs/algo_env/sevpo_reach_avoid.yaml (l = 0.1, no eq. 13 weights, pathwise eq. 12, BC-safe's
    # trajectory test in eq. 13) applies to `algo=sevpo` on
    # reach_avoid; the paper-sized config keeps Table 8's mu_1 = 3; an override still wins.
    from hydra import compose, initialize_config_dir

    from go2_sevpo.algorithms import registry
    from go2_sevpo.config import CONFIG_DIR, register_configs, register_schema
    from go2_sevpo.training.trainer import TrainConfig

    register_schema(None, "train", TrainConfig)
    registry.register_schemas()
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cpu = compose("train", overrides=["dataset=x.h5", "algo=sevpo", "env=reach_avoid"]).algo
        paper = compose("train", overrides=["dataset=x.h5", "algo=sevpo_paper", "env=reach_avoid"]).algo
        override = compose("train", overrides=["dataset=x.h5", "algo=sevpo", "algo.mu_safe=3"]).algo
    assert (cpu.mu_safe, cpu.region_threshold) == (0.0, 0.1)
    assert (cpu.unsafe_update, cpu.admissible_test) == ("pathwise", "critic_and_trajectory")
    assert paper.mu_safe == 3.0 and override.mu_safe == 3.0
    assert (paper.unsafe_update, paper.admissible_test) == ("self_imitation", "critic")  # the spec's form


def test_pathwise_unsafe_update_lowers_the_conservative_cost_of_the_policy_actions(dataset):
    """unsafe_update=pathwise: eq. 12 through the reverse process. With every state unsafe and no
    safe-region loss, a few steps on a fixed batch must lower the mean Qc_hat of the actor's own
    (differentiable) samples, leave the frozen conservative critic untouched and without gradients,
    and before stage 2's K_trust it never calls the self-imitation sampler."""
    algo, sampler = make(dataset, total_steps=200, seed=2, unsafe_update="pathwise", trust_region=False,
                         safe_loss_weight=0.0, region_threshold=-1.0, actor_lr=3e-3)
    algo.pretrain(context(dataset, sampler))
    critic_before = online_actor(algo.conservative_cost_critic)
    for p in algo.conservative_cost_critic.parameters():
        p.grad = None  # what stage 1's last step left
    obs = sampler.sample(64).observations

    def policy_cost() -> float:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return float(algo.conservative_q(obs, algo.actor.sample_with_grad(obs, gen)).mean())

    algo.actor.sample = lambda *a, **k: pytest.fail("pathwise eq. 14 sampled self-imitation targets")
    before = policy_cost()
    for step in range(40):
        algo.update(sampler, step)
    assert policy_cost() < before
    assert torch.equal(critic_before, online_actor(algo.conservative_cost_critic))
    assert all(p.grad is None for p in algo.conservative_cost_critic.parameters())


def test_pathwise_sample_matches_the_sampler(dataset):
    """sample_with_grad is the same reverse process as sample (same draws give the same action)."""
    algo, _ = make(dataset, actor={"compile_sampling": "never"})
    obs = torch.as_tensor(dataset.observations[:5])
    a = algo.actor.sample(obs, torch.Generator().manual_seed(3))[:, 0]
    b = algo.actor.sample_with_grad(obs, torch.Generator().manual_seed(3))
    assert b.requires_grad and torch.allclose(a, b.detach())
    with pytest.raises(ConfigError, match="pathwise"):
        make(dataset, unsafe_update="pathwise", unsafe_actions="dataset")
