"""The Go2 pipeline end to end through its scripts, at toy scale on the CPU: PPO (rsl-rl-lib) for an
expert and a weak policy -> export with a card -> resume -> batched collection -> 6,000 + 3,000 style mix
(here 3 + 2) -> SEVPO on the mix -> evaluation with success / fall rates and a video; plus the bad inputs
of each stage as one-line errors. Nothing is written under assets/ (every policy file is a tmp path).

The tests share one module-scoped folder and run in file order (each stage reads the previous one's
files)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from sevpo_testdata import TINY_OVERRIDES, assert_one_line_error, run_repo_script

# Toy scale: 4 envs x 8 steps per PPO iteration, 2 x 1 tracks, 20-25 step episodes, 32-unit MLPs.
SMALL_TERRAIN = ["env.terrain_rows=2", "env.terrain_cols=1"]
TINY_PPO = ["device=cpu", "num_envs=4", "num_steps_per_env=8", "algorithm.num_mini_batches=2",
            "model.actor_hidden_dims=[32,32]", "model.critic_hidden_dims=[32,32]", "env.max_episode_length=20",
            "save_interval=1", *SMALL_TERRAIN]
EPISODE_STEPS = 25
COLLECT = ["chunk_episodes=3", f"env.max_episode_length={EPISODE_STEPS}", *SMALL_TERRAIN]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("go2_pipeline")


def card_of(path: Path) -> dict:
    from go2_sevpo.policies.exported import read_card

    return read_card(path)


def tiny_env(name: str = "go2_hard", **kw):
    from go2_sevpo.envs import make_env

    return make_env(name, num_envs=2, terrain_rows=2, terrain_cols=1, max_episode_length=EPISODE_STEPS, **kw)


def ppo(work: Path, *args: str) -> subprocess.CompletedProcess:
    return run_repo_script("data_collection/train_expert.py", *TINY_PPO, *args)


# ----------------------------------------------------------------------------- 1. PPO expert
def test_train_expert_exports_a_card_and_resumes(work, capsys):
    from go2_sevpo.policies.exported import observation_layout, sha256_file

    run_dir, policy = work / "ppo_expert", work / "expert.pt"
    args = ("env=go2_hard", f"export={policy}", f"hydra.run.dir={run_dir}")
    r = ppo(work, *args, "max_iterations=2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in run_dir.glob("model_*.pt")) == ["model_0.pt", "model_1.pt"]
    assert list(run_dir.glob("events.out.tfevents.*")) and (run_dir / "config.yaml").is_file()
    assert (run_dir / "exported/policy.pt").is_file()

    env = tiny_env()
    card = card_of(policy)
    assert card["env"] == "go2_hard" and card["envs"] == ["go2_hard"] and card["role"] == "expert"
    assert card["obs_layout"] == observation_layout(env)
    made = card["made_by"]
    assert made["iterations"] == 2 and made["rsl_rl_version"] == "5.5.1" and made["seed"] == 0
    assert made["checkpoint"] == str(run_dir / "model_1.pt")
    assert made["checkpoint_sha256"] == sha256_file(run_dir / "model_1.pt")
    assert "train_expert.py" in made["command"] and "max_iterations=2" in made["command"]

    # The exported file is rsl-rl's actor with its observation normaliser, deterministic (mean) output.
    from rsl_rl.models import MLPModel
    from tensordict import TensorDict

    obs = env.get_observations()
    actor = MLPModel(obs, {"actor": ["policy"], "critic": ["critic"]}, "actor", 12, hidden_dims=[32, 32],
                     obs_normalization=True,
                     distribution_cfg={"class_name": "rsl_rl.modules.distribution:GaussianDistribution"})
    actor.load_state_dict(torch.load(run_dir / "model_1.pt", weights_only=False)["actor_state_dict"])
    actor.eval()
    probe = TensorDict({"policy": torch.randn(16, 161), "critic": torch.randn(16, 168)}, batch_size=[16])
    exported = torch.jit.load(str(policy))
    with torch.no_grad():
        expected = actor(probe).clamp(-1, 1)
        got = exported(probe["policy"])
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got[0], got[1])  # depends on the observation

    # The same command with more iterations continues from model_1.pt: Adam has taken the steps of all
    # 3 iterations (5 epochs x 2 mini-batches each), not only those since the restart.
    r = ppo(work, *args, "max_iterations=3")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming" in r.stdout and (run_dir / "model_2.pt").is_file()
    saved = torch.load(run_dir / "model_2.pt", weights_only=False)
    levels = saved["infos"]["curriculum"]["terrain_levels"]  # the expert's curriculum rows, for the next resume
    assert levels.shape == (4,) and 0 <= int(levels.min()) and int(levels.max()) <= 1
    opt = saved["optimizer_state_dict"]
    assert int(next(iter(opt["state"].values()))["step"]) == 3 * 5 * 2
    made = card_of(policy)["made_by"]
    assert made["iterations"] == 3 and made["checkpoint"] == str(run_dir / "model_2.pt")

    # Other settings in the same run folder are refused; a misspelt key is one line (both checked in
    # process: these run before any work, as the script's first steps).
    from go2_sevpo.cli import check_overrides
    from go2_sevpo.config import register_configs, register_schema
    from go2_sevpo.training.ppo import PPOTraining, PPOTrainConfig
    from go2_sevpo.utils.errors import CheckpointError
    from omegaconf import OmegaConf

    saved = OmegaConf.load(run_dir / "config.yaml")
    saved.seed = 1
    with pytest.raises(CheckpointError, match=r"holds a run with other settings \['seed'\]"):
        PPOTraining(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PPOTrainConfig), saved)),
                    run_dir)._check_resume()
    saved.seed, saved.env.physics_threads, saved.update_threads = 0, 1, 1  # how fast, not what: may change
    PPOTraining(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PPOTrainConfig), saved)),
                run_dir)._check_resume()
    register_schema(None, "train_expert", PPOTrainConfig)
    register_configs()
    with pytest.raises(SystemExit) as exit_info:
        check_overrides("train_expert", ["train_expert.py", "env=go2_hard", "algorithm.learning_rat=1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: Could not override 'algorithm.learning_rat'. "
                                               "(Key 'learning_rat' not in 'PPOAlgorithmConfig')")


def test_init_actor_starts_from_an_exported_policy_with_mixed_precision(work):
    """`init_actor=FILE` starts a new run's actor at the exported policy (what a warm start from the
    walking policy does), with bf16 autocast and the update on every core: the run's first
    checkpoint moved away from the file, its first rollout used the file's actor (same normaliser
    count at start), and a file of another architecture is a one-line error."""
    from go2_sevpo.training.ppo import PPOTraining, PPOTrainConfig, init_actor_from_policy
    from go2_sevpo.utils.errors import ConfigError

    run_dir = work / "ppo_warm"
    r = ppo(work, "env=go2_hard", f"init_actor={work / 'expert.pt'}", "max_iterations=1", "update_threads=2",
            "algorithm.use_mixed_precision=true", f"export={work / 'warm.pt'}", f"hydra.run.dir={run_dir}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"actor initialised from {work / 'expert.pt'}" in r.stdout
    start = {k.removeprefix("actor."): v for k, v in torch.jit.load(str(work / "expert.pt")).state_dict().items()}
    after = torch.load(run_dir / "model_0.pt", weights_only=False)["actor_state_dict"]
    assert after["obs_normalizer.count"] > start["obs_normalizer.count"]  # it kept counting from the file's
    assert not torch.equal(after["mlp.0.weight"], start["mlp.0.weight"])  # and trained
    assert (after["mlp.0.weight"] - start["mlp.0.weight"]).abs().max() < 0.05  # a few steps from it, not a fresh init

    from omegaconf import OmegaConf
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PPOTrainConfig),
                                              OmegaConf.load(run_dir / "config.yaml")))
    cfg.model.actor_hidden_dims = [16]
    training = PPOTraining(cfg, work / "unused")
    from rsl_rl.runners import OnPolicyRunner
    from go2_sevpo.training.ppo import rsl_rl_config
    env = tiny_env()
    runner = OnPolicyRunner(env, rsl_rl_config(training.cfg), log_dir=None, device="cpu")
    with pytest.raises(ConfigError, match="another actor architecture"):
        init_actor_from_policy(runner, env, str(work / "expert.pt"))


# ----------------------------------------------------------------------------- 2. weak policy
def test_weak_policy_trains_on_flat_ground_for_both_tasks(work):
    policy = work / "weak.pt"
    r = ppo(work, "env=go2_hard", "role=weak", "max_iterations=1", f"export={policy}",
            f"hydra.run.dir={work / 'ppo_weak'}")
    assert r.returncode == 0, r.stderr[-3000:]
    card = card_of(policy)
    assert card["role"] == "weak" and card["envs"] == ["go2_simple", "go2_hard"]
    assert card["made_by"]["terrain"] == "flat"
    from go2_sevpo.policies import make_policy

    for name in ("go2_simple", "go2_hard"):  # one file serves both tasks
        env = tiny_env(name)
        action = make_policy("weak", env, 0, str(policy))(env.get_observations()["policy"])
        assert action.shape == (2, 12) and action.abs().max() <= 1


# ----------------------------------------------------------------------------- 3. collection and mix
def test_collect_expert_and_weak_then_mix(work):
    from go2_sevpo.data.format import load_dataset
    from go2_sevpo.policies.exported import sha256_file

    for role, episodes in (("expert", 3), ("weak", 3)):
        out = work / f"{role}.h5"
        r = run_repo_script("data_collection/collect.py", "--policy", role, "env=go2_hard",
                            f"checkpoint={work / f'{role}.pt'}", f"episodes={episodes}", f"output={out}", *COLLECT)
        assert r.returncode == 0, r.stderr[-3000:]
        ds = load_dataset(out, 161, 12)
        assert len(ds.episode_bounds()) == episodes
        assert ds.attrs["env"] == "go2_hard" and ds.attrs["policy"] == role
        assert ds.attrs["policy_checkpoint"] == str(work / f"{role}.pt")
        assert ds.attrs["policy_checkpoint_sha256"] == sha256_file(work / f"{role}.pt")
        assert ds.attrs["policy_card"]["role"] == role
        assert (ds.terminals | ds.timeouts).sum() == episodes

    mixed = work / "mixed.h5"
    r = run_repo_script("data_collection/mix.py", "only=[go2_hard]", f"recipes.go2_hard.source_dir={work}",
                        f"recipes.go2_hard.output={mixed}", "recipes.go2_hard.sources=[expert.h5,weak.h5]",
                        "recipes.go2_hard.counts=[3,2]")
    assert r.returncode == 0, r.stderr[-3000:]
    ds = load_dataset(mixed, 161, 12)
    starts = ds.episode_bounds()[:, 0]
    names = ds.attrs["source_names"]
    sources = [names[i] for i in ds.extras["source"][starts]]
    assert sorted(sources) == ["expert"] * 3 + ["weak"] * 2
    assert ds.attrs["env"] == "go2_hard" and ds.attrs["recipe"]["counts"] == {str(work / "expert.h5"): 3,
                                                                             str(work / "weak.h5"): 2}
    assert ds.attrs["recipe"]["source_policies"][str(work / "weak.h5")] == {
        "file": str(work / "weak.pt"), "sha256": sha256_file(work / "weak.pt")}
    # Default episode counts for Go2 come from configs/collect.yaml (papers: 6,000 expert + 3,000 weak).
    from omegaconf import OmegaConf

    defaults = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs/collect.yaml").default_episodes
    assert defaults.go2_hard.expert == 6000 and defaults.go2_hard.weak == 3000

    from go2_sevpo.data.format import DatasetError
    from go2_sevpo.data.mix import SourceMixRecipe, mix_by_source

    recipe = SourceMixRecipe("go2_hard", {str(work / "expert.h5"): 4, str(work / "weak.h5"): 2})
    with pytest.raises(DatasetError, match="wants 4 trajectories from .*expert.h5, which holds 3"):
        mix_by_source(recipe, str(work / "too_many.h5"))


# ----------------------------------------------------------------------------- 4. SEVPO and evaluation
def test_sevpo_on_the_mix_then_evaluate_with_video(work):
    run_dir = work / "sevpo"
    r = run_repo_script("offline/train.py", "env=go2_hard", f"dataset={work / 'mixed.h5'}", f"hydra.run.dir={run_dir}",
                        f"cache_dir={work / 'cache'}", "steps=30", "save_interval=30", "eval.episodes=4",
                        f"env.max_episode_length={EPISODE_STEPS}", *SMALL_TERRAIN,
                        *[o for o in TINY_OVERRIDES if not o.startswith("eval.episodes")])
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["episodes"] == 4 and metrics["steps"] == 30
    for key in ("success_rate", "fall_rate", "mean_cost", "failure_rate"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "fall" in r.stdout

    r = run_repo_script("offline/evaluate.py", f"run={run_dir}", "episodes=3", "seed=2", "video=true",
                        "video_episodes=2")
    if r.returncode == 2 and "offscreen rendering is unavailable" in r.stderr:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-3000:]
    out = run_dir / "eval/track_seed2"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["episodes"] == 3 and "fall_rate" in metrics and "success_rate" in metrics
    names = [Path(v).name for v in metrics["videos"]]
    assert [n.split("_")[1] for n in names] == ["0", "1"], names  # video_outcome=any: the first two envs
    assert all(re.fullmatch(r"episode_\d+_(success|fall|time_out|collision|out_of_bounds)\.mp4", n) for n in names)
    import imageio.v2 as imageio

    frames = imageio.mimread(metrics["videos"][0])
    assert 2 <= len(frames) <= EPISODE_STEPS + 1 and frames[0].shape == (240, 320, 3)
    assert np.ptp(np.stack(frames).astype(np.int16)) > 0

    # An outcome filter renders only episodes of that outcome (here: however many of 3 timed out).
    r = run_repo_script("offline/evaluate.py", f"run={run_dir}", "episodes=3", "seed=2", "video=true",
                        "video_episodes=3", "video_outcome=time_out")
    assert r.returncode == 0, r.stderr[-3000:]
    videos = json.loads((out / "metrics.json").read_text())["videos"]
    assert len(videos) <= 3 and all(v.endswith("_time_out.mp4") for v in videos)
    r = run_repo_script("offline/evaluate.py", f"run={run_dir}", "episodes=3", "video=true", "video_outcome=falls")
    assert_one_line_error(r, "video_outcome must be one of any, success, fall, time_out, got 'falls'")


# ----------------------------------------------------------------------------- 5. bad input
def test_bad_inputs_are_one_line_errors(work):
    from go2_sevpo.policies import PolicyError, make_policy
    from go2_sevpo.policies.exported import export_policy

    # An expert made for go2_hard, collected with on go2_simple.
    r = run_repo_script("data_collection/collect.py", "--policy", "expert", "env=go2_simple",
                        f"checkpoint={work / 'expert.pt'}", "episodes=2", f"output={work / 'x.h5'}", *COLLECT)
    assert_one_line_error(r, "was trained for go2_hard, not go2_simple")
    # Episode counts that are not a positive whole number, and PPO asked for an env it is not made for.
    for episodes, shown in (("0", "got 0"), ("abc", "got 'abc'")):
        r = run_repo_script("data_collection/collect.py", "--policy", "weak", "env=go2_simple",
                            f"episodes={episodes}", f"output={work / 'y.h5'}", *COLLECT)
        assert_one_line_error(r, f"episodes must be a whole number of at least 1, {shown}")
    r = run_repo_script("data_collection/train_expert.py", "env=reach_avoid")
    assert_one_line_error(r, "PPO experts are trained for the Go2 envs")
    # A truncated policy file (as a cut-off copy under assets/ would be).
    truncated = work / "truncated.pt"
    truncated.write_bytes((work / "expert.pt").read_bytes()[:3000])
    r = run_repo_script("data_collection/collect.py", "--policy", "expert", "env=go2_hard",
                        f"checkpoint={truncated}", "episodes=2", f"output={work / 'y.h5'}", *COLLECT)
    assert_one_line_error(r, "not a loadable TorchScript policy")
    # An expert checkpoint that does not exist: the message names the command that makes it (the
    # collect script prints this PolicyError as its one line, as above).
    with pytest.raises(PolicyError, match="does not exist; make it with `python data_collection/train_expert.py "
                                          "env=go2_simple`"):
        make_policy("expert", tiny_env("go2_simple"), 0, str(work / "missing.pt"))
    # A policy whose card names another observation layout.
    stale = export_policy(torch.nn.Linear(161, 12), work / "stale.pt",
                          {"env": "go2_hard", "envs": ["go2_hard"], "obs_layout": "Go2NavEnv:161:000000000000"})
    with pytest.raises(PolicyError, match="expects observation layout Go2NavEnv:161:000000000000"):
        make_policy("expert", tiny_env(), 0, str(stale))
    # A go2_hard dataset given to a go2_simple run (same observation size, so only the env attribute
    # tells them apart).
    r = run_repo_script("offline/train.py", "env=go2_simple", f"dataset={work / 'mixed.h5'}",
                        f"hydra.run.dir={work / 'wrong_env'}", *TINY_OVERRIDES)
    assert_one_line_error(r, "collected on env 'go2_hard', not 'go2_simple'")
    with h5py.File(work / "mixed.h5") as f:
        assert f.attrs["env"] == "go2_hard"
