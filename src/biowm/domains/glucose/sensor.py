"""Continuous glucose monitor: subcutaneous glucose plus Johnson-transformed AR noise.

Sensor error model of Breton & Kovatchev (J Diabetes Sci Technol 2008): a standard-normal
latent error that is autocorrelated in time (AR(1), partial autocorrelation 0.7 at a
15-minute lag) mapped through a Johnson S_U transform, x = xi + lambda·sinh((e - gamma)/delta).
The parameter values are the published ones (as tabulated in simglucose's sensor table).
Unlike simglucose, which draws the latent at 15-minute knots and cubic-interpolates, the
latent here is an exact AR(1) at the sensor's own sampling period with the same 15-minute
autocorrelation, so the state is one number per patient and any sampling period works.
Readings are clipped to the sensor's reporting range, as a real CGM does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from biowm.core import random as crandom
from biowm.core.errors import InvalidInputError

_NOISE_STREAM = 11


@dataclass(frozen=True)
class CGMSensor:
    """Sensor parameters; defaults are the published GuardianRT-type set, 5-min sampling."""

    sample_minutes: int = 5
    pacf_15min: float = 0.7
    johnson_xi: float = -5.47
    johnson_lambda: float = 15.9574
    johnson_gamma: float = -0.5444
    johnson_delta: float = 1.6898
    min_mg_dl: float = 39.0
    max_mg_dl: float = 600.0

    def __post_init__(self) -> None:
        if self.sample_minutes < 1:
            raise InvalidInputError(
                f"CGM sample_minutes must be >= 1 minute, got {self.sample_minutes}"
            )

    @property
    def ar_coefficient(self) -> float:
        """Per-sample AR(1) coefficient giving `pacf_15min` correlation at 15 minutes."""
        return self.pacf_15min ** (self.sample_minutes / 15.0)

    def initial_latent(self, keys: torch.Tensor) -> torch.Tensor:
        return crandom.normal(keys, _NOISE_STREAM, 0)

    def advance_latent(
        self, latent: torch.Tensor, keys: torch.Tensor, sample_index: torch.Tensor
    ) -> torch.Tensor:
        """The latent at sensor sample `sample_index` from the one before it."""
        phi = self.ar_coefficient
        innovation = crandom.normal(keys, _NOISE_STREAM, sample_index)
        return phi * latent + (1.0 - phi**2) ** 0.5 * innovation

    def error_mg_dl(self, latent: torch.Tensor) -> torch.Tensor:
        return self.johnson_xi + self.johnson_lambda * torch.sinh(
            (latent - self.johnson_gamma) / self.johnson_delta
        )

    def reading(self, gsub_mg_dl: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        value = gsub_mg_dl + self.error_mg_dl(latent)
        return value.clamp(self.min_mg_dl, self.max_mg_dl)
