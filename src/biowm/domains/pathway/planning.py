"""Dose-schedule plans found on a surrogate, verified in libroadrunner on held-out cells.

`plan_and_verify` plans on a population of virtual cells (parameter draws seeded by
`seed`), then simulates the plan and its constant reference in the SBML model for a
fresh, held-out population (seeded by `seed + 1`) and counts the cells in which the
output stays below the threshold at every grid time of the window. When the plan or the
constant reference falls short of the target fraction, it plans again with a tighter
margin (a higher per-cell quantile and a higher required fraction on the surrogate), a
few times, and reports every attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.domains.pathway.interventions import Control, DoseSchedule
from biowm.domains.pathway.population import STATIC_PREFIX, ParameterDraws, draw_parameters
from biowm.domains.pathway.runner import simulate_population
from biowm.domains.pathway.sbml import PathwayModel
from biowm.domains.pathway.shipped import controls_for
from biowm.plan.dose_schedule import (
    DosePlan,
    DoseProblem,
    PredictiveSurrogate,
    SearchSettings,
    check_problem,
    meets,
    plan_dose_schedule,
)

BAND_QUANTILES = (0.05, 0.5, 0.95)
HELD_OUT_SEED_OFFSET = 1


@dataclass(frozen=True)
class Verification:
    """A schedule simulated for held-out cells: the fraction of completed runs meeting the
    constraint, and the output's 5/50/95 % band `[3, T]` over the grid."""

    fraction: float
    cells: int
    failed: int
    band: np.ndarray

    def to_dict(self) -> dict[str, object]:
        return {"fraction": self.fraction, "cells": self.cells, "failed_runs": self.failed,
                "band_quantiles": list(BAND_QUANTILES), "band": self.band.tolist()}


@dataclass(frozen=True)
class Attempt:
    """One planning round and its verification in the simulator."""

    problem: DoseProblem
    plan: DosePlan
    plan_verified: Verification
    constant_verified: Verification

    def meets(self, target: float) -> bool:
        return bool(meets(self.plan_verified.fraction, target)
                    and meets(self.constant_verified.fraction, target))

    def to_dict(self) -> dict[str, object]:
        return {"planning_risk": self.problem.risk, "margin_risk": self.problem.margin_risk,
                **self.plan.to_dict(), "plan_verified": self.plan_verified.to_dict(),
                "constant_verified": self.constant_verified.to_dict()}


def surrogate_controls(model: PathwayModel, surrogate: PredictiveSurrogate
                       ) -> tuple[Control, ...]:
    """The model's controls behind the surrogate's action channels, refused when a channel
    names no drug or parameter of the model or its dose range differs."""
    try:
        controls = controls_for(model, surrogate.action_space.names)
    except InvalidInputError as error:
        raise InvalidInputError(f"the surrogate's actions do not match the SBML model: "
                                f"{error}") from None
    for channel, control in zip(surrogate.action_space, controls, strict=True):
        if (channel.low, channel.high) != tuple(control.dose_range):
            raise InvalidInputError(
                f"the surrogate's action {channel.name} spans [{channel.low:g}, "
                f"{channel.high:g}] but the model declares [{control.dose_range[0]:g}, "
                f"{control.dose_range[1]:g}] {control.unit}")
    return controls


def surrogate_parameters(model: PathwayModel, surrogate: PredictiveSurrogate
                         ) -> tuple[str, ...]:
    """The model parameters behind the surrogate's static covariates (`log_ratio_<p>`)."""
    names = surrogate.static_space.names
    unknown = [n for n in names if not n.startswith(STATIC_PREFIX)
               or n[len(STATIC_PREFIX):] not in model.parameters]
    if unknown:
        raise InvalidInputError(
            f"the surrogate's static covariates {', '.join(unknown[:5])} name no parameter of "
            f"{model.name} (expected log_ratio_<parameter> for: "
            f"{', '.join(model.parameters)})")
    return tuple(n[len(STATIC_PREFIX):] for n in names)


