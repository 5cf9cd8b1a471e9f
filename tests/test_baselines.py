"""The baselines (FISOR, BC-all, BC-safe, CPQ, COptiDICE): their formulas on hand-computed cases, the
behaviour that defines each (BC-safe's filter, CPQ's OOD cost penalty, COptiDICE's weights and
multiplier), bit-exact resume of every algorithm in process, and one CLI run of each."""

import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from sevpo_testdata import assert_one_line_error, rollout_arrays, run_repo_script, write_reach_avoid_file

from go2_sevpo.algorithms import registry
from go2_sevpo.algorithms.base import PretrainContext
from go2_sevpo.algorithms.bc import BC, BCSafeConfig
from go2_sevpo.algorithms.common import hj_target, safe_trajectory_rows
from go2_sevpo.algorithms.coptidice import (COptiDICE, COptiDICEConfig, correction_weights, dice_residual,
                                            f_divergence)
from go2_sevpo.algorithms.cpq import CPQ, CPQConfig, ood_mask, ood_penalty
from go2_sevpo.algorithms.fisor import FISOR, FISORConfig, fisor_actor_weights
from go2_sevpo.data.format import OfflineDataset
from go2_sevpo.data.sampler import DeviceSampler
from go2_sevpo.evaluation import results
from go2_sevpo.networks import DiffusionConfig

TINY_DIFFUSION = DiffusionConfig(hidden_dim=16, num_blocks=1, time_dim=8, time_hidden=[16, 16])
TINY = {
    "fisor": {"actor_batch_size": 64, "critic_batch_size": 64, "critic_hidden": [32, 32], "num_candidates": 4,
              "actor": TINY_DIFFUSION},
    "bc_all": {"batch_size": 64, "hidden": [32, 32]},
    "bc_safe": {"batch_size": 64, "hidden": [32, 32]},
    "cpq": {"batch_size": 64, "actor_hidden": [32, 32], "critic_hidden": [32, 32], "vae_hidden": [32, 32],
            "ood_samples": 4},
    "coptidice": {"batch_size": 64, "initial_batch_size": 32, "hidden": [32, 32]},
}


def make_dataset(arrays) -> OfflineDataset:
    return OfflineDataset(**{k: np.asarray(arrays[k], dtype=np.float32) for k in
                             ("observations", "next_observations", "actions", "rewards", "costs")},
                          terminals=np.asarray(arrays["terminals"]).astype(bool),
                          timeouts=np.asarray(arrays["timeouts"]).astype(bool))


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return make_dataset(rollout_arrays(num_envs=24, steps=30, seed=0))


def context(ds, cost_limit=0.0, episode_length=30) -> PretrainContext:
    return PretrainContext(dataset=ds, sampler=None, fingerprint="test", cache_dir="", log=lambda *a: None,
                           message=lambda m: None, show_progress=False, cost_limit=cost_limit,
                           max_episode_length=episode_length)


def build(name, ds, total_steps=20, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = registry.config_class(name)(**{**TINY[name], **overrides})
    algo = registry.lookup(name)(cfg, ds.obs_dim, ds.act_dim, total_steps, "cpu", seed)
    sampler = DeviceSampler(ds, "cpu", seed)
    algo.pretrain(context(ds))
    return algo, sampler


# ----------------------------------------------------------------------------- FISOR
def test_hj_target_hand_values():
    # h = 25 where c > 0 else -1; (1 - g) h + g max(h, V(s')) when bootstrapping, h where terminal.
    costs = torch.tensor([0.0, 1.0, 0.0, 0.0])
    next_v = torch.tensor([-0.5, 3.0, 2.0, 5.0])
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0])
    out = hj_target(costs, next_v, mask, gamma=0.9, scale=25.0)
    expected = torch.tensor([0.1 * -1 + 0.9 * -0.5, 0.1 * 25 + 0.9 * 25, -1.0, 0.1 * -1 + 0.9 * 5.0])
    assert torch.allclose(out, expected, atol=1e-6), out


