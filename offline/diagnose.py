"""Separate a SEVPO or FISOR run's actor from its acting rule: re-evaluate the last checkpoint with
each acting rule the algorithm has (SEVPO: sevpo, minqc, admissible, filtered, mode, actor; FISOR:
minqh, feasible, feasible_mode, actor), same episodes and seed for each, from one or several start modes.

    python offline/diagnose.py runs/reach_avoid/sevpo/high/seed0 [--starts paper hazard] [--episodes 100]
    python offline/diagnose.py RUN --starts paper random_feasible hazard --json RUN/diagnose.json

If the actor alone does well and the trained rule does not, the critics rank the candidates wrongly
(docs/SEVPO.md). Prints one line per (start, rule); `--json` also writes them as a list of records.
Bad input is one line on stderr with exit status 2.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from go2_sevpo.algorithms.sevpo import reads_reward_critic
from go2_sevpo.cli import one_line_errors
from go2_sevpo.utils.errors import ConfigError
from go2_sevpo.evaluation.evaluator import EvalConfig, LearnedPolicy, evaluate
from go2_sevpo.training.trainer import load_run

RULES = {  # algorithm: {the config's `select` value: what it does}
    "sevpo": {
        "sevpo": "argmax f among admissible, else argmin Qc_hat (the paper)",
        "minqc": "argmin Qc_hat (FISOR's rule)",
        "admissible": "first admissible candidate in the safe region, else argmin Qc_hat",
        "filtered": "first candidate with Qc_hat <= l and Qc <= delta in the safe region, else the sevpo rule",
        "mode": "most typical candidate passing both cost tests (else the admissible ones) in the safe region, else argmin Qc_hat",
        "actor": "actor alone (one sample, no critic)",
    },
    "fisor": {
        "minqh": "argmin Qh (FISOR)",
        "feasible": "first candidate with Qh <= 0 in the feasible region, else argmin Qh",
        "feasible_mode": "most typical candidate with Qh <= 0 in the feasible region, else argmin Qh",
        "actor": "actor alone (one sample, no critic)",
    },
}


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a SEVPO run directory")
    parser.add_argument("--starts", nargs="+", default=[""], help="start modes; default: the task's evaluation start")
    parser.add_argument("--rules", nargs="+", default=None, help="default: every rule of the run's algorithm")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="", help="also write the records to this file (records of other "
                        "(start, rule) pairs already in it are kept)")
    args = parser.parse_args()
    algo, normalizer, payload = load_run(args.run, args.device)
    name = payload["algo_config"].get("name")
    if name not in RULES:
        raise ConfigError(f"{args.run}: a {name} run; acting rules can be compared for {sorted(RULES)}")
    rules = args.rules or list(RULES[name])
    unknown = [r for r in rules if r not in RULES[name]]
    if unknown:
        raise ConfigError(f"unknown rule(s) {unknown} for {name}; choose from {list(RULES[name])}")
    needs_qr = [r for r in rules if name == "sevpo" and not algo.has_reward_critic
                and reads_reward_critic(dataclasses.replace(algo.cfg, select=r))]
    if needs_qr and args.rules:
        raise ConfigError(f"rule(s) {needs_qr} read the reward critic, which {args.run} was trained without "
                          f"(retrain with algo.reward_critic=true)")
    if needs_qr:
        print(f"skipping {needs_qr}: they read the reward critic, which this run was trained without")
        rules = [r for r in rules if r not in needs_qr]
    trained = algo.cfg.select
    print(f"{args.run} (step {payload['step']}, trained rule {trained}), {args.episodes} episodes, seed {args.seed}:")
    records = []
    for start in args.starts:
        cfg = EvalConfig(episodes=args.episodes, start=start, seed=args.seed)
        for rule in rules:
            algo.cfg.select = rule
            m = evaluate(LearnedPolicy(algo, normalizer, args.seed, algo.device), payload["env"], payload["env_config"],
                         cfg, algo.device)
            ends = {k: v for k, v in m["termination_reasons"].items() if v}
            records.append({"run": args.run, "step": payload["step"], "start": m.get("start", start), "rule": rule,
                            **{k: m[k] for k in ("success_rate", "mean_cost", "failure_rate", "mean_length") if k in m},
                            "ends": ends})
            print(f"  {start or 'default':16s} {rule:6s} success {m['success_rate']:.2f}  mean cost {m['mean_cost']:6.2f}  "
                  f"failure {m['failure_rate']:.2f}  ends {ends}", flush=True)
    if args.json:
        path = Path(args.json)
        new = {(r["start"], r["rule"]) for r in records}
        kept = [r for r in json.loads(path.read_text()) if (r["start"], r["rule"]) not in new] if path.exists() else []
        path.write_text(json.dumps(kept + records, indent=1))


if __name__ == "__main__":
    sys.exit(main())
