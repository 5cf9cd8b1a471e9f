"""Policy-step throughput of go2_simple (one policy step = 4 physics steps of 5 ms).

    python benchmarks/bench_go2.py                      # mujoco at 1, 64, 256 envs; warp if CUDA
    python benchmarks/bench_go2.py --backend mujoco --num-envs 64 --steps 100

Prints env-steps/s = num_envs * policy steps / wall time, after a warm-up (which for mujoco_warp
includes kernel compilation and CUDA graph capture). Zero actions: the robots stand, so the contact
load is the steady 4 foot contacts per world. mujoco_warp is measured only when CUDA is available.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import go2_sevpo  # noqa: F401  first: MKL's fast kernels on AMD need it before torch (utils/mkl_vendor.py)
import torch

from go2_sevpo.envs.registry import make_env

DEFAULTS = {"mujoco": (1, 64, 256), "mujoco_warp": (1024, 4096, 8192)}


def measure(backend: str, num_envs: int, steps: int, device: str, env_name: str) -> float:
    env = make_env(env_name, num_envs=num_envs, device=device, backend=backend, seed=0)
    action = torch.zeros(num_envs, env.num_actions, device=env.device)
    for _ in range(5):  # warm-up: compilation, graph capture, allocator
        env.step(action)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        env.step(action)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    close = getattr(env, "close", None)
    if close:
        close()
    return num_envs * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=sorted(DEFAULTS), action="append")
    parser.add_argument("--num-envs", type=int, action="append")
    parser.add_argument("--steps", type=int, default=0, help="policy steps to time (default: by scale)")
    parser.add_argument("--env", default="go2_simple")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the best is printed "
                        "(other processes on a shared machine only ever slow a run down)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    for backend in args.backend or sorted(DEFAULTS):
        if backend == "mujoco_warp" and not torch.cuda.is_available():
            print("mujoco_warp: skipped (no CUDA GPU; its CPU mode is for correctness tests only)")
            continue
        device = "cuda" if backend == "mujoco_warp" else "cpu"
        for n in args.num_envs or DEFAULTS[backend]:
            steps = args.steps or max(20, min(500, 20000 // n))
            rate = max(measure(backend, n, steps, device, args.env) for _ in range(args.repeats))
            print(f"{args.env} {backend:12s} device={device:4s} num_envs={n:5d} steps={steps:4d}  "
                  f"{rate:10.0f} env-steps/s")


if __name__ == "__main__":
    main()
