"""Mix source datasets into datasets of stated safe:unsafe ratios (recipes in configs/mix.yaml).

    python data_collection/mix.py                # high / medium / low quality reach-avoid datasets
    python data_collection/mix.py only=[go2_hard]  # data/go2_hard/mixed.h5: 6,000 expert + 3,000 weak trajectories
    python data_collection/mix.py only=[point_goal1_8to1,point_goal1_1to1,point_goal1_1to3]  # our PointGoal1 data

A recipe may set its own source_dir, output, num_safe and cost_limit.
"""

from pathlib import Path

from omegaconf import DictConfig

from go2_sevpo.cli import hydra_entry
from go2_sevpo.data.format import load_dataset
from go2_sevpo.data.mix import MixRecipe, SourceMixRecipe, mix, mix_by_source
from go2_sevpo.data.summary import summarize


@hydra_entry("mix")
def main(cfg: DictConfig) -> None:
    names = list(cfg.only) if cfg.only else list(cfg.recipes)
    unknown = sorted(set(names) - set(cfg.recipes))
    if unknown:
        raise KeyError(f"unknown recipe(s) {unknown}; recipes: {sorted(cfg.recipes)}")
    for name in names:
        r = cfg.recipes[name]
        src = Path(r.get("source_dir", cfg.source_dir))
        output = str(r.get("output", Path(cfg.output_dir) / f"{name}.h5"))
        if "counts" in r:  # whole trajectories per source (Go2)
            if len(r.sources) != len(r.counts):
                raise ValueError(f"recipe '{name}': {len(r.sources)} sources but {len(r.counts)} counts")
            recipe = SourceMixRecipe(name=name, counts={str(src / p): int(n) for p, n in zip(r.sources, r.counts)},
                                     cost_limit=float(cfg.cost_limit), seed=int(cfg.seed))
            for path in recipe.counts:
                if not Path(path).exists():
                    raise FileNotFoundError(f"source {path} is missing; make it with data_collection/collect.py "
                                            "(see docs/GO2_PIPELINE.md)")
            print(summarize(load_dataset(mix_by_source(recipe, output))), end="\n\n")
            continue
        recipe = MixRecipe(
            name=name,
            ratio=float(r.ratio),
            num_safe=int(r.get("num_safe", cfg.num_safe)),
            safe_sources=[str(src / p) for p in r.safe_sources],
            unsafe_sources=[str(src / p) for p in r.unsafe_sources],
            cost_limit=float(r.get("cost_limit", cfg.cost_limit)),
            seed=int(cfg.seed),
        )
        for path in recipe.safe_sources + recipe.unsafe_sources:
            if not Path(path).exists():
                raise FileNotFoundError(f"source {path} is missing; make it with data_collection/collect.py "
                                        "(see README: Reach-avoid data)")
        out = mix(recipe, output)
        print(summarize(load_dataset(out)), end="\n\n")


if __name__ == "__main__":
    main()
