"""Unitree Go2 navigation tasks (go2_simple, go2_hard): one env class, two configs.

Import-light on purpose: `go2_sevpo.envs.go2.config` is imported by Hydra's schema registration,
so MuJoCo is imported only by the env, scene and physics modules.
"""
