"""Import safety_gymnasium 1.0.0 (its last release) on Python 3.11 beside mujoco 4.0.0.

Upstream's package cannot be imported or run here as released; three narrow fixes, applied before
its first import and touching nothing else:

1. Twelve asset dataclasses (`safety_gymnasium/assets/...`) declare `color: np.array = COLOR[...]`;
   Python >= 3.11 rejects unhashable dataclass defaults at class creation, so the import fails.
   While safety_gymnasium's modules are imported, `dataclasses.dataclass` turns ndarray defaults of
   classes *defined in safety_gymnasium* into `default_factory` copies (each instance gets its own
   array; upstream only ever reads them from instances). Other modules' dataclasses are untouched.
2. The Car agent looks a joint up with `model.jnt(sensor.objid)`, a size-1 array; mujoco >= 3
   accepts only an int there. `MjModel.jnt` is widened to take a size-1 integer array as that int;
   every call that worked before behaves as before.
3. (optional, `fast_reset`) its world rebuilds the MuJoCo model from XML on every reset, and
   decoding the skybox's six images is most of that time. The world module's `mujoco` name is given
   a view of mujoco whose `MjModel.from_xml_string` drops the skybox texture; only rendering uses it.

Importing safety_gymnasium without this module fails on Python >= 3.11: import it through
`import_safety_gymnasium()` (also in spawned worker processes: the adapter's own modules do).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import sys
import types

INSTALL_HINT = ('pip install -e ".[safety-gym]" && pip install --no-deps safety-gymnasium==1.0.0 '
                "(docs/SAFETY_GYM.md)")
_SKYBOX = re.compile(r'<texture type="skybox"[^>]*?(?:/>|>\s*</texture>)')
_state: dict[str, object] = {}


class SafetyGymMissing(RuntimeError):
    """safety_gymnasium (or a package it imports) is not installed; one line with the fix."""


def _dataclass_with_array_defaults(original):
    import numpy as np

    def patched(cls=None, /, **kwargs):
        def wrap(c):
            if c.__module__.startswith("safety_gymnasium"):
                for name in c.__dict__.get("__annotations__", {}):
                    value = c.__dict__.get(name)
                    if isinstance(value, np.ndarray):
                        setattr(c, name, dataclasses.field(default_factory=value.copy))
            return original(c, **kwargs)

        return wrap if cls is None else wrap(cls)

    return patched


def _widen_jnt(mujoco) -> None:
    import numpy as np

    original = mujoco.MjModel.jnt
    if getattr(original, "_go2_sevpo_widened", False):
        return

    def jnt(self, key=""):
        if isinstance(key, np.ndarray) and key.size == 1 and np.issubdtype(key.dtype, np.integer):
            key = int(key.reshape(-1)[0])
        return original(self, key)

    jnt._go2_sevpo_widened = True
    mujoco.MjModel.jnt = jnt


def strip_skybox(xml: str) -> str:
    return _SKYBOX.sub("", xml, count=1)


class _FastCompileMujoco(types.ModuleType):
    """mujoco, except that MjModel.from_xml_string drops the skybox texture (see the module doc)."""

    def __init__(self, mujoco):
        super().__init__("mujoco")
        self._mujoco = mujoco
        model_cls = mujoco.MjModel

        class _ModelFactory:
            @staticmethod
            def from_xml_string(xml, *args, **kwargs):
                return model_cls.from_xml_string(strip_skybox(xml), *args, **kwargs)

            def __getattr__(self, name):
                return getattr(model_cls, name)

        self.MjModel = _ModelFactory()

    def __getattr__(self, name):
        return getattr(self._mujoco, name)


def import_safety_gymnasium():
    """safety_gymnasium, importable on Python 3.11 with mujoco 4.0.0; a missing package is one line."""
    if "module" in _state:
        return _state["module"]
    try:
        import mujoco
        import numpy as np  # noqa: F401
    except ImportError as e:
        raise SafetyGymMissing(f"env safety_gym needs {e.name}: {INSTALL_HINT}") from None
    _widen_jnt(mujoco)
    original = dataclasses.dataclass
    dataclasses.dataclass = _dataclass_with_array_defaults(original)
    printed = io.StringIO()
    try:
        # gymnasium-robotics prints a notice about its Adroit tasks (unused here) on import; keep
        # anything else the import prints.
        with contextlib.redirect_stderr(printed):
            import safety_gymnasium
    except ImportError as e:
        missing = e.name or str(e)
        raise SafetyGymMissing(f"env safety_gym needs the package '{missing}', which is not installed: "
                               f"{INSTALL_HINT}") from None
    finally:
        # Upstream's modules bound the patched decorator at import; restore it for everyone else.
        dataclasses.dataclass = original
        sys.stderr.write("".join(line for line in printed.getvalue().splitlines(keepends=True)
                                 if "AdroitHand" not in line))
    _state["module"] = safety_gymnasium
    return safety_gymnasium


def set_fast_reset(enabled: bool) -> None:
    """Point safety_gymnasium's world module at the skybox-free compiler (or back at mujoco)."""
    import mujoco

    world = sys.modules.get("safety_gymnasium.world")
    if world is None:
        import_safety_gymnasium()
        world = sys.modules["safety_gymnasium.world"]
    if enabled and not isinstance(world.mujoco, _FastCompileMujoco):
        world.mujoco = _FastCompileMujoco(mujoco)
    elif not enabled:
        world.mujoco = mujoco
