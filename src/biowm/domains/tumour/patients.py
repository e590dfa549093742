"""Virtual lung-cancer patients: initial stage and size, and correlated PK-PD parameters.

Distributions as published (Geng et al. 2017; Bica et al. 2020): stage I/II/IIIA/IIIB/IV
in proportions 1432/128/1306/7248/12840 (Detterbeck & Gibson 2008), each with a lognormal
diameter truncated to [0.3, 5] cm (stage I) or [0.3, 13] cm; (α, ρ) bivariate normal
(means 0.0398 and 7e-5, sds 0.168 and 7.23e-3, correlation 0.87) redrawn until both are
positive; β = α / 10; β_c ~ N(0.028, 0.0007²) truncated at 0; patient type 1/2/3 uniform,
type 1 with α + 10 % of its mean and type 3 with β_c + 10 % of its mean.

Draws are counter-based per patient (`core/random.py`), so a patient's parameters depend
only on (seed, patient index), never on how many patients are drawn with it.
"""

from __future__ import annotations

import math

import torch

from biowm.core import random as crandom
from biowm.domains.tumour.model import PatientParameters, sphere_volume_cm3

STAGES = ("I", "II", "IIIA", "IIIB", "IV")
STAGE_COUNTS = torch.tensor([1432.0, 128.0, 1306.0, 7248.0, 12840.0], dtype=torch.float64)
# log-diameter mean, sd, and truncation bounds in cm (per stage, as published)
STAGE_LOG_DIAMETER = torch.tensor(
    [[1.72, 4.70, 0.3, 5.0], [1.96, 1.63, 0.3, 13.0], [1.91, 9.40, 0.3, 13.0],
     [2.76, 6.87, 0.3, 13.0], [3.86, 8.82, 0.3, 13.0]], dtype=torch.float64,
)
ALPHA_MEAN, ALPHA_SD = 0.0398, 0.168
RHO_MEAN, RHO_SD = 7e-5, 7.23e-3
ALPHA_RHO_CORRELATION = 0.87
BETA_C_MEAN, BETA_C_SD = 0.028, 0.0007
ALPHA_BETA_RATIO = 10.0
TYPE_ADJUSTMENT = 0.1
_REDRAWS = 64  # P(no positive pair in 64 draws) < 1e-16

(_STAGE, _DIAMETER, _ALPHA_Z1, _ALPHA_Z2, _TYPE, _BETA_C) = range(6)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def truncated_standard_normal(
    u: torch.Tensor, low: torch.Tensor, high: torch.Tensor
) -> torch.Tensor:
    """Inverse-CDF draw of N(0, 1) truncated to [low, high] from uniforms `u`."""
    a, b = _normal_cdf(low), _normal_cdf(high)
    return torch.special.ndtri((a + u * (b - a)).clamp(1e-300, 1.0 - 1e-16))


def sample_patients(n: int, seed: int, offset: int = 0) -> PatientParameters:
    """Parameters of patients `offset … offset+n−1` of the population seeded by `seed`."""
    keys = crandom.subject_keys(seed, n, offset)
    cumulative = torch.cumsum(STAGE_COUNTS / STAGE_COUNTS.sum(), 0)
    stage = torch.searchsorted(cumulative, crandom.uniform(keys, _STAGE)).clamp(max=4)
    mu, sd, low, high = STAGE_LOG_DIAMETER[stage].unbind(1)
    z = truncated_standard_normal(
        crandom.uniform(keys, _DIAMETER), (low.log() - mu) / sd, (high.log() - mu) / sd
    )
    diameter = torch.exp(mu + sd * z)

    counters = torch.arange(_REDRAWS)[None, :]
    z1 = crandom.normal(keys, _ALPHA_Z1, counters)
    z2 = crandom.normal(keys, _ALPHA_Z2, counters)
    alpha_draws = ALPHA_MEAN + ALPHA_SD * z1
    rho_draws = RHO_MEAN + RHO_SD * (
        ALPHA_RHO_CORRELATION * z1 + math.sqrt(1.0 - ALPHA_RHO_CORRELATION**2) * z2
    )
    positive = (alpha_draws > 0) & (rho_draws > 0)
    first = positive.double().argmax(dim=1, keepdim=True)
    alpha = alpha_draws.gather(1, first)[:, 0]
    rho = rho_draws.gather(1, first)[:, 0]

    patient_type = 1 + (crandom.uniform(keys, _TYPE) * 3).long().clamp(max=2)
    alpha = alpha + ALPHA_MEAN * TYPE_ADJUSTMENT * (patient_type == 1)
    lower = torch.full((n,), -BETA_C_MEAN / BETA_C_SD, dtype=torch.float64)
    beta_c = BETA_C_MEAN + BETA_C_SD * truncated_standard_normal(
        crandom.uniform(keys, _BETA_C), lower, torch.full_like(lower, math.inf)
    )
    beta_c = beta_c + BETA_C_MEAN * TYPE_ADJUSTMENT * (patient_type == 3)
    return PatientParameters(
        alpha=alpha, beta=alpha / ALPHA_BETA_RATIO, beta_c=beta_c, rho=rho,
        patient_type=patient_type, stage=stage, initial_volume_cm3=sphere_volume_cm3(diameter),
    )
