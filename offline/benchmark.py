"""Train algorithms x datasets x seeds (one after another), evaluate the last iterate of each run from
the configured start modes, and write ONE results table (markdown + CSV) and a plot.

    python offline/benchmark.py algos=[sevpo,fisor,cpq,coptidice,bc_all,bc_safe] \\
        datasets=[data/reach_avoid/high.h5,data/reach_avoid/low.h5] seeds=[0,1,2] steps=20000
    python offline/benchmark.py train=false root=runs/benchmark      # tabulate what is there

Rerunning skips finished runs and resumes interrupted ones (train.py resumes a run dir); evaluations
are cached in each run's eval/ folder. Outputs: <root>/results/{results.md,results.csv,runs.csv,results.png}.

Fanning out: runs are independent, so a Hydra launcher trains them side by side with train.py's
multirun, into the same layout (configs/train.yaml, hydra.sweep), and offline/results.py (or this
script with train=false) tabulates them (docs/BASELINES.md, "Fanning out"; pip install -e ".[sweep]"):

    python offline/train.py -m hydra/launcher=cores algo=sevpo,fisor \
        dataset=data/reach_avoid/high.h5,data/reach_avoid/low.h5 seed=0,1,2 threads=1 hydra.sweep.dir=runs/benchmark
    python offline/results.py runs/benchmark

hydra/launcher=slurm sends the same runs to a SLURM cluster (configs/hydra/launcher/).
"""

import sys
from pathlib import Path

from omegaconf import DictConfig

from go2_sevpo.cli import hydra_entry
from go2_sevpo.evaluation import results


@hydra_entry("benchmark")
def main(cfg: DictConfig) -> None:
    from go2_sevpo.algorithms import registry

    algos = [str(a) for a in cfg.algos]
    if cfg.train:
        from go2_sevpo.config import CONFIG_DIR

        known = sorted(p.stem for p in (Path(CONFIG_DIR) / "algo").glob("*.yaml"))
        for a in algos:
            if a not in known:
                raise ValueError(f"unknown algo '{a}'; choose from {known} (registered: {', '.join(registry.names())})")
        for d in cfg.datasets:
            if not Path(str(d)).is_file():
                raise FileNotFoundError(f"{d}: no such dataset file")
        overrides = [f"threads={cfg.threads}", f"device={cfg.device}", *[str(o) for o in cfg.train_overrides]]
        if cfg.steps is not None:
            overrides.append(f"steps={cfg.steps}")
        jobs = [(str(cfg.task), a, str(d), int(s)) for d in cfg.datasets for a in algos for s in cfg.seeds]
        failures = results.train_runs(jobs, cfg.root, overrides)
    else:
        failures = []
    runs = results.discover_runs(cfg.root)
    if cfg.train:  # only this invocation's grid; train=false tabulates everything under root
        wanted = {(str(cfg.task), a, Path(str(d)).stem, int(s)) for d in cfg.datasets for a in algos for s in cfg.seeds}
        runs = [r for r in runs if (r.env, r.algo, r.dataset, r.seed) in wanted]
    if not runs:
        raise FileNotFoundError(f"{cfg.root}: no runs (<root>/<env>/<algo>/<dataset>/seed<k>/checkpoints/latest.pt)")
    rows, skipped = results.collect(runs, [str(s) for s in cfg.starts], int(cfg.episodes), int(cfg.eval_seed),
                                    str(cfg.device))
    results.write_results(rows, cfg.output, skipped + failures, algo_order=algos)
    print(f"{len(rows)} evaluations of {len({(r['algo'], r['dataset'], r['seed']) for r in rows})} runs -> "
          f"{cfg.output}/results.md, results.csv, runs.csv, results.png")
    if failures:
        print("\n".join(["failed runs:", *failures]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
