"""Batched UVA/Padova virtual-patient simulator (biowm `Simulator` protocol).

One call steps every subject at once. Actions are `insulin_u_per_min` (a rate held over the
step) and `carbs_g` (a meal announced at the start of the step, eaten at 5 g/min). Meals
can also be scheduled in the state (a random daily scenario), which is how a Gymnasium
agent meets meals it does not control. Time is in minutes; steps are whole minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from biowm.core import random as crandom
from biowm.core.accelerate import maybe_compile
from biowm.core.errors import InvalidInputError
from biowm.core.simulator import State
from biowm.core.space import Channel, Space
from biowm.domains.glucose.model import (
    PMOL_PER_U,
    MealProgress,
    ModelParameters,
    advance_minute,
)
from biowm.domains.glucose.patients import MODEL_PARAMETERS, patient_table
from biowm.domains.glucose.scenario import MealSchedule, no_meals
from biowm.domains.glucose.sensor import CGMSensor

_PATIENT_STREAM = 31
_VG = MODEL_PARAMETERS.index("Vg")

CGM_CHANNEL = Channel("cgm_mg_dl", "mg/dL", 39.0, 600.0, "CGM reading (noisy, clipped)")
BG_CHANNEL = Channel("bg_mg_dl", "mg/dL", 0.0, 2000.0, "plasma glucose Gp/Vg (simulated truth)")
INSULIN_CHANNEL = Channel(
    "insulin_u_per_min", "U/min", 0.0, 100.0, "insulin infusion rate (basal + bolus)"
)
CARBS_CHANNEL = Channel("carbs_g", "g", 0.0, 300.0, "meal announced at the start of the step")
STATIC_SPACE = Space.of(
    Channel("body_weight_kg", "kg", 0.0, 300.0),
    Channel("age_years", "years", 0.0, 120.0),
    Channel("carb_ratio_g_per_u", "g/U", 0.0, 100.0),
    Channel("correction_factor_mg_dl_per_u", "mg/dL/U", 0.0, 500.0),
    Channel("total_daily_insulin_u", "U", 0.0, 500.0),
)


@dataclass
class GlucoseSimulator:
    """UVA/Padova 2008 virtual patients with a CGM; see the module docstring for actions.

    `compiled=True` fuses the per-minute update with `torch.compile` (about 3x faster for
    thousands of subjects, after a one-off compilation of 5-30 s); results are identical.
    """

    sensor: CGMSensor = field(default_factory=CGMSensor)
    cohort: str = "all"
    meal_schedule: MealSchedule | None = None
    scenario_days: int = 1
    rk4_substeps: int = 1
    compiled: bool = False
    obs_space: Space = field(default_factory=lambda: Space.of(CGM_CHANNEL))
    action_space: Space = field(default_factory=lambda: Space.of(INSULIN_CHANNEL, CARBS_CHANNEL))
    static_space: Space = STATIC_SPACE
    time_unit: str = "min"
    default_dt: float = 5.0

    def __post_init__(self) -> None:
        self.table = patient_table()
        self.table.cohort(self.cohort)  # validates the cohort name
        self._advance = maybe_compile(advance_minute) if self.compiled else advance_minute

    def __getstate__(self) -> dict[str, object]:
        # The compiled kernel and the cached table are rebuilt on unpickling (worker processes).
        dropped = ("_advance", "table", "_parameter_cache")
        return {k: v for k, v in self.__dict__.items() if k not in dropped}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def reset(
        self,
        n: int | None = None,
        subjects: Sequence[str] | None = None,
        seed: int = 0,
        subject_offset: int = 0,
    ) -> State:
        """Subjects at their published steady state, minute 0 (midnight).

        `subjects` names the patients (repeats allowed); otherwise `n` patients are drawn
        from the cohort. Subject `i` gets random key `subject_offset + i` of `seed`, so a
        cohort built in shards equals the one built at once.
        """
        if subjects is not None:
            index = self.table.indices(list(subjects))
            count = len(index)
            keys = crandom.subject_keys(seed, count, subject_offset)
        else:
            if n is None or n < 1:
                raise InvalidInputError(f"number of subjects must be >= 1, got {n}")
            count = n
            keys = crandom.subject_keys(seed, count, subject_offset)
            pool = self.table.indices(self.table.cohort(self.cohort))
            pick = (crandom.uniform(keys, _PATIENT_STREAM) * len(pool)).long()
            index = pool[pick.clamp(max=len(pool) - 1)]
        if self.meal_schedule is not None:
            meal_minute, meal_carbs = self.meal_schedule.sample(keys, self.scenario_days)
        else:
            meal_minute, meal_carbs = no_meals(count)
        x0 = self.table.x0[index].clone()
        return {
            "patient": index,
            "key": keys,
            "params": self.table.params[index].clone(),
            "quest": self.table.quest[index].clone(),
            "x": x0,
            "minute": torch.zeros(count, dtype=torch.float64),
            "planned_carbs_g": torch.zeros(count, dtype=torch.float64),
            "eaten_last_minute_g": torch.zeros(count, dtype=torch.float64),
            "meal_start_stomach_mg": x0[:, 0] + x0[:, 1],
            "meal_eaten_g": torch.zeros(count, dtype=torch.float64),
            "eating": torch.zeros(count, dtype=torch.bool),
            "meal_minute": meal_minute,
            "meal_carbs_g": meal_carbs,
            "cgm_latent": self.sensor.initial_latent(keys),
            "cgm_sample": torch.zeros(count, dtype=torch.long),
        }

    def with_initial_state(self, state: State, x: torch.Tensor) -> State:
        """A copy of `state` whose 13 model states are `x [B, 13]`."""
        new = dict(state)
        new["x"] = x.to(torch.float64).clone()
        new["meal_start_stomach_mg"] = new["x"][:, 0] + new["x"][:, 1]
        return new

    def step(self, state: State, action: torch.Tensor, dt: float) -> State:
        minutes = int(round(dt))
        if minutes < 1 or abs(dt - minutes) > 1e-9:
            raise InvalidInputError(f"glucose step dt must be a whole number of minutes, got {dt}")
        p = self._parameters(state["params"])
        action = action.to(torch.float64)
        insulin_pmol = action[:, 0] * PMOL_PER_U / p.BW
        x = state["x"].T.contiguous()
        minute = state["minute"].clone()
        meal = MealProgress(
            planned_carbs_g=state["planned_carbs_g"] + action[:, 1],
            eaten_last_minute_g=state["eaten_last_minute_g"],
            meal_start_stomach_mg=state["meal_start_stomach_mg"],
            meal_eaten_g=state["meal_eaten_g"],
            eating=state["eating"],
        )
        has_schedule = state["meal_minute"].shape[1] > 0
        for _ in range(minutes):
            if has_schedule:
                due = state["meal_minute"] == minute[:, None]
                meal.planned_carbs_g = meal.planned_carbs_g + (state["meal_carbs_g"] * due).sum(1)
            x, meal = self._advance(x, meal, insulin_pmol, p, self.rk4_substeps)
            minute = minute + 1.0
        latent, sample = self._advance_sensor(state, minute)
        new = dict(state)
        new.update(
            x=x.T,  # batch-first view of the [13, B] buffer: the next step needs no copy
            minute=minute,
            planned_carbs_g=meal.planned_carbs_g,
            eaten_last_minute_g=meal.eaten_last_minute_g,
            meal_start_stomach_mg=meal.meal_start_stomach_mg,
            meal_eaten_g=meal.meal_eaten_g,
            eating=meal.eating,
            cgm_latent=latent,
            cgm_sample=sample,
        )
        return new

    def _parameters(self, params: torch.Tensor) -> ModelParameters:
        """Per-parameter `[B]` vectors, cached while the same parameter tensor is stepped."""
        cached = getattr(self, "_parameter_cache", None)
        if cached is not None and cached[0] is params:
            return cached[1]
        unpacked = ModelParameters.from_matrix(params)
        self._parameter_cache = (params, unpacked)
        return unpacked

    def _advance_sensor(
        self, state: State, minute: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        target = torch.div(minute, self.sensor.sample_minutes, rounding_mode="floor").long()
        latent, sample = state["cgm_latent"], state["cgm_sample"]
        while bool((sample < target).any()):
            behind = sample < target
            advanced = self.sensor.advance_latent(latent, state["key"], sample + 1)
            latent = torch.where(behind, advanced, latent)
            sample = sample + behind.long()
        return latent, sample

    def observe(self, state: State, rng: torch.Generator | None = None) -> torch.Tensor:
        return self.sensor.reading(gsub_mg_dl(state), state["cgm_latent"])[:, None]

    def static(self, state: State) -> torch.Tensor:
        quest = state["quest"]
        bw = state["params"][:, MODEL_PARAMETERS.index("BW")]
        return torch.stack([bw, quest[:, 2], quest[:, 0], quest[:, 1], quest[:, 3]], dim=1)

    def patient_names(self, state: State) -> list[str]:
        return [self.table.names[i] for i in state["patient"].tolist()]

    def basal_u_per_min(self, state: State) -> torch.Tensor:
        return ModelParameters.from_matrix(state["params"]).basal_insulin_u_per_min

    def meals_due(self, state: State) -> torch.Tensor:
        """Scheduled carbs (g) announced at the state's current minute, `[B]`."""
        if state["meal_minute"].shape[1] == 0:
            return torch.zeros_like(state["minute"])
        due = state["meal_minute"] == state["minute"][:, None]
        return (state["meal_carbs_g"] * due).sum(dim=1)


def bg_mg_dl(state: State) -> torch.Tensor:
    """Plasma glucose BG = Gp / Vg, `[B]`."""
    return state["x"][:, 3] / state["params"][:, _VG]


def gsub_mg_dl(state: State) -> torch.Tensor:
    """Noise-free subcutaneous glucose Gsub = Gs / Vg, `[B]`."""
    return state["x"][:, 12] / state["params"][:, _VG]
