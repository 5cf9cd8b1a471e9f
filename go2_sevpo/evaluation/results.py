"""The results table: algorithms x datasets x seeds, trained by the one trainer, evaluated by the one
evaluator from one or more start modes, aggregated over seeds (mean and std of the LAST iterate).

Run layout (the same as `offline/train.py`'s default under `runs/`):
    <root>/<env>/<algo>/<dataset stem>/seed<k>/   checkpoints/latest.pt, metrics.json, ...
    <root>/<env>/<algo>/<dataset stem>/seed<k>/eval/<start>_seed<eval seed>/metrics.json  (shared with
                                                                                  offline/evaluate.py)
Outputs: results.md (one table per env, dataset and start), results.csv (the same, mean and std
columns), runs.csv (one row per run and start) and results.png (normalised reward against normalised
cost, with seed spread).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from go2_sevpo.utils.jobs import atomic_path, atomic_write_text, save_figure

# Metrics in the table, in order: (key, header, format).
TABLE_METRICS = (
    ("normalized_reward", "norm. reward", "{:.3f}"),
    ("normalized_cost", "norm. cost", "{:.2f}"),
    ("success_rate", "success", "{:.2f}"),
    ("failure_rate", "failure", "{:.2f}"),
    ("max_episode_cost", "max ep. cost", "{:.1f}"),
    ("mean_return", "return", "{:.1f}"),
    ("mean_cost", "cost", "{:.2f}"),
    ("fall_rate", "fall", "{:.3f}"),  # legged tasks: episodes ended by a fall (0 elsewhere)
    ("mean_length", "length", "{:.0f}"),
    # The learned safe region against the task's ground truth (reach_avoid's oracle); "-" for algorithms
    # without a region (BC, CPQ, COptiDICE) and tasks without an oracle.
    ("region_iou", "region IoU", "{:.3f}"),
)
PAPER_QUALITIES = ("high", "medium", "low")
RUN_PATTERN = re.compile(r"seed(\d+)$")


@dataclass(frozen=True)
class Run:
    env: str
    algo: str
    dataset: str  # dataset file stem
    seed: int
    path: Path


def run_dir(root: str | Path, env: str, algo: str, dataset: str | Path, seed: int) -> Path:
    return Path(root) / env / algo / Path(dataset).stem / f"seed{seed}"


def discover_runs(root: str | Path) -> list[Run]:
    """Every <root>/<env>/<algo>/<dataset>/seed<k> folder that holds a checkpoint, sorted."""
    runs = []
    for ckpt in sorted(Path(root).glob("*/*/*/seed*/checkpoints/latest.pt")):
        path = ckpt.parent.parent
        match = RUN_PATTERN.match(path.name)
        if match:
            env, algo, dataset = path.parts[-4:-1]
            runs.append(Run(env, algo, dataset, int(match.group(1)), path))
    return runs


def is_complete(path: Path) -> bool:
    """A finished run: train.py writes metrics.json only after its last step and final evaluation."""
    return (path / "metrics.json").is_file()


# ----------------------------------------------------------------------------- training
def train_runs(jobs: Sequence[tuple[str, str, str, int]], root: str | Path, overrides: Sequence[str],
               message: Callable[[str], None] = print, repo: str | Path | None = None) -> list[str]:
    """Train (env, algo, dataset path, seed) jobs one after another with `offline/train.py`, skipping
    finished runs (train.py itself resumes an interrupted one). Each run's output goes to
    <run>/train.log. Returns the failed runs' descriptions."""
    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    failures = []
    for i, (env, algo, dataset, seed) in enumerate(jobs, 1):
        path = run_dir(root, env, algo, dataset, seed).resolve()
        tag = f"[{i}/{len(jobs)}] {algo} {env} {Path(dataset).stem} seed{seed}"
        if is_complete(path):
            message(f"{tag}: done already")
            continue
        path.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "offline/train.py", f"algo={algo}", f"env={env}", f"dataset={Path(dataset).resolve()}",
                f"seed={seed}", f"hydra.run.dir={path}", "progress=false", *overrides]
        message(f"{tag}: training ...")
        t0 = time.perf_counter()
        with open(path / "train.log", "a") as log:
            rc = subprocess.run(args, cwd=repo, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc != 0:
            lines = (path / "train.log").read_text().strip().splitlines()
            failures.append(f"{tag}: exit {rc}: {lines[-1] if lines else ''}")
            message(failures[-1])
        else:
            message(f"{tag}: done in {time.perf_counter() - t0:.0f} s")
    return failures


# ----------------------------------------------------------------------------- evaluation
def evaluate_run(path: Path, start: str, episodes: int, seed: int, device: str = "cpu") -> dict[str, Any]:
    """Metrics of a run's last checkpoint from `start`, reusing <run>/eval/<start>_seed<seed>/ when it
    holds the same checkpoint and episode count (e.g. written by offline/evaluate.py)."""
    from go2_sevpo.evaluation.evaluator import EvalConfig, evaluate_run as evaluate_checkpoint

    return evaluate_checkpoint(path, EvalConfig(episodes=episodes, start=start, seed=seed), device, reuse=True)


def collect(runs: Sequence[Run], starts: Sequence[str], episodes: int, seed: int = 0, device: str = "cpu",
            message: Callable[[str], None] = print) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per (complete run, start). Incomplete runs are skipped and listed (last iterate only:
    a run still training has no final checkpoint yet)."""
    rows, skipped = [], []
    for run in runs:
        if not is_complete(run.path):
            skipped.append(f"{run.path} (not finished)")
            continue
        trained = json.loads((run.path / "metrics.json").read_text())
        for start in starts:
            m = evaluate_run(run.path, start, episodes, seed, device)
            message(f"{run.algo} {run.env} {run.dataset} seed{run.seed} start={m['start']}: success "
                    f"{m['success_rate']:.2f}  cost {m['mean_cost']:.2f}  failure {m['failure_rate']:.2f}")
            rows.append({"env": run.env, "dataset": run.dataset, "start": m["start"], "algo": run.algo,
                         "seed": run.seed, "steps": trained.get("steps"), "episodes": m["episodes"], "eval_seed": seed,
                         **{k: m.get(k) for k, _, _ in TABLE_METRICS},
                         # Provenance: the dataset's content hash and the commit that trained the run.
                         "fingerprint": trained.get("fingerprint"), "code": trained.get("code", "unknown")})
    return rows, skipped


ROW_KEY = ("env", "dataset", "start", "algo", "seed")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a runs.csv written by `write_results` (e.g. on another machine, or by an earlier
    session whose run folders are gone), typed back: ints for seed/steps/episodes, floats (None when
    empty) for the metrics."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such runs.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(ROW_KEY + ("steps", "episodes", "eval_seed")) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a runs.csv of offline/results.py (no column {', '.join(sorted(missing))})")
        rows = []
        for line, raw in enumerate(reader, 2):
            try:
                row: dict[str, Any] = dict(raw)
                for key in ("seed", "steps", "episodes", "eval_seed"):
                    row[key] = int(raw[key])
                for key, _, _ in TABLE_METRICS:
                    row[key] = float(raw[key]) if raw.get(key) not in (None, "") else None
            except ValueError as e:
                raise ValueError(f"{path}:{line}: unreadable row ({e})") from None
            rows.append(row)
    return rows


def merge_rows(fresh: Sequence[dict[str, Any]], earlier: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`fresh` plus the `earlier` rows of (env, dataset, start, algo, seed) that `fresh` does not have:
    a run evaluated here replaces its earlier row, so rerunning a job updates the table. Earlier rows of
    a dataset that the fresh runs trained on another version of (another content fingerprint) are
    dropped: a recipe that was changed and rebuilt supersedes the rows of its old file."""
    have = {tuple(r[k] for k in ROW_KEY) for r in fresh}
    current = {(r["env"], r["dataset"]): r.get("fingerprint") for r in fresh if r.get("fingerprint")}
    return [*fresh, *(r for r in earlier if tuple(r[k] for k in ROW_KEY) not in have
                      and current.get((r["env"], r["dataset"]), r.get("fingerprint")) == r.get("fingerprint"))]


def check_one_version(rows: Sequence[dict[str, Any]]) -> None:
    """Refuse a table whose cells for one dataset name mix rows of different files (fingerprints)."""
    versions: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        if r.get("fingerprint"):
            counts = versions.setdefault((r["env"], r["dataset"]), {})
            counts[r["fingerprint"]] = counts.get(r["fingerprint"], 0) + 1
    for (env, dataset), counts in versions.items():
        if len(counts) > 1:
            found = ", ".join(f"{fp} ({n} rows)" for fp, n in sorted(counts.items(), key=lambda kv: -kv[1]))
            raise ValueError(f"{env}/{dataset}: rows from {len(counts)} versions of the dataset ({found}); "
                             f"retrain on one file (a fresh run on it drops the other's merged rows)")


# ----------------------------------------------------------------------------- aggregation
def aggregate(rows: Sequence[dict[str, Any]], algo_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Mean and std (ddof 1; NaN for a single seed) over seeds per (env, dataset, start, algo)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["env"], row["dataset"], row["start"], row["algo"]), []).append(row)
    order = {a: i for i, a in enumerate(algo_order)}
    out = []
    for (env, dataset, start, algo), members in sorted(groups.items(),
                                                      key=lambda kv: (*kv[0][:3], order.get(kv[0][3], 1e9), kv[0][3])):
        entry = {"env": env, "dataset": dataset, "start": start, "algo": algo, "seeds": len(members),
                 "steps": sorted({m["steps"] for m in members}), "episodes": members[0]["episodes"]}
        for key, _, _ in TABLE_METRICS:
            values = np.array([np.nan if m[key] is None else m[key] for m in members], dtype=float)
            entry[f"{key}_mean"] = float(np.mean(values))
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
        out.append(entry)
    return out


