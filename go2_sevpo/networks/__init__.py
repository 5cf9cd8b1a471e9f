"""Shared networks: MLPs and value heads, batched critic ensembles, the diffusion actor, MLP policies,
the conditional VAE (CPQ), the fused Adam every algorithm uses."""

from go2_sevpo.networks.diffusion import DiffusionActor, DiffusionConfig, vp_beta_schedule
from go2_sevpo.networks.ensemble import CriticEnsemble, EnsembleLinear, EnsembleMLP
from go2_sevpo.networks.mlp import (MLP, ObservationNormalizer, ValueNetwork, detached_tensors, dropout_off,
                                   hard_update, soft_update)
from go2_sevpo.networks.optim import adam
from go2_sevpo.networks.policy import DeterministicActor, TanhGaussianActor
from go2_sevpo.networks.vae import ConditionalVAE

__all__ = [
    "ConditionalVAE",
    "CriticEnsemble",
    "DeterministicActor",
    "DiffusionActor",
    "DiffusionConfig",
    "EnsembleLinear",
    "EnsembleMLP",
    "MLP",
    "ObservationNormalizer",
    "TanhGaussianActor",
    "adam",
    "detached_tensors",
    "dropout_off",
    "ValueNetwork",
    "hard_update",
    "soft_update",
    "vp_beta_schedule",
]
