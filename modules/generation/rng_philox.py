"""Philox 4x32-10 counter-based RNG emulating torch.randn on CUDA, on any device ("NV" noise source).

Algorithm: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), Philox4x32 with
10 rounds, followed by curand's Box-Muller transform (only the sine branch is kept).

Layout A1111 uses (and therefore what an "NV" seed must reproduce):
- every element i of a request gets its own counter (offset, 0, i, 0) and key = the 64-bit seed split
  into (low, high) 32-bit words;
- each `randn` call uses the next offset (0 for the first call, 1 for the second, ...);
- outputs 0 and 1 of the block feed Box-Muller; outputs 2 and 3 are discarded.
Box-Muller is evaluated in float64 with float32 constants, then rounded to float32, which is
what the published emulation does (its numpy promotion of uint32 x float32 gives float64).

For a first call this matches torch.manual_seed(seed); torch.randn(shape, device="cuda").
Later calls follow A1111's emulation (offset + 1), not CUDA's own offset arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch

_MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
_WEYL = (0x9E3779B9, 0xBB67AE85)
_ROUNDS = 10
_MASK32 = np.uint64(0xFFFFFFFF)

# curand's constants, as float32 values (2^-32 and 2^-32 * 2*pi)
_TWO_POW32_INV = float(np.float32(2.3283064e-10))
_TWO_POW32_INV_2PI = float(np.float32(2.3283064e-10 * 6.2831855))
_HALF_TWO_POW32_INV = float(np.float32(_TWO_POW32_INV) / np.float32(2))
_HALF_TWO_POW32_INV_2PI = float(np.float32(_TWO_POW32_INV_2PI) / np.float32(2))


def _mulhilo(a: np.ndarray, multiplier: int) -> tuple[np.ndarray, np.ndarray]:
    """High and low 32-bit words of a 32x32-bit product (exact in uint64)."""
    product = a.astype(np.uint64) * np.uint64(multiplier)
    return product >> np.uint64(32), product & _MASK32


def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = _ROUNDS) -> np.ndarray:
    """Philox 4x32 block function on a (4, N) uint32 counter and a (2, N) uint32 key; returns (4, N) uint32."""
    if counter.shape[0] != 4 or key.shape[0] != 2:
        raise ValueError(f"philox4x32 needs a (4, N) counter and a (2, N) key, got {counter.shape} and {key.shape}")
    c = [counter[i].astype(np.uint64) for i in range(4)]
    k0 = key[0].astype(np.uint64)
    k1 = key[1].astype(np.uint64)
    for round_index in range(rounds):
        if round_index > 0:
            k0 = (k0 + np.uint64(_WEYL[0])) & _MASK32
            k1 = (k1 + np.uint64(_WEYL[1])) & _MASK32
        hi0, lo0 = _mulhilo(c[0], _MULTIPLIERS[0])
        hi1, lo1 = _mulhilo(c[2], _MULTIPLIERS[1])
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return np.stack(c).astype(np.uint32)


def box_muller_sin(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """curand's Box-Muller on two uint32 streams, sine branch only, as float32."""
    u = first.astype(np.float64) * _TWO_POW32_INV + _HALF_TWO_POW32_INV
    v = second.astype(np.float64) * _TWO_POW32_INV_2PI + _HALF_TWO_POW32_INV_2PI
    radius = np.sqrt(-2.0 * np.log(u))
    return (radius * np.sin(v)).astype(np.float32)


class PhiloxGenerator:
    """Stateful generator: each `randn` call consumes one offset, like A1111's NV generator."""

    def __init__(self, seed: int) -> None:
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"Philox seed must be in [0, 2**64), got {seed}")
        self.seed = int(seed)
        self.offset = 0

    def randn(self, shape: tuple[int, ...] | list[int] | torch.Size) -> torch.Tensor:
        """Standard normal float32 CPU tensor of `shape`."""
        dims = tuple(int(d) for d in shape)
        if any(d < 0 for d in dims):
            raise ValueError(f"negative dimension in shape {dims}")
        count = int(np.prod(dims, dtype=np.int64)) if dims else 1
        if count >= 2**32:
            raise ValueError(f"Philox emulation supports fewer than 2**32 values per call, got {count}")
        counter = np.zeros((4, count), dtype=np.uint32)
        counter[0] = np.uint32(self.offset & 0xFFFFFFFF)
        counter[2] = np.arange(count, dtype=np.uint32)
        key = np.empty((2, count), dtype=np.uint32)
        key[0] = np.uint32(self.seed & 0xFFFFFFFF)
        key[1] = np.uint32(self.seed >> 32)
        self.offset += 1
        block = philox4x32(counter, key)
        values = box_muller_sin(block[0], block[1])
        return torch.from_numpy(values.reshape(dims))
