"""Task registry: `env=NAME` on the command line picks (env class, config class) from here.

Tasks register themselves on import; `make_env` imports the task modules lazily so that, e.g.,
reach_avoid works without MuJoCo being importable.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from go2_sevpo.envs.base import BatchedEnv, EnvConfig

# name -> ("module:EnvClass", "module:ConfigClass"), imported on first use. Config modules must be
# import-light (no MuJoCo/Warp at import time): Hydra's schema registration imports all of them.
_TASKS: dict[str, tuple[str, str]] = {
    "reach_avoid": ("go2_sevpo.envs.reach_avoid:ReachAvoidEnv", "go2_sevpo.envs.reach_avoid:ReachAvoidConfig"),
    "go2_simple": ("go2_sevpo.envs.go2.env:Go2NavEnv", "go2_sevpo.envs.go2.config:Go2SimpleConfig"),
    "go2_hard": ("go2_sevpo.envs.go2.env:Go2NavEnv", "go2_sevpo.envs.go2.config:Go2HardConfig"),
    # Any Safety-Gymnasium task (env.task=...); needs the safety-gym extra (docs/SAFETY_GYM.md).
    "safety_gym": ("go2_sevpo.envs.safety_gym.env:SafetyGymEnv", "go2_sevpo.envs.safety_gym.config:SafetyGymConfig"),
}


def register(name: str, env_cls: str, cfg_cls: str) -> None:
    _TASKS[name] = (env_cls, cfg_cls)


def _load(ref: str):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def names() -> list[str]:
    return sorted(_TASKS)


def lookup(name: str) -> tuple[type[BatchedEnv], type[EnvConfig]]:
    if name not in _TASKS:
        raise KeyError(f"unknown env '{name}'; known envs: {', '.join(names())}")
    env_ref, cfg_ref = _TASKS[name]
    return _load(env_ref), _load(cfg_ref)


def config_class(name: str) -> type[EnvConfig]:
    """The typed config of task `name`, without importing the env (and its physics) module."""
    if name not in _TASKS:
        raise KeyError(f"unknown env '{name}'; known envs: {', '.join(names())}")
    return _load(_TASKS[name][1])


def config_from_dict(name: str, values: dict[str, Any] | None = None) -> EnvConfig:
    """Build the typed config of task `name`; unknown keys are an error, not silently dropped."""
    cfg_cls = config_class(name)
    values = dict(values or {})
    values.pop("name", None)
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise KeyError(f"env '{name}' has no option(s) {unknown}; options: {sorted(fields)}")
    return cfg_cls(name=name, **values)


def make_env(name: str, **overrides: Any) -> BatchedEnv:
    """`make_env("reach_avoid", num_envs=64, device="cpu", seed=0, start="paper")`."""
    env_cls, _ = lookup(name)
    return env_cls(config_from_dict(name, overrides))


EnvFactory = Callable[..., BatchedEnv]
