"""Incremental, crash-safe dataset writing.

Collection writes completed chunks of episodes as shard files in `<output>.parts/`, each shard
atomically (temp + rename), so `kill -9` loses at most the chunk in flight. Chunk k's episodes depend
only on (seed, k), so a resumed run skips the shards on disk and produces a final file identical in
content to an uninterrupted run. `finalize` concatenates the shards in order into the output file
(atomically) and removes the parts folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from go2_sevpo.data.format import EXTRAS_GROUP, REQUIRED_KEYS, DatasetError, load_dataset, write_dataset
from go2_sevpo.utils.jobs import atomic_write_text


class ShardedDatasetWriter:
    def __init__(self, output: str | Path, manifest: dict[str, Any]):
        self.output = Path(output)
        self.parts = self.output.with_name(self.output.name + ".parts")
        self.manifest = json.loads(json.dumps(manifest))  # normalise (tuples -> lists) for comparison
        self.parts.mkdir(parents=True, exist_ok=True)
        manifest_path = self.parts / "manifest.json"
        if manifest_path.exists():
            existing = json.loads(manifest_path.read_text())
            if existing != self.manifest:
                diff = sorted(k for k in set(existing) | set(self.manifest) if existing.get(k) != self.manifest.get(k))
                raise DatasetError(
                    f"{self.parts}: unfinished collection with different settings {diff}; "
                    "rerun with the same settings to resume, or delete the folder to start over"
                )
        else:
            atomic_write_text(manifest_path, json.dumps(self.manifest, indent=1, sort_keys=True))

    def shard_path(self, index: int) -> Path:
        return self.parts / f"shard_{index:05d}.h5"

    def has_shard(self, index: int) -> bool:
        return self.shard_path(index).exists()

    def write_shard(self, index: int, arrays: dict[str, np.ndarray], extras: dict[str, np.ndarray]) -> None:
        write_dataset(self.shard_path(index), arrays, extras)

    def finalize(self, num_shards: int, attrs: dict[str, Any]) -> Path:
        missing = [i for i in range(num_shards) if not self.has_shard(i)]
        if missing:
            raise DatasetError(f"{self.parts}: shards {missing[:5]} missing; rerun the collection to fill them")
        shards = [load_dataset(self.shard_path(i)) for i in range(num_shards)]
        arrays = {k: np.concatenate([getattr(s, k) for s in shards]) for k in REQUIRED_KEYS}
        extra_keys = set.intersection(*(set(s.extras) for s in shards)) if shards else set()
        extras = {k: np.concatenate([s.extras[k] for s in shards]) for k in sorted(extra_keys)}
        write_dataset(self.output, arrays, extras, attrs)
        shutil.rmtree(self.parts)
        return self.output


__all__ = ["ShardedDatasetWriter", "EXTRAS_GROUP"]
