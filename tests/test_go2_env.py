"""go2_simple / go2_hard on real MuJoCo physics, small scale, CPU."""

from __future__ import annotations

import math

import pytest
import torch

from go2_sevpo.envs.base import TerminationReason
from go2_sevpo.envs.go2 import env as go2_env
from go2_sevpo.envs.go2.quat import from_yaw
from go2_sevpo.envs.registry import config_class, make_env

SMALL = dict(device="cpu", seed=0, terrain_rows=2, terrain_cols=1)


def _place(env, env_ids, xy, yaw=0.0, height=0.42, qvel=None):
    """Put robots at world xy (default pose), `height` above the terrain there."""
    ids = torch.as_tensor(env_ids)
    xy = torch.as_tensor(xy, dtype=torch.float32).reshape(len(ids), 2)
    qpos = torch.zeros(len(ids), env.physics.nq)
    qpos[:, :2] = xy
    qpos[:, 2] = env.terrain.heights(xy) + height
    qpos[:, 3:7] = from_yaw(torch.full((len(ids),), float(yaw)))
    qpos[:, 7:] = env.default_dof_pos
    env.physics.set_state(ids, qpos, torch.zeros(len(ids), env.physics.nv) if qvel is None else qvel)


def test_shapes_and_registry():
    env = make_env("go2_simple", num_envs=3, **SMALL)
    obs = env.get_observations()
    assert obs["policy"].shape == (3, go2_env.NUM_OBS) == (3, 161)
    assert obs["critic"].shape == (3, env.num_privileged_obs)
    assert env.num_actions == 12
    obs, reward, done, extras = env.step(torch.zeros(3, 12))
    assert reward.shape == done.shape == extras["costs"].shape == extras["success"].shape == (3,)
    assert extras["final_observations"].shape == (3, 161)
    assert set(extras["reward_terms"]) <= set(env.cfg.reward_scales)
    assert config_class("go2_hard")().terrain == "hard" and config_class("go2_simple")().terrain == "simple"


def test_standing_robot_stays_up_with_zero_actions():
    env = make_env("go2_simple", num_envs=2, start_yaw_noise=0.0, start_xy_noise=0.0, **SMALL)
    for _ in range(250):  # 5 s at 50 Hz
        _, _, done, extras = env.step(torch.zeros(2, 12))
        assert not done.any() and not extras["costs"].any()
    base_z = env.physics.qpos[:, 2]
    assert torch.all((base_z > 0.25) & (base_z < 0.35)), base_z
    assert torch.all(env.get_observations()["policy"][:, 45:49] == 1.0)  # all four feet in contact


def test_robot_dropped_into_gap_costs_one_and_terminates():
    env = make_env("go2_hard", num_envs=1, terrain_level=1, **SMALL)
    track = env.track_id[0].item()
    gap = max((s for s in env.terrain.tracks[track] if s.kind == "gap"), key=lambda s: s.u1 - s.u0)
    assert gap.u1 - gap.u0 > 0.45
    y = env.terrain.start_pos[track, 1].item()
    # Sideways (yaw 90 deg) the robot is ~0.3 m wide: it fits into the gap and falls in.
    _place(env, [0], [[(gap.u0 + gap.u1) / 2, y]], yaw=math.pi / 2, height=0.42 + env.terrain.pit_depth)
    env.physics.set_state(torch.tensor([0]), *_lift_to_platform(env, gap))
    for _ in range(50):
        _, _, done, extras = env.step(torch.zeros(1, 12))
        if done.any():
            break
    assert done.item() and extras["terminated"].item() and not extras["time_outs"].item()
    assert extras["costs"].item() == 1.0
    assert extras["termination_reason"].item() == TerminationReason.FALL
    assert not extras["success"].item()


def _lift_to_platform(env, gap):
    """State with the base at platform level + 0.42 m over the gap (heights() there is the pit)."""
    qpos, qvel = env.physics.qpos.clone(), torch.zeros(1, env.physics.nv)
    qpos[0, 2] = max(gap.h0, gap.h1) + 0.42
    return qpos, qvel


