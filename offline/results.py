"""Evaluate and tabulate the finished runs under a root (e.g. trained with a Hydra multirun launcher):

    python offline/results.py runs/benchmark [--starts paper random_feasible] [--episodes 100] [--seed 0]
    python offline/results.py runs/benchmark --merge docs/results/runs.csv   # + rows of runs trained elsewhere

Same outputs as offline/benchmark.py: <root>/results/{results.md,results.csv,runs.csv,results.png}.
Bad input is one line on stderr with exit status 2.
"""

import argparse
import sys
from pathlib import Path

from go2_sevpo.cli import one_line_errors
from go2_sevpo.evaluation import results


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="folder holding <env>/<algo>/<dataset>/seed<k> runs")
    parser.add_argument("--starts", nargs="+", default=["paper", "random_feasible"])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=None, help="default: <root>/results")
    parser.add_argument("--merge", nargs="+", default=[], metavar="RUNS_CSV",
                        help="runs.csv files of earlier collections (another machine or session): their rows join "
                             "the table unless a run here has the same env, dataset, start, algo and seed")
    args = parser.parse_args()
    earlier = [row for path in args.merge for row in results.read_rows(path)]
    runs = results.discover_runs(args.root)
    if not runs and not earlier:
        raise FileNotFoundError(f"{args.root}: no runs (<root>/<env>/<algo>/<dataset>/seed<k>/checkpoints/latest.pt)")
    rows, skipped = results.collect(runs, args.starts, args.episodes, args.seed, args.device)
    rows = results.merge_rows(rows, [r for r in earlier if r["start"] in args.starts
                                     and (r["episodes"], r["eval_seed"]) == (args.episodes, args.seed)])
    output = args.output or str(Path(args.root) / "results")
    results.write_results(rows, output, skipped)
    print(f"{len(rows)} evaluations -> {output}/results.md, results.csv, runs.csv, results.png")


if __name__ == "__main__":
    sys.exit(main())
