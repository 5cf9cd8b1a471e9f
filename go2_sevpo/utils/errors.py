"""Errors a user can cause (bad input, bad paths, bad options). Scripts catch these at the top level
and print their one-line message, exiting with status 2; anything else is a bug and keeps its
traceback."""

from __future__ import annotations

from go2_sevpo.data.format import DatasetError


class UserError(ValueError):
    """Base class: the message is one line that says what is wrong and, where useful, what to do.
    (A ValueError, like `DatasetError`, so `go2_sevpo.cli.one_line_errors` reports it in one line.)"""


class ConfigError(UserError):
    """An unknown algorithm, env or option, or options that contradict each other."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, corrupt or from an incompatible run."""


class CacheError(UserError):
    """A stage-1 cache that belongs to another dataset or another stage-1 config."""


# What the command-line scripts turn into one line + exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (UserError, DatasetError)
