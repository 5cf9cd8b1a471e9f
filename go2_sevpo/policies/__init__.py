"""Policies that generate data: scripted or trained, looked up by name for an env.

`make_policy(name, env, seed)` returns a callable obs -> action for all envs at once. Names:
`random` (any env), `expert` (reach_avoid: the planner; Go2: the shipped PPO checkpoint), `weak`
(Go2), or a path to an exported TorchScript policy file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from go2_sevpo.envs.base import BatchedEnv

Policy = Callable[[torch.Tensor], torch.Tensor]
_BUILDERS: dict[tuple[str, str], Callable[[BatchedEnv, torch.Generator], Policy]] = {}


class PolicyError(ValueError):
    """Unknown policy name, missing checkpoint, or a checkpoint that does not fit the env."""


def register_policy(env_name: str, policy_name: str, builder: Callable[[BatchedEnv, torch.Generator], Policy]) -> None:
    _BUILDERS[(env_name, policy_name)] = builder


def policy_names(env_name: str) -> list[str]:
    return sorted({"random", *(p for e, p in _BUILDERS if e == env_name)})


def _random(env: BatchedEnv, generator: torch.Generator) -> Policy:
    from go2_sevpo.policies.random_policy import RandomPolicy

    return RandomPolicy(env.num_actions, generator)


def _reach_avoid_expert(env: BatchedEnv, generator: torch.Generator) -> Policy:
    from go2_sevpo.policies.reach_avoid_planner import ReachAvoidPlanner

    return ReachAvoidPlanner(generator=generator)


register_policy("reach_avoid", "expert", _reach_avoid_expert)


def load_torchscript_policy(path: str | Path, env: BatchedEnv) -> Policy:
    """An exported policy (obs -> action); checked against the env's observation size."""
    path = Path(path)
    if not path.exists():
        raise PolicyError(f"policy checkpoint {path} does not exist")
    try:
        module = torch.jit.load(str(path), map_location=env.device)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise PolicyError(f"{path}: not a loadable TorchScript policy ({str(e).splitlines()[0]})") from None
    module.eval()
    probe = torch.zeros(1, env.num_obs, device=env.device)
    try:
        out = module(probe)
    except Exception as e:  # noqa: BLE001
        raise PolicyError(f"{path}: does not accept this env's {env.num_obs}-dim observation "
                          f"(trained for another env or observation layout?): {str(e).splitlines()[0]}") from None
    if out.shape[-1] != env.num_actions:
        raise PolicyError(f"{path}: outputs {out.shape[-1]} actions, the env takes {env.num_actions}")

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        return module(obs)

    return act


def make_policy(name: str, env: BatchedEnv, seed: int) -> Policy:
    generator = torch.Generator(device=env.device)
    generator.manual_seed(int(seed) + 7919)  # distinct from the env's stream
    env_name = env.cfg.name
    if name == "random":
        return _random(env, generator)
    if (env_name, name) in _BUILDERS:
        return _BUILDERS[(env_name, name)](env, generator)
    if name.endswith((".pt", ".jit")) or "/" in name:
        return load_torchscript_policy(name, env)
    raise PolicyError(f"unknown policy '{name}' for env '{env_name}'; choose one of {policy_names(env_name)} "
                      "or give a path to an exported policy file")
