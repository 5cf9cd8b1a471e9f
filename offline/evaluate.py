"""Evaluate the last checkpoint of a training run with the batched evaluator.

    python offline/evaluate.py run=runs/reach_avoid/sevpo/high/seed0 episodes=100 start=hazard seed=0
    python offline/evaluate.py run=runs/go2_hard/sevpo/mixed/seed0 episodes=1000 video=true   # + episode_0_<outcome>.mp4
    python offline/evaluate.py run=... video=true video_outcome=fall   # the first fall among the first 100 envs

Writes <run>/eval/<start>_seed<seed>/metrics.json (+ plots for tasks that have them) and prints a
summary. Bad input (no run, a missing or corrupt checkpoint) is one line with exit status 2.
"""

import go2_sevpo.rendering.video  # noqa: F401  first: picks the headless GL platform before mujoco loads

from pathlib import Path

import torch
from omegaconf import DictConfig

from go2_sevpo.cli import hydra_entry
from go2_sevpo.evaluation.evaluator import EvalConfig, evaluate_run

KEYS = ("episodes", "success_rate", "mean_return", "mean_cost", "failure_rate", "max_episode_cost",
        "normalized_reward", "normalized_cost", "fall_rate", "region_iou")


@hydra_entry("evaluate")
def main(cfg: DictConfig) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    eval_cfg = EvalConfig(episodes=cfg.episodes, start=cfg.start, seed=cfg.seed, record_envs=cfg.record_envs,
                          video_episodes=cfg.video_episodes if cfg.video else 0,
                          video_outcome=cfg.video_outcome)
    metrics = evaluate_run(cfg.run, eval_cfg, cfg.device)
    out_dir = Path(cfg.run) / "eval" / f"{metrics['start']}_seed{cfg.seed}"
    print(f"{cfg.run} (step {metrics['checkpoint_step']}, start={metrics['start']}):")
    for k in KEYS:
        if metrics.get(k) is not None:
            print(f"  {k:18s} {metrics[k]:.4g}")
    for path in metrics.get("videos", []):
        print(f"  video {path}")
    print(f"  -> {out_dir / 'metrics.json'}")


if __name__ == "__main__":
    main()
