"""Counter-based random numbers: reproducible per subject, whatever the batch.

A subject's random draws are a pure function of (seed, subject key, stream, counter), so a
cohort simulated in shards of any size, or one subject re-simulated alone, gets exactly
the same numbers. This is what makes "one seed seeds everything" hold for batched,
sharded and autoreset simulations alike.
"""

from __future__ import annotations

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def subject_keys(seed: int, n: int, offset: int = 0) -> torch.Tensor:
    """Distinct 63-bit keys for subjects `offset … offset+n-1` of a run seeded by `seed`."""
    base = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    index = np.arange(offset, offset + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        keys = _splitmix64(index * np.uint64(0x632BE59BD9B4E019) ^ base)
    return torch.from_numpy((keys >> np.uint64(1)).astype(np.int64))


def _bits(keys: torch.Tensor, stream: int, counter: torch.Tensor | np.ndarray | int) -> np.ndarray:
    k = keys.detach().cpu().numpy().astype(np.uint64)
    c = np.asarray(counter.cpu().numpy() if isinstance(counter, torch.Tensor) else counter)
    c = c.astype(np.uint64)
    k = k.reshape(k.shape + (1,) * max(c.ndim - k.ndim, 0))
    with np.errstate(over="ignore"):
        x = _splitmix64(k ^ _splitmix64(np.uint64(stream) * _GOLDEN + c))
    return x


def uniform(
    keys: torch.Tensor, stream: int, counter: torch.Tensor | np.ndarray | int = 0
) -> torch.Tensor:
    """U(0,1) draws (open interval), float64.

    `keys [B]`; `counter` a scalar, `[B]` (one counter per subject) or `[B or 1, K]`
    (K draws per subject), giving `[B]` or `[B, K]` draws.
    """
    bits = _bits(keys, stream, counter) >> np.uint64(11)
    return torch.from_numpy((bits.astype(np.float64) + 0.5) / float(1 << 53))


def normal(
    keys: torch.Tensor, stream: int, counter: torch.Tensor | np.ndarray | int = 0
) -> torch.Tensor:
    """Standard normal draws (Box-Muller on two independent counter-based uniforms)."""
    c = np.asarray(counter.cpu().numpy() if isinstance(counter, torch.Tensor) else counter)
    u1 = uniform(keys, 2 * stream, c)
    u2 = uniform(keys, 2 * stream + 1, c)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)
