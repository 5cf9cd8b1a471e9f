#!/usr/bin/env bash
# Our own SafetyPointGoal1 data (docs/SAFETY_GYM.md): the scripted navigator (--policy expert) and the
# random policy, then the 8:1, 1:1 and 1:3 safe:unsafe mixes (configs/mix.yaml, point_goal1_*).
# Extra arguments go to every collect call. Resumable: rerun after a kill. One core: the two sources
# run one after the other (prefix with `taskset -c N` to pin them).
set -euo pipefail
cd "$(dirname "$0")/.."
task=(env=safety_gym env.task=SafetyPointGoal1-v0)
python data_collection/collect.py --policy expert "${task[@]}" episodes=70 chunk_episodes=35 \
  output=data/safety_gym/PointGoal1_expert_70.h5 "$@"
# About 1 in 5 random episodes costs more than 10 (106 of these 500): the 1:3 mix's 150 unsafe
# trajectories are drawn with replacement (the mixer records it), as the papers duplicate unsafe data.
python data_collection/collect.py --policy random "${task[@]}" episodes=500 chunk_episodes=100 \
  output=data/safety_gym/PointGoal1_random_500.h5 "$@"
python data_collection/mix.py only=[point_goal1_8to1,point_goal1_1to1,point_goal1_1to3]
