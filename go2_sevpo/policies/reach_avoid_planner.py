"""The reach-avoid expert: a model-based planner on the known unicycle dynamics.

The papers' expert is TD3-Lag; ENVS.md allows any expert that reaches the goal safely. This one is
shooting MPC over constant-action primitives, batched over all envs and all primitives at once:
every primitive is rolled out for `horizon` steps; rollouts that touch the hazard (plus a margin) or
end in a state the feasibility oracle rejects are discarded; among the rest, the one that gets
closest to the goal (earliest, on ties) wins and its first action is applied. Requiring an oracle-
feasible end state makes the plan recursively feasible: the brake-and-turn primitive that proved
the current state feasible is always among the candidates, so from a feasible start the expert
never enters the hazard (measured in docs/REACH_AVOID.md). Plans that leave the arena are
discarded too, since leaving it ends the episode without reaching the goal.

`RecklessPlanner` is the same planner blind to the hazard: it takes the fastest way to the goal, through
the hazard when that is shorter (high return, high cost): the reward-seeking unsafe data source of the
harder recipes (DSRL's unsafe trajectories are high-reward ones; docs/REACH_AVOID.md, "Harder recipes").
"""

from __future__ import annotations

import torch

from go2_sevpo.envs.reach_avoid import ARENA, GOAL_RADIUS, HAZARD_RADIUS, dynamics, goal_distance, hazard_distance, state_from_obs
from go2_sevpo.envs.reach_avoid_oracle import feasible


class ReachAvoidPlanner:
    def __init__(self, horizon: int = 15, levels: int = 5, margin: float = 0.05, noise: float = 0.1,
                 generator: torch.Generator | None = None, avoid_hazard: bool = True):
        grid = torch.linspace(-1.0, 1.0, levels)
        self.primitives = torch.cartesian_prod(grid, grid)  # (P, 2): every (accel, turn) level pair
        self.horizon, self.margin, self.noise = horizon, margin, noise
        self.avoid_hazard = avoid_hazard
        self.generator = generator

    @torch.no_grad()
    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        state = state_from_obs(obs)  # (N, 4)
        prims = self.primitives.to(obs.device)
        n, p = state.shape[0], prims.shape[0]
        s = state[:, None, :].expand(n, p, 4)
        a = prims[None].expand(n, p, 2)
        clear = torch.ones(n, p, dtype=torch.bool, device=obs.device)
        best_dist = goal_distance(s[..., :2])
        arrival = torch.full((n, p), float(self.horizon), device=obs.device)
        for t in range(self.horizon):
            s = dynamics(s, a)
            if self.avoid_hazard:
                clear &= hazard_distance(s[..., :2]) >= HAZARD_RADIUS + self.margin
            inside = (s[..., :2].abs() <= ARENA - self.margin).all(-1)
            d = goal_distance(s[..., :2])
            clear &= inside | (best_dist <= GOAL_RADIUS)  # leaving the arena ends the episode
            best_dist = torch.minimum(best_dist, d)
            arrival = torch.where((d <= GOAL_RADIUS) & (arrival == self.horizon), float(t), arrival)
        reached = best_dist <= GOAL_RADIUS
        # Arriving inside the goal ends the episode, so the end state need not be feasible then.
        valid = clear & (feasible(s) | reached) if self.avoid_hazard else clear
        score = torch.where(reached, arrival - 1e3, best_dist)  # reach soonest; else get closest
        score = torch.where(valid, score, score + 1e6)  # an infeasible plan only when nothing else is left
        action = prims[score.argmin(dim=1)]
        if self.noise > 0:
            eps = torch.randn(action.shape, generator=self.generator, device=action.device)
            action = action + self.noise * eps
        return action.clamp(-1.0, 1.0)


class RecklessPlanner(ReachAvoidPlanner):
    """The planner without the hazard: only the arena bounds constrain its plans."""

    def __init__(self, **kwargs):
        super().__init__(avoid_hazard=False, **kwargs)
