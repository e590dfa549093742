"""cell-eval scoring and the new-context protocol on a small simulated screen."""

import numpy as np
import pytest

from biowm.domains.cell.evaluate import ContextProtocol, context_benchmark, overall_score
from biowm.domains.cell.screen import ScreenDesign, simulate_screen


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
    assert set(models) == {"cell-mean", "mean-shift", "mean-shift |z|>2", "real rep_1 cells"}
    assert models["cell-mean"]["overall"] == 0.0
    for metrics in models.values():
        assert 0.0 <= metrics["pds"] <= 1.0 and metrics["mae"] >= 0.0
    # On a simulated screen with strong knockouts, per-perturbation effects beat pooling.
    assert models["mean-shift"]["pds"] > models["cell-mean"]["pds"]


def test_unseen_perturbations_leave_one_out_on_a_simulated_screen():
    from biowm.domains.cell.evaluate import unseen_perturbation_benchmark

    adata = simulate_screen(ScreenDesign(n_genes=40, n_perturbations=5, n_doubles=0,
                                         cells_per_perturbation=40, control_cells=100))
    results = unseen_perturbation_benchmark(adata, min_guide_fraction=None, min_cells=10)
    assert len(results["targets"]) == 5
    assert set(results["models"]) == {"training mean", "linear (PCA gene embedding)"}
    for metrics in results["models"].values():
        assert -1.0 <= metrics["pearson_delta"] <= 1.0
