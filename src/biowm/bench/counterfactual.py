"""Counterfactual forecasts: what a model predicts from a logged history under other actions.

A counterfactual query is (subject, origin index, K candidate action sequences). The
history is the subject's log up to and including the origin; it is encoded once and the
belief is rolled out under each candidate. Work is chunked so that test sets of hundreds
of thousands of queries fit in memory.
"""

from __future__ import annotations

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import WorldModel


def histories_until(data: Trajectories, subject: torch.Tensor, origin: torch.Tensor
                    ) -> Trajectories:
    """Each `subject`'s trajectory cut after time index `origin` (later points padded)."""
    cut = data.select(subject)
    if ((origin < 0) | (origin >= cut.lengths)).any():
        raise InvalidInputError("histories_until: an origin lies outside its subject's data")
    later = torch.arange(cut.times.shape[1])[None, :] > origin[:, None]
    cut.times = torch.where(later, torch.nan, cut.times)
    cut.actions = torch.where(later[..., None], 0.0, cut.actions)
    cut.mask = cut.mask & ~later[..., None]
    cut.obs = torch.where(later[..., None], 0.0, cut.obs)
    return cut


@torch.no_grad()
def counterfactual_point_forecasts(
    model: WorldModel, data: Trajectories, subject: torch.Tensor, origin: torch.Tensor,
    actions: torch.Tensor, chunk: int = 4096,
) -> torch.Tensor:
    """Point forecasts `[N, K, H, D]` under `actions [N, K, H, A]` from the histories at
    (subject, origin)."""
    n, k, h, a = actions.shape
    out = []
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        belief = model.encode(histories_until(data, subject[rows], origin[rows]))
        plan = actions[rows].reshape(-1, h, a)
        forecast = model.imagine(belief.repeat(k), plan, n_samples=2)
        out.append(forecast.point().reshape(-1, k, h, forecast.samples.shape[-1]))
    return torch.cat(out)
