"""`biowm simulate|train|plan|evaluate|benchmark sepsis` through the in-process CLI."""

import functools
import json

import numpy as np
import pytest
import torch

from biowm.cli import run
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.trajectories import Trajectories
from biowm.domains.sepsis.mdp import (
    N_ACTIONS,
    N_STATES,
    REFERENCE_VALUES,
    SURVIVAL,
    TERMINAL_STATES,
    load_tables,
)
from biowm.domains.sepsis.simulator import simulate_episodes
from biowm.models import load_world_model
from biowm.models.tabular import DirichletTabularModel
from biowm.models.tabular_mdp import policy_value
from cli_helpers import one_error_line, record_benchmark_settings


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """300 planning and 300 evaluation episodes written by `biowm simulate sepsis`."""
    folder = tmp_path_factory.mktemp("sepsis")
    paths = {"plan": folder / "plan.parquet", "eval": folder / "eval.parquet"}
    for seed, path in enumerate(paths.values()):
        assert run(["simulate", "sepsis", "--episodes", "300", "--seed", str(seed), "--out",
                    str(path)]) == 0
    return paths


@pytest.fixture(scope="module")
def planned(logs, tmp_path_factory):
    out = tmp_path_factory.mktemp("planned") / "policy.npy"
    code = run(["plan", "sepsis", "--data", str(logs["plan"]), "--out", str(out), "--folds",
                "2", "--prior", "pooled", "--pessimism", "halt"])
    assert code == 0
    return out


def test_simulate_writes_logs_and_manifest(logs, capsys):
    path = logs["plan"]
    manifest = Manifest.read(manifest_path_for(path))
    manifest.verify(path)
    assert manifest.kind == "trajectories" and manifest.seed == 0
    assert {"domain": "sepsis", "episodes": 300, "policy": "clinician"}.items() <= (
        manifest.config.items())
    data = Trajectories.from_parquet(path)
    data.validate()
    assert len(data) == 300
    assert data.obs_space.names == ["state"] and data.action_space.names == ["action"]
    # The file holds exactly the episodes the API simulates with the same seed.
    direct = simulate_episodes(load_tables().clinician_policy, 300, seed=0)
    valid = torch.isfinite(direct.times)
    assert torch.equal(data.lengths, direct.lengths)
    assert torch.equal(data.obs[valid], direct.obs[valid])
    assert torch.equal(data.actions[valid], direct.actions[valid])


def test_simulate_with_a_policy_file(tmp_path, capsys):
    policy = np.zeros((N_STATES, N_ACTIONS))
    policy[:, 3] = 1.0
    np.save(tmp_path / "always3.npy", policy)
    out = tmp_path / "always3.parquet"
    assert run(["simulate", "sepsis", "--episodes", "20", "--policy",
                str(tmp_path / "always3.npy"), "--out", str(out)]) == 0
    data = Trajectories.from_parquet(out)
    steps = torch.isfinite(data.times)
    steps[torch.arange(20), data.lengths - 1] = False
    assert torch.all(data.actions[..., 0][steps] == 3)


def test_plan_writes_policy_report_and_manifest(planned, logs):
    policy = np.load(planned)
    assert policy.shape == (N_STATES, N_ACTIONS)
    np.testing.assert_allclose(policy.sum(axis=1), 1.0)
    assert np.all(policy >= 0)
    report = json.loads(planned.with_suffix(".json").read_text())
    assert {"prior", "concentration", "pessimism", "heldout_log_likelihood_by_prior",
            "pessimism_selection_heldout_value", "states_with_data",
            "off_support_recommendations", "off_support_fraction", "off_support",
            "model_value"} <= set(report)
    assert report["prior"] == "pooled"
    assert set(report["pessimism_selection_heldout_value"]) == {"halt n<3", "halt n<10"}
    assert report["pessimism"] in report["pessimism_selection_heldout_value"]
    assert report["off_support_recommendations"] == len(report["off_support"])
    assert 0 < report["states_with_data"] < N_STATES
    assert 0.0 < report["model_value"] < 1.0
    for entry in report["off_support"]:
        assert set(entry) == {"state", "action", "q", "q_sd", "best_logged_q"}
        assert policy[entry["state"], entry["action"]] == 1.0
    manifest = Manifest.read(manifest_path_for(planned))
    assert manifest.kind == "policy"
    manifest.verify(planned)
    assert manifest.config["data"] == str(logs["plan"])


