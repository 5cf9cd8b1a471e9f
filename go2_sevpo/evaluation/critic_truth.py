"""How right are a SEVPO run's critics? On reach-avoid the dynamics are known, so the true discounted
return and cost of taking action a in state s and then following the run's own policy can be rolled
out (Monte Carlo over the policy's sampling) and set beside what the critics say:

    Qr(s, a), Qc(s, a)  estimate the return and discounted cost of the CURRENT policy (eq. 8-9; their
                        targets draw a' from the EMA actor, so the policy rolled out is the EMA actor
                        with one sample per step);
    f(s, a)             the objective of eq. 10 built from them;
    Qc_hat(s, a) <= l   the admissibility test of eq. 13, set beside the feasibility oracle at s'.

What matters for the actor is not the absolute error but whether the critic ranks the ACTIONS of one
state correctly, since the weights exp(mu A) and the argmax-f rule only compare actions. So besides
RMSE and bias, every figure is also taken within states: the true advantage signal (spread of the true
Q over the probed actions of one state, state mean removed) against the critic's within-state error.

    python offline/critic_truth.py runs/ladder/low/4_trust_region/seed0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from go2_sevpo.algorithms.sevpo import safe_region_objective
from go2_sevpo.envs.reach_avoid import HAZARD_CENTER, HAZARD_RADIUS, hazard_distance, observe, state_from_obs, transition
from go2_sevpo.envs.reach_avoid_oracle import feasible


@dataclass
class CriticTruthConfig:
    states: int = 48  # dataset states probed (drawn uniformly from the dataset's rows)
    grid: int = 3  # grid x grid actions per state in [-1, 1]^2, plus the state's dataset action
    rollouts: int = 4  # Monte-Carlo rollouts per (s, a): the policy samples, the dynamics do not
    horizon: int = 600  # steps rolled out (gamma^600 < 0.003: the tail is below the estimate's noise)
    seed: int = 0
    # --escape: the speeds at which the probed states inside the hazard are set (0: standstill, where
    # no dataset row is); several show where between the data's speeds and 0 the ranking is lost.
    probe_speeds: tuple[float, ...] = (0.0,)


def probe_name(speed: float) -> str:
    return "standstill" if speed == 0 else f"v{speed:g}"


@torch.no_grad()
def discounted_rollout(states: torch.Tensor, first_actions: torch.Tensor, next_action, gamma: float,
                       horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted return and cost of (s, a) then `next_action(state)` on the known dynamics, (B,) each.
    Success and leaving the arena are absorbing (nothing more is earned), as in the critics' targets."""
    ret = torch.zeros(states.shape[0], device=states.device)
    cost = torch.zeros_like(ret)
    alive = torch.ones_like(ret)
    state, action, discount = states, first_actions, 1.0
    for _ in range(horizon):
        out = transition(state, action)
        ret += discount * alive * out["reward"]
        cost += discount * alive * out["cost"]
        alive = alive * (~(out["success"] | out["out_of_bounds"])).float()
        if not alive.any():
            break
        state, discount = out["state"], discount * gamma
        action = next_action(state)
    return ret, cost


