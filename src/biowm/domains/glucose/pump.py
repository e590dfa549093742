"""Insulin pump: delivery increments and limits applied to what a controller asks for.

Defaults are those of a tubeless patch pump (Insulet Omnipod: boluses in 0.05 U steps up to
30 U, basal rates in 0.05 U/h steps up to 30 U/h). A bolus is delivered within one minute.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class InsulinPump:
    bolus_increment_u: float = 0.05
    max_bolus_u: float = 30.0
    basal_increment_u_per_h: float = 0.05
    max_basal_u_per_h: float = 30.0

    def bolus_u(self, requested_u: torch.Tensor) -> torch.Tensor:
        steps = torch.round(requested_u.clamp(min=0.0) / self.bolus_increment_u)
        return (steps * self.bolus_increment_u).clamp(max=self.max_bolus_u)

    def basal_u_per_min(self, requested_u_per_min: torch.Tensor) -> torch.Tensor:
        per_hour = requested_u_per_min.clamp(min=0.0) * 60.0
        steps = torch.round(per_hour / self.basal_increment_u_per_h)
        return (steps * self.basal_increment_u_per_h).clamp(max=self.max_basal_u_per_h) / 60.0
