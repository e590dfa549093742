"""The learned side: `WorldModel`, the `Belief` it encodes and the `Forecast` it imagines.

A world model learns from logged trajectories how a system's observations move under
actions. `encode` turns an observed history into a belief about the current (latent)
state; `imagine` rolls that belief forward under a candidate action sequence and returns
sampled futures. Planners, benchmarks and services only ever see this protocol.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Space
from biowm.core.trajectories import Trajectories


@dataclass
class Belief:
    """A model's state of knowledge about B subjects; every tensor is batch-first `[B, ...]`."""

    tensors: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def repeat(self, times: int) -> Belief:
        """Each subject repeated `times` times in a row (B -> B·times), e.g. for candidate plans."""
        return Belief({k: v.repeat_interleave(times, dim=0) for k, v in self.tensors.items()})


@dataclass
class Forecast:
    """Sampled futures: `samples [S, B, H, D]` at `times [B, H]` after the forecast origin."""

    samples: torch.Tensor
    times: torch.Tensor
    space: Space
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.samples.dim() != 4 or self.samples.shape[-1] != len(self.space):
            raise InvalidInputError(
                f"Forecast.samples must be [S, B, H, {len(self.space)}], "
                f"got {tuple(self.samples.shape)}"
            )

    @property
    def n_samples(self) -> int:
        return self.samples.shape[0]

    def mean(self) -> torch.Tensor:
        return self.samples.mean(dim=0)

    def point(self) -> torch.Tensor:
        """The point forecast `[B, H, D]`: the model's exact mean (`extras["mean"]`) when it
        gives one, else the sample mean."""
        return self.extras["mean"] if "mean" in self.extras else self.mean()

    def std(self) -> torch.Tensor:
        return self.samples.std(dim=0)

    def quantile(self, q: float | torch.Tensor) -> torch.Tensor:
        return torch.quantile(self.samples, torch.as_tensor(q, dtype=self.samples.dtype), dim=0)

    def interval(self, level: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Central prediction interval of probability `level` (e.g. 0.9): (low, high)."""
        if not 0.0 < level < 1.0:
            raise InvalidInputError(f"interval level must be in (0, 1), got {level}")
        tail = (1.0 - level) / 2.0
        return self.quantile(tail), self.quantile(1.0 - tail)

    def channel(self, name: str) -> torch.Tensor:
        """Samples of one channel, `[S, B, H]`."""
        return self.samples[..., self.space.index(name)]


@dataclass
class FitReport:
    """What training did: epochs run, best validation loss, where it stopped and why."""

    epochs: int
    best_val_loss: float
    stopped_because: str
    history: list[dict[str, float]] = field(default_factory=list)


@runtime_checkable
class WorldModel(Protocol):
    """Learned, action-conditioned dynamics with uncertainty."""

    obs_space: Space
    action_space: Space
    static_space: Space
    step: float

    def fit(self, train: Trajectories, val: Trajectories, **options: Any) -> FitReport:
        """Learn from logged trajectories; `val` drives early stopping and calibration."""
        ...

    def encode(self, history: Trajectories) -> Belief:
        """Belief about each subject's state at the last valid time of its history."""
        ...

    def imagine(
        self, belief: Belief, actions: torch.Tensor, n_samples: int = 100, seed: int = 0
    ) -> Forecast:
        """Futures under `actions [B, H, A]` (one per `step`, the first acting now)."""
        ...

    def save(self, directory: str | os.PathLike[str]) -> None: ...

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> WorldModel: ...
