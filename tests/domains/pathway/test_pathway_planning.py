"""`biowm plan pathway` end to end on a tiny trained surrogate, verification in
libroadrunner, and the command's refusals (exit 2, one line, nothing written)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from biowm.cli import run
from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space
from biowm.domains.pathway import draw_parameters, load_model, random_schedule
from biowm.domains.pathway.planning import check_compatible, verify_schedule
from biowm.domains.pathway.runner import simulate_population
from biowm.domains.pathway.shipped import controls_for
from biowm.models.trajectory_surrogate import SurrogateConfig, TrajectorySurrogate
from biowm.plan.dose_schedule import DoseProblem
from cli_helpers import one_error_line

T_END, POINTS = 3000.0, 31


@pytest.fixture(scope="module")
def kholodenko():
    return load_model("kholodenko2000")


@pytest.fixture(scope="module")
def surrogate_dir(tmp_path_factory, kholodenko):
    controls = controls_for(kholodenko, ["MEKi"])
    times = np.linspace(0.0, T_END, POINTS)

    def data(n, seed):
        return simulate_population(
            kholodenko, times, observe=["MAPK_PP", "MKK_PP"],
            draws=draw_parameters(kholodenko, n, 0.1, None, seed),
            schedule=random_schedule(controls, n, T_END, 6, seed), workers=1,
        ).to_trajectories()

    surrogate = TrajectorySurrogate(SurrogateConfig(members=2, max_epochs=5, hidden=32,
                                                    progress=False))
    surrogate.fit(data(300, 10), data(100, 11))
    directory = tmp_path_factory.mktemp("surrogate") / "mapk"
    surrogate.save(directory)
    return directory


def plan(capsys, *args):
    code = run(["plan", "pathway", *map(str, args)])
    return code, capsys.readouterr()


def base_args(surrogate_dir, out, **change):
    options = {"--model": surrogate_dir, "--sbml": "kholodenko2000", "--output": "MAPK_PP",
               "--threshold": 100, "--window": "1500,3000", "--segments": 3,
               "--population": 40, "--verify": 50, "--candidates": 16, "--iterations": 2,
               "--attempts": 2, "--workers": 1, "--seed": 3, "--out": out, **change}
    return [item for pair in options.items() for item in pair]


def test_plan_writes_results_table_and_figure_with_verified_fractions(capsys, tmp_path,
                                                                      surrogate_dir):
    out = tmp_path / "plan"
    code, captured = plan(capsys, *base_args(surrogate_dir, out))
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["plan.md", "plan.png", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert results["target_fraction"] == pytest.approx(0.95)
    assert results["controls"] == ["MEKi"] and results["held_out_seed"] == 4
    assert results["boundaries"] == [0.0, 1000.0, 2000.0, 3000.0]
    for name in ("plan", "constant"):
        entry = results[name]
        assert len(entry["cumulative_dose"]) == 1 and entry["cumulative_dose"][0] >= 0
        assert 0.0 <= entry["verified_fraction"] <= 1.0
        assert 0.0 <= entry["predicted_fraction"] <= 1.0
        assert isinstance(entry["meets_target"], bool)
    assert np.asarray(results["plan"]["doses"]).shape == (3, 1)
    assert 0 <= results["constant"]["doses"][0] <= 1000
    assert 1 <= len(results["attempts"]) <= 2
    for attempt in results["attempts"]:
        band = np.asarray(attempt["plan_verified"]["band"])
        assert band.shape == (3, POINTS) and attempt["plan_verified"]["cells"] == 50
    # a later attempt is tighter than the one before
    risks = [a["margin_risk"] for a in results["attempts"]]
    assert risks == sorted(risks, reverse=True)
    table = (out / "plan.md").read_text()
    assert "| plan |" in table and "| constant |" in table and "verified fraction" in table
    assert (out / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "held-out cells" in captured.err


def test_verification_counts_cells_in_the_simulator(kholodenko):
    controls = controls_for(kholodenko, ["MEKi"])
    problem = DoseProblem("MAPK_PP", 100.0, (1500.0, 3000.0), segments=3)
    draws = draw_parameters(kholodenko, 30, 0.1, None, seed=9)
    times = np.linspace(0.0, T_END, POINTS)
    boundaries = np.array([0.0, 1000.0, 2000.0, 3000.0])
    full = verify_schedule(kholodenko, controls, boundaries, np.full((3, 1), 1000.0), draws,
                           times, problem, workers=1)
    none = verify_schedule(kholodenko, controls, boundaries, np.zeros((3, 1)), draws, times,
                           problem, workers=1)
    assert full.fraction == 1.0 and none.fraction < 0.5  # drug-free MAPK-PP oscillates
    assert full.cells == 30 and full.failed == 0 and full.band.shape == (3, POINTS)
    assert np.all(full.band[0] <= full.band[2])


def test_a_surrogate_of_other_parameters_is_refused(kholodenko):
    fake = SimpleNamespace(
        grid=torch.linspace(0, T_END, POINTS), time_unit="second",
        obs_space=Space.of(Channel("MAPK_PP", "nM")),
        action_space=Space.of(Channel("MEKi", "nM", 0.0, 1000.0)),
        static_space=Space.of(Channel("log_ratio_k7", "log"), Channel("log_ratio_zz", "log")))
    with pytest.raises(InvalidInputError, match="log_ratio_zz name no parameter"):
        check_compatible(kholodenko, fake, "MAPK_PP")
    fake.static_space = Space.of(Channel("log_ratio_k7", "log"))
    fake.action_space = Space.of(Channel("MEKi", "nM", 0.0, 500.0))
    with pytest.raises(InvalidInputError, match=r"spans \[0, 500\] but the model declares"):
        check_compatible(kholodenko, fake, "MAPK_PP")
    fake.action_space = Space.of(Channel("inhibition_k3", "fraction", 0.0, 1.0))
    assert check_compatible(kholodenko, fake, "MAPK_PP")[1] == ("k7",)


@pytest.mark.parametrize(("change", "message"), [
    ({"--output": "NOPE"}, "unknown output species 'NOPE' in model kholodenko2000; valid: "
                           "MKKK, MKKK_P"),
    ({"--output": "MAPK"}, "the surrogate does not predict 'MAPK'; it predicts: MAPK_PP, "
                           "MKK_PP"),
    ({"--window": "1500,5000"}, "window 1500,5000 must satisfy 0 <= start < end <= 3000"),
    ({"--window": "1500"}, "--window must be two times T0,T1"),
    ({"--risk": 0}, "--risk must be in (0, 1), got 0.0"),
    ({"--risk": 1.5}, "--risk must be in (0, 1)"),
    ({"--sbml": "geva_zatorsky2006", "--output": "p53"},
     "the surrogate's actions do not match the SBML model: unknown intervention 'MEKi'"),
    ({"--model": "missing_dir"}, "--model missing_dir: no such surrogate directory"),
])
def test_bad_input_is_refused_and_nothing_written(capsys, tmp_path, surrogate_dir, change,
                                                  message):
    out = tmp_path / "refused"
    code, captured = plan(capsys, *base_args(surrogate_dir, out, **change))
    assert code == 2
    assert message in one_error_line(captured.err)
    assert not out.exists()


def test_an_out_path_that_is_a_file_is_refused(capsys, tmp_path, surrogate_dir):
    out = tmp_path / "taken"
    out.write_text("x")
    code, captured = plan(capsys, *base_args(surrogate_dir, out))
    assert code == 2 and "exists and is not a directory" in one_error_line(captured.err)
    assert out.read_text() == "x"
