"""Go2 navigation env (go2_simple / go2_hard): start platform -> destination across box terrain.

Mechanics (this class): physics backend, PD control at the physics rate, resets, domain
randomisation, curriculum. Task definition (config + small modules): terrain (terrain.py),
observation (`_observe`), task reward / cost / termination (`_physics_step`), PPO shaping
(rewards.py). One policy step = `decimation` physics steps with torques
tau = clip(motor_strength * (kp * (q_default + action_scale * a - q) - kd * qd), +-motor limit).
"""

from __future__ import annotations

import mujoco
import torch

from go2_sevpo.envs.base import BatchedEnv, TerminationReason
from go2_sevpo.envs.go2 import quat as Q
from go2_sevpo.envs.go2.config import Go2NavConfig
from go2_sevpo.envs.go2.rewards import StepState, shaping
from go2_sevpo.envs.go2.scene import NON_FOOT_BODIES, build_model, sensor_slices
from go2_sevpo.envs.go2.terrain import generate_terrain
from go2_sevpo.physics import make_backend

NUM_JOINTS = 12
# Height scan: 16 x 7 = 112 points on a grid in the base's yaw frame, 0.3 m behind to 1.2 m ahead
# (enough to see a 0.6 m gap and the platform after it) and 0.3 m to each side.
SCAN_X = torch.linspace(-0.3, 1.2, 16)
SCAN_Y = torch.linspace(-0.3, 0.3, 7)
NUM_SCAN = SCAN_X.numel() * SCAN_Y.numel()
# Observation scales (legged_gym): keep every entry roughly in [-1, 1] .. [-5, 5].
ANG_VEL_SCALE, DOF_VEL_SCALE, SCAN_SCALE, LIN_VEL_SCALE = 0.25, 0.05, 5.0, 2.0
SCAN_OFFSET = 0.3  # nominal standing base height: a flat scan reads ~0
GOAL_DIST_CLIP = 10.0
NUM_OBS = 3 + 3 + 3 + NUM_JOINTS * 3 + 4 + NUM_SCAN  # = 161
NUM_PRIVILEGED_EXTRA = 3 + 1 + 3  # base lin vel, base height over terrain, friction / mass / strength

_REWARD_MODES = ("task", "ppo")
_STARTS = ("track", "random")


