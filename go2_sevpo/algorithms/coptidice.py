"""COptiDICE (Lee et al. 2022, "COptiDICE: Offline Constrained Reinforcement Learning via Stationary
Distribution Correction Estimation").

Instead of Q-functions, COptiDICE estimates the stationary-distribution ratio w(s, a) = d_pi(s, a) /
d_D(s, a) of the best policy whose (normalised, discounted) cost stays below a budget c_hat, with an
f-divergence regulariser alpha D_f(d_pi || d_D):
  * advantage-like residual   e(s, a, s') = r - lambda c + gamma mask nu(s') - nu(s)
  * closed-form ratio         w = max(0, (f')^{-1}(e / alpha))
  * nu loss (convex dual)     (1 - gamma) E_{s0}[nu(s0)] + E_D[w e - alpha f(w)]
  * cost upper bound (sec. 4.2): the cost of w under the worst reweighting within a KL ball of radius
    epsilon, min over chi and tau > 0 of
        (1 - gamma) E_{s0}[chi(s0)] + tau log E_D[exp(l / tau)] + tau epsilon,
        l = w (c + gamma mask chi(s') - chi(s)),
    whose worst-case weights softmax(l / tau) give the estimate C_ub = E_D[softmax * w c]
    (epsilon = 0: C_ub = E_D[w c]).
  * lambda >= 0 by gradient ascent on lambda (C_ub - c_hat), c_hat = (1 - gamma) l with l the per-state
    discounted budget (E_{d_pi}[c] = (1 - gamma) J_c).
  * policy extraction: weighted behaviour cloning, max E_D[w(s, a) log pi(a | s)].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from go2_sevpo.algorithms.base import AlgorithmConfig, OfflineAlgorithm, PretrainContext
from go2_sevpo.algorithms.common import discounted_cost_budget, initial_rows
from go2_sevpo.data.sampler import DeviceSampler
from go2_sevpo.networks import TanhGaussianActor, ValueNetwork, adam
from go2_sevpo.utils.errors import ConfigError


@dataclass
class COptiDICEConfig(AlgorithmConfig):
    name: str = "coptidice"
    batch_size: int = 512  # transitions per step
    initial_batch_size: int = 512  # initial states per step (first rows of the dataset's trajectories)
    gamma: float = 0.99
    timeout_is_terminal: bool = False
    reward_scale: float = 0.1  # rewards are multiplied by this inside COptiDICE (keeps e / alpha moderate)
    # ---- networks
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # nu, chi and the actor
    lr: float = 3e-4  # nu, chi and the actor
    scalar_lr: float = 1e-3  # lambda and tau
    # ---- the DICE problem
    f_divergence: str = "softchi"  # softchi | chi2 | kl
    alpha: float = 0.5  # weight of the f-divergence regulariser
    cost_ub_epsilon: float = 0.01  # KL radius of the cost upper bound (0 = the plain estimate E_D[w c])
    cost_threshold: float | None = None  # l in discounted cost per state; None = budget from the task's kappa
    lambda_init: float = 1.0  # initial Lagrange multiplier
    tau_init: float = 1.0  # initial temperature of the upper bound


def f_divergence(kind: str):
    """(f, (f')^{-1}) of the f-divergence (OptiDICE's choices)."""
    if kind == "chi2":
        return (lambda x: 0.5 * (x - 1.0).pow(2)), (lambda y: y + 1.0)
    if kind == "softchi":  # x log x - x + 1 below 1, chi^2 above: finite slope, exp tail
        def f(x):
            return torch.where(x < 1.0, x * torch.log(x.clamp_min(1e-10)) - x + 1.0, 0.5 * (x - 1.0).pow(2))

        return f, (lambda y: torch.where(y < 0.0, torch.exp(y.clamp(max=0.0)), y + 1.0))
    if kind == "kl":
        return (lambda x: x * torch.log(x.clamp_min(1e-10))), (lambda y: torch.exp(y - 1.0))
    raise ConfigError(f"algo.f_divergence={kind!r} is not one of ('softchi', 'chi2', 'kl')")


def dice_residual(rewards, costs, nu, next_nu, mask, lam, gamma: float) -> torch.Tensor:
    """e_{lambda, nu}(s, a, s') = r - lambda c + gamma mask nu(s') - nu(s)."""
    return rewards - lam * costs + gamma * mask * next_nu - nu


def correction_weights(residual: torch.Tensor, alpha: float, f_prime_inv) -> torch.Tensor:
    """w*(s, a) = max(0, (f')^{-1}(e / alpha)): the closed-form maximiser of w e - alpha f(w), w >= 0."""
    return F.relu(f_prime_inv(residual / alpha))


def inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


class COptiDICE(OfflineAlgorithm):
    config_cls = COptiDICEConfig

    def __init__(self, cfg: COptiDICEConfig, obs_dim: int, act_dim: int, total_steps: int, device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, total_steps, device, seed)
        self.f, self.f_prime_inv = f_divergence(cfg.f_divergence)
        if cfg.alpha <= 0 or cfg.cost_ub_epsilon < 0 or cfg.lambda_init <= 0 or cfg.tau_init <= 0:
            raise ConfigError("algo.alpha, algo.lambda_init and algo.tau_init must be > 0, algo.cost_ub_epsilon >= 0")
        dev = self.device
        self.nu = ValueNetwork(obs_dim, cfg.hidden).to(dev)
        self.chi = ValueNetwork(obs_dim, cfg.hidden).to(dev)
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.hidden).to(dev)
        # lambda = softplus(raw) >= 0 and tau = softplus(raw) > 0, as learnable scalars.
        self.lambda_raw = torch.tensor(inverse_softplus(cfg.lambda_init), device=dev, requires_grad=True)
        self.tau_raw = torch.tensor(inverse_softplus(cfg.tau_init), device=dev, requires_grad=True)
        self.nu_optimizer = adam(self.nu.parameters(), lr=cfg.lr)
        self.chi_optimizer = adam(self.chi.parameters(), lr=cfg.lr)
        self.actor_optimizer = adam(self.actor.parameters(), lr=cfg.lr)
        self.lambda_optimizer = adam([self.lambda_raw], lr=cfg.scalar_lr)
        self.tau_optimizer = adam([self.tau_raw], lr=cfg.scalar_lr)
        self.cost_budget = 0.0 if cfg.cost_threshold is None else (1 - cfg.gamma) * float(cfg.cost_threshold)  # c_hat
        self.init_rows: torch.Tensor | None = None

    def pretrain(self, context: PretrainContext) -> None:
        cfg = self.cfg
        if cfg.cost_threshold is None:
            if context.cost_limit is None or context.max_episode_length is None:
                raise ConfigError("coptidice needs a cost threshold: set algo.cost_threshold or the task's cost_limit")
            threshold = discounted_cost_budget(context.cost_limit, cfg.gamma, context.max_episode_length)
            self.cost_budget = (1 - cfg.gamma) * threshold
        self.init_rows = torch.as_tensor(initial_rows(context.dataset), dtype=torch.long, device=self.device)
        context.message(f"coptidice: {self.init_rows.numel()} initial states, normalised cost budget "
                        f"c_hat = {self.cost_budget:.4g}")

    @property
    def lagrange_multiplier(self) -> torch.Tensor:
        return F.softplus(self.lambda_raw)

    def weights(self, batch, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, e) for a batch of transitions with the current nu."""
        cfg = self.cfg
        e = dice_residual(batch.rewards * cfg.reward_scale, batch.costs, self.nu(batch.observations),
                          self.nu(batch.next_observations), batch.bootstrap_mask(cfg.timeout_is_terminal), lam,
                          cfg.gamma)
        return correction_weights(e, cfg.alpha, self.f_prime_inv), e

    def update(self, sampler: DeviceSampler, step: int) -> dict[str, torch.Tensor | float]:
        if self.init_rows is None:
            raise RuntimeError("COptiDICE.update before pretrain: the initial states are not known yet")
        cfg = self.cfg
        batch = sampler.sample(cfg.batch_size)
        init_obs = sampler.sample(cfg.initial_batch_size, rows=self.init_rows).observations
        mask = batch.bootstrap_mask(cfg.timeout_is_terminal)
        lam = self.lagrange_multiplier.detach()

        # 1. nu: the dual of the regularised LP over stationary distributions.
        w, e = self.weights(batch, lam)
        nu_loss = (1 - cfg.gamma) * self.nu(init_obs).mean() + (w * e - cfg.alpha * self.f(w)).mean()
        self.nu_optimizer.zero_grad(set_to_none=True)
        nu_loss.backward()
        self.nu_optimizer.step()
        w = w.detach()

        # 2. The cost of w, optionally as a KL-ball upper bound (chi, tau), and lambda's ascent step.
        if cfg.cost_ub_epsilon > 0:
            tau = F.softplus(self.tau_raw)
            ell = w * (batch.costs + cfg.gamma * mask * self.chi(batch.next_observations) - self.chi(batch.observations))
            log_mean_exp = torch.logsumexp(ell / tau, 0) - math.log(ell.shape[0])
            bound = (1 - cfg.gamma) * self.chi(init_obs).mean() + tau * log_mean_exp + tau * cfg.cost_ub_epsilon
            self.chi_optimizer.zero_grad(set_to_none=True)
            self.tau_optimizer.zero_grad(set_to_none=True)
            bound.backward()
            self.chi_optimizer.step()
            self.tau_optimizer.step()
            worst_case = torch.softmax(ell.detach() / tau.detach(), 0) * ell.shape[0]
            cost_estimate = (worst_case * w * batch.costs).mean()
        else:
            cost_estimate = (w * batch.costs).mean()
        lambda_loss = self.lagrange_multiplier * (self.cost_budget - cost_estimate.detach())
        self.lambda_optimizer.zero_grad(set_to_none=True)
        lambda_loss.backward()
        self.lambda_optimizer.step()

        # 3. Policy extraction: weighted BC with the updated nu.
        with torch.no_grad():
            w_actor, _ = self.weights(batch, lam)
        actor_loss = -(w_actor * self.actor.log_prob(batch.observations, batch.actions)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return {
            "loss_nu": nu_loss.detach(),
            "loss_actor": actor_loss.detach(),
            "cost_estimate": cost_estimate.detach(),
            "lagrange_multiplier": self.lagrange_multiplier.detach(),
            "ub_temperature": F.softplus(self.tau_raw).detach(),
            "weight_mean": w.mean(),
            "weight_max": w.max(),
            "residual_mean": e.detach().mean(),
        }

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.actor.deterministic(obs)

    # ----------------------------------------------------------------- state
    _MODULES = ("nu", "chi", "actor", "nu_optimizer", "chi_optimizer", "actor_optimizer", "lambda_optimizer",
                "tau_optimizer")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "lambda_raw": self.lambda_raw.detach().clone(),
                "tau_raw": self.tau_raw.detach().clone(), "cost_budget": self.cost_budget}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # The scalars are updated in place so the optimisers keep pointing at them.
        with torch.no_grad():
            self.lambda_raw.copy_(state["lambda_raw"])
            self.tau_raw.copy_(state["tau_raw"])
        super().load_state_dict(state)
        self.cost_budget = float(state["cost_budget"])
