"""Uniform random actions in [-1, 1]^m: the papers' low-quality data source for reach-avoid."""

from __future__ import annotations

import torch


class RandomPolicy:
    def __init__(self, num_actions: int, generator: torch.Generator | None = None):
        self.num_actions = num_actions
        self.generator = generator

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        shape = (obs.shape[0], self.num_actions)
        return 2.0 * torch.rand(shape, generator=self.generator, device=obs.device) - 1.0
