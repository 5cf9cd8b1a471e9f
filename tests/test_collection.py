import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from go2_sevpo.data.collect import collect, rollout_first_episodes
from go2_sevpo.data.format import REQUIRED_KEYS, load_dataset
from go2_sevpo.envs import make_env
from go2_sevpo.policies import make_policy

from conftest import REPO, run_script


def test_rollout_keeps_first_episode_per_env_contiguously():
    env = make_env("reach_avoid", num_envs=8, start="random", seed=0, max_episode_length=40)
    batch = rollout_first_episodes(env, make_policy("random", env, 0))
    ends = np.flatnonzero(batch["terminals"] | batch["timeouts"])
    assert len(ends) == 8 and ends[-1] == len(batch["rewards"]) - 1
    # within a trajectory, next_observations[t] == observations[t + 1]
    starts = np.concatenate([[0], ends[:-1] + 1])
    for s, e in zip(starts, ends):
        np.testing.assert_allclose(batch["next_observations"][s:e], batch["observations"][s + 1:e + 1], atol=1e-6)


def test_expert_planner_is_safe_from_the_papers_start():
    env = make_env("reach_avoid", num_envs=32, start="paper", seed=0)
    batch = rollout_first_episodes(env, make_policy("expert", env, 0))
    assert batch["costs"].sum() == 0
    assert batch["success"].sum() == 32


def test_reckless_planner_takes_the_short_path_through_the_hazard():
    """The reward-seeking unsafe source: from the papers' start it reaches the goal every time, sooner
    than the expert, and every episode pays cost (the straight line passes 0.32 m from the hazard's
    centre, inside its 0.8 m radius)."""
    lengths = {}
    for name in ("expert", "reckless"):
        env = make_env("reach_avoid", num_envs=32, start="paper", seed=0)
        batch = rollout_first_episodes(env, make_policy(name, env, 0))
        ends = np.flatnonzero(batch["terminals"] | batch["timeouts"])
        starts = np.concatenate([[0], ends[:-1] + 1])
        assert batch["success"].sum() == 32, name
        costs = np.add.reduceat(batch["costs"], starts)
        assert (costs > 0).all() if name == "reckless" else (costs == 0).all(), (name, costs)
        lengths[name] = float(np.mean(ends - starts + 1))
    assert lengths["reckless"] < lengths["expert"], lengths


def _collect(tmp_path, name, seed=0, policy="random", episodes=30):
    out = tmp_path / name
    collect(
        make_env=lambda n, s: make_env("reach_avoid", num_envs=n, seed=s, start="random"),
        make_policy=lambda env, s: make_policy(policy, env, s),
        episodes=episodes, chunk_episodes=8, seed=seed, output=str(out), source=policy, attrs={"env": "reach_avoid"},
    )
    return load_dataset(out)


def test_reckless_data_is_labelled_as_its_source(tmp_path):
    from go2_sevpo.data.summary import summarize

    assert "sources       reckless 8" in summarize(_collect(tmp_path, "r.h5", policy="reckless", episodes=8))


def test_same_seed_same_file_content(tmp_path):
    a, b, c = _collect(tmp_path, "a.h5"), _collect(tmp_path, "b.h5"), _collect(tmp_path, "c.h5", seed=1)
    assert len(a.episode_bounds()) == 30
    for k in REQUIRED_KEYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.observations[:50], c.observations[:50])


def test_kill_9_then_rerun_resumes_to_the_same_file(tmp_path):
    out = tmp_path / "killed.h5"
    args = [sys.executable, "data_collection/collect.py", "--policy", "expert", "episodes=200",
            "chunk_episodes=10", f"output={out}", "seed=5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    parts = tmp_path / "killed.h5.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("shard_*.h5"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the run was killed before it could finish"
    shards_before = len(list(parts.glob("shard_*.h5")))
    assert 2 <= shards_before < 20
    res = run_script(*args[1:])
    assert res.returncode == 0, res.stderr
    resumed = load_dataset(out)
    assert len(resumed.episode_bounds()) == 200 and not parts.exists()
    fresh_out = tmp_path / "fresh.h5"
    res = run_script(*args[1:-2], f"output={fresh_out}", "seed=5")
    assert res.returncode == 0, res.stderr
    fresh = load_dataset(fresh_out)
    for k in REQUIRED_KEYS:
        np.testing.assert_array_equal(getattr(resumed, k), getattr(fresh, k))


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "x.h5"
    (tmp_path / "x.h5.parts").mkdir()
    (tmp_path / "x.h5.parts" / "manifest.json").write_text('{"episodes": 7}')
    res = run_script("data_collection/collect.py", "--policy", "random", "episodes=20", f"output={out}")
    assert res.returncode == 2 and "different settings" in res.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--policy", "telepathy"], "unknown policy 'telepathy'"),
        (["env=moon_base"], "unknown env 'moon_base'"),
        (["--policy", "/no/such/policy.pt"], "does not exist"),
    ],
)
def test_collect_bad_input_is_one_line(args, message):
    res = run_script("data_collection/collect.py", *args, "episodes=2")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_inspect_script(tmp_path):
    good = tmp_path / "g.h5"
    _collect(tmp_path, "g.h5")
    res = run_script("data_collection/inspect.py", str(good))
    assert res.returncode == 0 and "trajectories  30" in res.stdout
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good.read_bytes()[:1000])
    res = run_script("data_collection/inspect.py", str(bad))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
