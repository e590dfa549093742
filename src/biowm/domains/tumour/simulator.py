"""The tumour model as a batched biowm `Simulator` (one step = one day).

Actions are `[B, 2]` (chemotherapy, radiotherapy) sessions given today (0/1). Patients
and noise come from the same counter-based streams as the cohort engine, so stepping
the simulator with a cohort's logged treatments reproduces its volumes exactly. A
patient who died or recovered stays so (absorbing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from biowm.core import random as crandom
from biowm.core.errors import InvalidInputError
from biowm.core.simulator import State
from biowm.domains.tumour import cohort as engine
from biowm.domains.tumour.model import (
    DEATH_VOLUME_CM3,
    NOISE_SD,
    PatientParameters,
    chemo_concentration,
    next_volume,
    settle,
)
from biowm.domains.tumour.patients import sample_patients

_PARAMS = ("alpha", "beta", "beta_c", "rho")


class TumourSimulator:
    obs_space = engine.OBS_SPACE
    action_space = engine.ACTION_SPACE
    static_space = engine.STATIC_SPACE
    time_unit = "day"
    default_dt = 1.0

    def reset(self, n: int | None = None, subjects: Sequence[str] | None = None,
              seed: int = 0) -> State:
        if subjects is not None:
            try:
                index = torch.tensor([int(s.split("#")[-1]) for s in subjects])
            except ValueError:
                raise InvalidInputError(
                    "tumour subjects are named like 'patient#000012' (the patient index)"
                ) from None
            params = [sample_patients(1, seed, int(i)) for i in index]
            p = PatientParameters(**{k: torch.cat([getattr(q, k) for q in params])
                                     for k in PatientParameters.__dataclass_fields__})
            keys = torch.cat([crandom.subject_keys(seed, 1, int(i)) for i in index])
        elif n is not None and n >= 1:
            p, keys = sample_patients(n, seed), crandom.subject_keys(seed, n)
        else:
            raise InvalidInputError("reset needs n >= 1 or a list of subjects")
        b = len(keys)
        return {"volume": p.initial_volume_cm3.clone(), "concentration": torch.zeros(b,
                dtype=torch.float64), "day": torch.zeros(b, dtype=torch.long), "keys": keys,
                "patient_type": p.patient_type, "stage": p.stage,
                "initial_volume_cm3": p.initial_volume_cm3,
                **{k: getattr(p, k) for k in _PARAMS}}

    def step(self, state: State, action: torch.Tensor, dt: float = 1.0) -> State:
        if dt != 1.0:
            raise InvalidInputError(f"the tumour model steps one day at a time, got dt={dt}")
        self.action_space.validate(action, "action")
        params = PatientParameters(**{k: state[k] for k in PatientParameters.__dataclass_fields__
                                      if k in state})
        volume, day = state["volume"], state["day"]
        concentration = chemo_concentration(state["concentration"], action[:, 0].double())
        noise = NOISE_SD * crandom.normal(state["keys"], engine.NOISE_STREAM, day + 1)
        nxt = next_volume(volume, concentration, action[:, 1].double(), params, noise)
        nxt, _, _ = settle(nxt, crandom.uniform(state["keys"], engine.RECOVERY_STREAM, day + 1))
        finished = (volume <= 0) | (volume >= DEATH_VOLUME_CM3)
        return {**state, "volume": torch.where(finished, volume, nxt),
                "concentration": concentration, "day": day + 1}

    def observe(self, state: State, rng: torch.Generator | None = None) -> torch.Tensor:
        return state["volume"][:, None].clone()

    def static(self, state: State) -> torch.Tensor:
        return state["patient_type"].double()[:, None]