def test_fisor_actor_weights_hand_values():
    cfg = FISORConfig()
    #          feasible   feas. s, bad a   infeasible   infeasible   feas. clipped  infeas. clipped
    vh = torch.tensor([-1.0, -1.0, 1.0, 2.0, -1.0, 2.0])
    qh = torch.tensor([-0.5, 0.5, 0.8, 3.0, -1.0, 0.0])
    q = torch.tensor([1.2, 5.0, 9.0, 9.0, 3.0, 0.0])
    v = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    w_f, w_u = fisor_actor_weights(q, v, qh, vh, cfg)
    assert torch.allclose(w_f, torch.tensor([math.exp(3 * 0.2), 0, 0, 0, 100.0, 0]), rtol=1e-5)
    assert torch.allclose(w_u, torch.tensor([0, 0, math.exp(5 * 0.2), math.exp(-5.0), 0, 150.0]), rtol=1e-5)
    # FISOR's released code clips the infeasible weight at 1 from below; the switch reproduces it.
    _, w_u1 = fisor_actor_weights(q, v, qh, vh, FISORConfig(min_cost_weight=1.0))
    assert float(w_u1[3]) == 1.0 and float(w_u1[0]) == 0.0


def test_fisor_reward_scaling_and_feasible_region(dataset):
    algo, sampler = build("fisor", dataset)
    spread = dataset.episode_returns().max() - dataset.episode_returns().min()
    assert math.isclose(algo.reward_multiplier, 1000.0 / spread, rel_tol=1e-6)
    off, _ = build("fisor", dataset, normalize_rewards=False)
    assert off.reward_multiplier == 1.0
    algo.update(sampler, 0)
    obs = sampler.all().observations[:50]
    assert torch.equal(algo.safe_set(obs), algo.feasibility_value(obs) <= 0)
    actions = algo.act(obs, torch.Generator().manual_seed(0))
    assert actions.shape == (50, 2) and actions.abs().max() <= 1.0


def test_fisor_constraint_signal_is_the_hazard_depth(dataset):
    """FISOR's toy launcher feeds the HJ critics h = hazard radius - distance of s' (> 0 exactly where
    the step has cost) instead of 25 / -1; it changes the feasibility critics and nothing else."""
    assert (dataset.costs > 0).any() and (dataset.costs == 0).any()
    algos = {}
    for signal in ("cost", "constraint"):
        torch.manual_seed(0)
        algo = FISOR(FISORConfig(**TINY["fisor"], feasibility_signal=signal), dataset.obs_dim, dataset.act_dim,
                     20, "cpu", 0)
        algo.pretrain(dataclasses.replace(context(dataset), env_name="reach_avoid"))
        algo.update(DeviceSampler(dataset, "cpu", 0), 0)
        algos[signal] = algo
    h = algos["constraint"].constraint_values
    assert torch.allclose(h, torch.as_tensor(0.8 - dataset.next_observations[:, 5]))
    assert torch.equal(h > 0, torch.as_tensor(dataset.costs > 0))
    assert algos["cost"].constraint_values is None
    def same(name):
        return all(torch.equal(x, y) for x, y in zip(getattr(algos["cost"], name).parameters(),
                                                      getattr(algos["constraint"], name).parameters()))
    assert same("reward_critic") and same("actor")
    assert not same("feasibility_critic")


def test_fisor_constraint_signal_refuses_data_of_another_task(dataset):
    from go2_sevpo.utils.errors import ConfigError
    algo = FISOR(FISORConfig(**TINY["fisor"], feasibility_signal="constraint"), dataset.obs_dim, dataset.act_dim,
                 20, "cpu", 0)
    with pytest.raises(ConfigError, match="name of the task"):
        algo.pretrain(context(dataset))
    flipped = dataclasses.replace(dataset, costs=1.0 - dataset.costs)
    with pytest.raises(ConfigError, match="agree with env 'reach_avoid'"):
        algo.pretrain(dataclasses.replace(context(flipped), env_name="reach_avoid"))
    with pytest.raises(ConfigError, match="feasibility_signal"):
        FISOR(FISORConfig(**TINY["fisor"], feasibility_signal="depth"), dataset.obs_dim, dataset.act_dim, 20, "cpu", 0)


