"""The formulas of SEVPO that could be silently wrong: expectile directions, Bellman targets, region
masks and weights, the sign handling of f, and the acting rule."""

import math

import torch

from go2_sevpo.algorithms.sevpo import (
    SEVPOConfig,
    actor_weights,
    cost_critic_target,
    expectile_loss,
    policy_critic_targets,
    reversed_expectile_loss,
    safe_region_objective,
    first_admissible_index,
    select_action_index,
)
from go2_sevpo.data.sampler import TransitionBatch


def fit_scalar(loss_fn, samples: torch.Tensor, tau: float) -> float:
    """argmin_v loss(samples - v) by gradient descent (the loss is convex in v)."""
    v = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([v], lr=0.05)
    for _ in range(1500):
        opt.zero_grad()
        loss_fn(samples - v, tau).backward()
        opt.step()
    return float(v.detach())


def test_reversed_expectile_fits_a_low_expectile():
    samples = torch.linspace(0.0, 10.0, 1001)  # mean 5
    low = fit_scalar(reversed_expectile_loss, samples, 0.9)
    high = fit_scalar(expectile_loss, samples, 0.9)
    assert low < 3.0, "Vc_hat must sit BELOW the mean of Qc_hat (a soft min over dataset actions)"
    assert high > 7.0, "IQL's expectile (used for Vf) sits above the mean"
    assert abs(low - (10.0 - high)) < 0.05  # mirror images on a symmetric sample


def test_reversed_expectile_weights():
    # u = Qc_hat - Vc_hat > 0 (target above the prediction) weighs 1 - tau; u < 0 weighs tau.
    assert math.isclose(float(reversed_expectile_loss(torch.tensor([2.0]), 0.9)), 0.1 * 4.0, rel_tol=1e-6)
    assert math.isclose(float(reversed_expectile_loss(torch.tensor([-2.0]), 0.9)), 0.9 * 4.0, rel_tol=1e-6)


def batch(terminals, timeouts) -> TransitionBatch:
    n = len(terminals)
    z = torch.zeros(n)
    return TransitionBatch(torch.zeros(n, 1), torch.zeros(n, 1), z, z, torch.zeros(n, 1),
                           torch.tensor(terminals, dtype=torch.float32), torch.tensor(timeouts, dtype=torch.float32))


def test_bootstrap_mask_terminals_vs_timeouts():
    b = batch([1, 0, 0], [0, 1, 0])  # terminal, time-out, running
    assert b.bootstrap_mask(False).tolist() == [0.0, 1.0, 1.0]  # time-outs bootstrap (spec default)
    assert b.bootstrap_mask(True).tolist() == [0.0, 0.0, 1.0]  # FISOR's switch stops there too


def test_stage1_target_absorbing_form():
    cfg = SEVPOConfig(gamma=0.99, alpha=0.99)
    costs = torch.tensor([1.0, 0.0, 1.0])
    next_v = torch.tensor([5.0, 5.0, 5.0])
    mask = torch.tensor([1.0, 1.0, 0.0])
    target = cost_critic_target(costs, next_v, mask, cfg)
    # (1 - alpha) c + alpha (c + gamma V) = c + alpha gamma V; terminal: c only.
    expected = [(1 - 0.99) * 1 + 0.99 * (1 + 0.99 * 5), 0.99 * 0.99 * 5, 1.0]
    assert torch.allclose(target, torch.tensor(expected), atol=1e-6)


def test_stage1_target_hj():
    cfg = SEVPOConfig(gamma=0.9, cost_transform="hj", hj_cost_scale=25.0)
    costs = torch.tensor([1.0, 0.0, 0.0, 0.0])
    next_v = torch.tensor([-3.0, -3.0, 7.0, 7.0])
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0])
    target = cost_critic_target(costs, next_v, mask, cfg)
    expected = [0.1 * 25 + 0.9 * 25, 0.1 * -1 + 0.9 * -1, 0.1 * -1 + 0.9 * 7, -1.0]
    assert torch.allclose(target, torch.tensor(expected), atol=1e-5)


def test_stage2_targets_terminal_and_timeout():
    b = batch([1, 0, 0], [0, 1, 0])
    r, c = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 0.0])
    next_qr, next_qc = torch.full((3,), 10.0), torch.full((3,), 4.0)
    tr, tc = policy_critic_targets(r, c, next_qr, next_qc, b.bootstrap_mask(False), 0.99)
    assert torch.allclose(tr, torch.tensor([1.0, 2.0 + 9.9, 3.0 + 9.9]))
    assert torch.allclose(tc, torch.tensor([0.0, 1.0 + 3.96, 3.96]))
    tr, _ = policy_critic_targets(r, c, next_qr, next_qc, b.bootstrap_mask(True), 0.99)
    assert torch.allclose(tr, torch.tensor([1.0, 2.0, 3.0 + 9.9]))


