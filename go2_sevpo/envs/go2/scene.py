"""Compose the MuJoCo model of one task: the Go2 MJCF plus the terrain boxes baked into worldbody."""

from __future__ import annotations

from pathlib import Path

import mujoco

from go2_sevpo.envs.go2.terrain import TerrainLayout

GO2_XML = Path(__file__).resolve().parents[3] / "assets" / "go2" / "go2.xml"

LEGS = ("FL", "FR", "RL", "RR")
FOOT_BODIES = tuple(f"{leg}_foot" for leg in LEGS)
# Bodies whose contact with the terrain is a fall (everything but the feet).
NON_FOOT_BODIES = ("base",) + tuple(f"{leg}_{part}" for part in ("hip", "thigh", "calf") for leg in LEGS)


def build_model(layout: TerrainLayout, xml_path: str | Path = GO2_XML) -> mujoco.MjModel:
    """Robot + terrain. Terrain geoms are contype 1 / conaffinity 2: they collide with the robot's
    geoms (contype 2 / conaffinity 1) and not with each other."""
    if not Path(xml_path).is_file():
        raise FileNotFoundError(f"Go2 MJCF not found at {xml_path}")
    spec = mujoco.MjSpec.from_file(str(xml_path))
    for i, box in enumerate(layout.boxes):
        spec.worldbody.add_geom(
            name=f"terrain_{i}", type=mujoco.mjtGeom.mjGEOM_BOX, size=list(box.half_size), pos=list(box.pos),
            quat=list(box.quat), rgba=list(box.rgba), contype=1, conaffinity=2, condim=3,
            friction=[1.0, 0.005, 0.0001],
        )
    # Lights, sky and offscreen buffer for videos; none of them affects the physics.
    spec.worldbody.add_light(pos=[0, 0, 6], dir=[0.2, 0.3, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL,
                             diffuse=[0.6, 0.6, 0.6])
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.5, 0.5, 0.5]
    spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                     rgb1=[0.55, 0.7, 0.9], rgb2=[0.1, 0.15, 0.25], width=256, height=256)
    spec.visual.global_.offwidth = 640
    spec.visual.global_.offheight = 480
    return spec.compile()


def sensor_slices(model: mujoco.MjModel) -> tuple[list[int], list[int]]:
    """sensordata indices of the foot contact flags and of the non-foot contact flags."""
    def index(name: str) -> int:
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, name)
        if sid < 0:
            raise KeyError(f"Go2 MJCF has no sensor '{name}'")
        return int(model.sensor_adr[sid])

    return [index(f"{b}_contact") for b in FOOT_BODIES], [index(f"{b}_contact") for b in NON_FOOT_BODIES]
