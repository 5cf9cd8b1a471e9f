"""Training throughput of SEVPO: stage-1 and stage-2 gradient steps per second.

    python benchmarks/bench_train.py                       # CPU and paper configs on CPU (+ GPU if present)
    python benchmarks/bench_train.py --configs sevpo --threads 1 2 --compile

Configs are composed exactly as `offline/train.py` composes them (configs/algo/<name>.yaml plus the
reach_avoid specialisation). Data: a synthetic reach-avoid-shaped dataset held on the device (the
step cost does not depend on the data's content). Each figure is the best of `--repeats` timed
windows after warm-up, because the machine may be shared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from go2_sevpo.algorithms import registry as algo_registry
from go2_sevpo.config import CONFIG_DIR, register_configs, register_schema
from go2_sevpo.data.format import OfflineDataset
from go2_sevpo.data.sampler import DeviceSampler
from go2_sevpo.training.trainer import TrainConfig, build_algorithm


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


def time_steps(fn, device, steps: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for i in range(steps):
            fn(i)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return steps / best


def bench(name: str, device: torch.device, compile_nets: bool, steps: int, repeats: int) -> tuple[float, float]:
    cfg = algo_config(name)
    torch.manual_seed(0)
    sampler = DeviceSampler(synthetic_dataset(), device, seed=0)
    algo = build_algorithm(cfg, 8, 2, 1_000_000, device, seed=0)
    if compile_nets:
        for module in (algo.actor, algo.actor_ema, algo.actor_lag):
            module.noise_net = torch.compile(module.noise_net)
        algo.policy_critics = torch.compile(algo.policy_critics)
        algo.conservative_cost_critic = torch.compile(algo.conservative_cost_critic)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    opts = (torch.optim.Adam(algo.conservative_cost_critic.parameters(), lr=3e-4),
            torch.optim.Adam(algo.conservative_cost_value.parameters(), lr=3e-4))
    stage1 = lambda i: algo._stage1_step(sampler.sample(cfg.critic_batch_size, gen), opts)  # noqa: E731
    algo.stage1_done = True
    stage2 = lambda i: algo.update(sampler, i)  # noqa: E731
    for i in range(10):  # warm-up (and compilation)
        stage1(i)
        stage2(i)
    return time_steps(stage1, device, steps * 4, repeats), time_steps(stage2, device, steps, repeats)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["sevpo", "sevpo_paper"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    p.add_argument("--steps", type=int, default=30, help="stage-2 steps per timed window (stage 1: 4x)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{'config':12s} {'device':6s} {'threads':>7s} {'compile':>7s} {'stage1 steps/s':>15s} {'stage2 steps/s':>15s}")
    for device in devices:
        dev = torch.device(device)
        for threads in (args.threads if dev.type == "cpu" else [torch.get_num_threads()]):
            torch.set_num_threads(threads)
            for name in args.configs:
                for compiled in ([False, True] if args.compile else [False]):
                    s1, s2 = bench(name, dev, compiled, args.steps, args.repeats)
                    print(f"{name:12s} {device:6s} {threads:7d} {str(compiled):>7s} {s1:15.1f} {s2:15.2f}", flush=True)


if __name__ == "__main__":
    main()
