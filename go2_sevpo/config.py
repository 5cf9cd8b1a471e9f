"""Hydra wiring: typed dataclass configs are the single source of defaults.

Each task config (and each algorithm config) is stored in Hydra's ConfigStore as the schema
`<group>/<name>_schema`; the YAML file `configs/<group>/<name>.yaml` starts from that schema
(`defaults: [<name>_schema, _self_]`) and sets only what differs. Every field is therefore
overridable from the command line (`env.num_envs=64`), and a misspelt key is an error.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from go2_sevpo.envs import registry as env_registry

# The repository's `configs/` folder (scripts run from a checkout; an installed package can be
# pointed elsewhere with Hydra's --config-dir).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")

_extra_groups: dict[str, dict[str, type]] = {}


def register_schema(group: str, name: str, cls: type) -> None:
    """Let another subsystem (algorithms, ...) add typed schemas before Hydra composes."""
    _extra_groups.setdefault(group, {})[name] = cls


def register_configs() -> None:
    cs = ConfigStore.instance()
    for name in env_registry.names():
        cs.store(group="env", name=f"{name}_schema", node=env_registry.config_class(name))
    for group, entries in _extra_groups.items():
        for name, cls in entries.items():
            cs.store(group=group, name=f"{name}_schema", node=cls)


def hydra_argv(flag_aliases: tuple[str, ...] = ()) -> None:
    """Accept `--policy expert` style flags for the names in `flag_aliases` by rewriting them to
    Hydra's `policy=expert` before Hydra parses sys.argv."""
    argv, out, i = sys.argv, [sys.argv[0]], 1
    while i < len(argv):
        arg = argv[i]
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        if key in flag_aliases:
            if "=" in arg:
                out.append(arg[2:])
            elif i + 1 < len(argv):
                out.append(f"{key}={argv[i + 1]}")
                i += 1
            else:
                raise SystemExit(f"error: --{key} needs a value")
        else:
            out.append(arg)
        i += 1
    sys.argv[:] = out


def to_dataclass(cls: type, cfg: DictConfig | dict[str, Any]) -> Any:
    """Typed view of a composed config node; unknown keys fail loudly."""
    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise KeyError(f"{cls.__name__} has no option(s) {unknown}")
    return cls(**values)
