"""Critic ensembles evaluated as ONE batched module: each layer holds the weights of all members as
an (E, in, out) tensor and runs one batched matmul, so E critics cost one kernel per layer instead
of E (the JAX code's vmap over members, written out)."""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn

from go2_sevpo.networks.mlp import activation


class EnsembleLinear(nn.Module):
    """E independent Linear layers. Input (E, B, in) -> (E, B, out); an (B, in) input is shared by all
    members. Each member is initialised exactly like `nn.Linear` (Kaiming-uniform, fan-in bias)."""

    def __init__(self, num_members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)
        # nn.Linear's default init (kaiming_uniform with a=sqrt(5)) reduces to U(-1/sqrt(in), 1/sqrt(in)).
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.weight.shape[0], -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Sequential):
    def __init__(self, num_members: int, in_dim: int, out_dim: int, hidden: Sequence[int], act: str = "relu"):
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [EnsembleLinear(num_members, d_in, d_out), activation(act)]
        layers.append(EnsembleLinear(num_members, dims[-1], out_dim))
        super().__init__(*layers)


class CriticEnsemble(nn.Module):
    """Q_1..Q_E(s, a) -> (E, B). Reduce with `.min(0)` (pessimistic reward) or `.max(0)` (pessimistic
    cost) at the call site, where the direction of pessimism is part of the algorithm."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], num_members: int = 2, act: str = "relu"):
        super().__init__()
        self.num_members = num_members
        self.net = EnsembleMLP(num_members, obs_dim + act_dim, 1, hidden, act)

    def members(self, index: slice) -> "CriticEnsemble":
        """A new ensemble holding copies of the members `index` (same layers and weights; draws nothing
        from the random stream, so networks initialised after it are unchanged)."""
        out = copy.deepcopy(self)
        for layer in out.modules():
            if isinstance(layer, EnsembleLinear):
                layer.weight = nn.Parameter(layer.weight.detach()[index].clone())
                layer.bias = nn.Parameter(layer.bias.detach()[index].clone())
        out.num_members = out.net[0].weight.shape[0]
        return out

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)
