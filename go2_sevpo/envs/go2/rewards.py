"""PPO shaping terms for the Go2 tasks, legged_gym style: one small function per named term.

Each term maps the env's per-step state (`StepState`) to a (N,) tensor; the env multiplies it by
its scale and the policy dt and sums. These shape PPO only; datasets store the task reward
(progress + arrival bonus), and the breakdown goes to `extras["log"]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StepState:
    """What the shaping terms read, computed once per policy step by the env."""

    base_lin_vel_world: torch.Tensor  # (N, 3)
    base_lin_vel: torch.Tensor  # (N, 3) base frame
    base_ang_vel: torch.Tensor  # (N, 3) base frame
    projected_gravity: torch.Tensor  # (N, 3)
    goal_dir_world: torch.Tensor  # (N, 2) unit vector base -> destination
    dof_pos: torch.Tensor  # (N, 12)
    dof_vel: torch.Tensor  # (N, 12)
    last_dof_vel: torch.Tensor  # (N, 12)
    torques: torch.Tensor  # (N, 12) last physics substep
    actions: torch.Tensor  # (N, 12)
    last_actions: torch.Tensor  # (N, 12)
    body_contacts: torch.Tensor  # (N, 13) non-foot contact flags
    feet_first_contact_air_time: torch.Tensor  # (N, 4) air time of feet that just touched down, else 0
    dof_soft_limits: torch.Tensor  # (12, 2)
    fell: torch.Tensor  # (N,) bool
    dt: float
    target_speed: float


def tracking_goal_vel(s: StepState) -> torch.Tensor:
    """Base velocity toward the destination, saturating at the target speed (extreme-parkour)."""
    toward = (s.base_lin_vel_world[:, :2] * s.goal_dir_world).sum(-1)
    return torch.clamp(toward, max=s.target_speed) / s.target_speed


def lin_vel_z(s: StepState) -> torch.Tensor:
    return s.base_lin_vel[:, 2].square()


def ang_vel_xy(s: StepState) -> torch.Tensor:
    return s.base_ang_vel[:, :2].square().sum(-1)


def orientation(s: StepState) -> torch.Tensor:
    return s.projected_gravity[:, :2].square().sum(-1)


def torques(s: StepState) -> torch.Tensor:
    return s.torques.square().sum(-1)


def dof_acc(s: StepState) -> torch.Tensor:
    return ((s.dof_vel - s.last_dof_vel) / s.dt).square().sum(-1)


def action_rate(s: StepState) -> torch.Tensor:
    return (s.actions - s.last_actions).square().sum(-1)


def collision(s: StepState) -> torch.Tensor:
    return s.body_contacts.float().sum(-1)


def feet_air_time(s: StepState) -> torch.Tensor:
    """Reward steps longer than 0.5 s at touchdown (legged_gym), which favours clear jumps."""
    touched = s.feet_first_contact_air_time > 0
    return ((s.feet_first_contact_air_time - 0.5) * touched).sum(-1)


def dof_pos_limits(s: StepState) -> torch.Tensor:
    below = (s.dof_soft_limits[:, 0] - s.dof_pos).clamp(min=0.0)
    above = (s.dof_pos - s.dof_soft_limits[:, 1]).clamp(min=0.0)
    return (below + above).sum(-1)


def termination(s: StepState) -> torch.Tensor:
    return s.fell.float()


TERMS = {f.__name__: f for f in (tracking_goal_vel, lin_vel_z, ang_vel_xy, orientation, torques, dof_acc,
                                 action_rate, collision, feet_air_time, dof_pos_limits, termination)}


def shaping(scales: dict[str, float], state: StepState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sum of scale * dt * term over the non-zero scales, and each scaled term (N,) by name."""
    unknown = sorted(set(scales) - set(TERMS))
    if unknown:
        raise KeyError(f"unknown reward term(s) {unknown}; known: {sorted(TERMS)}")
    parts = {name: TERMS[name](state) * (scale * state.dt) for name, scale in scales.items() if scale != 0.0}
    total = torch.zeros_like(state.fell, dtype=torch.float32)
    for value in parts.values():
        total = total + value
    return total, parts
