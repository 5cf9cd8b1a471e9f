#!/usr/bin/env bash
# The harder reach-avoid recipes beside the papers' three (configs/mix.yaml: low_hazard, reckless_*):
# a reckless source (the planner blind to the hazard) and random-policy episodes started inside the
# hazard, mixed with the papers' expert and near-hazard sources (made first if missing).
# Extra arguments go to every collect call (e.g. device=cuda). Resumable: rerun after a kill.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f data/reach_avoid/expert_random_1200.h5 ] || [ ! -f data/reach_avoid/random_near_hazard_500.h5 ]; then
  bash data_collection/make_reach_avoid_data.sh "$@"
fi
# The planner-based source is the long one: collected beside the random one, two cores busy.
python data_collection/collect.py --policy reckless start=random episodes=1500 "$@" &
reckless=$!
python data_collection/collect.py --policy random start=hazard episodes=1000 "$@"
wait "$reckless"
python data_collection/mix.py "only=[low_hazard,reckless_19to1,reckless_10to1,reckless_5to1]"
