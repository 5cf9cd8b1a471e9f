"""Reach-avoid extras for an evaluation: the learned safe region against the oracle's largest feasible
region (IoU on an (x, y) grid at fixed speed and heading) and a plot of the evaluated trajectories
over the hazard, learned region beside the oracle's."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from go2_sevpo.envs.reach_avoid import ARENA, GOAL_CENTER, GOAL_RADIUS, HAZARD_CENTER, HAZARD_RADIUS, PAPER_START, observe
from go2_sevpo.envs.reach_avoid_oracle import iou, region_grid
from go2_sevpo.utils.jobs import save_figure

GRID = 121
# The IoU reported as `region_iou` is at the papers' start speed and heading; `region_iou_mean`
# averages over these (v, theta) slices as well.
SLICES = [(PAPER_START[2], PAPER_START[3])] + [(v, th) for v in (0.6, 1.8) for th in (0.0, math.pi / 2, math.pi, -math.pi / 2)]


def learned_region(safe_set: Callable[[torch.Tensor], torch.Tensor | None], v: float, theta: float):
    xs, ys, oracle = region_grid(v, theta, resolution=GRID, extent=ARENA)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    states = torch.stack([gx, gy, torch.full_like(gx, v), torch.full_like(gx, theta)], dim=-1).reshape(-1, 4)
    learned = safe_set(observe(states))
    if learned is None:
        return xs, ys, None, oracle
    return xs, ys, learned.reshape(oracle.shape).cpu(), oracle


def report(result, safe_set, plot_dir: Path | None, tag: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    xs, ys, learned, oracle = learned_region(safe_set, *SLICES[0])
    if learned is not None:
        # Over the whole arena most states are feasible (92.7% on the reported slice), so "all safe"
        # already scores IoU 0.93: the IoU of the INFEASIBLE sets and the two error rates say more.
        out["region_iou"] = iou(learned, oracle)
        out["unsafe_region_iou"] = iou(~learned, ~oracle)
        out["region_false_safe"] = float((learned & ~oracle).sum() / max(int((~oracle).sum()), 1))
        out["region_false_unsafe"] = float((~learned & oracle).sum() / max(int(oracle.sum()), 1))
        ious = [out["region_iou"]] + [iou(*learned_region(safe_set, v, th)[2:]) for v, th in SLICES[1:]]
        out["region_iou_mean"] = float(np.mean(ious))
        out["region_iou_slices"] = [{"v": v, "theta": th, "iou": x} for (v, th), x in zip(SLICES, ious)]
    if plot_dir is not None:
        plot_dir.mkdir(parents=True, exist_ok=True)
        name = f"reach_avoid_{result.start}{('_' + tag) if tag else ''}.png"
        plot(result, xs, ys, learned, oracle, plot_dir / name, out.get("region_iou"))
        out["plot"] = str(plot_dir / name)
    return out


def plot(result, xs, ys, learned, oracle, path: Path, region_iou: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("learned safe region (Vc_hat <= l)", learned), ("oracle largest feasible region", oracle)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    extent = (float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1]))
    for ax, (title, mask) in zip(axes, panels):
        if mask is not None:
            ax.imshow(mask.float().numpy(), origin="lower", extent=extent, cmap="Greens", vmin=-0.5, vmax=1.5, alpha=0.6)
        ax.add_patch(plt.Circle(HAZARD_CENTER, HAZARD_RADIUS, color="tab:red", alpha=0.35, label="hazard"))
        ax.add_patch(plt.Circle(GOAL_CENTER, GOAL_RADIUS, color="tab:orange", alpha=0.6, label="goal"))
        for k in range(result.trajectories.shape[1]):
            alive = result.alive[:, k]
            xy = result.trajectories[alive, k, :2]
            ok = result.records.costs[k] == 0
            ax.plot(xy[:, 0], xy[:, 1], lw=1.0, color="tab:blue" if ok else "tab:red", alpha=0.8)
            ax.plot(xy[0, 0], xy[0, 1], "o", ms=3, color="tab:green")
        ax.set_xlim(-ARENA, ARENA)
        ax.set_ylim(-ARENA, ARENA)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
    m = result.metrics
    suptitle = (f"start={result.start}  success {m['success_rate']:.2f}  mean cost {m['mean_cost']:.2f}  "
                f"failure {m['failure_rate']:.2f}  (slice v={SLICES[0][0]}, theta={SLICES[0][1]:.2f})")
    if region_iou is not None:
        suptitle += f"  IoU {region_iou:.3f}"
    fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
