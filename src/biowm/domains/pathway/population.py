"""Parameter uncertainty: a population of virtual cells drawn log-normally around a model.

Each virtual cell multiplies the chosen parameters by `exp(sigma * z)`, `z ~ N(0, 1)`, so
its parameters stay positive and the model's own values are the population median. The
log-ratios `sigma * z` are the static covariates a surrogate is conditioned on. A cell's
draw of a parameter depends only on (seed, cell index, parameter name): the same seed gives
the same cells whatever `n`, and adding a parameter does not change the others' draws.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from biowm.core.errors import InvalidInputError
from biowm.domains.pathway.sbml import PathwayModel

DEFAULT_SIGMA = 0.1
STATIC_PREFIX = "log_ratio_"  # a static covariate is STATIC_PREFIX + parameter name


@dataclass(frozen=True)
class ParameterDraws:
    """`log_ratio[n, p]` = log(drawn value / model value) of parameter `names[p]` in cell n."""

    names: tuple[str, ...]
    log_ratio: np.ndarray
    sigma: float

    @property
    def n(self) -> int:
        return self.log_ratio.shape[0]

    def values(self, model: PathwayModel) -> np.ndarray:
        """The drawn parameter values `[n, p]`."""
        base = np.array([model.parameters[name] for name in self.names], dtype=np.float64)
        return base * np.exp(self.log_ratio)

    def select(self, index: np.ndarray | slice) -> ParameterDraws:
        return ParameterDraws(self.names, self.log_ratio[index], self.sigma)

    @classmethod
    def nominal(cls, n: int) -> ParameterDraws:
        """`n` cells at the model's own parameter values."""
        return cls((), np.zeros((n, 0)), 0.0)


def default_uncertain_parameters(model: PathwayModel) -> tuple[str, ...]:
    """All changeable parameters with a positive value (a zero stays zero under scaling)."""
    return tuple(name for name, value in model.parameters.items() if value > 0)


def draw_parameters(model: PathwayModel, n: int, sigma: float = DEFAULT_SIGMA,
                    names: Sequence[str] | None = None, seed: int = 0) -> ParameterDraws:
    """`n` virtual cells with log-normal parameters around the model's values."""
    from biowm.core.random import normal, subject_keys

    if n < 1:
        raise InvalidInputError(f"need at least one virtual cell, got n={n}")
    if not (sigma >= 0 and np.isfinite(sigma)):
        raise InvalidInputError(f"--sigma must be a finite number >= 0, got {sigma}")
    chosen = default_uncertain_parameters(model) if names is None else \
        model.check_parameters(names, "uncertain parameter")
    if not chosen or sigma == 0:
        return ParameterDraws(tuple(chosen), np.zeros((n, len(chosen))), float(sigma))
    counter = np.array([[zlib.crc32(name.encode()) for name in chosen]], dtype=np.int64)
    z = normal(subject_keys(seed, n), 7, counter).numpy()
    return ParameterDraws(tuple(chosen), sigma * z, float(sigma))
