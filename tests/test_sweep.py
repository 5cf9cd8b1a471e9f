"""Fan-out through Hydra launchers (configs/hydra/launcher/): a multirun of offline/train.py lands in the
layout offline/results.py tabulates, through joblib (`cores`) and through submitit's local executor
(`slurm_local`, the SLURM job path on one machine); a killed run resumes, a finished run is not rerun,
and one run failing on bad input does not stop the others."""

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
from sevpo_testdata import run_repo_script

from go2_sevpo.evaluation import results

REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason='the launchers: pip install -e ".[sweep]"')
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='the launchers: pip install -e ".[sweep]"')

# Short BC runs on the module's small dataset.
TINY = ["threads=1", "progress=false", "eval.episodes=4", "env.max_episode_length=40"]
# Smaller networks, for one algorithm only: Hydra composes a multirun's first config with the default
# algo (sevpo), which has no such keys, when `algo=` itself is swept.
TINY_BC = ["algo=bc_all", "algo.batch_size=64", "algo.hidden=[32,32]"]


def sweep_args(launcher: str, root: Path, *extra: str) -> list[str]:
    return ["offline/train.py", "-m", f"hydra/launcher={launcher}", f"hydra.sweep.dir={root}", *TINY, *extra]


def step_of(run: Path) -> int:
    try:
        return int(torch.load(run / "checkpoints/latest.pt", weights_only=False)["step"])
    except Exception:  # noqa: BLE001 - not written yet (the rename makes a half file rare)
        return 0


def test_joblib_sweep_resumes_a_killed_run_skips_finished_ones_and_outlives_a_bad_one(data, tmp_path):
    root, missing = tmp_path / "runs", tmp_path / "missing.h5"
    common = [*TINY_BC, "hydra.launcher.n_jobs=2", "seed=0,1,2", "steps=1000", "save_interval=20", "log_interval=20"]
    runs = {s: root / "reach_avoid" / "bc_all" / data.stem / f"seed{s}" for s in (0, 1, 2)}

    # Three runs on two workers: the third starts when a first one has finished; kill it half-way.
    args = [sys.executable, *sweep_args("cores", root, *common, f"dataset={data}")]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline, killed = time.time() + 120, runs[2]
    while time.time() < deadline and proc.poll() is None and step_of(killed) < 40:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before a run could be killed; make the runs longer"
    # The run's lock names the process that trains it: one joblib worker, killed as the OOM killer would.
    os.kill(json.loads((killed / ".lock").read_text())["pid"], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "TerminatedWorkerError" in stderr, stderr[-2000:]
    assert not (killed / "metrics.json").exists() and 40 <= step_of(killed) < 1000
    finished = {run: (run / "checkpoints/latest.pt").stat().st_mtime_ns for run in runs.values()
                if (run / "metrics.json").exists()}
    assert finished  # the one whose end let the third start

    # The same sweep again, plus a dataset that does not exist: the killed run resumes, finished runs are
    # not trained again (checkpoint untouched), and the three runs on the missing file fail with their
    # one line without stopping the others; Hydra names the first failure at the end (exit 1).
    r = run_repo_script(*sweep_args("cores", root, *common, f"dataset={data},{missing}"))
    assert r.returncode == 1, r.stderr[-3000:]
    assert f"resuming {killed} from step" in r.stdout and f"error: {missing}: no such file" in r.stderr
    for run, stamp in finished.items():
        assert f"run {run} is already complete (1000 steps)" in r.stdout
        assert (run / "checkpoints/latest.pt").stat().st_mtime_ns == stamp
    for run in runs.values():
        assert json.loads((run / "metrics.json").read_text())["steps"] == 1000


def test_submitit_local_sweep_lands_in_the_results_layout(data, tmp_path):
    root = tmp_path / "runs"
    r = run_repo_script(*sweep_args("slurm_local", root, "algo=bc_all,bc_safe", f"dataset={data}", "seed=0",
                                    "steps=30", "save_interval=10", "log_interval=10"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(list((root / ".submitit").glob("*/*_log.out"))) == 2  # one submitit job per run
    for algo in ("bc_all", "bc_safe"):
        metrics = json.loads((root / "reach_avoid" / algo / data.stem / "seed0" / "metrics.json").read_text())
        assert metrics["algo"] == algo and metrics["steps"] == 30

    # What offline/results.py does with the root (in process: one interpreter start less); the
    # evaluations the runs filed are reused.
    runs = results.discover_runs(root)
    assert [(run.algo, run.dataset, run.seed) for run in runs] == [("bc_all", data.stem, 0), ("bc_safe", data.stem, 0)]
    rows, skipped = results.collect(runs, ["paper"], episodes=4, message=lambda m: None)
    assert not skipped
    results.write_results(rows, root / "results")
    table = (root / "results" / "results.md").read_text()
    assert f"## reach_avoid / {data.stem} / start=paper" in table
    assert "| bc_all | 1 | 30 |" in table and "| bc_safe | 1 | 30 |" in table
    if (REPO / ".git").exists():  # each row names the commit that trained it
        assert all(re.fullmatch(r"[0-9a-f]{12}(-dirty)?", row["code"]) for row in rows), rows[0]["code"]

    # A later collection merges the rows of this one (e.g. its run folders are gone): one run of
    # another seed here, the earlier rows joined from their runs.csv, the same run replaced not doubled.
    earlier = tmp_path / "earlier.csv"
    earlier.write_bytes((root / "results" / "runs.csv").read_bytes())
    (root / "reach_avoid" / "bc_safe").rename(tmp_path / "moved")
    r = run_repo_script("offline/results.py", str(root), "--starts", "paper", "--episodes", "4", "--merge",
                        str(earlier), "--output", str(tmp_path / "merged"))
    assert r.returncode == 0, r.stderr[-2000:]
    merged = results.read_rows(tmp_path / "merged" / "runs.csv")
    assert sorted((row["algo"], row["seed"]) for row in merged) == [("bc_all", 0), ("bc_safe", 0)]


def test_unknown_launcher_is_one_line_naming_the_presets_and_plugins(tmp_path):
    r = run_repo_script("offline/train.py", "-m", "hydra/launcher=nope", f"dataset={tmp_path / 'x.h5'}")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    for option in ("'cores'", "'slurm'", "'slurm_local'", "'joblib'", "'submitit_slurm'", "'basic'"):
        assert option in lines[0], lines[0]
