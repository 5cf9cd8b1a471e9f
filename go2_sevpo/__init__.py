"""go2_sevpo: offline safe RL (SEVPO and baselines) for legged robots."""

# Before anything imports torch: on AMD CPUs with AVX-512, MKL's fast matmul kernels (about 2x;
# go2_sevpo/utils/mkl_vendor.py). Scripts therefore import go2_sevpo before torch.
from go2_sevpo.utils import mkl_vendor as _mkl_vendor

_mkl_vendor.apply()

__version__ = "0.1.0"
