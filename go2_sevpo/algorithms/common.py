"""Formulas and dataset statistics shared by several algorithms (one implementation of each).

    expectile_loss            IQL's upper expectile (SEVPO's Vf, FISOR's reward V)
    reversed_expectile_loss   the low expectile of a cost critic (SEVPO eq. 6, FISOR's Vh)
    hj_cost / hj_target       FISOR's Hamilton-Jacobi feasibility transform and Bellman target
    hj_backup                 that target on any constraint signal h; env_constraint_values: the task's h(s')
    implicit_value_step       one IQL-style (V, then Q from V(s')) step: SEVPO stage 1, FISOR's critics
    first_admissible_index    acting: the first of N candidates that passes the cost tests
    discounted_cost_budget    an episode cost limit in discounted per-state units (CPQ, COptiDICE)
    trajectory_sums, safe_trajectory_rows, initial_rows   per-trajectory views of a dataset
"""

from __future__ import annotations

import math

import numpy as np
import torch

from go2_sevpo.data.format import OfflineDataset
from go2_sevpo.networks import soft_update
from go2_sevpo.utils.errors import ConfigError


def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """IQL's L^tau(u) = |tau - 1{u < 0}| u^2 with u = target - prediction: tau > 0.5 fits an UPPER
    expectile of the target."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.pow(2)).mean()


def reversed_expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """SEVPO eq. 6 / FISOR's Vh loss: L^tau(u) = |tau - 1{u > 0}| u^2, u = Q(s, a) - V(s). Targets
    BELOW the prediction weigh tau (0.9), targets above 1 - tau, so V fits a LOW expectile of the cost
    critic over dataset actions: a soft min over the data's actions."""
    weight = torch.where(diff > 0, 1.0 - tau, tau)
    return (weight * diff.pow(2)).mean()


def hj_cost(costs: torch.Tensor, scale: float) -> torch.Tensor:
    """FISOR's constraint signal h(s): `scale` where the step has cost, -1 elsewhere."""
    return torch.where(costs > 0, scale, -1.0)


def hj_target(costs: torch.Tensor, next_value: torch.Tensor, mask: torch.Tensor, gamma: float,
              scale: float) -> torch.Tensor:
    """`hj_backup` on FISOR's DSRL signal h = hj_cost(costs, scale)."""
    return hj_backup(hj_cost(costs, scale), next_value, mask, gamma)


