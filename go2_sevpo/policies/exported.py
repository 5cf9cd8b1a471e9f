"""Exported policy files: a TorchScript module obs -> action in [-1, 1], plus a JSON card saying which
env(s), observation layout and control interface it was trained for and how it was made.

The card travels inside the file (TorchScript `_extra_files`), so a policy copied anywhere still says
where it came from, and loading it for the wrong env fails with one line instead of producing a
dataset of nonsense. Files without a card (any TorchScript obs -> action module) still load; only the
size checks apply to them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from go2_sevpo.utils.jobs import atomic_path

CARD_NAME = "go2_sevpo_policy.json"
CARD_FORMAT = 1


class PolicyFileError(ValueError):
    """A policy file that is missing, unreadable or made for another env / observation layout."""


class ClippedPolicy(nn.Module):
    """Deterministic actor output clipped to the env's action box (what the env would clip anyway; the
    dataset stores the clipped action)."""

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs).clamp(-1.0, 1.0)


def observation_layout(env) -> str:
    """A fingerprint of what the policy's input and output mean for `env`: observation size and, for the
    Go2 env, the scan grid and scales of its observation module, plus the control law that turns
    actions into torques. A change to any of them makes old policies refuse to load."""
    parts = [type(env).__name__, f"obs={env.num_obs}", f"act={env.num_actions}"]
    module = sys.modules.get(type(env).__module__)
    for name in ("SCAN_X", "SCAN_Y", "SCAN_OFFSET", "SCAN_SCALE", "ANG_VEL_SCALE", "DOF_VEL_SCALE",
                 "GOAL_DIST_CLIP"):
        value = getattr(module, name, None)
        if value is not None:
            value = [round(float(v), 4) for v in value.tolist()] if torch.is_tensor(value) else round(float(value), 4)
            parts.append(f"{name}={value}")
    for name in ("action_scale", "kp", "kd", "decimation"):
        if hasattr(env.cfg, name):
            parts.append(f"{name}={getattr(env.cfg, name)}")
    text = ";".join(parts)
    return f"{type(env).__name__}:{env.num_obs}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_policy(actor: nn.Module, path: str | Path, card: dict[str, Any]) -> Path:
    """Script `ClippedPolicy(actor)` and save it atomically with its card."""
    path = Path(path)
    module = torch.jit.script(ClippedPolicy(actor).cpu().eval())
    with atomic_path(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files={CARD_NAME: json.dumps({"format": CARD_FORMAT, **card})})
    return path


def read_card(path: str | Path) -> dict[str, Any] | None:
    """The card of a policy file, or None when it has none."""
    extra = {CARD_NAME: ""}
    try:
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as e:  # noqa: BLE001 - torch raises many types for a bad file
        raise PolicyFileError(f"{path}: not a loadable TorchScript policy ({str(e).splitlines()[0]})") from None
    return json.loads(extra[CARD_NAME]) if extra[CARD_NAME] else None


def load_policy_module(path: str | Path, env, make_hint: str = "") -> tuple[torch.jit.ScriptModule, dict | None]:
    """Load a policy file for `env` and check it: card (env, layout) when present, then a probe call.
    `make_hint` is appended to the missing-file error (the command that makes the file)."""
    path = Path(path)
    if not path.is_file():
        hint = f"; make it with `{make_hint}`" if make_hint else ""
        raise PolicyFileError(f"policy checkpoint {path} does not exist{hint}")
    extra = {CARD_NAME: ""}
    try:
        module = torch.jit.load(str(path), map_location=env.device, _extra_files=extra)
    except Exception as e:  # noqa: BLE001
        raise PolicyFileError(f"{path}: not a loadable TorchScript policy ({str(e).splitlines()[0]})") from None
    card = json.loads(extra[CARD_NAME]) if extra[CARD_NAME] else None
    env_name = env.cfg.name
    if card is not None:
        envs = card.get("envs") or [card.get("env")]
        if env_name not in envs:
            again = f"; train one with `{make_hint}`" if make_hint else ""
            raise PolicyFileError(f"{path} was trained for {', '.join(map(str, envs))}, not {env_name}{again}")
        layout = observation_layout(env)
        if card.get("obs_layout") != layout:
            raise PolicyFileError(f"{path} expects observation layout {card.get('obs_layout')}, {env_name} now has "
                                  f"{layout} (observation or control changed since it was trained; retrain it)")
    module.eval()
    probe = torch.zeros(1, env.num_obs, device=env.device)
    try:
        with torch.no_grad():
            out = module(probe)
    except Exception as e:  # noqa: BLE001
        raise PolicyFileError(f"{path}: does not accept {env_name}'s {env.num_obs}-dim observation (trained for "
                              f"another env or observation layout?): {str(e).splitlines()[0]}") from None
    if out.shape[-1] != env.num_actions:
        raise PolicyFileError(f"{path}: outputs {out.shape[-1]} actions, {env_name} takes {env.num_actions}")
    return module, card
