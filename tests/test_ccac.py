"""CCAC: the per-row thresholds (cost-to-go), the classifier's labels, the threshold-conditioned OOD
penalty and multipliers, bit-exact resume, and one tiny run through offline/train.py."""

import io
import json
import math

import numpy as np
import pytest
import torch
from sevpo_testdata import rollout_arrays, run_repo_script, write_reach_avoid_file
from test_baselines import make_dataset, tensors

from go2_sevpo.algorithms import registry
from go2_sevpo.algorithms.base import PretrainContext
from go2_sevpo.algorithms.ccac import CCAC, CCACConfig, classifier_labels, cost_to_go, masked_mean
from go2_sevpo.data.format import OfflineDataset
from go2_sevpo.data.sampler import DeviceSampler

TINY = {"batch_size": 64, "actor_hidden": [32, 32], "critic_hidden": [32, 32], "vae_hidden": [32, 32],
        "classifier_hidden": [32, 32], "multiplier_hidden": [16], "vae_latent_dim": 8, "num_critics": 2,
        "vae_warmup_steps": 5}


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return make_dataset(rollout_arrays(num_envs=24, steps=30, seed=0))


def build(ds, total_steps=8, seed=0, cost_limit=0.0, **overrides):
    torch.manual_seed(seed)
    algo = CCAC(CCACConfig(**{**TINY, **overrides}), ds.obs_dim, ds.act_dim, total_steps, "cpu", seed)
    sampler = DeviceSampler(ds, "cpu", seed)
    algo.pretrain(PretrainContext(dataset=ds, sampler=sampler, fingerprint="t", cache_dir="", log=lambda *a: None,
                                  message=lambda m: None, cost_limit=cost_limit, max_episode_length=30))
    return algo, sampler


def test_cost_to_go_and_labels():
    costs = np.array([1, 0, 2, 0, 3, 1, 1], np.float32)
    ends = np.array([0, 0, 0, 1, 0, 0, 0], bool)  # trajectory 0..3, then an unfinished one 4..6
    ds = OfflineDataset(observations=np.zeros((7, 1), np.float32), next_observations=np.zeros((7, 1), np.float32),
                        actions=np.zeros((7, 1), np.float32), rewards=np.zeros(7, np.float32), costs=costs,
                        terminals=ends, timeouts=np.zeros(7, bool))
    assert cost_to_go(ds).tolist() == [3, 2, 2, 0, 5, 2, 1]
    c = torch.tensor([0.0, 2.0, 5.0])
    assert classifier_labels(c, torch.full_like(c, 2.0)).tolist() == [0.0, 0.0, 1.0]
    assert masked_mean(torch.tensor([1.0, 3.0, 9.0]), torch.tensor([1.0, 1.0, 0.0]))[0].item() == 2.0
    assert masked_mean(torch.tensor([1.0]), torch.tensor([0.0]))[0].item() == 0.0


def test_conditioning_and_the_ood_penalty(dataset):
    """The actor reads the threshold (acting at another c gives other actions); on pairs the classifier
    calls OOD, lambda1(c) grows and the cost critic raises their values while they are below b(c)."""
    algo, sampler = build(dataset, multiplier_lr=1e-2)
    obs = sampler.all().observations[:16]
    first = algo.act(obs, None)
    algo.eval_threshold = 20.0
    assert not torch.allclose(first, algo.act(obs, None))
    th = algo.thresholds[:30]  # the first trajectory: its cost-to-go never rises
    assert th.max().item() > 0 and torch.equal(th.flip(0).cummax(0).values, th.flip(0))

    g = torch.Generator().manual_seed(0)
    gs, ga = torch.randn(64, dataset.obs_dim, generator=g), torch.rand(64, dataset.act_dim, generator=g) * 2 - 1
    algo.generated_ood = lambda c: (gs, ga, torch.ones(64))  # every generated pair is OOD
    c = torch.full((64,), 10.0)  # a budget far above the fresh cost values
    lam_before = algo.multiplier(algo.critic_multiplier, c).mean().item()
    q_before = algo.q_values(gs, c, ga)[1].mean().item()
    for _ in range(30):
        batch, _ = algo.sample(sampler)
        out = algo._update_critics(batch, c, c)
    assert out["ood_fraction"].item() == 1.0
    assert algo.multiplier(algo.critic_multiplier, c).mean().item() > lam_before
    assert algo.q_values(gs, c, ga)[1].mean().item() > q_before + 1.0


def test_resume_is_bit_exact(dataset):
    def run(algo, sampler, steps):
        for step in steps:
            out = algo.update(sampler, step)
            assert all(not isinstance(v, torch.Tensor) or (v.dim() == 0 and not v.requires_grad)
                       for v in out.values())

    first, s1 = build(dataset)
    run(first, s1, range(4))
    buffer = io.BytesIO()
    torch.save({"algo": first.state_dict(), "sampler": s1.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    # Another seed: everything must come from the state, and pretrain must not warm up again.
    resumed = CCAC(CCACConfig(**TINY), dataset.obs_dim, dataset.act_dim, 8, "cpu", 5)
    s2 = DeviceSampler(dataset, "cpu", 5)
    resumed.load_state_dict(state["algo"])
    s2.load_state_dict(state["sampler"])
    resumed.pretrain(PretrainContext(dataset=dataset, sampler=s2, fingerprint="t", cache_dir="", log=lambda *a: None,
                                     message=lambda m: None, cost_limit=0.0, max_episode_length=30))
    run(resumed, s2, range(4, 8))
    whole, s3 = build(dataset)
    run(whole, s3, range(8))
    flat = lambda a: torch.cat([t.flatten().float() for t in tensors(a.state_dict())])  # noqa: E731
    assert torch.equal(flat(resumed), flat(whole))
    assert not torch.equal(flat(first), flat(whole))


def test_registered():
    assert registry.lookup("ccac") is CCAC and registry.config_class("ccac") is CCACConfig


def test_cli_train(tmp_path):
    data = write_reach_avoid_file(tmp_path / "ra.h5", num_envs=24, steps=40, seed=0)
    run = tmp_path / "run"
    r = run_repo_script("offline/train.py", "algo=ccac", f"dataset={data}", f"hydra.run.dir={run}",
                        f"cache_dir={tmp_path / 'cache'}", "steps=20", "save_interval=10", "log_interval=10",
                        "progress=false", "threads=1", "eval.episodes=4", "env.max_episode_length=40",
                        "algo.batch_size=64", "algo.actor_hidden=[32,32]", "algo.critic_hidden=[32,32]",
                        "algo.vae_hidden=[32,32]", "algo.classifier_hidden=[32,32]", "algo.multiplier_hidden=[16]",
                        "algo.num_critics=2", "algo.vae_latent_dim=8", "algo.vae_warmup_steps=10")
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["algo"] == "ccac" and metrics["steps"] == 20 and metrics["episodes"] == 4
    assert all(math.isfinite(metrics[k]) for k in ("mean_return", "mean_cost", "success_rate"))
