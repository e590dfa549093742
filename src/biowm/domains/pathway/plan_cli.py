"""`biowm plan pathway`: a dose schedule planned on a surrogate, verified in libroadrunner."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer

from biowm.core.errors import InvalidInputError
from biowm.core.io import atomic_path, atomic_write_text, check_writable_dir, json_ready


def _window(text: str) -> tuple[float, float]:
    try:
        start, end = (float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(f"--window must be two times T0,T1, got {text!r}") from None
    if not (math.isfinite(start) and math.isfinite(end) and start < end):
        raise InvalidInputError(f"--window needs finite times T0 < T1, got {text!r}")
    return start, end


def _check_out_dir(out: Path) -> None:
    """Fail before any work when `out` could not become a writable directory (nothing is
    created until the results are ready)."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out}: exists and is not a directory")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InvalidInputError(f"--out {out}: cannot write in {existing}")


def plan(
    model: Annotated[Path, typer.Option(help="Trained trajectory surrogate directory.")],
    sbml: Annotated[str, typer.Option(help="SBML file, or a shipped model "
                                      "(kholodenko2000, geva_zatorsky2006).")],
    output: Annotated[str, typer.Option(help="Species to keep below the threshold.")],
    threshold: Annotated[float, typer.Option(help="Upper limit, model concentration units.")],
    window: Annotated[str, typer.Option(help="T0,T1: times (model units) the limit holds.")],
    out: Annotated[Path, typer.Option(help="Directory for results.json, plan.md, plan.png.")],
    segments: Annotated[int, typer.Option(help="Piecewise-constant dose segments.")] = 6,
    risk: Annotated[float, typer.Option(help="Allowed fraction of cells over the limit.")]
    = 0.05,
    population: Annotated[int, typer.Option(help="Virtual cells the plan is made for.")] = 500,
    verify: Annotated[int, typer.Option(help="Held-out virtual cells simulated to verify.")]
    = 1000,
    sigma: Annotated[float | None, typer.Option(help="Log-normal sd of the parameter "
                                                "population (default: as in the "
                                                "surrogate's training data).")] = None,
    candidates: Annotated[int, typer.Option(help="Candidate schedules per search round.")]
    = 128,
    iterations: Annotated[int, typer.Option(help="Cross-entropy search rounds.")] = 6,
    attempts: Annotated[int, typer.Option(help="Plans tried, tightening each time the "
                                          "simulator finds the last one short.")] = 3,
    seed: Annotated[int | None, typer.Option(help="Seeds the planning cells (held-out "
                                             "cells: seed + 1) and the search (default: "
                                             "the training data's seed + 2000, so neither "
                                             "set is a training cell).")] = None,
    workers: Annotated[int | None, typer.Option(help="Simulator processes (default: all "
                                                "cores; 1 = in this process).")] = None,
) -> None:
    """Plan a piecewise-constant dose schedule that keeps OUTPUT below THRESHOLD over the
    window in at least 1 - RISK of virtual cells with least cumulative dose; verify it and
    a constant-dose reference in the simulator on held-out cells."""
    from biowm.domains.pathway.cli import _progress, console
    from biowm.domains.pathway.plan_report import plan_figure, plan_markdown
    from biowm.domains.pathway.planning import (
        HELD_OUT_SEED_OFFSET,
        Attempt,
        check_compatible,
        plan_and_verify,
    )
    from biowm.domains.pathway.sbml import load_model
    from biowm.models.trajectory_surrogate import TrajectorySurrogate
    from biowm.plan.dose_schedule import DoseProblem, SearchSettings, check_problem, meets

    if not 0.0 < risk < 1.0:
        raise InvalidInputError(f"--risk must be in (0, 1), got {risk}")
    if segments < 1 or population < 1 or verify < 1 or attempts < 1:
        raise InvalidInputError(f"need --segments, --population, --verify and --attempts "
                                f">= 1, got {segments}, {population}, {verify}, {attempts}")
    if sigma is not None and not (sigma >= 0 and math.isfinite(sigma)):
        raise InvalidInputError(f"--sigma must be a finite number >= 0, got {sigma}")
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {workers}")
    problem = DoseProblem(output, threshold, _window(window), segments, risk)
    if not model.is_dir():
        raise InvalidInputError(f"--model {model}: no such surrogate directory")
    surrogate = TrajectorySurrogate.load(model)
    provenance = surrogate.provenance
    if sigma is None:
        sigma = float(provenance.get("sigma", 0.1))
    if seed is None:
        seed = int(provenance.get("seed", 0)) + 2000
    settings = SearchSettings(candidates=candidates, iterations=iterations, seed=seed)
    pathway = load_model(sbml)
    check_compatible(pathway, surrogate, output)
    check_problem(surrogate, problem, None)
    _check_out_dir(out)

    rollouts_per_attempt = population * (candidates * iterations + settings.constant_grid
                                         + settings.bisection_steps)
    with _progress() as progress:
        searching = progress.add_task("planning on the surrogate (rollouts)",
                                      total=rollouts_per_attempt)
        simulating = progress.add_task("verifying in the simulator (runs)", total=2 * verify)

        def next_attempt(index: int, attempt: Attempt) -> None:
            if attempt.meets(problem.target_fraction) or index + 1 >= attempts:
                return
            progress.reset(searching, total=rollouts_per_attempt)
            progress.reset(simulating, total=2 * verify)
            progress.update(searching, description=f"planning, attempt {index + 2} (rollouts)")

        attempts_done = plan_and_verify(
            pathway, surrogate, problem, population=population, verify=verify, sigma=sigma,
            seed=seed, attempts=attempts, settings=settings, workers=workers,
            on_rollouts=lambda k: progress.advance(searching, k),
            on_simulated=lambda k: progress.advance(simulating, k),
            on_attempt=next_attempt)

    last = attempts_done[-1]
    target = problem.target_fraction
    times = surrogate.grid.double().numpy()
    header = f"{pathway.name}, {', '.join(last.plan.controls)}"
    results = {
        "sbml": str(pathway.source), "model": pathway.name, "sbml_sha256": pathway.sha256,
        "surrogate": str(model), "time_unit": pathway.time_unit, "output": output,
        "threshold": threshold, "window": list(problem.window), "risk": risk,
        "target_fraction": target, "segments": segments, "population": population,
        "verify": verify, "sigma": sigma, "seed": seed, "held_out_seed":
        seed + HELD_OUT_SEED_OFFSET, "grid": times.tolist(),
        "plan": {"doses": last.plan.doses.tolist(),
                 "cumulative_dose": last.plan.cumulative_dose.tolist(),
                 "predicted_fraction": last.plan.predicted_fraction,
                 "verified_fraction": last.plan_verified.fraction,
                 "meets_target": bool(meets(last.plan_verified.fraction, target))},
        "constant": {"doses": last.plan.constant_doses.tolist(),
                     "cumulative_dose": last.plan.constant_cumulative_dose.tolist(),
                     "predicted_fraction": last.plan.constant_predicted_fraction,
                     "verified_fraction": last.constant_verified.fraction,
                     "meets_target": bool(meets(last.constant_verified.fraction, target))},
        "controls": list(last.plan.controls), "units": list(last.plan.units),
        "boundaries": last.plan.boundaries.tolist(),
        "attempts": [a.to_dict() for a in attempts_done],
    }
    markdown = plan_markdown(attempts_done, problem, pathway.time_unit, header)
    figure = plan_figure(last, problem, times, pathway.time_unit)
    check_writable_dir(out)
    atomic_write_text(out / "results.json", json.dumps(json_ready(results), indent=2))
    atomic_write_text(out / "plan.md", markdown)
    with atomic_path(out / "plan.png") as tmp:
        tmp.write_bytes(figure)
    console.print(
        f"plan: cumulative dose {last.plan.cumulative_dose.sum():.4g} vs constant "
        f"{last.plan.constant_cumulative_dose.sum():.4g}; verified in "
        f"{100 * last.plan_verified.fraction:.1f} % (plan) and "
        f"{100 * last.constant_verified.fraction:.1f} % (constant) of {verify} held-out cells "
        f"(target {100 * target:.1f} %); written to {out}")
    if not last.meets(target):
        console.print(f"[bold red]warning:[/] after {len(attempts_done)} attempt(s) the "
                      "verified fraction is still short of the target; see plan.md")