@pytest.fixture
def few_draws(monkeypatch):
    """The CLI's evaluation with 2 posterior draws instead of 10, to keep tests fast."""
    from biowm.bench import ope

    monkeypatch.setattr(ope, "evaluate_off_policy",
                        functools.partial(ope.evaluate_off_policy, posterior_draws=2))


def test_evaluate_writes_estimates_beside_the_exact_value(planned, logs, tmp_path, capsys,
                                                          few_draws):
    out = tmp_path / "evaluation"
    code = run(["evaluate", "sepsis", "--policy", str(planned), "--data", str(logs["eval"]),
                "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    exact = policy_value(load_tables().mdp(), np.load(planned))
    assert results["exact_value"] == pytest.approx(exact, abs=1e-12)
    assert set(results["estimates"]) == {"wis", "fqe", "model_based", "wdr",
                                         "model_based_neural"}
    for name, estimate in results["estimates"].items():
        assert estimate["estimator"] == name
        assert set(estimate) == {"estimator", "value", "low", "high", "effective_episodes"}
    model_based = results["estimates"]["model_based"]["value"]
    assert 0.0 < model_based < 1.0 and abs(model_based - exact) < 0.1
    printed = json.loads(captured.out.strip().splitlines()[-1])
    assert set(printed) == {"wis", "fqe", "model_based", "wdr", "model_based_neural"}


def test_evaluate_the_clinicians_on_their_own_logs(logs, tmp_path, capsys, few_draws):
    policy = tmp_path / "clinician.npy"
    np.save(policy, load_tables().clinician_policy)
    out = tmp_path / "evaluation"
    assert run(["evaluate", "sepsis", "--policy", str(policy), "--data", str(logs["eval"]),
                "--out", str(out), "--no-exact"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["exact_value"] is None
    for estimate in results["estimates"].values():
        assert abs(estimate["value"] - REFERENCE_VALUES["clinician"]) < 0.1


def test_train_dirichlet_writes_a_loadable_model(logs, tmp_path, capsys):
    out = tmp_path / "model"
    code = run(["train", "sepsis", "--data", str(logs["plan"]), "--out", str(out), "--model",
                "dirichlet"])
    assert code == 0, capsys.readouterr().err
    model = load_world_model(out)
    assert isinstance(model, DirichletTabularModel)
    data = Trajectories.from_parquet(logs["plan"])
    assert model.visit_counts().sum() == int((data.lengths - 1).sum())  # every episode counted
    assert model.concentration is not None and model.concentration > 0
    assert model.heldout_log_likelihood  # chosen on a held-out split
    np.testing.assert_allclose(model.transition_mean().sum(axis=2), 1.0)
    assert model.terminal_states == list(TERMINAL_STATES)


# -- bad input: exit code 2, one line, nothing written ---------------------------------------


def bad_logs(path, state: float = 716.0):
    data = simulate_episodes(load_tables().clinician_policy, 5, seed=0)
    data.obs[2, 1, 0] = state
    data.to_parquet(path)
    return path


def test_plan_refuses_logs_with_an_unknown_state(tmp_path, capsys):
    bad = bad_logs(tmp_path / "bad.parquet")
    out = tmp_path / "p.npy"
    assert run(["plan", "sepsis", "--data", str(bad), "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "state" in line and "716" in line and "0..715" in line
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--data", "missing.parquet", "--out", "p.npy"], "no such file"),
        (["--data", "bad.parquet", "--out", "p.csv"], "--out must end in .npy"),
        (["--data", "bad.parquet", "--out", "p.npy", "--pessimism", "hope"], "--pessimism"),
        (["--data", "bad.parquet", "--out", "p.npy", "--prior", "magic"], "prior must be"),
        (["--data", "bad.parquet", "--out", "p.npy", "--folds", "1"], "folds must be >= 2"),
    ],
)
def test_plan_bad_options_exit_2(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    simulate_episodes(load_tables().clinician_policy, 5, seed=0).to_parquet(
        tmp_path / "bad.parquet")
    assert run(["plan", "sepsis", *argv]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "p.npy").exists()


@pytest.mark.parametrize(
    ("contents", "words"),
    [
        (np.full((N_STATES, 5), 0.2), "shape (716, 25)"),
        (np.full((N_STATES, N_ACTIONS), 0.5), "sum to 1"),
        (None, "not a .npy array"),
    ],
)
def test_evaluate_refuses_a_malformed_policy(logs, tmp_path, capsys, contents, words):
    policy = tmp_path / "policy.npy"
    if contents is None:
        policy.write_text("not an array")
    else:
        np.save(policy, contents)
    out = tmp_path / "evaluation"
    assert run(["evaluate", "sepsis", "--policy", str(policy), "--data", str(logs["eval"]),
                "--out", str(out)]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--episodes", "0", "--out", "x.parquet"], "--episodes must be >= 1"),
        (["--episodes", "5", "--out", "x.csv"], "--out must end in .parquet"),
        (["--episodes", "5", "--out", "x.parquet", "--policy", "nowhere.npy"], "no such file"),
    ],
)
def test_simulate_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch, argv,
                                                       words):
    monkeypatch.chdir(tmp_path)
    assert run(["simulate", "sepsis", *argv]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_train_refuses_an_unknown_model(logs, tmp_path, capsys):
    out = tmp_path / "model"
    assert run(["train", "sepsis", "--data", str(logs["plan"]), "--out", str(out), "--model",
                "forest"]) == 2
    assert "--model must be dirichlet or neural" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


# -- benchmark ------------------------------------------------------------------------------


@pytest.fixture
def captured_settings(monkeypatch):
    return record_benchmark_settings(monkeypatch, "biowm.domains.sepsis.benchmark")


@pytest.mark.parametrize(
    ("argv", "episodes", "seeds", "workers"),
    [
        (["--quick"], (300, 1000), (0,), 1),
        (["--episodes", "100", "400", "--seeds", "2", "--workers", "3"], (100, 400), (0, 1), 3),
        ([], (1_000, 3_000, 10_000, 30_000, 100_000), (0, 1, 2, 3, 4), 2),
    ],
)
def test_benchmark_options_reach_the_settings(tmp_path, captured_settings, argv, episodes,
                                              seeds, workers):
    assert run(["benchmark", "sepsis", "--out", str(tmp_path / "b"), *argv]) == 0
    (settings,) = captured_settings
    assert settings.episodes == episodes and settings.seeds == seeds
    assert settings.workers == workers


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["--episodes", "5"], "--episodes must be >= 10"), (["--seeds", "0"], "--seeds must be"),
     (["--workers", "0"], "--workers must be")],
)
def test_benchmark_bad_input_exits_2(tmp_path, capsys, argv, words):
    assert run(["benchmark", "sepsis", "--out", str(tmp_path / "b"), *argv]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "b").exists()


def test_quick_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    code = run(["benchmark", "sepsis", "--quick", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert {"results.json", "tables.md", "value_vs_data.png"} <= {p.name for p in out.iterdir()}
    assert (out / "value_vs_data.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is True
    assert set(results["sizes"]) == {"300", "1000"}
    for name, value in results["references_exact"].items():
        assert round(value, 4) == REFERENCE_VALUES[name]
    assert len(results["cells"]) == 2
    for cell in results["cells"]:
        assert 0.0 < cell["planned_value"] < 1.0
        assert cell["planned_value"] == cell["ope"]["planned"]["exact"]["value"]
        assert set(cell["ope"]) == {"planned", "clinician", "random"}
        for policy in cell["ope"].values():
            assert {"exact", "wis", "fqe", "model_based", "wdr",
                    "model_based_neural"} == set(policy)
            for estimator in ("fqe", "model_based"):
                assert np.isfinite(policy[estimator]["error"])
        assert all(0.0 <= v <= 1.0 for v in cell["ablation"].values())
        assert cell["off_support"] == len(cell["off_support_detail"])
    for size in results["sizes"].values():
        assert set(size["ope_abs_error"]["clinician"]) == {
            "wis", "fqe", "model_based", "wdr", "model_based_neural"}
        assert size["planned_value"]["n"] == 1
    tables = (out / "tables.md").read_text()
    assert tables in captured.out
    assert "| WIS | FQE | model-based | WDR | model-based (neural prior) |" in tables
    assert "| 1,000 |" in tables
    assert SURVIVAL == 714  # the value is the probability of reaching this state
