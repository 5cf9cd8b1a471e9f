"""The critic-vs-truth tool's pieces: exact rollouts on the known dynamics, rank correlation."""

import math

import torch

from go2_sevpo.envs.reach_avoid import GOAL_BONUS, GOAL_CENTER, GOAL_RADIUS, observe, transition
from go2_sevpo.evaluation.critic_truth import _rank_correlation, rollout_values
from go2_sevpo.networks import DiffusionActor, DiffusionConfig


def tiny_actor() -> DiffusionActor:
    torch.manual_seed(0)
    return DiffusionActor(8, 2, DiffusionConfig(hidden_dim=16, num_blocks=1, time_dim=8, time_hidden=[8])).eval()


def sampler(actor):
    return lambda obs, generator: actor.sample(obs, generator)[:, 0]


def test_rollout_pays_the_goal_once_and_stops():
    # 0.05 m outside the goal disc, heading at it at full speed: the first step arrives whatever the actor does.
    d = GOAL_RADIUS + 0.05
    state = torch.tensor([[GOAL_CENTER[0] - d, GOAL_CENTER[1], 2.0, 0.0]])
    action = torch.zeros(1, 2)
    step = transition(state, action)
    assert bool(step["success"])
    ret, cost = rollout_values(sampler(tiny_actor()), lambda o: o, state, action, 0.99, 100, torch.Generator().manual_seed(0))
    assert math.isclose(float(ret), float(step["reward"]), rel_tol=1e-6) and float(ret) > GOAL_BONUS
    assert float(cost) == 0.0


def test_rollout_discounts_hazard_steps():
    # Stopped at the hazard's centre with a full-brake first action: the actor may move it out later,
    # but the first step costs 1 undiscounted, so the discounted cost is at least 1.
    state = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    ret, cost = rollout_values(sampler(tiny_actor()), lambda o: o, state, torch.tensor([[-1.0, 0.0]]), 0.99, 5,
                               torch.Generator().manual_seed(0))
    assert 1.0 <= float(cost) <= sum(0.99**k for k in range(5)) + 1e-6
    assert observe(state).shape == (1, 8)


def test_rank_correlation_signs():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, 1.0]])
    assert math.isclose(_rank_correlation(a, a), 1.0, rel_tol=1e-6)
    assert math.isclose(_rank_correlation(a, -a), -1.0, rel_tol=1e-6)


def test_best_escape_cost_from_the_hazard_centre():
    from go2_sevpo.evaluation.critic_truth import best_escape_cost

    # At standstill in the centre, full throttle leaves the 0.8 m disc after about 26 steps of
    # x = DT^2 n (n - 1) / 2; a first full-brake step wastes one step (v stays 0), never less.
    centre = torch.zeros(2, 4)
    cost = best_escape_cost(centre, torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), gamma=1.0, horizon=300)
    assert 20 <= float(cost[0]) <= 30 and float(cost[1]) == float(cost[0]) + 1
    # Far from the hazard, heading away from it at speed: no cost whatever the first action.
    away = torch.tensor([[2.0, -2.0, 1.0, -math.pi / 4]])
    assert float(best_escape_cost(away, torch.tensor([[-1.0, 1.0]]), gamma=0.99, horizon=300)) == 0.0
