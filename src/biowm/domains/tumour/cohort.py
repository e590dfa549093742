"""The tumour data engine: patients treated by a confounded clinician, one day per step.

The clinician gives chemotherapy and radiotherapy independently, each with probability
σ((γ / D_max)·(D̄₁₅ − D_max / 2)), where D̄₁₅ is the mean tumour diameter over the last 15
days (today included) and D_max = 13 cm: with γ > 0 larger tumours are treated more, the
time-varying confounding of the CRN / Causal Transformer benchmark. A trajectory ends at
death (the volume is clamped to the death volume) or recovery (volume 0). Everything is
vectorised over patients; the loop is over the (≤ 60) days only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from biowm.core import random as crandom
from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space
from biowm.core.trajectories import Trajectories
from biowm.domains.tumour.model import (
    DEATH_DIAMETER_CM,
    DEATH_VOLUME_CM3,
    NOISE_SD,
    PatientParameters,
    chemo_concentration,
    next_volume,
    settle,
    sphere_diameter_cm,
)
from biowm.domains.tumour.patients import sample_patients

WINDOW_DAYS = 15
MAX_DAYS = 60
# patient-index offsets keeping train, validation, test and planning patients disjoint
VAL_OFFSET, TEST_OFFSET, PLAN_OFFSET = 1_000_000, 2_000_000, 3_000_000
# counter-based random streams (shared with the simulator so both draw the same numbers)
(NOISE_STREAM, RECOVERY_STREAM, CHEMO_STREAM, RADIO_STREAM) = range(10, 14)

VOLUME_CHANNEL = Channel("tumour_volume_cm3", "cm3", 0.0, 2.0 * DEATH_VOLUME_CM3,
                         "tumour volume (spherical)")
OBS_SPACE = Space.of(VOLUME_CHANNEL)
ACTION_SPACE = Space.of(
    Channel("chemotherapy", "session", 0.0, 1.0, "chemotherapy session given today (0/1)"),
    Channel("radiotherapy", "session", 0.0, 1.0, "2 Gy radiotherapy fraction today (0/1)"),
)
STATIC_SPACE = Space.of(Channel("patient_type", "type", 1.0, 3.0, "1: radio-sensitive, "
                                "2: neutral, 3: chemo-sensitive"))


def assignment_probability(mean_diameter_cm: torch.Tensor, gamma: float) -> torch.Tensor:
    """Probability that the clinician gives each treatment, from D̄₁₅ (cm)."""
    return torch.sigmoid(gamma / DEATH_DIAMETER_CM * (mean_diameter_cm - DEATH_DIAMETER_CM / 2))


@dataclass
class TumourCohort:
    """Factual trajectories plus everything needed to replay them counterfactually.

    Arrays are `[B, T]` with T = days; entries after a patient's last day are NaN
    (volume) or 0 (treatments). `noise [B, T + extra]` is e(t) for day t, drawn beyond the
    end so counterfactual projections share the factual noise.
    """

    params: PatientParameters
    volume: torch.Tensor
    chemo: torch.Tensor
    radio: torch.Tensor
    concentration: torch.Tensor
    probability: torch.Tensor
    length: torch.Tensor  # valid days per patient
    died: torch.Tensor
    recovered: torch.Tensor
    noise: torch.Tensor
    gamma: float
    seed: int
    offset: int

    def __len__(self) -> int:
        return self.volume.shape[0]

    def treatment_rate(self) -> float:
        """Share of (patient, day, treatment) decisions that gave the treatment."""
        decided = torch.arange(self.volume.shape[1])[None, :] < (self.length - 1)[:, None]
        given = (self.chemo + self.radio)[decided]
        return float(given.sum() / (2 * given.numel()))

    def to_trajectories(self) -> Trajectories:
        b, t = self.volume.shape
        valid = torch.arange(t)[None, :] < self.length[:, None]
        times = torch.where(valid, torch.arange(t, dtype=torch.float64)[None, :], torch.nan)
        obs = torch.nan_to_num(self.volume, nan=0.0)[..., None]
        return Trajectories(
            times=times, obs=obs, actions=torch.stack([self.chemo, self.radio], dim=2),
            mask=valid[..., None], static=self.params.patient_type.double()[:, None],
            subject_ids=[f"patient#{self.offset + i:06d}" for i in range(b)],
            obs_space=OBS_SPACE, action_space=ACTION_SPACE, static_space=STATIC_SPACE,
            time_unit="day",
        )


def simulate_cohort(
    n: int, gamma: float, seed: int, days: int = MAX_DAYS, offset: int = 0,
    extra_noise_days: int = 6,
) -> TumourCohort:
    """`n` patients (indices `offset…`) followed for up to `days` days under confounding γ."""
    if n < 1 or days < 2:
        raise InvalidInputError(f"need n >= 1 patients and days >= 2, got n={n}, days={days}")
    if not 0.0 <= gamma <= 100.0:
        raise InvalidInputError(f"gamma must be in [0, 100], got {gamma}")
    params = sample_patients(n, seed, offset)
    keys = crandom.subject_keys(seed, n, offset)
    day_index = torch.arange(days + extra_noise_days)[None, :]
    noise = NOISE_SD * crandom.normal(keys, NOISE_STREAM, day_index)
    u_recover = crandom.uniform(keys, RECOVERY_STREAM, day_index[:, :days])
    u_chemo = crandom.uniform(keys, CHEMO_STREAM, day_index[:, :days])
    u_radio = crandom.uniform(keys, RADIO_STREAM, day_index[:, :days])

    f64 = dict(dtype=torch.float64)
    volume = torch.full((n, days), torch.nan, **f64)
    diameter_sum = torch.zeros(n, days + 1, **f64)  # cumulative diameters for D̄₁₅
    chemo, radio, concentration, probability = (torch.zeros(n, days, **f64) for _ in range(4))
    volume[:, 0] = params.initial_volume_cm3
    active = torch.ones(n, dtype=torch.bool)
    length = torch.ones(n, dtype=torch.long)
    died = torch.zeros(n, dtype=torch.bool)
    recovered = torch.zeros(n, dtype=torch.bool)
    previous_c = torch.zeros(n, **f64)
    for t in range(days - 1):
        current = torch.nan_to_num(volume[:, t], nan=0.0)
        diameter_sum[:, t + 1] = diameter_sum[:, t] + sphere_diameter_cm(current)
        start = max(0, t + 1 - WINDOW_DAYS)
        mean_diameter = (diameter_sum[:, t + 1] - diameter_sum[:, start]) / (t + 1 - start)
        p = assignment_probability(mean_diameter, gamma) * active
        probability[:, t] = p
        chemo[:, t] = (u_chemo[:, t] < p).double()
        radio[:, t] = (u_radio[:, t] < p).double()
        concentration[:, t] = chemo_concentration(previous_c, chemo[:, t])
        previous_c = concentration[:, t]
        nxt = next_volume(current, concentration[:, t], radio[:, t], params, noise[:, t + 1])
        nxt, dies, recovers = settle(nxt, u_recover[:, t + 1])
        dies, recovers = dies & active, recovers & active
        volume[:, t + 1] = torch.where(active, nxt, torch.nan)
        length = length + active.long()
        died |= dies
        recovered |= recovers
        active = active & ~dies & ~recovers
    return TumourCohort(
        params=params, volume=volume, chemo=chemo, radio=radio, concentration=concentration,
        probability=probability, length=length, died=died, recovered=recovered, noise=noise,
        gamma=gamma, seed=seed, offset=offset,
    )
