"""A state-conditional VAE of the behaviour policy's actions (BCQ / CPQ): encoder q(z | s, a), decoder
a = tanh(D(s, z)). CPQ scores how far an action is from the data by the VAE (negative ELBO or KL)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from go2_sevpo.networks.mlp import MLP


class ConditionalVAE(nn.Module):
    LOG_STD_MIN, LOG_STD_MAX = -4.0, 15.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = MLP(obs_dim + act_dim, 2 * latent_dim, hidden)
        self.decoder = MLP(obs_dim + latent_dim, act_dim, hidden)

    def encode(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.encoder(torch.cat([obs, actions], -1)).chunk(2, dim=-1)
        return mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp()

    def decode(self, obs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(torch.cat([obs, z], -1)))

    @staticmethod
    def kl(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, std^2) || N(0, I)) per row, (B,)."""
        return 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - 2.0 * std.log()).sum(-1)

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator,
             kl_weight: float) -> torch.Tensor:
        """Negative ELBO with a weighted KL: ||a - D(s, z)||^2 + kl_weight KL, z ~ q(z | s, a)."""
        mean, std = self.encode(obs, actions)
        z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
        recon = self.decode(obs, z)
        return (recon - actions).pow(2).sum(-1).mean() + kl_weight * self.kl(mean, std).mean()

    def ood_score(self, obs: torch.Tensor, actions: torch.Tensor, kind: str = "elbo", kl_weight: float = 1.0) -> torch.Tensor:
        """How unlike the data an action is, (B,), larger = further out.
        elbo: the negative ELBO at the posterior mean, ||a - D(s, mu)||^2 + kl_weight KL (a density proxy);
        kl: the encoder's KL to the prior alone (OSRL's CPQ)."""
        mean, std = self.encode(obs, actions)
        kl = self.kl(mean, std)
        if kind == "kl":
            return kl
        return (self.decode(obs, mean) - actions).pow(2).sum(-1) + kl_weight * kl
