"""Episode metrics shared by every algorithm and every env (spec: Metrics; DSRL normalisation).

    normalized_reward = (R - R_min) / (R_max - R_min)
    normalized_cost   = (C + eps) / (kappa + eps),  eps = 1 only when kappa = 0, else 0

with kappa the task's episode cost limit and (R_min, R_max) its reward range. Both normalisations are
affine, so normalising the mean return equals the mean of normalised returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from go2_sevpo.envs.base import TerminationReason

# Per-task reward range (R_min, R_max) for the DSRL normalised reward, used when the task's config has
# no `reward_min`/`reward_max` fields and the evaluation config sets none.
# reach_avoid: R_min = 0 (no progress); R_max = the best possible return from the papers' start:
# the straight-line distance from (-0.8, -1.5) to the goal centre (2.2, 2.2) minus the goal radius
# (4.763 - 0.3) plus the arrival bonus 100.
REWARD_RANGES: dict[str, tuple[float, float]] = {
    "reach_avoid": (0.0, 104.46),
}


@dataclass
class EpisodeRecords:
    """One entry per evaluated episode (each env's first episode only)."""

    returns: np.ndarray  # (E,) float
    costs: np.ndarray  # (E,) float, undiscounted episode cost
    lengths: np.ndarray  # (E,) int
    success: np.ndarray  # (E,) bool
    reasons: np.ndarray  # (E,) int, TerminationReason codes

    def __len__(self) -> int:
        return len(self.returns)


def normalized_reward(mean_return: float, reward_range: tuple[float, float] | None) -> float | None:
    """None when the task has no known reward range (JSON has no NaN)."""
    if reward_range is None:
        return None
    lo, hi = reward_range
    return (mean_return - lo) / (hi - lo)


def normalized_cost(mean_cost: float, cost_limit: float) -> float:
    eps = 1.0 if cost_limit == 0 else 0.0
    return (mean_cost + eps) / (cost_limit + eps)


def reward_range_for(env_name: str, env_cfg: Any = None, override: tuple[float | None, float | None] = (None, None)):
    """(R_min, R_max) from, in order: the evaluation override, the task config's fields, the table."""
    lo, hi = override
    if lo is not None and hi is not None:
        return float(lo), float(hi)
    lo, hi = getattr(env_cfg, "reward_min", None), getattr(env_cfg, "reward_max", None)
    if lo is not None and hi is not None and hi > lo:
        return float(lo), float(hi)
    return REWARD_RANGES.get(env_name)


def summarize(records: EpisodeRecords, cost_limit: float, reward_range: tuple[float, float] | None) -> dict[str, Any]:
    mean_return = float(np.mean(records.returns))
    mean_cost = float(np.mean(records.costs))
    return {
        "episodes": len(records),
        "mean_return": mean_return,
        "std_return": float(np.std(records.returns)),
        "mean_cost": mean_cost,
        "std_cost": float(np.std(records.costs)),
        "normalized_reward": normalized_reward(mean_return, reward_range),
        "normalized_cost": normalized_cost(mean_cost, cost_limit),
        "failure_rate": float(np.mean(records.costs > cost_limit)),
        "max_episode_cost": float(np.max(records.costs)),
        "success_rate": float(np.mean(records.success)),
        "fall_rate": float(np.mean(records.reasons == int(TerminationReason.FALL))),
        "mean_length": float(np.mean(records.lengths)),
        "cost_limit": float(cost_limit),
        "reward_range": list(reward_range) if reward_range is not None else None,
        "termination_reasons": {r.name.lower(): int(np.sum(records.reasons == int(r))) for r in TerminationReason},
    }
