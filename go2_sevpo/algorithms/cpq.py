"""CPQ (Xu, Zhan, Zhu 2022, "Constraints Penalized Q-Learning for Safe Offline Reinforcement Learning").

A SAC-style actor-critic with two changes against extrapolation into unsafe actions:
  * OOD cost penalty: a conditional VAE models the data's actions; actions sampled from the policy
    that the VAE scores as out-of-distribution form nu(a | s), and the cost critic's loss gets the
    Lagrangian term - alpha (E_{s~D, a~nu}[Qc(s, a)] - l_ood), alpha >= 0 raised by dual ascent until
    those actions' cost values exceed l_ood: unseen actions look unsafe.
  * Constraints-penalised Bellman operator: Qr(s, a) <- r + gamma E_{a'~pi}[1{Qc(s', a') <= l} Qr(s', a')],
    and the actor maximises E[1{Qc(s, a) <= l} Qr(s, a)], a ~ pi(s) (reparameterised).
l is the per-state discounted cost budget (`discounted_cost_budget` of the task's episode limit, or
`cost_threshold`); l_ood = ood_threshold_scale * l.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from go2_sevpo.algorithms.base import AlgorithmConfig, OfflineAlgorithm, PretrainContext
from go2_sevpo.algorithms.common import discounted_cost_budget
from go2_sevpo.data.sampler import DeviceSampler, TransitionBatch
from go2_sevpo.networks import ConditionalVAE, CriticEnsemble, TanhGaussianActor, soft_update, adam
from go2_sevpo.utils.errors import ConfigError


@dataclass
class CPQConfig(AlgorithmConfig):
    name: str = "cpq"
    batch_size: int = 512  # rows per step (every network sees the same batch)
    gamma: float = 0.99
    timeout_is_terminal: bool = False
    reward_scale: float = 1.0  # rewards are multiplied by this inside CPQ
    # ---- networks
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    num_critics: int = 2  # per ensemble: Qr uses min over members, Qc max
    vae_hidden: list[int] = field(default_factory=lambda: [256, 256])
    vae_latent_dim: int = 0  # 0 = 2 * act_dim
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    vae_lr: float = 1e-3
    critic_tau: float = 0.005  # Polyak factor of both target critics
    entropy_weight: float = 0.0  # SAC temperature on log pi in the actor loss (0 = the paper's objective)
    # ---- the cost threshold l (per-state discounted cost)
    cost_threshold: float | None = None  # None = discounted_cost_budget(task's kappa, gamma, episode length)
    # ---- OOD detection and the cost penalty
    vae_kl_weight: float = 0.5  # weight of the KL term in the VAE loss
    ood_score: str = "elbo"  # elbo: negative ELBO at the posterior mean | kl: encoder KL (OSRL)
    ood_samples: int = 10  # actions drawn from pi per state to look for OOD actions
    ood_quantile: float = 0.9  # OOD = score above this quantile of the batch's DATASET-action scores
    ood_threshold_scale: float = 1.5  # l_ood = scale * l: OOD actions are pushed above the threshold
    penalty_init: float = 0.0  # alpha at step 0
    # Dual-ascent step of alpha. Must be > 0: with a fixed alpha the penalty is linear in Qc on actions
    # no Bellman term anchors, so their cost values grow without bound (seen in a unit test).
    penalty_lr: float = 1e-3
    penalty_max: float = 1.0  # alpha is clipped to [0, penalty_max]


def ood_mask(scores: torch.Tensor, data_scores: torch.Tensor, quantile: float) -> torch.Tensor:
    """Float 0/1 mask of the actions whose VAE score exceeds the `quantile` of the dataset actions'."""
    return (scores > torch.quantile(data_scores, quantile)).float()


def ood_penalty(qc_ood: torch.Tensor, ood: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean Qc over the OOD actions, that mean minus l_ood); the mean is l_ood when no action is OOD,
    so the penalty and alpha's step vanish. qc_ood: (E, M) member values, ood: (M,) mask."""
    count = ood.sum()
    mean = (qc_ood.mean(0) * ood).sum() / count.clamp_min(1.0)
    mean = torch.where(count > 0, mean, torch.full_like(mean, threshold))
    return mean, mean - threshold


