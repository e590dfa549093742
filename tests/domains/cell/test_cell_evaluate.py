"""cell-eval scoring and the new-context protocol on a small simulated screen."""

import numpy as np
import pytest

from biowm.domains.cell.evaluate import (
    BIOWM,
    ContextProtocol,
    context_benchmark,
    overall_score,
)
from biowm.domains.cell.screen import ScreenDesign, simulate_screen
from biowm.models.perturbation_world import PerturbationWorldConfig


def test_overall_score_scales_against_the_cell_mean_baseline():
    baseline = {"pds": 0.5, "des": 0.1, "mae": 0.2}
    assert overall_score(baseline, baseline) == 0.0
    better = {"pds": 0.75, "des": 0.55, "mae": 0.1}
    assert overall_score(better, baseline) == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    worse = {"pds": 0.4, "des": 0.0, "mae": 0.4}
    assert overall_score(worse, baseline) == 0.0


def test_context_benchmark_on_two_simulated_replicates():
    adata = simulate_screen(ScreenDesign(n_genes=40, n_perturbations=6, n_doubles=0,
                                         cells_per_perturbation=60, control_cells=120))
    rng = np.random.default_rng(0)
    adata.obs["bio_rep"] = np.where(rng.random(adata.n_obs) < 0.5, "rep_1", "rep_2")
    results = context_benchmark(adata, ContextProtocol(min_guide_fraction=None, min_cells=10))
    models = results["models"]
    assert set(models) == {"cell-mean", "mean-shift", "mean-shift |z|>2", "real rep_1 cells",
                           BIOWM}
    assert models["cell-mean"]["overall"] == 0.0
    for metrics in models.values():
        assert 0.0 <= metrics["pds"] <= 1.0 and metrics["mae"] >= 0.0
    # On a simulated screen with strong knockouts, per-perturbation effects beat pooling.
    assert models["mean-shift"]["pds"] > models["cell-mean"]["pds"]
    assert models[BIOWM]["pds"] > models["cell-mean"]["pds"]


def test_unseen_perturbations_leave_one_out_on_a_simulated_screen():
    from biowm.domains.cell.evaluate import unseen_perturbation_benchmark

    adata = simulate_screen(ScreenDesign(n_genes=40, n_perturbations=5, n_doubles=0,
                                         cells_per_perturbation=40, control_cells=100))
    results = unseen_perturbation_benchmark(adata, min_guide_fraction=None, min_cells=10)
    assert len(results["targets"]) == 5
    assert set(results["models"]) == {"training mean", "linear (PCA gene embedding)", BIOWM}
    for metrics in results["models"].values():
        assert -1.0 <= metrics["pearson_delta"] <= 1.0


def test_interaction_detection_precision_and_recall():
    from biowm.domains.cell.evaluate import interaction_detection

    truth = {"a+b": 1.0, "c+d": 0.1, "e+f": 0.9}
    found = interaction_detection({"a+b": 0.8, "c+d": 0.7}, truth, threshold=0.5)
    assert found == {"precision": 0.5, "recall": 0.5, "interacting": 2, "called": 2}
    silent = interaction_detection({}, truth, threshold=0.5)
    assert np.isnan(silent["precision"]) and silent["recall"] == 0.0


def test_doubles_benchmark_scores_additive_and_training_mean():
    from biowm.core.errors import InvalidInputError
    from biowm.domains.cell.evaluate import doubles_benchmark

    adata = simulate_screen(ScreenDesign(n_genes=60, n_perturbations=12, n_doubles=16,
                                         cells_per_perturbation=30, control_cells=100))
    results = doubles_benchmark(adata, fraction=0.5, seed=0,
                                config=PerturbationWorldConfig(members=2, interaction_steps=200))
    assert len(results["held_out_doubles"]) == 8
    models = results["models"]
    assert models["additive"]["l2_top_genes"] < models["training mean"]["l2_top_genes"]
    assert models["additive"]["interactions"]["called"] == 0
    assert np.isfinite(models[BIOWM]["l2_top_genes"])
    del adata.uns["biowm_truth"]
    with pytest.raises(InvalidInputError, match="biowm_truth"):
        doubles_benchmark(adata)
