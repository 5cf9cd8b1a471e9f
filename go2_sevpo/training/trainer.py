"""The one offline training loop, for every algorithm of the registry (rsl_rl's runner, offline).

    load + validate dataset -> normaliser -> on-device sampler -> algorithm
    resume from <run>/checkpoints/latest.pt if it exists (same settings required)
    algo.pretrain (e.g. SEVPO's stage 1, cached across runs)
    for step: algo.update -> averaged scalars to TensorBoard every log_interval (one host sync),
              batched evaluation every eval_interval, atomic checkpoint every save_interval
    final evaluation of the LAST iterate -> metrics.json, plots

A run is reproducible on CPU: every random stream (global torch RNG for init and dropout, the
sampler's generator, the algorithm's generator) is seeded from `seed` and saved in the checkpoint,
and evaluation uses generators of its own, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from go2_sevpo.algorithms import registry as algo_registry
from go2_sevpo.algorithms.base import OfflineAlgorithm, PretrainContext
from go2_sevpo.data.format import DatasetError, check_dims, load_dataset
from go2_sevpo.data.sampler import DeviceSampler
from go2_sevpo.envs import make_env, resolve_device
from go2_sevpo.envs.registry import config_from_dict
from go2_sevpo.evaluation.evaluator import EvalConfig, LearnedPolicy, evaluate, write_json
from go2_sevpo.networks import ObservationNormalizer
from go2_sevpo.training.checkpoint import CHECKPOINT_FORMAT, atomic_save, changed_keys, load_file
from go2_sevpo.utils.errors import CheckpointError, ConfigError
from go2_sevpo.utils.jobs import GracefulStop, Preempted, atomic_write_text, code_version, folder_lock, save_figure
from go2_sevpo.utils.mkl_vendor import kernel_status


@dataclass
class TrainConfig:
    dataset: str = "???"  # path of the HDF5 dataset (DSRL layout)
    steps: int = 20_000  # gradient steps of the main loop (SEVPO: stage 2)
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int = 0  # torch CPU threads; 0 = torch's default
    normalize_obs: bool = True  # standardise observations with the dataset's mean and std
    log_interval: int = 250  # steps between TensorBoard scalars (averaged over the interval)
    eval_interval: int = 0  # steps between periodic evaluations; 0 = only the final one
    save_interval: int = 1_000  # steps between checkpoints (and one at the end)
    progress: bool = True  # tqdm progress bar
    cache_dir: str = "runs/cache"  # cross-run caches (SEVPO stage 1); "" disables caching
    eval: EvalConfig = field(default_factory=EvalConfig)
    env: Any = None  # the task config (configs/env/*.yaml or the task's schema)
    algo: Any = None  # the algorithm config (configs/algo/*.yaml)


# Top-level settings that may differ when a run is resumed; everything else must match.
RESUME_FREE = ("device", "threads", "log_interval", "eval_interval", "save_interval",
               "progress", "cache_dir", "eval")
CHECKPOINT_NAME = "checkpoints/latest.pt"
PRETRAIN_PROGRESS_NAME = "checkpoints/pretrain_progress.pt"  # a pre-training stage in progress (SEVPO stage 1)


# ----------------------------------------------------------------------------- config helpers
def algo_config_from_dict(values: dict[str, Any]):
    cls = algo_registry.config_class(values.get("name", "???"))
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), values))


def env_overrides(env_cfg: Any) -> dict[str, Any]:
    d = dataclasses.asdict(env_cfg) if dataclasses.is_dataclass(env_cfg) else dict(env_cfg)
    return {k: v for k, v in d.items() if k not in ("num_envs", "device", "seed")}


def env_dims(env_name: str, overrides: dict[str, Any]) -> tuple[int, int]:
    env = make_env(env_name, **{k: v for k, v in overrides.items() if k != "name"}, num_envs=1, device="cpu")
    return env.num_obs, env.num_actions


def build_algorithm(algo_cfg: Any, obs_dim: int, act_dim: int, total_steps: int, device, seed: int) -> OfflineAlgorithm:
    cls = algo_registry.lookup(algo_cfg.name)
    return cls(algo_cfg, obs_dim, act_dim, total_steps, device, seed)


# ----------------------------------------------------------------------------- logging
class ScalarAccumulator:
    """Sums the per-step scalar tensors on the device (one stack + one add per step) and syncs once
    per flush. Python floats (e.g. the learning rate) keep their last value."""

    def __init__(self):
        self.keys: list[str] | None = None
        self.total: torch.Tensor | None = None
        self.count = 0
        self.floats: dict[str, float] = {}

    def add(self, scalars: dict[str, torch.Tensor | float]) -> None:
        tensors = {k: v for k, v in scalars.items() if isinstance(v, torch.Tensor)}
        self.floats.update({k: float(v) for k, v in scalars.items() if not isinstance(v, torch.Tensor)})
        if self.keys is None:
            self.keys = list(tensors)
        stacked = torch.stack([tensors[k].float() for k in self.keys])
        self.total = stacked if self.total is None else self.total + stacked
        self.count += 1

    def flush(self) -> dict[str, float]:
        out = dict(self.floats)
        if self.total is not None and self.count:
            out.update(zip(self.keys, (self.total / self.count).tolist()))
        self.total, self.count = None, 0
        return out


# ----------------------------------------------------------------------------- the trainer
class OfflineTrainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | Path, config_dict: dict[str, Any]):
        self.cfg, self.run_dir, self.config_dict = cfg, Path(run_dir), config_dict
        if not cfg.dataset or cfg.dataset == "???":
            raise ConfigError("dataset=PATH is required (an HDF5 file in the DSRL layout)")
        if cfg.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {cfg.steps}")
        self.device = torch.device(resolve_device(cfg.device))
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.env_name = cfg.env.name
        self.env_overrides = env_overrides(cfg.env)
        self.obs_dim, self.act_dim = env_dims(self.env_name, self.env_overrides)

        self.dataset = load_dataset(cfg.dataset)
        made_on = self.dataset.attrs.get("env")  # go2_simple and go2_hard share observation sizes
        if made_on and made_on != self.env_name:
            raise DatasetError(f"{cfg.dataset}: collected on env '{made_on}', not '{self.env_name}'; "
                               f"give env={made_on} or a dataset of {self.env_name}")
        # The task's own check first (e.g. a DSRL file of another Safety-Gymnasium task names both
        # tasks), then the sizes.
        config_from_dict(self.env_name, self.env_overrides).check_dataset(cfg.dataset, self.dataset.attrs)
        check_dims(cfg.dataset, self.dataset.obs_dim, self.dataset.act_dim, self.obs_dim, self.act_dim)
        self.fingerprint = self.dataset.fingerprint()
        self.normalizer = ObservationNormalizer(self.obs_dim).to(self.device)
        if cfg.normalize_obs:
            self.normalizer.fit(torch.as_tensor(self.dataset.observations, device=self.device))
        self.sampler = DeviceSampler(self.dataset, self.device, cfg.seed, self.normalizer)
        self.algo = build_algorithm(cfg.algo, self.obs_dim, self.act_dim, cfg.steps, self.device, cfg.seed)
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.complete = False
        self.writer = None

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "step": self.step,
            "complete": self.complete,
            "config": self.config_dict,
            "env": self.env_name,
            "env_config": self.env_overrides,
            "algo_config": dataclasses.asdict(self.cfg.algo),
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "dataset": str(self.cfg.dataset),
            "fingerprint": self.fingerprint,
            "normalizer": self.normalizer.state_dict(),
            "algorithm": self.algo.state_dict(),
            "sampler": self.sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "history": self.history,
            "train_seconds": self.train_seconds,
        }
        atomic_save(payload, self.checkpoint_path)

    def try_resume(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        payload = load_file(self.checkpoint_path, self.device)
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{self.checkpoint_path}: not a checkpoint of this trainer (format {CHECKPOINT_FORMAT})")
        if payload["fingerprint"] != self.fingerprint:
            raise CheckpointError(f"{self.run_dir} holds a run on another dataset (fingerprint {payload['fingerprint']}, "
                                  f"now {self.fingerprint}); use another hydra.run.dir")
        old = {k: v for k, v in payload["config"].items() if k not in RESUME_FREE}
        new = {k: v for k, v in self.config_dict.items() if k not in RESUME_FREE}
        diff = changed_keys(old, new)
        # A switch the code gained after the checkpoint was written is absent from its config; at the
        # switch's default it means the old behaviour (that is how switches are added), so it resumes.
        fresh = type(self.algo.cfg)()  # the code's defaults
        added = [k for k in diff if k.startswith("algo.") and k[5:] not in old.get("algo", {})
                 and hasattr(fresh, k[5:]) and new["algo"][k[5:]] == getattr(fresh, k[5:])]
        if added:
            self.message(f"resuming with settings added since the checkpoint, at their defaults: {added}")
            diff = [k for k in diff if k not in added]
        if diff:
            raise CheckpointError(f"{self.run_dir} holds a run with other settings {diff[:6]}; rerun with the same "
                                  "settings to resume, or use another hydra.run.dir")
        try:
            self.normalizer.load_state_dict(payload["normalizer"])
            self.algo.load_state_dict(payload["algorithm"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"{self.checkpoint_path}: does not fit this algorithm ({str(e).splitlines()[0]})") from None
        self.sampler.load_state_dict(payload["sampler"])
        torch.set_rng_state(payload["torch_rng"].cpu())
        if payload.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.step, self.history = int(payload["step"]), list(payload["history"])
        self.train_seconds, self.complete = float(payload["train_seconds"]), bool(payload["complete"])
        return True

    # ------------------------------------------------------------------ logging / evaluation
    def log(self, prefix: str, scalars: dict[str, Any], step: int) -> None:
        """Write scalars (tensors synced together, in one transfer) under `prefix/`."""
        tensor_keys = [k for k, v in scalars.items() if isinstance(v, torch.Tensor)]
        values = {k: float(v) for k, v in scalars.items() if k not in tensor_keys}
        if tensor_keys:
            values.update(zip(tensor_keys, torch.stack([scalars[k].float() for k in tensor_keys]).tolist()))
        for k, v in values.items():
            self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def message(self, text: str) -> None:
        tqdm.write(text) if self.cfg.progress else print(text, flush=True)

    def policy(self) -> LearnedPolicy:
        return LearnedPolicy(self.algo, self.normalizer, self.cfg.eval.seed, self.device)

    def evaluate(self, out_dir: Path | None, tag: str = "") -> dict[str, Any]:
        self.algo.train_mode(False)
        try:
            metrics = evaluate(self.policy(), self.env_name, self.env_overrides, self.cfg.eval, self.device, out_dir, tag)
        finally:
            self.algo.train_mode(True)
        for k in ("success_rate", "mean_return", "mean_cost", "failure_rate", "normalized_reward",
                  "normalized_cost", "fall_rate", "region_iou", "unsafe_region_iou"):
            if metrics.get(k) is not None:
                self.writer.add_scalar(f"eval/{k}", metrics[k], self.step)
        return metrics

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Train to `steps` (resuming the run folder's checkpoint), evaluate, write metrics.json. One job
        per run folder (a second one stops at once, naming the holder); SIGTERM / SIGINT finish the
        current step, checkpoint and raise Preempted, and the same command continues from there."""
        with folder_lock(self.run_dir, "run folder"), GracefulStop() as stop:
            return self._train(stop)

    def _train(self, stop: GracefulStop) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        cfg = self.cfg
        resumed = self.try_resume()
        if resumed and self.complete and (self.run_dir / "metrics.json").exists():
            self.message(f"run {self.run_dir} is already complete ({self.step} steps); see metrics.json")
            return json.loads((self.run_dir / "metrics.json").read_text())
        atomic_write_text(self.run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(self.config_dict)))
        # purge_step drops events a killed run logged after its last checkpoint.
        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step if resumed else None)
        if resumed:
            self.message(f"resuming {self.run_dir} from step {self.step}")
        # The matmul kernels decide the speed and the float rounding: logged, and kept in metrics.json.
        cpu_kernels = kernel_status() if self.device.type == "cpu" else None
        if cpu_kernels:
            self.message(cpu_kernels)
        self.algo.pretrain(PretrainContext(
            dataset=self.dataset, sampler=self.sampler, fingerprint=self.fingerprint,
            cache_dir=str(Path(cfg.cache_dir).resolve()) if cfg.cache_dir else "",
            log=self.log, message=self.message, log_interval=cfg.log_interval, show_progress=cfg.progress,
            cache_key_extra={"normalize_obs": cfg.normalize_obs},
            cost_limit=float(cfg.env.cost_limit), max_episode_length=int(cfg.env.max_episode_length),
            progress_path=str(self.run_dir / PRETRAIN_PROGRESS_NAME), save_interval=cfg.save_interval,
            stop_requested=lambda: stop.requested, env_name=self.env_name,
        ))
        if not resumed:
            self.save()  # a kill after pre-training resumes here, without the cache

        acc = ScalarAccumulator()
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"{cfg.algo.name} {self.env_name}",
                   disable=not cfg.progress, dynamic_ncols=True)
        t0 = time.perf_counter()
        while self.step < cfg.steps:
            acc.add(self.algo.update(self.sampler, self.step))
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_interval == 0:
                scalars = acc.flush()
                for k, v in scalars.items():
                    self.writer.add_scalar(f"train/{k}", v, self.step)
                bar.set_postfix({k: f"{scalars[k]:.3g}" for k in ("loss_actor", "safe_state_fraction") if k in scalars})
            if cfg.eval_interval and self.step % cfg.eval_interval == 0 and self.step < cfg.steps:
                m = self.evaluate(None)
                self.history.append(self._history_row(m))
                self.message(f"step {self.step}: success {m['success_rate']:.2f}  cost {m['mean_cost']:.2f}  "
                             f"failure {m['failure_rate']:.2f}")
            if self.step % cfg.save_interval == 0 or self.step == cfg.steps or stop.requested:
                self.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.complete = self.step == cfg.steps
                self.save()
            if stop.requested and self.step < cfg.steps:
                bar.close()
                self.writer.close()
                raise Preempted(f"{stop.signal_name} at step {self.step} of {cfg.steps}: checkpoint saved "
                                f"({self.checkpoint_path}); rerun the same command to resume")
        bar.close()

        metrics = self.evaluate(self.run_dir, tag="final")
        # The same evaluation `offline/evaluate.py` and the results table make of this checkpoint (same
        # start, seed and episodes): filed where they look, so the table reuses it instead of redoing it.
        write_json(self.run_dir / "eval" / f"{metrics['start']}_seed{cfg.eval.seed}" / "metrics.json",
                   {**metrics, "checkpoint_step": self.step})
        self.history.append(self._history_row(metrics))
        metrics.update({
            "algo": cfg.algo.name, "dataset": str(cfg.dataset), "fingerprint": self.fingerprint, "steps": self.step,
            "code": code_version(), "train_seconds": round(self.train_seconds, 1), "history": self.history,
            "cpu_kernels": cpu_kernels,
        })
        write_json(self.run_dir / "metrics.json", metrics)
        self.complete = True
        self.save()
        plot_history(self.history, self.run_dir / "plots" / "training.png")
        self.writer.close()
        return metrics

    def _history_row(self, m: dict[str, Any]) -> dict[str, Any]:
        keys = ("success_rate", "mean_return", "mean_cost", "failure_rate", "normalized_reward", "normalized_cost",
                "fall_rate", "region_iou", "unsafe_region_iou")
        return {"step": self.step, **{k: m[k] for k in keys if k in m}}


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([h["step"] for h in history])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    # The last panel falls back to the raw return for tasks without a reward range or a region truth (Go2).
    scores = ("normalized_reward", "region_iou", "unsafe_region_iou")
    if all(h.get(k) is None for h in history for k in scores):
        scores = ("mean_return",)
    for ax, keys in zip(axes, (("success_rate", "failure_rate", "fall_rate"), ("mean_cost",), scores)):
        for k in keys:
            values = [h.get(k) for h in history]
            if any(v is not None for v in values):
                ax.plot(steps, [np.nan if v is None else v for v in values], "o-", label=k)
        ax.set_xlabel("step")
        if ax.get_lines():
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- loading a finished run
def load_run(run_dir: str | Path, device: str = "cpu"):
    """(algorithm, normaliser, checkpoint payload) of a run directory, for evaluation."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    path = run_dir / CHECKPOINT_NAME
    dev = torch.device(resolve_device(device))
    payload = load_file(path, dev)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint of this trainer (format {CHECKPOINT_FORMAT})")
    try:
        algo_cfg = algo_config_from_dict(payload["algo_config"])
        config_from_dict(payload["env"], payload["env_config"])  # the task must still exist
        algo = build_algorithm(algo_cfg, payload["obs_dim"], payload["act_dim"], payload["config"]["steps"], dev,
                               payload["config"]["seed"])
        algo.load_state_dict(payload["algorithm"])
        normalizer = ObservationNormalizer(payload["obs_dim"]).to(dev)
        normalizer.load_state_dict(payload["normalizer"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: incomplete or incompatible checkpoint ({str(e).splitlines()[0]})") from None
    algo.train_mode(False)
    return algo, normalizer, payload
