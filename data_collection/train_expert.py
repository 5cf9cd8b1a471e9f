"""Train a Go2 data-collecting policy with PPO (rsl-rl-lib) and export it with its card.

    python data_collection/train_expert.py env=go2_simple          # expert -> assets/policies/go2_simple_expert.pt
    python data_collection/train_expert.py env=go2_hard            # expert -> assets/policies/go2_hard_expert.pt
    python data_collection/train_expert.py env=go2_hard role=weak  # weak   -> assets/policies/go2_weak.pt
    python data_collection/train_expert.py env=go2_hard device=cpu num_envs=64 max_iterations=10 export=/tmp/p.pt

Run directory runs/ppo/<env>/<role>/seed<seed>: rsl-rl's model_<it>.pt checkpoints, TensorBoard events,
config.yaml, exported/policy.pt. Rerunning the same command resumes. Details: docs/GO2_PIPELINE.md.
"""

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from go2_sevpo.cli import hydra_entry
from go2_sevpo.config import register_schema
from go2_sevpo.training.ppo import PPOTraining, PPOTrainConfig

register_schema(None, "train_expert", PPOTrainConfig)


GO2_ENVS = ("go2_simple", "go2_hard")


@hydra_entry("train_expert", allowed={"env": (GO2_ENVS, "PPO experts are trained for the Go2 envs; reach_avoid's "
                                               "expert is a planner (collect.py --policy expert env=reach_avoid)")})
def main(cfg: DictConfig) -> None:
    training = PPOTraining(OmegaConf.to_object(cfg), HydraConfig.get().runtime.output_dir)
    path = training.train()
    print(f"exported {path}")


if __name__ == "__main__":
    main()
