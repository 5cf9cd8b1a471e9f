"""MKL's vendor shim (go2_sevpo/utils/mkl_vendor.py): applied where it helps, off on request, the same
kernels in the processes a run starts, and the same products as MKL's default kernels to float rounding."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from go2_sevpo.utils import mkl_vendor

_FLAGS, _VENDOR = mkl_vendor._cpu_flags_and_vendor()
AMD_AVX512 = _VENDOR == "AuthenticAMD" and "avx512f" in _FLAGS
needs_amd = pytest.mark.skipif(not AMD_AVX512, reason="the shim only applies on AMD CPUs with AVX-512")

PROBE = """
import json, sys
{first}
import numpy as np
from go2_sevpo.utils.mkl_vendor import kernel_status, mkl_vendor_queries
g = torch.Generator().manual_seed(0)
a, b = torch.randn(300, 257, generator=g), torch.randn(257, 130, generator=g)
w = torch.randn(4, 257, 64, generator=g)
out = {{"status": kernel_status(), "queries": mkl_vendor_queries(),
       "mm": (a @ b).tolist(), "bmm": torch.bmm(a[:256].reshape(4, 64, 257), w).tolist()}}
print(json.dumps(out))
"""


def run_fresh(code: str, **env_changes: str) -> dict:
    """Run `code` in a fresh process (not this one's child: no inherited LD_PRELOAD); its last JSON line."""
    env = {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, **env_changes}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def probe(first: str = "import go2_sevpo\nimport torch", **env_changes: str) -> dict:
    return run_fresh(PROBE.format(first=first), **env_changes)


@needs_amd
def test_applied_off_and_too_late_and_same_products():
    on = probe()
    assert on["status"].startswith("MKL vendor shim applied") and on["queries"] > 0
    off = probe(GO2_SEVPO_MKL_VENDOR_SHIM="0")
    assert off["status"] == "MKL vendor shim off (GO2_SEVPO_MKL_VENDOR_SHIM=0)" and off["queries"] == 0
    late = probe(first="import torch\nimport go2_sevpo")
    assert "torch was imported before go2_sevpo" in late["status"]
    # Other kernels, same products: float32 rounding of sums of 257 terms, nothing more.
    for key in ("mm", "bmm"):
        fast, default = np.array(on[key]), np.array(off[key])
        assert np.allclose(fast, default, rtol=1e-5, atol=1e-4), key
        assert not np.array_equal(fast, default), key  # and other kernels did run
        assert np.allclose(late[key], default, rtol=0, atol=0), key  # too late = MKL's default kernels


@needs_amd
def test_processes_started_by_a_run_use_the_same_kernels():
    """A child inherits the shim through LD_PRELOAD, even one that imports torch first (a sweep worker)."""
    parent = f"""
import go2_sevpo, os, subprocess, sys
child = {PROBE.format(first="import torch")!r}
print(subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout)
"""
    child = run_fresh(parent)
    assert child["queries"] > 0 and child["status"].startswith("MKL vendor shim applied")


@needs_amd
def test_without_a_compiler_nothing_but_speed_changes(tmp_path):
    """No cached library and no compiler: one status line saying why, the default kernels, no error."""
    out = probe(XDG_CACHE_HOME=str(tmp_path), CC=str(tmp_path / "no-such-cc"))
    assert out["status"].startswith("MKL vendor shim not applied (") and out["queries"] == 0
    assert not list(tmp_path.rglob("*.so"))


def test_not_applied_off_amd(monkeypatch):
    monkeypatch.setattr(mkl_vendor, "_cpu_flags_and_vendor", lambda: ({"avx512f"}, "GenuineIntel"))
    assert mkl_vendor._applicable() == "not needed (GenuineIntel, with AVX-512)"
    monkeypatch.setattr(mkl_vendor, "_cpu_flags_and_vendor", lambda: ({"avx2"}, "AuthenticAMD"))
    assert mkl_vendor._applicable() == "not needed (AuthenticAMD, without AVX-512)"
    monkeypatch.setenv(mkl_vendor.ENV_SWITCH, "0")
    assert mkl_vendor._applicable() == f"off ({mkl_vendor.ENV_SWITCH}=0)"
