"""The batched evaluator, the same for every algorithm and every registry env.

E episodes run in lockstep on E parallel copies of the env: each step is ONE policy call for all envs
(and, inside SEVPO, all N candidates). Envs auto-reset, so only each env's FIRST episode is counted;
an env whose first episode has ended keeps stepping (its later episodes are ignored) until every
first episode has ended, at the latest after `max_episode_length` steps.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from go2_sevpo.envs import make_env
from go2_sevpo.envs.base import TerminationReason
from go2_sevpo.evaluation.metrics import EpisodeRecords, reward_range_for, summarize
from go2_sevpo.utils.jobs import atomic_write_text

Policy = Callable[[torch.Tensor], torch.Tensor]  # raw observations (E, obs_dim) -> actions (E, act_dim)

# Optional per-task reports (extra metrics and plots): env name -> "module:function".
TASK_REPORTS = {"reach_avoid": "go2_sevpo.evaluation.reach_avoid_report:report"}


@dataclass
class EvalConfig:
    episodes: int = 100  # parallel envs = counted episodes
    start: str = ""  # start-state mode; "" = the task's eval_start (or its start if that is empty)
    seed: int = 0  # seeds the env's start states and the policy's sampling
    record_envs: int = 20  # envs whose observation trajectories are kept for plots
    reward_min: float | None = None  # override the task's reward range for normalisation
    reward_max: float | None = None
    # Render K episodes to <out_dir>/episode_<env>_<outcome>.mp4 (envs with a `record_qpos` option and a
    # MuJoCo scene, i.e. Go2); 0 = no video.
    video_episodes: int = 0
    # Which episodes: any (the first K envs) | success | fall | time_out (the first K of that outcome
    # among the first `video_pool` envs, whose states are all kept for the choice).
    video_outcome: str = "any"
    video_pool: int = 100


VIDEO_OUTCOMES = ("any", "success", "fall", "time_out")


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    records: EpisodeRecords
    trajectories: np.ndarray  # (T + 1, K, obs_dim) raw observations of the first K envs, start included
    alive: np.ndarray  # (T + 1, K) bool: the row still belongs to that env's first episode
    env_name: str
    start: str
    qpos: np.ndarray | None = None  # (T + 1, V, nq) states of the first V envs when video_episodes > 0
    qpos_alive: np.ndarray | None = None  # (T + 1, V) bool, as `alive`
    render_model: Any = None  # the env's MjModel to render qpos with
    dt: float = 0.0  # env seconds per step (video frame rate)


class LearnedPolicy:
    """Normalise raw observations, then let the algorithm act; sampling uses its own generator so an
    evaluation never disturbs the training random streams."""

    def __init__(self, algo, normalizer: torch.nn.Module, seed: int, device: torch.device):
        self.algo, self.normalizer, self.device = algo, normalizer, torch.device(device)
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(seed) + 7919)

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return self.algo.act(self.normalizer(obs), self.generator)

    @torch.no_grad()
    def safe_set(self, obs: torch.Tensor) -> torch.Tensor | None:
        """Learned safe-region membership for raw observations (any device), returned on the CPU."""
        inside = self.algo.safe_set(self.normalizer(obs.to(self.device)))
        return None if inside is None else inside.cpu()


def eval_start_mode(env_cfg: Any, cfg: EvalConfig) -> str:
    return cfg.start or getattr(env_cfg, "eval_start", "") or env_cfg.start


@torch.no_grad()
def run_episodes(policy: Policy, env_name: str, env_overrides: dict[str, Any], cfg: EvalConfig,
                 device: str | torch.device) -> EvalResult:
    if cfg.episodes < 1:
        raise ValueError(f"eval.episodes must be >= 1, got {cfg.episodes}")
    overrides = {k: v for k, v in env_overrides.items() if k not in ("num_envs", "device", "seed", "start", "name")}
    probe_cfg = make_env_config(env_name, overrides)
    start = eval_start_mode(probe_cfg, cfg)
    if cfg.video_outcome not in VIDEO_OUTCOMES:
        raise ValueError(f"video_outcome must be one of {', '.join(VIDEO_OUTCOMES)}, got {cfg.video_outcome!r}")
    if cfg.video_episodes > 0:
        if not hasattr(probe_cfg, "record_qpos"):
            raise ValueError(f"env '{env_name}' cannot record videos (it has no record_qpos option)")
        overrides["record_qpos"] = True
    env = make_env(env_name, **overrides, num_envs=cfg.episodes, device=str(device), seed=cfg.seed, start=start)
    # States are kept for the envs a video may show: the first K, or a pool to pick K of an outcome from.
    num_video = cfg.video_episodes if cfg.video_outcome == "any" else max(cfg.video_episodes, cfg.video_pool)
    num_video = min(num_video, env.num_envs) if cfg.video_episodes > 0 else 0
    if num_video:
        env.qpos_history.clear()
        qpos = [env.get_render_state()[:num_video]]
        qpos_alive = [torch.ones(num_video, dtype=torch.bool)]
    n, dev = env.num_envs, env.device
    obs = env.get_observations()["policy"]
    returns = torch.zeros(n, device=dev)
    costs = torch.zeros(n, device=dev)
    lengths = torch.zeros(n, dtype=torch.long, device=dev)
    success = torch.zeros(n, dtype=torch.bool, device=dev)
    reasons = torch.zeros(n, dtype=torch.int8, device=dev)
    finished = torch.zeros(n, dtype=torch.bool, device=dev)
    k = min(cfg.record_envs, n)
    trajectory = [obs[:k].clone()]
    alive = [torch.ones(k, dtype=torch.bool, device=dev)]
    for t in range(env.max_episode_length):
        _, reward, done, extras = env.step(policy(obs))
        active = ~finished
        returns += torch.where(active, reward, 0.0)
        costs += torch.where(active, extras["costs"], 0.0)
        lengths += active.long()
        success |= extras["success"] & active
        reasons = torch.where(done & active, extras["termination_reason"], reasons)
        trajectory.append(extras["final_observations"][:k].clone())
        if num_video:  # the state this step reached, before an auto-reset replaced it
            qpos.append(env.qpos_history.pop()[:num_video])
            qpos_alive.append(active[:num_video].cpu())
        alive.append(active[:k].clone())
        finished |= done
        obs = env.get_observations()["policy"]
        if (t + 1) % 16 == 0 and bool(finished.all()):  # one host sync every 16 steps
            break
    records = EpisodeRecords(
        returns=returns.cpu().numpy(), costs=costs.cpu().numpy(), lengths=lengths.cpu().numpy(),
        success=success.cpu().numpy(), reasons=reasons.cpu().numpy().astype(np.int64),
    )
    reward_range = reward_range_for(env_name, env.cfg, (cfg.reward_min, cfg.reward_max))
    metrics = summarize(records, env.cfg.cost_limit, reward_range)
    metrics.update({"env": env_name, "start": start, "seed": cfg.seed})
    result = EvalResult(metrics, records, torch.stack(trajectory).cpu().numpy(), torch.stack(alive).cpu().numpy(),
                        env_name, start)
    if num_video:
        result.qpos, result.qpos_alive = torch.stack(qpos).numpy(), torch.stack(qpos_alive).numpy()
        result.render_model, result.dt = env.mj_model, float(env.dt)
    return result


def make_env_config(env_name: str, overrides: dict[str, Any]):
    from go2_sevpo.envs.registry import config_from_dict

    return config_from_dict(env_name, overrides)


def evaluate(policy: LearnedPolicy, env_name: str, env_overrides: dict[str, Any], cfg: EvalConfig,
             device: str | torch.device, out_dir: str | Path | None = None, tag: str = "") -> dict[str, Any]:
    """Run the episodes, add the task's report (e.g. reach-avoid's safe-region IoU and plot), and write
    `<out_dir>/metrics.json` and plots when `out_dir` is given."""
    result = run_episodes(policy, env_name, env_overrides, cfg, device)
    metrics = dict(result.metrics)
    if env_name in TASK_REPORTS:
        module, fn = TASK_REPORTS[env_name].split(":")
        report = getattr(importlib.import_module(module), fn)
        metrics.update(report(result, policy.safe_set, Path(out_dir) / "plots" if out_dir else None, tag))
    if out_dir is not None and result.qpos is not None:
        metrics["videos"] = write_videos(result, Path(out_dir), cfg)
    if out_dir is not None:
        write_json(Path(out_dir) / "metrics.json", metrics)
    return metrics


def evaluate_run(run_dir: str | Path, cfg: EvalConfig, device: str = "cpu", reuse: bool = False) -> dict[str, Any]:
    """Evaluate a training run's last checkpoint; metrics (with the checkpoint's step) and plots go to
    <run>/eval/<start>_seed<seed>/. `reuse`: return the metrics already there when they are of the same
    checkpoint and episode count (the results table re-reads what offline/evaluate.py wrote)."""
    from go2_sevpo.envs.registry import config_from_dict
    from go2_sevpo.training.trainer import load_run

    algo, normalizer, payload = load_run(run_dir, device)
    start = eval_start_mode(config_from_dict(payload["env"], payload["env_config"]), cfg)
    out_dir = Path(run_dir) / "eval" / f"{start}_seed{cfg.seed}"
    cached = out_dir / "metrics.json"
    if reuse and cached.is_file():
        metrics = json.loads(cached.read_text())
        if metrics.get("episodes") == cfg.episodes and metrics.get("checkpoint_step") == payload["step"]:
            return metrics
    policy = LearnedPolicy(algo, normalizer, cfg.seed, algo.device)
    metrics = evaluate(policy, payload["env"], payload["env_config"], cfg, algo.device, out_dir)
    metrics["checkpoint_step"] = int(payload["step"])
    write_json(cached, metrics)
    return metrics


def episode_outcome(records: EpisodeRecords, i: int) -> str:
    """The episode's outcome as metrics' termination_reasons spells it (success, fall, time_out, ...)."""
    reason = TerminationReason(int(records.reasons[i]))
    if records.success[i]:
        return "success"
    return reason.name.lower()


def write_videos(result: EvalResult, out_dir: Path, cfg: EvalConfig) -> list[str]:
    """One mp4 per chosen env: its first episode, start state included, named by env index and outcome
    (fewer than asked, possibly none, when the pool holds fewer episodes of that outcome). (MuJoCo picks
    its GL platform when first imported: scripts import go2_sevpo.rendering.video first, which selects EGL.)"""
    from go2_sevpo.rendering.video import render_video

    outcomes = [episode_outcome(result.records, i) for i in range(result.qpos.shape[1])]
    chosen = [i for i, o in enumerate(outcomes) if cfg.video_outcome in ("any", o)][:cfg.video_episodes]
    paths = []
    for i in chosen:
        frames = result.qpos[result.qpos_alive[:, i], i]
        path = out_dir / f"episode_{i}_{outcomes[i]}.mp4"
        paths.append(str(render_video(result.render_model, frames, path, fps=1.0 / result.dt)))
    return paths


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True))
