"""`biowm train pathway` and `biowm evaluate pathway` end to end on a small population."""

import json

import pytest

from biowm.cli import run
from biowm.models.trajectory_surrogate import TrajectorySurrogate
from cli_helpers import one_error_line


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pathway_surrogate")
    data = root / "data.parquet"
    assert run(["simulate", "pathway", "--sbml", "kholodenko2000", "--observe",
                "MAPK_PP,MKK_PP", "--intervene", "MEKi", "--t-end", "3000", "--points", "31",
                "--n", "300", "--seed", "0", "--workers", "1", "--out", str(data)]) == 0
    model = root / "model"
    assert run(["train", "pathway", "--data", str(data), "--out", str(model), "--members",
                "2", "--hidden", "32", "--epochs", "3", "--seed", "0"]) == 0
    return root, data, model


def test_train_records_how_the_data_were_simulated(trained):
    _, _, model = trained
    surrogate = TrajectorySurrogate.load(model)
    assert surrogate.obs_space.names == ["MAPK_PP", "MKK_PP"]
    assert surrogate.action_space.names == ["MEKi"]
    assert surrogate.provenance["t_end"] == 3000.0 and surrogate.provenance["seed"] == 0
    assert len(surrogate.static_space.names) == 22
    assert (model / "card.md").is_file() and (model / "manifest.json").is_file()


def test_evaluate_scores_fresh_libroadrunner_runs(trained, capsys):
    root, _, model = trained
    out = root / "evaluation"
    code = run(["evaluate", "pathway", "--model", str(model), "--sbml", "kholodenko2000",
                "--n", "40", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    assert set(results["nrmse"]) == {"MAPK_PP", "MKK_PP", "overall"}
    assert 0.0 < results["nrmse"]["overall"] < 1.0
    assert 0.0 <= results["coverage90"] <= 1.0 and results["seed"] == 1000
    assert results["population"]["crps_normalised"] > 0
    assert (out / "held_out.png").stat().st_size > 1000
    assert "NRMSE" in captured.out


@pytest.mark.parametrize(("argv", "words"), [
    (["--sbml", "geva_zatorsky2006"], "unknown surrogate output species"),
    (["--sbml", "kholodenko2000", "--seed", "0"], "training data's seed"),
    (["--sbml", "kholodenko2000", "--n", "1"], "--n must be >= 2"),
])
def test_evaluate_refusals(trained, tmp_path, capsys, argv, words):
    _, _, model = trained
    out = tmp_path / "refused"
    code = run(["evaluate", "pathway", "--model", str(model), "--out", str(out), *argv])
    assert code == 2
    assert words in one_error_line(capsys.readouterr().err)
    assert not (out / "results.json").exists()


def test_train_refuses_data_without_a_simulation_manifest(trained, tmp_path, capsys):
    _, data, _ = trained
    bare = tmp_path / "bare.parquet"
    bare.write_bytes(data.read_bytes())
    code = run(["train", "pathway", "--data", str(bare), "--out", str(tmp_path / "m")])
    assert code == 2
    assert "no manifest" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "m").exists()
