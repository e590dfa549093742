"""Chance-constrained dose-schedule planning on an analytic stand-in surrogate."""

import math

import numpy as np
import pytest
import torch

from biowm.core.errors import InvalidInputError
from biowm.core.space import Channel, Space
from biowm.plan.dose_schedule import (
    DoseProblem,
    SearchSettings,
    plan_dose_schedule,
    schedule_on_grid,
    segment_boundaries,
)

BASELINE = 100.0
SD = 2.0


class ExponentialStandIn:
    """output(t) = baseline·exp(-Σ_a potency_a·k_cell·dose_a(t)), k_cell = 0.2·exp(static):
    the drug acts only while it is given, so a dose before the window is wasted."""

    def __init__(self, potency=(1.0,), points=11, t_end=10.0):
        self.grid = torch.linspace(0.0, t_end, points)
        self.potency = torch.tensor(potency)
        self.obs_space = Space.of(Channel("y", "nM"))
        self.action_space = Space(tuple(Channel(f"drug{a}", "nM", 0.0, 10.0)
                                        for a in range(len(potency))))
        self.static_space = Space.of(Channel("log_ratio_k", "log ratio"))
        self.calls = []

    def predictive(self, static, actions):
        self.calls.append(len(actions))
        k = 0.2 * torch.exp(static[:, 0]) if static is not None else torch.full(
            (len(actions),), 0.2)
        exposure = (actions * self.potency).sum(dim=2)
        mean = BASELINE * torch.exp(-exposure * k[:, None])
        return mean[..., None], torch.full_like(mean[..., None], SD)


def population(n=200, seed=0):
    return 0.2 * torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))


def true_fraction(surrogate, static, doses, problem, margin=True):
    """Fraction of cells whose (upper) output stays below the threshold in the window."""
    boundaries = segment_boundaries(surrogate.grid, problem.segments)
    actions = schedule_on_grid(torch.tensor(doses, dtype=torch.float32)[None].expand(
        len(static), -1, -1), boundaries, surrogate.grid)
    mean, sd = surrogate.predictive(static, actions)
    upper = mean[..., 0] + (problem.margin_z * sd[..., 0] if margin else 0.0)
    window = (surrogate.grid >= problem.window[0]) & (surrogate.grid <= problem.window[1])
    return float((upper[:, window] < problem.threshold).all(dim=1).double().mean())


SETTINGS = SearchSettings(candidates=128, iterations=8, seed=1, chunk_rollouts=4096)


def test_plan_meets_the_chance_constraint_and_saves_dose_before_a_late_window():
    surrogate, static = ExponentialStandIn(), population()
    problem = DoseProblem("y", threshold=50.0, window=(6.0, 10.0), segments=5, risk=0.05)
    plan = plan_dose_schedule(surrogate, static, problem, SETTINGS)

    assert plan.feasible and plan.constant_feasible
    assert plan.predicted_fraction >= 0.95 and plan.constant_predicted_fraction >= 0.95
    assert true_fraction(surrogate, static, plan.doses, problem) == pytest.approx(
        plan.predicted_fraction)
    assert true_fraction(surrogate, static, plan.doses, problem, margin=False) >= 0.95
    # the three segments before the window are (nearly) empty; the two inside carry the drug
    assert plan.doses[:3].max() < 0.5 and plan.doses[3:].min() > 5.0
    assert plan.cumulative_dose[0] < 0.5 * plan.constant_cumulative_dose[0]
    # the constant reference is the least constant dose that is feasible (bisection)
    least = plan.constant_doses[0]
    assert true_fraction(surrogate, static, [[least]] * 5, problem) >= 0.95
    assert true_fraction(surrogate, static, [[least - 0.1]] * 5, problem) < 0.95
    # cumulative dose = dose x time over the 2-unit segments
    assert plan.constant_cumulative_dose[0] == pytest.approx(least * 10.0)
    assert plan.cumulative_dose[0] == pytest.approx(float(plan.doses[:, 0].sum() * 2.0))
    # candidates x cells go through the surrogate in batches, chunked to bound memory
    assert max(surrogate.calls) <= 4096 and max(surrogate.calls) >= 20 * len(static)


def test_an_ineffective_second_drug_is_left_out():
    surrogate, static = ExponentialStandIn(potency=(1.0, 0.0)), population(100)
    problem = DoseProblem("y", threshold=50.0, window=(0.0, 10.0), segments=2)
    plan = plan_dose_schedule(surrogate, static, problem, SETTINGS)
    assert plan.feasible and plan.controls == ("drug0", "drug1")
    assert plan.doses.shape == (2, 2) and plan.cumulative_dose.shape == (2,)
    assert plan.cumulative_dose[1] < 0.1 * plan.cumulative_dose[0]


def test_an_unreachable_threshold_is_reported_infeasible():
    surrogate, static = ExponentialStandIn(), population(50)
    problem = DoseProblem("y", threshold=1.0, window=(6.0, 10.0), segments=5)
    plan = plan_dose_schedule(surrogate, static, problem,
                              SearchSettings(candidates=16, iterations=2))
    assert not plan.feasible and not plan.constant_feasible
    assert plan.predicted_fraction < 0.95
    np.testing.assert_allclose(plan.constant_doses, [10.0])  # the most it may give


def test_a_stricter_margin_needs_more_drug():
    surrogate, static = ExponentialStandIn(), population()
    loose = DoseProblem("y", 50.0, (6.0, 10.0), 5, risk=0.2, margin_risk=0.2)
    strict = DoseProblem("y", 50.0, (6.0, 10.0), 5, risk=0.01, margin_risk=0.01)
    assert strict.margin_z > loose.margin_z == pytest.approx(0.8416, abs=1e-3)
    cheap = plan_dose_schedule(surrogate, static, loose, SETTINGS)
    dear = plan_dose_schedule(surrogate, static, strict, SETTINGS)
    assert dear.constant_doses[0] > cheap.constant_doses[0]
    assert dear.to_dict()["plan"]["feasible"] is True


@pytest.mark.parametrize(("change", "message"), [
    (dict(output="z"), "unknown output 'z'; the surrogate predicts: y"),
    (dict(window=(6.0, 12.0)), "window 6,12 must satisfy 0 <= start < end <= 10"),
    (dict(window=(7.0, 6.0)), "window 7,6"),
    (dict(window=(6.2, 6.8)), "holds no grid time"),
    (dict(risk=0.0), "risk must be in (0, 1)"),
    (dict(risk=1.0), "risk must be in (0, 1)"),
    (dict(threshold=math.nan), "threshold must be a finite number"),
    (dict(segments=0), "at least one dose segment"),
])
def test_bad_problems_are_refused(change, message):
    problem = DoseProblem(**{**dict(output="y", threshold=50.0, window=(6.0, 10.0)), **change})
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan_dose_schedule(ExponentialStandIn(), population(10), problem)


def test_a_population_of_the_wrong_shape_is_refused():
    problem = DoseProblem("y", 50.0, (6.0, 10.0))
    for static in (torch.zeros(5, 2), torch.zeros(0, 1), torch.full((3, 1), math.nan)):
        with pytest.raises(InvalidInputError, match=r"population must be a finite \[cells"):
            plan_dose_schedule(ExponentialStandIn(), static, problem)
    with pytest.raises(InvalidInputError, match="candidates >= 2"):
        SearchSettings(candidates=1)
