"""MKL's AVX-512 matrix kernels on AMD CPUs.

PyTorch's CPU wheels route float32 matmuls (`addmm`, `mm`, `bmm`, `baddbmm`: most of every offline
training step here) to Intel MKL, which picks its kernels by CPU *vendor* before it looks at the
CPU's features: on an AMD CPU with AVX-512 (Zen 4, Zen 5) it runs its AVX2 kernels at half the
throughput. Measured on the project's 2-core AMD EPYC (Zen 5), one thread, 256 x 256 x 256 SGEMM:
97-105 GFLOP/s by default, 218-232 GFLOP/s once MKL takes its Intel path (numpy's OpenBLAS and
oneDNN reach 195-228 on the same shapes). docs/TRAINING_SPEED.md has the steps/s per algorithm.

MKL asks one exported function, `mkl_serv_intel_cpu_true`, whether it runs on an Intel CPU. A
two-line shared library that defines it to return 1, loaded into the global symbol scope *before*
torch (so the dynamic linker binds libtorch's call to it), makes MKL dispatch on the CPU's features
as it does on Intel. MKL's own environment switches (`MKL_ENABLE_INSTRUCTIONS`, `MKL_CBWR`,
`MKL_DEBUG_CPU_TYPE`) do not change the dispatch on this MKL (2024.2; measured). The library is
compiled once with the system C compiler into `~/.cache/go2_sevpo/` and also put in `LD_PRELOAD`
for the processes this one starts (sweep workers, collection jobs), so they compute with the same
kernels: a resumed run equals an uninterrupted one only if both use the same kernels.

It is applied when `go2_sevpo` is imported, only where it matters (Linux x86-64, an AMD CPU with
AVX-512F, torch not yet imported) and can be turned off with `GO2_SEVPO_MKL_VENDOR_SHIM=0`. Without
a C compiler, or when torch was imported first, nothing changes except speed. `kernel_status()`
says what happened; the trainer logs it. The two paths give the same results to float rounding,
not bit for bit, so a seed reproduces a result only on the same path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV_SWITCH = "GO2_SEVPO_MKL_VENDOR_SHIM"
_SOURCE = """\
/* go2_sevpo: MKL asks this whether the CPU is Intel's; say yes, so it dispatches on CPU features. */
static int go2_sevpo_queries;
int mkl_serv_intel_cpu_true(void) { ++go2_sevpo_queries; return 1; }
int go2_sevpo_mkl_vendor_queries(void) { return go2_sevpo_queries; }
"""
# The source's own version: a changed source gets a new file name, never an old cached library.
_LIBRARY_NAME = f"libgo2_sevpo_mkl_vendor_{hashlib.sha256(_SOURCE.encode()).hexdigest()[:12]}.so"

_shim: ctypes.CDLL | None = None
_reason = "not applied yet"


def _cpu_flags_and_vendor() -> tuple[set[str], str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set(), ""
    flags: set[str] = set()
    vendor = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return flags, vendor


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "go2_sevpo"


def _build(target: Path) -> None:
    """Compile the shim into `target` atomically (concurrent processes may build it at once)."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise OSError("no C compiler (cc, gcc or $CC) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source = Path(tmp) / "shim.c"
        source.write_text(_SOURCE)
        built = Path(tmp) / target.name
        subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(built), str(source)],
                       check=True, capture_output=True, timeout=60)
        os.replace(built, target)


def _applicable() -> str | None:
    """Why the shim is not wanted here, or None where it is."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"off ({ENV_SWITCH}=0)"
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return "not needed (not Linux x86-64)"
    flags, vendor = _cpu_flags_and_vendor()
    if vendor != "AuthenticAMD" or "avx512f" not in flags:
        return f"not needed ({vendor or 'unknown vendor'}, {'with' if 'avx512f' in flags else 'without'} AVX-512)"
    return None


def apply() -> None:
    """Load the shim before torch where it helps; idempotent; never raises."""
    global _shim, _reason
    if _shim is not None:
        return
    why_not = _applicable()
    if why_not is not None:
        _reason = why_not
        return
    path = _cache_dir() / _LIBRARY_NAME
    preload = os.environ.get("LD_PRELOAD", "").split()
    # A process started by one that applied it has it from exec on (LD_PRELOAD), whatever it imported first.
    if "torch" in sys.modules and str(path) not in preload:
        _reason = "not applied (torch was imported before go2_sevpo)"
        return
    try:
        if not path.exists():
            _build(path)
        _shim = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except (OSError, subprocess.SubprocessError) as err:
        _reason = f"not applied ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        return
    if str(path) not in preload:
        os.environ["LD_PRELOAD"] = " ".join([*preload, str(path)])
    _reason = "applied"


def mkl_vendor_queries() -> int:
    """How often MKL has asked the shim for the vendor (0 where the shim is not loaded)."""
    return _shim.go2_sevpo_mkl_vendor_queries() if _shim is not None else 0


def kernel_status() -> str:
    """One line for logs: which MKL kernels this process's matmuls run on."""
    if _shim is None:
        return f"MKL vendor shim {_reason}"
    import torch

    a = torch.ones(8, 8)
    _ = a @ a  # MKL asks for the vendor on its first call
    if mkl_vendor_queries() == 0:
        return "MKL vendor shim loaded but not consulted by this torch build"
    return "MKL vendor shim applied: MKL dispatches on CPU features (AVX-512 on this AMD CPU)"
