"""Issue 7 acceptance: surrogate accuracy, calibration and speed against libroadrunner.

For each model (our two encodings and the curated BioModels files 10 and 9): simulate
training cells (random 6-segment schedules of one control, log-normal parameters,
sigma 0.1), train the trajectory surrogate, score it on fresh cells (new schedules and
draws), and time a batch of trajectories in libroadrunner (sequential) against the
surrogate on the same work.

    python benchmarks/pathway_surrogate.py --out runs/bench/pathway [--train CELLS]
        [--test 1000] [--speed-batch 10000] [--epochs 60] [--hidden 512] [--members 3]
        [--basis 48] [--student-hidden 384] [--models kholodenko2000,...]

Each trained surrogate is saved under OUT/models/<model name>.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from biowm.core.io import atomic_write_text, json_ready
from biowm.domains.pathway import draw_parameters, load_model, random_schedule
from biowm.domains.pathway.runner import simulate_population
from biowm.domains.pathway.shipped import controls_for
from biowm.domains.pathway.surrogate import (
    score_surrogate,
    simulate_held_out,
    time_simulators,
    train_surrogate,
)
from biowm.models.trajectory_surrogate import SurrogateConfig, TrajectorySurrogate

SHARED_SBML = Path(__file__).resolve().parents[2] / "shared" / "sbml"
# (model, t_end in model time units, control, output points, training cells). The two
# oscillating Kholodenko cascades drift in phase with the drawn parameters and need more
# cells than the damped p53 oscillator or the Huang-Ferrell switch.
CASES = [
    ("kholodenko2000", 6000.0, "MEKi", 121, 80_000),
    ("geva_zatorsky2006", 72.0, "nutlin", 121, 20_000),
    (str(SHARED_SBML / "BIOMD0000000010.xml"), 6000.0, "k7", 121, 80_000),
    # Huang-Ferrell 1996: k7 is the catalytic constant of MAPK phosphorylation by MAPKK-PP.
    (str(SHARED_SBML / "BIOMD0000000009.xml"), 2000.0, "k7", 121, 20_000),
]
SIGMA, SEGMENTS, SEED = 0.1, 6, 0


def run_case(sbml: str, t_end: float, control: str, points: int, cells: int,
             args: argparse.Namespace) -> dict:
    model = load_model(sbml)
    controls = controls_for(model, [control])
    cells = args.train or cells
    draws = draw_parameters(model, cells, SIGMA, seed=SEED)
    schedule = random_schedule(controls, cells, t_end, SEGMENTS, seed=SEED)
    started = time.perf_counter()
    result = simulate_population(model, np.linspace(0.0, t_end, points), draws=draws,
                                 schedule=schedule, workers=1)
    simulate_seconds = time.perf_counter() - started
    simulation = {"model": model.name, "sbml_sha256": model.sha256,
                  "observe": list(result.species), "intervene": [control], "t_end": t_end,
                  "points": points, "segments": SEGMENTS, "sigma": SIGMA,
                  "uncertain": list(draws.names), "seed": SEED}
    config = SurrogateConfig(members=args.members, hidden=args.hidden, basis=args.basis,
                             student_hidden=args.student_hidden, max_epochs=args.epochs,
                             seed=SEED, progress=False)
    started = time.perf_counter()
    surrogate = train_surrogate(result.to_trajectories(), simulation, config)
    train_seconds = time.perf_counter() - started
    surrogate.save(args.out / "models" / model.name)  # for `biowm plan pathway --model`
    scores = score_surrogate(surrogate, simulate_held_out(surrogate, model, args.test,
                                                          SEED + 1000))
    speed = time_simulators(surrogate, model, args.speed_batch, SEED + 3000,
                            args.speed_batch)
    return {"model": model.name, "sbml": sbml, "control": control, "species": len(result.species),
            "static_covariates": len(draws.names), "train_cells": cells,
            "settings": {"epochs": args.epochs, "hidden": args.hidden, "basis": args.basis,
                         "members": args.members, "student_hidden": args.student_hidden},
            "simulate_seconds": round(simulate_seconds, 1),
            "train_seconds": round(train_seconds, 1), "scores": scores, "speed": speed}


def table(rows: list[dict]) -> str:
    lines = ["| model | cells | NRMSE (draws known) | 90 % coverage | ensemble NRMSE / "
             "coverage | population: NRMSE / coverage / CRPS÷range | ensemble–error rank "
             "corr. | roadrunner ms/traj | surrogate ms/traj | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        s, p, v = row["scores"], row["scores"]["population"], row["speed"]
        e = s["ensemble"]
        lines.append(
            f"| {row['model']} | {row['train_cells']} | {s['nrmse_overall']:.2%} | "
            f"{s['coverage90']:.1%} | {e['nrmse_overall']:.2%} / {e['coverage90']:.1%} | "
            f"{p['nrmse_overall']:.2%} / {p['coverage90']:.1%} / {p['crps_normalised']:.4f} "
            f"| {s['ensemble_error_rank_correlation']:.2f} | "
            f"{v['roadrunner_ms_per_trajectory']:.3f} | {v['surrogate_ms_per_trajectory']:.4f}"
            f" | {v['speedup']:.0f}× |")
    return "\n".join(lines) + "\n"


def retime(args: argparse.Namespace) -> None:
    """Speed again, on an otherwise idle machine, for every surrogate saved in OUT/models;
    writes OUT/speed.json and prints a table."""
    models = {}
    for sbml, *_ in CASES:
        if not sbml.endswith(".xml") or Path(sbml).is_file():
            model = load_model(sbml)
            models[model.name] = model
    rows = []
    for directory in sorted((args.out / "models").iterdir()):
        if directory.name not in models:
            continue
        surrogate = TrajectorySurrogate.load(directory)
        speed = time_simulators(surrogate, models[directory.name], args.speed_batch,
                                SEED + 3000, args.speed_batch)
        rows.append({"model": directory.name, "torch_threads": torch.get_num_threads(),
                     **speed})
    atomic_write_text(args.out / "speed.json", json.dumps(json_ready(rows), indent=2))
    print("| model | torch threads | libroadrunner ms/trajectory (1 core) | surrogate "
          "ms/trajectory | speed-up | ensemble ms/trajectory |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['torch_threads']} | "
              f"{row['roadrunner_ms_per_trajectory']:.3f} | "
              f"{row['surrogate_ms_per_trajectory']:.4f} | {row['speedup']:.1f}× | "
              f"{row['ensemble_ms_per_trajectory']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/pathway"))
    parser.add_argument("--train", type=int, default=0,
                        help="training cells (default: per model, see CASES)")
    parser.add_argument("--test", type=int, default=1_000)
    parser.add_argument("--speed-batch", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--basis", type=int, default=48,
                        help="temporal PCA modes per species (0: every grid time)")
    parser.add_argument("--student-hidden", type=int, default=384,
                        help="width of the distilled fast network (0: time the ensemble)")
    parser.add_argument("--models", default="all",
                        help="comma list of model names to run (default all)")
    parser.add_argument("--speed-only", action="store_true",
                        help="re-time the surrogates saved in OUT/models (run it with "
                        "nothing else running); writes OUT/speed.json")
    args = parser.parse_args()
    torch.manual_seed(SEED)
    if args.speed_only:
        retime(args)
        return
    rows = []
    for sbml, t_end, control, points, cells in CASES:
        name = Path(sbml).stem
        if args.models != "all" and name not in args.models.split(","):
            continue
        if sbml.endswith(".xml") and not Path(sbml).is_file():
            print(f"skipping {name}: {sbml} not found (needs ../shared/sbml)")
            continue
        rows.append(run_case(sbml, t_end, control, points, cells, args))
        print(table(rows[-1:]), flush=True)
        save_rows(args, rows[-1:])
    print(table(rows))


def save_rows(args: argparse.Namespace, rows: list[dict]) -> None:
    """Add (or replace, by model) rows in OUT/results.json, so each finished model is kept
    and a run over some models updates a run over all (runs in parallel take a lock)."""
    import fcntl

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    with open(args.out / ".results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(path.read_text()) if path.is_file() else {"models": []}
        names = {r["model"] for r in rows}
        kept = [row for row in results["models"] if row["model"] not in names]
        atomic_write_text(path, json.dumps(json_ready({"models": kept + rows}), indent=2))


if __name__ == "__main__":
    main()
