"""PPO for the data-collecting policies (Go2 expert and weak), on rsl-rl-lib's own runner.

    env (Go2NavEnv, reward_mode=ppo) -> rsl_rl.runners.OnPolicyRunner (rsl_rl.algorithms.PPO)
    <run>/model_<it>.pt every `save_interval` iterations and at the end (rsl-rl's files), TensorBoard
    events in <run>/, <run>/config.yaml; rerunning with the same settings resumes from the newest
    model_<it>.pt; the deterministic actor (mean action, rsl-rl's observation normaliser included) is
    exported with `go2_sevpo.policies.exported.export_policy` and a card saying how it was made.

Nothing here implements PPO: the loss, rollout storage, GAE, adaptive learning rate and logging are
rsl-rl-lib's. This module only builds its config dict, the env, and the run-directory conventions.
The env needs no adapter: `BatchedEnv` already follows rsl-rl 5.x's `VecEnv` (observations as a
TensorDict with the groups "policy" and "critic", `extras["time_outs"]`, `extras["log"]`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from go2_sevpo.envs import make_env, resolve_device
from go2_sevpo.training.checkpoint import changed_keys
from go2_sevpo.utils.errors import CheckpointError, ConfigError
from go2_sevpo.utils.jobs import GracefulStop, Preempted, atomic_write_text, folder_lock

ROLES = ("expert", "weak")
CUDA_NUM_ENVS, CPU_NUM_ENVS = 8192, 64
# Settings that may change when a run is resumed (everything else must match the run's config.yaml):
# where and how fast it runs, not what it learns.
# A dotted key is free when it, or its top-level key, is listed.
RESUME_FREE = ("max_iterations", "save_interval", "export", "device", "backend", "num_envs", "threads",
               "update_threads", "init_at_random_ep_len", "env.physics_threads", "env.cpu_torch_threads")


@dataclass
class PPOAlgorithmConfig:
    """Arguments of `rsl_rl.algorithms.PPO` (legged_gym / rsl-rl defaults for locomotion)."""

    learning_rate: float = 1e-3  # initial; the adaptive schedule moves it to keep the KL near desired_kl
    schedule: str = "adaptive"  # "adaptive" | "fixed"
    desired_kl: float = 0.01
    num_learning_epochs: int = 5
    num_mini_batches: int = 4  # per iteration: num_envs * num_steps_per_env samples split into this many
    clip_param: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    value_loss_coef: float = 1.0
    use_clipped_value_loss: bool = True
    entropy_coef: float = 0.01
    max_grad_norm: float = 1.0
    # bfloat16 autocast in the update's forward passes (rsl-rl's option; fp32 weights and optimiser).
    # On a CPU with AVX-512 BF16 it makes the update 1.6-1.8x faster (docs/GO2_PIPELINE.md).
    use_mixed_precision: bool = False


@dataclass
class PPOModelConfig:
    """Actor and critic MLPs (`rsl_rl.models.MLPModel`)."""

    actor_hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    critic_hidden_dims: list[int] = field(default_factory=lambda: [512, 256, 128])
    activation: str = "elu"
    init_noise_std: float = 1.0  # Gaussian action noise at the start (learned, state-independent)
    # rsl-rl's running mean/std normaliser in front of each MLP; the exported actor keeps it, so the
    # policy file takes raw observations.
    obs_normalization: bool = True


@dataclass
class PPOTrainConfig:
    role: str = "expert"  # expert | weak: which policy this run makes (configs/role/*.yaml set the rest)
    max_iterations: int = 2000  # total PPO iterations of the run (a resumed run stops here too)
    num_steps_per_env: int = 24  # rollout length per env per iteration
    num_envs: int = 0  # 0 = 8192 on CUDA, 64 on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    backend: str = "auto"  # physics: auto = mujoco_warp on CUDA, mujoco on CPU; or a backend name
    seed: int = 0
    save_interval: int = 50  # iterations between rsl-rl checkpoints (model_<it>.pt); one more at the end
    init_at_random_ep_len: bool = True  # spread the first episodes' time-outs (rsl-rl's learn option)
    threads: int = 0  # torch CPU threads for the networks; 0 = leave as the env set it
    # torch CPU threads for rsl-rl's update only (the physics thread pool is idle then); 0 = every core.
    # Collection keeps `threads` (the env's 1 by default), so torch never competes with MuJoCo's pool.
    update_threads: int = 0
    export: str = ""  # exported policy file; "" = the default file of (env, role) in go2_sevpo.policies
    # An exported policy file (e.g. assets/policies/go2_weak.pt) whose normaliser and MLP start a new
    # run's actor; the critic and the action std start fresh. "" = random init. Ignored on resume.
    init_actor: str = ""
    # Envs the exported policy's card declares it for; [] = the training env only.
    policy_envs: list[str] = field(default_factory=list)
    algorithm: PPOAlgorithmConfig = field(default_factory=PPOAlgorithmConfig)
    model: PPOModelConfig = field(default_factory=PPOModelConfig)
    env: Any = None  # the task config (configs/env/*.yaml), with the role's PPO settings merged in


# ----------------------------------------------------------------------------- config -> rsl-rl
def rsl_rl_config(cfg: PPOTrainConfig) -> dict[str, Any]:
    """The train_cfg dict `OnPolicyRunner` expects (rsl-rl-lib 5.x layout)."""
    m, a = cfg.model, cfg.algorithm
    gaussian = {"class_name": "rsl_rl.modules.distribution:GaussianDistribution", "init_std": m.init_noise_std}
    return {
        "num_steps_per_env": cfg.num_steps_per_env,
        "save_interval": cfg.save_interval,
        "obs_groups": {"actor": ["policy"], "critic": ["critic"]},  # the critic sees privileged extras
        "logger": "tensorboard",
        "check_for_nan": True,
        "actor": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": list(m.actor_hidden_dims),
                  "activation": m.activation, "obs_normalization": m.obs_normalization,
                  "distribution_cfg": gaussian},
        "critic": {"class_name": "rsl_rl.models:MLPModel", "hidden_dims": list(m.critic_hidden_dims),
                   "activation": m.activation, "obs_normalization": m.obs_normalization},
        "algorithm": {"class_name": "rsl_rl.algorithms:PPO", **dataclasses.asdict(a)},
    }


def resolve_runtime(cfg: PPOTrainConfig) -> tuple[str, int, str]:
    """(device, num_envs, physics backend) after the auto rules."""
    device = resolve_device(cfg.device)
    on_cuda = device.startswith("cuda")
    num_envs = cfg.num_envs or (CUDA_NUM_ENVS if on_cuda else CPU_NUM_ENVS)
    backend = cfg.backend if cfg.backend != "auto" else ("mujoco_warp" if on_cuda else "mujoco")
    return device, num_envs, backend


def default_export_path(env_name: str, role: str) -> Path:
    from go2_sevpo.policies import policy_checkpoint

    path = policy_checkpoint(role, env_name)
    if path is None:
        raise ConfigError(f"no default policy file for role '{role}' on env '{env_name}'; give export=PATH")
    return path


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """rsl-rl's model_<it>.pt files of a run, oldest first."""
    found = [(int(m.group(1)), p) for p in run_dir.glob("model_*.pt") if (m := re.fullmatch(r"model_(\d+)\.pt", p.name))]
    return sorted(found)


