"""The Safety-Gymnasium adapter (env=safety_gym): faithful to safety_gymnasium step for step, batched,
auto-resetting; DSRL files train and evaluate through the scripts; DSRL-normalised scores; bad input
in one line. Needs the safety-gym extra (.ci/run installs it); without it only the checks that need
no safety_gymnasium run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from go2_sevpo.envs import make_env
from go2_sevpo.envs.registry import config_from_dict

REPO = Path(__file__).resolve().parent.parent
TASK = "SafetyPointGoal1-v0"

try:
    from go2_sevpo.envs.safety_gym.compat import import_safety_gymnasium

    import_safety_gymnasium()
    HAVE_SAFETY_GYM = True
except RuntimeError:
    HAVE_SAFETY_GYM = False
needs_extra = pytest.mark.skipif(not HAVE_SAFETY_GYM, reason='safety_gymnasium not installed: pip install -e ".[safety-gym]" '
                                 "&& pip install --no-deps safety-gymnasium==1.0.0 (docs/SAFETY_GYM.md)")


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr[-1500:]
    return lines[0]


# ------------------------------------------------------------------------------- no extra needed
def test_config_is_import_light_and_a_missing_extra_is_one_line():
    """Hydra's schema registration imports no safety_gymnasium, the config carries DSRL's constants,
    and on a machine without the extra (safety_gymnasium unimportable) making the env says how to
    install it, in one line. One subprocess for both: a fresh interpreter is the expensive part."""
    code = ("import sys; from go2_sevpo.config import register_configs; register_configs(); "
            "from go2_sevpo.envs.registry import config_from_dict as c; cfg = c('safety_gym', {'task': 'SafetyCarCircle2-v0'}); "
            "print(cfg.max_episode_length, cfg.reward_min, cfg.reward_max, cfg.cost_limit, 'safety_gymnasium' in sys.modules)\n"
            "sys.modules['safety_gymnasium'] = None; from go2_sevpo.envs import make_env\n"
            "from go2_sevpo.envs.safety_gym.compat import SafetyGymMissing\n"
            "try:\n    make_env('safety_gym')\nexcept SafetyGymMissing as e:\n    print(e)")
    r = run("-c", code)
    assert r.returncode == 0, r.stderr[-2000:]
    first, second = r.stdout.splitlines()
    assert first.split() == ["500", "5.113386154174805", "25.950098037719727", "10.0", "False"]
    assert "not installed" in second and "pip install --no-deps safety-gymnasium==1.0.0" in second


def test_dsrl_normalised_score_worked_example():
    """CarGoal1 (DSRL: R_min 0.012232819540852091, R_max 39.907809198384705), mean return 20 and mean
    cost 5 at the papers' limit 10: reward (20 - 0.01223) / (39.90781 - 0.01223) = 0.501002, cost 0.5.
    At limit 0, DSRL's eps = 1: cost (5 + 1) / (0 + 1) = 6."""
    from go2_sevpo.evaluation.metrics import EpisodeRecords, reward_range_for, summarize

    cfg = config_from_dict("safety_gym", {"task": "SafetyCarGoal1-v0"})
    records = EpisodeRecords(returns=np.array([10.0, 30.0]), costs=np.array([0.0, 10.0]), lengths=np.array([1000, 1000]),
                             success=np.array([False, True]), reasons=np.zeros(2, dtype=np.int64))
    m = summarize(records, cfg.cost_limit, reward_range_for("safety_gym", cfg))
    assert m["normalized_reward"] == pytest.approx(0.501002, abs=1e-6)
    assert m["normalized_cost"] == 0.5 and m["failure_rate"] == 0.0 and m["cost_limit"] == 10.0
    assert summarize(records, 0.0, reward_range_for("safety_gym", cfg))["normalized_cost"] == 6.0
    # A task DSRL has no constants for: no reward range, so no normalised reward (not a made-up one).
    other = config_from_dict("safety_gym", {"task": "SafetyHumanoidVelocity-v1"})
    assert reward_range_for("safety_gym", other) is None


