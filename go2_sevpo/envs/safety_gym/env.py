"""The Safety-Gymnasium adapter: N safety_gymnasium envs stepped in lockstep behind the batched
interface (torch tensors in and out, auto-reset per env), so the collector, the trainer's evaluation
and offline/evaluate.py run on these tasks unchanged.

Per step: reward and cost are safety_gymnasium's (navigation tasks: cost 1 when any constraint is
violated; velocity tasks: 1 above the speed limit); `success` is its `goal_met` (a goal, button or
push target reached; the episode goes on with a new goal, as upstream); `terminated` is its own
(velocity tasks: the robot is unhealthy, recorded as a FALL); the time limit is the base class's.
Each episode's layout comes from a reset seed drawn from the env's generator, so a run is
reproducible from `seed`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from go2_sevpo.envs.base import BatchedEnv, TerminationReason
from go2_sevpo.envs.safety_gym.compat import import_safety_gymnasium, set_fast_reset
from go2_sevpo.envs.safety_gym.config import SafetyGymConfig

# Tasks measured NOT to run on mujoco 4.0.0 with safety-gymnasium 1.0.0 (docs/SAFETY_GYM.md).
UNSUPPORTED = {
    "SafetySwimmerVelocity": "gymnasium 0.29's swimmer.xml uses collision=\"predefined\", which mujoco >= 3 rejects",
    "SafetyDoggo": "its agent converts size-3 arrays to floats, which numpy 2 rejects",
    "SafetyAnt": "its agent converts size-3 arrays to floats, which numpy 2 rejects",
}


def _unsupported_reason(task: str) -> str | None:
    for prefix, reason in UNSUPPORTED.items():
        if task.startswith(prefix) and not (prefix == "SafetyAnt" and task.startswith("SafetyAntVelocity")):
            return reason
    return None


def _make_one(task: str, max_episode_steps: int):
    sg = import_safety_gymnasium()
    reason = _unsupported_reason(task)
    if reason:
        raise ValueError(f"Safety-Gymnasium task {task} does not run beside mujoco 4.0.0: {reason}")
    from safety_gymnasium.utils.registration import safe_registry

    if task not in safe_registry:  # upstream would fail with an AssertionError
        known = sorted(i for i in safe_registry if "Gymnasium" not in i and "Vision" not in i and "Debug" not in i)
        raise ValueError(f"unknown Safety-Gymnasium task '{task}'; e.g. {', '.join(known[:6])}, ... "
                         "(docs/SAFETY_GYM.md)")
    return sg.make(task, max_episode_steps=max_episode_steps)


class SafetyGymEnv(BatchedEnv):
    def __init__(self, cfg: SafetyGymConfig):
        set_fast_reset(cfg.fast_reset)
        first = _make_one(cfg.task, cfg.max_episode_length or None)
        if cfg.max_episode_length == 0:  # a task DSRL has no constants for: its registered length
            cfg = dataclasses.replace(cfg, max_episode_length=int(first.spec.max_episode_steps or 1000))
        own_limit = getattr(getattr(first.unwrapped, "task", None), "num_steps", None)  # navigation tasks
        if own_limit is not None and cfg.max_episode_length > own_limit:
            raise ValueError(f"env.max_episode_length={cfg.max_episode_length} exceeds {cfg.task}'s own "
                             f"limit of {own_limit} steps")
        if first.action_space.low.min() < -1 or first.action_space.high.max() > 1:
            # The batched interface acts in [-1, 1]; every task of the papers does too.
            raise ValueError(f"{cfg.task}: actions span [{first.action_space.low.min()}, "
                             f"{first.action_space.high.max()}], not [-1, 1]")
        obs_dim = int(np.prod(first.observation_space.shape))
        super().__init__(cfg, num_obs=obs_dim, num_actions=int(np.prod(first.action_space.shape)))
        self.envs = [first] + [_make_one(cfg.task, cfg.max_episode_length) for _ in range(self.num_envs - 1)]
        self._obs = np.zeros((self.num_envs, obs_dim), dtype=np.float64)
        self.reset()

    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        # One 31-bit seed per reset from the env's generator: episode layouts follow from cfg.seed.
        seeds = torch.randint(0, 2**31 - 1, (len(env_ids),), generator=self.generator, device=self.device).tolist()
        for i, seed in zip(env_ids.tolist(), seeds):
            obs, _ = self.envs[i].reset(seed=int(seed))
            self._obs[i] = np.asarray(obs, dtype=np.float64).reshape(-1)

    def _physics_step(self, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        act = actions.detach().cpu().numpy().astype(np.float64)
        n = self.num_envs
        reward, cost = np.zeros(n), np.zeros(n)
        terminated, success = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        lengths = self.episode_length_buf.tolist()  # one read, not one device sync per env
        for i, env in enumerate(self.envs):
            obs, r, c, term, trunc, info = env.step(act[i])
            self._obs[i] = np.asarray(obs, dtype=np.float64).reshape(-1)
            reward[i], cost[i] = r, c
            success[i] = bool(info.get("goal_met", False))
            # safety_gymnasium truncates early only on a simulation exception (its time limit is the
            # base class's too): end that episode as a terminal rather than bootstrap through it.
            early_truncation = trunc and lengths[i] + 1 < self.max_episode_length
            terminated[i] = bool(term) or bool(early_truncation)
        as_t = lambda a, dtype=torch.float32: torch.as_tensor(a, dtype=dtype, device=self.device)  # noqa: E731
        term_t = as_t(terminated, torch.bool)
        return {
            "reward": as_t(reward),
            "cost": as_t(cost),
            "terminated": term_t,
            "success": as_t(success, torch.bool),
            "reason": torch.where(term_t, int(TerminationReason.FALL), int(TerminationReason.NONE)),
        }

    def _observe(self) -> torch.Tensor:
        return torch.as_tensor(self._obs, dtype=torch.float32, device=self.device).clone()

    def close(self) -> None:
        for env in self.envs:
            env.close()
