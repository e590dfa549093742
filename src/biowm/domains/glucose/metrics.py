"""Glycaemic outcome metrics with the international consensus definitions.

Time in ranges per Battelino et al., Diabetes Care 2019 (TIR 70–180 mg/dL inclusive; time
below 70 and below 54; time above 180 and above 250, each as % of readings), mean glucose,
coefficient of variation, and the low/high blood glucose indices of Kovatchev et al.
(f(BG) = 1.509·(ln(BG)^1.084 − 5.381), risk r = 10·f², LBGI/HBGI = mean of r over readings
where f < 0 / f > 0, counting 0 elsewhere). All functions take `[B, T]` readings and an
optional `[B, T]` validity mask and return one value per subject.
"""

from __future__ import annotations

import torch

METRIC_NAMES = ("tir", "tbr70", "tbr54", "tar180", "tar250", "mean_mg_dl", "cv", "lbgi", "hbgi")
METRIC_UNITS = {
    "tir": "%", "tbr70": "%", "tbr54": "%", "tar180": "%", "tar250": "%",
    "mean_mg_dl": "mg/dL", "cv": "%", "lbgi": "", "hbgi": "",
}


def risk_function(bg_mg_dl: torch.Tensor) -> torch.Tensor:
    """Kovatchev's symmetrised risk scale f(BG); negative = low, positive = high."""
    return 1.509 * (torch.log(bg_mg_dl.clamp(min=1.0)) ** 1.084 - 5.381)


def risk_index(bg_mg_dl: torch.Tensor) -> torch.Tensor:
    """Pointwise risk r = 10·f(BG)² (the summand of LBGI + HBGI)."""
    return 10.0 * risk_function(bg_mg_dl) ** 2


def glycemic_metrics(
    bg_mg_dl: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Consensus outcome metrics per subject from readings `[B, T]` (mask: True = valid)."""
    bg = bg_mg_dl.to(torch.float64)
    valid = torch.ones_like(bg, dtype=torch.bool) if mask is None else mask.bool()
    w = valid.to(torch.float64)
    n = w.sum(dim=1).clamp(min=1.0)

    def percent(condition: torch.Tensor) -> torch.Tensor:
        return 100.0 * (condition.to(torch.float64) * w).sum(dim=1) / n

    safe = torch.where(valid, bg, torch.full_like(bg, 100.0))
    mean = (safe * w).sum(dim=1) / n
    var = (((safe - mean[:, None]) ** 2) * w).sum(dim=1) / (n - 1.0).clamp(min=1.0)
    f = risk_function(safe)
    r = 10.0 * f**2
    return {
        "tir": percent((bg >= 70.0) & (bg <= 180.0)),
        "tbr70": percent(bg < 70.0),
        "tbr54": percent(bg < 54.0),
        "tar180": percent(bg > 180.0),
        "tar250": percent(bg > 250.0),
        "mean_mg_dl": mean,
        "cv": 100.0 * var.sqrt() / mean,
        "lbgi": (torch.where(f < 0, r, torch.zeros_like(r)) * w).sum(dim=1) / n,
        "hbgi": (torch.where(f > 0, r, torch.zeros_like(r)) * w).sum(dim=1) / n,
    }
