"""Typed config of the Safety-Gymnasium adapter. Import-light (Hydra imports it): no safety_gymnasium here.

`env=safety_gym env.task=SafetyCarGoal1-v0`; fields left at their defaults are filled from DSRL's
constants for that task (dsrl.py): the episode length and the reward range of the normalised
reward. The cost limit defaults to the papers' 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from go2_sevpo.envs.base import EnvConfig
from go2_sevpo.envs.safety_gym.dsrl import PAPER_COST_LIMIT, dsrl_info, dsrl_name, task_from_dsrl_filename


@dataclass
class SafetyGymConfig(EnvConfig):
    name: str = "safety_gym"
    # Any Safety-Gymnasium id: Safety{Point,Car}{Goal,Button,Push}{1,2}-v0, Safety{Point,Car}Circle{1,2}-v0,
    # Safety{HalfCheetah,Ant,Hopper,Walker2d,Humanoid}Velocity-v1 (docs/SAFETY_GYM.md lists what runs).
    task: str = "SafetyPointGoal1-v0"
    # 0 = the task's own length (DSRL's: 1000, Circle tasks 500). Longer than the task's is refused:
    # safety_gymnasium ends its episodes there itself.
    max_episode_length: int = 0
    cost_limit: float = PAPER_COST_LIMIT  # papers: 10 on every Safety-Gymnasium task
    # DSRL-normalised reward range; None = DSRL's constants for the task (none for tasks DSRL lacks).
    reward_min: float | None = None
    reward_max: float | None = None
    # Drop the skybox texture from the scene before MuJoCo compiles it: a reset rebuilds the model
    # from XML, and decoding the skybox's six images is ~90% of that (docs/SAFETY_GYM.md). Nothing
    # but rendering reads it; the adapter does not render.
    fast_reset: bool = True
    # Safety-Gymnasium samples a fresh layout per episode from the reset seed; one start mode.
    start: str = "default"
    eval_start: str = ""

    def __post_init__(self) -> None:
        info = dsrl_info(self.task)
        if info is not None:
            if self.max_episode_length == 0:
                self.max_episode_length = info.episode_length
            if self.reward_min is None and self.reward_max is None:
                self.reward_min, self.reward_max = info.min_reward, info.max_reward

    def check_dataset(self, path: str | Path, attrs: dict[str, Any]) -> None:
        """A dataset of another task is refused in one line: ours carry the task in their attributes,
        DSRL's in their file name."""
        made_on = (attrs.get("env_config") or {}).get("task") if isinstance(attrs.get("env_config"), dict) else None
        if made_on and made_on != self.task:
            raise ValueError(f"{path}: collected on task {made_on}, not {self.task}; give env.task={made_on}")
        from_name = task_from_dsrl_filename(Path(path).stem)
        if from_name and from_name != dsrl_name(self.task):
            raise ValueError(f"{path}: a DSRL file of {from_name}, not {dsrl_name(self.task) or self.task}; "
                             f"give env.task=Safety{from_name}-v{self._version_of(from_name)}")

    @staticmethod
    def _version_of(short_name: str) -> int:
        return 1 if short_name.endswith("Velocity") else 0
