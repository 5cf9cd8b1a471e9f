"""Offscreen rendering of recorded states (MuJoCo's renderer; MUJOCO_GL=egl or osmesa)."""
