"""`biowm benchmark tumour`: counterfactual accuracy under time-varying confounding.

The CRN / Causal Transformer protocol: for each confounding strength γ and seed, 10,000
training, 1,000 validation and 1,000 test patients (up to 60 days); models learn from the
factual logs only and are scored on the test patients' counterfactuals — one-step-ahead
under all four treatment options, and τ-step-ahead (τ = 2…6) under the sliding-treatment
sequences — as RMSE normalised by the death volume (1150.35 cm³), in %. Published
figures (Causal Transformer README, after its simulator fix) are printed beside ours.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from biowm.bench.counterfactual import counterfactual_point_forecasts
from biowm.core.executor import make_executor, ordered
from biowm.core.io import atomic_write_text, check_writable_dir
from biowm.core.manifest import Manifest
from biowm.core.world_model import WorldModel
from biowm.domains.tumour.cohort import TEST_OFFSET, VAL_OFFSET, TumourCohort, simulate_cohort
from biowm.domains.tumour.counterfactual import (
    CounterfactualSet,
    one_step_counterfactuals,
    sliding_counterfactuals,
)
from biowm.domains.tumour.model import DEATH_VOLUME_CM3
from biowm.domains.tumour.planning import ValidationDomain
from biowm.domains.tumour.world_model import MODEL_NAMES, TRAINING, make_model

TAUS = (2, 3, 4, 5, 6)
# Normalised RMSE (%) published in the Causal Transformer README (tables after the
# simulator fix). One step: γ = 0, 1, 2, 3, 4. Sliding treatment: γ -> {τ: value}.
PUBLISHED_ONE_STEP = {
    "CRN": (0.755, 0.788, 0.881, 1.062, 1.358),
    "RMSN": (0.834, 0.860, 1.000, 1.131, 1.434),
    "G-Net": (0.795, 0.841, 0.946, 1.057, 1.319),
    "CT": (0.770, 0.783, 0.864, 1.098, 1.413),
}
PUBLISHED_SLIDING = {
    "CRN": {0: {2: 0.671, 6: 0.807}, 2: {2: 0.741, 6: 1.047}, 4: {2: 1.151, 6: 1.827}},
    "RMSN": {0: {2: 0.742, 6: 0.889}, 2: {2: 0.827, 6: 1.081}, 4: {2: 1.276, 6: 1.436}},
    "CT": {0: {2: 0.681, 6: 0.789}, 2: {2: 0.713, 6: 0.909}, 4: {2: 1.274, 6: 2.052}},
}
MODELS = MODEL_NAMES


@dataclass
class TumourBenchmarkSettings:
    gammas: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_train: int = 10_000
    n_val: int = 1_000
    n_test: int = 1_000
    days: int = 60
    projection_horizon: int = 5
    max_epochs: int = TRAINING["max_epochs"]
    patience: int = TRAINING["patience"]
    batch_size: int = TRAINING["batch_size"]
    lr_schedule: str = TRAINING["lr_schedule"]
    latent_dim: int = 64
    hidden_dim: int = 64
    models: tuple[str, ...] = MODELS
    workers: int = 2

    @classmethod
    def quick(cls) -> TumourBenchmarkSettings:
        """A few-minute version for tests and smoke runs (not comparable to the tables)."""
        return cls(gammas=(0.0, 4.0), seeds=(0,), n_train=300, n_val=60, n_test=60,
                   max_epochs=3, patience=2, workers=1)


@dataclass
class CellJob:
    """One (γ, seed) cell: simulate, train every model, score every model."""

    gamma: float
    seed: int
    settings: TumourBenchmarkSettings
    model_dir: str | None = None
    progress: bool = False


@dataclass
class CellResult:
    gamma: float
    seed: int
    treatment_rate: float
    one_step: dict[str, float] = field(default_factory=dict)
    sliding: dict[str, dict[int, float]] = field(default_factory=dict)
    fit_seconds: dict[str, float] = field(default_factory=dict)
    n_one_step: int = 0
    n_sliding: int = 0


def nrmse_percent(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """RMSE as % of the death volume (the published normalisation)."""
    error = (prediction.double() - truth.double()) ** 2
    return float(error.mean().sqrt()) / DEATH_VOLUME_CM3 * 100.0


def score(model: WorldModel, cohort: TumourCohort, cf: CounterfactualSet) -> dict[int, float]:
    """NRMSE (%) per scored step τ over every counterfactual of the set."""
    data = cohort.to_trajectories()
    prediction = counterfactual_point_forecasts(model, data, cf.subject, cf.origin, cf.actions)
    return {tau: nrmse_percent(prediction[:, :, tau - 1, 0], cf.outcomes[:, :, tau - 1])
            for tau in cf.scored_steps}


def cohorts(gamma: float, seed: int, s: TumourBenchmarkSettings
            ) -> tuple[TumourCohort, TumourCohort, TumourCohort]:
    """Train, validation and test patients of one cell (disjoint patient indices)."""
    extra = s.projection_horizon + 1
    return (simulate_cohort(s.n_train, gamma, seed, s.days),
            simulate_cohort(s.n_val, gamma, seed, s.days, offset=VAL_OFFSET),
            simulate_cohort(s.n_test, gamma, seed, s.days, offset=TEST_OFFSET,
                            extra_noise_days=extra))


def run_cell(job: CellJob) -> CellResult:
    """Top level so a worker process can run it."""
    s = job.settings
    train, val, test = cohorts(job.gamma, job.seed, s)
    one_step = one_step_counterfactuals(test)
    sliding = sliding_counterfactuals(test, s.projection_horizon)
    result = CellResult(job.gamma, job.seed, train.treatment_rate(),
                        n_one_step=one_step.outcomes[..., 0].numel(),
                        n_sliding=sliding.outcomes[..., 0].numel())
    for name in s.models:
        model = make_model(name, horizon_steps=s.projection_horizon + 1, seed=job.seed,
                           latent_dim=s.latent_dim, hidden_dim=s.hidden_dim)
        started = time.perf_counter()
        options = {} if name == "linear" else {
            "max_epochs": s.max_epochs, "patience": s.patience, "batch_size": s.batch_size,
            "lr_schedule": s.lr_schedule, "progress": job.progress,
            "description": f"γ={job.gamma:g} seed {job.seed} {name}",
        }
        model.fit(train.to_trajectories(), val.to_trajectories(), **options)
        result.fit_seconds[name] = round(time.perf_counter() - started, 1)
        result.one_step[name] = score(model, test, one_step)[1]
        result.sliding[name] = score(model, test, sliding)
        if job.model_dir is not None:
            directory = Path(job.model_dir) / f"gamma{job.gamma:g}_seed{job.seed}" / name
            model.save(directory)
            ValidationDomain.from_trajectories(train.to_trajectories()).save(directory)
    return result


def summarise(cells: list[CellResult], settings: TumourBenchmarkSettings) -> dict[str, Any]:
    """Mean and sd over seeds per γ and model, in the results.json layout."""
    out: dict[str, Any] = {}
    for gamma in settings.gammas:
        mine = [c for c in cells if c.gamma == gamma]
        if not mine:
            continue
        entry: dict[str, Any] = {
            "treatment_rate": _stats([c.treatment_rate for c in mine]),
            "models": {},
        }
        for name in settings.models:
            entry["models"][name] = {
                "one_step_nrmse": _stats([c.one_step[name] for c in mine]),
                "sliding_nrmse": {str(tau): _stats([c.sliding[name][tau] for c in mine])
                                  for tau in TAUS[: settings.projection_horizon]},
                "fit_seconds": _stats([c.fit_seconds[name] for c in mine]),
            }
        out[f"{gamma:g}"] = entry
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    t = torch.tensor(values, dtype=torch.float64)
    sd = float(t.std()) if len(values) > 1 else 0.0
    return {"mean": round(float(t.mean()), 4), "sd": round(sd, 4),
            "per_seed": [round(v, 4) for v in values]}


def markdown_tables(summary: dict[str, Any], settings: TumourBenchmarkSettings) -> str:
    """One-step and sliding-treatment tables, ours (mean ± sd) beside the published ones."""
    gammas = list(settings.gammas)
    counts = ", ".join(
        f"γ={g:g}: {len(summary[f'{g:g}']['treatment_rate']['per_seed'])}" for g in gammas)
    lines = [f"One-step-ahead counterfactual NRMSE (%), mean ± sd over seeds ({counts})", "",
             "| model | " + " | ".join(f"γ={g:g}" for g in gammas) + " |",
             "|---|" + "---|" * len(gammas)]
    for name in settings.models:
        cells = [summary[f"{g:g}"]["models"][name]["one_step_nrmse"] for g in gammas]
        lines.append(f"| biowm {name} | " + " | ".join(_pm(c) for c in cells) + " |")
    for name, values in PUBLISHED_ONE_STEP.items():
        cells = [f"{values[int(g)]:.3f}" if float(g).is_integer() and 0 <= g <= 4 else "–"
                 for g in gammas]
        lines.append(f"| {name} (published) | " + " | ".join(cells) + " |")
    lines += ["", "Sliding-treatment τ-step-ahead NRMSE (%)", "",
              "| γ | model | " + " | ".join(f"τ={t}" for t in TAUS) + " |",
              "|---|---|" + "---|" * len(TAUS)]
    for g in gammas:
        for name in settings.models:
            sliding = summary[f"{g:g}"]["models"][name]["sliding_nrmse"]
            lines.append(f"| {g:g} | biowm {name} | "
                         + " | ".join(_pm(sliding[str(t)]) if str(t) in sliding else "–"
                                      for t in TAUS) + " |")
        for name, table in PUBLISHED_SLIDING.items():
            if g in table:
                lines.append(f"| {g:g} | {name} (published) | "
                             + " | ".join(f"{table[g][t]:.3f}" if t in table[g] else "–"
                                          for t in TAUS) + " |")
    return "\n".join(lines) + "\n"


def _pm(stats: dict[str, Any]) -> str:
    return f"{stats['mean']:.3f} ± {stats['sd']:.3f}"


def run_benchmark(out: Path, settings: TumourBenchmarkSettings, log: Any = print
                  ) -> dict[str, Any]:
    """Every (γ, seed) cell, in worker processes when `settings.workers` > 1."""
    out = check_writable_dir(out)
    started = time.perf_counter()
    # seed-major, so that an interrupted run already covers every γ
    jobs = [CellJob(g, seed, settings, str(out / "models") if seed == settings.seeds[0] else None,
                    progress=settings.workers == 1)
            for seed in settings.seeds for g in settings.gammas]
    cells: list[CellResult] = []
    for cell in ordered(make_executor(settings.workers).imap(run_cell, jobs)):
        log(f"γ={cell.gamma:g} seed {cell.seed}: one-step "
            + ", ".join(f"{k} {v:.3f}" for k, v in cell.one_step.items()))
        cells.append(cell)
        _write(out, settings, cells, started, complete=len(cells) == len(jobs))
    return json.loads((out / "results.json").read_text())


def _write(out: Path, settings: TumourBenchmarkSettings, cells: list[CellResult],
           started: float, complete: bool) -> None:
    """results.json and tables.md from the cells finished so far (`complete` says if all)."""
    summary = summarise(cells, settings)
    done = TumourBenchmarkSettings(**{**asdict(settings), "gammas": tuple(
        g for g in settings.gammas if f"{g:g}" in summary)})
    tables = markdown_tables(summary, done)
    results = {
        "complete": complete,
        "settings": asdict(settings),
        "metric": "RMSE / 1150.35 cm3 x 100 (%), counterfactual outcomes of test patients",
        "gammas": summary,
        "cells": [asdict(c) for c in cells],
        "published": {"one_step": PUBLISHED_ONE_STEP,
                      "sliding": {k: {str(g): v for g, v in t.items()}
                                  for k, t in PUBLISHED_SLIDING.items()}},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    manifest = Manifest.create("benchmark", {"benchmark": "tumour", **asdict(settings)},
                               seed=settings.seeds[0])
    results["manifest"] = json.loads(manifest.to_json())
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    atomic_write_text(out / "tables.md", tables)

