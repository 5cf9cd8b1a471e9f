"""MuJoCo C library backend: N worlds stepped by `mujoco.rollout` on a persistent thread pool.

Why rollout rather than N `MjData` stepped from Python: measured on the 2-core dev machine at 256
worlds, a Python loop of `mj_step` gave 5.6k policy steps/s, the same loop split over 2 Python
threads 3.7k (GIL contention), and one multithreaded `rollout` call per physics step 7.6k
(docs/GO2_ENV.md). The state of all worlds therefore lives in one float64 array of MuJoCo
"full physics" state vectors (time, qpos, qvel, act, ...), which rollout reads and writes.
"""

from __future__ import annotations

import copy
import os

import mujoco
import numpy as np
import torch
from mujoco import rollout

from go2_sevpo.physics.base import PhysicsBackend

_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


class MujocoBackend(PhysicsBackend):
    name = "mujoco"

    def __init__(self, model: mujoco.MjModel, num_worlds: int, device: torch.device, num_threads: int = 0,
                 randomize_dynamics: bool = False):
        super().__init__(model, num_worlds, device)
        del randomize_dynamics  # per-world models are copied lazily by set_dynamics
        self.num_threads = int(num_threads) if num_threads and num_threads > 0 else (os.cpu_count() or 1)
        self._pool = rollout.Rollout(nthread=self.num_threads if self.num_threads > 1 else 0)
        self._thread_data = [mujoco.MjData(model) for _ in range(max(1, self.num_threads))]
        self._scratch = mujoco.MjData(model)  # forward passes after set_state
        # One model per world (rollout takes a per-world list); copies only once dynamics are randomised.
        self._models: list[mujoco.MjModel] = [model] * self.num_worlds
        self._models_copied = False
        self.nstate = mujoco.mj_stateSize(model, _FULL)
        # Offsets of qpos / qvel inside the full-physics state (time comes first).
        self._qpos_slice = slice(1, 1 + self.nq)
        self._qvel_slice = slice(1 + self.nq, 1 + self.nq + self.nv)
        mujoco.mj_resetData(model, self._scratch)
        mujoco.mj_forward(model, self._scratch)
        state0 = np.empty(self.nstate)
        mujoco.mj_getState(model, self._scratch, state0, _FULL)
        self._state = np.tile(state0, (self.num_worlds, 1))
        self._sensordata = np.tile(self._scratch.sensordata, (self.num_worlds, 1))
        # Preallocated outputs of one rollout step: (N, 1, nstate) and (N, 1, nsensordata).
        self._state_out = np.empty((self.num_worlds, 1, self.nstate))
        self._sensor_out = np.empty((self.num_worlds, 1, self.nsensordata))
        self._ctrl = np.zeros((self.num_worlds, 1, self.nu))

    def _to_torch(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, torch.float32)

    @property
    def qpos(self) -> torch.Tensor:
        return self._to_torch(self._state[:, self._qpos_slice])

    @property
    def qvel(self) -> torch.Tensor:
        return self._to_torch(self._state[:, self._qvel_slice])

    @property
    def sensordata(self) -> torch.Tensor:
        return self._to_torch(self._sensordata)

    def step(self, ctrl: torch.Tensor) -> None:
        self._ctrl[:, 0, :] = ctrl.detach().to("cpu", torch.float64).numpy()
        self._pool.rollout(
            self._models, self._thread_data, self._state, self._ctrl,
            nstep=1, state=self._state_out, sensordata=self._sensor_out, skip_checks=True,
        )
        self._state[:] = self._state_out[:, 0]
        self._sensordata[:] = self._sensor_out[:, 0]

    def set_state(self, world_ids: torch.Tensor, qpos: torch.Tensor, qvel: torch.Tensor) -> None:
        ids = world_ids.detach().cpu().numpy()
        qpos_np = qpos.detach().to("cpu", torch.float64).numpy()
        qvel_np = qvel.detach().to("cpu", torch.float64).numpy()
        data = self._scratch
        for row, world in enumerate(ids):
            model = self._models[world]
            mujoco.mj_resetData(model, data)
            data.qpos[:] = qpos_np[row]
            data.qvel[:] = qvel_np[row]
            mujoco.mj_forward(model, data)
            mujoco.mj_getState(model, data, self._state[world], _FULL)
            self._sensordata[world] = data.sensordata

    def set_dynamics(self, world_ids: torch.Tensor, friction: torch.Tensor, body_mass: torch.Tensor) -> None:
        if not self._models_copied:
            self._models = [copy.copy(self.model) for _ in range(self.num_worlds)]
            self._models_copied = True
        friction_np = friction.detach().cpu().double().numpy()
        mass_np = body_mass.detach().cpu().double().numpy()
        for row, world in enumerate(world_ids.detach().cpu().numpy()):
            self._models[world].geom_friction[:, 0] = friction_np[row]
            self._models[world].body_mass[:] = mass_np[row]

    def close(self) -> None:
        self._pool.close()

    def __del__(self):
        try:
            self._pool.close()
        except Exception:  # interpreter shutdown: the pool may already be gone
            pass
