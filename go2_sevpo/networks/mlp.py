"""Plain MLPs, the observation normaliser and target-network updates shared by every algorithm."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "mish": nn.Mish, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation '{name}'; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class MLP(nn.Sequential):
    """Linear -> act -> ... -> Linear. `layer_norm` adds LayerNorm before each hidden activation."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int], act: str = "relu",
                 layer_norm: bool = False):
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers.append(nn.Linear(d_in, d_out))
            if layer_norm:
                layers.append(nn.LayerNorm(d_out))
            layers.append(activation(act))
        layers.append(nn.Linear(dims[-1], out_dim))
        super().__init__(*layers)


class ValueNetwork(nn.Module):
    """V(s): an MLP with one output, returned as shape (B,)."""

    def __init__(self, obs_dim: int, hidden: Sequence[int], act: str = "relu"):
        super().__init__()
        self.net = MLP(obs_dim, 1, hidden, act)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


class ObservationNormalizer(nn.Module):
    """Fixed (mean, std) from the dataset; a module so its buffers travel with the checkpoint and the
    device. Observations with (near) zero spread are only centred."""

    def __init__(self, obs_dim: int, min_std: float = 1e-3):
        super().__init__()
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    @torch.no_grad()
    def fit(self, observations: torch.Tensor) -> "ObservationNormalizer":
        self.mean.copy_(observations.mean(0))
        self.std.copy_(observations.std(0).clamp_min(self.min_std))
        return self

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging target <- (1 - tau) target + tau source, one fused op over all parameters."""
    t_params = list(target.parameters())
    s_params = list(source.parameters())
    torch._foreach_lerp_(t_params, s_params, tau)


@contextmanager
def dropout_off(module: nn.Module):
    """Evaluate `module` in eval mode (no dropout) inside the block, then restore its mode. Autograd
    still runs: the SEVPO trust region (eq. 15) differentiates the online actor this way."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def detached_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters and buffers, detached, by name: for torch.func.functional_call, so a
    call differentiates its inputs but keeps no gradient for the module (a frozen critic, a compiled
    graph shared by several copies of one network)."""
    return {k: v.detach() for k, v in [*module.named_parameters(), *module.named_buffers()]}


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    torch._foreach_copy_(list(target.parameters()), list(source.parameters()))
