"""End to end through the scripts, as a user runs them: train a few hundred steps on a small file,
evaluate, resume after kill -9 (bit-identical to an uninterrupted run), and bad input as one line
with exit status 2."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch
from sevpo_testdata import assert_one_line_error, run_repo_script, tiny_train_args, write_reach_avoid_file

REPO = Path(__file__).resolve().parent.parent


def train_args(data: Path, run_dir: Path, cache: Path, *extra: str) -> list[str]:
    return tiny_train_args(data, run_dir, cache, "steps=200", "save_interval=50", *extra)


def actor_params(run_dir: Path) -> torch.Tensor:
    state = torch.load(run_dir / "checkpoints/latest.pt", weights_only=False)["algorithm"]
    return torch.cat([v.flatten() for k, v in sorted(state["actor"].items())])


def test_train_then_evaluate(data, tmp_path):
    run_dir = tmp_path / "run"
    r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache"))
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("episodes", "mean_return", "mean_cost", "normalized_reward", "normalized_cost", "failure_rate",
                "max_episode_cost", "success_rate", "fall_rate", "region_iou", "unsafe_region_iou", "history"):
        assert key in metrics, key
    assert metrics["episodes"] == 8 and metrics["steps"] == 200
    assert (run_dir / "checkpoints/latest.pt").is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / "plots/training.png").is_file() and (run_dir / "plots/reach_avoid_paper_final.png").is_file()
    assert list((run_dir / "tensorboard").glob("events.*"))
    assert list((tmp_path / "cache").glob("sevpo_stage1_*.pt"))

    # The trainer files its final evaluation where the results table looks; it equals a fresh one.
    from go2_sevpo.evaluation.evaluator import EvalConfig, evaluate_run

    filed = json.loads((run_dir / "eval/paper_seed0/metrics.json").read_text())
    fresh = evaluate_run(run_dir, EvalConfig(episodes=8, start="paper", seed=0))
    assert filed["checkpoint_step"] == fresh["checkpoint_step"] == 200
    assert all(filed[k] == fresh[k] for k in ("success_rate", "mean_return", "mean_cost", "failure_rate"))

    r = run_repo_script("offline/evaluate.py", f"run={run_dir}", "episodes=6", "start=hazard", "seed=3", "threads=1")
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads((run_dir / "eval/hazard_seed3/metrics.json").read_text())
    assert out["episodes"] == 6 and out["start"] == "hazard" and out["mean_cost"] > 0  # starts inside the hazard
    assert (run_dir / "eval/hazard_seed3/plots/reach_avoid_hazard.png").is_file()

    # The acting-rule diagnosis: one line per rule, each with its own success rate.
    r = run_repo_script("offline/diagnose.py", str(run_dir), "--episodes", "4", "--starts", "paper", "hazard",
                        "--json", str(tmp_path / "diag.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    rules = [line.split("success")[0].split() for line in r.stdout.splitlines() if "success" in line]
    # The default run (select=mode, mu_safe=0) has no reward critic: the rules that read Qr are skipped.
    assert "skipping ['sevpo', 'filtered']" in r.stdout
    assert rules == [[s, rule] for s in ("paper", "hazard") for rule in ("minqc", "admissible", "mode", "actor")]
    records = json.loads((tmp_path / "diag.json").read_text())
    assert [r["start"] for r in records] == ["paper"] * 4 + ["hazard"] * 4
    assert all(r["mean_cost"] > 0 for r in records[4:])  # every hazard start pays cost on its first step

    # The critics against the truth rolled out on the known dynamics.
    r = run_repo_script("offline/critic_truth.py", str(run_dir), "--states", "4", "--rollouts", "2", "--horizon", "50",
                        "--json", str(tmp_path / "truth.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["states"] == 4 and truth["actions_per_state"] == 10 and truth["qc_rmse"] >= 0 and "qr_rmse" not in truth  # no reward critic on this run
    assert 0.0 <= truth["admissible_agreement"] <= 1.0
    assert_one_line_error(run_repo_script("offline/critic_truth.py", str(run_dir), "--escape", "--speeds", "3"), "--speeds")
    # The hazard-start stays traced: with --stay-steps 1 every episode counts (each starts inside the hazard).
    r = run_repo_script("offline/critic_truth.py", str(run_dir), "--stays", "--episodes", "4", "--stay-steps", "1",
                        "--horizon", "50", "--json", str(tmp_path / "stays.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    stays = json.loads((tmp_path / "stays.json").read_text())
    assert stays["episodes"] == 4 and stays["stays"] == 4 and stays["mean_steps_inside"] >= 1
    first = stays["trace"][0]
    assert first["step"] == 0 and first["episodes"] == 4 and 0.0 <= first["candidates_accelerate"] <= 1.0
    assert first["true_min"] > 0  # every traced state is inside the hazard at step 0: escaping costs
    assert_one_line_error(run_repo_script("offline/critic_truth.py", str(run_dir), "--escape", "--stays"), "choose one")

    r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache"))  # the same command again
    assert r.returncode == 0 and "already complete" in r.stdout + r.stderr

    r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache", "algo.mu_safe=2.0"))
    assert_one_line_error(r, "other settings")

    # A checkpoint written before a switch existed (its config lacks the key) resumes when the switch
    # is at its default, and is refused when it is not: on the command line, or in the task's config
    # (reach_avoid sets admissible_test=critic_and_trajectory; the code's default is critic).
    ckpt = run_dir / "checkpoints/latest.pt"
    payload = torch.load(ckpt, weights_only=False)
    del payload["config"]["algo"]["advantage_estimate"]
    torch.save(payload, ckpt)
    r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache"))
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "already complete" in out and "['algo.advantage_estimate']" in out, out[-2000:]
    r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache", "algo.advantage_estimate=return"))
    assert_one_line_error(r, "other settings")
    del payload["config"]["algo"]["admissible_test"]
    torch.save(payload, ckpt)
    r = run_repo_script(*train_args(data, run_dir, tmp_path / "cache"))
    assert_one_line_error(r, "other settings ['algo.admissible_test']")


def test_kill9_then_same_command_resumes_bit_identically(data, tmp_path):
    steps = ["steps=400", "save_interval=20"]
    whole = tmp_path / "whole"
    r = run_repo_script(*train_args(data, whole, tmp_path / "cache", *steps))
    assert r.returncode == 0, r.stderr[-3000:]

    killed = tmp_path / "killed"
    args = [sys.executable, *train_args(data, killed, tmp_path / "cache", *steps)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "TORCHDYNAMO_DISABLE": "1"})
    ckpt, deadline, step = killed / "checkpoints/latest.pt", time.time() + 120, 0
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                step = torch.load(ckpt, weights_only=False)["step"]
            except Exception:  # noqa: BLE001 - the rename makes this rare, but keep polling
                step = 0
            if step >= 40:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 40 <= step < 400

    r = run_repo_script(*train_args(data, killed, tmp_path / "cache", *steps))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout + r.stderr
    assert torch.equal(actor_params(whole), actor_params(killed))


def test_kill9_during_stage1_resumes_stage1(data, tmp_path):
    """Stage 1 checkpoints its own progress: a kill -9 in the middle of it loses at most one save
    interval, and the same command finishes with the stage 1 an uninterrupted run makes."""
    stage1 = ["steps=20", "algo.stage1_steps=3000", "save_interval=100"]
    whole_cache, killed_cache = tmp_path / "cache_whole", tmp_path / "cache_killed"
    r = run_repo_script(*train_args(data, tmp_path / "whole", whole_cache, *stage1))
    assert r.returncode == 0, r.stderr[-3000:]

    killed = tmp_path / "killed"
    progress = killed / "checkpoints/pretrain_progress.pt"
    proc = subprocess.Popen([sys.executable, *train_args(data, killed, killed_cache, *stage1)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "TORCHDYNAMO_DISABLE": "1"})
    deadline, step = time.time() + 120, 0
    while time.time() < deadline and proc.poll() is None and step < 300:
        if progress.exists():
            try:
                step = torch.load(progress, weights_only=True)["step"]
            except Exception:  # noqa: BLE001 - keep polling
                step = 0
        time.sleep(0.02)
    assert proc.poll() is None, "stage 1 finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 300 <= step < 3000 and not list(killed_cache.glob("sevpo_stage1_*.pt"))

    r = run_repo_script(*train_args(data, killed, killed_cache, *stage1))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stage 1: resuming from step" in r.stdout + r.stderr
    assert not progress.exists()  # consumed once stage 1 is cached
    (a,), (b,) = list(whole_cache.glob("sevpo_stage1_*.pt")), list(killed_cache.glob("sevpo_stage1_*.pt"))
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    for key in ("conservative_cost_critic", "conservative_cost_value"):
        assert all(torch.equal(sa[key][k], sb[key][k]) for k in sa[key])


def test_bad_dataset_inputs(data, tmp_path):
    wrong = tmp_path / "wrong_dim.h5"
    with h5py.File(data) as f, h5py.File(wrong, "w") as g:
        for k in f:
            a = f[k][()]
            g[k] = a[:, :5] if k in ("observations", "next_observations") else a
    assert_one_line_error(run_repo_script(*train_args(wrong, tmp_path / "r1", tmp_path / "c")),
                          "observation dim 5 does not match the env's 8")
    assert_one_line_error(run_repo_script(*train_args(tmp_path / "missing.h5", tmp_path / "r2", tmp_path / "c")),
                          "no such file")
    assert_one_line_error(run_repo_script("offline/train.py", "algo=nope", f"dataset={data}"), "unknown algo 'nope'")
    r = run_repo_script("offline/train.py")
    assert_one_line_error(r, "dataset=PATH is required")


def test_stage1_cache_from_another_dataset_is_refused(data, tmp_path):
    other = write_reach_avoid_file(tmp_path / "other.h5", num_envs=24, steps=30, seed=5)
    r = run_repo_script(*train_args(other, tmp_path / "r_other", tmp_path / "cache", "steps=1"))
    assert r.returncode == 0, r.stderr[-3000:]
    (foreign,) = list((tmp_path / "cache").glob("sevpo_stage1_*.pt"))
    r = run_repo_script(*train_args(data, tmp_path / "r_data", tmp_path / "cache", f"algo.stage1_cache={foreign}"))
    assert_one_line_error(r, "was trained on another dataset")


def test_evaluate_bad_runs(tmp_path):
    assert_one_line_error(run_repo_script("offline/evaluate.py", f"run={tmp_path / 'nope'}"), "no such run directory")
    assert_one_line_error(run_repo_script("offline/diagnose.py", str(tmp_path / "nope")), "no such run directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_repo_script("offline/evaluate.py", f"run={empty}"), "no such file")
    (empty / "checkpoints").mkdir()
    (empty / "checkpoints/latest.pt").write_bytes(b"PK\x03\x04 truncated")
    assert_one_line_error(run_repo_script("offline/evaluate.py", f"run={empty}"), "unreadable checkpoint")