# ------------------------------------------------------------------------------- with the extra
@needs_extra
def test_adapter_matches_safety_gymnasium_step_for_step():
    """Same reset seeds, same actions: the batch reproduces N directly driven safety_gymnasium envs
    (observations, rewards, costs), and a cost does occur (the spinning env touches a hazard)."""
    sg = import_safety_gymnasium()
    n, steps = 4, 140
    env = make_env("safety_gym", task=TASK, num_envs=n, seed=0, max_episode_length=200)
    assert (env.num_obs, env.num_actions, env.max_episode_length) == (60, 2, 200)
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=torch.Generator().manual_seed(0)).tolist()
    raw = [sg.make(TASK, max_episode_steps=200) for _ in range(n)]
    raw_obs = np.stack([e.reset(seed=s)[0] for e, s in zip(raw, seeds)])
    obs = env.get_observations()["policy"]
    assert obs.shape == (n, 60) and obs.dtype == torch.float32
    np.testing.assert_array_equal(obs.numpy(), raw_obs.astype(np.float32))
    actions = torch.tensor([[1.0, 0.0], [1.0, 0.2], [1.0, -0.2], [0.5, 0.5]])
    total_cost = torch.zeros(n)
    for _ in range(steps):
        td, reward, done, extras = env.step(actions)
        out = [e.step(a) for e, a in zip(raw, actions.numpy().astype(np.float64))]
        np.testing.assert_array_equal(td["policy"].numpy(), np.stack([o[0] for o in out]).astype(np.float32))
        np.testing.assert_allclose(reward.numpy(), [o[1] for o in out], rtol=1e-6)
        np.testing.assert_array_equal(extras["costs"].numpy(), [o[2] for o in out])
        assert reward.shape == extras["costs"].shape == done.shape == extras["success"].shape == (n,)
        assert not done.any()
        total_cost += extras["costs"]
    assert set(torch.unique(total_cost).tolist()) != {0.0}
    assert set(extras["costs"].unique().tolist()) <= {0.0, 1.0}


@needs_extra
def test_fast_reset_changes_nothing_but_the_time():
    """Dropping the skybox before MuJoCo compiles the scene leaves the simulation bit-identical."""
    actions = 2 * torch.rand(40, 1, 2, generator=torch.Generator().manual_seed(1)) - 1
    traj = {}
    for fast in (False, True):
        env = make_env("safety_gym", task="SafetyCarGoal1-v0", num_envs=1, seed=3, fast_reset=fast)
        rows = [env.get_observations()["policy"]]
        for a in actions:
            td, reward, _, extras = env.step(a)
            rows += [td["policy"], reward[:, None], extras["costs"][:, None]]
        traj[fast] = torch.cat(rows, 1)
    torch.testing.assert_close(traj[True], traj[False], rtol=0, atol=0)


@needs_extra
def test_auto_reset_at_the_time_limit_draws_a_new_layout():
    env = make_env("safety_gym", task=TASK, num_envs=2, seed=5, max_episode_length=12)
    first = env.get_observations()["policy"].clone()
    for t in range(12):
        td, _, done, extras = env.step(torch.zeros(2, 2))
        assert bool(done.all()) == (t == 11)
    assert extras["time_outs"].all() and not extras["terminated"].any()
    assert (extras["termination_reason"] == 2).all()  # TIME_OUT
    assert (env.episode_length_buf == 0).all()
    new = td["policy"]
    assert not torch.equal(new, extras["final_observations"])  # the next episode's first observation
    assert not torch.equal(new, first)  # a fresh layout, not the first one again
    again = make_env("safety_gym", task=TASK, num_envs=2, seed=5, max_episode_length=12)
    assert torch.equal(again.get_observations()["policy"], first)  # layouts follow from the seed


@needs_extra
def test_unknown_or_unsupported_task_is_one_line():
    with pytest.raises(ValueError, match="unknown Safety-Gymnasium task 'SafetyPointGoal9-v0'") as e:
        make_env("safety_gym", task="SafetyPointGoal9-v0")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="does not run beside mujoco 4.0.0") as e:
        make_env("safety_gym", task="SafetySwimmerVelocity-v1")
    assert "\n" not in str(e.value)


def write_dsrl_file(path: Path, episodes: int = 6, steps: int = 25) -> Path:
    """A file in DSRL's own layout (plain keys, (N, 1) rewards and costs, float flags, no attributes),
    filled with real PointGoal1 steps of a random policy."""
    env = make_env("safety_gym", task=TASK, num_envs=episodes, seed=11, max_episode_length=steps)
    g = torch.Generator().manual_seed(0)
    cols = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "costs", "terminals", "timeouts")}
    obs = env.get_observations()["policy"]
    for _ in range(steps):
        action = 2 * torch.rand(episodes, 2, generator=g) - 1
        td, reward, _, extras = env.step(action)
        for k, v in (("observations", obs), ("next_observations", extras["final_observations"]), ("actions", action),
                     ("rewards", reward), ("costs", extras["costs"]), ("terminals", extras["terminated"]),
                     ("timeouts", extras["time_outs"])):
            cols[k].append(v)
        obs = td["policy"]
    with h5py.File(path, "w") as f:
        for k, v in cols.items():
            a = torch.stack(v, 1).reshape(episodes * steps, -1).numpy().astype(np.float32)  # env-major
            f.create_dataset(k, data=a if k in ("observations", "next_observations", "actions") else a[:, :1])
    return path


