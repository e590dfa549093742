import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.domains.glucose.patients import patient_table
from biowm.domains.glucose.simulator import GlucoseSimulator, bg_mg_dl, gsub_mg_dl


def basal_action(sim: GlucoseSimulator, state) -> torch.Tensor:
    basal = sim.basal_u_per_min(state)
    return torch.stack([basal, torch.zeros_like(basal)], dim=1)


def test_all_30_patients_stay_at_steady_state_for_24h_on_basal():
    sim = GlucoseSimulator()
    state = sim.reset(subjects=patient_table().names)
    start = bg_mg_dl(state)
    action = basal_action(sim, state)
    worst = torch.zeros_like(start)
    for _ in range(24):
        state = sim.step(state, action, 60.0)
        worst = torch.maximum(worst, (bg_mg_dl(state) - start).abs())
    assert len(start) == 30
    assert float(worst.max()) < 1.0
    assert float((gsub_mg_dl(state) - start).abs().max()) < 1.0


def test_meal_raises_and_insulin_lowers_glucose():
    sim = GlucoseSimulator()
    state = sim.reset(subjects=["adult#001"] * 3)
    base = basal_action(sim, state)
    action = base.clone()
    action[1, 1] = 60.0  # meal announced
    action[2, 0] += 5.0  # extra 5 U in the first minute
    state = sim.step(state, action, 1.0)
    state = sim.step(state, base, 119.0)
    bg = bg_mg_dl(state)
    assert bg[1] > bg[0] + 30.0
    assert bg[2] < bg[0] - 10.0


def test_announced_meal_is_eaten_at_5_g_per_min():
    sim = GlucoseSimulator()
    state = sim.reset(subjects=["child#001"])
    action = basal_action(sim, state)
    action[0, 1] = 12.0
    state = sim.step(state, action, 1.0)
    assert float(state["planned_carbs_g"][0]) == 7.0
    state = sim.step(state, basal_action(sim, state), 2.0)
    assert float(state["planned_carbs_g"][0]) == 0.0
    assert float(state["meal_eaten_g"][0]) == 12.0


def test_step_is_batch_independent():
    sim = GlucoseSimulator()
    names = ["adult#003", "child#004", "adolescent#007"]
    together = sim.reset(subjects=names)
    action = basal_action(sim, together)
    action[:, 1] = torch.tensor([50.0, 0.0, 30.0])
    together = sim.step(together, action, 90.0)
    alone = sim.reset(subjects=names[1:2])
    alone = sim.step(alone, action[1:2], 90.0)
    assert torch.allclose(together["x"][1], alone["x"][0], rtol=0, atol=1e-9)


def test_bad_arguments_are_refused():
    sim = GlucoseSimulator()
    with pytest.raises(InvalidInputError, match="valid patients: adolescent#001"):
        sim.reset(subjects=["adult#011"])
    with pytest.raises(InvalidInputError, match="whole number of minutes"):
        sim.step(sim.reset(n=1), torch.zeros(1, 2), 0.5)
    with pytest.raises(InvalidInputError, match="unknown cohort"):
        GlucoseSimulator(cohort="elderly")
