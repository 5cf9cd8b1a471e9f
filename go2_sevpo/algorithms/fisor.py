"""FISOR (Zheng et al. 2024, "Safe Offline Reinforcement Learning with Feasibility-Guided Diffusion
Model"), the main baseline, on SEVPO's backbone (spec: ALGORITHMS.md, "FISOR").

Feasibility: Hamilton-Jacobi critics. h = 25 where the step has cost, -1 elsewhere (FISOR on DSRL), or
the task's continuous constraint value of s' (`feasibility_signal=constraint`, FISOR's toy launcher);
Qh (ensemble of 2, pessimistic = max) towards (1 - gamma) h + gamma max(h, Vh(s')); Vh a low (reversed,
0.9) expectile of Qh over dataset actions. The feasible region is {s : Vh(s) <= 0}.
Reward: IQL critics. Q (ensemble of 2, min) towards r + gamma mask V(s'); V the 0.9 expectile of Q.
Actor: the diffusion actor trained by weighted denoising on DATASET actions:
    feasible   (Vh <= 0 and Qh <= 0): w = clip(exp(3 (Q - V)), 0, 100)   (maximise reward)
    infeasible (Vh > 0):              w = clip(exp(5 (Vh - Qh)), 0, 150)  (minimise the violation)
    otherwise (feasible s, action leaving the region): w = 0.
Acting: 16 candidates from the EMA actor, the one with the smallest Qh.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from go2_sevpo.algorithms.base import AlgorithmConfig, OfflineAlgorithm, PretrainContext
from go2_sevpo.algorithms.common import (cosine_factor, env_constraint_values, expectile_loss,
                                         first_admissible_index, hj_backup, hj_cost, implicit_value_step,
                                         mode_of_tested_index, reversed_expectile_loss)
from go2_sevpo.data.sampler import DeviceSampler, TransitionBatch
from go2_sevpo.networks import CriticEnsemble, DiffusionActor, DiffusionConfig, ValueNetwork, soft_update, adam
from go2_sevpo.utils.errors import ConfigError


@dataclass
class FISORConfig(AlgorithmConfig):
    name: str = "fisor"
    # ---- data
    actor_batch_size: int = 1024  # rows per actor step (FISOR)
    critic_batch_size: int = 256  # rows per critic / value step (FISOR)
    gamma: float = 0.99
    timeout_is_terminal: bool = True  # FISOR treats time-outs as terminal (no bootstrapping through them)
    # Rewards divided by the dataset's episode-return range (max - min over its trajectories), times
    # `reward_scale`, only inside FISOR (FISOR normalises returns this way; spec: x1000).
    normalize_rewards: bool = True
    reward_scale: float = 1000.0
    # ---- critics (HJ feasibility and IQL reward), all MLPs with these sizes
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    num_critics: int = 2  # per ensemble: Qh uses max over members, Q min
    critic_lr: float = 3e-4
    critic_tau: float = 0.005  # Polyak factor of both target critics
    # The constraint signal h of the HJ critics. cost: h = hj_cost_scale if the step has cost, else -1
    # (FISOR's DSRL recipe) | constraint: the task's continuous constraint value of s' (FISOR's toy
    # launcher feeds h = hazard radius - distance; envs that define one: BatchedEnv.constraint_value).
    feasibility_signal: str = "cost"
    hj_cost_scale: float = 25.0  # cost signal only: h = scale if c > 0 else -1
    feasibility_expectile: float = 0.9  # tau of Vh's REVERSED expectile (a low expectile of Qh)
    reward_expectile: float = 0.9  # tau of V's (upper) expectile, IQL
    # ---- actor
    actor: DiffusionConfig = field(default_factory=DiffusionConfig)
    actor_lr: float = 3e-4
    cosine_lr: bool = True  # cosine decay of the actor's lr to 0 over the run
    actor_ema: float = 0.001  # Polyak factor of the EMA actor used for acting
    reward_temperature: float = 3.0  # weight exp(3 (Q - V)) in the feasible region
    cost_temperature: float = 5.0  # weight exp(5 (Vh - Qh)) in the infeasible region
    max_reward_weight: float = 100.0
    max_cost_weight: float = 150.0
    min_cost_weight: float = 0.0  # spec: clip at 0 (FISOR's released code clips at 1)
    # ---- acting
    num_candidates: int = 16  # actions sampled per state
    # minqh (FISOR): the candidate with the smallest Qh | feasible: in the feasible region the first
    # candidate with Qh <= 0 (a draw from the actor restricted to feasible actions), else the smallest
    # Qh (SEVPO's `admissible` rule on FISOR's critic) | feasible_mode: the most typical feasible
    # candidate (SEVPO's `mode` rule on FISOR's critic) | actor: one EMA-actor sample, no critic
    select: str = "minqh"


def fisor_actor_weights(q: torch.Tensor, v: torch.Tensor, qh: torch.Tensor, vh: torch.Tensor,
                        cfg: FISORConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_feasible, w_infeasible) per dataset row; their sum weighs the denoising loss.
    Feasible state and action (Vh <= 0, Qh <= 0): clip(exp(mu_r (Q - V)), 0, 100).
    Infeasible state (Vh > 0): clip(exp(mu_c (Vh - Qh)), min, 150): actions that lower the violation
    more than the data's (soft-)best get more weight. Feasible state, infeasible action: 0."""
    feasible = ((vh <= 0) & (qh <= 0)).float()
    infeasible = (vh > 0).float()
    w_feasible = torch.exp(cfg.reward_temperature * (q - v)).clamp(0.0, cfg.max_reward_weight) * feasible
    w_infeasible = torch.exp(cfg.cost_temperature * (vh - qh)).clamp(cfg.min_cost_weight, cfg.max_cost_weight) * infeasible
    return w_feasible, w_infeasible


