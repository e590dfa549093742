"""`biowm simulate glucose`: the cohort data engine and the replay of logged inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from biowm.core.errors import InvalidInputError
from biowm.core.executor import make_executor
from biowm.core.io import check_writable, check_writable_dir
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.trajectories import TrajectoryWriter
from biowm.domains.glucose.cohort import (
    MINUTES_PER_DAY,
    CohortResult,
    cohort_patients,
    empty_log,
    simulate_cohort,
)
from biowm.domains.glucose.controllers import CONTROLLERS
from biowm.domains.glucose.metrics import METRIC_NAMES, METRIC_UNITS
from biowm.domains.glucose.patients import patient_table
from biowm.domains.glucose.replay import read_replay_inputs, replay, write_replay_csv
from biowm.domains.glucose.scenario import MealSchedule
from biowm.domains.glucose.sensor import CGMSensor
from biowm.domains.glucose.simulator import GlucoseSimulator

console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def outcome_table(result: CohortResult, title: str) -> Table:
    """Mean ± sd of each outcome metric per cohort group and overall."""
    table = Table(title=title)
    table.add_column("group")
    table.add_column("n", justify="right")
    for name in METRIC_NAMES:
        unit = METRIC_UNITS[name]
        table.add_column(f"{name} ({unit})" if unit else name, justify="right")
    groups = sorted({p.split("#")[0] for p in result.patients})
    rows = [(g, [p.split("#")[0] == g for p in result.patients]) for g in groups]
    if len(groups) > 1:
        rows.append(("all", [True] * len(result.patients)))
    for group, members in rows:
        selected = torch.tensor(members)
        cells = []
        for name in METRIC_NAMES:
            values = result.metrics[name][selected]
            sd = float(values.std()) if len(values) > 1 else 0.0
            cells.append(f"{float(values.mean()):.1f}±{sd:.1f}")
        table.add_row(group, str(int(selected.sum())), *cells)
    return table


def outcome_means(result: CohortResult) -> dict[str, float]:
    return {name: round(float(v.mean()), 4) for name, v in result.metrics.items()}


def simulate(
    out: Annotated[Path, typer.Option(help="Output: .parquet for a cohort, .csv for --replay.")],
    cohort: Annotated[str, typer.Option(help="adolescent, adult, child or all.")] = "all",
    n: Annotated[int, typer.Option(help="Number of simulated subjects.")] = 30,
    days: Annotated[int, typer.Option(help="Days simulated per subject.")] = 1,
    controller: Annotated[str, typer.Option(help="basal-bolus or clinician.")] = "basal-bolus",
    seed: Annotated[int, typer.Option(help="Seeds meals, sensor noise and behaviour.")] = 0,
    patient: Annotated[
        str | None, typer.Option(help="One virtual patient, e.g. adult#002.")
    ] = None,
    replay_csv: Annotated[
        Path | None,
        typer.Option("--replay", help="Replay per-minute inputs (minute, carbs_g_per_min, "
                     "insulin_u_per_min[, patient]) instead of simulating a cohort."),
    ] = None,
    sensor_minutes: Annotated[int, typer.Option(help="CGM sampling period (min).")] = 5,
    shard_size: Annotated[int, typer.Option(help="Subjects simulated together.")] = 2000,
    workers: Annotated[int, typer.Option(help="Worker processes for shards (1 = in-process).")]
    = 1,
    accelerate: Annotated[
        str, typer.Option(help="torch.compile the simulator: auto (>= 1000 patient-days), "
                          "on or off.")
    ] = "auto",
) -> None:
    """Simulate UVA/Padova virtual patients: a logged cohort (Parquet) or a replay (CSV)."""
    if replay_csv is not None:
        if out.suffix.lower() != ".csv":
            raise InvalidInputError(f"--out {out}: a replay writes CSV; use a .csv path")
        check_writable(out)
        inputs = read_replay_inputs(replay_csv, patient)
        bg, gsub = replay(inputs)
        write_replay_csv(out, inputs, bg, gsub)
        manifest = Manifest.create(
            "replay", {"domain": "glucose", "patient": patient, "inputs": str(replay_csv),
                       "simulator": "UVA/Padova 2008 (biowm, RK4 1-min)"}
        )
        manifest.add_file(replay_csv, name="inputs")
        manifest.add_file(out)
        manifest.write(manifest_path_for(out))
        minutes = sum(inputs.lengths)
        console.print(
            f"replayed {len(inputs.patients)} patient(s), {minutes} patient-minutes -> {out}"
        )
        return
    if out.suffix.lower() != ".parquet":
        raise InvalidInputError(f"--out {out}: a cohort is written as Parquet; use .parquet")
    for name, value, low in (("--n", n, 1), ("--days", days, 1), ("--shard-size", shard_size, 1),
                             ("--sensor-minutes", sensor_minutes, 1), ("--workers", workers, 1)):
        if value < low:
            raise InvalidInputError(f"{name} must be >= {low}, got {value}")
    if controller not in CONTROLLERS:
        raise InvalidInputError(
            f"unknown controller {controller!r}; choose one of {', '.join(CONTROLLERS)}"
        )
    if accelerate not in ("auto", "on", "off"):
        raise InvalidInputError(f"--accelerate must be auto, on or off, got {accelerate!r}")
    sim = GlucoseSimulator(
        sensor=CGMSensor(sample_minutes=sensor_minutes),
        cohort=cohort,
        meal_schedule=MealSchedule(),
        scenario_days=days,
        compiled=accelerate == "on" or (accelerate == "auto" and n * days >= 1000),
    )
    if patient is not None:
        if cohort != "all":
            raise InvalidInputError("give --patient or --cohort, not both")
        patient_table().indices([patient])
        patients = [patient] * n
    else:
        patients = cohort_patients(sim, cohort, n)
    check_writable(out)
    config = {
        "domain": "glucose", "cohort": cohort, "patient": patient, "n": n, "days": days,
        "controller": controller, "sensor_minutes": sensor_minutes,
        "simulator": "UVA/Padova 2008 (biowm, RK4 1-min)",
    }
    manifest = Manifest.create("trajectories", config=config, seed=seed)
    template = empty_log(sim)
    with progress_bar() as progress, TrajectoryWriter(out, template, manifest) as writer:
        task = progress.add_task("simulating patient-days", total=n * days * MINUTES_PER_DAY)
        result = simulate_cohort(
            sim, CONTROLLERS[controller](), patients, days, seed, writer=writer,
            shard_size=shard_size, on_minutes=lambda k: progress.advance(task, k),
            executor=make_executor(workers),
        )
        manifest.config["outcomes_mean"] = outcome_means(result)
    title = f"{controller}: {n} subjects × {days} day(s), outcomes on true BG"
    Console(width=max(Console().width, 150)).print(outcome_table(result, title))
    console.print(f"wrote {writer.n_rows} rows for {writer.n_subjects} subjects -> {out}")


def benchmark(
    out: Annotated[Path, typer.Option(help="Directory for results.json, data and models.")],
    quick: Annotated[bool, typer.Option(help="Small version (minutes) for CI and demos.")]
    = False,
    seed: Annotated[int, typer.Option(help="Seeds data, training and sampling.")] = 0,
) -> None:
    """Forecasting and counterfactual accuracy of world models vs baselines, and controllers."""
    from biowm.domains.glucose.benchmark import BenchmarkSettings, run_benchmark

    settings = BenchmarkSettings.quick() if quick else BenchmarkSettings()
    settings.seed = seed
    check_writable_dir(out)
    torch.manual_seed(seed)
    run_benchmark(out, settings, Console(width=max(Console().width, 150)))


def control(
    controller: Annotated[str, typer.Option(help="mpc, mpc-oracle or basal-bolus.")] = "mpc",
    model: Annotated[Path | None, typer.Option(help="World-model directory (for mpc).")]
    = None,
    patients: Annotated[str, typer.Option(help="adolescent, adult, child, all, or one "
                                          "patient such as adult#002.")] = "adolescent",
    days: Annotated[int, typer.Option(help="Days of closed-loop control.")] = 7,
    seed: Annotated[int, typer.Option(help="Seeds meals, carb-counting errors, noise.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write results.json here (a directory).")]
    = None,
) -> None:
    """Closed-loop insulin control in the true simulator, all patients as one batch."""
    from biowm.domains.glucose.control import (
        BasalBolusPolicy,
        MPCPolicy,
        OraclePolicy,
        SimulatorModel,
        control_summary,
        rounded_meal_simulator,
        run_closed_loop,
    )
    from biowm.models import load_world_model

    if days < 1:
        raise InvalidInputError(f"--days must be >= 1, got {days}")
    table = patient_table()
    names = [patients] if "#" in patients else table.cohort(patients)
    table.indices(names)
    if out is not None:
        check_writable_dir(out)
    sim = rounded_meal_simulator(days)
    if controller == "mpc":
        if model is None:
            raise InvalidInputError("--controller mpc needs --model DIR (a trained world model)")
        policy = MPCPolicy(load_world_model(model))
    elif controller == "mpc-oracle":
        policy = OraclePolicy(SimulatorModel(rounded_meal_simulator(days)))
    elif controller == "basal-bolus":
        policy = BasalBolusPolicy()
    else:
        raise InvalidInputError(
            f"unknown controller {controller!r}; choose mpc, mpc-oracle or basal-bolus"
        )
    steps = days * 1440 // 5
    with progress_bar() as progress:
        task = progress.add_task(f"{controller}: {len(names)} patients × {days} d", total=steps)
        result = run_closed_loop(policy, names, days, seed, simulator=sim,
                                 on_sample=lambda k: progress.advance(task))
    summary = control_summary(result, policy)
    table_out = Table(title=f"{controller}, {len(names)} patients, {days} days, seed {seed}")
    for key in summary["metrics"]:
        table_out.add_column(key, justify="right")
    table_out.add_row(*[f"{v:.2f}" for v in summary["metrics"].values()])
    Console(width=max(Console().width, 150)).print(table_out)
    for line in summary["notes"]:
        console.print(line)
    if out is not None:
        import json

        from biowm.core.io import atomic_write_text

        atomic_write_text(out / "results.json", json.dumps(summary, indent=2) + "\n")
        console.print(f"wrote {out / 'results.json'}")
