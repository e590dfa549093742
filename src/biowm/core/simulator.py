"""The batched ground-truth simulator protocol.

A simulator is pure and vectorised over subjects: its state is a dict of tensors whose
first axis is the subject, `step` advances every subject at once (no Python loop per
subject), and randomness comes from counter-based draws keyed by subject, so the same
seed gives the same subjects whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from biowm.core.space import Space

State = dict[str, torch.Tensor]


@runtime_checkable
class Simulator(Protocol):
    """Mechanistic ground truth: `reset` -> state, `step` -> state, `observe` -> obs."""

    obs_space: Space
    action_space: Space
    static_space: Space
    time_unit: str
    default_dt: float

    def reset(
        self,
        n: int | None = None,
        subjects: Sequence[str] | None = None,
        seed: int = 0,
    ) -> State:
        """Initial state for `n` subjects (or the named `subjects`), seeded by `seed`."""
        ...

    def step(self, state: State, action: torch.Tensor, dt: float) -> State:
        """Advance every subject by `dt` time units under `action [B, A]` held constant."""
        ...

    def observe(self, state: State, rng: torch.Generator | None = None) -> torch.Tensor:
        """What an observer measures now, `[B, D]` in `obs_space`."""
        ...

    def static(self, state: State) -> torch.Tensor:
        """Static covariates `[B, S]` in `static_space`."""
        ...


def batch_size(state: State) -> int:
    return next(iter(state.values())).shape[0]


def scatter_states(keep: State, fresh: State, replace: torch.Tensor) -> State:
    """Put the rows of `fresh` (one per True in `replace`) into `keep` at those subjects."""
    merged: State = {}
    index = torch.nonzero(replace).flatten()
    for name, value in keep.items():
        updated = value.clone()
        updated[index] = fresh[name].to(value.dtype)
        merged[name] = updated
    return merged
