"""Persistence: tomorrow looks like now. The floor any world model must clear.

The forecast of every channel, at every future step, is its last observed value in the
history (the training mean for a channel not observed in it). Actions are validated but
ignored. The spread is the validation error of that forecast per horizon step and
channel; samples add AR(1)-correlated Gaussian noise (see `direct.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from biowm.models.direct import DirectForecaster
from biowm.models.registry import register_model
from biowm.models.windows import Windows


@register_model("persistence")
class Persistence(DirectForecaster):
    """Last observed value carried forward, with empirical per-horizon uncertainty."""

    title = "persistence (last observation carried forward)"

    def _fit_point(
        self, train: Windows, val: Windows, **options: Any
    ) -> tuple[list[dict[str, float]], str]:
        return [], "nothing to train: persistence has no parameters; spread measured on val"

    def _point(self, belief: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        last = belief["last"].double()
        b, h, _ = actions.shape
        return last[:, None, :].expand(b, h, last.shape[-1])

    def _limitations(self) -> list[str]:
        return [
            "Ignores actions and static covariates: it cannot say what an intervention does.",
            *super()._limitations(),
        ]

