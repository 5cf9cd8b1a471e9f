"""Typed configs of the Go2 navigation tasks. Import-light: no MuJoCo/Warp here (Hydra imports it).

go2_simple and go2_hard share every mechanic; they differ only in the terrain kind (and the episode
budget that terrain needs). Numbers come from ENVS.md's decisions (legged_gym / unitree_rl_gym /
extreme-parkour Go2 starting points); the comment beside each says why where it is not obvious.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from go2_sevpo.envs.base import EnvConfig


@dataclass
class Go2NavConfig(EnvConfig):
    name: str = "go2_simple"
    # 10 m tracks take an expert about 500 policy steps (8.5 m at ~0.9 m/s incl. jumps); 1000 steps
    # (20 s) leaves room for slower policies before the time-out (a truncation, not a terminal).
    max_episode_length: int = 1000
    # A fall is terminal, so an episode's cost is 0 or 1; limit 0 means "no fall allowed".
    cost_limit: float = 0.0
    # Start states: "track" = the start platform of the env's track (small xy/yaw noise below);
    # "random" = any platform of the track, facing the goal (diverse states for PPO).
    start: str = "track"

    # ---------------------------------------------------------------- physics
    backend: str = "mujoco"  # "mujoco" (C library, CPU threads) | "mujoco_warp" (MuJoCo-Warp)
    physics_threads: int = 0  # mujoco backend thread pool size; 0 = all CPU cores
    # torch intra-op threads when the env runs on the CPU (a process-wide setting; 0 = leave as is).
    # 1 because the MuJoCo thread pool already uses every core, and torch's spinning OpenMP threads
    # then fight it: at 256 envs on 2 cores, 2.0k env-steps/s with torch's default vs ~4k with 1.
    cpu_torch_threads: int = 1
    decimation: int = 4  # physics steps per policy step (sim dt 0.005 s in the MJCF -> 50 Hz policy)
    kp: float = 40.0  # PD stiffness (Nm/rad); stiff enough to jump (ENVS.md)
    kd: float = 1.0  # PD damping (Nm s/rad)
    action_scale: float = 0.25  # joint target = default pose + action_scale * action
    spawn_height: float = 0.42  # base height above the start surface at reset (m)
    start_xy_noise: float = 0.1  # uniform +- noise of the spawn point (m)
    start_yaw_noise: float = 0.2  # uniform +- noise of the spawn heading (rad)

    # ---------------------------------------------------------------- terrain
    terrain: str = "simple"  # "flat" | "simple" | "hard" (go2_sevpo.envs.go2.terrain.TERRAIN_KINDS)
    terrain_rows: int = 5  # difficulty levels (curriculum rows); the last row covers the full range
    terrain_cols: int = 4  # tracks per difficulty level
    terrain_level: int = -1  # -1: envs spread over all rows; k: every env on row k (evaluation)
    terrain_track_length: float = 10.0  # m, start platform to track end
    terrain_track_width: float = 1.6  # m, platform width (tracks are 2 m apart: 0.4 m side pits)
    terrain_resolution: float = 0.05  # m per height-map cell (must resolve 0.1 m gaps)
    terrain_pit_depth: float = 1.0  # m below the nominal surface
    terrain_seed: int = -1  # layout seed; -1 = the env's seed
    curriculum: bool = False  # legged_gym-style: success -> harder row, fall -> easier row

    # ---------------------------------------------------------------- task: reward and cost
    goal_radius: float = 0.5  # success when the base is this close (xy) to the destination
    arrival_bonus: float = 10.0  # task reward on success, on top of per-step progress (metres)
    fall_roll: float = 0.8  # |roll| beyond this (rad) is a fall
    fall_pitch: float = 1.0  # |pitch| beyond this (rad) is a fall
    fall_base_height: float = 0.1  # base less than this above the support surface is a fall (m)
    # "task": step reward = progress + arrival bonus (what datasets store);
    # "ppo": task reward + the dt-scaled shaping terms below (extras["task_reward"] keeps the task one).
    reward_mode: str = "task"
    target_speed: float = 1.0  # m/s, tracking_goal_vel saturates here
    # Shaping scales (legged_gym names; each term is multiplied by scale * policy dt).
    reward_scales: dict[str, float] = field(default_factory=lambda: {
        "tracking_goal_vel": 1.5,
        "lin_vel_z": -1.0,
        "ang_vel_xy": -0.05,
        "orientation": -1.0,
        "torques": -1e-5,
        "dof_acc": -2.5e-7,
        "action_rate": -0.01,
        "collision": -1.0,
        "feet_air_time": 0.5,
        "dof_pos_limits": -5.0,
        "termination": -50.0,
    })

    # ---------------------------------------------------------------- domain randomisation
    # Off by default so data collection and evaluation are reproducible from the seed alone;
    # PPO training configs switch them on.
    randomize_friction: bool = False
    friction_range: tuple[float, float] = (0.5, 1.25)  # sliding friction of every geom
    randomize_base_mass: bool = False
    added_mass_range: tuple[float, float] = (-1.0, 2.0)  # kg added to the trunk
    randomize_motor_strength: bool = False
    motor_strength_range: tuple[float, float] = (0.9, 1.1)  # multiplies the PD torque
    push_robots: bool = False
    push_interval_s: float = 8.0
    max_push_vel: float = 0.5  # m/s, added to the base xy velocity

    # ---------------------------------------------------------------- recording
    record_qpos: bool = False  # keep qpos of every env at every policy step (env.qpos_history)


@dataclass
class Go2SimpleConfig(Go2NavConfig):
    name: str = "go2_simple"
    terrain: str = "simple"


@dataclass
class Go2HardConfig(Go2NavConfig):
    name: str = "go2_hard"
    terrain: str = "hard"
