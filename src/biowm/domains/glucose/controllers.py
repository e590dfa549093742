"""Insulin controllers: standard basal-bolus therapy and a noisy "clinician" behaviour policy.

Both act every minute on the CGM reading and the carbs announced now, for all subjects at
once, and return an insulin rate in U/min (a bolus is delivered within its minute, through
the pump's increments and limits). The clinician policy makes the mistakes real logs
contain (missed, late and mis-sized boluses, carb-counting errors, mis-set basal rates,
occasional corrections and basal suspensions), so that logged data covers varied actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from biowm.core import random as crandom
from biowm.core.simulator import State
from biowm.domains.glucose.patients import QUEST_COLUMNS
from biowm.domains.glucose.pump import InsulinPump
from biowm.domains.glucose.simulator import GlucoseSimulator

ControllerState = dict[str, torch.Tensor]
_CR, _CF = QUEST_COLUMNS.index("CR"), QUEST_COLUMNS.index("CF")


class Controller(Protocol):
    def reset(self, simulator: GlucoseSimulator, state: State) -> ControllerState: ...

    def act(
        self, memory: ControllerState, cgm_mg_dl: torch.Tensor, carbs_g: torch.Tensor,
        minute: torch.Tensor,
    ) -> tuple[torch.Tensor, ControllerState]:
        """Insulin rate `[B]` (U/min) for this minute, and the updated controller memory."""
        ...


def meal_bolus_u(
    carbs_g: torch.Tensor, cgm_mg_dl: torch.Tensor, carb_ratio: torch.Tensor,
    correction_factor: torch.Tensor, target_mg_dl: float,
) -> torch.Tensor:
    """Standard bolus: carbs/CR, plus (BG − target)/CF when BG > 150 mg/dL; 0 without a meal."""
    correction = torch.where(
        cgm_mg_dl > 150.0, (cgm_mg_dl - target_mg_dl) / correction_factor,
        torch.zeros_like(cgm_mg_dl),
    )
    bolus = carbs_g / carb_ratio + correction
    return torch.where(carbs_g > 0, bolus.clamp(min=0.0), torch.zeros_like(bolus))


@dataclass
class BasalBolus:
    """Basal u2ss·BW/6000 U/min plus a meal bolus at each announced meal."""

    target_mg_dl: float = 140.0
    pump: InsulinPump = field(default_factory=InsulinPump)

    def reset(self, simulator: GlucoseSimulator, state: State) -> ControllerState:
        return {
            "basal_u_per_min": simulator.basal_u_per_min(state),
            "carb_ratio": state["quest"][:, _CR],
            "correction_factor": state["quest"][:, _CF],
        }

    def act(
        self, memory: ControllerState, cgm_mg_dl: torch.Tensor, carbs_g: torch.Tensor,
        minute: torch.Tensor,
    ) -> tuple[torch.Tensor, ControllerState]:
        bolus = meal_bolus_u(
            carbs_g, cgm_mg_dl, memory["carb_ratio"], memory["correction_factor"],
            self.target_mg_dl,
        )
        rate = self.pump.basal_u_per_min(memory["basal_u_per_min"]) + self.pump.bolus_u(bolus)
        return rate, memory


_MISS, _LATE, _DELAY, _CARB_ERR, _DOSE_ERR, _BASAL_ERR = 41, 42, 43, 44, 45, 46
_SUSPEND, _SUSPEND_START, _SUSPEND_LEN, _CORRECT = 47, 48, 49, 50
_TEMP, _TEMP_START, _TEMP_LEN, _TEMP_FACTOR = 51, 52, 53, 54


@dataclass
class ClinicianPolicy:
    """Basal-bolus therapy as people actually deliver it, with seeded per-subject errors."""

    target_mg_dl: float = 140.0
    miss_probability: float = 0.10
    late_probability: float = 0.15
    late_minutes: tuple[float, float] = (15.0, 60.0)
    carb_estimate_log_sd: float = 0.20
    dose_log_sd: float = 0.20
    basal_log_sd: float = 0.10
    suspension_probability_per_day: float = 0.15
    temp_basal_probability_per_day: float = 0.5
    temp_basal_factor: tuple[float, float] = (0.3, 2.0)
    temp_basal_minutes: tuple[float, float] = (30.0, 180.0)
    suspension_minutes: tuple[float, float] = (60.0, 120.0)
    correction_threshold_mg_dl: float = 250.0
    correction_probability_per_hour: float = 0.5
    pump: InsulinPump = field(default_factory=InsulinPump)

    def reset(self, simulator: GlucoseSimulator, state: State) -> ControllerState:
        keys = state["key"]
        basal_error = torch.exp(self.basal_log_sd * crandom.normal(keys, _BASAL_ERR))
        n = keys.shape[0]
        return {
            "key": keys,
            "basal_u_per_min": simulator.basal_u_per_min(state) * basal_error,
            "carb_ratio": state["quest"][:, _CR],
            "correction_factor": state["quest"][:, _CF],
            "pending_u": torch.zeros(n, dtype=torch.float64),
            "pending_due": torch.full((n,), torch.inf, dtype=torch.float64),
            "last_bolus_minute": torch.full((n,), -1e9, dtype=torch.float64),
            "suspension_day": torch.full((n,), -1, dtype=torch.long),
            "suspension_start": torch.zeros(n, dtype=torch.float64),
            "suspension_end": torch.zeros(n, dtype=torch.float64),
            "temp_start": torch.zeros(n, dtype=torch.float64),
            "temp_end": torch.zeros(n, dtype=torch.float64),
            "temp_factor": torch.ones(n, dtype=torch.float64),
        }

    def act(
        self, memory: ControllerState, cgm_mg_dl: torch.Tensor, carbs_g: torch.Tensor,
        minute: torch.Tensor,
    ) -> tuple[torch.Tensor, ControllerState]:
        keys, event = memory["key"], minute.long()
        meal = carbs_g > 0
        zero = torch.zeros_like(cgm_mg_dl)
        bolus_now = zero
        if bool(meal.any()):
            # Draw only for subjects eating now: randomness is keyed per subject and minute.
            idx = torch.nonzero(meal).flatten()
            k, e = keys[idx], event[idx]
            estimate = carbs_g[idx] * torch.exp(
                self.carb_estimate_log_sd * crandom.normal(k, _CARB_ERR, e)
            )
            dose = meal_bolus_u(
                estimate, cgm_mg_dl[idx], memory["carb_ratio"][idx],
                memory["correction_factor"][idx], self.target_mg_dl,
            ) * torch.exp(self.dose_log_sd * crandom.normal(k, _DOSE_ERR, e))
            missed = crandom.uniform(k, _MISS, e) < self.miss_probability
            late = ~missed & (crandom.uniform(k, _LATE, e) < self.late_probability)
            lo, hi = self.late_minutes
            delay = lo + (hi - lo) * crandom.uniform(k, _DELAY, e)
            bolus_now = zero.index_put((idx,), torch.where(~missed & ~late, dose, 0.0))
            memory = dict(memory)
            memory["pending_u"] = memory["pending_u"].index_add(
                0, idx, torch.where(late, dose, 0.0)
            )
            due_late = torch.where(late, minute[idx] + delay, torch.inf)
            memory["pending_due"] = memory["pending_due"].index_put(
                (idx,), torch.minimum(memory["pending_due"][idx], due_late)
            )
        due = memory["pending_due"] <= minute
        if bool(due.any()):
            memory = dict(memory)
            bolus_now = bolus_now + torch.where(due, memory["pending_u"], zero)
            memory["pending_u"] = torch.where(due, zero, memory["pending_u"])
            memory["pending_due"] = torch.where(due, torch.inf, memory["pending_due"])
        hour_mark = torch.remainder(minute, 60.0) == 0
        wants_correction = (
            hour_mark
            & (cgm_mg_dl > self.correction_threshold_mg_dl)
            & (minute - memory["last_bolus_minute"] > 180.0)
        )
        if bool(wants_correction.any()):
            idx = torch.nonzero(wants_correction).flatten()
            decide = (
                crandom.uniform(keys[idx], _CORRECT, event[idx])
                < self.correction_probability_per_hour
            )
            correction = (cgm_mg_dl[idx] - self.target_mg_dl) / memory["correction_factor"][idx]
            bolus_now = bolus_now.index_add(0, idx, torch.where(decide, correction, 0.0))
        delivered = self.pump.bolus_u(bolus_now)
        if bool((delivered > 0).any()):
            memory = dict(memory)
            memory["last_bolus_minute"] = torch.where(
                delivered > 0, minute, memory["last_bolus_minute"]
            )
        memory = self._plan_suspensions(memory, minute)
        into_day = torch.remainder(minute, 1440.0)
        suspended = (into_day >= memory["suspension_start"]) & (
            into_day < memory["suspension_end"]
        )
        temporary = (into_day >= memory["temp_start"]) & (into_day < memory["temp_end"])
        factor = torch.where(temporary, memory["temp_factor"], 1.0)
        basal = self.pump.basal_u_per_min(memory["basal_u_per_min"] * factor)
        basal = torch.where(suspended, zero, basal)
        return basal + delivered, memory

    def _plan_suspensions(self, memory: ControllerState, minute: torch.Tensor) -> ControllerState:
        """Draw each subject's basal suspension and temporary basal rate (exercise, illness,
        or simply a change of mind; either may not happen) once per simulated day."""
        day = torch.div(minute, 1440.0, rounding_mode="floor").long()
        stale = day != memory["suspension_day"]
        if not bool(stale.any()):
            return memory
        keys = memory["key"]
        happens = crandom.uniform(keys, _SUSPEND, day) < self.suspension_probability_per_day
        start = 1440.0 * crandom.uniform(keys, _SUSPEND_START, day)
        lo, hi = self.suspension_minutes
        length = lo + (hi - lo) * crandom.uniform(keys, _SUSPEND_LEN, day)
        end = torch.where(happens, start + length, start)
        memory = dict(memory)
        memory["suspension_day"] = torch.where(stale, day, memory["suspension_day"])
        memory["suspension_start"] = torch.where(stale, start, memory["suspension_start"])
        memory["suspension_end"] = torch.where(stale, end, memory["suspension_end"])
        temp = crandom.uniform(keys, _TEMP, day) < self.temp_basal_probability_per_day
        t_start = 1440.0 * crandom.uniform(keys, _TEMP_START, day)
        lo, hi = self.temp_basal_minutes
        t_end = t_start + lo + (hi - lo) * crandom.uniform(keys, _TEMP_LEN, day)
        f_lo, f_hi = self.temp_basal_factor
        factor = f_lo + (f_hi - f_lo) * crandom.uniform(keys, _TEMP_FACTOR, day)
        memory["temp_start"] = torch.where(stale, t_start, memory["temp_start"])
        memory["temp_end"] = torch.where(stale & temp, t_end,
                                         torch.where(stale, t_start, memory["temp_end"]))
        memory["temp_factor"] = torch.where(stale, factor, memory["temp_factor"])
        return memory


CONTROLLERS = {"basal-bolus": BasalBolus, "clinician": ClinicianPolicy}
