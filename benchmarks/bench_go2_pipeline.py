"""Throughput of the Go2 pipeline's two env-heavy stages: PPO iterations (rsl-rl-lib) and collection.

    python benchmarks/bench_go2_pipeline.py                         # CPU: 64 envs, mujoco backend
    python benchmarks/bench_go2_pipeline.py --device cuda --backend mujoco_warp --envs 8192

PPO: `--iterations` iterations of `--steps` env steps per env with the default networks (first one
dropped: warm-up); prints s/iteration and samples/s. Collection: `rollout_first_episodes` (what
data_collection/collect.py runs per chunk) with a PPO-initialised actor of the default size, envs in
lockstep until each has finished one episode (capped at `--episode-steps`); prints env-steps/s and
kept transitions/s.
"""

from __future__ import annotations

import argparse
import time

import go2_sevpo  # noqa: F401  first: MKL's fast kernels on AMD need it before torch (utils/mkl_vendor.py)
import torch


def bench_ppo(args) -> None:
    from rsl_rl.runners import OnPolicyRunner

    from go2_sevpo.envs import make_env
    from go2_sevpo.training.ppo import PPOAlgorithmConfig, PPOTrainConfig, rsl_rl_config, update_on_threads

    cfg = PPOTrainConfig(num_steps_per_env=args.steps,
                         algorithm=PPOAlgorithmConfig(use_mixed_precision=args.mixed_precision))
    env = make_env(args.env, num_envs=args.envs, device=args.device, backend=args.backend, reward_mode="ppo",
                   curriculum=True, randomize_friction=True, randomize_base_mass=True,
                   randomize_motor_strength=True, push_robots=True, cpu_torch_threads=args.collect_threads)
    runner = OnPolicyRunner(env, rsl_rl_config(cfg), log_dir=None, device=str(env.device))  # no logging
    if env.device.type == "cpu" and args.update_threads >= 0:  # as train_expert.py does (update_threads=0: all)
        update_on_threads(runner, args.update_threads)
    update, update_times = runner.alg.update, []

    def timed_update():
        t0 = time.perf_counter()
        out = update()
        update_times.append(time.perf_counter() - t0)
        return out

    runner.alg.update = timed_update
    times = []
    for _ in range(args.iterations):
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        runner.learn(1)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_it = sum(times[1:]) / max(1, len(times) - 1)
    per_update = sum(update_times[1:]) / max(1, len(update_times) - 1)
    print(f"PPO {args.env} {args.backend} {env.device} {args.envs} envs x {args.steps} steps "
          f"(update threads {args.update_threads if args.update_threads >= 0 else 'as collection'}, "
          f"mixed precision {args.mixed_precision}): {per_it:.2f} s/iteration "
          f"({per_it - per_update:.2f} collecting + {per_update:.2f} update), "
          f"{args.envs * args.steps / per_it:,.0f} samples/s (mean of iterations 2..{args.iterations})")


def bench_collect(args) -> None:
    from rsl_rl.models import MLPModel

    from go2_sevpo.data.collect import rollout_first_episodes
    from go2_sevpo.envs import make_env
    from go2_sevpo.training.ppo import PPOModelConfig

    env = make_env(args.env, num_envs=args.envs, device=args.device, backend=args.backend,
                   max_episode_length=args.episode_steps)
    m = PPOModelConfig()
    actor = MLPModel(env.get_observations(), {"actor": ["policy"]}, "actor", env.num_actions,
                     hidden_dims=m.actor_hidden_dims, obs_normalization=True,
                     distribution_cfg={"class_name": "rsl_rl.modules.distribution:GaussianDistribution"})
    module = torch.jit.script(actor.as_jit()).to(env.device).eval()
    policy = lambda obs: module(obs).clamp(-1, 1)  # noqa: E731
    steps = {"n": 0}
    step = env.step

    def counting_step(actions):
        steps["n"] += 1
        return step(actions)

    env.step = counting_step
    t0 = time.perf_counter()
    batch = rollout_first_episodes(env, policy)
    seconds = time.perf_counter() - t0
    kept = len(batch["rewards"])
    print(f"collect {args.env} {args.backend} {env.device} {args.envs} envs: {steps['n']} lockstep steps in "
          f"{seconds:.1f} s = {steps['n'] * args.envs / seconds:,.0f} env-steps/s; {kept} transitions kept "
          f"({kept / seconds:,.0f}/s; episodes end at the first fall or after {args.episode_steps} steps)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="go2_hard")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="mujoco")
    p.add_argument("--envs", type=int, default=64)
    p.add_argument("--steps", type=int, default=24, help="PPO steps per env per iteration")
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--episode-steps", type=int, default=200)
    p.add_argument("--only", choices=("ppo", "collect"), default=None)
    p.add_argument("--update-threads", type=int, default=0,
                   help="torch threads in PPO's update (0: every core, as train_expert.py; -1: collection's)")
    p.add_argument("--mixed-precision", action="store_true", help="bfloat16 autocast in the update")
    p.add_argument("--collect-threads", type=int, default=1, help="torch threads while collecting (env option "
                   "cpu_torch_threads; MuJoCo's pool runs beside them)")
    args = p.parse_args()
    if args.only in (None, "ppo"):
        bench_ppo(args)
    if args.only in (None, "collect"):
        bench_collect(args)


if __name__ == "__main__":
    main()