def test_objective_f_paper_form():
    delta = 0.5
    qr = torch.tensor([4.0, 4.0, -4.0, 4.0, -4.0])
    qc = torch.tensor([0.2, 2.0, 2.0, 4.0, 4.0])
    f = safe_region_objective(qr, qc, delta, "paper")
    assert torch.allclose(f, torch.tensor([4.0, 2.0, -8.0, 1.0, -16.0]))  # Qr, Qr/Qc, Qr*Qc
    # The flaw that made `shifted` the default: just above delta (< 1), dividing RAISES f.
    assert float(safe_region_objective(torch.tensor([3.0]), torch.tensor([0.6]), delta, "paper")) > 3.0


def test_objective_f_shifted_form_penalises_for_either_sign():
    delta = 0.5
    f = safe_region_objective(torch.tensor([4.0, 4.0, -4.0]), torch.tensor([0.2, 2.5, 2.5]), delta, "shifted")
    assert torch.allclose(f, torch.tensor([4.0, 4.0 / 3.0, -12.0]))
    for r in (3.0, -3.0):
        costs = torch.linspace(0.0, 10.0, 201)
        values = safe_region_objective(torch.full_like(costs, r), costs, delta, "shifted")
        assert bool((values[1:] <= values[:-1] + 1e-6).all()), "more cost must never raise f"
        assert torch.allclose(values[costs <= delta], torch.tensor(r))  # no penalty up to delta
        just_above = safe_region_objective(torch.tensor([r]), torch.tensor([delta + 1e-4]), delta, "shifted")
        assert abs(float(just_above) - r) < 1e-3  # continuous at delta


def test_actor_weights_masks_clipping_and_sign():
    cfg = SEVPOConfig(mu_safe=3.0, mu_unsafe=5.0, max_safe_weight=100.0, max_unsafe_weight=150.0)
    adv = torch.tensor([0.0, 1.0, 10.0, 10.0, 10.0, 0.0])
    cost_adv = torch.tensor([0.0, 0.0, 0.0, 0.0, -10.0, 0.5])
    safe = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    admissible = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    w_safe, w_unsafe = actor_weights(adv, cost_adv, safe, admissible, cfg)
    assert torch.allclose(w_safe, torch.tensor([1.0, math.exp(3.0), 100.0, 0.0, 0.0, 0.0]), rtol=1e-5)
    assert torch.allclose(w_unsafe, torch.tensor([0.0, 0.0, 0.0, 0.0, 150.0, math.exp(-2.5)]), rtol=1e-5)
    # huge advantages must clip, not overflow to inf/nan
    w_safe, w_unsafe = actor_weights(torch.tensor([1e4]), torch.tensor([-1e4]), torch.tensor([1.0]),
                                     torch.tensor([1.0]), cfg)
    assert float(w_safe) == 100.0 and float(w_unsafe) == 0.0
    _, w_unsafe = actor_weights(torch.tensor([0.0]), torch.tensor([-1e4]), torch.tensor([0.0]), torch.tensor([1.0]), cfg)
    assert float(w_unsafe) == 150.0


def test_acting_rule():
    l = 0.1
    qc_hat = torch.tensor([
        [0.05, 0.50, 0.01, 0.08],  # safe state: admissible 0, 2, 3; f is highest at 1 (inadmissible)
        [0.50, 0.30, 0.90, 0.20],  # safe state, nothing admissible -> least Qc_hat (3)
        [0.05, 0.50, 0.01, 0.08],  # unsafe state -> least Qc_hat (2), whatever f says
    ])
    f = torch.tensor([[1.0, 9.0, 2.0, 3.0], [5.0, 1.0, 1.0, 1.0], [9.0, 9.0, 0.0, 9.0]])
    safe = torch.tensor([True, True, False])
    assert select_action_index(qc_hat, f, safe, l).tolist() == [3, 3, 2]


