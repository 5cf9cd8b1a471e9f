"""The dataset format: one HDF5 file in DSRL's layout, plus optional extras.

Required keys (DSRL): observations, next_observations, actions, rewards, costs, terminals, timeouts.
DSRL stores rewards/costs either as (N,) or (N, 1) and flags as bool or uint8; the reader accepts all
of these and returns flat arrays. Optional: file attributes (schema version, env, recipe, ...) and
per-transition arrays under the group `extras/` (source label, success, termination reason, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("observations", "next_observations", "actions", "rewards", "costs", "terminals", "timeouts")
EXTRAS_GROUP = "extras"
# Source labels stored in extras/source (uint8); the file attribute `source_names` maps them back.
# New names go at the end: earlier files keep their labels.
SOURCE_NAMES = ("unknown", "expert", "random", "weak", "mixed", "reckless")
# Larger magnitudes in observations, actions, rewards or costs are refused: their squares overflow
# float32 (~3e38) in the losses, and no sensor or reward of these tasks comes near.
MAX_ABS_VALUE = 1e6


class DatasetError(ValueError):
    """An invalid dataset file; the message is one line naming the file and the problem."""


@dataclass
class OfflineDataset:
    """A validated dataset in host memory (numpy). `to_device` moves it for training."""

    observations: np.ndarray  # (N, obs_dim) float32
    next_observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32 in [-1, 1]
    rewards: np.ndarray  # (N,) float32
    costs: np.ndarray  # (N,) float32
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray  # (N,) bool
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def episode_bounds(self) -> np.ndarray:
        """(E, 2) array of [start, end) row ranges, one per trajectory."""
        ends = np.flatnonzero(self.terminals | self.timeouts) + 1
        starts = np.concatenate([[0], ends[:-1]])
        return np.stack([starts, ends], axis=1)

    def episode_sums(self, values: np.ndarray) -> np.ndarray:
        bounds = self.episode_bounds()
        cums = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
        return cums[bounds[:, 1]] - cums[bounds[:, 0]]

    def discounted_to_go(self, values: np.ndarray, gamma: float) -> np.ndarray:
        """(N,) float64, per row t: sum over the rest of its trajectory of gamma^(k - t) values[k]
        (a trajectory cut by a time-out counts only what it recorded). The recursion G_t = v_t +
        gamma G_(t+1) runs backwards over the step index, all trajectories at once."""
        bounds = self.episode_bounds()
        lengths = bounds[:, 1] - bounds[:, 0]
        local = np.arange(len(values)) - np.repeat(bounds[:, 0], lengths)  # step within its trajectory
        episode = np.repeat(np.arange(len(bounds)), lengths)
        padded = np.zeros((len(bounds), int(lengths.max()) + 1))
        padded[episode, local] = values
        for t in range(padded.shape[1] - 2, -1, -1):
            padded[:, t] += gamma * padded[:, t + 1]
        return padded[episode, local]

    def episode_returns(self) -> np.ndarray:
        return self.episode_sums(self.rewards)

    def episode_costs(self) -> np.ndarray:
        return self.episode_sums(self.costs)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in REQUIRED_KEYS}

    def fingerprint(self) -> str:
        """Content hash: caches derived from a dataset (stage-1 critics) are keyed by it."""
        import hashlib

        h = hashlib.sha256()
        for k in REQUIRED_KEYS:
            a = np.ascontiguousarray(getattr(self, k))
            h.update(k.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]


def _fail(path: str | Path, problem: str) -> DatasetError:
    return DatasetError(f"{path}: {problem}")


def load_dataset(path: str | Path, obs_dim: int | None = None, act_dim: int | None = None) -> OfflineDataset:
    """Read and validate a dataset; every problem is a one-line `DatasetError`."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _fail(path, f"not a readable HDF5 file (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    with f:
        # A damaged file can fail anywhere inside HDF5 (a link check, a chunk index, a filter), with
        # any of h5py's exception types: each is one line naming the file.
        try:
            missing = [k for k in REQUIRED_KEYS if k not in f]
            if missing:
                raise _fail(path, f"missing required key(s) {missing}")
            raw = {k: f[k][()] for k in REQUIRED_KEYS}
            extras = {k: f[EXTRAS_GROUP][k][()] for k in f[EXTRAS_GROUP]} if EXTRAS_GROUP in f else {}
            attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
        except DatasetError:
            raise
        except Exception as e:  # noqa: BLE001 - see above
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise _fail(path, f"unreadable data (truncated or corrupt?): {first}") from None
    ds = _validate(path, raw, obs_dim, act_dim)
    ds.extras, ds.attrs, ds.path = _validate_extras(path, extras, len(ds)), attrs, str(path)
    return ds


def _validate_extras(path: Path, extras: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    for k, a in extras.items():
        if not isinstance(a, np.ndarray) or a.ndim == 0 or a.shape[0] != n:
            raise _fail(path, f"{EXTRAS_GROUP}/{k} must have one row per transition ({n}), got shape {np.shape(a)}")
        if not _is_real(a.dtype):
            raise _fail(path, f"{EXTRAS_GROUP}/{k} has non-numeric dtype {a.dtype}")
    return extras


def _is_real(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.bool_)


def _decode_attr(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _validate(path: Path, raw: dict[str, np.ndarray], obs_dim: int | None, act_dim: int | None) -> OfflineDataset:
    obs, nobs, act = raw["observations"], raw["next_observations"], raw["actions"]
    if obs.ndim != 2:
        raise _fail(path, f"observations must be (N, obs_dim), got shape {obs.shape}")
    n = obs.shape[0]
    if n == 0:
        raise _fail(path, "dataset is empty")
    if nobs.shape != obs.shape:
        raise _fail(path, f"next_observations shape {nobs.shape} != observations shape {obs.shape}")
    if act.ndim != 2 or act.shape[0] != n:
        raise _fail(path, f"actions must be (N={n}, act_dim), got shape {act.shape}")
    flat = {}
    for k in ("rewards", "costs", "terminals", "timeouts"):
        a = raw[k]
        if a.ndim == 2 and a.shape[1] == 1:  # DSRL sometimes stores (N, 1)
            a = a[:, 0]
        if a.shape != (n,):
            raise _fail(path, f"{k} must have shape ({n},) or ({n}, 1), got {raw[k].shape}")
        flat[k] = a
    for k in ("terminals", "timeouts"):
        if not _is_real(flat[k].dtype):
            raise _fail(path, f"{k} has non-numeric dtype {flat[k].dtype} (0/1 flags expected)")
    for k, a in (("observations", obs), ("next_observations", nobs), ("actions", act),
                 ("rewards", flat["rewards"]), ("costs", flat["costs"])):
        if not _is_real(a.dtype) or np.issubdtype(a.dtype, np.bool_):
            raise _fail(path, f"{k} has non-numeric dtype {a.dtype}")
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise _fail(path, f"{k} contains NaN or inf (first at row {row})")
        info = np.finfo(a.dtype) if np.issubdtype(a.dtype, np.floating) else np.iinfo(a.dtype)
        if float(info.max) > MAX_ABS_VALUE and (a.max() > MAX_ABS_VALUE or a.min() < -MAX_ABS_VALUE):  # no N-sized temporaries
            huge = np.abs(a) > MAX_ABS_VALUE
            row = int(np.argwhere(huge)[0][0])
            raise _fail(path, f"{k} has values beyond +-{MAX_ABS_VALUE:g} (first at row {row}: {a.flat[np.argmax(huge)]:.3g}); "
                        "corrupt, or unscaled data")
    out_of_range = np.abs(act) > 1.0 + 1e-6
    if out_of_range.any():
        row = int(np.argwhere(out_of_range)[0][0])
        raise _fail(path, f"actions outside [-1, 1] (first at row {row}, max |a| = {np.abs(act).max():.3g})")
    terminals, timeouts = flat["terminals"].astype(bool), flat["timeouts"].astype(bool)
    if not (terminals[-1] or timeouts[-1]):
        raise _fail(path, "the last trajectory has no end flag (terminals or timeouts)")
    check_dims(path, obs.shape[1], act.shape[1], obs_dim, act_dim)
    return OfflineDataset(
        observations=obs.astype(np.float32, copy=False),
        next_observations=nobs.astype(np.float32, copy=False),
        actions=act.astype(np.float32, copy=False),
        rewards=flat["rewards"].astype(np.float32, copy=False),
        costs=flat["costs"].astype(np.float32, copy=False),
        terminals=terminals,
        timeouts=timeouts,
    )


def check_dims(path: str | Path, file_obs_dim: int, file_act_dim: int, obs_dim: int | None, act_dim: int | None) -> None:
    """The file's observation / action sizes against the env's (None = not checked)."""
    if obs_dim is not None and file_obs_dim != obs_dim:
        raise _fail(path, f"observation dim {file_obs_dim} does not match the env's {obs_dim}")
    if act_dim is not None and file_act_dim != act_dim:
        raise _fail(path, f"action dim {file_act_dim} does not match the env's {act_dim}")


def write_dataset(path: str | Path, arrays: dict[str, np.ndarray], extras: dict[str, np.ndarray] | None = None,
                  attrs: dict[str, Any] | None = None) -> None:
    """Write a complete dataset atomically (temp file + rename): a reader never sees half a file. A
    disk without room for the uncompressed arrays is refused before writing (HDF5 can crash, not
    fail, when the disk fills under it); a full disk is one line (DiskFull), no temp left behind."""
    from go2_sevpo.utils.jobs import atomic_path, check_free_space  # (utils.errors imports this module)

    path = Path(path)
    raw_bytes = sum(np.asarray(a).nbytes for a in [*arrays.values(), *(extras or {}).values()])
    check_free_space(path, raw_bytes + (1 << 20))
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for k in REQUIRED_KEYS:
            a = np.asarray(arrays[k])
            if k in ("terminals", "timeouts"):
                a = a.astype(np.uint8)  # DSRL's dtype
            elif a.dtype != np.float32:
                a = a.astype(np.float32)
            # fletcher32: HDF5 checks each chunk on read, so a flipped bit in the data is an error, not a value.
            f.create_dataset(k, data=a, compression="gzip", compression_opts=1, shuffle=True, fletcher32=True)
        if extras:
            g = f.create_group(EXTRAS_GROUP)
            for k, a in extras.items():
                g.create_dataset(k, data=np.asarray(a), compression="gzip", compression_opts=1, fletcher32=True)
        f.attrs["schema_version"] = SCHEMA_VERSION
        for k, v in (attrs or {}).items():
            if v is None:
                continue  # HDF5 attributes cannot hold None; absence means unknown
            f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list, tuple)) else v
