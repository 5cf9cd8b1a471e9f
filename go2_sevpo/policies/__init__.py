"""Policies that generate data: scripted or trained, looked up by name for an env.

`make_policy(name, env, seed)` returns a callable obs -> action for all envs at once. Names:
`random` (any env), `expert` (reach_avoid: the planner; Go2: a PPO checkpoint under assets/policies/; safety_gym's
Point goal tasks: a scripted navigator on privileged state),
`reckless` (reach_avoid: the planner blind to the hazard), `weak` (Go2), or a path to an exported TorchScript policy file. Checkpoint policies
(`register_checkpoint_policy`) load a file, from its default place or `checkpoint=PATH`; a missing
file is a one-line error naming the command that makes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from go2_sevpo.envs.base import BatchedEnv

Policy = Callable[[torch.Tensor], torch.Tensor]
_BUILDERS: dict[tuple[str, str], Callable[[BatchedEnv, torch.Generator], Policy]] = {}
# (env, policy name) -> (default file, the command that makes it)
_CHECKPOINTS: dict[tuple[str, str], tuple[Path, str]] = {}
REPO_ROOT = Path(__file__).resolve().parents[2]


class PolicyError(ValueError):
    """Unknown policy name, missing checkpoint, or a checkpoint that does not fit the env."""


def register_policy(env_name: str, policy_name: str, builder: Callable[[BatchedEnv, torch.Generator], Policy]) -> None:
    _BUILDERS[(env_name, policy_name)] = builder


def register_checkpoint_policy(env_name: str, policy_name: str, default_file: str | Path, make_command: str) -> None:
    """A policy loaded from an exported file; `default_file` is relative to the repository root."""
    path = Path(default_file)
    _CHECKPOINTS[(env_name, policy_name)] = (path if path.is_absolute() else REPO_ROOT / path, make_command)


def policy_names(env_name: str) -> list[str]:
    return sorted({"random", *(p for e, p in [*_BUILDERS, *_CHECKPOINTS] if e == env_name)})


def policy_checkpoint(name: str, env_name: str, checkpoint: str | None = None) -> Path | None:
    """The file that policy `name` loads for `env_name` (None for scripted policies)."""
    if (env_name, name) in _CHECKPOINTS:
        return Path(checkpoint) if checkpoint else _CHECKPOINTS[(env_name, name)][0]
    if name.endswith((".pt", ".jit")) or "/" in name:
        return Path(name)
    return None


def _random(env: BatchedEnv, generator: torch.Generator) -> Policy:
    from go2_sevpo.policies.random_policy import RandomPolicy

    return RandomPolicy(env.num_actions, generator)


def _reach_avoid_expert(env: BatchedEnv, generator: torch.Generator) -> Policy:
    from go2_sevpo.policies.reach_avoid_planner import ReachAvoidPlanner

    return ReachAvoidPlanner(generator=generator)


def _reach_avoid_reckless(env: BatchedEnv, generator: torch.Generator) -> Policy:
    from go2_sevpo.policies.reach_avoid_planner import RecklessPlanner

    return RecklessPlanner(generator=generator)


def _safety_gym_expert(env: BatchedEnv, generator: torch.Generator) -> Policy:
    from go2_sevpo.policies.safety_gym_navigator import PointGoalNavigator

    try:
        return PointGoalNavigator(env, generator=generator)
    except ValueError as e:
        raise PolicyError(str(e)) from None


register_policy("reach_avoid", "expert", _reach_avoid_expert)
register_policy("reach_avoid", "reckless", _reach_avoid_reckless)
register_policy("safety_gym", "expert", _safety_gym_expert)  # Point goal tasks: a scripted navigator

# Go2: PPO policies exported by data_collection/train_expert.py (docs/GO2_PIPELINE.md). The expert is
# trained per task; the weak policy (trained on gap-free ground) serves both tasks.
for _env in ("go2_simple", "go2_hard"):
    register_checkpoint_policy(_env, "expert", f"assets/policies/{_env}_expert.pt",
                               f"python data_collection/train_expert.py env={_env}")
    register_checkpoint_policy(_env, "weak", "assets/policies/go2_weak.pt",
                               "python data_collection/train_expert.py env=go2_hard role=weak")


def load_torchscript_policy(path: str | Path, env: BatchedEnv, make_hint: str = "") -> Policy:
    """An exported policy (obs -> action); checked against the env: its card (env, observation layout;
    see exported.py) when it has one, and the observation / action sizes."""
    from go2_sevpo.policies.exported import PolicyFileError, load_policy_module

    try:
        module, _ = load_policy_module(path, env, make_hint)
    except PolicyFileError as e:
        raise PolicyError(str(e)) from None

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        return module(obs)

    return act


def make_policy(name: str, env: BatchedEnv, seed: int, checkpoint: str | None = None) -> Policy:
    """`checkpoint` replaces the default file of a checkpoint policy (e.g. `expert` for Go2)."""
    generator = torch.Generator(device=env.device)
    generator.manual_seed(int(seed) + 7919)  # distinct from the env's stream
    env_name = env.cfg.name
    if name == "random":
        return _random(env, generator)
    if (env_name, name) in _BUILDERS:
        return _BUILDERS[(env_name, name)](env, generator)
    if (env_name, name) in _CHECKPOINTS:
        return load_torchscript_policy(policy_checkpoint(name, env_name, checkpoint), env, _CHECKPOINTS[(env_name, name)][1])
    if name.endswith((".pt", ".jit")) or "/" in name:
        return load_torchscript_policy(name, env)
    raise PolicyError(f"unknown policy '{name}' for env '{env_name}'; choose one of {policy_names(env_name)} "
                      "or give a path to an exported policy file")