def rollout_values(policy, normalizer, states: torch.Tensor, first_actions: torch.Tensor, gamma: float,
                   horizon: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted return and cost of (s, a) then `policy(normalised obs, generator) -> (B, A)` (one
    sample per step: the policy the critics Qr, Qc evaluate), (B,) each."""
    return discounted_rollout(states, first_actions, lambda s: policy(normalizer(observe(s)), generator),
                              gamma, horizon)


def _within_state(values: torch.Tensor) -> torch.Tensor:
    """(S, A) -> the same with each state's mean over its actions removed."""
    return values - values.mean(1, keepdim=True)


def _rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over states of Spearman's rank correlation between rows of a and b, (S, A) each."""
    ra, rb = a.argsort(1).argsort(1).float(), b.argsort(1).argsort(1).float()
    ra, rb = _within_state(ra), _within_state(rb)
    denom = (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-9)
    return float(((ra * rb).sum(1) / denom).mean())


def _errors(name: str, learned: torch.Tensor, true: torch.Tensor, true_se: torch.Tensor,
            higher_is_better: bool = True) -> dict[str, float]:
    err = learned - true
    within_true, within_err = _within_state(true), _within_state(err)
    sign = 1.0 if higher_is_better else -1.0  # costs: the best action is the one with the LEAST cost
    best_true = sign * (sign * true).max(1).values
    picked = true.gather(1, (sign * learned).argmax(1, keepdim=True)).squeeze(1)
    return {
        f"{name}_true_mean": float(true.mean()),
        f"{name}_rmse": float(err.pow(2).mean().sqrt()),
        f"{name}_bias": float(err.mean()),
        # within one state: the signal the actor's weights need, and the critic's error on it
        f"{name}_true_action_spread": float(within_true.std()),
        f"{name}_within_state_error": float(within_err.std()),
        f"{name}_rank_correlation": _rank_correlation(learned, true),
        # the true value lost by taking the critic's favourite probed action instead of the best one
        f"{name}_argmax_regret": float((sign * (best_true - picked)).mean()),
        f"{name}_monte_carlo_se": float(true_se.mean()),
    }


@torch.no_grad()
def critic_truth(algo, normalizer, dataset, cfg: CriticTruthConfig) -> dict[str, Any]:
    """Roll out the truth on `cfg.states` dataset states x (grid^2 + 1) actions and compare (SEVPO)."""
    device = algo.device
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    rows = torch.randint(0, len(dataset), (cfg.states,), generator=gen, device=device).cpu().numpy()
    raw_obs = torch.as_tensor(dataset.observations[rows], device=device)
    data_actions = torch.as_tensor(dataset.actions[rows], device=device)
    levels = torch.linspace(-1, 1, cfg.grid, device=device)
    grid = torch.cartesian_prod(levels, levels)  # (G, 2)
    actions = torch.cat([grid.expand(cfg.states, -1, -1), data_actions[:, None]], 1)  # (S, A, 2)
    s, a = actions.shape[:2]
    states = state_from_obs(raw_obs)[:, None].expand(s, a, 4)

    # Monte-Carlo truth: every (s, a) `rollouts` times, all in one batch.
    flat_states = states.reshape(-1, 4).repeat(cfg.rollouts, 1)
    flat_actions = actions.reshape(-1, 2).repeat(cfg.rollouts, 1)
    ret, cost = rollout_values(algo.sample_policy, normalizer, flat_states, flat_actions, algo.cfg.gamma,
                               cfg.horizon, gen)
    ret, cost = ret.view(cfg.rollouts, s, a), cost.view(cfg.rollouts, s, a)
    se = lambda x: x.std(0) / cfg.rollouts**0.5  # noqa: E731
    true_r, true_c = ret.mean(0), cost.mean(0)

    obs = normalizer(observe(states.reshape(-1, 4)))
    flat = actions.reshape(-1, 2)
    qr, qc = algo.policy_q(obs, flat)
    out: dict[str, Any] = {"states": s, "actions_per_state": a, "rollouts": cfg.rollouts}
    out.update(_errors("qc", qc.view(s, a), true_c, se(cost), higher_is_better=False))
    if qr is not None:  # a run trained without the reward critic (`reward_critic`) has no Qr and no f
        objective = safe_region_objective(qr, qc, algo.delta, algo.cfg.objective_penalty).view(s, a)
        true_objective = safe_region_objective(true_r.flatten(), true_c.flatten(), algo.delta,
                                               algo.cfg.objective_penalty).view(s, a)
        out.update(_errors("qr", qr.view(s, a), true_r, se(ret)))
        out.update(_errors("objective", objective, true_objective, se(ret)))

    # The actor's weights are exp(mu_1 A) with A = f(s, a_data) - Vf(s) on dataset actions (with
    # mu_1 = 0 there is no A, and Vf is not trained).
    if algo.weighs_advantages and qr is not None:
        adv = objective[:, -1] - algo.objective_value(normalizer(raw_obs))
        out["advantage_std"] = float(adv.std())
        out["advantage_abs_mean"] = float(adv.abs().mean())

    # Admissibility Qc_hat(s, a) <= l against the oracle at s' (feasible next state).
    admissible = (algo.conservative_q(obs, flat) <= algo.threshold).view(s, a)
    oracle = feasible(transition(states.reshape(-1, 4), flat)["state"]).view(s, a)
    out["admissible_agreement"] = float((admissible == oracle).float().mean())
    out["admissible_false_safe"] = float((admissible & ~oracle).float().mean())  # admitted, truly infeasible
    out["admissible_false_unsafe"] = float((~admissible & oracle).float().mean())
    return out


# ----------------------------------------------------------------------------- the escape (eq. 14)
@torch.no_grad()
def best_escape_cost(states: torch.Tensor, first_actions: torch.Tensor, gamma: float, horizon: int) -> torch.Tensor:
    """True discounted cost of (s, a) followed by the best of a set of escape controllers, (B,): the
    quantity the conservative cost critic Qc_hat(s, a) estimates (the least cost reachable after a,
    eq. 6-7's low expectile over behaviour actions). The set: the 9 constant controls with acceleration
    and turn in {-1, 0, 1}, and full throttle steering outward (heading to the hazard's far side). Its
    minimum is an upper bound on the optimum and equals it in practice on this open, round hazard."""
    outward_gain = 5.0  # rad/s per rad of heading error, clipped to the turn limit
    levels = states.new_tensor([-1.0, 0.0, 1.0])
    constants = torch.cartesian_prod(levels, levels)  # (9, 2)

    def outward(state: torch.Tensor) -> torch.Tensor:
        away = torch.atan2(state[:, 1] - HAZARD_CENTER[1], state[:, 0] - HAZARD_CENTER[0])
        error = torch.atan2(torch.sin(away - state[:, 3]), torch.cos(away - state[:, 3]))
        return torch.stack([torch.ones_like(error), (outward_gain * error).clamp(-1, 1)], -1)

    controllers = [lambda s, c=c: c.expand(s.shape[0], 2) for c in constants] + [outward]
    costs = [discounted_rollout(states, first_actions, control, gamma, horizon)[1] for control in controllers]
    best = torch.stack(costs).min(0).values
    return best


@torch.no_grad()
def escape_truth(algo, normalizer, dataset, cfg: CriticTruthConfig) -> dict[str, Any]:
    """Does Qc_hat rank the actions of an UNSAFE state as the true best escape cost does? On `cfg.states`
    dataset states outside the learned safe region, and on the same states at standstill (v = 0, where
    no dataset row is: the stops inside the hazard of docs/SEVPO.md), x a grid x grid action grid."""
    if algo.cfg.cost_transform != "none":
        raise ValueError(f"cost_transform={algo.cfg.cost_transform}: Qc_hat is not a discounted cost, so there is "
                         "no escape cost to compare it with")
    gamma = algo.cfg.alpha * algo.cfg.gamma  # eq. 7's absorbing-state form discounts Vc_hat(s') by alpha gamma
    device = algo.device
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    raw = torch.as_tensor(dataset.observations, device=device)
    unsafe_rows = (~algo.safe_set(normalizer(raw))).nonzero().squeeze(1)
    if unsafe_rows.numel() == 0:
        raise ValueError("no dataset state lies outside the learned safe region: nothing to escape from")
    pick = unsafe_rows[torch.randint(0, unsafe_rows.numel(), (cfg.states,), generator=gen, device=device)]
    levels = torch.linspace(-1, 1, cfg.grid, device=device)
    grid = torch.cartesian_prod(levels, levels)  # (G, 2): (acceleration, turn)
    data_states = state_from_obs(raw[pick])
    inside = hazard_distance(data_states[:, :2]) < HAZARD_RADIUS
    if not inside.any():
        raise ValueError("none of the probed unsafe states is inside the hazard: raise --states")
    # The slowed probes (standstill and any other `probe_speeds`) use only the states inside the hazard:
    # outside it, standing still costs nothing, so every action that does not move ties with braking.
    probes = [("data", data_states)]
    for speed in cfg.probe_speeds:
        slowed = data_states[inside].clone()
        slowed[:, 2] = speed
        probes.append((probe_name(speed), slowed))
    out: dict[str, Any] = {"states": cfg.states, "actions_per_state": grid.shape[0],
                           "standstill_states": int(inside.sum()), "probe_speeds": list(cfg.probe_speeds)}
    for name, base in probes:
        n = base.shape[0]
        states = base[:, None].expand(-1, grid.shape[0], 4).reshape(-1, 4)
        actions = grid.repeat(n, 1)
        true = best_escape_cost(states, actions, gamma, cfg.horizon).view(n, -1)
        learned = algo.conservative_q(normalizer(observe(states)), actions).view(n, -1)
        m = _errors(f"{name}_qc_hat", learned, true, torch.zeros_like(true), higher_is_better=False)
        # Does the critic's favourite probed action accelerate, and does the true best one?
        m[f"{name}_qc_hat_argmin_accelerates"] = float((grid[learned.argmin(1), 0] > 0).float().mean())
        m[f"{name}_true_best_accelerates"] = float((grid[true.argmin(1), 0] > 0).float().mean())
        out.update(m)
    return out


@torch.no_grad()
def stay_truth(algo, normalizer, env_config: dict[str, Any], cfg: CriticTruthConfig, episodes: int = 100,
               stay_steps: int = 100, at: tuple[int, ...] = (0, 5, 10, 20, 40)) -> dict[str, Any]:
    """The long stays from the hazard start, traced: run the evaluator's hazard-start episodes with the
    run's own acting rule, keep the episodes that spend at least `stay_steps` steps inside the hazard,
    and at their steps `at` set beside each other: the speed, how many of `num_candidates` fresh actor
    samples accelerate, the conservative cost critic's least Qc_hat over the action grid and the true
    best escape cost, and whether the grid action it ranks best accelerates (and the truth's)."""
    from go2_sevpo.evaluation.evaluator import EvalConfig, LearnedPolicy, run_episodes

    policy = LearnedPolicy(algo, normalizer, cfg.seed, algo.device)
    result = run_episodes(policy, "reach_avoid", env_config,
                          EvalConfig(episodes=episodes, start="hazard", seed=cfg.seed, record_envs=episodes), algo.device)
    obs = torch.as_tensor(result.trajectories, device=algo.device)  # (T + 1, E, obs)
    alive = torch.as_tensor(result.alive, device=algo.device)
    inside = (obs[..., 5] < HAZARD_RADIUS) & alive
    stays = (inside.sum(0) >= stay_steps).nonzero().squeeze(1)
    out: dict[str, Any] = {"episodes": episodes, "stay_steps": stay_steps, "stays": int(stays.numel()),
                           "mean_steps_inside": float(inside[1:].sum(0).float().mean()), "at": list(at)}
    if stays.numel() == 0:
        return out
    gen = torch.Generator(device=algo.device)
    gen.manual_seed(cfg.seed)
    levels = torch.linspace(-1, 1, cfg.grid, device=algo.device)
    grid = torch.cartesian_prod(levels, levels)  # (G, 2): (acceleration, turn)
    gamma = algo.cfg.alpha * algo.cfg.gamma
    rows = []
    for t in at:
        running = stays[alive[t, stays]]  # an `at` beyond stay_steps may find a traced episode ended
        if running.numel() == 0:
            continue
        states = state_from_obs(obs[t, running])
        n = states.shape[0]
        normalized = normalizer(observe(states))
        candidates = algo.sample_policy(normalized, gen, algo.cfg.num_candidates)
        flat = states[:, None].expand(-1, grid.shape[0], 4).reshape(-1, 4)
        actions = grid.repeat(n, 1)
        learned = algo.conservative_q(normalizer(observe(flat)), actions).view(n, -1)
        true = best_escape_cost(flat, actions, gamma, cfg.horizon).view(n, -1)
        rows.append({"step": t, "episodes": n, "speed": float(states[:, 2].mean()),
                     "candidates_accelerate": float((candidates[..., 0] > 0).float().mean()),
                     "qc_hat_min": float(learned.min(1).values.mean()), "true_min": float(true.min(1).values.mean()),
                     "qc_hat_argmin_accelerates": float((grid[learned.argmin(1), 0] > 0).float().mean()),
                     "true_best_accelerates": float((grid[true.argmin(1), 0] > 0).float().mean())})
    out["trace"] = rows
    return out


def format_stay_report(m: dict[str, Any]) -> str:
    lines = [f"{m['episodes']} hazard-start episodes, {m['mean_steps_inside']:.2f} steps inside on average; "
             f"{m['stays']} stay inside for at least {m['stay_steps']} steps"]
    for r in m.get("trace", []):
        lines.append(f"  step {r['step']:3d}: speed {r['speed']:.2f}  candidates accelerating {r['candidates_accelerate']:.2f}"
                     f"  | least Qc_hat {r['qc_hat_min']:6.2f} (true best escape {r['true_min']:6.2f})"
                     f"  | its favourite accelerates {r['qc_hat_argmin_accelerates']:.2f} (truth {r['true_best_accelerates']:.2f})")
    return "\n".join(lines)


def format_escape_report(m: dict[str, Any]) -> str:
    lines = [f"Qc_hat against the best escape cost: {m['states']} dataset states outside the learned safe "
             f"region x {m['actions_per_state']} actions"]
    labels = [("data", f"{m['states']} at the data's speed")]
    labels += [(probe_name(v), f"{m['standstill_states']} in the hazard at v = {v:g}" + (" (no data there)" if v == 0 else ""))
               for v in m.get("probe_speeds", [0.0])]
    for name, label in labels:
        k = f"{name}_qc_hat"
        lines.append(
            f"  {label}: true mean {m[f'{k}_true_mean']:.3f}  rmse {m[f'{k}_rmse']:.3f}  bias {m[f'{k}_bias']:+.3f}"
            f"  | within a state: true spread {m[f'{k}_true_action_spread']:.3f}  error "
            f"{m[f'{k}_within_state_error']:.3f}  rank corr {m[f'{k}_rank_correlation']:+.2f}  argmin regret "
            f"{m[f'{k}_argmax_regret']:.3f}  | argmin accelerates {m[f'{name}_qc_hat_argmin_accelerates']:.2f} "
            f"(truth {m[f'{name}_true_best_accelerates']:.2f})")
    return "\n".join(lines)


def format_report(m: dict[str, Any]) -> str:
    lines = [f"{m['states']} dataset states x {m['actions_per_state']} actions, {m['rollouts']} rollouts each"]
    for name, label in (("qr", "Qr (return)"), ("qc", "Qc (disc. cost)"), ("objective", "f (eq. 10)")):
        if f"{name}_rmse" not in m:
            lines.append(f"  {label:16s} not trained (algo.reward_critic)")
            continue
        lines.append(
            f"  {label:16s} true mean {m[f'{name}_true_mean']:8.3f}  rmse {m[f'{name}_rmse']:7.3f}  "
            f"bias {m[f'{name}_bias']:+7.3f}  | within a state: true spread {m[f'{name}_true_action_spread']:6.3f}  "
            f"error {m[f'{name}_within_state_error']:6.3f}  rank corr {m[f'{name}_rank_correlation']:+.2f}  "
            f"argmax regret {m[f'{name}_argmax_regret']:6.3f}  (MC s.e. {m[f'{name}_monte_carlo_se']:.3f})")
    if "advantage_std" in m:
        lines.append(f"  advantage A = f - Vf on dataset actions: std {m['advantage_std']:.3f}, mean |A| "
                     f"{m['advantage_abs_mean']:.3f}")
    lines.append(f"  admissible (Qc_hat <= l) vs oracle-feasible s': agreement {m['admissible_agreement']:.3f}, "
                 f"false safe {m['admissible_false_safe']:.3f}, false unsafe {m['admissible_false_unsafe']:.3f}")
    return "\n".join(lines)
