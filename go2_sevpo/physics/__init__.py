"""Physics backends: one small interface over the same MJCF, stepping N independent worlds."""

from go2_sevpo.physics.base import BACKENDS, PhysicsBackend, make_backend

__all__ = ["BACKENDS", "PhysicsBackend", "make_backend"]
