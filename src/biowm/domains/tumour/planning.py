"""`biowm plan tumour`: choose a 10-day chemo/radio schedule per patient on a world model.

For each test patient alive through the planning window, the model encodes the logged
history up to the start day and every schedule within the session budgets (at most N
chemotherapy and N radiotherapy sessions) is imagined; the one with the lowest predicted
final volume is chosen. Safety rule: a model is only trusted inside its validation
domain — the range of volumes it was trained on and, per treatment, the volumes at which
that treatment was actually logged (under confounding a small tumour may never have been
treated). Out of domain, the patient keeps the clinician's schedule and the reason is
recorded; a treatment outside its logged range is not planned.

Every chosen schedule is then run in the true simulator with the patient's own noise,
against the clinician (the logged factual outcome) and the limit: the same exhaustive
search on the true simulator with the patient's true parameters (noise-free prediction).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from biowm.bench.counterfactual import histories_until
from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_write_text
from biowm.core.trajectories import Trajectories
from biowm.core.world_model import Forecast, WorldModel
from biowm.domains.tumour.cohort import ACTION_SPACE, PLAN_OFFSET, simulate_cohort
from biowm.domains.tumour.model import project
from biowm.plan.schedules import budgeted_schedules, score_schedules

DOMAIN_FILE = "validation_domain.json"


@dataclass
class ValidationDomain:
    """Volumes (cm³) seen in training, overall and at each logged treatment."""

    volume_cm3: tuple[float, float]
    treated_volume_cm3: dict[str, tuple[float, float]]

    @classmethod
    def from_trajectories(cls, data: Trajectories) -> ValidationDomain:
        valid = torch.isfinite(data.times) & data.mask[..., 0]
        volume = data.obs[..., 0]
        treated = {}
        for j, name in enumerate(data.action_space.names):
            given = volume[valid & (data.actions[..., j] > 0.5)]
            treated[name] = ((float(given.min()), float(given.max())) if len(given)
                             else (float("nan"), float("nan")))
        seen = volume[valid]
        return cls((float(seen.min()), float(seen.max())), treated)

    def save(self, directory: Path) -> None:
        raw = asdict(self)
        raw["treated_volume_cm3"] = {k: None if math.isnan(v[0]) else v
                                     for k, v in self.treated_volume_cm3.items()}
        atomic_write_text(directory / DOMAIN_FILE, json.dumps(raw, indent=2))

    @classmethod
    def load(cls, directory: Path) -> ValidationDomain:
        path = directory / DOMAIN_FILE
        if not path.is_file():
            raise InvalidInputError(f"{directory}: no {DOMAIN_FILE} (train with `biowm train "
                                    "tumour`, which records the model's validation domain)")
        raw = json.loads(path.read_text())
        nan = (float("nan"), float("nan"))
        return cls(tuple(raw["volume_cm3"]), {k: nan if v is None else tuple(v)
                                              for k, v in raw["treated_volume_cm3"].items()})

    def check(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """In domain `[B]`, treatment allowed `[B, A]`, and one reason per refused patient."""
        low, high = self.volume_cm3
        inside = (volume >= low) & (volume <= high)
        allowed = torch.stack([(volume >= lo) & (volume <= hi) for lo, hi in
                               (self.treated_volume_cm3[n] for n in ACTION_SPACE.names)], 1)
        reasons = [f"volume {float(v):.4g} cm3 outside the trained range [{low:.4g}, "
                   f"{high:.4g}]" for v in volume[~inside]]
        return inside, allowed, reasons


@dataclass
class PlanSettings:
    gamma: float = 2.0
    seed: int = 0
    n_patients: int = 200
    start_day: int = 20
    horizon_days: int = 10
    max_sessions: int = 3
    match_clinician: bool = False  # per patient, at most min(clinician's, N) sessions of each

    def __post_init__(self) -> None:
        if self.start_day < 1 or self.horizon_days < 1 or self.n_patients < 1:
            raise InvalidInputError(
                "planning needs start_day >= 1, horizon_days >= 1 and n_patients >= 1, got "
                f"{self.start_day}, {self.horizon_days}, {self.n_patients}"
            )
        if self.max_sessions < 0:
            raise InvalidInputError(f"max_sessions must be >= 0, got {self.max_sessions}")


def final_volume(forecast: Forecast) -> torch.Tensor:
    return forecast.point()[:, -1, 0]


def plan_and_evaluate(model: WorldModel, domain: ValidationDomain, s: PlanSettings
                      ) -> dict[str, Any]:
    """Plan for the eligible patients of a fresh cohort and score every policy truly."""
    days = s.start_day + s.horizon_days + 1
    cohort = simulate_cohort(s.n_patients, s.gamma, s.seed, days=days, offset=PLAN_OFFSET)
    # alive on the start day; what happens later must not decide who is compared
    eligible = torch.nonzero(cohort.length > s.start_day).flatten()
    if len(eligible) == 0:
        raise InvalidInputError("no patient is alive on the planning start day")
    start = torch.full((len(eligible),), s.start_day)
    schedules = budgeted_schedules(s.horizon_days, [s.max_sessions] * len(ACTION_SPACE))
    volume_now = cohort.volume[eligible, s.start_day]
    inside, allowed_channels, reasons = domain.check(volume_now)
    uses = schedules.amax(dim=1) > 0.5  # [P, A]: does the schedule use the treatment?
    window = slice(s.start_day, s.start_day + s.horizon_days)
    clinician = torch.stack([cohort.chemo[eligible, window], cohort.radio[eligible, window]], 2)
    within_budget = torch.ones(len(eligible), len(schedules), dtype=torch.bool)
    if s.match_clinician:
        counts = schedules.sum(dim=1)  # [P, A]
        within_budget = (counts[None] <= clinician.sum(dim=1)[:, None, :]).all(dim=2)
    allowed = ~(uses[None] & ~allowed_channels[:, None, :]).any(dim=2) & within_budget
    belief = model.encode(histories_until(cohort.to_trajectories(), eligible, start))
    cost = score_schedules(model, belief, schedules, final_volume, allowed)
    chosen = cost.argmin(dim=1)
    model_plan = torch.where(inside[:, None, None], schedules[chosen].double(), clinician)

    params = cohort.params.select(eligible)
    previous_c = cohort.concentration[eligible, s.start_day - 1]
    noise = cohort.noise[eligible, s.start_day + 1 : s.start_day + 1 + s.horizon_days]

    def truly(plan: torch.Tensor, with_noise: bool = True) -> torch.Tensor:
        return project(volume_now, previous_c, params, plan,
                       noise if with_noise else torch.zeros_like(noise), absorbing=True)[:, -1]

    p = len(schedules)
    expected = project(volume_now.repeat_interleave(p), previous_c.repeat_interleave(p),
                       params.select(torch.arange(len(eligible)).repeat_interleave(p)),
                       schedules.double().repeat(len(eligible), 1, 1),
                       torch.zeros(len(eligible) * p, s.horizon_days), absorbing=True)
    expected_final = torch.where(within_budget, expected[:, -1].reshape(len(eligible), p),
                                 torch.inf)
    oracle_plan = schedules[expected_final.argmin(1)].double()
    outcomes = {
        "clinician": truly(clinician),
        "world_model_plan": truly(model_plan),
        "oracle_plan": truly(oracle_plan),
        "no_treatment": truly(torch.zeros_like(oracle_plan)),
    }
    sessions = {"clinician": clinician.sum(1).mean(0), "world_model_plan":
                model_plan.sum(1).mean(0), "oracle_plan": oracle_plan.sum(1).mean(0),
                "no_treatment": torch.zeros(2)}
    clinician_mean = float(outcomes["clinician"].mean())
    policies = {
        name: {"mean_final_volume_cm3": round(float(v.mean()), 3),
               "median_final_volume_cm3": round(float(v.median()), 3),
               "change_vs_clinician_pct": round(100 * (float(v.mean()) / clinician_mean - 1), 2),
               "mean_sessions_chemo": round(float(sessions[name][0]), 2),
               "mean_sessions_radio": round(float(sessions[name][1]), 2)}
        for name, v in outcomes.items()
    }
    gap = float(outcomes["world_model_plan"].mean() - outcomes["oracle_plan"].mean())
    return {
        "settings": asdict(s), "n_eligible": len(eligible), "n_schedules": p,
        "budget": ("per patient min(clinician's sessions, max_sessions) of each"
                   if s.match_clinician else "max_sessions of each"),
        "capped_by_max_sessions": int((clinician.sum(1) > s.max_sessions).any(1).sum()),
        "out_of_domain": int((~inside).sum()), "out_of_domain_reasons": reasons[:20],
        "treatment_not_allowed": {n: int((~allowed_channels[:, j]).sum())
                                  for j, n in enumerate(ACTION_SPACE.names)},
        "policies": policies, "gap_to_oracle_cm3": round(gap, 3),
        "plans": {"patient": [cohort.to_trajectories().subject_ids[i] for i in eligible],
                  "schedule": model_plan.long().tolist()},
    }