def episode_return_range(returns: np.ndarray) -> float:
    """max - min of the dataset's episode returns (1 when degenerate, so scaling stays finite)."""
    if returns.size == 0:
        return 1.0
    spread = float(np.max(returns) - np.min(returns))
    return spread if spread > 1e-8 else 1.0


class FISOR(OfflineAlgorithm):
    config_cls = FISORConfig

    def __init__(self, cfg: FISORConfig, obs_dim: int, act_dim: int, total_steps: int, device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, total_steps, device, seed)
        if not 0.0 < cfg.feasibility_expectile < 1.0 or not 0.0 < cfg.reward_expectile < 1.0:
            raise ConfigError("algo.feasibility_expectile and algo.reward_expectile must lie in (0, 1)")
        if cfg.num_candidates < 1:
            raise ConfigError("algo.num_candidates must be >= 1")
        rules = ("minqh", "feasible", "feasible_mode", "actor")
        if cfg.select not in rules:
            raise ConfigError(f"algo.select={cfg.select!r} is not one of {rules}")
        if cfg.feasibility_signal not in ("cost", "constraint"):
            raise ConfigError(f"algo.feasibility_signal={cfg.feasibility_signal!r} is not one of ('cost', 'constraint')")
        dev = self.device
        self.feasibility_critic = CriticEnsemble(obs_dim, act_dim, cfg.critic_hidden, cfg.num_critics).to(dev)  # Qh
        self.feasibility_critic_target = copy.deepcopy(self.feasibility_critic).requires_grad_(False)
        self.feasibility_value = ValueNetwork(obs_dim, cfg.critic_hidden).to(dev)  # Vh
        self.reward_critic = CriticEnsemble(obs_dim, act_dim, cfg.critic_hidden, cfg.num_critics).to(dev)  # Q
        self.reward_critic_target = copy.deepcopy(self.reward_critic).requires_grad_(False)
        self.reward_value = ValueNetwork(obs_dim, cfg.critic_hidden).to(dev)  # V
        self.actor = DiffusionActor(obs_dim, act_dim, cfg.actor).to(dev)
        self.actor_ema = copy.deepcopy(self.actor).requires_grad_(False).eval()

        self.feasibility_critic_optimizer = adam(self.feasibility_critic.parameters(), lr=cfg.critic_lr)
        self.feasibility_value_optimizer = adam(self.feasibility_value.parameters(), lr=cfg.critic_lr)
        self.reward_critic_optimizer = adam(self.reward_critic.parameters(), lr=cfg.critic_lr)
        self.reward_value_optimizer = adam(self.reward_value.parameters(), lr=cfg.critic_lr)
        self.actor_optimizer = adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.actor_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.actor_optimizer, cosine_factor(total_steps) if cfg.cosine_lr else (lambda s: 1.0))
        # Reward multiplier (set by pretrain from the dataset; saved so a resumed run keeps it).
        self.reward_multiplier = 1.0
        self.constraint_values: torch.Tensor | None = None  # (N,) h per dataset row, constraint signal only
        self.prepared = False

    def pretrain(self, context: PretrainContext) -> None:
        """FISOR's return normalisation: rewards x reward_scale / (max - min episode return)."""
        if self.cfg.normalize_rewards:
            spread = episode_return_range(context.dataset.episode_returns())
            self.reward_multiplier = self.cfg.reward_scale / spread
            context.message(f"fisor: rewards x {self.reward_multiplier:.4g} (episode-return range {spread:.4g})")
        if self.cfg.feasibility_signal == "constraint":  # derived from the data, so not checkpointed
            self.constraint_values = env_constraint_values(context.env_name, context.dataset.next_observations,
                                                           context.dataset.costs, self.device)
        self.prepared = True

    # ----------------------------------------------------------------- critic views
    def feasibility_q(self, obs: torch.Tensor, actions: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Pessimistic Qh(s, a): max over the ensemble, (B,)."""
        return (self.feasibility_critic_target if target else self.feasibility_critic)(obs, actions).max(0).values

    def safe_set(self, obs: torch.Tensor) -> torch.Tensor:
        """FISOR's feasible region: Vh(s) <= 0."""
        return self.feasibility_value(obs) <= 0.0

    # ----------------------------------------------------------------- training
    def update(self, sampler: DeviceSampler, step: int) -> dict[str, torch.Tensor | float]:
        if not self.prepared:
            raise RuntimeError("FISOR.update before pretrain: the reward scale is not known yet")
        out = self._update_actor(sampler.sample(self.cfg.actor_batch_size))  # FISOR: actor first, then critics
        out.update(self._update_critics(sampler.sample(self.cfg.critic_batch_size)))
        return out

    def _update_critics(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        mask = batch.bootstrap_mask(cfg.timeout_is_terminal)
        rewards = batch.rewards * self.reward_multiplier
        h = (hj_cost(batch.costs, cfg.hj_cost_scale) if self.constraint_values is None
             else self.constraint_values[batch.rows])
        reward = implicit_value_step(
            self.reward_critic, self.reward_critic_target, self.reward_value,
            self.reward_critic_optimizer, self.reward_value_optimizer, batch, pessimism="min",
            value_loss=lambda diff: expectile_loss(diff, cfg.reward_expectile),
            target=lambda next_v, m: rewards + cfg.gamma * m * next_v,
            tau=cfg.critic_tau, mask=mask)
        feasibility = implicit_value_step(
            self.feasibility_critic, self.feasibility_critic_target, self.feasibility_value,
            self.feasibility_critic_optimizer, self.feasibility_value_optimizer, batch, pessimism="max",
            value_loss=lambda diff: reversed_expectile_loss(diff, cfg.feasibility_expectile),
            target=lambda next_v, m: hj_backup(h, next_v, m, cfg.gamma),
            tau=cfg.critic_tau, mask=mask)
        return {
            "loss_reward_value": reward["value_loss"],
            "loss_reward_critic": reward["critic_loss"],
            "loss_feasibility_value": feasibility["value_loss"],
            "loss_feasibility_critic": feasibility["critic_loss"],
            "reward_q_mean": reward["q"].mean(),
            "feasibility_q_mean": feasibility["q"].mean(),
            "feasibility_value_mean": feasibility["value"].mean(),
        }

    def _update_actor(self, batch: TransitionBatch) -> dict[str, torch.Tensor | float]:
        cfg = self.cfg
        obs, actions = batch.observations, batch.actions
        with torch.no_grad():  # FISOR weighs with the target critics and the current values
            q = self.reward_critic_target(obs, actions).min(0).values
            v = self.reward_value(obs)
            qh = self.feasibility_q(obs, actions, target=True)
            vh = self.feasibility_value(obs)
            w_feasible, w_infeasible = fisor_actor_weights(q, v, qh, vh, cfg)
            weights = w_feasible + w_infeasible
        loss = (weights * self.actor.denoising_error(obs, actions, self.generator)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_optimizer.step()
        self.actor_scheduler.step()
        soft_update(self.actor_ema, self.actor, cfg.actor_ema)
        infeasible = (vh > 0).float()
        return {
            "loss_actor": loss.detach(),
            "safe_state_fraction": 1.0 - infeasible.mean(),
            "feasible_action_fraction": ((vh <= 0) & (qh <= 0)).float().mean(),
            "feasible_weight_mean": w_feasible.mean(),
            "infeasible_weight_mean": w_infeasible.sum() / infeasible.sum().clamp_min(1.0),
            "reward_advantage_mean": (q - v).mean(),
            "actor_lr": self.actor_scheduler.get_last_lr()[0],
        }

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, n = obs.shape[0], self.cfg.num_candidates
        if self.cfg.select == "actor":
            return self.actor_ema.sample(obs, generator)[:, 0]
        candidates = self.actor_ema.sample(obs, generator, n)  # (B, N, A) in one call
        qh = self.feasibility_q(obs.repeat_interleave(n, dim=0), candidates.reshape(b * n, self.act_dim),
                                target=True).view(b, n)
        if self.cfg.select == "feasible":
            index = first_admissible_index(qh, self.safe_set(obs), 0.0)
        elif self.cfg.select == "feasible_mode":
            index = mode_of_tested_index(candidates, [qh <= 0.0], self.safe_set(obs), qh.argmin(1))
        else:
            index = qh.argmin(1)
        return candidates[torch.arange(b, device=obs.device), index]

    # ----------------------------------------------------------------- state
    _MODULES = ("feasibility_critic", "feasibility_critic_target", "feasibility_value", "reward_critic",
                "reward_critic_target", "reward_value", "actor", "actor_ema", "feasibility_critic_optimizer",
                "feasibility_value_optimizer", "reward_critic_optimizer", "reward_value_optimizer",
                "actor_optimizer", "actor_scheduler")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reward_multiplier": self.reward_multiplier}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.reward_multiplier = float(state["reward_multiplier"])

    def train_mode(self, training: bool) -> None:
        self.actor.train(training)
