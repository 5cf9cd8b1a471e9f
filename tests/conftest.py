import os
import subprocess
import sys
from pathlib import Path

# Every test runs eagerly (torch's own switch; also inherited by the scripts the tests start): the
# compiled reverse process costs ~30 s of compilation per process and gives the same draws to float
# rounding. tests/test_sevpo_networks.py checks the compiled path itself, in a process of its own.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

import pytest  # noqa: E402

import go2_sevpo  # noqa: E402,F401  before torch: the same MKL kernels as the scripts the tests start
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# Small tensors: intra-op threads only add hand-off cost on the 2-core CI machine.
torch.set_num_threads(1)


def run_script(*args: str, timeout: float = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a repo script as a user would (`python data_collection/collect.py ...`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def script():
    return run_script


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A small reach-avoid dataset (48 noisy goal-seeking rollouts of 40 steps), one per test module."""
    from sevpo_testdata import write_reach_avoid_file

    return write_reach_avoid_file(tmp_path_factory.mktemp("data") / "ra.h5", num_envs=48, steps=40, seed=0)
