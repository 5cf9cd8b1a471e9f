"""CCAC (Guo, Zhou, Wang, Li 2025, "Constraint-Conditioned Actor-Critic for Offline Safe Reinforcement
Learning", ICLR 2025). Facts from the authors' code (an OSRL fork: `osrl/algorithms/ccac.py`,
`examples/configs/ccac_configs.py`, `examples/train/train_ccac.py`).

One actor pi(a | s, c) and critics Qr(s, c, a), Qc(s, c, a) all take a cost threshold c as an extra
input, so one policy serves every budget (zero-shot adaptation). c of a dataset row is the row's
undiscounted cost-to-go in its trajectory (c' = c - cost for s'); at evaluation the actor is given
the task's episode cost limit kappa.
  * A conditional VAE models the data's (s, a) GIVEN c; a classifier p(OOD | s, a, c0) learns,
    for a reference threshold c0 (one row's c per batch), whether a real or reconstructed (s, a)
    belongs to a trajectory that needed more than c0 (label 1{c > c0}): state-actions that are
    out-of-distribution for budget c0.
  * Cost critic: Bellman error - lambda1(c) (Qc(s~, c, a~) - b(c)) averaged over generated pairs
    (s~, a~) ~ VAE(. | c) that the classifier calls OOD: unseen/unsafe-for-c pairs get cost values of
    at least the budget. lambda1(c) = exp(W1(c)) is a NETWORK of the threshold, trained to minimise
    lambda1 (Qc - b) + l2 ||W1||^2 (it grows while those cost values are below b).
  * Reward critic: plain Bellman backup with a' ~ pi(s', c').
  * Actor: minimise -Qr(s, c, a) + lambda3(c) (Qc(s, c, a) - b(c)), a ~ pi(s, c) reparameterised,
    lambda3(c) = exp(W3(c)) trained to minimise -lambda3 (Qc - b) + l2 ||W3||^2.
b(c) = c (the authors compare the discounted Qc with the undiscounted budget directly) or, with
`budget_units: discounted`, `discounted_cost_budget(c, gamma, episode length)`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from go2_sevpo.algorithms.base import AlgorithmConfig, OfflineAlgorithm, PretrainContext
from go2_sevpo.algorithms.common import discounted_cost_budget
from go2_sevpo.data.format import OfflineDataset
from go2_sevpo.data.sampler import DeviceSampler, TransitionBatch
from go2_sevpo.networks import MLP, ConditionalVAE, CriticEnsemble, TanhGaussianActor, ValueNetwork, soft_update, adam
from go2_sevpo.utils.errors import ConfigError


@dataclass
class CCACConfig(AlgorithmConfig):
    name: str = "ccac"
    batch_size: int = 512  # rows per step (paper 512)
    gamma: float = 0.99  # paper 0.99
    timeout_is_terminal: bool = False
    reward_scale: float = 0.1  # rewards are multiplied by this inside CCAC (paper 0.1)
    # ---- networks (paper: actor and critics [256, 256], 4 reward and 4 cost critics, lr 1e-4 / 1e-3)
    actor_hidden: list[int] = field(default_factory=lambda: [256, 256])
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    num_critics: int = 4  # per ensemble (paper num_q = num_qc = 4)
    # How the cost ensemble is reduced: "min" as the authors' EnsembleQCritic.predict (min over members
    # for BOTH critics), "max" for the pessimistic cost value the other baselines here use.
    cost_reduce: str = "min"
    actor_lr: float = 1e-4  # paper 1e-4
    critic_lr: float = 1e-3  # paper 1e-3
    critic_tau: float = 0.005  # Polyak factor of both target critics (paper 0.005)
    # ---- the threshold-conditional VAE of (s, a) and the OOD classifier
    vae_hidden: list[int] = field(default_factory=lambda: [512, 512])  # paper width 512
    vae_latent_dim: int = 64  # paper 64
    # KL weight per ELEMENT as in the paper (mean recon error + beta mean KL, beta 0.5); the shared VAE
    # sums over dimensions, so its weight is beta * (obs_dim + act_dim) / latent_dim.
    vae_beta: float = 0.5
    vae_lr: float = 1e-3  # VAE and classifier (paper 1e-3)
    classifier_hidden: list[int] = field(default_factory=lambda: [512, 512])  # paper width 512
    ood_threshold: float = 0.5  # a generated (s, a) is OOD for c when p(OOD | s, a, c) > this (paper 0.5)
    # Steps of VAE + classifier training before the first actor-critic step (done in pretrain).
    # None = total training steps, as the authors' script (a warm-up as long as training).
    vae_warmup_steps: int | None = None
    # ---- threshold-conditioned multipliers lambda(c) = exp(clamp(W(c), log_min, log_max))
    multiplier_hidden: list[int] = field(default_factory=lambda: [256, 256])  # paper width 512, depth not known
    multiplier_lr: float = 1e-4  # paper: the actor's lr
    log_multiplier_min: float = -20.0  # paper -20
    log_multiplier_max: float = 5.0  # paper max_lag 5
    multiplier_l2: float = 0.01  # weight of ||W||^2 in the multiplier losses (paper 0.01)
    # ---- budgets
    budget_units: str = "episode"  # b(c) = c ("episode", paper) | discounted_cost_budget(c, ...) ("discounted")
    eval_cost_limit: float | None = None  # threshold given to the actor when acting; None = the task's kappa


def cost_to_go(dataset: OfflineDataset) -> np.ndarray:
    """Undiscounted cost still to come in each row's trajectory, costs[t] + ... + costs[end - 1], (N,)
    float32. Rows after the last terminal / time-out count as one unfinished trajectory."""
    n = len(dataset.costs)
    ends = dataset.episode_bounds()[:, 1]
    if not len(ends) or ends[-1] < n:
        ends = np.concatenate([ends, [n]])
    cums = np.concatenate([[0.0], np.cumsum(dataset.costs, dtype=np.float64)])
    row_end = ends[np.searchsorted(ends, np.arange(n), side="right")]
    return (cums[row_end] - cums[:-1]).astype(np.float32)


def classifier_labels(thresholds: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """1 where the row's trajectory needed a larger budget than the reference threshold (the (s, a) is
    out-of-distribution for a policy held to `reference`), else 0; float (B,)."""
    return (thresholds > reference).float()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean of `values` over rows where mask = 1, 0 when none; the row count), no host sync."""
    count = mask.sum()
    return (values * mask).sum() / count.clamp_min(1.0), count


