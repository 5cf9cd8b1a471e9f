"""Algorithm registry: `algo=NAME` picks a config file `configs/algo/NAME.yaml`, whose `name` field
names the class here. Modules are imported lazily, so registering costs nothing at start-up.

To add an algorithm: write `go2_sevpo/algorithms/<name>.py` with a config dataclass and an
`OfflineAlgorithm` subclass, add one line to `_ALGORITHMS`, and add `configs/algo/<name>.yaml`.
"""

from __future__ import annotations

import importlib

from go2_sevpo.algorithms.base import OfflineAlgorithm
from go2_sevpo.utils.errors import ConfigError

# name -> ("module:AlgorithmClass", "module:ConfigClass")
_ALGORITHMS: dict[str, tuple[str, str]] = {
    "sevpo": ("go2_sevpo.algorithms.sevpo:SEVPO", "go2_sevpo.algorithms.sevpo:SEVPOConfig"),
    "fisor": ("go2_sevpo.algorithms.fisor:FISOR", "go2_sevpo.algorithms.fisor:FISORConfig"),
    "bc_all": ("go2_sevpo.algorithms.bc:BC", "go2_sevpo.algorithms.bc:BCConfig"),
    "bc_safe": ("go2_sevpo.algorithms.bc:BC", "go2_sevpo.algorithms.bc:BCSafeConfig"),
    "cpq": ("go2_sevpo.algorithms.cpq:CPQ", "go2_sevpo.algorithms.cpq:CPQConfig"),
    "coptidice": ("go2_sevpo.algorithms.coptidice:COptiDICE", "go2_sevpo.algorithms.coptidice:COptiDICEConfig"),
    "ccac": ("go2_sevpo.algorithms.ccac:CCAC", "go2_sevpo.algorithms.ccac:CCACConfig"),
}


def register(name: str, algo_ref: str, cfg_ref: str) -> None:
    _ALGORITHMS[name] = (algo_ref, cfg_ref)


def names() -> list[str]:
    return sorted(_ALGORITHMS)


def _load(ref: str):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def _check(name: str) -> None:
    if name not in _ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}'; known algorithms: {', '.join(names())}")


def lookup(name: str) -> type[OfflineAlgorithm]:
    _check(name)
    return _load(_ALGORITHMS[name][0])


def config_class(name: str) -> type:
    _check(name)
    return _load(_ALGORITHMS[name][1])


def register_schemas() -> None:
    """Make every algorithm's config dataclass a Hydra schema `algo/<name>_schema`."""
    from go2_sevpo.config import register_schema

    for name in names():
        register_schema("algo", name, config_class(name))
