"""Exhaustive planning over on/off treatment schedules under session budgets.

When actions are sessions (given or not) and the horizon is short, the whole budgeted
plan set is small enough to score exactly: with at most 2 sessions of each of 2
treatments over 10 days there are (1 + 10 + 45)² = 3,136 schedules. Every candidate of
every subject is imagined in one batched rollout (chunked over subjects) and the best
predicted one is chosen — no sampling error in the search, so any gap to the limit is
the model's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.world_model import Belief, Forecast, WorldModel

MAX_SCHEDULES = 50_000


def budgeted_schedules(steps: int, max_sessions: Sequence[int]) -> torch.Tensor:
    """All 0/1 schedules `[P, steps, channels]` with at most `max_sessions[c]` ones in
    channel c (the all-zero schedule first)."""
    per_channel = []
    for budget in max_sessions:
        if budget < 0:
            raise InvalidInputError(f"session budgets must be >= 0, got {list(max_sessions)}")
        days = [c for k in range(min(budget, steps) + 1)
                for c in itertools.combinations(range(steps), k)]
        per_channel.append(days)
    count = math.prod(len(d) for d in per_channel)
    if count > MAX_SCHEDULES:
        raise InvalidInputError(
            f"{count} schedules for budgets {list(max_sessions)} over {steps} steps; at most "
            f"{MAX_SCHEDULES} are searched exhaustively: lower the budget or the horizon"
        )
    schedules = torch.zeros(count, steps, len(per_channel))
    for p, combo in enumerate(itertools.product(*per_channel)):
        for channel, days in enumerate(combo):
            schedules[p, list(days), channel] = 1.0
    return schedules


@torch.no_grad()
def score_schedules(
    model: WorldModel, belief: Belief, schedules: torch.Tensor,
    objective: Callable[[Forecast], torch.Tensor], allowed: torch.Tensor | None = None,
    chunk_rollouts: int = 200_000,
) -> torch.Tensor:
    """Predicted cost `[B, P]` of every schedule for every subject (+inf where not
    `allowed [B, P]`); `objective` maps a forecast over B·P rollouts to `[B·P]` costs."""
    b, p = len(belief), len(schedules)
    per_chunk = max(1, chunk_rollouts // p)
    costs = []
    for start in range(0, b, per_chunk):
        rows = torch.arange(start, min(b, start + per_chunk))
        sub = Belief({k: v[rows] for k, v in belief.tensors.items()})
        plans = schedules.repeat(len(rows), 1, 1)
        forecast = model.imagine(sub.repeat(p), plans, n_samples=2)
        costs.append(objective(forecast).reshape(len(rows), p))
    cost = torch.cat(costs)
    if allowed is not None:
        cost = torch.where(allowed, cost, torch.inf)
    return cost