class CPQ(OfflineAlgorithm):
    config_cls = CPQConfig

    def __init__(self, cfg: CPQConfig, obs_dim: int, act_dim: int, total_steps: int, device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, total_steps, device, seed)
        if cfg.ood_score not in ("elbo", "kl"):
            raise ConfigError(f"algo.ood_score={cfg.ood_score!r} is not one of ('elbo', 'kl')")
        if not 0.0 < cfg.ood_quantile < 1.0 or cfg.ood_samples < 1 or cfg.penalty_lr <= 0:
            raise ConfigError("algo.ood_quantile must lie in (0, 1), algo.ood_samples be >= 1, algo.penalty_lr > 0")
        dev = self.device
        self.actor = TanhGaussianActor(obs_dim, act_dim, cfg.actor_hidden).to(dev)
        self.reward_critic = CriticEnsemble(obs_dim, act_dim, cfg.critic_hidden, cfg.num_critics).to(dev)
        self.reward_critic_target = copy.deepcopy(self.reward_critic).requires_grad_(False)
        self.cost_critic = CriticEnsemble(obs_dim, act_dim, cfg.critic_hidden, cfg.num_critics).to(dev)
        self.cost_critic_target = copy.deepcopy(self.cost_critic).requires_grad_(False)
        self.vae = ConditionalVAE(obs_dim, act_dim, cfg.vae_hidden, cfg.vae_latent_dim or 2 * act_dim).to(dev)
        self.actor_optimizer = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.reward_critic_optimizer = adam(self.reward_critic.parameters(), lr=cfg.critic_lr)
        self.cost_critic_optimizer = adam(self.cost_critic.parameters(), lr=cfg.critic_lr)
        self.vae_optimizer = adam(self.vae.parameters(), lr=cfg.vae_lr)
        self.penalty = torch.tensor(float(cfg.penalty_init), device=dev)  # alpha, the Lagrange multiplier
        self.threshold = 0.0 if cfg.cost_threshold is None else float(cfg.cost_threshold)  # l
        self.prepared = cfg.cost_threshold is not None

    def pretrain(self, context: PretrainContext) -> None:
        if self.cfg.cost_threshold is None:
            if context.cost_limit is None or context.max_episode_length is None:
                raise ConfigError("cpq needs a cost threshold: set algo.cost_threshold or the task's cost_limit")
            self.threshold = discounted_cost_budget(context.cost_limit, self.cfg.gamma, context.max_episode_length)
        context.message(f"cpq: cost threshold l = {self.threshold:.4g} (discounted cost per state)")
        self.prepared = True

    # ----------------------------------------------------------------- critic views
    def q_values(self, obs, actions, target: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Pessimistic (Qr, Qc): min over reward members, max over cost members, (B,) each."""
        qr = (self.reward_critic_target if target else self.reward_critic)(obs, actions).min(0).values
        qc = (self.cost_critic_target if target else self.cost_critic)(obs, actions).max(0).values
        return qr, qc

    # ----------------------------------------------------------------- training
    def update(self, sampler: DeviceSampler, step: int) -> dict[str, torch.Tensor | float]:
        if not self.prepared:
            raise RuntimeError("CPQ.update before pretrain: the cost threshold is not known yet")
        batch = sampler.sample(self.cfg.batch_size)
        out = self._update_vae(batch)
        out.update(self._update_critics(batch))
        out.update(self._update_actor(batch))
        soft_update(self.reward_critic_target, self.reward_critic, self.cfg.critic_tau)
        soft_update(self.cost_critic_target, self.cost_critic, self.cfg.critic_tau)
        return out

    def _update_vae(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        loss = self.vae.loss(batch.observations, batch.actions, self.generator, self.cfg.vae_kl_weight)
        self.vae_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.vae_optimizer.step()
        return {"loss_vae": loss.detach()}

    def ood_actions(self, obs: torch.Tensor, data_actions: torch.Tensor):
        """(repeated obs, policy actions, OOD mask) for `ood_samples` actions per state."""
        cfg = self.cfg
        with torch.no_grad():
            obs_rep = obs.repeat(cfg.ood_samples, 1)
            sampled, _ = self.actor.rsample(obs_rep, self.generator)
            scores = self.vae.ood_score(obs_rep, sampled, cfg.ood_score, cfg.vae_kl_weight)
            data_scores = self.vae.ood_score(obs, data_actions, cfg.ood_score, cfg.vae_kl_weight)
            return obs_rep, sampled, ood_mask(scores, data_scores, cfg.ood_quantile)

    def _update_critics(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, actions = batch.observations, batch.actions
        mask = batch.bootstrap_mask(cfg.timeout_is_terminal)
        with torch.no_grad():
            next_actions, _ = self.actor.rsample(batch.next_observations, self.generator)
            next_qr, next_qc = self.q_values(batch.next_observations, next_actions, target=True)
            # Constraints-penalised Bellman operator: no reward is bootstrapped through unsafe actions.
            reward_target = batch.rewards * cfg.reward_scale + cfg.gamma * mask * (next_qc <= self.threshold) * next_qr
            cost_target = batch.costs + cfg.gamma * mask * next_qc
        reward_loss = (self.reward_critic(obs, actions) - reward_target).pow(2).mean(1).sum()
        self.reward_critic_optimizer.zero_grad(set_to_none=True)
        reward_loss.backward()
        self.reward_critic_optimizer.step()

        # Cost critic: Bellman error minus alpha (E_nu[Qc] - l_ood), nu = the policy's OOD actions.
        obs_rep, sampled, ood = self.ood_actions(obs, actions)
        l_ood = cfg.ood_threshold_scale * self.threshold
        qc = self.cost_critic(obs, actions)
        qc_ood_mean, gap = ood_penalty(self.cost_critic(obs_rep, sampled), ood, l_ood)
        bellman = (qc - cost_target).pow(2).mean(1).sum()
        cost_loss = bellman - self.penalty * gap
        self.cost_critic_optimizer.zero_grad(set_to_none=True)
        cost_loss.backward()
        self.cost_critic_optimizer.step()
        # Dual ascent: alpha grows while the OOD actions' cost value is below l_ood, shrinks above it.
        self.penalty = (self.penalty - cfg.penalty_lr * gap.detach()).clamp(0.0, cfg.penalty_max)
        return {
            "loss_reward_critic": reward_loss.detach(),
            "loss_cost_critic_bellman": bellman.detach(),
            "reward_target_mean": reward_target.mean(),
            "cost_q_mean": qc.detach().mean(),
            "ood_cost_q_mean": qc_ood_mean.detach(),
            "ood_fraction": ood.mean(),
            "penalty": self.penalty.clone(),
        }

    def _update_actor(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        obs = batch.observations
        self.reward_critic.requires_grad_(False)
        self.cost_critic.requires_grad_(False)
        actions, log_prob = self.actor.rsample(obs, self.generator)
        qr, qc = self.q_values(obs, actions)
        admissible = (qc <= self.threshold).float()
        loss = (self.cfg.entropy_weight * log_prob - admissible * qr).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        self.reward_critic.requires_grad_(True)
        self.cost_critic.requires_grad_(True)
        return {"loss_actor": loss.detach(), "admissible_fraction": admissible.mean(),
                "policy_log_prob": log_prob.detach().mean()}

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.actor.deterministic(obs)

    # ----------------------------------------------------------------- state
    _MODULES = ("actor", "reward_critic", "reward_critic_target", "cost_critic", "cost_critic_target", "vae",
                "actor_optimizer", "reward_critic_optimizer", "cost_critic_optimizer", "vae_optimizer")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "penalty": self.penalty.clone(), "threshold": self.threshold}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.penalty = state["penalty"].to(self.device).clone()
        self.threshold = float(state["threshold"])
