"""Sample paths of forecast errors: Gaussian marginals, AR(1)-correlated across the horizon.

Independent noise per horizon step gets each step's spread right but makes sampled paths
too jagged, which biases path statistics such as "the minimum over the next two hours"
that chance constraints use. Forecast errors are strongly autocorrelated, so samples use
a standard-normal AR(1) path with the lag-one correlation measured on validation data.
"""

from __future__ import annotations

import torch


def correlated_normal(
    n_samples: int, shape: tuple[int, int, int], rho: torch.Tensor | float,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard-normal paths `[S, B, H, D]` whose lag-one correlation along H is `rho [D]`."""
    b, h, d = shape
    rho_t = torch.as_tensor(rho, dtype=dtype).expand(d)
    innovations = torch.randn((n_samples, b, h, d), generator=generator, dtype=dtype)
    paths = torch.empty_like(innovations)
    paths[:, :, 0] = innovations[:, :, 0]
    scale = torch.sqrt(1.0 - rho_t**2)
    for k in range(1, h):
        paths[:, :, k] = rho_t * paths[:, :, k - 1] + scale * innovations[:, :, k]
    return paths


def lag_one_correlation(standardised: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lag-one correlation along H of residuals `[N, H, D]` (mask True = observed), per channel."""
    both = (mask[:, 1:] & mask[:, :-1]).to(standardised.dtype)
    a, b = standardised[:, 1:] * both, standardised[:, :-1] * both
    n = both.sum(dim=(0, 1)).clamp(min=1.0)
    cov = (a * b).sum(dim=(0, 1)) / n
    var = torch.sqrt((a**2).sum(dim=(0, 1)) / n * (b**2).sum(dim=(0, 1)) / n).clamp(min=1e-12)
    return (cov / var).clamp(-0.999, 0.999)