def _cell(entry: dict[str, Any], key: str, fmt: str) -> str:
    mean, std = entry[f"{key}_mean"], entry[f"{key}_std"]
    if np.isnan(mean):
        return "-"
    return fmt.format(mean) + ("" if np.isnan(std) else " ± " + fmt.format(std))


def _overview_cell(g: dict[str, Any]) -> str:
    return (f"{g['success_rate_mean']:.2f} / {g['failure_rate_mean']:.2f} / {g['mean_cost_mean']:.2f} "
            f"({g['seeds']})")


def overview(groups: Sequence[dict[str, Any]]) -> list[str]:
    """One compact table per (env, start): algorithms x datasets, each cell "success / failure / mean cost
    (seeds)", the comparison the detailed tables below spread over many sections. (From reach_avoid's
    hazard start failure is 1 by construction and the mean cost is the steps spent inside.)"""
    lines = []
    for env, start in dict.fromkeys((g["env"], g["start"]) for g in groups):
        entries = [g for g in groups if (g["env"], g["start"]) == (env, start)]
        # The papers' three qualities first, from best to worst, then any other recipe by name.
        datasets = sorted(dict.fromkeys(g["dataset"] for g in entries),
                          key=lambda d: (PAPER_QUALITIES.index(d) if d in PAPER_QUALITIES else len(PAPER_QUALITIES), d))
        cells = {(g["algo"], g["dataset"]): g for g in entries}
        lines += [f"## Overview: {env} / start={start} (success / failure / mean cost, seeds)", "",
                  "| algo | " + " | ".join(datasets) + " |", "|" + "---|" * (len(datasets) + 1)]
        for algo in dict.fromkeys(g["algo"] for g in entries):
            row = [_overview_cell(cells[algo, d]) if (algo, d) in cells else "-" for d in datasets]
            lines.append(f"| {algo} | " + " | ".join(row) + " |")
        lines.append("")
    return lines


