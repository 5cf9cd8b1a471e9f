"""What every runnable script shares: Hydra setup and one-line errors for bad input."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from go2_sevpo.config import CONFIG_DIR, hydra_argv, register_configs

# Errors that mean "bad input": printed as one line with exit status 2, never a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError, RuntimeError)


def one_line_errors(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from go2_sevpo.utils.jobs import PREEMPTED_EXIT, Preempted

        try:
            return fn(*args, **kwargs)
        except Preempted as e:  # a graceful stop after a checkpoint: a scheduler may requeue on this status
            print(f"stopped: {e}", file=sys.stderr)
            sys.exit(PREEMPTED_EXIT)
        except USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            line = str(msg).splitlines()[0] if str(msg) else type(e).__name__
            print(f"error: {line}", file=sys.stderr)
            if in_multirun():  # an exit would stop the sweep's other runs too; Hydra reports this one at its end
                raise JobFailed(f"error: {line}") from None
            sys.exit(2)

    return wrapper


def _compact_hydra_exception() -> type[Exception]:
    from hydra.errors import CompactHydraException

    return CompactHydraException


class JobFailed(_compact_hydra_exception()):
    """One run of a multirun stopped on bad input. Hydra lets the sweep's other runs finish, then names
    the run's overrides and prints this (a compact exception: its message, no traceback) with exit 1."""


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def hydra_group_options(group: str) -> set[str]:
    """The options Hydra and its installed plugins register for one of Hydra's own groups
    (`hydra/launcher`: basic, joblib, submitit_local, ...), beside those in configs/<group>/."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    Plugins.instance()  # imports the plugins, which register their configs
    try:
        return {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)}
    except OSError:  # ConfigStore has no such group
        return set()


def check_group_choices(argv: list[str], allowed: dict[str, tuple[tuple[str, ...], str]] | None = None) -> None:
    """`env=nope` would make Hydra print a screenful (and list internal *_schema nodes): check
    every `group=option` against configs/<group>/*.yaml first and fail in one line. `allowed` narrows a
    group for a script made for some of its options only (PPO experts: the Go2 envs): any other option,
    in a sweep too, fails in one line that says why, before composing fails on some key it lacks."""
    from pathlib import Path

    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        name = key.lstrip("+~")
        group = Path(CONFIG_DIR) / name
        if not sep or "." in key:
            continue
        if group.is_dir() and "," not in value:
            options = sorted({p.stem for p in group.glob("*.yaml")}
                             | (hydra_group_options(name) if name.startswith("hydra/") else set()))
            if value not in options:
                print(f"error: unknown {name} '{value}'; choose one of {options}", file=sys.stderr)
                sys.exit(2)
        if name in (allowed or {}) and any(v not in allowed[name][0] for v in value.split(",")):
            options, why = allowed[name]
            print(f"error: {key}={value} is not supported here: {why} (choose one of {list(options)})", file=sys.stderr)
            sys.exit(2)


def check_overrides(config_name: str, argv: list[str]) -> None:
    """A misspelt key (`stepz=3`) or a value of the wrong type would make Hydra print a multi-line
    report: compose the config once with the command's overrides (Hydra's own settings left out) and
    turn a failure into one line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if "-m" in argv or "--multirun" in argv:  # sweep values (a,b / range()) are Hydra's to expand
        return
    overrides = [a for a in argv[1:] if not a.startswith(("hydra.", "hydra/", "-", "+hydra", "~hydra"))]
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        text = str(e) + "\n" + (str(e.__cause__) if e.__cause__ is not None else "")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = next((line for line in lines[1:] if not line.startswith(("To append", "full_key", "object_type",
                                                                          "reference_type"))), "")
        print(f"error: {lines[0] if lines else type(e).__name__}" + (f" ({detail})" if detail else ""),
              file=sys.stderr)
        sys.exit(2)


def hydra_entry(config_name: str, flag_aliases: tuple[str, ...] = (),
                allowed: dict[str, tuple[tuple[str, ...], str]] | None = None):
    """Decorator for a script's main: registers schemas, accepts `--flag value`, catches bad input.
    `allowed` maps a config group to the options the script supports and why (others fail in one line)."""
    import hydra

    def decorate(fn: Callable) -> Callable:
        def main() -> None:
            hydra_argv(flag_aliases)
            check_group_choices(sys.argv, allowed)
            register_configs()
            check_overrides(config_name, sys.argv)
            hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")(one_line_errors(fn))()

        return main

    return decorate
