"""Random daily meal scenarios, drawn per patient and day, reproducible per subject.

Six candidate eating occasions a day (breakfast, snack, lunch, snack, dinner, snack) with
the occurrence probabilities, time windows and carbohydrate sizes of the UVA/Padova
academic simulator's random scenario (as published in simglucose): each occurs with its
probability, at a truncated-normal time of day, with a normal carbohydrate amount.
A scenario is a sparse list of meal events per subject: `minute [B, M]` (inf = no meal)
and `carbs_g [B, M]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from biowm.core import random as crandom

_OCCUR_STREAM, _TIME_STREAM, _SIZE_STREAM = 21, 22, 23


@dataclass(frozen=True)
class MealSchedule:
    """Eating occasions per day; times in hours after midnight, sizes in grams."""

    probability: tuple[float, ...] = (0.95, 0.3, 0.95, 0.3, 0.95, 0.3)
    earliest_h: tuple[float, ...] = (5, 9, 10, 14, 16, 20)
    latest_h: tuple[float, ...] = (9, 10, 14, 16, 20, 23)
    mean_h: tuple[float, ...] = (7, 9.5, 12, 15, 18, 21.5)
    sd_min: tuple[float, ...] = (60, 30, 60, 30, 60, 30)
    mean_carbs_g: tuple[float, ...] = (45, 10, 70, 10, 80, 10)
    sd_carbs_g: tuple[float, ...] = (10, 5, 10, 5, 10, 5)

    def sample(self, keys: torch.Tensor, days: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Meal events for `days` days: (`minute [B, 6·days]`, `carbs_g [B, 6·days]`)."""
        n_slots = len(self.probability)
        counter = torch.arange(days * n_slots)
        day = (counter // n_slots).double()
        slot = counter % n_slots

        def per_slot(values: tuple[float, ...]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.float64)[slot]

        mean = per_slot(self.mean_h) * 60.0
        sd = per_slot(self.sd_min)
        lo = (per_slot(self.earliest_h) * 60.0 - mean) / sd
        hi = (per_slot(self.latest_h) * 60.0 - mean) / sd
        normal = torch.distributions.Normal(0.0, 1.0)
        grid = counter[None, :]
        u = crandom.uniform(keys, _TIME_STREAM, grid)
        cdf_lo, cdf_hi = normal.cdf(lo), normal.cdf(hi)
        z = torch.special.ndtri(cdf_lo + u * (cdf_hi - cdf_lo))
        minute_of_day = torch.round(mean + sd * z)
        occurs = crandom.uniform(keys, _OCCUR_STREAM, grid) < per_slot(self.probability)
        size_z = crandom.normal(keys, _SIZE_STREAM, grid)
        carbs = torch.round(
            (per_slot(self.mean_carbs_g) + per_slot(self.sd_carbs_g) * size_z).clamp(min=0.0)
        )
        occurs = occurs & (carbs > 0)
        minute = torch.where(occurs, day * 1440.0 + minute_of_day, torch.inf)
        return minute, torch.where(occurs, carbs, torch.zeros_like(carbs))


def no_meals(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    empty = torch.empty(batch, 0, dtype=torch.float64)
    return empty, empty.clone()
