"""The batched evaluator works for any registry env and counts only each env's first episode; DSRL
normalisation; the reach-avoid region IoU plumbing."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from go2_sevpo.envs import registry
from go2_sevpo.envs.base import BatchedEnv, EnvConfig, TerminationReason
from go2_sevpo.envs.reach_avoid import state_from_obs
from go2_sevpo.envs.reach_avoid_oracle import feasible
from go2_sevpo.evaluation.evaluator import EvalConfig, run_episodes
from go2_sevpo.evaluation.metrics import EpisodeRecords, normalized_cost, normalized_reward, summarize
from go2_sevpo.evaluation.reach_avoid_report import learned_region


@dataclass
class ToyConfig(EnvConfig):
    name: str = "toy_counter"
    max_episode_length: int = 50
    cost_limit: float = 0.5
    start: str = "fixed"
    reward_min: float = 0.0
    reward_max: float = 10.0


class ToyEnv(BatchedEnv):
    """Env j's FIRST episode lasts j + 1 steps with reward 1 per step (cost 1 on its first step for
    odd j) and ends in FALL (j % 3 == 0), SUCCESS (j % 3 == 1) or OUT_OF_BOUNDS. Later episodes pay
    100 per step and cost 5 per step, so counting any of them would show."""

    def __init__(self, cfg: ToyConfig):
        super().__init__(cfg, num_obs=2, num_actions=1)
        self.episode = torch.full((self.num_envs,), -1, dtype=torch.long)
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        self.j = torch.arange(self.num_envs)
        self.reset()

    def _reset_idx(self, env_ids):
        self.episode[env_ids] += 1
        self.t[env_ids] = 0

    def _physics_step(self, actions):
        self.t += 1
        first = self.episode == 0
        length = torch.where(first, self.j + 1, 3)
        done = self.t >= length
        reason = torch.where(self.j % 3 == 0, int(TerminationReason.FALL),
                             torch.where(self.j % 3 == 1, int(TerminationReason.SUCCESS), int(TerminationReason.OUT_OF_BOUNDS)))
        cost = torch.where(first, ((self.j % 2 == 1) & (self.t == 1)).float(), torch.full_like(self.t, 5).float())
        return {"reward": torch.where(first, 1.0, 100.0), "cost": cost, "terminated": done,
                "success": done & (self.j % 3 == 1), "reason": torch.where(done, reason, 0)}

    def _observe(self):
        return torch.stack([self.t.float(), self.episode.float()], -1)


@pytest.fixture(scope="module", autouse=True)
def toy_env():
    registry.register("toy_counter", "test_evaluator:ToyEnv", "test_evaluator:ToyConfig")
    yield
    registry._TASKS.pop("toy_counter", None)


def test_first_episode_only_and_all_rates():
    calls = []

    def policy(obs):
        calls.append(obs.shape[0])
        return torch.zeros(obs.shape[0], 1)

    result = run_episodes(policy, "toy_counter", {}, EvalConfig(episodes=6, record_envs=2), "cpu")
    r, m = result.records, result.metrics
    assert r.lengths.tolist() == [1, 2, 3, 4, 5, 6]
    assert r.returns.tolist() == [1, 2, 3, 4, 5, 6]
    assert r.costs.tolist() == [0, 1, 0, 1, 0, 1]
    assert m["episodes"] == 6
    assert m["failure_rate"] == 0.5 and m["max_episode_cost"] == 1.0
    assert m["fall_rate"] == pytest.approx(2 / 6) and m["success_rate"] == pytest.approx(2 / 6)
    assert m["normalized_reward"] == pytest.approx(3.5 / 10.0)  # range from the task config's fields
    assert m["normalized_cost"] == pytest.approx(0.5 / 0.5)
    assert m["termination_reasons"]["fall"] == 2
    assert set(calls) == {6}  # one policy call per step for all envs
    assert len(calls) <= 16  # stopped soon after every first episode ended (checked every 16 steps)
    assert result.trajectories.shape[1] == 2 and result.alive[:, 0].sum() == 2  # start + 1 step


def test_dsrl_normalisation():
    assert normalized_cost(3.0, 0.0) == 4.0  # kappa = 0: (C + 1) / (0 + 1)
    assert normalized_cost(5.0, 10.0) == 0.5  # kappa > 0: C / kappa
    assert normalized_reward(30.0, (10.0, 60.0)) == 0.4
    assert normalized_reward(30.0, None) is None
    rec = EpisodeRecords(np.array([1.0, 3.0]), np.array([0.0, 2.0]), np.array([5, 7]), np.array([True, False]),
                         np.array([1, 4]))
    m = summarize(rec, cost_limit=1.0, reward_range=(0.0, 4.0))
    assert m["mean_return"] == 2.0 and m["normalized_reward"] == 0.5 and m["failure_rate"] == 0.5
    assert m["fall_rate"] == 0.5 and m["success_rate"] == 0.5 and m["max_episode_cost"] == 2.0


def test_region_grid_plumbing_with_the_oracle_as_learner():
    # A "learner" that is the oracle itself must score IoU 1 through the observation round trip.
    oracle_set = lambda obs: feasible(state_from_obs(obs))  # noqa: E731
    _, _, learned, oracle = learned_region(oracle_set, 1.2, 0.785)
    assert torch.equal(learned, oracle)
    _, _, none, _ = learned_region(lambda obs: None, 1.2, 0.785)
    assert none is None
