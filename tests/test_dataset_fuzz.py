"""Corruption fuzz test of the dataset reader: a valid file with bytes flipped, truncated, datasets'
dtypes and shapes changed, keys renamed, values set to inf / NaN / 1e30. Every case must end in a valid
load (when the change is harmless) or a one-line DatasetError, never another exception or a crash. All
cases go through `load_dataset` + `summarize` (what inspect.py runs) in one subprocess, so a crash in
HDF5's C library would show as a failed test, not a dead test runner; one case per kind also goes
through inspect.py and offline/train.py as a user runs them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from sevpo_testdata import TINY_OVERRIDES, rollout_arrays, run_repo_script

from go2_sevpo.data.format import REQUIRED_KEYS, write_dataset

SEED = 0
FLOAT_KEYS = ("observations", "next_observations", "actions", "rewards", "costs")


def base_file(path: Path) -> Path:
    arrays = rollout_arrays(num_envs=24, steps=30, seed=SEED)
    n = len(arrays["rewards"])
    extras = {"source": np.ones(n, np.uint8), "success": np.zeros(n, np.uint8)}
    write_dataset(path, {k: arrays[k] for k in REQUIRED_KEYS}, extras, {"env": "reach_avoid", "cost_limit": 0.0})
    return path


def rewrite(src: Path, dst: Path, key: str, transform) -> None:
    """Copy `src` with dataset `key` replaced by transform(its array) (None = delete the key)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        data = f[key][()]
        del f[key]
        new = transform(data)
        if new is not None:
            f.create_dataset(key, data=new)


def set_value(value):
    def t(a):
        a = a.astype(np.float64).copy()
        a.flat[a.size // 2] = value
        return a
    return t


def make_cases(base: Path, folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(SEED)
    raw = base.read_bytes()
    cases: dict[str, Path] = {}

    def add(name: str) -> Path:
        cases[name] = folder / f"{len(cases):03d}.h5"
        return cases[name]

    for i in range(80):  # bytes flipped anywhere in the file: metadata, chunk index, compressed data
        flips = int(rng.choice([1, 8, 64]))
        data = bytearray(raw)
        for pos in rng.integers(0, len(data), flips):
            data[pos] ^= int(rng.integers(1, 256))
        add(f"flip{flips}_{i}").write_bytes(bytes(data))
    for frac in (0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        add(f"truncate_{frac}").write_bytes(raw[: int(len(raw) * frac)])
    dtypes = {"int8": np.int8, "float16": np.float16, "float64": np.float64, "bool": bool, "complex": np.complex64,
              "bytes": "S8"}
    for key in REQUIRED_KEYS:
        for dname, dtype in dtypes.items():
            rewrite(base, add(f"dtype_{key}_{dname}"), key, lambda a, d=dtype: a.astype(d))
        rewrite(base, add(f"shape_{key}_drop_row"), key, lambda a: a[:-1])
        rewrite(base, add(f"shape_{key}_extra_column"), key, lambda a: np.concatenate([a.reshape(len(a), -1)] * 2, 1))
        rewrite(base, add(f"shape_{key}_transposed"), key, lambda a: a.reshape(len(a), -1).T)
        rewrite(base, add(f"shape_{key}_scalar"), key, lambda a: a.reshape(-1)[0])
        rewrite(base, add(f"shape_{key}_empty"), key, lambda a: a[:0])
        rewrite(base, add(f"missing_{key}"), key, lambda a: None)
    for key in FLOAT_KEYS:
        for vname, value in (("inf", np.inf), ("-inf", -np.inf), ("nan", np.nan), ("1e30", 1e30), ("-1e30", -1e30)):
            rewrite(base, add(f"value_{key}_{vname}"), key, set_value(value))
    for key in ("source", "success"):
        rewrite(base, add(f"extras_{key}_short"), f"extras/{key}", lambda a: a[:-5])
        rewrite(base, add(f"extras_{key}_bytes"), f"extras/{key}", lambda a: a.astype("S4"))
        rewrite(base, add(f"extras_{key}_large"), f"extras/{key}", lambda a: np.full_like(a, 200))
    return cases


# Run in a child process: prints one JSON line per case, {"name", "outcome": ok | error | EXCEPTION}.
CHILD = """
import json, sys
from go2_sevpo.data.format import DatasetError, load_dataset
from go2_sevpo.data.summary import summarize
for name, path in json.loads(sys.argv[1]).items():
    try:
        summarize(load_dataset(path, 8, 2))
        outcome, message = "ok", ""
    except DatasetError as e:
        outcome, message = "error", str(e)
    except Exception as e:  # noqa: BLE001 - what the test is looking for
        outcome, message = "EXCEPTION", f"{type(e).__name__}: {e}"
    print(json.dumps({"name": name, "outcome": outcome, "message": message}), flush=True)
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    return make_cases(base_file(folder / "base.h5"), folder)


def test_every_corruption_is_a_valid_load_or_one_line_error(cases):
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps({k: str(v) for k, v in cases.items()})],
                       capture_output=True, text=True, timeout=300)
    records = [json.loads(line) for line in r.stdout.splitlines()]
    done = {rec["name"] for rec in records}
    assert r.returncode == 0, f"the reader crashed (status {r.returncode}) after {len(records)} cases, on one of " \
                              f"{[n for n in cases if n not in done][:1]}: {r.stderr[-1500:]}"
    assert len(records) == len(cases) >= 200
    bad = [rec for rec in records if rec["outcome"] == "EXCEPTION"]
    assert not bad, bad[:5]
    multi = [rec for rec in records if "\n" in rec["message"]]
    assert not multi, multi[:3]
    by_name = {rec["name"]: rec for rec in records}
    # What must never load as if nothing happened:
    for name, rec in by_name.items():
        if name.startswith(("missing_", "value_", "truncate_", "shape_")) and not name.endswith("_extra_column"):
            assert rec["outcome"] == "error", rec
        if name.startswith(("dtype_", "shape_", "value_", "missing_")) and rec["outcome"] == "error":
            key = max((k for k in REQUIRED_KEYS if f"_{k}_" in f"{name}_"), key=len)
            assert any(w in rec["message"] for w in (key[:-1], "key", "empty")), rec  # says which data are wrong
    print(f"{len(records)} cases: {sum(r['outcome'] == 'ok' for r in records)} valid loads, "
          f"{sum(r['outcome'] == 'error' for r in records)} one-line errors")


@pytest.mark.parametrize("kind", ["flip64_", "truncate_0.5", "dtype_actions_bytes", "shape_rewards_drop_row",
                                  "missing_costs", "value_observations_1e30"])
def test_corruptions_through_the_scripts(cases, kind, tmp_path):
    path = next(p for name, p in cases.items() if name.startswith(kind))
    for args in (["data_collection/inspect.py", str(path)],
                 ["offline/train.py", f"dataset={path}", f"hydra.run.dir={tmp_path / 'run'}", "steps=5",
                  f"cache_dir={tmp_path / 'cache'}", *TINY_OVERRIDES]):
        r = run_repo_script(*args)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        if r.returncode == 0:  # a harmless flip (e.g. inside an attribute's padding)
            continue
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (args[0], r.returncode,
                                                                                          r.stderr[-1500:])
