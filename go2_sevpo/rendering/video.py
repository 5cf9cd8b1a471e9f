"""Turn recorded qpos sequences into mp4 videos with MuJoCo's offscreen renderer.

Rendering replays states (kinematics only), so a rollout on either physics backend, on any machine,
can be rendered afterwards from `env.qpos_history` / `env.get_render_state()` and the env's
`mj_model`. Headless GL: MuJoCo picks its GL platform from MUJOCO_GL when `mujoco` is first
imported, so this module sets MUJOCO_GL=egl unless the caller chose one (import it before anything
imports mujoco, as envs/play.py does). EGL needs libegl1 + libegl-mesa0 (or libosmesa6 with
MUJOCO_GL=osmesa): `bash .ci/install_system_deps.sh` installs them.
"""

from __future__ import annotations

import os
import sys

if "mujoco" not in sys.modules:
    os.environ.setdefault("MUJOCO_GL", "egl")

from pathlib import Path  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from go2_sevpo.utils.jobs import atomic_path  # noqa: E402


def _renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as err:  # GL platform missing or not selected: say how to fix it, in one line
        raise RuntimeError(
            f"offscreen rendering is unavailable (MUJOCO_GL={os.environ.get('MUJOCO_GL', '<unset>')}): "
            f"install EGL or OSMesa (bash .ci/install_system_deps.sh) and set MUJOCO_GL=egl or osmesa "
            f"before Python starts ({type(err).__name__}: {err})"
        ) from None


def render_frames(model: mujoco.MjModel, qpos: np.ndarray, width: int = 320, height: int = 240,
                  distance: float = 2.2, azimuth: float = 120.0, elevation: float = -20.0,
                  track_body: str = "base") -> np.ndarray:
    """RGB frames (T, height, width, 3) uint8 of the states qpos (T, nq), the camera following
    `track_body` at a fixed distance and angle."""
    qpos = np.asarray(qpos, dtype=np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != model.nq:
        raise ValueError(f"qpos must have shape (T, {model.nq}), got {qpos.shape}")
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, track_body)
    data = mujoco.MjData(model)
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.distance, camera.azimuth, camera.elevation = distance, azimuth, elevation
    renderer = _renderer(model, width, height)
    frames = np.empty((len(qpos), height, width, 3), dtype=np.uint8)
    try:
        for t, q in enumerate(qpos):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            camera.lookat[:] = data.xpos[body]
            renderer.update_scene(data, camera=camera)
            frames[t] = renderer.render()
    finally:
        renderer.close()
    return frames


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 50.0) -> Path:
    """H.264 mp4 (imageio-ffmpeg's bundled ffmpeg); frame sides must be multiples of 16."""
    import imageio.v2 as imageio

    path = Path(path)
    with atomic_path(path) as tmp, imageio.get_writer(tmp, fps=fps, codec="libx264", quality=6,
                                                       macro_block_size=16) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path


def render_video(model: mujoco.MjModel, qpos: np.ndarray, path: str | Path, fps: float = 50.0, **camera) -> Path:
    """Render states qpos (T, nq) and write them to `path` as mp4."""
    return write_mp4(render_frames(model, qpos, **camera), path, fps=fps)
