import math

import pytest
import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from go2_sevpo.envs import TerminationReason, make_env
from go2_sevpo.envs.reach_avoid import DT, GOAL_CENTER, dynamics, observe, state_from_obs
from go2_sevpo.envs.reach_avoid_oracle import feasible, iou, region_grid


def set_state(env, states):
    env.state[:] = torch.as_tensor(states, dtype=torch.float32)
    env.obs_buf = env._observe()


def test_dynamics_one_euler_step():
    s = torch.tensor([1.0, 2.0, 1.0, math.pi / 2])
    out = dynamics(s, torch.tensor([0.5, -1.0]))
    expected = torch.tensor([1.0, 2.0 + DT, 1.0 + 0.5 * DT, math.pi / 2 - DT])
    assert torch.allclose(out, expected, atol=1e-6)
    # braking never reverses the unicycle
    assert dynamics(torch.tensor([0.0, 0.0, 0.01, 0.0]), torch.tensor([-1.0, 0.0]))[2] == 0.0


def test_observation_layout_and_inverse():
    s = torch.tensor([[-1.0, 0.0, 1.2, 0.3]])
    o = observe(s)
    assert o.shape == (1, 8)
    assert torch.isclose(o[0, 5], torch.tensor(1.0))  # distance to the hazard centre
    # hazard straight ahead-ish: bearing = 0 - 0.3 in the agent frame
    assert torch.isclose(o[0, 6], torch.cos(torch.tensor(-0.3)), atol=1e-6)
    assert torch.allclose(state_from_obs(o), s, atol=1e-6)


@pytest.mark.parametrize(
    "state, expected",
    [
        ((0.3, -0.2, 1.0, 0.0), False),  # inside the hazard
        ((2.5, -2.5, 1.0, -math.pi / 4), True),  # far away, heading away
        ((-1.0, 0.0, 1.5, 0.0), False),  # 0.2 m out, heading straight in at speed
        ((-0.85, 0.0, 0.05, 0.0), True),  # close, heading in, but almost stopped
        ((-0.81, 0.0, 1.0, math.pi / 2), True),  # just outside, moving tangentially
    ],
)
def test_oracle_hand_checked_states(state, expected):
    assert bool(feasible(torch.tensor(state))) is expected


def test_oracle_region_and_iou():
    xs, ys, mask = region_grid(1.0, math.pi / 4, resolution=61)
    assert mask.shape == (61, 61)
    assert 0.8 < mask.float().mean() < 1.0  # the hazard and its approach are carved out
    assert iou(mask, mask) == 1.0
    assert iou(mask, ~mask) == 0.0


def test_vecenv_contract_and_shapes():
    env = make_env("reach_avoid", num_envs=5, seed=0)
    assert isinstance(env, VecEnv)
    obs = env.get_observations()
    assert isinstance(obs, TensorDict) and obs["policy"].shape == (5, 8) and obs["critic"].shape == (5, 8)
    obs, rew, done, extras = env.step(torch.zeros(5, 2))
    assert rew.shape == (5,) and done.shape == (5,) and done.dtype == torch.bool
    for key in ("costs", "terminated", "time_outs", "success", "termination_reason", "final_observations"):
        assert extras[key].shape[0] == 5


def test_cost_success_out_of_bounds_and_auto_reset():
    env = make_env("reach_avoid", num_envs=3, start="paper", seed=0)
    gx, gy = GOAL_CENTER
    set_state(env, [[0.1, 0.0, 1.0, 0.0],  # inside the hazard: cost, no termination
                    [gx - 0.31, gy, 1.0, 0.0],  # one step from the goal
                    [2.99, 0.0, 2.0, 0.0]])  # about to leave the arena
    obs, rew, done, ex = env.step(torch.zeros(3, 2))
    assert ex["costs"].tolist() == [1.0, 0.0, 0.0]
    assert ex["success"].tolist() == [False, True, False]
    assert done.tolist() == [False, True, True]
    assert ex["terminated"].tolist() == [False, True, True] and not ex["time_outs"].any()
    assert ex["termination_reason"].tolist() == [0, int(TerminationReason.SUCCESS), int(TerminationReason.OUT_OF_BOUNDS)]
    assert rew[1] > 100.0  # goal bonus plus progress
    # finished envs were reset to the papers' start; final_observations keep where they ended
    assert torch.allclose(env.state[1], torch.tensor([-0.8, -1.5, 1.2, math.pi / 4]))
    assert ex["final_observations"][1, 0] > 1.8
    assert env.episode_length_buf.tolist() == [1, 0, 0]


def test_time_out_is_truncation_not_terminal():
    env = make_env("reach_avoid", num_envs=2, start="paper", seed=0, max_episode_length=5)
    set_state(env, [[-2.5, -2.5, 0.0, 0.0], [-2.5, 2.5, 0.0, 0.0]])
    for _ in range(4):
        _, _, done, ex = env.step(torch.zeros(2, 2))
        assert not done.any()
    _, _, done, ex = env.step(torch.zeros(2, 2))
    assert done.all() and ex["time_outs"].all() and not ex["terminated"].any()
    assert (ex["termination_reason"] == TerminationReason.TIME_OUT).all()


def test_start_modes():
    for mode, check in [
        ("hazard", lambda s: (s[:, :2].norm(dim=1) < 0.8).all()),
        ("near_hazard", lambda s: ((s[:, :2].norm(dim=1) >= 0.8) & (s[:, :2].norm(dim=1) <= 1.6)).all()),
        ("random_feasible", lambda s: feasible(s).all()),
        ("random", lambda s: (s[:, :2].abs() <= 3).all()),
    ]:
        env = make_env("reach_avoid", num_envs=256, start=mode, seed=1)
        assert check(env.state), mode
    with pytest.raises(ValueError, match="unknown start mode"):
        make_env("reach_avoid", start="nowhere")
    with pytest.raises(KeyError, match="unknown env"):
        make_env("reach_avoid_v2")
    with pytest.raises(KeyError, match="no option"):
        make_env("reach_avoid", gravity=9.8)


def test_same_seed_same_rollout():
    def roll(seed):
        env = make_env("reach_avoid", num_envs=16, start="random", seed=seed)
        g = torch.Generator().manual_seed(seed)
        total = torch.zeros(16)
        for _ in range(50):
            _, r, _, _ = env.step(2 * torch.rand(16, 2, generator=g) - 1)
            total += r
        return total

    assert torch.equal(roll(3), roll(3))
    assert not torch.equal(roll(3), roll(4))