# ----------------------------------------------------------------------------- BC-safe
def tagged_dataset(costs_per_trajectory) -> OfflineDataset:
    """Trajectories with the given per-step costs; observation[:, 0] is the row index."""
    costs = np.concatenate([np.asarray(c, dtype=np.float32) for c in costs_per_trajectory])
    n = len(costs)
    ends = np.cumsum([len(c) for c in costs_per_trajectory]) - 1
    obs = np.zeros((n, 3), np.float32)
    obs[:, 0] = np.arange(n)
    timeouts = np.zeros(n, bool)
    timeouts[ends] = True
    return make_dataset({"observations": obs, "next_observations": obs, "actions": np.zeros((n, 2)),
                         "rewards": np.zeros(n), "costs": costs, "terminals": np.zeros(n, bool), "timeouts": timeouts})


def test_safe_trajectory_rows():
    ds = tagged_dataset([[0, 0], [0, 1, 0], [2], [0, 0, 0, 0]])
    assert safe_trajectory_rows(ds, 0.0).tolist() == [0, 1, 6, 7, 8, 9]
    assert safe_trajectory_rows(ds, 1.0).tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert safe_trajectory_rows(ds, 5.0).tolist() == list(range(10))
    from go2_sevpo.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="bc_safe: no trajectory of the dataset has episode cost <= -1.0"):
        safe_trajectory_rows(ds, -1.0)  # nothing to train on: refused, naming the caller


def test_bc_safe_clones_only_safe_trajectories():
    ds = tagged_dataset([[0, 0], [0, 1, 0], [2], [0, 0, 0, 0]])
    sampler = DeviceSampler(ds, "cpu", 0)
    seen = []
    sample = sampler.sample

    def recording_sample(*args, **kwargs):
        batch = sample(*args, **kwargs)
        seen.append(batch.observations[:, 0].long())
        return batch

    sampler.sample = recording_sample
    algo = BC(BCSafeConfig(batch_size=64, hidden=[8]), 3, 2, 10, "cpu", 0)
    with pytest.raises(RuntimeError, match="pretrain"):
        algo.update(sampler, 0)
    algo.pretrain(context(ds, cost_limit=0.0))
    for step in range(5):
        algo.update(sampler, step)
    drawn = set(torch.cat(seen).tolist())
    assert drawn == {0, 1, 6, 7, 8, 9}  # every safe row, and no row of the two unsafe trajectories
    algo_all = BC(BCSafeConfig(batch_size=64, hidden=[8], cost_limit=10.0), 3, 2, 10, "cpu", 0)
    algo_all.pretrain(context(ds, cost_limit=0.0))  # algo.cost_limit overrides the task's kappa
    assert algo_all.rows.numel() == 10


# ----------------------------------------------------------------------------- CPQ
def test_ood_penalty_and_mask():
    qc = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])  # (members, actions): member mean 2,2,2,2
    ood = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mean, gap = ood_penalty(qc, ood, threshold=0.5)
    assert float(mean) == 2.0 and float(gap) == 1.5
    mean, gap = ood_penalty(qc, torch.zeros(4), threshold=0.5)  # nothing OOD: no penalty, no dual step
    assert float(mean) == 0.5 and float(gap) == 0.0
    data_scores = torch.arange(10.0)  # the 0.9 quantile is 8.1
    assert ood_mask(torch.tensor([8.0, 8.2, 100.0]), data_scores, 0.9).tolist() == [0.0, 1.0, 1.0]


