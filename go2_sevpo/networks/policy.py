"""MLP policies of the non-diffusion baselines: a deterministic tanh actor (BC) and a tanh-squashed
Gaussian (CPQ, COptiDICE). Actions live in [-1, 1]^m."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from go2_sevpo.networks.mlp import MLP


class DeterministicActor(nn.Module):
    """a = tanh(MLP(s))."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.net = MLP(obs_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class TanhGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(mu(s), sigma(s)^2); log-probabilities include the tanh Jacobian."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.net = MLP(obs_dim, 2 * act_dim, hidden)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp()

    @staticmethod
    def _log_prob_pre_tanh(u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        gauss = -0.5 * ((u - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)
        # log |d tanh(u) / du| = log(1 - tanh(u)^2), written stably as 2 (log 2 - u - softplus(-2u)).
        jacobian = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return (gauss - jacobian).sum(-1)

    def rsample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample and its log-probability, (B, A) and (B,)."""
        mean, std = self.distribution(obs)
        u = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
        return torch.tanh(u), self._log_prob_pre_tanh(u, mean, std)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
        """log pi(a | s) of given actions (clipped inside (-1, 1) so atanh stays finite; dataset
        actions often sit exactly on the bounds)."""
        mean, std = self.distribution(obs)
        u = torch.atanh(actions.clamp(-1.0 + eps, 1.0 - eps))
        return self._log_prob_pre_tanh(u, mean, std)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.distribution(obs)[0])
