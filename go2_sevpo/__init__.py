"""go2_sevpo: offline safe RL (SEVPO and baselines) for legged robots."""

__version__ = "0.1.0"
