"""Batched environments behind one interface (see `base.py`) and the task registry."""

from go2_sevpo.envs.base import BatchedEnv, EnvConfig, TerminationReason, resolve_device
from go2_sevpo.envs.registry import config_class, config_from_dict, lookup, make_env, names, register

__all__ = [
    "BatchedEnv",
    "EnvConfig",
    "TerminationReason",
    "config_class",
    "config_from_dict",
    "lookup",
    "make_env",
    "names",
    "register",
    "resolve_device",
]
