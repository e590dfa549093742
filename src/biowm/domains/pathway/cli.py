"""`biowm simulate pathway`: a population of virtual cells under random dose schedules."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from biowm.core.errors import InvalidInputError
from biowm.core.io import check_writable
from biowm.core.manifest import Manifest

console = Console(stderr=True)


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise InvalidInputError(f"empty name in comma list {text!r}")
    return names


def simulate(
    sbml: Annotated[str, typer.Option(help="SBML file, or a shipped model: kholodenko2000, "
                                      "geva_zatorsky2006.")],
    out: Annotated[Path, typer.Option(help="Output Parquet file (a manifest is written beside).")],
    t_end: Annotated[float, typer.Option(help="End time, in the model's own time unit.")],
    observe: Annotated[str | None, typer.Option(help="Comma list of species to record "
                                                "(default: all floating species).")] = None,
    intervene: Annotated[str | None, typer.Option(help="Comma list of kinetic parameters "
                                                  "(fractional inhibition in [0, 1]) or drugs "
                                                  "declared by a shipped model (e.g. MEKi).")]
    = None,
    points: Annotated[int, typer.Option(help="Output time points from 0 to --t-end.")] = 101,
    n: Annotated[int, typer.Option(help="Virtual cells (one run each).")] = 1000,
    segments: Annotated[int, typer.Option(help="Piecewise-constant dose segments per run.")]
    = 6,
    sigma: Annotated[float, typer.Option(help="Log-normal sd of the parameter population "
                                         "(0: every cell at the model's values).")] = 0.1,
    uncertain: Annotated[str | None, typer.Option(help="Comma list of parameters drawn per "
                                                  "cell (default: all positive ones).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the parameter draws and the schedules.")] = 0,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: all CPU "
                                                "cores; 1 = in this process).")] = None,
) -> None:
    """Simulate virtual cells of an SBML pathway under random intervention schedules
    (obs: species; actions: doses in effect; static: log parameter draws)."""
    from biowm.domains.pathway.interventions import random_schedule
    from biowm.domains.pathway.population import draw_parameters
    from biowm.domains.pathway.runner import simulate_population
    from biowm.domains.pathway.sbml import load_model
    from biowm.domains.pathway.shipped import controls_for

    if out.suffix != ".parquet":
        raise InvalidInputError(f"--out must end in .parquet, got {out}")
    if not (t_end > 0 and np.isfinite(t_end)) or points < 2 or n < 1 or segments < 1:
        raise InvalidInputError(f"need --t-end > 0, --points >= 2, --n >= 1 and --segments "
                                f">= 1, got {t_end}, {points}, {n}, {segments}")
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {workers}")
    check_writable(out)
    model = load_model(sbml)
    observed = model.check_species(_names(observe) or model.species, "species to observe")
    controls = controls_for(model, _names(intervene) or [])
    draws = draw_parameters(model, n, sigma, _names(uncertain), seed)
    schedule = random_schedule(controls, n, t_end, segments, seed)
    times = np.linspace(0.0, t_end, points)
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(f"simulating {n:,} virtual cells", total=n)
        result = simulate_population(model, times, observe=observed, draws=draws,
                                     schedule=schedule, workers=workers,
                                     on_progress=lambda k: progress.advance(task, k))
    data = result.to_trajectories()
    manifest = Manifest.create("trajectories", {
        "domain": "pathway", "sbml": str(model.source), "model": model.name,
        "sbml_sha256": model.sha256, "observe": list(observed),
        "intervene": [c.name for c in controls], "t_end": t_end, "points": points, "n": n,
        "segments": segments, "sigma": sigma, "uncertain": list(draws.names),
        "time_unit": model.time_unit, "failed_runs": int(result.failed.sum())}, seed=seed)
    data.to_parquet(out, manifest)
    seconds = time.perf_counter() - started
    table = Table(title=f"{model.name}: {n:,} virtual cells in {seconds:.1f} s "
                        f"({1000 * seconds / n:.2f} ms per run)")
    for column in ("species", "controls", "uncertain parameters", "failed runs", "file"):
        table.add_column(column)
    table.add_row(str(len(observed)), ", ".join(c.name for c in controls) or "-",
                  str(len(draws.names)), str(int(result.failed.sum())), str(out))
    console.print(table)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.percentage:>5.1f}%"), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=False)
