"""MuJoCo-Warp backend: all worlds in one batched `mujoco_warp.Data`, on CUDA (or the Warp CPU device).

State arrays are shared with torch without copies (`wp.to_torch`), so the env's torch code reads
qpos / qvel and writes controls in place. On CUDA one physics step is captured once as a CUDA graph
and replayed, which removes the per-kernel launch cost of MuJoCo-Warp's many small kernels.
"""

from __future__ import annotations

import mujoco
import mujoco_warp as mjw
import numpy as np
import torch
import warp as wp

from go2_sevpo.physics.base import PhysicsBackend

# Per-world buffers. A Go2 on box terrain touches with 4 feet (1 contact each) and, when it falls,
# the trunk (box-box: up to 8) and legs; 64 contacts leave margin. Pyramidal cones with condim 3
# give 4 constraint rows per contact, plus 12 joint limits.
_NCONMAX = 64
_NJMAX = 4 * _NCONMAX + 24


class WarpBackend(PhysicsBackend):
    name = "mujoco_warp"

    def __init__(self, model: mujoco.MjModel, num_worlds: int, device: torch.device,
                 num_threads: int = 0, cuda_graph: bool = True, randomize_dynamics: bool = False):
        super().__init__(model, num_worlds, device)
        del num_threads  # a C-backend option; Warp parallelises over worlds itself
        # No per-kernel compile/load lines (hundreds) and no init banner in logs.
        wp.config.quiet = True
        wp.config.log_level = max(wp.config.log_level, wp.LOG_WARNING)
        wp.init()
        self.wp_device = "cpu" if self.device.type == "cpu" else f"cuda:{self.device.index or 0}"
        # Batched model fields only when per-world dynamics are asked for: they cost memory.
        batch = {"geom_friction": num_worlds, "body_mass": num_worlds} if randomize_dynamics else None
        with wp.ScopedDevice(self.wp_device):
            self.mjw_model = mjw.put_model(model, batch_sizes=batch)
            data = mujoco.MjData(model)
            mujoco.mj_forward(model, data)
            self.mjw_data = mjw.put_data(model, data, nworld=num_worlds, nconmax=_NCONMAX, njmax=_NJMAX)
        d = self.mjw_data
        self._qpos = wp.to_torch(d.qpos)
        self._qvel = wp.to_torch(d.qvel)
        self._ctrl = wp.to_torch(d.ctrl)
        self._sensordata = wp.to_torch(d.sensordata)
        self._reset_mask = torch.zeros(num_worlds, dtype=torch.bool, device=self.device)
        self._use_graph = bool(cuda_graph) and self.device.type == "cuda"
        self._graph = None

    @property
    def qpos(self) -> torch.Tensor:
        return self._qpos

    @property
    def qvel(self) -> torch.Tensor:
        return self._qvel

    @property
    def sensordata(self) -> torch.Tensor:
        return self._sensordata

    def _run(self, fn) -> None:
        # Warp runs on torch's current stream so torch writes (ctrl, qpos) are ordered before it.
        if self.device.type == "cuda":
            with wp.ScopedDevice(self.wp_device), wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream(self.device))):
                fn()
        else:
            with wp.ScopedDevice(self.wp_device):
                fn()

    def step(self, ctrl: torch.Tensor) -> None:
        self._ctrl.copy_(ctrl)
        if not self._use_graph:
            self._run(lambda: mjw.step(self.mjw_model, self.mjw_data))
            return
        if self._graph is None:
            # First call compiles the kernels outside capture, then records one step as a graph.
            self._run(lambda: mjw.step(self.mjw_model, self.mjw_data))

            def capture():
                with wp.ScopedCapture() as cap:
                    mjw.step(self.mjw_model, self.mjw_data)
                self._graph = cap.graph

            self._run(capture)
            return
        self._run(lambda: wp.capture_launch(self._graph))

    def set_state(self, world_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        ids = world_ids.to(self.device)
        self._reset_mask.zero_()
        self._reset_mask[ids] = True
        mask = wp.from_torch(self._reset_mask)
        self._run(lambda: mjw.reset_data(self.mjw_model, self.mjw_data, reset=mask))
        self._qpos[ids] = qpos.to(self.device, torch.float32)
        self._qvel[ids] = qvel.to(self.device, torch.float32)
        # A forward pass over all worlds: only derived quantities change, the other worlds' states
        # do not (their sensors then describe their current state, which is what the env wants).
        self._run(lambda: mjw.forward(self.mjw_model, self.mjw_data))

    def set_dynamics(self, world_ids: torch.Tensor, friction: torch.Tensor, body_mass: torch.Tensor) -> None:
        friction_t = wp.to_torch(self.mjw_model.geom_friction)
        mass_t = wp.to_torch(self.mjw_model.body_mass)
        if friction_t.shape[0] != self.num_worlds or mass_t.shape[0] != self.num_worlds:
            raise RuntimeError("mujoco_warp backend: per-world dynamics need randomize_dynamics=True at construction")
        ids = world_ids.to(self.device)
        friction_t[ids, :, 0] = friction.to(self.device, torch.float32)
        mass_t[ids] = body_mass.to(self.device, torch.float32)


def warp_cpu_available() -> bool:
    """Whether Warp can compile and run kernels on the CPU (tests use it to skip cleanly)."""
    try:
        wp.init()
        return wp.get_device("cpu") is not None and bool(np.isfinite(wp.zeros(1, device="cpu").numpy()).all())
    except Exception:
        return False