@needs_extra
def test_dsrl_file_trains_evaluates_and_refuses_another_task(tmp_path):
    data = write_dsrl_file(tmp_path / "SafetyPointGoal1Gymnasium-v0-100-2022.hdf5")
    run_dir = tmp_path / "run"
    common = ["algo=bc_safe", "steps=30", "log_interval=10", "save_interval=30", "progress=false", "threads=1",
              "eval.episodes=2", "env.max_episode_length=25", f"cache_dir={tmp_path / 'cache'}"]
    r = run("offline/train.py", "env=safety_gym", f"env.task={TASK}", f"dataset={data}", f"hydra.run.dir={run_dir}", *common)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["episodes"] == 2 and m["cost_limit"] == 10.0
    assert m["reward_range"] == [0.01196012764197707, 30.071114857340543]
    expected = (m["mean_return"] - 0.01196012764197707) / (30.071114857340543 - 0.01196012764197707)
    assert m["normalized_reward"] == pytest.approx(expected, rel=1e-12)
    assert m["normalized_cost"] == pytest.approx(m["mean_cost"] / 10.0)

    r = run("offline/evaluate.py", f"run={run_dir}", "episodes=2", "threads=1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run_dir / "eval/default_seed0/metrics.json").is_file()

    # The same file under a DSRL name of another task: refused naming both, before any training.
    other = tmp_path / "SafetyCarGoal1Gymnasium-v0-120-1671.hdf5"
    other.write_bytes(data.read_bytes())
    r = run("offline/train.py", "env=safety_gym", f"env.task={TASK}", f"dataset={other}",
            f"hydra.run.dir={tmp_path / 'run2'}", *common)
    line = one_line_error(r)
    assert "a DSRL file of CarGoal1, not PointGoal1" in line and "env.task=SafetyCarGoal1-v0" in line
    # Right name, wrong sizes (the file's 60-dim observations against CarGoal1's 72): one line too.
    from go2_sevpo.data.format import DatasetError, load_dataset

    with pytest.raises(DatasetError, match="observation dim 60 does not match the env's 72"):
        load_dataset(other, obs_dim=make_env("safety_gym", task="SafetyCarGoal1-v0").num_obs, act_dim=2)


@needs_extra
def test_collect_writes_the_task_into_the_file(tmp_path):
    from go2_sevpo.data.format import load_dataset

    out = tmp_path / "random.h5"
    r = run("data_collection/collect.py", "--policy", "random", "env=safety_gym", f"env.task={TASK}",
            "env.max_episode_length=15", "episodes=3", "chunk_episodes=3", f"output={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    ds = load_dataset(out, obs_dim=60, act_dim=2)
    assert len(ds) == 45 and ds.timeouts.sum() == 3 and ds.attrs["env_config"]["task"] == TASK
    cfg = config_from_dict("safety_gym", {"task": "SafetyCarGoal1-v0"})
    with pytest.raises(ValueError, match=f"collected on task {TASK}, not SafetyCarGoal1-v0"):
        cfg.check_dataset(out, ds.attrs)

    # The PointGoal1 recipes carry their own cost limit (10, not mix.yaml's 0): a recipe's limit is the
    # one that sorts trajectories. At -1 no trajectory counts as safe, so this file has none to offer.
    recipe = "recipes.point_goal1_1to1"
    r = run("data_collection/mix.py", "only=[point_goal1_1to1]", f"{recipe}.source_dir={tmp_path}",
            f"{recipe}.output={tmp_path / 'mix.h5'}", f"{recipe}.num_safe=1", f"{recipe}.cost_limit=-1",
            f"{recipe}.safe_sources=[random.h5]", f"{recipe}.unsafe_sources=[random.h5]")
    assert "needs 1 safe trajectories" in one_line_error(r) and "hold 0" in one_line_error(r)
    r = run("data_collection/mix.py", "only=[point_goal1_1to1]", f"{recipe}.source_dir={tmp_path}",
            f"{recipe}.output={tmp_path / 'mix.h5'}", f"{recipe}.num_safe=3", f"{recipe}.cost_limit=1000",
            f"{recipe}.safe_sources=[random.h5]", f"{recipe}.unsafe_sources=[random.h5]")
    assert "hold no unsafe trajectory" in one_line_error(r)  # at 1000 every trajectory is safe



def aim_at_a_hazard(env, speed: float = 0.6, gap: float = 0.1) -> None:
    """Put every env's agent `gap` outside a hazard's edge (clear of the others, the vase and the goal),
    facing and moving straight at it at `speed` m/s. The slide and hinge joints are in the agent body's
    rotated frame, with zero displacement just after a reset."""
    import mujoco

    for e in env.envs:
        t = e.unwrapped.task
        size, hazards = t.hazards.size, np.array(t.hazards.pos)[:, :2]
        others = np.vstack([np.array(t.vases.pos)[:, :2], t.goal.pos[None, :2]])
        p0, rot = t.agent.pos[:2], t.agent.mat[:2, :2]
        for h, angle in ((h, a) for h in hazards for a in np.linspace(0, 2 * np.pi, 16, endpoint=False)):
            u = np.array([np.cos(angle), np.sin(angle)])
            p = h + (size + gap) * u
            if (np.linalg.norm(hazards - p, axis=1) - size).min() > gap - 1e-9 and np.linalg.norm(others - p, axis=1).min() > 0.45:
                break
        else:
            raise AssertionError("no clear spot beside a hazard")
        d = t.data
        d.joint("x").qpos[:], d.joint("y").qpos[:] = rot.T @ (p - p0)
        d.joint("x").qvel[:], d.joint("y").qvel[:] = rot.T @ (-speed * u)
        d.joint("z").qpos[:] = np.arctan2(-u[1], -u[0]) - np.arctan2(rot[1, 0], rot[0, 0])
        mujoco.mj_forward(t.model, d)
        assert np.allclose(t.agent.pos[:2], p) and np.allclose(t.agent.vel[:2], -speed * u, atol=1e-6)


@needs_extra
def test_scripted_expert_reaches_goals_at_no_cost_where_random_does_not():
    """The safety_gym expert (the Point-goal navigator) on the same four layouts as the random policy,
    300 steps: every env meets a goal and gains return, none pays cost, and random does worse on both.
    (Random pays no cost there either: it barely leaves its start in 300 steps.) Then both start
    coasting into a hazard. Another task is refused in one line."""
    from go2_sevpo.data.collect import rollout_first_episodes
    from go2_sevpo.policies import PolicyError, make_policy

    n, steps = 4, 300
    result = {}
    for name in ("expert", "random"):
        env = make_env("safety_gym", task=TASK, num_envs=n, seed=2, max_episode_length=steps)
        batch = rollout_first_episodes(env, make_policy(name, env, seed=0))
        per_env = lambda k: batch[k].reshape(n, steps).astype(np.float64).sum(1)  # noqa: E731  env-major
        result[name] = {k: per_env(k) for k in ("rewards", "costs", "success")}
    expert, rand = result["expert"], result["random"]
    assert (expert["success"] >= 1).all() and (expert["rewards"] > 1.0).all(), expert
    assert expert["costs"].sum() == 0 <= rand["costs"].sum(), (expert, rand)
    assert expert["rewards"].mean() > rand["rewards"].mean() + 1.0 and expert["success"].sum() > rand["success"].sum()

    # Started 0.1 m from a hazard's edge, coasting straight at it at 0.6 m/s: random drifts in, the
    # expert brakes and steers clear.
    cost = {}
    for name in ("expert", "random"):
        env = make_env("safety_gym", task=TASK, num_envs=n, seed=2, max_episode_length=steps)
        aim_at_a_hazard(env)
        policy, obs, cost[name] = make_policy(name, env, seed=0), env.get_observations()["policy"], 0.0
        for _ in range(50):
            obs, _, _, extras = env.step(policy(obs).clamp(-1, 1))
            obs, cost[name] = obs["policy"], cost[name] + float(extras["costs"].sum())
    assert cost["expert"] == 0 < cost["random"], cost

    car = make_env("safety_gym", task="SafetyCarGoal1-v0", num_envs=1)
    with pytest.raises(PolicyError, match="handles the Point goal tasks") as e:
        make_policy("expert", car, seed=0)
    assert "\n" not in str(e.value)
