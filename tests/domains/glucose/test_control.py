"""Closed-loop control: the loop, the history it feeds a model, the oracle, the CLI's checks."""

import torch

from biowm.cli import run
from biowm.core.world_model import Belief
from biowm.domains.glucose.control import (
    BasalBolusPolicy,
    OraclePolicy,
    SimulatorModel,
    rounded_meal_simulator,
    run_closed_loop,
)
from biowm.domains.glucose.simulator import gsub_mg_dl
from biowm.plan.mpc import MPCConfig


def test_basal_bolus_closed_loop_logs_every_sample_and_meals_start_on_the_grid():
    sim = rounded_meal_simulator(1)
    state = sim.reset(subjects=["adult#001"], seed=3)
    assert torch.all(torch.remainder(state["meal_minute"][torch.isfinite(
        state["meal_minute"])], 5) == 0)
    result = run_closed_loop(BasalBolusPolicy(), ["adult#001", "child#002"], 1, seed=3,
                             simulator=sim)
    log = result["log"]
    assert log.cgm.shape == (2, 288) and torch.isfinite(log.bg).all()
    assert (log.carbs > 0).sum() >= 4  # announced meals, with carb-counting error
    assert 0.0 <= float(result["metrics"]["tir"].min()) <= 100.0
    basal = float(log.insulin[0, 0])
    assert (log.insulin[0] > basal * 5).any()  # boluses at meals


def test_history_pads_before_time_zero_with_steady_state():
    result = run_closed_loop(BasalBolusPolicy(), ["adult#003"], 1, seed=0, steps=10)
    log = result["log"]
    history = log.history(5, 48, torch.tensor([0.02], dtype=torch.float64))
    assert history.times.shape == (1, 48)
    assert float(history.times[0, -1]) == 0.0 and float(history.times[0, 0]) == -235.0
    assert torch.allclose(history.obs[0, :43, 0], log.cgm[0, :1].float().expand(43))
    assert float(history.actions[0, -1].abs().sum()) == 0.0  # the origin's action is planned
    assert not history.mask[..., 1].any()  # true BG is never shown to a model


def test_simulator_model_imagines_the_true_response():
    sim = rounded_meal_simulator(1)
    state = sim.reset(subjects=["child#001"], seed=0)
    model = SimulatorModel(rounded_meal_simulator(1))
    actions = torch.zeros(1, 3, 2)
    actions[:, :, 0] = 0.01
    forecast = model.imagine(Belief(dict(state)), actions)
    stepped = state
    for h in range(3):
        stepped = sim.step(stepped, actions[:, h].double(), 5.0)
    assert torch.allclose(forecast.samples[0, 0, -1, 0].double(), gsub_mg_dl(stepped)[0],
                          atol=1e-4)


def test_oracle_mpc_runs_and_keeps_glucose_in_a_sane_range():
    sim = rounded_meal_simulator(1)
    policy = OraclePolicy(SimulatorModel(rounded_meal_simulator(1)),
                          config=MPCConfig(candidates=8, iterations=1, forecast_samples=1))
    result = run_closed_loop(policy, ["adult#002"], 1, seed=1, simulator=sim, steps=30)
    bg = result["log"].bg[0, :30]
    assert float(bg.min()) > 60.0 and float(bg.max()) < 300.0
    assert len(policy.decision_seconds) >= 10


def test_control_cli_refuses_bad_requests(capsys, tmp_path):
    assert run(["control", "glucose", "--controller", "mpc"]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert run(["control", "glucose", "--controller", "pid", "--days", "1"]) == 2
    assert "unknown controller 'pid'" in capsys.readouterr().err
    assert run(["control", "glucose", "--patients", "adult#042"]) == 2
    assert "valid patients" in capsys.readouterr().err
    assert run(["control", "glucose", "--model", str(tmp_path / "none")]) == 2
    assert "not a model directory" in capsys.readouterr().err