# ----------------------------------------------------------------------------- the run
class PPOTraining:
    def __init__(self, cfg: PPOTrainConfig, run_dir: str | Path, command: str = ""):
        if cfg.role not in ROLES:
            raise ConfigError(f"unknown role '{cfg.role}'; known roles: {', '.join(ROLES)}")
        if cfg.max_iterations < 1:
            raise ConfigError(f"max_iterations must be >= 1, got {cfg.max_iterations}")
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.command = command or " ".join(["python", *sys.argv])
        self.device, self.num_envs, self.backend = resolve_runtime(cfg)
        env_cfg = dataclasses.asdict(cfg.env) if dataclasses.is_dataclass(cfg.env) else dict(cfg.env)
        self.env_name = env_cfg.pop("name")
        if env_cfg.get("reward_mode") != "ppo":
            raise ConfigError(f"PPO trains on the shaped reward: env.reward_mode must be 'ppo', got "
                              f"'{env_cfg.get('reward_mode')}'")
        self.env_overrides = {**env_cfg, "backend": self.backend}
        self.export_path = Path(cfg.export) if cfg.export else default_export_path(self.env_name, cfg.role)
        self.config_dict = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)

    def make_env(self):
        return make_env(self.env_name, **{**self.env_overrides, "num_envs": self.num_envs, "device": self.device,
                                          "seed": self.cfg.seed})

    def _check_resume(self) -> None:
        saved = self.run_dir / "config.yaml"
        if not saved.exists():
            return
        old = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
        diff = [k for k in changed_keys(old, self.config_dict) if k not in RESUME_FREE
                and k.split(".")[0] not in RESUME_FREE]
        if diff:
            raise CheckpointError(f"{self.run_dir} holds a run with other settings {diff[:6]}; rerun with the same "
                                  "settings to resume, or use another hydra.run.dir")

    def train(self) -> Path:
        """Train (or resume) to `max_iterations`, then export; returns the exported policy file. One job
        per run folder; SIGTERM / SIGINT end the current iteration, save model_<it>.pt and raise
        Preempted, and the same command resumes after it."""
        with folder_lock(self.run_dir, "PPO run folder"), GracefulStop() as stop:
            return self._train(stop)

    def _train(self, stop: GracefulStop) -> Path:
        from rsl_rl.runners import OnPolicyRunner

        cfg = self.cfg
        self._check_resume()
        atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.config_dict)))
        torch.manual_seed(cfg.seed)
        env = self.make_env()
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        runner = OnPolicyRunner(env, rsl_rl_config(cfg), log_dir=str(self.run_dir), device=str(env.device))
        stop_after_iteration(runner, stop, self.run_dir, cfg.max_iterations)
        if env.device.type == "cpu":
            update_on_threads(runner, cfg.update_threads)
        save_curriculum_with_checkpoints(runner, env)
        done = 0  # completed iterations
        found = checkpoints(self.run_dir)
        if found:
            it, path = found[-1]
            try:
                infos = runner.load(str(path), map_location=str(env.device))
            except (RuntimeError, KeyError, EOFError) as e:
                raise CheckpointError(f"{path}: cannot resume from it ({str(e).splitlines()[0]})") from None
            if infos and "curriculum" in infos and hasattr(env, "load_curriculum_state"):
                env.load_curriculum_state(infos["curriculum"])
            # rsl-rl's model_<it>.pt holds the state after iteration <it> (0-based): continue at it + 1.
            done = it + 1
            runner.current_learning_iteration = done
            print(f"resuming {self.run_dir} after iteration {it} ({done}/{cfg.max_iterations} done)", flush=True)
        elif cfg.init_actor:
            init_actor_from_policy(runner, env, cfg.init_actor)
        remaining = cfg.max_iterations - done
        t0 = time.perf_counter()
        if remaining > 0:
            runner.learn(remaining, init_at_random_ep_len=cfg.init_at_random_ep_len and done == 0)
        else:
            print(f"{self.run_dir}: already at {done} iterations (max_iterations={cfg.max_iterations}); exporting",
                  flush=True)
        seconds = time.perf_counter() - t0
        last_it, last_path = checkpoints(self.run_dir)[-1]
        exported = self.export(runner, env, last_it + 1, last_path)
        if remaining > 0:
            samples = remaining * cfg.num_steps_per_env * env.num_envs
            print(f"{remaining} iterations in {seconds:.1f} s ({seconds / remaining:.2f} s/iteration, "
                  f"{samples / seconds:.0f} samples/s, {env.num_envs} envs on {env.device})", flush=True)
        close = getattr(env, "close", None)
        if close is not None:
            close()
        return exported

    def export(self, runner, env, iterations: int, checkpoint: Path) -> Path:
        from importlib.metadata import version

        from go2_sevpo.policies.exported import export_policy, observation_layout, sha256_file

        cfg = self.cfg
        actor = runner.alg.get_policy().as_jit()  # normaliser + MLP + deterministic (mean) output
        card = {
            "env": self.env_name,
            "envs": list(cfg.policy_envs) or [self.env_name],
            "obs_layout": observation_layout(env),
            "role": cfg.role,
            "made_by": {
                "command": self.command,
                "iterations": iterations,
                "samples": iterations * cfg.num_steps_per_env * env.num_envs,
                "num_envs": env.num_envs,
                "device": str(env.device),
                "backend": self.backend,
                "seed": cfg.seed,
                "rsl_rl_version": version("rsl-rl-lib"),
                "checkpoint": str(checkpoint),
                "checkpoint_sha256": sha256_file(checkpoint),
                "terrain": self.env_overrides.get("terrain"),
                "run_dir": str(self.run_dir),
            },
        }
        export_policy(actor, self.run_dir / "exported" / "policy.pt", card)
        return export_policy(actor, self.export_path, card)


