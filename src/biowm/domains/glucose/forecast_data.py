"""Glucose forecast-evaluation data, made with the true simulator: factual and counterfactual.

`make_forecast_benchmark` simulates a logged cohort (as `cohort.simulate_shard` does) and cuts
it into factual windows (history, logged future actions, future observations). It also
builds counterfactual windows at meal times: for each meal the future insulin is changed
(bolus skipped, bolus doubled, basal suspended for 2 h) and the true future under each change
is obtained by branching the simulator from a copy of its state at the window's origin.

Why branching is exact: the meals come from the scenario stored in the simulator state and
the CGM noise is counter-based per subject and sample index, so a branch replays the same
meals and the same sensor-noise path as the logged run; only the insulin differs. Branches
replay insulin minute by minute as the pump delivered it (a bolus within one minute), so the
unmodified branch reproduces the log exactly; the 5-min actions a model sees are the means of
the branch's per-minute rates, the same summary the log keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from biowm.core.errors import InvalidInputError
from biowm.core.simulator import State
from biowm.core.trajectories import Trajectories
from biowm.domains.glucose.cohort import MINUTES_PER_DAY, simulate_shard
from biowm.domains.glucose.controllers import CONTROLLERS
from biowm.domains.glucose.scenario import MealSchedule
from biowm.domains.glucose.simulator import GlucoseSimulator, bg_mg_dl
from biowm.models.windows import Windows, make_windows, windows_at

BRANCHES = ("skipped_bolus", "doubled_bolus", "basal_suspension")
SUSPENSION_STEPS = 24  # sensor samples without insulin in the basal-suspension branch (2 h)


@dataclass
class CounterfactualWindows:
    """Windows at meal times, alternative futures and the simulator's true response to each.

    `windows` are factual (history, logged future actions and observations, origins at the
    sample at or just before a meal). Per branch name: `actions[name] [N, H, A]` (the log's
    action space; carbs as logged) and the true `obs[name] [N, H, D]` (CGM and plasma BG).
    `origin_states` (the simulator state at each origin minute), the logged per-minute
    insulin from the origin on `[N, H·sample]` and the delivered basal rate `[N]` allow
    branching further with `replay_insulin`.
    """

    windows: Windows
    actions: dict[str, torch.Tensor]
    obs: dict[str, torch.Tensor]
    origin_states: State
    insulin_u_per_min: torch.Tensor
    basal_u_per_min: torch.Tensor

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def meal_carbs_g(self) -> torch.Tensor:
        """Carbs announced in the first future interval (the meal of each window), `[N]`."""
        carbs = self.windows.history.action_space.index("carbs_g")
        return self.windows.future_actions[:, 0, carbs]

    @property
    def bolus_u(self) -> torch.Tensor:
        """Logged bolus insulin over each window's horizon, `[N]` (U); 0 = a missed bolus,
        where the bolus branches equal the factual future."""
        return (self.insulin_u_per_min - self.basal_u_per_min[:, None]).clamp(min=0.0).sum(1)

    def branch(self, name: str) -> Windows:
        """The windows with the future actions and observations of branch `name`."""
        if name not in self.actions:
            raise InvalidInputError(f"unknown branch {name!r}; branches are {list(self.actions)}")
        w = self.windows
        return Windows(
            history=w.history, future_actions=self.actions[name], future_obs=self.obs[name],
            future_mask=torch.ones_like(self.obs[name], dtype=torch.bool),
            subject_index=w.subject_index, origin_index=w.origin_index,
        )


@dataclass
class GlucoseForecastSet:
    """A logged run, its factual windows and its meal-time counterfactual windows."""

    logs: Trajectories
    windows: Windows
    counterfactual: CounterfactualWindows
    config: dict[str, Any] = field(default_factory=dict)


def meal_origins(
    meal_minute: torch.Tensor, n_samples: int, sample_minutes: int, history_steps: int,
    horizon_steps: int,
) -> torch.Tensor:
    """`[B, n_samples]` True at the sample at or just before each meal announcement.

    Only origins with a full history (`history_steps` samples, the origin included) and
    `horizon_steps` samples after them in the log are kept; meals in one interval share one.
    """
    b = meal_minute.shape[0]
    finite = torch.isfinite(meal_minute)
    sample = torch.div(
        torch.where(finite, meal_minute, -1.0), sample_minutes, rounding_mode="floor"
    ).long()
    keep = finite & (sample >= history_steps - 1) & (sample <= n_samples - 1 - horizon_steps)
    origins = torch.zeros(b, n_samples, dtype=torch.bool)
    rows = torch.arange(b)[:, None].expand_as(sample)
    origins[rows[keep], sample[keep]] = True
    return origins


def branch_insulin(
    insulin_u_per_min: torch.Tensor, basal_u_per_min: torch.Tensor, sample_minutes: int
) -> dict[str, torch.Tensor]:
    """Per-minute insulin `[N, M]` of each counterfactual branch, from the logged one.

    The bolus part is what exceeds the delivered basal rate: `skipped_bolus` removes it,
    `doubled_bolus` doubles it, `basal_suspension` delivers nothing for the first
    `SUSPENSION_STEPS` samples and the logged insulin afterwards.
    """
    basal = basal_u_per_min[:, None]
    bolus = (insulin_u_per_min - basal).clamp(min=0.0)
    suspended = insulin_u_per_min.clone()
    suspended[:, : SUSPENSION_STEPS * sample_minutes] = 0.0
    return {
        "skipped_bolus": torch.minimum(insulin_u_per_min, basal),
        "doubled_bolus": insulin_u_per_min + bolus,
        "basal_suspension": suspended,
    }


def per_minute_insulin(actions: torch.Tensor, sample_minutes: int) -> torch.Tensor:
    """5-min actions `[N, H, A]` -> per-minute insulin `[N, H·sample]`, each rate held.

    For replaying a planner's (or any model-level) action sequence on the true simulator.
    """
    return actions[..., 0].to(torch.float64).repeat_interleave(sample_minutes, dim=1)


def replay_insulin(
    simulator: GlucoseSimulator, states: State, insulin_u_per_min: torch.Tensor
) -> torch.Tensor:
    """True future `[N, H, 2]` (CGM, plasma BG) from `states` under per-minute insulin.

    `insulin_u_per_min [N, H·sample]` starts at the states' minute (a sample boundary); the
    carbs action is 0 because meals come from the scenario in the state. All N branches
    step as one batch.
    """
    sample = simulator.sensor.sample_minutes
    n, minutes = insulin_u_per_min.shape
    if minutes % sample:
        raise InvalidInputError(
            f"replay needs whole sensor periods: {minutes} minutes is not a multiple of {sample}"
        )
    obs = torch.empty(n, minutes // sample, 2, dtype=torch.float32)
    zeros = torch.zeros(n, dtype=torch.float64)
    insulin = insulin_u_per_min.to(torch.float64)
    state = states
    for minute in range(minutes):
        state = simulator.step(state, torch.stack([insulin[:, minute], zeros], dim=1), 1.0)
        k, at_sample = divmod(minute + 1, sample)
        if at_sample == 0:
            obs[:, k - 1, 0] = simulator.observe(state)[:, 0].float()
            obs[:, k - 1, 1] = bg_mg_dl(state).float()
    return obs


class _OriginRecorder:
    """`simulate_shard` hook: keeps per-minute insulin and the states at meal origins."""

    def __init__(
        self, n_subjects: int, n_samples: int, sample_minutes: int, history_steps: int,
        horizon_steps: int,
    ) -> None:
        self.shape = (n_samples, sample_minutes, history_steps, horizon_steps)
        self.insulin = torch.zeros(n_subjects, n_samples * sample_minutes, dtype=torch.float64)
        self.origins = torch.zeros(n_subjects, n_samples, dtype=torch.bool)
        self.states: list[State] = []
        self.subject: list[torch.Tensor] = []
        self.origin: list[int] = []

    def __call__(self, minute: int, state: State, insulin: torch.Tensor) -> None:
        n_samples, sample, history_steps, horizon_steps = self.shape
        if minute == 0:
            self.origins = meal_origins(
                state["meal_minute"], n_samples, sample, history_steps, horizon_steps
            )
        self.insulin[:, minute] = insulin
        k, at_sample = divmod(minute, sample)
        if at_sample == 0 and bool(self.origins[:, k].any()):
            rows = torch.nonzero(self.origins[:, k]).flatten()
            self.states.append({name: value[rows] for name, value in state.items()})
            self.subject.append(rows)
            self.origin.extend([k] * len(rows))


def make_forecast_benchmark(
    patients: list[str],
    days: int,
    seed: int,
    history_steps: int,
    horizon_steps: int,
    stride: int,
    controller: str = "clinician",
    simulator: GlucoseSimulator | None = None,
) -> GlucoseForecastSet:
    """Simulate `patients` for `days` under `controller` and cut forecast windows.

    `simulator` defaults to 5-min CGM and the random daily meal scenario over `days`; a
    given one needs a meal scenario covering `days`. Factual windows start every `stride`
    samples; counterfactual ones at every meal with a full history and horizon (see
    `meal_origins`), each with the branches in `BRANCHES`, rolled out as one batch.
    Bad requests fail before anything is simulated.
    """
    if controller not in CONTROLLERS:
        raise InvalidInputError(
            f"unknown controller {controller!r}; choose one of {', '.join(CONTROLLERS)}"
        )
    if days < 1 or not patients:
        raise InvalidInputError("make_forecast_benchmark needs >= 1 patient and >= 1 day")
    if history_steps < 1 or horizon_steps < 1 or stride < 1:
        raise InvalidInputError("history_steps, horizon_steps and stride must be >= 1")
    sim = simulator or GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=days)
    if sim.meal_schedule is None or sim.scenario_days < days:
        raise InvalidInputError(
            f"counterfactual windows start at meals: the simulator needs a meal scenario "
            f"covering all {days} day(s)"
        )
    sample = sim.sensor.sample_minutes
    n_samples = days * MINUTES_PER_DAY // sample
    if history_steps + horizon_steps > n_samples:
        raise InvalidInputError(
            f"{days} day(s) give {n_samples} samples, fewer than the {history_steps} history "
            f"+ {horizon_steps} horizon steps of one window"
        )
    recorder = _OriginRecorder(len(patients), n_samples, sample, history_steps, horizon_steps)
    logs = simulate_shard(
        sim, CONTROLLERS[controller](), patients, days, seed, on_step=recorder
    )
    windows = make_windows(logs, history_steps, horizon_steps, stride)
    if not recorder.states:
        raise InvalidInputError(
            "no meal has a full history and horizon in the log: simulate more days or use "
            "shorter windows"
        )

    subject = torch.cat(recorder.subject)
    origin = torch.tensor(recorder.origin, dtype=torch.long)
    order = torch.argsort(subject * n_samples + origin)  # subject-major, like make_windows
    subject, origin = subject[order], origin[order]
    states = {
        name: torch.cat([s[name] for s in recorder.states])[order]
        for name in recorder.states[0]
    }
    minutes = torch.arange(horizon_steps * sample)
    logged = recorder.insulin[subject[:, None], origin[:, None] * sample + minutes[None, :]]
    # The delivered basal rate is the one the pump gives most of the time (boluses last a
    # minute, suspensions a few hours a day): controller-agnostic, exact for fixed basal.
    basal = torch.mode(recorder.insulin, dim=1).values[subject]
    branches = branch_insulin(logged, basal, sample)

    n = len(subject)
    stacked = torch.cat([branches[name] for name in BRANCHES])
    repeated = {name: value.repeat(len(BRANCHES), *([1] * (value.dim() - 1)))
                for name, value in states.items()}
    futures = replay_insulin(sim, repeated, stacked).split(n)

    cf_windows = windows_at(logs, subject, origin, history_steps, horizon_steps)
    carbs = cf_windows.future_actions[..., 1:]
    actions = {
        name: torch.cat(
            [branches[name].reshape(n, horizon_steps, sample).mean(dim=2, keepdim=True)
             .float(), carbs], dim=2,
        )
        for name in BRANCHES
    }
    counterfactual = CounterfactualWindows(
        windows=cf_windows, actions=actions, obs=dict(zip(BRANCHES, futures, strict=True)),
        origin_states=states, insulin_u_per_min=logged, basal_u_per_min=basal,
    )
    config = {
        "patients": list(patients), "days": days, "seed": seed, "controller": controller,
        "history_steps": history_steps, "horizon_steps": horizon_steps, "stride": stride,
        "sample_minutes": sample,
    }
    return GlucoseForecastSet(logs, windows, counterfactual, config)
