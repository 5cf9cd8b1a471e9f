"""SEVPO (Zhu, Ying, Wei: "Divide and Conquer: Selective Value Learning and Policy Optimization for
Offline Safe RL"; earlier draft BARS). Implemented from the paper and docs/SEVPO.md's decisions.

Stage 1 (eq. 6-7, cached on disk): conservative cost critics Qc_hat, Vc_hat under the most
conservative policy; they define the largest safe region {s : Vc_hat(s) <= l} and the admissible
dataset actions {Qc_hat(s, a) <= l}.
Stage 2 (eq. 8-16): reward/cost critics Qr, Qc of the current policy, the objective f of eq. 10 with
an expectile baseline Vf, and a diffusion actor trained with the safe-region loss (eq. 13) plus the
unsafe-region loss (eq. 14, replaced by the trust-region loss of eq. 15 after K_trust steps).
Acting: N candidates from the EMA actor, chosen by `select` (default `mode`: common.py's
`mode_of_tested_index`; the paper's rule is `select_action_index`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from go2_sevpo.algorithms.base import AlgorithmConfig, OfflineAlgorithm, PretrainContext
# Shared with FISOR (and re-exported here for SEVPO's own tests): one implementation of each formula.
from go2_sevpo.algorithms.common import (cosine_factor, expectile_loss, first_admissible_index, hj_target,
                                         implicit_value_step, mode_of_tested_index, reversed_expectile_loss,
                                         safe_trajectory_rows)
from go2_sevpo.data.sampler import DeviceSampler, TransitionBatch
from go2_sevpo.networks import (CriticEnsemble, DiffusionActor, DiffusionConfig, ValueNetwork, adam, detached_tensors,
                                dropout_off, hard_update, soft_update)
from go2_sevpo.training.checkpoint import atomic_save, load_file
from go2_sevpo.utils.errors import CacheError, CheckpointError, ConfigError
from go2_sevpo.utils.jobs import Preempted


@dataclass
class SEVPOConfig(AlgorithmConfig):
    name: str = "sevpo"
    # ---- data
    actor_batch_size: int = 1024  # rows per actor step (FISOR's size)
    critic_batch_size: int = 256  # rows per critic / value step (stage 1 and stage 2)
    gamma: float = 0.99  # discount
    timeout_is_terminal: bool = False  # True = FISOR: no bootstrapping through time-outs either
    # ---- stage 1: conservative cost critics (eq. 6-7)
    stage1_steps: int = 1_000_000  # gradient steps of stage 1 (cached, so paid once per dataset)
    stage1_seed: int = 0  # stage 1 has its own seed so every run seed shares one cached result
    stage1_cache: str = ""  # explicit cache file; "" = <cache_dir>/sevpo_stage1_<data>_<config>.pt
    cost_critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    num_cost_critics: int = 2  # Qc_hat ensemble; pessimistic = max over members
    cost_expectile: float = 0.9  # tau of the REVERSED expectile: Vc_hat is a low expectile of Qc_hat
    alpha: float = 0.99  # absorbing-state factor of eq. 7's modified target
    cost_transform: str = "none"  # none (paper) | hj (FISOR's Hamilton-Jacobi transform, region V <= 0)
    hj_cost_scale: float = 25.0  # hj only: h = scale if c > 0 else -1
    region_threshold: float = 0.1  # l, in discounted-cost units (per task; hj forces 0)
    # ---- stage 2: critics of the current policy (eq. 8-9) and the objective baseline
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    num_critics: int = 2  # per ensemble: Qr uses min over members, Qc max
    critic_lr: float = 3e-4
    critic_tau: float = 0.005  # Polyak factor of every critic target network
    objective_expectile: float = 0.7  # tau_r of the baseline Vf(s) for f(s, a) (IQL direction)
    objective_threshold: float | None = None  # delta of eq. 10; None = region_threshold
    # How eq. 10 penalises Qr once Qc > delta. paper: Qr / Qc (Qr >= 0), Qr * Qc (Qr < 0); this RAISES
    # f for delta < Qc < 1 (dividing by a number below 1). shifted (default): the same with Qc replaced
    # by 1 + (Qc - delta), continuous at delta and decreasing in Qc for either sign of Qr.
    objective_penalty: str = "shifted"
    # ---- actor (eq. 13-16)
    actor: DiffusionConfig = field(default_factory=DiffusionConfig)
    actor_lr: float = 3e-4
    cosine_lr: bool = True  # cosine decay of the actor's lr to 0 over the run
    actor_ema: float = 0.001  # Polyak factor of the EMA actor used for targets and acting
    mu_safe: float = 3.0  # mu_1, temperature of the safe-region weights
    mu_unsafe: float = 5.0  # mu_2, temperature of the unsafe-region weights
    # Scale of the advantages in exp(mu_1 A) and exp(-mu_2 A_c_hat). none (paper): reward and cost
    # units, so mu_1 = 3 means something else on every task (reach_avoid's +100 goal bonus gives A a
    # std of about 13). std: each divided by a running (EMA 0.01) std of itself over the batches, so
    # the temperatures act on unit-free advantages on any reward and cost scale.
    advantage_normalization: str = "none"
    # What stands for Qr and Qc of a DATASET action in eq. 13's f(s, a) (and in its baseline Vf).
    # critic (paper): the stage-2 critics of the current policy. return: the discounted reward and cost
    # the row's own trajectory collected from there on (Monte-Carlo, as AWR), exact for the behaviour
    # that produced the row: a random-policy action followed by more random actions scores what that
    # behaviour earned, with no critic error in the within-state ranking (docs/SEVPO.md).
    advantage_estimate: str = "critic"
    # Which dataset actions of a safe state eq. 13 may imitate. critic (paper): Qc_hat(s, a) <= l.
    # critic_and_data: also the row's own discounted cost to go <= l, i.e. the trajectory did not enter
    # the hazard soon after this action (hindsight from the data, no reward involved): a random action
    # the cost critic cannot tell from a safe one, but whose trajectory then paid cost, is not imitated.
    # critic_and_trajectory: also the row's whole trajectory kept within the task's episode cost limit
    # (BC-safe's test), so the rows an unsafe trajectory logged after it left the hazard are not imitated.
    admissible_test: str = "critic"
    max_safe_weight: float = 100.0  # clip of exp(mu_1 A)
    max_unsafe_weight: float = 150.0  # clip of exp(-mu_2 A_c_hat)
    # Ablation of eq. 13's masks: False trains the safe-region loss on EVERY dataset row (with
    # mu_safe=0 and unsafe_loss_weight=0 that is plain diffusion BC, the ladder's rung 0).
    region_masks: bool = True
    safe_loss_weight: float = 1.0  # b_1 (3 on easy tasks)
    unsafe_loss_weight: float = 3.0  # b_2 (1 on easy tasks)
    unsafe_actions: str = "policy"  # policy: a ~ pi_theta (paper) | dataset: dataset actions (FISOR)
    # How eq. 14 weighs the policy's own actions. batch (paper): one sample per unsafe state, weight
    # clip(exp(-mu_2 A_c_hat), 0, 150), compared across the batch's states. per_state (default, from
    # the ablation ladder in docs/SEVPO.md): `unsafe_samples` samples per unsafe state, weights
    # softmax(-mu_2 Qc_hat) over that state's samples (Vc_hat(s) cancels), so each unsafe state counts
    # once and the ranking of ITS candidates by the conservative cost weighs the fit (still a fit to the
    # actor's own samples, which drifts: `unsafe_update` below).
    unsafe_weighting: str = "per_state"
    unsafe_samples: int = 4  # per_state only
    # How eq. 14 moves the actor before K_trust. self_imitation (ALGORITHMS.md): the weighted denoising
    # loss on the policy's own samples (no gradient through sampling). Measured (docs/SEVPO.md, "Eq. 14
    # as self-imitation drifts"): fitting a diffusion model to its own samples is not a fixed point of
    # the sampler, and inside the hazard that drift, not the critic's ranking, taught the actor to brake.
    # pathwise: eq. 12's objective itself, min E[Qc_hat(s, a_theta(s))] with the gradient through the
    # reverse process (the paper's "a ~ pi_theta sampled after solving the diffusion SDE"; as Diffusion-QL),
    # scaled by the batch's mean |Qc_hat| so b_2 weighs a unit-free term. Eq. 15 after K_trust either way.
    unsafe_update: str = "self_imitation"
    # Who acts outside the learned safe region. false (paper): the one actor, trained by eq. 13 on safe
    # states and eq. 14 on unsafe ones. true: a second diffusion actor of the same size takes eq. 14
    # (and eq. 15), acting and the critics' next actions there; `actor` takes eq. 13 alone. The policy
    # is the same piecewise objective (eq. 16 splits by region), but neither region's training reaches
    # the other's policy through shared weights (docs/SEVPO.md, "The escape from dataset actions").
    escape_actor: bool = False
    trust_region: bool = True  # eq. 15 after K_trust steps (False = eq. 14 throughout, Table 2)
    trust_start: float = 0.5  # K_trust as a fraction of the training steps
    lag_refresh: int = 5  # k: the lagged actor copy z' is refreshed every k steps
    # ---- acting
    num_candidates: int = 16  # N actions sampled per state
    # sevpo (paper): the rule of `select_action_index` (argmax f among admissible candidates in the
    # safe region) | mode (default, docs/SEVPO.md "Acting on the mode"): in the safe region the most
    # typical candidate (kernel-density mode, `mode_index`) among those passing both cost tests
    # (Qc_hat <= l and Qc <= delta, so f = Qr), else among the admissible ones, else argmin Qc_hat:
    # the behaviour's expert mode rather than any draw, and no argmax over the reward critic, whose
    # errors an argmax amplifies | filtered (the default before): the first candidate passing both
    # tests, else the sevpo rule | minqc: argmin Qc_hat (FISOR) | admissible: in the safe region the
    # first candidate with Qc_hat <= l, else argmin Qc_hat | actor: the first EMA-actor sample, no
    # critic (separates the actor from the rule)
    select: str = "mode"
    # Train the reward critic Qr of eq. 8: auto (default) = only when something reads it (eq. 13's
    # weights from the critics with mu_1 != 0, or the sevpo / filtered acting rules); true = always
    # (e.g. to compare those rules on a run trained with another one, offline/diagnose.py); false =
    # never (refused where it is read). Without it the stage-2 ensemble holds the Qc members only,
    # initialised and trained exactly as in the full ensemble (docs/TRAINING_SPEED.md).
    reward_critic: str = "auto"


ESCAPE_MODULES = ("escape_actor", "escape_actor_ema", "escape_actor_lag", "escape_optimizer", "escape_scheduler")

# Fields whose values change what stage 1 computes: the cache key (with the dataset's fingerprint).
STAGE1_FIELDS = ("critic_batch_size", "gamma", "timeout_is_terminal", "stage1_steps", "stage1_seed",
                 "cost_critic_hidden", "num_cost_critics", "cost_expectile", "alpha", "cost_transform",
                 "hj_cost_scale", "critic_lr", "critic_tau")
STAGE1_FORMAT = 1


# ------------------------------------------------------------------------- the paper's formulas
def safe_region_objective(qr: torch.Tensor, qc: torch.Tensor, delta: float, penalty: str = "shifted") -> torch.Tensor:
    """Eq. 10: f = Qr if Qc <= delta, else Qr penalised by a factor p: Qr / p when Qr >= 0 and Qr * p
    when Qr < 0 (the paper assumes Qr >= 0; dividing a negative Qr would REWARD cost).
    paper: p = Qc. shifted: p = 1 + (Qc - delta) >= 1, so f is continuous at delta and never increases
    with Qc (with p = Qc, any delta < Qc < 1 would raise f above the unpenalised Qr)."""
    if penalty == "paper":
        factor = qc.clamp_min(1e-6)  # the penalised branch only applies where qc > delta >= 0
    else:
        factor = 1.0 + (qc - delta).clamp_min(0.0)
    penalised = torch.where(qr >= 0, qr / factor, qr * factor)
    return torch.where(qc <= delta, qr, penalised)


def select_action_index(qc_hat: torch.Tensor, objective: torch.Tensor, safe: torch.Tensor, threshold: float) -> torch.Tensor:
    """Acting rule over N candidates (B, N) per state: in the safe region take the admissible
    candidate (Qc_hat <= l) with the largest f; if none is admissible, or outside the safe region,
    take the candidate with the smallest Qc_hat. Returns (B,) indices."""
    admissible = qc_hat <= threshold
    best_objective = torch.where(admissible, objective, torch.finfo(objective.dtype).min).argmax(1)
    least_cost = qc_hat.argmin(1)
    use_objective = safe & admissible.any(1)
    return torch.where(use_objective, best_objective, least_cost)


def cost_critic_target(costs: torch.Tensor, next_value: torch.Tensor, mask: torch.Tensor, cfg: SEVPOConfig) -> torch.Tensor:
    """Stage-1 Bellman target for Qc_hat.
    none (eq. 7, absorbing-state form): (1-alpha) c + alpha (c + gamma V(s')) = c + alpha gamma mask V(s').
    hj (FISOR): h = scale if c > 0 else -1; (1-gamma) h + gamma max(h, V(s')), and h where terminal."""
    if cfg.cost_transform == "hj":
        return hj_target(costs, next_value, mask, cfg.gamma, cfg.hj_cost_scale)
    return costs + cfg.alpha * cfg.gamma * mask * next_value


def policy_critic_targets(rewards, costs, next_qr, next_qc, mask, gamma: float):
    """Eq. 8-9 with a' ~ pi(s'): r + gamma mask Qr(s', a'), c + gamma mask Qc(s', a')."""
    return rewards + gamma * mask * next_qr, costs + gamma * mask * next_qc


def safe_region_weights(advantage, safe, admissible, cfg: SEVPOConfig):
    """Eq. 13: w_safe = clip(exp(mu_1 A), 0, 100) inside the safe region, for admissible actions only
    (safe, admissible: float 0/1 masks)."""
    return torch.exp(cfg.mu_safe * advantage).clamp(max=cfg.max_safe_weight) * safe * admissible


def unsafe_region_weights(cost_advantage, safe, cfg: SEVPOConfig):
    """Eq. 14: w_unsafe = clip(exp(-mu_2 A_c_hat), 0, 150) outside the safe region (a lower cost
    advantage, i.e. a faster way down the conservative cost, weighs more)."""
    return torch.exp(-cfg.mu_unsafe * cost_advantage).clamp(max=cfg.max_unsafe_weight) * (1.0 - safe)


def per_state_unsafe_weights(cost_q: torch.Tensor, safe: torch.Tensor, mu_unsafe: float) -> torch.Tensor:
    """Eq. 14 with `unsafe_weighting=per_state`: cost_q (U, K) = Qc_hat of K policy samples per state,
    safe (U,) 0/1. Weights softmax(-mu_2 Qc_hat) over each state's samples (the lower the conservative
    cost, the larger), summing to 1 in every unsafe state and 0 in safe ones."""
    return torch.softmax(-mu_unsafe * cost_q, dim=1) * (1.0 - safe)[:, None]


def actor_weights(advantage, cost_advantage, safe, admissible, cfg: SEVPOConfig):
    """Both per-row weights of eq. 13-14 on the same rows: (w_safe, w_unsafe)."""
    return safe_region_weights(advantage, safe, admissible, cfg), unsafe_region_weights(cost_advantage, safe, cfg)


def running_std(values: torch.Tensor, previous: torch.Tensor, step: int, rate: float = 0.01) -> torch.Tensor:
    """EMA of the batch std of `values` (the first batch sets it), floored at 1e-6; stays on the device."""
    batch_std = values.std()
    scale = batch_std if step == 0 else previous.lerp(batch_std, rate)
    return scale.clamp_min(1e-6)


def reads_reward_critic(cfg: SEVPOConfig) -> bool:
    """Whether training or acting reads Qr: eq. 13's f from the critics, or an acting rule on f."""
    return (cfg.mu_safe != 0 and cfg.advantage_estimate == "critic") or cfg.select in ("sevpo", "filtered")


def check_config(cfg: SEVPOConfig) -> None:
    choices = {"cost_transform": ("none", "hj"), "unsafe_actions": ("policy", "dataset"),
               "select": ("sevpo", "minqc", "admissible", "filtered", "mode", "actor"), "objective_penalty": ("shifted", "paper"),
               "advantage_normalization": ("none", "std"), "advantage_estimate": ("critic", "return"),
               "admissible_test": ("critic", "critic_and_data", "critic_and_trajectory"),
               "unsafe_update": ("self_imitation", "pathwise"),
               "unsafe_weighting": ("batch", "per_state"), "reward_critic": ("auto", "true", "false")}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"algo.{key}={getattr(cfg, key)!r} is not one of {allowed}")
    if cfg.unsafe_update == "pathwise" and cfg.unsafe_actions == "dataset":
        raise ConfigError("algo.unsafe_update=pathwise differentiates the policy's own actions; "
                          "it does not combine with algo.unsafe_actions=dataset")
    if not 0.0 < cfg.cost_expectile < 1.0 or not 0.0 < cfg.objective_expectile < 1.0:
        raise ConfigError("expectiles must lie in (0, 1)")
    if cfg.reward_critic == "false" and reads_reward_critic(cfg):
        raise ConfigError(f"algo.reward_critic=false, but select={cfg.select} or mu_safe={cfg.mu_safe} with "
                          f"advantage_estimate={cfg.advantage_estimate} reads Qr")
    if cfg.lag_refresh < 1 or cfg.num_candidates < 1 or cfg.unsafe_samples < 1:
        raise ConfigError("algo.lag_refresh, algo.num_candidates and algo.unsafe_samples must be >= 1")
    if cfg.unsafe_weighting == "per_state" and cfg.unsafe_actions != "policy":
        raise ConfigError("algo.unsafe_weighting=per_state ranks the policy's own samples: it needs algo.unsafe_actions=policy")


# ------------------------------------------------------------------------- the algorithm
class SEVPO(OfflineAlgorithm):
    config_cls = SEVPOConfig

    def __init__(self, cfg: SEVPOConfig, obs_dim: int, act_dim: int, total_steps: int, device, seed: int):
        super().__init__(cfg, obs_dim, act_dim, total_steps, device, seed)
        check_config(cfg)
        self.threshold = 0.0 if cfg.cost_transform == "hj" else float(cfg.region_threshold)  # l
        self.delta = self.threshold if cfg.objective_threshold is None else float(cfg.objective_threshold)
        self.trust_start_step = int(cfg.trust_start * total_steps)  # K_trust
        # With mu_1 = 0, exp(mu_1 A) = 1 for every advantage, so eq. 13 needs neither A nor its baseline
        # Vf: both are skipped (the same weights and arithmetic; about 10% of a step's matmuls; over a
        # long run not bit-identical to computing them, docs/TRAINING_SPEED.md).
        self.weighs_advantages = cfg.mu_safe != 0
        # Running std of A and of A_c_hat (advantage_normalization=std), kept in the checkpoint.
        self.advantage_scale = torch.ones((), device=self.device)
        self.cost_advantage_scale = torch.ones((), device=self.device)
        self.trajectory_to_go: torch.Tensor | None = None  # (rows, 2) reward, cost to go (advantage_estimate=return)
        self.trajectory_safe: torch.Tensor | None = None  # (rows,) 1 where the row's trajectory kept the limit
        dev = self.device

        # Stage 1 networks are initialised from `stage1_seed`, not the run seed, so a cached stage 1 is
        # exactly what any run would have trained itself.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.stage1_seed)
            self.conservative_cost_critic = CriticEnsemble(obs_dim, act_dim, cfg.cost_critic_hidden, cfg.num_cost_critics).to(dev)
            self.conservative_cost_value = ValueNetwork(obs_dim, cfg.cost_critic_hidden).to(dev)
        self.conservative_cost_critic_target = copy.deepcopy(self.conservative_cost_critic).requires_grad_(False)
        self.stage1_done = False

        # Stage 2: Qr and Qc share ONE ensemble of 2 * num_critics members (members [:n] are Qr, [n:]
        # are Qc): both take (s, a), so one batched matmul per layer evaluates all four critics. When
        # nothing reads Qr, only the Qc members are kept: built as part of the full ensemble, so they
        # and every network initialised after them start exactly as they would beside Qr.
        n = cfg.num_critics
        self.has_reward_critic = cfg.reward_critic == "true" or (cfg.reward_critic == "auto" and reads_reward_critic(cfg))
        critics = CriticEnsemble(obs_dim, act_dim, cfg.critic_hidden, 2 * n)
        self.policy_critics = (critics if self.has_reward_critic else critics.members(slice(n, 2 * n))).to(dev)
        self.policy_critics_target = copy.deepcopy(self.policy_critics).requires_grad_(False)
        self.objective_value = ValueNetwork(obs_dim, cfg.critic_hidden).to(dev)  # Vf, the baseline of f
        lr_factor = cosine_factor(total_steps) if cfg.cosine_lr else (lambda s: 1.0)
        (self.actor, self.actor_ema, self.actor_lag, self.actor_optimizer,
         self.actor_scheduler) = self._actor_set(obs_dim, act_dim, lr_factor)
        self.critic_optimizer = adam(self.policy_critics.parameters(), lr=cfg.critic_lr)
        self.value_optimizer = adam(self.objective_value.parameters(), lr=cfg.critic_lr)
        # The escape actor is built last, so every other network starts as it would without it.
        self.escape_actor: DiffusionActor | None = None
        if cfg.escape_actor:
            (self.escape_actor, self.escape_actor_ema, self.escape_actor_lag, self.escape_optimizer,
             self.escape_scheduler) = self._actor_set(obs_dim, act_dim, lr_factor)
            self._MODULES = type(self)._MODULES + ESCAPE_MODULES

    def _actor_set(self, obs_dim: int, act_dim: int, lr_factor) -> tuple:
        """A diffusion actor, its EMA copy (targets, acting) and its lagged copy z' of eq. 15 (neither
        uses dropout), its Adam and its lr schedule. Only the actor's initialisation draws random numbers."""
        actor = DiffusionActor(obs_dim, act_dim, self.cfg.actor).to(self.device)
        optimizer = adam(actor.parameters(), lr=self.cfg.actor_lr)
        return (actor, copy.deepcopy(actor).requires_grad_(False).eval(), copy.deepcopy(actor).requires_grad_(False).eval(),
                optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor))

    # ----------------------------------------------------------------- critic views
    def _pathwise_unsafe_loss(self, net, obs: torch.Tensor, unsafe: torch.Tensor, b: int) -> torch.Tensor:
        """Eq. 12 in the unsafe region, minimised through the sampler: mean over the batch of
        Qc_hat(s, a_theta(s)) on unsafe rows (`unsafe` 0/1; Vc_hat(s) does not depend on theta), divided
        by the detached mean |Qc_hat| so its scale does not depend on the task's cost units. The
        conservative critic is frozen in stage 2: its parameters enter detached, so no gradient is kept."""
        if obs.shape[0] == 0:
            return obs.new_zeros(())
        actions = net.sample_with_grad(obs, self.generator)
        critic = self.conservative_cost_critic
        q = torch.func.functional_call(critic, detached_tensors(critic), (obs, actions)).max(0).values
        return (unsafe * q).sum() / (q.detach().abs().mean().clamp_min(1e-6) * b)

    def conservative_q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Pessimistic Qc_hat(s, a): max over the ensemble, shape (B,)."""
        return self.conservative_cost_critic(obs, actions).max(0).values

    def policy_q(self, obs: torch.Tensor, actions: torch.Tensor, target: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(Qr, Qc) of the current policy, pessimistic: min over Qr members, max over Qc members. Qr
        is None when the run has no reward critic (`reward_critic`)."""
        q = (self.policy_critics_target if target else self.policy_critics)(obs, actions)
        if not self.has_reward_critic:
            return None, q.max(0).values
        n = self.cfg.num_critics
        return q[:n].min(0).values, q[n:].max(0).values

    def rows_to_go(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The discounted reward and cost each batch row's trajectory collected from that row on."""
        if self.trajectory_to_go is None:
            raise RuntimeError("the data's returns to go are computed in pretrain: call it first")
        reward_to_go, cost_to_go = self.trajectory_to_go[batch.rows].unbind(1)
        return reward_to_go, cost_to_go

    def dataset_objective(self, batch: TransitionBatch) -> torch.Tensor:
        """Eq. 10's f of the batch's dataset actions, from the target critics (advantage_estimate=critic)
        or from what each row's trajectory collected from there on (return)."""
        if self.cfg.advantage_estimate == "return":
            qr, qc = self.rows_to_go(batch)
        else:
            qr, qc = self.policy_q(batch.observations, batch.actions, target=True)
        return safe_region_objective(qr, qc, self.delta, self.cfg.objective_penalty)

    def safe_set(self, obs: torch.Tensor) -> torch.Tensor:
        """The learned largest safe region: Vc_hat(s) <= l (Definition 2)."""
        return self.conservative_cost_value(obs) <= self.threshold

    # ----------------------------------------------------------------- stage 1
    def stage1_config(self) -> dict[str, Any]:
        return {k: getattr(self.cfg, k) for k in STAGE1_FIELDS}

    def _stage1_step(self, batch: TransitionBatch, optimizers) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        q_opt, v_opt = optimizers
        # Eq. 6: Vc_hat towards a low expectile of the (target) Qc_hat over dataset actions; then
        # eq. 7: Qc_hat towards c + alpha gamma V(s') (or the hj target). The same step as FISOR's.
        out = implicit_value_step(
            self.conservative_cost_critic, self.conservative_cost_critic_target, self.conservative_cost_value,
            q_opt, v_opt, batch, pessimism="max",
            value_loss=lambda diff: reversed_expectile_loss(diff, cfg.cost_expectile),
            target=lambda next_v, mask: cost_critic_target(batch.costs, next_v, mask, cfg),
            tau=cfg.critic_tau, mask=batch.bootstrap_mask(cfg.timeout_is_terminal))
        return {
            "loss_conservative_cost_value": out["value_loss"],
            "loss_conservative_cost_critic": out["critic_loss"],
            "conservative_cost_value_mean": out["value"].mean(),
            "conservative_cost_q_mean": out["q"].mean(),
            "safe_state_fraction": (out["value"] <= self.threshold).float().mean(),
        }

    def _train_stage1(self, context: PretrainContext) -> None:
        cfg = self.cfg
        generator = torch.Generator(device=self.device)
        generator.manual_seed(cfg.stage1_seed)
        optimizers = (adam(self.conservative_cost_critic.parameters(), lr=cfg.critic_lr),
                      adam(self.conservative_cost_value.parameters(), lr=cfg.critic_lr))
        start = self._resume_stage1(context, optimizers, generator)
        sums: dict[str, torch.Tensor] = {}
        bar = tqdm(range(start, cfg.stage1_steps), desc="stage 1 (safe region)", disable=not context.show_progress,
                   dynamic_ncols=True, leave=False, initial=start, total=cfg.stage1_steps)
        for step in bar:
            scalars = self._stage1_step(context.sampler.sample(cfg.critic_batch_size, generator), optimizers)
            for k, v in scalars.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            if (step + 1) % context.log_interval == 0 or step + 1 == cfg.stage1_steps:
                n = (step % context.log_interval) + 1
                context.log("stage1", {k: v / n for k, v in sums.items()}, step + 1)
                sums = {}
            stop = context.stop_requested() and step + 1 < cfg.stage1_steps
            if context.progress_path and step + 1 < cfg.stage1_steps and ((step + 1) % context.save_interval == 0 or stop):
                atomic_save(self._stage1_progress(context, optimizers, generator, step + 1), context.progress_path)
            if stop:
                where = f"progress saved ({context.progress_path})" if context.progress_path else "no progress file"
                raise Preempted(f"stage 1 interrupted at step {step + 1} of {cfg.stage1_steps}: {where}; "
                                "rerun the same command to resume")
        self.stage1_done = True

    # Stage 1 survives a kill: every `save_interval` steps its networks, optimisers, random stream and
    # step go to the run's progress file, and the same command continues from there (bit-identically:
    # nothing else in stage 1 is random).
    def _stage1_progress(self, context, optimizers, generator, step: int) -> dict[str, Any]:
        return {**self._stage1_payload(context.fingerprint), "step": step,
                "optimizers": [o.state_dict() for o in optimizers], "generator": generator.get_state()}

    def _resume_stage1(self, context: PretrainContext, optimizers, generator) -> int:
        path = Path(context.progress_path) if context.progress_path else None
        if path is None or not path.exists():
            return 0
        # Like the main checkpoint: progress made with other settings is an error, never silently dropped.
        progress = load_file(path, self.device)
        self._load_stage1(path, context, progress)
        try:
            for opt, state in zip(optimizers, progress["optimizers"]):
                opt.load_state_dict(state)
            generator.set_state(progress["generator"].cpu())
        except (KeyError, ValueError, RuntimeError) as e:
            raise CacheError(f"stage-1 progress {path}: incomplete ({str(e).splitlines()[0]}); delete it to "
                             "start stage 1 afresh") from None
        self.stage1_done = False
        context.message(f"stage 1: resuming from step {progress['step']} ({path})")
        return int(progress["step"])

    def _stage1_payload(self, fingerprint: str) -> dict[str, Any]:
        return {
            "format": STAGE1_FORMAT,
            "fingerprint": fingerprint,
            "stage1_config": self.stage1_config(),
            "conservative_cost_critic": self.conservative_cost_critic.state_dict(),
            "conservative_cost_critic_target": self.conservative_cost_critic_target.state_dict(),
            "conservative_cost_value": self.conservative_cost_value.state_dict(),
        }

    def _load_stage1(self, path: Path, context: PretrainContext, payload: dict | None = None) -> None:
        if payload is None:
            try:
                payload = load_file(path, self.device)
            except CheckpointError as e:
                raise CacheError(f"stage-1 cache {e}") from None
        if not isinstance(payload, dict) or payload.get("format") != STAGE1_FORMAT:
            raise CacheError(f"stage-1 cache {path}: not a SEVPO stage-1 cache (format {STAGE1_FORMAT})")
        if payload["fingerprint"] != context.fingerprint:
            raise CacheError(f"stage-1 cache {path} was trained on another dataset (fingerprint {payload['fingerprint']}, "
                             f"this dataset {context.fingerprint}); delete it or set algo.stage1_cache elsewhere")
        stored, wanted = payload["stage1_config"], self.stage1_config()
        if stored != wanted:
            diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
            raise CacheError(f"stage-1 cache {path} was trained with other stage-1 settings {diff}; "
                             "delete it or set algo.stage1_cache elsewhere")
        try:
            self.conservative_cost_critic.load_state_dict(payload["conservative_cost_critic"])
            self.conservative_cost_critic_target.load_state_dict(payload["conservative_cost_critic_target"])
            self.conservative_cost_value.load_state_dict(payload["conservative_cost_value"])
        except RuntimeError as e:
            raise CacheError(f"stage-1 cache {path}: network shapes do not match ({str(e).splitlines()[0]})") from None
        self.stage1_done = True

    def stage1_cache_path(self, context: PretrainContext) -> Path | None:
        if self.cfg.stage1_cache:
            return Path(self.cfg.stage1_cache).expanduser().resolve()
        if not context.cache_dir:
            return None
        blob = json.dumps({**self.stage1_config(), "extra": context.cache_key_extra}, sort_keys=True)
        config_hash = hashlib.sha256(blob.encode()).hexdigest()[:12]
        return Path(context.cache_dir) / f"sevpo_stage1_{context.fingerprint}_{config_hash}.pt"

    def pretrain(self, context: PretrainContext) -> None:
        """Stage 1, trained once per (dataset, stage-1 config) and then loaded from the cache."""
        if self.cfg.advantage_estimate == "return" or self.cfg.admissible_test == "critic_and_data":
            # recomputed on resume: a function of the data alone
            data, gamma = context.dataset, self.cfg.gamma
            to_go = [data.discounted_to_go(data.rewards, gamma), data.discounted_to_go(data.costs, gamma)]
            self.trajectory_to_go = torch.as_tensor(np.stack(to_go, 1), dtype=torch.float32, device=self.device)
        if self.cfg.admissible_test == "critic_and_trajectory":  # recomputed on resume, as above
            if context.cost_limit is None:
                raise ConfigError("algo.admissible_test=critic_and_trajectory needs the task's episode cost limit")
            kept = torch.zeros(len(context.dataset), device=self.device)
            # BC-safe's rows; none is an error, as eq. 13 would imitate nothing and the actor learn the escape alone
            rows = safe_trajectory_rows(context.dataset, float(context.cost_limit),
                                        user="algo.admissible_test=critic_and_trajectory (or use =critic)")
            context.message(f"eq. 13 imitates only the {rows.size / len(context.dataset):.1%} of the rows whose "
                            f"trajectory kept the cost limit {context.cost_limit:g}")
            self.trajectory_safe = kept.index_fill_(0, torch.as_tensor(rows, device=self.device), 1.0)
        if self.stage1_done:  # resumed from a checkpoint that already holds stage 1
            return
        path = self.stage1_cache_path(context)
        if path is not None and path.exists():
            self._load_stage1(path, context)
            context.message(f"stage 1: loaded the cached safe region {path}")
            return
        self._train_stage1(context)
        if path is not None:
            atomic_save(self._stage1_payload(context.fingerprint), path)
            context.message(f"stage 1: cached the safe region at {path}")
        if context.progress_path:  # stage 1 is done: its progress file has served
            Path(context.progress_path).unlink(missing_ok=True)

    # ----------------------------------------------------------------- stage 2
    def update(self, sampler: DeviceSampler, step: int) -> dict[str, torch.Tensor | float]:
        if not self.stage1_done:
            raise RuntimeError("SEVPO.update before stage 1: call pretrain first")
        out = self._update_critics(sampler.sample(self.cfg.critic_batch_size))
        out.update(self._update_actor(sampler.sample(self.cfg.actor_batch_size), step))
        return out

    def _update_critics(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        cfg, n = self.cfg, self.cfg.num_critics
        obs, actions = batch.observations, batch.actions
        with torch.no_grad():
            next_actions = self.sample_policy(batch.next_observations, self.generator)  # a' ~ pi_ema(s')
            next_qr, next_qc = self.policy_q(batch.next_observations, next_actions, target=True)
            mask = batch.bootstrap_mask(cfg.timeout_is_terminal)
            if self.has_reward_critic:
                reward_target, cost_target = policy_critic_targets(
                    batch.rewards, batch.costs, next_qr, next_qc, mask, cfg.gamma)
                targets = torch.cat([reward_target.expand(n, -1), cost_target.expand(n, -1)])
            else:  # the Qc members alone
                targets = (batch.costs + cfg.gamma * mask * next_qc).expand(n, -1)
        q = self.policy_critics(obs, actions)
        critic_loss = (q - targets).pow(2).mean(1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        out = {"loss_policy_critics": critic_loss.detach()}
        if self.weighs_advantages:  # baseline Vf(s): expectile (tau_r) of f(s, a) over dataset actions
            with torch.no_grad():
                objective = self.dataset_objective(batch)
            vf = self.objective_value(obs)
            value_loss = expectile_loss(objective - vf, cfg.objective_expectile)
            self.value_optimizer.zero_grad(set_to_none=True)
            value_loss.backward()
            self.value_optimizer.step()
            out.update(loss_objective_value=value_loss.detach(), objective_mean=objective.mean())
        soft_update(self.policy_critics_target, self.policy_critics, cfg.critic_tau)
        q = q.detach()
        if not self.has_reward_critic:
            return {**out, "cost_q_mean": q.mean()}
        return {**out, "reward_q_mean": q[:n].mean(), "cost_q_mean": q[n:].mean()}

    def _update_actor(self, batch: TransitionBatch, step: int) -> dict[str, torch.Tensor | float]:
        cfg = self.cfg
        obs, actions, b = batch.observations, batch.actions, batch.observations.shape[0]
        trust_phase = cfg.trust_region and step >= self.trust_start_step
        pathwise = cfg.unsafe_update == "pathwise" and not trust_phase
        with torch.no_grad():
            cost_value = self.conservative_cost_value(obs)
            safe = (cost_value <= self.threshold).float()  # s in S_safe
            admissible = (self.conservative_q(obs, actions) <= self.threshold).float()  # Qc_hat(s, a) <= l
            if cfg.admissible_test == "critic_and_data":
                admissible = admissible * (self.rows_to_go(batch)[1] <= self.threshold).float()
            elif cfg.admissible_test == "critic_and_trajectory":
                admissible = admissible * self.trajectory_safe[batch.rows]
            if self.weighs_advantages:
                advantage = self.dataset_objective(batch) - self.objective_value(obs)
                if cfg.advantage_normalization == "std":
                    self.advantage_scale = running_std(advantage, self.advantage_scale, step)
                    advantage = advantage / self.advantage_scale
            else:  # exp(0 A) = 1
                advantage = torch.zeros_like(cost_value)
            if cfg.region_masks:
                w_safe = safe_region_weights(advantage, safe, admissible, cfg)
            else:  # ablation: eq. 13 on every row, no region or admissibility mask
                w_safe = safe_region_weights(advantage, 1.0, 1.0, cfg)
            # Eq. 14 only weighs rows outside the safe region. On CPU they are gathered first, so the
            # reverse process and the loss run on those rows alone (the gradient is the same: every
            # other row has weight 0); on a GPU the whole batch is kept, as a gather would sync.
            rows = (safe == 0).nonzero().squeeze(1) if obs.device.type == "cpu" else torch.arange(b, device=obs.device)
            if pathwise:  # eq. 12 by its gradient (below): no self-generated denoising targets
                pathwise_rows, rows = rows, rows[:0]
            unsafe_obs, k = obs[rows], (cfg.unsafe_samples if cfg.unsafe_weighting == "per_state" else 1)
            # Eq. 14: in the unsafe region, actions of the current policy (no behaviour regularisation)
            # scored by the conservative cost advantage A_c_hat = Qc_hat(s, a) - Vc_hat(s).
            unsafe_net, unsafe_lag = ((self.actor, self.actor_lag) if self.escape_actor is None
                                      else (self.escape_actor, self.escape_actor_lag))
            if pathwise:
                unsafe_actions = actions[:0]
            elif cfg.unsafe_actions == "policy":
                unsafe_actions = unsafe_net.sample(unsafe_obs, self.generator, k).reshape(-1, self.act_dim)
            else:
                unsafe_actions = actions[rows]
            unsafe_obs = unsafe_obs.repeat_interleave(k, dim=0) if k > 1 else unsafe_obs
            cost_q = self.conservative_q(unsafe_obs, unsafe_actions)
            if cfg.unsafe_weighting == "per_state":
                w_unsafe = per_state_unsafe_weights(cost_q.view(-1, k), safe[rows], cfg.mu_unsafe).flatten()
            else:
                cost_advantage = cost_q - cost_value[rows]
                if cfg.advantage_normalization == "std" and cost_advantage.numel() > 1:
                    self.cost_advantage_scale = running_std(cost_advantage, self.cost_advantage_scale, step)
                    cost_advantage = cost_advantage / self.cost_advantage_scale
                w_unsafe = unsafe_region_weights(cost_advantage, safe[rows], cfg)

        noisy, t, eps = self.actor.add_noise(torch.cat([actions, unsafe_actions]), self.generator)
        if trust_phase:
            eps_pred = self.actor(noisy[:b], obs, t[:b])
            # Eq. 15: stay near z', the actor of a few steps ago. z_theta and z' are compared as the same
            # function, both without dropout: with dropout on z_theta only, every refresh of z' asks the
            # training-mode network to match its own dropout-free output, a fixed-point iteration that
            # does not contract (measured: the actor's loss went from 0.2 to 1e8 within 1,500 steps of
            # K_trust, docs/SEVPO.md).
            with dropout_off(unsafe_net):
                eps_unsafe = unsafe_net(noisy[b:], unsafe_obs, t[b:])
            with torch.no_grad():
                eps_lag = unsafe_lag(noisy[b:], unsafe_obs, t[b:])
            unsafe_err = (eps_unsafe - eps_lag).pow(2).sum(-1)
        elif self.escape_actor is None:  # eq. 14 as a weighted denoising loss; one forward for both halves
            eps_pred = self.actor(noisy, torch.cat([obs, unsafe_obs]), t)
            unsafe_err = (eps_pred[b:] - eps[b:]).pow(2).sum(-1)
        else:
            eps_pred = self.actor(noisy[:b], obs, t[:b])
            unsafe_err = (self.escape_actor(noisy[b:], unsafe_obs, t[b:]) - eps[b:]).pow(2).sum(-1)
        safe_loss = (w_safe * (eps_pred[:b] - eps[:b]).pow(2).sum(-1)).mean()  # eq. 13
        unsafe_loss = (w_unsafe * unsafe_err).sum() / b  # a mean over the whole batch, as eq. 14 writes it
        if pathwise:
            unsafe_loss = self._pathwise_unsafe_loss(unsafe_net, obs[pathwise_rows], 1.0 - safe[pathwise_rows], b)
        loss = cfg.safe_loss_weight * safe_loss + cfg.unsafe_loss_weight * unsafe_loss  # eq. 16
        actors = [(self.actor, self.actor_ema, self.actor_lag, self.actor_optimizer, self.actor_scheduler)]
        if self.escape_actor is not None:
            actors.append((self.escape_actor, self.escape_actor_ema, self.escape_actor_lag, self.escape_optimizer,
                           self.escape_scheduler))
        for _, _, _, optimizer, _ in actors:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for net, ema, lag, optimizer, scheduler in actors:
            optimizer.step()
            scheduler.step()
            soft_update(ema, net, cfg.actor_ema)
            if (step + 1) % cfg.lag_refresh == 0:  # z' <- z_theta every k steps
                hard_update(lag, net)

        unsafe_count = (1.0 - safe).sum().clamp_min(1.0)  # per_state: weights sum to 1 per state
        return {
            "loss_actor": loss.detach(),
            "loss_actor_safe": safe_loss.detach(),
            "loss_actor_unsafe": unsafe_loss.detach(),
            "safe_state_fraction": safe.mean(),
            "admissible_fraction": (safe * admissible).mean(),
            "safe_weight_mean": w_safe.mean(),
            "safe_weight_clipped_fraction": (w_safe >= cfg.max_safe_weight).float().mean(),
            "unsafe_weight_mean": w_unsafe.sum() / unsafe_count,
            "conservative_cost_value_mean": cost_value.mean(),
            "trust_phase": float(trust_phase),
            "actor_lr": self.actor_scheduler.get_last_lr()[0],
            **({"advantage_mean": advantage.mean(), "advantage_std": advantage.std()} if self.weighs_advantages else {}),
        }

    @torch.no_grad()
    def sample_policy(self, obs: torch.Tensor, generator: torch.Generator, n: int | None = None) -> torch.Tensor:
        """Actions of the EMA policy, (B, A), or n candidates per state, (B, n, A). With `escape_actor`
        the policy is piecewise: states outside the learned safe region take the escape actor's EMA
        samples (drawn after the main actor's, for those rows only on CPU; on a GPU for all rows, as a
        gather would sync)."""
        out = self.actor_ema.sample(obs, generator, n or 1)
        if self.escape_actor is not None:
            unsafe = ~self.safe_set(obs)
            if obs.device.type == "cpu":
                rows = unsafe.nonzero().squeeze(1)
                if rows.numel():
                    out[rows] = self.escape_actor_ema.sample(obs[rows], generator, n or 1)
            else:
                out = torch.where(unsafe[:, None, None], self.escape_actor_ema.sample(obs, generator, n or 1), out)
        return out if n else out[:, 0]

    # ----------------------------------------------------------------- acting
    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, n = obs.shape[0], self.cfg.num_candidates
        if self.cfg.select == "actor":
            return self.sample_policy(obs, generator)
        candidates = self.sample_policy(obs, generator, n)  # (B, N, A): all envs and candidates
        flat_obs = obs.repeat_interleave(n, dim=0)
        flat_actions = candidates.reshape(b * n, self.act_dim)
        qc_hat = self.conservative_q(flat_obs, flat_actions).view(b, n)
        if self.cfg.select == "minqc":
            index = qc_hat.argmin(1)
        elif self.cfg.select == "admissible":
            index = first_admissible_index(qc_hat, self.safe_set(obs), self.threshold)
        elif self.cfg.select == "mode":
            _, qc = self.policy_q(flat_obs, flat_actions)
            tests = [qc_hat <= self.threshold, qc.view(b, n) <= self.delta]
            index = mode_of_tested_index(candidates, tests, self.safe_set(obs), qc_hat.argmin(1))
        else:
            qr, qc = self.policy_q(flat_obs, flat_actions)
            objective = safe_region_objective(qr, qc, self.delta, self.cfg.objective_penalty).view(b, n)
            safe = self.safe_set(obs)
            index = select_action_index(qc_hat, objective, safe, self.threshold)
            if self.cfg.select == "filtered":
                index = first_admissible_index(qc_hat, safe, self.threshold, qc.view(b, n) <= self.delta, index)
        return candidates[torch.arange(b, device=obs.device), index]

    # ----------------------------------------------------------------- state
    _MODULES = ("conservative_cost_critic", "conservative_cost_critic_target", "conservative_cost_value",
                "policy_critics", "policy_critics_target", "objective_value", "actor", "actor_ema", "actor_lag",
                "critic_optimizer", "value_optimizer", "actor_optimizer", "actor_scheduler")

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "stage1_done": self.stage1_done,
                "advantage_scale": self.advantage_scale, "cost_advantage_scale": self.cost_advantage_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state["policy_critics"]["net.0.weight"].shape[0]
        if saved != self.policy_critics.num_members:
            self._take_saved_critic_layout(saved)
        super().load_state_dict(state)
        self.stage1_done = bool(state["stage1_done"])
        self.advantage_scale = state.get("advantage_scale", torch.ones(())).to(self.device)
        self.cost_advantage_scale = state.get("cost_advantage_scale", torch.ones(())).to(self.device)

    def _take_saved_critic_layout(self, saved: int) -> None:
        """A checkpoint with Qr beside Qc where this config would train Qc alone (runs trained before
        `reward_critic` existed, or with reward_critic=true): rebuild the full ensemble, so the run
        evaluates and resumes exactly as it was trained (and Qr stays readable by diagnose.py)."""
        n = self.cfg.num_critics
        if self.has_reward_critic or saved != 2 * n:
            raise ValueError(f"checkpoint has {saved} policy critics, this config builds "
                             f"{self.policy_critics.num_members} (num_critics={n}): not the same run")
        self.has_reward_critic = True
        self.policy_critics = CriticEnsemble(self.obs_dim, self.act_dim, self.cfg.critic_hidden, 2 * n).to(self.device)
        self.policy_critics_target = copy.deepcopy(self.policy_critics).requires_grad_(False)
        self.critic_optimizer = adam(self.policy_critics.parameters(), lr=self.cfg.critic_lr)

    def train_mode(self, training: bool) -> None:
        self.actor.train(training)

