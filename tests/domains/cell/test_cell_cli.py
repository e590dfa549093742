"""`biowm simulate cell`: the screen as .h5ad in the cell-eval conventions."""

import json

import anndata
import numpy as np
import pytest

from biowm.cli import run
from biowm.core.manifest import Manifest, manifest_path_for
from cli_helpers import one_error_line


def test_simulate_cell_writes_a_screen_with_ground_truth(capsys, tmp_path):
    out = tmp_path / "sim.h5ad"
    code = run(["simulate", "cell", "--genes", "60", "--perturbations", "12", "--doubles", "8",
                "--cells-per-perturbation", "10", "--control-cells", "50", "--drugs", "1",
                "--seed", "0", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    Manifest.read(manifest_path_for(out)).verify(out)
    adata = anndata.read_h5ad(out)
    assert adata.n_vars == 60 and adata.n_obs == 50 + 10 * (12 + 8 + 4)
    counts = np.asarray(adata.X)
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    groups = adata.obs["target_gene"].value_counts()
    assert groups["non-targeting"] == 50
    doubles = [name for name in groups.index if "+" in name]
    assert len(doubles) == 8 and all(g in adata.var_names for d in doubles
                                     for g in d.split("+"))
    truth = adata.uns["biowm_truth"]
    assert truth["expression"].shape == (1 + 12 + 8 + 4, 60)
    assert len(truth["interaction_score"]) == 8
    assert list(truth["conditions"][:1]) == ["non-targeting"]


@pytest.mark.parametrize(("argv", "words"), [
    (["--out", "x.csv"], "--out must end in .h5ad"),
    (["--genes", "5"], "--genes must be >= 10"),
    (["--genes", "20", "--perturbations", "30"], "--perturbations must be in 1..20"),
    (["--genes", "20", "--perturbations", "3", "--doubles", "4"], "exceeds the 3 pairs"),
])
def test_simulate_cell_bad_input_exits_2_and_writes_nothing(capsys, tmp_path, argv, words):
    target = tmp_path / "sim.h5ad"
    full = ["simulate", "cell", "--out", str(target), *argv]
    if "--out" in argv:
        full = ["simulate", "cell", *[str(tmp_path / a) if a.endswith(".csv") else a
                                     for a in argv]]
    assert run(full) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_benchmark_cell_scores_baselines_on_a_context_split(capsys, tmp_path):
    from biowm.domains.cell.screen import ScreenDesign, simulate_screen, write_h5ad

    adata = simulate_screen(ScreenDesign(n_genes=30, n_perturbations=4, n_doubles=0,
                                         cells_per_perturbation=50, control_cells=100))
    adata.obs["bio_rep"] = np.where(np.arange(adata.n_obs) % 2 == 0, "rep_1", "rep_2")
    data = tmp_path / "screen.h5ad"
    write_h5ad(adata, data)
    out = tmp_path / "bench"
    code = run(["benchmark", "cell", "--data", str(data), "--out", str(out), "--min-cells", "10"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| mean-shift |" in captured.out
    results = json.loads((out / "results.json").read_text())
    assert len(results["perturbations"]) == 4
    assert set(results["models"]) >= {"cell-mean", "mean-shift"}


def test_benchmark_cell_refuses_an_unknown_context(capsys, tmp_path):
    from biowm.domains.cell.screen import ScreenDesign, simulate_screen, write_h5ad

    data = tmp_path / "screen.h5ad"
    write_h5ad(simulate_screen(ScreenDesign(n_genes=20, n_perturbations=2, n_doubles=0,
                                            cells_per_perturbation=5, control_cells=10)), data)
    assert run(["benchmark", "cell", "--data", str(data), "--out", str(tmp_path / "b")]) == 2
    assert "no obs column 'bio_rep'" in one_error_line(capsys.readouterr().err)


def _small_screen(path, genes=30):
    from biowm.domains.cell.screen import ScreenDesign, simulate_screen, write_h5ad

    write_h5ad(simulate_screen(ScreenDesign(n_genes=genes, n_perturbations=6, n_doubles=6,
                                            cells_per_perturbation=20, control_cells=60,
                                            seed=3)), path)
    return path


def test_train_and_predict_cell_end_to_end(capsys, tmp_path):
    data = _small_screen(tmp_path / "screen.h5ad")
    model = tmp_path / "model"
    assert run(["train", "cell", "--data", str(data), "--out", str(model), "--members", "2"]) == 0
    for name in ("config.json", "weights.safetensors", "manifest.json", "card.md"):
        assert (model / name).is_file()
    out = tmp_path / "pred.h5ad"
    screen = anndata.read_h5ad(data)
    single = next(n for n in screen.obs["target_gene"].unique() if "+" not in n
                  and n != "non-targeting")
    double = next(n for n in screen.obs["target_gene"].unique() if "+" in n)
    code = run(["predict", "cell", "--model", str(model), "--controls", str(data),
                "--perturbations", f"{single},{double}", "--cells-per-perturbation", "15",
                "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    pred = anndata.read_h5ad(out)
    counts = pred.obs["target_gene"].value_counts()
    assert counts[single] == 15 and counts[double] == 15 and counts["non-targeting"] == 60
    assert list(pred.var_names) == list(screen.var_names)
    assert float(np.asarray(pred.X).min()) >= 0.0 and float(np.asarray(pred.X).max()) < 15
    Manifest.read(manifest_path_for(out)).verify(out)
    assert run(["predict", "cell", "--model", str(model), "--controls", str(data),
                "--out", str(tmp_path / "all.h5ad")]) == 0
    assert anndata.read_h5ad(tmp_path / "all.h5ad").obs["target_gene"].nunique() == 13


def test_predict_cell_refuses_controls_missing_model_genes(capsys, tmp_path):
    data = _small_screen(tmp_path / "screen.h5ad")
    model = tmp_path / "model"
    assert run(["train", "cell", "--data", str(data), "--out", str(model), "--members", "1"]) == 0
    capsys.readouterr()
    screen = anndata.read_h5ad(data)
    screen[:, 5:].copy().write_h5ad(tmp_path / "fewer.h5ad")
    out = tmp_path / "pred.h5ad"
    code = run(["predict", "cell", "--model", str(model), "--controls",
                str(tmp_path / "fewer.h5ad"), "--out", str(out)])
    assert code == 2
    assert "of the model's 30 genes are missing" in one_error_line(capsys.readouterr().err)
    assert not out.exists()
    code = run(["predict", "cell", "--model", str(model), "--controls", str(data),
                "--perturbations", "NOPE", "--out", str(out)])
    assert code == 2 and "neither perturbed in training" in one_error_line(capsys.readouterr().err)
    assert not out.exists()
