"""Train a trajectory surrogate of an SBML pathway and score it against libroadrunner.

Scoring simulates *fresh* virtual cells (parameter draws and dose schedules from a seed the
training data did not use) with the same settings the training data were made with (read
from the data's manifest and kept in the model), then compares:

- conditioned on each cell's draws: NRMSE per species (RMSE over the range of that species
  in the test set) and overall (mean over species), and 90 % interval coverage;
- the population forecast (draws hidden): 90 % coverage and CRPS (also over the range);
- whether the ensemble knows where it is unsure: the rank correlation, over test cells,
  of the ensemble's disagreement with the actual error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.trajectories import Trajectories
from biowm.domains.pathway.interventions import DoseSchedule, random_schedule
from biowm.domains.pathway.population import STATIC_PREFIX, ParameterDraws, draw_parameters
from biowm.domains.pathway.runner import PopulationResult, simulate_population
from biowm.domains.pathway.sbml import PathwayModel
from biowm.domains.pathway.shipped import controls_for
from biowm.models.trajectory_surrogate import SurrogateConfig, TrajectorySurrogate

SIMULATION_KEYS = ("observe", "intervene", "t_end", "points", "segments", "sigma",
                   "uncertain", "seed")
Z90 = 1.6448536269514722


def split_runs(data: Trajectories, val_fraction: float, seed: int
               ) -> tuple[Trajectories, Trajectories]:
    """Random train/validation split of the virtual cells (seeded)."""
    if not 0.0 < val_fraction < 0.5:
        raise InvalidInputError(f"--val-fraction must be in (0, 0.5), got {val_fraction}")
    n_val = max(1, int(round(val_fraction * len(data))))
    if len(data) - n_val < 2:
        raise InvalidInputError(f"need more trajectories to train, got {len(data)}")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.select(order[n_val:]), data.select(order[:n_val])


def train_surrogate(data: Trajectories, simulation: dict[str, Any], config: SurrogateConfig,
                    val_fraction: float = 0.1) -> TrajectorySurrogate:
    """Fit the surrogate on simulated trajectories; remembers how they were simulated."""
    train, val = split_runs(data, val_fraction, config.seed)
    model = TrajectorySurrogate(config)
    model.fit(train, val)
    model.provenance = {key: simulation[key] for key in SIMULATION_KEYS if key in simulation}
    model.provenance["model"] = simulation.get("model", "")
    model.provenance["sbml_sha256"] = simulation.get("sbml_sha256", "")
    return model


@dataclass
class HeldOut:
    """Fresh libroadrunner runs for scoring, and what the surrogate needs to predict them."""

    result: PopulationResult
    static: torch.Tensor
    actions: torch.Tensor


def population_like_training(surrogate: TrajectorySurrogate, model: PathwayModel, n: int,
                             seed: int) -> tuple[ParameterDraws, DoseSchedule]:
    """`n` virtual cells drawn and scheduled as the surrogate's training data were."""
    settings = surrogate.provenance
    parameters = [name.removeprefix(STATIC_PREFIX) for name in surrogate.static_space.names]
    model.check_parameters(parameters, "surrogate covariate parameter")
    controls = controls_for(model, surrogate.action_space.names)
    draws = draw_parameters(model, n, float(settings["sigma"]), parameters, seed)
    schedule = random_schedule(controls, n, float(settings["t_end"]),
                               int(settings["segments"]), seed)
    return draws, schedule


def simulate_held_out(surrogate: TrajectorySurrogate, model: PathwayModel, n: int,
                      seed: int) -> HeldOut:
    """Simulate `n` new virtual cells as the training data were simulated, new seed."""
    settings = surrogate.provenance
    missing = [key for key in ("t_end", "points", "segments", "sigma") if key not in settings]
    if missing:
        raise InvalidInputError(f"the surrogate does not record how its data were simulated "
                                f"(missing {missing}); train it on `biowm simulate pathway` "
                                "output")
    if int(seed) == int(settings.get("seed", -1)):
        raise InvalidInputError(f"--seed {seed} is the training data's seed; held-out cells "
                                "need another")
    observe = surrogate.obs_space.names
    model.check_species(observe, "surrogate output species")
    draws, schedule = population_like_training(surrogate, model, n, seed)
    grid = surrogate.grid.double().numpy()
    result = simulate_population(model, grid, observe=observe, draws=draws, schedule=schedule)
    keep = ~result.failed
    return HeldOut(result, torch.from_numpy(draws.log_ratio[keep]).float(),
                   torch.from_numpy(result.doses[keep]).float())


