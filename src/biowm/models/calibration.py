"""Post-hoc calibration of Gaussian-like forecasts on validation data.

A network's (or an ensemble's) predicted spread is rarely calibrated out of the box. For
each horizon step and channel we find the factor by which the predicted standard
deviation must be scaled so that the central 90 % interval covers 90 % of validation
truth, and the lag-one correlation of the standardised errors used to sample coherent
paths (see `noise.py`).
"""

from __future__ import annotations

import torch

from biowm.models.noise import lag_one_correlation

Z_95 = 1.6448536269514722  # standard-normal 0.95 quantile: the 90 % central interval


def spread_scale(
    mean: torch.Tensor, sd: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor,
    level: float = 0.9,
) -> torch.Tensor:
    """Per-(horizon, channel) factor `[H, D]` making the `level` interval cover `level`."""
    z = torch.where(mask, ((truth - mean) / sd.clamp(min=1e-6)).abs(), torch.nan)
    quantile = torch.nanquantile(z.double(), level, dim=0).float()
    normal_quantile = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + level / 2))
    scale = quantile / normal_quantile
    return torch.nan_to_num(scale, nan=1.0).clamp(min=0.05, max=20.0)


def error_correlation(
    mean: torch.Tensor, sd: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Lag-one correlation `[D]` of standardised errors along the horizon."""
    z = torch.where(mask, (truth - mean) / sd.clamp(min=1e-6), torch.zeros_like(mean))
    return lag_one_correlation(z, mask)
