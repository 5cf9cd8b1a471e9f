"""Roll out zero actions or a TorchScript policy in an env and write an mp4 of one env.

    python envs/play.py env=go2_simple device=cpu num_envs=2 steps=200 video=out.mp4 [policy=CHECKPOINT]
"""

import go2_sevpo.rendering.video as video  # first: it picks the headless GL platform before mujoco loads

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from go2_sevpo.cli import hydra_entry
from go2_sevpo.envs.registry import make_env


def load_policy(path: str, device: torch.device):
    if not path:
        return None
    try:
        return torch.jit.load(path, map_location=device).eval()
    except (RuntimeError, ValueError) as err:
        raise FileNotFoundError(f"policy '{path}' is not a loadable TorchScript file: {str(err).splitlines()[0]}")


@hydra_entry("play", flag_aliases=("policy", "video"))
def main(cfg: DictConfig) -> None:
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    name = env_cfg.pop("name")
    env_cfg.update(device=cfg.device, num_envs=cfg.num_envs, seed=cfg.seed, record_qpos=True)
    env = make_env(name, **env_cfg)
    if not 0 <= cfg.env_index < env.num_envs:
        raise ValueError(f"env_index {cfg.env_index} is outside 0..{env.num_envs - 1}")
    if not hasattr(env, "mj_model"):
        raise ValueError(f"env '{name}' has no MuJoCo scene to render")
    policy = load_policy(cfg.policy, env.device)
    obs = env.get_observations()
    history = [env.get_render_state()]
    env.qpos_history.clear()
    falls = successes = 0
    with torch.inference_mode():
        for _ in range(cfg.steps):
            actions = policy(obs["policy"]) if policy is not None else torch.zeros(env.num_envs, env.num_actions)
            obs, _, _, extras = env.step(actions)
            falls += int(extras["costs"].sum())
            successes += int(extras["success"].sum())
    # qpos_history holds the state reached by each step, before an auto-reset replaced it.
    history += env.qpos_history
    qpos = np.stack([q[cfg.env_index].numpy() for q in history])
    path = video.render_video(env.mj_model, qpos, cfg.video, fps=1.0 / env.dt, width=cfg.width, height=cfg.height,
                              distance=cfg.camera_distance, azimuth=cfg.camera_azimuth,
                              elevation=cfg.camera_elevation)
    print(f"{name}: {cfg.steps} steps x {env.num_envs} envs, falls={falls} successes={successes}; wrote {path}")


if __name__ == "__main__":
    main()
