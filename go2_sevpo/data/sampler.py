"""On-device minibatch sampling for offline training.

The whole dataset lives on the training device as ONE packed float matrix (one row per transition:
obs | action | reward | cost | next_obs | terminal | timeout), so a minibatch is one `randint` and one
`index_select` on the device with a dedicated `torch.Generator`: no host round trip, no Python
per-row work, and the draw sequence is reproducible and checkpointable.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from go2_sevpo.data.format import OfflineDataset


class TransitionBatch(NamedTuple):
    observations: torch.Tensor  # (B, obs_dim), normalised if the sampler has a normaliser
    actions: torch.Tensor  # (B, act_dim)
    rewards: torch.Tensor  # (B,)
    costs: torch.Tensor  # (B,)
    next_observations: torch.Tensor  # (B, obs_dim)
    terminals: torch.Tensor  # (B,) float 0/1: true terminal (goal, failure)
    timeouts: torch.Tensor  # (B,) float 0/1: truncated by the time limit
    rows: torch.Tensor | None = None  # (B,) int64: the rows' indices in the dataset (file order)

    def bootstrap_mask(self, timeout_is_terminal: bool = False) -> torch.Tensor:
        """1 where the Bellman target bootstraps from s'. Time-outs are not terminal (the episode was
        only cut); `timeout_is_terminal=True` reproduces FISOR, which stops there as well."""
        done = torch.maximum(self.terminals, self.timeouts) if timeout_is_terminal else self.terminals
        return 1.0 - done


class DeviceSampler:
    def __init__(self, dataset: OfflineDataset, device: str | torch.device, seed: int,
                 normalizer: torch.nn.Module | None = None):
        self.device = torch.device(device)
        self.obs_dim, self.act_dim = dataset.obs_dim, dataset.act_dim
        self.size = len(dataset)
        obs = torch.as_tensor(dataset.observations, device=self.device)
        next_obs = torch.as_tensor(dataset.next_observations, device=self.device)
        if normalizer is not None:
            with torch.no_grad():
                obs, next_obs = normalizer(obs), normalizer(next_obs)
        columns = [
            obs,
            torch.as_tensor(dataset.actions, device=self.device),
            torch.as_tensor(dataset.rewards, device=self.device)[:, None],
            torch.as_tensor(dataset.costs, device=self.device)[:, None],
            next_obs,
            torch.as_tensor(dataset.terminals.astype(np.float32), device=self.device)[:, None],
            torch.as_tensor(dataset.timeouts.astype(np.float32), device=self.device)[:, None],
        ]
        self.table = torch.cat([c.float() for c in columns], dim=1).contiguous()
        self._split = [self.obs_dim, self.act_dim, 1, 1, self.obs_dim, 1, 1]
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))

    def __len__(self) -> int:
        return self.size

    def sample(self, batch_size: int, generator: torch.Generator | None = None,
               rows: torch.Tensor | None = None) -> TransitionBatch:
        """Uniform draw with replacement. A separate `generator` gives a separate, reproducible stream
        (SEVPO's stage 1 uses one, so a cached stage 1 leaves stage 2's stream unchanged). `rows`
        (a 1-D index tensor on the device) restricts the draw to those rows (BC-safe's safe
        trajectories, COptiDICE's initial states)."""
        gen = self.generator if generator is None else generator
        if rows is None:
            idx = torch.randint(0, self.size, (batch_size,), generator=gen, device=self.device)
        else:
            idx = rows[torch.randint(0, rows.numel(), (batch_size,), generator=gen, device=self.device)]
        return self.gather(idx)

    def gather(self, idx: torch.Tensor) -> TransitionBatch:
        obs, act, rew, cost, nobs, term, tout = self.table.index_select(0, idx).split(self._split, dim=1)
        return TransitionBatch(obs, act, rew[:, 0], cost[:, 0], nobs, term[:, 0], tout[:, 0], idx)

    def all(self) -> TransitionBatch:
        """Every transition, in file order (for statistics and full-dataset passes)."""
        return self.gather(torch.arange(self.size, device=self.device))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
