"""Train an offline safe-RL algorithm on a dataset; rerun the same command to resume after a kill.

    python offline/train.py algo=sevpo env=reach_avoid dataset=data/reach_avoid/high.h5 seed=0
    python offline/train.py algo=sevpo_paper dataset=... device=cuda steps=1000000
    python offline/train.py env=go2_hard      # dataset: configs/datasets.yaml (data/go2_hard/mixed.h5)

Run directory (hydra.run.dir=... to choose): config.yaml, checkpoints/latest.pt, tensorboard/,
metrics.json, plots/. Bad input is one line on stderr with exit status 2.
"""

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from go2_sevpo.algorithms import registry as algo_registry
from go2_sevpo.cli import hydra_entry
from go2_sevpo.config import register_schema
from go2_sevpo.training.trainer import OfflineTrainer, TrainConfig

register_schema(None, "train", TrainConfig)
algo_registry.register_schemas()
OmegaConf.register_new_resolver("stem", lambda path: Path(str(path)).stem, replace=True)


@hydra_entry("train")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    algo_registry.lookup(cfg.algo.name)  # unknown algorithm: one-line error before any work
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    trainer = OfflineTrainer(OmegaConf.to_object(cfg), HydraConfig.get().runtime.output_dir, config_dict)
    metrics = trainer.train()
    print(
        f"{trainer.run_dir}: success {metrics['success_rate']:.3f}  mean cost {metrics['mean_cost']:.3f}  "
        f"failure {metrics['failure_rate']:.3f}  fall {metrics['fall_rate']:.3f}  "
        f"normalized reward {metrics['normalized_reward']}"
        + (f"  region IoU {metrics['region_iou']:.3f}" if "region_iou" in metrics else "")
    )


def default_dataset(argv: list[str]) -> str | None:
    """configs/datasets.yaml: the dataset an env trains on when no dataset= is given (Go2: the mix)."""
    env = next((a.split("=", 1)[1] for a in argv if a.startswith("env=")), "reach_avoid")
    return OmegaConf.load(Path(__file__).resolve().parent.parent / "configs" / "datasets.yaml").get(env)


if __name__ == "__main__":
    if not any(a.startswith("dataset=") for a in sys.argv[1:]):
        default = default_dataset(sys.argv[1:])
        if default is None:
            print("error: dataset=PATH is required (an HDF5 file in the DSRL layout)", file=sys.stderr)
            sys.exit(2)
        if not Path(default).exists():
            print(f"error: no dataset= given and the default {default} does not exist; make it with "
                  "data_collection/collect.py and mix.py (docs/GO2_PIPELINE.md)", file=sys.stderr)
            sys.exit(2)
        sys.argv.append(f"dataset={default}")
    main()
