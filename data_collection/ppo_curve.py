"""A PPO run's learning curve from its TensorBoard events, as CSV (one row per iteration).

    python data_collection/ppo_curve.py runs/ppo/go2_simple/expert/seed0 > curve.csv

Columns: iteration, samples (cumulative), mean episode reward and length, mean terrain level, and the
per-env-step rates of arrivals (`success`) and falls (`fall/*` summed), which rsl-rl logs from the
env's extras["log"]; their ratio is the share of ended episodes that arrived (time-outs aside).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

TAGS = {  # CSV column -> TensorBoard tag(s) as rsl-rl 5.x writes them (summed when several)
    "mean_reward": ["Train/mean_reward"],
    "mean_episode_length": ["Train/mean_episode_length"],
    "terrain_level": ["Episode/terrain_level"],
    "success_per_step": ["Episode/success"],
    "fall_per_step": ["fall/orientation", "fall/base_height", "fall/body_contact"],
}


def read_curve(run_dir: Path, samples_per_iteration: int) -> list[dict[str, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.glob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no TensorBoard events (not a PPO run folder?)")
    rows: dict[int, dict[str, float]] = {}
    for path in files:  # one file per (re)start of the run; a resumed run continues the iteration count
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        present = set(acc.Tags()["scalars"])
        for column, tags in TAGS.items():
            for tag in (t for t in tags if t in present):
                for event in acc.Scalars(tag):
                    row = rows.setdefault(event.step, {})
                    row[column] = row.get(column, 0.0) + event.value
    return [{"iteration": it, "samples": (it + 1) * samples_per_iteration, **rows[it]} for it in sorted(rows)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    args = p.parse_args()
    from omegaconf import OmegaConf

    cfg_path = args.run_dir / "config.yaml"
    if not cfg_path.is_file():
        sys.exit(f"error: {cfg_path} does not exist (not a PPO run folder?)")
    cfg = OmegaConf.load(cfg_path)
    try:
        rows = read_curve(args.run_dir, int(cfg.num_envs) * int(cfg.num_steps_per_env))
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    writer = csv.DictWriter(sys.stdout, fieldnames=["iteration", "samples", *TAGS], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)


if __name__ == "__main__":
    main()