def test_reaching_destination_sets_success():
    env = make_env("go2_simple", num_envs=2, **SMALL)
    goal = env.goal[0, :2]
    _place(env, [0], goal[None] - torch.tensor([[0.2, 0.0]]), height=0.3)
    _, reward, done, extras = env.step(torch.zeros(2, 12))
    assert done[0] and extras["success"][0] and extras["terminated"][0]
    assert extras["termination_reason"][0] == TerminationReason.SUCCESS
    assert extras["costs"][0] == 0.0
    assert reward[0] > env.cfg.arrival_bonus - 0.1
    assert not done[1]


def test_height_scan_matches_terrain_under_known_positions():
    env = make_env("go2_simple", num_envs=1, **SMALL)
    track = env.track_id[0].item()
    y = env.terrain.start_pos[track, 1].item()
    segments = env.terrain.tracks[track]
    platform = segments[2]  # first platform after the first gap
    gap = segments[1]
    assert platform.kind == "platform" and gap.kind == "gap"
    # Direct height-map gathers: platform top, gap -> pit, side pit -> pit.
    points = torch.tensor([[(platform.u0 + platform.u1) / 2, y], [(gap.u0 + gap.u1) / 2, y], [1.0, y + 1.0]])
    expected = torch.tensor([platform.h0, -env.terrain.pit_depth, -env.terrain.pit_depth])
    assert torch.allclose(env.terrain.heights(points), expected, atol=1e-5)
    # The observation's scan: robot facing +x at the start; every scan point is on the track's centre
    # strip, so its height is the track profile at the point's x.
    _place(env, [0], [[0.75, y]])
    obs = env._observe()[0]
    scan = obs[-go2_env.NUM_SCAN:].reshape(len(go2_env.SCAN_X), len(go2_env.SCAN_Y))
    base_z = env.physics.qpos[0, 2]
    for i, dx in enumerate(go2_env.SCAN_X.tolist()):
        x = 0.75 + dx
        seg = next(s for s in segments if s.u0 <= x < s.u1)
        h = seg.h0 if seg.kind == "platform" else -env.terrain.pit_depth
        # Points within half a cell of an edge may round to the other side.
        if min(abs(x - s.u0) for s in segments) < env.terrain.resolution:
            continue
        want = torch.clamp(base_z - go2_env.SCAN_OFFSET - h, -1, 1) * go2_env.SCAN_SCALE
        assert torch.allclose(scan[i], want.expand(len(go2_env.SCAN_Y)), atol=1e-4), (x, scan[i], want)


def test_curriculum_moves_levels():
    env = make_env("go2_simple", num_envs=2, curriculum=True, **SMALL)
    assert torch.all(env.terrain_levels == 0)
    _place(env, [0], env.goal[0:1, :2], height=0.3)  # env 0 succeeds -> next row
    env.step(torch.zeros(2, 12))
    assert env.terrain_levels.tolist() == [1, 0]
    assert env.terrain.track_row[env.track_id[0]].item() == 1


def test_curriculum_state_survives_a_resume():
    """PPO's checkpoints carry the rows (training/ppo.py): a new env put back on them starts every env
    on its saved row; with more envs, the rows are drawn from the saved ones."""
    env = make_env("go2_simple", num_envs=3, curriculum=True, **SMALL)
    env.terrain_levels[:] = torch.tensor([1, 0, 1])
    state = env.curriculum_state()
    for n in (3, 5):
        resumed = make_env("go2_simple", num_envs=n, curriculum=True, **{**SMALL, "seed": 1})
        resumed.load_curriculum_state(state)
        rows = resumed.terrain.track_row[resumed.track_id]
        assert torch.equal(rows, resumed.terrain_levels)  # reset onto the restored rows
        if n == 3:
            assert resumed.terrain_levels.tolist() == [1, 0, 1]
        else:
            assert set(resumed.terrain_levels.tolist()) <= {0, 1}
    with pytest.raises(ValueError, match="rows must lie in"):
        resumed.load_curriculum_state({"terrain_levels": torch.tensor([7])})