def markdown(groups: Sequence[dict[str, Any]], skipped: Sequence[str] = ()) -> str:
    lines = ["# Results", "",
             "Last iterate of every run; mean ± std over training seeds (std: ddof 1). Normalised cost <= 1 is "
             "within the task's episode cost limit; failure = fraction of episodes with cost > the limit.", "",
             *overview(groups)]
    sections: dict[tuple, list[dict[str, Any]]] = {}
    for g in groups:
        sections.setdefault((g["env"], g["dataset"], g["start"]), []).append(g)
    for (env, dataset, start), entries in sections.items():
        lines += [f"## {env} / {dataset} / start={start}", ""]
        # A metric no entry of the section has (e.g. region IoU or normalised reward on Go2) is left out.
        metrics = [(k, h, f) for k, h, f in TABLE_METRICS if any(not np.isnan(e[f"{k}_mean"]) for e in entries)]
        header = ["algo", "seeds", "steps", *[h for _, h, _ in metrics]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for e in entries:
            steps = ",".join(str(s) for s in e["steps"])
            lines.append("| " + " | ".join([e["algo"], str(e["seeds"]), steps,
                                            *[_cell(e, k, f) for k, _, f in metrics]]) + " |")
        lines.append("")
    if skipped:
        lines += ["Not included (unfinished):", "", *[f"- {s}" for s in skipped], ""]
    return "\n".join(lines)


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        atomic_write_text(path, "")
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        # The union of the rows' keys, in first-seen order: merged rows of older collections may lack a column.
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (";".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()})


def plot(groups: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel per (env, dataset, start): normalised reward against normalised cost, one marker per
    algorithm with the seed std as error bars; the dashed line is the cost limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(g["env"], g["start"]) for g in groups}), sorted({g["dataset"] for g in groups})
    rows, cols = panels
    if not rows:
        return
    algos = list(dict.fromkeys(g["algo"] for g in groups))
    colors = {a: plt.cm.tab10(i % 10) for i, a in enumerate(algos)}
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.2 * len(cols), 3.6 * len(rows)), squeeze=False)
    for i, (env, start) in enumerate(rows):
        for j, dataset in enumerate(cols):
            ax = axes[i][j]
            for g in groups:
                if (g["env"], g["start"], g["dataset"]) != (env, start, dataset):
                    continue
                xerr = None if np.isnan(g["normalized_cost_std"]) else g["normalized_cost_std"]
                yerr = None if np.isnan(g["normalized_reward_std"]) else g["normalized_reward_std"]
                ax.errorbar(g["normalized_cost_mean"], g["normalized_reward_mean"], xerr=xerr, yerr=yerr, fmt="o",
                            color=colors[g["algo"]], label=g["algo"], capsize=3)
            ax.axvline(1.0, ls="--", color="gray", lw=1)
            ax.set_title(f"{env} / {dataset} / {start}", fontsize=9)
            ax.set_xlabel("normalised cost")
            ax.set_ylabel("normalised reward")
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def write_results(rows: Sequence[dict[str, Any]], out_dir: str | Path, skipped: Sequence[str] = (),
                  algo_order: Sequence[str] = ()) -> list[dict[str, Any]]:
    """results.md, results.csv, runs.csv and results.png in `out_dir`; returns the aggregated groups."""
    check_one_version(rows)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = aggregate(rows, algo_order)
    atomic_write_text(out / "results.md", markdown(groups, skipped))
    write_csv(out / "results.csv", groups)
    write_csv(out / "runs.csv", list(rows))
    plot(groups, out / "results.png")
    return groups
