"""Named, unit-carrying channels and the spaces they form.

Every observation, action and static covariate in biowm is a channel with a name, a unit
and a valid range. Input is validated against the space at the boundary and a violation
names the channel, the offending value and the allowed range; nothing is silently clipped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from biowm.core.errors import InvalidInputError


@dataclass(frozen=True)
class Channel:
    """One named quantity: `name`, physical `unit`, closed valid range [`low`, `high`]."""

    name: str
    unit: str
    low: float = -math.inf
    high: float = math.inf
    description: str = ""
    default: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInputError("channel name must not be empty")
        if not self.low <= self.high:
            raise InvalidInputError(
                f"channel {self.name!r}: low {self.low} is above high {self.high}"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "unit": self.unit,
            "low": _float_to_json(self.low),
            "high": _float_to_json(self.high),
            "description": self.description,
            "default": self.default,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Channel:
        return cls(
            name=str(data["name"]),
            unit=str(data["unit"]),
            low=_float_from_json(data.get("low", "-inf")),
            high=_float_from_json(data.get("high", "inf")),
            description=str(data.get("description", "")),
            default=float(data.get("default", 0.0)),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Space:
    """An ordered tuple of channels; the last tensor axis of data in this space."""

    channels: tuple[Channel, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [c.name for c in self.channels]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidInputError(f"duplicate channel names in space: {duplicates}")

    @classmethod
    def of(cls, *channels: Channel) -> Space:
        return cls(tuple(channels))

    def __len__(self) -> int:
        return len(self.channels)

    def __iter__(self) -> Iterator[Channel]:
        return iter(self.channels)

    def __getitem__(self, name: str) -> Channel:
        return self.channels[self.index(name)]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.channels]

    @property
    def units(self) -> list[str]:
        return [c.unit for c in self.channels]

    def index(self, name: str) -> int:
        for i, channel in enumerate(self.channels):
            if channel.name == name:
                return i
        raise InvalidInputError(f"unknown channel {name!r}; channels are {self.names}")

    def subspace(self, names: Sequence[str]) -> Space:
        return Space(tuple(self[name] for name in names))

    def low(self) -> np.ndarray:
        return np.array([c.low for c in self.channels], dtype=np.float64)

    def high(self) -> np.ndarray:
        return np.array([c.high for c in self.channels], dtype=np.float64)

    def defaults(self) -> np.ndarray:
        return np.array([c.default for c in self.channels], dtype=np.float64)

    def validate(
        self,
        values: np.ndarray | torch.Tensor,
        what: str = "input",
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Raise `InvalidInputError` unless every (unmasked) value is finite and in range.

        `values` has this space on its last axis; `mask` (same shape, True = observed) lets
        missing entries hold anything.
        """
        array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
        array = np.asarray(array, dtype=np.float64)
        if array.ndim == 0 or array.shape[-1] != len(self):
            raise InvalidInputError(
                f"{what}: expected last axis of size {len(self)} ({self.names}), "
                f"got shape {tuple(array.shape)}"
            )
        observed = np.ones(array.shape, dtype=bool)
        if mask is not None:
            m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask
            observed = np.asarray(m, dtype=bool)
        bad_nan = observed & ~np.isfinite(array)
        bad_range = observed & np.isfinite(array) & (
            (array < self.low()) | (array > self.high())
        )
        for bad, reason in ((bad_nan, "is not a finite number"), (bad_range, "is out of range")):
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                channel = self.channels[index[-1]]
                position = f" at index {index[:-1]}" if len(index) > 1 else ""
                raise InvalidInputError(
                    f"{what}: channel {channel.name!r}{position} value {array[index]!r} "
                    f"{reason}; allowed range [{channel.low}, {channel.high}] {channel.unit}"
                )

    def to_dict(self) -> list[dict[str, object]]:
        return [c.to_dict() for c in self.channels]

    @classmethod
    def from_dict(cls, data: Sequence[dict[str, object]]) -> Space:
        return cls(tuple(Channel.from_dict(d) for d in data))


def _float_to_json(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _float_from_json(value: object) -> float:
    return float(value)  # type: ignore[arg-type]