def cpq_toy(penalty_max: float):
    """Data: every action near (0.5, 0.5) with zero cost; the policy proposes (-0.9, -0.9), far outside."""
    n, g = 512, torch.Generator().manual_seed(0)
    obs = torch.randn(n, 3, generator=g)
    actions = (0.5 + 0.05 * torch.randn(n, 2, generator=g)).clamp(-1, 1)
    timeouts = np.zeros(n, bool)
    timeouts[15::16] = True
    ds = make_dataset({"observations": obs, "next_observations": obs.roll(1, 0), "actions": actions,
                       "rewards": np.zeros(n), "costs": np.zeros(n), "terminals": np.zeros(n, bool),
                       "timeouts": timeouts})
    torch.manual_seed(0)
    cfg = CPQConfig(batch_size=128, actor_hidden=[16], critic_hidden=[32, 32], vae_hidden=[32, 32], ood_samples=4,
                    cost_threshold=1.0, penalty_init=0.0, penalty_lr=0.05, penalty_max=penalty_max, critic_lr=3e-3,
                    vae_lr=3e-3)
    algo = CPQ(cfg, 3, 2, 100, "cpu", 0)
    algo.pretrain(context(ds))
    with torch.no_grad():  # a near-deterministic policy at (-0.9, -0.9)
        last = algo.actor.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([math.atanh(-0.9)] * 2 + [-5.0] * 2))
    sampler = DeviceSampler(ds, "cpu", 0)
    for _ in range(300):
        batch = sampler.sample(cfg.batch_size)
        algo._update_vae(batch)
    return algo, sampler, ds


def test_cpq_ood_actions_get_higher_cost_values():
    results = {}
    for penalty_max in (0.0, 1.0):  # 0: alpha stays 0, no penalty (the control)
        algo, sampler, ds = cpq_toy(penalty_max)
        batch = sampler.sample(128)
        obs_rep, sampled, ood = algo.ood_actions(batch.observations, batch.actions)
        assert float(ood.mean()) > 0.95  # the VAE flags the policy's far-away actions as OOD
        data_scores = algo.vae.ood_score(batch.observations, batch.actions)
        assert float((algo.vae.ood_score(obs_rep, sampled) > data_scores.max()).float().mean()) > 0.95
        alphas = []
        for _ in range(150):
            alphas.append(float(algo._update_critics(sampler.sample(128))["penalty"]))
        obs = torch.as_tensor(ds.observations)
        with torch.no_grad():
            _, qc_data = algo.q_values(obs, torch.as_tensor(ds.actions))
            _, qc_ood = algo.q_values(obs, torch.full((len(ds), 2), -0.9))
        results[penalty_max] = (float(qc_data.mean()), float(qc_ood.mean()), max(alphas))
    (data0, ood0, alpha0), (data1, ood1, alpha1) = results[0.0], results[1.0]
    # With the penalty the OOD actions' cost value is pushed above l_ood = 1.5 (then alpha decays to 0
    # and stops pushing), above the threshold l = 1 the actor respects; the data's stays near its target 0.
    assert alpha0 == 0.0 and alpha1 > 0.0, results
    assert 1.5 < ood1 < 50.0 and abs(data1) < 0.5 and ood1 > ood0 + 1.0 and ood1 > data1 + 1.0, results


def test_cpq_dual_ascent_raises_the_penalty(dataset):
    algo, sampler = build("cpq", dataset, cost_threshold=5.0, penalty_lr=0.01)
    before = float(algo.penalty)
    for step in range(3):
        out = algo.update(sampler, step)
    # Untrained cost values are far below l_ood = 7.5 on OOD actions, so alpha grows.
    assert float(out["penalty"]) > before and float(algo.penalty) <= algo.cfg.penalty_max


