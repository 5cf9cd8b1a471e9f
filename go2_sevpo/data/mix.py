"""Build a dataset at a stated safe:unsafe trajectory ratio from source files (DATA.md).

Whole trajectories are kept. Safe trajectories (episode cost <= the cost limit) come from the safe
sources, unsafe ones from the unsafe sources; the unsafe side is drawn without replacement while it
lasts and with replacement beyond that (the papers duplicate unsafe data). The result is shuffled at
trajectory level and records its recipe in the file's attributes.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field

import numpy as np

from go2_sevpo.data.format import REQUIRED_KEYS, DatasetError, OfflineDataset, load_dataset, write_dataset
from go2_sevpo.data.summary import safe_mask


@dataclass
class MixRecipe:
    name: str
    ratio: float  # safe:unsafe trajectories, e.g. 19 for 19:1
    num_safe: int  # safe trajectories to take
    safe_sources: list[str] = field(default_factory=list)
    unsafe_sources: list[str] = field(default_factory=list)
    cost_limit: float = 0.0
    seed: int = 0


def _trajectories(ds: OfflineDataset, want_safe: bool, cost_limit: float) -> list[tuple[OfflineDataset, int, int]]:
    keep = safe_mask(ds, cost_limit) == want_safe
    return [(ds, int(s), int(e)) for (s, e), k in zip(ds.episode_bounds(), keep) if k]


def mix(recipe: MixRecipe, output: str, obs_dim: int | None = None, act_dim: int | None = None) -> str:
    rng = np.random.default_rng(recipe.seed)
    load = lambda p: load_dataset(p, obs_dim, act_dim)  # noqa: E731
    safe_pool = [t for p in recipe.safe_sources for t in _trajectories(load(p), True, recipe.cost_limit)]
    unsafe_pool = [t for p in recipe.unsafe_sources for t in _trajectories(load(p), False, recipe.cost_limit)]
    if len(safe_pool) < recipe.num_safe:
        raise DatasetError(f"recipe '{recipe.name}': needs {recipe.num_safe} safe trajectories, the sources "
                           f"{recipe.safe_sources} hold {len(safe_pool)}; collect more expert episodes")
    num_unsafe = int(round(recipe.num_safe / recipe.ratio))
    if num_unsafe and not unsafe_pool:
        raise DatasetError(f"recipe '{recipe.name}': the unsafe sources {recipe.unsafe_sources} hold no unsafe trajectory")
    safe_idx = rng.choice(len(safe_pool), recipe.num_safe, replace=False)
    unsafe_idx = rng.choice(len(unsafe_pool), num_unsafe, replace=num_unsafe > len(unsafe_pool))
    chosen = [safe_pool[i] for i in safe_idx] + [unsafe_pool[i] for i in unsafe_idx]
    return _write(chosen, rng, output, recipe.cost_limit,
                  {**asdict(recipe), "num_unsafe": num_unsafe,
                   "unsafe_with_replacement": bool(num_unsafe > len(unsafe_pool))})


@dataclass
class SourceMixRecipe:
    """Whole trajectories counted per source file, whatever their cost (the papers' Go2 data:
    6,000 expert + 3,000 low-quality trajectories)."""

    name: str
    counts: dict[str, int]  # source file -> trajectories drawn from it (without replacement)
    cost_limit: float = 0.0  # recorded only (and used by readers to call a trajectory safe)
    seed: int = 0


def mix_by_source(recipe: SourceMixRecipe, output: str, obs_dim: int | None = None,
                  act_dim: int | None = None) -> str:
    rng = np.random.default_rng(recipe.seed)
    chosen, envs, policies = [], set(), {}
    for path, count in recipe.counts.items():
        ds = load_dataset(path, obs_dim, act_dim)
        envs.add(ds.attrs.get("env"))
        # Provenance: which policy file made each source (collect.py records it).
        policies[path] = {k: ds.attrs.get(f"policy_checkpoint{s}") for k, s in (("file", ""), ("sha256", "_sha256"))}
        bounds = ds.episode_bounds()
        if count > len(bounds):
            raise DatasetError(f"recipe '{recipe.name}': wants {count} trajectories from {path}, which holds "
                               f"{len(bounds)}; collect more episodes")
        chosen += [(ds, int(bounds[i][0]), int(bounds[i][1])) for i in rng.choice(len(bounds), count, replace=False)]
    envs.discard(None)
    if len(envs) > 1:
        raise DatasetError(f"recipe '{recipe.name}': the sources were collected on different envs {sorted(envs)}")
    if not chosen:
        raise DatasetError(f"recipe '{recipe.name}': no trajectories asked for")
    return _write(chosen, rng, output, recipe.cost_limit, {**asdict(recipe), "source_policies": policies})


def _write(chosen: list[tuple[OfflineDataset, int, int]], rng: np.random.Generator, output: str, cost_limit: float,
           recipe: dict) -> str:
    """Shuffle the chosen trajectories, concatenate them and write the file with the recipe attached."""
    order = rng.permutation(len(chosen))
    chosen = [chosen[i] for i in order]
    arrays = {k: np.concatenate([getattr(ds, k)[s:e] for ds, s, e in chosen]) for k in REQUIRED_KEYS}
    extra_keys = set.intersection(*(set(ds.extras) for ds, _, _ in chosen))
    extras = {k: np.concatenate([ds.extras[k][s:e] for ds, s, e in chosen]) for k in sorted(extra_keys)}
    first = chosen[0][0]
    attrs = {
        "env": first.attrs.get("env"),
        "env_config": first.attrs.get("env_config"),
        "cost_limit": cost_limit,
        "source_names": first.attrs.get("source_names"),
        "recipe": recipe,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_dataset(output, arrays, extras, attrs)
    return output
