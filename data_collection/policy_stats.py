"""Success rate and episode cost of a data-collection policy, over many parallel episodes.

    python data_collection/policy_stats.py --policy expert env=reach_avoid episodes=1000 start=paper
    python data_collection/policy_stats.py --policy expert env=safety_gym env.task=SafetyPointGoal1-v0 episodes=20

Goals per episode count steps with `success` set: a navigation task places a new goal once one is met.
"""

import numpy as np
from omegaconf import DictConfig, OmegaConf

from go2_sevpo.cli import hydra_entry
from go2_sevpo.data.collect import rollout_first_episodes
from go2_sevpo.envs import make_env
from go2_sevpo.policies import make_policy


@hydra_entry("policy_stats", flag_aliases=("policy",))
def main(cfg: DictConfig) -> None:
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    env_cfg.update(device=cfg.device, start=cfg.start, num_envs=cfg.episodes, seed=cfg.seed)
    env = make_env(env_cfg.pop("name"), **env_cfg)
    batch = rollout_first_episodes(env, make_policy(cfg.policy, env, cfg.seed))
    ends = np.flatnonzero(batch["terminals"] | batch["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    cost = np.add.reduceat(batch["costs"], starts)
    goals = np.add.reduceat(batch["success"].astype(int), starts)
    success = goals > 0
    returns = np.add.reduceat(batch["rewards"], starts)
    lengths = ends - starts + 1
    print(f"policy={cfg.policy} env={env.cfg.name} start={cfg.start} episodes={len(ends)} seed={cfg.seed}: "
          f"success {success.mean():.3f}  mean return {returns.mean():.3f}  goals per episode {goals.mean():.2f}  mean cost {cost.mean():.3f}  episodes with cost {np.mean(cost > 0):.3f}  "
          f"mean length {lengths.mean():.1f}")


if __name__ == "__main__":
    main()
