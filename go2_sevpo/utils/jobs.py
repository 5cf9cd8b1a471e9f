"""What long jobs share on shared machines and clusters: one job per output folder (a lock), a graceful
stop on SIGTERM / SIGINT (checkpoint, then exit with PREEMPTED_EXIT so a scheduler can requeue), and
file writes that survive a full disk (one line naming the path; the previous file left intact).

    with folder_lock(run_dir, "run folder"), GracefulStop() as stop:
        for step in ...:
            ...
            if stop.requested:
                save(); raise Preempted(f"{stop.signal_name} at step {step}: ...")
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from go2_sevpo.utils.errors import UserError

# sysexits' EX_TEMPFAIL ("temporary failure; retry"): stopped by a signal after a checkpoint, so
# rerunning the same command (or a scheduler's requeue) continues. Distinct from 0 (done), 1 (a
# bug's traceback) and 2 (bad input).
PREEMPTED_EXIT = 75
LOCK_NAME = ".lock"


class FolderInUse(UserError):
    """Another live process holds the output folder's lock."""


class DiskFull(UserError):
    """A write ran out of space; the previous complete file (if any) is intact."""


class Preempted(Exception):
    """Stopped by SIGTERM / SIGINT after writing a checkpoint; the message says how to resume."""


# ----------------------------------------------------------------------------- folder locks
def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        command = info["command"] if len(info["command"]) <= 80 else info["command"][:77] + "..."
        return f"pid {info['pid']} on {info['host']} (since {info['started']}: {command})"
    except (OSError, ValueError, KeyError):
        return "another process"


@contextmanager
def folder_lock(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold `<folder>/.lock` for the block (see `output_lock`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with output_lock(folder / LOCK_NAME, f"{what} {folder}") as path:
        yield path


@contextmanager
def output_lock(path: str | Path, what: str) -> Iterator[Path]:
    """Hold the lock file `path` for the block: a second job on the same output fails at once, naming
    the holder. The lock is an flock on the file, so the kernel drops it when its process dies however
    it dies: a lock file left by a killed job is taken over, never a reason to refuse."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderInUse(f"{what} is in use by {_holder(path)}; wait for it to finish or stop it, "
                                  "or give this job another output") from None
            raise
        # The holder before us may have removed the file after we opened it: then our lock is on a
        # file nobody else will see, so start again on the current one.
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv)[:300]}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    try:
        yield path
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)  # releases the flock


# ----------------------------------------------------------------------------- graceful stop
class GracefulStop:
    """While active, SIGTERM and SIGINT only set `requested`: the job finishes its current step, writes
    its checkpoint and raises Preempted. A second SIGINT (Ctrl-C twice) stops at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return bool(self.signal_name)

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "GracefulStop":
        try:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not the main thread: signals cannot be caught here, run without
            self._previous = {}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# ----------------------------------------------------------------------------- writes
def disk_full_error(path: str | Path, error: BaseException) -> DiskFull | None:
    """A DiskFull for `error` if it is an out-of-space failure (errno ENOSPC / EDQUOT, or the message of
    a C++ or HDF5 writer that ran out of space), else None."""
    out_of_space = (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or any(
        s in str(error) for s in ("No space left", "Disk quota exceeded", "unexpected pos"))
    if not out_of_space:
        return None
    return DiskFull(f"{path}: disk full while writing it (nothing lost: the previous complete file, if any, is "
                    "intact); free some space and rerun the same command to continue")


def check_free_space(path: str | Path, needed_bytes: int) -> None:
    """Refuse, before any byte is written, a write that cannot fit: some writers (HDF5) crash rather
    than fail cleanly when the disk fills under them."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise DiskFull(f"{path}: not enough free space to write it ({needed_bytes / 1e6:.1f} MB needed, "
                       f"{free / 1e6:.1f} MB free; nothing lost); free some space "
                       "and rerun the same command to continue")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that infer the format still do);
    when the block ends, fsync it and rename it over `path`. Either the old file or the new one exists
    afterwards, never a part; on any error the temp is removed, and a full disk raises DiskFull."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        full = disk_full_error(path, e) if isinstance(e, Exception) else None
        if full is not None:
            raise full from None
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save_figure(fig, path: str | Path, **savefig_kwargs) -> None:
    """matplotlib's savefig, atomically and with DiskFull on a full disk."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)


def code_version(repo: str | Path | None = None) -> str:
    """The commit the code runs from, `<hash>` or `<hash>-dirty` with uncommitted changes to tracked
    files ("unknown" outside a git checkout, e.g. an installed wheel): recorded with every result so a
    table that mixes runs of several sessions or machines says which code produced each row."""
    import subprocess

    repo = Path(repo) if repo else Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")