def test_qpos_recording_and_render_state():
    env = make_env("go2_simple", num_envs=2, record_qpos=True, **SMALL)
    for _ in range(3):
        env.step(torch.zeros(2, 12))
    assert len(env.qpos_history) == 3 and env.qpos_history[0].shape == (2, env.physics.nq)
    assert env.get_render_state().shape == (2, env.physics.nq)


def test_ppo_reward_mode_adds_shaping_but_keeps_task_reward():
    env = make_env("go2_simple", num_envs=2, reward_mode="ppo", **SMALL)
    _, reward, _, extras = env.step(torch.ones(2, 12) * 0.5)
    shaped = sum(extras["reward_terms"].values())
    assert torch.allclose(reward, extras["task_reward"] + shaped)
    assert "rew/torques" in extras["log"]


@pytest.mark.parametrize("override, message", [
    (dict(terrain="lava"), "unknown terrain 'lava'"),
    (dict(backend="bullet"), "unknown physics backend 'bullet'"),
    (dict(reward_mode="dense"), "unknown reward_mode 'dense'"),
    (dict(start="nowhere"), "unknown start 'nowhere'"),
])
def test_bad_inputs_are_clear_errors(override, message):
    with pytest.raises(ValueError, match=message):
        make_env("go2_simple", num_envs=1, **{**SMALL, **override})


def test_unknown_option_and_missing_gpu_are_clear_errors():
    with pytest.raises(KeyError, match="no option"):
        make_env("go2_simple", num_envs=1, terrain_kind="simple")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            make_env("go2_simple", num_envs=1, device="cuda")


def test_warp_backend_env_matches_mujoco_env():
    """The same env on both backends, same seed and actions: observations agree (see the tolerance
    argument in test_physics_backends)."""
    pytest.importorskip("mujoco_warp")
    kwargs = dict(num_envs=2, device="cpu", seed=3, terrain_rows=1, terrain_cols=1)
    envs = [make_env("go2_simple", backend=b, **kwargs) for b in ("mujoco", "mujoco_warp")]
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        action = torch.rand(2, 12, generator=gen) * 2 - 1
        outs = [env.step(action) for env in envs]
    obs_c, obs_w = outs[0][0]["policy"], outs[1][0]["policy"]
    assert torch.allclose(obs_c, obs_w, atol=2e-3), (obs_c - obs_w).abs().max()


def test_play_script_writes_a_video(tmp_path):
    """envs/play.py end to end (Hydra config, rollout, EGL render, mp4). Skips where no headless GL
    is installed (bash .ci/install_system_deps.sh provides it)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "play.mp4"
    cmd = [sys.executable, str(repo / "envs" / "play.py"), "env=go2_simple", "device=cpu", "num_envs=2",
           "steps=10", f"video={out}", "env.terrain_rows=1", "env.terrain_cols=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    if proc.returncode != 0 and "offscreen rendering is unavailable" in proc.stderr:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.stat().st_size > 1000
    import imageio.v2 as imageio

    frames = imageio.mimread(out)
    assert len(frames) == 11 and frames[0].shape == (240, 320, 3)  # initial state + 10 steps


def test_domain_randomisation_and_pushes_run():
    env = make_env("go2_simple", num_envs=3, randomize_friction=True, randomize_base_mass=True,
                   randomize_motor_strength=True, push_robots=True, push_interval_s=0.1, **SMALL)
    for _ in range(10):
        env.step(torch.zeros(3, 12))
    lo, hi = env.cfg.friction_range
    assert torch.all((env.friction >= lo) & (env.friction <= hi)) and env.friction.unique().numel() == 3
    models = env.physics._models  # the C backend keeps one model per world once randomised
    masses = [m.body_mass[env.base_body_id] for m in models]
    assert torch.allclose(torch.tensor(masses, dtype=torch.float32), env.base_body_mass[env.base_body_id] + env.added_mass)
    assert env.get_observations()["critic"][:, -3:].shape == (3, 3)
