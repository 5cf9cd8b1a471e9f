"""DSRL's reference constants for the Safety-Gymnasium tasks, and task-id parsing.

The numbers are DSRL's (dsrl 0.1.0, `dsrl/infos.py`): per task the max and min episode reward and
cost over its dataset and the episode length. DSRL normalises an evaluation as

    normalized_reward = (R - R_min) / (R_max - R_min)
    normalized_cost   = (C + eps) / (kappa + eps),  eps = 1 if kappa == 0 else 0

(`go2_sevpo.evaluation.metrics`), with kappa the cost limit. The SEVPO paper sets kappa = 10 for
every Safety-Gymnasium task (Sec. 5, "Evaluation Setups"), so that is the default here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The papers' episode cost limit for all Safety-Gymnasium tasks.
PAPER_COST_LIMIT = 10.0


@dataclass(frozen=True)
class DSRLTaskInfo:
    max_reward: float  # DSRL MAX_EPISODE_REWARD
    min_reward: float  # DSRL MIN_EPISODE_REWARD
    max_cost: float  # DSRL MAX_EPISODE_COST
    episode_length: int  # DSRL DEFAULT_MAX_EPISODE_STEPS
    min_cost: float = 0.0  # DSRL MIN_EPISODE_COST (0 for every Safety-Gymnasium task)


# Keyed by DSRL's short name ("CarGoal1"): see `dsrl_name`.
DSRL_TASKS: dict[str, DSRLTaskInfo] = {
    "CarButton1": DSRLTaskInfo(44.420003345738984, 0.0028926206826067613, 250.0, 1000),
    "CarButton2": DSRLTaskInfo(41.99513815522894, 0.001767391717990563, 300.0, 1000),
    "CarCircle1": DSRLTaskInfo(24.94155502319336, 8.037073135375977, 250.0, 500),
    "CarCircle2": DSRLTaskInfo(25.950098037719727, 5.113386154174805, 398.0, 500),
    "CarGoal1": DSRLTaskInfo(39.907809198384705, 0.012232819540852091, 120.0, 1000),
    "CarGoal2": DSRLTaskInfo(28.902897990056502, 0.001032874531954775, 200.0, 1000),
    "CarPush1": DSRLTaskInfo(16.304467598905237, 0.013700173533941762, 200.0, 1000),
    "CarPush2": DSRLTaskInfo(15.141648491514314, 0.00029391133526335267, 250.0, 1000),
    "PointButton1": DSRLTaskInfo(41.19301568767707, 0.008822109034937853, 200.0, 1000),
    "PointButton2": DSRLTaskInfo(42.8985953616709, 0.014114166087574098, 250.0, 1000),
    "PointCircle1": DSRLTaskInfo(61.72819519042969, 20.067626953125, 200.0, 500),
    "PointCircle2": DSRLTaskInfo(54.02184295654297, 20.478347778320312, 299.0, 500),
    "PointGoal1": DSRLTaskInfo(30.071114857340543, 0.01196012764197707, 100.0, 1000),
    "PointGoal2": DSRLTaskInfo(27.717709787852737, 0.002616959830266108, 200.0, 1000),
    "PointPush1": DSRLTaskInfo(16.518654299293367, 0.0014001545292344209, 150.0, 1000),
    "PointPush2": DSRLTaskInfo(14.691039145644403, 0.0012438183001730607, 200.0, 1000),
    "AntVelocity": DSRLTaskInfo(2976.276611328125, 6.1519012451171875, 250.0, 1000),
    "HalfCheetahVelocity": DSRLTaskInfo(2806.93310546875, 5.7509765625, 250.0, 1000),
    "HopperVelocity": DSRLTaskInfo(1911.396728515625, 37.05154800415039, 250.0, 1000),
    "SwimmerVelocity": DSRLTaskInfo(238.95831298828125, 0.07114458084106445, 200.0, 1000),
    "Walker2dVelocity": DSRLTaskInfo(3418.223876953125, 18.668498992919922, 300.0, 1000),
}

# "SafetyCarGoal1-v0", "SafetyCarGoal1Gymnasium-v0" (the id DSRL's files are named after) and
# "OfflineCarGoal1Gymnasium-v0" (DSRL's env id) all name the task "CarGoal1".
_TASK_ID = re.compile(r"^(?:Safety|Offline)(?P<name>[A-Za-z0-9]+?)(?:Gymnasium)?-v(?P<version>\d+)$")
# DSRL's file names: "<Safety task id with Gymnasium>-<max cost>-<trajectories>.hdf5".
_DSRL_FILE = re.compile(r"^Safety(?P<name>[A-Za-z0-9]+?)Gymnasium-v\d+-\d+-\d+$")


def dsrl_name(task_id: str) -> str | None:
    """DSRL's short task name of a Safety-Gymnasium id ("SafetyCarGoal1-v0" -> "CarGoal1"), or None."""
    m = _TASK_ID.match(task_id)
    return m.group("name") if m else None


def task_from_dsrl_filename(stem: str) -> str | None:
    """The short task name a DSRL file's name carries ("SafetyCarGoal1Gymnasium-v0-120-1671")."""
    m = _DSRL_FILE.match(stem)
    return m.group("name") if m else None


def dsrl_info(task_id: str) -> DSRLTaskInfo | None:
    name = dsrl_name(task_id)
    return DSRL_TASKS.get(name) if name else None
