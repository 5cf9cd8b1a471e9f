"""Faults a shared workstation or a cluster brings, tried through the scripts as a user meets them: two
jobs on one output, preemption by SIGTERM, a full disk. Each must be one clear line, lose nothing, and
the same command must continue afterwards."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from sevpo_testdata import run_repo_script, tiny_train_args

from go2_sevpo.training.checkpoint import atomic_save, load_file
from go2_sevpo.utils.jobs import PREEMPTED_EXIT, DiskFull, folder_lock, output_lock

REPO = Path(__file__).resolve().parent.parent


train_args = tiny_train_args


def one_line(r: subprocess.CompletedProcess, status: int, prefix: str, fragment: str) -> str:
    """The one line on stderr besides progress bars (tqdm writes those there)."""
    lines = [line for line in r.stderr.splitlines() if line.strip() and not re.search(r"\d+%\|", line)]
    assert r.returncode == status, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    assert len(lines) == 1 and lines[0].startswith(prefix) and fragment in lines[0], r.stderr[-1500:]
    return lines[0]


def popen(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not predicate():
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before the fault could be injected; make it longer"


def checkpoint_step(path: Path) -> int:
    try:
        return int(load_file(path)["step"])
    except Exception:  # noqa: BLE001 - not written yet
        return -1


# ----------------------------------------------------------------------------- locks
def test_second_job_on_a_run_folder_stops_at_once_naming_the_holder(data, tmp_path):
    run_dir = tmp_path / "run"
    with folder_lock(run_dir, "run folder"):  # a live holder: this test process
        r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache", "steps=20"))
    line = one_line(r, 2, "error:", f"is in use by pid {os.getpid()}")
    assert str(run_dir) in line
    assert not (run_dir / "checkpoints").exists()  # it stopped before any work


def test_lock_of_a_dead_job_is_taken_over(data, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # What a kill -9 leaves: the lock file with its holder's details, but no process holding it.
    (run_dir / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "-", "command": "-"}))
    r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache", "steps=20"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (run_dir / ".lock").exists()  # released on exit


def test_second_collection_on_an_output_stops_at_once(tmp_path):
    out = tmp_path / "d.h5"
    with output_lock(f"{out}.lock", "collection output"):
        r = run_repo_script("data_collection/collect.py", "--policy", "expert", "episodes=10", f"output={out}")
    one_line(r, 2, "error:", "is in use by pid")
    assert not out.exists() and not Path(f"{out}.parts").exists()


# ----------------------------------------------------------------------------- preemption
def test_sigterm_during_training_checkpoints_then_the_same_command_resumes(data, tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    args = train_args(data, run_dir, cache, "steps=1500", "save_interval=100000")  # no periodic saves
    proc = popen(args)
    ckpt = run_dir / "checkpoints/latest.pt"
    wait_for(lambda: checkpoint_step(ckpt) == 0, proc)  # written right after stage 1
    time.sleep(1.0)  # some stage-2 steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    r = subprocess.CompletedProcess(args, proc.returncode, "", err)
    line = one_line(r, PREEMPTED_EXIT, "stopped:", "SIGTERM at step")
    step = checkpoint_step(ckpt)
    assert 0 < step < 1500 and f"at step {step} of 1500" in line  # the step it stopped at, saved

    r = run_repo_script(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming {run_dir} from step {step}" in r.stdout + r.stderr
    assert checkpoint_step(ckpt) == 1500


def test_sigterm_during_stage1_saves_its_progress(data, tmp_path):
    run_dir = tmp_path / "run"
    args = train_args(data, run_dir, tmp_path / "cache", "steps=10", "algo.stage1_steps=20000", "save_interval=100000")
    proc = popen(args)
    wait_for(lambda: (run_dir / "config.yaml").exists(), proc)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    one_line(subprocess.CompletedProcess(args, proc.returncode, "", err), PREEMPTED_EXIT, "stopped:", "stage 1 interrupted at step")
    progress = load_file(run_dir / "checkpoints/pretrain_progress.pt")
    assert 0 < progress["step"] < 20000


def test_sigterm_during_collection_keeps_the_written_chunks(tmp_path):
    out = tmp_path / "d.h5"
    args = ["data_collection/collect.py", "--policy", "expert", "episodes=60", "chunk_episodes=10", f"output={out}"]
    proc = popen(args)
    parts = Path(f"{out}.parts")
    wait_for(lambda: len(list(parts.glob("shard_*.h5"))) >= 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    one_line(subprocess.CompletedProcess(args, proc.returncode, "", err), PREEMPTED_EXIT, "stopped:", "chunks of")
    assert not out.exists() and 1 <= len(list(parts.glob("shard_*.h5"))) < 6
    r = run_repo_script(*args)
    assert r.returncode == 0 and out.exists() and not parts.exists(), r.stderr[-2000:]


# ----------------------------------------------------------------------------- full disk
@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MB filesystem (tmpfs); skipped where this user may not mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def fill(folder: Path, leave_bytes: int) -> None:
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))


def test_checkpoint_on_a_full_disk_keeps_the_previous_file(small_disk):
    path = small_disk / "latest.pt"
    atomic_save({"step": 1, "w": torch.zeros(1000)}, path)
    fill(small_disk, 2000)
    with pytest.raises(DiskFull, match="disk full"):
        atomic_save({"step": 2, "w": torch.zeros(100_000)}, path)
    assert load_file(path)["step"] == 1  # the previous complete file, intact
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "latest.pt"]  # no temp left


def test_collection_on_a_full_disk_is_one_line(small_disk):
    out = small_disk / "d.h5"
    args = ["data_collection/collect.py", "--policy", "random", "episodes=400", "chunk_episodes=100", f"output={out}"]
    r = run_repo_script(*args)
    one_line(r, 2, "error:", "free space")  # not HDF5's diagnostics and a segfault
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name]


def test_training_on_a_full_disk_is_one_line(data, small_disk, tmp_path):
    fill(small_disk, 50_000)
    r = run_repo_script(*train_args(data, small_disk / "run", tmp_path / "cache", "steps=20"))
    one_line(r, 2, "error:", "disk full")
    assert not [p for p in small_disk.rglob("*") if ".tmp" in p.name]
