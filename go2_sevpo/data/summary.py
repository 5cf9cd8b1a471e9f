"""Human-readable summary of a dataset file (what `data_collection/inspect.py` prints)."""

from __future__ import annotations

import numpy as np

from go2_sevpo.data.format import SOURCE_NAMES, OfflineDataset


def safe_mask(ds: OfflineDataset, cost_limit: float) -> np.ndarray:
    """Per trajectory: undiscounted episode cost <= the episode cost limit (DATA.md)."""
    return ds.episode_costs() <= cost_limit + 1e-9


def episode_sources(ds: OfflineDataset) -> list[str] | None:
    if "source" not in ds.extras:
        return None
    names = ds.attrs.get("source_names", list(SOURCE_NAMES))
    starts = ds.episode_bounds()[:, 0]
    return [names[int(c)] if int(c) < len(names) else str(int(c)) for c in ds.extras["source"][starts]]


def _stats(x: np.ndarray) -> str:
    q = np.percentile(x, [0, 25, 50, 75, 100])
    return f"mean {x.mean():.3f}  min {q[0]:.3f}  p25 {q[1]:.3f}  median {q[2]:.3f}  p75 {q[3]:.3f}  max {q[4]:.3f}"


def summarize(ds: OfflineDataset, cost_limit: float | None = None) -> str:
    if cost_limit is None:
        cost_limit = float(ds.attrs.get("cost_limit", 0.0))
    bounds = ds.episode_bounds()
    lengths = bounds[:, 1] - bounds[:, 0]
    safe = safe_mask(ds, cost_limit)
    n_safe, n_unsafe = int(safe.sum()), int((~safe).sum())
    ratio = f"{n_safe / n_unsafe:.2f}:1" if n_unsafe else "all safe"
    lines = [
        f"file          {ds.path}",
        f"env           {ds.attrs.get('env', 'unknown')}",
        f"transitions   {len(ds)}   obs_dim {ds.obs_dim}   act_dim {ds.act_dim}",
        f"trajectories  {len(bounds)}   terminals {int(ds.terminals.sum())}   timeouts {int(ds.timeouts.sum())}",
        f"length        {_stats(lengths.astype(float))}",
        f"return        {_stats(ds.episode_returns())}",
        f"cost          {_stats(ds.episode_costs())}",
        f"safe:unsafe   {n_safe}:{n_unsafe} ({ratio}) at episode cost limit {cost_limit:g}",
    ]
    sources = episode_sources(ds)
    if sources is not None:
        names, counts = np.unique(sources, return_counts=True)
        lines.append("sources       " + "  ".join(f"{n} {c}" for n, c in zip(names, counts)))
    if "success" in ds.extras:
        success = np.add.reduceat(ds.extras["success"].astype(int), bounds[:, 0]) > 0
        lines.append(f"success rate  {success.mean():.3f}")
    recipe = ds.attrs.get("recipe")
    if recipe:
        lines.append(f"recipe        {recipe}")
    return "\n".join(lines)
