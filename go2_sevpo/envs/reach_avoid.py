"""The papers' reach-avoid task (SEVPO Fig. 1, after FISOR's toy): a unicycle must reach a goal
while avoiding a circular hazard. Batched in torch on any device.

Decisions beyond the papers (see docs/REACH_AVOID.md): the speed is clipped to [0, V_MAX] (a
braking unicycle stops, it does not reverse), and the goal test uses the post-step position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from go2_sevpo.envs.base import BatchedEnv, EnvConfig, TerminationReason

HAZARD_CENTER = (0.0, 0.0)
HAZARD_RADIUS = 0.8
GOAL_CENTER = (2.2, 2.2)
GOAL_RADIUS = 0.3
ARENA = 3.0  # the arena is [-ARENA, ARENA]^2
DT = 0.05
V_MAX = 2.0
GOAL_BONUS = 100.0
PAPER_START = (-0.8, -1.5, 1.2, math.pi / 4)  # x, y, v, theta
START_MODES = ("paper", "hazard", "random", "random_feasible", "near_hazard")


@dataclass
class ReachAvoidConfig(EnvConfig):
    name: str = "reach_avoid"
    num_envs: int = 1
    max_episode_length: int = 300
    cost_limit: float = 0.0  # any step in the hazard makes an episode unsafe
    # paper: the papers' fixed start; hazard: inside the hazard (paper Fig. 5); random: uniform over
    # the arena (data collection); random_feasible: random, resampled until the oracle calls it
    # feasible; near_hazard: a ring just outside the hazard (extra low-quality data).
    start: str = "random"
    eval_start: str = "paper"


def dynamics(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """One Euler step of the unicycle; state (..., 4) = (x, y, v, theta), action in [-1, 1]^2."""
    x, y, v, th = state.unbind(-1)
    a = action.clamp(-1.0, 1.0)
    x = x + DT * v * torch.cos(th)
    y = y + DT * v * torch.sin(th)
    v = (v + DT * a[..., 0]).clamp(0.0, V_MAX)
    th = th + DT * a[..., 1]
    return torch.stack([x, y, v, th], dim=-1)


def transition(state: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
    """One step of the task on a batch of states: next state, reward (decrease of the goal distance,
    +GOAL_BONUS on arrival), cost (1 inside the hazard), success and out-of-bounds (both terminal).
    The env steps with this; so does anything that rolls the known dynamics out (critic checks)."""
    before = goal_distance(state[..., :2])
    nxt = dynamics(state, action)
    after = goal_distance(nxt[..., :2])
    success = after <= GOAL_RADIUS
    out_of_bounds = (nxt[..., :2].abs() > ARENA).any(-1) & ~success
    return {
        "state": nxt,
        "reward": before - after + GOAL_BONUS * success.float(),
        "cost": (hazard_distance(nxt[..., :2]) < HAZARD_RADIUS).float(),
        "success": success,
        "out_of_bounds": out_of_bounds,
    }


def hazard_distance(xy: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(xy - xy.new_tensor(HAZARD_CENTER), dim=-1)


def goal_distance(xy: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(xy - xy.new_tensor(GOAL_CENTER), dim=-1)


def observe(state: torch.Tensor) -> torch.Tensor:
    """Observation (8): x, y, v, cos th, sin th, hazard distance, cos/sin of the hazard bearing in
    the agent's frame. It determines the state, so planners can act from observations."""
    x, y, v, th = state.unbind(-1)
    to_hazard = state.new_tensor(HAZARD_CENTER) - state[..., :2]
    bearing = torch.atan2(to_hazard[..., 1], to_hazard[..., 0]) - th
    return torch.stack(
        [x, y, v, torch.cos(th), torch.sin(th), hazard_distance(state[..., :2]), torch.cos(bearing), torch.sin(bearing)],
        dim=-1,
    )


def state_from_obs(obs: torch.Tensor) -> torch.Tensor:
    return torch.stack([obs[..., 0], obs[..., 1], obs[..., 2], torch.atan2(obs[..., 4], obs[..., 3])], dim=-1)


def sample_starts(mode: str, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)

    if mode == "paper":
        return torch.tensor(PAPER_START, device=device).expand(n, 4).clone()
    if mode == "random":
        return torch.stack([u(-ARENA, ARENA), u(-ARENA, ARENA), u(0.5, 1.5), u(math.pi / 4, 3 * math.pi / 4)], -1)
    if mode == "random_feasible":
        from go2_sevpo.envs.reach_avoid_oracle import feasible  # the oracle imports this module

        states = sample_starts("random", n, generator, device)
        for _ in range(100):  # about 70% of random starts are feasible: this ends in a few rounds
            bad = ~feasible(states)
            if not bad.any():
                return states
            states = torch.where(bad[:, None], sample_starts("random", n, generator, device), states)
        raise RuntimeError("could not sample feasible starts")
    if mode in ("hazard", "near_hazard"):
        # hazard: uniform over the disc's inner 90%; near_hazard: a ring 0.8-1.6 m from its centre.
        r = HAZARD_RADIUS * 0.9 * torch.sqrt(u(0.0, 1.0)) if mode == "hazard" else u(HAZARD_RADIUS, 2 * HAZARD_RADIUS)
        phi = u(-math.pi, math.pi)
        return torch.stack([r * torch.cos(phi), r * torch.sin(phi), u(0.5, 1.5), u(-math.pi, math.pi)], -1)
    raise ValueError(f"unknown start mode '{mode}'; choose one of {START_MODES}")


class ReachAvoidEnv(BatchedEnv):
    def __init__(self, cfg: ReachAvoidConfig):
        if cfg.start not in START_MODES:
            raise ValueError(f"unknown start mode '{cfg.start}'; choose one of {START_MODES}")
        super().__init__(cfg, num_obs=8, num_actions=2)
        self.state = torch.zeros(self.num_envs, 4, device=self.device)
        self.reset()

    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        self.state[env_ids] = sample_starts(self.cfg.start, len(env_ids), self.generator, self.device)

    def _physics_step(self, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        out = transition(self.state, actions)
        self.state = out["state"]
        success, out_of_bounds = out["success"], out["out_of_bounds"]
        reason = torch.where(success, int(TerminationReason.SUCCESS), 0)
        reason = torch.where(out_of_bounds, int(TerminationReason.OUT_OF_BOUNDS), reason)
        return {
            "reward": out["reward"],
            "cost": out["cost"],
            "terminated": success | out_of_bounds,
            "success": success,
            "reason": reason,
        }

    def _observe(self) -> torch.Tensor:
        return observe(self.state)

    @staticmethod
    def constraint_value(obs: torch.Tensor) -> torch.Tensor:
        """h = hazard radius - hazard distance (observation 5): > 0 inside the hazard, where cost is 1."""
        return HAZARD_RADIUS - obs[..., 5]
