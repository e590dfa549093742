"""Probabilistic forecast scores: RMSE, CRPS and interval coverage per forecast horizon.

Every function takes a `Forecast` (samples `[S, B, H, D]`), the truth `[B, H, D]` and a
validity mask `[B, H, D]` (True = observed; default: wherever the truth is finite), and
averages over the valid windows, so each horizon step and channel gets one number (`[H, D]`,
NaN where nothing is valid). `score_forecast` condenses them into a flat dict of plain floats
for benchmark tables. No domain knowledge lives here.

CRPS uses the energy form E|X − y| − ½·E|X − X'| over the S samples, i.e. the exact CRPS of
the empirical distribution of the samples (a point forecast scores its absolute error);
E|X − X'| comes from the sorted samples in O(S log S) instead of O(S²) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.world_model import Forecast

DEFAULT_LEVELS = (0.5, 0.9)


def _checked(
    forecast: Forecast, truth: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples and truth as float64, truth with invalid points zeroed, and the boolean mask."""
    shape = tuple(forecast.samples.shape[1:])
    if tuple(truth.shape) != shape:
        raise InvalidInputError(
            f"truth must be [B, H, D] = {shape} like the forecast samples, "
            f"got {tuple(truth.shape)}"
        )
    truth = truth.to(torch.float64)
    valid = torch.isfinite(truth)
    if mask is not None:
        if tuple(mask.shape) != shape:
            raise InvalidInputError(f"mask must be {shape}, got {tuple(mask.shape)}")
        valid = valid & mask.bool()
    return forecast.samples.to(torch.float64), torch.where(valid, truth, 0.0), valid


def _masked_mean(
    values: torch.Tensor, valid: torch.Tensor, dim: int | tuple[int, ...]
) -> torch.Tensor:
    """Mean of `values` over `dim` where `valid`; NaN where nothing is valid."""
    total = torch.where(valid, values, 0.0).sum(dim=dim)
    count = valid.sum(dim=dim)
    return torch.where(count > 0, total / count.clamp(min=1), torch.nan)


def _sorted_quantile(ordered: torch.Tensor, q: float) -> torch.Tensor:
    """Quantile `q` along dim 0 of sorted samples, linear interpolation (torch's default).

    Avoids `torch.quantile`'s input-size limit and re-sorting for every level.
    """
    position = q * (ordered.shape[0] - 1)
    below = int(position)
    above = min(below + 1, ordered.shape[0] - 1)
    weight = position - below
    return ordered[below] + weight * (ordered[above] - ordered[below])


def crps_ensemble(samples: torch.Tensor, truth: torch.Tensor, fair: bool = False) -> torch.Tensor:
    """Pointwise sample CRPS `[B, H, D]` of `samples [S, B, H, D]` against `truth [B, H, D]`.

    ½·E|X − X'| = Σᵢ (2i − S − 1)·x₍ᵢ₎ / S² over the sorted samples x₍₁₎ ≤ … ≤ x₍ₛ₎ (all S²
    pairs, the CRPS of the empirical distribution); `fair=True` divides by S(S − 1) instead,
    the unbiased estimate of the CRPS of the distribution the samples come from.
    """
    return _crps_sorted(torch.sort(samples, dim=0).values, truth, fair)


def _crps_sorted(ordered: torch.Tensor, truth: torch.Tensor, fair: bool) -> torch.Tensor:
    s = ordered.shape[0]
    absolute = (ordered - truth.unsqueeze(0)).abs().mean(dim=0)
    if s == 1:
        return absolute
    shape = (s,) + (1,) * (ordered.dim() - 1)
    weight = (2.0 * torch.arange(1, s + 1, dtype=ordered.dtype) - s - 1.0).reshape(shape)
    spread = (weight * ordered).sum(dim=0) / (s * (s - 1) if fair else s * s)
    return absolute - spread