class Go2NavEnv(BatchedEnv):
    def __init__(self, cfg: Go2NavConfig):
        if cfg.reward_mode not in _REWARD_MODES:
            raise ValueError(f"unknown reward_mode '{cfg.reward_mode}'; known: {', '.join(_REWARD_MODES)}")
        if cfg.start not in _STARTS:
            raise ValueError(f"unknown start '{cfg.start}' for {cfg.name}; known: {', '.join(_STARTS)}")
        super().__init__(cfg, NUM_OBS, NUM_JOINTS, NUM_OBS + NUM_PRIVILEGED_EXTRA)
        self.cfg: Go2NavConfig = cfg
        if self.device.type == "cpu" and cfg.cpu_torch_threads > 0:
            torch.set_num_threads(cfg.cpu_torch_threads)
        if not -1 <= cfg.terrain_level < cfg.terrain_rows:
            raise ValueError(f"terrain_level must be -1 or in [0, {cfg.terrain_rows - 1}], got {cfg.terrain_level}")
        self.terrain = generate_terrain(
            cfg.terrain, rows=cfg.terrain_rows, cols=cfg.terrain_cols, track_length=cfg.terrain_track_length,
            track_width=cfg.terrain_track_width, resolution=cfg.terrain_resolution, pit_depth=cfg.terrain_pit_depth,
            seed=cfg.terrain_seed if cfg.terrain_seed >= 0 else cfg.seed, device=self.device,
        )
        self.mj_model = build_model(self.terrain)
        self.physics = make_backend(
            cfg.backend, self.mj_model, self.num_envs, self.device, num_threads=cfg.physics_threads,
            randomize_dynamics=cfg.randomize_friction or cfg.randomize_base_mass,
        )
        self.sim_dt = float(self.mj_model.opt.timestep)
        self.dt = self.sim_dt * cfg.decimation  # policy dt (0.02 s)
        self._init_robot_constants()
        self._init_buffers()
        self.reset()

    # ----------------------------------------------------------------- construction
    def _init_robot_constants(self) -> None:
        m, dev = self.mj_model, self.device
        key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, "home")
        self.default_dof_pos = torch.tensor(m.key_qpos[key, 7:], dtype=torch.float32, device=dev)
        self.torque_limits = torch.tensor(m.actuator_ctrlrange[:, 1], dtype=torch.float32, device=dev)
        limits = torch.tensor(m.jnt_range[1:], dtype=torch.float32, device=dev)  # joint 0 is the free joint
        mid, half = limits.mean(-1), (limits[:, 1] - limits[:, 0]) / 2
        self.dof_soft_limits = torch.stack([mid - 0.9 * half, mid + 0.9 * half], -1)
        self.foot_sensors, self.body_sensors = (torch.tensor(i, device=dev) for i in sensor_slices(m))
        gx, gy = torch.meshgrid(SCAN_X, SCAN_Y, indexing="ij")
        self.scan_points = torch.stack([gx.flatten(), gy.flatten()], -1).to(dev)  # (P, 2) yaw frame
        self.base_geom_friction = torch.tensor(m.geom_friction[:, 0], dtype=torch.float32, device=dev)
        self.base_body_mass = torch.tensor(m.body_mass, dtype=torch.float32, device=dev)
        self.base_body_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "base")
        # Per track: platform spans (u0, u1, height) for "random" starts, padded to a tensor.
        # (A flat track is one platform that is also the goal platform: it is its own start span.)
        spans = [[(s.u0, s.u1, s.h0) for s in (segs[:-1] or segs) if s.kind == "platform"]
                 for segs in self.terrain.tracks]
        width = max(len(s) for s in spans)
        padded = [s + [s[0]] * (width - len(s)) for s in spans]
        self.track_platforms = torch.tensor(padded, dtype=torch.float32, device=dev)  # (T, K, 3)
        self.track_num_platforms = torch.tensor([len(s) for s in spans], device=dev)

    def _init_buffers(self) -> None:
        n, dev = self.num_envs, self.device
        f32 = dict(dtype=torch.float32, device=dev)
        self.actions = torch.zeros(n, NUM_JOINTS, **f32)
        self.last_actions = torch.zeros(n, NUM_JOINTS, **f32)
        self.last_dof_vel = torch.zeros(n, NUM_JOINTS, **f32)
        self.torques = torch.zeros(n, NUM_JOINTS, **f32)
        self.feet_air_time = torch.zeros(n, 4, **f32)
        self.goal = torch.zeros(n, 3, **f32)
        self.prev_goal_dist = torch.zeros(n, **f32)
        self.track_id = torch.zeros(n, dtype=torch.long, device=dev)
        cfg = self.cfg
        # Curriculum starts everyone on the first row; otherwise rows are drawn at each reset.
        self.terrain_levels = torch.zeros(n, dtype=torch.long, device=dev)
        self._last_outcome = torch.zeros(n, dtype=torch.long, device=dev)  # +1 success, -1 fall
        self.motor_strength = torch.ones(n, 1, **f32)
        self.friction = torch.ones(n, **f32)
        self.added_mass = torch.zeros(n, **f32)
        self.push_interval = max(1, int(round(cfg.push_interval_s / self.dt)))
        self.common_step_counter = 0
        self.task_reward = torch.zeros(n, **f32)
        self.reward_terms: dict[str, torch.Tensor] = {}
        self.qpos_history: list[torch.Tensor] = []

    # ----------------------------------------------------------------- helpers
    def _uniform(self, shape, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.generator, device=self.device)

    def _randint(self, high: int, shape) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.generator, device=self.device)

    def _pick_tracks(self, env_ids: torch.Tensor) -> torch.Tensor:
        cfg, n = self.cfg, len(env_ids)
        if cfg.curriculum:
            levels = self.terrain_levels[env_ids] + self._last_outcome[env_ids]
            self.terrain_levels[env_ids] = levels.clamp(0, cfg.terrain_rows - 1)
            self._last_outcome[env_ids] = 0
            rows = self.terrain_levels[env_ids]
        elif cfg.terrain_level >= 0:
            rows = torch.full((n,), cfg.terrain_level, dtype=torch.long, device=self.device)
        else:
            rows = self._randint(cfg.terrain_rows, (n,))
        self.terrain_levels[env_ids] = rows
        return rows * cfg.terrain_cols + self._randint(cfg.terrain_cols, (n,))

    def _randomize_dynamics(self, env_ids: torch.Tensor) -> None:
        cfg, n = self.cfg, len(env_ids)
        if cfg.randomize_motor_strength:
            self.motor_strength[env_ids, 0] = self._uniform((n,), *cfg.motor_strength_range)
        if not (cfg.randomize_friction or cfg.randomize_base_mass):
            return
        if cfg.randomize_friction:
            self.friction[env_ids] = self._uniform((n,), *cfg.friction_range)
        if cfg.randomize_base_mass:
            self.added_mass[env_ids] = self._uniform((n,), *cfg.added_mass_range)
        friction = self.base_geom_friction[None, :] * self.friction[env_ids, None]
        mass = self.base_body_mass[None, :].repeat(n, 1)
        mass[:, self.base_body_id] += self.added_mass[env_ids]
        self.physics.set_dynamics(env_ids, friction, mass)

    # ----------------------------------------------------------------- curriculum state (PPO resume)
    def curriculum_state(self) -> dict[str, torch.Tensor]:
        """What a resumed PPO run needs to continue the curriculum where it stopped: every env's row."""
        return {"terrain_levels": self.terrain_levels.cpu().clone()}

    def load_curriculum_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put the envs back on the saved rows and reset them there. With another number of envs, the
        rows are drawn from the saved ones (the curriculum's distribution over rows carries over)."""
        if not self.cfg.curriculum:
            return
        saved = torch.as_tensor(state["terrain_levels"], dtype=torch.long).to(self.device)
        if saved.numel() == 0 or int(saved.min()) < 0 or int(saved.max()) >= self.cfg.terrain_rows:
            raise ValueError(f"curriculum state: rows must lie in [0, {self.cfg.terrain_rows - 1}]")
        if saved.numel() != self.num_envs:
            saved = saved[self._randint(saved.numel(), (self.num_envs,))]
        self.terrain_levels.copy_(saved)
        self._last_outcome.zero_()
        self.reset()

    # ----------------------------------------------------------------- BatchedEnv hooks
    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        cfg, n = self.cfg, len(env_ids)
        tracks = self._pick_tracks(env_ids)
        self.track_id[env_ids] = tracks
        start = self.terrain.start_pos[tracks].clone()
        if cfg.start == "random":
            k = (torch.rand(n, generator=self.generator, device=self.device) * self.track_num_platforms[tracks]).long()
            span = self.track_platforms[tracks, k]  # (n, 3): u0, u1, height
            start[:, 0] = (span[:, 0] + span[:, 1]) / 2
        start[:, :2] += self._uniform((n, 2), -cfg.start_xy_noise, cfg.start_xy_noise)
        yaw = self._uniform((n,), -cfg.start_yaw_noise, cfg.start_yaw_noise)
        qpos = torch.zeros(n, self.physics.nq, device=self.device)
        qpos[:, :2] = start[:, :2]
        qpos[:, 2] = self.terrain.heights(start[:, :2]) + cfg.spawn_height
        qpos[:, 3:7] = Q.from_yaw(yaw)
        qpos[:, 7:] = self.default_dof_pos
        qvel = torch.zeros(n, self.physics.nv, device=self.device)
        self._randomize_dynamics(env_ids)
        self.physics.set_state(env_ids, qpos, qvel)
        self.goal[env_ids] = self.terrain.goal_pos[tracks]
        self.prev_goal_dist[env_ids] = torch.linalg.norm(self.goal[env_ids, :2] - start[:, :2], dim=-1)
        for buf in (self.actions, self.last_actions, self.last_dof_vel, self.feet_air_time):
            buf[env_ids] = 0.0

    def _physics_step(self, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.last_actions = self.actions
        self.actions = actions
        targets = self.default_dof_pos + cfg.action_scale * actions
        for _ in range(cfg.decimation):
            dof_pos, dof_vel = self.physics.qpos[:, 7:], self.physics.qvel[:, 6:]
            pd = cfg.kp * (targets - dof_pos) - cfg.kd * dof_vel
            self.torques = torch.clamp(pd * self.motor_strength, -self.torque_limits, self.torque_limits)
            self.physics.step(self.torques)
        self.common_step_counter += 1
        if cfg.push_robots and self.common_step_counter % self.push_interval == 0:
            self._push()

        qpos, qvel, sensors = self.physics.qpos, self.physics.qvel, self.physics.sensordata
        base_pos, base_quat = qpos[:, :3], qpos[:, 3:7]
        roll, pitch, _ = Q.roll_pitch_yaw(base_quat)
        body_contacts = sensors[:, self.body_sensors] > 0
        height_over_support = base_pos[:, 2] - self.terrain.support(base_pos[:, :2])
        fell_orientation = (roll.abs() > cfg.fall_roll) | (pitch.abs() > cfg.fall_pitch)
        fell_height = height_over_support < cfg.fall_base_height
        fell_contact = body_contacts.any(-1)
        fell = fell_orientation | fell_height | fell_contact

        to_goal = self.goal[:, :2] - base_pos[:, :2]
        goal_dist = torch.linalg.norm(to_goal, dim=-1)
        success = (goal_dist < cfg.goal_radius) & ~fell
        # Task reward (stored in datasets): progress toward the destination + bonus on arrival.
        task_reward = (self.prev_goal_dist - goal_dist) + cfg.arrival_bonus * success.float()
        self.prev_goal_dist = goal_dist
        self.task_reward = task_reward

        # Feet air time bookkeeping (for the feet_air_time shaping term).
        foot_contact = sensors[:, self.foot_sensors] > 0
        self.feet_air_time += self.dt
        first_contact_air = torch.where(foot_contact, self.feet_air_time, torch.zeros_like(self.feet_air_time))
        first_contact_air = first_contact_air * (self.feet_air_time > self.dt)  # was airborne before
        self.feet_air_time = torch.where(foot_contact, torch.zeros_like(self.feet_air_time), self.feet_air_time)

        dof_vel = qvel[:, 6:]
        state = StepState(
            base_lin_vel_world=qvel[:, :3], base_lin_vel=Q.rotate_inverse(base_quat, qvel[:, :3]),
            base_ang_vel=qvel[:, 3:6], projected_gravity=self._projected_gravity(base_quat),
            goal_dir_world=to_goal / goal_dist.clamp(min=1e-6)[:, None], dof_pos=qpos[:, 7:], dof_vel=dof_vel,
            last_dof_vel=self.last_dof_vel, torques=self.torques, actions=self.actions,
            last_actions=self.last_actions, body_contacts=body_contacts,
            feet_first_contact_air_time=first_contact_air, dof_soft_limits=self.dof_soft_limits, fell=fell,
            dt=self.dt, target_speed=cfg.target_speed,
        )
        shaped, terms = shaping(cfg.reward_scales, state)
        self.reward_terms = terms
        self.last_dof_vel = dof_vel.clone()

        reason = torch.full_like(goal_dist, TerminationReason.NONE, dtype=torch.long)
        reason[success] = TerminationReason.SUCCESS
        reason[fell] = TerminationReason.FALL
        self._last_outcome = torch.where(success, 1, torch.where(fell, -1, self._last_outcome))
        if cfg.record_qpos:
            self.qpos_history.append(qpos.detach().to("cpu", copy=True))
        log = {f"rew/{k}": v.mean() for k, v in terms.items()}
        log.update({
            "fall/orientation": fell_orientation.float().mean(), "fall/base_height": fell_height.float().mean(),
            "fall/body_contact": fell_contact.float().mean(), "task_reward": task_reward.mean(),
            "success": success.float().mean(),  # per env-step, as fall/*: arrivals against falls over training
            "terrain_level": self.terrain_levels.float().mean(),
        })
        reward = task_reward + shaped if cfg.reward_mode == "ppo" else task_reward
        return {"reward": reward, "cost": fell.float(), "terminated": fell | success, "success": success,
                "reason": reason, "log": log}

    def _projected_gravity(self, base_quat: torch.Tensor) -> torch.Tensor:
        down = torch.tensor([0.0, 0.0, -1.0], device=self.device).expand(base_quat.shape[0], 3)
        return Q.rotate_inverse(base_quat, down)

    def _scan(self, base_pos: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
        """Terrain heights under the scan grid (N, P), gathered from the height map."""
        cos, sin = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
        px, py = self.scan_points[:, 0][None], self.scan_points[:, 1][None]
        world = torch.stack([base_pos[:, :1] + cos * px - sin * py, base_pos[:, 1:2] + sin * px + cos * py], -1)
        return self.terrain.heights(world)

    def _observe(self) -> torch.Tensor:
        qpos, qvel, sensors = self.physics.qpos, self.physics.qvel, self.physics.sensordata
        base_pos, base_quat = qpos[:, :3], qpos[:, 3:7]
        _, _, yaw = Q.roll_pitch_yaw(base_quat)
        to_goal = self.goal[:, :2] - base_pos[:, :2]
        dist = torch.linalg.norm(to_goal, dim=-1, keepdim=True)
        cos, sin = torch.cos(yaw)[:, None], torch.sin(yaw)[:, None]
        goal_base = torch.cat([cos * to_goal[:, :1] + sin * to_goal[:, 1:], -sin * to_goal[:, :1] + cos * to_goal[:, 1:]], -1)
        goal_obs = torch.cat([goal_base / dist.clamp(min=1e-6), dist.clamp(max=GOAL_DIST_CLIP) / GOAL_DIST_CLIP], -1)
        scan = (base_pos[:, 2:3] - SCAN_OFFSET - self._scan(base_pos, yaw)).clamp(-1.0, 1.0) * SCAN_SCALE
        return torch.cat([
            qvel[:, 3:6] * ANG_VEL_SCALE,  # MuJoCo's free-joint angular velocity is in the base frame
            self._projected_gravity(base_quat),
            goal_obs,
            qpos[:, 7:] - self.default_dof_pos,
            qvel[:, 6:] * DOF_VEL_SCALE,
            self.actions,
            (sensors[:, self.foot_sensors] > 0).float(),
            scan,
        ], dim=-1)

    def _privileged_observe(self, obs: torch.Tensor) -> torch.Tensor:
        qpos, qvel = self.physics.qpos, self.physics.qvel
        base_lin_vel = Q.rotate_inverse(qpos[:, 3:7], qvel[:, :3]) * LIN_VEL_SCALE
        height = (qpos[:, 2] - self.terrain.heights(qpos[:, :2]))[:, None]
        extra = torch.cat([base_lin_vel, height, self.friction[:, None], self.added_mass[:, None],
                           self.motor_strength], -1)
        return torch.cat([obs, extra], -1)

    # ----------------------------------------------------------------- public extras
    def step(self, actions: torch.Tensor):
        obs, reward, done, extras = super().step(actions)
        extras["task_reward"] = self.task_reward  # always the dataset reward, whatever reward_mode
        extras["reward_terms"] = self.reward_terms  # (N,) scaled shaping terms by name
        return obs, reward, done, extras

    def _push(self) -> None:
        """Random base xy velocity kicks (legged_gym pushes), applied by rewriting the state."""
        ids = torch.arange(self.num_envs, device=self.device)
        qpos, qvel = self.physics.qpos.clone(), self.physics.qvel.clone()
        qvel[:, :2] += self._uniform((self.num_envs, 2), -self.cfg.max_push_vel, self.cfg.max_push_vel)
        self.physics.set_state(ids, qpos, qvel)

    def get_render_state(self) -> torch.Tensor:
        """qpos (N, nq) of every env now, on the CPU: what `go2_sevpo.rendering.video` replays."""
        return self.physics.qpos.detach().to("cpu", copy=True)

    @property
    def fall_contact_bodies(self) -> tuple[str, ...]:
        return NON_FOOT_BODIES

    def close(self) -> None:
        close = getattr(self.physics, "close", None)
        if close is not None:
            close()

