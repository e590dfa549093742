"""`biowm demo`: the end-to-end tour on embedded defaults, in about a minute on a laptop.

Simulates a logged cohort of all 30 virtual patients under the noisy clinician policy and
under standard basal-bolus therapy, writes the logs as Parquet with manifests, replays a
pump-and-meal record through one patient, runs a Gymnasium episode, then trains world
models and baselines on logged data, evaluates them on held-out patients (factual and
counterfactual), runs closed-loop control (basal-bolus, MPC on the learned model, MPC on
the true simulator) and writes `report.html`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from biowm.core.io import check_writable_dir
from biowm.core.manifest import Manifest
from biowm.core.trajectories import Trajectories, TrajectoryWriter
from biowm.domains.glucose.benchmark import BenchmarkSettings, run_benchmark
from biowm.domains.glucose.cli import outcome_table
from biowm.domains.glucose.cohort import cohort_patients, empty_log, simulate_cohort
from biowm.domains.glucose.controllers import BasalBolus, ClinicianPolicy
from biowm.domains.glucose.env import make_env
from biowm.domains.glucose.replay import ReplayInputs, replay
from biowm.domains.glucose.scenario import MealSchedule
from biowm.domains.glucose.simulator import GlucoseSimulator

DEFAULT_OUT = Path("runs/demo")


def run_demo(args: Sequence[str] = ()) -> None:
    """`biowm demo [OUT] [--quick]`: the tour; `--quick` is the reduced size CI runs."""
    quick = "--quick" in args
    positional = [a for a in args if not a.startswith("--")]
    out = check_writable_dir(Path(positional[0]) if positional else DEFAULT_OUT)
    console = Console(width=max(Console().width, 150))
    sim = GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=1)
    patients = cohort_patients(sim, "all", 30)

    console.rule("1. Data engine: 30 virtual patients × 1 day, logged at 5-min CGM resolution")
    for name, controller in (("clinician", ClinicianPolicy()), ("basal-bolus", BasalBolus())):
        path = out / f"glucose_{name}.parquet"
        manifest = Manifest.create(
            "trajectories", {"domain": "glucose", "controller": name, "days": 1}, seed=0
        )
        with TrajectoryWriter(path, empty_log(sim), manifest) as writer:
            result = simulate_cohort(sim, controller, patients, days=1, seed=0, writer=writer)
        console.print(outcome_table(result, f"{name}: outcomes on true plasma glucose"))
        logged = Trajectories.from_parquet(path)
        console.print(
            f"wrote {path} ({logged.obs.shape[0]} subjects × {logged.obs.shape[1]} samples, "
            f"channels {logged.obs_space.names + logged.action_space.names})"
        )

    console.rule("2. Replay: a 60 g lunch with a missed bolus vs. the same lunch with a bolus")
    minutes = 6 * 60
    one = GlucoseSimulator()
    state = one.reset(subjects=["adult#002"])
    basal = float(one.basal_u_per_min(state)[0])
    carb_ratio_g_per_u = float(one.static(state)[0, 2])
    carbs = torch.zeros(2, minutes, dtype=torch.float64)
    carbs[:, 60:72] = 5.0
    insulin = torch.full((2, minutes), basal, dtype=torch.float64)
    insulin[1, 60] += 60.0 / carb_ratio_g_per_u
    bg, _ = replay(ReplayInputs(["adult#002", "adult#002"], carbs, insulin, [minutes] * 2))
    for label, row in (("missed bolus", bg[0]), ("with bolus", bg[1])):
        console.print(f"  {label:>12}: peak BG {float(row.max()):6.1f} mg/dL, "
                      f"BG after 5 h {float(row[-1]):6.1f} mg/dL")

    console.rule("3. Gymnasium: one simulated day, insulin chosen every 5 min")
    env = make_env()
    obs, _ = env.reset(seed=0)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(np.array([basal], dtype=np.float32))
        total += reward
        steps += 1
        done = terminated or truncated
    console.print(f"  basal-only agent: {steps} steps, return {total:.1f} (negative risk index)")
    console.rule("4. World models: train, evaluate, plan in closed loop, report")
    settings = BenchmarkSettings.quick() if quick else BenchmarkSettings.demo()
    run_benchmark(out / "benchmark", settings, console)
    console.print(f"\nOutputs in {out}/; the report is {(out / 'benchmark' / 'report.html')}")
