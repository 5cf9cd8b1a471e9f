"""Safety-Gymnasium adapter throughput: env-steps/s at 1 and 8 envs (random actions, auto-resets
included) and the cost of one reset, with and without the skybox-free compile (`fast_reset`).

    python benchmarks/bench_safety_gym.py [--tasks SafetyPointGoal1-v0 SafetyCarButton1-v0] [--steps 2000]
"""

from __future__ import annotations

import argparse
import time

import go2_sevpo  # noqa: F401  first: MKL's fast kernels on AMD need it before torch (utils/mkl_vendor.py)
import torch

from go2_sevpo.envs import make_env


def reset_seconds(task: str, fast: bool, repeats: int) -> float:
    env = make_env("safety_gym", task=task, num_envs=1, seed=0, fast_reset=fast)
    ids = torch.zeros(1, dtype=torch.long)
    start = time.perf_counter()
    for _ in range(repeats):
        env.reset(ids)
    return (time.perf_counter() - start) / repeats


def steps_per_second(task: str, num_envs: int, steps: int, episode_length: int) -> float:
    """Env-steps/s over `steps` lockstep steps of `num_envs` envs; short episodes so resets count."""
    env = make_env("safety_gym", task=task, num_envs=num_envs, seed=0, max_episode_length=episode_length)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps // num_envs):
        env.step(2 * torch.rand(num_envs, env.num_actions, generator=g) - 1)
    return (steps // num_envs) * num_envs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["SafetyPointGoal1-v0", "SafetyCarButton1-v0"])
    parser.add_argument("--steps", type=int, default=2000, help="env-steps per measurement")
    parser.add_argument("--episode-length", type=int, default=1000, help="1000 = the tasks' own")
    parser.add_argument("--reset-repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for task in args.tasks:
        slow, fast = (reset_seconds(task, f, args.reset_repeats) for f in (False, True))
        print(f"{task}: reset {slow * 1000:.0f} ms with the skybox, {fast * 1000:.0f} ms without (fast_reset)")
        for n in (1, 8):
            sps = steps_per_second(task, n, args.steps, args.episode_length)
            print(f"{task}: {n} env(s): {sps:.0f} env-steps/s (episodes of {args.episode_length} steps, resets included)")


if __name__ == "__main__":
    main()
