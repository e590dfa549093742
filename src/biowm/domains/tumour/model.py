"""The Geng et al. (2017) lung-cancer PK-PD model as used by CRN and the Causal Transformer.

Written from the published equations (Geng, Paganetti & Grassberger, Sci Rep 7:13542,
2017; Bica et al., ICLR 2020, appendix; Melnychuk et al., ICML 2022), one day per step:

    V(t+1) = V(t) · [1 + ρ·log(K / V(t)) − β_c·C(t) − (α·d(t) + β·d(t)²) + e(t+1)]
    C(t)   = C(t−1)·exp(−ln 2 / half-life) + 5·chemo(t)          (half-life 1 day)
    d(t)   = 2 Gy · radio(t),   e ~ N(0, 0.01²)

K is the volume of a 30 cm sphere; a tumour above 13 cm diameter kills the patient, and a
patient recovers with probability exp(−V·5.8e8 cells/cm³). Every function is vectorised
over patients (float64 tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def sphere_volume_cm3(diameter_cm: torch.Tensor | float) -> torch.Tensor:
    return 4.0 / 3.0 * math.pi * (torch.as_tensor(diameter_cm, dtype=torch.float64) / 2.0) ** 3


def sphere_diameter_cm(volume_cm3: torch.Tensor) -> torch.Tensor:
    return (volume_cm3.clamp(min=0.0) / (4.0 / 3.0 * math.pi)) ** (1.0 / 3.0) * 2.0


CARRYING_CAPACITY_CM3 = float(sphere_volume_cm3(30.0))
DEATH_DIAMETER_CM = 13.0
DEATH_VOLUME_CM3 = float(sphere_volume_cm3(DEATH_DIAMETER_CM))  # 1150.35 cm³
TUMOUR_CELL_DENSITY_PER_CM3 = 5.8e8
CHEMO_DOSE = 5.0  # concentration units added per session
RADIO_DOSE_GY = 2.0
CHEMO_HALF_LIFE_DAYS = 1.0
NOISE_SD = 0.01
CHEMO_DECAY_PER_DAY = math.exp(-math.log(2.0) / CHEMO_HALF_LIFE_DAYS)


@dataclass
class PatientParameters:
    """Per-patient dynamics (all `[B]` float64) and their patient type and initial stage."""

    alpha: torch.Tensor  # radio linear term, 1/Gy
    beta: torch.Tensor  # radio quadratic term, 1/Gy²  (= alpha / 10)
    beta_c: torch.Tensor  # chemo sensitivity, per concentration unit
    rho: torch.Tensor  # Gompertz growth rate, per day
    patient_type: torch.Tensor  # 1, 2 or 3 (long)
    stage: torch.Tensor  # index into STAGES (long)
    initial_volume_cm3: torch.Tensor

    def select(self, index: torch.Tensor) -> PatientParameters:
        return PatientParameters(**{k: v[index] for k, v in self.__dict__.items()})


def chemo_concentration(previous: torch.Tensor, chemo_given: torch.Tensor) -> torch.Tensor:
    """C(t) from C(t−1) and whether a chemotherapy session is given at t (0/1)."""
    return previous * CHEMO_DECAY_PER_DAY + CHEMO_DOSE * chemo_given


def next_volume(
    volume: torch.Tensor, concentration: torch.Tensor, radio_given: torch.Tensor,
    params: PatientParameters, noise: torch.Tensor,
) -> torch.Tensor:
    """V(t+1) from V(t), C(t), radiotherapy at t (0/1) and the noise e(t+1); unclipped."""
    dose = RADIO_DOSE_GY * radio_given
    growth = params.rho * torch.log(CARRYING_CAPACITY_CM3 / volume.clamp(min=1e-12))
    kill = params.beta_c * concentration + params.alpha * dose + params.beta * dose**2
    return volume * (1.0 + growth - kill + noise)


def recovery_probability(volume: torch.Tensor) -> torch.Tensor:
    return torch.exp(-volume.clamp(min=0.0) * TUMOUR_CELL_DENSITY_PER_CM3)


def settle(volume: torch.Tensor, u_recover: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A new day's volume after death (clamped to the death volume) and recovery (0,
    drawn with uniforms `u_recover`): (volume, died, recovered)."""
    died = volume > DEATH_VOLUME_CM3
    volume = torch.where(died, DEATH_VOLUME_CM3, volume).clamp(min=0.0)
    recovered = ~died & (u_recover < recovery_probability(volume))
    return torch.where(recovered, 0.0, volume), died, recovered


def project(
    volume: torch.Tensor, concentration: torch.Tensor, params: PatientParameters,
    plan: torch.Tensor, noise: torch.Tensor, absorbing: bool = False,
) -> torch.Tensor:
    """Volumes `[N, H]` on the H days after a plan `[N, H, 2]` (chemo, radio) that starts
    today, from today's volume and yesterday's concentration, with noise `[N, H]`.
    `absorbing`: death (clamped to the death volume) and recovery (0) are final."""
    path = []
    for step in range(plan.shape[1]):
        concentration = chemo_concentration(concentration, plan[:, step, 0])
        nxt = next_volume(volume, concentration, plan[:, step, 1], params, noise[:, step])
        if absorbing:
            dead = (volume >= DEATH_VOLUME_CM3) | (nxt > DEATH_VOLUME_CM3)
            nxt = torch.where(dead, DEATH_VOLUME_CM3, nxt.clamp(min=0.0))
            nxt = torch.where(volume <= 0, 0.0, nxt)
        volume = nxt
        path.append(volume)
    return torch.stack(path, dim=1)
