#!/usr/bin/env bash
# The papers' reach-avoid datasets: expert (planner) and random sources, then the three mixes.
# Extra arguments go to every collect call (e.g. device=cuda). Resumable: rerun after a kill.
set -euo pipefail
cd "$(dirname "$0")/.."
# The expert source (planner, the long one) is collected beside the two random ones: two cores busy.
python data_collection/collect.py --policy expert start=random episodes=1200 "$@" &
expert=$!
python data_collection/collect.py --policy random start=random episodes=1000 "$@"
python data_collection/collect.py --policy random start=near_hazard episodes=500 "$@"
wait "$expert"
python data_collection/mix.py