# ----------------------------------------------------------------------------- COptiDICE
def test_coptidice_correction_weights_hand_case():
    rewards, costs = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 0.0])
    nu, next_nu, mask = torch.tensor([0.5, 0.5, 1.0]), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0])
    e = dice_residual(rewards, costs, nu, next_nu, mask, lam=2.0, gamma=0.9)
    assert torch.allclose(e, torch.tensor([1.4, -2.5, 1.0]))
    y = e / 0.5
    expected = {"chi2": torch.tensor([3.8, 0.0, 3.0]), "softchi": torch.tensor([3.8, math.exp(-5.0), 3.0]),
                "kl": torch.exp(y - 1.0)}
    grid = torch.linspace(0.0, 10.0, 100001)
    for kind, want in expected.items():
        f, f_prime_inv = f_divergence(kind)
        w = correction_weights(e, 0.5, f_prime_inv)
        assert torch.allclose(w, want, rtol=1e-5, atol=1e-7), (kind, w)
        assert bool((w >= 0).all())
        # w* maximises w e - alpha f(w) over w >= 0 (the inner problem it is the closed form of).
        for i in range(3):
            objective = grid * e[i] - 0.5 * f(grid)
            assert abs(float(grid[objective.argmax()]) - float(w[i])) < 1e-3 + 1e-4 * float(w[i]), (kind, i)


def test_coptidice_multiplier_rises_when_cost_exceeds_budget(dataset):
    arrays = rollout_arrays(num_envs=24, steps=30, seed=0)
    arrays["costs"] = np.ones_like(arrays["costs"])  # every step costs 1: any policy exceeds c_hat = 0
    ds = make_dataset(arrays)
    algo, sampler = build("coptidice", ds, cost_threshold=0.0)
    before = float(algo.lagrange_multiplier.detach())
    for step in range(10):
        out = algo.update(sampler, step)
    assert float(out["cost_estimate"]) > 0 and float(algo.lagrange_multiplier.detach()) > before
    assert float(out["weight_mean"]) >= 0
    # Initial states: the first row of every trajectory (each env's row block starts one, goals end some early).
    starts = algo.init_rows.tolist()
    assert set(range(0, 24 * 30, 30)) <= set(starts) and starts == ds.episode_bounds()[:, 0].tolist()


