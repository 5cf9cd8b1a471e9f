"""Both physics backends step the same Go2 scene from the same states and controls and agree.

mujoco_warp runs here on Warp's CPU device (no GPU in CI). Its first use compiles MuJoCo-Warp's
kernels (~1 min on a 2-core machine, then cached under ~/.cache/warp), so the agreement check is
kept small: 2 worlds, 10 policy steps (40 physics steps).
"""

from __future__ import annotations

import pytest
import torch

from go2_sevpo.envs.go2.scene import build_model
from go2_sevpo.envs.go2.terrain import generate_terrain
from go2_sevpo.physics import make_backend

KP, KD = 40.0, 1.0


@pytest.fixture(scope="module")
def model():
    return build_model(generate_terrain("simple", rows=1, cols=1, seed=0))


def _start_states(model, num_worlds: int) -> tuple[torch.Tensor, torch.Tensor]:
    qpos = torch.tensor(model.key_qpos[0], dtype=torch.float32).repeat(num_worlds, 1)
    qpos[:, 0] = 0.75  # on the start platform
    qpos[1, 2] = 0.36  # world 1 starts lower and lands differently
    qvel = torch.zeros(num_worlds, model.nv)
    qvel[1, 0] = 0.3  # and moves forward
    return qpos, qvel


def _rollout(backend, model, steps: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    qpos0, qvel0 = _start_states(model, backend.num_worlds)
    backend.set_state(torch.arange(backend.num_worlds), qpos0, qvel0)
    gen = torch.Generator().manual_seed(0)
    limits = torch.tensor(model.actuator_ctrlrange[:, 1], dtype=torch.float32)
    default = qpos0[:, 7:]
    out = []
    for _ in range(steps):
        target = default + 0.25 * (torch.rand(backend.num_worlds, 12, generator=gen) * 2 - 1)
        for _ in range(4):
            q, qd = backend.qpos[:, 7:].cpu(), backend.qvel[:, 6:].cpu()
            backend.step(torch.clamp(KP * (target - q) - KD * qd, -limits, limits))
        out.append((backend.qpos.cpu().clone(), backend.qvel.cpu().clone(), backend.sensordata.cpu().clone()))
    return out


def test_unknown_backend_is_a_clear_error(model):
    with pytest.raises(ValueError, match="unknown physics backend 'bullet'"):
        make_backend("bullet", model, 1, "cpu")


def test_mujoco_backend_stands_and_reports_foot_contacts(model):
    backend = make_backend("mujoco", model, 2, "cpu")
    states = _rollout(backend, model, steps=25)
    qpos, _, sensors = states[-1]
    assert torch.all(qpos[:, 2] > 0.2), qpos[:, 2]  # base still up after 0.5 s of small random targets
    assert torch.all(sensors[:, :4] > 0)  # the four foot flags
    assert torch.all(sensors[:, 4:] == 0)  # no other body touches the terrain


def test_backends_agree_on_cpu(model):
    """Tolerance: warp is float32, the C library float64, and both run the same Newton solver with
    10 iterations. Measured differences after 40 physics steps are ~1e-6 (qpos) and ~1e-5 (qvel);
    contact dynamics amplify rounding over time, so we bound them at 1e-3 m/rad and 1e-2 m/s/rad/s,
    which is far below what the task reacts to (fall thresholds are 0.1 m and 0.8 rad)."""
    pytest.importorskip("mujoco_warp")
    reference = _rollout(make_backend("mujoco", model, 2, "cpu"), model, steps=10)
    warp_states = _rollout(make_backend("mujoco_warp", model, 2, "cpu"), model, steps=10)
    for (q_ref, v_ref, s_ref), (q_w, v_w, s_w) in zip(reference, warp_states):
        assert torch.allclose(q_ref, q_w, atol=1e-3), (q_ref - q_w).abs().max()
        assert torch.allclose(v_ref, v_w, atol=1e-2), (v_ref - v_w).abs().max()
        assert torch.equal(s_ref > 0, s_w > 0)  # same contact flags
