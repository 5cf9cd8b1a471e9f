"""Ground truth for reach-avoid: the largest feasible region, computed from the known dynamics.

A state is feasible when it is outside the hazard and some evasive manoeuvre keeps it outside for
ever: brake at full deceleration while turning at full rate, to the left or to the right (the union
of both is taken; the manoeuvre ends once the unicycle stops). This is the ENVS.md definition with
both turn directions tried, so it slightly under-approximates the true viability kernel only where
a cleverer manoeuvre (e.g. a partial turn) would also escape.
"""

from __future__ import annotations

import math

import torch

from go2_sevpo.envs.reach_avoid import DT, HAZARD_RADIUS, V_MAX, dynamics, hazard_distance

BRAKE_STEPS = int(math.ceil(V_MAX / DT)) + 1  # enough steps to stop from any speed


def feasible(state: torch.Tensor) -> torch.Tensor:
    """(..., 4) states -> (...) bool: can this state avoid the hazard for ever?"""
    flat = state.reshape(-1, 4)
    outside = hazard_distance(flat[:, :2]) >= HAZARD_RADIUS
    escapes = torch.zeros_like(outside)
    for turn in (-1.0, 1.0):
        s = flat
        action = flat.new_tensor([-1.0, turn]).expand(flat.shape[0], 2)
        clear = outside.clone()
        for _ in range(BRAKE_STEPS):
            s = dynamics(s, action)
            clear &= hazard_distance(s[:, :2]) >= HAZARD_RADIUS
        escapes |= clear
    return escapes.reshape(state.shape[:-1])


def region_grid(v: float, theta: float, resolution: int = 121, extent: float = 3.0, device: str = "cpu"):
    """Feasibility over an (x, y) grid at fixed speed and heading; returns (xs, ys, mask[y, x])."""
    xs = torch.linspace(-extent, extent, resolution, device=device)
    ys = torch.linspace(-extent, extent, resolution, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    states = torch.stack([gx, gy, torch.full_like(gx, v), torch.full_like(gx, theta)], dim=-1)
    return xs, ys, feasible(states)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    union = (a | b).sum()
    return float((a & b).sum() / union) if union > 0 else 1.0
