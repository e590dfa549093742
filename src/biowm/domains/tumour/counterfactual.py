"""Counterfactual test sets of the CRN / Causal Transformer protocol, from a `TumourCohort`.

- One step: at every day t of every patient (while a next day exists), the volume on day
  t+1 under each of the 4 treatment options (none, chemo, radio, both) given on day t,
  with the factual noise e(t+1); the factual option keeps its logged outcome.
- Sliding treatment (projection horizon 5): from each day t, after the factual treatment
  on day t, 10 five-day sequences — one chemotherapy session on day t+1+k, or one
  radiotherapy fraction on day t+1+k (k = 0…4), nothing else — and the volumes on days
  t+2 … t+6 (τ = 2 … 6 steps ahead of the history ending on day t), with the factual
  noise. Origins where any of the 10 projections goes negative (the Gompertz bracket below
  −1; the published generator drops such rows as NaN) are dropped whole (`dropped` counts
  origins; about 0.1 % at γ = 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from biowm.domains.tumour.cohort import TumourCohort
from biowm.domains.tumour.model import chemo_concentration, next_volume, project

ONE_STEP_OPTIONS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
                                dtype=torch.float64)  # (chemo, radio)


def sliding_sequences(horizon: int = 5) -> torch.Tensor:
    """`[2·horizon, horizon, 2]`: one chemo session at step k, then one radio fraction at k."""
    eye = torch.eye(horizon, dtype=torch.float64)
    zero = torch.zeros_like(eye)
    return torch.cat([torch.stack([eye, zero], 2), torch.stack([zero, eye], 2)])


@dataclass
class CounterfactualSet:
    """Origins (patient row, day t), the action sequences from day t, and true outcomes.

    `actions [N, K, H, 2]` are the K candidate sequences starting on day t (the first is
    day t's treatment); `outcomes [N, K, H]` the true volumes on days t+1 … t+H.
    `scored_steps` are the steps (1-based, = τ) that the benchmark scores.
    """

    subject: torch.Tensor
    origin: torch.Tensor
    actions: torch.Tensor
    outcomes: torch.Tensor
    scored_steps: tuple[int, ...]
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.subject)


def _origins(cohort: TumourCohort) -> tuple[torch.Tensor, torch.Tensor]:
    days = torch.arange(cohort.volume.shape[1])[None, :]
    return torch.nonzero(days < (cohort.length - 1)[:, None], as_tuple=True)


def one_step_counterfactuals(cohort: TumourCohort) -> CounterfactualSet:
    subject, t = _origins(cohort)
    params = cohort.params.select(subject)
    volume = cohort.volume[subject, t]
    previous_c = torch.where(t > 0, cohort.concentration[subject, (t - 1).clamp(min=0)], 0.0)
    outcomes = []
    for chemo, radio in ONE_STEP_OPTIONS.tolist():
        c = chemo_concentration(previous_c, torch.full_like(volume, chemo))
        outcomes.append(next_volume(volume, c, torch.full_like(volume, radio), params,
                                    cohort.noise[subject, t + 1]))
    outcome = torch.stack(outcomes, dim=1)
    factual = (2 * cohort.radio[subject, t] + cohort.chemo[subject, t]).long()
    outcome[torch.arange(len(subject)), factual] = cohort.volume[subject, t + 1]
    actions = ONE_STEP_OPTIONS[None, :, None, :].expand(len(subject), -1, -1, -1)
    return CounterfactualSet(subject, t, actions.clone(), outcome[..., None], (1,))


def sliding_counterfactuals(cohort: TumourCohort, horizon: int = 5) -> CounterfactualSet:
    subject, t = _origins(cohort)
    if cohort.noise.shape[1] < cohort.volume.shape[1] + horizon + 1:
        raise ValueError("the cohort's noise does not reach the projection horizon")
    sequences = sliding_sequences(horizon)  # [K, H, 2]
    k = len(sequences)
    params = cohort.params.select(subject.repeat_interleave(k))
    rows = subject.repeat_interleave(k)
    days = t.repeat_interleave(k)
    plan = sequences.repeat(len(subject), 1, 1)  # [N·K, H, 2]
    noise = cohort.noise[rows[:, None], days[:, None] + 2 + torch.arange(horizon)[None, :]]
    path = project(cohort.volume[rows, days + 1], cohort.concentration[rows, days], params,
                   plan, noise)
    projected = path.reshape(len(subject), k, horizon)
    first = torch.stack([cohort.chemo[subject, t], cohort.radio[subject, t]], dim=1)
    actions = torch.cat([first[:, None, None, :].expand(-1, k, 1, -1),
                         sequences[None].expand(len(subject), -1, -1, -1)], dim=2)
    factual_next = cohort.volume[subject, t + 1][:, None, None].expand(-1, k, 1)
    outcomes = torch.cat([factual_next, projected], dim=2)
    keep = (projected >= 0).all(dim=(1, 2))
    return CounterfactualSet(
        subject[keep], t[keep], actions[keep], outcomes[keep],
        tuple(range(2, horizon + 2)), dropped=int((~keep).sum()),
    )