class CCAC(OfflineAlgorithm):
    config_cls = CCACConfig

    def __init__(self, cfg: CCACConfig, obs_dim: int, act_dim: int, total_steps: int, device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, total_steps, device, seed)
        if cfg.cost_reduce not in ("min", "max") or cfg.budget_units not in ("episode", "discounted"):
            raise ConfigError("algo.cost_reduce must be min|max and algo.budget_units episode|discounted")
        if not 0.0 < cfg.ood_threshold < 1.0:
            raise ConfigError("algo.ood_threshold must lie in (0, 1)")
        dev, cond = self.device, obs_dim + 1  # every actor / critic input is (s, c)
        self.actor = TanhGaussianActor(cond, act_dim, cfg.actor_hidden).to(dev)
        self.reward_critic = CriticEnsemble(cond, act_dim, cfg.critic_hidden, cfg.num_critics).to(dev)
        self.reward_critic_target = copy.deepcopy(self.reward_critic).requires_grad_(False)
        self.cost_critic = CriticEnsemble(cond, act_dim, cfg.critic_hidden, cfg.num_critics).to(dev)
        self.cost_critic_target = copy.deepcopy(self.cost_critic).requires_grad_(False)
        # p(s, a | c): the shared state-conditional VAE with the threshold as its "state" and the
        # scaled pair (s, a) in [-1, 1] as its "action" (its decoder ends in tanh).
        self.vae = ConditionalVAE(1, obs_dim + act_dim, cfg.vae_hidden, cfg.vae_latent_dim).to(dev)
        self.classifier = MLP(obs_dim + act_dim + 1, 1, cfg.classifier_hidden).to(dev)  # logit of OOD
        self.critic_multiplier = ValueNetwork(1, cfg.multiplier_hidden).to(dev)  # log lambda1(c)
        self.actor_multiplier = ValueNetwork(1, cfg.multiplier_hidden).to(dev)  # log lambda3(c)
        self.actor_optimizer = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.reward_critic_optimizer = adam(self.reward_critic.parameters(), lr=cfg.critic_lr)
        self.cost_critic_optimizer = adam(self.cost_critic.parameters(), lr=cfg.critic_lr)
        self.vae_optimizer = adam(self.vae.parameters(), lr=cfg.vae_lr)
        self.classifier_optimizer = adam(self.classifier.parameters(), lr=cfg.vae_lr)
        self.critic_multiplier_optimizer = adam(self.critic_multiplier.parameters(), lr=cfg.multiplier_lr)
        self.actor_multiplier_optimizer = adam(self.actor_multiplier.parameters(), lr=cfg.multiplier_lr)
        self.kl_weight = cfg.vae_beta * (obs_dim + act_dim) / cfg.vae_latent_dim
        self.budget_factor = 1.0  # b(c) = budget_factor * c; set in pretrain for "discounted"
        self.eval_threshold = 0.0 if cfg.eval_cost_limit is None else float(cfg.eval_cost_limit)
        self.warmed_up = False
        self.thresholds: torch.Tensor | None = None  # per-row cost-to-go, from pretrain
        self.obs_low = torch.zeros(obs_dim, device=dev)  # bounds of the (normalised) observations
        self.obs_high = torch.ones(obs_dim, device=dev)

    # ----------------------------------------------------------------- data-dependent set-up
    def pretrain(self, context: PretrainContext) -> None:
        cfg = self.cfg
        if context.sampler is None:
            raise RuntimeError("CCAC.pretrain needs the sampler (state bounds, VAE warm-up)")
        if cfg.eval_cost_limit is None:
            if context.cost_limit is None:
                raise ConfigError("ccac needs a cost limit to act with: set algo.eval_cost_limit or the task's")
            self.eval_threshold = float(context.cost_limit)
        if cfg.budget_units == "discounted":
            if context.max_episode_length is None:
                raise ConfigError("algo.budget_units=discounted needs the task's max_episode_length")
            self.budget_factor = discounted_cost_budget(1.0, cfg.gamma, context.max_episode_length)
        self.thresholds = torch.as_tensor(cost_to_go(context.dataset), device=self.device)
        obs = context.sampler.all().observations
        self.obs_low, self.obs_high = obs.min(0).values, obs.max(0).values
        context.message(f"ccac: thresholds (cost-to-go) in [0, {self.thresholds.max().item():.4g}], "
                        f"acting with c = {self.eval_threshold:.4g}")
        if self.warmed_up:  # resumed: the warm-up is in the loaded state
            return
        steps = self.total_steps if cfg.vae_warmup_steps is None else int(cfg.vae_warmup_steps)
        sums: dict[str, torch.Tensor] = {}
        for step in range(steps):
            batch, c = self.sample(context.sampler)
            for k, v in self._update_vae(batch, c).items():
                sums[k] = sums.get(k, 0.0) + v
            if (step + 1) % context.log_interval == 0 or step + 1 == steps:
                n = (step % context.log_interval) + 1
                context.log("warmup", {k: v / n for k, v in sums.items()}, step + 1)
                sums = {}
        self.warmed_up = True

    def sample(self, sampler: DeviceSampler) -> tuple[TransitionBatch, torch.Tensor]:
        """A uniform batch (the sampler's own stream) and its rows' thresholds c."""
        if self.thresholds is None:
            raise RuntimeError("CCAC.update before pretrain: the thresholds are not known yet")
        idx = torch.randint(0, sampler.size, (self.cfg.batch_size,), generator=sampler.generator,
                            device=self.device)
        return sampler.gather(idx), self.thresholds[idx]

    # ----------------------------------------------------------------- views
    def budget(self, c: torch.Tensor) -> torch.Tensor:
        return self.budget_factor * c

    def scale_pairs(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """(s, a) -> [-1, 1]^(obs+act): observations by the data's per-dimension bounds."""
        span = (self.obs_high - self.obs_low).clamp_min(1e-6)
        return torch.cat([2.0 * (obs - self.obs_low) / span - 1.0, actions], -1)

    def unscale_pairs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, a = x.split([self.obs_dim, self.act_dim], -1)
        return self.obs_low + (s + 1.0) * 0.5 * (self.obs_high - self.obs_low), a

    def ood_logits(self, obs: torch.Tensor, actions: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.cat([obs, actions, c[:, None]], -1)).squeeze(-1)

    def multiplier(self, net: ValueNetwork, c: torch.Tensor) -> torch.Tensor:
        """lambda(c) = exp(clamp(W(c))); the clamp passes gradients straight through (the authors clamp
        the tensor's data in place, which autograd does not see)."""
        log = net(c[:, None])
        clamped = log.clamp(self.cfg.log_multiplier_min, self.cfg.log_multiplier_max)
        return (log + (clamped - log).detach()).exp()

    def l2(self, net: torch.nn.Module) -> torch.Tensor:
        return self.cfg.multiplier_l2 * sum(p.pow(2).sum() for p in net.parameters())

    def q_values(self, obs, c, actions, target: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(Qr, Qc) at (s, c, a), (B,) each: min over reward members, `cost_reduce` over cost members."""
        sc = torch.cat([obs, c[:, None]], -1)
        qr = (self.reward_critic_target if target else self.reward_critic)(sc, actions).min(0).values
        qc_all = (self.cost_critic_target if target else self.cost_critic)(sc, actions)
        qc = qc_all.min(0).values if self.cfg.cost_reduce == "min" else qc_all.max(0).values
        return qr, qc

    # ----------------------------------------------------------------- training
    def update(self, sampler: DeviceSampler, step: int) -> dict[str, torch.Tensor | float]:
        batch, c = self.sample(sampler)
        next_c = (c - batch.costs).clamp_min(0.0)  # the budget left at s'
        out = self._update_vae(batch, c)
        out.update(self._update_critics(batch, c, next_c))
        out.update(self._update_actor(batch, c))
        soft_update(self.reward_critic_target, self.reward_critic, self.cfg.critic_tau)
        soft_update(self.cost_critic_target, self.cost_critic, self.cfg.critic_tau)
        return out

    def _update_vae(self, batch: TransitionBatch, c: torch.Tensor) -> dict[str, torch.Tensor]:
        x, cond = self.scale_pairs(batch.observations, batch.actions), c[:, None]
        mean, std = self.vae.encode(cond, x)
        z = mean + std * torch.randn(mean.shape, generator=self.generator, device=self.device)
        recon = self.vae.decode(cond, z)
        vae_loss = (recon - x).pow(2).sum(-1).mean() + self.kl_weight * self.vae.kl(mean, std).mean()
        self.vae_optimizer.zero_grad(set_to_none=True)
        vae_loss.backward()
        self.vae_optimizer.step()

        # Classifier: real and reconstructed (s, a) at one reference threshold c0 (the batch's first row),
        # label 1{c > c0}.
        ref = c[:1].expand_as(c)
        labels = classifier_labels(c, ref).repeat(2)
        rs, ra = self.unscale_pairs(recon.detach())
        logits = torch.cat([self.ood_logits(batch.observations, batch.actions, ref), self.ood_logits(rs, ra, ref)])
        class_loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.classifier_optimizer.zero_grad(set_to_none=True)
        class_loss.backward()
        self.classifier_optimizer.step()
        accuracy = ((torch.sigmoid(logits.detach()) > self.cfg.ood_threshold).float() == labels).float().mean()
        return {"loss_vae": vae_loss.detach(), "loss_classifier": class_loss.detach(), "classifier_accuracy": accuracy}

    def generated_ood(self, c: torch.Tensor):
        """(s~, a~, OOD mask): one pair per row drawn from the VAE given c (z ~ N(0, I) clipped to
        [-1, 1]), OOD where the classifier's p(OOD | s~, a~, c) > ood_threshold."""
        with torch.no_grad():
            z = torch.randn(c.shape[0], self.cfg.vae_latent_dim, generator=self.generator, device=self.device)
            gs, ga = self.unscale_pairs(self.vae.decode(c[:, None], z.clamp(-1.0, 1.0)))
            ood = (torch.sigmoid(self.ood_logits(gs, ga, c)) > self.cfg.ood_threshold).float()
        return gs, ga, ood

    def _update_critics(self, batch: TransitionBatch, c, next_c) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs, actions = batch.observations, batch.actions
        mask = batch.bootstrap_mask(cfg.timeout_is_terminal)
        sc = torch.cat([obs, c[:, None]], -1)
        with torch.no_grad():
            next_actions, _ = self.actor.rsample(torch.cat([batch.next_observations, next_c[:, None]], -1),
                                                 self.generator)
            next_qr, next_qc = self.q_values(batch.next_observations, next_c, next_actions, target=True)
            reward_target = batch.rewards * cfg.reward_scale + cfg.gamma * mask * next_qr
            cost_target = batch.costs + cfg.gamma * mask * next_qc
        reward_loss = (self.reward_critic(sc, actions) - reward_target).pow(2).mean(1).sum()
        self.reward_critic_optimizer.zero_grad(set_to_none=True)
        reward_loss.backward()
        self.reward_critic_optimizer.step()

        # Cost critic: Bellman error - lambda1(c) (Qc(s~, c, a~) - b(c)) over the generated OOD pairs.
        gs, ga, ood = self.generated_ood(c)
        qc = self.cost_critic(sc, actions)
        bellman = (qc - cost_target).pow(2).mean(1).sum()
        _, qc_ood = self.q_values(gs, c, ga)
        lam1 = self.multiplier(self.critic_multiplier, c)
        gap = qc_ood - self.budget(c)
        penalty, count = masked_mean(lam1.detach() * gap, ood)
        cost_loss = bellman - penalty
        self.cost_critic_optimizer.zero_grad(set_to_none=True)
        cost_loss.backward()
        self.cost_critic_optimizer.step()
        # lambda1(c) falls where the OOD cost values exceed the budget and grows where they are below it.
        lam_loss = masked_mean(lam1 * gap.detach(), ood)[0] + (count > 0) * self.l2(self.critic_multiplier)
        self.critic_multiplier_optimizer.zero_grad(set_to_none=True)
        lam_loss.backward()
        self.critic_multiplier_optimizer.step()
        return {
            "loss_reward_critic": reward_loss.detach(),
            "loss_cost_critic_bellman": bellman.detach(),
            "reward_target_mean": reward_target.mean(),
            "cost_q_mean": qc.detach().mean(),
            "ood_cost_q_mean": masked_mean(qc_ood.detach(), ood)[0],
            "ood_fraction": ood.mean(),
            "critic_multiplier": masked_mean(lam1.detach(), ood)[0],
        }

    def _update_actor(self, batch: TransitionBatch, c: torch.Tensor) -> dict[str, torch.Tensor]:
        obs = batch.observations
        self.reward_critic.requires_grad_(False)
        self.cost_critic.requires_grad_(False)
        actions, log_prob = self.actor.rsample(torch.cat([obs, c[:, None]], -1), self.generator)
        qr, qc = self.q_values(obs, c, actions)
        lam3 = self.multiplier(self.actor_multiplier, c)
        gap = qc - self.budget(c)
        loss = (-qr + lam3.detach() * gap).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        self.reward_critic.requires_grad_(True)
        self.cost_critic.requires_grad_(True)
        # lambda3(c) grows where the policy's cost value exceeds the budget.
        lam_loss = -(lam3 * gap.detach()).mean() + self.l2(self.actor_multiplier)
        self.actor_multiplier_optimizer.zero_grad(set_to_none=True)
        lam_loss.backward()
        self.actor_multiplier_optimizer.step()
        return {"loss_actor": loss.detach(), "actor_multiplier": lam3.detach().mean(),
                "over_budget_fraction": (gap.detach() > 0).float().mean(), "policy_log_prob": log_prob.detach().mean()}

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The deterministic action at the constant threshold `eval_threshold` (kappa)."""
        c = torch.full((obs.shape[0], 1), self.eval_threshold, device=obs.device, dtype=obs.dtype)
        return self.actor.deterministic(torch.cat([obs, c], -1))

    # ----------------------------------------------------------------- state
    _MODULES = ("actor", "reward_critic", "reward_critic_target", "cost_critic", "cost_critic_target", "vae",
                "classifier", "critic_multiplier", "actor_multiplier", "actor_optimizer",
                "reward_critic_optimizer", "cost_critic_optimizer", "vae_optimizer", "classifier_optimizer",
                "critic_multiplier_optimizer", "actor_multiplier_optimizer")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "eval_threshold": self.eval_threshold, "budget_factor": self.budget_factor,
                "warmed_up": self.warmed_up}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.eval_threshold = float(state["eval_threshold"])
        self.budget_factor = float(state["budget_factor"])
        self.warmed_up = bool(state["warmed_up"])
