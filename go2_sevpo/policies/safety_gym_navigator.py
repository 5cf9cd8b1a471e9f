"""A scripted safe expert for the Safety-Gymnasium Point goal tasks (SafetyPointGoal0/1/2).

Like a scripted expert, it reads privileged state from the underlying safety_gymnasium envs
(`env.envs[i].unwrapped.task`): the agent's position, heading and velocity, the goal's position and
every constrained obstacle's centre and radius (hazards; vases where they cost, as in Goal2). The
observation (lidar) is not used.

Two parts, batched over the envs:
- Where to go: a cost-to-goal field on a grid over the arena, by wavefront relaxation (8-connected,
  torch), recomputed only when an env's goal or layout changes. Cells within `margin` of an obstacle's
  edge cost more the deeper they are, so the field's descent keeps off hazards and leads around
  groups of them: a greedy potential field stalls in the pockets hazards form. The agent heads along
  the candidate direction that descends the field most over `look` metres.
- How to get there: the Point agent is a puck that coasts (low damping), so the controller tracks a
  desired velocity rather than a heading: `cruise` speed along that direction, slower where the
  path is close to an obstacle. It turns the thrust axis (forward or backward, whichever is nearer)
  toward the velocity error and thrusts along it; reverse thrust is the brake.
Gaussian action noise (`noise`, from the policy's generator) gives the data some coverage.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

AGENT_RADIUS = 0.1  # the Point agent's sphere: a vase is touched at centre distance vase size + this
FAR = 1e3  # field value of unreached cells


class PointGoalNavigator:
    def __init__(self, env, generator: torch.Generator | None = None, margin: float = 0.15, cruise: float = 0.6,
                 look: float = 0.15, coast: float = 0.5, extent: float = 2.0, cell: float = 0.05, noise: float = 0.1, headings: int = 32):
        task = getattr(env.cfg, "task", "")
        if not (task.startswith("SafetyPointGoal") and hasattr(env, "envs")):
            raise ValueError(f"the safety_gym expert handles the Point goal tasks (SafetyPointGoal0/1/2-v0), not '{task}'")
        self.env, self.generator = env, generator
        self.margin, self.cruise, self.look, self.coast = margin, cruise, look, coast
        self.extent, self.noise = extent, noise
        axis = torch.arange(-extent, extent + 1e-9, cell, dtype=torch.float64)
        self.cell = cell
        self.grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1)  # (H, W, 2): [row=y, col=x]
        angles = torch.arange(headings, dtype=torch.float64) * (2 * math.pi / headings)
        self.directions = torch.stack([angles.cos(), angles.sin()], -1)  # (K, 2)
        n = env.num_envs
        self.fields = torch.full((n, *self.grid.shape[:2]), FAR, dtype=torch.float64)
        self.keys: list[np.ndarray | None] = [None] * n  # goal + obstacles each field was made for
        self.sign = torch.ones(n, dtype=torch.float64)  # +1 thrust forward, -1 in reverse

    # ------------------------------------------------------------------ privileged state
    def _state(self) -> tuple[torch.Tensor, ...]:
        """(N, 2) position, heading, velocity, goal; (N, M, 2) obstacle centres and (N, M) radii, padded
        with far-away obstacles of radius 0."""
        pos, head, vel, goal, obstacles = [], [], [], [], []
        for e in self.env.envs:
            t = e.unwrapped.task
            pos.append(t.agent.pos[:2]), head.append(t.agent.mat[:2, 0]), vel.append(t.agent.vel[:2])
            goal.append(t.goal.pos[:2])
            obs = []
            if getattr(t, "hazards", None) is not None and t.hazards.is_constrained:
                obs += [(*p[:2], t.hazards.size) for p in t.hazards.pos]
            if getattr(t, "vases", None) is not None and t.vases.is_constrained:
                obs += [(*p[:2], t.vases.size + AGENT_RADIUS) for p in t.vases.pos]
            obstacles.append(obs)
        padded = np.zeros((len(obstacles), max(1, max(len(o) for o in obstacles)), 3))
        padded[..., :2] = FAR
        for i, o in enumerate(obstacles):
            if o:
                padded[i, :len(o)] = o
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        padded = as_t(padded)
        return as_t(pos), as_t(head), as_t(vel), as_t(goal), padded[..., :2], padded[..., 2]

    @staticmethod
    def _clearance(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
        """Distance from each point (N, ..., 2) to the nearest obstacle edge: (N, ...)."""
        n = points.shape[0]
        flat = points.reshape(n, -1, 1, 2)
        d = (flat - centres[:, None]).norm(dim=-1) - radii[:, None]
        return d.min(dim=-1).values.reshape(points.shape[:-1])

    # ------------------------------------------------------------------ where to go
    def _update_fields(self, goal: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> None:
        keys = torch.cat([goal, centres.flatten(1), radii], 1).numpy()
        stale = [i for i, k in enumerate(keys) if self.keys[i] is None or not np.array_equal(self.keys[i], k)]
        if not stale:
            return
        idx = torch.tensor(stale)
        grid = self.grid[None].expand(len(stale), -1, -1, -1)
        clear = self._clearance(grid, centres[idx], radii[idx])  # (S, H, W)
        # Free cells cost 1 per metre; within the margin up to 1 + 30; inside an obstacle 100.
        weight = 1 + 30 * ((self.margin - clear) / self.margin).clamp(0, 1) ** 2
        weight = torch.where(clear < 0, torch.full_like(weight, 100.0), weight)
        at_goal = (grid - goal[idx][:, None, None]).norm(dim=-1) < 0.1
        field = torch.where(at_goal, torch.zeros_like(weight), torch.full_like(weight, FAR))
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
        for _ in range(4 * field.shape[-1]):  # converges long before: stops when nothing changes
            padded = F.pad(field, (1, 1, 1, 1), value=FAR)
            wpad = F.pad(weight, (1, 1, 1, 1), value=100.0)
            h, w = field.shape[-2:]
            best = field
            for dy, dx in shifts:
                nf = padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                nw = wpad[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                best = torch.minimum(best, nf + self.cell * math.hypot(dy, dx) * 0.5 * (weight + nw))
            if torch.equal(best, field):
                break
            field = best
        self.fields[idx] = field
        for i in stale:
            self.keys[i] = keys[i]

    def _field_at(self, points: torch.Tensor) -> torch.Tensor:
        """Bilinear field values at points (N, K, 2) -> (N, K); points off the grid read its edge."""
        uv = (points / self.extent).clamp(-1, 1)[:, :, None, :]  # grid_sample wants (x, y) in [-1, 1]
        out = F.grid_sample(self.fields[:, None], uv, mode="bilinear", align_corners=True)
        return out[:, 0, :, 0]

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        pos, head, vel, goal, centres, radii = self._state()
        self._update_fields(goal, centres, radii)
        probes = pos[:, None] + self.look * self.directions[None]  # (N, K, 2)
        descent = self._field_at(pos[:, None])[:, :1] - self._field_at(probes)
        direction = self.directions[descent.argmax(dim=-1)]  # (N, 2)
        # Desired speed: cruise, slower where the path just ahead, or where coasting at the present
        # velocity for `coast` seconds, comes close to an obstacle (turning to brake takes time).
        along = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)[None, :, None]
        ahead = pos[:, None] + 0.3 * along * direction[:, None]
        drift = pos[:, None] + self.coast * along * vel[:, None]
        room = self._clearance(torch.cat([ahead, drift], 1), centres, radii).min(dim=-1).values
        speed = self.cruise * (room / self.margin).clamp(0.25, 1.0)
        error = speed[:, None] * direction - vel  # velocity error
        # Thrust axis: along the error when it is large, else along the direction; forward or reverse,
        # whichever needs the smaller turn, with hysteresis: an axis near perpendicular to the heading
        # would otherwise flip every step and the agent would turn back and forth on the spot.
        axis = torch.where(error.norm(dim=-1, keepdim=True) > 0.1, error, direction)
        axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        flip = (self.sign[:, None] * axis * head).sum(-1) < -0.3
        self.sign = torch.where(flip, -self.sign, self.sign)
        axis = self.sign[:, None] * axis
        turn_err = torch.atan2(head[:, 0] * axis[:, 1] - head[:, 1] * axis[:, 0], (head * axis).sum(-1))
        turn = (3.0 * turn_err).clamp(-1, 1)
        thrust = (4.0 * (error * head).sum(-1)).clamp(-1, 1)
        action = torch.stack([thrust, turn], -1).float()
        if self.noise > 0:
            action = action + self.noise * torch.randn(action.shape, generator=self.generator, device=action.device)
        return action.clamp(-1.0, 1.0).to(obs.device)
