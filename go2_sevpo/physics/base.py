"""The physics backend interface shared by the MuJoCo C library and MuJoCo-Warp.

A backend owns `num_worlds` copies of one compiled `mujoco.MjModel` and exchanges torch tensors:

    backend.qpos        (N, nq)  generalised positions   (float32, on the env's device)
    backend.qvel        (N, nv)  generalised velocities
    backend.sensordata  (N, ns)  sensor values of the last forward pass (contact flags here)
    backend.step(ctrl)            one physics step (model timestep) with actuator controls (N, nu)
    backend.set_state(ids, qpos, qvel)   overwrite some worlds, clear their solver/time state and
                                         recompute their sensors

The returned tensors are valid until the next `step` or `set_state`; clone them to keep them.
Sensors follow MuJoCo's `mj_step` semantics in both backends: after a step, `sensordata` holds the
values computed during that step's forward pass (the state at the start of the step); after
`set_state`, those of the new state.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod

import torch

# backend name -> (module:class, pip package that provides it)
BACKENDS: dict[str, tuple[str, str]] = {
    "mujoco": ("go2_sevpo.physics.mujoco_backend:MujocoBackend", "mujoco"),
    "mujoco_warp": ("go2_sevpo.physics.warp_backend:WarpBackend", "mujoco-warp"),
}


class PhysicsBackend(ABC):
    """N worlds of one MjModel; torch tensors in and out."""

    name: str

    def __init__(self, model, num_worlds: int, device: torch.device):
        self.model = model  # the host mujoco.MjModel every world was built from
        self.num_worlds = int(num_worlds)
        self.device = torch.device(device)
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.nsensordata = model.nsensordata
        self.timestep = float(model.opt.timestep)

    @property
    @abstractmethod
    def qpos(self) -> torch.Tensor: ...

    @property
    @abstractmethod
    def qvel(self) -> torch.Tensor: ...

    @property
    @abstractmethod
    def sensordata(self) -> torch.Tensor: ...

    @abstractmethod
    def step(self, ctrl: torch.Tensor) -> None:
        """Advance every world by one model timestep with controls `ctrl` (N, nu)."""

    @abstractmethod
    def set_state(self, world_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        """Start worlds `world_ids` afresh from (qpos, qvel) and recompute their sensors."""

    @abstractmethod
    def set_dynamics(self, world_ids: torch.Tensor, friction: torch.Tensor, body_mass: torch.Tensor) -> None:
        """Per-world domain randomisation: sliding friction of every geom (len(ids), ngeom) and the
        mass of every body (len(ids), nbody) for `world_ids`."""


def make_backend(name: str, model, num_worlds: int, device: torch.device | str, **options) -> PhysicsBackend:
    """Build backend `name`; unknown names and missing packages are one-line errors."""
    if name not in BACKENDS:
        raise ValueError(f"unknown physics backend '{name}'; known backends: {', '.join(sorted(BACKENDS))}")
    ref, package = BACKENDS[name]
    module, cls = ref.split(":")
    try:
        backend_cls = getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise ImportError(
            f"physics backend '{name}' needs the Python package '{package}' (pip install {package}): {err}"
        ) from None
    return backend_cls(model, num_worlds, torch.device(device), **options)
