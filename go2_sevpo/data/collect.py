"""Batched collection of whole episodes straight into the dataset format.

Episodes are collected in chunks: chunk k runs `chunk_episodes` envs in lockstep and keeps each
env's FIRST episode (later auto-reset episodes are ignored), so a chunk's content depends only on
(seed, k). Chunks are written as shards (see writer.py): a killed run resumes at the first missing
chunk and the final file equals an uninterrupted run's, episode order included.
"""

from __future__ import annotations

import datetime
import math
import subprocess
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from go2_sevpo import __version__
from go2_sevpo.data.format import SOURCE_NAMES
from go2_sevpo.data.writer import ShardedDatasetWriter
from go2_sevpo.envs.base import BatchedEnv
from go2_sevpo.utils.jobs import GracefulStop, Preempted, output_lock

Policy = Callable[[torch.Tensor], torch.Tensor]

# How often (in steps) the loop asks the device whether every env has finished its episode; asking
# every step would be a host sync per step.
DONE_CHECK_EVERY = 16


@torch.no_grad()
def rollout_first_episodes(env: BatchedEnv, policy: Policy) -> dict[str, np.ndarray]:
    """Run all envs until each has finished one episode; return its transitions, env-major."""
    n, t_max = env.num_envs, env.max_episode_length
    obs = env.reset()["policy"]
    dev = env.device
    buf = {
        "observations": torch.zeros(t_max, n, env.num_obs, device=dev),
        "next_observations": torch.zeros(t_max, n, env.num_obs, device=dev),
        "actions": torch.zeros(t_max, n, env.num_actions, device=dev),
        "rewards": torch.zeros(t_max, n, device=dev),
        "costs": torch.zeros(t_max, n, device=dev),
        "terminals": torch.zeros(t_max, n, dtype=torch.bool, device=dev),
        "timeouts": torch.zeros(t_max, n, dtype=torch.bool, device=dev),
        "success": torch.zeros(t_max, n, dtype=torch.bool, device=dev),
        "termination_reason": torch.zeros(t_max, n, dtype=torch.int8, device=dev),
    }
    alive = torch.ones(n, dtype=torch.bool, device=dev)
    in_episode = torch.zeros(t_max, n, dtype=torch.bool, device=dev)
    steps = 0
    for t in range(t_max):
        action = policy(obs).clamp(-1.0, 1.0)
        next_obs, reward, done, extras = env.step(action)
        buf["observations"][t] = obs
        buf["next_observations"][t] = extras["final_observations"]
        buf["actions"][t] = action
        buf["rewards"][t] = reward
        buf["costs"][t] = extras["costs"]
        buf["terminals"][t] = extras["terminated"]
        buf["timeouts"][t] = extras["time_outs"]
        buf["success"][t] = extras["success"]
        buf["termination_reason"][t] = extras["termination_reason"]
        in_episode[t] = alive
        alive = alive & ~done
        obs = next_obs["policy"]
        steps = t + 1
        if steps % DONE_CHECK_EVERY == 0 and not bool(alive.any()):
            break
    keep = in_episode[:steps].T  # (n, steps): env-major so each trajectory is contiguous
    return {k: v[:steps].transpose(0, 1)[keep].cpu().numpy() for k, v in buf.items()}


def split_extras(batch: dict[str, np.ndarray], source: str) -> tuple[dict, dict]:
    required = {k: batch[k] for k in ("observations", "next_observations", "actions", "rewards", "costs",
                                      "terminals", "timeouts")}
    extras = {
        "source": np.full(len(batch["rewards"]), SOURCE_NAMES.index(source), dtype=np.uint8),
        "success": batch["success"].astype(np.uint8),
        "termination_reason": batch["termination_reason"].astype(np.int8),
    }
    return required, extras


def code_version() -> str:
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=5)
        return f"{__version__}+{rev.stdout.strip()}" if rev.returncode == 0 else __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


def collect(
    make_env: Callable[[int, int], BatchedEnv],
    make_policy: Callable[[BatchedEnv, int], Policy],
    episodes: int,
    chunk_episodes: int,
    seed: int,
    output: str,
    source: str,
    attrs: dict[str, Any],
) -> str:
    """Collect `episodes` episodes in chunks into `output`; resumes an interrupted run.

    make_env(num_envs, seed) and make_policy(env, seed) build a chunk's env and policy, so that a
    chunk is reproducible on its own.
    """
    for name, value in (("episodes", episodes), ("chunk_episodes", chunk_episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
    num_chunks = math.ceil(episodes / chunk_episodes)
    manifest = {"episodes": episodes, "chunk_episodes": chunk_episodes, "seed": seed, **attrs}
    # One collection per output; SIGTERM / SIGINT end it after the chunk in flight is written.
    with output_lock(f"{output}.lock", f"collection output {output}"), GracefulStop() as stop:
        writer = ShardedDatasetWriter(output, manifest)
        done_before = sum(writer.has_shard(k) for k in range(num_chunks))
        bar = tqdm(total=episodes, desc=f"collect {source}", unit="ep",
                   initial=min(episodes, done_before * chunk_episodes))
        for k in range(num_chunks):
            if writer.has_shard(k):
                continue
            n = min(chunk_episodes, episodes - k * chunk_episodes)
            chunk_seed = seed * 100_003 + k  # chunks are independent streams of one run
            env = make_env(n, chunk_seed)
            batch = rollout_first_episodes(env, make_policy(env, chunk_seed))
            required, extras = split_extras(batch, source)
            writer.write_shard(k, required, extras)
            bar.update(n)
            if stop.requested and k + 1 < num_chunks:
                bar.close()
                done = sum(writer.has_shard(i) for i in range(num_chunks))
                raise Preempted(f"{stop.signal_name}: {done} of {num_chunks} chunks of {output} written "
                                f"({writer.parts}); rerun the same command to collect the rest")
        bar.close()
        return str(writer.finalize(num_chunks, final_attributes(manifest, source)))


def final_attributes(manifest: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        **manifest,
        "source_policy": source,
        "source_names": list(SOURCE_NAMES),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
    }
