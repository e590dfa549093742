"""What a plan may not do, and what to do instead when the model cannot be trusted.

`SafetySpec` holds hard action bounds, an "amount on board" limit (a decaying sum of
recent and planned doses, e.g. insulin on board), chance constraints on forecast channels
(e.g. P(glucose < 70 mg/dL at any time in the horizon) <= 5 %, estimated from forecast
samples), a penalty on ensemble disagreement, and the validation domain: observation
ranges and a disagreement ceiling outside which the shield falls back to a safe default
policy and records why. Nothing here knows a domain; domains fill in the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.world_model import Forecast


@dataclass(frozen=True)
class ChanceConstraint:
    """P(`channel` crosses `threshold` at any step of the horizon) <= `max_probability`."""

    channel: str
    threshold: float
    below: bool = True
    max_probability: float = 0.05

    def violation_probability(self, forecast: Forecast) -> torch.Tensor:
        """Per forecast row `[B]`: fraction of sample paths that cross the threshold."""
        values = forecast.channel(self.channel)  # [S, B, H]
        crossed = values < self.threshold if self.below else values > self.threshold
        return crossed.any(dim=2).float().mean(dim=0)


@dataclass(frozen=True)
class AmountOnBoard:
    """Decaying sum of an action channel: doses in the last `duration` time units count
    linearly less with age (1 now, 0 after `duration`); the total may not exceed `limit`
    (one number, or one per subject `[B]`)."""

    channel: str
    duration: float
    limit: float | torch.Tensor

    def weights(self, steps: int, step: float) -> torch.Tensor:
        age = step * torch.arange(steps - 1, -1, -1, dtype=torch.float32)
        return (1.0 - age / self.duration).clamp(min=0.0)


@dataclass
class SafetySpec:
    action_low: dict[str, float] = field(default_factory=dict)
    action_high: dict[str, float] = field(default_factory=dict)
    on_board: AmountOnBoard | None = None
    chance_constraints: list[ChanceConstraint] = field(default_factory=list)
    disagreement_weight: float = 0.0
    max_disagreement: float | None = None
    observation_low: dict[str, float] = field(default_factory=dict)
    observation_high: dict[str, float] = field(default_factory=dict)
    constraint_penalty: float = 1e6

    def __post_init__(self) -> None:
        for name, low in self.action_low.items():
            if name in self.action_high and self.action_high[name] < low:
                raise InvalidInputError(f"SafetySpec: action {name!r} low {low} above high")
        for constraint in self.chance_constraints:
            if not 0.0 <= constraint.max_probability <= 1.0:
                raise InvalidInputError(
                    f"chance constraint on {constraint.channel!r}: probability "
                    f"{constraint.max_probability} not in [0, 1]"
                )
