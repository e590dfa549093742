"""`biowm benchmark glucose`: world models against baselines on held-out virtual patients.

Protocol. Patients #001–#007 of each age group train the models, #008 validate (early
stopping and interval calibration, so calibration already sees unseen patients), #009–#010
are the test patients, never seen in training. All data are logged under the noisy
clinician policy at 5-min CGM resolution. Every model gets the same history
(`history_steps`) and the known future inputs (insulin and announced carbs) and forecasts
CGM over the horizon. Scores: RMSE and CRPS by horizon, coverage of the 50 % and 90 %
intervals, and counterfactual RMSE at meal times under a skipped bolus, a doubled bolus and
a 2-hour basal suspension, scored against the simulator's own response (branching the true
simulator from the logged state). Controllers are scored with the consensus metrics on
the test patients.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from biowm.bench.forecast_metrics import score_forecast
from biowm.core.executor import make_executor
from biowm.core.io import atomic_write_text, check_writable_dir
from biowm.core.manifest import Manifest
from biowm.core.trajectories import Trajectories, TrajectoryWriter
from biowm.core.world_model import WorldModel
from biowm.domains.glucose.cohort import empty_log, simulate_cohort
from biowm.domains.glucose.control import ControlJob, run_control_job
from biowm.domains.glucose.controllers import BasalBolus, ClinicianPolicy
from biowm.domains.glucose.forecast_data import BRANCHES, make_forecast_benchmark
from biowm.domains.glucose.patients import patient_table
from biowm.domains.glucose.report import build_report
from biowm.domains.glucose.scenario import MealSchedule
from biowm.domains.glucose.simulator import GlucoseSimulator
from biowm.models.ensemble import DeepEnsemble
from biowm.models.linear import LinearARX
from biowm.models.persistence import Persistence
from biowm.models.windows import Windows
from biowm.plan.mpc import MPCConfig

TARGET = "cgm_mg_dl"
HORIZONS_MIN = (30, 60, 120)
CONTROLLER_METRICS = ("tir", "tbr70", "tbr54", "tar180", "tar250", "lbgi", "hbgi")


@dataclass
class BenchmarkSettings:
    """Sizes of one benchmark run; `quick()` is the CI/demo size, the defaults the full one."""

    train_subjects_per_patient: int = 8
    val_subjects_per_patient: int = 4
    test_subjects_per_patient: int = 4
    days: int = 3
    history_steps: int = 48
    horizon_steps: int = 24
    stride: int = 2
    members: int = 5
    max_epochs: int = 8
    max_batches_per_epoch: int | None = 200
    patience: int = 3
    use_static: bool = False
    workers: int = 2
    control_days: int = 7
    control_seeds: tuple[int, ...] = (1, 2, 3)
    oracle_seeds: tuple[int, ...] = (1,)
    control_groups: tuple[str, ...] = ("adolescent", "child")
    control_limit: int | None = None
    seed: int = 0

    @classmethod
    def demo(cls) -> BenchmarkSettings:
        """The `make demo` size: every step of the full run, in a few minutes."""
        return cls(train_subjects_per_patient=4, val_subjects_per_patient=2,
                   test_subjects_per_patient=1, days=3, members=3, max_epochs=6,
                   max_batches_per_epoch=150, stride=3, control_days=1, control_seeds=(1,),
                   oracle_seeds=(1,))

    @classmethod
    def quick(cls) -> BenchmarkSettings:
        return cls(train_subjects_per_patient=1, val_subjects_per_patient=1,
                   test_subjects_per_patient=1, days=2, members=2, max_epochs=2,
                   max_batches_per_epoch=30, stride=4, workers=1, control_days=1,
                   control_seeds=(1,), oracle_seeds=(1,), control_groups=("child",),
                   control_limit=3)


def split_patients() -> dict[str, list[str]]:
    names = patient_table().names
    number = {n: int(n.split("#")[1]) for n in names}
    return {
        "train": [n for n in names if number[n] <= 7],
        "val": [n for n in names if number[n] == 8],
        "test": [n for n in names if number[n] >= 9],
    }


def _log(patients: list[str], days: int, seed: int, path: Path) -> Trajectories:
    sim = GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=days, compiled=False)
    manifest = Manifest.create("trajectories", {"domain": "glucose", "controller": "clinician",
                                                "patients": sorted(set(patients)), "days": days},
                               seed=seed)
    with TrajectoryWriter(path, empty_log(sim), manifest) as writer:
        simulate_cohort(sim, ClinicianPolicy(), patients, days, seed, writer=writer)
    return Trajectories.from_parquet(path)


def _score(model: WorldModel, windows: Windows, horizon_steps: list[int],
           seed: int) -> tuple[dict[str, float], torch.Tensor]:
    """Scores of the CGM forecast, and its mean error `[N, H]` for pooling across sets."""
    belief = model.encode(windows.history)
    forecast = model.imagine(belief, windows.future_actions, n_samples=200, seed=seed)
    channel = windows.history.obs_space.index(TARGET)
    truth = windows.future_obs[..., channel : channel + 1]
    mask = windows.future_mask[..., channel : channel + 1]
    error = forecast.mean()[..., 0] - truth[..., 0]
    return score_forecast(forecast, truth, mask, horizon_steps), error


def run_benchmark(out: Path, settings: BenchmarkSettings, console: Console) -> dict[str, Any]:
    """Generate data, train every model, score it; returns (and writes) the results."""
    out = check_writable_dir(out)
    (out / "data").mkdir(exist_ok=True)
    started = time.perf_counter()
    s = settings
    split = split_patients()
    console.print("simulating training, validation and test cohorts (clinician policy) ...")
    train = _log([p for p in split["train"] for _ in range(s.train_subjects_per_patient)],
                 s.days, s.seed, out / "data" / "train.parquet")
    val = _log([p for p in split["val"] for _ in range(s.val_subjects_per_patient)],
               s.days, s.seed + 1, out / "data" / "val.parquet")
    test_patients = [p for p in split["test"] for _ in range(s.test_subjects_per_patient)]
    test = make_forecast_benchmark(test_patients, s.days, s.seed + 2, s.history_steps,
                                   s.horizon_steps, stride=3)

    common = {"history_steps": s.history_steps, "horizon_steps": s.horizon_steps,
              "obs_channels": [TARGET], "seed": s.seed, "stride": s.stride}
    models: dict[str, Any] = {
        "persistence": Persistence(**common),
        "linear": LinearARX(**common),
        "world_model": DeepEnsemble(members=s.members, use_static=s.use_static, **common),
    }
    horizon_steps = [m // 5 for m in HORIZONS_MIN if m // 5 <= s.horizon_steps]
    results: dict[str, Any] = {"settings": asdict(s), "split": split, "models": {},
                               "controllers": {}}
    for name, model in models.items():
        console.print(f"training {name} ...")
        t0 = time.perf_counter()
        options = ({"max_epochs": s.max_epochs, "max_batches_per_epoch": s.max_batches_per_epoch,
                    "patience": s.patience, "workers": s.workers, "progress": s.workers == 1}
                   if name == "world_model" else {})
        report = model.fit(train, val, **options)
        fit_seconds = time.perf_counter() - t0
        model.save(out / "models" / name)
        factual, _ = _score(model, test.windows, horizon_steps, s.seed)
        counterfactual = {}
        pooled: dict[int, list[torch.Tensor]] = {}
        cf = test.counterfactual
        has_bolus = cf.bolus_u > 0
        for branch in BRANCHES:
            windows = cf.branch(branch)
            if branch != "basal_suspension":
                windows = windows.select(torch.nonzero(has_bolus).flatten())
            counterfactual[branch], error = _score(model, windows, horizon_steps, s.seed)
            for step in horizon_steps:
                pooled.setdefault(int(step * model.step), []).append(error[:, step - 1])
        examples = cf.windows.select(torch.arange(min(3, len(cf))))
        example = model.imagine(model.encode(examples.history), examples.future_actions,
                                n_samples=400, seed=s.seed)
        channel = examples.history.obs_space.index(TARGET)
        results.setdefault("fan_examples", {})[name] = {
            "history": examples.history.obs[..., channel].tolist(),
            "truth": examples.future_obs[..., channel].tolist(),
            "quantiles": {str(q): example.quantile(q)[..., 0].tolist()
                          for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
            "step_minutes": float(model.step),
        }
        results["models"][name] = {
            "rmse_mg_dl": {str(m): factual[f"rmse@{m}"] for m in HORIZONS_MIN
                           if f"rmse@{m}" in factual},
            "coverage90": {str(m): factual[f"coverage90@{m}"] for m in HORIZONS_MIN
                           if f"coverage90@{m}" in factual},
            "coverage50": {str(m): factual[f"coverage50@{m}"] for m in HORIZONS_MIN
                           if f"coverage50@{m}" in factual},
            "crps": factual["crps"],
            "counterfactual_rmse_mg_dl": {
                str(m): float(torch.cat(v).pow(2).mean().sqrt()) for m, v in pooled.items()
            },
            "counterfactual_by_branch": {
                b: {str(m): counterfactual[b][f"rmse@{m}"] for m in HORIZONS_MIN
                    if f"rmse@{m}" in counterfactual[b]} for b in BRANCHES
            },
            "fit_seconds": fit_seconds,
            "fit": {"epochs": report.epochs, "stopped_because": report.stopped_because},
        }
    console.print("scoring controllers on the test patients ...")
    sim = GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=s.days)
    for name, controller in (("basal-bolus", BasalBolus()), ("clinician", ClinicianPolicy())):
        outcome = simulate_cohort(sim, controller, test_patients, s.days, s.seed + 3)
        results["controllers"][name] = {
            k: float(outcome.metrics[k].mean()) for k in CONTROLLER_METRICS
        }
    run_closed_loop_section(results, out, s, console)
    results["counts"] = {
        "train_windows": models["world_model"].provenance.get("n_train_windows"),
        "test_windows": len(test.windows), "counterfactual_windows": len(test.counterfactual),
        "counterfactual_windows_with_bolus": int((test.counterfactual.bolus_u > 0).sum()),
    }
    results["wall_seconds"] = time.perf_counter() - started
    manifest = Manifest.create("benchmark", {"domain": "glucose", **asdict(s)}, seed=s.seed)
    for name in ("train", "val"):
        manifest.add_file(out / "data" / f"{name}.parquet", name=f"data/{name}.parquet")
    for name in models:
        manifest.add_file(out / "models" / name / "weights.safetensors",
                          name=f"models/{name}/weights.safetensors")
    results["manifest"] = json.loads(manifest.to_json())
    extras = {k: results.pop(k) for k in ("closed_loop_traces", "fan_examples")
              if k in results}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    results.update(extras)
    print_tables(results, console)
    report = build_report(results, out)
    console.print(f"wrote {out / 'results.json'} ({results['wall_seconds']:.0f} s)")
    console.print(f"report: {report.resolve()}")
    return results


def run_closed_loop_section(results: dict[str, Any], out: Path, s: BenchmarkSettings,
                            console: Console) -> None:
    """Closed loop in the true simulator: basal-bolus, MPC on the learned model, oracle."""
    table = patient_table()
    patients = [n for group in s.control_groups for n in table.cohort(group)]
    patients = patients[: s.control_limit] if s.control_limit else patients
    if not s.control_seeds and not s.oracle_seeds:
        return
    jobs = [ControlJob("basal-bolus", None, patients, s.control_days, seed)
            for seed in s.control_seeds]
    jobs += [ControlJob("mpc", str(out / "models" / "world_model"), patients, s.control_days,
                        seed, MPCConfig(candidates=32, iterations=2))
             for seed in s.control_seeds]
    jobs += [ControlJob("mpc-oracle", None, patients, s.control_days, seed,
                        MPCConfig(candidates=32, iterations=2, forecast_samples=1))
             for seed in s.oracle_seeds]
    console.print(f"closed loop: {len(jobs)} runs of {len(patients)} patients × "
                  f"{s.control_days} days ...")
    runs: dict[str, list[dict[str, Any]]] = {}
    for _, summary in make_executor(s.workers).imap(run_control_job, jobs):
        runs.setdefault(summary["controller"], []).append(summary)
        console.print(f"  {summary['controller']} seed {summary['seed']}: "
                      f"TIR {summary['metrics']['tir']:.1f} %")
    closed: dict[str, Any] = {}
    for name, summaries in runs.items():
        summaries.sort(key=lambda r: r["seed"])
        mean = {k: sum(r["metrics"][k] for r in summaries) / len(summaries)
                for k in summaries[0]["metrics"]}
        closed[name] = {
            "mean_over_seeds": mean, "seeds": [r["seed"] for r in summaries],
            "per_seed": [r["metrics"] for r in summaries],
            "decision_ms_median": [r.get("decision_ms_median") for r in summaries],
            "shielded_fraction": [r.get("shielded_fraction") for r in summaries],
        }
        results["controllers"][f"closed-loop {name}"] = {k: mean[k] for k in CONTROLLER_METRICS}
    results["closed_loop"] = {"patients": patients, "days": s.control_days, **closed}
    results["closed_loop_traces"] = {name: summaries[0].get("log", {})
                                     for name, summaries in runs.items()}


def print_tables(results: dict[str, Any], console: Console) -> None:
    table = Table(title="Forecasting CGM on held-out patients (mg/dL; coverage in %)")
    table.add_column("model")
    for m in HORIZONS_MIN:
        table.add_column(f"RMSE {m}", justify="right")
    table.add_column("CRPS", justify="right")
    for m in (60, 120):
        table.add_column(f"cov50 {m}", justify="right")
        table.add_column(f"cov90 {m}", justify="right")
    for m in HORIZONS_MIN:
        table.add_column(f"CF RMSE {m}", justify="right")
    for name, r in results["models"].items():
        table.add_row(
            name,
            *[f"{r['rmse_mg_dl'].get(str(m), float('nan')):.1f}" for m in HORIZONS_MIN],
            f"{r['crps']:.2f}",
            *[f"{100 * r[key].get(str(m), float('nan')):.1f}" for m in (60, 120)
              for key in ("coverage50", "coverage90")],
            *[f"{r['counterfactual_rmse_mg_dl'].get(str(m), float('nan')):.1f}"
              for m in HORIZONS_MIN],
        )
    console.print(table)
    table = Table(title="Controllers on the test patients (true BG)")
    table.add_column("controller")
    for k in CONTROLLER_METRICS:
        table.add_column(k, justify="right")
    for name, r in results["controllers"].items():
        table.add_row(name, *[f"{r[k]:.2f}" for k in CONTROLLER_METRICS])
    console.print(table)
