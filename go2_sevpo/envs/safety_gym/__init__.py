"""Safety-Gymnasium tasks (the papers' Table 1 benchmark) on the batched env interface.

`config.py` and `dsrl.py` are import-light (Hydra imports them); `compat.py` imports
safety_gymnasium through the shim that lets it run on Python 3.11 beside mujoco 4.0.0; `env.py`
is the adapter. Install and caveats: docs/SAFETY_GYM.md.
"""
