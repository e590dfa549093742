"""Glucose forecast data: factual windows and meal-time counterfactuals from the true simulator."""

import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.domains.glucose.cohort import simulate_shard
from biowm.domains.glucose.controllers import ClinicianPolicy
from biowm.domains.glucose.forecast_data import (
    BRANCHES,
    SUSPENSION_STEPS,
    branch_insulin,
    make_forecast_benchmark,
    meal_origins,
    per_minute_insulin,
    replay_insulin,
)
from biowm.domains.glucose.scenario import MealSchedule
from biowm.domains.glucose.simulator import GlucoseSimulator
from biowm.models.windows import make_windows

PATIENTS = ["adolescent#001", "adult#002", "child#010"]
SEED, HISTORY, HORIZON, STRIDE = 3, 12, 24, 12


@pytest.fixture(scope="module")
def data():
    return make_forecast_benchmark(PATIENTS, 1, SEED, HISTORY, HORIZON, STRIDE)


@pytest.fixture(scope="module")
def simulator():
    return GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=1)


def test_logs_are_the_cohort_engines_and_windows_are_make_windows(data, simulator):
    reference = simulate_shard(simulator, ClinicianPolicy(), PATIENTS, 1, SEED)
    assert torch.equal(data.logs.obs, reference.obs)
    assert torch.equal(data.logs.actions, reference.actions)
    assert data.logs.subject_ids == reference.subject_ids
    expected = make_windows(data.logs, HISTORY, HORIZON, STRIDE)
    assert torch.equal(data.windows.future_obs, expected.future_obs)
    assert torch.equal(data.windows.history.obs, expected.history.obs)
    assert data.config["controller"] == "clinician"


def test_counterfactual_windows_sit_at_every_meal_and_match_make_windows(data):
    cf = data.counterfactual
    logs = data.logs
    assert len(cf) > 0
    # every origin's first future interval holds a meal; every loggable meal has an origin
    assert (cf.meal_carbs_g > 0).all()
    t = logs.times.shape[1]
    meals = logs.actions[:, HISTORY - 1 : t - HORIZON, 1] > 0
    assert int(meals.sum()) == len(cf)
    everything = make_windows(logs, HISTORY, HORIZON, stride=1)
    per_subject = t - HISTORY - HORIZON + 1
    row = cf.windows.subject_index * per_subject + cf.windows.origin_index - (HISTORY - 1)
    same = everything.select(row)
    assert torch.equal(same.origin_index, cf.windows.origin_index)
    assert torch.equal(same.history.obs, cf.windows.history.obs)
    assert torch.equal(same.history.actions, cf.windows.history.actions)
    assert torch.equal(same.history.times, cf.windows.history.times)
    assert torch.equal(same.future_actions, cf.windows.future_actions)
    assert torch.equal(same.future_obs, cf.windows.future_obs)
    assert same.history.subject_ids == cf.windows.history.subject_ids
    order = cf.windows.subject_index * t + cf.windows.origin_index
    assert torch.equal(order, order.sort().values)


def test_replaying_the_logged_insulin_from_a_snapshot_reproduces_the_log(data, simulator):
    """The correctness check of branching: same meals, same sensor noise, same insulin."""
    cf = data.counterfactual
    sample = simulator.sensor.sample_minutes
    means = cf.insulin_u_per_min.reshape(len(cf), HORIZON, sample).mean(dim=2)
    assert torch.allclose(means.float(), cf.windows.future_actions[..., 0], atol=1e-6)
    replayed = replay_insulin(simulator, cf.origin_states, cf.insulin_u_per_min)
    assert torch.allclose(replayed, cf.windows.future_obs, rtol=0.0, atol=1e-3)


