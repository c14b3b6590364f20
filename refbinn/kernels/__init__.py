"""Numba bitwise kernels for binary networks; each has a NumPy twin in ``reference``."""
from .bconv import ConvWeights, binary_conv2d, conv_padding, pack_conv_weight
from .bgemm import binary_gemm, binary_gemm_panels, gemm_asm, to_panels
from .gemv import binary_weight_matmul
from .pack import n_words, pack_channels, pack_signs, unpack_signs
from .popcount import popcnt64, popcount
