"""The one batched environment interface shared by PPO (rsl-rl), data collection and evaluation.

Every environment holds `num_envs` copies as torch tensors on one device and auto-resets the copies
whose episode ended. `step` follows rsl-rl-lib's `VecEnv` contract, so `OnPolicyRunner` can train on
any env of the registry unchanged; the safe-RL signals ride in `extras`:

    obs, reward, done, extras = env.step(action)
    extras["costs"]              (N,) float   cost of this step
    extras["terminated"]         (N,) bool    true terminal (failure or goal): do not bootstrap
    extras["time_outs"]          (N,) bool    truncation by the time limit: bootstrap (rsl-rl key)
    extras["success"]            (N,) bool    the task was achieved on this step
    extras["termination_reason"] (N,) int8    a `TerminationReason` code (NONE while running)
    extras["final_observations"] (N, obs_dim) the actor observation reached by this step, before an
                                              auto-reset replaced it (the dataset's next_observation)
    extras["log"]                dict         scalars for loggers

`done = terminated | time_outs`. Observations are a TensorDict with the group "policy" (what the
actor and the offline dataset see) and "critic" (policy obs plus privileged extras, for PPO).
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from dataclasses import dataclass

import torch
from rsl_rl.env import VecEnv
from tensordict import TensorDict


class TerminationReason(enum.IntEnum):
    """Why an episode ended; stored per step in `extras["termination_reason"]` and in datasets."""

    NONE = 0  # still running
    SUCCESS = 1  # reached the goal / destination
    TIME_OUT = 2  # hit the episode step limit (truncation, not terminal)
    OUT_OF_BOUNDS = 3  # left the arena
    FALL = 4  # legged robot fell (cost event, terminal)
    COLLISION = 5  # a non-foot body touched the terrain


@dataclass
class EnvConfig:
    """Fields every environment config has (task configs subclass this)."""

    name: str = "???"
    num_envs: int = 1
    device: str = "cpu"
    seed: int = 0
    max_episode_length: int = 300
    # Evaluation's episode cost limit kappa (DSRL normalised cost and failure rate use it).
    cost_limit: float = 0.0
    # Start-state distribution: task-defined names (reach_avoid: paper | hazard | random | ...).
    # `start` is what data collection uses; `eval_start` what the evaluator uses ("" = same).
    start: str = "random"
    eval_start: str = ""

    def check_dataset(self, path: str, attrs: dict) -> None:
        """Refuse, in one line (ValueError), a dataset made on another variant of this task; a task
        whose variants differ in more than the observation size overrides this."""


class BatchedEnv(VecEnv):
    """Base class: subclasses implement `_reset_idx`, `_physics_step` and `_observe`."""

    num_obs: int
    num_privileged_obs: int

    def __init__(self, cfg: EnvConfig, num_obs: int, num_actions: int, num_privileged_obs: int | None = None):
        self.cfg = cfg
        self.device = torch.device(resolve_device(cfg.device))
        self.num_envs = int(cfg.num_envs)
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {self.num_envs}")
        self.num_obs = num_obs
        self.num_actions = num_actions
        self.num_privileged_obs = num_privileged_obs or num_obs
        self.max_episode_length = int(cfg.max_episode_length)
        self.episode_length_buf = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(cfg.seed))
        self.obs_buf = torch.zeros(self.num_envs, num_obs, device=self.device)

    # ----------------------------------------------------------------- subclass hooks
    @abstractmethod
    def _reset_idx(self, env_ids: torch.Tensor) -> None:
        """Sample fresh start states for `env_ids` (a long tensor)."""

    @abstractmethod
    def _physics_step(self, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Advance all envs by one policy step; return reward, cost, terminated, success, reason."""

    @abstractmethod
    def _observe(self) -> torch.Tensor:
        """Actor observation (N, num_obs) of the current state."""

    @staticmethod
    def constraint_value(obs: torch.Tensor) -> torch.Tensor | None:
        """A continuous constraint value h of (..., num_obs) observations, > 0 exactly where the step
        has cost (FISOR's toy signal), or None where the task defines none (the default)."""
        return None

    def _privileged_observe(self, obs: torch.Tensor) -> torch.Tensor:
        """Critic observation for PPO; the actor observation unless a task adds privileged terms."""
        return obs

    # ----------------------------------------------------------------- public API
    def reset(self, env_ids: torch.Tensor | None = None) -> TensorDict:
        """Reset `env_ids` (all if None) and return the observation TensorDict of all envs."""
        if env_ids is None:
            env_ids = torch.arange(self.num_envs, device=self.device)
        self._reset_idx(env_ids)
        self.episode_length_buf[env_ids] = 0
        self.obs_buf = self._observe()
        return self.get_observations()

    def get_observations(self) -> TensorDict:
        return TensorDict(
            {"policy": self.obs_buf, "critic": self._privileged_observe(self.obs_buf)},
            batch_size=[self.num_envs],
            device=self.device,
        )

    def step(self, actions: torch.Tensor) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict]:
        actions = actions.to(self.device, torch.float32).clamp(-1.0, 1.0)
        out = self._physics_step(actions)
        self.episode_length_buf += 1
        terminated = out["terminated"]
        time_outs = (self.episode_length_buf >= self.max_episode_length) & ~terminated
        done = terminated | time_outs
        reason = out["reason"].clone()
        reason[time_outs] = TerminationReason.TIME_OUT
        final_obs = self._observe()
        # Auto-reset without a host sync: reset every env whose flag is set. The index tensor has a
        # data-dependent size, which is cheap on CPU; CUDA tasks may override with masked resets.
        reset_ids = done.nonzero(as_tuple=False).squeeze(-1)
        if reset_ids.numel() > 0:
            self._reset_idx(reset_ids)
            self.episode_length_buf[reset_ids] = 0
            self.obs_buf = torch.where(done[:, None], self._observe(), final_obs)
        else:
            self.obs_buf = final_obs
        extras = {
            "costs": out["cost"],
            "terminated": terminated,
            "time_outs": time_outs,
            "success": out["success"],
            "termination_reason": reason.to(torch.int8),
            "final_observations": final_obs,
            "log": out.get("log", {}),
        }
        return self.get_observations(), out["reward"], done, extras

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))


def resolve_device(device: str) -> str:
    """'auto' picks CUDA when present; asking for CUDA without a GPU is a clear error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device} was requested but no CUDA GPU is available (use device=cpu)")
    return device
