"""`biowm simulate|train|benchmark|plan tumour`: data engine, models, benchmark, planning."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_write_text, check_writable, check_writable_dir
from biowm.core.manifest import Manifest
from biowm.domains.tumour.cohort import MAX_DAYS, VAL_OFFSET, simulate_cohort
from biowm.domains.tumour.world_model import MODEL_NAMES, TRAINING, make_model

console = Console(stderr=True)


def _check_gamma(gamma: float) -> None:
    if not 0.0 <= gamma <= 100.0:
        raise InvalidInputError(f"--gamma must be in [0, 100], got {gamma}")


def simulate(
    out: Annotated[Path, typer.Option(help="Output Parquet file (a manifest is written beside).")],
    gamma: Annotated[float, typer.Option(help="Confounding strength γ of the clinician.")] = 2.0,
    n: Annotated[int, typer.Option(help="Number of patients.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seeds patients, noise and treatment draws.")] = 0,
    days: Annotated[int, typer.Option(help="Maximum days per patient.")] = MAX_DAYS,
) -> None:
    """Simulate lung-cancer patients treated by a confounded clinician (Geng et al. 2017)."""
    _check_gamma(gamma)
    if n < 1 or days < 2:
        raise InvalidInputError(f"--n must be >= 1 and --days >= 2, got {n} and {days}")
    if out.suffix != ".parquet":
        raise InvalidInputError(f"--out must end in .parquet, got {out}")
    check_writable(out)
    started = time.perf_counter()
    cohort = simulate_cohort(n, gamma, seed, days)
    data = cohort.to_trajectories()
    manifest = Manifest.create("trajectories", {"domain": "tumour", "gamma": gamma, "n": n,
                                                "days": days}, seed=seed)
    data.to_parquet(out, manifest)
    seconds = time.perf_counter() - started
    table = Table(title=f"tumour cohort γ={gamma:g} ({n} patients, {seconds:.1f} s)")
    for column in ("treatment rate", "mean days", "died", "recovered", "file"):
        table.add_column(column)
    table.add_row(f"{cohort.treatment_rate():.3f}", f"{float(cohort.length.double().mean()):.1f}",
                  f"{float(cohort.died.double().mean()):.1%}",
                  f"{float(cohort.recovered.double().mean()):.1%}", str(out))
    console.print(table)


def train(
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    gamma: Annotated[float, typer.Option(help="Confounding γ of the simulated logs.")] = 2.0,
    n: Annotated[int, typer.Option(help="Training patients (validation: n/10).")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seeds data and training.")] = 0,
    model: Annotated[str, typer.Option(help=f"One of {', '.join(MODEL_NAMES)}.")]
    = "world_model_iptw",
    horizon: Annotated[int, typer.Option(help="Forecast horizon in days.")] = 10,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = TRAINING["max_epochs"],
) -> None:
    """Simulate logs and train a tumour world model on them (records its validation domain)."""
    from biowm.domains.tumour.planning import ValidationDomain

    _check_gamma(gamma)
    if n < 20 or horizon < 1 or epochs < 1:
        raise InvalidInputError(
            f"--n must be >= 20, --horizon and --epochs >= 1, got {n}, {horizon}, {epochs}"
        )
    check_writable_dir(out)
    train_data = simulate_cohort(n, gamma, seed).to_trajectories()
    val_data = simulate_cohort(max(n // 10, 10), gamma, seed, offset=VAL_OFFSET).to_trajectories()
    world_model = make_model(model, horizon_steps=horizon, seed=seed)
    options = {} if model == "linear" else {**TRAINING, "max_epochs": epochs, "patience": epochs}
    world_model.fit(train_data, val_data, **options)
    world_model.save(out)
    ValidationDomain.from_trajectories(train_data).save(out)
    console.print(f"model written to {out}")


def benchmark(
    out: Annotated[Path, typer.Option(help="Directory for results.json, tables.md, models.")],
    gamma: Annotated[list[float] | None, typer.Option(help="Confounding strengths γ.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Seeds per γ (0 … seeds−1); default 5, "
                                              "1 with --quick.")] = None,
    quick: Annotated[bool, typer.Option(help="Small version (minutes), not comparable to "
                                        "the published tables.")] = False,
    workers: Annotated[int | None, typer.Option(help="Worker processes, one (γ, seed) cell "
                                                "each (default 2; 1 with --quick).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs per model.")] = None,
) -> None:
    """Counterfactual NRMSE (one-step and sliding treatment) beside the published tables."""
    from biowm.domains.tumour.benchmark import TumourBenchmarkSettings, run_benchmark

    settings = TumourBenchmarkSettings.quick() if quick else TumourBenchmarkSettings()
    if gamma:
        for g in gamma:
            _check_gamma(g)
        settings.gammas = tuple(gamma)
    workers = settings.workers if workers is None else workers
    if (seeds is not None and seeds < 1) or workers < 1:
        raise InvalidInputError(f"--seeds and --workers must be >= 1, got {seeds}, {workers}")
    if seeds is not None:
        settings.seeds = tuple(range(seeds))
    if epochs is not None:
        if epochs < 1:
            raise InvalidInputError(f"--epochs must be >= 1, got {epochs}")
        settings.max_epochs = epochs
    settings.workers = workers
    check_writable_dir(out)
    torch.manual_seed(settings.seeds[0])
    run_benchmark(out, settings, log=console.print)
    print((out / "tables.md").read_text())
    console.print(f"results written to {out / 'results.json'}")


def plan(
    model: Annotated[Path, typer.Option(help="Model directory from `biowm train tumour`.")],
    out: Annotated[Path, typer.Option(help="Directory for results.json and plans.csv.")],
    gamma: Annotated[float, typer.Option(help="Confounding γ of the clinician.")] = 2.0,
    patients: Annotated[int, typer.Option(help="Test patients simulated.")] = 200,
    start_day: Annotated[int, typer.Option(help="Day the plan starts.")] = 20,
    days: Annotated[int, typer.Option(help="Days planned.")] = 10,
    max_sessions: Annotated[int, typer.Option(help="Budget: sessions of each treatment.")] = 3,
    seed: Annotated[int, typer.Option(help="Seeds the test patients.")] = 0,
    match_clinician: Annotated[bool, typer.Option(
        help="Per patient, no more sessions of each treatment than the clinician gave.")]
    = False,
) -> None:
    """Plan chemo/radio schedules on the world model; score them in the true simulator."""
    from biowm.domains.tumour.planning import PlanSettings, ValidationDomain, plan_and_evaluate
    from biowm.models import load_world_model

    _check_gamma(gamma)
    if not 1 <= start_day <= MAX_DAYS - days - 1 or days < 1 or patients < 1:
        raise InvalidInputError(
            f"need 1 <= --start-day <= {MAX_DAYS} - --days - 1, --days >= 1, --patients >= 1"
        )
    check_writable_dir(out)
    world_model = load_world_model(model)
    domain = ValidationDomain.load(model)
    settings = PlanSettings(gamma, seed, patients, start_day, days, max_sessions,
                            match_clinician)
    results = plan_and_evaluate(world_model, domain, settings)
    results["model"] = str(model)
    rows = ["patient,day,chemotherapy,radiotherapy"]
    for patient, schedule in zip(results["plans"]["patient"], results["plans"]["schedule"],
                                 strict=True):
        rows += [f"{patient},{start_day + d},{c},{r}" for d, (c, r) in enumerate(schedule)]
    atomic_write_text(out / "plans.csv", "\n".join(rows) + "\n")
    del results["plans"]
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    budget = (f"≤ min(clinician's, {max_sessions}) sessions each" if match_clinician
              else f"≤{max_sessions} sessions each")
    table = Table(title=f"{days}-day plans for {results['n_eligible']} patients (γ={gamma:g}, "
                  f"{budget}; {results['out_of_domain']} out of domain)")
    for column in ("policy", "mean final volume (cm3)", "median", "vs clinician",
                   "chemo sessions", "radio sessions"):
        table.add_column(column)
    for name, p in results["policies"].items():
        table.add_row(name, f"{p['mean_final_volume_cm3']:.2f}",
                      f"{p['median_final_volume_cm3']:.2f}",
                      f"{p['change_vs_clinician_pct']:+.1f}%",
                      f"{p['mean_sessions_chemo']:.2f}", f"{p['mean_sessions_radio']:.2f}")
    Console().print(table)
    console.print(f"gap to planning on the true simulator: {results['gap_to_oracle_cm3']:+.2f} "
                  f"cm3; results in {out / 'results.json'}")

