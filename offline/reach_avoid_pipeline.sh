#!/usr/bin/env bash
# The main job on its built-in default: reach-avoid on CPU, end to end.
#   data (expert planner + random policy, three quality mixes) -> SEVPO -> batched evaluation + plots
# Resumable: rerun after an interruption and finished stages are skipped, a killed training resumes.
#
#   bash offline/reach_avoid_pipeline.sh                  # SEVPO on the low-quality mix, seed 0
#   QUALITIES="high medium low" SEEDS="0 1 2" bash offline/reach_avoid_pipeline.sh   # the docs' table
# Extra arguments go to every offline/train.py call (e.g. steps=5000 device=cuda algo=sevpo_paper).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
QUALITIES=${QUALITIES:-low}
SEEDS=${SEEDS:-0}
# Torch threads per training: 2 (both cores) for the default single run (the whole job took 7 min 17 s
# so; stage 2 alone runs 46-52 steps/s on one thread: docs/TRAINING_SPEED.md); with several QUALITIES
# or SEEDS, THREADS=1 and two trainings side by side is the usual choice.
THREADS=${THREADS:-2}

if [ ! -f data/reach_avoid/high.h5 ] || [ ! -f data/reach_avoid/medium.h5 ] || [ ! -f data/reach_avoid/low.h5 ]; then
  bash data_collection/make_reach_avoid_data.sh
fi
for quality in $QUALITIES; do
  python data_collection/inspect.py "data/reach_avoid/$quality.h5"
  for seed in $SEEDS; do
    run="runs/reach_avoid/sevpo/$quality/seed$seed"
    # Trains stage 1 once per dataset (cached in runs/cache), stage 2 with an evaluation from the
    # papers' start every 2,000 steps (the learning curve), then evaluates the last iterate:
    # metrics.json, plots/reach_avoid_paper_final.png (trajectories, learned safe region beside the
    # oracle's), plots/training.png (success, cost, failure against steps).
    python offline/train.py algo=sevpo env=reach_avoid "dataset=data/reach_avoid/$quality.h5" seed="$seed" \
      threads="$THREADS" eval_interval=2000 progress=false "hydra.run.dir=$run" "$@"
  done
done
# Every finished run under runs/ (any algorithm), evaluated from the papers' start and from inside the
# hazard (papers' Fig. 5: steps in the hazard = episode cost) -> runs/results/{results.md,results.csv,results.png}
python offline/results.py runs --starts paper hazard