def test_branches_change_only_insulin_as_defined(data):
    cf = data.counterfactual
    logged, basal = cf.insulin_u_per_min, cf.basal_u_per_min[:, None]
    branches = branch_insulin(logged, cf.basal_u_per_min, 5)
    assert (branches["skipped_bolus"] <= basal).all()
    assert torch.equal(branches["skipped_bolus"][logged <= basal], logged[logged <= basal])
    bolus = cf.bolus_u
    assert torch.allclose(bolus, (logged - branches["skipped_bolus"]).sum(dim=1))
    assert (bolus > 0).float().mean() > 0.5  # most meals are bolused (some are missed)
    assert torch.allclose(
        branches["doubled_bolus"] - logged, logged - branches["skipped_bolus"]
    )
    suspended = SUSPENSION_STEPS * 5
    assert (branches["basal_suspension"][:, :suspended] == 0).all()
    assert torch.equal(branches["basal_suspension"][:, suspended:], logged[:, suspended:])
    for name in BRANCHES:
        # what a model is given: the 5-min means of the branch's per-minute insulin
        means = branches[name].reshape(len(cf), HORIZON, 5).mean(dim=2)
        assert torch.allclose(cf.actions[name][..., 0].double(), means, atol=1e-6)
        branch = cf.branch(name)
        assert branch.future_actions.shape == cf.windows.future_actions.shape
        assert torch.equal(branch.future_actions[..., 1], cf.windows.future_actions[..., 1])
        assert torch.equal(branch.history.obs, cf.windows.history.obs)
        assert branch.future_obs.shape == cf.windows.future_obs.shape
    with pytest.raises(InvalidInputError, match="unknown branch"):
        cf.branch("nothing")


def test_branches_move_glucose_the_physiological_way(data):
    cf = data.counterfactual
    factual = cf.windows.future_obs[:, -1, 1]  # true BG two hours on
    bolused = cf.bolus_u > 0
    skipped, doubled = cf.obs["skipped_bolus"][:, -1, 1], cf.obs["doubled_bolus"][:, -1, 1]
    assert (skipped[bolused] > factual[bolused]).all()
    assert (doubled[bolused] < factual[bolused]).all()
    assert torch.equal(skipped[~bolused], factual[~bolused])
    assert (cf.obs["basal_suspension"][:, -1, 1] > skipped).all()


def test_meal_origins_by_hand():
    inf = float("inf")
    meal_minute = torch.tensor([[37.0, 35.0, 4.0, inf], [95.0, 96.0, 12.0, inf]])
    origins = meal_origins(meal_minute, 20, 5, history_steps=2, horizon_steps=3)
    expected = torch.zeros(2, 20, dtype=torch.bool)
    expected[0, 7] = True  # minutes 35 and 37 share sample 7; minute 4 has no history
    expected[1, 2] = True  # minute 12 -> sample 2; 95 and 96 -> sample 19, no horizon left
    assert torch.equal(origins, expected)


def test_per_minute_insulin_holds_each_rate():
    actions = torch.tensor([[[0.1, 0.0], [0.3, 20.0]]])
    held = per_minute_insulin(actions, 5)
    assert held.shape == (1, 10) and held.dtype == torch.float64
    assert torch.allclose(held, torch.tensor([[0.1] * 5 + [0.3] * 5], dtype=torch.float64))


def test_bad_requests_fail_with_a_reason():
    with pytest.raises(InvalidInputError, match="controller"):
        make_forecast_benchmark(PATIENTS, 1, 0, 12, 24, 12, controller="autopilot")
    with pytest.raises(InvalidInputError, match="meal scenario"):
        make_forecast_benchmark(["adult#001"], 1, 0, 12, 24, 12, simulator=GlucoseSimulator())
    short = GlucoseSimulator(meal_schedule=MealSchedule(), scenario_days=1)
    with pytest.raises(InvalidInputError, match="meal scenario"):
        make_forecast_benchmark(["adult#001"], 2, 0, 12, 24, 12, simulator=short)
    with pytest.raises(InvalidInputError, match="fewer than"):
        make_forecast_benchmark(["adult#001"], 1, 0, 200, 100, 12)
    with pytest.raises(InvalidInputError, match=">= 1"):
        make_forecast_benchmark(["adult#001"], 1, 0, 12, 0, 12)