def check_compatible(model: PathwayModel, surrogate: PredictiveSurrogate, output: str
                     ) -> tuple[tuple[Control, ...], tuple[str, ...]]:
    """Refuse a surrogate that was not trained on this model; returns its controls and
    uncertain parameters."""
    controls, parameters = surrogate_controls(model, surrogate), \
        surrogate_parameters(model, surrogate)
    model.check_species([output], "output species")
    if output not in surrogate.obs_space.names:
        raise InvalidInputError(f"the surrogate does not predict {output!r}; it predicts: "
                                f"{', '.join(surrogate.obs_space.names)}")
    unit = getattr(surrogate, "time_unit", "")
    if unit and model.time_unit and unit != model.time_unit:
        raise InvalidInputError(f"the surrogate's time unit is {unit} but the model's is "
                                f"{model.time_unit}")
    if float(surrogate.grid[0]) != 0.0:
        raise InvalidInputError(f"the surrogate's grid starts at {float(surrogate.grid[0]):g}; "
                                "simulations start at 0")
    return controls, parameters


def verify_schedule(model: PathwayModel, controls: Sequence[Control], boundaries: np.ndarray,
                    doses: np.ndarray, draws: ParameterDraws, times: np.ndarray,
                    problem: DoseProblem, workers: int | None = None,
                    on_progress: Callable[[int], None] | None = None) -> Verification:
    """Simulate segment doses `[K, A]` for every cell of `draws` and count the cells whose
    output stays below the threshold at every grid time of the window (failed runs are
    left out of the count and reported)."""
    n = draws.n
    schedule = DoseSchedule(tuple(controls), boundaries,
                            np.broadcast_to(doses, (n, *doses.shape)).copy())
    result = simulate_population(model, times, observe=[problem.output], draws=draws,
                                 schedule=schedule, workers=workers, on_progress=on_progress)
    output = result.obs[:, :, 0]
    done = ~result.failed
    window = (times >= problem.window[0]) & (times <= problem.window[1])
    safe = (output[done][:, window] < problem.threshold).all(axis=1)
    band = np.quantile(output[done], BAND_QUANTILES, axis=0) if done.any() else \
        np.full((len(BAND_QUANTILES), len(times)), np.nan)
    return Verification(fraction=float(safe.mean()) if done.any() else 0.0, cells=int(n),
                        failed=int(result.failed.sum()), band=band)


def plan_and_verify(
    model: PathwayModel,
    surrogate: PredictiveSurrogate,
    problem: DoseProblem,
    *,
    population: int = 500,
    verify: int = 1000,
    sigma: float = 0.1,
    seed: int = 0,
    attempts: int = 3,
    settings: SearchSettings | None = None,
    workers: int | None = None,
    on_rollouts: Callable[[int], None] | None = None,
    on_simulated: Callable[[int], None] | None = None,
    on_attempt: Callable[[int, Attempt], None] | None = None,
) -> list[Attempt]:
    """Plan, verify on held-out cells, and tighten until plan and constant reference both
    meet the target fraction in the simulator (or `attempts` run out)."""
    if population < 1 or verify < 1 or attempts < 1:
        raise InvalidInputError(f"need --population >= 1, --verify >= 1 and attempts >= 1, "
                                f"got {population}, {verify}, {attempts}")
    controls, parameters = check_compatible(model, surrogate, problem.output)
    check_problem(surrogate, problem, None)
    settings = settings or SearchSettings(seed=seed)
    planning = draw_parameters(model, population, sigma, parameters, seed)
    held_out = draw_parameters(model, verify, sigma, parameters, seed + HELD_OUT_SEED_OFFSET)
    static = torch.from_numpy(planning.log_ratio).float()
    times = surrogate.grid.double().numpy()
    done: list[Attempt] = []
    for round_ in range(attempts):
        tight = replace(problem, risk=problem.risk * 0.5**round_,
                        margin_risk=problem.margin_risk * 0.5**round_)
        plan = plan_dose_schedule(surrogate, static, tight, settings, on_rollouts)
        checks = [verify_schedule(model, controls, plan.boundaries, doses, held_out, times,
                                  problem, workers, on_simulated)
                  for doses in (plan.doses, plan.constant_segment_doses)]
        attempt = Attempt(tight, plan, *checks)
        done.append(attempt)
        if on_attempt is not None:
            on_attempt(round_, attempt)
        if attempt.meets(problem.target_fraction):
            break
    return done
