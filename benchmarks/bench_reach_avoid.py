"""reach_avoid env throughput with a random policy: env-steps/s at several batch sizes.

    python benchmarks/bench_reach_avoid.py [--device cpu] [--steps 300] [--envs 1 64 4096]
"""

import argparse
import platform
import time

import go2_sevpo  # noqa: F401  first: MKL's fast kernels on AMD need it before torch (utils/mkl_vendor.py)
import torch

from go2_sevpo.envs import make_env


def bench(num_envs: int, steps: int, device: str) -> float:
    env = make_env("reach_avoid", num_envs=num_envs, device=device, start="random", seed=0)
    gen = torch.Generator(device=env.device).manual_seed(0)
    actions = 2 * torch.rand(steps, num_envs, 2, generator=gen, device=env.device) - 1  # pre-drawn: time the env only
    for t in range(10):  # warm-up
        env.step(actions[t])
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t])
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    return num_envs * steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--envs", type=int, nargs="+", default=[1, 64, 4096])
    # Element-wise ops on a few thousand floats gain nothing from intra-op threads, and on a small
    # shared machine the thread hand-offs cost more than the work: one thread is the default.
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}")
    for n in args.envs:
        print(f"reach_avoid  num_envs={n:6d}  {bench(n, args.steps, args.device):14,.0f} env-steps/s")


if __name__ == "__main__":
    main()
