"""Test helpers for the offline trainer: small reach-avoid datasets made on the fly (tests never read
data/, which is git-ignored) and a tiny SEVPO config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from go2_sevpo.data.format import write_dataset
from go2_sevpo.envs import make_env
from go2_sevpo.envs.reach_avoid import GOAL_CENTER

# Network and run sizes small enough for a few seconds of CPU.
TINY_ALGO = {
    "actor_batch_size": 64, "critic_batch_size": 64, "stage1_steps": 60,
    "cost_critic_hidden": [32, 32], "critic_hidden": [32, 32],
    "actor": {"hidden_dim": 16, "num_blocks": 1, "time_dim": 8, "time_hidden": [16, 16]},
    "num_candidates": 4,
}
TINY_OVERRIDES = [
    "algo.actor_batch_size=64", "algo.critic_batch_size=64", "algo.stage1_steps=60",
    "algo.cost_critic_hidden=[32,32]", "algo.critic_hidden=[32,32]", "algo.actor.hidden_dim=16",
    "algo.actor.num_blocks=1", "algo.actor.time_dim=8", "algo.actor.time_hidden=[16,16]", "algo.num_candidates=4",
    "eval.episodes=8", "log_interval=20", "progress=false", "threads=1",
]


def rollout_arrays(num_envs: int = 48, steps: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Noisy goal-seeking rollouts from random starts (so some reach the goal, some cross the hazard).
    Rows are env-major so every trajectory is contiguous; each env's last row is a time-out."""
    env = make_env("reach_avoid", num_envs=num_envs, seed=seed, start="random", max_episode_length=steps)
    g = torch.Generator().manual_seed(seed)
    obs = env.get_observations()["policy"]
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in
                                           ("observations", "actions", "rewards", "costs", "next_observations",
                                            "terminals", "timeouts")}
    for t in range(steps):
        bearing = torch.atan2(GOAL_CENTER[1] - obs[:, 1], GOAL_CENTER[0] - obs[:, 0]) - torch.atan2(obs[:, 4], obs[:, 3])
        turn = torch.atan2(torch.sin(bearing), torch.cos(bearing)).clamp(-1, 1)
        action = torch.stack([torch.full_like(turn, 0.3), turn], -1) + 0.6 * torch.randn(num_envs, 2, generator=g)
        action = action.clamp(-1, 1)
        next_td, reward, done, extras = env.step(action)
        cols["observations"].append(obs)
        cols["actions"].append(action)
        cols["rewards"].append(reward)
        cols["costs"].append(extras["costs"])
        cols["next_observations"].append(extras["final_observations"])
        cols["terminals"].append(extras["terminated"])
        cols["timeouts"].append(extras["time_outs"] | (torch.full_like(done, t == steps - 1) & ~extras["terminated"]))
        obs = next_td["policy"]
    out = {}
    for k, v in cols.items():
        a = torch.stack(v, 1)  # (E, T, ...)
        out[k] = a.reshape(num_envs * steps, *a.shape[2:]).numpy()
    return out


def write_reach_avoid_file(path: Path, num_envs: int = 48, steps: int = 40, seed: int = 0) -> Path:
    write_dataset(path, rollout_arrays(num_envs, steps, seed))
    return path


def tiny_train_args(data: Path, run_dir: Path, cache: Path, *extra: str) -> list[str]:
    """offline/train.py's arguments for a tiny SEVPO run on `data` (a later override of a key wins)."""
    return ["offline/train.py", f"dataset={data}", f"hydra.run.dir={run_dir}", f"cache_dir={cache}",
            *TINY_OVERRIDES, *extra]


def run_repo_script(*args: str, timeout: float = 300) -> "subprocess.CompletedProcess":
    """Run a repo script as a user would, single-threaded (the CI machine has 2 cores)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line_error(r: "subprocess.CompletedProcess", fragment: str) -> None:
    """A script's bad-input contract: exit status 2 and exactly one stderr line, `error: ...` naming `fragment`."""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr[-2000:]
    assert fragment in lines[0], lines[0]
