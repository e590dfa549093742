"""The tumour counterfactual benchmark: metric, summary, tables and a tiny end-to-end run."""

import json

import pytest
import torch

from biowm.domains.tumour.benchmark import (
    CellResult,
    TumourBenchmarkSettings,
    markdown_tables,
    nrmse_percent,
    run_benchmark,
    summarise,
)
from biowm.domains.tumour.model import DEATH_VOLUME_CM3


def test_nrmse_is_rmse_in_percent_of_the_death_volume():
    truth = torch.full((4, 3), 100.0)
    assert nrmse_percent(truth, truth) == 0.0
    shifted = truth + DEATH_VOLUME_CM3 / 100.0
    assert nrmse_percent(shifted, truth) == pytest.approx(1.0)
    # RMSE of errors (3, 4, 0, 0)·V/100 is sqrt(25/4) = 2.5 %
    errors = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64) * DEATH_VOLUME_CM3 / 100
    assert nrmse_percent(errors, torch.zeros(4)) == pytest.approx(2.5)


def cell(gamma, seed, value):
    return CellResult(gamma, seed, treatment_rate=0.5 - gamma / 10,
                      one_step={"linear": value},
                      sliding={"linear": {tau: value + tau for tau in range(2, 7)}},
                      fit_seconds={"linear": 1.0})


@pytest.fixture
def settings():
    return TumourBenchmarkSettings(gammas=(0.0, 2.0, 0.5), seeds=(0, 1), models=("linear",))


@pytest.fixture
def summary(settings):
    cells = [cell(g, s, v) for g in settings.gammas for s, v in ((0, 1.0), (1, 2.0))]
    return summarise(cells, settings)


def test_summarise_gives_mean_and_sd_over_seeds(summary):
    assert set(summary) == {"0", "2", "0.5"}
    linear = summary["2"]["models"]["linear"]
    assert linear["one_step_nrmse"]["mean"] == 1.5
    assert linear["one_step_nrmse"]["sd"] == pytest.approx(0.7071, abs=1e-4)
    assert linear["one_step_nrmse"]["per_seed"] == [1.0, 2.0]
    assert sorted(linear["sliding_nrmse"]) == ["2", "3", "4", "5", "6"]
    assert linear["sliding_nrmse"]["6"]["mean"] == 7.5
    assert summary["2"]["treatment_rate"]["mean"] == pytest.approx(0.3)


def test_markdown_tables_put_ours_beside_the_published(summary, settings):
    text = markdown_tables(summary, settings)
    one_step, sliding = text.split("Sliding-treatment")
    assert "over seeds (γ=0: 2, γ=2: 2, γ=0.5: 2)" in one_step
    assert "| model | γ=0 | γ=2 | γ=0.5 |" in one_step
    assert "| biowm linear | 1.500 ± 0.707 | 1.500 ± 0.707 | 1.500 ± 0.707 |" in one_step
    # published one-step values at γ = 0 and 2; no published value at γ = 0.5
    assert "| CRN (published) | 0.755 | 0.881 | – |" in one_step
    assert "| CT (published) | 0.770 | 0.864 | – |" in one_step
    assert "| γ | model | τ=2 | τ=3 | τ=4 | τ=5 | τ=6 |" in sliding
    assert "| 0 | biowm linear | 3.500 ± 0.707 |" in sliding
    assert "| 2 | CRN (published) | 0.741 | – | – | – | 1.047 |" in sliding
    assert "| 0.5 | biowm linear |" in sliding
    assert "| 0.5 | CRN (published)" not in sliding
    # every table row has as many cells as its header
    for block, columns in ((one_step, 4), (sliding, 7)):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert rows and all(line.count("|") == columns + 1 for line in rows)


def test_quick_settings_are_small():
    quick = TumourBenchmarkSettings.quick()
    assert quick.gammas == (0.0, 4.0) and quick.seeds == (0,)
    assert quick.n_train < TumourBenchmarkSettings().n_train


def test_a_tiny_benchmark_writes_results_and_tables(tmp_path):
    settings = TumourBenchmarkSettings(gammas=(0.0, 4.0), seeds=(0,), n_train=60, n_val=20,
                                       n_test=20, max_epochs=1, patience=1, latent_dim=8,
                                       hidden_dim=8)
    logged = []
    results = run_benchmark(tmp_path / "bench", settings, log=logged.append)
    assert len(logged) == 2 and logged[0].startswith("γ=0 seed 0")
    on_disk = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert on_disk["gammas"] == json.loads(json.dumps(results["gammas"]))
    assert set(on_disk["gammas"]) == {"0", "4"}
    for gamma, entry in on_disk["gammas"].items():
        assert 0.0 < entry["treatment_rate"]["mean"] < 1.0
        assert set(entry["models"]) == {"linear", "world_model", "world_model_iptw"}
        for name, scores in entry["models"].items():
            assert set(scores["one_step_nrmse"]) >= {"mean", "sd"}, (gamma, name)
            assert 0.0 < scores["one_step_nrmse"]["mean"] < 100.0
            assert sorted(scores["sliding_nrmse"]) == ["2", "3", "4", "5", "6"]
            for tau in scores["sliding_nrmse"].values():
                assert 0.0 < tau["mean"] < 100.0 and tau["sd"] == 0.0
    # without confounding the clinician treats about half the time, at γ = 4 much less
    rates = {g: on_disk["gammas"][g]["treatment_rate"]["mean"] for g in ("0", "4")}
    assert rates["4"] < rates["0"]
    assert [c["gamma"] for c in on_disk["cells"]] == [0.0, 4.0]
    for c in on_disk["cells"]:  # 4 options per origin, 10 sequences per kept origin
        assert c["n_one_step"] % 4 == 0 and c["n_sliding"] % 10 == 0
        assert 0 < c["n_sliding"] // 10 <= c["n_one_step"] // 4
    assert on_disk["manifest"]["kind"] == "benchmark"
    tables = (tmp_path / "bench" / "tables.md").read_text()
    assert "| biowm world_model_iptw |" in tables and "CRN (published)" in tables
    # the first seed's models are kept, one directory per γ and model
    models = tmp_path / "bench" / "models"
    assert sorted(p.name for p in models.iterdir()) == ["gamma0_seed0", "gamma4_seed0"]
    assert (models / "gamma4_seed0" / "world_model_iptw" / "config.json").is_file()