def rmse_by_horizon(
    forecast: Forecast, truth: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Root mean squared error of the forecast mean over valid windows, `[H, D]`."""
    samples, truth, valid = _checked(forecast, truth, mask)
    squared = (samples.mean(dim=0) - truth) ** 2
    return _masked_mean(squared, valid, 0).sqrt()


def crps_by_horizon(
    forecast: Forecast, truth: torch.Tensor, mask: torch.Tensor | None = None,
    fair: bool = False,
) -> torch.Tensor:
    """Mean sample CRPS (see `crps_ensemble`) over valid windows, `[H, D]`."""
    samples, truth, valid = _checked(forecast, truth, mask)
    return _masked_mean(crps_ensemble(samples, truth, fair), valid, 0)


def coverage_by_horizon(
    forecast: Forecast, truth: torch.Tensor, mask: torch.Tensor | None = None,
    level: float = 0.9,
) -> torch.Tensor:
    """Fraction of valid windows whose truth lies in the central `level` interval, `[H, D]`."""
    samples, truth, valid = _checked(forecast, truth, mask)
    return _masked_mean(_inside(torch.sort(samples, dim=0).values, truth, level), valid, 0)


def _inside(ordered: torch.Tensor, truth: torch.Tensor, level: float) -> torch.Tensor:
    if not 0.0 < level < 1.0:
        raise InvalidInputError(f"interval level must be in (0, 1), got {level}")
    tail = (1.0 - level) / 2.0
    low, high = _sorted_quantile(ordered, tail), _sorted_quantile(ordered, 1.0 - tail)
    return ((truth >= low) & (truth <= high)).to(torch.float64)


def _time_label(value: float) -> str:
    return str(int(round(value))) if abs(value - round(value)) < 1e-9 else f"{value:g}"


def score_forecast(
    forecast: Forecast,
    truth: torch.Tensor,
    mask: torch.Tensor | None,
    horizons_steps: Sequence[int],
    levels: Sequence[float] = DEFAULT_LEVELS,
) -> dict[str, float]:
    """Flat scores for a benchmark table, as plain floats.

    Per requested horizon step h (1 = the first forecast step), labelled by its time after
    the origin (`forecast.times`, e.g. step 12 of a 5-min grid is `@60`): `rmse@60`,
    `crps@60` and `coverage50@60`, `coverage90@60` (one per interval level); and the same
    without `@` over all horizon steps pooled. With several channels each key gets the
    channel name as a suffix, e.g. `rmse@60:cgm_mg_dl`.
    """
    samples, truth_f, valid = _checked(forecast, truth, mask)
    h = samples.shape[2]
    for step in horizons_steps:
        if not 1 <= step <= h:
            raise InvalidInputError(f"horizon step {step} is outside the forecast's 1..{h}")
    times = forecast.times.to(torch.float64)
    if times.shape[0] > 1 and not torch.allclose(times, times[:1].expand_as(times)):
        raise InvalidInputError(
            "score_forecast labels horizons by time, but forecast.times differ across windows"
        )
    ordered = torch.sort(samples, dim=0).values
    pointwise = {
        "squared": (samples.mean(dim=0) - truth_f) ** 2,
        "crps": _crps_sorted(ordered, truth_f, fair=False),
        **{f"coverage{round(100 * lv)}": _inside(ordered, truth_f, lv) for lv in levels},
    }
    per_h = {name: _masked_mean(v, valid, 0) for name, v in pointwise.items()}  # [H, D]
    pooled = {name: _masked_mean(v, valid, (0, 1)) for name, v in pointwise.items()}  # [D]
    names = forecast.space.names
    scores: dict[str, float] = {}
    for d, channel in enumerate(names):
        suffix = f":{channel}" if len(names) > 1 else ""
        for name in pointwise:
            key = "rmse" if name == "squared" else name
            pooled_value = pooled[name][d].sqrt() if name == "squared" else pooled[name][d]
            scores[f"{key}{suffix}"] = float(pooled_value)
            for step in horizons_steps:
                value = per_h[name][step - 1, d]
                value = value.sqrt() if name == "squared" else value
                label = _time_label(float(times[0, step - 1]))
                scores[f"{key}@{label}{suffix}"] = float(value)
    return scores
