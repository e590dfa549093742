"""`biowm simulate|train|plan|benchmark tumour` through the in-process CLI.

(Named test_tumour_cli.py: tests/ has no packages, so a second test_cli.py would clash
with tests/test_cli.py at collection.)
"""

import csv
import json

import pytest
import torch
import typer

from biowm.cli import _expand_multiple, run
from biowm.core.manifest import Manifest, manifest_path_for
from biowm.core.trajectories import Trajectories
from cli_helpers import one_error_line, record_benchmark_settings


def test_simulate_writes_parquet_and_manifest(capsys, tmp_path):
    out = tmp_path / "cohort.parquet"
    code = run(["simulate", "tumour", "--gamma", "2", "--n", "50", "--seed", "0", "--out",
                str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "treatment rate" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.manifest.json",
                                                          "cohort.parquet"]
    manifest = Manifest.read(manifest_path_for(out))
    manifest.verify(out)
    assert manifest.kind == "trajectories" and manifest.seed == 0
    assert manifest.config["domain"] == "tumour" and manifest.config["gamma"] == 2.0
    assert manifest.config["n"] == 50
    data = Trajectories.from_parquet(out)
    data.validate()
    assert len(data) == 50 and data.time_unit == "day"
    assert data.obs_space.names == ["tumour_volume_cm3"]
    assert data.action_space.names == ["chemotherapy", "radiotherapy"]
    assert float(data.actions[torch.isfinite(data.times)].sum()) > 0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--gamma", "-1"], "--gamma must be in [0, 100], got -1"),
        (["--gamma", "101"], "--gamma must be in [0, 100]"),
        (["--n", "0"], "--n must be >= 1"),
    ],
)
def test_simulate_bad_input_exits_2_and_writes_nothing(capsys, tmp_path, argv, words):
    out = tmp_path / "x.parquet"
    assert run(["simulate", "tumour", "--out", str(out), *argv]) == 2
    captured = capsys.readouterr()
    assert words in one_error_line(captured.err)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = tmp_path_factory.mktemp("tumour") / "model"
    code = run(["train", "tumour", "--n", "40", "--epochs", "1", "--horizon", "10", "--out",
                str(model)])
    assert code == 0
    return model


def test_train_writes_a_model_with_its_validation_domain(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "weights.safetensors", "manifest.json", "card.md",
            "validation_domain.json"} <= names
    config = json.loads((trained / "config.json").read_text())
    assert config["model_class"] == "sequence"
    assert config["sequence"]["deconfounding"] == "iptw"
    assert config["sequence"]["horizon_steps"] == 10
    domain = json.loads((trained / "validation_domain.json").read_text())
    low, high = domain["volume_cm3"]
    assert 0.0 <= low < high
    assert set(domain["treated_volume_cm3"]) == {"chemotherapy", "radiotherapy"}