def hj_backup(h: torch.Tensor, next_value: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """FISOR's discounted Hamilton-Jacobi reachability target (Fisac et al. 2019) on a constraint
    signal h (> 0 where violated): Qh(s, a) <- (1 - gamma) h + gamma max(h, Vh(s')), and h alone where
    the episode ends. The fixed point is <= 0 exactly where the constraint can be kept for ever (the
    feasible region)."""
    return mask * ((1 - gamma) * h + gamma * torch.maximum(h, next_value)) + (1 - mask) * h


def env_constraint_values(env_name: str, next_observations: np.ndarray, costs: np.ndarray,
                          device: torch.device) -> torch.Tensor:
    """The task's continuous constraint value h(s') of every dataset row, (N,) on `device` (FISOR's toy
    signal: hazard radius minus distance, > 0 inside). Refuses, in one line, a task that defines none
    and a dataset whose costs disagree with it (made on another task or variant)."""
    from go2_sevpo.envs.registry import lookup

    if not env_name:
        raise ConfigError("the task's constraint value needs the name of the task the data were made on")
    try:
        env_cls, _ = lookup(env_name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    h = env_cls.constraint_value(torch.as_tensor(next_observations, dtype=torch.float32))
    if h is None:
        raise ConfigError(f"env {env_name!r} defines no continuous constraint value; use the cost signal "
                          f"(algo.feasibility_signal=cost)")
    agree = float(((h > 0) == torch.as_tensor(costs > 0)).float().mean()) if len(costs) else 1.0
    if agree < 0.99:
        raise ConfigError(f"the dataset's costs agree with env {env_name!r}'s constraint value on only "
                          f"{agree:.1%} of rows: not data of this task")
    return h.to(device)


def implicit_value_step(critic, critic_target, value, critic_optimizer, value_optimizer, batch, *,
                        pessimism: str, value_loss, target, tau: float, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One step of the IQL pattern shared by SEVPO's stage 1 and FISOR's two critic pairs:
      1. V(s) towards an expectile of the pessimistic TARGET critic over dataset actions
         (`value_loss(Q_target(s, a) - V(s))`; `pessimism` "min" for rewards, "max" for costs),
      2. every member of Q(s, a) towards `target(next_value, mask)` with V(s') from the updated V
         (loss: per-member MSE, summed over members),
      3. Polyak update of the target critic.
    Returns detached (value_loss, critic_loss, value, q) tensors for logging."""
    obs, actions = batch.observations, batch.actions
    with torch.no_grad():
        q_all = critic_target(obs, actions)
        q_target_net = q_all.max(0).values if pessimism == "max" else q_all.min(0).values
    v = value(obs)
    v_loss = value_loss(q_target_net - v)
    value_optimizer.zero_grad(set_to_none=True)
    v_loss.backward()
    value_optimizer.step()
    with torch.no_grad():
        bellman_target = target(value(batch.next_observations), mask)
    q = critic(obs, actions)
    q_loss = (q - bellman_target).pow(2).mean(1).sum()
    critic_optimizer.zero_grad(set_to_none=True)
    q_loss.backward()
    critic_optimizer.step()
    soft_update(critic_target, critic, tau)
    return {"value_loss": v_loss.detach(), "critic_loss": q_loss.detach(), "value": v.detach(), "q": q.detach()}


def first_admissible_index(qc_hat: torch.Tensor, safe: torch.Tensor, threshold: float,
                           passed: torch.Tensor | None = None, fallback: torch.Tensor | None = None) -> torch.Tensor:
    """Acting rules (SEVPO `admissible` / `filtered`, FISOR `feasible`) over N i.i.d. candidates
    (B, N): in the safe region the first candidate that passes the cost tests (Qc_hat <= l, and `passed` when given), i.e. one draw
    from the actor's distribution restricted to those actions. No argmax over the reward critic, so
    its errors are not amplified (an argmax over N noisy estimates picks the largest error). Where no
    candidate passes, or outside the safe region: `fallback` indices, by default argmin Qc_hat."""
    ok = qc_hat <= threshold
    if passed is not None:
        ok = ok & passed
    first = ok.float().argmax(1)  # index of the first True (0 when there is none)
    return torch.where(safe & ok.any(1), first, qc_hat.argmin(1) if fallback is None else fallback)


def mode_index(candidates: torch.Tensor, passed: torch.Tensor, sq_dist: torch.Tensor | None = None) -> torch.Tensor:
    """Index (B,) of the most typical of N candidates (B, N, A) among those that `passed` (B, N): the
    one where a Gaussian kernel density estimate of the passing candidates peaks, with Scott's
    bandwidth h = sigma * k^(-1 / (A + 4)) per state (sigma: the passing candidates' RMS spread,
    k: how many passed), so no scale is tuned and it holds in any action dimension. On mixed-quality
    data the behaviour distribution is a concentrated expert mode plus spread-out random actions, so
    its mode is the expert-like action; no reward critic is involved (its errors are not amplified).
    Rows where nothing passed get index 0 (callers substitute their fallback). `sq_dist` (B, N, N): the
    candidates' squared pairwise distances, when the caller already has them."""
    weight = passed.to(candidates.dtype)[..., None]
    count = weight.sum(1).clamp_min(1.0)  # (B, 1)
    mean = (candidates * weight).sum(1, keepdim=True) / count[:, None]
    spread = ((candidates - mean).pow(2) * weight).sum(1).mean(-1, keepdim=True) / count  # (B, 1): mean variance
    bandwidth = spread.sqrt().clamp_min(1e-3) * count.pow(-1.0 / (candidates.shape[-1] + 4))
    if sq_dist is None:
        sq_dist = torch.cdist(candidates, candidates).pow(2)
    log_kernel = -sq_dist / (2 * bandwidth[..., None].pow(2))  # (B, N, N)
    log_density = torch.logsumexp(log_kernel.masked_fill(~passed[:, None, :], float("-inf")), dim=-1)
    return log_density.masked_fill(~passed, float("-inf")).argmax(1)


def mode_of_tested_index(candidates: torch.Tensor, tests: list[torch.Tensor], safe: torch.Tensor,
                         fallback: torch.Tensor) -> torch.Tensor:
    """Acting rules SEVPO `mode` / FISOR `feasible_mode` over N candidates (B, N, A). `tests`: boolean
    (B, N) masks, the first required and each later one preferred. In the safe region: the mode
    (`mode_index`) of the candidates passing all tests; where none does, of those passing all but the
    last, and so on. Where none passes the first, or outside the safe region: `fallback` indices."""
    sq_dist = torch.cdist(candidates, candidates).pow(2)  # the same for every tier
    index, found = fallback, torch.zeros_like(safe)
    for k in range(len(tests), 0, -1):
        passed = torch.stack(tests[:k]).all(0)
        has = passed.any(1) & ~found
        index = torch.where(has, mode_index(candidates, passed, sq_dist), index)
        found = found | has
    return torch.where(safe & found, index, fallback)


def cosine_factor(total_steps: int):
    """lr multiplier for `LambdaLR`: cosine decay from 1 to 0 over `total_steps`."""
    return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / max(total_steps, 1)))


def discounted_cost_budget(cost_limit: float, gamma: float, episode_length: int) -> float:
    """An episode cost limit as a per-state discounted cost: the discounted sum of the limit spread
    evenly over the episode, limit / L * (1 - gamma^L) / (1 - gamma) (CPQ's and FISOR's `qc_thres`)."""
    return cost_limit * (1 - gamma**episode_length) / (1 - gamma) / episode_length


# ----------------------------------------------------------------------------- trajectory views
def trajectory_sums(dataset: OfflineDataset, values: np.ndarray) -> np.ndarray:
    """Undiscounted per-trajectory sums of a per-row array, (E,) in file order."""
    bounds = dataset.episode_bounds()
    return np.add.reduceat(np.asarray(values, dtype=np.float64), bounds[:, 0]) if len(bounds) else np.zeros(0)


def safe_trajectory_rows(dataset: OfflineDataset, cost_limit: float, user: str = "bc_safe") -> np.ndarray:
    """Row indices of every trajectory whose undiscounted episode cost is <= cost_limit (BC-safe).
    None is a ConfigError naming `user`: every caller trains on these rows, so it has nothing to learn."""
    bounds = dataset.episode_bounds()
    keep = trajectory_sums(dataset, dataset.costs) <= cost_limit
    lengths = bounds[:, 1] - bounds[:, 0]
    rows = np.flatnonzero(np.repeat(keep, lengths))
    if rows.size == 0:
        raise ConfigError(f"{user}: no trajectory of the dataset has episode cost <= {cost_limit}")
    return rows


def initial_rows(dataset: OfflineDataset) -> np.ndarray:
    """Row index of the first transition of every trajectory (samples of the initial distribution)."""
    return dataset.episode_bounds()[:, 0]
