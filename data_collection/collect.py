"""Collect episodes with a policy into a dataset file (DSRL layout), resuming if interrupted.

    python data_collection/collect.py --policy expert env=reach_avoid episodes=1000 seed=0 start=random
    python data_collection/collect.py --policy expert env=go2_hard        # 6,000 episodes (configs/collect.yaml)
    python data_collection/collect.py --policy weak env=go2_hard checkpoint=PATH.pt

A checkpoint policy's file (path, sha256 and its card) is recorded in the dataset's attributes.
"""

from omegaconf import DictConfig, OmegaConf

from go2_sevpo.cli import hydra_entry
from go2_sevpo.data.collect import collect
from go2_sevpo.data.format import SOURCE_NAMES
from go2_sevpo.envs import make_env
from go2_sevpo.policies import make_policy, policy_checkpoint


@hydra_entry("collect", flag_aliases=("policy",))
def main(cfg: DictConfig) -> None:
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    env_cfg.update(device=cfg.device, start=cfg.start)
    name = env_cfg.pop("name")
    # Fail on a bad env option or policy name before any work is done.
    probe = make_env(name, **{**env_cfg, "num_envs": 1})
    make_policy(cfg.policy, probe, cfg.seed, cfg.checkpoint)
    source = cfg.policy if cfg.policy in SOURCE_NAMES else "unknown"
    attrs = {"env": name, "env_config": env_cfg, "policy": cfg.policy, "cost_limit": env_cfg["cost_limit"]}
    checkpoint = policy_checkpoint(cfg.policy, name, cfg.checkpoint)
    if checkpoint is not None:  # which trained policy made the data (the card says how it was made)
        from go2_sevpo.policies.exported import read_card, sha256_file

        attrs.update(policy_checkpoint=str(checkpoint), policy_checkpoint_sha256=sha256_file(checkpoint),
                     policy_card=read_card(checkpoint) or {})
    path = collect(
        make_env=lambda n, seed: make_env(name, **{**env_cfg, "num_envs": n, "seed": seed}),
        make_policy=lambda env, seed: make_policy(cfg.policy, env, seed, cfg.checkpoint),
        episodes=cfg.episodes,
        chunk_episodes=cfg.chunk_episodes,
        seed=cfg.seed,
        output=cfg.output,
        source=source,
        attrs=attrs,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