# ----------------------------------------------------------------------------- every algorithm
@pytest.mark.parametrize("name", ["fisor", "bc_all", "bc_safe", "cpq", "coptidice"])
def test_resume_is_bit_exact(name, dataset):
    def run(algo, sampler, steps):
        for step in steps:
            out = algo.update(sampler, step)
            for v in out.values():
                assert not isinstance(v, torch.Tensor) or (v.dim() == 0 and not v.requires_grad)
        return algo

    first, sampler1 = build(name, dataset, total_steps=8)
    torch.manual_seed(123)  # the trainer also restores the global RNG (dropout)
    run(first, sampler1, range(4))
    buffer = io.BytesIO()
    torch.save({"algo": first.state_dict(), "sampler": sampler1.state_dict(), "rng": torch.get_rng_state()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    resumed, sampler2 = build(name, dataset, total_steps=8, seed=5)  # other init: everything must come from state
    resumed.load_state_dict(state["algo"])
    sampler2.load_state_dict(state["sampler"])
    torch.set_rng_state(state["rng"])
    run(resumed, sampler2, range(4, 8))

    whole, sampler3 = build(name, dataset, total_steps=8)
    torch.manual_seed(123)
    run(whole, sampler3, range(8))
    flat = lambda algo: torch.cat([t.flatten().float() for t in tensors(algo.state_dict())])  # noqa: E731
    assert torch.equal(flat(resumed), flat(whole))
    assert not torch.equal(flat(first), flat(whole))  # the comparison sees training progress


def tensors(obj):
    """Every tensor in a nested state dict (networks, optimisers, multipliers), in a fixed order."""
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.dtype != torch.uint8 else [obj.float()]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in tensors(v)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [torch.tensor(float(obj))]
    return []


# ----------------------------------------------------------------------------- the CLI
CLI_TINY = {
    "fisor": ["algo.actor_batch_size=64", "algo.critic_batch_size=64", "algo.critic_hidden=[32,32]",
              "algo.actor.hidden_dim=16", "algo.actor.num_blocks=1", "algo.actor.time_dim=8",
              "algo.actor.time_hidden=[16,16]", "algo.num_candidates=4"],
    "bc_all": ["algo.batch_size=64", "algo.hidden=[32,32]"],
    "bc_safe": ["algo.batch_size=64", "algo.hidden=[32,32]"],
    "cpq": ["algo.batch_size=64", "algo.actor_hidden=[32,32]", "algo.critic_hidden=[32,32]",
            "algo.vae_hidden=[32,32]", "algo.ood_samples=2"],
    "coptidice": ["algo.batch_size=64", "algo.initial_batch_size=32", "algo.hidden=[32,32]"],
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    return write_reach_avoid_file(tmp_path_factory.mktemp("data") / "ra.h5", num_envs=48, steps=40, seed=0)


@pytest.mark.parametrize("name", ["fisor", "bc_all", "bc_safe", "cpq", "coptidice"])
def test_cli_train_and_resume(name, data_file, tmp_path):
    import json

    run = tmp_path / "root" / "reach_avoid" / name / "ra" / "seed0"  # the results table's layout
    args = ["offline/train.py", f"algo={name}", f"dataset={data_file}", f"hydra.run.dir={run}",
            f"cache_dir={tmp_path / 'cache'}", "steps=30", "save_interval=10", "log_interval=10", "progress=false",
            "threads=1", "eval.episodes=4", "env.max_episode_length=40", *CLI_TINY[name]]
    r = run_repo_script(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["algo"] == name and metrics["steps"] == 30 and metrics["episodes"] == 4
    assert all(math.isfinite(metrics[k]) for k in ("mean_return", "mean_cost", "success_rate"))
    if name == "fisor":  # the same command again resumes through load_state_dict (bit-exactness: above)
        r = run_repo_script(*args)
        assert r.returncode == 0 and "already complete" in r.stdout + r.stderr, r.stderr[-2000:]
    if name == "bc_all":  # the results table from the finished run (load_run + evaluator, in process)
        (runs,) = [results.discover_runs(tmp_path / "root")]
        assert [(r.env, r.algo, r.dataset, r.seed) for r in runs] == [("reach_avoid", "bc_all", "ra", 0)]
        rows, skipped = results.collect(runs, ["paper", "hazard"], episodes=3, message=lambda m: None)
        assert [r["start"] for r in rows] == ["paper", "hazard"] and not skipped
        assert rows[1]["mean_cost"] > 0  # hazard starts inside the hazard
        results.write_results(rows, tmp_path / "out")
        for f in ("results.md", "results.csv", "runs.csv", "results.png"):
            assert (tmp_path / "out" / f).is_file()
        assert (run / "eval/hazard_seed0/metrics.json").is_file()


def test_results_aggregation(tmp_path):
    rows = [{"env": "e", "dataset": "d", "start": "paper", "algo": a, "seed": s, "steps": 10, "episodes": 5,
             **{k: v for k, _, _ in results.TABLE_METRICS}} for a, s, v in
            (("fisor", 0, 1.0), ("fisor", 1, 3.0), ("sevpo", 0, 0.5), ("sevpo", 1, 0.5), ("sevpo", 2, 0.5))]
    groups = results.aggregate(rows, algo_order=["sevpo", "fisor"])
    assert [g["algo"] for g in groups] == ["sevpo", "fisor"] and [g["seeds"] for g in groups] == [3, 2]
    assert groups[1]["success_rate_mean"] == 2.0 and math.isclose(groups[1]["success_rate_std"], math.sqrt(2.0))
    assert groups[0]["failure_rate_std"] == 0.0
    one = results.aggregate(rows[:1])
    assert math.isnan(one[0]["normalized_cost_std"])  # one seed: no spread
    md = results.markdown(groups, skipped=["x (not finished)"])
    assert "| fisor | 2 | 10 | 2.000 ± 1.414 |" in md and "## e / d / start=paper" in md and "x (not finished)" in md
    assert "region IoU" in md and "| fall |" in md
    # The overview: one row per algorithm, one column per dataset, a cell per (algo, dataset) present.
    other = results.aggregate([*rows, {**rows[0], "dataset": "d2", "success_rate": 0.25, "failure_rate": 0.75, "mean_cost": 4.0}])
    overview = "\n".join(results.overview(other))
    assert "| algo | d | d2 |" in overview and "| fisor | 2.00 / 2.00 / 2.00 (2) | 0.25 / 0.75 / 4.00 (1) |" in overview
    assert "| sevpo | 0.50 / 0.50 / 0.50 (3) | - |" in overview
    named = results.aggregate([{**r, "dataset": d} for r in rows[:1] for d in ("reckless", "low", "high")])
    assert "| algo | high | low | reckless |" in "\n".join(results.overview(named))  # qualities first
    no_region = [{**r, "region_iou": None} for r in rows]  # e.g. Go2: no oracle region, so no column
    assert "region IoU" not in results.markdown(results.aggregate(no_region))
    unfinished = tmp_path / "root/e/fisor/d/seed3"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "checkpoints/latest.pt").write_bytes(b"")
    (runs,) = [results.discover_runs(tmp_path / "root")]
    assert [(r.algo, r.seed) for r in runs] == [("fisor", 3)]
    assert results.collect(runs, ["paper"], 3, message=lambda m: None) == ([], [f"{unfinished} (not finished)"])


def test_runs_csv_round_trip_and_merge(tmp_path):
    """A table assembled across sessions: the runs.csv written earlier reads back with its types, a run
    evaluated again replaces its earlier row, and a file that is not a runs.csv is a clear error."""
    def row(algo, seed, success, code="abc"):
        return {"env": "e", "dataset": "d", "start": "paper", "algo": algo, "seed": seed, "steps": 10,
                "episodes": 5, "eval_seed": 0, **{k: success for k, _, _ in results.TABLE_METRICS},
                "region_iou": None, "fingerprint": "f", "code": code}

    earlier = [row("bc_all", 0, 0.5), row("bc_all", 1, 0.25)]
    results.write_results(earlier, tmp_path / "a")
    back = results.read_rows(tmp_path / "a" / "runs.csv")
    assert back == earlier  # ints, floats and the empty region IoU (None) come back as written
    merged = results.merge_rows([row("bc_all", 1, 1.0, code="def")], back)
    assert sorted((r["seed"], r["success_rate"], r["code"]) for r in merged) == [(0, 0.5, "abc"), (1, 1.0, "def")]
    # The recipe was changed and rebuilt: a fresh run on the new file drops the old file's merged rows
    # (any algorithm), and a table that still mixes two versions of one dataset is refused.
    rebuilt = {**row("sevpo", 0, 1.0, code="new"), "fingerprint": "g"}
    assert results.merge_rows([rebuilt], back) == [rebuilt]
    assert len(results.merge_rows([{**rebuilt, "dataset": "other"}], back)) == 3
    with pytest.raises(ValueError, match=r"e/d: rows from 2 versions of the dataset \(f \(2 rows\), g \(1 rows\)\)"):
        results.write_results([rebuilt, *back], tmp_path / "mixed")
    assert not (tmp_path / "mixed" / "runs.csv").exists()
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a runs.csv"):
        results.read_rows(tmp_path / "bad.csv")
    (tmp_path / "a" / "runs.csv").write_text((tmp_path / "a" / "runs.csv").read_text().replace(",10,", ",ten,", 1))
    with pytest.raises(ValueError, match=r"runs.csv:2: unreadable row"):
        results.read_rows(tmp_path / "a" / "runs.csv")


def test_cli_bad_algorithm_and_misspelt_key(data_file, tmp_path):
    assert_one_line_error(run_repo_script("offline/train.py", "algo=nonexistent", f"dataset={data_file}"),
                          "unknown algo 'nonexistent'")
    r = run_repo_script("offline/train.py", "algo=cpq", f"dataset={data_file}", "algo.ood_sampels=3",
                        f"hydra.run.dir={tmp_path / 'r'}")
    assert_one_line_error(r, "ood_sampels")
