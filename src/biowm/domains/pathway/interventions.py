"""Interventions on a pathway model, each with a declared dose range.

Two kinds act over time through a piecewise-constant `DoseSchedule` (one dose per run,
segment and control), by multiplying kinetic parameters:

- `Inhibitor`: a drug with an Emax/Hill dose-response, `p_eff = p * (1 - I(d))` with
  `I(d) = Emax d^h / (d^h + IC50^h)`; without an IC50 the dose *is* the fractional
  inhibition `I(d) = d` (dose range within [0, 1]);
- `Overexpression`: synthesis scaled, `p_eff = p * d` on a synthesis-rate parameter.

Three act once per call, on species:

- `Knockout`: the species is clamped to zero for the whole run (made a boundary species
  at 0; a gene knockout is present before the experiment starts);
- `InitialFold`: overexpression of a species the model does not synthesise (e.g. a kinase
  with a conserved total): its initial amount is scaled;
- `Bolus`: an amount (concentration units of the model) added to a species at a time.

Every dose is checked against its declared range; nothing is silently clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from biowm.core.errors import InvalidInputError

FRACTION_PREFIX = "inhibition_"  # action-channel name of a direct fractional inhibition

def _check_range(label: str, values: np.ndarray, low: float, high: float, unit: str) -> None:
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0]) if values.ndim else ()
        where = f" (run {index[0]}, segment {index[1]})" if len(index) == 2 else \
            f" at index {index}" if index else ""
        raise InvalidInputError(f"{label}: dose {float(values[index]):g}{where} is outside its "
                                f"declared range [{low:g}, {high:g}] {unit}")


@dataclass(frozen=True)
class Inhibitor:
    """A drug (or a direct fractional inhibition) scaling kinetic parameters down."""

    name: str
    targets: tuple[str, ...]
    dose_range: tuple[float, float] = (0.0, 1.0)
    unit: str = "fraction"
    emax: float = 1.0
    ic50: float | None = None
    hill: float = 1.0

    def __post_init__(self) -> None:
        low, high = self.dose_range
        if not (0.0 <= low <= high) or not self.targets:
            raise InvalidInputError(f"inhibitor {self.name}: needs targets and a dose range "
                                    f"0 <= low <= high, got {self.dose_range}")
        if not 0.0 <= self.emax <= 1.0:
            raise InvalidInputError(f"inhibitor {self.name}: Emax must be in [0, 1], "
                                    f"got {self.emax}")
        if self.ic50 is None and high > 1.0:
            raise InvalidInputError(f"inhibitor {self.name}: a fractional inhibition (no IC50) "
                                    f"needs a dose range within [0, 1], got {self.dose_range}")
        if self.ic50 is not None and not (self.ic50 > 0 and self.hill > 0):
            raise InvalidInputError(f"inhibitor {self.name}: IC50 and Hill coefficient must "
                                    f"be > 0, got {self.ic50}, {self.hill}")

    @classmethod
    def fraction(cls, parameter: str) -> Inhibitor:
        """Direct inhibition of one parameter by a fraction in [0, 1] (what the CLI uses)."""
        return cls(name=f"{FRACTION_PREFIX}{parameter}", targets=(parameter,))

    def effect(self, dose: np.ndarray) -> np.ndarray:
        """Fractional inhibition I(dose) in [0, Emax]."""
        dose = np.asarray(dose, dtype=np.float64)
        if self.ic50 is None:
            return self.emax * dose
        scaled = (dose / self.ic50) ** self.hill
        return self.emax * scaled / (1.0 + scaled)

    def multiplier(self, dose: np.ndarray) -> np.ndarray:
        return 1.0 - self.effect(dose)


@dataclass(frozen=True)
class Overexpression:
    """Synthesis scaled: synthesis-rate parameters multiplied by the dose (a fold change)."""

    name: str
    targets: tuple[str, ...]
    dose_range: tuple[float, float] = (1.0, 10.0)
    unit: str = "fold"

    def __post_init__(self) -> None:
        low, high = self.dose_range
        if not (0.0 <= low <= high) or not self.targets:
            raise InvalidInputError(f"overexpression {self.name}: needs targets and a fold "
                                    f"range 0 <= low <= high, got {self.dose_range}")

    def multiplier(self, dose: np.ndarray) -> np.ndarray:
        return np.asarray(dose, dtype=np.float64)


Control = Inhibitor | Overexpression


@dataclass(frozen=True)
class Knockout:
    """Species clamped to zero for the whole run."""

    species: str


@dataclass(frozen=True)
class InitialFold:
    """The species' initial amount multiplied by `fold` (within `fold_range`)."""

    species: str
    fold: float
    fold_range: tuple[float, float] = (0.0, 100.0)

    def __post_init__(self) -> None:
        _check_range(f"initial fold of {self.species}", np.asarray(self.fold),
                     *self.fold_range, "fold")