def gaussian_crps(mean: torch.Tensor, sd: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Closed-form CRPS of a normal forecast, elementwise."""
    z = (truth - mean) / sd
    normal = torch.distributions.Normal(0.0, 1.0)
    return sd * (z * (2 * normal.cdf(z) - 1) + 2 * normal.log_prob(z).exp()
                 - 1 / math.sqrt(math.pi))


def _rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def score_surrogate(surrogate: TrajectorySurrogate, held_out: HeldOut) -> dict[str, Any]:
    """NRMSE per species and overall, 90 % coverage, population coverage and CRPS."""
    truth = torch.from_numpy(held_out.result.obs[~held_out.result.failed]).float()
    species = surrogate.obs_space.names
    span = (truth.amax(dim=(0, 1)) - truth.amin(dim=(0, 1))).clamp_min(1e-12)
    mean, sd = surrogate.predictive(held_out.static, held_out.actions)
    nrmse = ((mean - truth) ** 2).mean(dim=(0, 1)).sqrt() / span
    inside = ((truth - mean).abs() <= Z90 * sd).float()
    pop_mean, pop_sd = surrogate.predictive(None, held_out.actions)
    pop_inside = ((truth - pop_mean).abs() <= Z90 * pop_sd).float()
    pop_crps = gaussian_crps(pop_mean, pop_sd, truth).mean(dim=(0, 1)) / span
    cond_crps = gaussian_crps(mean, sd, truth).mean(dim=(0, 1)) / span
    pop_nrmse = ((pop_mean - truth) ** 2).mean(dim=(0, 1)).sqrt() / span
    ensemble_mean, ensemble_sd = surrogate.predictive(held_out.static, held_out.actions,
                                                      ensemble=True)
    ensemble_nrmse = ((ensemble_mean - truth) ** 2).mean(dim=(0, 1)).sqrt() / span
    ensemble_inside = ((truth - ensemble_mean).abs() <= Z90 * ensemble_sd).float()
    error = ((mean - truth).abs() / span).mean(dim=(1, 2))
    disagreement = (surrogate.epistemic_sd(held_out.static, held_out.actions) / span
                    ).mean(dim=(1, 2))
    return {
        "n_test": int(truth.shape[0]),
        "failed_runs": int(held_out.result.failed.sum()),
        "nrmse": {**{name: float(v) for name, v in zip(species, nrmse, strict=True)},
                  "overall": float(nrmse.mean())},
        "nrmse_overall": float(nrmse.mean()),
        "coverage90": float(inside.mean()),
        "coverage90_by_species": {n: float(v) for n, v in
                                  zip(species, inside.mean(dim=(0, 1)), strict=True)},
        "crps_normalised": float(cond_crps.mean()),
        "population": {"nrmse_overall": float(pop_nrmse.mean()),
                       "coverage90": float(pop_inside.mean()),
                       "crps_normalised": float(pop_crps.mean()),
                       "crps_by_species": {n: float(v) for n, v in
                                           zip(species, pop_crps, strict=True)}},
        "ensemble_error_rank_correlation": _rank_correlation(disagreement, error),
        # The members' calibrated mixture, which the (default) distilled student imitates.
        "ensemble": {"nrmse_overall": float(ensemble_nrmse.mean()),
                     "coverage90": float(ensemble_inside.mean())},
        "predictive": "distilled student" if surrogate.student else "ensemble",
    }


def plot_held_out(surrogate: TrajectorySurrogate, held_out: HeldOut, path: Any,
                  species: str | None = None, cells: int = 4) -> None:
    """A few held-out cells: libroadrunner truth vs the surrogate's mean and 90 % band,
    with draws known (top) and hidden (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from biowm.core.io import atomic_path

    names = surrogate.obs_space.names
    channel = names.index(species) if species in names else len(names) - 1
    truth = held_out.result.obs[~held_out.result.failed][:cells, :, channel]
    grid = surrogate.grid.numpy()
    rows = (("draws known", held_out.static[:cells]), ("population (draws hidden)", None))
    figure, axes = plt.subplots(2, cells, figsize=(3.2 * cells, 5.4), sharex=True,
                                squeeze=False)
    for row, (label, static) in enumerate(rows):
        mean, sd = surrogate.predictive(static, held_out.actions[:cells])
        for col in range(min(cells, truth.shape[0])):
            axis = axes[row][col]
            m, s = mean[col, :, channel].numpy(), sd[col, :, channel].numpy()
            axis.fill_between(grid, m - Z90 * s, m + Z90 * s, color="C0", alpha=0.25)
            axis.plot(grid, m, color="C0", lw=1.2, label="surrogate")
            axis.plot(grid, truth[col], "k--", lw=1, label="libroadrunner")
            axis.set_title(f"cell {col}, {label}", fontsize=8)
    axes[0][0].set_ylabel(names[channel])
    axes[1][0].set_ylabel(names[channel])
    axes[0][0].legend(fontsize=7)
    for axis in axes[1]:
        axis.set_xlabel(f"time ({surrogate.time_unit})")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def surrogate_results_rows(scores: dict[str, Any]) -> list[str]:
    """Markdown rows: NRMSE per species and the summary line."""
    rows = ["| species | NRMSE (draws known) | 90 % coverage | population CRPS / range |",
            "|---|---|---|---|"]
    for name, value in scores["nrmse"].items():
        if name == "overall":
            continue
        rows.append(f"| {name} | {value:.2%} | {scores['coverage90_by_species'][name]:.1%} | "
                    f"{scores['population']['crps_by_species'][name]:.4f} |")
    population = scores["population"]
    rows.append(f"| **overall** | **{scores['nrmse_overall']:.2%}** | "
                f"**{scores['coverage90']:.1%}** | **{population['crps_normalised']:.4f}** |")
    ensemble = scores["ensemble"]
    rows += ["", f"- scored: the {scores['predictive']}; the ensemble's own mixture: NRMSE "
             f"{ensemble['nrmse_overall']:.2%}, 90 % coverage {ensemble['coverage90']:.1%}",
             f"- population forecast (draws hidden): NRMSE "
             f"{population['nrmse_overall']:.2%}, 90 % coverage {population['coverage90']:.1%}",
             f"- ensemble disagreement vs actual error, rank correlation over cells: "
             f"{scores['ensemble_error_rank_correlation']:.2f}"]
    return rows


def time_simulators(surrogate: TrajectorySurrogate, model: PathwayModel, n: int, seed: int,
                    roadrunner_runs: int) -> dict[str, float]:
    """Seconds per trajectory: libroadrunner (sequential, `roadrunner_runs` runs, the same
    schedules) against the surrogate's calibrated predictive for all `n` at once."""
    import time

    draws, schedule = population_like_training(surrogate, model, n, seed)
    grid = surrogate.grid.double().numpy()
    subset = np.arange(min(roadrunner_runs, n))
    started = time.perf_counter()
    simulate_population(model, grid, observe=surrogate.obs_space.names,
                        draws=draws.select(subset),
                        schedule=DoseSchedule(schedule.controls, schedule.boundaries,
                                              schedule.doses[subset]), workers=1)
    roadrunner = (time.perf_counter() - started) / subset.size
    static = torch.from_numpy(draws.log_ratio).float()
    actions = torch.from_numpy(schedule.at(grid)).float()
    seconds = {}
    for ensemble in (False, True):
        surrogate.predictive(static[:16], actions[:16], ensemble=ensemble)  # warm-up
        started = time.perf_counter()
        surrogate.predictive(static, actions, ensemble=ensemble)
        seconds[ensemble] = (time.perf_counter() - started) / n
    learned = seconds[False]
    return {"roadrunner_ms_per_trajectory": 1e3 * roadrunner,
            "surrogate_ms_per_trajectory": 1e3 * learned,
            "speedup": roadrunner / learned,
            "predictive": "distilled student" if surrogate.student else "ensemble",
            "ensemble_ms_per_trajectory": 1e3 * seconds[True],
            "batch": n, "roadrunner_runs": int(subset.size)}
