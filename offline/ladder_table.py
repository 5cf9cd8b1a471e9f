"""Collect the ablation ladder's diagnose.json files into one markdown table (rung x start x rule:
success, mean cost, failure; mean over seeds, with the spread when there are several).

    python offline/ladder_table.py runs/ladder/low [--starts paper random_feasible hazard] [--out table.md]

Written by offline/ablation_ladder.sh (one folder per rung, one seed<k> folder per seed).
"""

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from go2_sevpo.cli import one_line_errors
from go2_sevpo.utils.errors import ConfigError


def cell(values: list[float], digits: int = 2) -> str:
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ladder", help="folder with one sub-folder per rung")
    parser.add_argument("--starts", nargs="+", default=["paper", "random_feasible", "hazard"])
    parser.add_argument("--rules", nargs="+", default=["sevpo", "minqc", "admissible", "filtered", "actor"])
    parser.add_argument("--out", default="", help="also write the table to this file")
    args = parser.parse_args()
    files = sorted(Path(args.ladder).glob("*/seed*/diagnose.json"))
    if not files:
        raise ConfigError(f"{args.ladder}: no <rung>/seed<k>/diagnose.json below it")
    table: dict[tuple, list[dict]] = defaultdict(list)
    for f in files:
        for r in json.loads(f.read_text()):
            table[(f.parent.parent.name, r["start"], r["rule"])].append(r)
    rungs = sorted({k[0] for k in table})
    lines = []
    for start in args.starts:
        label = "mean cost (steps in the hazard)" if start == "hazard" else "mean cost"
        lines += [f"### start = {start}", "",
                  "| rung | seeds | " + " | ".join(f"{rule}: success / {label} / failure" for rule in args.rules) + " |",
                  "|---|---|" + "---|" * len(args.rules)]
        for rung in rungs:
            cells, seeds = [], 0
            for rule in args.rules:
                rows = table.get((rung, start, rule), [])
                seeds = max(seeds, len(rows))
                cells.append(" / ".join(cell([r[k] for r in rows]) for k in ("success_rate", "mean_cost", "failure_rate"))
                             if rows else "-")
            lines.append(f"| {rung} | {seeds} | " + " | ".join(cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