@dataclass(frozen=True)
class Bolus:
    """`amount` (model concentration units) added to `species` at `time` (model time units)."""

    species: str
    time: float
    amount: float
    amount_range: tuple[float, float] = (0.0, math.inf)

    def __post_init__(self) -> None:
        _check_range(f"bolus of {self.species}", np.asarray(self.amount), *self.amount_range,
                     "concentration units")
        if not math.isfinite(self.time) or self.time < 0:
            raise InvalidInputError(f"bolus of {self.species}: time must be >= 0, "
                                    f"got {self.time}")


@dataclass(frozen=True)
class DoseSchedule:
    """Piecewise-constant doses: `doses[n, k, a]` of control `a` for run `n` holds on
    `[boundaries[k], boundaries[k+1])`; the last segment also covers its end point."""

    controls: tuple[Control, ...]
    boundaries: np.ndarray
    doses: np.ndarray

    def __post_init__(self) -> None:
        boundaries = np.asarray(self.boundaries, dtype=np.float64)
        doses = np.asarray(self.doses, dtype=np.float64)
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "doses", doses)
        k = len(boundaries) - 1
        if boundaries.ndim != 1 or k < 1 or not np.all(np.diff(boundaries) > 0):
            raise InvalidInputError("dose schedule: boundaries must be >= 2 increasing times, "
                                    f"got {boundaries.tolist()}")
        if doses.ndim != 3 or doses.shape[1:] != (k, len(self.controls)):
            raise InvalidInputError(f"dose schedule: doses must have shape [runs, {k}, "
                                    f"{len(self.controls)}], got {doses.shape}")
        names = [c.name for c in self.controls]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"dose schedule: control names repeat: {names}")
        for a, control in enumerate(self.controls):
            _check_range(control.name, doses[:, :, a], *control.dose_range, control.unit)

    @classmethod
    def constant(cls, controls: Sequence[Control], doses: Sequence[float], n: int,
                 t_end: float, t_start: float = 0.0) -> DoseSchedule:
        """The same dose of each control for all `n` runs over the whole window."""
        value = np.broadcast_to(np.asarray(doses, dtype=np.float64), (n, 1, len(controls)))
        return cls(tuple(controls), np.array([t_start, t_end]), value.copy())

    @property
    def n_runs(self) -> int:
        return self.doses.shape[0]

    def segment_of(self, times: np.ndarray) -> np.ndarray:
        """Index of the segment in effect at each time (right-continuous)."""
        index = np.searchsorted(self.boundaries, np.asarray(times), side="right") - 1
        return np.clip(index, 0, len(self.boundaries) - 2)

    def at(self, times: np.ndarray) -> np.ndarray:
        """Doses in effect at `times`: `[runs, T, controls]`."""
        return self.doses[:, self.segment_of(times), :]

    def multipliers(self) -> tuple[tuple[str, ...], np.ndarray]:
        """The parameters the controls touch and their factors `[runs, segments, params]`
        (controls acting on the same parameter multiply)."""
        targets: list[str] = []
        for control in self.controls:
            targets += [t for t in control.targets if t not in targets]
        factors = np.ones((*self.doses.shape[:2], len(targets)))
        for a, control in enumerate(self.controls):
            m = control.multiplier(self.doses[:, :, a])
            for target in control.targets:
                factors[:, :, targets.index(target)] *= m
        return tuple(targets), factors


def random_schedule(controls: Sequence[Control], n: int, t_end: float, segments: int = 6,
                    seed: int = 0, p_off: float = 0.25, t_start: float = 0.0) -> DoseSchedule:
    """Random piecewise-constant schedules on equal segments: each dose is "off" (the low
    end of its range) with probability `p_off`, otherwise uniform over its range. Run `i`'s
    schedule depends only on (seed, i), not on `n`."""
    from biowm.core.random import subject_keys, uniform

    if segments < 1 or n < 1:
        raise InvalidInputError(f"need n >= 1 and segments >= 1, got {n} and {segments}")
    boundaries = np.linspace(t_start, t_end, segments + 1)
    if not controls:
        return DoseSchedule((), boundaries, np.zeros((n, segments, 0)))
    keys = subject_keys(seed, n)
    counter = np.arange(segments * len(controls), dtype=np.int64)[None, :]
    off = uniform(keys, 101, counter).numpy() < p_off
    u = uniform(keys, 102, counter).numpy()
    low = np.array([c.dose_range[0] for c in controls], dtype=np.float64)
    high = np.array([c.dose_range[1] for c in controls], dtype=np.float64)
    doses = (low + u.reshape(n, segments, len(controls)) * (high - low))
    doses = np.where(off.reshape(doses.shape), low, doses)
    return DoseSchedule(tuple(controls), boundaries, doses)
