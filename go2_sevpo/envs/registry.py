"""Task registry: `env=NAME` on the command line picks (env class, config class) from here.

Tasks register themselves on import; `make_env` imports the task modules lazily so that, e.g.,
reach_avoid works without MuJoCo being importable.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from go2_sevpo.envs.base import BatchedEnv, EnvConfig

# name -> (module path, env class name, config class name); imported on first use.
_TASKS: dict[str, tuple[str, str, str]] = {
    "reach_avoid": ("go2_sevpo.envs.reach_avoid", "ReachAvoidEnv", "ReachAvoidConfig"),
}


def register(name: str, module: str, env_cls: str, cfg_cls: str) -> None:
    _TASKS[name] = (module, env_cls, cfg_cls)


def names() -> list[str]:
    return sorted(_TASKS)


def lookup(name: str) -> tuple[type[BatchedEnv], type[EnvConfig]]:
    if name not in _TASKS:
        raise KeyError(f"unknown env '{name}'; known envs: {', '.join(names())}")
    module, env_cls, cfg_cls = _TASKS[name]
    mod = importlib.import_module(module)
    return getattr(mod, env_cls), getattr(mod, cfg_cls)


def config_from_dict(name: str, values: dict[str, Any] | None = None) -> EnvConfig:
    """Build the typed config of task `name`; unknown keys are an error, not silently dropped."""
    _, cfg_cls = lookup(name)
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