def save_curriculum_with_checkpoints(runner, env) -> None:
    """rsl-rl's model_<it>.pt holds networks, optimiser and iteration, but not the env's curriculum:
    a resumed expert would restart every env on the easiest row. rsl-rl saves an `infos` entry with
    each checkpoint (and returns it from `load`): fill it with the env's curriculum state."""
    if not hasattr(env, "curriculum_state"):
        return
    save = runner.save

    def save_with_curriculum(path: str, infos: dict | None = None) -> None:
        save(path, {**(infos or {}), "curriculum": env.curriculum_state()})

    runner.save = save_with_curriculum


def init_actor_from_policy(runner, env, path: str) -> None:
    """Start the actor from an exported policy of the same architecture (its card is checked against
    the env first): the exported module holds `actor.<name>` for every actor tensor but the std."""
    from go2_sevpo.policies.exported import PolicyFileError, load_policy_module

    try:
        module, _ = load_policy_module(path, env)
    except PolicyFileError as e:
        raise ConfigError(f"init_actor: {e}") from None
    weights = {k.removeprefix("actor."): v for k, v in module.state_dict().items()}
    actor = runner.alg.actor
    expected = {k: v.shape for k, v in actor.state_dict().items() if k != "distribution.std_param"}
    if {k: v.shape for k, v in weights.items()} != expected:
        raise ConfigError(f"init_actor: {path} has another actor architecture than model.actor_hidden_dims")
    actor.load_state_dict(weights, strict=False)
    print(f"actor initialised from {path}", flush=True)


def update_on_threads(runner, threads: int) -> None:
    """On a CPU, collection runs MuJoCo's thread pool with torch on one thread; the update runs alone,
    so it may use every core (256 envs: 1.17-1.31 s -> 0.70 s per update at 2 threads, measured).
    threads = 0: every core."""
    threads = threads or os.cpu_count() or 1
    update = runner.alg.update

    def update_then_restore() -> dict:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return update()
        finally:
            torch.set_num_threads(before)

    runner.alg.update = update_then_restore


def stop_after_iteration(runner, stop: GracefulStop, run_dir: Path, total: int) -> None:
    """rsl-rl's loop has no stop hook, but it calls `logger.log` once per iteration after the update:
    wrap that call so that a requested stop saves model_<it>.pt (the state after iteration it, what
    resume loads) and raises Preempted."""
    log = runner.logger.log

    def log_then_check(**kwargs) -> None:
        log(**kwargs)
        if stop.requested:
            it = kwargs["it"]
            runner.save(str(run_dir / f"model_{it}.pt"))
            raise Preempted(f"{stop.signal_name} after PPO iteration {it} ({it + 1}/{total} done): saved "
                            f"{run_dir / f'model_{it}.pt'}; rerun the same command to resume")

    runner.logger.log = log_then_check
