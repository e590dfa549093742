"""`biowm simulate cell`: the gene-regulatory-network data engine as a perturbation screen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from biowm.core.errors import InvalidInputError
from biowm.core.io import check_writable
from biowm.core.manifest import Manifest, manifest_path_for

console = Console(stderr=True)


def simulate(
    out: Annotated[Path, typer.Option(help="Output .h5ad (raw counts; manifest beside).")],
    genes: Annotated[int, typer.Option(help="Genes in the random regulatory network.")] = 500,
    perturbations: Annotated[int, typer.Option(help="Single-gene perturbations.")] = 200,
    doubles: Annotated[int, typer.Option(help="Double knockouts A+B.")] = 300,
    cells_per_perturbation: Annotated[int, typer.Option(help="Cells per condition.")] = 100,
    control_cells: Annotated[int, typer.Option(help="Non-targeting control cells.")] = 1_000,
    drugs: Annotated[int, typer.Option(help="Multi-target drugs, each at 4 doses.")] = 0,
    seed: Annotated[int, typer.Option(help="Seeds the network, design and every cell.")] = 0,
) -> None:
    """Simulate a CRISPR screen (knockout/knockdown/CRISPRa, doubles, drugs) with known
    ground-truth effects and genetic interactions (in `uns["biowm_truth"]`)."""
    from biowm.domains.cell.screen import ScreenDesign, simulate_screen, write_h5ad

    if out.suffix != ".h5ad":
        raise InvalidInputError(f"--out must end in .h5ad, got {out}")
    design = ScreenDesign(n_genes=genes, n_perturbations=perturbations, n_doubles=doubles,
                          cells_per_perturbation=cells_per_perturbation,
                          control_cells=control_cells, drugs=drugs, seed=seed)
    check_writable(out)
    started = time.perf_counter()
    n_cells = control_cells + cells_per_perturbation * (perturbations + doubles + 4 * drugs)
    with console.status(f"simulating {n_cells:,} cells"):
        adata = simulate_screen(design)
    write_h5ad(adata, out)
    manifest = Manifest.create("single_cell", {"domain": "cell", **design.__dict__}, seed=seed)
    manifest.add_file(out)
    manifest.write(manifest_path_for(out))
    truth = adata.uns["biowm_truth"]
    scores = np.asarray(truth["interaction_score"], dtype=np.float64)
    table = Table(title=f"simulated screen ({time.perf_counter() - started:.1f} s)")
    for column in ("cells", "genes", "conditions", "interacting doubles", "UMI/cell (median)",
                   "zeros", "file"):
        table.add_column(column)
    counts = np.asarray(adata.X)
    table.add_row(f"{adata.n_obs:,}", str(adata.n_vars), str(len(truth["conditions"])),
                  f"{int((scores > truth['interaction_threshold']).sum())}/{scores.size}",
                  f"{np.median(counts.sum(axis=1)):.0f}", f"{(counts == 0).mean():.1%}", str(out))
    console.print(table)


def train(
    data: Annotated[Path, typer.Option(help="Training screen (.h5ad, raw counts, obs "
                                       "target_gene with non-targeting controls).")],
    out: Annotated[Path, typer.Option(help="Model directory to write.")],
    members: Annotated[int, typer.Option(help="Ensemble members (1 = no uncertainty).")] = 5,
    gate_z: Annotated[float, typer.Option(help="A gene moves only if its effect is at "
                                          "least this many ensemble sd from zero.")] = 1.0,
    min_guide_fraction: Annotated[float | None, typer.Option(
        help="Keep cells with obs grna_frac above this (when the column exists).")] = None,
    seed: Annotated[int, typer.Option(help="Seeds the bootstrap and the networks.")] = 0,
) -> None:
    """Train biowm's perturbation world model on a screen (model directory with config,
    safetensors weights, manifest and model card)."""
    from biowm.core.io import check_writable_dir
    from biowm.domains.cell.data import load_screen
    from biowm.domains.cell.predict import train_model
    from biowm.models.perturbation_world import PerturbationWorldConfig

    if members < 1:
        raise InvalidInputError(f"--members must be >= 1, got {members}")
    check_writable_dir(out)
    screen = load_screen(data)
    started = time.perf_counter()
    config = PerturbationWorldConfig(members=members, gate_z=gate_z, seed=seed)
    with console.status(f"fitting {members} ensemble members on {screen.n_obs:,} cells"):
        model = train_model(screen, config, min_guide_fraction)
    manifest = Manifest.create("model", {"domain": "cell", "model": "perturbation_world",
                                         "data": str(data), "members": members,
                                         "gate_z": gate_z}, seed=seed)
    manifest.add_file(data)
    model.save(out, manifest)
    doubles = len(model.seen_doubles)
    console.print(f"trained on {screen.n_obs:,} cells, {len(model.trained_labels) - 1} "
                  f"perturbations ({doubles} combinations), {len(model.genes)} genes in "
                  f"{time.perf_counter() - started:.1f} s → {out}")


def predict(
    model: Annotated[Path, typer.Option(help="Model directory from `biowm train cell`.")],
    controls: Annotated[Path, typer.Option(help="Raw-count cells (.h5ad) of any context "
                                           "with obs target_gene; its non-targeting "
                                           "cells are the controls.")],
    out: Annotated[Path, typer.Option(help="pred.h5ad to write (log-normalised X).")],
    perturbations: Annotated[str, typer.Option(help="all, or a comma list such as "
                                               "A,B,A+B.")] = "all",
    cells_per_perturbation: Annotated[int, typer.Option(help="Predicted cells per "
                                                        "perturbation.")] = 100,
    seed: Annotated[int, typer.Option(help="Seeds which control cells are moved.")] = 0,
) -> None:
    """Predict perturbed cells from control cells; the controls are written too."""
    from biowm.domains.cell.data import load_screen
    from biowm.domains.cell.predict import (
        control_expression,
        predict_cells,
        requested_perturbations,
    )
    from biowm.domains.cell.screen import write_h5ad
    from biowm.models.perturbation_world import PerturbationWorldModel

    if out.suffix != ".h5ad":
        raise InvalidInputError(f"--out must end in .h5ad, got {out}")
    check_writable(out)
    world_model = PerturbationWorldModel.load(model)
    names = requested_perturbations(world_model, perturbations)
    expression = control_expression(load_screen(controls),
                                     world_model.genes, str(controls))
    prediction = predict_cells(world_model, expression, names, cells_per_perturbation, seed)
    write_h5ad(prediction, out)
    manifest = Manifest.create("prediction", {"domain": "cell", "model": str(model),
                                              "controls": str(controls),
                                              "perturbations": names}, seed=seed)
    manifest.add_file(out)
    manifest.write(manifest_path_for(out))
    console.print(f"{len(names)} perturbations × {cells_per_perturbation} cells + "
                  f"{expression.shape[0]:,} controls → {out}")


def benchmark(
    data: Annotated[Path, typer.Option(help="A real screen (.h5ad, raw counts) with a "
                                       "context column, e.g. the Papalexi 2021 file.")],
    out: Annotated[Path, typer.Option(help="Directory for results.json and tables.md.")],
    context: Annotated[str, typer.Option(help="obs column of the contexts.")] = "bio_rep",
    train: Annotated[str, typer.Option(help="Training context.")] = "rep_1",
    test: Annotated[str, typer.Option(help="Held-out context to predict.")] = "rep_2",
    min_guide_fraction: Annotated[float, typer.Option(help="Keep cells with grna_frac above.")]
    = 0.8,
    min_cells: Annotated[int, typer.Option(help="Perturbations need this many cells.")] = 30,
    protocol: Annotated[str, typer.Option(help="context (train one context, predict "
                                          "another), unseen (leave one perturbation "
                                          "of a measured gene out) or doubles (held-out "
                                          "combinations of a simulated screen).")]
    = "context",
) -> None:
    """Score baselines with cell-eval on real cells: a new context, or unseen perturbations."""
    import json

    from biowm.core.io import atomic_write_text, check_writable_dir, json_ready
    from biowm.domains.cell.data import load_screen
    from biowm.domains.cell.evaluate import (
        ContextProtocol,
        context_benchmark,
        doubles_benchmark,
        unseen_perturbation_benchmark,
    )

    if protocol not in ("context", "unseen", "doubles"):
        raise InvalidInputError(f"--protocol must be context, unseen or doubles, got "
                                f"{protocol!r}")
    check_writable_dir(out)
    started = time.perf_counter()
    screen = load_screen(data)
    with console.status("scoring baselines"):
        if protocol == "context":
            results = context_benchmark(screen, ContextProtocol(
                context, train, test, min_guide_fraction, min_cells))
            title = (f"New context: train {context}={train}, predict {test} "
                     f"({len(results['perturbations'])} perturbations)")
        elif protocol == "unseen":
            results = unseen_perturbation_benchmark(screen, min_guide_fraction, min_cells)
            title = (f"Unseen perturbations, leave one out over {len(results['targets'])} "
                     "targets that are measured genes")
        else:
            results = doubles_benchmark(screen)
            title = (f"Held-out doubles ({len(results['held_out_doubles'])}), "
                     "simulated screen")
    results["data"] = str(data)
    results["wall_seconds"] = round(time.perf_counter() - started, 1)
    table = "\n".join([f"### {title}", "", *_table_rows(results["models"], protocol)]) + "\n"
    atomic_write_text(out / "results.json", json.dumps(json_ready(results), indent=2))
    atomic_write_text(out / "tables.md", table)
    print(table)
    console.print(f"results written to {out / 'results.json'}")


def _table_rows(models: dict, protocol: str) -> list[str]:
    """Markdown rows: cell-eval metrics, or L2 and interaction detection for doubles."""
    if protocol == "doubles":
        rows = ["| prediction | L2 (top genes) | GI precision | GI recall |", "|---|---|---|---|"]
        for name, m in models.items():
            gi = m["interactions"]
            rows.append(f"| {name} | {m['l2_top_genes']:.3f} | {gi['precision']:.3f} | "
                        f"{gi['recall']:.3f} |")
        return rows
    rows = ["| prediction | PDS | Pearson Δ | DES | MAE | overall |", "|---|---|---|---|---|---|"]
    for name, m in models.items():
        overall = f"{m['overall']:.3f}" if "overall" in m else "–"
        rows.append(f"| {name} | {m['pds']:.3f} | {m['pearson_delta']:.3f} | {m['des']:.3f} "
                    f"| {m['mae']:.3f} | {overall} |")
    return rows


def plan(
    data: Annotated[Path, typer.Option(help="A simulated screen with doubles (.h5ad from "
                                       "`biowm simulate cell`).")],
    out: Annotated[Path, typer.Option(help="Directory for results.json, tables.md and "
                                      "design_curves.png.")],
    strategies: Annotated[str, typer.Option(help="Comma list compared with random: "
                                            "uncertainty, interaction.")] = "uncertainty",
    rounds: Annotated[int, typer.Option(help="Batches of doubles to run.")] = 10,
    batch: Annotated[int, typer.Option(help="Doubles run per batch.")] = 10,
    seeds: Annotated[str, typer.Option(help="Comma list of seeds (loop and model).")]
    = "0,1,2",
    members: Annotated[int, typer.Option(help="Ensemble members of the model.")] = 5,
    interaction_steps: Annotated[int, typer.Option(help="Training steps of the combination "
                                                   "operator per fit.")] = 800,
) -> None:
    """Closed-loop experiment design: start from the singles, choose batches of doubles
    by the model's uncertainty, retrain, and compare the error on all doubles with random
    choice."""
    import json

    from biowm.core.io import atomic_write_text, check_writable_dir, json_ready
    from biowm.domains.cell.data import load_screen
    from biowm.domains.cell.design import fit_round_for, prepare_pool
    from biowm.domains.cell.design_report import design_table, plot_design_curves
    from biowm.models.perturbation_world import PerturbationWorldConfig
    from biowm.plan.experiment_design import compare_strategies

    chosen = [s.strip() for s in strategies.split(",") if s.strip()]
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError as error:
        raise InvalidInputError(f"--seeds must be a comma list of integers, got {seeds!r}"
                                ) from error
    if not seed_list:
        raise InvalidInputError("--seeds needs at least one seed")
    if members < 2:
        raise InvalidInputError(f"--members must be >= 2 (uncertainty needs an ensemble), "
                                f"got {members}")
    if rounds < 1 or batch < 1 or interaction_steps < 1:
        raise InvalidInputError("--rounds, --batch and --interaction-steps must be >= 1")
    check_writable_dir(out)
    started = time.perf_counter()
    pool = prepare_pool(load_screen(data), seed=0)
    config = PerturbationWorldConfig(members=members, interaction_steps=interaction_steps)

    def progress(strategy: str, seed: int, experiments: int, error: float) -> None:
        console.print(f"seed {seed} {strategy:>11}: {experiments:3d} doubles run, error on "
                      f"all {len(pool.doubles)} doubles {error:.3f} "
                      f"({time.perf_counter() - started:.0f} s)")

    results = compare_strategies(pool.doubles, fit_round_for(pool, config), chosen, rounds,
                                 batch, seed_list, progress)
    results.update(data=str(data), doubles=len(pool.doubles), members=members,
                   interaction_steps=interaction_steps,
                   wall_seconds=round(time.perf_counter() - started, 1))
    table = design_table(results)
    atomic_write_text(out / "results.json", json.dumps(json_ready(results), indent=2))
    atomic_write_text(out / "tables.md", table)
    plot_design_curves(results, out / "design_curves.png")
    print(table)
    console.print(f"results written to {out / 'results.json'}")
