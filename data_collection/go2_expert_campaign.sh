#!/usr/bin/env bash
# A Go2 PPO expert on a CPU, in resumable pieces (issue 13; docs/GO2_PIPELINE.md, "CPU campaign").
#
#   bash data_collection/go2_expert_campaign.sh [TOTAL_ITERATIONS]     # go2_simple; default 4000
#   ENV=go2_hard bash data_collection/go2_expert_campaign.sh            # the other task
#   THREADS=1 taskset -c 0 bash data_collection/go2_expert_campaign.sh   # one core, beside other work
#
# Each piece runs until it is stopped (or reaches TOTAL_ITERATIONS) and resumes where the last one
# stopped: rsl-rl's newest model_<it>.pt (networks, optimiser, iteration, curriculum rows) is copied to
# $SHIP every 10 minutes and at the end, with the run's config.yaml, TensorBoard events and learning
# curve (curve.csv), small enough to commit; on a machine without the run folder the piece starts from $SHIP.
# From a random init: a start from the walking policy (init_actor=assets/policies/go2_weak.pt,
# model.init_noise_std=0.5) learned slower in the first 100 iterations (docs/GO2_PIPELINE.md).
set -euo pipefail
cd "$(dirname "$0")/.."
TOTAL=${1:-4000}
THREADS=${THREADS:-0}  # MuJoCo's pool and the update's torch threads; 0 = every core (may change on resume)
ENV=${ENV:-go2_simple}
case "$ENV" in go2_simple|go2_hard) ;; *) echo "error: ENV must be go2_simple or go2_hard, got '$ENV'" >&2; exit 2;; esac
RUN=runs/ppo/$ENV/expert/seed0
SHIP=assets/policies/${ENV}_expert_campaign
mkdir -p "$RUN" "$SHIP"

newest() { ls "$1"/model_*.pt 2>/dev/null | sed 's/.*model_\([0-9]*\)\.pt/\1 &/' | sort -n | tail -1 | cut -d' ' -f2; }

if [ -z "$(newest "$RUN")" ] && [ -n "$(newest "$SHIP")" ]; then
  echo "resuming from the shipped checkpoint $(newest "$SHIP")"
  cp "$(newest "$SHIP")" "$SHIP/config.yaml" "$SHIP"/events.out.tfevents.* "$RUN/"
fi

ship() {  # newest checkpoint + config + curve into $SHIP, atomically (copy, then rename)
  local ckpt; ckpt=$(newest "$RUN")
  [ -n "$ckpt" ] || return 0
  cp "$ckpt" "$SHIP/.tmp.pt" && mv "$SHIP/.tmp.pt" "$SHIP/$(basename "$ckpt")"
  find "$SHIP" -name 'model_*.pt' ! -name "$(basename "$ckpt")" -delete
  cp "$RUN/config.yaml" "$RUN"/events.out.tfevents.* "$SHIP/"  # the events: the whole curve, on any machine
  python data_collection/ppo_curve.py "$RUN" > "$SHIP/.curve.csv" 2>/dev/null && mv "$SHIP/.curve.csv" "$SHIP/curve.csv" || true
}

(while sleep 600; do ship; done) &
SHIPPER=$!
trap 'kill $SHIPPER 2>/dev/null; ship' EXIT

# 256 envs x 24 steps = 6,144 samples per iteration; bf16 autocast and every core in the update
# (docs/GO2_PIPELINE.md, measured).
nice -n 19 python data_collection/train_expert.py env="$ENV" device=cpu num_envs=256 \
  max_iterations="$TOTAL" save_interval=25 algorithm.use_mixed_precision=true \
  env.physics_threads="$THREADS" update_threads="$THREADS" export="$SHIP/policy.pt"
