#!/usr/bin/env bash
# SEVPO's ablation ladder (issue: what breaks goal-reaching), from plain diffusion BC to full SEVPO,
# one component at a time, same data, seed and step budget. Each rung is trained once and then
# evaluated with every SEVPO acting rule (offline/diagnose.py) from three starts.
#   DATA=data/reach_avoid/low.h5 STEPS=10000 SEED=0 bash offline/ablation_ladder.sh [rung ...]
# Extra settings for every rung: EXTRA="algo.x=y ..." (e.g. to ladder a fix). Results:
# runs/ladder/<data>/<rung>/seed<k>/diagnose.json; offline/ladder_table.py collects them.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
DATA=${DATA:-data/reach_avoid/low.h5}
STEPS=${STEPS:-10000}
SEED=${SEED:-0}
EPISODES=${EPISODES:-100}
EXTRA=${EXTRA:-}
TAG=${TAG:-}
# The ladder climbs to the PAPER's SEVPO (Table 8: b1 = 1, b2 = 3, eq. 14 weighted across the batch,
# argmax-f acting), whatever the defaults are; EXTRA comes after these, so it can change them.
PAPER="algo.safe_loss_weight=1 algo.unsafe_loss_weight=3 algo.unsafe_weighting=batch algo.select=sevpo algo.mu_safe=3"
declare -A RUNGS=(
  [0_bc]="algo.region_masks=false algo.mu_safe=0 algo.unsafe_loss_weight=0"
  [1_masks]="algo.mu_safe=0 algo.unsafe_loss_weight=0"
  [2_advantage]="algo.unsafe_loss_weight=0"
  [3_unsafe_loss]="algo.trust_region=false"
  [4_trust_region]=""
)
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(0_bc 1_masks 2_advantage 3_unsafe_loss 4_trust_region)
stem=$(basename "$DATA" .h5)
for rung in "${names[@]}"; do
  run="runs/ladder/$stem/${rung}${TAG}/seed$SEED"
  # shellcheck disable=SC2086
  python offline/train.py algo=sevpo env=reach_avoid "dataset=$DATA" seed="$SEED" steps="$STEPS" threads=1 \
    progress=false eval.episodes="$EPISODES" "hydra.run.dir=$run" $PAPER ${RUNGS[$rung]} $EXTRA
  [ -f "$run/diagnose.json" ] || python offline/diagnose.py "$run" --starts paper random_feasible hazard \
    --episodes "$EPISODES" --json "$run/diagnose.json"
done