def test_admissible_acting_rule_ignores_the_reward_critic():
    l = 0.1
    qc_hat = torch.tensor([
        [0.50, 0.05, 0.01, 0.08],  # safe state: first admissible candidate is 1 (not the least Qc_hat, 2)
        [0.50, 0.30, 0.90, 0.20],  # safe state, nothing admissible -> least Qc_hat (3)
        [0.05, 0.50, 0.01, 0.08],  # unsafe state -> least Qc_hat (2)
        [0.01, 0.05, 0.00, 0.08],  # safe state, all admissible -> the first draw (0)
    ])
    safe = torch.tensor([True, True, False, True])
    assert first_admissible_index(qc_hat, safe, l).tolist() == [1, 3, 2, 0]


def test_filtered_acting_rule_needs_both_cost_tests():
    l = 0.1
    qc_hat = torch.tensor([[0.05, 0.01, 0.02], [0.05, 0.01, 0.02], [0.05, 0.01, 0.02]])
    passed = torch.tensor([[False, False, True], [False, False, False], [True, True, True]])  # Qc <= delta
    safe = torch.tensor([True, True, False])
    fallback = torch.tensor([1, 0, 2])
    assert first_admissible_index(qc_hat, safe, l, passed, fallback).tolist() == [2, 0, 2]


def test_mode_rule_picks_the_dense_cluster_in_any_scale_and_dimension():
    from go2_sevpo.algorithms.common import mode_index

    torch.manual_seed(0)
    for dim in (2, 12):
        cluster = 0.4 + 0.02 * torch.randn(4, dim)  # the expert-like mode: 4 close candidates
        spread = 2 * torch.rand(8, dim) - 1  # random-policy-like candidates all over the box
        candidates = torch.cat([spread[:3], cluster, spread[3:]])[None]  # the cluster is not first: indices 3-6
        everyone = torch.ones(1, 12, dtype=torch.bool)
        assert 3 <= mode_index(candidates, everyone).item() <= 6
        assert 3 <= mode_index(10 * candidates, everyone).item() <= 6  # no scale is tuned
        no_cluster = everyone.clone()
        no_cluster[0, 3:7] = False  # the mask is respected: never a candidate that did not pass
        assert mode_index(candidates, no_cluster).item() not in range(3, 7)


def test_mode_rule_prefers_both_cost_tests_then_the_admissible_ones():
    from go2_sevpo.algorithms.common import mode_of_tested_index

    c = torch.tensor([[0.0, 0.0], [0.5, 0.5], [0.52, 0.5], [0.5, 0.52], [-0.9, 0.9]])
    candidates = c[None].repeat(4, 1, 1)  # 4 states x 5 candidates; 1-3 are the dense cluster
    admissible = torch.tensor([[True] * 5, [True] * 5, [False] * 5, [True] * 5])
    second = torch.tensor([[True, False, False, False, True]] + [[False] * 5] * 3)  # e.g. Qc <= delta
    safe = torch.tensor([True, True, True, False])
    fallback = torch.tensor([4, 4, 4, 4])
    index = mode_of_tested_index(candidates, [admissible, second], safe, fallback).tolist()
    assert index[0] in (0, 4)  # both tests passed by 0 and 4 only: the cluster is not eligible
    assert index[1] in (1, 2, 3)  # none passes both: the mode of the admissible ones
    assert index[2:] == [4, 4]  # nothing admissible / an unsafe state: the fallback


def test_advantage_normalization_makes_the_weights_scale_free():
    from go2_sevpo.algorithms.sevpo import running_std

    torch.manual_seed(0)
    a = torch.randn(4096)
    s1 = running_std(a, torch.ones(()), step=0)
    s100 = running_std(100 * a, torch.ones(()), step=0)
    assert torch.allclose(a / s1, (100 * a) / s100, atol=1e-5)  # the same weights on any reward scale
    # later steps move the running value 1% of the way to the batch std
    assert torch.isclose(running_std(0 * a, s1, step=7), 0.99 * s1, rtol=1e-5)


def test_per_state_unsafe_weights_rank_each_states_samples():
    from go2_sevpo.algorithms.sevpo import per_state_unsafe_weights

    cost_q = torch.tensor([[2.0, 1.0, 3.0], [5.0, 5.0, 5.0], [0.0, 9.0, 9.0]])
    safe = torch.tensor([0.0, 0.0, 1.0])
    w = per_state_unsafe_weights(cost_q, safe, mu_unsafe=5.0)
    assert torch.allclose(w.sum(1), torch.tensor([1.0, 1.0, 0.0]))  # one unit per unsafe state, none in safe ones
    assert w[0].argmax() == 1 and w[0, 1] > 0.99  # the sample with the lowest conservative cost dominates
    assert torch.allclose(w[1], torch.full((3,), 1 / 3))  # equal costs: equal weights
