"""`biowm plan cell`: closed-loop design of double perturbations on a simulated screen."""

import json

import numpy as np
import pytest

from biowm.cli import run
from biowm.domains.cell.design import fit_round_for, prepare_pool
from biowm.domains.cell.screen import ScreenDesign, simulate_screen, write_h5ad
from biowm.models.perturbation_world import PerturbationWorldConfig
from biowm.plan.experiment_design import LoopDesign, run_loop
from cli_helpers import one_error_line

FAST = PerturbationWorldConfig(members=3, interaction_steps=30, min_doubles=3)


@pytest.fixture(scope="module")
def screen():
    return simulate_screen(ScreenDesign(n_genes=40, n_perturbations=10, n_doubles=16,
                                        cells_per_perturbation=12, control_cells=60, seed=2))


def test_pool_splits_every_double_into_experiment_and_reference_halves(screen):
    pool = prepare_pool(screen, seed=0)
    assert len(pool.doubles) == 16 and pool.reference_means.shape == (16, 40)
    labels = screen.obs["target_gene"].astype(str).to_numpy()
    for name in pool.doubles:
        assert pool.experiment[labels == name].sum() == 6
    assert not pool.experiment[labels == "non-targeting"].any()


def test_loop_runs_new_doubles_each_round_and_is_reproducible(screen):
    pool = prepare_pool(screen, seed=0)
    fit_round = fit_round_for(pool, FAST)
    design = LoopDesign("uncertainty", rounds=2, batch=4, seed=1)
    curve = run_loop(pool.doubles, fit_round, design)
    assert curve["experiments"] == [0, 4, 8]
    assert len(set(curve["run"])) == 8 and set(curve["run"]) <= set(pool.doubles)
    assert all(np.isfinite(curve["error"]))
    assert run_loop(pool.doubles, fit_round, design) == curve
    # Running every double lowers the error on all doubles below the singles-only model.
    everything = fit_round(pool.doubles, 1)
    assert everything.error < curve["error"][0]


def test_plan_cell_cli_writes_results_table_and_curves(screen, tmp_path, capsys):
    data = tmp_path / "sim.h5ad"
    write_h5ad(screen, data)
    out = tmp_path / "design"
    code = run(["plan", "cell", "--data", str(data), "--out", str(out), "--rounds", "1",
                "--batch", "3", "--seeds", "0,1", "--members", "2",
                "--interaction-steps", "20", "--strategies", "uncertainty,interaction"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    assert [s["seed"] for s in results["seeds"]] == [0, 1]
    assert set(results["worst_fraction"]) == {"uncertainty", "interaction"}
    assert (out / "design_curves.png").stat().st_size > 1000
    assert "runs to reach random's final error" in (out / "tables.md").read_text()


@pytest.mark.parametrize(("extra", "words"), [
    (["--members", "1"], "--members must be >= 2"),
    (["--strategies", "greedy"], "compare with random"),
    (["--seeds", "a,b"], "--seeds must be a comma list"),
])
def test_plan_cell_refuses_bad_options(screen, tmp_path, capsys, extra, words):
    data = tmp_path / "sim.h5ad"
    write_h5ad(screen, data)
    out = tmp_path / "design"
    code = run(["plan", "cell", "--data", str(data), "--out", str(out), *extra])
    assert code == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not (out / "results.json").exists()


def test_plan_cell_refuses_a_screen_without_doubles(tmp_path, capsys):
    data = tmp_path / "singles.h5ad"
    write_h5ad(simulate_screen(ScreenDesign(n_genes=20, n_perturbations=4, n_doubles=0,
                                            cells_per_perturbation=5, control_cells=20)), data)
    code = run(["plan", "cell", "--data", str(data), "--out", str(tmp_path / "d")])
    assert code == 2
    assert "double perturbations" in one_error_line(capsys.readouterr().err)
