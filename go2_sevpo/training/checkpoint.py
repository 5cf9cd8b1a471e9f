"""Atomic checkpoint files: write to a temporary file in the same folder, fsync, then rename over the
old one (utils/jobs.py). A `kill -9` or a full disk at any moment leaves either the previous complete
file or the new one."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from go2_sevpo.utils.errors import CheckpointError
from go2_sevpo.utils.jobs import atomic_write_bytes

CHECKPOINT_FORMAT = 1


def atomic_save(payload: Any, path: str | Path) -> None:
    """torch.save, atomically; serialised in memory first, so a full disk is a clean OSError (DiskFull)
    rather than a failure inside torch's zip writer."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def load_file(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """torch.load with one-line errors for a missing, truncated or corrupt file.

    Loading is safe: `weights_only=True`, so a file can hold tensors, numbers, strings and containers
    of them (everything our checkpoints and caches hold) but nothing that runs code when unpickled;
    a file that needs more (someone else's pickle, a tampered run folder) is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # a class or function the file wants to rebuild or call
            raise CheckpointError(f"{path}: refused: the file holds Python objects beyond tensors and plain data, "
                                  "which only an unsafe load could rebuild (not a checkpoint of this project?)") from None
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt?): not a valid torch file") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt?): {first}") from None


def changed_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts: what stops a resume."""
    keys = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += changed_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(prefix + k)
    return keys
