"""Compare a SEVPO run's critics with the truth rolled out on reach-avoid's known dynamics
(go2_sevpo/evaluation/critic_truth.py says what is measured and why).

    python offline/critic_truth.py runs/ladder/low/4_trust_region/seed0 [--states 48] [--json OUT]
    python offline/critic_truth.py RUN --escape      # Qc_hat in the unsafe region against the best escape
    python offline/critic_truth.py RUN --escape --speeds 0 0.1 0.2 0.4   # ... inside the hazard at these speeds
    python offline/critic_truth.py RUN --stays --grid 5   # the hazard-start episodes that stay inside, traced

Bad input is one line on stderr with exit status 2.
"""

import argparse
import json
import sys
from pathlib import Path

from go2_sevpo.cli import one_line_errors
from go2_sevpo.data.format import load_dataset
from go2_sevpo.envs.reach_avoid import V_MAX
from go2_sevpo.evaluation.critic_truth import (CriticTruthConfig, critic_truth, escape_truth, format_escape_report,
                                               format_report, format_stay_report, stay_truth)
from go2_sevpo.training.trainer import load_run
from go2_sevpo.utils.errors import ConfigError


@one_line_errors
def main() -> None:
    defaults = CriticTruthConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a SEVPO run directory on reach_avoid")
    for name in ("states", "grid", "rollouts", "horizon", "seed"):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--escape", action="store_true",
                        help="probe the conservative cost critic on unsafe states (eq. 14) instead, against the "
                             "true best escape cost; --grid sets the action grid (5 is a finer probe)")
    parser.add_argument("--speeds", type=float, nargs="+", default=list(defaults.probe_speeds),
                        help="--escape: speeds (m/s) at which the probed states inside the hazard are set (default 0)")
    parser.add_argument("--stays", action="store_true",
                        help="trace the hazard-start episodes (the evaluator's, with the run's acting rule) that stay "
                             "inside the hazard: speed, accelerating actor samples, Qc_hat against the true escape")
    parser.add_argument("--episodes", type=int, default=100, help="--stays: hazard-start episodes")
    parser.add_argument("--stay-steps", type=int, default=100, help="--stays: steps inside that make a stay")
    args = parser.parse_args()
    if args.escape and args.stays:
        raise ConfigError("--escape and --stays are two probes: choose one")
    if any(not 0 <= v <= V_MAX for v in args.speeds):
        raise ConfigError(f"--speeds must lie in [0, {V_MAX}], got {args.speeds}")
    algo, normalizer, payload = load_run(args.run)
    if payload["algo_config"].get("name") != "sevpo" or payload["env"] != "reach_avoid":
        raise ConfigError(f"{args.run}: a {payload['algo_config'].get('name')} run on {payload['env']}; "
                          "the truth can only be rolled out for SEVPO on reach_avoid")
    dataset = load_dataset(payload["dataset"], payload["obs_dim"], payload["act_dim"])
    cfg = CriticTruthConfig(**{k: getattr(args, k) for k in ("states", "grid", "rollouts", "horizon", "seed")},
                            probe_speeds=tuple(args.speeds))
    if args.stays:
        m = stay_truth(algo, normalizer, payload["env_config"], cfg, args.episodes, args.stay_steps)
        report = format_stay_report(m)
    else:
        m = (escape_truth if args.escape else critic_truth)(algo, normalizer, dataset, cfg)
        report = (format_escape_report if args.escape else format_report)(m)
    print(f"{args.run} (step {payload['step']}):")
    print(report)
    if args.json:
        Path(args.json).write_text(json.dumps({"run": args.run, "step": payload["step"], **m}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
