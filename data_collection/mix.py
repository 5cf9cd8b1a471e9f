"""Mix source datasets into datasets of stated safe:unsafe ratios (recipes in configs/mix.yaml).

    python data_collection/mix.py                # high / medium / low quality reach-avoid datasets
"""

from pathlib import Path

from omegaconf import DictConfig

from go2_sevpo.cli import hydra_entry
from go2_sevpo.data.format import load_dataset
from go2_sevpo.data.mix import MixRecipe, mix
from go2_sevpo.data.summary import summarize


@hydra_entry("mix")
def main(cfg: DictConfig) -> None:
    names = list(cfg.only) if cfg.only else list(cfg.recipes)
    unknown = sorted(set(names) - set(cfg.recipes))
    if unknown:
        raise KeyError(f"unknown recipe(s) {unknown}; recipes: {sorted(cfg.recipes)}")
    src = Path(cfg.source_dir)
    for name in names:
        r = cfg.recipes[name]
        recipe = MixRecipe(
            name=name,
            ratio=float(r.ratio),
            num_safe=int(r.get("num_safe", cfg.num_safe)),
            safe_sources=[str(src / p) for p in r.safe_sources],
            unsafe_sources=[str(src / p) for p in r.unsafe_sources],
            cost_limit=float(cfg.cost_limit),
            seed=int(cfg.seed),
        )
        for path in recipe.safe_sources + recipe.unsafe_sources:
            if not Path(path).exists():
                raise FileNotFoundError(f"source {path} is missing; make it with data_collection/collect.py "
                                        "(see README: Reach-avoid data)")
        out = mix(recipe, str(Path(cfg.output_dir) / f"{name}.h5"))
        print(summarize(load_dataset(out)), end="\n\n")


if __name__ == "__main__":
    main()
