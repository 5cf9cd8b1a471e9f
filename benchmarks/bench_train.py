"""Offline training throughput: gradient steps per second per algorithm and size, with a breakdown.

    python benchmarks/bench_train.py                                   # every algorithm, 1 and 2 threads
    python benchmarks/bench_train.py --algos sevpo fisor fisor_paper --threads 1
    python benchmarks/bench_train.py --algos sevpo --devices cuda      # on a GPU

Configs are composed exactly as `offline/train.py` composes them (configs/algo/<name>.yaml plus the
reach_avoid specialisation). Data: `--dataset` (default data/reach_avoid/low.h5 when it exists, else
a synthetic reach-avoid-shaped dataset). SEVPO's stage 2 gathers the rows outside the safe region
before its unsafe-region loss, so its step cost depends on the learned region: it first trains
`--stage1-steps` of stage 1 on the data and prints the safe fraction it reached. Each figure is the
best of `--repeats` timed windows after warm-up, because the machine may be shared: measure on an idle core, and
interleave before/after runs when comparing changes.

Columns: `steps/s` of the whole `update` (SEVPO: stage 2), SEVPO's stage-1 steps/s, and for the
diffusion algorithms the milliseconds of one critic update, one actor update and one reverse-process
draw of a critic batch (`sample`), each timed on its own.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import go2_sevpo  # noqa: F401  first: MKL's fast kernels on AMD need it before torch (utils/mkl_vendor.py)
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from go2_sevpo.algorithms import registry as algo_registry
from go2_sevpo.algorithms.base import PretrainContext
from go2_sevpo.config import CONFIG_DIR, register_configs, register_schema
from go2_sevpo.data.format import OfflineDataset, load_dataset
from go2_sevpo.data.sampler import DeviceSampler
from go2_sevpo.networks import adam
from go2_sevpo.training.trainer import TrainConfig, build_algorithm
from go2_sevpo.utils.mkl_vendor import kernel_status

DEFAULT_DATA = "data/reach_avoid/low.h5"
ALGOS = ["sevpo", "sevpo_paper", "fisor", "fisor_paper", "bc_all", "cpq", "coptidice", "ccac"]


def synthetic_dataset(n: int = 60_000, obs_dim: int = 8, act_dim: int = 2, seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    ends = np.zeros(n, bool)
    ends[rng.choice(n, n // 60, replace=False)] = True
    ends[-1] = True
    return OfflineDataset(
        observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        next_observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        costs=(rng.random(n) < 0.05).astype(np.float32),
        terminals=ends,
        timeouts=np.zeros(n, bool),
    )


def algo_config(name: str):
    register_schema(None, "train", TrainConfig)
    algo_registry.register_schemas()
    register_configs()
    OmegaConf.register_new_resolver("stem", lambda p: str(p), replace=True)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"algo={name}", "dataset=bench"])
    return OmegaConf.to_object(cfg.algo)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(fn, device, steps: int, repeats: int, warmup: int = 5) -> float:
    """Calls per second of fn(i), best of `repeats` windows of `steps` calls."""
    for i in range(warmup):
        fn(i)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            fn(i)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return steps / best


def bench(name: str, data: OfflineDataset, device: torch.device, steps: int, repeats: int,
          stage1_steps: int) -> dict[str, float]:
    cfg = algo_config(name)
    stage1 = hasattr(cfg, "stage1_steps")
    if stage1:
        cfg.stage1_steps = stage1_steps  # a short stage 1, so that the safe region is a realistic one
    if hasattr(cfg, "vae_warmup_steps"):  # CCAC: its warm-up defaults to the run's length (1M steps here)
        cfg.vae_warmup_steps = stage1_steps
    torch.manual_seed(0)
    sampler = DeviceSampler(data, device, seed=0)
    algo = build_algorithm(cfg, data.obs_dim, data.act_dim, 1_000_000, device, seed=0)
    algo.pretrain(PretrainContext(dataset=data, sampler=sampler, fingerprint="bench", cache_dir="",
                                  log=lambda *a: None, message=lambda *a: None, show_progress=False,
                                  cost_limit=0.0, max_episode_length=300))
    out = {"steps/s": rate(lambda i: algo.update(sampler, i), device, steps, repeats)}
    if stage1:
        out["safe frac"] = algo.safe_set(sampler.all().observations).float().mean().item()
        gen = torch.Generator(device=device).manual_seed(0)
        opts = (adam(algo.conservative_cost_critic.parameters(), lr=cfg.critic_lr),
                adam(algo.conservative_cost_value.parameters(), lr=cfg.critic_lr))
        out["stage1/s"] = rate(lambda i: algo._stage1_step(sampler.sample(cfg.critic_batch_size, gen), opts),
                               device, 4 * steps, repeats)
    if hasattr(algo, "actor_ema") and hasattr(algo.actor_ema, "sample"):  # the diffusion algorithms
        cb, ab = cfg.critic_batch_size, cfg.actor_batch_size
        if name.startswith("sevpo"):
            actor = lambda i: algo._update_actor(sampler.sample(ab), i)  # noqa: E731
        else:
            actor = lambda i: algo._update_actor(sampler.sample(ab))  # noqa: E731
        obs = sampler.sample(cb).observations
        out["critic ms"] = 1e3 / rate(lambda i: algo._update_critics(sampler.sample(cb)), device, steps, repeats)
        out["actor ms"] = 1e3 / rate(actor, device, steps, repeats)
        out["sample ms"] = 1e3 / rate(lambda i: algo.actor_ema.sample(obs, algo.generator), device, steps, repeats)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=ALGOS)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--steps", type=int, default=30, help="update steps per timed window (stage 1: 4x)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dataset", default=DEFAULT_DATA if Path(DEFAULT_DATA).exists() else "",
                   help="HDF5 dataset (reach_avoid layout); empty: synthetic")
    p.add_argument("--stage1-steps", type=int, default=2000, help="SEVPO stage-1 steps before timing stage 2")
    args = p.parse_args()
    data = load_dataset(args.dataset, 8, 2) if args.dataset else synthetic_dataset()
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"data {args.dataset or 'synthetic'} ({len(data)} rows)")
    print(kernel_status())
    cols = ["steps/s", "stage1/s", "critic ms", "actor ms", "sample ms", "safe frac"]
    print(f"{'algo':12s} {'device':6s} {'threads':>7s} " + " ".join(f"{c:>10s}" for c in cols))
    for device in devices:
        dev = torch.device(device)
        for threads in (args.threads if dev.type == "cpu" else [torch.get_num_threads()]):
            torch.set_num_threads(threads)
            for name in args.algos:
                r = bench(name, data, dev, args.steps, args.repeats, args.stage1_steps)
                cells = " ".join(f"{r[c]:10.2f}" if c in r else f"{'':>10s}" for c in cols)
                print(f"{name:12s} {device:6s} {threads:7d} {cells}", flush=True)


if __name__ == "__main__":
    main()
