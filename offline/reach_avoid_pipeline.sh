#!/usr/bin/env bash
# The main job on its built-in default: reach-avoid on CPU, end to end.
# Data (expert planner + random policy, three quality mixes) -> SEVPO -> batched evaluation + plot.
# Resumable: rerun after an interruption and finished stages are skipped or resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ ! -f data/reach_avoid/high.h5 ] || [ ! -f data/reach_avoid/low.h5 ]; then
  bash data_collection/make_reach_avoid_data.sh
fi
python data_collection/inspect.py data/reach_avoid/low.h5
