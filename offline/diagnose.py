"""Separate a SEVPO run's actor from its acting rule: re-evaluate the last checkpoint with the rule
it was trained with, with FISOR's argmin-Qc_hat rule, and with the EMA actor alone (one sample, no
critic), same episodes and seed for each.

    python offline/diagnose.py runs/reach_avoid/sevpo/high/seed0 [--start paper] [--episodes 100]

If the actor alone does well and the trained rule does not, the critics rank the candidates wrongly
(docs/SEVPO.md, "Why goal-reaching fails here"). Prints one line per rule; writes nothing.
Bad input is one line on stderr with exit status 2.
"""

import argparse
import sys

from go2_sevpo.cli import one_line_errors
from go2_sevpo.utils.errors import ConfigError
from go2_sevpo.evaluation.evaluator import EvalConfig, LearnedPolicy, evaluate
from go2_sevpo.training.trainer import load_run

RULES = {  # name: SEVPOConfig fields used when acting
    "trained rule": {},
    "argmin Qc_hat (FISOR)": {"select": "minqc"},
    "actor alone (N=1)": {"num_candidates": 1},
}


@one_line_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a SEVPO run directory")
    parser.add_argument("--start", default="", help="start mode; default: the task's evaluation start")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    algo, normalizer, payload = load_run(args.run, args.device)
    if payload["algo_config"].get("name") != "sevpo":
        raise ConfigError(f"{args.run}: a {payload['algo_config'].get('name')} run; this compares SEVPO's acting rules")
    trained = {"select": algo.cfg.select, "num_candidates": algo.cfg.num_candidates}
    cfg = EvalConfig(episodes=args.episodes, start=args.start, seed=args.seed)
    print(f"{args.run} (step {payload['step']}), {args.episodes} episodes, seed {args.seed}:")
    for name, fields in RULES.items():
        for key, value in {**trained, **fields}.items():
            setattr(algo.cfg, key, value)
        m = evaluate(LearnedPolicy(algo, normalizer, args.seed, algo.device), payload["env"], payload["env_config"],
                     cfg, algo.device)
        ends = {k: v for k, v in m["termination_reasons"].items() if v}
        print(f"  {name:24s} success {m['success_rate']:.2f}  mean cost {m['mean_cost']:6.2f}  "
              f"failure {m['failure_rate']:.2f}  ends {ends}")


if __name__ == "__main__":
    sys.exit(main())
