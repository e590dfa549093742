"""`biowm train pathway` and `biowm evaluate pathway`: a fast surrogate of an SBML model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from biowm.core.errors import InvalidInputError
from biowm.core.manifest import Manifest, manifest_path_for

console = Console(stderr=True)


def train(
    data: Annotated[Path, typer.Option(help="Trajectories from `biowm simulate pathway` "
                                       "(.parquet with its manifest beside).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    members: Annotated[int, typer.Option(help="Ensemble members.")] = 3,
    hidden: Annotated[int, typer.Option(help="Hidden units per layer.")] = 512,
    layers: Annotated[int, typer.Option(help="Hidden layers.")] = 3,
    epochs: Annotated[int, typer.Option(help="Maximum training epochs per member.")] = 60,
    basis: Annotated[int, typer.Option(help="Temporal PCA modes per species the network "
                                       "predicts (0: every grid time).")] = 48,
    student_hidden: Annotated[int, typer.Option(help="Width of the distilled fast network "
                                                "that answers batch predictions (0: the "
                                                "ensemble answers).")] = 384,
    val_fraction: Annotated[float, typer.Option(help="Virtual cells held for early "
                                                "stopping and calibration.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seeds the split, the members and their "
                                      "training.")] = 0,
) -> None:
    """Train the trajectory surrogate (ensemble of feed-forward networks conditioned on each
    virtual cell's parameter draws and dose schedule, distilled into one fast network);
    writes config, safetensors, manifest and model card."""
    from biowm.core.io import check_writable_dir
    from biowm.core.trajectories import Trajectories
    from biowm.domains.pathway.surrogate import train_surrogate
    from biowm.models.trajectory_surrogate import SurrogateConfig

    if min(members, hidden, layers, epochs) < 1 or min(basis, student_hidden) < 0:
        raise InvalidInputError("--members, --hidden, --layers and --epochs must be >= 1 "
                                "and --basis, --student-hidden >= 0")
    if not data.is_file():
        raise InvalidInputError(f"--data {data} does not exist")
    manifest_file = manifest_path_for(data)
    if not manifest_file.is_file():
        raise InvalidInputError(f"{data} has no manifest ({manifest_file.name}); the surrogate "
                                "needs data from `biowm simulate pathway`")
    data_manifest = Manifest.read(manifest_file)
    simulation = {**data_manifest.config, "seed": data_manifest.seed}
    if simulation.get("domain") != "pathway":
        raise InvalidInputError(f"{data} was not made by `biowm simulate pathway`")
    check_writable_dir(out)
    trajectories = Trajectories.from_parquet(data)
    started = time.perf_counter()
    config = SurrogateConfig(members=members, hidden=hidden, layers=layers, max_epochs=epochs,
                             basis=basis, student_hidden=student_hidden, seed=seed)
    model = train_surrogate(trajectories, simulation, config, val_fraction)
    manifest = Manifest.create("model", {"domain": "pathway", "model": "trajectory_surrogate",
                                         "data": str(data), **config.__dict__}, seed=seed)
    manifest.add_file(data)
    model.save(out, manifest)
    console.print(f"trained {members} members on {len(trajectories):,} virtual cells "
                  f"({len(model.obs_space.names)} species × {model.grid.numel()} times) in "
                  f"{time.perf_counter() - started:.0f} s → {out}")


def evaluate(
    model: Annotated[Path, typer.Option(help="Surrogate directory from `biowm train "
                                       "pathway`.")],
    sbml: Annotated[str, typer.Option(help="The SBML file (or shipped model name) it "
                                      "stands in for.")],
    out: Annotated[Path, typer.Option(help="Directory for results.json, tables.md, "
                                      "held_out.png.")],
    n: Annotated[int, typer.Option(help="Held-out virtual cells to simulate.")] = 1000,
    seed: Annotated[int | None, typer.Option(help="Seed of the held-out draws and "
                                             "schedules (default: training seed + 1000).")]
    = None,
) -> None:
    """Score the surrogate on fresh libroadrunner runs: held-out dose schedules and
    parameter draws (NRMSE per species, 90 % coverage; population forecast coverage and
    CRPS; ensemble disagreement vs error)."""
    from biowm.core.io import atomic_write_text, check_writable_dir, json_ready
    from biowm.domains.pathway.sbml import load_model
    from biowm.domains.pathway.surrogate import (
        plot_held_out,
        score_surrogate,
        simulate_held_out,
        surrogate_results_rows,
    )
    from biowm.models.trajectory_surrogate import TrajectorySurrogate

    if n < 2:
        raise InvalidInputError(f"--n must be >= 2, got {n}")
    check_writable_dir(out)
    surrogate = TrajectorySurrogate.load(model)
    pathway = load_model(sbml)
    held_seed = int(surrogate.provenance.get("seed", 0)) + 1000 if seed is None else seed
    started = time.perf_counter()
    with console.status(f"simulating {n:,} held-out virtual cells in libroadrunner"):
        held_out = simulate_held_out(surrogate, pathway, n, held_seed)
    recorded = surrogate.provenance.get("sbml_sha256")
    if recorded and recorded != pathway.sha256:
        console.print(f"[yellow]note: {sbml} differs from the SBML the surrogate was trained "
                      "on (sha256); scored anyway[/yellow]")
    scores = score_surrogate(surrogate, held_out)
    scores.update(model=str(model), sbml=str(sbml), seed=held_seed,
                  wall_seconds=round(time.perf_counter() - started, 1))
    title = (f"### Surrogate of {pathway.name}: {scores['n_test']:,} held-out virtual cells "
             f"(new schedules and parameter draws, seed {held_seed})")
    table = "\n".join([title, "", *surrogate_results_rows(scores)]) + "\n"
    atomic_write_text(out / "results.json", json.dumps(json_ready(scores), indent=2))
    atomic_write_text(out / "tables.md", table)
    plot_held_out(surrogate, held_out, out / "held_out.png")
    print(table)
    console.print(f"results written to {out / 'results.json'}")