def test_plan_writes_results_and_plans(capsys, tmp_path, trained):
    out = tmp_path / "plan"
    code = run(["plan", "tumour", "--model", str(trained), "--patients", "40", "--days", "5",
                "--max-sessions", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"clinician", "world_model_plan", "oracle_plan",
                                        "no_treatment"}
    assert results["n_schedules"] == 6 * 6  # (no session or one of 5 days)²
    n = results["n_eligible"]
    assert 0 < n <= 40
    assert "plans" not in results and results["model"] == str(trained)
    policies = results["policies"]
    assert policies["clinician"]["change_vs_clinician_pct"] == 0.0
    assert policies["no_treatment"]["mean_sessions_chemo"] == 0.0
    # planning on the true simulator beats giving no treatment at all
    assert (policies["oracle_plan"]["mean_final_volume_cm3"]
            < policies["no_treatment"]["mean_final_volume_cm3"])
    with open(out / "plans.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == n * 5
    assert {r["day"] for r in rows} == {"20", "21", "22", "23", "24"}
    assert {r["chemotherapy"] for r in rows} <= {"0", "1"}
    if results["out_of_domain"] == 0:  # every patient got a model plan within the budget
        for patient in {r["patient"] for r in rows}:
            mine = [r for r in rows if r["patient"] == patient]
            assert sum(int(r["chemotherapy"]) for r in mine) <= 1
            assert sum(int(r["radiotherapy"]) for r in mine) <= 1


def test_plan_refuses_a_model_without_a_validation_domain(capsys, tmp_path, trained):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "weights.safetensors", "manifest.json", "card.md"):
        (bare / name).write_bytes((trained / name).read_bytes())
    assert run(["plan", "tumour", "--model", str(bare), "--out", str(tmp_path / "o")]) == 2
    assert "validation_domain.json" in one_error_line(capsys.readouterr().err)
    assert run(["plan", "tumour", "--model", str(trained), "--out", str(tmp_path / "o"),
                "--start-day", "55"]) == 2
    assert "--start-day" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o" / "results.json").exists()


def test_benchmark_takes_several_gammas(capsys, tmp_path):
    out = tmp_path / "bench"
    code = run(["benchmark", "tumour", "--gamma", "0", "4", "--seeds", "1", "--quick",
                "--epochs", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    assert set(results["gammas"]) == {"0", "4"}
    assert results["settings"]["gammas"] == [0.0, 4.0]
    assert results["settings"]["seeds"] == [0]
    assert results["settings"]["max_epochs"] == 1
    assert "| biowm linear |" in captured.out and (out / "tables.md").is_file()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--gamma", "0", "-1"], "--gamma must be in [0, 100], got -1"),
        (["--seeds", "1", "2"], "unexpected extra argument"),
        (["--seeds", "0"], "--seeds and --workers must be >= 1"),
    ],
)
def test_benchmark_bad_input_exits_2(capsys, tmp_path, argv, words):
    assert run(["benchmark", "tumour", "--out", str(tmp_path / "b"), *argv]) == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "b" / "results.json").exists()


@pytest.fixture
def captured_settings(monkeypatch):
    return record_benchmark_settings(monkeypatch, "biowm.domains.tumour.benchmark")


@pytest.mark.parametrize(
    ("argv", "seeds", "n_train", "gammas"),
    [
        (["--quick"], (0,), 300, (0.0, 4.0)),
        (["--quick", "--seeds", "3"], (0, 1, 2), 300, (0.0, 4.0)),
        (["--seeds", "2", "--gamma", "1", "3"], (0, 1), 10_000, (1.0, 3.0)),
        ([], (0, 1, 2, 3, 4), 10_000, (0.0, 1.0, 2.0, 3.0, 4.0)),
        (["--quick", "--seeds", "5"], (0, 1, 2, 3, 4), 300, (0.0, 4.0)),
    ],
)
def test_benchmark_options_reach_the_settings(tmp_path, captured_settings, argv, seeds, n_train,
                                              gammas):
    assert run(["benchmark", "tumour", "--out", str(tmp_path / "b"), *argv]) == 0
    (settings,) = captured_settings
    assert settings.seeds == seeds
    assert settings.n_train == n_train and settings.gammas == gammas


def test_expand_multiple_repeats_only_list_options():
    app = typer.Typer()

    @app.command()
    def command(gamma: list[float] | None = typer.Option(None),  # noqa: B008
                seeds: int = 1, quick: bool = False) -> None:
        pass

    click_command = typer.main.get_command(app)
    assert _expand_multiple(click_command, ["--gamma", "0", "1", "2", "--seeds", "3"]) == [
        "--gamma", "0", "--gamma", "1", "--gamma", "2", "--seeds", "3"]
    assert _expand_multiple(click_command, ["--quick", "--gamma", "0", "--gamma", "4"]) == [
        "--quick", "--gamma", "0", "--gamma", "4"]
    assert _expand_multiple(click_command, ["--seeds", "3", "4"]) == ["--seeds", "3", "4"]
    assert _expand_multiple(click_command, []) == []
