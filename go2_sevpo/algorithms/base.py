"""What every offline algorithm provides to the one trainer loop and the one evaluator (rsl_rl style:
the algorithm owns its networks, losses and acting; the runner owns the loop, logging, checkpoints).

    algo = Algo(cfg, obs_dim, act_dim, total_steps, device, seed)
    algo.pretrain(context)            # optional: e.g. SEVPO's stage 1 (cached on disk)
    for step in range(total_steps):
        scalars = algo.update(sampler, step)   # one gradient step; detached 0-d tensors, no .item()
    actions = algo.act(obs, generator)         # batched over all envs, normalised observations

Observations reaching an algorithm are already normalised (the sampler and the policy wrapper apply
the dataset normaliser); the algorithm never sees raw observations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from go2_sevpo.data.format import OfflineDataset
from go2_sevpo.data.sampler import DeviceSampler


@dataclass
class AlgorithmConfig:
    name: str = "???"  # registry name of the algorithm class (configs/algo/*.yaml may share one)


@dataclass
class PretrainContext:
    """What a pre-training stage may use: the data, where to cache, how to report progress."""

    dataset: OfflineDataset
    sampler: DeviceSampler
    fingerprint: str  # dataset content hash: cache keys must include it
    cache_dir: str  # absolute folder for cross-run caches ("" disables caching)
    log: Callable[[str, dict[str, torch.Tensor], int], None]  # (prefix, scalars, step) -> None
    message: Callable[[str], None] = print  # one-line progress notes
    log_interval: int = 1000  # steps between `log` calls
    show_progress: bool = True
    # Trainer settings that change what a pre-training stage computes (e.g. observation
    # normalisation); cache keys must include them.
    cache_key_extra: dict = field(default_factory=dict)
    # The task's episode cost limit (kappa) and episode length, for algorithms whose data filter or
    # cost threshold is defined by them (BC-safe, CPQ, COptiDICE); None when unknown.
    cost_limit: float | None = None
    max_episode_length: int | None = None
    # Where a long pre-training stage checkpoints its progress (atomically, every `save_interval` of
    # its steps) so that the same command resumes it after a kill; "" = no progress checkpoints.
    progress_path: str = ""
    save_interval: int = 1000
    # True once SIGTERM / SIGINT asked the job to stop: a long stage saves its progress and raises
    # go2_sevpo.utils.jobs.Preempted (the trainer's graceful stop).
    stop_requested: Callable[[], bool] = lambda: False
    # The task the data were made on (env registry name): for task-defined signals such as FISOR's
    # continuous constraint value; "" when unknown.
    env_name: str = ""


class OfflineAlgorithm(ABC):
    config_cls: type = AlgorithmConfig
    # Attributes with a state_dict of their own (networks, target copies, optimisers, schedulers): the
    # checkpoint holds each under its name. Subclasses add plain values (multipliers, flags) by
    # extending state_dict / load_state_dict through super().
    _MODULES: tuple[str, ...] = ()

    def __init__(self, cfg: Any, obs_dim: int, act_dim: int, total_steps: int, device: torch.device, seed: int):
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.total_steps, self.device = int(total_steps), torch.device(device)
        # The training generator drives every draw inside `update` (noise, diffusion time steps,
        # policy samples) so a run is reproducible and its stream is checkpointed.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed) + 1)

    def pretrain(self, context: PretrainContext) -> None:
        """Work before the main loop (may be cached). Its products must be in `state_dict`."""

    @abstractmethod
    def update(self, sampler: DeviceSampler, step: int) -> dict[str, torch.Tensor | float]:
        """One training step. Returns scalars to log: detached 0-d tensors kept on the device (the
        trainer averages them and syncs once per log interval) or plain Python floats."""

    @abstractmethod
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Actions (B, act_dim) for normalised observations (B, obs_dim), one batched call."""

    def safe_set(self, obs: torch.Tensor) -> torch.Tensor | None:
        """Bool (B,) membership of the learned safe region, or None when the algorithm has none."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-for-bit: networks, optimisers, schedulers, generators."""
        state = {name: getattr(self, name).state_dict() for name in self._MODULES}
        state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._MODULES:
            getattr(self, name).load_state_dict(state[name])
        self.generator.set_state(state["generator"])

    def train_mode(self, training: bool) -> None:
        """Switch dropout etc.; evaluation calls train_mode(False) and restores afterwards."""
