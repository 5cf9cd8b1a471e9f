"""Behaviour cloning baselines (DSRL / OSRL's BC-All and BC-Safe).

BC-all regresses a deterministic tanh actor onto every dataset action (MSE). BC-safe does the same on
the trajectories whose undiscounted episode cost is <= the task's episode cost limit kappa: the
sampler draws only from those rows (`safe_trajectory_rows`), so the filter costs nothing per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from go2_sevpo.algorithms.base import AlgorithmConfig, OfflineAlgorithm, PretrainContext
from go2_sevpo.algorithms.common import safe_trajectory_rows
from go2_sevpo.data.sampler import DeviceSampler
from go2_sevpo.networks import DeterministicActor, adam
from go2_sevpo.utils.errors import ConfigError


@dataclass
class BCConfig(AlgorithmConfig):
    name: str = "bc_all"
    batch_size: int = 256  # rows per step
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # actor MLP
    lr: float = 1e-3  # Adam (OSRL's BC)
    safe_only: bool = False  # True = BC-safe: clone only trajectories with episode cost <= cost_limit
    cost_limit: float | None = None  # BC-safe's episode cost limit; None = the task's kappa


@dataclass
class BCSafeConfig(BCConfig):
    name: str = "bc_safe"
    safe_only: bool = True


class BC(OfflineAlgorithm):
    config_cls = BCConfig
    _MODULES = ("actor", "optimizer")

    def __init__(self, cfg: BCConfig, obs_dim: int, act_dim: int, total_steps: int, device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, total_steps, device, seed)
        if cfg.batch_size < 1:
            raise ConfigError("algo.batch_size must be >= 1")
        self.actor = DeterministicActor(obs_dim, act_dim, cfg.hidden).to(self.device)
        self.optimizer = adam(self.actor.parameters(), lr=cfg.lr)
        self.rows: torch.Tensor | None = None  # BC-safe's row subset (recomputed by pretrain; a view of the data)
        self.safe_fraction = 1.0

    def pretrain(self, context: PretrainContext) -> None:
        if not self.cfg.safe_only:
            return
        limit = self.cfg.cost_limit if self.cfg.cost_limit is not None else context.cost_limit
        if limit is None:
            raise ConfigError("bc_safe needs an episode cost limit: set algo.cost_limit or the task's cost_limit")
        rows = safe_trajectory_rows(context.dataset, float(limit))
        self.rows = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        self.safe_fraction = rows.size / len(context.dataset)
        context.message(f"bc_safe: cloning {rows.size} of {len(context.dataset)} rows "
                        f"(trajectories with episode cost <= {limit})")

    def update(self, sampler: DeviceSampler, step: int) -> dict[str, torch.Tensor | float]:
        if self.cfg.safe_only and self.rows is None:
            raise RuntimeError("BC-safe.update before pretrain: the safe rows are not known yet")
        batch = sampler.sample(self.cfg.batch_size, rows=self.rows)
        loss = (self.actor(batch.observations) - batch.actions).pow(2).sum(-1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss_actor": loss.detach(), "cloned_row_fraction": self.safe_fraction}

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.actor(obs)

